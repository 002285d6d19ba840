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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pop_push_notify),
		cmocka_unit_test(test_generations),
		cmocka_unit_test(test_broken),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
