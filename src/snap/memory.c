// SPDX-License-Identifier: BSD-2-Clause
/* Guest memory in snapshots: sparse save, lazy restore (see memory.h). */
#include "snap/memory.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sysinfo.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "snap/chain.h"
#include "snap/dirty.h"
#include "sstream.h"
#include "vm.h"

#define PAGE 4096ULL
#define PM_PRESENT (1ULL << 63)
#define PM_SWAPPED (1ULL << 62)
#define PM_FILE (1ULL << 61)
#define PM_UFFD_WP (1ULL << 57)
#define PM_FRAME ((1ULL << 55) - 1)
#define SWP_TYPE_MARKER 31 /* the swap type of a pte marker (SWP_PTE_MARKER), 5 bits */
#define SCAN_CHUNK 4096	   /* pagemap entries read at a time (16 MiB of guest memory) */

struct mem_saver {
	struct vm *vm;
	struct snap_writer *w;
	struct snap_file *map;
	const struct mem_backing *backing;
	const struct snap_save_opts *opts;
	struct snap_result *res;
	unsigned ext_cap;
	int pagemap;
	uint64_t left; /* touched bytes not yet written or found zero: what is still to write */
	/* The run being gathered: [run_off, run_off + run_len) in the memory area. */
	uint64_t run_off, run_len;
	const uint8_t *run_ptr;
	/* opts->max_rate: when the memory save began, and the bytes written by then. */
	uint64_t t0_ns, bytes0;
};

bool snap_page_is_zero(const void *page)
{
	const uint8_t *p = page;
	const uint64_t *q = (const uint64_t *)p;

	for (size_t i = 0; i < PAGE / 8; i += 4)
		if (q[i] | q[i + 1] | q[i + 2] | q[i + 3])
			return false;
	return true;
}

static int saver_add_extent(struct mem_saver *m, uint64_t off, uint64_t len, uint64_t sum)
{
	struct snap_file *f = m->map;

	if (f->nextents == m->ext_cap) {
		unsigned cap = m->ext_cap ? m->ext_cap * 2 : 1024;
		struct snap_extent *e = realloc(f->extents, cap * sizeof(*e));

		if (!e)
			return -ENOMEM;
		f->extents = e;
		m->ext_cap = cap;
	}
	f->extents[f->nextents++] = (struct snap_extent){ m->w->mem_offset + off, len, sum };
	return 0;
}

static int saver_flush(struct mem_saver *m)
{
	int ret;

	if (!m->run_len)
		return 0;
	ret = snap_writer_memory(m->w, m->run_off, m->run_ptr, m->run_len);
	if (!ret)
		ret = saver_add_extent(m, m->run_off, m->run_len,
				       snap_checksum(m->run_ptr, m->run_len));
	m->run_len = 0;
	return ret;
}

/* One touched page at @off in the memory area, at @p in our address space. */
static int saver_page(struct mem_saver *m, uint64_t off, const uint8_t *p)
{
	if (snap_page_is_zero(p)) {
		m->res->zero_pages++;
		return saver_flush(m);
	}
	m->res->mem_pages++;
	if (m->run_len && (m->run_off + m->run_len != off || m->run_len >= SNAP_EXTENT_MAX)) {
		int ret = saver_flush(m);

		if (ret)
			return ret;
	}
	if (!m->run_len) {
		m->run_off = off;
		m->run_ptr = p;
	}
	m->run_len += PAGE;
	return 0;
}

/* Did the file a restored region maps hold data at @foff? (extents are sorted) */
static bool backing_has_data(const struct mem_backing *b, uint64_t foff, unsigned *hint)
{
	while (*hint < b->nextents &&
	       b->extents[*hint].file_offset + b->extents[*hint].length <= foff)
		(*hint)++;
	return *hint < b->nextents && b->extents[*hint].file_offset <= foff;
}

/*
 * Progress in bytes of the file: written so far (state sections, memory flushed and the run
 * being gathered) out of that plus what is still to write.  The total is the touched memory
 * counted before the save, less the pages that turned out all zero (holes), so it ends equal
 * to what was written.
 */
static void saver_progress(struct mem_saver *m)
{
	uint64_t done = m->w->bytes + m->run_len;

	if (m->opts && m->opts->progress)
		m->opts->progress(m->opts->progress_opaque, done, done + m->left);
}

static uint64_t mono_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/*
 * Hold the memory save to opts->max_rate bytes per second: wait until the bytes written so
 * far are due.  Called after each scan step (16 MiB of guest memory), so the rate is kept
 * over such steps.  Waits in short sleeps with a progress report after each, so that the
 * control socket still answers --status meanwhile.
 */
