// SPDX-License-Identifier: BSD-2-Clause
/*
 * Network backends (see net_backend.h): the type registry and the choice of a backend from a
 * device's options, hostfwd rules, slirp and tap, and what the front ends share: MAC
 * addresses, the announce frame, the receive FIFO.
 */
#include "backend/net_backend.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <slirp/libslirp.h>

#include "log.h"

#define NET_EXTRA_TYPES 4
#define VNET_HDR_LEN 12 /* struct virtio_net_hdr_v1, what the tap fd carries */

static const struct net_backend_type net_slirp_type;
static const struct net_backend_type net_tap_type;
static const struct net_backend_type *net_extra_types[NET_EXTRA_TYPES];

/* ---- helpers shared by the backends ---- */

static void wake(int fd)
{
	uint64_t one = 1;

	/* Only fails with EAGAIN when the counter is huge: a wake-up is pending anyway. */
	if (write(fd, &one, sizeof(one)) < 0)
		return;
}

static void drain_wake(int fd)
{
	uint64_t v;

	if (read(fd, &v, sizeof(v)) < 0)
		return;
}

/*
 * Start a backend thread with every signal blocked: devices are created before khyve blocks
 * SIGTERM/SIGINT for its signalfd, and a thread that could take them would die of them
 * instead of letting the VM shut down in order.
 */
static int start_thread(pthread_t *t, void *(*fn)(void *), void *arg)
{
	sigset_t all, old;
	int ret;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	ret = pthread_create(t, NULL, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return -ret;
}

/* ---- hostfwd rules ---- */

static int parse_port(const char *s, uint16_t *port)
{
	char *end;
	unsigned long v;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || v == 0 || v > 65535)
		return -EINVAL;
	*port = (uint16_t)v;
	return 0;
}

/* "[ADDR]:PORT" or "PORT": an empty or missing ADDR leaves *addr alone. */
static int parse_addr_port(char *s, struct in_addr *addr, uint16_t *port)
{
	char *colon = strrchr(s, ':');

	if (colon) {
		*colon = '\0';
		if (*s && inet_pton(AF_INET, s, addr) != 1)
			return -EINVAL;
		s = colon + 1;
	}
	return parse_port(s, port);
}

int net_hostfwd_parse(const char *spec, struct net_hostfwd *fw, char *err, size_t errlen)
{
	char buf[128], *p = buf, *dash;

	memset(fw, 0, sizeof(*fw));
	/* Loopback unless asked: a forwarded guest port is not exposed to the network. */
	fw->host_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (strlen(spec) >= sizeof(buf))
		goto bad;
	strcpy(buf, spec);
	if (!strncmp(p, "tcp:", 4)) {
		p += 4;
	} else if (!strncmp(p, "udp:", 4)) {
		fw->udp = true;
		p += 4;
	}
	dash = strchr(p, '-');
	if (!dash)
		goto bad;
	*dash = '\0';
	if (parse_addr_port(p, &fw->host_addr, &fw->host_port) ||
	    parse_addr_port(dash + 1, &fw->guest_addr, &fw->guest_port))
		goto bad;
	return 0;
bad:
	snprintf(err, errlen,
		 "bad hostfwd rule '%s' (want "
		 "[tcp|udp]:[[HOSTADDR]:]HOSTPORT-[GUESTADDR]:GUESTPORT, e.g. tcp:2222-:22)",
		 spec);
	return -EINVAL;
}

/* ---- slirp ---- */

#define SLIRP_NET 0x0A000200U /* 10.0.2.0/24 */
#define SLIRP_MASK 0xFFFFFF00U
#define SLIRP_HOST 0x0A000202U	     /* 10.0.2.2: gateway, the host */
#define SLIRP_DNS 0x0A000203U	     /* 10.0.2.3 */
#define SLIRP_DHCP_START 0x0A00020FU /* 10.0.2.15: the guest */
#define SLIRP_TXQ_MAX 256	     /* frames from the guest not yet handed to slirp */
#define SLIRP_MAX_GUEST_ERRORS 8     /* messages printed, then silence */
#define SLIRP_MTU_MIN 68
#define SLIRP_MTU_MAX 65521 /* libslirp's IF_MTU_MAX */

struct slirp_timer {
	struct slirp_timer *next;
	SlirpTimerCb cb;
	void *cb_opaque;
	int64_t expire_ms; /* -1: not armed */
};

struct slirp_frame {
	struct slirp_frame *next;
	size_t len;
	uint8_t data[];
};

