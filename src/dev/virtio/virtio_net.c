// SPDX-License-Identifier: BSD-2-Clause
/*
 * virtio-net: an Ethernet interface on a user-mode (slirp) or tap backend (backend/net_backend.h).
 *
 *	-s SLOT,virtio-net[,slirp][,hostfwd=RULE[;RULE..]][,mac=MAC][,mtu=N]
 *	-s SLOT,virtio-net,tap=NAME[,mac=MAC][,mtu=N]	(or bhyve's -s SLOT,virtio-net,tapN)
 *
 * With no backend, slirp.  mac= sets the address (unicast, xx:xx:xx:xx:xx:xx); by default it
 * is derived from the VM name and the slot, so the same VM gets the same address every run;
 * the prefix 52:4b:48 is locally administered (bit 1 of the first byte), so it can clash with
 * no vendor's card.  mtu=N (68..65521) offers VIRTIO_NET_F_MTU.
 *
 * Queues: 0 receive, 1 transmit, 2 control.  Features: MAC, STATUS, MRG_RXBUF, CTRL_VQ,
 * GUEST_ANNOUNCE and MTU (with mtu=); no checksum or segmentation offloads, so every frame
 * is a plain Ethernet frame behind a 12-byte struct virtio_net_hdr_v1 that is all zero except
 * num_buffers (receive only).
 *
 * Transmit runs on the vCPU thread that kicks: each chain's frame (at most 65535 bytes after
 * the header; larger ones are dropped) goes to the backend, which copies or writes it without
 * blocking, and the chain is completed at once.  Receive runs on the backend's thread: a frame
 * goes straight into the guest's receive buffers when there are some; otherwise it waits in a
 * bounded queue (RXQ_MAX_FRAMES / RXQ_MAX_BYTES, beyond that frames are dropped and counted,
 * as a full NIC ring drops them) until the driver adds buffers and kicks the receive queue.
 * The backend thread never waits for the guest.
 *
 * Snapshots: pause stops moving frames, as if the cable were pulled for a moment: frames
 * from the backend wait in the bounded queue (or are dropped when it is full) and are
 * delivered on resume; since every chain is completed before the lock that covers it is
 * released, no chain is in flight once pause returns.  The saved state is the MAC, the status
 * bits and the MTU.  Frames still queued are not saved (lost, as on a real network), and
 * neither is slirp's connection state: TCP connections through slirp break across a restore,
 * as after a network outage, while hostfwd listeners are set up again from the
 * configuration.  After a restore the device announces the guest's address: with
 * GUEST_ANNOUNCE it sets VIRTIO_NET_S_ANNOUNCE and raises a configuration interrupt so the
 * guest sends gratuitous ARPs itself (cleared when the driver acks with
 * VIRTIO_NET_CTRL_ANNOUNCE_ACK); without it the device sends one RARP frame from its MAC to
 * the backend, as QEMU's self-announce does, so switches on a tap bridge learn where the MAC
 * went.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/net_backend.h"
#include "dev/pci/pci.h"
#include "dev/virtio/virtio.h"
#include "sstream.h"
#include "vm.h"

/* Device feature bits (virtio 1.2, 5.1.3). */
#define VIRTIO_NET_F_MTU 3
#define VIRTIO_NET_F_MAC 5
#define VIRTIO_NET_F_MRG_RXBUF 15
#define VIRTIO_NET_F_STATUS 16
#define VIRTIO_NET_F_CTRL_VQ 17
#define VIRTIO_NET_F_GUEST_ANNOUNCE 21

#define VIRTIO_NET_S_LINK_UP 1
#define VIRTIO_NET_S_ANNOUNCE 2

/* Control queue: class, command, then an ack byte the device writes. */
#define VIRTIO_NET_OK 0
#define VIRTIO_NET_ERR 1
#define VIRTIO_NET_CTRL_ANNOUNCE 3
#define VIRTIO_NET_CTRL_ANNOUNCE_ACK 0

/* struct virtio_net_config: byte offsets (little endian). */
#define CFG_MAC 0	   /* u8[6] */
#define CFG_STATUS 6	   /* u16 */
#define CFG_MAX_VQ_PAIRS 8 /* u16, MQ only: 1 */
#define CFG_MTU 10	   /* u16 */
#define CFG_LEN 12

