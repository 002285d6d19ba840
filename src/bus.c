// SPDX-License-Identifier: BSD-2-Clause
/*
 * Port-I/O and MMIO dispatch: a sorted array searched by bisection under a read lock; and
 * KVM's ring of coalesced writes, drained into the same handlers (bus.h).
 */
#include "bus.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "log.h"

void bus_init(struct bus *b)
{
	memset(b, 0, sizeof(*b));
	pthread_rwlock_init(&b->lock, NULL);
	pthread_mutex_init(&b->clock, NULL);
	b->ring_fd = -1;
}

void bus_destroy(struct bus *b)
{
	while (b->stats) {
		struct bus_stats *st = b->stats;

		b->stats = st->next;
		free(st);
	}
	free(b->ranges);
	free(b->zones);
	pthread_rwlock_destroy(&b->lock);
	pthread_mutex_destroy(&b->clock);
	b->ranges = NULL;
	b->zones = NULL;
	b->ring = NULL;
	b->n = b->cap = b->nzones = b->zcap = 0;
}

/* Index of the first range whose end is above @addr. */
static unsigned bus_lower(const struct bus *b, uint64_t addr)
{
	unsigned lo = 0, hi = b->n;

	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;

		if (b->ranges[mid].base + b->ranges[mid].len <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* The record of (fn, opaque), made on first registration.  Called with the write lock. */
static struct bus_stats *bus_stats_get(struct bus *b, bus_io_fn fn, void *opaque)
{
	struct bus_stats *st;

	for (st = b->stats; st; st = st->next)
		if (st->fn == fn && st->opaque == opaque)
			return st;
	st = calloc(1, sizeof(*st));
	if (!st)
		return NULL;
	st->fn = fn;
	st->opaque = opaque;
	st->next = b->stats;
	b->stats = st;
	return st;
}

int bus_register(struct bus *b, uint64_t base, uint64_t len, bus_io_fn fn, void *opaque)
{
	struct bus_stats *st;
	unsigned i;
	int ret = 0;

	if (!len || base + len < base)
		return -EINVAL;
	pthread_rwlock_wrlock(&b->lock);
	i = bus_lower(b, base);
	if (i < b->n && b->ranges[i].base < base + len) {
		ret = -EEXIST;
		goto out;
	}
	st = bus_stats_get(b, fn, opaque);
	if (!st) {
		ret = -ENOMEM;
		goto out;
	}
	if (b->n == b->cap) {
		unsigned cap = b->cap ? b->cap * 2 : 16;
		struct bus_range *r = realloc(b->ranges, cap * sizeof(*r));

		if (!r) {
			ret = -ENOMEM;
			goto out;
		}
		b->ranges = r;
		b->cap = cap;
	}
	memmove(&b->ranges[i + 1], &b->ranges[i], (b->n - i) * sizeof(b->ranges[0]));
	b->ranges[i] = (struct bus_range){ base, len, fn, opaque, st };
	st->base = base;
	st->len = len;
	b->n++;
out:
	pthread_rwlock_unlock(&b->lock);
	return ret;
}

int bus_unregister(struct bus *b, uint64_t base)
{
	unsigned i;
	int ret = -ENOENT;

	pthread_rwlock_wrlock(&b->lock);
	i = bus_lower(b, base);
	if (i < b->n && b->ranges[i].base == base) {
		memmove(&b->ranges[i], &b->ranges[i + 1], (b->n - i - 1) * sizeof(b->ranges[0]));
		b->n--;
		ret = 0;
	}
	pthread_rwlock_unlock(&b->lock);
	return ret;
}

bool bus_access(struct bus *b, uint64_t addr, void *data, unsigned size, bool is_write)
{
	struct bus_range r;
	unsigned i;

	pthread_rwlock_rdlock(&b->lock);
	i = bus_lower(b, addr);
	if (i >= b->n || b->ranges[i].base > addr ||
	    addr + size > b->ranges[i].base + b->ranges[i].len) {
		pthread_rwlock_unlock(&b->lock);
		/* Unclaimed (or straddling two ranges): all-ones, writes dropped. */
		if (!is_write)
			memset(data, 0xff, size);
		return false;
	}
	r = b->ranges[i];
	pthread_rwlock_unlock(&b->lock);
	/*
	 * The handler runs without the lock: a PCI config write may move an I/O BAR, which
	 * registers on this same bus.  Devices are freed only after every vCPU has stopped, so
	 * the handler's opaque pointer stays valid.
	 */
	r.fn(r.opaque, addr - r.base, data, size, is_write);
	__atomic_fetch_add(is_write ? &r.st->writes : &r.st->reads, 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&r.st->bytes, size, __ATOMIC_RELAXED);
	return true;
}

void bus_stats_claim(struct bus *b, const char *owner)
{
	pthread_rwlock_wrlock(&b->lock);
	for (struct bus_stats *st = b->stats; st; st = st->next)
		if (!st->owner[0])
			snprintf(st->owner, sizeof(st->owner), "%s", owner);
	pthread_rwlock_unlock(&b->lock);
}

void bus_stats_name(struct bus *b, const void *opaque, const char *owner, const char *what)
{
	pthread_rwlock_wrlock(&b->lock);
	for (struct bus_stats *st = b->stats; st; st = st->next) {
		if (st->opaque != opaque)
			continue;
		snprintf(st->owner, sizeof(st->owner), "%s", owner);
		snprintf(st->what, sizeof(st->what), "%s", what);
	}
	pthread_rwlock_unlock(&b->lock);
}

/* Oldest first: the records are kept newest first, so walk them into an array. */
void bus_stats_foreach(struct bus *b, void (*fn)(const struct bus_stats *st, void *arg), void *arg)
{
	struct bus_stats *copy = NULL, *st;
	unsigned n = 0, i = 0;

	pthread_rwlock_rdlock(&b->lock);
	for (st = b->stats; st; st = st->next)
		n++;
	copy = n ? calloc(n, sizeof(*copy)) : NULL;
	for (st = b->stats; copy && st; st = st->next, i++) {
		struct bus_stats *c = &copy[n - 1 - i];

		c->fn = st->fn;
		c->opaque = st->opaque;
		memcpy(c->owner, st->owner, sizeof(c->owner));
		memcpy(c->what, st->what, sizeof(c->what));
		c->base = st->base;
		c->len = st->len;
		c->reads = __atomic_load_n(&st->reads, __ATOMIC_RELAXED);
		c->writes = __atomic_load_n(&st->writes, __ATOMIC_RELAXED);
		c->bytes = __atomic_load_n(&st->bytes, __ATOMIC_RELAXED);
	}
	pthread_rwlock_unlock(&b->lock);
	for (i = 0; copy && i < n; i++)
		fn(&copy[i], arg);
	free(copy);
}

/* ---- coalesced writes ---- */

/*
 * Set while this thread drains: a handler that drains again (or changes zones) must not wait
 * for the lock its own thread holds, and must not hand out the entry being handled twice.
 */
static __thread bool draining;

static void cstat_add(uint64_t *c, uint64_t v)
{
	__atomic_fetch_add(c, v, __ATOMIC_RELAXED);
}

/* Does [@addr, @addr + @len) lie inside one zone?  Written so that no sum can wrap. */
static bool zone_has(const struct bus *b, uint64_t addr, uint32_t len)
{
	for (unsigned i = 0; i < b->nzones; i++) {
		const struct bus_zone *z = &b->zones[i];

		if (addr >= z->base && addr - z->base < z->len && len <= z->len - (addr - z->base))
			return true;
	}
	return false;
}

static bool entry_ok(const struct bus *b, const struct kvm_coalesced_mmio *e)
{
	/* KVM buffers single accesses of at most 8 bytes, never port I/O in an MMIO zone. */
	if (e->pio || !e->len || e->len > 8 || (e->len & (e->len - 1)))
		return false;
	return zone_has(b, e->phys_addr, e->len);
}

/*
 * With b->clock held.  The ring is written by KVM (at last) and by us (first); nothing in it
 * is trusted: the indices are checked against the ring's size, every entry against the
 * zones, and an entry is copied out before it is looked at.  @first moves on only once the
 * write was handled, so a thread that sees the ring empty (bus_coalesce_drain's check) knows
 * every buffered write has landed, not merely been taken.
 */
static void drain_locked(struct bus *b)
{
	struct kvm_coalesced_mmio_ring *r = b->ring;
	uint32_t first, last;

	if (!r)
		return;
	first = __atomic_load_n(&r->first, __ATOMIC_RELAXED);
	last = __atomic_load_n(&r->last, __ATOMIC_ACQUIRE); /* entries before last are written */
	if (first >= b->ring_max || last >= b->ring_max) {
		static bool told;

		cstat_add(&b->cstats.dropped, 1);
		if (!told) {
			told = true;
			log_warn("coalesced MMIO ring indices out of range (first %u, last %u, "
				 "size %u): buffered writes dropped",
				 first, last, b->ring_max);
		}
		/* KVM refuses to buffer with a bad last; a bad first is ours to put right. */
		if (last < b->ring_max)
			__atomic_store_n(&r->first, last, __ATOMIC_RELEASE);
		return;
	}
	if (first == last)
		return;
	cstat_add(&b->cstats.drains, 1);
	draining = true;
	/* Only what was there when we looked: a guest writing on does not keep us here. */
	while (first != last) {
		struct kvm_coalesced_mmio e;

		memcpy(&e, &r->coalesced_mmio[first], sizeof(e));
		if (entry_ok(b, &e)) {
			bus_access(b, e.phys_addr, e.data, e.len, true);
			cstat_add(&b->cstats.writes, 1);
		} else {
			cstat_add(&b->cstats.dropped, 1);
		}
		first = (first + 1) % b->ring_max;
		__atomic_store_n(&r->first, first, __ATOMIC_RELEASE);
	}
	draining = false;
}

void bus_coalesce_drain(struct bus *b)
{
	struct kvm_coalesced_mmio_ring *r = __atomic_load_n(&b->ring, __ATOMIC_ACQUIRE);

	if (!r || draining)
		return;
	/* The common case, on every vCPU exit: nothing buffered, no lock. */
	if (__atomic_load_n(&r->first, __ATOMIC_ACQUIRE) ==
	    __atomic_load_n(&r->last, __ATOMIC_ACQUIRE))
		return;
	pthread_mutex_lock(&b->clock);
	drain_locked(b);
	pthread_mutex_unlock(&b->clock);
}

int bus_coalesce_attach(struct bus *b, int vm_fd, struct kvm_coalesced_mmio_ring *ring,
			unsigned max)
{
	if (!ring || !max)
		return -EINVAL;
	pthread_mutex_lock(&b->clock);
	b->ring_fd = vm_fd;
	b->ring_max = max;
	__atomic_store_n(&b->ring, ring, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&b->clock);
	return 0;
}

void bus_coalesce_detach(struct bus *b)
{
	pthread_mutex_lock(&b->clock);
	drain_locked(b);
	__atomic_store_n(&b->ring, NULL, __ATOMIC_RELEASE);
	b->nzones = 0;
	__atomic_store_n(&b->cstats.zones, 0, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&b->clock);
}

static int zone_ioctl(struct bus *b, unsigned long req, uint64_t base, uint64_t len)
{
	struct kvm_coalesced_mmio_zone z = { .addr = base, .size = (uint32_t)len };

	if (b->ring_fd < 0)
		return 0; /* a ring without KVM (unit tests): the zone is only recorded */
	return ioctl(b->ring_fd, req, &z) < 0 ? -errno : 0;
}

int bus_coalesce_add(struct bus *b, uint64_t base, uint64_t len)
{
	bool nested = draining;
	int ret = 0;

	if (!len || len > UINT32_MAX || base + len < base)
		return -EINVAL;
	if (!nested)
		pthread_mutex_lock(&b->clock);
	if (!b->ring) {
		ret = -ENODEV;
		goto out;
	}
	if (b->nzones == b->zcap) {
		unsigned cap = b->zcap ? b->zcap * 2 : 16;
		struct bus_zone *z = realloc(b->zones, cap * sizeof(*z));

		if (!z) {
			ret = -ENOMEM;
			goto out;
		}
		b->zones = z;
		b->zcap = cap;
	}
	ret = zone_ioctl(b, KVM_REGISTER_COALESCED_MMIO, base, len);
	if (!ret) {
		b->zones[b->nzones++] = (struct bus_zone){ base, len };
		__atomic_store_n(&b->cstats.zones, b->nzones, __ATOMIC_RELAXED);
	}
out:
	if (!nested)
		pthread_mutex_unlock(&b->clock);
	return ret;
}

void bus_coalesce_del(struct bus *b, uint64_t base, uint64_t len)
{
	bool nested = draining;
	unsigned i;

	if (!nested)
		pthread_mutex_lock(&b->clock);
	for (i = 0; i < b->nzones; i++)
		if (b->zones[i].base == base && b->zones[i].len == len)
			break;
	if (i < b->nzones) {
		zone_ioctl(b, KVM_UNREGISTER_COALESCED_MMIO, base, len);
		b->zones[i] = b->zones[--b->nzones];
		__atomic_store_n(&b->cstats.zones, b->nzones, __ATOMIC_RELAXED);
	}
	if (!nested)
		pthread_mutex_unlock(&b->clock);
}

void bus_coalesce_get_stats(struct bus *b, struct bus_coalesce_stats *out)
{
	out->writes = __atomic_load_n(&b->cstats.writes, __ATOMIC_RELAXED);
	out->drains = __atomic_load_n(&b->cstats.drains, __ATOMIC_RELAXED);
	out->dropped = __atomic_load_n(&b->cstats.dropped, __ATOMIC_RELAXED);
	out->zones = __atomic_load_n(&b->cstats.zones, __ATOMIC_RELAXED);
}

unsigned bus_zones_split(uint64_t len, const struct bus_zone *holes, unsigned nholes,
			 struct bus_zone *out, unsigned max)
{
	uint64_t at = 0;
	unsigned n = 0;

	while (at < len) {
		const struct bus_zone *next = NULL;
		uint64_t end, hend = 0;

		/* The lowest hole that still reaches past @at. */
		for (unsigned i = 0; i < nholes; i++) {
			const struct bus_zone *h = &holes[i];
			uint64_t e = h->base + h->len < h->base ? UINT64_MAX : h->base + h->len;

			if (!h->len || e <= at || (next && h->base >= next->base))
				continue;
			next = h;
			hend = e;
		}
		end = next && next->base < len ? next->base : len;
		if (end > at) {
			if (n < max)
				out[n] = (struct bus_zone){ at, end - at };
			n++;
		}
		if (!next || next->base >= len)
			break;
		at = hend > at ? hend : at;
	}
	return n;
}

uint64_t io_get(const void *data, unsigned size)
{
	const uint8_t *p = data;
	uint64_t v = 0;

	for (unsigned i = 0; i < size && i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

void io_put(void *data, unsigned size, uint64_t v)
{
	uint8_t *p = data;

	for (unsigned i = 0; i < size && i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
