// SPDX-License-Identifier: BSD-2-Clause
/*
 * Dirty-page tracking of guest RAM (see dirty.h): an asynchronous userfaultfd write-protects
 * RAM, PAGEMAP_SCAN reads which pages lost the protection and re-protects them atomically.
 *
 * Why this and not KVM's dirty log (KVM_GET_DIRTY_LOG / the dirty ring), measured here:
 *   - KVM's log records only what the vCPUs write through KVM.  khyve's device threads
 *     (virtio-blk and AHCI reading a disk into guest buffers, e1000 and virtio-net receive,
 *     xHCI) write guest RAM through khyve's own mapping: with the log, every device would have
 *     to mark each DMA write by hand, and one forgotten path (or a kernel copy such as a
 *     preadv into guest memory) would leave a stale page in an incremental snapshot.  A
 *     write-protected page catches every writer alike: a vCPU through KVM's fault path, a
 *     device thread's store, the kernel's copy_to_user.
 *   - With UFFD_FEATURE_WP_ASYNC the kernel resolves a write to a protected page by itself
 *     (it clears the protection and lets the write go on): no fault message, no handler
 *     thread, no cost to the guest but the first write's minor fault per page and round,
 *     which the dirty log's write protection costs as well.
 *   - PAGEMAP_SCAN with PM_SCAN_WP_MATCHING returns the written pages as ranges and
 *     re-protects exactly those in one pass, so a write racing with the scan is either
 *     reported now or finds the page protected again and is reported next time.
 *   - Measured on this 6.18 kernel (standalone, 1 GiB, 4 KiB pages): arming 6.6-8 ms (half
 *     the range touched), a scan with nothing written 0.6 ms, with all 262144 pages written
 *     5 ms; reads do not count as writes; the same holds for a MAP_PRIVATE file mapping (a
 *     restored VM's RAM), where a read maps the file's page and only a write makes it dirty.
 *     The sync userfaultfd write protection snap/live.c uses cannot protect such a mapping;
 *     the async one can (pte markers, UFFD_FEATURE_WP_UNPOPULATED).
 *
 * A range belongs to one userfaultfd, so a live checkpoint (snap/live.c, synchronous) takes RAM
 * over from this one while it runs (dirty_suspend/dirty_resume).  What the guest writes
 * meanwhile is not recorded page by page: the live writer makes each chunk writable once it is
 * saved.  So dirty_resume counts every page present in RAM as written, which is always right
 * and makes the incremental after a live checkpoint about as large as a full one.
 */
#include "snap/dirty.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "snap/memory.h"
#include "snap/pagemap.h"
#include "vm.h"

/* Newer than some build hosts' headers: the kernel ABI (linux/userfaultfd.h; PAGEMAP_SCAN in
 * snap/pagemap.h). */
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif

#define PAGE 4096ULL
#define SCAN_VEC 256 /* ranges one PAGEMAP_SCAN returns at most */

struct dirty_tracker {
	struct vm *vm; /* NULL once the VM went away */
	int uffd, pagemap;
	unsigned nregions;
	struct {
		uint8_t *hva;
		uint64_t size, page0; /* first page number of the region */
		bool registered;
	} r[2];
	size_t npages;
	struct dirty_client *clients;
	int broken; /* negative errno: nothing is known any more */
};

struct dirty_client {
	struct dirty_tracker *t;
	uint64_t *pending; /* written since this client's last fetch */
	struct dirty_client *next;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int kept_uffd = -1; /* opened by dirty_keep_uffd before khyve gave up root */

static int uffd_new(void)
{
	struct uffdio_api api = {
		.api = UFFD_API,
		.features = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED,
	};
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);

	if (fd < 0)
		return -errno;
	if (ioctl(fd, UFFDIO_API, &api) < 0 || !(api.features & UFFD_FEATURE_WP_ASYNC)) {
		int ret = errno == EINVAL || !errno ? -EOPNOTSUPP : -errno;

		close(fd);
		return ret;
	}
	return fd;
}

