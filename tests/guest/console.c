// SPDX-License-Identifier: MIT
/*
 * khyve test guest, mode=console: a known picture on the display and
 * every key and pointer event echoed on COM1.
 *
 * conmode=gfx (default) sets the display's preferred mode (EDID) at 32
 * bits per pixel and draws console_pixel()'s picture: eight colour bars
 * over the top half, a gradient below, and the line CONSOLE_TEXT in the
 * 5x7 glyphs below, scaled by 4, white on black.  conmode=text writes
 * CONSOLE_TEXT in VGA text mode at 0xB8000 (white on blue, row 0) and the
 * 15 colours as full blocks on row 2.  redraw=N draws frame after frame,
 * N a second, the bars moving 8 pixels each (a benchmark load); with
 * redrawfull the gradient moves too, the bars' lowest blue bit flips
 * from frame to frame and the text is drawn only in frame 0, so every
 * pixel changes in every frame (bench/vnc.py: a server that
 * compares pixels cannot send less than the whole screen), and a line
 * "frames N at T ms" each second says how many frames were drawn by then.  The tests
 * compute the same picture from this file.
 *
 * Input: the i8042's keyboard (translated set 1) and its mouse (wheel
 * mode when it answers ID 3), both by interrupt, printed as
 * "key 0x1e down", "key 0xe04d up", "key 0x1e repeat" (typematic),
 * "key 0xe11d45 down" (Pause), "key overrun" and
 * "rel DX DY DZ btn B" (screen directions: y down, wheel up positive).
 * With an xHCI controller, its USB tablet too (polled; the report it sends
 * after configuration is not printed): "abs X Y btn B", X and Y 0..32767,
 * and " dz N" after it when the wheel turned.
 * "seq N" lines at `rate` per second, as in mode=counter.
 */
#include "user.h"
#include "fbuf.h"
#include "ps2.h"
#include "xhci.h"
#include "virtio.h"	/* tsc_to_ns */

#define CONSOLE_TEXT	"KHYVE CONSOLE TEST 0123456789"
#define TEXT_SCALE	4
#define TEXT_X		16
#define FBUF_MAX_W	1920	/* the widest mode fbuf offers */

/* 5x7 glyphs, one row a byte (bit 4 leftmost), for the characters of CONSOLE_TEXT. */
static const struct glyph {
	char c;
	u8 rows[7];
} glyphs[] = {
	{ 'K', { 0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11 } },
	{ 'H', { 0x11, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11 } },
	{ 'Y', { 0x11, 0x11, 0x0a, 0x04, 0x04, 0x04, 0x04 } },
	{ 'V', { 0x11, 0x11, 0x11, 0x11, 0x11, 0x0a, 0x04 } },
	{ 'E', { 0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x1f } },
	{ 'C', { 0x0e, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0e } },
	{ 'O', { 0x0e, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0e } },
	{ 'N', { 0x11, 0x19, 0x15, 0x13, 0x11, 0x11, 0x11 } },
	{ 'S', { 0x0f, 0x10, 0x10, 0x0e, 0x01, 0x01, 0x1e } },
	{ 'L', { 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1f } },
	{ 'T', { 0x1f, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04 } },
	{ '0', { 0x0e, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0e } },
	{ '1', { 0x04, 0x0c, 0x04, 0x04, 0x04, 0x04, 0x0e } },
	{ '2', { 0x0e, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1f } },
	{ '3', { 0x1f, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0e } },
	{ '4', { 0x02, 0x06, 0x0a, 0x12, 0x1f, 0x02, 0x02 } },
	{ '5', { 0x1f, 0x10, 0x1e, 0x01, 0x01, 0x11, 0x0e } },
	{ '6', { 0x06, 0x08, 0x10, 0x1e, 0x11, 0x11, 0x0e } },
	{ '7', { 0x1f, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08 } },
	{ '8', { 0x0e, 0x11, 0x11, 0x0e, 0x11, 0x11, 0x0e } },
	{ '9', { 0x0e, 0x11, 0x11, 0x0f, 0x01, 0x02, 0x0c } },
};

static const u32 bars[8] = {
	0xffffff, 0xffff00, 0x00ffff, 0x00ff00, 0xff00ff, 0xff0000, 0x0000ff, 0x000000,
};

