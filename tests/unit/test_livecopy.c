// SPDX-License-Identifier: BSD-2-Clause
/*
 * Live checkpoints by pre-copy into the file (snap/livecopy.c) on plain memory laid out as
 * guest RAM, without KVM: a thread rewrites a hot set of pages (some become all zero) through
 * every round; at the "pause" it stops, the last dirty pages are written, and it goes on
 * writing while the memory map is made.  The file must hold exactly the bytes of the pause,
 * its extents exactly the pages not all zero, each checksum the file's bytes.  And the
 * extents of a stretch made from the file's bytes: split at zero pages and at every 2 MiB.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "livesync.h"
#include "snap/dirty.h"
#include "snap/format.h"
#include "snap/livecopy.h"
#include "tworam.h"
#include "vm.h"

#define PG 4096ULL
#define R0 (5 * 1024 * 1024ULL) /* region 0: 1280 pages, not a multiple of 2 MiB */
#define R1 (3 * 1024 * 1024ULL) /* region 1: 768 pages, numbered from 1280 */
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

/* Generation @gen of page @pg (0: all zero): different in every page and generation. */
static void fill(uint64_t pg, unsigned gen)
{
	if (gen)
		tworam_fill(&vm, pg, (uint64_t)gen << 48);
	else
		memset(page(pg), 0, PG);
}

/* ---- the "guest": rewrites its hot pages until told to stop ---- */

static atomic_bool stop;
static atomic_uint passes;

static bool hot(uint64_t pg)
{
	/* Around the 2 MiB marks and the region boundary, and a spread elsewhere. */
	return pg % 97 == 3 || (pg >= 500 && pg < 530) || (pg >= 1270 && pg < 1290);
}

static void *guest(void *arg)
{
	unsigned gen = *(unsigned *)arg;

	while (!atomic_load(&stop)) {
		gen++;
		for (uint64_t pg = 0; pg < NPAGES; pg++)
			if (hot(pg))
				/* Every third generation of some pages is all zero. */
				fill(pg, pg % 5 == 0 && gen % 3 == 0 ? 0 : gen);
		atomic_fetch_add(&passes, 1);
	}
	*(unsigned *)arg = gen;
	return NULL;
}

static pthread_t guest_thread;
static unsigned guest_gen = 10;

static void guest_start(void)
{
	atomic_store(&stop, false);
	assert_int_equal(pthread_create(&guest_thread, NULL, guest, &guest_gen), 0);
}

static void guest_stop(void)
{
	atomic_store(&stop, true);
	pthread_join(guest_thread, NULL);
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

/* The file's page @pg is expect's; the extents list exactly the pages not all zero. */
static void check_file(struct snap_writer *w, const struct snap_file *map)
{
	static uint8_t buf[SNAP_EXTENT_MAX];
	uint64_t last = 0;
	unsigned e = 0;

	for (unsigned i = 0; i < map->nextents; i++) {
		const struct snap_extent *x = &map->extents[i];

		assert_true(x->file_offset >= last && x->length && x->length <= SNAP_EXTENT_MAX);
		/* Never across a 256 KiB mark of the memory area (the stretches that are made
		 * anew), nor across the regions' edge. */
		assert_true((x->file_offset - w->mem_offset) / (256 << 10) ==
			    (x->file_offset - w->mem_offset + x->length - 1) / (256 << 10));
		assert_true(x->file_offset - w->mem_offset >= R0 ||
			    x->file_offset - w->mem_offset + x->length <= R0);
		assert_int_equal(pread(w->fd, buf, x->length, (off_t)x->file_offset),
				 (ssize_t)x->length);
		if (snap_checksum(buf, x->length) != x->checksum)
			fail_msg("extent %u: its checksum is not that of the file's bytes", i);
		last = x->file_offset + x->length;
	}
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
				 zero ? "a zero page is listed" : "not in the memory map");
	}
}

