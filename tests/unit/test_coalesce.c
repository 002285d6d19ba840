// SPDX-License-Identifier: BSD-2-Clause
/*
 * Coalesced MMIO (bus.h): splitting a range into zones around its holes, and draining a ring
 * laid out as KVM's into the bus's handlers: in order, across the ring's end, with indices
 * and entries that no handler may see refused (out of range, wrong size, port I/O, outside
 * every zone, past the end of the address space), a handler that drains again, zones removed
 * with writes still buffered for them, two threads draining while a third fills the ring as
 * KVM would, and the VM's tick that drains a guest making no exits.  No KVM is needed: the
 * ring is memory of the test's own, attached without a VM fd.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "bus.h"
#include "vm.h"

#define BASE 0x10000ULL
#define LEN 0x1000ULL

/* ---- a ring as KVM keeps it ---- */

struct fake_ring {
	struct kvm_coalesced_mmio_ring *r;
	unsigned max;
};

static void ring_new(struct fake_ring *f, unsigned max)
{
	f->max = max;
	f->r = calloc(1, sizeof(*f->r) + max * sizeof(f->r->coalesced_mmio[0]));
	assert_non_null(f->r);
}

/* What KVM does for a write in a zone: false when the ring is full (the write would exit). */
static bool ring_push_raw(struct fake_ring *f, uint64_t addr, uint32_t len, uint32_t pio,
			  uint64_t val)
{
	uint32_t last = __atomic_load_n(&f->r->last, __ATOMIC_RELAXED);
	struct kvm_coalesced_mmio *e;

	if ((last + 1) % f->max == __atomic_load_n(&f->r->first, __ATOMIC_ACQUIRE))
		return false;
	e = &f->r->coalesced_mmio[last];
	e->phys_addr = addr;
	e->len = len;
	e->pio = pio;
	memcpy(e->data, &val, 8);
	__atomic_store_n(&f->r->last, (last + 1) % f->max, __ATOMIC_RELEASE);
	return true;
}

static void ring_push(struct fake_ring *f, uint64_t addr, uint32_t len, uint64_t val)
{
	assert_true(ring_push_raw(f, addr, len, 0, val));
}

/* ---- a device that records its writes ---- */

#define REC_MAX 4096

struct rec {
	uint64_t off[REC_MAX], val[REC_MAX];
	unsigned size[REC_MAX];
	unsigned n;
	struct bus *bus; /* set: drain again from the handler */
	unsigned nested_seen;
};

static void rec_io(void *opaque, uint64_t off, void *data, unsigned size, bool wr)
{
	struct rec *r = opaque;

	if (!wr) {
		memset(data, 0, size);
		return;
	}
	assert_true(r->n < REC_MAX);
	r->off[r->n] = off;
	r->val[r->n] = io_get(data, size);
	r->size[r->n] = size;
	r->n++;
	if (r->bus) {
		unsigned before = r->n;

		/* Nested: must return without handing out anything (not this entry again). */
		bus_coalesce_drain(r->bus);
		r->nested_seen += r->n - before;
	}
}

struct fx {
	struct bus bus;
	struct fake_ring ring;
	struct rec *rec;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	f->rec = calloc(1, sizeof(*f->rec));
	bus_init(&f->bus);
	ring_new(&f->ring, 170); /* a 4 KiB page's worth, as KVM's */
	assert_int_equal(bus_register(&f->bus, BASE, LEN, rec_io, f->rec), 0);
	assert_int_equal(bus_coalesce_attach(&f->bus, -1, f->ring.r, f->ring.max), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	bus_coalesce_detach(&f->bus);
	bus_destroy(&f->bus);
	free(f->ring.r);
	free(f->rec);
	free(f);
	return 0;
}

static struct bus_coalesce_stats stats(struct fx *f)
{
	struct bus_coalesce_stats s;

