// SPDX-License-Identifier: BSD-2-Clause
/*
 * How many descriptors this process holds, for the unit tests that check a failed or finished
 * migration leaves none of its own behind (test_migrate*, test_precopy*): count before, count
 * after, the two must match.
 */
#ifndef KHYVE_TESTS_OPENFDS_H
#define KHYVE_TESTS_OPENFDS_H

#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

/* The entries of /proc/self/fd (the one opendir holds while it reads included). */
static inline unsigned open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	unsigned n = 0;

	assert_non_null(d);
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

#endif
