// SPDX-License-Identifier: BSD-2-Clause
/*
 * Live checkpoints by pre-copy into the file (snap/livecopy.c) on plain memory laid out as
 * guest RAM (tworam.h), with host failures injected (tests/faultinj.h): its allocations and
 * the dirty-page tracking it needs, round 1's look at the page tables, its writes and extent
 * list, a later round's writes, the final pause's, the memory map's buffer and its reads of
 * the file (failed, short, interrupted), a hole it cannot punch.  A failure is said with its
 * message and leaves no tracking behind; what can be got around (an interrupted or short
 * read, no hole) gives the file it would have given, every extent's checksum that of the
 * file's bytes.  A checkpoint stopped in its rounds or before its memory map says so.
 * Skipped where this kernel cannot track dirty pages (as test_livecopy is).
 */
#include <errno.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "faultinj.h"
#include "livesync.h"
#include "snap/dirty.h"
#include "snap/format.h"
#include "snap/livecopy.h"
#include "snap/pagemap.h"
#include "tworam.h"
#include "vm.h"

#define PG 4096ULL
#define R0 (8 * 1024 * 1024ULL) /* 2048 pages: every other one written, more runs than 1024 */
#define R1 (1 * 1024 * 1024ULL) /* 256 pages, numbered from 2048 */
#define NPAGES ((R0 + R1) / PG)

static struct vm vm;
static char path[64];
static struct snap_writer w;

static uint8_t *page(uint64_t pg)
{
	return tworam_page(&vm, pg);
}

static void fill(uint64_t pg, unsigned gen)
{
	tworam_fill(&vm, pg, (uint64_t)gen << 48);
}

static int setup(void **state)
{
	fi_reset();
	tworam_setup_writer(&vm, R0, R1, fill, &w, path, sizeof(path), "/tmp/khyve-test-lcf");
	return 0;
}

static int teardown(void **state)
{
	fi_reset();
	snap_writer_abort(&w);
	dirty_vm_free(&vm);
	tworam_free(&vm);
	return 0;
}

static const struct mig_policy pol = { .max_downtime_ns = 20000000,
				       .max_rounds = 5,
				       .stall_rounds = 3 };

static void need_tracking(void)
{
	struct snap_livecopy *c;
	char err[256];

	if (snap_livecopy_new(&vm, &w, &pol, &c, err, sizeof(err)))
		skip();
	snap_livecopy_free(c);
}

/* ---- the thread's callbacks ---- */

static struct ls_flag rounds_ended = LS_FLAG_INIT, written = LS_FLAG_INIT;

static void on_rounds(void *opaque)
{
	ls_raise(&rounds_ended);
}

static void on_written(void *opaque)
{
	ls_raise(&written);
}

/* New and started; returns when its rounds ended (their result, message in @err). */
static int rounds(struct snap_livecopy **cp, const struct mig_policy *p, bool cancel, char *err,
		  size_t errlen)
{
	assert_int_equal(snap_livecopy_new(&vm, &w, p, cp, err, errlen), 0);
	if (cancel)
		snap_livecopy_cancel(*cp);
	rounds_ended.up = written.up = false;
	assert_int_equal(snap_livecopy_start(*cp, on_rounds, on_written, NULL), 0);
	ls_wait(&rounds_ended);
	return snap_livecopy_rounds_result(*cp, err, errlen);
}

/* Every extent's checksum is that of the file's bytes; every page the file's is RAM's. */
static void check_file(const struct snap_file *map)
{
	static uint8_t buf[SNAP_EXTENT_MAX];

	for (unsigned i = 0; i < map->nextents; i++) {
		const struct snap_extent *x = &map->extents[i];

		assert_int_equal(pread(w.fd, buf, x->length, (off_t)x->file_offset),
				 (ssize_t)x->length);
		if (snap_checksum(buf, x->length) != x->checksum)
			fail_msg("extent %u: its checksum is not that of the file's bytes", i);
	}
	for (uint64_t pg = 0; pg < NPAGES; pg++) {
		assert_int_equal(pread(w.fd, buf, PG, (off_t)(w.mem_offset + pg * PG)),
				 (ssize_t)PG);
		if (memcmp(buf, page(pg), PG))
			fail_msg("page %llu: the file does not hold RAM's bytes",
				 (unsigned long long)pg);
	}
}

/* Refused at its making: the message; no tracking is left. */
static void test_new_fails(void **state)
{
	struct snap_livecopy *c;
	char err[256] = "";

	need_tracking();
	for (unsigned n = 1; n <= 3; n++) {
		fi_fail(FI_CALLOC, n, ENOMEM);
		assert_int_equal(snap_livecopy_new(&vm, &w, &pol, &c, err, sizeof(err)), -ENOMEM);
		assert_null(c);
		assert_true(fi_all_fired());
		fi_reset();
		assert_false(dirty_tracking(&vm));
	}
	fi_ioctl_fail(UFFDIO_API, 1, EINVAL);
	assert_int_equal(snap_livecopy_new(&vm, &w, &pol, &c, err, sizeof(err)), -EOPNOTSUPP);
	assert_string_equal(err, "dirty-page tracking is not available (Operation not "
				 "supported): checkpoint without --live");
	assert_true(fi_all_fired());
	fi_reset();
	assert_null(c);
	assert_false(dirty_tracking(&vm));
}

