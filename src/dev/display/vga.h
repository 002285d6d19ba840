/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * VGA and the Bochs VBE ("DISPI") extension, the display engine of fbuf (fbuf.c), which is the
 * PCI face.  Register-level VGA as IBM's VGA technical reference describes it: the sequencer,
 * graphics controller, CRT controller, attribute controller and DAC; the legacy memory window
 * at 0xA0000 with the four planes, the write modes 0-3, read modes 0-1, latches, chain-4 and
 * odd/even addressing.  The Bochs VBE registers (index 0x1CE, data 0x1CF, as QEMU's "std VGA"
 * and the Bochs BIOS define them) set linear modes of 8, 15, 16, 24 or 32 bits per pixel.
 *
 * Video memory is one buffer (the fbuf BAR): in VGA modes plane p of byte offset o is at
 * vram[4 * o + p] (so chain-4's byte a is vram[a]), as in QEMU, which the SeaBIOS VGA BIOS
 * was written against; VBE modes see it as a plain frame buffer.
 *
 * What is drawn: VBE modes; text modes with the font the guest (or the reset, from a console
 * font, font.c) put in plane 2, 8 or 9 dots wide, with the cursor (steady, not blinking) and
 * the 16 colours through the attribute palette and the DAC; 16-colour planar graphics; 256-
 * colour graphics, chained (mode 13h) and unchained ("mode X").  CGA-compatible modes (shift
 * interleave, 4 and 5) and split screens (line compare) are not drawn as such.
 *
 * Nothing here locks: fbuf calls every function with its lock held.
 */
#ifndef KHYVE_DEV_VGA_H
#define KHYVE_DEV_VGA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sstream;
struct console_surface;

#define VGA_PLANE_SIZE 0x10000 /* bytes per plane: 256 KiB of VGA memory */
#define VGA_MEM_BASE 0xA0000ULL
#define VGA_MEM_SIZE 0x20000ULL
#define VGA_IO_BASE 0x3B0
#define VGA_IO_LEN 0x30
#define VBE_IO_BASE 0x1CE
#define VBE_IO_LEN 3

#define VBE_INDEX_ID 0
#define VBE_INDEX_XRES 1
#define VBE_INDEX_YRES 2
#define VBE_INDEX_BPP 3
#define VBE_INDEX_ENABLE 4
#define VBE_INDEX_BANK 5
#define VBE_INDEX_VIRT_WIDTH 6
#define VBE_INDEX_VIRT_HEIGHT 7
#define VBE_INDEX_X_OFFSET 8
#define VBE_INDEX_Y_OFFSET 9
#define VBE_INDEX_VIDEO_MEMORY_64K 10
#define VBE_NREGS 11

#define VBE_ENABLED 0x01
#define VBE_GETCAPS 0x02
#define VBE_8BIT_DAC 0x20
#define VBE_LFB_ENABLED 0x40
#define VBE_NOCLEARMEM 0x80

#define VBE_ID0 0xb0c0
#define VBE_ID5 0xb0c5

#define VGA_PAGE 4096

/* The registers: everything the guest can set, so exactly what a snapshot holds. */
struct vga_regs {
	uint8_t misc, feature;
	uint8_t sr_idx, sr[8];
	uint8_t gr_idx, gr[9];
	uint8_t cr_idx, cr[0x19];
	uint8_t ar_idx, ar[0x15];
	bool ar_flip; /* the attribute port takes data next (else an index) */
	uint8_t st01; /* input status 1: toggles so polling loops see retrace */
	uint8_t dac[256][3];
	uint8_t dac_widx, dac_ridx, dac_sub, dac_state, pel_mask;
	uint8_t latch[4];
	uint16_t vbe_idx, vbe[VBE_NREGS];
};

struct vga {
	struct vga_regs r;
	uint8_t *vram;
	size_t vram_size; /* a multiple of 64 KiB, at least 256 KiB */
	uint16_t max_xres, max_yres;

	/* Drawing (not saved: a restore redraws everything). */
	uint64_t *dirty; /* vram pages written behind the guest's back or through traps */
	bool dirty_any;
	bool regs_changed; /* a register that changes the picture was written */
	uint32_t *cells;   /* text mode: what each drawn cell shows, to redraw only changes */
	unsigned ncells;
	uint32_t *row;	    /* one converted line */
	bool busy;	    /* the guest keeps rewriting most of the screen: the log is paced */
	unsigned busy_left; /* refreshes still to go without reading the log (vga_log_due) */
	unsigned busy_n;    /* log reads OR-ed into busy_acc so far */
	uint64_t *busy_acc; /* pages the last busy_n log reads had */
};

int vga_init(struct vga *v, uint8_t *vram, size_t vram_size, uint16_t max_xres, uint16_t max_yres);
void vga_free(struct vga *v);
/* Power-on state: 80x25 text (mode 3), the standard palette, as a VGA BIOS leaves it. */
void vga_reset(struct vga *v);

/* Ports 0x3B0-0x3DF, 1 or 2 bytes (a word is two bytes at port, port + 1). */
void vga_ioport(struct vga *v, uint16_t port, void *data, unsigned size, bool is_write);
/* The VBE ports: 0x1CE index, 0x1CF data (0x1D0 too). */
void vga_vbe_ioport(struct vga *v, uint16_t port, void *data, unsigned size, bool is_write);
uint16_t vga_vbe_read(struct vga *v, unsigned idx);
void vga_vbe_write(struct vga *v, unsigned idx, uint16_t val);
/* The legacy window: @off from 0xA0000, 1 to 8 bytes (done byte by byte). */
void vga_mem(struct vga *v, uint64_t off, void *data, unsigned size, bool is_write);
bool vga_vbe_enabled(const struct vga *v);

/* Mark vram bytes [@off, @off + @len) written (by the host or an untrapped guest write). */
void vga_mark(struct vga *v, uint64_t off, uint64_t len);
/* OR a page bitmap (bit i = page i of vram) into the dirty pages. */
void vga_mark_pages(struct vga *v, const uint64_t *bitmap);

/*
 * Pacing for a caller that reads a dirty log (KVM's, of the BAR the guest writes directly):
 * vga_log_due() says whether to read it for this refresh, and the result goes to
 * vga_log_pages() (instead of vga_mark_pages()).  Reading the log write-protects the pages
 * again, so a guest redrawing the whole screen takes a fault per page per refresh.  When
 * the reads of VGA_BUSY_WINDOW refreshes together cover most of the shown screen, the log is
 * read only every VGA_BUSY_EVERY refreshes and the whole shown picture is compared in
 * between (the damage stays exact); the first read that finds most of it unwritten ends it.
 */
#define VGA_BUSY_WINDOW 8 /* refreshes whose log reads decide (133 ms at 60 Hz) */
#define VGA_BUSY_EVERY 15 /* then one log read per this many refreshes (4 a second at 60 Hz) */
bool vga_log_due(struct vga *v);
void vga_log_pages(struct vga *v, const uint64_t *bitmap);

/* Bring @s up to date (console backend refresh, see backend/console.h). */
void vga_render(struct vga *v, struct console_surface *s, bool full);

/* Load 8-pixel-wide glyphs of @height rows (<= 32) for codes 0-255 into font map 0. */
void vga_load_font(struct vga *v, const uint8_t glyphs[256][32], unsigned height);

void vga_regs_state(struct sstream *s, struct vga_regs *r);
void vga_regs_check(struct sstream *s, const struct vga *v, const struct vga_regs *r);
/* After a load: take @r and redraw everything. */
void vga_regs_commit(struct vga *v, const struct vga_regs *r);

#endif
