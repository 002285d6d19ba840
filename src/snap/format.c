// SPDX-License-Identifier: BSD-2-Clause
/* The snapshot file: writing it atomically, and validating all of it before use. */
#include "snap/format.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <sodium.h>
#include <unistd.h>
#include <xxhash.h>

#include "snap/trust.h"
#include "sstream.h"
#include "version.h"

#define HEADER_SIZE SNAP_PAGE
#define TABLE_ENTRY (4 + 4 + 48 + 8 + 8 + 8)
/* The header's fields (header_io), their checksum, then the authentication block. */
#define HEADER_FIELDS 100
#define AUTH_OFF (HEADER_FIELDS + 8)
#define AUTH_END (AUTH_OFF + 4 + SNAP_MAC_BYTES)

struct snap_header {
	uint32_t format_version;
	char khyve_version[32];
	uint64_t created_ns;
	uint32_t nsections;
	uint64_t table_offset, table_length, table_checksum;
	uint64_t mem_offset, mem_size;
};

uint64_t snap_checksum(const void *buf, size_t len)
{
	return XXH3_64bits(buf, len);
}

static const char *const section_names[] = {
	[SNAP_SEC_META] = "meta",   [SNAP_SEC_VM] = "vm",	  [SNAP_SEC_VCPU] = "vcpu",
	[SNAP_SEC_DEV] = "dev",	    [SNAP_SEC_MEMMAP] = "memmap", [SNAP_SEC_DISKS] = "disks",
	[SNAP_SEC_CHAIN] = "chain",
};

const char *snap_section_type_name(uint32_t type)
{
	if (type < sizeof(section_names) / sizeof(section_names[0]) && section_names[type])
		return section_names[type];
	return "unknown";
}

/* The header's fields, in order, through the one serializer. */
static void header_io(struct sstream *s, struct snap_header *h)
{
	uint32_t header_size = HEADER_SIZE;
	char magic[8];

	memcpy(magic, SNAP_MAGIC, 8);
	ss_bytes(s, magic, 8);
	if (s->loading && !s->err && memcmp(magic, SNAP_MAGIC, 8))
		ss_fail(s, -EINVAL, "not a khyve snapshot (bad magic)");
	ss_u32(s, &h->format_version);
	if (s->loading && !s->err &&
	    (h->format_version < SNAP_FORMAT_MIN_VERSION ||
	     h->format_version > SNAP_FORMAT_VERSION))
		ss_fail(s, -EINVAL, "format version %u is %s than this khyve supports (%u to %u)",
			h->format_version,
			h->format_version > SNAP_FORMAT_VERSION ? "newer" : "older",
			SNAP_FORMAT_MIN_VERSION, SNAP_FORMAT_VERSION);
	ss_expect_u32(s, header_size, "header size");
	ss_bytes(s, h->khyve_version, sizeof(h->khyve_version));
	ss_u64(s, &h->created_ns);
	ss_u32(s, &h->nsections);
	ss_u64(s, &h->table_offset);
	ss_u64(s, &h->table_length);
	ss_u64(s, &h->table_checksum);
	ss_u64(s, &h->mem_offset);
	ss_u64(s, &h->mem_size);
}

static void section_io(struct sstream *s, struct snap_section *sec)
{
	ss_u32(s, &sec->type);
	ss_u32(s, &sec->version);
	ss_bytes(s, sec->id, sizeof(sec->id));
	ss_u64(s, &sec->offset);
	ss_u64(s, &sec->length);
	ss_u64(s, &sec->checksum);
}

static int pwrite_all(int fd, const void *buf, uint64_t len, uint64_t off)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = pwrite(fd, p, len > (1u << 30) ? (1u << 30) : len, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		off += (uint64_t)n;
		len -= (uint64_t)n;
	}
	return 0;
}

static int pread_all(int fd, void *buf, uint64_t len, uint64_t off)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = pread(fd, p, len > (1u << 30) ? (1u << 30) : len, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		p += n;
		off += (uint64_t)n;
		len -= (uint64_t)n;
	}
	return 0;
}

/* ---- writing ---- */

int snap_writer_open(struct snap_writer *w, const char *path, uint64_t mem_size, char *err,
		     size_t errlen)
{
	char dir[4096], base[4096];
	int ret;

	memset(w, 0, sizeof(*w));
	w->fd = w->dfd = -1;
	if (strlen(path) >= sizeof(w->path) || !*path) {
		snprintf(err, errlen, "%s: path too long", path);
		return -ENAMETOOLONG;
	}
	strcpy(w->path, path);
	strcpy(dir, path);
	strcpy(base, path);
	/* The temporary file sits beside the target so rename() is atomic. */
	snprintf(w->tmppath, sizeof(w->tmppath), "%s/.%s.XXXXXX", dirname(dir), basename(base));
	w->fd = mkostemp(w->tmppath, O_CLOEXEC);
	if (w->fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "cannot create a file in the directory of %s: %s", path,
			 strerror(errno));
		return ret;
	}
	fchmod(w->fd, 0600);
	w->mem_offset = SNAP_MEM_ALIGN;
	w->mem_size = mem_size;
	w->pos = w->mem_offset + mem_size;
	/* Size the file now: memory the guest never touched stays a hole. */
	if (ftruncate(w->fd, (off_t)w->pos) < 0) {
		ret = -errno;
		snprintf(err, errlen, "%s: %s", w->tmppath, strerror(errno));
		snap_writer_abort(w);
		return ret;
	}
	return 0;
}

