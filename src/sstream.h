/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The state stream: the one serializer every device and vCPU uses.
 *
 * A device writes one function per state struct that calls ss_u32(s, &d->x) for each field;
 * the same function saves (s->loading == false: the value is appended) and loads
 * (s->loading == true: the value is read into *v).  Values are fixed-width little endian,
 * never raw struct memory, so the file format does not depend on the compiler's layout.
 *
 * Errors are sticky: the first failure (short input, bad invariant, allocation failure) is
 * recorded, later calls do nothing, and the caller checks ss_error() once at the end.  A load
 * decodes into a staging copy, validates, and commits only if ss_error() is 0 after
 * ss_finish(); nothing is half-restored.
 */
#ifndef KHYVE_SSTREAM_H
#define KHYVE_SSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sstream {
	uint8_t *buf;
	size_t len; /* bytes in buf (save: written so far; load: input size) */
	size_t cap; /* save: allocated size */
	size_t pos; /* load: read position */
	bool loading;
	int err;       /* 0 or the first negative errno */
	char msg[256]; /* what went wrong, for the user */
};

void ss_init_save(struct sstream *s);
void ss_init_load(struct sstream *s, const void *buf, size_t len);
void ss_free(struct sstream *s);

void ss_u8(struct sstream *s, uint8_t *v);
void ss_u16(struct sstream *s, uint16_t *v);
void ss_u32(struct sstream *s, uint32_t *v);
void ss_u64(struct sstream *s, uint64_t *v);
void ss_i32(struct sstream *s, int32_t *v);
void ss_i64(struct sstream *s, int64_t *v);
void ss_bool(struct sstream *s, bool *v);
void ss_bytes(struct sstream *s, void *p, size_t n);

/* Arrays of fixed-width values, element by element. */
void ss_u8_array(struct sstream *s, uint8_t *v, size_t n);
void ss_u32_array(struct sstream *s, uint32_t *v, size_t n);
void ss_u64_array(struct sstream *s, uint64_t *v, size_t n);

/*
 * An invariant that must hold on both sides (a FIFO size, a register count): save writes it,
 * load reads it and fails the stream with "WHAT: saved N, expected M" if it differs.
 */
void ss_expect_u32(struct sstream *s, uint32_t value, const char *what);

/* Load-side range check for a value already read: fails the stream when v > max. */
void ss_check_max(struct sstream *s, uint64_t v, uint64_t max, const char *what);

/* Record an error (only the first one is kept). Returns s->err. */
int ss_fail(struct sstream *s, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Load: fail if input is left over (a section longer than its reader expects). */
int ss_finish(struct sstream *s);

static inline int ss_error(const struct sstream *s)
{
	return s->err;
}

#endif
