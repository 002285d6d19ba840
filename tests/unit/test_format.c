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
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "snap/format.h"
#include "snap/meta.h"
#include "config.h"
#include "snapcraft.h"
#include "snapwrite.h"
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
static void write_snapshot_mem(const char *p, const char *meta, uint64_t mem)
{
	struct snap_writer w;
	struct snap_file map;
	uint8_t page[2 * 4096];
	char err[256];

	memset(page, 0xab, sizeof(page));
	assert_int_equal(snap_writer_open(&w, p, mem, err, sizeof(err)), 0);
	assert_int_equal(snap_writer_memory(&w, 2 * 4096, page, sizeof(page)), 0);
	assert_int_equal(snap_writer_memory(&w, 40 * 4096, page, 4096), 0);
	assert_int_equal(snap_writer_memory(&w, mem, page, 4096), -EINVAL);
	assert_int_equal(snap_writer_section(&w, SNAP_SEC_META, "meta", 1, meta, strlen(meta)), 0);
	assert_int_equal(snap_writer_section(&w, SNAP_SEC_DEV, "uart@com1", 3, "devstate", 8), 0);
	memset(&map, 0, sizeof(map));
	map.nregions = 1;
	map.regions[0] = (struct snap_region){ 0, mem, w.mem_offset };
	map.nextents = 2;
	map.extents = calloc(2, sizeof(*map.extents));
	map.extents[0] = (struct snap_extent){ w.mem_offset + 2 * 4096, 8192,
					       snap_checksum(page, 8192) };
	map.extents[1] = (struct snap_extent){ w.mem_offset + 40 * 4096, 4096,
					       snap_checksum(page, 4096) };
	snapwrite_memmap_commit(&w, &map);
	free(map.extents);
}

