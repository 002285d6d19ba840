// SPDX-License-Identifier: BSD-2-Clause
/*
 * virtio-blk: a raw disk image (a regular file or a block device) as a virtio 1.x block device.
 *
 *	-s SLOT,virtio-blk,PATH[,ro][,sectorsize=L[/P]][,ser=ID][,nocache][,direct]
 *		[,nodelete|discard=off][,iothreads=N]
 *
 * The image and its options belong to the block backend (src/backend/block.h): "ro" opens it
 * read-only and offers VIRTIO_BLK_F_RO; "nocache" bypasses the host page cache; "direct"
 * (alias "sync") makes every write durable when it completes; "sectorsize=L/P" sets the
 * logical and physical block sizes; "nodelete" (or "discard=off") withdraws DISCARD and lets
 * WRITE_ZEROES only zero, never unmap; "iothreads=N" (default 2).  "ser=ID" (alias
 * "serial=ID", up to 20 printable characters) is what GET_ID returns.
 *
 * One request queue of BLK_QUEUE_SIZE entries.  A kick only wakes the backend's worker pool:
 * the vCPU never waits for the disk (a device reset does wait for the requests in flight).  A
 * worker pops chains, does the I/O through the backend, pushes and interrupts; while it
 * drains a burst it turns guest notifications off, and after turning them back on it looks at
 * the ring once more, so a chain added in between is never stranded.  A worker that sees more
 * work wakes another, so independent requests overlap.
 *
 * Snapshots: pause stops the workers taking chains and waits until every popped chain has been
 * pushed and interrupted, so the transport can save a queue whose last_avail equals used_idx.
 * The device's own state is only invariants (geometry, capacity, read-only, serial) that a
 * restore must match: it may use another image (a clone), but one of the same size.
 */
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "backend/block.h"
#include "config.h"
#include "dev/pci/pci.h"
#include "dev/virtio/virtio.h"
#include "sstream.h"
#include "vm.h"

/* Device feature bits (virtio 1.2, 5.2.3). */
#define VIRTIO_BLK_F_SEG_MAX 2
#define VIRTIO_BLK_F_RO 5
#define VIRTIO_BLK_F_BLK_SIZE 6
#define VIRTIO_BLK_F_FLUSH 9
#define VIRTIO_BLK_F_TOPOLOGY 10
#define VIRTIO_BLK_F_DISCARD 13
#define VIRTIO_BLK_F_WRITE_ZEROES 14

/* Request types and status values. */
#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_T_FLUSH 4
#define VIRTIO_BLK_T_GET_ID 8
#define VIRTIO_BLK_T_DISCARD 11
#define VIRTIO_BLK_T_WRITE_ZEROES 13
#define VIRTIO_BLK_S_OK 0
#define VIRTIO_BLK_S_IOERR 1
#define VIRTIO_BLK_S_UNSUPP 2
#define VIRTIO_BLK_WZ_F_UNMAP 1U

/* struct virtio_blk_config: byte offsets (all fields little endian). */
#define CFG_CAPACITY 0			/* u64, 512-byte sectors */
#define CFG_SIZE_MAX 8			/* u32, not offered */
#define CFG_SEG_MAX 12			/* u32 */
#define CFG_GEOMETRY 16			/* not offered */
#define CFG_BLK_SIZE 20			/* u32 */
#define CFG_PHYS_BLOCK_EXP 24		/* u8 */
#define CFG_ALIGNMENT_OFFSET 25		/* u8 */
#define CFG_MIN_IO_SIZE 26		/* u16, logical blocks */
#define CFG_OPT_IO_SIZE 28		/* u32, logical blocks */
#define CFG_WRITEBACK 32		/* u8, CONFIG_WCE only */
#define CFG_NUM_QUEUES 34		/* u16, MQ only */
#define CFG_MAX_DISCARD_SECTORS 36	/* u32 */
#define CFG_MAX_DISCARD_SEG 40		/* u32 */
#define CFG_DISCARD_SECTOR_ALIGNMENT 44 /* u32, 512-byte sectors */
#define CFG_MAX_WRITE_ZEROES_SECTORS 48 /* u32 */
#define CFG_MAX_WRITE_ZEROES_SEG 52	/* u32 */
#define CFG_WRITE_ZEROES_MAY_UNMAP 56	/* u8 */
#define CFG_LEN 60

