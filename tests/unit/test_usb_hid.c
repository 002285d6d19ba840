// SPDX-License-Identifier: BSD-2-Clause
/*
 * The USB tablet (dev/usb/usb_hid.c) driven directly, without the controller: every standard
 * and HID class request a guest can send, in each direction and to each recipient, answered
 * or stalled as USB 2.0 chapter 9 and HID 1.11 section 7.2 say; the report queue's bound;
 * and every restore-time check of its saved state, each refused with its own message.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "backend/console.h"
#include "dev/usb/usb.h"
#include "sstream.h"
#include "vm.h"

#define IN USB_DIR_IN
#define DEV USB_RECIP_DEVICE
#define IFC USB_RECIP_INTERFACE
#define EPT USB_RECIP_ENDPOINT
#define CLASS USB_TYPE_CLASS
#define GET_REPORT 0x01
#define GET_IDLE 0x02
#define GET_PROTOCOL 0x03
#define SET_REPORT 0x09
#define SET_IDLE 0x0A
#define SET_PROTOCOL 0x0B

struct fx {
	struct vm vm;
	pthread_mutex_t lock;
	struct usb_dev *d;
	struct console *con;
	unsigned w; /* the surface's width */
};

static void refresh(void *opaque, struct console_surface *s, bool full)
{
	if (s->width != 640)
		assert_int_equal(console_surface_resize(s, 640, 480), 0);
}

static const struct console_display_ops display = { .refresh = refresh };

static void fx_start(struct fx *f)
{
	char err[128];
	uint32_t *px;
	unsigned w, h;

	memset(f, 0, sizeof(*f));
	vm_init_bare(&f->vm, true);
	pthread_mutex_init(&f->lock, NULL);
	f->d = usb_dev_create(&f->vm, "tablet", &f->lock, err, sizeof(err));
	if (!f->d)
		fail_msg("tablet: %s", err);
	f->con = console_of(&f->vm);
	assert_non_null(f->con);
	assert_int_equal(console_display_attach(f->con, &display, f, NULL, err, sizeof(err)), 0);
	/* The first picture sets the surface size that pointer positions are scaled by. */
	assert_int_equal(console_snapshot_image(f->con, &px, &w, &h), 0);
	free(px);
	if (w < 200 || h < 200)
		fail_msg("surface %ux%u", w, h);
	f->w = w;
}

static void fx_stop(struct fx *f)
{
	console_display_detach(f->con);
	f->d->ops->destroy(f->d);
	vm_destroy(&f->vm);
	pthread_mutex_destroy(&f->lock);
}

static int ctl(struct fx *f, uint8_t type, uint8_t req, uint16_t value, uint16_t index,
	       uint16_t length, uint8_t *data)
{
	struct usb_setup s = { type, req, value, index, length };
	uint8_t scratch[256];

	return f->d->ops->control(f->d, &s, data ? data : scratch);
}

static void configure(struct fx *f, unsigned config)
{
	assert_int_equal(ctl(f, DEV, USB_REQ_SET_CONFIGURATION, (uint16_t)config, 0, 0, NULL), 0);
}

