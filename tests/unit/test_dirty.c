// SPDX-License-Identifier: BSD-2-Clause
/*
 * Dirty-page tracking (snap/dirty.c) on plain memory laid out as guest RAM: writes from this
 * thread, from another thread and from the kernel (a read(2) into RAM, as a device's DMA does)
 * are all reported, reads are not, each client sees what was written since its own last
 * fetch, page numbers run on across regions, a live checkpoint's hand-over loses nothing, and
 * a MAP_PRIVATE file mapping (a restored VM's RAM) is tracked too.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
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
#include "snap/memory.h"
#include "vm.h"

#define PG 4096ULL
#define R0 (4 * 1024 * 1024ULL) /* region 0: 1024 pages */
#define R1 (2 * 1024 * 1024ULL) /* region 1: 512 pages, numbered from 1024 */
#define NPAGES ((R0 + R1) / PG)

static struct vm vm;
static uint64_t bm[NPAGES / 64];

/* Guest RAM of two regions, anonymous (or, with @fd, a private mapping of that file). */
static int make_ram(int fd)
{
	memset(&vm, 0, sizeof(vm));
	for (unsigned i = 0; i < 2; i++) {
		uint64_t size = i ? R1 : R0;
		/* Mapped as khyve maps guest RAM (no transparent huge pages, vm.h). */
		void *p = vm_map_aligned(size, MAP_PRIVATE | (fd < 0 ? MAP_ANONYMOUS : 0), fd,
					 fd < 0 ? 0 : (off_t)(i ? R0 : 0));

		if (p == MAP_FAILED)
			return -errno;
		vm.mem[i] = (struct mem_region){ i ? 0x100000000ULL : 0, size, p, i };
	}
	vm.nmem = 2;
	return 0;
}

static void free_ram(void)
{
	dirty_vm_free(&vm);
	for (unsigned i = 0; i < vm.nmem; i++)
		munmap(vm.mem[i].hva, vm.mem[i].size);
}

/* Page @pg in the memory map's numbering. */
static uint8_t *page(uint64_t pg)
{
	return pg < R0 / PG ? (uint8_t *)vm.mem[0].hva + pg * PG
			    : (uint8_t *)vm.mem[1].hva + (pg - R0 / PG) * PG;
}

static unsigned count(const uint64_t *b)
{
	unsigned n = 0;

	for (size_t i = 0; i < NPAGES / 64; i++)
		n += (unsigned)__builtin_popcountll(b[i]);
	return n;
}

/* A client was made; skip (only) when this kernel cannot track at all. */
static int new_client(struct dirty_client **c)
{
	int ret = dirty_client_new(&vm, c);

	if (ret == -EOPNOTSUPP || ret == -EPERM || ret == -ENOSYS)
		return ret;
	assert_int_equal(ret, 0);
	return 0;
}

/* A client of the RAM made here; else (no userfaultfd write-protection) the RAM goes, skip. */
static void client_or_skip(struct dirty_client **c)
{
	if (new_client(c)) {
		free_ram();
		skip();
	}
}

/*
 * Tracking leaves uffd-wp markers on never-touched pages, which pagemap shows as swapped: a
 * save must not count them as touched (it read every page of RAM, and the free-space check
 * asked for all of it).
 */
static void test_markers_not_touched(void **state)
{
	struct dirty_client *c;
	uint64_t bytes;

	assert_int_equal(make_ram(-1), 0);
	for (uint64_t pg = 0; pg < 100; pg++)
		page(pg)[0] = 1;
	client_or_skip(&c);
	page(1030)[0] = 1;
	assert_int_equal(snap_memory_touched(&vm, NULL, &bytes), 0);
	assert_int_equal(bytes, 101 * PG);
	dirty_client_free(c);
	free_ram();
}

static void *writer_thread(void *arg)
{
	for (uint64_t pg = 200; pg < 210; pg++)
		page(pg)[7] = 0x42;
	return NULL;
}

