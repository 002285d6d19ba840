// SPDX-License-Identifier: BSD-2-Clause
/*
 * The convergence rule of live migration (snap/precopy.h, mig_converge): when the pre-copy
 * rounds stop.  The dirty set, plus the hand-over's share, must fit the downtime budget at
 * the bandwidth measured so far, else the rounds end at max_rounds or when the dirty set has
 * stopped shrinking (with auto-converge: only once the throttle is at its most).  And the
 * throttle auto-converge asks for (mig_throttle): when it starts, how it grows, its cap.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "snap/precopy.h"

#define MS 1000000ULL
#define PAGE_WIRE (4096 + 32) /* a page and its share of a MEM frame's header */

static const struct mig_policy pol = { .max_downtime_ns = 20 * MS,
				       .max_rounds = 10,
				       .stall_rounds = 3 };

/* A round that sent @pages at 1 GB/s (one page a 4128 ns) and left @dirty pages written. */
static struct mig_round rnd(uint64_t pages, uint64_t dirty)
{
	return (struct mig_round){ pages, pages * PAGE_WIRE, pages * PAGE_WIRE, dirty, 0 };
}

static void test_fits(void **state)
{
	struct mig_round r[2] = { rnd(100000, 100000), rnd(100000, 4000) };
	uint64_t est;

	/* 100000 pages left at 1 GB/s: 413 ms, far over 20 ms. */
	assert_int_equal(mig_converge(&pol, r, 1, &est), MIG_AGAIN);
	assert_int_equal(est, 100000ULL * PAGE_WIRE);
	/* 4000 pages: 16.5 ms, within 20. */
	assert_int_equal(mig_converge(&pol, r, 2, &est), MIG_FITS);
	assert_int_equal(est, 4000ULL * PAGE_WIRE);
	/* The same with half the bandwidth is 33 ms: one more round. */
	r[0].ns *= 2;
	r[1].ns *= 2;
	assert_int_equal(mig_converge(&pol, r, 2, &est), MIG_AGAIN);
	assert_int_equal(est, 8000ULL * PAGE_WIRE);
}

/*
 * With a floor: within the budget, one more round while the last halved the dirty set (left at
 * most half of what it sent) and its pages would take longer than the floor to send.
 */
static void test_floor(void **state)
{
	struct mig_policy p = pol;
	struct mig_round r[3] = { rnd(100000, 100000), rnd(100000, 4000), rnd(4000, 1000) };
	uint64_t est;

	p.floor_ns = MS / 2;
	/* 4000 pages (16.5 ms) fit, and the round left 4000 of 100000: go on. */
	assert_int_equal(mig_converge(&p, r, 2, &est), MIG_AGAIN);
	assert_int_equal(est, 4000ULL * PAGE_WIRE);
	/* 1000 of 4000 left: still halving, 4.1 ms above the floor: go on. */
	assert_int_equal(mig_converge(&p, r, 3, &est), MIG_AGAIN);
	/* 3000 of 4000 left: not halving any more, and it fits: pause. */
	r[2].dirty = 3000;
	assert_int_equal(mig_converge(&p, r, 3, &est), MIG_FITS);
	/* 100 pages (0.41 ms) are under the floor: pause, halving or not. */
	r[2].dirty = 100;
	assert_int_equal(mig_converge(&p, r, 3, &est), MIG_FITS);
	/* No round left: pause. */
	r[2].dirty = 1000;
	p.max_rounds = 3;
	assert_int_equal(mig_converge(&p, r, 3, &est), MIG_FITS);
	/* Without a floor the rounds stop as soon as the pages fit (the default for checkpoints). */
	p = pol;
	assert_int_equal(mig_converge(&p, r, 2, &est), MIG_FITS);
	(void)state;
}

