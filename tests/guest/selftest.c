// SPDX-License-Identifier: MIT
/*
 * khyve test guest, mode=selftest: check every platform device once,
 * print "ok <group>" or "fail <group>: <what>" per group, then a verdict
 * line (TESTGUEST PASS / TESTGUEST FAIL: <first failure>) and power off.
 * Bounds are loose on purpose: the test machines are noisy.
 */
#include "pci.h"
#include "user.h"
#include "net.h"
#include "xhci.h"

static char first_fail[128];
static bool group_failed;

void check_fail(const char *f, ...)
{
	char buf[128];
	va_list ap;

	va_start(ap, f);
	vfmt(buf, sizeof(buf), f, ap);
	va_end(ap);
	pr("fail %s: %s\n", cur_check, buf);
	if (!first_fail[0])
		fmt(first_fail, sizeof(first_fail), "%s: %s", cur_check, buf);
	group_failed = true;
}

void group_begin(const char *name)
{
	cur_check = name;
	group_failed = false;
}

void group_end(void)
{
	if (!group_failed)
		pr("ok %s\n", cur_check);
}

/* Wait until CPU cpu has counted vector vec at least target times. */
bool wait_irq(u32 cpu, u32 vec, u64 target, u64 timeout_us)
{
	u64 end = rdtsc() + timeout_us * (tsc_hz / 1000000);

	while (irq_count(cpu, vec) < target) {
		if ((s64)(rdtsc() - end) > 0)
			return false;
		watchdog_poll();
		cpu_relax();
	}
	return true;
}

/* Interrupts of vector vec on cpu during us microseconds. */
static u64 irqs_during(u32 cpu, u32 vec, u64 us)
{
	u64 c0 = irq_count(cpu, vec);

	udelay(us);
	return irq_count(cpu, vec) - c0;
}

/* ---- UART ---- */
static void uart_loopback(void)
{
	int n = 16;
	u8 msr;

	outb(COM1 + 4, 0x1b);	/* loop | OUT2 | RTS | DTR */
	while ((inb(COM1 + 5) & 1) && n--)
		inb(COM1);
	msr = inb(COM1 + 6);
	if ((msr & 0xf0) != 0xb0)
		check_fail("loopback MSR 0x%x, want 0xb0", msr & 0xf0);
	outb(COM1, 0x42);
	for (n = 1000; n && !(inb(COM1 + 5) & 1); n--)
		udelay(100);
	if (!n)
		check_fail("loopback byte not received");
	else if ((msr = inb(COM1)) != 0x42)
		check_fail("loopback read 0x%x, want 0x42", msr);
	outb(COM1 + 4, 0x0b);
}

static void uart_thre_irq(void)
{
	u8 pin;
	u64 c0;

	pin = route_isa(4, cpus[0].apic_id);
	c0 = irq_count(0, VEC_IOAPIC_BASE + pin);
	outb(COM1 + 1, 0x02);
	if (!wait_irq(0, VEC_IOAPIC_BASE + pin, c0 + 1, 500000))
		check_fail("no THRE interrupt on IOAPIC pin %u", pin);
	outb(COM1 + 1, 0);
	inb(COM1 + 2);
	ioapic_mask(pin);
}

/* COM1: scratch register, LSR, loopback (MSR mirror, byte echo), THRE IRQ4. */
static void check_uart(void)
{
	u8 v, lsr;

	group_begin("uart");
	outb(COM1 + 7, 0x5a);
	v = inb(COM1 + 7);
	outb(COM1 + 7, 0xa5);
	if (v != 0x5a || inb(COM1 + 7) != 0xa5)
		check_fail("scratch register");
	lsr = inb(COM1 + 5);
	if ((lsr & 0x60) != 0x60)
		check_fail("LSR 0x%x: THRE/TEMT not set", lsr);
	uart_loopback();
	uart_thre_irq();
	group_end();
}

/* ---- HPET, PM timer ---- */

/* HPET capabilities (revision, >= 3 comparators, period) and counting. */
static void check_hpet(void)
{
	u32 cap;
	u64 c0, c1;

	group_begin("hpet");
	if (!plat.hpet_base || !hpet_period_fs) {
		check_fail("no usable HPET (base 0x%lx)", plat.hpet_base);
		return;
	}
	cap = hpet_read32(0);
	if (!(cap & 0xff))
		check_fail("revision 0");
	if (hpet_num_timers() < 3)
		check_fail("%u comparators", hpet_num_timers());
	c0 = hpet_counter();
	udelay(2000);
	c1 = hpet_counter();
	if (c1 <= c0)
		check_fail("main counter not advancing");
	else if (hpet_ticks_to_us(c1 - c0) < 1000)
		check_fail("counter too slow: %lu us in 2 ms", hpet_ticks_to_us(c1 - c0));
	group_end();
}

