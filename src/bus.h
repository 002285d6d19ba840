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

/*
 * Access counts of one handler (fn, opaque) for khyvectl --get-stats.  They outlive the range:
 * a PCI BAR that moves keeps counting in the same record.  @owner is the device instance
 * ("uart@com1"), @what the region ("bar0"); both may be empty until named.  The counters are
 * updated with relaxed atomics by vCPU threads and read while the VM runs.
 */
struct bus_stats {
	bus_io_fn fn;
	void *opaque;
	char owner[48], what[16];
	uint64_t base, len; /* where it was last registered */
	uint64_t reads, writes, bytes;
	struct bus_stats *next;
};

struct bus_range {
	uint64_t base, len;
	bus_io_fn fn;
	void *opaque;
	struct bus_stats *st;
};

struct bus {
	pthread_rwlock_t lock;
	struct bus_range *ranges; /* sorted by base, never overlapping */
	unsigned n, cap;
	struct bus_stats *stats; /* one per handler ever registered, newest first */
};

void bus_init(struct bus *b);
void bus_destroy(struct bus *b);
/* Returns -EEXIST when the range overlaps one already registered. */
int bus_register(struct bus *b, uint64_t base, uint64_t len, bus_io_fn fn, void *opaque);
int bus_unregister(struct bus *b, uint64_t base);
/* Returns true when a device claimed the access. */
bool bus_access(struct bus *b, uint64_t addr, void *data, unsigned size, bool is_write);

/* Name the records of handlers registered so far without an owner (vm_add_dev does this). */
void bus_stats_claim(struct bus *b, const char *owner);
/* Name the record of handler @opaque (a PCI BAR, registered after its device was added). */
void bus_stats_name(struct bus *b, const void *opaque, const char *owner, const char *what);
/* Call @fn for each record with a snapshot of its counts, in registration order. */
void bus_stats_foreach(struct bus *b, void (*fn)(const struct bus_stats *st, void *arg), void *arg);

/* Little-endian helpers for handlers. */
uint64_t io_get(const void *data, unsigned size);
void io_put(void *data, unsigned size, uint64_t v);

#endif
