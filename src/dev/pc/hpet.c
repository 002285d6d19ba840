// SPDX-License-Identifier: BSD-2-Clause
/*
 * The HPET (see hpet.h).
 *
 * Time: while the counter runs, counter = count_base + (vclock - ns_base) / 10 ns; while it is
 * halted it is count_base.  Each comparator with its interrupt enabled has a vtimer at the
 * virtual time the counter reaches it; the vtimer callback raises the interrupt, moves a
 * periodic comparator on by its period (several periods at once if the loop was late: missed
 * ticks are coalesced into one interrupt) and re-arms.
 */
#include "dev/pc/hpet.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sstream.h"
#include "vm.h"

#define HPET_NS_PER_TICK (HPET_PERIOD_FS / 1000000)
#define HPET_VENDOR 0x8086ULL
#define HPET_REV 0x01ULL

/* Registers (64-bit, at 8-byte aligned offsets). */
#define HPET_GCAP_ID 0x000
#define HPET_GEN_CONF 0x010
#define HPET_GINTR_STA 0x020
#define HPET_MAIN_CNT 0x0F0
#define HPET_TIMER_BASE 0x100
#define HPET_TIMER_STRIDE 0x20
#define HPET_TN_CONF 0x00
#define HPET_TN_CMP 0x08
#define HPET_TN_FSB 0x10

#define HPET_CAP_COUNT_64 (1ULL << 13)
#define HPET_CAP_LEG_RT (1ULL << 15)
#define HPET_CAPS                                                                             \
	(HPET_REV | (uint64_t)(HPET_NTIMERS - 1) << 8 | HPET_CAP_COUNT_64 | HPET_CAP_LEG_RT | \
	 HPET_VENDOR << 16 | HPET_PERIOD_FS << 32)

#define HPET_CNF_ENABLE (1ULL << 0)
#define HPET_CNF_LEG_RT (1ULL << 1)

#define TN_LEVEL (1ULL << 1)
#define TN_INT_ENB (1ULL << 2)
#define TN_PERIODIC (1ULL << 3)
#define TN_PER_INT_CAP (1ULL << 4)
#define TN_SIZE_CAP (1ULL << 5)
#define TN_VAL_SET (1ULL << 6)
#define TN_32BIT (1ULL << 8)
#define TN_ROUTE_SHIFT 9
#define TN_ROUTE_MASK (0x1FULL << TN_ROUTE_SHIFT)
#define TN_ROUTE_CAP \
	((uint64_t)(((1U << (HPET_LAST_PIN + 1)) - 1) & ~((1U << HPET_FIRST_PIN) - 1)) << 32)

/* Legacy replacement routes (GSIs): IRQ0 is GSI 2 after the MADT override, IRQ8 is GSI 8. */
#define HPET_LEGACY_GSI0 2
#define HPET_LEGACY_GSI1 8

struct hpet;

struct hpet_timer {
	struct hpet *h;
	unsigned n;
	uint64_t config; /* the writable bits only; capabilities are added on read */
	uint64_t cmp;	 /* comparator: the accumulator of a periodic timer */
	uint64_t period; /* what a periodic timer adds to cmp on each match */
	struct vtimer vt;
	uint64_t deadline; /* vclock of the next match, while armed */
	bool armed;
};

struct hpet {
	struct dev dev;
	struct vm *vm;
	pthread_mutex_t lock;
	uint64_t config; /* GEN_CONF */
	uint64_t isr;	 /* GINTR_STA: level-triggered timers that matched */
	uint64_t count_base, ns_base;
	uint32_t lines; /* GSIs this device holds high (level timers) */
	struct hpet_timer t[HPET_NTIMERS];
};

/* The saved registers: the snapshot layout and the load staging copy. */
struct hpet_regs {
	uint64_t config, isr, counter;
	struct {
		uint64_t config, cmp, period;
	} t[HPET_NTIMERS];
};

