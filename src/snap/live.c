// SPDX-License-Identifier: BSD-2-Clause
/*
 * Live checkpoints (see live.h): guest RAM write-protected with userfaultfd at the pause, then
 * saved by one writer thread while the guest runs.
 *
 * Why write-protection and not pre-copy with KVM's dirty log (both work on this KVM; measured
 * with the counter guest, 4 vCPUs rewriting 128 MiB, doc/snapshot-format.md "Live
 * checkpoints" has the figures):
 *   - pre-copy's final pause is the last dirty set: it grows with the dirty rate, and the
 *     rounds converge only while the guest dirties memory more slowly than it is written
 *     (the counter guest dirtied 3.4-4.7 MiB per 100 ms on this loaded nested host, where
 *     it would converge; its ring-3 loop rewrites GB/s on hardware, where it would not);
 *     write-protection pauses for the same time whatever the guest does;
 *   - KVM's dirty log sees only what the guest's vCPUs write: device threads write guest RAM
 *     through khyve's own mapping (virtio and AHCI DMA), and those writes would need a
 *     dirty bitmap of their own; a write-protected page stops every writer alike;
 *   - pre-copy writes a hot page once per round; write-protection at most once.
 * What it costs: a guest write to a page not yet saved waits for the writer to save that page
 * (one 4 KiB write, handled between chunks of at most CHUNK pages), and the restored VM's
 * private file mapping cannot be write-protected on this kernel (userfaultfd write-protects
 * anonymous, shmem and hugetlbfs memory only), so a VM that was itself restored is
 * checkpointed stop-the-world.
 *
 * Which pages: those the guest had at the pause.  The protection is set on every present page
 * (and swapped-out one) of guest RAM while the VM is paused; /proc/self/pagemap reports
 * whether a page still carries it (PM_UFFD_WP).  So the writer saves, region by region, each
 * page still protected (its bytes are those of the pause: nobody could write it since) and
 * then makes the chunk writable; a guest write to a protected page arrives as a userfaultfd
 * message, and the writer saves that page at once, before the sequential pass reaches it.  A
 * page that is not protected and was not saved was not there at the pause (the guest touched
 * it since, it was zero then), and stays a hole.  A page saved counts in @done, so nothing is
 * written twice.  Extents of pages saved out of order are sorted into the memory map at the
 * end, so the file is exactly what a stop-the-world save of the pause instant would write.
 */
#include "snap/live.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "snap/memory.h"
#include "vm.h"

#define PAGE 4096ULL
#define PM_PRESENT (1ULL << 63)
#define PM_UFFD_WP (1ULL << 57)
/* Pages written between two looks at the guest's faults: 512 KiB, well under a millisecond. */
#define CHUNK 128

struct extent_list {
	struct snap_extent *e;
	unsigned n, cap;
};

struct live_region {
	uint8_t *hva;
	uint64_t size, area_off;
	uint64_t *done; /* one bit per page: saved */
};

struct snap_live {
	struct vm *vm;
	struct snap_writer *w;
	int uffd, pagemap;
	unsigned nregions;
	struct live_region r[2];
	bool registered[2];
	struct extent_list seq, faulted; /* the pass's extents (sorted), the faults' */
	uint64_t mem_pages, zero_pages, fault_pages;
	/* The run the pass is gathering: [run_off, run_off + run_len) of the memory area. */
	uint64_t run_off, run_len;
	const uint8_t *run_ptr;
	pthread_t thread;
	bool started;
	atomic_bool stop;
	void (*done)(void *);
	void *opaque;
	int ret;
	char err[256];
};

static bool bit_test(const uint64_t *b, uint64_t i)
{
	return b[i / 64] & (1ULL << (i % 64));
}

static void bit_set(uint64_t *b, uint64_t i)
{
	b[i / 64] |= 1ULL << (i % 64);
}

static int list_add(struct extent_list *l, uint64_t off, uint64_t len, uint64_t sum)
{
	if (l->n == l->cap) {
		unsigned cap = l->cap ? l->cap * 2 : 1024;
		struct snap_extent *e = realloc(l->e, cap * sizeof(*e));

		if (!e)
			return -ENOMEM;
		l->e = e;
		l->cap = cap;
	}
	l->e[l->n++] = (struct snap_extent){ off, len, sum };
	return 0;
}

