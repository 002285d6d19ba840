// SPDX-License-Identifier: BSD-2-Clause
/*
 * The USB tablet: a full-speed HID device (HID 1.11) with one interrupt-IN endpoint (0x81,
 * 8 bytes every 10 ms) reporting an absolute pointer, five buttons and a wheel.  It is what
 * bhyve's and QEMU's tablets are to a guest: the pointer lands where the VNC client's pointer
 * is, with no acceleration to undo.
 *
 *	-s SLOT,xhci,tablet		(the controller attaches one to a USB 2 port)
 *
 * Report (6 bytes, report protocol, no report ID): buttons (bits 0-4: left, right, middle,
 * side, extra), X and Y as 16-bit little endian 0..32767 over the displayed picture, wheel as
 * a signed byte (positive: away from the user).  A tablet is not a boot device (interface
 * subclass 0), so SET_PROTOCOL is accepted and read back but changes nothing.
 *
 * Input comes from the console backend (an absolute pointer of CONSOLE_PRIO_TABLET, active
 * once the guest configured the device, so the PS/2 mouse has the pointer until then).  Each
 * event is queued as a report; like a real tablet that is polled, movement with the same
 * buttons and no wheel merges into the report still waiting, while a button change or wheel
 * click gets a report of its own, so clicks are never lost and no report is sent twice.  When
 * the queue is full the newest report merges into the last (wheel clicks add up).
 *
 * After SET_CONFIGURATION the first report is the pointer's state then.
 *
 * SET_IDLE is accepted and read back (GET_IDLE); the tablet reports only on change, as the
 * guest drivers we know ask for (idle 0), and never repeats a report by itself.
 *
 * Snapshot: configuration, idle rate, protocol, the current pointer state (for GET_REPORT)
 * and the queued reports in order.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/console.h"
#include "dev/usb/usb.h"
#include "sstream.h"

#define TABLET_STATE_VERSION 1
#define TABLET_QUEUE 64
#define TABLET_REPORT_LEN 6
#define TABLET_BUTTONS 0x1f

#define HID_DT_HID 0x21
#define HID_DT_REPORT 0x22
#define HID_GET_REPORT 0x01
#define HID_GET_IDLE 0x02
#define HID_GET_PROTOCOL 0x03
#define HID_SET_REPORT 0x09
#define HID_SET_IDLE 0x0A
#define HID_SET_PROTOCOL 0x0B
#define HID_REPORT_INPUT 1

struct tablet_report {
	uint16_t x, y;
	uint8_t buttons;
	int8_t dz;
};

/* Everything a snapshot holds. */
struct tablet_state {
	uint8_t config;	  /* 0 unconfigured, 1 configured */
	uint8_t idle;	  /* SET_IDLE duration, 4 ms units */
	uint8_t protocol; /* 0 boot, 1 report */
	struct tablet_report now;
	unsigned count; /* queued reports, oldest first */
	struct tablet_report q[TABLET_QUEUE];
};

struct tablet {
	struct usb_dev ud;
	struct console *con;
	struct console_input *in;
	struct tablet_state st; /* under *ud.lock */
};

