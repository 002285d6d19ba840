// SPDX-License-Identifier: BSD-2-Clause
/*
 * The MC146818 RTC: see rtc.h.
 *
 * Time model.  The chip's divider chain counts a 32768 Hz crystal; every second it runs an
 * update cycle that increments the time registers.  Here the chain's position is derived from
 * the virtual clock: at vclock base_vclock the chain was base_phase ns into second base_sec,
 * so at vclock t it is base_phase + (t - base_vclock) ns past the start of base_sec.  The
 * time registers are computed from that when read; they hold stored values only while the
 * clock is stopped (register B SET, or the divider held in reset), which is when the guest
 * writes them.  Interrupt deadlines are boundaries of the same chain, so periodic interrupts
 * and update cycles stay in step as the real chip's do.
 *
 * Locking: r->lock guards everything; port I/O runs on vCPU threads, timers on the event loop.
 */
#include "dev/pc/rtc.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sstream.h"
#include "vm.h"

#define RTC_STATE_VERSION 1
#define RTC_PORT 0x70
#define NSEC 1000000000ULL
#define RTC_HZ 32768ULL
/* UIP rises 244 us (8 cycles of the 32768 Hz crystal) before each update. */
#define RTC_UIP_NS (8 * NSEC / RTC_HZ + 1)

/* CMOS offsets. */
#define RTC_SEC 0x00
#define RTC_SEC_ALARM 0x01
#define RTC_MIN 0x02
#define RTC_MIN_ALARM 0x03
#define RTC_HOUR 0x04
#define RTC_HOUR_ALARM 0x05
#define RTC_DOW 0x06
#define RTC_DAY 0x07
#define RTC_MONTH 0x08
#define RTC_YEAR 0x09
#define RTC_REG_A 0x0a
#define RTC_REG_B 0x0b
#define RTC_REG_C 0x0c
#define RTC_REG_D 0x0d
#define RTC_CENTURY 0x32
/* Memory size, in the cells bhyve and QEMU use. */
#define CMOS_BASE_KB 0x15
#define CMOS_EXT_KB 0x17
#define CMOS_EXT_KB2 0x30
#define CMOS_MEM_16M 0x34
#define CMOS_MEM_4G 0x5b

#define A_UIP 0x80
#define A_DV 0x70
#define A_DV_NORMAL 0x20 /* 32768 Hz time base, chain running */
#define A_RS 0x0f

#define B_SET 0x80
#define B_PIE 0x40
#define B_AIE 0x20
#define B_UIE 0x10
#define B_SQWE 0x08
#define B_DM_BINARY 0x04
#define B_24H 0x02
#define B_DSE 0x01

#define C_IRQF 0x80
#define C_PF 0x40
#define C_AF 0x20
#define C_UF 0x10
#define C_FLAGS (C_PF | C_AF | C_UF)

#define D_VRT 0x80

#define ALARM_DONT_CARE 0xc0

/* What a snapshot holds. */
struct rtc_state {
	uint8_t cmos[128];
	uint8_t index;
	int64_t base_sec;    /* RTC seconds since 1970 in the RTC's own zone */
	uint32_t base_phase; /* ns into base_sec at base_vclock */
	uint64_t base_vclock;
	uint64_t last_c_read; /* vclock of the last read of C: PF for guests that poll */
};

struct rtc {
	struct dev dev;
	struct vm *vm;
	pthread_mutex_t lock;
	struct rtc_state s;
	struct vtimer update_timer, periodic_timer;
	uint64_t update_deadline, periodic_deadline; /* 0: not armed */
	bool paused;				     /* by pause, or loaded and not yet resumed */
	void (*alarm_hook)(void *);		     /* RTC_STS in the PM block */
	void *alarm_opaque;
};

static const struct dev_ops rtc_ops;

/* Calendar arithmetic (proleptic Gregorian, days since 1970-01-01) -------------------------- */

static int64_t floor_div(int64_t a, int64_t b)
{
	return a / b - ((a % b) && ((a < 0) != (b < 0)));
}

static int64_t floor_mod(int64_t a, int64_t b)
{
	return a - floor_div(a, b) * b;
}

