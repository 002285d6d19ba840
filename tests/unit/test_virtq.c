// SPDX-License-Identifier: BSD-2-Clause
/*
 * The split virtqueue on its own, with no PCI and no VM: a host made of a flat buffer for
 * guest memory and two counters for interrupts and broken rings (what a virtio-mmio or
 * vhost-user transport would give it).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "dev/virtio/virtq.h"

#define RAM 0x20000
#define QSZ 4
#define DESC 0x1000
#define AVAIL 0x2000
#define USED 0x3000
#define BUF 0x8000

static uint8_t ram[RAM];
static unsigned irqs, breaks;
static char last_why[128];

static void *host_gpa(void *opaque, uint64_t gpa, uint64_t len)
{
	assert_ptr_equal(opaque, ram);
	return gpa <= RAM && len <= RAM - gpa ? ram + gpa : NULL;
}

static void host_irq(void *opaque, struct virtqueue *vq)
{
	irqs++;
}

static void host_broken(void *opaque, struct virtqueue *vq, const char *why)
{
	breaks++;
	snprintf(last_why, sizeof(last_why), "%s", why);
}

static const struct vq_host host = { host_gpa, host_irq, host_broken, ram };
static uint16_t avail;

static void put16(uint64_t a, uint16_t v)
{
	memcpy(ram + a, &v, 2);
}

static uint16_t get16(uint64_t a)
{
	uint16_t v;

	memcpy(&v, ram + a, 2);
	return v;
}

/* Descriptor @d: one writable buffer of 32 bytes, made available. */
static void offer(unsigned d)
{
	uint64_t addr = BUF + 0x100 * d;
	uint32_t len = 32;
	uint16_t flags = 2, next = 0;

	memcpy(ram + DESC + 16 * d, &addr, 8);
	memcpy(ram + DESC + 16 * d + 8, &len, 4);
	memcpy(ram + DESC + 16 * d + 12, &flags, 2);
	memcpy(ram + DESC + 16 * d + 14, &next, 2);
	put16(AVAIL + 4 + 2 * (avail % QSZ), (uint16_t)d);
	put16(AVAIL + 2, ++avail);
}

static void queue_up(struct virtqueue *vq)
{
	memset(ram, 0, sizeof(ram));
	avail = 0;
	irqs = breaks = 0;
	vq->size = QSZ;
	vq->desc_gpa = DESC;
	vq->avail_gpa = AVAIL;
	vq->used_gpa = USED;
	assert_null(vq_enable(vq));
	assert_false(vq_ready(vq)); /* until the driver is ready */
	vq_start(vq, 0);
	assert_true(vq_ready(vq));
}

static void test_pop_push_notify(void **state)
{
	struct virtqueue vq;
	static struct virtio_chain c;

	assert_int_equal(vq_init(&vq, 0, 8, &host), 0);
	queue_up(&vq);
	assert_int_equal(vq_pop(&vq, &c), 0);
	offer(1);
	offer(2);
	assert_int_equal(vq_pop(&vq, &c), 1);
	assert_int_equal(c.head, 1);
	assert_int_equal(c.nwrite, 1);
	assert_ptr_equal(c.iov[0].iov_base, ram + BUF + 0x100);
	assert_int_equal(chain_write(&c, 0, "hello", 5), 5);
	vq_push(&vq, c.head, 5);
	assert_int_equal(get16(USED + 2), 1);
	vq_notify(&vq);
	assert_int_equal(irqs, 1);
	vq_notify(&vq); /* nothing new */
	assert_int_equal(irqs, 1);
	/* Given back unused, the next pop returns the same chain, and it completes. */
	assert_int_equal(vq_pop(&vq, &c), 1);
	assert_int_equal(c.head, 2);
	vq_unpop(&vq, 1);
	assert_int_equal(vq_pop(&vq, &c), 1);
	assert_int_equal(c.head, 2);
	vq_push(&vq, 2, 0);
	assert_int_equal(get16(USED + 2), 2);
	/* A head never taken (or taken twice) is not the device's to complete. */
	vq_push(&vq, 3, 0);
	vq_push(&vq, 2, 0);
	assert_int_equal(get16(USED + 2), 2);
	vq_destroy(&vq);
}

