// SPDX-License-Identifier: BSD-2-Clause
/*
 * The snapshot file under host failures (tests/faultinj.h): a disk that fills up mid-write, an
 * fsync or rename that fails, short and interrupted writes and reads, allocations that fail.
 * A failed save leaves the previous file at the path as it was and no temporary file behind;
 * a failed open says why and holds nothing open.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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
#include "snap/format.h"
#include "snapwrite.h"
#include "sstream.h"
#include "testfiles.h"

#define MEM (64 * 4096ULL)

static char dir[64], path[128];

static int setup(void **state)
{
	strcpy(dir, "/tmp/khyve-fmtf-XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/vm.snap", dir);
	fi_reset();
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];

	fi_reset();
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd);
}

/* Files in the directory: the target and anything else (a temporary file left behind). */
static unsigned dir_entries(void)
{
	return testfile_count(dir, NULL, NULL);
}

static void put_old(void)
{
	testfile_put_old(path);
}

/* The previous file is still at the path, byte for byte, and nothing else is in the directory. */
static void check_old_untouched(void)
{
	testfile_check_old(path);
	assert_int_equal(dir_entries(), 1);
}

/*
 * The steps of a save (open, memory, sections, memory map, commit); the first failure is
 * returned (the writer aborted then), 0 when the file was committed.
 */
static int save(const char *meta, char *err, size_t errlen)
{
	struct snap_writer w;
	struct snap_file map;
	struct sstream s;
	static uint8_t page[3 * 4096];
	int ret;

	memset(page, 0xab, sizeof(page));
	ret = snap_writer_open(&w, path, MEM, err, errlen);
	if (ret)
		return ret;
	ret = snap_writer_memory(&w, 2 * 4096, page, sizeof(page));
	if (!ret)
		ret = snap_writer_section(&w, SNAP_SEC_META, "meta", 1, meta, strlen(meta));
	if (!ret)
		ret = snap_writer_section(&w, SNAP_SEC_DEV, "uart@com1", 3, "devstate", 8);
	memset(&map, 0, sizeof(map));
	map.nregions = 1;
	map.regions[0] = (struct snap_region){ 0, MEM, w.mem_offset };
	map.nextents = 1;
	map.extents = calloc(1, sizeof(*map.extents));
	assert_non_null(map.extents);
	map.extents[0] = (struct snap_extent){ w.mem_offset + 2 * 4096, sizeof(page),
					       snap_checksum(page, sizeof(page)) };
	ss_init_save(&s);
	snap_memmap_io(&s, &map);
	if (!ret)
		ret = snap_writer_section(&w, SNAP_SEC_MEMMAP, "memory", 1, s.buf, s.len);
	ss_free(&s);
	free(map.extents);
	if (ret) {
		snprintf(err, errlen, "%s", strerror(-ret));
		snap_writer_abort(&w);
		return ret;
	}
	return snap_writer_commit(&w, err, errlen);
}

/* The file at the path is a whole, valid snapshot (memory checksums included). */
static void check_valid(void)
{
	struct snap_file f;
	char err[512] = "";

	if (snap_file_open(&f, path, true, err, sizeof(err)))
		fail_msg("the saved file does not open: %s", err);
	assert_string_equal(f.meta_json, "{\"name\":\"vm\"}");
	assert_int_equal(f.nsections, 3);
	snap_file_close(&f);
	assert_int_equal(dir_entries(), 1);
}

/*
 * Direct writes (snap_writer_direct): whole aligned pages go through the O_DIRECT file, the rest
 * through the page cache; a file system that refuses a direct write (EINVAL) turns direct
 * writes off and the same bytes go through the page cache.  Each way the file reads back.
 */
static int save_direct(const void *buf, uint64_t len, bool want_direct, bool *still_direct)
{
	struct snap_writer w;
	char err[256];
	int ret = snap_writer_open(&w, path, MEM, err, sizeof(err));

	assert_int_equal(ret, 0);
	assert_int_equal(snap_writer_direct(&w), want_direct);
	ret = snap_writer_memory(&w, 4096, buf, len);
	*still_direct = w.dfd >= 0;
	if (!ret)
		ret = snap_writer_commit(&w, err, sizeof(err));
	else
		snap_writer_abort(&w);
	return ret;
}

