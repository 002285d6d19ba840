// SPDX-License-Identifier: BSD-2-Clause
/*
 * Messages (log.h).  Each line is formatted whole and written with one write(2), so lines of
 * different threads never mix; nothing here allocates, so a device thread can report from
 * any state, inside the sandbox too (write and clock_gettime only).
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static _Atomic int level = LOG_INFO;
static _Atomic int file_fd = -1;

static const char *const names[] = {
	[LOG_ERROR] = "error",
	[LOG_WARNING] = "warning",
	[LOG_INFO] = "info",
	[LOG_DEBUG] = "debug",
};

int log_level_parse(const char *name, enum log_level *out)
{
	for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (!strcasecmp(name, names[i])) {
			*out = (enum log_level)i;
			return 0;
		}
	if (!strcasecmp(name, "warn")) {
		*out = LOG_WARNING;
		return 0;
	}
	/* 0 to 3, as numbered above. */
	if (name[0] >= '0' && name[0] <= '3' && !name[1]) {
		*out = (enum log_level)(name[0] - '0');
		return 0;
	}
	return -EINVAL;
}

int log_configure(const char *lvl, unsigned verbose, const char *file, char *err, size_t errlen)
{
	enum log_level l = verbose ? LOG_DEBUG : LOG_INFO;
	int fd = -1;

	if (lvl && log_level_parse(lvl, &l)) {
		snprintf(err, errlen, "log.level=%s: not error, warning, info or debug (0 to 3)",
			 lvl);
		return -EINVAL;
	}
	if (file && *file) {
		fd = open(file, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY,
			  0600);
		if (fd < 0) {
			int e = errno;

			snprintf(err, errlen, "log.file=%s: %s", file,
				 e == ELOOP ? "is a symbolic link (not followed)" : strerror(e));
			return -e;
		}
	}
	level = l;
	if (fd >= 0 || (file && !*file)) {
		int old = atomic_exchange(&file_fd, fd);

		if (old >= 0)
			close(old);
	}
	return 0;
}

int log_enabled(enum log_level l)
{
	return (int)l <= level;
}

void log_reset(void)
{
	int old = atomic_exchange(&file_fd, -1);

	if (old >= 0)
		close(old);
	level = LOG_INFO;
}

/* Writes all of @len bytes unless the descriptor fails (a full disk loses a line, no more). */
static void write_all(int fd, const char *p, size_t len)
{
	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		p += n;
		len -= (size_t)n;
	}
}

void log_msg(enum log_level l, const char *fmt, ...)
{
	char text[4096], line[4200]; /* a whole error report (callers keep 2 KiB ones) */
	int fd = file_fd, n;
	va_list ap;

	if (!log_enabled(l))
		return;
	va_start(ap, fmt);
	n = vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	/* A message cut at the buffer's end says so. */
	if ((size_t)n >= sizeof(text))
		memcpy(text + sizeof(text) - 4, "...", 4);
	n = snprintf(line, sizeof(line), "khyve: %s%s\n", l == LOG_WARNING ? "warning: " : "",
		     text);
	write_all(STDERR_FILENO, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
	if (fd >= 0) {
		struct timespec ts;
		struct tm tm;

		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s\n",
			     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
			     tm.tm_sec, ts.tv_nsec / 1000000, names[l], text);
		write_all(fd, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
	}
}
