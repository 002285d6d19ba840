// SPDX-License-Identifier: BSD-2-Clause
/*
 * The migration stream (snap/migrate.c) without a VM: frame headers code and decode, a whole
 * stream received through a socket becomes a snapshot that opens and verifies like a file, and
 * what a hostile or broken source can send is refused with a message: truncated frames and
 * streams, bad checksums, bad magic, oversized frames, memory outside the guest, frames out of
 * order, sections twice, a wrong protocol version.  Addresses parse only when numeric.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "config.h"
#include "loopsock.h"
#include "migfeed.h"
#include "openfds.h"
#include "snap/format.h"
#include "snap/migrate.h"
#include "snap/trust.h"
#include "sstream.h"
#include "vm.h"

#define PG 4096ULL
#define MEM (4ULL << 20)

/* A stream being built: frames appended to a buffer. */
struct stream {
	uint8_t *buf;
	size_t len;
};

static void put(struct stream *s, const void *p, size_t n)
{
	if (!n)
		return;
	s->buf = realloc(s->buf, s->len + n);
	assert_non_null(s->buf);
	memcpy(s->buf + s->len, p, n);
	s->len += n;
}

static void frame(struct stream *s, uint32_t type, const void *payload, size_t n)
{
	uint8_t h[MIG_HDR];

	mig_frame_encode(h, type, payload, n);
	put(s, h, sizeof(h));
	put(s, payload, n);
}

static void hello_flags(struct stream *s, uint32_t version, uint32_t flags, uint64_t mem)
{
	uint8_t p[16];

	le32(p, version);
	le32(p + 4, flags);
	le64(p + 8, mem);
	frame(s, MIG_HELLO, p, sizeof(p));
}

static void hello(struct stream *s, uint32_t version, uint64_t mem)
{
	hello_flags(s, version, 0, mem);
}

static void round_end(struct stream *s, uint32_t round, uint64_t pages)
{
	uint8_t p[16] = { 0 };

	le32(p, round);
	le64(p + 8, pages);
	frame(s, MIG_ROUND, p, sizeof(p));
}

static void section(struct stream *s, uint32_t type, const char *id, const void *data, size_t n)
{
	uint8_t *p = calloc(1, MIG_SEC_HDR + n + 1);

	assert_non_null(p);
	le32(p, type);
	le32(p + 4, 1);
	strcpy((char *)p + 8, id);
	memcpy(p + MIG_SEC_HDR, data, n);
	frame(s, MIG_SECTION, p, MIG_SEC_HDR + n);
	free(p);
}

static void memmap(struct stream *s)
{
	struct snap_file f;
	struct sstream ss;

	memset(&f, 0, sizeof(f));
	f.nregions = 1;
	f.regions[0] = (struct snap_region){ 0, MEM, SNAP_MEM_ALIGN };
	ss_init_save(&ss);
	snap_memmap_io(&ss, &f);
	assert_int_equal(ss_error(&ss), 0);
	section(s, SNAP_SEC_MEMMAP, "memory", ss.buf, ss.len);
	ss_free(&ss);
}

static void mem(struct stream *s, uint64_t off, uint8_t fill, unsigned pages)
{
	size_t n = 8 + pages * PG;
	uint8_t *p = malloc(n);

	assert_non_null(p);
	le64(p, off);
	memset(p + 8, fill, n - 8);
	frame(s, MIG_MEM, p, n);
	free(p);
}

static void zero(struct stream *s, uint64_t off, uint64_t len)
{
	uint8_t p[16];

	le64(p, off);
	le64(p + 8, len);
	frame(s, MIG_ZERO, p, sizeof(p));
}

/* The usual stream up to (not including) END: hello, meta, memmap, three pages in two runs. */
static void body(struct stream *s)
{
	hello(s, MIG_VERSION, MEM);
	section(s, SNAP_SEC_META, "meta", "{}", 2);
	memmap(s);
	mem(s, 0, 0xab, 2);
	mem(s, (2ULL << 20) + PG, 0xcd, 1);
}

struct rx {
	int fd, ret;
	struct mig_in m;
	char err[512];
};

/* Receive @s through a socket (closed after it) into a fresh memfd. */
static void receive(struct rx *r, const struct stream *s)
{
	int sv[2];
	size_t off = 0;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	r->fd = memfd_create("mig", MFD_CLOEXEC);
	assert_true(r->fd >= 0);
	mig_in_init(&r->m, r->fd);
	r->err[0] = '\0';
	/* A socketpair holds far less than 8 MiB: one writer process would block; fork one. */
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (!pid) {
		close(sv[0]);
		while (off < s->len) {
			ssize_t n = write(sv[1], s->buf + off, s->len - off);

			if (n <= 0)
				_exit(1);
			off += (size_t)n;
		}
		_exit(0);
	}
	close(sv[1]);
	r->ret = mig_recv(sv[0], &r->m, r->err, sizeof(r->err));
	close(sv[0]);
	waitpid(pid, NULL, 0);
}

static void rx_free(struct rx *r)
{
	mig_in_free(&r->m);
	close(r->fd);
}

static void refused(const struct stream *s, int want, const char *msg)
{
	struct rx r;

	receive(&r, s);
	if (r.ret != want || !strstr(r.err, msg))
		fail_msg("got %d '%s', wanted %d '%s'", r.ret, r.err, want, msg);
	rx_free(&r);
}

static void test_frame_header(void **state)
{
	uint8_t h[MIG_HDR], payload[3] = { 1, 2, 3 };
	struct mig_frame f;
	char err[256];

	mig_frame_encode(h, MIG_MEM, payload, sizeof(payload));
	assert_int_equal(mig_frame_decode(h, &f, err, sizeof(err)), 0);
	assert_int_equal(f.type, MIG_MEM);
	assert_int_equal(f.length, 3);
	assert_int_equal(f.checksum, snap_checksum(payload, 3));
	h[0] ^= 1;
	assert_int_equal(mig_frame_decode(h, &f, err, sizeof(err)), -EPROTO);
	assert_non_null(strstr(err, "bad frame magic"));
	h[0] ^= 1;
	le32(h + 4, 0);
	assert_int_equal(mig_frame_decode(h, &f, err, sizeof(err)), -EPROTO);
	le32(h + 4, MIG_TYPE_LAST + 1);
	assert_int_equal(mig_frame_decode(h, &f, err, sizeof(err)), -EPROTO);
	assert_non_null(strstr(err, "unknown frame type"));
	/* Lengths are bounded per type before any payload is read. */
	le32(h + 4, MIG_MEM);
	le64(h + 8, 8 + SNAP_EXTENT_MAX + 1);
	assert_int_equal(mig_frame_decode(h, &f, err, sizeof(err)), -EPROTO);
	assert_non_null(strstr(err, "MEM frame of"));
	le32(h + 4, MIG_END);
	le64(h + 8, 1);
	assert_int_equal(mig_frame_decode(h, &f, err, sizeof(err)), -EPROTO);
	le64(h + 8, UINT64_MAX);
	le32(h + 4, MIG_SECTION);
	assert_int_equal(mig_frame_decode(h, &f, err, sizeof(err)), -EPROTO);
}

