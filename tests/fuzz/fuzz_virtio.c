// SPDX-License-Identifier: BSD-2-Clause
/*
 * libFuzzer target: the virtio-pci transport, the virtqueue walker (virtq.c: split rings,
 * chains, indirect tables, EVENT_IDX) and the three devices behind it, virtio-blk, virtio-net
 * and virtio-rnd, with the fuzzer as the guest driver.  The first input byte picks the device
 * (% 3: blk, net, rnd).  Each input builds a fresh bare VM with 4 MiB of RAM and the device,
 * brought up as a driver does (every offered feature accepted, every queue at fixed rings
 * whose descriptor tables hold well-formed three-descriptor chains: request header, data,
 * status for blk; frames for net's transmit queue; writable buffers elsewhere), so mutations
 * reach the requests.  Then operations:
 *
 *	00 off:u16 val:u32 size:u8	write BAR 4 at off % 16 KiB (common configuration, ISR,
 *					device configuration, notify), size 1, 2, 4 or 8
 *	01 off:u16 size:u8		read it
 *	02 off:u24 len:u8 bytes		write guest RAM: rings, descriptors, buffers
 *	03 q:u8 chain:u8		chain % (size / 3) made available on queue q, notify
 *	04 q:u8				notify queue q
 *	05 ns:u24			let the virtual clock run
 *	06				pause (drains requests) and resume
 *	07				pause, save, load, save: the same bytes; resume
 *	08 off:u8 val:u32 size:u8	write configuration space (MSI-X, the PCI cfg capability)
 *	09 len:u16 bytes		a frame from the network (virtio-net)
 *
 * What must hold: no crash, no sanitizer report, no hang, and a paused device saves, loads and
 * saves back to the same bytes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backend/net_backend.h"
#include "config.h"
#include "dev/pci/pci.h"
#include "dev/virtio/virtio.h"
#include "dev/virtio/virtio_pci_regs.h"
#include "sstream.h"
#include "vm.h"
#include "fuzz.h"

#define RAM (4 * MiB)
#define SLOT 3
#define NQ 3
#define RING(q) (0x10000ULL + 0x10000ULL * (q))
#define BUF(q, c) (0x100000ULL + 0x80000ULL * (q) + 0x1000ULL * (c))
#define MAX_OPS 256
/* Descriptor flags (virtio 1.x, 2.7.5). */
#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2
#define VIRTQ_DESC_F_INDIRECT 4

enum { V_BLK, V_NET, V_RND, V_COUNT };
static const char *const names[V_COUNT] = { "virtio-blk", "virtio-net", "virtio-rnd" };

static char disk_path[64];
static struct net_backend *net_nb;

static int null_open(struct net_backend *nb, const struct net_backend_args *a, char *err,
		     size_t errlen)
{
	net_nb = nb;
	return 0;
}

static int null_send(struct net_backend *nb, const void *frame, size_t len)
{
	return 0;
}

static void null_close(struct net_backend *nb)
{
	net_nb = NULL;
}

static const struct net_backend_type null_type = {
	.name = "null",
	.usage = "null",
	.open = null_open,
	.send = null_send,
	.close = null_close,
};

static void remove_image(void)
{
	unlink(disk_path);
}

void fuzz_init(void)
{
	static uint8_t img[256 * 1024];
	const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	int fd;

	for (unsigned i = 0; i < sizeof(img); i++)
		img[i] = (uint8_t)(i * 11 + 5);
	snprintf(disk_path, sizeof(disk_path), "%s/khyve-fuzz-virtio-XXXXXX", dir);
	fd = mkstemp(disk_path);
	if (fd < 0 || write(fd, img, sizeof(img)) != (ssize_t)sizeof(img))
		abort();
	close(fd);
	atexit(remove_image);
	net_backend_register(&null_type);
}

struct fx {
	struct vm vm;
	struct config cfg;
	struct pci_dev *pd;
	unsigned kind;
	uint64_t bar;
	uint16_t qsize[NQ], avail_idx[NQ];
};

static void mmio(struct fx *x, uint64_t off, uint64_t v, unsigned size, bool write, uint64_t *out)
{
	uint8_t b[8];

	io_put(b, size, v);
	bus_access(&x->vm.mmio, x->bar + off, b, size, write);
	if (out)
		*out = io_get(b, size);
}

