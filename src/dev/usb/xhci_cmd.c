// SPDX-License-Identifier: BSD-2-Clause
/*
 * xHCI command ring (4.6): device slots and endpoints, their state machines (4.5.3, 4.8.3)
 * and the contexts in guest memory (6.2).
 *
 * Every command runs to completion in the doorbell write and posts its Command Completion
 * Event.  The controller keeps the state it acts on (struct xhci_slot) and writes it back to
 * the output device context, which the guest only reads; input contexts are copied out of
 * guest memory before they are checked, so a guest changing one meanwhile cannot slip a
 * value past the checks.  Completion codes, for what is wrong:
 *
 *	TRB Error		a field of the command TRB itself (slot type, stream fields, a
 *				misaligned or unmapped context pointer, an unknown command)
 *	Slot Not Enabled	the slot ID names no enabled slot
 *	Context State Error	the slot or endpoint is in a state the command does not take
 *	Parameter Error		a value in an input context (endpoint type, packet size, port)
 *	USB Transaction Error	nobody answers: no device on the port, or behind a hub
 *	No Slots Available	Enable Slot with every enabled slot in use
 */
#include <endian.h>
#include <string.h>

#include "dev/usb/xhci.h"

#define ICTX_DWORDS (33 * CTX_SIZE / 4) /* input control context, slot, 31 endpoints */

static uint32_t ctx_get(const uint8_t *p, unsigned dw)
{
	uint32_t v;

	memcpy(&v, p + 4 * dw, 4);
	return le32toh(v);
}

static void ctx_put(uint8_t *p, unsigned dw, uint32_t v)
{
	v = htole32(v);
	memcpy(p + 4 * dw, &v, 4);
}

/* Context @idx (0 slot, 1..31 endpoints) of @slot's output device context, or NULL. */
static uint8_t *out_ctx(struct xhci *x, unsigned slot, unsigned idx)
{
	uint64_t base = x->slot[slot].ctx;

	return base ? xhci_mem(x, base + (uint64_t)idx * CTX_SIZE, CTX_SIZE) : NULL;
}

static unsigned last_dci(const struct xhci_slot *sl)
{
	unsigned last = 1;

	for (unsigned i = 2; i < XHCI_EPS; i++)
		if (sl->ep[i].state != EP_DISABLED)
			last = i;
	return last;
}

static void slot_ctx_update(struct xhci *x, unsigned slot)
{
	struct xhci_slot *sl = &x->slot[slot];
	uint8_t *c = out_ctx(x, slot, 0);

	if (!c)
		return;
	ctx_put(c, 0, (ctx_get(c, 0) & ~(0x1fU << 27)) | last_dci(sl) << 27);
	ctx_put(c, 3, (uint32_t)sl->state << 27 | sl->addr);
}

void xhci_ep_ctx_update(struct xhci *x, unsigned slot, unsigned dci)
{
	const struct xhci_ep *ep = &x->slot[slot].ep[dci];
	uint8_t *c = out_ctx(x, slot, dci);

	if (!c)
		return;
	ctx_put(c, 0, (ctx_get(c, 0) & ~7U) | ep->state);
	ctx_put(c, 2, (uint32_t)ep->deq | (ep->dcs ? 1 : 0));
	ctx_put(c, 3, (uint32_t)(ep->deq >> 32));
}

void xhci_slots_reset(struct xhci *x)
{
	memset(x->slot, 0, sizeof(x->slot));
}

static void cmd_complete(struct xhci *x, uint64_t trb, unsigned cc, unsigned slot)
{
	struct xhci_trb ev = {
		.param = trb,
		.status = (uint32_t)cc << 24,
		.control = TRB_EV_CMD << 10 | (uint32_t)slot << 24,
	};

	xhci_event(x, &ev);
}

void xhci_cmd_stop(struct xhci *x, unsigned cc)
{
	x->crr = false;
	cmd_complete(x, x->crdeq, cc, 0);
}

/* Copy the input context at @gpa (16-byte aligned, in RAM) into @ic. */
static bool read_input(struct xhci *x, uint64_t gpa, uint8_t *ic)
{
	const uint8_t *p = (gpa & 0xf) || !gpa ? NULL : xhci_mem(x, gpa, ICTX_DWORDS * 4);

	if (!p)
		return false;
	memcpy(ic, p, ICTX_DWORDS * 4);
	return true;
}

/* The slot a command names: *@sl, or the completion code why not. */
static unsigned cmd_slot(struct xhci *x, const struct xhci_trb *t, struct xhci_slot **sl)
{
	unsigned id = TRB_SLOT(t->control);

	if (!id || id > XHCI_SLOTS || id > (x->config & 0xff) || !x->slot[id].enabled)
		return CC_SLOT_NOT_ENABLED;
	*sl = &x->slot[id];
	return CC_SUCCESS;
}

