// SPDX-License-Identifier: BSD-2-Clause
/*
 * xHCI: a USB host controller (eXtensible Host Controller Interface 1.2; the section numbers in
 * these files are that spec's) with four USB 2 and four USB 3 root ports and the devices of
 * usb.h on them.
 *
 *	-s SLOT,xhci,tablet		bhyve's shape: a USB tablet on the first USB 2 port
 *	-s SLOT,xhci,slot.N.device=tablet	(also bhyve's) a device on USB 2 port N (1-4)
 *
 * What the guest sees: PCI class 0C/03/30 (1b36:000d, QEMU's xHCI id, so guests apply no
 * quirks meant for real chips), 64-bit BAR 0 with the capability, operational, runtime and
 * doorbell registers, MSI-X (BAR 4), MSI and INTx, 32 device slots, one interrupter with an
 * event ring of up to 16 segments, 32-byte contexts, no scratchpad, no streams, two Supported
 * Protocol capabilities (USB 2.0 ports 1-4, USB 3.0 ports 5-8).  Commands (xhci_cmd.c): Enable
 * and Disable Slot, Address Device, Configure Endpoint, Evaluate Context, Reset and Stop
 * Endpoint, Set TR Dequeue Pointer, Reset Device, No-Op; the others complete with TRB Error.
 * Transfers (xhci_xfer.c): control and interrupt endpoints; a device's data goes straight
 * from the TD's buffers to it, so every transfer completes in the doorbell write (or, for an
 * IN endpoint that had nothing, when the device wakes it up).  Not emulated: hubs, streams,
 * isochronous transfers, bandwidth and latency commands, link power management, the save and
 * restore state operations (accepted, no effect), interrupt moderation (events interrupt at
 * once, which the spec allows for an IMOD the controller does not honour).
 *
 * The guest is hostile: every pointer it gives (DCBAA, contexts, rings, segments, buffers) is
 * checked against guest RAM before use, every TRB's type and length before it acts; a bad one
 * completes with the xHCI error the spec names (TRB Error, Context State Error, Parameter
 * Error ...), never a fault of khyve's.  A ring that loops without producing anything stops
 * after XHCI_LINKS_MAX Link TRBs, one that loops with commands after XHCI_CMDS_PER_RING.
 *
 * Threads: registers are accessed from vCPU threads; device input (the tablet's pointer
 * events) arrives on the console backend's thread.  Both run under xhci->lock, and the work
 * they start (commands, transfers, events, interrupts) runs there too.
 *
 * Snapshots: transfers never stay in flight (an IN endpoint waiting for data holds no state
 * but its ring position), so pause only stops new ones from running: input that arrives while
 * paused is queued in the device and delivered on resume.  The state is the registers, the
 * command ring position and cycle, the interrupter (event ring producer position, cycle and
 * the segment it writes, events waiting for room), the ports, every slot and endpoint (state,
 * ring dequeue pointer and cycle) and each device's own state (usb.h); the devices attached
 * are invariants a restore must match.  Rings and contexts are in guest memory.
 */
#include "dev/usb/xhci.h"

#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "dev/pci/pci.h"
#include "evloop.h"
#include "sstream.h"
#include "vm.h"

#define XHCI_STATE_VERSION 1
#define XHCI_BAR 0
#define XHCI_MSIX_BAR 4
#define XHCI_BAR_SIZE 0x4000

/* Register blocks in BAR 0. */
#define CAP_BASE 0x0000
#define OP_BASE 0x0020
#define PORT_BASE (OP_BASE + 0x400)
#define XCAP_BASE 0x0800
#define RT_BASE 0x1000
#define DB_BASE 0x2000

/* Capability registers (5.3). */
#define HCIVERSION 0x0110
#define HCSPARAMS1 (XHCI_SLOTS | XHCI_INTRS << 8 | (uint32_t)XHCI_PORTS << 24)
#define HCSPARAMS2 (4U << 4) /* ERST Max: 2^4 segments */
#define HCCP1_AC64 (1U << 0)
#define HCCP1_NSS (1U << 7)
#define HCCPARAMS1 (HCCP1_AC64 | HCCP1_NSS | (uint32_t)(XCAP_BASE / 4) << 16)

/* Operational registers (5.4). */
#define OP_USBCMD 0x00
#define OP_USBSTS 0x04
#define OP_PAGESIZE 0x08
#define OP_DNCTRL 0x14
#define OP_CRCR 0x18
#define OP_DCBAAP 0x30
#define OP_CONFIG 0x38

#define CMD_RS (1U << 0)
#define CMD_HCRST (1U << 1)
#define CMD_INTE (1U << 2)
#define CMD_HSEE (1U << 3)
#define CMD_LHCRST (1U << 7)
#define CMD_CSS (1U << 8)
#define CMD_CRS (1U << 9)
#define CMD_EWE (1U << 10)
#define CMD_EU3S (1U << 11)
#define CMD_RW (CMD_RS | CMD_INTE | CMD_HSEE | CMD_EWE | CMD_EU3S)

#define STS_HCH (1U << 0)
#define STS_HSE (1U << 2)
#define STS_EINT (1U << 3)
#define STS_PCD (1U << 4)
#define STS_SRE (1U << 10)
#define STS_CNR (1U << 11)
#define STS_HCE (1U << 12)
#define STS_W1C (STS_HSE | STS_EINT | STS_PCD | STS_SRE)

#define CRCR_RCS (1ULL << 0)
#define CRCR_CS (1ULL << 1)
#define CRCR_CA (1ULL << 2)
#define CRCR_CRR (1ULL << 3)

/* MaxSlotsEn, U3E, CIE; a MaxSlotsEn above MaxSlots reads back, slots past 32 stay off. */
#define CONFIG_RW 0x3ffU

