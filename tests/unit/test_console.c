// SPDX-License-Identifier: BSD-2-Clause
/*
 * The console backend's input side: keysyms to key codes, routing to the front end with the
 * highest priority that is active, absolute and relative pointers, autorepeat and release.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <linux/input-event-codes.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "backend/console.h"
#include "backend/png.h"
#include "vm.h"

struct rec {
	unsigned keys[32], nkeys;
	bool downs[32];
	int dx, dy, dz, nrel;
	unsigned ax, ay, buttons, nabs;
	bool active;
};

static void rec_key(void *o, unsigned k, bool down)
{
	struct rec *r = o;

	r->downs[r->nkeys] = down;
	r->keys[r->nkeys++] = k;
}

static void rec_rel(void *o, int dx, int dy, int dz, unsigned buttons)
{
	struct rec *r = o;

	r->dx += dx;
	r->dy += dy;
	r->dz += dz;
	r->buttons = buttons;
	r->nrel++;
}

static void rec_abs(void *o, unsigned x, unsigned y, int dz, unsigned buttons)
{
	struct rec *r = o;

	r->ax = x;
	r->ay = y;
	r->dz += dz;
	r->buttons = buttons;
	r->nabs++;
}

static bool rec_active(void *o)
{
	return ((struct rec *)o)->active;
}

static const struct console_input_ops kbd_ops = {
	.type = CONSOLE_KEYBOARD, .name = "kbd", .priority = CONSOLE_PRIO_PS2, .key = rec_key
};
static const struct console_input_ops mouse_ops = {
	.type = CONSOLE_POINTER_REL, .name = "mouse", .priority = CONSOLE_PRIO_PS2, .rel = rec_rel
};
static const struct console_input_ops tablet_ops = {
	.type = CONSOLE_POINTER_ABS,
	.name = "tablet",
	.priority = CONSOLE_PRIO_TABLET,
	.abs = rec_abs,
	.active = rec_active,
};

static void test_keysyms(void **state)
{
	assert_int_equal(keymap_keysym_to_key('a'), KEY_A);
	assert_int_equal(keymap_keysym_to_key('A'), KEY_A);
	assert_int_equal(keymap_keysym_to_key('!'), KEY_1);
	assert_int_equal(keymap_keysym_to_key('~'), KEY_GRAVE);
	assert_int_equal(keymap_keysym_to_key('"'), KEY_APOSTROPHE);
	assert_int_equal(keymap_keysym_to_key(' '), KEY_SPACE);
	assert_int_equal(keymap_keysym_to_key(0xff0d), KEY_ENTER);
	assert_int_equal(keymap_keysym_to_key(0xff1b), KEY_ESC);
	assert_int_equal(keymap_keysym_to_key(0xff52), KEY_UP);
	assert_int_equal(keymap_keysym_to_key(0xffbe), KEY_F1);
	assert_int_equal(keymap_keysym_to_key(0xffc9), KEY_F12);
	assert_int_equal(keymap_keysym_to_key(0xffe1), KEY_LEFTSHIFT);
	assert_int_equal(keymap_keysym_to_key(0xffb5), KEY_KP5);
	assert_int_equal(keymap_keysym_to_key(0xffff), KEY_DELETE);
	assert_int_equal(keymap_keysym_to_key(0x20ac), 0); /* the euro sign: no US key */
	/* Every printable ASCII character has a key. */
	for (uint32_t c = 0x20; c < 0x7f; c++)
		assert_int_not_equal(keymap_keysym_to_key(c), 0);
}

static void test_routing(void **state)
{
	struct vm vm;
	struct console *c;
	struct console_input *k, *m, *t;
	struct rec rk = { 0 }, rm = { 0 }, rt = { 0 };

	vm_init_bare(&vm, true);
	c = console_get(&vm);
	assert_non_null(c);
	assert_ptr_equal(console_of(&vm), c);
	k = console_input_add(c, &kbd_ops, &rk);
	m = console_input_add(c, &mouse_ops, &rm);
	t = console_input_add(c, &tablet_ops, &rt);

	/* Keys: autorepeat and unmatched releases are dropped. */
	console_keysym_event(c, 'x', true);
	console_keysym_event(c, 'x', true);
	console_keysym_event(c, 'X', false);
	console_keysym_event(c, 'x', false);
	console_keysym_event(c, 0x20ac, true);
	assert_int_equal(rk.nkeys, 2);
	assert_int_equal(rk.keys[0], KEY_X);
	assert_true(rk.downs[0]);
	assert_false(rk.downs[1]);

	/* The tablet is inactive: the mouse gets differences. */
	console_pointer_event(c, 100, 50, 0);
	assert_int_equal(rm.dx, 100); /* from where the pointer started, the corner */
	rm.dx = rm.dy = 0;
	console_pointer_event(c, 90, 70, 0x01);
	assert_int_equal(rt.nabs, 0);
	assert_int_equal(rm.dx, -10);
	assert_int_equal(rm.dy, 20);
	assert_int_equal(rm.buttons, CONSOLE_BTN_LEFT);
	/* Nothing changed: nothing sent. */
	console_pointer_event(c, 90, 70, 0x01);
	assert_int_equal(rm.nrel, 2);

	/* Active, it wins: scaled positions, wheel clicks counted on press. */
	rt.active = true;
	console_pointer_event(c, 0, 0, 0x04);
	assert_int_equal(rt.nabs, 1);
	assert_int_equal(rt.buttons, CONSOLE_BTN_RIGHT);
	console_pointer_event(c, 5, 5, 0x08);
	console_pointer_event(c, 5, 5, 0x00);
	console_pointer_event(c, 5, 5, 0x10);
	assert_int_equal(rt.dz, 0);
	console_pointer_event(c, 5, 5, 0x08);
	assert_int_equal(rt.dz, 1);
	assert_int_equal(rm.nrel, 2);

	/* A client that leaves lets go of what it held. */
	console_keysym_event(c, 0xffe1, true);
	console_release_all(c);
	assert_int_equal(rk.keys[rk.nkeys - 1], KEY_LEFTSHIFT);
	assert_false(rk.downs[rk.nkeys - 1]);
	assert_int_equal(rt.buttons, 0);

	/* Gone: nothing reaches a removed front end. */
	console_input_remove(t);
	console_pointer_event(c, 7, 7, 0);
	assert_int_equal(rm.nrel, 3);
	console_input_remove(k);
	console_input_remove(m);
	console_put(c);
	assert_null(vm.console);
	vm_destroy(&vm);
}