/* ACPI PM timer runs at 3.579545 MHz (+-10%) measured against the HPET. */
static void check_pmtimer(void)
{
	u32 p0, p1;
	u64 h0, h1, us, hz;

	group_begin("pmtimer");
	if (!plat.pm_tmr) {
		check_fail("no PM timer in the FADT");
		return;
	}
	/*
	 * Against the HPET (or the TSC) over 200 ms; up to three tries, since a vCPU the host
	 * stops between the two reads of a pair sees the clocks apart by that time.
	 */
	for (int tries = 0; tries < 3; tries++) {
		p0 = pm_timer_read();
		h0 = hpet_period_fs ? hpet_counter() : now_us();
		udelay(200000);
		p1 = pm_timer_read();
		h1 = hpet_period_fs ? hpet_counter() : now_us();
		us = hpet_period_fs ? hpet_ticks_to_us(h1 - h0) : h1 - h0;
		hz = us ? (u64)pm_timer_delta(p0, p1) * 1000000 / us : 0;
		if (hz >= 3579545 * 9 / 10 && hz <= 3579545 * 11 / 10)
			break;
	}
	if (hz < 3579545 * 9 / 10 || hz > 3579545 * 11 / 10)
		check_fail("runs at %lu Hz, want 3579545", hz);
	group_end();
}

/* ---- local APIC timers on every CPU, IPIs ---- */

/* Every CPU's LAPIC timer interrupts periodically at ~100 Hz. */
static void check_lapic_timer(void)
{
	u64 c0[MAX_CPUS], n, t0, us;
	u32 i;

	group_begin("lapic-timer");
	if (!lapic_timer_count)
		check_fail("calibration gave 0");
	/*
	 * Ten ticks each, waited for as long as 3 s (a vCPU the host does not run for a while
	 * gets its missed ticks merged: lateness, not a fault), and never more ticks than
	 * periods passed.
	 */
	t0 = now_us();
	for (i = 0; i < ncpus_up; i++)
		c0[i] = irq_count(i, VEC_LAPIC_TIMER);
	for (i = 0; i < ncpus_up; i++)
		if (!wait_irq(i, VEC_LAPIC_TIMER, c0[i] + 10, 3000000))
			check_fail("cpu %u: %lu ticks in 3 s at 100 Hz", i,
				   irq_count(i, VEC_LAPIC_TIMER) - c0[i]);
	us = now_us() - t0;
	for (i = 0; i < ncpus_up; i++) {
		n = irq_count(i, VEC_LAPIC_TIMER) - c0[i];
		if (n > us / 10000 + 2)
			check_fail("cpu %u: %lu ticks in %lu us at 100 Hz", i, n, us);
	}
	group_end();
}

/* Every MADT CPU is up with the APIC id the MADT gives; each gets an IPI. */
static void check_smp(void)
{
	u32 i;
	u64 c0;

	group_begin("smp");
	if (ncpus_up != plat.ncpus)
		check_fail("%u of %u cpus running", ncpus_up, plat.ncpus);
	for (i = 0; i < ncpus_up; i++) {
		if (cpus[i].apic_id != plat.apic_id[i])
			check_fail("cpu %u has apic id %lu, MADT says %u", i,
				   cpus[i].apic_id, plat.apic_id[i]);
		if (i == 0)
			continue;
		c0 = irq_count(i, VEC_IPI);
		lapic_send_ipi(plat.apic_id[i], VEC_IPI);
		if (!wait_irq(i, VEC_IPI, c0 + 1, 500000))
			check_fail("cpu %u did not get an IPI", i);
	}
	group_end();
}

/* ---- PIT ---- */

/* Diagnosis: does IRQ0 reach pin 0 instead, ignoring the MADT override? */
static void pit_probe_pin0(void)
{
	u64 n;

	ioapic_route(0, VEC_IOAPIC_BASE, cpus[0].apic_id, false, false);
	n = irqs_during(0, VEC_IOAPIC_BASE, 200000);
	ioapic_mask(0);
	if (n)
		check_fail("%lu IRQ0s arrived on pin 0: GSI 0 is not routed to pin 2", n);
}