/*
 * Two ways into slirp, serialized by slock: the backend's thread (host sockets, timers, frames
 * queued for it), and a sender calling slirp_input() itself when slock is free and nothing
 * is queued before its frame, which saves the guest's frame a trip through another thread
 * (the latency a windowed stream pays per round trip).  A sender may hold its device's lock,
 * so it only ever tries slock; and frames slirp produces during such a call (an ARP reply)
 * are not handed to the device there and then, but queued for the thread to deliver.
 */
struct slirp_be {
	struct net_backend *nb;
	Slirp *slirp;
	pthread_t thread;
	bool started;
	int wakefd;

	pthread_mutex_t lock; /* txq, ntx, woken, stop */
	struct slirp_frame *txq, **txq_tail;
	unsigned ntx;
	bool woken; /* the thread was woken and has not looked at txq yet */
	bool stop;

	pthread_mutex_t slock; /* every call into slirp, and what slirp's callbacks touch */
	struct slirp_frame *rxq, **rxq_tail; /* for the guest, from inside a sender's call */
	bool kick; /* a sender's call changed what the thread must poll or deliver */
	struct pollfd *pfd;
	unsigned npfd, pfd_cap;
	struct slirp_timer *timers;
	unsigned guest_errors;
};

/* The backend whose slirp this thread is calling as a sender (not as the slirp thread). */
static __thread struct slirp_be *slirp_sender;

/*
 * Slirp's timers drive TCP retransmissions against real host sockets, so they follow the
 * host's clock, not the VM's virtual clock (which jumps on restore).  Slirp's connection
 * state is not part of a snapshot anyway.
 */
static int64_t slirp_cb_clock_ns(void *opaque)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static ssize_t slirp_cb_send(const void *buf, size_t len, void *opaque)
{
	struct slirp_be *s = opaque;
	struct slirp_frame *f;

	if (slirp_sender != s) {
		s->nb->rx(s->nb->opaque, buf, len);
		return (ssize_t)len;
	}
	/* The sender may hold its device's lock: the thread delivers this one. */
	f = malloc(sizeof(*f) + len);
	if (f) {
		f->next = NULL;
		f->len = len;
		memcpy(f->data, buf, len);
		*s->rxq_tail = f;
		s->rxq_tail = &f->next;
	}
	s->kick = true;
	return (ssize_t)len;
}

/* A sender's call made a socket or moved a timer: the thread's poll must be redone. */
static void slirp_changed(struct slirp_be *s)
{
	if (slirp_sender == s)
		s->kick = true;
}

static void slirp_cb_guest_error(const char *msg, void *opaque)
{
	struct slirp_be *s = opaque;

	/* The guest controls how often this happens: print a few, not a flood. */
	if (s->guest_errors++ < SLIRP_MAX_GUEST_ERRORS)
		log_warn("%s: slirp: guest error: %s", s->nb->dev, msg);
}

static void *slirp_cb_timer_new(SlirpTimerCb cb, void *cb_opaque, void *opaque)
{
	struct slirp_be *s = opaque;
	struct slirp_timer *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->cb = cb;
	t->cb_opaque = cb_opaque;
	t->expire_ms = -1;
	t->next = s->timers;
	s->timers = t;
	slirp_changed(s);
	return t;
}

static void slirp_cb_timer_free(void *timer, void *opaque)
{
	struct slirp_be *s = opaque;

	for (struct slirp_timer **pp = &s->timers; *pp; pp = &(*pp)->next) {
		if (*pp == timer) {
			*pp = (*pp)->next;
			free(timer);
			return;
		}
	}
}

static void slirp_cb_timer_mod(void *timer, int64_t expire_ms, void *opaque)
{
	struct slirp_timer *t = timer;

	if (t)
		t->expire_ms = expire_ms < 0 ? 0 : expire_ms;
	slirp_changed(opaque);
}

/* Slirp's fds are collected afresh each iteration by slirp_pollfds_fill. */
static void slirp_cb_register_fd(int fd, void *opaque)
{
	slirp_changed(opaque);
}

static void slirp_cb_unregister_fd(int fd, void *opaque)
{
}

static void slirp_cb_notify(void *opaque)
{
	struct slirp_be *s = opaque;

	wake(s->wakefd);
}

static const SlirpCb slirp_callbacks = {
	.send_packet = slirp_cb_send,
	.guest_error = slirp_cb_guest_error,
	.clock_get_ns = slirp_cb_clock_ns,
	.timer_new = slirp_cb_timer_new,
	.timer_free = slirp_cb_timer_free,
	.timer_mod = slirp_cb_timer_mod,
	.register_poll_fd = slirp_cb_register_fd,
	.unregister_poll_fd = slirp_cb_unregister_fd,
	.notify = slirp_cb_notify,
};

