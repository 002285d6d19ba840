// SPDX-License-Identifier: BSD-2-Clause
/* The HPET as the guest sees it, on a manual clock, and its snapshot round trip. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "devsnap.h"

#include "dev/dev.h"
#include "dev/pc/hpet.h"
#include "sstream.h"
#include "vm.h"

#define GCAP 0x000
#define GEN_CONF 0x010
#define GINTR_STA 0x020
#define MAIN_CNT 0x0F0
#define TCONF(n) (0x100 + 0x20 * (n))
#define TCMP(n) (0x108 + 0x20 * (n))

#define ENABLE 1ULL
#define LEG_RT 2ULL
#define LEVEL (1ULL << 1)
#define INT_ENB (1ULL << 2)
#define PERIODIC (1ULL << 3)
#define VAL_SET (1ULL << 6)
#define MODE32 (1ULL << 8)
#define ROUTE(p) ((uint64_t)(p) << 9)

struct irq_rec {
	int level[32];
	unsigned rises[32];
};

static struct irq_rec rec;

static void rec_irq(struct vm *vm, unsigned gsi, int level)
{
	assert_true(gsi < 32);
	if (level && !rec.level[gsi])
		rec.rises[gsi]++;
	rec.level[gsi] = level;
}

struct fixture {
	struct vm vm;
	struct dev *d;
	uint64_t t0;
};

static void fx_init(struct fixture *f)
{
	char err[128];

	vm_init_bare(&f->vm, true);
	f->vm.set_irq = rec_irq;
	f->d = hpet_create(&f->vm, err, sizeof(err));
	assert_non_null(f->d);
	assert_string_equal(f->d->id, "hpet");
	f->t0 = vclock_ns(&f->vm.ev);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	memset(&rec, 0, sizeof(rec));
	fx_init(f);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	vm_destroy(&f->vm);
	free(f);
	return 0;
}

static uint64_t rd64(struct vm *vm, uint64_t off)
{
	uint8_t b[8];

	assert_true(bus_access(&vm->mmio, HPET_BASE + off, b, 8, false));
	return io_get(b, 8);
}

static uint32_t rd32(struct vm *vm, uint64_t off)
{
	uint8_t b[4];

	assert_true(bus_access(&vm->mmio, HPET_BASE + off, b, 4, false));
	return (uint32_t)io_get(b, 4);
}

static void wr64(struct vm *vm, uint64_t off, uint64_t v)
{
	uint8_t b[8];

	io_put(b, 8, v);
	assert_true(bus_access(&vm->mmio, HPET_BASE + off, b, 8, true));
}

static void wr32(struct vm *vm, uint64_t off, uint32_t v)
{
	uint8_t b[4];

	io_put(b, 4, v);
	assert_true(bus_access(&vm->mmio, HPET_BASE + off, b, 4, true));
}

/* Move the manual clock to @ns after the fixture started. */
static void at(struct fixture *f, uint64_t ns)
{
	evloop_advance(&f->vm.ev, f->t0 + ns);
}

static void test_caps(void **state)
{
	struct fixture *f = *state;

	/* rev 1, 3 timers, 64-bit counter, legacy route capable, vendor 8086, 10 ns period */
	assert_int_equal(rd32(&f->vm, GCAP), 0x8086A201);
	assert_int_equal(rd32(&f->vm, GCAP + 4), 10000000);
	assert_int_equal(rd64(&f->vm, GCAP) >> 32, HPET_PERIOD_FS);
	/* Timer 0: periodic capable, 64-bit, pins 20-23; timers 1, 2: not periodic capable. */
	assert_int_equal(rd64(&f->vm, TCONF(0)), 0x00F0000000000030ULL);
	assert_int_equal(rd64(&f->vm, TCONF(1)), 0x00F0000000000020ULL);
	assert_int_equal(rd64(&f->vm, TCONF(2)), 0x00F0000000000020ULL);
	/* Capabilities are read-only. */
	wr64(&f->vm, GCAP, 0);
	assert_int_equal(rd32(&f->vm, GCAP), 0x8086A201);
	/* Timer 1 cannot become periodic. */
	wr64(&f->vm, TCONF(1), PERIODIC | (1ULL << 4));
	assert_int_equal(rd64(&f->vm, TCONF(1)), 0x00F0000000000020ULL);
	/* Halted at reset; comparators all-ones. */
	assert_int_equal(rd64(&f->vm, GEN_CONF), 0);
	assert_int_equal(rd64(&f->vm, TCMP(2)), UINT64_MAX);
	/* Bytes accesses are not HPET accesses. */
	uint8_t b = 0;

	assert_true(bus_access(&f->vm.mmio, HPET_BASE, &b, 1, false));
	assert_int_equal(b, 0xff);
}