/* Port registers (5.4.8). */
#define PORTSC 0x0
#define PORTPMSC 0x4
#define PORTLI 0x8
#define PORTHLPMC 0xC

#define PS_CCS (1U << 0)
#define PS_PED (1U << 1)
#define PS_OCA (1U << 3)
#define PS_PR (1U << 4)
#define PS_PLS_SHIFT 5
#define PS_PLS (0xfU << PS_PLS_SHIFT)
#define PS_PP (1U << 9)
#define PS_SPEED_SHIFT 10
#define PS_SPEED (0xfU << PS_SPEED_SHIFT)
#define PS_PIC (3U << 14)
#define PS_LWS (1U << 16)
#define PS_CSC (1U << 17)
#define PS_PEC (1U << 18)
#define PS_WRC (1U << 19)
#define PS_OCC (1U << 20)
#define PS_PRC (1U << 21)
#define PS_PLC (1U << 22)
#define PS_CEC (1U << 23)
#define PS_WAKE (7U << 25) /* WCE, WDE, WOE */
#define PS_WPR (1U << 31)
#define PS_CHANGE (PS_CSC | PS_PEC | PS_WRC | PS_OCC | PS_PRC | PS_PLC | PS_CEC)
#define PS_STORED (PS_CCS | PS_PED | PS_PLS | PS_PP | PS_SPEED | PS_PIC | PS_CHANGE | PS_WAKE)

#define PLS_U0 0
#define PLS_U3 3
#define PLS_DISABLED 4
#define PLS_RXDETECT 5
#define PLS_POLLING 7
#define PLS_RESUME 15

/* Runtime registers (5.5). */
#define RT_MFINDEX 0x00
#define RT_IR0 0x20
#define IR_IMAN 0x00
#define IR_IMOD 0x04
#define IR_ERSTSZ 0x08
#define IR_ERSTBA 0x10
#define IR_ERDP 0x18

#define IMAN_IP (1U << 0)
#define IMAN_IE (1U << 1)
#define ERDP_EHB (1ULL << 3)
#define ERDP_MASK (~0xfULL)

/* ---- guest memory ---- */

void *xhci_mem(struct xhci *x, uint64_t gpa, uint64_t len)
{
	return vm_gpa(x->vm, gpa, len);
}

bool xhci_read_trb(struct xhci *x, uint64_t gpa, struct xhci_trb *t)
{
	const uint8_t *p = (gpa & 0xf) ? NULL : xhci_mem(x, gpa, 16);
	uint32_t w[4];

	if (!p)
		return false;
	memcpy(w, p, 16);
	t->param = (uint64_t)le32toh(w[1]) << 32 | le32toh(w[0]);
	t->status = le32toh(w[2]);
	/* The cycle bit is read last: the guest hands a TRB over by writing it last. */
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	t->control = le32toh(w[3]);
	return true;
}

static bool write_trb(struct xhci *x, uint64_t gpa, const struct xhci_trb *t)
{
	uint8_t *p = xhci_mem(x, gpa, 16);
	uint32_t w[3] = { htole32((uint32_t)t->param), htole32((uint32_t)(t->param >> 32)),
			  htole32(t->status) };
	uint32_t c = htole32(t->control);

	if (!p)
		return false;
	memcpy(p, w, 12);
	/* The guest sees the cycle bit flip only once the rest is there. */
	__atomic_thread_fence(__ATOMIC_RELEASE);
	memcpy(p + 12, &c, 4);
	return true;
}

bool xhci_running(const struct xhci *x)
{
	return (x->usbcmd & CMD_RS) && !(x->usbsts & STS_HCH);
}

/* ---- interrupts ---- */

static bool msi_mode(struct xhci *x)
{
	return pci_msix_enabled(x->pd) || pci_msi_enabled(x->pd);
}

/*
 * Interrupt the guest for interrupter 0 if it wants it.  With MSI(-X), IP clears as the
 * message is sent (5.5.2.1); with INTx, the line follows IP until the guest clears it.
 */
static void intr_update(struct xhci *x)
{
	struct xhci_intr *ir = &x->intr[0];
	bool on = (ir->iman & IMAN_IE) && (x->usbcmd & CMD_INTE);

	if (x->paused)
		return;
	if (msi_mode(x)) {
		pci_irq_deassert(x->pd);
		if (on && (ir->iman & IMAN_IP)) {
			ir->iman &= ~IMAN_IP;
			pci_interrupt(x->pd, 0);
		}
		return;
	}
	if (on && (ir->iman & IMAN_IP))
		pci_irq_assert(x->pd);
	else
		pci_irq_deassert(x->pd);
}

/* New events are on the ring: unless the guest's handler is still busy, raise IP. */
static void intr_raise(struct xhci *x)
{
	struct xhci_intr *ir = &x->intr[0];

	if (ir->erdp & ERDP_EHB)
		return;
	ir->erdp |= ERDP_EHB;
	ir->iman |= IMAN_IP;
	x->usbsts |= STS_EINT;
	intr_update(x);
}

/* ---- the event ring (4.9.4) ---- */

/* Load segment @seg of the ERST into the producer; false if the guest's table is bad. */
static bool er_load_segment(struct xhci *x, struct xhci_intr *ir, uint32_t seg)
{
	const uint8_t *e;
	uint64_t base;
	uint32_t size;

	if (!ir->erstsz || ir->erstsz > XHCI_ERST_MAX || seg >= ir->erstsz)
		return false;
	e = xhci_mem(x, ir->erstba + 16ULL * seg, 16);
	if (!e)
		return false;
	memcpy(&base, e, 8);
	memcpy(&size, e + 8, 4);
	base = le64toh(base) & ~0x3fULL;
	size = le32toh(size) & 0xffff;
	if (size < 16 || size > 4096 || !xhci_mem(x, base, 16ULL * size))
		return false;
	ir->seg = seg;
	ir->seg_base = base;
	ir->seg_size = size;
	ir->idx = 0;
	return true;
}

