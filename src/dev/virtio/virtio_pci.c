// SPDX-License-Identifier: BSD-2-Clause
/*
 * The virtio 1.x modern PCI transport (see virtio.h): identity, capabilities, the common
 * configuration registers, feature negotiation, device status, queue setup, ISR, notify,
 * interrupts, NEEDS_RESET, and the transport's part of a virtio device's snapshot.
 *
 * BAR 4 (64-bit memory, 16 KiB) holds four 4 KiB windows, each named by a vendor capability:
 *
 *	0x0000	common configuration	(cfg_type 1, 0x38 bytes)
 *	0x1000	ISR status		(cfg_type 3, read clears it and lowers INTx)
 *	0x2000	device configuration	(cfg_type 4, config_len bytes; absent when 0)
 *	0x3000	notify			(cfg_type 2, one dword per queue: multiplier 4,
 *					 queue_notify_off = queue index)
 *
 * plus the PCI configuration access capability (cfg_type 5) that reaches BAR 4 through
 * configuration space.  BAR 1 holds the MSI-X table and PBA: nqueues + 1 vectors, which the
 * driver assigns through msix_config and queue_msix_vector.  INTA is the fallback while
 * MSI-X is disabled.
 *
 * Locks, in this order: vd->lock (the registers), vq->lock (one queue), virtio_irq_lock (ISR
 * and the INTx line together), then the PCI function's own lock inside pci_*.  Device hooks
 * other than cfg_read/cfg_write are called with none of ours held.  The status byte, the
 * negotiated features, the ISR and the fields vq_ready() reads are also accessed with
 * __atomic builtins so that lockless readers (virtio_driver_ok, vq_ready) are race free.
 */
#include "dev/virtio/virtio.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dev/pci/pci.h"
#include "dev/virtio/virtio_pci_regs.h"
#include "log.h"
#include "sstream.h"
#include "vm.h"

#define VIRTIO_VENDOR 0x1AF4
#define VIRTIO_DEVICE_BASE 0x1040
#define VIRTIO_REVISION 1

#define VIRTIO_BAR 4
#define VIRTIO_BAR_SIZE 0x4000
#define VIRTIO_MSIX_BAR 1

#define WIN_COMMON 0x0000
#define WIN_ISR 0x1000
#define WIN_DEVICE 0x2000
#define WIN_NOTIFY 0x3000
#define WIN_SIZE 0x1000
#define COMMON_LEN 0x38
#define NOTIFY_MULT 4

/* Offsets inside a virtio vendor capability. */
#define CAPF_LEN 2
#define CAPF_TYPE 3
#define CAPF_BAR 4
#define CAPF_OFFSET 8
#define CAPF_LENGTH 12
#define CAPF_EXTRA 16 /* notify_off_multiplier or pci_cfg_data */
#define CAP_SIZE 16
#define CAP_SIZE_EXTRA 20

#define STATUS_DRIVER_BITS                                                              \
	(VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK | \
	 VIRTIO_STATUS_DRIVER_OK | VIRTIO_STATUS_FAILED)
#define STATUS_ALL_BITS (STATUS_DRIVER_BITS | VIRTIO_STATUS_NEEDS_RESET)

#define ISR_QUEUE 1
#define ISR_CONFIG 2

#define TRANSPORT_FEATURES \
	(1ULL << VIRTIO_F_VERSION_1 | 1ULL << VIRTIO_F_INDIRECT_DESC | 1ULL << VIRTIO_F_EVENT_IDX)

/* The transport's private part around the struct virtio_dev devices see. */
struct virtio_pci {
	struct virtio_dev vd;
	unsigned cfg_cap; /* offset of the PCI configuration access capability */
	uint16_t vq_vector[VIRTIO_MAX_QUEUES]; /* each queue's MSI-X vector */
	struct vq_host vq_host;		       /* what the queues get from us (virtq.h) */
};

static struct virtio_pci *vd_vp(struct virtio_dev *vd)
{
	return container_of(vd, struct virtio_pci, vd);
}

static uint16_t *vq_vector(struct virtio_dev *vd, const struct virtqueue *vq)
{
	return &vd_vp(vd)->vq_vector[vq->index];
}

/*
 * Raising INTx and setting the ISR must be atomic against the ISR read that clears both, or a
 * read between "set ISR" and "assert" would leave the line high with the ISR empty (a stuck,
 * unclaimed interrupt).  One lock for all virtio functions: interrupts are short.
 */
static pthread_mutex_t virtio_irq_lock = PTHREAD_MUTEX_INITIALIZER;

static struct virtio_dev *pd_vd(struct pci_dev *pd)
{
	return pd->priv;
}

static uint8_t vd_status(const struct virtio_dev *vd)
{
	return __atomic_load_n(&vd->status, __ATOMIC_ACQUIRE);
}

static void vd_set_status(struct virtio_dev *vd, uint8_t st)
{
	__atomic_store_n(&vd->status, st, __ATOMIC_RELEASE);
}

bool virtio_driver_ok(struct virtio_dev *vd)
{
	return vd_status(vd) & VIRTIO_STATUS_DRIVER_OK;
}

bool virtio_has_feature(const struct virtio_dev *vd, unsigned bit)
{
	return bit < 64 && (__atomic_load_n(&vd->guest_features, __ATOMIC_RELAXED) >> bit & 1);
}

static unsigned vd_nvec(const struct virtio_dev *vd)
{
	return vd->nqueues + 1;
}

/* A vector the driver may assign: one of ours, or NO_VECTOR (the spec's answer otherwise). */
static uint16_t vd_vector(const struct virtio_dev *vd, uint32_t v)
{
	return v < vd_nvec(vd) ? (uint16_t)v : VIRTIO_NO_VECTOR;
}

/* ---- interrupts ---- */