/*
 * Notification suppression: without EVENT_IDX, used->flags NO_NOTIFY off and on; with it,
 * enabling writes avail_event = the driver's avail index; a queue not live is left alone.
 * vq_unpop of nothing, or of more than was taken, changes nothing.
 */
static void test_notify_modes(void **state)
{
	static struct virtio_chain c;
	struct virtqueue vq;

	assert_int_equal(vq_init(&vq, 0, 8, &host), 0);
	queue_up(&vq);
	vq_set_notify(&vq, false);
	assert_int_equal(get16(USED), 1);
	vq_set_notify(&vq, true);
	assert_int_equal(get16(USED), 0);
	offer(1);
	assert_int_equal(vq_pop(&vq, &c), 1);
	vq_unpop(&vq, 0);
	vq_unpop(&vq, 2);
	offer(2);
	assert_int_equal(vq_pop(&vq, &c), 1);
	assert_int_equal(c.head, 2);
	vq_destroy(&vq);
	/* EVENT_IDX: the avail_event field after the used ring. */
	assert_int_equal(vq_init(&vq, 0, 8, &host), 0);
	memset(ram, 0, sizeof(ram));
	avail = 0;
	vq.size = QSZ;
	vq.desc_gpa = DESC;
	vq.avail_gpa = AVAIL;
	vq.used_gpa = USED;
	/* Not live yet: nothing is written. */
	put16(USED, 0x55);
	vq_set_notify(&vq, false);
	assert_int_equal(get16(USED), 0x55);
	put16(USED, 0);
	assert_null(vq_enable(&vq));
	vq_start(&vq, VQ_F_EVENT_IDX);
	offer(1);
	offer(2);
	offer(3);
	vq_set_notify(&vq, true);
	assert_int_equal(get16(USED + 4 + 8 * QSZ), 3);
	assert_int_equal(get16(USED), 0);
	vq_destroy(&vq);
}

static void test_generations(void **state)
{
	struct virtqueue vq;
	static struct virtio_chain c;

	assert_int_equal(vq_init(&vq, 0, 8, &host), 0);
	queue_up(&vq);
	offer(0);
	assert_int_equal(vq_pop(&vq, &c), 1);
	vq_reset(&vq);
	assert_false(vq_ready(&vq));
	queue_up(&vq);
	offer(0);
	vq_push(&vq, 0, 7); /* the old chain's completion, late */
	assert_int_equal(get16(USED + 2), 0);
	assert_int_equal(vq_pop(&vq, &c), 1);
	vq_push(&vq, 0, 7);
	assert_int_equal(get16(USED + 2), 1);
	vq_destroy(&vq);
}

static void test_broken(void **state)
{
	struct virtqueue vq, back;
	static struct virtio_chain c;
	struct vq_saved s, s2;

	assert_int_equal(vq_init(&vq, 0, 8, &host), 0);
	queue_up(&vq);
	offer(0);
	offer(0); /* the same head again, while it is in flight */
	assert_int_equal(vq_pop(&vq, &c), 1);
	assert_int_equal(vq_pop(&vq, &c), -EINVAL);
	assert_int_equal(breaks, 1);
	assert_non_null(strstr(last_why, "again"));
	assert_false(vq_ready(&vq));
	/* The chain in flight is abandoned: the queue saves and loads as it is. */
	vq_save(&vq, &s);
	assert_true(s.broken);
	assert_int_equal(s.last_avail - s.used_idx, 1);
	assert_int_equal(vq_in_flight(&s), 0);
	assert_null(vq_saved_check(&host, 8, &s));
	assert_int_equal(vq_init(&back, 0, 8, &host), 0);
	vq_load(&back, &s);
	vq_start(&back, 0);
	assert_false(vq_ready(&back));
	vq_save(&back, &s2);
	assert_true(s2.size == s.size && s2.last_avail == s.last_avail &&
		    s2.used_idx == s.used_idx && s2.signalled_used == s.signalled_used &&
		    s2.enabled == s.enabled && s2.signalled_valid == s.signalled_valid &&
		    s2.broken == s.broken && s2.desc_gpa == s.desc_gpa &&
		    s2.avail_gpa == s.avail_gpa && s2.used_gpa == s.used_gpa);
	/* What no queue can be in. */
	s.broken = false;
	s.last_avail = 9;
	assert_non_null(vq_saved_check(&host, 8, &s));
	s.last_avail = 1;
	assert_null(vq_saved_check(&host, 8, &s));
	assert_int_equal(vq_in_flight(&s), 1);
	s.used_gpa = RAM - 8;
	assert_non_null(strstr(vq_saved_check(&host, 8, &s), "outside"));
	s.used_gpa = USED;
	s.size = 16;
	assert_non_null(vq_saved_check(&host, 8, &s));
	vq_destroy(&vq);
	vq_destroy(&back);
}

