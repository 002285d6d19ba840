/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Where a restored VM's host resources may come from (doc/snapshot-format.md, "Trust").
 *
 * A snapshot file is hostile input: its checksums (XXH3) prove nothing, anyone can recompute
 * them.  Guest-visible state in it is validated field by field and may do no more than a
 * hostile guest could.  Host-side resources are different: a configuration key that names a
 * host object (a disk image, a console log file, a UNIX socket, a tap interface, a hostfwd
 * port, the VM name that names the control socket) would make khyve open, create or delete
 * that object with khyve's privileges.  Such keys are taken from the file only when
 *   - the file is authenticated: the header carries a MAC (keyed BLAKE2b over the header, the
 *     section table, which holds every section's checksum, and the metadata) made with this
 *     user's host key, so this host's khyve, running for this user, wrote it; or
 *   - the user vouches for it with -o snapshot.trust=file.
 * Otherwise the restore takes them from the command line (-s, -l, -o, VMNAME) and refuses to
 * start, naming the options to add, while any is missing.
 *
 * The host key: 32 random bytes, mode 0600, created atomically on the first save.  It lives at
 * -o snapshot.key=PATH, else /var/lib/khyve/snapshot.key for root, else
 * $XDG_STATE_HOME/khyve/snapshot.key (~/.local/state/khyve/snapshot.key).  With -o user=NAME
 * it is NAME's key, since that is the user khyve runs as.
 */
#ifndef KHYVE_SNAP_TRUST_H
#define KHYVE_SNAP_TRUST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "snap/format.h"

struct config;

#define SNAP_KEY_DIR_ROOT "/var/lib/khyve"
#define SNAP_KEY_NAME "snapshot.key"

/* How a configuration key is treated on restore. */
enum snap_key_class {
	SNAP_CFG_GUEST,	  /* what the guest sees: from the file; the command line must match */
	SNAP_CFG_HOST,	  /* names a host object: from an authenticated file or the command line */
	SNAP_CFG_SESSION, /* about this run of khyve (trust, verify, sandbox): never from a file */
};

enum snap_key_class snap_key_class(const char *key);

/* The user khyve runs as (-o user=NAME, else the effective uid) and that user's key file. */
struct snap_keyref {
	uid_t uid;
	bool dflt; /* the default path (its directories are created), not snapshot.key */
	char path[4096];
};

int snap_key_locate(const struct config *cfg, struct snap_keyref *ref, char *err, size_t errlen);
/*
 * Read the key at @ref; with @create make it when there is none (never on restore).  Checks
 * that the file is a regular file owned by ref->uid with no access for others, 32 bytes long,
 * and that its directory is owned by that user or root and writable by nobody else.
 * Returns -ENOENT when there is no key and !@create.  The key is cached for the process.
 */
int snap_key_load(const struct snap_keyref *ref, bool create, uint8_t key[SNAP_KEY_BYTES],
		  char *err, size_t errlen);

enum snap_trust {
	SNAP_TRUST_AUTO, /* trusted when authenticated (the default) */
	SNAP_TRUST_FILE, /* -o snapshot.trust=file: the user vouches for the file */
	SNAP_TRUST_NONE, /* -o snapshot.trust=none: host resources only from the command line */
};

int snap_trust_mode(const struct config *cfg, enum snap_trust *mode, char *err, size_t errlen);

/* Whether @f is authenticated for @ref's user, and why not in words. */
enum snap_auth snap_authenticate(const struct snap_file *f, const struct snap_keyref *ref,
				 char *why, size_t whylen);
const char *snap_auth_name(enum snap_auth a);

/*
 * The host resources of a saved configuration, one per device (or top-level key) that needs
 * one: @fn gets the device's key prefix ("pci.0.3.0", "lpc.com1", "name"), the saved key and
 * value, and the command-line option that would give it ("-s 3,virtio-blk,PATH").
 */
void snap_host_resources(const struct config *saved,
			 void (*fn)(const char *group, const char *key, const char *value,
				    const char *option, void *opaque),
			 void *opaque);

/*
 * Make @saved (the file's configuration) safe to merge with @cmdline: drop every session key,
 * and unless @trusted every host key.  Devices whose host resources the command line does not
 * name are listed in @missing as the options to add ("-s 3,virtio-blk,PATH -l com1,stdio
 * VMNAME"); returns the number of them.
 */
int snap_trust_filter(struct config *saved, const struct config *cmdline, bool trusted,
		      char *missing, size_t len);

/* @s with control characters and non-ASCII escaped, for messages about hostile text. */
void snap_sanitize(const char *s, char *out, size_t len);

#endif
