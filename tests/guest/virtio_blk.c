// SPDX-License-Identifier: MIT
/*
 * khyve test guest, ring 3: virtio-blk, mode=blk and mode=blkbench.
 *
 * mode=blk runs forever over the first virtio-blk disk in passes: in pass
 * p every 64 KiB block is read and checked against the pattern it was
 * last written with, then written with pass p's pattern (every 8 bytes
 * distinct: the pass and the byte offset on the disk), with a FLUSH every
 * blkflush writes; the first word of each sector names its pass and
 * sector, for the diagnosis. Which pass each block last held is kept in guest
 * memory, updated when the write completes, so a snapshot restored with
 * a copy of the disk taken at the same moment (khyve's
 * snapshot.disks=clone) must read back exactly what the table says: a
 * lost, repeated, torn or misdirected write shows as a mismatch.
 * Requests are pipelined, blkdepth (default 4) blocks at a time, so a
 * snapshot finds requests in flight; a pass only starts when the previous
 * one has completed, so no block is ever read while its write is out.
 *
 * mode=blkbench keeps blkdepth requests of blksize bytes in flight for
 * `seconds`, then prints one BLKBENCH line and powers off.
 */
#include "user.h"
#include "virtio.h"

#define VIRTIO_BLK_F_SEG_MAX	2
#define VIRTIO_BLK_F_RO		5
#define VIRTIO_BLK_F_BLK_SIZE	6
#define VIRTIO_BLK_F_FLUSH	9
#define VIRTIO_BLK_F_TOPOLOGY	10

#define VIRTIO_BLK_T_IN		0
#define VIRTIO_BLK_T_OUT	1
#define VIRTIO_BLK_T_FLUSH	4
#define VIRTIO_BLK_S_OK		0

#define BLK_CFG_CAPACITY	0

#define BLK_WANT	(1ull << VIRTIO_F_INDIRECT_DESC | 1ull << VIRTIO_F_EVENT_IDX | \
			 1ull << VIRTIO_BLK_F_SEG_MAX | 1ull << VIRTIO_BLK_F_BLK_SIZE | \
			 1ull << VIRTIO_BLK_F_FLUSH | 1ull << VIRTIO_BLK_F_TOPOLOGY)

#define CHUNK		(64u << 10)
#define MAX_DEPTH	128
#define MAX_FAILS	20	/* mismatch lines printed; the rest are counted */
#define STALL_MS	30000
#define FLUSH_COOKIE	MAX_DEPTH

/* One request's driver-side memory: header, indirect table, status. */
struct blkreq {
	u32 type;
	u32 reserved;
	u64 sector;
	struct vring_desc ind[3] __attribute__((aligned(16)));
	u8 status;
} __attribute__((aligned(64)));

static struct vdev blk;
static u64 capacity;		/* bytes */
static char why[96];

static struct blkreq *req_alloc(u32 n)
{
	struct blkreq *r = vio_alloc(n * sizeof(*r), 64);

	if (!r)
		fail_final("blk: out of memory for %u requests", n);
	return r;
}

/* Queue one request: header, data (if any), status. */
static int blk_submit(struct vq *q, struct blkreq *r, u32 type, u64 off, void *data, u32 len,
		      u64 cookie)
{
	struct vbuf b[3];
	u32 n = 0;

	r->type = type;
	r->reserved = 0;
	r->sector = off / 512;
	r->status = 0xff;
	b[n++] = (struct vbuf){ r, 16, false };
	if (len)
		b[n++] = (struct vbuf){ data, len, type == VIRTIO_BLK_T_IN };
	b[n++] = (struct vbuf){ &r->status, 1, true };
	return vq_add(q, b, n, cookie, vdev_has(q->vd, VIRTIO_F_INDIRECT_DESC) ? r->ind : NULL);
}

static void blk_setup(bool need_write)
{
	int r = vdev_find(&blk, VIRTIO_ID_BLOCK, 0, "blk", why, sizeof(why));

	if (r == -1)
		fail_final("blk: no virtio-blk device");
	if (r)
		fail_final("blk: %s", why);
	if (vdev_init(&blk, BLK_WANT, 1, VQ_MAX, why, sizeof(why)))
		fail_final("blk: %s", why);
	if (need_write && (blk.offered >> VIRTIO_BLK_F_RO & 1))
		fail_final("blk: the disk is read-only");
	capacity = vcfg_read64(&blk, BLK_CFG_CAPACITY) * 512;
	if (!capacity)
		fail_final("blk: capacity 0");
}

