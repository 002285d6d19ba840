// SPDX-License-Identifier: BSD-2-Clause
/* VGA and Bochs VBE: registers, the legacy memory window, drawing (see vga.h). */
#include "dev/display/vga.h"

#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "backend/console.h"
#include "bus.h"
#include "sstream.h"

#define VGA_MEM_MASK (4 * VGA_PLANE_SIZE - 1) /* VGA addressing wraps at 256 KiB */

/* Bits each register keeps (the rest read as 0). */
static const uint8_t sr_mask[8] = { 0x03, 0x3d, 0x0f, 0x3f, 0x0e, 0x00, 0x00, 0xff };
static const uint8_t gr_mask[9] = { 0x0f, 0x0f, 0x0f, 0x1f, 0x03, 0x7b, 0x0f, 0x0f, 0xff };

/* Mode 3 (80x25 text, 9x16 cells, 720x400) as the VGA BIOS programs it. */
static const uint8_t mode3_sr[5] = { 0x03, 0x00, 0x03, 0x00, 0x02 };
static const uint8_t mode3_cr[0x19] = { 0x5f, 0x4f, 0x50, 0x82, 0x55, 0x81, 0xbf, 0x1f, 0x00,
					0x4f, 0x0d, 0x0e, 0x00, 0x00, 0x00, 0x00, 0x9c, 0x8e,
					0x8f, 0x28, 0x1f, 0x96, 0xb9, 0xa3, 0xff };
static const uint8_t mode3_gr[9] = { 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x0e, 0x00, 0xff };
static const uint8_t mode3_ar[0x15] = { 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x14,
					0x07, 0x38, 0x39, 0x3a, 0x3b, 0x3c, 0x3d,
					0x3e, 0x3f, 0x0c, 0x00, 0x0f, 0x08, 0x00 };

#define AR_PAS 0x20 /* palette address source: the display runs */
#define SR1_SCREEN_OFF 0x20
#define SR1_8DOT 0x01
#define SR4_CHAIN4 0x08
#define GR5_ODD_EVEN 0x10
#define GR5_256 0x40
#define GR6_GRAPHICS 0x01
#define CR11_PROTECT 0x80
#define MISC_COLOR 0x01

static bool vga_mono(const struct vga *v)
{
	return !(v->r.misc & MISC_COLOR);
}

int vga_init(struct vga *v, uint8_t *vram, size_t vram_size, uint16_t max_xres, uint16_t max_yres)
{
	size_t pages = (vram_size + VGA_PAGE - 1) / VGA_PAGE;

	memset(v, 0, sizeof(*v));
	if (vram_size < 4 * VGA_PLANE_SIZE || vram_size % 0x10000)
		return -EINVAL;
	v->vram = vram;
	v->vram_size = vram_size;
	v->max_xres = max_xres;
	v->max_yres = max_yres;
	v->dirty = calloc((pages + 63) / 64, sizeof(uint64_t));
	v->busy_acc = calloc((pages + 63) / 64, sizeof(uint64_t));
	v->row = calloc(CONSOLE_MAX_WIDTH, sizeof(uint32_t));
	if (!v->dirty || !v->busy_acc || !v->row) {
		vga_free(v);
		return -ENOMEM;
	}
	return 0;
}

void vga_free(struct vga *v)
{
	free(v->dirty);
	free(v->busy_acc);
	free(v->cells);
	free(v->row);
	v->dirty = NULL;
	v->busy_acc = NULL;
	v->cells = NULL;
	v->row = NULL;
}

/* The EGA colours of DAC entries 0-63 (6-bit components), the first 64 a BIOS loads. */
static void vga_default_palette(struct vga_regs *r)
{
	for (unsigned i = 0; i < 256; i++) {
		unsigned c = i & 0x3f;

		r->dac[i][0] = (uint8_t)(((c >> 2) & 1) * 0x2a + ((c >> 5) & 1) * 0x15);
		r->dac[i][1] = (uint8_t)(((c >> 1) & 1) * 0x2a + ((c >> 4) & 1) * 0x15);
		r->dac[i][2] = (uint8_t)((c & 1) * 0x2a + ((c >> 3) & 1) * 0x15);
	}
}

void vga_reset(struct vga *v)
{
	struct vga_regs *r = &v->r;

	memset(r, 0, sizeof(*r));
	r->misc = 0x67;
	memcpy(r->sr, mode3_sr, sizeof(mode3_sr));
	memcpy(r->cr, mode3_cr, sizeof(mode3_cr));
	memcpy(r->gr, mode3_gr, sizeof(mode3_gr));
	memcpy(r->ar, mode3_ar, sizeof(mode3_ar));
	r->ar_idx = AR_PAS;
	r->pel_mask = 0xff;
	vga_default_palette(r);
	r->vbe[VBE_INDEX_ID] = VBE_ID5;
	r->vbe[VBE_INDEX_XRES] = 640;
	r->vbe[VBE_INDEX_YRES] = 480;
	r->vbe[VBE_INDEX_BPP] = 8;
	v->regs_changed = true;
}

/* ---- dirty tracking ---- */

void vga_mark(struct vga *v, uint64_t off, uint64_t len)
{
	if (!len || off >= v->vram_size)
		return;
	if (len > v->vram_size - off)
		len = v->vram_size - off;
	for (uint64_t p = off / VGA_PAGE; p <= (off + len - 1) / VGA_PAGE; p++)
		v->dirty[p / 64] |= 1ULL << (p % 64);
	v->dirty_any = true;
}

void vga_mark_pages(struct vga *v, const uint64_t *bitmap)
{
	size_t words = (v->vram_size / VGA_PAGE + 63) / 64;

	for (size_t i = 0; i < words; i++) {
		v->dirty[i] |= bitmap[i];
		if (bitmap[i])
			v->dirty_any = true;
	}
}

