// SPDX-License-Identifier: BSD-2-Clause
/* Command-line parsing: every option becomes config keys (bhyve's config model). */
#include "options.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/topology.h"
#include "bhyve_opts.h"
#include "gdb/gdbstub.h"
#include "keys.h"
#include "version.h"
#include "vm.h"

void options_usage(FILE *f)
{
	fprintf(f,
		"Usage: khyve [-ADHPSWYeuvwxh] [--version] [-c [cpus=]N] [-m SIZE[K|M|G]] [-s "
		"SLOT,EMULATION[,CONF]]...\n"
		"             [-l LPCDEV[,CONF]]... [-o KEY=VALUE]... [-k CONFIGFILE]\n"
		"             [-p VCPU:HOSTCPU]... [-U UUID] [-G [w][ADDR:]PORT] [-r SNAPSHOT] "
		"VMNAME\n"
		"  -A, -D, -H    ACPI tables, exit on power off, sleep on HLT: always so\n"
		"  -P, -W, -Y    bhyve's PAUSE exits, MSI instead of MSI-X, no MP table: no-ops\n"
		"  -S            lock guest memory in host RAM (mlock)\n"
		"  -e            stop the VM on an access to an I/O port nothing emulates\n"
		"  -x            the local APICs start in x2APIC mode\n"
		"  -p V:H        run vCPU V on host CPU H (repeat for more host CPUs)\n"
		"  -U UUID       the system UUID (SMBIOS, through firmware)\n"
		"  -G [w][A:]P   gdb stub on TCP A:P (default 127.0.0.1); w: the guest waits\n"
		"                for the debugger before its first instruction\n"
		"  -u            RTC keeps UTC (default: local time)\n"
		"  -w            unknown MSRs read 0 and ignore writes (default: #GP)\n"
		"  -v            say more: debug messages (-o log.level=, -o log.file=PATH)\n"
		"  -c N          number of vCPUs (cpus=N[,sockets=S,cores=C,threads=T])\n"
		"  -m SIZE       guest memory (megabytes when no suffix; default 256M)\n"
		"  -s SLOT,EMU   PCI device: hostbridge, lpc, virtio-blk,PATH[,ro,...],\n"
		"                virtio-net,slirp[,hostfwd=...]|tap=NAME[,mac=...], virtio-rnd,\n"
		"                ahci,hd:PATH[,...],cd:PATH[,...]..., ahci-hd,PATH, ahci-cd,PATH,\n"
		"                e1000 (the backends of virtio-net)\n"
		"                xhci[,tablet] (a USB tablet on an xHCI controller)\n"
		"  -l comN,BACK  serial port N=1..4; BACK: stdio, off, unix:PATH, file:PATH\n"
		"  -l bootrom,FILE[,VARSFILE]  boot firmware (SeaBIOS, OVMF) instead of a kernel\n"
		"  -o KEY=VALUE  set any configuration key (boot.kernel, boot.initrd,\n"
		"                boot.cmdline, config.dump=true, ...; -o help lists them;\n"
		"                unknown keys are errors unless config.strict=false)\n"
		"  -k FILE       read KEY=VALUE lines from FILE\n"
		"  -r FILE       restore the VM saved in snapshot FILE\n"
		"  -R ADDR:PORT  wait on TCP ADDR:PORT for a VM migrated here (khyvectl "
		"--migrate)\n"
		"  --version     print the version, commit and snapshot format, and exit\n"
		"Exit status: 0 reboot, 1 power off, 2 halt, 3 triple fault, 4 error.\n");
}

static int set_key(struct config *cfg, char *err, size_t errlen, const char *key, const char *value)
{
	int ret = config_set(cfg, key, value);

	if (ret)
		snprintf(err, errlen, "cannot set %s: %s", key, strerror(-ret));
	return ret;
}

static bool parse_uint(const char *s, unsigned long max, unsigned long *out)
{
	char *end;

	if (!s || !isdigit((unsigned char)*s))
		return false;
	errno = 0;
	*out = strtoul(s, &end, 10);
	return !errno && !*end && *out <= max;
}