/*
 * Registers a guest probes that hold nothing: the FSB route registers, reserved offsets and
 * the space past timer 2 read 0 and keep no write; misaligned 32- and 64-bit accesses read
 * all ones and write nothing; a configuration write that leaves the HPET halted starts
 * nothing (the counter stays put), one that keeps it running does not restart it.
 */
static void test_register_corners(void **state)
{
	struct fixture *f = *state;
	static const uint64_t zero_regs[] = { 0x110, 0x130, 0x150, 0x030, 0x0E8, 0x160, 0x3F8 };
	uint8_t b[8];

	for (size_t i = 0; i < sizeof(zero_regs) / sizeof(zero_regs[0]); i++) {
		wr64(&f->vm, zero_regs[i], 0x123456789ULL);
		assert_int_equal(rd64(&f->vm, zero_regs[i]), 0);
	}
	/* Timer 0's configuration and comparator are untouched by its FSB register's write. */
	assert_int_equal(rd64(&f->vm, TCONF(0)), 0x00F0000000000030ULL);
	assert_int_equal(rd64(&f->vm, TCMP(0)), UINT64_MAX);
	memset(b, 0, sizeof(b));
	assert_true(bus_access(&f->vm.mmio, HPET_BASE + TCMP(1) + 2, b, 4, false));
	assert_int_equal(io_get(b, 4), 0xFFFFFFFF);
	assert_true(bus_access(&f->vm.mmio, HPET_BASE + TCMP(1) + 4, b, 8, false));
	assert_int_equal(io_get(b, 8), UINT64_MAX);
	io_put(b, 8, 0);
	assert_true(bus_access(&f->vm.mmio, HPET_BASE + TCMP(1) + 4, b, 8, true));
	assert_true(bus_access(&f->vm.mmio, HPET_BASE + TCMP(1) + 2, b, 4, true));
	assert_int_equal(rd64(&f->vm, TCMP(1)), UINT64_MAX);
	/* Halted to halted: legacy routing is taken, the counter does not move. */
	wr64(&f->vm, GEN_CONF, LEG_RT);
	assert_int_equal(rd64(&f->vm, GEN_CONF), LEG_RT);
	at(f, 1000000);
	assert_int_equal(rd64(&f->vm, MAIN_CNT), 0);
	/* Running to running: the counter goes on from where it was. */
	wr64(&f->vm, GEN_CONF, ENABLE);
	at(f, 2000000);
	assert_int_equal(rd64(&f->vm, MAIN_CNT), 100000);
	wr64(&f->vm, GEN_CONF, ENABLE | LEG_RT);
	at(f, 3000000);
	assert_int_equal(rd64(&f->vm, MAIN_CNT), 200000);
	assert_int_equal(rd64(&f->vm, GEN_CONF), ENABLE | LEG_RT);
}

static void test_counter(void **state)
{
	struct fixture *f = *state;

	at(f, 5000);
	assert_int_equal(rd64(&f->vm, MAIN_CNT), 0); /* halted */
	wr64(&f->vm, GEN_CONF, ENABLE);
	at(f, 6000);
	assert_int_equal(rd64(&f->vm, MAIN_CNT), 100);
	at(f, 6000 + 12345);
	assert_int_equal(rd64(&f->vm, MAIN_CNT), 1334);
	/* Writes while running are ignored. */
	wr64(&f->vm, MAIN_CNT, 7);
	assert_int_equal(rd64(&f->vm, MAIN_CNT), 1334);
	/* Halting freezes the value. */
	wr64(&f->vm, GEN_CONF, 0);
	at(f, 100000);
	assert_int_equal(rd64(&f->vm, MAIN_CNT), 1334);
	/* Writable while halted, also by 32-bit halves. */
	wr32(&f->vm, MAIN_CNT + 4, 0x12);
	wr32(&f->vm, MAIN_CNT, 0x34567890);
	assert_int_equal(rd64(&f->vm, MAIN_CNT), 0x1234567890ULL);
	assert_int_equal(rd32(&f->vm, MAIN_CNT + 4), 0x12);
	wr32(&f->vm, GEN_CONF, ENABLE);
	at(f, 100000 + 1000000);
	assert_int_equal(rd64(&f->vm, MAIN_CNT), 0x1234567890ULL + 100000);
}

