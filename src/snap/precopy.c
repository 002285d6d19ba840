// SPDX-License-Identifier: BSD-2-Clause
/*
 * Live migration: the convergence rule, the pre-copy sender thread and the final pause (see
 * precopy.h; the frames are those of snap/migrate.h).
 *
 * Pages travel as MEM frames of up to 2 MiB of contiguous pages.  While the guest runs, a page
 * may change while it is read, so the sender copies each run into a bounce buffer first and
 * checksums the copy (the page was harvested before the copy, so a write that tore the copy
 * makes it dirty again and the next round sends it again).  Frames are laid out back to back
 * in that buffer and leave in one write of up to BOUNCE bytes.  In the final pause nothing
 * writes guest RAM, so the frames point into guest memory (writev, no copy).
 */
#include "snap/precopy.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "evloop.h"
#include "snap/dirty.h"
#include "snap/memory.h"
#include "vcpu.h"
#include "vm.h"

#define PAGE 4096ULL
#define RUN_PAGES (SNAP_EXTENT_MAX / PAGE) /* pages in one MEM frame at most */
#define FRAME_HDR (MIG_HDR + 8)		   /* a MEM frame's header and offset */
#define BOUNCE (8ULL << 20)		   /* pre-copy: bytes per write */
#define FINAL_IOV 512			   /* final pause: iovecs per writev (2 per frame) */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* ---- the convergence rule ---- */

const char *mig_verdict_name(enum mig_verdict v)
{
	static const char *const names[] = {
		[MIG_AGAIN] = "again",
		[MIG_FITS] = "fits the downtime budget",
		[MIG_ROUNDS] = "the most rounds",
		[MIG_STALLED] = "the dirty set stopped shrinking",
	};

	return v <= MIG_STALLED ? names[v] : "?";
}

enum mig_verdict mig_converge(const struct mig_policy *p, const struct mig_round *r, unsigned n,
			      uint64_t *estimate_ns)
{
	uint64_t bytes = 0, ns = 0, best = UINT64_MAX, recent = UINT64_MAX, pages_ns = 0;
	uint64_t handover = p->handover_ns < p->max_downtime_ns / 2 ? p->handover_ns
								    : p->max_downtime_ns / 2;
	unsigned stall = p->stall_rounds ? p->stall_rounds : MIG_STALL_ROUNDS;

	*estimate_ns = UINT64_MAX;
	if (!n)
		return MIG_AGAIN;
	for (unsigned i = 0; i < n; i++) {
		bytes += r[i].bytes;
		ns += r[i].ns;
	}
	/* Nothing dirty fits any budget; nothing measured yet, no estimate. */
	if (!r[n - 1].dirty)
		*estimate_ns = handover;
	else if (bytes && ns) {
		pages_ns = (uint64_t)((unsigned __int128)r[n - 1].dirty * (PAGE + FRAME_HDR) * ns /
				      bytes);
		*estimate_ns = pages_ns + handover;
	}
	if (*estimate_ns <= p->max_downtime_ns) {
		/* Still converging fast: one more round makes the pause shorter still. */
		if (p->floor_ns && pages_ns > p->floor_ns && n < p->max_rounds &&
		    r[n - 1].dirty * 2 <= r[n - 1].pages)
			return MIG_AGAIN;
		return MIG_FITS;
	}
	if (n >= p->max_rounds)
		return MIG_ROUNDS;
	/* Throttling harder may still help: only at the most is the dirty set what it is. */
	if (n <= stall || (p->autoconverge && r[n - 1].throttle < MIG_THROTTLE_MAX))
		return MIG_AGAIN;
	for (unsigned i = 0; i < n; i++) {
		uint64_t *m = i < n - stall ? &best : &recent;

		if (r[i].dirty < *m)
			*m = r[i].dirty;
	}
	return recent >= best ? MIG_STALLED : MIG_AGAIN;
}

unsigned mig_throttle(const struct mig_policy *p, const struct mig_round *r, unsigned n)
{
	unsigned cur = n ? r[n - 1].throttle : 0, next;

	if (!p->autoconverge)
		return 0;
	if (n < 2 || r[n - 1].dirty * 2 <= r[n - 1].pages)
		return cur;
	next = cur ? cur + p->throttle_increment : p->throttle_initial;
	return next < MIG_THROTTLE_MAX ? next : MIG_THROTTLE_MAX;
}

