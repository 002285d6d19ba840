// SPDX-License-Identifier: BSD-2-Clause
/*
 * Guest memory in snapshots (snap/memory.c) with host failures injected (tests/faultinj.h),
 * and its paths the plain test (test_memory.c) does not take:
 *
 *  - a save whose pagemap cannot be opened or read (failed, short), whose memory write fails,
 *    or whose extent table cannot grow, is refused with a message;
 *  - an incremental save (snap_memory_save_dirty) writes exactly the dirty pages, zero ones
 *    too, in runs split where the bitmap is clear, and reports its progress to the end;
 *  - a save held to a rate reports progress while it waits;
 *  - a restore of a chain maps each run a later link holds over the base, and where mmap runs
 *    out of mappings (ENOMEM) reads the pages in instead, through EINTR and short reads; any
 *    other mmap error, a link that ends early, the base's mapping failing or KVM refusing the
 *    memory slots is refused with a message naming what failed.
 *
 * The chain's restore needs /dev/kvm for the last step only; without it that step is skipped.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "faultinj.h"
#include "snap/chain.h"
#include "snap/dirty.h"
#include "snap/format.h"
#include "snap/memory.h"
#include "snap/snapshot.h"
#include "vm.h"

#define PG 4096ULL
#define RAM (8 * 1024 * 1024ULL)

static char dir[64], path[128];

static int setup(void **state)
{
	(void)state;
	fi_reset();
	strcpy(dir, "/tmp/khyve-memf-XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/vm.snap", dir);
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	fi_reset();
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd);
}

static void fill(struct vm *vm, uint64_t page, unsigned n, uint8_t v)
{
	memset(vm_gpa(vm, page * PG, n * PG), v, n * PG);
}

/* A streaming writer's sink that records the memory writes, failing the @fail_at'th. */
struct sink {
	unsigned n, fail_at;
	uint64_t off[64], len[64];
	uint8_t first[64];
};

static int sink_fn(void *opaque, const struct snap_section *sec, uint64_t offset, const void *buf,
		   uint64_t len)
{
	struct sink *s = opaque;

	assert_null(sec);
	if (++s->n == s->fail_at)
		return -ENOSPC;
	if (s->n <= 64) {
		s->off[s->n - 1] = offset;
		s->len[s->n - 1] = len;
		s->first[s->n - 1] = *(const uint8_t *)buf;
	}
	return 0;
}

struct progress {
	unsigned calls;
	uint64_t done, total;
	bool backwards;
};

static void progress_fn(void *opaque, uint64_t done, uint64_t total)
{
	struct progress *p = opaque;

	if (p->calls && done < p->done)
		p->backwards = true;
	p->calls++;
	p->done = done;
	p->total = total;
}

static void vm_with_pages(struct vm *vm)
{
	vm_init_bare(vm, true);
	assert_int_equal(vm_add_memory(vm, RAM), 0);
	fill(vm, 3, 2, 0x5a);
	fill(vm, 700, 1, 0x77);
}