static const char *st_name(u8 st)
{
	return st == 1 ? "IOERR" : st == 2 ? "UNSUPP" : st == 0xff ? "not written" : "bad";
}

/* ---- mode=blk ---- */

enum { S_IDLE, S_READ, S_WRITE };

struct slot {
	struct blkreq *r;
	u64 *buf;
	u32 block, len;
	u32 state;
};

/*
 * Everything lives in guest memory (BSS and vio_alloc): a snapshot saves
 * it together with the disk.
 */
static struct slot slots[MAX_DEPTH];
static u32 *written;		/* per block: 1 + pass of the last completed write, 0: never */
static u32 nblocks, depth, next_block, busy;
static u32 pass;
static u64 writes, flushes, seq, fails;
static struct blkreq *flush_req;
static bool flush_busy;

/*
 * Word @word of the disk in pass @p. The first word of every 512-byte
 * sector says what it is (a tag byte, the pass, the sector), so a bad
 * sector can be told apart: stale (an older pass), misdirected (another
 * sector), torn or foreign data. The other words are a hash of both.
 */
#define SECTOR_TAG	0xb1ull

static inline u64 pattern(u32 p, u64 word)
{
	u64 x;

	if (!(word % 64))
		return SECTOR_TAG << 56 | (u64)(p & 0xfffffff) << 28 | (word / 64 & 0xfffffff);
	x = (p + 1) * 0x9e3779b97f4a7c15ull ^ (word + 1) * 0xbf58476d1ce4e5b9ull;
	x ^= x >> 31;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 29;
	return x;
}

static u32 block_len(u32 b)
{
	u64 off = (u64)b * CHUNK;

	return capacity - off < CHUNK ? capacity - off : CHUNK;
}

/* What the sector holding word @w of @s's buffer holds, as far as its first word tells. */
static void guess(char *out, u32 size, const struct slot *s, u32 w)
{
	u64 h = s->buf[w & ~63u], want = (u64)s->block * (CHUNK / 512) + w / 64;
	u32 p = h >> 28 & 0xfffffff;

	if (!h)
		fmt(out, size, "sector starts with zeros");
	else if (h >> 56 != SECTOR_TAG)
		fmt(out, size, "sector holds foreign data");
	else if ((h & 0xfffffff) != (want & 0xfffffff))
		fmt(out, size, "sector holds sector %lu of pass %u", h & 0xfffffff, p);
	else if (s->buf[w] == pattern(p, (u64)s->block * (CHUNK / 8) + w))
		fmt(out, size, "sector holds pass %u's data", p);
	else
		fmt(out, size, "sector of pass %u, torn", p);
}

static void verify(struct slot *s)
{
	u32 last = written[s->block], n = s->len / 8, w, bad = 0, first = 0;
	u64 base = (u64)s->block * (CHUNK / 8);
	char what[48];

	if (!last)
		return;		/* never written by this guest: anything goes */
	for (w = 0; w < n; w++) {
		if (s->buf[w] != pattern(last - 1, base + w)) {
			if (!bad++)
				first = w;
		}
	}
	if (!bad)
		return;
	if (++fails > MAX_FAILS)
		return;
	guess(what, sizeof(what), s, first);
	/* Two lines: pr() cuts at 160 characters. */
	pr("TESTGUEST FAIL: blk block %u pass %u: %u of %u words differ from pass %u\n",
	   s->block, pass, bad, n, last - 1);
	pr("blk: block %u byte %u: want 0x%lx got 0x%lx (%s)\n", s->block, first * 8,
	   pattern(last - 1, base + first), s->buf[first], what);
}

static void fill(struct slot *s)
{
	u32 n = s->len / 8, w;
	u64 base = (u64)s->block * (CHUNK / 8);

	for (w = 0; w < n; w++)
		s->buf[w] = pattern(pass, base + w);
}

static void submit(struct slot *s, u32 type)
{
	if (blk_submit(&blk.vq[0], s->r, type, (u64)s->block * CHUNK, s->buf, s->len,
		       s - slots))
		fail_final("blk: queue full (%u free)", vq_free(&blk.vq[0]));
	s->state = type == VIRTIO_BLK_T_IN ? S_READ : S_WRITE;
}

/* A progress line now and then (every pass would flood the console). */
static void pass_report(void)
{
	static u64 last;
	u64 t = rdtsc();

	if (last && t - last < 10 * tsc_hz)
		return;
	last = t;
	pr("blk: pass %u, %lu writes, %lu flushes\n", pass, writes, flushes);
}