static void write_snapshot(const char *p, const char *meta)
{
	write_snapshot_mem(p, meta, MEM);
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

/* A fresh snapshot at the path, loaded into @c for a test to change. */
static void craft_fresh(struct craft *c)
{
	write_snapshot(path, "{\"name\":\"vm\"}");
	craft_load(c, path);
}

/* Store @c, changed, back at the path: the file is refused, the error naming @needle. */
static void craft_refused(struct craft *c, const char *needle)
{
	craft_store(c, path);
	craft_free(c);
	expect_refused(path, false, needle);
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

/* Set the header's format version to @version, with the header checksum made to match. */
static void set_format_version(const char *p, uint32_t version)
{
	uint8_t hdr[100];
	uint64_t sum;
	int fd = open(p, O_RDWR);

	assert_true(fd >= 0);
	assert_true(pread(fd, hdr, sizeof(hdr), 0) == sizeof(hdr));
	for (unsigned i = 0; i < 4; i++)
		hdr[8 + i] = (uint8_t)(version >> (8 * i));
	sum = snap_checksum(hdr, sizeof(hdr));
	assert_true(pwrite(fd, hdr, sizeof(hdr), 0) == sizeof(hdr));
	for (unsigned i = 0; i < 8; i++) {
		uint8_t b = (uint8_t)(sum >> (8 * i));

		assert_true(pwrite(fd, &b, 1, 100 + i) == 1);
	}
	close(fd);
}

static void test_version_refused(void **state)
{
	write_snapshot(path, "{}");
	set_format_version(path, 3);
	expect_refused(path, false, "format version 3 is newer than this khyve supports (1 to 2)");
	set_format_version(path, 0);
	expect_refused(path, false, "format version 0 is older than this khyve supports (1 to 2)");
}

/* Format 1 (before chains) still loads; a chain section in it is refused as unknown. */
static void test_version1_loads(void **state)
{
	struct snap_parent par = { .depth = 1, .name = "base.snap" };
	struct snap_writer w;
	struct snap_file f;
	struct sstream s;
	char err[256];

	write_snapshot(path, "{}");
	set_format_version(path, 1);
	assert_int_equal(snap_file_open(&f, path, true, err, sizeof(err)), 0);
	assert_int_equal(f.format_version, 1);
	assert_false(f.has_parent);
	snap_file_close(&f);

	assert_int_equal(snap_writer_open(&w, path, 1 << 20, err, sizeof(err)), 0);
	ss_init_save(&s);
	snap_parent_io(&s, &par);
	assert_int_equal(snap_writer_section(&w, SNAP_SEC_CHAIN, "chain", 1, s.buf, s.len), 0);
	ss_free(&s);
	assert_int_equal(snap_writer_section(&w, SNAP_SEC_META, "meta", 1, "{}", 2), 0);
	{
		struct snap_file m = { .nregions = 1,
				       .regions = { { 0, 1 << 20, SNAP_MEM_ALIGN } } };

		snapwrite_memmap_commit(&w, &m);
	}
	assert_int_equal(snap_file_open(&f, path, true, err, sizeof(err)), 0);
	assert_true(f.has_parent);
	assert_string_equal(f.parent.name, "base.snap");
	assert_int_equal(f.parent.depth, 1);
	snap_file_close(&f);
	set_format_version(path, 1);
	expect_refused(path, false, "unknown type 7");
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

/* ---- parser limits: crafted files with every checksum recomputed ---- */

/* Replace the memory map of @p with @nregions regions and @ne extents. */
static void craft_memmap(const char *p, const struct snap_region *regions, unsigned nregions,
			 const struct snap_extent *ext, unsigned ne)
{
	struct snap_file map;
	struct sstream s;
	struct craft c;

	memset(&map, 0, sizeof(map));
	map.nregions = nregions;
	memcpy(map.regions, regions, nregions * sizeof(*regions));
	map.nextents = ne;
	map.extents = (struct snap_extent *)ext;
	ss_init_save(&s);
	snap_memmap_io(&s, &map);
	craft_load(&c, p);
	craft_set(&c, (unsigned)craft_find(&c, "memory"), s.buf, s.len);
	craft_relayout(&c);
	craft_store(&c, p);
	craft_free(&c);
	ss_free(&s);
}

static const struct snap_region one_region = { 0, MEM, SNAP_MEM_ALIGN };

static void test_extents_refused(void **state)
{
	const uint64_t area = SNAP_MEM_ALIGN, end = SNAP_MEM_ALIGN + MEM;
	struct snap_extent e[2];
	struct snap_region two[2] = { { 0, MEM / 2, area },
				      { 1ULL << 32, MEM / 2, area + MEM / 2 } };

	/* Past the memory area: "length > end - offset" would underflow and pass. */
	write_snapshot(path, "{}");
	e[0] = (struct snap_extent){ end + 4096, 4096, 0 };
	craft_memmap(path, &one_region, 1, e, 1);
	expect_refused(path, false, "memory extent 0 is malformed");
	/* Longer than the writer writes (a small sparse file once made verify allocate 513 MiB). */
	write_snapshot(path, "{}");
	e[0] = (struct snap_extent){ area, SNAP_EXTENT_MAX + 4096, 0 };
	craft_memmap(path, &one_region, 1, e, 1);
	expect_refused(path, true, "memory extent 0 is malformed");
	/* Inside a memory area big enough for it, still longer than any the writer writes. */
	{
		const uint64_t big = 2 * SNAP_EXTENT_MAX + 2 * 4096;
		struct snap_region r = { 0, big, area };

		write_snapshot_mem(path, "{}", big);
		e[0] = (struct snap_extent){ area, SNAP_EXTENT_MAX + 4096, 0 };
		craft_memmap(path, &r, 1, e, 1);
		expect_refused(path, true, "memory extent 0 is malformed");
		e[0] = (struct snap_extent){ area + 4096, SNAP_EXTENT_MAX, 0 };
		craft_memmap(path, &r, 1, e, 1);
		expect_refused(path, true, "checksum");
		/* Regions that leave part of the area out. */
		r.size = big - 4096;
		craft_memmap(path, &r, 1, e, 0);
		expect_refused(path, false, "do not cover the memory area");
	}
	/* Each field of an extent out of shape on its own. */
	{
		static const struct {
			uint64_t off, len;
		} bad[] = {
			{ SNAP_MEM_ALIGN - 4096, 4096 },       /* before the memory area */
			{ SNAP_MEM_ALIGN + 512, 4096 },	       /* not on a page */
			{ SNAP_MEM_ALIGN, 0 },		       /* empty */
			{ SNAP_MEM_ALIGN, 6144 },	       /* not whole pages */
			{ SNAP_MEM_ALIGN + MEM - 4096, 8192 }, /* runs past the area's end */
		};

		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			write_snapshot(path, "{}");
			e[0] = (struct snap_extent){ bad[i].off, bad[i].len, 0 };
			craft_memmap(path, &one_region, 1, e, 1);
			expect_refused(path, false, "memory extent 0 is malformed");
		}
	}
	/* Overlapping, unsorted. */
	write_snapshot(path, "{}");
	e[0] = (struct snap_extent){ area + 8192, 8192, 0 };
	e[1] = (struct snap_extent){ area + 4096, 8192, 0 };
	craft_memmap(path, &one_region, 1, e, 2);
	expect_refused(path, false, "memory extent 1 is malformed");
	/* Across the boundary of two regions. */
	write_snapshot(path, "{}");
	e[0] = (struct snap_extent){ area + MEM / 2 - 4096, 8192, 0 };
	craft_memmap(path, two, 2, e, 1);
	expect_refused(path, false, "crosses a region boundary");
	/* More extents than the memory area has pages. */
	{
		size_t n = MEM / 4096 + 1;
		struct snap_extent *many = calloc(n, sizeof(*many));

		for (size_t i = 0; i < n; i++)
			many[i] = (struct snap_extent){ area + i * 4096, 4096, 0 };
		write_snapshot(path, "{}");
		craft_memmap(path, &one_region, 1, many, (unsigned)n);
		expect_refused(path, false, "memory extent count");
		free(many);
	}
}

/*
 * A section is used as it was checked: bytes changed in the file after the open do not reach
 * its reader (the sections are read once, checked and kept).
 */
static void test_section_read_as_checked(void **state)
{
	const struct snap_section *sec;
	struct snap_file f;
	char err[256];
	void *buf;
	int fd;

	write_snapshot(path, "{}");
	assert_int_equal(snap_file_open(&f, path, false, err, sizeof(err)), 0);
	sec = snap_file_find(&f, SNAP_SEC_DEV, "uart@com1");
	assert_non_null(sec);
	fd = open(path, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, "DEVSTATE", 8, (off_t)sec->offset), 8);
	close(fd);
	assert_int_equal(snap_file_read(&f, sec, &buf), 0);
	assert_memory_equal(buf, "devstate", 8);
	free(buf);
	snap_file_close(&f);
	/* Opened again, the change is found. */
	expect_refused(path, false, "section dev uart@com1: checksum mismatch");
}

static void write_at(const char *p, uint64_t off, const void *buf, size_t len)
{
	int fd = open(p, O_WRONLY);

	assert_true(pwrite(fd, buf, len, (off_t)off) == (ssize_t)len);
	close(fd);
}

/* A byte in a hole of the memory area: no checksum covers it, the guest would see it. */
static void test_hole_data_refused(void **state)
{
	uint8_t page[4096] = { 0 };
	struct snap_file f;
	char err[512];

	write_snapshot(path, "{}");
	write_at(path, SNAP_MEM_ALIGN + 20 * 4096 + 77, "\x01", 1);
	expect_refused(path, false, "holds data the memory map does not list");
	/* Zeros written there are what the hole reads as anyway: accepted. */
	write_snapshot(path, "{}");
	write_at(path, SNAP_MEM_ALIGN + 20 * 4096, page, sizeof(page));
	assert_int_equal(snap_file_open(&f, path, true, err, sizeof(err)), 0);
	snap_file_close(&f);
	/* Next to an extent, inside the same filesystem block run. */
	write_snapshot(path, "{}");
	page[4095] = 9;
	write_at(path, SNAP_MEM_ALIGN + 4 * 4096, page, sizeof(page));
	expect_refused(path, false, "offset 0x204000");
}

/*
 * @p copied into a memfd (tmpfs), its zero pages left as holes: what khyve -R restores from.
 * tmpfs finds a hole by walking the data page by page, so check_holes skips data that starts
 * inside an extent; data running on past the extent's end must still be found.
 */
static int memfd_copy(const char *p)
{
	uint8_t page[4096], zero[4096] = { 0 };
	int in = open(p, O_RDONLY), out = memfd_create("test-format", MFD_CLOEXEC);
	off_t off = 0;
	ssize_t n;

	assert_true(in >= 0 && out >= 0);
	while ((n = pread(in, page, sizeof(page), off)) > 0) {
		if (memcmp(page, zero, (size_t)n))
			assert_true(pwrite(out, page, (size_t)n, off) == n);
		off += n;
	}
	assert_int_equal(ftruncate(out, off), 0);
	close(in);
	return out;
}

static void expect_memfd(const char *p, const char *needle)
{
	struct snap_file f;
	char err[512] = "";
	int ret = snap_file_open_fd(&f, memfd_copy(p), p, false, err, sizeof(err));

	if (!needle) {
		if (ret)
			fail_msg("refused: %s", err);
		snap_file_close(&f);
		return;
	}
	assert_int_not_equal(ret, 0);
	if (!strstr(err, needle))
		fail_msg("error '%s' does not mention '%s'", err, needle);
}

static void test_hole_data_refused_memfd(void **state)
{
	uint8_t page[4096] = { 0 };

	/* The extents are pages 2-3 and 40 (write_snapshot). */
	write_snapshot(path, "{}");
	expect_memfd(path, NULL);
	/* Zeros written after an extent are data, and read as zero: accepted. */
	write_at(path, SNAP_MEM_ALIGN + 41 * 4096, page, sizeof(page));
	expect_memfd(path, NULL);
	/* A run of data from inside an extent on past its end. */
	page[100] = 5;
	write_at(path, SNAP_MEM_ALIGN + 4 * 4096, page, sizeof(page));
	expect_memfd(path, "offset 0x204000");
	/* A run of data up to an extent's start. */
	write_snapshot(path, "{}");
	write_at(path, SNAP_MEM_ALIGN + 1 * 4096, page, sizeof(page));
	expect_memfd(path, "offset 0x201000");
	/* Past the last extent, in a run that starts inside it. */
	write_snapshot(path, "{}");
	write_at(path, SNAP_MEM_ALIGN + 41 * 4096, page, sizeof(page));
	expect_memfd(path, "offset 0x229000");
	(void)state;
}

/* Rewrite header field @off (@n bytes) of @p with the header checksum recomputed. */
static void header_set(const char *p, unsigned off, uint64_t v, unsigned n)
{
	uint8_t page[4096];
	int fd = open(p, O_RDWR);

	assert_true(fd >= 0);
	craft_pread(fd, page, sizeof(page), 0);
	craft_put(page + off, v, n);
	craft_put(page + CH_SUM, XXH3_64bits(page, CH_SUM), 8);
	craft_pwrite(fd, page, sizeof(page), 0);
	close(fd);
}

static uint64_t header_get(const char *p, unsigned off)
{
	uint8_t page[4096];
	int fd = open(p, O_RDONLY);

	assert_true(fd >= 0);
	craft_pread(fd, page, sizeof(page), 0);
	close(fd);
	return craft_get(page + off, 8);
}

/* Every bound the header's offsets and sizes must keep, each broken alone. */
static void test_header_bounds_refused(void **state)
{
	struct stat st;
	uint64_t size, moff, msize, toff, tlen;
	const char *mem = "memory area out of bounds", *table = "section table out of bounds";

	write_snapshot(path, "{}");
	assert_int_equal(stat(path, &st), 0);
	size = (uint64_t)st.st_size;
	moff = header_get(path, CH_MOFF);
	msize = header_get(path, CH_MSIZE);
	toff = header_get(path, CH_TOFF);
	tlen = header_get(path, CH_TLEN);
	assert_int_equal(moff, SNAP_MEM_ALIGN);
	assert_int_equal(msize, MEM);
	assert_int_equal(toff + tlen, size);
	/* The memory area: where the format puts it, inside the file, whole pages. */
	header_set(path, CH_MOFF, moff + 4096, 8);
	expect_refused(path, false, mem);
	header_set(path, CH_MOFF, size + 4096, 8);
	expect_refused(path, false, mem);
	header_set(path, CH_MOFF, moff, 8);
	header_set(path, CH_MSIZE, size, 8);
	expect_refused(path, false, mem);
	header_set(path, CH_MSIZE, ~0ULL - 4095, 8);
	expect_refused(path, false, mem);
	header_set(path, CH_MSIZE, msize - 512, 8);
	expect_refused(path, false, mem);
	header_set(path, CH_MSIZE, msize, 8);
	/* The table: after the memory area, inside the file, as long as its entries. */
	header_set(path, CH_TOFF, moff + msize - 80, 8);
	expect_refused(path, false, table);
	header_set(path, CH_TOFF, size + 1, 8);
	expect_refused(path, false, table);
	header_set(path, CH_TOFF, toff, 8);
	header_set(path, CH_TLEN, tlen + 80, 8);
	expect_refused(path, false, table);
	header_set(path, CH_TLEN, tlen - 80, 8);
	expect_refused(path, false, table);
	header_set(path, CH_TLEN, tlen, 8);
	header_set(path, CH_NSEC, SNAP_MAX_SECTIONS + 1, 4);
	expect_refused(path, false, table);
	header_set(path, CH_NSEC, tlen / 80, 4);
	{
		struct snap_file f;
		char err[256];

		assert_int_equal(snap_file_open(&f, path, false, err, sizeof(err)), 0);
		snap_file_close(&f);
	}
}

/* Regions that do not tile the memory area, each way. */
static void test_regions_refused(void **state)
{
	const uint64_t area = SNAP_MEM_ALIGN;
	static const struct {
		struct snap_region r[2];
		unsigned n;
		const char *why;
	} cases[] = {
		{ { { 0, MEM, SNAP_MEM_ALIGN + 4096 } }, 1, "memory region 0 is malformed" },
		{ { { 0, 0, SNAP_MEM_ALIGN } }, 1, "memory region 0 is malformed" },
		{ { { 0, MEM - 512, SNAP_MEM_ALIGN } }, 1, "memory region 0 is malformed" },
		{ { { 512, MEM, SNAP_MEM_ALIGN } }, 1, "memory region 0 is malformed" },
		{ { { 0, MEM + 4096, SNAP_MEM_ALIGN } }, 1, "memory region 0 is malformed" },
		{ { { 0, MEM / 2, SNAP_MEM_ALIGN }, { 1ULL << 32, MEM, SNAP_MEM_ALIGN + MEM / 2 } },
		  2,
		  "memory region 1 is malformed" },
		{ { { 0, MEM / 2, SNAP_MEM_ALIGN } }, 1, "do not cover the memory area" },
		{ { { 0, MEM / 2, SNAP_MEM_ALIGN },
		    { 1ULL << 32, MEM / 2, SNAP_MEM_ALIGN + MEM / 2 } },
		  2,
		  NULL },
	};
	struct snap_extent e = { area + 2 * 4096, 4096, 0 };

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		write_snapshot(path, "{}");
		craft_memmap(path, cases[i].r, cases[i].n, &e, 0);
		/* Two regions that tile the area pass; the data pages, now unlisted, do not. */
		expect_refused(path, false, cases[i].why ? cases[i].why : "does not list");
	}
}

