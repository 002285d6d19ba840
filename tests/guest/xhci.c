// SPDX-License-Identifier: MIT
/*
 * khyve test guest, ring 3: a polled xHCI driver (class 0C/03/30) for the
 * USB tablet, written from the xHCI 1.2 and USB 2.0/HID 1.11 specs the way
 * SeaBIOS and Linux drive a controller: reset, DCBAA, a command ring and an
 * event ring of one segment, a port reset, Enable Slot, Address Device,
 * GET_DESCRIPTOR (device, then EP0's packet size through Evaluate Context,
 * configuration, HID report descriptor), SET_CONFIGURATION, SET_IDLE,
 * Configure Endpoint for the interrupt-IN endpoint, then one 8-byte TD at a
 * time on it.  Everything is polled: no interrupts are enabled.
 *
 * The selftest group "xhci" checks the reset state, the enumeration and the
 * descriptors, and one interrupt transfer: the report the tablet sends
 * after SET_CONFIGURATION with the pointer where it is.  mode=console uses
 * xhci_tablet_open()/xhci_tablet_poll() and prints "abs X Y btn B".
 */
#include "user.h"
#include "pci.h"
#include "virtio.h"
#include "xhci.h"

#define RING_TRBS	32
#define TIMEOUT_US	1000000

/* operational registers */
#define USBCMD		0x00
#define USBSTS		0x04
#define CRCR		0x18
#define DCBAAP		0x30
#define CONFIG		0x38
#define PORTSC(n)	(0x400 + 0x10 * ((n) - 1))
/* interrupter 0, from the runtime base */
#define IMAN		0x20
#define ERSTSZ		0x28
#define ERSTBA		0x30
#define ERDP		0x38

#define CMD_RS		(1u << 0)
#define CMD_HCRST	(1u << 1)
#define STS_HCH		(1u << 0)
#define STS_CNR		(1u << 11)
#define PS_CCS		(1u << 0)
#define PS_PED		(1u << 1)
#define PS_PR		(1u << 4)
#define PS_PP		(1u << 9)
#define PS_CSC		(1u << 17)
#define PS_PRC		(1u << 21)

#define TRB_NORMAL	1
#define TRB_SETUP	2
#define TRB_DATA	3
#define TRB_STATUS	4
#define TRB_LINK	6
#define TRB_ENABLE_SLOT	9
#define TRB_ADDRESS	11
#define TRB_CONFIGURE	12
#define TRB_EVALUATE	13
#define EV_TRANSFER	32
#define EV_CMD		33
#define IOC		(1u << 5)
#define IDT		(1u << 6)
#define ISP		(1u << 2)
#define DIR_IN		(1u << 16)
#define CC_SUCCESS	1
#define CC_SHORT	13

struct trb {
	u64 param;
	u32 status, control;
};

struct ring {
	struct trb *t;
	u32 idx;
	u32 cycle;
};

static struct xhc {
	u64 base, op, rt, db;
	u32 slots, ports;
	u64 *dcbaa;
	struct ring cmd, ep0, ep1;
	struct trb *ev;
	u32 ev_idx, ev_cycle;
	u32 slot, port, speed, dci, mps0;
	u32 *in, *out;
	u8 *buf, *rep;
	bool td_queued;
	bool open;
} xc;

static u32 rd(u64 a) { return mmio_read32(a); }
static void wr(u64 a, u32 v) { mmio_write32(a, v); }

static void wr64(u64 a, u64 v)
{
	wr(a, (u32)v);
	wr(a + 4, (u32)(v >> 32));
}

static bool wait_reg(u64 a, u32 mask, u32 want)
{
	u64 end = now_us() + TIMEOUT_US;

	while ((rd(a) & mask) != want)
		if (now_us() > end)
			return false;
	return true;
}

static struct trb *ring_new(struct ring *r)
{
	r->t = vio_alloc(RING_TRBS * sizeof(struct trb), 64);
	if (!r->t)
		return NULL;
	r->t[RING_TRBS - 1].param = (u64)r->t;
	r->t[RING_TRBS - 1].control = TRB_LINK << 10 | 2;	/* toggle cycle */
	r->idx = 0;
	r->cycle = 1;
	return r->t;
}

