// SPDX-License-Identifier: BSD-2-Clause
/* Port-I/O and MMIO dispatch: a sorted array searched by bisection under a read lock. */
#include "bus.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void bus_init(struct bus *b)
{
	memset(b, 0, sizeof(*b));
	pthread_rwlock_init(&b->lock, NULL);
}

void bus_destroy(struct bus *b)
{
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

int bus_register(struct bus *b, uint64_t base, uint64_t len, bus_io_fn fn, void *opaque)
{
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
	b->ranges[i] = (struct bus_range){ base, len, fn, opaque };
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
	return true;
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
