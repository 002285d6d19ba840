// SPDX-License-Identifier: BSD-2-Clause
/*
 * The convergence rule of live migration (snap/precopy.h, mig_converge): when the pre-copy
 * rounds stop.  The dirty set, plus the hand-over's share, must fit the downtime budget at
 * the bandwidth measured so far, else the rounds end at max_rounds or when the dirty set has
 * stopped shrinking (with auto-converge: only once the throttle is at its most).  And the
 * throttle auto-converge asks for (mig_throttle): when it starts, how it grows, its cap.
 *
 * Then the rounds themselves, on a VM without KVM (barelive.h): what they send is the guest's
 * memory page for page, what they refuse to start is refused with a message and leaves
 * nothing behind, an abort stops them, and a final pause that fails leaves the source running
 * with no tracking, no thread and no descriptor of the migration left.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "barelive.h"
#include "loopsock.h"
#include "openfds.h"
#include "snap/dirty.h"
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

/* Before any round, and after rounds that measured nothing: no estimate, one more round. */
static void test_nothing_measured(void **state)
{
	struct mig_round r[1] = { { .pages = 0, .bytes = 0, .ns = 0, .dirty = 10 } };
	struct mig_policy auto_conv = pol;
	uint64_t est = 0;

	assert_int_equal(mig_converge(&pol, r, 0, &est), MIG_AGAIN);
	assert_int_equal(est, UINT64_MAX);
	assert_int_equal(mig_converge(&pol, r, 1, &est), MIG_AGAIN);
	assert_int_equal(est, UINT64_MAX);
	/* Bytes sent in no measurable time: no bandwidth, no estimate either. */
	r[0].bytes = 4096;
	assert_int_equal(mig_converge(&pol, r, 1, &est), MIG_AGAIN);
	assert_int_equal(est, UINT64_MAX);
	/* Auto-converge has no throttle before a round. */
	auto_conv.autoconverge = true;
	auto_conv.throttle_initial = 20;
	auto_conv.throttle_increment = 10;
	assert_int_equal(mig_throttle(&auto_conv, r, 0), 0);
	(void)state;
}

static void test_names(void **state)
{
	assert_string_equal(mig_verdict_name(MIG_FITS), "fits the downtime budget");
	assert_string_equal(mig_verdict_name(MIG_STALLED), "the dirty set stopped shrinking");
	assert_string_equal(mig_verdict_name((enum mig_verdict)99), "?");
}

/* ---- the rounds, on a VM without KVM ---- */

#define R0 (12ULL << 20) /* 3072 pages */
#define R1 (4ULL << 20)	 /* 1024 pages, numbered from 3072 */
#define NPAGES ((R0 + R1) / BL_PAGE)

/* Generation 1 of page @pg: different in every page. */
static void fill(struct bl_vm *b, uint64_t pg)
{
	uint64_t *p = (uint64_t *)bl_page(b, pg);

	for (unsigned i = 0; i < BL_PAGE / 8; i++)
		p[i] = pg * 0x9e3779b97f4a7c15ULL ^ i;
}

/*
 * Pages 0-599 written (one run longer than a MEM frame holds), then up to 2999 with every 7th
 * written and cleared again (touched, all zero: not sent), then untouched up to the last 12
 * pages of region 0, written as are region 1's first 100.  More than one bounce buffer's worth.
 * Returns the pages with data.
 */
static uint64_t guest_memory(struct bl_vm *b, uint64_t *zero)
{
	uint64_t data = 0;

	*zero = 0;
	for (uint64_t pg = 0; pg < 3000; pg++) {
		fill(b, pg);
		if (pg >= 600 && pg % 7 == 0) {
			memset(bl_page(b, pg), 0, BL_PAGE);
			(*zero)++;
		} else {
			data++;
		}
	}
	/* The end of region 0 and the start of region 1: one run of pages, two frames. */
	for (uint64_t pg = 3060; pg < 3172; pg++, data++)
		fill(b, pg);
	return data;
}

/* The destination holds every page with data as the guest has it, and nothing else. */
static void check_received(struct bl_vm *b, struct bl_dest *d)
{
	static uint8_t buf[BL_PAGE], zero[BL_PAGE];

	for (uint64_t pg = 0; pg < NPAGES; pg++) {
		bool data = memcmp(bl_page(b, pg), zero, BL_PAGE) != 0;

		if (bl_dest_page(d, pg, buf) != data)
			fail_msg("page %llu: %s", (unsigned long long)pg,
				 data ? "not received" : "received, but all zero");
		if (data && memcmp(buf, bl_page(b, pg), BL_PAGE))
			fail_msg("page %llu: received other bytes", (unsigned long long)pg);
	}
}

