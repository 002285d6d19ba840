// SPDX-License-Identifier: BSD-2-Clause
/*
 * libFuzzer target: the xHCI controller and its USB tablet (src/dev/usb/): registers, the
 * command ring, transfer rings, event ring, device and input contexts in guest memory.
 *
 * Each input builds a fresh bare VM with 4 MiB of RAM and an xHCI with a tablet on port 1,
 * brought up as a driver does (reset, DCBAA, command ring, one event ring segment, run, port
 * reset) with well-formed structures to mutate: a command ring holding Enable Slot, Address
 * Device, Configure Endpoint (interrupt IN) and a No-Op, their input contexts, an EP0 ring
 * with GET_DESCRIPTOR and SET_CONFIGURATION transfers and an interrupt ring of Normal TRBs.
 * The input is then a list of operations:
 *
 *	00 reg:u16 val:u32		write a register (reg & 0x3ffc)
 *	01 reg:u16			read one
 *	02 off:u24 len:u8 bytes		write guest RAM (rings, contexts, ERST, DCBAA, buffers)
 *	03 db:u8 target:u8		ring doorbell db % 33
 *	04				pause and resume
 *	05				pause, save, load into the same controller, save: identical
 *	06 x:u16 y:u16 mask:u8		a pointer event from the console
 *	07 idx:u8			consume events: ERDP to slot idx % 64, EHB cleared
 *
 * What must hold: no crash, no sanitizer report, no hang, and the state round-trips.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/console.h"
#include "config.h"
#include "dev/pci/pci.h"
#include "sstream.h"
#include "vm.h"
#include "fuzz.h"

extern const struct pci_emul pci_emul_xhci;

#define RAM (4 * MiB)
#define DCBAA 0x10000ULL
#define CMD 0x11000ULL
#define ERST 0x12000ULL
#define EV 0x13000ULL
#define EV_TRBS 64
#define ICTX 0x14000ULL
#define ICTX2 0x14800ULL
#define OCTX 0x15000ULL
#define EP0 0x16000ULL
#define EP1 0x17000ULL
#define BUF 0x20000ULL
#define OP 0x20

static void put32(struct vm *vm, uint64_t a, uint32_t v)
{
	void *p = vm_gpa(vm, a, 4);

	if (p)
		memcpy(p, &v, 4);
}

static void put_trb(struct vm *vm, uint64_t a, uint64_t param, uint32_t status, uint32_t ctl)
{
	put32(vm, a, (uint32_t)param);
	put32(vm, a + 4, (uint32_t)(param >> 32));
	put32(vm, a + 8, status);
	put32(vm, a + 12, ctl | 1); /* cycle 1 */
}

static void reg(struct vm *vm, uint64_t bar, unsigned r, uint32_t v, bool write)
{
	uint8_t b[4];

	io_put(b, 4, v);
	bus_access(&vm->mmio, bar + r, b, 4, write);
}

static void reg64(struct vm *vm, uint64_t bar, unsigned r, uint64_t v)
{
	reg(vm, bar, r, (uint32_t)v, true);
	reg(vm, bar, r + 4, (uint32_t)(v >> 32), true);
}

/* Rings and contexts a driver would write, for the input to mutate. */
static void structures(struct vm *vm)
{
	uint64_t setup_dev = 0x80 | 6 << 8 | 0x100ULL << 16 | 18ULL << 48;
	uint64_t setup_cfg = 0x00 | 9 << 8 | 1ULL << 16;

	put32(vm, DCBAA + 8, (uint32_t)OCTX);
	put_trb(vm, CMD, 0, 0, 9 << 10);
	put_trb(vm, CMD + 16, ICTX, 0, 11 << 10 | 1U << 24);
	put_trb(vm, CMD + 32, ICTX2, 0, 12 << 10 | 1U << 24);
	put_trb(vm, CMD + 48, 0, 0, 23 << 10);
	put_trb(vm, CMD + 16 * 63, CMD, 0, 6 << 10 | 2);
	/* Address Device: A0 A1, port 1, full speed, EP0 control 64 bytes */
	put32(vm, ICTX + 4, 3);
	put32(vm, ICTX + 32, 1U << 27 | 1U << 20);
	put32(vm, ICTX + 36, 1U << 16);
	put32(vm, ICTX + 68, 4U << 3 | 3U << 1 | 64U << 16);
	put32(vm, ICTX + 72, (uint32_t)EP0 | 1);
	/* Configure Endpoint: A0 A3, interrupt IN 8 bytes */
	put32(vm, ICTX2 + 4, 1U | 1U << 3);
	put32(vm, ICTX2 + 32, 3U << 27 | 1U << 20);
	put32(vm, ICTX2 + 4 * 32 + 0, 6U << 16);
	put32(vm, ICTX2 + 4 * 32 + 4, 7U << 3 | 3U << 1 | 8U << 16);
	put32(vm, ICTX2 + 4 * 32 + 8, (uint32_t)EP1 | 1);
	/* EP0: GET_DESCRIPTOR(device), SET_CONFIGURATION(1) */
	put_trb(vm, EP0, setup_dev, 8, 2 << 10 | 1U << 6 | 3U << 16);
	put_trb(vm, EP0 + 16, BUF, 18, 3 << 10 | 1U << 16 | 1U << 2);
	put_trb(vm, EP0 + 32, 0, 0, 4 << 10 | 1U << 5);
	put_trb(vm, EP0 + 48, setup_cfg, 8, 2 << 10 | 1U << 6);
	put_trb(vm, EP0 + 64, 0, 0, 4 << 10 | 1U << 5 | 1U << 16);
	put_trb(vm, EP0 + 16 * 63, EP0, 0, 6 << 10 | 2);
	/* EP1: Normal TRBs of 8 bytes */
	for (unsigned i = 0; i < 8; i++)
		put_trb(vm, EP1 + 16 * i, BUF + 0x100 + 8 * i, 8, 1 << 10 | 1U << 5 | 1U << 2);
	put_trb(vm, EP1 + 16 * 63, EP1, 0, 6 << 10 | 2);
}