/* Each request a guest can make of the unconfigured, then the configured, device. */
static void test_requests(void **state)
{
	static const struct {
		uint8_t type, req;
		uint16_t value, index, length;
		int want; /* bytes answered, 0 or USB_STALL */
		bool configured;
	} cases[] = {
		/* GET_STATUS: device, interface 0, endpoints 0 and 1 IN; IN only. */
		{ IN | DEV, USB_REQ_GET_STATUS, 0, 0, 2, 2, false },
		{ IN | IFC, USB_REQ_GET_STATUS, 0, 0, 2, 2, false },
		{ IN | IFC, USB_REQ_GET_STATUS, 0, 1, 2, USB_STALL, false },
		{ IN | EPT, USB_REQ_GET_STATUS, 0, 0x81, 2, 2, false },
		{ IN | EPT, USB_REQ_GET_STATUS, 0, 0x82, 2, USB_STALL, false },
		{ DEV, USB_REQ_GET_STATUS, 0, 0, 2, USB_STALL, false },
		{ IN | DEV, USB_REQ_GET_STATUS, 0, 0, 1, 1, false }, /* a short read */
		/* Descriptors: device, configuration 0 only, strings, HID and report (interface). */
		{ IN | DEV, USB_REQ_GET_DESCRIPTOR, 0x0100, 0, 255, 18, false },
		{ IN | DEV, USB_REQ_GET_DESCRIPTOR, 0x0100, 0, 8, 8, false },
		{ IN | DEV, USB_REQ_GET_DESCRIPTOR, 0x0200, 0, 9, 9, false },
		{ IN | DEV, USB_REQ_GET_DESCRIPTOR, 0x0201, 0, 9, USB_STALL, false },
		{ IN | DEV, USB_REQ_GET_DESCRIPTOR, 0x0300, 0, 255, 4, false },
		{ IN | DEV, USB_REQ_GET_DESCRIPTOR, 0x0301, 0, 2, 2, false },
		{ IN | DEV, USB_REQ_GET_DESCRIPTOR, 0x03ff, 0, 255, USB_STALL, false },
		{ IN | DEV, USB_REQ_GET_DESCRIPTOR, 0x0400, 0, 255, USB_STALL, false },
		{ DEV, USB_REQ_GET_DESCRIPTOR, 0x0100, 0, 18, USB_STALL, false },
		{ IN | IFC, USB_REQ_GET_DESCRIPTOR, 0x2100, 0, 255, 9, false },
		{ IN | IFC, USB_REQ_GET_DESCRIPTOR, 0x2200, 0, 4, 4, false },
		{ IN | IFC, USB_REQ_GET_DESCRIPTOR, 0x2200, 1, 255, USB_STALL, false },
		{ IN | IFC, USB_REQ_GET_DESCRIPTOR, 0x2300, 0, 255, USB_STALL, false },
		/* Configuration: read IN only, set OUT to the device only, 0 or 1. */
		{ IN | DEV, USB_REQ_GET_CONFIGURATION, 0, 0, 1, 1, false },
		{ DEV, USB_REQ_GET_CONFIGURATION, 0, 0, 1, USB_STALL, false },
		{ IN | DEV, USB_REQ_SET_CONFIGURATION, 1, 0, 0, USB_STALL, false },
		{ IFC, USB_REQ_SET_CONFIGURATION, 1, 0, 0, USB_STALL, false },
		{ DEV, USB_REQ_SET_CONFIGURATION, 2, 0, 0, USB_STALL, false },
		/* Interfaces: only once configured, only interface 0 alternate 0. */
		{ IN | IFC, USB_REQ_GET_INTERFACE, 0, 0, 1, USB_STALL, false },
		{ IN | IFC, USB_REQ_GET_INTERFACE, 0, 0, 1, 1, true },
		{ IN | IFC, USB_REQ_GET_INTERFACE, 0, 1, 1, USB_STALL, true },
		{ IFC, USB_REQ_GET_INTERFACE, 0, 0, 1, USB_STALL, true },
		{ IFC, USB_REQ_SET_INTERFACE, 0, 0, 0, USB_STALL, false },
		{ IFC, USB_REQ_SET_INTERFACE, 0, 0, 0, 0, true },
		{ IFC, USB_REQ_SET_INTERFACE, 1, 0, 0, USB_STALL, true },
		{ IFC, USB_REQ_SET_INTERFACE, 0, 1, 0, USB_STALL, true },
		{ IN | IFC, USB_REQ_SET_INTERFACE, 0, 0, 0, USB_STALL, true },
		/* Features: remote wakeup and endpoint halt taken, nothing for an interface. */
		{ DEV, USB_REQ_SET_FEATURE, 1, 0, 0, 0, false },
		{ EPT, USB_REQ_CLEAR_FEATURE, 0, 0x81, 0, 0, false },
		{ IFC, USB_REQ_SET_FEATURE, 0, 0, 0, USB_STALL, false },
		{ IN | DEV, USB_REQ_CLEAR_FEATURE, 1, 0, 0, USB_STALL, false },
		/* Neither SET_ADDRESS (the controller's) nor SET_DESCRIPTOR, nor vendor requests. */
		{ DEV, USB_REQ_SET_DESCRIPTOR, 0x0100, 0, 0, USB_STALL, false },
		{ IN | DEV, 0x0c, 0, 0, 2, USB_STALL, false },
		{ IN | 0x40 | DEV, USB_REQ_GET_STATUS, 0, 0, 2, USB_STALL, false },
		/* HID class requests go to interface 0. */
		{ IN | CLASS | IFC, GET_REPORT, 0x0100, 0, 6, 6, false },
		{ IN | CLASS | IFC, GET_REPORT, 0x0100, 0, 3, 3, false },
		{ IN | CLASS | IFC, GET_REPORT, 0x0200, 0, 6, USB_STALL, false },
		{ IN | CLASS | IFC, GET_REPORT, 0x0101, 0, 6, USB_STALL, false },
		{ CLASS | IFC, GET_REPORT, 0x0100, 0, 6, USB_STALL, false },
		{ IN | CLASS | DEV, GET_REPORT, 0x0100, 0, 6, USB_STALL, false },
		{ IN | CLASS | IFC, GET_REPORT, 0x0100, 1, 6, USB_STALL, false },
		{ IN | CLASS | IFC, GET_IDLE, 0, 0, 1, 1, false },
		{ CLASS | IFC, GET_IDLE, 0, 0, 1, USB_STALL, false },
		{ IN | CLASS | IFC, GET_PROTOCOL, 0, 0, 1, 1, false },
		{ CLASS | IFC, GET_PROTOCOL, 0, 0, 1, USB_STALL, false },
		{ CLASS | IFC, SET_IDLE, 0x0400, 0, 0, 0, false },
		{ IN | CLASS | IFC, SET_IDLE, 0x0400, 0, 0, USB_STALL, false },
		{ CLASS | IFC, SET_PROTOCOL, 0, 0, 0, 0, false },
		{ CLASS | IFC, SET_PROTOCOL, 2, 0, 0, USB_STALL, false },
		{ IN | CLASS | IFC, SET_PROTOCOL, 1, 0, 0, USB_STALL, false },
		{ CLASS | IFC, SET_REPORT, 0x0200, 0, 1, USB_STALL, false },
	};
	struct fx f;

	fx_start(&f);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int got;

		configure(&f, cases[i].configured);
		got = ctl(&f, cases[i].type, cases[i].req, cases[i].value, cases[i].index,
			  cases[i].length, NULL);
		if (got != cases[i].want)
			fail_msg("request %zu (type %#x request %#x value %#x index %#x): %d, want "
				 "%d",
				 i, cases[i].type, cases[i].req, cases[i].value, cases[i].index,
				 got, cases[i].want);
	}
	fx_stop(&f);
}