static void test_sections_refused(void **state)
{
	struct craft c;
	uint64_t t;
	int m, d;

	/* Out of order: two sections swap places but the table keeps its order. */
	craft_fresh(&c);
	m = craft_find(&c, "meta");
	d = craft_find(&c, "uart@com1");
	t = c.sec[m].offset;
	c.sec[d].offset = t;
	c.sec[m].offset = t + c.sec[d].length;
	craft_refused(&c, "is out of place");
	/* Overlapping: one section's bytes read as part of another, both checksums right. */
	craft_fresh(&c);
	m = craft_find(&c, "meta");
	d = craft_find(&c, "uart@com1");
	{
		uint8_t buf[64];

		memcpy(buf, c.sec[m].data, c.sec[m].length - 4);
		memcpy(buf + c.sec[m].length - 4, c.sec[d].data, 4);
		craft_set(&c, (unsigned)m, buf, c.sec[m].length);
	}
	c.sec[d].offset -= 4;
	craft_refused(&c, "is out of place");
	/* The last section running into the table: its offset right, its length too long. */
	craft_fresh(&c);
	{
		unsigned l = c.nsec - 1;
		uint8_t *longer = calloc(1, c.sec[l].length + 16);

		memcpy(longer, c.sec[l].data, c.sec[l].length);
		craft_set(&c, l, longer, c.sec[l].length + 16);
		free(longer);
	}
	craft_refused(&c, "is out of place");
	/* A gap between the last section and the table. */
	craft_fresh(&c);
	c.toff += 16;
	craft_refused(&c, "16 bytes between the last section and the table");
	/* Bytes appended after the table. */
	craft_fresh(&c);
	c.ntail = 5;
	craft_refused(&c, "5 bytes after the section table");
	/* Version 0, unknown types, ids that are not NUL-padded names, duplicates. */
	craft_fresh(&c);
	c.sec[craft_find(&c, "uart@com1")].version = 0;
	craft_refused(&c, "section dev uart@com1 has version 0");
	craft_fresh(&c);
	c.sec[craft_find(&c, "uart@com1")].type = 9;
	craft_refused(&c, "unknown type 9");
	craft_fresh(&c);
	c.sec[craft_find(&c, "uart@com1")].id[40] = 'x';
	craft_refused(&c, "malformed instance id");
	craft_fresh(&c);
	memset(c.sec[craft_find(&c, "uart@com1")].id, 'a', 48);
	craft_refused(&c, "malformed instance id");
	craft_fresh(&c);
	d = craft_find(&c, "uart@com1");
	c.sec[d].type = SNAP_SEC_META;
	memset(c.sec[d].id, 0, sizeof(c.sec[d].id));
	strcpy(c.sec[d].id, "meta");
	craft_refused(&c, "section meta meta appears twice");
	/* Metadata and memory map versions are 1; the metadata is small. */
	craft_fresh(&c);
	c.sec[craft_find(&c, "memory")].version = 2;
	craft_refused(&c, "memory map version 2");
	craft_fresh(&c);
	c.sec[craft_find(&c, "meta")].version = 3;
	craft_refused(&c, "metadata version 3");
	{
		size_t n = SNAP_MAX_META + 1;
		char *big = malloc(n + 1);

		memset(big, ' ', n);
		big[0] = '{';
		big[n - 1] = '}';
		big[n] = '\0';
		write_snapshot(path, big);
		expect_refused(path, false, "section meta meta is too large");
		free(big);
	}
}