static void test_rounds_then_pause(void **state)
{
	/* No budget: the rounds go on to the most there may be while the guest writes. */
	struct mig_policy pol = { .max_downtime_ns = 0, .max_rounds = 6, .stall_rounds = 100 };
	struct snap_file map = { 0 };
	struct snap_result res = { 0 };
	struct snap_livecopy *c;
	struct snap_writer w;
	unsigned seen;
	char err[256];
	int ret;

	assert_int_equal(make_ram(), 0);
	/* Touched before: some pages all zero (touched, not stored), the rest a pattern. */
	for (uint64_t pg = 0; pg < NPAGES; pg += 2)
		fill(pg, pg % 6 == 0 ? 0 : 1);
	snprintf(path, sizeof(path), "/tmp/khyve-test-livecopy.%d", (int)getpid());
	assert_int_equal(snap_writer_open(&w, path, R0 + R1, err, sizeof(err)), 0);
	ret = snap_livecopy_new(&vm, &w, &pol, &c, err, sizeof(err));
	if (ret == -EPERM || ret == -ENOSYS || ret == -EOPNOTSUPP || ret == -EINVAL) {
		print_message("no dirty-page tracking here: %s\n", err);
		snap_writer_abort(&w);
		free_ram();
		skip();
	}
	assert_int_equal(ret, 0);
	assert_int_equal(dirty_clients(&vm), 1);
	/*
	 * The guest has written its hot pages once since tracking began before round 1 reads the
	 * page tables: those pages are dirty after round 1 whether or not the guest gets the CPU
	 * while it runs, so they go twice (on a loaded host it may not, which made this flaky).
	 */
	seen = atomic_load(&passes);
	guest_start();
	while (atomic_load(&passes) < seen + 1)
		usleep(1000);
	assert_int_equal(snap_livecopy_start(c, on_rounds, on_written, NULL), 0);
	ls_wait(&rounds_ended);
	/* The pause: the guest stops, the last dirty pages go, RAM as it is now is the state. */
	guest_stop();
	assert_int_equal(snap_livecopy_rounds_result(c, err, sizeof(err)), 0);
	assert_int_equal(snap_livecopy_final(c, &res, err, sizeof(err)), 0);
	expect = malloc(R0 + R1);
	assert_non_null(expect);
	for (uint64_t pg = 0; pg < NPAGES; pg++)
		memcpy(expect + pg * PG, page(pg), PG);
	/* The guest runs on while the memory map is made: none of that may reach the file. */
	seen = atomic_load(&passes);
	guest_start();
	snap_livecopy_continue(c);
	ls_wait(&written);
	while (atomic_load(&passes) < seen + 2)
		usleep(1000);
	guest_stop();
	assert_int_equal(snap_livecopy_result(c, &map, &res, err, sizeof(err)), 0);
	print_message("rounds %llu, pre-copy pages %llu, final %llu, stored %llu\n",
		      (unsigned long long)res.rounds, (unsigned long long)res.precopy_pages,
		      (unsigned long long)res.final_pages, (unsigned long long)res.mem_pages);
	print_message("the rounds stopped: %s\n", res.converged);
	/*
	 * Six rounds while the guest wrote, unless it was not scheduled during one (nothing
	 * dirty then fits any budget); its hot pages were dirty after round 1: they went twice.
	 */
	assert_true(res.rounds >= 2 && res.rounds <= 7);
	if (!strcmp(res.converged, "the most rounds"))
		assert_int_equal(res.rounds, 7);
	else
		assert_string_equal(res.converged, "fits the downtime budget");
	assert_true(res.precopy_pages + res.final_pages > res.mem_pages);
	assert_int_equal(map.nregions, 2);
	assert_int_equal(map.regions[1].file_offset, w.mem_offset + R0);
	check_file(&w, &map);
	snap_livecopy_free(c);
	/* Its dirty-page client is gone, and with it the tracking. */
	assert_int_equal(dirty_clients(&vm), 0);
	assert_false(dirty_tracking(&vm));
	free(map.extents);
	free(expect);
	snap_writer_abort(&w);
	free_ram();
}

