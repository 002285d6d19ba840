/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Split virtqueues (virtio 1.x 2.6), on their own: a queue knows nothing of the transport that
 * carries it (PCI today; MMIO or vhost-user could use it unchanged).  What it needs it is given
 * at vq_init as a struct vq_host: a way to reach guest memory, a way to interrupt the driver,
 * and a way to say that the driver broke the ring; the features the driver negotiated come with
 * vq_start.  A malformed ring is reported by return value (vq_pop returns -EINVAL) as well as
 * through vq_host.broken, and the queue is then not served until vq_reset.
 *
 * Life of a queue, driven by the transport:
 *	vq_init → (driver sets size and ring addresses) → vq_enable → vq_start(features)
 *	→ served by the device (vq_pop / vq_push / vq_notify) → vq_reset
 * vq_break stops serving at any time (the device needs a reset).
 *
 * No completion crosses a reset: every chain vq_pop hands out is marked with the queue's
 * generation, which vq_reset and vq_enable move on; vq_push drops a head that is not in flight
 * in the current generation (a worker finishing after the driver reset the device and set the
 * queue up again must not put a stale head in the new ring).  A head the driver makes
 * available again while it is in flight is a malformed ring.
 *
 * Chains outstanding on a broken queue can never complete (vq_push drops them): they are
 * abandoned, and a snapshot saves and loads such a queue as it is (vq_in_flight counts them
 * as none).
 *
 * Threads: every function takes vq->lock; a queue may be served from any one thread at a time.
 * The vq_host callbacks are called with it dropped.
 */
#ifndef KHYVE_VIRTQ_H
#define KHYVE_VIRTQ_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define VIRTQ_MAX_SIZE 1024 /* largest queue size a transport may offer */
#define VIRTIO_MAX_IOV 1024 /* buffers in one chain, indirect ones included */

/* Negotiated features a queue follows (vq_start). */
#define VQ_F_INDIRECT 1	 /* VIRTIO_F_INDIRECT_DESC */
#define VQ_F_EVENT_IDX 2 /* VIRTIO_F_EVENT_IDX */

struct virtqueue;

/* What a queue needs from its transport. */
struct vq_host {
	/* Host pointer for guest-physical [gpa, gpa + len), or NULL unless wholly in guest RAM. */
	void *(*gpa)(void *opaque, uint64_t gpa, uint64_t len);
	/* The driver wants an interrupt for @vq (vq_notify decided so). */
	void (*interrupt)(void *opaque, struct virtqueue *vq);
	/* The driver broke @vq's ring (@why): tell it (virtio: DEVICE_NEEDS_RESET). */
	void (*broken)(void *opaque, struct virtqueue *vq, const char *why);
	void *opaque;
};

/* A chain popped from a queue: the guest buffers it names, readable ones first. */
struct virtio_chain {
	uint16_t head;		      /* for vq_push */
	unsigned nread, nwrite;	      /* iov[0 .. nread) readable, then nwrite writable */
	uint64_t read_len, write_len; /* total bytes */
	struct iovec iov[VIRTIO_MAX_IOV];
};

struct virtqueue {
	unsigned index;
	const struct vq_host *host;
	pthread_mutex_t lock;
	uint16_t max_size;
	/* Set by the driver (through the transport) while the queue is not enabled. */
	uint16_t size; /* a power of two <= max_size */
	uint64_t desc_gpa, avail_gpa, used_gpa;
	/* Device-side progress (saved in snapshots). */
	uint16_t last_avail;	 /* next avail ring entry to take */
	uint16_t used_idx;	 /* next used ring entry to fill */
	uint16_t signalled_used; /* used_idx when the driver was last interrupted */
	bool signalled_valid;
	bool enabled;	   /* rings checked and mapped (vq_enable) */
	bool started;	   /* the driver is ready: served (vq_start) */
	bool broken;	   /* a malformed ring was seen, or the device needs a reset */
	unsigned features; /* VQ_F_* */
	uint32_t gen;	   /* moves on at vq_reset and vq_enable, never 0 */
	/* Host pointers to the rings, computed when the queue is enabled or loaded. */
	void *desc, *avail, *used;
	uint32_t *inflight; /* per head: the generation it was taken in, 0 when not taken */
	uint16_t *taken;    /* per avail position: the head taken there (vq_unpop) */
};

