// SPDX-License-Identifier: BSD-2-Clause
/*
 * libFuzzer target: the e1000's registers and rings (src/dev/net/e1000*.c).
 *
 * Each input builds a fresh bare VM with 4 MiB of RAM and one e1000 on a backend that takes
 * every frame and keeps none.  The driver's side is set up first as Linux's e1000 would
 * (link, a transmit and a receive ring of 64 descriptors with 2 KiB buffers, both units on),
 * so that mutations reach packets, contexts and TSO rather than dying on an empty ring.  The
 * input is then a list of operations:
 *
 *	00 reg:u16 val:u32		write a register (reg & 0x1fffc)
 *	01 reg:u16			read one (ICR and the statistics clear on read)
 *	02 off:u24 len:u8 bytes		write guest RAM: rings, buffers, anything
 *	03 lower:u32 upper:u32 b:u8	a transmit descriptor at TDT, buffer b (0xff: its address
 *					from the next 8 input bytes), then the doorbell
 *	04 len:u16 bytes		a frame from the network
 *	05 ns:u24			let the virtual clock run (delay and throttle timers fire)
 *	06				pause (sends what is queued) and resume
 *	07				pause, save, load into the same device, save again: the
 *					same bytes, then resume
 *	08 off:u8 val:u32 w:u8		the I/O window (IOADDR / IODATA)
 *	09 sel:u8 off:u24 len:u8 val:u64 [addr:u64]
 *					a write into KVM's coalesced MMIO ring, as KVM would
 *					put it there (if there is room): at BAR 0 + off, or with
 *					sel bit 0 at addr; len and (sel bit 1) the port I/O
 *					flag as given, malformed or not
 *	0a sel:u8 [first:u32 last:u32]	drain the ring (sel bit 0: after setting its indices)
 *
 * The ring stands in for KVM's (bus.h): a page of the fuzzer's own, attached before the NIC,
 * so BAR 0 has its coalesced zones and the backend's frames drain it first.
 *
 * What must hold: no crash, no sanitizer report, no hang, and a paused device saves, loads and
 * saves back to the same bytes.
 *
 * Written against the fuzz framework's tests/fuzz/fuzz.h (fz_* readers, fuzz_seeds); its
 * Makefile rules build it.  By hand: compile src/ with clang -fsanitize=fuzzer-no-link,address,
 * this file and fuzz.c with -fsanitize=fuzzer,address, link with the objects and the libs.
 */
#include <stdlib.h>
#include <string.h>

#include "backend/net_backend.h"
#include "config.h"
#include "dev/net/e1000.h"
#include "dev/net/e1000_regs.h"
#include "dev/pci/pci.h"
#include "fuzz.h"
#include "sstream.h"
#include "vm.h"

extern const struct pci_emul pci_emul_e1000;

#define RAM (4 * MiB)
#define NDESC 64
#define TXR 0x10000ULL
#define RXR 0x11000ULL
#define TXB(i) (0x100000ULL + 0x800ULL * (i))
#define RXB(i) (0x200000ULL + 0x800ULL * (i))
#define MAX_OPS 512
#define RING_MAX 170 /* entries in a 4 KiB page, as KVM's */

static int null_open(struct net_backend *nb, const struct net_backend_args *a, char *err,
		     size_t errlen)
{
	return 0;
}

static int null_send(struct net_backend *nb, const void *frame, size_t len)
{
	return 0;
}

static void null_close(struct net_backend *nb)
{
}

static const struct net_backend_type null_type = {
	.name = "null",
	.usage = "null",
	.open = null_open,
	.send = null_send,
	.close = null_close,
};

static void reg_wr(struct vm *vm, uint64_t bar, uint32_t off, uint32_t v)
{
	uint8_t b[4];

	io_put(b, 4, v);
	bus_access(&vm->mmio, bar + off, b, 4, true);
}

static uint32_t reg_rd(struct vm *vm, uint64_t bar, uint32_t off)
{
	uint8_t b[4];

	bus_access(&vm->mmio, bar + off, b, 4, false);
	return (uint32_t)io_get(b, 4);
}