/* ---- metadata cross-checks ---- */

static void write_machine(const char *p, unsigned ncpus, const char *const *devs,
			  const unsigned *vers, unsigned ndevs)
{
	struct snap_writer w;
	struct snap_file map;
	char err[256], id[16];

	assert_int_equal(snap_writer_open(&w, p, MEM, err, sizeof(err)), 0);
	assert_int_equal(snap_writer_section(&w, SNAP_SEC_META, "meta", 1, "{}", 2), 0);
	for (unsigned i = 0; i < ncpus; i++) {
		snprintf(id, sizeof(id), "cpu%u", i);
		assert_int_equal(snap_writer_section(&w, SNAP_SEC_VCPU, id, 1, "x", 1), 0);
	}
	for (unsigned i = 0; i < ndevs; i++)
		assert_int_equal(snap_writer_section(&w, SNAP_SEC_DEV, devs[i], vers[i], "y", 1),
				 0);
	memset(&map, 0, sizeof(map));
	map.nregions = 1;
	map.regions[0] = (struct snap_region){ 0, MEM, w.mem_offset };
	snapwrite_memmap_commit(&w, &map);
}

static void expect_meta(const struct snap_file *f, const struct config *cfg, const char *json,
			const char *needle)
{
	char err[512] = "";
	int ret = snap_meta_check(json, cfg, f, err, sizeof(err));

	if (!needle) {
		if (ret)
			fail_msg("metadata %s refused: %s", json, err);
		return;
	}
	assert_int_not_equal(ret, 0);
	if (!strstr(err, needle))
		fail_msg("error '%s' does not mention '%s'", err, needle);
}

#define DEVS_OK                                                         \
	"\"devices\":[{\"id\":\"rtc\",\"type\":\"rtc\",\"version\":2}," \
	"{\"id\":\"pci@0.3.0\",\"type\":\"pci\",\"version\":1}]"