static void test_nothing_dirty(void **state)
{
	struct mig_round r = rnd(1000, 0);
	uint64_t est;

	assert_int_equal(mig_converge(&pol, &r, 1, &est), MIG_FITS);
	assert_int_equal(est, 0);
	/* Nothing measured (no bytes, no time) and something dirty: no estimate, go on. */
	r = (struct mig_round){ 0, 0, 0, 5, 0 };
	assert_int_equal(mig_converge(&pol, &r, 1, &est), MIG_AGAIN);
	assert_int_equal(est, UINT64_MAX);
}

static void test_max_rounds(void **state)
{
	struct mig_round r[10];
	uint64_t est;

	/* Shrinking, but never enough: the 10th round is the last. */
	for (unsigned i = 0; i < 10; i++)
		r[i] = rnd(200000, 100000 - i * 1000);
	assert_int_equal(mig_converge(&pol, r, 9, &est), MIG_AGAIN);
	assert_int_equal(mig_converge(&pol, r, 10, &est), MIG_ROUNDS);
	/* A budget the last set fits wins over the round limit. */
	r[9].dirty = 10;
	assert_int_equal(mig_converge(&pol, r, 10, &est), MIG_FITS);
}

static void test_stalled(void **state)
{
	struct mig_round r[6] = { rnd(50000, 30000), rnd(30000, 20000), rnd(20000, 21000),
				  rnd(21000, 20500), rnd(20500, 22000), rnd(22000, 19000) };
	uint64_t est;

	assert_int_equal(mig_converge(&pol, r, 3, &est), MIG_AGAIN); /* too few to tell */
	/* Rounds 2-4 left 20000 at best, fewer than round 1's 30000: shrinking. */
	assert_int_equal(mig_converge(&pol, r, 4, &est), MIG_AGAIN);
	/* Rounds 3-5 left 21000, 20500, 22000: none below the 20000 of round 2. */
	assert_int_equal(mig_converge(&pol, r, 5, &est), MIG_STALLED);
	/* Round 6 left 19000: shrinking again. */
	assert_int_equal(mig_converge(&pol, r, 6, &est), MIG_AGAIN);
}

static void test_handover(void **state)
{
	struct mig_policy p = pol;
	struct mig_round r[2] = { rnd(100000, 100000), rnd(100000, 4000) };
	uint64_t est;

	/* 4000 pages are 16.5 ms: within 20 ms alone, not with 8 ms of hand-over on top. */
	p.handover_ns = 8 * MS;
	assert_int_equal(mig_converge(&p, r, 2, &est), MIG_AGAIN);
	assert_int_equal(est, 4000ULL * PAGE_WIRE + 8 * MS);
	/* 2000 pages (8.3 ms) and the hand-over fit. */
	r[1].dirty = 2000;
	assert_int_equal(mig_converge(&p, r, 2, &est), MIG_FITS);
	assert_int_equal(est, 2000ULL * PAGE_WIRE + 8 * MS);
	/* Nothing dirty still leaves the hand-over. */
	r[1].dirty = 0;
	assert_int_equal(mig_converge(&p, r, 2, &est), MIG_FITS);
	assert_int_equal(est, 8 * MS);
	/* A share larger than half the budget counts as half: a 15 ms one is 10 ms here. */
	p.handover_ns = 15 * MS;
	r[1].dirty = 2000;
	assert_int_equal(mig_converge(&p, r, 2, &est), MIG_FITS);
	assert_int_equal(est, 2000ULL * PAGE_WIRE + 10 * MS);
}

static const struct mig_policy ac = { .max_downtime_ns = 20 * MS,
				      .max_rounds = 30,
				      .stall_rounds = 3,
				      .autoconverge = true,
				      .throttle_initial = 20,
				      .throttle_increment = 10 };

