// SPDX-License-Identifier: BSD-2-Clause
/* The MC146818 RTC/CMOS, driven through ports 0x70/0x71 on a manual virtual clock. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "devsnap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "dev/pc/hpet.h"
#include "dev/pc/rtc.h"
#include "sstream.h"
#include "vm.h"

#define SEC 1000000000ULL
#define MS 1000000ULL
#define US 1000ULL

#define R_SEC 0x00
#define R_SEC_ALARM 0x01
#define R_MIN 0x02
#define R_MIN_ALARM 0x03
#define R_HOUR 0x04
#define R_HOUR_ALARM 0x05
#define R_DOW 0x06
#define R_DAY 0x07
#define R_MONTH 0x08
#define R_YEAR 0x09
#define R_A 0x0a
#define R_B 0x0b
#define R_C 0x0c
#define R_D 0x0d
#define R_CENTURY 0x32

/* Offsets in a version-1 rtc state. */
#define ST_INDEX 128
#define ST_PHASE 137

struct fixture {
	struct vm vm;
	struct dev *d;
	unsigned pulses; /* rising edges on IRQ 8 */
	int level;
};

static struct fixture *owners[2];
static unsigned nowners;

static void record_irq(struct vm *vm, unsigned gsi, int level)
{
	for (unsigned i = 0; i < nowners; i++) {
		struct fixture *f = owners[i];

		if (&f->vm != vm)
			continue;
		assert_int_equal(gsi, 8);
		if (level && !f->level)
			f->pulses++;
		f->level = level;
	}
}

static void fixture_init(struct fixture *f, uint64_t ram, uint64_t clock)
{
	char err[256];

	memset(f, 0, sizeof(*f));
	vm_init_bare(&f->vm, true);
	if (clock)
		vclock_set(&f->vm.ev, clock);
	f->vm.ram_size = ram;
	f->vm.set_irq = record_irq;
	owners[nowners++] = f;
	f->d = rtc_create(&f->vm, err, sizeof(err));
	if (!f->d)
		fail_msg("rtc_create: %s", err);
}

static void fixture_fini(struct fixture *f)
{
	vm_destroy(&f->vm);
	nowners = 0;
}