static void issue(void)
{
	u32 i;

	for (i = 0; i < depth && next_block < nblocks; i++) {
		struct slot *s = &slots[i];

		if (s->state != S_IDLE)
			continue;
		s->block = next_block++;
		s->len = block_len(s->block);
		submit(s, VIRTIO_BLK_T_IN);
		busy++;
	}
	if (next_block == nblocks && !busy && !flush_busy) {
		pass++;
		next_block = 0;
		pass_report();
	}
}

static void flush_start(void)
{
	if (!vdev_has(&blk, VIRTIO_BLK_F_FLUSH) || flush_busy)
		return;
	if (blk_submit(&blk.vq[0], flush_req, VIRTIO_BLK_T_FLUSH, 0, NULL, 0, FLUSH_COOKIE))
		fail_final("blk: queue full for a flush");
	flush_busy = true;
}

static void complete(u64 cookie, u32 len)
{
	struct slot *s;
	u8 st;

	if (cookie == FLUSH_COOKIE) {
		if (flush_req->status != VIRTIO_BLK_S_OK)
			pr("TESTGUEST FAIL: blk flush: status %u (%s)\n", flush_req->status,
			   st_name(flush_req->status));
		flush_busy = false;
		flushes++;
		return;
	}
	s = &slots[cookie];
	st = s->r->status;
	if (st != VIRTIO_BLK_S_OK)
		fail_final("blk block %u pass %u: %s status %u (%s)", s->block, pass,
			   s->state == S_READ ? "read" : "write", st, st_name(st));
	if (s->state == S_READ) {
		if (len < s->len + 1)
			pr("blk: block %u read: used length %u for %u bytes\n", s->block, len,
			   s->len);
		verify(s);
		fill(s);
		submit(s, VIRTIO_BLK_T_OUT);
		return;
	}
	written[s->block] = pass + 1;
	s->state = S_IDLE;
	busy--;
	if (++writes && vopt.blkflush && !(writes % vopt.blkflush))
		flush_start();
}

void blk_run(void)
{
	u64 period = tsc_hz / opt.rate, next, t, cookie;
	struct rtime stall;
	bool stall_reported = false;
	u32 len, i;
	int r;

	cur_check = "blk";
	blk_setup(true);
	depth = vopt.blkdepth ? vopt.blkdepth : 4;
	if (depth > MAX_DEPTH)
		depth = MAX_DEPTH;
	if (!vdev_has(&blk, VIRTIO_F_INDIRECT_DESC) && depth * 3 + 2 > blk.vq[0].size)
		depth = (blk.vq[0].size - 2) / 3;
	nblocks = (capacity + CHUNK - 1) / CHUNK;
	written = vio_alloc(nblocks * sizeof(*written), 64);
	if (!written)
		fail_final("blk: no memory to track %u blocks", nblocks);
	flush_req = req_alloc(1);
	for (i = 0; i < depth; i++) {
		slots[i].r = req_alloc(1);
		slots[i].buf = vio_alloc(CHUNK, 4096);
		if (!slots[i].buf)
			fail_final("blk: out of memory for buffers");
	}
	pr("blk: %lu KiB, %u blocks of %u KiB, depth %u, flush every %lu writes, "
	   "features 0x%lx, queue %u\n", capacity >> 10, nblocks, CHUNK >> 10, depth,
	   vdev_has(&blk, VIRTIO_BLK_F_FLUSH) ? vopt.blkflush : 0, blk.features,
	   blk.vq[0].size);
	next = rdtsc() + period;
	rt_start(&stall);
	for (;;) {
		issue();
		vq_kick(&blk.vq[0]);
		while ((r = vq_poll(&blk.vq[0], &cookie, &len, why, sizeof(why))) > 0) {
			complete(cookie, len);
			rt_start(&stall);
			if (stall_reported) {
				pr("blk: completions again\n");
				stall_reported = false;
			}
		}
		if (r < 0)
			fail_final("blk: %s", why);
		if (!stall_reported && rt_ms(&stall) > STALL_MS) {
			pr("TESTGUEST FAIL: blk: no completion for %u s: %s\n", STALL_MS / 1000,
			   vq_describe(&blk.vq[0]));
			stall_reported = true;
		}
		t = rdtsc();
		if ((s64)(t - next) >= 0) {
			pr("seq %lu\n", ++seq);
			next = seq_deadline(next, t, period);
		} else if ((s64)(next - t) > (s64)(2 * period)) {
			next = t + period;
		}
		power_button_poll();
		cpu_relax();
	}
}

/* ---- one good request (evil.c) ---- */