static int slirp_add_poll(int fd, int events, void *opaque)
{
	struct slirp_be *s = opaque;
	struct pollfd *p;

	if (s->npfd == s->pfd_cap) {
		unsigned cap = s->pfd_cap * 2;

		p = realloc(s->pfd, cap * sizeof(*p));
		if (!p)
			return -1; /* slirp then skips this socket for one round */
		s->pfd = p;
		s->pfd_cap = cap;
	}
	p = &s->pfd[s->npfd];
	p->fd = fd;
	p->events = (short)(((events & SLIRP_POLL_IN) ? POLLIN : 0) |
			    ((events & SLIRP_POLL_OUT) ? POLLOUT : 0) |
			    ((events & SLIRP_POLL_PRI) ? POLLPRI : 0));
	p->revents = 0;
	return (int)s->npfd++;
}

static int slirp_get_revents(int idx, void *opaque)
{
	struct slirp_be *s = opaque;
	short r;

	if (idx < 1 || (unsigned)idx >= s->npfd)
		return 0;
	r = s->pfd[idx].revents;
	return ((r & POLLIN) ? SLIRP_POLL_IN : 0) | ((r & POLLOUT) ? SLIRP_POLL_OUT : 0) |
	       ((r & POLLPRI) ? SLIRP_POLL_PRI : 0) | ((r & POLLERR) ? SLIRP_POLL_ERR : 0) |
	       ((r & POLLHUP) ? SLIRP_POLL_HUP : 0);
}

static int64_t now_ms(void)
{
	return slirp_cb_clock_ns(NULL) / 1000000;
}

/* Poll timeout: slirp's own wish, shortened to the next timer. */
static int slirp_timeout_ms(struct slirp_be *s, uint32_t slirp_ms)
{
	int64_t t = slirp_ms == UINT32_MAX ? -1 : (int64_t)slirp_ms, now = now_ms();

	for (struct slirp_timer *tm = s->timers; tm; tm = tm->next) {
		int64_t left;

		if (tm->expire_ms < 0)
			continue;
		left = tm->expire_ms > now ? tm->expire_ms - now : 0;
		if (t < 0 || left < t)
			t = left;
	}
	return t > INT_MAX ? INT_MAX : (int)t;
}

/* Fire due timers one at a time: a callback may modify or free any timer. */
static void slirp_run_timers(struct slirp_be *s)
{
	int64_t now = now_ms();
	struct slirp_timer *t;

	for (;;) {
		for (t = s->timers; t; t = t->next)
			if (t->expire_ms >= 0 && t->expire_ms <= now)
				break;
		if (!t)
			return;
		t->expire_ms = -1;
		t->cb(t->cb_opaque);
	}
}

/* Hand the guest's queued frames to slirp.  True when the backend is closing.  slock held. */
static bool slirp_drain_tx(struct slirp_be *s)
{
	struct slirp_frame *f, *next;
	bool stop;

	pthread_mutex_lock(&s->lock);
	f = s->txq;
	s->txq = NULL;
	s->txq_tail = &s->txq;
	s->ntx = 0;
	s->woken = false;
	stop = s->stop;
	pthread_mutex_unlock(&s->lock);
	for (; f; f = next) {
		next = f->next;
		if (!stop)
			slirp_input(s->slirp, f->data, (int)f->len);
		free(f);
	}
	return stop;
}

/* Frames slirp made during a sender's call, for the guest.  slock held. */
static void slirp_deliver(struct slirp_be *s, bool drop)
{
	struct slirp_frame *f = s->rxq, *next;

	s->rxq = NULL;
	s->rxq_tail = &s->rxq;
	for (; f; f = next) {
		next = f->next;
		if (!drop)
			s->nb->rx(s->nb->opaque, f->data, f->len);
		free(f);
	}
}

static void *slirp_thread(void *arg)
{
	struct slirp_be *s = arg;

	for (;;) {
		uint32_t timeout = UINT32_MAX;
		int ret, ms;

		pthread_mutex_lock(&s->slock);
		s->kick = false;
		s->pfd[0].fd = s->wakefd;
		s->pfd[0].events = POLLIN;
		s->pfd[0].revents = 0;
		s->npfd = 1;
		slirp_pollfds_fill(s->slirp, &timeout, slirp_add_poll, s);
		ms = slirp_timeout_ms(s, timeout);
		pthread_mutex_unlock(&s->slock);
		ret = poll(s->pfd, s->npfd, ms);
		if (ret > 0 && (s->pfd[0].revents & POLLIN))
			drain_wake(s->wakefd);
		pthread_mutex_lock(&s->slock);
		if (slirp_drain_tx(s)) {
			pthread_mutex_unlock(&s->slock);
			break;
		}
		slirp_pollfds_poll(s->slirp, ret < 0, slirp_get_revents, s);
		slirp_run_timers(s);
		slirp_deliver(s, false);
		pthread_mutex_unlock(&s->slock);
	}
	return NULL;
}

