/* SPDX-License-Identifier: MIT */
/*
 * khyve test guest, ring 3: a virtio 1.x driver for the modern PCI
 * transport (virtio.c), the split virtqueue from the driver's side, and
 * the modes built on it: blk and blkbench (virtio_blk.c), net
 * (virtio_net.c), rnd (virtio_rnd.c), evil (evil.c).
 *
 * No interrupts: MSI-X stays disabled, every vector is NO_VECTOR, INTx is
 * switched off in the PCI command register, and completions are found by
 * polling the used ring. The rings and buffers live in guest RAM taken
 * from a bump allocator above the image, so a snapshot of guest memory
 * carries the driver's whole state.
 */
#ifndef VIRTIO_H
#define VIRTIO_H

#include "types.h"
#include "pci.h"

#define VIRTIO_VENDOR		0x1af4
#define VIRTIO_ID_NET		1
#define VIRTIO_ID_BLOCK		2
#define VIRTIO_ID_RNG		4

#define VIRTIO_S_ACK		1
#define VIRTIO_S_DRIVER		2
#define VIRTIO_S_DRIVER_OK	4
#define VIRTIO_S_FEATURES_OK	8
#define VIRTIO_S_NEEDS_RESET	64
#define VIRTIO_S_FAILED		128

#define VIRTIO_F_INDIRECT_DESC	28
#define VIRTIO_F_EVENT_IDX	29
#define VIRTIO_F_VERSION_1	32

#define VRING_DESC_F_NEXT	1
#define VRING_DESC_F_WRITE	2
#define VRING_DESC_F_INDIRECT	4
#define VRING_AVAIL_F_NO_INTERRUPT 1
#define VRING_USED_F_NO_NOTIFY	1

#define VIO_MAXQ		3
#define VQ_MAX			256	/* largest queue this driver sets up */
#define VIRTIO_NO_VECTOR	0xffff

struct vring_desc {
	u64 addr;
	u32 len;
	u16 flags;
	u16 next;
};

/* One buffer of a request, as vq_add takes it. */
struct vbuf {
	const void *addr;
	u32 len;
	bool write;		/* device-writable */
};

struct vdev;

struct vq {
	struct vdev *vd;
	u16 index, size;
	bool live;			/* enabled by us since the last reset */
	struct vring_desc *desc;
	volatile u16 *avail;		/* [0] flags [1] idx [2..] ring [2+size] used_event */
	volatile u8 *used;		/* flags, idx, {id, len}[size], avail_event */
	u16 free_head, nfree;
	u16 avail_idx;			/* next entry we fill (published right away) */
	u16 kicked_idx;			/* avail idx at the last notify decision */
	u16 last_used;			/* next used entry we look at */
	u16 link[VQ_MAX];		/* free list and chain links (our copy) */
	u16 count[VQ_MAX];		/* descriptors in the chain at this head */
	u64 cookie[VQ_MAX];
	u64 notify;			/* MMIO address of this queue's doorbell */
	u64 notifies;			/* doorbell writes */
	/*
	 * Requests on this queue must complete (not so for receive buffers):
	 * when none does for vopt.rering ms of running time, ring again
	 * (set by vq_setup; net's receive queue clears it).
	 */
	bool watch;
	u64 rerings;
	u64 idle_acc, idle_last;	/* running time without a completion */
	void *mem;			/* ring memory, VQ_RING_BYTES */
};

struct vdev {
	const struct pci_fn *pci;
	const char *name;		/* "blk", "net", "rnd" */
	u16 id;				/* VIRTIO_ID_* */
	u64 common, isr, devcfg, notify_base;
	u32 notify_mult, devcfg_len;
	u64 offered, features;
	u32 nq;
	struct vq vq[VIO_MAXQ];
};

/* ---- transport (virtio.c) ---- */

/*
 * Find the @nth device of type @id on bus 0 and parse its capabilities.
 * 0, -1 when there is none, -2 with @why when its capabilities are bad.
 */
int vdev_find(struct vdev *vd, u16 id, u32 nth, const char *name, char *why, u32 whylen);
u8 vdev_status(struct vdev *vd);
void vdev_set_status(struct vdev *vd, u8 st);
/* Write 0 and wait until the device reads back 0; -1 if it never does. */
int vdev_reset(struct vdev *vd);
/*
 * Reset, ACKNOWLEDGE, DRIVER, negotiate VERSION_1 plus what of @want the
 * device offers, FEATURES_OK and check it stuck. 0 or -1 with @why.
 */
int vdev_begin(struct vdev *vd, u64 want, char *why, u32 whylen);
/*
 * Set up queue @idx with at most @limit entries (a power of two) in its
 * ring memory and enable it. -1 with @why when the device has no such
 * queue.
 */
int vq_setup(struct vdev *vd, u32 idx, u16 limit, char *why, u32 whylen);
/* DRIVER_OK; -1 if the device refused it (status shows FAILED/NEEDS_RESET). */
int vdev_ready(struct vdev *vd);
/* vdev_begin + vq_setup for queues 0..nq-1 + vdev_ready */
int vdev_init(struct vdev *vd, u64 want, u32 nq, u16 limit, char *why, u32 whylen);
bool vdev_has(const struct vdev *vd, u32 bit);

