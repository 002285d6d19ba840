// SPDX-License-Identifier: BSD-2-Clause
/*
 * The i8042 keyboard controller with its PS/2 keyboard and mouse, driven through ports 0x60
 * and 0x64 as firmware and OS drivers drive it, with input injected through the console
 * backend as a VNC client would.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "devsnap.h"

#include <linux/input-event-codes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/console.h"
#include "dev/pc/atkbdc.h"
#include "dev/pc/ps2.h"
#include "sstream.h"
#include "vm.h"

#define DATA 0x60
#define CMD 0x64
#define MS (1000000ULL)

/* Offsets in a version-1 state with empty queues. */
#define ST_CMDBYTE 0
#define ST_OBF 33
#define ST_OBF_AUX 34
#define ST_PENDING 37
#define ST_CTL_COUNT 42
#define ST_KBD_SCANSET 57
#define ST_KBD_PENDING 60

struct fixture {
	struct vm vm;
	struct dev *d;
	struct console *con;
	int irq[24];
	unsigned edges[24];
};

static struct fixture *owner;

static void record_irq(struct vm *vm, unsigned gsi, int level)
{
	assert_ptr_equal(vm, &owner->vm);
	assert_true(gsi < 24);
	if (level && !owner->irq[gsi])
		owner->edges[gsi]++;
	owner->irq[gsi] = level;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char err[256];

	vm_init_bare(&f->vm, true);
	f->vm.set_irq = record_irq;
	owner = f;
	f->d = atkbdc_create(&f->vm, err, sizeof(err));
	if (!f->d)
		fail_msg("atkbdc_create: %s", err);
	f->con = console_of(&f->vm);
	assert_non_null(f->con);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	vm_destroy(&f->vm);
	assert_null(f->vm.console);
	free(f);
	return 0;
}

static uint8_t in8(struct fixture *f, uint16_t port)
{
	uint8_t v = 0;

	assert_true(bus_access(&f->vm.pio, port, &v, 1, false));
	return v;
}

static void out8(struct fixture *f, uint16_t port, uint8_t v)
{
	assert_true(bus_access(&f->vm.pio, port, &v, 1, true));
}

/* The next byte of the output buffer, or -1 when it is empty. */
static int next(struct fixture *f)
{
	if (!(in8(f, CMD) & 0x01))
		return -1;
	return in8(f, DATA);
}

/* The bytes waiting, in order, into @buf; returns how many. */
static unsigned drain(struct fixture *f, uint8_t *buf, unsigned max)
{
	unsigned n = 0;
	int b;

	while ((b = next(f)) >= 0 && n < max)
		buf[n++] = (uint8_t)b;
	return n;
}

static void expect(struct fixture *f, const uint8_t *want, unsigned n)
{
	uint8_t got[64];
	unsigned m = drain(f, got, sizeof(got));

	if (m != n || memcmp(got, want, n)) {
		char msg[512];
		int o = snprintf(msg, sizeof(msg), "got %u bytes:", m);

		for (unsigned i = 0; i < m && o < (int)sizeof(msg) - 4; i++)
			o += snprintf(msg + o, sizeof(msg) - (size_t)o, " %02x", got[i]);
		o += snprintf(msg + o, sizeof(msg) - (size_t)o, " want %u:", n);
		for (unsigned i = 0; i < n && o < (int)sizeof(msg) - 4; i++)
			o += snprintf(msg + o, sizeof(msg) - (size_t)o, " %02x", want[i]);
		fail_msg("%s", msg);
	}
}

#define EXPECT(f, ...)                                       \
	do {                                                 \
		static const uint8_t w_[] = { __VA_ARGS__ }; \
		expect(f, w_, sizeof(w_));                   \
	} while (0)
#define EXPECT_NONE(f) assert_int_equal(next(f), -1)

static uint8_t cmdbyte(struct fixture *f)
{
	out8(f, CMD, 0x20);
	return (uint8_t)next(f);
}

static void set_cmdbyte(struct fixture *f, uint8_t v)
{
	out8(f, CMD, 0x60);
	out8(f, DATA, v);
}

static void kbd_cmd(struct fixture *f, uint8_t v)
{
	out8(f, DATA, v);
}

static void aux_cmd(struct fixture *f, uint8_t v)
{
	out8(f, CMD, 0xd4);
	out8(f, DATA, v);
}

static void key(struct fixture *f, unsigned k, bool down)
{
	console_key_event(f->con, k, down);
}

/* ---- the controller ---- */