/* "B:S:F", "S:F" or "S" into numbers. */
static int parse_pci_addr(const char *s, unsigned long addr[3])
{
	char buf[32], *parts[3], *save = NULL, *tok;
	unsigned n = 0;

	if (strlen(s) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, s);
	for (tok = strtok_r(buf, ":", &save); tok; tok = strtok_r(NULL, ":", &save)) {
		if (n == 3)
			return -EINVAL;
		parts[n++] = tok;
	}
	addr[0] = addr[2] = 0;
	if (n == 1)
		return parse_uint(parts[0], 31, &addr[1]) ? 0 : -EINVAL;
	if (n == 2)
		return parse_uint(parts[0], 31, &addr[1]) && parse_uint(parts[1], 7, &addr[2])
			       ? 0
			       : -EINVAL;
	if (n == 3)
		return parse_uint(parts[0], 255, &addr[0]) && parse_uint(parts[1], 31, &addr[1]) &&
				       parse_uint(parts[2], 7, &addr[2])
			       ? 0
			       : -EINVAL;
	return -EINVAL;
}

/*
 * The first option after the emulation name that is not KEY=VALUE names the device's backend,
 * as in bhyve's legacy syntax (-s 2,virtio-blk,disk.img): which key it sets depends on the
 * emulation.  Later bare words are flags (ro → ro=true).
 */
static const char *slot_positional_key(const char *emul)
{
	static const char *const table[][2] = {
		{ "virtio-blk", "path" }, { "virtio-net", "backend" }, { "e1000", "backend" },
		{ "ahci-hd", "path" },	  { "ahci-cd", "path" },
	};

	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
		if (!strcmp(table[i][0], emul))
			return table[i][1];
	return NULL;
}

/* Port @port of an ahci HBA from "hd:PATH" or "cd:PATH": pci.B.S.F.port.N.{type,path}. */
static int options_ahci_port(struct config *cfg, const char *arg, const char *prefix, int port,
			     const char *tok, char *err, size_t errlen)
{
	char key[192];
	int ret;

	if (port >= 32) {
		snprintf(err, errlen, "-s %s: an AHCI controller has at most 32 ports", arg);
		return -EINVAL;
	}
	if (!tok[3]) {
		snprintf(err, errlen, "-s %s: %.2s: needs a path (hd:PATH or cd:PATH)", arg, tok);
		return -EINVAL;
	}
	snprintf(key, sizeof(key), "%s.port.%d.type", prefix, port);
	ret = set_key(cfg, err, errlen, key, tok[0] == 'h' ? "hd" : "cd");
	if (ret)
		return ret;
	snprintf(key, sizeof(key), "%s.port.%d.path", prefix, port);
	return set_key(cfg, err, errlen, key, tok + 3);
}

