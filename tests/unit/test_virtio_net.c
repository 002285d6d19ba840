// SPDX-License-Identifier: BSD-2-Clause
/*
 * virtio-net as a guest driver sees it: features and config space, transmit, receive with and
 * without mergeable buffers, the bounded receive queue, the control queue, pause, snapshot
 * (save -> load -> save identity, announce after restore, refused streams), options; a
 * loopback backend registered through the net_backend interface stands in for the network.
 * Two tests run the real slirp backend on loopback only: an ARP exchange with 10.0.2.2 and a
 * hostfwd connection that reaches the guest as a TCP SYN.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "backend/net_backend.h"
#include "dev/pci/pci.h"
#include "dev/virtio/virtio.h"
#include "sstream.h"
#include "vm.h"

#define SLOT 3
#define RAM_SIZE (32 * MiB)
#define RING_BASE 0x100000ULL /* queue i: RING_BASE + i * 0x10000 */
#define BUF_BASE 0x400000ULL  /* data buffers, BUF_SIZE each */
#define BUF_SIZE 0x11000ULL   /* 68 KiB: a whole frame plus header fits */
#define NBUFS 256

#define F_MTU (1ULL << 3)
#define F_MAC (1ULL << 5)
#define F_MRG (1ULL << 15)
#define F_STATUS (1ULL << 16)
#define F_CTRL_VQ (1ULL << 17)
#define F_ANNOUNCE (1ULL << 21)
#define F_VERSION_1 (1ULL << 32)
#define F_ALL (F_MTU | F_MAC | F_MRG | F_STATUS | F_CTRL_VQ | F_ANNOUNCE | F_VERSION_1)

#define S_LINK_UP 1
#define S_ANNOUNCE 2
#define HDR 12

#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2

/* ---- a loopback backend: records what the device sends, injects what it receives ---- */

#define LOOP_MAX 64

static struct net_backend *loop_nb;
static uint8_t *loop_sent[LOOP_MAX];
static size_t loop_sent_len[LOOP_MAX];
static unsigned loop_nsent;

static int loop_open(struct net_backend *nb, const struct net_backend_args *a, char *err,
		     size_t errlen)
{
	loop_nb = nb;
	return 0;
}

static int loop_send(struct net_backend *nb, const void *frame, size_t len)
{
	if (loop_nsent == LOOP_MAX)
		return -ENOBUFS;
	loop_sent[loop_nsent] = malloc(len ? len : 1);
	memcpy(loop_sent[loop_nsent], frame, len);
	loop_sent_len[loop_nsent++] = len;
	return 0;
}

static void loop_close(struct net_backend *nb)
{
	if (loop_nb == nb)
		loop_nb = NULL;
}

static const struct net_backend_type loop_type = {
	.name = "loop",
	.usage = "loop",
	.open = loop_open,
	.send = loop_send,
	.close = loop_close,
};

static void loop_reset(void)
{
	for (unsigned i = 0; i < loop_nsent; i++)
		free(loop_sent[i]);
	loop_nsent = 0;
}

static void loop_inject(const void *frame, size_t len)
{
	assert_non_null(loop_nb);
	loop_nb->rx(loop_nb->opaque, frame, len);
}

/* ---- interrupt recorder ---- */

static int irq_level[32];
static unsigned irq_raised[32];

static void rec_irq(struct vm *vm, unsigned gsi, int level)
{
	if (gsi >= 32)
		return;
	if (level && !irq_level[gsi])
		__atomic_add_fetch(&irq_raised[gsi], 1, __ATOMIC_SEQ_CST);
	irq_level[gsi] = level;
}

/* ---- the guest's side: a small virtio-pci driver ---- */

struct gq {
	uint16_t size, avail_idx, used_seen, next_desc, notify_off;
	uint64_t desc, avail, used;
};

struct fx {
	struct vm vm;
	struct config cfg;
	struct pci_dev *pd;
	uint64_t common, notify, isr, devcfg;
	uint32_t notify_mult;
	uint64_t features;
	struct gq q[3];
	unsigned next_buf;
};

static uint64_t mmio_rd(struct fx *f, uint64_t addr, unsigned size)
{
	uint8_t b[8] = { 0 };

	bus_access(&f->vm.mmio, addr, b, size, false);
	return io_get(b, size);
}

static void mmio_wr(struct fx *f, uint64_t addr, unsigned size, uint64_t v)
{
	uint8_t b[8];

	io_put(b, size, v);
	bus_access(&f->vm.mmio, addr, b, size, true);
}

static void *gpa(struct fx *f, uint64_t a, uint64_t len)
{
	void *p = vm_gpa(&f->vm, a, len);

	assert_non_null(p);
	return p;
}

/* Common configuration registers (virtio 1.x, 4.1.4.3). */
#define CC_DFSELECT 0x00
#define CC_DF 0x04
#define CC_GFSELECT 0x08
#define CC_GF 0x0C
#define CC_STATUS 0x14
#define CC_GENERATION 0x15
#define CC_Q_SELECT 0x16
#define CC_Q_SIZE 0x18
#define CC_Q_ENABLE 0x1C
#define CC_Q_NOFF 0x1E
#define CC_Q_DESC 0x20
#define CC_Q_AVAIL 0x28
#define CC_Q_USED 0x30

static void find_caps(struct fx *f)
{
	unsigned off = pci_get_cfg8(f->pd, PCIR_CAP_PTR);

	for (int guard = 0; off && guard < 48; guard++) {
		if (pci_get_cfg8(f->pd, off) == PCIY_VENDOR) {
			uint8_t type = pci_get_cfg8(f->pd, off + 3);
			uint64_t a = pci_bar_addr(f->pd, pci_get_cfg8(f->pd, off + 4)) +
				     pci_get_cfg32(f->pd, off + 8);

			if (type == 1)
				f->common = a;
			else if (type == 2) {
				f->notify = a;
				f->notify_mult = pci_get_cfg32(f->pd, off + 16);
			} else if (type == 3)
				f->isr = a;
			else if (type == 4)
				f->devcfg = a;
		}
		off = pci_get_cfg8(f->pd, off + 1);
	}
	assert_true(f->common && f->notify && f->isr && f->devcfg);
}

