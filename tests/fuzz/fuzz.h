/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The fuzz framework shared by every libFuzzer target in tests/fuzz/ (fuzz.c; the Makefile's
 * fuzz rules build and run them, tests/fuzz/README.md says how).
 *
 * A target defines LLVMFuzzerTestOneInput and reads its input through a struct fz, a cursor
 * over the bytes libFuzzer hands it: fz_u8() ... fz_u64() take little-endian values from the
 * front and never fail (past the end they read zero), so a target is a plain loop of
 * operations and every input, however short, means something.
 *
 * A target also defines fuzz_seeds(): it builds well-formed inputs with fz_seed_start(),
 * fz_put() and fz_seed_write(), one file each, so that a fresh campaign starts from traffic a
 * real driver makes rather than from nothing.  `make fuzz` runs the binary with
 * FUZZ_WRITE_SEEDS=DIR once to write them; otherwise fuzz_seeds() is never called.
 * fuzz_init(), if a target defines it, runs once before the first input (temporary files...).
 */
#ifndef KHYVE_FUZZ_H
#define KHYVE_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The rest of an input: { data, size } to start. */
struct fz {
	const uint8_t *data;
	size_t size;
};

static inline bool fz_empty(const struct fz *f)
{
	return f->size == 0;
}

/* An @n-byte (n <= 8) little-endian value; missing bytes are zero. */
uint64_t fz_uint(struct fz *f, unsigned n);

static inline uint8_t fz_u8(struct fz *f)
{
	return (uint8_t)fz_uint(f, 1);
}

static inline uint16_t fz_u16(struct fz *f)
{
	return (uint16_t)fz_uint(f, 2);
}

static inline uint32_t fz_u32(struct fz *f)
{
	return (uint32_t)fz_uint(f, 4);
}

static inline uint64_t fz_u64(struct fz *f)
{
	return fz_uint(f, 8);
}

/* An access size, 1, 2 or 4, from one byte (what fz_put_size writes). */
static inline unsigned fz_size(struct fz *f)
{
	return 1U << (fz_u8(f) % 3);
}

/*
 * Up to @len bytes in place: *@got says how many there were (fewer at the end of the input).
 * The pointer is valid (not NULL) even when *@got is 0.
 */
const uint8_t *fz_bytes(struct fz *f, size_t len, size_t *got);

/* A memfd named @name holding @len bytes of @data, for code that wants a file; aborts on error. */
int fz_memfd(const char *name, const void *data, size_t len);

struct vm;
struct config;
/*
 * The bare VM one input runs on: a manual clock, interrupts and MSIs that go nowhere, the name
 * "fuzz", @cfg (when not NULL) freshly initialised as its configuration, and @ram bytes of RAM
 * at 0 (none when 0).  Aborts on error.
 */
void fz_vm_init(struct vm *vm, struct config *cfg, uint64_t ram);

struct dev;
/*
 * What a checkpoint of @d needs (the caller pauses it first where that matters): its saved
 * state loads back into it, as version @version, and saves again to the same bytes.  @name
 * names the device in a failure.
 */
void fz_dev_identity(struct dev *d, unsigned version, const char *name);

/* A check the target makes: on failure print the message and abort (libFuzzer saves the input). */
#define FZ_ASSERT(cond, ...)                                             \
	do {                                                             \
		if (!(cond))                                             \
			fz_fail(__FILE__, __LINE__, #cond, __VA_ARGS__); \
	} while (0)

void fz_fail(const char *file, int line, const char *cond, const char *fmt, ...)
	__attribute__((noreturn, format(printf, 4, 5)));

/* A seed input being built. */
struct fz_seed {
	uint8_t *buf;
	size_t len, cap;
};

void fz_seed_start(struct fz_seed *s);
/* Append the low @n bytes (n <= 8) of @v, little endian: what fz_uint(f, n) reads back. */
void fz_put(struct fz_seed *s, uint64_t v, unsigned n);
void fz_put_bytes(struct fz_seed *s, const void *p, size_t n);
/* Append access size @size (1, 2 or 4) as the byte fz_size() reads back. */
static inline void fz_put_size(struct fz_seed *s, unsigned size)
{
	fz_put(s, size == 4 ? 2 : size == 2 ? 1 : 0, 1);
}
/* Write the seed to $FUZZ_WRITE_SEEDS/@name and free it. */
void fz_seed_write(struct fz_seed *s, const char *name);

/* Defined by the target. */
void fuzz_seeds(void);
/* Optional, defined by the target (weak in fuzz.c). */
void fuzz_init(void);

#endif
