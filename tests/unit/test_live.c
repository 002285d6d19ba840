// SPDX-License-Identifier: BSD-2-Clause
/*
 * Live checkpoints' memory (snap/live.c) on plain memory laid out as guest RAM, without KVM:
 * RAM is protected before the "pause" (snap_live_prearm), written meanwhile (pages protected
 * then, and pages touched for the first time), the pause re-protects what was written
 * (snap_live_arm), RAM is written again while the writer saves it, and the file holds
 * exactly the bytes of the pause instant.  A checkpoint that fails before the writer starts
 * leaves every page writable.  Writes that wait for the writer have their pages saved first.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cmocka.h>

#include "livesync.h"
#include "snap/format.h"
#include "snap/live.h"
#include "tworam.h"
#include "vm.h"

#define PG 4096ULL
#define R0 (4 * 1024 * 1024ULL) /* region 0: 1024 pages */
#define R1 (2 * 1024 * 1024ULL) /* region 1: 512 pages, numbered from 1024 */
#define NPAGES ((R0 + R1) / PG)

static struct vm vm;
static uint8_t *expect; /* RAM at the pause */
static char path[64];

static int make_ram(void)
{
	return tworam_make(&vm, R0, R1);
}

static void free_ram(void)
{
	tworam_free(&vm);
}

static uint8_t *page(uint64_t pg)
{
	return tworam_page(&vm, pg);
}

/* Generation @gen of page @pg: different in every page and every generation. */
static void fill(uint64_t pg, unsigned gen)
{
	tworam_fill(&vm, pg, (uint64_t)gen << 56);
}

static struct ls_flag done = LS_FLAG_INIT; /* the writer's end */

/* A live checkpoint can start here: the writer opened, RAM protected.  Skips without uffd. */
static void start(struct snap_writer *w, struct snap_live **l)
{
	char err[256];
	int ret;

	snprintf(path, sizeof(path), "/tmp/khyve-test-live.%d", (int)getpid());
	assert_int_equal(snap_writer_open(w, path, R0 + R1, err, sizeof(err)), 0);
	ret = snap_live_prearm(&vm, w, l, err, sizeof(err));
	if (ret == -EPERM || ret == -ENOSYS || ret == -EOPNOTSUPP || ret == -EINVAL) {
		/* No userfaultfd write protection for this process: nothing to test. */
		print_message("no live checkpoint here: %s\n", err);
		snap_writer_abort(w);
		free_ram();
		skip();
	}
	assert_int_equal(ret, 0);
}

/* The file's page @pg is expect's, or a hole (zero) where expect's is zero; extents agree. */
static void check_file(struct snap_writer *w, const struct snap_file *map)
{
	static uint8_t buf[PG];
	unsigned e = 0;

	for (uint64_t pg = 0; pg < NPAGES; pg++) {
		const uint8_t *want = expect + pg * PG;
		uint64_t off = w->mem_offset + pg * PG;
		bool zero = true, in_extent;

		for (unsigned i = 0; i < PG && zero; i++)
			zero = !want[i];
		while (e < map->nextents &&
		       map->extents[e].file_offset + map->extents[e].length <= off)
			e++;
		in_extent = e < map->nextents && map->extents[e].file_offset <= off;
		assert_int_equal(pread(w->fd, buf, PG, (off_t)off), (ssize_t)PG);
		if (memcmp(buf, want, PG))
			fail_msg("page %llu: the file does not hold its bytes of the pause",
				 (unsigned long long)pg);
		if (in_extent == zero)
			fail_msg("page %llu: %s", (unsigned long long)pg,
				 zero ? "a zero page is stored" : "not in the memory map");
	}
}

static void test_written_between_arm_and_pause(void **state)
{
	struct snap_file map = { 0 };
	struct snap_result res = { 0 };
	struct snap_writer w;
	struct snap_live *l;
	volatile uint8_t sink = 0;
	char err[256];

	assert_int_equal(make_ram(), 0);
	for (uint64_t pg = 0; pg < 800; pg++)
		fill(pg, 1);
	for (uint64_t pg = 1024; pg < 1100; pg++)
		fill(pg, 1);
	start(&w, &l);
	/* The guest runs on before the pause: protected pages written (the writer lets each go). */
	for (uint64_t pg = 100; pg < 200; pg++)
		fill(pg, 2);
	fill(1050, 2);
	/* Touched for the first time since RAM was protected: not protected at all. */
	for (uint64_t pg = 900; pg < 910; pg++)
		fill(pg, 2);
	fill(NPAGES - 1, 2);
	sink += page(950)[0]; /* read only: the zero page */
	/* Written and then cleared again: zero at the pause. */
	fill(300, 2);
	memset(page(300), 0, PG);

	/* The pause. */
	expect = malloc(NPAGES * PG);
	assert_non_null(expect);
	for (uint64_t pg = 0; pg < NPAGES; pg++)
		memcpy(expect + pg * PG, page(pg), PG);
	assert_int_equal(snap_live_arm(l, err, sizeof(err)), 0);
	done.up = false;
	assert_int_equal(snap_live_start(l, ls_raise, &done), 0);

	/* Running again: every page rewritten while the writer saves (the writes wait for it). */
	for (uint64_t pg = 0; pg < NPAGES; pg++)
		fill(pg, 3);
	ls_wait(&done);
	assert_int_equal(snap_live_result(l, &map, &res, err, sizeof(err)), 0);
	/* 800 + 76 pages of pattern, 10 + 1 first touched; page 300 is zero. */
	assert_int_equal(res.mem_pages, 800 + 76 + 11 - 1);
	assert_true(res.prearm_faults >= 101);
	/* At least the pages written or first touched since protection, before the pause. */
	assert_true(res.arm_pages + res.prearm_pages >= 101 + 11);
	check_file(&w, &map);
	free(map.extents);
	snap_live_free(l);
	snap_writer_abort(&w);
	free(expect);
	free_ram();
	(void)sink;
}