static void test_controller_commands(void **state)
{
	struct fixture *f = *state;

	/* Power-on: translated, both interrupts, SYS set; status shows INH and nothing else. */
	assert_int_equal(in8(f, CMD), 0x14);
	assert_int_equal(cmdbyte(f), 0x47);
	assert_int_equal(in8(f, CMD) & 0x08, 0x08); /* A2: the last write was a command */
	out8(f, CMD, 0xaa);
	EXPECT(f, 0x55);
	out8(f, CMD, 0xab);
	EXPECT(f, 0x00);
	out8(f, CMD, 0xa9);
	EXPECT(f, 0x00);
	out8(f, CMD, 0xa4);
	EXPECT(f, 0xf1);
	set_cmdbyte(f, 0x45);
	assert_int_equal(in8(f, CMD) & 0x08, 0x00); /* the data byte went to 0x60 */
	/* Bit 3 is not kept. */
	set_cmdbyte(f, 0x4d);
	assert_int_equal(cmdbyte(f), 0x45);
	out8(f, CMD, 0xa7);
	assert_int_equal(cmdbyte(f), 0x45 | 0x20);
	out8(f, CMD, 0xa8);
	out8(f, CMD, 0xad);
	assert_int_equal(cmdbyte(f), 0x45 | 0x10);
	out8(f, CMD, 0xae);
	assert_int_equal(cmdbyte(f), 0x45);
	/* RAM beyond the command byte. */
	out8(f, CMD, 0x65);
	out8(f, DATA, 0x5a);
	out8(f, CMD, 0x25);
	EXPECT(f, 0x5a);
	/* Output port: reset high, A20 on; DD/DF move A20. */
	out8(f, CMD, 0xd0);
	EXPECT(f, 0x03);
	out8(f, CMD, 0xdd);
	out8(f, CMD, 0xd0);
	EXPECT(f, 0x01);
	out8(f, CMD, 0xdf);
	out8(f, CMD, 0xc0);
	EXPECT(f, 0x80);
	/* With a keyboard byte waiting in the output buffer, D0 shows it full (bit 4).
	 * (Translation off, so the byte comes back as written.) */
	set_cmdbyte(f, 0x05);
	out8(f, CMD, 0xd2);
	out8(f, DATA, 0x42);
	assert_int_equal(in8(f, CMD) & 0x21, 0x01);
	out8(f, CMD, 0xd0);
	EXPECT(f, 0x42, 0x13);
	/* A mouse byte: bit 5. */
	out8(f, CMD, 0xd3);
	out8(f, DATA, 0x24);
	assert_int_equal(in8(f, CMD) & 0x21, 0x21);
	out8(f, CMD, 0xd0);
	EXPECT(f, 0x24, 0x23);
	set_cmdbyte(f, 0x45);
	/* Test inputs (E0): both low. */
	out8(f, CMD, 0xe0);
	EXPECT(f, 0x00);
	/* An unknown command does nothing, below the RAM reads too. */
	out8(f, CMD, 0xc8);
	EXPECT_NONE(f);
	out8(f, CMD, 0x10);
	EXPECT_NONE(f);
	assert_int_equal(atomic_load(&f->vm.exit_status), -1);
}

static void test_reset_line(void **state)
{
	struct fixture *f = *state;

	out8(f, CMD, 0xff); /* pulse nothing: bit 0 stays high */
	assert_int_equal(atomic_load(&f->vm.exit_status), -1);
	out8(f, CMD, 0xfe);
	assert_int_equal(atomic_load(&f->vm.exit_status), VM_EXIT_REBOOT);
}

static void test_reset_through_output_port(void **state)
{
	struct fixture *f = *state;

	out8(f, CMD, 0xd1);
	out8(f, DATA, 0x03);
	assert_int_equal(atomic_load(&f->vm.exit_status), -1);
	out8(f, CMD, 0xd1);
	out8(f, DATA, 0x02);
	assert_int_equal(atomic_load(&f->vm.exit_status), VM_EXIT_REBOOT);
}

static void test_loopback_and_aux_flag(void **state)
{
	struct fixture *f = *state;

	/* Linux's AUX probe: a byte written with D3 comes back as mouse data. */
	out8(f, CMD, 0xd3);
	out8(f, DATA, 0x5a);
	assert_int_equal(in8(f, CMD) & 0x21, 0x21);
	assert_int_equal(f->irq[12], 1);
	assert_int_equal(f->irq[1], 0);
	assert_int_equal(in8(f, DATA), 0x5a);
	assert_int_equal(f->irq[12], 0);
	assert_int_equal(in8(f, CMD) & 0x21, 0x00);
	/* The state after reading mouse data is one a load accepts. */
	{
		size_t len;
		uint8_t *a = devsnap_save_copy(f->d, &len);

		assert_int_equal(devsnap_load(f->d, a, len, 1), 0);
		f->d->ops->resume(f->d);
		free(a);
	}
	out8(f, CMD, 0xd2);
	out8(f, DATA, 0x1e);
	assert_int_equal(in8(f, CMD) & 0x21, 0x01);
	assert_int_equal(f->irq[1], 1);
	/* Translated, as everything from the keyboard port is. */
	assert_int_equal(in8(f, DATA), ps2_translate(0x1e));
	/* An empty buffer reads its last byte again. */
	assert_int_equal(in8(f, DATA), ps2_translate(0x1e));
}

static void test_interrupt_edges(void **state)
{
	struct fixture *f = *state;

	key(f, KEY_A, true);
	key(f, KEY_A, false);
	assert_int_equal(f->edges[1], 1);
	assert_int_equal(in8(f, DATA), 0x1e);
	/* The refill is a new edge. */
	assert_int_equal(f->edges[1], 2);
	assert_int_equal(in8(f, DATA), 0x9e);
	assert_int_equal(f->irq[1], 0);
	/* INT off: data, no interrupt. */
	set_cmdbyte(f, 0x46);
	key(f, KEY_B, true);
	assert_int_equal(f->irq[1], 0);
	assert_int_equal(in8(f, CMD) & 1, 1);
	assert_int_equal(in8(f, DATA), 0x30);
	set_cmdbyte(f, 0x47);
}

static void test_port_disable_holds_data(void **state)
{
	struct fixture *f = *state;

	out8(f, CMD, 0xad);
	key(f, KEY_A, true);
	EXPECT_NONE(f);
	out8(f, CMD, 0xae);
	EXPECT(f, 0x1e);
	out8(f, CMD, 0xa7);
	aux_cmd(f, 0xf2); /* the mouse answers, but the port holds it */
	EXPECT_NONE(f);
	out8(f, CMD, 0xa8);
	EXPECT(f, 0xfa, 0x00);
}

/* ---- the keyboard ---- */

