// SPDX-License-Identifier: BSD-2-Clause
/* ACPI PM block, PM timer and reset register on a manual clock; snapshot round trip. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <cmocka.h>

#include "devsnap.h"

#include "dev/dev.h"
#include "dev/pc/pm.h"
#include "sstream.h"
#include "vm.h"

/* First nanosecond at which the count reaches 2^23, 2^24, 3 * 2^23 (rounded up). */
#define TOGGLE1_NS 2343484438ULL
#define TOGGLE2_NS 4686968875ULL
#define TOGGLE3_NS 7030453312ULL

static int sci_level;
static unsigned sci_rises;

static void rec_irq(struct vm *vm, unsigned gsi, int level)
{
	assert_int_equal(gsi, IRQ_SCI);
	if (level && !sci_level)
		sci_rises++;
	sci_level = level;
}

struct fixture {
	struct vm vm;
	struct dev *d;
	uint64_t t0;
};

static struct fixture *fx_new(uint64_t now)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char err[128];

	vm_init_bare(&f->vm, true);
	if (now)
		vclock_set(&f->vm.ev, now);
	f->vm.set_irq = rec_irq;
	f->t0 = vclock_ns(&f->vm.ev);
	f->d = pm_create(&f->vm, err, sizeof(err));
	assert_non_null(f->d);
	assert_string_equal(f->d->id, "pm");
	return f;
}

static void fx_free(struct fixture *f)
{
	vm_destroy(&f->vm);
	free(f);
}

static int setup(void **state)
{
	sci_level = 0;
	sci_rises = 0;
	*state = fx_new(0);
	return 0;
}

static int teardown(void **state)
{
	fx_free(*state);
	return 0;
}

static uint32_t in(struct vm *vm, uint16_t port, unsigned size)
{
	uint8_t b[4];

	assert_true(bus_access(&vm->pio, port, b, size, false));
	return (uint32_t)io_get(b, size);
}

static void out(struct vm *vm, uint16_t port, unsigned size, uint32_t v)
{
	uint8_t b[4];

	io_put(b, size, v);
	assert_true(bus_access(&vm->pio, port, b, size, true));
}

static void at(struct fixture *f, uint64_t ns)
{
	evloop_advance(&f->vm.ev, f->t0 + ns);
}

static void test_pm_timer_value(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(in(&f->vm, PM_TMR_PORT, 4), 0);
	at(f, 279);
	assert_int_equal(in(&f->vm, PM_TMR_PORT, 4), 0);
	at(f, 280);
	assert_int_equal(in(&f->vm, PM_TMR_PORT, 4), 1);
	at(f, 1000000000);
	assert_int_equal(in(&f->vm, PM_TMR_PORT, 4), 3579545);
	/* Narrow reads see the same count, byte by byte. */
	assert_int_equal(in(&f->vm, PM_TMR_PORT, 1), 3579545 & 0xff);
	assert_int_equal(in(&f->vm, PM_TMR_PORT + 2, 1), (3579545 >> 16) & 0xff);
	assert_int_equal(in(&f->vm, PM_TMR_PORT + 3, 1), 0);
	/* 24-bit wrap: 5 s is 17897725 ticks. */
	at(f, 5000000000ULL);
	assert_int_equal(in(&f->vm, PM_TMR_PORT, 4), 17897725 & 0xffffff);
	/* Read-only. */
	out(&f->vm, PM_TMR_PORT, 4, 0);
	assert_int_equal(in(&f->vm, PM_TMR_PORT, 4), 17897725 & 0xffffff);
}