/* A whole stream is a snapshot: it opens, every extent verifies, the data is where sent. */
/*
 * Receive @s, which must be whole, finish the snapshot and open it with every extent's
 * checksum verified into @f (the caller closes it, then rx_free).
 */
static void receive_snapshot(struct rx *r, const struct stream *s, struct snap_file *f)
{
	char path[64], err[512];

	receive(r, s);
	if (r->ret)
		fail_msg("%s", r->err);
	assert_int_equal(mig_in_finish(&r->m, err, sizeof(err)), 0);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", r->fd);
	if (snap_file_open(f, path, true, err, sizeof(err)))
		fail_msg("%s", err);
}

static void test_stream_is_a_snapshot(void **state)
{
	struct stream s = { 0 };
	struct snap_file f;
	struct rx r;
	uint8_t b[PG];

	body(&s);
	/* Sent twice (a pre-copy round): the last copy counts.  Then a page cleared again. */
	mem(&s, 0, 0xee, 1);
	mem(&s, 3ULL << 20, 0x11, 1);
	zero(&s, 3ULL << 20, PG);
	frame(&s, MIG_END, NULL, 0);
	receive_snapshot(&r, &s, &f);
	assert_string_equal(f.meta_json, "{}");
	assert_int_equal(f.nregions, 1);
	assert_int_equal(f.nextents, 2); /* one per 256 KiB unit with data */
	assert_int_equal(f.extents[0].file_offset, SNAP_MEM_ALIGN);
	assert_int_equal(f.extents[0].length, 2 * PG);
	assert_int_equal(pread(f.fd, b, PG, SNAP_MEM_ALIGN), PG);
	assert_int_equal(b[0], 0xee);
	assert_int_equal(pread(f.fd, b, PG, SNAP_MEM_ALIGN + PG), PG);
	assert_int_equal(b[100], 0xab);
	assert_int_equal(pread(f.fd, b, PG, SNAP_MEM_ALIGN + (2ULL << 20) + PG), PG);
	assert_int_equal(b[7], 0xcd);
	assert_int_equal(pread(f.fd, b, PG, SNAP_MEM_ALIGN + (3ULL << 20)), PG);
	assert_int_equal(b[0], 0);
	snap_file_close(&f);
	rx_free(&r);
	free(s.buf);
}

/*
 * A live stream: pre-copy rounds (MEM frames closed by ROUND, whose units the receiver
 * checksums then), then the state and the pages written since.  A unit changed after its
 * ROUND is checksummed again: the snapshot verifies, and holds the last copy of each page.
 */
static void test_live_rounds(void **state)
{
	struct stream s = { 0 };
	struct snap_file f;
	struct rx r;
	uint8_t b[PG];

	hello_flags(&s, MIG_VERSION, MIG_F_LIVE, MEM);
	mem(&s, 0, 0x11, 4);
	mem(&s, 2ULL << 20, 0x22, 2);
	round_end(&s, 1, 6);
	mem(&s, PG, 0x33, 1);
	round_end(&s, 2, 1);
	section(&s, SNAP_SEC_META, "meta", "{}", 2);
	memmap(&s);
	mem(&s, 2 * PG, 0x44, 1); /* after the last round, in the pause */
	frame(&s, MIG_END, NULL, 0);
	receive_snapshot(&r, &s, &f); /* verifies every extent's checksum */
	assert_int_equal(r.m.rounds, 2);
	assert_int_equal(f.nextents, 2);
	assert_int_equal(pread(f.fd, b, PG, SNAP_MEM_ALIGN), PG);
	assert_int_equal(b[0], 0x11);
	assert_int_equal(pread(f.fd, b, PG, SNAP_MEM_ALIGN + PG), PG);
	assert_int_equal(b[0], 0x33);
	assert_int_equal(pread(f.fd, b, PG, SNAP_MEM_ALIGN + 2 * PG), PG);
	assert_int_equal(b[0], 0x44);
	assert_int_equal(pread(f.fd, b, PG, SNAP_MEM_ALIGN + (2ULL << 20) + PG), PG);
	assert_int_equal(b[0], 0x22);
	snap_file_close(&f);
	rx_free(&r);
	free(s.buf);
}

/*
 * Extents are 256 KiB units (64 pages): a page the pause brings makes its unit alone be
 * checksummed again.  Guests above 8 GiB get larger units, up to 2 MiB, so that the memory map
 * stays within some 32768 extents.
 */
static void test_extents_per_unit(void **state)
{
	struct stream s = { 0 };
	struct snap_file f;
	struct rx r;
	uint8_t b[PG];

	hello_flags(&s, MIG_VERSION, MIG_F_LIVE, MEM);
	mem(&s, 0, 0x11, 100);
	round_end(&s, 1, 100);
	section(&s, SNAP_SEC_META, "meta", "{}", 2);
	memmap(&s);
	mem(&s, 70 * PG, 0x55, 1); /* in the pause: the second unit changes */
	frame(&s, MIG_END, NULL, 0);
	receive_snapshot(&r, &s, &f); /* the changed unit's checksum was taken again */
	assert_int_equal(r.m.unit_pages, 64);
	assert_int_equal(f.nextents, 2);
	assert_int_equal(f.extents[0].file_offset, SNAP_MEM_ALIGN);
	assert_int_equal(f.extents[0].length, 64 * PG);
	assert_int_equal(f.extents[1].file_offset, SNAP_MEM_ALIGN + 64 * PG);
	assert_int_equal(f.extents[1].length, 36 * PG);
	assert_int_equal(pread(f.fd, b, PG, SNAP_MEM_ALIGN + 70 * PG), PG);
	assert_int_equal(b[0], 0x55);
	snap_file_close(&f);
	rx_free(&r);
	free(s.buf);
	/* 16 GiB: 128-page units (4M pages in 32768 of them). */
	s = (struct stream){ 0 };
	hello(&s, MIG_VERSION, 16ULL << 30);
	receive(&r, &s);
	assert_int_equal(r.m.unit_pages, 128);
	rx_free(&r);
	free(s.buf);
	(void)state;
}

/* ROUND only in a live stream, numbered from 1 without gaps, before any state; flags known. */
static void test_live_hostile(void **state)
{
	struct stream s = { 0 };

	hello(&s, MIG_VERSION, MEM);
	round_end(&s, 1, 0);
	refused(&s, -EPROTO, "not live");
	free(s.buf);
	s = (struct stream){ 0 };
	hello_flags(&s, MIG_VERSION, MIG_F_LIVE, MEM);
	round_end(&s, 2, 0);
	refused(&s, -EPROTO, "ROUND 2 after round 0");
	free(s.buf);
	s = (struct stream){ 0 };
	hello_flags(&s, MIG_VERSION, MIG_F_LIVE, MEM);
	round_end(&s, 1, 0);
	round_end(&s, 1, 0);
	refused(&s, -EPROTO, "ROUND 1 after round 1");
	free(s.buf);
	s = (struct stream){ 0 };
	hello_flags(&s, MIG_VERSION, MIG_F_LIVE, MEM);
	section(&s, SNAP_SEC_META, "meta", "{}", 2);
	round_end(&s, 1, 0);
	refused(&s, -EPROTO, "after the state");
	free(s.buf);
	s = (struct stream){ 0 };
	hello_flags(&s, MIG_VERSION, MIG_F_LIVE | 0x80, MEM);
	refused(&s, -EPROTO, "HELLO flags 0x81");
	free(s.buf);
	s = (struct stream){ 0 };
	hello_flags(&s, MIG_VERSION, MIG_F_LIVE, MEM);
	{
		uint8_t p[16] = { 1, 0, 0, 0, 9 }; /* the reserved word is not zero */

		frame(&s, MIG_ROUND, p, sizeof(p));
	}
	refused(&s, -EPROTO, "ROUND frame of 16 bytes");
	free(s.buf);
	s = (struct stream){ 0 };
	hello_flags(&s, MIG_VERSION, MIG_F_LIVE, MEM);
	frame(&s, MIG_ROUND, "\1\0\0\0\0\0\0\0", 8);
	refused(&s, -EPROTO, "ROUND frame of 8 bytes");
	free(s.buf);
}