#define NET_HDR_LEN 12	       /* struct virtio_net_hdr_v1 */
#define NET_HDR_NUM_BUFFERS 10 /* u16 within it */

#define RXQ 0
#define TXQ 1
#define CTRLQ 2
#define NET_QUEUE_SIZE 256
#define NET_CTRL_QUEUE_SIZE 64

#define RXQ_MAX_FRAMES 256 /* frames waiting for receive buffers */
#define RXQ_MAX_BYTES (4U << 20)

#define NET_MTU_MIN 68
#define NET_MTU_MAX (NET_MAX_FRAME - 14) /* frame = MTU + Ethernet header */

#define NET_STATE_VERSION 1

struct vnet {
	struct virtio_dev *vd;
	struct net_backend *nb;
	uint8_t mac[6];
	uint16_t mtu;		 /* 0: MTU not offered */
	uint16_t status;	 /* VIRTIO_NET_S_*, under vd->lock */
	bool announce_on_resume; /* set by load */

	/* Receive: the backend thread, the rx kick, pause/resume/reset. */
	pthread_mutex_t rx_lock;
	bool rx_active; /* DRIVER_OK seen, no reset since */
	bool rx_paused;
	struct net_rxq pend; /* frames waiting for receive buffers */
	uint64_t rx_drops;
	struct virtio_chain rx_first, rx_next; /* a frame's first chain holds the header */
	uint16_t rx_heads[VIRTIO_QUEUE_MAX];
	uint32_t rx_lens[VIRTIO_QUEUE_MAX];

	/* Transmit: the tx kick, resume, reset. */
	pthread_mutex_t tx_lock;
	bool tx_paused;
	uint64_t tx_drops;
	struct virtio_chain tx_chain;
	uint8_t tx_buf[NET_MAX_FRAME];

	pthread_mutex_t ctrl_lock;
	struct virtio_chain ctrl_chain;
};

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

/* ---- receive ---- */

/* Pop the next receive chain that can hold a header, completing unusable ones empty. */
static int rx_pop_first(struct vnet *n, struct virtqueue *vq)
{
	bool pushed = false;
	int ret;

	while ((ret = vq_pop(vq, &n->rx_first)) > 0) {
		if (n->rx_first.write_len >= NET_HDR_LEN)
			break;
		/* A buffer smaller than the header is useless: hand it back empty. */
		vq_push(vq, n->rx_first.head, 0);
		pushed = true;
	}
	if (pushed)
		vq_notify(vq);
	return ret;
}

/*
 * Write one frame into receive chains, with MRG_RXBUF over as many chains as it needs.
 * Returns 1 when delivered (chains pushed, not yet notified), 0 when there are not enough
 * buffers yet (nothing consumed), -ENOSPC when the frame can never fit (drop it), -EIO when
 * the ring is broken.  Under rx_lock.
 */
static int rx_put(struct vnet *n, const uint8_t *frame, size_t len)
{
	struct virtqueue *vq = &n->vd->vq[RXQ];
	bool mrg = virtio_has_feature(n->vd, VIRTIO_NET_F_MRG_RXBUF);
	uint8_t hdr[NET_HDR_LEN] = { 0 };
	unsigned nbuf = 0;
	size_t done = 0;
	int ret;

	ret = rx_pop_first(n, vq);
	if (ret <= 0)
		return ret < 0 ? -EIO : 0;
	done = chain_write(&n->rx_first, NET_HDR_LEN, frame, len);
	n->rx_heads[0] = n->rx_first.head;
	n->rx_lens[0] = (uint32_t)(NET_HDR_LEN + done);
	nbuf = 1;
	while (done < len) {
		size_t w;

		if (!mrg || nbuf == vq->size || nbuf == VIRTIO_QUEUE_MAX) {
			/* Without MRG_RXBUF one chain holds a frame; nor can a ring hold more. */
			vq_unpop(vq, nbuf);
			return -ENOSPC;
		}
		ret = vq_pop(vq, &n->rx_next);
		if (ret <= 0) {
			vq_unpop(vq, nbuf);
			return ret < 0 ? -EIO : 0;
		}
		w = chain_write(&n->rx_next, 0, frame + done, len - done);
		n->rx_heads[nbuf] = n->rx_next.head;
		n->rx_lens[nbuf] = (uint32_t)w;
		nbuf++;
		done += w;
	}
	put16(hdr + NET_HDR_NUM_BUFFERS, (uint16_t)nbuf);
	chain_write(&n->rx_first, 0, hdr, sizeof(hdr));
	for (unsigned i = 0; i < nbuf; i++)
		vq_push(vq, n->rx_heads[i], n->rx_lens[i]);
	return 1;
}