/*
 * The checkpoint fails in the pause (before snap_live_arm, or after it but before the writer
 * runs): every page is writable again once the live checkpoint is freed.
 */
static void test_fail_before_start(void **state)
{
	struct snap_writer w;
	struct snap_live *l;
	char err[256];

	for (int armed = 0; armed < 2; armed++) {
		assert_int_equal(make_ram(), 0);
		for (uint64_t pg = 0; pg < NPAGES; pg += 2)
			fill(pg, 1);
		start(&w, &l);
		fill(10, 2); /* let go by the writer before the pause */
		if (armed)
			assert_int_equal(snap_live_arm(l, err, sizeof(err)), 0);
		snap_live_free(l);
		snap_writer_abort(&w);
		/* Nobody would let these go if anything were still protected. */
		for (uint64_t pg = 0; pg < NPAGES; pg++)
			fill(pg, 3);
		assert_true(*(uint64_t *)page(77) == (77 * 0x9e3779b97f4a7c15ULL ^ 3ULL << 56));
		free_ram();
	}
}

/* ---- guest writes that wait for the writer ---- */

/*
 * Writes that came after the pause and before the writer began wait for it: it saves those
 * pages first (pages of data, once each however many writes wait on one, and one all zero,
 * which stays a hole), as they were at the pause, then lets the writes go on; its pass skips
 * them.  The file is the pause instant.
 */
static void test_writes_wait_for_the_writer(void **state)
{
	struct snap_file map = { 0 };
	struct snap_result res = { 0 };
	struct gwrite a, b, c, e;
	struct snap_writer w;
	struct snap_live *l;
	char err[256];

	assert_int_equal(make_ram(), 0);
	for (uint64_t pg = 0; pg < 100; pg++)
		fill(pg, 1);
	fill(1200, 1);
	memset(page(1200), 0, PG); /* touched, all zero at the pause */
	start(&w, &l);
	assert_int_equal(snap_live_arm(l, err, sizeof(err)), 0);
	expect = malloc(NPAGES * PG);
	assert_non_null(expect);
	for (uint64_t pg = 0; pg < NPAGES; pg++)
		memcpy(expect + pg * PG, page(pg), PG);
	gwrite_start(&a, fill, 50, 5);
	gwrite_start(&b, fill, 1200, 5);
	gwrite_start(&c, fill, 50, 5); /* a second write to the same page: saved once */
	gwrite_start(&e, fill, 20, 5); /* after the others, lower: the faults' extents are sorted */
	done.up = false;
	assert_int_equal(snap_live_start(l, ls_raise, &done), 0);
	ls_wait(&done);
	pthread_join(a.thread, NULL);
	pthread_join(b.thread, NULL);
	pthread_join(c.thread, NULL);
	pthread_join(e.thread, NULL);
	assert_int_equal(snap_live_result(l, &map, &res, err, sizeof(err)), 0);
	assert_int_equal(res.fault_pages, 3);
	assert_int_equal(res.mem_pages, 100);
	assert_int_equal(res.zero_pages, 1);
	check_file(&w, &map);
	/* The writes went on after their pages were saved. */
	assert_true(*(uint64_t *)page(20) == (20 * 0x9e3779b97f4a7c15ULL ^ 5ULL << 56));
	assert_true(*(uint64_t *)page(50) == (50 * 0x9e3779b97f4a7c15ULL ^ 5ULL << 56));
	assert_true(*(uint64_t *)page(1200) == (1200 * 0x9e3779b97f4a7c15ULL ^ 5ULL << 56));
	free(map.extents);
	snap_live_free(l);
	snap_writer_abort(&w);
	free(expect);
	free_ram();
}

/* A guest that never touched its RAM: nothing to save, an empty memory map. */
static void test_untouched(void **state)
{
	struct snap_file map = { 0 };
	struct snap_result res = { 0 };
	struct snap_writer w;
	struct snap_live *l;
	char err[256];

	assert_int_equal(make_ram(), 0);
	start(&w, &l);
	assert_int_equal(snap_live_arm(l, err, sizeof(err)), 0);
	done.up = false;
	assert_int_equal(snap_live_start(l, ls_raise, &done), 0);
	ls_wait(&done);
	assert_int_equal(snap_live_result(l, &map, &res, err, sizeof(err)), 0);
	assert_int_equal(map.nextents, 0);
	assert_int_equal(map.nregions, 2);
	assert_int_equal(res.mem_pages, 0);
	free(map.extents);
	snap_live_free(l);
	snap_writer_abort(&w);
	free_ram();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_written_between_arm_and_pause),
		cmocka_unit_test(test_fail_before_start),
		cmocka_unit_test(test_writes_wait_for_the_writer),
		cmocka_unit_test(test_untouched),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