static void refresh_4x2(void *opaque, struct console_surface *s, bool full)
{
	unsigned *calls = opaque;

	(*calls)++;
	if (s->width != 400) {
		assert_int_equal(console_surface_resize(s, 400, 200), 0);
		for (unsigned i = 0; i < 400 * 200; i++)
			s->pixels[i] = i;
	}
}

static const struct console_display_ops disp_ops = { .refresh = refresh_4x2 };

static void test_display_scaling_and_image(void **state)
{
	struct vm vm;
	struct console *c;
	struct rec rt = { .active = true };
	struct console_input *t;
	unsigned calls = 0, w, h;
	uint32_t *px;
	char err[128];

	vm_init_bare(&vm, true);
	c = console_get(&vm);
	t = console_input_add(c, &tablet_ops, &rt);
	assert_int_equal(console_snapshot_image(c, &px, &w, &h), -ENODEV);
	assert_int_equal(console_display_attach(c, &disp_ops, &calls, NULL, err, sizeof(err)), 0);
	assert_int_not_equal(console_display_attach(c, &disp_ops, &calls, NULL, err, sizeof(err)),
			     0);
	assert_int_equal(console_snapshot_image(c, &px, &w, &h), 0);
	assert_int_equal(calls, 1);
	assert_int_equal(w, 400);
	assert_int_equal(h, 200);
	assert_int_equal(px[401], 401);
	free(px);
	console_pointer_event(c, 399, 199, 0);
	assert_int_equal(rt.ax, CONSOLE_ABS_MAX);
	assert_int_equal(rt.ay, CONSOLE_ABS_MAX);
	console_pointer_event(c, 0, 100, 0);
	assert_int_equal(rt.ax, 0);
	assert_int_equal(rt.ay, 100 * CONSOLE_ABS_MAX / 199);
	console_input_remove(t);
	console_put(c);
	vm_destroy(&vm);
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* A PNG a decoder reads back: chunks with good CRCs, RGB rows without filtering. */
static void test_png(void **state)
{
	uint32_t px[3 * 2] = { 0xff0000, 0x00ff00, 0x0000ff, 0x123456, 0xffffff, 0 };
	uint8_t *png, raw[2 * (1 + 9)];
	uLongf rawlen = sizeof(raw);
	size_t len, o = 8;

	assert_int_equal(png_encode(px, 3, 2, &png, &len), 0);
	assert_memory_equal(png, "\x89PNG\r\n\x1a\n", 8);
	while (o < len) {
		uint32_t n = be32(png + o);

		assert_true(o + 12 + n <= len);
		assert_int_equal(crc32(0, png + o + 4, n + 4), be32(png + o + 8 + n));
		if (!memcmp(png + o + 4, "IHDR", 4)) {
			assert_int_equal(be32(png + o + 8), 3);
			assert_int_equal(be32(png + o + 12), 2);
			assert_int_equal(png[o + 16], 8);
			assert_int_equal(png[o + 17], 2);
		} else if (!memcmp(png + o + 4, "IDAT", 4)) {
			assert_int_equal(uncompress(raw, &rawlen, png + o + 8, n), Z_OK);
		}
		o += 12 + n;
	}
	assert_int_equal(o, len);
	assert_int_equal(rawlen, sizeof(raw));
	assert_memory_equal(raw, "\0\xff\0\0\0\xff\0\0\0\xff\0\x12\x34\x56\xff\xff\xff\0\0\0", 20);
	free(png);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_keysyms),
		cmocka_unit_test(test_routing),
		cmocka_unit_test(test_display_scaling_and_image),
		cmocka_unit_test(test_png),
	};

	return cmocka_run_group_tests_name("console", tests, NULL, NULL);
}
