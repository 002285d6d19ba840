// SPDX-License-Identifier: BSD-2-Clause
/*
 * The PS/2 mouse (see ps2.h): a three-button mouse that turns into an IntelliMouse (ID 3,
 * wheel) after the sample-rate knock 200, 100, 80, and into an IntelliMouse Explorer (ID 4,
 * wheel and buttons 4 and 5) after a further 200, 200, 80, as the real ones do.
 *
 * Commands: E6/E7 (scaling 1:1, 2:1), E8 (resolution), E9 (status), EA (stream mode), EB (read
 * data), EC (leave wrap mode), EE (wrap mode: every byte is echoed but EC and FF), F0 (remote
 * mode), F2 (ID), F3 (sample rate), F4/F5 (enable/disable reporting), F6 (defaults), FE
 * (resend), FF (reset: AA 00).  Anything else is answered with FE.
 *
 * Movement comes in host pixels and is reported in counts at the resolution the host set:
 * a pixel is one count at 8 counts/mm (E8 03, what Linux sets), half a count at 4 counts/mm
 * (the default), and so on; the remainders are kept so slow movement is not lost.  In stream
 * mode a packet is queued for each event while the queue has room; when it is full, movement
 * adds up and is reported when the host has read some packets (ps2mouse_flush), so nothing is
 * lost, only merged.  Packets are not paced at the sample rate: the host reads them as fast as
 * it likes, and the rate only reads back in the status.
 */
#include "dev/pc/ps2.h"

#include <errno.h>
#include <string.h>

#include "backend/console.h"
#include "sstream.h"

#define MOUSE_ERROR 0xfc
#define MOUSE_DEFAULT_RATE 100
#define MOUSE_DEFAULT_RES 2
#define MOUSE_MOVE_MAX (1 << 24) /* bound on pending movement: a stuck host cannot overflow */

static void mouse_reply(struct ps2mouse *m, uint8_t b)
{
	ps2_queue_push(&m->reply, b);
}

static void mouse_clear_motion(struct ps2mouse *m)
{
	m->dx = m->dy = m->dz = 0;
	m->fx = m->fy = 0;
}

static void mouse_defaults(struct ps2mouse *m)
{
	m->rate = MOUSE_DEFAULT_RATE;
	m->res = MOUSE_DEFAULT_RES;
	m->scaling21 = false;
	m->remote = false;
	m->enabled = false;
	mouse_clear_motion(m);
	ps2_queue_init(&m->data, PS2_QUEUE_SIZE);
}

void ps2mouse_reset(struct ps2mouse *m)
{
	ps2_queue_init(&m->reply, PS2_REPLY_SIZE);
	mouse_defaults(m);
	m->wrap = false;
	m->id = 0;
	m->pending = 0;
	m->last = 0;
	memset(m->knock, 0, sizeof(m->knock));
	m->reported = m->buttons;
}

static int packet_size(const struct ps2mouse *m)
{
	return m->id ? 4 : 3;
}

