// SPDX-License-Identifier: BSD-2-Clause
/*
 * The VNC server of the console backend: RFB 3.8 through libvncserver, on one thread.
 *
 * Options (the fbuf device's, bhyve's shape): tcp=IP:PORT (also [IPv6]:PORT, IP alone means
 * port 5900; default 127.0.0.1:5900) or unix=PATH, password=PW (VNC authentication; the
 * protocol uses at most 8 characters, so a longer one is refused rather than cut), wait (the
 * VM starts once a client is connected).
 *
 * khyve opens and accepts the listening socket itself and hands each connection to
 * libvncserver (rfbNewClient), so the server listens on exactly the address given and on
 * nothing else: no IPv6 twin, no HTTP server, no port probing.
 *
 * The thread sleeps in poll() on the listening socket, the clients and a wake-up eventfd.
 * With nobody connected it never wakes up on its own.  When a client waits for an update it
 * refreshes the picture, at most CONSOLE_REFRESH_HZ times a second (VNC_IDLE_HZ after a
 * second without changes): the display front end updates the surface and reports damage;
 * the damaged rectangle is copied into the server's own frame buffer, which libvncserver
 * reads while it sends updates without any lock of ours held (a slow client cannot stall a
 * screenshot or the guest).  Clients that ask for nothing cost nothing more.
 */
#include "backend/console_int.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <rfb/rfb.h>
#include <rfb/rfbregion.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define VNC_DEFAULT_HOST "127.0.0.1"
#define VNC_DEFAULT_PORT "5900"
#define VNC_MAX_PASSWORD 8
#define VNC_MAX_POLL 64
/* A client that stops in the middle of a message is dropped after this long (libvncserver). */
#define VNC_CLIENT_WAIT_MS 2000
#define VNC_IDLE_HZ 10

struct vnc {
	struct console *c;
	rfbScreenInfoPtr screen;
	uint32_t *fb; /* what clients are sent, a copy of the surface */
	unsigned w, h;
	int listen_fd, wake_fd;
	char *unix_path;
	char where[160]; /* for messages: "127.0.0.1:5900" */
	char *passwords[2];
	pthread_t thread;
	bool started;
	atomic_bool stop;
	bool full;	      /* next refresh redraws everything (a new client) */
	unsigned quiet;	      /* refreshes in a row that found nothing changed */
	uint64_t next_tick;   /* CLOCK_MONOTONIC ns of the next refresh */
	pthread_mutex_t lock; /* nclients, for wait */
	pthread_cond_t cond;
	unsigned nclients;
};

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* libvncserver talks a lot; khyve reports its own errors. */
static void vnc_log_quiet(const char *fmt, ...)
{
}

/* ---- clients ---- */

static void vnc_client_gone(rfbClientPtr cl)
{
	struct vnc *v = cl->screen->screenData;

	/* Keys and buttons the client held would stay down for ever otherwise. */
	console_release_all(v->c);
	pthread_mutex_lock(&v->lock);
	v->nclients--;
	pthread_mutex_unlock(&v->lock);
}

static enum rfbNewClientAction vnc_new_client(rfbClientPtr cl)
{
	struct vnc *v = cl->screen->screenData;

	cl->clientGoneHook = vnc_client_gone;
	/* Refreshed at once, so the handshake's ServerInit gives the guest's size, not 640x480. */
	v->full = true;
	v->quiet = 0;
	v->next_tick = 0;
	pthread_mutex_lock(&v->lock);
	v->nclients++;
	pthread_cond_broadcast(&v->cond);
	pthread_mutex_unlock(&v->lock);
	return RFB_CLIENT_ACCEPT;
}

/* A client's input: the guest is likely to answer on the screen, refresh at full rate. */
static void vnc_wake_up(struct vnc *v)
{
	if (v->quiet >= CONSOLE_REFRESH_HZ) {
		v->quiet = 0;
		v->next_tick = 0;
	}
}

