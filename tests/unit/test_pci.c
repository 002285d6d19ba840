// SPDX-License-Identifier: BSD-2-Clause
/* PCI bus 0 as a guest sees it: config access, BARs, INTx, MSI/MSI-X, setup errors, snapshot. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "bus.h"
#include "config.h"
#include "dev/dev.h"
#include "dev/pci/pci.h"
#include "dev/pc/pm.h"
#include "sstream.h"
#include "vm.h"

/* ---- interrupt recorders ---- */

static int irq_level[32];
static unsigned irq_calls[32];
static unsigned msi_count;
static uint64_t msi_addr;
static uint32_t msi_data;

static void rec_irq(struct vm *vm, unsigned gsi, int level)
{
	assert_true(gsi < 32);
	irq_calls[gsi]++;
	irq_level[gsi] = level;
}

static int rec_msi(struct vm *vm, uint64_t addr, uint32_t data)
{
	msi_count++;
	msi_addr = addr;
	msi_data = data;
	return 0;
}

/* ---- a test device: three BARs, MSI-X in BAR 4, MSI, INTA, and a bit of state ---- */

struct tdev {
	int last_bar;
	uint64_t last_off;
	unsigned ios;
	uint32_t state;
};

static void tdev_bar_io(struct pci_dev *pd, int bar, uint64_t off, void *data, unsigned size,
			bool is_write)
{
	struct tdev *t = pd->priv;

	t->last_bar = bar;
	t->last_off = off;
	t->ios++;
	if (!is_write)
		io_put(data, size, 0xA5000000U | (uint32_t)bar << 16 | (uint32_t)off);
}

static int tdev_init(struct vm *vm, struct pci_dev *pd, const char *opts, char *err, size_t errlen)
{
	struct tdev *t = calloc(1, sizeof(*t));

	pd->priv = t;
	pci_set_ids(pd, 0x1af4, 0x10ff, 0xff, 0x00, 0x00, 0x01);
	assert_int_equal(pci_bar_declare(pd, 0, PCI_BAR_MEM32, 4000, false), 0);
	assert_int_equal(pci_bar_declare(pd, 1, PCI_BAR_IO, 32, false), 0);
	assert_int_equal(pci_bar_declare(pd, 2, PCI_BAR_MEM64, 1 << 20, true), 0);
	assert_int_equal(pci_bar_declare(pd, 3, PCI_BAR_IO, 4, false), -EBUSY);
	assert_int_equal(pci_msix_init(pd, 4, 4), 0);
	assert_int_equal(pci_msi_init(pd, 2), 0);
	assert_int_equal(pci_intx_init(pd, 1), 0);
	return 0;
}

static int tdev_save(struct pci_dev *pd, struct sstream *s)
{
	struct tdev *t = pd->priv;

	ss_u32(s, &t->state);
	return ss_error(s);
}

static int tdev_load(struct pci_dev *pd, struct sstream *s, unsigned version)
{
	struct tdev *t = pd->priv;
	uint32_t v = 0;

	ss_u32(s, &v);
	ss_check_max(s, v, 1000, "tdev state");
	if (ss_finish(s))
		return ss_error(s);
	t->state = v;
	return 0;
}

static void tdev_destroy(struct pci_dev *pd)
{
	free(pd->priv);
}

static const struct pci_emul tdev_emul = {
	.name = "tdev",
	.version = 1,
	.init = tdev_init,
	.bar_io = tdev_bar_io,
	.save = tdev_save,
	.load = tdev_load,
	.destroy = tdev_destroy,
};

/* ---- fixture ---- */

struct fixture {
	struct vm vm;
	struct config cfg;
};

static void fx_init(struct fixture *f, const char *const *keys, bool with_pm)
{
	char err[256];

	vm_init_bare(&f->vm, true);
	config_init(&f->cfg);
	f->vm.cfg = &f->cfg;
	f->vm.set_irq = rec_irq;
	f->vm.send_msi = rec_msi;
	for (; keys && *keys; keys++)
		assert_int_equal(config_set_pair(&f->cfg, *keys), 0);
	if (with_pm)
		assert_non_null(pm_create(&f->vm, err, sizeof(err)));
	if (pci_setup(&f->vm, err, sizeof(err)))
		fail_msg("pci_setup: %s", err);
}

static void fx_fini(struct fixture *f)
{
	vm_destroy(&f->vm);
	config_free(&f->cfg);
}

static const char *const std_keys[] = {
	"pci.0.0.0.device=hostbridge",
	"pci.0.31.0.device=lpc",
	NULL,
};

/* hostbridge, lpc and test devices in slots 3 and 4 (added in this order). */
static void fx_std(struct fixture *f)
{
	char err[256];

	fx_init(f, std_keys, true);
	assert_non_null(pci_dev_add(&f->vm, 3, 0, &tdev_emul, err, sizeof(err)));
	assert_non_null(pci_dev_add(&f->vm, 4, 0, &tdev_emul, err, sizeof(err)));
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	memset(irq_level, 0, sizeof(irq_level));
	memset(irq_calls, 0, sizeof(irq_calls));
	msi_count = 0;
	fx_std(f);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	fx_fini(f);
	free(f);
	return 0;
}

/* ---- guest access helpers ---- */

static uint32_t pio_in(struct vm *vm, uint16_t port, unsigned size)
{
	uint8_t b[4];

	bus_access(&vm->pio, port, b, size, false);
	return (uint32_t)io_get(b, size);
}

static void pio_out(struct vm *vm, uint16_t port, unsigned size, uint32_t v)
{
	uint8_t b[4];

	io_put(b, size, v);
	bus_access(&vm->pio, port, b, size, true);
}

static uint64_t mmio_rd(struct vm *vm, uint64_t addr, unsigned size)
{
	uint8_t b[8];

	bus_access(&vm->mmio, addr, b, size, false);
	return io_get(b, size);
}

static void mmio_wr(struct vm *vm, uint64_t addr, unsigned size, uint64_t v)
{
	uint8_t b[8];

	io_put(b, size, v);
	bus_access(&vm->mmio, addr, b, size, true);
}

static uint32_t cf8_addr(unsigned slot, unsigned func, unsigned reg)
{
	return 0x80000000U | slot << 11 | func << 8 | (reg & 0xFC);
}

/* Mechanism #1. */
static uint32_t cfg_in(struct vm *vm, unsigned slot, unsigned reg, unsigned size)
{
	pio_out(vm, 0xCF8, 4, cf8_addr(slot, 0, reg));
	return pio_in(vm, (uint16_t)(0xCFC + (reg & 3)), size);
}

static void cfg_out(struct vm *vm, unsigned slot, unsigned reg, unsigned size, uint32_t v)
{
	pio_out(vm, 0xCF8, 4, cf8_addr(slot, 0, reg));
	pio_out(vm, (uint16_t)(0xCFC + (reg & 3)), size, v);
}

/* ECAM. */
static uint64_t ecam(unsigned slot, unsigned func, unsigned reg)
{
	return PCI_ECAM_BASE + ((uint64_t)slot << 15) + ((uint64_t)func << 12) + reg;
}

/* ---- tests ---- */

static void test_ids(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(cfg_in(&f->vm, 0, 0, 4), 0x12751275);
	assert_int_equal(cfg_in(&f->vm, 0, 8, 4), 0x06000000);
	assert_int_equal(cfg_in(&f->vm, 31, 0, 4), 0x70008086);
	assert_int_equal(cfg_in(&f->vm, 31, 2, 2), 0x7000);
	assert_int_equal(cfg_in(&f->vm, 31, 0xB, 1), 0x06);
	assert_int_equal(cfg_in(&f->vm, 31, 0xA, 1), 0x01);
	assert_int_equal(mmio_rd(&f->vm, ecam(0, 0, 0), 4), 0x12751275);
	assert_int_equal(mmio_rd(&f->vm, ecam(31, 0, 0), 4), 0x70008086);
	assert_int_equal(mmio_rd(&f->vm, ecam(31, 0, 8), 4), 0x06010000);
	assert_int_equal(mmio_rd(&f->vm, ecam(31, 0, 2), 2), 0x7000);
	assert_int_equal(mmio_rd(&f->vm, ecam(31, 0, 0), 8),
			 0x0000000070008086ULL | (uint64_t)cfg_in(&f->vm, 31, 4, 4) << 32);
	/* Absent functions, disabled CF8, other buses: all-ones. */
	assert_int_equal(cfg_in(&f->vm, 5, 0, 4), 0xFFFFFFFF);
	assert_int_equal(mmio_rd(&f->vm, ecam(5, 0, 0), 4), 0xFFFFFFFF);
	assert_int_equal(mmio_rd(&f->vm, ecam(0, 1, 0), 2), 0xFFFF);
	pio_out(&f->vm, 0xCF8, 4, 0x00000000);
	assert_int_equal(pio_in(&f->vm, 0xCFC, 4), 0xFFFFFFFF);
	pio_out(&f->vm, 0xCF8, 4, 0x80010000);
	assert_int_equal(pio_in(&f->vm, 0xCFC, 4), 0xFFFFFFFF);
	/* The address register reads back, without its reserved bits. */
	pio_out(&f->vm, 0xCF8, 4, 0xFF00F803);
	assert_int_equal(pio_in(&f->vm, 0xCF8, 4), 0x8000F800);
	/* Extended config space of a present function reads 0. */
	assert_int_equal(mmio_rd(&f->vm, ecam(0, 0, 0x100), 4), 0);
	/* No multi-function bit on single-function slots. */
	assert_int_equal(cfg_in(&f->vm, 31, 0xE, 1), 0);
	assert_true(pci_slot_used(&f->vm, 31, 0));
	assert_false(pci_slot_used(&f->vm, 30, 0));
	assert_string_equal(pci_find_dev(&f->vm, 31, 0)->dev.id, "pci@0.31.0");
}