/* Each host failure of a full save is refused with a message saying what failed. */
static void test_save_failures(void **state)
{
	struct vm vm;
	struct snap_writer w;
	struct snap_file map;
	struct snap_result res;
	struct sink s;
	char err[256];
	uint64_t bytes = 1;

	(void)state;
	vm_with_pages(&vm);

	/* The pagemap cannot be opened. */
	memset(&s, 0, sizeof(s));
	snap_writer_open_sink(&w, RAM, sink_fn, &s);
	memset(&map, 0, sizeof(map));
	memset(&res, 0, sizeof(res));
	fi_fail(FI_OPEN, 1, EMFILE);
	err[0] = 0;
	assert_int_equal(snap_memory_save(&vm, &w, NULL, &map, NULL, &res, err, sizeof(err)),
			 -EMFILE);
	assert_true(fi_all_fired());
	assert_string_equal(err, "/proc/self/pagemap: Too many open files");
	assert_int_equal(s.n, 0);
	fi_reset();

	/* Its read fails, or comes back short: nothing is written. */
	fi_fail(FI_PREAD, 1, EIO);
	err[0] = 0;
	assert_int_equal(snap_memory_save(&vm, &w, NULL, &map, NULL, &res, err, sizeof(err)), -EIO);
	assert_true(fi_all_fired());
	assert_string_equal(err, "saving guest memory: Input/output error");
	assert_int_equal(s.n, 0);
	fi_reset();
	fi_short(FI_PREAD, 1);
	err[0] = 0;
	assert_int_equal(snap_memory_save(&vm, &w, NULL, &map, NULL, &res, err, sizeof(err)), -EIO);
	assert_true(fi_all_fired());
	assert_string_equal(err, "saving guest memory: Input/output error");
	fi_reset();

	/* Counting touched pages for the progress total shares that read. */
	fi_fail(FI_PREAD, 1, EACCES);
	assert_int_equal(snap_memory_touched(&vm, NULL, &bytes), -EACCES);
	assert_int_equal(bytes, 0);
	fi_reset();
	fi_fail(FI_OPEN, 1, ENFILE);
	assert_int_equal(snap_memory_touched(&vm, NULL, &bytes), -ENFILE);
	fi_reset();

	/* The second run's write fails: the error is the writer's. */
	memset(&s, 0, sizeof(s));
	s.fail_at = 2;
	free(map.extents);
	memset(&map, 0, sizeof(map));
	err[0] = 0;
	assert_int_equal(snap_memory_save(&vm, &w, NULL, &map, NULL, &res, err, sizeof(err)),
			 -ENOSPC);
	assert_string_equal(err, "saving guest memory: No space left on device");
	assert_int_equal(s.n, 2);
	assert_int_equal(map.nextents, 1); /* only the run that was written */

	/* The extent table cannot be made. */
	memset(&s, 0, sizeof(s));
	free(map.extents);
	memset(&map, 0, sizeof(map));
	fi_fail(FI_REALLOC, 1, ENOMEM);
	err[0] = 0;
	assert_int_equal(snap_memory_save(&vm, &w, NULL, &map, NULL, &res, err, sizeof(err)),
			 -ENOMEM);
	assert_true(fi_all_fired());
	assert_string_equal(err, "saving guest memory: Cannot allocate memory");
	assert_int_equal(map.nextents, 0);
	fi_reset();

	/* A progress total that cannot be counted is 0, and the save goes on. */
	{
		struct progress p = { 0 };
		struct snap_save_opts o = { .progress = progress_fn, .progress_opaque = &p };

		memset(&s, 0, sizeof(s));
		snap_writer_open_sink(&w, RAM, sink_fn, &s); /* bytes counted from 0 */
		memset(&res, 0, sizeof(res));
		free(map.extents);
		memset(&map, 0, sizeof(map));
		fi_fail(FI_PREAD, 1, EIO); /* the count's read; the save's own reads succeed */
		assert_int_equal(snap_memory_save(&vm, &w, NULL, &map, &o, &res, err, sizeof(err)),
				 0);
		assert_true(fi_all_fired());
		fi_reset();
		assert_int_equal(res.mem_pages, 3);
		assert_int_equal(map.nextents, 2);
		assert_true(p.calls >= 1);
		assert_false(p.backwards);
		assert_int_equal(p.done, 3 * PG);
		assert_int_equal(p.total, 3 * PG);
	}
	free(map.extents);
	vm_destroy(&vm);
}

/*
 * A save held to a rate: with 12 KiB to write at 400 KiB/s it must wait (~30 ms), reporting
 * progress meanwhile, and still write everything.
 */
