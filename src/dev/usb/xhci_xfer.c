// SPDX-License-Identifier: BSD-2-Clause
/*
 * xHCI transfer rings (4.9.2, 4.11): control TDs (Setup, Data + Normal/Event Data, Status)
 * and interrupt/bulk TDs (Normal and Event Data TRBs chained), with Transfer Events for IOC,
 * short packets (ISP) and Event Data TRBs (4.10.1, 4.11.5.2).
 *
 * A TD is first collected whole (up to XHCI_TD_MAX TRBs, following at most XHCI_LINKS_MAX
 * Link TRBs); one the guest has not finished writing waits for the next doorbell.  Its TRBs
 * are checked (types in their places, lengths <= 64 KiB, buffers in RAM, at most
 * XHCI_XFER_MAX bytes in all) before the device sees anything.  A bad one completes with TRB
 * Error on the TRB at fault and halts the endpoint there, as a STALL from the device does;
 * the guest recovers with Reset Endpoint and Set TR Dequeue Pointer.  An IN endpoint whose
 * device has nothing (NAK) keeps its TD and is served again when the device wakes it.
 */
#include <endian.h>
#include <string.h>

#include "dev/usb/xhci.h"

struct td {
	unsigned n;
	struct {
		uint64_t at; /* guest address of the TRB */
		struct xhci_trb t;
	} trb[XHCI_TD_MAX];
	uint64_t next; /* ring position after the TD */
	bool next_cs;
};

enum td_result { TD_DONE, TD_WAIT, TD_HALT };

static bool td_ends(bool control, const struct td *td)
{
	const struct xhci_trb *t = &td->trb[td->n - 1].t;

	if (control && TRB_TYPE(td->trb[0].t.control) == TRB_SETUP)
		return TRB_TYPE(t->control) == TRB_STATUS;
	return !(t->control & TRB_CH);
}

/* 1: a whole TD in @td; 0: none yet; -1: broken ring at *@bad. */
static int td_collect(struct xhci *x, const struct xhci_ep *ep, struct td *td, uint64_t *bad)
{
	bool control = ep->type == EPT_CONTROL, cs = ep->dcs;
	uint64_t at = ep->deq;
	unsigned links = 0;
	struct xhci_trb t;

	td->n = 0;
	for (;;) {
		if (!xhci_read_trb(x, at, &t)) {
			*bad = at;
			return -1;
		}
		if (!(t.control & TRB_C) != !cs)
			return 0;
		if (TRB_TYPE(t.control) == TRB_LINK) {
			if (++links > XHCI_LINKS_MAX) {
				*bad = at;
				return -1;
			}
			if (t.control & TRB_TC)
				cs = !cs;
			at = t.param & ~0xfULL;
			continue;
		}
		if (td->n == XHCI_TD_MAX) {
			*bad = at;
			return -1;
		}
		td->trb[td->n].at = at;
		td->trb[td->n].t = t;
		td->n++;
		at += 16;
		if (td_ends(control, td)) {
			td->next = at;
			td->next_cs = cs;
			return 1;
		}
	}
}

static void ep_halt(struct xhci *x, unsigned slot, unsigned dci, uint64_t at, unsigned cc)
{
	struct xhci_ep *ep = &x->slot[slot].ep[dci];

	ep->state = EP_HALTED;
	ep->deq = at & ~0xfULL;
	xhci_ep_ctx_update(x, slot, dci);
	xhci_transfer_event(x, slot, dci, at, cc, 0, false);
}

/*
 * The data TRBs @first..@last of @td: check them and add up their lengths.  Returns the TD
 * index of a bad TRB, or -1 with *@total set.  @in: data to the guest (IDT not allowed).
 */
static int data_check(struct xhci *x, const struct td *td, unsigned first, unsigned last, bool in,
		      uint32_t *total)
{
	bool setup = TRB_TYPE(td->trb[0].t.control) == TRB_SETUP;
	uint64_t sum = 0;

	for (unsigned i = first; i <= last; i++) {
		const struct xhci_trb *t = &td->trb[i].t;
		unsigned type = TRB_TYPE(t->control);
		uint32_t len = TRB_LEN(t->status);

		/* A control data stage starts with a Data TRB; the rest are Normal TRBs. */
		if (type == TRB_EVENT_DATA || (type == TRB_NOOP && !setup))
			continue;
		if (type != (setup && i == first ? TRB_DATA : TRB_NORMAL) || len > 0x10000)
			return (int)i;
		if (t->control & TRB_IDT) {
			if (in || len > 8 || first != last)
				return (int)i;
		} else if (len && !xhci_mem(x, t->param, len)) {
			return (int)i;
		}
		sum += len;
	}
	if (sum > XHCI_XFER_MAX)
		return (int)last;
	*total = (uint32_t)sum;
	return -1;
}