static void er_reset(struct xhci *x, struct xhci_intr *ir)
{
	ir->pcs = true;
	ir->seg = ir->idx = 0;
	ir->seg_base = 0;
	ir->seg_size = 0;
	er_load_segment(x, ir, 0);
}

/* Where the next event goes after the current one, for the full check. */
static bool er_next(struct xhci *x, struct xhci_intr *ir, uint64_t *gpa)
{
	struct xhci_intr n = *ir;

	if (ir->idx + 1 < ir->seg_size) {
		*gpa = ir->seg_base + 16ULL * (ir->idx + 1);
		return true;
	}
	n.npending = 0;
	if (!er_load_segment(x, &n, (ir->seg + 1) % ir->erstsz))
		return false;
	*gpa = n.seg_base;
	return true;
}

/* Write one event if there is room: true when written. */
static bool er_write(struct xhci *x, struct xhci_intr *ir, const struct xhci_trb *ev)
{
	struct xhci_trb t = *ev;
	uint64_t next;

	/* A guest that shrank ERSTSZ under the producer has no ring until it sets one up. */
	if (!ir->seg_size || ir->seg >= ir->erstsz || !er_next(x, ir, &next))
		return false;
	/* Full when the slot after this one is where the guest will read next (4.9.4). */
	if (next == (ir->erdp & ERDP_MASK))
		return false;
	t.control = (t.control & ~TRB_C) | (ir->pcs ? TRB_C : 0);
	if (!write_trb(x, ir->seg_base + 16ULL * ir->idx, &t))
		return false;
	if (++ir->idx == ir->seg_size) {
		uint32_t seg = (ir->seg + 1) % ir->erstsz;

		if (seg == 0)
			ir->pcs = !ir->pcs;
		if (!er_load_segment(x, ir, seg)) {
			/* The guest broke its ERST meanwhile: no ring until it sets one up. */
			ir->seg = ir->idx = ir->seg_size = 0;
			ir->seg_base = 0;
		}
	}
	return true;
}

/* Post what waited for room; true if anything was written. */
static bool er_flush(struct xhci *x, struct xhci_intr *ir)
{
	uint32_t done = 0;

	while (done < ir->npending && er_write(x, ir, &ir->pending[done]))
		done++;
	memmove(ir->pending, ir->pending + done, (ir->npending - done) * sizeof(ir->pending[0]));
	ir->npending -= done;
	return done > 0;
}

void xhci_event(struct xhci *x, const struct xhci_trb *ev)
{
	struct xhci_intr *ir = &x->intr[0];

	er_flush(x, ir);
	if (ir->npending || !er_write(x, ir, ev)) {
		/*
		 * No room: keep it until the guest consumes events.  A guest that never does
		 * loses events beyond XHCI_PENDING_MAX, as it would on hardware (Event Ring
		 * Full), and the controller reports a host controller error.
		 */
		if (ir->npending < XHCI_PENDING_MAX)
			ir->pending[ir->npending++] = *ev;
		else
			x->usbsts |= STS_HCE;
		return;
	}
	intr_raise(x);
}

void xhci_transfer_event(struct xhci *x, unsigned slot, unsigned dci, uint64_t ptr, unsigned cc,
			 uint32_t residual, bool ed)
{
	struct xhci_trb ev = {
		.param = ptr,
		.status = (uint32_t)cc << 24 | (residual & 0xffffff),
		.control = TRB_EV_TRANSFER << 10 | dci << 16 | (uint32_t)slot << 24 |
			   (ed ? TRB_ED : 0),
	};

	xhci_event(x, &ev);
}

/* ---- ports (4.19) ---- */

static bool port_usb3(unsigned n)
{
	return n > XHCI_PORTS_USB2;
}

static void port_event(struct xhci *x, unsigned n)
{
	struct xhci_trb ev = {
		.param = (uint64_t)n << 24,
		.status = (uint32_t)CC_SUCCESS << 24,
		.control = TRB_EV_PORT << 10,
	};

	x->usbsts |= STS_PCD;
	if (xhci_running(x))
		xhci_event(x, &ev);
}

/* Set change bits @bits; a Port Status Change Event when one of them was clear. */
static void port_change(struct xhci *x, unsigned n, uint32_t bits)
{
	struct xhci_port *p = &x->port[n];
	bool fresh = (bits & ~p->portsc) != 0;

	p->portsc |= bits;
	if (fresh)
		port_event(x, n);
}

static void port_set_pls(struct xhci_port *p, unsigned pls)
{
	p->portsc = (p->portsc & ~PS_PLS) | pls << PS_PLS_SHIFT;
}

/* The state after power-on or a controller reset: a device is connected, not yet enabled. */
static void port_power_on(struct xhci *x, unsigned n)
{
	struct xhci_port *p = &x->port[n];

	p->portsc = PS_PP;
	p->pmsc = p->li = p->hlpmc = 0;
	if (!p->dev) {
		port_set_pls(p, PLS_RXDETECT);
		return;
	}
	p->portsc |= PS_CCS | PS_CSC | (uint32_t)p->dev->ops->speed << PS_SPEED_SHIFT;
	if (port_usb3(n)) {
		p->portsc |= PS_PED;
		port_set_pls(p, PLS_U0);
	} else {
		port_set_pls(p, PLS_POLLING);
	}
}

