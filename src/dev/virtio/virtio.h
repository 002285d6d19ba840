/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * virtio 1.x over PCI (modern transport) and split virtqueues.
 *
 * The transport (virtio_pci.c) is one PCI emulation shared by every virtio device: it owns the
 * capabilities (common, notify, ISR and device config windows in BAR 4, MSI-X table in BAR 1),
 * feature negotiation, device status, queue setup, interrupts (MSI-X, else INTx), and the
 * transport's and queues' snapshot state.  A device (virtio_blk.c, virtio_net.c, virtio_rnd.c)
 * is a struct virtio_dev_ops: its config space, what to do when a queue is kicked, reset,
 * pause/resume and its own snapshot state.
 *
 * The guest is hostile.  Every descriptor index, length, flag, address and ring index is
 * checked (vq_pop, dev/virtio/virtq.h, which knows nothing of PCI: the transport hands each
 * queue guest memory access, its interrupt and its needs-reset report as a struct vq_host); a
 * malformed ring puts the device in NEEDS_RESET (virtio_set_needs_reset:
 * the guest sees DEVICE_NEEDS_RESET and a config interrupt) and the queue stops being served
 * until the driver resets the device.  khyve never reads or writes outside guest RAM, never
 * loops forever on a descriptor cycle and never trusts a length.
 *
 * Threads: queue notifications arrive on vCPU threads (a write to the notify window); a device
 * may hand the work to its own threads.  vq_pop/vq_push/vq_notify take the queue's lock, so a
 * queue may be served from any one thread at a time; the transport's registers are under
 * vd->lock.
 */
#ifndef KHYVE_VIRTIO_H
#define KHYVE_VIRTIO_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "dev/virtio/virtq.h"

struct vm;
struct pci_dev;
struct sstream;
struct virtio_dev;

/* Device ids (virtio 1.x: PCI device id 0x1040 + id). */
#define VIRTIO_ID_NET 1
#define VIRTIO_ID_BLOCK 2
#define VIRTIO_ID_RNG 4

/* Device status bits. */
#define VIRTIO_STATUS_ACKNOWLEDGE 1
#define VIRTIO_STATUS_DRIVER 2
#define VIRTIO_STATUS_DRIVER_OK 4
#define VIRTIO_STATUS_FEATURES_OK 8
#define VIRTIO_STATUS_NEEDS_RESET 64
#define VIRTIO_STATUS_FAILED 128

/* Transport feature bits offered for every device. */
#define VIRTIO_F_INDIRECT_DESC 28
#define VIRTIO_F_EVENT_IDX 29
#define VIRTIO_F_VERSION_1 32
#define VIRTIO_F_ACCESS_PLATFORM 33

#define VIRTIO_MAX_QUEUES 16
#define VIRTIO_QUEUE_MAX VIRTQ_MAX_SIZE /* largest queue size offered */
#define VIRTIO_NO_VECTOR 0xffff

struct virtio_dev_ops {
	const char *name;   /* "virtio-blk": the -s emulation name */
	uint16_t device_id; /* VIRTIO_ID_* */
	uint8_t pci_class, pci_subclass;
	unsigned version; /* state version of save() */
	/*
	 * Set up the device from its PCI options (read with pci_dev_opt(vd->pd, "path") etc.),
	 * fill vd->nqueues, vd->queue_max[], vd->host_features (device bits; the transport adds
	 * VERSION_1, INDIRECT_DESC and EVENT_IDX), vd->config_len, vd->priv.  0 or -errno with
	 * @err.
	 */
	int (*init)(struct virtio_dev *vd, char *err, size_t errlen);
	/* Device config window (@off within it, @size 1/2/4/8).  Under vd->lock. */
	void (*cfg_read)(struct virtio_dev *vd, unsigned off, void *data, unsigned size);
	void (*cfg_write)(struct virtio_dev *vd, unsigned off, const void *data, unsigned size);
	/* The driver kicked queue @vq (vCPU thread, no lock held). */
	void (*queue_notify)(struct virtio_dev *vd, struct virtqueue *vq);
	/* The driver set DRIVER_OK (no lock held): start serving, e.g. fill rx queues. */
	void (*driver_ok)(struct virtio_dev *vd);
	/* The driver reset the device: stop and forget in-flight work (no lock held). */
	void (*reset)(struct virtio_dev *vd);
	/* Snapshot: drain in-flight requests (completions written, interrupts raised). */
	int (*pause)(struct virtio_dev *vd);
	/* After pause or load: restart workers, kick queues that may hold work. */
	int (*resume)(struct virtio_dev *vd);
	/* Device state after the transport's.  load: staging copy, validate, commit. */
	int (*save)(struct virtio_dev *vd, struct sstream *s);
	int (*load)(struct virtio_dev *vd, struct sstream *s, unsigned version);
	void (*destroy)(struct virtio_dev *vd);
};

