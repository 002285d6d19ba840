// SPDX-License-Identifier: BSD-2-Clause
/*
 * The registry of configuration keys and the check that refuses unknown ones (see keys.h for
 * how to add a key: a global one is a line in config_keys[] below).
 */
#include "keys.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "dev/pci/lpc.h"
#include "dev/pci/pci.h"
#include "log.h"

const struct config_key config_keys[] = {
	{ "name", "the VM's name (the last argument)" },
	{ "cpus", "number of vCPUs (-c)" },
	{ "sockets", "CPU sockets the guest sees (-c sockets=)" },
	{ "cores", "cores per socket (-c cores=)" },
	{ "threads", "threads per core (-c threads=)" },
	{ "memory.size", "guest RAM (-m)" },
	{ "boot.kernel", "kernel to boot: Linux bzImage, PVH ELF or multiboot" },
	{ "boot.initrd", "initial ramdisk of boot.kernel" },
	{ "boot.cmdline", "kernel command line" },
	{ "config.dump", "true: print the configuration and exit" },
	{ "config.strict", "false: unknown keys are warnings, not errors" },
	{ "rtc.use_localtime", "false: the RTC keeps UTC (-u; old name rtc.localtime)" },
	{ "x86.strictmsr", "false: unknown MSRs read 0, writes ignored (-w)" },
	{ "x86.strictio", "true: an access to an unemulated I/O port stops the VM (-e)" },
	{ "x86.x2apic", "true: the local APICs start in x2APIC mode (-x)" },
	{ "x86.vmexit_on_hlt", "bhyve's -H: always so on KVM (halted vCPUs sleep)" },
	{ "x86.vmexit_on_pause", "bhyve's -P: a no-op (KVM's pause-loop exiting decides)" },
	{ "x86.mptable", "bhyve's -Y (false): a no-op, khyve writes no MP table" },
	{ "virtio_msix", "bhyve's -W (false): a no-op, virtio devices offer MSI-X" },
	{ "destroy_on_poweroff", "bhyve's -D: always so, khyve exits on power off" },
	{ "acpi_tables", "bhyve's -A: always so, khyve always writes ACPI tables" },
	{ "memory.wired", "true: guest RAM is locked in host memory (-S)" },
	{ "vcpu.#.cpuset", "host CPUs vCPU N runs on, e.g. 2 or 0-3,6 (-p N:CPU)" },
	{ "uuid", "the system UUID in SMBIOS, through firmware (-U)" },
	{ "gdb.port", "TCP port of the gdb stub (-G; 0: any free port, printed)" },
	{ "gdb.address", "address the gdb stub listens on (default 127.0.0.1)" },
	{ "gdb.wait", "true: the guest waits for the debugger before it starts (-G w)" },
	{ "cpu.features", "CPUID features the guest is not told about: -feat,-feat..." },
	{ "fw.failwait", "seconds the firmware waits before rebooting when nothing boots" },
	{ "console.escape",
	  "~ (default), another character, ^X or none: the stdio console's escape" },
	{ "ctl.socket", "control socket path, or off" },
	{ "ctl.idle_ms", "close silent control connections after this long" },
	{ "ctl.line_ms", "a control request line must be complete within this" },
	{ "ctl.stall_ms", "drop control clients that read no replies for this long" },
	{ "snapshot.disks", "sync or clone: how checkpoints keep disks" },
	{ "snapshot.verify", "full or fast: what a restore checks" },
	{ "snapshot.time", "frozen or catchup: the guest's clocks after a restore" },
	{ "snapshot.prefetch", "off, willneed, read or write: a restore's background prefetch" },
	{ "snapshot.disk_changed", "refuse or accept a disk changed since the checkpoint" },
	{ "snapshot.trust", "auto, file or none: where a restore takes host resources from" },
	{ "snapshot.key", "the key file that authenticates this user's snapshots" },
	{ "snapshot.direct", "on or off: checkpoints write guest memory past the page cache" },
	{ "vmgenid", "on or off: the VM Generation ID device (ACPI), renewed at every restore" },
	{ "mmio.coalesce",
	  "on or off: KVM buffers writes to device registers that do not need an exit" },
	{ "sandbox", "on, off or log: the seccomp filter" },
	{ "user", "the user khyve becomes once the VM is built" },
	{ "log.level", "error, warning, info (default) or debug (-v): what khyve says" },
	{ "log.file", "also write khyve's messages, time-stamped, to this file" },
	{ "debug.timing", "true: print how long until the guest runs" },
	{ "debug.sandbox_probe", "true: make a forbidden system call (tests the sandbox)" },
	{ NULL, NULL },
};