/* A (warm) port reset completes at once: the device is reset and the port enabled. */
static void port_reset(struct xhci *x, unsigned n, bool warm)
{
	struct xhci_port *p = &x->port[n];

	if (p->dev) {
		p->dev->ops->reset(p->dev);
		p->portsc |= PS_PED;
		port_set_pls(p, PLS_U0);
	}
	port_change(x, n, PS_PRC | (warm ? PS_WRC : 0));
}

static void port_write(struct xhci *x, unsigned n, unsigned reg, uint32_t v)
{
	struct xhci_port *p = &x->port[n];
	unsigned pls = (v & PS_PLS) >> PS_PLS_SHIFT;

	switch (reg) {
	case PORTSC:
		p->portsc &= ~(v & PS_CHANGE);
		p->portsc = (p->portsc & ~(PS_PIC | PS_WAKE)) | (v & (PS_PIC | PS_WAKE));
		if ((v & PS_PED) && !port_usb3(n) && (p->portsc & PS_PED)) {
			/* Software disables a USB 2 port by writing 1 (4.19.1.1.5). */
			p->portsc &= ~PS_PED;
			port_set_pls(p, PLS_DISABLED);
		}
		if ((v & PS_WPR) && port_usb3(n)) {
			port_reset(x, n, true);
		} else if (v & PS_PR) {
			port_reset(x, n, false);
		} else if ((v & PS_LWS) && (p->portsc & PS_PED)) {
			unsigned old = (p->portsc & PS_PLS) >> PS_PLS_SHIFT;

			if (pls == PLS_U3) {
				port_set_pls(p, PLS_U3);
			} else if ((pls == PLS_U0 || pls == PLS_RESUME) && old == PLS_U3) {
				port_set_pls(p, PLS_U0);
				port_change(x, n, PS_PLC);
			}
		}
		break;
	case PORTPMSC:
		p->pmsc = v;
		break;
	case PORTHLPMC:
		p->hlpmc = v;
		break;
	}
}

static uint32_t port_read(struct xhci *x, unsigned n, unsigned reg)
{
	struct xhci_port *p = &x->port[n];

	switch (reg) {
	case PORTSC:
		return p->portsc;
	case PORTPMSC:
		return p->pmsc;
	case PORTLI:
		return p->li;
	case PORTHLPMC:
		return p->hlpmc;
	}
	return 0;
}

/* ---- controller state ---- */

static void xhci_reset(struct xhci *x)
{
	x->usbcmd = 0;
	x->usbsts = STS_HCH;
	x->dnctrl = 0;
	x->config = 0;
	x->dcbaap = 0;
	x->crdeq = 0;
	x->ccs = false;
	x->crr = false;
	for (unsigned i = 0; i < XHCI_INTRS; i++) {
		struct xhci_intr *ir = &x->intr[i];

		memset(ir, 0, sizeof(*ir));
		ir->imod = 4000; /* 1 ms, the reset value */
	}
	xhci_slots_reset(x);
	for (unsigned n = 1; n <= XHCI_PORTS; n++)
		port_power_on(x, n);
	intr_update(x);
}

static void usbcmd_write(struct xhci *x, uint32_t v)
{
	bool was_running = x->usbcmd & CMD_RS;

	if (v & CMD_HCRST) {
		xhci_reset(x);
		return;
	}
	x->usbcmd = v & CMD_RW;
	if ((v & CMD_RS) && !was_running) {
		x->usbsts &= ~STS_HCH;
		/* Changes that happened while halted are reported now, so none is missed. */
		for (unsigned n = 1; n <= XHCI_PORTS; n++)
			if (x->port[n].portsc & PS_CHANGE)
				port_event(x, n);
	} else if (!(v & CMD_RS) && was_running) {
		x->usbsts |= STS_HCH;
		x->crr = false;
	}
	/* Save/restore state (CSS/CRS) keep nothing: the state stays in the controller. */
	intr_update(x);
}

static void crcr_write(struct xhci *x, uint64_t v, uint64_t mask)
{
	if (x->crr) {
		/* Commands run synchronously, so stop and abort both stop at once (4.6.1.1). */
		if (v & mask & (CRCR_CS | CRCR_CA))
			xhci_cmd_stop(x, v & CRCR_CA ? CC_CMD_ABORTED : CC_CMD_RING_STOPPED);
		return;
	}
	v = (x->crdeq & ~mask) | (v & mask);
	x->crdeq = v & ~0x3fULL;
	if (mask & 1)
		x->ccs = v & CRCR_RCS;
}

static void op_write(struct xhci *x, unsigned off, uint32_t v)
{
	switch (off) {
	case OP_USBCMD:
		usbcmd_write(x, v);
		break;
	case OP_USBSTS:
		x->usbsts &= ~(v & STS_W1C);
		break;
	case OP_DNCTRL:
		x->dnctrl = v & 0xffff;
		break;
	case OP_CRCR:
		crcr_write(x, v, 0xffffffffULL);
		break;
	case OP_CRCR + 4:
		crcr_write(x, (uint64_t)v << 32, 0xffffffff00000000ULL);
		break;
	case OP_DCBAAP:
		x->dcbaap = (x->dcbaap & ~0xffffffffULL) | (v & ~0x3fU);
		break;
	case OP_DCBAAP + 4:
		x->dcbaap = (x->dcbaap & 0xffffffffULL) | (uint64_t)v << 32;
		break;
	case OP_CONFIG:
		x->config = v & CONFIG_RW;
		break;
	}
}