#define LAPIC_TPR_REG 0x080

/*
 * Have the IRQ0s on @vec caught up (within 3) with the @hz ticks since @t0 before
 * @timeout_us?  A tick the vCPU cannot take when it comes (the host has it descheduled, or
 * the TPR holds interrupts off) is not lost: KVM reinjects it once the one before it is
 * acknowledged.  So the count must reach the time however busy the host, while a platform
 * that loses ticks stays behind for good.  *@n and *@want: the last count and ticks.
 */
static bool pit_caught_up(u32 vec, u64 c0, u64 t0, u32 hz, u64 timeout_us, u64 *n, u64 *want)
{
	u64 end = rdtsc() + timeout_us * (tsc_hz / 1000000);

	do {
		*n = irq_count(0, vec) - c0;
		*want = (rdtsc() - t0) * hz / tsc_hz;
		if (*n + 3 >= *want)
			return true;
		watchdog_poll();
		cpu_relax();
	} while ((s64)(rdtsc() - end) < 0);
	return false;
}

/*
 * PIT channel 0 at 100 Hz arrives through the IOAPIC pin of IRQ0's override, at about its rate
 * (10 IRQ0s within 3.3 s, at most 80 in 300 ms), and ticks the vCPU could not take are not
 * lost: 100 ms of them held off by the TPR arrive late (KVM reinjects them only when the EOI
 * of pin 2 reaches its PIT, which a second route to pin 2 used to prevent).  That last check
 * needs a vCPU that can take 100 ticks a second: when the host is so busy that even the
 * undisturbed count falls behind the time, it is left out, with a line saying so.
 */
static void check_pit(void)
{
	u64 n, want, c0, t0;
	bool kept_up;
	u32 vec;
	u8 pin;

	group_begin("pit");
	pit_periodic(100);
	pin = route_isa(0, cpus[0].apic_id);
	vec = VEC_IOAPIC_BASE + pin;
	c0 = irq_count(0, vec);
	t0 = rdtsc();
	udelay(300000);
	n = irq_count(0, vec) - c0;
	if (n > 80)
		check_fail("%lu IRQ0s on pin %u in 300 ms at 100 Hz", n, pin);
	else if (!wait_irq(0, vec, c0 + 10, 3000000))
		check_fail("%lu IRQ0s on pin %u in 3.3 s at 100 Hz", irq_count(0, vec) - c0, pin);
	kept_up = pit_caught_up(vec, c0, t0, 100, 1000000, &n, &want);
	if (n < 10 && pin != 0) {
		ioapic_mask(pin);
		pit_probe_pin0();
		pit_stop();
		group_end();
		return;
	}
	if (!kept_up) {
		pr("pit: the vCPU took %lu of %lu ticks: the host is too busy to check that "
		   "held-off ticks arrive\n",
		   n, want);
	} else {
		c0 = irq_count(0, vec);
		t0 = rdtsc();
		lapic_write(LAPIC_TPR_REG, 0xF0);
		udelay(100000);
		lapic_write(LAPIC_TPR_REG, 0);
		if (!pit_caught_up(vec, c0, t0, 100, 1000000, &n, &want))
			check_fail("ticks held off by the TPR were lost: %lu IRQ0s where %lu "
				   "ticks have passed",
				   n, want);
	}
	ioapic_mask(pin);
	pit_stop();
	group_end();
}

/* ---- HPET comparator interrupts through the IOAPIC ---- */

/* The IOAPIC pin that ISA IRQ irq arrives on. */
static u32 isa_pin(u8 irq)
{
	bool level, low;

	return isa_gsi(irq, &level, &low) - plat.ioapic_gsi_base;
}

/*
 * Comparator t through its own route (pin >= 0), or in legacy mode
 * (pin < 0) through legacy_pin. One-shot: exactly one interrupt.
 */
static void hpet_oneshot(u32 t, int pin, u32 legacy_pin)
{
	u32 p = pin >= 0 ? (u32)pin : legacy_pin;
	u32 vec = VEC_IOAPIC_BASE + p;
	u64 c0;

	ioapic_route(p, vec, cpus[0].apic_id, false, false);
	c0 = irq_count(0, vec);
	hpet_timer_start(t, pin, 20000, false);
	if (!wait_irq(0, vec, c0 + 1, 3000000))
		check_fail("timer %u one-shot: no interrupt on pin %u in 3 s", t, p);
	udelay(60000);
	if (irq_count(0, vec) > c0 + 1)
		check_fail("timer %u one-shot fired %lu times", t, irq_count(0, vec) - c0);
	hpet_timer_stop(t);
	ioapic_mask(p);
}