static uint64_t hpet_timer_wmask(unsigned n)
{
	uint64_t m = TN_LEVEL | TN_INT_ENB | TN_32BIT | TN_ROUTE_MASK;

	/* Only timer 0 can be periodic, and VAL_SET only matters for periodic timers. */
	if (n == 0)
		m |= TN_PERIODIC | TN_VAL_SET;
	return m;
}

static uint64_t hpet_timer_caps(unsigned n)
{
	return TN_SIZE_CAP | TN_ROUTE_CAP | (n == 0 ? TN_PER_INT_CAP : 0);
}

static bool hpet_route_ok(unsigned route)
{
	return route < 32 && (TN_ROUTE_CAP >> 32) & (1ULL << route);
}

static unsigned tn_route(uint64_t config)
{
	return (unsigned)((config & TN_ROUTE_MASK) >> TN_ROUTE_SHIFT);
}

static bool hpet_enabled(const struct hpet *h)
{
	return h->config & HPET_CNF_ENABLE;
}

static uint64_t hpet_ticks_since_base(const struct hpet *h, uint64_t now)
{
	return now > h->ns_base ? (now - h->ns_base) / HPET_NS_PER_TICK : 0;
}

static uint64_t hpet_counter(const struct hpet *h, uint64_t now)
{
	if (!hpet_enabled(h))
		return h->count_base;
	return h->count_base + hpet_ticks_since_base(h, now);
}

static uint64_t merge(uint64_t old, uint64_t val, uint64_t mask)
{
	return (old & ~mask) | (val & mask);
}

/* The GSI a timer's interrupt goes to; 0 when the guest has not routed it anywhere. */
static unsigned hpet_timer_gsi(const struct hpet *h, const struct hpet_timer *t)
{
	if (h->config & HPET_CNF_LEG_RT) {
		if (t->n == 0)
			return HPET_LEGACY_GSI0;
		if (t->n == 1)
			return HPET_LEGACY_GSI1;
	}
	return tn_route(t->config);
}

/*
 * Drive the level-triggered lines: a GSI is high while some level timer routed to it has its
 * status bit set and its interrupt enabled.  Two timers may share a GSI, hence the OR.
 */
static void hpet_update_lines(struct hpet *h)
{
	uint32_t want = 0, changed;

	for (unsigned n = 0; n < HPET_NTIMERS && hpet_enabled(h); n++) {
		struct hpet_timer *t = &h->t[n];
		unsigned gsi = hpet_timer_gsi(h, t);

		if ((t->config & TN_LEVEL) && (t->config & TN_INT_ENB) && (h->isr & (1ULL << n)) &&
		    gsi)
			want |= 1U << gsi;
	}
	changed = want ^ h->lines;
	h->lines = want;
	for (unsigned gsi = 0; changed; gsi++, changed >>= 1)
		if (changed & 1)
			vm_set_irq(h->vm, gsi, (want >> gsi) & 1);
}

/*
 * Arm @t's vtimer at the time the counter next equals the comparator (on its low 32 bits in
 * 32-bit mode, so the match after a wrap is found), as seen at vclock time @now.  Right after
 * a match the counter still equals the comparator; @after_match then means "the next time
 * round", not "now".  A match passes the time it computed the new comparator for: reading the
 * clock again here could find the counter already past it and schedule the match a whole
 * wrap (43 s in 32-bit mode) later.
 */
static void hpet_timer_arm_at(struct hpet *h, struct hpet_timer *t, bool after_match, uint64_t now)
{
	uint64_t ticks, delta;

	t->armed = false;
	vtimer_cancel(&t->vt);
	if (!hpet_enabled(h) || !(t->config & TN_INT_ENB))
		return;
	ticks = hpet_ticks_since_base(h, now);
	if (t->config & TN_32BIT) {
		delta = (uint32_t)(t->cmp - (h->count_base + ticks));
		if (!delta && after_match)
			delta = 1ULL << 32;
	} else {
		delta = t->cmp - (h->count_base + ticks);
		if (!delta && after_match)
			return; /* 2^64 ticks away: never */
	}
	/* A comparator far behind the counter is thousands of years away: never. */
	if (delta > (UINT64_MAX - h->ns_base) / HPET_NS_PER_TICK - ticks)
		return;
	t->deadline = h->ns_base + (ticks + delta) * HPET_NS_PER_TICK;
	t->armed = true;
	vtimer_arm(&t->vt, t->deadline);
}

