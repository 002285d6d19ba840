// SPDX-License-Identifier: MIT
/*
 * khyve test guest, ring 3: mode=net. Runs forever, on the NIC it finds
 * (virtio-net first, then e1000; nic=virtio or nic=e1000 chooses).
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
 * forgotten us, and every fourth retransmission ARPs for the gateway
 * again, since a restore may have moved us to another network.
 */
#include "user.h"
#include "virtio.h"
#include "net.h"

#define MY_IP		0x0a00020fu	/* 10.0.2.15 */
#define GW_IP		0x0a000202u	/* 10.0.2.2 */
#define MY_PORT		5555
#define RETX_MS		1000
#define FAIL_AFTER	30		/* retransmissions before a FAIL line */

struct nic nic;
static u8 gw_mac[6];
static bool have_gw;
static u16 ip_id;

/* The echo being waited for. In guest memory: a restore continues it. */
static u64 cur_n, stale, corrupt_seen;
static bool got_echo;

/* ---- byte order, checksums ---- */

void put16be(u8 *p, u16 v) { p[0] = v >> 8; p[1] = v; }
void put32be(u8 *p, u32 v) { put16be(p, v >> 16); put16be(p + 2, v); }
u16 get16be(const u8 *p) { return (u16)p[0] << 8 | p[1]; }
u32 get32be(const u8 *p) { return (u32)get16be(p) << 16 | get16be(p + 2); }

u32 csum_add(u32 sum, const u8 *p, u32 n)
{
	u32 i;

	for (i = 0; i + 1 < n; i += 2)
		sum += get16be(p + i);
	if (n & 1)
		sum += (u32)p[n - 1] << 8;
	return sum;
}

u16 csum_fold(u32 sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return ~sum;
}

/* ---- frames ---- */

/* Send an Ethernet frame (header from us, payload already at @f + 14). */
void net_tx(const u8 *dst, u16 type, u8 *f, u32 len)
{
	memcpy(f, dst, 6);
	memcpy(f + 6, nic.mac, 6);
	put16be(f + 12, type);
	if (len < 60) {
		memset(f + len, 0, 60 - len);
		len = 60;
	}
	nic.tx(f, len);
}

static const u8 bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
static const u8 zero_mac[6];

static void arp_send(u16 op, const u8 *dst_mac, const u8 *tha, u32 tpa)
{
	u8 f[64];
	u8 *a = f + 14;

	put16be(a, 1);
	put16be(a + 2, 0x0800);
	a[4] = 6;
	a[5] = 4;
	put16be(a + 6, op);
	memcpy(a + 8, nic.mac, 6);
	put32be(a + 14, MY_IP);
	memcpy(a + 18, tha, 6);
	put32be(a + 24, tpa);
	net_tx(dst_mac, 0x0806, f, 14 + 28);
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

/* A UDP datagram to 10.0.2.2:@port with @plen bytes of payload at @f + 42. */
void udp_send(u8 *f, u16 port, u32 plen)
{
	u8 *ip = f + 14, *udp = ip + 20;
	u32 ulen = 8 + plen;

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
	put16be(udp + 2, port);
	put16be(udp + 4, ulen);
	put16be(udp + 6, 0);		/* no checksum: allowed over IPv4 */
	net_tx(gw_mac, 0x0800, f, 14 + 20 + ulen);
}

/* Called for each UDP datagram to us from 10.0.2.2:@sport (checksums verified). */
static void (*udp_handler)(u16 sport, const u8 *p, u32 n);

static void udp_in(const u8 *ip, u32 ihl, u32 tot)
{
	const u8 *udp = ip + ihl;
	u32 ulen, sum;

	if (tot < ihl + 8)
		return;
	ulen = get16be(udp + 4);
	if (get16be(udp + 2) != MY_PORT || get32be(ip + 12) != GW_IP)
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
	udp_handler(get16be(udp), udp + 8, ulen - 8);
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

static void frame_in(const u8 *f, u32 len)
{
	if (len < 14)
		return;
	switch (get16be(f + 12)) {
	case 0x0806:
		arp_in(f + 14, len - 14);
		break;
	case 0x0800:
		ip_in(f + 14, len - 14);
		break;
	}
}

void net_poll(void)
{
	nic.rx_poll(frame_in);
}

/* ---- setup ---- */

/* The NIC the command line asks for, or the first one there is. */
void net_open(void)
{
	int r = -1;

	if (vopt.nic != NIC_E1000)
		r = vnet_nic_open(&nic);
	if (r && vopt.nic != NIC_VIRTIO)
		r = e1000_nic_open(&nic);
	if (r)
		fail_final("net: no %s", vopt.nic == NIC_E1000 ? "e1000" :
			   vopt.nic == NIC_VIRTIO ? "virtio-net device" : "network device");
}

void net_arp_gateway(void)
{
	struct rtime total, retx;

	rt_start(&total);
	while (!have_gw) {
		arp_send(1, bcast, zero_mac, GW_IP);
		rt_start(&retx);
		while (!have_gw && rt_ms(&retx) < 500) {
			net_poll();
			power_button_poll();
			cpu_relax();
		}
		if (!have_gw && rt_ms(&total) > 30000)
			fail_final("net: no ARP reply from 10.0.2.2 in 30 s");
	}
	pr("net: gateway %02x:%02x:%02x:%02x:%02x:%02x, echo port %u\n", gw_mac[0], gw_mac[1],
	   gw_mac[2], gw_mac[3], gw_mac[4], gw_mac[5], vopt.netport);
}

void net_set_udp_handler(void (*fn)(u16 sport, const u8 *p, u32 n))
{
	udp_handler = fn;
}

/* ---- mode=net: the numbered echo exchange ---- */

static u32 fmt_payload(char *p, u64 n)
{
	return fmt(p, 32, "khyve %lu", n);
}

static void echo_send(u64 n)
{
	u8 f[128];

	udp_send(f, vopt.netport, fmt_payload((char *)f + 42, n));
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

static void echo_in(u16 sport, const u8 *p, u32 n)
{
	s64 m;
	char shown[40];
	u32 i;

	if (sport != vopt.netport)
		return;
	m = parse_payload(p, n);
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

void net_run(void)
{
	u64 period = tsc_hz / opt.rate, next, t;
	struct rtime retx;
	u32 tries;

	cur_check = "net";
	net_open();
	net_set_udp_handler(echo_in);
	net_arp_gateway();
	next = rdtsc();
	for (cur_n = 1;; cur_n++) {
		got_echo = false;
		tries = 0;
		echo_send(cur_n);
		rt_start(&retx);
		while (!got_echo) {
			net_poll();
			power_button_poll();
			if (rt_ms(&retx) >= RETX_MS) {
				if (++tries == FAIL_AFTER)
					pr("TESTGUEST FAIL: net: no echo of khyve %lu after %u "
					   "tries\n", cur_n, tries);
				/* The gateway may have moved (a restore onto another network). */
				if (tries % 4 == 3)
					arp_send(1, bcast, zero_mac, GW_IP);
				echo_send(cur_n);
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
			net_poll();
			power_button_poll();
			cpu_relax();
		}
	}
}