/* Is this an IPv4 UDP frame, which slirp sends on at once and then forgets? */
static bool slirp_fire_and_forget(const uint8_t *f, size_t len)
{
	return len >= 34 && f[12] == 0x08 && f[13] == 0x00 && f[23] == 17;
}

static int slirp_send(struct net_backend *nb, const void *frame, size_t len)
{
	struct slirp_be *s = nb->priv;
	struct slirp_frame *f;
	bool wake_it = false;

	if (len > NET_MAX_FRAME)
		return -EMSGSIZE;
	pthread_mutex_lock(&s->lock);
	if (s->stop) {
		pthread_mutex_unlock(&s->lock);
		return -ENOBUFS;
	}
	/* Straight into slirp when nothing queued must go first and the thread is not in it. */
	if (!s->txq && !pthread_mutex_trylock(&s->slock)) {
		pthread_mutex_unlock(&s->lock);
		slirp_sender = s;
		slirp_input(s->slirp, frame, (int)len);
		slirp_sender = NULL;
		/*
		 * The thread must look again when slirp made frames for the guest or sockets or
		 * timers, and after anything but UDP (TCP keeps state it flushes later).
		 */
		wake_it = s->kick || !slirp_fire_and_forget(frame, len);
		s->kick = false;
		pthread_mutex_unlock(&s->slock);
		if (wake_it) {
			pthread_mutex_lock(&s->lock);
			wake_it = !s->woken;
			s->woken = true;
			pthread_mutex_unlock(&s->lock);
		}
		if (wake_it)
			wake(s->wakefd);
		return 0;
	}
	if (s->ntx >= SLIRP_TXQ_MAX || !(f = malloc(sizeof(*f) + len))) {
		pthread_mutex_unlock(&s->lock);
		return -ENOBUFS;
	}
	f->next = NULL;
	f->len = len;
	memcpy(f->data, frame, len);
	*s->txq_tail = f;
	s->txq_tail = &f->next;
	s->ntx++;
	/* One wake-up per batch: a burst of frames costs the sender one syscall, not one each. */
	wake_it = !s->woken;
	s->woken = true;
	pthread_mutex_unlock(&s->lock);
	if (wake_it)
		wake(s->wakefd);
	return 0;
}

static void slirp_free(struct slirp_be *s)
{
	struct slirp_timer *t, *next;

	pthread_mutex_lock(&s->lock);
	s->stop = true;
	pthread_mutex_unlock(&s->lock);
	if (s->started) {
		wake(s->wakefd);
		pthread_join(s->thread, NULL);
	}
	/* A sender still inside slirp finishes first; stop turns away any later one. */
	pthread_mutex_lock(&s->slock);
	slirp_drain_tx(s); /* frees what is left; stop is set, so nothing reaches slirp */
	slirp_deliver(s, true);
	pthread_mutex_unlock(&s->slock);
	/* The thread is gone and senders are refused: slirp is ours alone from here. */
	if (s->slirp)
		slirp_cleanup(s->slirp);
	for (t = s->timers; t; t = next) {
		next = t->next;
		free(t);
	}
	if (s->wakefd >= 0)
		close(s->wakefd);
	pthread_mutex_destroy(&s->lock);
	pthread_mutex_destroy(&s->slock);
	free(s->pfd);
	free(s);
}

/* Collect the rules of "hostfwd" (';'-separated) and "hostfwd0".."hostfwd15". */
static int slirp_collect_fwd(const struct net_backend_args *a, struct net_hostfwd *fw, unsigned *n,
			     char *err, size_t errlen)
{
	char key[16], *copy, *tok, *save = NULL;
	const char *v;
	int ret = 0;

	*n = 0;
	for (int i = -1; i < NET_MAX_HOSTFWD && !ret; i++) {
		if (i < 0)
			snprintf(key, sizeof(key), "hostfwd");
		else
			snprintf(key, sizeof(key), "hostfwd%d", i);
		v = a->opt ? a->opt(a->opt_ctx, key) : NULL;
		if (!v)
			continue;
		copy = strdup(v);
		if (!copy)
			return -ENOMEM;
		for (tok = strtok_r(copy, ";", &save); tok && !ret;
		     tok = strtok_r(NULL, ";", &save)) {
			if (*n == NET_MAX_HOSTFWD) {
				snprintf(err, errlen, "too many hostfwd rules (at most %d)",
					 NET_MAX_HOSTFWD);
				ret = -E2BIG;
				break;
			}
			ret = net_hostfwd_parse(tok, &fw[*n], err, errlen);
			if (!ret && fw[*n].guest_addr.s_addr &&
			    (ntohl(fw[*n].guest_addr.s_addr) & SLIRP_MASK) != SLIRP_NET) {
				snprintf(err, errlen,
					 "hostfwd rule '%s': the guest address must "
					 "be in 10.0.2.0/24",
					 tok);
				ret = -EINVAL;
			}
			if (!ret)
				(*n)++;
		}
		free(copy);
	}
	return ret;
}

