// SPDX-License-Identifier: MIT
/*
 * khyve test guest, mode=counter: runs forever. The BSP prints "seq N"
 * at `rate` lines per second; every CPU keeps writing and verifying its
 * share of a memory region; the BSP checks once a second that every
 * timer still advances. All state lives in guest memory, so a snapshot
 * and restore continues the sequence with no gap and no repeat.
 *
 * Failures are printed as "TESTGUEST FAIL: ..." lines and the guest keeps
 * going (seq lines continue), so a harness sees both the failure and
 * whether the guest is otherwise alive.
 */
#include "user.h"

#define CHUNK_WORDS	8192	/* 64 KiB between two looks at the clock */
#define STALL_CHECKS	5	/* seconds without progress = stalled */
#define HPET_IRQ_UNSET	0xff

extern u64 pdpt[512];
extern char _image_end[];

/* Extra page directories for RAM above 4 GiB (up to 64 GiB). */
static u64 hipd[60][512] __attribute__((section(".noinit"), aligned(4096)));

struct worker {
	u64 *start;
	u64 words;
	u64 pos;
	u64 pass;
};

struct watch {
	char name[24];
	u64 last;
	u32 stale;
	bool reported;
};

static struct worker workers[MAX_CPUS];
static u64 region_base, region_size;
static u64 seq;
static u8 hpet_pin = HPET_IRQ_UNSET;
static u32 pit_pin;

/* ---- memory pattern ---- */
static inline u64 pattern(u64 addr, u64 pass)
{
	u64 x = addr ^ (pass * 0x9e3779b97f4a7c15ull);

	x ^= x >> 31;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 29;
	return x;
}

static void mem_mismatch(u32 cpu, u64 *a, u64 want, u64 got)
{
	struct cpu_state *c = &cpus[cpu];

	c->fail_addr = (u64)a;
	c->fail_expect = want;
	c->fail_got = got;
	c->fail_count++;
}

/* Verify pass-1 and write pass over the next chunk of this CPU's share. */
static void mem_chunk(u32 cpu)
{
	struct worker *w = &workers[cpu];
	u64 n = w->words - w->pos, k;
	u64 *a = w->start + w->pos;

	if (n > CHUNK_WORDS)
		n = CHUNK_WORDS;
	for (k = 0; k < n; k++, a++) {
		if (w->pass && *a != pattern((u64)a, w->pass - 1))
			mem_mismatch(cpu, a, pattern((u64)a, w->pass - 1), *a);
		*a = pattern((u64)a, w->pass);
	}
	w->pos += n;
	if (w->pos == w->words) {
		w->pos = 0;
		w->pass++;
		cpus[cpu].passes = w->pass;
	}
	cpus[cpu].progress++;
}

/* ---- where the region goes ---- */

/* Map [4 GiB, end) with 2 MiB pages. Done from ring 3: the tables are
 * ordinary U memory, and not-present entries are never cached, so no
 * TLB flush is needed. */
static int map_above_4g(u64 end)
{
	u64 gb, n = (end + (1ull << 30) - 1) >> 30, j;

	if (n > 4 + 60)
		return -1;
	for (gb = 4; gb < n; gb++) {
		if (pdpt[gb])
			continue;
		for (j = 0; j < 512; j++)
			hipd[gb - 4][j] = (gb << 30) + (j << 21) + 0x87;
		WRITE_ONCE(pdpt[gb], (u64)hipd[gb - 4] + 7);
	}
	return 0;
}

static const struct memmap_entry *ram_containing(u64 a)
{
	u32 i;

	for (i = 0; i < memmap_count; i++)
		if (memmap[i].type == 1 && a >= memmap[i].addr &&
		    a < memmap[i].addr + memmap[i].size)
			return &memmap[i];
	return NULL;
}

static bool region_high(u64 size)
{
	u32 i;

	for (i = 0; i < memmap_count; i++) {
		const struct memmap_entry *e = &memmap[i];
		u64 b = (e->addr + 0x1fffff) & ~0x1fffffull;

		if (e->type != 1 || b < (4ull << 30) || b + size > e->addr + e->size)
			continue;
		if (map_above_4g(b + size))
			continue;
		region_base = b;
		return true;
	}
	return false;
}

/* Right after the image (2 MiB aligned), else above 4 GiB, else clamped. */
static void region_place(void)
{
	const struct memmap_entry *e;
	u64 size = opt.mem;

	region_base = ((u64)_image_end + 0x1fffff) & ~0x1fffffull;
	e = ram_containing(region_base);
	if (e && region_base + size > e->addr + e->size && !region_high(size)) {
		size = (e->addr + e->size - region_base) & ~0xfffull;
		pr("counter: mem clamped to %lu KiB\n", size >> 10);
	}
	region_size = size;
}

int memregion_setup(void)
{
	u64 share;
	u32 i;

	region_place();
	share = region_size / ncpus_up / 8;
	if (!share)
		return -1;
	for (i = 0; i < ncpus_up; i++) {
		workers[i].start = (u64 *)region_base + i * share;
		workers[i].words = share;
	}
	return 0;
}