/* ---- the userfaultfd ---- */

static int kept_uffd = -1; /* opened by snap_live_keep_uffd before khyve gave up root */

static int uffd_new(void)
{
	struct uffdio_api api = { .api = UFFD_API };
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);

	if (fd < 0)
		return -errno;
	if (ioctl(fd, UFFDIO_API, &api) < 0) {
		int ret = -errno;

		close(fd);
		return ret;
	}
	return fd;
}

void snap_live_keep_uffd(void)
{
	if (kept_uffd < 0) {
		int fd = uffd_new();

		kept_uffd = fd < 0 ? -1 : fd;
	}
}

static int uffd_protect(int uffd, void *p, uint64_t len, bool on)
{
	struct uffdio_writeprotect wp = {
		.range = { .start = (uintptr_t)p, .len = len },
		/* Clearing without DONTWAKE wakes every writer waiting in the range. */
		.mode = on ? UFFDIO_WRITEPROTECT_MODE_WP : 0,
	};

	while (ioctl(uffd, UFFDIO_WRITEPROTECT, &wp) < 0)
		if (errno != EINTR && errno != EAGAIN)
			return -errno;
	return 0;
}

static void uffd_drain(int uffd)
{
	struct uffd_msg msg[32];

	while (read(uffd, msg, sizeof(msg)) > 0 || errno == EINTR)
		;
}

/* Every page writable again and the ranges handed back: the guest runs on unhindered. */
static void uffd_release(struct snap_live *l)
{
	for (unsigned i = 0; i < l->nregions; i++) {
		struct uffdio_range r = { (uintptr_t)l->r[i].hva, l->r[i].size };

		if (!l->registered[i])
			continue;
		uffd_protect(l->uffd, l->r[i].hva, l->r[i].size, false);
		ioctl(l->uffd, UFFDIO_UNREGISTER, &r);
		l->registered[i] = false;
	}
}

/* ---- saving pages ---- */

static int run_flush(struct snap_live *l)
{
	int ret;

	if (!l->run_len)
		return 0;
	ret = snap_writer_memory(l->w, l->run_off, l->run_ptr, l->run_len);
	if (!ret)
		ret = list_add(&l->seq, l->w->mem_offset + l->run_off, l->run_len,
			       snap_checksum(l->run_ptr, l->run_len));
	l->run_len = 0;
	return ret;
}

/* The pass: page @pg of region @r, still as it was at the pause. */
static int pass_page(struct snap_live *l, struct live_region *r, uint64_t pg)
{
	const uint8_t *p = r->hva + pg * PAGE;
	uint64_t off = r->area_off + pg * PAGE;

	bit_set(r->done, pg);
	if (snap_page_is_zero(p)) {
		l->zero_pages++;
		return run_flush(l);
	}
	l->mem_pages++;
	if (l->run_len && l->run_off + l->run_len != off) {
		int ret = run_flush(l);

		if (ret)
			return ret;
	}
	if (!l->run_len) {
		l->run_off = off;
		l->run_ptr = p;
	}
	l->run_len += PAGE;
	return 0;
}

/* A guest write is waiting on page @pg of @r: save it now (if the pass has not). */
static int fault_page(struct snap_live *l, struct live_region *r, uint64_t pg)
{
	const uint8_t *p = r->hva + pg * PAGE;
	uint64_t off = r->area_off + pg * PAGE;
	int ret = 0;

	if (bit_test(r->done, pg))
		return uffd_protect(l->uffd, (void *)p, PAGE, false);
	bit_set(r->done, pg);
	l->fault_pages++;
	if (snap_page_is_zero(p)) {
		l->zero_pages++;
	} else {
		l->mem_pages++;
		ret = snap_writer_memory(l->w, off, p, PAGE);
		if (!ret)
			ret = list_add(&l->faulted, l->w->mem_offset + off, PAGE,
				       snap_checksum(p, PAGE));
	}
	/* Writable again, and the writer that waited goes on (the pause-instant copy is out). */
	return ret ? ret : uffd_protect(l->uffd, (void *)p, PAGE, false);
}

