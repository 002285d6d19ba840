// SPDX-License-Identifier: BSD-2-Clause
/*
 * Snapshot clocks: the device clock held at one instant while a VM is saved or restored, and
 * a TSC read after the instant taken back to it.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "evloop.h"
#include "snap/clocks.h"
#include "vcpu.h"
#include "vm.h"

/* Frozen, the clock reads the same however long the save takes; thawed, it ran on. */
static void test_freeze_thaw(void **state)
{
	struct evloop ev;
	uint64_t t0, f, t1;

	assert_int_equal(evloop_init(&ev), 0);
	t0 = vclock_ns(&ev);
	f = vclock_freeze(&ev);
	assert_true(f >= t0);
	usleep(20000);
	assert_int_equal(vclock_ns(&ev), f);
	assert_int_equal(vclock_ns(&ev), f);
	vclock_thaw(&ev);
	t1 = vclock_ns(&ev);
	/* The time frozen counts: the running VM's other clocks went on too. */
	assert_true(t1 >= f + 20000000ULL);
	evloop_destroy(&ev);
}

/* Restore: set while frozen holds the new value, and the clock starts from it when thawed. */
static void test_set_while_frozen(void **state)
{
	struct evloop ev;
	uint64_t t, f;

	assert_int_equal(evloop_init(&ev), 0);
	vclock_set(&ev, 5000000000ULL);
	f = vclock_freeze(&ev);
	assert_true(f >= 5000000000ULL && f < 6000000000ULL);
	usleep(20000);
	assert_int_equal(vclock_ns(&ev), f);
	vclock_set(&ev, 7000000000ULL);
	assert_int_equal(vclock_ns(&ev), 7000000000ULL);
	vclock_thaw(&ev);
	t = vclock_ns(&ev);
	assert_true(t >= 7000000000ULL && t < 7000000000ULL + 1000000000ULL);
	evloop_destroy(&ev);
}

/* The manual clock of the unit tests freezes the same way. */
static void test_manual(void **state)
{
	struct evloop ev;

	evloop_init_manual(&ev, 1000);
	assert_int_equal(vclock_freeze(&ev), 1000);
	evloop_advance(&ev, 5000);
	assert_int_equal(vclock_ns(&ev), 1000);
	vclock_thaw(&ev);
	assert_int_equal(vclock_ns(&ev), 5000);
}

static void test_tsc_at(void **state)
{
	/* 2 GHz, read 1.5 ms after the instant: 3,000,000 ticks earlier. */
	assert_int_equal(snap_tsc_at(10000000000ULL, 1001500000ULL, 1000000000ULL, 2000000),
			 10000000000ULL - 3000000ULL);
	/* Read before (or at) the instant, or no frequency known: unchanged. */
	assert_int_equal(snap_tsc_at(42, 100, 200, 2000000), 42);
	assert_int_equal(snap_tsc_at(42, 300, 200, 0), 42);
	/* Never below zero, and no overflow for a long gap at a high rate. */
	assert_int_equal(snap_tsc_at(5, 2000000000ULL, 0, 4000000), 0);
	assert_int_equal(snap_tsc_at(UINT64_MAX, 3600ULL * 1000000000ULL, 0, 5000000),
			 UINT64_MAX - 3600ULL * 5000000000ULL);
}

/* A vCPU whose TSC cannot be read (here: no KVM vCPU behind it) has not moved. */
static void test_tsc_unreadable(void **state)
{
	struct vcpu v = { .fd = -1 };
	struct timespec ts;
	uint64_t at = 0, before;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	before = (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
	assert_int_equal(snap_tsc_since_ns(&v, 12345, &at), 0);
	/* The host time of the reading is still given: the time of the call. */
	assert_true(at >= before);
}

/*
 * The VM's clock cannot be read (no KVM VM): the sample fails with the reason, and the device
 * clock, frozen for the instant, runs again.
 */
static void test_sample_fails_thaws(void **state)
{
	struct snap_clocks c;
	struct vm vm;
	char err[128] = "";

	vm_init_bare(&vm, true);
	assert_int_equal(snap_clocks_sample(&vm, &c, err, sizeof(err)), -EBADF);
	assert_string_equal(err, "reading the KVM clock: Bad file descriptor");
	assert_null(c.tsc);
	evloop_advance(&vm.ev, 2000000000ULL);
	assert_int_equal(vclock_ns(&vm.ev), 2000000000ULL);
	vm_destroy(&vm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_freeze_thaw),    cmocka_unit_test(test_set_while_frozen),
		cmocka_unit_test(test_manual),	       cmocka_unit_test(test_tsc_at),
		cmocka_unit_test(test_tsc_unreadable), cmocka_unit_test(test_sample_fails_thaws),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