/* Cut anywhere, a stream is an error that says where; never a snapshot. */
static void test_truncated(void **state)
{
	struct stream s = { 0 };
	size_t cuts[] = { 0, 10, MIG_HDR, MIG_HDR + 8, 0 /* mid-MEM */, 0 /* before END */ };

	body(&s);
	frame(&s, MIG_END, NULL, 0);
	cuts[4] = s.len - MIG_HDR - 1000;
	cuts[5] = s.len - MIG_HDR;
	for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
		struct stream t = { .buf = s.buf, .len = cuts[i] };
		struct rx r;

		receive(&r, &t);
		assert_int_not_equal(r.ret, 0);
		assert_true(strstr(r.err, "closed") != NULL);
		rx_free(&r);
	}
	free(s.buf);
}

static void test_bad_checksum(void **state)
{
	struct stream s = { 0 };

	body(&s);
	frame(&s, MIG_END, NULL, 0);
	/* A bit flipped in the last MEM frame's page data. */
	s.buf[s.len - MIG_HDR - 10] ^= 0x40;
	refused(&s, -EBADMSG, "MEM frame: checksum mismatch");
	free(s.buf);
	s = (struct stream){ 0 };
	body(&s);
	s.buf[MIG_HDR + 10] ^= 1; /* in HELLO's payload */
	refused(&s, -EBADMSG, "HELLO frame: checksum mismatch");
	free(s.buf);
}

static void test_hostile_frames(void **state)
{
	struct stream s = { 0 };
	uint8_t big[16];
	char want[64];

	/* Before HELLO, a wrong version, a memory size that is not whole pages or too big. */
	mem(&s, 0, 1, 1);
	refused(&s, -EPROTO, "MEM frame before HELLO");
	free(s.buf);
	s = (struct stream){ 0 };
	hello(&s, MIG_VERSION + 1, MEM);
	snprintf(want, sizeof(want), "protocol version %u", MIG_VERSION + 1);
	refused(&s, -EPROTO, want);
	free(s.buf);
	s = (struct stream){ 0 };
	hello(&s, MIG_VERSION, MEM + 1);
	refused(&s, -EINVAL, "memory size");
	free(s.buf);
	s = (struct stream){ 0 };
	hello(&s, MIG_VERSION, MIG_MAX_MEM + PG);
	refused(&s, -EINVAL, "memory size");
	free(s.buf);
	/* Memory outside the guest, or not page-aligned. */
	s = (struct stream){ 0 };
	body(&s);
	mem(&s, MEM - PG, 1, 2);
	refused(&s, -EINVAL, "outside guest memory");
	free(s.buf);
	s = (struct stream){ 0 };
	body(&s);
	mem(&s, 100, 1, 1);
	refused(&s, -EINVAL, "outside guest memory");
	free(s.buf);
	s = (struct stream){ 0 };
	body(&s);
	le64(big, UINT64_MAX - PG + 1);
	le64(big + 8, 2 * PG);
	frame(&s, MIG_ZERO, big, sizeof(big));
	refused(&s, -EINVAL, "outside guest memory");
	free(s.buf);
	/* A section twice, one of an unknown type, a malformed id; END before the memory map. */
	s = (struct stream){ 0 };
	body(&s);
	section(&s, SNAP_SEC_META, "meta", "{}", 2);
	refused(&s, -EINVAL, "sent twice");
	free(s.buf);
	s = (struct stream){ 0 };
	body(&s);
	section(&s, SNAP_SEC_LAST + 1, "x", "", 0);
	refused(&s, -EINVAL, "malformed id");
	free(s.buf);
	s = (struct stream){ 0 };
	body(&s);
	section(&s, SNAP_SEC_DEV, "a b", "", 0);
	refused(&s, -EINVAL, "malformed id");
	free(s.buf);
	s = (struct stream){ 0 };
	hello(&s, MIG_VERSION, MEM);
	section(&s, SNAP_SEC_META, "meta", "{}", 2);
	frame(&s, MIG_END, NULL, 0);
	refused(&s, -EPROTO, "END before the memory map");
	free(s.buf);
	/* Frames only the destination sends, and anything after END. */
	s = (struct stream){ 0 };
	body(&s);
	frame(&s, MIG_READY, NULL, 0);
	refused(&s, -EPROTO, "unexpected READY frame");
	free(s.buf);
	s = (struct stream){ 0 };
	body(&s);
	frame(&s, MIG_RUNNING, NULL, 0);
	refused(&s, -EPROTO, "unexpected RUNNING frame");
	free(s.buf);
}

/* ---- frames fed to the receiver one at a time ---- */

/* Feed every frame of @s (built with the helpers above), stopping at the first refusal. */
static int feed_stream(struct feed *f, const struct stream *s)
{
	size_t off = 0;
	int ret = 0;

	while (!ret && off < s->len) {
		struct mig_frame fr;

		assert_int_equal(mig_frame_decode(s->buf + off, &fr, f->err, sizeof(f->err)), 0);
		off += MIG_HDR;
		ret = feed(f, fr.type, s->buf + off, fr.length);
		off += fr.length;
	}
	return ret;
}

static void feed_hello(struct feed *f)
{
	struct stream s = { 0 };

	hello(&s, MIG_VERSION, MEM);
	assert_int_equal(feed_stream(f, &s), 0);
	free(s.buf);
}

static void expect_fed(struct feed *f, int ret, int want, const char *msg)
{
	if (ret != want || !strstr(f->err, msg))
		fail_msg("got %d '%s', wanted %d '%s'", ret, f->err, want, msg);
}

/* A memory map section of one region, as the source sends it. */
static void memmap_of(struct stream *s, struct snap_region r)
{
	struct snap_file map;
	struct sstream ss;

	memset(&map, 0, sizeof(map));
	map.nregions = 1;
	map.regions[0] = r;
	ss_init_save(&ss);
	snap_memmap_io(&ss, &map);
	section(s, SNAP_SEC_MEMMAP, "memory", ss.buf, ss.len);
	ss_free(&ss);
}

