// SPDX-License-Identifier: BSD-2-Clause
/*
 * Snapshot chains (snap/chain.c) with host failures injected (tests/faultinj.h).  The links are written as
 * test_chain.c writes them (base: pages 0-9 'A'; l1: pages 2-3 'B'; l2, the tip: page 3 'C').
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "faultinj.h"
#include "snap/chain.h"
#include "snap/format.h"
#include "sstream.h"

#define MEM (1ULL << 20) /* 256 pages */
#define NPAGES (MEM / 4096)

static char dir[64];

static int setup(void **state)
{
	fi_reset();
	snprintf(dir, sizeof(dir), "/tmp/khyve-chainf-XXXXXX");
	assert_non_null(mkdtemp(dir));
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
	return 0;
}

static const char *at(const char *name)
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
static void write_link(const char *name, const struct snap_parent *parent, uint64_t first,
		       uint64_t n, uint8_t fill, uint8_t id[SNAP_ID_BYTES])
{
	struct snap_file map = { .nregions = 1 };
	struct snap_writer w;
	struct snap_parent p;
	struct sstream s;
	uint8_t page[4096];
	char err[256];

	memset(page, fill, sizeof(page));
	assert_int_equal(snap_writer_open(&w, at(name), MEM, err, sizeof(err)), 0);
	map.regions[0] = (struct snap_region){ 0, MEM, w.mem_offset };
	map.extents = calloc(n ? n : 1, sizeof(*map.extents));
	for (uint64_t i = 0; i < n; i++) {
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
	ss_init_save(&s);
	snap_memmap_io(&s, &map);
	assert_int_equal(snap_writer_section(&w, SNAP_SEC_MEMMAP, "memory", 1, s.buf, s.len), 0);
	ss_free(&s);
	free(map.extents);
	assert_int_equal(snap_writer_commit(&w, err, sizeof(err)), 0);
	memcpy(id, w.id, SNAP_ID_BYTES);
}

static struct snap_parent parent_of(const char *name, const uint8_t id[SNAP_ID_BYTES],
				    uint32_t depth)
{
	struct snap_parent p = { .depth = depth };

	snprintf(p.name, sizeof(p.name), "%s", name);
	memcpy(p.id, id, SNAP_ID_BYTES);
	return p;
}

/* base: pages 0-9 'A'; l1: pages 2-3 'B'; l2 (tip): page 3 'C' and page 5 zero. */
static void write_three(void)
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
 * The chain's first allocation failing: refused with a message (it returned -ENOMEM with an
 * empty one, and khyve printed "khyve: " and nothing).
 */
static void test_first_allocation(void **state)
{
	struct snap_chain c;
	struct snap_file f;
	char err[600];
	char msg[300];

	(void)state;
	write_three();
	assert_int_equal(snap_file_open(&f, at("l2.snap"), true, err, sizeof(err)), 0);
	for (unsigned n = 1; n <= 2; n++) {
		err[0] = 0;
		fi_fail(FI_REALLOC, n, ENOMEM);
		assert_int_equal(snap_chain_open(&c, &f, at("l2.snap"), true, err, sizeof(err)),
				 -ENOMEM);
		assert_true(fi_all_fired());
		fi_reset();
		snprintf(msg, sizeof(msg), "snapshot %s: its chain: Cannot allocate memory",
			 at("l2.snap"));
		assert_string_equal(err, msg);
		assert_int_equal(c.nlinks, 0);
	}
	snap_file_close(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_first_allocation, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