static int64_t days_from_date(int64_t y, unsigned m, unsigned d)
{
	int64_t era, yoe, doy, doe;

	/* Count years from March so the leap day is the last day of the year. */
	if (m <= 2)
		y--;
	era = floor_div(y, 400);
	yoe = y - era * 400;
	doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static void date_from_days(int64_t days, int64_t *y, unsigned *m, unsigned *d)
{
	int64_t z = days + 719468, era = floor_div(z, 146097);
	int64_t doe = z - era * 146097;
	int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	int64_t mp = (5 * doy + 2) / 153;

	*d = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
	*m = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
	*y = yoe + era * 400 + (*m <= 2);
}

/* Register encoding ------------------------------------------------------------------------ */

static uint8_t rtc_enc(const struct rtc *r, unsigned v)
{
	if (r->s.cmos[RTC_REG_B] & B_DM_BINARY)
		return (uint8_t)v;
	v %= 100;
	return (uint8_t)(((v / 10) << 4) | (v % 10));
}

/* Garbage BCD decodes to an out-of-range number, which the arithmetic below normalizes. */
static unsigned rtc_dec(const struct rtc *r, uint8_t v)
{
	if (r->s.cmos[RTC_REG_B] & B_DM_BINARY)
		return v;
	return (v >> 4) * 10 + (v & 0x0f);
}

static uint8_t rtc_enc_hour(const struct rtc *r, unsigned h)
{
	unsigned h12 = h % 12 ? h % 12 : 12;

	if (r->s.cmos[RTC_REG_B] & B_24H)
		return rtc_enc(r, h);
	return rtc_enc(r, h12) | (h >= 12 ? 0x80 : 0);
}

static unsigned rtc_dec_hour(const struct rtc *r, uint8_t v)
{
	if (r->s.cmos[RTC_REG_B] & B_24H)
		return rtc_dec(r, v);
	/* 12 AM is midnight, 12 PM is noon. */
	return rtc_dec(r, v & 0x7f) % 12 + ((v & 0x80) ? 12 : 0);
}

static void rtc_secs_to_regs(struct rtc *r, int64_t secs)
{
	int64_t days = floor_div(secs, 86400), rem = secs - days * 86400, y;
	uint8_t *c = r->s.cmos;
	unsigned m, d;

	date_from_days(days, &y, &m, &d);
	c[RTC_SEC] = rtc_enc(r, (unsigned)(rem % 60));
	c[RTC_MIN] = rtc_enc(r, (unsigned)(rem / 60 % 60));
	c[RTC_HOUR] = rtc_enc_hour(r, (unsigned)(rem / 3600));
	/* 1970-01-01 was a Thursday; the register counts Sunday as 1. */
	c[RTC_DOW] = rtc_enc(r, (unsigned)floor_mod(days + 4, 7) + 1);
	c[RTC_DAY] = rtc_enc(r, d);
	c[RTC_MONTH] = rtc_enc(r, m);
	c[RTC_YEAR] = rtc_enc(r, (unsigned)(y % 100));
	c[RTC_CENTURY] = rtc_enc(r, (unsigned)(y / 100));
}

static int64_t rtc_regs_to_secs(const struct rtc *r)
{
	const uint8_t *c = r->s.cmos;
	unsigned month = rtc_dec(r, c[RTC_MONTH]);
	int64_t year = rtc_dec(r, c[RTC_CENTURY]) * 100 + rtc_dec(r, c[RTC_YEAR]);
	int64_t days;

	if (month < 1)
		month = 1;
	if (month > 12)
		month = 12;
	days = days_from_date(year, month, 1) + (int64_t)rtc_dec(r, c[RTC_DAY]) - 1;
	return days * 86400 + rtc_dec_hour(r, c[RTC_HOUR]) * 3600LL +
	       rtc_dec(r, c[RTC_MIN]) * 60LL + rtc_dec(r, c[RTC_SEC]);
}

/* The clock -------------------------------------------------------------------------------- */

static bool rtc_divider_on(uint8_t a)
{
	return (a & A_DV) == A_DV_NORMAL;
}

/* Whether update cycles run: the divider counts and the guest is not setting the time. */
static bool rtc_updating(const struct rtc *r)
{
	return rtc_divider_on(r->s.cmos[RTC_REG_A]) && !(r->s.cmos[RTC_REG_B] & B_SET);
}

/* ns since the start of base_sec along the divider chain (frozen while it is in reset). */
static uint64_t rtc_chain_ns(const struct rtc *r, uint64_t now)
{
	uint64_t t = r->s.base_phase;

	if (rtc_divider_on(r->s.cmos[RTC_REG_A]) && now > r->s.base_vclock)
		t += now - r->s.base_vclock;
	return t;
}

static int64_t rtc_now_secs(const struct rtc *r, uint64_t now)
{
	if (!rtc_updating(r))
		return r->s.base_sec;
	return r->s.base_sec + (int64_t)(rtc_chain_ns(r, now) / NSEC);
}

/*
 * Re-express the base at @now under the current A/B, so A/B can change without moving the
 * time; the time registers are refreshed when the clock was running, so a clock that stops
 * now shows the time it stopped at.
 */
static void rtc_rebase(struct rtc *r, uint64_t now)
{
	int64_t secs = rtc_now_secs(r, now);
	uint64_t chain = rtc_chain_ns(r, now);

	if (rtc_updating(r))
		rtc_secs_to_regs(r, secs);
	r->s.base_sec = secs;
	r->s.base_phase = (uint32_t)(chain % NSEC);
	r->s.base_vclock = now;
}

/* The vclock of the first chain boundary after @now, for a period of @ticks of 32768 Hz. */
static uint64_t rtc_next_boundary(const struct rtc *r, uint64_t now, uint64_t ticks)
{
	uint64_t t = rtc_chain_ns(r, now), sec = t / NSEC, ns = t % NSEC;
	uint64_t next = (ns * RTC_HZ / NSEC / ticks + 1) * ticks;
	/* Round up so the deadline is never before the boundary. */
	uint64_t next_ns = (next * NSEC + RTC_HZ - 1) / RTC_HZ;

	return r->s.base_vclock + (sec * NSEC + next_ns - r->s.base_phase);
}

/* Periodic interrupt period in crystal ticks; 0 when off.  8192 Hz (rate 3) is the fastest. */
static uint64_t rtc_period_ticks(const struct rtc *r)
{
	unsigned rs = r->s.cmos[RTC_REG_A] & A_RS;

	if (!rs || !rtc_divider_on(r->s.cmos[RTC_REG_A]))
		return 0;
	/* Rates 1 and 2 repeat 256 and 128 Hz, as on the real part with a 32768 Hz base. */
	if (rs <= 2)
		return 1ULL << (rs + 6);
	return 1ULL << (rs - 1);
}

/* Interrupts ------------------------------------------------------------------------------- */

/*
 * Set event flags in C.  IRQF follows "an enabled flag is set"; the line is pulsed when IRQF
 * rises, and cannot rise again until the guest reads C, as on the chip.
 */
static void rtc_set_flags(struct rtc *r, uint8_t flags)
{
	uint8_t *c = &r->s.cmos[RTC_REG_C];
	bool was = *c & C_IRQF;

	*c |= flags;
	if (*c & r->s.cmos[RTC_REG_B] & C_FLAGS) {
		*c |= C_IRQF;
		/* In HPET legacy mode IRQ 8 is timer 1's: the chip's IRQ8# goes nowhere. */
		if (!was && !atomic_load(&r->vm->hpet_legacy))
			vm_pulse_irq(r->vm, IRQ_RTC);
	} else {
		*c &= ~C_IRQF;
	}
}

static void rtc_arm_update(struct rtc *r, uint64_t now)
{
	if (!r->paused && rtc_updating(r)) {
		r->update_deadline = rtc_next_boundary(r, now, RTC_HZ);
		vtimer_arm(&r->update_timer, r->update_deadline);
	} else {
		r->update_deadline = 0;
		vtimer_cancel(&r->update_timer);
	}
}

static void rtc_arm_periodic(struct rtc *r, uint64_t now)
{
	uint64_t ticks = rtc_period_ticks(r);

	/* Without PIE nobody waits for PF: it is computed when C is read. */
	if (!r->paused && ticks && (r->s.cmos[RTC_REG_B] & B_PIE)) {
		r->periodic_deadline = rtc_next_boundary(r, now, ticks);
		vtimer_arm(&r->periodic_timer, r->periodic_deadline);
	} else {
		r->periodic_deadline = 0;
		vtimer_cancel(&r->periodic_timer);
	}
}

/*
 * Each timer re-arms only itself: an update and a periodic boundary often fall on the same
 * instant, and re-arming the other one from a callback would skip its due boundary.
 */
static void rtc_arm_timers(struct rtc *r)
{
	uint64_t now = vclock_ns(&r->vm->ev);

	rtc_arm_update(r, now);
	rtc_arm_periodic(r, now);
}

static bool rtc_alarm_match(uint8_t alarm, uint8_t now)
{
	return (alarm & ALARM_DONT_CARE) == ALARM_DONT_CARE || alarm == now;
}

static void rtc_update_fire(void *opaque)
{
	struct rtc *r = opaque;
	uint64_t now = vclock_ns(&r->vm->ev);
	const uint8_t *c = r->s.cmos;
	uint8_t flags = C_UF;

	pthread_mutex_lock(&r->lock);
	/* A run that raced with a re-arm or cancel is stale. */
	if (!r->update_deadline || now < r->update_deadline || !rtc_updating(r))
		goto out;
	rtc_secs_to_regs(r, rtc_now_secs(r, now));
	if (rtc_alarm_match(c[RTC_SEC_ALARM], c[RTC_SEC]) &&
	    rtc_alarm_match(c[RTC_MIN_ALARM], c[RTC_MIN]) &&
	    rtc_alarm_match(c[RTC_HOUR_ALARM], c[RTC_HOUR]))
		flags |= C_AF;
	rtc_set_flags(r, flags);
	if ((flags & C_AF) && (c[RTC_REG_B] & B_AIE) && r->alarm_hook)
		r->alarm_hook(r->alarm_opaque);
	rtc_arm_update(r, now);
out:
	pthread_mutex_unlock(&r->lock);
}

static void rtc_periodic_fire(void *opaque)
{
	struct rtc *r = opaque;
	uint64_t now = vclock_ns(&r->vm->ev);

	pthread_mutex_lock(&r->lock);
	if (!r->periodic_deadline || now < r->periodic_deadline)
		goto out;
	rtc_set_flags(r, C_PF);
	/* Late runs skip the missed periods: PF is one flag, not a count. */
	rtc_arm_periodic(r, now);
out:
	pthread_mutex_unlock(&r->lock);
}

/* Registers -------------------------------------------------------------------------------- */

static bool rtc_is_time_reg(unsigned idx)
{
	return idx == RTC_SEC || idx == RTC_MIN || idx == RTC_HOUR || idx == RTC_CENTURY ||
	       (idx >= RTC_DOW && idx <= RTC_YEAR);
}

static uint8_t rtc_read_c(struct rtc *r, uint64_t now)
{
	uint64_t ticks = rtc_period_ticks(r), from = r->s.last_c_read;
	uint8_t v;

	/* Polled PF: did a period end since the last read? */
	if (ticks && !(r->s.cmos[RTC_REG_B] & B_PIE)) {
		if (from < r->s.base_vclock)
			from = r->s.base_vclock;
		if (rtc_next_boundary(r, from, ticks) <= now)
			r->s.cmos[RTC_REG_C] |= C_PF;
	}
	v = r->s.cmos[RTC_REG_C];
	r->s.cmos[RTC_REG_C] = 0;
	r->s.last_c_read = now;
	return v;
}

static uint8_t rtc_read(struct rtc *r, unsigned idx)
{
	uint64_t now = vclock_ns(&r->vm->ev);
	uint8_t a = r->s.cmos[RTC_REG_A];

	switch (idx) {
	case RTC_REG_A:
		if (rtc_updating(r) && rtc_chain_ns(r, now) % NSEC >= NSEC - RTC_UIP_NS)
			a |= A_UIP;
		return a;
	case RTC_REG_C:
		return rtc_read_c(r, now);
	case RTC_REG_D:
		return D_VRT;
	}
	if (rtc_is_time_reg(idx) && rtc_updating(r))
		rtc_secs_to_regs(r, rtc_now_secs(r, now));
	return r->s.cmos[idx];
}

/*
 * A and B decide whether the clock runs.  Leaving SET or a divider reset restarts it from the
 * time registers; the divider's first update after a reset comes half a second later.
 */
static void rtc_write_ab(struct rtc *r, unsigned idx, uint8_t v, uint64_t now)
{
	bool div_was = rtc_divider_on(r->s.cmos[RTC_REG_A]), upd_was = rtc_updating(r);

	rtc_rebase(r, now);
	if (idx == RTC_REG_A) {
		r->s.cmos[RTC_REG_A] = v & ~A_UIP;
	} else {
		/* SET stops update cycles, and the chip clears UIE with it. */
		if (v & B_SET)
			v &= ~B_UIE;
		r->s.cmos[RTC_REG_B] = v;
		rtc_set_flags(r, 0);
	}
	if (!div_was && rtc_divider_on(r->s.cmos[RTC_REG_A]))
		r->s.base_phase = NSEC / 2;
	if (!upd_was && rtc_updating(r))
		r->s.base_sec = rtc_regs_to_secs(r);
	rtc_arm_timers(r);
}

static void rtc_write(struct rtc *r, unsigned idx, uint8_t v)
{
	uint64_t now = vclock_ns(&r->vm->ev);

	switch (idx) {
	case RTC_REG_A:
	case RTC_REG_B:
		rtc_write_ab(r, idx, v, now);
		return;
	case RTC_REG_C:
	case RTC_REG_D:
		return; /* read-only */
	}
	if (!rtc_is_time_reg(idx) || !rtc_updating(r)) {
		r->s.cmos[idx] = v;
		return;
	}
	/*
	 * Some guests (OpenBSD's century byte, for one) write a time register without SET:
	 * take the new value now, keeping the divider's phase.
	 */
	rtc_rebase(r, now);
	r->s.cmos[idx] = v;
	r->s.base_sec = rtc_regs_to_secs(r);
	/* The phase did not move, so neither did any deadline. */
}

static void rtc_io(void *opaque, uint64_t offset, void *data, unsigned size, bool is_write)
{
	struct rtc *r = opaque;
	uint8_t *p = data;

	pthread_mutex_lock(&r->lock);
	for (unsigned i = 0; i < size && offset + i < 2; i++) {
		if (offset + i == 0) {
			/* Bit 7 is the NMI mask on a PC; it gates nothing here. */
			if (is_write)
				r->s.index = p[i] & 0x7f;
			else
				p[i] = 0xff; /* the index register is write-only */
		} else if (is_write) {
			rtc_write(r, r->s.index, p[i]);
		} else {
			p[i] = rtc_read(r, r->s.index);
		}
	}
	pthread_mutex_unlock(&r->lock);
}

void rtc_advance_wallclock(struct dev *d, uint64_t seconds)
{
	struct rtc *r = container_of(d, struct rtc, dev);

	pthread_mutex_lock(&r->lock);
	/* A million years is plenty; more would only risk overflow. */
	if (seconds > 1000000ULL * 366 * 86400)
		seconds = 1000000ULL * 366 * 86400;
	if (rtc_updating(r)) {
		r->s.base_sec += (int64_t)seconds;
	} else if (!(r->s.cmos[RTC_REG_B] & B_SET)) {
		/* Divider in reset: the registers are the time. */
		rtc_secs_to_regs(r, rtc_regs_to_secs(r) + (int64_t)seconds);
	}
	/* Only the seconds moved: the divider's phase, and so every deadline, stays. */
	pthread_mutex_unlock(&r->lock);
}

void rtc_set_alarm_hook(struct dev *d, void (*fn)(void *), void *opaque)
{
	struct rtc *r = container_of(d, struct rtc, dev);

	pthread_mutex_lock(&r->lock);
	r->alarm_hook = fn;
	r->alarm_opaque = opaque;
	pthread_mutex_unlock(&r->lock);
}

/* Snapshot --------------------------------------------------------------------------------- */

static void rtc_state_io(struct sstream *s, struct rtc_state *st)
{
	ss_u8_array(s, st->cmos, sizeof(st->cmos));
	ss_u8(s, &st->index);
	ss_i64(s, &st->base_sec);
	ss_u32(s, &st->base_phase);
	ss_u64(s, &st->base_vclock);
	ss_u64(s, &st->last_c_read);
}

static void rtc_state_check(struct sstream *s, const struct rtc_state *st)
{
	uint8_t b = st->cmos[RTC_REG_B], c = st->cmos[RTC_REG_C];
	bool irqf = c & b & C_FLAGS;

	ss_check_max(s, st->index, 0x7f, "rtc index");
	ss_check_max(s, st->base_phase, NSEC - 1, "rtc sub-second phase");
	ss_check_max(s, st->cmos[RTC_REG_A] & A_UIP, 0, "rtc register A UIP");
	ss_check_max(s, c & ~(C_IRQF | C_FLAGS), 0, "rtc register C reserved bits");
	if (!s->err && st->cmos[RTC_REG_D] != D_VRT)
		ss_fail(s, -EINVAL, "rtc register D is 0x%02x, expected 0x%02x",
			st->cmos[RTC_REG_D], D_VRT);
	if (!s->err && irqf != !!(c & C_IRQF))
		ss_fail(s, -EINVAL, "rtc register C 0x%02x disagrees with B 0x%02x", c, b);
	if (!s->err && (b & B_SET) && (b & B_UIE))
		ss_fail(s, -EINVAL, "rtc register B 0x%02x has UIE with SET", b);
	/* Keep the arithmetic far from overflow: about +-292 billion years. */
	if (!s->err && (st->base_sec > INT64_MAX / 4 || st->base_sec < INT64_MIN / 4))
		ss_fail(s, -EINVAL, "rtc time %lld is out of range", (long long)st->base_sec);
}

static int rtc_save(struct dev *d, struct sstream *s)
{
	struct rtc *r = container_of(d, struct rtc, dev);

	pthread_mutex_lock(&r->lock);
	rtc_state_io(s, &r->s);
	pthread_mutex_unlock(&r->lock);
	return ss_error(s);
}

static int rtc_load(struct dev *d, struct sstream *s, unsigned version)
{
	struct rtc *r = container_of(d, struct rtc, dev);
	struct rtc_state st;

	if (version != RTC_STATE_VERSION)
		return ss_fail(s, -EINVAL, "state version %u is not supported (%u)", version,
			       RTC_STATE_VERSION);
	memset(&st, 0, sizeof(st));
	rtc_state_io(s, &st);
	rtc_state_check(s, &st);
	if (ss_finish(s))
		return ss_error(s);
	pthread_mutex_lock(&r->lock);
	r->s = st;
	/*
	 * Deadlines come from the loaded base and the virtual clock, which a restore sets only
	 * after loading devices: the timers stay off (the device counts as paused) until resume,
	 * the orchestrator's last step, arms them.  No pulse: an interrupt raised before the
	 * save was delivered then, and IRQF blocks a new one until the guest reads C.
	 */
	r->paused = true;
	rtc_arm_timers(r);
	pthread_mutex_unlock(&r->lock);
	return 0;
}

static int rtc_pause(struct dev *d)
{
	struct rtc *r = container_of(d, struct rtc, dev);

	pthread_mutex_lock(&r->lock);
	r->paused = true;
	rtc_arm_timers(r);
	pthread_mutex_unlock(&r->lock);
	return 0;
}

static int rtc_resume(struct dev *d)
{
	struct rtc *r = container_of(d, struct rtc, dev);

	pthread_mutex_lock(&r->lock);
	r->paused = false;
	rtc_arm_timers(r);
	pthread_mutex_unlock(&r->lock);
	return 0;
}

static void rtc_destroy(struct dev *d)
{
	struct rtc *r = container_of(d, struct rtc, dev);

	vtimer_cancel(&r->update_timer);
	vtimer_cancel(&r->periodic_timer);
	bus_unregister(&r->vm->pio, RTC_PORT);
	pthread_mutex_destroy(&r->lock);
	free(r);
}

/* Creation --------------------------------------------------------------------------------- */

static void cmos_put16(uint8_t *c, unsigned off, uint64_t v)
{
	if (v > 0xffff)
		v = 0xffff;
	c[off] = (uint8_t)v;
	c[off + 1] = (uint8_t)(v >> 8);
}

/* Memory size cells, read by firmware and old loaders. */
static void rtc_set_memory(struct rtc *r, uint64_t ram)
{
	uint64_t low = ram < LOWMEM_LIMIT ? ram : LOWMEM_LIMIT, high = ram - low;
	uint8_t *c = r->s.cmos;

	cmos_put16(c, CMOS_BASE_KB, (low < 640 * KiB ? low : 640 * KiB) / KiB);
	/* Extended memory above 1 MiB in KiB; the 16-bit cells saturate at 64 MiB. */
	cmos_put16(c, CMOS_EXT_KB, low > MiB ? (low - MiB) / KiB : 0);
	cmos_put16(c, CMOS_EXT_KB2, low > MiB ? (low - MiB) / KiB : 0);
	cmos_put16(c, CMOS_MEM_16M, low > 16 * MiB ? (low - 16 * MiB) / (64 * KiB) : 0);
	high /= 64 * KiB;
	if (high > 0xffffff)
		high = 0xffffff;
	c[CMOS_MEM_4G] = (uint8_t)high;
	c[CMOS_MEM_4G + 1] = (uint8_t)(high >> 8);
	c[CMOS_MEM_4G + 2] = (uint8_t)(high >> 16);
}

/* The host's time now, in the zone the RTC keeps (local time, like a PC's, or UTC). */
static void rtc_host_time(bool localtime, int64_t *secs, uint32_t *ns)
{
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	*secs = ts.tv_sec;
	*ns = (uint32_t)ts.tv_nsec;
	if (localtime && localtime_r(&ts.tv_sec, &tm))
		*secs += tm.tm_gmtoff;
}

struct dev *rtc_create(struct vm *vm, char *err, size_t errlen)
{
	bool localtime = true;
	struct rtc *r;

	if (vm->cfg && config_get_bool(vm->cfg, "rtc.localtime", true, &localtime)) {
		snprintf(err, errlen, "rtc.localtime=%s: must be true or false",
			 config_get(vm->cfg, "rtc.localtime"));
		return NULL;
	}
	r = calloc(1, sizeof(*r));
	if (!r) {
		snprintf(err, errlen, "rtc: out of memory");
		return NULL;
	}
	r->vm = vm;
	r->dev.ops = &rtc_ops;
	snprintf(r->dev.id, sizeof(r->dev.id), "rtc");
	pthread_mutex_init(&r->lock, NULL);
	vtimer_init(&r->update_timer, &vm->ev, rtc_update_fire, r);
	vtimer_init(&r->periodic_timer, &vm->ev, rtc_periodic_fire, r);

	r->s.cmos[RTC_REG_A] = A_DV_NORMAL | 0x06; /* 1024 Hz periodic rate */
	r->s.cmos[RTC_REG_B] = B_24H;		   /* BCD, 24-hour */
	r->s.cmos[RTC_REG_D] = D_VRT;
	rtc_set_memory(r, vm->ram_size);
	rtc_host_time(localtime, &r->s.base_sec, &r->s.base_phase);
	r->s.base_vclock = vclock_ns(&vm->ev);
	r->s.last_c_read = r->s.base_vclock;
	rtc_secs_to_regs(r, r->s.base_sec);

	if (bus_register(&vm->pio, RTC_PORT, 2, rtc_io, r)) {
		snprintf(err, errlen, "rtc: ports 0x70-0x71 are already taken");
		pthread_mutex_destroy(&r->lock);
		free(r);
		return NULL;
	}
	pthread_mutex_lock(&r->lock);
	rtc_arm_timers(r);
	pthread_mutex_unlock(&r->lock);
	vm_add_dev(vm, &r->dev);
	return &r->dev;
}

static const struct dev_ops rtc_ops = {
	.name = "rtc",
	.version = RTC_STATE_VERSION,
	.pause = rtc_pause,
	.resume = rtc_resume,
	.save = rtc_save,
	.load = rtc_load,
	.destroy = rtc_destroy,
};