static void virtio_intx_raise(struct virtio_dev *vd, uint8_t bit)
{
	pthread_mutex_lock(&virtio_irq_lock);
	__atomic_fetch_or(&vd->isr, bit, __ATOMIC_SEQ_CST);
	pci_irq_assert(vd->pd);
	pthread_mutex_unlock(&virtio_irq_lock);
}

static uint8_t virtio_isr_read_clear(struct virtio_dev *vd)
{
	uint8_t isr;

	pthread_mutex_lock(&virtio_irq_lock);
	isr = __atomic_exchange_n(&vd->isr, 0, __ATOMIC_SEQ_CST);
	pci_irq_deassert(vd->pd);
	pthread_mutex_unlock(&virtio_irq_lock);
	return isr;
}

/*
 * Interrupt the driver for queue @vq now: its MSI-X vector, or ISR bit 0 and INTx when MSI-X
 * is off.  The queue calls this (vq_host.interrupt) when vq_notify decided the driver wants one.
 */
static void virtio_queue_interrupt(void *opaque, struct virtqueue *vq)
{
	struct virtio_dev *vd = opaque;
	uint16_t v = __atomic_load_n(vq_vector(vd, vq), __ATOMIC_RELAXED);

	if (pci_msix_enabled(vd->pd)) {
		/* With MSI-X the ISR is not used for queues (virtio 1.x 4.1.4.5). */
		if (v != VIRTIO_NO_VECTOR)
			pci_msix_notify(vd->pd, v);
		return;
	}
	virtio_intx_raise(vd, ISR_QUEUE);
}

/* A configuration change notification (also used for NEEDS_RESET). */
static void virtio_config_interrupt(struct virtio_dev *vd)
{
	uint16_t v = __atomic_load_n(&vd->msix_config, __ATOMIC_RELAXED);

	if (!virtio_driver_ok(vd))
		return; /* no notifications before DRIVER_OK */
	if (pci_msix_enabled(vd->pd)) {
		__atomic_fetch_or(&vd->isr, ISR_CONFIG, __ATOMIC_SEQ_CST);
		if (v != VIRTIO_NO_VECTOR)
			pci_msix_notify(vd->pd, v);
		return;
	}
	virtio_intx_raise(vd, ISR_CONFIG);
}

void virtio_config_changed(struct virtio_dev *vd)
{
	pthread_mutex_lock(&vd->lock);
	vd->config_generation++;
	pthread_mutex_unlock(&vd->lock);
	virtio_config_interrupt(vd);
}

void virtio_set_needs_reset(struct virtio_dev *vd, const char *why)
{
	bool first;

	pthread_mutex_lock(&vd->lock);
	first = !(vd->status & VIRTIO_STATUS_NEEDS_RESET);
	vd_set_status(vd, vd->status | VIRTIO_STATUS_NEEDS_RESET);
	for (unsigned i = 0; i < vd->nqueues; i++)
		vq_break(&vd->vq[i]);
	pthread_mutex_unlock(&vd->lock);
	if (!first)
		return; /* one line per reset: a hostile guest cannot flood the log */
	log_warn("%s (%s): device needs reset: %s", vd->pd->dev.id, vd->ops->name, why);
	virtio_config_interrupt(vd);
}

/* ---- queues ---- */

/* What the queues need from us (virtq.h): guest memory, interrupts, the news of a broken ring. */
static void *virtio_vq_gpa(void *opaque, uint64_t gpa, uint64_t len)
{
	struct virtio_dev *vd = opaque;

	return vm_gpa(vd->vm, gpa, len);
}

static void virtio_vq_broken(void *opaque, struct virtqueue *vq, const char *why)
{
	virtio_set_needs_reset(opaque, why);
}

/* The features a queue follows, from what the driver accepted. */
static unsigned vq_features(const struct virtio_dev *vd)
{
	return (virtio_has_feature(vd, VIRTIO_F_INDIRECT_DESC) ? VQ_F_INDIRECT : 0) |
	       (virtio_has_feature(vd, VIRTIO_F_EVENT_IDX) ? VQ_F_EVENT_IDX : 0);
}

static void vq_clear(struct virtio_dev *vd, struct virtqueue *vq)
{
	vq_reset(vq);
	__atomic_store_n(vq_vector(vd, vq), VIRTIO_NO_VECTOR, __ATOMIC_RELAXED);
}

/* The driver wrote 1 to queue_enable.  vd->lock held; returns what is wrong or NULL. */
static const char *vq_enable_now(struct virtio_dev *vd, struct virtqueue *vq)
{
	const char *why = vq_enable(vq);

	/* A queue enabled after DRIVER_OK is served at once, like the others. */
	if (!why && (vd->status & VIRTIO_STATUS_DRIVER_OK))
		vq_start(vq, vq_features(vd));
	return why;
}

/* DRIVER_OK: every enabled queue is served from now on.  vd->lock held. */
static void vq_start_all(struct virtio_dev *vd)
{
	for (unsigned i = 0; i < vd->nqueues; i++)
		if (__atomic_load_n(&vd->vq[i].enabled, __ATOMIC_ACQUIRE))
			vq_start(&vd->vq[i], vq_features(vd));
}

/* ---- common configuration ---- */

static void virtio_reset(struct virtio_dev *vd)
{
	pthread_mutex_lock(&vd->lock);
	vd_set_status(vd, 0);
	__atomic_store_n(&vd->guest_features, 0, __ATOMIC_RELAXED);
	vd->dfselect = vd->gfselect = 0;
	vd->queue_select = 0;
	__atomic_store_n(&vd->msix_config, VIRTIO_NO_VECTOR, __ATOMIC_RELAXED);
	for (unsigned i = 0; i < vd->nqueues; i++)
		vq_clear(vd, &vd->vq[i]);
	pthread_mutex_unlock(&vd->lock);
	virtio_isr_read_clear(vd);
	/* Queues are off first, so a worker finishing late pushes nowhere. */
	if (vd->ops->reset)
		vd->ops->reset(vd);
}