static unsigned cmd_enable_slot(struct xhci *x, const struct xhci_trb *t, unsigned *slot)
{
	if ((t->control >> 16) & 0x1f)
		return CC_TRB; /* slot type: the protocol capabilities say 0 */
	for (unsigned i = 1; i <= XHCI_SLOTS && i <= (x->config & 0xff); i++) {
		if (x->slot[i].enabled)
			continue;
		memset(&x->slot[i], 0, sizeof(x->slot[i]));
		x->slot[i].enabled = true;
		x->slot[i].state = SLOT_ENABLED;
		*slot = i;
		return CC_SUCCESS;
	}
	return CC_NO_SLOTS;
}

static unsigned cmd_disable_slot(struct xhci *x, struct xhci_slot *sl, unsigned id)
{
	uint8_t *c = out_ctx(x, id, 0);

	if (c)
		ctx_put(c, 3, ctx_get(c, 3) & ~(0x1fU << 27));
	memset(sl, 0, sizeof(*sl));
	return CC_SUCCESS;
}

/* An endpoint context's ring fields, checked: *@ep filled, or Parameter Error. */
static unsigned ep_from_ctx(const uint8_t *c, unsigned dci, struct xhci_ep *ep)
{
	uint32_t dw0 = ctx_get(c, 0), dw1 = ctx_get(c, 1);
	uint64_t deq = ctx_get(c, 2) | (uint64_t)ctx_get(c, 3) << 32;
	unsigned type = (dw1 >> 3) & 7;
	bool in = dci & 1;

	if (!type || (dw0 >> 10) & 0x1f || (dw0 & (1U << 15)) || !(dw1 >> 16) || !(deq & ~0xfULL))
		return CC_PARAMETER;
	if (type == EPT_CONTROL ? !in : in != (type >= EPT_ISOCH_IN))
		return CC_PARAMETER; /* the direction the DCI says */
	ep->type = (uint8_t)type;
	ep->mps = (uint16_t)(dw1 >> 16);
	ep->deq = deq & ~0xfULL;
	ep->dcs = deq & 1;
	ep->state = EP_RUNNING;
	return CC_SUCCESS;
}

static unsigned cmd_address(struct xhci *x, const struct xhci_trb *t, struct xhci_slot *sl,
			    unsigned id)
{
	uint8_t ic[ICTX_DWORDS * 4], *out;
	const uint8_t *sc = ic + CTX_SIZE, *ep0 = ic + 2 * CTX_SIZE;
	bool bsr = t->control & TRB_BSR;
	struct xhci_ep ep = { 0 };
	unsigned port, cc;
	uint64_t octx;
	const uint8_t *dcbaa;

	if (bsr ? sl->state != SLOT_ENABLED : sl->state > SLOT_DEFAULT)
		return CC_CONTEXT_STATE;
	if (!read_input(x, t->param, ic))
		return CC_TRB;
	if (ctx_get(ic, 0) || (ctx_get(ic, 1) & 3) != 3)
		return CC_PARAMETER; /* Address Device takes exactly A0 and A1 */
	port = (ctx_get(sc, 1) >> 16) & 0xff;
	if (!port || port > XHCI_PORTS)
		return CC_PARAMETER;
	if (ctx_get(sc, 0) & 0xfffff || !x->port[port].dev || !(x->port[port].portsc & 2))
		return CC_TRANSACTION; /* no hubs: only a device on an enabled root port answers */
	cc = ep_from_ctx(ep0, 1, &ep);
	if (cc != CC_SUCCESS || ep.type != EPT_CONTROL)
		return CC_PARAMETER;
	dcbaa = x->dcbaap ? xhci_mem(x, x->dcbaap + 8ULL * id, 8) : NULL;
	if (!dcbaa)
		return CC_PARAMETER;
	memcpy(&octx, dcbaa, 8);
	octx = le64toh(octx);
	if (!octx || octx & 0x3f || !xhci_mem(x, octx, XHCI_EPS * CTX_SIZE))
		return CC_PARAMETER;
	sl->ctx = octx;
	sl->port = (uint8_t)port;
	sl->ep[1] = ep;
	sl->state = bsr ? SLOT_DEFAULT : SLOT_ADDRESSED;
	/* The address is the slot's: unique on the bus, and the device needs no SET_ADDRESS. */
	sl->addr = bsr ? 0 : (uint8_t)id;
	out = xhci_mem(x, octx, 2 * CTX_SIZE);
	memcpy(out, sc, CTX_SIZE);
	memcpy(out + CTX_SIZE, ep0, CTX_SIZE);
	slot_ctx_update(x, id);
	xhci_ep_ctx_update(x, id, 1);
	return CC_SUCCESS;
}

