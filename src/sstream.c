// SPDX-License-Identifier: BSD-2-Clause
/* The state stream: see sstream.h. */
#include "sstream.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ss_init_save(struct sstream *s)
{
	memset(s, 0, sizeof(*s));
}

void ss_init_load(struct sstream *s, const void *buf, size_t len)
{
	memset(s, 0, sizeof(*s));
	s->buf = (uint8_t *)buf;
	s->len = len;
	s->loading = true;
}

void ss_free(struct sstream *s)
{
	if (!s->loading)
		free(s->buf);
	s->buf = NULL;
	s->len = s->cap = 0;
}

int ss_fail(struct sstream *s, int err, const char *fmt, ...)
{
	va_list ap;

	if (s->err)
		return s->err;
	s->err = err;
	va_start(ap, fmt);
	vsnprintf(s->msg, sizeof(s->msg), fmt, ap);
	va_end(ap);
	return s->err;
}

static uint8_t *ss_room(struct sstream *s, size_t n)
{
	uint8_t *p;

	if (s->err)
		return NULL;
	if (s->loading) {
		if (n > s->len - s->pos) {
			ss_fail(s, -EINVAL,
				"state ends early (wanted %zu bytes at offset %zu of %zu)", n,
				s->pos, s->len);
			return NULL;
		}
		p = s->buf + s->pos;
		s->pos += n;
		return p;
	}
	if (n > s->cap - s->len) {
		size_t cap = s->cap ? s->cap : 256;
		uint8_t *nb;

		while (cap - s->len < n)
			cap *= 2;
		nb = realloc(s->buf, cap);
		if (!nb) {
			ss_fail(s, -ENOMEM, "out of memory");
			return NULL;
		}
		s->buf = nb;
		s->cap = cap;
	}
	p = s->buf + s->len;
	s->len += n;
	return p;
}

/* Fixed-width little-endian coding of an unsigned value of @n bytes. */
static void ss_uint(struct sstream *s, uint64_t *v, unsigned n)
{
	uint8_t *p = ss_room(s, n);
	uint64_t x = 0;

	if (!p)
		return;
	if (s->loading) {
		for (unsigned i = 0; i < n; i++)
			x |= (uint64_t)p[i] << (8 * i);
		*v = x;
	} else {
		for (unsigned i = 0; i < n; i++)
			p[i] = (uint8_t)(*v >> (8 * i));
	}
}

#define SS_WIDTH(name, type, n)               \
	void name(struct sstream *s, type *v) \
	{                                     \
		uint64_t x = (uint64_t)*v;    \
		ss_uint(s, &x, n);            \
		if (s->loading && !s->err)    \
			*v = (type)x;         \
	}

SS_WIDTH(ss_u8, uint8_t, 1)
SS_WIDTH(ss_u16, uint16_t, 2)
SS_WIDTH(ss_u32, uint32_t, 4)
SS_WIDTH(ss_u64, uint64_t, 8)
SS_WIDTH(ss_i32, int32_t, 4)
SS_WIDTH(ss_i64, int64_t, 8)

void ss_bool(struct sstream *s, bool *v)
{
	uint8_t x = *v;

	ss_u8(s, &x);
	if (s->loading && !s->err) {
		if (x > 1)
			ss_fail(s, -EINVAL, "boolean field holds %u", x);
		else
			*v = x;
	}
}

void ss_bytes(struct sstream *s, void *p, size_t n)
{
	uint8_t *q = ss_room(s, n);

	if (!q)
		return;
	if (s->loading)
		memcpy(p, q, n);
	else
		memcpy(q, p, n);
}

void ss_u8_array(struct sstream *s, uint8_t *v, size_t n)
{
	ss_bytes(s, v, n);
}

void ss_u32_array(struct sstream *s, uint32_t *v, size_t n)
{
	for (size_t i = 0; i < n && !s->err; i++)
		ss_u32(s, &v[i]);
}

void ss_u64_array(struct sstream *s, uint64_t *v, size_t n)
{
	for (size_t i = 0; i < n && !s->err; i++)
		ss_u64(s, &v[i]);
}

void ss_expect_u32(struct sstream *s, uint32_t value, const char *what)
{
	uint32_t v = value;

	ss_u32(s, &v);
	if (s->loading && !s->err && v != value)
		ss_fail(s, -EINVAL, "%s: saved %u, expected %u", what, v, value);
}

void ss_check_max(struct sstream *s, uint64_t v, uint64_t max, const char *what)
{
	if (s->loading && !s->err && v > max)
		ss_fail(s, -EINVAL, "%s: %llu is out of range (max %llu)", what,
			(unsigned long long)v, (unsigned long long)max);
}

int ss_finish(struct sstream *s)
{
	if (s->loading && !s->err && s->pos != s->len)
		ss_fail(s, -EINVAL, "%zu bytes of state left over", s->len - s->pos);
	return s->err;
}