static uint32_t op_read(struct xhci *x, unsigned off)
{
	switch (off) {
	case OP_USBCMD:
		return x->usbcmd;
	case OP_USBSTS:
		return x->usbsts;
	case OP_PAGESIZE:
		return 1; /* 4 KiB pages */
	case OP_DNCTRL:
		return x->dnctrl;
	case OP_CRCR:
		return x->crr ? (uint32_t)CRCR_CRR : 0; /* the pointer reads as 0 (5.4.5) */
	case OP_DCBAAP:
		return (uint32_t)x->dcbaap;
	case OP_DCBAAP + 4:
		return (uint32_t)(x->dcbaap >> 32);
	case OP_CONFIG:
		return x->config;
	}
	return 0;
}

static void erdp_write(struct xhci *x, struct xhci_intr *ir, uint64_t v, uint64_t mask)
{
	uint64_t busy = ir->erdp & ERDP_EHB;

	/* EHB is write-1-to-clear: a pointer update alone leaves the handler busy. */
	ir->erdp = (ir->erdp & ~mask) | (v & mask & ~ERDP_EHB) | busy;
	if (v & mask & ERDP_EHB)
		ir->erdp &= ~ERDP_EHB;
	er_flush(x, ir);
	/* Events the handler has not consumed yet interrupt again (4.17.2). */
	if (!(ir->erdp & ERDP_EHB) && ir->seg_size &&
	    (ir->erdp & ERDP_MASK) != ir->seg_base + 16ULL * ir->idx)
		intr_raise(x);
}

static void ir_write(struct xhci *x, unsigned off, uint32_t v)
{
	struct xhci_intr *ir = &x->intr[0];

	switch (off) {
	case IR_IMAN:
		ir->iman &= ~(v & IMAN_IP);
		ir->iman = (ir->iman & ~IMAN_IE) | (v & IMAN_IE);
		intr_update(x);
		break;
	case IR_IMOD:
		ir->imod = v;
		break;
	case IR_ERSTSZ:
		ir->erstsz = v & 0xffff;
		break;
	case IR_ERSTBA:
		ir->erstba = (ir->erstba & ~0xffffffffULL) | (v & ~0x3fU);
		er_reset(x, ir);
		break;
	case IR_ERSTBA + 4:
		ir->erstba = (ir->erstba & 0xffffffffULL) | (uint64_t)v << 32;
		er_reset(x, ir);
		break;
	case IR_ERDP:
		erdp_write(x, ir, v, 0xffffffffULL);
		break;
	case IR_ERDP + 4:
		erdp_write(x, ir, (uint64_t)v << 32, 0xffffffff00000000ULL);
		break;
	}
}

static uint32_t ir_read(struct xhci *x, unsigned off)
{
	struct xhci_intr *ir = &x->intr[0];

	switch (off) {
	case IR_IMAN:
		return ir->iman;
	case IR_IMOD:
		return ir->imod;
	case IR_ERSTSZ:
		return ir->erstsz;
	case IR_ERSTBA:
		return (uint32_t)ir->erstba;
	case IR_ERSTBA + 4:
		return (uint32_t)(ir->erstba >> 32);
	case IR_ERDP:
		return (uint32_t)ir->erdp;
	case IR_ERDP + 4:
		return (uint32_t)(ir->erdp >> 32);
	}
	return 0;
}

static void doorbell(struct xhci *x, unsigned n, uint32_t v)
{
	unsigned target = v & 0xff;

	if (!xhci_running(x) || x->paused)
		return;
	if (n == 0) {
		if (target == 0)
			xhci_cmd_ring(x);
		return;
	}
	if (n <= XHCI_SLOTS && target >= 1 && target < XHCI_EPS)
		xhci_ep_doorbell(x, n, target);
}

static uint32_t cap_read(unsigned off)
{
	switch (off) {
	case 0x00:
		return (OP_BASE - CAP_BASE) | (uint32_t)HCIVERSION << 16;
	case 0x04:
		return HCSPARAMS1;
	case 0x08:
		return HCSPARAMS2;
	case 0x0C:
		return 0;
	case 0x10:
		return HCCPARAMS1;
	case 0x14:
		return DB_BASE;
	case 0x18:
		return RT_BASE;
	}
	return 0;
}

/* Two Supported Protocol capabilities (7.2): USB 2.0 on ports 1-4, USB 3.0 on 5-8. */
static uint32_t xcap_read(unsigned off)
{
	static const uint32_t caps[8] = {
		0x02000402,
		0x20425355,
		XHCI_PORTS_USB2 << 8 | 1,
		0,
		0x03000002,
		0x20425355,
		(XHCI_PORTS - XHCI_PORTS_USB2) << 8 | (XHCI_PORTS_USB2 + 1),
		0,
	};

	return off / 4 < 8 ? caps[off / 4] : 0;
}

static uint32_t reg_read(struct xhci *x, unsigned off)
{
	if (off < OP_BASE)
		return cap_read(off);
	if (off >= PORT_BASE && off < PORT_BASE + 0x10 * XHCI_PORTS)
		return port_read(x, (off - PORT_BASE) / 0x10 + 1, off & 0xc);
	if (off < PORT_BASE)
		return op_read(x, off - OP_BASE);
	if (off >= XCAP_BASE && off < RT_BASE)
		return xcap_read(off - XCAP_BASE);
	if (off == RT_BASE + RT_MFINDEX)
		return xhci_running(x) ? (uint32_t)(vclock_ns(&x->vm->ev) / 125000) & 0x3fff : 0;
	if (off >= RT_BASE + RT_IR0 && off < RT_BASE + RT_IR0 + 0x20)
		return ir_read(x, off - RT_BASE - RT_IR0);
	return 0; /* doorbells read as 0 */
}

