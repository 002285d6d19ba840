/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Snapshot chains (snap/chain.c): an incremental snapshot holds the pages written since its
 * parent was taken and names that parent in its chain section (snap/format.h, struct
 * snap_parent); the parent may be incremental too, down to a full snapshot, the base.
 *
 * Resolving a chain opens every link from the tip down.  Where a parent may be: only in the
 * tip's directory, by a plain file name (no path, no symbolic link, a regular file), so a
 * file cannot make khyve open anything else on the host; and it must be the file the child was
 * made from: its content identity (snap_file_identity) must be the one the child recorded, its
 * depth one less, its memory layout the same.  Anything else is refused naming the link.
 *
 * The page index is built once: for each page of the memory area, the link that holds its
 * newest copy (or none: the page is zero).  Restore maps runs of pages from their link
 * (snap/memory.c), so a chain of 100 links costs one pass over the extents, not a walk per page.
 */
#ifndef KHYVE_SNAP_CHAIN_H
#define KHYVE_SNAP_CHAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "snap/format.h"

#define SNAP_NO_LINK 0xffffu /* a page no link holds data for: it reads as zero */

struct snap_chain {
	unsigned nlinks;	 /* 1 for a full snapshot */
	struct snap_file **file; /* [0] the tip (the caller's), [nlinks - 1] the full base */
	char **name;		 /* each link's path as shown to the user */
	uint64_t npages;	 /* pages of the memory area */
	uint16_t *owner;	 /* per page: the index of its newest link, or SNAP_NO_LINK */
};

/*
 * Open the parents of @tip (opened from @tip_path by the caller, who keeps it) and build the
 * page index.  With @verify_memory, every extent of a parent that still holds a page's newest
 * copy is checked against its checksum (the tip's are checked when it is opened).  On failure
 * @err says which link and why.
 */
int snap_chain_open(struct snap_chain *c, struct snap_file *tip, const char *tip_path,
		    bool verify_memory, char *err, size_t errlen);
void snap_chain_close(struct snap_chain *c);

/*
 * The run of pages starting at @page with the same owner, ending at a region boundary of the
 * memory area at the latest: returns its length in pages (0 at the end), sets *@link.
 */
uint64_t snap_chain_run(const struct snap_chain *c, uint64_t page, unsigned *link);

/*
 * The pages some link holds data for, as extents in the memory area's file offsets (each at
 * most SNAP_EXTENT_MAX, sorted): what a restored VM's memory maps from files.  Caller frees.
 */
int snap_chain_data_extents(const struct snap_chain *c, struct snap_extent **out, unsigned *n);

/* What a merge wrote. */
struct snap_merge_result {
	uint64_t bytes;	     /* data bytes written (memory and sections) */
	uint64_t mem_pages;  /* non-zero pages stored */
	uint64_t zero_pages; /* pages some link held that were zero: holes now */
	bool authenticated;  /* the output carries a MAC made with @key */
};

/*
 * Flatten @c into one full snapshot at @out (written atomically): the tip's state sections and,
 * for every page, its newest copy (zero pages become holes, as a full save makes them).  With
 * @key, the output is authenticated with it (the caller checked that the tip is).
 */
int snap_chain_merge(const struct snap_chain *c, const char *out, const uint8_t *key,
		     struct snap_merge_result *res, char *err, size_t errlen);

#endif
