/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Files in a test's temporary directory, for the tests of the snapshot writers (test_snapshot,
 * test_snapshot_faults, test_snapshot_fakekvm_faults, test_format_faults, test_target): paths
 * in the directory, how many entries it holds (a failed save leaves no temporary file), host
 * paths of a saved configuration made absolute into it, and the previous snapshot (OLD_SNAP) that a failed save must leave at its path as it was.
 * Include after <cmocka.h>.
 */
#ifndef KHYVE_TESTS_TESTFILES_H
#define KHYVE_TESTS_TESTFILES_H

#include <dirent.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

#define OLD_SNAP "the previous snapshot"

/*
 * Entries in @dir other than "." and "..", the names in @skip (NULL-terminated; may be NULL)
 * and any whose name is part of the string @keep (may be NULL).
 */
static inline unsigned testfile_count(const char *dir, const char *const *skip, const char *keep)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	unsigned n = 0;

	assert_non_null(d);
	while ((e = readdir(d))) {
		bool skipped = !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") ||
			       (keep && strstr(keep, e->d_name));

		for (unsigned i = 0; skip && skip[i] && !skipped; i++)
			skipped = !strcmp(e->d_name, skip[i]);
		if (!skipped)
			n++;
	}
	closedir(d);
	return n;
}

/* @dir/@name, in one of four buffers used in turn: up to four such paths can be held at once. */
static inline const char *testfile_at(const char *dir, const char *name)
{
	static char p[4][160];
	static unsigned n;
	char *s = p[n++ % 4];

	snprintf(s, sizeof(p[0]), "%s/%s", dir, name);
	return s;
}

/* Assert that @c's @key is @prefix followed by @dir/@name: a host path made absolute. */
static inline void testfile_check_path(const struct config *c, const char *key, const char *prefix,
				       const char *dir, const char *name)
{
	char want[512];

	snprintf(want, sizeof(want), "%s%s/%s", prefix, dir, name);
	assert_string_equal(config_get(c, key), want);
}

/* Put the previous snapshot at @path. */
static inline void testfile_put_old(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, OLD_SNAP, strlen(OLD_SNAP)), (ssize_t)strlen(OLD_SNAP));
	close(fd);
}

/* Whether the file at @path is the previous snapshot, byte for byte. */
static inline bool testfile_is_old(const char *path)
{
	char buf[64] = "";
	int fd = open(path, O_RDONLY);
	ssize_t n;

	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	return n == (ssize_t)strlen(OLD_SNAP) && !strcmp(buf, OLD_SNAP);
}

/* Assert that the file at @path is the previous snapshot, byte for byte. */
static inline void testfile_check_old(const char *path)
{
	char buf[64] = "";
	int fd = open(path, O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(read(fd, buf, sizeof(buf) - 1), (ssize_t)strlen(OLD_SNAP));
	close(fd);
	assert_string_equal(buf, OLD_SNAP);
}

#endif
