// SPDX-License-Identifier: BSD-2-Clause
/*
 * virtio-blk: a raw disk image (a regular file or a block device) as a virtio 1.x block device.
 *
 *	-s SLOT,virtio-blk,PATH[,ro][,sectorsize=L[/P]][,ser=ID][,nocache][,direct][,discard=off]
 *
 * Options follow bhyve's: "ro" opens the image read-only and offers VIRTIO_BLK_F_RO; "nocache"
 * opens it O_DIRECT (the host page cache is bypassed); "direct" (alias "sync") opens it O_DSYNC
 * (every write is on stable storage when it completes); "sectorsize=L/P" sets the logical and
 * physical block sizes (L 512..4096, P L..65536, powers of two; default 512/4096); "ser=ID"
 * (alias "serial=ID", up to 20 printable characters) is what GET_ID returns; "discard=off"
 * withdraws DISCARD and lets WRITE_ZEROES only zero, never unmap.  An image whose size is not a
 * multiple of the logical sector size is refused rather than silently cut short.
 *
 * One request queue of BLK_QUEUE_SIZE entries.  A kick only wakes the worker pool: the vCPU
 * never waits for the disk (a device reset does wait for the requests in flight).  A worker
 * pops chains, does the I/O with preadv/pwritev/fallocate, pushes and interrupts; while it
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
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

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
#define BLK_ID_LEN 20
#define BLK_QUEUE_SIZE 256
#define BLK_SEG_MAX (BLK_QUEUE_SIZE - 2)   /* header and status take two */
#define BLK_MAX_DISCARD_SECTORS (1U << 22) /* 2 GiB per segment */
#define BLK_MAX_DISCARD_SEG 32
/*
 * I/O threads per disk: iothreads=N, default 2.  On a page-cache-backed image more threads
 * mostly contend (measured on a 2-core host: 2 threads gave 1.5-1.8x the throughput of 4);
 * a slow device with many requests in flight wants more.
 */
#define BLK_MAX_THREADS 16
#define BLK_DEFAULT_THREADS 2
#define BLK_NOTIFY_BATCH 16 /* interrupt at least this often in a long burst */
#define BLK_BOUNCE_SIZE (1U << 20)
#define BLK_DIO_ALIGN 4096 /* bounce buffer alignment for O_DIRECT */
#define BLK_STATE_VERSION 1

struct blk;

struct blk_worker {
	struct blk *b;
	pthread_t tid;
	void *bounce; /* BLK_BOUNCE_SIZE, aligned; allocated when first needed */
	struct virtio_chain chain;
	struct iovec iov[VIRTIO_MAX_IOV]; /* the data part of the chain */
};

struct blk {
	struct virtio_dev *vd;
	int fd;
	bool ro, nocache, sync, discard;
	uint32_t lsize, psize;	 /* logical and physical block size, bytes */
	uint64_t capacity;	 /* 512-byte sectors */
	char serial[BLK_ID_LEN]; /* zero padded, not terminated when 20 long */
	uint8_t cfg[CFG_LEN];	 /* struct virtio_blk_config, fixed after init */
	struct vm_disk disk;
	bool disk_added;