/* Deliver queued frames while there are buffers.  Under rx_lock. */
static void rx_flush(struct vnet *n)
{
	bool pushed = false;

	const struct net_frame *f;

	while ((f = net_rxq_peek(&n->pend)) && n->rx_active && !n->rx_paused) {
		int ret = rx_put(n, f->data, f->len);

		if (ret == 0 || ret == -EIO)
			break;
		if (ret > 0)
			pushed = true;
		else
			n->rx_drops++;
		net_rxq_pop(&n->pend);
	}
	if (pushed)
		vq_notify(&n->vd->vq[RXQ]);
}

static void rx_enqueue(struct vnet *n, const void *frame, size_t len)
{
	if (net_rxq_push(&n->pend, frame, len))
		n->rx_drops++;
}

/* A frame from the backend, on its thread. */
static void vnet_backend_rx(void *opaque, const void *frame, size_t len)
{
	struct vnet *n = opaque;
	int ret;

	pthread_mutex_lock(&n->rx_lock);
	if (!n->rx_active || len > NET_MAX_FRAME) {
		/* No driver listening: the frame falls on the floor, as on an unplugged NIC. */
		n->rx_drops++;
	} else if (net_rxq_peek(&n->pend) || n->rx_paused) {
		rx_enqueue(n, frame, len); /* keep the order */
	} else {
		ret = rx_put(n, frame, len);
		if (ret > 0)
			vq_notify(&n->vd->vq[RXQ]);
		else if (ret == 0 || ret == -EIO)
			rx_enqueue(n, frame, len);
		else
			n->rx_drops++;
	}
	pthread_mutex_unlock(&n->rx_lock);
}

static void rx_kick(struct vnet *n)
{
	pthread_mutex_lock(&n->rx_lock);
	rx_flush(n);
	pthread_mutex_unlock(&n->rx_lock);
}

/* ---- transmit ---- */

static void tx_chain(struct vnet *n, struct virtio_chain *c)
{
	size_t len;

	if (c->read_len < NET_HDR_LEN || c->read_len - NET_HDR_LEN > NET_MAX_FRAME) {
		n->tx_drops++;
		return;
	}
	len = (size_t)(c->read_len - NET_HDR_LEN);
	if (chain_read(c, NET_HDR_LEN, n->tx_buf, len) != len ||
	    net_backend_send(n->nb, n->tx_buf, len))
		n->tx_drops++;
}

static void tx_run(struct vnet *n)
{
	struct virtqueue *vq = &n->vd->vq[TXQ];
	bool pushed = false;

	pthread_mutex_lock(&n->tx_lock);
	while (!n->tx_paused && vq_pop(vq, &n->tx_chain) > 0) {
		tx_chain(n, &n->tx_chain);
		vq_push(vq, n->tx_chain.head, 0);
		pushed = true;
	}
	if (pushed)
		vq_notify(vq);
	pthread_mutex_unlock(&n->tx_lock);
}

/* ---- control queue ---- */

static uint8_t ctrl_cmd(struct vnet *n, uint8_t cls, uint8_t cmd)
{
	struct virtio_dev *vd = n->vd;

	/*
	 * Only the announce ack is supported; RX mode, MAC table, VLAN and MQ commands belong
	 * to features this device does not offer, so the spec's answer is ERR.
	 */
	if (cls == VIRTIO_NET_CTRL_ANNOUNCE && cmd == VIRTIO_NET_CTRL_ANNOUNCE_ACK &&
	    virtio_has_feature(vd, VIRTIO_NET_F_GUEST_ANNOUNCE)) {
		pthread_mutex_lock(&vd->lock);
		n->status &= (uint16_t)~VIRTIO_NET_S_ANNOUNCE;
		pthread_mutex_unlock(&vd->lock);
		return VIRTIO_NET_OK;
	}
	return VIRTIO_NET_ERR;
}