static void test_save_throttled(void **state)
{
	struct vm vm;
	struct snap_writer w;
	struct snap_file map = { 0 };
	struct snap_result res = { 0 };
	struct sink s = { 0 };
	struct progress p = { 0 };
	struct snap_save_opts o = { .progress = progress_fn,
				    .progress_opaque = &p,
				    .max_rate = 400 * 1024 };
	char err[256];

	(void)state;
	vm_with_pages(&vm);
	snap_writer_open_sink(&w, RAM, sink_fn, &s);
	assert_int_equal(snap_memory_save(&vm, &w, NULL, &map, &o, &res, err, sizeof(err)), 0);
	assert_int_equal(s.n, 2);
	assert_int_equal(s.off[0], 3 * PG);
	assert_int_equal(s.len[0], 2 * PG);
	assert_int_equal(s.first[0], 0x5a);
	assert_int_equal(s.off[1], 700 * PG);
	/* One report per scan step (RAM is one step) and at least one while waiting. */
	assert_true(p.calls >= 2);
	assert_false(p.backwards);
	assert_int_equal(p.done, 3 * PG);
	assert_int_equal(p.total, 3 * PG);
	free(map.extents);
	vm_destroy(&vm);
}

/*
 * An incremental save writes the dirty pages, zero or not, as runs broken where the bitmap is
 * clear and at SNAP_EXTENT_MAX; clean pages are not written even if they hold data.
 */
static void test_save_dirty(void **state)
{
	struct vm vm;
	struct snap_writer w;
	struct snap_file map = { 0 };
	struct snap_result res = { 0 };
	struct sink s = { 0 };
	struct progress p = { 0 };
	struct snap_save_opts o = { .progress = progress_fn, .progress_opaque = &p };
	const uint64_t ram = 24 * 1024 * 1024ULL, run = SNAP_EXTENT_MAX / PG;
	uint64_t *dirty;
	char err[256];

	(void)state;
	vm_init_bare(&vm, true);
	assert_int_equal(vm_add_memory(&vm, ram), 0);
	fill(&vm, 10, 4, 0x10);	  /* dirty 10-11 only */
	fill(&vm, 4300, 1, 0x50); /* dirty, past the first scan step */
	dirty = calloc(dirty_words(dirty_npages(&vm)), 8);
	assert_non_null(dirty);
	for (uint64_t pg = 10; pg < 12; pg++)
		dirty[pg / 64] |= 1ULL << (pg % 64);
	dirty[20 / 64] |= 1ULL << 20; /* never touched: a zero page, still written */
	for (uint64_t pg = 4095; pg < 4095 + 2 * run; pg++)
		if (pg != 4200 && pg != 4201)
			dirty[pg / 64] |= 1ULL << (pg % 64);
	snap_writer_open_sink(&w, ram, sink_fn, &s);
	assert_int_equal(snap_memory_save_dirty(&vm, &w, dirty, &map, &o, &res, err, sizeof(err)),
			 0);
	/* 10-11, 20, 4095-4199, 4202-(4095 + 2 * run - 1) split at the extent limit. */
	assert_int_equal(res.mem_pages, 2 + 1 + 2 * run - 2);
	assert_int_equal(res.zero_pages, 0);
	assert_int_equal(map.nregions, 1);
	assert_int_equal(s.n, 5);
	assert_int_equal(map.nextents, 5);
	assert_int_equal(s.off[0], 10 * PG);
	assert_int_equal(s.len[0], 2 * PG);
	assert_int_equal(s.first[0], 0x10);
	assert_int_equal(s.off[1], 20 * PG);
	assert_int_equal(s.len[1], PG);
	assert_int_equal(s.first[1], 0);
	assert_int_equal(s.off[2], 4095 * PG);
	assert_int_equal(s.len[2], 105 * PG);
	assert_int_equal(s.off[3], 4202 * PG);
	assert_int_equal(s.len[3], SNAP_EXTENT_MAX);
	assert_int_equal(s.off[4], 4202 * PG + SNAP_EXTENT_MAX);
	assert_int_equal(s.len[4], (2 * run - 107) * PG - SNAP_EXTENT_MAX);
	assert_int_equal(((const uint8_t *)vm_gpa(&vm, 4300 * PG, PG))[0], 0x50);
	assert_int_equal(map.extents[0].file_offset, w.mem_offset + 10 * PG);
	assert_int_equal(map.extents[3].length, SNAP_EXTENT_MAX);
	assert_int_equal(map.extents[4].length, s.len[4]);
	assert_int_equal(map.extents[2].checksum,
			 snap_checksum(vm_gpa(&vm, 4095 * PG, 105 * PG), 105 * PG));
	assert_true(p.calls >= 1);
	assert_false(p.backwards);
	assert_int_equal(w.bytes, (2 + 1 + 2 * run - 2) * PG);

	/* A write failing, and the extent table failing to grow, are refused. */
	memset(&s, 0, sizeof(s));
	s.fail_at = 3;
	free(map.extents);
	memset(&map, 0, sizeof(map));
	err[0] = 0;
	assert_int_equal(snap_memory_save_dirty(&vm, &w, dirty, &map, NULL, &res, err, sizeof(err)),
			 -ENOSPC);
	assert_string_equal(err, "saving guest memory: No space left on device");
	assert_int_equal(map.nextents, 2);
	memset(&s, 0, sizeof(s));
	free(map.extents);
	memset(&map, 0, sizeof(map));
	fi_fail(FI_REALLOC, 1, ENOMEM);
	err[0] = 0;
	assert_int_equal(snap_memory_save_dirty(&vm, &w, dirty, &map, NULL, &res, err, sizeof(err)),
			 -ENOMEM);
	assert_true(fi_all_fired());
	assert_string_equal(err, "saving guest memory: Cannot allocate memory");
	fi_reset();
	free(map.extents);
	free(dirty);
	vm_destroy(&vm);
}