static void vnc_key(rfbBool down, rfbKeySym sym, rfbClientPtr cl)
{
	struct vnc *v = cl->screen->screenData;

	vnc_wake_up(v);
	console_keysym_event(v->c, sym, down);
}

static void vnc_pointer(int mask, int x, int y, rfbClientPtr cl)
{
	struct vnc *v = cl->screen->screenData;

	vnc_wake_up(v);
	console_pointer_event(v->c, x < 0 ? 0 : (unsigned)x, y < 0 ? 0 : (unsigned)y,
			      (unsigned)mask);
}

static void vnc_accept(struct vnc *v)
{
	int fd = accept4(v->listen_fd, NULL, NULL, SOCK_CLOEXEC);

	if (fd < 0)
		return;
	/* libvncserver watches clients with select(). */
	if (fd >= FD_SETSIZE) {
		close(fd);
		return;
	}
	rfbNewClient(v->screen, fd);
}

/* ---- the picture ---- */

/* Our pixels are 0x00RRGGBB; libvncserver resets the format with every new frame buffer. */
static void vnc_set_format(struct vnc *v)
{
	rfbClientIteratorPtr it;
	rfbClientPtr cl;

	v->screen->serverFormat.redShift = 16;
	v->screen->serverFormat.greenShift = 8;
	v->screen->serverFormat.blueShift = 0;
	it = rfbGetClientIterator(v->screen);
	while ((cl = rfbClientIteratorNext(it)))
		rfbSetTranslateFunction(cl);
	rfbReleaseClientIterator(it);
}

static int vnc_resize(struct vnc *v, unsigned w, unsigned h)
{
	uint32_t *fb = calloc((size_t)w * h, sizeof(*fb));

	if (!fb)
		return -ENOMEM;
	/* The clients are told the new size (DesktopSize) by libvncserver. */
	rfbNewFramebuffer(v->screen, (char *)fb, (int)w, (int)h, 8, 3, 4);
	vnc_set_format(v);
	free(v->fb);
	v->fb = fb;
	v->w = w;
	v->h = h;
	return 0;
}

/* Bring the clients' copy up to date; true when anything changed. */
static bool vnc_refresh(struct vnc *v)
{
	struct console_surface *s = console_refresh(v->c, v->full);

	v->full = false;
	if (!s)
		return false;
	if ((s->width != v->w || s->height != v->h) && vnc_resize(v, s->width, s->height)) {
		console_refresh_done(v->c);
		return false;
	}
	if (s->damaged) {
		unsigned x0 = s->dx0, y0 = s->dy0, x1 = s->dx1, y1 = s->dy1;

		for (unsigned y = y0; y < y1; y++)
			memcpy(&v->fb[(size_t)y * v->w + x0], &s->pixels[(size_t)y * s->width + x0],
			       (x1 - x0) * sizeof(uint32_t));
		s->damaged = false;
		console_refresh_done(v->c);
		rfbMarkRectAsModified(v->screen, (int)x0, (int)y0, (int)x1, (int)y1);
		return true;
	}
	console_refresh_done(v->c);
	return false;
}

/*
 * Refreshes come CONSOLE_REFRESH_HZ times a second while the picture changes or a client
 * types or points; after a second with neither, VNC_IDLE_HZ times (an idle guest watched by
 * a client then costs a sixth of the wake-ups; the first change after a quiet spell shows at
 * most 1 / VNC_IDLE_HZ s late).
 */
static uint64_t vnc_interval(struct vnc *v, bool changed)
{
	if (changed)
		v->quiet = 0;
	else if (v->quiet < CONSOLE_REFRESH_HZ)
		v->quiet++;
	return 1000000000ULL / (v->quiet < CONSOLE_REFRESH_HZ ? CONSOLE_REFRESH_HZ : VNC_IDLE_HZ);
}

/* ---- the thread ---- */

