// SPDX-License-Identifier: MIT
/*
 * khyve test guest, mode=clocks: the TSC, the HPET counter and the PM
 * timer must agree, also across a snapshot and restore (a snapshot that
 * sampled them at different moments makes them disagree by the time in
 * between, seconds when the save copies a disk).
 *
 * First the TSC is calibrated again, against the HPET (else the PM timer)
 * over 2 s, so that its rate is known to a few parts per million (boot's
 * 50 ms calibration is good to a few hundred, too coarse for a pause of
 * seconds). Then the BSP reads the three together every 20 ms of TSC time
 * (a reading that took over 500 us, the vCPU preempted in the middle, is
 * taken again) and compares how far each moved since the previous
 * reading: the HPET and the PM timer, in microseconds, must be within
 * `clockslack` us (default 5000) plus 100 ppm of the TSC. The PM timer has
 * 24 bits (4.7 s) and is compared modulo its wrap. It prints "seq N" at `rate` per second,
 * "clocks: worst hpet X us, pm Y us" every 2 s (the largest differences
 * since the last such line), and for each interval out of bounds
 *   TESTGUEST FAIL: clocks: over T us of TSC the HPET moved H us, the PM timer P us
 * and goes on.
 */
#include "user.h"

#define PM_HZ		3579545ull
#define PM_WRAP		(1ull << 24)

struct clk_sample {
	u64 tsc, hpet;
	u32 pm;
};

static u64 seq;

static void clk_read(struct clk_sample *s)
{
	u64 t0, t1;

	do {
		t0 = rdtsc();
		s->hpet = hpet_period_fs ? hpet_counter() : 0;
		s->pm = plat.pm_tmr ? pm_timer_read() : 0;
		t1 = rdtsc();
	} while (t1 - t0 > tsc_hz / 2000);
	s->tsc = t0 + (t1 - t0) / 2;
}

/* A reference clock (HPET ticks, else PM timer ticks) and the TSC in the middle of its read. */
static void ref_read(u64 *tsc, u64 *ref)
{
	u64 best = ~0ull, t0, t1, r;
	int i;

	for (i = 0; i < 50; i++) {
		t0 = rdtsc();
		r = hpet_period_fs ? hpet_counter() : pm_timer_read();
		t1 = rdtsc();
		if (t1 - t0 < best) {
			best = t1 - t0;
			*tsc = t0 + (t1 - t0) / 2;
			*ref = r;
		}
	}
}

static void tsc_recalibrate(void)
{
	u64 ta, ra, tb, rb, ns;

	ref_read(&ta, &ra);
	udelay(2000000);
	ref_read(&tb, &rb);
	if (hpet_period_fs)
		ns = (rb - ra) * (hpet_period_fs / 1000) / 1000;
	else
		ns = pm_timer_delta(ra, rb) * 1000000000ull / PM_HZ;
	if (ns)
		tsc_hz = (tb - ta) * 1000000000ull / ns;
}

static u64 tsc_to_us(u64 ticks)
{
	return ticks / tsc_hz * 1000000 + ticks % tsc_hz * 1000000 / tsc_hz;
}

static s64 absdiff(s64 a)
{
	return a < 0 ? -a : a;
}

/* The PM timer's ticks over @us, against what it showed: the difference in us. */
static s64 pm_diff_us(u32 raw, u64 us)
{
	u64 wrap = plat.pm_tmr_32 ? 1ull << 32 : PM_WRAP;
	u64 want = us * PM_HZ / 1000000 % wrap;
	s64 d = (s64)((raw + wrap - want) % wrap);

	if (d >= (s64)(wrap / 2))
		d -= wrap;
	return d * 1000000 / (s64)PM_HZ;
}

void clocks_run(void)
{
	u64 period = tsc_hz / opt.rate, next, report, t;
	struct clk_sample a, b;
	s64 worst_h = 0, worst_p = 0;

	if (!hpet_period_fs && !plat.pm_tmr)
		fail_final("clocks: no HPET and no PM timer to compare the TSC with");
	tsc_recalibrate();
	pr("clocks: tsc %lu Hz, %s%s, slack %lu us\n", tsc_hz, hpet_period_fs ? "hpet" : "",
	   plat.pm_tmr ? ", pm timer" : "", opt.clockslack);
	clk_read(&a);
	next = a.tsc + period;
	report = a.tsc + 2 * tsc_hz;
	for (;;) {
		udelay(20000);
		clk_read(&b);
		{
			u64 us = tsc_to_us(b.tsc - a.tsc);
			s64 h = hpet_period_fs ? (s64)hpet_ticks_to_us(b.hpet - a.hpet) - (s64)us : 0;
			s64 p = plat.pm_tmr ? pm_diff_us(pm_timer_delta(a.pm, b.pm), us) : 0;

			if (absdiff(h) > absdiff(worst_h))
				worst_h = h;
			if (absdiff(p) > absdiff(worst_p))
				worst_p = p;
			s64 slack = (s64)(opt.clockslack + us / 10000);

			if (absdiff(h) > slack || absdiff(p) > slack)
				pr("TESTGUEST FAIL: clocks: over %lu us of TSC the HPET moved %ld us, "
				   "the PM timer %ld us\n", us, (s64)us + h, (s64)us + p);
		}
		a = b;
		power_button_poll();
		t = rdtsc();
		if ((s64)(t - next) >= 0) {
			pr("seq %lu\n", ++seq);
			next = t + period;
		}
		if ((s64)(t - report) >= 0) {
			pr("clocks: worst hpet %ld us, pm %ld us\n", worst_h, worst_p);
			worst_h = worst_p = 0;
			report = t + 2 * tsc_hz;
		}
	}
}