static void test_tmr_sts_and_sci(void **state)
{
	struct fixture *f = *state;

	out(&f->vm, PM1A_EVT_PORT + 2, 2, PM1_TMR_EN);
	assert_int_equal(in(&f->vm, PM1A_EVT_PORT + 2, 2), PM1_TMR_EN);
	at(f, TOGGLE1_NS - 1);
	assert_int_equal(sci_rises, 0);
	assert_int_equal(in(&f->vm, PM1A_EVT_PORT, 2), 0);
	at(f, TOGGLE1_NS);
	assert_int_equal(sci_rises, 1);
	assert_int_equal(sci_level, 1);
	assert_int_equal(in(&f->vm, PM1A_EVT_PORT, 2), PM1_TMR_STS);
	/* Writing 0 clears nothing; writing 1 clears and drops the SCI. */
	out(&f->vm, PM1A_EVT_PORT, 2, 0);
	assert_int_equal(in(&f->vm, PM1A_EVT_PORT, 2), PM1_TMR_STS);
	out(&f->vm, PM1A_EVT_PORT, 2, PM1_TMR_STS);
	assert_int_equal(in(&f->vm, PM1A_EVT_PORT, 2), 0);
	assert_int_equal(sci_level, 0);
	/* The wrap of the 24-bit counter is the next toggle. */
	at(f, TOGGLE2_NS - 1);
	assert_int_equal(sci_level, 0);
	at(f, TOGGLE2_NS);
	assert_int_equal(sci_level, 1);
	assert_int_equal(in(&f->vm, PM_TMR_PORT, 4), 0);
	/* A dword write to the block clears status and keeps the enable. */
	out(&f->vm, PM1A_EVT_PORT, 4, PM1_TMR_STS | (uint32_t)PM1_TMR_EN << 16);
	assert_int_equal(sci_level, 0);
	assert_int_equal(in(&f->vm, PM1A_EVT_PORT, 4), (uint32_t)PM1_TMR_EN << 16);
	/* With TMR_EN clear, TMR_STS is still set on a toggle, but there is no SCI. */
	out(&f->vm, PM1A_EVT_PORT + 2, 2, 0);
	at(f, TOGGLE3_NS);
	assert_int_equal(sci_level, 0);
	assert_int_equal(in(&f->vm, PM1A_EVT_PORT, 2), PM1_TMR_STS);
	/* Enabling with status pending raises the SCI at once. */
	out(&f->vm, PM1A_EVT_PORT + 2, 2, PM1_TMR_EN);
	assert_int_equal(sci_level, 1);
	/* SCI_EN gates it. */
	out(&f->vm, PM1A_CNT_PORT, 2, 0);
	assert_int_equal(sci_level, 0);
	out(&f->vm, PM1A_CNT_PORT, 2, PM1_SCI_EN);
	assert_int_equal(sci_level, 1);
	assert_int_equal(sci_rises, 4);
}

static void test_power_button(void **state)
{
	struct fixture *f = *state;

	/* Reset state: ACPI mode (no SMI command port), nothing enabled. */
	assert_int_equal(in(&f->vm, PM1A_CNT_PORT, 2), PM1_SCI_EN);
	pm_power_button(f->d);
	assert_int_equal(in(&f->vm, PM1A_EVT_PORT, 2), PM1_PWRBTN_STS);
	assert_int_equal(sci_level, 0);
	out(&f->vm, PM1A_EVT_PORT + 2, 2, PM1_PWRBTN_EN);
	assert_int_equal(in(&f->vm, PM1A_EVT_PORT + 2, 2), PM1_PWRBTN_EN);
	assert_int_equal(sci_level, 1);
	/* Byte write to the status high byte clears PWRBTN_STS. */
	out(&f->vm, PM1A_EVT_PORT + 1, 1, PM1_PWRBTN_STS >> 8);
	assert_int_equal(sci_level, 0);
	assert_int_equal(in(&f->vm, PM1A_EVT_PORT, 2), 0);
}

/*
 * ACPICA enables GBL_EN and RTC_EN at boot and reads them back: a bit that does not stick is
 * "Could not enable GlobalLock event" / "No response from Global Lock hardware" /
 * "Could not enable RealTimeClock event" on Linux.  Every event the block has must stick;
 * bits it does not have read back as 0.
 */
