// SPDX-License-Identifier: BSD-2-Clause
/*
 * libFuzzer target: PCI bus 0 (pci.c, hostbridge.c, lpc.c) as the guest programs it:
 * configuration mechanism #1 (0xCF8/0xCFC), ECAM, BAR sizing and moving, the command
 * register, capabilities, MSI, MSI-X (table and PBA, masking, pending bits), the expansion
 * ROM BAR and INTx.  Each input builds a fresh bare VM with the host bridge at 0:0.0, the LPC
 * bridge at 0:31.0 and, at 0:3.0, a test function that has every feature the bus offers: an
 * I/O BAR, a 32-bit and a 64-bit prefetchable memory BAR, MSI with 4 vectors, MSI-X with 8 in
 * BAR 4, a ROM and INTA.  Then operations:
 *
 *	00 val:u32				write 0xCF8
 *	01 off:u8 val:u32 size:u8 w:u8		access 0xCFC + off % 4
 *	02 dev:u8 off:u16 val:u32 size:u8 w:u8	access ECAM: slot (0, 3, 31 or any), off % 4 KiB
 *	03 bar:u8 off:u16 val:u64 size:u8 w:u8	access the test function's BAR bar % 7 (6: the
 *						ROM) where it is now, size 1/2/4/8
 *	04 v:u8 how:u8				interrupt: pci_interrupt, MSI or MSI-X vector v
 *	05					deassert INTA
 *	06					save, load, save the bus and every function
 *
 * What must hold: no crash, no sanitizer report; every function's saved state loads and
 * saves back to the same bytes.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "dev/pci/pci.h"
#include "sstream.h"
#include "vm.h"
#include "fuzz.h"

#define SLOT 3
#define MAX_OPS 512

static uint8_t rom[4096];
static uint8_t regs[4][4096]; /* what the test function's BARs hold */

static int t_init(struct vm *vm, struct pci_dev *pd, const char *opts, char *err, size_t errlen)
{
	pci_set_ids(pd, 0x1234, 0xFEED, 0xFF, 0, 0, 1);
	if (pci_bar_declare(pd, 0, PCI_BAR_IO, 32, false) ||
	    pci_bar_declare(pd, 1, PCI_BAR_MEM32, 4096, false) ||
	    pci_bar_declare(pd, 2, PCI_BAR_MEM64, 16384, true) || pci_msi_init(pd, 4) ||
	    pci_msix_init(pd, 8, 4) || pci_intx_init(pd, 1) ||
	    pci_rom_set(pd, rom, sizeof(rom), 8192)) {
		snprintf(err, errlen, "test function: setup failed");
		return -EINVAL;
	}
	return 0;
}

static void t_bar_io(struct pci_dev *pd, int bar, uint64_t offset, void *data, unsigned size,
		     bool is_write)
{
	uint8_t *r = regs[bar % 4] + offset % (4096 - 8);

	if (is_write)
		memcpy(r, data, size);
	else
		memcpy(data, r, size);
}

static int t_save(struct pci_dev *pd, struct sstream *s)
{
	return ss_error(s);
}

static int t_load(struct pci_dev *pd, struct sstream *s, unsigned version)
{
	return ss_finish(s);
}

static const struct pci_emul test_emul = {
	.name = "fuzz-test",
	.version = 1,
	.init = t_init,
	.bar_io = t_bar_io,
	.save = t_save,
	.load = t_load,
};

static void access(struct bus *b, uint64_t a, uint64_t v, unsigned size, bool write)
{
	uint8_t buf[8];

	io_put(buf, size, v);
	bus_access(b, a, buf, size, write);
}

