// SPDX-License-Identifier: BSD-2-Clause
/*
 * Live migration (snap/precopy.c) of a VM without KVM, for test_precopy and
 * test_precopy_faults: a bare VM (vm_init_bare, its event loop running) with two regions of
 * anonymous RAM, migrated to a destination played here, a thread that receives the stream
 * into a struct mig_in as khyve -R does.  The pre-copy rounds run for real (dirty-page
 * tracking, the sender thread, the loop thread's events); the final pause cannot, as there
 * is no KVM clock to read: the migration then fails, and the source runs on.
 */
#ifndef KHYVE_TESTS_BARELIVE_H
#define KHYVE_TESTS_BARELIVE_H

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "evloop.h"
#include "loopsock.h"
#include "snap/format.h"
#include "snap/migrate.h"
#include "snap/precopy.h"
#include "vm.h"

#define BL_PAGE 4096ULL

/* tests/faultinj.h's, in the binaries that have it (the *_faults tests); else NULL. */
void fi_suspend(bool on) __attribute__((weak));

struct bl_vm {
	struct vm vm;
	struct config cfg;
};

/* @r0 and @r1 bytes of RAM (the second region at 4 GiB), all zero; the event loop running. */
static inline void bl_vm_make(struct bl_vm *b, uint64_t r0, uint64_t r1)
{
	vm_init_bare(&b->vm, false);
	config_init(&b->cfg);
	b->vm.cfg = &b->cfg;
	for (unsigned i = 0; i < 2; i++) {
		uint64_t size = i ? r1 : r0;
		/* Mapped as khyve maps guest RAM (no transparent huge pages, vm.h). */
		void *p = vm_map_aligned(size, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		assert_true(p != MAP_FAILED);
		b->vm.mem[i] = (struct mem_region){ i ? 0x100000000ULL : 0, size, p, i };
		b->vm.nmem = i + 1;
	}
	assert_int_equal(evloop_start(&b->vm.ev), 0);
}

static inline void bl_vm_free(struct bl_vm *b)
{
	vm_destroy(&b->vm);
	config_free(&b->cfg);
}

/* Page @pg of guest memory, counted across both regions. */
static inline uint8_t *bl_page(struct bl_vm *b, uint64_t pg)
{
	uint64_t n0 = b->vm.mem[0].size / BL_PAGE;

	return pg < n0 ? (uint8_t *)b->vm.mem[0].hva + pg * BL_PAGE
		       : (uint8_t *)b->vm.mem[1].hva + (pg - n0) * BL_PAGE;
}

/* ---- the destination ---- */

/* What the destination answers once it has the whole stream (END). */
enum bl_answer {
	BL_RUN,		 /* READY, then GO is read, RUNNING: it runs the guest */
	BL_REFUSE_READY, /* REFUSE instead of READY */
	BL_REFUSE_GO,	 /* READY, GO read, then REFUSE: it cannot run the guest */
	BL_CLOSE_GO,	 /* READY, GO read, then it hangs up without a word */
	BL_WRONG,	 /* RUNNING instead of READY */
	BL_BIG,		 /* a frame header announcing more than an answer may hold */
	BL_CLOSE_END,	 /* it hangs up at once */
};

struct bl_dest {
	int lfd, fd;
	pthread_t thread;
	char addr[64];
	struct mig_in m;
	int mfd;
	bool stall;	      /* read HELLO, then nothing until bl_dest_release */
	const char *refuse;   /* said in REFUSE once the stream ends (NULL: hang up) */
	int ret;	      /* the receiver's verdict on the stream */
	char err[512];	      /* ... in words */
	uint64_t frames, mem; /* frames received, MEM frames among them */
	enum bl_answer answer;
	const struct config *auth_cfg; /* with it: is AUTH one this user's key made? */
	bool authentic;
	int finish_ret; /* mig_in_finish's, after END */
	bool got_go;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool hello, released;
};

/* One frame into the receiver: 1, or 0 at the stream's end, or a refusal (in d->ret). */
static inline int bl_dest_frame(struct bl_dest *d)
{
	uint8_t h[MIG_HDR], *p;
	struct mig_frame f;

	if (!lo_read_all(d->fd, h, sizeof(h)))
		return 0;
	d->ret = mig_frame_decode(h, &f, d->err, sizeof(d->err));
	if (d->ret)
		return -1;
	p = malloc(f.length ? f.length : 1);
	assert_non_null(p);
	if (!lo_read_all(d->fd, p, f.length)) {
		free(p);
		return 0;
	}
	assert_int_equal(snap_checksum(p, f.length), f.checksum);
	d->frames++;
	d->mem += f.type == MIG_MEM;
	d->ret = mig_in_frame(&d->m, &f, p, d->err, sizeof(d->err));
	free(p);
	return d->ret ? -1 : 1;
}

/* The hand-over after END, as d->answer says. */
static inline void bl_dest_answer(struct bl_dest *d)
{
	uint8_t h[MIG_HDR];
	struct mig_frame f;
	char err[256];

	/* Before the finish lets go of the metadata the MAC covers. */
	if (d->auth_cfg)
		d->authentic = mig_in_authentic(&d->m, d->auth_cfg);
	d->finish_ret = mig_in_finish(&d->m, d->err, sizeof(d->err));
	switch (d->answer) {
	case BL_REFUSE_READY:
		mig_send_frame(d->fd, MIG_REFUSE, "no room", 7, NULL, 0);
		return;
	case BL_WRONG:
		mig_send_frame(d->fd, MIG_RUNNING, NULL, 0, NULL, 0);
		return;
	case BL_BIG:
		mig_frame_encode(h, MIG_MEM, "", 0);
		h[8] = 0x88; /* 5000 bytes */
		h[9] = 0x13;
		assert_int_equal(write(d->fd, h, sizeof(h)), (ssize_t)sizeof(h));
		return;
	case BL_CLOSE_END:
		return;
	default:
		break;
	}
	mig_send_frame(d->fd, MIG_READY, NULL, 0, NULL, 0);
	if (!lo_read_all(d->fd, h, sizeof(h)) || mig_frame_decode(h, &f, err, sizeof(err)))
		return;
	d->got_go = f.type == MIG_GO && !f.length;
	if (d->answer == BL_RUN)
		mig_send_frame(d->fd, MIG_RUNNING, NULL, 0, NULL, 0);
	else if (d->answer == BL_REFUSE_GO)
		mig_send_frame(d->fd, MIG_REFUSE, "cannot run it", 13, NULL, 0);
}

static inline void *bl_dest_main(void *arg)
{
	struct bl_dest *d = arg;
	int r;

	/* The destination played here is not under test: no fault is injected into it. */
	if (fi_suspend)
		fi_suspend(true);
	d->fd = accept4(d->lfd, NULL, NULL, SOCK_CLOEXEC);
	assert_true(d->fd >= 0);
	r = bl_dest_frame(d);
	pthread_mutex_lock(&d->lock);
	d->hello = r == 1;
	pthread_cond_broadcast(&d->cond);
	while (d->stall && !d->released)
		pthread_cond_wait(&d->cond, &d->lock);
	pthread_mutex_unlock(&d->lock);
	while (r == 1 && !d->m.ended)
		r = bl_dest_frame(d);
	if (d->m.ended) {
		bl_dest_answer(d);
		close(d->fd);
		return NULL;
	}
	if (!r && !d->ret) {
		snprintf(d->err, sizeof(d->err), "the stream ended before END");
		d->ret = -ECONNRESET;
	}
	if (d->refuse)
		mig_send_frame(d->fd, MIG_REFUSE, d->refuse, strlen(d->refuse), NULL, 0);
	close(d->fd);
	return NULL;
}

/* Listening on a free port of the loopback (d->addr), receiving into a memfd. */
static inline void bl_dest_start(struct bl_dest *d, bool stall, const char *refuse)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001) };
	socklen_t len = sizeof(sin);
	int small = 4096;

	memset(d, 0, sizeof(*d));
	d->stall = stall;
	d->refuse = refuse;
	pthread_mutex_init(&d->lock, NULL);
	pthread_cond_init(&d->cond, NULL);
	d->mfd = memfd_create("bl-dest", MFD_CLOEXEC);
	assert_true(d->mfd >= 0);
	mig_in_init(&d->m, d->mfd);
	d->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(d->lfd >= 0);
	/* A stalled destination holds little: the source soon waits on its writes. */
	if (stall)
		setsockopt(d->lfd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	assert_int_equal(bind(d->lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(d->lfd, 1), 0);
	assert_int_equal(getsockname(d->lfd, (struct sockaddr *)&sin, &len), 0);
	snprintf(d->addr, sizeof(d->addr), "127.0.0.1:%u", ntohs(sin.sin_port));
	assert_int_equal(pthread_create(&d->thread, NULL, bl_dest_main, d), 0);
}

static inline void bl_dest_wait_hello(struct bl_dest *d)
{
	pthread_mutex_lock(&d->lock);
	while (!d->hello)
		pthread_cond_wait(&d->cond, &d->lock);
	pthread_mutex_unlock(&d->lock);
}

static inline void bl_dest_release(struct bl_dest *d)
{
	pthread_mutex_lock(&d->lock);
	d->released = true;
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
}

static inline void bl_dest_join(struct bl_dest *d)
{
	bl_dest_release(d);
	assert_int_equal(pthread_join(d->thread, NULL), 0);
	close(d->lfd);
}

static inline void bl_dest_free(struct bl_dest *d)
{
	mig_in_free(&d->m);
	close(d->mfd);
	pthread_mutex_destroy(&d->lock);
	pthread_cond_destroy(&d->cond);
}

/* Page @pg as received: whether it came with data, and its bytes in @out. */
static inline bool bl_dest_page(struct bl_dest *d, uint64_t pg, uint8_t *out)
{
	if (!(d->m.pages[pg / 64] >> (pg % 64) & 1))
		return false;
	assert_int_equal(pread(d->mfd, out, BL_PAGE, (off_t)(d->m.w.mem_offset + pg * BL_PAGE)),
			 (ssize_t)BL_PAGE);
	return true;
}

/* ---- the live migration, started and ended on the VM's event-loop thread ---- */

struct bl_live {
	struct bl_vm *b;
	struct mig_policy pol;
	const char *addr;
	void (*on_loop)(struct bl_live *); /* runs on the loop thread before the start */
	bool no_progress;		   /* start it without a progress callback */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool started, finished;
	int start_ret, ret;
	unsigned progress; /* rounds reported, in order from 1 */
	bool progress_ok;
	struct migrate_result res;
	char start_err[512], err[1024];
};

static inline void bl_live_progress(void *opaque, unsigned round, const struct mig_round *r,
				    uint64_t estimate_ns)
{
	struct bl_live *l = opaque;

	pthread_mutex_lock(&l->lock);
	if (round != l->progress + 1)
		l->progress_ok = false;
	l->progress = round;
	pthread_mutex_unlock(&l->lock);
}

static inline void bl_live_done(void *opaque, int ret, const struct migrate_result *res,
				const char *err)
{
	struct bl_live *l = opaque;

	pthread_mutex_lock(&l->lock);
	l->ret = ret;
	l->res = *res;
	snprintf(l->err, sizeof(l->err), "%s", err ? err : "");
	l->finished = true;
	pthread_cond_broadcast(&l->cond);
	pthread_mutex_unlock(&l->lock);
}

static inline void bl_live_start_fn(void *opaque)
{
	struct bl_live *l = opaque;
	int ret;

	if (l->on_loop)
		l->on_loop(l);
	ret = migrate_live_start(&l->b->vm, l->addr, &l->pol,
				 l->no_progress ? NULL : bl_live_progress, bl_live_done, l,
				 l->start_err, sizeof(l->start_err));
	pthread_mutex_lock(&l->lock);
	l->start_ret = ret;
	l->started = true;
	pthread_cond_broadcast(&l->cond);
	pthread_mutex_unlock(&l->lock);
}

/* Start it on the loop thread; migrate_live_start's result (its message in l->start_err). */
static inline int bl_live_start(struct bl_live *l, struct bl_vm *b, const char *addr,
				const struct mig_policy *p)
{
	l->b = b;
	l->pol = *p;
	l->addr = addr;
	pthread_mutex_init(&l->lock, NULL);
	pthread_cond_init(&l->cond, NULL);
	l->progress_ok = true;
	evloop_call(&b->vm.ev, bl_live_start_fn, l);
	pthread_mutex_lock(&l->lock);
	while (!l->started)
		pthread_cond_wait(&l->cond, &l->lock);
	pthread_mutex_unlock(&l->lock);
	return l->start_ret;
}

static inline void bl_mark(void *opaque)
{
	struct bl_live *l = opaque;

	pthread_mutex_lock(&l->lock);
	l->started = false;
	pthread_cond_broadcast(&l->cond);
	pthread_mutex_unlock(&l->lock);
}

/* Its end (l->ret, l->res, l->err), and the loop thread's work after it done. */
static inline void bl_live_wait(struct bl_live *l)
{
	pthread_mutex_lock(&l->lock);
	while (!l->finished)
		pthread_cond_wait(&l->cond, &l->lock);
	pthread_mutex_unlock(&l->lock);
	/* The reply comes before the migration is freed: a call queued after it runs after. */
	evloop_call(&l->b->vm.ev, bl_mark, l);
	pthread_mutex_lock(&l->lock);
	while (l->started)
		pthread_cond_wait(&l->cond, &l->lock);
	pthread_mutex_unlock(&l->lock);
}

static inline void bl_live_free(struct bl_live *l)
{
	pthread_mutex_destroy(&l->lock);
	pthread_cond_destroy(&l->cond);
}

#endif