static int clamp(int v, int lo, int hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

/* 2:1 scaling, as the mouse applies it to stream reports. */
static int scale21(int d)
{
	static const int small[6] = { 0, 1, 1, 3, 6, 9 };
	int a = d < 0 ? -d : d;
	int r = a <= 5 ? small[a] : 2 * a;

	return d < 0 ? -r : r;
}

/* One packet from the pending movement into @out (the movement it reports is taken off). */
static unsigned mouse_packet(struct ps2mouse *m, bool stream, uint8_t *out)
{
	int lim = stream && m->scaling21 ? 127 : 255;
	int x = clamp(m->dx, -lim, lim), y = clamp(m->dy, -lim, lim), z = clamp(m->dz, -8, 7);
	int rx = stream && m->scaling21 ? scale21(x) : x;
	int ry = stream && m->scaling21 ? scale21(y) : y;
	uint8_t b = m->buttons;

	m->dx -= x;
	m->dy -= y;
	out[0] = (uint8_t)((b & 7) | 0x08 | (rx < 0 ? 0x10 : 0) | (ry < 0 ? 0x20 : 0));
	out[1] = (uint8_t)rx;
	out[2] = (uint8_t)ry;
	m->reported = b;
	if (!m->id) {
		m->dz = 0; /* no wheel to report it with */
		return 3;
	}
	m->dz -= z;
	if (m->id == 4)
		out[3] = (uint8_t)((z & 0x0f) | (b & CONSOLE_BTN_SIDE ? 0x10 : 0) |
				   (b & CONSOLE_BTN_EXTRA ? 0x20 : 0));
	else
		out[3] = (uint8_t)(int8_t)z;
	return 4;
}

static bool mouse_has_news(const struct ps2mouse *m)
{
	return m->dx || m->dy || (m->dz && m->id) || m->buttons != m->reported;
}

void ps2mouse_flush(struct ps2mouse *m)
{
	uint8_t p[4];

	if (m->remote || !m->enabled || m->wrap)
		return;
	while (mouse_has_news(m) && ps2_queue_room(&m->data, (unsigned)packet_size(m))) {
		unsigned n = mouse_packet(m, true, p);

		for (unsigned i = 0; i < n; i++)
			ps2_queue_push(&m->data, p[i]);
	}
}

/* Pixels to counts at the current resolution: 2^res / 8 counts per pixel. */
static int mouse_counts(int px, int32_t *frac, uint8_t res)
{
	int64_t eighths = (int64_t)px * (1 << res) + *frac;
	int64_t c = eighths / 8;

	*frac = (int32_t)(eighths - c * 8);
	return (int)c;
}

void ps2mouse_move(struct ps2mouse *m, int dx, int dy, int dz, unsigned buttons)
{
	m->buttons = (uint8_t)(buttons & 0x1f);
	if (m->wrap)
		return;
	m->dx = clamp(m->dx + mouse_counts(dx, &m->fx, m->res), -MOUSE_MOVE_MAX, MOUSE_MOVE_MAX);
	/* PS/2 counts y upwards, the host screen downwards; the wheel's "up" is negative. */
	m->dy = clamp(m->dy - mouse_counts(dy, &m->fy, m->res), -MOUSE_MOVE_MAX, MOUSE_MOVE_MAX);
	m->dz = clamp(m->dz - dz, -MOUSE_MOVE_MAX, MOUSE_MOVE_MAX);
	ps2mouse_flush(m);
}

static bool rate_valid(uint8_t r)
{
	return r == 10 || r == 20 || r == 40 || r == 60 || r == 80 || r == 100 || r == 200;
}

static void mouse_knock(struct ps2mouse *m, uint8_t rate)
{
	m->knock[0] = m->knock[1];
	m->knock[1] = m->knock[2];
	m->knock[2] = rate;
	if (m->knock[0] == 200 && m->knock[1] == 100 && m->knock[2] == 80 && m->id == 0)
		m->id = 3;
	else if (m->knock[0] == 200 && m->knock[1] == 200 && m->knock[2] == 80 && m->id == 3)
		m->id = 4;
}

static void mouse_param(struct ps2mouse *m, uint8_t cmd, uint8_t b)
{
	if (cmd == 0xf3 && rate_valid(b)) {
		m->rate = b;
		mouse_knock(m, b);
		mouse_reply(m, PS2_ACK);
	} else if (cmd == 0xe8 && b <= 3) {
		m->res = b;
		mouse_reply(m, PS2_ACK);
	} else {
		mouse_reply(m, MOUSE_ERROR);
	}
}

static void mouse_status(struct ps2mouse *m)
{
	uint8_t st = (m->remote ? 0x40 : 0) | (m->enabled ? 0x20 : 0) | (m->scaling21 ? 0x10 : 0);

	/* Buttons in this byte are ordered left, middle, right from bit 2 down. */
	st |= (m->buttons & CONSOLE_BTN_LEFT ? 0x04 : 0) |
	      (m->buttons & CONSOLE_BTN_MIDDLE ? 0x02 : 0) |
	      (m->buttons & CONSOLE_BTN_RIGHT ? 0x01 : 0);
	mouse_reply(m, PS2_ACK);
	mouse_reply(m, st);
	mouse_reply(m, m->res);
	mouse_reply(m, m->rate);
}

static void mouse_read_data(struct ps2mouse *m)
{
	uint8_t p[4];
	unsigned n = mouse_packet(m, false, p);

	mouse_reply(m, PS2_ACK);
	for (unsigned i = 0; i < n; i++)
		mouse_reply(m, p[i]);
}

void ps2mouse_write(struct ps2mouse *m, uint8_t b)
{
	uint8_t cmd = m->pending;

	if (m->wrap && b != 0xec && b != 0xff) {
		mouse_reply(m, b);
		return;
	}
	if (cmd) {
		m->pending = 0;
		if (b < 0xe6) {
			mouse_param(m, cmd, b);
			return;
		}
	}
	switch (b) {
	case 0xe6:
	case 0xe7:
		m->scaling21 = b == 0xe7;
		mouse_reply(m, PS2_ACK);
		break;
	case 0xe8:
	case 0xf3:
		m->pending = b;
		mouse_reply(m, PS2_ACK);
		break;
	case 0xe9:
		mouse_status(m);
		break;
	case 0xea:
	case 0xf0:
		m->remote = b == 0xf0;
		mouse_clear_motion(m);
		mouse_reply(m, PS2_ACK);
		break;
	case 0xeb:
		mouse_read_data(m);
		break;
	case 0xec:
		m->wrap = false;
		mouse_reply(m, PS2_ACK);
		break;
	case 0xee:
		m->wrap = true;
		mouse_reply(m, PS2_ACK);
		break;
	case 0xf2:
		mouse_reply(m, PS2_ACK);
		mouse_reply(m, m->id);
		break;
	case 0xf4:
	case 0xf5:
		m->enabled = b == 0xf4;
		mouse_clear_motion(m);
		ps2_queue_init(&m->data, PS2_QUEUE_SIZE);
		m->reported = m->buttons;
		mouse_reply(m, PS2_ACK);
		break;
	case 0xf6:
		mouse_defaults(m);
		mouse_reply(m, PS2_ACK);
		break;
	case 0xfe:
		mouse_reply(m, m->last);
		break;
	case 0xff:
		ps2mouse_reset(m);
		mouse_reply(m, PS2_ACK);
		mouse_reply(m, PS2_BAT_OK);
		mouse_reply(m, 0x00);
		break;
	default:
		mouse_reply(m, PS2_RESEND);
		break;
	}
}

int ps2mouse_read(struct ps2mouse *m)
{
	int b = ps2_queue_pop(&m->reply);

	if (b < 0)
		b = ps2_queue_pop(&m->data);
	if (b < 0)
		return -1;
	m->last = (uint8_t)b;
	return b;
}

bool ps2mouse_pending(const struct ps2mouse *m)
{
	return m->reply.count || m->data.count;
}

void ps2mouse_state(struct sstream *s, struct ps2mouse *m)
{
	ps2_queue_state(s, &m->reply);
	ps2_queue_state(s, &m->data);
	ss_bool(s, &m->enabled);
	ss_bool(s, &m->remote);
	ss_bool(s, &m->wrap);
	ss_bool(s, &m->scaling21);
	ss_u8(s, &m->rate);
	ss_u8(s, &m->res);
	ss_u8(s, &m->id);
	ss_u8(s, &m->pending);
	ss_u8(s, &m->last);
	ss_u8_array(s, m->knock, sizeof(m->knock));
	ss_u8(s, &m->buttons);
	ss_u8(s, &m->reported);
	ss_i32(s, &m->dx);
	ss_i32(s, &m->dy);
	ss_i32(s, &m->dz);
	ss_i32(s, &m->fx);
	ss_i32(s, &m->fy);
}

static void check_move(struct sstream *s, int32_t v, int32_t max, const char *what)
{
	if (v < -max || v > max)
		ss_fail(s, -EINVAL, "mouse %s %d is out of range", what, v);
}

void ps2mouse_check(struct sstream *s, const struct ps2mouse *m)
{
	ps2_queue_check(s, &m->reply, "mouse reply");
	ps2_queue_check(s, &m->data, "mouse data");
	if (!rate_valid(m->rate))
		ss_fail(s, -EINVAL, "mouse sample rate %u", m->rate);
	ss_check_max(s, m->res, 3, "mouse resolution");
	if (m->id != 0 && m->id != 3 && m->id != 4)
		ss_fail(s, -EINVAL, "mouse ID %u", m->id);
	if (m->pending && m->pending != 0xf3 && m->pending != 0xe8)
		ss_fail(s, -EINVAL, "mouse waits for a parameter of 0x%02x", m->pending);
	ss_check_max(s, m->buttons, 0x1f, "mouse buttons");
	ss_check_max(s, m->reported, 0x1f, "mouse reported buttons");
	check_move(s, m->dx, MOUSE_MOVE_MAX, "x movement");
	check_move(s, m->dy, MOUSE_MOVE_MAX, "y movement");
	check_move(s, m->dz, MOUSE_MOVE_MAX, "wheel movement");
	check_move(s, m->fx, 7, "x remainder");
	check_move(s, m->fy, 7, "y remainder");
}