static void run(struct vm *vm, struct pci_dev *pd, struct fz *f)
{
	static const unsigned slots[4] = { 0, SLOT, 31, 0 };

	for (unsigned n = 0; !fz_empty(f) && n < MAX_OPS; n++) {
		uint8_t op = fz_u8(f) % 7;

		switch (op) {
		case 0:
			access(&vm->pio, 0xCF8, fz_u32(f), 4, true);
			break;
		case 1: {
			unsigned off = fz_u8(f) % 4;
			uint32_t v = fz_u32(f);
			unsigned size = fz_size(f);

			access(&vm->pio, 0xCFC + (off & ~(size - 1)), v, size, fz_u8(f) & 1);
			break;
		}
		case 2: {
			uint8_t dv = fz_u8(f);
			unsigned slot = dv % 4 == 3 ? (dv >> 2) % 32 : slots[dv % 4];
			unsigned off = fz_u16(f) % 4096;
			uint32_t v = fz_u32(f);
			unsigned size = fz_size(f);

			access(&vm->mmio,
			       PCI_ECAM_BASE + ((uint64_t)slot << 15) + (off & ~(size - 1)), v,
			       size, fz_u8(f) & 1);
			break;
		}
		case 3: {
			unsigned bar = fz_u8(f) % 7, off = fz_u16(f);
			uint64_t v = fz_u64(f), a;
			unsigned size = 1U << (fz_u8(f) % 4);
			bool w = fz_u8(f) & 1;

			if (bar == 6) {
				a = (pci_get_cfg32(pd, 0x30) & ~0x7FFU) + off % 8192;
				access(&vm->mmio, a, v, size, w);
				break;
			}
			if (bar == 3)
				bar = 4; /* 2 and 3 are one 64-bit BAR */
			a = pci_bar_addr(pd, (int)bar);
			if (!a)
				break;
			if (bar == 0)
				access(&vm->pio, a + off % 32, v, size > 4 ? 4 : size, w);
			else
				access(&vm->mmio, a + off % 4096, v, size, w);
			break;
		}
		case 4: {
			unsigned v = fz_u8(f) % 10, how = fz_u8(f) % 3;

			if (how == 0)
				pci_interrupt(pd, v);
			else if (how == 1)
				pci_msi_notify(pd, v);
			else
				pci_msix_notify(pd, v);
			break;
		}
		case 5:
			pci_irq_deassert(pd);
			break;
		default:
			for (struct dev *d = vm->devs; d; d = d->next)
				fz_dev_identity(d, d->ops->version, d->id);
			break;
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz f = { data, size };
	struct config cfg;
	struct pci_dev *pd;
	struct vm vm;
	char err[256];

	fz_vm_init(&vm, &cfg, 4 * MiB);
	config_set(&cfg, "pci.0.0.0.device", "hostbridge");
	config_set(&cfg, "pci.0.31.0.device", "lpc");
	FZ_ASSERT(!pci_setup(&vm, err, sizeof(err)), "pci_setup: %s", err);
	pd = pci_dev_add(&vm, SLOT, 0, &test_emul, err, sizeof(err));
	FZ_ASSERT(pd, "test function: %s", err);
	run(&vm, pd, &f);
	for (struct dev *d = vm.devs; d; d = d->next)
		fz_dev_identity(d, d->ops->version, d->id);
	vm_destroy(&vm);
	config_free(&cfg);
	return 0;
}

static void ecam(struct fz_seed *s, unsigned slot_sel, unsigned off, uint32_t v, unsigned size,
		 bool w)
{
	fz_put(s, 2, 1);
	fz_put(s, slot_sel, 1);
	fz_put(s, off, 2);
	fz_put(s, v, 4);
	fz_put_size(s, size);
	fz_put(s, w, 1);
}

void fuzz_seeds(void)
{
	struct fz_seed s;

	/* Firmware's enumeration: sizing every BAR through 0xCF8/0xCFC, then moving them. */
	fz_seed_start(&s);
	for (unsigned bar = 0; bar < 7; bar++) {
		unsigned reg = bar == 6 ? 0x30 : 0x10 + 4 * bar;

		fz_put(&s, 0, 1);
		fz_put(&s, 0x80000000U | SLOT << 11 | reg, 4);
		fz_put(&s, 1, 1);
		fz_put(&s, 0, 1);
		fz_put(&s, 0xFFFFFFFF, 4);
		fz_put(&s, 2, 1);
		fz_put(&s, 1, 1);
		fz_put(&s, 1, 1);
		fz_put(&s, 0, 1);
		fz_put(&s, 0, 4);
		fz_put(&s, 2, 1);
		fz_put(&s, 0, 1);
	}
	ecam(&s, 1, 0x10, 0xC000, 4, true);
	ecam(&s, 1, 0x14, 0xD0000000, 4, true);
	ecam(&s, 1, 0x30, 0xD0100001, 4, true);
	ecam(&s, 1, 0x04, 0x7, 2, true);
	fz_put(&s, 3, 1);
	fz_put(&s, 6, 1);
	fz_put(&s, 0, 2);
	fz_put(&s, 0, 8);
	fz_put(&s, 2, 1);
	fz_put(&s, 0, 1);
	fz_put(&s, 6, 1);
	fz_seed_write(&s, "enumerate");
	/* A driver's MSI-X: table entries written, the function enabled, vectors sent. */
	fz_seed_start(&s);
	ecam(&s, 1, 0x04, 0x6, 2, true);
	for (unsigned v = 0; v < 3; v++) {
		fz_put(&s, 3, 1);
		fz_put(&s, 4, 1);
		fz_put(&s, 16 * v, 2);
		fz_put(&s, 0xFEE00000ULL | (uint64_t)(0x30 + v) << 32, 8);
		fz_put(&s, 3, 1);
		fz_put(&s, 1, 1);
		fz_put(&s, 3, 1);
		fz_put(&s, 4, 1);
		fz_put(&s, 16 * v + 12, 2);
		fz_put(&s, v == 2, 8);
		fz_put(&s, 2, 1);
		fz_put(&s, 1, 1);
	}
	fz_put(&s, 4, 1); /* MSI-X capability found by walking from 0x34 in a mutation */
	fz_put(&s, 0, 1);
	fz_put(&s, 2, 1);
	for (unsigned c = 0x40; c < 0x80; c += 4)
		ecam(&s, 1, c, 0xC0000000, 4, true);
	for (unsigned v = 0; v < 4; v++) {
		fz_put(&s, 4, 1);
		fz_put(&s, v, 1);
		fz_put(&s, 2, 1);
	}
	fz_put(&s, 6, 1);
	fz_seed_write(&s, "msix");
}
