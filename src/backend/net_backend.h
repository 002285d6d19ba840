/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Network backends: where a NIC's Ethernet frames go and come from.  One layer under every
 * network front end (virtio-net, e1000): a front end never opens a socket or a tap itself.
 *
 *	slirp	user-mode networking with libslirp (the default; needs no privileges).  The
 *		guest sits on 10.0.2.0/24 behind NAT: the host/gateway is 10.0.2.2, DNS 10.0.2.3,
 *		DHCP hands out 10.0.2.15.  Options (keys of the device):
 *		  hostfwd=[tcp|udp]:[[HOSTADDR]:]HOSTPORT-[GUESTADDR]:GUESTPORT
 *		forwards a host port into the guest; several rules are separated by ';'
 *		("hostfwd=tcp:2222-:22;udp:5353-:53") or given as hostfwd0= .. hostfwd15=.
 *		HOSTADDR defaults to 127.0.0.1 (0.0.0.0 exposes the port to the network),
 *		GUESTADDR to 10.0.2.15.
 *	tap	a Linux tap interface: tap=NAME, or bhyve's bare form "tapN".  Opened with
 *		IFF_TAP | IFF_NO_PI | IFF_VNET_HDR and a 12-byte virtio-net header, non-blocking.
 *
 * Every backend owns one thread.  It receives frames and hands each one to the device's rx
 * callback, on that thread; the callback must never block on the guest (the device queues a
 * bounded number of frames or drops them).  net_backend_send() may be called from any thread
 * and never blocks either: a frame the backend cannot take right now is dropped, as a busy
 * wire would drop it.
 *
 * libslirp is not thread-safe: every call into a Slirp instance after slirp_new() is made
 * under the backend's slirp lock, by its thread (host sockets, timers) or by a sender that
 * finds the lock free and nothing queued before its frame (the frame then goes to slirp on
 * the sender's thread, without a trip through the backend's).  A sender never waits for
 * that lock: when it is taken, the frame is queued for the thread and an eventfd wakes it.
 * The rx callback is called only by the thread, never from inside net_backend_send(), so a
 * device may hold its own lock while it sends.
 *
 * What every front end shares lives here too: choosing the backend from the device's options
 * (backend=, tap=, hostfwd= only with slirp), the MAC address option and the stable default
 * address, the frame a device sends to announce itself after a restore, and the bounded
 * queue of frames a NIC holds while the guest has no receive buffers.
 */
#ifndef KHYVE_BACKEND_NET_BACKEND_H
#define KHYVE_BACKEND_NET_BACKEND_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NET_MAX_FRAME 65535 /* largest Ethernet frame a backend passes */
#define NET_MAX_HOSTFWD 16

struct net_backend;

/* A frame for the guest (no virtio header), called on the backend's thread. */
typedef void (*net_rx_fn)(void *opaque, const void *frame, size_t len);
/* The value of device option @key, or NULL. */
typedef const char *(*net_opt_fn)(void *ctx, const char *key);
/* The options net_backend_open reads, for the front ends' option lists (keys.h). */
extern const char *const net_options[];

struct net_backend_args {
	/*
	 * "slirp", "tap", "tap0" (bhyve's form), or NULL to take it from the options: the
	 * value of backend=, else "tap" when tap= is given, else "slirp".
	 */
	const char *name;
	const char *dev; /* the device, for messages: "e1000@pci.0.3.0" */
	net_opt_fn opt;	 /* device options: backend, tap, hostfwd... */
	void *opt_ctx;
	unsigned mtu; /* the device's MTU, 0 for the default (1500) */
	net_rx_fn rx;
	void *opaque;
};