static bool features_ok(const struct virtio_dev *vd)
{
	uint64_t g = vd->guest_features;

	return !(g & ~vd->host_features) && (g & (1ULL << VIRTIO_F_VERSION_1));
}

/*
 * A write of @v to device_status (not 0, which resets).  The driver may only add bits, in
 * the order ACKNOWLEDGE, DRIVER, FEATURES_OK, DRIVER_OK (FAILED at any time); a bit whose
 * predecessor is missing is not kept, FEATURES_OK is not kept when the features the driver
 * accepted are not acceptable, and after FAILED only a reset helps.  Returns true when
 * DRIVER_OK was just set.  vd->lock held.
 */
static bool status_write(struct virtio_dev *vd, uint8_t v)
{
	uint8_t old = vd->status, st = old, add = v & ~old & STATUS_DRIVER_BITS;

	if (old & VIRTIO_STATUS_FAILED)
		return false;
	if (add & VIRTIO_STATUS_FAILED)
		st |= VIRTIO_STATUS_FAILED;
	if (add & VIRTIO_STATUS_ACKNOWLEDGE)
		st |= VIRTIO_STATUS_ACKNOWLEDGE;
	if ((add & VIRTIO_STATUS_DRIVER) && (st & VIRTIO_STATUS_ACKNOWLEDGE))
		st |= VIRTIO_STATUS_DRIVER;
	if ((add & VIRTIO_STATUS_FEATURES_OK) && (st & VIRTIO_STATUS_DRIVER) && features_ok(vd))
		st |= VIRTIO_STATUS_FEATURES_OK;
	if ((add & VIRTIO_STATUS_DRIVER_OK) && (st & VIRTIO_STATUS_FEATURES_OK))
		st |= VIRTIO_STATUS_DRIVER_OK;
	vd_set_status(vd, st);
	if ((st & ~old) & VIRTIO_STATUS_DRIVER_OK)
		vq_start_all(vd);
	return (st & ~old) & VIRTIO_STATUS_DRIVER_OK;
}

static struct virtqueue *selected_vq(struct virtio_dev *vd)
{
	return vd->queue_select < vd->nqueues ? &vd->vq[vd->queue_select] : NULL;
}

static uint32_t half(uint64_t v, unsigned sel)
{
	return sel == 0 ? (uint32_t)v : sel == 1 ? (uint32_t)(v >> 32) : 0;
}

static void set_half(uint64_t *v, unsigned sel, uint32_t x)
{
	if (sel == 0)
		*v = (*v & ~0xFFFFFFFFULL) | x;
	else if (sel == 1)
		*v = (*v & 0xFFFFFFFFULL) | (uint64_t)x << 32;
}

/* The natural size of the register at @off, or 0 if no register starts there. */
static unsigned cc_size(unsigned off)
{
	switch (off) {
	case CC_STATUS:
	case CC_CFGGEN:
		return 1;
	case CC_MSIX:
	case CC_NUMQ:
	case CC_QSELECT:
	case CC_QSIZE:
	case CC_QMSIX:
	case CC_QENABLE:
	case CC_QNOFF:
		return 2;
	case CC_DFSELECT:
	case CC_DF:
	case CC_GFSELECT:
	case CC_GF:
		return 4;
	}
	/* The ring addresses: 64 bits, also written as two 32-bit halves. */
	if (off >= CC_QDESC && off < COMMON_LEN && !(off & 3))
		return 4;
	return 0;
}

static uint32_t vq_reg_read(struct virtio_dev *vd, struct virtqueue *vq, unsigned off)
{
	switch (off) {
	case CC_QSIZE:
		return vq->size;
	case CC_QMSIX:
		return *vq_vector(vd, vq);
	case CC_QENABLE:
		return vq->enabled;
	case CC_QNOFF:
		return vq->index;
	case CC_QDESC:
	case CC_QDESC + 4:
		return half(vq->desc_gpa, (off - CC_QDESC) / 4);
	case CC_QAVAIL:
	case CC_QAVAIL + 4:
		return half(vq->avail_gpa, (off - CC_QAVAIL) / 4);
	case CC_QUSED:
	case CC_QUSED + 4:
		return half(vq->used_gpa, (off - CC_QUSED) / 4);
	}
	return 0;
}

/* vd->lock held. */
static uint32_t cc_read(struct virtio_dev *vd, unsigned off)
{
	struct virtqueue *vq;
	uint32_t v = 0;

	switch (off) {
	case CC_DFSELECT:
		return vd->dfselect;
	case CC_DF:
		return half(vd->host_features, vd->dfselect);
	case CC_GFSELECT:
		return vd->gfselect;
	case CC_GF:
		return half(vd->guest_features, vd->gfselect);
	case CC_MSIX:
		return vd->msix_config;
	case CC_NUMQ:
		return vd->nqueues;
	case CC_STATUS:
		return vd->status;
	case CC_CFGGEN:
		return vd->config_generation;
	case CC_QSELECT:
		return vd->queue_select;
	}
	vq = selected_vq(vd);
	if (vq) {
		pthread_mutex_lock(&vq->lock);
		v = vq_reg_read(vd, vq, off);
		pthread_mutex_unlock(&vq->lock);
	}
	return v;
}

/*
 * A write to a queue register.  The ring layout is frozen while the queue is enabled (the
 * host pointers were computed from it); 0 to queue_enable is not allowed (the driver resets
 * the device instead).  Returns what is wrong with an enable, or NULL.  vd->lock held.
 */