static const uint8_t report_desc[] = {
	0x05, 0x01,	  /* Usage Page (Generic Desktop) */
	0x09, 0x02,	  /* Usage (Mouse) */
	0xa1, 0x01,	  /* Collection (Application) */
	0x09, 0x01,	  /*   Usage (Pointer) */
	0xa1, 0x00,	  /*   Collection (Physical) */
	0x05, 0x09,	  /*     Usage Page (Button) */
	0x19, 0x01,	  /*     Usage Minimum (1) */
	0x29, 0x05,	  /*     Usage Maximum (5) */
	0x15, 0x00,	  /*     Logical Minimum (0) */
	0x25, 0x01,	  /*     Logical Maximum (1) */
	0x95, 0x05,	  /*     Report Count (5) */
	0x75, 0x01,	  /*     Report Size (1) */
	0x81, 0x02,	  /*     Input (Data, Variable, Absolute) */
	0x95, 0x01,	  /*     Report Count (1) */
	0x75, 0x03,	  /*     Report Size (3) */
	0x81, 0x01,	  /*     Input (Constant): padding */
	0x05, 0x01,	  /*     Usage Page (Generic Desktop) */
	0x09, 0x30,	  /*     Usage (X) */
	0x09, 0x31,	  /*     Usage (Y) */
	0x15, 0x00,	  /*     Logical Minimum (0) */
	0x26, 0xff, 0x7f, /*     Logical Maximum (32767) */
	0x35, 0x00,	  /*     Physical Minimum (0) */
	0x46, 0xff, 0x7f, /*     Physical Maximum (32767) */
	0x75, 0x10,	  /*     Report Size (16) */
	0x95, 0x02,	  /*     Report Count (2) */
	0x81, 0x02,	  /*     Input (Data, Variable, Absolute) */
	0x09, 0x38,	  /*     Usage (Wheel) */
	0x15, 0x81,	  /*     Logical Minimum (-127) */
	0x25, 0x7f,	  /*     Logical Maximum (127) */
	0x35, 0x00,	  /*     Physical Minimum (0) */
	0x45, 0x00,	  /*     Physical Maximum (0) */
	0x75, 0x08,	  /*     Report Size (8) */
	0x95, 0x01,	  /*     Report Count (1) */
	0x81, 0x06,	  /*     Input (Data, Variable, Relative) */
	0xc0,		  /*   End Collection */
	0xc0,		  /* End Collection */
};

static const uint8_t device_desc[18] = {
	18,   USB_DT_DEVICE,
	0x00, 0x02, /* USB 2.0 */
	0,    0,
	0,	    /* class in the interface */
	64,	    /* endpoint 0 packet size */
	0x09, 0x12, /* idVendor 0x1209 (pid.codes) */
	0x68, 0x6b, /* idProduct 0x6b68 */
	0x00, 0x01, /* bcdDevice 1.00 */
	1,    2,
	3, /* manufacturer, product, serial strings */
	1, /* configurations */
};

#define CONFIG_TOTAL (9 + 9 + 9 + 7)

static const uint8_t config_desc[CONFIG_TOTAL] = {
	/* configuration 1: bus powered, 100 mA */
	9,
	USB_DT_CONFIG,
	CONFIG_TOTAL,
	0,
	1,
	1,
	0,
	0x80,
	50,
	/* interface 0: HID, no boot subclass, one endpoint */
	9,
	USB_DT_INTERFACE,
	0,
	0,
	1,
	0x03,
	0x00,
	0x00,
	0,
	/* HID 1.11, one report descriptor */
	9,
	HID_DT_HID,
	0x11,
	0x01,
	0,
	1,
	HID_DT_REPORT,
	sizeof(report_desc),
	0,
	/* endpoint 0x81: interrupt IN, 8 bytes, every 10 ms */
	7,
	USB_DT_ENDPOINT,
	0x81,
	0x03,
	8,
	0,
	10,
};

static const char *const strings[] = { NULL, "khyve", "khyve USB tablet", "1" };

static struct tablet *to_tablet(struct usb_dev *d)
{
	return (struct tablet *)d;
}

/* ---- reports ---- */

static void report_encode(const struct tablet_report *r, uint8_t *b)
{
	b[0] = r->buttons;
	b[1] = (uint8_t)r->x;
	b[2] = (uint8_t)(r->x >> 8);
	b[3] = (uint8_t)r->y;
	b[4] = (uint8_t)(r->y >> 8);
	b[5] = (uint8_t)r->dz;
}

static int clamp_dz(int dz)
{
	return dz < -127 ? -127 : dz > 127 ? 127 : dz;
}

/* Queue the pointer state @r (see the top of the file for what merges). */
static void tablet_queue(struct tablet_state *st, const struct tablet_report *r)
{
	struct tablet_report *last = st->count ? &st->q[st->count - 1] : NULL;

	if (last &&
	    (st->count == TABLET_QUEUE || (last->buttons == r->buttons && !last->dz && !r->dz))) {
		last->x = r->x;
		last->y = r->y;
		last->buttons = r->buttons;
		last->dz = (int8_t)clamp_dz(last->dz + r->dz);
		return;
	}
	st->q[st->count++] = *r;
}