static void check_memory_reads(const uint8_t *buf, uint64_t len)
{
	uint8_t *back = malloc(len);
	int fd = open(path, O_RDONLY);

	assert_non_null(back);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, back, len, SNAP_MEM_ALIGN + 4096), (ssize_t)len);
	close(fd);
	assert_memory_equal(back, buf, len);
	free(back);
}

static void test_direct_writes(void **state)
{
	uint8_t *pages = aligned_alloc(4096, 4 * 4096);
	unsigned before;
	bool direct;

	assert_non_null(pages);
	for (unsigned i = 0; i < 4 * 4096; i++)
		pages[i] = (uint8_t)(i * 7 + 3);
	/* Aligned pages: one write, through the direct file (the only pwrite of memory). */
	before = fi_calls(FI_PWRITE);
	assert_int_equal(save_direct(pages, 2 * 4096, true, &direct), 0);
	assert_true(direct);
	assert_true(fi_calls(FI_PWRITE) > before);
	check_memory_reads(pages, 2 * 4096);
	/* Not page-aligned in memory: through the page cache, direct writes stay on. */
	assert_int_equal(save_direct(pages + 100, 2 * 4096, true, &direct), 0);
	assert_true(direct);
	check_memory_reads(pages + 100, 2 * 4096);
	/* Refused with EINVAL: direct writes end, the bytes still land. */
	fi_fail(FI_PWRITE, 1, EINVAL);
	assert_int_equal(save_direct(pages, 4 * 4096, true, &direct), 0);
	assert_int_equal(fi_hits(FI_PWRITE), 1);
	assert_false(direct);
	check_memory_reads(pages, 4 * 4096);
	/* Any other error is the save's error, as without direct writes. */
	fi_reset();
	fi_fail(FI_PWRITE, 1, ENOSPC);
	assert_int_equal(save_direct(pages, 2 * 4096, true, &direct), -ENOSPC);
	assert_true(direct);
	free(pages);
}

/* The O_DIRECT file cannot be opened (a file system without it): everything is buffered. */
static void test_direct_unavailable(void **state)
{
	uint8_t *pages = aligned_alloc(4096, 2 * 4096);
	bool direct;

	assert_non_null(pages);
	memset(pages, 0x5a, 2 * 4096);
	fi_fail(FI_OPEN, 1, EINVAL);
	fi_fail(FI_OPENAT, 1, EINVAL);
	assert_int_equal(save_direct(pages, 2 * 4096, false, &direct), 0);
	assert_false(direct);
	check_memory_reads(pages, 2 * 4096);
	free(pages);
}

/* The disk fills up at each write of the save in turn: each save fails with ENOSPC, cleanly. */
static void test_disk_full_at_each_write(void **state)
{
	char err[512];
	unsigned writes, n;

	/* How many pwrites a whole save makes. */
	put_old();
	fi_reset();
	assert_int_equal(save("{\"name\":\"vm\"}", err, sizeof(err)), 0);
	writes = fi_calls(FI_PWRITE);
	assert_true(writes >= 5); /* memory, 3 sections, table, header */
	for (n = 1; n <= writes; n++) {
		put_old();
		fi_reset();
		fi_fail(FI_PWRITE, n, ENOSPC);
		err[0] = '\0';
		assert_int_equal(save("{\"name\":\"vm\"}", err, sizeof(err)), -ENOSPC);
		assert_true(fi_all_fired());
		assert_non_null(strstr(err, strerror(ENOSPC)));
		check_old_untouched();
	}
}