static void test_keyboard_commands(void **state)
{
	struct fixture *f = *state;

	kbd_cmd(f, 0xf2);
	EXPECT(f, 0xfa, 0xab, 0x41); /* 0x83 through the translation */
	set_cmdbyte(f, 0x07);
	kbd_cmd(f, 0xf2);
	EXPECT(f, 0xfa, 0xab, 0x83);
	kbd_cmd(f, 0xee);
	EXPECT(f, 0xee);
	kbd_cmd(f, 0xed);
	EXPECT(f, 0xfa);
	kbd_cmd(f, 0x07);
	EXPECT(f, 0xfa);
	kbd_cmd(f, 0xf0);
	kbd_cmd(f, 0x00);
	EXPECT(f, 0xfa, 0xfa, 0x02);
	/* Set 3 is acknowledged and not taken; F0 00 says so. */
	kbd_cmd(f, 0xf0);
	kbd_cmd(f, 0x03);
	kbd_cmd(f, 0xf0);
	kbd_cmd(f, 0x00);
	EXPECT(f, 0xfa, 0xfa, 0xfa, 0xfa, 0x02);
	kbd_cmd(f, 0x42);
	EXPECT(f, 0xfe);
	kbd_cmd(f, 0xfe); /* resend the last byte */
	EXPECT(f, 0xfe);
	kbd_cmd(f, 0xff);
	EXPECT(f, 0xfa, 0xaa);
	/* A command instead of a parameter is that command. */
	kbd_cmd(f, 0xed);
	kbd_cmd(f, 0xee);
	EXPECT(f, 0xfa, 0xee);
}

static void test_scan_codes_translated(void **state)
{
	struct fixture *f = *state;

	key(f, KEY_A, true);
	key(f, KEY_A, false);
	EXPECT(f, 0x1e, 0x9e);
	key(f, KEY_RIGHT, true);
	key(f, KEY_RIGHT, false);
	EXPECT(f, 0xe0, 0x4d, 0xe0, 0xcd);
	key(f, KEY_PAUSE, true);
	key(f, KEY_PAUSE, false);
	EXPECT(f, 0xe1, 0x1d, 0x45, 0xe1, 0x9d, 0xc5);
	key(f, KEY_SYSRQ, true);
	key(f, KEY_SYSRQ, false);
	EXPECT(f, 0xe0, 0x2a, 0xe0, 0x37, 0xe0, 0xb7, 0xe0, 0xaa);
	key(f, KEY_F7, true);
	EXPECT(f, 0x41);
}

static void test_scan_codes_set2_and_set1(void **state)
{
	struct fixture *f = *state;

	set_cmdbyte(f, 0x07); /* no translation: the keyboard's own bytes */
	key(f, KEY_A, true);
	key(f, KEY_A, false);
	key(f, KEY_DELETE, true);
	key(f, KEY_DELETE, false);
	EXPECT(f, 0x1c, 0xf0, 0x1c, 0xe0, 0x71, 0xe0, 0xf0, 0x71);
	kbd_cmd(f, 0xf0);
	kbd_cmd(f, 0x01);
	EXPECT(f, 0xfa, 0xfa);
	key(f, KEY_A, true);
	key(f, KEY_A, false);
	key(f, KEY_DELETE, true);
	key(f, KEY_DELETE, false);
	EXPECT(f, 0x1e, 0x9e, 0xe0, 0x53, 0xe0, 0xd3);
}

/* The set-1 code of the keys 1..88 is the Linux key code: check set 2 and the translation. */
static void test_set2_table_against_translation(void **state)
{
	uint8_t b[8];

	for (unsigned k = 1; k <= KEY_F12; k++) {
		unsigned n = ps2kbd_set2_make(k, b);

		if (k == 84 || k == 85) /* no key */
			continue;
		assert_int_equal(n, 1);
		if (ps2_translate(b[0]) != k)
			fail_msg("key %u: set 2 0x%02x translates to 0x%02x", k, b[0],
				 ps2_translate(b[0]));
	}
	assert_int_equal(ps2_translate(0x00), 0xff); /* overrun */
	assert_int_equal(ps2_translate(0xfa), 0xfa); /* ACK passes */
}

static void test_scanning_disabled(void **state)
{
	struct fixture *f = *state;

	kbd_cmd(f, 0xf5);
	EXPECT(f, 0xfa);
	key(f, KEY_A, true);
	EXPECT_NONE(f);
	kbd_cmd(f, 0xf4);
	EXPECT(f, 0xfa);
	key(f, KEY_B, true);
	EXPECT(f, 0x30);
}

static void test_client_autorepeat_dropped(void **state)
{
	struct fixture *f = *state;

	key(f, KEY_A, true);
	key(f, KEY_A, true);
	key(f, KEY_A, true);
	key(f, KEY_A, false);
	key(f, KEY_A, false);
	EXPECT(f, 0x1e, 0x9e);
}