static void test_meta_cross_checks(void **state)
{
	static const char *const devs[] = { "rtc", "pci@0.3.0" };
	static const unsigned vers[] = { 2, 1 };
	struct snap_file f;
	struct config cfg;
	char err[512];

	write_machine(path, 2, devs, vers, 2);
	assert_int_equal(snap_file_open(&f, path, false, err, sizeof(err)), 0);
	config_init(&cfg);
	config_set(&cfg, "cpus", "2");
	config_set(&cfg, "name", "vm");
	config_set(&cfg, "memory.size", "256K");
	expect_meta(&f, &cfg, "{\"name\":\"vm\",\"vcpus\":2,\"memory\":262144," DEVS_OK "}", NULL);
	expect_meta(&f, &cfg, "{\"name\":\"vm\",\"vcpus\":3,\"memory\":262144," DEVS_OK "}",
		    "vcpus does not match");
	expect_meta(&f, &cfg, "{\"name\":\"vm\",\"vcpus\":\"2\",\"memory\":262144," DEVS_OK "}",
		    "vcpus does not match");
	expect_meta(&f, &cfg, "{\"name\":\"vm\",\"vcpus\":2,\"memory\":524288," DEVS_OK "}",
		    "memory does not match the memory area");
	expect_meta(&f, &cfg, "{\"name\":\"other\",\"vcpus\":2,\"memory\":262144," DEVS_OK "}",
		    "name does not match");
	expect_meta(&f, &cfg,
		    "{\"name\":\"vm\",\"vcpus\":2,\"memory\":262144,\"devices\":[{\"id\":\"rtc\","
		    "\"version\":2}]}",
		    "devices do not match");
	expect_meta(&f, &cfg,
		    "{\"name\":\"vm\",\"vcpus\":2,\"memory\":262144,\"devices\":[{\"id\":\"rtc\","
		    "\"version\":1},{\"id\":\"pci@0.3.0\",\"version\":1}]}",
		    "devices do not match");
	expect_meta(&f, &cfg,
		    "{\"name\":\"vm\",\"vcpus\":2,\"memory\":262144,\"devices\":[{\"id\":\"rtc\","
		    "\"version\":2},{\"id\":\"rtc\",\"version\":2}]}",
		    "devices do not match");
	expect_meta(&f, &cfg, "[1]", "not a JSON object");
	expect_meta(&f, &cfg, "{\"name\":", "not a JSON object");
	/* Each field of the metadata in the wrong shape, the rest right. */
	{
		static const struct {
			const char *json, *why;
		} shape[] = {
			{ "{\"name\":\"vm\",\"vcpus\":-2,\"memory\":262144," DEVS_OK "}",
			  "vcpus does not match" },
			{ "{\"name\":\"vm\",\"memory\":262144," DEVS_OK "}",
			  "vcpus does not match" },
			{ "{\"name\":\"vm\",\"vcpus\":2," DEVS_OK "}", "memory does not match" },
			{ "{\"name\":\"vm\",\"vcpus\":2,\"memory\":262144}",
			  "devices do not match" },
			{ "{\"name\":\"vm\",\"vcpus\":2,\"memory\":262144,\"devices\":{}}",
			  "devices do not match" },
			{ "{\"name\":\"vm\",\"vcpus\":2,\"memory\":262144,\"devices\":[1,2]}",
			  "devices do not match" },
			{ "{\"name\":\"vm\",\"vcpus\":2,\"memory\":262144,\"devices\":[{"
			  "\"version\":"
			  "2},{\"id\":\"pci@0.3.0\",\"version\":1}]}",
			  "devices do not match" },
			{ "{\"name\":\"vm\",\"vcpus\":2,\"memory\":262144,\"devices\":[{\"id\":7,"
			  "\"version\":2},{\"id\":\"pci@0.3.0\",\"version\":1}]}",
			  "devices do not match" },
			{ "{\"name\":\"vm\",\"vcpus\":2,\"memory\":262144,\"devices\":[{\"id\":"
			  "\"rtc\"},{\"id\":\"pci@0.3.0\",\"version\":1}]}",
			  "devices do not match" },
			{ "{\"name\":\"vm\",\"vcpus\":2,\"memory\":262144,\"devices\":[{\"id\":"
			  "\"rtc\",\"version\":\"2\"},{\"id\":\"pci@0.3.0\",\"version\":1}]}",
			  "devices do not match" },
			{ "{\"name\":\"vm\",\"vcpus\":2,\"memory\":262144,\"devices\":[{\"id\":"
			  "\"hpet\",\"version\":2},{\"id\":\"pci@0.3.0\",\"version\":1}]}",
			  "devices do not match" },
			{ "{\"vcpus\":2,\"memory\":262144," DEVS_OK "}", "name does not match" },
			{ "{\"name\":1,\"vcpus\":2,\"memory\":262144," DEVS_OK "}",
			  "name does not match" },
		};

		for (size_t i = 0; i < sizeof(shape) / sizeof(shape[0]); i++)
			expect_meta(&f, &cfg, shape[i].json, shape[i].why);
	}
	/* Without a configured name, any name (or none) passes. */
	config_unset(&cfg, "name");
	expect_meta(&f, &cfg, "{\"vcpus\":2,\"memory\":262144," DEVS_OK "}", NULL);
	config_set(&cfg, "name", "vm");
	config_set(&cfg, "memory.size", "lots");
	expect_meta(&f, &cfg, "{\"name\":\"vm\",\"vcpus\":2,\"memory\":262144," DEVS_OK "}",
		    "memory does not match memory.size");
	config_set(&cfg, "memory.size", "512K");
	expect_meta(&f, &cfg, "{\"name\":\"vm\",\"vcpus\":2,\"memory\":262144," DEVS_OK "}",
		    "memory does not match memory.size");
	config_set(&cfg, "memory.size", "256K");
	/* The configuration says 1 vCPU but the file holds state for 2. */
	config_set(&cfg, "cpus", "1");
	expect_meta(&f, &cfg, "{\"name\":\"vm\",\"vcpus\":1,\"memory\":262144," DEVS_OK "}",
		    "vCPU sections are not cpu0..cpu0");
	snap_file_close(&f);
	/* cpu0 and cpu2, no cpu1. */
	{
		struct craft c;

		craft_load(&c, path);
		strcpy(c.sec[craft_find(&c, "cpu1")].id, "cpu2");
		craft_store(&c, path);
		craft_free(&c);
	}
	assert_int_equal(snap_file_open(&f, path, false, err, sizeof(err)), 0);
	config_set(&cfg, "cpus", "2");
	expect_meta(&f, &cfg, "{\"name\":\"vm\",\"vcpus\":2,\"memory\":262144," DEVS_OK "}",
		    "vCPU sections are not cpu0..cpu1");
	snap_file_close(&f);
	config_free(&cfg);
}

/* The saved configuration: an object of strings, nothing else taken. */
static void test_meta_config(void **state)
{
	static const struct {
		const char *json, *why;
	} bad[] = {
		{ "not json", "has no configuration" },
		{ "{\"name\":\"vm\"}", "has no configuration" },
		{ "{\"config\":[\"cpus=2\"]}", "has no configuration" },
		{ "{\"config\":{\"cpus\":\"2\",\"memory.size\":256}}",
		  "configuration key memory.size is not a string" },
	};
	struct config cfg;
	char err[256];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		config_init(&cfg);
		err[0] = '\0';
		assert_int_equal(snap_meta_config(bad[i].json, &cfg, err, sizeof(err)), -EINVAL);
		if (!strstr(err, bad[i].why))
			fail_msg("%s: error '%s' does not mention '%s'", bad[i].json, err,
				 bad[i].why);
		config_free(&cfg);
	}
	config_init(&cfg);
	assert_int_equal(snap_meta_config("{\"config\":{\"cpus\":\"2\",\"name\":\"vm\"}}", &cfg,
					  err, sizeof(err)),
			 0);
	assert_string_equal(config_get(&cfg, "cpus"), "2");
	assert_string_equal(config_get(&cfg, "name"), "vm");
	config_free(&cfg);
}