/* Every frame-level refusal of the receiver, each on its own, with its message. */
static void test_hostile_frames_each(void **state)
{
	static const struct snap_region bad_regions[] = {
		{ 0, MEM, SNAP_MEM_ALIGN - PG }, /* before the memory area */
		{ 0, 0, SNAP_MEM_ALIGN },	 /* empty */
		{ 0, MEM - 100, SNAP_MEM_ALIGN },
		{ 0, MEM, SNAP_MEM_ALIGN + MEM + PG }, /* starts past the end */
		{ 0, 2 * MEM, SNAP_MEM_ALIGN },	       /* longer than memory */
		{ 0, PG, SNAP_MEM_ALIGN + 100 },       /* not on a page */
	};
	uint8_t p[64] = { 0 }, sec[MIG_SEC_HDR + 4] = { 0 };
	struct stream s = { 0 };
	struct feed f;

	/* HELLO: twice, short, memory of 0 bytes. */
	feed_init(&f);
	feed_hello(&f);
	hello(&s, MIG_VERSION, MEM);
	expect_fed(&f, feed_stream(&f, &s), -EPROTO, "a second HELLO");
	feed_free(&f);
	free(s.buf);
	s = (struct stream){ 0 };
	feed_init(&f);
	expect_fed(&f, feed(&f, MIG_HELLO, p, 8), -EPROTO, "HELLO of 8 bytes");
	feed_free(&f);
	feed_init(&f);
	hello(&s, MIG_VERSION, 0);
	expect_fed(&f, feed_stream(&f, &s), -EINVAL, "memory size 0");
	feed_free(&f);
	free(s.buf);
	/* Memory maps: garbage, each malformed region, a second map. */
	feed_init(&f);
	feed_hello(&f);
	le32(p, 7); /* 7 regions */
	memcpy(sec + 8, "memory", 7);
	le32(sec, SNAP_SEC_MEMMAP);
	le32(sec + 4, 1);
	memcpy(sec + MIG_SEC_HDR, p, 4);
	expect_fed(&f, feed(&f, MIG_SECTION, sec, sizeof(sec)), -EINVAL, "memory map: ");
	feed_free(&f);
	for (size_t i = 0; i < sizeof(bad_regions) / sizeof(bad_regions[0]); i++) {
		s = (struct stream){ 0 };
		feed_init(&f);
		feed_hello(&f);
		memmap_of(&s, bad_regions[i]);
		expect_fed(&f, feed_stream(&f, &s), -EINVAL, "memory region 0 is malformed");
		feed_free(&f);
		free(s.buf);
	}
	s = (struct stream){ 0 };
	feed_init(&f);
	feed_hello(&f);
	memmap(&s);
	assert_int_equal(feed_stream(&f, &s), 0);
	/* A second map (it is not a section of the file: checked on its own). */
	free(s.buf);
	s = (struct stream){ 0 };
	memmap_of(&s, (struct snap_region){ 0, MEM, SNAP_MEM_ALIGN });
	expect_fed(&f, feed_stream(&f, &s), -EPROTO, "a second memory map");
	free(s.buf);
	/* Sections: shorter than their header, type 0, ids empty or without their NUL. */
	expect_fed(&f, feed(&f, MIG_SECTION, sec, MIG_SEC_HDR - 1), -EPROTO,
		   "SECTION frame of 55 bytes");
	memset(sec, 0, sizeof(sec));
	memcpy(sec + 8, "x", 2);
	expect_fed(&f, feed(&f, MIG_SECTION, sec, sizeof(sec)), -EINVAL,
		   "type 0 with a malformed id");
	le32(sec, SNAP_SEC_DEV);
	sec[8] = '\0';
	expect_fed(&f, feed(&f, MIG_SECTION, sec, sizeof(sec)), -EINVAL, "malformed id");
	memset(sec + 8, 'a', 48);
	expect_fed(&f, feed(&f, MIG_SECTION, sec, sizeof(sec)), -EINVAL, "malformed id");
	/* Version 0, which the file's reader refuses (fuzz_migrate found the receiver wrote it). */
	memset(sec + 8, 0, 48);
	memcpy(sec + 8, "meta", 5);
	le32(sec, SNAP_SEC_META);
	le32(sec + 4, 0);
	expect_fed(&f, feed(&f, MIG_SECTION, sec, sizeof(sec)), -EINVAL,
		   "section meta meta has version 0");
	le32(sec, SNAP_SEC_DEV);
	le32(sec + 4, 1);
	/* All sections together are bounded. */
	memset(sec + 8, 0, 48);
	memcpy(sec + 8, "big", 4);
	f.m.state_bytes = MIG_MAX_STATE - 3;
	expect_fed(&f, feed(&f, MIG_SECTION, sec, sizeof(sec)), -E2BIG, "bytes of state");
	f.m.state_bytes = 0;
	/* MEM shorter than its offset, ZERO of the wrong length or empty, AUTH of the wrong size. */
	expect_fed(&f, feed(&f, MIG_MEM, p, 4), -EPROTO, "MEM frame of 4 bytes");
	expect_fed(&f, feed(&f, MIG_ZERO, p, 8), -EPROTO, "ZERO frame of 8 bytes");
	memset(p, 0, 16);
	expect_fed(&f, feed(&f, MIG_ZERO, p, 16), -EINVAL, "outside guest memory");
	expect_fed(&f, feed(&f, MIG_AUTH, p, 16), -EPROTO, "unexpected AUTH frame of 16 bytes");
	/* END with a payload, END with no metadata yet, then anything after a good END. */
	expect_fed(&f, feed(&f, MIG_END, p, 1), -EPROTO, "unexpected END frame of 1 bytes");
	expect_fed(&f, feed(&f, MIG_END, NULL, 0), -EPROTO, "END before the metadata");
	s = (struct stream){ 0 };
	section(&s, SNAP_SEC_META, "meta", "{}", 2);
	assert_int_equal(feed_stream(&f, &s), 0);
	free(s.buf);
	assert_int_equal(feed(&f, MIG_END, NULL, 0), 0);
	expect_fed(&f, feed(&f, MIG_END, NULL, 0), -EPROTO, "END frame after END");
	feed_free(&f);
}

/* A disks section is kept as sent (the MAC covers it) and is in the snapshot. */
static void test_disks_section(void **state)
{
	struct stream s = { 0 };
	struct snap_file sf;
	char path[64], err[512];
	struct feed f;
	const struct snap_section *d;
	void *buf;

	feed_init(&f);
	body(&s);
	section(&s, SNAP_SEC_DISKS, "disks", "DISKS!", 6);
	section(&s, SNAP_SEC_DISKS, "disks2", "2", 1);
	frame(&s, MIG_END, NULL, 0);
	assert_int_equal(feed_stream(&f, &s), 0);
	assert_int_equal(f.m.disks_len, 1);
	assert_memory_equal(f.m.disks, "2", 1);
	assert_int_equal(mig_in_finish(&f.m, err, sizeof(err)), 0);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", f.fd);
	if (snap_file_open(&sf, path, true, err, sizeof(err)))
		fail_msg("%s", err);
	d = snap_file_find(&sf, SNAP_SEC_DISKS, "disks");
	assert_non_null(d);
	assert_int_equal(snap_file_read(&sf, d, &buf), 0);
	assert_memory_equal(buf, "DISKS!", 6);
	free(buf);
	snap_file_close(&sf);
	feed_free(&f);
	free(s.buf);
}

