// SPDX-License-Identifier: BSD-2-Clause
/*
 * xHCI and the USB tablet driven as SeaBIOS and Linux drive them: a command ring, an event
 * ring and a DCBAA in guest RAM, port reset, Enable Slot, Address Device, control transfers
 * for the descriptors, SET_CONFIGURATION, Configure Endpoint and interrupt-IN TDs for the
 * reports.  Then the same rings with malformed TRBs and contexts, which must complete with
 * the xHCI error codes and never hang or touch memory outside RAM, and snapshots.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "backend/console.h"
#include "config.h"
#include "dev/dev.h"
#include "dev/pci/pci.h"
#include "sstream.h"
#include "vm.h"
#include "devsnap.h"

extern const struct pci_emul pci_emul_xhci;

#define RAM_SIZE (16 * MiB)
#define DCBAA 0x10000ULL
#define CMD_RING 0x11000ULL
#define ERST 0x12000ULL
#define EV_RING 0x13000ULL
#define ICTX 0x14000ULL
#define OCTX 0x15000ULL
#define EP0_RING 0x16000ULL
#define EP1_RING 0x17000ULL
#define BUF 0x20000ULL
#define RING_TRBS 64
#define EV_TRBS 32

/* Registers (offsets in BAR 0). */
#define OP 0x20
#define USBCMD (OP + 0x00)
#define USBSTS (OP + 0x04)
#define CRCR (OP + 0x18)
#define DCBAAP (OP + 0x30)
#define CONFIG (OP + 0x38)
#define PORTSC(n) (OP + 0x400 + 0x10 * ((n)-1))
#define IR0 (0x1000 + 0x20)
#define IMAN (IR0 + 0x00)
#define ERSTSZ (IR0 + 0x08)
#define ERSTBA (IR0 + 0x10)
#define ERDP (IR0 + 0x18)
#define DB(n) (0x2000 + 4 * (n))

#define T_NORMAL 1
#define T_SETUP 2
#define T_DATA 3
#define T_STATUS 4
#define T_LINK 6
#define T_NOOP 8
#define T_ENABLE_SLOT 9
#define T_DISABLE_SLOT 10
#define T_ADDRESS 11
#define T_CONFIGURE 12
#define T_EVALUATE 13
#define T_RESET_EP 14
#define T_STOP_EP 15
#define T_SET_DEQ 16
#define T_RESET_DEV 17
#define T_NOOP_CMD 23
#define E_TRANSFER 32
#define E_CMD 33
#define E_PORT 34

#define CC_SUCCESS 1
#define CC_TRB 5
#define CC_STALL 6
#define CC_NO_SLOTS 9
#define CC_SLOT_NOT_ENABLED 11
#define CC_SHORT 13
#define CC_PARAMETER 17
#define CC_CONTEXT_STATE 19
#define CC_TRANSACTION 4

#define IOC (1U << 5)
#define IDT (1U << 6)
#define ISP (1U << 2)
#define CH (1U << 4)

struct trb {
	uint64_t param;
	uint32_t status, control;
};

static unsigned irq_level, msi_count;

static void rec_irq(struct vm *vm, unsigned gsi, int level)
{
	irq_level = (unsigned)level;
}

static int rec_msi(struct vm *vm, uint64_t addr, uint32_t data)
{
	msi_count++;
	return 0;
}

struct ring {
	uint64_t base;
	unsigned idx;
	bool cycle;
};

struct fx {
	struct vm vm;
	struct config cfg;
	struct pci_dev *pd;
	uint64_t bar;
	struct ring cmd, ep0, ep1;
	unsigned ev_idx;
	bool ev_cycle;
	unsigned slot;
};

/* ---- plumbing ---- */

static void *gpa(struct fx *f, uint64_t a, uint64_t len)
{
	void *p = vm_gpa(&f->vm, a, len);

	assert_non_null(p);
	return p;
}

static uint32_t rd(struct fx *f, unsigned reg)
{
	uint8_t b[4];

	assert_true(bus_access(&f->vm.mmio, f->bar + reg, b, 4, false));
	return (uint32_t)io_get(b, 4);
}

static void wr(struct fx *f, unsigned reg, uint32_t v)
{
	uint8_t b[4];

	io_put(b, 4, v);
	assert_true(bus_access(&f->vm.mmio, f->bar + reg, b, 4, true));
}

static void wr64(struct fx *f, unsigned reg, uint64_t v)
{
	wr(f, reg, (uint32_t)v);
	wr(f, reg + 4, (uint32_t)(v >> 32));
}

static void put_trb(struct fx *f, uint64_t a, const struct trb *t)
{
	memcpy(gpa(f, a, 16), t, 16);
}

static struct trb get_trb(struct fx *f, uint64_t a)
{
	struct trb t;

	memcpy(&t, gpa(f, a, 16), 16);
	return t;
}

static void ring_init(struct fx *f, struct ring *r, uint64_t base)
{
	struct trb link = { .param = base, .control = T_LINK << 10 | 2 /* toggle */ };

	memset(gpa(f, base, RING_TRBS * 16), 0, RING_TRBS * 16);
	put_trb(f, base + 16 * (RING_TRBS - 1), &link);
	r->base = base;
	r->idx = 0;
	r->cycle = true;
}

/* Queue @t (its cycle bit set here); returns its address.  Hops the link at the end. */
static uint64_t ring_put(struct fx *f, struct ring *r, struct trb t)
{
	uint64_t a = r->base + 16ULL * r->idx;

	t.control = (t.control & ~1U) | (r->cycle ? 1 : 0);
	put_trb(f, a, &t);
	if (++r->idx == RING_TRBS - 1) {
		struct trb link = get_trb(f, r->base + 16 * (RING_TRBS - 1));

		link.control = (link.control & ~1U) | (r->cycle ? 1 : 0);
		put_trb(f, r->base + 16 * (RING_TRBS - 1), &link);
		r->idx = 0;
		r->cycle = !r->cycle;
	}
	return a;
}

/* The next event, if the controller posted one; consumed (ERDP written, EHB cleared). */
static bool event(struct fx *f, struct trb *ev)
{
	struct trb t = get_trb(f, EV_RING + 16ULL * f->ev_idx);

	if (!(t.control & 1) != !f->ev_cycle)
		return false;
	*ev = t;
	if (++f->ev_idx == EV_TRBS) {
		f->ev_idx = 0;
		f->ev_cycle = !f->ev_cycle;
	}
	wr64(f, ERDP, (EV_RING + 16ULL * f->ev_idx) | 8);
	return true;
}

static unsigned cc_of(const struct trb *ev)
{
	return ev->status >> 24;
}

static unsigned type_of(const struct trb *ev)
{
	return (ev->control >> 10) & 0x3f;
}

/* Skip Port Status Change events; the next other event must be there. */
static struct trb next_event(struct fx *f)
{
	struct trb ev;

	do
		assert_true(event(f, &ev));
	while (type_of(&ev) == E_PORT);
	return ev;
}

static void no_event(struct fx *f)
{
	struct trb ev;

	while (event(f, &ev))
		assert_int_equal(type_of(&ev), E_PORT);
}

/* A command; returns its completion event (which must point at it). */
static struct trb command(struct fx *f, struct trb t)
{
	uint64_t a = ring_put(f, &f->cmd, t);
	struct trb ev;

	wr(f, DB(0), 0);
	ev = next_event(f);
	assert_int_equal(type_of(&ev), E_CMD);
	assert_int_equal(ev.param, a);
	return ev;
}

static unsigned cmd_cc(struct fx *f, uint32_t type, unsigned slot, uint32_t extra, uint64_t param)
{
	struct trb ev = command(f, (struct trb){ .param = param,
						 .control = type << 10 | slot << 24 | extra });

	return cc_of(&ev);
}

/* ---- the fixture ---- */

static void tablet_refresh(void *opaque, struct console_surface *s, bool full)
{
	if (s->width != 1024)
		assert_int_equal(console_surface_resize(s, 1024, 768), 0);
}

static const struct console_display_ops test_display = { .refresh = tablet_refresh };

static void fx_start_with(struct fx *f, const char *opt)
{
	char err[256], key[128];

	memset(f, 0, sizeof(*f));
	vm_init_bare(&f->vm, true);
	config_init(&f->cfg);
	f->vm.cfg = &f->cfg;
	f->vm.set_irq = rec_irq;
	f->vm.send_msi = rec_msi;
	assert_int_equal(vm_add_memory(&f->vm, RAM_SIZE), 0);
	if (opt) {
		snprintf(key, sizeof(key), "pci.0.4.0.%s", opt);
		assert_int_equal(config_set_pair(&f->cfg, key), 0);
	}
	if (pci_setup(&f->vm, err, sizeof(err)))
		fail_msg("pci_setup: %s", err);
	f->pd = pci_dev_add(&f->vm, 4, 0, &pci_emul_xhci, err, sizeof(err));
	if (!f->pd)
		fail_msg("xhci: %s", err);
	f->bar = pci_bar_addr(f->pd, 0);
}

static void fx_start(struct fx *f)
{
	fx_start_with(f, "tablet=true");
}

static void fx_stop(struct fx *f)
{
	vm_destroy(&f->vm);
	config_free(&f->cfg);
}

/* Linux's and SeaBIOS's bring-up: reset, slots, DCBAA, command ring, event ring, run. */
static void hc_start(struct fx *f)
{
	uint64_t *erst = gpa(f, ERST, 16);

	wr(f, USBCMD, 2);
	assert_int_equal(rd(f, USBCMD) & 2, 0);
	assert_int_equal(rd(f, USBSTS) & (1U << 11), 0); /* controller ready */
	wr(f, CONFIG, 32);
	memset(gpa(f, DCBAA, 33 * 8), 0, 33 * 8);
	wr64(f, DCBAAP, DCBAA);
	ring_init(f, &f->cmd, CMD_RING);
	wr64(f, CRCR, CMD_RING | 1);
	memset(gpa(f, EV_RING, EV_TRBS * 16), 0, EV_TRBS * 16);
	erst[0] = EV_RING;
	erst[1] = EV_TRBS;
	wr(f, ERSTSZ, 1);
	wr64(f, ERDP, EV_RING);
	wr64(f, ERSTBA, ERST);
	f->ev_idx = 0;
	f->ev_cycle = true;
	wr(f, IMAN, 2);
	wr(f, USBCMD, 1 | 4);
	assert_int_equal(rd(f, USBSTS) & 1, 0);
}

static void ctx_put(struct fx *f, uint64_t ctx, unsigned idx, unsigned dw, uint32_t v)
{
	memcpy(gpa(f, ctx + 32ULL * idx + 4 * dw, 4), &v, 4);
}

static uint32_t ctx_get(struct fx *f, uint64_t ctx, unsigned idx, unsigned dw)
{
	uint32_t v;

	memcpy(&v, gpa(f, ctx + 32ULL * idx + 4 * dw, 4), 4);
	return v;
}

static void port_reset(struct fx *f, unsigned port)
{
	wr(f, PORTSC(port), (1U << 4) | (1U << 9));
	assert_int_equal(rd(f, PORTSC(port)) & 0x3, 0x3); /* connected, enabled */
	assert_true(rd(f, PORTSC(port)) & (1U << 21));	  /* reset change */
	wr(f, PORTSC(port), (1U << 21) | (1U << 17) | (1U << 9));
}

/* Input context for Address Device on @port with EP0 ring @ring. */
static void input_address(struct fx *f, unsigned port, uint64_t ring, uint32_t mps)
{
	memset(gpa(f, ICTX, 33 * 32), 0, 33 * 32);
	ctx_put(f, ICTX, 0, 1, 3); /* A0, A1 */
	ctx_put(f, ICTX, 1, 0, 1U << 27 | 1U << 20);
	ctx_put(f, ICTX, 1, 1, port << 16);
	ctx_put(f, ICTX, 2, 1, 4U << 3 | 3U << 1 | mps << 16); /* control, CErr 3 */
	ctx_put(f, ICTX, 2, 2, (uint32_t)ring | 1);
	ctx_put(f, ICTX, 2, 3, 0);
}

static void enable_and_address(struct fx *f)
{
	struct trb ev;
	uint64_t *dcbaa = gpa(f, DCBAA, 33 * 8);

	port_reset(f, 1);
	ev = command(f, (struct trb){ .control = T_ENABLE_SLOT << 10 });
	assert_int_equal(cc_of(&ev), CC_SUCCESS);
	f->slot = ev.control >> 24;
	assert_in_range(f->slot, 1, 32);
	memset(gpa(f, OCTX, 32 * 32), 0, 32 * 32);
	dcbaa[f->slot] = OCTX;
	ring_init(f, &f->ep0, EP0_RING);
	input_address(f, 1, EP0_RING, 64);
	assert_int_equal(cmd_cc(f, T_ADDRESS, f->slot, 0, ICTX), CC_SUCCESS);
	assert_int_equal(ctx_get(f, OCTX, 0, 3) >> 27, 2); /* addressed */
	assert_int_equal(ctx_get(f, OCTX, 1, 0) & 7, 1);   /* EP0 running */
}

/* A control transfer on EP0; returns the completion code, *@len the bytes moved. */
static unsigned control(struct fx *f, uint8_t type, uint8_t req, uint16_t value, uint16_t index,
			uint16_t length, uint32_t *len)
{
	uint64_t setup = type | (uint64_t)req << 8 | (uint64_t)value << 16 | (uint64_t)index << 32 |
			 (uint64_t)length << 48;
	bool in = type & 0x80;
	uint64_t data = 0, status;
	struct trb ev;

	ring_put(f, &f->ep0,
		 (struct trb){ .param = setup,
			       .status = 8,
			       .control = T_SETUP << 10 | IDT |
					  (length ? (in ? 3U : 2U) << 16 : 0) });
	if (length)
		data = ring_put(f, &f->ep0,
				(struct trb){ .param = BUF,
					      .status = length,
					      .control = T_DATA << 10 | ISP |
							 (in ? 1U << 16 : 0) });
	status = ring_put(f, &f->ep0,
			  (struct trb){ .control = T_STATUS << 10 | IOC | (in ? 0 : 1U << 16) });
	wr(f, DB(f->slot), 1);
	ev = next_event(f);
	assert_int_equal(type_of(&ev), E_TRANSFER);
	assert_int_equal(ev.control >> 24, f->slot);
	assert_int_equal((ev.control >> 16) & 0x1f, 1);
	if (cc_of(&ev) == CC_SHORT) {
		assert_int_equal(ev.param, data);
		*len = length - (ev.status & 0xffffff);
		ev = next_event(f);
		assert_int_equal(cc_of(&ev), CC_SUCCESS);
		assert_int_equal(ev.param, status);
		return CC_SUCCESS;
	}
	*len = length;
	return cc_of(&ev);
}