static void test_cf9_shared_with_pm(void **state)
{
	struct fixture *f = *state;

	/* The byte at 0xCF9 still reaches the reset register of pm.c. */
	pio_out(&f->vm, 0xCF9, 1, 0x2);
	assert_int_equal(pio_in(&f->vm, 0xCF9, 1), 0x2);
	assert_int_equal(atomic_load(&f->vm.exit_status), -1);
	pio_out(&f->vm, 0xCF8, 4, cf8_addr(0, 0, 0));
	assert_int_equal(pio_in(&f->vm, 0xCF8, 4), 0x80000000);
	/* Other widths in the dword are neither register: all ones, writes dropped. */
	assert_int_equal(pio_in(&f->vm, 0xCF9, 2), 0xFFFF);
	assert_int_equal(pio_in(&f->vm, 0xCF8, 2), 0xFFFF);
	pio_out(&f->vm, 0xCF8, 2, 0);
	pio_out(&f->vm, 0xCF9, 2, 0x0606);
	assert_int_equal(atomic_load(&f->vm.exit_status), -1);
	assert_int_equal(pio_in(&f->vm, 0xCF8, 4), 0x80000000);
	pio_out(&f->vm, 0xCF9, 1, 0x6);
	assert_int_equal(atomic_load(&f->vm.exit_status), VM_EXIT_REBOOT);
	assert_int_equal(pio_in(&f->vm, 0xCF8, 4), 0x80000000);
}

static void test_bar_layout(void **state)
{
	struct fixture *f = *state;

	/* Slot 3 was assigned first: BAR0 at the window's base, BAR2 (1 MiB) aligned. */
	assert_int_equal(cfg_in(&f->vm, 3, 0x10, 4), 0xC0000000);
	assert_int_equal(cfg_in(&f->vm, 3, 0x14, 4), 0x6001);
	assert_int_equal(cfg_in(&f->vm, 3, 0x18, 4), 0xC010000C);
	assert_int_equal(cfg_in(&f->vm, 3, 0x1C, 4), 0);
	assert_int_equal(cfg_in(&f->vm, 3, 0x20, 4), 0xC0200000); /* MSI-X, 8 KiB */
	assert_int_equal(cfg_in(&f->vm, 3, 0x24, 4), 0);
	assert_int_equal(cfg_in(&f->vm, 4, 0x10, 4), 0xC0202000);
	assert_int_equal(cfg_in(&f->vm, 4, 0x14, 4), 0x6021);
	assert_int_equal(cfg_in(&f->vm, 3, 4, 2), PCIM_CMD_IO | PCIM_CMD_MEM);
	assert_int_equal(pci_bar_addr(pci_find_dev(&f->vm, 3, 0), 2), 0xC0100000);
	/* The handlers get offsets within the BAR. */
	assert_int_equal(mmio_rd(&f->vm, 0xC0000010, 4), 0xA5000010);
	assert_int_equal(mmio_rd(&f->vm, 0xC0100FF0, 4), 0xA5020FF0);
	assert_int_equal(pio_in(&f->vm, 0x6004, 2), 0x0004);
	assert_int_equal(pio_in(&f->vm, 0x6021, 1), 0x01);
}

static void test_bar_sizing_and_move(void **state)
{
	struct fixture *f = *state;
	struct tdev *t = pci_find_dev(&f->vm, 3, 0)->priv;

	/* Sizing with decoding off, as Linux does. */
	cfg_out(&f->vm, 3, 4, 2, 0);
	assert_false(bus_access(&f->vm.mmio, 0xC0000010, (uint8_t[4]){ 0 }, 4, false));
	cfg_out(&f->vm, 3, 0x10, 4, 0xFFFFFFFF);
	assert_int_equal(cfg_in(&f->vm, 3, 0x10, 4), 0xFFFFF000); /* 4000 -> 4 KiB */
	cfg_out(&f->vm, 3, 0x14, 4, 0xFFFFFFFF);
	assert_int_equal(cfg_in(&f->vm, 3, 0x14, 4), 0xFFFFFFE1);
	cfg_out(&f->vm, 3, 0x18, 4, 0xFFFFFFFF);
	cfg_out(&f->vm, 3, 0x1C, 4, 0xFFFFFFFF);
	assert_int_equal(cfg_in(&f->vm, 3, 0x18, 4), 0xFFF0000C);
	assert_int_equal(cfg_in(&f->vm, 3, 0x1C, 4), 0xFFFFFFFF);
	assert_int_equal(cfg_in(&f->vm, 3, 0x24, 4), 0); /* unused BAR */
	cfg_out(&f->vm, 3, 0x24, 4, 0xFFFFFFFF);
	assert_int_equal(cfg_in(&f->vm, 3, 0x24, 4), 0);
	/* Move: BAR0 to 0xC1000000, BAR1 to 0x7000, BAR2 above 4 GiB, via ECAM too. */
	cfg_out(&f->vm, 3, 0x10, 4, 0xC1000000);
	cfg_out(&f->vm, 3, 0x14, 4, 0x7000);
	mmio_wr(&f->vm, ecam(3, 0, 0x18), 4, 0x20000000);
	mmio_wr(&f->vm, ecam(3, 0, 0x1C), 4, 0x1);
	assert_false(bus_access(&f->vm.mmio, 0xC1000000, (uint8_t[4]){ 0 }, 4, false));
	mmio_wr(&f->vm, ecam(3, 0, 4), 2, PCIM_CMD_IO | PCIM_CMD_MEM);
	t->ios = 0;
	assert_int_equal(mmio_rd(&f->vm, 0xC1000020, 4), 0xA5000020);
	assert_int_equal(t->ios, 1);
	assert_int_equal(mmio_rd(&f->vm, 0x120000100ULL, 4), 0xA5020100);
	assert_int_equal(pio_in(&f->vm, 0x7008, 1), 0x08);
	assert_int_equal(t->ios, 3);
	/* Not at the old addresses any more. */
	assert_false(bus_access(&f->vm.mmio, 0xC0000020, (uint8_t[4]){ 0 }, 4, false));
	assert_false(bus_access(&f->vm.mmio, 0xC0100000, (uint8_t[4]){ 0 }, 4, false));
	assert_false(bus_access(&f->vm.pio, 0x6008, (uint8_t[1]){ 0 }, 1, false));
	assert_int_equal(t->ios, 3);
	/* A write to the BAR's high byte only. */
	cfg_out(&f->vm, 3, 0x13, 1, 0xC2);
	assert_int_equal(cfg_in(&f->vm, 3, 0x10, 4), 0xC2000000);
	assert_int_equal(mmio_rd(&f->vm, 0xC2000004, 4), 0xA5000004);
	/* Memory decoding off: gone; I/O still there. */
	cfg_out(&f->vm, 3, 4, 2, PCIM_CMD_IO);
	assert_false(bus_access(&f->vm.mmio, 0xC2000004, (uint8_t[4]){ 0 }, 4, false));
	assert_true(bus_access(&f->vm.pio, 0x7008, (uint8_t[1]){ 0 }, 1, false));
	/* A BAR moved onto another device's BAR stays down until that one leaves. */
	cfg_out(&f->vm, 3, 4, 2, PCIM_CMD_IO | PCIM_CMD_MEM);
	cfg_out(&f->vm, 3, 0x10, 4, 0xC0202000); /* slot 4's BAR0 */
	assert_int_equal(mmio_rd(&f->vm, 0xC0202010, 4), 0xA5000010);
	assert_int_equal(((struct tdev *)pci_find_dev(&f->vm, 4, 0)->priv)->last_off, 0x10);
	cfg_out(&f->vm, 4, 0x10, 4, 0xC3000000);
	t->ios = 0;
	assert_int_equal(mmio_rd(&f->vm, 0xC0202010, 4), 0xA5000010);
	assert_int_equal(t->ios, 1);
}

/*
 * Addresses a guest can program that must not decode: an I/O BAR reaching past 64 KiB, a BAR
 * at 0 (unassigned), a 64-bit BAR in the last megabyte of the address space.
 */
