/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Guest memory in snapshots.
 *
 * Saving writes only pages the guest has touched and that are not all zero; the rest stay
 * holes in a sparse file.  Touched pages are found from /proc/self/pagemap, which reads page
 * table flags and never faults a guest page in.  A VM that was itself restored maps its memory
 * from the old file: there, a page counts as touched when the guest wrote it since (an
 * anonymous copy-on-write page) or when the old file holds data for it.
 *
 * Restoring maps each region of the file MAP_PRIVATE: nothing is read until the guest touches
 * it, so restore time does not grow with memory size (unless -o snapshot.prefetch= asks a
 * thread to bring the saved pages in meanwhile: snap/prefetch.h).
 */
#ifndef KHYVE_SNAP_MEMORY_H
#define KHYVE_SNAP_MEMORY_H

#include "snap/format.h"
#include "snap/snapshot.h"

struct vm;

/* Where a restored VM's memory comes from, to find its data when it is saved again. */
struct mem_backing {
	int fd; /* the snapshot file, kept open; -1 for anonymous RAM */
	unsigned nextents;
	struct snap_extent *extents;	/* data extents of that file */
	uint64_t region_file_offset[2]; /* where each region sits in it */
};

/* Write every touched, non-zero page; fills @f's regions and extents for the memmap. */
int snap_memory_save(struct vm *vm, struct snap_writer *w, const struct mem_backing *backing,
		     struct snap_file *map, const struct snap_save_opts *opts,
		     struct snap_result *res, char *err, size_t errlen);
/* The memory area of a snapshot of @vm: all of its RAM regions, back to back, in bytes. */
uint64_t snap_memory_size(const struct vm *vm);
/* How many bytes of guest memory a save would store at most (touched pages, zero ones too). */
int snap_memory_touched(struct vm *vm, const struct mem_backing *backing, uint64_t *bytes);
/*
 * The touched pages as a bitmap in snap/dirty.h numbering (bits set in @bitmap, which the
 * caller cleared; NULL to count only), their number in @pages.  Reads page tables only: no
 * guest page is faulted.
 */
int snap_memory_touched_bitmap(struct vm *vm, const struct mem_backing *backing, uint64_t *bitmap,
			       uint64_t *pages);
/* Open /proc/self/pagemap now and keep it, for saves after khyve gave up root. */
void snap_memory_keep_pagemap(void);
/* /proc/self/pagemap (the descriptor kept before khyve gave up root, duplicated), or -1. */
int snap_memory_pagemap_open(void);
/* Is this 4 KiB page all zero? */
bool snap_page_is_zero(const void *page);
/*
 * An incremental save: the pages set in @dirty (snap/dirty.h numbering), each written even if
 * it is zero; fills @map's regions and extents.
 */
int snap_memory_save_dirty(struct vm *vm, struct snap_writer *w, const uint64_t *dirty,
			   struct snap_file *map, const struct snap_save_opts *opts,
			   struct snap_result *res, char *err, size_t errlen);
/* Map the snapshot's regions into @vm (lazily) and register them with KVM. */
int snap_memory_map(struct vm *vm, const struct snap_file *f, char *err, size_t errlen);
/*
 * The same for a chain (snap/chain.h): the base's regions, and over them each run of pages
 * from the link that holds its newest copy; all private and lazy.
 */
struct snap_chain;
int snap_memory_map_chain(struct vm *vm, const struct snap_chain *c, char *err, size_t errlen);

#endif