static void ctrl_run(struct vnet *n)
{
	struct virtqueue *vq = &n->vd->vq[CTRLQ];
	struct virtio_chain *c = &n->ctrl_chain;
	bool pushed = false;

	pthread_mutex_lock(&n->ctrl_lock);
	while (vq_pop(vq, c) > 0) {
		uint8_t hdr[2], ack;
		uint32_t written = 0;

		/* class and command readable, the ack byte writable; anything else is ignored. */
		if (c->read_len >= sizeof(hdr) && c->write_len >= 1) {
			chain_read(c, 0, hdr, sizeof(hdr));
			ack = ctrl_cmd(n, hdr[0], hdr[1]);
			written = (uint32_t)chain_write(c, 0, &ack, 1);
		}
		vq_push(vq, c->head, written);
		pushed = true;
	}
	if (pushed)
		vq_notify(vq);
	pthread_mutex_unlock(&n->ctrl_lock);
}

/* ---- announce after a restore ---- */

static void vnet_announce(struct vnet *n)
{
	struct virtio_dev *vd = n->vd;

	if (virtio_driver_ok(vd) && virtio_has_feature(vd, VIRTIO_NET_F_GUEST_ANNOUNCE) &&
	    virtio_has_feature(vd, VIRTIO_NET_F_CTRL_VQ)) {
		pthread_mutex_lock(&vd->lock);
		n->status |= VIRTIO_NET_S_ANNOUNCE;
		pthread_mutex_unlock(&vd->lock);
		virtio_config_changed(vd);
	} else {
		/* The device does not know the guest's IP address: a RARP from its MAC. */
		net_backend_announce(n->nb, n->mac, 0);
	}
}

/* ---- virtio_dev_ops ---- */

static void vnet_cfg_read(struct virtio_dev *vd, unsigned off, void *data, unsigned size)
{
	struct vnet *n = vd->priv;
	uint8_t cfg[CFG_LEN];

	memcpy(cfg + CFG_MAC, n->mac, 6);
	put16(cfg + CFG_STATUS, n->status);
	put16(cfg + CFG_MAX_VQ_PAIRS, 1);
	put16(cfg + CFG_MTU, n->mtu);
	memset(data, 0, size);
	if (off < CFG_LEN)
		memcpy(data, cfg + off, size < CFG_LEN - off ? size : CFG_LEN - off);
}

/* The MAC is read-only in virtio 1.x (CTRL_MAC_ADDR is not offered); status is too. */
static void vnet_cfg_write(struct virtio_dev *vd, unsigned off, const void *data, unsigned size)
{
}

static void vnet_queue_notify(struct virtio_dev *vd, struct virtqueue *vq)
{
	struct vnet *n = vd->priv;

	switch (vq->index) {
	case RXQ:
		rx_kick(n);
		break;
	case TXQ:
		tx_run(n);
		break;
	case CTRLQ:
		ctrl_run(n);
		break;
	}
}

/* Start receiving; kicks sent before DRIVER_OK were not served, so look at tx and ctrl. */
static void vnet_driver_ok(struct virtio_dev *vd)
{
	struct vnet *n = vd->priv;

	pthread_mutex_lock(&n->rx_lock);
	n->rx_active = true;
	rx_flush(n);
	pthread_mutex_unlock(&n->rx_lock);
	tx_run(n);
	ctrl_run(n);
}

/* Taking each lock also waits for a thread still working on that queue. */
static void vnet_reset(struct virtio_dev *vd)
{
	struct vnet *n = vd->priv;

	pthread_mutex_lock(&n->rx_lock);
	n->rx_active = false;
	net_rxq_clear(&n->pend);
	pthread_mutex_unlock(&n->rx_lock);
	pthread_mutex_lock(&n->tx_lock);
	pthread_mutex_unlock(&n->tx_lock);
	pthread_mutex_lock(&n->ctrl_lock);
	pthread_mutex_unlock(&n->ctrl_lock);
	pthread_mutex_lock(&vd->lock);
	n->status &= (uint16_t)~VIRTIO_NET_S_ANNOUNCE;
	pthread_mutex_unlock(&vd->lock);
}

/*
 * Every path that pops a chain pushes it (or gives it back) before dropping its queue's lock,
 * so once each lock has been taken with the paused flag set, nothing is in flight.
 */
static int vnet_pause(struct virtio_dev *vd)
{
	struct vnet *n = vd->priv;

	pthread_mutex_lock(&n->rx_lock);
	n->rx_paused = true;
	pthread_mutex_unlock(&n->rx_lock);
	pthread_mutex_lock(&n->tx_lock);
	n->tx_paused = true;
	pthread_mutex_unlock(&n->tx_lock);
	pthread_mutex_lock(&n->ctrl_lock);
	pthread_mutex_unlock(&n->ctrl_lock);
	return 0;
}