static void test_typematic(void **state)
{
	struct fixture *f = *state;
	uint64_t t0 = vclock_ns(&f->vm.ev);

	key(f, KEY_A, true);
	EXPECT(f, 0x1e);
	evloop_advance(&f->vm.ev, t0 + 499 * MS);
	EXPECT_NONE(f);
	/* Default: 500 ms delay, then 10.9 per second (91.74 ms). */
	evloop_advance(&f->vm.ev, t0 + 500 * MS);
	EXPECT(f, 0x1e);
	evloop_advance(&f->vm.ev, t0 + 591 * MS);
	EXPECT_NONE(f);
	evloop_advance(&f->vm.ev, t0 + 592 * MS);
	EXPECT(f, 0x1e);
	key(f, KEY_A, false);
	EXPECT(f, 0x9e);
	evloop_advance(&f->vm.ev, t0 + 2000 * MS);
	EXPECT_NONE(f);
	/* F3 00: 250 ms delay, 30 per second (33.36 ms). */
	kbd_cmd(f, 0xf3);
	kbd_cmd(f, 0x00);
	EXPECT(f, 0xfa, 0xfa);
	t0 = vclock_ns(&f->vm.ev);
	key(f, KEY_B, true);
	evloop_advance(&f->vm.ev, t0 + 250 * MS);
	evloop_advance(&f->vm.ev, t0 + 284 * MS);
	EXPECT(f, 0x30, 0x30, 0x30);
	/* Pause does not repeat. */
	key(f, KEY_B, false);
	key(f, KEY_PAUSE, true);
	EXPECT(f, 0xb0, 0xe1, 0x1d, 0x45, 0xe1, 0x9d, 0xc5);
	evloop_advance(&f->vm.ev, t0 + 2000 * MS);
	EXPECT_NONE(f);
	/* Due many periods ago (the VM was paused): one repeat, then the rate from now on. */
	key(f, KEY_PAUSE, false);
	kbd_cmd(f, 0xf3);
	kbd_cmd(f, 0x20); /* 500 ms, 30 per second */
	EXPECT(f, 0xfa, 0xfa);
	t0 = vclock_ns(&f->vm.ev);
	key(f, KEY_A, true);
	EXPECT(f, 0x1e);
	assert_int_equal(f->d->ops->pause(f->d), 0);
	evloop_advance(&f->vm.ev, t0 + 5000 * MS);
	assert_int_equal(f->d->ops->resume(f->d), 0);
	EXPECT_NONE(f);
	evloop_advance(&f->vm.ev, t0 + 5000 * MS);
	EXPECT(f, 0x1e);
	evloop_advance(&f->vm.ev, t0 + 5033 * MS);
	EXPECT_NONE(f);
	evloop_advance(&f->vm.ev, t0 + 5034 * MS);
	EXPECT(f, 0x1e);
	/* Scanning disabled while the key is held: no more repeats, none when it is back. */
	kbd_cmd(f, 0xf5);
	EXPECT(f, 0xfa);
	evloop_advance(&f->vm.ev, t0 + 6000 * MS);
	EXPECT_NONE(f);
	kbd_cmd(f, 0xf4);
	EXPECT(f, 0xfa);
	evloop_advance(&f->vm.ev, t0 + 7000 * MS);
	EXPECT_NONE(f);
}

static void test_keyboard_overrun(void **state)
{
	struct fixture *f = *state;
	uint8_t buf[PS2_QUEUE_SIZE + 8];
	unsigned n;

	set_cmdbyte(f, 0x07);
	out8(f, CMD, 0xad); /* hold everything in the keyboard */
	for (unsigned i = 0; i < 200; i++) {
		key(f, KEY_A, true);
		key(f, KEY_A, false);
	}
	out8(f, CMD, 0xae);
	n = drain(f, buf, sizeof(buf));
	assert_true(n <= PS2_QUEUE_SIZE);
	assert_int_equal(buf[n - 1], 0x00); /* the overrun code, once, last */
	for (unsigned i = 0; i + 1 < n; i += 3) {
		assert_int_equal(buf[i], 0x1c);
		assert_int_equal(buf[i + 1], 0xf0);
		assert_int_equal(buf[i + 2], 0x1c);
	}
	/* Read empty: keys are reported again. */
	key(f, KEY_B, true);
	EXPECT(f, 0x32);
}

/* ---- the mouse ---- */

static void mouse_on(struct fixture *f)
{
	aux_cmd(f, 0xf4);
	EXPECT(f, 0xfa);
}

static void set_rate(struct fixture *f, uint8_t r)
{
	aux_cmd(f, 0xf3);
	aux_cmd(f, r);
	EXPECT(f, 0xfa, 0xfa);
}

static void test_mouse_identify_and_wheel_detection(void **state)
{
	struct fixture *f = *state;

	aux_cmd(f, 0xff);
	EXPECT(f, 0xfa, 0xaa, 0x00);
	aux_cmd(f, 0xf2);
	EXPECT(f, 0xfa, 0x00);
	/* The explorer knock before the wheel one does nothing. */
	set_rate(f, 200);
	set_rate(f, 200);
	set_rate(f, 80);
	aux_cmd(f, 0xf2);
	EXPECT(f, 0xfa, 0x00);
	set_rate(f, 200);
	set_rate(f, 100);
	set_rate(f, 80);
	aux_cmd(f, 0xf2);
	EXPECT(f, 0xfa, 0x03);
	set_rate(f, 200);
	set_rate(f, 200);
	set_rate(f, 80);
	aux_cmd(f, 0xf2);
	EXPECT(f, 0xfa, 0x04);
	/* A bad rate is an error; reset forgets the wheel. */
	aux_cmd(f, 0xf3);
	aux_cmd(f, 33);
	EXPECT(f, 0xfa, 0xfc);
	aux_cmd(f, 0xff);
	aux_cmd(f, 0xf2);
	EXPECT(f, 0xfa, 0xaa, 0x00, 0xfa, 0x00);
}