static void hpet_timer_arm(struct hpet *h, struct hpet_timer *t, bool after_match)
{
	hpet_timer_arm_at(h, t, after_match, vclock_ns(&h->vm->ev));
}

static void hpet_timer_raise(struct hpet *h, struct hpet_timer *t)
{
	unsigned gsi = hpet_timer_gsi(h, t);

	if (t->config & TN_LEVEL) {
		h->isr |= 1ULL << t->n;
		hpet_update_lines(h);
	} else if (gsi) {
		vm_pulse_irq(h->vm, gsi);
	}
}

/* The counter reached the comparator: interrupt, and move a periodic comparator past now. */
static void hpet_timer_match(struct hpet *h, struct hpet_timer *t, uint64_t now)
{
	if ((t->config & TN_PERIODIC) && t->period) {
		uint64_t width = (t->config & TN_32BIT) ? UINT32_MAX : UINT64_MAX;
		uint64_t behind = (hpet_counter(h, now) - t->cmp) & width;

		t->cmp = (t->cmp + (behind / t->period + 1) * t->period) & width;
	}
	hpet_timer_raise(h, t);
	hpet_timer_arm_at(h, t, true, now);
}

static void hpet_timer_expire(void *opaque)
{
	struct hpet_timer *t = opaque;
	struct hpet *h = t->h;
	uint64_t now;

	pthread_mutex_lock(&h->lock);
	now = vclock_ns(&h->vm->ev);
	/* A stale expiry (re-armed or stopped since) finds armed clear or a later deadline. */
	if (t->armed && now >= t->deadline)
		hpet_timer_match(h, t, now);
	pthread_mutex_unlock(&h->lock);
}

/* Run matches that are due but whose vtimer has not run yet (the loop is busy saving). */
static void hpet_catch_up(struct hpet *h, uint64_t now)
{
	for (unsigned n = 0; n < HPET_NTIMERS; n++)
		if (h->t[n].armed && now >= h->t[n].deadline)
			hpet_timer_match(h, &h->t[n], now);
}

/* Legacy routing takes effect with the counter enabled, and takes IRQ 8 from the RTC. */
static void hpet_update_legacy(struct hpet *h)
{
	atomic_store(&h->vm->hpet_legacy, (h->config & (HPET_CNF_ENABLE | HPET_CNF_LEG_RT)) ==
						  (HPET_CNF_ENABLE | HPET_CNF_LEG_RT));
}

static void hpet_write_gen_conf(struct hpet *h, uint64_t v, uint64_t now)
{
	uint64_t old = h->config;

	v &= HPET_CNF_ENABLE | HPET_CNF_LEG_RT;
	if (!(old & HPET_CNF_ENABLE) && (v & HPET_CNF_ENABLE))
		h->ns_base = now;
	else if ((old & HPET_CNF_ENABLE) && !(v & HPET_CNF_ENABLE))
		h->count_base = hpet_counter(h, now);
	h->config = v;
	hpet_update_legacy(h);
	if ((old ^ v) & HPET_CNF_ENABLE)
		for (unsigned n = 0; n < HPET_NTIMERS; n++)
			hpet_timer_arm(h, &h->t[n], false);
	hpet_update_lines(h);
}

/*
 * Tn_INT_ENB gates only the interrupt: a periodic timer keeps matching while it is clear, so
 * its accumulator has moved on by whole periods when the guest enables it.  This model arms no
 * vtimer for a disabled timer, so the catch-up happens here.  Without it a guest that wrote the
 * comparator and was descheduled for a period before setting Tn_INT_ENB found the comparator
 * behind the counter and heard nothing until the counter came round (43 s in 32-bit mode).
 * "Behind" is less than half the counter's range back.
 */