static uint64_t vbe_line(uint16_t width, uint16_t bpp);

/* The vram a VBE mode shows: its first byte in *@off and its length; 0 outside VBE modes. */
static uint64_t vga_shown(const struct vga *v, uint64_t *off)
{
	const uint16_t *e = v->r.vbe;
	uint64_t line = vbe_line(e[VBE_INDEX_VIRT_WIDTH], e[VBE_INDEX_BPP]);
	uint64_t start = e[VBE_INDEX_Y_OFFSET] * line +
			 vbe_line(e[VBE_INDEX_X_OFFSET], e[VBE_INDEX_BPP]);
	uint64_t len = line * e[VBE_INDEX_YRES];

	if (!vga_vbe_enabled(v) || !len || start >= v->vram_size)
		return 0;
	*off = start;
	return len < v->vram_size - start ? len : v->vram_size - start;
}

bool vga_log_due(struct vga *v)
{
	uint64_t off, len;

	if (!v->busy_left)
		return true;
	v->busy_left--;
	len = vga_shown(v, &off);
	if (len)
		vga_mark(v, off, len); /* compared, not trusted to the log */
	return false;
}

/* How many of the pages [@first, @last] @bitmap has, against how many there are. */
static bool most_pages(const uint64_t *bitmap, uint64_t first, uint64_t last)
{
	uint64_t n = 0;

	for (uint64_t p = first; p <= last; p++)
		n += (bitmap[p / 64] >> (p % 64)) & 1;
	return 2 * n >= last - first + 1;
}

void vga_log_pages(struct vga *v, const uint64_t *bitmap)
{
	size_t words = (v->vram_size / VGA_PAGE + 63) / 64;
	uint64_t off = 0, len, first, last;

	vga_mark_pages(v, bitmap);
	len = vga_shown(v, &off);
	if (!len) {
		v->busy = false;
		v->busy_n = 0;
		memset(v->busy_acc, 0, words * sizeof(uint64_t));
		return;
	}
	first = off / VGA_PAGE;
	last = (off + len - 1) / VGA_PAGE;
	if (v->busy) {
		/* This read covers the refreshes since the last one: still most of the screen? */
		if (most_pages(bitmap, first, last))
			v->busy_left = VGA_BUSY_EVERY - 1;
		else
			v->busy = false;
		return;
	}
	/* Most of the screen written within the last VGA_BUSY_WINDOW refreshes starts it. */
	for (size_t i = 0; i < words; i++)
		v->busy_acc[i] |= bitmap[i];
	if (++v->busy_n < VGA_BUSY_WINDOW)
		return;
	if (most_pages(v->busy_acc, first, last)) {
		v->busy = true;
		v->busy_left = VGA_BUSY_EVERY - 1;
	}
	v->busy_n = 0;
	memset(v->busy_acc, 0, words * sizeof(uint64_t));
}

static bool vga_range_dirty(const struct vga *v, uint64_t off, uint64_t len)
{
	if (!len || off >= v->vram_size)
		return false;
	if (len > v->vram_size - off)
		len = v->vram_size - off;
	for (uint64_t p = off / VGA_PAGE; p <= (off + len - 1) / VGA_PAGE; p++)
		if (v->dirty[p / 64] & (1ULL << (p % 64)))
			return true;
	return false;
}

static void vga_clear_dirty(struct vga *v)
{
	memset(v->dirty, 0, (v->vram_size / VGA_PAGE + 63) / 64 * sizeof(uint64_t));
	v->dirty_any = false;
}

/* ---- registers ---- */

static uint8_t vga_inb(struct vga *v, uint16_t port)
{
	struct vga_regs *r = &v->r;
	uint8_t val;

	/* The CRTC and status 1 answer at 3Bx or 3Dx, as the misc register says. */
	if ((port >= 0x3b0 && port < 0x3c0 && !vga_mono(v)) ||
	    (port >= 0x3d0 && port < 0x3e0 && vga_mono(v)))
		return 0xff;
	switch (port) {
	case 0x3c0:
		return r->ar_idx;
	case 0x3c1:
		return (r->ar_idx & 0x1f) < sizeof(r->ar) ? r->ar[r->ar_idx & 0x1f] : 0;
	case 0x3c2:
		return 0x00; /* input status 0 */
	case 0x3c4:
		return r->sr_idx;
	case 0x3c5:
		return r->sr[r->sr_idx];
	case 0x3c6:
		return r->pel_mask;
	case 0x3c7:
		return r->dac_state;
	case 0x3c8:
		return r->dac_widx;
	case 0x3c9:
		val = r->dac[r->dac_ridx][r->dac_sub];
		if (++r->dac_sub == 3) {
			r->dac_sub = 0;
			r->dac_ridx++;
		}
		return val;
	case 0x3ca:
		return r->feature;
	case 0x3cc:
		return r->misc;
	case 0x3ce:
		return r->gr_idx;
	case 0x3cf:
		return r->gr_idx < sizeof(r->gr) ? r->gr[r->gr_idx] : 0xff;
	case 0x3b4:
	case 0x3d4:
		return r->cr_idx;
	case 0x3b5:
	case 0x3d5:
		return r->cr_idx < sizeof(r->cr) ? r->cr[r->cr_idx] : 0xff;
	case 0x3ba:
	case 0x3da:
		/* Reading status 1 resets the attribute flip-flop; retrace and display enable
		 * toggle so that loops waiting for either end. */
		r->ar_flip = false;
		r->st01 ^= 0x09;
		return r->st01;
	default:
		return 0xff;
	}
}

static void vga_ar_write(struct vga *v, uint8_t val)
{
	struct vga_regs *r = &v->r;
	unsigned i = r->ar_idx & 0x1f;

	if (!r->ar_flip) {
		r->ar_idx = val & 0x3f;
	} else if (i < sizeof(r->ar)) {
		r->ar[i] = i < 0x10 ? (val & 0x3f) : val;
	}
	r->ar_flip = !r->ar_flip;
	v->regs_changed = true;
}