static void fx_create(struct fx *f, const char *name, const char *const *opts)
{
	char err[256], key[128];

	memset(f, 0, sizeof(*f));
	vm_init_bare(&f->vm, true);
	config_init(&f->cfg);
	f->vm.cfg = &f->cfg;
	f->vm.name = name;
	f->vm.set_irq = rec_irq;
	assert_int_equal(vm_add_memory(&f->vm, RAM_SIZE), 0);
	assert_int_equal(config_set_pair(&f->cfg, "pci.0.0.0.device=hostbridge"), 0);
	for (; opts && *opts; opts++) {
		snprintf(key, sizeof(key), "pci.0.%d.0.%s", SLOT, *opts);
		assert_int_equal(config_set_pair(&f->cfg, key), 0);
	}
	if (pci_setup(&f->vm, err, sizeof(err)))
		fail_msg("pci_setup: %s", err);
}

/* Add the device; NULL (with @err) when it refuses its options. */
static struct pci_dev *fx_add(struct fx *f, char *err, size_t errlen)
{
	f->pd = pci_dev_add(&f->vm, SLOT, 0, &pci_emul_virtio_net, err, errlen);
	if (f->pd)
		find_caps(f);
	return f->pd;
}

static void fx_destroy(struct fx *f)
{
	vm_destroy(&f->vm);
	config_free(&f->cfg);
}

static uint8_t status_rd(struct fx *f)
{
	return (uint8_t)mmio_rd(f, f->common + CC_STATUS, 1);
}

static uint64_t dev_features(struct fx *f)
{
	uint64_t v;

	mmio_wr(f, f->common + CC_DFSELECT, 4, 0);
	v = mmio_rd(f, f->common + CC_DF, 4);
	mmio_wr(f, f->common + CC_DFSELECT, 4, 1);
	return v | mmio_rd(f, f->common + CC_DF, 4) << 32;
}