/* ---- timer watch ---- */
static void watch_update(struct watch *w, u64 v)
{
	if (v != w->last) {
		if (w->reported)
			pr("counter: %s advancing again after %u s\n", w->name, w->stale);
		w->last = v;
		w->stale = 0;
		w->reported = false;
		return;
	}
	if (++w->stale >= STALL_CHECKS && !w->reported) {
		pr("TESTGUEST FAIL: %s stalled\n", w->name);
		pr("counter: %s stuck at 0x%lx for %u s\n", w->name, v, w->stale);
		w->reported = true;
	}
}

enum {
	W_HPET, W_PMTMR, W_RTC, W_PIT, W_HPET_IRQ, W_LAPIC,
	W_CPU = W_LAPIC + MAX_CPUS,
	W_COUNT = W_CPU + MAX_CPUS,
};
static struct watch watches[W_COUNT];
static u64 fails_reported[MAX_CPUS];

static void watches_init(void)
{
	u32 i;

	fmt(watches[W_HPET].name, 24, "hpet counter");
	fmt(watches[W_PMTMR].name, 24, "pm timer");
	fmt(watches[W_RTC].name, 24, "rtc seconds");
	fmt(watches[W_PIT].name, 24, "pit irq");
	fmt(watches[W_HPET_IRQ].name, 24, "hpet irq");
	for (i = 0; i < ncpus_up; i++) {
		fmt(watches[W_LAPIC + i].name, 24, "lapic timer cpu %u", i);
		fmt(watches[W_CPU + i].name, 24, "cpu %u", i);
	}
}

static void mem_failures_report(void)
{
	u32 i;

	for (i = 0; i < ncpus_up; i++) {
		struct cpu_state *c = &cpus[i];

		if (c->fail_count == fails_reported[i])
			continue;
		fails_reported[i] = c->fail_count;
		pr("TESTGUEST FAIL: memory at 0x%lx cpu %u (want 0x%lx got 0x%lx, %lu bad words)\n",
		   c->fail_addr, i, c->fail_expect, c->fail_got, c->fail_count);
	}
}

/* The RTC's time of day in seconds (BCD or binary, 12- or 24-hour), read outside an update. */
static u32 rtc_day_seconds(void)
{
	u8 b = cmos_read(0x0b), h, m, sec;
	int n = 1000;

	while ((cmos_read(0x0a) & 0x80) && n--)
		;
	sec = cmos_read(0x00);
	m = cmos_read(0x02);
	h = cmos_read(0x04);
	if (!(b & 0x04)) {
		sec = (sec >> 4) * 10 + (sec & 0x0f);
		m = (m >> 4) * 10 + (m & 0x0f);
		h = (h & 0x80) | (((h & 0x7f) >> 4) * 10 + (h & 0x0f));
	}
	if (!(b & 0x02))
		h = (h & 0x7f) % 12 + (h & 0x80 ? 12 : 0);
	return (u32)h * 3600 + (u32)m * 60 + sec;
}

/*
 * ticks=1: the counts the watches look at, once a second, so that a test sees each timer fire
 * (and, by the RTC, how much time of day the guest saw pass across a restore).
 */
static void ticks_print(void)
{
	char buf[160];
	u32 i, n;

	n = fmt(buf, sizeof(buf), "ticks: rtc %u pit %lu hpet %lu lapic", rtc_day_seconds(),
		irq_count(0, VEC_IOAPIC_BASE + pit_pin),
		hpet_pin != HPET_IRQ_UNSET ? irq_count(0, VEC_IOAPIC_BASE + hpet_pin) : 0);
	for (i = 0; i < ncpus_up && n < sizeof(buf) - 24; i++)
		n += fmt(buf + n, sizeof(buf) - n, " %lu", irq_count(i, VEC_LAPIC_TIMER));
	pr("%s\n", buf);
}

/* ---- VM Generation ID: printed at start and whenever it changes (a restore) ---- */
static u64 genid[2];
static u32 genid_pin = 0xffffffff;
static u64 genid_notes;

static void genid_print(void)
{
	pr("vmgenid %016lx%016lx\n", genid[0], genid[1]);
}

static void genid_start(void)
{
	if (!plat.vmgenid)
		return;
	genid[0] = READ_ONCE(((u64 *)plat.vmgenid)[0]);
	genid[1] = READ_ONCE(((u64 *)plat.vmgenid)[1]);
	genid_print();
	if (plat.vmgenid_irq != 0xff)
		genid_pin = route_isa(plat.vmgenid_irq, cpus[0].apic_id);
}

static void genid_check(void)
{
	u64 a, b, n;

	if (!plat.vmgenid)
		return;
	a = READ_ONCE(((u64 *)plat.vmgenid)[0]);
	b = READ_ONCE(((u64 *)plat.vmgenid)[1]);
	if (a != genid[0] || b != genid[1]) {
		genid[0] = a;
		genid[1] = b;
		genid_print();
	}
	n = genid_pin == 0xffffffff ? 0 : irq_count(0, VEC_IOAPIC_BASE + genid_pin);
	if (n != genid_notes) {
		genid_notes = n;
		pr("vmgenid notify %lu\n", n);
	}
}