static void test_mouse_stream_packets(void **state)
{
	struct fixture *f = *state;

	/* Disabled after reset: movement is not reported. */
	console_pointer_event(f->con, 100, 100, 0);
	console_pointer_event(f->con, 110, 105, 0);
	EXPECT_NONE(f);
	aux_cmd(f, 0xe8);
	aux_cmd(f, 0x03); /* 8 counts/mm: one count per pixel */
	EXPECT(f, 0xfa, 0xfa);
	mouse_on(f);
	console_pointer_event(f->con, 120, 100, 0);
	/* x +10, y 5 pixels up the screen: PS/2 counts y upwards, so +5. */
	EXPECT(f, 0x08, 10, 5);
	console_pointer_event(f->con, 120, 103, 0);
	EXPECT(f, 0x28, 0, 0xfd);
	assert_int_equal(f->irq[12], 0);
	assert_true(f->edges[12] >= 1);
	console_pointer_event(f->con, 120, 103, 0x01); /* left down */
	console_pointer_event(f->con, 120, 103, 0x00);
	console_pointer_event(f->con, 120, 103, 0x04); /* right */
	console_pointer_event(f->con, 120, 103, 0x02); /* middle */
	EXPECT(f, 0x09, 0, 0, 0x08, 0, 0, 0x0a, 0, 0, 0x0c, 0, 0);
	/* Big moves are split, nothing is lost. */
	console_pointer_event(f->con, 520, 103, 0x00);
	EXPECT(f, 0x08, 255, 0, 0x08, 145, 0);
}

static void test_mouse_resolution_and_scaling(void **state)
{
	struct fixture *f = *state;

	console_pointer_event(f->con, 0, 0, 0);
	mouse_on(f);
	/* Default 4 counts/mm: half a count per pixel, remainders kept. */
	console_pointer_event(f->con, 3, 0, 0);
	EXPECT(f, 0x08, 1, 0);
	console_pointer_event(f->con, 4, 0, 0);
	EXPECT(f, 0x08, 1, 0);
	aux_cmd(f, 0xe8);
	aux_cmd(f, 0x03);
	aux_cmd(f, 0xe7); /* 2:1 */
	EXPECT(f, 0xfa, 0xfa, 0xfa);
	console_pointer_event(f->con, 7, 0, 0);
	console_pointer_event(f->con, 17, 0, 0);
	EXPECT(f, 0x08, 3, 0, 0x08, 20, 0);
	aux_cmd(f, 0xe9);
	EXPECT(f, 0xfa, 0x30, 0x03, 100);
	/* Leftwards under 2:1: -3 stays -3, -10 becomes -20 (X sign bit set). */
	console_pointer_event(f->con, 14, 0, 0);
	EXPECT(f, 0x18, 0xfd, 0);
	console_pointer_event(f->con, 4, 0, 0);
	EXPECT(f, 0x18, 0xec, 0);
	/* Wrap mode: movement is not reported, bytes come back; EC leaves it. */
	aux_cmd(f, 0xee);
	EXPECT(f, 0xfa);
	console_pointer_event(f->con, 40, 0, 0);
	EXPECT_NONE(f);
	aux_cmd(f, 0x42);
	EXPECT(f, 0x42);
	aux_cmd(f, 0xec);
	EXPECT(f, 0xfa);
	console_pointer_event(f->con, 41, 0, 0);
	EXPECT(f, 0x08, 1, 0);
}

static void test_mouse_wheel_packets(void **state)
{
	struct fixture *f = *state;

	set_rate(f, 200);
	set_rate(f, 100);
	set_rate(f, 80);
	mouse_on(f);
	console_pointer_event(f->con, 0, 0, 0x08); /* wheel up press */
	console_pointer_event(f->con, 0, 0, 0x00);
	console_pointer_event(f->con, 0, 0, 0x10); /* wheel down */
	console_pointer_event(f->con, 0, 0, 0x00);
	/* IntelliMouse: z is negative for "up". */
	EXPECT(f, 0x08, 0, 0, 0xff, 0x08, 0, 0, 0x01);
	set_rate(f, 200);
	set_rate(f, 200);
	set_rate(f, 80);
	console_pointer_event(f->con, 0, 0, 0x88); /* side button and wheel up */
	EXPECT(f, 0x08, 0, 0, 0x1f);
}

static void test_mouse_remote_wrap_status(void **state)
{
	struct fixture *f = *state;

	aux_cmd(f, 0xe8);
	aux_cmd(f, 0x03);
	aux_cmd(f, 0xf0);
	EXPECT(f, 0xfa, 0xfa, 0xfa);
	console_pointer_event(f->con, 0, 0, 0);
	console_pointer_event(f->con, 4, 2, 0x01);
	EXPECT_NONE(f);
	aux_cmd(f, 0xeb);
	EXPECT(f, 0xfa, 0x29, 4, 0xfe);
	aux_cmd(f, 0xeb);
	EXPECT(f, 0xfa, 0x09, 0, 0);
	aux_cmd(f, 0xe9);
	EXPECT(f, 0xfa, 0x44, 0x03, 100);
	aux_cmd(f, 0xee);
	aux_cmd(f, 0x12);
	aux_cmd(f, 0xf4); /* echoed, not obeyed */
	aux_cmd(f, 0xec);
	EXPECT(f, 0xfa, 0x12, 0xf4, 0xfa);
	aux_cmd(f, 0x55);
	EXPECT(f, 0xfe);
}

/*
 * Every sample rate the mouse takes reads back in its status; a knock that does not match
 * the next step (the wheel knock again, with the wheel on) changes nothing; a command byte
 * where a parameter was expected cancels the parameter and runs; wrap mode ends on a reset.
 */