static void test_writers(void **state)
{
	struct dirty_client *c;
	volatile uint8_t sink = 0;
	pthread_t th;
	int fd;

	assert_int_equal(make_ram(-1), 0);
	/* Touched before tracking starts: not reported. */
	for (uint64_t pg = 0; pg < 100; pg++)
		page(pg)[0] = 1;
	client_or_skip(&c);
	assert_int_equal(dirty_npages(&vm), NPAGES);
	assert_int_equal(dirty_client_fetch(c, bm, NPAGES), 0);
	assert_int_equal(count(bm), 0);

	page(5)[100] = 2;	      /* touched before: written again */
	page(500)[0] = 3;	      /* first touch */
	page(1024)[0] = 4;	      /* first page of region 1 */
	page(NPAGES - 1)[PG - 1] = 5; /* last page */
	for (uint64_t pg = 600; pg < 700; pg++)
		sink += page(pg)[1]; /* reads */
	for (uint64_t pg = 0; pg < 50; pg++)
		sink += page(pg)[1];
	assert_int_equal(pthread_create(&th, NULL, writer_thread, NULL), 0);
	pthread_join(th, NULL);
	/* The kernel writing into RAM (a device thread's preadv into a guest buffer). */
	fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, page(1100), 2 * PG, 0), (ssize_t)(2 * PG));
	close(fd);

	assert_int_equal(dirty_client_fetch(c, bm, NPAGES), 0);
	assert_int_equal(count(bm), 4 + 10 + 2);
	assert_true(dirty_test(bm, 5));
	assert_true(dirty_test(bm, 500));
	assert_true(dirty_test(bm, 1024));
	assert_true(dirty_test(bm, NPAGES - 1));
	for (uint64_t pg = 200; pg < 210; pg++)
		assert_true(dirty_test(bm, pg));
	assert_true(dirty_test(bm, 1100));
	assert_true(dirty_test(bm, 1101));
	assert_false(dirty_test(bm, 600));
	/* Get and clear: nothing written since. */
	assert_int_equal(dirty_client_fetch(c, bm, NPAGES), 0);
	assert_int_equal(count(bm), 0);
	/* The same page written again is reported again. */
	page(5)[0] = 9;
	assert_int_equal(dirty_client_fetch(c, bm, NPAGES), 0);
	assert_int_equal(count(bm), 1);
	assert_true(dirty_test(bm, 5));
	/* A bitmap of another size is refused. */
	assert_int_equal(dirty_client_fetch(c, bm, NPAGES - 1), -EINVAL);
	dirty_client_free(c);
	assert_false(dirty_tracking(&vm));
	free_ram();
	(void)sink;
}

static void test_clients(void **state)
{
	struct dirty_client *a, *b;

	assert_int_equal(make_ram(-1), 0);
	if (new_client(&a)) {
		free_ram();
		skip();
	}
	page(10)[0] = 1;
	assert_int_equal(dirty_client_new(&vm, &b), 0);
	/* b came after the write: it does not see it; a does. */
	page(20)[0] = 1;
	assert_int_equal(dirty_client_fetch(b, bm, NPAGES), 0);
	assert_int_equal(count(bm), 1);
	assert_true(dirty_test(bm, 20));
	page(30)[0] = 1;
	assert_int_equal(dirty_client_fetch(a, bm, NPAGES), 0);
	assert_int_equal(count(bm), 3);
	assert_true(dirty_test(bm, 10) && dirty_test(bm, 20) && dirty_test(bm, 30));
	assert_int_equal(dirty_client_fetch(b, bm, NPAGES), 0);
	assert_int_equal(count(bm), 1);
	assert_true(dirty_test(bm, 30));

	/* Given back: a failed save's pages come again with the next fetch. */
	page(40)[0] = 1;
	assert_int_equal(dirty_client_fetch(a, bm, NPAGES), 0);
	assert_int_equal(count(bm), 1);
	dirty_client_unfetch(a, bm, NPAGES);
	page(41)[0] = 1;
	assert_int_equal(dirty_client_fetch(a, bm, NPAGES), 0);
	assert_int_equal(count(bm), 2);
	assert_true(dirty_test(bm, 40) && dirty_test(bm, 41));

	/* One client gone, the other still tracks. */
	dirty_client_free(a);
	assert_true(dirty_tracking(&vm));
	page(50)[0] = 1;
	assert_int_equal(dirty_client_fetch(b, bm, NPAGES), 0);
	/* 40 and 41 too: b had not fetched them yet. */
	assert_int_equal(count(bm), 3);
	assert_true(dirty_test(bm, 40) && dirty_test(bm, 41) && dirty_test(bm, 50));
	dirty_client_free(b);
	free_ram();
}

/* The hand-over to a live checkpoint: every page present afterwards counts as written. */
static void test_suspend_resume(void **state)
{
	struct dirty_client *c;

	assert_int_equal(make_ram(-1), 0);
	for (uint64_t pg = 0; pg < 8; pg++)
		page(pg)[0] = 1;
	client_or_skip(&c);
	page(3)[0] = 2; /* written before the hand-over */
	assert_int_equal(dirty_suspend(&vm), 0);
	page(900)[0] = 3; /* written while a live checkpoint owns RAM */
	assert_int_equal(dirty_resume(&vm), 0);
	page(1200)[0] = 4; /* after */
	assert_int_equal(dirty_client_fetch(c, bm, NPAGES), 0);
	/* Pages 0-7 (present), 900 and 1200: a superset of what was written, nothing lost. */
	assert_true(dirty_test(bm, 3));
	assert_true(dirty_test(bm, 900));
	assert_true(dirty_test(bm, 1200));
	assert_int_equal(count(bm), 8 + 2);
	/* Tracking goes on precisely after it. */
	page(7)[0] = 5;
	assert_int_equal(dirty_client_fetch(c, bm, NPAGES), 0);
	assert_int_equal(count(bm), 1);
	assert_true(dirty_test(bm, 7));
	dirty_client_free(c);
	free_ram();
}