#define BLK_SECTOR ((uint64_t)512) /* the protocol's unit, whatever blk_size says */
#define BLK_HDR_LEN 16		   /* type, reserved, sector */
#define BLK_SEG_LEN 16		   /* discard/write-zeroes segment: sector, num, flags */
#define BLK_ID_LEN BLK_SERIAL_LEN
#define BLK_QUEUE_SIZE 256
#define BLK_SEG_MAX (BLK_QUEUE_SIZE - 2)   /* header and status take two */
#define BLK_MAX_DISCARD_SECTORS (1U << 22) /* 2 GiB per segment */
#define BLK_MAX_DISCARD_SEG 32
/*
 * I/O threads per disk: iothreads=N, default 2.  On a page-cache-backed image more threads
 * mostly contend (measured on a 2-core host: 2 threads gave 1.5-1.8x the throughput of 4);
 * a slow device with many requests in flight wants more.
 */
#define BLK_DEFAULT_THREADS 2
#define BLK_NOTIFY_BATCH 16 /* interrupt at least this often in a long burst */
#define BLK_STATE_VERSION 1

/* One worker thread's request being served (the backend gives each worker its own). */
struct vblk_req {
	struct blk_worker *w;
	struct virtio_chain chain;
	struct iovec iov[VIRTIO_MAX_IOV]; /* the data part of the chain */
};

struct vblk {
	struct virtio_dev *vd;
	struct blk *be;
	bool ro, discard;
	uint32_t lsize, psize;	 /* logical and physical block size, bytes */
	uint64_t capacity;	 /* 512-byte sectors */
	char serial[BLK_ID_LEN]; /* zero padded, not terminated when 20 long */
	uint8_t cfg[CFG_LEN];	 /* struct virtio_blk_config, fixed after init */
};

/* ---- little helpers ---- */

static void put_le16(uint8_t *p, uint16_t v)
{
	v = htole16(v);
	memcpy(p, &v, sizeof(v));
}

static void put_le32(uint8_t *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, sizeof(v));
}

static void put_le64(uint8_t *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, sizeof(v));
}

static uint32_t get_le32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return le32toh(v);
}

static uint64_t get_le64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return le64toh(v);
}

static unsigned ilog2(unsigned long v)
{
	unsigned n = 0;

	while (v >>= 1)
		n++;
	return n;
}

/* [sector, sector + len bytes) lies inside the image; written so no sum can overflow. */
static bool vblk_in_range(const struct vblk *b, uint64_t sector, uint64_t len)
{
	return sector <= b->capacity && len / BLK_SECTOR <= b->capacity - sector;
}

static bool vblk_negotiated(struct vblk *b, unsigned bit)
{
	return virtio_has_feature(b->vd, bit);
}

/* ---- options and the image ---- */

static const char *vblk_opt(void *ctx, const char *name)
{
	return pci_dev_opt(ctx, name);
}

static void vblk_serve(void *opaque, struct blk_worker *w, void *scratch);

static int vblk_open(struct vblk *b, struct virtio_dev *vd, char *err, size_t errlen)
{
	char usage[96], key[64], name[16], dflt[32];
	struct blk_args a = {
		.vm = vd->vm,
		.opt = vblk_opt,
		.opt_ctx = vd->pd,
		.cfg_key = key,
		.id = vd->pd->dev.id,
		.thread_name = name,
		.usage = usage,
		.default_threads = BLK_DEFAULT_THREADS,
		.scratch_size = sizeof(struct vblk_req),
		.serve = vblk_serve,
		.opaque = b,
	};
	int ret;

	snprintf(usage, sizeof(usage), "use -s %u,virtio-blk,PATH or set %s.path", vd->pd->slot,
		 vd->pd->opts);
	snprintf(key, sizeof(key), "%s.path", vd->pd->opts);
	/* "blk3.0": which disk a thread in top or gdb serves. */
	snprintf(name, sizeof(name), "blk%u.%u", vd->pd->slot, vd->pd->func);
	/* The default serial depends only on the slot, never the path. */
	snprintf(dflt, sizeof(dflt), "KHYVE-BLK-%u.%u", vd->pd->slot, vd->pd->func);
	ret = blk_parse_serial(vblk_opt, vd->pd, dflt, b->serial, err, errlen);
	if (!ret)
		ret = blk_open(&a, &b->be, err, errlen);
	if (ret)
		return ret;
	b->ro = blk_ro(b->be);
	b->discard = blk_can_discard(b->be);
	b->lsize = blk_lsize(b->be);
	b->psize = blk_psize(b->be);
	b->capacity = blk_size(b->be) / BLK_SECTOR;
	return 0;
}

