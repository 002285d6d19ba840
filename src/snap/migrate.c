// SPDX-License-Identifier: BSD-2-Clause
/*
 * Migration over TCP: the framed stream, the receiver that turns it into a snapshot in memory,
 * the destination's handshake and the source's send (the protocol is in snap/migrate.h).
 */
#include "snap/memory.h"
#include "snap/migrate.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>

#include "config.h"
#include "log.h"
#include "snap/trust.h"
#include "sstream.h"
#include "vm.h"

#define PAGE SNAP_PAGE
#define CHUNK_PAGES (SNAP_EXTENT_MAX / PAGE) /* pages per 2 MiB chunk: one extent at most */
/*
 * The received memory is checksummed per unit of 256 KiB (an extent each), so that the pages
 * the final pause brings are checksummed again with little around them; larger units for
 * larger guests keep the memory map within some 32768 extents.
 */
#define UNIT_PAGES_MIN 64ULL
#define UNITS_MAX 32768ULL
#define IO_TIMEOUT_S 30	    /* a peer that stops reading or writing */
#define READY_TIMEOUT_S 120 /* the destination restoring */
#define CONNECT_TIMEOUT_MS 10000

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void put64(uint8_t *p, uint64_t v)
{
	for (unsigned i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put32(uint8_t *p, uint32_t v)
{
	for (unsigned i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* ---- frames ---- */

static const char *const type_names[] = {
	[MIG_HELLO] = "HELLO", [MIG_SECTION] = "SECTION", [MIG_MEM] = "MEM",
	[MIG_ZERO] = "ZERO",   [MIG_AUTH] = "AUTH",	  [MIG_END] = "END",
	[MIG_READY] = "READY", [MIG_REFUSE] = "REFUSE",	  [MIG_GO] = "GO",
	[MIG_ROUND] = "ROUND", [MIG_RUNNING] = "RUNNING",
};

/* The most a frame of @type may carry: checked before its payload is read. */
static uint64_t max_length(uint32_t type)
{
	switch (type) {
	case MIG_HELLO:
		return 16;
	case MIG_SECTION:
		return MIG_SEC_HDR + SNAP_MAX_SECTION_SIZE;
	case MIG_MEM:
		return 8 + SNAP_EXTENT_MAX;
	case MIG_ZERO:
	case MIG_ROUND:
		return 16;
	case MIG_AUTH:
		return SNAP_MAC_BYTES;
	case MIG_REFUSE:
		return MIG_MAX_MSG;
	default:
		return 0;
	}
}

void mig_frame_encode(uint8_t out[MIG_HDR], uint32_t type, const void *payload, uint64_t len)
{
	put32(out, MIG_MAGIC);
	put32(out + 4, type);
	put64(out + 8, len);
	put64(out + 16, XXH3_64bits(payload, len));
}

int mig_frame_decode(const uint8_t in[MIG_HDR], struct mig_frame *f, char *err, size_t errlen)
{
	if (get32(in) != MIG_MAGIC) {
		snprintf(err, errlen, "not a khyve migration stream (bad frame magic)");
		return -EPROTO;
	}
	f->type = get32(in + 4);
	f->length = get64(in + 8);
	f->checksum = get64(in + 16);
	if (!f->type || f->type > MIG_TYPE_LAST) {
		snprintf(err, errlen, "unknown frame type %u", f->type);
		return -EPROTO;
	}
	if (f->length > max_length(f->type)) {
		snprintf(err, errlen, "%s frame of %llu bytes (at most %llu)", type_names[f->type],
			 (unsigned long long)f->length, (unsigned long long)max_length(f->type));
		return -EPROTO;
	}
	return 0;
}

/* ---- receiving ---- */

void mig_in_init(struct mig_in *m, int fd)
{
	memset(m, 0, sizeof(*m));
	m->fd = fd;
	m->max_mem = MIG_MAX_MEM;
	/* No writer yet: mig_in_free must not close descriptor 0 for it. */
	m->w.fd = m->w.dfd = -1;
}

void mig_in_free(struct mig_in *m)
{
	snap_writer_abort(&m->w);
	if (m->mem)
		munmap(m->mem, m->mem_size);
	m->mem = NULL;
	free(m->pages);
	free(m->changed);
	free(m->sums);
	free(m->map.extents);
	free(m->disks);
	m->pages = m->changed = m->sums = NULL;
	m->map.extents = NULL;
	m->disks = NULL;
}

static size_t words(uint64_t bits)
{
	return (size_t)((bits + 63) / 64);
}

static void set_bit(uint64_t *b, uint64_t i)
{
	b[i / 64] |= 1ULL << (i % 64);
}

static void clear_bit(uint64_t *b, uint64_t i)
{
	b[i / 64] &= ~(1ULL << (i % 64));
}

static bool test_bit(const uint64_t *b, uint64_t i)
{
	return b[i / 64] >> (i % 64) & 1;
}

static int in_hello(struct mig_in *m, const uint8_t *p, uint64_t len, char *err, size_t errlen)
{
	uint32_t version;
	uint64_t nunits;

	if (m->hello || len != 16) {
		snprintf(err, errlen, m->hello ? "a second HELLO" : "HELLO of %llu bytes",
			 (unsigned long long)len);
		return -EPROTO;
	}
	version = get32(p);
	m->flags = get32(p + 4);
	m->mem_size = get64(p + 8);
	if (version != MIG_VERSION) {
		snprintf(err, errlen,
			 "the source speaks migration protocol version %u, this khyve %u", version,
			 MIG_VERSION);
		return -EPROTO;
	}
	if (m->flags & ~MIG_F_LIVE) {
		snprintf(err, errlen, "HELLO flags 0x%x: not ones this khyve knows", m->flags);
		return -EPROTO;
	}
	if (!m->mem_size || m->mem_size % PAGE || m->mem_size > m->max_mem) {
		snprintf(err, errlen, "guest memory size %llu is not one this khyve accepts",
			 (unsigned long long)m->mem_size);
		return -EINVAL;
	}
	m->npages = m->mem_size / PAGE;
	m->unit_pages = UNIT_PAGES_MIN;
	while (m->unit_pages < CHUNK_PAGES && m->npages > UNITS_MAX * m->unit_pages)
		m->unit_pages *= 2;
	nunits = (m->npages + m->unit_pages - 1) / m->unit_pages;
	m->pages = calloc(words(m->npages), 8);
	m->changed = calloc(words(nunits), 8);
	m->sums = calloc(nunits, 8);
	if (!m->pages || !m->changed || !m->sums)
		return -ENOMEM;
	m->hello = true;
	return snap_writer_open_fd(&m->w, m->fd, m->mem_size, err, errlen);
}

/* A section's id as a snapshot has them: NUL-terminated, printable, not empty. */
static bool id_ok(const char *id)
{
	size_t n = strnlen(id, 48);

	if (!n || n == 48)
		return false;
	for (size_t i = 0; i < n; i++)
		if (id[i] < 0x21 || id[i] > 0x7e)
			return false;
	return true;
}

/* The source's memory map: only its regions count (the extents are made here). */
static int in_memmap(struct mig_in *m, const uint8_t *p, uint64_t len, char *err, size_t errlen)
{
	struct sstream s;

	if (m->have_map) {
		snprintf(err, errlen, "a second memory map");
		return -EPROTO;
	}
	free(m->map.extents);
	memset(&m->map, 0, sizeof(m->map));
	m->map.mem_size = m->mem_size;
	ss_init_load(&s, p, len);
	snap_memmap_io(&s, &m->map);
	ss_finish(&s);
	free(m->map.extents);
	m->map.extents = NULL;
	m->map.nextents = 0;
	if (ss_error(&s)) {
		snprintf(err, errlen, "memory map: %s", s.msg);
		return ss_error(&s);
	}
	/* Regions tile the memory area from its start, as in a file (check_memmap again later). */
	for (unsigned i = 0; i < m->map.nregions; i++) {
		const struct snap_region *r = &m->map.regions[i];

		if (r->file_offset < SNAP_MEM_ALIGN || r->size % PAGE || !r->size ||
		    r->file_offset - SNAP_MEM_ALIGN > m->mem_size ||
		    r->size > m->mem_size - (r->file_offset - SNAP_MEM_ALIGN) ||
		    (r->file_offset - SNAP_MEM_ALIGN) % PAGE) {
			snprintf(err, errlen, "memory region %u is malformed", i);
			return -EINVAL;
		}
	}
	m->have_map = true;
	return 0;
}

static int in_section(struct mig_in *m, const uint8_t *p, uint64_t len, char *err, size_t errlen)
{
	uint32_t type, version;
	char id[48];
	int ret;

	if (len < MIG_SEC_HDR) {
		snprintf(err, errlen, "SECTION frame of %llu bytes", (unsigned long long)len);
		return -EPROTO;
	}
	type = get32(p);
	version = get32(p + 4);
	memcpy(id, p + 8, sizeof(id));
	p += MIG_SEC_HDR;
	len -= MIG_SEC_HDR;
	if (!type || type > SNAP_SEC_LAST || !id_ok(id)) {
		snprintf(err, errlen, "a section of type %u with a malformed id", type);
		return -EINVAL;
	}
	/* What the file's reader refuses is refused here, before the source lets go. */
	if (!version) {
		snprintf(err, errlen, "section %s %s has version 0, which no khyve writes",
			 snap_section_type_name(type), id);
		return -EINVAL;
	}
	if (len > MIG_MAX_STATE - m->state_bytes) {
		snprintf(err, errlen, "more than %llu bytes of state",
			 (unsigned long long)MIG_MAX_STATE);
		return -E2BIG;
	}
	m->state_bytes += len;
	for (unsigned i = 0; i < m->w.nsections; i++)
		if (m->w.sections[i].type == type && !strcmp(m->w.sections[i].id, id)) {
			snprintf(err, errlen, "section %s %s sent twice",
				 snap_section_type_name(type), id);
			return -EINVAL;
		}
	if (type == SNAP_SEC_MEMMAP)
		return in_memmap(m, p, len, err, errlen);
	if (type == SNAP_SEC_DISKS) {
		free(m->disks);
		m->disks = malloc(len ? len : 1);
		if (!m->disks)
			return -ENOMEM;
		memcpy(m->disks, p, len);
		m->disks_len = len;
	}
	ret = snap_writer_section(&m->w, type, id, version, p, len);
	if (ret)
		snprintf(err, errlen, "writing section %s: %s", id, strerror(-ret));
	return ret;
}

/* @off and @len (bytes) inside guest memory, page-aligned. */
static int in_range(struct mig_in *m, uint64_t off, uint64_t len, char *err, size_t errlen)
{
	if (off % PAGE || len % PAGE || !len || off > m->mem_size || len > m->mem_size - off) {
		snprintf(err, errlen, "memory frame at 0x%llx+0x%llx is outside guest memory",
			 (unsigned long long)off, (unsigned long long)len);
		return -EINVAL;
	}
	return 0;
}

static void mark(struct mig_in *m, uint64_t off, uint64_t len, bool data)
{
	for (uint64_t pg = off / PAGE; pg < (off + len) / PAGE; pg++) {
		if (data)
			set_bit(m->pages, pg);
		else
			clear_bit(m->pages, pg);
		set_bit(m->changed, pg / m->unit_pages);
	}
}

static int in_mem(struct mig_in *m, const uint8_t *p, uint64_t len, char *err, size_t errlen)
{
	uint64_t off;
	int ret;

	if (len < 8) {
		snprintf(err, errlen, "MEM frame of %llu bytes", (unsigned long long)len);
		return -EPROTO;
	}
	off = get64(p);
	ret = in_range(m, off, len - 8, err, errlen);
	if (!ret)
		ret = snap_writer_memory(&m->w, off, p + 8, len - 8);
	if (ret) {
		if (!err[0])
			snprintf(err, errlen, "writing guest memory: %s", strerror(-ret));
		return ret;
	}
	mark(m, off, len - 8, true);
	m->mem_bytes += len - 8;
	return 0;
}

static int in_zero(struct mig_in *m, const uint8_t *p, uint64_t len, char *err, size_t errlen)
{
	uint64_t off = len == 16 ? get64(p) : 0, n = len == 16 ? get64(p + 8) : 0;
	int ret = len == 16 ? in_range(m, off, n, err, errlen) : -EPROTO;

	if (ret == -EPROTO)
		snprintf(err, errlen, "ZERO frame of %llu bytes", (unsigned long long)len);
	if (ret)
		return ret;
	/* A hole again: what the file would have for a page never written. */
	if (fallocate(m->w.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      (off_t)(m->w.mem_offset + off), (off_t)n) < 0) {
		ret = -errno;
		snprintf(err, errlen, "clearing guest memory: %s", strerror(errno));
		return ret;
	}
	mark(m, off, n, false);
	return 0;
}

static int in_round(struct mig_in *m, const uint8_t *p, uint64_t len, char *err, size_t errlen);

int mig_in_frame(struct mig_in *m, const struct mig_frame *f, const uint8_t *payload, char *err,
		 size_t errlen)
{
	if (errlen)
		err[0] = '\0';
	m->frames++;
	if (m->ended || (!m->hello && f->type != MIG_HELLO)) {
		snprintf(err, errlen, "%s frame %s", type_names[f->type],
			 m->ended ? "after END" : "before HELLO");
		return -EPROTO;
	}
	switch (f->type) {
	case MIG_HELLO:
		return in_hello(m, payload, f->length, err, errlen);
	case MIG_SECTION:
		return in_section(m, payload, f->length, err, errlen);
	case MIG_MEM:
		return in_mem(m, payload, f->length, err, errlen);
	case MIG_ZERO:
		return in_zero(m, payload, f->length, err, errlen);
	case MIG_ROUND:
		return in_round(m, payload, f->length, err, errlen);
	case MIG_AUTH:
		if (f->length != SNAP_MAC_BYTES)
			break;
		memcpy(m->mac, payload, SNAP_MAC_BYTES);
		m->have_mac = true;
		return 0;
	case MIG_END:
		if (f->length)
			break;
		if (!m->have_map || !m->w.meta) {
			snprintf(err, errlen, "END before the %s",
				 m->have_map ? "metadata" : "memory map");
			return -EPROTO;
		}
		m->ended = true;
		return 0;
	default:
		break;
	}
	snprintf(err, errlen, "unexpected %s frame of %llu bytes from the source",
		 type_names[f->type], (unsigned long long)f->length);
	return -EPROTO;
}

/*
 * Extents: one per unit that holds data (UNIT_PAGES_MIN pages, more for large guests), from
 * its first page with data to its last (the pages between read as zero: holes).  A unit's
 * checksum is taken again only if a frame changed it since, so a pre-copied VM's final stop
 * costs the units its last pages touched.
 */
static int add_extent(struct snap_file *f, unsigned *cap, uint64_t off, uint64_t len, uint64_t sum)
{
	if (f->nextents == *cap) {
		unsigned n = *cap ? *cap * 2 : 256;
		struct snap_extent *e = realloc(f->extents, n * sizeof(*e));

		if (!e)
			return -ENOMEM;
		f->extents = e;
		*cap = n;
	}
	f->extents[f->nextents++] = (struct snap_extent){ off, len, sum };
	return 0;
}

/* A unit is whole words of the bitmap: its first and last pages with data come from ctz/clz. */
static int build_extents(struct mig_in *m, const uint8_t *mem, bool sums_only)
{
	uint64_t wpu = m->unit_pages / 64, nunits = (m->npages + m->unit_pages - 1) / m->unit_pages,
		 nwords = words(m->npages);
	unsigned cap = 0;
	int ret = 0;

	if (!sums_only) {
		free(m->map.extents);
		m->map.extents = NULL;
		m->map.nextents = 0;
	}
	for (uint64_t u = 0; u < nunits && !ret; u++) {
		uint64_t w0 = u * wpu, w1 = w0 + wpu < nwords ? w0 + wpu : nwords, lo = UINT64_MAX,
			 hi = 0;

		for (uint64_t w = w0; w < w1; w++) {
			if (!m->pages[w])
				continue;
			if (lo == UINT64_MAX)
				lo = w * 64 + (uint64_t)__builtin_ctzll(m->pages[w]);
			hi = w * 64 + 64 - (uint64_t)__builtin_clzll(m->pages[w]);
		}
		if (lo == UINT64_MAX)
			continue;
		if (test_bit(m->changed, u)) {
			m->sums[u] = snap_checksum(mem + lo * PAGE, (hi - lo) * PAGE);
			clear_bit(m->changed, u);
		}
		if (!sums_only)
			ret = add_extent(&m->map, &cap, m->w.mem_offset + lo * PAGE,
					 (hi - lo) * PAGE, m->sums[u]);
	}
	return ret;
}

/* Regions are the source's; no region boundary may fall inside a 2 MiB chunk with data. */
static int check_chunks(struct mig_in *m, char *err, size_t errlen)
{
	for (unsigned i = 0; i < m->map.nregions; i++) {
		uint64_t start = (m->map.regions[i].file_offset - m->w.mem_offset) / PAGE;

		if (start % CHUNK_PAGES) {
			snprintf(err, errlen, "memory region %u is not 2 MiB aligned", i);
			return -EINVAL;
		}
	}
	return 0;
}

/* The memory area of the file, read-only, for the checksums: mapped once. */
static int map_mem(struct mig_in *m, char *err, size_t errlen)
{
	void *mem;

	if (m->mem)
		return 0;
	mem = mmap(NULL, m->mem_size, PROT_READ, MAP_SHARED, m->w.fd, (off_t)m->w.mem_offset);
	if (mem == MAP_FAILED) {
		int ret = -errno;

		snprintf(err, errlen, "mapping the received memory: %s", strerror(errno));
		return ret;
	}
	m->mem = mem;
	return 0;
}

/*
 * A pre-copy round ended: the units it changed are checksummed now, while the source is still
 * running, so that the final pause checksums only what its own frames changed.
 */
static int in_round(struct mig_in *m, const uint8_t *p, uint64_t len, char *err, size_t errlen)
{
	uint32_t round = len == 16 ? get32(p) : 0;
	int ret;

	if (len != 16 || get32(p + 4)) {
		snprintf(err, errlen, "ROUND frame of %llu bytes", (unsigned long long)len);
		return -EPROTO;
	}
	if (!(m->flags & MIG_F_LIVE) || m->w.nsections || m->have_map) {
		snprintf(err, errlen, "a ROUND frame %s",
			 m->flags & MIG_F_LIVE ? "after the state"
					       : "in a migration that is not live");
		return -EPROTO;
	}
	if (round != m->rounds + 1 || round > MIG_MAX_ROUNDS) {
		snprintf(err, errlen, "ROUND %u after round %u (at most %u)", round, m->rounds,
			 MIG_MAX_ROUNDS);
		return -EPROTO;
	}
	m->rounds = round;
	ret = map_mem(m, err, errlen);
	return ret ? ret : build_extents(m, m->mem, true);
}

int mig_in_finish(struct mig_in *m, char *err, size_t errlen)
{
	struct sstream s;
	int ret;

	if (!m->ended) {
		snprintf(err, errlen, "the stream ended before END");
		return -EPROTO;
	}
	ret = check_chunks(m, err, errlen);
	if (!ret)
		ret = map_mem(m, err, errlen);
	if (ret)
		return ret;
	ret = build_extents(m, m->mem, false);
	if (ret)
		return ret;
	ss_init_save(&s);
	snap_memmap_io(&s, &m->map);
	ret = ss_error(&s);
	if (!ret)
		ret = snap_writer_section(&m->w, SNAP_SEC_MEMMAP, "memory", 1, s.buf, s.len);
	ss_free(&s);
	if (ret) {
		snprintf(err, errlen, "writing the memory map: %s", strerror(-ret));
		return ret;
	}
	return snap_writer_commit(&m->w, err, errlen);
}

/* The MAC a source sends: keyed BLAKE2b over a context, the metadata and the disks section. */
static int mig_mac(const uint8_t key[SNAP_KEY_BYTES], const void *meta, uint64_t mlen,
		   const void *disks, uint64_t dlen, uint8_t out[SNAP_MAC_BYTES])
{
	static const char ctx[] = "khyve migration MAC v1";
	crypto_generichash_state st;
	uint8_t le[8];

	if (sodium_init() < 0)
		return -EIO;
	crypto_generichash_init(&st, key, SNAP_KEY_BYTES, SNAP_MAC_BYTES);
	crypto_generichash_update(&st, (const uint8_t *)ctx, sizeof(ctx));
	put64(le, mlen);
	crypto_generichash_update(&st, le, 8);
	if (mlen)
		crypto_generichash_update(&st, meta, mlen);
	put64(le, dlen);
	crypto_generichash_update(&st, le, 8);
	if (dlen)
		crypto_generichash_update(&st, disks, dlen);
	crypto_generichash_final(&st, out, SNAP_MAC_BYTES);
	sodium_memzero(&st, sizeof(st));
	return 0;
}

bool mig_in_authentic(struct mig_in *m, const struct config *cfg)
{
	uint8_t key[SNAP_KEY_BYTES], mac[SNAP_MAC_BYTES];
	struct snap_keyref ref;
	char err[512];
	bool ok;

	if (!m->have_mac || snap_key_locate(cfg, &ref, err, sizeof(err)) ||
	    snap_key_load(&ref, false, key, err, sizeof(err)))
		return false;
	ok = !mig_mac(key, m->w.meta, m->w.meta_len, m->disks, m->disks_len, mac) &&
	     !sodium_memcmp(mac, m->mac, SNAP_MAC_BYTES);
	sodium_memzero(key, sizeof(key));
	return ok;
}

/* ---- socket I/O ---- */

static int read_full(int fd, void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = read(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN ? -ETIMEDOUT : -errno;
		if (!n)
			return -ECONNRESET;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int mig_writev_full(int fd, struct iovec *iov, int n)
{
	while (n) {
		ssize_t w = writev(fd, iov, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return errno == EAGAIN ? -ETIMEDOUT : -errno;
		while (n && (size_t)w >= iov->iov_len) {
			w -= (ssize_t)iov->iov_len;
			iov++;
			n--;
		}
		if (n) {
			iov->iov_base = (uint8_t *)iov->iov_base + w;
			iov->iov_len -= (size_t)w;
		}
	}
	return 0;
}

void mig_frame_encode2(uint8_t out[MIG_HDR], uint32_t type, const void *a, uint64_t alen,
		       const void *b, uint64_t blen)
{
	XXH3_state_t st;

	XXH3_64bits_reset(&st);
	XXH3_64bits_update(&st, a, alen);
	XXH3_64bits_update(&st, b, blen);
	put32(out, MIG_MAGIC);
	put32(out + 4, type);
	put64(out + 8, alen + blen);
	put64(out + 16, XXH3_64bits_digest(&st));
}

int mig_send_frame(int fd, uint32_t type, const void *a, size_t alen, const void *b, size_t blen)
{
	uint8_t hdr[MIG_HDR];
	struct iovec iov[3] = { { hdr, MIG_HDR }, { (void *)a, alen }, { (void *)b, blen } };

	mig_frame_encode2(hdr, type, a, alen, b, blen);
	return mig_writev_full(fd, iov, 3);
}

/* One frame: header checked, payload (malloc'd, caller frees) read and its checksum checked. */
static int recv_header(int fd, struct mig_frame *f, char *err, size_t errlen)
{
	uint8_t hdr[MIG_HDR];
	int ret;

	ret = read_full(fd, hdr, sizeof(hdr));
	if (ret) {
		snprintf(err, errlen, "%s",
			 ret == -ECONNRESET ? "the connection was closed" : strerror(-ret));
		return ret;
	}
	return mig_frame_decode(hdr, f, err, errlen);
}

/* The payload of @f into @buf, checked against its checksum. */
static int recv_payload(int fd, const struct mig_frame *f, uint8_t *buf, char *err, size_t errlen)
{
	int ret = read_full(fd, buf, f->length);

	if (ret) {
		snprintf(err, errlen, "%s frame cut short: %s", type_names[f->type],
			 ret == -ECONNRESET ? "the connection was closed" : strerror(-ret));
	} else if (XXH3_64bits(buf, f->length) != f->checksum) {
		snprintf(err, errlen, "%s frame: checksum mismatch (corrupted)",
			 type_names[f->type]);
		ret = -EBADMSG;
	}
	return ret;
}

static int recv_frame(int fd, struct mig_frame *f, uint8_t **payload, char *err, size_t errlen)
{
	int ret;

	*payload = NULL;
	ret = recv_header(fd, f, err, errlen);
	if (ret)
		return ret;
	*payload = malloc(f->length ? f->length : 1);
	if (!*payload) {
		snprintf(err, errlen, "%s frame: %s", type_names[f->type], strerror(ENOMEM));
		return -ENOMEM;
	}
	ret = recv_payload(fd, f, *payload, err, errlen);
	if (ret) {
		free(*payload);
		*payload = NULL;
	}
	return ret;
}

int mig_recv(int sock, struct mig_in *m, char *err, size_t errlen)
{
	int ret = 0;

	while (!ret && !m->ended) {
		struct mig_frame f;
		uint8_t *p;

		ret = recv_frame(sock, &f, &p, err, errlen);
		if (!ret)
			ret = mig_in_frame(m, &f, p, err, errlen);
		free(p);
	}
	return ret;
}

static void set_timeouts(int fd, int seconds)
{
	struct timeval tv = { .tv_sec = seconds };

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

int migrate_parse_addr(const char *addr, struct sockaddr_storage *ss, unsigned *sslen, char *err,
		       size_t errlen)
{
	char host[64];
	const char *colon = strrchr(addr, ':'), *h = addr;
	size_t hlen;
	char *end;
	unsigned long port;

	memset(ss, 0, sizeof(*ss));
	if (!colon)
		goto bad;
	hlen = (size_t)(colon - addr);
	if (hlen >= 2 && addr[0] == '[' && addr[hlen - 1] == ']') {
		h++;
		hlen -= 2;
	}
	if (!hlen || hlen >= sizeof(host))
		goto bad;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	errno = 0;
	port = strtoul(colon + 1, &end, 10);
	if (!colon[1] || *end || errno || port > 65535)
		goto bad;
	if (inet_pton(AF_INET, host, &((struct sockaddr_in *)ss)->sin_addr) == 1) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;

		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		*sslen = sizeof(*sin);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &((struct sockaddr_in6 *)ss)->sin6_addr) == 1) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		*sslen = sizeof(*sin6);
		return 0;
	}
bad:
	snprintf(err, errlen,
		 "migration address '%.200s': expected IPv4:PORT or [IPv6]:PORT (numeric, "
		 "e.g. 192.0.2.1:7000)",
		 addr);
	return -EINVAL;
}

/* ---- the destination ---- */

static int incoming_sock = -1; /* the source's connection, from the restore until RUNNING */
/* debug.timing: where the destination's part of the downtime goes (END to running), in ns. */
static struct {
	bool on;
	uint64_t end, finished, restored, ready, go;
} incoming_t;

static void send_refuse(int sock, const char *why)
{
	size_t n = strlen(why);

	if (sock >= 0)
		mig_send_frame(sock, MIG_REFUSE, why, n < MIG_MAX_MSG ? n : MIG_MAX_MSG, NULL, 0);
}

static int listen_accept(const char *addr, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	unsigned sslen;
	char shown[80];
	int one = 1, lfd, fd, ret;

	ret = migrate_parse_addr(addr, &ss, &sslen, err, errlen);
	if (ret)
		return ret;
	lfd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0)
		goto fail;
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lfd, (struct sockaddr *)&ss, sslen) < 0 || listen(lfd, 1) < 0)
		goto fail;
	/* Port 0 takes any free port: say which (tests and scripts read this line). */
	sslen = sizeof(ss);
	getsockname(lfd, (struct sockaddr *)&ss, (socklen_t *)&sslen);
	if (ss.ss_family == AF_INET) {
		char a[INET_ADDRSTRLEN];
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

		inet_ntop(AF_INET, &sin->sin_addr, a, sizeof(a));
		snprintf(shown, sizeof(shown), "%s:%u", a, ntohs(sin->sin_port));
	} else {
		char a[INET6_ADDRSTRLEN];
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

		inet_ntop(AF_INET6, &sin6->sin6_addr, a, sizeof(a));
		snprintf(shown, sizeof(shown), "[%s]:%u", a, ntohs(sin6->sin6_port));
	}
	log_info("waiting for an incoming VM on %s", shown);
	do
		fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	while (fd < 0 && errno == EINTR);
	if (fd < 0)
		goto fail;
	close(lfd);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	set_timeouts(fd, IO_TIMEOUT_S);
	return fd;
fail:
	ret = -errno;
	snprintf(err, errlen, "-R %s: %s", addr, strerror(errno));
	if (lfd >= 0)
		close(lfd);
	return ret;
}

/* The received snapshot is restored as a file is, with the trust the stream earned. */
static int incoming_restore(struct vm *vm, struct config *cfg, struct mig_in *m, bool authentic,
			    char *err, size_t errlen)
{
	enum snap_trust trust;
	char path[64];
	int ret;

	ret = snap_trust_mode(cfg, &trust, err, errlen);
	if (ret)
		return ret;
	/* Host resources from the source only if it proved it is this user's khyve. */
	if (trust == SNAP_TRUST_AUTO && authentic)
		ret = config_set(cfg, "snapshot.trust", "file");
	/* Every frame was checksummed on the way: reading all memory again would add downtime. */
	if (!ret && !config_get(cfg, "snapshot.verify"))
		ret = config_set(cfg, "snapshot.verify", "fast");
	if (ret)
		return ret;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", m->fd);
	return snap_restore(vm, cfg, path, false, err, errlen);
}

/* The first frame, which must be HELLO (mig_in_frame refuses anything else first). */
static int recv_hello(int sock, struct mig_in *m, char *err, size_t errlen)
{
	struct mig_frame f;
	uint8_t *p;
	int ret = recv_frame(sock, &f, &p, err, errlen);

	if (!ret)
		ret = mig_in_frame(m, &f, p, err, errlen);
	free(p);
	return ret;
}

/*
 * The receiver, kept from the restore until the guest runs: unmapping the memory it
 * checksummed and freeing its bitmaps take milliseconds the guest need not wait for.
 */
static struct mig_in incoming_m;
static bool incoming_kept;

void migrate_incoming_cleanup(void)
{
	if (!incoming_kept)
		return;
	mig_in_free(&incoming_m);
	close(incoming_m.fd);
	incoming_kept = false;
}

int migrate_incoming(struct vm *vm, struct config *cfg, const char *addr, char *err, size_t errlen)
{
	struct mig_in *mp = &incoming_m;
	char msg[2048];
	bool authentic;
	int sock, fd, ret;

	sock = listen_accept(addr, err, errlen);
	if (sock < 0)
		return sock;
	fd = memfd_create("khyve-incoming", MFD_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "memfd_create: %s", strerror(errno));
		send_refuse(sock, err);
		close(sock);
		return ret;
	}
	mig_in_init(mp, fd);
	msg[0] = '\0';
	config_get_bool(cfg, "debug.timing", false, &incoming_t.on);
	ret = recv_hello(sock, mp, msg, sizeof(msg));
	/*
	 * Live: the pre-copy rounds take a while, so the KVM VM and its memory slots (the
	 * memfd's mapping) are made now, not in the downtime; the restore takes them if they
	 * fit (vm_premake).  If they cannot be made, the restore makes its own.
	 */
	if (!ret && (mp->flags & MIG_F_LIVE))
		vm_premake(mp->mem_size, fd, mp->w.mem_offset);
	if (!ret)
		ret = mig_recv(sock, mp, msg, sizeof(msg));
	incoming_t.end = now_ns();
	/* Before the writer commits and lets go of the metadata the MAC covers. */
	authentic = !ret && mig_in_authentic(mp, cfg);
	if (!ret)
		ret = mig_in_finish(mp, msg, sizeof(msg));
	incoming_t.finished = now_ns();
	if (ret) {
		snprintf(err, errlen, "incoming VM: %s", msg[0] ? msg : strerror(-ret));
	} else {
		ret = incoming_restore(vm, cfg, mp, authentic, err, errlen);
		incoming_t.restored = now_ns();
		if (ret && !err[0])
			snprintf(err, errlen, "incoming VM: %s", strerror(-ret));
	}
	/* What was made ahead and not taken (a refused VM, another layout). */
	vm_premade_drop();
	if (ret) {
		mig_in_free(mp);
		close(fd);
		send_refuse(sock, err);
		close(sock);
		return ret;
	}
	/* The restored VM's memory maps the file; the rest goes once the guest runs. */
	incoming_kept = true;
	incoming_sock = sock;
	return 0;
}

int migrate_incoming_go(char *err, size_t errlen)
{
	struct mig_frame f;
	char why[1024];
	uint8_t *p;
	int ret;

	if (incoming_sock < 0)
		return 0;
	incoming_t.ready = now_ns();
	ret = mig_send_frame(incoming_sock, MIG_READY, NULL, 0, NULL, 0);
	if (ret) {
		snprintf(err, errlen, "incoming VM: telling the source: %s", strerror(-ret));
		goto out;
	}
	set_timeouts(incoming_sock, READY_TIMEOUT_S);
	ret = recv_frame(incoming_sock, &f, &p, err, errlen);
	free(p);
	if (!ret && (f.type != MIG_GO || f.length)) {
		snprintf(err, errlen, "expected GO, got a %s frame", type_names[f.type]);
		ret = -EPROTO;
	}
	incoming_t.go = now_ns();
	if (!ret)
		return 0; /* the connection stays for RUNNING (migrate_incoming_running) */
	snprintf(why, sizeof(why), "incoming VM: the source did not hand over: %s", err);
	snprintf(err, errlen, "%s", why);
out:
	/* No GO: this copy does not run, and REFUSE lets a source that sent one resume. */
	send_refuse(incoming_sock, err);
	close(incoming_sock);
	incoming_sock = -1;
	return ret;
}

bool migrate_incoming_pending(void)
{
	return incoming_sock >= 0;
}

void migrate_incoming_running(void)
{
	int ret;

	if (incoming_sock < 0)
		return;
	ret = mig_send_frame(incoming_sock, MIG_RUNNING, NULL, 0, NULL, 0);
	/* The guest runs here either way; a source that does not hear it stays paused. */
	if (ret)
		log_warn("incoming VM: telling the source it runs here: %s: the source stays "
			 "paused and must not be resumed (stop it)",
			 strerror(-ret));
	if (incoming_t.on)
		log_info("incoming: after END: memory map %.3f ms, restore %.3f ms, then "
			 "%.3f ms until READY, %.3f ms until GO, %.3f ms until running",
			 (double)(incoming_t.finished - incoming_t.end) / 1e6,
			 (double)(incoming_t.restored - incoming_t.finished) / 1e6,
			 (double)(incoming_t.ready - incoming_t.restored) / 1e6,
			 (double)(incoming_t.go - incoming_t.ready) / 1e6,
			 (double)(now_ns() - incoming_t.go) / 1e6);
	close(incoming_sock);
	incoming_sock = -1;
}

void migrate_incoming_refuse(const char *why)
{
	if (incoming_sock < 0)
		return;
	send_refuse(incoming_sock, why);
	close(incoming_sock);
	incoming_sock = -1;
}

/* ---- the source ---- */

static int out_sink(void *opaque, const struct snap_section *sec, uint64_t offset, const void *buf,
		    uint64_t len)
{
	struct mig_out *o = opaque;
	uint8_t h[MIG_SEC_HDR];
	int ret;

	if (!sec) {
		put64(h, offset);
		ret = mig_send_frame(o->sock, MIG_MEM, h, 8, buf, len);
		o->bytes += 8 + len;
		return ret;
	}
	put32(h, sec->type);
	put32(h + 4, sec->version);
	memset(h + 8, 0, 48);
	memcpy(h + 8, sec->id, strnlen(sec->id, 47));
	if (sec->type == SNAP_SEC_DISKS) {
		free(o->disks);
		o->disks = malloc(len ? len : 1);
		if (!o->disks)
			return -ENOMEM;
		memcpy(o->disks, buf, len);
		o->disks_len = len;
	}
	o->bytes += sizeof(h) + len;
	return mig_send_frame(o->sock, MIG_SECTION, h, sizeof(h), buf, len);
}

static int out_connect(const char *addr, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	struct pollfd pfd;
	unsigned sslen;
	int fd, one = 1, soerr = 0, ret;
	socklen_t elen = sizeof(soerr);

	ret = migrate_parse_addr(addr, &ss, &sslen, err, errlen);
	if (ret)
		return ret;
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		goto fail;
	if (connect(fd, (struct sockaddr *)&ss, sslen) < 0 && errno != EINPROGRESS)
		goto fail;
	pfd = (struct pollfd){ .fd = fd, .events = POLLOUT };
	ret = poll(&pfd, 1, CONNECT_TIMEOUT_MS);
	if (ret <= 0) {
		errno = ret ? errno : ETIMEDOUT;
		goto fail;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &elen) < 0 || soerr) {
		errno = soerr ? soerr : errno;
		goto fail;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	set_timeouts(fd, IO_TIMEOUT_S);
	return fd;
fail:
	ret = -errno;
	snprintf(err, errlen, "connecting to %s: %s (is khyve -R %s waiting there?)", addr,
		 strerror(errno), addr);
	if (fd >= 0)
		close(fd);
	return ret;
}

/* The MAC of the metadata and the disks with this user's host key; none without a key. */
static int out_auth(struct mig_out *o, const struct snap_writer *w)
{
	uint8_t key[SNAP_KEY_BYTES], mac[SNAP_MAC_BYTES];
	struct snap_keyref ref;
	char e[512];
	int ret;

	if (snap_key_locate(o->vm->cfg, &ref, e, sizeof(e)) ||
	    snap_key_load(&ref, true, key, e, sizeof(e)))
		return 0;
	ret = mig_mac(key, w->meta, w->meta_len, o->disks, o->disks_len, mac);
	sodium_memzero(key, sizeof(key));
	if (!ret)
		ret = mig_send_frame(o->sock, MIG_AUTH, mac, sizeof(mac), NULL, 0);
	return ret;
}

/*
 * One frame from the destination: @want, or REFUSE (-ECONNREFUSED with its reason).  Read
 * into the stack, so that no allocation can fail between GO and the answer to it.
 */
static int recv_answer(struct mig_out *o, uint32_t want, const char *what, char *err, size_t errlen)
{
	uint8_t p[MIG_MAX_MSG];
	struct mig_frame f;
	int ret;

	ret = recv_header(o->sock, &f, err, errlen);
	if (!ret && f.length > sizeof(p)) {
		snprintf(err, errlen, "a %s frame of %llu bytes", type_names[f.type],
			 (unsigned long long)f.length);
		ret = -EPROTO;
	}
	if (!ret)
		ret = recv_payload(o->sock, &f, p, err, errlen);
	if (ret) {
		char why[512];

		snprintf(why, sizeof(why), "%s", err);
		snprintf(err, errlen, "the destination did not %s: %s", what, why);
		return ret;
	}
	if (f.type == MIG_REFUSE) {
		char why[MIG_MAX_MSG + 1], safe[MIG_MAX_MSG + 1];

		memcpy(why, p, f.length);
		why[f.length] = '\0';
		snap_sanitize(why, safe, sizeof(safe));
		snprintf(err, errlen, "the destination refused the VM: %s", safe);
		return -ECONNREFUSED;
	}
	if (f.type != want || f.length) {
		snprintf(err, errlen, "the destination answered with a %s frame",
			 type_names[f.type]);
		return -EPROTO;
	}
	return 0;
}

/* After END: READY, then GO; or REFUSE with the destination's reason. */
static int out_handover(struct mig_out *o, char *err, size_t errlen)
{
	int ret;

	set_timeouts(o->sock, READY_TIMEOUT_S);
	ret = recv_answer(o, MIG_READY, "answer", err, errlen);
	if (!ret)
		ret = mig_send_frame(o->sock, MIG_GO, NULL, 0, NULL, 0);
	if (ret && !err[0])
		snprintf(err, errlen, "handing over: %s", strerror(-ret));
	return ret;
}

/*
 * After GO: RUNNING, the guest runs at the destination.  REFUSE: it does not and never will
 * (-ECONNREFUSED).  Anything else leaves it unknown whether the destination runs the guest,
 * and then the source must not run it too (-EINPROGRESS, see mig_out_final).
 */
static int out_confirm(struct mig_out *o, char *err, size_t errlen)
{
	int ret;

	set_timeouts(o->sock, IO_TIMEOUT_S);
	ret = recv_answer(o, MIG_RUNNING, "confirm it runs the VM", err, errlen);
	if (ret && ret != -ECONNREFUSED) {
		char why[768];

		snprintf(why, sizeof(why), "%s", err);
		snprintf(err, errlen,
			 "handed over, but %s; the VM stays paused here: if the destination does "
			 "not run it, resume it here (--resume), else stop it here",
			 why);
		ret = -EINPROGRESS;
	}
	return ret;
}

/*
 * Sending failed: the guest runs again first.  Then a destination that refused the stream (a
 * bad frame, a full disk) may have said why before it closed, and that goes in the message.
 * This side's half of the connection is shut, so a destination still reading learns of the
 * end at once (and answers) instead of after its timeout.
 */
static void resume_then_reason(struct mig_out *o, char *err, size_t errlen)
{
	char ignore[64], why[MIG_MAX_MSG + 64], own[512];

	if (o->vm->paused)
		snap_resume_vm(o->vm, ignore, sizeof(ignore));
	shutdown(o->sock, SHUT_WR);
	set_timeouts(o->sock, 2);
	if (recv_answer(o, MIG_REFUSE, "say why", why, sizeof(why)) != -ECONNREFUSED)
		return;
	snprintf(own, sizeof(own), "%s", err);
	snprintf(err, errlen, "%s; %s", own, why);
}

int mig_out_open(struct mig_out *o, struct vm *vm, const char *addr, uint32_t flags, char *err,
		 size_t errlen)
{
	uint8_t hello[16];
	uint64_t mem = snap_memory_size(vm);
	int ret;

	memset(o, 0, sizeof(*o));
	o->vm = vm;
	o->sock = out_connect(addr, err, errlen);
	if (o->sock < 0)
		return o->sock;
	put32(hello, MIG_VERSION);
	put32(hello + 4, flags);
	put64(hello + 8, mem);
	ret = mig_send_frame(o->sock, MIG_HELLO, hello, sizeof(hello), NULL, 0);
	if (ret) {
		snprintf(err, errlen, "sending to %s: %s", addr, strerror(-ret));
		mig_out_close(o);
	}
	return ret;
}

void mig_out_close(struct mig_out *o)
{
	free(o->disks);
	o->disks = NULL;
	if (o->sock >= 0)
		close(o->sock);
	o->sock = -1;
}

static uint64_t since(uint64_t *t)
{
	uint64_t now = now_ns(), d = now - *t;

	*t = now;
	return d;
}

/* A snapshot stream's memory callback that also times the state before it (res->state_ns). */
struct final_mem {
	snap_stream_mem_fn mem;
	void *opaque;
	struct migrate_result *res;
	uint64_t t;
};

static int final_mem_fn(void *opaque, struct snap_result *sr, char *err, size_t errlen)
{
	struct final_mem *fm = opaque;
	int ret;

	fm->res->state_ns = since(&fm->t);
	ret = fm->mem(fm->opaque, sr, err, errlen);
	fm->res->mem_ns = since(&fm->t);
	return ret;
}

int mig_out_final(struct mig_out *o, snap_stream_mem_fn mem, void *mem_opaque,
		  const struct snap_save_opts *opts, struct migrate_result *res, char *err,
		  size_t errlen)
{
	struct final_mem fm = { .mem = mem, .opaque = mem_opaque, .res = res };
	struct snap_result sr = { 0 };
	struct snap_writer w;
	uint64_t tp, t;
	int ret;

	snap_writer_open_sink(&w, snap_memory_size(o->vm), out_sink, o);
	tp = t = fm.t = now_ns();
	ret = snap_save_stream(o->vm, &w, mem ? final_mem_fn : NULL, &fm, opts, &sr, err, errlen);
	if (ret) {
		snap_writer_abort(&w);
		resume_then_reason(o, err, errlen);
		return ret;
	}
	if (!mem)
		res->state_ns = since(&t);
	/* The VM is paused from here: every failure resumes it. */
	ret = out_auth(o, &w);
	snap_writer_abort(&w);
	if (!ret)
		ret = mig_send_frame(o->sock, MIG_END, NULL, 0, NULL, 0);
	t = now_ns();
	if (ret) {
		snprintf(err, errlen, "sending: %s", strerror(-ret));
		resume_then_reason(o, err, errlen);
		return ret;
	}
	ret = out_handover(o, err, errlen);
	/* Until GO was sent the destination cannot run the guest: it runs here again. */
	if (!ret)
		ret = out_confirm(o, err, errlen);
	if (ret == -EINPROGRESS)
		return ret; /* GO went out and nothing came back: neither side may run it */
	if (ret) {
		char ignore[64];

		snap_resume_vm(o->vm, ignore, sizeof(ignore));
		return ret;
	}
	res->handover_ns = since(&t);
	res->downtime_ns = now_ns() - tp;
	/* The guest runs at the destination now; it never runs here again. */
	vm_request_exit(o->vm, VM_EXIT_SUSPENDED);
	res->stop_ns = sr.pause_stop_ns;
	res->state_ns = res->state_ns > res->stop_ns ? res->state_ns - res->stop_ns : 0;
	res->mem_pages += sr.mem_pages;

	res->zero_pages += sr.zero_pages;
	return 0;
}

int migrate_send(struct vm *vm, const char *addr, const struct snap_save_opts *opts,
		 struct migrate_result *res, char *err, size_t errlen)
{
	struct mig_out o;
	uint64_t t0 = now_ns();
	int ret;

	memset(res, 0, sizeof(*res));
	if (errlen)
		err[0] = '\0';
	if (vm->paused) {
		snprintf(err, errlen, "the VM is paused: resume it before migrating it");
		return -EALREADY;
	}
	ret = mig_out_open(&o, vm, addr, 0, err, errlen);
	if (ret)
		return ret;
	ret = mig_out_final(&o, NULL, NULL, opts, res, err, errlen);
	if (!ret)
		res->rounds = 1;
	res->bytes = o.bytes;
	res->total_ns = now_ns() - t0;
	mig_out_close(&o);
	return ret;
}