static int setup(void **state)
{
	struct fixture *f = malloc(sizeof(*f));

	fixture_init(f, 256 * MiB, 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture_fini(*state);
	free(*state);
	return 0;
}

static uint8_t cmos_rd(struct fixture *f, uint8_t idx)
{
	uint8_t v = 0;

	assert_true(bus_access(&f->vm.pio, 0x70, &idx, 1, true));
	assert_true(bus_access(&f->vm.pio, 0x71, &v, 1, false));
	return v;
}

static void cmos_wr(struct fixture *f, uint8_t idx, uint8_t v)
{
	assert_true(bus_access(&f->vm.pio, 0x70, &idx, 1, true));
	assert_true(bus_access(&f->vm.pio, 0x71, &v, 1, true));
}

static uint64_t now(struct fixture *f)
{
	return vclock_ns(&f->vm.ev);
}

static void advance(struct fixture *f, uint64_t ns)
{
	evloop_advance(&f->vm.ev, now(f) + ns);
}

/*
 * Set the time as a guest does (SET, write, release), restarting the divider so the phase
 * is known: the first update comes 500 ms after this returns.  @b is register B afterwards.
 */
static void set_time(struct fixture *f, uint8_t b, uint8_t cen, uint8_t yr, uint8_t mon,
		     uint8_t day, uint8_t h, uint8_t m, uint8_t s)
{
	cmos_wr(f, R_B, 0x80 | b);
	cmos_wr(f, R_A, 0x70); /* divider in reset */
	cmos_wr(f, R_SEC, s);
	cmos_wr(f, R_MIN, m);
	cmos_wr(f, R_HOUR, h);
	cmos_wr(f, R_DAY, day);
	cmos_wr(f, R_MONTH, mon);
	cmos_wr(f, R_YEAR, yr);
	cmos_wr(f, R_CENTURY, cen);
	cmos_wr(f, R_A, 0x20); /* running, periodic rate 0 */
	cmos_wr(f, R_B, b);
}

static void expect_time(struct fixture *f, uint8_t cen, uint8_t yr, uint8_t mon, uint8_t day,
			uint8_t h, uint8_t m, uint8_t s)
{
	assert_int_equal(cmos_rd(f, R_SEC), s);
	assert_int_equal(cmos_rd(f, R_MIN), m);
	assert_int_equal(cmos_rd(f, R_HOUR), h);
	assert_int_equal(cmos_rd(f, R_DAY), day);
	assert_int_equal(cmos_rd(f, R_MONTH), mon);
	assert_int_equal(cmos_rd(f, R_YEAR), yr);
	assert_int_equal(cmos_rd(f, R_CENTURY), cen);
}

static void test_bcd_and_binary(void **state)
{
	struct fixture *f = *state;

	set_time(f, 0x02, 0x20, 0x24, 0x06, 0x15, 0x13, 0x30, 0x45);
	expect_time(f, 0x20, 0x24, 0x06, 0x15, 0x13, 0x30, 0x45);
	assert_int_equal(cmos_rd(f, R_DOW), 7); /* 2024-06-15 was a Saturday */
	advance(f, 15 * SEC);
	expect_time(f, 0x20, 0x24, 0x06, 0x15, 0x13, 0x31, 0x00);
	/* Binary mode shows the same time in binary. */
	cmos_wr(f, R_B, 0x06);
	expect_time(f, 20, 24, 6, 15, 13, 31, 0);
	/* Written in binary (with SET), read back in binary. */
	set_time(f, 0x06, 20, 99, 12, 31, 23, 59, 59);
	advance(f, 500 * MS);
	expect_time(f, 21, 0, 1, 1, 0, 0, 0);
	assert_int_equal(cmos_rd(f, R_DOW), 6); /* a Friday */
}

static void test_12h_mode(void **state)
{
	struct fixture *f = *state;

	set_time(f, 0x00, 0x20, 0x24, 0x02, 0x28, 0x81, 0x15, 0x00); /* 1:15 PM */
	assert_int_equal(cmos_rd(f, R_HOUR), 0x81);
	cmos_wr(f, R_B, 0x02);
	assert_int_equal(cmos_rd(f, R_HOUR), 0x13);
	set_time(f, 0x00, 0x20, 0x24, 0x02, 0x28, 0x12, 0x00, 0x00); /* 12 AM: midnight */
	cmos_wr(f, R_B, 0x02);
	assert_int_equal(cmos_rd(f, R_HOUR), 0x00);
	set_time(f, 0x00, 0x20, 0x24, 0x02, 0x28, 0x91, 0x59, 0x59); /* 11:59:59 PM */
	advance(f, 500 * MS);
	/* Midnight in 12-hour mode, and 2024 is a leap year. */
	expect_time(f, 0x20, 0x24, 0x02, 0x29, 0x12, 0x00, 0x00);
	set_time(f, 0x00, 0x20, 0x24, 0x02, 0x29, 0x11, 0x59, 0x59); /* 11:59:59 AM */
	advance(f, 500 * MS);
	assert_int_equal(cmos_rd(f, R_HOUR), 0x92); /* 12 PM: noon */
}

static void test_set_freezes_and_rebases(void **state)
{
	struct fixture *f = *state;

	set_time(f, 0x02, 0x20, 0x25, 0x01, 0x01, 0x08, 0x00, 0x00);
	advance(f, 2 * SEC);
	cmos_wr(f, R_B, 0x82);
	advance(f, 10 * SEC);
	/* Frozen while SET, and UIP stays low. */
	expect_time(f, 0x20, 0x25, 0x01, 0x01, 0x08, 0x00, 0x02);
	assert_int_equal(cmos_rd(f, R_A) & 0x80, 0);
	cmos_wr(f, R_MIN, 0x42);
	advance(f, 3 * SEC);
	cmos_wr(f, R_B, 0x02);
	expect_time(f, 0x20, 0x25, 0x01, 0x01, 0x08, 0x42, 0x02);
	/* The divider kept its phase: the next update is still half a second off. */
	advance(f, 400 * MS);
	assert_int_equal(cmos_rd(f, R_SEC), 0x02);
	advance(f, 100 * MS);
	assert_int_equal(cmos_rd(f, R_SEC), 0x03);
	/* A write without SET takes effect at once, the clock running on from it. */
	cmos_wr(f, R_HOUR, 0x17);
	advance(f, SEC);
	expect_time(f, 0x20, 0x25, 0x01, 0x01, 0x17, 0x42, 0x04);
}

static void test_uip(void **state)
{
	struct fixture *f = *state;

	set_time(f, 0x02, 0x20, 0x25, 0x01, 0x01, 0x08, 0x00, 0x00);
	advance(f, 500 * MS - 300 * US);
	assert_int_equal(cmos_rd(f, R_A), 0x20);
	advance(f, 200 * US);
	assert_int_equal(cmos_rd(f, R_A), 0xa0);
	assert_int_equal(cmos_rd(f, R_SEC), 0x00);
	advance(f, 100 * US);
	assert_int_equal(cmos_rd(f, R_A), 0x20);
	assert_int_equal(cmos_rd(f, R_SEC), 0x01);
}

static void test_reg_c(void **state)
{
	struct fixture *f = *state;

	set_time(f, 0x12, 0x20, 0x25, 0x01, 0x01, 0x08, 0x00, 0x00); /* UIE */
	cmos_rd(f, R_C);
	assert_int_equal(f->pulses, 0);
	advance(f, 500 * MS);
	assert_int_equal(f->pulses, 1);
	assert_int_equal(f->level, 0);
	/* Until C is read IRQF stays set and no new interrupt is raised. */
	advance(f, SEC);
	assert_int_equal(f->pulses, 1);
	assert_int_equal(cmos_rd(f, R_C), 0x90);
	assert_int_equal(cmos_rd(f, R_C), 0x00);
	assert_int_equal(f->level, 0);
	advance(f, SEC);
	assert_int_equal(f->pulses, 2);
	/* Disabling UIE leaves UF but drops IRQF. */
	cmos_wr(f, R_B, 0x02);
	assert_int_equal(cmos_rd(f, R_C), 0x10);
	/* Enabling UIE with UF already set raises the interrupt at once. */
	advance(f, SEC);
	cmos_wr(f, R_B, 0x12);
	assert_int_equal(f->pulses, 3);
	assert_int_equal(cmos_rd(f, R_C), 0x90);
	/* C and D are read-only. */
	cmos_wr(f, R_C, 0xff);
	cmos_wr(f, R_D, 0x00);
	assert_int_equal(cmos_rd(f, R_C), 0x00);
	assert_int_equal(cmos_rd(f, R_D), 0x80);
}

/* Count periodic interrupts over one second, acknowledging each as a guest's handler does. */
static unsigned count_periodic(struct fixture *f, uint8_t rate)
{
	uint64_t end;
	unsigned seen;

	cmos_wr(f, R_A, 0x20 | rate);
	cmos_wr(f, R_B, 0x42); /* PIE, 24h */
	cmos_rd(f, R_C);
	seen = f->pulses;
	end = now(f) + SEC;
	while (now(f) < end) {
		evloop_advance(&f->vm.ev, now(f) + 50 * US);
		if (f->pulses != seen) {
			assert_int_equal(cmos_rd(f, R_C) & 0xc0, 0xc0);
			seen = f->pulses;
		}
	}
	cmos_wr(f, R_B, 0x02);
	return seen;
}

static void test_periodic(void **state)
{
	struct fixture *f = *state;
	unsigned before;

	before = f->pulses;
	assert_int_equal(count_periodic(f, 15) - before, 2); /* 2 Hz */
	before = f->pulses;
	assert_int_equal(count_periodic(f, 6) - before, 1024); /* 1024 Hz */
	before = f->pulses;
	assert_int_equal(count_periodic(f, 3) - before, 8192); /* 8192 Hz, the fastest */
	/* Without PIE, PF is still reported to a guest that polls C. */
	cmos_wr(f, R_A, 0x2f);
	cmos_rd(f, R_C);
	advance(f, 600 * MS);
	assert_int_equal(cmos_rd(f, R_C) & 0x40, 0x40);
	assert_int_equal(cmos_rd(f, R_C) & 0x40, 0x00);
	/* Rate 0 stops the periodic flag. */
	cmos_wr(f, R_A, 0x20);
	advance(f, 2 * SEC);
	assert_int_equal(cmos_rd(f, R_C) & 0x40, 0x00);
}

static void test_alarm(void **state)
{
	struct fixture *f = *state;

	set_time(f, 0x22, 0x20, 0x25, 0x03, 0x01, 0x10, 0x00, 0x00); /* AIE */
	cmos_wr(f, R_SEC_ALARM, 0x05);
	cmos_wr(f, R_MIN_ALARM, 0xc0);	/* don't care */
	cmos_wr(f, R_HOUR_ALARM, 0xff); /* don't care */
	advance(f, 4 * SEC);		/* updates to 10:00:01 .. 10:00:04 */
	assert_int_equal(f->pulses, 0);
	assert_int_equal(cmos_rd(f, R_C), 0x10); /* UF only: updates run regardless */
	advance(f, SEC);
	assert_int_equal(f->pulses, 1);
	assert_int_equal(cmos_rd(f, R_C), 0xb0); /* IRQF | AF | UF */
	/* Once a minute with minutes and hours don't-care. */
	advance(f, 59 * SEC);
	assert_int_equal(f->pulses, 1);
	cmos_rd(f, R_C);
	advance(f, SEC);
	assert_int_equal(f->pulses, 2);
	/* A full match: 10:02:30. */
	cmos_rd(f, R_C);
	cmos_wr(f, R_SEC_ALARM, 0x30);
	cmos_wr(f, R_MIN_ALARM, 0x02);
	cmos_wr(f, R_HOUR_ALARM, 0x10);
	advance(f, 84 * SEC); /* 10:01:05 .. 10:02:29 */
	assert_int_equal(f->pulses, 2);
	advance(f, SEC);
	assert_int_equal(f->pulses, 3);
	assert_int_equal(cmos_rd(f, R_SEC), 0x30);
	assert_int_equal(cmos_rd(f, R_MIN), 0x02);
}

static unsigned alarm_hooks;

static void count_alarm(void *opaque)
{
	assert_ptr_equal(opaque, &alarm_hooks);
	alarm_hooks++;
}

/* The alarm interrupt tells the PM block (RTC_STS); an alarm match without AIE does not. */
static void test_alarm_hook(void **state)
{
	struct fixture *f = *state;

	alarm_hooks = 0;
	rtc_set_alarm_hook(f->d, count_alarm, &alarm_hooks);
	set_time(f, 0x02, 0x20, 0x25, 0x03, 0x01, 0x10, 0x00, 0x00); /* no AIE */
	cmos_wr(f, R_SEC_ALARM, 0x02);
	cmos_wr(f, R_MIN_ALARM, 0xc0);
	cmos_wr(f, R_HOUR_ALARM, 0xc0);
	advance(f, 2 * SEC);
	assert_int_equal(cmos_rd(f, R_C) & 0x20, 0x20); /* AF, but no interrupt */
	assert_int_equal(alarm_hooks, 0);
	cmos_wr(f, R_B, 0x22); /* AIE */
	advance(f, 60 * SEC);
	assert_int_equal(f->pulses, 1);
	assert_int_equal(alarm_hooks, 1);
	rtc_set_alarm_hook(f->d, NULL, NULL);
	cmos_rd(f, R_C);
	advance(f, 60 * SEC);
	assert_int_equal(f->pulses, 2);
	assert_int_equal(alarm_hooks, 1);
}

static void test_nvram(void **state)
{
	struct fixture *f = *state;
	uint8_t idx = 0x80 | 0x50, v = 0x5a;

	for (unsigned i = 0x40; i < 0x80; i++)
		cmos_wr(f, (uint8_t)i, (uint8_t)(i * 7));
	for (unsigned i = 0x40; i < 0x80; i++)
		assert_int_equal(cmos_rd(f, (uint8_t)i), (uint8_t)(i * 7));
	/* Bit 7 of the index is the NMI mask, not part of the address. */
	assert_true(bus_access(&f->vm.pio, 0x70, &idx, 1, true));
	assert_true(bus_access(&f->vm.pio, 0x71, &v, 1, true));
	assert_int_equal(cmos_rd(f, 0x50), 0x5a);
	/* The index register is write-only. */
	assert_true(bus_access(&f->vm.pio, 0x70, &v, 1, false));
	assert_int_equal(v, 0xff);
	assert_int_equal(cmos_rd(f, R_D), 0x80);
}

static void test_memory_size(void **state)
{
	struct fixture f;

	fixture_init(&f, 512 * MiB, 0);
	assert_int_equal(cmos_rd(&f, 0x15) | cmos_rd(&f, 0x16) << 8, 640);
	assert_int_equal(cmos_rd(&f, 0x17) | cmos_rd(&f, 0x18) << 8, 0xffff);
	assert_int_equal(cmos_rd(&f, 0x30) | cmos_rd(&f, 0x31) << 8, 0xffff);
	assert_int_equal(cmos_rd(&f, 0x34) | cmos_rd(&f, 0x35) << 8, (512 - 16) * 16);
	assert_int_equal(cmos_rd(&f, 0x5b) | cmos_rd(&f, 0x5c) << 8 | cmos_rd(&f, 0x5d) << 16, 0);
	fixture_fini(&f);

	fixture_init(&f, 6 * GiB, 0);
	assert_int_equal(cmos_rd(&f, 0x15) | cmos_rd(&f, 0x16) << 8, 640);
	assert_int_equal(cmos_rd(&f, 0x34) | cmos_rd(&f, 0x35) << 8, (3072 - 16) * 16);
	assert_int_equal(cmos_rd(&f, 0x5b) | cmos_rd(&f, 0x5c) << 8 | cmos_rd(&f, 0x5d) << 16,
			 3 * 1024 * 16);
	fixture_fini(&f);

	fixture_init(&f, 32 * MiB, 0);
	assert_int_equal(cmos_rd(&f, 0x17) | cmos_rd(&f, 0x18) << 8, 31 * 1024);
	assert_int_equal(cmos_rd(&f, 0x34) | cmos_rd(&f, 0x35) << 8, 16 * 16);
	fixture_fini(&f);
}

static void test_localtime_config(void **state)
{
	struct config cfg;
	struct vm vm;
	char err[256];

	config_init(&cfg);
	config_set(&cfg, "rtc.localtime", "maybe");
	vm_init_bare(&vm, true);
	vm.cfg = &cfg;
	assert_null(rtc_create(&vm, err, sizeof(err)));
	assert_string_equal(err, "rtc.localtime=maybe: must be true or false");
	config_set(&cfg, "rtc.localtime", "false");
	assert_non_null(rtc_create(&vm, err, sizeof(err)));
	vm_destroy(&vm);
	config_free(&cfg);
}

static void test_snapshot_roundtrip(void **state)
{
	struct fixture *f = *state, g;
	struct sstream a, b;

	set_time(f, 0x12, 0x20, 0x24, 0x12, 0x31, 0x23, 0x59, 0x50); /* UIE */
	cmos_wr(f, 0x60, 0x99);
	advance(f, 3 * SEC);
	/* An unread update interrupt stays pending across the snapshot. */
	assert_int_equal(f->pulses, 1);
	devsnap_save(f->d, &a);

	/* The destination's clock is elsewhere until the restore sets it, as a restore does. */
	fixture_init(&g, 256 * MiB, 77 * SEC);
	assert_int_equal(devsnap_load(g.d, a.buf, a.len, 1), 0);
	devsnap_save(g.d, &b);
	assert_int_equal(a.len, b.len);
	assert_memory_equal(a.buf, b.buf, a.len);
	ss_free(&b);

	vclock_set(&g.vm.ev, now(f));
	assert_int_equal(g.d->ops->resume(g.d), 0);
	expect_time(&g, 0x20, 0x24, 0x12, 0x31, 0x23, 0x59, 0x53);
	assert_int_equal(cmos_rd(&g, 0x60), 0x99);
	assert_int_equal(g.pulses, 0);
	assert_int_equal(cmos_rd(&g, R_C), 0x90);
	/* Time and update interrupts continue from the saved values. */
	advance(&g, 7 * SEC);
	expect_time(&g, 0x20, 0x25, 0x01, 0x01, 0x00, 0x00, 0x00);
	assert_int_equal(g.pulses, 1);
	/* Saved again after more time: still loadable, and identical once more. */
	ss_free(&a);
	devsnap_save(g.d, &a);
	assert_int_equal(devsnap_load(f->d, a.buf, a.len, 1), 0);
	devsnap_save(f->d, &b);
	assert_memory_equal(a.buf, b.buf, a.len);
	ss_free(&a);
	ss_free(&b);
	vm_destroy(&g.vm);
}

static void test_snapshot_refused(void **state)
{
	struct fixture *f = *state, g;
	struct sstream a;
	uint8_t *bad;

	set_time(f, 0x02, 0x20, 0x24, 0x12, 0x31, 0x23, 0x59, 0x50);
	devsnap_save(f->d, &a);
	bad = malloc(a.len + 1);
	fixture_init(&g, 256 * MiB, 0);
	cmos_wr(&g, 0x70, 0x42);

	for (size_t len = 0; len < a.len; len += 11)
		devsnap_expect_refused(g.d, a.buf, len, 1);
	devsnap_expect_refused(g.d, a.buf, a.len - 1, 1);
	memcpy(bad, a.buf, a.len);
	bad[a.len] = 0;
	devsnap_expect_refused(g.d, bad, a.len + 1, 1);
	devsnap_expect_refused(g.d, a.buf, a.len, 2);
	bad[ST_INDEX] = 0x80;
	devsnap_expect_refused(g.d, bad, a.len, 1);
	memcpy(bad, a.buf, a.len);
	bad[ST_PHASE + 3] = 0x7f; /* phase of more than a second */
	devsnap_expect_refused(g.d, bad, a.len, 1);
	memcpy(bad, a.buf, a.len);
	bad[R_D] = 0x00;
	devsnap_expect_refused(g.d, bad, a.len, 1);
	memcpy(bad, a.buf, a.len);
	bad[R_C] = 0x80; /* IRQF with no enabled flag */
	devsnap_expect_refused(g.d, bad, a.len, 1);
	memcpy(bad, a.buf, a.len);
	bad[R_A] |= 0x80; /* UIP is never stored */
	devsnap_expect_refused(g.d, bad, a.len, 1);
	memcpy(bad, a.buf, a.len);
	bad[R_B] |= 0x80 | 0x10; /* update interrupts while the clock is stopped (SET) */
	devsnap_expect_refused(g.d, bad, a.len, 1);
	/* The phase is below a second: 999999999 ns is a phase, 10^9 is not. */
	memcpy(bad, a.buf, a.len);
	memcpy(bad + ST_PHASE, (uint32_t[]){ 1000000000 }, 4);
	devsnap_expect_refused(g.d, bad, a.len, 1);
	assert_int_equal(cmos_rd(&g, 0x70), 0x42);
	memcpy(bad + ST_PHASE, (uint32_t[]){ 999999999 }, 4);
	assert_int_equal(devsnap_load(g.d, bad, a.len, 1), 0);

	free(bad);
	ss_free(&a);
	vm_destroy(&g.vm);
}

static void test_advance_wallclock(void **state)
{
	struct fixture *f = *state;

	set_time(f, 0x02, 0x20, 0x24, 0x02, 0x28, 0x23, 0x00, 0x00);
	rtc_advance_wallclock(f->d, 3600);
	expect_time(f, 0x20, 0x24, 0x02, 0x29, 0x00, 0x00, 0x00);
	rtc_advance_wallclock(f->d, 366 * 86400);
	expect_time(f, 0x20, 0x25, 0x03, 0x01, 0x00, 0x00, 0x00);
	/* Updates stay on the divider's phase. */
	advance(f, 499 * MS);
	assert_int_equal(cmos_rd(f, R_SEC), 0x00);
	advance(f, MS);
	assert_int_equal(cmos_rd(f, R_SEC), 0x01);
	/* The divider in reset: the registers are the time, and they move. */
	cmos_wr(f, R_A, 0x70);
	rtc_advance_wallclock(f->d, 61);
	expect_time(f, 0x20, 0x25, 0x03, 0x01, 0x00, 0x01, 0x02);
	/* SET held: the guest is writing the time, which stays as it writes it. */
	cmos_wr(f, R_B, 0x82);
	rtc_advance_wallclock(f->d, 3600);
	expect_time(f, 0x20, 0x25, 0x03, 0x01, 0x00, 0x01, 0x02);
}

/* A month outside 1-12 set by the guest counts as January or December. */
static void test_month_out_of_range(void **state)
{
	struct fixture *f = *state;

	set_time(f, 0x02, 0x20, 0x24, 0x00, 0x10, 0x12, 0x00, 0x00);
	expect_time(f, 0x20, 0x24, 0x01, 0x10, 0x12, 0x00, 0x00);
	set_time(f, 0x02, 0x20, 0x24, 0x13, 0x10, 0x12, 0x00, 0x00);
	expect_time(f, 0x20, 0x24, 0x12, 0x10, 0x12, 0x00, 0x00);
}

/* HPET general configuration: ENABLE_CNF and LEG_RT_CNF. */
static void hpet_conf(struct fixture *f, uint32_t v)
{
	assert_true(bus_access(&f->vm.mmio, HPET_BASE + 0x10, &v, 4, true));
}

/*
 * With the HPET in legacy replacement mode, IRQ 8 belongs to its timer 1: the RTC still sets
 * its flags, but its interrupt reaches nothing (what Linux's HPET RTC emulation relies on,
 * or every RTC event would arrive twice).  Both bits are needed; clearing either gives IRQ 8
 * back.
 */
static void test_hpet_legacy_owns_irq8(void **state)
{
	struct fixture *f = *state;
	char err[256];

	assert_non_null(hpet_create(&f->vm, err, sizeof(err)));
	set_time(f, 0x12, 0x20, 0x25, 0x01, 0x01, 0x08, 0x00, 0x00); /* UIE */
	cmos_rd(f, R_C);
	hpet_conf(f, 3);
	advance(f, 500 * MS);
	assert_int_equal(f->pulses, 0);
	assert_int_equal(cmos_rd(f, R_C), 0x90); /* the update happened: IRQF and UF */
	hpet_conf(f, 2);			 /* LEG_RT without ENABLE routes nothing */
	advance(f, SEC);
	assert_int_equal(f->pulses, 1);
	assert_int_equal(cmos_rd(f, R_C), 0x90);
	hpet_conf(f, 3);
	advance(f, SEC);
	assert_int_equal(f->pulses, 1);
	assert_int_equal(cmos_rd(f, R_C), 0x90);
	hpet_conf(f, 1);
	advance(f, SEC);
	assert_int_equal(f->pulses, 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_bcd_and_binary, setup, teardown),
		cmocka_unit_test_setup_teardown(test_12h_mode, setup, teardown),
		cmocka_unit_test_setup_teardown(test_set_freezes_and_rebases, setup, teardown),
		cmocka_unit_test_setup_teardown(test_uip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reg_c, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hpet_legacy_owns_irq8, setup, teardown),
		cmocka_unit_test_setup_teardown(test_periodic, setup, teardown),
		cmocka_unit_test_setup_teardown(test_alarm, setup, teardown),
		cmocka_unit_test_setup_teardown(test_alarm_hook, setup, teardown),
		cmocka_unit_test_setup_teardown(test_nvram, setup, teardown),
		cmocka_unit_test(test_memory_size),
		cmocka_unit_test(test_localtime_config),
		cmocka_unit_test_setup_teardown(test_snapshot_roundtrip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_advance_wallclock, setup, teardown),
		cmocka_unit_test_setup_teardown(test_month_out_of_range, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
