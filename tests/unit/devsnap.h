/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Snapshot helpers shared by the device unit tests: save a device, load bytes into one, and
 * check that a refused load leaves the device exactly as it was.
 */
#ifndef KHYVE_TEST_DEVSNAP_H
#define KHYVE_TEST_DEVSNAP_H

#include <stdlib.h>
#include <string.h>

#include "dev/dev.h"
#include "sstream.h"

/* Save @d into @s (initialised here; the caller frees it); the test fails if save fails. */
static inline void devsnap_save(struct dev *d, struct sstream *s)
{
	ss_init_save(s);
	assert_int_equal(d->ops->save(d, s), 0);
	assert_int_equal(ss_error(s), 0);
}

/* The saved bytes of @d in a malloc'ed buffer of *@len bytes. */
static inline uint8_t *devsnap_save_copy(struct dev *d, size_t *len)
{
	struct sstream s;
	uint8_t *buf;

	devsnap_save(d, &s);
	buf = malloc(s.len ? s.len : 1);
	memcpy(buf, s.buf, s.len);
	*len = s.len;
	ss_free(&s);
	return buf;
}

/* Load @len bytes saved at @version into @d: 0 or the device's -errno. */
static inline int devsnap_load(struct dev *d, const void *buf, size_t len, unsigned version)
{
	struct sstream s;
	int ret;

	ss_init_load(&s, buf, len);
	ret = d->ops->load(d, &s, version);
	if (!ret)
		ret = ss_error(&s);
	return ret;
}

/* A load of @buf must fail and leave @d saving exactly the bytes it saved before. */
static inline void devsnap_expect_refused(struct dev *d, const void *buf, size_t len,
					  unsigned version)
{
	struct sstream before, after;

	devsnap_save(d, &before);
	assert_int_not_equal(devsnap_load(d, buf, len, version), 0);
	devsnap_save(d, &after);
	assert_int_equal(before.len, after.len);
	assert_memory_equal(before.buf, after.buf, before.len);
	ss_free(&before);
	ss_free(&after);
}

#endif