/* At @path, a snapshot whose COM1 section is turned into a chain section of @version. */
static void uart_as_chain(uint32_t version)
{
	struct craft c;
	int d;

	craft_fresh(&c);
	d = craft_find(&c, "uart@com1");
	c.sec[d].type = SNAP_SEC_CHAIN;
	memset(c.sec[d].id, 0, sizeof(c.sec[d].id));
	strcpy(c.sec[d].id, "chain");
	c.sec[d].version = version;
	craft_store(&c, path);
	craft_free(&c);
}

/* More refusals of a hostile section table: each alone, with its message. */
static void test_more_sections_refused(void **state)
{
	static const char nul_meta[] = "{\"name\":1}\0xx"; /* 13 bytes, as the meta it replaces */
	struct craft c;

	/* Type 0 is no type; an id that is all NUL bytes names nothing. */
	craft_fresh(&c);
	c.sec[craft_find(&c, "uart@com1")].type = 0;
	craft_refused(&c, "section 1 has unknown type 0");
	craft_fresh(&c);
	memset(c.sec[craft_find(&c, "uart@com1")].id, 0, 48);
	craft_refused(&c, "section 1 (dev) has a malformed instance id");
	/* Metadata with a NUL byte inside its length (a C string would end early). */
	craft_fresh(&c);
	craft_set(&c, (unsigned)craft_find(&c, "meta"), nul_meta, sizeof(nul_meta) - 1);
	craft_refused(&c, "metadata holds a NUL byte");
	/* No metadata, no memory map: the section is there under another type. */
	craft_fresh(&c);
	c.sec[craft_find(&c, "meta")].type = SNAP_SEC_DEV;
	craft_refused(&c, "no metadata section");
	craft_fresh(&c);
	c.sec[craft_find(&c, "memory")].type = SNAP_SEC_DEV;
	craft_refused(&c, "no memory map section");
	/* A chain section of another version, or whose bytes are not a parent record. */
	uart_as_chain(2);
	expect_refused(path, false, "chain section version 2 is not supported (1)");
	uart_as_chain(1);
	expect_refused(path, false, "chain section: ");
}

/* More vCPU sections than a VM can have are refused before any is read. */
static void test_too_many_vcpus(void **state)
{
	write_machine(path, SNAP_MAX_VCPUS, NULL, NULL, 0);
	{
		struct snap_file f;
		char err[512];

		assert_int_equal(snap_file_open(&f, path, false, err, sizeof(err)), 0);
		snap_file_close(&f);
	}
	write_machine(path, SNAP_MAX_VCPUS + 1, NULL, NULL, 0);
	expect_refused(path, false, "more than 255 vCPU sections");
}

/* A parent record: depth, name length, name, identity; each malformed field alone. */
static void put_parent(uint8_t *b, size_t *n, uint32_t depth, uint32_t len, const char *name)
{
	memcpy(b, &depth, 4);
	memcpy(b + 4, &len, 4);
	memcpy(b + 8, name, len);
	memset(b + 8 + len, 0x5a, SNAP_ID_BYTES);
	*n = 8 + len + SNAP_ID_BYTES;
}

static void expect_parent(const uint8_t *b, size_t n, int want, const char *needle)
{
	struct snap_parent p;
	char err[600] = "";
	int ret = snap_parent_decode(b, n, &p, err, sizeof(err));

	assert_int_equal(ret, want);
	if (!needle)
		return;
	if (!strstr(err, needle))
		fail_msg("error '%s' does not mention '%s'", err, needle);
}

static void test_parent_record_refused(void **state)
{
	uint8_t b[600];
	size_t n;
	struct snap_parent p;
	char err[600];

	put_parent(b, &n, 3, 9, "base.snap");
	assert_int_equal(snap_parent_decode(b, n, &p, err, sizeof(err)), 0);
	assert_int_equal(p.depth, 3);
	assert_string_equal(p.name, "base.snap");
	assert_int_equal(p.id[0], 0x5a);
	assert_int_equal(p.id[SNAP_ID_BYTES - 1], 0x5a);
	expect_parent(b, n - 1, -EINVAL, NULL); /* cut short */
	b[n] = 0;
	expect_parent(b, n + 1, -EINVAL, NULL); /* a byte too many */
	put_parent(b, &n, 1, 9, "base\0snap");
	expect_parent(b, n, -EINVAL, "the parent name holds a NUL byte");
	put_parent(b, &n, 1, 0, "");
	expect_parent(b, n, -EINVAL, "parent '' is not a plain file name");
	put_parent(b, &n, 1, 4, "a\177b\001");
	expect_parent(b, n, -EINVAL, "is not a plain file name");
	memset(b + 8, 'a', 300);
	put_parent(b, &n, 1, 256, (const char *)b + 8);
	expect_parent(b, n, -EINVAL, "parent name length");
	put_parent(b, &n, 0, 9, "base.snap");
	expect_parent(b, n, -EINVAL, "chain depth 0 is out of range (1 to 255)");
	put_parent(b, &n, SNAP_CHAIN_MAX, 9, "base.snap");
	expect_parent(b, n, -EINVAL, "chain depth 256 is out of range");
	put_parent(b, &n, SNAP_CHAIN_MAX - 1, 9, "base.snap");
	expect_parent(b, n, 0, NULL);
}

static int sink_fails(void *opaque, const struct snap_section *sec, uint64_t offset,
		      const void *buf, uint64_t len)
{
	(*(unsigned *)opaque)++;
	return -EPIPE;
}