/* ---- configuration space ---- */

static uint64_t vblk_features(const struct vblk *b)
{
	uint64_t f = 1ULL << VIRTIO_BLK_F_SEG_MAX | 1ULL << VIRTIO_BLK_F_BLK_SIZE |
		     1ULL << VIRTIO_BLK_F_FLUSH | 1ULL << VIRTIO_BLK_F_TOPOLOGY;

	if (b->ro)
		return f | 1ULL << VIRTIO_BLK_F_RO;
	f |= 1ULL << VIRTIO_BLK_F_WRITE_ZEROES;
	if (b->discard)
		f |= 1ULL << VIRTIO_BLK_F_DISCARD;
	return f;
}

static void vblk_fill_config(struct vblk *b)
{
	uint8_t *c = b->cfg;

	memset(c, 0, sizeof(b->cfg));
	put_le64(c + CFG_CAPACITY, b->capacity);
	put_le32(c + CFG_SEG_MAX, BLK_SEG_MAX);
	put_le32(c + CFG_BLK_SIZE, b->lsize);
	c[CFG_PHYS_BLOCK_EXP] = (uint8_t)ilog2(b->psize / b->lsize);
	c[CFG_ALIGNMENT_OFFSET] = 0;
	put_le16(c + CFG_MIN_IO_SIZE, (uint16_t)(b->psize / b->lsize));
	put_le32(c + CFG_OPT_IO_SIZE, 0);
	put_le16(c + CFG_NUM_QUEUES, 1);
	if (b->ro)
		return;
	if (b->discard) {
		put_le32(c + CFG_MAX_DISCARD_SECTORS, BLK_MAX_DISCARD_SECTORS);
		put_le32(c + CFG_MAX_DISCARD_SEG, BLK_MAX_DISCARD_SEG);
		put_le32(c + CFG_DISCARD_SECTOR_ALIGNMENT, b->psize / (uint32_t)BLK_SECTOR);
	}
	put_le32(c + CFG_MAX_WRITE_ZEROES_SECTORS, BLK_MAX_DISCARD_SECTORS);
	put_le32(c + CFG_MAX_WRITE_ZEROES_SEG, BLK_MAX_DISCARD_SEG);
	c[CFG_WRITE_ZEROES_MAY_UNMAP] = b->discard;
}

static void vblk_cfg_read(struct virtio_dev *vd, unsigned off, void *data, unsigned size)
{
	struct vblk *b = vd->priv;

	memset(data, 0, size);
	if (off < CFG_LEN && size <= CFG_LEN - off)
		memcpy(data, b->cfg + off, size);
}

/* Every field is read-only (writeback would be writable only with CONFIG_WCE). */
static void vblk_cfg_write(struct virtio_dev *vd, unsigned off, const void *data, unsigned size)
{
}

/* ---- I/O ---- */

/* Describe @len bytes from byte @off of @src[0..n) in @dst; zero-length pieces are left out. */
static unsigned iov_slice(const struct iovec *src, unsigned n, uint64_t off, uint64_t len,
			  struct iovec *dst)
{
	unsigned k = 0;