/* Copy between the bounce buffer and the TRBs' buffers (checked by data_check). */
static void data_copy(struct xhci *x, struct td *td, unsigned first, unsigned last, bool to_guest,
		      uint32_t n)
{
	uint32_t off = 0;

	for (unsigned i = first; i <= last && off < n; i++) {
		const struct xhci_trb *t = &td->trb[i].t;
		unsigned type = TRB_TYPE(t->control);
		uint32_t len = TRB_LEN(t->status), l;
		uint8_t *p;

		if (type == TRB_EVENT_DATA || type == TRB_NOOP)
			continue;
		l = len < n - off ? len : n - off;
		if (t->control & TRB_IDT) {
			uint64_t imm = htole64(t->param); /* immediate data, in TRB byte order */

			memcpy(x->buf + off, &imm, l);
		} else if ((p = xhci_mem(x, t->param, l))) {
			if (to_guest)
				memcpy(p, x->buf + off, l);
			else
				memcpy(x->buf + off, p, l);
		}
		off += l;
	}
}

/* Transfer Events for TRBs @first..@last after @n of @total bytes moved (4.10.1.1). */
static void data_events(struct xhci *x, unsigned slot, unsigned dci, const struct td *td,
			unsigned first, unsigned last, uint32_t n, uint32_t total)
{
	uint32_t left = n, edtla = 0;
	bool is_short = false, reported = false;
	int late = -1;

	for (unsigned i = first; i <= last; i++) {
		const struct xhci_trb *t = &td->trb[i].t;
		unsigned type = TRB_TYPE(t->control);
		uint32_t len = TRB_LEN(t->status), got;

		if (type == TRB_EVENT_DATA) {
			if (t->control & TRB_IOC)
				xhci_transfer_event(x, slot, dci, t->param,
						    is_short ? CC_SHORT_PACKET : CC_SUCCESS, edtla,
						    true);
			edtla = 0;
			continue;
		}
		if (is_short) {
			if (t->control & TRB_IOC)
				late = (int)i;
			continue;
		}
		got = type == TRB_NOOP ? 0 : len < left ? len : left;
		left -= got;
		edtla += got;
		if (got < len) {
			is_short = true;
			if (t->control & (TRB_ISP | TRB_IOC)) {
				xhci_transfer_event(x, slot, dci, td->trb[i].at, CC_SHORT_PACKET,
						    len - got, false);
				reported = true;
			}
		} else if (t->control & TRB_IOC) {
			xhci_transfer_event(x, slot, dci, td->trb[i].at, CC_SUCCESS, 0, false);
		}
	}
	/* A short packet no TRB asked to hear about ends the TD at its last IOC TRB. */
	if (is_short && !reported && late >= 0)
		xhci_transfer_event(x, slot, dci, td->trb[late].at, CC_SHORT_PACKET, total - n,
				    false);
}

static struct usb_setup setup_decode(uint64_t p)
{
	struct usb_setup s = {
		.type = (uint8_t)p,
		.request = (uint8_t)(p >> 8),
		.value = (uint16_t)(p >> 16),
		.index = (uint16_t)(p >> 32),
		.length = (uint16_t)(p >> 48),
	};

	return s;
}

static enum td_result control_td(struct xhci *x, unsigned slot, unsigned dci, struct td *td,
				 struct usb_dev *d)
{
	const struct xhci_trb *st = &td->trb[0].t, *data = td->n > 2 ? &td->trb[1].t : NULL;
	unsigned trt = (st->control >> 16) & 3, last = td->n - 2;
	struct usb_setup s = setup_decode(st->param);
	bool in = s.type & USB_DIR_IN;
	uint32_t total = 0, n;
	int bad = -1, r;

