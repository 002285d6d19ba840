// SPDX-License-Identifier: BSD-2-Clause
/*
 * The PS/2 keyboard (see ps2.h): an IBM enhanced (MF II) keyboard.
 *
 * Keys arrive as Linux key codes and leave as scan code set 2 (the keyboard's default and what
 * every OS uses, normally through the controller's translation to set 1) or set 1 when the
 * host selects it with F0 01.  Set 3 is not offered: F0 03 is acknowledged and the set stays,
 * so a host that checks with F0 00 sees the set it got, as with keyboards that lack it.
 *
 * Commands: ED (LEDs), EE (echo), F0 (scan code set), F2 (identify: AB 83), F3 (typematic rate
 * and delay), F4 (enable), F5 (disable, defaults), F6 (defaults), F7-FD (set-3 key types:
 * acknowledged, nothing to do in sets 1 and 2), FE (resend), FF (reset and self-test: AA).
 * Anything else is answered with FE, as a keyboard does with a byte it does not know.
 *
 * Typematic: a key held down repeats its make code after the delay and at the rate the host
 * set with F3 (defaults 500 ms, 10.9 per second), as the keyboard itself does; the console
 * backend drops clients' own autorepeat.  Pause never repeats.
 *
 * When the data queue cannot take a key's whole sequence, the keyboard queues the overrun code
 * (set 2: 00, set 1: FF) once and drops keys until the host has read the queue empty.
 */
#include "dev/pc/ps2.h"

#include <errno.h>
#include <linux/input-event-codes.h>
#include <string.h>

#include "sstream.h"

#define KBD_DEFAULT_TYPEMATIC 0x2b /* 10.9 cps, 500 ms */
#define KBD_ID1 0xab
#define KBD_ID2 0x83
#define KBD_OVERRUN_SET2 0x00
#define KBD_OVERRUN_SET1 0xff
#define SET2_BREAK 0xf0
#define MAX_SEQ 8

/*
 * The i8042's translation of set 2 to set 1, indexed by the set-2 byte (0x80 and up are
 * passed on unchanged, except 0x83, F7's code, which the table folds into 0x41).  The F0
 * break prefix is not translated: it sets bit 7 of the byte after it.
 */
static const uint8_t xlate[128] = {
	0xff, 0x43, 0x41, 0x3f, 0x3d, 0x3b, 0x3c, 0x58, 0x64, 0x44, 0x42, 0x40, 0x3e, 0x0f, 0x29,
	0x59, 0x65, 0x38, 0x2a, 0x70, 0x1d, 0x10, 0x02, 0x5a, 0x66, 0x71, 0x2c, 0x1f, 0x1e, 0x11,
	0x03, 0x5b, 0x67, 0x2e, 0x2d, 0x20, 0x12, 0x05, 0x04, 0x5c, 0x68, 0x39, 0x2f, 0x21, 0x14,
	0x13, 0x06, 0x5d, 0x69, 0x31, 0x30, 0x23, 0x22, 0x15, 0x07, 0x5e, 0x6a, 0x72, 0x32, 0x24,
	0x16, 0x08, 0x09, 0x5f, 0x6b, 0x33, 0x25, 0x17, 0x18, 0x0b, 0x0a, 0x60, 0x6c, 0x34, 0x35,
	0x26, 0x27, 0x19, 0x0c, 0x61, 0x6d, 0x73, 0x28, 0x74, 0x1a, 0x0d, 0x62, 0x6e, 0x3a, 0x36,
	0x1c, 0x1b, 0x75, 0x2b, 0x63, 0x76, 0x55, 0x56, 0x77, 0x78, 0x79, 0x7a, 0x0e, 0x7b, 0x7c,
	0x4f, 0x7d, 0x4b, 0x47, 0x7e, 0x7f, 0x6f, 0x52, 0x53, 0x50, 0x4c, 0x4d, 0x48, 0x01, 0x45,
	0x57, 0x4e, 0x51, 0x4a, 0x37, 0x49, 0x46, 0x54,
};

uint8_t ps2_translate(uint8_t set2)
{
	if (set2 == 0x83)
		return 0x41;
	return set2 < 0x80 ? xlate[set2] : set2;
}

