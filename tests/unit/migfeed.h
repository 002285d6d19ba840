// SPDX-License-Identifier: BSD-2-Clause
/*
 * The migration receiver (struct mig_in, snap/migrate.h) fed frame by frame with no socket,
 * for test_migrate and test_migrate_faults: little-endian stores to build the payloads, and
 * a receiver writing into a memfd.
 */
#ifndef KHYVE_TESTS_MIGFEED_H
#define KHYVE_TESTS_MIGFEED_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "snap/format.h"
#include "snap/migrate.h"

static inline void le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline void le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

struct feed {
	int fd;
	struct mig_in m;
	char err[512]; /* the last frame's refusal */
};

static inline void feed_init(struct feed *f)
{
	f->fd = memfd_create("mig-feed", MFD_CLOEXEC);
	assert_true(f->fd >= 0);
	mig_in_init(&f->m, f->fd);
}

static inline void feed_free(struct feed *f)
{
	mig_in_free(&f->m);
	close(f->fd);
}

/* One frame of @type with payload @p (@n bytes): mig_in_frame's result, its message in f->err. */
static inline int feed(struct feed *f, uint32_t type, const void *p, size_t n)
{
	struct mig_frame fr = { type, n, snap_checksum(p, n) };

	f->err[0] = '\0';
	return mig_in_frame(&f->m, &fr, p, f->err, sizeof(f->err));
}

#endif