/* The migration is over here: the VM runs, nothing of the migration is left. */
static void check_source_runs(struct bl_vm *b, unsigned fds)
{
	assert_false(b->vm.paused);
	assert_null(b->vm.migration);
	assert_int_equal(dirty_clients(&b->vm), 0);
	assert_int_equal(b->vm.throttle_pct, 0);
	assert_int_equal(open_fds(), fds);
}

static const struct mig_policy live_pol = { .max_downtime_ns = 20 * MS, .max_rounds = 5 };

/*
 * An idle guest: round 1 sends every page with data (not the touched zero ones, not the
 * untouched ones), nothing is written meanwhile, so its dirty set fits the budget at once.
 * Then the final pause fails (no KVM clock here): the source says so with the destination's
 * refusal, and runs on.
 */
static void test_rounds_then_pause_fails(void **state)
{
	struct bl_live l = { 0 };
	struct bl_dest d;
	struct bl_vm b;
	uint64_t data, zero;
	unsigned fds;

	signal(SIGPIPE, SIG_IGN);
	bl_vm_make(&b, R0, R1);
	data = guest_memory(&b, &zero);
	fds = open_fds();
	bl_dest_start(&d, false, "the stream ended before END");
	assert_int_equal(bl_live_start(&l, &b, d.addr, &live_pol), 0);
	bl_live_wait(&l);
	bl_dest_join(&d);
	assert_int_equal(l.ret, -EBADF);
	if (!strstr(l.err, "reading the KVM clock: ") ||
	    !strstr(l.err, "; the destination refused the VM: the stream ended before END"))
		fail_msg("'%s'", l.err);
	assert_int_equal(l.res.rounds, 1);
	assert_string_equal(l.res.converged, "fits the downtime budget");
	assert_int_equal(l.res.precopy_pages, data);
	assert_int_equal(l.res.zero_pages, zero);
	assert_int_equal(l.res.final_pages, 0);
	assert_int_equal(l.res.throttle_pct, 0);
	assert_true(l.res.bytes > data * BL_PAGE);
	assert_int_equal(l.progress, 1);
	assert_true(l.progress_ok);
	/* The destination: a live stream, its one round closed, every page as it is here. */
	assert_int_equal(d.m.flags, MIG_F_LIVE);
	assert_int_equal(d.m.mem_size, R0 + R1);
	assert_int_equal(d.m.rounds, 1);
	assert_true(d.mem > 2); /* split at the frame size, the zero pages, the regions */
	assert_int_equal(d.ret, -ECONNRESET);
	check_received(&b, &d);
	bl_dest_free(&d);
	check_source_runs(&b, fds);
	bl_live_free(&l);
	bl_vm_free(&b);
}

static void set_live(struct bl_live *l)
{
	l->b->vm.live = (struct live_save *)l;
}

static void set_paused(struct bl_live *l)
{
	l->b->vm.paused = true;
}

/* Refused before anything starts: the message says why, nothing is left behind. */
static void test_start_refused(void **state)
{
	static const struct {
		struct mig_policy pol;
		const char *msg;
	} bad[] = {
		{ { .max_downtime_ns = MS, .max_rounds = 0 }, "max_rounds 0: expected 1 to 999" },
		{ { .max_downtime_ns = MS, .max_rounds = MIG_MAX_ROUNDS },
		  "max_rounds 1000: expected 1 to 999" },
		{ { .max_downtime_ns = MS,
		    .max_rounds = 5,
		    .autoconverge = true,
		    .throttle_initial = 0,
		    .throttle_increment = 10 },
		  "throttle_initial 0, throttle_increment 10: expected 1 to 99" },
		{ { .max_downtime_ns = MS,
		    .max_rounds = 5,
		    .autoconverge = true,
		    .throttle_initial = 100,
		    .throttle_increment = 10 },
		  "throttle_initial 100, throttle_increment 10: expected 1 to 99" },
		{ { .max_downtime_ns = MS,
		    .max_rounds = 5,
		    .autoconverge = true,
		    .throttle_initial = 20,
		    .throttle_increment = 0 },
		  "throttle_initial 20, throttle_increment 0: expected 1 to 99" },
		{ { .max_downtime_ns = MS,
		    .max_rounds = 5,
		    .autoconverge = true,
		    .throttle_initial = 20,
		    .throttle_increment = 100 },
		  "throttle_initial 20, throttle_increment 100: expected 1 to 99" },
	};
	struct bl_vm b;
	char want[256], addr[64];
	unsigned fds;

	bl_vm_make(&b, R0, R1);
	fds = open_fds();
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct bl_live l = { 0 };

		assert_int_equal(bl_live_start(&l, &b, "127.0.0.1:1", &bad[i].pol), -EINVAL);
		assert_string_equal(l.start_err, bad[i].msg);
		bl_live_free(&l);
	}
	{
		struct bl_live l = { .on_loop = set_paused };

		assert_int_equal(bl_live_start(&l, &b, "127.0.0.1:1", &live_pol), -EALREADY);
		assert_string_equal(l.start_err, "the VM is paused: resume it before migrating it");
		b.vm.paused = false;
		bl_live_free(&l);
	}
	{
		struct bl_live l = { .on_loop = set_live };

		assert_int_equal(bl_live_start(&l, &b, "127.0.0.1:1", &live_pol), -EBUSY);
		assert_string_equal(l.start_err,
				    "a live checkpoint is under way; wait for its reply");
		b.vm.live = NULL;
		bl_live_free(&l);
	}
	{
		/* Nobody listens there (a port just freed): the tracking never started. */
		struct bl_live l = { 0 };

		lo_free_addr(addr, sizeof(addr));
		assert_int_equal(bl_live_start(&l, &b, addr, &live_pol), -ECONNREFUSED);
		snprintf(want, sizeof(want), "connecting to %s: %s (is khyve -R %s waiting there?)",
			 addr, strerror(ECONNREFUSED), addr);
		assert_string_equal(l.start_err, want);
		bl_live_free(&l);
	}
	check_source_runs(&b, fds);
	assert_false(dirty_tracking(&b.vm));
	bl_vm_free(&b);
}