/* Configure the interrupt-IN endpoint 1 (DCI 3). */
static void configure(struct fx *f)
{
	uint32_t len;

	assert_int_equal(control(f, 0x00, 9, 1, 0, 0, &len), CC_SUCCESS);
	memset(gpa(f, ICTX, 33 * 32), 0, 33 * 32);
	ctx_put(f, ICTX, 0, 1, 1U | 1U << 3); /* A0, A3 */
	ctx_put(f, ICTX, 1, 0, 3U << 27);
	ctx_put(f, ICTX, 4, 0, 6U << 16);		      /* interval */
	ctx_put(f, ICTX, 4, 1, 7U << 3 | 3U << 1 | 8U << 16); /* interrupt IN, 8 bytes */
	ctx_put(f, ICTX, 4, 2, (uint32_t)EP1_RING | 1);
	ring_init(f, &f->ep1, EP1_RING);
	assert_int_equal(cmd_cc(f, T_CONFIGURE, f->slot, 0, ICTX), CC_SUCCESS);
	assert_int_equal(ctx_get(f, OCTX, 0, 3) >> 27, 3); /* configured */
	assert_int_equal(ctx_get(f, OCTX, 3, 0) & 7, 1);
	assert_int_equal(ctx_get(f, OCTX, 0, 0) >> 27, 3); /* context entries */
}

/* Queue one interrupt-IN TD of 8 bytes into buffer @n. */
static uint64_t queue_in(struct fx *f, unsigned n)
{
	uint64_t a = ring_put(f, &f->ep1,
			      (struct trb){ .param = BUF + 0x1000 + 8 * n,
					    .status = 8,
					    .control = T_NORMAL << 10 | IOC | ISP });

	wr(f, DB(f->slot), 3);
	return a;
}

struct report {
	unsigned buttons, x, y;
	int dz;
};

/* The next report, if one completed. */
static bool report(struct fx *f, struct report *r)
{
	struct trb ev;
	const uint8_t *b;

	if (!event(f, &ev))
		return false;
	assert_int_equal(type_of(&ev), E_TRANSFER);
	assert_int_equal((ev.control >> 16) & 0x1f, 3);
	assert_int_equal(cc_of(&ev), CC_SHORT);
	assert_int_equal(ev.status & 0xffffff, 2); /* 6 of 8 bytes */
	b = gpa(f, get_trb(f, ev.param).param, 8);
	r->buttons = b[0];
	r->x = b[1] | b[2] << 8;
	r->y = b[3] | b[4] << 8;
	r->dz = (int8_t)b[5];
	return true;
}

/* After SET_CONFIGURATION the tablet reports where the pointer is, once. */
static void initial_report(struct fx *f, unsigned x, unsigned y)
{
	struct report r;

	queue_in(f, 0);
	assert_true(report(f, &r));
	assert_int_equal(r.x, x);
	assert_int_equal(r.y, y);
	assert_int_equal(r.buttons, 0);
	assert_false(report(f, &r));
}

static struct console *con_with_display(struct fx *f)
{
	struct console *c = console_of(&f->vm);
	char err[128];
	uint32_t *px;
	unsigned w, h;

	assert_non_null(c);
	assert_int_equal(console_display_attach(c, &test_display, f, NULL, err, sizeof(err)), 0);
	assert_int_equal(console_snapshot_image(c, &px, &w, &h), 0);
	free(px);
	assert_int_equal(w, 1024);
	return c;
}

/*
 * A running controller with the tablet addressed and configured under a console with a
 * display: no event pending, its first report (0, 0) taken.
 */
static struct console *tablet_ready(struct fx *f)
{
	struct console *c;

	fx_start(f);
	c = con_with_display(f);
	hc_start(f);
	enable_and_address(f);
	configure(f);
	no_event(f);
	initial_report(f, 0, 0);
	return c;
}

/* ---- tests ---- */

static void test_registers(void **state)
{
	struct fx f;

	fx_start(&f);
	assert_int_equal(pci_get_cfg8(f.pd, PCIR_CLASS), 0x0c);
	assert_int_equal(pci_get_cfg8(f.pd, PCIR_SUBCLASS), 0x03);
	assert_int_equal(pci_get_cfg8(f.pd, PCIR_PROGIF), 0x30);
	assert_int_equal(rd(&f, 0) & 0xff, OP);
	assert_int_equal(rd(&f, 0) >> 16, 0x0110);
	assert_int_equal(rd(&f, 4), 32 | 1 << 8 | 8U << 24);
	/* Supported Protocol capabilities: USB 2 ports 1-4, USB 3 ports 5-8 */
	{
		unsigned x = (rd(&f, 0x10) >> 16) * 4;

		assert_int_equal(rd(&f, x) & 0xff, 2);
		assert_int_equal(rd(&f, x) >> 24, 2);
		assert_int_equal(rd(&f, x + 8) & 0xffff, 0x0401);
		x += ((rd(&f, x) >> 8) & 0xff) * 4;
		assert_int_equal(rd(&f, x) >> 24, 3);
		assert_int_equal(rd(&f, x + 8) & 0xffff, 0x0405);
		assert_int_equal((rd(&f, x) >> 8) & 0xff, 0);
	}
	/* The tablet on port 1: connected, full speed, not enabled; port 2 empty. */
	assert_int_equal(rd(&f, PORTSC(1)) & 0x3, 1);
	assert_int_equal((rd(&f, PORTSC(1)) >> 10) & 0xf, 1);
	assert_true(rd(&f, PORTSC(1)) & (1U << 17));
	assert_int_equal(rd(&f, PORTSC(2)) & 0x3, 0);
	assert_true(rd(&f, PORTSC(2)) & (1U << 9));
	assert_int_equal(rd(&f, USBSTS) & 1, 1); /* halted */
	/* CRCR reads 0 but for CRR; DCBAAP keeps its alignment */
	wr64(&f, CRCR, 0x12345678 | 1);
	assert_int_equal(rd(&f, CRCR), 0);
	wr64(&f, DCBAAP, 0x1234567f);
	assert_int_equal(rd(&f, DCBAAP), 0x12345640);
	/* MaxSlotsEn above MaxSlots reads back and is saved and loaded as it is (the fuzzer) */
	wr(&f, CONFIG, 0x3ff);
	assert_int_equal(rd(&f, CONFIG), 0x3ff);
	{
		size_t len;
		uint8_t *a = devsnap_save_copy(&f.pd->dev, &len);

		assert_int_equal(devsnap_load(&f.pd->dev, a, len, 1), 0);
		free(a);
	}
	/* byte and qword accesses; outside the registers reads 0 */
	{
		uint8_t b[8];

		assert_true(bus_access(&f.vm.mmio, f.bar + 2, b, 2, false));
		assert_int_equal(io_get(b, 2), 0x0110);
		assert_true(bus_access(&f.vm.mmio, f.bar + DCBAAP, b, 8, false));
		assert_int_equal(io_get(b, 8), 0x12345640);
		/* A byte written into CONFIG merges with the other bytes of the dword. */
		io_put(b, 1, 0x05);
		assert_true(bus_access(&f.vm.mmio, f.bar + CONFIG, b, 1, true));
		assert_int_equal(rd(&f, CONFIG), 0x305);
		io_put(b, 2, 0x0001);
		assert_true(bus_access(&f.vm.mmio, f.bar + CONFIG + 2, b, 2, true));
		assert_int_equal(rd(&f, CONFIG), 0x305); /* bits 16+ are not CONFIG's: dropped */
		/* Accesses that cross a dword, or a misaligned qword: ignored, read as 0. */
		io_put(b, 4, 0x11223344);
		assert_true(bus_access(&f.vm.mmio, f.bar + CONFIG + 2, b, 4, true));
		assert_int_equal(rd(&f, CONFIG), 0x305);
		memset(b, 0xff, sizeof(b));
		assert_true(bus_access(&f.vm.mmio, f.bar + 2, b, 4, false));
		assert_int_equal(io_get(b, 4), 0);
		io_put(b, 8, 0x99);
		assert_true(bus_access(&f.vm.mmio, f.bar + DCBAAP + 4, b, 8, true));
		assert_int_equal(rd(&f, DCBAAP), 0x12345640);
		/* A qword write is two dword writes. */
		io_put(b, 8, 0x0000000100000080ULL);
		assert_true(bus_access(&f.vm.mmio, f.bar + DCBAAP, b, 8, true));
		assert_int_equal(rd(&f, DCBAAP), 0x80);
		assert_int_equal(rd(&f, DCBAAP + 4), 1);
	}
	fx_stop(&f);
}

/*
 * Registers no test above reads, and the ones a driver uses out of order: the capability
 * dwords past the list, PAGESIZE and DNCTRL, MFINDEX halted and running, IMOD, the high
 * dwords of ERSTBA/ERDP, offsets between the register blocks, doorbells that name nothing,
 * and Command Stop / Command Abort through CRCR while the command ring runs.
 */
static void test_register_corners(void **state)
{
	struct fx f;
	struct trb ev;
	uint64_t next;

	fx_start(&f);
	assert_int_equal(rd(&f, 0x08), 4U << 4); /* HCSPARAMS2: ERST Max 2^4 */
	assert_int_equal(rd(&f, 0x0C), 0);
	assert_int_equal(rd(&f, 0x14), 0x2000); /* DBOFF */
	assert_int_equal(rd(&f, 0x18), 0x1000); /* RTSOFF */
	assert_int_equal(rd(&f, 0x1C), 0);
	assert_int_equal(rd(&f, 0x800 + 8 * 4), 0); /* past both protocol capabilities */
	assert_int_equal(rd(&f, OP + 0x08), 1);	    /* PAGESIZE: 4 KiB */
	wr(&f, OP + 0x14, 0xABCD1234);
	assert_int_equal(rd(&f, OP + 0x14), 0x1234); /* DNCTRL: N0-N15 */
	wr(&f, OP + 0x0C, 0xFFFFFFFF);		     /* reserved */
	assert_int_equal(rd(&f, OP + 0x0C), 0);
	assert_int_equal(rd(&f, 0x1000), 0); /* MFINDEX stops while halted */
	wr(&f, IR0 + 0x04, 0x00FA00FA);
	assert_int_equal(rd(&f, IR0 + 0x04), 0x00FA00FA); /* IMOD */
	assert_int_equal(rd(&f, IR0 + 0x20), 0);	  /* interrupter 1: not there */
	wr(&f, IR0 + 0x20, 0xFFFFFFFF);
	assert_int_equal(rd(&f, 0x3000), 0); /* between the doorbells and the end */
	/* PAGESIZE is read-only; so are PORTLI and a USB 3 port's PED (no device on port 5). */
	wr(&f, OP + 0x08, 0x10);
	assert_int_equal(rd(&f, OP + 0x08), 1);
	wr(&f, PORTSC(1) + 8, 0x12345678);
	assert_int_equal(rd(&f, PORTSC(1) + 8), 0);
	{
		uint32_t sc5 = rd(&f, PORTSC(5));

		wr(&f, PORTSC(5), sc5 | 2);
		assert_int_equal(rd(&f, PORTSC(5)), sc5);
	}
	/* Interrupter 0's ERSTSZ and ERDP read back; a reserved offset reads 0. */
	wr(&f, ERSTSZ, 0xFFFF0003);
	assert_int_equal(rd(&f, ERSTSZ), 3);
	wr(&f, ERSTSZ, 0);
	assert_int_equal(rd(&f, IR0 + 0x0C), 0);
	/* A doorbell while halted runs nothing. */
	hc_start(&f);
	assert_int_equal(rd(&f, ERDP) & ~0xFU, (uint32_t)EV_RING);
	/* R/S written again while running: still running, nothing reported again. */
	wr(&f, USBCMD, rd(&f, USBCMD));
	assert_int_equal(rd(&f, USBSTS) & 1, 0);
	no_event(&f);
	wr(&f, USBCMD, 0);
	assert_int_equal(rd(&f, USBSTS) & 1, 1);
	/* Halted, written halted again: no change; USBSTS's write-1-to-clear bits clear, HCH
	 * is read-only. */
	wr(&f, USBCMD, 0);
	assert_int_equal(rd(&f, USBSTS) & 1, 1);
	wr(&f, USBSTS, 0xFFFFFFFF);
	assert_int_equal(rd(&f, USBSTS) & 0x41D, 1);
	ring_put(&f, &f.cmd, (struct trb){ .control = T_NOOP_CMD << 10 });
	wr(&f, DB(0), 0);
	no_event(&f);
	/* Running again: MFINDEX counts 125 us microframes; doorbell 0 with a target is no ring. */
	wr(&f, USBCMD, 1 | 4);
	{
		uint64_t t0 = vclock_ns(&f.vm.ev);
		uint32_t m0 = rd(&f, 0x1000);

		evloop_advance(&f.vm.ev, t0 + 5 * 125000);
		assert_int_equal((rd(&f, 0x1000) - m0) & 0x3fff, 5);
	}
	wr(&f, DB(0), 1);
	no_event(&f);
	wr(&f, DB(0), 0);
	ev = next_event(&f);
	assert_int_equal(type_of(&ev), E_CMD);
	assert_int_equal(cc_of(&ev), CC_SUCCESS);
	/* Doorbells of slots with target 0 or past 31: ignored. */
	wr(&f, DB(1), 0);
	wr(&f, DB(1), 32);
	wr(&f, DB(32), 1);
	no_event(&f);
	/* ERSTBA and ERDP high dwords. */
	assert_int_equal(rd(&f, ERSTBA + 4), 0);
	assert_int_equal(rd(&f, ERDP + 4), 0);
	assert_int_equal(rd(&f, ERSTBA), (uint32_t)ERST);
	/* The ring runs (CRR): a pointer write is ignored, Command Stop stops it with an event. */
	assert_int_equal(rd(&f, CRCR) & 8, 8);
	next = CMD_RING + 16ULL * f.cmd.idx;
	wr(&f, CRCR, 0x4000 | 2); /* CS */
	assert_int_equal(rd(&f, CRCR) & 8, 0);
	ev = next_event(&f);
	assert_int_equal(type_of(&ev), E_CMD);
	assert_int_equal(cc_of(&ev), 24); /* Command Ring Stopped */
	assert_int_equal(ev.param, next);
	/* The ring continues where it stopped when rung again. */
	assert_int_equal(cmd_cc(&f, T_NOOP_CMD, 0, 0, 0), CC_SUCCESS);
	wr(&f, CRCR + 4, 0); /* the high dword with the ring running: ignored */
	next = CMD_RING + 16ULL * f.cmd.idx;
	wr(&f, CRCR, 4); /* CA */
	ev = next_event(&f);
	assert_int_equal(cc_of(&ev), 25); /* Command Aborted */
	assert_int_equal(ev.param, next);
	assert_int_equal(cmd_cc(&f, T_NOOP_CMD, 0, 0, 0), CC_SUCCESS);
	/* A write with neither bit while running changes nothing. */
	wr(&f, CRCR, 0x4000);
	no_event(&f);
	assert_int_equal(rd(&f, CRCR) & 8, 8);
	assert_int_equal(cmd_cc(&f, T_NOOP_CMD, 0, 0, 0), CC_SUCCESS);
	fx_stop(&f);
}

