// SPDX-License-Identifier: MIT
/*
 * khyve test guest, ring 3: virtio-net, mode=net. Runs forever.
 *
 * On a user-mode (slirp) network: static address 10.0.2.15, ARP for the
 * gateway 10.0.2.2, then UDP datagrams "khyve N" (N = 1, 2, ...) from
 * port 5555 to 10.0.2.2:netport (slirp hands them to the host's
 * 127.0.0.1:netport, where an echo server is expected). Each N waits for
 * the echo of exactly its payload, retransmitting every second (frames
 * are lost while a VM is paused or restored); then "seq N" and, paced at
 * `rate` per second, N+1. An echo of an earlier N is stale and skipped;
 * an echo of a later N, a corrupted payload or a bad checksum is a FAIL.
 * ARP requests for our address are answered, since a restored slirp has
 * forgotten us.
 *
 * MRG_RXBUF is not negotiated, so each receive buffer must hold a whole
 * frame behind the 12-byte virtio_net_hdr: 2 KiB each.
 */
#include "user.h"
#include "virtio.h"

#define VIRTIO_NET_F_MAC	5
#define VIRTIO_NET_F_STATUS	16
#define NET_CFG_MAC		0
#define NET_CFG_STATUS		6

#define NET_WANT	(1ull << VIRTIO_F_INDIRECT_DESC | 1ull << VIRTIO_F_EVENT_IDX | \
			 1ull << VIRTIO_NET_F_MAC | 1ull << VIRTIO_NET_F_STATUS)

#define RXQ		0
#define TXQ		1
#define HDR_LEN		12
#define BUF_LEN		2048
#define NRX		64
#define NTX		16

#define MY_IP		0x0a00020fu	/* 10.0.2.15 */
#define GW_IP		0x0a000202u	/* 10.0.2.2 */
#define MY_PORT		5555
#define RETX_MS		1000
#define FAIL_AFTER	30		/* retransmissions before a FAIL line */

static struct vdev net;
static char why[96];
static u8 *rxbuf, *txbuf;
static bool tx_busy[NTX];
static u32 nrx;
static u8 mac[6], gw_mac[6];
static bool have_gw;
static u16 ip_id;

/* The echo being waited for. In guest memory: a restore continues it. */
static u64 cur_n, stale, corrupt_seen;
static bool got_echo;

/* ---- byte order, checksums ---- */

static void put16be(u8 *p, u16 v) { p[0] = v >> 8; p[1] = v; }
static void put32be(u8 *p, u32 v) { put16be(p, v >> 16); put16be(p + 2, v); }
static u16 get16be(const u8 *p) { return (u16)p[0] << 8 | p[1]; }
static u32 get32be(const u8 *p) { return (u32)get16be(p) << 16 | get16be(p + 2); }

static u32 csum_add(u32 sum, const u8 *p, u32 n)
{
	u32 i;

	for (i = 0; i + 1 < n; i += 2)
		sum += get16be(p + i);
	if (n & 1)
		sum += (u32)p[n - 1] << 8;
	return sum;
}

static u16 csum_fold(u32 sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return ~sum;
}

/* ---- queues ---- */

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

/* Send an Ethernet frame (header from us, payload already at @f + 14). */
static void tx_frame(const u8 *dst, u16 type, u8 *f, u32 len)
{
	struct vbuf b;
	struct rtime rt;
	u32 i;

	memcpy(f, dst, 6);
	memcpy(f + 6, mac, 6);
	put16be(f + 12, type);
	if (len < 60) {
		memset(f + len, 0, 60 - len);
		len = 60;
	}
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
	vq_kick(&net.vq[TXQ]);
}

/* ---- ARP ---- */

static void arp_send(u16 op, const u8 *dst_mac, const u8 *tha, u32 tpa)
{
	u8 f[64];
	u8 *a = f + 14;

	put16be(a, 1);
	put16be(a + 2, 0x0800);
	a[4] = 6;
	a[5] = 4;
	put16be(a + 6, op);
	memcpy(a + 8, mac, 6);
	put32be(a + 14, MY_IP);
	memcpy(a + 18, tha, 6);
	put32be(a + 24, tpa);
	tx_frame(dst_mac, 0x0806, f, 14 + 28);
}

static void arp_in(const u8 *a, u32 len)
{
	if (len < 28 || get16be(a) != 1 || get16be(a + 2) != 0x0800 || a[4] != 6 || a[5] != 4)
		return;
	if (get16be(a + 6) == 2 && get32be(a + 14) == GW_IP) {
		memcpy(gw_mac, a + 8, 6);
		have_gw = true;
	} else if (get16be(a + 6) == 1 && get32be(a + 24) == MY_IP) {
		arp_send(2, a + 8, a + 8, get32be(a + 14));
	}
}