/* Queue a TRB; its cycle bit goes last, so the controller sees it whole. */
static u64 ring_put(struct ring *r, u64 param, u32 status, u32 control)
{
	struct trb *t = &r->t[r->idx];

	t->param = param;
	t->status = status;
	barrier();
	WRITE_ONCE(t->control, (control & ~1u) | r->cycle);
	if (++r->idx == RING_TRBS - 1) {
		struct trb *l = &r->t[RING_TRBS - 1];

		WRITE_ONCE(l->control, (l->control & ~1u) | r->cycle);
		r->idx = 0;
		r->cycle ^= 1;
	}
	return (u64)t;
}

/* The next event, if any; consumed. */
static bool event_get(struct trb *ev)
{
	struct trb *t = &xc.ev[xc.ev_idx];

	if ((READ_ONCE(t->control) & 1) != xc.ev_cycle)
		return false;
	barrier();
	*ev = *t;
	if (++xc.ev_idx == RING_TRBS) {
		xc.ev_idx = 0;
		xc.ev_cycle ^= 1;
	}
	wr64(xc.rt + ERDP, (u64)&xc.ev[xc.ev_idx] | 8);
	return true;
}

static u32 ev_type(const struct trb *e) { return (e->control >> 10) & 0x3f; }
static u32 ev_cc(const struct trb *e) { return e->status >> 24; }

/* Wait for an event of @type (others, port changes, are dropped). */
static bool event_wait(u32 type, struct trb *ev)
{
	u64 end = now_us() + TIMEOUT_US;

	while (now_us() < end)
		if (event_get(ev) && ev_type(ev) == type)
			return true;
	return false;
}

/* A command; its completion code (0: no completion), *slot from the event. */
static u32 command(u64 param, u32 control, u32 *slot)
{
	struct trb ev;
	u64 at = ring_put(&xc.cmd, param, 0, control);

	wr(xc.db, 0);
	if (!event_wait(EV_CMD, &ev) || ev.param != at)
		return 0;
	if (slot)
		*slot = ev.control >> 24;
	return ev_cc(&ev);
}

/* A control transfer into/out of xc.buf: bytes moved or -1. */
static int control(u8 type, u8 req, u16 value, u16 index, u16 len)
{
	bool in = type & 0x80;
	struct trb ev;
	u64 setup = type | (u64)req << 8 | (u64)value << 16 | (u64)index << 32 |
		    (u64)len << 48;
	int got = len;

	ring_put(&xc.ep0, setup, 8,
		 TRB_SETUP << 10 | IDT | (len ? (in ? 3u : 2u) << 16 : 0));
	if (len)
		ring_put(&xc.ep0, (u64)xc.buf, len,
			 TRB_DATA << 10 | ISP | (in ? DIR_IN : 0));
	ring_put(&xc.ep0, 0, 0, TRB_STATUS << 10 | IOC | (in ? 0 : DIR_IN));
	wr(xc.db + 4 * xc.slot, 1);
	for (;;) {
		if (!event_wait(EV_TRANSFER, &ev))
			return -1;
		if (ev_cc(&ev) == CC_SHORT) {
			got = len - (int)(ev.status & 0xffffff);
			continue;	/* the Status stage's event follows */
		}
		return ev_cc(&ev) == CC_SUCCESS ? got : -1;
	}
}

static void ctx_clear(u32 *c, u32 n) { memset(c, 0, n * 32); }

/* Context @i of the input context: 0 control, 1 slot, 2.. endpoints. */
static u32 *ictx(u32 i) { return xc.in + 8 * i; }

static bool find_controller(char *why, size_t len)
{
	const struct pci_fn *l;
	u32 n = pci_scan(&l), i;
	bool is64;

	for (i = 0; i < n; i++)
		if (l[i].class == 0x0c && l[i].subclass == 0x03 && l[i].prog_if == 0x30)
			break;
	if (i == n)
		return false;
	xc.base = pci_bar_addr(&l[i], 0, &is64);
	if (!xc.base || map_mmio(xc.base, 0x10000)) {
		fmt(why, len, "BAR 0 unusable (%lx)", xc.base);
		xc.base = 0;
		return true;
	}
	pci_write16(&l[i], PCI_COMMAND,
		    pci_read16(&l[i], PCI_COMMAND) | PCI_CMD_MEM | PCI_CMD_MASTER);
	return true;
}