static void reg_write(struct xhci *x, unsigned off, uint32_t v)
{
	if (off >= PORT_BASE && off < PORT_BASE + 0x10 * XHCI_PORTS)
		port_write(x, (off - PORT_BASE) / 0x10 + 1, off & 0xc, v);
	else if (off >= OP_BASE && off < PORT_BASE)
		op_write(x, off - OP_BASE, v);
	else if (off >= RT_BASE + RT_IR0 && off < RT_BASE + RT_IR0 + 0x20)
		ir_write(x, off - RT_BASE - RT_IR0, v);
	else if (off >= DB_BASE && off <= DB_BASE + 4 * XHCI_SLOTS)
		doorbell(x, (off - DB_BASE) / 4, v);
}

/*
 * Registers are dwords; a qword access is two (low first, as the spec orders 64-bit
 * registers), smaller ones read or merge into the dword.
 */
static void xhci_bar_io(struct pci_dev *pd, int bar, uint64_t off, void *data, unsigned size,
			bool is_write)
{
	struct xhci *x = pd->priv;
	unsigned o = (unsigned)off & ~3U, sh = ((unsigned)off & 3) * 8;
	uint64_t v = 0;

	if (bar != XHCI_BAR || off >= XHCI_BAR_SIZE || (size != 8 && (off & 3) + size > 4) ||
	    (size == 8 && (off & 7))) {
		if (!is_write)
			memset(data, 0, size);
		return;
	}
	pthread_mutex_lock(&x->lock);
	if (is_write) {
		memcpy(&v, data, size);
		v = le64toh(v);
		if (size == 8) {
			reg_write(x, o, (uint32_t)v);
			reg_write(x, o + 4, (uint32_t)(v >> 32));
		} else if (size == 4) {
			reg_write(x, o, (uint32_t)v);
		} else {
			uint32_t mask = (size == 1 ? 0xffU : 0xffffU) << sh;

			reg_write(x, o, (reg_read(x, o) & ~mask) | ((uint32_t)v << sh & mask));
		}
	} else {
		if (size == 8)
			v = reg_read(x, o) | (uint64_t)reg_read(x, o + 4) << 32;
		else
			v = reg_read(x, o) >> sh;
		v = htole64(v);
		memcpy(data, &v, size);
	}
	pthread_mutex_unlock(&x->lock);
}

/* A device woke IN endpoint @ep: the ring of the slot it is addressed as gets served. */
static void xhci_wakeup(void *host, struct usb_dev *d, unsigned ep)
{
	struct xhci *x = host;

	if (x->paused || !xhci_running(x))
		return;
	for (unsigned s = 1; s <= XHCI_SLOTS; s++)
		if (x->slot[s].enabled && x->slot[s].port == d->port)
			xhci_ep_kick(x, s, ep * 2 + 1);
}

/* ---- snapshot ---- */

static void trb_io(struct sstream *s, struct xhci_trb *t)
{
	ss_u64(s, &t->param);
	ss_u32(s, &t->status);
	ss_u32(s, &t->control);
}

static void intr_io(struct sstream *s, struct xhci_intr *ir)
{
	ss_u32(s, &ir->iman);
	ss_u32(s, &ir->imod);
	ss_u32(s, &ir->erstsz);
	ss_u64(s, &ir->erstba);
	ss_u64(s, &ir->erdp);
	ss_u32(s, &ir->seg);
	ss_u32(s, &ir->idx);
	ss_u32(s, &ir->seg_size);
	ss_u64(s, &ir->seg_base);
	ss_bool(s, &ir->pcs);
	ss_u32(s, &ir->npending);
	ss_check_max(s, ir->npending, XHCI_PENDING_MAX, "xhci: pending events");
	for (unsigned i = 0; i < ir->npending && !ss_error(s); i++)
		trb_io(s, &ir->pending[i]);
}

static void slot_io(struct sstream *s, struct xhci_slot *sl)
{
	ss_bool(s, &sl->enabled);
	ss_u8(s, &sl->state);
	ss_u8(s, &sl->port);
	ss_u8(s, &sl->addr);
	ss_u64(s, &sl->ctx);
	for (unsigned i = 1; i < XHCI_EPS; i++) {
		struct xhci_ep *ep = &sl->ep[i];

		ss_u8(s, &ep->state);
		ss_u8(s, &ep->type);
		ss_u16(s, &ep->mps);
		ss_u64(s, &ep->deq);
		ss_bool(s, &ep->dcs);
	}
}

/* The controller's state without the devices' (struct xhci minus the buffers). */
static void xhci_state_io(struct sstream *s, struct xhci *x)
{
	ss_expect_u32(s, XHCI_PORTS, "xhci: ports");
	ss_expect_u32(s, XHCI_SLOTS, "xhci: slots");
	ss_expect_u32(s, XHCI_INTRS, "xhci: interrupters");
	ss_u32(s, &x->usbcmd);
	ss_u32(s, &x->usbsts);
	ss_u32(s, &x->dnctrl);
	ss_u32(s, &x->config);
	ss_u64(s, &x->dcbaap);
	ss_u64(s, &x->crdeq);
	ss_bool(s, &x->ccs);
	ss_bool(s, &x->crr);
	for (unsigned i = 0; i < XHCI_INTRS; i++)
		intr_io(s, &x->intr[i]);
	for (unsigned n = 1; n <= XHCI_PORTS; n++) {
		struct xhci_port *p = &x->port[n];

		ss_u32(s, &p->portsc);
		ss_u32(s, &p->pmsc);
		ss_u32(s, &p->li);
		ss_u32(s, &p->hlpmc);
	}
	for (unsigned i = 1; i <= XHCI_SLOTS; i++)
		slot_io(s, &x->slot[i]);
}