static void test_bar_edges(void **state)
{
	struct fixture *f = *state;

	cfg_out(&f->vm, 3, 4, 2, PCIM_CMD_IO | PCIM_CMD_MEM);
	/* BAR1: 32 bytes of I/O; the last 32 bytes below 64 KiB decode, 64 KiB does not. */
	cfg_out(&f->vm, 3, 0x14, 4, 0xFFE0);
	assert_true(bus_access(&f->vm.pio, 0xFFE0, (uint8_t[1]){ 0 }, 1, false));
	cfg_out(&f->vm, 3, 0x14, 4, 0x10000);
	assert_int_equal(cfg_in(&f->vm, 3, 0x14, 4), 0x10001); /* the register holds it */
	assert_false(bus_access(&f->vm.pio, 0xFFE0, (uint8_t[1]){ 0 }, 1, false));
	assert_false(bus_access(&f->vm.pio, 0x10000, (uint8_t[1]){ 0 }, 1, false));
	assert_false(bus_access(&f->vm.pio, 0x0000, (uint8_t[1]){ 0 }, 1, false));
	cfg_out(&f->vm, 3, 0x14, 4, 0xFFE0);
	assert_true(bus_access(&f->vm.pio, 0xFFE0, (uint8_t[1]){ 0 }, 1, false));
	/* BAR0 at 0: the memory BAR is taken down, nothing decodes at 0. */
	assert_true(bus_access(&f->vm.mmio, pci_bar_addr(pci_find_dev(&f->vm, 3, 0), 0),
			       (uint8_t[4]){ 0 }, 4, false));
	cfg_out(&f->vm, 3, 0x10, 4, 0);
	assert_false(bus_access(&f->vm.mmio, 0, (uint8_t[4]){ 0 }, 4, false));
	/*
	 * BAR2 (1 MiB, 64-bit) just below the last megabyte of the address space decodes; in
	 * the last one it cannot (a range may not end at 2^64, and no CPU reaches there): it
	 * stays down, and comes up when moved back.
	 */
	cfg_out(&f->vm, 3, 0x18, 4, 0xFFE00000);
	cfg_out(&f->vm, 3, 0x1C, 4, 0xFFFFFFFF);
	assert_int_equal(mmio_rd(&f->vm, 0xFFFFFFFFFFE00100ULL, 4), 0xA5020100);
	assert_int_equal(mmio_rd(&f->vm, 0xFFFFFFFFFFEFFFFCULL, 4),
			 0xA5000000U | 2U << 16 | 0xFFFFCU);
	cfg_out(&f->vm, 3, 0x18, 4, 0xFFF00000);
	assert_false(bus_access(&f->vm.mmio, 0xFFFFFFFFFFE00100ULL, (uint8_t[4]){ 0 }, 4, false));
	assert_false(bus_access(&f->vm.mmio, 0xFFFFFFFFFFF00100ULL, (uint8_t[4]){ 0 }, 4, false));
	cfg_out(&f->vm, 3, 0x18, 4, 0xFFE00000);
	assert_int_equal(mmio_rd(&f->vm, 0xFFFFFFFFFFE00100ULL, 4), 0xA5020100);
}

static void test_read_only_fields(void **state)
{
	struct fixture *f = *state;

	cfg_out(&f->vm, 3, 0, 4, 0);
	assert_int_equal(cfg_in(&f->vm, 3, 0, 4), 0x10ff1af4);
	cfg_out(&f->vm, 3, 8, 4, 0);
	assert_int_equal(cfg_in(&f->vm, 3, 8, 4), 0xff000001);
	cfg_out(&f->vm, 3, 0xE, 1, 0x80);
	assert_int_equal(cfg_in(&f->vm, 3, 0xE, 1), 0);
	cfg_out(&f->vm, 3, 0x34, 1, 0);
	assert_int_equal(cfg_in(&f->vm, 3, 0x34, 1), 0x40);
	/* Interrupt pin read-only, line read-write (set to the GSI at creation). */
	assert_int_equal(cfg_in(&f->vm, 3, 0x3C, 2), 0x0112);
	cfg_out(&f->vm, 3, 0x3C, 2, 0x0405);
	assert_int_equal(cfg_in(&f->vm, 3, 0x3C, 2), 0x0105);
	/* ROM BAR: none. */
	cfg_out(&f->vm, 3, 0x30, 4, 0xFFFFFFFF);
	assert_int_equal(cfg_in(&f->vm, 3, 0x30, 4), 0);
	/* COMMAND keeps only the bits it has; STATUS error bits are write-1-to-clear. */
	cfg_out(&f->vm, 3, 4, 2, 0xFFFF);
	assert_int_equal(cfg_in(&f->vm, 3, 4, 2), 0x0547);
	assert_int_equal(cfg_in(&f->vm, 3, 6, 2), PCIM_STATUS_CAPLIST);
	cfg_out(&f->vm, 3, 6, 2, 0xFFFF);
	assert_int_equal(cfg_in(&f->vm, 3, 6, 2), PCIM_STATUS_CAPLIST);
	/* Capability list: MSI-X at 0x40, MSI at 0x4C, then the end. */
	assert_int_equal(cfg_in(&f->vm, 3, 0x40, 2), 0x4C11);
	assert_int_equal(cfg_in(&f->vm, 3, 0x42, 2), 3);      /* 4 vectors */
	assert_int_equal(cfg_in(&f->vm, 3, 0x44, 4), 4);      /* table: BAR 4, offset 0 */
	assert_int_equal(cfg_in(&f->vm, 3, 0x48, 4), 0x1004); /* PBA: BAR 4 + 4 KiB */
	assert_int_equal(cfg_in(&f->vm, 3, 0x4C, 2), 0x0005);
	assert_int_equal(cfg_in(&f->vm, 3, 0x4E, 2), 0x0082); /* 64-bit, MMC = 1 */
	/* Misaligned accesses are dropped. */
	assert_int_equal(mmio_rd(&f->vm, ecam(3, 0, 1), 2), 0xFFFF);
}

static void test_intx(void **state)
{
	struct fixture *f = *state;
	char err[256];
	struct pci_dev *a = pci_find_dev(&f->vm, 3, 0), *b, *c = pci_find_dev(&f->vm, 4, 0);

	/* Slots 3 and 7 share GSI 18 (INTA on PIRQC); slot 4 is on GSI 19. */
	b = pci_dev_add(&f->vm, 7, 0, &tdev_emul, err, sizeof(err));
	assert_non_null(b);
	assert_int_equal(pci_intx_gsi(3, 1), 18);
	assert_int_equal(pci_intx_gsi(7, 1), 18);
	assert_int_equal(pci_intx_gsi(4, 1), 19);
	assert_int_equal(pci_intx_gsi(4, 2), 16);
	pci_irq_assert(a);
	assert_int_equal(irq_level[18], 1);
	assert_int_equal(cfg_in(&f->vm, 3, 6, 2) & PCIM_STATUS_INTR, PCIM_STATUS_INTR);
	pci_irq_assert(b);
	pci_irq_assert(a); /* idempotent */
	pci_irq_deassert(a);
	assert_int_equal(irq_level[18], 1); /* b still holds it */
	assert_int_equal(cfg_in(&f->vm, 3, 6, 2) & PCIM_STATUS_INTR, 0);
	pci_irq_deassert(b);
	assert_int_equal(irq_level[18], 0);
	assert_int_equal(irq_calls[18], 2);
	pci_irq_assert(c);
	assert_int_equal(irq_level[19], 1);
	pci_irq_deassert(c);
	assert_int_equal(irq_level[19], 0);
	/* INTx_DISABLE drops our share of the line; STATUS.INT stays. */
	pci_irq_assert(a);
	cfg_out(&f->vm, 3, 4, 2, PCIM_CMD_MEM | PCIM_CMD_IO | PCIM_CMD_INTX_DISABLE);
	assert_int_equal(irq_level[18], 0);
	assert_int_equal(cfg_in(&f->vm, 3, 6, 2) & PCIM_STATUS_INTR, PCIM_STATUS_INTR);
	pci_irq_deassert(a);
	pci_irq_assert(a);
	assert_int_equal(irq_level[18], 0);
	cfg_out(&f->vm, 3, 4, 2, PCIM_CMD_MEM | PCIM_CMD_IO);
	assert_int_equal(irq_level[18], 1);
	/* With neither MSI nor MSI-X enabled, pci_interrupt uses INTx. */
	pci_irq_deassert(a);
	assert_int_equal(pci_interrupt(a, 0), 0);
	assert_int_equal(irq_level[18], 1);
	assert_int_equal(msi_count, 0);
}

