/* SPDX-License-Identifier: BSD-2-Clause */
#ifndef KHYVE_VERSION_H
#define KHYVE_VERSION_H

#include <stdio.h>

#define KHYVE_VERSION "0.1.0"

/* The git commit khyve was built from ("abcdef123456", "-dirty" appended), or "unknown". */
extern const char khyve_commit[];

/* "PROG 0.1.0 (commit abcdef123456), snapshot format 1" and a newline: --version. */
void version_print(FILE *f, const char *prog);

#endif
