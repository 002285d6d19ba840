// SPDX-License-Identifier: BSD-2-Clause
/*
 * Guest memory in snapshots (snap/memory.c) without a VM: anonymous guest RAM, the pages a
 * save stores (touched and not all zero, in extents of at most SNAP_EXTENT_MAX), the file that
 * results verifying, and the memory layout a restore accepts from a file.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/kvm.h>

#include <cmocka.h>

#include "snap/format.h"
#include "snap/memory.h"
#include "sstream.h"
#include "vm.h"

#include "snapwrite.h"

#define PG 4096ULL
#define RAM (8 * 1024 * 1024ULL)

static char dir[64], path[128];

static int setup(void **state)
{
	strcpy(dir, "/tmp/khyve-mem-XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/vm.snap", dir);
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd);
}

static void fill(struct vm *vm, uint64_t page, unsigned n, uint8_t v)
{
	memset(vm_gpa(vm, page * PG, n * PG), v, n * PG);
}

/* @b: guest RAM backed by the snapshot @f (its memory and extents), as a restored VM's is. */
static void back_by(struct mem_backing *b, const struct snap_file *f)
{
	b->fd = f->fd;
	b->nextents = f->nextents;
	b->extents = f->extents;
	b->region_file_offset[0] = f->regions[0].file_offset;
}

/*
 * Touched pages: 3-4 and 700 hold data, 9 was written with zeros, 1024-1543 (520 pages, more
 * than one extent may hold) hold data.  Everything else was never touched.
 */
static void test_save_stores_touched_pages(void **state)
{
	struct vm vm;
	struct snap_writer w;
	struct snap_file map, f;
	struct snap_result res = { 0 };
	uint64_t bytes = 0;
	uint8_t page[PG];
	char err[256];

	vm_init_bare(&vm, true);
	assert_int_equal(vm_add_memory(&vm, RAM), 0);
	fill(&vm, 3, 2, 0x5a);
	fill(&vm, 9, 1, 0);
	fill(&vm, 700, 1, 0x77);
	fill(&vm, 1024, 520, 0x33);
	assert_int_equal(snap_memory_touched(&vm, NULL, &bytes), 0);
	assert_int_equal(bytes, (2 + 1 + 1 + 520) * PG);

	assert_int_equal(snap_writer_open(&w, path, RAM, err, sizeof(err)), 0);
	memset(&map, 0, sizeof(map));
	assert_int_equal(snap_memory_save(&vm, &w, NULL, &map, NULL, &res, err, sizeof(err)), 0);
	assert_int_equal(res.mem_pages, 2 + 1 + 520);
	assert_int_equal(res.zero_pages, 1);
	assert_int_equal(map.nregions, 1);
	assert_int_equal(map.regions[0].gpa, 0);
	assert_int_equal(map.regions[0].size, RAM);
	assert_int_equal(map.regions[0].file_offset, w.mem_offset);
	/* 3-4, 700, then the long run split at the extent limit. */
	assert_int_equal(map.nextents, 4);
	assert_int_equal(map.extents[0].file_offset, w.mem_offset + 3 * PG);
	assert_int_equal(map.extents[0].length, 2 * PG);
	assert_int_equal(map.extents[1].file_offset, w.mem_offset + 700 * PG);
	assert_int_equal(map.extents[1].length, PG);
	assert_int_equal(map.extents[2].file_offset, w.mem_offset + 1024 * PG);
	assert_int_equal(map.extents[2].length, SNAP_EXTENT_MAX);
	assert_int_equal(map.extents[3].file_offset, w.mem_offset + 1024 * PG + SNAP_EXTENT_MAX);
	assert_int_equal(map.extents[3].length, 520 * PG - SNAP_EXTENT_MAX);
	assert_int_equal(snap_writer_section(&w, SNAP_SEC_META, "meta", 1, "{}", 2), 0);
	snapwrite_memmap_commit(&w, &map);

	/* The file verifies (every extent's checksum, nothing outside them), and holds the data. */
	assert_int_equal(snap_file_open(&f, path, true, err, sizeof(err)), 0);
	assert_int_equal(pread(f.fd, page, PG, (off_t)(f.mem_offset + 700 * PG)), (ssize_t)PG);
	assert_int_equal(page[0], 0x77);
	assert_int_equal(page[PG - 1], 0x77);
	assert_int_equal(pread(f.fd, page, PG, (off_t)(f.mem_offset + 9 * PG)), (ssize_t)PG);
	for (unsigned i = 0; i < PG; i++)
		assert_int_equal(page[i], 0);

	/*
	 * With /dev/kvm: a VM restored from that file maps it; it counts as touched what the
	 * file holds plus what the guest wrote since (copy-on-write pages), and saving it again
	 * stores both.
	 */
	{
		struct vm r;
		struct mem_backing b = { 0 };
		struct snap_file map2;
		struct snap_result res2 = { 0 };
		char path2[160];

		vm_init_bare(&r, true);
		r.kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
		if (r.kvm_fd < 0) {
			assert_int_equal(errno, ENOENT); /* only a machine without KVM skips this */
			goto done;
		}
		r.vm_fd = ioctl(r.kvm_fd, KVM_CREATE_VM, 0);
		assert_true(r.vm_fd >= 0);
		r.ram_size = RAM;
		assert_int_equal(snap_memory_map(&r, &f, err, sizeof(err)), 0);
		assert_int_equal(r.nmem, 1);
		assert_int_equal(((uint8_t *)vm_gpa(&r, 700 * PG, 1))[0], 0x77);
		fill(&r, 5, 1, 0x11);	/* next to the file's 3-4: one run of three */
		fill(&r, 700, 1, 0x78); /* rewritten */
		back_by(&b, &f);
		assert_int_equal(snap_memory_touched(&r, &b, &bytes), 0);
		assert_int_equal(bytes, (2 + 1 + 1 + 520) * PG);
		snprintf(path2, sizeof(path2), "%s/again.snap", dir);
		assert_int_equal(snap_writer_open(&w, path2, RAM, err, sizeof(err)), 0);
		memset(&map2, 0, sizeof(map2));
		assert_int_equal(snap_memory_save(&r, &w, &b, &map2, NULL, &res2, err, sizeof(err)),
				 0);
		assert_int_equal(res2.mem_pages, 3 + 1 + 520);
		assert_int_equal(map2.nextents, 4);
		assert_int_equal(map2.extents[0].file_offset, w.mem_offset + 3 * PG);
		assert_int_equal(map2.extents[0].length, 3 * PG);
		assert_int_equal(map2.extents[1].checksum != map.extents[1].checksum, 1);
		snap_writer_abort(&w);
		free(map2.extents);
		close(r.vm_fd);
		close(r.kvm_fd);
		r.vm_fd = r.kvm_fd = -1;
	done:
		vm_destroy(&r);
	}
	snap_file_close(&f);
	free(map.extents);
	vm_destroy(&vm);
}

