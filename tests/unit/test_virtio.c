// SPDX-License-Identifier: BSD-2-Clause
/*
 * The virtio PCI transport, split virtqueues and virtio-rnd, driven as a guest driver would:
 * configuration space and BAR 4 through the buses, rings built by hand in guest RAM.  Also the
 * hostile cases (malformed rings must end in NEEDS_RESET, never in a crash or a stray access)
 * and the snapshot round trip.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <cmocka.h>

#include "dev/pci/pci.h"
#include "dev/virtio/virtio.h"
#include "sstream.h"
#include "vm.h"
#include "dev/virtio/virtio_pci_regs.h"

#define RAM_SIZE (1024 * 1024)
#define SLOT 4
#define QSZ 8

/* Guest-physical layout the test driver uses. */
#define DESC 0x1000
#define AVAIL 0x2000
#define USED 0x3000
#define IND 0x4000
#define BUF 0x10000

/* Registers (offsets in BAR 4). */
#define ISR 0x1000
#define DEVCFG 0x2000
#define NOTIFY 0x3000

#define F_NEXT 1
#define F_WRITE 2
#define F_INDIRECT 4

#define FEAT_V1 (1ULL << VIRTIO_F_VERSION_1)
#define FEAT_IND (1ULL << VIRTIO_F_INDIRECT_DESC)
#define FEAT_EVT (1ULL << VIRTIO_F_EVENT_IDX)

#define ST_ACK VIRTIO_STATUS_ACKNOWLEDGE
#define ST_DRV VIRTIO_STATUS_DRIVER
#define ST_FOK VIRTIO_STATUS_FEATURES_OK
#define ST_DOK VIRTIO_STATUS_DRIVER_OK
#define ST_NR VIRTIO_STATUS_NEEDS_RESET

/* ---- interrupt recorders ---- */

static int irq_level[32];
/* The GSI the device's INTA# is wired to (pci.c: the PIIX's slot/pin swizzle). */
#define INTX_GSI pci_intx_gsi(SLOT, 1)
static unsigned msi_count, msi_by_vec[8];

static void rec_irq(struct vm *vm, unsigned gsi, int level)
{
	assert_true(gsi < 32);
	irq_level[gsi] = level;
}

/* The test programs MSI-X vector v with data 0x40 + v. */
static int rec_msi(struct vm *vm, uint64_t addr, uint32_t data)
{
	assert_int_equal(addr, 0xFEE00000);
	assert_true(data >= 0x40 && data < 0x48);
	msi_count++;
	msi_by_vec[data - 0x40]++;
	return 0;
}

static void rec_clear(void)
{
	memset(irq_level, 0, sizeof(irq_level));
	msi_count = 0;
	memset(msi_by_vec, 0, sizeof(msi_by_vec));
}

/* ---- fixture: a bare VM with 1 MiB of RAM and a virtio-rnd in slot 4 ---- */

struct fx {
	struct vm vm;
	uint8_t *ram;
	struct pci_dev *pd;
	struct virtio_dev *vd;
	uint64_t bar4, bar1;
	uint16_t avail_idx; /* the driver's shadow of avail->idx */
};

static void fx_init(struct fx *f)
{
	char err[256];

	memset(f, 0, sizeof(*f));
	vm_init_bare(&f->vm, true);
	f->vm.set_irq = rec_irq;
	f->vm.send_msi = rec_msi;
	f->ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(f->ram != MAP_FAILED);
	f->vm.mem[0] = (struct mem_region){ .gpa = 0, .size = RAM_SIZE, .hva = f->ram };
	f->vm.nmem = 1;
	f->vm.ram_size = RAM_SIZE;
	if (pci_setup(&f->vm, err, sizeof(err)))
		fail_msg("pci_setup: %s", err);
	f->pd = pci_dev_add(&f->vm, SLOT, 0, &pci_emul_virtio_rnd, err, sizeof(err));
	if (!f->pd)
		fail_msg("pci_dev_add: %s", err);
	f->vd = f->pd->priv;
	f->bar4 = pci_bar_addr(f->pd, 4);
	f->bar1 = pci_bar_addr(f->pd, 1);
	assert_true(f->bar4 && f->bar1);
	rec_clear();
}

static void fx_fini(struct fx *f)
{
	vm_destroy(&f->vm); /* also unmaps the RAM */
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	fx_init(f);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fx_fini(*state);
	free(*state);
	return 0;
}

/* ---- guest accessors ---- */

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

static uint64_t ecam(unsigned reg)
{
	return PCI_ECAM_BASE + ((uint64_t)SLOT << 15) + reg;
}

static uint32_t cfg_rd(struct fx *f, unsigned reg, unsigned size)
{
	return (uint32_t)mmio_rd(f, ecam(reg), size);
}

static void cfg_wr(struct fx *f, unsigned reg, unsigned size, uint32_t v)
{
	mmio_wr(f, ecam(reg), size, v);
}

static uint64_t rd(struct fx *f, unsigned off, unsigned size)
{
	return mmio_rd(f, f->bar4 + off, size);
}

static void wr(struct fx *f, unsigned off, unsigned size, uint64_t v)
{
	mmio_wr(f, f->bar4 + off, size, v);
}

static uint8_t status(struct fx *f)
{
	return (uint8_t)rd(f, CC_STATUS, 1);
}

static void g16(struct fx *f, uint64_t gpa, uint16_t v)
{
	memcpy(f->ram + gpa, &v, 2);
}

static void g32(struct fx *f, uint64_t gpa, uint32_t v)
{
	memcpy(f->ram + gpa, &v, 4);
}

static void g64(struct fx *f, uint64_t gpa, uint64_t v)
{
	memcpy(f->ram + gpa, &v, 8);
}

static uint16_t r16(struct fx *f, uint64_t gpa)
{
	uint16_t v;

	memcpy(&v, f->ram + gpa, 2);
	return v;
}

static uint32_t r32(struct fx *f, uint64_t gpa)
{
	uint32_t v;

	memcpy(&v, f->ram + gpa, 4);
	return v;
}

static void set_desc(struct fx *f, uint64_t table, unsigned i, uint64_t addr, uint32_t len,
		     uint16_t flags, uint16_t next)
{
	uint64_t d = table + 16ULL * i;

	g64(f, d, addr);
	g32(f, d + 8, len);
	g16(f, d + 12, flags);
	g16(f, d + 14, next);
}

static void avail_add(struct fx *f, uint16_t head)
{
	g16(f, AVAIL + 4 + 2 * (f->avail_idx % QSZ), head);
	f->avail_idx++;
	g16(f, AVAIL + 2, f->avail_idx);
}

static void kick(struct fx *f)
{
	wr(f, NOTIFY, 2, 0);
}

static uint16_t used_idx(struct fx *f)
{
	return r16(f, USED + 2);
}

static uint32_t used_id(struct fx *f, unsigned i)
{
	return r32(f, USED + 4 + 8 * (i % QSZ));
}

static uint32_t used_len(struct fx *f, unsigned i)
{
	return r32(f, USED + 8 + 8 * (i % QSZ));
}

static void set_features(struct fx *f, uint64_t feat)
{
	wr(f, CC_GFSELECT, 4, 0);
	wr(f, CC_GF, 4, (uint32_t)feat);
	wr(f, CC_GFSELECT, 4, 1);
	wr(f, CC_GF, 4, (uint32_t)(feat >> 32));
}

static void queue_setup(struct fx *f, uint64_t desc, uint64_t avail, uint64_t used)
{
	wr(f, CC_QSELECT, 2, 0);
	wr(f, CC_QSIZE, 2, QSZ);
	wr(f, CC_QDESC, 4, (uint32_t)desc);
	wr(f, CC_QDESC + 4, 4, (uint32_t)(desc >> 32));
	wr(f, CC_QAVAIL, 4, (uint32_t)avail);
	wr(f, CC_QAVAIL + 4, 4, (uint32_t)(avail >> 32));
	wr(f, CC_QUSED, 4, (uint32_t)used);
	wr(f, CC_QUSED + 4, 4, (uint32_t)(used >> 32));
}

