// SPDX-License-Identifier: BSD-2-Clause
/*
 * Snapshot chains (snap/chain.c) with host failures injected (tests/faultinj.h): opening a
 * three-link chain and merging it with each host call failing in turn, short and interrupted
 * I/O, links that change under a merge, a tip path too long.  The links are written as
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
#include "chainlinks.h"
#include "snap/chain.h"
#include "snap/format.h"
#include "sstream.h"

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

static void read_page(const char *name, uint64_t page, uint8_t *buf)
{
	int fd = open(at(name), O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, buf, 4096, (off_t)(SNAP_MEM_ALIGN + page * 4096)), 4096);
	close(fd);
}

static const uint8_t want[11] = { 'A', 'A', 'B', 'C', 'A', 'A', 'A', 'A', 'A', 'A', 0 };

/* What is in the directory but the three links (a merge must leave no temporary file). */
static unsigned stray_files(void)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	unsigned n = 0;

	assert_non_null(d);
	while ((e = readdir(d)))
		if (e->d_name[0] != '.' && strcmp(e->d_name, "base.snap") &&
		    strcmp(e->d_name, "l1.snap") && strcmp(e->d_name, "l2.snap"))
			n++;
	closedir(d);
	return n;
}

/* The merged file verifies and holds the chain's newest pages. */
static void check_merged(void)
{
	struct snap_file m;
	uint8_t buf[4096], page[4096];
	char err[600];

	assert_int_equal(snap_file_open(&m, at("merged.snap"), true, err, sizeof(err)), 0);
	assert_false(m.has_parent);
	snap_file_close(&m);
	for (unsigned p = 0; p < 11; p++) {
		read_page("merged.snap", p, buf);
		memset(page, want[p], sizeof(page));
		assert_memory_equal(buf, page, sizeof(page));
	}
}

/* Open l2's chain (verifying memory) and merge it: 0 or an error with its message in @err. */
static int open_and_merge(const uint8_t *key, char *err, size_t errlen)
{
	struct snap_merge_result res;
	struct snap_chain c;
	struct snap_file f;
	int ret;

	err[0] = 0;
	ret = snap_file_open(&f, at("l2.snap"), true, err, errlen);
	if (ret)
		return ret;
	ret = snap_chain_open(&c, &f, at("l2.snap"), true, err, errlen);
	if (!ret) {
		ret = snap_chain_merge(&c, at("merged.snap"), key, &res, err, errlen);
		if (!ret) {
			assert_int_equal(res.mem_pages, 10);
			assert_int_equal(res.authenticated, key != NULL);
		}
		snap_chain_close(&c);
	}
	snap_file_close(&f);
	return ret;
}

static const struct {
	enum fi_call call;
	const char *name;
} calls[] = {
	{ FI_MALLOC, "malloc" },       { FI_CALLOC, "calloc" },	      { FI_REALLOC, "realloc" },
	{ FI_STRDUP, "strdup" },       { FI_OPEN, "open" },	      { FI_OPENAT, "openat" },
	{ FI_FSTAT, "fstat" },	       { FI_PREAD, "pread" },	      { FI_PREADV, "preadv" },
	{ FI_READ, "read" },	       { FI_PWRITE, "pwrite" },	      { FI_PWRITEV, "pwritev" },
	{ FI_WRITE, "write" },	       { FI_MKOSTEMP, "mkostemp" },   { FI_FSYNC, "fsync" },
	{ FI_FDATASYNC, "fdatasync" }, { FI_RENAME, "rename" },	      { FI_RENAMEAT2, "renameat2" },
	{ FI_LINKAT, "linkat" },       { FI_FTRUNCATE, "ftruncate" }, { FI_FALLOCATE, "fallocate" },
	{ FI_MMAP, "mmap" },	       { FI_LSEEK, "lseek" },	      { FI_FCHMOD, "fchmod" },
};

/*
 * Opening a chain and merging it with the Nth call of each kind failing, N = 1.. until no
 * call of that kind is left to fail: refused with a message, no merged file and no temporary
 * one left (ASan checks nothing leaks); or, where the call was optional (the directory's
 * fsync after the rename), the merged file whole.
 */
static void test_fail_each_call(void **state)
{
	static const uint8_t key[SNAP_KEY_BYTES] = { 1, 2, 3 };
	char err[600];
	unsigned failed = 0;

	(void)state;
	write_three();
	for (size_t k = 0; k < sizeof(calls) / sizeof(calls[0]); k++) {
		for (unsigned n = 1;; n++) {
			int ret;

			fi_reset();
			fi_fail(calls[k].call, n, 0);
			ret = open_and_merge(n % 2 ? key : NULL, err, sizeof(err));
			if (!fi_all_fired()) {
				fi_reset();
				assert_int_equal(ret, 0);
				check_merged();
				assert_int_equal(unlink(at("merged.snap")), 0);
				break;
			}
			fi_reset();
			if (ret) {
				if (!err[0])
					fail_msg("%s %u: error %d without a message", calls[k].name,
						 n, ret);
				if (access(at("merged.snap"), F_OK) == 0)
					fail_msg("%s %u: refused (%s) but merged.snap is there",
						 calls[k].name, n, err);
				failed++;
			} else {
				check_merged();
			}
			assert_int_equal(unlink(at("merged.snap")) == 0 || errno == ENOENT, 1);
			if (stray_files())
				fail_msg("%s %u: a file is left in %s", calls[k].name, n, dir);
			assert_true(n < 2000);
		}
	}
	assert_true(failed > 20);
}

