// SPDX-License-Identifier: MIT
/*
 * khyve test guest, ring 3: drivers for the local APIC, IOAPIC, HPET,
 * PM timer and PIT. MMIO is done directly from ring 3; port I/O goes
 * through the syscall.
 */
#include "user.h"

/* ---- local APIC (xAPIC MMIO; each CPU sees its own) ---- */
#define LAPIC_ID	0x020
#define LAPIC_TPR	0x080
#define LAPIC_SVR	0x0f0
#define LAPIC_ESR	0x280
#define LAPIC_ICR_LO	0x300
#define LAPIC_ICR_HI	0x310
#define LAPIC_LVT_TIMER	0x320
#define LAPIC_LVT_LINT0	0x350
#define LAPIC_LVT_LINT1	0x360
#define LAPIC_LVT_ERR	0x370
#define LAPIC_TMR_INIT	0x380
#define LAPIC_TMR_CUR	0x390
#define LAPIC_TMR_DIV	0x3e0
#define LVT_MASKED	(1 << 16)
#define LVT_PERIODIC	(1 << 17)

u32 lapic_read(u32 reg)
{
	return mmio_read32(LAPIC_BASE + reg);
}

void lapic_write(u32 reg, u32 v)
{
	mmio_write32(LAPIC_BASE + reg, v);
}

u32 lapic_id(void)
{
	return lapic_read(LAPIC_ID) >> 24;
}

void lapic_init(void)
{
	lapic_write(LAPIC_SVR, 0x100 | VEC_SPURIOUS);
	lapic_write(LAPIC_TPR, 0);
	lapic_write(LAPIC_LVT_TIMER, LVT_MASKED | VEC_LAPIC_TIMER);
	lapic_write(LAPIC_LVT_LINT0, LVT_MASKED);
	lapic_write(LAPIC_LVT_LINT1, LVT_MASKED);
	lapic_write(LAPIC_LVT_ERR, LVT_MASKED);
	lapic_write(LAPIC_ESR, 0);
}

void lapic_timer_periodic(u32 count)
{
	lapic_write(LAPIC_TMR_DIV, 3);	/* divide by 16 */
	lapic_write(LAPIC_LVT_TIMER, LVT_PERIODIC | VEC_LAPIC_TIMER);
	lapic_write(LAPIC_TMR_INIT, count);
}

/* Initial count giving hz interrupts per second (divide by 16). */
u32 lapic_timer_calibrate(u32 hz)
{
	u32 left;

	lapic_write(LAPIC_TMR_DIV, 3);
	lapic_write(LAPIC_LVT_TIMER, LVT_MASKED | VEC_LAPIC_TIMER);
	lapic_write(LAPIC_TMR_INIT, 0xffffffff);
	udelay(50000);
	left = lapic_read(LAPIC_TMR_CUR);
	lapic_write(LAPIC_TMR_INIT, 0);
	return (u64)(0xffffffff - left) * 20 / hz;
}

void lapic_send_ipi(u32 apic, u32 icr_lo)
{
	u64 end = rdtsc() + tsc_hz / 100;

	while ((lapic_read(LAPIC_ICR_LO) & (1 << 12)) && (s64)(rdtsc() - end) < 0)
		cpu_relax();
	lapic_write(LAPIC_ICR_HI, apic << 24);
	lapic_write(LAPIC_ICR_LO, icr_lo);
}

/* ---- IOAPIC: index/data window, programmed by the BSP only ---- */
u32 ioapic_read(u32 reg)
{
	mmio_write32(plat.ioapic_base, reg);
	return mmio_read32(plat.ioapic_base + 0x10);
}

void ioapic_write(u32 reg, u32 v)
{
	mmio_write32(plat.ioapic_base, reg);
	mmio_write32(plat.ioapic_base + 0x10, v);
}

u32 ioapic_pins(void)
{
	return ((ioapic_read(1) >> 16) & 0xff) + 1;
}

void ioapic_mask(u32 pin)
{
	ioapic_write(0x10 + 2 * pin, 1 << 16);
}

void ioapic_mask_all(void)
{
	u32 i, n = ioapic_pins();

	for (i = 0; i < n; i++)
		ioapic_mask(i);
}

/* Fixed delivery, physical destination. */
void ioapic_route(u32 pin, u8 vec, u32 dest_apic, bool level, bool low)
{
	u32 lo = vec | (low ? 1 << 13 : 0) | (level ? 1 << 15 : 0);

	ioapic_mask(pin);
	ioapic_write(0x11 + 2 * pin, dest_apic << 24);
	ioapic_write(0x10 + 2 * pin, lo);
}

/* Route ISA IRQ irq (through the MADT overrides) to vector 0x30 + pin. */
u32 route_isa(u8 irq, u32 dest_apic)
{
	bool level, low;
	u32 pin = isa_gsi(irq, &level, &low) - plat.ioapic_gsi_base;

	ioapic_route(pin, VEC_IOAPIC_BASE + pin, dest_apic, level, low);
	return pin;
}