/* Rings of 64 descriptors with their buffers, link, both units on: a driver after open(). */
static void driver_up(struct vm *vm, uint64_t bar)
{
	uint8_t *txr = vm_gpa(vm, TXR, 16 * NDESC), *rxr = vm_gpa(vm, RXR, 16 * NDESC);

	memset(txr, 0, 16 * NDESC);
	for (unsigned i = 0; i < NDESC; i++) {
		uint64_t a = RXB(i);

		memset(rxr + 16 * i, 0, 16);
		memcpy(rxr + 16 * i, &a, 8);
	}
	reg_wr(vm, bar, E1000_CTRL, E1000_CTRL_SLU | E1000_CTRL_FD);
	reg_wr(vm, bar, E1000_TDBAL, (uint32_t)TXR);
	reg_wr(vm, bar, E1000_TDLEN, 16 * NDESC);
	reg_wr(vm, bar, E1000_TCTL, E1000_TCTL_EN | E1000_TCTL_PSP);
	reg_wr(vm, bar, E1000_RDBAL, (uint32_t)RXR);
	reg_wr(vm, bar, E1000_RDLEN, 16 * NDESC);
	reg_wr(vm, bar, E1000_RDT, NDESC - 1);
	reg_wr(vm, bar, E1000_RCTL, E1000_RCTL_EN | E1000_RCTL_BAM | E1000_RCTL_UPE);
	reg_wr(vm, bar, E1000_IMS, E1000_ICR_ALL);
}

static void identity(struct pci_dev *pd)
{
	pd->dev.ops->pause(&pd->dev);
	fz_dev_identity(&pd->dev, 1, "e1000");
	pd->dev.ops->resume(&pd->dev);
}

static void tx_desc(struct vm *vm, uint64_t bar, struct fz *f)
{
	uint32_t lower = fz_u32(f), upper = fz_u32(f), tdt = reg_rd(vm, bar, E1000_TDT);
	uint8_t b = fz_u8(f);
	uint64_t addr = b == 0xFF ? fz_u64(f) : TXB(b % NDESC);
	uint8_t *d = vm_gpa(vm, TXR + 16ULL * (tdt % NDESC), 16);

	memcpy(d, &addr, 8);
	memcpy(d + 8, &lower, 4);
	memcpy(d + 12, &upper, 4);
	reg_wr(vm, bar, E1000_TDT, (tdt + 1) % NDESC);
}

/* A guest's write as KVM buffers it: a ring that is full takes nothing (the write exits). */
static void ring_put(struct kvm_coalesced_mmio_ring *r, uint64_t bar, struct fz *f)
{
	uint8_t sel = fz_u8(f);
	uint64_t addr = bar + fz_uint(f, 3);
	uint32_t len = fz_u8(f);
	uint64_t val = fz_u64(f);
	struct kvm_coalesced_mmio *e;

	if (sel & 1)
		addr = fz_u64(f);
	if (r->first >= RING_MAX || r->last >= RING_MAX || (r->last + 1) % RING_MAX == r->first)
		return;
	e = &r->coalesced_mmio[r->last];
	e->phys_addr = addr;
	e->len = len;
	e->pio = sel >> 1 & 1;
	memcpy(e->data, &val, 8);
	r->last = (r->last + 1) % RING_MAX;
}

static void ring_drain(struct vm *vm, struct kvm_coalesced_mmio_ring *r, struct fz *f)
{
	if (fz_u8(f) & 1) {
		r->first = fz_u32(f);
		r->last = fz_u32(f);
	}
	bus_coalesce_drain(&vm->mmio);
}

