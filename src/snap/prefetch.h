/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Background prefetch of a restored VM's memory (-o snapshot.prefetch=).
 *
 * A restore maps guest RAM as a private mapping of the snapshot file (snap/memory.h), so each
 * page the guest touches first costs a fault that reads it from the file, and a write then
 * copies it.  A prefetch thread walks the file's data extents in file order, a chunk at a
 * time, and does that work ahead of the guest:
 *   willneed  MADV_WILLNEED: reads the file into the page cache, maps nothing;
 *   read      MADV_POPULATE_READ: maps the file's pages read-only (still shared through the
 *             page cache: clones keep sharing; a guest write still copies);
 *   write     MADV_POPULATE_WRITE: makes every saved page a private copy now, as QEMU's eager
 *             load does (no fault left for a writer; the copies are this VM's alone, so
 *             clones no longer share them, and dirty tracking counts them as written).
 * Holes (pages the snapshot does not hold) are never touched.  None of them changes what the
 * guest sees: a populated page holds the file's bytes, as the guest's own fault would.
 *
 * The thread stops for good, within one chunk, when the VM pauses (a checkpoint, live or not,
 * a migration, khyvectl --pause) or ends: snap_prefetch_stop.
 */
#ifndef KHYVE_SNAP_PREFETCH_H
#define KHYVE_SNAP_PREFETCH_H

#include <stdbool.h>
#include <stdint.h>

struct vm;
struct snap_prefetch;

enum snap_prefetch_mode {
	SNAP_PREFETCH_OFF,
	SNAP_PREFETCH_WILLNEED,
	SNAP_PREFETCH_READ,
	SNAP_PREFETCH_WRITE,
};

#define SNAP_PREFETCH_DEFAULT "off"
#define SNAP_PREFETCH_CHUNK (2ULL << 20) /* populated at a time, between looks at the stop flag */

/* One run of guest memory to prefetch, in khyve's mapping. */
struct snap_prefetch_range {
	uint8_t *hva;
	uint64_t len;
};

/* "off", "willneed", "read" or "write"; -EINVAL for anything else. */
int snap_prefetch_parse(const char *s, enum snap_prefetch_mode *mode);
const char *snap_prefetch_name(enum snap_prefetch_mode mode);

/*
 * Start a thread that prefetches @n ranges (copied) in order with @mode.  OFF, or no ranges:
 * *@out is NULL and nothing runs.  Returns 0 or a negative errno.
 */
int snap_prefetch_start(enum snap_prefetch_mode mode, const struct snap_prefetch_range *r,
			unsigned n, struct snap_prefetch **out);
/* Wait until @p has gone through every range (or was stopped). */
void snap_prefetch_wait(struct snap_prefetch *p);
/* Bytes prefetched so far; has it gone through every range? */
uint64_t snap_prefetch_bytes(const struct snap_prefetch *p);
bool snap_prefetch_finished(const struct snap_prefetch *p);
/* Stop the thread within one chunk, wait for it and free @p (NULL: nothing). */
void snap_prefetch_stop(struct snap_prefetch *p);

/*
 * A restored VM: prefetch the pages its snapshot holds (vm->backing's extents), into
 * vm->prefetch.  snap_prefetch_vm_stop stops it for good (any pause, the VM's end).
 */
int snap_prefetch_vm(struct vm *vm, enum snap_prefetch_mode mode);
void snap_prefetch_vm_stop(struct vm *vm);

#endif