static void slot_deconfigure(struct xhci *x, struct xhci_slot *sl, unsigned id)
{
	for (unsigned i = 2; i < XHCI_EPS; i++) {
		if (sl->ep[i].state == EP_DISABLED)
			continue;
		memset(&sl->ep[i], 0, sizeof(sl->ep[i]));
		xhci_ep_ctx_update(x, id, i);
	}
}

static unsigned cmd_configure(struct xhci *x, const struct xhci_trb *t, struct xhci_slot *sl,
			      unsigned id)
{
	uint8_t ic[ICTX_DWORDS * 4];
	struct xhci_ep eps[XHCI_EPS];
	uint32_t drop, add;

	if (sl->state != SLOT_ADDRESSED && sl->state != SLOT_CONFIGURED)
		return CC_CONTEXT_STATE;
	if (t->control & TRB_DC) {
		slot_deconfigure(x, sl, id);
		sl->state = SLOT_ADDRESSED;
		slot_ctx_update(x, id);
		return CC_SUCCESS;
	}
	if (!read_input(x, t->param, ic))
		return CC_TRB;
	drop = ctx_get(ic, 0);
	add = ctx_get(ic, 1);
	if (drop & 3 || add & 2)
		return CC_PARAMETER;
	/* Check every added endpoint before changing any: a refused command changes nothing. */
	for (unsigned i = 2; i < XHCI_EPS; i++)
		if ((add >> i) & 1) {
			unsigned cc = ep_from_ctx(ic + (i + 1) * CTX_SIZE, i, &eps[i]);

			if (cc != CC_SUCCESS)
				return cc;
		}
	for (unsigned i = 2; i < XHCI_EPS; i++) {
		uint8_t *c;

		if ((drop >> i) & 1) {
			memset(&sl->ep[i], 0, sizeof(sl->ep[i]));
			xhci_ep_ctx_update(x, id, i);
		}
		if (!((add >> i) & 1))
			continue;
		sl->ep[i] = eps[i];
		c = out_ctx(x, id, i);
		if (c)
			memcpy(c, ic + (i + 1) * CTX_SIZE, CTX_SIZE);
		xhci_ep_ctx_update(x, id, i);
	}
	sl->state = last_dci(sl) > 1 ? SLOT_CONFIGURED : SLOT_ADDRESSED;
	slot_ctx_update(x, id);
	return CC_SUCCESS;
}

static unsigned cmd_evaluate(struct xhci *x, const struct xhci_trb *t, struct xhci_slot *sl,
			     unsigned id)
{
	uint8_t ic[ICTX_DWORDS * 4], *c;
	uint32_t add;
	uint16_t mps;

	if (sl->state == SLOT_ENABLED)
		return CC_CONTEXT_STATE;
	if (!read_input(x, t->param, ic))
		return CC_TRB;
	add = ctx_get(ic, 1);
	mps = (uint16_t)(ctx_get(ic + 2 * CTX_SIZE, 1) >> 16);
	if ((add & 2) && !mps)
		return CC_PARAMETER;
	if ((add & 1) && (c = out_ctx(x, id, 0))) {
		/* Max Exit Latency and Interrupter Target are what the slot context takes. */
		ctx_put(c, 1, (ctx_get(c, 1) & ~0xffffU) | (ctx_get(ic + CTX_SIZE, 1) & 0xffff));
		ctx_put(c, 2,
			(ctx_get(c, 2) & 0x3fffff) | (ctx_get(ic + CTX_SIZE, 2) & ~0x3fffffU));
	}
	if (add & 2) {
		sl->ep[1].mps = mps;
		if ((c = out_ctx(x, id, 1)))
			ctx_put(c, 1, (ctx_get(c, 1) & 0xffff) | (uint32_t)mps << 16);
	}
	return CC_SUCCESS;
}

/* The endpoint a command names: its DCI, or 0 when the slot has no such endpoint. */
static unsigned cmd_ep(const struct xhci_trb *t, const struct xhci_slot *sl)
{
	unsigned dci = TRB_EP(t->control);

	return dci && sl->ep[dci].state != EP_DISABLED ? dci : 0;
}