/* Reset, check the reset state, set up the rings and run. */
static int hc_setup(char *why, size_t len)
{
	u32 *erst;

	xc.op = xc.base + (rd(xc.base) & 0xff);
	xc.rt = xc.base + (rd(xc.base + 0x18) & ~0x1fu);
	xc.db = xc.base + (rd(xc.base + 0x14) & ~0x3u);
	xc.slots = rd(xc.base + 4) & 0xff;
	xc.ports = rd(xc.base + 4) >> 24;
	if ((rd(xc.base) >> 16) < 0x0100 || !xc.slots || !xc.ports)
		return fmt(why, len, "capabilities %x %x", rd(xc.base), rd(xc.base + 4)), -1;
	wr(xc.op + USBCMD, 0);
	if (!wait_reg(xc.op + USBSTS, STS_HCH, STS_HCH))
		return fmt(why, len, "does not halt"), -1;
	wr(xc.op + USBCMD, CMD_HCRST);
	if (!wait_reg(xc.op + USBCMD, CMD_HCRST, 0) || !wait_reg(xc.op + USBSTS, STS_CNR, 0))
		return fmt(why, len, "reset does not complete"), -1;
	if (rd(xc.op + CRCR) || rd(xc.op + DCBAAP) || rd(xc.op + CONFIG) ||
	    !(rd(xc.op + USBSTS) & STS_HCH))
		return fmt(why, len, "registers after reset: sts %x config %x",
			   rd(xc.op + USBSTS), rd(xc.op + CONFIG)), -1;
	xc.dcbaa = vio_alloc((xc.slots + 1) * 8, 64);
	xc.in = vio_alloc(33 * 32, 64);
	xc.out = vio_alloc(32 * 32, 64);
	xc.buf = vio_alloc(512, 64);
	xc.rep = vio_alloc(64, 64);
	xc.ev = vio_alloc(RING_TRBS * sizeof(struct trb), 64);
	erst = vio_alloc(16, 64);
	if (!xc.dcbaa || !xc.in || !xc.out || !xc.buf || !xc.rep || !xc.ev || !erst ||
	    !ring_new(&xc.cmd) || !ring_new(&xc.ep0) || !ring_new(&xc.ep1))
		return fmt(why, len, "out of memory"), -1;
	wr(xc.op + CONFIG, xc.slots);
	wr64(xc.op + DCBAAP, (u64)xc.dcbaa);
	wr64(xc.op + CRCR, (u64)xc.cmd.t | 1);
	erst[0] = (u32)(u64)xc.ev;
	erst[1] = (u32)((u64)xc.ev >> 32);
	erst[2] = RING_TRBS;
	xc.ev_idx = 0;
	xc.ev_cycle = 1;
	wr(xc.rt + ERSTSZ, 1);
	wr64(xc.rt + ERDP, (u64)xc.ev);
	wr64(xc.rt + ERSTBA, (u64)erst);
	wr(xc.rt + IMAN, 0);	/* polled */
	wr(xc.op + USBCMD, CMD_RS);
	if (!wait_reg(xc.op + USBSTS, STS_HCH, 0))
		return fmt(why, len, "does not run"), -1;
	return 0;
}

/* The first connected USB 2 port (Supported Protocol capabilities), reset. */
static int port_setup(char *why, size_t len)
{
	u32 x = (rd(xc.base + 0x10) >> 16) * 4, p, first = 0, count = 0, sc;

	while (x) {
		u32 d0 = rd(xc.base + x);

		if ((d0 & 0xff) == 2 && d0 >> 24 == 2) {
			first = rd(xc.base + x + 8) & 0xff;
			count = (rd(xc.base + x + 8) >> 8) & 0xff;
		}
		x = (d0 >> 8) & 0xff ? x + ((d0 >> 8) & 0xff) * 4 : 0;
	}
	if (!first)
		return fmt(why, len, "no USB 2 protocol capability"), -1;
	for (p = first; p < first + count; p++)
		if (rd(xc.op + PORTSC(p)) & PS_CCS)
			break;
	if (p == first + count)
		return fmt(why, len, "no device on the USB 2 ports"), -1;
	wr(xc.op + PORTSC(p), PS_PP | PS_PR);
	if (!wait_reg(xc.op + PORTSC(p), PS_PRC | PS_PED, PS_PRC | PS_PED))
		return fmt(why, len, "port %u reset: %x", p, rd(xc.op + PORTSC(p))), -1;
	sc = rd(xc.op + PORTSC(p));
	wr(xc.op + PORTSC(p), PS_PP | PS_PRC | PS_CSC);
	xc.port = p;
	xc.speed = (sc >> 10) & 0xf;
	return 0;
}