/* What the requests set is what later requests read back. */
static void test_request_state(void **state)
{
	uint8_t b[8];
	struct fx f;

	fx_start(&f);
	assert_int_equal(ctl(&f, CLASS | IFC, SET_IDLE, 0x2500, 0, 0, NULL), 0);
	assert_int_equal(ctl(&f, IN | CLASS | IFC, GET_IDLE, 0, 0, 1, b), 1);
	assert_int_equal(b[0], 0x25);
	assert_int_equal(ctl(&f, CLASS | IFC, SET_PROTOCOL, 0, 0, 0, NULL), 0);
	assert_int_equal(ctl(&f, IN | CLASS | IFC, GET_PROTOCOL, 0, 0, 1, b), 1);
	assert_int_equal(b[0], 0);
	configure(&f, 1);
	assert_int_equal(ctl(&f, IN | DEV, USB_REQ_GET_CONFIGURATION, 0, 0, 1, b), 1);
	assert_int_equal(b[0], 1);
	/* String 1 is the manufacturer in UTF-16: its length byte says how long. */
	assert_int_equal(ctl(&f, IN | DEV, USB_REQ_GET_DESCRIPTOR, 0x0301, 0, 2, b), 2);
	assert_int_equal(b[1], USB_DT_STRING);
	assert_true(b[0] > 2 && b[0] % 2 == 0);
	/* Endpoint 1 IN only, and only once configured. */
	assert_int_equal(f.d->ops->data_in(f.d, 2, b, 6), USB_STALL);
	assert_int_equal(f.d->ops->data_out(f.d, 1, b, 6), USB_STALL);
	configure(&f, 0);
	assert_int_equal(f.d->ops->data_in(f.d, 1, b, 6), USB_STALL);
	fx_stop(&f);
}