struct virtio_dev {
	struct vm *vm;
	struct pci_dev *pd;
	const struct virtio_dev_ops *ops;
	void *priv;
	pthread_mutex_t lock; /* the transport registers below */
	uint64_t host_features, guest_features;
	uint32_t dfselect, gfselect;
	uint16_t queue_select;
	uint16_t msix_config;
	uint8_t status;
	uint8_t isr; /* bit 0 queue interrupt, bit 1 config change */
	uint8_t config_generation;
	unsigned config_len;
	unsigned nqueues;
	uint16_t queue_max[VIRTIO_MAX_QUEUES];
	struct virtqueue vq[VIRTIO_MAX_QUEUES];
};

/* Register a device type with the PCI layer (the PCI_EMULATIONS table uses these). */
extern const struct pci_emul pci_emul_virtio_blk;
extern const struct pci_emul pci_emul_virtio_net;
extern const struct pci_emul pci_emul_virtio_rnd;

/* The queues themselves (vq_pop, vq_push, vq_notify, ...): dev/virtio/virtq.h. */

/* Signal a device configuration change (config_generation++, ISR bit 1, interrupt). */
void virtio_config_changed(struct virtio_dev *vd);
/* A malformed request/ring: DEVICE_NEEDS_RESET and a config interrupt; queues stop. */
void virtio_set_needs_reset(struct virtio_dev *vd, const char *why);
/* Has the driver set DRIVER_OK (and not reset since)? */
bool virtio_driver_ok(struct virtio_dev *vd);
bool virtio_has_feature(const struct virtio_dev *vd, unsigned bit);

/*
 * The generic PCI emulation glue: each device file defines its pci_emul with
 * VIRTIO_PCI_EMUL(virtio_blk, "virtio-blk", virtio_blk_ops), which routes every PCI hook to
 * the transport; the transport's save/load carry the device's version and call its hooks.
 */
int virtio_pci_init(struct vm *vm, struct pci_dev *pd, const struct virtio_dev_ops *ops, char *err,
		    size_t errlen);
void virtio_pci_bar_io(struct pci_dev *pd, int bar, uint64_t off, void *data, unsigned size,
		       bool is_write);
int virtio_pci_save(struct pci_dev *pd, struct sstream *s);
int virtio_pci_load(struct pci_dev *pd, struct sstream *s, unsigned version);
int virtio_pci_pause(struct pci_dev *pd);
int virtio_pci_resume(struct pci_dev *pd);
void virtio_pci_destroy(struct pci_dev *pd);
/* The PCI configuration access capability (VIRTIO_PCI_CAP_PCI_CFG): BAR 4 via config space. */
bool virtio_pci_cfg_read(struct pci_dev *pd, unsigned off, unsigned size, uint32_t *val);
bool virtio_pci_cfg_write(struct pci_dev *pd, unsigned off, unsigned size, uint32_t val);

/* Version of the transport's part of a virtio device's snapshot section. */
#define VIRTIO_PCI_STATE_VERSION 1

/* After the ops, the struct pci_optlist entries of the device's options (keys.h). */
#define VIRTIO_PCI_EMUL(sym, emul_name, ops_var, ...)                                             \
	static int sym##_pci_init(struct vm *vm, struct pci_dev *pd, const char *opts, char *err, \
				  size_t errlen)                                                  \
	{                                                                                         \
		return virtio_pci_init(vm, pd, &ops_var, err, errlen);                            \
	}                                                                                         \
	const struct pci_emul pci_emul_##sym = {                                                  \
		.name = emul_name,                                                                \
		.version = VIRTIO_PCI_STATE_VERSION,                                              \
		.options = { __VA_ARGS__ },                                                       \
		.init = sym##_pci_init,                                                           \
		.bar_io = virtio_pci_bar_io,                                                      \
		.cfg_read = virtio_pci_cfg_read,                                                  \
		.cfg_write = virtio_pci_cfg_write,                                                \
		.save = virtio_pci_save,                                                          \
		.load = virtio_pci_load,                                                          \
		.pause = virtio_pci_pause,                                                        \
		.resume = virtio_pci_resume,                                                      \
		.destroy = virtio_pci_destroy,                                                    \
	}

#endif