static void saver_throttle(struct mem_saver *m)
{
	uint64_t rate = m->opts ? m->opts->max_rate : 0;

	if (!rate)
		return;
	for (;;) {
		uint64_t done = m->w->bytes + m->run_len - m->bytes0;
		uint64_t due = m->t0_ns + (uint64_t)((unsigned __int128)done * 1000000000U / rate);
		uint64_t now = mono_now_ns(), wait;

		if (now >= due)
			return;
		wait = due - now < 20000000 ? due - now : 20000000;
		nanosleep(&(struct timespec){ .tv_nsec = (long)wait }, NULL);
		saver_progress(m);
	}
}

static void saver_consume(struct mem_saver *m)
{
	m->left = m->left >= PAGE ? m->left - PAGE : 0;
}

/*
 * Dirty tracking (snap/dirty.h) write-protects never-touched pages with uffd-wp pte markers,
 * which pagemap shows as swapped: such a page was never touched and holds nothing.  Where the
 * entry shows its swap type (a root-opened pagemap) the marker's type says so; where it does
 * not, a host without swap has no swapped pages at all, and one with swap counts it (a save
 * then reads a zero page, never misses one).
 */
static bool host_has_swap(void)
{
	static int swap = -1;
	struct sysinfo si;

	if (swap < 0)
		swap = sysinfo(&si) || si.totalswap > 0;
	return swap;
}

static bool pm_marker(uint64_t flags)
{
	uint64_t frame = flags & PM_FRAME;

	if (!(flags & PM_SWAPPED) || !(flags & PM_UFFD_WP))
		return false;
	if (frame)
		return (frame & 31) == SWP_TYPE_MARKER;
	return !host_has_swap();
}

/* Is page @pg of region @idx one a save stores (before the all-zero test)?  @flags: pagemap. */
static bool page_touched(uint64_t flags, const struct mem_backing *b, unsigned idx, uint64_t pg,
			 unsigned *hint)
{
	if (pm_marker(flags))
		flags &= ~PM_SWAPPED;
	if (b && b->fd >= 0)
		/* A private copy, or data the old file holds for this page. */
		return ((flags & PM_PRESENT) && !(flags & PM_FILE)) || (flags & PM_SWAPPED) ||
		       backing_has_data(b, b->region_file_offset[idx] + pg * PAGE, hint);
	return flags & (PM_PRESENT | PM_SWAPPED);
}

static int pagemap_fd = -1; /* kept open by snap_memory_keep_pagemap */

void snap_memory_keep_pagemap(void)
{
	if (pagemap_fd < 0)
		pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
}

/*
 * /proc/self/pagemap, from the descriptor kept before khyve gave up root (-o user=): after
 * that the process is not dumpable and may no longer open its own /proc files.
 */
int snap_memory_pagemap_open(void)
{
	if (pagemap_fd >= 0)
		return fcntl(pagemap_fd, F_DUPFD_CLOEXEC, 0);
	return open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
}

int snap_memory_touched_bitmap(struct vm *vm, const struct mem_backing *b, uint64_t *bitmap,
			       uint64_t *pages)
{
	uint64_t flags[SCAN_CHUNK], page0 = 0;
	int pm = snap_memory_pagemap_open(), ret = 0;

	*pages = 0;
	if (pm < 0)
		return -errno;
	for (unsigned idx = 0; idx < vm->nmem && !ret; idx++) {
		const struct mem_region *r = &vm->mem[idx];
		uint64_t npages = r->size / PAGE, vpn0 = (uintptr_t)r->hva / PAGE;
		unsigned hint = 0;

		for (uint64_t i = 0; i < npages && !ret; i += SCAN_CHUNK) {
			uint64_t n = npages - i < SCAN_CHUNK ? npages - i : SCAN_CHUNK;
			ssize_t got = pread(pm, flags, n * 8, (off_t)((vpn0 + i) * 8));

			if (got != (ssize_t)(n * 8)) {
				ret = got < 0 ? -errno : -EIO;
				break;
			}
			for (uint64_t j = 0; j < n; j++) {
				uint64_t pg = page0 + i + j;

				if (!page_touched(flags[j], b, idx, i + j, &hint))
					continue;
				if (bitmap)
					bitmap[pg / 64] |= 1ULL << (pg % 64);
				(*pages)++;
			}
		}
		page0 += npages;
	}
	close(pm);
	return ret;
}

uint64_t snap_memory_size(const struct vm *vm)
{
	uint64_t n = 0;

	for (unsigned i = 0; i < vm->nmem; i++)
		n += vm->mem[i].size;
	return n;
}

int snap_memory_touched(struct vm *vm, const struct mem_backing *b, uint64_t *bytes)
{
	uint64_t pages = 0;
	int ret = snap_memory_touched_bitmap(vm, b, NULL, &pages);

	*bytes = ret ? 0 : pages * PAGE;
	return ret;
}