static void test_msix(void **state)
{
	struct fixture *f = *state;
	struct pci_dev *pd = pci_find_dev(&f->vm, 3, 0);
	uint64_t tab = 0xC0200000, pba = tab + 0x1000;

	assert_int_equal(pci_msix_notify(pd, 1), -EINVAL); /* not enabled */
	/* All vectors start masked. */
	for (unsigned v = 0; v < 4; v++)
		assert_int_equal(mmio_rd(&f->vm, tab + 16 * v + 12, 4), 1);
	/* Enable with the function masked, program vector 1 (64-bit write) and unmask it. */
	cfg_out(&f->vm, 3, 0x42, 2, 0xC000);
	assert_true(pci_msix_enabled(pd));
	mmio_wr(&f->vm, tab + 16, 8, 0x00000000FEE01000ULL);
	mmio_wr(&f->vm, tab + 24, 8, 0x0000000000004041ULL);
	assert_int_equal(mmio_rd(&f->vm, tab + 16, 8), 0xFEE01000ULL);
	assert_int_equal(mmio_rd(&f->vm, tab + 24, 4), 0x4041);
	assert_int_equal(mmio_rd(&f->vm, tab + 28, 4), 0);
	/*
	 * Only aligned 4- and 8-byte accesses reach the table: an 8-byte one at a 4-byte offset
	 * would straddle two words of different meaning (or, at the end of the PBA, run past
	 * it); others read as zero and write nothing.
	 */
	assert_int_equal(mmio_rd(&f->vm, tab + 20, 8), 0);
	mmio_wr(&f->vm, tab + 20, 8, ~0ULL);
	assert_int_equal(mmio_rd(&f->vm, tab + 16, 8), 0xFEE01000ULL);
	assert_int_equal(mmio_rd(&f->vm, tab + 24, 8), 0x4041);
	assert_int_equal(mmio_rd(&f->vm, tab + 18, 4), 0);
	assert_int_equal(mmio_rd(&f->vm, tab + 16, 2), 0);
	mmio_wr(&f->vm, tab + 24, 2, 0x7777);
	assert_int_equal(mmio_rd(&f->vm, tab + 24, 4), 0x4041);
	assert_int_equal(mmio_rd(&f->vm, pba + 4, 8), 0);
	/* Function masked: pending. */
	assert_int_equal(pci_interrupt(pd, 1), 0);
	assert_int_equal(msi_count, 0);
	assert_int_equal(mmio_rd(&f->vm, pba, 8), 0x2);
	assert_int_equal(mmio_rd(&f->vm, pba, 4), 0x2);
	mmio_wr(&f->vm, pba, 8, 0); /* PBA is read-only */
	assert_int_equal(mmio_rd(&f->vm, pba, 8), 0x2);
	/* Unmasking the function delivers it. */
	cfg_out(&f->vm, 3, 0x42, 2, 0x8000);
	assert_int_equal(msi_count, 1);
	assert_int_equal(msi_addr, 0xFEE01000ULL);
	assert_int_equal(msi_data, 0x4041);
	assert_int_equal(mmio_rd(&f->vm, pba, 8), 0);
	/* Now straight through. */
	assert_int_equal(pci_msix_notify(pd, 1), 0);
	assert_int_equal(msi_count, 2);
	/* Vector mask: pending, then delivered by the unmask. */
	mmio_wr(&f->vm, tab + 16 + 12, 4, 1);
	assert_int_equal(pci_msix_notify(pd, 1), 0);
	assert_int_equal(msi_count, 2);
	assert_int_equal(mmio_rd(&f->vm, pba, 4), 0x2);
	mmio_wr(&f->vm, tab + 16 + 12, 4, 0);
	assert_int_equal(msi_count, 3);
	assert_int_equal(mmio_rd(&f->vm, pba, 4), 0);
	/* Out-of-range vector, and other BAR offsets go to the device. */
	assert_int_equal(pci_msix_notify(pd, 4), -EINVAL);
	assert_int_equal(mmio_rd(&f->vm, tab + 0x800, 4), 0xA5040800);
	/* Just past the PBA (one word for 4 vectors) is the device's again. */
	assert_int_equal(mmio_rd(&f->vm, pba + 8, 4), 0xA5041008);
	/* MSI-X has priority over INTx in pci_interrupt. */
	assert_int_equal(irq_level[19], 0);
}

static void test_msi(void **state)
{
	struct fixture *f = *state;
	struct pci_dev *pd = pci_find_dev(&f->vm, 4, 0);

	assert_int_equal(pci_msi_notify(pd, 0), -EINVAL);
	cfg_out(&f->vm, 4, 0x50, 4, 0xFEE00003); /* low bits are not writable */
	cfg_out(&f->vm, 4, 0x54, 4, 0);
	cfg_out(&f->vm, 4, 0x58, 2, 0x4030);
	cfg_out(&f->vm, 4, 0x4E, 2, 0x0071); /* enable, MME 7 > MMC: clamped to 1 */
	assert_int_equal(cfg_in(&f->vm, 4, 0x4E, 2), 0x0093);
	assert_true(pci_msi_enabled(pd));
	assert_int_equal(pci_interrupt(pd, 1), 0);
	assert_int_equal(msi_count, 1);
	assert_int_equal(msi_addr, 0xFEE00000);
	assert_int_equal(msi_data, 0x4031);
	assert_int_equal(pci_msi_notify(pd, 2), -EINVAL);
}

static void expect_setup_error(const char *const *keys, const char *want)
{
	struct vm vm;
	struct config cfg;
	char err[256] = "";

	vm_init_bare(&vm, true);
	config_init(&cfg);
	vm.cfg = &cfg;
	for (; *keys; keys++)
		assert_int_equal(config_set_pair(&cfg, *keys), 0);
	assert_int_not_equal(pci_setup(&vm, err, sizeof(err)), 0);
	if (!strstr(err, want))
		fail_msg("error \"%s\" does not say \"%s\"", err, want);
	vm_destroy(&vm);
	config_free(&cfg);
}

static void test_config_errors(void **state)
{
	expect_setup_error((const char *const[]){ "pci.0.3.0.device=hostbridge",
						  "pci.0.03.0.device=lpc", NULL },
			   "PCI slot 0:3.0 is configured twice");
	expect_setup_error((const char *const[]){ "pci.0.4.0.device=nosuch", NULL },
			   "pci.0.4.0.device=nosuch: unknown PCI emulation in slot 0:4.0 "
			   "(known: hostbridge, lpc, ");
	expect_setup_error((const char *const[]){ "pci.0.32.0.device=hostbridge", NULL },
			   "slot 32 function 0 is out of range");
	expect_setup_error((const char *const[]){ "pci.0.1.8.device=hostbridge", NULL },
			   "out of range");
	expect_setup_error((const char *const[]){ "pci.1.1.0.device=hostbridge", NULL },
			   "PCI bus 1 does not exist");
	expect_setup_error((const char *const[]){ "pci.0.x.0.device=hostbridge", NULL },
			   "want pci.BUS.SLOT.FUNCTION.device");
	expect_setup_error((const char *const[]){ "pci.0.1.0.device=lpc", "pci.0.31.0.device=lpc",
						  NULL },
			   "pci.0.31.0 (lpc): a second LPC bridge (there is one at 0:1.0 already");
	expect_setup_error((const char *const[]){ "pci.0.6.2.device=hostbridge", NULL },
			   "PCI slot 0:6.2 needs function 0");
}

static void test_multifunction_and_options(void **state)
{
	struct fixture g;
	static const char *const keys[] = {
		"pci.0.0.0.device=hostbridge",
		"pci.0.0.1.device=hostbridge",
		"pci.0.0.1.color=blue",
		NULL,
	};

	fx_init(&g, keys, false);
	assert_int_equal(mmio_rd(&g.vm, ecam(0, 0, 0xE), 1), 0x80);
	assert_int_equal(mmio_rd(&g.vm, ecam(0, 1, 0xE), 1), 0x80);
	assert_string_equal(pci_dev_opt(pci_find_dev(&g.vm, 0, 1), "color"), "blue");
	assert_null(pci_dev_opt(pci_find_dev(&g.vm, 0, 0), "color"));
	/* Without the PM device, the byte at 0xCF9 is nobody's. */
	assert_int_equal(pio_in(&g.vm, 0xCF9, 1), 0xFF);
	fx_fini(&g);
}

/* ---- romfile= ---- */

/* A ROM image of @len bytes: 0x55AA, a PCIR structure for @vendor:@device, a byte pattern. */
static void rom_image(uint8_t *r, size_t len, uint16_t vendor, uint16_t device)
{
	for (size_t i = 0; i < len; i++)
		r[i] = (uint8_t)(i * 7);
	r[0] = 0x55;
	r[1] = 0xAA;
	r[2] = (uint8_t)((len + 511) / 512);
	r[0x18] = 0x40;
	r[0x19] = 0;
	memcpy(r + 0x40, "PCIR", 4);
	r[0x44] = (uint8_t)vendor;
	r[0x45] = (uint8_t)(vendor >> 8);
	r[0x46] = (uint8_t)device;
	r[0x47] = (uint8_t)(device >> 8);
	r[0x50] = r[2];
	r[0x51] = 0;
	r[0x55] = 0x80; /* last image */
}

static void write_file(const char *path, const uint8_t *data, size_t len)
{
	FILE *fp = fopen(path, "wb");

	assert_non_null(fp);
	assert_int_equal(fwrite(data, 1, len, fp), len);
	assert_int_equal(fclose(fp), 0);
}

/* tdev in slot 5 with romfile=@path: NULL and the message in @err when refused. */
static struct pci_dev *romfile_dev(struct fixture *f, const char *path, char *err, size_t n)
{
	char kv[300];

	snprintf(kv, sizeof(kv), "pci.0.5.0.romfile=%s", path);
	assert_int_equal(config_set_pair(&f->cfg, kv), 0);
	return pci_dev_add(&f->vm, 5, 0, &tdev_emul, err, n);
}