int options_parse_slot(struct config *cfg, const char *arg, char *err, size_t errlen)
{
	char *copy = strdup(arg), *save = NULL, *tok, prefix[64], key[192];
	unsigned long addr[3];
	const char *emul, *poskey;
	bool first = true;
	int ret = -EINVAL, port = -1;

	if (!copy)
		return -ENOMEM;
	tok = strtok_r(copy, ",", &save);
	if (!tok || parse_pci_addr(tok, addr)) {
		snprintf(err, errlen,
			 "-s %s: bad slot (want SLOT, SLOT:FUNC or BUS:SLOT:FUNC "
			 "with SLOT 0-31, FUNC 0-7)",
			 arg);
		goto out;
	}
	snprintf(prefix, sizeof(prefix), "pci.%lu.%lu.%lu", addr[0], addr[1], addr[2]);
	emul = strtok_r(NULL, ",", &save);
	if (!emul || !*emul) {
		snprintf(err, errlen, "-s %s: missing emulation name", arg);
		goto out;
	}
	snprintf(key, sizeof(key), "%s.device", prefix);
	if (config_get(cfg, key)) {
		snprintf(err, errlen, "-s %s: slot %lu:%lu:%lu is already in use", arg, addr[0],
			 addr[1], addr[2]);
		goto out;
	}
	if ((ret = set_key(cfg, err, errlen, key, emul)))
		goto out;
	poskey = slot_positional_key(emul);
	while ((tok = strtok_r(NULL, ",", &save))) {
		char *eq = strchr(tok, '=');

		/* bhyve's ahci: each hd:PATH or cd:PATH is a port; options after it are its own. */
		if (!strcmp(emul, "ahci") && (!strncmp(tok, "hd:", 3) || !strncmp(tok, "cd:", 3))) {
			snprintf(prefix, sizeof(prefix), "pci.%lu.%lu.%lu", addr[0], addr[1],
				 addr[2]);
			ret = options_ahci_port(cfg, arg, prefix, ++port, tok, err, errlen);
			if (ret)
				goto out;
			snprintf(prefix, sizeof(prefix), "pci.%lu.%lu.%lu.port.%d", addr[0],
				 addr[1], addr[2], port);
			first = false;
			continue;
		}
		if (eq) {
			*eq = '\0';
			snprintf(key, sizeof(key), "%s.%s", prefix, tok);
			ret = set_key(cfg, err, errlen, key, eq + 1);
		} else if (first && poskey) {
			snprintf(key, sizeof(key), "%s.%s", prefix, poskey);
			ret = set_key(cfg, err, errlen, key, tok);
		} else {
			snprintf(key, sizeof(key), "%s.%s", prefix, tok);
			ret = set_key(cfg, err, errlen, key, "true");
		}
		if (ret)
			goto out;
		first = false;
	}
	ret = 0;
out:
	free(copy);
	return ret;
}

/* bhyve's -l bootrom,FILE[,VARSFILE]: lpc.bootrom and lpc.bootvars. */
static int options_parse_bootrom(struct config *cfg, const char *arg, const char *comma, char *err,
				 size_t errlen)
{
	const char *vars = comma ? strchr(comma + 1, ',') : NULL;
	char *rom;
	int ret;

	if (!comma || !comma[1] || comma[1] == ',') {
		snprintf(err, errlen,
			 "-l %s: missing the firmware file (-l bootrom,FILE[,VARSFILE])", arg);
		return -EINVAL;
	}
	if (vars && (!vars[1] || strchr(vars + 1, ','))) {
		snprintf(err, errlen, "-l %s: expected -l bootrom,FILE[,VARSFILE]", arg);
		return -EINVAL;
	}
	rom = strndup(comma + 1, vars ? (size_t)(vars - comma - 1) : strlen(comma + 1));
	if (!rom)
		return -ENOMEM;
	ret = set_key(cfg, err, errlen, "lpc.bootrom", rom);
	free(rom);
	if (!ret && vars)
		ret = set_key(cfg, err, errlen, "lpc.bootvars", vars + 1);
	return ret;
}

int options_parse_lpc(struct config *cfg, const char *arg, char *err, size_t errlen)
{
	const char *comma = strchr(arg, ',');
	char dev[16], key[64];
	size_t n = comma ? (size_t)(comma - arg) : strlen(arg);

	if (n >= sizeof(dev))
		n = sizeof(dev) - 1;
	memcpy(dev, arg, n);
	dev[n] = '\0';
	if (!strcmp(dev, "bootrom"))
		return options_parse_bootrom(cfg, arg, comma, err, errlen);
	if (strlen(dev) != 4 || strncmp(dev, "com", 3) || dev[3] < '1' || dev[3] > '4') {
		snprintf(err, errlen, "-l %s: unknown LPC device '%s' (com1, com2, com3 or com4)",
			 arg, dev);
		return -EINVAL;
	}
	if (!comma || !comma[1]) {
		snprintf(err, errlen, "-l %s: missing backend (stdio, off, unix:PATH, file:PATH)",
			 arg);
		return -EINVAL;
	}
	snprintf(key, sizeof(key), "lpc.%s.path", dev);
	return set_key(cfg, err, errlen, key, comma + 1);
}

