// SPDX-License-Identifier: MIT
/*
 * khyve test guest, ring 3: mode=netbench, a windowed UDP stream through
 * the NIC (net.c picks it) to and from a sink on the host (bench/net_sink.c,
 * at 10.0.2.2:netport through slirp). Every datagram carries `netsize`
 * payload bytes: "KHBD", a sequence number, filler.
 *
 *  - netdir=tx (default): we send, keeping at most `netwin` datagrams
 *    unacknowledged; the sink answers "KHBA" + how many it has received,
 *    every 16 datagrams. Acknowledged datagrams are what arrived.
 *  - netdir=rx: we ask with "KHBR" + size, window, seconds; the sink
 *    streams to us, we acknowledge every 16 received, and "KHBE" ends it.
 *
 * A stall (no acknowledgement for 100 ms: datagrams lost on the way)
 * gives up on what is in flight and goes on; `lost` counts them. After
 * `seconds`, "NETBENCH dir=D size=S pkts=N bytes=B ns=T sent=X lost=L"
 * (N datagrams of S bytes delivered in T ns of TSC time, from the first
 * datagram to the last acknowledgement or arrival), TESTGUEST PASS, power
 * off. Nothing arriving for 10 s is a TESTGUEST FAIL.
 */
#include "user.h"
#include "virtio.h"
#include "net.h"

#define HDR		42	/* Ethernet, IPv4, UDP */
#define ACK_EVERY	16
#define STALL_MS	100

static u64 acked, received, rx_bytes, last_tsc, first_tsc;

static void bench_in(u16 sport, const u8 *p, u32 n)
{
	if (sport != vopt.netport || n < 8 || memcmp(p, "KHB", 3))
		return;
	if (p[3] == 'A') {
		u64 c = get32be(p + 4);

		if (c > acked) {
			acked = c;
			last_tsc = rdtsc();
		}
	} else if (p[3] == 'D') {
		if (!received)
			first_tsc = rdtsc();
		received++;
		rx_bytes += n;
		last_tsc = rdtsc();
	}
}

static void ctl_send(const char *tag, u32 a, u32 b, u32 c)
{
	u8 f[128];

	memcpy(f + HDR, tag, 4);
	put32be(f + HDR + 4, a);
	put32be(f + HDR + 8, b);
	put32be(f + HDR + 12, c);
	udp_send(f, vopt.netport, 16);
}

static void __attribute__((noreturn)) report(const char *dir, u64 pkts, u64 ns, u64 sent, u64 lost)
{
	pr("NETBENCH dir=%s size=%u pkts=%lu bytes=%lu ns=%lu sent=%lu lost=%lu nic=%s\n", dir,
	   vopt.netsize, pkts, pkts * vopt.netsize, ns, sent, lost, nic.name);
	pr("TESTGUEST PASS\n");
	poweroff();
}

static void __attribute__((noreturn)) bench_tx(void)
{
	static u8 f[HDR + 2048];
	u64 sent = 0, lost = 0, end, seen = 0;
	struct rtime stall;
	u32 i;

	for (i = 0; i < vopt.netsize; i++)
		f[HDR + i] = (u8)i;
	memcpy(f + HDR, "KHBD", 4);
	first_tsc = last_tsc = rdtsc();
	end = first_tsc + vopt.seconds * tsc_hz;
	rt_start(&stall);
	while ((s64)(rdtsc() - end) < 0) {
		for (i = 0; i < ACK_EVERY && sent - acked - lost < vopt.netwin; i++) {
			put32be(f + HDR + 4, (u32)sent);
			udp_send(f, vopt.netport, vopt.netsize);
			sent++;
		}
		if (i && nic.flush)
			nic.flush();
		net_poll();
		power_button_poll();
		if (acked != seen) {
			seen = acked;
			rt_start(&stall);
		} else if (rt_ms(&stall) > STALL_MS && sent - acked - lost) {
			lost = sent - acked;	/* in flight too long: given up */
			rt_start(&stall);
		}
		if (rt_ms(&stall) > 10000)
			fail_final("netbench: no acknowledgement for 10 s (%lu sent, %lu acked)",
				   sent, acked);
	}
	/* Let the acknowledgements of what is in flight come in. */
	rt_start(&stall);
	while (acked + lost < sent && rt_ms(&stall) < 300)
		net_poll();
	report("tx", acked, tsc_to_ns(last_tsc - first_tsc), sent, sent - acked);
}

static void __attribute__((noreturn)) bench_rx(void)
{
	struct rtime wait, idle;
	u64 acks = 0, end = 0, seen = 0;
	u32 k;

	rt_start(&wait);
	while (!received) {
		ctl_send("KHBR", vopt.netsize, vopt.netwin, (u32)vopt.seconds);
		if (nic.flush)
			nic.flush();
		rt_start(&idle);
		while (!received && rt_ms(&idle) < 500)
			net_poll();
		if (rt_ms(&wait) > 10000)
			fail_final("netbench: the sink sent nothing in 10 s");
	}
	end = first_tsc + vopt.seconds * tsc_hz;
	rt_start(&idle);
	while ((s64)(rdtsc() - end) < 0) {
		net_poll();
		if (received / ACK_EVERY != acks) {
			acks = received / ACK_EVERY;
			ctl_send("KHBA", (u32)received, 0, 0);
			if (nic.flush)
				nic.flush();
		}
		if (received != seen) {
			seen = received;
			rt_start(&idle);
		} else if (rt_ms(&idle) > STALL_MS) {
			/* Acknowledge again: ours may have been lost. */
			ctl_send("KHBA", (u32)received, 0, 0);
			if (nic.flush)
				nic.flush();
			rt_start(&idle);
		}
		power_button_poll();
	}
	for (k = 0; k < 3; k++)
		ctl_send("KHBE", (u32)received, 0, 0);
	if (nic.flush)
		nic.flush();
	report("rx", received, tsc_to_ns(last_tsc - first_tsc), received, 0);
}

void netbench_run(void)
{
	cur_check = "netbench";
	if (vopt.netsize < 16 || vopt.netsize > 1472)
		fail_final("netbench: netsize=%u (16 to 1472)", vopt.netsize);
	if (!vopt.netwin)
		vopt.netwin = 1;
	if (!vopt.seconds)
		vopt.seconds = 1;
	net_open();
	net_set_udp_handler(bench_in);
	net_arp_gateway();
	nic.batch = true;
	if (vopt.netrx)
		bench_rx();
	bench_tx();
}