static void test_romfile(void **state)
{
	struct fixture *f = *state;
	char dir[] = "/tmp/khyve-pci-XXXXXX", path[64], err[256] = "";
	static uint8_t rom[3000];
	struct pci_dev *pd;
	uint32_t a;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/rom", dir);
	rom_image(rom, sizeof(rom), 0x1af4, 0x10ff);
	write_file(path, rom, sizeof(rom));
	pd = romfile_dev(f, path, err, sizeof(err));
	if (!pd)
		fail_msg("romfile refused: %s", err);
	/* 3000 bytes: a 4 KiB ROM BAR, given an address, decoding off until enabled. */
	a = cfg_in(&f->vm, 5, PCIR_ROM, 4);
	assert_int_equal(a & 0xFFF, 0);
	assert_true(a >= 0xC0000000 && a < 0xE0000000);
	assert_false(bus_access(&f->vm.mmio, a, (uint8_t[4]){ 0 }, 4, false));
	cfg_out(&f->vm, 5, PCIR_ROM, 4, 0xFFFFFFFE);
	assert_int_equal(cfg_in(&f->vm, 5, PCIR_ROM, 4), 0xFFFFF000);
	cfg_out(&f->vm, 5, PCIR_ROM, 4, 0xD0000000 | PCIM_ROM_ENABLE);
	assert_int_equal(cfg_in(&f->vm, 5, 4, 2) & PCIM_CMD_MEM, PCIM_CMD_MEM);
	assert_int_equal(mmio_rd(&f->vm, 0xD0000000, 4),
			 0xAA55 | (uint32_t)rom[2] << 16 | (uint32_t)rom[3] << 24);
	assert_int_equal(mmio_rd(&f->vm, 0xD0000000 + 2999, 1), rom[2999]);
	assert_int_equal(mmio_rd(&f->vm, 0xD0000000 + 3000, 4), 0); /* beyond the file */
	/* Moved while enabled: gone from the old address, decoded at the new one; a write to
	 * another register (the latency timer) leaves it where it is. */
	cfg_out(&f->vm, 5, PCIR_ROM, 4, 0xD0010000 | PCIM_ROM_ENABLE);
	assert_false(bus_access(&f->vm.mmio, 0xD0000000, (uint8_t[4]){ 0 }, 4, false));
	assert_int_equal(mmio_rd(&f->vm, 0xD0010000, 2), 0xAA55);
	cfg_out(&f->vm, 5, 0x0d, 1, 0x40);
	assert_int_equal(mmio_rd(&f->vm, 0xD0010000, 2), 0xAA55);
	cfg_out(&f->vm, 5, PCIR_ROM, 4, 0xD0000000 | PCIM_ROM_ENABLE);
	assert_false(bus_access(&f->vm.mmio, 0xD0010000, (uint8_t[4]){ 0 }, 4, false));
	/* Writes to a ROM go nowhere. */
	mmio_wr(&f->vm, 0xD0000010, 4, 0x12345678);
	assert_int_equal(mmio_rd(&f->vm, 0xD0000010, 1), rom[0x10]);
	/* The file is not read again: changing it does not change the ROM. */
	memset(rom, 0, sizeof(rom));
	write_file(path, rom, sizeof(rom));
	assert_int_equal(mmio_rd(&f->vm, 0xD0000000, 2), 0xAA55);
	cfg_out(&f->vm, 5, PCIR_ROM, 4, 0xD0000000);
	assert_false(bus_access(&f->vm.mmio, 0xD0000000, (uint8_t[4]){ 0 }, 4, false));
	/* Enabled, but memory decoding off: not there; on again: back. */
	cfg_out(&f->vm, 5, PCIR_ROM, 4, 0xD0000000 | PCIM_ROM_ENABLE);
	assert_true(bus_access(&f->vm.mmio, 0xD0000000, (uint8_t[4]){ 0 }, 4, false));
	cfg_out(&f->vm, 5, 4, 2, cfg_in(&f->vm, 5, 4, 2) & ~PCIM_CMD_MEM);
	assert_false(bus_access(&f->vm.mmio, 0xD0000000, (uint8_t[4]){ 0 }, 4, false));
	cfg_out(&f->vm, 5, 4, 2, cfg_in(&f->vm, 5, 4, 2) | PCIM_CMD_MEM);
	assert_true(bus_access(&f->vm.mmio, 0xD0000000, (uint8_t[4]){ 0 }, 4, false));
	/* Enabled at address 0 (unassigned): never decoded, there or anywhere. */
	cfg_out(&f->vm, 5, PCIR_ROM, 4, PCIM_ROM_ENABLE);
	assert_false(bus_access(&f->vm.mmio, 0xD0000000, (uint8_t[4]){ 0 }, 4, false));
	assert_false(bus_access(&f->vm.mmio, 0, (uint8_t[4]){ 0 }, 4, false));
	unlink(path);
	rmdir(dir);
}

/* Each refusal names the option, the file and what is wrong with it. */
static void romfile_refused(const uint8_t *data, size_t len, off_t truncate_to, const char *want)
{
	struct fixture g;
	char dir[] = "/tmp/khyve-pci-XXXXXX", path[64], err[256] = "";

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/rom", dir);
	if (data)
		write_file(path, data, len);
	if (truncate_to)
		assert_int_equal(truncate(path, truncate_to), 0);
	fx_init(&g, std_keys, false);
	assert_null(romfile_dev(&g, path, err, sizeof(err)));
	if (!strstr(err, "pci.0.5.0: romfile=") || !strstr(err, want))
		fail_msg("error \"%s\" does not say \"%s\"", err, want);
	assert_null(pci_find_dev(&g.vm, 5, 0));
	fx_fini(&g);
	unlink(path);
	rmdir(dir);
}

static void test_romfile_refusals(void **state)
{
	static uint8_t rom[4096];

	(void)state;
	romfile_refused(NULL, 0, 0, "No such file or directory");
	romfile_refused(rom, 0, 0, "not a file of 1 byte to 16 MiB");
	romfile_refused(rom, 1, 17 << 20, "not a file of 1 byte to 16 MiB");
	memset(rom, 0x11, sizeof(rom));
	romfile_refused(rom, sizeof(rom), 0, "not a PCI option ROM");
	rom_image(rom, sizeof(rom), 0x1af4, 0x10ff);
	memcpy(rom + 0x40, "PCIX", 4);
	romfile_refused(rom, sizeof(rom), 0, "not a PCI option ROM");
	rom_image(rom, sizeof(rom), 0x8086, 0x100e);
	romfile_refused(rom, sizeof(rom), 0, "no image in it is for PCI 1af4:10ff (tdev)");
	/* The PCIR pointer past the end of the file. */
	rom_image(rom, sizeof(rom), 0x1af4, 0x10ff);
	rom[0x18] = 0xF0;
	rom[0x19] = 0x0F;
	romfile_refused(rom, sizeof(rom), 0, "not a PCI option ROM");
}

/*
 * More files that are no option ROM for the function: a directory, a file too short for the
 * header, an image that claims length 0 without being the last, and a second image that
 * lacks the signature or the PCIR structure (the first being another device's).
 */
static void test_romfile_more_refusals(void **state)
{
	static uint8_t rom[8192];

	(void)state;
	{
		struct fixture g;
		char dir[] = "/tmp/khyve-pci-XXXXXX", err[256] = "";

		assert_non_null(mkdtemp(dir));
		fx_init(&g, std_keys, false);
		assert_null(romfile_dev(&g, dir, err, sizeof(err)));
		assert_non_null(strstr(err, "not a file of 1 byte to 16 MiB"));
		fx_fini(&g);
		rmdir(dir);
	}
	memset(rom, 0, sizeof(rom));
	rom[0] = 0x55;
	rom[1] = 0xAA;
	romfile_refused(rom, 16, 0, "not a PCI option ROM");
	/* Another device's image of length 0 that is not marked last: the walk stops. */
	rom_image(rom, 4096, 0x8086, 0x100e);
	rom[0x50] = 0;
	rom[0x55] = 0;
	romfile_refused(rom, sizeof(rom), 0, "no image in it is for PCI 1af4:10ff (tdev)");
	/* Another device's image, not last, then garbage; then an image without PCIR. */
	rom_image(rom, 4096, 0x8086, 0x100e);
	rom[0x55] = 0;
	memset(rom + 4096, 0x11, 4096);
	romfile_refused(rom, sizeof(rom), 0, "no image in it is for PCI 1af4:10ff (tdev)");
	rom_image(rom + 4096, 4096, 0x1af4, 0x10ff);
	memcpy(rom + 4096 + 0x40, "PCIX", 4);
	romfile_refused(rom, sizeof(rom), 0, "no image in it is for PCI 1af4:10ff (tdev)");
}

/* A second image (PCI Firmware 3.0 images follow each other) may be the one for the device. */
static void test_romfile_second_image(void **state)
{
	struct fixture *f = *state;
	char dir[] = "/tmp/khyve-pci-XXXXXX", path[64], err[256] = "";
	static uint8_t rom[2048 + 1024];

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/rom", dir);
	rom_image(rom, 2048, 0x8086, 0x100e);
	rom[0x55] = 0; /* not the last image */
	rom_image(rom + 2048, 1024, 0x1af4, 0x10ff);
	write_file(path, rom, sizeof(rom));
	if (!romfile_dev(f, path, err, sizeof(err)))
		fail_msg("romfile refused: %s", err);
	cfg_out(&f->vm, 5, PCIR_ROM, 4, 0xFFFFFFFE);
	assert_int_equal(cfg_in(&f->vm, 5, PCIR_ROM, 4), 0xFFFFF000);
	unlink(path);
	rmdir(dir);
}

/* ---- snapshots ---- */

struct saved {
	char id[48];
	uint8_t *buf;
	size_t len;
};

static unsigned save_all(struct vm *vm, struct saved *out, unsigned max)
{
	unsigned n = 0;

	for (struct dev *d = vm->devs; d; d = d->next) {
		struct sstream s;

		assert_true(n < max);
		ss_init_save(&s);
		assert_int_equal(d->ops->save(d, &s), 0);
		snprintf(out[n].id, sizeof(out[n].id), "%s", d->id);
		out[n].buf = malloc(s.len);
		memcpy(out[n].buf, s.buf, s.len);
		out[n].len = s.len;
		ss_free(&s);
		n++;
	}
	return n;
}