static void test_throttle_starts(void **state)
{
	struct mig_round r[3] = { rnd(30000, 30000), rnd(30000, 3000), rnd(3000, 3000) };
	struct mig_policy off = ac;

	/* Round 1 sends the whole guest: however much was written meanwhile, no throttle. */
	assert_int_equal(mig_throttle(&ac, r, 1), 0);
	/* Round 2 brought 30000 down to 3000: the dirty set shrinks on its own. */
	assert_int_equal(mig_throttle(&ac, r, 2), 0);
	/* Round 3 sent 3000 and 3000 were written again: throttle, at the initial 20%. */
	assert_int_equal(mig_throttle(&ac, r, 3), 20);
	/* Exactly half written again is still shrinking. */
	r[2].dirty = 1500;
	assert_int_equal(mig_throttle(&ac, r, 3), 0);
	r[2].dirty = 1501;
	assert_int_equal(mig_throttle(&ac, r, 3), 20);
	/* Without auto-converge, never. */
	off.autoconverge = false;
	assert_int_equal(mig_throttle(&off, r, 3), 0);
}

static void test_throttle_grows_caps(void **state)
{
	struct mig_round r[2] = { rnd(30000, 30000), rnd(3000, 3000) };
	struct mig_policy p = ac;

	/* Each round that does not shrink it adds the increment to the throttle it ran at. */
	r[1].throttle = 20;
	assert_int_equal(mig_throttle(&p, r, 2), 30);
	r[1].throttle = 90;
	assert_int_equal(mig_throttle(&p, r, 2), 99);
	r[1].throttle = 99;
	assert_int_equal(mig_throttle(&p, r, 2), 99);
	/* A round that shrank it keeps the throttle as it is. */
	r[1].throttle = 50;
	r[1].dirty = 1000;
	assert_int_equal(mig_throttle(&p, r, 2), 50);
	/* Other steps: 50% at first, then +30%. */
	p.throttle_initial = 50;
	p.throttle_increment = 30;
	r[1].throttle = 0;
	r[1].dirty = 3000;
	assert_int_equal(mig_throttle(&p, r, 2), 50);
	r[1].throttle = 50;
	assert_int_equal(mig_throttle(&p, r, 2), 80);
	r[1].throttle = 80;
	assert_int_equal(mig_throttle(&p, r, 2), 99);
}

static void test_throttle_stall(void **state)
{
	struct mig_round r[8];
	struct mig_policy p = ac;
	uint64_t est;

	/* 10000 pages stay dirty every round (41 ms), throttled ever harder. */
	for (unsigned i = 0; i < 8; i++)
		r[i] = rnd(10000, 10000);
	r[0] = rnd(100000, 10000);
	for (unsigned i = 1; i < 8; i++)
		r[i].throttle = i < 3 ? 0 : 20 + (i - 3) * 10;
	/* Stalled since round 2, yet a harder throttle may help: go on. */
	assert_int_equal(mig_converge(&pol, r, 5, &est), MIG_STALLED);
	assert_int_equal(mig_converge(&ac, r, 5, &est), MIG_AGAIN);
	assert_int_equal(mig_converge(&ac, r, 8, &est), MIG_AGAIN);
	/* At the most (99%) and still not shrinking: stalled for good. */
	r[7].throttle = 99;
	assert_int_equal(mig_converge(&ac, r, 8, &est), MIG_STALLED);
	/* The round limit holds whatever the throttle. */
	r[7].throttle = 40;
	p.max_rounds = 8;
	assert_int_equal(mig_converge(&p, r, 8, &est), MIG_ROUNDS);
}

static void test_names(void **state)
{
	assert_string_equal(mig_verdict_name(MIG_FITS), "fits the downtime budget");
	assert_string_equal(mig_verdict_name(MIG_STALLED), "the dirty set stopped shrinking");
	assert_string_equal(mig_verdict_name((enum mig_verdict)99), "?");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fits),
		cmocka_unit_test(test_floor),
		cmocka_unit_test(test_nothing_dirty),
		cmocka_unit_test(test_max_rounds),
		cmocka_unit_test(test_stalled),
		cmocka_unit_test(test_handover),
		cmocka_unit_test(test_throttle_starts),
		cmocka_unit_test(test_throttle_grows_caps),
		cmocka_unit_test(test_throttle_stall),
		cmocka_unit_test(test_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