static void vga_cr_write(struct vga *v, uint8_t val)
{
	struct vga_regs *r = &v->r;
	unsigned i = r->cr_idx;

	if (i >= sizeof(r->cr))
		return;
	/* CR11 bit 7 protects CR0-CR7, all but CR7's line compare bit. */
	if ((r->cr[0x11] & CR11_PROTECT) && i <= 7) {
		if (i == 7)
			r->cr[7] = (uint8_t)((r->cr[7] & ~0x10) | (val & 0x10));
		return;
	}
	r->cr[i] = val;
	v->regs_changed = true;
}

static void vga_dac_write(struct vga *v, uint8_t val)
{
	struct vga_regs *r = &v->r;

	r->dac[r->dac_widx][r->dac_sub] = (r->vbe[VBE_INDEX_ENABLE] & VBE_8BIT_DAC) ? val
										    : val & 0x3f;
	if (++r->dac_sub == 3) {
		r->dac_sub = 0;
		r->dac_widx++;
	}
	v->regs_changed = true;
}

static void vga_outb(struct vga *v, uint16_t port, uint8_t val)
{
	struct vga_regs *r = &v->r;

	if ((port >= 0x3b0 && port < 0x3c0 && !vga_mono(v)) ||
	    (port >= 0x3d0 && port < 0x3e0 && vga_mono(v)))
		return;
	switch (port) {
	case 0x3c0:
		vga_ar_write(v, val);
		break;
	case 0x3c2:
		r->misc = val;
		v->regs_changed = true;
		break;
	case 0x3c4:
		r->sr_idx = val & 7;
		break;
	case 0x3c5:
		r->sr[r->sr_idx] = val & sr_mask[r->sr_idx];
		/* The map mask only steers CPU writes. */
		if (r->sr_idx != 2)
			v->regs_changed = true;
		break;
	case 0x3c6:
		r->pel_mask = val;
		v->regs_changed = true;
		break;
	case 0x3c7:
		r->dac_ridx = val;
		r->dac_sub = 0;
		r->dac_state = 3;
		break;
	case 0x3c8:
		r->dac_widx = val;
		r->dac_sub = 0;
		r->dac_state = 0;
		break;
	case 0x3c9:
		vga_dac_write(v, val);
		break;
	case 0x3ce:
		r->gr_idx = val & 0x0f;
		break;
	case 0x3cf:
		if (r->gr_idx < sizeof(r->gr)) {
			r->gr[r->gr_idx] = val & gr_mask[r->gr_idx];
			/* Only the shift mode and the graphics/memory map register change the
			 * picture; the others steer CPU accesses. */
			if (r->gr_idx == 5 || r->gr_idx == 6)
				v->regs_changed = true;
		}
		break;
	case 0x3b4:
	case 0x3d4:
		r->cr_idx = val;
		break;
	case 0x3b5:
	case 0x3d5:
		vga_cr_write(v, val);
		break;
	case 0x3ba:
	case 0x3da:
		r->feature = val;
		break;
	default:
		break;
	}
}

void vga_ioport(struct vga *v, uint16_t port, void *data, unsigned size, bool is_write)
{
	uint64_t val = is_write ? io_get(data, size) : 0;

	for (unsigned i = 0; i < size && i < 2; i++) {
		uint16_t p = (uint16_t)(port + i);

		if (is_write)
			vga_outb(v, p, (uint8_t)(val >> (8 * i)));
		else
			val |= (uint64_t)vga_inb(v, p) << (8 * i);
	}
	if (!is_write)
		io_put(data, size, size > 2 ? val | ~0xffffULL : val);
}

/* ---- Bochs VBE ---- */

bool vga_vbe_enabled(const struct vga *v)
{
	return v->r.vbe[VBE_INDEX_ENABLE] & VBE_ENABLED;
}

static unsigned vbe_bytes_pp(uint16_t bpp)
{
	return bpp == 15 ? 2 : (bpp + 7) / 8;
}

static bool vbe_bpp_valid(uint16_t bpp)
{
	return bpp == 4 || bpp == 8 || bpp == 15 || bpp == 16 || bpp == 24 || bpp == 32;
}

/* The bytes of one line: planar 4 bpp packs 8 pixels per byte and plane. */
static uint64_t vbe_line(uint16_t width, uint16_t bpp)
{
	return bpp == 4 ? width / 2 : (uint64_t)width * vbe_bytes_pp(bpp);
}

/* Keep the virtual screen and the offsets consistent with the mode and video memory. */
static void vbe_fixup(struct vga *v)
{
	uint16_t *e = v->r.vbe;
	uint64_t line, vh;

	if (e[VBE_INDEX_VIRT_WIDTH] < e[VBE_INDEX_XRES])
		e[VBE_INDEX_VIRT_WIDTH] = e[VBE_INDEX_XRES];
	line = vbe_line(e[VBE_INDEX_VIRT_WIDTH], e[VBE_INDEX_BPP]);
	if (!line || line * e[VBE_INDEX_YRES] > v->vram_size) {
		e[VBE_INDEX_VIRT_WIDTH] = e[VBE_INDEX_XRES];
		line = vbe_line(e[VBE_INDEX_XRES], e[VBE_INDEX_BPP]);
	}
	vh = line ? v->vram_size / line : 0;
	if (vh > 0xffff)
		vh = 0xffff;
	if (vh < e[VBE_INDEX_YRES])
		e[VBE_INDEX_YRES] = (uint16_t)vh; /* does not fit: fewer lines */
	e[VBE_INDEX_VIRT_HEIGHT] = (uint16_t)vh;
	if (e[VBE_INDEX_X_OFFSET] > e[VBE_INDEX_VIRT_WIDTH] - e[VBE_INDEX_XRES])
		e[VBE_INDEX_X_OFFSET] = e[VBE_INDEX_VIRT_WIDTH] - e[VBE_INDEX_XRES];
	if (e[VBE_INDEX_Y_OFFSET] > e[VBE_INDEX_VIRT_HEIGHT] - e[VBE_INDEX_YRES])
		e[VBE_INDEX_Y_OFFSET] = e[VBE_INDEX_VIRT_HEIGHT] - e[VBE_INDEX_YRES];
}