/*
 * Command fields the other tests leave at good values: Address Device without A1 or with a
 * bulk EP0, Configure Endpoint with LSA or a control type on an OUT index, a drop that
 * leaves the slot addressed, Evaluate Context of the slot context, slot IDs past MaxSlotsEn
 * and a slot type in Enable Slot.
 */
static void test_command_fields(void **state)
{
	struct fx f;
	uint64_t *dcbaa;

	fx_start(&f);
	hc_start(&f);
	dcbaa = gpa(&f, DCBAA, 33 * 8);
	assert_int_equal(cmd_cc(&f, T_ENABLE_SLOT, 0, 1U << 16, 0), CC_TRB); /* slot type 1 */
	port_reset(&f, 1);
	f.slot = command(&f, (struct trb){ .control = T_ENABLE_SLOT << 10 }).control >> 24;
	memset(gpa(&f, OCTX, 32 * 32), 0, 32 * 32);
	dcbaa[f.slot] = OCTX;
	ring_init(&f, &f.ep0, EP0_RING);
	input_address(&f, 1, EP0_RING, 64);
	ctx_put(&f, ICTX, 0, 1, 1); /* A0 without A1 */
	assert_int_equal(cmd_cc(&f, T_ADDRESS, f.slot, 0, ICTX), CC_PARAMETER);
	input_address(&f, 1, EP0_RING, 64);
	ctx_put(&f, ICTX, 2, 1, 6U << 3 | 64U << 16); /* EP0 a bulk IN endpoint */
	assert_int_equal(cmd_cc(&f, T_ADDRESS, f.slot, 0, ICTX), CC_PARAMETER);
	assert_int_equal(ctx_get(&f, OCTX, 0, 3) >> 27, 0); /* nothing written */
	input_address(&f, 1, EP0_RING, 64);
	assert_int_equal(cmd_cc(&f, T_ADDRESS, f.slot, 0, ICTX), CC_SUCCESS);
	/* Slot IDs: past the 32 slots, and past MaxSlotsEn. */
	assert_int_equal(cmd_cc(&f, T_NOOP_CMD, 0, 0, 0), CC_SUCCESS);
	assert_int_equal(cmd_cc(&f, T_STOP_EP, 33, 1U << 16, 0), CC_SLOT_NOT_ENABLED);
	wr(&f, CONFIG, 0);
	assert_int_equal(cmd_cc(&f, T_STOP_EP, f.slot, 1U << 16, 0), CC_SLOT_NOT_ENABLED);
	assert_int_equal(cmd_cc(&f, T_ENABLE_SLOT, 0, 0, 0), CC_NO_SLOTS);
	wr(&f, CONFIG, 32);
	/* Configure Endpoint: LSA set, a control type on DCI 2 (EP1 OUT). */
	memset(gpa(&f, ICTX, 33 * 32), 0, 33 * 32);
	ctx_put(&f, ICTX, 0, 1, 1U << 3);
	ctx_put(&f, ICTX, 4, 0, 1U << 15);
	ctx_put(&f, ICTX, 4, 1, 7U << 3 | 8U << 16);
	ctx_put(&f, ICTX, 4, 2, (uint32_t)EP1_RING | 1);
	assert_int_equal(cmd_cc(&f, T_CONFIGURE, f.slot, 0, ICTX), CC_PARAMETER);
	memset(gpa(&f, ICTX, 33 * 32), 0, 33 * 32);
	ctx_put(&f, ICTX, 0, 1, 1U << 2);
	ctx_put(&f, ICTX, 3, 1, 4U << 3 | 8U << 16);
	ctx_put(&f, ICTX, 3, 2, (uint32_t)EP1_RING | 1);
	assert_int_equal(cmd_cc(&f, T_CONFIGURE, f.slot, 0, ICTX), CC_PARAMETER);
	assert_int_equal(ctx_get(&f, OCTX, 0, 3) >> 27, 2); /* still addressed */
	/* Configure the interrupt endpoint, then drop it: the slot is addressed again. */
	configure(&f);
	memset(gpa(&f, ICTX, 33 * 32), 0, 33 * 32);
	ctx_put(&f, ICTX, 0, 0, 1U << 3);
	ctx_put(&f, ICTX, 0, 1, 1U);
	assert_int_equal(cmd_cc(&f, T_CONFIGURE, f.slot, 0, ICTX), CC_SUCCESS);
	assert_int_equal(ctx_get(&f, OCTX, 0, 3) >> 27, 2);
	assert_int_equal(ctx_get(&f, OCTX, 3, 0) & 7, 0); /* disabled */
	assert_int_equal(cmd_cc(&f, T_STOP_EP, f.slot, 3U << 16, 0), CC_CONTEXT_STATE);
	/* Evaluate Context of the slot: Max Exit Latency and Interrupter Target, nothing else. */
	{
		uint32_t dw0 = ctx_get(&f, OCTX, 0, 0), dw1 = ctx_get(&f, OCTX, 0, 1);

		memset(gpa(&f, ICTX, 33 * 32), 0, 33 * 32);
		ctx_put(&f, ICTX, 0, 1, 1U);
		ctx_put(&f, ICTX, 1, 0, 0x1FU << 27);	   /* context entries: not taken */
		ctx_put(&f, ICTX, 1, 1, 0x00FF1234);	   /* port 0xFF: not taken */
		ctx_put(&f, ICTX, 1, 2, 0x3FFU << 22 | 7); /* interrupter target, TT fields */
		assert_int_equal(cmd_cc(&f, T_EVALUATE, f.slot, 0, ICTX), CC_SUCCESS);
		assert_int_equal(ctx_get(&f, OCTX, 0, 0), dw0);
		assert_int_equal(ctx_get(&f, OCTX, 0, 1), (dw1 & ~0xffffU) | 0x1234);
		assert_int_equal(ctx_get(&f, OCTX, 0, 2) >> 22, 0x3FF);
		assert_int_equal(ctx_get(&f, OCTX, 0, 2) & 0x3fffff, 0);
	}
	fx_stop(&f);
}

static void test_enumerate(void **state)
{
	struct fx f;
	uint32_t len;
	const uint8_t *b;
	struct trb ev;

	fx_start(&f);
	hc_start(&f);
	/* Starting reports the connection that happened while halted. */
	assert_true(event(&f, &ev));
	assert_int_equal(type_of(&ev), E_PORT);
	assert_int_equal(ev.param >> 24, 1);
	no_event(&f);
	enable_and_address(&f);
	b = gpa(&f, BUF, 256);
	/* the device descriptor, first 8 bytes as Linux asks, then all of it */
	assert_int_equal(control(&f, 0x80, 6, 0x100, 0, 8, &len), CC_SUCCESS);
	assert_int_equal(len, 8);
	assert_int_equal(b[7], 64);
	assert_int_equal(control(&f, 0x80, 6, 0x100, 0, 255, &len), CC_SUCCESS);
	assert_int_equal(len, 18);
	assert_int_equal(b[0], 18);
	assert_int_equal(b[1], 1);
	assert_int_equal(b[17], 1);
	/* the configuration: interface HID, HID descriptor, endpoint 0x81 interrupt */
	assert_int_equal(control(&f, 0x80, 6, 0x200, 0, 255, &len), CC_SUCCESS);
	assert_int_equal(len, 34);
	assert_int_equal(b[2] | b[3] << 8, 34);
	assert_int_equal(b[9 + 5], 3);
	assert_int_equal(b[18 + 1], 0x21);
	assert_int_equal(b[27 + 2], 0x81);
	assert_int_equal(b[27 + 3], 3);
	{
		unsigned rlen = b[18 + 7] | b[18 + 8] << 8;

		/* the report descriptor has that length and ends two collections */
		assert_int_equal(control(&f, 0x81, 6, 0x2200, 0, 512, &len), CC_SUCCESS);
		assert_int_equal(len, rlen);
		assert_int_equal(b[rlen - 1], 0xc0);
		assert_int_equal(b[rlen - 2], 0xc0);
		assert_int_equal(b[0], 0x05);
	}
	/* strings: languages, then the product in UTF-16 */
	assert_int_equal(control(&f, 0x80, 6, 0x300, 0, 255, &len), CC_SUCCESS);
	assert_int_equal(len, 4);
	assert_int_equal(b[2] | b[3] << 8, 0x0409);
	assert_int_equal(control(&f, 0x80, 6, 0x302, 0x409, 255, &len), CC_SUCCESS);
	assert_int_equal(b[1], 3);
	assert_int_equal(b[2], 'k');
	/* unknown requests stall; a guest SET_ADDRESS too (the controller addressed it) */
	assert_int_equal(control(&f, 0x80, 6, 0x700, 0, 10, &len), CC_STALL);
	assert_int_equal(ctx_get(&f, OCTX, 1, 0) & 7, 2); /* halted */
	assert_int_equal(cmd_cc(&f, T_RESET_EP, f.slot, 1U << 16, 0), CC_SUCCESS);
	assert_int_equal(cmd_cc(&f, T_SET_DEQ, f.slot, 1U << 16,
				EP0_RING + 16ULL * f.ep0.idx + (f.ep0.cycle ? 1 : 0)),
			 CC_SUCCESS);
	assert_int_equal(control(&f, 0x00, 5, 7, 0, 0, &len), CC_STALL);
	assert_int_equal(cmd_cc(&f, T_RESET_EP, f.slot, 1U << 16, 0), CC_SUCCESS);
	assert_int_equal(cmd_cc(&f, T_SET_DEQ, f.slot, 1U << 16,
				EP0_RING + 16ULL * f.ep0.idx + (f.ep0.cycle ? 1 : 0)),
			 CC_SUCCESS);
	/* HID class requests */
	assert_int_equal(control(&f, 0x21, 0x0a, 0, 0, 0, &len), CC_SUCCESS); /* SET_IDLE 0 */
	assert_int_equal(control(&f, 0xa1, 0x02, 0, 0, 1, &len), CC_SUCCESS);
	assert_int_equal(b[0], 0);
	assert_int_equal(control(&f, 0x21, 0x0b, 1, 0, 0, &len), CC_SUCCESS); /* report proto */
	assert_int_equal(control(&f, 0xa1, 0x03, 0, 0, 1, &len), CC_SUCCESS);
	assert_int_equal(b[0], 1);
	configure(&f);
	assert_int_equal(control(&f, 0x80, 8, 0, 0, 1, &len), CC_SUCCESS);
	assert_int_equal(b[0], 1);
	assert_int_equal(control(&f, 0xa1, 0x01, 0x100, 0, 8, &len), CC_SUCCESS); /* GET_REPORT */
	assert_int_equal(len, 6);
	fx_stop(&f);
}

/*
 * An interrupt-IN TD of several TRBs: a full TRB without IOC reports nothing, a zero-length
 * one and an Event Data TRB without IOC move nothing, the TRB the data ends in (no ISP, no
 * IOC) is not reported itself, nor is the one after it: the TD ends with one Short Packet
 * event at its last (IOC) TRB, the residue being all the TD had left; the report's 6 bytes
 * land in the first and the short TRB's buffers, nothing in the others.
 */
static void test_td_shapes_in(void **state)
{
	static const uint8_t want0[4] = { 1, 0xFF, 0x7F, 0xFF }, want1[4] = { 0x7F, 0, 0xEE, 0xEE };
	struct console *c;
	struct trb ev;
	struct fx f;
	uint64_t last;

	c = tablet_ready(&f);
	memset(gpa(&f, BUF + 0x3000, 0x40), 0xEE, 0x40);
	ring_put(&f, &f.ep1, (struct trb){ BUF + 0x3000, 4, T_NORMAL << 10 | CH });
	ring_put(&f, &f.ep1, (struct trb){ 0, 0, T_NORMAL << 10 | CH });
	ring_put(&f, &f.ep1, (struct trb){ 0x1234, 0, 7U << 10 | CH });
	ring_put(&f, &f.ep1, (struct trb){ BUF + 0x3010, 4, T_NORMAL << 10 | CH });
	ring_put(&f, &f.ep1, (struct trb){ BUF + 0x3020, 4, T_NORMAL << 10 | CH });
	last = ring_put(&f, &f.ep1, (struct trb){ BUF + 0x3030, 4, T_NORMAL << 10 | IOC });
	console_pointer_event(c, 1023, 767, 1);
	wr(&f, DB(f.slot), 3);
	ev = next_event(&f);
	assert_int_equal(type_of(&ev), E_TRANSFER);
	assert_int_equal(cc_of(&ev), CC_SHORT);
	assert_int_equal(ev.param, last);
	assert_int_equal(ev.status & 0xffffff, 16 - 6);
	no_event(&f);
	assert_memory_equal(gpa(&f, BUF + 0x3000, 4), want0, 4);
	assert_memory_equal(gpa(&f, BUF + 0x3010, 4), want1, 4);
	assert_memory_equal(gpa(&f, BUF + 0x3020, 4), "\xEE\xEE\xEE\xEE", 4);
	assert_memory_equal(gpa(&f, BUF + 0x3030, 4), "\xEE\xEE\xEE\xEE", 4);
	fx_stop(&f);
}