/* Set-2 make codes by Linux key code: one byte, or 0xE0 in the high byte for extended keys. */
#define E0(c) (0xe000 | (c))
static const uint16_t set2_make[KEY_COMPOSE + 1] = {
	[KEY_ESC] = 0x76,
	[KEY_1] = 0x16,
	[KEY_2] = 0x1e,
	[KEY_3] = 0x26,
	[KEY_4] = 0x25,
	[KEY_5] = 0x2e,
	[KEY_6] = 0x36,
	[KEY_7] = 0x3d,
	[KEY_8] = 0x3e,
	[KEY_9] = 0x46,
	[KEY_0] = 0x45,
	[KEY_MINUS] = 0x4e,
	[KEY_EQUAL] = 0x55,
	[KEY_BACKSPACE] = 0x66,
	[KEY_TAB] = 0x0d,
	[KEY_Q] = 0x15,
	[KEY_W] = 0x1d,
	[KEY_E] = 0x24,
	[KEY_R] = 0x2d,
	[KEY_T] = 0x2c,
	[KEY_Y] = 0x35,
	[KEY_U] = 0x3c,
	[KEY_I] = 0x43,
	[KEY_O] = 0x44,
	[KEY_P] = 0x4d,
	[KEY_LEFTBRACE] = 0x54,
	[KEY_RIGHTBRACE] = 0x5b,
	[KEY_ENTER] = 0x5a,
	[KEY_LEFTCTRL] = 0x14,
	[KEY_A] = 0x1c,
	[KEY_S] = 0x1b,
	[KEY_D] = 0x23,
	[KEY_F] = 0x2b,
	[KEY_G] = 0x34,
	[KEY_H] = 0x33,
	[KEY_J] = 0x3b,
	[KEY_K] = 0x42,
	[KEY_L] = 0x4b,
	[KEY_SEMICOLON] = 0x4c,
	[KEY_APOSTROPHE] = 0x52,
	[KEY_GRAVE] = 0x0e,
	[KEY_LEFTSHIFT] = 0x12,
	[KEY_BACKSLASH] = 0x5d,
	[KEY_Z] = 0x1a,
	[KEY_X] = 0x22,
	[KEY_C] = 0x21,
	[KEY_V] = 0x2a,
	[KEY_B] = 0x32,
	[KEY_N] = 0x31,
	[KEY_M] = 0x3a,
	[KEY_COMMA] = 0x41,
	[KEY_DOT] = 0x49,
	[KEY_SLASH] = 0x4a,
	[KEY_RIGHTSHIFT] = 0x59,
	[KEY_KPASTERISK] = 0x7c,
	[KEY_LEFTALT] = 0x11,
	[KEY_SPACE] = 0x29,
	[KEY_CAPSLOCK] = 0x58,
	[KEY_F1] = 0x05,
	[KEY_F2] = 0x06,
	[KEY_F3] = 0x04,
	[KEY_F4] = 0x0c,
	[KEY_F5] = 0x03,
	[KEY_F6] = 0x0b,
	[KEY_F7] = 0x83,
	[KEY_F8] = 0x0a,
	[KEY_F9] = 0x01,
	[KEY_F10] = 0x09,
	[KEY_NUMLOCK] = 0x77,
	[KEY_SCROLLLOCK] = 0x7e,
	[KEY_KP7] = 0x6c,
	[KEY_KP8] = 0x75,
	[KEY_KP9] = 0x7d,
	[KEY_KPMINUS] = 0x7b,
	[KEY_KP4] = 0x6b,
	[KEY_KP5] = 0x73,
	[KEY_KP6] = 0x74,
	[KEY_KPPLUS] = 0x79,
	[KEY_KP1] = 0x69,
	[KEY_KP2] = 0x72,
	[KEY_KP3] = 0x7a,
	[KEY_KP0] = 0x70,
	[KEY_KPDOT] = 0x71,
	[KEY_102ND] = 0x61,
	[KEY_F11] = 0x78,
	[KEY_F12] = 0x07,
	[KEY_RO] = 0x51,
	[KEY_KPENTER] = E0(0x5a),
	[KEY_RIGHTCTRL] = E0(0x14),
	[KEY_KPSLASH] = E0(0x4a),
	[KEY_RIGHTALT] = E0(0x11),
	[KEY_HOME] = E0(0x6c),
	[KEY_UP] = E0(0x75),
	[KEY_PAGEUP] = E0(0x7d),
	[KEY_LEFT] = E0(0x6b),
	[KEY_RIGHT] = E0(0x74),
	[KEY_END] = E0(0x69),
	[KEY_DOWN] = E0(0x72),
	[KEY_PAGEDOWN] = E0(0x7a),
	[KEY_INSERT] = E0(0x70),
	[KEY_DELETE] = E0(0x71),
	[KEY_MUTE] = E0(0x23),
	[KEY_VOLUMEDOWN] = E0(0x21),
	[KEY_VOLUMEUP] = E0(0x32),
	[KEY_POWER] = E0(0x37),
	[KEY_KPEQUAL] = 0x0f,
	[KEY_YEN] = 0x6a,
	[KEY_LEFTMETA] = E0(0x1f),
	[KEY_RIGHTMETA] = E0(0x27),
	[KEY_COMPOSE] = E0(0x2f),
};