static void test_oneshot_edge(void **state)
{
	struct fixture *f = *state;

	wr64(&f->vm, TCONF(2), INT_ENB | ROUTE(20));
	wr64(&f->vm, TCMP(2), 100); /* 1 us after the counter starts */
	wr64(&f->vm, GEN_CONF, ENABLE);
	at(f, 999);
	assert_int_equal(rec.rises[20], 0);
	at(f, 1000);
	assert_int_equal(rec.rises[20], 1);
	assert_int_equal(rec.level[20], 0);	      /* a pulse */
	assert_int_equal(rd64(&f->vm, GINTR_STA), 0); /* no status for edge timers */
	/* A 64-bit one-shot does not fire again. */
	at(f, 10000000);
	assert_int_equal(rec.rises[20], 1);
	/* Re-armed by a new comparator value. */
	wr64(&f->vm, TCMP(2), rd64(&f->vm, MAIN_CNT) + 50);
	at(f, 10000000 + 500);
	assert_int_equal(rec.rises[20], 2);
	/* Interrupt disabled: no interrupt at the match. */
	wr64(&f->vm, TCONF(2), ROUTE(20));
	wr64(&f->vm, TCMP(2), rd64(&f->vm, MAIN_CNT) + 50);
	at(f, 20000000);
	assert_int_equal(rec.rises[20], 2);
}

static void test_periodic_edge(void **state)
{
	struct fixture *f = *state;

	wr64(&f->vm, GEN_CONF, ENABLE);
	/* Linux's sequence: config with VAL_SET, first expiry, then the period (10 us). */
	wr64(&f->vm, TCONF(0), INT_ENB | PERIODIC | VAL_SET | ROUTE(21));
	wr64(&f->vm, TCMP(0), 1000);
	wr64(&f->vm, TCMP(0), 1000);
	assert_int_equal(rd64(&f->vm, TCONF(0)) & VAL_SET, 0);
	for (unsigned us = 1; us <= 105; us++)
		at(f, us * 1000);
	assert_int_equal(rec.rises[21], 10);
	/* The accumulator moved on: next match at 110 us = 11000 ticks. */
	assert_int_equal(rd64(&f->vm, TCMP(0)), 11000);
	/* A late loop (the clock jumps, timers run afterwards) coalesces missed periods. */
	vclock_set(&f->vm.ev, f->t0 + 1005000);
	at(f, 1005000);
	assert_int_equal(rec.rises[21], 11);
	assert_int_equal(rd64(&f->vm, TCMP(0)), 101000);
	at(f, 1010000);
	assert_int_equal(rec.rises[21], 12);
	/* A write without VAL_SET changes only the period. */
	wr64(&f->vm, TCMP(0), 500);
	assert_int_equal(rd64(&f->vm, TCMP(0)), 102000);
	at(f, 1020000);
	assert_int_equal(rec.rises[21], 13);
	at(f, 1025000);
	assert_int_equal(rec.rises[21], 14);
	assert_int_equal(rd64(&f->vm, TCMP(0)), 103000);
}

/*
 * A periodic timer enabled periods after its comparator was written (a vCPU descheduled between
 * the two writes) interrupts within a period: its accumulator moved on meanwhile, as Tn_INT_ENB
 * gates only the interrupt.  Before, the 32-bit comparator stayed behind the counter and the
 * timer was silent until the counter wrapped.
 */
static void test_periodic_enabled_late(void **state)
{
	struct fixture *f = *state;

	wr64(&f->vm, GEN_CONF, ENABLE);
	wr64(&f->vm, TCONF(0), PERIODIC | VAL_SET | MODE32 | ROUTE(21));
	wr64(&f->vm, TCMP(0), 1000);
	wr64(&f->vm, TCMP(0), 1000);
	at(f, 25000);
	assert_int_equal(rec.rises[21], 0);
	wr64(&f->vm, TCONF(0), INT_ENB | PERIODIC | MODE32 | ROUTE(21));
	assert_int_equal(rd64(&f->vm, TCMP(0)), 3000);
	at(f, 30000);
	assert_int_equal(rec.rises[21], 1);
	at(f, 40000);
	assert_int_equal(rec.rises[21], 2);
	assert_int_equal(rd64(&f->vm, TCMP(0)), 5000);
}

