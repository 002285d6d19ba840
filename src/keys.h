/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The registry of configuration keys: every key khyve reads, so that a typo or an option a
 * device does not have is refused with a "did you mean" instead of being silently ignored
 * (bhyve ignores them; users lose hours to "-o boot.cmdlin=...").  config_check_keys() runs
 * after the command line is parsed (main.c) and before a restore merges it (snap/snapshot.c).
 *
 * HOW TO ADD A KEY (do it in the same commit as the config_get that reads it):
 *  - a global key (boot.kernel, snapshot.time, ...): one line in config_keys[] in keys.c, with
 *    a few words for `khyve -o help`;
 *  - an option of a PCI device (pci.B.S.F.NAME): its name in a NULL-terminated list that the
 *    device's struct pci_emul names in .options (dev/pci/pci.h).  A backend's options are its
 *    own list beside the code that reads them (blk_options in backend/block.c, net_options in
 *    backend/net_backend.c) and each front end adds that list too.  "device", "bootindex" and
 *    "romfile" are every function's (keys.c: pci_common_options);
 *  - an LPC device's key (lpc.*): its entry in lpc_devices[] in dev/pci/lpc.c.
 * '#' in a name matches a decimal number ("port.#.path").  The e2e tests run with the check
 * on, so a key you forgot shows up as "unknown option" the first time you test it.
 * -o config.strict=false turns the errors into warnings (config files shared by versions).
 */
#ifndef KHYVE_KEYS_H
#define KHYVE_KEYS_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

struct config_key {
	const char *name; /* "boot.cmdline" */
	const char *help; /* "the kernel command line" */
};

/* Every global key, ending with a NULL name. */
extern const struct config_key config_keys[];

/* Does @name match @pattern, where '#' in @pattern stands for one decimal number? */
bool key_match(const char *pattern, const char *name);

/*
 * Check every key of @cfg.  Device types (pci.B.S.F.device) are looked up in @cfg, then in
 * @devs (a restore: the snapshot's configuration; may be NULL).  Returns 0, or -EINVAL with
 * "unknown ..." and a suggestion in @err; with config.strict=false each problem is printed
 * to stderr as a warning and 0 returned.
 */
int config_check_keys(const struct config *cfg, const struct config *devs, char *err,
		      size_t errlen);

/*
 * The candidate closest to @word by edit distance (insert, delete, replace, swap), or NULL
 * when none is close enough to be a typo of it.  For tests and other "did you mean"s.
 */
const char *key_suggest(const char *word, const char *const *candidates);

/* `khyve -o help`: every key with its help. */
void config_keys_usage(FILE *f);
/* `khyve -s help`: the PCI emulations and their options. */
void pci_emuls_usage(FILE *f);
/* `khyve -l help`: the LPC devices. */
void lpc_devices_usage(FILE *f);

#endif