uint16_t vga_vbe_read(struct vga *v, unsigned idx)
{
	const uint16_t *e = v->r.vbe;

	if (idx >= VBE_NREGS)
		return 0;
	if (e[VBE_INDEX_ENABLE] & VBE_GETCAPS) {
		if (idx == VBE_INDEX_XRES)
			return v->max_xres;
		if (idx == VBE_INDEX_YRES)
			return v->max_yres;
		if (idx == VBE_INDEX_BPP)
			return 32;
	}
	if (idx == VBE_INDEX_VIDEO_MEMORY_64K)
		return (uint16_t)(v->vram_size >> 16);
	return e[idx];
}

static void vbe_enable(struct vga *v, uint16_t val)
{
	uint16_t *e = v->r.vbe;

	if ((val & VBE_ENABLED) && !(e[VBE_INDEX_ENABLE] & VBE_ENABLED)) {
		e[VBE_INDEX_VIRT_WIDTH] = e[VBE_INDEX_XRES];
		e[VBE_INDEX_X_OFFSET] = 0;
		e[VBE_INDEX_Y_OFFSET] = 0;
		vbe_fixup(v);
		if (!(val & VBE_NOCLEARMEM)) {
			uint64_t n = vbe_line(e[VBE_INDEX_XRES], e[VBE_INDEX_BPP]) *
				     e[VBE_INDEX_YRES];

			memset(v->vram, 0, n);
			vga_mark(v, 0, n);
		}
	} else if (!(val & VBE_ENABLED)) {
		e[VBE_INDEX_BANK] = 0;
	}
	e[VBE_INDEX_ENABLE] = val & (VBE_ENABLED | VBE_GETCAPS | VBE_8BIT_DAC | VBE_LFB_ENABLED |
				     VBE_NOCLEARMEM);
}

void vga_vbe_write(struct vga *v, unsigned idx, uint16_t val)
{
	uint16_t *e = v->r.vbe;
	bool enabled = e[VBE_INDEX_ENABLE] & VBE_ENABLED;

	switch (idx) {
	case VBE_INDEX_ID:
		if (val >= VBE_ID0 && val <= VBE_ID5)
			e[idx] = val;
		return;
	case VBE_INDEX_XRES:
		/* The mode is set while VBE is off, as the BIOS and drivers do. */
		if (!enabled && val && val <= v->max_xres && !(val & 7))
			e[idx] = val;
		return;
	case VBE_INDEX_YRES:
		if (!enabled && val && val <= v->max_yres)
			e[idx] = val;
		return;
	case VBE_INDEX_BPP:
		if (!val)
			val = 8;
		if (!enabled && vbe_bpp_valid(val))
			e[idx] = val;
		return;
	case VBE_INDEX_BANK:
		if ((uint64_t)val < (v->vram_size >> 16))
			e[idx] = val;
		return;
	case VBE_INDEX_ENABLE:
		vbe_enable(v, val);
		break;
	case VBE_INDEX_VIRT_WIDTH:
	case VBE_INDEX_X_OFFSET:
	case VBE_INDEX_Y_OFFSET:
		e[idx] = val;
		vbe_fixup(v);
		break;
	default:
		return; /* VIRT_HEIGHT and VIDEO_MEMORY_64K read only */
	}
	v->regs_changed = true;
}

void vga_vbe_ioport(struct vga *v, uint16_t port, void *data, unsigned size, bool is_write)
{
	if (port == VBE_IO_BASE) {
		if (is_write)
			v->r.vbe_idx = (uint16_t)io_get(data, size);
		else
			io_put(data, size, v->r.vbe_idx);
	} else if (is_write) {
		vga_vbe_write(v, v->r.vbe_idx, (uint16_t)io_get(data, size));
	} else {
		io_put(data, size, vga_vbe_read(v, v->r.vbe_idx));
	}
}

/* ---- the memory window ---- */

static uint8_t ror8(uint8_t v, unsigned n)
{
	n &= 7;
	return n ? (uint8_t)((v >> n) | (v << (8 - n))) : v;
}

/* Offset inside the window the graphics controller maps, or -1 outside it. */
static int64_t vga_window(const struct vga *v, uint64_t off)
{
	static const uint32_t base[4] = { 0, 0, 0x10000, 0x18000 };
	static const uint32_t size[4] = { 0x20000, 0x10000, 0x8000, 0x8000 };
	unsigned mm = (v->r.gr[6] >> 2) & 3;

	if (off < base[mm] || off - base[mm] >= size[mm])
		return -1;
	return (int64_t)(off - base[mm]);
}

static void vga_plane_write(struct vga *v, uint32_t idx, uint8_t val)
{
	idx &= VGA_MEM_MASK;
	if ((idx & 3) == 2)
		v->regs_changed |= !(v->r.gr[6] & GR6_GRAPHICS); /* a font write shows at once */
	if (v->vram[idx] == val)
		return;
	v->vram[idx] = val;
	vga_mark(v, idx, 1);
}

