/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Port-I/O and MMIO dispatch.  A vCPU exit is routed to the range that contains the address;
 * an address nobody claims reads as all-ones and ignores writes, as on a PC.  Ranges may be
 * added and removed while vCPUs run (PCI BAR moves), so lookups take a read lock.
 */
#ifndef KHYVE_BUS_H
#define KHYVE_BUS_H

#include <linux/kvm.h>
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

/* An address range: a coalesced zone, or a hole in one (bus_zones_split). */
struct bus_zone {
	uint64_t base, len;
};

/* Counts of the coalesced ring, for khyvectl --get-stats (read with relaxed atomics). */
struct bus_coalesce_stats {
	uint64_t writes;  /* buffered writes handed to their handlers */
	uint64_t drains;  /* drains that found the ring not empty */
	uint64_t dropped; /* entries refused (malformed, or for a zone since removed) */
	unsigned zones;	  /* zones registered now */
};

struct bus {
	pthread_rwlock_t lock;
	struct bus_range *ranges; /* sorted by base, never overlapping */
	unsigned n, cap;
	struct bus_stats *stats; /* one per handler ever registered, newest first */

	/* Coalesced writes: the ring, its zones, and the lock that keeps drains in order. */
	pthread_mutex_t clock;
	struct kvm_coalesced_mmio_ring *ring; /* NULL: no coalescing */
	unsigned ring_max;		      /* entries in the ring */
	int ring_fd;			      /* the VM for (UN)REGISTER_COALESCED_MMIO, or -1 */
	struct bus_zone *zones;		      /* registered with KVM, unsorted */
	unsigned nzones, zcap;
	struct bus_coalesce_stats cstats;
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

/*
 * Coalesced writes.  bus_coalesce_attach gives the bus KVM's ring (@max entries; @vm_fd -1:
 * zones are only recorded, as unit tests do with a ring of their own); detach drains it and
 * forgets it (before the vCPU mapping it lives in goes).  bus_coalesce_add registers a zone:
 * -ENODEV without a ring, or KVM's error; the caller then simply goes on taking exits.
 * bus_coalesce_del unregisters one without draining (it is called with PCI locks held, which
 * handlers take): what is still buffered for it is dropped at the next drain.  That loses
 * nothing a guest could rely on: the configuration write that moves a BAR came through an
 * exit, which drained every write made before it; only a write another vCPU makes while the
 * BAR moves, a race on hardware too, can be dropped.  A zone must lie inside one registered
 * range, whose handler must not add or remove ranges itself.
 */
int bus_coalesce_attach(struct bus *b, int vm_fd, struct kvm_coalesced_mmio_ring *ring,
			unsigned max);
void bus_coalesce_detach(struct bus *b);
int bus_coalesce_add(struct bus *b, uint64_t base, uint64_t len);
void bus_coalesce_del(struct bus *b, uint64_t base, uint64_t len);
/*
 * Hand every buffered write to its handler, oldest first (under the bus's coalesce lock:
 * two threads draining never reorder writes).  An entry outside every zone, of a size other
 * than 1, 2, 4 or 8, or a ring index out of range is counted and dropped.
 * Cheap when the ring is empty (no lock taken).  Callers hold no device lock: the handlers
 * take theirs.  A handler that drains again (nested) returns at once.
 */
void bus_coalesce_drain(struct bus *b);
void bus_coalesce_get_stats(struct bus *b, struct bus_coalesce_stats *out);
/*
 * The zones of [0, @len) that avoid every hole of @holes (sorted or not, may overlap or
 * reach past @len), in address order, into @out (at most @max).  Returns how many zones there
 * are (which may be more than @max: then only @max were written).
 */
unsigned bus_zones_split(uint64_t len, const struct bus_zone *holes, unsigned nholes,
			 struct bus_zone *out, unsigned max);

/* Little-endian helpers for handlers. */
uint64_t io_get(const void *data, unsigned size);
void io_put(void *data, unsigned size, uint64_t v);

#endif