static void hpet_periodic_caught_up(struct hpet *h, struct hpet_timer *t, uint64_t now)
{
	uint64_t width = (t->config & TN_32BIT) ? UINT32_MAX : UINT64_MAX;
	uint64_t behind = (hpet_counter(h, now) - t->cmp) & width;

	if (!t->period || !hpet_enabled(h) || !behind || behind > width / 2)
		return;
	t->cmp = (t->cmp + (behind / t->period + 1) * t->period) & width;
}

static void hpet_write_timer_conf(struct hpet *h, struct hpet_timer *t, uint64_t v)
{
	uint64_t old = t->config;

	v &= hpet_timer_wmask(t->n);
	/* A route the hardware does not offer is not taken; the old one stays. */
	if (tn_route(v) != tn_route(old) && !hpet_route_ok(tn_route(v)))
		v = merge(v, old, TN_ROUTE_MASK);
	if (v & TN_32BIT) {
		t->cmp &= UINT32_MAX;
		t->period &= UINT32_MAX;
	}
	/* Status bits exist for level-triggered timers only. */
	if (!(v & TN_LEVEL))
		h->isr &= ~(1ULL << t->n);
	t->config = v;
	if ((v & ~old & TN_INT_ENB) && (v & TN_PERIODIC))
		hpet_periodic_caught_up(h, t, vclock_ns(&h->vm->ev));
	if ((old ^ v) & (TN_INT_ENB | TN_PERIODIC | TN_32BIT))
		hpet_timer_arm(h, t, false);
	hpet_update_lines(h);
}

/*
 * The comparator.  A one-shot timer's write sets it; a periodic timer's write sets the period,
 * and also the accumulator when VAL_SET was written just before (the sequence Linux and
 * FreeBSD use: config with VAL_SET, comparator = first expiry, comparator = period).
 */
static void hpet_write_timer_cmp(struct hpet *h, struct hpet_timer *t, uint64_t val, uint64_t mask)
{
	if (t->config & TN_32BIT)
		mask &= UINT32_MAX;
	if (!mask)
		return;
	if (!(t->config & TN_PERIODIC) || (t->config & TN_VAL_SET))
		t->cmp = merge(t->cmp, val, mask);
	if (t->config & TN_PERIODIC)
		t->period = merge(t->period, val, mask);
	t->config &= ~TN_VAL_SET;
	hpet_timer_arm(h, t, false);
}

static struct hpet_timer *hpet_timer_at(struct hpet *h, unsigned reg)
{
	if (reg < HPET_TIMER_BASE || reg >= HPET_TIMER_BASE + HPET_NTIMERS * HPET_TIMER_STRIDE)
		return NULL;
	return &h->t[(reg - HPET_TIMER_BASE) / HPET_TIMER_STRIDE];
}

static uint64_t hpet_read_reg(struct hpet *h, unsigned reg, uint64_t now)
{
	struct hpet_timer *t = hpet_timer_at(h, reg);

	if (t) {
		switch (reg % HPET_TIMER_STRIDE) {
		case HPET_TN_CONF:
			return t->config | hpet_timer_caps(t->n);
		case HPET_TN_CMP:
			return t->cmp;
		default:
			return 0; /* FSB route: no FSB delivery */
		}
	}
	switch (reg) {
	case HPET_GCAP_ID:
		return HPET_CAPS;
	case HPET_GEN_CONF:
		return h->config;
	case HPET_GINTR_STA:
		return h->isr;
	case HPET_MAIN_CNT:
		return hpet_counter(h, now);
	default:
		return 0;
	}
}