static void test_fsync_fails(void **state)
{
	char err[512] = "";

	put_old();
	fi_fail(FI_FSYNC, 1, EIO);
	assert_int_equal(save("{\"name\":\"vm\"}", err, sizeof(err)), -EIO);
	assert_int_equal(fi_hits(FI_FSYNC), 1);
	assert_non_null(strstr(err, path));
	assert_non_null(strstr(err, strerror(EIO)));
	/* No rename came after the failed fsync: the old file stays. */
	assert_int_equal(fi_calls(FI_RENAME), 0);
	check_old_untouched();
}

static void test_rename_fails(void **state)
{
	char err[512] = "";

	put_old();
	fi_fail(FI_RENAME, 1, EXDEV);
	assert_int_equal(save("{\"name\":\"vm\"}", err, sizeof(err)), -EXDEV);
	assert_non_null(strstr(err, "renaming the new snapshot"));
	check_old_untouched();
}

/* The temporary file cannot be made, or not sized: nothing is left behind. */
static void test_open_fails(void **state)
{
	char err[512] = "";

	put_old();
	fi_fail(FI_MKOSTEMP, 1, EACCES);
	assert_int_equal(save("{\"name\":\"vm\"}", err, sizeof(err)), -EACCES);
	assert_non_null(strstr(err, "cannot create a file in the directory"));
	check_old_untouched();

	fi_reset();
	err[0] = '\0';
	fi_fail(FI_FTRUNCATE, 1, EFBIG);
	assert_int_equal(save("{\"name\":\"vm\"}", err, sizeof(err)), -EFBIG);
	assert_non_null(strstr(err, strerror(EFBIG)));
	check_old_untouched();
}

/* The section table and the metadata copy cannot be allocated. */
static void test_alloc_fails(void **state)
{
	char err[512] = "";

	put_old();
	fi_fail(FI_REALLOC, 1, ENOMEM);
	assert_int_equal(save("{\"name\":\"vm\"}", err, sizeof(err)), -ENOMEM);
	check_old_untouched();
	fi_reset();
	/* The first malloc of a save is the metadata's copy (the MAC covers it). */
	fi_fail(FI_MALLOC, 1, ENOMEM);
	assert_int_equal(save("{\"name\":\"vm\"}", err, sizeof(err)), -ENOMEM);
	check_old_untouched();
}

/* Interrupted and short writes are carried on: the file comes out whole. */
static void test_eintr_and_short_writes(void **state)
{
	char err[512] = "";
	unsigned writes;

	fi_reset();
	assert_int_equal(save("{\"name\":\"vm\"}", err, sizeof(err)), 0);
	writes = fi_calls(FI_PWRITE);
	for (unsigned n = 1; n <= writes; n++) {
		fi_reset();
		fi_eintr(FI_PWRITE, n);
		assert_int_equal(save("{\"name\":\"vm\"}", err, sizeof(err)), 0);
		assert_int_equal(fi_hits(FI_PWRITE), 1);
		check_valid();
		fi_reset();
		fi_short(FI_PWRITE, n);
		assert_int_equal(save("{\"name\":\"vm\"}", err, sizeof(err)), 0);
		/* The short write was followed by one more for the rest. */
		assert_int_equal(fi_calls(FI_PWRITE), writes + 1);
		check_valid();
	}
}

/* Reads: an I/O error at each read of an open is refused and says so; EINTR and short reads
 * are carried on. */
static void test_read_faults(void **state)
{
	struct snap_file f;
	char err[512];
	unsigned reads;

	assert_int_equal(save("{\"name\":\"vm\"}", err, sizeof(err)), 0);
	fi_reset();
	assert_int_equal(snap_file_open(&f, path, true, err, sizeof(err)), 0);
	snap_file_close(&f);
	reads = fi_calls(FI_PREAD);
	assert_true(reads >= 4); /* header, table, sections, memory */
	for (unsigned n = 1; n <= reads; n++) {
		fi_reset();
		fi_fail(FI_PREAD, n, EIO);
		err[0] = '\0';
		assert_int_equal(snap_file_open(&f, path, true, err, sizeof(err)), -EIO);
		assert_true(fi_all_fired());
		if (!strstr(err, strerror(EIO)))
			fail_msg("read %u failing: '%s' does not say '%s'", n, err, strerror(EIO));
		assert_int_equal(f.fd, -1);
		assert_null(f.sections);

		fi_reset();
		fi_eintr(FI_PREAD, n);
		assert_int_equal(snap_file_open(&f, path, true, err, sizeof(err)), 0);
		snap_file_close(&f);
		fi_reset();
		fi_short(FI_PREAD, n);
		assert_int_equal(snap_file_open(&f, path, true, err, sizeof(err)), 0);
		assert_int_equal(fi_calls(FI_PREAD), reads + 1);
		snap_file_close(&f);
	}
}

