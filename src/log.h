/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * khyve's messages: one line each, "khyve: " and the text on stderr, and with -o log.file=PATH
 * the same lines with a UTC timestamp and their level in that file.  -v or -o log.level=
 * chooses how much is said: error, warning, info (the default) or debug.
 *
 * A message says what it is about once: the caller that knows the object (a device, a disk, a
 * vCPU) names it, the code below it says only what went wrong.
 */
#ifndef KHYVE_LOG_H
#define KHYVE_LOG_H

#include <stddef.h>

enum log_level { LOG_ERROR, LOG_WARNING, LOG_INFO, LOG_DEBUG };

/*
 * Applies log.level (a name, or NULL for the default raised by @verbose, the number of -v) and
 * log.file (a path, or NULL).  The file is opened for appending, created 0600, never through
 * a symbolic link.  0, or -errno with @err saying why (the previous setting stays).
 */
int log_configure(const char *level, unsigned verbose, const char *file, char *err, size_t errlen);
/* The level named @name ("warning"; "warn" or "1" too) into *@out: 0, or -EINVAL. */
int log_level_parse(const char *name, enum log_level *out);
/* Would a message at @level be written anywhere? */
int log_enabled(enum log_level level);
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Closes the log file (tests; khyve keeps it until it exits). */
void log_reset(void);

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