/* The driver's initialization sequence (virtio 1.x 3.1.1) with queue 0 of QSZ entries. */
static void drv_init(struct fx *f, uint64_t feat)
{
	memset(f->ram + DESC, 0, 0x4000);
	f->avail_idx = 0;
	wr(f, CC_STATUS, 1, 0);
	assert_int_equal(status(f), 0);
	wr(f, CC_STATUS, 1, ST_ACK);
	wr(f, CC_STATUS, 1, ST_ACK | ST_DRV);
	set_features(f, feat);
	wr(f, CC_STATUS, 1, ST_ACK | ST_DRV | ST_FOK);
	assert_int_equal(status(f), ST_ACK | ST_DRV | ST_FOK);
	queue_setup(f, DESC, AVAIL, USED);
	wr(f, CC_QENABLE, 2, 1);
	assert_int_equal(rd(f, CC_QENABLE, 2), 1);
	wr(f, CC_STATUS, 1, ST_ACK | ST_DRV | ST_FOK | ST_DOK);
	assert_int_equal(status(f), ST_ACK | ST_DRV | ST_FOK | ST_DOK);
}

/* MSI-X on, vector 0 for configuration changes and vector 1 for the queue. */
static void msix_on(struct fx *f)
{
	unsigned cap = f->pd->msix_cap;

	for (unsigned v = 0; v < 2; v++) {
		mmio_wr(f, f->bar1 + 16 * v, 4, 0xFEE00000);
		mmio_wr(f, f->bar1 + 16 * v + 4, 4, 0);
		mmio_wr(f, f->bar1 + 16 * v + 8, 4, 0x40 + v);
		mmio_wr(f, f->bar1 + 16 * v + 12, 4, 0);
	}
	cfg_wr(f, cap + 2, 2, 0x8000);
	wr(f, CC_MSIX, 2, 0);
	wr(f, CC_QSELECT, 2, 0);
	wr(f, CC_QMSIX, 2, 1);
	assert_int_equal(rd(f, CC_MSIX, 2), 0);
	assert_int_equal(rd(f, CC_QMSIX, 2), 1);
}