int blk_good_request(struct vdev *vd, char *w, u32 wl)
{
	static struct blkreq *r;
	static u8 *buf;
	u64 cookie;
	u32 len;
	int ret;

	if (!r) {
		r = req_alloc(1);
		buf = vio_alloc(4096, 4096);
	}
	if (blk_submit(&vd->vq[0], r, VIRTIO_BLK_T_IN, 0, buf, 4096, 1)) {
		fmt(w, wl, "queue full");
		return -1;
	}
	vq_kick(&vd->vq[0]);
	ret = vq_wait(&vd->vq[0], &cookie, &len, 2000, w, wl);
	if (ret <= 0) {
		if (!ret)
			fmt(w, wl, "read of sector 0 not completed (status 0x%x)", vdev_status(vd));
		return -1;
	}
	if (r->status != VIRTIO_BLK_S_OK) {
		fmt(w, wl, "read of sector 0: status %u", r->status);
		return -1;
	}
	return 0;
}

/* ---- mode=blkbench ---- */

static u64 rnd_state;

static u64 xorshift(void)
{
	u64 x = rnd_state;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return rnd_state = x;
}

void blkbench_run(void)
{
	u32 op = vopt.blkop, bs = vopt.blksize, d, i, len;
	bool wr = op == BLKOP_SEQWRITE || op == BLKOP_RANDWRITE;
	bool rnd = op == BLKOP_RANDREAD || op == BLKOP_RANDWRITE;
	u64 nreq, seq_off = 0, bytes = 0, ios = 0, t0, end, t1, cookie;
	struct blkreq *reqs;
	struct rtime stall;
	u8 *bufs;
	bool stop = false;
	int r;

	cur_check = "blkbench";
	blk_setup(wr);
	d = vopt.blkdepth ? vopt.blkdepth : 1;
	if (!bs || bs % 512 || bs > (4u << 20) || bs > capacity)
		fail_final("blkbench: blksize %u: a multiple of 512 up to 4 MiB and the disk", bs);
	if (d > MAX_DEPTH || d > blk.vq[0].size ||
	    (!vdev_has(&blk, VIRTIO_F_INDIRECT_DESC) && d * 3 > blk.vq[0].size))
		fail_final("blkbench: blkdepth %u is more than the queue takes", d);
	nreq = capacity / bs;
	reqs = req_alloc(d);
	bufs = vio_alloc((u64)d * bs, 4096);
	if (!bufs)
		fail_final("blkbench: no memory for %u x %u bytes", d, bs);
	for (i = 0; i < d * bs / 8; i++)
		((u64 *)bufs)[i] = pattern(7, i);
	rnd_state = rdtsc() | 1;
	rt_start(&stall);
	t0 = rdtsc();
	end = t0 + vopt.seconds * tsc_hz;
	for (i = 0; i < d; i++) {
		u64 off = (rnd ? xorshift() % nreq : seq_off++ % nreq) * bs;

		if (blk_submit(&blk.vq[0], &reqs[i], wr ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN, off,
			       bufs + (u64)i * bs, bs, i))
			fail_final("blkbench: queue full");
	}
	vq_kick(&blk.vq[0]);
	while (vq_inflight(&blk.vq[0])) {
		r = vq_poll(&blk.vq[0], &cookie, &len, why, sizeof(why));
		if (r < 0)
			fail_final("blkbench: %s", why);
		if (!r) {
			cpu_relax();
			power_button_poll();
			if (!stop && (s64)(rdtsc() - end) >= 0)
				stop = true;
			if (rt_ms(&stall) > STALL_MS / 3)
				fail_final("blkbench: stalled %u s: %s", STALL_MS / 3000,
					   vq_describe(&blk.vq[0]));
			continue;
		}
		rt_start(&stall);
		if (reqs[cookie].status != VIRTIO_BLK_S_OK)
			fail_final("blkbench: status %u", reqs[cookie].status);
		bytes += bs;
		ios++;
		if (stop || (s64)(rdtsc() - end) >= 0) {
			stop = true;
			continue;
		}
		{
			u64 off = (rnd ? xorshift() % nreq : seq_off++ % nreq) * bs;

			blk_submit(&blk.vq[0], &reqs[cookie], wr ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN,
				   off, bufs + cookie * bs, bs, cookie);
			vq_kick(&blk.vq[0]);
		}
	}
	t1 = rdtsc();
	pr("BLKBENCH op=%s bytes=%lu ios=%lu ns=%lu bs=%u depth=%u notifies=%lu\n",
	   vio_blkop_name(op), bytes, ios, tsc_to_ns(t1 - t0), bs, d, blk.vq[0].notifies);
	pr("TESTGUEST PASS\n");
	poweroff();
}