static int save_region(struct mem_saver *m, unsigned idx, uint64_t area_off)
{
	const struct mem_region *r = &m->vm->mem[idx];
	const struct mem_backing *b = m->backing;
	uint64_t npages = r->size / PAGE, flags[SCAN_CHUNK];
	uint64_t vpn0 = (uintptr_t)r->hva / PAGE;
	unsigned hint = 0;
	int ret = 0;

	for (uint64_t i = 0; i < npages && !ret; i += SCAN_CHUNK) {
		uint64_t n = npages - i < SCAN_CHUNK ? npages - i : SCAN_CHUNK;
		ssize_t got = pread(m->pagemap, flags, n * 8, (off_t)((vpn0 + i) * 8));

		if (got != (ssize_t)(n * 8))
			return got < 0 ? -errno : -EIO;
		for (uint64_t j = 0; j < n && !ret; j++) {
			uint64_t pg = i + j;

			if (page_touched(flags[j], b, idx, pg, &hint)) {
				saver_consume(m);
				ret = saver_page(m, area_off + pg * PAGE,
						 (const uint8_t *)r->hva + pg * PAGE);
			} else {
				ret = saver_flush(m);
			}
		}
		saver_progress(m);
		saver_throttle(m);
	}
	if (!ret)
		ret = saver_flush(m);
	return ret;
}

int snap_memory_save(struct vm *vm, struct snap_writer *w, const struct mem_backing *backing,
		     struct snap_file *map, const struct snap_save_opts *opts,
		     struct snap_result *res, char *err, size_t errlen)
{
	struct mem_saver m = {
		.vm = vm, .w = w, .map = map, .backing = backing, .opts = opts, .res = res
	};
	uint64_t off = 0;
	int ret = 0;

	m.pagemap = snap_memory_pagemap_open();
	if (m.pagemap < 0) {
		ret = -errno;
		snprintf(err, errlen, "/proc/self/pagemap: %s", strerror(errno));
		return ret;
	}
	/* What there is to write: the progress total (an upper bound: zero pages become holes). */
	if (opts && opts->progress && snap_memory_touched(vm, backing, &m.left))
		m.left = 0;
	m.t0_ns = mono_now_ns();
	m.bytes0 = w->bytes;
	map->nregions = vm->nmem;
	for (unsigned i = 0; i < vm->nmem && !ret; i++) {
		map->regions[i] = (struct snap_region){ vm->mem[i].gpa, vm->mem[i].size,
							w->mem_offset + off };
		ret = save_region(&m, i, off);
		off += vm->mem[i].size;
	}
	close(m.pagemap);
	if (ret)
		snprintf(err, errlen, "saving guest memory: %s", strerror(-ret));
	return ret;
}

/*
 * An incremental save (snap/chain.h): every page set in @dirty, zero or not, is written, since
 * a hole in an incremental snapshot means "the parent's page".
 */
int snap_memory_save_dirty(struct vm *vm, struct snap_writer *w, const uint64_t *dirty,
			   struct snap_file *map, const struct snap_save_opts *opts,
			   struct snap_result *res, char *err, size_t errlen)
{
	struct mem_saver m = { .vm = vm, .w = w, .map = map, .opts = opts, .res = res };
	uint64_t off = 0, page = 0;
	int ret = 0;

	for (uint64_t i = 0; i < dirty_npages(vm); i++)
		if (dirty_test(dirty, i))
			m.left += PAGE;
	m.t0_ns = mono_now_ns();
	m.bytes0 = w->bytes;
	map->nregions = vm->nmem;
	for (unsigned idx = 0; idx < vm->nmem && !ret; idx++) {
		const struct mem_region *r = &vm->mem[idx];
		uint64_t npages = r->size / PAGE;

		map->regions[idx] = (struct snap_region){ r->gpa, r->size, w->mem_offset + off };
		for (uint64_t pg = 0; pg < npages && !ret; pg++, page++) {
			const uint8_t *p = (const uint8_t *)r->hva + pg * PAGE;
			uint64_t at = off + pg * PAGE;

			if (!dirty_test(dirty, page)) {
				ret = saver_flush(&m);
				continue;
			}
			saver_consume(&m);
			m.res->mem_pages++;
			if (m.run_len &&
			    (m.run_off + m.run_len != at || m.run_len >= SNAP_EXTENT_MAX)) {
				ret = saver_flush(&m);
				if (ret)
					break;
			}
			if (!m.run_len) {
				m.run_off = at;
				m.run_ptr = p;
			}
			m.run_len += PAGE;
			if (pg % SCAN_CHUNK == SCAN_CHUNK - 1) {
				saver_progress(&m);
				saver_throttle(&m);
			}
		}
		if (!ret)
			ret = saver_flush(&m);
		off += r->size;
	}
	if (ret)
		snprintf(err, errlen, "saving guest memory: %s", strerror(-ret));
	return ret;
}