/* A failure on the thread: counted from its start, on any thread. */
static void thread_fault(enum fi_call c, unsigned nth, int err)
{
	fi_any_thread();
	fi_fail(c, nth, err);
}

/*
 * Round 1's page-table read, its first write, its extent list; a stop before it began: the
 * rounds' result says why, and freeing it ends the tracking.
 */
static void test_rounds_fail(void **state)
{
	static const struct {
		enum fi_call c;
		int err;
		const char *msg;
	} kinds[] = {
		{ FI_PREAD, EIO, "saving guest memory: Input/output error" },
		{ FI_PWRITE, ENOSPC, "saving guest memory: No space left on device" },
		{ FI_REALLOC, ENOMEM, "saving guest memory: Cannot allocate memory" },
	};
	struct snap_livecopy *c;
	char err[256];

	need_tracking();
	for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
		thread_fault(kinds[k].c, 1, kinds[k].err);
		assert_int_equal(rounds(&c, &pol, false, err, sizeof(err)), -kinds[k].err);
		assert_string_equal(err, kinds[k].msg);
		assert_true(fi_all_fired());
		fi_reset();
		/* Told to go on to the memory map all the same: it does not (nothing to map). */
		snap_livecopy_continue(c);
		snap_livecopy_free(c);
		assert_false(written.up);
		assert_false(dirty_tracking(&vm));
	}
	assert_int_equal(rounds(&c, &pol, true, err, sizeof(err)), -ECANCELED);
	assert_string_equal(err, "saving guest memory: the checkpoint was stopped");
	snap_livecopy_free(c);
	assert_false(dirty_tracking(&vm));
}

static void break_tracking(void)
{
	/* The tracker's first scan (one per region) works; every one after fails. */
	fi_any_thread();
	fi_ioctl_fail_from(PAGEMAP_SCAN, 3, EIO);
}

/*
 * Tracking broken after the start: every touched page counts as written each round, so round
 * 2 rewrites them all, and the rounds end at max_rounds.  Its write failing ends them.
 */
static void test_later_round_fails(void **state)
{
	struct mig_policy p = { .max_downtime_ns = 1, .max_rounds = 3, .stall_rounds = 10 };
	struct snap_result res = { 0 };
	struct snap_file map = { 0 };
	struct snap_livecopy *c;
	char err[256];

	need_tracking();
	break_tracking();
	/* Round 1 writes its runs (the pattern on every other page: one write each). */
	fi_fail(FI_PWRITE, NPAGES / 2 + 1, ENOSPC);
	assert_int_equal(rounds(&c, &p, false, err, sizeof(err)), -ENOSPC);
	assert_string_equal(err, "saving guest memory: No space left on device");
	assert_true(fi_all_fired());
	fi_reset();
	snap_livecopy_free(c);
	/* Unbroken by a write: the three rounds, the final pause, a file as RAM is. */
	break_tracking();
	assert_int_equal(rounds(&c, &p, false, err, sizeof(err)), 0);
	fi_reset();
	assert_int_equal(snap_livecopy_final(c, &res, err, sizeof(err)), 0);
	snap_livecopy_continue(c);
	ls_wait(&written);
	assert_int_equal(snap_livecopy_result(c, &map, &res, err, sizeof(err)), 0);
	assert_int_equal(res.rounds, 4);
	assert_string_equal(res.converged, "the most rounds");
	/* Each page with data written in each of the three rounds, and again at the pause. */
	assert_int_equal(res.precopy_pages, 3 * NPAGES / 2);
	assert_int_equal(res.final_pages, NPAGES / 2);
	check_file(&map);
	free(map.extents);
	snap_livecopy_free(c);
}

/* The final pause with @call failing (EIO): said so, and @c freed after it. */
static void final_fails(struct snap_livecopy *c, enum fi_call call)
{
	struct snap_result res = { 0 };
	char err[256];

	fi_fail(call, 1, EIO);
	assert_int_equal(snap_livecopy_final(c, &res, err, sizeof(err)), -EIO);
	assert_string_equal(err, "saving the last dirty pages: Input/output error");
	assert_true(fi_all_fired());
	fi_reset();
	snap_livecopy_free(c);
}