/* The writer's own refusals: no name, a descriptor it cannot use, bytes out of bounds. */
static void test_writer_refusals(void **state)
{
	struct snap_writer w;
	unsigned calls = 0;
	char err[256] = "";
	uint8_t page[4096] = { 1 };
	int fd;

	assert_int_equal(snap_writer_open(&w, "", MEM, err, sizeof(err)), -ENAMETOOLONG);
	assert_int_equal(snap_writer_open_fd(&w, -1, MEM, err, sizeof(err)), -EBADF);
	assert_non_null(strstr(err, "duplicating the snapshot descriptor"));
	fd = open(dir, O_RDONLY | O_DIRECTORY);
	assert_true(fd >= 0);
	assert_int_not_equal(snap_writer_open_fd(&w, fd, MEM, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "sizing the snapshot"));
	close(fd);
	assert_int_equal(w.fd, -1);

	assert_int_equal(snap_writer_open(&w, path, MEM, err, sizeof(err)), 0);
	/* A second call keeps the direct descriptor the first opened. */
	assert_int_equal(snap_writer_direct(&w), snap_writer_direct(&w));
	assert_int_equal(snap_writer_memory(&w, MEM + 4096, page, 4096), -EINVAL);
	assert_int_equal(snap_writer_memory(&w, MEM - 4096, page, 8192), -EINVAL);
	assert_int_equal(snap_writer_memory_cached(&w, MEM + 4096, page, 4096), -EINVAL);
	assert_int_equal(snap_writer_memory_cached(&w, MEM - 4096, page, 8192), -EINVAL);
	assert_int_equal(w.bytes, 0);
	assert_int_equal(snap_writer_memory_cached(&w, MEM - 4096, page, 4096), 0);
	assert_int_equal(w.bytes, 4096);
	/* Too large is refused before a byte of it is read. */
	assert_int_equal(snap_writer_section(&w, SNAP_SEC_DEV, "big", 1, page,
					     SNAP_MAX_SECTION_SIZE + 1),
			 -E2BIG);
	assert_int_equal(w.nsections, 0);
	snap_writer_abort(&w);
	assert_int_equal(access(path, F_OK), -1);

	/* A stream: memory goes nowhere but to the sink, which says when it failed. */
	snap_writer_open_sink(&w, MEM, sink_fails, &calls);
	assert_false(snap_writer_direct(&w));
	assert_int_equal(snap_writer_memory_cached(&w, 0, page, 4096), -EINVAL);
	assert_int_equal(snap_writer_section(&w, SNAP_SEC_DEV, "d", 1, page, 16), -EPIPE);
	assert_int_equal(snap_writer_memory(&w, 0, page, 4096), -EPIPE);
	assert_int_equal(calls, 2);
	assert_int_equal(w.nsections, 0);
	assert_int_equal(w.bytes, 0);
	snap_writer_abort(&w);
}

/* A file with no sections at all (a MAC over an empty table and no metadata): refused. */
static void test_no_sections(void **state)
{
	uint8_t key[SNAP_KEY_BYTES] = { 7 };
	struct snap_writer w;
	struct snap_file f = { .auth_scheme = SNAP_AUTH_SCHEME_BLAKE2B };
	char err[256];

	assert_int_equal(snap_writer_open(&w, path, MEM, err, sizeof(err)), 0);
	snap_writer_set_key(&w, key);
	assert_int_equal(snap_writer_commit(&w, err, sizeof(err)), 0);
	expect_refused(path, false, "no metadata section");
	/* A MAC needs the metadata it covers. */
	assert_int_equal(snap_file_check_mac(&f, key), -EBADMSG);
}

/* Sections larger than one read: checked chunk by chunk, and read again when used. */
static void test_large_section(void **state)
{
	const size_t len = 3 * (1u << 20) / 2;
	uint8_t *big = malloc(len);
	const struct snap_section *sec;
	struct snap_writer w;
	struct snap_file map = { .nregions = 1 };
	struct snap_file f;
	char err[256];
	void *buf;

	for (size_t i = 0; i < len; i++)
		big[i] = (uint8_t)(i * 7);
	assert_int_equal(snap_writer_open(&w, path, MEM, err, sizeof(err)), 0);
	assert_int_equal(snap_writer_section(&w, SNAP_SEC_META, "meta", 1, "{}", 2), 0);
	assert_int_equal(snap_writer_section(&w, SNAP_SEC_DEV, "big", 1, big, len), 0);
	map.regions[0] = (struct snap_region){ 0, MEM, w.mem_offset };
	snapwrite_memmap_commit(&w, &map);

	assert_int_equal(snap_file_open(&f, path, true, err, sizeof(err)), 0);
	assert_null(f.sec_raw);
	sec = snap_file_find(&f, SNAP_SEC_DEV, "big");
	assert_non_null(sec);
	assert_int_equal(snap_file_read(&f, sec, &buf), 0);
	assert_memory_equal(buf, big, len);
	free(buf);
	/* The file cut short since: the read says so. */
	assert_int_equal(truncate(path, (off_t)sec->offset + 4096), 0);
	buf = NULL;
	assert_int_equal(snap_file_read(&f, sec, &buf), -EIO);
	assert_null(buf);
	snap_file_close(&f);

	/* A byte changed past the first chunk of it. */
	assert_int_equal(snap_writer_open(&w, path, MEM, err, sizeof(err)), 0);
	assert_int_equal(snap_writer_section(&w, SNAP_SEC_META, "meta", 1, "{}", 2), 0);
	assert_int_equal(snap_writer_section(&w, SNAP_SEC_DEV, "big", 1, big, len), 0);
	snapwrite_memmap_commit(&w, &map);
	assert_int_equal(snap_file_open(&f, path, false, err, sizeof(err)), 0);
	{
		uint64_t off = snap_file_find(&f, SNAP_SEC_DEV, "big")->offset;

		snap_file_close(&f);
		flip(path, (off_t)(off + len - 10));
	}
	expect_refused(path, false, "section dev big: checksum mismatch");
	free(big);
}

/* Opened by mistake: not a file, a file shorter than where its memory area would start. */
static void test_not_a_snapshot(void **state)
{
	struct snap_file f;
	char err[256] = "unchanged";
	int fd;

	expect_refused(dir, false, "not a regular file");
	write_snapshot(path, "{}");
	assert_int_equal(truncate(path, 8192), 0);
	expect_refused(path, false, "memory area out of bounds");
	/* With no room for a message, none is written. */
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(snap_file_open_fd(&f, fd, path, false, err, 0), -EINVAL);
	assert_string_equal(err, "unchanged");
	assert_int_equal(f.fd, -1);
}

/* Memory verification stops at the first extent that does not match. */
static void test_first_extent_damaged(void **state)
{
	write_snapshot(path, "{}");
	flip(path, (off_t)SNAP_MEM_ALIGN + 2 * 4096 + 7);
	expect_refused(path, true, "guest memory at offset 0x202000: checksum mismatch");
}

static void test_parent_names(void **state)
{
	char longname[SNAP_PARENT_NAME_MAX + 2];

	assert_true(snap_parent_name_ok("base.snap"));
	assert_true(snap_parent_name_ok("..base"));
	assert_false(snap_parent_name_ok(""));
	assert_false(snap_parent_name_ok("."));
	assert_false(snap_parent_name_ok(".."));
	assert_false(snap_parent_name_ok("dir/base.snap"));
	assert_false(snap_parent_name_ok("a\nb"));
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	assert_false(snap_parent_name_ok(longname));
	longname[SNAP_PARENT_NAME_MAX] = '\0';
	assert_true(snap_parent_name_ok(longname));
}