static void test_reports(void **state)
{
	struct fx f;
	struct console *c;
	struct report r;

	c = tablet_ready(&f);
	/* Nothing to report: the TD waits (NAK), no event. */
	queue_in(&f, 0);
	assert_false(report(&f, &r));
	console_pointer_event(c, 1023, 767, 0);
	assert_true(report(&f, &r));
	assert_int_equal(r.x, 32767);
	assert_int_equal(r.y, 32767);
	assert_int_equal(r.buttons, 0);
	/* Moves while no TD is queued merge; a click gets its own report; nothing twice. */
	console_pointer_event(c, 100, 100, 0);
	console_pointer_event(c, 512, 384, 0);
	console_pointer_event(c, 512, 384, 1);
	console_pointer_event(c, 512, 384, 0);
	console_pointer_event(c, 512, 384, 8); /* wheel up */
	for (unsigned i = 1; i <= 6; i++)
		queue_in(&f, i);
	assert_true(report(&f, &r));
	assert_int_equal(r.x, 512 * 32767 / 1023);
	assert_int_equal(r.y, 384 * 32767 / 767);
	assert_int_equal(r.buttons, 0);
	assert_true(report(&f, &r));
	assert_int_equal(r.buttons, 1);
	assert_true(report(&f, &r));
	assert_int_equal(r.buttons, 0);
	assert_int_equal(r.dz, 0);
	assert_true(report(&f, &r));
	assert_int_equal(r.dz, 1);
	assert_false(report(&f, &r));
	/* The queued TDs get the next events as they come. */
	console_pointer_event(c, 0, 0, 4); /* right */
	assert_true(report(&f, &r));
	assert_int_equal(r.buttons, 2);
	assert_int_equal(r.x, 0);
	assert_false(report(&f, &r));
	/* A flood merges into a bounded queue: the last position survives. */
	for (unsigned i = 0; i < 100; i++)
		console_pointer_event(c, i, 10, i & 1 ? 1 : 0);
	{
		unsigned n = 0, last_x = 0;

		for (unsigned i = 0; i < 80; i++) {
			queue_in(&f, i % 8);
			while (report(&f, &r)) {
				n++;
				last_x = r.x;
			}
		}
		assert_in_range(n, 2, 65);
		assert_int_equal(last_x, 99 * 32767 / 1023);
	}
	console_display_detach(c);
	fx_stop(&f);
}

/* The command ring wraps through its Link TRB (toggle cycle) and goes on completing. */
static void test_command_ring_wrap(void **state)
{
	struct fx f;

	fx_start(&f);
	hc_start(&f);
	for (unsigned i = 0; i < 2 * RING_TRBS + 5; i++)
		if (cmd_cc(&f, T_NOOP_CMD, 0, 0, 0) != CC_SUCCESS)
			fail_msg("command %u did not complete", i);
	/* An unaligned input context for Configure Endpoint or Evaluate Context: TRB error. */
	enable_and_address(&f);
	assert_int_equal(cmd_cc(&f, T_CONFIGURE, f.slot, 0, ICTX + 8), CC_TRB);
	assert_int_equal(cmd_cc(&f, T_EVALUATE, f.slot, 0, ICTX + 8), CC_TRB);
	assert_int_equal(cmd_cc(&f, T_NOOP_CMD, 0, 0, 0), CC_SUCCESS);
	fx_stop(&f);
}

static void test_wrap(void **state)
{
	struct fx f;
	struct console *c;
	struct report r;

	fx_start(&f);
	c = con_with_display(&f);
	hc_start(&f);
	enable_and_address(&f);
	configure(&f);
	initial_report(&f, 0, 0);
	for (unsigned i = 0; i < 100; i++) {
		queue_in(&f, i % 8);
		console_pointer_event(c, i, 10, i & 1);
		if (!report(&f, &r))
			fail_msg("report %u missing", i);
		assert_int_equal(r.buttons, i & 1);
	}
	console_display_detach(c);
	fx_stop(&f);
}

static void test_interrupts(void **state)
{
	struct fx f;
	struct trb ev;

	fx_start(&f);
	hc_start(&f);
	no_event(&f);
	/* INTx: the line follows IMAN.IP while IE and INTE are set */
	wr(&f, IMAN, 3);
	assert_int_equal(irq_level, 0);
	assert_int_equal(cmd_cc(&f, T_NOOP_CMD, 0, 0, 0), CC_SUCCESS);
	assert_int_equal(irq_level, 1);
	assert_true(rd(&f, IMAN) & 1);
	wr(&f, IMAN, 3);
	assert_int_equal(irq_level, 0);
	/* With EHB set (handler busy) a new event does not raise IP until ERDP is written. */
	ring_put(&f, &f.cmd, (struct trb){ .control = T_NOOP_CMD << 10 });
	wr(&f, DB(0), 0);
	assert_true(rd(&f, IMAN) & 1);
	wr(&f, IMAN, 3);
	ring_put(&f, &f.cmd, (struct trb){ .control = T_NOOP_CMD << 10 });
	wr(&f, DB(0), 0);
	assert_false(rd(&f, IMAN) & 1);
	assert_true(event(&f, &ev)); /* writes ERDP with EHB: the second is still unread */
	assert_true(rd(&f, IMAN) & 1);
	assert_true(event(&f, &ev));
	wr(&f, IMAN, 3);
	/* Moving ERDP without writing EHB leaves the handler busy: no interrupt yet. */
	ring_put(&f, &f.cmd, (struct trb){ .control = T_NOOP_CMD << 10 });
	ring_put(&f, &f.cmd, (struct trb){ .control = T_NOOP_CMD << 10 });
	wr(&f, DB(0), 0);
	wr(&f, IMAN, 3);
	wr64(&f, ERDP, EV_RING + 16ULL * (f.ev_idx + 1));
	assert_false(rd(&f, IMAN) & 1);
	wr64(&f, ERDP, (EV_RING + 16ULL * (f.ev_idx + 1)) | 8);
	assert_true(rd(&f, IMAN) & 1);
	assert_true(event(&f, &ev));
	assert_true(event(&f, &ev));
	wr(&f, IMAN, 3);
	/* IE clear: IP is set, no line */
	wr(&f, IMAN, 0);
	assert_int_equal(cmd_cc(&f, T_NOOP_CMD, 0, 0, 0), CC_SUCCESS);
	assert_int_equal(irq_level, 0);
	fx_stop(&f);
}

static void ecam_wr(struct fx *f, unsigned reg, unsigned size, uint32_t v)
{
	uint8_t b[4];

	io_put(b, size, v);
	assert_true(bus_access(&f->vm.mmio, PCI_ECAM_BASE + (4ULL << 15) + reg, b, size, true));
}

/* MSI-X, then MSI: one message per interrupt, IP clears as it is sent, no INTx. */
static void test_msi(void **state)
{
	struct fx f;
	uint64_t tab;
	uint8_t b[8];
	unsigned before;

	fx_start(&f);
	tab = pci_bar_addr(f.pd, 4);
	assert_int_not_equal(f.pd->msix_cap, 0);
	assert_int_not_equal(f.pd->msi_cap, 0);
	ecam_wr(&f, f.pd->msix_cap + 2, 2, 0x8000);
	io_put(b, 4, 0xfee00000);
	assert_true(bus_access(&f.vm.mmio, tab, b, 4, true));
	io_put(b, 4, 0x4031);
	assert_true(bus_access(&f.vm.mmio, tab + 8, b, 4, true));
	io_put(b, 4, 0);
	assert_true(bus_access(&f.vm.mmio, tab + 12, b, 4, true)); /* unmask */
	hc_start(&f);
	no_event(&f);
	irq_level = 0;
	before = msi_count;
	assert_int_equal(cmd_cc(&f, T_NOOP_CMD, 0, 0, 0), CC_SUCCESS);
	assert_int_equal(msi_count, before + 1);
	assert_false(rd(&f, IMAN) & 1);
	assert_int_equal(irq_level, 0);
	/* MSI instead */
	ecam_wr(&f, f.pd->msix_cap + 2, 2, 0);
	ecam_wr(&f, f.pd->msi_cap + 4, 4, 0xfee00000);
	ecam_wr(&f, f.pd->msi_cap + 8, 4, 0);
	ecam_wr(&f, f.pd->msi_cap + 12, 2, 0x4032);
	ecam_wr(&f, f.pd->msi_cap + 2, 2, 1);
	before = msi_count;
	assert_int_equal(cmd_cc(&f, T_NOOP_CMD, 0, 0, 0), CC_SUCCESS);
	assert_int_equal(cmd_cc(&f, T_NOOP_CMD, 0, 0, 0), CC_SUCCESS);
	assert_int_equal(msi_count, before + 2);
	assert_int_equal(irq_level, 0);
	fx_stop(&f);
}

/* Commands that are wrong complete with the error the spec names and change nothing. */
static void test_bad_commands(void **state)
{
	struct fx f;
	uint64_t *dcbaa;

	fx_start(&f);
	hc_start(&f);
	dcbaa = gpa(&f, DCBAA, 33 * 8);
	no_event(&f);
	assert_int_equal(cmd_cc(&f, 63, 0, 0, 0), CC_TRB);	 /* no such type */
	assert_int_equal(cmd_cc(&f, T_NORMAL, 0, 0, 0), CC_TRB); /* transfer TRB */
	assert_int_equal(cmd_cc(&f, T_ADDRESS, 5, 0, ICTX), CC_SLOT_NOT_ENABLED);
	assert_int_equal(cmd_cc(&f, T_ADDRESS, 99, 0, ICTX), CC_SLOT_NOT_ENABLED);
	assert_int_equal(cmd_cc(&f, T_ENABLE_SLOT, 0, 5U << 16, 0), CC_TRB); /* slot type */
	port_reset(&f, 1);
	f.slot = command(&f, (struct trb){ .control = T_ENABLE_SLOT << 10 }).control >> 24;
	dcbaa[f.slot] = OCTX;
	/* Configure Endpoint before Address Device */
	assert_int_equal(cmd_cc(&f, T_CONFIGURE, f.slot, 0, ICTX), CC_CONTEXT_STATE);
	assert_int_equal(cmd_cc(&f, T_RESET_DEV, f.slot, 0, 0), CC_CONTEXT_STATE);
	/* input context: misaligned, outside RAM */
	input_address(&f, 1, EP0_RING, 64);
	assert_int_equal(cmd_cc(&f, T_ADDRESS, f.slot, 0, ICTX + 4), CC_TRB);
	assert_int_equal(cmd_cc(&f, T_ADDRESS, f.slot, 0, RAM_SIZE - 32), CC_TRB);
	assert_int_equal(cmd_cc(&f, T_ADDRESS, f.slot, 0, 1ULL << 50), CC_TRB);
	/* its contents: no such port, an empty port, a bulk EP0, no packet size, no ring */
	input_address(&f, 9, EP0_RING, 64);
	assert_int_equal(cmd_cc(&f, T_ADDRESS, f.slot, 0, ICTX), CC_PARAMETER);
	input_address(&f, 2, EP0_RING, 64);
	assert_int_equal(cmd_cc(&f, T_ADDRESS, f.slot, 0, ICTX), CC_TRANSACTION);
	input_address(&f, 1, EP0_RING, 64);
	ctx_put(&f, ICTX, 2, 1, 2U << 3 | 64U << 16);
	assert_int_equal(cmd_cc(&f, T_ADDRESS, f.slot, 0, ICTX), CC_PARAMETER);
	input_address(&f, 1, EP0_RING, 0);
	assert_int_equal(cmd_cc(&f, T_ADDRESS, f.slot, 0, ICTX), CC_PARAMETER);
	input_address(&f, 1, 0, 64);
	assert_int_equal(cmd_cc(&f, T_ADDRESS, f.slot, 0, ICTX), CC_PARAMETER);
	input_address(&f, 1, EP0_RING, 64);
	ctx_put(&f, ICTX, 0, 0, 4); /* a drop flag */
	assert_int_equal(cmd_cc(&f, T_ADDRESS, f.slot, 0, ICTX), CC_PARAMETER);
	/* a DCBAA entry outside RAM or misaligned */
	input_address(&f, 1, EP0_RING, 64);
	dcbaa[f.slot] = RAM_SIZE;
	assert_int_equal(cmd_cc(&f, T_ADDRESS, f.slot, 0, ICTX), CC_PARAMETER);
	dcbaa[f.slot] = OCTX + 8;
	assert_int_equal(cmd_cc(&f, T_ADDRESS, f.slot, 0, ICTX), CC_PARAMETER);
	dcbaa[f.slot] = OCTX;
	/* now right; twice is a state error */
	ring_init(&f, &f.ep0, EP0_RING);
	assert_int_equal(cmd_cc(&f, T_ADDRESS, f.slot, 0, ICTX), CC_SUCCESS);
	assert_int_equal(cmd_cc(&f, T_ADDRESS, f.slot, 0, ICTX), CC_CONTEXT_STATE);
	/* endpoint commands on endpoints that are not there or not in the right state */
	assert_int_equal(cmd_cc(&f, T_STOP_EP, f.slot, 3U << 16, 0), CC_CONTEXT_STATE);
	assert_int_equal(cmd_cc(&f, T_STOP_EP, f.slot, 0, 0), CC_TRB);
	assert_int_equal(cmd_cc(&f, T_RESET_EP, f.slot, 1U << 16, 0), CC_CONTEXT_STATE);
	assert_int_equal(cmd_cc(&f, T_SET_DEQ, f.slot, 1U << 16, EP0_RING | 1), CC_CONTEXT_STATE);
	assert_int_equal(cmd_cc(&f, T_STOP_EP, f.slot, 1U << 16, 0), CC_SUCCESS);
	assert_int_equal(ctx_get(&f, OCTX, 1, 0) & 7, 3);
	assert_int_equal(cmd_cc(&f, T_STOP_EP, f.slot, 1U << 16, 0), CC_CONTEXT_STATE);
	assert_int_equal(cmd_cc(&f, T_SET_DEQ, f.slot, 1U << 16, EP0_RING | 3), CC_TRB); /* SCT */
	assert_int_equal(cmd_cc(&f, T_SET_DEQ, f.slot, 1U << 16, 1), CC_TRB);
	assert_int_equal(cmd_cc(&f, T_SET_DEQ, f.slot, 1U << 16, EP0_RING | 1), CC_SUCCESS);
	assert_int_equal(ctx_get(&f, OCTX, 1, 2), (uint32_t)EP0_RING | 1);
	/* Configure Endpoint: an OUT type on an IN DCI, streams, dropping EP0 */
	memset(gpa(&f, ICTX, 33 * 32), 0, 33 * 32);
	ctx_put(&f, ICTX, 0, 1, 1U << 3);
	ctx_put(&f, ICTX, 4, 1, 3U << 3 | 8U << 16);
	ctx_put(&f, ICTX, 4, 2, (uint32_t)EP1_RING | 1);
	assert_int_equal(cmd_cc(&f, T_CONFIGURE, f.slot, 0, ICTX), CC_PARAMETER);
	ctx_put(&f, ICTX, 4, 1, 7U << 3 | 8U << 16);
	ctx_put(&f, ICTX, 4, 0, 1U << 10);
	assert_int_equal(cmd_cc(&f, T_CONFIGURE, f.slot, 0, ICTX), CC_PARAMETER);
	ctx_put(&f, ICTX, 4, 0, 0);
	ctx_put(&f, ICTX, 0, 0, 2);
	assert_int_equal(cmd_cc(&f, T_CONFIGURE, f.slot, 0, ICTX), CC_PARAMETER);
	assert_int_equal(ctx_get(&f, OCTX, 0, 3) >> 27, 2); /* still addressed */
	/* Evaluate Context: packet size 0 refused, 8 taken */
	memset(gpa(&f, ICTX, 33 * 32), 0, 33 * 32);
	ctx_put(&f, ICTX, 0, 1, 2);
	assert_int_equal(cmd_cc(&f, T_EVALUATE, f.slot, 0, ICTX), CC_PARAMETER);
	ctx_put(&f, ICTX, 2, 1, 8U << 16);
	assert_int_equal(cmd_cc(&f, T_EVALUATE, f.slot, 0, ICTX), CC_SUCCESS);
	assert_int_equal(ctx_get(&f, OCTX, 1, 1) >> 16, 8);
	/* Reset Device, Disable Slot, and the slot is gone */
	assert_int_equal(cmd_cc(&f, T_RESET_DEV, f.slot, 0, 0), CC_SUCCESS);
	assert_int_equal(ctx_get(&f, OCTX, 0, 3) >> 27, 1);
	assert_int_equal(cmd_cc(&f, T_DISABLE_SLOT, f.slot, 0, 0), CC_SUCCESS);
	assert_int_equal(cmd_cc(&f, T_DISABLE_SLOT, f.slot, 0, 0), CC_SLOT_NOT_ENABLED);
	/* every slot taken: No Slots Available */
	wr(&f, CONFIG, 2);
	assert_int_equal(cmd_cc(&f, T_ENABLE_SLOT, 0, 0, 0), CC_SUCCESS);
	assert_int_equal(cmd_cc(&f, T_ENABLE_SLOT, 0, 0, 0), CC_SUCCESS);
	assert_int_equal(cmd_cc(&f, T_ENABLE_SLOT, 0, 0, 0), CC_NO_SLOTS);
	fx_stop(&f);
}