static uint64_t rd(struct fx *x, uint64_t off, unsigned size)
{
	uint64_t v;

	mmio(x, off, 0, size, false, &v);
	return v;
}

static void wr(struct fx *x, uint64_t off, uint64_t v, unsigned size)
{
	mmio(x, off, v, size, true, NULL);
}

static void put(struct fx *x, uint64_t gpa, const void *p, size_t len)
{
	void *h = vm_gpa(&x->vm, gpa, len);

	if (h)
		memcpy(h, p, len);
}

/* Descriptor @d of queue @q: @len bytes at @addr, @flags, @next. */
static void desc(struct fx *x, unsigned q, unsigned d, uint64_t addr, uint32_t len, uint16_t flags,
		 uint16_t next)
{
	uint8_t e[16];

	memcpy(e, &addr, 8);
	memcpy(e + 8, &len, 4);
	memcpy(e + 12, &flags, 2);
	memcpy(e + 14, &next, 2);
	put(x, RING(q) + 16ULL * d, e, 16);
}

/* Which of a chain's three buffers the device writes on queue @q of this device. */
static unsigned writable(const struct fx *x, unsigned q)
{
	if (x->kind == V_BLK)
		return 6;     /* header | data, status */
	if (x->kind == V_NET) /* receive, transmit, control */
		return q == 0 ? 7 : q == 1 ? 0 : 4;
	return 7;
}

static void chains(struct fx *x, unsigned q)
{
	static const uint8_t frame[60] = { 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x52, 0x54,
					   0,	 0,    0,    1,	   0x08, 0,    0x45 };
	unsigned w = writable(x, q);

	for (unsigned c = 0; c < x->qsize[q] / 3; c++) {
		uint64_t b = BUF(q, c);
		uint8_t hdr[16] = { 0 };

		if (x->kind == V_BLK) {
			hdr[0] = c % 4 == 1 ? 1 : c % 4 == 2 ? 4 : 0; /* IN, OUT, FLUSH */
			hdr[8] = (uint8_t)c;
		}
		put(x, b, hdr, sizeof(hdr));
		put(x, b + 0x100, frame, sizeof(frame));
		for (unsigned i = 0; i < 3; i++) {
			static const uint32_t lens[3] = { 16, 512, 1 };
			uint32_t len = lens[i];
			uint64_t a = b + (i == 1 ? 0x100 : i == 2 ? 0x800 : 0);
			uint16_t fl = (uint16_t)((i < 2 ? VIRTQ_DESC_F_NEXT : 0) |
						 (w & (1U << i) ? VIRTQ_DESC_F_WRITE : 0));

			if (x->kind == V_NET && i == 0)
				len = 12; /* virtio_net_hdr with num_buffers */
			if (x->kind == V_NET && i == 1 && q == 1)
				len = sizeof(frame);
			desc(x, q, 3 * c + i, a, len, fl, (uint16_t)(3 * c + i + 1));
		}
	}
}

/* What a driver does at probe: reset, features, queues, DRIVER_OK. */
static void driver_up(struct fx *x)
{
	uint64_t feat;
	unsigned nq;

	wr(x, CC_STATUS, 0, 1);
	wr(x, CC_STATUS, VIRTIO_STATUS_ACKNOWLEDGE, 1);
	wr(x, CC_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER, 1);
	wr(x, CC_DFSELECT, 0, 4);
	feat = rd(x, CC_DF, 4);
	wr(x, CC_DFSELECT, 1, 4);
	feat |= rd(x, CC_DF, 4) << 32;
	wr(x, CC_GFSELECT, 0, 4);
	wr(x, CC_GF, (uint32_t)feat, 4);
	wr(x, CC_GFSELECT, 1, 4);
	wr(x, CC_GF, (uint32_t)(feat >> 32), 4);
	wr(x, CC_STATUS, rd(x, CC_STATUS, 1) | VIRTIO_STATUS_FEATURES_OK, 1);
	nq = (unsigned)rd(x, CC_NUMQ, 2);
	for (unsigned q = 0; q < NQ && q < nq; q++) {
		wr(x, CC_QSELECT, q, 2);
		x->qsize[q] = (uint16_t)rd(x, CC_QSIZE, 2);
		if (x->qsize[q] > 256) {
			wr(x, CC_QSIZE, 256, 2);
			x->qsize[q] = (uint16_t)rd(x, CC_QSIZE, 2);
		}
		chains(x, q);
		wr(x, CC_QDESC, RING(q), 8);
		wr(x, CC_QAVAIL, RING(q) + 0x1000, 8);
		wr(x, CC_QUSED, RING(q) + 0x2000, 8);
		wr(x, CC_QENABLE, 1, 2);
	}
	wr(x, CC_STATUS, rd(x, CC_STATUS, 1) | VIRTIO_STATUS_DRIVER_OK, 1);
}