/* ---- the migration in progress ---- */

struct mig_live {
	struct vm *vm;
	struct mig_out o;
	struct mig_policy pol;
	struct dirty_client *dc;
	size_t npages;
	uint64_t *bitmap;
	uint8_t *bounce;
	size_t blen;
	pthread_t thread;
	bool started, joined;
	int evfd;
	atomic_bool cancel;
	mig_progress_fn progress;
	mig_done_fn done;
	void *opaque;
	uint64_t t0;
	struct migrate_result res;
	/* Shared with the sender thread, under @lock. */
	pthread_mutex_t lock;
	struct mig_round rounds[MIG_MAX_ROUNDS];
	uint64_t estimates[MIG_MAX_ROUNDS];
	unsigned nrounds, reported;
	unsigned throttle; /* auto-converge: the vCPUs' throttle for the next round */
	bool finished;	   /* the thread is done: @ret, @verdict, @err are set */
	int ret;
	enum mig_verdict verdict;
	char err[768];
};

static int bounce_flush(struct mig_live *ml)
{
	struct iovec iov = { ml->bounce, ml->blen };
	int ret = ml->blen ? mig_writev_full(ml->o.sock, &iov, 1) : 0;

	ml->o.bytes += ml->blen;
	ml->blen = 0;
	return ret;
}

/* One MEM frame of @n pages at page @pg, copied from guest memory at @p into the buffer. */
static int bounce_frame(struct mig_live *ml, uint64_t pg, const uint8_t *p, uint64_t n)
{
	uint64_t len = n * PAGE;
	uint8_t *f;
	int ret = 0;

	if (ml->blen + FRAME_HDR + len > BOUNCE)
		ret = bounce_flush(ml);
	if (ret)
		return ret;
	f = ml->bounce + ml->blen;
	for (unsigned i = 0; i < 8; i++)
		f[MIG_HDR + i] = (uint8_t)((pg * PAGE) >> (8 * i));
	memcpy(f + FRAME_HDR, p, len);
	mig_frame_encode(f, MIG_MEM, f + MIG_HDR, 8 + len);
	ml->blen += FRAME_HDR + len;
	return 0;
}

/*
 * Send the pages set in the bitmap, copied (the guest runs).  @skip_zero: pages all zero are
 * not sent (round 1: the destination's memory starts as holes).
 */
static int send_copied(struct mig_live *ml, bool skip_zero, uint64_t *sent)
{
	uint64_t pg = 0, n;
	int ret = 0;

	*sent = 0;
	while (!ret && !ml->cancel && (n = dirty_next_run(ml->bitmap, ml->npages, &pg))) {
		uint64_t end = pg + n;

		while (!ret && pg < end) {
			uint64_t left, k = 0;
			uint8_t *p = dirty_page_hva(ml->vm, pg, &left);

			if (!p)
				return -EINVAL;
			if (skip_zero && snap_page_is_zero(p)) {
				pg++;
				ml->res.zero_pages++;
				continue;
			}
			while (pg + k < end && k < left && k < RUN_PAGES &&
			       !(skip_zero && k && snap_page_is_zero(p + k * PAGE)))
				k++;
			ret = bounce_frame(ml, pg, p, k);
			pg += k;
			*sent += k;
		}
	}
	if (!ret)
		ret = bounce_flush(ml);
	return ml->cancel ? -ECANCELED : ret;
}

/* The pages written since the last harvest into the bitmap (snap/dirty.h). */
static int harvest(struct mig_live *ml, uint64_t *count)
{
	return dirty_harvest(ml->dc, ml->vm, ml->bitmap, ml->npages, count);
}

static void wake(struct mig_live *ml)
{
	uint64_t one = 1;

	if (write(ml->evfd, &one, sizeof(one)) != sizeof(one)) {
		/* Overflow only: a wake-up is pending anyway. */
	}
}

