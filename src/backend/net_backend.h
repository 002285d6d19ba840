/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Network backends: where a virtio-net device's Ethernet frames go and come from.
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
 * libslirp is not thread-safe: every call into a Slirp instance after slirp_new() is made on
 * the slirp backend's own thread; frames from the guest are handed to it through a queue and
 * an eventfd.
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

struct net_backend_args {
	const char *name; /* "slirp", "tap", "tap0" (bhyve's form) */
	net_opt_fn opt;	  /* device options: tap, hostfwd... */
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
	net_rx_fn rx;
	void *opaque;
	void *priv;
};

/*
 * Open the backend @a->name.  An unknown name fails with a message that lists the forms.
 * NULL with @err on failure.
 */
struct net_backend *net_backend_open(const struct net_backend_args *a, char *err, size_t errlen);
int net_backend_send(struct net_backend *nb, const void *frame, size_t len);
void net_backend_close(struct net_backend *nb);

/*
 * Add a backend type (unit tests register a loopback backend this way).  Call before any
 * device opens a backend; at most a few.  0 or -ENOSPC.
 */
int net_backend_register(const struct net_backend_type *t);

/* One port forwarding rule of the slirp backend. */
struct net_hostfwd {
	bool udp;
	struct in_addr host_addr, guest_addr; /* guest_addr 0: the DHCP address */
	uint16_t host_port, guest_port;
};

/* Parse one rule "[tcp|udp]:[[HOSTADDR]:]HOSTPORT-[GUESTADDR]:GUESTPORT".  0 or -EINVAL. */
int net_hostfwd_parse(const char *spec, struct net_hostfwd *fw, char *err, size_t errlen);

#endif