/* A restore maps the file's regions only if they are exactly the layout of its memory size. */
static void test_map_layout_refused(void **state)
{
	static const struct {
		uint64_t ram;
		unsigned n;
		struct snap_region r[2];
	} bad[] = {
		{ 256ULL << 20, 2, { { 0, 256ULL << 20, 0 }, { HIGHMEM_BASE, 4096, 0 } } },
		{ 256ULL << 20, 1, { { 4096, 256ULL << 20, 0 } } },
		{ 256ULL << 20, 1, { { 0, 128ULL << 20, 0 } } },
		{ 4ULL << 30, 1, { { 0, LOWMEM_LIMIT, 0 } } },
		{ 4ULL << 30, 2, { { 0, 2ULL << 30, 0 }, { HIGHMEM_BASE, 2ULL << 30, 0 } } },
		{ 4ULL << 30, 2, { { 0, LOWMEM_LIMIT, 0 }, { 5ULL << 30, 1ULL << 30, 0 } } },
		{ 4ULL << 30, 2, { { 0, LOWMEM_LIMIT, 0 }, { HIGHMEM_BASE, 2ULL << 30, 0 } } },
	};
	char err[256];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct vm vm;
		struct snap_file f;

		vm_init_bare(&vm, true);
		vm.ram_size = bad[i].ram;
		memset(&f, 0, sizeof(f));
		f.fd = -1;
		f.nregions = bad[i].n;
		memcpy(f.regions, bad[i].r, sizeof(f.regions));
		err[0] = 0;
		assert_int_equal(snap_memory_map(&vm, &f, err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, "memory layout does not match"));
		assert_int_equal(vm.nmem, 0);
		vm_destroy(&vm);
	}
}

/* Save @vm to @p, with @backing, and the file opened in @f; the map in @map. */
static void save_to(struct vm *vm, const char *p, const struct mem_backing *backing,
		    struct snap_file *map, struct snap_result *res)
{
	const struct snap_save_opts opts = { 0 }; /* no progress to report */
	struct snap_writer w;
	char err[256];

	assert_int_equal(snap_writer_open(&w, p, snap_memory_size(vm), err, sizeof(err)), 0);
	memset(map, 0, sizeof(*map));
	memset(res, 0, sizeof(*res));
	if (snap_memory_save(vm, &w, backing, map, &opts, res, err, sizeof(err)))
		fail_msg("save: %s", err);
	assert_int_equal(snap_writer_section(&w, SNAP_SEC_META, "meta", 1, "{}", 2), 0);
	snapwrite_memmap_commit(&w, map);
}

/*
 * RAM that maps a snapshot file privately, as a restored VM's does (here mapped by hand, no
 * KVM needed): a page counts as touched when the file holds data for it or the guest wrote it
 * since (a private copy); the rest of the file is holes.  Saving it again stores exactly those.
 * The pagemap descriptor kept at start-up (before khyve gives up root) is the one read.
 */