static int send_round_end(struct mig_live *ml, unsigned round, uint64_t pages)
{
	uint8_t p[16] = { 0 };

	for (unsigned i = 0; i < 4; i++)
		p[i] = (uint8_t)(round >> (8 * i));
	for (unsigned i = 0; i < 8; i++)
		p[8 + i] = (uint8_t)(pages >> (8 * i));
	ml->o.bytes += MIG_HDR + sizeof(p);
	return mig_send_frame(ml->o.sock, MIG_ROUND, p, sizeof(p), NULL, 0);
}

/* The sender thread: rounds until the rule says stop, or a failure. */
static void *precopy_thread(void *arg)
{
	struct mig_live *ml = arg;
	enum mig_verdict v = MIG_AGAIN;
	uint64_t t = now_ns(), count, sent, est;
	unsigned n = 0, throttle = 0;
	int ret;

	/* Round 1: what is touched now (pages written from here on are in the next harvest). */
	ret = snap_memory_touched_bitmap(ml->vm, ml->vm->backing, ml->bitmap, &count);
	while (!ret && v == MIG_AGAIN) {
		uint64_t b0 = ml->o.bytes;

		ret = send_copied(ml, n == 0, &sent);
		if (!ret)
			ret = send_round_end(ml, n + 1, sent);
		if (!ret)
			ret = harvest(ml, &count);
		if (ret)
			break;
		pthread_mutex_lock(&ml->lock);
		ml->rounds[n] = (struct mig_round){ sent, ml->o.bytes - b0, now_ns() - t, count,
						    throttle };
		t = now_ns();
		n++;
		v = mig_converge(&ml->pol, ml->rounds, n, &est);
		ml->estimates[n - 1] = est;
		ml->nrounds = n;
		/* The loop thread applies it when it reads this round (live_event). */
		if (v == MIG_AGAIN)
			ml->throttle = throttle = mig_throttle(&ml->pol, ml->rounds, n);
		pthread_mutex_unlock(&ml->lock);
		ml->res.precopy_pages += sent;
		wake(ml);
	}
	/* The last harvest goes to the final pause, which harvests once more. */
	if (!ret)
		dirty_client_unfetch(ml->dc, ml->bitmap, ml->npages);
	pthread_mutex_lock(&ml->lock);
	if (ret && !ml->err[0])
		snprintf(ml->err, sizeof(ml->err), "%s",
			 ret == -ECANCELED ? "the VM is ending"
			 : ret == -EPIPE || ret == -ECONNRESET
				 ? "the connection to the destination was closed"
				 : strerror(-ret));
	ml->ret = ret;
	ml->verdict = v;
	ml->finished = true;
	pthread_mutex_unlock(&ml->lock);
	wake(ml);
	return NULL;
}

/* ---- the final pause (event-loop thread) ---- */

/* The pages still dirty, harvested once with the VM paused, straight from guest memory. */
static int final_mem(void *opaque, struct snap_result *sr, char *err, size_t errlen)
{
	struct mig_live *ml = opaque;
	struct iovec iov[FINAL_IOV];
	uint8_t hdr[FINAL_IOV / 2][FRAME_HDR];
	uint64_t pg = 0, n, count;
	int ret, k = 0;

	ret = harvest(ml, &count);
	while (!ret && (n = dirty_next_run(ml->bitmap, ml->npages, &pg))) {
		uint64_t end = pg + n;

		while (!ret && pg < end) {
			uint64_t left, len;
			uint8_t *p = dirty_page_hva(ml->vm, pg, &left), *h = hdr[k / 2];

			if (!p)
				return -EINVAL;
			len = end - pg < left ? end - pg : left;
			len = len < RUN_PAGES ? len : RUN_PAGES;
			for (unsigned i = 0; i < 8; i++)
				h[MIG_HDR + i] = (uint8_t)((pg * PAGE) >> (8 * i));
			iov[k] = (struct iovec){ h, FRAME_HDR };
			iov[k + 1] = (struct iovec){ p, len * PAGE };
			mig_frame_encode2(h, MIG_MEM, h + MIG_HDR, 8, p, len * PAGE);
			ml->o.bytes += FRAME_HDR + len * PAGE;
			ml->res.final_pages += len;
			k += 2;
			pg += len;
			if (k == FINAL_IOV) {
				ret = mig_writev_full(ml->o.sock, iov, k);
				k = 0;
			}
		}
	}
	if (!ret && k)
		ret = mig_writev_full(ml->o.sock, iov, k);
	if (ret)
		snprintf(err, errlen, "sending the last dirty pages: %s", strerror(-ret));
	sr->mem_pages += ml->res.final_pages;
	return ret;
}