int snap_writer_open_fd(struct snap_writer *w, int fd, uint64_t mem_size, char *err, size_t errlen)
{
	memset(w, 0, sizeof(*w));
	snprintf(w->path, sizeof(w->path), "the snapshot in memory");
	w->dfd = -1;
	w->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (w->fd < 0) {
		snprintf(err, errlen, "duplicating the snapshot descriptor: %s", strerror(errno));
		return -errno;
	}
	w->mem_offset = SNAP_MEM_ALIGN;
	w->mem_size = mem_size;
	w->pos = w->mem_offset + mem_size;
	if (ftruncate(w->fd, (off_t)w->pos) < 0) {
		int ret = -errno;

		snprintf(err, errlen, "sizing the snapshot: %s", strerror(errno));
		snap_writer_abort(w);
		return ret;
	}
	return 0;
}

void snap_writer_open_sink(struct snap_writer *w, uint64_t mem_size,
			   int (*sink)(void *opaque, const struct snap_section *sec,
				       uint64_t offset, const void *buf, uint64_t len),
			   void *opaque)
{
	memset(w, 0, sizeof(*w));
	w->fd = w->dfd = -1;
	w->mem_offset = SNAP_MEM_ALIGN;
	w->mem_size = mem_size;
	w->pos = w->mem_offset + mem_size;
	w->sink = sink;
	w->sink_opaque = opaque;
}

bool snap_writer_direct(struct snap_writer *w)
{
	char self[64];

	if (w->dfd >= 0 || w->fd < 0)
		return w->dfd >= 0;
	/* A second open file of the same inode (O_DIRECT is a flag of the open file, not the fd). */
	snprintf(self, sizeof(self), "/proc/self/fd/%d", w->fd);
	w->dfd = open(self, O_WRONLY | O_DIRECT | O_CLOEXEC);
	return w->dfd >= 0;
}

/* Whole pages at page-aligned addresses: what O_DIRECT takes on every file system. */
static bool direct_fits(const struct snap_writer *w, const void *buf, uint64_t len, uint64_t at)
{
	return w->dfd >= 0 && !(((uintptr_t)buf | len | at) & (SNAP_DIRECT_ALIGN - 1));
}

/* Guest memory at @at in the file: directly where it can go so, else through the page cache. */
static int write_memory(struct snap_writer *w, const void *buf, uint64_t len, uint64_t at)
{
	if (direct_fits(w, buf, len, at)) {
		int ret = pwrite_all(w->dfd, buf, len, at);

		if (ret != -EINVAL)
			return ret;
		/* The file system wants more than page alignment: no more direct writes. */
		close(w->dfd);
		w->dfd = -1;
	}
	return pwrite_all(w->fd, buf, len, at);
}

int snap_writer_memory(struct snap_writer *w, uint64_t offset, const void *buf, uint64_t len)
{
	int ret;

	if (offset > w->mem_size || len > w->mem_size - offset)
		return -EINVAL;
	if (w->sink)
		ret = w->sink(w->sink_opaque, NULL, offset, buf, len);
	else
		ret = write_memory(w, buf, len, w->mem_offset + offset);
	if (!ret)
		w->bytes += len;
	return ret;
}

int snap_writer_memory_cached(struct snap_writer *w, uint64_t offset, const void *buf, uint64_t len)
{
	int ret;

	if (w->sink || offset > w->mem_size || len > w->mem_size - offset)
		return -EINVAL;
	ret = pwrite_all(w->fd, buf, len, w->mem_offset + offset);
	if (!ret)
		w->bytes += len;
	return ret;
}

int snap_writer_section(struct snap_writer *w, uint32_t type, const char *id, uint32_t version,
			const void *buf, uint64_t len)
{
	struct snap_section *sec;
	int ret;

	if (w->nsections == w->cap) {
		unsigned cap = w->cap ? w->cap * 2 : 32;
		struct snap_section *n = realloc(w->sections, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		w->sections = n;
		w->cap = cap;
	}
	if (w->nsections >= SNAP_MAX_SECTIONS || len > SNAP_MAX_SECTION_SIZE)
		return -E2BIG;
	sec = &w->sections[w->nsections];
	memset(sec, 0, sizeof(*sec));
	sec->type = type;
	sec->version = version;
	snprintf(sec->id, sizeof(sec->id), "%s", id);
	sec->offset = w->pos;
	sec->length = len;
	sec->checksum = snap_checksum(buf, len);
	if (type == SNAP_SEC_META) {
		/* The MAC covers the metadata (it holds the configuration): keep its bytes. */
		void *copy = malloc(len ? len : 1);

		if (!copy)
			return -ENOMEM;
		memcpy(copy, buf, len);
		free(w->meta);
		w->meta = copy;
		w->meta_len = len;
	}
	ret = w->sink ? w->sink(w->sink_opaque, sec, 0, buf, len)
		      : pwrite_all(w->fd, buf, len, w->pos);
	if (ret)
		return ret;
	w->pos += len;
	w->bytes += len;
	w->nsections++;
	return 0;
}

/*
 * The MAC: keyed BLAKE2b-256 over a context string and, each with its length, the header up to
 * the end of the authentication scheme field, the section table (every section's checksum) and
 * the metadata.  What is not covered is either covered by a checksum in the table (sections) or
 * by the memory map's checksums (memory), and is guest-visible state that is validated anyway.
 */
static int snap_mac(const uint8_t key[SNAP_KEY_BYTES], const uint8_t *hdr, size_t hlen,
		    const void *table, uint64_t tlen, const void *meta, uint64_t mlen,
		    uint8_t out[SNAP_MAC_BYTES])
{
	static const char ctx[] = "khyve snapshot MAC v1";
	crypto_generichash_state st;
	const struct {
		const void *p;
		uint64_t len;
	} parts[] = { { hdr, hlen }, { table, tlen }, { meta, mlen } };

	if (sodium_init() < 0)
		return -EIO;
	crypto_generichash_init(&st, key, SNAP_KEY_BYTES, SNAP_MAC_BYTES);
	crypto_generichash_update(&st, (const uint8_t *)ctx, sizeof(ctx));
	for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
		uint8_t le[8];

		for (unsigned b = 0; b < 8; b++)
			le[b] = (uint8_t)(parts[i].len >> (8 * b));
		crypto_generichash_update(&st, le, sizeof(le));
		if (parts[i].len)
			crypto_generichash_update(&st, parts[i].p, parts[i].len);
	}
	crypto_generichash_final(&st, out, SNAP_MAC_BYTES);
	sodium_memzero(&st, sizeof(st));
	return 0;
}