static struct {
	enum { CON_GFX, CON_TEXT } mode;
	u64 redraw;
	bool full;	/* redrawfull */
} copt;

bool console_cmdline_word(const char *w)
{
	if (!memcmp(w, "mode=console", 12) && (w[12] == ' ' || !w[12])) {
		opt.mode = MODE_CONSOLE;
	} else if (!memcmp(w, "conmode=text", 12)) {
		copt.mode = CON_TEXT;
	} else if (!memcmp(w, "conmode=gfx", 11)) {
		copt.mode = CON_GFX;
	} else if (!memcmp(w, "redrawfull", 10) && (w[10] == ' ' || !w[10])) {
		copt.full = true;
	} else if (!memcmp(w, "redraw=", 7)) {
		copt.redraw = 0;
		for (w += 7; *w >= '0' && *w <= '9'; w++)
			copt.redraw = copt.redraw * 10 + (u64)(*w - '0');
	} else {
		return false;
	}
	return true;
}

/* ---- the picture ---- */

static u32 text_y(u32 h)
{
	return h / 2 + 16;
}

static const struct glyph *glyph_of(char c)
{
	u32 i;

	for (i = 0; i < sizeof(glyphs) / sizeof(glyphs[0]); i++)
		if (glyphs[i].c == c)
			return &glyphs[i];
	return 0;
}

/* The colour of (x, y) in frame @frame of a w x h picture, text aside. */
static u32 console_pixel(u32 x, u32 y, u32 w, u32 h, u32 frame)
{
	if (y < h / 2)
		return bars[((x + frame * 8) % w) * 8 / w] ^ (copt.full ? frame & 1 : 0);
	if (copt.full)
		x = (x + frame * 8) % w;
	return (x * 255 / (w - 1)) << 16 | ((y - h / 2) * 255 / (h - h / 2 - 1)) << 8 | 0x80;
}

static void draw_text(volatile u32 *fb, u32 w, u32 h)
{
	u32 n = sizeof(CONSOLE_TEXT) - 1, cw = 6 * TEXT_SCALE, y0 = text_y(h), i, x, y;

	/* A black box one glyph cell bigger than the text all round. */
	for (y = y0 - TEXT_SCALE; y < y0 + 8 * TEXT_SCALE; y++)
		for (x = TEXT_X - TEXT_SCALE; x < TEXT_X + n * cw && x < w; x++)
			fb[y * w + x] = 0;
	for (i = 0; i < n; i++) {
		const struct glyph *g = glyph_of(CONSOLE_TEXT[i]);

		for (y = 0; g && y < 7 * TEXT_SCALE; y++)
			for (x = 0; x < 5 * TEXT_SCALE; x++)
				if (g->rows[y / TEXT_SCALE] & (0x10 >> (x / TEXT_SCALE)))
					fb[(y0 + y) * w + TEXT_X + i * cw + x] = 0xffffff;
	}
}

/*
 * console_pixel() for every pixel, computed a row at a time: the bars are the same in every
 * row of the top half, and below them only green changes from row to row.  (The guest's
 * own cost, so that a benchmark measures the display, not the drawing.)
 */
static void draw_frame(struct fbdev *d, u32 w, u32 h, u32 frame)
{
	static u32 top[FBUF_MAX_W], red[FBUF_MAX_W];
	volatile u32 *fb = (volatile u32 *)d->fb;
	u32 x, y, g;

	if (w > FBUF_MAX_W || h < 4)
		fail_final("console: %ux%u is not a mode this guest draws", w, h);
	for (x = 0; x < w; x++) {
		top[x] = console_pixel(x, 0, w, h, frame);
		red[x] = console_pixel(x, h / 2, w, h, frame) & 0xff0000;
	}
	for (y = 0; y < h / 2; y++)
		for (x = 0; x < w; x++)
			fb[y * w + x] = top[x];
	for (; y < h; y++) {
		g = console_pixel(0, y, w, h, frame) & 0x00ffff;
		for (x = 0; x < w; x++)
			fb[y * w + x] = red[x] | g;
	}
	if (!copt.full || !frame)
		draw_text(fb, w, h);
}

