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
 * checkpointed by pre-copy with the dirty log instead (snap/livecopy.c).
 *
 * Arming before the pause.  Write-protecting all of guest RAM takes milliseconds (2.9-3.8 ms
 * for 1 GiB with the guest running, here), far more than the rest of the pause.  So RAM is
 * registered and write-protected while the guest still runs (snap_live_prearm); the writer
 * thread is already there and, until the pause, only makes a page the guest writes writable
 * again (nothing is saved: that is not the pause instant yet).  Up to two more rounds then
 * re-protect what was written meanwhile, each shorter than the one before.  In the pause
 * (snap_live_arm) the thread is stopped first, so it cannot unprotect anything after that, and
 * one PAGEMAP_SCAN finds every page present (or swapped out) without the protection: written
 * since it was protected, or first touched since; those, and only those, are protected again
 * (0.1-0.2 ms for the scan, about 1.3 us per page re-protected).  When the guest resumes every
 * page it has is protected and still holds its pause-instant bytes, as if all of RAM had been
 * protected in the pause.  A write the pause interrupted (a vCPU kicked out of a fault) leaves
 * a message for a page that is still protected; the writer saves that page like any other.
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
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "snap/memory.h"
#include "snap/pagemap.h"
#include "vm.h"

#define PAGE 4096ULL
#define PM_PRESENT (1ULL << 63)
#define PM_UFFD_WP (1ULL << 57)
/*
 * Pages written between two looks at the guest's faults: 2 MiB, about 1.5 ms at this host's
 * disk speed.  Each chunk costs a pagemap read and an unprotect (a TLB flush on every CPU
 * running a vCPU): 512 KiB chunks made the whole save 1.5x slower (bench/README.md "Live
 * checkpoint: the writer's chunk and priority").
 */
#define CHUNK 512
/* Arming rounds before the pause: the first protects all of RAM, the others what was written. */
#define PREARM_ROUNDS 3
/* A round that re-protected fewer pages than this leaves little for the pause: stop there. */
#define PREARM_ENOUGH 256
#define SCAN_VEC 256 /* ranges one PAGEMAP_SCAN returns at most */

/*
 * The writer thread's phases: PRE, before the pause (a written page is made writable again);
 * FROZEN, in the pause (it handles nothing); SAVE, the guest runs again and memory is saved;
 * STOP, the checkpoint failed before SAVE (the thread ends at once).
 */
enum live_state { LIVE_PRE, LIVE_FROZEN, LIVE_SAVE, LIVE_STOP };

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
	/* @state, and a PRE-phase batch of faults being handled, under @lock. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	enum live_state state;
	uint64_t prearm_ns, prearm_rounds, prearm_pages, prearm_faults, arm_pages;
	int pre_ret; /* the PRE phase failed: every page was made writable, nothing is tracked */
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

/*
 * Write-protect again every page of RAM that is present or swapped out and has no protection
 * (written since it was protected, or first touched since); @pages counts them.
 */
static int reprotect_written(struct snap_live *l, uint64_t *pages)
{
	struct page_region vec[SCAN_VEC];

	for (unsigned i = 0; i < l->nregions; i++) {
		uint64_t start = (uintptr_t)l->r[i].hva, end = start + l->r[i].size;

		while (start < end) {
			struct pm_scan_arg a = {
				.size = sizeof(a),
				.start = start,
				.end = end,
				.vec = (uintptr_t)vec,
				.vec_len = SCAN_VEC,
				.category_mask = PAGE_IS_WRITTEN,
				.category_anyof_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
				.return_mask = PAGE_IS_WRITTEN,
			};
			long n = ioctl(l->pagemap, PAGEMAP_SCAN, &a);

			if (n < 0 && (errno == EINTR || errno == EAGAIN))
				continue;
			if (n < 0)
				return -errno;
			for (long j = 0; j < n; j++) {
				int ret = uffd_protect(l->uffd, (void *)(uintptr_t)vec[j].start,
						       vec[j].end - vec[j].start, true);

				if (ret)
					return ret;
				*pages += (vec[j].end - vec[j].start) / PAGE;
			}
			if (a.walk_end <= start || a.walk_end > end)
				return -EIO;
			start = a.walk_end;
		}
	}
	return 0;
}

/*
 * Every guest write waiting on the userfaultfd now, handed to @fn with its page address.
 * Never blocks: returns 0 once none is left, or @fn's first error.
 */
static int for_each_fault(struct snap_live *l, int (*fn)(struct snap_live *l, uint64_t a))
{
	struct uffd_msg msg[32];

	for (;;) {
		ssize_t n = read(l->uffd, msg, sizeof(msg));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN ? 0 : -errno;
		for (size_t i = 0; i < (size_t)n / sizeof(msg[0]); i++) {
			int ret;

			if (msg[i].event != UFFD_EVENT_PAGEFAULT)
				continue;
			ret = fn(l, msg[i].arg.pagefault.address & ~(PAGE - 1));
			if (ret)
				return ret;
		}
	}
}

static int prearm_fault(struct snap_live *l, uint64_t a)
{
	l->prearm_faults++;
	return uffd_protect(l->uffd, (void *)(uintptr_t)a, PAGE, false);
}

/* Before the pause: every write waiting now goes on (its page is writable again).  Never blocks. */
static int prearm_faults(struct snap_live *l)
{
	return for_each_fault(l, prearm_fault);
}

/*
 * The thread until the guest runs after the pause: PRE, serve the guest's writes; FROZEN,
 * wait.  Returns the state it left for, SAVE or STOP.
 */
static enum live_state prearm_serve(struct snap_live *l)
{
	struct pollfd pfd = { .fd = l->uffd, .events = POLLIN };
	enum live_state s;