static int load_one(struct vm *vm, const char *id, const uint8_t *buf, size_t len)
{
	struct dev *d = vm_find_dev(vm, id);
	struct sstream s;
	int ret;

	assert_non_null(d);
	ss_init_load(&s, buf, len);
	ret = d->ops->load(d, &s, d->ops->version);
	ss_free(&s);
	return ret;
}

static void free_saved(struct saved *s, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		free(s[i].buf);
}

/* SeaBIOS's piix_pci_slot_get_irq: the PIRQ it assumes for @pin (1-4) of a bus 0 @slot. */
static unsigned seabios_pirq(unsigned slot, unsigned pin)
{
	return (pin - 1 + slot - 1) & 3;
}

/*
 * The PIIX interrupt router in the LPC bridge: the wiring is the one SeaBIOS assumes, and
 * once it has written its route registers (PIRQA/B to IRQ 10, C/D to 11) each function's
 * INTx reaches the ISA IRQ it wrote in the line register as well as the IOAPIC pin.
 */
static void test_pirq_routing(void **state)
{
	struct fixture *f = *state;
	struct pci_dev *a = pci_find_dev(&f->vm, 3, 0), *c = pci_find_dev(&f->vm, 4, 0);

	for (unsigned slot = 0; slot < PCI_SLOTS; slot++)
		for (unsigned pin = 1; pin <= 4; pin++) {
			assert_int_equal(pci_intx_pirq(slot, pin), seabios_pirq(slot, pin));
			assert_int_equal(pci_intx_gsi(slot, pin), 16 + seabios_pirq(slot, pin));
		}
	/* Power-on: every route off; INTx reaches only the IOAPIC pin. */
	assert_int_equal(cfg_in(&f->vm, 31, 0x60, 4), 0x80808080);
	pci_irq_assert(a);
	assert_int_equal(irq_level[18], 1);
	assert_int_equal(irq_calls[11] + irq_calls[10], 0);
	pci_irq_deassert(a);
	/* What SeaBIOS writes, byte by byte; read back as a dword and as words. */
	for (unsigned i = 0; i < 4; i++)
		cfg_out(&f->vm, 31, 0x60 + i, 1, i < 2 ? 10 : 11);
	assert_int_equal(cfg_in(&f->vm, 31, 0x60, 4), 0x0B0B0A0A);
	assert_int_equal(cfg_in(&f->vm, 31, 0x62, 2), 0x0B0B);
	/* The registers around them are the bridge's ordinary (unimplemented) space. */
	cfg_out(&f->vm, 31, 0x64, 4, 0x12345678);
	cfg_out(&f->vm, 31, 0x5c, 4, 0x12345678);
	assert_int_equal(cfg_in(&f->vm, 31, 0x64, 4), 0);
	assert_int_equal(cfg_in(&f->vm, 31, 0x5c, 4), 0);
	assert_int_equal(cfg_in(&f->vm, 31, 0x60, 4), 0x0B0B0A0A);
	/* Slot 3 INTA is PIRQC, slot 4 INTA PIRQD: both on IRQ 11, OR-ed. */
	pci_irq_assert(a);
	assert_int_equal(irq_level[18], 1);
	assert_int_equal(irq_level[11], 1);
	pci_irq_assert(c);
	assert_int_equal(irq_level[19], 1);
	pci_irq_deassert(a);
	assert_int_equal(irq_level[11], 1); /* c still holds it */
	assert_int_equal(irq_level[18], 0);
	pci_irq_deassert(c);
	assert_int_equal(irq_level[11], 0);
	assert_int_equal(irq_calls[10], 0);
	/* Rerouting a PIRQ that is high moves the ISA line at once; off drops it. */
	pci_irq_assert(a);
	cfg_out(&f->vm, 31, 0x62, 1, 5);
	assert_int_equal(irq_level[11], 0);
	assert_int_equal(irq_level[5], 1);
	cfg_out(&f->vm, 31, 0x62, 1, 0x85);
	assert_int_equal(irq_level[5], 0);
	assert_int_equal(irq_level[18], 1);
	/* Reserved IRQs (0-2, 8, 13) route nowhere; reserved bits 6:4 read 0. */
	for (unsigned irq = 0; irq < 16; irq++) {
		bool usable = irq > 2 && irq != 8 && irq != 13;

		memset(irq_calls, 0, sizeof(irq_calls));
		cfg_out(&f->vm, 31, 0x62, 1, 0x70 | irq);
		assert_int_equal(cfg_in(&f->vm, 31, 0x62, 1), irq);
		assert_int_equal(irq_level[irq], usable);
		cfg_out(&f->vm, 31, 0x62, 1, 0x80);
		assert_int_equal(irq_level[irq], 0);
		if (!usable)
			assert_int_equal(irq_calls[irq], 0);
	}
	/* INTx_DISABLE takes the function off both lines. */
	cfg_out(&f->vm, 31, 0x62, 1, 11);
	assert_int_equal(irq_level[11], 1);
	cfg_out(&f->vm, 3, 4, 2, PCIM_CMD_MEM | PCIM_CMD_IO | PCIM_CMD_INTX_DISABLE);
	assert_int_equal(irq_level[11], 0);
	assert_int_equal(irq_level[18], 0);
}

/* The route registers travel with the LPC bridge's snapshot; a bad one is refused. */
static void test_pirq_snapshot(void **state)
{
	struct fixture *f = *state, *g = calloc(1, sizeof(*g));
	struct saved s1[8], s2[8];
	unsigned n1, n2, lpc = 0;

	cfg_out(&f->vm, 31, 0x60, 4, 0x0B0B0A0A);
	cfg_out(&f->vm, 31, 0x61, 1, 0x83);
	pci_irq_assert(pci_find_dev(&f->vm, 3, 0));
	n1 = save_all(&f->vm, s1, 8);
	memset(irq_level, 0, sizeof(irq_level));
	fx_std(g);
	for (unsigned i = 0; i < n1; i++) {
		if (!strcmp(s1[i].id, "pci@0.31.0"))
			lpc = i;
		assert_int_equal(load_one(&g->vm, s1[i].id, s1[i].buf, s1[i].len), 0);
	}
	assert_string_equal(s1[lpc].id, "pci@0.31.0");
	assert_int_equal(cfg_in(&g->vm, 31, 0x60, 4), 0x0B0B830A);
	assert_int_equal(irq_level[11], 1); /* slot 3's INTA, PIRQC, asserted in the snapshot */
	assert_int_equal(irq_level[18], 1);
	n2 = save_all(&g->vm, s2, 8);
	assert_int_equal(n1, n2);
	assert_int_equal(s1[lpc].len, s2[lpc].len);
	assert_memory_equal(s1[lpc].buf, s2[lpc].buf, s1[lpc].len);
	/* The last four bytes are the registers: a reserved bit makes the section fail. */
	s1[lpc].buf[s1[lpc].len - 1] |= 0x10;
	assert_int_not_equal(load_one(&g->vm, s1[lpc].id, s1[lpc].buf, s1[lpc].len), 0);
	assert_int_equal(cfg_in(&g->vm, 31, 0x60, 4), 0x0B0B830A); /* nothing committed */
	free_saved(s1, n1);
	free_saved(s2, n2);
	fx_fini(g);
	free(g);
}