static void bring_up(struct vm *vm, uint64_t bar)
{
	put32(vm, ERST, (uint32_t)EV);
	put32(vm, ERST + 8, EV_TRBS);
	reg(vm, bar, OP + 0x00, 2, true);		   /* HCRST */
	reg(vm, bar, OP + 0x38, 32, true);		   /* CONFIG */
	reg64(vm, bar, OP + 0x30, DCBAA);		   /* DCBAAP */
	reg64(vm, bar, OP + 0x18, CMD | 1);		   /* CRCR */
	reg(vm, bar, 0x1000 + 0x28, 1, true);		   /* ERSTSZ */
	reg64(vm, bar, 0x1000 + 0x38, EV);		   /* ERDP */
	reg64(vm, bar, 0x1000 + 0x30, ERST);		   /* ERSTBA */
	reg(vm, bar, 0x1000 + 0x20, 2, true);		   /* IMAN.IE */
	reg(vm, bar, OP + 0x00, 5, true);		   /* RS, INTE */
	reg(vm, bar, OP + 0x400, 1U << 4 | 1U << 9, true); /* port 1 reset */
}

static void identity(struct pci_dev *pd)
{
	pd->dev.ops->pause(&pd->dev);
	fz_dev_identity(&pd->dev, pci_emul_xhci.version, "xhci");
	pd->dev.ops->resume(&pd->dev);
}

static void run(struct vm *vm, struct pci_dev *pd, uint64_t bar, struct fz *f)
{
	struct console *con = console_of(vm);

	for (unsigned n = 0; !fz_empty(f) && n < 256; n++) {
		uint8_t op = fz_u8(f);
		size_t got;

		switch (op % 8) {
		case 0: {
			unsigned r = fz_u16(f) & 0x3ffc;

			reg(vm, bar, r, fz_u32(f), true);
			break;
		}
		case 1:
			reg(vm, bar, fz_u16(f) & 0x3ffc, 0, false);
			break;
		case 2: {
			uint64_t off = fz_uint(f, 3) % (RAM - 256);
			uint8_t len = fz_u8(f);
			const uint8_t *src = fz_bytes(f, len, &got);

			memcpy(vm_gpa(vm, off, got ? got : 1), src, got);
			break;
		}
		case 3: {
			unsigned db = fz_u8(f) % 33;

			reg(vm, bar, 0x2000 + 4 * db, fz_u8(f), true);
			break;
		}
		case 4:
			pd->dev.ops->pause(&pd->dev);
			pd->dev.ops->resume(&pd->dev);
			break;
		case 5:
			identity(pd);
			break;
		case 6: {
			unsigned x = fz_u16(f), y = fz_u16(f);

			if (con)
				console_pointer_event(con, x, y, fz_u8(f));
			break;
		}
		case 7:
			reg64(vm, bar, 0x1000 + 0x38, (EV + 16ULL * (fz_u8(f) % EV_TRBS)) | 8);
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
	uint64_t bar;

	fz_vm_init(&vm, &cfg, RAM);
	config_set(&cfg, "pci.0.4.0.tablet", "true");
	if (pci_setup(&vm, err, sizeof(err)))
		abort();
	pd = pci_dev_add(&vm, 4, 0, &pci_emul_xhci, err, sizeof(err));
	FZ_ASSERT(pd, "xhci: %s", err);
	bar = pci_bar_addr(pd, 0);
	structures(&vm);
	bring_up(&vm, bar);
	run(&vm, pd, bar, &f);
	identity(pd);
	vm_destroy(&vm);
	config_free(&cfg);
	return 0;
}

void fuzz_seeds(void)
{
	struct fz_seed s;

	/* The four commands, the EP0 transfers, configured: reports on the interrupt ring. */
	fz_seed_start(&s);
	fz_put(&s, 3, 1);
	fz_put(&s, 0, 1);
	fz_put(&s, 0, 1);
	fz_put(&s, 3, 1);
	fz_put(&s, 1, 1);
	fz_put(&s, 1, 1);
	fz_put(&s, 3, 1);
	fz_put(&s, 1, 1);
	fz_put(&s, 3, 1);
	for (unsigned i = 0; i < 4; i++) {
		fz_put(&s, 6, 1);
		fz_put(&s, 100 * i, 2);
		fz_put(&s, 50 * i, 2);
		fz_put(&s, i & 1, 1);
	}
	fz_put(&s, 7, 1);
	fz_put(&s, 12, 1);
	fz_put(&s, 5, 1);
	fz_seed_write(&s, "enumerate-and-report");
	/* Commands only, then a snapshot while events wait. */
	fz_seed_start(&s);
	fz_put(&s, 3, 1);
	fz_put(&s, 0, 1);
	fz_put(&s, 0, 1);
	fz_put(&s, 4, 1);
	fz_put(&s, 5, 1);
	fz_seed_write(&s, "commands-snapshot");
	/* A bad TRB type in the command ring. */
	fz_seed_start(&s);
	fz_put(&s, 2, 1);
	fz_put(&s, CMD + 13, 3);
	fz_put(&s, 1, 1);
	fz_put(&s, 0xfc, 1);
	fz_put(&s, 3, 1);
	fz_put(&s, 0, 1);
	fz_put(&s, 0, 1);
	fz_seed_write(&s, "bad-command");
}
