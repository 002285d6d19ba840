// SPDX-License-Identifier: BSD-2-Clause
/*
 * fbuf and its VGA engine, driven as a guest drives them (configuration space, BAR 2, the VGA
 * and VBE ports, the legacy window, BAR 0 by trapped accesses since there is no KVM here),
 * with the picture read back through the console backend as the VNC server reads it.  Also
 * the PSF font reader, with fonts written here.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "devsnap.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/console.h"
#include "backend/console_int.h"
#include "dev/display/font.h"
#include "dev/display/vga.h"
#include "dev/pci/pci.h"
#include "sstream.h"
#include "vm.h"

#define SLOT 5
#define VBE_ENABLE_ON 0x41 /* enabled, LFB */

struct fx {
	struct vm vm;
	struct config cfg;
	struct pci_dev *pd;
	uint64_t fb, mmio;
	char dir[64], font[96];
	uint32_t *img;
	unsigned w, h;
};

/* ---- a test font: PSF2, 16 rows, glyphs for 'A', 'B' and U+2500 (CP437 0xC4) ---- */

static const uint8_t glyph_a[16] = { 0, 0, 0x18, 0x24, 0x42, 0x42, 0x7e, 0x42, 0x42, 0x42 };
static const uint8_t glyph_b[16] = { 0, 0, 0x7c, 0x42, 0x42, 0x7c, 0x42, 0x42, 0x42, 0x7c };
static const uint8_t glyph_line[16] = { [8] = 0xff };

static void write_psf2(const char *path)
{
	uint32_t hdr[8] = { 0x864ab572, 0, 32, 1, 3, 16, 16, 8 };
	/* UTF-8 per glyph, 0xFF between; glyph 1 also carries a sequence, to be skipped. */
	static const uint8_t table[] = { 'A',  0xff, 'B',  0xfe, 'X', 'Y',
					 0xff, 0xe2, 0x94, 0x80, 0xff };
	FILE *f = fopen(path, "wb");

	assert_non_null(f);
	fwrite(hdr, sizeof(hdr), 1, f);
	fwrite(glyph_a, 16, 1, f);
	fwrite(glyph_b, 16, 1, f);
	fwrite(glyph_line, 16, 1, f);
	fwrite(table, sizeof(table), 1, f);
	fclose(f);
}

/* ---- the fixture ---- */

