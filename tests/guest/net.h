/* SPDX-License-Identifier: MIT */
/*
 * khyve test guest, ring 3: the network modes (net.c: mode=net and
 * mode=netbench) over whichever NIC is there. A NIC driver (virtio_net.c,
 * e1000.c) fills a struct nic: its MAC, and how to send a frame and poll
 * for received ones, all without interrupts.
 */
#ifndef NET_H
#define NET_H

#include "types.h"

#define NET_BUF_LEN	2048	/* every receive buffer holds a whole frame */

struct nic {
	const char *name;		/* "virtio-net", "e1000" */
	u8 mac[6];
	/*
	 * Send one Ethernet frame (copied at once). Waits up to 5 s for a
	 * free transmit buffer, then fails the test.
	 */
	void (*tx)(const u8 *frame, u32 len);
	/* Hand every received frame to @cb (the frame is only valid during the call). */
	void (*rx_poll)(void (*cb)(const u8 *frame, u32 len));
	/* Push queued frames out now (after a burst of tx); may be NULL. */
	void (*flush)(void);
	/* Set by a mode: tx only queues, flush rings the doorbell. */
	bool batch;
};

/*
 * Find and bring up the NIC: 0 with @n filled, -1 if there is none, and
 * anything wrong with one that is there is a TESTGUEST FAIL.
 */
int vnet_nic_open(struct nic *n);
int e1000_nic_open(struct nic *n);

/* ---- net.c: what the drivers and modes share ---- */
extern struct nic nic;
void put16be(u8 *p, u16 v);
void put32be(u8 *p, u32 v);
u16 get16be(const u8 *p);
u32 get32be(const u8 *p);
u32 csum_add(u32 sum, const u8 *p, u32 n);
u16 csum_fold(u32 sum);	/* folded and complemented */
/* Open the NIC vopt.nic names (or the first found); no NIC is a TESTGUEST FAIL. */
void net_open(void);
/* ARP for 10.0.2.2 until it answers (30 s, then FAIL). */
void net_arp_gateway(void);
/* Send a frame to @dst: our MAC and @type filled in, padded to 60 bytes. */
void net_tx(const u8 *dst, u16 type, u8 *f, u32 len);
/* UDP from 10.0.2.15:5555 to 10.0.2.2:@port, @plen payload bytes at @f + 42. */
void udp_send(u8 *f, u16 port, u32 plen);
/* Who gets the UDP datagrams for port 5555. */
void net_set_udp_handler(void (*fn)(u16 sport, const u8 *p, u32 n));
/* Take every received frame: ARP answered, UDP to the handler. */
void net_poll(void);

/* mode=selftest: 1 when no e1000 is present, 0 when it passed, -1 with @why. */
int e1000_selftest(char *why, u32 whylen);

void netbench_run(void) __attribute__((noreturn));

#endif