static int address(char *why, size_t len)
{
	u32 cc = command(0, TRB_ENABLE_SLOT << 10, &xc.slot);

	if (cc != CC_SUCCESS || !xc.slot || xc.slot > xc.slots)
		return fmt(why, len, "Enable Slot: cc %u slot %u", cc, xc.slot), -1;
	xc.dcbaa[xc.slot] = (u64)xc.out;
	xc.mps0 = xc.speed == 3 ? 64 : 8;
	ctx_clear(xc.in, 33);
	ictx(0)[1] = 3;
	ictx(1)[0] = 1u << 27 | xc.speed << 20;
	ictx(1)[1] = xc.port << 16;
	ictx(2)[1] = 4u << 3 | 3u << 1 | xc.mps0 << 16;
	ictx(2)[2] = (u32)(u64)xc.ep0.t | 1;
	ictx(2)[3] = (u32)((u64)xc.ep0.t >> 32);
	cc = command((u64)xc.in, TRB_ADDRESS << 10 | xc.slot << 24, NULL);
	if (cc != CC_SUCCESS || xc.out[3] >> 27 != 2)
		return fmt(why, len, "Address Device: cc %u state %u", cc, xc.out[3] >> 27), -1;
	return 0;
}

/* Descriptors, configuration and the interrupt endpoint. */
static int configure(char *why, size_t len)
{
	u32 total, i, rlen = 0, ep = 0, mps = 0, ival = 0, cfgval, cc;
	int n;

	if (control(0x80, 6, 0x100, 0, 8) != 8 || xc.buf[1] != 1)
		return fmt(why, len, "device descriptor (8 bytes)"), -1;
	if (xc.buf[7] != xc.mps0) {
		xc.mps0 = xc.buf[7];
		ctx_clear(xc.in, 33);
		ictx(0)[1] = 2;
		ictx(2)[1] = 4u << 3 | 3u << 1 | xc.mps0 << 16;
		cc = command((u64)xc.in, TRB_EVALUATE << 10 | xc.slot << 24, NULL);
		if (cc != CC_SUCCESS || xc.out[8 + 1] >> 16 != xc.mps0)
			return fmt(why, len, "Evaluate Context: cc %u", cc), -1;
	}
	if (control(0x80, 6, 0x100, 0, 18) != 18 || xc.buf[0] != 18 || !xc.buf[17])
		return fmt(why, len, "device descriptor"), -1;
	if (control(0x80, 6, 0x200, 0, 9) != 9 || xc.buf[1] != 2)
		return fmt(why, len, "configuration descriptor"), -1;
	total = xc.buf[2] | xc.buf[3] << 8;
	cfgval = xc.buf[5];
	if (total < 9 || total > 512 || control(0x80, 6, 0x200, 0, (u16)total) != (int)total)
		return fmt(why, len, "configuration descriptor of %u bytes", total), -1;
	for (i = 0; i + 2 <= total && xc.buf[i] >= 2; i += xc.buf[i]) {
		u8 *d = xc.buf + i;

		if (d[1] == 4 && (d[5] != 3 || d[6] != 0))
			return fmt(why, len, "interface class %u/%u, want HID", d[5], d[6]), -1;
		if (d[1] == 0x21 && d[0] >= 9)
			rlen = d[7] | d[8] << 8;
		if (d[1] == 5 && d[0] >= 7 && (d[2] & 0x80) && (d[3] & 3) == 3) {
			ep = d[2] & 0xf;
			mps = d[4] | (d[5] & 7) << 8;
			ival = d[6];
		}
	}
	if (!rlen || !ep || !mps || !ival)
		return fmt(why, len, "no HID descriptor or interrupt-IN endpoint"), -1;
	if (control(0x00, 9, (u16)cfgval, 0, 0) != 0)
		return fmt(why, len, "SET_CONFIGURATION"), -1;
	if (control(0x21, 0x0a, 0, 0, 0) != 0)
		return fmt(why, len, "SET_IDLE"), -1;
	n = control(0x81, 6, 0x2200, 0, (u16)rlen);
	/* Usage Page (Generic Desktop), Usage (Mouse): an absolute pointer */
	if (n != (int)rlen || xc.buf[0] != 0x05 || xc.buf[1] != 0x01 || xc.buf[3] != 0x02)
		return fmt(why, len, "report descriptor (%d of %u bytes)", n, rlen), -1;
	xc.dci = ep * 2 + 1;
	ctx_clear(xc.in, 33);
	ictx(0)[1] = 1u | 1u << xc.dci;
	ictx(1)[0] = xc.dci << 27 | xc.speed << 20;
	ictx(1)[1] = xc.port << 16;
	/* full/low speed: bInterval in frames, the context wants 2^n x 125 us */
	for (i = 3; (1u << (i - 3)) < ival && i < 10; i++)
		;
	ictx(xc.dci + 1)[0] = i << 16;
	ictx(xc.dci + 1)[1] = 7u << 3 | 3u << 1 | mps << 16;
	ictx(xc.dci + 1)[2] = (u32)(u64)xc.ep1.t | 1;
	ictx(xc.dci + 1)[3] = (u32)((u64)xc.ep1.t >> 32);
	ictx(xc.dci + 1)[4] = mps;
	cc = command((u64)xc.in, TRB_CONFIGURE << 10 | xc.slot << 24, NULL);
	if (cc != CC_SUCCESS || xc.out[3] >> 27 != 3 || (xc.out[8 * xc.dci] & 7) != 1)
		return fmt(why, len, "Configure Endpoint: cc %u", cc), -1;
	return 0;
}

