// SPDX-License-Identifier: BSD-2-Clause
/*
 * Restore prefetch (snap/prefetch.c) on guest RAM laid out as a restore maps it: two regions,
 * private mappings of a sparse "snapshot" file.  Each mode touches exactly the pages of the
 * file's data extents (an extent across the region boundary is split), never a hole; read and
 * willneed leave the file's pages shared, write makes private copies; none changes a byte; a
 * populate is no write to dirty tracking (read, willneed), or counts as one (write, as
 * documented); a stop ends the thread for good; option values are checked.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "snap/dirty.h"
#include "snap/format.h"
#include "snap/memory.h"
#include "snap/prefetch.h"
#include "vm.h"

#define PG 4096ULL
#define HDR (4 * PG)		/* where the memory area starts in the file */
#define R0 (4 * 1024 * 1024ULL) /* region 0: 1024 pages */
#define R1 (2 * 1024 * 1024ULL) /* region 1: 512 pages, numbered from 1024 */
#define NPAGES ((R0 + R1) / PG)
#define PM_PRESENT (1ULL << 63)
#define PM_FILE (1ULL << 61)

static struct vm vm;
static struct mem_backing backing;
static int fd = -1;
static uint64_t bm[NPAGES / 64];

/* The saved pages, in the memory area's numbering: [first, first + n). */
static const struct {
	uint64_t first, n;
} runs[] = {
	{ 0, 3 },     { 10, 1 }, { 100, 700 }, /* a run past one 2 MiB chunk */
	{ 1020, 10 },			       /* across the region boundary: 1020..1029 */
	{ 1500, 12 },
};

static bool saved(uint64_t pg)
{
	for (size_t i = 0; i < sizeof(runs) / sizeof(runs[0]); i++)
		if (pg >= runs[i].first && pg < runs[i].first + runs[i].n)
			return true;
	return false;
}

static uint8_t byte_of(uint64_t pg)
{
	return (uint8_t)(pg * 7 + 1);
}

/* A sparse file with data at the saved pages only, mapped as two private regions. */
static void make_vm(void)
{
	char path[] = "/tmp/khyve-prefetch-XXXXXX";
	uint8_t data[PG];
	size_t nruns = sizeof(runs) / sizeof(runs[0]);

	fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	assert_int_equal(ftruncate(fd, (off_t)(HDR + R0 + R1)), 0);
	memset(&vm, 0, sizeof(vm));
	memset(&backing, 0, sizeof(backing));
	backing.fd = fd;
	backing.extents = calloc(nruns, sizeof(*backing.extents));
	assert_non_null(backing.extents);
	for (size_t i = 0; i < nruns; i++) {
		for (uint64_t pg = runs[i].first; pg < runs[i].first + runs[i].n; pg++) {
			memset(data, byte_of(pg), sizeof(data));
			assert_int_equal(pwrite(fd, data, PG, (off_t)(HDR + pg * PG)), (ssize_t)PG);
		}
		backing.extents[i] = (struct snap_extent){ HDR + runs[i].first * PG, runs[i].n * PG,
							   0 };
	}
	backing.nextents = (unsigned)nruns;
	for (unsigned i = 0; i < 2; i++) {
		uint64_t size = i ? R1 : R0, foff = HDR + (i ? R0 : 0);
		void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, fd,
			       (off_t)foff);

		assert_true(p != MAP_FAILED);
		vm.mem[i] = (struct mem_region){ i ? 0x100000000ULL : 0, size, p, i };
		backing.region_file_offset[i] = foff;
	}
	vm.nmem = 2;
	vm.backing = &backing;
}

static void free_vm(void)
{
	snap_prefetch_vm_stop(&vm);
	dirty_vm_free(&vm);
	for (unsigned i = 0; i < vm.nmem; i++)
		munmap(vm.mem[i].hva, vm.mem[i].size);
	free(backing.extents);
	close(fd);
	fd = -1;
}

static uint8_t *page(uint64_t pg)
{
	return pg < R0 / PG ? (uint8_t *)vm.mem[0].hva + pg * PG
			    : (uint8_t *)vm.mem[1].hva + (pg - R0 / PG) * PG;
}

/* Every page's pagemap entry, in the memory area's numbering. */
static void read_pagemap(uint64_t *pm)
{
	int f = open("/proc/self/pagemap", O_RDONLY);

	assert_true(f >= 0);
	for (uint64_t pg = 0; pg < NPAGES; pg++)
		assert_int_equal(pread(f, &pm[pg], 8, (off_t)((uintptr_t)page(pg) / PG * 8)), 8);
	close(f);
}

/* Is page @pg in the page cache (mincore: resident, whoever mapped it)? */
static bool cached(uint64_t pg)
{
	unsigned char v = 0;

	assert_int_equal(mincore(page(pg), PG, &v), 0);
	return v & 1;
}