	for (unsigned i = 0; i < n && len; i++) {
		uint64_t l = src[i].iov_len;

		if (off >= l) {
			off -= l;
			continue;
		}
		l -= off;
		if (l > len)
			l = len;
		if (l) {
			dst[k].iov_base = (uint8_t *)src[i].iov_base + off;
			dst[k].iov_len = l;
			k++;
		}
		len -= l;
		off = 0;
	}
	return k;
}

/*
 * Without FLUSH negotiated, the driver cannot ask for durability, so the device must be
 * write-through (virtio 1.2, 5.2.6.2).
 */
static uint8_t vblk_write_done(struct vblk *b)
{
	if (!vblk_negotiated(b, VIRTIO_BLK_F_FLUSH) && blk_flush(b->be))
		return VIRTIO_BLK_S_IOERR;
	return VIRTIO_BLK_S_OK;
}

/* IN: the data is the writable part before the status byte. */
static uint8_t vblk_read(struct vblk *b, struct vblk_req *r, uint64_t sector, uint32_t *written)
{
	struct virtio_chain *c = &r->chain;
	uint64_t len = c->write_len - 1;
	unsigned n;

	/* Readable bytes after the header: data in the wrong direction. */
	if (c->read_len != BLK_HDR_LEN || len % BLK_SECTOR || len >= UINT32_MAX)
		return VIRTIO_BLK_S_IOERR;
	if (!vblk_in_range(b, sector, len))
		return VIRTIO_BLK_S_IOERR;
	n = iov_slice(c->iov + c->nread, c->nwrite, 0, len, r->iov);
	if (blk_readv(b->be, r->w, r->iov, n, sector * BLK_SECTOR))
		return VIRTIO_BLK_S_IOERR;
	*written = (uint32_t)len;
	return VIRTIO_BLK_S_OK;
}

/* OUT: the data is the readable part after the header. */
static uint8_t vblk_write(struct vblk *b, struct vblk_req *r, uint64_t sector)
{
	struct virtio_chain *c = &r->chain;
	uint64_t len = c->read_len - BLK_HDR_LEN;
	unsigned n;

	if (b->ro)
		return VIRTIO_BLK_S_IOERR;
	/* Writable bytes before the status byte: data in the wrong direction. */
	if (c->write_len != 1 || len % BLK_SECTOR)
		return VIRTIO_BLK_S_IOERR;
	if (!vblk_in_range(b, sector, len))
		return VIRTIO_BLK_S_IOERR;
	n = iov_slice(c->iov, c->nread, BLK_HDR_LEN, len, r->iov);
	if (blk_writev(b->be, r->w, r->iov, n, sector * BLK_SECTOR))
		return VIRTIO_BLK_S_IOERR;
	return vblk_write_done(b);
}

static uint8_t vblk_flush(struct vblk *b)
{
	return blk_flush(b->be) ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK;
}

static uint8_t vblk_get_id(struct vblk *b, struct vblk_req *r, uint32_t *written)
{
	struct virtio_chain *c = &r->chain;
	uint64_t n = c->write_len - 1;

	if (c->read_len != BLK_HDR_LEN)
		return VIRTIO_BLK_S_IOERR;
	if (n > BLK_ID_LEN)
		n = BLK_ID_LEN;
	*written = (uint32_t)chain_write(c, 0, b->serial, n);
	return VIRTIO_BLK_S_OK;
}

struct vblk_seg {
	uint64_t sector;
	uint32_t num, flags;
};

/* Read and check every segment before touching the image: all or nothing. */
static uint8_t vblk_read_segs(struct vblk *b, struct vblk_req *r, bool zeroes, struct vblk_seg *seg,
			      unsigned *nseg)
{
	struct virtio_chain *c = &r->chain;
	uint64_t len = c->read_len - BLK_HDR_LEN;
	uint8_t raw[BLK_SEG_LEN];

	if (c->write_len != 1 || len == 0 || len % BLK_SEG_LEN ||
	    len / BLK_SEG_LEN > BLK_MAX_DISCARD_SEG)
		return VIRTIO_BLK_S_IOERR;
	*nseg = (unsigned)(len / BLK_SEG_LEN);
	for (unsigned i = 0; i < *nseg; i++) {
		chain_read(c, BLK_HDR_LEN + i * BLK_SEG_LEN, raw, sizeof(raw));
		seg[i].sector = get_le64(raw);
		seg[i].num = get_le32(raw + 8);
		seg[i].flags = get_le32(raw + 12);
		/* Unknown flags, or UNMAP on a discard: the spec says UNSUPP. */
		if (seg[i].flags & ~(zeroes ? VIRTIO_BLK_WZ_F_UNMAP : 0U))
			return VIRTIO_BLK_S_UNSUPP;
		if (seg[i].num > BLK_MAX_DISCARD_SECTORS ||
		    !vblk_in_range(b, seg[i].sector, (uint64_t)seg[i].num * BLK_SECTOR))
			return VIRTIO_BLK_S_IOERR;
	}
	return VIRTIO_BLK_S_OK;
}