/* A queue's part of a snapshot (the transport codes it, with its own per-queue state). */
struct vq_saved {
	uint16_t size, last_avail, used_idx, signalled_used;
	bool enabled, signalled_valid, broken;
	uint64_t desc_gpa, avail_gpa, used_gpa;
};

int vq_init(struct virtqueue *vq, unsigned index, uint16_t max_size, const struct vq_host *host);
void vq_destroy(struct virtqueue *vq);
/* Back to the state after vq_init: not enabled, not broken, size max_size, no chain. */
void vq_reset(struct virtqueue *vq);
/* The driver enabled the queue: check and map its rings.  NULL, or what is wrong with them. */
const char *vq_enable(struct virtqueue *vq);
/* The driver is ready (DRIVER_OK): serve the queue, following @features (VQ_F_*). */
void vq_start(struct virtqueue *vq, unsigned features);
/* Stop serving until vq_reset (the device needs a reset). */
void vq_break(struct virtqueue *vq);
bool vq_ready(struct virtqueue *vq);

/*
 * Take the next available chain.  Returns 1 with @c filled (every buffer checked to lie in
 * guest RAM and mapped to host pointers), 0 when the queue is empty or not ready, or -EINVAL
 * when the ring is malformed (the queue is then broken and vq_host.broken called).  A chain
 * whose layout the device refuses (e.g. a missing header) is the device's to complete with an
 * error status via vq_push.
 */
int vq_pop(struct virtqueue *vq, struct virtio_chain *c);
/*
 * Give back the last @n chains vq_pop returned, unused (a receive frame that does not fit the
 * buffers available yet): the next vq_pop returns them again.
 */
void vq_unpop(struct virtqueue *vq, unsigned n);
/*
 * Return chain @head to the driver with @written bytes written into its buffers.  Dropped if
 * the queue was reset, re-enabled or broke since the chain was taken.
 */
void vq_push(struct virtqueue *vq, uint16_t head, uint32_t written);
/* Interrupt the driver if it wants one for what was pushed (EVENT_IDX or the flags). */
void vq_notify(struct virtqueue *vq);
/* Does the queue have chains to take? (no side effects) */
bool vq_has_work(struct virtqueue *vq);
/* Disable/enable guest notifications (used->flags or avail_event), for batching. */
void vq_set_notify(struct virtqueue *vq, bool enable);

/* Copy between a chain's readable / writable buffers and flat memory, from byte @off. */
size_t chain_read(const struct virtio_chain *c, size_t off, void *buf, size_t len);
size_t chain_write(struct virtio_chain *c, size_t off, const void *buf, size_t len);

/* ---- snapshots ---- */

void vq_save(struct virtqueue *vq, struct vq_saved *s);
/*
 * Is @s a state a queue of at most @max_size entries can be in, its rings inside guest RAM as
 * @host sees it?  NULL, or what is wrong.
 */
const char *vq_saved_check(const struct vq_host *host, uint16_t max_size, const struct vq_saved *s);
/* Chains taken and not returned in @s; those of a broken queue are abandoned and count 0. */
unsigned vq_in_flight(const struct vq_saved *s);
/* Commit a checked state (not started: the transport starts it if the driver was ready). */
void vq_load(struct virtqueue *vq, const struct vq_saved *s);
/*
 * Recompute the rings' host pointers (guest RAM may have been mapped afresh).  A ring no longer
 * inside RAM disables the queue; returns what is wrong, or NULL.
 */
const char *vq_remap(struct virtqueue *vq);

#endif
