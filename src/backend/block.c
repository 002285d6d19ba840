// SPDX-License-Identifier: BSD-2-Clause
/*
 * The block backend (see block.h): image open and options, synchronous I/O with an O_DIRECT
 * bounce path, flush, discard and write-zeroes through fallocate, the worker pool and its
 * pause protocol, and the snapshot disk registry.
 *
 * Why worker threads: the front ends' workers pop requests straight off the guest's rings and
 * do the I/O with one preadv/pwritev each, so a request is never handed from one thread to
 * another; with the image in the page cache that is one copy and one system call per request.
 * io_uring would batch the system calls, but a page-cache hit is served inline either way; it
 * is not used until it measures faster (bench/README.md).
 */
#include "backend/block.h"

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
#include <unistd.h>

#include "vm.h"

#define BLK_BOUNCE_SIZE (1U << 20)
#define BLK_DIO_ALIGN 4096 /* bounce buffer alignment for O_DIRECT */

struct blk_worker {
	struct blk *b;
	pthread_t tid;
	void *bounce; /* BLK_BOUNCE_SIZE, aligned; allocated when first needed */
	void *scratch;
};

struct blk {
	int fd;
	bool ro, nocache, sync, discard;
	uint32_t lsize, psize;
	uint64_t size;
	unsigned nthreads;
	struct vm_disk disk; /* path is the image's real path */
	struct vm *vm;	     /* registered with, or NULL */
	blk_serve_fn serve;
	void *opaque;
	size_t scratch_size;

	pthread_mutex_t lock;	/* everything below */
	pthread_cond_t work_cv; /* kicked, paused or stopping changed */
	pthread_cond_t idle_cv; /* active dropped to 0 */
	bool kicked;		/* work may be waiting that no worker is taking */
	bool paused;		/* call no serve() (pause) */
	bool stopping;		/* threads exit (close) */
	unsigned active;	/* serve() calls running */
	unsigned nworkers;
	struct blk_worker *workers[BLK_MAX_THREADS];
};

/* ---- options ---- */

const char *const blk_options[] = { "path",	 "ro",	       "nocache",  "direct",
				    "sync",	 "sectorsize", "nodelete", "discard",
				    "iothreads", "ser",	       "serial",   NULL };

static const char *opt_get(blk_opt_fn opt, void *ctx, const char *name)
{
	return opt ? opt(ctx, name) : NULL;
}

