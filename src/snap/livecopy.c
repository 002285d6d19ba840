// SPDX-License-Identifier: BSD-2-Clause
/*
 * Live checkpoints by pre-copy into the file (see livecopy.h): the rounds of live migration
 * (snap/precopy.c's convergence rule and snap/dirty.h's tracking), with the snapshot file as
 * the destination.
 *
 * Why this method only for restored VMs, and write-protection (snap/live.c) for the rest:
 * its pause is the last dirty set, which grows with the dirty rate, and a hot page is written
 * once per round; write-protection pauses for the same short time whatever the guest does.
 * But a restored VM's RAM maps its snapshot file privately, and this kernel's synchronous
 * userfaultfd write-protects anonymous, shmem and hugetlbfs memory only, while the asynchronous
 * one snap/dirty.c tracks with covers that mapping too.
 *
 * Pages are written straight from guest memory, while the guest runs, with no bounce copy: a
 * page the guest changes while (or after) it is written was harvested before, so it is dirty
 * again and written again, at the latest in the final pause, when nothing runs.  Its STRETCH
 * stretch of the memory area is then marked stale, and its extents and checksums are made
 * again from the file's bytes at the end; round 1's extents elsewhere keep the checksums of
 * the bytes they wrote (nobody wrote those pages since the tracking began).  Round 1's extents
 * never cross a multiple of STRETCH, so a stale stretch replaces whole extents.
 */
#include "snap/livecopy.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "snap/dirty.h"
#include "snap/live.h"
#include "snap/memory.h"
#include "vm.h"

#define PAGE 4096ULL
/*
 * What a stale bit covers, and what an extent never crosses: what is read back for one page
 * written again.  Smaller means less to read back where the guest writes here and there, and
 * more extents (one per 256 KiB of dense memory: 4096 for 1 GiB, 96 KiB of memory map).
 */
#define STRETCH (256ULL << 10)
#define WRITE_MAX (8ULL << 20) /* one write of a dirty run at most, between cancel checks */

/*
 * The thread's phases: ROUNDS while the guest runs; WAIT for the final pause (the caller's);
 * FINISH, the memory map is made; STOP, the checkpoint ended before that.
 */
enum lc_state { LC_ROUNDS, LC_WAIT, LC_FINISH, LC_STOP };

struct extents {
	struct snap_extent *e;
	unsigned n, cap;
};

