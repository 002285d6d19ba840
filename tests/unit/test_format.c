// SPDX-License-Identifier: BSD-2-Clause
/* The snapshot file: written atomically, read back whole, and every kind of damage refused. */
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

#include "snap/format.h"
#include "sstream.h"

#define MEM (64 * 4096ULL)

static char dir[64], path[128];

static int setup(void **state)
{
	strcpy(dir, "/tmp/khyve-fmt-XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/vm.snap", dir);
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd);
}

/* A snapshot with two data pages (2 and 3) and one at page 40: two extents. */
static void write_snapshot(const char *p, const char *meta)
{
	struct snap_writer w;
	struct snap_file map;
	struct sstream s;
	uint8_t page[2 * 4096];
	char err[256];

	memset(page, 0xab, sizeof(page));
	assert_int_equal(snap_writer_open(&w, p, MEM, err, sizeof(err)), 0);
	assert_int_equal(snap_writer_memory(&w, 2 * 4096, page, sizeof(page)), 0);
	assert_int_equal(snap_writer_memory(&w, 40 * 4096, page, 4096), 0);
	assert_int_equal(snap_writer_memory(&w, MEM, page, 4096), -EINVAL);
	assert_int_equal(snap_writer_section(&w, SNAP_SEC_META, "meta", 1, meta, strlen(meta)), 0);
	assert_int_equal(snap_writer_section(&w, SNAP_SEC_DEV, "uart@com1", 3, "devstate", 8), 0);
	memset(&map, 0, sizeof(map));
	map.nregions = 1;
	map.regions[0] = (struct snap_region){ 0, MEM, w.mem_offset };
	map.nextents = 2;
	map.extents = calloc(2, sizeof(*map.extents));
	map.extents[0] = (struct snap_extent){ w.mem_offset + 2 * 4096, 8192,
					       snap_checksum(page, 8192) };
	map.extents[1] = (struct snap_extent){ w.mem_offset + 40 * 4096, 4096,
					       snap_checksum(page, 4096) };
	ss_init_save(&s);
	snap_memmap_io(&s, &map);
	assert_int_equal(snap_writer_section(&w, SNAP_SEC_MEMMAP, "memory", 1, s.buf, s.len), 0);
	ss_free(&s);
	free(map.extents);
	assert_int_equal(snap_writer_commit(&w, err, sizeof(err)), 0);
}

static void test_roundtrip(void **state)
{
	struct snap_file f;
	const struct snap_section *sec;
	struct stat st;
	char err[256];
	void *buf;

	write_snapshot(path, "{\"name\":\"vm\"}");
	assert_int_equal(snap_file_open(&f, path, true, err, sizeof(err)), 0);
	assert_int_equal(f.format_version, SNAP_FORMAT_VERSION);
	assert_int_equal(f.nsections, 3);
	assert_string_equal(f.meta_json, "{\"name\":\"vm\"}");
	assert_int_equal(f.nextents, 2);
	sec = snap_file_find(&f, SNAP_SEC_DEV, "uart@com1");
	assert_non_null(sec);
	assert_int_equal(sec->version, 3);
	assert_int_equal(snap_file_read(&f, sec, &buf), 0);
	assert_memory_equal(buf, "devstate", 8);
	free(buf);
	assert_null(snap_file_find(&f, SNAP_SEC_DEV, "rtc"));
	snap_file_close(&f);
	/* Sparse: 3 pages of memory data, not 64. */
	stat(path, &st);
	assert_true((uint64_t)st.st_blocks * 512 < 16 * 4096);
	assert_true((uint64_t)st.st_size > MEM);
}

static void flip(const char *p, off_t off)
{
	int fd = open(p, O_RDWR);
	uint8_t b;

	assert_true(pread(fd, &b, 1, off) == 1);
	b ^= 0x04;
	assert_true(pwrite(fd, &b, 1, off) == 1);
	close(fd);
}

static void expect_refused(const char *p, bool verify_memory, const char *needle)
{
	struct snap_file f;
	char err[512] = "";

	assert_int_not_equal(snap_file_open(&f, p, verify_memory, err, sizeof(err)), 0);
	if (!strstr(err, needle))
		fail_msg("error '%s' does not mention '%s'", err, needle);
	assert_int_equal(f.fd, -1);
}