/* Whether a client has asked for an update it has not had yet. */
static bool vnc_asked(struct vnc *v)
{
	rfbClientIteratorPtr it = rfbGetClientIterator(v->screen);
	rfbClientPtr cl;
	bool asked = false;

	while (!asked && (cl = rfbClientIteratorNext(it)))
		asked = cl->sock >= 0 && !sraRgnEmpty(cl->requestedRegion);
	rfbReleaseClientIterator(it);
	return asked;
}

/*
 * A refresh is due at its tick once a client waits for an update (or has just connected);
 * before anyone asks there is nothing to refresh for (the changes keep, in the dirty log and
 * against the shown picture).  So the picture sent is taken when it is sent, not up to a
 * tick earlier: a guest redrawing at 30 fps was otherwise sent pictures taken on 60 Hz ticks
 * while the client was still reading the last update, two ticks (one of its frames) apart
 * or more, and lost a frame for every row it changed twice in between.
 */
static int vnc_timeout_ms(struct vnc *v, uint64_t now)
{
	if (!v->nclients || !(v->full || vnc_asked(v)))
		return -1;
	if (now >= v->next_tick)
		return 0;
	return (int)((v->next_tick - now + 999999) / 1000000);
}

static unsigned vnc_pollfds(struct vnc *v, struct pollfd *p)
{
	rfbClientIteratorPtr it;
	rfbClientPtr cl;
	unsigned n = 0;

	p[n++] = (struct pollfd){ .fd = v->wake_fd, .events = POLLIN };
	p[n++] = (struct pollfd){ .fd = v->listen_fd, .events = POLLIN };
	it = rfbGetClientIterator(v->screen);
	while ((cl = rfbClientIteratorNext(it)) && n < VNC_MAX_POLL)
		if (cl->sock >= 0)
			p[n++] = (struct pollfd){ .fd = cl->sock, .events = POLLIN };
	rfbReleaseClientIterator(it);
	return n;
}

static void *vnc_thread(void *opaque)
{
	struct vnc *v = opaque;
	struct pollfd p[VNC_MAX_POLL];

	while (!atomic_load(&v->stop)) {
		unsigned n = vnc_pollfds(v, p);
		uint64_t now = mono_ns();

		if (poll(p, n, vnc_timeout_ms(v, now)) < 0 && errno != EINTR)
			break;
		if (p[0].revents) {
			uint64_t x;

			if (read(v->wake_fd, &x, sizeof(x)) < 0 && errno != EAGAIN)
				break;
		}
		if (p[1].revents & POLLIN)
			vnc_accept(v);
		/* Client messages first (input: console callbacks; update requests). */
		rfbCheckFds(v->screen, 0);
		now = mono_ns();
		if (v->nclients && now >= v->next_tick && (v->full || vnc_asked(v)))
			v->next_tick = now + vnc_interval(v, vnc_refresh(v));
		/* Then updates to whoever asked. */
		rfbProcessEvents(v->screen, 0);
	}
	return NULL;
}

/* ---- setting up ---- */

static int vnc_listen_unix(struct vnc *v, const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	int ret;

	if (!*path || strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "unix=%s: the path is empty or longer than %zu bytes", path,
			 sizeof(sa.sun_path) - 1);
		return -EINVAL;
	}
	strcpy(sa.sun_path, path);
	/* A socket left by a khyve that died is replaced; any other file is not touched. */
	if (!lstat(path, &st) && S_ISSOCK(st.st_mode)) {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

		if (fd >= 0 && !connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
			close(fd);
			snprintf(err, errlen, "unix=%s: the socket is in use by a running program",
				 path);
			return -EADDRINUSE;
		}
		if (fd >= 0)
			close(fd);
		unlink(path);
	}
	v->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (v->listen_fd < 0 || bind(v->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    listen(v->listen_fd, 4)) {
		ret = -errno;
		snprintf(err, errlen, "unix=%s: cannot listen: %s", path, strerror(errno));
		return ret;
	}
	v->unix_path = strdup(path);
	snprintf(v->where, sizeof(v->where), "%s", path);
	return v->unix_path ? 0 : -ENOMEM;
}