/*
 * After pause or load.  rx_active is recomputed from the transport's status, which a load
 * may have changed; the announcement follows a load only.
 */
static int vnet_resume(struct virtio_dev *vd)
{
	struct vnet *n = vd->priv;
	bool announce = n->announce_on_resume;

	n->announce_on_resume = false;
	pthread_mutex_lock(&n->rx_lock);
	n->rx_paused = false;
	n->rx_active = virtio_driver_ok(vd);
	rx_flush(n);
	pthread_mutex_unlock(&n->rx_lock);
	pthread_mutex_lock(&n->tx_lock);
	n->tx_paused = false;
	pthread_mutex_unlock(&n->tx_lock);
	/* Chains the driver added without a kick we saw (or before a save) wait no longer. */
	tx_run(n);
	ctrl_run(n);
	if (announce)
		vnet_announce(n);
	return 0;
}

static int vnet_save(struct virtio_dev *vd, struct sstream *s)
{
	struct vnet *n = vd->priv;

	ss_u8_array(s, n->mac, sizeof(n->mac));
	ss_u16(s, &n->status);
	ss_u16(s, &n->mtu);
	return ss_error(s);
}

struct vnet_saved {
	uint8_t mac[6];
	uint16_t status, mtu;
};

static void vnet_check(struct sstream *s, struct virtio_dev *vd, const struct vnet_saved *v)
{
	if (!net_mac_valid(v->mac))
		ss_fail(s, -EINVAL,
			"saved MAC %02x:%02x:%02x:%02x:%02x:%02x is not "
			"a unicast address",
			v->mac[0], v->mac[1], v->mac[2], v->mac[3], v->mac[4], v->mac[5]);
	if (v->status & ~(VIRTIO_NET_S_LINK_UP | VIRTIO_NET_S_ANNOUNCE))
		ss_fail(s, -EINVAL, "saved status %#x has unknown bits", v->status);
	if (v->mtu && (v->mtu < NET_MTU_MIN || v->mtu > NET_MTU_MAX))
		ss_fail(s, -EINVAL, "saved mtu %u out of range", v->mtu);
	if (!v->mtu != !(vd->host_features & (1ULL << VIRTIO_NET_F_MTU)))
		ss_fail(s, -EINVAL,
			"the snapshot's device %s an mtu, this one %s "
			"(mtu= differs)",
			v->mtu ? "had" : "had no", v->mtu ? "has none" : "has one");
}

/*
 * The saved MAC and MTU win over the configured ones: the guest's driver read them at probe
 * time.  The link is up whatever was saved.
 */
static int vnet_load(struct virtio_dev *vd, struct sstream *s, unsigned version)
{
	struct vnet *n = vd->priv;
	struct vnet_saved v = { .status = 0 };

	if (version != NET_STATE_VERSION)
		return ss_fail(s, -EINVAL, "state version %u is not supported (%u)", version,
			       NET_STATE_VERSION);
	ss_u8_array(s, v.mac, sizeof(v.mac));
	ss_u16(s, &v.status);
	ss_u16(s, &v.mtu);
	if (ss_error(s))
		return ss_error(s);
	vnet_check(s, vd, &v);
	if (ss_finish(s))
		return ss_error(s);
	memcpy(n->mac, v.mac, sizeof(n->mac));
	n->mtu = v.mtu;
	pthread_mutex_lock(&vd->lock);
	n->status = (uint16_t)(v.status | VIRTIO_NET_S_LINK_UP);
	pthread_mutex_unlock(&vd->lock);
	n->announce_on_resume = true;
	return 0;
}

/* ---- setup ---- */

static int parse_opts(struct virtio_dev *vd, struct vnet *n, char *err, size_t errlen)
{
	const char *mac = pci_dev_opt(vd->pd, "mac"), *mtu = pci_dev_opt(vd->pd, "mtu");

	if (mac && net_mac_parse(mac, n->mac)) {
		snprintf(err, errlen,
			 "bad mac '%s' (want a unicast address "
			 "xx:xx:xx:xx:xx:xx)",
			 mac);
		return -EINVAL;
	}
	if (!mac)
		net_mac_default(vd->vm->name, vd->pd->slot, vd->pd->func, n->mac);
	if (mtu) {
		char *end;
		unsigned long v = strtoul(mtu, &end, 10);

		if (*mtu < '0' || *mtu > '9' || *end || v < NET_MTU_MIN || v > NET_MTU_MAX) {
			snprintf(err, errlen, "bad mtu '%s' (want %d to %d)", mtu, NET_MTU_MIN,
				 NET_MTU_MAX);
			return -EINVAL;
		}
		n->mtu = (uint16_t)v;
	}
	return 0;
}