/*
 * DISCARD: the guest no longer needs the data (the backend punches a hole where it can).
 * WRITE_ZEROES: the range must read as zeros afterwards; with UNMAP it may also be
 * deallocated.
 */
static uint8_t vblk_discard(struct vblk *b, struct vblk_req *r, bool zeroes)
{
	struct vblk_seg seg[BLK_MAX_DISCARD_SEG];
	unsigned nseg = 0;
	uint8_t st;

	if (!vblk_negotiated(b, zeroes ? VIRTIO_BLK_F_WRITE_ZEROES : VIRTIO_BLK_F_DISCARD))
		return VIRTIO_BLK_S_UNSUPP;
	if (b->ro)
		return VIRTIO_BLK_S_IOERR;
	st = vblk_read_segs(b, r, zeroes, seg, &nseg);
	if (st != VIRTIO_BLK_S_OK)
		return st;
	for (unsigned i = 0; i < nseg; i++) {
		uint64_t off = seg[i].sector * BLK_SECTOR, len = (uint64_t)seg[i].num * BLK_SECTOR;
		int ret = zeroes ? blk_write_zeroes(b->be, r->w, off, len,
						    seg[i].flags & VIRTIO_BLK_WZ_F_UNMAP)
				 : blk_discard(b->be, r->w, off, len);

		if (ret)
			return VIRTIO_BLK_S_IOERR;
	}
	return vblk_write_done(b);
}

/* One request; returns its status and sets *written to the data bytes written. */
static uint8_t vblk_request(struct vblk *b, struct vblk_req *r, uint32_t *written)
{
	struct virtio_chain *c = &r->chain;
	uint8_t hdr[BLK_HDR_LEN];

	*written = 0;
	if (c->read_len < BLK_HDR_LEN || chain_read(c, 0, hdr, sizeof(hdr)) != sizeof(hdr))
		return VIRTIO_BLK_S_IOERR;
	switch (get_le32(hdr)) {
	case VIRTIO_BLK_T_IN:
		return vblk_read(b, r, get_le64(hdr + 8), written);
	case VIRTIO_BLK_T_OUT:
		return vblk_write(b, r, get_le64(hdr + 8));
	case VIRTIO_BLK_T_FLUSH:
		return vblk_flush(b);
	case VIRTIO_BLK_T_GET_ID:
		return vblk_get_id(b, r, written);
	case VIRTIO_BLK_T_DISCARD:
		return vblk_discard(b, r, false);
	case VIRTIO_BLK_T_WRITE_ZEROES:
		return vblk_discard(b, r, true);
	default:
		return VIRTIO_BLK_S_UNSUPP;
	}
}

/* Complete the chain in r->chain: status in its last writable byte, then push. */
static void vblk_handle(struct vblk *b, struct vblk_req *r, struct virtqueue *vq)
{
	struct virtio_chain *c = &r->chain;
	uint32_t written;
	uint8_t status;

	if (c->write_len == 0) {
		/*
		 * No status byte: nothing tells the driver this request failed.  Give the
		 * buffers back (every popped chain is pushed: pause relies on it) and ask for a
		 * reset.
		 */
		vq_push(vq, c->head, 0);
		virtio_set_needs_reset(b->vd, "request without a status byte");
		return;
	}
	status = vblk_request(b, r, &written);
	chain_write(c, c->write_len - 1, &status, 1);
	vq_push(vq, c->head, written + 1);
}