static void test_enable_bits_stick(void **state)
{
	struct fixture *f = *state;
	const uint16_t all = PM1_TMR_EN | PM1_GBL_EN | PM1_PWRBTN_EN | PM1_RTC_EN;

	out(&f->vm, PM1A_EVT_PORT + 2, 2, PM1_GBL_EN);
	assert_int_equal(in(&f->vm, PM1A_EVT_PORT + 2, 2), PM1_GBL_EN);
	out(&f->vm, PM1A_EVT_PORT + 2, 2, PM1_GBL_EN | PM1_RTC_EN);
	assert_int_equal(in(&f->vm, PM1A_EVT_PORT + 2, 2), PM1_GBL_EN | PM1_RTC_EN);
	/* ACPICA's read-modify-write of the enable register, one byte at a time too. */
	out(&f->vm, PM1A_EVT_PORT + 3, 1, (PM1_RTC_EN | PM1_PWRBTN_EN) >> 8);
	assert_int_equal(in(&f->vm, PM1A_EVT_PORT + 2, 2), PM1_GBL_EN | PM1_RTC_EN | PM1_PWRBTN_EN);
	out(&f->vm, PM1A_EVT_PORT + 2, 2, 0xFFFF);
	assert_int_equal(in(&f->vm, PM1A_EVT_PORT + 2, 2), all);
	out(&f->vm, PM1A_EVT_PORT + 2, 2, 0);
	assert_int_equal(in(&f->vm, PM1A_EVT_PORT + 2, 2), 0);
	assert_int_equal(sci_level, 0);
}

/* The RTC's alarm sets RTC_STS; the SCI follows RTC_EN; write 1 clears. */
static void test_rtc_sts(void **state)
{
	struct fixture *f = *state;

	pm_rtc_alarm(f->d);
	assert_int_equal(in(&f->vm, PM1A_EVT_PORT, 2), PM1_RTC_STS);
	assert_int_equal(sci_level, 0);
	out(&f->vm, PM1A_EVT_PORT + 2, 2, PM1_RTC_EN);
	assert_int_equal(sci_level, 1);
	out(&f->vm, PM1A_EVT_PORT, 2, PM1_RTC_STS);
	assert_int_equal(sci_level, 0);
	assert_int_equal(in(&f->vm, PM1A_EVT_PORT, 2), 0);
	pm_rtc_alarm(f->d);
	assert_int_equal(sci_level, 1);
	assert_int_equal(sci_rises, 2);
}

#define FACS_GPA 0x1000
#define RAM_SIZE 0x4000

/* Guest RAM with a FACS in it; vm_destroy unmaps it. */
static uint32_t *gl_setup(struct fixture *f)
{
	void *ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
			 0);

	assert_true(ram != MAP_FAILED);
	f->vm.mem[0] = (struct mem_region){ .gpa = 0, .size = RAM_SIZE, .hva = ram };
	f->vm.nmem = 1;
	f->vm.ram_size = RAM_SIZE;
	/* Not aligned, outside RAM, or none at all: refused. */
	assert_int_equal(pm_set_facs(f->d, FACS_GPA + 8), -EINVAL);
	assert_int_equal(pm_set_facs(f->d, RAM_SIZE - 32), -EINVAL);
	assert_int_equal(pm_set_facs(f->d, RAM_SIZE), -EINVAL);
	assert_int_equal(pm_set_facs(f->d, 0), -EINVAL);
	assert_int_equal(pm_global_lock_acquire(f->d), -ENODEV);
	assert_int_equal(pm_set_facs(f->d, FACS_GPA), 0);
	return (uint32_t *)((uint8_t *)ram + FACS_GPA + FACS_GLOBAL_LOCK_OFFSET);
}

/* What ACPI (5.2.10.1) has the OS do on the lock dword: returns true when acquired. */
static bool os_acquire(uint32_t *gl)
{
	uint32_t old = *gl, new = (old & ~3u) | GL_OWNED | ((old & GL_OWNED) ? GL_PENDING : 0);

	*gl = new;
	return !(new &GL_PENDING);
}