int options_parse_cpus(struct config *cfg, const char *arg, char *err, size_t errlen)
{
	char *copy = strdup(arg), *save = NULL, *tok;
	int ret = 0;

	if (!copy)
		return -ENOMEM;
	for (tok = strtok_r(copy, ",", &save); tok && !ret; tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '=');
		const char *name = "cpus", *val = tok;
		unsigned long v;

		if (eq) {
			*eq = '\0';
			name = tok;
			val = eq + 1;
		}
		if (strcmp(name, "cpus") && strcmp(name, "sockets") && strcmp(name, "cores") &&
		    strcmp(name, "threads")) {
			snprintf(err, errlen, "-c %s: unknown topology key '%s'", arg, name);
			ret = -EINVAL;
		} else if (!parse_uint(val, 255, &v) || !v) {
			snprintf(err, errlen, "-c %s: %s must be a number from 1 to 255", arg,
				 name);
			ret = -EINVAL;
		} else {
			ret = set_key(cfg, err, errlen, name, val);
		}
	}
	free(copy);
	return ret;
}

int options_parse_memory(struct config *cfg, const char *arg, char *err, size_t errlen)
{
	char buf[64];
	uint64_t size;
	size_t n = strlen(arg);

	/* bhyve: a bare number is megabytes. */
	if (n && n < sizeof(buf) - 1 && isdigit((unsigned char)arg[n - 1]))
		snprintf(buf, sizeof(buf), "%sM", arg);
	else
		snprintf(buf, sizeof(buf), "%s", arg);
	if (parse_size(buf, &size) || !size) {
		snprintf(err, errlen, "-m %s: bad memory size (e.g. 512M, 2G)", arg);
		return -EINVAL;
	}
	return set_key(cfg, err, errlen, "memory.size", buf);
}

/*
 * getopt saw an option it does not know.  The long options are --version and --help only
 * (bhyve has none); any other "--word" is named whole, not as "-" (what getopt reports).
 */
static int options_unknown(int argc, char **argv, struct options *opt, char *err, size_t errlen)
{
	const char *arg = NULL;

	if (optopt != '-') {
		snprintf(err, errlen, "unknown option -%c (see khyve -h)", optopt);
		return -EINVAL;
	}
	/* getopt stays on the element ("--version") or has just left it. */
	for (int i = optind - 1; i <= optind && i < argc; i++)
		if (i > 0 && !strncmp(argv[i], "--", 2))
			arg = argv[i];
	if (arg && !strcmp(arg, "--version")) {
		version_print(stdout, "khyve");
		return 1;
	}
	if (arg && !strcmp(arg, "--help")) {
		options_usage(stdout);
		return 1;
	}
	snprintf(err, errlen,
		 "unknown option '%s' (khyve takes bhyve's one-letter options, --version and "
		 "--help; see khyve -h)",
		 arg ? arg : "--");
	return -EINVAL;
}