	bus_coalesce_get_stats(&f->bus, &s);
	return s;
}

/* ---- zones ---- */

static void expect_zones(uint64_t len, const struct bus_zone *holes, unsigned nholes,
			 const struct bus_zone *want, unsigned nwant)
{
	struct bus_zone out[16];
	unsigned n = bus_zones_split(len, holes, nholes, out, 16);

	assert_int_equal(n, nwant);
	for (unsigned i = 0; i < n; i++) {
		assert_int_equal(out[i].base, want[i].base);
		assert_int_equal(out[i].len, want[i].len);
	}
}

static void test_zones_split(void **state)
{
	struct bus_zone out[2];

	(void)state;
	/* No holes: one zone, the whole range. */
	expect_zones(0x100, NULL, 0, (struct bus_zone[]){ { 0, 0x100 } }, 1);
	/* Holes given out of order, at the start, in the middle, at the end. */
	expect_zones(0x100, (struct bus_zone[]){ { 0xF0, 0x10 }, { 0, 8 }, { 0x40, 4 } }, 3,
		     (struct bus_zone[]){ { 8, 0x38 }, { 0x44, 0xAC } }, 2);
	/* Overlapping and nested holes merge; an empty hole is no hole. */
	expect_zones(0x100,
		     (struct bus_zone[]){
			     { 0x10, 0x10 }, { 0x18, 0x18 }, { 0x12, 2 }, { 0x80, 0 } },
		     4, (struct bus_zone[]){ { 0, 0x10 }, { 0x30, 0xD0 } }, 2);
	/* Adjacent holes leave no zone of length 0 between them. */
	expect_zones(0x20, (struct bus_zone[]){ { 0, 8 }, { 8, 8 } }, 2,
		     (struct bus_zone[]){ { 0x10, 0x10 } }, 1);
	/* A hole reaching past the end, one wholly beyond it, one up to 2^64. */
	expect_zones(0x100, (struct bus_zone[]){ { 0xC0, 0x1000 }, { 0x200, 8 } }, 2,
		     (struct bus_zone[]){ { 0, 0xC0 } }, 1);
	expect_zones(0x100, (struct bus_zone[]){ { 0x80, UINT64_MAX } }, 1,
		     (struct bus_zone[]){ { 0, 0x80 } }, 1);
	/* Holes covering everything: no zone. */
	expect_zones(0x100, (struct bus_zone[]){ { 0, 0x80 }, { 0x80, 0x80 } }, 2, NULL, 0);
	/* More zones than room: the count says so, only @max are written. */
	assert_int_equal(
		bus_zones_split(0x100, (struct bus_zone[]){ { 0x10, 1 }, { 0x20, 1 }, { 0x30, 1 } },
				3, out, 2),
		4);
	assert_int_equal(out[1].base, 0x11);
	assert_int_equal(out[1].len, 0xF);
}

static void test_zone_add_del(void **state)
{
	struct fx *f = *state;
	struct bus other;

	assert_int_equal(bus_coalesce_add(&f->bus, BASE, 0), -EINVAL);
	assert_int_equal(bus_coalesce_add(&f->bus, UINT64_MAX - 4, 8), -EINVAL);
	assert_int_equal(bus_coalesce_add(&f->bus, BASE, 1ULL << 32), -EINVAL);
	assert_int_equal(bus_coalesce_add(&f->bus, BASE, 0x100), 0);
	assert_int_equal(bus_coalesce_add(&f->bus, BASE + 0x200, 0x100), 0);
	assert_int_equal(stats(f).zones, 2);
	/* Only the zone given exactly is removed. */
	bus_coalesce_del(&f->bus, BASE, 0x80);
	assert_int_equal(stats(f).zones, 2);
	bus_coalesce_del(&f->bus, BASE, 0x100);
	assert_int_equal(stats(f).zones, 1);
	/* Without a ring nothing is buffered, so no zone may be registered. */
	bus_init(&other);
	assert_int_equal(bus_coalesce_add(&other, BASE, 0x100), -ENODEV);
	bus_coalesce_drain(&other);
	bus_destroy(&other);
}

/* ---- draining ---- */

static void test_drain_in_order(void **state)
{
	struct fx *f = *state;

	assert_int_equal(bus_coalesce_add(&f->bus, BASE, LEN), 0);
	bus_coalesce_drain(&f->bus); /* empty: nothing */
	assert_int_equal(f->rec->n, 0);
	assert_int_equal(stats(f).drains, 0);
	ring_push(&f->ring, BASE + 0x10, 4, 0xAABBCCDD);
	ring_push(&f->ring, BASE + 0x10, 4, 0x11223344); /* same register again: both, in order */
	ring_push(&f->ring, BASE + 0x20, 1, 0x5A);
	ring_push(&f->ring, BASE + 0x22, 2, 0xBEEF);
	ring_push(&f->ring, BASE + 0x28, 8, 0x0102030405060708ULL);
	assert_int_equal(f->rec->n, 0); /* buffered: the device has seen nothing yet */
	bus_coalesce_drain(&f->bus);
	assert_int_equal(f->rec->n, 5);
	assert_int_equal(f->rec->off[0], 0x10);
	assert_int_equal(f->rec->val[0], 0xAABBCCDD);
	assert_int_equal(f->rec->val[1], 0x11223344);
	assert_int_equal(f->rec->off[2], 0x20);
	assert_int_equal(f->rec->size[2], 1);
	assert_int_equal(f->rec->val[2], 0x5A);
	assert_int_equal(f->rec->size[3], 2);
	assert_int_equal(f->rec->val[3], 0xBEEF);
	assert_int_equal(f->rec->size[4], 8);
	assert_int_equal(f->rec->val[4], 0x0102030405060708ULL);
	/* The ring is given back: first caught up with last. */
	assert_int_equal(f->ring.r->first, f->ring.r->last);
	assert_int_equal(stats(f).writes, 5);
	assert_int_equal(stats(f).drains, 1);
	assert_int_equal(stats(f).dropped, 0);
	/* The handler's counts include them, as for writes that exit. */
	bus_coalesce_drain(&f->bus);
	assert_int_equal(f->rec->n, 5);
}

static void test_drain_wraps(void **state)
{
	struct fx *f = *state;
	unsigned total = 0;

	free(f->ring.r);
	ring_new(&f->ring, 8);
	assert_int_equal(bus_coalesce_attach(&f->bus, -1, f->ring.r, f->ring.max), 0);
	assert_int_equal(bus_coalesce_add(&f->bus, BASE, LEN), 0);
	/* Start near the end, as a ring that has been going for a while. */
	f->ring.r->first = f->ring.r->last = 5;
	for (unsigned round = 0; round < 5; round++) {
		unsigned pushed = 0;

		/* Fill it: one slot always stays free, as in KVM. */
		while (ring_push_raw(&f->ring, BASE + 4 * (total + pushed), 4, 0, total + pushed))
			pushed++;
		assert_int_equal(pushed, 7);
		bus_coalesce_drain(&f->bus);
		total += pushed;
		assert_int_equal(f->rec->n, total);
	}
	for (unsigned i = 0; i < total; i++) {
		assert_int_equal(f->rec->val[i], i);
		assert_int_equal(f->rec->off[i], 4 * i);
	}
}

static void test_drain_refuses_bad_entries(void **state)
{
	struct fx *f = *state;

	assert_int_equal(bus_coalesce_add(&f->bus, BASE + 0x100, 0x100), 0);
	ring_push(&f->ring, BASE + 0x100, 4, 1);		     /* good */
	ring_push(&f->ring, BASE + 0x100, 0, 2);		     /* no size */
	ring_push(&f->ring, BASE + 0x100, 3, 3);		     /* not a power of two */
	ring_push(&f->ring, BASE + 0x100, 16, 4);		     /* more than 8 bytes */
	assert_true(ring_push_raw(&f->ring, BASE + 0x100, 4, 1, 5)); /* port I/O */
	ring_push(&f->ring, BASE + 0x80, 4, 6);	   /* before the zone (the range's) */
	ring_push(&f->ring, BASE + 0x1FC, 8, 7);   /* straddles its end */
	ring_push(&f->ring, BASE + 0x200, 4, 8);   /* just past it */
	ring_push(&f->ring, UINT64_MAX - 3, 8, 9); /* wraps the address space */
	ring_push(&f->ring, BASE + 0x1FC, 4, 10);  /* good: the last dword */
	bus_coalesce_drain(&f->bus);
	assert_int_equal(f->rec->n, 2);
	assert_int_equal(f->rec->val[0], 1);
	assert_int_equal(f->rec->val[1], 10);
	assert_int_equal(f->rec->off[1], 0x1FC);
	assert_int_equal(stats(f).dropped, 8);
	assert_int_equal(stats(f).writes, 2);
	assert_int_equal(f->ring.r->first, f->ring.r->last);
}

static void test_drain_refuses_bad_indices(void **state)
{
	struct fx *f = *state;

	assert_int_equal(bus_coalesce_add(&f->bus, BASE, LEN), 0);
	/* last out of range: KVM buffers nothing then; nothing is read, the ring is left. */
	f->ring.r->first = 0;
	f->ring.r->last = f->ring.max;
	bus_coalesce_drain(&f->bus);
	assert_int_equal(f->rec->n, 0);
	assert_int_equal(f->ring.r->first, 0);
	assert_int_equal(stats(f).dropped, 1);
	/* first out of range: what lies "between" has no order; start again at last. */
	f->ring.r->first = 0xFFFFFFFFU;
	f->ring.r->last = 3;
	bus_coalesce_drain(&f->bus);
	assert_int_equal(f->rec->n, 0);
	assert_int_equal(f->ring.r->first, 3);
	assert_int_equal(stats(f).dropped, 2);
	/* And it works on from there. */
	ring_push(&f->ring, BASE + 8, 4, 42);
	bus_coalesce_drain(&f->bus);
	assert_int_equal(f->rec->n, 1);
	assert_int_equal(f->rec->val[0], 42);
}

static void test_drain_nested(void **state)
{
	struct fx *f = *state;

	assert_int_equal(bus_coalesce_add(&f->bus, BASE, LEN), 0);
	f->rec->bus = &f->bus;
	ring_push(&f->ring, BASE, 4, 1);
	ring_push(&f->ring, BASE + 4, 4, 2);
	ring_push(&f->ring, BASE + 8, 4, 3);
	bus_coalesce_drain(&f->bus);
	/* Each once, in order; the handler's own drains handed out nothing. */
	assert_int_equal(f->rec->n, 3);
	assert_int_equal(f->rec->nested_seen, 0);
	for (unsigned i = 0; i < 3; i++)
		assert_int_equal(f->rec->val[i], i + 1);
	f->rec->bus = NULL;
}

static void test_zone_removed_with_writes_buffered(void **state)
{
	struct fx *f = *state;

	assert_int_equal(bus_coalesce_add(&f->bus, BASE, 0x100), 0);
	assert_int_equal(bus_coalesce_add(&f->bus, BASE + 0x100, 0x100), 0);
	ring_push(&f->ring, BASE + 0x10, 4, 1);
	ring_push(&f->ring, BASE + 0x110, 4, 2);
	/* The first zone goes (its BAR moved): its write is dropped, the other one lands. */
	bus_coalesce_del(&f->bus, BASE, 0x100);
	bus_coalesce_drain(&f->bus);
	assert_int_equal(f->rec->n, 1);
	assert_int_equal(f->rec->off[0], 0x110);
	assert_int_equal(stats(f).dropped, 1);
}

static void test_detach_drains(void **state)
{
	struct fx *f = *state;

	assert_int_equal(bus_coalesce_add(&f->bus, BASE, LEN), 0);
	ring_push(&f->ring, BASE, 4, 7);
	bus_coalesce_detach(&f->bus);
	assert_int_equal(f->rec->n, 1);
	assert_int_equal(stats(f).zones, 0);
	/* Gone: what KVM might still put there is never read, and no zone can be added. */
	ring_push(&f->ring, BASE, 4, 8);
	bus_coalesce_drain(&f->bus);
	assert_int_equal(f->rec->n, 1);
	assert_int_equal(bus_coalesce_add(&f->bus, BASE, LEN), -ENODEV);
}

/* ---- threads: one producer as KVM, two drainers as vCPUs and a backend ---- */

#define RACE_WRITES 20000

struct race {
	struct fake_ring *ring;
	struct bus *bus;
	bool done;
	uint64_t next; /* the value the next write must carry */
	unsigned bad;
};

/* Called under the bus's coalesce lock, so no lock of its own. */
static void race_io(void *opaque, uint64_t off, void *data, unsigned size, bool wr)
{
	struct race *r = opaque;
	uint64_t v = io_get(data, size);

	if (!wr)
		return;
	if (v != r->next || off != 8 * (v % 64))
		r->bad++;
	r->next = v + 1;
}

static void *race_producer(void *arg)
{
	struct race *r = arg;

	for (uint64_t i = 0; i < RACE_WRITES;)
		if (ring_push_raw(r->ring, BASE + 8 * (i % 64), 8, 0, i))
			i++;
	__atomic_store_n(&r->done, true, __ATOMIC_RELEASE);
	return NULL;
}

static void *race_drainer(void *arg)
{
	struct race *r = arg;

	while (!__atomic_load_n(&r->done, __ATOMIC_ACQUIRE))
		bus_coalesce_drain(r->bus);
	bus_coalesce_drain(r->bus);
	return NULL;
}

static void test_drain_threads(void **state)
{
	struct fx *f = *state;
	struct race r = { .ring = &f->ring, .bus = &f->bus };
	pthread_t p, d1, d2;

	assert_int_equal(bus_unregister(&f->bus, BASE), 0);
	assert_int_equal(bus_register(&f->bus, BASE, LEN, race_io, &r), 0);
	assert_int_equal(bus_coalesce_add(&f->bus, BASE, LEN), 0);
	assert_int_equal(pthread_create(&d1, NULL, race_drainer, &r), 0);
	assert_int_equal(pthread_create(&d2, NULL, race_drainer, &r), 0);
	assert_int_equal(pthread_create(&p, NULL, race_producer, &r), 0);
	pthread_join(p, NULL);
	pthread_join(d1, NULL);
	pthread_join(d2, NULL);
	/* Every write once, in the order it was made, whichever thread handed it over. */
	assert_int_equal(r.next, RACE_WRITES);
	assert_int_equal(r.bad, 0);
	assert_int_equal(stats(f).writes, RACE_WRITES);
	assert_int_equal(stats(f).dropped, 0);
}

/* ---- the VM's tick ---- */

static void test_vm_tick(void **state)
{
	struct vm vm;
	struct fake_ring ring;
	struct rec *rec = calloc(1, sizeof(*rec));

	(void)state;
	vm_init_bare(&vm, true);
	ring_new(&ring, 170);
	assert_int_equal(bus_register(&vm.mmio, BASE, LEN, rec_io, rec), 0);
	assert_int_equal(vm_coalesce_attach(&vm, ring.r, ring.max), 0);
	assert_int_equal(bus_coalesce_add(&vm.mmio, BASE, LEN), 0);
	ring_push(&ring, BASE + 4, 4, 99);
	/* A guest that makes no exit: the write lands within one tick, not before. */
	evloop_advance(&vm.ev, vclock_ns(&vm.ev) + VM_COALESCE_TICK_NS / 2);
	assert_int_equal(rec->n, 0);
	evloop_advance(&vm.ev, vclock_ns(&vm.ev) + VM_COALESCE_TICK_NS / 2);
	assert_int_equal(rec->n, 1);
	assert_int_equal(rec->val[0], 99);
	/* And again at the next one: the tick re-arms itself. */
	ring_push(&ring, BASE + 8, 4, 100);
	evloop_advance(&vm.ev, vclock_ns(&vm.ev) + VM_COALESCE_TICK_NS);
	assert_int_equal(rec->n, 2);
	/* vm_destroy hands over the last writes before the devices go. */
	ring_push(&ring, BASE + 12, 4, 101);
	vm_destroy(&vm);
	assert_int_equal(rec->n, 3);
	free(ring.r);
	free(rec);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_zones_split),
		cmocka_unit_test_setup_teardown(test_zone_add_del, setup, teardown),
		cmocka_unit_test_setup_teardown(test_drain_in_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_drain_wraps, setup, teardown),
		cmocka_unit_test_setup_teardown(test_drain_refuses_bad_entries, setup, teardown),
		cmocka_unit_test_setup_teardown(test_drain_refuses_bad_indices, setup, teardown),
		cmocka_unit_test_setup_teardown(test_drain_nested, setup, teardown),
		cmocka_unit_test_setup_teardown(test_zone_removed_with_writes_buffered, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_detach_drains, setup, teardown),
		cmocka_unit_test_setup_teardown(test_drain_threads, setup, teardown),
		cmocka_unit_test(test_vm_tick),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