static void tablet_abs(void *opaque, unsigned x, unsigned y, int dz, unsigned buttons)
{
	struct tablet *t = opaque;
	struct tablet_report r = {
		.x = (uint16_t)(x > CONSOLE_ABS_MAX ? CONSOLE_ABS_MAX : x),
		.y = (uint16_t)(y > CONSOLE_ABS_MAX ? CONSOLE_ABS_MAX : y),
		.buttons = (uint8_t)(buttons & TABLET_BUTTONS),
		.dz = (int8_t)clamp_dz(dz),
	};

	pthread_mutex_lock(t->ud.lock);
	if (t->st.config) {
		t->st.now = r;
		t->st.now.dz = 0;
		tablet_queue(&t->st, &r);
		usb_dev_wakeup(&t->ud, 1);
	}
	pthread_mutex_unlock(t->ud.lock);
}

/* The guest drives the tablet once it configured it; until then the PS/2 mouse has it. */
static bool tablet_active(void *opaque)
{
	struct tablet *t = opaque;
	bool on;

	pthread_mutex_lock(t->ud.lock);
	on = t->st.config != 0;
	pthread_mutex_unlock(t->ud.lock);
	return on;
}

static const struct console_input_ops tablet_input = {
	.type = CONSOLE_POINTER_ABS,
	.name = "usb-tablet",
	.priority = CONSOLE_PRIO_TABLET,
	.abs = tablet_abs,
	.active = tablet_active,
};

static int tablet_data_in(struct usb_dev *d, unsigned ep, uint8_t *buf, size_t len)
{
	struct tablet_state *st = &to_tablet(d)->st;
	uint8_t b[TABLET_REPORT_LEN];

	if (ep != 1 || !st->config)
		return USB_STALL;
	if (!st->count)
		return USB_NAK;
	report_encode(&st->q[0], b);
	memmove(&st->q[0], &st->q[1], (st->count - 1) * sizeof(st->q[0]));
	st->count--;
	if (len > sizeof(b))
		len = sizeof(b);
	memcpy(buf, b, len);
	return (int)len;
}

static int tablet_data_out(struct usb_dev *d, unsigned ep, const uint8_t *buf, size_t len)
{
	return USB_STALL;
}

/* ---- control requests ---- */

static int copy_desc(uint8_t *data, unsigned want, const void *desc, size_t len)
{
	if (len > want)
		len = want;
	memcpy(data, desc, len);
	return (int)len;
}

static int string_desc(uint8_t *data, unsigned want, unsigned idx)
{
	uint8_t b[2 + 2 * 64];
	size_t n;

	if (idx == 0) {
		const uint8_t langs[4] = { 4, USB_DT_STRING, 0x09, 0x04 }; /* US English */

		return copy_desc(data, want, langs, sizeof(langs));
	}
	if (idx >= sizeof(strings) / sizeof(strings[0]))
		return USB_STALL;
	n = strlen(strings[idx]);
	b[0] = (uint8_t)(2 + 2 * n);
	b[1] = USB_DT_STRING;
	for (size_t i = 0; i < n; i++) {
		b[2 + 2 * i] = (uint8_t)strings[idx][i];
		b[3 + 2 * i] = 0;
	}
	return copy_desc(data, want, b, b[0]);
}

static int get_descriptor(const struct usb_setup *s, uint8_t *data)
{
	unsigned type = s->value >> 8, idx = s->value & 0xff;

	if ((s->type & USB_RECIP_MASK) == USB_RECIP_INTERFACE) {
		if (s->index != 0)
			return USB_STALL;
		if (type == HID_DT_REPORT)
			return copy_desc(data, s->length, report_desc, sizeof(report_desc));
		if (type == HID_DT_HID)
			return copy_desc(data, s->length, config_desc + 18, 9);
		return USB_STALL;
	}
	switch (type) {
	case USB_DT_DEVICE:
		return copy_desc(data, s->length, device_desc, sizeof(device_desc));
	case USB_DT_CONFIG:
		return idx ? USB_STALL
			   : copy_desc(data, s->length, config_desc, sizeof(config_desc));
	case USB_DT_STRING:
		return string_desc(data, s->length, idx);
	}
	return USB_STALL;
}

static int reply(uint8_t *data, unsigned want, const uint8_t *b, size_t len)
{
	return copy_desc(data, want, b, len);
}