static void intr_check(struct sstream *s, const struct xhci_intr *ir)
{
	/* ERSTSZ and ERDP hold what the guest wrote; the producer checks them before use. */
	if (ir->iman & ~(IMAN_IP | IMAN_IE) || ir->erstsz > 0xffff || ir->erstba & 0x3f)
		ss_fail(s, -EINVAL, "xhci: interrupter registers out of range");
	else if (ir->seg_size &&
		 (ir->seg_size < 16 || ir->seg_size > 4096 || ir->seg >= XHCI_ERST_MAX ||
		  ir->idx >= ir->seg_size || ir->seg_base & 0x3f))
		ss_fail(s, -EINVAL, "xhci: event ring position out of range");
	else if (!ir->seg_size && (ir->seg || ir->idx))
		ss_fail(s, -EINVAL, "xhci: event ring position without a segment");
}

static void slot_check(struct sstream *s, unsigned i, const struct xhci_slot *sl)
{
	if (sl->state > SLOT_CONFIGURED || sl->port > XHCI_PORTS || sl->ctx & 0x3f ||
	    (!sl->enabled && (sl->state || sl->port || sl->addr || sl->ctx))) {
		ss_fail(s, -EINVAL, "xhci: slot %u state out of range", i);
		return;
	}
	for (unsigned e = 1; e < XHCI_EPS; e++) {
		const struct xhci_ep *ep = &sl->ep[e];

		if (ep->state > EP_ERROR || ep->type > EPT_INT_IN || ep->deq & 0xf ||
		    (ep->state != EP_DISABLED && (!sl->enabled || !ep->type))) {
			ss_fail(s, -EINVAL, "xhci: slot %u endpoint %u state out of range", i, e);
			return;
		}
	}
}

static void xhci_state_check(struct sstream *s, const struct xhci *x)
{
	if (x->usbcmd & ~CMD_RW || x->usbsts & ~(STS_HCH | STS_W1C | STS_HCE) ||
	    x->config & ~CONFIG_RW || x->dcbaap & 0x3f || x->crdeq & 0xf || x->dnctrl > 0xffff)
		ss_fail(s, -EINVAL, "xhci: operational registers out of range");
	else if (!(x->usbcmd & CMD_RS) != !!(x->usbsts & STS_HCH))
		ss_fail(s, -EINVAL, "xhci: run/stop and halted disagree");
	for (unsigned i = 0; i < XHCI_INTRS && !ss_error(s); i++)
		intr_check(s, &x->intr[i]);
	for (unsigned n = 1; n <= XHCI_PORTS && !ss_error(s); n++) {
		uint32_t sc = x->port[n].portsc;

		if (sc & ~PS_STORED || !(sc & PS_PP) ||
		    (!x->port[n].dev && (sc & (PS_CCS | PS_PED))))
			ss_fail(s, -EINVAL, "xhci: port %u status %#x out of range", n, sc);
	}
	for (unsigned i = 1; i <= XHCI_SLOTS && !ss_error(s); i++)
		slot_check(s, i, &x->slot[i]);
}

static int xhci_save(struct pci_dev *pd, struct sstream *s)
{
	struct xhci *x = pd->priv;

	pthread_mutex_lock(&x->lock);
	xhci_state_io(s, x);
	for (unsigned n = 1; n <= XHCI_PORTS && !ss_error(s); n++) {
		struct usb_dev *d = x->port[n].dev;
		uint32_t version = d ? d->ops->version : 0;

		bool present = d != NULL;

		ss_bool(s, &present);
		if (!d)
			continue;
		ss_u32(s, &version);
		d->ops->save(d, s);
	}
	pthread_mutex_unlock(&x->lock);
	return ss_error(s);
}

static int xhci_load(struct pci_dev *pd, struct sstream *s, unsigned version)
{
	struct xhci *x = pd->priv, *st;
	void *dev_state[XHCI_PORTS + 1] = { NULL };
	int ret;

	if (version != XHCI_STATE_VERSION)
		return ss_fail(s, -EINVAL, "xhci: state version %u is not supported (%u)", version,
			       XHCI_STATE_VERSION);
	st = calloc(1, sizeof(*st));
	if (!st)
		return ss_fail(s, -ENOMEM, "out of memory");
	for (unsigned n = 1; n <= XHCI_PORTS; n++)
		st->port[n].dev = x->port[n].dev;
	xhci_state_io(s, st);
	if (!ss_error(s))
		xhci_state_check(s, st);
	pthread_mutex_lock(&x->lock);
	for (unsigned n = 1; n <= XHCI_PORTS && !ss_error(s); n++) {
		struct usb_dev *d = x->port[n].dev;
		bool present = false;
		uint32_t dv = 0;

		ss_bool(s, &present);
		if (!ss_error(s) && present != (d != NULL)) {
			ss_fail(s, -EINVAL, "xhci: port %u: the snapshot has %s device, this VM %s",
				n, present ? "a" : "no", d ? d->ops->name : "none");
			break;
		}
		if (!d)
			continue;
		ss_u32(s, &dv);
		if (!ss_error(s) && (!dv || dv > d->ops->version))
			ss_fail(s, -EINVAL, "xhci: port %u: %s state version %u is not supported",
				n, d->ops->name, dv);
		if (!ss_error(s))
			d->ops->load(d, s, dv, &dev_state[n]);
	}
	ret = ss_finish(s);
	if (!ret) {
		x->usbcmd = st->usbcmd;
		x->usbsts = st->usbsts;
		x->dnctrl = st->dnctrl;
		x->config = st->config;
		x->dcbaap = st->dcbaap;
		x->crdeq = st->crdeq;
		x->ccs = st->ccs;
		x->crr = st->crr;
		memcpy(x->intr, st->intr, sizeof(x->intr));
		memcpy(x->port, st->port, sizeof(x->port));
		memcpy(x->slot, st->slot, sizeof(x->slot));
		for (unsigned n = 1; n <= XHCI_PORTS; n++)
			if (x->port[n].dev) {
				x->port[n].dev->ops->commit(x->port[n].dev, dev_state[n]);
				dev_state[n] = NULL;
			}
		/* Interrupts and waiting transfers follow at resume, after the irqchip. */
		x->paused = true;
	}
	pthread_mutex_unlock(&x->lock);
	for (unsigned n = 1; n <= XHCI_PORTS; n++)
		free(dev_state[n]);
	free(st);
	return ret;
}