/* Short and interrupted reads and writes are carried on: the merged file is the same. */
static void test_short_and_eintr(void **state)
{
	static const enum fi_call io[] = { FI_PREAD,  FI_PREADV,  FI_READ,
					   FI_PWRITE, FI_PWRITEV, FI_WRITE };
	char err[600];

	(void)state;
	write_three();
	for (size_t k = 0; k < sizeof(io) / sizeof(io[0]); k++)
		for (unsigned n = 1; n < 40; n++) {
			bool fired;

			fi_reset();
			if (n % 2)
				fi_short(io[k], n / 2 + 1);
			else
				fi_eintr(io[k], n / 2);
			assert_int_equal(open_and_merge(NULL, err, sizeof(err)), 0);
			fired = fi_all_fired();
			fi_reset();
			check_merged();
			assert_int_equal(unlink(at("merged.snap")), 0);
			if (!fired)
				break;
		}
}

/*
 * A link that changes after its chain was opened without checking memory: the base cut short
 * fails the merge with EIO, as does a section of the tip whose bytes no longer match.
 */
static void test_changed_under_merge(void **state)
{
	struct snap_merge_result res;
	struct snap_chain c;
	struct snap_file f;
	const struct snap_section *meta;
	char err[600];
	int fd;

	(void)state;
	write_three();
	assert_int_equal(snap_file_open(&f, at("l2.snap"), false, err, sizeof(err)), 0);
	assert_int_equal(snap_chain_open(&c, &f, at("l2.snap"), false, err, sizeof(err)), 0);
	assert_int_equal(truncate(at("base.snap"), (off_t)(SNAP_MEM_ALIGN + 4096)), 0);
	err[0] = 0;
	assert_int_equal(snap_chain_merge(&c, at("merged.snap"), NULL, &res, err, sizeof(err)),
			 -EIO);
	assert_non_null(strstr(err, "merging into "));
	assert_non_null(strstr(err, "merged.snap: Input/output error"));
	assert_int_equal(access(at("merged.snap"), F_OK), -1);
	assert_int_equal(stray_files(), 0);

	meta = snap_file_find(&f, SNAP_SEC_META, "meta");
	assert_non_null(meta);
	fd = open(at("l2.snap"), O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, "[", 1, (off_t)meta->offset), 1);
	close(fd);
	err[0] = 0;
	assert_true(snap_chain_merge(&c, at("merged.snap"), NULL, &res, err, sizeof(err)) < 0);
	assert_non_null(strstr(err, "merging into "));
	assert_int_equal(access(at("merged.snap"), F_OK), -1);
	snap_chain_close(&c);
	snap_file_close(&f);
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

/* A tip path longer than a path may be is refused before anything is opened. */
static void test_path_too_long(void **state)
{
	struct snap_file f = { .fd = -1, .has_parent = true };
	struct snap_chain c;
	char *p = malloc(PATH_MAX + 10), err[600] = "";

	(void)state;
	assert_non_null(p);
	memset(p, 'a', PATH_MAX + 9);
	p[PATH_MAX + 9] = 0;
	assert_int_equal(snap_chain_open(&c, &f, p, true, err, sizeof(err)), -ENAMETOOLONG);
	/* The message names the path (cut to the buffer) before saying why. */
	assert_int_equal(strncmp(err, "snapshot aaaa", 13), 0);
	free(p);
}

/*
 * Where a chain's memory has data (the next full save's backing): runs of different links
 * that touch are one extent; with no memory for the list, an error and no list.
 */
static void test_data_extents(void **state)
{
	struct snap_extent *e = NULL;
	struct snap_chain c;
	struct snap_file f;
	unsigned n = 99;
	char err[600];

	(void)state;
	write_three();
	assert_int_equal(snap_file_open(&f, at("l2.snap"), true, err, sizeof(err)), 0);
	assert_int_equal(snap_chain_open(&c, &f, at("l2.snap"), true, err, sizeof(err)), 0);
	fi_fail(FI_REALLOC, 1, ENOMEM);
	assert_int_equal(snap_chain_data_extents(&c, &e, &n), -ENOMEM);
	assert_true(fi_all_fired());
	fi_reset();
	assert_null(e);
	/* base 0-1, l1 2, l2 3, base 4-9: one extent of ten pages. */
	check_three_extents_close(&c, &f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_first_allocation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_data_extents, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fail_each_call, setup, teardown),
		cmocka_unit_test_setup_teardown(test_short_and_eintr, setup, teardown),
		cmocka_unit_test_setup_teardown(test_changed_under_merge, setup, teardown),
		cmocka_unit_test_setup_teardown(test_path_too_long, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