static void test_level_status(void **state)
{
	struct fixture *f = *state;

	wr64(&f->vm, TCONF(1), LEVEL | INT_ENB | ROUTE(22));
	wr64(&f->vm, TCONF(2), LEVEL | INT_ENB | ROUTE(22));
	wr64(&f->vm, TCMP(1), 100);
	wr64(&f->vm, TCMP(2), 200);
	wr64(&f->vm, GEN_CONF, ENABLE);
	at(f, 1000);
	assert_int_equal(rec.level[22], 1);
	assert_int_equal(rd64(&f->vm, GINTR_STA), 2);
	at(f, 2000);
	assert_int_equal(rd64(&f->vm, GINTR_STA), 6);
	assert_int_equal(rec.rises[22], 1); /* shared line, still one rise */
	/* Writing 0 clears nothing; 1 clears; the line stays up for the other timer. */
	wr64(&f->vm, GINTR_STA, 0);
	assert_int_equal(rd64(&f->vm, GINTR_STA), 6);
	wr32(&f->vm, GINTR_STA, 2);
	assert_int_equal(rd64(&f->vm, GINTR_STA), 4);
	assert_int_equal(rec.level[22], 1);
	wr32(&f->vm, GINTR_STA, 4);
	assert_int_equal(rd64(&f->vm, GINTR_STA), 0);
	assert_int_equal(rec.level[22], 0);
	/* Moving a pending level timer to another pin moves the line. */
	wr64(&f->vm, TCMP(1), rd64(&f->vm, MAIN_CNT) + 10);
	at(f, 3000);
	assert_int_equal(rec.level[22], 1);
	wr64(&f->vm, TCONF(1), LEVEL | INT_ENB | ROUTE(23));
	assert_int_equal(rec.level[22], 0);
	assert_int_equal(rec.level[23], 1);
	/* Masking the interrupt drops the line, the status stays. */
	wr64(&f->vm, TCONF(1), LEVEL | ROUTE(23));
	assert_int_equal(rec.level[23], 0);
	assert_int_equal(rd64(&f->vm, GINTR_STA), 2);
	/* Becoming edge-triggered clears the status. */
	wr64(&f->vm, TCONF(1), ROUTE(23));
	assert_int_equal(rd64(&f->vm, GINTR_STA), 0);
}

static void test_invalid_route_write(void **state)
{
	struct fixture *f = *state;

	wr64(&f->vm, TCONF(2), ROUTE(21));
	wr64(&f->vm, TCONF(2), ROUTE(5));
	assert_int_equal((rd64(&f->vm, TCONF(2)) >> 9) & 0x1f, 21);
	wr64(&f->vm, TCONF(2), ROUTE(23) | (1ULL << 14)); /* FSB: not offered */
	assert_int_equal(rd64(&f->vm, TCONF(2)) & 0xffffffcf, ROUTE(23));
}