static int xhci_pause(struct pci_dev *pd)
{
	struct xhci *x = pd->priv;

	pthread_mutex_lock(&x->lock);
	x->paused = true;
	pthread_mutex_unlock(&x->lock);
	return 0;
}

/* Input that arrived while paused (or before the checkpoint, on the source) is served now. */
static int xhci_resume(struct pci_dev *pd)
{
	struct xhci *x = pd->priv;

	pthread_mutex_lock(&x->lock);
	x->paused = false;
	if (xhci_running(x)) {
		er_flush(x, &x->intr[0]);
		for (unsigned s = 1; s <= XHCI_SLOTS; s++)
			for (unsigned e = 3; x->slot[s].enabled && e < XHCI_EPS; e += 2)
				if (x->slot[s].ep[e].state == EP_RUNNING)
					xhci_ep_kick(x, s, e);
	}
	intr_update(x);
	pthread_mutex_unlock(&x->lock);
	return 0;
}

/* ---- lifecycle ---- */

static void xhci_free(struct xhci *x)
{
	for (unsigned n = 1; n <= XHCI_PORTS; n++)
		if (x->port[n].dev)
			x->port[n].dev->ops->destroy(x->port[n].dev);
	pthread_mutex_destroy(&x->lock);
	free(x);
}

static int attach(struct xhci *x, unsigned n, const char *name, char *err, size_t errlen)
{
	struct usb_dev *d;

	if (x->port[n].dev) {
		snprintf(err, errlen, "xhci: USB port %u has a device already", n);
		return -EINVAL;
	}
	d = usb_dev_create(x->vm, name, &x->lock, err, errlen);
	if (!d)
		return -EINVAL;
	pthread_mutex_lock(&x->lock);
	d->host = x;
	d->wakeup = xhci_wakeup;
	d->port = n;
	x->port[n].dev = d;
	pthread_mutex_unlock(&x->lock);
	return 0;
}

/* bhyve's "tablet" flag and slot.N.device=NAME (N = 1..4, the USB 2 ports). */
static int xhci_options(struct xhci *x, char *err, size_t errlen)
{
	const char *v;
	char key[32];
	int ret;

	for (unsigned n = 1; n <= XHCI_PORTS_USB2; n++) {
		snprintf(key, sizeof(key), "slot.%u.device", n);
		if ((v = pci_dev_opt(x->pd, key)) && (ret = attach(x, n, v, err, errlen)))
			return ret;
	}
	v = pci_dev_opt(x->pd, "tablet");
	if (v && strcmp(v, "true")) {
		snprintf(err, errlen, "xhci: tablet takes no value (-s SLOT,xhci,tablet)");
		return -EINVAL;
	}
	for (unsigned n = 1; v && n <= XHCI_PORTS_USB2; n++)
		if (!x->port[n].dev)
			return attach(x, n, "tablet", err, errlen);
	if (v) {
		snprintf(err, errlen, "xhci: no free USB 2 port for the tablet");
		return -EINVAL;
	}
	return 0;
}

static int xhci_init(struct vm *vm, struct pci_dev *pd, const char *opts, char *err, size_t errlen)
{
	struct xhci *x = calloc(1, sizeof(*x));
	int ret;

	if (!x) {
		snprintf(err, errlen, "xhci: out of memory");
		return -ENOMEM;
	}
	x->pd = pd;
	x->vm = vm;
	pthread_mutex_init(&x->lock, NULL);
	pd->priv = x;
	pci_set_ids(pd, 0x1b36, 0x000d, 0x0C, 0x03, 0x30, 0x01);
	pci_set_cfg16(pd, PCIR_SUBVEND, 0x1b36);
	pci_set_cfg16(pd, PCIR_SUBDEV, 0x000d);
	ret = pci_bar_declare(pd, XHCI_BAR, PCI_BAR_MEM64, XHCI_BAR_SIZE, false);
	if (!ret)
		ret = pci_msix_init(pd, XHCI_INTRS, XHCI_MSIX_BAR);
	if (!ret)
		ret = pci_msi_init(pd, XHCI_INTRS);
	if (!ret)
		ret = pci_intx_init(pd, 1);
	if (ret) {
		snprintf(err, errlen, "xhci: PCI setup failed (%d)", ret);
		goto fail;
	}
	ret = xhci_options(x, err, errlen);
	if (ret)
		goto fail;
	pthread_mutex_lock(&x->lock);
	xhci_reset(x);
	pthread_mutex_unlock(&x->lock);
	return 0;
fail:
	pd->priv = NULL;
	xhci_free(x);
	return ret;
}

static void xhci_destroy(struct pci_dev *pd)
{
	if (pd->priv)
		xhci_free(pd->priv);
	pd->priv = NULL;
}

static const char *const xhci_option_names[] = { "tablet", "slot.#.device", NULL };

const struct pci_emul pci_emul_xhci = {
	.name = "xhci",
	.options = { { .names = xhci_option_names } },
	.version = XHCI_STATE_VERSION,
	.init = xhci_init,
	.bar_io = xhci_bar_io,
	.save = xhci_save,
	.load = xhci_load,
	.pause = xhci_pause,
	.resume = xhci_resume,
	.destroy = xhci_destroy,
};