	pthread_mutex_t lock;	/* everything below */
	pthread_cond_t work_cv; /* kicked, paused or stopping changed */
	pthread_cond_t idle_cv; /* active dropped to 0 */
	bool kicked;		/* the queue may hold chains nobody is taking */
	bool paused;		/* take no chains (pause, reset) */
	bool stopping;		/* threads exit (destroy) */
	unsigned active;	/* workers between their first pop and last push */
	unsigned nworkers;
	struct blk_worker *workers[BLK_MAX_THREADS];
	unsigned nthreads; /* iothreads= */
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

static bool is_pow2(unsigned long v)
{
	return v && !(v & (v - 1));
}

static unsigned ilog2(unsigned long v)
{
	unsigned n = 0;

	while (v >>= 1)
		n++;
	return n;
}

/* [sector, sector + len bytes) lies inside the image; written so no sum can overflow. */
static bool blk_in_range(const struct blk *b, uint64_t sector, uint64_t len)
{
	return sector <= b->capacity && len / BLK_SECTOR <= b->capacity - sector;
}

static bool blk_negotiated(struct blk *b, unsigned bit)
{
	return virtio_has_feature(b->vd, bit);
}

/* ---- options ---- */

static const char *blk_opt(struct virtio_dev *vd, const char *name)
{
	return pci_dev_opt(vd->pd, name);
}

static int blk_opt_bool(struct virtio_dev *vd, const char *name, bool dflt, bool *out, char *err,
			size_t errlen)
{
	const char *v = blk_opt(vd, name);

	*out = dflt;
	if (!v)
		return 0;
	if (!strcmp(v, "true") || !strcmp(v, "on") || !strcmp(v, "yes") || !strcmp(v, "1")) {
		*out = true;
		return 0;
	}
	if (!strcmp(v, "false") || !strcmp(v, "off") || !strcmp(v, "no") || !strcmp(v, "0")) {
		*out = false;
		return 0;
	}
	snprintf(err, errlen, "%s=%s: want on or off", name, v);
	return -EINVAL;
}

static bool blk_parse_ulong(const char *s, char **end, unsigned long *out)
{
	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	*out = strtoul(s, end, 10);
	return errno == 0;
}

/* sectorsize=L or L/P (bhyve's syntax). */
static int blk_parse_sectorsize(struct blk *b, const char *v, char *err, size_t errlen)
{
	unsigned long l, p;
	char *end;

	if (!blk_parse_ulong(v, &end, &l))
		goto bad;
	p = l > BLK_DIO_ALIGN ? l : BLK_DIO_ALIGN;
	if (*end == '/') {
		if (!blk_parse_ulong(end + 1, &end, &p))
			goto bad;
	}
	if (*end)
		goto bad;
	if (!is_pow2(l) || l < 512 || l > 4096) {
		snprintf(err, errlen,
			 "sectorsize=%s: the logical sector size must be a power of "
			 "two from 512 to 4096",
			 v);
		return -EINVAL;
	}
	if (!is_pow2(p) || p < l || p > 65536) {
		snprintf(err, errlen,
			 "sectorsize=%s: the physical sector size must be a power of "
			 "two from the logical size (%lu) to 65536",
			 v, l);
		return -EINVAL;
	}
	b->lsize = (uint32_t)l;
	b->psize = (uint32_t)p;
	return 0;
bad:
	snprintf(err, errlen,
		 "sectorsize=%s: want LOGICAL or LOGICAL/PHYSICAL in bytes, "
		 "e.g. 512 or 512/4096",
		 v);
	return -EINVAL;
}

/* ser= as bhyve, serial= as an alias; the default depends only on the slot, never the path. */
static int blk_parse_serial(struct blk *b, struct virtio_dev *vd, char *err, size_t errlen)
{
	const char *ser = blk_opt(vd, "ser"), *serial = blk_opt(vd, "serial");
	const char *name = ser ? "ser" : "serial";
	char dflt[32];
	size_t n;

	if (ser && serial && strcmp(ser, serial)) {
		snprintf(err, errlen, "ser=%s and serial=%s disagree: give one of them", ser,
			 serial);
		return -EINVAL;
	}
	if (!ser)
		ser = serial;
	if (!ser) {
		snprintf(dflt, sizeof(dflt), "KHYVE-BLK-%u.%u", vd->pd->slot, vd->pd->func);
		ser = dflt;
	}
	n = strlen(ser);
	if (n > BLK_ID_LEN) {
		snprintf(err, errlen, "%s=%s: a serial number has at most %d characters", name, ser,
			 BLK_ID_LEN);
		return -EINVAL;
	}
	for (size_t i = 0; i < n; i++) {
		if (ser[i] < 0x20 || ser[i] > 0x7e) {
			snprintf(err, errlen, "%s=%s: a serial number is printable ASCII", name,
				 ser);
			return -EINVAL;
		}
	}
	memset(b->serial, 0, sizeof(b->serial));
	memcpy(b->serial, ser, n);
	return 0;
}

static int blk_parse_iothreads(struct blk *b, struct virtio_dev *vd, char *err, size_t errlen)
{
	const char *v = blk_opt(vd, "iothreads");
	unsigned long n = BLK_DEFAULT_THREADS;
	char *end;

	if (v) {
		n = strtoul(v, &end, 10);
		if (!*v || *end || n < 1 || n > BLK_MAX_THREADS) {
			snprintf(err, errlen, "iothreads=%s: a number from 1 to %u", v,
				 BLK_MAX_THREADS);
			return -EINVAL;
		}
	}
	b->nthreads = (unsigned)n;
	return 0;
}

static int blk_parse_opts(struct blk *b, struct virtio_dev *vd, char *err, size_t errlen)
{
	const char *ss = blk_opt(vd, "sectorsize");
	bool direct, sync;
	int ret;

	if (!blk_opt(vd, "path") || !*blk_opt(vd, "path")) {
		snprintf(err, errlen,
			 "missing disk image: use -s %u,virtio-blk,PATH or set "
			 "%s.path",
			 vd->pd->slot, vd->pd->opts);
		return -EINVAL;
	}
	if ((ret = blk_opt_bool(vd, "ro", false, &b->ro, err, errlen)) ||
	    (ret = blk_opt_bool(vd, "nocache", false, &b->nocache, err, errlen)) ||
	    (ret = blk_opt_bool(vd, "direct", false, &direct, err, errlen)) ||
	    (ret = blk_opt_bool(vd, "sync", false, &sync, err, errlen)) ||
	    (ret = blk_opt_bool(vd, "discard", true, &b->discard, err, errlen)))
		return ret;
	b->sync = direct || sync;
	if ((ret = blk_parse_iothreads(b, vd, err, errlen)))
		return ret;
	b->lsize = 512;
	b->psize = BLK_DIO_ALIGN;
	if (ss && (ret = blk_parse_sectorsize(b, ss, err, errlen)))
		return ret;
	return blk_parse_serial(b, vd, err, errlen);
}

/* ---- the image ---- */

static int blk_open_fail(const char *path, bool ro, bool nocache, int e, char *err, size_t errlen)
{
	const char *hint = "";

	if (!ro && (e == EACCES || e == EROFS || e == EPERM))
		hint = " (add ,ro for a read-only disk)";
	else if (nocache && e == EINVAL)
		hint = " (its filesystem cannot do O_DIRECT: drop nocache)";
	snprintf(err, errlen, "path=%s: cannot open %s: %s%s", path,
		 ro ? "read-only" : "read-write", strerror(e), hint);
	return -e;
}

static int blk_image_size(struct blk *b, const char *path, uint64_t *size, char *err, size_t errlen)
{
	struct stat st;

	if (fstat(b->fd, &st) < 0) {
		snprintf(err, errlen, "path=%s: %s", path, strerror(errno));
		return -errno;
	}
	if (S_ISREG(st.st_mode)) {
		*size = (uint64_t)st.st_size;
		return 0;
	}
	if (S_ISBLK(st.st_mode) && ioctl(b->fd, BLKGETSIZE64, size) == 0)
		return 0;
	snprintf(err, errlen, "path=%s: not a regular file or block device", path);
	return -EINVAL;
}

static int blk_open(struct blk *b, struct virtio_dev *vd, char *err, size_t errlen)
{
	const char *path = blk_opt(vd, "path");
	int flags = (b->ro ? O_RDONLY : O_RDWR) | O_CLOEXEC;
	struct stat st;
	uint64_t size;
	int ret;

	/* stat first: opening a FIFO would block, a directory would open read-only. */
	if (stat(path, &st) < 0) {
		snprintf(err, errlen, "path=%s: %s", path, strerror(errno));
		return -errno;
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		snprintf(err, errlen, "path=%s: not a regular file or block device", path);
		return -EINVAL;
	}
	if (b->nocache)
		flags |= O_DIRECT;
	if (b->sync)
		flags |= O_DSYNC;
	b->fd = open(path, flags);
	if (b->fd < 0)
		return blk_open_fail(path, b->ro, b->nocache, errno, err, errlen);
	ret = blk_image_size(b, path, &size, err, errlen);
	if (ret)
		return ret;
	if (size % b->lsize) {
		snprintf(err, errlen,
			 "path=%s: the image is %" PRIu64 " bytes, not a multiple "
			 "of the %u-byte sector size (resize it, e.g. truncate -s, or change "
			 "sectorsize=)",
			 path, size, b->lsize);
		return -EINVAL;
	}
	b->capacity = size / BLK_SECTOR;
	if (!realpath(path, b->disk.path)) {
		snprintf(err, errlen, "path=%s: %s", path, strerror(errno));
		return -errno;
	}
	return 0;
}

/* ---- configuration space ---- */

static uint64_t blk_features(const struct blk *b)
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

static void blk_fill_config(struct blk *b)
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

static void blk_cfg_read(struct virtio_dev *vd, unsigned off, void *data, unsigned size)
{
	struct blk *b = vd->priv;

	memset(data, 0, size);
	if (off < CFG_LEN && size <= CFG_LEN - off)
		memcpy(data, b->cfg + off, size);
}

/* Every field is read-only (writeback would be writable only with CONFIG_WCE). */
static void blk_cfg_write(struct virtio_dev *vd, unsigned off, const void *data, unsigned size)
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

static void iov_advance(struct iovec **iov, unsigned *n, size_t done)
{
	while (*n && done >= (*iov)->iov_len) {
		done -= (*iov)->iov_len;
		(*iov)++;
		(*n)--;
	}
	if (*n) {
		(*iov)->iov_base = (uint8_t *)(*iov)->iov_base + done;
		(*iov)->iov_len -= done;
	}
}

/* The whole of @iov, short transfers continued; a read past the end of the file is -EIO. */
static int blk_rw_all(int fd, bool write, struct iovec *iov, unsigned n, uint64_t off)
{
	while (n) {
		int cnt = n < IOV_MAX ? (int)n : IOV_MAX;
		ssize_t r = write ? pwritev(fd, iov, cnt, (off_t)off)
				  : preadv(fd, iov, cnt, (off_t)off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -EIO;
		off += (uint64_t)r;
		iov_advance(&iov, &n, (size_t)r);
	}
	return 0;
}

static int blk_bounce_get(struct blk_worker *w)
{
	if (w->bounce)
		return 0;
	if (posix_memalign(&w->bounce, BLK_DIO_ALIGN, BLK_BOUNCE_SIZE))
		return -ENOMEM;
	return 0;
}

/* O_DIRECT wants aligned memory; guest buffers need not be.  Copy through an aligned one. */
static int blk_rw_bounce(struct blk_worker *w, bool write, struct iovec *iov, unsigned n,
			 uint64_t off)
{
	int ret = blk_bounce_get(w);

	while (!ret && n) {
		size_t chunk = 0;
		struct iovec *it = iov;
		unsigned m = n;

		/* Gather up to BLK_BOUNCE_SIZE bytes' worth of the guest's buffers. */
		while (m && chunk < BLK_BOUNCE_SIZE) {
			size_t l = it->iov_len < BLK_BOUNCE_SIZE - chunk ? it->iov_len
									 : BLK_BOUNCE_SIZE - chunk;

			if (write)
				memcpy((uint8_t *)w->bounce + chunk, it->iov_base, l);
			chunk += l;
			if (l < it->iov_len)
				break;
			it++;
			m--;
		}
		ret = blk_rw_all(w->b->fd, write, &(struct iovec){ w->bounce, chunk }, 1, off);
		if (!ret && !write) {
			size_t done = 0;

			for (it = iov; done < chunk; it++) {
				size_t l = it->iov_len < chunk - done ? it->iov_len : chunk - done;

				memcpy(it->iov_base, (uint8_t *)w->bounce + done, l);
				done += l;
			}
		}
		off += chunk;
		iov_advance(&iov, &n, chunk);
	}
	return ret;
}

static int blk_rw(struct blk_worker *w, bool write, struct iovec *iov, unsigned n, uint64_t off)
{
	struct blk *b = w->b;
	struct iovec save[VIRTIO_MAX_IOV];
	int ret;

	if (!b->nocache)
		return blk_rw_all(b->fd, write, iov, n, off);
	/*
	 * O_DIRECT refuses (EINVAL) buffers that are not aligned as the host disk wants.  Try
	 * the guest's buffers first, and go through an aligned copy if they were refused.
	 * Starting over is harmless: it reads or writes the same bytes again.
	 */
	memcpy(save, iov, n * sizeof(*iov));
	ret = blk_rw_all(b->fd, write, iov, n, off);
	if (ret == -EINVAL)
		ret = blk_rw_bounce(w, write, save, n, off);
	return ret;
}

/*
 * Without FLUSH negotiated, the driver cannot ask for durability, so the device must be
 * write-through (virtio 1.2, 5.2.6.2).
 */
static uint8_t blk_write_done(struct blk *b)
{
	if (!blk_negotiated(b, VIRTIO_BLK_F_FLUSH) && fdatasync(b->fd) < 0)
		return VIRTIO_BLK_S_IOERR;
	return VIRTIO_BLK_S_OK;
}

/* IN: the data is the writable part before the status byte. */
static uint8_t blk_read(struct blk_worker *w, uint64_t sector, uint32_t *written)
{
	struct virtio_chain *c = &w->chain;
	uint64_t len = c->write_len - 1;
	unsigned n;

	/* Readable bytes after the header: data in the wrong direction. */
	if (c->read_len != BLK_HDR_LEN || len % BLK_SECTOR || len >= UINT32_MAX)
		return VIRTIO_BLK_S_IOERR;
	if (!blk_in_range(w->b, sector, len))
		return VIRTIO_BLK_S_IOERR;
	n = iov_slice(c->iov + c->nread, c->nwrite, 0, len, w->iov);
	if (blk_rw(w, false, w->iov, n, sector * BLK_SECTOR))
		return VIRTIO_BLK_S_IOERR;
	*written = (uint32_t)len;
	return VIRTIO_BLK_S_OK;
}

/* OUT: the data is the readable part after the header. */
static uint8_t blk_write(struct blk_worker *w, uint64_t sector)
{
	struct virtio_chain *c = &w->chain;
	uint64_t len = c->read_len - BLK_HDR_LEN;
	unsigned n;

	if (w->b->ro)
		return VIRTIO_BLK_S_IOERR;
	/* Writable bytes before the status byte: data in the wrong direction. */
	if (c->write_len != 1 || len % BLK_SECTOR)
		return VIRTIO_BLK_S_IOERR;
	if (!blk_in_range(w->b, sector, len))
		return VIRTIO_BLK_S_IOERR;
	n = iov_slice(c->iov, c->nread, BLK_HDR_LEN, len, w->iov);
	if (blk_rw(w, true, w->iov, n, sector * BLK_SECTOR))
		return VIRTIO_BLK_S_IOERR;
	return blk_write_done(w->b);
}

static uint8_t blk_flush(struct blk *b)
{
	return fdatasync(b->fd) < 0 ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK;
}

static uint8_t blk_get_id(struct blk_worker *w, uint32_t *written)
{
	struct virtio_chain *c = &w->chain;
	uint64_t n = c->write_len - 1;

	if (c->read_len != BLK_HDR_LEN)
		return VIRTIO_BLK_S_IOERR;
	if (n > BLK_ID_LEN)
		n = BLK_ID_LEN;
	*written = (uint32_t)chain_write(c, 0, w->b->serial, n);
	return VIRTIO_BLK_S_OK;
}

static int blk_write_zeroes_slow(struct blk_worker *w, uint64_t off, uint64_t len)
{
	int ret = blk_bounce_get(w);

	if (ret)
		return ret;
	memset(w->bounce, 0, BLK_BOUNCE_SIZE);
	while (!ret && len) {
		size_t l = len < BLK_BOUNCE_SIZE ? len : BLK_BOUNCE_SIZE;

		ret = blk_rw_all(w->b->fd, true, &(struct iovec){ w->bounce, l }, 1, off);
		off += l;
		len -= l;
	}
	return ret;
}

static bool blk_falloc_unsupported(int e)
{
	return e == EOPNOTSUPP || e == ENOSYS || e == ENODEV;
}

/*
 * DISCARD: punch a hole (the guest no longer needs the data; if the host cannot, the hint is
 * dropped).  WRITE_ZEROES: the range must read as zeros afterwards; with UNMAP it may also be
 * deallocated.
 */
static int blk_zero_range(struct blk_worker *w, bool zeroes, bool unmap, uint64_t off, uint64_t len)
{
	int fd = w->b->fd;

	if (!zeroes || unmap) {
		if (!fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
			       (off_t)len))
			return 0;
		if (!blk_falloc_unsupported(errno))
			return -errno;
		if (!zeroes)
			return 0;
	}
	if (!fallocate(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len))
		return 0;
	if (!blk_falloc_unsupported(errno))
		return -errno;
	return blk_write_zeroes_slow(w, off, len);
}

struct blk_seg {
	uint64_t sector;
	uint32_t num, flags;
};

/* Read and check every segment before touching the image: all or nothing. */
static uint8_t blk_read_segs(struct blk_worker *w, bool zeroes, struct blk_seg *seg, unsigned *nseg)
{
	struct virtio_chain *c = &w->chain;
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
		    !blk_in_range(w->b, seg[i].sector, (uint64_t)seg[i].num * BLK_SECTOR))
			return VIRTIO_BLK_S_IOERR;
	}
	return VIRTIO_BLK_S_OK;
}