/* Reset, negotiate @want, set up the three queues, DRIVER_OK. */
static void drv_init(struct fx *f, uint64_t want)
{
	mmio_wr(f, f->common + CC_STATUS, 1, 0);
	mmio_wr(f, f->common + CC_STATUS, 1, VIRTIO_STATUS_ACKNOWLEDGE);
	mmio_wr(f, f->common + CC_STATUS, 1, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	f->features = dev_features(f) & want;
	mmio_wr(f, f->common + CC_GFSELECT, 4, 0);
	mmio_wr(f, f->common + CC_GF, 4, (uint32_t)f->features);
	mmio_wr(f, f->common + CC_GFSELECT, 4, 1);
	mmio_wr(f, f->common + CC_GF, 4, (uint32_t)(f->features >> 32));
	mmio_wr(f, f->common + CC_STATUS, 1, status_rd(f) | VIRTIO_STATUS_FEATURES_OK);
	assert_true(status_rd(f) & VIRTIO_STATUS_FEATURES_OK);
	for (unsigned i = 0; i < 3; i++) {
		struct gq *q = &f->q[i];
		uint64_t base = RING_BASE + i * 0x10000ULL;

		memset(q, 0, sizeof(*q));
		memset(gpa(f, base, 0x10000), 0, 0x10000);
		mmio_wr(f, f->common + CC_Q_SELECT, 2, i);
		q->size = (uint16_t)mmio_rd(f, f->common + CC_Q_SIZE, 2);
		assert_true(q->size >= 64 && q->size <= 256);
		q->desc = base;
		q->avail = base + 0x1000;
		q->used = base + 0x2000;
		q->notify_off = (uint16_t)mmio_rd(f, f->common + CC_Q_NOFF, 2);
		mmio_wr(f, f->common + CC_Q_DESC, 8, q->desc);
		mmio_wr(f, f->common + CC_Q_AVAIL, 8, q->avail);
		mmio_wr(f, f->common + CC_Q_USED, 8, q->used);
		mmio_wr(f, f->common + CC_Q_ENABLE, 2, 1);
	}
	mmio_wr(f, f->common + CC_STATUS, 1, status_rd(f) | VIRTIO_STATUS_DRIVER_OK);
	assert_true(status_rd(f) & VIRTIO_STATUS_DRIVER_OK);
}

struct seg {
	uint64_t gpa;
	uint32_t len;
	bool write;
};

/* Make a chain of @n buffers available on queue @qi (no kick). */
static uint16_t gq_add(struct fx *f, unsigned qi, const struct seg *s, unsigned n)
{
	struct gq *q = &f->q[qi];
	uint8_t *desc = gpa(f, q->desc, 16ULL * q->size);
	uint16_t *avail = gpa(f, q->avail, 6 + 2ULL * q->size);
	uint16_t head = q->next_desc;

	for (unsigned i = 0; i < n; i++) {
		uint16_t d = (uint16_t)((head + i) % q->size);
		uint16_t flags = (uint16_t)((s[i].write ? VIRTQ_DESC_F_WRITE : 0) |
					    (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0));
		uint16_t next = (uint16_t)((d + 1) % q->size);

		memcpy(desc + 16 * d, &s[i].gpa, 8);
		memcpy(desc + 16 * d + 8, &s[i].len, 4);
		memcpy(desc + 16 * d + 12, &flags, 2);
		memcpy(desc + 16 * d + 14, &next, 2);
	}
	q->next_desc = (uint16_t)((head + n) % q->size);
	avail[2 + q->avail_idx % q->size] = head;
	q->avail_idx++;
	__atomic_store_n(&avail[1], q->avail_idx, __ATOMIC_RELEASE);
	return head;
}

static void gq_kick(struct fx *f, unsigned qi)
{
	mmio_wr(f, f->notify + (uint64_t)f->q[qi].notify_off * f->notify_mult, 2, qi);
}

static uint16_t gq_used_idx(struct fx *f, unsigned qi)
{
	uint16_t *used = gpa(f, f->q[qi].used, 4);

	return __atomic_load_n(&used[1], __ATOMIC_ACQUIRE);
}

/* The next used element of queue @qi: returns false when there is none. */
static bool gq_get(struct fx *f, unsigned qi, uint32_t *id, uint32_t *len)
{
	struct gq *q = &f->q[qi];
	uint8_t *used = gpa(f, q->used, 4 + 8ULL * q->size);

	if (gq_used_idx(f, qi) == q->used_seen)
		return false;
	memcpy(id, used + 4 + 8 * (q->used_seen % q->size), 4);
	memcpy(len, used + 8 + 8 * (q->used_seen % q->size), 4);
	q->used_seen++;
	return true;
}

static uint64_t new_buf(struct fx *f)
{
	uint64_t a = BUF_BASE + (f->next_buf++ % NBUFS) * BUF_SIZE;

	return a;
}

/* Transmit: header + frame in two descriptors. */
static void tx_frame(struct fx *f, const void *frame, size_t len)
{
	uint64_t h = new_buf(f), d = new_buf(f);
	struct seg s[2] = { { h, HDR, false }, { d, (uint32_t)len, false } };

	memset(gpa(f, h, HDR), 0, HDR);
	memcpy(gpa(f, d, len), frame, len);
	gq_add(f, 1, s, 2);
	gq_kick(f, 1);
}

/* One receive buffer of @len bytes; returns its gpa. */
static uint64_t rx_buf(struct fx *f, uint32_t len)
{
	uint64_t a = new_buf(f);
	struct seg s = { a, len, true };

	memset(gpa(f, a, len), 0xEE, len);
	gq_add(f, 0, &s, 1);
	return a;
}

static uint8_t cfg_rd8(struct fx *f, unsigned off)
{
	return (uint8_t)mmio_rd(f, f->devcfg + off, 1);
}

static uint16_t cfg_status(struct fx *f)
{
	return (uint16_t)mmio_rd(f, f->devcfg + 6, 2);
}

static void make_frame(uint8_t *p, size_t len, uint8_t seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(seed + i * 7);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	char err[256];

	net_backend_register(&loop_type);
	loop_reset();
	memset(irq_level, 0, sizeof(irq_level));
	memset(irq_raised, 0, sizeof(irq_raised));
	fx_create(f, "testvm", (const char *const[]){ "backend=loop", NULL });
	if (!fx_add(f, err, sizeof(err)))
		fail_msg("virtio-net: %s", err);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	fx_destroy(f);
	free(f);
	loop_reset();
	return 0;
}

/* ---- tests ---- */

static void test_identity_and_config(void **state)
{
	struct fx *f = *state;
	uint64_t feat = dev_features(f);

	assert_int_equal(pci_get_cfg16(f->pd, PCIR_VENDOR), 0x1AF4);
	assert_int_equal(pci_get_cfg16(f->pd, PCIR_DEVICE), 0x1041);
	assert_int_equal(pci_get_cfg8(f->pd, PCIR_CLASS), 0x02);
	assert_true((feat & (F_MAC | F_MRG | F_STATUS | F_CTRL_VQ | F_ANNOUNCE | F_VERSION_1)) ==
		    (F_MAC | F_MRG | F_STATUS | F_CTRL_VQ | F_ANNOUNCE | F_VERSION_1));
	/* No offloads, no MTU without mtu=. */
	assert_int_equal(feat & (0x7ULL | 0x1FFULL << 6), 0);
	assert_int_equal(feat & F_MTU, 0);
	assert_int_equal(feat & 1, 0);
	/* The default MAC: locally administered prefix, stable for a name and slot. */
	assert_int_equal(cfg_rd8(f, 0), 0x52);
	assert_int_equal(cfg_rd8(f, 1), 0x4B);
	assert_int_equal(cfg_rd8(f, 2), 0x48);
	assert_int_equal(cfg_status(f), S_LINK_UP);
	assert_int_equal(mmio_rd(f, f->devcfg + 8, 2), 1);
	drv_init(f, F_ALL);
	assert_int_equal(f->features, F_ALL & ~F_MTU);
}

static void read_mac(struct fx *f, uint8_t mac[6])
{
	for (int i = 0; i < 6; i++)
		mac[i] = cfg_rd8(f, (unsigned)i);
}

static void test_default_mac_stable(void **state)
{
	struct fx *f = *state, g, h;
	uint8_t m1[6], m2[6], m3[6];
	char err[256];

	read_mac(f, m1);
	fx_create(&g, "testvm", (const char *const[]){ "backend=loop", NULL });
	assert_non_null(fx_add(&g, err, sizeof(err)));
	read_mac(&g, m2);
	fx_destroy(&g);
	fx_create(&h, "othervm", (const char *const[]){ "backend=loop", NULL });
	assert_non_null(fx_add(&h, err, sizeof(err)));
	read_mac(&h, m3);
	fx_destroy(&h);
	assert_memory_equal(m1, m2, 6);
	assert_memory_not_equal(m1, m3, 6);
}

static void test_mac_and_mtu_options(void **state)
{
	struct fx g;
	char err[256];
	static const uint8_t want[6] = { 0x02, 0x11, 0x22, 0xAA, 0xbb, 0xCC };
	uint8_t mac[6];

	fx_create(&g, "testvm",
		  (const char *const[]){ "backend=loop", "mac=02:11:22:aa:BB:cc", "mtu=9000",
					 NULL });
	if (!fx_add(&g, err, sizeof(err)))
		fail_msg("%s", err);
	read_mac(&g, mac);
	assert_memory_equal(mac, want, 6);
	assert_true(dev_features(&g) & F_MTU);
	assert_int_equal(mmio_rd(&g, g.devcfg + 10, 2), 9000);
	/* The device config window ignores writes. */
	mmio_wr(&g, g.devcfg, 1, 0x44);
	assert_int_equal(cfg_rd8(&g, 0), 0x02);
	fx_destroy(&g);
}

static void test_tx(void **state)
{
	struct fx *f = *state;
	uint8_t frame[1514], big[64];
	uint32_t id, len;

	drv_init(f, F_ALL);
	make_frame(frame, sizeof(frame), 1);
	tx_frame(f, frame, sizeof(frame));
	assert_true(gq_get(f, 1, &id, &len));
	assert_int_equal(len, 0);
	assert_int_equal(loop_nsent, 1);
	assert_int_equal(loop_sent_len[0], sizeof(frame));
	assert_memory_equal(loop_sent[0], frame, sizeof(frame));

	/* Bigger than a frame can be: completed, not sent. */
	{
		uint64_t h = new_buf(f), d = new_buf(f);
		struct seg s[2] = { { h, HDR, false }, { d, NET_MAX_FRAME + 1, false } };

		gq_add(f, 1, s, 2);
		gq_kick(f, 1);
		assert_true(gq_get(f, 1, &id, &len));
		assert_int_equal(loop_nsent, 1);
	}
	/* Shorter than the header: completed, not sent. */
	{
		struct seg s = { new_buf(f), HDR - 1, false };

		gq_add(f, 1, &s, 1);
		gq_kick(f, 1);
		assert_true(gq_get(f, 1, &id, &len));
		assert_int_equal(loop_nsent, 1);
	}
	/* Several chains in one kick, in order; the largest frame passes. */
	make_frame(big, sizeof(big), 9);
	tx_frame(f, big, 60);
	{
		uint64_t h = new_buf(f), d = new_buf(f);
		struct seg s[2] = { { h, HDR, false }, { d, NET_MAX_FRAME, false } };

		make_frame(gpa(f, d, NET_MAX_FRAME), NET_MAX_FRAME, 3);
		gq_add(f, 1, s, 2);
		gq_kick(f, 1);
		assert_int_equal(loop_nsent, 3);
		assert_int_equal(loop_sent_len[2], NET_MAX_FRAME);
		assert_memory_equal(loop_sent[2], gpa(f, d, NET_MAX_FRAME), NET_MAX_FRAME);
	}
	assert_memory_equal(loop_sent[1], big, 60);
	assert_true(irq_raised[pci_intx_gsi(SLOT, 1)] > 0);
}

static void check_hdr(const uint8_t *h, uint16_t nbuf)
{
	static const uint8_t zero[10];

	assert_memory_equal(h, zero, 10);
	assert_int_equal(h[10] | h[11] << 8, nbuf);
}

static void test_rx_mergeable(void **state)
{
	struct fx *f = *state;
	uint8_t frame[100], out[100];
	uint64_t a, b;
	uint32_t id, len, id2, len2;

	drv_init(f, F_ALL);
	a = rx_buf(f, 64);
	b = rx_buf(f, 64);
	gq_kick(f, 0);
	make_frame(frame, sizeof(frame), 5);
	loop_inject(frame, sizeof(frame));
	assert_true(gq_get(f, 0, &id, &len));
	assert_true(gq_get(f, 0, &id2, &len2));
	assert_false(gq_get(f, 0, &id, &len));
	assert_int_equal(len, 64);
	assert_int_equal(len2, HDR + sizeof(frame) - 64);
	check_hdr(gpa(f, a, HDR), 2);
	memcpy(out, gpa(f, a + HDR, 64 - HDR), 64 - HDR);
	memcpy(out + 64 - HDR, gpa(f, b, len2), len2);
	assert_memory_equal(out, frame, sizeof(frame));
	assert_true(irq_raised[pci_intx_gsi(SLOT, 1)] > 0);

	/* A frame that fits one buffer takes one, num_buffers 1. */
	a = rx_buf(f, 2048);
	loop_inject(frame, 60);
	assert_true(gq_get(f, 0, &id, &len));
	assert_int_equal(len, HDR + 60);
	check_hdr(gpa(f, a, HDR), 1);
	assert_memory_equal(gpa(f, a + HDR, 60), frame, 60);
}

static void test_rx_mergeable_waits_for_buffers(void **state)
{
	struct fx *f = *state;
	uint8_t frame[300];
	uint64_t a, b;
	uint32_t id, len;

	drv_init(f, F_ALL);
	a = rx_buf(f, 128);
	make_frame(frame, sizeof(frame), 2);
	/* One buffer is not enough: nothing is used, the frame waits. */
	loop_inject(frame, sizeof(frame));
	assert_false(gq_get(f, 0, &id, &len));
	b = rx_buf(f, 256);
	gq_kick(f, 0);
	assert_true(gq_get(f, 0, &id, &len));
	assert_int_equal(len, 128);
	assert_true(gq_get(f, 0, &id, &len));
	assert_int_equal(len, HDR + sizeof(frame) - 128);
	check_hdr(gpa(f, a, HDR), 2);
	assert_memory_equal(gpa(f, a + HDR, 128 - HDR), frame, 128 - HDR);
	assert_memory_equal(gpa(f, b, len), frame + 128 - HDR, len);
}

static void test_rx_without_mergeable(void **state)
{
	struct fx *f = *state;
	uint8_t frame[200];
	uint64_t a;
	uint32_t id, len;

	drv_init(f, F_ALL & ~F_MRG);
	a = rx_buf(f, 128);
	gq_kick(f, 0);
	make_frame(frame, sizeof(frame), 4);
	/* Does not fit the one chain: dropped, the buffer stays for the next frame. */
	loop_inject(frame, sizeof(frame));
	assert_false(gq_get(f, 0, &id, &len));
	loop_inject(frame, 100);
	assert_true(gq_get(f, 0, &id, &len));
	assert_int_equal(len, HDR + 100);
	check_hdr(gpa(f, a, HDR), 1);
	assert_memory_equal(gpa(f, a + HDR, 100), frame, 100);
}

static void test_rx_buffer_smaller_than_header(void **state)
{
	struct fx *f = *state;
	uint8_t frame[60] = { 0x42 };
	uint64_t b;
	uint32_t id, len;

	drv_init(f, F_ALL);
	rx_buf(f, HDR - 1);
	b = rx_buf(f, 256);
	loop_inject(frame, sizeof(frame));
	/* The useless buffer comes back empty, the frame goes into the next one. */
	assert_true(gq_get(f, 0, &id, &len));
	assert_int_equal(len, 0);
	assert_true(gq_get(f, 0, &id, &len));
	assert_int_equal(len, HDR + sizeof(frame));
	check_hdr(gpa(f, b, HDR), 1);
}

static void test_rx_queue_then_deliver(void **state)
{
	struct fx *f = *state;
	uint8_t frame[80];
	uint64_t a[3];
	uint32_t id, len;

	drv_init(f, F_ALL);
	for (int i = 0; i < 3; i++) {
		make_frame(frame, sizeof(frame), (uint8_t)(10 * i));
		loop_inject(frame, sizeof(frame) - (size_t)i);
	}
	assert_int_equal(gq_used_idx(f, 0), 0);
	for (int i = 0; i < 3; i++)
		a[i] = rx_buf(f, 1600);
	gq_kick(f, 0);
	for (int i = 0; i < 3; i++) {
		assert_true(gq_get(f, 0, &id, &len));
		assert_int_equal(len, HDR + sizeof(frame) - (size_t)i);
		make_frame(frame, sizeof(frame), (uint8_t)(10 * i));
		assert_memory_equal(gpa(f, a[i] + HDR, sizeof(frame) - (size_t)i), frame,
				    sizeof(frame) - (size_t)i);
	}
	assert_false(gq_get(f, 0, &id, &len));
}

static void test_rx_queue_bounded(void **state)
{
	struct fx *f = *state;
	uint8_t frame[64];
	uint32_t id, len;
	unsigned got = 0;

	drv_init(f, F_ALL);
	for (unsigned i = 0; i < 300; i++) {
		memset(frame, (int)(i & 0xFF), sizeof(frame));
		loop_inject(frame, sizeof(frame));
	}
	for (unsigned i = 0; i < f->q[0].size; i++)
		rx_buf(f, 256);
	gq_kick(f, 0);
	while (gq_get(f, 0, &id, &len))
		got++;
	/* 256 frames waited (the bound), the rest were dropped; none arrives later. */
	assert_int_equal(got, 256);
	for (unsigned i = 0; i < 8; i++)
		rx_buf(f, 256);
	gq_kick(f, 0);
	assert_false(gq_get(f, 0, &id, &len));
}

static void test_rx_dropped_before_driver_ok_and_after_reset(void **state)
{
	struct fx *f = *state;
	uint8_t frame[64] = { 1 };
	uint32_t id, len;

	/* Before DRIVER_OK nobody listens. */
	loop_inject(frame, sizeof(frame));
	drv_init(f, F_ALL);
	/* Queued for lack of buffers, then the driver resets: the frame is gone. */
	loop_inject(frame, sizeof(frame));
	drv_init(f, F_ALL);
	rx_buf(f, 256);
	gq_kick(f, 0);
	assert_false(gq_get(f, 0, &id, &len));
	loop_inject(frame, sizeof(frame));
	assert_true(gq_get(f, 0, &id, &len));
}

/* Send a control command; returns the ack byte (0xEE when none was written). */
static uint8_t ctrl_cmd(struct fx *f, uint8_t cls, uint8_t cmd, uint32_t *used_len)
{
	uint64_t c = new_buf(f), a = new_buf(f);
	struct seg s[2] = { { c, 2, false }, { a, 1, true } };
	uint8_t *p = gpa(f, c, 2), *ack = gpa(f, a, 1);
	uint32_t id;

	p[0] = cls;
	p[1] = cmd;
	*ack = 0xEE;
	gq_add(f, 2, s, 2);
	gq_kick(f, 2);
	assert_true(gq_get(f, 2, &id, used_len));
	return *ack;
}

static void test_ctrl_queue(void **state)
{
	struct fx *f = *state;
	uint32_t len;

	drv_init(f, F_ALL);
	assert_int_equal(ctrl_cmd(f, 3, 0, &len), 0); /* ANNOUNCE_ACK */
	assert_int_equal(len, 1);
	assert_int_equal(ctrl_cmd(f, 0, 0, &len), 1); /* RX promisc: CTRL_RX not offered */
	assert_int_equal(ctrl_cmd(f, 1, 1, &len), 1); /* MAC table */
	assert_int_equal(ctrl_cmd(f, 3, 7, &len), 1);
	/* No writable byte for the ack: completed with nothing written. */
	{
		struct seg s = { new_buf(f), 2, false };
		uint32_t id;

		gq_add(f, 2, &s, 1);
		gq_kick(f, 2);
		assert_true(gq_get(f, 2, &id, &len));
		assert_int_equal(len, 0);
	}
}

/*
 * The announce ack is an error when GUEST_ANNOUNCE was not negotiated (the status bit is the
 * device's to clear only for a driver that knows it), and a control request whose class and
 * command do not both fit in its readable part gets no ack.
 */
static void test_ctrl_queue_refusals(void **state)
{
	struct fx *f = *state;
	uint32_t len, id;

	drv_init(f, F_ALL & ~F_ANNOUNCE);
	assert_int_equal(ctrl_cmd(f, 3, 0, &len), 1);
	assert_int_equal(len, 1);
	{
		uint64_t c = new_buf(f), a = new_buf(f);
		struct seg s[2] = { { c, 1, false }, { a, 1, true } };
		uint8_t *ack = gpa(f, a, 1);

		*(uint8_t *)gpa(f, c, 1) = 3;
		*ack = 0xEE;
		gq_add(f, 2, s, 2);
		gq_kick(f, 2);
		assert_true(gq_get(f, 2, &id, &len));
		assert_int_equal(len, 0);
		assert_int_equal(*ack, 0xEE);
	}
}

static void test_pause_holds_frames(void **state)
{
	struct fx *f = *state;
	struct dev *d;
	uint8_t frame[64] = { 7 };
	uint32_t id, len;

	drv_init(f, F_ALL);
	rx_buf(f, 256);
	gq_kick(f, 0);
	d = &f->pd->dev;
	assert_int_equal(d->ops->pause(d), 0);
	loop_inject(frame, sizeof(frame));
	assert_false(gq_get(f, 0, &id, &len));
	assert_int_equal(d->ops->resume(d), 0);
	assert_true(gq_get(f, 0, &id, &len));
	assert_int_equal(len, HDR + sizeof(frame));
	/* A plain pause/resume announces nothing. */
	assert_int_equal(cfg_status(f), S_LINK_UP);
	assert_int_equal(loop_nsent, 0);
}

/* ---- snapshot ---- */

static void save_dev(struct fx *f, uint8_t **buf, size_t *len)
{
	struct dev *d = &f->pd->dev;
	struct sstream s;

	ss_init_save(&s);
	assert_int_equal(d->ops->save(d, &s), 0);
	*buf = malloc(s.len);
	memcpy(*buf, s.buf, s.len);
	*len = s.len;
	ss_free(&s);
}

static int load_dev(struct fx *f, const uint8_t *buf, size_t len)
{
	struct dev *d = &f->pd->dev;
	struct sstream s;
	int ret;

	ss_init_load(&s, buf, len);
	ret = d->ops->load(d, &s, d->ops->version);
	ss_free(&s);
	return ret;
}

/* A second VM with the first one's RAM, as a restore maps it. */
static void fx_clone(struct fx *src, struct fx *dst, const char *const *opts)
{
	char err[256];

	fx_create(dst, "testvm", opts);
	if (!fx_add(dst, err, sizeof(err)))
		fail_msg("%s", err);
	memcpy(gpa(dst, 0, RAM_SIZE), gpa(src, 0, RAM_SIZE), RAM_SIZE);
	memcpy(dst->q, src->q, sizeof(dst->q));
	dst->next_buf = src->next_buf;
	dst->features = src->features;
}

static void test_snapshot_roundtrip_and_announce(void **state)
{
	struct fx *f = *state, g;
	uint8_t *a, *b, frame[64] = { 3 };
	size_t alen, blen;
	uint32_t id, len;
	unsigned gsi = pci_intx_gsi(SLOT, 1), before;
	uint8_t gen;

	drv_init(f, F_ALL);
	tx_frame(f, frame, sizeof(frame));
	assert_true(gq_get(f, 1, &id, &len));
	rx_buf(f, 256);
	gq_kick(f, 0);
	assert_int_equal(f->pd->dev.ops->pause(&f->pd->dev), 0);
	save_dev(f, &a, &alen);

	fx_clone(f, &g, (const char *const[]){ "backend=loop", NULL });
	assert_int_equal(load_dev(&g, a, alen), 0);
	save_dev(&g, &b, &blen);
	assert_int_equal(alen, blen);
	assert_memory_equal(a, b, alen);

	/* Acknowledge what the saved ISR held, so a new interrupt shows as an edge. */
	mmio_rd(&g, g.isr, 1);
	assert_int_equal(irq_level[gsi], 0);
	gen = (uint8_t)mmio_rd(&g, g.common + CC_GENERATION, 1);
	before = irq_raised[gsi];
	loop_reset();
	assert_int_equal(g.pd->dev.ops->resume(&g.pd->dev), 0);
	assert_int_equal(cfg_status(&g), S_LINK_UP | S_ANNOUNCE);
	assert_true(irq_raised[gsi] > before);
	assert_true(mmio_rd(&g, g.isr, 1) & 2);
	assert_int_not_equal(mmio_rd(&g, g.common + CC_GENERATION, 1), gen);
	assert_int_equal(loop_nsent, 0); /* the guest announces, not the device */
	/* The restored queues work: the buffer given before the save takes a frame. */
	loop_inject(frame, sizeof(frame));
	assert_true(gq_get(&g, 0, &id, &len));
	assert_int_equal(len, HDR + sizeof(frame));
	/* The driver's ack clears the announcement. */
	assert_int_equal(ctrl_cmd(&g, 3, 0, &len), 0);
	assert_int_equal(cfg_status(&g), S_LINK_UP);
	fx_destroy(&g);
	free(a);
	free(b);
}

static void test_snapshot_rarp_without_guest_announce(void **state)
{
	struct fx *f = *state, g;
	uint8_t *a, mac[6];
	size_t alen;

	drv_init(f, F_ALL & ~F_ANNOUNCE);
	assert_int_equal(f->pd->dev.ops->pause(&f->pd->dev), 0);
	save_dev(f, &a, &alen);
	fx_clone(f, &g, (const char *const[]){ "backend=loop", NULL });
	assert_int_equal(load_dev(&g, a, alen), 0);
	loop_reset();
	assert_int_equal(g.pd->dev.ops->resume(&g.pd->dev), 0);
	assert_int_equal(cfg_status(&g), S_LINK_UP);
	read_mac(&g, mac);
	assert_int_equal(loop_nsent, 1);
	assert_int_equal(loop_sent_len[0], 60);
	assert_memory_equal(loop_sent[0], "\xff\xff\xff\xff\xff\xff", 6);
	assert_memory_equal(loop_sent[0] + 6, mac, 6);
	assert_int_equal(loop_sent[0][12] << 8 | loop_sent[0][13], 0x8035);
	assert_int_equal(loop_sent[0][21], 3);
	assert_memory_equal(loop_sent[0] + 22, mac, 6);
	fx_destroy(&g);
	free(a);
}

/* The device's part is the last 10 bytes: mac[6], status u16, mtu u16. */
static void test_snapshot_refused(void **state)
{
	struct fx *f = *state, g;
	uint8_t *a, *bad;
	size_t alen;

	drv_init(f, F_ALL);
	assert_int_equal(f->pd->dev.ops->pause(&f->pd->dev), 0);
	save_dev(f, &a, &alen);
	bad = malloc(alen + 1);
	fx_clone(f, &g, (const char *const[]){ "backend=loop", NULL });

	/* Truncated, and one byte too many. */
	assert_int_not_equal(load_dev(&g, a, alen - 1), 0);
	memcpy(bad, a, alen);
	bad[alen] = 0;
	assert_int_not_equal(load_dev(&g, bad, alen + 1), 0);
	/* Multicast MAC. */
	memcpy(bad, a, alen);
	bad[alen - 10] |= 1;
	assert_int_not_equal(load_dev(&g, bad, alen), 0);
	/* Unknown status bit. */
	memcpy(bad, a, alen);
	bad[alen - 4] |= 0x80;
	assert_int_not_equal(load_dev(&g, bad, alen), 0);
	/* An MTU although this device offers none. */
	memcpy(bad, a, alen);
	bad[alen - 2] = 0xDC;
	bad[alen - 1] = 0x05;
	assert_int_not_equal(load_dev(&g, bad, alen), 0);
	/*
	 * A device configured with mtu= takes no snapshot of one without, takes a saved MTU
	 * (the driver read it at probe time), but not one below IPv4's minimum of 68 (60 here).
	 */
	{
		struct fx h;

		fx_clone(f, &h, (const char *const[]){ "backend=loop", "mtu=1500", NULL });
		assert_int_not_equal(load_dev(&h, a, alen), 0);
		memcpy(bad, a, alen);
		bad[alen - 2] = 0x40; /* 9024 */
		bad[alen - 1] = 0x23;
		assert_int_equal(load_dev(&h, bad, alen), 0);
		bad[alen - 2] = 60;
		bad[alen - 1] = 0;
		assert_int_not_equal(load_dev(&h, bad, alen), 0);
		fx_destroy(&h);
	}
	/* Nothing was committed: the original loads and saves back identically. */
	assert_int_equal(load_dev(&g, a, alen), 0);
	{
		uint8_t *b;
		size_t blen;

		save_dev(&g, &b, &blen);
		assert_int_equal(blen, alen);
		assert_memory_equal(a, b, alen);
		free(b);
	}
	fx_destroy(&g);
	free(bad);
	free(a);
}

/* ---- options ---- */

static void expect_refused(const char *const *opts, const char *needle)
{
	struct fx g;
	char err[256] = "";

	fx_create(&g, "testvm", opts);
	assert_null(fx_add(&g, err, sizeof(err)));
	if (!strstr(err, needle))
		fail_msg("error '%s' does not mention '%s'", err, needle);
	fx_destroy(&g);
}

static void test_option_errors(void **state)
{
	expect_refused((const char *const[]){ "backend=loop", "mac=01:00:5e:00:00:01", NULL },
		       "bad mac");
	expect_refused((const char *const[]){ "backend=loop", "mac=02:00:00:00:00", NULL },
		       "bad mac");
	expect_refused((const char *const[]){ "backend=loop", "mac=02:00:00:00:00:0g", NULL },
		       "bad mac");
	expect_refused((const char *const[]){ "backend=loop", "mac=00:00:00:00:00:00", NULL },
		       "bad mac");
	expect_refused((const char *const[]){ "backend=loop", "mtu=67", NULL }, "bad mtu");
	expect_refused((const char *const[]){ "backend=loop", "mtu=9k", NULL }, "bad mtu");
	expect_refused((const char *const[]){ "backend=vde", NULL }, "unknown backend 'vde'");
	expect_refused((const char *const[]){ "backend=vde", NULL }, "tap=NAME");
	expect_refused((const char *const[]){ "backend=vde", NULL }, "hostfwd=");
	expect_refused((const char *const[]){ "backend=loop", "hostfwd=tcp:2222-:22", NULL },
		       "needs the slirp backend");
	expect_refused((const char *const[]){ "backend=slirp", "hostfwd=tcp:2222:22", NULL },
		       "bad hostfwd rule");
	expect_refused((const char *const[]){ "backend=slirp", "hostfwd=tcp:2222-9.9.9.9:22",
					      NULL },
		       "10.0.2.0/24");
	/* An empty tap= counts as not given (a restore can drop the key), backend=tap needs it. */
	expect_refused((const char *const[]){ "backend=tap", "tap=", NULL }, "missing interface");
	expect_refused((const char *const[]){ "backend=slirp", "tap=tap0", NULL }, "both");
}

static void test_hostfwd_parse(void **state)
{
	struct net_hostfwd fw;
	char err[200];

	assert_int_equal(net_hostfwd_parse("tcp:2222-:22", &fw, err, sizeof(err)), 0);
	assert_false(fw.udp);
	assert_int_equal(ntohl(fw.host_addr.s_addr), INADDR_LOOPBACK);
	assert_int_equal(fw.host_port, 2222);
	assert_int_equal(fw.guest_addr.s_addr, 0);
	assert_int_equal(fw.guest_port, 22);
	assert_int_equal(net_hostfwd_parse("udp:0.0.0.0:5353-10.0.2.15:53", &fw, err, sizeof(err)),
			 0);
	assert_true(fw.udp);
	assert_int_equal(fw.host_addr.s_addr, 0);
	assert_int_equal(ntohl(fw.guest_addr.s_addr), 0x0A00020F);
	assert_int_equal(fw.host_port, 5353);
	assert_int_equal(fw.guest_port, 53);
	/* QEMU's form with an empty host address; the protocol may be left out. */
	assert_int_equal(net_hostfwd_parse("tcp::8080-:80", &fw, err, sizeof(err)), 0);
	assert_int_equal(ntohl(fw.host_addr.s_addr), INADDR_LOOPBACK);
	assert_int_equal(fw.host_port, 8080);
	assert_int_equal(net_hostfwd_parse("8080-80", &fw, err, sizeof(err)), 0);
	assert_int_equal(fw.guest_port, 80);
	assert_int_not_equal(net_hostfwd_parse("tcp:0-:22", &fw, err, sizeof(err)), 0);
	assert_int_not_equal(net_hostfwd_parse("tcp:70000-:22", &fw, err, sizeof(err)), 0);
	assert_int_not_equal(net_hostfwd_parse("tcp:22", &fw, err, sizeof(err)), 0);
	assert_int_not_equal(net_hostfwd_parse("tcp:x:1-:22", &fw, err, sizeof(err)), 0);
	assert_int_not_equal(net_hostfwd_parse("tcp:1-:-22", &fw, err, sizeof(err)), 0);
	assert_int_not_equal(net_hostfwd_parse("sctp:1-:22", &fw, err, sizeof(err)), 0);
}

/* ---- slirp, on loopback only ---- */

#define WAIT_NS 5000000000LL

static int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void nap(void)
{
	struct timespec ts = { 0, 1000000 };

	nanosleep(&ts, NULL);
}

/* Frames slirp delivered into receive buffer @a (one used element, mergeable or not). */
static bool wait_rx(struct fx *f, uint8_t **frame, uint32_t *flen)
{
	int64_t end = mono_ns() + WAIT_NS;
	uint32_t id, len;
	uint8_t *desc = gpa(f, f->q[0].desc, 16ULL * f->q[0].size);
	uint64_t a;

	while (!gq_get(f, 0, &id, &len)) {
		if (mono_ns() > end)
			return false;
		nap();
	}
	memcpy(&a, desc + 16 * id, 8);
	assert_true(len >= HDR);
	*frame = gpa(f, a + HDR, len - HDR);
	*flen = len - HDR;
	return true;
}

static const uint8_t guest_ip[4] = { 10, 0, 2, 15 };
static const uint8_t host_ip[4] = { 10, 0, 2, 2 };

/* ARP packet @op from the guest. */
static void arp_frame(uint8_t *p, const uint8_t mac[6], uint16_t op, const uint8_t *tha,
		      const uint8_t tip[4])
{
	memset(p, 0, 60);
	memcpy(p, tha ? tha : (const uint8_t *)"\xff\xff\xff\xff\xff\xff", 6);
	memcpy(p + 6, mac, 6);
	p[12] = 0x08;
	p[13] = 0x06;
	p[15] = 1;
	p[16] = 0x08;
	p[18] = 6;
	p[19] = 4;
	p[21] = (uint8_t)op;
	memcpy(p + 22, mac, 6);
	memcpy(p + 28, guest_ip, 4);
	if (tha)
		memcpy(p + 32, tha, 6);
	memcpy(p + 38, tip, 4);
}

static void slirp_fx(struct fx *f, const char *const *opts)
{
	char err[256];

	memset(irq_level, 0, sizeof(irq_level));
	fx_create(f, "slirpvm", opts);
	if (!fx_add(f, err, sizeof(err)))
		fail_msg("virtio-net on slirp: %s", err);
	drv_init(f, F_ALL);
	for (int i = 0; i < 64; i++)
		rx_buf(f, 2048);
	gq_kick(f, 0);
}

static void test_slirp_arp(void **state)
{
	struct fx f;
	uint8_t mac[6], req[60], *r;
	uint32_t rlen;

	slirp_fx(&f, (const char *const[]){ "backend=slirp", NULL });
	read_mac(&f, mac);
	arp_frame(req, mac, 1, NULL, host_ip);
	tx_frame(&f, req, sizeof(req));
	if (!wait_rx(&f, &r, &rlen))
		fail_msg("no ARP reply from slirp");
	assert_true(rlen >= 42);
	assert_memory_equal(r, mac, 6); /* to the guest */
	assert_int_equal(r[12] << 8 | r[13], 0x0806);
	assert_int_equal(r[20] << 8 | r[21], 2); /* reply */
	assert_memory_equal(r + 28, host_ip, 4); /* 10.0.2.2 is at ... */
	assert_memory_equal(r + 22, r + 6, 6);	 /* ... the sender's MAC */
	assert_memory_equal(r + 32, mac, 6);
	assert_memory_equal(r + 38, guest_ip, 4);
	fx_destroy(&f);
}

static uint16_t free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	close(fd);
	return ntohs(sa.sin_port);
}

