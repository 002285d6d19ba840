// SPDX-License-Identifier: BSD-2-Clause
/* Background prefetch of a restored VM's memory (see prefetch.h). */
#include "snap/prefetch.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "log.h"
#include "snap/format.h"
#include "snap/memory.h"
#include "vm.h"

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

struct snap_prefetch {
	pthread_t thread;
	enum snap_prefetch_mode mode;
	unsigned n;
	struct snap_prefetch_range *r;
	atomic_bool stop;
	atomic_bool finished;
	_Atomic uint64_t bytes;
	pthread_mutex_t lock;
	pthread_cond_t cond;
};

static const char *const names[] = {
	[SNAP_PREFETCH_OFF] = "off",
	[SNAP_PREFETCH_WILLNEED] = "willneed",
	[SNAP_PREFETCH_READ] = "read",
	[SNAP_PREFETCH_WRITE] = "write",
};

int snap_prefetch_parse(const char *s, enum snap_prefetch_mode *mode)
{
	for (unsigned i = 0; s && i < sizeof(names) / sizeof(names[0]); i++)
		if (!strcmp(s, names[i])) {
			*mode = (enum snap_prefetch_mode)i;
			return 0;
		}
	return -EINVAL;
}

const char *snap_prefetch_name(enum snap_prefetch_mode mode)
{
	return (unsigned)mode < sizeof(names) / sizeof(names[0]) ? names[mode] : "?";
}

static int advice(enum snap_prefetch_mode mode)
{
	switch (mode) {
	case SNAP_PREFETCH_WILLNEED:
		return MADV_WILLNEED;
	case SNAP_PREFETCH_READ:
		return MADV_POPULATE_READ;
	default:
		return MADV_POPULATE_WRITE;
	}
}

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/*
 * A chunk at a time, so that a stop waits for one chunk at most.  A populate that fails (the
 * kernel has no MADV_POPULATE_*, memory is short) ends the prefetch: the guest's own faults
 * still bring every page in, so nothing is lost but time.
 */
static void *prefetch_thread(void *opaque)
{
	struct snap_prefetch *p = opaque;
	int adv = advice(p->mode);
	uint64_t t0 = mono_ms();

	for (unsigned i = 0; i < p->n && !atomic_load(&p->stop); i++) {
		for (uint64_t off = 0; off < p->r[i].len && !atomic_load(&p->stop);) {
			uint64_t len = p->r[i].len - off;

			if (len > SNAP_PREFETCH_CHUNK)
				len = SNAP_PREFETCH_CHUNK;
			if (madvise(p->r[i].hva + off, len, adv)) {
				if (errno == EINTR || errno == EAGAIN)
					continue;
				log_debug("prefetch (%s) stopped: madvise: %s",
					  snap_prefetch_name(p->mode), strerror(errno));
				goto out;
			}
			off += len;
			atomic_fetch_add(&p->bytes, len);
		}
	}
	log_debug("prefetch (%s): %llu MiB in %llu ms%s", snap_prefetch_name(p->mode),
		  (unsigned long long)(atomic_load(&p->bytes) >> 20),
		  (unsigned long long)(mono_ms() - t0), atomic_load(&p->stop) ? ", stopped" : "");
out:
	pthread_mutex_lock(&p->lock);
	atomic_store(&p->finished, true);
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

int snap_prefetch_start(enum snap_prefetch_mode mode, const struct snap_prefetch_range *r,
			unsigned n, struct snap_prefetch **out)
{
	struct snap_prefetch *p;
	int ret;

	*out = NULL;
	if (mode == SNAP_PREFETCH_OFF || !n)
		return 0;
	if ((unsigned)mode >= sizeof(names) / sizeof(names[0]))
		return -EINVAL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->r = malloc(n * sizeof(*r));
	if (!p->r) {
		free(p);
		return -ENOMEM;
	}
	memcpy(p->r, r, n * sizeof(*r));
	p->n = n;
	p->mode = mode;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	ret = -pthread_create(&p->thread, NULL, prefetch_thread, p);
	if (ret) {
		pthread_cond_destroy(&p->cond);
		pthread_mutex_destroy(&p->lock);
		free(p->r);
		free(p);
		return ret;
	}
	*out = p;
	return 0;
}

void snap_prefetch_wait(struct snap_prefetch *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	while (!atomic_load(&p->finished))
		pthread_cond_wait(&p->cond, &p->lock);
	pthread_mutex_unlock(&p->lock);
}

uint64_t snap_prefetch_bytes(const struct snap_prefetch *p)
{
	return p ? atomic_load(&((struct snap_prefetch *)p)->bytes) : 0;
}

bool snap_prefetch_finished(const struct snap_prefetch *p)
{
	return !p || atomic_load(&((struct snap_prefetch *)p)->finished);
}

void snap_prefetch_stop(struct snap_prefetch *p)
{
	if (!p)
		return;
	atomic_store(&p->stop, true);
	pthread_join(p->thread, NULL);
	pthread_cond_destroy(&p->cond);
	pthread_mutex_destroy(&p->lock);
	free(p->r);
	free(p);
}

/* The part of file range [@foff, @foff + @len) that region @i holds, into *@out. */
static bool region_part(const struct vm *vm, const struct mem_backing *b, unsigned i, uint64_t foff,
			uint64_t len, struct snap_prefetch_range *out)
{
	uint64_t lo = b->region_file_offset[i], hi = lo + vm->mem[i].size;
	uint64_t s = foff > lo ? foff : lo, e = foff + len < hi ? foff + len : hi;

	if (s >= e)
		return false;
	*out = (struct snap_prefetch_range){ (uint8_t *)vm->mem[i].hva + (s - lo), e - s };
	return true;
}

/* Each extent of the file, in file order, where guest RAM maps it (a region's part). */
int snap_prefetch_vm(struct vm *vm, enum snap_prefetch_mode mode)
{
	const struct mem_backing *b = vm->backing;
	struct snap_prefetch_range *r;
	struct snap_prefetch *p = NULL;
	unsigned n = 0;
	int ret;

	if (mode == SNAP_PREFETCH_OFF || !b || !b->nextents)
		return 0;
	r = calloc((size_t)b->nextents * vm->nmem, sizeof(*r));
	if (!r)
		return -ENOMEM;
	for (unsigned e = 0; e < b->nextents; e++)
		for (unsigned i = 0; i < vm->nmem && i < 2; i++)
			n += region_part(vm, b, i, b->extents[e].file_offset, b->extents[e].length,
					 &r[n]);
	ret = snap_prefetch_start(mode, r, n, &p);
	free(r);
	if (!ret)
		__atomic_store_n(&vm->prefetch, p, __ATOMIC_RELEASE);
	return ret;
}

void snap_prefetch_vm_stop(struct vm *vm)
{
	/* Any thread may stop it (the event loop's pause, the VM's end): one of them does. */
	snap_prefetch_stop(__atomic_exchange_n(&vm->prefetch, NULL, __ATOMIC_ACQ_REL));
}