/* NMIs (khyvectl --inject-nmi): a line whenever a CPU's count changed (entry.S counts them). */
static u64 nmis_seen[MAX_CPUS];

static void nmi_check(void)
{
	u32 i;

	for (i = 0; i < ncpus_up; i++) {
		u64 n = irq_count(i, 2);

		if (n != nmis_seen[i]) {
			nmis_seen[i] = n;
			pr("nmi cpu %u: %lu\n", i, n);
		}
	}
}

static void timers_check(void)
{
	u32 i;

	if (opt.ticks)
		ticks_print();

	watch_update(&watches[W_HPET], hpet_period_fs ? hpet_counter() : 0);
	watch_update(&watches[W_PMTMR], plat.pm_tmr ? pm_timer_read() : 0);
	watch_update(&watches[W_RTC], cmos_read(0x00));
	watch_update(&watches[W_PIT], irq_count(0, VEC_IOAPIC_BASE + pit_pin));
	if (hpet_pin != HPET_IRQ_UNSET)
		watch_update(&watches[W_HPET_IRQ], irq_count(0, VEC_IOAPIC_BASE + hpet_pin));
	for (i = 0; i < ncpus_up; i++) {
		watch_update(&watches[W_LAPIC + i], irq_count(i, VEC_LAPIC_TIMER));
		watch_update(&watches[W_CPU + i], cpus[i].progress);
	}
	mem_failures_report();
	genid_check();
	nmi_check();
}

/* PIT and one HPET comparator at 100 Hz to the BSP; LAPIC timers run already. */
static void timers_start(void)
{
	u32 t, n;
	int pin;

	pit_periodic(100);
	pit_pin = route_isa(0, cpus[0].apic_id);
	if (!hpet_period_fs)
		return;
	n = hpet_num_timers();
	for (t = 0; t < n; t++) {
		pin = hpet_pick_pin(t);
		if (pin < 0 || pin == (int)pit_pin)
			continue;
		ioapic_route(pin, VEC_IOAPIC_BASE + pin, cpus[0].apic_id, false, false);
		if (!hpet_timer_start(t, pin, 10000, true)) {
			hpet_pin = pin;
			return;
		}
		ioapic_mask(pin);
	}
	pr("counter: no HPET comparator can interrupt periodically\n");
}

/*
 * Next deadline for a "seq" line. Far behind (the TSC jumped, e.g. a
 * restore on another host) or far ahead (it went back): re-anchor at now
 * rather than burst or stall.
 */
static u64 seq_next(u64 deadline, u64 now, u64 period)
{
	deadline += period;
	if ((s64)(now - deadline) > (s64)tsc_hz || (s64)(deadline - now) > (s64)(2 * period))
		deadline = now + period;
	return deadline;
}

/* passes=1: how many whole passes over its share each vCPU has finished, so a test can wait
 * until the whole region was rewritten after a moment it knows. */
static void passes_print(void)
{
	char line[MAX_CPUS * 21 + 1];
	u32 i, n = 0;

	line[0] = 0;
	for (i = 0; i < ncpus_up; i++)
		n += fmt(line + n, sizeof(line) - n, " %lu", cpus[i].passes);
	pr("passes:%s\n", line);
}

/* Has every vCPU written all of its share at least once (the whole region in use)? */
static bool region_written_once(void)
{
	for (u32 i = 0; i < ncpus_up; i++)
		if (!cpus[i].passes)
			return false;
	return true;
}

void counter_run(void)
{
	u64 period = tsc_hz / opt.rate, next, check, t;
	bool written_once = false;

	if (memregion_setup())
		fail_final("counter: no memory for the pattern");
	pr("counter: %lu KiB at 0x%lx on %u cpus, %lu seq/s\n",
	   region_size >> 10, region_base, ncpus_up, opt.rate);
	timers_start();
	genid_start();
	watches_init();
	WRITE_ONCE(go_mode, MODE_COUNTER + 1);
	next = rdtsc() + period;
	check = rdtsc() + tsc_hz;
	for (;;) {
		mem_chunk(0);
		if (!written_once && region_written_once()) {
			pr("counter: region written once\n");
			written_once = true;
		}
		power_button_poll();
		t = rdtsc();
		if ((s64)(t - next) >= 0) {
			pr("seq %lu\n", ++seq);
			if (opt.passes)
				passes_print();
			next = seq_next(next, t, period);
		} else if ((s64)(next - t) > (s64)(2 * period)) {
			next = t + period;
		}
		if ((s64)(t - check) >= 0 || (s64)(check - t) > (s64)(2 * tsc_hz)) {
			timers_check();
			check = t + tsc_hz;
		}
	}
}

void counter_ap(u32 cpu)
{
	for (;;)
		mem_chunk(cpu);
}