/* ---- serving the queue (on the backend's worker threads) ---- */

/*
 * Serve the queue until it is empty or the device pauses.  Guest notifications stay off while
 * chains are there to take; whoever leaves turns them on and looks once more, so a chain the
 * guest adds meanwhile is either seen here or kicked (the last notification switch any worker
 * makes is always an "on" followed by that look).
 */
static void vblk_serve(void *opaque, struct blk_worker *w, void *scratch)
{
	struct vblk *b = opaque;
	struct vblk_req *r = scratch;
	struct virtqueue *vq = &b->vd->vq[0];
	unsigned unsignalled = 0;
	int ret;

	if (!vq_ready(vq))
		return;
	r->w = w;
	vq_set_notify(vq, false);
	while (blk_running(b->be)) {
		ret = vq_pop(vq, &r->chain);
		if (ret < 0) {
			/* Malformed ring: NEEDS_RESET is set and the queue is dead. */
			vq_notify(vq);
			return;
		}
		if (ret == 0) {
			vq_set_notify(vq, true);
			if (!vq_has_work(vq))
				break;
			vq_set_notify(vq, false);
			continue;
		}
		if (vq_has_work(vq))
			blk_kick(b->be);
		vblk_handle(b, r, vq);
		if (++unsignalled >= BLK_NOTIFY_BATCH) {
			vq_notify(vq);
			unsignalled = 0;
		}
	}
	/*
	 * Paused, or empty: either way every push so far is signalled before leaving.  Enabling
	 * notifications publishes a new avail_event; a request the driver added just before it
	 * saw that gets no doorbell, so look once more and hand it to a worker (this was a lost
	 * wake-up the test guest's blkbench caught).
	 */
	vq_set_notify(vq, true);
	if (vq_has_work(vq))
		blk_kick(b->be);
	vq_notify(vq);
}

/* ---- lifecycle ---- */

static int vblk_init(struct virtio_dev *vd, char *err, size_t errlen)
{
	struct vblk *b = calloc(1, sizeof(*b));
	int ret;

	if (!b) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	b->vd = vd;
	ret = vblk_open(b, vd, err, errlen);
	if (ret) {
		free(b);
		return ret;
	}
	vblk_fill_config(b);
	vd->priv = b;
	vd->nqueues = 1;
	vd->queue_max[0] = BLK_QUEUE_SIZE;
	vd->host_features = vblk_features(b);
	vd->config_len = CFG_LEN;
	return 0;
}

static void vblk_queue_notify(struct virtio_dev *vd, struct virtqueue *vq)
{
	struct vblk *b = vd->priv;

	blk_kick(b->be);
}

static void vblk_driver_ok(struct virtio_dev *vd)
{
	struct vblk *b = vd->priv;

	blk_kick(b->be);
}

/* The transport forgets the queues after this: no worker may still hold one of their chains. */
static void vblk_reset(struct virtio_dev *vd)
{
	struct vblk *b = vd->priv;

	blk_pause(b->be);
	blk_resume(b->be, false);
}

static int vblk_pause(struct virtio_dev *vd)
{
	struct vblk *b = vd->priv;

	blk_pause(b->be);
	return 0;
}

/* The guest may have queued requests while paused (or before a snapshot): look at the queue. */
static int vblk_resume(struct virtio_dev *vd)
{
	struct vblk *b = vd->priv;

	blk_resume(b->be, true);
	return 0;
}

static void vblk_destroy(struct virtio_dev *vd)
{
	struct vblk *b = vd->priv;

	if (!b)
		return;
	blk_close(b->be);
	free(b);
	vd->priv = NULL;
}

/* ---- snapshot ---- */

/*
 * Version 1: the invariants the guest has seen (features, block sizes, capacity, read-only,
 * serial), then the number of requests in flight, always 0 (the transport saves after pause).
 */