static void test_addresses(void **state)
{
	static const char *const good[] = { "127.0.0.1:7000", "[::1]:0", "10.1.2.3:65535" };
	static const char *const bad[] = {
		"127.0.0.1",
		"host:7000",
		"127.0.0.1:",
		":7000",
		"1.2.3.4:65536",
		"[::1:7",
		"1.2.3.4:7x",
		"[]:7000",
		"1.2.3.4:99999999999999999999999",
		"1111111111111111111111111111111111111111111111111111111111111111111111:7000",
	};
	struct sockaddr_storage ss;
	unsigned len;
	char err[256];

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		assert_int_equal(migrate_parse_addr(good[i], &ss, &len, err, sizeof(err)), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(migrate_parse_addr(bad[i], &ss, &len, err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, "expected IPv4:PORT"));
	}
}

/*
 * A receiver freed before any frame came (the source hung up at once) closes nothing it does
 * not own: it closed descriptor 0 (its writer's O_DIRECT descriptor was 0, not -1), which in
 * a process with other VMs was another VM's event loop.
 */
static void test_free_before_hello(void **state)
{
	struct mig_in m;
	int probe, fd = memfd_create("mig", 0);

	assert_true(fd >= 0);
	/* Descriptor 0 is open here (as stdin is), and it is not the receiver's. */
	probe = open("/dev/null", O_RDONLY);
	assert_true(probe >= 0);
	assert_int_equal(dup2(probe, 0), 0);
	close(probe);
	mig_in_init(&m, fd);
	mig_in_free(&m);
	assert_true(fcntl(0, F_GETFD) >= 0);
	assert_true(fcntl(fd, F_GETFD) >= 0);
	close(fd);
}

/* ---- AUTH: the MAC of the metadata and the disks with this user's host key ---- */

/* The MAC a source holding @key sends, computed here from the protocol's definition. */
static void mac_of(const uint8_t key[SNAP_KEY_BYTES], const void *meta, uint64_t mlen,
		   const void *disks, uint64_t dlen, uint8_t out[SNAP_MAC_BYTES])
{
	static const char ctx[] = "khyve migration MAC v1";
	crypto_generichash_state st;
	uint8_t le[8];

	assert_true(sodium_init() >= 0);
	crypto_generichash_init(&st, key, SNAP_KEY_BYTES, SNAP_MAC_BYTES);
	crypto_generichash_update(&st, (const uint8_t *)ctx, sizeof(ctx));
	le64(le, mlen);
	crypto_generichash_update(&st, le, 8);
	crypto_generichash_update(&st, meta, mlen);
	le64(le, dlen);
	crypto_generichash_update(&st, le, 8);
	crypto_generichash_update(&st, disks, dlen);
	crypto_generichash_final(&st, out, SNAP_MAC_BYTES);
}

static char tmpdir[64];

static void make_tmpdir(void)
{
	strcpy(tmpdir, "/tmp/khyve-migt-XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
}

static void rm_tmpdir(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	assert_int_equal(system(cmd), 0);
}

/* A configuration whose host key is @name in the temporary directory; made when @create. */
static void key_config(struct config *c, const char *name, bool create, uint8_t key[32])
{
	struct snap_keyref ref;
	char path[160], err[512];

	config_init(c);
	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	assert_int_equal(config_set(c, "snapshot.key", path), 0);
	if (!create)
		return;
	assert_int_equal(snap_key_locate(c, &ref, err, sizeof(err)), 0);
	if (snap_key_load(&ref, true, key, err, sizeof(err)))
		fail_msg("%s", err);
}

/*
 * The receiver trusts a stream whose AUTH is the MAC of its metadata and disks sections with
 * this user's key; not one with another MAC, none at all, or when this user has no key.
 */
static void test_authentic(void **state)
{
	uint8_t key[32], mac[SNAP_MAC_BYTES];
	struct stream s = { 0 };
	struct config c, nokey;
	struct feed f;

	make_tmpdir();
	key_config(&c, "key", true, key);
	key_config(&nokey, "none", false, NULL);
	body(&s);
	section(&s, SNAP_SEC_DISKS, "disks", "DISKS", 5);
	mac_of(key, "{}", 2, "DISKS", 5, mac);
	frame(&s, MIG_AUTH, mac, sizeof(mac));
	frame(&s, MIG_END, NULL, 0);
	feed_init(&f);
	assert_int_equal(feed_stream(&f, &s), 0);
	assert_true(f.m.have_mac);
	assert_true(mig_in_authentic(&f.m, &c));
	assert_false(mig_in_authentic(&f.m, &nokey));
	/* One bit of the MAC changed: another key's, or forged. */
	f.m.mac[7] ^= 0x10;
	assert_false(mig_in_authentic(&f.m, &c));
	f.m.mac[7] ^= 0x10;
	/* The disks section changed after the MAC was made: not what the source sent. */
	((uint8_t *)f.m.disks)[0] ^= 1;
	assert_false(mig_in_authentic(&f.m, &c));
	feed_free(&f);
	free(s.buf);
	/* No AUTH frame: never authentic. */
	s = (struct stream){ 0 };
	body(&s);
	frame(&s, MIG_END, NULL, 0);
	feed_init(&f);
	assert_int_equal(feed_stream(&f, &s), 0);
	assert_false(mig_in_authentic(&f.m, &c));
	feed_free(&f);
	free(s.buf);
	/* A stream without metadata yet: the MAC covers it as empty. */
	s = (struct stream){ 0 };
	hello(&s, MIG_VERSION, MEM);
	mac_of(key, NULL, 0, NULL, 0, mac);
	frame(&s, MIG_AUTH, mac, sizeof(mac));
	feed_init(&f);
	assert_int_equal(feed_stream(&f, &s), 0);
	assert_true(mig_in_authentic(&f.m, &c));
	feed_free(&f);
	free(s.buf);
	config_free(&c);
	config_free(&nokey);
	rm_tmpdir();
}

/* ---- the destination (migrate_incoming, khyve -R) against a source played here ---- */

static char addr[64];

struct incoming {
	pthread_t thread;
	struct vm vm;
	struct config cfg;
	int ret;
	char err[1024];
};

static void *incoming_main(void *arg)
{
	struct incoming *in = arg;

	in->ret = migrate_incoming(&in->vm, &in->cfg, addr, in->err, sizeof(in->err));
	return NULL;
}

/* Connect to @addr, trying again while nothing listens there yet. */
static int connect_addr(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001) };

	sin.sin_port = htons((uint16_t)atoi(strchr(addr, ':') + 1));
	for (unsigned i = 0; i < 2000; i++) {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

		assert_true(fd >= 0);
		if (!connect(fd, (struct sockaddr *)&sin, sizeof(sin)))
			return fd;
		close(fd);
		usleep(2000);
	}
	fail_msg("nothing listens on %s", addr);
	return -1;
}

static void write_all(int fd, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);

		assert_true(w > 0);
		p += w;
		n -= (size_t)w;
	}
}

/* The destination's answer: a frame of @type, its payload (a message) in @text. */
static void answer(int fd, uint32_t type, char *text, size_t len)
{
	uint8_t h[MIG_HDR], p[MIG_MAX_MSG];
	struct mig_frame f;
	char err[256];

	assert_true(lo_read_all(fd, h, sizeof(h)));
	assert_int_equal(mig_frame_decode(h, &f, err, sizeof(err)), 0);
	assert_int_equal(f.type, type);
	assert_true(f.length < len && f.length <= sizeof(p));
	assert_true(lo_read_all(fd, p, f.length));
	assert_int_equal(snap_checksum(p, f.length), f.checksum);
	memcpy(text, p, f.length);
	text[f.length] = '\0';
}