	if (TRB_TYPE(st->control) != TRB_SETUP) {
		/* A TD of its own outside a control transfer: only a No-Op is one. */
		if (TRB_TYPE(st->control) != TRB_NOOP || td->n != 1) {
			ep_halt(x, slot, dci, td->trb[0].at, CC_TRB);
			return TD_HALT;
		}
		if (st->control & TRB_IOC)
			xhci_transfer_event(x, slot, dci, td->trb[0].at, CC_SUCCESS, 0, false);
		return TD_DONE;
	}
	if (!(st->control & TRB_IDT) || TRB_LEN(st->status) != 8 || trt == 1)
		bad = 0;
	else if (data && (trt != (in ? 3 : 2) || !(data->control & TRB_DIR_IN) != !in))
		bad = 1;
	else if (!data && trt)
		bad = 0;
	else if (data)
		bad = data_check(x, td, 1, last, in, &total);
	if (bad >= 0) {
		ep_halt(x, slot, dci, td->trb[bad].at, CC_TRB);
		return TD_HALT;
	}
	n = total < s.length ? total : s.length;
	memset(x->buf, 0, s.length);
	if (!in && n)
		data_copy(x, td, 1, last, false, n);
	/* The controller addressed the device (Address Device); a guest may not readdress it. */
	if ((s.type & (USB_TYPE_MASK | USB_RECIP_MASK)) == 0 && s.request == USB_REQ_SET_ADDRESS)
		r = USB_STALL;
	else
		r = d->ops->control(d, &s, x->buf);
	if (r < 0) {
		ep_halt(x, slot, dci, td->trb[data ? 1 : td->n - 1].at, CC_STALL);
		return TD_HALT;
	}
	if (in) {
		n = (uint32_t)r < n ? (uint32_t)r : n;
		data_copy(x, td, 1, last, true, n);
	}
	if (data)
		data_events(x, slot, dci, td, 1, last, n, total);
	if (td->trb[td->n - 1].t.control & TRB_IOC)
		xhci_transfer_event(x, slot, dci, td->trb[td->n - 1].at, CC_SUCCESS, 0, false);
	return TD_DONE;
}

static enum td_result normal_td(struct xhci *x, unsigned slot, unsigned dci, struct td *td,
				struct usb_dev *d)
{
	bool in = dci & 1;
	uint32_t total = 0, n;
	int bad, r;

	bad = data_check(x, td, 0, td->n - 1, in, &total);
	if (bad >= 0) {
		ep_halt(x, slot, dci, td->trb[bad].at, CC_TRB);
		return TD_HALT;
	}
	if (in) {
		/* An empty request takes nothing from the device: its data is not lost. */
		r = total ? d->ops->data_in(d, dci / 2, x->buf, total) : 0;
	} else {
		data_copy(x, td, 0, td->n - 1, false, total);
		r = d->ops->data_out(d, dci / 2, x->buf, total);
		if (r >= 0)
			r = (int)total;
	}
	if (r == USB_NAK)
		return TD_WAIT;
	if (r < 0) {
		ep_halt(x, slot, dci, td->trb[0].at, CC_STALL);
		return TD_HALT;
	}
	n = (uint32_t)r < total ? (uint32_t)r : total;
	if (in)
		data_copy(x, td, 0, td->n - 1, true, n);
	data_events(x, slot, dci, td, 0, td->n - 1, n, total);
	return TD_DONE;
}

void xhci_ep_kick(struct xhci *x, unsigned slot, unsigned dci)
{
	struct xhci_slot *sl = &x->slot[slot];
	struct xhci_ep *ep = &sl->ep[dci];
	struct usb_dev *d = sl->port ? x->port[sl->port].dev : NULL;
	struct td td;

	if (!sl->enabled || ep->state != EP_RUNNING || !d || x->paused)
		return;
	for (unsigned i = 0; i < XHCI_TDS_PER_KICK; i++) {
		enum td_result res;
		uint64_t bad = 0;
		int got = td_collect(x, ep, &td, &bad);

		if (got == 0)
			return;
		if (got < 0) {
			ep_halt(x, slot, dci, bad, CC_TRB);
			return;
		}
		if (ep->type == EPT_CONTROL)
			res = control_td(x, slot, dci, &td, d);
		else if (ep->type == EPT_ISOCH_IN || ep->type == EPT_ISOCH_OUT)
			res = (ep_halt(x, slot, dci, td.trb[0].at, CC_TRB), TD_HALT);
		else
			res = normal_td(x, slot, dci, &td, d);
		if (res != TD_DONE)
			return;
		ep->deq = td.next;
		ep->dcs = td.next_cs;
	}
}

void xhci_ep_doorbell(struct xhci *x, unsigned slot, unsigned dci)
{
	struct xhci_ep *ep = &x->slot[slot].ep[dci];

	/* Ringing a stopped endpoint's doorbell restarts it (4.8.3). */
	if (x->slot[slot].enabled && ep->state == EP_STOPPED) {
		ep->state = EP_RUNNING;
		xhci_ep_ctx_update(x, slot, dci);
	}
	xhci_ep_kick(x, slot, dci);
}