static void test_mouse_rates_and_knocks(void **state)
{
	static const uint8_t rates[] = { 10, 20, 40, 60, 80, 100, 200 };
	struct fixture *f = *state;

	for (unsigned i = 0; i < sizeof(rates); i++) {
		set_rate(f, rates[i]);
		aux_cmd(f, 0xe9);
		{
			const uint8_t want[] = { 0xfa, 0x00, 0x02, rates[i] };

			expect(f, want, sizeof(want));
		}
	}
	/* Wheel on, then the wheel knock again: still 3. */
	set_rate(f, 200);
	set_rate(f, 100);
	set_rate(f, 80);
	set_rate(f, 200);
	set_rate(f, 100);
	set_rate(f, 80);
	aux_cmd(f, 0xf2);
	EXPECT(f, 0xfa, 0x03);
	set_rate(f, 200);
	set_rate(f, 100);
	set_rate(f, 200);
	set_rate(f, 80);
	aux_cmd(f, 0xf2);
	EXPECT(f, 0xfa, 0x03); /* 100, 200, 80 is no knock */
	/* Resolution 4 is an error; F3h then F2h: the rate is dropped, F2h answered. */
	aux_cmd(f, 0xe8);
	aux_cmd(f, 4);
	EXPECT(f, 0xfa, 0xfc);
	aux_cmd(f, 0xf3);
	aux_cmd(f, 0xf2);
	EXPECT(f, 0xfa, 0xfa, 0x03);
	aux_cmd(f, 0xe9);
	EXPECT(f, 0xfa, 0x00, 0x02, 80);
	/* Wrap mode: echoes, until FFh resets the mouse. */
	aux_cmd(f, 0xee);
	aux_cmd(f, 0x33);
	EXPECT(f, 0xfa, 0x33);
	aux_cmd(f, 0xff);
	EXPECT(f, 0xfa, 0xaa, 0x00);
	aux_cmd(f, 0xf2);
	EXPECT(f, 0xfa, 0x00);
}

/*
 * Scan code sets past 3 are asked for again (RESEND); F6h and F5h load the defaults, scan code
 * set 2 among them (as keyboards do: a driver that sends F6h expects set 2 afterwards).
 */
static void test_keyboard_set_and_defaults(void **state)
{
	struct fixture *f = *state;

	set_cmdbyte(f, 0x07); /* no translation: the set number as it is */
	kbd_cmd(f, 0xf0);
	kbd_cmd(f, 0x04);
	EXPECT(f, 0xfa, 0xfe);
	kbd_cmd(f, 0xf0);
	kbd_cmd(f, 0x01);
	kbd_cmd(f, 0xf0);
	kbd_cmd(f, 0x00);
	EXPECT(f, 0xfa, 0xfa, 0xfa, 0xfa, 0x01);
	for (uint8_t c = 0xf7; c <= 0xfd; c++) {
		kbd_cmd(f, c);
		EXPECT(f, 0xfa);
	}
	kbd_cmd(f, 0xf6);
	kbd_cmd(f, 0xf0);
	kbd_cmd(f, 0x00);
	EXPECT(f, 0xfa, 0xfa, 0xfa, 0x02);
	/* F5h (disable) loads the defaults too, and stops scanning until F4h. */
	kbd_cmd(f, 0xf0);
	kbd_cmd(f, 0x01);
	kbd_cmd(f, 0xf5);
	kbd_cmd(f, 0xf0);
	kbd_cmd(f, 0x00);
	EXPECT(f, 0xfa, 0xfa, 0xfa, 0xfa, 0xfa, 0x02);
	key(f, KEY_A, true);
	key(f, KEY_A, false);
	EXPECT_NONE(f);
	kbd_cmd(f, 0xf4);
	EXPECT(f, 0xfa);
	key(f, KEY_A, true);
	EXPECT(f, 0x1c);
}

static void test_mouse_full_queue_merges_movement(void **state)
{
	struct fixture *f = *state;
	uint8_t buf[PS2_QUEUE_SIZE * 2];
	int sum = 0;
	unsigned n;

	aux_cmd(f, 0xe8);
	aux_cmd(f, 0x03);
	EXPECT(f, 0xfa, 0xfa);
	mouse_on(f);
	out8(f, CMD, 0xa7);
	console_pointer_event(f->con, 0, 0, 0);
	for (unsigned i = 1; i <= 300; i++)
		console_pointer_event(f->con, i, 0, 0);
	out8(f, CMD, 0xa8);
	n = drain(f, buf, sizeof(buf));
	assert_int_equal(n % 3, 0);
	for (unsigned i = 0; i < n; i += 3) {
		assert_int_equal(buf[i] & 0x08, 0x08);
		sum += buf[i + 1] | (buf[i] & 0x10 ? -256 : 0);
	}
	assert_int_equal(sum, 300);
}

/* ---- snapshot ---- */

static void busy_state(struct fixture *f)
{
	set_cmdbyte(f, 0x07);
	out8(f, CMD, 0xad);
	set_rate(f, 200);
	out8(f, CMD, 0xa7);
	key(f, KEY_Q, true);
	key(f, KEY_W, true);
	aux_cmd(f, 0xf4);
	console_pointer_event(f->con, 10, 10, 0);
	console_pointer_event(f->con, 30, 20, 1);
	out8(f, CMD, 0xaa); /* a controller reply waits in the output buffer */
	kbd_cmd(f, 0xed);   /* and the keyboard a parameter */
}