static const char *vq_reg_write(struct virtio_dev *vd, struct virtqueue *vq, unsigned off,
				uint32_t v)
{
	const char *why = NULL;

	pthread_mutex_lock(&vq->lock);
	if (off == CC_QMSIX) {
		__atomic_store_n(vq_vector(vd, vq), vd_vector(vd, v), __ATOMIC_RELAXED);
		pthread_mutex_unlock(&vq->lock);
		return NULL;
	}
	if (vq->enabled) {
		pthread_mutex_unlock(&vq->lock);
		return NULL;
	}
	switch (off) {
	case CC_QSIZE:
		if (v && v <= vq->max_size && !(v & (v - 1)))
			vq->size = (uint16_t)v;
		break;
	case CC_QENABLE:
		if (v == 1) {
			pthread_mutex_unlock(&vq->lock);
			return vq_enable_now(vd, vq);
		}
		break;
	case CC_QDESC:
	case CC_QDESC + 4:
		set_half(&vq->desc_gpa, (off - CC_QDESC) / 4, v);
		break;
	case CC_QAVAIL:
	case CC_QAVAIL + 4:
		set_half(&vq->avail_gpa, (off - CC_QAVAIL) / 4, v);
		break;
	case CC_QUSED:
	case CC_QUSED + 4:
		set_half(&vq->used_gpa, (off - CC_QUSED) / 4, v);
		break;
	}
	pthread_mutex_unlock(&vq->lock);
	return why;
}

/* What a common-configuration write asks the caller to do once vd->lock is dropped. */
struct cc_effect {
	bool reset, driver_ok;
	const char *needs_reset;
};

/* vd->lock held. */
static void cc_write(struct virtio_dev *vd, unsigned off, uint32_t v, struct cc_effect *fx)
{
	struct virtqueue *vq;
	uint64_t g;

	switch (off) {
	case CC_DFSELECT:
		vd->dfselect = v;
		return;
	case CC_GFSELECT:
		vd->gfselect = v;
		return;
	case CC_GF:
		/* Features are fixed once FEATURES_OK was accepted. */
		if (vd->status & (VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_FAILED))
			return;
		g = vd->guest_features;
		set_half(&g, vd->gfselect, v);
		__atomic_store_n(&vd->guest_features, g, __ATOMIC_RELAXED);
		return;
	case CC_MSIX:
		__atomic_store_n(&vd->msix_config, vd_vector(vd, v), __ATOMIC_RELAXED);
		return;
	case CC_STATUS:
		if (!(v & 0xFF))
			fx->reset = true;
		else
			fx->driver_ok = status_write(vd, (uint8_t)v);
		return;
	case CC_QSELECT:
		vd->queue_select = (uint16_t)v;
		return;
	case CC_DF:
	case CC_NUMQ:
	case CC_CFGGEN:
	case CC_QNOFF:
		return; /* read-only */
	}
	vq = selected_vq(vd);
	if (vq)
		fx->needs_reset = vq_reg_write(vd, vq, off, v);
}

static void virtio_driver_ok_now(struct virtio_dev *vd)
{
	if (vd->ops->driver_ok) {
		vd->ops->driver_ok(vd);
		return;
	}
	/* Kicks sent before DRIVER_OK were not served: look at every queue now. */
	for (unsigned i = 0; i < vd->nqueues; i++)
		if (vq_ready(&vd->vq[i]) && vd->ops->queue_notify)
			vd->ops->queue_notify(vd, &vd->vq[i]);
}

/*
 * The common configuration window.  The driver must use each field's natural width (64-bit
 * ring addresses also as 32-bit halves, virtio 1.x 4.1.3.1); other accesses read as 0 and
 * writes to them are dropped.
 */
static void common_io(struct virtio_dev *vd, unsigned off, void *data, unsigned size, bool is_write)
{
	struct cc_effect fx = { .reset = false };
	unsigned n = cc_size(off);
	unsigned parts = 1;

	if (n == 4 && size == 8 && off >= CC_QDESC && !(off & 7))
		parts = 2; /* a whole 64-bit ring address */
	else if (!n || size != n) {
		if (!is_write)
			memset(data, 0, size);
		return;
	}
	pthread_mutex_lock(&vd->lock);
	for (unsigned i = 0; i < parts; i++) {
		uint8_t *p = (uint8_t *)data + 4 * i;
		unsigned sz = parts == 2 ? 4 : size;

		if (is_write)
			cc_write(vd, off + 4 * i, (uint32_t)io_get(p, sz), &fx);
		else
			io_put(p, sz, cc_read(vd, off + 4 * i));
	}
	pthread_mutex_unlock(&vd->lock);
	if (fx.reset)
		virtio_reset(vd);
	if (fx.needs_reset)
		virtio_set_needs_reset(vd, fx.needs_reset);
	if (fx.driver_ok)
		virtio_driver_ok_now(vd);
}

/* ---- the other windows ---- */

static void device_io(struct virtio_dev *vd, unsigned off, void *data, unsigned size, bool is_write)
{
	bool ok = off < vd->config_len && size <= vd->config_len - off;

	if (!ok || (is_write ? !vd->ops->cfg_write : !vd->ops->cfg_read)) {
		if (!is_write)
			memset(data, 0, size);
		return;
	}
	pthread_mutex_lock(&vd->lock);
	if (is_write)
		vd->ops->cfg_write(vd, off, data, size);
	else
		vd->ops->cfg_read(vd, off, data, size);
	pthread_mutex_unlock(&vd->lock);
}

static void notify_io(struct virtio_dev *vd, unsigned off, bool is_write)
{
	unsigned q = off / NOTIFY_MULT;
	struct virtqueue *vq;

	if (!is_write || q >= vd->nqueues)
		return;
	vq = &vd->vq[q];
	/* A kick for a queue that is off, broken or not yet live is dropped. */
	if (vq_ready(vq) && vd->ops->queue_notify)
		vd->ops->queue_notify(vd, vq);
}