/* Write the bytes of @val selected by @mask into the 64-bit register at @reg. */
static void hpet_write_reg(struct hpet *h, unsigned reg, uint64_t val, uint64_t mask, uint64_t now)
{
	struct hpet_timer *t = hpet_timer_at(h, reg);

	if (t) {
		if (reg % HPET_TIMER_STRIDE == HPET_TN_CONF)
			hpet_write_timer_conf(h, t, merge(t->config, val, mask));
		else if (reg % HPET_TIMER_STRIDE == HPET_TN_CMP)
			hpet_write_timer_cmp(h, t, val, mask);
		return;
	}
	switch (reg) {
	case HPET_GEN_CONF:
		hpet_write_gen_conf(h, merge(h->config, val, mask), now);
		break;
	case HPET_GINTR_STA:
		/* Write 1 to clear; the line drops when no other timer holds it. */
		h->isr &= ~(val & mask);
		hpet_update_lines(h);
		break;
	case HPET_MAIN_CNT:
		/* Writable only while halted (timers are armed when it starts again). */
		if (!hpet_enabled(h))
			h->count_base = merge(h->count_base, val, mask);
		break;
	default:
		break; /* read-only or reserved */
	}
}

/* The guest may use aligned 32- and 64-bit accesses, to either half of a 64-bit register. */
static void hpet_mmio(void *opaque, uint64_t off, void *data, unsigned size, bool is_write)
{
	struct hpet *h = opaque;
	unsigned shift = (unsigned)(off & 7) * 8;
	uint64_t mask, now;

	if ((size != 4 && size != 8) || off % size) {
		if (!is_write)
			memset(data, 0xff, size);
		return;
	}
	mask = size == 8 ? UINT64_MAX : (uint64_t)UINT32_MAX << shift;
	pthread_mutex_lock(&h->lock);
	now = vclock_ns(&h->vm->ev);
	if (is_write)
		hpet_write_reg(h, (unsigned)(off & ~7ULL), io_get(data, size) << shift, mask, now);
	else
		io_put(data, size,
		       (hpet_read_reg(h, (unsigned)(off & ~7ULL), now) & mask) >> shift);
	pthread_mutex_unlock(&h->lock);
}

static void hpet_regs_stream(struct sstream *s, struct hpet_regs *r)
{
	ss_u64(s, &r->config);
	ss_u64(s, &r->isr);
	ss_u64(s, &r->counter);
	ss_expect_u32(s, HPET_NTIMERS, "HPET timers");
	for (unsigned n = 0; n < HPET_NTIMERS; n++) {
		ss_u64(s, &r->t[n].config);
		ss_u64(s, &r->t[n].cmp);
		ss_u64(s, &r->t[n].period);
	}
}

/* Everything this code could have saved, and nothing else: the file may be hostile. */
static void hpet_regs_check(struct sstream *s, const struct hpet_regs *r)
{
	if (r->config & ~(HPET_CNF_ENABLE | HPET_CNF_LEG_RT))
		ss_fail(s, -EINVAL, "HPET configuration 0x%" PRIx64 " has reserved bits set",
			r->config);
	if (r->isr >> HPET_NTIMERS)
		ss_fail(s, -EINVAL, "HPET interrupt status 0x%" PRIx64 " names missing timers",
			r->isr);
	for (unsigned n = 0; n < HPET_NTIMERS; n++) {
		uint64_t c = r->t[n].config;

		if (c & ~hpet_timer_wmask(n))
			ss_fail(s, -EINVAL,
				"HPET timer %u configuration 0x%" PRIx64
				" has unsupported bits set",
				n, c);
		if (tn_route(c) && !hpet_route_ok(tn_route(c)))
			ss_fail(s, -EINVAL,
				"HPET timer %u is routed to IOAPIC pin %u, which it "
				"cannot use (pins %u-%u)",
				n, tn_route(c), HPET_FIRST_PIN, HPET_LAST_PIN);
		if ((c & TN_32BIT) && (r->t[n].cmp >> 32 || r->t[n].period >> 32))
			ss_fail(s, -EINVAL,
				"HPET timer %u is in 32-bit mode with a 64-bit "
				"comparator",
				n);
		if ((r->isr & (1ULL << n)) && !(c & TN_LEVEL))
			ss_fail(s, -EINVAL, "HPET timer %u is edge-triggered but has status set",
				n);
	}
}