static void notify(struct fx *x, unsigned q)
{
	wr(x, 0x3000 + 4ULL * q, q, 2);
}

static void offer(struct fx *x, unsigned q, unsigned c)
{
	uint16_t head, idx;

	if (!x->qsize[q] || x->qsize[q] < 3)
		return;
	head = (uint16_t)(3 * (c % (x->qsize[q] / 3)));
	idx = x->avail_idx[q]++;
	put(x, RING(q) + 0x1000 + 4 + 2ULL * (idx % x->qsize[q]), &head, 2);
	idx++;
	put(x, RING(q) + 0x1000 + 2, &idx, 2);
	notify(x, q);
}

/*
 * virtio-blk's requests run on the block backend's workers, which a kick only wakes; give
 * them a moment (bounded) to take what was offered, so that a pause drains completions
 * rather than leaving everything queued.
 */
static void settle(struct fx *x)
{
	const struct timespec ts = { 0, 100000 };

	for (unsigned i = 0; x->kind == V_BLK && i < 200; i++) {
		uint16_t *used = vm_gpa(&x->vm, RING(0) + 0x2002, 2);

		if (__atomic_load_n(used, __ATOMIC_ACQUIRE) == x->avail_idx[0])
			break;
		nanosleep(&ts, NULL);
	}
}

static void identity(struct fx *x)
{
	struct dev *d = &x->pd->dev;

	d->ops->pause(d);
	fz_dev_identity(d, d->ops->version, names[x->kind]);
	d->ops->resume(d);
}