static uint8_t blk_discard(struct blk_worker *w, bool zeroes)
{
	struct blk_seg seg[BLK_MAX_DISCARD_SEG];
	struct blk *b = w->b;
	unsigned nseg = 0;
	uint8_t st;

	if (!blk_negotiated(b, zeroes ? VIRTIO_BLK_F_WRITE_ZEROES : VIRTIO_BLK_F_DISCARD))
		return VIRTIO_BLK_S_UNSUPP;
	if (b->ro)
		return VIRTIO_BLK_S_IOERR;
	st = blk_read_segs(w, zeroes, seg, &nseg);
	if (st != VIRTIO_BLK_S_OK)
		return st;
	for (unsigned i = 0; i < nseg; i++) {
		bool unmap = b->discard && (seg[i].flags & VIRTIO_BLK_WZ_F_UNMAP);

		if (seg[i].num && blk_zero_range(w, zeroes, unmap, seg[i].sector * BLK_SECTOR,
						 (uint64_t)seg[i].num * BLK_SECTOR))
			return VIRTIO_BLK_S_IOERR;
	}
	return blk_write_done(b);
}

/* One request; returns its status and sets *written to the data bytes written. */
static uint8_t blk_request(struct blk_worker *w, uint32_t *written)
{
	struct virtio_chain *c = &w->chain;
	uint8_t hdr[BLK_HDR_LEN];

	*written = 0;
	if (c->read_len < BLK_HDR_LEN || chain_read(c, 0, hdr, sizeof(hdr)) != sizeof(hdr))
		return VIRTIO_BLK_S_IOERR;
	switch (get_le32(hdr)) {
	case VIRTIO_BLK_T_IN:
		return blk_read(w, get_le64(hdr + 8), written);
	case VIRTIO_BLK_T_OUT:
		return blk_write(w, get_le64(hdr + 8));
	case VIRTIO_BLK_T_FLUSH:
		return blk_flush(w->b);
	case VIRTIO_BLK_T_GET_ID:
		return blk_get_id(w, written);
	case VIRTIO_BLK_T_DISCARD:
		return blk_discard(w, false);
	case VIRTIO_BLK_T_WRITE_ZEROES:
		return blk_discard(w, true);
	default:
		return VIRTIO_BLK_S_UNSUPP;
	}
}

