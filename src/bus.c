// SPDX-License-Identifier: BSD-2-Clause
/* Port-I/O and MMIO dispatch: a sorted array searched by bisection under a read lock. */
#include "bus.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void bus_init(struct bus *b)
{
	memset(b, 0, sizeof(*b));
	pthread_rwlock_init(&b->lock, NULL);
}

void bus_destroy(struct bus *b)
{
	while (b->stats) {
		struct bus_stats *st = b->stats;

		b->stats = st->next;
		free(st);
	}
	free(b->ranges);
	pthread_rwlock_destroy(&b->lock);
	b->ranges = NULL;
	b->n = b->cap = 0;
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