/* The file cannot be opened or looked at. */
static void test_open_stat_fail(void **state)
{
	struct snap_file f;
	char err[512] = "";

	assert_int_equal(save("{\"name\":\"vm\"}", err, sizeof(err)), 0);
	fi_reset();
	fi_fail(FI_OPEN, 1, EACCES);
	assert_int_equal(snap_file_open(&f, path, true, err, sizeof(err)), -EACCES);
	assert_non_null(strstr(err, strerror(EACCES)));
	fi_reset();
	fi_fail(FI_FSTAT, 1, EIO);
	err[0] = '\0';
	assert_int_equal(snap_file_open(&f, path, true, err, sizeof(err)), -EIO);
	assert_non_null(strstr(err, strerror(EIO)));
	assert_int_equal(f.fd, -1);
}

/*
 * Every allocation of an open failing in turn: each failure is an error with a message (never
 * a crash, never success with something missing; the asan build checks nothing leaks), and
 * past the last allocation the open succeeds.
 */
static void test_open_alloc_sweep(void **state)
{
	static const enum fi_call kinds[] = { FI_MALLOC, FI_CALLOC, FI_REALLOC, FI_STRDUP };
	struct snap_file f;
	char err[512];

	assert_int_equal(save("{\"name\":\"vm\"}", err, sizeof(err)), 0);
	for (unsigned k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
		unsigned n, total;

		fi_reset();
		assert_int_equal(snap_file_open(&f, path, true, err, sizeof(err)), 0);
		snap_file_close(&f);
		total = fi_calls(kinds[k]);
		for (n = 1; n <= total; n++) {
			int ret;

			fi_reset();
			fi_fail(kinds[k], n, ENOMEM);
			err[0] = '\0';
			ret = snap_file_open(&f, path, true, err, sizeof(err));
			assert_true(fi_all_fired());
			assert_int_equal(ret, -ENOMEM);
			if (!err[0])
				fail_msg("allocation %u (kind %u) failing gives no message", n, k);
			assert_int_equal(f.fd, -1);
		}
	}
}

/*
 * A file of the rarer shapes: a section larger than one read (checked chunk by chunk, read
 * again when used), and zeros written into the memory area where no extent lists data (found
 * by SEEK_DATA, then read to check they are zero).
 */
static void save_odd(void)
{
	const size_t big = 3 * (1u << 20) / 2;
	struct snap_file map = { .nregions = 1 };
	uint8_t page[4096], zero[4096] = { 0 };
	struct snap_writer w;
	uint8_t *dev = calloc(1, big);
	char err[256];

	fi_suspend(true);
	memset(page, 0xab, sizeof(page));
	memset(dev, 0x5c, big);
	assert_int_equal(snap_writer_open(&w, path, MEM, err, sizeof(err)), 0);
	assert_int_equal(snap_writer_memory(&w, 2 * 4096, page, 4096), 0);
	assert_int_equal(snap_writer_memory_cached(&w, 10 * 4096, zero, 4096), 0);
	assert_int_equal(snap_writer_section(&w, SNAP_SEC_META, "meta", 1, "{}", 2), 0);
	assert_int_equal(snap_writer_section(&w, SNAP_SEC_DEV, "big", 1, dev, big), 0);
	map.regions[0] = (struct snap_region){ 0, MEM, w.mem_offset };
	map.nextents = 1;
	map.extents = calloc(1, sizeof(*map.extents));
	map.extents[0] = (struct snap_extent){ w.mem_offset + 2 * 4096, 4096,
					       snap_checksum(page, 4096) };
	snapwrite_memmap_commit(&w, &map);
	free(map.extents);
	free(dev);
	fi_suspend(false);
}