static void put_le32(uint8_t *p, uint32_t v)
{
	for (unsigned i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void snap_writer_set_key(struct snap_writer *w, const uint8_t key[SNAP_KEY_BYTES])
{
	memcpy(w->key, key, SNAP_KEY_BYTES);
	w->keyed = true;
}

static int fsync_dir(const char *path)
{
	char dir[4096];
	int fd, ret = 0;

	snprintf(dir, sizeof(dir), "%s", path);
	fd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		ret = -errno;
	close(fd);
	return ret;
}

int snap_writer_commit(struct snap_writer *w, char *err, size_t errlen)
{
	struct snap_header h = { .format_version = SNAP_FORMAT_VERSION };
	struct sstream table, hdr;
	struct timespec ts;
	uint8_t page[HEADER_SIZE] = { 0 };
	uint64_t sum;
	int ret;

	ss_init_save(&table);
	for (unsigned i = 0; i < w->nsections; i++)
		section_io(&table, &w->sections[i]);
	clock_gettime(CLOCK_REALTIME, &ts);
	snprintf(h.khyve_version, sizeof(h.khyve_version), "%s", KHYVE_VERSION);
	h.created_ns = (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
	h.nsections = w->nsections;
	h.table_offset = w->pos;
	h.table_length = table.len;
	h.table_checksum = snap_checksum(table.buf, table.len);
	h.mem_offset = w->mem_offset;
	h.mem_size = w->mem_size;
	ss_init_save(&hdr);
	header_io(&hdr, &h);
	ret = ss_error(&table) ? ss_error(&table) : ss_error(&hdr);
	if (!ret && hdr.len != HEADER_FIELDS)
		ret = -EINVAL;
	if (ret) {
		snprintf(err, errlen, "writing %s: cannot code the header: %s", w->path,
			 strerror(-ret));
		goto out;
	}
	memcpy(page, hdr.buf, hdr.len);
	sum = snap_checksum(page, hdr.len);
	for (unsigned i = 0; i < 8; i++)
		page[hdr.len + i] = (uint8_t)(sum >> (8 * i));
	if (w->keyed) {
		put_le32(page + AUTH_OFF, SNAP_AUTH_SCHEME_BLAKE2B);
		ret = snap_mac(w->key, page, AUTH_OFF + 4, table.buf, table.len, w->meta,
			       w->meta_len, page + AUTH_OFF + 4);
		if (ret) {
			snprintf(err, errlen, "writing %s: libsodium cannot be initialised",
				 w->path);
			goto out;
		}
	}
	ret = snap_table_identity(table.buf, table.len, w->id);
	if (!ret)
		ret = pwrite_all(w->fd, table.buf, table.len, w->pos);
	if (!ret)
		ret = pwrite_all(w->fd, page, sizeof(page), 0);
	if (!ret && fsync(w->fd) < 0)
		ret = -errno;
	if (ret) {
		snprintf(err, errlen, "writing %s: %s", w->path, strerror(-ret));
		goto out;
	}
	if (!w->tmppath[0])
		goto out; /* snap_writer_open_fd: the caller's file, with no name to give it */
	if (rename(w->tmppath, w->path) < 0) {
		ret = -errno;
		snprintf(err, errlen, "renaming the new snapshot to %s: %s", w->path,
			 strerror(errno));
		goto out;
	}
	w->tmppath[0] = '\0';
	fsync_dir(w->path);
out:
	ss_free(&table);
	ss_free(&hdr);
	snap_writer_abort(w);
	return ret;
}

void snap_writer_abort(struct snap_writer *w)
{
	if (w->dfd >= 0)
		close(w->dfd);
	w->dfd = -1;
	if (w->fd >= 0)
		close(w->fd);
	w->fd = -1;
	if (w->tmppath[0])
		unlink(w->tmppath);
	w->tmppath[0] = '\0';
	free(w->sections);
	w->sections = NULL;
	w->nsections = w->cap = 0;
	free(w->meta);
	w->meta = NULL;
	w->meta_len = 0;
	sodium_memzero(w->key, sizeof(w->key));
	w->keyed = false;
}

/* ---- reading ---- */

static int fail(char *err, size_t errlen, int ret, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

static int fail(char *err, size_t errlen, int ret, const char *path, const char *fmt, ...)
{
	char msg[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(err, errlen, "snapshot %s: %s", path, msg);
	return ret;
}

static int read_header(struct snap_file *f, struct snap_header *h, const char *path, char *err,
		       size_t errlen)
{
	uint8_t page[HEADER_SIZE];
	struct sstream s;
	uint64_t sum = 0;
	int ret;

	if (f->file_size < HEADER_SIZE)
		return fail(err, errlen, -EINVAL, path,
			    "file is too short (%llu bytes) to be a "
			    "snapshot",
			    (unsigned long long)f->file_size);
	ret = pread_all(f->fd, page, sizeof(page), 0);
	if (ret)
		return fail(err, errlen, ret, path, "reading the header: %s", strerror(-ret));
	ss_init_load(&s, page, sizeof(page));
	header_io(&s, h);
	if (ss_error(&s))
		return fail(err, errlen, -EINVAL, path, "%s", s.msg);
	for (unsigned i = 0; i < 8; i++)
		sum |= (uint64_t)page[s.pos + i] << (8 * i);
	if (s.pos != HEADER_FIELDS || sum != snap_checksum(page, s.pos))
		return fail(err, errlen, -EINVAL, path, "header checksum mismatch (corrupted)");
	/* The authentication block: a known scheme, and no MAC bytes without one. */
	f->auth_scheme = get_le32(page + AUTH_OFF);
	memcpy(f->mac, page + AUTH_OFF + 4, SNAP_MAC_BYTES);
	memcpy(f->header_raw, page, AUTH_OFF + 4);
	f->header_len = AUTH_OFF + 4;
	if (f->auth_scheme > SNAP_AUTH_SCHEME_BLAKE2B)
		return fail(err, errlen, -EINVAL, path,
			    "header: unknown authentication scheme %u (a newer khyve?)",
			    f->auth_scheme);
	if (f->auth_scheme == SNAP_AUTH_SCHEME_NONE && !sodium_is_zero(f->mac, SNAP_MAC_BYTES))
		return fail(err, errlen, -EINVAL, path,
			    "header: MAC bytes without an authentication scheme (corrupted)");
	/* The rest of the page is zero (doc/snapshot-format.md): no byte goes unchecked. */
	for (size_t i = AUTH_END; i < sizeof(page); i++)
		if (page[i])
			return fail(err, errlen, -EINVAL, path,
				    "header: byte %zu of the header page is not zero (corrupted)",
				    i);
	if (h->mem_offset != SNAP_MEM_ALIGN || h->mem_offset > f->file_size ||
	    h->mem_size > f->file_size - h->mem_offset || h->mem_size % SNAP_PAGE)
		return fail(err, errlen, -EINVAL, path, "memory area out of bounds (truncated?)");
	if (h->table_offset < h->mem_offset + h->mem_size || h->table_offset > f->file_size ||
	    h->table_length > f->file_size - h->table_offset || h->nsections > SNAP_MAX_SECTIONS ||
	    h->table_length != (uint64_t)h->nsections * TABLE_ENTRY)
		return fail(err, errlen, -EINVAL, path, "section table out of bounds (truncated?)");
	/* The table is the end of the file: nothing unchecked may follow it. */
	if (h->table_offset + h->table_length != f->file_size)
		return fail(err, errlen, -EINVAL, path,
			    "%llu bytes after the section table (the table ends the file)",
			    (unsigned long long)(f->file_size - h->table_offset - h->table_length));
	return 0;
}

static int read_table(struct snap_file *f, const struct snap_header *h, const char *path, char *err,
		      size_t errlen)
{
	struct sstream s;
	void *buf = malloc(h->table_length ? h->table_length : 1);
	int ret;

	if (!buf)
		return -ENOMEM;
	ret = pread_all(f->fd, buf, h->table_length, h->table_offset);
	if (ret) {
		free(buf);
		return fail(err, errlen, ret, path, "reading the section table: %s",
			    strerror(-ret));
	}
	if (snap_checksum(buf, h->table_length) != h->table_checksum) {
		free(buf);
		return fail(err, errlen, -EINVAL, path,
			    "section table checksum mismatch "
			    "(corrupted)");
	}
	f->sections = calloc(h->nsections ? h->nsections : 1, sizeof(*f->sections));
	if (!f->sections) {
		free(buf);
		return -ENOMEM;
	}
	ss_init_load(&s, buf, h->table_length);
	for (unsigned i = 0; i < h->nsections; i++)
		section_io(&s, &f->sections[i]);
	ss_finish(&s);
	/* Kept for the MAC, which covers the table as written. */
	f->table_raw = buf;
	f->table_len = h->table_length;
	f->nsections = h->nsections;
	if (ss_error(&s))
		return fail(err, errlen, -EINVAL, path, "section table: %s", s.msg);
	return 0;
}

#define CHUNK (1u << 20) /* reads to checksum the file are this large at most */

/* XXH3-64 of @len bytes of the file at @off, read in bounded chunks. */
static int checksum_range(int fd, uint64_t off, uint64_t len, uint8_t *buf, uint64_t *sum)
{
	XXH3_state_t *st = XXH3_createState();
	int ret = 0;

	if (!st)
		return -ENOMEM;
	XXH3_64bits_reset(st);
	while (len && !ret) {
		uint64_t n = len < CHUNK ? len : CHUNK;

		ret = pread_all(fd, buf, n, off);
		if (!ret)
			XXH3_64bits_update(st, buf, n);
		off += n;
		len -= n;
	}
	*sum = XXH3_64bits_digest(st);
	XXH3_freeState(st);
	return ret;
}

/* The id is a NUL-terminated name, NUL-padded: no byte of the entry goes unchecked. */
static bool section_id_ok(const struct snap_section *sec)
{
	const char *nul = memchr(sec->id, '\0', sizeof(sec->id));

	if (!nul || nul == sec->id)
		return false;
	for (const char *p = nul; p < sec->id + sizeof(sec->id); p++)
		if (*p)
			return false;
	return true;
}

/*
 * Each section's limits before any byte of it is read: a known type, a proper id, no
 * duplicate, no more vCPUs than a VM can have, a size the writer could have written.
 */
static int check_entry(struct snap_file *f, unsigned i, const char *path, char *err, size_t errlen)
{
	const struct snap_section *sec = &f->sections[i];
	const char *tn = snap_section_type_name(sec->type);
	unsigned nvcpu = 0;

	if (sec->type < SNAP_SEC_META || sec->type > SNAP_SEC_LAST ||
	    (sec->type == SNAP_SEC_CHAIN && f->format_version < 2))
		return fail(err, errlen, -EINVAL, path, "section %u has unknown type %u", i,
			    sec->type);
	if (!section_id_ok(sec))
		return fail(err, errlen, -EINVAL, path,
			    "section %u (%s) has a malformed instance id", i, tn);
	if (!sec->version)
		return fail(err, errlen, -EINVAL, path,
			    "section %s %s has version 0, which no khyve writes", tn, sec->id);
	if (sec->length > SNAP_MAX_SECTION_SIZE ||
	    (sec->type == SNAP_SEC_META && sec->length > SNAP_MAX_META))
		return fail(err, errlen, -EINVAL, path, "section %s %s is too large (%llu bytes)",
			    tn, sec->id, (unsigned long long)sec->length);
	for (unsigned j = 0; j < i; j++) {
		if (f->sections[j].type == sec->type && !strcmp(f->sections[j].id, sec->id))
			return fail(err, errlen, -EINVAL, path, "section %s %s appears twice", tn,
				    sec->id);
		nvcpu += f->sections[j].type == SNAP_SEC_VCPU;
	}
	if (sec->type == SNAP_SEC_VCPU && nvcpu >= SNAP_MAX_VCPUS)
		return fail(err, errlen, -EINVAL, path, "more than %d vCPU sections",
			    SNAP_MAX_VCPUS);
	return 0;
}

/*
 * Sections lie one after another, in table order, from the end of the memory area to the
 * table: none overlaps another and no byte between them goes unchecked.  Each is intact.
 * The work is bounded by the file's size: every byte is read once.
 */
static int check_sections(struct snap_file *f, const struct snap_header *h, const char *path,
			  char *err, size_t errlen)
{
	uint64_t pos = h->mem_offset + h->mem_size, sum;
	uint64_t span = h->table_offset > pos ? h->table_offset - pos : 0;
	uint8_t *buf = NULL;
	int ret = 0;

	/*
	 * Sections that fit in one chunk (device state, the metadata, a memory map of some
	 * thousands of extents: the usual case) are read in one go and kept, so each is checked
	 * and later parsed from the same bytes, with no read per section (a chain of 100 links
	 * would make some 2000 of them).  Larger ones are read chunk by chunk, here and again
	 * when used (snap_file_read).
	 */
	if (span && span <= CHUNK) {
		f->sec_raw = malloc(span);
		if (!f->sec_raw)
			return -ENOMEM;
		ret = pread_all(f->fd, f->sec_raw, span, pos);
		if (ret)
			return fail(err, errlen, ret, path, "reading its sections: %s",
				    strerror(-ret));
		f->sec_start = pos;
		f->sec_len = span;
	} else if (!(buf = malloc(CHUNK))) {
		return -ENOMEM;
	}
	for (unsigned i = 0; i < f->nsections && !ret; i++) {
		struct snap_section *sec = &f->sections[i];
		const char *tn = snap_section_type_name(sec->type);

		ret = check_entry(f, i, path, err, errlen);
		if (ret)
			break;
		if (sec->offset != pos || sec->length > h->table_offset - pos) {
			ret = fail(err, errlen, -EINVAL, path,
				   "section %s %s at offset %llu is out of place (expected %llu, "
				   "sections are contiguous and end at the table)",
				   tn, sec->id, (unsigned long long)sec->offset,
				   (unsigned long long)pos);
			break;
		}
		if (f->sec_raw)
			sum = XXH3_64bits(f->sec_raw + (sec->offset - f->sec_start), sec->length);
		else
			ret = checksum_range(f->fd, sec->offset, sec->length, buf, &sum);
		if (ret)
			ret = fail(err, errlen, ret, path, "reading section %s %s: %s", tn, sec->id,
				   strerror(-ret));
		else if (sum != sec->checksum)
			ret = fail(err, errlen, -EINVAL, path,
				   "section %s %s: checksum mismatch (corrupted)", tn, sec->id);
		pos += sec->length;
	}
	if (!ret && pos != h->table_offset)
		ret = fail(err, errlen, -EINVAL, path,
			   "%llu bytes between the last section and the table",
			   (unsigned long long)(h->table_offset - pos));
	free(buf);
	return ret;
}

void snap_memmap_io(struct sstream *s, struct snap_file *f)
{
	uint32_t nr = f->nregions, ne = f->nextents;

	ss_u32(s, &nr);
	ss_check_max(s, nr, 2, "memory regions");
	f->nregions = nr;
	for (unsigned i = 0; i < nr && !s->err; i++) {
		ss_u64(s, &f->regions[i].gpa);
		ss_u64(s, &f->regions[i].size);
		ss_u64(s, &f->regions[i].file_offset);
	}
	ss_u32(s, &ne);
	if (s->loading && !s->err) {
		/*
		 * Each extent needs 24 bytes and a page of its own: bound the allocation by what
		 * is really there.
		 */
		if ((uint64_t)ne * 24 > s->len - s->pos || ne > f->mem_size / SNAP_PAGE) {
			ss_fail(s, -EINVAL, "memory extent count %u exceeds the section", ne);
			return;
		}
		f->extents = calloc(ne ? ne : 1, sizeof(*f->extents));
		if (!f->extents) {
			ss_fail(s, -ENOMEM, "out of memory");
			return;
		}
		f->nextents = ne;
	}
	for (unsigned i = 0; i < ne && !s->err; i++) {
		ss_u64(s, &f->extents[i].file_offset);
		ss_u64(s, &f->extents[i].length);
		ss_u64(s, &f->extents[i].checksum);
	}
}

/*
 * Regions tile the memory area in order.  Extents are sorted, page-aligned, at most what the
 * writer writes, and each inside one region.  Offsets are compared before anything is
 * subtracted from them.
 */
static int check_memmap(struct snap_file *f, const char *path, char *err, size_t errlen)
{
	uint64_t expect = f->mem_offset, last = f->mem_offset, end = f->mem_offset + f->mem_size;
	unsigned r = 0;

	for (unsigned i = 0; i < f->nregions; i++) {
		const struct snap_region *g = &f->regions[i];

		if (g->file_offset != expect || !g->size || g->size % SNAP_PAGE ||
		    g->gpa % SNAP_PAGE || g->size > end - expect)
			return fail(err, errlen, -EINVAL, path, "memory region %u is malformed", i);
		expect += g->size;
	}
	if (expect != end)
		return fail(err, errlen, -EINVAL, path,
			    "memory regions do not cover the memory "
			    "area");
	for (unsigned i = 0; i < f->nextents; i++) {
		const struct snap_extent *e = &f->extents[i];

		if (e->file_offset < last || e->file_offset >= end || e->file_offset % SNAP_PAGE ||
		    !e->length || e->length % SNAP_PAGE || e->length > SNAP_EXTENT_MAX ||
		    e->length > end - e->file_offset)
			return fail(err, errlen, -EINVAL, path, "memory extent %u is malformed", i);
		while (r < f->nregions &&
		       f->regions[r].file_offset + f->regions[r].size <= e->file_offset)
			r++;
		if (r == f->nregions ||
		    e->length > f->regions[r].file_offset + f->regions[r].size - e->file_offset)
			return fail(err, errlen, -EINVAL, path,
				    "memory extent %u crosses a region boundary", i);
		last = e->file_offset + e->length;
	}
	return 0;
}

/* @len bytes of the file at @off are all zero. */
static int check_zero(int fd, uint64_t off, uint64_t len, uint8_t *buf, bool *zero)
{
	*zero = true;
	while (len && *zero) {
		uint64_t n = len < CHUNK ? len : CHUNK;
		int ret = pread_all(fd, buf, n, off);

		if (ret)
			return ret;
		*zero = sodium_is_zero(buf, n);
		off += n;
		len -= n;
	}
	return 0;
}

/*
 * No data outside the extents: the memory area is mapped into the guest as it is, so a byte
 * in a "hole" that no checksum covers would reach the guest.  The filesystem says where data
 * lies (SEEK_DATA/SEEK_HOLE); any data outside the extents must read as zero, as a hole does
 * (a filesystem that reports no holes costs a read of those parts).  So the guest reads zero
 * wherever the memory map lists no data.  Data that starts inside an extent is skipped to the
 * extent's end without asking where it ends: finding a hole walks the data page by page on
 * some filesystems (tmpfs, a migration's memfd), and only data outside the extents matters.
 */
static int check_holes(struct snap_file *f, const char *path, char *err, size_t errlen)
{
	uint64_t pos = f->mem_offset, end = f->mem_offset + f->mem_size;
	uint8_t *buf = NULL;
	unsigned ei = 0;
	int ret = 0;

	while (pos < end && !ret) {
		off_t d = lseek(f->fd, (off_t)pos, SEEK_DATA), h;
		uint64_t next, hend;
		bool zero;

		if (d < 0 && errno == ENXIO)
			break;
		if (d < 0) {
			ret = fail(err, errlen, -errno, path, "finding its data: %s",
				   strerror(errno));
			break;
		}
		if ((uint64_t)d >= end)
			break;
		while (ei < f->nextents &&
		       f->extents[ei].file_offset + f->extents[ei].length <= (uint64_t)d)
			ei++;
		if (ei < f->nextents && f->extents[ei].file_offset <= (uint64_t)d) {
			pos = f->extents[ei].file_offset + f->extents[ei].length;
			continue;
		}
		/* Data no extent lists, up to the next extent or hole: it must read as zero. */
		next = ei < f->nextents ? f->extents[ei].file_offset : end;
		h = lseek(f->fd, d, SEEK_HOLE);
		if (h < 0) {
			ret = fail(err, errlen, -errno, path, "finding its data: %s",
				   strerror(errno));
			break;
		}
		hend = (uint64_t)h < next ? (uint64_t)h : next;
		if (!buf && !(buf = malloc(CHUNK))) {
			ret = -ENOMEM;
			break;
		}
		ret = check_zero(f->fd, (uint64_t)d, hend - (uint64_t)d, buf, &zero);
		if (ret)
			ret = fail(err, errlen, ret, path, "reading guest memory: %s",
				   strerror(-ret));
		else if (!zero)
			ret = fail(err, errlen, -EINVAL, path,
				   "guest memory at offset 0x%llx holds data the memory map "
				   "does not list (corrupted)",
				   (unsigned long long)d);
		pos = hend;
	}
	free(buf);
	return ret;
}

int snap_file_verify_extent(const struct snap_file *f, unsigned i, const char *path, char *err,
			    size_t errlen)
{
	const struct snap_extent *e = &f->extents[i];
	uint8_t *buf = malloc(CHUNK);
	uint64_t sum;
	int ret;

	if (!buf)
		return -ENOMEM;
	ret = checksum_range(f->fd, e->file_offset, e->length, buf, &sum);
	if (ret)
		ret = fail(err, errlen, ret, path, "reading guest memory: %s", strerror(-ret));
	else if (sum != e->checksum)
		ret = fail(err, errlen, -EINVAL, path,
			   "guest memory at offset 0x%llx: "
			   "checksum mismatch (corrupted)",
			   (unsigned long long)e->file_offset);
	free(buf);
	return ret;
}

static int verify_extents(struct snap_file *f, const char *path, char *err, size_t errlen)
{
	int ret = 0;

	for (unsigned i = 0; i < f->nextents && !ret; i++)
		ret = snap_file_verify_extent(f, i, path, err, errlen);
	return ret;
}

static int read_memmap(struct snap_file *f, const char *path, char *err, size_t errlen)
{
	const struct snap_section *sec = snap_file_find(f, SNAP_SEC_MEMMAP, "memory");
	struct sstream s;
	void *buf;
	int ret;

	if (!sec)
		return fail(err, errlen, -EINVAL, path, "no memory map section");
	if (sec->version != 1)
		return fail(err, errlen, -EINVAL, path,
			    "memory map version %u is not supported (1)", sec->version);
	ret = snap_file_read(f, sec, &buf);
	if (ret)
		return fail(err, errlen, ret, path, "reading the memory map: %s", strerror(-ret));
	ss_init_load(&s, buf, sec->length);
	snap_memmap_io(&s, f);
	ss_finish(&s);
	free(buf);
	/* Malformed (-EINVAL), or no memory for the extents (-ENOMEM). */
	if (ss_error(&s))
		return fail(err, errlen, ss_error(&s), path, "memory map: %s", s.msg);
	return check_memmap(f, path, err, errlen);
}

static int read_meta(struct snap_file *f, const char *path, char *err, size_t errlen)
{
	const struct snap_section *sec = snap_file_find(f, SNAP_SEC_META, "meta");
	void *buf;
	int ret;

	if (!sec)
		return fail(err, errlen, -EINVAL, path, "no metadata section");
	if (sec->version != 1)
		return fail(err, errlen, -EINVAL, path, "metadata version %u is not supported (1)",
			    sec->version);
	ret = snap_file_read(f, sec, &buf);
	if (ret)
		return fail(err, errlen, ret, path, "reading the metadata: %s", strerror(-ret));
	f->meta_json = realloc(buf, sec->length + 1);
	if (!f->meta_json) {
		free(buf);
		return -ENOMEM;
	}
	f->meta_json[sec->length] = '\0';
	if (strlen(f->meta_json) != sec->length)
		return fail(err, errlen, -EINVAL, path, "metadata holds a NUL byte");
	return 0;
}

/* The chain section of an incremental snapshot (format 2), if it has one. */
static int read_chain(struct snap_file *f, const char *path, char *err, size_t errlen)
{
	const struct snap_section *sec = snap_file_find(f, SNAP_SEC_CHAIN, "chain");
	char msg[300];
	void *buf;
	int ret;

	if (!sec)
		return 0;
	if (sec->version != 1)
		return fail(err, errlen, -EINVAL, path,
			    "chain section version %u is not supported (1)", sec->version);
	ret = snap_file_read(f, sec, &buf);
	if (ret)
		return fail(err, errlen, ret, path, "reading the chain section: %s",
			    strerror(-ret));
	ret = snap_parent_decode(buf, sec->length, &f->parent, msg, sizeof(msg));
	free(buf);
	if (ret)
		return fail(err, errlen, ret, path, "chain section: %s", msg);
	f->has_parent = true;
	return 0;
}

int snap_file_open(struct snap_file *f, const char *path, bool verify_memory, char *err,
		   size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		memset(f, 0, sizeof(*f));
		f->fd = -1;
		return fail(err, errlen, -errno, path, "%s", strerror(errno));
	}
	return snap_file_open_fd(f, fd, path, verify_memory, err, errlen);
}

int snap_file_open_fd(struct snap_file *f, int fd, const char *path, bool verify_memory, char *err,
		      size_t errlen)
{
	struct snap_header h;
	struct stat st;
	int ret;

	memset(f, 0, sizeof(*f));
	if (errlen)
		err[0] = '\0';
	f->fd = fd;
	if (fstat(f->fd, &st) < 0) {
		ret = fail(err, errlen, -errno, path, "%s", strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		ret = fail(err, errlen, -EINVAL, path, "not a regular file");
		goto out;
	}
	f->file_size = (uint64_t)st.st_size;
	ret = read_header(f, &h, path, err, errlen);
	if (ret)
		goto out;
	f->format_version = h.format_version;
	memcpy(f->khyve_version, h.khyve_version, sizeof(f->khyve_version));
	f->khyve_version[sizeof(f->khyve_version) - 1] = '\0';
	f->created_ns = h.created_ns;
	f->mem_offset = h.mem_offset;
	f->mem_size = h.mem_size;
	ret = read_table(f, &h, path, err, errlen);
	if (!ret)
		ret = check_sections(f, &h, path, err, errlen);
	if (!ret)
		ret = read_meta(f, path, err, errlen);
	if (!ret)
		ret = read_memmap(f, path, err, errlen);
	if (!ret)
		ret = read_chain(f, path, err, errlen);
	/*
	 * Only a full snapshot's memory area is mapped whole into a guest; of an incremental
	 * one, only the pages its memory map lists (and a later link does not) are mapped or
	 * merged (snap/chain.h), so what lies outside its extents never reaches a guest.
	 */
	if (!ret && !f->has_parent)
		ret = check_holes(f, path, err, errlen);
	if (!ret && verify_memory)
		ret = verify_extents(f, path, err, errlen);
out:
	/* The steps say what failed; one that ran out of memory only returns -ENOMEM. */
	if (ret && errlen && !err[0])
		fail(err, errlen, ret, path, "%s", strerror(-ret));
	if (ret)
		snap_file_close(f);
	return ret;
}

void snap_file_close(struct snap_file *f)
{
	if (f->fd >= 0)
		close(f->fd);
	free(f->sections);
	free(f->extents);
	free(f->meta_json);
	free(f->table_raw);
	free(f->sec_raw);
	memset(f, 0, sizeof(*f));
	f->fd = -1;
}

const struct snap_section *snap_file_find(const struct snap_file *f, uint32_t type, const char *id)
{
	for (unsigned i = 0; i < f->nsections; i++)
		if (f->sections[i].type == type && !strcmp(f->sections[i].id, id))
			return &f->sections[i];
	return NULL;
}

int snap_file_check_mac(const struct snap_file *f, const uint8_t key[SNAP_KEY_BYTES])
{
	const struct snap_section *meta = snap_file_find(f, SNAP_SEC_META, "meta");
	uint8_t mac[SNAP_MAC_BYTES];
	int ret;

	if (f->auth_scheme != SNAP_AUTH_SCHEME_BLAKE2B)
		return -ENODATA;
	if (!meta || !f->meta_json)
		return -EBADMSG;
	ret = snap_mac(key, f->header_raw, f->header_len, f->table_raw, f->table_len, f->meta_json,
		       meta->length, mac);
	if (ret)
		return ret;
	ret = sodium_memcmp(mac, f->mac, SNAP_MAC_BYTES) ? -EBADMSG : 0;
	sodium_memzero(mac, sizeof(mac));
	return ret;
}

int snap_file_read(const struct snap_file *f, const struct snap_section *s, void **buf)
{
	void *b = malloc(s->length ? s->length : 1);
	int ret;

	if (!b)
		return -ENOMEM;
	/* The bytes check_sections checked, when it kept them. */
	if (f->sec_raw && s->offset >= f->sec_start && s->length <= f->sec_len &&
	    s->offset - f->sec_start <= f->sec_len - s->length) {
		memcpy(b, f->sec_raw + (s->offset - f->sec_start), s->length);
		*buf = b;
		return 0;
	}
	ret = pread_all(f->fd, b, s->length, s->offset);
	if (ret) {
		free(b);
		return ret;
	}
	*buf = b;
	return 0;
}

/* ---- chains ---- */

int snap_table_identity(const void *table, uint64_t len, uint8_t id[SNAP_ID_BYTES])
{
	static const char ctx[] = "khyve snapshot identity v1";
	crypto_generichash_state st;

	if (sodium_init() < 0)
		return -EIO;
	crypto_generichash_init(&st, NULL, 0, SNAP_ID_BYTES);
	crypto_generichash_update(&st, (const uint8_t *)ctx, sizeof(ctx));
	if (len)
		crypto_generichash_update(&st, table, len);
	crypto_generichash_final(&st, id, SNAP_ID_BYTES);
	return 0;
}

int snap_file_identity(const struct snap_file *f, uint8_t id[SNAP_ID_BYTES])
{
	return snap_table_identity(f->table_raw, f->table_len, id);
}

void snap_id_hex(const uint8_t id[SNAP_ID_BYTES], char *out)
{
	static const char hex[] = "0123456789abcdef";

	for (unsigned i = 0; i < SNAP_ID_BYTES; i++) {
		out[2 * i] = hex[id[i] >> 4];
		out[2 * i + 1] = hex[id[i] & 15];
	}
	out[2 * SNAP_ID_BYTES] = '\0';
}

bool snap_parent_name_ok(const char *name)
{
	size_t n = strlen(name);

	if (!n || n > SNAP_PARENT_NAME_MAX || !strcmp(name, ".") || !strcmp(name, ".."))
		return false;
	for (size_t i = 0; i < n; i++)
		if (name[i] == '/' || (unsigned char)name[i] < 0x20 || name[i] == 0x7f)
			return false;
	return true;
}

void snap_parent_io(struct sstream *s, struct snap_parent *p)
{
	uint32_t len = s->loading ? 0 : (uint32_t)strlen(p->name);

	ss_u32(s, &p->depth);
	ss_u32(s, &len);
	ss_check_max(s, len, SNAP_PARENT_NAME_MAX, "parent name length");
	if (!s->err) {
		ss_bytes(s, p->name, len);
		p->name[len] = '\0';
		if (s->loading && !s->err && memchr(p->name, '\0', len))
			ss_fail(s, -EINVAL, "the parent name holds a NUL byte");
	}
	ss_bytes(s, p->id, SNAP_ID_BYTES);
}

int snap_parent_decode(const void *buf, size_t len, struct snap_parent *p, char *err, size_t errlen)
{
	struct sstream s;
	char name[4 * SNAP_PARENT_NAME_MAX + 1];

	memset(p, 0, sizeof(*p));
	ss_init_load(&s, buf, len);
	snap_parent_io(&s, p);
	ss_finish(&s);
	if (ss_error(&s)) {
		snprintf(err, errlen, "%s", s.msg);
		return -EINVAL;
	}
	if (strlen(p->name) == 0 || !snap_parent_name_ok(p->name)) {
		snap_sanitize(p->name, name, sizeof(name));
		snprintf(err, errlen,
			 "parent '%s' is not a plain file name (a parent must be in the "
			 "snapshot's own directory)",
			 name);
		return -EINVAL;
	}
	if (!p->depth || p->depth >= SNAP_CHAIN_MAX) {
		snprintf(err, errlen, "chain depth %u is out of range (1 to %u)", p->depth,
			 SNAP_CHAIN_MAX - 1);
		return -EINVAL;
	}
	return 0;
}
