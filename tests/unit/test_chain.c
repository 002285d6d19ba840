// SPDX-License-Identifier: BSD-2-Clause
/*
 * Snapshot chains (snap/chain.c): resolving parents (missing, changed, a loop, too long, a name
 * that is a path or a symbolic link), the page index (each page from its newest link), the
 * data extents a restored VM's next save uses, and merge (the flat file holds the same pages).
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "chainlinks.h"
#include "snap/chain.h"
#include "snap/format.h"
#include "sstream.h"

#include "snapwrite.h"

static int setup(void **state)
{
	snprintf(dir, sizeof(dir), "/tmp/khyve-chain-XXXXXX");
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

static int open_chain(const char *name, struct snap_file *f, struct snap_chain *c, char *err,
		      size_t errlen)
{
	int ret = snap_file_open(f, at(name), true, err, errlen);

	if (ret)
		return ret;
	ret = snap_chain_open(c, f, at(name), true, err, errlen);
	if (ret)
		snap_file_close(f);
	return ret;
}

static void expect_refused(const char *name, int want, const char *msg1, const char *msg2)
{
	struct snap_chain c;
	struct snap_file f;
	char err[600] = "";
	int ret = open_chain(name, &f, &c, err, sizeof(err));

	if (!ret) {
		snap_chain_close(&c);
		snap_file_close(&f);
	}
	assert_int_equal(ret, want);
	if (!strstr(err, msg1) || (msg2 && !strstr(err, msg2)))
		fail_msg("error '%s' does not say '%s' / '%s'", err, msg1, msg2 ? msg2 : "");
}

static void test_flat(void **state)
{
	uint8_t id[SNAP_ID_BYTES];
	struct snap_chain c;
	struct snap_file f;
	unsigned link;
	char err[600];

	write_link("flat.snap", NULL, 4, 3, 'A', id);
	assert_int_equal(open_chain("flat.snap", &f, &c, err, sizeof(err)), 0);
	assert_int_equal(c.nlinks, 1);
	assert_int_equal(c.npages, NPAGES);
	assert_int_equal(snap_chain_run(&c, 0, &link), 4);
	assert_int_equal(link, SNAP_NO_LINK);
	assert_int_equal(snap_chain_run(&c, 4, &link), 3);
	assert_int_equal(link, 0);
	assert_int_equal(snap_chain_run(&c, 7, &link), NPAGES - 7);
	assert_int_equal(snap_chain_run(&c, NPAGES, &link), 0);
	snap_chain_close(&c);
	snap_file_close(&f);
}

static void test_index(void **state)
{
	struct snap_chain c;
	struct snap_file f;
	unsigned link;
	char err[600];
	/* Newest link of each of the first 11 pages: the tip is 0, the base 2. */
	static const uint16_t want[11] = { 2, 2, 1, 0, 2, 2, 2, 2, 2, 2, SNAP_NO_LINK };

	write_three();
	assert_int_equal(open_chain("l2.snap", &f, &c, err, sizeof(err)), 0);
	assert_int_equal(c.nlinks, 3);
	for (unsigned p = 0; p < 11; p++)
		assert_int_equal(c.owner[p], want[p]);
	for (uint64_t p = 11; p < NPAGES; p++)
		assert_int_equal(c.owner[p], SNAP_NO_LINK);
	assert_int_equal(snap_chain_run(&c, 0, &link), 2);
	assert_int_equal(link, 2);
	assert_int_equal(snap_chain_run(&c, 3, &link), 1);
	assert_int_equal(link, 0);
	assert_int_equal(snap_chain_run(&c, 4, &link), 6);
	assert_int_equal(link, 2);
	/* The pages some link holds: 0-9, one extent. */
	check_three_extents_close(&c, &f);
}

static void read_page(const char *name, uint64_t page, uint8_t *buf)
{
	int fd = open(at(name), O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, buf, 4096, (off_t)(SNAP_MEM_ALIGN + page * 4096)), 4096);
	close(fd);
}