/* Open, verify and read the big section: 0, or the error. */
static int open_odd(char *err, size_t errlen)
{
	const struct snap_section *sec;
	struct snap_file f;
	void *buf = NULL;
	int ret;

	err[0] = '\0';
	ret = snap_file_open(&f, path, true, err, errlen);
	if (ret)
		return ret;
	sec = snap_file_find(&f, SNAP_SEC_DEV, "big");
	assert_non_null(sec);
	ret = snap_file_read(&f, sec, &buf);
	if (!ret)
		assert_int_equal(((uint8_t *)buf)[sec->length - 1], 0x5c);
	else
		snprintf(err, errlen, "%s", strerror(-ret));
	free(buf);
	snap_file_close(&f);
	return ret;
}

/* Each read, seek and allocation of the odd file's open and use failing in turn. */
static void test_odd_file_faults(void **state)
{
	static const struct {
		enum fi_call c;
		int err;
	} kinds[] = { { FI_PREAD, EIO },
		      { FI_LSEEK, EIO },
		      { FI_MALLOC, ENOMEM },
		      { FI_CALLOC, ENOMEM },
		      { FI_REALLOC, ENOMEM } };
	char err[512];

	save_odd();
	for (unsigned k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
		unsigned total;

		fi_reset();
		if (open_odd(err, sizeof(err)))
			fail_msg("open: %s", err);
		total = fi_calls(kinds[k].c);
		assert_true(total > 0);
		for (unsigned n = 1; n <= total; n++) {
			int ret;

			fi_reset();
			fi_fail(kinds[k].c, n, kinds[k].err);
			ret = open_odd(err, sizeof(err));
			assert_true(fi_all_fired());
			/* An allocation failing may be said as "out of memory". */
			if (ret != -kinds[k].err || !err[0] ||
			    (kinds[k].err != ENOMEM && !strstr(err, strerror(kinds[k].err))))
				fail_msg("call %u of kind %u failing: %d '%s'", n, k, ret, err);
		}
	}
	/* Interrupted and short reads are taken up again. */
	fi_reset();
	assert_int_equal(open_odd(err, sizeof(err)), 0);
	for (unsigned n = 1, total = fi_calls(FI_PREAD); n <= total; n++) {
		fi_reset();
		fi_eintr(FI_PREAD, n);
		assert_int_equal(open_odd(err, sizeof(err)), 0);
		fi_reset();
		fi_short(FI_PREAD, n);
		assert_int_equal(open_odd(err, sizeof(err)), 0);
	}
}

/* A write of cached memory failing is the caller's error; nothing is counted. */
static void test_cached_write_fails(void **state)
{
	struct snap_writer w;
	uint8_t page[4096] = { 1 };
	char err[256];

	assert_int_equal(snap_writer_open(&w, path, MEM, err, sizeof(err)), 0);
	fi_fail(FI_PWRITE, 1, ENOSPC);
	assert_int_equal(snap_writer_memory_cached(&w, 0, page, 4096), -ENOSPC);
	assert_int_equal(w.bytes, 0);
	fi_reset();
	fi_fail(FI_MALLOC, 1, ENOMEM);
	assert_int_equal(snap_writer_section(&w, SNAP_SEC_META, "meta", 1, "{}", 2), -ENOMEM);
	assert_int_equal(w.nsections, 0);
	fi_reset();
	snap_writer_abort(&w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_disk_full_at_each_write, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fsync_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rename_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_alloc_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_eintr_and_short_writes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_faults, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_stat_fail, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_alloc_sweep, setup, teardown),
		cmocka_unit_test_setup_teardown(test_odd_file_faults, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cached_write_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_direct_writes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_direct_unavailable, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