/* ---- UDP ---- */

static u32 fmt_payload(char *p, u64 n)
{
	return fmt(p, 32, "khyve %lu", n);
}

static void udp_send(u64 n)
{
	u8 f[128];
	u8 *ip = f + 14, *udp = ip + 20;
	u32 plen = fmt_payload((char *)udp + 8, n), ulen = 8 + plen;

	ip[0] = 0x45;
	ip[1] = 0;
	put16be(ip + 2, 20 + ulen);
	put16be(ip + 4, ++ip_id);
	put16be(ip + 6, 0x4000);	/* don't fragment */
	ip[8] = 64;
	ip[9] = 17;
	put16be(ip + 10, 0);
	put32be(ip + 12, MY_IP);
	put32be(ip + 16, GW_IP);
	put16be(ip + 10, csum_fold(csum_add(0, ip, 20)));
	put16be(udp, MY_PORT);
	put16be(udp + 2, vopt.netport);
	put16be(udp + 4, ulen);
	put16be(udp + 6, 0);		/* no checksum: allowed over IPv4 */
	tx_frame(gw_mac, 0x0800, f, 14 + 20 + ulen);
}

/* The number in "khyve N", or -1 if the payload is anything else. */
static s64 parse_payload(const u8 *p, u32 n)
{
	u64 v = 0;
	u32 i;

	if (n < 7 || n > 26 || memcmp(p, "khyve ", 6))
		return -1;
	for (i = 6; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		v = v * 10 + p[i] - '0';
	}
	return v;
}

static void echo_in(const u8 *p, u32 n)
{
	s64 m = parse_payload(p, n);
	char shown[40];
	u32 i;

	if (m < 0) {
		for (i = 0; i < n && i < sizeof(shown) - 1; i++)
			shown[i] = p[i] >= 32 && p[i] < 127 ? p[i] : '.';
		shown[i] = 0;
		if (!corrupt_seen++)
			pr("TESTGUEST FAIL: net: corrupted echo (%u bytes) '%s' waiting for %lu\n",
			   n, shown, cur_n);
		return;
	}
	if ((u64)m == cur_n) {
		got_echo = true;
	} else if ((u64)m < cur_n) {
		stale++;
	} else {
		pr("TESTGUEST FAIL: net: echo of khyve %lu while waiting for khyve %lu\n",
		   (u64)m, cur_n);
	}
}

static void udp_in(const u8 *ip, u32 ihl, u32 tot)
{
	const u8 *udp = ip + ihl;
	u32 ulen, sum;

	if (tot < ihl + 8)
		return;
	ulen = get16be(udp + 4);
	if (get16be(udp + 2) != MY_PORT || get16be(udp) != vopt.netport)
		return;
	if (ulen < 8 || ulen > tot - ihl) {
		pr("TESTGUEST FAIL: net: UDP length %u in an IP packet of %u\n", ulen, tot);
		return;
	}
	if (get16be(udp + 6)) {
		sum = csum_add(0, ip + 12, 8);
		sum += 17 + ulen;
		sum = csum_add(sum, udp, ulen);
		if (csum_fold(sum)) {
			pr("TESTGUEST FAIL: net: bad UDP checksum 0x%x\n", get16be(udp + 6));
			return;
		}
	}
	echo_in(udp + 8, ulen - 8);
}

static void ip_in(const u8 *ip, u32 len)
{
	u32 ihl, tot;

	if (len < 20 || ip[0] >> 4 != 4)
		return;
	ihl = (ip[0] & 15) * 4;
	tot = get16be(ip + 2);
	if (ihl < 20 || tot < ihl || tot > len)
		return;
	if (csum_fold(csum_add(0, ip, ihl))) {
		pr("TESTGUEST FAIL: net: bad IPv4 header checksum from 0x%x\n", get32be(ip + 12));
		return;
	}
	if (ip[9] != 17 || get32be(ip + 16) != MY_IP || (get16be(ip + 6) & 0x3fff))
		return;		/* not UDP, not ours, or a fragment */
	udp_in(ip, ihl, tot);
}

static void frame_in(const u8 *b, u32 len)
{
	const u8 *f = b + HDR_LEN;

	if (len < HDR_LEN + 14)
		return;
	len -= HDR_LEN;
	switch (get16be(f + 12)) {
	case 0x0806:
		arp_in(f + 14, len - 14);
		break;
	case 0x0800:
		ip_in(f + 14, len - 14);
		break;
	}
}