/* Complete the chain in w->chain: status in its last writable byte, then push. */
static void blk_handle(struct blk_worker *w, struct virtqueue *vq)
{
	struct virtio_chain *c = &w->chain;
	uint32_t written;
	uint8_t status;

	if (c->write_len == 0) {
		/*
		 * No status byte: nothing tells the driver this request failed.  Give the
		 * buffers back (every popped chain is pushed: pause relies on it) and ask for a
		 * reset.
		 */
		vq_push(vq, c->head, 0);
		virtio_set_needs_reset(w->b->vd, "request without a status byte");
		return;
	}
	status = blk_request(w, &written);
	chain_write(c, c->write_len - 1, &status, 1);
	vq_push(vq, c->head, written + 1);
}

/* ---- workers ---- */

/* Wake one idle worker for the queue (a kick, a resume, or a busy worker's overflow). */
static void blk_kick(struct blk *b)
{
	pthread_mutex_lock(&b->lock);
	b->kicked = true;
	pthread_cond_signal(&b->work_cv);
	pthread_mutex_unlock(&b->lock);
}

static bool blk_may_pop(struct blk *b)
{
	bool ok;

	pthread_mutex_lock(&b->lock);
	ok = !b->paused && !b->stopping;
	pthread_mutex_unlock(&b->lock);
	return ok;
}