static void run(enum snap_prefetch_mode mode)
{
	assert_int_equal(snap_prefetch_vm(&vm, mode), 0);
	assert_non_null(vm.prefetch);
	snap_prefetch_wait(vm.prefetch);
	assert_true(snap_prefetch_finished(vm.prefetch));
}

static uint64_t saved_pages(void)
{
	uint64_t n = 0;

	for (size_t i = 0; i < sizeof(runs) / sizeof(runs[0]); i++)
		n += runs[i].n;
	return n;
}

/* read: exactly the saved pages mapped, from the file (shared), holes untouched. */
static void test_read_exact(void **state)
{
	static uint64_t pm[NPAGES];

	make_vm();
	run(SNAP_PREFETCH_READ);
	assert_int_equal(snap_prefetch_bytes(vm.prefetch), saved_pages() * PG);
	read_pagemap(pm);
	for (uint64_t pg = 0; pg < NPAGES; pg++) {
		assert_int_equal(!!(pm[pg] & PM_PRESENT), saved(pg));
		if (saved(pg))
			assert_true(pm[pg] & PM_FILE); /* the page cache's page, not a copy */
		else
			assert_false(cached(pg));
	}
	free_vm();
}

/* write: exactly the saved pages, each a private copy holding the file's bytes. */
static void test_write_exact(void **state)
{
	static uint64_t pm[NPAGES];

	make_vm();
	run(SNAP_PREFETCH_WRITE);
	read_pagemap(pm);
	for (uint64_t pg = 0; pg < NPAGES; pg++) {
		assert_int_equal(!!(pm[pg] & PM_PRESENT), saved(pg));
		if (saved(pg))
			assert_false(pm[pg] & PM_FILE);
		else
			assert_false(cached(pg));
	}
	for (uint64_t pg = 0; pg < NPAGES; pg++)
		assert_int_equal(page(pg)[PG - 1], saved(pg) ? byte_of(pg) : 0);
	free_vm();
}

/* willneed: page cache only, no page table entry, holes not read. */
static void test_willneed_no_mapping(void **state)
{
	static uint64_t pm[NPAGES];

	make_vm();
	run(SNAP_PREFETCH_WILLNEED);
	read_pagemap(pm);
	for (uint64_t pg = 0; pg < NPAGES; pg++) {
		assert_false(pm[pg] & PM_PRESENT);
		assert_int_equal(cached(pg), saved(pg));
	}
	free_vm();
}

/* Dirty tracking armed first, as a restore does: a populate must not look like a write. */
static void tracked(enum snap_prefetch_mode mode, unsigned want)
{
	struct dirty_client *c;
	int ret;

	make_vm();
	ret = dirty_client_new(&vm, &c);
	if (ret == -EOPNOTSUPP || ret == -EPERM || ret == -ENOSYS) {
		free_vm();
		skip();
	}
	assert_int_equal(ret, 0);
	run(mode);
	page(1510)[8] = 0x5a; /* the guest writes one saved page */
	memset(bm, 0, sizeof(bm));
	assert_int_equal(dirty_client_fetch(c, bm, NPAGES), 0);
	assert_true(dirty_test(bm, 1510));
	assert_int_equal(page(1510)[9], byte_of(1510)); /* its copy holds the file's data */
	{
		unsigned n = 0;

		for (size_t i = 0; i < NPAGES / 64; i++)
			n += (unsigned)__builtin_popcountll(bm[i]);
		assert_int_equal(n, want);
	}
	dirty_client_free(c);
	free_vm();
}

static void test_read_not_dirty(void **state)
{
	tracked(SNAP_PREFETCH_READ, 1);
}

static void test_willneed_not_dirty(void **state)
{
	tracked(SNAP_PREFETCH_WILLNEED, 1);
}

/* write makes copies: dirty tracking counts every saved page (correct, only larger). */
static void test_write_counts_as_written(void **state)
{
	tracked(SNAP_PREFETCH_WRITE, (unsigned)saved_pages());
}

static unsigned present(void)
{
	static uint64_t pm[NPAGES];
	unsigned n = 0;

	read_pagemap(pm);
	for (uint64_t pg = 0; pg < NPAGES; pg++)
		n += !!(pm[pg] & PM_PRESENT);
	return n;
}

/* A stop ends the thread: nothing more is mapped after it, and the VM forgets it. */
static void test_stop(void **state)
{
	unsigned n;

	make_vm();
	assert_int_equal(snap_prefetch_vm(&vm, SNAP_PREFETCH_WRITE), 0);
	snap_prefetch_vm_stop(&vm);
	assert_null(vm.prefetch);
	n = present();
	usleep(20000);
	assert_int_equal(present(), n);
	snap_prefetch_vm_stop(&vm); /* twice: nothing */
	free_vm();
}