/* Take every received frame, hand its buffer straight back. */
static void rx_poll(void)
{
	u64 cookie;
	u32 len;
	int r, n = 0;

	while ((r = vq_poll(&net.vq[RXQ], &cookie, &len, why, sizeof(why))) > 0) {
		if (len > BUF_LEN)
			fail_final("net: rx used length %u for a %u-byte buffer", len, BUF_LEN);
		frame_in(rxbuf + cookie * BUF_LEN, len);
		rx_post(cookie);
		n++;
	}
	if (r < 0)
		fail_final("net: rx: %s", why);
	if (n)
		vq_kick(&net.vq[RXQ]);
	tx_reap();
}

/* ---- setup ---- */

static void net_setup(void)
{
	static const u8 fallback[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };
	u32 i;
	int r;

	r = vdev_find(&net, VIRTIO_ID_NET, 0, "net", why, sizeof(why));
	if (r == -1)
		fail_final("net: no virtio-net device");
	if (r || vdev_init(&net, NET_WANT, 2, VQ_MAX, why, sizeof(why)))
		fail_final("net: %s", why);
	if (vdev_has(&net, VIRTIO_NET_F_MAC)) {
		for (i = 0; i < 6; i++)
			mac[i] = vcfg_read8(&net, NET_CFG_MAC + i);
	} else {
		memcpy(mac, fallback, 6);
	}
	rxbuf = vio_alloc(NRX * BUF_LEN, 4096);
	txbuf = vio_alloc(NTX * BUF_LEN, 4096);
	if (!rxbuf || !txbuf)
		fail_final("net: out of memory");
	net.vq[RXQ].watch = false;	/* receive buffers wait for frames */
	nrx = net.vq[RXQ].size < NRX ? net.vq[RXQ].size : NRX;
	for (i = 0; i < nrx; i++)
		rx_post(i);
	vq_kick(&net.vq[RXQ]);
	pr("net: mac %02x:%02x:%02x:%02x:%02x:%02x, link %s, features 0x%lx, queues %u/%u\n",
	   mac[0], mac[1], mac[2], mac[3], mac[4], mac[5],
	   !vdev_has(&net, VIRTIO_NET_F_STATUS) ? "?" :
	   vcfg_read16(&net, NET_CFG_STATUS) & 1 ? "up" : "down",
	   net.features, net.vq[RXQ].size, net.vq[TXQ].size);
}

static void arp_gateway(void)
{
	static const u8 bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	static const u8 zero[6];
	struct rtime total, retx;

	rt_start(&total);
	while (!have_gw) {
		arp_send(1, bcast, zero, GW_IP);
		rt_start(&retx);
		while (!have_gw && rt_ms(&retx) < 500) {
			rx_poll();
			power_button_poll();
			cpu_relax();
		}
		if (!have_gw && rt_ms(&total) > 30000)
			fail_final("net: no ARP reply from 10.0.2.2 in 30 s");
	}
	pr("net: gateway %02x:%02x:%02x:%02x:%02x:%02x, echo port %u\n", gw_mac[0], gw_mac[1],
	   gw_mac[2], gw_mac[3], gw_mac[4], gw_mac[5], vopt.netport);
}

void net_run(void)
{
	u64 period = tsc_hz / opt.rate, next, t;
	struct rtime retx;
	u32 tries;

	cur_check = "net";
	net_setup();
	arp_gateway();
	next = rdtsc();
	for (cur_n = 1;; cur_n++) {
		got_echo = false;
		tries = 0;
		udp_send(cur_n);
		rt_start(&retx);
		while (!got_echo) {
			rx_poll();
			power_button_poll();
			if (rt_ms(&retx) >= RETX_MS) {
				if (++tries == FAIL_AFTER)
					pr("TESTGUEST FAIL: net: no echo of khyve %lu after %u "
					   "tries\n", cur_n, tries);
				udp_send(cur_n);
				rt_start(&retx);
			}
			cpu_relax();
		}
		if (tries >= FAIL_AFTER)
			pr("net: echo of khyve %lu after %u tries\n", cur_n, tries);
		pr("seq %lu\n", cur_n);
		t = rdtsc();
		next = seq_deadline(next, t, period);
		while ((s64)(rdtsc() - next) < 0 && (s64)(next - rdtsc()) <= (s64)(2 * period)) {
			rx_poll();
			power_button_poll();
			cpu_relax();
		}
	}
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
	put32be(f + HDR_LEN + 28, MY_IP);
	put32be(f + HDR_LEN + 38, GW_IP);
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