/* Common configuration registers, at their natural widths. */
u8 cc_read8(struct vdev *vd, u32 off);
u16 cc_read16(struct vdev *vd, u32 off);
u32 cc_read32(struct vdev *vd, u32 off);
void cc_write8(struct vdev *vd, u32 off, u8 v);
void cc_write16(struct vdev *vd, u32 off, u16 v);
void cc_write32(struct vdev *vd, u32 off, u32 v);
void cc_write64(struct vdev *vd, u32 off, u64 v);

#define CC_DFSELECT	0x00
#define CC_DF		0x04
#define CC_GFSELECT	0x08
#define CC_GF		0x0c
#define CC_MSIX		0x10
#define CC_NUMQ		0x12
#define CC_STATUS	0x14
#define CC_CFGGEN	0x15
#define CC_QSELECT	0x16
#define CC_QSIZE	0x18
#define CC_QMSIX	0x1a
#define CC_QENABLE	0x1c
#define CC_QNOFF	0x1e
#define CC_QDESC	0x20
#define CC_QAVAIL	0x28
#define CC_QUSED	0x30

/* Device configuration space (a 64-bit field read stably across config_generation). */
u8 vcfg_read8(struct vdev *vd, u32 off);
u16 vcfg_read16(struct vdev *vd, u32 off);
u32 vcfg_read32(struct vdev *vd, u32 off);
u64 vcfg_read64(struct vdev *vd, u32 off);

/* ---- virtqueue (virtio.c) ---- */

/*
 * Queue a request of @n buffers (readable ones first) under @cookie: as a
 * chain of ring descriptors, or through @ind (n entries, 16-byte aligned,
 * owned by the caller until completion) when it is not NULL. The avail
 * index is published at once; vq_kick decides whether to ring the
 * doorbell. -1 if there are not enough free descriptors.
 */
int vq_add(struct vq *q, const struct vbuf *b, u32 n, u64 cookie, struct vring_desc *ind);
void vq_kick(struct vq *q);
/*
 * The next completion: 1 with *cookie and *len, 0 if there is none yet,
 * -1 if the device returned an id we never gave it (reported in @why).
 */
int vq_poll(struct vq *q, u64 *cookie, u32 *len, char *why, u32 whylen);
/* vq_poll, spinning until @ms of running time passed: 0 on timeout. */
int vq_wait(struct vq *q, u64 *cookie, u32 *len, u64 ms, char *why, u32 whylen);
static inline u32 vq_free(const struct vq *q) { return q->nfree; }
static inline u32 vq_inflight(const struct vq *q) { return q->size - q->nfree; }
/* Ring fields, for evil.c */
static inline u16 vq_used_idx(const struct vq *q)
{
	return __atomic_load_n((const volatile u16 *)(q->used + 2), __ATOMIC_ACQUIRE);
}
void vq_publish(struct vq *q, u16 idx);
/* The queue's indices and the device status, for a stall report. */
const char *vq_describe(struct vq *q);
void vq_notify(struct vq *q);

/* ---- memory, time ---- */

/* Zeroed guest RAM above the image, never freed; NULL when RAM runs out. */
void *vio_alloc(u64 size, u64 align);

/*
 * Running time: the TSC, minus jumps of more than 100 ms between two looks
 * (the VM was paused, saved, restored), so timeouts measure time the
 * guest actually ran.
 */
struct rtime {
	u64 last, acc;
};
void rt_start(struct rtime *r);
u64 rt_ms(struct rtime *r);
u64 tsc_to_ns(u64 ticks);

/* A deadline for the next "seq" line, re-anchored when the TSC jumps. */
u64 seq_deadline(u64 deadline, u64 now, u64 period);

/* ---- modes ---- */
enum blkop { BLKOP_SEQREAD, BLKOP_SEQWRITE, BLKOP_RANDREAD, BLKOP_RANDWRITE };

struct vio_options {
	u64 blkflush;		/* blk: a FLUSH after this many writes (0: never) */
	u32 blkop;		/* blkbench */
	u64 blksize;		/* blkbench: bytes per request */
	u32 blkdepth;		/* requests in flight */
	u64 seconds;		/* blkbench */
	u32 netport;		/* net: UDP port on 10.0.2.2 */
	u32 nic;		/* net, netbench: NIC_* */
	u32 netsize;		/* netbench: UDP payload bytes */
	u32 netwin;		/* netbench: datagrams in flight */
	bool netrx;		/* netbench: the host sends, we receive */
	u32 rering;		/* ms without a completion before ringing again, 0: never */
};
extern struct vio_options vopt;
enum { NIC_ANY, NIC_VIRTIO, NIC_E1000 };

/* lib.c's command line hands every word here first; true when taken. */
bool vio_cmdline_word(const char *w);
const char *vio_mode_name(void);
const char *vio_blkop_name(u32 op);
void vio_run(void) __attribute__((noreturn));

void blk_run(void) __attribute__((noreturn));
void blkbench_run(void) __attribute__((noreturn));
void net_run(void) __attribute__((noreturn));
void netbench_run(void) __attribute__((noreturn));
void rnd_run(void) __attribute__((noreturn));
void evil_run(void) __attribute__((noreturn));

/* Shared by the modes and evil.c: one good request, 0 if it succeeded. */
int blk_good_request(struct vdev *vd, char *why, u32 whylen);
int net_good_request(struct vdev *vd, char *why, u32 whylen);
int rnd_good_request(struct vdev *vd, char *why, u32 whylen);

#endif