/*
 * A chain of two links made by hand: the base file holds 0xbb in every page, the tip 0x11;
 * the tip owns pages 2-3 and 40, page 60 is in no link, the rest is the base's.
 */
#define CPAGES (RAM / PG)
struct chain_files {
	struct snap_file base, tip;
	struct snap_file *file[2];
	char *name[2];
	uint16_t *owner;
	struct snap_chain c;
};

static int make_file(const char *name, uint8_t v)
{
	char p[160];
	uint8_t *buf = malloc(RAM);
	int fd;

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	fd = open(p, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_non_null(buf);
	memset(buf, v, RAM);
	assert_int_equal(pwrite(fd, buf, RAM, 0), (ssize_t)RAM);
	free(buf);
	return fd;
}

static void chain_make(struct chain_files *cf)
{
	memset(cf, 0, sizeof(*cf));
	cf->base.fd = make_file("base.snap", 0xbb);
	cf->tip.fd = make_file("tip.snap", 0x11);
	cf->base.nregions = cf->tip.nregions = 1;
	cf->base.regions[0] = cf->tip.regions[0] = (struct snap_region){ 0, RAM, 0 };
	cf->file[0] = &cf->tip;
	cf->file[1] = &cf->base;
	cf->name[0] = "tip.snap";
	cf->name[1] = "base.snap";
	cf->owner = calloc(CPAGES, sizeof(*cf->owner));
	assert_non_null(cf->owner);
	for (uint64_t i = 0; i < CPAGES; i++)
		cf->owner[i] = 1;
	cf->owner[2] = cf->owner[3] = cf->owner[40] = 0;
	cf->owner[60] = SNAP_NO_LINK;
	cf->c = (struct snap_chain){ 2, cf->file, cf->name, CPAGES, cf->owner };
}

static void chain_free(struct chain_files *cf)
{
	close(cf->base.fd);
	close(cf->tip.fd);
	free(cf->owner);
}

static void vm_for_restore(struct vm *vm, bool kvm)
{
	vm_init_bare(vm, true);
	vm->ram_size = RAM;
	if (!kvm)
		return;
	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	assert_true(vm->kvm_fd >= 0);
	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	assert_true(vm->vm_fd >= 0);
}

static void vm_restore_done(struct vm *vm)
{
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	vm->vm_fd = vm->kvm_fd = -1;
	vm_destroy(vm);
}

static uint8_t at(struct vm *vm, uint64_t page)
{
	return ((const uint8_t *)vm_gpa(vm, page * PG, PG))[PG / 2];
}

static void check_chain_memory(struct vm *vm)
{
	assert_int_equal(vm->nmem, 1);
	assert_int_equal(at(vm, 0), 0xbb);
	assert_int_equal(at(vm, 2), 0x11);
	assert_int_equal(at(vm, 3), 0x11);
	assert_int_equal(at(vm, 4), 0xbb);
	assert_int_equal(at(vm, 40), 0x11);
	assert_int_equal(at(vm, 60), 0xbb); /* no link: the base's mapping stays */
	assert_int_equal(at(vm, CPAGES - 1), 0xbb);
}

static void test_map_chain(void **state)
{
	bool kvm = access("/dev/kvm", R_OK | W_OK) == 0;
	struct chain_files cf;
	struct vm vm;
	unsigned mmaps;
	char err[256];

	(void)state;
	chain_make(&cf);

	/* Without a KVM VM the memory is mapped but the slots are refused. */
	vm_for_restore(&vm, false);
	err[0] = 0;
	fi_reset();
	assert_true(snap_memory_map_chain(&vm, &cf.c, err, sizeof(err)) < 0);
	assert_non_null(strstr(err, "KVM_SET_USER_MEMORY_REGION: "));
	mmaps = fi_calls(FI_MMAP); /* the base's (reserve, map), then one per run of the tip */
	assert_int_equal(mmaps, 2 + 2);
	check_chain_memory(&vm);
	vm_restore_done(&vm);

	/* The base's mapping fails. */
	vm_for_restore(&vm, false);
	fi_reset();
	fi_fail(FI_MMAP, 2, EACCES);
	err[0] = 0;
	assert_int_equal(snap_memory_map_chain(&vm, &cf.c, err, sizeof(err)), -EACCES);
	assert_true(fi_all_fired());
	assert_string_equal(err, "mapping guest memory from the snapshot: Permission denied");
	assert_int_equal(vm.nmem, 0);
	vm_restore_done(&vm);

	/* A run's mapping fails otherwise than out of mappings: named by its link. */
	vm_for_restore(&vm, false);
	fi_reset();
	fi_fail(FI_MMAP, 4, EACCES);
	err[0] = 0;
	assert_int_equal(snap_memory_map_chain(&vm, &cf.c, err, sizeof(err)), -EACCES);
	assert_true(fi_all_fired());
	assert_string_equal(err, "mapping guest memory from tip.snap: Permission denied");
	vm_restore_done(&vm);

	/* A link whose file ends before its run: read in, the read finds nothing. */
	vm_for_restore(&vm, false);
	fi_reset();
	fi_fail_from(FI_MMAP, 3, ENOMEM);
	assert_int_equal(ftruncate(cf.tip.fd, 3 * PG), 0);
	err[0] = 0;
	assert_int_equal(snap_memory_map_chain(&vm, &cf.c, err, sizeof(err)), -EIO);
	assert_string_equal(err, "mapping guest memory from tip.snap: Input/output error");
	vm_restore_done(&vm);
	fi_reset();
	close(cf.tip.fd);
	cf.tip.fd = make_file("tip.snap", 0x11);

	/* The read itself fails. */
	vm_for_restore(&vm, false);
	fi_fail_from(FI_MMAP, 3, ENOMEM);
	fi_fail(FI_PREAD, 1, EIO);
	err[0] = 0;
	assert_int_equal(snap_memory_map_chain(&vm, &cf.c, err, sizeof(err)), -EIO);
	assert_true(fi_all_fired());
	assert_string_equal(err, "mapping guest memory from tip.snap: Input/output error");
	vm_restore_done(&vm);
	fi_reset();

	if (!kvm) {
		chain_free(&cf);
		skip();
	}
	/* With KVM: mapped whole. */
	vm_for_restore(&vm, true);
	assert_int_equal(snap_memory_map_chain(&vm, &cf.c, err, sizeof(err)), 0);
	check_chain_memory(&vm);
	vm_restore_done(&vm);
	fi_reset();

	/*
	 * Out of mappings from the first run on: the runs are read in (through an EINTR and a
	 * short read), as private copies: writing them reaches no file.
	 */
	vm_for_restore(&vm, true);
	fi_fail_from(FI_MMAP, 3, ENOMEM);
	fi_eintr(FI_PREAD, 1);
	fi_short(FI_PREAD, 2);
	assert_int_equal(snap_memory_map_chain(&vm, &cf.c, err, sizeof(err)), 0);
	assert_true(fi_all_fired());
	assert_int_equal(fi_calls(FI_MMAP), 3); /* one try, then no more */
	fi_reset();
	check_chain_memory(&vm);
	fill(&vm, 2, 1, 0x22);
	{
		uint8_t b = 0;

		assert_int_equal(pread(cf.tip.fd, &b, 1, 2 * PG), 1);
		assert_int_equal(b, 0x11);
	}
	vm_restore_done(&vm);
	chain_free(&cf);
}

/*
 * Two regions of 8 MiB, mapped by hand (the save does not care where guest RAM came from);
 * the first holds a run longer than one extent, the second one page.
 */
static void vm_two_regions(struct vm *vm)
{
	const uint64_t size = 4 * SNAP_EXTENT_MAX;

	vm_init_bare(vm, true);
	for (unsigned i = 0; i < 2; i++) {
		void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
			       0);

		assert_true(p != MAP_FAILED);
		vm->mem[i] = (struct mem_region){ i ? 1ULL << 32 : 0, size, p, i };
	}
	vm->nmem = 2;
	vm->ram_size = 2 * size;
	memset(vm->mem[0].hva, 0x21, SNAP_EXTENT_MAX + 2 * PG);
	memset(vm->mem[1].hva, 0x22, PG);
}