static void test_32bit_wrap(void **state)
{
	struct fixture *f = *state;

	wr64(&f->vm, MAIN_CNT, 0xFFFFFF00ULL);
	wr64(&f->vm, TCONF(1), INT_ENB | MODE32 | ROUTE(20));
	assert_int_equal(rd64(&f->vm, TCMP(1)), 0xFFFFFFFFULL); /* truncated */
	wr64(&f->vm, TCMP(1), 0xAB00000010ULL);			/* high half dropped */
	assert_int_equal(rd64(&f->vm, TCMP(1)), 0x10);
	wr32(&f->vm, TCMP(1) + 4, 0xAB);
	assert_int_equal(rd32(&f->vm, TCMP(1) + 4), 0);
	wr64(&f->vm, GEN_CONF, ENABLE);
	/* Matches when the low half wraps to 0x10: 0x110 ticks = 2720 ns. */
	at(f, 2719);
	assert_int_equal(rec.rises[20], 0);
	at(f, 2720);
	assert_int_equal(rec.rises[20], 1);
	assert_int_equal(rd64(&f->vm, MAIN_CNT), 0x100000010ULL);
	/* A 32-bit one-shot matches again one wrap (2^32 ticks) later. */
	at(f, 2720 + (1ULL << 32) * 10 - 10);
	assert_int_equal(rec.rises[20], 1);
	at(f, 2720 + (1ULL << 32) * 10);
	assert_int_equal(rec.rises[20], 2);

	/* 32-bit periodic across the wrap. */
	wr64(&f->vm, GEN_CONF, 0);
	wr64(&f->vm, MAIN_CNT, 0xFFFFFFF0ULL);
	wr64(&f->vm, TCONF(0), INT_ENB | MODE32 | PERIODIC | VAL_SET | ROUTE(21));
	wr64(&f->vm, TCMP(0), 0xFFFFFFFA);
	wr64(&f->vm, TCMP(0), 0x20);
	uint64_t t = vclock_ns(&f->vm.ev) - f->t0;

	wr64(&f->vm, GEN_CONF, ENABLE);
	at(f, t + 100); /* 0xFFFFFFFA */
	assert_int_equal(rec.rises[21], 1);
	assert_int_equal(rd64(&f->vm, TCMP(0)), 0x1A);
	at(f, t + 100 + 320); /* 0x1A after the wrap */
	assert_int_equal(rec.rises[21], 2);
	assert_int_equal(rd64(&f->vm, TCMP(0)), 0x3A);
}

static void test_legacy_route(void **state)
{
	struct fixture *f = *state;

	wr64(&f->vm, TCONF(0), INT_ENB | ROUTE(20));
	wr64(&f->vm, TCONF(1), INT_ENB | ROUTE(21));
	wr64(&f->vm, TCONF(2), INT_ENB | ROUTE(22));
	wr64(&f->vm, TCMP(0), 10);
	wr64(&f->vm, TCMP(1), 20);
	wr64(&f->vm, TCMP(2), 30);
	wr64(&f->vm, GEN_CONF, ENABLE | LEG_RT);
	at(f, 1000);
	assert_int_equal(rec.rises[2], 1);  /* IRQ0 after the override */
	assert_int_equal(rec.rises[8], 1);  /* IRQ8 */
	assert_int_equal(rec.rises[22], 1); /* timer 2 keeps its route */
	assert_int_equal(rec.rises[20] + rec.rises[21], 0);
	/* Legacy replacement off: back to the routes. */
	wr64(&f->vm, GEN_CONF, ENABLE);
	wr64(&f->vm, TCMP(0), rd64(&f->vm, MAIN_CNT) + 10);
	at(f, 2000);
	assert_int_equal(rec.rises[20], 1);
	assert_int_equal(rec.rises[2], 1);
}

/* A fresh HPET in its own VM, whose clock reads @now. */
static struct fixture *fresh(uint64_t now)
{
	struct fixture *g = calloc(1, sizeof(*g));

	fx_init(g);
	vclock_set(&g->vm.ev, now);
	g->t0 = now;
	return g;
}

static void free_fixture(struct fixture *g)
{
	vm_destroy(&g->vm);
	free(g);
}

static void program_busy_hpet(struct fixture *f)
{
	wr64(&f->vm, TCONF(0), INT_ENB | PERIODIC | VAL_SET | ROUTE(21) | MODE32);
	wr64(&f->vm, TCMP(0), 1000);
	wr64(&f->vm, TCMP(0), 1000);
	wr64(&f->vm, TCONF(1), LEVEL | INT_ENB | ROUTE(22));
	wr64(&f->vm, TCMP(1), 300);
	wr64(&f->vm, TCONF(2), INT_ENB | ROUTE(23));
	wr64(&f->vm, TCMP(2), 100000);
	wr64(&f->vm, GEN_CONF, ENABLE);
	at(f, 5500); /* timer 1 fired (level, pending), timer 0 fired 0 times */
	assert_int_equal(rd64(&f->vm, GINTR_STA), 2);
}