static void test_damage_refused(void **state)
{
	struct snap_file f;
	char err[256];
	uint64_t meta_off, table_off;

	write_snapshot(path, "{\"name\":\"vm\"}");
	assert_int_equal(snap_file_open(&f, path, false, err, sizeof(err)), 0);
	meta_off = snap_file_find(&f, SNAP_SEC_META, "meta")->offset;
	table_off = f.sections[f.nsections - 1].offset + f.sections[f.nsections - 1].length;
	snap_file_close(&f);

	/* Each byte of the header is covered by the checksum. */
	for (off_t off = 0; off < 108; off += 7) { /* header + its checksum */
		write_snapshot(path, "{\"name\":\"vm\"}");
		flip(path, off);
		expect_refused(path, false, path);
	}
	write_snapshot(path, "{\"name\":\"vm\"}");
	flip(path, (off_t)meta_off + 3);
	expect_refused(path, false, "section meta meta: checksum mismatch");
	write_snapshot(path, "{\"name\":\"vm\"}");
	flip(path, (off_t)table_off + 5);
	expect_refused(path, false, "section table checksum");
	/* Memory: found only when memory is verified. */
	write_snapshot(path, "{\"name\":\"vm\"}");
	flip(path, (off_t)SNAP_MEM_ALIGN + 40 * 4096 + 100);
	assert_int_equal(snap_file_open(&f, path, false, err, sizeof(err)), 0);
	snap_file_close(&f);
	expect_refused(path, true, "guest memory at offset");
	/* Truncation anywhere. */
	write_snapshot(path, "{\"name\":\"vm\"}");
	assert_int_equal(truncate(path, (off_t)table_off + 10), 0);
	expect_refused(path, false, "out of bounds");
	assert_int_equal(truncate(path, 1000), 0);
	expect_refused(path, false, "too short");
	/* Not a snapshot; a missing file. */
	int fd = open(path, O_WRONLY | O_TRUNC);
	char junk[8192] = "\177ELF";

	assert_true(write(fd, junk, sizeof(junk)) == sizeof(junk));
	close(fd);
	expect_refused(path, false, "not a khyve snapshot");
	unlink(path);
	expect_refused(path, false, "No such file");
}

static void test_version_refused(void **state)
{
	uint8_t v[4] = { 2, 0, 0, 0 };
	int fd;

	write_snapshot(path, "{}");
	fd = open(path, O_WRONLY);
	assert_true(pwrite(fd, v, 4, 8) == 4);
	close(fd);
	expect_refused(path, false, "format version 2 is newer than this khyve supports (1)");
}

static void test_atomic_replace(void **state)
{
	struct snap_writer w;
	char err[256];
	struct snap_file f;
	int fd;

	/* An old file stays whole until a new one is committed; an aborted save leaves no trace. */
	fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0600);
	assert_true(write(fd, "old", 3) == 3);
	close(fd);
	assert_int_equal(snap_writer_open(&w, path, MEM, err, sizeof(err)), 0);
	snap_writer_abort(&w);
	{
		char buf[8] = "";

		fd = open(path, O_RDONLY);
		assert_int_equal(read(fd, buf, sizeof(buf)), 3);
		close(fd);
		assert_string_equal(buf, "old");
	}
	char cmd[160];

	snprintf(cmd, sizeof(cmd), "test $(ls -A %s | wc -l) -eq 1", dir);
	assert_int_equal(system(cmd), 0);
	write_snapshot(path, "{}");
	assert_int_equal(snap_file_open(&f, path, true, err, sizeof(err)), 0);
	snap_file_close(&f);
	/* A directory that does not exist: a clear error, nothing created. */
	assert_int_equal(snap_writer_open(&w, "/nonexistent-dir/x.snap", MEM, err, sizeof(err)),
			 -ENOENT);
	assert_non_null(strstr(err, "/nonexistent-dir/x.snap"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_damage_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_version_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_atomic_replace, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