/*
 * The source sends @s whole, then ends its side; the destination must refuse it with @ret and
 * a message holding @msg, tell the source the same in REFUSE, and keep no descriptor.
 */
static void incoming_refuses(struct config *cfg, const struct stream *s, int ret, const char *msg)
{
	struct incoming in;
	char why[MIG_MAX_MSG + 1];
	unsigned fds = open_fds();
	int fd;

	memset(&in, 0, sizeof(in));
	if (cfg)
		in.cfg = *cfg;
	else
		config_init(&in.cfg);
	lo_free_addr(addr, sizeof(addr));
	assert_int_equal(pthread_create(&in.thread, NULL, incoming_main, &in), 0);
	fd = connect_addr();
	write_all(fd, s->buf, s->len);
	shutdown(fd, SHUT_WR);
	answer(fd, MIG_REFUSE, why, sizeof(why));
	close(fd);
	assert_int_equal(pthread_join(in.thread, NULL), 0);
	if (in.ret != ret || !strstr(in.err, msg))
		fail_msg("got %d '%s', wanted %d '%s'", in.ret, in.err, ret, msg);
	/* The source hears the destination's own message. */
	assert_string_equal(why, in.err);
	assert_false(migrate_incoming_pending());
	assert_int_equal(open_fds(), fds);
	if (cfg)
		*cfg = in.cfg;
	else
		config_free(&in.cfg);
}

/* What a broken or hostile source sends is refused, and the source is told why. */
static void test_incoming_refuses(void **state)
{
	struct stream s = { 0 };

	signal(SIGPIPE, SIG_IGN);
	/* Not a migration stream at all. */
	put(&s, "GET / HTTP/1.0\r\n\r\n......", 24);
	incoming_refuses(NULL, &s, -EPROTO, "incoming VM: not a khyve migration stream");
	free(s.buf);
	/* A source of another protocol version. */
	s = (struct stream){ 0 };
	hello(&s, MIG_VERSION + 1, MEM);
	incoming_refuses(NULL, &s, -EPROTO, "protocol version");
	free(s.buf);
	/* A first frame that is not HELLO. */
	s = (struct stream){ 0 };
	frame(&s, MIG_END, NULL, 0);
	incoming_refuses(NULL, &s, -EPROTO, "END frame before HELLO");
	free(s.buf);
	/* A stream that stops before END (a source that died): its memory is dropped. */
	s = (struct stream){ 0 };
	body(&s);
	incoming_refuses(NULL, &s, -ECONNRESET, "the connection was closed");
	free(s.buf);
	/* Live: pre-copy rounds, then the connection ends (the VM made ahead is dropped). */
	s = (struct stream){ 0 };
	hello_flags(&s, MIG_VERSION, MIG_F_LIVE, MEM);
	mem(&s, 0, 0x11, 4);
	round_end(&s, 1, 4);
	incoming_refuses(NULL, &s, -ECONNRESET, "the connection was closed");
	free(s.buf);
	/* A frame whose checksum does not match: corrupted on the way. */
	s = (struct stream){ 0 };
	body(&s);
	s.buf[s.len - 10] ^= 4;
	incoming_refuses(NULL, &s, -EBADMSG, "MEM frame: checksum mismatch");
	free(s.buf);
}

/*
 * A whole stream is restored as a file is: with the trust mode of this side's configuration
 * (one it does not know is refused before anything is restored), the fast verification (every
 * frame was checksummed), and host resources from the stream only if the source proved with
 * AUTH that it is this user's khyve.  This one's metadata is no VM's: the restore refuses it,
 * and the source is told.
 */
static void test_incoming_restore(void **state)
{
	uint8_t key[32], mac[SNAP_MAC_BYTES];
	struct stream s = { 0 };
	struct config c;

	signal(SIGPIPE, SIG_IGN);
	make_tmpdir();
	body(&s);
	frame(&s, MIG_END, NULL, 0);
	config_init(&c);
	assert_int_equal(config_set(&c, "snapshot.trust", "maybe"), 0);
	incoming_refuses(&c, &s, -EINVAL, "snapshot.trust=maybe: expected auto, file or none");
	assert_null(config_get(&c, "snapshot.verify"));
	config_free(&c);
	/* Not authenticated (no AUTH): trust stays "auto"; verification is the fast one. */
	key_config(&c, "key", true, key);
	incoming_refuses(&c, &s, -EINVAL, "metadata has no configuration");
	assert_null(config_get(&c, "snapshot.trust"));
	assert_string_equal(config_get(&c, "snapshot.verify"), "fast");
	config_free(&c);
	/* One asked for is kept. */
	key_config(&c, "key", false, NULL);
	assert_int_equal(config_set(&c, "snapshot.verify", "full"), 0);
	incoming_refuses(&c, &s, -EINVAL, "metadata has no configuration");
	assert_string_equal(config_get(&c, "snapshot.verify"), "full");
	config_free(&c);
	free(s.buf);
	/* Authenticated: the stream is trusted as an authenticated file is. */
	s = (struct stream){ 0 };
	body(&s);
	mac_of(key, "{}", 2, NULL, 0, mac);
	frame(&s, MIG_AUTH, mac, sizeof(mac));
	frame(&s, MIG_END, NULL, 0);
	key_config(&c, "key", false, NULL);
	incoming_refuses(&c, &s, -EINVAL, "metadata has no configuration");
	assert_string_equal(config_get(&c, "snapshot.trust"), "file");
	config_free(&c);
	free(s.buf);
	rm_tmpdir();
}

/* An address it cannot listen on: refused with the address and the reason. */
static void test_incoming_bad_address(void **state)
{
	struct config c;
	struct vm v;
	char err[512];
	unsigned fds = open_fds();

	config_init(&c);
	memset(&v, 0, sizeof(v));
	assert_int_equal(migrate_incoming(&v, &c, "localhost:7000", err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "expected IPv4:PORT or [IPv6]:PORT"));
	/* Not an address of this host (TEST-NET-1). */
	assert_int_equal(migrate_incoming(&v, &c, "192.0.2.1:7000", err, sizeof(err)),
			 -EADDRNOTAVAIL);
	assert_non_null(strstr(err, "-R 192.0.2.1:7000: "));
	assert_int_equal(open_fds(), fds);
	/* Nothing incoming: the rest of the hand-over has nothing to do. */
	assert_false(migrate_incoming_pending());
	assert_int_equal(migrate_incoming_go(err, sizeof(err)), 0);
	migrate_incoming_running();
	migrate_incoming_refuse("no");
	migrate_incoming_cleanup();
	assert_int_equal(open_fds(), fds);
	config_free(&c);
}

/* ---- the source (migrate_send) of a VM without KVM, against a destination played here ---- */

#define R0 (4ULL << 20)
#define R1 (2ULL << 20)