static int vblk_save(struct virtio_dev *vd, struct sstream *s)
{
	struct vblk *b = vd->priv;
	uint32_t active = blk_busy(b->be);
	uint8_t ro = b->ro;

	if (active)
		return ss_fail(s, -EBUSY, "%u I/O workers busy at save: pause the device first",
			       active);
	ss_u32(s, (uint32_t[]){ (uint32_t)vblk_features(b) });
	ss_u32(s, &b->lsize);
	ss_u32(s, &b->psize);
	ss_u64(s, &b->capacity);
	ss_u8(s, &ro);
	ss_bytes(s, b->serial, sizeof(b->serial));
	ss_u32(s, (uint32_t[]){ 0 });
	return ss_error(s);
}

struct vblk_saved {
	uint32_t features, lsize, psize, inflight;
	uint64_t capacity;
	uint8_t ro;
	char serial[BLK_ID_LEN];
};

static void vblk_check(struct sstream *s, const struct vblk *b, const struct vblk_saved *v)
{
	const char *path = blk_path(b->be);

	if (v->capacity != b->capacity)
		/* Sizes first: a long path may not fit in the message. */
		ss_fail(s, -EINVAL,
			"disk size differs: %" PRIu64 " bytes in the snapshot, %" PRIu64
			" in %s (a restore needs an image of the same size)",
			v->capacity * BLK_SECTOR, b->capacity * BLK_SECTOR, path);
	if (v->lsize != b->lsize || v->psize != b->psize)
		ss_fail(s, -EINVAL,
			"the snapshot's disk had sectorsize=%u/%u, "
			"this one %u/%u",
			v->lsize, v->psize, b->lsize, b->psize);
	if (v->ro != b->ro)
		ss_fail(s, -EINVAL, "the snapshot's disk was %s, this one is %s (%s)",
			v->ro ? "read-only" : "read-write", b->ro ? "read-only (ro)" : "read-write",
			path);
	if (memcmp(v->serial, b->serial, BLK_ID_LEN))
		ss_fail(s, -EINVAL,
			"the snapshot's disk had serial '%.20s', this "
			"one '%.20s'",
			v->serial, b->serial);
	if (v->features != (uint32_t)vblk_features(b))
		ss_fail(s, -EINVAL,
			"the snapshot's disk offered features %#x, this "
			"one %#x (ro or discard= differ)",
			v->features, (unsigned)vblk_features(b));
	if (v->inflight)
		ss_fail(s, -EINVAL,
			"%u requests in flight in the snapshot (a saved "
			"device is drained)",
			v->inflight);
}

/* Nothing to commit: everything saved is an invariant of the configured device. */
static int vblk_load(struct virtio_dev *vd, struct sstream *s, unsigned version)
{
	struct vblk *b = vd->priv;
	struct vblk_saved v = { 0 };

	if (version != BLK_STATE_VERSION)
		return ss_fail(s, -EINVAL, "state version %u is not supported (%u)", version,
			       BLK_STATE_VERSION);
	ss_u32(s, &v.features);
	ss_u32(s, &v.lsize);
	ss_u32(s, &v.psize);
	ss_u64(s, &v.capacity);
	ss_u8(s, &v.ro);
	ss_bytes(s, v.serial, sizeof(v.serial));
	ss_u32(s, &v.inflight);
	if (ss_error(s))
		return ss_error(s);
	vblk_check(s, b, &v);
	return ss_error(s);
}

static const struct virtio_dev_ops virtio_blk_ops = {
	.name = "virtio-blk",
	.device_id = VIRTIO_ID_BLOCK,
	.pci_class = 0x01,    /* mass storage */
	.pci_subclass = 0x80, /* other */
	.version = BLK_STATE_VERSION,
	.init = vblk_init,
	.cfg_read = vblk_cfg_read,
	.cfg_write = vblk_cfg_write,
	.queue_notify = vblk_queue_notify,
	.driver_ok = vblk_driver_ok,
	.reset = vblk_reset,
	.pause = vblk_pause,
	.resume = vblk_resume,
	.save = vblk_save,
	.load = vblk_load,
	.destroy = vblk_destroy,
};

VIRTIO_PCI_EMUL(virtio_blk, "virtio-blk", virtio_blk_ops, { .names = blk_options });