void virtio_pci_bar_io(struct pci_dev *pd, int bar, uint64_t off, void *data, unsigned size,
		       bool is_write)
{
	struct virtio_dev *vd = pd_vd(pd);
	unsigned o = (unsigned)(off % WIN_SIZE);

	if (!is_write)
		memset(data, 0, size);
	if (bar != VIRTIO_BAR || off >= VIRTIO_BAR_SIZE ||
	    (size != 1 && size != 2 && size != 4 && size != 8))
		return;
	switch (off - o) {
	case WIN_COMMON:
		common_io(vd, o, data, size, is_write);
		break;
	case WIN_ISR:
		if (!is_write && o == 0)
			io_put(data, size, virtio_isr_read_clear(vd));
		break;
	case WIN_DEVICE:
		device_io(vd, o, data, size, is_write);
		break;
	case WIN_NOTIFY:
		notify_io(vd, o, is_write);
		break;
	}
}

/* ---- the PCI configuration access capability ---- */

static bool in_cfg_data(const struct virtio_pci *vp, unsigned off, unsigned size)
{
	unsigned d = vp->cfg_cap + CAPF_EXTRA;

	return vp->cfg_cap && off < d + 4 && d < off + size;
}

/* The BAR access the capability's bar/offset/length fields describe, or false if invalid. */
static bool cfg_cap_target(struct pci_dev *pd, unsigned c, uint32_t *off, uint32_t *len)
{
	uint8_t bar = pci_get_cfg8(pd, c + CAPF_BAR);

	*off = pci_get_cfg32(pd, c + CAPF_OFFSET);
	*len = pci_get_cfg32(pd, c + CAPF_LENGTH);
	return bar == VIRTIO_BAR && (*len == 1 || *len == 2 || *len == 4) && !(*off % *len) &&
	       *off < VIRTIO_BAR_SIZE;
}

bool virtio_pci_cfg_read(struct pci_dev *pd, unsigned off, unsigned size, uint32_t *val)
{
	struct virtio_pci *vp = pd->priv;
	unsigned d = vp->cfg_cap + CAPF_EXTRA;
	uint32_t boff, len;
	uint8_t buf[4] = { 0 };

	if (!in_cfg_data(vp, off, size))
		return false;
	if (cfg_cap_target(pd, vp->cfg_cap, &boff, &len)) {
		virtio_pci_bar_io(pd, VIRTIO_BAR, boff, buf, len, false);
		for (unsigned i = 0; i < len; i++)
			pci_set_cfg8(pd, d + i, buf[i]);
	}
	*val = 0;
	for (unsigned i = 0; i < size; i++)
		*val |= (uint32_t)pci_get_cfg8(pd, off + i) << (8 * i);
	return true;
}

bool virtio_pci_cfg_write(struct pci_dev *pd, unsigned off, unsigned size, uint32_t val)
{
	struct virtio_pci *vp = pd->priv;
	unsigned d = vp->cfg_cap + CAPF_EXTRA;
	uint32_t boff, len;
	uint8_t buf[4];

	if (!in_cfg_data(vp, off, size))
		return false;
	/* Accesses are naturally aligned, so this one lies within pci_cfg_data. */
	for (unsigned i = 0; i < size; i++)
		pci_set_cfg8(pd, off + i, (uint8_t)(val >> (8 * i)));
	if (cfg_cap_target(pd, vp->cfg_cap, &boff, &len)) {
		for (unsigned i = 0; i < 4; i++)
			buf[i] = pci_get_cfg8(pd, d + i);
		virtio_pci_bar_io(pd, VIRTIO_BAR, boff, buf, len, true);
	}
	return true;
}

/* ---- setup ---- */

static int virtio_cap(struct pci_dev *pd, uint8_t type, uint32_t off, uint32_t len, unsigned caplen)
{
	int c = pci_cap_add(pd, PCIY_VENDOR, caplen);

	if (c < 0)
		return c;
	pci_set_cfg8(pd, c + CAPF_LEN, (uint8_t)caplen);
	pci_set_cfg8(pd, c + CAPF_TYPE, type);
	pci_set_cfg8(pd, c + CAPF_BAR, type == CAP_PCI_CFG ? 0 : VIRTIO_BAR);
	pci_set_cfg32(pd, c + CAPF_OFFSET, off);
	pci_set_cfg32(pd, c + CAPF_LENGTH, len);
	return c;
}

static int virtio_pci_caps(struct virtio_pci *vp)
{
	struct virtio_dev *vd = &vp->vd;
	struct pci_dev *pd = vd->pd;
	int c;

	if ((c = virtio_cap(pd, CAP_COMMON_CFG, WIN_COMMON, COMMON_LEN, CAP_SIZE)) < 0 ||
	    (c = virtio_cap(pd, CAP_ISR_CFG, WIN_ISR, 1, CAP_SIZE)) < 0 ||
	    (vd->config_len &&
	     (c = virtio_cap(pd, CAP_DEVICE_CFG, WIN_DEVICE, vd->config_len, CAP_SIZE)) < 0))
		return c;
	c = virtio_cap(pd, CAP_NOTIFY_CFG, WIN_NOTIFY, NOTIFY_MULT * vd->nqueues, CAP_SIZE_EXTRA);
	if (c < 0)
		return c;
	pci_set_cfg32(pd, c + CAPF_EXTRA, NOTIFY_MULT);
	c = virtio_cap(pd, CAP_PCI_CFG, 0, 0, CAP_SIZE_EXTRA);
	if (c < 0)
		return c;
	vp->cfg_cap = (unsigned)c;
	pci_set_wmask(pd, c + CAPF_BAR, 1, 0xFF);
	pci_set_wmask(pd, c + CAPF_OFFSET, 4, 0xFFFFFFFF);
	pci_set_wmask(pd, c + CAPF_LENGTH, 4, 0xFFFFFFFF);
	pci_set_wmask(pd, c + CAPF_EXTRA, 4, 0xFFFFFFFF);
	return 0;
}