/* ---- the chain walker: what a hostile driver can put in the descriptor table ---- */

#define TABLE 0x10000

static void desc_put(uint64_t at, unsigned i, uint64_t addr, uint32_t len, uint16_t flags,
		     uint16_t next)
{
	memcpy(ram + at + 16 * i, &addr, 8);
	memcpy(ram + at + 16 * i + 8, &len, 4);
	memcpy(ram + at + 16 * i + 12, &flags, 2);
	memcpy(ram + at + 16 * i + 14, &next, 2);
}

static void make_available(uint16_t head)
{
	put16(AVAIL + 4 + 2 * (avail % QSZ), head);
	put16(AVAIL + 2, ++avail);
}

/* Pop the chain at @head: 1, or the queue breaks naming @why. */
static int pop_head(struct virtqueue *vq, uint16_t head, struct virtio_chain *c, const char *why)
{
	int ret;

	make_available(head);
	ret = vq_pop(vq, c);
	if (why) {
		assert_int_equal(ret, -EINVAL);
		assert_int_equal(breaks, 1);
		if (!strstr(last_why, why))
			fail_msg("broke with \"%s\", expected \"%s\"", last_why, why);
		assert_false(vq_ready(vq));
	} else {
		assert_int_equal(ret, 1);
		assert_int_equal(breaks, 0);
	}
	return ret;
}

/* An indirect table of @n one-byte readable buffers at TABLE, chained from entry 0. */
static void indirect_table(unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		desc_put(TABLE, i, BUF, 1, i + 1 < n ? 1 : 0, (uint16_t)(i + 1));
}

/* VIRTIO_MAX_IOV buffers fill the iovec array exactly; one more is refused, not written. */
static void test_walk_iov_bound(void **state)
{
	struct virtqueue vq;
	static struct virtio_chain c;

	assert_int_equal(vq_init(&vq, 0, 8, &host), 0);
	queue_up(&vq);
	vq_start(&vq, VQ_F_INDIRECT);
	indirect_table(VIRTIO_MAX_IOV);
	desc_put(DESC, 0, TABLE, 16 * VIRTIO_MAX_IOV, 4, 0);
	pop_head(&vq, 0, &c, NULL);
	assert_int_equal(c.nread, VIRTIO_MAX_IOV);
	assert_int_equal(c.read_len, VIRTIO_MAX_IOV);
	assert_ptr_equal(c.iov[VIRTIO_MAX_IOV - 1].iov_base, ram + BUF);
	vq_push(&vq, 0, 0);
	/* One direct buffer, then the full table: VIRTIO_MAX_IOV + 1 in all. */
	desc_put(DESC, 1, BUF, 8, 1, 2);
	desc_put(DESC, 2, TABLE, 16 * VIRTIO_MAX_IOV, 4, 0);
	pop_head(&vq, 1, &c, "too many buffers");
	vq_destroy(&vq);
}