/*
 * A write failing where a run is cut at the extent limit (full and incremental saves): the
 * save stops there, in the first region, with the writer's error; the second region is not
 * looked at.
 */
static void test_long_run_write_fails(void **state)
{
	const uint64_t run = SNAP_EXTENT_MAX / PG + 2;
	struct snap_result res = { 0 };
	struct snap_file map = { 0 };
	struct snap_writer w;
	struct sink s = { .fail_at = 1 };
	struct vm vm;
	uint64_t *dirty;
	char err[256];

	vm_two_regions(&vm);
	snap_writer_open_sink(&w, vm.ram_size, sink_fn, &s);
	assert_int_equal(snap_memory_save(&vm, &w, NULL, &map, NULL, &res, err, sizeof(err)),
			 -ENOSPC);
	assert_string_equal(err, "saving guest memory: No space left on device");
	assert_int_equal(s.n, 1);
	assert_int_equal(res.mem_pages, SNAP_EXTENT_MAX / PG + 1); /* the page that cut it */
	assert_int_equal(map.nextents, 0);
	free(map.extents);

	dirty = calloc(dirty_words(dirty_npages(&vm)), 8);
	assert_non_null(dirty);
	for (uint64_t pg = 0; pg < run; pg++)
		dirty[pg / 64] |= 1ULL << (pg % 64);
	dirty[(vm.mem[0].size / PG) / 64] |= 1; /* the second region's first page */
	memset(&s, 0, sizeof(s));
	s.fail_at = 1;
	memset(&map, 0, sizeof(map));
	memset(&res, 0, sizeof(res));
	snap_writer_open_sink(&w, vm.ram_size, sink_fn, &s);
	assert_int_equal(snap_memory_save_dirty(&vm, &w, dirty, &map, NULL, &res, err, sizeof(err)),
			 -ENOSPC);
	assert_int_equal(s.n, 1);
	assert_int_equal(map.nextents, 0);
	free(map.extents);
	free(dirty);
	vm_destroy(&vm);
}

/* The touched count with the pagemap read coming back short: an error, no count. */
static void test_touched_short_read(void **state)
{
	uint64_t bytes = 1;
	struct vm vm;

	vm_with_pages(&vm);
	fi_short(FI_PREAD, 1);
	assert_int_equal(snap_memory_touched(&vm, NULL, &bytes), -EIO);
	assert_true(fi_all_fired());
	assert_int_equal(bytes, 0);
	fi_reset();
	vm_destroy(&vm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_save_failures, setup, teardown),
		cmocka_unit_test_setup_teardown(test_save_throttled, setup, teardown),
		cmocka_unit_test_setup_teardown(test_save_dirty, setup, teardown),
		cmocka_unit_test_setup_teardown(test_map_chain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_long_run_write_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_touched_short_read, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