int options_parse(int argc, char **argv, struct config *cfg, struct options *opt, char *err,
		  size_t errlen)
{
	int c, ret = 0;
	char key[16];
	bool dump;

	memset(opt, 0, sizeof(*opt));
	optind = 1;
	opterr = 0;
	while (!ret && (c = getopt(argc, argv, ":ADHPSWYeuvwxhc:m:s:l:o:k:r:R:U:p:G:")) != -1) {
		switch (c) {
		case 'A':
			ret = set_key(cfg, err, errlen, "acpi_tables", "true");
			break;
		case 'D':
			ret = set_key(cfg, err, errlen, "destroy_on_poweroff", "true");
			break;
		case 'H':
			ret = set_key(cfg, err, errlen, "x86.vmexit_on_hlt", "true");
			break;
		case 'P':
			ret = set_key(cfg, err, errlen, "x86.vmexit_on_pause", "true");
			break;
		case 'S':
			ret = set_key(cfg, err, errlen, "memory.wired", "true");
			break;
		case 'W':
			ret = set_key(cfg, err, errlen, "virtio_msix", "false");
			break;
		case 'Y':
			ret = set_key(cfg, err, errlen, "x86.mptable", "false");
			break;
		case 'e':
			ret = set_key(cfg, err, errlen, "x86.strictio", "true");
			break;
		case 'x':
			ret = set_key(cfg, err, errlen, "x86.x2apic", "true");
			break;
		case 'U':
			ret = set_key(cfg, err, errlen, "uuid", optarg);
			break;
		case 'p':
			ret = bhyve_opt_pin(cfg, optarg, err, errlen);
			break;
		case 'G':
			ret = gdbstub_parse_opt(cfg, optarg, err, errlen);
			break;
		case 'u':
			ret = set_key(cfg, err, errlen, "rtc.use_localtime", "false");
			break;
		case 'w':
			ret = set_key(cfg, err, errlen, "x86.strictmsr", "false");
			break;
		case 'v':
			ret = set_key(cfg, err, errlen, "log.level", "debug");
			break;
		case 'c':
			ret = options_parse_cpus(cfg, optarg, err, errlen);
			break;
		case 'm':
			ret = options_parse_memory(cfg, optarg, err, errlen);
			break;
		case 's':
			if (!strcmp(optarg, "help")) {
				pci_emuls_usage(stdout);
				return 1;
			}
			ret = options_parse_slot(cfg, optarg, err, errlen);
			break;
		case 'l':
			if (!strcmp(optarg, "help")) {
				lpc_devices_usage(stdout);
				return 1;
			}
			ret = options_parse_lpc(cfg, optarg, err, errlen);
			break;
		case 'o':
			if (!strcmp(optarg, "help")) {
				config_keys_usage(stdout);
				return 1;
			}
			ret = config_set_pair(cfg, optarg);
			if (ret)
				snprintf(err, errlen, "-o %s: expected KEY=VALUE", optarg);
			break;
		case 'k':
			ret = config_load_file(cfg, optarg, err, errlen);
			break;
		case 'r':
			opt->restore = optarg;
			break;
		case 'R':
			opt->incoming = optarg;
			break;
		case 'h':
			options_usage(stdout);
			return 1;
		case ':':
			snprintf(err, errlen, "option -%c needs an argument (see khyve -h)",
				 optopt);
			return -EINVAL;
		default:
			return options_unknown(argc, argv, opt, err, errlen);
		}
	}
	if (ret)
		return ret < 0 ? ret : -EINVAL;
	if (optind < argc - 1) {
		snprintf(err, errlen, "unexpected argument '%s' after the VM name",
			 argv[optind + 1]);
		return -EINVAL;
	}
	if (optind == argc - 1) {
		ret = set_key(cfg, err, errlen, "name", argv[optind]);
		if (ret)
			return ret;
	}
	/* -c sockets=2,cores=2: the vCPU count is their product, and a snapshot records it. */
	if (!config_get(cfg, "cpus") && (config_get(cfg, "sockets") || config_get(cfg, "cores") ||
					 config_get(cfg, "threads"))) {
		struct cpu_topo t;

		if (topo_from_config(cfg, &t, err, errlen))
			return -EINVAL;
		snprintf(key, sizeof(key), "%u", t.cpus);
		if ((ret = set_key(cfg, err, errlen, "cpus", key)))
			return ret;
	}
	if (opt->restore && opt->incoming) {
		snprintf(err, errlen, "-r and -R: restore a file or wait for a VM, not both");
		return -EINVAL;
	}
	if (!config_get(cfg, "name") && !opt->restore && !opt->incoming) {
		snprintf(err, errlen, "missing VM name (see khyve -h)");
		return -EINVAL;
	}
	if (config_get_bool(cfg, "config.dump", false, &dump)) {
		snprintf(err, errlen, "config.dump: expected true or false");
		return -EINVAL;
	}
	opt->dump_config = dump;
	return 0;
}