/* Returns true when the other side was waiting (the OS must then write GBL_RLS). */
static bool os_release(uint32_t *gl)
{
	uint32_t old = *gl;

	*gl = old & ~3u;
	return old & GL_PENDING;
}

static void test_global_lock_free(void **state)
{
	struct fixture *f = *state;
	uint32_t *gl = gl_setup(f);

	assert_int_equal(pm_global_lock_release(f->d), -EPERM);
	assert_int_equal(pm_global_lock_acquire(f->d), 0);
	assert_true(pm_global_lock_owned(f->d));
	assert_int_equal(*gl, GL_OWNED);
	assert_int_equal(pm_global_lock_acquire(f->d), 0); /* already ours */
	assert_int_equal(pm_global_lock_release(f->d), 0);
	assert_false(pm_global_lock_owned(f->d));
	assert_int_equal(*gl, 0);
	/* Nobody waited: no GBL_STS. */
	assert_int_equal(in(&f->vm, PM1A_EVT_PORT, 2), 0);
}

/* The OS holds the lock: khyve sets pending and gets the lock when the OS writes GBL_RLS. */
static void test_global_lock_os_holds(void **state)
{
	struct fixture *f = *state;
	uint32_t *gl = gl_setup(f);

	assert_true(os_acquire(gl));
	assert_int_equal(pm_global_lock_acquire(f->d), -EBUSY);
	assert_false(pm_global_lock_owned(f->d));
	assert_int_equal(*gl, GL_OWNED | GL_PENDING);
	/* A GBL_RLS before the OS released changes nothing (the lock is still the OS's). */
	out(&f->vm, PM1A_CNT_PORT, 2, PM1_SCI_EN | PM1_GBL_RLS);
	assert_false(pm_global_lock_owned(f->d));
	assert_int_equal(*gl, GL_OWNED | GL_PENDING);
	assert_true(os_release(gl));
	out(&f->vm, PM1A_CNT_PORT, 2, PM1_SCI_EN | PM1_GBL_RLS);
	assert_true(pm_global_lock_owned(f->d));
	assert_int_equal(*gl, GL_OWNED);
	/* GBL_RLS is write-only; SCI_EN stays. */
	assert_int_equal(in(&f->vm, PM1A_CNT_PORT, 2), PM1_SCI_EN);
	assert_int_equal(pm_global_lock_release(f->d), 0);
	assert_int_equal(*gl, 0);
}

/* khyve holds the lock, the OS waits: release sets GBL_STS (BIOS_RLS), the SCI wakes the OS. */
static void test_global_lock_os_waits(void **state)
{
	struct fixture *f = *state;
	uint32_t *gl = gl_setup(f);

	out(&f->vm, PM1A_EVT_PORT + 2, 2, PM1_GBL_EN);
	assert_int_equal(pm_global_lock_acquire(f->d), 0);
	assert_false(os_acquire(gl));
	assert_int_equal(*gl, GL_OWNED | GL_PENDING);
	assert_int_equal(sci_level, 0);
	assert_int_equal(pm_global_lock_release(f->d), 0);
	assert_int_equal(*gl, 0);
	assert_int_equal(in(&f->vm, PM1A_EVT_PORT, 2), PM1_GBL_STS);
	assert_int_equal(sci_level, 1);
	/* The OS's SCI handler clears GBL_STS and takes the lock. */
	out(&f->vm, PM1A_EVT_PORT, 2, PM1_GBL_STS);
	assert_int_equal(sci_level, 0);
	assert_true(os_acquire(gl));
	assert_int_equal(*gl, GL_OWNED);
}