/* Guest RAM of two regions, part of it written, in a VM with no KVM behind it. */
static void bare_vm(struct vm *v, struct config *c)
{
	vm_init_bare(v, false);
	config_init(c);
	v->cfg = c;
	for (unsigned i = 0; i < 2; i++) {
		uint64_t size = i ? R1 : R0;
		uint8_t *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
				  -1, 0);

		assert_true(p != MAP_FAILED);
		memset(p, 0x5a, size / 2);
		v->mem[i] = (struct mem_region){ i ? 0x100000000ULL : 0, size, p, i };
		v->nmem = i + 1;
	}
}

static void bare_vm_free(struct vm *v, struct config *c)
{
	vm_destroy(v);
	config_free(c);
}

/* What the destination played here saw, and what it answers once the source's side ends. */
struct peer {
	int lfd;
	pthread_t thread;
	const char *refuse; /* REFUSE with this, or NULL: close without a word */
	uint32_t version, flags;
	uint64_t mem_size, trailing; /* HELLO's fields; bytes after HELLO */
};

static void *peer_main(void *arg)
{
	struct peer *p = arg;
	uint8_t h[MIG_HDR], hello_p[16], buf[4096];
	struct mig_frame f;
	char err[256];
	ssize_t n;
	int fd = accept4(p->lfd, NULL, NULL, SOCK_CLOEXEC);

	assert_true(fd >= 0);
	assert_true(lo_read_all(fd, h, sizeof(h)));
	assert_int_equal(mig_frame_decode(h, &f, err, sizeof(err)), 0);
	assert_int_equal(f.type, MIG_HELLO);
	assert_int_equal(f.length, 16);
	assert_true(lo_read_all(fd, hello_p, sizeof(hello_p)));
	assert_int_equal(snap_checksum(hello_p, 16), f.checksum);
	p->version = (uint32_t)hello_p[0] | (uint32_t)hello_p[1] << 8;
	p->flags = hello_p[4];
	for (unsigned i = 0; i < 8; i++)
		p->mem_size |= (uint64_t)hello_p[8 + i] << (8 * i);
	/* Until the source ends its side (it shuts it when it gives up). */
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		p->trailing += (uint64_t)n;
	if (p->refuse)
		assert_int_equal(mig_send_frame(fd, MIG_REFUSE, p->refuse, strlen(p->refuse), NULL,
						0),
				 0);
	close(fd);
	return NULL;
}