/* Freed while it waits for the pause (a failed pause, the VM ending): tracking ends too. */
static void test_freed_before_pause(void **state)
{
	struct mig_policy pol = { .max_downtime_ns = 20000000,
				  .max_rounds = 30,
				  .stall_rounds = 3 };
	struct snap_livecopy *c;
	struct snap_writer w;
	char err[256];
	int ret;

	assert_int_equal(make_ram(), 0);
	for (uint64_t pg = 0; pg < NPAGES; pg += 3)
		fill(pg, 1);
	snprintf(path, sizeof(path), "/tmp/khyve-test-livecopy.%d", (int)getpid());
	assert_int_equal(snap_writer_open(&w, path, R0 + R1, err, sizeof(err)), 0);
	ret = snap_livecopy_new(&vm, &w, &pol, &c, err, sizeof(err));
	if (ret) {
		snap_writer_abort(&w);
		free_ram();
		skip();
	}
	rounds_ended.up = written.up = false;
	assert_int_equal(snap_livecopy_start(c, on_rounds, on_written, NULL), 0);
	ls_wait(&rounds_ended);
	assert_int_equal(snap_livecopy_rounds_result(c, err, sizeof(err)), 0);
	snap_livecopy_free(c);
	assert_false(written.up);
	assert_false(dirty_tracking(&vm));
	snap_writer_abort(&w);
	free_ram();
}

/* ---- the extents of a stretch, from its bytes ---- */

static uint64_t zeros[16][2];
static unsigned nzeros;

static void on_zero(void *opaque, uint64_t off, uint64_t len)
{
	assert_true(nzeros < 16);
	zeros[nzeros][0] = off;
	zeros[nzeros][1] = len;
	nzeros++;
}

static void test_extents(void **state)
{
	/* 1 MiB before a 2 MiB mark to 3 MiB after it: 1024 pages at area offset 1 MiB. */
	uint64_t off = 1 << 20, len = 4 << 20, fo = SNAP_MEM_ALIGN;
	uint8_t *buf = calloc(1, len);
	struct snap_extent *e = NULL;
	unsigned n = 0, cap = 0;

	assert_non_null(buf);
	/* Data: pages 0-9, 200-600 (across the 2 MiB mark at page 256), 1000-1023. */
	for (uint64_t pg = 0; pg < len / PG; pg++)
		if (pg < 10 || (pg >= 200 && pg <= 600) || pg >= 1000)
			memset(buf + pg * PG, (int)(pg % 251) + 1, PG);
	assert_int_equal(snap_livecopy_extents(buf, off, len, fo, &e, &n, &cap, on_zero, NULL), 0);
	assert_int_equal(n, 4);
	assert_int_equal(e[0].file_offset, fo + off);
	assert_int_equal(e[0].length, 10 * PG);
	assert_int_equal(e[1].file_offset, fo + off + 200 * PG);
	assert_int_equal(e[1].length, 56 * PG); /* up to the mark at area offset 2 MiB */
	assert_int_equal(e[2].file_offset, fo + (2 << 20));
	assert_int_equal(e[2].length, 345 * PG);
	assert_int_equal(e[3].file_offset, fo + off + 1000 * PG);
	assert_int_equal(e[3].length, 24 * PG);
	for (unsigned i = 0; i < n; i++)
		assert_int_equal(e[i].checksum,
				 snap_checksum(buf + (e[i].file_offset - fo - off), e[i].length));
	assert_int_equal(nzeros, 2);
	assert_int_equal(zeros[0][0], off + 10 * PG);
	assert_int_equal(zeros[0][1], 190 * PG);
	assert_int_equal(zeros[1][0], off + 601 * PG);
	assert_int_equal(zeros[1][1], 399 * PG);
	/* All zero: no extent, one zero run; and the list grows past its first allocation. */
	nzeros = 0;
	memset(buf, 0, len);
	assert_int_equal(snap_livecopy_extents(buf, off, len, fo, &e, &n, &cap, on_zero, NULL), 0);
	assert_int_equal(n, 4);
	assert_int_equal(nzeros, 1);
	for (uint64_t pg = 0; pg < len / PG; pg += 2)
		memset(buf + pg * PG, 7, PG);
	assert_int_equal(snap_livecopy_extents(buf, off, len, fo, &e, &n, &cap, NULL, NULL), 0);
	assert_int_equal(n, 4 + 512);
	free(e);
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_extents),
		cmocka_unit_test(test_rounds_then_pause),
		cmocka_unit_test(test_freed_before_pause),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
