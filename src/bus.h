/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Port-I/O and MMIO dispatch.  A vCPU exit is routed to the range that contains the address;
 * an address nobody claims reads as all-ones and ignores writes, as on a PC.  Ranges may be
 * added and removed while vCPUs run (PCI BAR moves), so lookups take a read lock.
 */
#ifndef KHYVE_BUS_H
#define KHYVE_BUS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/*
 * @offset is relative to the range's base; @data holds @size bytes (1, 2, 4 or 8) in guest
 * byte order (little endian).  On a read the handler fills @data.
 */
typedef void (*bus_io_fn)(void *opaque, uint64_t offset, void *data, unsigned size, bool is_write);

struct bus_range {
	uint64_t base, len;
	bus_io_fn fn;
	void *opaque;
};

struct bus {
	pthread_rwlock_t lock;
	struct bus_range *ranges; /* sorted by base, never overlapping */
	unsigned n, cap;
};

void bus_init(struct bus *b);
void bus_destroy(struct bus *b);
/* Returns -EEXIST when the range overlaps one already registered. */
int bus_register(struct bus *b, uint64_t base, uint64_t len, bus_io_fn fn, void *opaque);
int bus_unregister(struct bus *b, uint64_t base);
/* Returns true when a device claimed the access. */
bool bus_access(struct bus *b, uint64_t addr, void *data, unsigned size, bool is_write);

/* Little-endian helpers for handlers. */
uint64_t io_get(const void *data, unsigned size);
void io_put(void *data, unsigned size, uint64_t v);

#endif