static int slirp_add_fwds(struct slirp_be *s, const struct net_hostfwd *fw, unsigned n, char *err,
			  size_t errlen)
{
	for (unsigned i = 0; i < n; i++) {
		char host[INET_ADDRSTRLEN];

		if (slirp_add_hostfwd(s->slirp, fw[i].udp, fw[i].host_addr, fw[i].host_port,
				      fw[i].guest_addr, fw[i].guest_port) == 0)
			continue;
		inet_ntop(AF_INET, &fw[i].host_addr, host, sizeof(host));
		snprintf(err, errlen, "hostfwd: cannot listen on %s %s:%u (port in use?)",
			 fw[i].udp ? "udp" : "tcp", host, fw[i].host_port);
		return -EADDRINUSE;
	}
	return 0;
}

static int slirp_open(struct net_backend *nb, const struct net_backend_args *a, char *err,
		      size_t errlen)
{
	struct net_hostfwd fw[NET_MAX_HOSTFWD];
	SlirpConfig cfg = { .version = 3 };
	struct slirp_be *s;
	unsigned nfw;
	int ret;

	if (a->mtu && (a->mtu < SLIRP_MTU_MIN || a->mtu > SLIRP_MTU_MAX)) {
		snprintf(err, errlen, "slirp supports an mtu of %d to %d", SLIRP_MTU_MIN,
			 SLIRP_MTU_MAX);
		return -EINVAL;
	}
	ret = slirp_collect_fwd(a, fw, &nfw, err, errlen);
	if (ret)
		return ret;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->nb = nb;
	s->txq_tail = &s->txq;
	s->rxq_tail = &s->rxq;
	pthread_mutex_init(&s->lock, NULL);
	pthread_mutex_init(&s->slock, NULL);
	s->pfd_cap = 16;
	s->pfd = calloc(s->pfd_cap, sizeof(*s->pfd));
	s->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (!s->pfd || s->wakefd < 0) {
		ret = s->pfd ? -errno : -ENOMEM;
		snprintf(err, errlen, "slirp: %s", strerror(-ret));
		goto fail;
	}

	cfg.in_enabled = true;
	cfg.vnetwork.s_addr = htonl(SLIRP_NET);
	cfg.vnetmask.s_addr = htonl(SLIRP_MASK);
	cfg.vhost.s_addr = htonl(SLIRP_HOST);
	cfg.vdhcp_start.s_addr = htonl(SLIRP_DHCP_START);
	cfg.vnameserver.s_addr = htonl(SLIRP_DNS);
	cfg.if_mtu = a->mtu; /* 0: libslirp's default, 1500 */
	cfg.if_mru = a->mtu;
	s->slirp = slirp_new(&cfg, &slirp_callbacks, s);
	if (!s->slirp) {
		snprintf(err, errlen, "slirp: cannot create the user-mode network stack");
		ret = -ENOMEM;
		goto fail;
	}
	ret = slirp_add_fwds(s, fw, nfw, err, errlen);
	if (ret)
		goto fail;
	nb->priv = s;
	ret = start_thread(&s->thread, slirp_thread, s);
	if (ret) {
		snprintf(err, errlen, "slirp: cannot start its thread: %s", strerror(-ret));
		goto fail;
	}
	s->started = true;
	return 0;
fail:
	nb->priv = NULL;
	slirp_free(s);
	return ret;
}

static void slirp_close(struct net_backend *nb)
{
	slirp_free(nb->priv);
}

static const struct net_backend_type net_slirp_type = {
	.name = "slirp",
	.usage = "slirp[,hostfwd=tcp:HOSTPORT-:GUESTPORT]",
	.open = slirp_open,
	.send = slirp_send,
	.close = slirp_close,
};

/* ---- tap ---- */