static int sink_ok(void *opaque, const struct snap_section *sec, uint64_t offset, const void *buf,
		   uint64_t len)
{
	return 0;
}

/* Bounds a writer keeps: a path that fits, at most SNAP_MAX_SECTIONS sections. */
static void test_writer_bounds(void **state)
{
	char longpath[sizeof(((struct snap_writer *)0)->path) + 8], err[sizeof(longpath) + 64];
	struct snap_writer w;

	memset(longpath, 'a', sizeof(longpath) - 1);
	longpath[0] = '/';
	longpath[sizeof(longpath) - 1] = '\0';
	assert_int_equal(snap_writer_open(&w, longpath, MEM, err, sizeof(err)), -ENAMETOOLONG);
	assert_non_null(strstr(err, "path too long"));
	snap_writer_open_sink(&w, MEM, sink_ok, NULL);
	for (unsigned i = 0; i < SNAP_MAX_SECTIONS; i++) {
		char id[16];

		snprintf(id, sizeof(id), "d%u", i);
		assert_int_equal(snap_writer_section(&w, SNAP_SEC_DEV, id, 1, "x", 1), 0);
	}
	assert_int_equal(snap_writer_section(&w, SNAP_SEC_DEV, "one-more", 1, "x", 1), -E2BIG);
	assert_int_equal(w.nsections, SNAP_MAX_SECTIONS);
	snap_writer_abort(&w);
}

/* Metadata is bounded more tightly than other sections (it is parsed whole as JSON). */
static void test_meta_too_large(void **state)
{
	char *meta = malloc(SNAP_MAX_META + 2);

	memset(meta, ' ', SNAP_MAX_META + 1);
	meta[0] = '{';
	meta[SNAP_MAX_META] = '}';
	meta[SNAP_MAX_META + 1] = '\0';
	write_snapshot(path, meta);
	expect_refused(path, false, "section meta meta is too large (1048577 bytes)");
	meta[SNAP_MAX_META - 1] = '}';
	meta[SNAP_MAX_META] = '\0';
	write_snapshot(path, meta);
	{
		struct snap_file f;
		char err[256];

		assert_int_equal(snap_file_open(&f, path, true, err, sizeof(err)), 0);
		snap_file_close(&f);
	}
	free(meta);
}

/* An extent count the section's bytes cannot hold is refused before anything is allocated. */
static void test_extent_count_refused(void **state)
{
	struct sstream s;
	struct craft c;
	struct snap_region r = one_region;
	uint32_t one = 1, many = 1000000;

	write_snapshot(path, "{}");
	ss_init_save(&s);
	ss_u32(&s, &one);
	ss_u64(&s, &r.gpa);
	ss_u64(&s, &r.size);
	ss_u64(&s, &r.file_offset);
	ss_u32(&s, &many);
	craft_load(&c, path);
	craft_set(&c, (unsigned)craft_find(&c, "memory"), s.buf, s.len);
	craft_relayout(&c);
	craft_store(&c, path);
	craft_free(&c);
	ss_free(&s);
	expect_refused(path, false, "memory extent count 1000000 exceeds the section");
}

/* Extents in the second of two regions, and a file with no memory at all: both fine. */
static void test_regions_used(void **state)
{
	const uint64_t area = SNAP_MEM_ALIGN;
	struct snap_region two[2] = { { 0, MEM / 2, area },
				      { 1ULL << 32, MEM / 2, area + MEM / 2 } };
	struct snap_extent e[2];
	uint8_t page[8192];
	struct snap_file f;
	struct snap_writer w;
	char err[256];

	memset(page, 0xab, sizeof(page));
	e[0] = (struct snap_extent){ area + 2 * 4096, 8192, snap_checksum(page, 8192) };
	e[1] = (struct snap_extent){ area + 40 * 4096, 4096, snap_checksum(page, 4096) };
	write_snapshot(path, "{}");
	craft_memmap(path, two, 2, e, 2);
	assert_int_equal(snap_file_open(&f, path, true, err, sizeof(err)), 0);
	assert_int_equal(f.nregions, 2);
	assert_int_equal(f.regions[1].gpa, 1ULL << 32);
	snap_file_close(&f);

	memset(&f, 0, sizeof(f));
	assert_int_equal(snap_writer_open(&w, path, 0, err, sizeof(err)), 0);
	assert_int_equal(snap_writer_section(&w, SNAP_SEC_META, "meta", 1, "{}", 2), 0);
	snapwrite_memmap_commit(&w, &f);
	assert_int_equal(snap_file_open(&f, path, true, err, sizeof(err)), 0);
	assert_int_equal(f.mem_size, 0);
	assert_int_equal(f.nregions, 0);
	snap_file_close(&f);
}

/* A parent record cut inside its name. */
static void test_parent_name_cut(void **state)
{
	uint8_t b[600];
	size_t n;

	put_parent(b, &n, 1, 9, "base.snap");
	expect_parent(b, 8 + 4, -EINVAL, NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_damage_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_version_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_version1_loads, setup, teardown),
		cmocka_unit_test_setup_teardown(test_atomic_replace, setup, teardown),
		cmocka_unit_test_setup_teardown(test_extents_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hole_data_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hole_data_refused_memfd, setup, teardown),
		cmocka_unit_test_setup_teardown(test_section_read_as_checked, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sections_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_header_bounds_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_regions_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_meta_cross_checks, setup, teardown),
		cmocka_unit_test(test_meta_config),
		cmocka_unit_test_setup_teardown(test_more_sections_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_too_many_vcpus, setup, teardown),
		cmocka_unit_test(test_parent_record_refused),
		cmocka_unit_test_setup_teardown(test_writer_refusals, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_sections, setup, teardown),
		cmocka_unit_test_setup_teardown(test_large_section, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_a_snapshot, setup, teardown),
		cmocka_unit_test_setup_teardown(test_first_extent_damaged, setup, teardown),
		cmocka_unit_test(test_parent_names),
		cmocka_unit_test(test_writer_bounds),
		cmocka_unit_test_setup_teardown(test_meta_too_large, setup, teardown),
		cmocka_unit_test_setup_teardown(test_extent_count_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_regions_used, setup, teardown),
		cmocka_unit_test(test_parent_name_cut),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