static void fx_start(struct fx *f, const char *const *opts)
{
	char err[256], kv[256];

	memset(f, 0, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "/tmp/khyve-fbuf-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->font, sizeof(f->font), "%s/t.psf", f->dir);
	write_psf2(f->font);
	vm_init_bare(&f->vm, true);
	config_init(&f->cfg);
	f->vm.cfg = &f->cfg;
	f->vm.name = "fbuftest";
	snprintf(kv, sizeof(kv), "pci.0.%u.0.device=fbuf", SLOT);
	assert_int_equal(config_set_pair(&f->cfg, kv), 0);
	/* A UNIX socket of our own: no test listens on a TCP port. */
	snprintf(kv, sizeof(kv), "pci.0.%u.0.unix=%s/vnc", SLOT, f->dir);
	assert_int_equal(config_set_pair(&f->cfg, kv), 0);
	snprintf(kv, sizeof(kv), "pci.0.%u.0.font=%s", SLOT, f->font);
	assert_int_equal(config_set_pair(&f->cfg, kv), 0);
	for (; opts && *opts; opts++) {
		snprintf(kv, sizeof(kv), "pci.0.%u.0.%s", SLOT, *opts);
		assert_int_equal(config_set_pair(&f->cfg, kv), 0);
	}
	if (pci_setup(&f->vm, err, sizeof(err)))
		fail_msg("pci_setup: %s", err);
	f->pd = pci_find_dev(&f->vm, SLOT, 0);
	assert_non_null(f->pd);
	f->fb = pci_bar_addr(f->pd, 0);
	f->mmio = pci_bar_addr(f->pd, 2);
}

static void fx_stop(struct fx *f)
{
	char path[128];

	free(f->img);
	vm_destroy(&f->vm);
	config_free(&f->cfg);
	snprintf(path, sizeof(path), "%s/vnc", f->dir);
	unlink(path);
	unlink(f->font);
	rmdir(f->dir);
}

static const char *const vga_on[] = { "vga=on", NULL };

static int setup(void **state)
{
	struct fx *f = malloc(sizeof(*f));

	fx_start(f, vga_on);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fx_stop(*state);
	free(*state);
	return 0;
}

static uint64_t rd(struct vm *vm, struct bus *b, uint64_t a, unsigned size)
{
	uint64_t v = 0;

	assert_true(bus_access(b, a, &v, size, false));
	return v;
}

static void wr(struct vm *vm, struct bus *b, uint64_t a, unsigned size, uint64_t v)
{
	assert_true(bus_access(b, a, &v, size, true));
}

#define MMIO_RD(f, off, size) rd(&(f)->vm, &(f)->vm.mmio, (f)->mmio + (off), size)
#define MMIO_WR(f, off, size, v) wr(&(f)->vm, &(f)->vm.mmio, (f)->mmio + (off), size, v)
#define OUTB(f, port, v) wr(&(f)->vm, &(f)->vm.pio, port, 1, v)
#define INB(f, port) ((uint8_t)rd(&(f)->vm, &(f)->vm.pio, port, 1))

static uint16_t vbe_rd(struct fx *f, unsigned idx)
{
	return (uint16_t)MMIO_RD(f, 0x500 + 2 * idx, 2);
}

static void vbe_wr(struct fx *f, unsigned idx, uint16_t v)
{
	MMIO_WR(f, 0x500 + 2 * idx, 2, v);
}

static void set_mode(struct fx *f, unsigned w, unsigned h, unsigned bpp)
{
	vbe_wr(f, 4, 0);
	vbe_wr(f, 3, (uint16_t)bpp);
	vbe_wr(f, 1, (uint16_t)w);
	vbe_wr(f, 2, (uint16_t)h);
	vbe_wr(f, 4, VBE_ENABLE_ON);
}

/* The picture as the VNC server would send it now. */
static void snap(struct fx *f)
{
	free(f->img);
	f->img = NULL;
	assert_int_equal(console_snapshot_image(console_of(&f->vm), &f->img, &f->w, &f->h), 0);
}

static uint32_t px(struct fx *f, unsigned x, unsigned y)
{
	assert_true(x < f->w && y < f->h);
	return f->img[y * f->w + x];
}

/* ---- identity, EDID, VBE ---- */

static void test_pci_identity(void **state)
{
	struct fx *f = *state;

	assert_int_equal(pci_get_cfg16(f->pd, PCIR_VENDOR), 0x1234);
	assert_int_equal(pci_get_cfg16(f->pd, PCIR_DEVICE), 0x1111);
	assert_int_equal(pci_get_cfg8(f->pd, PCIR_CLASS), 0x03);
	assert_int_equal(pci_get_cfg8(f->pd, PCIR_SUBCLASS), 0x00);
	assert_int_equal(pci_get_cfg16(f->pd, PCIR_SUBVEND), 0x1af4);
	assert_int_equal(pci_get_cfg8(f->pd, PCIR_REVID), 2);
	/* BAR 0: 16 MiB, prefetchable, 32-bit memory. */
	assert_int_equal(pci_get_cfg32(f->pd, PCIR_BAR(0)) & 0xf, 0x8);
	assert_int_equal(f->fb & (16 * MiB - 1), 0);
	assert_int_not_equal(f->mmio, 0);
	/* QEMU's extended registers. */
	assert_int_equal(MMIO_RD(f, 0x600, 4), 8);
	assert_int_equal(MMIO_RD(f, 0x604, 4), 0x1e1e1e1e);
}

static void test_edid(void **state)
{
	static const char *const opts[] = { "w=800", "h=600", NULL };
	struct fx f;
	uint8_t e[128], sum = 0;

	fx_start(&f, opts);
	for (unsigned i = 0; i < 128; i++) {
		e[i] = (uint8_t)MMIO_RD(&f, i, 1);
		sum = (uint8_t)(sum + e[i]);
	}
	assert_memory_equal(e, "\x00\xff\xff\xff\xff\xff\xff\x00", 8);
	assert_int_equal(sum, 0);
	assert_int_equal(e[18], 1);
	assert_int_equal(e[19], 4);
	/* The first detailed timing is the preferred mode: w x h. */
	assert_int_equal(e[56] | (e[58] >> 4) << 8, 800);
	assert_int_equal(e[59] | (e[61] >> 4) << 8, 600);
	assert_int_not_equal(e[54] | e[55] << 8, 0); /* a pixel clock */
	assert_memory_equal(&e[90], "\x00\x00\x00\xfc\x00khyve\n", 11);
	fx_stop(&f);
}

static void test_vbe_registers(void **state)
{
	struct fx *f = *state;

	assert_int_equal(vbe_rd(f, 0), 0xb0c5);
	vbe_wr(f, 0, 0xb0c2);
	assert_int_equal(vbe_rd(f, 0), 0xb0c2);
	vbe_wr(f, 0, 0x1234); /* not an id: ignored */
	assert_int_equal(vbe_rd(f, 0), 0xb0c2);
	assert_int_equal(vbe_rd(f, 10), 256); /* 16 MiB in 64 KiB units */
	vbe_wr(f, 4, 0x02);		      /* get capabilities */
	assert_int_equal(vbe_rd(f, 1), 1920);
	assert_int_equal(vbe_rd(f, 2), 1200);
	assert_int_equal(vbe_rd(f, 3), 32);
	vbe_wr(f, 4, 0);
	/* Out of range or not a multiple of 8: the old value stays. */
	vbe_wr(f, 1, 2048);
	vbe_wr(f, 1, 1001);
	vbe_wr(f, 3, 7);
	assert_int_equal(vbe_rd(f, 1), 640);
	assert_int_equal(vbe_rd(f, 3), 8);
	set_mode(f, 1024, 768, 32);
	assert_int_equal(vbe_rd(f, 4) & 1, 1);
	assert_int_equal(vbe_rd(f, 6), 1024);
	assert_int_equal(vbe_rd(f, 7), 16 * MiB / 4096);
	/* While enabled the mode cannot change under the guest's feet. */
	vbe_wr(f, 1, 800);
	assert_int_equal(vbe_rd(f, 1), 1024);
	/* Panning stays inside the virtual screen. */
	vbe_wr(f, 9, 60000);
	assert_int_equal(vbe_rd(f, 9), vbe_rd(f, 7) - 768);
	/* The same registers through the Bochs ports. */
	wr(&f->vm, &f->vm.pio, 0x1ce, 2, 1);
	assert_int_equal(rd(&f->vm, &f->vm.pio, 0x1cf, 2), 1024);
}

/* ---- pictures ---- */

/* A refresh as the VNC server does it: true with the damaged rectangle if anything changed. */
static bool refresh_damage(struct fx *f, unsigned *r)
{
	struct console_surface *s = console_refresh(console_of(&f->vm), false);
	bool d;

	assert_non_null(s);
	d = s->damaged;
	r[0] = s->dx0;
	r[1] = s->dy0;
	r[2] = s->dx1;
	r[3] = s->dy1;
	s->damaged = false;
	console_refresh_done(console_of(&f->vm));
	return d;
}

/* A refresh that finds exactly the rectangle [x0, x1) x [y0, y1) damaged. */
static void expect_damage(struct fx *f, unsigned x0, unsigned y0, unsigned x1, unsigned y1)
{
	unsigned r[4];

	assert_true(refresh_damage(f, r));
	assert_int_equal(r[0], x0);
	assert_int_equal(r[1], y0);
	assert_int_equal(r[2], x1);
	assert_int_equal(r[3], y1);
}

static void test_vbe_picture_and_damage(void **state)
{
	struct fx *f = *state;
	unsigned r[4];

	set_mode(f, 640, 480, 32);
	wr(&f->vm, &f->vm.mmio, f->fb + (10 * 640 + 20) * 4, 4, 0x00123456);
	snap(f);
	assert_int_equal(f->w, 640);
	assert_int_equal(f->h, 480);
	assert_int_equal(px(f, 20, 10), 0x123456);
	assert_int_equal(px(f, 21, 10), 0);
	assert_true(refresh_damage(f, r)); /* the new mode: everything */
	/* Nothing written since: no damage, nothing to send. */
	assert_false(refresh_damage(f, r));
	/* One pixel: a damage of one pixel, though its whole page was marked. */
	wr(&f->vm, &f->vm.mmio, f->fb + (300 * 640 + 600) * 4, 4, 0x00abcdef);
	expect_damage(f, 600, 300, 601, 301);
	/* The same value again: the page is dirty, the picture is not. */
	wr(&f->vm, &f->vm.mmio, f->fb + (300 * 640 + 600) * 4, 4, 0x00abcdef);
	assert_false(refresh_damage(f, r));
	snap(f);
	assert_int_equal(px(f, 600, 300), 0xabcdef);
}

static void test_vbe_depths(void **state)
{
	struct fx *f = *state;

	set_mode(f, 320, 200, 16);
	wr(&f->vm, &f->vm.mmio, f->fb + 2 * 5, 2, 0xf800); /* red in 5:6:5 */
	snap(f);
	assert_int_equal(px(f, 5, 0), 0xff0000);
	set_mode(f, 320, 200, 24);
	wr(&f->vm, &f->vm.mmio, f->fb + 3 * 7, 1, 0x11);
	wr(&f->vm, &f->vm.mmio, f->fb + 3 * 7 + 1, 1, 0x22);
	wr(&f->vm, &f->vm.mmio, f->fb + 3 * 7 + 2, 1, 0x33);
	snap(f);
	assert_int_equal(px(f, 7, 0), 0x332211);
	/* 32 bits: the top byte is not colour. */
	set_mode(f, 320, 200, 32);
	wr(&f->vm, &f->vm.mmio, f->fb + 4 * 9, 4, 0xff445566);
	wr(&f->vm, &f->vm.mmio, f->fb + 4 * 10, 4, 0x00010203);
	snap(f);
	assert_int_equal(px(f, 9, 0), 0x445566);
	assert_int_equal(px(f, 10, 0), 0x010203);
	/* 8 bits: through the DAC (6-bit entries unless the 8-bit DAC flag is set). */
	set_mode(f, 320, 200, 8);
	OUTB(f, 0x3c8, 9);
	OUTB(f, 0x3c9, 0x3f);
	OUTB(f, 0x3c9, 0x00);
	OUTB(f, 0x3c9, 0x20);
	wr(&f->vm, &f->vm.mmio, f->fb + 3, 1, 9);
	snap(f);
	assert_int_equal(px(f, 3, 0), 0xff0082);
	/* Clearing on enable, unless asked not to. */
	vbe_wr(f, 4, 0);
	vbe_wr(f, 4, VBE_ENABLE_ON | 0x80);
	snap(f);
	assert_int_equal(px(f, 3, 0), 0xff0082);
	vbe_wr(f, 4, 0);
	vbe_wr(f, 4, VBE_ENABLE_ON);
	snap(f);
	assert_int_equal(px(f, 3, 0), 0);
}

static void text_put(struct fx *f, unsigned cell, uint8_t ch, uint8_t at)
{
	wr(&f->vm, &f->vm.mmio, 0xb8000 + 2 * cell, 1, ch);
	wr(&f->vm, &f->vm.mmio, 0xb8000 + 2 * cell + 1, 1, at);
}

static void check_glyph(struct fx *f, unsigned cx, unsigned cy, const uint8_t *g, uint32_t fg,
			uint32_t bg)
{
	for (unsigned y = 0; y < 16; y++)
		for (unsigned x = 0; x < 8; x++)
			assert_int_equal(px(f, cx * 9 + x, cy * 16 + y),
					 (g[y] & (0x80 >> x)) ? fg : bg);
}

static void test_text_mode(void **state)
{
	struct fx *f = *state;

	/* Power-on: 80x25 cells of 9x16.  The cursor (cell 0) out of the way first. */
	OUTB(f, 0x3d4, 0x0e);
	OUTB(f, 0x3d5, 0x07);
	text_put(f, 0, 'A', 0x1f);
	text_put(f, 81, 'B', 0x4e);
	text_put(f, 2, 0xc4, 0x07);
	snap(f);
	assert_int_equal(f->w, 720);
	assert_int_equal(f->h, 400);
	check_glyph(f, 0, 0, glyph_a, 0xffffff, 0x0000aa);
	check_glyph(f, 1, 1, glyph_b, 0xffff55, 0xaa0000);
	/* The 9th column is background, except for line drawing characters. */
	assert_int_equal(px(f, 8, 4), 0x0000aa);
	assert_int_equal(px(f, 2 * 9 + 8, 8), 0xaaaaaa);
	assert_int_equal(px(f, 2 * 9 + 7, 8), 0xaaaaaa);
	/* The cursor: cell 0, scan lines 13-14 (mode 3's). */
	OUTB(f, 0x3d4, 0x0e);
	OUTB(f, 0x3d5, 0);
	OUTB(f, 0x3d4, 0x0f);
	OUTB(f, 0x3d5, 81);
	snap(f);
	assert_int_equal(px(f, 9 + 3, 16 + 13), 0xffff55);
	assert_int_equal(px(f, 9 + 3, 16 + 12), 0xaa0000);
	/* 8-dot characters: 640 wide. */
	OUTB(f, 0x3c4, 1);
	OUTB(f, 0x3c5, 0x01);
	snap(f);
	assert_int_equal(f->w, 640);
	/* The screen off (sequencer) is black. */
	OUTB(f, 0x3c4, 1);
	OUTB(f, 0x3c5, 0x21);
	snap(f);
	assert_int_equal(px(f, 3, 5), 0);
}

/* Attribute controller register @idx := @v (the flip-flop reset first; the display kept on). */
static void planar_mode(struct fx *f);

static void ar_wr(struct fx *f, uint8_t idx, uint8_t v)
{
	(void)INB(f, 0x3da);
	OUTB(f, 0x3c0, idx | 0x20);
	OUTB(f, 0x3c0, v);
}

static void dac_wr(struct fx *f, uint8_t i, uint8_t r, uint8_t g, uint8_t b)
{
	OUTB(f, 0x3c8, i);
	OUTB(f, 0x3c9, r);
	OUTB(f, 0x3c9, g);
	OUTB(f, 0x3c9, b);
}

/*
 * Rendering corners: blink on (mode 3) shows the background without its bit 3, off gives
 * it as a colour; AR10 bit 7 takes colour bits 4-5 from AR14; AR10 bit 2 off stops the 9th
 * dot repeating line-drawing characters; the palette address source bit clear blanks the
 * screen; CR9 bit 7 double-scans graphics; 15-bit VBE pixels; the 8-bit DAC.
 */
static void test_render_corners(void **state)
{
	struct fx *f = *state;

	OUTB(f, 0x3d4, 0x0e);
	OUTB(f, 0x3d5, 0x07);
	text_put(f, 0, 'A', 0xc1);
	text_put(f, 2, 0xc4, 0x07);
	snap(f);
	check_glyph(f, 0, 0, glyph_a, 0x0000aa, 0xaa0000);
	assert_int_equal(px(f, 2 * 9 + 8, 8), 0xaaaaaa);
	/* Blink and line graphics off, colour select on: DAC 0x10 + (attribute & 15). */
	dac_wr(f, 0x11, 0x3f, 0x3f, 0x00);
	dac_wr(f, 0x1c, 0x00, 0x3f, 0x3f);
	dac_wr(f, 0x17, 0x3f, 0x00, 0x3f);
	dac_wr(f, 0x10, 0x00, 0x00, 0x10);
	ar_wr(f, 0x10, 0x80);
	ar_wr(f, 0x14, 0x01);
	snap(f);
	check_glyph(f, 0, 0, glyph_a, 0xffff00, 0x00ffff);
	assert_int_equal(px(f, 2 * 9 + 7, 8), 0xff00ff);
	assert_int_equal(px(f, 2 * 9 + 8, 8), 0x000041);
	assert_int_equal(px(f, 2 * 9 + 8, 0), 0x000041);
	/* The palette address source bit clear: the attribute controller drives nothing. */
	(void)INB(f, 0x3da);
	OUTB(f, 0x3c0, 0x00);
	snap(f);
	for (unsigned x = 0; x < 9; x++)
		assert_int_equal(px(f, x, 6), 0);
	(void)INB(f, 0x3da);
	OUTB(f, 0x3c0, 0x20);
	snap(f);
	assert_int_equal(px(f, 0, 0), 0x00ffff);
	/* Graphics, each line shown twice: half the lines. */
	planar_mode(f);
	OUTB(f, 0x3d4, 0x09);
	OUTB(f, 0x3d5, 0x80);
	snap(f);
	assert_int_equal(f->w, 640);
	assert_int_equal(f->h, 240);
	/* 15 bits a pixel, 5:5:5. */
	set_mode(f, 320, 200, 15);
	wr(&f->vm, &f->vm.mmio, f->fb + 2 * 4, 2, 0x7c00);
	wr(&f->vm, &f->vm.mmio, f->fb + 2 * 5, 2, 0x03e0);
	wr(&f->vm, &f->vm.mmio, f->fb + 2 * 6, 2, 0x0010);
	snap(f);
	assert_int_equal(px(f, 4, 0), 0xff0000);
	assert_int_equal(px(f, 5, 0), 0x00ff00);
	assert_int_equal(px(f, 6, 0), 0x000084);
	/* The 8-bit DAC: entries are taken and shown as written. */
	set_mode(f, 320, 200, 8);
	vbe_wr(f, 4, 0);
	vbe_wr(f, 4, VBE_ENABLE_ON | 0x20);
	dac_wr(f, 9, 0x80, 0x41, 0xfe);
	wr(&f->vm, &f->vm.mmio, f->fb + 3, 1, 9);
	snap(f);
	assert_int_equal(px(f, 3, 0), 0x8041fe);
}

/*
 * Damage in text and planar modes: a write that changes no cell (the same character again)
 * or no line sends nothing; a changed cell damages exactly its 9x16 box, a changed byte of
 * a planar line exactly its 8 pixels.
 */
static void test_text_and_planar_damage(void **state)
{
	struct fx *f = *state;
	unsigned r[4];

	OUTB(f, 0x3d4, 0x0e);
	OUTB(f, 0x3d5, 0x07);
	text_put(f, 5, 'A', 0x1f);
	assert_true(refresh_damage(f, r));
	assert_false(refresh_damage(f, r));
	text_put(f, 5, 'A', 0x1f);
	assert_false(refresh_damage(f, r));
	text_put(f, 81, 'B', 0x4e);
	expect_damage(f, 9, 16, 18, 32);
	planar_mode(f);
	assert_true(refresh_damage(f, r));
	assert_false(refresh_damage(f, r));
	wr(&f->vm, &f->vm.mmio, 0xa0000 + 10 * 80 + 2, 1, 0xff);
	expect_damage(f, 16, 10, 24, 11);
	snap(f);
	assert_int_equal(px(f, 16, 10), 0xffffff);
	assert_int_equal(px(f, 15, 10), 0);
	/* The same byte again: nothing. */
	wr(&f->vm, &f->vm.mmio, 0xa0000 + 10 * 80 + 2, 1, 0xff);
	assert_false(refresh_damage(f, r));
}

#define RD(f, port, size) ((uint32_t)rd(&(f)->vm, &(f)->vm.pio, port, size))

/*
 * The VGA registers as a driver probes them: each index/data pair reads back what was
 * written (masked to the bits the register has), out-of-range indexes read as 0xff and
 * write nothing, the attribute flip-flop and DAC auto-increment behave as on hardware, and
 * the CRTC answers only at the address the misc register selects.
 */
static void test_vga_registers(void **state)
{
	struct fx *f = *state;

	/* Sequencer: index masked to 3 bits, data to the register's bits. */
	OUTB(f, 0x3c4, 0x0c);
	assert_int_equal(INB(f, 0x3c4), 4);
	OUTB(f, 0x3c5, 0xff);
	assert_int_equal(INB(f, 0x3c5), 0x0e);
	OUTB(f, 0x3c4, 7);
	OUTB(f, 0x3c5, 0xa5);
	assert_int_equal(INB(f, 0x3c5), 0xa5);
	/* Graphics controller: 9 registers; index 9..15 reads 0xff and keeps nothing. */
	OUTB(f, 0x3ce, 3);
	OUTB(f, 0x3cf, 0xff);
	assert_int_equal(INB(f, 0x3ce), 3);
	assert_int_equal(INB(f, 0x3cf), 0x1f);
	OUTB(f, 0x3ce, 0x1b);
	assert_int_equal(INB(f, 0x3ce), 0x0b);
	OUTB(f, 0x3cf, 0x12);
	assert_int_equal(INB(f, 0x3cf), 0xff);
	/* CRTC at 3Dx (colour): 0x19 registers; the rest read 0xff. */
	OUTB(f, 0x3d4, 0x11);
	OUTB(f, 0x3d5, 0x00);
	OUTB(f, 0x3d4, 0x0a);
	OUTB(f, 0x3d5, 0x2d);
	assert_int_equal(INB(f, 0x3d4), 0x0a);
	assert_int_equal(INB(f, 0x3d5), 0x2d);
	OUTB(f, 0x3d4, 0x40);
	OUTB(f, 0x3d5, 0x77);
	assert_int_equal(INB(f, 0x3d5), 0xff);
	/* CR11 bit 7 protects CR0-7, except CR7's line compare bit 4. */
	OUTB(f, 0x3d4, 0x02);
	OUTB(f, 0x3d5, 0x50);
	OUTB(f, 0x3d4, 0x07);
	OUTB(f, 0x3d5, 0x00);
	OUTB(f, 0x3d4, 0x11);
	OUTB(f, 0x3d5, 0x80);
	OUTB(f, 0x3d4, 0x02);
	OUTB(f, 0x3d5, 0x33);
	assert_int_equal(INB(f, 0x3d5), 0x50);
	OUTB(f, 0x3d4, 0x07);
	OUTB(f, 0x3d5, 0xff);
	assert_int_equal(INB(f, 0x3d5), 0x10);
	OUTB(f, 0x3d4, 0x11);
	OUTB(f, 0x3d5, 0x00);
	/* Misc, feature (written at 3DA, read at 3CA), input status 0, PEL mask. */
	assert_int_equal(INB(f, 0x3cc) & 1, 1); /* colour */
	OUTB(f, 0x3da, 0x03);
	assert_int_equal(INB(f, 0x3ca), 0x03);
	assert_int_equal(INB(f, 0x3c2), 0x00);
	OUTB(f, 0x3c6, 0x7f);
	assert_int_equal(INB(f, 0x3c6), 0x7f);
	OUTB(f, 0x3c6, 0xff);
	/* Input status 1 toggles (retrace) and resets the attribute flip-flop. */
	{
		uint8_t a = INB(f, 0x3da), b = INB(f, 0x3da);

		assert_int_equal(a ^ b, 0x09);
	}
	/* Attribute controller: index, then data, alternating; palette entries 6 bits. */
	OUTB(f, 0x3c0, 0x05);
	OUTB(f, 0x3c0, 0xff);
	assert_int_equal(INB(f, 0x3c0), 0x05);
	assert_int_equal(INB(f, 0x3c1), 0x3f);
	OUTB(f, 0x3c0, 0x13); /* flip-flop back at index: this is an index */
	OUTB(f, 0x3c0, 0x08);
	assert_int_equal(INB(f, 0x3c1), 0x08);
	(void)INB(f, 0x3da);  /* the flip-flop back at index */
	OUTB(f, 0x3c0, 0x1f); /* past the 0x15 registers: reads 0, writes nothing */
	OUTB(f, 0x3c0, 0x55);
	assert_int_equal(INB(f, 0x3c1), 0);
	(void)INB(f, 0x3da);  /* the flip-flop back at index */
	OUTB(f, 0x3c0, 0x20); /* palette access back on: the picture shows again */
	/* DAC: write index, three 6-bit components each, auto-increment; read the same. */
	OUTB(f, 0x3c8, 0x10);
	assert_int_equal(INB(f, 0x3c8), 0x10);
	assert_int_equal(INB(f, 0x3c7), 0); /* write mode */
	OUTB(f, 0x3c9, 0xff);
	OUTB(f, 0x3c9, 0x01);
	OUTB(f, 0x3c9, 0x22);
	OUTB(f, 0x3c9, 0x33); /* entry 0x11's red */
	OUTB(f, 0x3c7, 0x10);
	assert_int_equal(INB(f, 0x3c7), 3); /* read mode */
	assert_int_equal(INB(f, 0x3c9), 0x3f);
	assert_int_equal(INB(f, 0x3c9), 0x01);
	assert_int_equal(INB(f, 0x3c9), 0x22);
	assert_int_equal(INB(f, 0x3c9), 0x33);
	/* Port 3C3 and others in the range answer 0xff. */
	assert_int_equal(INB(f, 0x3cd), 0xff);
	/* A 16-bit access is two byte accesses; a 32-bit read's upper half is all ones. */
	wr(&f->vm, &f->vm.pio, 0x3d4, 2, 0x550c);
	assert_int_equal(RD(f, 0x3d4, 2), 0x550c);
	assert_int_equal(RD(f, 0x3d4, 4), 0xffff550c);
	/* Monochrome (misc bit 0 clear): the CRTC moves to 3Bx, 3Dx reads 0xff, ignores. */
	OUTB(f, 0x3c2, INB(f, 0x3cc) & ~1);
	assert_int_equal(INB(f, 0x3d4), 0xff);
	OUTB(f, 0x3d4, 0x0e);
	assert_int_equal(INB(f, 0x3b4), 0x0c);
	OUTB(f, 0x3b4, 0x0f);
	OUTB(f, 0x3b5, 0x42);
	assert_int_equal(INB(f, 0x3b5), 0x42);
	assert_int_equal(INB(f, 0x3ba) ^ INB(f, 0x3ba), 0x09);
	OUTB(f, 0x3c2, INB(f, 0x3cc) | 1);
	assert_int_equal(INB(f, 0x3b4), 0xff);
	OUTB(f, 0x3b5, 0x99); /* ignored in colour mode */
	assert_int_equal(INB(f, 0x3d4), 0x0f);
	assert_int_equal(INB(f, 0x3d5), 0x42);
}

/* Mode 12h-like: 640x480, 16 colours, planar. */
static void planar_mode(struct fx *f)
{
	OUTB(f, 0x3ce, 6);
	OUTB(f, 0x3cf, 0x05); /* graphics, A0000 64 KiB */
	OUTB(f, 0x3ce, 5);
	OUTB(f, 0x3cf, 0x00);
	OUTB(f, 0x3c4, 4);
	OUTB(f, 0x3c5, 0x06); /* planar */
	OUTB(f, 0x3c4, 2);
	OUTB(f, 0x3c5, 0x0f); /* write all four planes */
	OUTB(f, 0x3d4, 0x11);
	OUTB(f, 0x3d5, 0x00); /* unprotect */
	OUTB(f, 0x3d4, 0x12);
	OUTB(f, 0x3d5, 0xdf);
	OUTB(f, 0x3d4, 0x07);
	OUTB(f, 0x3d5, 0x3e); /* vertical display end 479 */
	OUTB(f, 0x3d4, 0x09);
	OUTB(f, 0x3d5, 0x40);
}

static void test_planar_write_modes(void **state)
{
	struct fx *f = *state;

	planar_mode(f);
	/* Write mode 2: the byte's low bits are a colour for the pixels the bit mask names. */
	OUTB(f, 0x3ce, 5);
	OUTB(f, 0x3cf, 0x02);
	OUTB(f, 0x3ce, 8);
	OUTB(f, 0x3cf, 0x80);
	rd(&f->vm, &f->vm.mmio, 0xa0000, 1); /* load the latches */
	wr(&f->vm, &f->vm.mmio, 0xa0000, 1, 0x0c);
	OUTB(f, 0x3ce, 8);
	OUTB(f, 0x3cf, 0x01);
	/* The bits the mask leaves come from the latches: load them again first. */
	rd(&f->vm, &f->vm.mmio, 0xa0000, 1);
	wr(&f->vm, &f->vm.mmio, 0xa0000, 1, 0x09);
	snap(f);
	assert_int_equal(f->w, 640);
	assert_int_equal(f->h, 480);
	assert_int_equal(px(f, 0, 0), 0xff5555); /* colour 12 */
	assert_int_equal(px(f, 7, 0), 0x5555ff); /* colour 9 */
	assert_int_equal(px(f, 3, 0), 0);
	/* Read mode 1: which pixels have colour 12? */
	OUTB(f, 0x3ce, 5);
	OUTB(f, 0x3cf, 0x08);
	OUTB(f, 0x3ce, 2);
	OUTB(f, 0x3cf, 0x0c);
	OUTB(f, 0x3ce, 7);
	OUTB(f, 0x3cf, 0x0f);
	assert_int_equal(rd(&f->vm, &f->vm.mmio, 0xa0000, 1), 0x80);
	/* Write mode 0 with set/reset and XOR on plane 1. */
	OUTB(f, 0x3ce, 5);
	OUTB(f, 0x3cf, 0x00);
	OUTB(f, 0x3ce, 8);
	OUTB(f, 0x3cf, 0xff);
	OUTB(f, 0x3ce, 3);
	OUTB(f, 0x3cf, 0x18); /* XOR */
	OUTB(f, 0x3c4, 2);
	OUTB(f, 0x3c5, 0x02);
	rd(&f->vm, &f->vm.mmio, 0xa0000, 1);
	wr(&f->vm, &f->vm.mmio, 0xa0000, 1, 0x81);
	snap(f);
	assert_int_equal(px(f, 0, 0), 0xffff55); /* 12 ^ 2 = 14 */
	assert_int_equal(px(f, 7, 0), 0x55ffff); /* 9 ^ 2 = 11 */
	assert_int_equal(px(f, 1, 0), 0);
}

static void test_chain4_256_colours(void **state)
{
	struct fx *f = *state;

	planar_mode(f);
	OUTB(f, 0x3c4, 4);
	OUTB(f, 0x3c5, 0x0e); /* chain 4 */
	OUTB(f, 0x3ce, 5);
	OUTB(f, 0x3cf, 0x40); /* 256 colours */
	OUTB(f, 0x3d4, 0x09);
	OUTB(f, 0x3d5, 0x41); /* each line twice: 200 lines */
	OUTB(f, 0x3d4, 0x12);
	OUTB(f, 0x3d5, 0x8f);
	OUTB(f, 0x3d4, 0x07);
	OUTB(f, 0x3d5, 0x1f);
	wr(&f->vm, &f->vm.mmio, 0xa0000 + 320 * 2 + 5, 1, 4);
	snap(f);
	assert_int_equal(f->w, 320);
	assert_int_equal(f->h, 200);
	assert_int_equal(px(f, 5, 2), 0xaa0000);
	assert_int_equal(rd(&f->vm, &f->vm.mmio, 0xa0000 + 320 * 2 + 5, 1), 4);
}

/* ---- snapshot ---- */

static void test_snapshot(void **state)
{
	struct fx *f = *state, g;
	uint8_t *a, *b;
	size_t alen, blen;
	uint32_t *img_f;

	set_mode(f, 640, 480, 32);
	for (unsigned i = 0; i < 640; i++)
		wr(&f->vm, &f->vm.mmio, f->fb + (200 * 640 + i) * 4, 4, i * 0x10101);
	OUTB(f, 0x3c8, 7);
	OUTB(f, 0x3c9, 1);
	snap(f);
	img_f = f->img;
	f->img = NULL;
	a = devsnap_save_copy(&f->pd->dev, &alen);
	/* Sparse: the registers, the font in plane 2 and one line of pixels. */
	assert_true(alen < 16 * VGA_PAGE);

	fx_start(&g, vga_on);
	assert_int_equal(devsnap_load(&g.pd->dev, a, alen, 1), 0);
	snap(&g);
	assert_int_equal(g.w, 640);
	assert_memory_equal(g.img, img_f, 640 * 480 * 4);
	b = devsnap_save_copy(&g.pd->dev, &blen);
	assert_int_equal(alen, blen);
	assert_memory_equal(a, b, alen);
	free(b);
	fx_stop(&g);
	free(img_f);
	free(a);
}

/* Find @n bytes of @what in @buf (the saved layout has no fixed offsets to hard-code). */
static size_t find(const uint8_t *buf, size_t len, const void *what, size_t n)
{
	for (size_t i = 0; i + n <= len; i++)
		if (!memcmp(buf + i, what, n))
			return i;
	fail_msg("pattern not in the saved state");
	return 0;
}

static void test_snapshot_refused(void **state)
{
	struct fx *f = *state;
	static const uint8_t mark1[4] = { 0x5a, 0xa5, 0x3c, 0xc3 },
			     mark2[4] = { 0x96, 0x69, 0x1e, 0xe1 };
	uint8_t *a, *c;
	size_t alen, o1, o2;

	set_mode(f, 640, 480, 32);
	wr(&f->vm, &f->vm.mmio, f->fb + 8 * MiB, 4, 0xc33ca55a);
	wr(&f->vm, &f->vm.mmio, f->fb + 9 * MiB, 4, 0xe11e6996);
	a = devsnap_save_copy(&f->pd->dev, &alen);
	c = malloc(alen);
	/* A saved page is its index, then its 4096 bytes. */
	o1 = find(a, alen, mark1, 4);
	o2 = find(a, alen, mark2, 4);
	assert_int_equal(a[o1 - 4] | a[o1 - 3] << 8, 8 * MiB / VGA_PAGE);
	assert_int_equal(a[o2 - 4] | a[o2 - 3] << 8, 9 * MiB / VGA_PAGE);
	memcpy(c, a, alen);
	c[o2 - 3] = 0x40; /* page 0x4000: beyond 16 MiB */
	devsnap_expect_refused(&f->pd->dev, c, alen, 1);
	memcpy(c, a, alen);
	c[o2 - 3] = 0x07; /* page 0x700 after 0x800: out of order */
	devsnap_expect_refused(&f->pd->dev, c, alen, 1);
	c[o2 - 4] = 0x00;
	c[o2 - 3] = 0x08; /* page 0x800 twice */
	devsnap_expect_refused(&f->pd->dev, c, alen, 1);
	memcpy(c, a, alen);
	c[o2 - 2] = 0x01; /* page 0x10900: past the frame buffer, in order */
	devsnap_expect_refused(&f->pd->dev, c, alen, 1);
	memcpy(c, a, alen);
	c[0] ^= 1; /* the vga mode this device was made with */
	devsnap_expect_refused(&f->pd->dev, c, alen, 1);
	devsnap_expect_refused(&f->pd->dev, a, alen - 1, 1);
	devsnap_expect_refused(&f->pd->dev, a, alen, 2);
	free(c);
	free(a);
}

/* Every check on loaded VGA and VBE registers, one field out of range at a time. */
static void test_vga_regs_check(void **state)
{
	struct vga v;
	struct vga_regs good, r;
	struct sstream s;
	uint8_t *vram = calloc(1, 16 * MiB);

	assert_int_equal(vga_init(&v, vram, 16 * MiB, 1920, 1200), 0);
	vga_reset(&v);
	vga_vbe_write(&v, VBE_INDEX_XRES, 800);
	vga_vbe_write(&v, VBE_INDEX_YRES, 600);
	vga_vbe_write(&v, VBE_INDEX_BPP, 32);
	vga_vbe_write(&v, VBE_INDEX_ENABLE, VBE_ENABLED | VBE_LFB_ENABLED);
	assert_true(vga_vbe_enabled(&v));
	/* The virtual screen is as tall as video memory holds: 16 MiB / 3200 bytes a line. */
	assert_int_equal(v.r.vbe[VBE_INDEX_VIRT_HEIGHT], 5242);
	good = v.r;
	ss_init_load(&s, NULL, 0);
	vga_regs_check(&s, &v, &good);
	assert_int_equal(ss_error(&s), 0);
	{
		static const struct {
			const char *why;
			unsigned what;
		} cases[] = {
			{ "VGA sequencer index", 0 },
			{ "VGA sequencer register bits", 1 },
			{ "VGA graphics controller index", 2 },
			{ "VGA graphics register bits", 3 },
			{ "VGA attribute index", 4 },
			{ "VGA attribute palette entry", 5 },
			{ "VGA DAC component", 6 },
			{ "VGA DAC state 1", 7 },
			{ "VGA DAC entry (6 bits)", 8 },
			{ "VBE id 0xb0c6", 9 },
			{ "VBE id 0x1234", 10 },
			{ "VBE depth 12", 11 },
			{ "VBE mode 0x600", 12 },
			{ "VBE mode 1928x600", 13 },
			{ "VBE mode 804x600", 14 },
			{ "VBE mode 800x0", 15 },
			{ "VBE mode 800x1208", 16 },
			{ "VBE bank 256", 17 },
			{ "VBE enable bits", 18 },
			{ "VBE virtual screen 792x5242+0+0", 19 },
			{ "VBE virtual screen 800x590+0+0", 20 },
			{ "VBE virtual screen 8000x5242+0+0", 21 },
			{ "VBE virtual screen 800x5242+8+0", 22 },
			{ "VBE virtual screen 800x5242+0+4643", 23 },
		};

		for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
			uint16_t *e = r.vbe;

			r = good;
			switch (cases[i].what) {
			case 0:
				r.sr_idx = 8;
				break;
			case 1:
				r.sr[0] = 0x04;
				break;
			case 2:
				r.gr_idx = 16;
				break;
			case 3:
				r.gr[5] = 0x04;
				break;
			case 4:
				r.ar_idx = 0x40;
				break;
			case 5:
				r.ar[3] = 0x40;
				break;
			case 6:
				r.dac_sub = 3;
				break;
			case 7:
				r.dac_state = 1;
				break;
			case 8:
				r.dac[200][2] = 0x40;
				break;
			case 9:
				e[VBE_INDEX_ID] = VBE_ID5 + 1;
				break;
			case 10:
				e[VBE_INDEX_ID] = 0x1234;
				break;
			case 11:
				e[VBE_INDEX_BPP] = 12;
				break;
			case 12:
				e[VBE_INDEX_XRES] = 0;
				break;
			case 13:
				e[VBE_INDEX_XRES] = 1928;
				break;
			case 14:
				e[VBE_INDEX_XRES] = 804;
				break;
			case 15:
				e[VBE_INDEX_YRES] = 0;
				break;
			case 16:
				e[VBE_INDEX_YRES] = 1208;
				break;
			case 17:
				e[VBE_INDEX_BANK] = 256;
				break;
			case 18:
				e[VBE_INDEX_ENABLE] |= 0x04;
				break;
			case 19:
				e[VBE_INDEX_VIRT_WIDTH] = 792;
				break;
			case 20:
				e[VBE_INDEX_VIRT_HEIGHT] = 590;
				break;
			case 21:
				e[VBE_INDEX_VIRT_WIDTH] = 8000;
				break;
			case 22:
				e[VBE_INDEX_X_OFFSET] = 8;
				break;
			case 23:
				e[VBE_INDEX_Y_OFFSET] = 5242 - 600 + 1;
				break;
			}
			ss_init_load(&s, NULL, 0);
			vga_regs_check(&s, &v, &r);
			if (!ss_error(&s) || !strstr(s.msg, cases[i].why))
				fail_msg("case %zu: '%s' does not mention '%s'", i, s.msg,
					 cases[i].why);
		}
	}
	/* With the 8-bit DAC on, full bytes are entries; a disabled VBE's screen is not checked. */
	r = good;
	r.vbe[VBE_INDEX_ENABLE] |= VBE_8BIT_DAC;
	r.dac[200][2] = 0xff;
	ss_init_load(&s, NULL, 0);
	vga_regs_check(&s, &v, &r);
	assert_int_equal(ss_error(&s), 0);
	r = good;
	r.vbe[VBE_INDEX_ENABLE] = 0;
	r.vbe[VBE_INDEX_VIRT_WIDTH] = 8;
	ss_init_load(&s, NULL, 0);
	vga_regs_check(&s, &v, &r);
	assert_int_equal(ss_error(&s), 0);
	vga_free(&v);
	free(vram);
}

