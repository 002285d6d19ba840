/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The block backend: a raw disk image (a regular file or a block device) that disk front ends
 * (virtio-blk, AHCI's hard disks and CD-ROMs) share, as bhyve's block_if.  A front end never
 * opens an image itself.
 *
 * Options (keys of the device, or of one AHCI port), bhyve's names:
 *	path=PATH		the image (required)
 *	ro			open read-only; every write, discard and write-zeroes fails
 *	nocache			O_DIRECT: the host page cache is bypassed (unaligned guest buffers
 *				go through an aligned bounce buffer)
 *	direct (alias sync)	O_DSYNC: a write is on stable storage when it completes
 *	sectorsize=L[/P]	logical and physical block size: L 512..4096, P L..65536, powers
 *				of two (default 512/4096)
 *	nodelete (or discard=off)  discard requests are not passed to the image, and
 *				write-zeroes only zeroes, never deallocates
 *	iothreads=N		worker threads, 1..16 (the front end picks the default)
 * An image whose size is not a multiple of the logical sector size is refused rather than
 * silently cut short.
 *
 * Threads: a backend owns a pool of worker threads that a front end drives with a pull model:
 * blk_kick() wakes one worker, which calls the front end's serve() callback; serve() takes
 * requests from wherever the guest put them (a virtqueue, an AHCI command list), does each
 * one with the synchronous calls below (blk_readv, blk_writev, ...) and completes it, until
 * there is nothing left or blk_running() says stop.  A serve() that sees more work than it
 * can take calls blk_kick() so another worker takes the rest: independent requests overlap
 * without a hand-off between threads.  The vCPU that rang a doorbell never waits for the disk.
 * The I/O calls may also be made from any other thread (with a NULL worker).
 *
 * Pause: blk_pause() stops workers calling serve() and waits for every serve() running to
 * return; a front end's serve() completes every request it took before it returns, so after
 * blk_pause() nothing is in flight and every completion and interrupt has been delivered.
 *
 * Snapshots: an open backend with a VM registers its image as a struct vm_disk (the snapshot
 * fsyncs it, and with snapshot.disks=clone copies it and records the copy under the path key),
 * and removes it again when closed.
 */
#ifndef KHYVE_BACKEND_BLOCK_H
#define KHYVE_BACKEND_BLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct vm;
struct blk;
struct blk_worker;

#define BLK_UNIT 512ULL	 /* offsets and lengths of every I/O call are multiples of this */
#define BLK_MAX_IOV 1024 /* buffers in one blk_readv / blk_writev */
#define BLK_MAX_THREADS 16
#define BLK_SERIAL_LEN 20	  /* virtio-blk GET_ID and ATA IDENTIFY serial numbers alike */
#define BLK_MAX_ZERO (1ULL << 32) /* bytes in one discard or write-zeroes call */

/* The value of device option @key, or NULL. */
typedef const char *(*blk_opt_fn)(void *ctx, const char *key);
/* The options blk_open reads, for the front ends' option lists (keys.h). */
extern const char *const blk_options[];
/* Serve requests on a worker thread (see above).  @scratch: the front end's per-thread area. */
typedef void (*blk_serve_fn)(void *opaque, struct blk_worker *w, void *scratch);

struct blk_args {
	struct vm *vm;	/* registers the image for snapshots; NULL: not registered */
	blk_opt_fn opt; /* the options above */
	void *opt_ctx;
	const char *cfg_key;	  /* the config key of path=, "pci.0.3.0.path" (for clones) */
	const char *id;		  /* disk id in the registry, unique in the VM: "pci@0.3.0" */
	const char *thread_name;  /* worker names "NAME-0", "NAME-1"... (at most 12 chars) */
	const char *usage;	  /* how to give a path, for the missing-path error */
	unsigned default_threads; /* iothreads= unset; 0 means 1 */
	size_t scratch_size;	  /* per-worker scratch handed to serve() */
	blk_serve_fn serve;	  /* NULL: no workers (the front end calls I/O itself) */
	void *opaque;
};

/*
 * Parse the options, open and size the image, start the workers, register the disk.  Returns
 * 0 with *@out, or -errno with a message in @err naming the option or the file and what to do.
 */
int blk_open(const struct blk_args *a, struct blk **out, char *err, size_t errlen);
/* Stop the workers (after the serve() running returns), unregister, close.  NULL is a no-op. */
void blk_close(struct blk *b);

/* What was opened. */
uint64_t blk_size(const struct blk *b); /* bytes, a multiple of blk_lsize() */
uint32_t blk_lsize(const struct blk *b);
uint32_t blk_psize(const struct blk *b);
bool blk_ro(const struct blk *b);
bool blk_can_discard(const struct blk *b); /* not ro and not nodelete */
const char *blk_path(const struct blk *b); /* the image's real path */
int blk_fd(const struct blk *b);
unsigned blk_nthreads(const struct blk *b);
/* [@off, @off + @len) lies inside the image (no sum can overflow). */
bool blk_in_range(const struct blk *b, uint64_t off, uint64_t len);

/*
 * Synchronous I/O, 0 or -errno.  @off and the total length are multiples of BLK_UNIT and inside
 * the image (else -EINVAL), at most BLK_MAX_IOV buffers (else -EINVAL); writes on a read-only
 * image are -EROFS.  @iov is consumed: its entries may be changed.  @w is the calling worker
 * (for its bounce buffer), or NULL from another thread.  A short read past the image's end
 * (it shrank under us) is -EIO.
 */
int blk_readv(struct blk *b, struct blk_worker *w, struct iovec *iov, unsigned n, uint64_t off);
int blk_writev(struct blk *b, struct blk_worker *w, struct iovec *iov, unsigned n, uint64_t off);
/* Make every completed write durable (fdatasync). */
int blk_flush(struct blk *b);
/*
 * Discard: a hint that the guest no longer needs the range; it is punched out where the host
 * can, else ignored (0).  With nodelete it does nothing.
 */
int blk_discard(struct blk *b, struct blk_worker *w, uint64_t off, uint64_t len);
/* The range reads as zeros afterwards; @unmap lets it be deallocated (not with nodelete). */
int blk_write_zeroes(struct blk *b, struct blk_worker *w, uint64_t off, uint64_t len, bool unmap);

/* Wake one worker to call serve() (any thread; a no-op while paused, remembered for resume). */
void blk_kick(struct blk *b);
/* false once blk_pause() or blk_close() began: serve() returns after its current request. */
bool blk_running(struct blk *b);
/* Stop calling serve() and wait for every running serve() to return. */
void blk_pause(struct blk *b);
/* Call serve() again; @kick: look for work at once (the guest may have queued some). */
void blk_resume(struct blk *b, bool kick);
/* serve() calls running now, for a front end's save to check it was paused. */
unsigned blk_busy(struct blk *b);

/*
 * ser= (alias serial=): up to BLK_SERIAL_LEN printable ASCII characters into @out, zero
 * padded; @dflt when neither is given.  0 or -EINVAL with @err.
 */
int blk_parse_serial(blk_opt_fn opt, void *ctx, const char *dflt, char out[BLK_SERIAL_LEN],
		     char *err, size_t errlen);
/* An on/off option: true/on/yes/1, false/off/no/0; @dflt when unset.  0 or -EINVAL with @err. */
int blk_opt_bool(blk_opt_fn opt, void *ctx, const char *name, bool dflt, bool *out, char *err,
		 size_t errlen);

#endif