static void test_merge(void **state)
{
	static const uint8_t want[11] = { 'A', 'A', 'B', 'C', 'A', 'A', 'A', 'A', 'A', 'A', 0 };
	struct snap_merge_result res;
	struct snap_chain c;
	struct snap_file f, m;
	uint8_t buf[4096], page[4096];
	char err[600];

	write_three();
	assert_int_equal(open_chain("l2.snap", &f, &c, err, sizeof(err)), 0);
	assert_int_equal(snap_chain_merge(&c, at("merged.snap"), NULL, &res, err, sizeof(err)), 0);
	assert_int_equal(res.mem_pages, 10);
	snap_chain_close(&c);
	snap_file_close(&f);
	assert_int_equal(snap_file_open(&m, at("merged.snap"), true, err, sizeof(err)), 0);
	assert_false(m.has_parent);
	assert_null(snap_file_find(&m, SNAP_SEC_CHAIN, "chain"));
	assert_non_null(snap_file_find(&m, SNAP_SEC_META, "meta"));
	snap_file_close(&m);
	for (unsigned p = 0; p < 11; p++) {
		read_page("merged.snap", p, buf);
		memset(page, want[p], sizeof(page));
		assert_memory_equal(buf, page, sizeof(page));
	}
}

/* A dirtied page that became zero is data in its link: it hides the parent's copy. */
static void test_zero_page_hides_parent(void **state)
{
	uint8_t id[SNAP_ID_BYTES], buf[4096], zero[4096] = { 0 };
	struct snap_merge_result res;
	struct snap_parent p;
	struct snap_chain c;
	struct snap_file f;
	char err[600];

	write_link("base.snap", NULL, 0, 4, 'A', id);
	p = parent_of("base.snap", id, 1);
	write_link("tip.snap", &p, 1, 1, 0, id);
	assert_int_equal(open_chain("tip.snap", &f, &c, err, sizeof(err)), 0);
	assert_int_equal(c.owner[1], 0);
	assert_int_equal(snap_chain_merge(&c, at("m.snap"), NULL, &res, err, sizeof(err)), 0);
	assert_int_equal(res.mem_pages, 3);
	assert_int_equal(res.zero_pages, 1);
	snap_chain_close(&c);
	snap_file_close(&f);
	read_page("m.snap", 1, buf);
	assert_memory_equal(buf, zero, sizeof(buf));
}

static void test_missing_parent(void **state)
{
	write_three();
	assert_int_equal(unlink(at("l1.snap")), 0);
	expect_refused("l2.snap", -ENOENT, "its parent", "l1.snap is missing");
}

static void test_changed_parent(void **state)
{
	uint8_t id[SNAP_ID_BYTES];

	write_three();
	/* Another file under the name of the middle link. */
	write_link("l1.snap", NULL, 2, 2, 'B', id);
	expect_refused("l2.snap", -ESTALE, "l1.snap has changed since it was taken", NULL);
}

static void test_loop(void **state)
{
	uint8_t id[SNAP_ID_BYTES] = { 0 };
	struct snap_parent p = parent_of("self.snap", id, 1);

	write_link("self.snap", &p, 0, 1, 'A', id);
	expect_refused("self.snap", -ELOOP, "the chain loops", "self.snap");
}

/* A full base.snap of page 0, and on it @name (page 0 too) saying it is at @depth. */
static void write_on_base(const char *name, uint32_t depth, uint8_t id[SNAP_ID_BYTES])
{
	struct snap_parent p;

	write_link("base.snap", NULL, 0, 1, 'A', id);
	p = parent_of("base.snap", id, depth);
	write_link(name, &p, 0, 1, 'B', id);
}

static void test_depth_mismatch(void **state)
{
	uint8_t id[SNAP_ID_BYTES];
	struct snap_parent p;

	write_on_base("l1.snap", 1, id);
	p = parent_of("l1.snap", id, 1); /* says its parent is a full snapshot: a lie */
	write_link("l2.snap", &p, 0, 1, 'C', id);
	expect_refused("l2.snap", -EINVAL, "chain depth 1 does not follow", NULL);
}

/* SNAP_CHAIN_MAX links resolve; the writer of one more would need a depth no reader takes. */
static void test_too_long(void **state)
{
	uint8_t id[SNAP_ID_BYTES];
	struct snap_parent p;
	struct snap_chain c;
	struct snap_file f;
	char name[32], prev[32], err[600];

	write_link("l0.snap", NULL, 0, 1, 'A', id);
	for (unsigned i = 1; i < SNAP_CHAIN_MAX; i++) {
		snprintf(prev, sizeof(prev), "l%u.snap", i - 1);
		snprintf(name, sizeof(name), "l%u.snap", i);
		p = parent_of(prev, id, i);
		write_link(name, &p, i % NPAGES, 1, (uint8_t)i, id);
	}
	assert_int_equal(open_chain(name, &f, &c, err, sizeof(err)), 0);
	assert_int_equal(c.nlinks, SNAP_CHAIN_MAX);
	assert_int_equal(c.owner[0], SNAP_CHAIN_MAX - 1);
	assert_int_equal(c.owner[SNAP_CHAIN_MAX - 1], 0);
	snap_chain_close(&c);
	snap_file_close(&f);
	p = parent_of(name, id, SNAP_CHAIN_MAX);
	write_link("over.snap", &p, 0, 1, 'Z', id);
	expect_refused("over.snap", -EINVAL, "chain depth 256 is out of range", NULL);
}