/*
 * Periodic comparator routed to the last CPU (checks IOAPIC destinations),
 * or, with wrap set, to the BSP across a wrap of the counter's low 32 bits
 * (the comparators run in 32-bit mode).
 */
static void hpet_periodic(u32 t, int pin, u32 legacy_pin, bool wrap)
{
	u32 p = pin >= 0 ? (u32)pin : legacy_pin;
	u32 dst = wrap ? 0 : ncpus_up - 1, vec = VEC_IOAPIC_BASE + p;
	u64 n, other, c0, t0;

	if (wrap)
		hpet_counter_set_low(0u - hpet_us_to_ticks(50000));

	ioapic_route(p, vec, cpus[dst].apic_id, false, false);
	other = dst ? irq_count(0, vec) : 0;
	if (hpet_timer_start(t, pin, 10000, true)) {
		check_fail("timer %u cannot do periodic", t);
		return;
	}
	/*
	 * Ten periods (the wrap comes after five) are waited for as long as 3 s: on a busy host
	 * the device model's thread may fall behind and periods be merged, which is lateness,
	 * not a fault.  Never more interrupts than periods passed, though.
	 */
	c0 = irq_count(dst, vec);
	t0 = now_us();
	if (!wait_irq(dst, vec, c0 + 10, 3000000))
		check_fail("timer %u periodic%s: %lu irqs on cpu %u in 3 s at 100 Hz", t,
			   wrap ? " across a 32-bit counter wrap" : "", irq_count(dst, vec) - c0,
			   dst);
	n = irq_count(dst, vec) - c0;
	if (n > (now_us() - t0) / 10000 + 2)
		check_fail("timer %u periodic%s: %lu irqs on cpu %u in %lu us at 100 Hz", t,
			   wrap ? " across a 32-bit counter wrap" : "", n, dst, now_us() - t0);
	if (dst && irq_count(0, vec) != other)
		check_fail("pin %u routed to cpu %u also reached cpu 0", p, dst);
	hpet_timer_stop(t);
	ioapic_mask(p);
}

/* Routed mode: periodic on a periodic-capable timer, one-shot on another. */
static void hpet_routed(u32 periodic, u32 oneshot)
{
	int pp = hpet_pick_pin(periodic), op = hpet_pick_pin(oneshot);

	if (op < 0)
		check_fail("timer %u: no pin in 16-23 (cap 0x%x)", oneshot, hpet_route_cap(oneshot));
	else
		hpet_oneshot(oneshot, op, 0);
	if (pp < 0) {
		check_fail("timer %u: no pin in 16-23 (cap 0x%x)", periodic, hpet_route_cap(periodic));
	} else {
		hpet_periodic(periodic, pp, 0, false);
		hpet_periodic(periodic, pp, 0, true);
	}
}

/* Legacy replacement: timer 1 one-shot on IRQ8, timer 0 periodic on IRQ0. */
static void hpet_legacy_mode(void)
{
	hpet_legacy(true);
	udelay(70000);	/* let the stopped PIT's last edge pass */
	hpet_oneshot(1, -1, isa_pin(8));
	if (!hpet_can_periodic(0)) {
		check_fail("timer 0 cannot do periodic");
	} else {
		hpet_periodic(0, -1, isa_pin(0), false);
		hpet_periodic(0, -1, isa_pin(0), true);
	}
	hpet_legacy(false);
}

/*
 * HPET comparators: a one-shot fires exactly once; a periodic one, routed to
 * the last CPU, interrupts there only and at ~100 Hz, also across a wrap.
 */
static void check_hpet_irq(void)
{
	u32 t, n;

	group_begin("hpet-irq");
	if (!hpet_period_fs) {
		check_fail("no HPET");
		return;
	}
	n = hpet_num_timers();
	for (t = 0; t < n && !hpet_can_periodic(t); t++)
		;
	if (t == n)
		check_fail("no periodic-capable comparator");
	else if (hpet_pick_pin(t) >= 0)
		hpet_routed(t, t == n - 1 ? 0 : n - 1);
	else
		hpet_legacy_mode();
	group_end();
}