/* A second start while one runs is refused (the one running goes on). */
static void start_again(struct bl_live *l)
{
	char err[256];

	assert_non_null(l->b->vm.migration);
	assert_int_equal(migrate_live_start(&l->b->vm, l->addr, &l->pol, NULL, NULL, NULL, err,
					    sizeof(err)),
			 -EBUSY);
	assert_string_equal(err, "a live migration is under way; wait for its reply");
}

static void call_start_again(void *opaque)
{
	start_again(opaque);
}

/*
 * The VM ends while the rounds run (here: the destination stopped reading, the sender waits
 * on its writes): the abort stops the sender at once, the reply says why, and nothing of the
 * migration is left.  An abort with no migration does nothing.
 */
static void test_abort(void **state)
{
	struct bl_live l = { 0 };
	struct bl_dest d;
	struct bl_vm b;
	unsigned fds;

	signal(SIGPIPE, SIG_IGN);
	/* More than the socket's buffers hold (at most 4 MiB here), all of it data. */
	bl_vm_make(&b, 24ULL << 20, R1);
	for (uint64_t pg = 0; pg < (24ULL << 20) / BL_PAGE; pg++)
		fill(&b, pg);
	fds = open_fds();
	migrate_live_abort(&b.vm);
	bl_dest_start(&d, true, NULL);
	assert_int_equal(bl_live_start(&l, &b, d.addr, &live_pol), 0);
	bl_dest_wait_hello(&d);
	evloop_call(&b.vm.ev, call_start_again, &l);
	migrate_live_abort(&b.vm);
	bl_live_wait(&l);
	assert_int_equal(l.ret, -ECANCELED);
	assert_string_equal(l.err, "the VM ended before the migration did");
	assert_int_equal(l.progress, 0);
	bl_dest_join(&d);
	bl_dest_free(&d);
	check_source_runs(&b, fds);
	bl_live_free(&l);
	bl_vm_free(&b);
}

/*
 * A guest that never touched its RAM: round 1 sends nothing (no page, no empty write), and its
 * ROUND says so; no progress callback is needed.
 */
static void test_untouched_guest(void **state)
{
	struct bl_live l = { .no_progress = true };
	struct bl_dest d;
	struct bl_vm b;
	unsigned fds;

	signal(SIGPIPE, SIG_IGN);
	bl_vm_make(&b, R0, R1);
	fds = open_fds();
	bl_dest_start(&d, false, "nothing");
	assert_int_equal(bl_live_start(&l, &b, d.addr, &live_pol), 0);
	bl_live_wait(&l);
	bl_dest_join(&d);
	assert_int_equal(l.ret, -EBADF);
	assert_int_equal(l.res.rounds, 1);
	assert_int_equal(l.res.precopy_pages, 0);
	assert_int_equal(l.progress, 0);
	assert_int_equal(d.m.rounds, 1);
	assert_int_equal(d.mem, 0);
	bl_dest_free(&d);
	check_source_runs(&b, fds);
	bl_live_free(&l);
	bl_vm_free(&b);
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
		cmocka_unit_test(test_nothing_measured),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_rounds_then_pause_fails),
		cmocka_unit_test(test_start_refused),
		cmocka_unit_test(test_abort),
		cmocka_unit_test(test_untouched_guest),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
