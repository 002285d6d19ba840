// SPDX-License-Identifier: BSD-2-Clause
/* The key registry: known keys pass, typos are refused with a suggestion (keys.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "dev/pci/lpc.h"
#include "dev/pci/pci.h"
#include "keys.h"
#include "options.h"

static char err[1024];

/* Parse a command line (NULL-terminated arguments) and check its keys; 0 or the error. */
static int check_argv(const char *first, ...)
{
	char *argv[40];
	struct options o;
	struct config c;
	va_list ap;
	int ret, argc = 1;

	va_start(ap, first);
	argv[0] = "khyve";
	for (const char *a = first; a && argc < 39; a = va_arg(ap, const char *))
		argv[argc++] = (char *)a;
	va_end(ap);
	argv[argc] = NULL;
	config_init(&c);
	err[0] = '\0';
	ret = options_parse(argc, argv, &c, &o, err, sizeof(err));
	assert_int_equal(ret, 0);
	ret = config_check_keys(&c, NULL, err, sizeof(err));
	config_free(&c);
	return ret;
}

static int check_pairs(const struct config *devs, ...)
{
	struct config c;
	const char *p;
	va_list ap;
	int ret;

	config_init(&c);
	va_start(ap, devs);
	while ((p = va_arg(ap, const char *)))
		assert_int_equal(config_set_pair(&c, p), 0);
	va_end(ap);
	err[0] = '\0';
	ret = config_check_keys(&c, devs, err, sizeof(err));
	config_free(&c);
	return ret;
}

static void test_match(void **state)
{
	assert_true(key_match("port.#.path", "port.0.path"));
	assert_true(key_match("port.#.path", "port.31.path"));
	assert_false(key_match("port.#.path", "port..path"));
	assert_false(key_match("port.#.path", "port.x.path"));
	assert_false(key_match("port.#.path", "port.0.path2"));
	assert_false(key_match("port.#.path", "port.0.pat"));
	assert_true(key_match("boot.kernel", "boot.kernel"));
	assert_false(key_match("boot.kernel", "boot.kerne"));
}

static void test_suggest(void **state)
{
	static const char *const names[] = { "nocache", "direct", "ro", "sectorsize", NULL };

	assert_string_equal(key_suggest("nocach", names), "nocache");
	assert_string_equal(key_suggest("nocahce", names), "nocache"); /* swapped letters */
	assert_string_equal(key_suggest("NOCACHE", names), "nocache");
	assert_string_equal(key_suggest("sectrosize", names), "sectorsize");
	assert_string_equal(key_suggest("r0", names), "ro");
	assert_null(key_suggest("bananas", names));
	assert_null(key_suggest("x", names));
}

/* Every key and device option khyve reads today, as users give them. */
static void test_known_pass(void **state)
{
	assert_int_equal(
		check_argv("-c", "2", "-m", "1G", "-u", "-w", "-s", "0,hostbridge", "-s", "31,lpc",
			   "-l", "com1,stdio", "-l", "com4,off", "-l", "bootrom,/rom,/vars", "-s",
			   "3,virtio-blk,/d.img,ro,nocache,direct,sync,sectorsize=512/4096,"
			   "nodelete,discard=off,iothreads=2,ser=abc,serial=x,bootindex=1",
			   "-s", "4,ahci,hd:/a,ro,model=m,rev=1,nmrr=1,cd:/b,ser=z", "-s",
			   "5,ahci-cd,/c.iso", "-s",
			   "6,virtio-net,slirp,hostfwd=tcp::1-:2,hostfwd15=udp::3-:4,mac=02:"
			   "00:00:00:00:01,mtu=9000",
			   "vm", NULL),
		0);
	assert_int_equal(check_argv("-s", "3,e1000,tap0,mac=02:00:00:00:00:01", "-s",
				    "7,virtio-rnd", "-s",
				    "8,fbuf,tcp=127.0.0.1:5900,w=800,h=600,password=x,wait,vga=on,"
				    "font=/f,rom=off",
				    "vm", NULL),
			 0);
	for (const struct config_key *k = config_keys; k->name; k++) {
		char pair[96];

		snprintf(pair, sizeof(pair), "%s=1", k->name);
		for (char *p = pair; *p; p++)
			if (*p == '#') /* vcpu.#.cpuset: a number */
				*p = '0';
		assert_int_equal(check_pairs(NULL, pair, NULL), 0);
		assert_non_null(k->help);
	}
	for (const struct lpc_device *d = lpc_devices; d->name; d++) {
		char pair[96];

		snprintf(pair, sizeof(pair), "%s=x", d->keys[0]);
		assert_int_equal(check_pairs(NULL, pair, NULL), 0);
	}
}