/* Version 2 keeps the FACS and who waits for the lock; version 1 streams still load. */
static void test_snapshot_global_lock(void **state)
{
	struct fixture *f = *state, *g;
	uint32_t *gl = gl_setup(f), *gl2;
	uint8_t *a, *b;
	size_t alen, blen;

	assert_true(os_acquire(gl));
	assert_int_equal(pm_global_lock_acquire(f->d), -EBUSY);
	a = devsnap_save_copy(f->d, &alen);
	assert_int_equal(alen, 11 + 8 + 2);

	g = fx_new(0);
	gl2 = gl_setup(g);
	*gl2 = *gl; /* the FACS comes back with guest memory */
	assert_int_equal(pm_set_facs(g->d, FACS_GPA + 64), 0);
	assert_int_equal(devsnap_load(g->d, a, alen, 2), 0);
	b = devsnap_save_copy(g->d, &blen);
	assert_int_equal(alen, blen);
	assert_memory_equal(a, b, alen);
	free(b);
	/* The restored platform still waits, at the saved FACS. */
	assert_true(os_release(gl2));
	out(&g->vm, PM1A_CNT_PORT, 2, PM1_SCI_EN | PM1_GBL_RLS);
	assert_true(pm_global_lock_owned(g->d));
	assert_int_equal(*gl2, GL_OWNED);

	/* Refused: owned and waiting at once, an unaligned FACS, lock state without a FACS. */
	b = malloc(alen);
	memcpy(b, a, alen);
	b[19] = 1;
	devsnap_expect_refused(g->d, b, alen, 2);
	memcpy(b, a, alen);
	b[11] |= 8;
	devsnap_expect_refused(g->d, b, alen, 2);
	memcpy(b, a, alen);
	memset(b + 11, 0, 8);
	devsnap_expect_refused(g->d, b, alen, 2);
	memcpy(b, a, alen);
	b[20] = 2;
	devsnap_expect_refused(g->d, b, alen, 2);
	/* Version 1 has no FACS fields: its 11 bytes load, and more than 11 do not. */
	assert_int_equal(devsnap_load(g->d, a, 11, 1), 0);
	assert_false(pm_global_lock_owned(g->d));
	assert_int_equal(pm_global_lock_acquire(g->d), -ENODEV);
	assert_int_not_equal(devsnap_load(g->d, a, alen, 1), 0);
	free(b);
	free(a);
	fx_free(g);
}

static void test_sleep_states(void **state)
{
	struct fixture *f = *state;

	/* S1 (and SLP_TYP without SLP_EN) are ignored. */
	out(&f->vm, PM1A_CNT_PORT, 2, PM1_SCI_EN | 1 << PM1_SLP_TYP_SHIFT | PM1_SLP_EN);
	out(&f->vm, PM1A_CNT_PORT, 2, PM1_SCI_EN | SLP_TYP_S5 << PM1_SLP_TYP_SHIFT);
	assert_int_equal(atomic_load(&f->vm.exit_status), -1);
	/* SLP_EN reads back as 0; SLP_TYP is kept. */
	assert_int_equal(in(&f->vm, PM1A_CNT_PORT, 2), PM1_SCI_EN | SLP_TYP_S5 << 10);
	/* S5 with SLP_EN, written as the high byte alone: power off. */
	out(&f->vm, PM1A_CNT_PORT + 1, 1, (SLP_TYP_S5 << 10 | PM1_SLP_EN) >> 8);
	assert_int_equal(atomic_load(&f->vm.exit_status), VM_EXIT_POWEROFF);
}

static void test_reset(void **state)
{
	struct fixture *f = *state, *g;

	/* Linux's reboot=pci: 0x2 selects a hard reset, then 0x6 starts it. */
	out(&f->vm, RESET_PORT, 1, 0x2);
	assert_int_equal(atomic_load(&f->vm.exit_status), -1);
	assert_int_equal(in(&f->vm, RESET_PORT, 1), 0x2);
	out(&f->vm, RESET_PORT, 1, 0x6);
	assert_int_equal(atomic_load(&f->vm.exit_status), VM_EXIT_REBOOT);
	assert_int_equal(in(&f->vm, RESET_PORT, 1), 0x2); /* RST_CPU self-clears */

	g = fx_new(0);
	out(&g->vm, RESET_PORT, 1, 0xE);
	assert_int_equal(atomic_load(&g->vm.exit_status), VM_EXIT_REBOOT);
	fx_free(g);
	/* The reset register is one byte: 0xCF8 is not ours. */
	uint8_t b[4] = { 0 };

	assert_false(bus_access(&f->vm.pio, 0xCF8, b, 4, false));
	assert_false(bus_access(&f->vm.pio, 0xCF9, b, 2, false));
}