static int virtio_pci_setup(struct virtio_pci *vp, char *err, size_t errlen)
{
	struct virtio_dev *vd = &vp->vd;
	struct pci_dev *pd = vd->pd;
	const struct virtio_dev_ops *ops = vd->ops;
	uint16_t devid = (uint16_t)(VIRTIO_DEVICE_BASE + ops->device_id);
	int ret;

	pci_set_ids(pd, VIRTIO_VENDOR, devid, ops->pci_class, ops->pci_subclass, 0,
		    VIRTIO_REVISION);
	/* Non-transitional devices: a subsystem id of 0x40 or more keeps legacy drivers off. */
	pci_set_cfg16(pd, PCIR_SUBVEND, VIRTIO_VENDOR);
	pci_set_cfg16(pd, PCIR_SUBDEV, devid);
	ret = pci_msix_init(pd, vd_nvec(vd), VIRTIO_MSIX_BAR);
	if (!ret)
		ret = pci_bar_declare(pd, VIRTIO_BAR, PCI_BAR_MEM64, VIRTIO_BAR_SIZE, false);
	if (!ret)
		ret = virtio_pci_caps(vp);
	if (!ret)
		ret = pci_intx_init(pd, 1);
	if (ret)
		snprintf(err, errlen, "%s: PCI setup: %s", ops->name, strerror(-ret));
	return ret;
}

/* What a device's init must have filled in. */
static int virtio_check_init(struct virtio_dev *vd, char *err, size_t errlen)
{
	if (!vd->nqueues || vd->nqueues > VIRTIO_MAX_QUEUES) {
		snprintf(err, errlen, "%s: %u queues (1-%u supported)", vd->ops->name, vd->nqueues,
			 VIRTIO_MAX_QUEUES);
		return -EINVAL;
	}
	for (unsigned i = 0; i < vd->nqueues; i++) {
		uint16_t m = vd->queue_max[i];

		if (!m || m > VIRTIO_QUEUE_MAX || (m & (m - 1))) {
			snprintf(err, errlen, "%s: queue %u size %u is not a power of two <= %u",
				 vd->ops->name, i, m, VIRTIO_QUEUE_MAX);
			return -EINVAL;
		}
	}
	if (vd->config_len > WIN_SIZE) {
		snprintf(err, errlen, "%s: device configuration of %u bytes is too large",
			 vd->ops->name, vd->config_len);
		return -EINVAL;
	}
	return 0;
}

static void virtio_free(struct virtio_pci *vp)
{
	for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++)
		vq_destroy(&vp->vd.vq[i]);
	pthread_mutex_destroy(&vp->vd.lock);
	free(vp);
}

int virtio_pci_init(struct vm *vm, struct pci_dev *pd, const struct virtio_dev_ops *ops, char *err,
		    size_t errlen)
{
	struct virtio_pci *vp = calloc(1, sizeof(*vp));
	struct virtio_dev *vd;
	int ret;

	if (!vp) {
		snprintf(err, errlen, "%s: out of memory", ops->name);
		return -ENOMEM;
	}
	vd = &vp->vd;
	vd->vm = vm;
	vd->pd = pd;
	vd->ops = ops;
	pthread_mutex_init(&vd->lock, NULL);
	vp->vq_host = (struct vq_host){ .gpa = virtio_vq_gpa,
					.interrupt = virtio_queue_interrupt,
					.broken = virtio_vq_broken,
					.opaque = vd };
	ret = ops->init ? ops->init(vd, err, errlen) : 0;
	if (ret) {
		virtio_free(vp);
		return ret;
	}
	vd->host_features |= TRANSPORT_FEATURES;
	vd->msix_config = VIRTIO_NO_VECTOR;
	pd->priv = vd;
	ret = virtio_check_init(vd, err, errlen);
	for (unsigned i = 0; !ret && i < VIRTIO_MAX_QUEUES; i++) {
		ret = vq_init(&vd->vq[i], i, i < vd->nqueues ? vd->queue_max[i] : 0, &vp->vq_host);
		if (ret)
			snprintf(err, errlen, "%s: queue %u: %s", ops->name, i, strerror(-ret));
		else
			vp->vq_vector[i] = VIRTIO_NO_VECTOR;
	}
	if (!ret)
		ret = virtio_pci_setup(vp, err, errlen);
	if (ret) {
		if (ops->destroy)
			ops->destroy(vd);
		pd->priv = NULL;
		virtio_free(vp);
	}
	return ret;
}

void virtio_pci_destroy(struct pci_dev *pd)
{
	struct virtio_dev *vd = pd_vd(pd);

	if (!vd)
		return;
	if (vd->ops->destroy)
		vd->ops->destroy(vd);
	pd->priv = NULL;
	virtio_free(container_of(vd, struct virtio_pci, vd));
}

/* ---- snapshot ---- */

int virtio_pci_pause(struct pci_dev *pd)
{
	struct virtio_dev *vd = pd_vd(pd);

	return vd->ops->pause ? vd->ops->pause(vd) : 0;
}

/*
 * Recompute the rings' host pointers from the guest addresses: a restore may have mapped
 * guest RAM afresh.  A ring that is no longer inside RAM (cannot happen after a validated
 * load) breaks the device rather than the host.
 */
static void virtio_remap(struct virtio_dev *vd)
{
	const char *why = NULL;

	pthread_mutex_lock(&vd->lock);
	for (unsigned i = 0; i < vd->nqueues; i++) {
		const char *w = vq_remap(&vd->vq[i]);

		if (w)
			why = w;
	}
	pthread_mutex_unlock(&vd->lock);
	if (why)
		virtio_set_needs_reset(vd, why);
}

