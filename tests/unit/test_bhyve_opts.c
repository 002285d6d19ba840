// SPDX-License-Identifier: BSD-2-Clause
/* bhyve's host-side options: UUIDs, -p pin lists and the checks before a VM is built. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "bhyve_opts.h"
#include "config.h"

static void test_uuid(void **state)
{
	static const uint8_t want[16] = { 0x6b, 0xa7, 0xb8, 0x10, 0x9d, 0xad, 0x11, 0xd1,
					  0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8 };
	uint8_t u[16];

	assert_int_equal(uuid_parse("6ba7b810-9dad-11d1-80b4-00c04fd430c8", u), 0);
	assert_memory_equal(u, want, 16);
	assert_int_equal(uuid_parse("6BA7B810-9DAD-11D1-80B4-00C04FD430C8", u), 0);
	assert_memory_equal(u, want, 16);
	assert_int_equal(uuid_parse("6ba7b8109dad11d180b400c04fd430c8", u), -EINVAL);
	assert_int_equal(uuid_parse("6ba7b810-9dad-11d1-80b4-00c04fd430c", u), -EINVAL);
	assert_int_equal(uuid_parse("6ba7b810-9dad-11d1-80b4-00c04fd430cg", u), -EINVAL);
	assert_int_equal(uuid_parse("6ba7b810+9dad-11d1-80b4-00c04fd430c8", u), -EINVAL);
	assert_int_equal(uuid_parse(NULL, u), -EINVAL);
}

static void test_pin(void **state)
{
	struct config c;
	char err[256];

	config_init(&c);
	assert_int_equal(bhyve_opt_pin(&c, "1:0", err, sizeof(err)), 0);
	assert_int_equal(bhyve_opt_pin(&c, "1:3", err, sizeof(err)), 0);
	assert_string_equal(config_get(&c, "vcpu.1.cpuset"), "0,3");
	assert_int_equal(bhyve_opt_pin(&c, "1", err, sizeof(err)), -EINVAL);
	assert_int_equal(bhyve_opt_pin(&c, "a:1", err, sizeof(err)), -EINVAL);
	assert_int_equal(bhyve_opt_pin(&c, "1:2x", err, sizeof(err)), -EINVAL);
	assert_int_equal(bhyve_opt_pin(&c, "1:99999", err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "VCPU:HOSTCPU"));
	config_free(&c);
}

static int check(const char *pair, unsigned ncpus, char *err)
{
	struct config c;
	int ret;

	config_init(&c);
	assert_int_equal(config_set_pair(&c, pair), 0);
	ret = bhyve_opts_check(&c, ncpus, err, 256);
	config_free(&c);
	return ret;
}

static void test_check(void **state)
{
	char err[256];

	assert_int_equal(check("vcpu.0.cpuset=0", 1, err), 0); /* CPU 0 is always there */
	assert_int_equal(check("vcpu.1.cpuset=0", 2, err), 0);
	assert_int_equal(check("vcpu.2.cpuset=0", 2, err), -EINVAL);
	assert_non_null(strstr(err, "the VM has 2 vCPUs"));
	assert_int_equal(check("vcpu.0.cpuset=3-1", 1, err), -EINVAL);
	assert_int_equal(check("vcpu.0.cpuset=", 1, err), -EINVAL);
	assert_int_equal(check("vcpu.0.cpuset=1000", 1, err), -EINVAL);
	assert_int_equal(check("uuid=x", 1, err), -EINVAL);
	assert_int_equal(check("memory.wired=sometimes", 1, err), -EINVAL);
	assert_non_null(strstr(err, "memory.wired=sometimes"));
	assert_int_equal(check("x86.x2apic=on", 1, err), 0);
}

static void test_alias(void **state)
{
	struct config c;

	config_init(&c);
	assert_int_equal(config_set(&c, "rtc.localtime", "false"), 0);
	assert_string_equal(config_get(&c, "rtc.use_localtime"), "false");
	assert_string_equal(config_get(&c, "rtc.localtime"), "false");
	assert_int_equal(c.n, 1);
	config_unset(&c, "rtc.localtime");
	assert_null(config_get(&c, "rtc.use_localtime"));
	config_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_uuid),
		cmocka_unit_test(test_pin),
		cmocka_unit_test(test_check),
		cmocka_unit_test(test_alias),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