/*
 * Serve the queue until it is empty or the device pauses.  Guest notifications stay off while
 * chains are there to take; whoever leaves turns them on and looks once more, so a chain the
 * guest adds meanwhile is either seen here or kicked (the last notification switch any worker
 * makes is always an "on" followed by that look).
 */
static void blk_drain(struct blk_worker *w, struct virtqueue *vq)
{
	unsigned unsignalled = 0;
	int r;

	if (!vq_ready(vq))
		return;
	vq_set_notify(vq, false);
	while (blk_may_pop(w->b)) {
		r = vq_pop(vq, &w->chain);
		if (r < 0) {
			/* Malformed ring: NEEDS_RESET is set and the queue is dead. */
			vq_notify(vq);
			return;
		}
		if (r == 0) {
			vq_set_notify(vq, true);
			if (!vq_has_work(vq))
				break;
			vq_set_notify(vq, false);
			continue;
		}
		if (vq_has_work(vq))
			blk_kick(w->b);
		blk_handle(w, vq);
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
		blk_kick(w->b);
	vq_notify(vq);
}

static void *blk_worker_main(void *arg)
{
	struct blk_worker *w = arg;
	struct blk *b = w->b;

	pthread_mutex_lock(&b->lock);
	for (;;) {
		while (!b->stopping && (b->paused || !b->kicked))
			pthread_cond_wait(&b->work_cv, &b->lock);
		if (b->stopping)
			break;
		b->kicked = false;
		b->active++;
		pthread_mutex_unlock(&b->lock);
		blk_drain(w, &b->vd->vq[0]);
		pthread_mutex_lock(&b->lock);
		if (--b->active == 0)
			pthread_cond_broadcast(&b->idle_cv);
	}
	pthread_mutex_unlock(&b->lock);
	return NULL;
}

/* Stop taking chains and wait for the ones taken: pushed and signalled when this returns. */
static void blk_quiesce(struct blk *b)
{
	pthread_mutex_lock(&b->lock);
	b->paused = true;
	while (b->active)
		pthread_cond_wait(&b->idle_cv, &b->lock);
	pthread_mutex_unlock(&b->lock);
}

static void blk_unquiesce(struct blk *b, bool kick)
{
	pthread_mutex_lock(&b->lock);
	b->paused = false;
	b->kicked = kick;
	pthread_cond_broadcast(&b->work_cv);
	pthread_mutex_unlock(&b->lock);
}

static void blk_stop_workers(struct blk *b)
{
	pthread_mutex_lock(&b->lock);
	b->stopping = true;
	pthread_cond_broadcast(&b->work_cv);
	pthread_mutex_unlock(&b->lock);
	for (unsigned i = 0; i < b->nworkers; i++) {
		pthread_join(b->workers[i]->tid, NULL);
		free(b->workers[i]->bounce);
		free(b->workers[i]);
		b->workers[i] = NULL;
	}
	b->nworkers = 0;
}

static int blk_start_workers(struct blk *b)
{
	char name[32];

	for (unsigned i = 0; i < b->nthreads; i++) {
		struct blk_worker *w = calloc(1, sizeof(*w));
		int ret;

		if (!w)
			return -ENOMEM;
		w->b = b;
		ret = pthread_create(&w->tid, NULL, blk_worker_main, w);
		if (ret) {
			free(w);
			return -ret;
		}
		/* "blk3.0-1": which disk a thread in top or gdb serves. */
		snprintf(name, sizeof(name), "blk%u.%u-%u", b->vd->pd->slot, b->vd->pd->func, i);
		name[15] = '\0'; /* the kernel keeps 15 characters */
		pthread_setname_np(w->tid, name);
		b->workers[b->nworkers++] = w;
	}
	return 0;
}

/* ---- lifecycle ---- */

static void blk_disk_remove(struct blk *b)
{
	struct vm *vm = b->vd->vm;

	if (!b->disk_added)
		return;
	/* vm.h has no vm_remove_disk: unlink ours so the list never points at freed memory. */
	for (struct vm_disk **p = &vm->disks; *p; p = &(*p)->next) {
		if (*p == &b->disk) {
			*p = b->disk.next;
			break;
		}
	}
	b->disk_added = false;
}

static void blk_free(struct blk *b)
{
	blk_stop_workers(b);
	blk_disk_remove(b);
	if (b->fd >= 0)
		close(b->fd);
	pthread_cond_destroy(&b->idle_cv);
	pthread_cond_destroy(&b->work_cv);
	pthread_mutex_destroy(&b->lock);
	free(b);
}

static void blk_register_disk(struct blk *b, struct virtio_dev *vd)
{
	b->disk.fd = b->fd;
	snprintf(b->disk.cfg_key, sizeof(b->disk.cfg_key), "%s.path", vd->pd->opts);
	snprintf(b->disk.id, sizeof(b->disk.id), "%s", vd->pd->dev.id);
	vm_add_disk(vd->vm, &b->disk);
	b->disk_added = true;
}

static int blk_init(struct virtio_dev *vd, char *err, size_t errlen)
{
	struct blk *b = calloc(1, sizeof(*b));
	int ret;

	if (!b) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	b->vd = vd;
	b->fd = -1;
	pthread_mutex_init(&b->lock, NULL);
	pthread_cond_init(&b->work_cv, NULL);
	pthread_cond_init(&b->idle_cv, NULL);
	ret = blk_parse_opts(b, vd, err, errlen);
	if (!ret)
		ret = blk_open(b, vd, err, errlen);
	if (!ret) {
		ret = blk_start_workers(b);
		if (ret)
			snprintf(err, errlen, "cannot start I/O threads: %s", strerror(-ret));
	}
	if (ret) {
		blk_free(b);
		return ret;
	}
	blk_fill_config(b);
	vd->priv = b;
	vd->nqueues = 1;
	vd->queue_max[0] = BLK_QUEUE_SIZE;
	vd->host_features = blk_features(b);
	vd->config_len = CFG_LEN;
	blk_register_disk(b, vd);
	return 0;
}

static void blk_queue_notify(struct virtio_dev *vd, struct virtqueue *vq)
{
	blk_kick(vd->priv);
}

static void blk_driver_ok(struct virtio_dev *vd)
{
	blk_kick(vd->priv);
}

/* The transport forgets the queues after this: no worker may still hold one of their chains. */
static void blk_reset(struct virtio_dev *vd)
{
	struct blk *b = vd->priv;

	blk_quiesce(b);
	blk_unquiesce(b, false);
}

static int blk_pause(struct virtio_dev *vd)
{
	blk_quiesce(vd->priv);
	return 0;
}

/* The guest may have queued requests while paused (or before a snapshot): look at the queue. */
static int blk_resume(struct virtio_dev *vd)
{
	blk_unquiesce(vd->priv, true);
	return 0;
}

static void blk_destroy(struct virtio_dev *vd)
{
	struct blk *b = vd->priv;

	if (!b)
		return;
	blk_free(b);
	vd->priv = NULL;
}

/* ---- snapshot ---- */

/*
 * Version 1: the invariants the guest has seen (features, block sizes, capacity, read-only,
 * serial), then the number of requests in flight, always 0 (the transport saves after pause).
 */
static int blk_save(struct virtio_dev *vd, struct sstream *s)
{
	struct blk *b = vd->priv;
	uint32_t active;
	uint8_t ro = b->ro;

	pthread_mutex_lock(&b->lock);
	active = b->active;
	pthread_mutex_unlock(&b->lock);
	if (active)
		return ss_fail(s, -EBUSY, "%u I/O workers busy at save: pause the device first",
			       active);
	ss_u32(s, (uint32_t[]){ (uint32_t)blk_features(b) });
	ss_u32(s, &b->lsize);
	ss_u32(s, &b->psize);
	ss_u64(s, &b->capacity);
	ss_u8(s, &ro);
	ss_bytes(s, b->serial, sizeof(b->serial));
	ss_u32(s, (uint32_t[]){ 0 });
	return ss_error(s);
}

struct blk_saved {
	uint32_t features, lsize, psize, inflight;
	uint64_t capacity;
	uint8_t ro;
	char serial[BLK_ID_LEN];
};

static void blk_check(struct sstream *s, const struct blk *b, const struct blk_saved *v)
{
	const char *path = b->disk.path;

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
	if (v->features != (uint32_t)blk_features(b))
		ss_fail(s, -EINVAL,
			"the snapshot's disk offered features %#x, this "
			"one %#x (ro or discard= differ)",
			v->features, (unsigned)blk_features(b));
	if (v->inflight)
		ss_fail(s, -EINVAL,
			"%u requests in flight in the snapshot (a saved "
			"device is drained)",
			v->inflight);
}

/* Nothing to commit: everything saved is an invariant of the configured device. */
static int blk_load(struct virtio_dev *vd, struct sstream *s, unsigned version)
{
	struct blk *b = vd->priv;
	struct blk_saved v = { 0 };

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
	blk_check(s, b, &v);
	return ss_error(s);
}

static const struct virtio_dev_ops virtio_blk_ops = {
	.name = "virtio-blk",
	.device_id = VIRTIO_ID_BLOCK,
	.pci_class = 0x01,    /* mass storage */
	.pci_subclass = 0x80, /* other */
	.version = BLK_STATE_VERSION,
	.init = blk_init,
	.cfg_read = blk_cfg_read,
	.cfg_write = blk_cfg_write,
	.queue_notify = blk_queue_notify,
	.driver_ok = blk_driver_ok,
	.reset = blk_reset,
	.pause = blk_pause,
	.resume = blk_resume,
	.save = blk_save,
	.load = blk_load,
	.destroy = blk_destroy,
};

VIRTIO_PCI_EMUL(virtio_blk, "virtio-blk", virtio_blk_ops);
