// SPDX-License-Identifier: MIT
/*
 * khyve test guest, ring 3: the virtio-net NIC driver for the network
 * modes (net.c), polled, and evil.c's one good request.
 *
 * MRG_RXBUF is not negotiated, so each receive buffer must hold a whole
 * frame behind the 12-byte virtio_net_hdr: 2 KiB each. No offloads: the
 * header is all zero.
 */
#include "user.h"
#include "virtio.h"
#include "net.h"

#define VIRTIO_NET_F_MAC	5
#define VIRTIO_NET_F_STATUS	16
#define NET_CFG_MAC		0
#define NET_CFG_STATUS		6

#define NET_WANT	(1ull << VIRTIO_F_INDIRECT_DESC | 1ull << VIRTIO_F_EVENT_IDX | \
			 1ull << VIRTIO_NET_F_MAC | 1ull << VIRTIO_NET_F_STATUS)

#define RXQ		0
#define TXQ		1
#define HDR_LEN		12
#define BUF_LEN		(NET_BUF_LEN + HDR_LEN)
#define NRX		64
#define NTX		16

static struct vdev net;
static char why[96];
static u8 *rxbuf, *txbuf;
static bool tx_busy[NTX];
static u32 nrx;

static void rx_post(u32 i)
{
	struct vbuf b = { rxbuf + (u64)i * BUF_LEN, BUF_LEN, true };

	if (vq_add(&net.vq[RXQ], &b, 1, i, NULL))
		fail_final("net: rx queue full");
}

static void tx_reap(void)
{
	u64 cookie;
	u32 len;
	int r;

	while ((r = vq_poll(&net.vq[TXQ], &cookie, &len, why, sizeof(why))) > 0)
		tx_busy[cookie] = false;
	if (r < 0)
		fail_final("net: tx: %s", why);
}

static void vnet_tx(const u8 *f, u32 len)
{
	struct vbuf b;
	struct rtime rt;
	u32 i;

	rt_start(&rt);
	for (;;) {
		tx_reap();
		for (i = 0; i < NTX && tx_busy[i]; i++)
			;
		if (i < NTX)
			break;
		if (rt_ms(&rt) > 5000)
			fail_final("net: no transmit buffer came back in 5 s");
		cpu_relax();
	}
	/* Header (all zero: no offloads) and frame in one buffer. */
	memset(txbuf + (u64)i * BUF_LEN, 0, HDR_LEN);
	memcpy(txbuf + (u64)i * BUF_LEN + HDR_LEN, f, len);
	b = (struct vbuf){ txbuf + (u64)i * BUF_LEN, HDR_LEN + len, false };
	if (vq_add(&net.vq[TXQ], &b, 1, i, NULL))
		fail_final("net: tx queue full");
	tx_busy[i] = true;
	if (!nic.batch)
		vq_kick(&net.vq[TXQ]);
}

static void vnet_flush(void)
{
	vq_kick(&net.vq[TXQ]);
}

/* Take every received frame, hand its buffer straight back. */
static void vnet_rx_poll(void (*cb)(const u8 *f, u32 len))
{
	u64 cookie;
	u32 len;
	int r, n = 0;

	while ((r = vq_poll(&net.vq[RXQ], &cookie, &len, why, sizeof(why))) > 0) {
		if (len > BUF_LEN)
			fail_final("net: rx used length %u for a %u-byte buffer", len, BUF_LEN);
		if (len > HDR_LEN)
			cb(rxbuf + cookie * BUF_LEN + HDR_LEN, len - HDR_LEN);
		rx_post(cookie);
		n++;
	}
	if (r < 0)
		fail_final("net: rx: %s", why);
	if (n)
		vq_kick(&net.vq[RXQ]);
	tx_reap();
}

int vnet_nic_open(struct nic *n)
{
	static const u8 fallback[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };
	u32 i;
	int r;

	r = vdev_find(&net, VIRTIO_ID_NET, 0, "net", why, sizeof(why));
	if (r == -1)
		return -1;
	if (r || vdev_init(&net, NET_WANT, 2, VQ_MAX, why, sizeof(why)))
		fail_final("net: %s", why);
	n->name = "virtio-net";
	if (vdev_has(&net, VIRTIO_NET_F_MAC)) {
		for (i = 0; i < 6; i++)
			n->mac[i] = vcfg_read8(&net, NET_CFG_MAC + i);
	} else {
		memcpy(n->mac, fallback, 6);
	}
	n->tx = vnet_tx;
	n->rx_poll = vnet_rx_poll;
	n->flush = vnet_flush;
	rxbuf = vio_alloc(NRX * BUF_LEN, 4096);
	txbuf = vio_alloc(NTX * BUF_LEN, 4096);
	if (!rxbuf || !txbuf)
		fail_final("net: out of memory");
	net.vq[RXQ].watch = false;	/* receive buffers wait for frames */
	nrx = net.vq[RXQ].size < NRX ? net.vq[RXQ].size : NRX;
	for (i = 0; i < nrx; i++)
		rx_post(i);
	vq_kick(&net.vq[RXQ]);
	pr("net: virtio-net, mac %02x:%02x:%02x:%02x:%02x:%02x, link %s, features 0x%lx, "
	   "queues %u/%u\n", n->mac[0], n->mac[1], n->mac[2], n->mac[3], n->mac[4], n->mac[5],
	   !vdev_has(&net, VIRTIO_NET_F_STATUS) ? "?" :
	   vcfg_read16(&net, NET_CFG_STATUS) & 1 ? "up" : "down",
	   net.features, net.vq[RXQ].size, net.vq[TXQ].size);
	return 0;
}

/* ---- one good request (evil.c): an ARP request goes out and comes back used ---- */

int net_good_request(struct vdev *vd, char *w, u32 wl)
{
	static u8 *f;
	struct vbuf b;
	u64 cookie;
	u32 len;
	int r;

	if (!f)
		f = vio_alloc(HDR_LEN + 60, 64);
	memset(f, 0, HDR_LEN + 60);
	memset(f + HDR_LEN, 0xff, 6);
	f[HDR_LEN + 6] = 0x52;
	put16be(f + HDR_LEN + 12, 0x0806);
	put16be(f + HDR_LEN + 14, 1);
	put16be(f + HDR_LEN + 16, 0x0800);
	f[HDR_LEN + 18] = 6;
	f[HDR_LEN + 19] = 4;
	put16be(f + HDR_LEN + 20, 1);
	put32be(f + HDR_LEN + 28, 0x0a00020f);
	put32be(f + HDR_LEN + 38, 0x0a000202);
	b = (struct vbuf){ f, HDR_LEN + 60, false };
	if (vq_add(&vd->vq[TXQ], &b, 1, 1, NULL)) {
		fmt(w, wl, "tx queue full");
		return -1;
	}
	vq_kick(&vd->vq[TXQ]);
	r = vq_wait(&vd->vq[TXQ], &cookie, &len, 2000, w, wl);
	if (!r)
		fmt(w, wl, "frame not sent in 2 s (status 0x%x)", vdev_status(vd));
	return r == 1 ? 0 : -1;
}