static void live_free(struct mig_live *ml)
{
	struct vm *vm = ml->vm;

	if (vm->migration == ml)
		vm->migration = NULL;
	if (ml->started && !ml->joined)
		pthread_join(ml->thread, NULL);
	evloop_del_fd(&vm->ev, ml->evfd);
	close(ml->evfd);
	if (ml->dc)
		dirty_client_free(ml->dc);
	mig_out_close(&ml->o);
	pthread_mutex_destroy(&ml->lock);
	free(ml->bitmap);
	free(ml->bounce);
	free(ml);
}

/* The thread is joined: no migration any more, its dirty tracking and connection go. */
static void release(struct mig_live *ml)
{
	vcpus_throttle(ml->vm, 0);
	if (ml->vm->migration == ml)
		ml->vm->migration = NULL;
	if (ml->dc)
		dirty_client_free(ml->dc);
	ml->dc = NULL;
	mig_out_close(&ml->o);
}

/* The end, with the thread joined: the final pause when the rounds ended well, then the reply. */
static void live_finish(struct mig_live *ml)
{
	struct migrate_result *res = &ml->res;
	char err[1024];
	int ret = ml->ret;

	snprintf(err, sizeof(err), "%s", ml->err);
	res->rounds = ml->nrounds;
	res->converged = mig_verdict_name(ml->verdict);
	for (unsigned i = 0; i < ml->nrounds; i++)
		if (ml->rounds[i].throttle > res->throttle_pct)
			res->throttle_pct = ml->rounds[i].throttle;
	/* The guest runs at full speed again if the pause fails (or stops there anyway). */
	vcpus_throttle(ml->vm, 0);
	if (!ret) {
		err[0] = '\0';
		ml->vm->migration_final = true;
		ret = mig_out_final(&ml->o, final_mem, ml, NULL, res, err, sizeof(err));
		ml->vm->migration_final = false;
		if (!ret)
			res->rounds++;
	}
	res->mem_pages = res->precopy_pages + res->final_pages;
	res->bytes = ml->o.bytes;
	res->total_ns = now_ns() - ml->t0;
	if (ret && !err[0])
		snprintf(err, sizeof(err), "%s", strerror(-ret));
	/* Before the reply: the client may look at the VM as soon as it has it. */
	release(ml);
	ml->done(ml->opaque, ret, res, err);
	live_free(ml);
}

/* On the loop thread: the sender reported a round, or finished. */
static void live_event(void *opaque, uint32_t events)
{
	struct mig_live *ml = opaque;
	struct mig_round r[MIG_MAX_ROUNDS];
	uint64_t est[MIG_MAX_ROUNDS], cnt;
	unsigned from, to, throttle;
	bool finished;

	if (read(ml->evfd, &cnt, sizeof(cnt)) != sizeof(cnt))
		return;
	pthread_mutex_lock(&ml->lock);
	from = ml->reported;
	to = ml->nrounds;
	memcpy(r + from, ml->rounds + from, (to - from) * sizeof(r[0]));
	memcpy(est + from, ml->estimates + from, (to - from) * sizeof(est[0]));
	ml->reported = to;
	finished = ml->finished;
	throttle = ml->throttle;
	pthread_mutex_unlock(&ml->lock);
	if (!finished && throttle != ml->vm->throttle_pct)
		vcpus_throttle(ml->vm, throttle);
	for (unsigned i = from; i < to; i++)
		if (ml->progress)
			ml->progress(ml->opaque, i + 1, &r[i], est[i]);
	if (!finished)
		return;
	pthread_join(ml->thread, NULL);
	ml->joined = true;
	live_finish(ml);
}