/* Replace [@hva, @hva + @len) with the file's pages at @foff, or copy them in past @budget. */
static int map_run(void *hva, uint64_t len, int fd, uint64_t foff, unsigned *budget)
{
	uint8_t *p = hva;

	if (*budget) {
		(*budget)--;
		if (mmap(hva, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED | MAP_NORESERVE,
			 fd, (off_t)foff) != MAP_FAILED)
			return 0;
		if (errno != ENOMEM)
			return -errno;
		*budget = 0;
	}
	/* Out of mappings (vm.max_map_count): these pages become private copies now. */
	while (len) {
		ssize_t n = pread(fd, p, len, (off_t)foff);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		foff += (uint64_t)n;
		len -= (uint64_t)n;
	}
	return 0;
}

/*
 * Over the base's mapping, each run of pages whose newest copy a later link holds is mapped
 * from that link, still private and lazy.  Mappings are bounded (each is a VMA of the
 * process): past MAP_BUDGET runs, the rest are read in.
 */
#define MAP_BUDGET 32768

static int map_links(struct vm *vm, const struct snap_chain *c, char *err, size_t errlen)
{
	unsigned base = c->nlinks - 1, link, budget = MAP_BUDGET;
	uint64_t len;

	for (uint64_t p = 0; (len = snap_chain_run(c, p, &link)); p += len) {
		uint64_t off = p * PAGE, roff = off;
		const struct snap_file *f;
		unsigned idx = 0;
		int ret;

		if (link == base || link == SNAP_NO_LINK)
			continue;
		while (idx + 1 < vm->nmem && roff >= vm->mem[idx].size)
			roff -= vm->mem[idx++].size;
		f = c->file[link];
		ret = map_run((uint8_t *)vm->mem[idx].hva + roff, len * PAGE, f->fd,
			      f->mem_offset + off, &budget);
		if (ret) {
			snprintf(err, errlen, "mapping guest memory from %s: %s", c->name[link],
				 strerror(-ret));
			return ret;
		}
	}
	return 0;
}

int snap_memory_map_chain(struct vm *vm, const struct snap_chain *c, char *err, size_t errlen)
{
	const struct snap_file *f = c->file[c->nlinks - 1];
	uint64_t low = vm->ram_size < LOWMEM_LIMIT ? vm->ram_size : LOWMEM_LIMIT;
	int ret;

	/* The file's regions must be exactly the layout this memory size gets. */
	if (f->nregions != (vm->ram_size > low ? 2u : 1u) || f->regions[0].gpa != 0 ||
	    f->regions[0].size != low ||
	    (f->nregions == 2 &&
	     (f->regions[1].gpa != HIGHMEM_BASE || f->regions[1].size != vm->ram_size - low))) {
		snprintf(err, errlen,
			 "the snapshot's memory layout does not match its memory size");
		return -EINVAL;
	}
	vm->nmem = 0;
	for (unsigned i = 0; i < f->nregions; i++) {
		const struct snap_region *r = &f->regions[i];
		void *hva;

		/*
		 * Private: the guest's writes never reach the file, so the snapshot can be
		 * restored again.  Nothing is read until the guest touches a page.
		 */
		/* Made ahead while a migration's memory arrived (khyve -R), or mapped now. */
		hva = c->nlinks == 1
			      ? vm_premade_map(i, r->gpa, r->size, f->fd, (off_t)r->file_offset)
			      : NULL;
		if (!hva)
			hva = vm_map_aligned(r->size, MAP_PRIVATE, f->fd, (off_t)r->file_offset);
		if (hva == MAP_FAILED) {
			ret = -errno;
			snprintf(err, errlen, "mapping guest memory from the snapshot: %s",
				 strerror(errno));
			return ret;
		}
		vm->mem[i] = (struct mem_region){ r->gpa, r->size, hva, i };
		vm->nmem++;
	}
	ret = map_links(vm, c, err, errlen);
	if (ret)
		return ret;
	ret = vm_set_memslots(vm);
	if (ret)
		snprintf(err, errlen, "KVM_SET_USER_MEMORY_REGION: %s", strerror(-ret));
	return ret;
}

int snap_memory_map(struct vm *vm, const struct snap_file *f, char *err, size_t errlen)
{
	struct snap_file *tip = (struct snap_file *)f;
	struct snap_chain c = { .nlinks = 1, .file = &tip };

	return snap_memory_map_chain(vm, &c, err, errlen);
}