/*
 * Commands test_bad_commands does not reach: Address Device with BSR (the default state, no
 * address) and its state rules; ports that cannot answer (number 0, a route string, not
 * enabled); no DCBAA or no entry in it; Configure Endpoint with DC, or adding EP0; Evaluate
 * Context before an address; a stream ID on Set TR Dequeue; Reset Device in the default state.
 */
static void test_more_commands(void **state)
{
	struct fx f;
	uint64_t *dcbaa;

	fx_start(&f);
	hc_start(&f);
	dcbaa = gpa(&f, DCBAA, 33 * 8);
	no_event(&f);
	f.slot = command(&f, (struct trb){ .control = T_ENABLE_SLOT << 10 }).control >> 24;
	/* The tablet's port not reset yet (not enabled): no answer. */
	input_address(&f, 1, EP0_RING, 64);
	dcbaa[f.slot] = OCTX;
	assert_int_equal(cmd_cc(&f, T_ADDRESS, f.slot, 0, ICTX), CC_TRANSACTION);
	port_reset(&f, 1);
	/* Port 0, and a route string (a device behind a hub, and there are none). */
	input_address(&f, 0, EP0_RING, 64);
	assert_int_equal(cmd_cc(&f, T_ADDRESS, f.slot, 0, ICTX), CC_PARAMETER);
	input_address(&f, 1, EP0_RING, 64);
	ctx_put(&f, ICTX, 1, 0, 1U << 27 | 1U << 20 | 0x12);
	assert_int_equal(cmd_cc(&f, T_ADDRESS, f.slot, 0, ICTX), CC_TRANSACTION);
	/* No entry in the DCBAA for the slot, then no DCBAA at all. */
	input_address(&f, 1, EP0_RING, 64);
	dcbaa[f.slot] = 0;
	assert_int_equal(cmd_cc(&f, T_ADDRESS, f.slot, 0, ICTX), CC_PARAMETER);
	dcbaa[f.slot] = OCTX;
	wr(&f, USBCMD, 0);
	wr64(&f, DCBAAP, 0);
	wr(&f, USBCMD, 5);
	assert_int_equal(cmd_cc(&f, T_ADDRESS, f.slot, 0, ICTX), CC_PARAMETER);
	wr(&f, USBCMD, 0);
	wr64(&f, DCBAAP, DCBAA);
	wr(&f, USBCMD, 5);
	/* Evaluate Context before any address: a state error. */
	assert_int_equal(cmd_cc(&f, T_EVALUATE, f.slot, 0, ICTX), CC_CONTEXT_STATE);
	/* BSR: the default state, address 0; BSR again is a state error; then a real address. */
	ring_init(&f, &f.ep0, EP0_RING);
	assert_int_equal(cmd_cc(&f, T_ADDRESS, f.slot, 1U << 9, ICTX), CC_SUCCESS);
	assert_int_equal(ctx_get(&f, OCTX, 0, 3) >> 27, 1); /* default */
	assert_int_equal(ctx_get(&f, OCTX, 0, 3) & 0xff, 0);
	assert_int_equal(cmd_cc(&f, T_ADDRESS, f.slot, 1U << 9, ICTX), CC_CONTEXT_STATE);
	assert_int_equal(cmd_cc(&f, T_RESET_DEV, f.slot, 0, 0), CC_CONTEXT_STATE);
	assert_int_equal(cmd_cc(&f, T_ADDRESS, f.slot, 0, ICTX), CC_SUCCESS);
	assert_int_equal(ctx_get(&f, OCTX, 0, 3) >> 27, 2); /* addressed */
	assert_int_equal(ctx_get(&f, OCTX, 0, 3) & 0xff, f.slot);
	/* Configure Endpoint adding EP0 (A1) is refused; a good one configures EP1 IN. */
	memset(gpa(&f, ICTX, 33 * 32), 0, 33 * 32);
	ctx_put(&f, ICTX, 0, 1, 1U | 1U << 1 | 1U << 3);
	ctx_put(&f, ICTX, 4, 1, 7U << 3 | 8U << 16);
	ctx_put(&f, ICTX, 4, 2, (uint32_t)EP1_RING | 1);
	assert_int_equal(cmd_cc(&f, T_CONFIGURE, f.slot, 0, ICTX), CC_PARAMETER);
	ctx_put(&f, ICTX, 0, 1, 1U | 1U << 3);
	assert_int_equal(cmd_cc(&f, T_CONFIGURE, f.slot, 0, ICTX), CC_SUCCESS);
	assert_int_equal(ctx_get(&f, OCTX, 0, 3) >> 27, 3); /* configured */
	assert_int_equal(ctx_get(&f, OCTX, 3, 0) & 7, 1);   /* EP1 IN running */
	/* Deconfigure (DC): back to addressed, EP1 disabled, EP0 kept. */
	assert_int_equal(cmd_cc(&f, T_CONFIGURE, f.slot, 1U << 9, 0), CC_SUCCESS);
	assert_int_equal(ctx_get(&f, OCTX, 0, 3) >> 27, 2);
	assert_int_equal(ctx_get(&f, OCTX, 3, 0) & 7, 0);
	assert_int_equal(ctx_get(&f, OCTX, 1, 0) & 7, 1);
	/* Set TR Dequeue with a stream ID: there are no streams. */
	assert_int_equal(cmd_cc(&f, T_STOP_EP, f.slot, 1U << 16, 0), CC_SUCCESS);
	{
		struct trb ev = command(&f, (struct trb){ .param = EP0_RING | 1,
							  .status = 1U << 16,
							  .control = T_SET_DEQ << 10 | 1U << 16 |
								     (uint32_t)f.slot << 24 });

		assert_int_equal(cc_of(&ev), CC_TRB);
	}
	/* Evaluate Context with A0: the slot takes the exit latency, nothing else. */
	memset(gpa(&f, ICTX, 33 * 32), 0, 33 * 32);
	ctx_put(&f, ICTX, 0, 1, 1);
	ctx_put(&f, ICTX, 1, 1, 0x1234 | 7U << 16);
	assert_int_equal(cmd_cc(&f, T_EVALUATE, f.slot, 0, ICTX), CC_SUCCESS);
	assert_int_equal(ctx_get(&f, OCTX, 0, 1) & 0xffff, 0x1234);
	assert_int_equal(ctx_get(&f, OCTX, 0, 1) >> 16 & 0xff, 1); /* the root port stays */
	fx_stop(&f);
}

/* Rings that loop, point outside RAM or never end are bounded and reported. */
static void test_bad_rings(void **state)
{
	struct fx f;
	struct trb ev;

	fx_start(&f);
	hc_start(&f);
	no_event(&f);
	/* a command ring of No-Ops looping onto itself with the same cycle: bounded */
	for (unsigned i = 0; i < 4; i++)
		put_trb(&f, CMD_RING + 16 * i, &(struct trb){ .control = T_NOOP_CMD << 10 | 1 });
	put_trb(&f, CMD_RING + 64, &(struct trb){ .param = CMD_RING, .control = T_LINK << 10 | 1 });
	wr(&f, DB(0), 0);
	{
		unsigned n = 0;

		/*
		 * 256 commands ran (the bound), the event ring (16 entries) and the queue of
		 * events waiting for room (64) filled; the guest never consumed while it
		 * produced, so the rest are lost and the controller says so (HCE).
		 */
		while (event(&f, &ev))
			n++;
		assert_int_equal(n, EV_TRBS - 1 + 64);
		assert_true(rd(&f, USBSTS) & (1U << 12));
		wr(&f, DB(0), 0); /* the next doorbell runs the next 256, no more */
		n = 0;
		while (event(&f, &ev))
			n++;
		assert_int_equal(n, EV_TRBS - 1 + 64);
	}
	/* a loop of Link TRBs only: TRB Error, the ring stops */
	hc_start(&f);
	no_event(&f);
	put_trb(&f, CMD_RING, &(struct trb){ .param = CMD_RING + 16, .control = T_LINK << 10 | 1 });
	put_trb(&f, CMD_RING + 16, &(struct trb){ .param = CMD_RING, .control = T_LINK << 10 | 1 });
	wr(&f, DB(0), 0);
	ev = next_event(&f);
	assert_int_equal(cc_of(&ev), CC_TRB);
	assert_int_equal(rd(&f, CRCR) & 8, 0);
	/* a command ring outside RAM: host system error, nothing written */
	hc_start(&f);
	wr(&f, USBCMD, 0);
	wr64(&f, CRCR, (RAM_SIZE - 16) | 1);
	wr(&f, USBCMD, 5);
	no_event(&f);
	wr64(&f, CRCR, (1ULL << 40) | 1);
	wr(&f, DB(0), 0);
	assert_true(rd(&f, USBSTS) & 4);

	/* transfer rings: set up the tablet, then break EP0's ring in ways */
	hc_start(&f);
	enable_and_address(&f);
	no_event(&f);
	{
		uint32_t len;
		uint64_t a;

		/* Setup without IDT, and with a length of 7: TRB Error, halted */
		a = ring_put(&f, &f.ep0,
			     (struct trb){ .param = 0x0100 << 16 | 0x0680,
					   .status = 8,
					   .control = T_SETUP << 10 });
		ring_put(&f, &f.ep0, (struct trb){ .control = T_STATUS << 10 | IOC });
		wr(&f, DB(f.slot), 1);
		ev = next_event(&f);
		assert_int_equal(cc_of(&ev), CC_TRB);
		assert_int_equal(ev.param, a);
		assert_int_equal(ctx_get(&f, OCTX, 1, 0) & 7, 2);
		/* a halted endpoint ignores its doorbell */
		wr(&f, DB(f.slot), 1);
		no_event(&f);
		assert_int_equal(cmd_cc(&f, T_RESET_EP, f.slot, 1U << 16, 0), CC_SUCCESS);
		assert_int_equal(cmd_cc(&f, T_SET_DEQ, f.slot, 1U << 16,
					EP0_RING + 16ULL * f.ep0.idx + (f.ep0.cycle ? 1 : 0)),
				 CC_SUCCESS);
		/* a data buffer outside RAM */
		a = ring_put(&f, &f.ep0,
			     (struct trb){ .param = (uint64_t)18 << 48 | 0x0100 << 16 | 0x0680,
					   .status = 8,
					   .control = T_SETUP << 10 | IDT | 3U << 16 });
		a = ring_put(&f, &f.ep0,
			     (struct trb){ .param = RAM_SIZE - 4,
					   .status = 18,
					   .control = T_DATA << 10 | 1U << 16 });
		ring_put(&f, &f.ep0, (struct trb){ .control = T_STATUS << 10 | IOC });
		wr(&f, DB(f.slot), 1);
		ev = next_event(&f);
		assert_int_equal(cc_of(&ev), CC_TRB);
		assert_int_equal(ev.param, a);
		assert_int_equal(cmd_cc(&f, T_RESET_EP, f.slot, 1U << 16, 0), CC_SUCCESS);
		assert_int_equal(cmd_cc(&f, T_SET_DEQ, f.slot, 1U << 16,
					EP0_RING + 16ULL * f.ep0.idx + (f.ep0.cycle ? 1 : 0)),
				 CC_SUCCESS);
		/* a Setup with no Status yet waits; the Status makes it run */
		ring_put(&f, &f.ep0,
			 (struct trb){ .param = (uint64_t)18 << 48 | 0x0100 << 16 | 0x0680,
				       .status = 8,
				       .control = T_SETUP << 10 | IDT | 3U << 16 });
		ring_put(&f, &f.ep0,
			 (struct trb){
				 .param = BUF, .status = 18, .control = T_DATA << 10 | 1U << 16 });
		wr(&f, DB(f.slot), 1);
		no_event(&f);
		ring_put(&f, &f.ep0, (struct trb){ .control = T_STATUS << 10 | IOC });
		wr(&f, DB(f.slot), 1);
		ev = next_event(&f);
		assert_int_equal(cc_of(&ev), CC_SUCCESS);
		/* a TD of Normal TRBs chained forever (a loop): TRB Error, bounded */
		a = EP0_RING + 16ULL * f.ep0.idx;
		ring_put(&f, &f.ep0,
			 (struct trb){ .param = 0x0100 << 16 | 0x0680,
				       .status = 8,
				       .control = T_SETUP << 10 | IDT });
		put_trb(&f, EP0_RING + 16ULL * f.ep0.idx,
			&(struct trb){ .param = EP0_RING + 16ULL * f.ep0.idx,
				       .control = T_LINK << 10 | CH | (f.ep0.cycle ? 1 : 0) });
		wr(&f, DB(f.slot), 1);
		ev = next_event(&f);
		assert_int_equal(cc_of(&ev), CC_TRB);
		/* still a working controller: a good transfer after recovery */
		assert_int_equal(cmd_cc(&f, T_RESET_EP, f.slot, 1U << 16, 0), CC_SUCCESS);
		ring_init(&f, &f.ep0, EP0_RING + 0x800);
		assert_int_equal(cmd_cc(&f, T_SET_DEQ, f.slot, 1U << 16, (EP0_RING + 0x800) | 1),
				 CC_SUCCESS);
		assert_int_equal(control(&f, 0x80, 6, 0x100, 0, 18, &len), CC_SUCCESS);
		assert_int_equal(len, 18);
		(void)a;
	}
	fx_stop(&f);
}

