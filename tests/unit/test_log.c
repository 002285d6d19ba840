// SPDX-License-Identifier: BSD-2-Clause
/* khyve's messages (log.c): levels, the "khyve: " prefix, the time-stamped log file. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

static char dir[64], logpath[128], errpath[128];
static int saved_stderr = -1;

/* stderr goes to a file the test reads back. */
static int setup(void **state)
{
	int fd;

	snprintf(dir, sizeof(dir), "/tmp/khyve-test-log-XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(logpath, sizeof(logpath), "%s/khyve.log", dir);
	snprintf(errpath, sizeof(errpath), "%s/stderr", dir);
	fflush(stderr);
	saved_stderr = dup(STDERR_FILENO);
	fd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	dup2(fd, STDERR_FILENO);
	close(fd);
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];

	log_reset();
	dup2(saved_stderr, STDERR_FILENO);
	close(saved_stderr);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd);
}

static char *slurp(const char *path)
{
	static char buf[8192];
	int fd = open(path, O_RDONLY);
	ssize_t n;

	assert_true(fd >= 0);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	assert_true(n >= 0);
	buf[n] = '\0';
	return buf;
}

static void test_default_level(void **state)
{
	char err[256];

	assert_int_equal(log_configure(NULL, 0, NULL, err, sizeof(err)), 0);
	assert_true(log_enabled(LOG_INFO));
	assert_false(log_enabled(LOG_DEBUG));
	log_error("disk %s: gone", "d0");
	log_warn("going on");
	log_info("waiting");
	log_debug("not shown");
	assert_string_equal(slurp(errpath), "khyve: disk d0: gone\n"
					    "khyve: warning: going on\n"
					    "khyve: waiting\n");
}

static void test_levels(void **state)
{
	char err[256];

	assert_int_equal(log_configure("error", 0, NULL, err, sizeof(err)), 0);
	log_warn("hidden");
	log_error("shown");
	/* -v without log.level: debug; log.level given wins over -v. */
	assert_int_equal(log_configure(NULL, 1, NULL, err, sizeof(err)), 0);
	log_debug("debug %d", 1);
	assert_int_equal(log_configure("WARN", 1, NULL, err, sizeof(err)), 0);
	log_info("hidden too");
	log_warn("w");
	assert_string_equal(slurp(errpath), "khyve: shown\nkhyve: debug 1\nkhyve: warning: w\n");
}

static void test_bad_level(void **state)
{
	enum log_level l = LOG_DEBUG;
	char err[256];

	assert_int_equal(log_configure("loud", 0, NULL, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "log.level=loud"));
	/* The previous setting stays. */
	assert_true(log_enabled(LOG_INFO));
	assert_false(log_enabled(LOG_DEBUG));
	assert_int_equal(log_level_parse("", &l), -EINVAL);
	assert_int_equal(l, LOG_DEBUG);
	assert_int_equal(log_level_parse("Debug", &l), 0);
	assert_int_equal(l, LOG_DEBUG);
	assert_int_equal(log_level_parse("1", &l), 0);
	assert_int_equal(l, LOG_WARNING);
	assert_int_equal(log_level_parse("4", &l), -EINVAL);
	assert_int_equal(log_level_parse("10", &l), -EINVAL);
}

static void test_file(void **state)
{
	char err[256];
	regex_t re;
	struct stat st;
	char *text;

	assert_int_equal(log_configure("debug", 0, logpath, err, sizeof(err)), 0);
	log_warn("disk %s changed", "d0");
	log_debug("device rtc: rtc");
	assert_int_equal(stat(logpath, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	text = slurp(logpath);
	assert_int_equal(
		regcomp(&re,
			"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z "
			"warning disk d0 changed\n"
			"[0-9T:.-]+Z debug device rtc: rtc\n$",
			REG_EXTENDED),
		0);
	assert_int_equal(regexec(&re, text, 0, NULL, 0), 0);
	regfree(&re);
	/* stderr has the same lines, without time stamps. */
	assert_string_equal(slurp(errpath), "khyve: warning: disk d0 changed\n"
					    "khyve: device rtc: rtc\n");
	/* Appended to, not truncated, when opened again. */
	log_reset();
	assert_int_equal(log_configure(NULL, 0, logpath, err, sizeof(err)), 0);
	log_error("again");
	assert_non_null(strstr(slurp(logpath), "debug device rtc: rtc\n"));
	assert_non_null(strstr(slurp(logpath), "Z error again\n"));
}

static void test_file_symlink_refused(void **state)
{
	char target[160], err[256];
	struct stat st;

	snprintf(target, sizeof(target), "%s/victim", dir);
	assert_int_equal(symlink(target, logpath), 0);
	assert_int_equal(log_configure(NULL, 0, logpath, err, sizeof(err)), -ELOOP);
	assert_non_null(strstr(err, "symbolic link"));
	assert_int_equal(stat(target, &st), -1); /* nothing created through the link */
	snprintf(target, sizeof(target), "%s/no/such/dir/log", dir);
	assert_int_equal(log_configure(NULL, 0, target, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "No such file"));
}

static void test_long_message_cut(void **state)
{
	char err[256], big[6000], want[2100];
	char *text;

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(log_configure(NULL, 0, NULL, err, sizeof(err)), 0);
	log_error("%s", big);
	log_error("next");
	text = slurp(errpath);
	/* One line, marked as cut, and the next message on a line of its own. */
	assert_non_null(strstr(text, "xxx...\nkhyve: next\n"));
	assert_true(strlen(text) < 4200);
	assert_memory_equal(text, "khyve: xxx", 10);
	/* A report of 2 KiB (khyve's error buffers) is written whole: its end is seen. */
	assert_int_equal(ftruncate(STDERR_FILENO, 0), 0);
	lseek(STDERR_FILENO, 0, SEEK_SET);
	memset(want, 'y', sizeof(want) - 1);
	want[sizeof(want) - 1] = '\0';
	log_error("%s the end", want);
	text = slurp(errpath);
	assert_non_null(strstr(text, "yyy the end\n"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_default_level, setup, teardown),
		cmocka_unit_test_setup_teardown(test_levels, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_level, setup, teardown),
		cmocka_unit_test_setup_teardown(test_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_file_symlink_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_long_message_cut, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