int xhci_tablet_open(char *why, size_t len)
{
	memset(&xc, 0, sizeof(xc));
	why[0] = 0;
	if (!find_controller(why, len))
		return 1;
	if (!xc.base || hc_setup(why, len) || port_setup(why, len) || address(why, len) ||
	    configure(why, len))
		return -1;
	xc.open = true;
	return 0;
}

static void td_queue(void)
{
	if (xc.td_queued)
		return;
	memset(xc.rep, 0, 8);
	ring_put(&xc.ep1, (u64)xc.rep, 8, TRB_NORMAL << 10 | IOC | ISP);
	wr(xc.db + 4 * xc.slot, xc.dci);
	xc.td_queued = true;
}

int xhci_tablet_poll(struct tablet_report *r)
{
	struct trb ev;

	if (!xc.open)
		return 0;
	td_queue();
	while (event_get(&ev)) {
		u32 n;

		if (ev_type(&ev) != EV_TRANSFER || ((ev.control >> 16) & 0x1f) != xc.dci)
			continue;
		xc.td_queued = false;
		if (ev_cc(&ev) != CC_SUCCESS && ev_cc(&ev) != CC_SHORT)
			return -1;
		n = 8 - (ev.status & 0xffffff);
		if (n < 5)
			return -1;
		r->buttons = xc.rep[0];
		r->x = xc.rep[1] | xc.rep[2] << 8;
		r->y = xc.rep[3] | xc.rep[4] << 8;
		r->dz = n > 5 ? (int)(signed char)xc.rep[5] : 0;
		r->len = n;
		return 1;
	}
	return 0;
}

int xhci_selftest(char *why, size_t len)
{
	struct tablet_report r;
	u64 end;
	int ret = xhci_tablet_open(why, len);

	if (ret)
		return ret;
	/* One interrupt transfer: the report of the pointer as it is after configuration. */
	end = now_us() + TIMEOUT_US;
	while ((ret = xhci_tablet_poll(&r)) == 0 && now_us() < end)
		;
	if (ret != 1)
		return fmt(why, len, "no report on the interrupt endpoint"), -1;
	if (r.len != 6 || r.x > 32767 || r.y > 32767 || r.buttons)
		return fmt(why, len, "report: %u bytes, %u %u btn %u", r.len, r.x, r.y,
			   r.buttons), -1;
	return 0;
}