static void draw_text_mode(void)
{
	volatile u16 *t = (volatile u16 *)0xb8000ull;
	u32 i;

	for (i = 0; i < 80 * 25; i++)
		t[i] = 0x0720;
	for (i = 0; CONSOLE_TEXT[i]; i++)
		t[i] = 0x1f00 | (u8)CONSOLE_TEXT[i];
	for (i = 1; i < 16; i++)
		t[2 * 80 + i] = (u16)(i << 8 | 0xdb);
	/* The cursor off, so the picture does not depend on it. */
	outb(0x3d4, 0x0a);
	outb(0x3d5, 0x20);
}

/* ---- input ---- */

static u8 keys_down[512 / 8];
static u8 kbd_ext;		/* 0xe0 prefix seen */
static u8 pause_left;		/* bytes of the Pause sequence still to come */
static u8 mouse_id, mpkt[4], mlen;

static void key_byte(u8 b)
{
	u32 code;
	bool up;

	if (pause_left) {
		if (--pause_left == 0)
			pr("key 0xe11d45 down\n");
		return;
	}
	if (b == 0xe1) {
		pause_left = 5;
		return;
	}
	if (b == 0xe0) {
		kbd_ext = 1;
		return;
	}
	if (b == 0xff || b == 0x00) {
		pr("key overrun\n");
		return;
	}
	code = (kbd_ext ? 0xe000u : 0) | (b & 0x7f);
	up = b & 0x80;
	kbd_ext = 0;
	{
		u32 k = (code >> 8 ? 256 : 0) | (code & 0xff);
		bool was = keys_down[k / 8] & (1u << (k % 8));

		if (up)
			keys_down[k / 8] &= (u8)~(1u << (k % 8));
		else
			keys_down[k / 8] |= (u8)(1u << (k % 8));
		pr("key 0x%x %s\n", code, up ? "up" : was ? "repeat" : "down");
	}
}

static void mouse_byte(u8 b)
{
	int dx, dy, dz = 0;

	/* Bit 3 of the first byte is always set: resynchronise on it. */
	if (!mlen && !(b & 0x08))
		return;
	mpkt[mlen++] = b;
	if (mlen < (mouse_id ? 4u : 3u))
		return;
	mlen = 0;
	dx = mpkt[1] - ((mpkt[0] & 0x10) ? 256 : 0);
	dy = mpkt[2] - ((mpkt[0] & 0x20) ? 256 : 0);
	if (mouse_id == 3)
		dz = mpkt[3] >= 0x80 ? (int)mpkt[3] - 256 : mpkt[3];
	else if (mouse_id == 4)
		dz = (mpkt[3] & 8) ? (int)(mpkt[3] & 7) - 8 : mpkt[3] & 7;
	pr("rel %d %d %d btn %u\n", dx, -dy, -dz, mpkt[0] & 7);
}

static void input_drain(void)
{
	bool aux;
	int b, n = 64;

	while (n-- && (b = kbc_read_src(0, &aux)) >= 0) {
		if (aux)
			mouse_byte((u8)b);
		else
			key_byte((u8)b);
	}
}

static void mouse_setup(void)
{
	static const u8 knock[] = { 200, 100, 80 };
	u32 i;
	int b;

	aux_write(0xff);
	kbc_read(500000);	/* ACK */
	kbc_read(500000);	/* AA */
	kbc_read(500000);	/* ID */
	for (i = 0; i < sizeof(knock); i++) {
		aux_write(0xf3);
		kbc_read(200000);
		aux_write(knock[i]);
		kbc_read(200000);
	}
	aux_write(0xf2);
	kbc_read(200000);
	b = kbc_read(200000);
	mouse_id = b == 3 || b == 4 ? (u8)b : 0;
	aux_write(0xe8);	/* 8 counts/mm: one count per host pixel */
	kbc_read(200000);
	aux_write(0x03);
	kbc_read(200000);
	aux_write(0xf4);
	kbc_read(200000);
}