static int tablet_standard(struct tablet_state *st, const struct usb_setup *s, uint8_t *data)
{
	const uint8_t zero[2] = { 0, 0 };
	bool in = s->type & USB_DIR_IN;
	unsigned recip = s->type & USB_RECIP_MASK;

	switch (s->request) {
	case USB_REQ_GET_STATUS:
		if (!in || (recip == USB_RECIP_INTERFACE && s->index) ||
		    (recip == USB_RECIP_ENDPOINT && (s->index & 0x7f) > 1))
			return USB_STALL;
		return reply(data, s->length, zero, 2);
	case USB_REQ_GET_DESCRIPTOR:
		return in ? get_descriptor(s, data) : USB_STALL;
	case USB_REQ_GET_CONFIGURATION:
		return in ? reply(data, s->length, &st->config, 1) : USB_STALL;
	case USB_REQ_SET_CONFIGURATION:
		if (in || recip != USB_RECIP_DEVICE || s->value > 1)
			return USB_STALL;
		/*
		 * A (re)configured device starts with empty endpoints and then reports where
		 * the pointer is, so the host need not wait for a move to know.
		 */
		st->config = (uint8_t)s->value;
		st->count = 0;
		if (st->config)
			tablet_queue(st, &st->now);
		return 0;
	case USB_REQ_GET_INTERFACE:
		if (!in || s->index || !st->config)
			return USB_STALL;
		return reply(data, s->length, zero, 1);
	case USB_REQ_SET_INTERFACE:
		return in || s->index || s->value || !st->config ? USB_STALL : 0;
	case USB_REQ_CLEAR_FEATURE:
	case USB_REQ_SET_FEATURE:
		/* Remote wakeup (device) and halt (endpoint) are accepted; nothing halts here. */
		if (in || recip == USB_RECIP_INTERFACE)
			return USB_STALL;
		return 0;
	}
	return USB_STALL;
}

static int tablet_class(struct tablet_state *st, const struct usb_setup *s, uint8_t *data)
{
	bool in = s->type & USB_DIR_IN;
	uint8_t b[TABLET_REPORT_LEN];

	if ((s->type & USB_RECIP_MASK) != USB_RECIP_INTERFACE || (s->index & 0xff) != 0)
		return USB_STALL;
	switch (s->request) {
	case HID_GET_REPORT:
		if (!in || s->value >> 8 != HID_REPORT_INPUT || (s->value & 0xff))
			return USB_STALL;
		report_encode(&st->now, b);
		return reply(data, s->length, b, sizeof(b));
	case HID_GET_IDLE:
		return in ? reply(data, s->length, &st->idle, 1) : USB_STALL;
	case HID_GET_PROTOCOL:
		return in ? reply(data, s->length, &st->protocol, 1) : USB_STALL;
	case HID_SET_IDLE:
		if (in)
			return USB_STALL;
		st->idle = (uint8_t)(s->value >> 8);
		return 0;
	case HID_SET_PROTOCOL:
		if (in || s->value > 1)
			return USB_STALL;
		st->protocol = (uint8_t)s->value;
		return 0;
	}
	return USB_STALL; /* SET_REPORT: there are no output or feature reports */
}

static int tablet_control(struct usb_dev *d, const struct usb_setup *s, uint8_t *data)
{
	struct tablet_state *st = &to_tablet(d)->st;

	switch (s->type & USB_TYPE_MASK) {
	case USB_TYPE_STANDARD:
		return tablet_standard(st, s, data);
	case USB_TYPE_CLASS:
		return tablet_class(st, s, data);
	}
	return USB_STALL;
}

static void tablet_reset(struct usb_dev *d)
{
	struct tablet_state *st = &to_tablet(d)->st;
	struct tablet_report now = st->now;

	memset(st, 0, sizeof(*st));
	st->protocol = 1;
	st->now = now; /* the pointer stays where it is */
}

/* ---- snapshot ---- */

static void report_io(struct sstream *s, struct tablet_report *r)
{
	uint8_t dz = (uint8_t)r->dz;

	ss_u16(s, &r->x);
	ss_u16(s, &r->y);
	ss_u8(s, &r->buttons);
	ss_u8(s, &dz);
	r->dz = (int8_t)dz;
}