/* The final pause's writes fail: said so; nothing is taken from the thread after it. */
static void test_final_fails(void **state)
{
	struct snap_livecopy *c;
	char err[256];

	need_tracking();
	assert_int_equal(rounds(&c, &pol, false, err, sizeof(err)), 0);
	fill(1, 2); /* written in the pause's harvest */
	final_fails(c, FI_PWRITE);
	assert_false(written.up);
	assert_false(dirty_tracking(&vm));
}

/*
 * The memory map is made again for the stretches the final pause wrote into (here: one page
 * rewritten, one cleared): from the file's bytes, read back, with a hole punched where a page
 * ended all zero.  Its buffer, a read failing, a stop before it: the result says why.  A short
 * read, an interrupted one, a hole that cannot be punched: the file and its map are as ever.
 */
static int finish_with(enum fi_call c, int err_in, bool shrt, bool eintr, bool cancel,
		       struct snap_file *map, char *err, size_t errlen)
{
	struct snap_result res = { 0 };
	struct snap_livecopy *lc;
	int ret;

	assert_int_equal(rounds(&lc, &pol, false, err, errlen), 0);
	fill(3, 2);
	fill(800, 2);
	memset(page(802), 0, PG);
	assert_int_equal(snap_livecopy_final(lc, &res, err, errlen), 0);
	assert_int_equal(res.final_pages, 3);
	fi_any_thread();
	if (shrt)
		fi_short(c, 1);
	else if (eintr)
		fi_eintr(c, 1);
	else if (err_in)
		fi_fail(c, 1, err_in);
	if (cancel)
		snap_livecopy_cancel(lc);
	snap_livecopy_continue(lc);
	ls_wait(&written);
	memset(map, 0, sizeof(*map));
	ret = snap_livecopy_result(lc, map, &res, err, errlen);
	assert_true(fi_all_fired());
	fi_reset();
	if (!ret)
		assert_int_equal(res.reread_bytes, 2 * (256ULL << 10));
	snap_livecopy_free(lc);
	return ret;
}

static void test_finish_fails(void **state)
{
	struct snap_file map;
	char err[256];

	need_tracking();
	assert_int_equal(finish_with(FI_MALLOC, ENOMEM, false, false, false, &map, err,
				     sizeof(err)),
			 -ENOMEM);
	assert_string_equal(err, "saving guest memory: Cannot allocate memory");
	assert_int_equal(finish_with(FI_PREAD, EIO, false, false, false, &map, err, sizeof(err)),
			 -EIO);
	assert_string_equal(err, "saving guest memory: Input/output error");
	assert_int_equal(finish_with(FI_PREAD, 0, false, false, true, &map, err, sizeof(err)),
			 -ECANCELED);
	assert_string_equal(err, "saving guest memory: the checkpoint was stopped");
	/* Got around: the file as RAM is, its map true to it. */
	assert_int_equal(finish_with(FI_PREAD, 0, true, false, false, &map, err, sizeof(err)), 0);
	check_file(&map);
	free(map.extents);
	assert_int_equal(finish_with(FI_PREAD, 0, false, true, false, &map, err, sizeof(err)), 0);
	check_file(&map);
	free(map.extents);
	assert_int_equal(finish_with(FI_FALLOCATE, EOPNOTSUPP, false, false, false, &map, err,
				     sizeof(err)),
			 0);
	check_file(&map);
	free(map.extents);
	assert_false(dirty_tracking(&vm));
}

/* Freed while its rounds run (the VM ends): they stop, and nothing is left tracking. */
static void test_freed_in_rounds(void **state)
{
	struct mig_policy p = { .max_downtime_ns = 1,
				.max_rounds = MIG_MAX_ROUNDS - 1,
				.stall_rounds = MIG_MAX_ROUNDS };
	struct snap_livecopy *c;
	char err[256];

	need_tracking();
	break_tracking(); /* every round rewrites every page: they would go on for long */
	assert_int_equal(snap_livecopy_new(&vm, &w, &p, &c, err, sizeof(err)), 0);
	rounds_ended.up = written.up = false;
	assert_int_equal(snap_livecopy_start(c, on_rounds, on_written, NULL), 0);
	snap_livecopy_free(c);
	fi_reset();
	assert_true(rounds_ended.up);
	assert_false(written.up);
	assert_false(dirty_tracking(&vm));
}

/* The final pause's harvest, tracking broken, cannot read the page tables either. */
static void test_final_harvest_fails(void **state)
{
	struct snap_livecopy *c;
	char err[256];

	need_tracking();
	break_tracking();
	assert_int_equal(rounds(&c, &pol, false, err, sizeof(err)), 0);
	fi_reset();
	final_fails(c, FI_PREAD);
	assert_false(dirty_tracking(&vm));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_new_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rounds_fail, setup, teardown),
		cmocka_unit_test_setup_teardown(test_later_round_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_final_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_finish_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_freed_in_rounds, setup, teardown),
		cmocka_unit_test_setup_teardown(test_final_harvest_fails, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