static bool input_setup(u32 *vec_kbd, u32 *vec_aux)
{
	int ctr;

	if (!kbc_present())
		return false;
	kbc_flush();
	ctr = kbc_query(0x20);
	if (ctr < 0)
		return false;
	kbc_set_ctr((u8)(ctr & ~3));
	kbc_data(0xff);		/* keyboard reset: ACK, AA; scanning on */
	kbc_read(500000);
	kbc_read(500000);
	mouse_setup();
	kbc_flush();
	*vec_kbd = VEC_IOAPIC_BASE + route_isa(1, cpus[0].apic_id);
	*vec_aux = VEC_IOAPIC_BASE + route_isa(12, cpus[0].apic_id);
	kbc_set_ctr((u8)((ctr & ~0x30) | 3));	/* both ports on, both interrupts */
	return true;
}

/* The USB tablet: the report it sends once configured is the state before any event. */
static bool tablet_setup(void)
{
	struct tablet_report r;
	char why[96];
	int ret = xhci_tablet_open(why, sizeof(why));
	u64 end = now_us() + 1000000;

	if (ret < 0)
		fail_final("console: xhci: %s", why);
	if (ret)
		return false;
	while (xhci_tablet_poll(&r) == 0 && now_us() < end)
		;
	return true;
}

static void tablet_drain(void)
{
	struct tablet_report r;
	int n = 16, ret;

	while (n-- && (ret = xhci_tablet_poll(&r)) == 1) {
		if (r.dz)
			pr("abs %u %u btn %u dz %d\n", r.x, r.y, r.buttons, r.dz);
		else
			pr("abs %u %u btn %u\n", r.x, r.y, r.buttons);
	}
	if (n >= 0 && ret < 0)
		fail_final("console: xhci: the interrupt transfer failed");
}

/* ---- the mode ---- */

static u64 seq;

void console_run(void)
{
	struct fbdev d;
	u32 w = 0, h = 0, frame = 0, vk = 0, va = 0;
	u64 ck = 0, ca = 0, period = tsc_hz / opt.rate, next, fnext = 0, fnote = 0, poll = 0, t;
	bool have_fb = fbdev_find(&d), have_kbc, have_tab;

	if (copt.mode == CON_TEXT) {
		if (have_fb)
			fbdev_vga_mode(&d);
		draw_text_mode();
	} else if (have_fb) {
		w = d.edid_w ? d.edid_w : 1024;
		h = d.edid_h ? d.edid_h : 768;
		if (fbdev_set_mode(&d, w, h))
			fail_final("console: cannot set %ux%ux32", w, h);
		draw_frame(&d, w, h, 0);
	}
	have_kbc = input_setup(&vk, &va);
	have_tab = tablet_setup();
	pr("console: %s %ux%u, keyboard %s, mouse id %u%s\n",
	   copt.mode == CON_TEXT ? "text" : have_fb ? "gfx" : "no display", w, h,
	   have_kbc ? "yes" : "no", mouse_id, have_tab ? ", tablet" : "");
	next = rdtsc() + period;
	fnext = rdtsc();
	for (;;) {
		power_button_poll();
		t = rdtsc();
		/* Interrupts tell when to read; a slow poll covers a lost edge. */
		if (have_kbc && (irq_count(0, vk) != ck || irq_count(0, va) != ca ||
				 (s64)(t - poll) >= 0)) {
			ck = irq_count(0, vk);
			ca = irq_count(0, va);
			input_drain();
			poll = t + tsc_hz / 10;
		}
		if (have_tab)
			tablet_drain();
		if ((s64)(t - next) >= 0) {
			pr("seq %lu\n", ++seq);
			next = (s64)(t - next) > (s64)tsc_hz ? t + period : next + period;
		}
		if (copt.full && (s64)(t - fnote) >= 0) {
			/* How fast the guest really draws, for bench/vnc.py. */
			pr("frames %u at %lu ms\n", frame, tsc_to_ns(t) / 1000000);
			fnote = t + tsc_hz;
		}
		if (copt.redraw && w && (s64)(t - fnext) >= 0) {
			draw_frame(&d, w, h, ++frame);
			fnext = (s64)(t - fnext) > (s64)tsc_hz ? t + tsc_hz / copt.redraw
							      : fnext + tsc_hz / copt.redraw;
		}
		sys_hlt(&seq, seq);
	}
}