/* ---- HPET (32-bit accesses only; comparators in 32-bit mode) ---- */
#define HPET_CAP	0x000
#define HPET_PERIOD	0x004
#define HPET_CONF	0x010
#define HPET_COUNT_LO	0x0f0
#define HPET_COUNT_HI	0x0f4
#define HPET_TN_CONF(n)	(0x100 + 0x20 * (n))
#define HPET_TN_CAP(n)	(0x104 + 0x20 * (n))
#define HPET_TN_CMP(n)	(0x108 + 0x20 * (n))
#define TN_INT_ENB	(1 << 2)
#define TN_PERIODIC	(1 << 3)
#define TN_VAL_SET	(1 << 6)
#define TN_32MODE	(1 << 8)

u64 hpet_period_fs;

u32 hpet_read32(u32 reg)
{
	return mmio_read32(plat.hpet_base + reg);
}

void hpet_write32(u32 reg, u32 v)
{
	mmio_write32(plat.hpet_base + reg, v);
}

u64 hpet_counter(void)
{
	u32 hi, lo, hi2;

	do {
		hi = hpet_read32(HPET_COUNT_HI);
		lo = hpet_read32(HPET_COUNT_LO);
		hi2 = hpet_read32(HPET_COUNT_HI);
	} while (hi != hi2);
	return (u64)hi << 32 | lo;
}

u32 hpet_num_timers(void)
{
	return ((hpet_read32(HPET_CAP) >> 8) & 0x1f) + 1;
}

u32 hpet_route_cap(u32 n)
{
	return hpet_read32(HPET_TN_CAP(n));
}

/* Enable the main counter, legacy replacement off, comparators quiet. */
int hpet_init(void)
{
	u32 i, n;

	if (!plat.hpet_base)
		return -1;
	hpet_period_fs = hpet_read32(HPET_PERIOD);
	if (!hpet_period_fs || hpet_period_fs > 100000000)
		return -2;
	n = hpet_num_timers();
	for (i = 0; i < n; i++)
		hpet_timer_stop(i);
	hpet_write32(HPET_CONF, (hpet_read32(HPET_CONF) & ~2u) | 1);
	return 0;
}

u64 hpet_ticks_to_us(u64 ticks)
{
	return ticks * (hpet_period_fs / 1000) / 1000000;
}

u32 hpet_us_to_ticks(u64 us)
{
	return us * 1000000000ull / hpet_period_fs;
}

/* The main counter can only be written while halted. */
void hpet_counter_set_low(u32 lo)
{
	u32 c = hpet_read32(HPET_CONF);

	hpet_write32(HPET_CONF, c & ~1u);
	hpet_write32(HPET_COUNT_LO, lo);
	hpet_write32(HPET_CONF, c | 1);
}

void hpet_timer_stop(u32 n)
{
	u32 c = hpet_read32(HPET_TN_CONF(n));

	hpet_write32(HPET_TN_CONF(n), c & ~(TN_INT_ENB | TN_PERIODIC));
}

/*
 * Legacy replacement: timer 0 drives ISA IRQ0 and timer 1 IRQ8 (the PIT
 * and RTC outputs are cut off). Only used where Tn_INT_ROUTE_CAP offers
 * no free pin (QEMU's "pc" machine offers pin 2 alone).
 */
void hpet_legacy(bool on)
{
	u32 c = hpet_read32(HPET_CONF);

	hpet_write32(HPET_CONF, on ? c | 2 : c & ~2u);
}

/*
 * Edge-triggered comparator interrupt on IOAPIC pin `pin`, or on the
 * legacy IRQ when pin < 0 (legacy replacement mode must be on).
 */
int hpet_timer_start(u32 n, int pin, u64 period_us, bool periodic)
{
	u32 ticks = hpet_us_to_ticks(period_us);
	u32 base = (hpet_read32(HPET_TN_CONF(n)) & ~0x3fceu) | TN_32MODE;

	if (pin >= 0) {
		if (!(hpet_route_cap(n) & (1u << pin)))
			return -1;
		base |= pin << 9;
	}
	if (periodic) {
		if (!(hpet_read32(HPET_TN_CONF(n)) & (1 << 4)))
			return -2;
		base |= TN_PERIODIC;
		hpet_write32(HPET_TN_CONF(n), base | TN_VAL_SET);
		hpet_write32(HPET_TN_CMP(n), hpet_read32(HPET_COUNT_LO) + ticks);
		hpet_write32(HPET_TN_CMP(n), ticks);
	} else {
		hpet_write32(HPET_TN_CONF(n), base);
		hpet_write32(HPET_TN_CMP(n), hpet_read32(HPET_COUNT_LO) + ticks);
	}
	hpet_write32(HPET_TN_CONF(n), base | TN_INT_ENB);
	return 0;
}

bool hpet_can_periodic(u32 n)
{
	return hpet_read32(HPET_TN_CONF(n)) & (1 << 4);
}