static void test_snapshot(void **state)
{
	struct fixture *f = *state, *g;
	uint8_t *a, *b;
	size_t alen, blen;

	out(&f->vm, PM1A_EVT_PORT + 2, 2, PM1_TMR_EN | PM1_PWRBTN_EN);
	out(&f->vm, RESET_PORT, 1, 0x8);
	at(f, TOGGLE1_NS + 1000000);
	assert_int_equal(sci_level, 1);
	a = devsnap_save_copy(f->d, &alen);

	/* Into a VM whose clock is elsewhere: the timer continues from the saved count. */
	g = fx_new(123456789000ULL);
	sci_level = 0;
	assert_int_equal(devsnap_load(g->d, a, alen, g->d->ops->version), 0);
	assert_int_equal(sci_level, 1); /* SCI driven again */
	assert_int_equal(in(&g->vm, PM_TMR_PORT, 4), 8388608 + 3579);
	assert_int_equal(in(&g->vm, PM1A_EVT_PORT, 4),
			 PM1_TMR_STS | (uint32_t)(PM1_TMR_EN | PM1_PWRBTN_EN) << 16);
	assert_int_equal(in(&g->vm, RESET_PORT, 1), 0x8);
	b = devsnap_save_copy(g->d, &blen);
	assert_int_equal(alen, blen);
	assert_memory_equal(a, b, alen);
	free(b);
	/* The toggle timer was re-armed: bit 23 falls at the wrap, 8388608 - 3579 ticks on. */
	out(&g->vm, PM1A_EVT_PORT, 2, PM1_TMR_STS);
	assert_int_equal(sci_level, 0);
	evloop_advance(&g->vm.ev, g->t0 + 2342484590ULL - 1);
	assert_int_equal(sci_level, 0);
	assert_int_equal(in(&g->vm, PM_TMR_PORT, 4), 0xffffff);
	evloop_advance(&g->vm.ev, g->t0 + 2342484590ULL);
	assert_int_equal(sci_level, 1);
	assert_int_equal(in(&g->vm, PM_TMR_PORT, 4) >> 23, 0);

	/* Truncated and overlong streams are refused. */
	for (size_t n = 0; n < alen; n++)
		assert_int_not_equal(devsnap_load(g->d, a, n, g->d->ops->version), 0);
	b = calloc(1, alen + 1);
	memcpy(b, a, alen);
	assert_int_not_equal(devsnap_load(g->d, b, alen + 1, g->d->ops->version), 0);
	/* Out-of-range values: unknown status bit, timer beyond 24 bits, SLP_EN stored. */
	memcpy(b, a, alen);
	b[0] |= 0x02;
	assert_int_equal(devsnap_load(g->d, b, alen, g->d->ops->version), -EINVAL);
	memcpy(b, a, alen);
	b[7 + 3] = 1; /* top byte of the timer */
	assert_int_equal(devsnap_load(g->d, b, alen, g->d->ops->version), -EINVAL);
	memcpy(b, a, alen);
	b[5] |= PM1_SLP_EN >> 8;
	assert_int_equal(devsnap_load(g->d, b, alen, g->d->ops->version), -EINVAL);
	free(b);
	free(a);
	fx_free(g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_pm_timer_value, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tmr_sts_and_sci, setup, teardown),
		cmocka_unit_test_setup_teardown(test_power_button, setup, teardown),
		cmocka_unit_test_setup_teardown(test_enable_bits_stick, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rtc_sts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_global_lock_free, setup, teardown),
		cmocka_unit_test_setup_teardown(test_global_lock_os_holds, setup, teardown),
		cmocka_unit_test_setup_teardown(test_global_lock_os_waits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_global_lock, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sleep_states, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reset, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