static unsigned cmd_ep_state(struct xhci *x, const struct xhci_trb *t, struct xhci_slot *sl,
			     unsigned id)
{
	unsigned type = TRB_TYPE(t->control), dci = cmd_ep(t, sl);
	struct xhci_ep *ep = &sl->ep[dci];

	if (!dci)
		return TRB_EP(t->control) ? CC_CONTEXT_STATE : CC_TRB;
	switch (type) {
	case TRB_RESET_EP:
		if (ep->state != EP_HALTED)
			return CC_CONTEXT_STATE;
		ep->state = EP_STOPPED;
		break;
	case TRB_STOP_EP:
		if (ep->state != EP_RUNNING)
			return CC_CONTEXT_STATE;
		ep->state = EP_STOPPED;
		break;
	case TRB_SET_TR_DEQ:
		if (ep->state != EP_STOPPED && ep->state != EP_ERROR)
			return CC_CONTEXT_STATE;
		if (t->param & 0xe || t->status >> 16 || !(t->param & ~0xfULL))
			return CC_TRB; /* no streams here: SCT and stream ID are 0 */
		ep->deq = t->param & ~0xfULL;
		ep->dcs = t->param & 1;
		ep->state = EP_STOPPED;
		break;
	}
	xhci_ep_ctx_update(x, id, dci);
	return CC_SUCCESS;
}

static unsigned cmd_reset_device(struct xhci *x, struct xhci_slot *sl, unsigned id)
{
	if (sl->state == SLOT_ENABLED || sl->state == SLOT_DEFAULT)
		return CC_CONTEXT_STATE;
	slot_deconfigure(x, sl, id);
	sl->state = SLOT_DEFAULT;
	sl->addr = 0;
	slot_ctx_update(x, id);
	return CC_SUCCESS;
}

static unsigned cmd_exec(struct xhci *x, const struct xhci_trb *t, unsigned *slot)
{
	unsigned type = TRB_TYPE(t->control), cc;
	struct xhci_slot *sl = NULL;

	switch (type) {
	case TRB_ENABLE_SLOT:
		return cmd_enable_slot(x, t, slot);
	case TRB_NOOP_CMD:
	case TRB_SET_LT: /* latency tolerance messaging is not emulated: nothing to set */
		return CC_SUCCESS;
	case TRB_DISABLE_SLOT:
	case TRB_ADDRESS_DEVICE:
	case TRB_CONFIGURE_EP:
	case TRB_EVALUATE_CTX:
	case TRB_RESET_EP:
	case TRB_STOP_EP:
	case TRB_SET_TR_DEQ:
	case TRB_RESET_DEVICE:
		break;
	default:
		return CC_TRB;
	}
	cc = cmd_slot(x, t, &sl);
	if (cc != CC_SUCCESS)
		return cc;
	*slot = TRB_SLOT(t->control);
	switch (type) {
	case TRB_DISABLE_SLOT:
		return cmd_disable_slot(x, sl, *slot);
	case TRB_ADDRESS_DEVICE:
		return cmd_address(x, t, sl, *slot);
	case TRB_CONFIGURE_EP:
		return cmd_configure(x, t, sl, *slot);
	case TRB_EVALUATE_CTX:
		return cmd_evaluate(x, t, sl, *slot);
	case TRB_RESET_DEVICE:
		return cmd_reset_device(x, sl, *slot);
	}
	return cmd_ep_state(x, t, sl, *slot);
}

/*
 * Run the commands the guest queued, up to XHCI_CMDS_PER_RING per doorbell: a ring whose
 * TRBs all carry the right cycle bit forever (a loop the guest built) stops there, and a
 * loop of Link TRBs after XHCI_LINKS_MAX of them.
 */
void xhci_cmd_ring(struct xhci *x)
{
	unsigned links = 0, cmds = 0;
	struct xhci_trb t;

	x->crr = true;
	while (x->crr && cmds < XHCI_CMDS_PER_RING) {
		uint64_t at = x->crdeq;
		unsigned slot = 0, cc;

		if (!xhci_read_trb(x, at, &t)) {
			/* The ring points outside RAM: a host system error, as a bus error is. */
			x->usbsts |= 1U << 2;
			x->crr = false;
			return;
		}
		if (!(t.control & TRB_C) != !x->ccs)
			return; /* the guest has not queued more */
		if (TRB_TYPE(t.control) == TRB_LINK) {
			if (++links > XHCI_LINKS_MAX) {
				xhci_cmd_stop(x, CC_TRB);
				return;
			}
			if (t.control & TRB_TC)
				x->ccs = !x->ccs;
			x->crdeq = t.param & ~0xfULL;
			continue;
		}
		links = 0;
		cmds++;
		cc = cmd_exec(x, &t, &slot);
		x->crdeq = at + 16;
		cmd_complete(x, at, cc, slot);
	}
}