/* Print Screen and Pause are sequences of their own. */
static const uint8_t prtsc_make[] = { 0xe0, 0x12, 0xe0, 0x7c };
static const uint8_t prtsc_break[] = { 0xe0, 0xf0, 0x7c, 0xe0, 0xf0, 0x12 };
static const uint8_t pause_make[] = { 0xe1, 0x14, 0x77, 0xe1, 0xf0, 0x14, 0xf0, 0x77 };

unsigned ps2kbd_set2_make(unsigned keycode, uint8_t *out)
{
	uint16_t c;

	if (keycode == KEY_SYSRQ) {
		memcpy(out, prtsc_make, sizeof(prtsc_make));
		return sizeof(prtsc_make);
	}
	if (keycode == KEY_PAUSE) {
		memcpy(out, pause_make, sizeof(pause_make));
		return sizeof(pause_make);
	}
	if (keycode >= sizeof(set2_make) / sizeof(set2_make[0]) || !set2_make[keycode])
		return 0;
	c = set2_make[keycode];
	if (c >> 8) {
		out[0] = 0xe0;
		out[1] = (uint8_t)c;
		return 2;
	}
	out[0] = (uint8_t)c;
	return 1;
}

/* The set-2 bytes of a key event; 0 when the key has none (Pause has no break code). */
static unsigned set2_seq(unsigned keycode, bool down, uint8_t *out)
{
	uint8_t make[MAX_SEQ];
	unsigned n;

	if (down)
		return ps2kbd_set2_make(keycode, out);
	if (keycode == KEY_PAUSE)
		return 0;
	if (keycode == KEY_SYSRQ) {
		memcpy(out, prtsc_break, sizeof(prtsc_break));
		return sizeof(prtsc_break);
	}
	n = ps2kbd_set2_make(keycode, make);
	if (!n)
		return 0;
	if (n == 2) {
		out[0] = 0xe0;
		out[1] = SET2_BREAK;
		out[2] = make[1];
		return 3;
	}
	out[0] = SET2_BREAK;
	out[1] = make[0];
	return 2;
}

/* Set 1 is set 2 through the controller's translation, done by the keyboard itself. */
static unsigned to_set1(const uint8_t *in, unsigned n, uint8_t *out)
{
	unsigned o = 0;

	for (unsigned i = 0; i < n; i++) {
		if (in[i] == SET2_BREAK && i + 1 < n)
			out[o++] = ps2_translate(in[++i]) | 0x80;
		else
			out[o++] = ps2_translate(in[i]);
	}
	return o;
}

static void kbd_reply(struct ps2kbd *k, uint8_t b)
{
	ps2_queue_push(&k->reply, b);
}

/* What F5h and F6h load as well as reset: typematic rate/delay and scan code set 2. */
static void kbd_defaults(struct ps2kbd *k)
{
	k->typematic = KBD_DEFAULT_TYPEMATIC;
	k->held = 0;
	k->scanset = 2;
}

static void kbd_clear(struct ps2kbd *k)
{
	ps2_queue_init(&k->data, PS2_QUEUE_SIZE);
	k->overrun = false;
}

void ps2kbd_reset(struct ps2kbd *k)
{
	ps2_queue_init(&k->reply, PS2_REPLY_SIZE);
	kbd_clear(k);
	kbd_defaults(k);
	k->scanning = true;
	k->scanset = 2;
	k->leds = 0;
	k->pending = 0;
	k->last = 0;
}

static void kbd_param(struct ps2kbd *k, uint8_t cmd, uint8_t b)
{
	switch (cmd) {
	case 0xed:
		k->leds = b & 7;
		kbd_reply(k, PS2_ACK);
		break;
	case 0xf3:
		k->typematic = b & 0x7f;
		kbd_reply(k, PS2_ACK);
		break;
	case 0xf0:
		if (b > 3) {
			kbd_reply(k, PS2_RESEND);
			break;
		}
		kbd_reply(k, PS2_ACK);
		if (b == 0)
			kbd_reply(k, k->scanset);
		else if (b != 3)
			k->scanset = b;
		break;
	}
}

void ps2kbd_write(struct ps2kbd *k, uint8_t b)
{
	uint8_t cmd = k->pending;

	if (cmd) {
		k->pending = 0;
		/* A command byte instead of the parameter starts that command, as keyboards do. */
		if (b < 0xed) {
			kbd_param(k, cmd, b);
			return;
		}
	}
	switch (b) {
	case 0xed:
	case 0xf0:
	case 0xf3:
		kbd_reply(k, PS2_ACK);
		k->pending = b;
		break;
	case 0xee:
		kbd_reply(k, PS2_ECHO);
		break;
	case 0xf2:
		kbd_reply(k, PS2_ACK);
		kbd_reply(k, KBD_ID1);
		kbd_reply(k, KBD_ID2);
		break;
	case 0xf4:
		kbd_clear(k);
		k->scanning = true;
		kbd_reply(k, PS2_ACK);
		break;
	case 0xf5:
		kbd_clear(k);
		kbd_defaults(k);
		k->scanning = false;
		kbd_reply(k, PS2_ACK);
		break;
	case 0xf6:
		kbd_clear(k);
		kbd_defaults(k);
		kbd_reply(k, PS2_ACK);
		break;
	case 0xf7:
	case 0xf8:
	case 0xf9:
	case 0xfa:
	case 0xfb:
	case 0xfc:
	case 0xfd:
		kbd_reply(k, PS2_ACK);
		break;
	case 0xfe:
		kbd_reply(k, k->last);
		break;
	case 0xff:
		ps2kbd_reset(k);
		kbd_reply(k, PS2_ACK);
		kbd_reply(k, PS2_BAT_OK);
		break;
	default:
		kbd_reply(k, PS2_RESEND);
		break;
	}
}