/* Options every PCI function has (pci.c reads romfile, firmware.c bootindex). */
static const char *const pci_common_options[] = { "device", "bootindex", "romfile", NULL };

bool key_match(const char *pat, const char *s)
{
	while (*pat) {
		if (*pat == '#') {
			if (!isdigit((unsigned char)*s))
				return false;
			while (isdigit((unsigned char)*s))
				s++;
			pat++;
		} else if (*pat++ != *s++) {
			return false;
		}
	}
	return !*s;
}

/* ---- "did you mean" ---- */

#define SUGGEST_MAX 96

/* Optimal string alignment distance (Levenshtein plus swapping neighbours), ignoring case. */
static unsigned edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	unsigned d[SUGGEST_MAX + 1][SUGGEST_MAX + 1];

	if (la > SUGGEST_MAX || lb > SUGGEST_MAX)
		return ~0U;
	for (size_t i = 0; i <= la; i++)
		d[i][0] = (unsigned)i;
	for (size_t j = 0; j <= lb; j++)
		d[0][j] = (unsigned)j;
	for (size_t i = 1; i <= la; i++) {
		for (size_t j = 1; j <= lb; j++) {
			unsigned cost = tolower((unsigned char)a[i - 1]) !=
					tolower((unsigned char)b[j - 1]);
			unsigned v = d[i - 1][j] + 1;

			if (d[i][j - 1] + 1 < v)
				v = d[i][j - 1] + 1;
			if (d[i - 1][j - 1] + cost < v)
				v = d[i - 1][j - 1] + cost;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
			    d[i - 2][j - 2] + 1 < v)
				v = d[i - 2][j - 2] + 1;
			d[i][j] = v;
		}
	}
	return d[la][lb];
}

struct suggest {
	const char *typed;
	char norm[SUGGEST_MAX + 1]; /* typed with each number as '#', to compare with patterns */
	unsigned best;
	char out[SUGGEST_MAX + 1];
};

static void suggest_init(struct suggest *s, const char *typed)
{
	size_t o = 0;

	s->typed = typed;
	s->best = ~0U;
	s->out[0] = '\0';
	for (const char *p = typed; *p && o < SUGGEST_MAX; p++) {
		if (isdigit((unsigned char)*p)) {
			while (isdigit((unsigned char)p[1]))
				p++;
			s->norm[o++] = '#';
		} else {
			s->norm[o++] = *p;
		}
	}
	s->norm[o] = '\0';
}

/* @pat with each '#' replaced by the numbers of what was typed, in order ('N' past them). */
static void suggest_render(const struct suggest *s, const char *pat, char *out, size_t len)
{
	const char *num = s->typed;
	size_t o = 0;

	for (; *pat && o + 1 < len; pat++) {
		if (*pat != '#') {
			out[o++] = *pat;
			continue;
		}
		while (*num && !isdigit((unsigned char)*num))
			num++;
		if (!*num)
			out[o++] = 'N';
		while (isdigit((unsigned char)*num) && o + 1 < len)
			out[o++] = *num++;
	}
	out[o] = '\0';
}

static void suggest_try(struct suggest *s, const char *pat)
{
	unsigned d = edit_distance(strchr(pat, '#') ? s->norm : s->typed, pat);

	if (d < s->best) {
		s->best = d;
		suggest_render(s, pat, s->out, sizeof(s->out));
	}
}

static void suggest_list(struct suggest *s, const char *const *names)
{
	for (; names && *names; names++)
		suggest_try(s, *names);
}

/*
 * Close enough to be a typo: a third of the word, at least one edit (two from four letters),
 * at most three.  0 is a known key in other case: a typo too.
 */
static const char *suggest_result(const struct suggest *s)
{
	size_t len = strlen(s->typed);
	unsigned max = len < 3 ? 1 : len / 3 > 3 ? 3 : (unsigned)(len / 3);

	if (max < 2 && len >= 4)
		max = 2;
	return s->best <= max ? s->out : NULL;
}

const char *key_suggest(const char *word, const char *const *candidates)
{
	static __thread struct suggest s;

	suggest_init(&s, word);
	suggest_list(&s, candidates);
	return suggest_result(&s);
}

/* ---- the check ---- */

struct check {
	const struct config *cfg, *devs;
	bool strict;
	char *err;
	size_t errlen;
	int ret;
};