/* A parent is a file name in the tip's directory: no path, no symbolic link. */
static void test_parent_names(void **state)
{
	static const char *const bad[] = { "../x.snap", "/etc/passwd", "a/b", ".", "..", "a\nb" };
	uint8_t id[SNAP_ID_BYTES] = { 0 };
	struct snap_parent p;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		p = parent_of(bad[i], id, 1);
		write_link("tip.snap", &p, 0, 1, 'A', id);
		memset(id, 0, sizeof(id));
		expect_refused("tip.snap", -EINVAL, "is not a plain file name", NULL);
	}
	write_link("base.snap", NULL, 0, 1, 'A', id);
	assert_int_equal(symlink("base.snap", at("link.snap")), 0);
	p = parent_of("link.snap", id, 1);
	write_link("tip.snap", &p, 0, 1, 'B', id);
	expect_refused("tip.snap", -ELOOP, "link.snap is a symbolic link", NULL);
	/* A directory under the name. */
	assert_int_equal(mkdir(at("d.snap"), 0700), 0);
	p = parent_of("d.snap", id, 1);
	write_link("tip.snap", &p, 0, 1, 'B', id);
	expect_refused("tip.snap", -EINVAL, "d.snap is not a regular file", NULL);
}

static void test_layout_mismatch(void **state)
{
	struct snap_file map = { .nregions = 1 };
	uint8_t id[SNAP_ID_BYTES];
	struct snap_writer w;
	struct snap_parent p;
	char err[256];

	/* A base of twice the memory. */
	assert_int_equal(snap_writer_open(&w, at("big.snap"), 2 * MEM, err, sizeof(err)), 0);
	map.regions[0] = (struct snap_region){ 0, 2 * MEM, w.mem_offset };
	assert_int_equal(snap_writer_section(&w, SNAP_SEC_META, "meta", 1, "{}", 2), 0);
	snapwrite_memmap_commit(&w, &map);
	p = parent_of("big.snap", w.id, 1);
	write_link("tip.snap", &p, 0, 1, 'B', id);
	expect_refused("tip.snap", -EINVAL, "has another memory layout", NULL);
	/*
	 * The same size laid out otherwise: two regions where the tip has one, one region at
	 * another guest address, or two split at another place.  Each is refused: a page of
	 * one link would be another guest page in the other.
	 */
	{
		static const struct {
			unsigned n;
			struct snap_region r[2]; /* file offsets from the memory area */
		} other[] = {
			{ 2, { { 0, MEM / 2, 0 }, { 1ULL << 32, MEM / 2, MEM / 2 } } },
			{ 1, { { 1ULL << 20, MEM, 0 } } },
		};

		for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++) {
			map.nregions = other[i].n;
			assert_int_equal(snap_writer_open(&w, at("other.snap"), MEM, err,
							  sizeof(err)),
					 0);
			for (unsigned j = 0; j < other[i].n; j++) {
				map.regions[j] = other[i].r[j];
				map.regions[j].file_offset += w.mem_offset;
			}
			assert_int_equal(snap_writer_section(&w, SNAP_SEC_META, "meta", 1, "{}", 2),
					 0);
			snapwrite_memmap_commit(&w, &map);
			p = parent_of("other.snap", w.id, 1);
			write_link("tip2.snap", &p, 0, 1, 'B', id);
			expect_refused("tip2.snap", -EINVAL, "has another memory layout", NULL);
		}
	}
}

/* A parent whose memory the index still uses is checked; a corrupt page is refused. */
static void test_parent_memory_checked(void **state)
{
	int fd;

	write_three();
	fd = open(at("base.snap"), O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, "X", 1, (off_t)(SNAP_MEM_ALIGN + 7 * 4096)), 1);
	close(fd);
	expect_refused("l2.snap", -EINVAL, "checksum mismatch", "base.snap");
}

/*
 * Bytes outside an incremental link's memory map never reach a guest (only the pages it lists
 * are mapped from it, or merged), so they are not looked for there; in the full base, which is
 * mapped whole, they are refused.
 */
