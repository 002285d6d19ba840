// SPDX-License-Identifier: BSD-2-Clause
/*
 * Configuration files when memory runs out (tests/faultinj.h): the failure is reported as
 * what it was, never as a syntax error.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "faultinj.h"

/* config_load_file with the @nth strdup failing: ENOMEM named as such, on its line. */
static void test_config_oom(void **state)
{
	char path[] = "/tmp/khyve-cfgf-XXXXXX", err[256];
	struct config c;
	int fd = mkstemp(path), ret;

	assert_true(fd >= 0);
	assert_true(write(fd, "cpus = 2\nmemory.size = 1G\n", 26) == 26);
	close(fd);
	for (unsigned nth = 1; nth <= 4; nth++) {
		config_init(&c);
		err[0] = '\0';
		fi_reset();
		fi_fail(FI_STRDUP, nth, 0);
		ret = config_load_file(&c, path, err, sizeof(err));
		fi_reset();
		assert_int_equal(ret, -ENOMEM);
		assert_null(strstr(err, "expected key=value"));
		assert_non_null(strstr(err, strerror(ENOMEM)));
		assert_non_null(strstr(err, nth <= 2 ? ":1:" : ":2:"));
		config_free(&c);
	}
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_config_oom),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
