// SPDX-License-Identifier: BSD-2-Clause
/*
 * The event loop: one thread per VM that waits on epoll for device fds, a timerfd that is
 * always set to the earliest vtimer deadline, and an eventfd for calls from other threads.
 */
#include "evloop.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

struct ev_fd {
	int fd;
	bool dead;
	ev_fd_fn fn;
	void *opaque;
	struct ev_fd *next;
};

struct ev_call {
	void (*fn)(void *);
	void *opaque;
	bool done;
	pthread_cond_t cond;
	struct ev_call *next;
};

/* Tags in epoll data for the loop's own fds; device fds carry their struct ev_fd pointer. */
#define EV_TAG_TIMER ((void *)1)
#define EV_TAG_WAKE ((void *)2)

static uint64_t host_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

uint64_t vclock_ns(struct evloop *ev)
{
	if (__atomic_load_n(&ev->frozen, __ATOMIC_ACQUIRE))
		return __atomic_load_n(&ev->frozen_ns, __ATOMIC_RELAXED);
	if (ev->manual)
		return __atomic_load_n(&ev->manual_now, __ATOMIC_ACQUIRE);
	return host_ns() - (uint64_t)__atomic_load_n(&ev->offset, __ATOMIC_ACQUIRE);
}

static void evloop_common_init(struct evloop *ev)
{
	memset(ev, 0, sizeof(*ev));
	ev->epfd = ev->tfd = ev->wakefd = -1;
	pthread_mutex_init(&ev->lock, NULL);
}

void evloop_init_manual(struct evloop *ev, uint64_t now)
{
	evloop_common_init(ev);
	ev->manual = true;
	ev->manual_now = now;
}

int evloop_init(struct evloop *ev)
{
	struct epoll_event e = { .events = EPOLLIN };

	evloop_common_init(ev);
	ev->epfd = epoll_create1(EPOLL_CLOEXEC);
	ev->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	ev->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (ev->epfd < 0 || ev->tfd < 0 || ev->wakefd < 0)
		goto fail;
	e.data.ptr = EV_TAG_TIMER;
	if (epoll_ctl(ev->epfd, EPOLL_CTL_ADD, ev->tfd, &e))
		goto fail;
	e.data.ptr = EV_TAG_WAKE;
	if (epoll_ctl(ev->epfd, EPOLL_CTL_ADD, ev->wakefd, &e))
		goto fail;
	return 0;
fail:
	evloop_destroy(ev);
	return -errno;
}