#define PS_PED (1U << 1)
#define PS_PR (1U << 4)
#define PS_PLS(p) ((p) >> 5 & 0xf)
#define PS_PP (1U << 9)
#define PS_LWS (1U << 16)
#define PS_CSC (1U << 17)
#define PS_PEC (1U << 18)
#define PS_WRC (1U << 19)
#define PS_PRC (1U << 21)
#define PS_PLC (1U << 22)
#define PS_WPR (1U << 31)
#define PORTPMSC(n) (PORTSC(n) + 4)
#define PORTLI(n) (PORTSC(n) + 8)
#define PORTHLPMC(n) (PORTSC(n) + 12)

/* No TRB of the @n at @a was written. */
static bool all_zero_trbs(struct fx *f, uint64_t a, unsigned n)
{
	const uint8_t *p = gpa(f, a, 16ULL * n);

	for (size_t i = 0; i < 16ULL * n; i++)
		if (p[i])
			return false;
	return true;
}

/* How many events are waiting; each must be a port status change for port @n. */
static unsigned port_events(struct fx *f, unsigned n)
{
	struct trb ev;
	unsigned k = 0;

	while (event(f, &ev)) {
		assert_int_equal(type_of(&ev), E_PORT);
		assert_int_equal(ev.param >> 24, n);
		k++;
	}
	return k;
}

/*
 * The port registers as a driver works them (xHCI 4.19, 5.4.8-11): change bits clear when
 * written 1, a USB 2 port is disabled by writing PED, a USB 3 port takes a warm reset and
 * ignores PED, the link goes to U3 and back with a link state change, the power management
 * registers keep what is written and PORTLI is read-only.
 */
static void test_ports(void **state)
{
	struct fx f;
	uint32_t sc;

	fx_start(&f);
	hc_start(&f);
	no_event(&f);
	port_reset(&f, 1);
	assert_int_equal(port_events(&f, 1), 1);
	/* Suspend (U3) and resume (U0): only the resume is a link state change. */
	wr(&f, PORTSC(1), PS_PP | PS_LWS | 3U << 5);
	assert_int_equal(PS_PLS(rd(&f, PORTSC(1))), 3);
	assert_int_equal(port_events(&f, 0), 0);
	wr(&f, PORTSC(1), PS_PP | 3U << 5); /* without LWS the link state is not written */
	wr(&f, PORTSC(1), PS_PP | 0U << 5);
	assert_int_equal(PS_PLS(rd(&f, PORTSC(1))), 3);
	wr(&f, PORTSC(1), PS_PP | PS_LWS | 15U << 5); /* Resume */
	sc = rd(&f, PORTSC(1));
	assert_int_equal(PS_PLS(sc), 0);
	assert_true(sc & PS_PLC);
	assert_int_equal(port_events(&f, 1), 1);
	/* U0 from U0 is no change; the change bit clears when written 1, not 0. */
	wr(&f, PORTSC(1), PS_PP | PS_LWS);
	assert_true(rd(&f, PORTSC(1)) & PS_PLC);
	wr(&f, PORTSC(1), PS_PP | PS_PLC);
	assert_false(rd(&f, PORTSC(1)) & PS_PLC);
	assert_int_equal(port_events(&f, 0), 0);
	/* Wake and indicator bits are kept; PMSC and HLPMC read back; PORTLI ignores writes. */
	wr(&f, PORTSC(1), PS_PP | 7U << 25 | 2U << 14);
	sc = rd(&f, PORTSC(1));
	assert_int_equal(sc >> 25 & 7, 7);
	assert_int_equal(sc >> 14 & 3, 2);
	wr(&f, PORTPMSC(1), 0x1234);
	wr(&f, PORTHLPMC(1), 0x5678);
	wr(&f, PORTLI(1), 0x9abc);
	assert_int_equal(rd(&f, PORTPMSC(1)), 0x1234);
	assert_int_equal(rd(&f, PORTHLPMC(1)), 0x5678);
	assert_int_equal(rd(&f, PORTLI(1)), 0);
	/* Writing PED disables a USB 2 port: link Disabled, the device stays connected. */
	wr(&f, PORTSC(1), PS_PP | PS_PED);
	sc = rd(&f, PORTSC(1));
	assert_int_equal(sc & 3, 1);
	assert_int_equal(PS_PLS(sc), 4);
	/* A disabled port's link cannot be suspended. */
	wr(&f, PORTSC(1), PS_PP | PS_LWS | 3U << 5);
	assert_int_equal(PS_PLS(rd(&f, PORTSC(1))), 4);
	assert_int_equal(port_events(&f, 0), 0);
	/* A USB 3 port (5, empty): warm reset sets WRC and PRC and posts one event. */
	wr(&f, PORTSC(5), PS_PP | PS_WPR);
	sc = rd(&f, PORTSC(5));
	assert_true(sc & PS_WRC);
	assert_true(sc & PS_PRC);
	assert_int_equal(sc & 3, 0); /* nothing there to enable */
	assert_int_equal(port_events(&f, 5), 1);
	/* A second reset with the change bits still set is no new change: no event. */
	wr(&f, PORTSC(5), PS_PP | PS_PR);
	assert_int_equal(port_events(&f, 0), 0);
	wr(&f, PORTSC(5), PS_PP | PS_WRC | PS_PRC);
	assert_int_equal(rd(&f, PORTSC(5)) & (PS_WRC | PS_PRC), 0);
	/* WPR on a USB 2 port is no warm reset. */
	wr(&f, PORTSC(2), PS_PP | PS_WPR);
	assert_int_equal(rd(&f, PORTSC(2)) & (PS_WRC | PS_PRC), 0);
	assert_int_equal(port_events(&f, 0), 0);
	fx_stop(&f);
}

/*
 * An event ring of two segments (xHCI 4.9.4): events fill segment 0, go on in segment 1, and
 * come back to segment 0 with the cycle bit flipped.  Then ERSTs a guest gets wrong, each
 * written before the ring is set up: a segment of 8 TRBs or of 8192, more than 16 entries,
 * a table or a segment outside RAM: no event is written anywhere, and once the table is
 * right again the waiting events come.
 */
static void test_event_ring_segments(void **state)
{
	const uint64_t seg[2] = { EV_RING, EV_RING + 0x400 };
	uint64_t *erst;
	struct fx f;

	fx_start(&f);
	hc_start(&f);
	no_event(&f);
	erst = gpa(&f, ERST, 32);
	memset(gpa(&f, EV_RING, 0x800), 0, 0x800);
	erst[0] = seg[0];
	erst[1] = 16;
	erst[2] = seg[1];
	erst[3] = 16;
	wr(&f, ERSTSZ, 2);
	wr64(&f, ERDP, seg[0]);
	wr64(&f, ERSTBA, ERST);
	for (unsigned i = 0; i < 40; i++) {
		uint64_t at = seg[(i / 16) % 2] + 16ULL * (i % 16), next;
		uint64_t a = ring_put(&f, &f.cmd, (struct trb){ .control = T_NOOP_CMD << 10 });
		bool cycle = (i / 32) % 2 == 0;
		struct trb t;

		wr(&f, DB(0), 0);
		t = get_trb(&f, at);
		if (!(t.control & 1) != !cycle || type_of(&t) != E_CMD || t.param != a)
			fail_msg("event %u not at %#llx with cycle %d", i, (unsigned long long)at,
				 cycle);
		next = (i + 1) % 16 ? at + 16 : seg[((i + 1) / 16) % 2];
		wr64(&f, ERDP, next | 8);
	}
	fx_stop(&f);
	/* ERSTs that cannot be used: nothing is written; the event waits for a good one. */
	{
		static const struct {
			uint64_t base, size;
			uint32_t erstsz;
			uint64_t erstba;
		} bad[] = {
			{ EV_RING, 8, 1, ERST },	     /* fewer than 16 TRBs */
			{ EV_RING, 8192, 1, ERST },	     /* more than 4096 */
			{ EV_RING, 16, 17, ERST },	     /* more entries than the 16 offered */
			{ RAM_SIZE - 0x80, 16, 1, ERST },    /* the segment leaves RAM */
			{ EV_RING, 16, 1, RAM_SIZE + 0x40 }, /* the table is not in RAM */
		};

		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			struct trb ev;

			fx_start(&f);
			hc_start(&f);
			no_event(&f);
			erst = gpa(&f, ERST, 16);
			memset(gpa(&f, EV_RING, 0x800), 0, 0x800);
			erst[0] = bad[i].base;
			erst[1] = bad[i].size;
			wr(&f, ERSTSZ, bad[i].erstsz);
			wr64(&f, ERDP, EV_RING);
			wr64(&f, ERSTBA, bad[i].erstba);
			ring_put(&f, &f.cmd, (struct trb){ .control = T_NOOP_CMD << 10 });
			wr(&f, DB(0), 0);
			assert_true(all_zero_trbs(&f, EV_RING, 0x800 / 16));
			/* Put right: the command's completion arrives. */
			erst[0] = EV_RING;
			erst[1] = EV_TRBS;
			wr(&f, ERSTSZ, 1);
			wr64(&f, ERSTBA, ERST);
			f.ev_idx = 0;
			f.ev_cycle = true;
			wr64(&f, ERDP, EV_RING | 8); /* the guest moves its dequeue pointer */
			if (!event(&f, &ev) || type_of(&ev) != E_CMD)
				fail_msg("ERST case %zu: no event once the table was right", i);
			fx_stop(&f);
		}
	}
}

/* GET_DESCRIPTOR(device) of @len bytes, and SET_REPORT (a class OUT request) of @len. */
#define GET_DEV(len) ((uint64_t)(len) << 48 | 0x0100 << 16 | 0x0680)
#define SET_REPORT(len) ((uint64_t)(len) << 48 | 0x0200 << 16 | 0x0921)
#define S_IN (3U << 16)	 /* Setup TRT: IN data stage */
#define S_OUT (2U << 16) /* Setup TRT: OUT data stage */
#define D_IN (1U << 16)	 /* Data TRB: DIR IN */

struct td_case {
	const char *what;
	unsigned n;
	struct trb t[4];
	unsigned bad; /* the TRB the error names */
	unsigned cc;
};

/* Put back EP0 after a halt: Reset Endpoint, then the dequeue pointer where the ring is. */
static void ep0_recover(struct fx *f)
{
	assert_int_equal(cmd_cc(f, T_RESET_EP, f->slot, 1U << 16, 0), CC_SUCCESS);
	assert_int_equal(cmd_cc(f, T_SET_DEQ, f->slot, 1U << 16,
				EP0_RING + 16ULL * f->ep0.idx + (f->ep0.cycle ? 1 : 0)),
			 CC_SUCCESS);
}

/*
 * Control TDs a guest can get wrong, each on its own: the endpoint halts with the completion
 * code on the TRB at fault (xHCI 4.10.2), nothing else is reported, and after recovery the
 * next good transfer works.
 */