/* Every write waiting now, saved first.  Never blocks. */
static int handle_faults(struct snap_live *l)
{
	struct uffd_msg msg[32];

	for (;;) {
		ssize_t n = read(l->uffd, msg, sizeof(msg));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN ? 0 : -errno;
		for (size_t i = 0; i < (size_t)n / sizeof(msg[0]); i++) {
			uint64_t a = msg[i].arg.pagefault.address & ~(PAGE - 1);
			int ret = 0;

			if (msg[i].event != UFFD_EVENT_PAGEFAULT)
				continue;
			for (unsigned j = 0; j < l->nregions; j++) {
				struct live_region *r = &l->r[j];

				if (a >= (uintptr_t)r->hva && a - (uintptr_t)r->hva < r->size)
					ret = fault_page(l, r, (a - (uintptr_t)r->hva) / PAGE);
			}
			if (ret)
				return ret;
		}
	}
}

static int pass_region(struct snap_live *l, struct live_region *r)
{
	uint64_t npages = r->size / PAGE, vpn0 = (uintptr_t)r->hva / PAGE, flags[CHUNK];
	int ret = 0;

	for (uint64_t pg = 0; pg < npages && !ret; pg += CHUNK) {
		uint64_t n = npages - pg < CHUNK ? npages - pg : CHUNK;
		ssize_t got;

		if (atomic_load(&l->stop))
			return -ECANCELED;
		ret = handle_faults(l);
		if (ret)
			break;
		got = pread(l->pagemap, flags, n * 8, (off_t)((vpn0 + pg) * 8));
		if (got != (ssize_t)(n * 8))
			return got < 0 ? -errno : -EIO;
		for (uint64_t j = 0; j < n && !ret; j++)
			if ((flags[j] & PM_UFFD_WP) && !bit_test(r->done, pg + j))
				ret = pass_page(l, r, pg + j);
			else
				ret = run_flush(l);
		if (!ret)
			ret = run_flush(l);
		if (!ret)
			ret = uffd_protect(l->uffd, r->hva + pg * PAGE, n * PAGE, false);
	}
	return ret;
}

static void *live_thread(void *opaque)
{
	struct snap_live *l = opaque;
	int ret = 0;

	for (unsigned i = 0; i < l->nregions && !ret; i++)
		ret = pass_region(l, &l->r[i]);
	/* Whatever happened, the guest must not wait on a page again. */
	uffd_release(l);
	l->ret = ret;
	if (ret)
		snprintf(l->err, sizeof(l->err), "saving guest memory: %s", strerror(-ret));
	l->done(l->opaque);
	return NULL;
}

/* ---- the interface ---- */

static void live_free(struct snap_live *l)
{
	uffd_release(l);
	if (l->uffd >= 0 && l->uffd != kept_uffd)
		close(l->uffd);
	if (l->pagemap >= 0)
		close(l->pagemap);
	for (unsigned i = 0; i < l->nregions; i++)
		free(l->r[i].done);
	free(l->seq.e);
	free(l->faulted.e);
	free(l);
}

static int live_register(struct snap_live *l, unsigned i, char *err, size_t errlen)
{
	struct uffdio_register reg = {
		.range = { (uintptr_t)l->r[i].hva, l->r[i].size },
		.mode = UFFDIO_REGISTER_MODE_WP,
	};
	int ret;

	if (ioctl(l->uffd, UFFDIO_REGISTER, &reg) < 0) {
		ret = -errno;
		snprintf(err, errlen,
			 "userfaultfd cannot write-protect guest memory here (%s): checkpoint "
			 "without --live",
			 strerror(errno));
		return ret;
	}
	l->registered[i] = true;
	if (!(reg.ioctls & (1ULL << _UFFDIO_WRITEPROTECT))) {
		snprintf(err, errlen,
			 "this kernel's userfaultfd cannot write-protect guest memory: "
			 "checkpoint without --live");
		return -EOPNOTSUPP;
	}
	ret = uffd_protect(l->uffd, l->r[i].hva, l->r[i].size, true);
	if (ret)
		snprintf(err, errlen, "write-protecting guest memory: %s", strerror(-ret));
	return ret;
}

