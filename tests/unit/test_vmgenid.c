// SPDX-License-Identifier: BSD-2-Clause
/* VM Generation ID: the option, a fresh id in guest memory, a new one and a notify per restore. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "devsnap.h"

#include "config.h"
#include "dev/dev.h"
#include "dev/pc/vmgenid.h"
#include "sstream.h"
#include "vm.h"

#define ID_GPA 0xE0040ULL

static unsigned irq_rises;
static int irq_level;

static void rec_irq(struct vm *vm, unsigned gsi, int level)
{
	assert_int_equal(gsi, VMGENID_IRQ);
	if (level && !irq_level)
		irq_rises++;
	irq_level = level;
}

struct fixture {
	struct vm vm;
	struct config cfg;
	struct dev *d;
};

static struct fixture *fx_new(const char *opt, bool restoring, int expect)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char err[256] = "";

	vm_init_bare(&f->vm, true);
	config_init(&f->cfg);
	if (opt)
		assert_int_equal(config_set(&f->cfg, "vmgenid", opt), 0);
	f->vm.cfg = &f->cfg;
	f->vm.set_irq = rec_irq;
	assert_int_equal(vm_add_memory(&f->vm, 16 << 20), 0);
	assert_int_equal(vmgenid_create(&f->vm, restoring, err, sizeof(err)), expect);
	f->d = vm_find_dev(&f->vm, "vmgenid");
	irq_rises = 0;
	irq_level = 0;
	return f;
}

static void fx_free(struct fixture *f)
{
	vm_destroy(&f->vm);
	config_free(&f->cfg);
	free(f);
}

static void id_at(struct fixture *f, uint8_t out[VMGENID_SIZE])
{
	memcpy(out, vm_gpa(&f->vm, ID_GPA, VMGENID_SIZE), VMGENID_SIZE);
}

/* On by default for a boot, recorded in the configuration; off for an old snapshot. */
static void test_option(void **state)
{
	struct fixture *f = fx_new(NULL, false, 0);

	assert_non_null(f->d);
	assert_string_equal(config_get(&f->cfg, "vmgenid"), "on");
	fx_free(f);
	f = fx_new(NULL, true, 0);
	assert_null(f->d);
	assert_string_equal(config_get(&f->cfg, "vmgenid"), "off");
	fx_free(f);
	f = fx_new("off", false, 0);
	assert_null(f->d);
	fx_free(f);
	f = fx_new("maybe", false, -EINVAL);
	assert_null(f->d);
	fx_free(f);
}

/* A boot writes a random id; a save/load (a restore) writes another and notifies once. */
static void test_restore_changes_id(void **state)
{
	struct fixture *f = fx_new("on", false, 0);
	uint8_t a[VMGENID_SIZE], b[VMGENID_SIZE], c[VMGENID_SIZE], zero[VMGENID_SIZE] = { 0 };
	uint8_t *saved;
	size_t len;

	assert_int_equal(vmgenid_set_addr(f->d, ID_GPA), 0);
	id_at(f, a);
	assert_memory_not_equal(a, zero, VMGENID_SIZE);
	/* A checkpoint that is not restored: save and resume change nothing. */
	saved = devsnap_save_copy(f->d, &len);
	assert_int_equal(f->d->ops->resume(f->d), 0);
	id_at(f, b);
	assert_memory_equal(a, b, VMGENID_SIZE);
	assert_int_equal(irq_rises, 0);
	/* Each restore: a new id before anything runs, one edge once it runs. */
	assert_int_equal(devsnap_load(f->d, saved, len, 1), 0);
	id_at(f, b);
	assert_memory_not_equal(a, b, VMGENID_SIZE);
	assert_int_equal(irq_rises, 0);
	assert_int_equal(f->d->ops->resume(f->d), 0);
	assert_int_equal(irq_rises, 1);
	assert_int_equal(irq_level, 0);
	assert_int_equal(f->d->ops->resume(f->d), 0);
	assert_int_equal(irq_rises, 1);
	assert_int_equal(devsnap_load(f->d, saved, len, 1), 0);
	id_at(f, c);
	assert_memory_not_equal(b, c, VMGENID_SIZE);
	assert_memory_not_equal(a, c, VMGENID_SIZE);
	/* save, load, save: the same bytes. */
	{
		uint8_t *again;
		size_t len2;

		again = devsnap_save_copy(f->d, &len2);
		assert_int_equal(len, len2);
		assert_memory_equal(saved, again, len);
		free(again);
	}
	free(saved);
	fx_free(f);
}

