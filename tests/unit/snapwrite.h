/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The last step of a snapshot file that a test writes itself with the real writer
 * (snap/format.h): its memory map section, then the commit, each asserted to succeed.  For
 * test_format, test_format_faults, test_chain, test_disks, test_memory, test_trust and
 * chainlinks.h.  Include after <cmocka.h>.
 */
#ifndef KHYVE_TESTS_SNAPWRITE_H
#define KHYVE_TESTS_SNAPWRITE_H

#include "snap/format.h"
#include "sstream.h"

/* Write @map (its regions and extents) as @w's memory map and commit the file. */
static inline void snapwrite_memmap_commit(struct snap_writer *w, struct snap_file *map)
{
	struct sstream s;
	char err[256];

	ss_init_save(&s);
	snap_memmap_io(&s, map);
	assert_int_equal(snap_writer_section(w, SNAP_SEC_MEMMAP, "memory", 1, s.buf, s.len), 0);
	ss_free(&s);
	assert_int_equal(snap_writer_commit(w, err, sizeof(err)), 0);
}

#endif