static void test_slirp_hostfwd_syn(void **state)
{
	struct fx f;
	char opt[64];
	uint16_t port = free_port();
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
	uint8_t mac[6], arp[60], *r;
	uint32_t rlen;
	bool syn = false;
	int fd;

	snprintf(opt, sizeof(opt), "hostfwd=tcp:%u-:8080", port);
	slirp_fx(&f, (const char *const[]){ "backend=slirp", opt, NULL });
	read_mac(&f, mac);
	/* A gratuitous ARP tells slirp where 10.0.2.15 is. */
	arp_frame(arp, mac, 1, NULL, guest_ip);
	tx_frame(&f, arp, sizeof(arp));

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	assert_true(fd >= 0);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) && errno != EINPROGRESS)
		fail_msg("connect 127.0.0.1:%u: %s", port, strerror(errno));
	while (!syn && wait_rx(&f, &r, &rlen)) {
		uint16_t type = (uint16_t)(r[12] << 8 | r[13]);

		if (type == 0x0806 && rlen >= 42 && r[21] == 1 && !memcmp(r + 38, guest_ip, 4)) {
			/* slirp asks for the guest's MAC after all: answer. */
			arp_frame(arp, mac, 2, r + 6, r + 28);
			memcpy(arp + 28, guest_ip, 4);
			tx_frame(&f, arp, sizeof(arp));
			continue;
		}
		if (type != 0x0800 || rlen < 14 + 20 + 20 || r[14 + 9] != 6)
			continue;
		{
			const uint8_t *ip = r + 14, *tcp = ip + (ip[0] & 0xF) * 4;

			assert_memory_equal(r, mac, 6);
			assert_memory_equal(ip + 16, guest_ip, 4);
			assert_int_equal(tcp[2] << 8 | tcp[3], 8080);
			assert_true(tcp[13] & 0x02); /* SYN */
			syn = true;
		}
	}
	close(fd);
	if (!syn)
		fail_msg("no SYN toward 10.0.2.15:8080 after connecting to 127.0.0.1:%u", port);
	fx_destroy(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_identity_and_config, setup, teardown),
		cmocka_unit_test_setup_teardown(test_default_mac_stable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mac_and_mtu_options, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tx, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rx_mergeable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rx_mergeable_waits_for_buffers, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_rx_without_mergeable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rx_buffer_smaller_than_header, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_rx_queue_then_deliver, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rx_queue_bounded, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rx_dropped_before_driver_ok_and_after_reset,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_ctrl_queue, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ctrl_queue_refusals, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pause_holds_frames, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_roundtrip_and_announce, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_rarp_without_guest_announce, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_option_errors, setup, teardown),
		cmocka_unit_test(test_hostfwd_parse),
		cmocka_unit_test(test_slirp_arp),
		cmocka_unit_test(test_slirp_hostfwd_syn),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
