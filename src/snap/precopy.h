/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Live migration (snap/precopy.c, doc/migration.md): pre-copy rounds on a sender thread while
 * the guest runs, then the stop-and-copy of snap/migrate.h with only the pages still dirty.
 *
 *	round 1     every touched page (page tables tell; an untouched page is never read)
 *	round n     the pages written during round n-1 (snap/dirty.h), each round closed by ROUND
 *	convergence after each round, mig_converge decides from what the round measured
 *	final       on the event-loop thread: pause, one harvest of the dirty set, state, those
 *	            pages, END, READY, GO; the destination runs the guest, this khyve exits 0
 *
 * Any failure before GO (the destination refused or died, the connection dropped, the VM
 * ended) leaves the guest running here and releases the dirty-page client.  The sender
 * thread never waits for the event-loop thread: it reports through an eventfd, and the loop
 * thread joins it before the final pause.
 */
#ifndef KHYVE_SNAP_PRECOPY_H
#define KHYVE_SNAP_PRECOPY_H

#include <stdbool.h>
#include <stdint.h>

#include "snap/migrate.h"

struct vm;

#define MIG_DEFAULT_DOWNTIME_MS 20
#define MIG_DEFAULT_ROUNDS 30
#define MIG_STALL_ROUNDS 3
/*
 * The part of the pause that is not the last pages: stopping the vCPUs, their and the devices'
 * state, and the destination creating and loading them before it says READY (measured: 2.5
 * to 10 ms here depending on the host's load, bench/README.md).  It is known only once it
 * happened, so the estimate counts this share of the budget for it (at most half the budget).
 */
#define MIG_DEFAULT_HANDOVER_MS 10
/*
 * Within the budget, the rounds go on while each still halves the dirty set and the last
 * pages would take longer than this to send: a round more costs the guest nothing and
 * shortens its pause (a budget is a bound, not a target).
 */
#define MIG_DEFAULT_FLOOR_US 500
/* Auto-converge, QEMU's defaults (cpu-throttle-initial, -increment; max-cpu-throttle 99). */
#define MIG_THROTTLE_INITIAL 20
#define MIG_THROTTLE_INCREMENT 10
#define MIG_THROTTLE_MAX 99

/*
 * When the pre-copy rounds stop, and how they make the guest dirty less (the JSON request's
 * max_downtime_ms, max_rounds, autoconverge, throttle_initial, throttle_increment).
 */
struct mig_policy {
	uint64_t max_downtime_ns; /* budget for the final pause */
	unsigned max_rounds;	  /* rounds at most, the first included (1..MIG_MAX_ROUNDS) */
	unsigned stall_rounds;	  /* stop when the dirty set has not shrunk for this many */
	uint64_t handover_ns;	  /* the pause's part that is not pages (half the budget at most) */
	uint64_t floor_ns;	  /* within the budget, go on above this (0: stop once it fits) */
	bool autoconverge;	  /* throttle the vCPUs while the dirty set does not shrink */
	unsigned throttle_initial, throttle_increment; /* percent of their time asleep */
};

/* What one pre-copy round did. */
struct mig_round {
	uint64_t pages;	   /* pages sent */
	uint64_t bytes;	   /* bytes put on the socket */
	uint64_t ns;	   /* from its harvest to its ROUND frame */
	uint64_t dirty;	   /* pages written meanwhile: what the next round, or the pause, sends */
	unsigned throttle; /* percent of the time the vCPUs slept during it (auto-converge) */
};

enum mig_verdict {
	MIG_AGAIN,   /* one more round */
	MIG_FITS,    /* the dirty set can be sent within the budget: pause now */
	MIG_ROUNDS,  /* the most rounds there may be */
	MIG_STALLED, /* the dirty set stopped shrinking: more rounds would not help */
};

/*
 * The convergence rule, after @n rounds (@r[0..n-1]): the bandwidth is all bytes sent over
 * all the time spent sending them; the estimate (in @estimate_ns) is the last round's dirty
 * set at that bandwidth plus the hand-over share (handover_ns, at most half the budget).
 * FITS when it is within the budget (with floor_ns: and the last round did not halve the dirty
 * set, that is left more than half the pages it sent dirty, or the last pages alone would take
 * at most floor_ns, or no round is left), else ROUNDS at max_rounds, else STALLED when none of the
 * last stall_rounds rounds left fewer dirty pages than the best round before them (with
 * auto-converge: only once the last round ran at the highest throttle), else AGAIN.
 */
enum mig_verdict mig_converge(const struct mig_policy *p, const struct mig_round *r, unsigned n,
			      uint64_t *estimate_ns);
/*
 * Auto-converge: the throttle for the round after @r[n-1], which did not end the rounds.  From
 * round 2 on (round 1 sends the whole guest once), a round that left dirty more than half the
 * pages it sent did not bring the dirty set down: the throttle starts at throttle_initial,
 * then grows by throttle_increment each time, up to MIG_THROTTLE_MAX.  A round that shrank it
 * keeps the throttle.  0 without auto-converge.
 */
unsigned mig_throttle(const struct mig_policy *p, const struct mig_round *r, unsigned n);
const char *mig_verdict_name(enum mig_verdict v);

/* On the event-loop thread: a round ended (progress line), and the end of it all (reply). */
typedef void (*mig_progress_fn)(void *opaque, unsigned round, const struct mig_round *r,
				uint64_t estimate_ns);
typedef void (*mig_done_fn)(void *opaque, int ret, const struct migrate_result *res,
			    const char *err);

/*
 * Start a live migration of the running @vm to @addr.  0 when the sender thread runs: the
 * guest goes on, @progress reports each round, @done the outcome (on success the VM ends
 * here, as after a suspend).  Otherwise nothing started and @err says why.  On the
 * event-loop thread.
 */
int migrate_live_start(struct vm *vm, const char *addr, const struct mig_policy *p,
		       mig_progress_fn progress, mig_done_fn done, void *opaque, char *err,
		       size_t errlen);
/* The VM is ending: stop a live migration in progress (its @done gets -ECANCELED). */
void migrate_live_abort(struct vm *vm);

#endif