/* One writable buffer of @len bytes at BUF + 0x1000 * n, as descriptor @d: head @d. */
static void req_simple(struct fx *f, unsigned d, unsigned n, uint32_t len)
{
	memset(f->ram + BUF + 0x1000 * n, 0, len);
	set_desc(f, DESC, d, BUF + 0x1000 * n, len, F_WRITE, 0);
	avail_add(f, (uint16_t)d);
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/* ---- identity and capabilities ---- */

static void test_identity(void **state)
{
	struct fx *f = *state;
	unsigned seen = 0, c;

	assert_int_equal(cfg_rd(f, PCIR_VENDOR, 2), 0x1AF4);
	assert_int_equal(cfg_rd(f, PCIR_DEVICE, 2), 0x1040 + VIRTIO_ID_RNG);
	assert_int_equal(cfg_rd(f, PCIR_REVID, 1), 1);
	assert_int_equal(cfg_rd(f, PCIR_CLASS, 1), 0xFF);
	assert_int_equal(cfg_rd(f, PCIR_SUBVEND, 2), 0x1AF4);
	assert_true(cfg_rd(f, PCIR_SUBDEV, 2) >= 0x40);
	assert_int_equal(cfg_rd(f, PCIR_INTPIN, 1), 1);
	/* BAR 4: 64-bit memory; BAR 1: the MSI-X table. */
	assert_int_equal(cfg_rd(f, PCIR_BAR(4), 4) & 0x7, 0x4);
	assert_int_equal(pci_get_cfg16(f->pd, f->pd->msix_cap + 2) & 0x7FF, 1); /* 2 vectors */
	assert_int_equal(pci_get_cfg32(f->pd, f->pd->msix_cap + 4), 1); /* BIR 1, offset 0 */
	/* The vendor capabilities. */
	for (c = cfg_rd(f, PCIR_CAP_PTR, 1); c; c = cfg_rd(f, c + 1, 1)) {
		unsigned type;

		if (cfg_rd(f, c, 1) != PCIY_VENDOR)
			continue;
		type = cfg_rd(f, c + 3, 1);
		seen |= 1U << type;
		if (type == 5) {
			assert_int_equal(cfg_rd(f, c + 2, 1), 20);
			continue;
		}
		assert_int_equal(cfg_rd(f, c + 4, 1), 4);
		switch (type) {
		case 1:
			assert_int_equal(cfg_rd(f, c + 8, 4), 0x0000);
			assert_true(cfg_rd(f, c + 12, 4) >= 0x38);
			break;
		case 2:
			assert_int_equal(cfg_rd(f, c + 2, 1), 20);
			assert_int_equal(cfg_rd(f, c + 8, 4), 0x3000);
			assert_int_equal(cfg_rd(f, c + 16, 4), 4); /* multiplier */
			assert_true(cfg_rd(f, c + 12, 4) >= 2);
			break;
		case 3:
			assert_int_equal(cfg_rd(f, c + 8, 4), 0x1000);
			break;
		default:
			fail_msg("unexpected capability type %u", type);
		}
	}
	/* common, notify, ISR, PCI access; no device config for virtio-rnd. */
	assert_int_equal(seen, 1U << 1 | 1U << 2 | 1U << 3 | 1U << 5);
	assert_int_equal(rd(f, CC_NUMQ, 2), 1);
	assert_int_equal(rd(f, CC_QSIZE, 2), 256);
	assert_int_equal(rd(f, CC_QNOFF, 2), 0);
	assert_int_equal(rd(f, CC_MSIX, 2), VIRTIO_NO_VECTOR);
	assert_int_equal(rd(f, CC_QMSIX, 2), VIRTIO_NO_VECTOR);
	assert_int_equal(rd(f, DEVCFG, 4), 0);
	assert_non_null(pci_emul_find("virtio-rnd"));
}

/* ---- feature negotiation and device status ---- */

static void test_features(void **state)
{
	struct fx *f = *state;

	wr(f, CC_DFSELECT, 4, 0);
	assert_int_equal(rd(f, CC_DF, 4), (uint32_t)(FEAT_IND | FEAT_EVT));
	wr(f, CC_DFSELECT, 4, 1);
	assert_int_equal(rd(f, CC_DF, 4), 1); /* VERSION_1 is bit 32 */
	wr(f, CC_DFSELECT, 4, 2);
	assert_int_equal(rd(f, CC_DF, 4), 0);
	wr(f, CC_DF, 4, 0xFFFFFFFF); /* read-only */
	wr(f, CC_DFSELECT, 4, 1);
	assert_int_equal(rd(f, CC_DF, 4), 1);

	/* Out of order: DRIVER without ACKNOWLEDGE, DRIVER_OK without FEATURES_OK. */
	wr(f, CC_STATUS, 1, ST_DRV);
	assert_int_equal(status(f), 0);
	wr(f, CC_STATUS, 1, ST_ACK | ST_DRV | ST_DOK);
	assert_int_equal(status(f), ST_ACK | ST_DRV);
	/* A feature not offered: FEATURES_OK is not kept. */
	set_features(f, FEAT_V1 | 1);
	wr(f, CC_STATUS, 1, ST_ACK | ST_DRV | ST_FOK);
	assert_int_equal(status(f), ST_ACK | ST_DRV);
	/* No VERSION_1: refused too. */
	set_features(f, FEAT_IND);
	wr(f, CC_STATUS, 1, ST_ACK | ST_DRV | ST_FOK);
	assert_int_equal(status(f), ST_ACK | ST_DRV);
	/* A clean set is accepted, and then frozen. */
	set_features(f, FEAT_V1 | FEAT_IND);
	wr(f, CC_STATUS, 1, ST_ACK | ST_DRV | ST_FOK);
	assert_int_equal(status(f), ST_ACK | ST_DRV | ST_FOK);
	set_features(f, FEAT_V1 | FEAT_EVT);
	wr(f, CC_GFSELECT, 4, 0);
	assert_int_equal(rd(f, CC_GF, 4), (uint32_t)FEAT_IND);
	assert_true(virtio_has_feature(f->vd, VIRTIO_F_INDIRECT_DESC));
	assert_false(virtio_has_feature(f->vd, VIRTIO_F_EVENT_IDX));
	/* Clearing bits is not allowed; FAILED is; after FAILED only a reset helps. */
	wr(f, CC_STATUS, 1, ST_ACK);
	assert_int_equal(status(f), ST_ACK | ST_DRV | ST_FOK);
	wr(f, CC_STATUS, 1, ST_ACK | ST_DRV | ST_FOK | VIRTIO_STATUS_FAILED);
	wr(f, CC_STATUS, 1, ST_ACK | ST_DRV | ST_FOK | ST_DOK | VIRTIO_STATUS_FAILED);
	assert_int_equal(status(f), ST_ACK | ST_DRV | ST_FOK | VIRTIO_STATUS_FAILED);
	assert_false(virtio_driver_ok(f->vd));
	wr(f, CC_STATUS, 1, 0);
	assert_int_equal(status(f), 0);
	wr(f, CC_GFSELECT, 4, 0);
	assert_int_equal(rd(f, CC_GF, 4), 0);
	drv_init(f, FEAT_V1);
	assert_true(virtio_driver_ok(f->vd));
}

/* ---- common configuration corner cases ---- */

static void test_common_cfg(void **state)
{
	struct fx *f = *state;

	/* A queue that does not exist reads 0 and ignores writes. */
	wr(f, CC_QSELECT, 2, 5);
	assert_int_equal(rd(f, CC_QSELECT, 2), 5);
	assert_int_equal(rd(f, CC_QSIZE, 2), 0);
	assert_int_equal(rd(f, CC_QNOFF, 2), 0);
	wr(f, CC_QSIZE, 2, 4);
	wr(f, CC_QDESC, 4, 0x1000);
	wr(f, CC_QENABLE, 2, 1);
	assert_int_equal(rd(f, CC_QENABLE, 2), 0);
	assert_int_equal(rd(f, CC_QDESC, 4), 0);
	wr(f, CC_QSELECT, 2, 0xFFFF);
	assert_int_equal(rd(f, CC_QMSIX, 2), 0);
	/* Queue 0: sizes must be powers of two up to the maximum. */
	wr(f, CC_QSELECT, 2, 0);
	wr(f, CC_QSIZE, 2, 3);
	assert_int_equal(rd(f, CC_QSIZE, 2), 256);
	wr(f, CC_QSIZE, 2, 512);
	assert_int_equal(rd(f, CC_QSIZE, 2), 256);
	wr(f, CC_QSIZE, 2, 0);
	assert_int_equal(rd(f, CC_QSIZE, 2), 256);
	wr(f, CC_QSIZE, 2, 16);
	assert_int_equal(rd(f, CC_QSIZE, 2), 16);
	/* Vectors beyond the MSI-X table read back as NO_VECTOR. */
	wr(f, CC_QMSIX, 2, 2);
	assert_int_equal(rd(f, CC_QMSIX, 2), VIRTIO_NO_VECTOR);
	wr(f, CC_QMSIX, 2, 1);
	assert_int_equal(rd(f, CC_QMSIX, 2), 1);
	wr(f, CC_MSIX, 2, 7);
	assert_int_equal(rd(f, CC_MSIX, 2), VIRTIO_NO_VECTOR);
	/* 64-bit ring addresses: two halves or one 8-byte access. */
	wr(f, CC_QAVAIL, 8, 0x123456789ABCDEF0ULL);
	assert_int_equal(rd(f, CC_QAVAIL, 4), 0x9ABCDEF0);
	assert_int_equal(rd(f, CC_QAVAIL + 4, 4), 0x12345678);
	assert_int_equal(rd(f, CC_QAVAIL, 8), 0x123456789ABCDEF0ULL);
	/* Accesses of the wrong width or offset read 0 and write nothing. */
	assert_int_equal(rd(f, CC_QSIZE, 4), 0);
	assert_int_equal(rd(f, CC_QSIZE + 1, 1), 0);
	assert_int_equal(rd(f, CC_DF, 2), 0);
	assert_int_equal(rd(f, CC_DF + 2, 2), 0);
	wr(f, CC_QSIZE, 1, 4);
	wr(f, CC_STATUS, 4, ST_ACK);
	assert_int_equal(rd(f, CC_QSIZE, 2), 16);
	assert_int_equal(status(f), 0);
	assert_int_equal(rd(f, 0x38, 4), 0);
	assert_int_equal(rd(f, 0xFFC, 4), 0);
	assert_int_equal(rd(f, ISR + 1, 1), 0);
	assert_int_equal(rd(f, NOTIFY, 4), 0);
	assert_int_equal(rd(f, 0x3FFF, 1), 0);
	wr(f, 0x0FFF, 1, 0xFF);
	wr(f, NOTIFY + 0x100, 4, 0); /* no such queue: ignored */
	/* config_generation is read-only. */
	wr(f, CC_CFGGEN, 1, 9);
	assert_int_equal(rd(f, CC_CFGGEN, 1), 0);
	virtio_config_changed(f->vd);
	assert_int_equal(rd(f, CC_CFGGEN, 1), 1);
}

/*
 * Feature and queue registers read back as the driver set them, selectors past the two
 * feature words give 0 and take nothing, and an enabled queue keeps its layout: only its
 * MSI-X vector may still change (virtio 1.x 4.1.4.3).
 */
static void test_common_cfg_selectors(void **state)
{
	struct fx *f = *state;

	wr(f, CC_DFSELECT, 4, 1);
	assert_int_equal(rd(f, CC_DFSELECT, 4), 1);
	assert_int_equal(rd(f, CC_DF, 4) & 1, 1); /* VERSION_1 is bit 32 */
	wr(f, CC_DFSELECT, 4, 2);
	assert_int_equal(rd(f, CC_DF, 4), 0);
	wr(f, CC_GFSELECT, 4, 1);
	wr(f, CC_GF, 4, 1);
	wr(f, CC_GFSELECT, 4, 2);
	assert_int_equal(rd(f, CC_GFSELECT, 4), 2);
	wr(f, CC_GF, 4, 0xFFFFFFFF);
	assert_int_equal(rd(f, CC_GF, 4), 0);
	wr(f, CC_GFSELECT, 4, 0);
	assert_int_equal(rd(f, CC_GF, 4), 0);
	wr(f, CC_GFSELECT, 4, 1);
	assert_int_equal(rd(f, CC_GF, 4), 1);
	/* The queue: enable written 0 does nothing; once enabled, the layout is frozen. */
	drv_init(f, FEAT_V1);
	assert_int_equal(rd(f, CC_QUSED, 8), USED);
	assert_int_equal(rd(f, CC_QNOFF, 2), 0);
	wr(f, CC_QENABLE, 2, 0);
	assert_int_equal(rd(f, CC_QENABLE, 2), 1);
	wr(f, CC_QSIZE, 2, 4);
	wr(f, CC_QDESC, 4, 0x8000);
	wr(f, CC_QUSED + 4, 4, 1);
	assert_int_equal(rd(f, CC_QSIZE, 2), QSZ);
	assert_int_equal(rd(f, CC_QDESC, 8), DESC);
	assert_int_equal(rd(f, CC_QUSED, 8), USED);
	wr(f, CC_QMSIX, 2, 0);
	assert_int_equal(rd(f, CC_QMSIX, 2), 0);
	/* No device-specific configuration here: reads 0, writes are dropped. */
	assert_int_equal(rd(f, DEVCFG, 4), 0);
	wr(f, DEVCFG, 4, 0xFFFFFFFF);
	assert_int_equal(rd(f, DEVCFG, 1), 0);
}

/* The PCI configuration access capability reaches BAR 4 through configuration space. */
static void test_pci_cfg_cap(void **state)
{
	struct fx *f = *state;
	unsigned c;

	for (c = cfg_rd(f, PCIR_CAP_PTR, 1); c; c = cfg_rd(f, c + 1, 1))
		if (cfg_rd(f, c, 1) == PCIY_VENDOR && cfg_rd(f, c + 3, 1) == 5)
			break;
	assert_int_not_equal(c, 0);
	cfg_wr(f, c + 4, 1, 4);
	cfg_wr(f, c + 8, 4, CC_STATUS);
	cfg_wr(f, c + 12, 4, 1);
	cfg_wr(f, c + 16, 4, ST_ACK);
	assert_int_equal(status(f), ST_ACK);
	assert_int_equal(cfg_rd(f, c + 16, 1), ST_ACK);
	cfg_wr(f, c + 8, 4, CC_QSIZE);
	cfg_wr(f, c + 12, 4, 2);
	assert_int_equal(cfg_rd(f, c + 16, 2), 256);
	/* A misaligned or odd-length window is ignored. */
	cfg_wr(f, c + 8, 4, CC_QSIZE + 1);
	cfg_wr(f, c + 16, 2, 4);
	cfg_wr(f, c + 12, 4, 3);
	cfg_wr(f, c + 8, 4, CC_QSIZE);
	cfg_wr(f, c + 16, 4, 4);
	assert_int_equal(rd(f, CC_QSIZE, 2), 256);
	/* A length of 3, or an offset past the BAR: nothing reaches the device. */
	cfg_wr(f, c + 8, 4, CC_STATUS);
	cfg_wr(f, c + 12, 4, 3);
	cfg_wr(f, c + 16, 4, ST_ACK | ST_DRV);
	assert_int_equal(status(f), ST_ACK);
	cfg_wr(f, c + 12, 4, 1);
	cfg_wr(f, c + 8, 4, 0x4000);
	cfg_wr(f, c + 16, 4, 0);
	assert_int_equal(status(f), ST_ACK);
	assert_int_equal(cfg_rd(f, c + 16, 1), 0);
	cfg_wr(f, c + 4, 1, 1); /* other BARs are not reachable */
	cfg_wr(f, c + 12, 4, 4);
	cfg_wr(f, c + 8, 4, 0);
	assert_int_equal(cfg_rd(f, c + 16, 4), 0);
	assert_int_equal(status(f), ST_ACK);
	/* Configuration space past the capability's data is ordinary (unused: 0). */
	assert_int_equal(cfg_rd(f, 0xFC, 4), 0);
}

/* Accesses the transport does not define read as zero and change nothing. */
static void test_bar_odd_accesses(void **state)
{
	struct fx *f = *state;

	wr(f, CC_STATUS, 1, ST_ACK);
	wr(f, CC_QSELECT, 2, 0);
	/* A ring address as one aligned 8-byte access, or as two 4-byte halves. */
	wr(f, CC_QDESC, 8, 0x123456789000ULL);
	assert_int_equal(rd(f, CC_QDESC, 8), 0x123456789000ULL);
	assert_int_equal(rd(f, CC_QDESC, 4), 0x56789000);
	assert_int_equal(rd(f, CC_QDESC + 4, 4), 0x1234);
	/* 8 bytes at a 4-byte offset, or a width the register does not have: nothing. */
	assert_int_equal(rd(f, CC_QDESC + 4, 8), 0);
	wr(f, CC_QDESC + 4, 8, ~0ULL);
	assert_int_equal(rd(f, CC_QDESC, 8), 0x123456789000ULL);
	assert_int_equal(rd(f, CC_QSIZE, 4), 0);
	wr(f, CC_QSIZE, 1, 2);
	assert_int_equal(rd(f, CC_QSIZE, 2), 256);
	assert_int_equal(rd(f, CC_NUMQ, 1), 0);
	assert_int_equal(rd(f, CC_NUMQ, 2), 1);
	/* Past the common configuration, and a size no register has. */
	assert_int_equal(rd(f, 0x80, 4), 0);
	assert_int_equal(rd(f, CC_STATUS, 3), 0);
	wr(f, CC_STATUS, 3, 0);
	assert_int_equal(status(f), ST_ACK);
	/* ISR: only its first byte reads (and clears) it; virtio-rnd has no device config. */
	assert_int_equal(rd(f, ISR + 1, 1), 0);
	assert_int_equal(rd(f, DEVCFG, 4), 0);
	wr(f, DEVCFG, 4, 0x55);
	assert_int_equal(rd(f, DEVCFG, 4), 0);
	/* The unused rest of BAR 4, and another BAR's numbers through the same handler. */
	assert_int_equal(rd(f, 0x3ffc, 4), 0);
	{
		uint8_t b[4] = { 0xAA, 0xAA, 0xAA, 0xAA };

		virtio_pci_bar_io(f->pd, 1, CC_STATUS, b, 1, false);
		assert_int_equal(b[0], 0);
		b[0] = 0;
		virtio_pci_bar_io(f->pd, 1, CC_STATUS, b, 1, true);
		virtio_pci_bar_io(f->pd, 4, 0x4000, b, 4, true);
		virtio_pci_bar_io(f->pd, 4, CC_STATUS, b, 3, true);
	}
	assert_int_equal(status(f), ST_ACK);
}

/*
 * Status and queue corners: FEATURES_OK is not kept without DRIVER; 0 to queue_enable is
 * ignored; a queue left off at DRIVER_OK is not served, and once enabled after it is served
 * at once; ISR writes change nothing; an unaligned ring-address byte reads 0.
 */
static void test_status_queue_corners(void **state)
{
	struct fx *f = *state;

	memset(f->ram + DESC, 0, 0x4000);
	wr(f, CC_STATUS, 1, ST_ACK);
	set_features(f, FEAT_V1);
	wr(f, CC_STATUS, 1, ST_ACK | ST_FOK);
	assert_int_equal(status(f), ST_ACK);
	wr(f, CC_STATUS, 1, ST_ACK | ST_DRV);
	wr(f, CC_STATUS, 1, ST_ACK | ST_DRV | ST_FOK);
	assert_int_equal(status(f), ST_ACK | ST_DRV | ST_FOK);
	queue_setup(f, DESC, AVAIL, USED);
	wr(f, CC_QENABLE, 2, 0);
	assert_int_equal(rd(f, CC_QENABLE, 2), 0);
	wr(f, CC_QENABLE, 2, 2);
	assert_int_equal(rd(f, CC_QENABLE, 2), 0);
	assert_int_equal(rd(f, CC_QDESC + 1, 1), 0);
	wr(f, CC_QDESC + 1, 1, 0xFF);
	assert_int_equal(rd(f, CC_QDESC, 4), DESC);
	/* A pause and resume before DRIVER_OK serve nothing. */
	assert_int_equal(f->pd->dev.ops->pause(&f->pd->dev), 0);
	assert_int_equal(f->pd->dev.ops->resume(&f->pd->dev), 0);
	assert_int_equal(used_idx(f), 0);
	assert_int_equal(status(f), ST_ACK | ST_DRV | ST_FOK);
	/* DRIVER_OK with queue 0 still off: a buffer and a kick are not served. */
	wr(f, CC_STATUS, 1, ST_ACK | ST_DRV | ST_FOK | ST_DOK);
	assert_int_equal(status(f), ST_ACK | ST_DRV | ST_FOK | ST_DOK);
	req_simple(f, 0, 0, 32);
	kick(f);
	assert_int_equal(used_idx(f), 0);
	assert_int_equal(irq_level[INTX_GSI], 0);
	/* Enabled now: live at once, the next kick serves it. */
	wr(f, CC_QENABLE, 2, 1);
	assert_int_equal(rd(f, CC_QENABLE, 2), 1);
	kick(f);
	assert_int_equal(used_idx(f), 1);
	assert_int_equal(used_len(f, 0), 32);
	assert_false(all_zero(f->ram + BUF, 32));
	assert_int_equal(irq_level[INTX_GSI], 1);
	/* Writing the ISR neither clears it nor lowers the line; reading does. */
	wr(f, ISR, 1, 0);
	assert_int_equal(irq_level[INTX_GSI], 1);
	assert_int_equal(rd(f, ISR, 1), 1);
	assert_int_equal(irq_level[INTX_GSI], 0);
	assert_int_equal(status(f) & ST_NR, 0);
}

/* ---- requests ---- */

static void test_rnd_fills(void **state)
{
	struct fx *f = *state;

	drv_init(f, FEAT_V1);
	req_simple(f, 3, 0, 64);
	kick(f);
	assert_int_equal(used_idx(f), 1);
	assert_int_equal(used_id(f, 0), 3);
	assert_int_equal(used_len(f, 0), 64);
	assert_false(all_zero(f->ram + BUF, 64));
	/* Without MSI-X: INTx. */
	assert_int_equal(irq_level[INTX_GSI], 1);

	/* Readable buffers are skipped; two writable ones are both filled. */
	memset(f->ram + BUF + 0x1000, 0, 0x3000);
	set_desc(f, DESC, 0, BUF + 0x1000, 100, F_NEXT, 5);
	set_desc(f, DESC, 5, BUF + 0x2000, 48, F_WRITE | F_NEXT, 6);
	set_desc(f, DESC, 6, BUF + 0x3000, 16, F_WRITE, 0);
	avail_add(f, 0);
	kick(f);
	assert_int_equal(used_idx(f), 2);
	assert_int_equal(used_id(f, 1), 0);
	assert_int_equal(used_len(f, 1), 64);
	assert_true(all_zero(f->ram + BUF + 0x1000, 100));
	assert_false(all_zero(f->ram + BUF + 0x2000, 48));
	assert_false(all_zero(f->ram + BUF + 0x3000, 16));
	assert_true(all_zero(f->ram + BUF + 0x3000 + 16, 16));

	/* A zero-length buffer is allowed and carries nothing; a big one is capped at 64 KiB. */
	set_desc(f, DESC, 1, BUF, 0, F_WRITE | F_NEXT, 2);
	set_desc(f, DESC, 2, BUF + 0x20000, 200000, F_WRITE, 0);
	avail_add(f, 1);
	kick(f);
	assert_int_equal(used_idx(f), 3);
	assert_int_equal(used_len(f, 2), 65536);
	/* Wrapping around the ring. */
	for (unsigned i = 0; i < 2 * QSZ; i++) {
		req_simple(f, i % QSZ, 0, 8);
		kick(f);
	}
	assert_int_equal(used_idx(f), 3 + 2 * QSZ);
	assert_int_equal(used_id(f, 2 + 2 * QSZ), QSZ - 1);
	assert_int_equal(status(f) & ST_NR, 0);
}

/* Buffers added before DRIVER_OK are served when it comes (their kick was dropped). */
static void test_before_driver_ok(void **state)
{
	struct fx *f = *state;

	memset(f->ram + DESC, 0, 0x4000);
	wr(f, CC_STATUS, 1, ST_ACK);
	wr(f, CC_STATUS, 1, ST_ACK | ST_DRV);
	set_features(f, FEAT_V1);
	wr(f, CC_STATUS, 1, ST_ACK | ST_DRV | ST_FOK);
	queue_setup(f, DESC, AVAIL, USED);
	wr(f, CC_QENABLE, 2, 1);
	req_simple(f, 0, 0, 32);
	kick(f);
	assert_int_equal(used_idx(f), 0);
	wr(f, CC_STATUS, 1, ST_ACK | ST_DRV | ST_FOK | ST_DOK);
	assert_int_equal(used_idx(f), 1);
	/* The layout of an enabled queue is frozen. */
	wr(f, CC_QSIZE, 2, 2);
	wr(f, CC_QDESC, 4, 0x8000);
	wr(f, CC_QENABLE, 2, 0);
	assert_int_equal(rd(f, CC_QSIZE, 2), QSZ);
	assert_int_equal(rd(f, CC_QDESC, 4), DESC);
	assert_int_equal(rd(f, CC_QENABLE, 2), 1);
}

static void test_indirect(void **state)
{
	struct fx *f = *state;

	drv_init(f, FEAT_V1 | FEAT_IND);
	memset(f->ram + BUF, 0, 0x2000);
	set_desc(f, IND, 0, BUF + 0x800, 10, F_NEXT, 2); /* readable, ignored */
	set_desc(f, IND, 2, BUF, 40, F_WRITE | F_NEXT, 1);
	set_desc(f, IND, 1, BUF + 0x1000, 24, F_WRITE, 0);
	set_desc(f, DESC, 4, IND, 3 * 16, F_INDIRECT, 0);
	avail_add(f, 4);
	kick(f);
	assert_int_equal(used_idx(f), 1);
	assert_int_equal(used_id(f, 0), 4);
	assert_int_equal(used_len(f, 0), 64);
	assert_false(all_zero(f->ram + BUF, 40));
	assert_false(all_zero(f->ram + BUF + 0x1000, 24));
	assert_true(all_zero(f->ram + BUF + 0x800, 10));
	/* After direct descriptors, as the last one. */
	memset(f->ram + BUF, 0, 0x2000);
	set_desc(f, DESC, 0, BUF, 16, F_WRITE | F_NEXT, 1);
	set_desc(f, DESC, 1, IND, 16, F_INDIRECT, 0);
	set_desc(f, IND, 0, BUF + 0x1000, 16, F_WRITE, 0);
	avail_add(f, 0);
	kick(f);
	assert_int_equal(used_idx(f), 2);
	assert_int_equal(used_len(f, 1), 32);
	assert_int_equal(status(f) & ST_NR, 0);
}

/* ---- interrupts ---- */

static void test_intx_isr(void **state)
{
	struct fx *f = *state;

	drv_init(f, FEAT_V1);
	req_simple(f, 0, 0, 8);
	kick(f);
	assert_int_equal(irq_level[INTX_GSI], 1);
	assert_int_equal(pci_get_cfg16(f->pd, PCIR_STATUS) & PCIM_STATUS_INTR, PCIM_STATUS_INTR);
	assert_int_equal(rd(f, ISR, 1), 1); /* queue interrupt, read clears */
	assert_int_equal(irq_level[INTX_GSI], 0);
	assert_int_equal(rd(f, ISR, 1), 0);
	/* Configuration change: bit 1. */
	virtio_config_changed(f->vd);
	assert_int_equal(irq_level[INTX_GSI], 1);
	assert_int_equal(rd(f, ISR, 4), 2);
	assert_int_equal(irq_level[INTX_GSI], 0);
	/* NO_INTERRUPT in avail->flags suppresses queue interrupts (no EVENT_IDX). */
	g16(f, AVAIL, 1);
	req_simple(f, 0, 0, 8);
	kick(f);
	assert_int_equal(used_idx(f), 2);
	assert_int_equal(irq_level[INTX_GSI], 0);
	g16(f, AVAIL, 0);
	req_simple(f, 0, 0, 8);
	kick(f);
	assert_int_equal(irq_level[INTX_GSI], 1);
	/* A reset lowers the line. */
	wr(f, CC_STATUS, 1, 0);
	assert_int_equal(irq_level[INTX_GSI], 0);
	assert_int_equal(rd(f, ISR, 1), 0);
}

static void test_msix(void **state)
{
	struct fx *f = *state;

	drv_init(f, FEAT_V1);
	msix_on(f);
	req_simple(f, 0, 0, 8);
	kick(f);
	assert_int_equal(msi_by_vec[1], 1);
	assert_int_equal(irq_level[INTX_GSI], 0);
	virtio_config_changed(f->vd);
	assert_int_equal(msi_by_vec[0], 1);
	/* A queue without a vector gets no interrupt at all. */
	wr(f, CC_QMSIX, 2, VIRTIO_NO_VECTOR);
	req_simple(f, 0, 0, 8);
	kick(f);
	assert_int_equal(used_idx(f), 2);
	assert_int_equal(msi_count, 2);
	assert_int_equal(irq_level[INTX_GSI], 0);
	/* Nor does a configuration change without a vector, though the ISR says so. */
	(void)rd(f, ISR, 1);
	wr(f, CC_MSIX, 2, VIRTIO_NO_VECTOR);
	virtio_config_changed(f->vd);
	assert_int_equal(msi_count, 2);
	assert_int_equal(irq_level[INTX_GSI], 0);
	assert_int_equal(rd(f, ISR, 1), 2);
}

/* NEEDS_RESET interrupts once: a second cause before the reset is silent. */
static void test_needs_reset_once(void **state)
{
	struct fx *f = *state;

	drv_init(f, FEAT_V1);
	virtio_set_needs_reset(f->vd, "a test");
	assert_true(status(f) & ST_NR);
	assert_int_equal(irq_level[INTX_GSI], 1);
	assert_int_equal(rd(f, ISR, 1), 2);
	assert_int_equal(irq_level[INTX_GSI], 0);
	virtio_set_needs_reset(f->vd, "again");
	assert_true(status(f) & ST_NR);
	assert_int_equal(irq_level[INTX_GSI], 0);
	assert_int_equal(rd(f, ISR, 1), 0);
	/* A reset clears it; the device works again. */
	drv_init(f, FEAT_V1);
	assert_int_equal(status(f) & ST_NR, 0);
	req_simple(f, 0, 0, 8);
	kick(f);
	assert_int_equal(used_idx(f), 1);
}

static void test_event_idx(void **state)
{
	struct fx *f = *state;
	uint64_t used_event = AVAIL + 4 + 2 * QSZ, avail_event = USED + 4 + 8 * QSZ;

	drv_init(f, FEAT_V1 | FEAT_EVT);
	msix_on(f);
	/* First completion: always signalled. */
	req_simple(f, 0, 0, 8);
	kick(f);
	assert_int_equal(msi_by_vec[1], 1);
	assert_int_equal(r16(f, avail_event), 1); /* kick me at the next entry */
	/* The driver wants an interrupt only when used idx passes 4. */
	g16(f, used_event, 4);
	for (unsigned i = 0; i < 3; i++) {
		req_simple(f, 0, 0, 8);
		kick(f);
	}
	assert_int_equal(used_idx(f), 4);
	assert_int_equal(msi_by_vec[1], 1);
	req_simple(f, 0, 0, 8);
	kick(f);
	assert_int_equal(used_idx(f), 5);
	assert_int_equal(msi_by_vec[1], 2);
	assert_int_equal(r16(f, avail_event), 5);
	/* avail->flags are ignored with EVENT_IDX. */
	g16(f, AVAIL, 1);
	g16(f, used_event, 5);
	req_simple(f, 0, 0, 8);
	kick(f);
	assert_int_equal(msi_by_vec[1], 3);
	/* used_event far behind (already passed): no interrupt. */
	g16(f, used_event, 2);
	req_simple(f, 0, 0, 8);
	kick(f);
	assert_int_equal(msi_by_vec[1], 3);
}

/* The virtqueue API a device uses, directly. */
static void test_vq_api(void **state)
{
	struct fx *f = *state;
	struct virtqueue *vq = &f->vd->vq[0];
	struct virtio_chain *c = calloc(1, sizeof(*c));
	uint8_t out[16];

	drv_init(f, FEAT_V1);
	assert_true(vq_ready(vq));
	assert_false(vq_has_work(vq));
	assert_int_equal(vq_pop(vq, c), 0);
	vq_set_notify(vq, false);
	assert_int_equal(r16(f, USED), 1); /* VRING_USED_F_NO_NOTIFY */
	vq_set_notify(vq, true);
	assert_int_equal(r16(f, USED), 0);
	/* A chain of 3 readable (5 + 0 + 7 bytes) and 2 writable (3 + 9 bytes) buffers. */
	memcpy(f->ram + BUF, "hello", 5);
	memcpy(f->ram + BUF + 0x100, " world!", 7);
	set_desc(f, DESC, 0, BUF, 5, F_NEXT, 1);
	set_desc(f, DESC, 1, BUF + 0x80, 0, F_NEXT, 2);
	set_desc(f, DESC, 2, BUF + 0x100, 7, F_NEXT, 3);
	set_desc(f, DESC, 3, BUF + 0x200, 3, F_WRITE | F_NEXT, 4);
	set_desc(f, DESC, 4, BUF + 0x300, 9, F_WRITE, 0);
	avail_add(f, 0);
	assert_true(vq_has_work(vq));
	assert_int_equal(vq_pop(vq, c), 1);
	assert_int_equal(c->head, 0);
	assert_int_equal(c->nread, 2);
	assert_int_equal(c->nwrite, 2);
	assert_int_equal(c->read_len, 12);
	assert_int_equal(c->write_len, 12);
	memset(out, 0, sizeof(out));
	assert_int_equal(chain_read(c, 0, out, sizeof(out)), 12);
	assert_memory_equal(out, "hello world!", 12);
	assert_int_equal(chain_read(c, 3, out, 4), 4);
	assert_memory_equal(out, "lo w", 4);
	assert_int_equal(chain_read(c, 20, out, 4), 0);
	assert_int_equal(chain_write(c, 1, "ABCDEFGHIJKLMNOP", 16), 11);
	assert_memory_equal(f->ram + BUF + 0x201, "AB", 2);
	assert_memory_equal(f->ram + BUF + 0x300, "CDEFGHIJK", 9);
	assert_false(vq_has_work(vq));
	vq_push(vq, c->head, 12);
	vq_push(vq, QSZ, 0); /* a device bug: ignored */
	assert_int_equal(used_idx(f), 1);
	assert_int_equal(used_len(f, 0), 12);
	vq_notify(vq);
	assert_int_equal(irq_level[INTX_GSI], 1);
	vq_notify(vq); /* nothing new */
	assert_int_equal(rd(f, ISR, 1), 1);
	vq_notify(vq);
	assert_int_equal(irq_level[INTX_GSI], 0);
	free(c);
}

/* ---- hostile rings ---- */

/* Each builds one malformed request; the kick must end in NEEDS_RESET with nothing used. */
static void bad_head(struct fx *f)
{
	set_desc(f, DESC, 0, BUF, 8, F_WRITE, 0);
	avail_add(f, QSZ);
}

static void bad_next(struct fx *f)
{
	set_desc(f, DESC, 0, BUF, 8, F_WRITE | F_NEXT, 200);
	avail_add(f, 0);
}

static void bad_loop(struct fx *f)
{
	set_desc(f, DESC, 0, BUF, 8, F_WRITE | F_NEXT, 1);
	set_desc(f, DESC, 1, BUF, 8, F_WRITE | F_NEXT, 0);
	avail_add(f, 0);
}

static void bad_long_chain(struct fx *f)
{
	for (unsigned i = 0; i < QSZ; i++)
		set_desc(f, DESC, i, BUF, 8, F_WRITE | F_NEXT, (uint16_t)((i + 1) % QSZ));
	avail_add(f, 3);
}

static void bad_outside_ram(struct fx *f)
{
	set_desc(f, DESC, 0, RAM_SIZE - 4, 8, F_WRITE, 0);
	avail_add(f, 0);
}

static void bad_overflow(struct fx *f)
{
	set_desc(f, DESC, 0, 0xFFFFFFFFFFFFFFF0ULL, 0x100, F_WRITE, 0);
	avail_add(f, 0);
}

static void bad_read_after_write(struct fx *f)
{
	set_desc(f, DESC, 0, BUF, 8, F_WRITE | F_NEXT, 1);
	set_desc(f, DESC, 1, BUF + 8, 8, 0, 0);
	avail_add(f, 0);
}

static void bad_nested_indirect(struct fx *f)
{
	set_desc(f, IND, 0, IND + 0x100, 16, F_INDIRECT, 0);
	set_desc(f, IND + 0x100, 0, BUF, 8, F_WRITE, 0);
	set_desc(f, DESC, 0, IND, 16, F_INDIRECT, 0);
	avail_add(f, 0);
}

static void bad_indirect_len(struct fx *f)
{
	set_desc(f, IND, 0, BUF, 8, F_WRITE, 0);
	set_desc(f, DESC, 0, IND, 24, F_INDIRECT, 0);
	avail_add(f, 0);
}

static void bad_indirect_next(struct fx *f)
{
	set_desc(f, IND, 0, BUF, 8, F_WRITE, 0);
	set_desc(f, DESC, 0, IND, 16, F_INDIRECT | F_NEXT, 1);
	set_desc(f, DESC, 1, BUF, 8, F_WRITE, 0);
	avail_add(f, 0);
}

static void bad_indirect_loop(struct fx *f)
{
	set_desc(f, IND, 0, BUF, 8, F_WRITE | F_NEXT, 1);
	set_desc(f, IND, 1, BUF, 8, F_WRITE | F_NEXT, 0);
	set_desc(f, DESC, 0, IND, 32, F_INDIRECT, 0);
	avail_add(f, 0);
}

static void bad_indirect_index(struct fx *f)
{
	set_desc(f, IND, 0, BUF, 8, F_WRITE | F_NEXT, 2);
	set_desc(f, DESC, 0, IND, 32, F_INDIRECT, 0);
	avail_add(f, 0);
}

static void bad_indirect_outside(struct fx *f)
{
	set_desc(f, DESC, 0, RAM_SIZE - 16, 32, F_INDIRECT, 0);
	avail_add(f, 0);
}

static void bad_avail_jump(struct fx *f)
{
	for (unsigned i = 0; i < QSZ; i++)
		set_desc(f, DESC, i, BUF, 8, F_WRITE, 0);
	f->avail_idx = QSZ + 1;
	g16(f, AVAIL + 2, f->avail_idx);
}

static const struct {
	const char *name;
	void (*build)(struct fx *f);
	uint64_t feat;
} bad_rings[] = {
	{ "head >= size", bad_head, FEAT_IND },
	{ "next >= size", bad_next, FEAT_IND },
	{ "next loop", bad_loop, FEAT_IND },
	{ "chain longer than size", bad_long_chain, FEAT_IND },
	{ "buffer outside RAM", bad_outside_ram, FEAT_IND },
	{ "addr + len overflows", bad_overflow, FEAT_IND },
	{ "readable after writable", bad_read_after_write, FEAT_IND },
	{ "nested indirect", bad_nested_indirect, FEAT_IND },
	{ "indirect length % 16", bad_indirect_len, FEAT_IND },
	{ "indirect with NEXT", bad_indirect_next, FEAT_IND },
	{ "indirect loop", bad_indirect_loop, FEAT_IND },
	{ "indirect index", bad_indirect_index, FEAT_IND },
	{ "indirect table outside RAM", bad_indirect_outside, FEAT_IND },
	{ "indirect not negotiated", bad_nested_indirect, 0 },
	{ "avail idx jumps", bad_avail_jump, FEAT_IND },
};

static void test_malformed_rings(void **state)
{
	struct fx *f = *state;

	for (size_t i = 0; i < sizeof(bad_rings) / sizeof(bad_rings[0]); i++) {
		print_message("  %s\n", bad_rings[i].name);
		rec_clear();
		drv_init(f, FEAT_V1 | bad_rings[i].feat);
		msix_on(f);
		memset(f->ram + BUF, 0, 0x100);
		bad_rings[i].build(f);
		kick(f);
		assert_int_equal(status(f), ST_ACK | ST_DRV | ST_FOK | ST_DOK | ST_NR);
		assert_int_equal(used_idx(f), 0);
		assert_true(all_zero(f->ram + BUF, 0x100));
		assert_int_equal(msi_by_vec[0], 1); /* configuration change */
		assert_int_equal(msi_by_vec[1], 0);
		assert_false(vq_ready(&f->vd->vq[0]));
		/* The queue stays dead: more kicks do nothing and raise nothing. */
		req_simple(f, 0, 0, 8);
		kick(f);
		assert_int_equal(used_idx(f), 0);
		assert_int_equal(msi_count, 1);
		/* A reset clears NEEDS_RESET and the device works again. */
		drv_init(f, FEAT_V1);
		req_simple(f, 0, 0, 16);
		kick(f);
		assert_int_equal(used_idx(f), 1);
		assert_int_equal(used_len(f, 0), 16);
		assert_int_equal(status(f) & ST_NR, 0);
	}
}

/* Rings that are not in RAM (or misaligned) at queue_enable: NEEDS_RESET, queue off. */
static void test_bad_queue_enable(void **state)
{
	struct fx *f = *state;
	static const uint64_t bad[][3] = {
		{ RAM_SIZE, AVAIL, USED },
		{ DESC, RAM_SIZE - 4, USED },
		{ DESC, AVAIL, RAM_SIZE - 4 - 8 * QSZ }, /* avail_event falls outside */
		{ DESC, RAM_SIZE - 4 - 2 * QSZ, USED },	 /* used_event falls outside */
		{ DESC + 8, AVAIL, USED },
		{ DESC, AVAIL + 1, USED },
		{ DESC, AVAIL, USED + 2 },
		{ 0xFFFFFFFFFFFFFFF0ULL, AVAIL, USED },
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		wr(f, CC_STATUS, 1, 0);
		wr(f, CC_STATUS, 1, ST_ACK | ST_DRV);
		set_features(f, FEAT_V1);
		wr(f, CC_STATUS, 1, ST_ACK | ST_DRV | ST_FOK);
		queue_setup(f, bad[i][0], bad[i][1], bad[i][2]);
		wr(f, CC_QENABLE, 2, 1);
		assert_int_equal(rd(f, CC_QENABLE, 2), 0);
		assert_int_equal(status(f), ST_ACK | ST_DRV | ST_FOK | ST_NR);
	}
	/* The exact fit at the end of RAM is fine. */
	wr(f, CC_STATUS, 1, 0);
	wr(f, CC_STATUS, 1, ST_ACK | ST_DRV);
	set_features(f, FEAT_V1);
	wr(f, CC_STATUS, 1, ST_ACK | ST_DRV | ST_FOK);
	queue_setup(f, RAM_SIZE - 16 * QSZ, RAM_SIZE - 16 * QSZ - 6 - 2 * QSZ,
		    RAM_SIZE - 16 * QSZ - 256);
	wr(f, CC_QENABLE, 2, 1);
	assert_int_equal(rd(f, CC_QENABLE, 2), 1);
	assert_int_equal(status(f) & ST_NR, 0);
}

/* ---- snapshots ---- */

static int dev_save(struct fx *f, uint8_t **buf, size_t *len)
{
	struct sstream s;
	int ret;

	ss_init_save(&s);
	ret = f->pd->dev.ops->save(&f->pd->dev, &s);
	*buf = ret ? NULL : malloc(s.len);
	if (!ret)
		memcpy(*buf, s.buf, s.len);
	*len = s.len;
	ss_free(&s);
	return ret;
}

static int dev_load(struct fx *f, const uint8_t *buf, size_t len)
{
	struct sstream s;
	int ret;

	ss_init_load(&s, buf, len);
	ret = f->pd->dev.ops->load(&f->pd->dev, &s, f->pd->dev.ops->version);
	ss_free(&s);
	return ret;
}

/* The transport's state is the last 72 bytes of virtio-rnd's section (see virtio_pci.c). */
#define VST 72
#define VST_STATUS 20
#define VST_ISR 21
#define VST_QSIZE 27
#define VST_QMSIX 30
#define VST_QDESC 32
#define VST_LAST_AVAIL 56
#define VST_DEVVER 64
#define VST_DEVLEN 68

static void test_snapshot(void **state)
{
	struct fx *f = *state, *g = calloc(1, sizeof(*g));
	uint8_t *s1, *s2, *s3, *b;
	size_t n1, n2, n3;
	struct virtio_chain *c = calloc(1, sizeof(*c));

	drv_init(f, FEAT_V1 | FEAT_EVT | FEAT_IND);
	msix_on(f);
	for (unsigned i = 0; i < 3; i++) {
		req_simple(f, i, i, 32);
		kick(f);
	}
	assert_int_equal(f->pd->dev.ops->pause(&f->pd->dev), 0);
	assert_int_equal(dev_save(f, &s1, &n1), 0);

	/* A fresh machine: RAM restored first, then the device. */
	fx_init(g);
	memcpy(g->ram, f->ram, RAM_SIZE);
	g->avail_idx = f->avail_idx;
	assert_int_equal(dev_load(g, s1, n1), 0);
	assert_int_equal(g->pd->dev.ops->resume(&g->pd->dev), 0);
	assert_int_equal(dev_save(g, &s2, &n2), 0);
	assert_int_equal(n1, n2);
	assert_memory_equal(s1, s2, n1);
	/* The guest's view and the device's progress carried over. */
	assert_int_equal(status(g), ST_ACK | ST_DRV | ST_FOK | ST_DOK);
	assert_int_equal(rd(g, CC_QSIZE, 2), QSZ);
	assert_int_equal(rd(g, CC_QDESC, 4), DESC);
	assert_int_equal(rd(g, CC_QMSIX, 2), 1);
	assert_true(virtio_has_feature(g->vd, VIRTIO_F_EVENT_IDX));
	assert_int_equal(g->vd->vq[0].last_avail, 3);
	g16(g, AVAIL + 4 + 2 * QSZ, 3); /* used_event: interrupt for the next one */
	req_simple(g, 5, 5, 32);
	kick(g);
	assert_int_equal(used_idx(g), 4);
	assert_int_equal(used_id(g, 3), 5);
	assert_false(all_zero(g->ram + BUF + 0x5000, 32));
	assert_int_equal(msi_by_vec[1], 1);
	assert_int_equal(used_idx(f), 3); /* the source's RAM is its own */
	free(s2);
	assert_int_equal(dev_save(g, &s2, &n2), 0);

	/* Damaged streams are refused and change nothing. */
	b = malloc(n1 + 1);
	for (size_t n = 0; n < n1; n++)
		assert_int_not_equal(dev_load(g, s1, n), 0);
	memcpy(b, s1, n1);
	b[n1] = 0;
	assert_int_not_equal(dev_load(g, b, n1 + 1), 0);
#define DAMAGE(off, val)                                       \
	do {                                                   \
		memcpy(b, s1, n1);                             \
		b[n1 - VST + (off)] = (val);                   \
		assert_int_equal(dev_load(g, b, n1), -EINVAL); \
	} while (0)
	DAMAGE(VST_QSIZE, 3);	  /* not a power of two */
	DAMAGE(VST_QSIZE + 1, 1); /* 264 */
	DAMAGE(VST_QSIZE, 0);
	DAMAGE(VST_QMSIX, 5);					      /* no such vector */
	DAMAGE(VST_QDESC + 3, 0x10);				      /* rings outside RAM */
	DAMAGE(VST_QDESC, 8);					      /* misaligned */
	DAMAGE(VST_LAST_AVAIL, 2);				      /* a request in flight */
	DAMAGE(VST_STATUS, ST_ACK | ST_DOK);			      /* unreachable status */
	DAMAGE(VST_STATUS, ST_ACK | ST_DRV | ST_FOK | ST_DOK | 0x10); /* a reserved bit */
	DAMAGE(VST_STATUS, ST_DRV | ST_FOK | ST_DOK); /* DRIVER without ACKNOWLEDGE */
	DAMAGE(VST_STATUS, ST_ACK | ST_FOK | ST_DOK); /* FEATURES_OK without DRIVER */
	DAMAGE(4, 0);  /* features accepted without VERSION_1 (bit 32) */
	DAMAGE(18, 5); /* the configuration's MSI-X vector: no such vector */
	DAMAGE(VST_ISR, 4);
	DAMAGE(VST_DEVVER, 2); /* newer than virtio-rnd knows */
	DAMAGE(VST_DEVLEN, 1); /* device block longer than the stream */
	DAMAGE(0, 1);	       /* a feature not offered */
#undef DAMAGE
	/* A device block that virtio-rnd does not expect (it has no state). */
	memcpy(b, s1, n1);
	b[n1 - VST + VST_DEVLEN] = 1;
	b[n1] = 0;
	assert_int_equal(dev_load(g, b, n1 + 1), -EINVAL);
	free(b);
	assert_int_equal(dev_save(g, &s3, &n3), 0);
	assert_int_equal(n2, n3);
	assert_memory_equal(s2, s3, n2);
	free(s3);

	/* A chain taken and not returned cannot be saved. */
	assert_int_equal(g->vd->vq[0].last_avail, 4);
	req_simple(g, 6, 6, 32);
	assert_int_equal(vq_pop(&g->vd->vq[0], c), 1);
	assert_int_equal(dev_save(g, &s3, &n3), -EBUSY);
	vq_push(&g->vd->vq[0], c->head, 0);
	assert_int_equal(dev_save(g, &s3, &n3), 0);
	free(s3);

	free(s1);
	free(s2);
	free(c);
	fx_fini(g);
	free(g);
}

/* A device in NEEDS_RESET with a broken queue is saved and restored as such. */
static void test_snapshot_broken(void **state)
{
	struct fx *f = *state, *g = calloc(1, sizeof(*g));
	uint8_t *s1, *s2;
	size_t n1, n2;

	drv_init(f, FEAT_V1 | FEAT_IND);
	bad_loop(f);
	kick(f);
	assert_true(status(f) & ST_NR);
	assert_int_equal(dev_save(f, &s1, &n1), 0);
	fx_init(g);
	memcpy(g->ram, f->ram, RAM_SIZE);
	assert_int_equal(dev_load(g, s1, n1), 0);
	assert_int_equal(g->pd->dev.ops->resume(&g->pd->dev), 0);
	assert_true(status(g) & ST_NR);
	assert_false(vq_ready(&g->vd->vq[0]));
	assert_int_equal(dev_save(g, &s2, &n2), 0);
	assert_int_equal(n1, n2);
	assert_memory_equal(s1, s2, n1);
	/* And the restored device recovers with a reset. */
	g->avail_idx = 0;
	drv_init(g, FEAT_V1);
	req_simple(g, 0, 0, 8);
	kick(g);
	assert_int_equal(used_idx(g), 1);
	free(s1);
	free(s2);
	fx_fini(g);
	free(g);
}

/*
 * A queue that breaks while a chain of it is in flight (a device worker holds it): the chain is
 * abandoned, the device can still be saved (it could not: EBUSY for ever, until the guest reset
 * the device) and restored as it is, and the completion that comes late goes nowhere.
 */
static void test_stuck_queue(void **state)
{
	struct fx *f = *state, *g = calloc(1, sizeof(*g));
	struct virtio_chain *c = malloc(sizeof(*c));
	uint8_t *s1, *s2;
	size_t n1, n2;

	drv_init(f, FEAT_V1);
	req_simple(f, 0, 0, 16);
	assert_int_equal(vq_pop(&f->vd->vq[0], c), 1);
	virtio_set_needs_reset(f->vd, "test: the queue broke");
	assert_true(status(f) & ST_NR);
	vq_push(&f->vd->vq[0], c->head, 16);
	assert_int_equal(used_idx(f), 0);
	assert_int_equal(dev_save(f, &s1, &n1), 0);
	fx_init(g);
	memcpy(g->ram, f->ram, RAM_SIZE);
	assert_int_equal(dev_load(g, s1, n1), 0);
	assert_int_equal(g->pd->dev.ops->resume(&g->pd->dev), 0);
	assert_true(status(g) & ST_NR);
	assert_false(vq_ready(&g->vd->vq[0]));
	assert_int_equal(dev_save(g, &s2, &n2), 0);
	assert_int_equal(n1, n2);
	assert_memory_equal(s1, s2, n1);
	free(s2);
	/* A working queue with a chain in flight is still refused, by save and by load. */
	drv_init(g, FEAT_V1);
	req_simple(g, 0, 0, 16);
	assert_int_equal(vq_pop(&g->vd->vq[0], c), 1);
	assert_int_equal(dev_save(g, &s2, &n2), -EBUSY);
	vq_push(&g->vd->vq[0], c->head, 16);
	assert_int_equal(used_idx(g), 1);
	free(s1);
	free(c);
	fx_fini(g);
	free(g);
}

/*
 * A worker still holding a chain when the driver resets the device and sets the queue up
 * again must not complete into the new ring: the head it holds may be in use there already.
 */
static void test_no_completion_across_reset(void **state)
{
	struct fx *f = *state;
	struct virtio_chain *c = malloc(sizeof(*c));

	drv_init(f, FEAT_V1);
	req_simple(f, 0, 0, 16);
	assert_int_equal(vq_pop(&f->vd->vq[0], c), 1);
	drv_init(f, FEAT_V1); /* reset, features, queue, DRIVER_OK */
	req_simple(f, 0, 1, 64);
	vq_push(&f->vd->vq[0], c->head, 16);
	assert_int_equal(used_idx(f), 0);
	/* Re-enabling alone (no reset) is a new generation too: nothing was taken in it. */
	vq_push(&f->vd->vq[0], 0, 16);
	assert_int_equal(used_idx(f), 0);
	kick(f);
	assert_int_equal(used_idx(f), 1);
	assert_int_equal(used_id(f, 0), 0);
	assert_int_equal(used_len(f, 0), 64);
	/* A head the driver offers again while it is in flight breaks the ring. */
	req_simple(f, 2, 2, 8);
	avail_add(f, 2);
	assert_int_equal(vq_pop(&f->vd->vq[0], c), 1);
	assert_int_equal(vq_pop(&f->vd->vq[0], c), -EINVAL);
	assert_true(status(f) & ST_NR);
	free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_identity, setup, teardown),
		cmocka_unit_test_setup_teardown(test_features, setup, teardown),
		cmocka_unit_test_setup_teardown(test_common_cfg, setup, teardown),
		cmocka_unit_test_setup_teardown(test_common_cfg_selectors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pci_cfg_cap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_status_queue_corners, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rnd_fills, setup, teardown),
		cmocka_unit_test_setup_teardown(test_before_driver_ok, setup, teardown),
		cmocka_unit_test_setup_teardown(test_indirect, setup, teardown),
		cmocka_unit_test_setup_teardown(test_intx_isr, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bar_odd_accesses, setup, teardown),
		cmocka_unit_test_setup_teardown(test_msix, setup, teardown),
		cmocka_unit_test_setup_teardown(test_needs_reset_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_event_idx, setup, teardown),
		cmocka_unit_test_setup_teardown(test_vq_api, setup, teardown),
		cmocka_unit_test_setup_teardown(test_malformed_rings, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_queue_enable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_broken, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stuck_queue, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_completion_across_reset, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