static void test_snapshot_round_trip(void **state)
{
	struct fixture *f = *state, *g;
	uint8_t *a, *b;
	size_t alen, blen;

	busy_state(f);
	a = devsnap_save_copy(f->d, &alen);
	assert_int_equal(devsnap_load(f->d, a, alen, 1), 0);
	f->d->ops->resume(f->d);
	b = devsnap_save_copy(f->d, &blen);
	assert_int_equal(alen, blen);
	assert_memory_equal(a, b, alen);
	free(b);

	/* Into a fresh controller: the same bytes come out, in the same order. */
	setup((void **)&g);
	assert_int_equal(devsnap_load(g->d, a, alen, 1), 0);
	assert_int_equal(g->irq[1], 0); /* lines wait for resume */
	g->d->ops->resume(g->d);
	assert_int_equal(g->irq[1], 1);
	b = devsnap_save_copy(g->d, &blen);
	assert_int_equal(alen, blen);
	assert_memory_equal(a, b, alen);
	free(b);
	kbd_cmd(g, 0x02); /* the LED parameter */
	out8(g, CMD, 0xae);
	out8(g, CMD, 0xa8);
	/* Controller reply, keyboard replies and keys, then the mouse's ACK and packets (4 counts/mm). */
	EXPECT(g, 0x55, 0xfa, 0xfa, 0x15, 0x1d, 0xfa, 0x28, 5, 0xfb, 0x29, 10, 0xfb);
	teardown((void **)&g);
	owner = f;
	free(a);
}

static void test_snapshot_refused(void **state)
{
	struct fixture *f = *state;
	uint8_t *a, *c;
	size_t alen;

	a = devsnap_save_copy(f->d, &alen);
	c = malloc(alen + 1);
	assert_int_equal(a[ST_KBD_SCANSET], 2); /* the layout these offsets assume */

	memcpy(c, a, alen);
	c[ST_KBD_SCANSET] = 3;
	devsnap_expect_refused(f->d, c, alen, 1);
	memcpy(c, a, alen);
	c[ST_KBD_PENDING] = 0x42;
	devsnap_expect_refused(f->d, c, alen, 1);
	memcpy(c, a, alen);
	c[ST_PENDING] = 0x99;
	devsnap_expect_refused(f->d, c, alen, 1);
	memcpy(c, a, alen);
	c[ST_CMDBYTE] = 0x88;
	devsnap_expect_refused(f->d, c, alen, 1);
	memcpy(c, a, alen);
	c[ST_CTL_COUNT] = 9; /* longer than the controller's queue */
	devsnap_expect_refused(f->d, c, alen, 1);
	devsnap_expect_refused(f->d, a, alen - 1, 1);
	memcpy(c, a, alen);
	c[alen] = 0;
	devsnap_expect_refused(f->d, c, alen + 1, 1);
	devsnap_expect_refused(f->d, a, alen, 2);
	/* Mouse data flagged in an empty output buffer. */
	memcpy(c, a, alen);
	c[ST_OBF] = 0;
	c[ST_OBF_AUX] = 1;
	devsnap_expect_refused(f->d, c, alen, 1);
	/* Only commands that take a data byte can be waiting for one: D1-D4, not D5. */
	memcpy(c, a, alen);
	c[ST_PENDING] = 0xd5;
	devsnap_expect_refused(f->d, c, alen, 1);
	c[ST_PENDING] = 0x5f;
	devsnap_expect_refused(f->d, c, alen, 1);
	c[ST_PENDING] = 0x80;
	devsnap_expect_refused(f->d, c, alen, 1);
	c[ST_PENDING] = 0xd4;
	assert_int_equal(devsnap_load(f->d, c, alen, 1), 0);
	c[ST_PENDING] = 0x60;
	assert_int_equal(devsnap_load(f->d, c, alen, 1), 0);
	free(c);
	free(a);
}

static void test_paused_input_waits(void **state)
{
	struct fixture *f = *state;
	uint8_t *a;
	size_t alen;

	f->d->ops->pause(f->d);
	key(f, KEY_A, true);
	assert_int_equal(f->irq[1], 0);
	assert_int_equal(in8(f, CMD) & 1, 0);
	/* The event is in the state the snapshot takes now. */
	a = devsnap_save_copy(f->d, &alen);
	f->d->ops->resume(f->d);
	assert_int_equal(f->irq[1], 1);
	EXPECT(f, 0x1e);
	assert_int_equal(devsnap_load(f->d, a, alen, 1), 0);
	f->d->ops->resume(f->d);
	EXPECT(f, 0x1e);
	free(a);
}

static void test_no_repeat_after_load(void **state)
{
	struct fixture *f = *state;
	uint64_t t0 = vclock_ns(&f->vm.ev);
	uint8_t *a;
	size_t alen;

	key(f, KEY_A, true);
	EXPECT(f, 0x1e);
	a = devsnap_save_copy(f->d, &alen);
	assert_int_equal(devsnap_load(f->d, a, alen, 1), 0);
	f->d->ops->resume(f->d);
	evloop_advance(&f->vm.ev, t0 + 2000 * MS);
	EXPECT_NONE(f);
	free(a);
}