#define TAP_ERROR_PAUSE_NS 10000000L /* after an unexpected read error */

struct tap_be {
	struct net_backend *nb;
	int fd, wakefd;
	pthread_t thread;
	atomic_bool stop;
	char ifname[IFNAMSIZ];
	uint8_t buf[VNET_HDR_LEN + NET_MAX_FRAME]; /* the thread's receive buffer */
};

/* Read every frame that is ready; frames arrive with a virtio-net header we drop. */
static void tap_read_all(struct tap_be *t)
{
	for (;;) {
		ssize_t n = read(t->fd, t->buf, sizeof(t->buf));

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN) {
				/* Do not spin on a persistent error (interface gone). */
				struct timespec ts = { 0, TAP_ERROR_PAUSE_NS };

				nanosleep(&ts, NULL);
			}
			return;
		}
		if ((size_t)n > VNET_HDR_LEN)
			t->nb->rx(t->nb->opaque, t->buf + VNET_HDR_LEN, (size_t)n - VNET_HDR_LEN);
	}
}

static void *tap_thread(void *arg)
{
	struct tap_be *t = arg;
	struct pollfd p[2] = {
		{ .fd = t->fd, .events = POLLIN },
		{ .fd = t->wakefd, .events = POLLIN },
	};

	while (!atomic_load(&t->stop)) {
		if (poll(p, 2, -1) < 0)
			continue;
		if (p[1].revents & POLLIN)
			drain_wake(t->wakefd);
		if (p[0].revents && !atomic_load(&t->stop))
			tap_read_all(t);
	}
	return NULL;
}

static int tap_send(struct net_backend *nb, const void *frame, size_t len)
{
	struct tap_be *t = nb->priv;
	/* No offloads are negotiated: an all-zero header says "plain frame". */
	static const uint8_t hdr[VNET_HDR_LEN];
	struct iovec iov[2] = {
		{ .iov_base = (void *)hdr, .iov_len = sizeof(hdr) },
		{ .iov_base = (void *)frame, .iov_len = len },
	};

	if (len > NET_MAX_FRAME)
		return -EMSGSIZE;
	if (writev(t->fd, iov, 2) < 0)
		return -errno; /* EAGAIN: the queue is full, the frame is dropped */
	return 0;
}

static int tap_attach(struct tap_be *t, char *err, size_t errlen)
{
	struct ifreq ifr;
	int hdrsz = VNET_HDR_LEN, ret;

	t->fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (t->fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "tap %s: /dev/net/tun: %s", t->ifname, strerror(errno));
		return ret;
	}
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	memcpy(ifr.ifr_name, t->ifname, sizeof(t->ifname));
	if (ioctl(t->fd, TUNSETIFF, &ifr) < 0) {
		ret = -errno;
		snprintf(err, errlen,
			 "tap %s: cannot attach: %s (create it first with "
			 "'ip tuntap add %s mode tap user $USER', or run as root)",
			 t->ifname, strerror(errno), t->ifname);
		return ret;
	}
	if (ioctl(t->fd, TUNSETVNETHDRSZ, &hdrsz) < 0) {
		ret = -errno;
		snprintf(err, errlen, "tap %s: TUNSETVNETHDRSZ: %s", t->ifname, strerror(errno));
		return ret;
	}
	return 0;
}

static void tap_free(struct tap_be *t)
{
	if (t->fd >= 0)
		close(t->fd);
	if (t->wakefd >= 0)
		close(t->wakefd);
	free(t);
}

static int tap_open(struct net_backend *nb, const struct net_backend_args *a, char *err,
		    size_t errlen)
{
	const char *ifname = a->opt ? a->opt(a->opt_ctx, "tap") : NULL;
	struct tap_be *t;
	int ret;

	/* bhyve's "-s 3,virtio-net,tap0": the backend name is the interface. */
	if ((!ifname || !*ifname) && strcmp(a->name, "tap"))
		ifname = a->name;
	if (!ifname || !*ifname || strlen(ifname) >= IFNAMSIZ) {
		snprintf(err, errlen, "tap: %s interface name (tap=NAME, at most %d characters)",
			 ifname && *ifname ? "bad" : "missing", IFNAMSIZ - 1);
		return -EINVAL;
	}
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->nb = nb;
	t->fd = -1;
	strcpy(t->ifname, ifname);
	atomic_init(&t->stop, false);
	t->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (t->wakefd < 0) {
		ret = -errno;
		snprintf(err, errlen, "tap %s: eventfd: %s", ifname, strerror(errno));
		goto fail;
	}
	ret = tap_attach(t, err, errlen);
	if (ret)
		goto fail;
	nb->priv = t;
	ret = start_thread(&t->thread, tap_thread, t);
	if (ret) {
		snprintf(err, errlen, "tap %s: cannot start its thread: %s", ifname,
			 strerror(-ret));
		goto fail;
	}
	return 0;
fail:
	nb->priv = NULL;
	tap_free(t);
	return ret;
}