void dirty_keep_uffd(void)
{
	pthread_mutex_lock(&lock);
	if (kept_uffd < 0) {
		int fd = uffd_new();

		kept_uffd = fd < 0 ? -1 : fd;
	}
	pthread_mutex_unlock(&lock);
}

size_t dirty_npages(const struct vm *vm)
{
	size_t n = 0;

	for (unsigned i = 0; i < vm->nmem; i++)
		n += vm->mem[i].size / PAGE;
	return n;
}

uint64_t dirty_next_run(const uint64_t *b, size_t npages, uint64_t *pg)
{
	uint64_t i = *pg, n = 0;

	while (i < npages) {
		uint64_t w = b[i / 64] >> (i % 64);

		if (w) {
			i += (uint64_t)__builtin_ctzll(w);
			break;
		}
		i = (i / 64 + 1) * 64;
	}
	if (i >= npages) {
		*pg = npages;
		return 0;
	}
	*pg = i;
	while (i + n < npages && dirty_test(b, i + n))
		n++;
	return n;
}

uint8_t *dirty_page_hva(const struct vm *vm, uint64_t pg, uint64_t *left)
{
	for (unsigned i = 0; i < vm->nmem; i++) {
		uint64_t n = vm->mem[i].size / PAGE;

		if (pg < n) {
			*left = n - pg;
			return (uint8_t *)vm->mem[i].hva + pg * PAGE;
		}
		pg -= n;
	}
	*left = 0;
	return NULL;
}

static void set_range(uint64_t *b, size_t first, size_t n)
{
	while (n && first % 64) {
		b[first / 64] |= 1ULL << (first % 64);
		first++;
		n--;
	}
	for (; n >= 64; n -= 64, first += 64)
		b[first / 64] = ~0ULL;
	for (; n; n--, first++)
		b[first / 64] |= 1ULL << (first % 64);
}

/* Pages [first, first + n) were written: every client learns it. */
static void mark(struct dirty_tracker *t, size_t first, size_t n)
{
	for (struct dirty_client *c = t->clients; c; c = c->next)
		set_range(c->pending, first, n);
}

/*
 * One pass over RAM: the pages in category @mask (any of them with @anyof), marked in every
 * client; with @reprotect (written pages) they are write-protected again in the same walk.
 */
static int scan(struct dirty_tracker *t, uint64_t mask, bool anyof, bool reprotect)
{
	struct page_region vec[SCAN_VEC];

	for (unsigned i = 0; i < t->nregions; i++) {
		uint64_t base = (uintptr_t)t->r[i].hva, start = base, end = base + t->r[i].size;

		while (start < end) {
			struct pm_scan_arg a = {
				.size = sizeof(a),
				.flags = reprotect ? PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC
						   : 0,
				.start = start,
				.end = end,
				.vec = (uintptr_t)vec,
				.vec_len = SCAN_VEC,
				.category_mask = anyof ? 0 : mask,
				.category_anyof_mask = anyof ? mask : 0,
				.return_mask = mask,
			};
			long n = ioctl(t->pagemap, PAGEMAP_SCAN, &a);

			if (n < 0) {
				if (errno == EINTR || errno == EAGAIN)
					continue;
				return -errno;
			}
			for (long j = 0; j < n; j++)
				mark(t, t->r[i].page0 + (vec[j].start - base) / PAGE,
				     (vec[j].end - vec[j].start) / PAGE);
			if (a.walk_end <= start || a.walk_end > end)
				return -EIO;
			start = a.walk_end;
		}
	}
	return 0;
}

static void release(struct dirty_tracker *t)
{
	for (unsigned i = 0; i < t->nregions; i++) {
		struct uffdio_range r = { (uintptr_t)t->r[i].hva, t->r[i].size };

		if (t->r[i].registered)
			ioctl(t->uffd, UFFDIO_UNREGISTER, &r);
		t->r[i].registered = false;
	}
}

