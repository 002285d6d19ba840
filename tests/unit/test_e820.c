// SPDX-License-Identifier: BSD-2-Clause
/* The e820 map against doc/platform.md, for guests around every boundary of the layout. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "arch/x86/e820.h"
#include "vm.h"

/* Sorted, non-overlapping, non-empty; returns the RAM total. */
static uint64_t check_map(const struct e820_entry *e, int n)
{
	uint64_t ram = 0;

	assert_true(n > 0);
	for (int i = 0; i < n; i++) {
		assert_true(e[i].size > 0);
		assert_true(e[i].addr + e[i].size > e[i].addr);
		assert_true(e[i].type == E820_RAM || e[i].type == E820_RESERVED);
		if (i)
			assert_true(e[i - 1].addr + e[i - 1].size <= e[i].addr);
		if (e[i].type == E820_RAM)
			ram += e[i].size;
	}
	return ram;
}

static const struct e820_entry *find(const struct e820_entry *e, int n, uint64_t addr)
{
	for (int i = 0; i < n; i++)
		if (e[i].addr == addr)
			return &e[i];
	fail_msg("no e820 entry at 0x%llx", (unsigned long long)addr);
	return NULL;
}

static void check_size(uint64_t ram_size)
{
	uint64_t low = ram_size < 3 * GiB ? ram_size : 3 * GiB;
	struct e820_entry e[E820_MAX_ENTRIES];
	const struct e820_entry *x;
	int n = e820_build(ram_size, e, E820_MAX_ENTRIES);
	uint64_t ram = check_map(e, n);

	/* Every byte of RAM is usable except the legacy hole 0x9FC00..1 MiB. */
	assert_int_equal(ram + (0x100000 - 0x9FC00), ram_size);
	x = find(e, n, 0);
	assert_int_equal(x->size, 0x9FC00);
	assert_int_equal(x->type, E820_RAM);
	x = find(e, n, 0x9FC00);
	assert_int_equal(x->size, 0x100000 - 0x9FC00);
	assert_int_equal(x->type, E820_RESERVED);
	x = find(e, n, 0x100000);
	assert_int_equal(x->size, low - 0x100000);
	assert_int_equal(x->type, E820_RAM);
	x = find(e, n, 0xE0000000);
	assert_int_equal(x->size, 0x100000);
	assert_int_equal(x->type, E820_RESERVED);
	for (int i = 0; i < n; i++) {
		/* Nothing usable in the PCI hole; the ACPI tables stay in reserved space. */
		if (e[i].type == E820_RAM)
			assert_true(e[i].addr + e[i].size <= 3 * GiB || e[i].addr >= 4 * GiB);
		if (e[i].type == E820_RAM)
			assert_false(e[i].addr <= 0xE0000 && e[i].addr + e[i].size > 0xE0000);
	}
	if (ram_size > 3 * GiB) {
		x = find(e, n, 4 * GiB);
		assert_int_equal(x->size, ram_size - 3 * GiB);
		assert_int_equal(x->type, E820_RAM);
		assert_ptr_equal(x, &e[n - 1]);
	} else {
		assert_true(e[n - 1].addr < 4 * GiB);
	}
}

static void test_e820_16m(void **state)
{
	check_size(16 * MiB);
}

static void test_e820_512m(void **state)
{
	check_size(512 * MiB);
}

static void test_e820_3g(void **state)
{
	check_size(3 * GiB);
}

static void test_e820_4g(void **state)
{
	check_size(4 * GiB);
}

static void test_e820_6g(void **state)
{
	check_size(6 * GiB);
}

static void test_e820_odd_size(void **state)
{
	check_size(3 * GiB + 4096);
	check_size(100 * MiB + 12345);
}

static void test_e820_refuses(void **state)
{
	struct e820_entry e[E820_MAX_ENTRIES];

	assert_int_equal(e820_build(16 * MiB - 1, e, E820_MAX_ENTRIES), -EINVAL);
	assert_int_equal(e820_build(0, e, E820_MAX_ENTRIES), -EINVAL);
	assert_int_equal(e820_build(6 * GiB, e, 3), -ENOSPC);
	assert_int_equal(e820_build(6 * GiB, e, 0), -ENOSPC);
}

static void test_e820_mmio64_window(void **state)
{
	uint64_t base, size;

	e820_mmio64_window(512 * MiB, &base, &size);
	assert_int_equal(base, 4 * GiB);
	assert_true(size >= GiB);
	e820_mmio64_window(6 * GiB + 1, &base, &size);
	assert_true(base >= 4 * GiB + 3 * GiB + 1);
	assert_int_equal(base % GiB, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_e820_16m),     cmocka_unit_test(test_e820_512m),
		cmocka_unit_test(test_e820_3g),	     cmocka_unit_test(test_e820_4g),
		cmocka_unit_test(test_e820_6g),	     cmocka_unit_test(test_e820_odd_size),
		cmocka_unit_test(test_e820_refuses), cmocka_unit_test(test_e820_mmio64_window),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