static void test_typos_refused(void **state)
{
	assert_int_equal(check_pairs(NULL, "boot.cmdlin=x", NULL), -EINVAL);
	assert_non_null(strstr(err, "'boot.cmdlin'"));
	assert_non_null(strstr(err, "did you mean 'boot.cmdline'?"));

	assert_int_equal(check_argv("-s", "3,virtio-blk,/d.img,nocach", "vm", NULL), -EINVAL);
	assert_non_null(strstr(err, "'nocach' for virtio-blk in slot 0:3.0"));
	assert_non_null(strstr(err, "did you mean 'nocache'?"));

	/* An option of another device: no suggestion, the device's list instead. */
	assert_int_equal(check_argv("-s", "3,virtio-blk,/d.img,mtu=9000", "vm", NULL), -EINVAL);
	assert_non_null(strstr(err, "virtio-blk takes path, ro,"));

	assert_int_equal(check_argv("-s", "4,ahci,hd:/a,nocahe", "vm", NULL), -EINVAL);
	assert_non_null(strstr(err, "did you mean 'port.0.nocache'?"));
	assert_int_equal(check_pairs(NULL, "pci.0.4.0.device=ahci", "pci.0.4.0.prot.2.path=x",
				     NULL),
			 -EINVAL);
	assert_non_null(strstr(err, "did you mean 'port.2.path'?"));
	/* ahci-hd's options have no port prefix. */
	assert_int_equal(check_argv("-s", "4,ahci-hd,/a,port.0.ro", "vm", NULL), -EINVAL);

	assert_int_equal(check_argv("-s", "3,virtio-bkl,/d.img", "vm", NULL), -EINVAL);
	assert_non_null(strstr(err, "did you mean 'virtio-blk'?"));

	assert_int_equal(check_argv("-s", "3,virtio-net,slirp,hostfwd16=tcp::1-:2", "vm", NULL),
			 -EINVAL);
	assert_int_equal(check_argv("-s", "3,virtio-rnd,fast", "vm", NULL), -EINVAL);
	assert_non_null(strstr(err, "virtio-rnd takes no options"));
	assert_int_equal(check_argv("-s", "3,fbuf,tcp=off,wiat", "vm", NULL), -EINVAL);
	assert_non_null(strstr(err, "did you mean 'wait'?"));

	assert_int_equal(check_pairs(NULL, "lpc.com1.pth=stdio", NULL), -EINVAL);
	assert_non_null(strstr(err, "did you mean 'lpc.com1.path'?"));
	assert_int_equal(check_pairs(NULL, "lpc.com5.path=stdio", NULL), -EINVAL);
	assert_int_equal(check_pairs(NULL, "vcpu.1.cpuste=2", NULL), -EINVAL);
	assert_non_null(strstr(err, "did you mean 'vcpu.1.cpuset'?"));
	assert_int_equal(check_pairs(NULL, "Memory.Size=1G", NULL), -EINVAL);
	assert_non_null(strstr(err, "did you mean 'memory.size'?"));
	assert_int_equal(check_pairs(NULL, "zzzzzz=1", NULL), -EINVAL);
	assert_non_null(strstr(err, "khyve -o help"));

	/* An option for an empty slot, a malformed PCI key. */
	assert_int_equal(check_pairs(NULL, "pci.0.7.0.path=x", NULL), -EINVAL);
	assert_non_null(strstr(err, "slot 0:7.0 has no device"));
	assert_int_equal(check_pairs(NULL, "pci.0.7.path=x", NULL), -EINVAL);
	assert_non_null(strstr(err, "pci.BUS.SLOT.FUNCTION.OPTION"));
}

static void test_strict_false(void **state)
{
	assert_int_equal(check_pairs(NULL, "zzzzzz=1", "boot.cmdlin=x", "config.strict=false",
				     NULL),
			 0);
	assert_int_equal(check_pairs(NULL, "config.strict=true", "boot.cmdlin=x", NULL), -EINVAL);
	assert_int_equal(check_pairs(NULL, "config.strict=maybe", NULL), -EINVAL);
	assert_non_null(strstr(err, "config.strict=maybe"));
}

/* A restore: the command line's options belong to devices the snapshot has. */
static void test_restore_devices(void **state)
{
	struct config saved;

	config_init(&saved);
	assert_int_equal(config_set(&saved, "pci.0.3.0.device", "virtio-net"), 0);
	assert_int_equal(check_pairs(&saved, "pci.0.3.0.hostfwd=", NULL), 0);
	assert_int_equal(check_pairs(&saved, "pci.0.3.0.hostfwdd=", NULL), -EINVAL);
	assert_non_null(strstr(err, "for virtio-net"));
	assert_int_equal(check_pairs(&saved, "pci.0.4.0.path=x", NULL), -EINVAL);
	config_free(&saved);
}

/* Every emulation's lists are well formed: NULL-terminated names, no empty ones. */
static void test_emulation_lists(void **state)
{
	unsigned n = 0;

	for (const struct pci_emul *e; (e = pci_emul_get(n)); n++)
		for (unsigned i = 0; i < PCI_OPTLISTS; i++)
			for (const char *const *p = e->options[i].names; p && *p; p++)
				assert_true(**p != '\0');
	assert_true(n >= 10);
	assert_null(pci_emul_get(n));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_match),		cmocka_unit_test(test_suggest),
		cmocka_unit_test(test_known_pass),	cmocka_unit_test(test_typos_refused),
		cmocka_unit_test(test_strict_false),	cmocka_unit_test(test_restore_devices),
		cmocka_unit_test(test_emulation_lists),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
