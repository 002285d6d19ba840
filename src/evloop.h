/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The VM's event loop and its virtual clock.
 *
 * Device time (HPET counter, PM timer, RTC, UART timeouts) is read from one virtual clock,
 * vclock_ns(), which runs with the host's CLOCK_MONOTONIC.  A restore sets the clock to the
 * value the snapshot saved, so every device counter continues from where it was, however long
 * the VM was suspended; devices therefore save times as vclock values and never host times.
 *
 * Timers fire on the event-loop thread.  A callback may run once after vtimer_cancel() raced
 * with its expiry, so callbacks re-check their device's state under the device lock.
 *
 * Tests can use a manual clock: evloop_init_manual() and evloop_advance() run due timers
 * synchronously, with no thread and no waiting.
 */
#ifndef KHYVE_EVLOOP_H
#define KHYVE_EVLOOP_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct evloop;

typedef void (*ev_fd_fn)(void *opaque, uint32_t events);
typedef void (*vtimer_fn)(void *opaque);

struct vtimer {
	struct evloop *ev;
	vtimer_fn fn;
	void *opaque;
	uint64_t deadline; /* vclock ns */
	bool armed;
	struct vtimer *next; /* armed list, sorted by deadline */
};

struct ev_fd;

struct evloop {
	int epfd, tfd, wakefd;
	pthread_t thread;
	bool running, stop, manual;
	pthread_mutex_t lock; /* timers, fd list */
	struct vtimer *timers;
	struct ev_fd *fds;
	struct ev_fd *dead; /* removed, freed after the current epoll batch */
	int64_t offset;	    /* vclock = monotonic - offset */
	bool frozen;	    /* vclock_freeze: vclock_ns() returns frozen_ns */
	uint64_t frozen_ns;
	uint64_t manual_now;
	/* Work queued for the loop thread (evloop_call). */
	struct ev_call *calls;
};

int evloop_init(struct evloop *ev);
void evloop_init_manual(struct evloop *ev, uint64_t now);
int evloop_start(struct evloop *ev); /* spawns the loop thread */
void evloop_stop(struct evloop *ev); /* joins it */
void evloop_destroy(struct evloop *ev);

/*
 * Watch @fd (EPOLLIN etc.); @fn runs on the loop thread.  evloop_del_fd may be called from a
 * callback, also for another fd with an event pending in the same batch: that event is dropped.
 */
int evloop_add_fd(struct evloop *ev, int fd, uint32_t events, ev_fd_fn fn, void *opaque);
int evloop_mod_fd(struct evloop *ev, int fd, uint32_t events);
void evloop_del_fd(struct evloop *ev, int fd);

/* Run @fn(@opaque) on the loop thread and wait for it to return (called from other threads). */
void evloop_call(struct evloop *ev, void (*fn)(void *), void *opaque);

uint64_t vclock_ns(struct evloop *ev);
/* Restore: make vclock_ns() continue from @ns (while frozen: return @ns until thawed). */
void vclock_set(struct evloop *ev, uint64_t ns);
/*
 * Snapshots: until vclock_thaw(), vclock_ns() returns the value it has now (returned), so that
 * every device saves its counters as of one instant, the one the other clocks are sampled at.
 * vclock_thaw() lets it run with the host clock again, as if it had never stopped (time went
 * on for the TSC too).  Only the loop thread may fire timers meanwhile, and a save runs there.
 */
uint64_t vclock_freeze(struct evloop *ev);
void vclock_thaw(struct evloop *ev);

/* Manual clock (tests): move to @now and run every timer that is due, in deadline order. */
void evloop_advance(struct evloop *ev, uint64_t now);

void vtimer_init(struct vtimer *t, struct evloop *ev, vtimer_fn fn, void *opaque);
void vtimer_arm(struct vtimer *t, uint64_t deadline_ns);
void vtimer_cancel(struct vtimer *t);

#endif