static void run(struct vm *vm, struct pci_dev *pd, uint64_t bar, uint16_t io, struct fz *f)
{
	struct e1000 *e = pd->priv;

	for (unsigned n = 0; !fz_empty(f) && n < MAX_OPS; n++) {
		uint8_t op = fz_u8(f), b[4];
		size_t got;

		switch (op % 11) {
		case 0: {
			uint32_t reg = fz_u16(f) & 0x1FFFC;

			reg_wr(vm, bar, reg, fz_u32(f));
			break;
		}
		case 1:
			reg_rd(vm, bar, fz_u16(f) & 0x1FFFC);
			break;
		case 2: {
			uint64_t off = fz_uint(f, 3) % (RAM - 256);
			const uint8_t *src = fz_bytes(f, fz_u8(f), &got);

			memcpy(vm_gpa(vm, off, got ? got : 1), src, got);
			break;
		}
		case 3:
			tx_desc(vm, bar, f);
			break;
		case 4: {
			const uint8_t *frame = fz_bytes(f, fz_u16(f), &got);

			e->nb->rx(e->nb->opaque, frame, got);
			break;
		}
		case 5:
			evloop_advance(&vm->ev, vclock_ns(&vm->ev) + fz_uint(f, 3));
			break;
		case 6:
			pd->dev.ops->pause(&pd->dev);
			pd->dev.ops->resume(&pd->dev);
			break;
		case 7:
			identity(pd);
			break;
		case 8: {
			uint8_t off = fz_u8(f) & 7;
			uint32_t v = fz_u32(f);
			bool w = fz_u8(f) & 1;

			io_put(b, 4, v);
			bus_access(&vm->pio, io + (off & 4), b, 4, w);
			break;
		}
		case 9:
			ring_put(vm->mmio.ring, bar, f);
			break;
		case 10:
			ring_drain(vm, vm->mmio.ring, f);
			break;
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz f = { data, size };
	struct kvm_coalesced_mmio_ring *ring = calloc(1, 4096);
	struct config cfg;
	struct pci_dev *pd;
	struct vm vm;
	char err[256];
	uint64_t bar;

	net_backend_register(&null_type);
	fz_vm_init(&vm, &cfg, RAM);
	config_set(&cfg, "pci.0.3.0.backend", "null");
	config_set(&cfg, "pci.0.3.0.txthread", "off"); /* deterministic: the writer transmits */
	if (!ring || pci_setup(&vm, err, sizeof(err)) || vm_coalesce_attach(&vm, ring, RING_MAX))
		abort();
	pd = pci_dev_add(&vm, 3, 0, &pci_emul_e1000, err, sizeof(err));
	FZ_ASSERT(pd, "e1000: %s", err);
	bar = pci_bar_addr(pd, 0);
	driver_up(&vm, bar);
	run(&vm, pd, bar, (uint16_t)pci_bar_addr(pd, 1), &f);
	/* Whatever the input did, a paused device round-trips. */
	identity(pd);
	vm_destroy(&vm);
	config_free(&cfg);
	free(ring);
	return 0;
}

/* A 60-byte UDP frame to the broadcast address, for the seeds. */
static void seed_frame(struct fz_seed *s)
{
	uint8_t fr[60] = { 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x52, 0x54, 0, 0, 0, 1, 0x08, 0 };

	fr[14] = 0x45;
	fr[17] = 46;
	fr[22] = 64;
	fr[23] = 17;
	fz_put_bytes(s, fr, sizeof(fr));
}

void fuzz_seeds(void)
{
	struct fz_seed s;

	/* Receive buffers given back through the ring (RDT), then a frame that finds them. */
	fz_seed_start(&s);
	fz_put(&s, 9, 1);
	fz_put(&s, 0, 1);
	fz_put(&s, E1000_RDT, 3);
	fz_put(&s, 4, 1);
	fz_put(&s, 5, 8);
	fz_put(&s, 4, 1);
	fz_put(&s, 60, 2);
	seed_frame(&s);
	fz_put(&s, 10, 1);
	fz_put(&s, 0, 1);
	fz_put(&s, 7, 1);
	fz_seed_write(&s, "coalesced-rdt");

	/* A legacy packet: the frame in buffer 0, one descriptor with EOP, RS, IC. */
	fz_seed_start(&s);
	fz_put(&s, 2, 1);
	fz_put(&s, TXB(0), 3);
	fz_put(&s, 60, 1);
	seed_frame(&s);
	fz_put(&s, 3, 1);
	fz_put(&s, 60 | E1000_TXD_CMD_EOP | E1000_TXD_CMD_RS | E1000_TXD_CMD_IC | 40U << 16, 4);
	fz_put(&s, 34U << 8, 4);
	fz_put(&s, 0, 1);
	fz_put(&s, 7, 1);
	fz_seed_write(&s, "legacy-packet");
	/* A TSO context and two data descriptors, then time for TIDV. */
	fz_seed_start(&s);
	fz_put(&s, 3, 1);
	fz_put(&s,
	       E1000_TXD_CMD_DEXT | E1000_TXC_TUCMD_IP | E1000_TXC_TUCMD_TCP | E1000_TXC_TUCMD_TSE |
		       3000,
	       4);
	fz_put(&s, 54U << 8 | 1000U << 16, 4);
	fz_put(&s, 0xFF, 1);
	fz_put(&s, 14 | 24 << 8 | 33 << 16 | 34ULL << 32 | 50ULL << 40, 8);
	fz_put(&s, 3, 1);
	fz_put(&s, E1000_TXD_CMD_DEXT | E1000_TXD_DTYP_DATA | E1000_TXD_CMD_TSE | 1054, 4);
	fz_put(&s, E1000_TXD_POPTS_IXSM | E1000_TXD_POPTS_TXSM, 4);
	fz_put(&s, 1, 1);
	fz_put(&s, 3, 1);
	fz_put(&s,
	       E1000_TXD_CMD_DEXT | E1000_TXD_DTYP_DATA | E1000_TXD_CMD_TSE | E1000_TXD_CMD_EOP |
		       E1000_TXD_CMD_RS | E1000_TXD_CMD_IDE | 2000,
	       4);
	fz_put(&s, 0, 4);
	fz_put(&s, 2, 1);
	fz_put(&s, 0, 1);
	fz_put(&s, E1000_TIDV, 2);
	fz_put(&s, 8, 4);
	fz_put(&s, 5, 1);
	fz_put(&s, 100000, 3);
	fz_put(&s, 7, 1);
	fz_seed_write(&s, "tso");
	/* Frames from the network with delays and throttling on, and a VLAN tag stripped. */
	fz_seed_start(&s);
	fz_put(&s, 0, 1);
	fz_put(&s, E1000_RDTR, 2);
	fz_put(&s, 50, 4);
	fz_put(&s, 0, 1);
	fz_put(&s, E1000_ITR, 2);
	fz_put(&s, 500, 4);
	fz_put(&s, 4, 1);
	fz_put(&s, 60, 2);
	seed_frame(&s);
	fz_put(&s, 0, 1);
	fz_put(&s, E1000_CTRL, 2);
	fz_put(&s, E1000_CTRL_SLU | E1000_CTRL_VME, 4);
	fz_put(&s, 4, 1);
	fz_put(&s, 64, 2);
	fz_put_bytes(&s,
		     (const uint8_t[]){ 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x52, 0, 0, 0, 0, 2,
					0x81, 0, 0x20, 5, 0x08, 0, 0x45 },
		     19);
	fz_put_bytes(&s, (const uint8_t[45]){ 0 }, 45);
	fz_put(&s, 5, 1);
	fz_put(&s, 200000, 3);
	fz_put(&s, 1, 1);
	fz_put(&s, E1000_ICR, 2);
	fz_put(&s, 7, 1);
	fz_seed_write(&s, "rx-delays-vlan");
	/* The EEPROM by EERD and the PHY by MDIC, a reset through the I/O window. */
	fz_seed_start(&s);
	fz_put(&s, 0, 1);
	fz_put(&s, E1000_EERD, 2);
	fz_put(&s, 3U << 8 | E1000_EERD_START, 4);
	fz_put(&s, 0, 1);
	fz_put(&s, E1000_MDIC, 2);
	fz_put(&s, 1U << 21 | 0U << 16 | E1000_MDIC_OP_WRITE | 0x9340, 4);
	fz_put(&s, 8, 1);
	fz_put(&s, 0, 1);
	fz_put(&s, E1000_CTRL, 4);
	fz_put(&s, 1, 1);
	fz_put(&s, 8, 1);
	fz_put(&s, 4, 1);
	fz_put(&s, E1000_CTRL_RST, 4);
	fz_put(&s, 1, 1);
	fz_put(&s, 7, 1);
	fz_seed_write(&s, "eeprom-phy-reset");
}