/*
 * The queue holds at most 64 reports: past that the newest merges into the last one, so a
 * guest that never polls costs bounded memory and still sees where the pointer ended.
 */
static void test_queue_bound(void **state)
{
	uint8_t b[8];
	struct fx f;
	unsigned n = 0;
	int got;

	fx_start(&f);
	configure(&f, 1);
	/* Button down, up, down...: no two neighbours merge until the queue is full. */
	for (unsigned i = 0; i < 200; i++)
		console_pointer_event(f.con, i, i, i & 1);
	while ((got = f.d->ops->data_in(f.d, 1, b, sizeof(b))) > 0) {
		assert_int_equal(got, 6);
		n++;
	}
	assert_int_equal(got, USB_NAK);
	/* The report of the configuration, then 63 more; the last is where the pointer ended. */
	assert_int_equal(n, 64);
	assert_int_equal(b[0], 1);
	assert_int_equal(b[1] | b[2] << 8, 199 * CONSOLE_ABS_MAX / (f.w - 1));
	fx_stop(&f);
}

/*
 * Wheel clicks: one report each until the queue is full, then they add up in the last one,
 * which holds at most +127 (up) or -127 (down).
 */
static void test_wheel_saturates(void **state)
{
	uint8_t b[8], prev[8] = { 0 };
	struct fx f;

	fx_start(&f);
	configure(&f, 1);
	for (int dir = 0; dir < 2; dir++) {
		unsigned n = 0;
		int got;

		for (unsigned i = 0; i < 200; i++) {
			console_pointer_event(f.con, 5, 5, dir ? 0x10 : 0x08);
			console_pointer_event(f.con, 5, 5, 0);
		}
		while ((got = f.d->ops->data_in(f.d, 1, b, sizeof(b))) > 0) {
			assert_int_equal(got, 6);
			memcpy(prev + 4, prev, 4);
			prev[0] = b[5];
			n++;
		}
		assert_int_equal(got, USB_NAK);
		assert_true(n >= 60 && n <= 65);
		assert_int_equal((int8_t)prev[0], dir ? -127 : 127);
		assert_int_equal((int8_t)prev[4], dir ? -1 : 1);
	}
	fx_stop(&f);
}

/* A saved tablet state, field by field as usb_hid.c's state_io writes it. */
struct saved {
	uint8_t config, idle, protocol;
	uint16_t x, y;
	uint8_t buttons, dz;
	uint32_t count;
	uint16_t qx, qy;
	uint8_t qbuttons, qdz;
};

static void put(struct sstream *s, const struct saved *v)
{
	struct saved c = *v;

	ss_init_save(s);
	ss_u8(s, &c.config);
	ss_u8(s, &c.idle);
	ss_u8(s, &c.protocol);
	ss_u16(s, &c.x);
	ss_u16(s, &c.y);
	ss_u8(s, &c.buttons);
	ss_u8(s, &c.dz);
	ss_u32(s, &c.count);
	for (unsigned i = 0; i < c.count && i < 2; i++) {
		ss_u16(s, &c.qx);
		ss_u16(s, &c.qy);
		ss_u8(s, &c.qbuttons);
		ss_u8(s, &c.qdz);
	}
}

/* Load @v at @version: the message on refusal ("" when taken, and then committed). */
static const char *load(struct fx *f, const struct saved *v, unsigned version)
{
	static char msg[256];
	struct sstream out, in;
	void *staged = NULL;
	int ret;

	put(&out, v);
	ss_init_load(&in, out.buf, out.len);
	ret = f->d->ops->load(f->d, &in, version, &staged);
	if (!ret)
		ret = ss_finish(&in);
	snprintf(msg, sizeof(msg), "%s", ret ? in.msg : "");
	if (ret) {
		assert_null(staged);
	} else {
		assert_non_null(staged);
		f->d->ops->commit(f->d, staged);
	}
	ss_free(&out);
	return msg;
}