/* ---- RTC / CMOS ---- */
#define RTC_A		0x0a
#define RTC_B		0x0b
#define RTC_C		0x0c
#define RTC_B_PIE	0x40
#define RTC_B_AIE	0x20
#define RTC_B_UIE	0x10
#define RTC_B_BIN	0x04
#define RTC_B_24H	0x02

static bool rtc_binary;

static u8 bcd_ok(u8 v)
{
	return (v & 0x0f) <= 9 && (v >> 4) <= 9;
}

static u8 rtc_val(u8 raw)
{
	return rtc_binary ? raw : (raw >> 4) * 10 + (raw & 0x0f);
}

static u8 rtc_raw(u8 val)
{
	return rtc_binary ? val : (val / 10) << 4 | val % 10;
}

/* Read seconds outside an update cycle. */
static u8 rtc_seconds(void)
{
	int n = 1000;

	while ((cmos_read(RTC_A) & 0x80) && n--)
		;
	return rtc_val(cmos_read(0x00));
}

static void rtc_fields(void)
{
	static const u8 idx[] = { 0x00, 0x02, 0x04, 0x07, 0x08, 0x09 };
	static const u8 lo[] = { 0, 0, 0, 1, 1, 0 };
	static const u8 hi[] = { 59, 59, 23, 31, 12, 99 };
	u8 b = cmos_read(RTC_B);
	u32 i;

	rtc_binary = b & RTC_B_BIN;
	for (i = 0; i < sizeof(idx); i++) {
		u8 raw = cmos_read(idx[i]), v;

		if (idx[i] == 0x04 && !(b & RTC_B_24H))
			raw &= 0x7f;	/* 12-hour mode: PM flag */
		if (!rtc_binary && !bcd_ok(raw)) {
			check_fail("register 0x%x = 0x%x is not BCD", idx[i], raw);
			continue;
		}
		v = rtc_val(raw);
		if (v < lo[i] || v > hi[i])
			check_fail("register 0x%x = %u out of range", idx[i], v);
	}
}

static void rtc_ticking(void)
{
	u8 s0 = rtc_seconds();
	u64 end = now_us() + 2500000;

	while (rtc_seconds() == s0) {
		if (now_us() > end) {
			check_fail("seconds stuck at %u", s0);
			return;
		}
		udelay(20000);
	}
}

static void rtc_nvram(void)
{
	u8 orig = cmos_read(0x40), a, b;

	cmos_write(0x40, 0x5a);
	a = cmos_read(0x40);
	cmos_write(0x40, 0xa5);
	b = cmos_read(0x40);
	cmos_write(0x40, orig);
	if (a != 0x5a || b != 0xa5)
		check_fail("NVRAM 0x40 read back 0x%x/0x%x", a, b);
}

/* Enable one interrupt source in register B and wait for its flag. */
static bool rtc_wait_flag(u8 enable, u8 flag, u64 timeout_us)
{
	volatile u64 *flags = rtc_flags_ptr(0);
	u64 end = now_us() + timeout_us;
	bool seen;

	cmos_read(RTC_C);
	WRITE_ONCE(*flags, 0);
	cmos_write(RTC_B, cmos_read(RTC_B) | enable);
	while (!(seen = *flags & flag) && now_us() < end)
		udelay(5000);
	cmos_write(RTC_B, cmos_read(RTC_B) & ~enable);
	cmos_read(RTC_C);
	return seen;
}

static void rtc_periodic(void)
{
	volatile u64 *flags = rtc_flags_ptr(0);
	u8 a = cmos_read(RTC_A);
	u64 c0, n, t0, us;
	bool got;

	cmos_write(RTC_A, (a & 0xf0) | 0x0a);	/* 64 Hz */
	cmos_read(RTC_C);
	WRITE_ONCE(*flags, 0);
	c0 = irq_count(0, VEC_RTC);
	t0 = now_us();
	cmos_write(RTC_B, cmos_read(RTC_B) | RTC_B_PIE);
	/* Ten periods, waited for as long as 3 s (merged periods on a busy host are late, not
	 * lost), and never more interrupts than periods passed. */
	got = wait_irq(0, VEC_RTC, c0 + 10, 3000000);
	cmos_write(RTC_B, cmos_read(RTC_B) & ~RTC_B_PIE);
	us = now_us() - t0;
	n = irq_count(0, VEC_RTC) - c0;
	if (!(*flags & 0x40))
		check_fail("no periodic interrupt (PF)");
	else if (!got)
		check_fail("%lu periodic interrupts in 3 s at 64 Hz", n);
	else if (n > us * 64 / 1000000 + 2)
		check_fail("%lu periodic interrupts in %lu us at 64 Hz", n, us);
	cmos_write(RTC_A, a);
	cmos_read(RTC_C);
}