static const char *vnet_opt(void *ctx, const char *key)
{
	return pci_dev_opt(ctx, key);
}

/* The backend the options name (backend=, tap=; slirp by default). */
static int open_backend(struct virtio_dev *vd, struct vnet *n, char *err, size_t errlen)
{
	struct net_backend_args a = {
		.dev = vd->pd->dev.id,
		.opt = vnet_opt,
		.opt_ctx = vd->pd,
		.mtu = n->mtu,
		.rx = vnet_backend_rx,
		.opaque = n,
	};

	n->nb = net_backend_open(&a, err, errlen);
	return n->nb ? 0 : -EINVAL;
}

static void vnet_free(struct vnet *n)
{
	net_backend_close(n->nb); /* joins its thread: no more rx callbacks */
	net_rxq_clear(&n->pend);
	pthread_mutex_destroy(&n->rx_lock);
	pthread_mutex_destroy(&n->tx_lock);
	pthread_mutex_destroy(&n->ctrl_lock);
	free(n);
}

static int vnet_init(struct virtio_dev *vd, char *err, size_t errlen)
{
	struct vnet *n = calloc(1, sizeof(*n));
	int ret;

	if (!n) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	n->vd = vd;
	net_rxq_init(&n->pend, RXQ_MAX_FRAMES, RXQ_MAX_BYTES);
	n->status = VIRTIO_NET_S_LINK_UP;
	pthread_mutex_init(&n->rx_lock, NULL);
	pthread_mutex_init(&n->tx_lock, NULL);
	pthread_mutex_init(&n->ctrl_lock, NULL);
	ret = parse_opts(vd, n, err, errlen);
	if (ret)
		goto fail;
	vd->priv = n;
	vd->nqueues = 3;
	vd->queue_max[RXQ] = NET_QUEUE_SIZE;
	vd->queue_max[TXQ] = NET_QUEUE_SIZE;
	vd->queue_max[CTRLQ] = NET_CTRL_QUEUE_SIZE;
	vd->config_len = CFG_LEN;
	vd->host_features = 1ULL << VIRTIO_NET_F_MAC | 1ULL << VIRTIO_NET_F_STATUS |
			    1ULL << VIRTIO_NET_F_MRG_RXBUF | 1ULL << VIRTIO_NET_F_CTRL_VQ |
			    1ULL << VIRTIO_NET_F_GUEST_ANNOUNCE;
	if (n->mtu)
		vd->host_features |= 1ULL << VIRTIO_NET_F_MTU;
	/* Last: the backend's thread may deliver frames as soon as it runs. */
	ret = open_backend(vd, n, err, errlen);
	if (ret)
		goto fail;
	return 0;
fail:
	vd->priv = NULL;
	vnet_free(n);
	return ret;
}

static void vnet_destroy(struct virtio_dev *vd)
{
	if (vd->priv)
		vnet_free(vd->priv);
	vd->priv = NULL;
}

static const struct virtio_dev_ops virtio_net_ops = {
	.name = "virtio-net",
	.device_id = VIRTIO_ID_NET,
	.pci_class = 0x02,    /* network */
	.pci_subclass = 0x00, /* Ethernet */
	.version = NET_STATE_VERSION,
	.init = vnet_init,
	.cfg_read = vnet_cfg_read,
	.cfg_write = vnet_cfg_write,
	.queue_notify = vnet_queue_notify,
	.driver_ok = vnet_driver_ok,
	.reset = vnet_reset,
	.pause = vnet_pause,
	.resume = vnet_resume,
	.save = vnet_save,
	.load = vnet_load,
	.destroy = vnet_destroy,
};

static const char *const vnet_options[] = { "mac", "mtu", NULL };

VIRTIO_PCI_EMUL(virtio_net, "virtio-net", virtio_net_ops, { .names = vnet_options },
		{ .names = net_options });