struct net_backend_type {
	const char *name;
	const char *usage; /* for error messages: "tap=NAME" */
	/* Set nb->priv and start the thread.  0 or -errno with @err. */
	int (*open)(struct net_backend *nb, const struct net_backend_args *a, char *err,
		    size_t errlen);
	/* Hand one frame to the backend: 0, or -errno when it was dropped. */
	int (*send)(struct net_backend *nb, const void *frame, size_t len);
	/* Stop the thread (no rx callback runs after this returns) and free everything. */
	void (*close)(struct net_backend *nb);
};

struct net_backend {
	const struct net_backend_type *type;
	char dev[48]; /* the device, for messages */
	net_rx_fn rx;
	void *opaque;
	void *priv;
};

/*
 * Open the backend @a->name (or the one the options name).  An unknown name fails with a
 * message that lists the forms; so do both backend= and tap= naming different backends, and
 * hostfwd= on a backend other than slirp.  NULL with @err on failure.
 */
struct net_backend *net_backend_open(const struct net_backend_args *a, char *err, size_t errlen);
int net_backend_send(struct net_backend *nb, const void *frame, size_t len);
void net_backend_close(struct net_backend *nb);

/*
 * Add a backend type (unit tests register a loopback backend this way).  Call before any
 * device opens a backend; at most a few.  0 or -ENOSPC.
 */
int net_backend_register(const struct net_backend_type *t);

/*
 * Tell the network where the guest is after a restore (the guest does not know it moved):
 * a gratuitous ARP for @ipv4 (host byte order) from @mac when the device knows the guest's
 * address, which also refreshes the ARP cache of a restored slirp, else a RARP from @mac as
 * QEMU's self-announce sends, so that bridges behind a tap learn where the MAC went.
 */
int net_backend_announce(struct net_backend *nb, const uint8_t mac[6], uint32_t ipv4);

/* ---- MAC addresses ---- */

/* Exactly "xx:xx:xx:xx:xx:xx", unicast and not all zero.  0 or -EINVAL. */
int net_mac_parse(const char *s, uint8_t mac[6]);
/* A unicast, not all-zero address? */
bool net_mac_valid(const uint8_t mac[6]);
/*
 * The address of a NIC without mac=: derived from the VM name and the PCI slot and function,
 * so the same VM gets the same address every run.  The prefix 52:4b:48 is locally
 * administered (bit 1 of the first byte): it can clash with no vendor's card.
 */
void net_mac_default(const char *vm_name, unsigned slot, unsigned func, uint8_t mac[6]);

/* ---- a NIC's receive FIFO ---- */

struct net_frame {
	struct net_frame *next;
	size_t len;
	uint8_t data[];
};

/*
 * Frames a device holds for the guest until it has receive buffers, bounded as a NIC's
 * packet buffer is: beyond @max_frames or @max_bytes a frame is refused (the device counts
 * it as dropped).  The caller locks.
 */
struct net_rxq {
	struct net_frame *head, **tail;
	unsigned n, max_frames;
	size_t bytes, max_bytes;
};

void net_rxq_init(struct net_rxq *q, unsigned max_frames, size_t max_bytes);
/* Append a copy of @frame: 0, or -ENOBUFS (full) / -ENOMEM, and the frame is not queued. */
int net_rxq_push(struct net_rxq *q, const void *frame, size_t len);
/* The oldest frame, or NULL. */
static inline const struct net_frame *net_rxq_peek(const struct net_rxq *q)
{
	return q->head;
}
/* Drop the oldest frame (after it was delivered or refused). */
void net_rxq_pop(struct net_rxq *q);
void net_rxq_clear(struct net_rxq *q);

/* One port forwarding rule of the slirp backend. */
struct net_hostfwd {
	bool udp;
	struct in_addr host_addr, guest_addr; /* guest_addr 0: the DHCP address */
	uint16_t host_port, guest_port;
};

/* Parse one rule "[tcp|udp]:[[HOSTADDR]:]HOSTPORT-[GUESTADDR]:GUESTPORT".  0 or -EINVAL. */
int net_hostfwd_parse(const char *spec, struct net_hostfwd *fw, char *err, size_t errlen);

#endif