/* A restored VM's RAM: a private mapping of the snapshot file; reads map its pages, clean. */
static void test_private_file_mapping(void **state)
{
	char path[] = "/tmp/khyve-dirty-XXXXXX";
	struct dirty_client *c;
	volatile uint8_t sink = 0;
	uint8_t data[PG];
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	unlink(path);
	assert_int_equal(ftruncate(fd, (off_t)(R0 + R1)), 0);
	memset(data, 0x77, sizeof(data));
	for (uint64_t pg = 0; pg < NPAGES; pg += 2)
		assert_int_equal(pwrite(fd, data, PG, (off_t)(pg * PG)), (ssize_t)PG);
	assert_int_equal(make_ram(fd), 0);
	for (uint64_t pg = 0; pg < 64; pg++)
		sink += page(pg)[0]; /* read before tracking */
	if (new_client(&c)) {
		free_ram();
		close(fd);
		skip();
	}
	for (uint64_t pg = 64; pg < 300; pg++)
		sink += page(pg)[0]; /* read after: file pages mapped, not written */
	page(2)[0] = 1;		     /* a page read before, now copied on write */
	page(100)[0] = 1;	     /* read, then written */
	page(1030)[5] = 1;	     /* never touched, written */
	assert_int_equal(dirty_client_fetch(c, bm, NPAGES), 0);
	assert_int_equal(count(bm), 3);
	assert_true(dirty_test(bm, 2) && dirty_test(bm, 100) && dirty_test(bm, 1030));
	assert_int_equal(page(100)[1], 0x77); /* the copy holds the file's data */
	dirty_client_free(c);
	free_ram();
	close(fd);
	(void)sink;
}

/* The VM goes away before its clients: their fetches fail, freeing them is still safe. */
static void test_vm_gone(void **state)
{
	struct dirty_client *c;

	assert_int_equal(make_ram(-1), 0);
	client_or_skip(&c);
	free_ram();
	assert_int_equal(dirty_client_fetch(c, bm, NPAGES), -ENODEV);
	dirty_client_free(c);
}

/* Runs and addresses at the edges: a run up to the last page, a page past the end. */
static void test_runs_and_pages(void **state)
{
	uint64_t b[2] = { 0, 0 }, pg = 0, left = 7;

	memset(&vm, 0, sizeof(vm));
	vm.mem[0] = (struct mem_region){ 0, 64 * PG, (void *)0x10000000, 0 };
	vm.mem[1] = (struct mem_region){ 0x100000000ULL, 36 * PG, (void *)0x20000000, 1 };
	vm.nmem = 2;
	assert_int_equal(dirty_npages(&vm), 100);
	/* Pages 60-66 (across a word), then 97-99, the last. */
	for (unsigned i = 60; i < 67; i++)
		b[i / 64] |= 1ULL << (i % 64);
	for (unsigned i = 97; i < 100; i++)
		b[i / 64] |= 1ULL << (i % 64);
	assert_int_equal(dirty_next_run(b, 100, &pg), 7);
	assert_int_equal(pg, 60);
	pg = 67;
	assert_int_equal(dirty_next_run(b, 100, &pg), 3);
	assert_int_equal(pg, 97);
	pg = 100;
	assert_int_equal(dirty_next_run(b, 100, &pg), 0);
	assert_int_equal(pg, 100);
	/* Page 64 is region 1's first; 100 is past the end. */
	assert_ptr_equal(dirty_page_hva(&vm, 64, &left), (void *)0x20000000);
	assert_int_equal(left, 36);
	assert_ptr_equal(dirty_page_hva(&vm, 63, &left), (uint8_t *)0x10000000 + 63 * PG);
	assert_int_equal(left, 1);
	assert_null(dirty_page_hva(&vm, 100, &left));
	assert_int_equal(left, 0);
	memset(&vm, 0, sizeof(vm));
}

/* Pages given back in a bitmap of another size are not taken; freeing no client is nothing. */
static void test_unfetch_other_size(void **state)
{
	struct dirty_client *c;

	assert_int_equal(make_ram(-1), 0);
	client_or_skip(&c);
	memset(bm, 0xff, sizeof(bm));
	dirty_client_unfetch(c, bm, NPAGES - 1);
	assert_int_equal(dirty_client_fetch(c, bm, NPAGES), 0);
	assert_int_equal(count(bm), 0);
	dirty_client_free(c);
	dirty_client_free(NULL);
	free_ram();
}

/* A VM with no RAM: a client tracks nothing, and fetches an empty bitmap. */
static void test_no_ram(void **state)
{
	struct dirty_client *c;
	uint64_t none = 0x5a;

	memset(&vm, 0, sizeof(vm));
	if (new_client(&c))
		skip();
	assert_int_equal(dirty_npages(&vm), 0);
	assert_int_equal(dirty_client_fetch(c, &none, 0), 0);
	assert_int_equal(dirty_clients(&vm), 1);
	dirty_client_free(c);
	assert_false(dirty_tracking(&vm));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_writers),	       cmocka_unit_test(test_clients),
		cmocka_unit_test(test_suspend_resume), cmocka_unit_test(test_private_file_mapping),
		cmocka_unit_test(test_vm_gone),	       cmocka_unit_test(test_markers_not_touched),
		cmocka_unit_test(test_runs_and_pages), cmocka_unit_test(test_unfetch_other_size),
		cmocka_unit_test(test_no_ram),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
