// SPDX-License-Identifier: BSD-2-Clause
/*
 * Snapshot chains written by hand for the chain tests (test_chain, test_chain_faults): links
 * of MEM bytes of guest memory in the directory @dir (each test makes it), with the pages,
 * fill bytes and parents a test asks for.
 */
#ifndef KHYVE_TESTS_CHAINLINKS_H
#define KHYVE_TESTS_CHAINLINKS_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "snap/chain.h"
#include "snap/format.h"
#include "sstream.h"

#include "snapwrite.h"

#define MEM (1ULL << 20) /* 256 pages */
#define NPAGES (MEM / 4096)

static char dir[64];

static inline const char *at(const char *name)
{
	static char p[8][256];
	static unsigned n;
	char *s = p[n++ % 8];

	snprintf(s, 256, "%s/%s", dir, name);
	return s;
}

/*
 * A link at @name: pages from @first for @n pages, each filled with @fill (0 writes zero
 * pages, as an incremental save does for a dirtied page that is zero).  With @parent, an
 * incremental one.  Returns its identity in @id.
 */
static inline void write_link_fills(const char *name, const struct snap_parent *parent,
				    uint64_t first, uint64_t n, const uint8_t *fills,
				    uint8_t id[SNAP_ID_BYTES]);

static inline void write_link(const char *name, const struct snap_parent *parent, uint64_t first,
			      uint64_t n, uint8_t fill, uint8_t id[SNAP_ID_BYTES])
{
	uint8_t *fills = malloc(n ? n : 1);

	memset(fills, fill, n);
	write_link_fills(name, parent, first, n, fills, id);
	free(fills);
}

/* As write_link, page first + i filled with fills[i]. */
static inline void write_link_fills(const char *name, const struct snap_parent *parent,
				    uint64_t first, uint64_t n, const uint8_t *fills,
				    uint8_t id[SNAP_ID_BYTES])
{
	struct snap_file map = { .nregions = 1 };
	struct snap_writer w;
	struct snap_parent p;
	struct sstream s;
	uint8_t page[4096];
	char err[256];

	assert_int_equal(snap_writer_open(&w, at(name), MEM, err, sizeof(err)), 0);
	map.regions[0] = (struct snap_region){ 0, MEM, w.mem_offset };
	map.extents = calloc(n ? n : 1, sizeof(*map.extents));
	for (uint64_t i = 0; i < n; i++) {
		memset(page, fills[i], sizeof(page));
		assert_int_equal(snap_writer_memory(&w, (first + i) * 4096, page, 4096), 0);
		map.extents[map.nextents++] = (struct snap_extent){
			w.mem_offset + (first + i) * 4096, 4096, snap_checksum(page, 4096)
		};
	}
	assert_int_equal(snap_writer_section(&w, SNAP_SEC_META, "meta", 1, "{}", 2), 0);
	if (parent) {
		p = *parent;
		ss_init_save(&s);
		snap_parent_io(&s, &p);
		assert_int_equal(snap_writer_section(&w, SNAP_SEC_CHAIN, "chain", 1, s.buf, s.len),
				 0);
		ss_free(&s);
	}
	snapwrite_memmap_commit(&w, &map);
	free(map.extents);
	memcpy(id, w.id, SNAP_ID_BYTES);
}

static inline struct snap_parent parent_of(const char *name, const uint8_t id[SNAP_ID_BYTES],
					   uint32_t depth)
{
	struct snap_parent p = { .depth = depth };

	snprintf(p.name, sizeof(p.name), "%s", name);
	memcpy(p.id, id, SNAP_ID_BYTES);
	return p;
}

/* base: pages 0-9 'A'; l1: pages 2-3 'B'; l2 (tip): page 3 'C' and page 5 zero. */
static inline void write_three(void)
{
	uint8_t id[SNAP_ID_BYTES];
	struct snap_parent p;

	write_link("base.snap", NULL, 0, 10, 'A', id);
	p = parent_of("base.snap", id, 1);
	write_link("l1.snap", &p, 2, 2, 'B', id);
	p = parent_of("l1.snap", id, 2);
	write_link("l2.snap", &p, 3, 1, 'C', id);
}

/*
 * The pages write_three's chain @c (opened from its tip @f) holds, 0-9, are one extent at the
 * start of @f's memory; then close both.
 */
static inline void check_three_extents_close(struct snap_chain *c, struct snap_file *f)
{
	struct snap_extent *e = NULL;
	unsigned n = 99;

	assert_int_equal(snap_chain_data_extents(c, &e, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(e[0].file_offset, f->mem_offset);
	assert_int_equal(e[0].length, 10 * 4096);
	free(e);
	snap_chain_close(c);
	snap_file_close(f);
}

#endif