int ps2kbd_read(struct ps2kbd *k)
{
	int b = ps2_queue_pop(&k->reply);

	if (b < 0)
		b = ps2_queue_pop(&k->data);
	if (b < 0)
		return -1;
	k->last = (uint8_t)b;
	if (!k->data.count)
		k->overrun = false;
	return b;
}

bool ps2kbd_pending(const struct ps2kbd *k)
{
	return k->reply.count || k->data.count;
}

static void kbd_queue_key(struct ps2kbd *k, unsigned keycode, bool down)
{
	uint8_t seq[MAX_SEQ], out[MAX_SEQ];
	unsigned n = set2_seq(keycode, down, seq);

	if (!n || !k->scanning)
		return;
	if (k->scanset == 1) {
		n = to_set1(seq, n, out);
		memcpy(seq, out, n);
	}
	/* One byte stays free for the overrun code. */
	if (k->overrun || !ps2_queue_room(&k->data, n + 1)) {
		if (!k->overrun)
			ps2_queue_push(&k->data,
				       k->scanset == 1 ? KBD_OVERRUN_SET1 : KBD_OVERRUN_SET2);
		k->overrun = true;
		return;
	}
	for (unsigned i = 0; i < n; i++)
		ps2_queue_push(&k->data, seq[i]);
}

/* Typematic delay and repeat period from the F3 byte (IBM's formulas). */
static uint64_t kbd_delay_ns(const struct ps2kbd *k)
{
	return (uint64_t)(((k->typematic >> 5) & 3) + 1) * 250000000ULL;
}

static uint64_t kbd_period_ns(const struct ps2kbd *k)
{
	uint64_t a = k->typematic & 7, b = (k->typematic >> 3) & 3;

	/* (8 + A) * 2^B * 4.17 ms */
	return (8 + a) * (1ULL << b) * 4170000ULL;
}

void ps2kbd_key(struct ps2kbd *k, unsigned keycode, bool down, uint64_t now)
{
	kbd_queue_key(k, keycode, down);
	if (down && keycode != KEY_PAUSE && k->scanning) {
		k->held = (uint16_t)keycode;
		k->repeat_at = now + kbd_delay_ns(k);
	} else if (!down && k->held == keycode) {
		k->held = 0;
	}
}

uint64_t ps2kbd_repeat(struct ps2kbd *k, uint64_t now)
{
	if (!k->held || !k->scanning) {
		k->held = 0;
		return 0;
	}
	if (now >= k->repeat_at) {
		kbd_queue_key(k, k->held, true);
		k->repeat_at += kbd_period_ns(k);
		/* Late (a loaded host, a paused VM): repeat once, not once per missed period. */
		if (k->repeat_at <= now)
			k->repeat_at = now + kbd_period_ns(k);
	}
	return k->repeat_at;
}

void ps2kbd_state(struct sstream *s, struct ps2kbd *k)
{
	ps2_queue_state(s, &k->reply);
	ps2_queue_state(s, &k->data);
	ss_bool(s, &k->scanning);
	ss_u8(s, &k->scanset);
	ss_u8(s, &k->leds);
	ss_u8(s, &k->typematic);
	ss_u8(s, &k->pending);
	ss_u8(s, &k->last);
	ss_bool(s, &k->overrun);
}

void ps2kbd_check(struct sstream *s, const struct ps2kbd *k)
{
	ps2_queue_check(s, &k->reply, "keyboard reply");
	ps2_queue_check(s, &k->data, "keyboard data");
	if (k->scanset != 1 && k->scanset != 2)
		ss_fail(s, -EINVAL, "keyboard scan code set %u", k->scanset);
	if (k->pending && k->pending != 0xed && k->pending != 0xf0 && k->pending != 0xf3)
		ss_fail(s, -EINVAL, "keyboard waits for a parameter of 0x%02x", k->pending);
	ss_check_max(s, k->leds, 7, "keyboard LEDs");
	ss_check_max(s, k->typematic, 0x7f, "keyboard typematic byte");
}