static uint8_t vga_readb(struct vga *v, uint64_t off)
{
	struct vga_regs *r = &v->r;
	int64_t a;
	uint32_t o;

	if (vga_vbe_enabled(v)) {
		uint64_t i = ((uint64_t)r->vbe[VBE_INDEX_BANK] << 16) + off;

		return off < 0x10000 && i < v->vram_size ? v->vram[i] : 0xff;
	}
	a = vga_window(v, off);
	if (a < 0)
		return 0xff;
	if (r->sr[4] & SR4_CHAIN4)
		return v->vram[(uint32_t)a & VGA_MEM_MASK];
	if (r->gr[5] & GR5_ODD_EVEN) {
		unsigned plane = (r->gr[4] & 2) | ((uint32_t)a & 1);

		return v->vram[((((uint32_t)a >> 1) << 2) | plane) & VGA_MEM_MASK];
	}
	o = ((uint32_t)a & (VGA_PLANE_SIZE - 1)) << 2;
	memcpy(r->latch, &v->vram[o], 4);
	if (r->gr[5] & 0x08) {
		/* Read mode 1: colour compare over the planes not "don't care". */
		uint8_t res = 0xff;

		for (unsigned p = 0; p < 4; p++) {
			if (!(r->gr[7] & (1U << p)))
				continue;
			res &= (r->gr[2] & (1U << p)) ? r->latch[p] : (uint8_t)~r->latch[p];
		}
		return res;
	}
	return r->latch[r->gr[4] & 3];
}

static void vga_writeb(struct vga *v, uint64_t off, uint8_t val)
{
	struct vga_regs *r = &v->r;
	uint8_t mask, rot;
	unsigned mode, op;
	int64_t a;
	uint32_t o;

	if (vga_vbe_enabled(v)) {
		uint64_t i = ((uint64_t)r->vbe[VBE_INDEX_BANK] << 16) + off;

		if (off < 0x10000 && i < v->vram_size && v->vram[i] != val) {
			v->vram[i] = val;
			vga_mark(v, i, 1);
		}
		return;
	}
	a = vga_window(v, off);
	if (a < 0)
		return;
	if (r->sr[4] & SR4_CHAIN4) {
		if (r->sr[2] & (1U << ((uint32_t)a & 3)))
			vga_plane_write(v, (uint32_t)a, val);
		return;
	}
	if (r->gr[5] & GR5_ODD_EVEN) {
		unsigned plane = (r->gr[4] & 2) | ((uint32_t)a & 1);

		if (r->sr[2] & (1U << plane))
			vga_plane_write(v, (((uint32_t)a >> 1) << 2) | plane, val);
		return;
	}
	o = ((uint32_t)a & (VGA_PLANE_SIZE - 1)) << 2;
	mode = r->gr[5] & 3;
	rot = r->gr[3] & 7;
	op = (r->gr[3] >> 3) & 3;
	mask = r->gr[8];
	if (mode == 3) {
		mask &= ror8(val, rot);
	}
	for (unsigned p = 0; p < 4; p++) {
		uint8_t d, l = r->latch[p];

		if (!(r->sr[2] & (1U << p)))
			continue;
		switch (mode) {
		case 0:
			d = (r->gr[1] & (1U << p)) ? ((r->gr[0] & (1U << p)) ? 0xff : 0)
						   : ror8(val, rot);
			break;
		case 1:
			vga_plane_write(v, o | p, l);
			continue;
		case 2:
			d = (val & (1U << p)) ? 0xff : 0;
			break;
		default:
			d = (r->gr[0] & (1U << p)) ? 0xff : 0;
			break;
		}
		if (op == 1)
			d &= l;
		else if (op == 2)
			d |= l;
		else if (op == 3)
			d ^= l;
		vga_plane_write(v, o | p, (uint8_t)((d & mask) | (l & ~mask)));
	}
}

void vga_mem(struct vga *v, uint64_t off, void *data, unsigned size, bool is_write)
{
	uint64_t val = is_write ? io_get(data, size) : 0;

	for (unsigned i = 0; i < size; i++) {
		if (is_write)
			vga_writeb(v, off + i, (uint8_t)(val >> (8 * i)));
		else
			val |= (uint64_t)vga_readb(v, off + i) << (8 * i);
	}
	if (!is_write)
		io_put(data, size, val);
}

void vga_load_font(struct vga *v, const uint8_t glyphs[256][32], unsigned height)
{
	for (unsigned c = 0; c < 256; c++)
		for (unsigned y = 0; y < 32; y++)
			v->vram[((c * 32 + y) << 2) | 2] = y < height ? glyphs[c][y] : 0;
	vga_mark(v, 0, 256 * 32 * 4);
	v->regs_changed = true;
}

/* ---- drawing ---- */

struct vga_pal {
	uint32_t rgb[256]; /* DAC entries as 0x00RRGGBB, after the pel mask */
};

static void vga_palette(const struct vga *v, struct vga_pal *p)
{
	bool eight = v->r.vbe[VBE_INDEX_ENABLE] & VBE_8BIT_DAC;

	for (unsigned i = 0; i < 256; i++) {
		const uint8_t *c = v->r.dac[i & v->r.pel_mask];
		uint32_t rgb = 0;

		for (unsigned k = 0; k < 3; k++) {
			uint32_t x = eight ? c[k] : (uint32_t)((c[k] << 2) | (c[k] >> 4));

			rgb = (rgb << 8) | (x & 0xff);
		}
		p->rgb[i] = rgb;
	}
}

/* The DAC index of attribute colour @c (0-15) through the attribute controller. */
static uint8_t vga_attr_color(const struct vga *v, unsigned c)
{
	const uint8_t *ar = v->r.ar;
	uint8_t idx = ar[c & 0x0f] & 0x3f;

	if (ar[0x10] & 0x80)
		idx = (uint8_t)((idx & 0x0f) | ((ar[0x14] & 0x03) << 4));
	return (uint8_t)(idx | ((ar[0x14] & 0x0c) << 4));
}

static unsigned vga_vdisp(const struct vga *v)
{
	const uint8_t *cr = v->r.cr;

	return (cr[0x12] | ((cr[7] & 0x02) << 7) | ((cr[7] & 0x40) << 3)) + 1;
}