/* An IOAPIC pin from Tn_INT_ROUTE_CAP: 20-23 first, then 16-19. */
int hpet_pick_pin(u32 n)
{
	static const u8 prefer[] = { 20, 21, 22, 23, 16, 17, 18, 19 };
	u32 cap = hpet_route_cap(n);
	u32 i;

	for (i = 0; i < sizeof(prefer); i++)
		if (cap & (1u << prefer[i]) && prefer[i] < ioapic_pins())
			return prefer[i];
	return -1;
}

/* ---- ACPI PM timer ---- */
u32 pm_timer_read(void)
{
	return inl(plat.pm_tmr);
}

u32 pm_timer_delta(u32 a, u32 b)
{
	return (b - a) & (plat.pm_tmr_32 ? 0xffffffffu : 0xffffffu);
}

/* ---- PIT channel 0 ---- */
void pit_periodic(u32 hz)
{
	u32 div = 1193182 / hz;

	outb(0x43, 0x34);	/* channel 0, lo/hi, mode 2 */
	outb(0x40, div & 0xff);
	outb(0x40, div >> 8);
}

/*
 * Mode 0 (one-shot) with the longest count: one last IRQ0 edge ~55 ms
 * later, then the output stays quiet. Writing only the low byte would
 * stop an 8254 at once, but KVM's PIT keeps its old period then.
 */
void pit_stop(void)
{
	outb(0x43, 0x30);
	outb(0x40, 0xff);
	outb(0x40, 0xff);
}

/* ---- ACPI power button through the SCI ---- */
#define PM1_PWRBTN	(1 << 8)
#define PM1_SCI_EN	(1 << 0)

/*
 * Only where the firmware left ACPI mode on (SCI_EN set, as khyve does):
 * switching it on through SMI_CMD would need SMM firmware help.
 */
void power_button_arm(void)
{
	bool level, low;
	u32 pin, en;

	if (!plat.pm1a_evt || !plat.pm1_evt_len || !(inw(plat.pm1a_cnt) & PM1_SCI_EN))
		return;
	pin = isa_gsi(plat.sci, &level, &low) - plat.ioapic_gsi_base;
	if (pin == plat.sci && !level) {
		level = true;	/* no override: the SCI's default is level, low */
		low = true;
	}
	en = plat.pm1a_evt + plat.pm1_evt_len / 2;
	outw(plat.pm1a_evt, PM1_PWRBTN);
	outw(en, inw(en) | PM1_PWRBTN);
	ioapic_route(pin, VEC_SCI, lapic_id(), level, low);
}

void power_button_poll(void)
{
	if (*(volatile u64 *)(percpu[0] + PERCPU_SCI_STATUS) & PM1_PWRBTN) {
		*(volatile u64 *)(percpu[0] + PERCPU_SCI_STATUS) = 0;
		pr("testguest: power button, powering off\n");
		poweroff();
	}
}

/* ---- TSC frequency: HPET, else PM timer, else KVM's CPUID leaf ---- */
/*
 * A clock read with the TSC read just before and after: of five tries, the one whose two TSC
 * reads are closest (*tsc gets their midpoint).  The clock reads are exits to the VMM: a
 * vCPU (or VMM thread) the host stops between a read and its TSC read would otherwise put
 * them far apart, and a 50 ms calibration would come out wildly wrong (a loaded host gave a
 * TSC of under 10 MHz).
 */
static u64 read_around(u64 (*read)(void), u64 *tsc)
{
	u64 best = ~0ull, v = 0;

	for (int i = 0; i < 5; i++) {
		u64 a = rdtsc(), x = read(), b = rdtsc();

		if (b - a < best) {
			best = b - a;
			v = x;
			*tsc = a + (b - a) / 2;
		}
	}
	return v;
}

static u64 pm_timer_read64(void)
{
	return pm_timer_read();
}

static u64 tsc_by_hpet(void)
{
	u64 t0 = 0, t1 = 0, h0 = read_around(hpet_counter, &t0), h1;
	u64 want = 50000000000000ull / hpet_period_fs;	/* 50 ms */

	while (hpet_counter() - h0 < want)
		;
	h1 = read_around(hpet_counter, &t1);
	return (t1 - t0) * 1000000 / ((h1 - h0) * hpet_period_fs / 1000000000);
}

static u64 tsc_by_pmtimer(void)
{
	u64 t0 = 0, t1 = 0;
	u32 p0 = (u32)read_around(pm_timer_read64, &t0), p1;

	while (pm_timer_delta(p0, pm_timer_read()) < 179000)	/* 50 ms */
		;
	p1 = (u32)read_around(pm_timer_read64, &t1);
	return (t1 - t0) * 3579545 / pm_timer_delta(p0, p1);
}

int tsc_calibrate(void)
{
	if (hpet_period_fs)
		tsc_hz = tsc_by_hpet();
	else if (plat.pm_tmr)
		tsc_hz = tsc_by_pmtimer();
	else
		return -1;
	return tsc_hz < 10000000 ? -1 : 0;
}