static void test_snapshot_identity(void **state)
{
	struct fixture *f = *state, *g;
	uint8_t *a, *b;
	size_t alen, blen;

	program_busy_hpet(f);
	a = devsnap_save_copy(f->d, &alen);
	g = fresh(vclock_ns(&f->vm.ev));
	memset(&rec, 0, sizeof(rec));
	assert_int_equal(devsnap_load(g->d, a, alen, g->d->ops->version), 0);
	/* The level line is driven again after load. */
	assert_int_equal(rec.level[22], 1);
	b = devsnap_save_copy(g->d, &blen);
	assert_int_equal(alen, blen);
	assert_memory_equal(a, b, alen);
	free(b);

	/* Truncated at every length: refused, device unchanged. */
	for (size_t n = 0; n < alen; n++)
		assert_int_not_equal(devsnap_load(g->d, a, n, g->d->ops->version), 0);
	/* State version 0 (no khyve writes it) and a newer one. */
	devsnap_expect_refused(g->d, a, alen, 0);
	devsnap_expect_refused(g->d, a, alen, g->d->ops->version + 1);
	/* Too long: refused. */
	b = calloc(1, alen + 1);
	memcpy(b, a, alen);
	assert_int_not_equal(devsnap_load(g->d, b, alen + 1, g->d->ops->version), 0);
	free(b);
	b = devsnap_save_copy(g->d, &blen);
	assert_memory_equal(a, b, alen);
	free(b);
	free(a);
	free_fixture(g);
}

/* Build a stream by hand with one timer configuration replaced. */
static int load_with_timer_config(struct dev *d, unsigned n, uint64_t config, uint64_t cmp)
{
	struct sstream s;
	uint64_t v;
	uint32_t ntimers = HPET_NTIMERS;
	int ret;

	ss_init_save(&s);
	v = ENABLE;
	ss_u64(&s, &v);
	v = 0;
	ss_u64(&s, &v); /* isr */
	ss_u64(&s, &v); /* counter */
	ss_u32(&s, &ntimers);
	for (unsigned i = 0; i < HPET_NTIMERS; i++) {
		uint64_t c = i == n ? config : 0, k = i == n ? cmp : 0, p = 0;

		ss_u64(&s, &c);
		ss_u64(&s, &k);
		ss_u64(&s, &p);
	}
	ret = devsnap_load(d, s.buf, s.len, d->ops->version);
	ss_free(&s);
	return ret;
}

/* As load_with_timer_config, with timer @n's period and the interrupt status chosen too. */
static int load_with(struct dev *d, unsigned n, uint64_t config, uint64_t cmp, uint64_t period,
		     uint64_t isr)
{
	struct sstream s;
	uint64_t v;
	uint32_t ntimers = HPET_NTIMERS;
	int ret;

	ss_init_save(&s);
	v = ENABLE;
	ss_u64(&s, &v);
	ss_u64(&s, &isr);
	v = 0;
	ss_u64(&s, &v); /* counter */
	ss_u32(&s, &ntimers);
	for (unsigned i = 0; i < HPET_NTIMERS; i++) {
		uint64_t c = i == n ? config : 0, k = i == n ? cmp : 0, p = i == n ? period : 0;

		ss_u64(&s, &c);
		ss_u64(&s, &k);
		ss_u64(&s, &p);
	}
	ret = devsnap_load(d, s.buf, s.len, d->ops->version);
	ss_free(&s);
	return ret;
}

static int load_with_timer_config_p(struct dev *d, unsigned n, uint64_t config, uint64_t cmp,
				    uint64_t period)
{
	return load_with(d, n, config, cmp, period, 0);
}

static int load_with_isr(struct dev *d, unsigned n, uint64_t config, uint64_t isr)
{
	return load_with(d, n, config, 5, 0, isr);
}

static void test_snapshot_refuses_bad_values(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(load_with_timer_config(f->d, 2, ROUTE(23) | INT_ENB, 5), 0);
	assert_int_equal(rd64(&f->vm, TCMP(2)), 5);
	/* Pin 5 is not in INT_ROUTE_CAP. */
	assert_int_equal(load_with_timer_config(f->d, 2, ROUTE(5) | INT_ENB, 7), -EINVAL);
	/* FSB enable and periodic on timer 1: not offered. */
	assert_int_equal(load_with_timer_config(f->d, 2, 1ULL << 14, 7), -EINVAL);
	assert_int_equal(load_with_timer_config(f->d, 1, PERIODIC, 7), -EINVAL);
	/* 32-bit mode with a 64-bit comparator, or a 64-bit period. */
	assert_int_equal(load_with_timer_config(f->d, 0, MODE32, 1ULL << 40), -EINVAL);
	assert_int_equal(load_with_timer_config_p(f->d, 0, MODE32 | PERIODIC, 5, 1ULL << 33),
			 -EINVAL);
	assert_int_equal(load_with_timer_config_p(f->d, 0, MODE32 | PERIODIC, 5, 1ULL << 31), 0);
	/* Interrupt status is for level-triggered timers only, and for timers that exist. */
	assert_int_equal(load_with_isr(f->d, 2, ROUTE(23) | LEVEL, 1ULL << 2), 0);
	assert_int_equal(load_with_isr(f->d, 2, ROUTE(23), 1ULL << 2), -EINVAL);
	assert_int_equal(load_with_isr(f->d, 2, ROUTE(23) | LEVEL, 1ULL << HPET_NTIMERS), -EINVAL);
	assert_int_equal(load_with_timer_config(f->d, 2, ROUTE(23) | INT_ENB, 5), 0);
	/* Nothing of the refused loads was committed. */
	assert_int_equal(rd64(&f->vm, TCMP(2)), 5);
	assert_int_equal(rd64(&f->vm, TCONF(2)) & 0xffcf, ROUTE(23) | INT_ENB);
}