struct snap_livecopy {
	struct vm *vm;
	struct snap_writer *w;
	struct dirty_client *dc;
	struct mig_policy pol;
	size_t npages, nstretches;
	uint64_t *bitmap, *stale;
	struct extents first, map; /* round 1's extents; the memory map's */
	uint64_t run_off, run_len; /* round 1: the run being gathered, in the memory area */
	const uint8_t *run_ptr;
	uint64_t precopy_pages, final_pages, zero_pages, reread;
	struct mig_round rounds[MIG_MAX_ROUNDS];
	unsigned nrounds;
	enum mig_verdict verdict;
	pthread_t thread;
	bool started;
	atomic_bool cancel;
	pthread_mutex_t lock; /* @state */
	pthread_cond_t cond;
	enum lc_state state;
	void (*rounds_done)(void *), (*written)(void *);
	void *opaque;
	int ret;
	char err[256];
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static int extents_add(struct snap_extent **e, unsigned *n, unsigned *cap, uint64_t off,
		       uint64_t len, uint64_t sum)
{
	if (*n == *cap) {
		unsigned c = *cap ? *cap * 2 : 1024;
		struct snap_extent *p = realloc(*e, c * sizeof(*p));

		if (!p)
			return -ENOMEM;
		*e = p;
		*cap = c;
	}
	(*e)[(*n)++] = (struct snap_extent){ off, len, sum };
	return 0;
}

/* Pages [@pg, @pg + @n) were (re)written after round 1: their stretches are made anew. */
static void mark_stale(struct snap_livecopy *c, uint64_t pg, uint64_t n)
{
	for (uint64_t s = pg * PAGE / STRETCH; s <= ((pg + n) * PAGE - 1) / STRETCH; s++)
		c->stale[s / 64] |= 1ULL << (s % 64);
}

static bool is_stale(const struct snap_livecopy *c, uint64_t s)
{
	return c->stale[s / 64] >> (s % 64) & 1;
}

/* ---- round 1: every touched page not all zero, gathered in runs ---- */

static int run_flush(struct snap_livecopy *c)
{
	int ret;

	if (!c->run_len)
		return 0;
	ret = snap_writer_memory(c->w, c->run_off, c->run_ptr, c->run_len);
	if (!ret)
		ret = extents_add(&c->first.e, &c->first.n, &c->first.cap,
				  c->w->mem_offset + c->run_off, c->run_len,
				  snap_checksum(c->run_ptr, c->run_len));
	c->precopy_pages += c->run_len / PAGE;
	c->run_len = 0;
	return ret;
}

/* Page at area offset @off, at @p here; @first: the first page of its region. */
static int round1_page(struct snap_livecopy *c, uint64_t off, const uint8_t *p, bool first)
{
	int ret = 0;

	if (snap_page_is_zero(p)) {
		c->zero_pages++;
		return run_flush(c);
	}
	if (c->run_len && (first || off % STRETCH == 0 || c->run_off + c->run_len != off))
		ret = run_flush(c);
	if (ret)
		return ret;
	if (!c->run_len) {
		c->run_off = off;
		c->run_ptr = p;
	}
	c->run_len += PAGE;
	return 0;
}

static int round1(struct snap_livecopy *c)
{
	uint64_t pg = 0, n, count;
	int ret = snap_memory_touched_bitmap(c->vm, c->vm->backing, c->bitmap, &count);

	while (!ret && (n = dirty_next_run(c->bitmap, c->npages, &pg))) {
		for (uint64_t end = pg + n; !ret && pg < end; pg++) {
			uint64_t left;
			const uint8_t *p = dirty_page_hva(c->vm, pg, &left);

			if (!p)
				return -EINVAL;
			if (atomic_load(&c->cancel))
				return -ECANCELED;
			/* A region's first page: the one before it is in the other region. */
			ret = round1_page(c, pg * PAGE, p,
					  p == c->vm->mem[0].hva ||
						  (c->vm->nmem > 1 && p == c->vm->mem[1].hva));
		}
		if (!ret)
			ret = run_flush(c);
	}
	return ret;
}

/* ---- later rounds and the final pause: the pages set in the bitmap, rewritten in place ---- */

/* @cached: through the page cache (the final pause: no write waits for the disk there). */
static int write_dirty(struct snap_livecopy *c, bool cached, uint64_t *pages)
{
	uint64_t pg = 0, n;
	int ret = 0;

	*pages = 0;
	while (!ret && (n = dirty_next_run(c->bitmap, c->npages, &pg))) {
		uint64_t end = pg + n;

		while (!ret && pg < end) {
			uint64_t left, k;
			const uint8_t *p = dirty_page_hva(c->vm, pg, &left);

			if (!p)
				return -EINVAL;
			if (atomic_load(&c->cancel))
				return -ECANCELED;
			k = end - pg < left ? end - pg : left;
			k = k < WRITE_MAX / PAGE ? k : WRITE_MAX / PAGE;
			ret = cached ? snap_writer_memory_cached(c->w, pg * PAGE, p, k * PAGE)
				     : snap_writer_memory(c->w, pg * PAGE, p, k * PAGE);
			mark_stale(c, pg, k);
			*pages += k;
			pg += k;
		}
	}
	return ret;
}

static int harvest(struct snap_livecopy *c, uint64_t *count)
{
	return dirty_harvest(c->dc, c->vm, c->bitmap, c->npages, count);
}

/* Round 1, then rounds until the rule says pause; the last harvest is given back for it. */
static int rounds(struct snap_livecopy *c)
{
	enum mig_verdict v = MIG_AGAIN;
	uint64_t t = now_ns(), b0 = c->w->bytes, sent = 0, count, est;
	int ret = round1(c);

	sent = c->precopy_pages;
	while (!ret) {
		ret = harvest(c, &count);
		if (ret)
			break;
		c->rounds[c->nrounds] = (struct mig_round){
			.pages = sent, .bytes = c->w->bytes - b0, .ns = now_ns() - t, .dirty = count
		};
		c->nrounds++;
		v = mig_converge(&c->pol, c->rounds, c->nrounds, &est);
		if (v != MIG_AGAIN)
			break;
		t = now_ns();
		b0 = c->w->bytes;
		ret = write_dirty(c, false, &sent);
		c->precopy_pages += sent;
	}
	c->verdict = v;
	if (!ret)
		dirty_client_unfetch(c->dc, c->bitmap, c->npages);
	return ret;
}

/* ---- the memory map, once the file holds the final pause's memory ---- */

int snap_livecopy_extents(const uint8_t *buf, uint64_t off, uint64_t len, uint64_t file_off,
			  struct snap_extent **e, unsigned *n, unsigned *cap,
			  void (*zero)(void *opaque, uint64_t off, uint64_t len), void *opaque)
{
	uint64_t run = 0, rlen = 0, z = 0, zlen = 0;
	int ret = 0;

	for (uint64_t at = 0; at < len && !ret; at += PAGE) {
		uint64_t a = off + at;

		if (snap_page_is_zero(buf + at)) {
			if (rlen)
				ret = extents_add(e, n, cap, file_off + run, rlen,
						  snap_checksum(buf + (run - off), rlen));
			rlen = 0;
			if (!zlen)
				z = a;
			zlen += PAGE;
			continue;
		}
		if (zlen && zero)
			zero(opaque, z, zlen);
		zlen = 0;
		if (rlen && a % SNAP_EXTENT_MAX == 0) {
			ret = extents_add(e, n, cap, file_off + run, rlen,
					  snap_checksum(buf + (run - off), rlen));
			rlen = 0;
		}
		if (!rlen)
			run = a;
		rlen += PAGE;
	}
	if (!ret && rlen)
		ret = extents_add(e, n, cap, file_off + run, rlen,
				  snap_checksum(buf + (run - off), rlen));
	if (!ret && zlen && zero)
		zero(opaque, z, zlen);
	return ret;
}

/* Zero pages in a stale stretch may hold the zeros written there: a hole again (best effort). */
static void punch(void *opaque, uint64_t off, uint64_t len)
{
	struct snap_livecopy *c = opaque;

	if (fallocate(c->w->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      (off_t)(c->w->mem_offset + off), (off_t)len)) {
		/* The zeros stay data: a reader finds them zero (format.c, check_holes). */
	}
}

static int pread_full(int fd, uint8_t *p, uint64_t len, uint64_t off)
{
	while (len) {
		ssize_t n = pread(fd, p, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		off += (uint64_t)n;
		len -= (uint64_t)n;
	}
	return 0;
}

/* Stretch @s made anew from the file, region by region. */
static int remake(struct snap_livecopy *c, uint64_t s, uint8_t *buf)
{
	uint64_t lo = s * STRETCH, hi = lo + STRETCH, base = 0;
	int ret = 0;

	for (unsigned i = 0; i < c->vm->nmem && !ret; i++) {
		uint64_t a = lo > base ? lo : base, end = base + c->vm->mem[i].size;

		end = hi < end ? hi : end;
		if (a < end) {
			c->reread += end - a;
			ret = pread_full(c->w->fd, buf, end - a, c->w->mem_offset + a);
			if (!ret)
				ret = snap_livecopy_extents(buf, a, end - a, c->w->mem_offset,
							    &c->map.e, &c->map.n, &c->map.cap,
							    punch, c);
		}
		base += c->vm->mem[i].size;
	}
	return ret;
}

static int finish(struct snap_livecopy *c)
{
	uint8_t *buf = malloc(STRETCH);
	unsigned i = 0;
	int ret = buf ? 0 : -ENOMEM;

	for (uint64_t s = 0; s < c->nstretches && !ret; s++) {
		uint64_t end = c->w->mem_offset + (s + 1) * STRETCH;
		bool stale = is_stale(c, s);

		if (atomic_load(&c->cancel))
			ret = -ECANCELED;
		for (; !ret && i < c->first.n && c->first.e[i].file_offset < end; i++)
			if (!stale)
				ret = extents_add(&c->map.e, &c->map.n, &c->map.cap,
						  c->first.e[i].file_offset, c->first.e[i].length,
						  c->first.e[i].checksum);
		if (!ret && stale)
			ret = remake(c, s, buf);
	}
	free(buf);
	return ret;
}

/* ---- the thread ---- */

static void set_err(struct snap_livecopy *c, int ret)
{
	if (ret && !c->err[0])
		snprintf(c->err, sizeof(c->err), "saving guest memory: %s",
			 ret == -ECANCELED ? "the checkpoint was stopped" : strerror(-ret));
}

static void *livecopy_thread(void *opaque)
{
	struct snap_livecopy *c = opaque;
	enum lc_state s;
	int ret;

	snap_live_writer_priority();
	ret = rounds(c);

	c->ret = ret;
	set_err(c, ret);
	pthread_mutex_lock(&c->lock);
	if (c->state == LC_ROUNDS)
		c->state = LC_WAIT;
	pthread_mutex_unlock(&c->lock);
	c->rounds_done(c->opaque);
	pthread_mutex_lock(&c->lock);
	while (c->state == LC_WAIT)
		pthread_cond_wait(&c->cond, &c->lock);
	s = c->state;
	pthread_mutex_unlock(&c->lock);
	if (s != LC_FINISH || ret)
		return NULL;
	ret = finish(c);
	c->ret = ret;
	set_err(c, ret);
	c->written(c->opaque);
	return NULL;
}

static void set_state(struct snap_livecopy *c, enum lc_state s)
{
	pthread_mutex_lock(&c->lock);
	c->state = s;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

/* ---- the interface ---- */

int snap_livecopy_new(struct vm *vm, struct snap_writer *w, const struct mig_policy *p,
		      struct snap_livecopy **out, char *err, size_t errlen)
{
	struct snap_livecopy *c = calloc(1, sizeof(*c));
	int ret;

	*out = NULL;
	if (!c)
		return -ENOMEM;
	c->vm = vm;
	c->w = w;
	c->pol = *p;
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cond, NULL);
	c->npages = dirty_npages(vm);
	c->nstretches = (c->npages * PAGE + STRETCH - 1) / STRETCH;
	c->bitmap = calloc(dirty_words(c->npages) ? dirty_words(c->npages) : 1, 8);
	c->stale = calloc(dirty_words(c->nstretches) ? dirty_words(c->nstretches) : 1, 8);
	if (!c->bitmap || !c->stale) {
		snap_livecopy_free(c);
		return -ENOMEM;
	}
	/* From before round 1 reads the page tables: no write after that is missed. */
	ret = dirty_client_new(vm, &c->dc);
	if (ret) {
		c->dc = NULL;
		snprintf(err, errlen,
			 "dirty-page tracking is not available (%s): checkpoint without --live",
			 strerror(-ret));
		snap_livecopy_free(c);
		return ret;
	}
	*out = c;
	return 0;
}

int snap_livecopy_start(struct snap_livecopy *c, void (*rounds_done)(void *),
			void (*written)(void *), void *opaque)
{
	int ret;

	c->rounds_done = rounds_done;
	c->written = written;
	c->opaque = opaque;
	ret = -pthread_create(&c->thread, NULL, livecopy_thread, c);
	c->started = !ret;
	return ret;
}

int snap_livecopy_rounds_result(struct snap_livecopy *c, char *err, size_t errlen)
{
	int ret;

	/* The thread set them before it took the lock to wait. */
	pthread_mutex_lock(&c->lock);
	ret = c->ret;
	if (ret)
		snprintf(err, errlen, "%s", c->err);
	pthread_mutex_unlock(&c->lock);
	return ret;
}

int snap_livecopy_final(struct snap_livecopy *c, struct snap_result *res, char *err, size_t errlen)
{
	uint64_t count;
	int ret = harvest(c, &count);

	if (!ret)
		ret = write_dirty(c, true, &c->final_pages);
	if (ret)
		snprintf(err, errlen, "saving the last dirty pages: %s", strerror(-ret));
	res->final_pages = c->final_pages;
	return ret;
}

void snap_livecopy_continue(struct snap_livecopy *c)
{
	set_state(c, LC_FINISH);
}

void snap_livecopy_cancel(struct snap_livecopy *c)
{
	atomic_store(&c->cancel, true);
}

int snap_livecopy_result(struct snap_livecopy *c, struct snap_file *map, struct snap_result *res,
			 char *err, size_t errlen)
{
	uint64_t off = 0;

	if (c->ret) {
		snprintf(err, errlen, "%s", c->err);
		return c->ret;
	}
	map->nregions = c->vm->nmem;
	for (unsigned i = 0; i < c->vm->nmem; i++) {
		map->regions[i] = (struct snap_region){ c->vm->mem[i].gpa, c->vm->mem[i].size,
							c->w->mem_offset + off };
		off += c->vm->mem[i].size;
	}
	map->extents = c->map.e;
	map->nextents = c->map.n;
	c->map.e = NULL;
	c->map.n = c->map.cap = 0;
	res->mem_pages = 0;
	for (unsigned i = 0; i < map->nextents; i++)
		res->mem_pages += map->extents[i].length / PAGE;
	res->zero_pages = c->zero_pages;
	res->rounds = c->nrounds + 1;
	res->precopy_pages = c->precopy_pages;
	res->final_pages = c->final_pages;
	res->converged = mig_verdict_name(c->verdict);
	res->reread_bytes = c->reread;
	return 0;
}

void snap_livecopy_free(struct snap_livecopy *c)
{
	if (!c)
		return;
	if (c->started) {
		atomic_store(&c->cancel, true);
		pthread_mutex_lock(&c->lock);
		if (c->state != LC_FINISH)
			c->state = LC_STOP;
		pthread_cond_broadcast(&c->cond);
		pthread_mutex_unlock(&c->lock);
		pthread_join(c->thread, NULL);
	}
	if (c->dc)
		dirty_client_free(c->dc);
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->cond);
	free(c->bitmap);
	free(c->stale);
	free(c->first.e);
	free(c->map.e);
	free(c);
}