static int policy_check(const struct mig_policy *p, char *err, size_t errlen)
{
	if (p->max_rounds < 1 || p->max_rounds > MIG_MAX_ROUNDS - 1) {
		snprintf(err, errlen, "max_rounds %u: expected 1 to %u", p->max_rounds,
			 MIG_MAX_ROUNDS - 1);
		return -EINVAL;
	}
	if (p->autoconverge &&
	    (p->throttle_initial < 1 || p->throttle_initial > MIG_THROTTLE_MAX ||
	     p->throttle_increment < 1 || p->throttle_increment > MIG_THROTTLE_MAX)) {
		snprintf(err, errlen,
			 "throttle_initial %u, throttle_increment %u: expected 1 to %u",
			 p->throttle_initial, p->throttle_increment, MIG_THROTTLE_MAX);
		return -EINVAL;
	}
	return 0;
}

int migrate_live_start(struct vm *vm, const char *addr, const struct mig_policy *p,
		       mig_progress_fn progress, mig_done_fn done, void *opaque, char *err,
		       size_t errlen)
{
	struct mig_live *ml;
	int ret;

	if (errlen)
		err[0] = '\0';
	if (vm->paused) {
		snprintf(err, errlen, "the VM is paused: resume it before migrating it");
		return -EALREADY;
	}
	if (vm->migration || vm->live) {
		snprintf(err, errlen, "a %s is under way; wait for its reply",
			 vm->live ? "live checkpoint" : "live migration");
		return -EBUSY;
	}
	ret = policy_check(p, err, errlen);
	if (ret)
		return ret;
	ml = calloc(1, sizeof(*ml));
	if (!ml) {
		snprintf(err, errlen, "starting the migration: %s", strerror(ENOMEM));
		return -ENOMEM;
	}
	ml->vm = vm;
	ml->pol = *p;
	ml->progress = progress;
	ml->done = done;
	ml->opaque = opaque;
	ml->t0 = now_ns();
	ml->o.sock = -1;
	pthread_mutex_init(&ml->lock, NULL);
	ml->npages = dirty_npages(vm);
	ml->bitmap = calloc(dirty_words(ml->npages) ? dirty_words(ml->npages) : 1, 8);
	ml->bounce = malloc(BOUNCE);
	ml->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (!ml->bitmap || !ml->bounce || ml->evfd < 0) {
		ret = ml->evfd < 0 ? -errno : -ENOMEM;
		snprintf(err, errlen, "starting the migration: %s", strerror(-ret));
		goto fail;
	}
	ret = mig_out_open(&ml->o, vm, addr, MIG_F_LIVE, err, errlen);
	if (ret)
		goto fail;
	/* Tracking from before the first round reads the page tables: nothing is missed. */
	ret = dirty_client_new(vm, &ml->dc);
	if (ret) {
		ml->dc = NULL;
		snprintf(err, errlen,
			 "dirty-page tracking is not available (%s): migrate without --live",
			 strerror(-ret));
		goto fail;
	}
	ret = evloop_add_fd(&vm->ev, ml->evfd, EPOLLIN, live_event, ml);
	if (ret) {
		snprintf(err, errlen, "starting the migration: %s", strerror(-ret));
		goto fail;
	}
	ret = -pthread_create(&ml->thread, NULL, precopy_thread, ml);
	if (ret) {
		snprintf(err, errlen, "starting the sender thread: %s", strerror(-ret));
		goto fail;
	}
	ml->started = true;
	vm->migration = ml;
	return 0;
fail:
	live_free(ml);
	return ret;
}

static void abort_fn(void *opaque)
{
	struct vm *vm = opaque;
	struct mig_live *ml = vm->migration;

	if (!ml)
		return;
	/* The thread never waits for this one: it stops at its next write or page. */
	ml->cancel = true;
	shutdown(ml->o.sock, SHUT_RDWR);
	pthread_join(ml->thread, NULL);
	ml->joined = true;
	release(ml);
	ml->done(ml->opaque, -ECANCELED, &ml->res, "the VM ended before the migration did");
	live_free(ml);
}

void migrate_live_abort(struct vm *vm)
{
	evloop_call(&vm->ev, abort_fn, vm);
}