static void test_load_checks(void **state)
{
	static const struct saved good = { 1, 0, 1, 100, 200, 0, 0, 2, 300, 400, 1, 0xff };
	static const struct {
		unsigned field; /* which field of good is changed */
		uint32_t value;
		const char *why;
	} bad[] = {
		{ 0, 2, "configuration 2, protocol 1" },
		{ 2, 2, "configuration 1, protocol 2" },
		{ 3, 0x8000, "pointer state out of range" },
		{ 4, 0x8000, "pointer state out of range" },
		{ 5, 0x20, "pointer state out of range" },
		{ 6, 1, "pointer state out of range" },
		{ 7, 65, "queued reports" },
		{ 8, 0x8000, "queued report 0 out of range" },
		{ 9, 0x8000, "queued report 0 out of range" },
		{ 10, 0x20, "queued report 0 out of range" },
		{ 11, 0x80, "queued report 0 out of range" }, /* a wheel of -128 */
		{ 12, 0, "reports queued while unconfigured" },
	};
	struct saved v;
	struct sstream s;
	uint8_t b[8];
	struct fx f;

	fx_start(&f);
	assert_string_equal(load(&f, &good, 1), "");
	/* Taken: configured, two reports queued, the first as saved. */
	assert_int_equal(f.d->ops->data_in(f.d, 1, b, sizeof(b)), 6);
	assert_int_equal(b[0], 1);
	assert_int_equal(b[1] | b[2] << 8, 300);
	assert_int_equal(b[5], 0xff);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *msg;

		v = good;
		switch (bad[i].field) {
		case 0:
			v.config = (uint8_t)bad[i].value;
			break;
		case 2:
			v.protocol = (uint8_t)bad[i].value;
			break;
		case 3:
			v.x = (uint16_t)bad[i].value;
			break;
		case 4:
			v.y = (uint16_t)bad[i].value;
			break;
		case 5:
			v.buttons = (uint8_t)bad[i].value;
			break;
		case 6:
			v.dz = (uint8_t)bad[i].value;
			break;
		case 7:
			v.count = bad[i].value;
			break;
		case 8:
			v.qx = (uint16_t)bad[i].value;
			break;
		case 9:
			v.qy = (uint16_t)bad[i].value;
			break;
		case 10:
			v.qbuttons = (uint8_t)bad[i].value;
			break;
		case 11:
			v.qdz = (uint8_t)bad[i].value;
			break;
		case 12:
			v.config = 0;
			break;
		}
		msg = load(&f, &v, 1);
		if (!strstr(msg, bad[i].why))
			fail_msg("case %zu: '%s' does not mention '%s'", i, msg, bad[i].why);
	}
	assert_non_null(strstr(load(&f, &good, 2), "state version 2 is not supported"));
	/* Truncated: refused, nothing staged. */
	{
		void *staged = NULL;
		struct sstream in;

		put(&s, &good);
		ss_init_load(&in, s.buf, s.len - 1);
		assert_int_not_equal(f.d->ops->load(f.d, &in, 1, &staged), 0);
		assert_null(staged);
		ss_free(&s);
	}
	/* Unconfigured with nothing queued is a state too; a reset empties the queue. */
	v = good;
	v.config = 0;
	v.count = 0;
	assert_string_equal(load(&f, &v, 1), "");
	assert_int_equal(f.d->ops->data_in(f.d, 1, b, sizeof(b)), USB_STALL);
	assert_string_equal(load(&f, &good, 1), "");
	f.d->ops->reset(f.d);
	configure(&f, 1);
	assert_int_equal(f.d->ops->data_in(f.d, 1, b, sizeof(b)), 6);
	assert_int_equal(f.d->ops->data_in(f.d, 1, b, sizeof(b)), USB_NAK);
	fx_stop(&f);
}

static void test_unknown_device(void **state)
{
	pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	char err[128] = "";
	struct vm vm;

	vm_init_bare(&vm, true);
	assert_null(usb_dev_create(&vm, "keyboard", &lock, err, sizeof(err)));
	assert_non_null(strstr(err, "unknown USB device 'keyboard'"));
	vm_destroy(&vm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_requests),       cmocka_unit_test(test_request_state),
		cmocka_unit_test(test_queue_bound),    cmocka_unit_test(test_load_checks),
		cmocka_unit_test(test_unknown_device), cmocka_unit_test(test_wheel_saturates),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