static void run(struct fx *x, struct fz *f)
{
	for (unsigned n = 0; !fz_empty(f) && n < MAX_OPS; n++) {
		uint8_t op = fz_u8(f) % 10;
		size_t got;

		switch (op) {
		case 0: {
			uint64_t off = fz_u16(f) % 0x4000;
			uint32_t v = fz_u32(f);
			unsigned size = 1U << (fz_u8(f) % 4);

			wr(x, off & ~(uint64_t)(size - 1), v, size);
			break;
		}
		case 1: {
			uint64_t off = fz_u16(f) % 0x4000;
			unsigned size = 1U << (fz_u8(f) % 4);

			rd(x, off & ~(uint64_t)(size - 1), size);
			break;
		}
		case 2: {
			uint64_t off = fz_uint(f, 3) % (RAM - 256);
			const uint8_t *src = fz_bytes(f, fz_u8(f), &got);

			put(x, off, src, got);
			break;
		}
		case 3: {
			uint8_t q = fz_u8(f) % NQ;

			offer(x, q, fz_u8(f));
			break;
		}
		case 4:
			notify(x, fz_u8(f) % 4);
			break;
		case 5:
			evloop_advance(&x->vm.ev, vclock_ns(&x->vm.ev) + fz_uint(f, 3));
			break;
		case 6:
			settle(x);
			x->pd->dev.ops->pause(&x->pd->dev);
			x->pd->dev.ops->resume(&x->pd->dev);
			break;
		case 7:
			identity(x);
			break;
		case 8: {
			uint8_t off = fz_u8(f), b[4];
			uint32_t v = fz_u32(f);
			unsigned size = 1U << (fz_u8(f) % 3);

			io_put(b, size, v);
			bus_access(&x->vm.mmio,
				   PCI_ECAM_BASE + ((uint64_t)SLOT << 15) + (off & ~(size - 1U)), b,
				   size, true);
			break;
		}
		case 9: {
			const uint8_t *fr = fz_bytes(f, fz_u16(f) % 2048, &got);

			if (x->kind == V_NET && net_nb && net_nb->rx)
				net_nb->rx(net_nb->opaque, fr, got);
			break;
		}
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz f = { data, size };
	char err[256], key[64];
	struct fx x;

	memset(&x, 0, sizeof(x));
	x.kind = fz_u8(&f) % V_COUNT;
	fz_vm_init(&x.vm, &x.cfg, RAM);
	snprintf(key, sizeof(key), "pci.0.%d.0.%s", SLOT, x.kind == V_BLK ? "path" : "backend");
	if (x.kind != V_RND)
		config_set(&x.cfg, key, x.kind == V_BLK ? disk_path : "null");
	FZ_ASSERT(!pci_setup(&x.vm, err, sizeof(err)), "pci_setup: %s", err);
	x.pd = pci_dev_add(&x.vm, SLOT, 0, pci_emul_find(names[x.kind]), err, sizeof(err));
	FZ_ASSERT(x.pd, "%s: %s", names[x.kind], err);
	x.bar = pci_bar_addr(x.pd, 4);
	driver_up(&x);
	run(&x, &f);
	if (getenv("FUZZ_VERBOSE"))
		for (unsigned q = 0; q < NQ; q++) {
			uint16_t *used = vm_gpa(&x.vm, RING(q) + 0x2002, 2);

			fprintf(stderr,
				"fuzz: %s status 0x%x queue %u (size %u): %u offered, %u used\n",
				names[x.kind], (unsigned)rd(&x, CC_STATUS, 1), q, x.qsize[q],
				x.avail_idx[q], *used);
		}
	/* Whatever the input did, a paused device round-trips. */
	identity(&x);
	x.pd->dev.ops->pause(&x.pd->dev);
	vm_destroy(&x.vm);
	config_free(&x.cfg);
	return 0;
}

void fuzz_seeds(void)
{
	for (unsigned k = 0; k < V_COUNT; k++) {
		struct fz_seed s;
		char name[32];

		/* A few requests on every queue, a drain, a snapshot, more requests. */
		fz_seed_start(&s);
		fz_put(&s, k, 1);
		for (unsigned c = 0; c < 4; c++)
			for (unsigned q = 0; q < NQ; q++) {
				fz_put(&s, 3, 1);
				fz_put(&s, q, 1);
				fz_put(&s, c, 1);
			}
		fz_put(&s, 6, 1);
		fz_put(&s, 7, 1);
		fz_put(&s, 3, 1);
		fz_put(&s, 0, 1);
		fz_put(&s, 5, 1);
		if (k == V_NET) {
			static const uint8_t fr[64] = { 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x52,
							0x54, 0,    0,	  0,	2,    0x08, 0 };

			fz_put(&s, 9, 1);
			fz_put(&s, sizeof(fr), 2);
			fz_put_bytes(&s, fr, sizeof(fr));
		}
		fz_put(&s, 5, 1);
		fz_put(&s, 1000000, 3);
		snprintf(name, sizeof(name), "%s-requests", names[k]);
		fz_seed_write(&s, name);
	}
	/* Indirect descriptors: blk chain 0's head points at a table of three. */
	{
		struct fz_seed s;
		uint8_t tbl[48] = { 0 };
		uint64_t a[3] = { BUF(0, 0), BUF(0, 0) + 0x100, BUF(0, 0) + 0x800 };
		uint32_t l[3] = { 16, 512, 1 };
		uint16_t fl[3] = { VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE,
				   VIRTQ_DESC_F_WRITE };

		for (unsigned i = 0; i < 3; i++) {
			uint16_t next = (uint16_t)(i + 1);

			memcpy(tbl + 16 * i, &a[i], 8);
			memcpy(tbl + 16 * i + 8, &l[i], 4);
			memcpy(tbl + 16 * i + 12, &fl[i], 2);
			memcpy(tbl + 16 * i + 14, &next, 2);
		}
		fz_seed_start(&s);
		fz_put(&s, V_BLK, 1);
		fz_put(&s, 2, 1);
		fz_put(&s, 0x300000, 3);
		fz_put(&s, sizeof(tbl), 1);
		fz_put_bytes(&s, tbl, sizeof(tbl));
		fz_put(&s, 2, 1);
		fz_put(&s, RING(0), 3);
		fz_put(&s, 16, 1);
		fz_put(&s, 0x300000, 8);
		fz_put(&s, 48, 4);
		fz_put(&s, VIRTQ_DESC_F_INDIRECT, 2);
		fz_put(&s, 0, 2);
		fz_put(&s, 3, 1);
		fz_put(&s, 0, 1);
		fz_put(&s, 0, 1);
		fz_put(&s, 6, 1);
		fz_put(&s, 7, 1);
		fz_seed_write(&s, "virtio-blk-indirect");
	}
}