static uint32_t vga_start(const struct vga *v)
{
	return (uint32_t)(v->r.cr[0x0c] << 8 | v->r.cr[0x0d]);
}

/* Copy one drawn line into the surface; damage only what changed. */
static void put_line(struct console_surface *s, unsigned y, const uint32_t *px, unsigned w)
{
	uint32_t *dst = &s->pixels[(size_t)y * s->width];
	unsigned x0 = 0, x1 = w;

	while (x0 < w && dst[x0] == px[x0])
		x0++;
	if (x0 == w)
		return;
	while (x1 > x0 && dst[x1 - 1] == px[x1 - 1])
		x1--;
	memcpy(&dst[x0], &px[x0], (x1 - x0) * sizeof(*px));
	console_damage(s, x0, y, x1 - x0, 1);
}

static bool vga_size(struct vga *v, struct console_surface *s, unsigned w, unsigned h, bool *full)
{
	if (!w || !h || w > CONSOLE_MAX_WIDTH || h > CONSOLE_MAX_HEIGHT)
		return false;
	if (s->width != w || s->height != h || !s->pixels) {
		if (console_surface_resize(s, w, h))
			return false;
		*full = true;
	}
	return true;
}

static void vga_blank(struct vga *v, struct console_surface *s, bool full)
{
	unsigned w = s->pixels ? s->width : 640, h = s->pixels ? s->height : 480;

	if (!vga_size(v, s, w, h, &full) || !full)
		return;
	memset(s->pixels, 0, (size_t)w * h * sizeof(uint32_t));
	console_damage(s, 0, 0, w, h);
}

/* One text cell's key for the cache: character, attribute, and whether the cursor is on it. */
static uint32_t cell_key(uint8_t ch, uint8_t at, bool cursor)
{
	return (uint32_t)ch | (uint32_t)at << 8 | (cursor ? 1U << 16 : 0) | 1U << 17;
}

static void vga_text_cell(struct vga *v, struct console_surface *s, const struct vga_pal *p,
			  unsigned cx, unsigned cy, unsigned cw, unsigned ch, uint8_t c, uint8_t at,
			  bool cursor)
{
	const uint8_t *sr = v->r.sr, *cr = v->r.cr;
	unsigned map_a = ((sr[3] >> 2) & 3) | ((sr[3] >> 3) & 4);
	unsigned map_b = (sr[3] & 3) | ((sr[3] >> 2) & 4);
	unsigned map = (at & 0x08) ? map_a : map_b;
	uint32_t font = ((map & 3) << 14) | ((map & 4) << 11);
	uint8_t bgi = at >> 4;
	uint32_t fg, bg;
	bool dup9 = cw == 9 && (v->r.ar[0x10] & 0x04) && c >= 0xc0 && c <= 0xdf;
	unsigned cs = cr[0x0a] & 0x1f, ce = cr[0x0b] & 0x1f;
	bool crow;

	if (v->r.ar[0x10] & 0x08)
		bgi &= 7; /* bit 7 blinks; we show the "on" phase */
	fg = p->rgb[vga_attr_color(v, at & 0x0f)];
	bg = p->rgb[vga_attr_color(v, bgi)];
	for (unsigned y = 0; y < ch; y++) {
		uint8_t bits = v->vram[((font + c * 32U + y) << 2 | 2) & VGA_MEM_MASK];
		uint32_t *dst = &s->pixels[(size_t)(cy * ch + y) * s->width + cx * cw];

		crow = cursor && y >= cs && y <= ce;
		if (crow)
			bits = 0xff;
		for (unsigned x = 0; x < 8; x++)
			dst[x] = (bits & (0x80 >> x)) ? fg : bg;
		/* The 9th dot repeats the 8th for line-drawing characters (and the cursor). */
		if (cw == 9)
			dst[8] = (dup9 || crow) && (bits & 1) ? fg : bg;
	}
}

static void vga_draw_text(struct vga *v, struct console_surface *s, bool full)
{
	const uint8_t *cr = v->r.cr;
	unsigned cw = (v->r.sr[1] & SR1_8DOT) ? 8 : 9, ch = (cr[9] & 0x1f) + 1;
	unsigned cols = cr[1] + 1U, rows = vga_vdisp(v) / ch;
	uint32_t start = vga_start(v), pitch = cr[0x13] * 2U;
	uint32_t cursor = (uint32_t)(cr[0x0e] << 8 | cr[0x0f]);
	bool cursor_on = !(cr[0x0a] & 0x20);
	struct vga_pal p;
	unsigned x0 = ~0U, y0 = ~0U, x1 = 0, y1 = 0;

	if (!rows || !vga_size(v, s, cols * cw, rows * ch, &full)) {
		vga_blank(v, s, full);
		return;
	}
	if (v->ncells != cols * rows) {
		free(v->cells);
		v->cells = calloc((size_t)cols * rows, sizeof(*v->cells));
		v->ncells = v->cells ? cols * rows : 0;
		full = true;
		if (!v->cells)
			return;
	}
	vga_palette(v, &p);
	for (unsigned y = 0; y < rows; y++) {
		for (unsigned x = 0; x < cols; x++) {
			uint32_t cell = start + y * pitch + x;
			uint32_t o = (cell << 2) & VGA_MEM_MASK;
			bool cur = cursor_on && cell == cursor;
			uint32_t key = cell_key(v->vram[o], v->vram[o + 1], cur);

			if (!full && v->cells[y * cols + x] == key)
				continue;
			v->cells[y * cols + x] = key;
			vga_text_cell(v, s, &p, x, y, cw, ch, v->vram[o], v->vram[o + 1], cur);
			x0 = x < x0 ? x : x0;
			y0 = y < y0 ? y : y0;
			x1 = x + 1 > x1 ? x + 1 : x1;
			y1 = y + 1 > y1 ? y + 1 : y1;
		}
	}
	if (x1)
		console_damage(s, x0 * cw, y0 * ch, (x1 - x0) * cw, (y1 - y0) * ch);
}