/* Register RAM with the asynchronous userfaultfd and write-protect all of it. */
static int arm(struct dirty_tracker *t)
{
	for (unsigned i = 0; i < t->nregions; i++) {
		struct uffdio_register reg = {
			.range = { (uintptr_t)t->r[i].hva, t->r[i].size },
			.mode = UFFDIO_REGISTER_MODE_WP,
		};
		struct uffdio_writeprotect wp = {
			.range = reg.range,
			.mode = UFFDIO_WRITEPROTECT_MODE_WP,
		};

		if (ioctl(t->uffd, UFFDIO_REGISTER, &reg) < 0)
			return errno == EINVAL ? -EOPNOTSUPP : -errno;
		t->r[i].registered = true;
		if (!(reg.ioctls & (1ULL << _UFFDIO_WRITEPROTECT)))
			return -EOPNOTSUPP;
		while (ioctl(t->uffd, UFFDIO_WRITEPROTECT, &wp) < 0)
			if (errno != EINTR && errno != EAGAIN)
				return -errno;
	}
	return 0;
}

static void tracker_detach(struct dirty_tracker *t)
{
	if (!t->vm)
		return;
	release(t);
	if (t->uffd >= 0 && t->uffd != kept_uffd)
		close(t->uffd);
	if (t->pagemap >= 0)
		close(t->pagemap);
	t->uffd = t->pagemap = -1;
	t->vm->dirty = NULL;
	t->vm = NULL;
}

static int tracker_new(struct vm *vm, struct dirty_tracker **out)
{
	struct dirty_tracker *t = calloc(1, sizeof(*t));
	int ret;

	if (!t)
		return -ENOMEM;
	t->vm = vm;
	t->uffd = kept_uffd >= 0 ? kept_uffd : uffd_new();
	t->pagemap = snap_memory_pagemap_open();
	for (unsigned i = 0; i < vm->nmem && i < 2; i++) {
		t->r[i].hva = vm->mem[i].hva;
		t->r[i].size = vm->mem[i].size;
		t->r[i].page0 = t->npages;
		t->npages += vm->mem[i].size / PAGE;
		t->nregions++;
	}
	vm->dirty = t;
	if (t->uffd < 0)
		ret = t->uffd;
	else if (t->pagemap < 0)
		ret = -errno;
	else
		ret = arm(t);
	/* A kernel without PAGEMAP_SCAN: find out now, not at the first fetch. */
	if (!ret)
		ret = scan(t, PAGE_IS_WRITTEN, false, true);
	if (ret == -ENOTTY || ret == -EPERM)
		ret = -EOPNOTSUPP;
	if (ret) {
		tracker_detach(t);
		free(t);
		return ret;
	}
	*out = t;
	return 0;
}

int dirty_client_new(struct vm *vm, struct dirty_client **out)
{
	struct dirty_client *c = calloc(1, sizeof(*c));
	struct dirty_tracker *t;
	int ret = 0;

	*out = NULL;
	if (!c)
		return -ENOMEM;
	pthread_mutex_lock(&lock);
	t = vm->dirty;
	if (!t) {
		ret = tracker_new(vm, &t);
	} else if (t->broken) {
		ret = t->broken;
	} else {
		/* Writes so far belong to the clients there are; the new one starts clean. */
		ret = scan(t, PAGE_IS_WRITTEN, false, true);
		if (ret)
			ret = t->broken = -EIO;
	}
	if (!ret) {
		c->pending = calloc(dirty_words(t->npages) ? dirty_words(t->npages) : 1, 8);
		if (!c->pending)
			ret = -ENOMEM;
	}
	if (!ret) {
		c->t = t;
		c->next = t->clients;
		t->clients = c;
		*out = c;
	} else if (t && !t->clients) {
		/* Nobody else tracks: stop again. */
		tracker_detach(t);
		free(t);
	}
	pthread_mutex_unlock(&lock);
	if (ret)
		free(c);
	return ret;
}