/* Every restore-time check on the PS/2 devices' state, one field out of range at a time. */
static void test_ps2_checks(void **state)
{
	static const struct {
		unsigned what;
		int32_t v;
		const char *why;
	} mouse[] = {
		{ 0, 9, "mouse reply queue" },	  { 1, 300, "mouse data queue" },
		{ 2, 30, "mouse sample rate 30" }, { 3, 4, "mouse resolution" },
		{ 4, 2, "mouse ID 2" },		  { 5, 0xf4, "parameter of 0xf4" },
		{ 6, 0x20, "mouse buttons" },	  { 7, 0x20, "mouse reported buttons" },
		{ 8, 1 << 25, "x movement" },	  { 9, -(1 << 25), "y movement" },
		{ 10, 1 << 25, "wheel movement" }, { 11, 8, "x remainder" },
		{ 12, -8, "y remainder" },	  { 13, 256, "mouse reply queue" },
	},
	  kbd[] = {
		  { 0, 9, "keyboard reply queue" },	  { 1, 300, "keyboard data queue" },
		  { 2, 3, "keyboard scan code set 3" }, { 3, 0xf4, "parameter of 0xf4" },
		  { 4, 8, "keyboard LEDs" },		  { 5, 0x80, "keyboard typematic byte" },
	  };
	struct ps2mouse good_m, m;
	struct ps2kbd good_k, k;
	struct sstream s;

	/* As the controller has them: zeroed (calloc), then reset. */
	memset(&good_m, 0, sizeof(good_m));
	ps2mouse_reset(&good_m);
	ss_init_load(&s, NULL, 0);
	ps2mouse_check(&s, &good_m);
	assert_int_equal(ss_error(&s), 0);
	/* What a driver can set passes: each rate, resolution, ID and waiting command. */
	for (unsigned i = 0; i < 4; i++) {
		static const uint8_t ok[4][3] = {
			{ 10, 0, 0 }, { 200, 3, 3 }, { 40, 1, 4 }, { 100, 2, 0 }
		};

		m = good_m;
		m.rate = ok[i][0];
		m.res = ok[i][1];
		m.id = ok[i][2];
		m.pending = i == 1 ? 0xf3 : i == 2 ? 0xe8 : 0;
		ss_init_load(&s, NULL, 0);
		ps2mouse_check(&s, &m);
		assert_int_equal(ss_error(&s), 0);
	}
	for (size_t i = 0; i < sizeof(mouse) / sizeof(mouse[0]); i++) {
		int32_t v = mouse[i].v;

		m = good_m;
		switch (mouse[i].what) {
		case 0:
			m.reply.count = (uint16_t)v;
			break;
		case 1:
			m.data.count = (uint16_t)v;
			break;
		case 2:
			m.rate = (uint8_t)v;
			break;
		case 3:
			m.res = (uint8_t)v;
			break;
		case 4:
			m.id = (uint8_t)v;
			break;
		case 5:
			m.pending = (uint8_t)v;
			break;
		case 6:
			m.buttons = (uint8_t)v;
			break;
		case 7:
			m.reported = (uint8_t)v;
			break;
		case 8:
			m.dx = v;
			break;
		case 9:
			m.dy = v;
			break;
		case 10:
			m.dz = v;
			break;
		case 11:
			m.fx = v;
			break;
		case 12:
			m.fy = v;
			break;
		case 13:
			m.reply.head = (uint16_t)v;
			break;
		}
		ss_init_load(&s, NULL, 0);
		ps2mouse_check(&s, &m);
		if (!ss_error(&s) || !strstr(s.msg, mouse[i].why))
			fail_msg("mouse case %zu: '%s' lacks '%s'", i, s.msg, mouse[i].why);
	}
	memset(&good_k, 0, sizeof(good_k));
	ps2kbd_reset(&good_k);
	ss_init_load(&s, NULL, 0);
	ps2kbd_check(&s, &good_k);
	assert_int_equal(ss_error(&s), 0);
	for (size_t i = 0; i < sizeof(kbd) / sizeof(kbd[0]); i++) {
		int32_t v = kbd[i].v;

		k = good_k;
		switch (kbd[i].what) {
		case 0:
			k.reply.count = (uint16_t)v;
			break;
		case 1:
			k.data.count = (uint16_t)v;
			break;
		case 2:
			k.scanset = (uint8_t)v;
			break;
		case 3:
			k.pending = (uint8_t)v;
			break;
		case 4:
			k.leds = (uint8_t)v;
			break;
		case 5:
			k.typematic = (uint8_t)v;
			break;
		}
		ss_init_load(&s, NULL, 0);
		ps2kbd_check(&s, &k);
		if (!ss_error(&s) || !strstr(s.msg, kbd[i].why))
			fail_msg("keyboard case %zu: '%s' lacks '%s'", i, s.msg, kbd[i].why);
	}
	/* The keyboard's waiting commands and scan set 1 pass. */
	for (unsigned i = 0; i < 3; i++) {
		k = good_k;
		k.pending = (uint8_t[]){ 0xed, 0xf0, 0xf3 }[i];
		k.scanset = 1;
		ss_init_load(&s, NULL, 0);
		ps2kbd_check(&s, &k);
		assert_int_equal(ss_error(&s), 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_controller_commands, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mouse_rates_and_knocks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_keyboard_set_and_defaults, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reset_line, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reset_through_output_port, setup, teardown),
		cmocka_unit_test_setup_teardown(test_loopback_and_aux_flag, setup, teardown),
		cmocka_unit_test_setup_teardown(test_interrupt_edges, setup, teardown),
		cmocka_unit_test_setup_teardown(test_port_disable_holds_data, setup, teardown),
		cmocka_unit_test_setup_teardown(test_keyboard_commands, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scan_codes_translated, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scan_codes_set2_and_set1, setup, teardown),
		cmocka_unit_test(test_set2_table_against_translation),
		cmocka_unit_test_setup_teardown(test_scanning_disabled, setup, teardown),
		cmocka_unit_test_setup_teardown(test_client_autorepeat_dropped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_typematic, setup, teardown),
		cmocka_unit_test_setup_teardown(test_keyboard_overrun, setup, teardown),
		cmocka_unit_test(test_ps2_checks),
		cmocka_unit_test_setup_teardown(test_mouse_identify_and_wheel_detection, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_mouse_stream_packets, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mouse_resolution_and_scaling, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mouse_wheel_packets, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mouse_remote_wrap_status, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mouse_full_queue_merges_movement, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_paused_input_waits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_repeat_after_load, setup, teardown),
	};

	return cmocka_run_group_tests_name("atkbdc", tests, NULL, NULL);
}
