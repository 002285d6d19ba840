/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Live checkpoints by pre-copy into the file (snap/livecopy.c), for a VM whose RAM the
 * write-protect method of snap/live.h cannot protect: one restored from a snapshot, whose RAM
 * is a private mapping of that file.
 *
 *	round 1     every touched page, written to its place in the memory area while the
 *	            guest runs (page tables tell; an untouched page is never read)
 *	round n     the pages written during round n-1 (snap/dirty.h), rewritten in place
 *	convergence after each round, mig_converge (snap/precopy.h) decides, as for a migration
 *	final       the VM paused: one harvest, those pages written straight from guest memory
 *	            (snap_livecopy_final); the caller saves vCPU, device and VM state meanwhile
 *	finish      the guest runs: the extents and checksums of the memory map, over what the
 *	            file holds now
 *
 * The file is laid out as any snapshot: each page at its offset in the memory area, the
 * memory map listing the data extents with their checksums.  Every page in it holds what the
 * guest had at the final pause: a page the guest wrote after its last copy began is in a later
 * harvest (at the latest the final one) and is copied again.  The extents of round 1 keep the
 * checksums computed when they were written; a 256 KiB stretch with a page copied again has
 * its extents made anew from the file's bytes at the end (the only reads), and its pages that
 * ended all zero become holes again.
 */
#ifndef KHYVE_SNAP_LIVECOPY_H
#define KHYVE_SNAP_LIVECOPY_H

#include <stddef.h>
#include <stdint.h>

#include "snap/format.h"
#include "snap/precopy.h"
#include "snap/snapshot.h"

struct vm;
struct snap_livecopy;

/*
 * The budget for the final pause's memory writes: a file takes the last pages into the page
 * cache far faster than the rounds' direct writes reached the disk (which the estimate is
 * made from), and a checkpoint's pause is what its caller notices, so it is aimed lower than
 * a migration's MIG_DEFAULT_DOWNTIME_MS.  The rounds' other limits are a migration's.
 */
#define SNAP_LIVECOPY_DOWNTIME_MS 2

/*
 * The default policy: that budget for the last pages alone (no hand-over to a destination),
 * a migration's rounds and stall rule, and no throttling: a checkpoint never slows the guest
 * down, at worst its pause is longer.
 */
static inline struct mig_policy snap_livecopy_policy(void)
{
	return (struct mig_policy){ .max_downtime_ns = SNAP_LIVECOPY_DOWNTIME_MS * 1000000ULL,
				    .max_rounds = MIG_DEFAULT_ROUNDS,
				    .stall_rounds = MIG_STALL_ROUNDS };
}

/*
 * Start tracking @vm's writes (a dirty-page client) for a live checkpoint into @w; nothing is
 * written yet.  On failure nothing tracks for it and @err says why.
 */
int snap_livecopy_new(struct vm *vm, struct snap_writer *w, const struct mig_policy *p,
		      struct snap_livecopy **out, char *err, size_t errlen);
/*
 * The rounds, on a thread of their own, while the guest runs; @rounds_done(@opaque) runs on
 * it when they end (or failed).  The thread then waits for snap_livecopy_continue, and once
 * the memory map is made runs @written(@opaque) (snap_livecopy_result has it).
 */
int snap_livecopy_start(struct snap_livecopy *c, void (*rounds_done)(void *),
			void (*written)(void *), void *opaque);
/* After @rounds_done: how the rounds went (@err says what failed). */
int snap_livecopy_rounds_result(struct snap_livecopy *c, char *err, size_t errlen);
/* The VM paused, after the rounds: the pages still dirty go to the file (counted in @res). */
int snap_livecopy_final(struct snap_livecopy *c, struct snap_result *res, char *err, size_t errlen);
/* The guest runs again: the thread makes the memory map, then @written. */
void snap_livecopy_continue(struct snap_livecopy *c);
/* Make the thread stop at its next page (its result is then -ECANCELED). */
void snap_livecopy_cancel(struct snap_livecopy *c);
/*
 * From @written: the result (@err says what failed); on success @map's regions and extents
 * (sorted; the caller frees extents) and @res's counts.
 */
int snap_livecopy_result(struct snap_livecopy *c, struct snap_file *map, struct snap_result *res,
			 char *err, size_t errlen);
/* Stop or join the thread, end the dirty-page client, free @c (any time after new). */
void snap_livecopy_free(struct snap_livecopy *c);

/*
 * The memory map's extents of one stretch of the memory area, from the bytes the file holds
 * there (@buf, @len bytes at area offset @off): runs of pages not all zero, each run at most
 * SNAP_EXTENT_MAX and never across a multiple of it (file offsets are @file_off + area
 * offset).  @zero(@opaque, area offset, len) gets each run of zero pages.  Appends to @e
 * (@n used, @cap allocated); separable for the unit tests.
 */
int snap_livecopy_extents(const uint8_t *buf, uint64_t off, uint64_t len, uint64_t file_off,
			  struct snap_extent **e, unsigned *n, unsigned *cap,
			  void (*zero)(void *opaque, uint64_t off, uint64_t len), void *opaque);

#endif
