// SPDX-License-Identifier: BSD-2-Clause
/*
 * Configuration files and network backends when memory runs out (tests/faultinj.h): each
 * failure is reported as what it was, never as a syntax error and never with an empty message.
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

#include "backend/net_backend.h"
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

static const char *opt_none(void *ctx, const char *key)
{
	return NULL;
}

static const char *opt_fwd(void *ctx, const char *key)
{
	return strcmp(key, "hostfwd") ? NULL : "tcp:2222-:22";
}

static void rx_drop(void *opaque, const void *frame, size_t len)
{
}

/*
 * Opening slirp with the nth allocation (or eventfd) failing, nth = 1..@upto: it opens when
 * the fault was not reached, else it fails with words; at least one nth fails.
 */
static void sweep(enum fi_call call, net_opt_fn opt, unsigned upto)
{
	struct net_backend_args a = {
		.name = "slirp", .dev = "test-net", .opt = opt, .rx = rx_drop
	};
	unsigned failed = 0;

	for (unsigned nth = 1; nth <= upto; nth++) {
		struct net_backend *nb;
		char err[256] = "";
		bool fired;

		fi_reset();
		fi_fail(call, nth, 0);
		nb = net_backend_open(&a, err, sizeof(err));
		fired = fi_all_fired();
		fi_reset();
		if (nb) {
			assert_false(fired);
			net_backend_close(nb);
			continue;
		}
		if (!fired)
			fail_msg("call %d #%u: refused with no fault: %s", call, nth, err);
		failed++;
		if (!err[0])
			fail_msg("call %d #%u failed with an empty message", call, nth);
	}
	assert_true(failed > 0);
}

static void test_net_backend_oom(void **state)
{
	sweep(FI_CALLOC, opt_none, 8);
	sweep(FI_EVENTFD, opt_none, 2);
	/* Only the copy of the rules: a later one would listen on the port. */
	sweep(FI_STRDUP, opt_fwd, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_config_oom),
		cmocka_unit_test(test_net_backend_oom),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