static void test_snapshot(void **state)
{
	struct fixture *f = *state, *g = calloc(1, sizeof(*g));
	struct pci_dev *a = pci_find_dev(&f->vm, 3, 0);
	struct saved s1[8], s2[8];
	unsigned n1, n2;

	/* Guest activity: swap the two devices' BAR0s, move an I/O BAR, MSI-X state, INTx. */
	cfg_out(&f->vm, 3, 4, 2, PCIM_CMD_IO);
	cfg_out(&f->vm, 4, 4, 2, PCIM_CMD_IO);
	cfg_out(&f->vm, 3, 0x10, 4, 0xC0202000);
	cfg_out(&f->vm, 4, 0x10, 4, 0xC0000000);
	cfg_out(&f->vm, 3, 4, 2, PCIM_CMD_IO | PCIM_CMD_MEM | PCIM_CMD_BUSMASTER);
	cfg_out(&f->vm, 4, 4, 2, PCIM_CMD_IO | PCIM_CMD_MEM);
	cfg_out(&f->vm, 3, 0x14, 4, 0x7000);
	cfg_out(&f->vm, 3, 0x42, 2, 0xC000);
	mmio_wr(&f->vm, 0xC0200000 + 32, 4, 0xFEE00000);
	mmio_wr(&f->vm, 0xC0200000 + 40, 4, 0x51);
	mmio_wr(&f->vm, 0xC0200000 + 44, 4, 0);
	assert_int_equal(pci_msix_notify(a, 2), 0); /* pending: function masked */
	pci_irq_assert(pci_find_dev(&f->vm, 4, 0));
	((struct tdev *)a->priv)->state = 42;
	pio_out(&f->vm, 0xCF8, 4, cf8_addr(31, 0, 8));
	n1 = save_all(&f->vm, s1, 8);
	assert_int_equal(n1, 7); /* pm, pci, 0.0.0, atkbdc (lpc's), 0.31.0, 0.3.0, 0.4.0 */
	assert_string_equal(s1[1].id, "pci");

	/* A fresh machine, as a restore builds it, then every device loaded. */
	memset(irq_level, 0, sizeof(irq_level));
	fx_std(g);
	for (unsigned i = 0; i < n1; i++)
		assert_int_equal(load_one(&g->vm, s1[i].id, s1[i].buf, s1[i].len), 0);
	for (struct dev *d = g->vm.devs; d; d = d->next)
		assert_int_equal(d->ops->resume(d), 0);
	n2 = save_all(&g->vm, s2, 8);
	assert_int_equal(n1, n2);
	for (unsigned i = 0; i < n1; i++) {
		assert_string_equal(s1[i].id, s2[i].id);
		assert_int_equal(s1[i].len, s2[i].len);
		assert_memory_equal(s1[i].buf, s2[i].buf, s1[i].len);
	}
	/* The guest's view: BARs where it put them, handlers reached there. */
	struct tdev *ta = pci_find_dev(&g->vm, 3, 0)->priv, *tb = pci_find_dev(&g->vm, 4, 0)->priv;

	assert_int_equal(ta->state, 42);
	ta->ios = tb->ios = 0;
	assert_int_equal(mmio_rd(&g->vm, 0xC0202008, 4), 0xA5000008);
	assert_int_equal(ta->ios, 1);
	assert_int_equal(mmio_rd(&g->vm, 0xC0000008, 4), 0xA5000008);
	assert_int_equal(tb->ios, 1);
	assert_int_equal(pio_in(&g->vm, 0x7001, 1), 0x01);
	assert_int_equal(ta->ios, 2);
	assert_false(bus_access(&g->vm.pio, 0x6001, (uint8_t[1]){ 0 }, 1, false));
	/* CF8 latch, INTx line, MSI-X pending vector delivered on unmask. */
	assert_int_equal(pio_in(&g->vm, 0xCFC, 4), 0x06010000);
	assert_int_equal(irq_level[19], 1);
	msi_count = 0;
	cfg_out(&g->vm, 3, 0x42, 2, 0x8000);
	assert_int_equal(msi_count, 1);
	assert_int_equal(msi_data, 0x51);
	free_saved(s2, n2);
	n2 = save_all(&g->vm, s2, 8);

	/* Refused: truncated, overlong, a changed read-only byte, a bad BAR, a newer version. */
	struct saved *dev3 = &s1[5];
	uint8_t *b = calloc(1, dev3->len + 1);

	assert_string_equal(dev3->id, "pci@0.3.0");
	for (size_t n = 0; n < dev3->len; n += 7)
		assert_int_not_equal(load_one(&g->vm, dev3->id, dev3->buf, n), 0);
	memcpy(b, dev3->buf, dev3->len);
	assert_int_not_equal(load_one(&g->vm, dev3->id, b, dev3->len + 1), 0);
	b[4 + 0] ^= 1; /* vendor id, after the size word */
	assert_int_equal(load_one(&g->vm, dev3->id, b, dev3->len), -EINVAL);
	memcpy(b, dev3->buf, dev3->len);
	b[4 + 0x10] |= 0x10; /* BAR0 bit 4: below its 4 KiB size */
	assert_int_equal(load_one(&g->vm, dev3->id, b, dev3->len), -EINVAL);
	memcpy(b, dev3->buf, dev3->len);
	b[dev3->len - 8] = 2; /* emulation version 2 */
	assert_int_equal(load_one(&g->vm, dev3->id, b, dev3->len), -EINVAL);
	b[dev3->len - 8] = 0; /* emulation version 0: no khyve writes it */
	assert_int_equal(load_one(&g->vm, dev3->id, b, dev3->len), -EINVAL);
	memcpy(b, dev3->buf, dev3->len);
	/* Section version 0, for a function and for the bus. */
	{
		struct dev *d3 = vm_find_dev(&g->vm, dev3->id), *bus = vm_find_dev(&g->vm, "pci");
		struct sstream ls;

		ss_init_load(&ls, dev3->buf, dev3->len);
		assert_int_equal(d3->ops->load(d3, &ls, 0), -EINVAL);
		ss_init_load(&ls, s1[1].buf, s1[1].len);
		assert_int_equal(bus->ops->load(bus, &ls, 0), -EINVAL);
		assert_non_null(strstr(ls.msg, "version 0"));
	}
	/*
	 * The MSI-X table and PBA (after the size word, 256 config bytes, INTx and the vector
	 * count): vector 2's address is dword aligned and its control word has only the mask
	 * bit; pending bits exist only for the 4 vectors.
	 */
	{
		const size_t tab = 4 + 256 + 1 + 4, pba = tab + 4 * 4 * 4;

		assert_int_equal(dev3->len, pba + 8 + 8);
		assert_int_equal(io_get(b + tab + 32, 4), 0xFEE00000);
		assert_int_equal(io_get(b + pba, 8), 1ULL << 2);
		b[tab + 32] |= 0x2;
		assert_int_equal(load_one(&g->vm, dev3->id, b, dev3->len), -EINVAL);
		memcpy(b, dev3->buf, dev3->len);
		b[tab + 44] |= 0x2;
		assert_int_equal(load_one(&g->vm, dev3->id, b, dev3->len), -EINVAL);
		memcpy(b, dev3->buf, dev3->len);
		b[pba] |= 1 << 4;
		assert_int_equal(load_one(&g->vm, dev3->id, b, dev3->len), -EINVAL);
		memcpy(b, dev3->buf, dev3->len);
		/* MSI (at 0x4C): enabling more vectors (MME) than the function offers (MMC). */
		assert_int_equal(b[4 + 0x4C], 0x05);
		b[4 + 0x4C + 2] |= 0x70;
		assert_int_equal(load_one(&g->vm, dev3->id, b, dev3->len), -EINVAL);
		memcpy(b, dev3->buf, dev3->len);
	}
	b[dev3->len - 4] = 0xFF; /* the emulation's own check (state <= 1000) */
	b[dev3->len - 3] = 0xFF;
	assert_int_equal(load_one(&g->vm, dev3->id, b, dev3->len), -EINVAL);
	free(b);
	/* Nothing of those was committed. */
	struct saved s3[8];
	unsigned n3 = save_all(&g->vm, s3, 8);

	for (unsigned i = 0; i < n3; i++)
		assert_memory_equal(s3[i].buf, s2[i].buf, s2[i].len);
	assert_int_equal(mmio_rd(&g->vm, 0xC0202008, 4), 0xA5000008);
	free_saved(s3, n3);

	free_saved(s1, n1);
	free_saved(s2, n2);
	fx_fini(g);
	free(g);
}

/*
 * Config accesses a guest may make that no driver needs: 64-bit and misaligned ECAM
 * accesses, functions nobody emulates, the extended space, narrow accesses to 0xCF8, and
 * 0xCFC with the enable bit off or another bus addressed.  Reads give all-ones (or zero in
 * the extended space); writes change nothing.
 */
static void test_cfg_access_edges(void **state)
{
	struct fixture *f = *state;
	struct pci_dev *pd = pci_find_dev(&f->vm, 3, 0);
	uint32_t id = pci_get_cfg32(pd, 0);

	/* A 64-bit ECAM read at a multiple of 8 is two dwords: IDs, then COMMAND/STATUS. */
	assert_int_equal(mmio_rd(&f->vm, ecam(3, 0, 0), 8),
			 (uint64_t)pci_get_cfg32(pd, 4) << 32 | id);
	/* ... and at a dword that is not: refused, all-ones. */
	assert_int_equal(mmio_rd(&f->vm, ecam(3, 0, 4), 8), ~0ULL);
	/* Misaligned, absent function, extended space. */
	assert_int_equal(mmio_rd(&f->vm, ecam(3, 0, 1), 2), 0xFFFF);
	assert_int_equal(mmio_rd(&f->vm, ecam(3, 0, 2), 4), 0xFFFFFFFF);
	assert_int_equal(mmio_rd(&f->vm, ecam(9, 0, 0), 4), 0xFFFFFFFF);
	assert_int_equal(mmio_rd(&f->vm, ecam(3, 5, 0), 4), 0xFFFFFFFF);
	assert_int_equal(mmio_rd(&f->vm, ecam(3, 0, 0x100), 4), 0);
	assert_int_equal(mmio_rd(&f->vm, ecam(3, 0, 0xFFC), 4), 0);
	/* Writes there go nowhere: BAR0 is unchanged by a misaligned or extended-space write. */
	{
		uint32_t bar0 = pci_get_cfg32(pd, 0x10), cmd = pci_get_cfg16(pd, 4);

		mmio_wr(&f->vm, ecam(3, 0, 0x12), 4, 0);
		mmio_wr(&f->vm, ecam(3, 0, 0x110), 4, 0);
		mmio_wr(&f->vm, ecam(9, 0, 0x10), 4, 0);
		assert_int_equal(pci_get_cfg32(pd, 0x10), bar0);
		/* A 64-bit write: COMMAND (dword 1) and the BIST/header dword (read-only). */
		mmio_wr(&f->vm, ecam(3, 0, 0), 8, (uint64_t)(cmd | PCIM_CMD_BUSMASTER) << 32);
		assert_int_equal(pci_get_cfg32(pd, 0), id);
		assert_int_equal(pci_get_cfg16(pd, 4), cmd | PCIM_CMD_BUSMASTER);
	}
	/* 0xCF8: only a dword reaches the address register. */
	pio_out(&f->vm, 0xCF8, 4, cf8_addr(3, 0, 0));
	assert_int_equal(pio_in(&f->vm, 0xCF8, 2), 0xFFFF);
	assert_int_equal(pio_in(&f->vm, 0xCFA, 1), 0xFF);
	pio_out(&f->vm, 0xCF8, 2, 0);
	pio_out(&f->vm, 0xCFA, 2, 0);
	assert_int_equal(pio_in(&f->vm, 0xCF8, 4), cf8_addr(3, 0, 0));
	assert_int_equal(pio_in(&f->vm, 0xCFC, 4), id);
	/* Enable bit off, or bus 1: all-ones, and writes do nothing. */
	pio_out(&f->vm, 0xCF8, 4, cf8_addr(3, 0, 0x10) & ~0x80000000U);
	assert_int_equal(pio_in(&f->vm, 0xCFC, 4), 0xFFFFFFFF);
	pio_out(&f->vm, 0xCFC, 4, 0);
	pio_out(&f->vm, 0xCF8, 4, cf8_addr(3, 0, 0x10) | 1U << 16);
	assert_int_equal(pio_in(&f->vm, 0xCFE, 2), 0xFFFF);
	pio_out(&f->vm, 0xCFC, 4, 0);
	assert_int_equal(cfg_in(&f->vm, 3, 0x10, 4), pci_get_cfg32(pd, 0x10));
	assert_int_not_equal(pci_get_cfg32(pd, 0x10), 0);
	/* A snapshot's address register with reserved bits (bits 0-1) is refused. */
	{
		uint8_t b[4];

		io_put(b, 4, cf8_addr(3, 0, 0) | 1);
		assert_int_equal(load_one(&f->vm, "pci", b, 4), -EINVAL);
		io_put(b, 4, cf8_addr(3, 0, 0) | 0x7F000000);
		assert_int_equal(load_one(&f->vm, "pci", b, 4), -EINVAL);
		assert_int_not_equal(load_one(&f->vm, "pci", b, 3), 0);
		assert_int_equal(pio_in(&f->vm, 0xCF8, 4), cf8_addr(3, 0, 0x10));
	}
}