/* "HOST:PORT", "[V6]:PORT", "HOST", ":PORT" into host and port strings. */
static int vnc_split(const char *spec, char *host, size_t hlen, char *port, size_t plen)
{
	const char *colon;
	size_t n;

	if (spec[0] == '[') {
		const char *end = strchr(spec, ']');

		if (!end || (end[1] && end[1] != ':'))
			return -EINVAL;
		n = (size_t)(end - spec - 1);
		colon = end[1] ? end + 1 : NULL;
		spec++;
	} else {
		colon = strrchr(spec, ':');
		if (colon && strchr(spec, ':') != colon)
			return -EINVAL; /* a bare IPv6 address needs brackets */
		n = colon ? (size_t)(colon - spec) : strlen(spec);
	}
	if (n >= hlen)
		return -EINVAL;
	memcpy(host, spec, n);
	host[n] = '\0';
	if (!n)
		snprintf(host, hlen, "%s", VNC_DEFAULT_HOST);
	snprintf(port, plen, "%s", colon && colon[1] ? colon + 1 : VNC_DEFAULT_PORT);
	return colon && !colon[1] ? -EINVAL : 0;
}

static int vnc_listen_tcp(struct vnc *v, const char *spec, char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE };
	struct addrinfo *ai = NULL;
	char host[128], port[16];
	char *end;
	unsigned long p;
	int one = 1, ret;

	if (vnc_split(spec, host, sizeof(host), port, sizeof(port))) {
		snprintf(err, errlen, "tcp=%s: expected IP:PORT (or [IPv6]:PORT)", spec);
		return -EINVAL;
	}
	p = strtoul(port, &end, 10);
	if (*end || !p || p > 65535) {
		snprintf(err, errlen, "tcp=%s: port must be a number from 1 to 65535", spec);
		return -EINVAL;
	}
	ret = getaddrinfo(host, port, &hints, &ai);
	if (ret) {
		snprintf(err, errlen, "tcp=%s: %s", spec, gai_strerror(ret));
		return -EINVAL;
	}
	v->listen_fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (v->listen_fd >= 0)
		setsockopt(v->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (v->listen_fd < 0 || bind(v->listen_fd, ai->ai_addr, ai->ai_addrlen) ||
	    listen(v->listen_fd, 4)) {
		ret = -errno;
		snprintf(err, errlen, "tcp=%s: cannot listen: %s", spec, strerror(errno));
		freeaddrinfo(ai);
		return ret;
	}
	freeaddrinfo(ai);
	snprintf(v->where, sizeof(v->where), "%s%s%s:%s", strchr(host, ':') ? "[" : "", host,
		 strchr(host, ':') ? "]" : "", port);
	return 0;
}

static int vnc_screen(struct vnc *v, const struct console_vnc_cfg *cfg, char *err, size_t errlen)
{
	int argc = 0;

	rfbLog = vnc_log_quiet;
	rfbErr = vnc_log_quiet;
	rfbMaxClientWait = VNC_CLIENT_WAIT_MS;
	/* A placeholder until the first refresh gives the guest's size. */
	v->screen = rfbGetScreen(&argc, NULL, 640, 480, 8, 3, 4);
	if (!v->screen) {
		snprintf(err, errlen, "cannot create the VNC server");
		return -ENOMEM;
	}
	v->screen->screenData = v;
	v->screen->desktopName = cfg->name ? cfg->name : "khyve";
	v->screen->port = 0; /* we listen ourselves */
	v->screen->ipv6port = 0;
	v->screen->autoPort = FALSE;
	v->screen->httpDir = NULL;
	v->screen->deferUpdateTime = 0;
	v->screen->cursor = NULL; /* the guest draws its own pointer */
	v->screen->newClientHook = vnc_new_client;
	v->screen->kbdAddEvent = vnc_key;
	v->screen->ptrAddEvent = vnc_pointer;
	if (cfg->password) {
		v->passwords[0] = strdup(cfg->password);
		if (!v->passwords[0])
			return -ENOMEM;
		v->screen->authPasswdData = v->passwords;
		v->screen->passwordCheck = rfbCheckPasswordByList;
	}
	if (vnc_resize(v, 640, 480))
		return -ENOMEM;
	rfbInitServer(v->screen);
	return 0;
}