/* off, no backing, no extents: no thread. */
static void test_nothing_to_do(void **state)
{
	make_vm();
	assert_int_equal(snap_prefetch_vm(&vm, SNAP_PREFETCH_OFF), 0);
	assert_null(vm.prefetch);
	backing.nextents = 0;
	assert_int_equal(snap_prefetch_vm(&vm, SNAP_PREFETCH_READ), 0);
	assert_null(vm.prefetch);
	vm.backing = NULL;
	assert_int_equal(snap_prefetch_vm(&vm, SNAP_PREFETCH_READ), 0);
	assert_null(vm.prefetch);
	assert_int_equal(present(), 0);
	free_vm();
}

static void test_parse(void **state)
{
	static const char *const good[] = { "off", "willneed", "read", "write" };
	static const char *const bad[] = { "", "on", "READ", "read ", "populate", "1" };
	enum snap_prefetch_mode m;

	for (size_t i = 0; i < 4; i++) {
		assert_int_equal(snap_prefetch_parse(good[i], &m), 0);
		assert_string_equal(snap_prefetch_name(m), good[i]);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(snap_prefetch_parse(bad[i], &m), -EINVAL);
	assert_int_equal(snap_prefetch_parse(NULL, &m), -EINVAL);
	assert_int_equal(snap_prefetch_parse(SNAP_PREFETCH_DEFAULT, &m), 0);
}

/*
 * A range that is not mapped any more (the populate fails: ENOMEM) ends the prefetch there:
 * the ranges before it were done, none after it is tried, and it is finished (a stop then
 * only joins it).
 */
static void test_range_gone(void **state)
{
	struct snap_prefetch_range r[3];
	struct snap_prefetch *p;
	uint8_t *a = mmap(NULL, 6 * SNAP_PREFETCH_CHUNK, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	assert_true(a != MAP_FAILED);
	/* 3 chunks, a hole of 2 (unmapped), 1 chunk. */
	assert_int_equal(munmap(a + 3 * SNAP_PREFETCH_CHUNK, 2 * SNAP_PREFETCH_CHUNK), 0);
	r[0] = (struct snap_prefetch_range){ a, 3 * SNAP_PREFETCH_CHUNK };
	r[1] = (struct snap_prefetch_range){ a + 3 * SNAP_PREFETCH_CHUNK, 2 * SNAP_PREFETCH_CHUNK };
	r[2] = (struct snap_prefetch_range){ a + 5 * SNAP_PREFETCH_CHUNK, SNAP_PREFETCH_CHUNK };
	for (enum snap_prefetch_mode m = SNAP_PREFETCH_WILLNEED; m <= SNAP_PREFETCH_WRITE; m++) {
		assert_int_equal(snap_prefetch_start(m, r, 3, &p), 0);
		assert_non_null(p);
		snap_prefetch_wait(p);
		assert_true(snap_prefetch_finished(p));
		assert_int_equal(snap_prefetch_bytes(p), 3 * SNAP_PREFETCH_CHUNK);
		snap_prefetch_stop(p);
	}
	munmap(a, 3 * SNAP_PREFETCH_CHUNK);
	munmap(a + 5 * SNAP_PREFETCH_CHUNK, SNAP_PREFETCH_CHUNK);
}

/* A mode that is none, no ranges; and a prefetch that never started (NULL) for each call. */
static void test_no_prefetch(void **state)
{
	struct snap_prefetch_range r = { (uint8_t *)&r, PG };
	struct snap_prefetch *p = (struct snap_prefetch *)&r;

	assert_string_equal(snap_prefetch_name((enum snap_prefetch_mode)4), "?");
	assert_int_equal(snap_prefetch_start((enum snap_prefetch_mode)4, &r, 1, &p), -EINVAL);
	assert_null(p);
	p = (struct snap_prefetch *)&r;
	assert_int_equal(snap_prefetch_start(SNAP_PREFETCH_READ, &r, 0, &p), 0);
	assert_null(p);
	assert_int_equal(snap_prefetch_start(SNAP_PREFETCH_OFF, &r, 1, &p), 0);
	assert_null(p);
	snap_prefetch_wait(NULL);
	assert_int_equal(snap_prefetch_bytes(NULL), 0);
	assert_true(snap_prefetch_finished(NULL));
	snap_prefetch_stop(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_read_exact),
		cmocka_unit_test(test_write_exact),
		cmocka_unit_test(test_willneed_no_mapping),
		cmocka_unit_test(test_read_not_dirty),
		cmocka_unit_test(test_willneed_not_dirty),
		cmocka_unit_test(test_write_counts_as_written),
		cmocka_unit_test(test_stop),
		cmocka_unit_test(test_nothing_to_do),
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_range_gone),
		cmocka_unit_test(test_no_prefetch),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