/* VGA graphics: 16-colour planar, or 256 colours (chained or not: the same vram bytes). */
static void vga_draw_graphics(struct vga *v, struct console_surface *s, bool full)
{
	const uint8_t *cr = v->r.cr;
	bool c256 = v->r.gr[5] & GR5_256;
	unsigned rep = ((cr[9] & 0x1f) + 1U) * ((cr[9] & 0x80) ? 2U : 1U);
	unsigned w = (cr[1] + 1U) * 8 / (c256 ? 2 : 1), h = vga_vdisp(v) / rep;
	uint32_t start = vga_start(v) * 4, pitch = cr[0x13] * 8U;
	uint8_t plane_en = v->r.ar[0x12] & 0x0f;
	struct vga_pal p;
	uint8_t attr[16];

	if (!vga_size(v, s, w, h, &full)) {
		vga_blank(v, s, full);
		return;
	}
	vga_palette(v, &p);
	for (unsigned i = 0; i < 16; i++)
		attr[i] = vga_attr_color(v, i);
	for (unsigned y = 0; y < h; y++) {
		uint32_t line = start + y * pitch;
		uint32_t bytes = c256 ? w : w / 2;

		if (!full && !vga_range_dirty(v, line & VGA_MEM_MASK, bytes))
			continue;
		for (unsigned x = 0; x < w; x++) {
			if (c256) {
				v->row[x] = p.rgb[v->vram[(line + x) & VGA_MEM_MASK]];
			} else {
				uint32_t o = (line + (x / 8) * 4) & VGA_MEM_MASK;
				unsigned bit = 7 - (x & 7), c = 0;

				for (unsigned pl = 0; pl < 4; pl++)
					c |= ((v->vram[o + pl] >> bit) & 1U) << pl;
				v->row[x] = p.rgb[attr[c & plane_en]];
			}
		}
		put_line(s, y, v->row, w);
	}
}

/* One line of a VBE mode as 0x00RRGGBB; the depth is chosen once a line, not per pixel. */
static void vbe_convert(const struct vga *v, const uint8_t *src, unsigned w, uint16_t bpp,
			const struct vga_pal *p, uint32_t *dst)
{
	switch (bpp) {
	case 32:
		/* The hot case (a guest redrawing the screen): loads the compiler can widen. */
		for (unsigned x = 0; x < w; x++) {
			uint32_t px;

			memcpy(&px, src + 4 * x, 4);
			dst[x] = le32toh(px) & 0xFFFFFF;
		}
		break;
	case 24:
		for (unsigned x = 0; x < w; x++)
			dst[x] = (src[3 * x] | src[3 * x + 1] << 8 |
				  (uint32_t)src[3 * x + 2] << 16);
		break;
	case 16:
		for (unsigned x = 0; x < w; x++) {
			uint16_t c = (uint16_t)(src[2 * x] | src[2 * x + 1] << 8);
			uint32_t r = (c >> 11) & 0x1f, g = (c >> 5) & 0x3f, b = c & 0x1f;

			dst[x] = ((r << 3 | r >> 2) << 16) | ((g << 2 | g >> 4) << 8) |
				 (b << 3 | b >> 2);
		}
		break;
	case 15:
		for (unsigned x = 0; x < w; x++) {
			uint16_t c = (uint16_t)(src[2 * x] | src[2 * x + 1] << 8);
			uint32_t r = (c >> 10) & 0x1f, g = (c >> 5) & 0x1f, b = c & 0x1f;

			dst[x] = ((r << 3 | r >> 2) << 16) | ((g << 3 | g >> 2) << 8) |
				 (b << 3 | b >> 2);
		}
		break;
	default:
		for (unsigned x = 0; x < w; x++)
			dst[x] = p->rgb[src[x]];
		break;
	}
}

static void vga_draw_vbe(struct vga *v, struct console_surface *s, bool full)
{
	const uint16_t *e = v->r.vbe;
	unsigned w = e[VBE_INDEX_XRES], h = e[VBE_INDEX_YRES];
	uint16_t bpp = e[VBE_INDEX_BPP];
	uint64_t line = vbe_line(e[VBE_INDEX_VIRT_WIDTH], bpp);
	uint64_t start = e[VBE_INDEX_Y_OFFSET] * line + vbe_line(e[VBE_INDEX_X_OFFSET], bpp);
	uint64_t bytes = vbe_line((uint16_t)w, bpp);
	struct vga_pal p;

	if (bpp == 4 || !vga_size(v, s, w, h, &full)) {
		vga_blank(v, s, full);
		return;
	}
	vga_palette(v, &p);
	for (unsigned y = 0; y < h; y++) {
		uint64_t o = start + y * line;

		if (o + bytes > v->vram_size) {
			memset(v->row, 0, w * sizeof(uint32_t));
		} else {
			if (!full && !vga_range_dirty(v, o, bytes))
				continue;
			vbe_convert(v, &v->vram[o], w, bpp, &p, v->row);
		}
		put_line(s, y, v->row, w);
	}
}

void vga_render(struct vga *v, struct console_surface *s, bool full)
{
	const struct vga_regs *r = &v->r;

	if (v->regs_changed)
		full = true;
	if (!full && !v->dirty_any)
		return; /* nothing written since the last picture: nothing to do */
	if (vga_vbe_enabled(v))
		vga_draw_vbe(v, s, full);
	else if (!(r->ar_idx & AR_PAS) || (r->sr[1] & SR1_SCREEN_OFF))
		vga_blank(v, s, full);
	else if (!(r->gr[6] & GR6_GRAPHICS))
		vga_draw_text(v, s, full);
	else
		vga_draw_graphics(v, s, full);
	v->regs_changed = false;
	vga_clear_dirty(v);
}