	for (;;) {
		pthread_mutex_lock(&l->lock);
		while (l->state == LIVE_FROZEN)
			pthread_cond_wait(&l->cond, &l->lock);
		s = l->state;
		/*
		 * A write that cannot be let go would block its vCPU, and with it the pause: on a
		 * failure every page is made writable and the pause reports it (snap_live_arm).
		 */
		if (s == LIVE_PRE && !l->pre_ret) {
			l->pre_ret = prearm_faults(l);
			if (l->pre_ret)
				uffd_release(l);
		}
		pthread_mutex_unlock(&l->lock);
		if (s != LIVE_PRE)
			return s;
		/* Short: a change to STOP is only seen here. */
		poll(&pfd, 1, 5);
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

static int save_fault(struct snap_live *l, uint64_t a)
{
	for (unsigned j = 0; j < l->nregions; j++) {
		struct live_region *r = &l->r[j];

		if (a >= (uintptr_t)r->hva && a - (uintptr_t)r->hva < r->size)
			return fault_page(l, r, (a - (uintptr_t)r->hva) / PAGE);
	}
	return 0;
}

/* Every write waiting now, saved first.  Never blocks. */
static int handle_faults(struct snap_live *l)
{
	return for_each_fault(l, save_fault);
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

	if (prearm_serve(l) == LIVE_STOP)
		return NULL;
	snap_live_writer_priority();
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

void snap_live_writer_priority(void)
{
	/*
	 * The CPU time the save needs is the same either way: ahead of the vCPUs, it is taken
	 * from the guest in a shorter stretch.  The sandbox allows exactly this call.
	 */
	setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), SNAP_LIVE_WRITER_NICE);
}

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
	pthread_mutex_destroy(&l->lock);
	pthread_cond_destroy(&l->cond);
	free(l);
}

static int live_register(struct snap_live *l, unsigned i, char *err, size_t errlen)
{
	struct uffdio_register reg = {
		.range = { (uintptr_t)l->r[i].hva, l->r[i].size },
		.mode = UFFDIO_REGISTER_MODE_WP,
	};

	if (ioctl(l->uffd, UFFDIO_REGISTER, &reg) < 0) {
		int ret = -errno;

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
	return 0;
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static int live_new(struct vm *vm, struct snap_writer *w, struct snap_live **out, char *err,
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
	pthread_mutex_init(&l->lock, NULL);
	pthread_cond_init(&l->cond, NULL);
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

/* The thread leaves PRE or FROZEN for @s. */
static void live_set_state(struct snap_live *l, enum live_state s)
{
	pthread_mutex_lock(&l->lock);
	l->state = s;
	pthread_cond_broadcast(&l->cond);
	pthread_mutex_unlock(&l->lock);
}

int snap_live_prearm(struct vm *vm, struct snap_writer *w, struct snap_live **out, char *err,
		     size_t errlen)
{
	uint64_t t0 = mono_ns();
	struct snap_live *l;
	int ret;

	ret = live_new(vm, w, &l, err, errlen);
	if (ret)
		return ret;
	/* The thread first: from the first protected page on, a guest write needs it. */
	l->state = LIVE_PRE;
	ret = -pthread_create(&l->thread, NULL, live_thread, l);
	l->started = !ret;
	if (ret) {
		snprintf(err, errlen, "starting the live checkpoint's writer: %s", strerror(-ret));
		snap_live_free(l);
		return ret;
	}
	for (unsigned i = 0; i < l->nregions && !ret; i++)
		ret = uffd_protect(l->uffd, l->r[i].hva, l->r[i].size, true);
	if (!ret)
		l->prearm_rounds = 1;
	while (!ret && l->prearm_rounds < PREARM_ROUNDS) {
		uint64_t pages = 0;

		ret = reprotect_written(l, &pages);
		l->prearm_rounds++;
		l->prearm_pages += pages;
		if (pages < PREARM_ENOUGH)
			break;
	}
	if (ret) {
		snprintf(err, errlen, "write-protecting guest memory: %s", strerror(-ret));
		snap_live_free(l);
		return ret;
	}
	l->prearm_ns = mono_ns() - t0;
	*out = l;
	return 0;
}

int snap_live_arm(struct snap_live *l, char *err, size_t errlen)
{
	int ret;

	/* No page may be made writable from here on but by the writer, once it is saved. */
	pthread_mutex_lock(&l->lock);
	l->state = LIVE_FROZEN;
	ret = l->pre_ret;
	if (!ret)
		ret = reprotect_written(l, &l->arm_pages);
	pthread_mutex_unlock(&l->lock);
	if (ret)
		snprintf(err, errlen, "write-protecting guest memory: %s", strerror(-ret));
	return ret;
}

int snap_live_start(struct snap_live *l, void (*done)(void *opaque), void *opaque)
{
	l->done = done;
	l->opaque = opaque;
	live_set_state(l, LIVE_SAVE);
	return 0;
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
	res->prearm_ns = l->prearm_ns;
	res->prearm_rounds = l->prearm_rounds;
	res->prearm_pages = l->prearm_pages;
	res->prearm_faults = l->prearm_faults;
	res->arm_pages = l->arm_pages;
	return 0;
}

void snap_live_free(struct snap_live *l)
{
	if (!l)
		return;
	if (l->started) {
		pthread_mutex_lock(&l->lock);
		if (l->state != LIVE_SAVE)
			l->state = LIVE_STOP;
		pthread_cond_broadcast(&l->cond);
		pthread_mutex_unlock(&l->lock);
		pthread_join(l->thread, NULL);
	}
	live_free(l);
}