int dirty_client_fetch(struct dirty_client *c, uint64_t *bitmap, size_t npages)
{
	struct dirty_tracker *t = c->t;
	int ret;

	pthread_mutex_lock(&lock);
	ret = t->broken;
	if (!ret && npages != t->npages)
		ret = -EINVAL;
	if (!ret) {
		ret = scan(t, PAGE_IS_WRITTEN, false, true);
		if (ret)
			ret = t->broken = -EIO;
	}
	if (!ret) {
		memcpy(bitmap, c->pending, dirty_words(npages) * 8);
		memset(c->pending, 0, dirty_words(npages) * 8);
	}
	pthread_mutex_unlock(&lock);
	return ret;
}

void dirty_client_unfetch(struct dirty_client *c, const uint64_t *bitmap, size_t npages)
{
	pthread_mutex_lock(&lock);
	if (npages == c->t->npages)
		for (size_t i = 0; i < dirty_words(npages); i++)
			c->pending[i] |= bitmap[i];
	pthread_mutex_unlock(&lock);
}

void dirty_client_free(struct dirty_client *c)
{
	struct dirty_tracker *t;

	if (!c)
		return;
	pthread_mutex_lock(&lock);
	t = c->t;
	for (struct dirty_client **pp = &t->clients; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	if (!t->clients) {
		tracker_detach(t);
		free(t);
	}
	pthread_mutex_unlock(&lock);
	free(c->pending);
	free(c);
}

int dirty_harvest(struct dirty_client *c, struct vm *vm, uint64_t *bitmap, size_t npages,
		  uint64_t *count)
{
	int ret = dirty_client_fetch(c, bitmap, npages);

	*count = 0;
	if (ret) {
		memset(bitmap, 0, dirty_words(npages) * 8);
		return snap_memory_touched_bitmap(vm, vm->backing, bitmap, count);
	}
	for (size_t i = 0; i < dirty_words(npages); i++)
		*count += (uint64_t)__builtin_popcountll(bitmap[i]);
	return 0;
}

unsigned dirty_clients(const struct vm *vm)
{
	unsigned n = 0;

	pthread_mutex_lock(&lock);
	if (vm->dirty)
		for (const struct dirty_client *c = vm->dirty->clients; c; c = c->next)
			n++;
	pthread_mutex_unlock(&lock);
	return n;
}

bool dirty_tracking(const struct vm *vm)
{
	bool on;

	pthread_mutex_lock(&lock);
	on = vm->dirty != NULL;
	pthread_mutex_unlock(&lock);
	return on;
}

int dirty_suspend(struct vm *vm)
{
	struct dirty_tracker *t;
	int ret = 0;

	pthread_mutex_lock(&lock);
	t = vm->dirty;
	if (t && !t->broken) {
		/* What was written so far goes to every client before RAM is handed over. */
		ret = scan(t, PAGE_IS_WRITTEN, false, false);
		if (ret)
			t->broken = -EIO;
		release(t);
	}
	pthread_mutex_unlock(&lock);
	return ret;
}

int dirty_resume(struct vm *vm)
{
	struct dirty_tracker *t;
	int ret = 0;

	pthread_mutex_lock(&lock);
	t = vm->dirty;
	if (t && !t->broken) {
		/*
		 * Count what is there (present or swapped out), protect, and count what is present
		 * again: a page written after the protection is caught by it, one written before
		 * is present in one of the two scans.  The second scan cannot ask for swapped-out
		 * pages: once protected, never-touched ones carry markers that count as swapped.
		 */
		ret = scan(t, PAGE_IS_PRESENT | PAGE_IS_SWAPPED, true, false);
		if (!ret)
			ret = arm(t);
		if (!ret)
			ret = scan(t, PAGE_IS_PRESENT, false, false);
		if (ret) {
			release(t);
			t->broken = -EIO;
		}
	}
	pthread_mutex_unlock(&lock);
	return ret;
}

void dirty_vm_free(struct vm *vm)
{
	struct dirty_tracker *t;

	pthread_mutex_lock(&lock);
	t = vm->dirty;
	if (t) {
		tracker_detach(t);
		t->broken = -ENODEV;
		if (!t->clients)
			free(t);
	}
	pthread_mutex_unlock(&lock);
}