int blk_opt_bool(blk_opt_fn opt, void *ctx, const char *name, bool dflt, bool *out, char *err,
		 size_t errlen)
{
	const char *v = opt_get(opt, ctx, name);

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

static bool is_pow2(unsigned long v)
{
	return v && !(v & (v - 1));
}

static bool parse_ulong(const char *s, char **end, unsigned long *out)
{
	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	*out = strtoul(s, end, 10);
	return errno == 0;
}

/* sectorsize=L or L/P (bhyve's syntax). */
static int parse_sectorsize(struct blk *b, const char *v, char *err, size_t errlen)
{
	unsigned long l, p;
	char *end;

	if (!parse_ulong(v, &end, &l))
		goto bad;
	p = l > BLK_DIO_ALIGN ? l : BLK_DIO_ALIGN;
	if (*end == '/' && !parse_ulong(end + 1, &end, &p))
		goto bad;
	if (*end)
		goto bad;
	if (!is_pow2(l) || l < 512 || l > 4096) {
		snprintf(err, errlen,
			 "sectorsize=%s: the logical sector size must be a power of two from 512 "
			 "to 4096",
			 v);
		return -EINVAL;
	}
	if (!is_pow2(p) || p < l || p > 65536) {
		snprintf(err, errlen,
			 "sectorsize=%s: the physical sector size must be a power of two from the "
			 "logical size (%lu) to 65536",
			 v, l);
		return -EINVAL;
	}
	b->lsize = (uint32_t)l;
	b->psize = (uint32_t)p;
	return 0;
bad:
	snprintf(err, errlen,
		 "sectorsize=%s: want LOGICAL or LOGICAL/PHYSICAL in bytes, e.g. 512 or 512/4096",
		 v);
	return -EINVAL;
}

static int parse_iothreads(struct blk *b, const struct blk_args *a, char *err, size_t errlen)
{
	const char *v = opt_get(a->opt, a->opt_ctx, "iothreads");
	unsigned long n = a->default_threads ? a->default_threads : 1;
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

/* discard=on|off (virtio-blk's spelling) and bhyve's nodelete flag, which must agree. */
static int parse_discard(struct blk *b, const struct blk_args *a, char *err, size_t errlen)
{
	bool discard, nodelete;
	int ret;

	if ((ret = blk_opt_bool(a->opt, a->opt_ctx, "discard", true, &discard, err, errlen)) ||
	    (ret = blk_opt_bool(a->opt, a->opt_ctx, "nodelete", false, &nodelete, err, errlen)))
		return ret;
	if (nodelete && opt_get(a->opt, a->opt_ctx, "discard") && discard) {
		snprintf(err, errlen, "nodelete and discard=on disagree: give one of them");
		return -EINVAL;
	}
	b->discard = discard && !nodelete;
	return 0;
}

static int parse_opts(struct blk *b, const struct blk_args *a, char *err, size_t errlen)
{
	const char *ss = opt_get(a->opt, a->opt_ctx, "sectorsize");
	bool direct, sync;
	int ret;

	if ((ret = blk_opt_bool(a->opt, a->opt_ctx, "ro", false, &b->ro, err, errlen)) ||
	    (ret = blk_opt_bool(a->opt, a->opt_ctx, "nocache", false, &b->nocache, err, errlen)) ||
	    (ret = blk_opt_bool(a->opt, a->opt_ctx, "direct", false, &direct, err, errlen)) ||
	    (ret = blk_opt_bool(a->opt, a->opt_ctx, "sync", false, &sync, err, errlen)) ||
	    (ret = parse_discard(b, a, err, errlen)) || (ret = parse_iothreads(b, a, err, errlen)))
		return ret;
	b->sync = direct || sync;
	b->lsize = 512;
	b->psize = BLK_DIO_ALIGN;
	if (ss && (ret = parse_sectorsize(b, ss, err, errlen)))
		return ret;
	return 0;
}

int blk_parse_serial(blk_opt_fn opt, void *ctx, const char *dflt, char out[BLK_SERIAL_LEN],
		     char *err, size_t errlen)
{
	const char *ser = opt_get(opt, ctx, "ser"), *serial = opt_get(opt, ctx, "serial");
	const char *name = ser ? "ser" : "serial";
	size_t n;

	if (ser && serial && strcmp(ser, serial)) {
		snprintf(err, errlen, "ser=%s and serial=%s disagree: give one of them", ser,
			 serial);
		return -EINVAL;
	}
	if (!ser)
		ser = serial;
	if (!ser)
		ser = dflt;
	n = strlen(ser);
	if (n > BLK_SERIAL_LEN) {
		snprintf(err, errlen, "%s=%s: a serial number has at most %d characters", name, ser,
			 BLK_SERIAL_LEN);
		return -EINVAL;
	}
	for (size_t i = 0; i < n; i++) {
		if (ser[i] < 0x20 || ser[i] > 0x7e) {
			snprintf(err, errlen, "%s=%s: a serial number is printable ASCII", name,
				 ser);
			return -EINVAL;
		}
	}
	memset(out, 0, BLK_SERIAL_LEN);
	memcpy(out, ser, n);
	return 0;
}

/* ---- the image ---- */

static int open_fail(const char *path, bool ro, bool nocache, int e, char *err, size_t errlen)
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

static int image_size(struct blk *b, const char *path, char *err, size_t errlen)
{
	struct stat st;

	if (fstat(b->fd, &st) < 0) {
		snprintf(err, errlen, "path=%s: %s", path, strerror(errno));
		return -errno;
	}
	if (S_ISREG(st.st_mode)) {
		b->size = (uint64_t)st.st_size;
		return 0;
	}
	if (S_ISBLK(st.st_mode) && ioctl(b->fd, BLKGETSIZE64, &b->size) == 0)
		return 0;
	snprintf(err, errlen, "path=%s: not a regular file or block device", path);
	return -EINVAL;
}

static int image_open(struct blk *b, const char *path, char *err, size_t errlen)
{
	int flags = (b->ro ? O_RDONLY : O_RDWR) | O_CLOEXEC;
	struct stat st;
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
		return open_fail(path, b->ro, b->nocache, errno, err, errlen);
	ret = image_size(b, path, err, errlen);
	if (ret)
		return ret;
	if (b->size % b->lsize) {
		snprintf(err, errlen,
			 "path=%s: the image is %" PRIu64 " bytes, not a multiple of the %u-byte "
			 "sector size (resize it, e.g. truncate -s, or change sectorsize=)",
			 path, b->size, b->lsize);
		return -EINVAL;
	}
	if (!realpath(path, b->disk.path)) {
		snprintf(err, errlen, "path=%s: %s", path, strerror(errno));
		return -errno;
	}
	return 0;
}

uint64_t blk_size(const struct blk *b)
{
	return b->size;
}

uint32_t blk_lsize(const struct blk *b)
{
	return b->lsize;
}

uint32_t blk_psize(const struct blk *b)
{
	return b->psize;
}

bool blk_ro(const struct blk *b)
{
	return b->ro;
}

bool blk_can_discard(const struct blk *b)
{
	return !b->ro && b->discard;
}

const char *blk_path(const struct blk *b)
{
	return b->disk.path;
}

int blk_fd(const struct blk *b)
{
	return b->fd;
}

unsigned blk_nthreads(const struct blk *b)
{
	return b->nthreads;
}

bool blk_in_range(const struct blk *b, uint64_t off, uint64_t len)
{
	return off <= b->size && len <= b->size - off;
}

/* ---- I/O ---- */

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
static int rw_all(int fd, bool write, struct iovec *iov, unsigned n, uint64_t off)
{
	iov_advance(&iov, &n, 0); /* empty buffers first: nothing to transfer is not an EOF */
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

/* A worker keeps its bounce buffer; a call from elsewhere gets one for the call. */
static void *bounce_get(struct blk_worker *w)
{
	void *p = NULL;

	if (w && w->bounce)
		return w->bounce;
	if (posix_memalign(&p, BLK_DIO_ALIGN, BLK_BOUNCE_SIZE))
		return NULL;
	if (w)
		w->bounce = p;
	return p;
}

static void bounce_put(struct blk_worker *w, void *p)
{
	if (!w)
		free(p);
}

/* Gather up to BLK_BOUNCE_SIZE bytes of @iov into @buf (when @copy); returns the count. */
static size_t bounce_gather(void *buf, const struct iovec *iov, unsigned n, bool copy)
{
	size_t chunk = 0;

	for (unsigned i = 0; i < n && chunk < BLK_BOUNCE_SIZE; i++) {
		size_t l = iov[i].iov_len < BLK_BOUNCE_SIZE - chunk ? iov[i].iov_len
								    : BLK_BOUNCE_SIZE - chunk;

		if (copy)
			memcpy((uint8_t *)buf + chunk, iov[i].iov_base, l);
		chunk += l;
	}
	return chunk;
}

static void bounce_scatter(const void *buf, size_t chunk, const struct iovec *iov)
{
	for (size_t done = 0; done < chunk; iov++) {
		size_t l = iov->iov_len < chunk - done ? iov->iov_len : chunk - done;

		memcpy(iov->iov_base, (const uint8_t *)buf + done, l);
		done += l;
	}
}

/* O_DIRECT wants aligned memory; guest buffers need not be.  Copy through an aligned one. */
static int rw_bounce(struct blk *b, struct blk_worker *w, bool write, struct iovec *iov, unsigned n,
		     uint64_t off)
{
	void *buf = bounce_get(w);
	int ret = buf ? 0 : -ENOMEM;

	while (!ret && n) {
		size_t chunk = bounce_gather(buf, iov, n, write);

		ret = rw_all(b->fd, write, &(struct iovec){ buf, chunk }, 1, off);
		if (!ret && !write)
			bounce_scatter(buf, chunk, iov);
		off += chunk;
		iov_advance(&iov, &n, chunk);
	}
	bounce_put(w, buf);
	return ret;
}

static int check_io(struct blk *b, const struct iovec *iov, unsigned n, uint64_t off)
{
	uint64_t len = 0;

	if (n > BLK_MAX_IOV || off % BLK_UNIT)
		return -EINVAL;
	for (unsigned i = 0; i < n; i++) {
		if (iov[i].iov_len > b->size)
			return -EINVAL;
		len += iov[i].iov_len;
	}
	return len % BLK_UNIT || !blk_in_range(b, off, len) ? -EINVAL : 0;
}

static int blk_rw(struct blk *b, struct blk_worker *w, bool write, struct iovec *iov, unsigned n,
		  uint64_t off)
{
	struct iovec *save;
	int ret = check_io(b, iov, n, off);

	if (ret)
		return ret;
	if (write && b->ro)
		return -EROFS;
	if (!b->nocache)
		return rw_all(b->fd, write, iov, n, off);
	/*
	 * O_DIRECT refuses (EINVAL) buffers that are not aligned as the host disk wants.  Try
	 * the guest's buffers first, and go through an aligned copy if they were refused.
	 * Starting over is harmless: it reads or writes the same bytes again.
	 */
	save = malloc(n * sizeof(*iov) + 1);
	if (!save)
		return -ENOMEM;
	memcpy(save, iov, n * sizeof(*iov));
	ret = rw_all(b->fd, write, iov, n, off);
	if (ret == -EINVAL)
		ret = rw_bounce(b, w, write, save, n, off);
	free(save);
	return ret;
}

int blk_readv(struct blk *b, struct blk_worker *w, struct iovec *iov, unsigned n, uint64_t off)
{
	return blk_rw(b, w, false, iov, n, off);
}

int blk_writev(struct blk *b, struct blk_worker *w, struct iovec *iov, unsigned n, uint64_t off)
{
	return blk_rw(b, w, true, iov, n, off);
}

int blk_flush(struct blk *b)
{
	return fdatasync(b->fd) < 0 ? -errno : 0;
}

static int write_zeroes_slow(struct blk *b, struct blk_worker *w, uint64_t off, uint64_t len)
{
	void *buf = bounce_get(w);
	int ret = buf ? 0 : -ENOMEM;

	if (buf)
		memset(buf, 0, BLK_BOUNCE_SIZE);
	while (!ret && len) {
		size_t l = len < BLK_BOUNCE_SIZE ? len : BLK_BOUNCE_SIZE;

		ret = rw_all(b->fd, true, &(struct iovec){ buf, l }, 1, off);
		off += l;
		len -= l;
	}
	bounce_put(w, buf);
	return ret;
}

static bool falloc_unsupported(int e)
{
	return e == EOPNOTSUPP || e == ENOSYS || e == ENODEV;
}

static int check_range(struct blk *b, uint64_t off, uint64_t len)
{
	if (off % BLK_UNIT || len % BLK_UNIT || len > BLK_MAX_ZERO || !blk_in_range(b, off, len))
		return -EINVAL;
	return b->ro ? -EROFS : 0;
}

int blk_discard(struct blk *b, struct blk_worker *w, uint64_t off, uint64_t len)
{
	int ret = check_range(b, off, len);

	if (ret || !len || !b->discard)
		return ret;
	if (!fallocate(b->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len))
		return 0;
	/* The host cannot: a discard is only a hint, so dropping it is correct. */
	return falloc_unsupported(errno) ? 0 : -errno;
}

int blk_write_zeroes(struct blk *b, struct blk_worker *w, uint64_t off, uint64_t len, bool unmap)
{
	int ret = check_range(b, off, len);

	if (ret || !len)
		return ret;
	if (unmap && b->discard) {
		if (!fallocate(b->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
			       (off_t)len))
			return 0;
		if (!falloc_unsupported(errno))
			return -errno;
	}
	if (!fallocate(b->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len))
		return 0;
	if (!falloc_unsupported(errno))
		return -errno;
	return write_zeroes_slow(b, w, off, len);
}

/* ---- workers ---- */

void blk_kick(struct blk *b)
{
	pthread_mutex_lock(&b->lock);
	b->kicked = true;
	pthread_cond_signal(&b->work_cv);
	pthread_mutex_unlock(&b->lock);
}

bool blk_running(struct blk *b)
{
	bool ok;

	pthread_mutex_lock(&b->lock);
	ok = !b->paused && !b->stopping;
	pthread_mutex_unlock(&b->lock);
	return ok;
}

static void *worker_main(void *arg)
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
		b->serve(b->opaque, w, w->scratch);
		pthread_mutex_lock(&b->lock);
		if (--b->active == 0)
			pthread_cond_broadcast(&b->idle_cv);
	}
	pthread_mutex_unlock(&b->lock);
	return NULL;
}

void blk_pause(struct blk *b)
{
	pthread_mutex_lock(&b->lock);
	b->paused = true;
	while (b->active)
		pthread_cond_wait(&b->idle_cv, &b->lock);
	pthread_mutex_unlock(&b->lock);
}

void blk_resume(struct blk *b, bool kick)
{
	pthread_mutex_lock(&b->lock);
	b->paused = false;
	b->kicked = b->kicked || kick;
	pthread_cond_broadcast(&b->work_cv);
	pthread_mutex_unlock(&b->lock);
}

unsigned blk_busy(struct blk *b)
{
	unsigned n;

	pthread_mutex_lock(&b->lock);
	n = b->active;
	pthread_mutex_unlock(&b->lock);
	return n;
}

static void stop_workers(struct blk *b)
{
	pthread_mutex_lock(&b->lock);
	b->stopping = true;
	pthread_cond_broadcast(&b->work_cv);
	pthread_mutex_unlock(&b->lock);
	for (unsigned i = 0; i < b->nworkers; i++) {
		pthread_join(b->workers[i]->tid, NULL);
		free(b->workers[i]->bounce);
		free(b->workers[i]->scratch);
		free(b->workers[i]);
		b->workers[i] = NULL;
	}
	b->nworkers = 0;
}

static int start_workers(struct blk *b, const char *name)
{
	char tname[32];

	for (unsigned i = 0; i < b->nthreads; i++) {
		struct blk_worker *w = calloc(1, sizeof(*w));
		int ret;

		if (!w)
			return -ENOMEM;
		w->b = b;
		w->scratch = b->scratch_size ? calloc(1, b->scratch_size) : NULL;
		if (b->scratch_size && !w->scratch) {
			free(w);
			return -ENOMEM;
		}
		ret = pthread_create(&w->tid, NULL, worker_main, w);
		if (ret) {
			free(w->scratch);
			free(w);
			return -ret;
		}
		/* "blk3.0-1": which disk a thread in top or gdb serves. */
		snprintf(tname, sizeof(tname), "%s-%u", name ? name : "blk", i);
		tname[15] = '\0'; /* the kernel keeps 15 characters */
		pthread_setname_np(w->tid, tname);
		b->workers[b->nworkers++] = w;
	}
	return 0;
}

/* ---- lifecycle ---- */

static void disk_remove(struct blk *b)
{
	if (!b->vm)
		return;
	/* vm.h has no vm_remove_disk: unlink ours so the list never points at freed memory. */
	for (struct vm_disk **p = &b->vm->disks; *p; p = &(*p)->next) {
		if (*p == &b->disk) {
			*p = b->disk.next;
			break;
		}
	}
	b->vm = NULL;
}

void blk_close(struct blk *b)
{
	if (!b)
		return;
	stop_workers(b);
	disk_remove(b);
	if (b->fd >= 0)
		close(b->fd);
	pthread_cond_destroy(&b->idle_cv);
	pthread_cond_destroy(&b->work_cv);
	pthread_mutex_destroy(&b->lock);
	free(b);
}

static void disk_register(struct blk *b, const struct blk_args *a)
{
	if (!a->vm)
		return;
	b->disk.fd = b->fd;
	snprintf(b->disk.cfg_key, sizeof(b->disk.cfg_key), "%s", a->cfg_key ? a->cfg_key : "");
	snprintf(b->disk.id, sizeof(b->disk.id), "%s", a->id ? a->id : "");
	vm_add_disk(a->vm, &b->disk);
	b->vm = a->vm;
}

int blk_open(const struct blk_args *a, struct blk **out, char *err, size_t errlen)
{
	const char *path = opt_get(a->opt, a->opt_ctx, "path");
	struct blk *b;
	int ret;

	*out = NULL;
	if (!path || !*path) {
		snprintf(err, errlen, "missing disk image: %s", a->usage ? a->usage : "set path=");
		return -EINVAL;
	}
	b = calloc(1, sizeof(*b));
	if (!b) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	b->fd = -1;
	b->serve = a->serve;
	b->opaque = a->opaque;
	b->scratch_size = a->scratch_size;
	pthread_mutex_init(&b->lock, NULL);
	pthread_cond_init(&b->work_cv, NULL);
	pthread_cond_init(&b->idle_cv, NULL);
	ret = parse_opts(b, a, err, errlen);
	if (!ret)
		ret = image_open(b, path, err, errlen);
	if (!ret && b->serve) {
		ret = start_workers(b, a->thread_name);
		if (ret)
			snprintf(err, errlen, "cannot start I/O threads: %s", strerror(-ret));
	}
	if (ret) {
		blk_close(b);
		return ret;
	}
	disk_register(b, a);
	*out = b;
	return 0;
}