int virtio_pci_resume(struct pci_dev *pd)
{
	struct virtio_dev *vd = pd_vd(pd);

	virtio_remap(vd);
	return vd->ops->resume ? vd->ops->resume(vd) : 0;
}

/* A queue as saved: its own state (virtq.h) and the transport's vector for it. */
struct vq_state {
	struct vq_saved q;
	uint16_t msix_vector;
};

/* The transport's registers and queues, as saved: staging for load, a copy for save. */
struct virtio_state {
	uint64_t guest_features;
	uint32_t dfselect, gfselect;
	uint16_t queue_select, msix_config;
	uint8_t status, isr, config_generation;
	struct vq_state vq[VIRTIO_MAX_QUEUES];
};

/* One function for both directions: the stream layout is written once. */
static void virtio_state_io(struct sstream *s, struct virtio_state *st, unsigned nq)
{
	ss_u64(s, &st->guest_features);
	ss_u32(s, &st->dfselect);
	ss_u32(s, &st->gfselect);
	ss_u16(s, &st->queue_select);
	ss_u16(s, &st->msix_config);
	ss_u8(s, &st->status);
	ss_u8(s, &st->isr);
	ss_u8(s, &st->config_generation);
	ss_expect_u32(s, nq, "virtio queues");
	for (unsigned i = 0; i < nq && !ss_error(s); i++) {
		struct vq_saved *q = &st->vq[i].q;

		ss_u16(s, &q->size);
		ss_bool(s, &q->enabled);
		ss_u16(s, &st->vq[i].msix_vector);
		ss_u64(s, &q->desc_gpa);
		ss_u64(s, &q->avail_gpa);
		ss_u64(s, &q->used_gpa);
		ss_u16(s, &q->last_avail);
		ss_u16(s, &q->used_idx);
		ss_u16(s, &q->signalled_used);
		ss_bool(s, &q->signalled_valid);
		ss_bool(s, &q->broken);
	}
}

static void virtio_state_get(struct virtio_dev *vd, struct virtio_state *st)
{
	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&vd->lock);
	st->guest_features = vd->guest_features;
	st->dfselect = vd->dfselect;
	st->gfselect = vd->gfselect;
	st->queue_select = vd->queue_select;
	st->msix_config = vd->msix_config;
	st->status = vd->status;
	st->isr = __atomic_load_n(&vd->isr, __ATOMIC_SEQ_CST);
	st->config_generation = vd->config_generation;
	for (unsigned i = 0; i < vd->nqueues; i++) {
		vq_save(&vd->vq[i], &st->vq[i].q);
		st->vq[i].msix_vector = *vq_vector(vd, &vd->vq[i]);
	}
	pthread_mutex_unlock(&vd->lock);
}

/*
 * Chains taken but not returned are state the transport cannot carry: nothing would complete
 * them after a restore and the guest would wait forever.  A device's pause completes them.
 * Those of a broken queue are abandoned (vq_push drops them): the driver must reset the
 * device, which forgets them, so such a queue is saved and loaded as it is.
 */
static void virtio_check_drained(struct virtio_dev *vd, struct sstream *s,
				 const struct virtio_state *st, int err)
{
	for (unsigned i = 0; i < vd->nqueues; i++) {
		const struct vq_saved *q = &st->vq[i].q;

		if (vq_in_flight(q))
			ss_fail(s, err,
				"%s: queue %u has %u requests in flight (taken %u, "
				"returned %u); they must be completed before a snapshot",
				vd->ops->name, i, (uint16_t)(q->last_avail - q->used_idx),
				q->last_avail, q->used_idx);
	}
}

int virtio_pci_save(struct pci_dev *pd, struct sstream *s)
{
	struct virtio_dev *vd = pd_vd(pd);
	struct virtio_state st;
	struct sstream ds;
	uint32_t ver = vd->ops->version, len;

	virtio_state_get(vd, &st);
	virtio_check_drained(vd, s, &st, -EBUSY);
	virtio_state_io(s, &st, vd->nqueues);
	if (ss_error(s))
		return ss_error(s);
	/* The device's state as a nested block: its version, its length, its bytes. */
	ss_init_save(&ds);
	if (vd->ops->save) {
		int ret = vd->ops->save(vd, &ds);

		if (ret || ss_error(&ds)) {
			ss_fail(s, ret ? ret : ss_error(&ds), "%s: %s", vd->ops->name,
				ds.msg[0] ? ds.msg : strerror(-ret));
			ss_free(&ds);
			return ss_error(s);
		}
	}
	len = (uint32_t)ds.len;
	ss_u32(s, &ver);
	ss_u32(s, &len);
	if (len)
		ss_bytes(s, ds.buf, len);
	ss_free(&ds);
	return ss_error(s);
}

static void vq_state_check(struct virtio_dev *vd, struct sstream *s, unsigned i,
			   const struct vq_state *st)
{
	const char *id = vd->ops->name, *why;
	const struct vq_saved *q = &st->q;

	if (!q->size || q->size > vd->queue_max[i] || (q->size & (q->size - 1)))
		ss_fail(s, -EINVAL, "%s: queue %u size %u is not a power of two <= %u", id, i,
			q->size, vd->queue_max[i]);
	if (st->msix_vector != vd_vector(vd, st->msix_vector))
		ss_fail(s, -EINVAL, "%s: queue %u MSI-X vector %u is out of range", id, i,
			st->msix_vector);
	why = vq_saved_check(&vd_vp(vd)->vq_host, vd->queue_max[i], q);
	if (why && !ss_error(s))
		ss_fail(s, -EINVAL,
			"%s: queue %u: %s (desc 0x%" PRIx64 ", driver 0x%" PRIx64
			", device 0x%" PRIx64 ")",
			id, i, why, q->desc_gpa, q->avail_gpa, q->used_gpa);
}