static void test_restore_other_clock(void **state)
{
	struct fixture *f = *state, *g;
	uint8_t *a;
	size_t alen;
	uint64_t cnt;

	program_busy_hpet(f);
	cnt = rd64(&f->vm, MAIN_CNT);
	assert_int_equal(cnt, 550);
	a = devsnap_save_copy(f->d, &alen);

	/* A VM whose clock is far ahead (another host, or the same one much later). */
	g = fresh(777000000000ULL);
	memset(&rec, 0, sizeof(rec));
	assert_int_equal(devsnap_load(g->d, a, alen, g->d->ops->version), 0);
	assert_int_equal(rd64(&g->vm, MAIN_CNT), 550);
	at(g, 1000);
	assert_int_equal(rd64(&g->vm, MAIN_CNT), 650);
	/* The periodic timer continues: next match at counter 1000, i.e. 4500 ns after load. */
	assert_int_equal(rec.rises[21], 0);
	at(g, 4499);
	assert_int_equal(rec.rises[21], 0);
	at(g, 4500);
	assert_int_equal(rec.rises[21], 1);
	at(g, 14500);
	assert_int_equal(rec.rises[21], 2);
	/* The one-shot timer 2 fires at counter 100000. */
	at(g, (100000 - 550) * 10);
	assert_int_equal(rec.rises[23], 1);
	free(a);
	free_fixture(g);
}

/* A match that was due when the save ran (the loop busy saving) is not lost. */
static void test_save_catches_up(void **state)
{
	struct fixture *f = *state, *g;
	uint8_t *a;
	size_t alen;

	wr64(&f->vm, TCONF(0), INT_ENB | PERIODIC | VAL_SET | ROUTE(21));
	wr64(&f->vm, TCMP(0), 100);
	wr64(&f->vm, TCMP(0), 100);
	wr64(&f->vm, GEN_CONF, ENABLE);
	/* Move the clock without running timers. */
	vclock_set(&f->vm.ev, f->t0 + 1500);
	a = devsnap_save_copy(f->d, &alen);
	assert_int_equal(rec.rises[21], 1);
	assert_int_equal(rd64(&f->vm, TCMP(0)), 200);
	g = fresh(vclock_ns(&f->vm.ev));
	assert_int_equal(devsnap_load(g->d, a, alen, g->d->ops->version), 0);
	at(g, 500);
	assert_int_equal(rec.rises[21], 2);
	free(a);
	free_fixture(g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_caps, setup, teardown),
		cmocka_unit_test_setup_teardown(test_register_corners, setup, teardown),
		cmocka_unit_test_setup_teardown(test_counter, setup, teardown),
		cmocka_unit_test_setup_teardown(test_oneshot_edge, setup, teardown),
		cmocka_unit_test_setup_teardown(test_periodic_edge, setup, teardown),
		cmocka_unit_test_setup_teardown(test_periodic_enabled_late, setup, teardown),
		cmocka_unit_test_setup_teardown(test_level_status, setup, teardown),
		cmocka_unit_test_setup_teardown(test_invalid_route_write, setup, teardown),
		cmocka_unit_test_setup_teardown(test_32bit_wrap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_legacy_route, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_identity, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_refuses_bad_values, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restore_other_clock, setup, teardown),
		cmocka_unit_test_setup_teardown(test_save_catches_up, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