/* ---- snapshot ---- */

void vga_regs_state(struct sstream *s, struct vga_regs *r)
{
	ss_u8(s, &r->misc);
	ss_u8(s, &r->feature);
	ss_u8(s, &r->sr_idx);
	ss_u8_array(s, r->sr, sizeof(r->sr));
	ss_u8(s, &r->gr_idx);
	ss_u8_array(s, r->gr, sizeof(r->gr));
	ss_u8(s, &r->cr_idx);
	ss_u8_array(s, r->cr, sizeof(r->cr));
	ss_u8(s, &r->ar_idx);
	ss_u8_array(s, r->ar, sizeof(r->ar));
	ss_bool(s, &r->ar_flip);
	ss_u8(s, &r->st01);
	ss_u8_array(s, &r->dac[0][0], sizeof(r->dac));
	ss_u8(s, &r->dac_widx);
	ss_u8(s, &r->dac_ridx);
	ss_u8(s, &r->dac_sub);
	ss_u8(s, &r->dac_state);
	ss_u8(s, &r->pel_mask);
	ss_u8_array(s, r->latch, sizeof(r->latch));
	ss_u16(s, &r->vbe_idx);
	for (unsigned i = 0; i < VBE_NREGS; i++)
		ss_u16(s, &r->vbe[i]);
}

void vga_regs_check(struct sstream *s, const struct vga *v, const struct vga_regs *r)
{
	const uint16_t *e = r->vbe;

	ss_check_max(s, r->sr_idx, 7, "VGA sequencer index");
	for (unsigned i = 0; i < sizeof(r->sr); i++)
		ss_check_max(s, r->sr[i] & ~sr_mask[i], 0, "VGA sequencer register bits");
	ss_check_max(s, r->gr_idx, 15, "VGA graphics controller index");
	for (unsigned i = 0; i < sizeof(r->gr); i++)
		ss_check_max(s, r->gr[i] & ~gr_mask[i], 0, "VGA graphics register bits");
	ss_check_max(s, r->ar_idx, 0x3f, "VGA attribute index");
	for (unsigned i = 0; i < 0x10; i++)
		ss_check_max(s, r->ar[i], 0x3f, "VGA attribute palette entry");
	ss_check_max(s, r->dac_sub, 2, "VGA DAC component");
	if (r->dac_state != 0 && r->dac_state != 3)
		ss_fail(s, -EINVAL, "VGA DAC state %u", r->dac_state);
	if (!(e[VBE_INDEX_ENABLE] & VBE_8BIT_DAC))
		for (unsigned i = 0; i < 256 * 3; i++)
			ss_check_max(s, (&r->dac[0][0])[i], 0x3f, "VGA DAC entry (6 bits)");
	if (e[VBE_INDEX_ID] < VBE_ID0 || e[VBE_INDEX_ID] > VBE_ID5)
		ss_fail(s, -EINVAL, "VBE id 0x%x", e[VBE_INDEX_ID]);
	if (!vbe_bpp_valid(e[VBE_INDEX_BPP]))
		ss_fail(s, -EINVAL, "VBE depth %u", e[VBE_INDEX_BPP]);
	if (!e[VBE_INDEX_XRES] || e[VBE_INDEX_XRES] > v->max_xres || (e[VBE_INDEX_XRES] & 7) ||
	    !e[VBE_INDEX_YRES] || e[VBE_INDEX_YRES] > v->max_yres)
		ss_fail(s, -EINVAL, "VBE mode %ux%u (at most %ux%u)", e[VBE_INDEX_XRES],
			e[VBE_INDEX_YRES], v->max_xres, v->max_yres);
	if ((uint64_t)e[VBE_INDEX_BANK] >= (v->vram_size >> 16))
		ss_fail(s, -EINVAL, "VBE bank %u", e[VBE_INDEX_BANK]);
	ss_check_max(s,
		     e[VBE_INDEX_ENABLE] & ~(VBE_ENABLED | VBE_GETCAPS | VBE_8BIT_DAC |
					     VBE_LFB_ENABLED | VBE_NOCLEARMEM),
		     0, "VBE enable bits");
	if (!ss_error(s) && (e[VBE_INDEX_ENABLE] & VBE_ENABLED)) {
		/* What vbe_fixup() keeps: a screen inside video memory. */
		uint64_t line = vbe_line(e[VBE_INDEX_VIRT_WIDTH], e[VBE_INDEX_BPP]);

		if (e[VBE_INDEX_VIRT_WIDTH] < e[VBE_INDEX_XRES] ||
		    e[VBE_INDEX_VIRT_HEIGHT] < e[VBE_INDEX_YRES] ||
		    line * e[VBE_INDEX_VIRT_HEIGHT] > v->vram_size ||
		    e[VBE_INDEX_X_OFFSET] > e[VBE_INDEX_VIRT_WIDTH] - e[VBE_INDEX_XRES] ||
		    e[VBE_INDEX_Y_OFFSET] > e[VBE_INDEX_VIRT_HEIGHT] - e[VBE_INDEX_YRES])
			ss_fail(s, -EINVAL, "VBE virtual screen %ux%u+%u+%u does not hold %ux%u",
				e[VBE_INDEX_VIRT_WIDTH], e[VBE_INDEX_VIRT_HEIGHT],
				e[VBE_INDEX_X_OFFSET], e[VBE_INDEX_Y_OFFSET], e[VBE_INDEX_XRES],
				e[VBE_INDEX_YRES]);
	}
}

void vga_regs_commit(struct vga *v, const struct vga_regs *r)
{
	v->r = *r;
	v->regs_changed = true;
	v->ncells = 0;
	free(v->cells);
	v->cells = NULL;
}