/*
 * The device-facing API refuses what no device should ask for, so that a device bug shows
 * as an error at creation instead of a write past the config space or a second table.
 */
static void test_device_api_refusals(void **state)
{
	struct fixture *f = *state;
	struct pci_dev *pd = pci_find_dev(&f->vm, 3, 0);
	static const uint8_t rom[4096] = { 0x55, 0xAA };
	uint8_t before[PCI_CFG_SIZE];

	for (unsigned i = 0; i < PCI_CFG_SIZE; i++)
		before[i] = pci_get_cfg8(pd, i);
	/* Config space accessors: past the end reads 0, writes nothing. */
	assert_int_equal(pci_get_cfg16(pd, PCI_CFG_SIZE - 1), 0);
	assert_int_equal(pci_get_cfg32(pd, PCI_CFG_SIZE - 2), 0);
	assert_int_equal(pci_get_cfg16(pd, PCI_CFG_SIZE - 2), before[254] | before[255] << 8);
	pci_set_cfg32(pd, PCI_CFG_SIZE - 2, 0xFFFFFFFF);
	pci_set_cfg16(pd, PCI_CFG_SIZE, 0xFFFF);
	pci_set_cfg8(pd, PCI_CFG_SIZE, 0xFF);
	pci_set_wmask(pd, PCI_CFG_SIZE - 1, 2, 0xFFFF);
	pci_set_wmask(pd, 0x40, 3, 0xFFFFFF);
	for (unsigned i = 0; i < PCI_CFG_SIZE; i++)
		assert_int_equal(pci_get_cfg8(pd, i), before[i]);
	/* BAR indices and kinds. */
	assert_int_equal(pci_bar_addr(pd, -1), 0);
	assert_int_equal(pci_bar_addr(pd, 6), 0);
	assert_int_equal(pci_bar_declare(pd, 6, PCI_BAR_MEM32, 4096, false), -EINVAL);
	assert_int_equal(pci_bar_declare(pd, 5, PCI_BAR_MEM64, 4096, false), -EINVAL);
	assert_int_equal(pci_bar_declare(pd, 5, PCI_BAR_MEM32, 0, false), -EINVAL);
	assert_int_equal(pci_bar_declare(pd, 5, PCI_BAR_IO, 512, false), -EINVAL);
	assert_int_equal(pci_bar_declare(pd, -1, PCI_BAR_IO, 16, false), -EINVAL);
	assert_int_equal(pci_bar_declare(pd, 5, (enum pci_bar_type)7, 16, false), -EINVAL);
	assert_int_equal(pci_bar_set_ram(pd, 6, (void *)rom, false), -EINVAL);
	assert_int_equal(pci_bar_set_ram(pd, 0, NULL, false), -EINVAL);
	assert_int_equal(pci_bar_set_ram(pd, 1, (void *)rom, false), -EINVAL); /* I/O */
	assert_int_equal(pci_bar_set_ram(pd, 5, (void *)rom, false), -EINVAL); /* none */
	assert_int_equal(pci_bar_coalesce(pd, -1, NULL, 0), -EINVAL);
	assert_int_equal(pci_bar_coalesce(pd, 0, NULL, PCI_COALESCE_ZONES + 1), -EINVAL);
	assert_int_equal(pci_bar_coalesce(pd, 1, NULL, 0), -EINVAL); /* I/O */
	assert_int_equal(pci_bar_ram_dirty(pd, 7, NULL), -EINVAL);
	/* ROM images: sizes that are no ROM BAR, a size smaller than the image. */
	assert_int_equal(pci_rom_set(pd, NULL, 1, 4096), -EINVAL);
	assert_int_equal(pci_rom_set(pd, rom, 0, 4096), -EINVAL);
	assert_int_equal(pci_rom_set(pd, rom, 4096, 2048), -EINVAL);
	assert_int_equal(pci_rom_set(pd, rom, 1024, 1024), -EINVAL);
	assert_int_equal(pci_rom_set(pd, rom, 1024, 32 << 20), -EINVAL);
	assert_int_equal(pci_rom_set(pd, rom, 1024, 12288), -EINVAL);
	assert_int_equal(pci_get_cfg32(pd, PCIR_ROM), 0);
	/* MSI: 0, 3 or 64 vectors, or a second capability; MSI-X likewise. */
	assert_int_equal(pci_msi_init(pd, 0), -EINVAL);
	assert_int_equal(pci_msi_init(pd, 3), -EINVAL);
	assert_int_equal(pci_msi_init(pd, 64), -EINVAL);
	assert_int_equal(pci_msi_init(pd, 2), -EINVAL);
	assert_int_equal(pci_msix_init(pd, 0, 5), -EINVAL);
	assert_int_equal(pci_msix_init(pd, 4, 5), -EINVAL);
	/* INTx pins are A-D; PIRQs A-D. */
	assert_int_equal(pci_intx_init(pd, 0), -EINVAL);
	assert_int_equal(pci_intx_init(pd, 5), -EINVAL);
	assert_int_equal(pci_get_cfg8(pd, PCIR_INTPIN), 1);
	assert_int_equal(pci_pirq_route(&f->vm, 4), PCI_PIRQ_DISABLE);
	{
		uint8_t r[4];

		for (unsigned i = 0; i < 4; i++)
			r[i] = pci_pirq_route(&f->vm, i);
		pci_pirq_route_set(&f->vm, 4, 5);
		for (unsigned i = 0; i < 4; i++)
			assert_int_equal(pci_pirq_route(&f->vm, i), r[i]);
	}
	/* Slots past the bus. */
	assert_null(pci_find_dev(&f->vm, 32, 0));
	assert_null(pci_find_dev(&f->vm, 3, 8));
	assert_false(pci_slot_used(&f->vm, 3, 8));
	{
		char err[256] = "";

		assert_null(pci_dev_add(&f->vm, 32, 0, &tdev_emul, err, sizeof(err)));
		assert_non_null(strstr(err, "slot must be 0-31"));
		err[0] = '\0';
		assert_null(pci_dev_add(&f->vm, 3, 0, &tdev_emul, err, sizeof(err)));
		assert_non_null(strstr(err, "already used by tdev"));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_ids, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cf9_shared_with_pm, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bar_layout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bar_sizing_and_move, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bar_edges, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cfg_access_edges, setup, teardown),
		cmocka_unit_test_setup_teardown(test_device_api_refusals, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_only_fields, setup, teardown),
		cmocka_unit_test_setup_teardown(test_intx, setup, teardown),
		cmocka_unit_test_setup_teardown(test_msix, setup, teardown),
		cmocka_unit_test_setup_teardown(test_msi, setup, teardown),
		cmocka_unit_test(test_config_errors),
		cmocka_unit_test(test_multifunction_and_options),
		cmocka_unit_test_setup_teardown(test_romfile, setup, teardown),
		cmocka_unit_test(test_romfile_refusals),
		cmocka_unit_test(test_romfile_more_refusals),
		cmocka_unit_test_setup_teardown(test_romfile_second_image, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pirq_routing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pirq_snapshot, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