/* Program the timerfd for the head of the armed list.  Called with ev->lock held. */
static void evloop_reprogram(struct evloop *ev)
{
	struct itimerspec its = { 0 };
	uint64_t when;

	if (ev->manual || ev->tfd < 0)
		return;
	if (ev->timers) {
		/* vclock deadline to host monotonic time; 0 would disarm, so clamp to 1. */
		when = ev->timers->deadline + (uint64_t)ev->offset;
		if (!when)
			when = 1;
		its.it_value.tv_sec = (time_t)(when / 1000000000ULL);
		its.it_value.tv_nsec = (long)(when % 1000000000ULL);
	}
	timerfd_settime(ev->tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

void vclock_set(struct evloop *ev, uint64_t ns)
{
	pthread_mutex_lock(&ev->lock);
	if (ev->manual)
		__atomic_store_n(&ev->manual_now, ns, __ATOMIC_RELEASE);
	else
		__atomic_store_n(&ev->offset, (int64_t)(host_ns() - ns), __ATOMIC_RELEASE);
	__atomic_store_n(&ev->frozen_ns, ns, __ATOMIC_RELAXED);
	evloop_reprogram(ev);
	pthread_mutex_unlock(&ev->lock);
}

uint64_t vclock_freeze(struct evloop *ev)
{
	uint64_t now;

	pthread_mutex_lock(&ev->lock);
	now = vclock_ns(ev);
	__atomic_store_n(&ev->frozen_ns, now, __ATOMIC_RELAXED);
	__atomic_store_n(&ev->frozen, true, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&ev->lock);
	return now;
}

void vclock_thaw(struct evloop *ev)
{
	__atomic_store_n(&ev->frozen, false, __ATOMIC_RELEASE);
}

void vtimer_init(struct vtimer *t, struct evloop *ev, vtimer_fn fn, void *opaque)
{
	memset(t, 0, sizeof(*t));
	t->ev = ev;
	t->fn = fn;
	t->opaque = opaque;
}

static void vtimer_unlink(struct vtimer *t)
{
	struct vtimer **pp;

	for (pp = &t->ev->timers; *pp; pp = &(*pp)->next) {
		if (*pp == t) {
			*pp = t->next;
			break;
		}
	}
	t->armed = false;
	t->next = NULL;
}

void vtimer_arm(struct vtimer *t, uint64_t deadline_ns)
{
	struct evloop *ev = t->ev;
	struct vtimer **pp;

	pthread_mutex_lock(&ev->lock);
	if (t->armed)
		vtimer_unlink(t);
	t->deadline = deadline_ns;
	for (pp = &ev->timers; *pp && (*pp)->deadline <= deadline_ns; pp = &(*pp)->next)
		;
	t->next = *pp;
	*pp = t;
	t->armed = true;
	if (ev->timers == t)
		evloop_reprogram(ev);
	pthread_mutex_unlock(&ev->lock);
}

void vtimer_cancel(struct vtimer *t)
{
	struct evloop *ev = t->ev;

	if (!ev)
		return;
	pthread_mutex_lock(&ev->lock);
	if (t->armed) {
		bool head = ev->timers == t;

		vtimer_unlink(t);
		if (head)
			evloop_reprogram(ev);
	}
	pthread_mutex_unlock(&ev->lock);
}

/* Fire every timer due at @now, one at a time, without the lock held during callbacks. */
static void evloop_run_timers(struct evloop *ev, uint64_t now)
{
	for (;;) {
		struct vtimer *t;

		pthread_mutex_lock(&ev->lock);
		t = ev->timers;
		if (!t || t->deadline > now) {
			evloop_reprogram(ev);
			pthread_mutex_unlock(&ev->lock);
			return;
		}
		vtimer_unlink(t);
		pthread_mutex_unlock(&ev->lock);
		t->fn(t->opaque);
	}
}

void evloop_advance(struct evloop *ev, uint64_t now)
{
	/*
	 * Step the clock to each deadline in turn, so a callback that reads the clock sees the
	 * time it was due, as it would on a real (prompt) loop.
	 */
	for (;;) {
		uint64_t next;

		pthread_mutex_lock(&ev->lock);
		next = ev->timers ? ev->timers->deadline : now;
		if (next > now)
			next = now;
		if (next > ev->manual_now)
			__atomic_store_n(&ev->manual_now, next, __ATOMIC_RELEASE);
		pthread_mutex_unlock(&ev->lock);
		evloop_run_timers(ev, next);
		if (next == now) {
			evloop_run_timers(ev, now);
			break;
		}
	}
}

int evloop_add_fd(struct evloop *ev, int fd, uint32_t events, ev_fd_fn fn, void *opaque)
{
	struct ev_fd *f = calloc(1, sizeof(*f));
	struct epoll_event e = { .events = events };

	if (!f)
		return -ENOMEM;
	f->fd = fd;
	f->fn = fn;
	f->opaque = opaque;
	e.data.ptr = f;
	if (ev->epfd >= 0 && epoll_ctl(ev->epfd, EPOLL_CTL_ADD, fd, &e)) {
		int err = -errno;

		free(f);
		return err;
	}
	pthread_mutex_lock(&ev->lock);
	f->next = ev->fds;
	ev->fds = f;
	pthread_mutex_unlock(&ev->lock);
	return 0;
}

static struct ev_fd *evloop_find_fd(struct evloop *ev, int fd)
{
	struct ev_fd *f;

	for (f = ev->fds; f; f = f->next)
		if (f->fd == fd)
			return f;
	return NULL;
}

int evloop_mod_fd(struct evloop *ev, int fd, uint32_t events)
{
	struct epoll_event e = { .events = events };
	struct ev_fd *f;

	pthread_mutex_lock(&ev->lock);
	f = evloop_find_fd(ev, fd);
	pthread_mutex_unlock(&ev->lock);
	if (!f)
		return -ENOENT;
	e.data.ptr = f;
	if (ev->epfd >= 0 && epoll_ctl(ev->epfd, EPOLL_CTL_MOD, fd, &e))
		return -errno;
	return 0;
}

/*
 * Removing an fd: callers do it on the loop thread (from a callback or evloop_call) or after
 * the loop stopped, so no event for it can be in flight when it is freed.
 */
void evloop_del_fd(struct evloop *ev, int fd)
{
	struct ev_fd **pp, *f = NULL;

	pthread_mutex_lock(&ev->lock);
	for (pp = &ev->fds; *pp; pp = &(*pp)->next) {
		if ((*pp)->fd == fd) {
			f = *pp;
			*pp = f->next;
			break;
		}
	}
	if (f && ev->running && pthread_equal(pthread_self(), ev->thread)) {
		/* An event for it may still be in the batch being handled: free it after. */
		f->dead = true;
		f->next = ev->dead;
		ev->dead = f;
		f = NULL;
	}
	pthread_mutex_unlock(&ev->lock);
	if (ev->epfd >= 0)
		epoll_ctl(ev->epfd, EPOLL_CTL_DEL, fd, NULL);
	free(f);
}

static void evloop_free_dead(struct evloop *ev)
{
	struct ev_fd *f, *next;

	pthread_mutex_lock(&ev->lock);
	f = ev->dead;
	ev->dead = NULL;
	pthread_mutex_unlock(&ev->lock);
	for (; f; f = next) {
		next = f->next;
		free(f);
	}
}

static void evloop_run_calls(struct evloop *ev)
{
	for (;;) {
		struct ev_call *c;

		pthread_mutex_lock(&ev->lock);
		c = ev->calls;
		if (c)
			ev->calls = c->next;
		pthread_mutex_unlock(&ev->lock);
		if (!c)
			return;
		c->fn(c->opaque);
		pthread_mutex_lock(&ev->lock);
		c->done = true;
		pthread_cond_broadcast(&c->cond);
		pthread_mutex_unlock(&ev->lock);
	}
}

void evloop_call(struct evloop *ev, void (*fn)(void *), void *opaque)
{
	struct ev_call c = { .fn = fn, .opaque = opaque };
	struct ev_call **pp;
	uint64_t one = 1;

	if (!ev->running || pthread_equal(pthread_self(), ev->thread)) {
		fn(opaque);
		return;
	}
	pthread_cond_init(&c.cond, NULL);
	pthread_mutex_lock(&ev->lock);
	for (pp = &ev->calls; *pp; pp = &(*pp)->next)
		;
	*pp = &c;
	pthread_mutex_unlock(&ev->lock);
	if (write(ev->wakefd, &one, sizeof(one)) < 0) {
		/* An eventfd write fails only on overflow, and then a wake-up is pending anyway. */
	}
	pthread_mutex_lock(&ev->lock);
	while (!c.done)
		pthread_cond_wait(&c.cond, &ev->lock);
	pthread_mutex_unlock(&ev->lock);
	pthread_cond_destroy(&c.cond);
}

static void *evloop_thread(void *arg)
{
	struct evloop *ev = arg;
	struct epoll_event evs[16];

	while (!__atomic_load_n(&ev->stop, __ATOMIC_ACQUIRE)) {
		int n = epoll_wait(ev->epfd, evs, 16, -1);

		for (int i = 0; i < n; i++) {
			void *tag = evs[i].data.ptr;
			uint64_t v;

			if (tag == EV_TAG_TIMER) {
				if (read(ev->tfd, &v, sizeof(v)) < 0) {
					/* EAGAIN: reprogrammed meanwhile; run what is due anyway */
				}
				evloop_run_timers(ev, vclock_ns(ev));
			} else if (tag == EV_TAG_WAKE) {
				if (read(ev->wakefd, &v, sizeof(v)) < 0) {
					/* EAGAIN: another reader drained it; calls are in the list */
				}
				evloop_run_calls(ev);
			} else {
				struct ev_fd *f = tag;

				if (!f->dead)
					f->fn(f->opaque, evs[i].events);
			}
		}
		evloop_free_dead(ev);
	}
	return NULL;
}

int evloop_start(struct evloop *ev)
{
	int err;

	ev->stop = false;
	err = pthread_create(&ev->thread, NULL, evloop_thread, ev);
	if (err)
		return -err;
	ev->running = true;
	return 0;
}

static void evloop_stop_fn(void *opaque)
{
	struct evloop *ev = opaque;

	__atomic_store_n(&ev->stop, true, __ATOMIC_RELEASE);
}

void evloop_stop(struct evloop *ev)
{
	if (!ev->running)
		return;
	evloop_call(ev, evloop_stop_fn, ev);
	pthread_join(ev->thread, NULL);
	ev->running = false;
}

void evloop_destroy(struct evloop *ev)
{
	evloop_stop(ev);
	while (ev->fds)
		evloop_del_fd(ev, ev->fds->fd);
	evloop_free_dead(ev);
	if (ev->epfd >= 0)
		close(ev->epfd);
	if (ev->tfd >= 0)
		close(ev->tfd);
	if (ev->wakefd >= 0)
		close(ev->wakefd);
	ev->epfd = ev->tfd = ev->wakefd = -1;
}