/* ---- VGA memory, driven directly (vga.c's planar model) ---- */

static void vout(struct vga *v, uint16_t port, uint8_t val)
{
	vga_ioport(v, port, &val, 1, true);
}

static void vreg(struct vga *v, uint16_t idx_port, uint8_t idx, uint8_t val)
{
	vout(v, idx_port, idx);
	vout(v, (uint16_t)(idx_port + 1), val);
}

#define GR(v, i, x) vreg(v, 0x3ce, i, x)
#define SR(v, i, x) vreg(v, 0x3c4, i, x)

static uint8_t vrd(struct vga *v, uint64_t off)
{
	uint8_t b;

	vga_mem(v, off, &b, 1, false);
	return b;
}

static void vwr(struct vga *v, uint64_t off, uint8_t val)
{
	vga_mem(v, off, &val, 1, true);
}

/* The four planes of byte @a (planar: interleaved in video memory). */
static uint32_t planes(const struct vga *v, uint32_t a)
{
	const uint8_t *p = &v->vram[a << 2];

	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/*
 * The graphics controller's write modes, logical operations, rotation, set/reset, bit mask
 * and map mask; read mode 0 and 1 (colour compare, don't care); odd/even and chain-4
 * addressing; the four memory map windows; the VBE bank window (as the VGA reference and
 * Bochs VBE describe them).
 */
static void test_vga_memory(void **state)
{
	uint8_t *vram = calloc(1, 16 * MiB);
	struct vga v;

	assert_int_equal(vga_init(&v, vram, 16 * MiB, 1920, 1200), 0);
	vga_reset(&v);
	SR(&v, 4, 0x06); /* planar */
	SR(&v, 2, 0x0f);
	GR(&v, 5, 0x00);
	GR(&v, 6, 0x05); /* graphics, A0000 64 KiB */
	GR(&v, 8, 0xff);
	GR(&v, 1, 0x00);
	GR(&v, 3, 0x00);
	/* Mode 0: the byte to every plane the map mask enables. */
	vwr(&v, 0, 0xa5);
	assert_int_equal(planes(&v, 0), 0xa5a5a5a5);
	SR(&v, 2, 0x05);
	vwr(&v, 1, 0x3c);
	assert_int_equal(planes(&v, 1), 0x003c003c);
	SR(&v, 2, 0x0f);
	/* Set/reset for the enabled planes. */
	GR(&v, 1, 0x0f);
	GR(&v, 0, 0x0a);
	vwr(&v, 2, 0x12);
	assert_int_equal(planes(&v, 2), 0xff00ff00);
	GR(&v, 1, 0x00);
	/* Rotation. */
	GR(&v, 3, 0x01);
	vwr(&v, 3, 0x01);
	assert_int_equal(planes(&v, 3), 0x80808080);
	GR(&v, 3, 0x00);
	/* The bit mask keeps the latched bits. */
	assert_int_equal(vrd(&v, 0), 0xa5); /* latches: 0xa5 in each plane */
	GR(&v, 8, 0x0f);
	vwr(&v, 0, 0x00);
	assert_int_equal(planes(&v, 0), 0xa0a0a0a0);
	GR(&v, 8, 0xff);
	/* AND, OR, XOR with the latches. */
	(void)vrd(&v, 0);
	GR(&v, 3, 0x08);
	vwr(&v, 4, 0xf0);
	assert_int_equal(planes(&v, 4), 0xa0a0a0a0);
	GR(&v, 3, 0x10);
	vwr(&v, 4, 0x0f);
	assert_int_equal(planes(&v, 4), 0xafafafaf);
	GR(&v, 3, 0x18);
	vwr(&v, 4, 0xff);
	assert_int_equal(planes(&v, 4), 0x5f5f5f5f);
	GR(&v, 3, 0x00);
	/* Mode 1: the latches as they are (a copy). */
	(void)vrd(&v, 2);
	GR(&v, 5, 0x01);
	vwr(&v, 5, 0x77);
	assert_int_equal(planes(&v, 5), 0xff00ff00);
	/* Mode 2: each plane all ones or zeros by the byte's low bits. */
	GR(&v, 5, 0x02);
	vwr(&v, 6, 0x05);
	assert_int_equal(planes(&v, 6), 0x00ff00ff);
	/* Mode 3: set/reset through a mask of the rotated byte and the bit mask. */
	(void)vrd(&v, 4); /* latches 0x5f */
	GR(&v, 5, 0x03);
	GR(&v, 0, 0x03);
	vwr(&v, 7, 0xf0);
	assert_int_equal(planes(&v, 7), 0x0f0fffff);
	/* Read mode 0: the plane read map select picks. */
	GR(&v, 5, 0x00);
	vram[(9 << 2) | 2] = 0x42;
	GR(&v, 4, 2);
	assert_int_equal(vrd(&v, 9), 0x42);
	GR(&v, 4, 0);
	assert_int_equal(vrd(&v, 9), 0x00);
	/* Read mode 1: the bits where every cared-for plane matches the colour compare. */
	GR(&v, 5, 0x08);
	GR(&v, 2, 0x05); /* colour 0101: plane 0 and 2 set, 1 and 3 clear */
	GR(&v, 7, 0x0f);
	assert_int_equal(vrd(&v, 6), 0xff); /* planes ff 00 ff 00 */
	assert_int_equal(vrd(&v, 2), 0x00); /* planes 00 ff 00 ff */
	GR(&v, 7, 0x00);		    /* nothing cared for: all match */
	assert_int_equal(vrd(&v, 2), 0xff);
	GR(&v, 7, 0x0f);
	GR(&v, 5, 0x00);
	/* Odd/even: even addresses to planes 0/2, odd to 1/3, two bytes a dword. */
	GR(&v, 5, 0x10);
	vwr(&v, 0x20, 0x11);
	vwr(&v, 0x21, 0x22);
	assert_int_equal(vram[(0x10 << 2) | 0], 0x11);
	assert_int_equal(vram[(0x10 << 2) | 1], 0x22);
	GR(&v, 4, 2); /* the high page: planes 2 and 3 */
	vwr(&v, 0x20, 0x33);
	assert_int_equal(vram[(0x10 << 2) | 2], 0x33);
	assert_int_equal(vrd(&v, 0x20), 0x33);
	GR(&v, 4, 0);
	assert_int_equal(vrd(&v, 0x21), 0x22);
	SR(&v, 2, 0x0d); /* plane 1 masked: the odd byte is not written */
	vwr(&v, 0x21, 0x99);
	assert_int_equal(vram[(0x10 << 2) | 1], 0x22);
	SR(&v, 2, 0x0f);
	GR(&v, 5, 0x00);
	/* Chain-4: byte addressing, the plane is the address's low two bits. */
	SR(&v, 4, 0x0e);
	vwr(&v, 0x102, 0x5a);
	assert_int_equal(vram[0x102], 0x5a);
	assert_int_equal(vrd(&v, 0x102), 0x5a);
	SR(&v, 2, 0x0b); /* plane 2 masked */
	vwr(&v, 0x106, 0x5a);
	assert_int_equal(vram[0x106], 0);
	SR(&v, 2, 0x0f);
	SR(&v, 4, 0x06);
	/* Memory map windows: B0000 32 KiB, B8000 32 KiB, A0000 128 KiB. */
	GR(&v, 6, 0x09);
	assert_int_equal(vrd(&v, 0x0000), 0xff); /* A0000: not mapped now */
	vwr(&v, 0x0000, 0x00);
	assert_int_equal(planes(&v, 0), 0xa0a0a0a0);
	vwr(&v, 0x10001, 0x66);
	assert_int_equal(planes(&v, 1), 0x66666666);
	assert_int_equal(vrd(&v, 0x18000), 0xff); /* past its 32 KiB */
	GR(&v, 6, 0x0d);
	vwr(&v, 0x18001, 0x77);
	assert_int_equal(planes(&v, 1), 0x77777777);
	assert_int_equal(vrd(&v, 0x10001), 0xff);
	GR(&v, 6, 0x01);
	vwr(&v, 0x1ffff, 0x44); /* 128 KiB: the last byte, plane offset 0xffff */
	assert_int_equal(planes(&v, 0xffff), 0x44444444);
	/* VBE on: a 64 KiB bank window into the whole of video memory. */
	vga_vbe_write(&v, VBE_INDEX_XRES, 640);
	vga_vbe_write(&v, VBE_INDEX_YRES, 480);
	vga_vbe_write(&v, VBE_INDEX_BPP, 8);
	vga_vbe_write(&v, VBE_INDEX_ENABLE, VBE_ENABLED);
	vga_vbe_write(&v, VBE_INDEX_BANK, 3);
	vwr(&v, 0x10, 0xab);
	assert_int_equal(vram[0x30010], 0xab);
	assert_int_equal(vrd(&v, 0x10), 0xab);
	assert_int_equal(vrd(&v, 0x10000), 0xff); /* past the window */
	vwr(&v, 0x10000, 0xcd);
	assert_int_equal(vram[0x40000], 0);
	vga_free(&v);
	free(vram);
}

/*
 * Bochs VBE registers against a small video memory (256 KiB): a mode too big for it keeps
 * fewer lines, a virtual width that does not fit falls back to the mode's, offsets stay in
 * the virtual screen, read-only and unknown registers ignore writes, the bank stays inside
 * video memory, and the memory is cleared on enable unless NOCLEARMEM says not to.
 */
static void test_vbe_edges(void **state)
{
	uint8_t *vram = calloc(1, 256 * KiB);
	uint16_t *e;
	struct vga v;

	assert_int_equal(vga_init(&v, vram, 256 * KiB, 1920, 1200), 0);
	vga_reset(&v);
	e = v.r.vbe;
	assert_int_equal(vga_vbe_read(&v, VBE_NREGS), 0);
	assert_int_equal(vga_vbe_read(&v, VBE_INDEX_VIDEO_MEMORY_64K), 4);
	vga_vbe_write(&v, VBE_INDEX_VIDEO_MEMORY_64K, 99);
	vga_vbe_write(&v, VBE_NREGS, 99);
	assert_int_equal(vga_vbe_read(&v, VBE_INDEX_VIDEO_MEMORY_64K), 4);
	/* BPP 0 means 8; YRES 0 or above the maximum is ignored. */
	vga_vbe_write(&v, VBE_INDEX_BPP, 16);
	vga_vbe_write(&v, VBE_INDEX_BPP, 0);
	assert_int_equal(e[VBE_INDEX_BPP], 8);
	vga_vbe_write(&v, VBE_INDEX_YRES, 0);
	vga_vbe_write(&v, VBE_INDEX_YRES, 1201);
	assert_int_equal(e[VBE_INDEX_YRES], 480);
	/* 640x480x32 is 1.2 MB: 102 lines of 2560 bytes fit in 256 KiB, and that is all. */
	vga_vbe_write(&v, VBE_INDEX_BPP, 32);
	memset(vram, 0x77, 256 * KiB);
	vga_vbe_write(&v, VBE_INDEX_ENABLE, VBE_ENABLED | VBE_NOCLEARMEM);
	assert_int_equal(e[VBE_INDEX_YRES], 256 * KiB / 2560);
	assert_int_equal(e[VBE_INDEX_VIRT_HEIGHT], 256 * KiB / 2560);
	assert_int_equal(vram[1000], 0x77); /* not cleared */
	/* A virtual width the memory cannot hold for the mode's lines: back to the mode's. */
	vga_vbe_write(&v, VBE_INDEX_VIRT_WIDTH, 1280);
	assert_int_equal(e[VBE_INDEX_VIRT_WIDTH], 640);
	vga_vbe_write(&v, VBE_INDEX_VIRT_WIDTH, 320); /* narrower than the mode */
	assert_int_equal(e[VBE_INDEX_VIRT_WIDTH], 640);
	vga_vbe_write(&v, VBE_INDEX_X_OFFSET, 8); /* no room to pan */
	assert_int_equal(e[VBE_INDEX_X_OFFSET], 0);
	vga_vbe_write(&v, VBE_INDEX_VIRT_HEIGHT, 1); /* read-only */
	assert_int_equal(e[VBE_INDEX_VIRT_HEIGHT], 256 * KiB / 2560);
	/* The bank stays inside video memory; disabling resets it. */
	vga_vbe_write(&v, VBE_INDEX_BANK, 3);
	vga_vbe_write(&v, VBE_INDEX_BANK, 4);
	assert_int_equal(e[VBE_INDEX_BANK], 3);
	vga_vbe_write(&v, VBE_INDEX_ENABLE, 0);
	assert_int_equal(e[VBE_INDEX_BANK], 0);
	/* 320x200x8 fits with room: a wider virtual screen and panning are kept. */
	vga_vbe_write(&v, VBE_INDEX_XRES, 320);
	vga_vbe_write(&v, VBE_INDEX_YRES, 200);
	vga_vbe_write(&v, VBE_INDEX_BPP, 8);
	vga_vbe_write(&v, VBE_INDEX_ENABLE, VBE_ENABLED);
	assert_int_equal(vram[1000], 0); /* cleared this time */
	assert_int_equal(vram[320 * 200], 0x77);
	vga_vbe_write(&v, VBE_INDEX_VIRT_WIDTH, 640);
	assert_int_equal(e[VBE_INDEX_VIRT_WIDTH], 640);
	assert_int_equal(e[VBE_INDEX_VIRT_HEIGHT], 256 * KiB / 640);
	vga_vbe_write(&v, VBE_INDEX_X_OFFSET, 400);
	assert_int_equal(e[VBE_INDEX_X_OFFSET], 320);
	vga_vbe_write(&v, VBE_INDEX_Y_OFFSET, 100);
	assert_int_equal(e[VBE_INDEX_Y_OFFSET], 100);
	/* Enabling again while enabled keeps the screen (and the offsets). */
	vram[0] = 0x55;
	vga_vbe_write(&v, VBE_INDEX_ENABLE, VBE_ENABLED | VBE_LFB_ENABLED);
	assert_int_equal(vram[0], 0x55);
	assert_int_equal(e[VBE_INDEX_Y_OFFSET], 100);
	vga_free(&v);
	free(vram);
}

/* ---- options ---- */

/*
 * VBE fields the guest sets: ids outside B0C0h-B0C5h, every depth and one that is none,
 * YRES and BPP locked while enabled, 4 bpp lines so short the virtual height is capped at
 * 65535, other registers read through the capability switch, and the index port read back.
 */
static void test_vbe_fields(void **state)
{
	uint8_t *vram = calloc(1, 256 * KiB);
	static const uint16_t depths[] = { 4, 8, 15, 16, 24, 32 };
	uint16_t *e, id;
	struct vga v;
	uint8_t b[2];

	assert_int_equal(vga_init(&v, vram, 256 * KiB, 1920, 1200), 0);
	vga_reset(&v);
	e = v.r.vbe;
	id = e[VBE_INDEX_ID];
	vga_vbe_write(&v, VBE_INDEX_ID, VBE_ID0 - 1);
	vga_vbe_write(&v, VBE_INDEX_ID, VBE_ID5 + 1);
	assert_int_equal(e[VBE_INDEX_ID], id);
	vga_vbe_write(&v, VBE_INDEX_ID, VBE_ID0);
	assert_int_equal(e[VBE_INDEX_ID], VBE_ID0);
	for (unsigned i = 0; i < sizeof(depths) / sizeof(depths[0]); i++) {
		vga_vbe_write(&v, VBE_INDEX_BPP, depths[i]);
		assert_int_equal(e[VBE_INDEX_BPP], depths[i]);
	}
	vga_vbe_write(&v, VBE_INDEX_BPP, 12);
	assert_int_equal(e[VBE_INDEX_BPP], 32);
	/* 8x8 at 4 bpp: 4 bytes a line, 65536 lines would fit, 65535 are reported. */
	vga_vbe_write(&v, VBE_INDEX_BPP, 4);
	vga_vbe_write(&v, VBE_INDEX_XRES, 8);
	vga_vbe_write(&v, VBE_INDEX_YRES, 8);
	vga_vbe_write(&v, VBE_INDEX_ENABLE, VBE_ENABLED);
	assert_int_equal(e[VBE_INDEX_VIRT_HEIGHT], 0xffff);
	vga_vbe_write(&v, VBE_INDEX_Y_OFFSET, 0xffff);
	assert_int_equal(e[VBE_INDEX_Y_OFFSET], 0xffff - 8);
	/* Enabled: the mode stays. */
	vga_vbe_write(&v, VBE_INDEX_YRES, 16);
	vga_vbe_write(&v, VBE_INDEX_BPP, 8);
	assert_int_equal(e[VBE_INDEX_YRES], 8);
	assert_int_equal(e[VBE_INDEX_BPP], 4);
	/* With the capability switch on, registers other than the mode read as they are. */
	vga_vbe_write(&v, VBE_INDEX_ENABLE, VBE_ENABLED | VBE_GETCAPS);
	assert_int_equal(vga_vbe_read(&v, VBE_INDEX_BPP), 32);
	assert_int_equal(vga_vbe_read(&v, VBE_INDEX_Y_OFFSET), 0xffff - 8);
	assert_int_equal(vga_vbe_read(&v, VBE_INDEX_ENABLE), VBE_ENABLED | VBE_GETCAPS);
	/* The index port reads back what was written to it. */
	io_put(b, 2, VBE_INDEX_VIRT_HEIGHT);
	vga_vbe_ioport(&v, VBE_IO_BASE, b, 2, true);
	memset(b, 0, 2);
	vga_vbe_ioport(&v, VBE_IO_BASE, b, 2, false);
	assert_int_equal(io_get(b, 2), VBE_INDEX_VIRT_HEIGHT);
	vga_vbe_ioport(&v, VBE_IO_BASE + 1, b, 2, false);
	assert_int_equal(io_get(b, 2), 0xffff);
	/* An 8-bit DAC keeps the whole byte of a palette write; a 6-bit one its low 6 bits. */
	for (unsigned eight = 0; eight < 2; eight++) {
		static const uint8_t rgb[3] = { 0xff, 0x80, 0x41 };
		uint8_t x = 5;

		vga_vbe_write(&v, VBE_INDEX_ENABLE, eight ? VBE_ENABLED | VBE_8BIT_DAC : 0);
		vga_ioport(&v, 0x3c8, &x, 1, true);
		for (unsigned i = 0; i < 3; i++) {
			x = rgb[i];
			vga_ioport(&v, 0x3c9, &x, 1, true);
		}
		x = 5;
		vga_ioport(&v, 0x3c7, &x, 1, true);
		for (unsigned i = 0; i < 3; i++) {
			vga_ioport(&v, 0x3c9, &x, 1, false);
			assert_int_equal(x, eight ? rgb[i] : rgb[i] & 0x3f);
		}
	}
	vga_free(&v);
	free(vram);
}

static void refused(const char *opt, const char *needle)
{
	struct vm vm;
	struct config cfg;
	char err[512], kv[128];

	vm_init_bare(&vm, true);
	config_init(&cfg);
	vm.cfg = &cfg;
	assert_int_equal(config_set_pair(&cfg, "pci.0.5.0.device=fbuf"), 0);
	assert_int_equal(config_set_pair(&cfg, "pci.0.5.0.unix=/tmp/khyve-fbuf-never"), 0);
	snprintf(kv, sizeof(kv), "pci.0.5.0.%s", opt);
	assert_int_equal(config_set_pair(&cfg, kv), 0);
	assert_int_not_equal(pci_setup(&vm, err, sizeof(err)), 0);
	if (!strstr(err, needle))
		fail_msg("%s: message '%s' lacks '%s'", opt, err, needle);
	vm_destroy(&vm);
	config_free(&cfg);
}

static void test_bad_options(void **state)
{
	refused("w=2000", "w=2000: must be a multiple of 8 from 320 to 1920");
	refused("h=1201", "h=1201");
	refused("w=1001", "multiple of 8");
	refused("vga=maybe", "vga=maybe: expected io, on or off");
	refused("pasword=x", "unknown option 'pasword'");
	refused("password=123456789", "at most 8 characters");
	refused("tcp=127.0.0.1:5901", "exclude each other");
	refused("wait=often", "wait=often");
}

/*
 * The MMIO BAR away from the registers drivers use: EDID reads that run past its 128 bytes,
 * writes to read-only parts, odd and out-of-range VBE offsets, a big-endian request in the
 * QEMU extended registers, and the hole after them.  Reads there give 0; writes do nothing.
 */
static void test_mmio_corners(void **state)
{
	struct fx *f = *state;
	uint8_t e[128];

	for (unsigned i = 0; i < 128; i++)
		e[i] = (uint8_t)MMIO_RD(f, i, 1);
	assert_int_equal(MMIO_RD(f, 124, 8),
			 (uint64_t)e[124] | e[125] << 8 | e[126] << 16 | (uint64_t)e[127] << 24);
	assert_int_equal(MMIO_RD(f, 0x200, 4), 0); /* past the EDID, before the VGA ports */
	MMIO_WR(f, 8, 4, 0xdeadbeef);
	assert_int_equal(MMIO_RD(f, 8, 1), e[8]);
	/* VBE: index 1 (XRES) at an odd offset, and the first index past the last register. */
	set_mode(f, 640, 480, 32);
	assert_int_equal(MMIO_RD(f, 0x500 + 2 * 1 + 1, 1), 0);
	MMIO_WR(f, 0x500 + 2 * 1 + 1, 1, 0x02);
	assert_int_equal(vbe_rd(f, 1), 640);
	assert_int_equal(MMIO_RD(f, 0x500 + 2 * VBE_NREGS, 2), 0);
	MMIO_WR(f, 0x500 + 2 * VBE_NREGS, 2, 0x1234);
	assert_int_equal(vbe_rd(f, 1), 640);
	/* Extended registers: read-only; a big-endian framebuffer request is ignored. */
	MMIO_WR(f, 0x604, 4, 0xbebebebe);
	MMIO_WR(f, 0x600, 4, 64);
	assert_int_equal(MMIO_RD(f, 0x600, 4), 8);
	assert_int_equal(MMIO_RD(f, 0x604, 4), 0x1e1e1e1e);
	assert_int_equal(MMIO_RD(f, 0x608, 4), 0);
	assert_int_equal(MMIO_RD(f, 0x700, 4), 0);
	MMIO_WR(f, 0x700, 4, 0xffffffff);
	assert_int_equal(MMIO_RD(f, 0x700, 4), 0);
	/* The VGA ports 3C0-3DF at 0x400 (bochs-display's window): the same registers. */
	MMIO_WR(f, 0x400 + 4, 1, 7);
	MMIO_WR(f, 0x400 + 5, 1, 0x5a);
	OUTB(f, 0x3c4, 7);
	assert_int_equal(INB(f, 0x3c5), 0x5a);
	OUTB(f, 0x3c5, 0xa6);
	assert_int_equal(MMIO_RD(f, 0x400 + 5, 1), 0xa6);
	/* Between that window and the VBE registers: nothing. */
	assert_int_equal(MMIO_RD(f, 0x440, 4), 0);
	MMIO_WR(f, 0x440, 4, 0xffffffff);
	assert_int_equal(MMIO_RD(f, 0x440, 4), 0);
	/* VRAM through BAR 0 reads back what was written. */
	wr(&f->vm, &f->vm.mmio, f->fb + 0x1234, 4, 0xcafef00d);
	assert_int_equal(rd(&f->vm, &f->vm.mmio, f->fb + 0x1234, 4), 0xcafef00d);
	assert_int_equal(rd(&f->vm, &f->vm.mmio, f->fb + 0x1236, 2), 0xcafe);
}

/* A ROM image at @path: @n bytes, 55AAh, a PCI data structure for @vendor:@device. */
static void write_rom(const char *path, size_t n, uint16_t vendor, uint16_t device, bool pcir)
{
	uint8_t *b = calloc(1, n);
	FILE *fp = fopen(path, "wb");

	assert_non_null(b);
	assert_non_null(fp);
	if (n >= 0x40) {
		b[0] = 0x55;
		b[1] = 0xaa;
		b[0x18] = 0x20;
		if (pcir)
			memcpy(&b[0x20], "PCIR", 4);
		b[0x24] = (uint8_t)vendor;
		b[0x25] = (uint8_t)(vendor >> 8);
		b[0x26] = (uint8_t)device;
		b[0x27] = (uint8_t)(device >> 8);
	}
	assert_int_equal(fwrite(b, 1, n, fp), n);
	fclose(fp);
	free(b);
}

/* rom=: files that are no option ROM for this display are refused with a message; vga=. */
static void test_rom_and_vga_options(void **state)
{
	char path[64], opt[96];
	const char *const opts[] = { opt, "vga=on", NULL };
	struct fx f;

	snprintf(path, sizeof(path), "/tmp/khyve-fbuf-rom-%d", (int)getpid());
	snprintf(opt, sizeof(opt), "rom=%s", path);
	unlink(path);
	refused(opt, "No such file");
	write_rom(path, 100, 0x1234, 0x1111, true);
	refused(opt, "not a PCI option ROM of at most 64 KiB");
	write_rom(path, 64 * 1024 + 1, 0x1234, 0x1111, true);
	refused(opt, "not a PCI option ROM");
	write_rom(path, 512, 0x1234, 0x1111, false);
	refused(opt, "not a PCI option ROM");
	write_rom(path, 512, 0x8086, 0x1111, true);
	refused(opt, "the ROM is for PCI 8086:1111, this display is 1234:1111");
	write_rom(path, 512, 0x1234, 0x2222, true);
	refused(opt, "the ROM is for PCI 1234:2222");
	/* The right one: the expansion ROM BAR holds it. */
	write_rom(path, 512, 0x1234, 0x1111, true);
	fx_start(&f, opts);
	{
		uint8_t b[4];

		/* Size the BAR the way firmware does, through config space. */
		assert_true(bus_access(&f.vm.mmio,
				       PCI_ECAM_BASE + ((uint64_t)SLOT << 15) + PCIR_ROM,
				       (uint8_t[4]){ 0xff, 0xff, 0xff, 0xff }, 4, true));
		assert_true(bus_access(&f.vm.mmio,
				       PCI_ECAM_BASE + ((uint64_t)SLOT << 15) + PCIR_ROM, b, 4,
				       false));
		assert_int_equal(io_get(b, 4) & 0xfffff800U, ~(64U * 1024 - 1));
	}
	fx_stop(&f);
	unlink(path);
	/* vga=off: not a VGA controller; vga=io: VGA without the legacy memory window. */
	{
		const char *const off[] = { "vga=off", NULL }, *const io[] = { "vga=io", NULL };

		fx_start(&f, off);
		assert_int_equal(pci_get_cfg8(f.pd, PCIR_SUBCLASS), 0x80);
		assert_false(bus_access(&f.vm.pio, 0x3cc, (uint8_t[1]){ 0 }, 1, false));
		fx_stop(&f);
		fx_start(&f, io);
		assert_int_equal(pci_get_cfg8(f.pd, PCIR_SUBCLASS), 0x00);
		assert_true(bus_access(&f.vm.pio, 0x3cc, (uint8_t[1]){ 0 }, 1, false));
		assert_false(bus_access(&f.vm.mmio, 0xa0000, (uint8_t[1]){ 0 }, 1, false));
		fx_stop(&f);
	}
}

/* ---- fonts ---- */

static void test_font_psf(void **state)
{
	struct fx *f = *state;
	struct font *ft = malloc(sizeof(*ft));
	char err[256];
	/* PSF1 without a table: glyphs in CP437 order, 8 rows. */
	uint8_t psf1[4 + 256 * 8] = { 0x36, 0x04, 0x00, 8 };

	assert_int_equal(font_load(f->font, ft, err, sizeof(err)), 0);
	assert_int_equal(ft->height, 16);
	assert_memory_equal(ft->glyph['A'], glyph_a, 16);
	assert_memory_equal(ft->glyph['B'], glyph_b, 16);
	assert_memory_equal(ft->glyph[0xc4], glyph_line, 16);
	/* Block elements are drawn when the font lacks them. */
	assert_int_equal(ft->glyph[0xdb][5], 0xff);
	assert_int_equal(ft->glyph[0xdc][2], 0x00);
	assert_int_equal(ft->glyph[0xdc][12], 0xff);
	assert_true(ft->missing > 200);

	psf1[4 + 'Z' * 8 + 3] = 0x99;
	assert_int_equal(font_parse_psf(psf1, sizeof(psf1), ft, err, sizeof(err)), 0);
	assert_int_equal(ft->height, 8);
	assert_int_equal(ft->glyph['Z'][3], 0x99);
	/* Refused: truncated, not a PSF, glyphs too wide. */
	assert_int_not_equal(font_parse_psf(psf1, 100, ft, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "truncated"));
	assert_int_not_equal(font_parse_psf((const uint8_t *)"hello", 5, ft, err, sizeof(err)), 0);
	{
		uint32_t wide[8] = { 0x864ab572, 0, 32, 0, 1, 32, 16, 12 };
		uint8_t buf[64] = { 0 };

		memcpy(buf, wide, sizeof(wide));
		assert_int_not_equal(font_parse_psf(buf, sizeof(buf), ft, err, sizeof(err)), 0);
		assert_non_null(strstr(err, "8 pixels wide"));
	}
	free(ft);
}

/* ---- pacing of the dirty log (vga_log_due / vga_log_pages, what fbuf does with KVM's) ---- */

static void test_dirty_log_pacing(void **state)
{
	const size_t vsize = 16 * MiB, pages = vsize / VGA_PAGE;
	const unsigned w = 640, h = 480, shown = w * h * 4 / VGA_PAGE;
	uint8_t *vram = calloc(1, vsize);
	uint64_t *all = calloc(pages / 64, sizeof(uint64_t));
	uint64_t *none = calloc(pages / 64, sizeof(uint64_t));
	uint64_t *few = calloc(pages / 64, sizeof(uint64_t));
	uint64_t *slice = calloc(pages / 64, sizeof(uint64_t));
	struct console_surface s = { 0 };
	struct vga v;
	struct vm vm;
	uint32_t *fb = (uint32_t *)vram;

	assert_non_null(vram);
	assert_non_null(all);
	assert_non_null(none);
	assert_non_null(few);
	assert_non_null(slice);
	vm_init_bare(&vm, false);
	s.priv = console_get(&vm);
	for (unsigned p = 0; p < shown; p++)
		all[p / 64] |= 1ULL << (p % 64);
	/* Fewer than half the shown pages. */
	for (unsigned p = 0; p < shown / 2 - 1; p++)
		few[p / 64] |= 1ULL << (p % 64);
	assert_int_equal(vga_init(&v, vram, vsize, 1920, 1200), 0);
	vga_reset(&v);
	vga_vbe_write(&v, VBE_INDEX_XRES, w);
	vga_vbe_write(&v, VBE_INDEX_YRES, h);
	vga_vbe_write(&v, VBE_INDEX_BPP, 32);
	vga_vbe_write(&v, VBE_INDEX_ENABLE, VBE_ENABLE_ON);
	vga_render(&v, &s, true);
	assert_int_equal(s.width, w);

	/* The same small part written refresh after refresh: the log is read every time. */
	for (unsigned i = 0; i < 3 * VGA_BUSY_WINDOW; i++) {
		assert_true(vga_log_due(&v));
		vga_log_pages(&v, few);
		vga_render(&v, &s, false);
	}
	/* A slow guest drawing the whole screen: each read has a slice, the window all. */
	for (unsigned i = 0; i < VGA_BUSY_WINDOW; i++) {
		memset(slice, 0, pages / 64 * sizeof(uint64_t));
		for (unsigned p = i * shown / VGA_BUSY_WINDOW;
		     p < (i + 1) * shown / VGA_BUSY_WINDOW; p++)
			slice[p / 64] |= 1ULL << (p % 64);
		assert_true(vga_log_due(&v));
		vga_log_pages(&v, slice);
		vga_render(&v, &s, false);
	}
	/* Then the log only every VGA_BUSY_EVERY refreshes. */
	for (unsigned i = 0; i < VGA_BUSY_EVERY - 1; i++) {
		s.damaged = false;
		fb[i * w + 7] = 0x00abcd00 + i; /* behind everyone's back: no mark, no log */
		assert_false(vga_log_due(&v));
		vga_render(&v, &s, false);
		/* Compared instead: exactly the pixel that changed. */
		assert_true(s.damaged);
		assert_int_equal(s.dx0, 7);
		assert_int_equal(s.dy0, i);
		assert_int_equal(s.dx1, 8);
		assert_int_equal(s.dy1, i + 1);
		assert_int_equal(s.pixels[i * w + 7], 0x00abcd00 + i);
	}
	/* The next read still finds the screen written: paced again. */
	assert_true(vga_log_due(&v));
	vga_log_pages(&v, all);
	assert_false(vga_log_due(&v));
	for (unsigned i = 1; i < VGA_BUSY_EVERY - 1; i++)
		assert_false(vga_log_due(&v));
	/* A read that finds it quiet ends it: the log alone says what changed from here. */
	assert_true(vga_log_due(&v));
	vga_log_pages(&v, none);
	vga_render(&v, &s, false);
	s.damaged = false;
	fb[100 * w + 100] = 0x123456;
	assert_true(vga_log_due(&v));
	vga_log_pages(&v, none);
	vga_render(&v, &s, false);
	assert_false(s.damaged);
	/* Outside VBE modes there is nothing to pace. */
	vga_vbe_write(&v, VBE_INDEX_ENABLE, 0);
	for (unsigned i = 0; i < 2 * VGA_BUSY_WINDOW; i++) {
		vga_log_pages(&v, all);
		assert_true(vga_log_due(&v));
	}
	vga_free(&v);
	free(s.pixels);
	console_put(s.priv);
	vm_destroy(&vm);
	free(vram);
	free(all);
	free(none);
	free(few);
	free(slice);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_pci_identity, setup, teardown),
		cmocka_unit_test_setup_teardown(test_render_corners, setup, teardown),
		cmocka_unit_test_setup_teardown(test_text_and_planar_damage, setup, teardown),
		cmocka_unit_test(test_edid),
		cmocka_unit_test_setup_teardown(test_mmio_corners, setup, teardown),
		cmocka_unit_test(test_rom_and_vga_options),
		cmocka_unit_test(test_dirty_log_pacing),
		cmocka_unit_test_setup_teardown(test_vbe_registers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_vbe_picture_and_damage, setup, teardown),
		cmocka_unit_test_setup_teardown(test_vbe_depths, setup, teardown),
		cmocka_unit_test_setup_teardown(test_text_mode, setup, teardown),
		cmocka_unit_test_setup_teardown(test_vga_registers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_planar_write_modes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_chain4_256_colours, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_refused, setup, teardown),
		cmocka_unit_test(test_vga_regs_check),
		cmocka_unit_test(test_vga_memory),
		cmocka_unit_test(test_vbe_edges),
		cmocka_unit_test(test_vbe_fields),
		cmocka_unit_test(test_bad_options),
		cmocka_unit_test_setup_teardown(test_font_psf, setup, teardown),
	};

	return cmocka_run_group_tests_name("fbuf", tests, NULL, NULL);
}