static void test_save_over_backing(void **state)
{
	struct vm vm, r;
	struct snap_file map, map2, f;
	struct snap_result res, res2;
	struct mem_backing b = { 0 };
	uint64_t bytes = 0;
	char path2[160], err[256];
	void *hva;

	snap_memory_keep_pagemap();
	vm_init_bare(&vm, true);
	assert_int_equal(vm_add_memory(&vm, RAM), 0);
	fill(&vm, 3, 2, 0x5a);
	fill(&vm, 700, 1, 0x77);
	save_to(&vm, path, NULL, &map, &res);
	assert_int_equal(map.nextents, 2);
	free(map.extents);
	vm_destroy(&vm);
	assert_int_equal(snap_file_open(&f, path, true, err, sizeof(err)), 0);

	vm_init_bare(&r, true);
	hva = mmap(NULL, RAM, PROT_READ | PROT_WRITE, MAP_PRIVATE, f.fd, (off_t)f.mem_offset);
	assert_true(hva != MAP_FAILED);
	r.mem[0] = (struct mem_region){ 0, RAM, hva, 0 };
	r.nmem = 1;
	r.ram_size = RAM;
	assert_int_equal(((uint8_t *)hva)[700 * PG], 0x77); /* read: present, still the file's */
	fill(&r, 5, 1, 0x11);				    /* next to the file's 3-4 */
	fill(&r, 700, 1, 0x78);				    /* rewritten */
	back_by(&b, &f);
	assert_int_equal(snap_memory_touched(&r, &b, &bytes), 0);
	assert_int_equal(bytes, 4 * PG);
	/* Without the backing, only the private copies count. */
	assert_int_equal(snap_memory_touched(&r, NULL, &bytes), 0);
	assert_true(bytes >= 2 * PG);

	snprintf(path2, sizeof(path2), "%s/again.snap", dir);
	save_to(&r, path2, &b, &map2, &res2);
	assert_int_equal(res2.mem_pages, 4);
	assert_int_equal(map2.nextents, 2);
	assert_int_equal(map2.extents[0].file_offset, SNAP_MEM_ALIGN + 3 * PG);
	assert_int_equal(map2.extents[0].length, 3 * PG);
	assert_int_equal(map2.extents[1].file_offset, SNAP_MEM_ALIGN + 700 * PG);
	assert_int_not_equal(map2.extents[1].checksum, f.extents[1].checksum);
	free(map2.extents);
	vm_destroy(&r); /* unmaps the RAM */
	snap_file_close(&f);
	assert_int_equal(snap_file_open(&f, path2, true, err, sizeof(err)), 0);
	snap_file_close(&f);
}

/* More extents than the map first has room for (1024): it grows. */
static void test_many_extents(void **state)
{
	struct snap_file map;
	struct snap_result res;
	struct vm vm;

	vm_init_bare(&vm, true);
	assert_int_equal(vm_add_memory(&vm, 2 * RAM), 0);
	for (uint64_t p = 0; p < 2 * 1100; p += 2)
		fill(&vm, p, 1, (uint8_t)(p | 1));
	save_to(&vm, path, NULL, &map, &res);
	assert_int_equal(map.nextents, 1100);
	assert_int_equal(res.mem_pages, 1100);
	assert_int_equal(map.extents[1099].file_offset, SNAP_MEM_ALIGN + 2198 * PG);
	free(map.extents);
	vm_destroy(&vm);
}

/* The VmFlags of the mapping at @hva in /proc/self/smaps (empty when it is not found). */
static void vm_flags_of(const void *hva, char *out, size_t len)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	char line[512];
	bool in = false;

	out[0] = 0;
	assert_non_null(f);
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;

		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 &&
		    strchr(line, '-') < strchr(line, ' '))
			in = lo <= (uintptr_t)hva && (uintptr_t)hva < hi;
		else if (in && !strncmp(line, "VmFlags:", 8)) {
			snprintf(out, len, "%s", line + 8);
			break;
		}
	}
	fclose(f);
}

/*
 * Guest RAM is advised off transparent huge pages (vm.h): on a host whose THP setting is
 * "always", one touched 4 KiB page would otherwise be backed, saved and tracked as 2 MiB.
 */
static void test_ram_without_thp(void **state)
{
	struct vm vm;
	char flags[512];
	uint64_t bytes = 0;

	vm_init_bare(&vm, true);
	assert_int_equal(vm_add_memory(&vm, 2 * RAM), 0);
	vm_flags_of(vm.mem[0].hva, flags, sizeof(flags));
	assert_non_null(strstr(flags, " nh"));
	assert_null(strstr(flags, " hg"));
	/* One page touched is one page, whatever the host's THP setting. */
	fill(&vm, 1, 1, 0x11);
	assert_int_equal(snap_memory_touched(&vm, NULL, &bytes), 0);
	assert_int_equal(bytes, PG);
	vm_destroy(&vm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_save_stores_touched_pages, setup, teardown),
		cmocka_unit_test(test_map_layout_refused),
		cmocka_unit_test_setup_teardown(test_save_over_backing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_many_extents, setup, teardown),
		cmocka_unit_test(test_ram_without_thp),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