/* The file chooses the address: misaligned, outside RAM or truncated is refused, unchanged. */
static void test_load_refused(void **state)
{
	struct fixture *f = fx_new("on", false, 0);
	uint64_t bad[] = { ID_GPA + 8, 16 << 20, (16 << 20) - 8, UINT64_MAX - 7 };
	uint8_t a[VMGENID_SIZE], b[VMGENID_SIZE];

	assert_int_equal(vmgenid_set_addr(f->d, ID_GPA), 0);
	id_at(f, a);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct sstream s;

		ss_init_save(&s);
		ss_u64(&s, &bad[i]);
		devsnap_expect_refused(f->d, s.buf, s.len, 1);
		ss_free(&s);
	}
	devsnap_expect_refused(f->d, "\x40\x00\x0e", 3, 1);
	id_at(f, b);
	assert_memory_equal(a, b, VMGENID_SIZE);
	assert_int_equal(f->d->ops->resume(f->d), 0);
	assert_int_equal(irq_rises, 0);
	fx_free(f);
}

/*
 * With -l bootrom the firmware places the ACPI tables: vmgenid is off by default there and
 * vmgenid=on is refused, saying why.
 */
static void test_bootrom(void **state)
{
	static const struct {
		const char *opt;
		int ret;
		const char *recorded;
	} cases[] = { { NULL, 0, "off" }, { "off", 0, "off" }, { "on", -EINVAL, NULL } };

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct vm vm;
		struct config cfg;
		char err[256] = "";

		vm_init_bare(&vm, true);
		config_init(&cfg);
		if (cases[i].opt)
			assert_int_equal(config_set(&cfg, "vmgenid", cases[i].opt), 0);
		vm.cfg = &cfg;
		vm.bootrom = (struct bootrom *)&cfg; /* only tested for NULL by vmgenid */
		assert_int_equal(vmgenid_create(&vm, false, err, sizeof(err)), cases[i].ret);
		assert_null(vm_find_dev(&vm, "vmgenid"));
		if (cases[i].recorded) {
			assert_string_equal(config_get(&cfg, "vmgenid"), cases[i].recorded);
			assert_string_equal(err, "");
		} else {
			assert_non_null(strstr(err, "not -l bootrom"));
		}
		vm.bootrom = NULL;
		vm_destroy(&vm);
		config_free(&cfg);
	}
}

/* An address the tables give that is not 16 bytes of RAM: -EFAULT, nothing written. */
static void test_addr_outside_ram(void **state)
{
	struct fixture *f = fx_new("on", false, 0);
	uint8_t a[VMGENID_SIZE], b[VMGENID_SIZE];

	assert_int_equal(vmgenid_set_addr(f->d, ID_GPA), 0);
	id_at(f, a);
	assert_int_equal(vmgenid_set_addr(f->d, (16 << 20) - 8), -EFAULT);
	assert_int_equal(vmgenid_set_addr(f->d, 16 << 20), -EFAULT);
	id_at(f, b);
	assert_memory_equal(a, b, VMGENID_SIZE);
	fx_free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_option),		 cmocka_unit_test(test_restore_changes_id),
		cmocka_unit_test(test_load_refused),	 cmocka_unit_test(test_bootrom),
		cmocka_unit_test(test_addr_outside_ram),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