static void test_walk_loops(void **state)
{
	struct virtqueue vq;
	static struct virtio_chain c;

	/* A cycle of empty buffers (they add nothing to the iovec, so only the count ends it). */
	assert_int_equal(vq_init(&vq, 0, 8, &host), 0);
	queue_up(&vq);
	desc_put(DESC, 0, BUF, 0, 1, 1);
	desc_put(DESC, 1, BUF, 0, 1, 0);
	pop_head(&vq, 0, &c, "longer than the queue");
	vq_destroy(&vq);
	/* The same inside an indirect table. */
	assert_int_equal(vq_init(&vq, 0, 8, &host), 0);
	queue_up(&vq);
	vq_start(&vq, VQ_F_INDIRECT);
	desc_put(TABLE, 0, BUF, 0, 1, 1);
	desc_put(TABLE, 1, BUF, 0, 1, 2);
	desc_put(TABLE, 2, BUF, 0, 1, 0);
	desc_put(DESC, 0, TABLE, 48, 4, 0);
	pop_head(&vq, 0, &c, "indirect chain loops");
	vq_destroy(&vq);
	/* A next index past the table. */
	assert_int_equal(vq_init(&vq, 0, 8, &host), 0);
	queue_up(&vq);
	vq_start(&vq, VQ_F_INDIRECT);
	desc_put(TABLE, 0, BUF, 4, 1, 3);
	desc_put(DESC, 0, TABLE, 48, 4, 0);
	pop_head(&vq, 0, &c, "indirect descriptor index out of range");
	vq_destroy(&vq);
}

/* Tables that the spec forbids and the ring indices a driver cannot produce. */
static void test_walk_refused(void **state)
{
	static const struct {
		uint32_t table_len;
		uint16_t flags0, features;
		const char *why;
	} cases[] = {
		{ 32, 4, VQ_F_INDIRECT, NULL },
		{ 32, 4, 0, "without VIRTIO_F_INDIRECT_DESC" },
		{ 32, 4 | 1, VQ_F_INDIRECT, "NEXT set" },
		{ 24, 4, VQ_F_INDIRECT, "multiple of 16" },
		{ 0, 4, VQ_F_INDIRECT, "multiple of 16" },
		{ 16 * (VIRTIO_MAX_IOV + 1), 4, VQ_F_INDIRECT, "indirect table too long" },
	};
	struct virtqueue vq;
	static struct virtio_chain c;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(vq_init(&vq, 0, 8, &host), 0);
		queue_up(&vq);
		vq_start(&vq, cases[i].features);
		indirect_table(2);
		desc_put(DESC, 0, TABLE, cases[i].table_len, cases[i].flags0, 1);
		pop_head(&vq, 0, &c, cases[i].why);
		vq_destroy(&vq);
	}
	/* An indirect table naming another. */
	assert_int_equal(vq_init(&vq, 0, 8, &host), 0);
	queue_up(&vq);
	vq_start(&vq, VQ_F_INDIRECT);
	desc_put(TABLE, 0, TABLE + 0x100, 16, 4, 0);
	desc_put(DESC, 0, TABLE, 16, 4, 0);
	pop_head(&vq, 0, &c, "nested indirect");
	vq_destroy(&vq);
	/* A buffer outside guest RAM, a readable one after a writable one. */
	assert_int_equal(vq_init(&vq, 0, 8, &host), 0);
	queue_up(&vq);
	desc_put(DESC, 0, RAM - 4, 8, 0, 0);
	pop_head(&vq, 0, &c, "outside guest RAM");
	vq_destroy(&vq);
	assert_int_equal(vq_init(&vq, 0, 8, &host), 0);
	queue_up(&vq);
	desc_put(DESC, 0, BUF, 8, 2 | 1, 1);
	desc_put(DESC, 1, BUF, 8, 0, 0);
	pop_head(&vq, 0, &c, "readable buffer after a writable one");
	vq_destroy(&vq);
	/* A head past the queue, and an available index more than a queue ahead. */
	assert_int_equal(vq_init(&vq, 0, 8, &host), 0);
	queue_up(&vq);
	pop_head(&vq, QSZ, &c, "descriptor index out of range");
	vq_destroy(&vq);
	assert_int_equal(vq_init(&vq, 0, 8, &host), 0);
	queue_up(&vq);
	desc_put(DESC, 0, BUF, 8, 2, 0);
	put16(AVAIL + 2, QSZ + 1);
	assert_int_equal(vq_pop(&vq, &c), -EINVAL);
	assert_non_null(strstr(last_why, "more than the queue size"));
	vq_destroy(&vq);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pop_push_notify), cmocka_unit_test(test_generations),
		cmocka_unit_test(test_broken),		cmocka_unit_test(test_walk_iov_bound),
		cmocka_unit_test(test_walk_loops),	cmocka_unit_test(test_walk_refused),
		cmocka_unit_test(test_notify_modes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