static int hpet_save(struct dev *d, struct sstream *s)
{
	struct hpet *h = container_of(d, struct hpet, dev);
	struct hpet_regs r;
	uint64_t now;

	pthread_mutex_lock(&h->lock);
	now = vclock_ns(&h->vm->ev);
	hpet_catch_up(h, now);
	r.config = h->config;
	r.isr = h->isr;
	r.counter = hpet_counter(h, now);
	for (unsigned n = 0; n < HPET_NTIMERS; n++) {
		r.t[n].config = h->t[n].config;
		r.t[n].cmp = h->t[n].cmp;
		r.t[n].period = h->t[n].period;
	}
	pthread_mutex_unlock(&h->lock);
	hpet_regs_stream(s, &r);
	return ss_error(s);
}

/*
 * Load re-bases the counter on the current virtual clock (the orchestrator has set it to the
 * saved time already, so the guest sees no jump; on a clock that differs the counter still
 * continues from the saved value) and re-arms the comparators here, at the end of load.
 */
static int hpet_load(struct dev *d, struct sstream *s, unsigned version)
{
	struct hpet *h = container_of(d, struct hpet, dev);
	struct hpet_regs r;

	memset(&r, 0, sizeof(r));
	if (version != d->ops->version)
		return ss_fail(s, -EINVAL, "state version %u is not supported (%u)", version,
			       d->ops->version);
	hpet_regs_stream(s, &r);
	if (!ss_error(s))
		hpet_regs_check(s, &r);
	if (ss_finish(s))
		return ss_error(s);
	pthread_mutex_lock(&h->lock);
	h->config = r.config;
	hpet_update_legacy(h);
	h->isr = r.isr;
	h->count_base = r.counter;
	h->ns_base = vclock_ns(&h->vm->ev);
	for (unsigned n = 0; n < HPET_NTIMERS; n++) {
		h->t[n].config = r.t[n].config;
		h->t[n].cmp = r.t[n].cmp;
		h->t[n].period = r.t[n].period;
		hpet_timer_arm(h, &h->t[n], false);
	}
	hpet_update_lines(h);
	pthread_mutex_unlock(&h->lock);
	return 0;
}

/* Timers keep running while paused: the counter is vclock-based either way. */
static int hpet_pause(struct dev *d)
{
	return 0;
}

static int hpet_resume(struct dev *d)
{
	return 0;
}

static void hpet_destroy(struct dev *d)
{
	struct hpet *h = container_of(d, struct hpet, dev);

	for (unsigned n = 0; n < HPET_NTIMERS; n++)
		vtimer_cancel(&h->t[n].vt);
	pthread_mutex_destroy(&h->lock);
	free(h);
}

static const struct dev_ops hpet_ops = {
	.name = "hpet",
	.version = 1,
	.pause = hpet_pause,
	.resume = hpet_resume,
	.save = hpet_save,
	.load = hpet_load,
	.destroy = hpet_destroy,
};

struct dev *hpet_create(struct vm *vm, char *err, size_t errlen)
{
	struct hpet *h = calloc(1, sizeof(*h));
	int ret;

	if (!h) {
		snprintf(err, errlen, "hpet: out of memory");
		return NULL;
	}
	h->dev.ops = &hpet_ops;
	snprintf(h->dev.id, sizeof(h->dev.id), "hpet");
	h->vm = vm;
	pthread_mutex_init(&h->lock, NULL);
	for (unsigned n = 0; n < HPET_NTIMERS; n++) {
		h->t[n].h = h;
		h->t[n].n = n;
		/* After reset the comparators hold all-ones (no match for a long time). */
		h->t[n].cmp = UINT64_MAX;
		vtimer_init(&h->t[n].vt, &vm->ev, hpet_timer_expire, &h->t[n]);
	}
	ret = bus_register(&vm->mmio, HPET_BASE, HPET_MMIO_SIZE, hpet_mmio, h);
	if (ret) {
		snprintf(err, errlen, "hpet: MMIO 0x%llx: %s", (unsigned long long)HPET_BASE,
			 strerror(-ret));
		pthread_mutex_destroy(&h->lock);
		free(h);
		return NULL;
	}
	vm_add_dev(vm, &h->dev);
	return &h->dev;
}