static void state_io(struct sstream *s, struct tablet_state *st)
{
	uint32_t count = st->count;

	ss_u8(s, &st->config);
	ss_u8(s, &st->idle);
	ss_u8(s, &st->protocol);
	report_io(s, &st->now);
	ss_u32(s, &count);
	ss_check_max(s, count, TABLET_QUEUE, "tablet: queued reports");
	if (ss_error(s))
		return;
	st->count = count;
	for (unsigned i = 0; i < st->count; i++)
		report_io(s, &st->q[i]);
}

static bool report_ok(const struct tablet_report *r)
{
	return r->x <= CONSOLE_ABS_MAX && r->y <= CONSOLE_ABS_MAX &&
	       !(r->buttons & ~TABLET_BUTTONS) && r->dz >= -127;
}

static void state_check(struct sstream *s, const struct tablet_state *st)
{
	if (st->config > 1 || st->protocol > 1)
		ss_fail(s, -EINVAL, "tablet: configuration %u, protocol %u", st->config,
			st->protocol);
	else if (!report_ok(&st->now) || st->now.dz)
		ss_fail(s, -EINVAL, "tablet: pointer state out of range");
	else if (st->count && !st->config)
		ss_fail(s, -EINVAL, "tablet: reports queued while unconfigured");
	for (unsigned i = 0; i < st->count && !ss_error(s); i++)
		if (!report_ok(&st->q[i]))
			ss_fail(s, -EINVAL, "tablet: queued report %u out of range", i);
}

static int tablet_save(struct usb_dev *d, struct sstream *s)
{
	state_io(s, &to_tablet(d)->st);
	return ss_error(s);
}

static int tablet_load(struct usb_dev *d, struct sstream *s, unsigned version, void **staged)
{
	struct tablet_state *st;

	if (version != TABLET_STATE_VERSION)
		return ss_fail(s, -EINVAL, "tablet: state version %u is not supported (%u)",
			       version, TABLET_STATE_VERSION);
	st = calloc(1, sizeof(*st));
	if (!st)
		return ss_fail(s, -ENOMEM, "out of memory");
	state_io(s, st);
	if (!ss_error(s))
		state_check(s, st);
	if (ss_error(s)) {
		free(st);
		return ss_error(s);
	}
	*staged = st;
	return 0;
}

static void tablet_commit(struct usb_dev *d, void *staged)
{
	to_tablet(d)->st = *(struct tablet_state *)staged;
	free(staged);
}

static void tablet_destroy(struct usb_dev *d)
{
	struct tablet *t = to_tablet(d);

	/* No input callback runs once this returns. */
	console_input_remove(t->in);
	console_put(t->con);
	free(t);
}

static const struct usb_dev_ops tablet_ops = {
	.name = "tablet",
	.version = TABLET_STATE_VERSION,
	.speed = USB_SPEED_FULL,
	.control = tablet_control,
	.data_in = tablet_data_in,
	.data_out = tablet_data_out,
	.reset = tablet_reset,
	.save = tablet_save,
	.load = tablet_load,
	.commit = tablet_commit,
	.destroy = tablet_destroy,
};

struct usb_dev *usb_tablet_create(struct vm *vm, pthread_mutex_t *lock, char *err, size_t errlen)
{
	struct tablet *t = calloc(1, sizeof(*t));

	if (!t) {
		snprintf(err, errlen, "tablet: out of memory");
		return NULL;
	}
	t->ud.ops = &tablet_ops;
	t->ud.lock = lock;
	t->st.protocol = 1;
	t->con = console_get(vm);
	if (t->con)
		t->in = console_input_add(t->con, &tablet_input, t);
	if (!t->in) {
		console_put(t->con);
		free(t);
		snprintf(err, errlen, "tablet: out of memory");
		return NULL;
	}
	return &t->ud;
}

struct usb_dev *usb_dev_create(struct vm *vm, const char *name, pthread_mutex_t *lock, char *err,
			       size_t errlen)
{
	if (!strcmp(name, "tablet"))
		return usb_tablet_create(vm, lock, err, errlen);
	snprintf(err, errlen, "unknown USB device '%s' (khyve has: tablet)", name);
	return NULL;
}