static void test_bad_control_tds(void **state)
{
	const struct td_case cases[] = {
		{ "setup of 7 bytes",
		  2,
		  { { GET_DEV(18), 7, T_SETUP << 10 | IDT | S_IN },
		    { 0, 0, T_STATUS << 10 | IOC } },
		  0,
		  CC_TRB },
		{ "setup TRT 1 (reserved)",
		  2,
		  { { GET_DEV(0), 8, T_SETUP << 10 | IDT | 1U << 16 },
		    { 0, 0, T_STATUS << 10 | IOC } },
		  0,
		  CC_TRB },
		{ "IN request, OUT data stage",
		  3,
		  { { GET_DEV(18), 8, T_SETUP << 10 | IDT | S_OUT },
		    { BUF, 18, T_DATA << 10 | D_IN },
		    { 0, 0, T_STATUS << 10 | IOC } },
		  1,
		  CC_TRB },
		{ "IN request, data TRB without DIR",
		  3,
		  { { GET_DEV(18), 8, T_SETUP << 10 | IDT | S_IN },
		    { BUF, 18, T_DATA << 10 },
		    { 0, 0, T_STATUS << 10 | IOC } },
		  1,
		  CC_TRB },
		{ "TRT says data, none there",
		  2,
		  { { GET_DEV(18), 8, T_SETUP << 10 | IDT | S_IN },
		    { 0, 0, T_STATUS << 10 | IOC } },
		  0,
		  CC_TRB },
		{ "data stage opening with a Normal TRB",
		  3,
		  { { GET_DEV(18), 8, T_SETUP << 10 | IDT | S_IN },
		    { BUF, 18, T_NORMAL << 10 | D_IN },
		    { 0, 0, T_STATUS << 10 | IOC } },
		  1,
		  CC_TRB },
		{ "a data TRB longer than 64 KiB (named, not the end of the stage)",
		  4,
		  { { GET_DEV(18), 8, T_SETUP << 10 | IDT | S_IN },
		    { BUF, 0x10001, T_DATA << 10 | D_IN | CH },
		    { BUF, 0, T_NORMAL << 10 },
		    { 0, 0, T_STATUS << 10 | IOC } },
		  1,
		  CC_TRB },
		{ "immediate data on an IN stage",
		  3,
		  { { GET_DEV(8), 8, T_SETUP << 10 | IDT | S_IN },
		    { 0, 8, T_DATA << 10 | D_IN | IDT },
		    { 0, 0, T_STATUS << 10 | IOC } },
		  1,
		  CC_TRB },
		{ "immediate data of 9 bytes",
		  3,
		  { { SET_REPORT(9), 8, T_SETUP << 10 | IDT | S_OUT },
		    { 0, 9, T_DATA << 10 | IDT },
		    { 0, 0, T_STATUS << 10 | IOC | D_IN } },
		  1,
		  CC_TRB },
		{ "immediate data in a chain",
		  4,
		  { { SET_REPORT(8), 8, T_SETUP << 10 | IDT | S_OUT },
		    { 0, 4, T_DATA << 10 | IDT | CH },
		    { BUF, 4, T_NORMAL << 10 },
		    { 0, 0, T_STATUS << 10 | IOC | D_IN } },
		  1,
		  CC_TRB },
		{ "a data stage of more than 64 KiB in all",
		  4,
		  { { GET_DEV(0xffff), 8, T_SETUP << 10 | IDT | S_IN },
		    { BUF, 0x10000, T_DATA << 10 | D_IN | CH },
		    { BUF, 0x10000, T_NORMAL << 10 },
		    { 0, 0, T_STATUS << 10 | IOC } },
		  2,
		  CC_TRB },
		{ "a No-Op opening the data stage",
		  3,
		  { { GET_DEV(18), 8, T_SETUP << 10 | IDT | S_IN },
		    { 0, 0, T_NOOP << 10 | D_IN },
		    { 0, 0, T_STATUS << 10 | IOC } },
		  1,
		  CC_TRB },
		{ "a Normal TRB on its own on the control endpoint",
		  1,
		  { { BUF, 8, T_NORMAL << 10 | IOC } },
		  0,
		  CC_TRB },
		{ "a chained No-Op on its own",
		  2,
		  { { 0, 0, T_NOOP << 10 | CH }, { 0, 0, T_STATUS << 10 | IOC } },
		  0,
		  CC_TRB },
		{ "the guest's own SET_ADDRESS",
		  2,
		  { { 0x0500 | (5ULL << 16), 8, T_SETUP << 10 | IDT },
		    { 0, 0, T_STATUS << 10 | IOC | D_IN } },
		  1,
		  CC_STALL },
		{ "a request the tablet stalls",
		  3,
		  { { GET_DEV(18) | 0x0400ULL << 16, 8, T_SETUP << 10 | IDT | S_IN },
		    { BUF, 18, T_DATA << 10 | D_IN },
		    { 0, 0, T_STATUS << 10 | IOC } },
		  1,
		  CC_STALL },
	};
	struct fx f;
	struct trb ev;
	uint32_t len;

	fx_start(&f);
	hc_start(&f);
	enable_and_address(&f);
	no_event(&f);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct td_case *c = &cases[i];
		uint64_t at[4];

		for (unsigned j = 0; j < c->n; j++)
			at[j] = ring_put(&f, &f.ep0, c->t[j]);
		wr(&f, DB(f.slot), 1);
		if (!event(&f, &ev))
			fail_msg("%s: no event", c->what);
		if (type_of(&ev) != E_TRANSFER || cc_of(&ev) != c->cc || ev.param != at[c->bad])
			fail_msg("%s: event type %u cc %u at %#llx, want cc %u at TRB %u", c->what,
				 type_of(&ev), cc_of(&ev), (unsigned long long)ev.param, c->cc,
				 c->bad);
		if (event(&f, &ev))
			fail_msg("%s: a second event (cc %u)", c->what, cc_of(&ev));
		assert_int_equal(ctx_get(&f, OCTX, 1, 0) & 7, 2); /* halted */
		/* the guest skips the rest of the TD: the ring goes on after it */
		ep0_recover(&f);
		assert_int_equal(control(&f, 0x80, 6, 0x100, 0, 18, &len), CC_SUCCESS);
		assert_int_equal(len, 18);
	}
	fx_stop(&f);
}

/*
 * Good control TDs in less common shapes: a standalone No-Op TD, Event Data TRBs in the data
 * stage (their event carries the Event Data and the byte count so far), immediate OUT data.
 */
/*
 * Control OUT data stages: SET_REPORT with its byte as immediate data (IDT) and from a
 * buffer.  The tablet has no output report, so both STALL on the data's TD and the endpoint
 * halts; a second request after recovery works.
 */
static void test_control_out_data(void **state)
{
	struct fx f;
	struct trb ev;
	uint32_t len;
	uint64_t setup = 0x21 | 0x09 << 8 | 0x0200ULL << 16 | 1ULL << 48;

	fx_start(&f);
	hc_start(&f);
	enable_and_address(&f);
	for (unsigned idt = 0; idt < 2; idt++) {
		ring_put(&f, &f.ep0,
			 (struct trb){ .param = setup,
				       .status = 8,
				       .control = T_SETUP << 10 | IDT | 2U << 16 });
		ring_put(&f, &f.ep0,
			 (struct trb){ .param = idt ? 0x55 : BUF,
				       .status = 1,
				       .control = T_DATA << 10 | (idt ? IDT : 0) });
		ring_put(&f, &f.ep0, (struct trb){ .control = T_STATUS << 10 | IOC | 1U << 16 });
		*(uint8_t *)gpa(&f, BUF, 1) = 0x55;
		wr(&f, DB(f.slot), 1);
		ev = next_event(&f);
		assert_int_equal(type_of(&ev), E_TRANSFER);
		assert_int_equal(cc_of(&ev), CC_STALL);
		assert_int_equal(ctx_get(&f, OCTX, 1, 0) & 7, 2); /* halted */
		ep0_recover(&f);
	}
	/* An immediate data stage of more than 8 bytes is no TRB the spec allows. */
	ring_put(&f, &f.ep0,
		 (struct trb){ .param = setup | 9ULL << 48,
			       .status = 8,
			       .control = T_SETUP << 10 | IDT | 2U << 16 });
	ring_put(&f, &f.ep0,
		 (struct trb){ .param = 0x55, .status = 9, .control = T_DATA << 10 | IDT });
	ring_put(&f, &f.ep0, (struct trb){ .control = T_STATUS << 10 | IOC | 1U << 16 });
	wr(&f, DB(f.slot), 1);
	ev = next_event(&f);
	assert_int_equal(cc_of(&ev), CC_TRB);
	ep0_recover(&f);
	assert_int_equal(control(&f, 0x80, 0, 0, 0, 2, &len), CC_SUCCESS); /* GET_STATUS */
	fx_stop(&f);
}

static void test_control_td_shapes(void **state)
{
	struct fx f;
	struct trb ev;
	uint64_t st;

	fx_start(&f);
	hc_start(&f);
	enable_and_address(&f);
	no_event(&f);
	/* A No-Op TD: success on it when it asks, nothing when it does not. */
	st = ring_put(&f, &f.ep0, (struct trb){ .control = T_NOOP << 10 | IOC });
	wr(&f, DB(f.slot), 1);
	ev = next_event(&f);
	assert_int_equal(cc_of(&ev), CC_SUCCESS);
	assert_int_equal(ev.param, st);
	ring_put(&f, &f.ep0, (struct trb){ .control = T_NOOP << 10 });
	wr(&f, DB(f.slot), 1);
	no_event(&f);
	/* Data, Event Data (IOC), Status: the Event Data event says 18 bytes, ED set. */
	ring_put(&f, &f.ep0,
		 (struct trb){ .param = GET_DEV(18),
			       .status = 8,
			       .control = T_SETUP << 10 | IDT | S_IN });
	ring_put(&f, &f.ep0,
		 (struct trb){ .param = BUF, .status = 18, .control = T_DATA << 10 | D_IN | CH });
	ring_put(&f, &f.ep0,
		 (struct trb){ .param = 0x1234567800ULL, .control = 7U << 10 | IOC | CH });
	st = ring_put(&f, &f.ep0, (struct trb){ .control = T_STATUS << 10 | IOC });
	wr(&f, DB(f.slot), 1);
	ev = next_event(&f);
	assert_int_equal(cc_of(&ev), CC_SUCCESS);
	assert_int_equal(ev.param, 0x1234567800ULL);
	assert_true(ev.control & (1U << 2)); /* ED */
	assert_int_equal(ev.status & 0xffffff, 18);
	ev = next_event(&f);
	assert_int_equal(ev.param, st);
	assert_int_equal(((uint8_t *)gpa(&f, BUF, 18))[1], 1); /* a device descriptor */
	/* The same asking for 64 bytes: short; the Event Data reports the 18 that came. */
	ring_put(&f, &f.ep0,
		 (struct trb){ .param = GET_DEV(64),
			       .status = 8,
			       .control = T_SETUP << 10 | IDT | S_IN });
	ring_put(&f, &f.ep0,
		 (struct trb){ .param = BUF, .status = 64, .control = T_DATA << 10 | D_IN | CH });
	ring_put(&f, &f.ep0, (struct trb){ .param = 0xed, .control = 7U << 10 | IOC | CH });
	ring_put(&f, &f.ep0, (struct trb){ .control = T_STATUS << 10 | IOC });
	wr(&f, DB(f.slot), 1);
	ev = next_event(&f);
	assert_int_equal(cc_of(&ev), CC_SHORT);
	assert_int_equal(ev.param, 0xed);
	assert_int_equal(ev.status & 0xffffff, 18);
	ev = next_event(&f);
	assert_int_equal(cc_of(&ev), CC_SUCCESS);
	/* A short data stage that asks only at its Normal TRB's end: reported there. */
	ring_put(&f, &f.ep0,
		 (struct trb){ .param = GET_DEV(64),
			       .status = 8,
			       .control = T_SETUP << 10 | IDT | S_IN });
	ring_put(&f, &f.ep0,
		 (struct trb){ .param = BUF, .status = 32, .control = T_DATA << 10 | D_IN | CH });
	st = ring_put(&f, &f.ep0,
		      (struct trb){
			      .param = BUF + 32, .status = 32, .control = T_NORMAL << 10 | IOC });
	ring_put(&f, &f.ep0, (struct trb){ .control = T_STATUS << 10 });
	wr(&f, DB(f.slot), 1);
	ev = next_event(&f);
	assert_int_equal(cc_of(&ev), CC_SHORT);
	assert_int_equal(ev.param, st);
	assert_int_equal(ev.status & 0xffffff, 64 - 18);
	no_event(&f);
	fx_stop(&f);
}

/* The event ring fills: events wait and come once the guest consumes, none lost or doubled. */
/*
 * ERSTSZ changed under a running ring (0, or below the segment written): no fault, events
 * wait, and the state saves and loads (the fuzzer found a division by zero here).
 */
static void test_erstsz_changed(void **state)
{
	struct fx f;
	struct trb ev;
	size_t len;
	uint8_t *a;

	fx_start(&f);
	hc_start(&f);
	no_event(&f);
	wr(&f, ERSTSZ, 0);
	ring_put(&f, &f.cmd, (struct trb){ .control = T_NOOP_CMD << 10 });
	wr(&f, DB(0), 0);
	assert_false(event(&f, &ev));
	wr(&f, ERSTSZ, 0xffff);
	wr64(&f, ERDP, EV_RING | 7);
	a = devsnap_save_copy(&f.pd->dev, &len);
	assert_int_equal(devsnap_load(&f.pd->dev, a, len, 1), 0);
	free(a);
	/* a new ERSTBA write sets the ring up again and the waiting event comes */
	wr(&f, ERSTSZ, 1);
	wr64(&f, ERSTBA, ERST);
	f.ev_idx = 0;
	f.ev_cycle = true;
	wr64(&f, ERDP, EV_RING | 8);
	ev = next_event(&f);
	assert_int_equal(type_of(&ev), E_CMD);
	fx_stop(&f);
}

static void test_event_ring_full(void **state)
{
	struct fx f;
	struct trb ev;
	uint64_t want[40];
	unsigned got = 0;

	fx_start(&f);
	hc_start(&f);
	no_event(&f);
	for (unsigned i = 0; i < 40; i++)
		want[i] = ring_put(&f, &f.cmd, (struct trb){ .control = T_NOOP_CMD << 10 });
	wr(&f, DB(0), 0);
	/* Nothing consumed yet: at most the ring's size - 1 are there. */
	for (unsigned i = 0; i < 40; i++) {
		if (!event(&f, &ev))
			break;
		assert_int_equal(ev.param, want[got]);
		got++;
	}
	assert_int_equal(got, 40);
	assert_false(event(&f, &ev));
	fx_stop(&f);
}