static void rtc_alarm(void)
{
	u8 s = rtc_seconds();

	cmos_write(0x01, rtc_raw((s + 2) % 60));
	cmos_write(0x03, 0xc0);	/* minutes: don't care */
	cmos_write(0x05, 0xc0);	/* hours: don't care */
	if (!rtc_wait_flag(RTC_B_AIE, 0x20, 4000000))
		check_fail("no alarm interrupt (AF)");
}

/*
 * RTC: valid time fields, NVRAM, seconds ticking, and the periodic (64 Hz),
 * update-ended and alarm interrupts on IRQ8.
 */
static void check_rtc(void)
{
	u8 pin;

	group_begin("rtc");
	rtc_fields();
	rtc_nvram();
	rtc_ticking();
	pin = route_isa(8, cpus[0].apic_id);
	if (pin != 8)
		check_fail("IRQ8 on pin %u: the stub handles vector 0x%x only", pin, VEC_RTC);
	rtc_periodic();
	if (!rtc_wait_flag(RTC_B_UIE, 0x10, 2500000))
		check_fail("no update-ended interrupt (UF)");
	rtc_alarm();
	ioapic_mask(pin);
	group_end();
}

/* e1000 (only when one is present): EEPROM, PHY, interrupt causes, loopback frames. */
static void check_e1000(void)
{
	char why[96];
	int r = e1000_selftest(why, sizeof(why));

	if (r > 0)
		return;
	group_begin("e1000");
	if (r)
		check_fail("%s", why);
	group_end();
}

/* xHCI (only when one is present): reset, the tablet's enumeration, one interrupt transfer. */
static void check_xhci(void)
{
	char why[96];
	int r = xhci_selftest(why, sizeof(why));

	if (r > 0)
		return;
	group_begin("xhci");
	if (r)
		check_fail("%s", why);
	group_end();
}

/*
 * PCI INTx wiring (doc/platform.md): pin p (INTA = 1) of slot s is on PIRQ (s + p - 2) mod 4.
 * Where the firmware routed that PIRQ in the LPC bridge (0x60-0x63), the function's line
 * register must name the same ISA IRQ: the firmware wrote both from its own idea of the
 * wiring, so this is where the two agree or not.  Without firmware the line holds the
 * PIRQ's GSI, 16-19, which the DSDT's _PRT gives too.
 */
static void check_pci_intx(void)
{
	const struct pci_fn *list, *lpc = pci_find(0x8086, 0x7000, 0);
	u32 n = pci_scan(&list), checked = 0;
	u8 route[4];

	if (!lpc)
		return;
	for (u32 i = 0; i < 4; i++)
		route[i] = pci_read8(lpc, 0x60 + i);
	for (u32 i = 0; i < n; i++) {
		const struct pci_fn *f = &list[i];
		u8 pin = pci_read8(f, 0x3d), line = pci_read8(f, 0x3c), pirq, want;

		if (f->bus || !pin || pin > 4)
			continue;
		if (!checked++)
			group_begin("pci-intx");
		pirq = (u8)((f->dev + pin + 2) % 4);
		want = route[pirq] & 0x80 ? (u8)(16 + pirq) : route[pirq] & 0xf;
		if (line != want)
			check_fail("%u.%u pin %u: line register %u, want %u (PIRQ %u, route 0x%x)",
				   f->dev, f->fn, pin, line, want, pirq, route[pirq]);
	}
	if (checked)
		group_end();
}

void selftest_run(void)
{
	go_mode = MODE_SELFTEST + 1;
	pr("ok acpi\n");
	check_uart();
	check_hpet();
	check_pmtimer();
	check_lapic_timer();
	check_smp();
	check_pit();
	check_hpet_irq();
	check_rtc();
	check_atkbdc();
	check_e1000();
	check_fbuf();
	check_xhci();
	check_pci_intx();
	watchdog_deadline = 0;
	if (first_fail[0])
		fail_final("%s", first_fail);
	pr("TESTGUEST PASS\n");
	poweroff();
}