/* Signals are blocked in every thread: look for one pending while we wait for a client. */
static bool vnc_interrupted(void)
{
	sigset_t set;

	return !sigpending(&set) && (sigismember(&set, SIGINT) || sigismember(&set, SIGTERM) ||
				     sigismember(&set, SIGHUP));
}

static int vnc_wait_client(struct vnc *v, char *err, size_t errlen)
{
	int ret = 0;

	log_info("fbuf: waiting for a VNC client on %s", v->where);
	pthread_mutex_lock(&v->lock);
	while (!v->nclients) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 100000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&v->cond, &v->lock, &ts);
		if (!v->nclients && vnc_interrupted()) {
			snprintf(err, errlen, "interrupted while waiting for a VNC client");
			ret = -EINTR;
			break;
		}
	}
	pthread_mutex_unlock(&v->lock);
	return ret;
}

int vnc_start(struct console *c, const struct console_vnc_cfg *cfg, struct vnc **out, char *err,
	      size_t errlen)
{
	struct vnc *v = calloc(1, sizeof(*v));
	int ret;

	if (!v) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	v->c = c;
	v->listen_fd = -1;
	v->full = true;
	pthread_mutex_init(&v->lock, NULL);
	pthread_cond_init(&v->cond, NULL);
	v->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (cfg->password && strlen(cfg->password) > VNC_MAX_PASSWORD) {
		snprintf(err, errlen,
			 "password: VNC authentication uses at most %d characters; give a "
			 "shorter one",
			 VNC_MAX_PASSWORD);
		ret = -EINVAL;
	} else if (cfg->password && !*cfg->password) {
		snprintf(err, errlen, "password: must not be empty");
		ret = -EINVAL;
	} else if (v->wake_fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "eventfd: %s", strerror(errno));
	} else if (cfg->unix_path) {
		ret = vnc_listen_unix(v, cfg->unix_path, err, errlen);
	} else {
		ret = vnc_listen_tcp(v, cfg->tcp ? cfg->tcp : VNC_DEFAULT_HOST, err, errlen);
	}
	if (!ret)
		ret = vnc_screen(v, cfg, err, errlen);
	if (!ret) {
		ret = -pthread_create(&v->thread, NULL, vnc_thread, v);
		if (ret)
			snprintf(err, errlen, "cannot start the VNC thread: %s", strerror(-ret));
		v->started = !ret;
	}
	if (!ret && cfg->wait)
		ret = vnc_wait_client(v, err, errlen);
	if (ret) {
		vnc_stop(v);
		return ret;
	}
	*out = v;
	return 0;
}

void vnc_stop(struct vnc *v)
{
	uint64_t one = 1;

	if (v->started) {
		atomic_store(&v->stop, true);
		if (write(v->wake_fd, &one, sizeof(one)) < 0)
			perror("khyve: vnc: wake");
		pthread_join(v->thread, NULL);
	}
	if (v->screen) {
		rfbShutdownServer(v->screen, TRUE);
		rfbScreenCleanup(v->screen);
	}
	if (v->listen_fd >= 0)
		close(v->listen_fd);
	if (v->wake_fd >= 0)
		close(v->wake_fd);
	if (v->unix_path) {
		unlink(v->unix_path);
		free(v->unix_path);
	}
	free(v->passwords[0]);
	free(v->fb);
	pthread_mutex_destroy(&v->lock);
	pthread_cond_destroy(&v->cond);
	free(v);
}