static void check_report(struct check *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void check_report(struct check *c, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (!c->strict) {
		log_warn("%s; ignored (config.strict=false)", msg);
		return;
	}
	if (!c->ret)
		snprintf(c->err, c->errlen, "%s", msg);
	c->ret = -EINVAL;
}

/* "; did you mean 'X'?" or "". */
static const char *did_you_mean(const struct suggest *s, const char *prefix, char *buf, size_t len)
{
	const char *r = suggest_result(s);

	if (!r)
		return "";
	snprintf(buf, len, "; did you mean '%s%s'?", prefix, r);
	return buf;
}

/* @opt is one of @l's names (with its prefix)? */
static bool optlist_has(const struct pci_optlist *l, const char *opt)
{
	char full[SUGGEST_MAX + 1];

	for (const char *const *n = l->names; n && *n; n++) {
		snprintf(full, sizeof(full), "%s%s", l->prefix ? l->prefix : "", *n);
		if (key_match(full, opt))
			return true;
	}
	return false;
}

static bool emul_has_option(const struct pci_emul *e, const char *opt)
{
	struct pci_optlist common = { .names = pci_common_options };

	if (optlist_has(&common, opt))
		return true;
	for (unsigned i = 0; i < PCI_OPTLISTS; i++)
		if (optlist_has(&e->options[i], opt))
			return true;
	return false;
}

static void emul_suggest(const struct pci_emul *e, struct suggest *s)
{
	char full[SUGGEST_MAX + 1];

	suggest_list(s, pci_common_options);
	for (unsigned i = 0; i < PCI_OPTLISTS; i++) {
		const struct pci_optlist *l = &e->options[i];

		for (const char *const *n = l->names; n && *n; n++) {
			snprintf(full, sizeof(full), "%s%s", l->prefix ? l->prefix : "", *n);
			suggest_try(s, full);
		}
	}
}

/* How many characters of @s come before its trailing digits. */
static size_t stem_len(const char *s)
{
	size_t n = strlen(s);

	while (n && isdigit((unsigned char)s[n - 1]))
		n--;
	return n;
}

/*
 * "path, ro, nocache, ...": '#' shown as N, numbered names (hostfwd0..hostfwd15) as one
 * (hostfwdN), a list's prefix once ("port.N.{path, ro}").
 */
static void emul_list_options(const struct pci_emul *e, char *buf, size_t len)
{
	size_t o = 0;

	buf[0] = '\0';
	for (unsigned i = 0; i < PCI_OPTLISTS; i++) {
		const struct pci_optlist *l = &e->options[i];
		const char *last = ""; /* the numbered name shown last */
		bool first = true;

		for (const char *const *n = l->names; n && *n && o < len; n++) {
			size_t stem = stem_len(*n);
			bool numbered = stem < strlen(*n);

			if (!strcmp(*n, "device") || (numbered && *last && stem == stem_len(last) &&
						      !strncmp(*n, last, stem)))
				continue;
			last = numbered ? *n : "";
			o += (size_t)snprintf(buf + o, len - o, "%s%s%s%.*s%s", o ? ", " : "",
					      first && l->prefix ? l->prefix : "",
					      first && l->prefix ? "{" : "", (int)stem, *n,
					      numbered ? "N" : "");
			first = false;
		}
		if (l->prefix && !first && o < len)
			o += (size_t)snprintf(buf + o, len - o, "}");
	}
	for (char *p = buf; *p; p++)
		if (*p == '#')
			*p = 'N';
}

static void emul_names(const char **names, size_t max)
{
	size_t n = 0;

	for (const struct pci_emul *e; n + 1 < max && (e = pci_emul_get((unsigned)n)); n++)
		names[n] = e->name;
	names[n] = NULL;
}

/* A decimal number of at most 3 digits up to the next '.'; advances *@s past it. */
static bool parse_part(const char **s, unsigned *out)
{
	const char *p = *s;
	unsigned v = 0, n = 0;

	for (; isdigit((unsigned char)*p) && n < 4; p++, n++)
		v = v * 10 + (unsigned)(*p - '0');
	if (!n || n > 3 || *p != '.')
		return false;
	*out = v;
	*s = p + 1;
	return true;
}

static void check_pci_key(struct check *c, const char *key, const char *value)
{
	const char *rest = key + 4, *type;
	const struct pci_emul *e;
	char dkey[48], hint[SUGGEST_MAX + 32], opts[600];
	struct suggest s;
	unsigned b, sl, f;

	if (!parse_part(&rest, &b) || !parse_part(&rest, &sl) || !parse_part(&rest, &f) || !*rest) {
		check_report(c, "%s: a PCI key is pci.BUS.SLOT.FUNCTION.OPTION", key);
		return;
	}
	snprintf(dkey, sizeof(dkey), "pci.%u.%u.%u.device", b, sl, f);
	type = config_get(c->cfg, dkey);
	if (!type && c->devs)
		type = config_get(c->devs, dkey);
	if (!type) {
		check_report(c, "%s: PCI slot %u:%u.%u has no device (-s %u:%u,EMULATION,...)", key,
			     b, sl, f, sl, f);
		return;
	}
	e = pci_emul_find(type);
	if (!e) {
		const char *names[64];

		/* Only once, for the device key; its options are moot. */
		if (strcmp(rest, "device"))
			return;
		emul_names(names, 64);
		suggest_init(&s, type);
		suggest_list(&s, names);
		check_report(c, "%s=%s: unknown PCI emulation%s (khyve -s help lists them)", key,
			     type, did_you_mean(&s, "", hint, sizeof(hint)));
		return;
	}
	if (emul_has_option(e, rest))
		return;
	suggest_init(&s, rest);
	emul_suggest(e, &s);
	if (suggest_result(&s)) {
		check_report(c, "unknown option '%s' for %s in slot %u:%u.%u (%s=%s)%s", rest,
			     e->name, b, sl, f, key, value,
			     did_you_mean(&s, "", hint, sizeof(hint)));
		return;
	}
	emul_list_options(e, opts, sizeof(opts));
	check_report(c, "unknown option '%s' for %s in slot %u:%u.%u (%s=%s); %s takes %s%s", rest,
		     e->name, b, sl, f, key, value, e->name, opts[0] ? "" : "no options", opts);
}

static bool lpc_known(const char *key)
{
	for (const struct lpc_device *d = lpc_devices; d->name; d++)
		for (unsigned i = 0; i < LPC_KEYS && d->keys[i]; i++)
			if (key_match(d->keys[i], key))
				return true;
	return false;
}

static void suggest_lpc(struct suggest *s)
{
	for (const struct lpc_device *d = lpc_devices; d->name; d++)
		for (unsigned i = 0; i < LPC_KEYS && d->keys[i]; i++)
			suggest_try(s, d->keys[i]);
}

static bool global_known(const char *key)
{
	for (const struct config_key *k = config_keys; k->name; k++)
		if (key_match(k->name, key))
			return true;
	return false;
}

static void check_key(const char *key, const char *value, void *opaque)
{
	struct check *c = opaque;
	char hint[SUGGEST_MAX + 32];
	struct suggest s;

	if (!strncmp(key, "pci.", 4)) {
		check_pci_key(c, key, value);
		return;
	}
	if (lpc_known(key) || global_known(key))
		return;
	suggest_init(&s, key);
	for (const struct config_key *k = config_keys; k->name; k++)
		suggest_try(&s, k->name);
	suggest_lpc(&s);
	check_report(c, "unknown configuration key '%s' (%s=%s)%s%s", key, key, value,
		     did_you_mean(&s, "", hint, sizeof(hint)),
		     suggest_result(&s) ? "" : " (khyve -o help lists the keys)");
}

int config_check_keys(const struct config *cfg, const struct config *devs, char *err, size_t errlen)
{
	struct check c = { .cfg = cfg, .devs = devs, .err = err, .errlen = errlen };

	if (config_get_bool(cfg, "config.strict", true, &c.strict)) {
		snprintf(err, errlen, "config.strict=%s: expected true or false",
			 config_get(cfg, "config.strict"));
		return -EINVAL;
	}
	config_foreach(cfg, "", check_key, &c);
	return c.ret;
}

void pci_emuls_usage(FILE *f)
{
	char opts[1200];

	fprintf(f, "PCI emulations (-s SLOT,EMULATION[,OPTION[=VALUE]]...); each also takes "
		   "bootindex=N and romfile=PATH:\n");
	for (unsigned i = 0; pci_emul_get(i); i++) {
		emul_list_options(pci_emul_get(i), opts, sizeof(opts));
		fprintf(f, "  %-12s %s\n", pci_emul_get(i)->name, opts[0] ? opts : "(no options)");
	}
}

void lpc_devices_usage(FILE *f)
{
	fprintf(f, "LPC devices (-l NAME,ARGS):\n");
	for (const struct lpc_device *d = lpc_devices; d->name; d++)
		fprintf(f, "  %-8s %-16s %s\n", d->name, d->args, d->help);
}

void config_keys_usage(FILE *f)
{
	fprintf(f, "Configuration keys (-o KEY=VALUE, -k FILE):\n");
	for (const struct config_key *k = config_keys; k->name; k++)
		fprintf(f, "  %-22s %s\n", k->name, k->help);
	for (const struct lpc_device *d = lpc_devices; d->name; d++)
		for (unsigned i = 0; i < LPC_KEYS && d->keys[i]; i++)
			fprintf(f, "  %-22s -l %s: %s\n", d->keys[i], d->name, d->help);
	fprintf(f, "  %-22s a device option (khyve -s help)\n", "pci.B.S.F.OPTION");
}
