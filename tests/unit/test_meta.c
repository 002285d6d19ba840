// SPDX-License-Identifier: BSD-2-Clause
/*
 * The metadata section (snap/meta.c): what a save writes (the VM, its devices and their state
 * versions, the host CPU, the whole configuration) is what a restore reads back and checks
 * against the file's sections.
 */
#include <errno.h>
#include <json-c/json.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "dev/dev.h"
#include "snap/format.h"
#include "snap/meta.h"
#include "vm.h"

static const struct dev_ops uart_ops = { .name = "uart", .version = 3 };
static const struct dev_ops rtc_ops = { .name = "rtc", .version = 1 };

/* A file's table as a restore sees it: vCPU sections cpu0..cpu(n-1), devices uart@com1, rtc. */
static void file_of(struct snap_file *f, struct snap_section *sec, unsigned ncpus, uint64_t mem)
{
	unsigned n = 0;

	memset(f, 0, sizeof(*f));
	for (unsigned i = 0; i < ncpus; i++) {
		sec[n] = (struct snap_section){ .type = SNAP_SEC_VCPU, .version = 1 };
		snprintf(sec[n++].id, sizeof(sec[0].id), "cpu%u", i);
	}
	sec[n++] = (struct snap_section){ .type = SNAP_SEC_DEV, .version = 3, .id = "uart@com1" };
	sec[n++] = (struct snap_section){ .type = SNAP_SEC_DEV, .version = 1, .id = "rtc" };
	f->sections = sec;
	f->nsections = n;
	f->mem_size = mem;
}

static void test_build_read_back(void **state)
{
	struct dev uart = { .ops = &uart_ops, .id = "uart@com1" },
		   rtc = { .ops = &rtc_ops, .id = "rtc" };
	struct json_object *o, *v, *devs, *d;
	struct snap_section sec[8];
	struct snap_file f;
	struct config cfg, back;
	struct vm vm;
	char err[256] = "";
	char *json;

	vm_init_bare(&vm, true);
	vm.name = "metavm";
	vm.ncpus = 2;
	vm.ram_size = 64ULL << 20;
	uart.next = &rtc;
	vm.devs = &uart;
	config_init(&cfg);
	config_set(&cfg, "cpus", "2");
	config_set(&cfg, "memory.size", "64M");
	config_set(&cfg, "name", "metavm");
	config_set(&cfg, "lpc.com1.path", "stdio");
	json = snap_meta_build(&vm, &cfg);
	assert_non_null(json);

	o = json_tokener_parse(json);
	assert_non_null(o);
	assert_true(json_object_object_get_ex(o, "name", &v));
	assert_string_equal(json_object_get_string(v), "metavm");
	assert_true(json_object_object_get_ex(o, "vcpus", &v));
	assert_int_equal(json_object_get_int64(v), 2);
	assert_true(json_object_object_get_ex(o, "memory", &v));
	assert_int_equal(json_object_get_int64(v), 64LL << 20);
	assert_true(json_object_object_get_ex(o, "host_cpu", &v));
	assert_true(json_object_object_get_ex(v, "vendor", &d));
	assert_int_equal(strlen(json_object_get_string(d)), 12);
	assert_true(json_object_object_get_ex(v, "family", &d));
	assert_true(json_object_get_int64(d) > 0);
	assert_true(json_object_object_get_ex(o, "devices", &devs));
	assert_int_equal(json_object_array_length(devs), 2);
	d = json_object_array_get_idx(devs, 0);
	assert_true(json_object_object_get_ex(d, "type", &v));
	assert_string_equal(json_object_get_string(v), "uart");
	assert_true(json_object_object_get_ex(d, "version", &v));
	assert_int_equal(json_object_get_int64(v), 3);
	json_object_put(o);

	/* What a restore reads: the configuration as it was, and every check passes. */
	config_init(&back);
	assert_int_equal(snap_meta_config(json, &back, err, sizeof(err)), 0);
	assert_int_equal(back.n, cfg.n);
	for (unsigned i = 0; i < cfg.n; i++)
		assert_string_equal(config_get(&back, cfg.kv[i].key), cfg.kv[i].value);
	file_of(&f, sec, 2, 64ULL << 20);
	assert_int_equal(snap_meta_check(json, &back, &f, err, sizeof(err)), 0);
	/* A device section of another version than the metadata lists. */
	sec[2].version = 4;
	assert_int_equal(snap_meta_check(json, &back, &f, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "metadata: devices do not match the file's device sections");
	sec[2].version = 3;
	/* A memory.size that is no size. */
	config_set(&back, "memory.size", "lots");
	assert_int_equal(snap_meta_check(json, &back, &f, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "metadata: memory does not match memory.size");
	config_free(&back);
	config_free(&cfg);
	free(json);
	vm.devs = NULL;
	vm.name = NULL;
	vm_destroy(&vm);
}

/*
 * A hostile vCPU count (matching a hostile configuration) costs no more than looking for the
 * sections a VM can have: the file's two are not a thousand million.
 */
static void test_huge_vcpu_count(void **state)
{
	static const char json[] =
		"{\"vcpus\":1000000000,\"memory\":4096,\"devices\":[],\"config\":{}}";
	struct snap_section sec[8];
	struct snap_file f;
	struct config cfg;
	char err[256] = "";

	file_of(&f, sec, 2, 4096);
	config_init(&cfg);
	config_set(&cfg, "cpus", "1000000000");
	assert_int_equal(snap_meta_check(json, &cfg, &f, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "the file's vCPU sections are not cpu0..cpu999999999 for its "
				 "1000000000 vCPUs");
	config_free(&cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_build_read_back),
		cmocka_unit_test(test_huge_vcpu_count),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