static void tap_close(struct net_backend *nb)
{
	struct tap_be *t = nb->priv;

	atomic_store(&t->stop, true);
	wake(t->wakefd);
	pthread_join(t->thread, NULL);
	tap_free(t);
}

static const struct net_backend_type net_tap_type = {
	.name = "tap",
	.usage = "tap=NAME or tapN",
	.open = tap_open,
	.send = tap_send,
	.close = tap_close,
};

/* ---- the registry ---- */

int net_backend_register(const struct net_backend_type *t)
{
	for (unsigned i = 0; i < NET_EXTRA_TYPES; i++) {
		if (net_extra_types[i] == t)
			return 0;
		if (!net_extra_types[i]) {
			net_extra_types[i] = t;
			return 0;
		}
	}
	return -ENOSPC;
}

static const struct net_backend_type *net_find_type(const char *name)
{
	if (!strcmp(name, "slirp"))
		return &net_slirp_type;
	if (!strncmp(name, "tap", 3))
		return &net_tap_type;
	for (unsigned i = 0; i < NET_EXTRA_TYPES && net_extra_types[i]; i++)
		if (!strcmp(name, net_extra_types[i]->name))
			return net_extra_types[i];
	return NULL;
}

const char *const net_options[] = {
	"backend",   "tap",	  "hostfwd",   "hostfwd0",  "hostfwd1",	 "hostfwd2", "hostfwd3",
	"hostfwd4",  "hostfwd5",  "hostfwd6",  "hostfwd7",  "hostfwd8",	 "hostfwd9", "hostfwd10",
	"hostfwd11", "hostfwd12", "hostfwd13", "hostfwd14", "hostfwd15", NULL,
};
_Static_assert(sizeof(net_options) / sizeof(net_options[0]) == 4 + NET_MAX_HOSTFWD,
	       "net_options lists hostfwd0 .. hostfwd(NET_MAX_HOSTFWD - 1)");

/* An option given empty counts as not given: a restore can drop a saved hostfwd= or tap=. */
static const char *net_opt(const struct net_backend_args *a, const char *key)
{
	const char *v = a->opt ? a->opt(a->opt_ctx, key) : NULL;

	return v && *v ? v : NULL;
}

/* backend=NAME, or tap=NAME alone; slirp when neither is given.  NULL with @err. */
static const char *net_choose(const struct net_backend_args *a, char *err, size_t errlen)
{
	const char *be = net_opt(a, "backend"), *tap = net_opt(a, "tap");
	const char *name = a->name ? a->name : be ? be : tap ? "tap" : "slirp";

	if (!a->name && be && tap && strcmp(be, "tap")) {
		snprintf(err, errlen, "both backend '%s' and tap=%s given", be, tap);
		return NULL;
	}
	if (strcmp(name, "slirp") && (net_opt(a, "hostfwd") || net_opt(a, "hostfwd0"))) {
		snprintf(err, errlen,
			 "hostfwd needs the slirp backend, not '%s' (restoring onto another "
			 "backend: give hostfwd= empty)",
			 name);
		return NULL;
	}
	return name;
}

struct net_backend *net_backend_open(const struct net_backend_args *a, char *err, size_t errlen)
{
	const char *name = net_choose(a, err, errlen);
	const struct net_backend_type *t = name ? net_find_type(name) : NULL;
	struct net_backend_args args = *a;
	struct net_backend *nb;
	char e[200] = "";
	int ret;

	if (!name)
		return NULL;
	if (!t) {
		snprintf(err, errlen, "unknown backend '%s' (use %s, %s)", name,
			 net_slirp_type.usage, net_tap_type.usage);
		return NULL;
	}
	nb = calloc(1, sizeof(*nb));
	if (!nb) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	args.name = name;
	nb->type = t;
	snprintf(nb->dev, sizeof(nb->dev), "%s", a->dev ? a->dev : "network device");
	nb->rx = a->rx;
	nb->opaque = a->opaque;
	ret = t->open(nb, &args, e, sizeof(e));
	if (ret) {
		/* Not every failure has its own words (out of memory): never an empty message. */
		if (!e[0])
			snprintf(e, sizeof(e), "%s backend: %s", t->name, strerror(-ret));
		snprintf(err, errlen, "%s", e);
		free(nb);
		return NULL;
	}
	return nb;
}