static void test_stray_data(void **state)
{
	static const uint8_t want[11] = { 'A', 'A', 'B', 'C', 'A', 'A', 'A', 'A', 'A', 'A', 0 };
	struct snap_merge_result res;
	uint8_t buf[4096], page[4096];
	struct snap_chain c;
	struct snap_file f;
	char err[600];
	int fd;

	write_three();
	/* l1 lists pages 2 and 3 only: page 7 is a hole of its own, the base's page 7 shows. */
	fd = open(at("l1.snap"), O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, "XXXX", 4, (off_t)(SNAP_MEM_ALIGN + 7 * 4096)), 4);
	close(fd);
	assert_int_equal(open_chain("l2.snap", &f, &c, err, sizeof(err)), 0);
	assert_int_equal(c.owner[7], 2);
	assert_int_equal(snap_chain_merge(&c, at("merged.snap"), NULL, &res, err, sizeof(err)), 0);
	snap_chain_close(&c);
	snap_file_close(&f);
	for (unsigned p = 0; p < 11; p++) {
		read_page("merged.snap", p, buf);
		memset(page, want[p], sizeof(page));
		assert_memory_equal(buf, page, sizeof(page));
	}
	/* The base lists pages 0-9: a byte at page 12 would be guest memory. */
	fd = open(at("base.snap"), O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, "X", 1, (off_t)(SNAP_MEM_ALIGN + 12 * 4096)), 1);
	close(fd);
	expect_refused("l2.snap", -EINVAL, "does not list", "base.snap");
}

/* An incremental link on top of a full one says depth 1, and nothing else. */
static void test_depth_after_full(void **state)
{
	uint8_t id[SNAP_ID_BYTES];

	write_on_base("l1.snap", 2, id);
	expect_refused("l1.snap", -EINVAL, "chain depth 2 does not follow its parent", "(0)");
}

/*
 * A merge stores the non-zero pages of a link's run in extents split at its zero pages (a zero
 * page in an incremental link is data: the merged file has a hole there, which reads zero).
 */
static void test_merge_zero_inside_run(void **state)
{
	static const uint8_t fills[3] = { 'D', 0, 'E' };
	struct snap_merge_result res;
	uint8_t id[SNAP_ID_BYTES], buf[4096], page[4096];
	struct snap_parent p;
	struct snap_chain c;
	struct snap_file f, m;
	char err[600];

	write_link("base.snap", NULL, 0, 10, 'A', id);
	p = parent_of("base.snap", id, 1);
	write_link_fills("l1.snap", &p, 6, 3, fills, id);
	assert_int_equal(open_chain("l1.snap", &f, &c, err, sizeof(err)), 0);
	assert_int_equal(snap_chain_merge(&c, at("merged.snap"), NULL, &res, err, sizeof(err)), 0);
	assert_int_equal(res.mem_pages, 9);
	assert_int_equal(res.zero_pages, 1);
	snap_chain_close(&c);
	snap_file_close(&f);
	assert_int_equal(snap_file_open(&m, at("merged.snap"), true, err, sizeof(err)), 0);
	/* Per run: 0-5 'A' (base); 6 'D', a hole at 7, 8 'E' (l1); 9 'A' (base). */
	assert_int_equal(m.nextents, 4);
	assert_int_equal(m.extents[0].length, 6 * 4096);
	assert_int_equal(m.extents[1].file_offset, m.mem_offset + 6 * 4096);
	assert_int_equal(m.extents[1].length, 4096);
	assert_int_equal(m.extents[2].file_offset, m.mem_offset + 8 * 4096);
	assert_int_equal(m.extents[2].length, 4096);
	snap_file_close(&m);
	for (unsigned i = 6; i < 9; i++) {
		read_page("merged.snap", i, buf);
		memset(page, fills[i - 6], sizeof(page));
		assert_memory_equal(buf, page, sizeof(page));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_flat, setup, teardown),
		cmocka_unit_test_setup_teardown(test_index, setup, teardown),
		cmocka_unit_test_setup_teardown(test_merge, setup, teardown),
		cmocka_unit_test_setup_teardown(test_zero_page_hides_parent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_parent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_changed_parent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_loop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_depth_mismatch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_depth_after_full, setup, teardown),
		cmocka_unit_test_setup_teardown(test_merge_zero_inside_run, setup, teardown),
		cmocka_unit_test_setup_teardown(test_too_long, setup, teardown),
		cmocka_unit_test_setup_teardown(test_parent_names, setup, teardown),
		cmocka_unit_test_setup_teardown(test_layout_mismatch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_parent_memory_checked, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stray_data, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
