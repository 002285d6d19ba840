/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Crafting hostile snapshot files for tests: load a file's header and section table, change
 * anything, and store it back with every checksum recomputed, as an attacker would (XXH3 is
 * not a signature).  The layout is written out here independently of format.c, from
 * doc/snapshot-format.md, so a test also checks that the code matches the documentation.
 */
#ifndef KHYVE_TEST_SNAPCRAFT_H
#define KHYVE_TEST_SNAPCRAFT_H

#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#define CRAFT_MAX 64
/* Header field offsets (doc/snapshot-format.md). */
#define CH_VERSION 8
#define CH_HSIZE 12
#define CH_NSEC 56
#define CH_TOFF 60
#define CH_TLEN 68
#define CH_TSUM 76
#define CH_MOFF 84
#define CH_MSIZE 92
#define CH_SUM 100
#define CH_AUTH 108
#define CH_MAC 112
#define CH_END 144
#define CRAFT_ENTRY 80

struct craft {
	uint8_t page[4096];
	uint32_t nsec;
	uint64_t toff, tlen, moff, msize;
	struct craft_sec {
		uint32_t type, version;
		char id[48];
		uint64_t offset, length, checksum;
		uint8_t *data;
	} sec[CRAFT_MAX];
	uint8_t tail[256]; /* extra bytes to store after the table */
	size_t ntail;
};

static inline uint64_t craft_get(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static inline void craft_put(uint8_t *p, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline void craft_pread(int fd, void *buf, uint64_t len, uint64_t off)
{
	if (pread(fd, buf, len, (off_t)off) != (ssize_t)len)
		abort();
}

static inline void craft_pwrite(int fd, const void *buf, uint64_t len, uint64_t off)
{
	if (len && pwrite(fd, buf, len, (off_t)off) != (ssize_t)len)
		abort();
}

static inline void craft_load(struct craft *c, const char *path)
{
	int fd = open(path, O_RDONLY);
	uint8_t *t;

	memset(c, 0, sizeof(*c));
	if (fd < 0)
		abort();
	craft_pread(fd, c->page, sizeof(c->page), 0);
	c->nsec = (uint32_t)craft_get(c->page + CH_NSEC, 4);
	c->toff = craft_get(c->page + CH_TOFF, 8);
	c->tlen = craft_get(c->page + CH_TLEN, 8);
	c->moff = craft_get(c->page + CH_MOFF, 8);
	c->msize = craft_get(c->page + CH_MSIZE, 8);
	if (c->nsec > CRAFT_MAX || c->tlen != c->nsec * CRAFT_ENTRY)
		abort();
	t = malloc(c->tlen);
	craft_pread(fd, t, c->tlen, c->toff);
	for (unsigned i = 0; i < c->nsec; i++) {
		const uint8_t *e = t + i * CRAFT_ENTRY;
		struct craft_sec *s = &c->sec[i];

		s->type = (uint32_t)craft_get(e, 4);
		s->version = (uint32_t)craft_get(e + 4, 4);
		memcpy(s->id, e + 8, 48);
		s->offset = craft_get(e + 56, 8);
		s->length = craft_get(e + 64, 8);
		s->checksum = craft_get(e + 72, 8);
		s->data = malloc(s->length ? s->length : 1);
		craft_pread(fd, s->data, s->length, s->offset);
	}
	free(t);
	close(fd);
}

static inline void craft_free(struct craft *c)
{
	for (unsigned i = 0; i < c->nsec; i++)
		free(c->sec[i].data);
	c->nsec = 0;
}

static inline int craft_find(const struct craft *c, const char *id)
{
	for (unsigned i = 0; i < c->nsec; i++)
		if (!strcmp(c->sec[i].id, id))
			return (int)i;
	abort();
}

/* New bytes for section @i, with their checksum. */
static inline void craft_set(struct craft *c, unsigned i, const void *buf, uint64_t len)
{
	free(c->sec[i].data);
	c->sec[i].data = malloc(len ? len : 1);
	memcpy(c->sec[i].data, buf, len);
	c->sec[i].length = len;
	c->sec[i].checksum = XXH3_64bits(buf, len);
}

/* Put the sections one after another after the memory area, the table after them. */
static inline void craft_relayout(struct craft *c)
{
	uint64_t pos = c->moff + c->msize;

	for (unsigned i = 0; i < c->nsec; i++) {
		c->sec[i].offset = pos;
		pos += c->sec[i].length;
	}
	c->toff = pos;
}

/*
 * Write everything back: sections at their offsets, the table at c->toff (then c->tail), the
 * header with recomputed table and header checksums; the file ends after the tail.  The
 * memory area and the authentication block are left as they are.
 */
static inline void craft_store(struct craft *c, const char *path)
{
	int fd = open(path, O_WRONLY);
	uint8_t *t;
	uint64_t end;

	if (fd < 0)
		abort();
	c->tlen = (uint64_t)c->nsec * CRAFT_ENTRY;
	t = calloc(1, c->tlen ? c->tlen : 1);
	for (unsigned i = 0; i < c->nsec; i++) {
		uint8_t *e = t + i * CRAFT_ENTRY;
		const struct craft_sec *s = &c->sec[i];

		craft_put(e, s->type, 4);
		craft_put(e + 4, s->version, 4);
		memcpy(e + 8, s->id, 48);
		craft_put(e + 56, s->offset, 8);
		craft_put(e + 64, s->length, 8);
		craft_put(e + 72, s->checksum, 8);
		craft_pwrite(fd, s->data, s->length, s->offset);
	}
	craft_pwrite(fd, t, c->tlen, c->toff);
	craft_pwrite(fd, c->tail, c->ntail, c->toff + c->tlen);
	end = c->toff + c->tlen + c->ntail;
	if (ftruncate(fd, (off_t)end))
		abort();
	craft_put(c->page + CH_NSEC, c->nsec, 4);
	craft_put(c->page + CH_TOFF, c->toff, 8);
	craft_put(c->page + CH_TLEN, c->tlen, 8);
	craft_put(c->page + CH_TSUM, XXH3_64bits(t, c->tlen), 8);
	craft_put(c->page + CH_MOFF, c->moff, 8);
	craft_put(c->page + CH_MSIZE, c->msize, 8);
	craft_put(c->page + CH_SUM, XXH3_64bits(c->page, CH_SUM), 8);
	craft_pwrite(fd, c->page, sizeof(c->page), 0);
	free(t);
	close(fd);
}

#endif