int net_backend_send(struct net_backend *nb, const void *frame, size_t len)
{
	return nb->type->send(nb, frame, len);
}

void net_backend_close(struct net_backend *nb)
{
	if (!nb)
		return;
	nb->type->close(nb);
	free(nb);
}

/* ---- announcing the guest after a restore ---- */

#define ETH_P_ARP 0x0806
#define ETH_P_RARP 0x8035
#define ARP_REQUEST 1
#define RARP_REQUEST 3

static void put_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put_be32(uint8_t *p, uint32_t v)
{
	put_be16(p, (uint16_t)(v >> 16));
	put_be16(p + 2, (uint16_t)v);
}

int net_backend_announce(struct net_backend *nb, const uint8_t mac[6], uint32_t ipv4)
{
	uint8_t f[60] = { 0 }; /* the minimum frame, zero padded */
	uint8_t *a = f + 14;

	memset(f, 0xFF, 6); /* broadcast */
	memcpy(f + 6, mac, 6);
	put_be16(f + 12, ipv4 ? ETH_P_ARP : ETH_P_RARP);
	put_be16(a, 1);		 /* hardware: Ethernet */
	put_be16(a + 2, 0x0800); /* protocol: IPv4 */
	a[4] = 6;
	a[5] = 4;
	put_be16(a + 6, ipv4 ? ARP_REQUEST : RARP_REQUEST);
	memcpy(a + 8, mac, 6); /* sender hardware address */
	/* Gratuitous: sender and target protocol address are both the guest's. */
	put_be32(a + 14, ipv4);
	if (!ipv4)
		memcpy(a + 18, mac, 6); /* RARP: "who am I" about our own address */
	put_be32(a + 24, ipv4);
	return net_backend_send(nb, f, sizeof(f));
}

/* ---- MAC addresses ---- */

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

bool net_mac_valid(const uint8_t mac[6])
{
	static const uint8_t zero[6];

	return !(mac[0] & 1) && memcmp(mac, zero, sizeof(zero));
}

int net_mac_parse(const char *s, uint8_t mac[6])
{
	uint8_t m[6];

	if (strlen(s) != 17)
		return -EINVAL;
	for (int i = 0; i < 6; i++) {
		int hi = hexval(s[3 * i]), lo = hexval(s[3 * i + 1]);

		if (hi < 0 || lo < 0 || (i < 5 && s[3 * i + 2] != ':'))
			return -EINVAL;
		m[i] = (uint8_t)(hi << 4 | lo);
	}
	if (!net_mac_valid(m))
		return -EINVAL;
	memcpy(mac, m, 6);
	return 0;
}

void net_mac_default(const char *vm_name, unsigned slot, unsigned func, uint8_t mac[6])
{
	char key[160];
	uint32_t h = 2166136261U; /* FNV-1a */

	snprintf(key, sizeof(key), "%s/%u/%u", vm_name ? vm_name : "vm", slot, func);
	for (const char *p = key; *p; p++)
		h = (h ^ (uint8_t)*p) * 16777619U;
	mac[0] = 0x52;
	mac[1] = 0x4B;
	mac[2] = 0x48;
	mac[3] = (uint8_t)(h >> 16);
	mac[4] = (uint8_t)(h >> 8);
	mac[5] = (uint8_t)h;
}

/* ---- the receive FIFO ---- */

void net_rxq_init(struct net_rxq *q, unsigned max_frames, size_t max_bytes)
{
	memset(q, 0, sizeof(*q));
	q->tail = &q->head;
	q->max_frames = max_frames;
	q->max_bytes = max_bytes;
}

int net_rxq_push(struct net_rxq *q, const void *frame, size_t len)
{
	struct net_frame *f;

	if (q->n >= q->max_frames || len > q->max_bytes || q->bytes > q->max_bytes - len)
		return -ENOBUFS;
	f = malloc(sizeof(*f) + len);
	if (!f)
		return -ENOMEM;
	f->next = NULL;
	f->len = len;
	memcpy(f->data, frame, len);
	*q->tail = f;
	q->tail = &f->next;
	q->n++;
	q->bytes += len;
	return 0;
}

void net_rxq_pop(struct net_rxq *q)
{
	struct net_frame *f = q->head;

	if (!f)
		return;
	q->head = f->next;
	if (!q->head)
		q->tail = &q->head;
	q->n--;
	q->bytes -= f->len;
	free(f);
}

void net_rxq_clear(struct net_rxq *q)
{
	while (q->head)
		net_rxq_pop(q);
}