static void test_snapshot(void **state)
{
	struct fx f, g;
	struct console *c;
	struct report r;
	uint8_t *a, *b, *bad;
	size_t alen, blen;

	c = tablet_ready(&f);
	/* two reports wait in the tablet when the checkpoint is taken */
	console_pointer_event(c, 10, 20, 0);
	console_pointer_event(c, 10, 20, 1);
	assert_int_equal(f.pd->dev.ops->pause(&f.pd->dev), 0);
	/* an event while paused queues: it is in the snapshot */
	console_pointer_event(c, 10, 20, 0);
	a = devsnap_save_copy(&f.pd->dev, &alen);
	console_display_detach(c);

	fx_start(&g);
	memcpy(gpa(&g, 0, 0x40000), gpa(&f, 0, 0x40000), 0x40000);
	assert_int_equal(devsnap_load(&g.pd->dev, a, alen, 1), 0);
	b = devsnap_save_copy(&g.pd->dev, &blen);
	assert_int_equal(alen, blen);
	assert_memory_equal(a, b, alen);
	/* refused: truncated, newer version, garbage in the middle; g unchanged */
	devsnap_expect_refused(&g.pd->dev, a, alen - 1, 1);
	devsnap_expect_refused(&g.pd->dev, a, alen, 2);
	bad = malloc(alen);
	for (size_t off = alen - 40; off < alen; off += 3) {
		memcpy(bad, a, alen);
		bad[off] ^= 0xff;
		if (devsnap_load(&g.pd->dev, bad, alen, 1) == 0) {
			/* a change that is still a valid state; put g back */
			assert_int_equal(devsnap_load(&g.pd->dev, a, alen, 1), 0);
		}
	}
	free(bad);
	/* the restored controller delivers the three reports once each, in order */
	assert_int_equal(g.pd->dev.ops->resume(&g.pd->dev), 0);
	g.slot = f.slot;
	g.ep1 = f.ep1;
	g.ev_idx = f.ev_idx;
	g.ev_cycle = f.ev_cycle;
	g.cmd = f.cmd;
	for (unsigned i = 0; i < 4; i++)
		queue_in(&g, i);
	assert_true(report(&g, &r));
	assert_int_equal(r.buttons, 0);
	assert_int_equal(r.x, 10 * 32767 / 1023);
	assert_true(report(&g, &r));
	assert_int_equal(r.buttons, 1);
	assert_true(report(&g, &r));
	assert_int_equal(r.buttons, 0);
	assert_false(report(&g, &r));
	/* and commands still work on the restored ring */
	assert_int_equal(cmd_cc(&g, T_NOOP_CMD, 0, 0, 0), CC_SUCCESS);
	free(a);
	free(b);
	fx_stop(&g);
	fx_stop(&f);
}

/*
 * Offsets in the saved controller state (xhci_state_io, after the PCI function's): three u32
 * sizes, the operational
 * registers, interrupter 0, ports 1..8 (16 bytes each), slots 1..32, then per port a present
 * flag with the device's version and state.
 */
#define S_USBCMD 12
#define S_USBSTS 16
#define S_DNCTRL 20
#define S_CONFIG 24
#define S_DCBAAP 28
#define S_CRDEQ 36
#define S_IR 46
#define S_IMAN (S_IR + 0)
#define S_ERSTSZ (S_IR + 8)
#define S_ERSTBA (S_IR + 12)
#define S_SEG (S_IR + 28)
#define S_IDX (S_IR + 32)
#define S_SEG_SIZE (S_IR + 36)
#define S_SEG_BASE (S_IR + 40)
#define S_NPENDING (S_IR + 49)
#define S_SLOT_LEN (12 + 31 * 13)
#define S_EP_LEN 13

struct patch {
	unsigned off, width; /* bytes */
	uint64_t set, or ;   /* the field becomes set | or (set ~0: keep the saved value) */
	const char *why;
};

static uint64_t get_le(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static void put_le(uint8_t *p, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* Load @a with one field changed: refused, with @why in the message, the device unchanged. */
static void expect_patch_refused(struct fx *g, const uint8_t *a, size_t alen, size_t base,
				 const struct patch *p)
{
	uint8_t *bad = malloc(alen);
	struct sstream s;
	uint64_t v;

	memcpy(bad, a, alen);
	v = p->set == UINT64_MAX ? get_le(bad + base + p->off, p->width) : p->set;
	put_le(bad + base + p->off, v | p->or, p->width);
	devsnap_expect_refused(&g->pd->dev, bad, alen, 1);
	ss_init_load(&s, bad, alen);
	assert_int_not_equal(g->pd->dev.ops->load(&g->pd->dev, &s, 1), 0);
	if (!strstr(s.msg, p->why))
		fail_msg("field at %zu: error '%s' does not mention '%s'", base + p->off, s.msg,
			 p->why);
	free(bad);
}

#define KEEP UINT64_MAX

/* Every check on a loaded controller state: one field out of range at a time. */
static void test_snapshot_checks(void **state)
{
	static const struct patch ops[] = {
		{ S_USBCMD, 4, KEEP, 1U << 31, "operational registers out of range" },
		{ S_USBSTS, 4, KEEP, 1U << 20, "operational registers out of range" },
		{ S_CONFIG, 4, KEEP, 0x400, "operational registers out of range" },
		{ S_DCBAAP, 8, KEEP, 0x8, "operational registers out of range" },
		{ S_CRDEQ, 8, KEEP, 0x4, "operational registers out of range" },
		{ S_DNCTRL, 4, 0x10000, 0, "operational registers out of range" },
		{ S_USBSTS, 4, KEEP, 1, "run/stop and halted disagree" },
		{ S_USBCMD, 4, 0, 0, "run/stop and halted disagree" },
		{ S_IMAN, 4, KEEP, 4, "interrupter registers out of range" },
		{ S_ERSTSZ, 4, 0x10000, 0, "interrupter registers out of range" },
		{ S_ERSTBA, 8, KEEP, 0x20, "interrupter registers out of range" },
		{ S_SEG_SIZE, 4, 8, 0, "event ring position out of range" },
		{ S_SEG_SIZE, 4, 8192, 0, "event ring position out of range" },
		{ S_SEG, 4, 16, 0, "event ring position out of range" },
		{ S_IDX, 4, EV_TRBS, 0, "event ring position out of range" },
		{ S_SEG_BASE, 8, KEEP, 0x20, "event ring position out of range" },
		{ S_NPENDING, 4, 65, 0, "pending events" },
	};
	/* Relative to port 1's registers. */
	static const struct patch ports[] = {
		{ 0, 4, KEEP, 1U << 31, "port 1 status" },
		{ 0, 4, 0, 0, "port 1 status" },		      /* no power */
		{ 16, 4, (1U << 9) | 1, 0, "port 2 status" },	      /* connected, nothing there */
		{ 16, 4, (1U << 9) | (1U << 1), 0, "port 2 status" }, /* enabled, nothing there */
	};
	/* Relative to slot 1 (enabled, configured, EP0 and EP1 IN running); slot 2 is free. */
	static const struct patch slots[] = {
		{ 1, 1, 4, 0, "slot 1 state out of range" },
		{ 2, 1, 9, 0, "slot 1 state out of range" },
		{ 4, 8, KEEP, 0x20, "slot 1 state out of range" },
		{ S_SLOT_LEN + 1, 1, 1, 0, "slot 2 state out of range" },
		{ S_SLOT_LEN + 2, 1, 1, 0, "slot 2 state out of range" },
		{ S_SLOT_LEN + 3, 1, 1, 0, "slot 2 state out of range" },
		{ S_SLOT_LEN + 4, 8, 0x1000, 0, "slot 2 state out of range" },
		{ 12, 1, 5, 0, "slot 1 endpoint 1 state out of range" },
		{ 13, 1, 8, 0, "slot 1 endpoint 1 state out of range" },
		{ 16, 8, KEEP, 0x2, "slot 1 endpoint 1 state out of range" },
		{ 12 + 4 * S_EP_LEN, 1, 1, 0, "slot 1 endpoint 5 state out of range" },
		{ S_SLOT_LEN + 12, 1, 1, 0, "slot 2 endpoint 1 state out of range" },
	};
	struct fx f, g;
	uint8_t *a;
	static const uint8_t sizes[12] = { 8, 0, 0, 0, 32, 0, 0, 0, 1, 0, 0, 0 };
	size_t alen, x0, port0, slot0, dev0;

	fx_start(&f);
	hc_start(&f);
	enable_and_address(&f);
	configure(&f);
	assert_int_equal(f.pd->dev.ops->pause(&f.pd->dev), 0);
	a = devsnap_save_copy(&f.pd->dev, &alen);
	fx_start(&g);
	/* The controller's state follows the PCI function's: it starts with its three sizes. */
	for (x0 = 4 + PCI_CFG_SIZE; x0 + 12 <= alen && memcmp(a + x0, sizes, 12); x0++)
		;
	assert_true(x0 + 12 <= alen);
	port0 = x0 + S_NPENDING + 4 + 16 * get_le(a + x0 + S_NPENDING, 4);
	slot0 = port0 + 16 * 8;
	dev0 = slot0 + 32 * S_SLOT_LEN;
	assert_true(dev0 + 5 + 7 <= alen);
	/* The layout is the one assumed: a running controller, slot 1 configured. */
	assert_int_equal(get_le(a + x0 + S_USBCMD, 4) & 1, 1);
	assert_int_not_equal(get_le(a + x0 + S_SEG_SIZE, 4), 0);
	assert_int_equal(a[slot0], 1);
	assert_int_equal(a[slot0 + 1], 3);
	assert_int_equal(a[slot0 + S_SLOT_LEN], 0);
	assert_int_equal(a[dev0], 1);
	assert_int_equal(devsnap_load(&g.pd->dev, a, alen, 1), 0);
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
		expect_patch_refused(&g, a, alen, x0, &ops[i]);
	for (size_t i = 0; i < sizeof(ports) / sizeof(ports[0]); i++)
		expect_patch_refused(&g, a, alen, port0, &ports[i]);
	for (size_t i = 0; i < sizeof(slots) / sizeof(slots[0]); i++)
		expect_patch_refused(&g, a, alen, slot0, &slots[i]);
	/* An event ring position with no segment loaded. */
	{
		static const struct patch noseg[] = {
			{ S_SEG_SIZE, 4, 0, 0, "position without a segment" },
		};
		uint8_t *b = malloc(alen);

		memcpy(b, a, alen);
		put_le(b + x0 + S_IDX, 1, 4);
		expect_patch_refused(&g, b, alen, x0, &noseg[0]);
		memcpy(b, a, alen);
		put_le(b + x0 + S_SEG, 1, 4); /* segment 1, index 0 */
		expect_patch_refused(&g, b, alen, x0, &noseg[0]);
		free(b);
	}
	/* A state version this controller does not know. */
	devsnap_expect_refused(&g.pd->dev, a, alen, 2);
	/* The devices: the tablet's version, a tablet where this VM has none and the reverse. */
	{
		const struct patch dev[] = {
			{ 1, 4, 0, 0, "port 1: tablet state version 0 is not supported" },
			{ 1, 4, 99, 0, "port 1: tablet state version 99 is not supported" },
			{ 0, 1, 0, 0, "port 1: the snapshot has no device" },
			{ (unsigned)(alen - 7 - dev0), 1, 1, 0,
			  "port 2: the snapshot has a device, this VM none" },
		};

		for (size_t i = 0; i < sizeof(dev) / sizeof(dev[0]); i++)
			expect_patch_refused(&g, a, alen, dev0, &dev[i]);
	}
	/* After all of that, the good state still loads. */
	assert_int_equal(devsnap_load(&g.pd->dev, a, alen, 1), 0);
	free(a);
	fx_stop(&g);
	fx_stop(&f);
}

static void test_options(void **state)
{
	struct fx f;
	char err[256];
	struct vm vm;
	struct config cfg;

	/* no device: all ports empty */
	fx_start_with(&f, NULL);
	for (unsigned p = 1; p <= 8; p++)
		assert_int_equal(rd(&f, PORTSC(p)) & 1, 0);
	fx_stop(&f);
	/* slot.3.device=tablet puts it on port 3 */
	fx_start_with(&f, "slot.3.device=tablet");
	assert_int_equal(rd(&f, PORTSC(3)) & 1, 1);
	assert_int_equal(rd(&f, PORTSC(1)) & 1, 0);
	fx_stop(&f);
	/* unknown device, a value for the flag: refused with a message */
	vm_init_bare(&vm, true);
	config_init(&cfg);
	vm.cfg = &cfg;
	assert_int_equal(vm_add_memory(&vm, RAM_SIZE), 0);
	assert_int_equal(config_set_pair(&cfg, "pci.0.4.0.slot.1.device=mouse"), 0);
	assert_int_equal(pci_setup(&vm, err, sizeof(err)), 0);
	assert_null(pci_dev_add(&vm, 4, 0, &pci_emul_xhci, err, sizeof(err)));
	assert_non_null(strstr(err, "mouse"));
	assert_int_equal(config_set_pair(&cfg, "pci.0.5.0.tablet=yes"), 0);
	assert_null(pci_dev_add(&vm, 5, 0, &pci_emul_xhci, err, sizeof(err)));
	assert_non_null(strstr(err, "tablet"));
	vm_destroy(&vm);
	config_free(&cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_registers),
		cmocka_unit_test(test_register_corners),
		cmocka_unit_test(test_command_fields),
		cmocka_unit_test(test_control_out_data),
		cmocka_unit_test(test_enumerate),
		cmocka_unit_test(test_reports),
		cmocka_unit_test(test_td_shapes_in),
		cmocka_unit_test(test_interrupts),
		cmocka_unit_test(test_bad_commands),
		cmocka_unit_test(test_bad_rings),
		cmocka_unit_test(test_event_ring_full),
		cmocka_unit_test(test_snapshot),
		cmocka_unit_test(test_snapshot_checks),
		cmocka_unit_test(test_event_ring_segments),
		cmocka_unit_test(test_more_commands),
		cmocka_unit_test(test_ports),
		cmocka_unit_test(test_bad_control_tds),
		cmocka_unit_test(test_control_td_shapes),
		cmocka_unit_test(test_options),
		cmocka_unit_test(test_wrap),
		cmocka_unit_test(test_command_ring_wrap),
		cmocka_unit_test(test_erstsz_changed),
		cmocka_unit_test(test_msi),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