int snap_live_arm(struct vm *vm, struct snap_writer *w, struct snap_live **out, char *err,
		  size_t errlen)
{
	struct snap_live *l = calloc(1, sizeof(*l));
	uint64_t off = 0;
	int ret = 0;

	*out = NULL;
	if (!l)
		return -ENOMEM;
	l->vm = vm;
	l->w = w;
	l->pagemap = snap_memory_pagemap_open();
	l->uffd = kept_uffd >= 0 ? kept_uffd : uffd_new();
	if (l->pagemap < 0 || l->uffd < 0) {
		ret = l->pagemap < 0 ? -errno : l->uffd;
		snprintf(err, errlen, "%s: %s: checkpoint without --live",
			 l->pagemap < 0 ? "/proc/self/pagemap" : "userfaultfd", strerror(-ret));
		live_free(l);
		return ret;
	}
	/*
	 * The kept descriptor may still hold messages of an earlier save that were never read
	 * (their writers were woken when it ended): none may be taken for a write of this one.
	 */
	uffd_drain(l->uffd);
	for (unsigned i = 0; i < vm->nmem && !ret; i++) {
		struct live_region *r = &l->r[i];

		r->hva = vm->mem[i].hva;
		r->size = vm->mem[i].size;
		r->area_off = off;
		off += r->size;
		r->done = calloc((r->size / PAGE + 63) / 64, 8);
		l->nregions++;
		ret = r->done ? live_register(l, i, err, errlen) : -ENOMEM;
	}
	if (ret) {
		live_free(l);
		return ret;
	}
	*out = l;
	return 0;
}

int snap_live_start(struct snap_live *l, void (*done)(void *opaque), void *opaque)
{
	int ret;

	l->done = done;
	l->opaque = opaque;
	ret = -pthread_create(&l->thread, NULL, live_thread, l);
	l->started = !ret;
	return ret;
}

void snap_live_cancel(struct snap_live *l)
{
	atomic_store(&l->stop, true);
}

static int cmp_extent(const void *a, const void *b)
{
	const struct snap_extent *x = a, *y = b;

	return x->file_offset < y->file_offset ? -1 : x->file_offset > y->file_offset;
}

int snap_live_result(struct snap_live *l, struct snap_file *map, struct snap_result *res, char *err,
		     size_t errlen)
{
	unsigned n = l->seq.n + l->faulted.n, a = 0, b = 0;
	uint64_t off = 0;

	if (l->ret) {
		snprintf(err, errlen, "%s", l->err);
		return l->ret;
	}
	map->nregions = l->nregions;
	for (unsigned i = 0; i < l->nregions; i++) {
		map->regions[i] = (struct snap_region){ l->vm->mem[i].gpa, l->r[i].size,
							l->w->mem_offset + off };
		off += l->r[i].size;
	}
	/* Both lists are sorted (the faults' after this) and never overlap (@done). */
	/* No page faulted (an idle guest): no list, and qsort must not get a NULL one. */
	if (l->faulted.n)
		qsort(l->faulted.e, l->faulted.n, sizeof(*l->faulted.e), cmp_extent);
	map->extents = calloc(n ? n : 1, sizeof(*map->extents));
	if (!map->extents)
		return -ENOMEM;
	while (a < l->seq.n || b < l->faulted.n)
		map->extents[map->nextents++] =
			b == l->faulted.n || (a < l->seq.n &&
					      l->seq.e[a].file_offset < l->faulted.e[b].file_offset)
				? l->seq.e[a++]
				: l->faulted.e[b++];
	res->mem_pages = l->mem_pages;
	res->zero_pages = l->zero_pages;
	res->fault_pages = l->fault_pages;
	return 0;
}

void snap_live_free(struct snap_live *l)
{
	if (!l)
		return;
	if (l->started)
		pthread_join(l->thread, NULL);
	live_free(l);
}