static void peer_start(struct peer *p, const char *refuse)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001) };
	socklen_t len = sizeof(sin);

	memset(p, 0, sizeof(*p));
	p->refuse = refuse;
	p->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(p->lfd >= 0);
	assert_int_equal(bind(p->lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(p->lfd, 1), 0);
	assert_int_equal(getsockname(p->lfd, (struct sockaddr *)&sin, &len), 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", ntohs(sin.sin_port));
	assert_int_equal(pthread_create(&p->thread, NULL, peer_main, p), 0);
}

static void peer_join(struct peer *p)
{
	assert_int_equal(pthread_join(p->thread, NULL), 0);
	close(p->lfd);
}

/*
 * The source cannot pause its VM (here: no KVM clock to read).  It says so, runs on, and adds
 * what the destination answered to the source's own end of the stream: its refusal, made
 * safe to print, or nothing when it hung up without a word.
 */
static void test_source_pause_fails(void **state)
{
	struct migrate_result res;
	struct config c;
	struct peer p;
	struct vm v;
	char err[1024];
	unsigned fds;
	int ret;

	signal(SIGPIPE, SIG_IGN);
	bare_vm(&v, &c);
	fds = open_fds();
	peer_start(&p, "no room for it here\n\033[2J");
	ret = migrate_send(&v, addr, NULL, &res, err, sizeof(err));
	peer_join(&p);
	assert_int_equal(ret, -EBADF);
	if (!strstr(err, "reading the KVM clock: ") ||
	    !strstr(err, "; the destination refused the VM: no room for it here"))
		fail_msg("'%s'", err);
	for (const char *q = err; *q; q++)
		if ((unsigned char)*q < 0x20 || (unsigned char)*q > 0x7e)
			fail_msg("a control character in '%s'", err);
	/* HELLO said who is coming, and nothing followed. */
	assert_int_equal(p.version, MIG_VERSION);
	assert_int_equal(p.flags, 0);
	assert_int_equal(p.mem_size, R0 + R1);
	assert_int_equal(p.trailing, 0);
	assert_false(v.paused);
	assert_int_equal(res.rounds, 0);
	assert_int_equal(open_fds(), fds);
	/* A destination that hangs up without a word: the source's reason alone. */
	peer_start(&p, NULL);
	ret = migrate_send(&v, addr, NULL, &res, err, sizeof(err));
	peer_join(&p);
	assert_int_equal(ret, -EBADF);
	assert_non_null(strstr(err, "reading the KVM clock: "));
	assert_null(strstr(err, "destination"));
	assert_false(v.paused);
	assert_int_equal(open_fds(), fds);
	bare_vm_free(&v, &c);
}

/* Refused before anything is sent: a paused VM, an address that is not one, nobody there. */
static void test_source_refused(void **state)
{
	struct migrate_result res;
	struct config c;
	struct vm v;
	char err[1024], want[256];
	unsigned fds;

	bare_vm(&v, &c);
	fds = open_fds();
	v.paused = true;
	assert_int_equal(migrate_send(&v, "127.0.0.1:1", NULL, &res, err, sizeof(err)), -EALREADY);
	assert_string_equal(err, "the VM is paused: resume it before migrating it");
	v.paused = false;
	assert_int_equal(migrate_send(&v, "127.0.0.1", NULL, &res, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "expected IPv4:PORT"));
	/* A port nobody listens on (one just freed). */
	lo_free_addr(addr, sizeof(addr));
	assert_int_equal(migrate_send(&v, addr, NULL, &res, err, sizeof(err)), -ECONNREFUSED);
	snprintf(want, sizeof(want), "connecting to %s: %s (is khyve -R %s waiting there?)", addr,
		 strerror(ECONNREFUSED), addr);
	assert_string_equal(err, want);
	assert_false(v.paused);
	assert_int_equal(open_fds(), fds);
	bare_vm_free(&v, &c);
}

/* A memory map of @n regions of @size bytes each, back to back from the memory area's start. */
static void memmap_n(struct stream *s, unsigned n, uint64_t size)
{
	struct snap_file map;
	struct sstream ss;

	memset(&map, 0, sizeof(map));
	map.nregions = n;
	for (unsigned i = 0; i < n; i++)
		map.regions[i] = (struct snap_region){ i * 0x100000000ULL, size,
						       SNAP_MEM_ALIGN + i * size };
	ss_init_save(&ss);
	snap_memmap_io(&ss, &map);
	assert_int_equal(ss_error(&ss), 0);
	section(s, SNAP_SEC_MEMMAP, "memory", ss.buf, ss.len);
	ss_free(&ss);
}

/* A new stream @s for @f: HELLO for @size bytes, META, and a MEMMAP of one region of it. */
static void one_region(struct stream *s, struct feed *f, uint64_t size)
{
	*s = (struct stream){ 0 };
	feed_init(f);
	hello(s, MIG_VERSION, size);
	section(s, SNAP_SEC_META, "meta", "{}", 2);
	memmap_n(s, 1, size);
}

/*
 * The receiver at its edges: the largest guest (2 MiB units), a unit of two bitmap words
 * whose extent runs from its first page with data to its last, more extents than the list's
 * first allocation, a region that would split a 2 MiB chunk, ids with a character past '~',
 * an empty disks section, ROUND frames after the memory map or past the most rounds there
 * may be, and a finish before END.
 */
static void test_receiver_edges(void **state)
{
	struct stream s = { 0 };
	char err[512];
	struct feed f;
	uint8_t sec[MIG_SEC_HDR] = { 0 };

	/* 1 TiB (MIG_MAX_MEM): units of 512 pages, 2 MiB, the most. */
	feed_init(&f);
	hello(&s, MIG_VERSION, MIG_MAX_MEM);
	assert_int_equal(feed_stream(&f, &s), 0);
	assert_int_equal(f.m.unit_pages, 512);
	feed_free(&f);
	free(s.buf);
	/* 16 GiB: 128-page units; pages 0 and 100 of the first make one extent of 101 pages. */
	one_region(&s, &f, 16ULL << 30);
	mem(&s, 0, 1, 1);
	mem(&s, 100 * PG, 2, 1);
	frame(&s, MIG_END, NULL, 0);
	assert_int_equal(feed_stream(&f, &s), 0);
	assert_int_equal(mig_in_finish(&f.m, err, sizeof(err)), 0);
	assert_int_equal(f.m.map.nextents, 1);
	assert_int_equal(f.m.map.extents[0].length, 101 * PG);
	feed_free(&f);
	free(s.buf);
	/* 128 MiB, a page in each of 300 units: 300 extents. */
	one_region(&s, &f, 128ULL << 20);
	for (unsigned u = 0; u < 300; u++)
		mem(&s, u * 64 * PG + (u % 64) * PG, (uint8_t)u, 1);
	frame(&s, MIG_END, NULL, 0);
	assert_int_equal(feed_stream(&f, &s), 0);
	assert_int_equal(mig_in_finish(&f.m, err, sizeof(err)), 0);
	assert_int_equal(f.m.map.nextents, 300);
	assert_int_equal(f.m.map.extents[299].file_offset,
			 SNAP_MEM_ALIGN + (299 * 64 + 299 % 64) * PG);
	feed_free(&f);
	free(s.buf);
	/* Two regions of 1 MiB: the second starts inside the first 2 MiB chunk. */
	s = (struct stream){ 0 };
	feed_init(&f);
	hello(&s, MIG_VERSION, MEM);
	section(&s, SNAP_SEC_META, "meta", "{}", 2);
	memmap_n(&s, 2, 1ULL << 20);
	frame(&s, MIG_END, NULL, 0);
	assert_int_equal(feed_stream(&f, &s), 0);
	assert_int_equal(mig_in_finish(&f.m, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "memory region 1 is not 2 MiB aligned");
	feed_free(&f);
	free(s.buf);
	/* An id with DEL in it; an empty disks section (kept: the MAC covers it). */
	feed_init(&f);
	feed_hello(&f);
	le32(sec, SNAP_SEC_DEV);
	le32(sec + 4, 1);
	memcpy(sec + 8, "uart\x7f", 6);
	expect_fed(&f, feed(&f, MIG_SECTION, sec, sizeof(sec)), -EINVAL, "malformed id");
	s = (struct stream){ 0 };
	section(&s, SNAP_SEC_DISKS, "disks", "", 0);
	assert_int_equal(feed_stream(&f, &s), 0);
	assert_non_null(f.m.disks);
	assert_int_equal(f.m.disks_len, 0);
	free(s.buf);
	/* Not ended: no snapshot to finish. */
	assert_int_equal(mig_in_finish(&f.m, err, sizeof(err)), -EPROTO);
	assert_string_equal(err, "the stream ended before END");
	feed_free(&f);
	/* Live: a ROUND after the memory map; one past the most rounds. */
	s = (struct stream){ 0 };
	feed_init(&f);
	hello_flags(&s, MIG_VERSION, MIG_F_LIVE, MEM);
	memmap(&s);
	round_end(&s, 1, 0);
	expect_fed(&f, feed_stream(&f, &s), -EPROTO, "a ROUND frame after the state");
	feed_free(&f);
	free(s.buf);
	s = (struct stream){ 0 };
	feed_init(&f);
	hello_flags(&s, MIG_VERSION, MIG_F_LIVE, MEM);
	assert_int_equal(feed_stream(&f, &s), 0);
	free(s.buf);
	f.m.rounds = MIG_MAX_ROUNDS;
	s = (struct stream){ 0 };
	round_end(&s, MIG_MAX_ROUNDS + 1, 0);
	expect_fed(&f, feed_stream(&f, &s), -EPROTO, "ROUND 1001 after round 1000 (at most 1000)");
	feed_free(&f);
	free(s.buf);
}

/* khyve -R on an IPv6 address: the source connects there, and is refused there as on IPv4. */
static void test_incoming_ipv6(void **state)
{
	struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	socklen_t len = sizeof(sin6);
	char why[MIG_MAX_MSG + 1];
	struct incoming in;
	unsigned fds = open_fds();
	int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	if (bind(fd, (struct sockaddr *)&sin6, sizeof(sin6))) {
		close(fd);
		skip(); /* no IPv6 loopback here */
	}
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin6, &len), 0);
	close(fd);
	snprintf(addr, sizeof(addr), "[::1]:%u", ntohs(sin6.sin6_port));
	memset(&in, 0, sizeof(in));
	config_init(&in.cfg);
	assert_int_equal(pthread_create(&in.thread, NULL, incoming_main, &in), 0);
	for (unsigned i = 0;; i++) {
		fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
		assert_true(fd >= 0);
		if (!connect(fd, (struct sockaddr *)&sin6, sizeof(sin6)))
			break;
		close(fd);
		if (i == 2000)
			fail_msg("nothing listens on %s", addr);
		usleep(2000);
	}
	write_all(fd, (const uint8_t *)"not a migration stream!", 24);
	shutdown(fd, SHUT_WR);
	answer(fd, MIG_REFUSE, why, sizeof(why));
	close(fd);
	assert_int_equal(pthread_join(in.thread, NULL), 0);
	assert_int_equal(in.ret, -EPROTO);
	assert_string_equal(why, "incoming VM: not a khyve migration stream (bad frame magic)");
	config_free(&in.cfg);
	assert_int_equal(open_fds(), fds);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_frame_header),
		cmocka_unit_test(test_stream_is_a_snapshot),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_bad_checksum),
		cmocka_unit_test(test_hostile_frames),
		cmocka_unit_test(test_addresses),
		cmocka_unit_test(test_free_before_hello),
		cmocka_unit_test(test_live_rounds),
		cmocka_unit_test(test_extents_per_unit),
		cmocka_unit_test(test_live_hostile),
		cmocka_unit_test(test_hostile_frames_each),
		cmocka_unit_test(test_disks_section),
		cmocka_unit_test(test_authentic),
		cmocka_unit_test(test_incoming_refuses),
		cmocka_unit_test(test_incoming_restore),
		cmocka_unit_test(test_incoming_bad_address),
		cmocka_unit_test(test_source_pause_fails),
		cmocka_unit_test(test_source_refused),
		cmocka_unit_test(test_receiver_edges),
		cmocka_unit_test(test_incoming_ipv6),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