/* Is @st a state this device can be in?  Fails @s with the first reason it is not. */
static void virtio_state_check(struct virtio_dev *vd, struct sstream *s,
			       const struct virtio_state *st)
{
	const char *id = vd->ops->name;
	uint8_t x = st->status;

	if ((x & ~STATUS_ALL_BITS) ||
	    ((x & VIRTIO_STATUS_DRIVER) && !(x & VIRTIO_STATUS_ACKNOWLEDGE)) ||
	    ((x & VIRTIO_STATUS_FEATURES_OK) && !(x & VIRTIO_STATUS_DRIVER)) ||
	    ((x & VIRTIO_STATUS_DRIVER_OK) && !(x & VIRTIO_STATUS_FEATURES_OK)))
		ss_fail(s, -EINVAL, "%s: device status 0x%02x is not a reachable state", id, x);
	if (st->guest_features & ~vd->host_features)
		ss_fail(s, -EINVAL,
			"%s: the driver accepted features 0x%" PRIx64 " the device does "
			"not offer (0x%" PRIx64 "); was it configured differently?",
			id, st->guest_features, vd->host_features);
	if ((x & VIRTIO_STATUS_FEATURES_OK) && !(st->guest_features & (1ULL << VIRTIO_F_VERSION_1)))
		ss_fail(s, -EINVAL, "%s: features accepted without VERSION_1", id);
	if (st->msix_config != vd_vector(vd, st->msix_config))
		ss_fail(s, -EINVAL, "%s: configuration MSI-X vector %u is out of range", id,
			st->msix_config);
	if (st->isr & ~(ISR_QUEUE | ISR_CONFIG))
		ss_fail(s, -EINVAL, "%s: ISR 0x%02x has reserved bits set", id, st->isr);
	for (unsigned i = 0; i < vd->nqueues && !ss_error(s); i++)
		vq_state_check(vd, s, i, &st->vq[i]);
	virtio_check_drained(vd, s, st, -EINVAL);
}

static void virtio_state_commit(struct virtio_dev *vd, const struct virtio_state *st)
{
	pthread_mutex_lock(&vd->lock);
	__atomic_store_n(&vd->guest_features, st->guest_features, __ATOMIC_RELAXED);
	vd->dfselect = st->dfselect;
	vd->gfselect = st->gfselect;
	vd->queue_select = st->queue_select;
	__atomic_store_n(&vd->msix_config, st->msix_config, __ATOMIC_RELAXED);
	vd_set_status(vd, st->status);
	/* The INTx line itself is the PCI layer's state, restored by pci.c. */
	__atomic_store_n(&vd->isr, st->isr, __ATOMIC_SEQ_CST);
	vd->config_generation = st->config_generation;
	for (unsigned i = 0; i < vd->nqueues; i++) {
		vq_load(&vd->vq[i], &st->vq[i].q);
		__atomic_store_n(vq_vector(vd, &vd->vq[i]), st->vq[i].msix_vector,
				 __ATOMIC_RELAXED);
	}
	/* The driver was ready: its queues are served again, with what it negotiated. */
	if (st->status & VIRTIO_STATUS_DRIVER_OK)
		vq_start_all(vd);
	pthread_mutex_unlock(&vd->lock);
	virtio_remap(vd);
}

/* The device's nested block: version check, then its own load on a stream of its bytes. */
static int virtio_dev_block_load(struct virtio_dev *vd, struct sstream *s, uint32_t ver,
				 const uint8_t *buf, uint32_t len)
{
	struct sstream ds;
	int ret;

	if (ver > vd->ops->version)
		return ss_fail(s, -EINVAL,
			       "%s: %s state version %u is newer than this khyve "
			       "supports (%u)",
			       vd->pd->dev.id, vd->ops->name, ver, vd->ops->version);
	if (!vd->ops->load)
		return len ? ss_fail(s, -EINVAL, "%s has no state, the snapshot has %u bytes",
				     vd->ops->name, len)
			   : 0;
	ss_init_load(&ds, buf, len);
	ret = vd->ops->load(vd, &ds, ver);
	if (!ret)
		ret = ss_finish(&ds);
	if (ret)
		ss_fail(s, ret, "%s: %s", vd->ops->name, ds.msg[0] ? ds.msg : strerror(-ret));
	return ss_error(s);
}

/*
 * Load: the transport's part into staging, then the device's block; everything is checked
 * before the device's load runs (it commits itself when it returns 0), and the transport
 * commits last, when nothing can fail any more.  The ring pointers are recomputed here and
 * again at resume.
 */
int virtio_pci_load(struct pci_dev *pd, struct sstream *s, unsigned version)
{
	struct virtio_dev *vd = pd_vd(pd);
	struct virtio_state *st = calloc(1, sizeof(*st));
	uint32_t ver = 0, len = 0;
	uint8_t *buf = NULL;
	int ret;

	if (!st)
		return ss_fail(s, -ENOMEM, "out of memory");
	if (version != VIRTIO_PCI_STATE_VERSION)
		ss_fail(s, -EINVAL, "virtio transport state version %u is not supported", version);
	virtio_state_io(s, st, vd->nqueues);
	ss_u32(s, &ver);
	ss_u32(s, &len);
	ss_check_max(s, len, s->len - s->pos, "virtio device state length");
	if (!ss_error(s) && len) {
		buf = malloc(len);
		if (!buf)
			ss_fail(s, -ENOMEM, "out of memory");
		else
			ss_bytes(s, buf, len);
	}
	ss_finish(s);
	if (!ss_error(s))
		virtio_state_check(vd, s, st);
	if (!ss_error(s))
		virtio_dev_block_load(vd, s, ver, buf, len);
	ret = ss_error(s);
	if (!ret)
		virtio_state_commit(vd, st);
	free(buf);
	free(st);
	return ret;
}
