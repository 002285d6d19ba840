// SPDX-License-Identifier: MIT
/*
 * khyve test guest, ring 3: the standard VGA (see fbuf.h) and its
 * selftest group.
 */
#include "user.h"
#include "pci.h"
#include "fbuf.h"

#define VBE_ID		0
#define VBE_XRES	1
#define VBE_YRES	2
#define VBE_BPP		3
#define VBE_ENABLE	4
#define VBE_VIRT_W	6
#define VBE_VIRT_H	7
#define VBE_MEM64K	10
#define VBE_ENABLED	0x01
#define VBE_GETCAPS	0x02
#define VBE_LFB		0x40

#define MMIO_VBE	0x500

static u8 rd8(u64 a) { return *(volatile u8 *)a; }
static u16 rd16(u64 a) { return *(volatile u16 *)a; }
static void wr16(u64 a, u16 v) { *(volatile u16 *)a = v; }

u16 vbe_read(struct fbdev *d, u32 idx)
{
	return rd16(d->mmio + MMIO_VBE + 2 * idx);
}

void vbe_write(struct fbdev *d, u32 idx, u16 v)
{
	wr16(d->mmio + MMIO_VBE + 2 * idx, v);
}

/* The preferred mode of the EDID block at BAR 2 offset 0, if it is valid. */
static void edid_read(struct fbdev *d)
{
	static const u8 hdr[8] = { 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0 };
	u8 e[128], sum = 0;
	u32 i;

	for (i = 0; i < 128; i++) {
		e[i] = rd8(d->mmio + i);
		sum += e[i];
	}
	if (memcmp(e, hdr, 8) || sum)
		return;
	d->edid_w = e[56] | (u32)(e[58] >> 4) << 8;
	d->edid_h = e[59] | (u32)(e[61] >> 4) << 8;
}

bool fbdev_find(struct fbdev *d)
{
	bool is64;

	memset(d, 0, sizeof(*d));
	d->pci = pci_find(0x1234, 0x1111, 0);
	if (!d->pci)
		return false;
	pci_write16(d->pci, PCI_COMMAND, pci_read16(d->pci, PCI_COMMAND) | PCI_CMD_MEM | PCI_CMD_IO);
	d->fb = pci_bar_addr(d->pci, 0, &is64);
	d->mmio = pci_bar_addr(d->pci, 2, &is64);
	if (!d->fb || !d->mmio)
		return false;
	if (d->fb >= (4ull << 30))
		map_mmio(d->fb, 16 << 20);
	if (d->mmio >= (4ull << 30))
		map_mmio(d->mmio, 4096);
	d->vram = (u32)vbe_read(d, VBE_MEM64K) << 16;
	edid_read(d);
	return true;
}

int fbdev_set_mode(struct fbdev *d, u32 w, u32 h)
{
	vbe_write(d, VBE_ENABLE, 0);
	vbe_write(d, VBE_BPP, 32);
	vbe_write(d, VBE_XRES, w);
	vbe_write(d, VBE_YRES, h);
	vbe_write(d, VBE_ENABLE, VBE_ENABLED | VBE_LFB);
	if (vbe_read(d, VBE_XRES) != w || vbe_read(d, VBE_YRES) != h ||
	    vbe_read(d, VBE_BPP) != 32 || !(vbe_read(d, VBE_ENABLE) & VBE_ENABLED))
		return -1;
	return 0;
}

void fbdev_vga_mode(struct fbdev *d)
{
	vbe_write(d, VBE_ENABLE, 0);
}

/* ---- selftest ---- */

static void check_vbe(struct fbdev *d)
{
	volatile u32 *fb = (volatile u32 *)d->fb;
	u32 id = vbe_read(d, VBE_ID), i, bad = 0;

	if (id < 0xb0c0 || id > 0xb0c5)
		check_fail("VBE id 0x%x", id);
	if (d->vram < (16u << 20))
		check_fail("%u KiB of video memory, want 16 MiB", d->vram >> 10);
	vbe_write(d, VBE_ENABLE, VBE_GETCAPS);
	if (vbe_read(d, VBE_XRES) < 1920 || vbe_read(d, VBE_YRES) < 1200 ||
	    vbe_read(d, VBE_BPP) != 32)
		check_fail("capabilities %ux%ux%u, want 1920x1200x32", vbe_read(d, VBE_XRES),
			   vbe_read(d, VBE_YRES), vbe_read(d, VBE_BPP));
	vbe_write(d, VBE_ENABLE, 0);
	if (fbdev_set_mode(d, 640, 480)) {
		check_fail("cannot set 640x480x32");
		return;
	}
	if (vbe_read(d, VBE_VIRT_W) != 640 || vbe_read(d, VBE_VIRT_H) < 480)
		check_fail("virtual screen %ux%u", vbe_read(d, VBE_VIRT_W), vbe_read(d, VBE_VIRT_H));
	/* The frame buffer is memory: what is written reads back, all of it. */
	for (i = 0; i < 640 * 480; i++)
		fb[i] = i * 2654435761u;
	for (i = 0; i < 640 * 480; i++)
		bad += fb[i] != i * 2654435761u;
	if (bad)
		check_fail("%u of %u frame buffer words read back wrong", bad, 640 * 480);
	fbdev_vga_mode(d);
}

/* The VGA ports: misc output, a sequencer register, three DAC components. */
static bool check_vga_ports(void)
{
	u8 m = inb(0x3cc), r, g, b;

	if (m == 0xff)
		return false;
	if (m != 0x67)
		check_fail("misc output 0x%x, want mode 3's 0x67", m);
	outb(0x3c4, 2);
	if (inb(0x3c4) != 2 || inb(0x3c5) != 0x03)
		check_fail("sequencer map mask");
	outb(0x3c8, 250);
	outb(0x3c9, 0x11);
	outb(0x3c9, 0x22);
	outb(0x3c9, 0x33);
	outb(0x3c7, 250);
	r = inb(0x3c9);
	g = inb(0x3c9);
	b = inb(0x3c9);
	if (r != 0x11 || g != 0x22 || b != 0x33)
		check_fail("DAC entry 250 read back %x %x %x", r, g, b);
	return true;
}

/*
 * The legacy window: a character written at 0xB8000 (odd/even text
 * addressing) is byte 0 of plane 0, read back at 0xA0000 in planar mode
 * with read map 0.  Plain RAM there would not do that.
 */
static bool check_vga_window(void)
{
	volatile u8 *text = (volatile u8 *)0xb8000ull, *a0 = (volatile u8 *)0xa0000ull;
	u8 c0 = text[0], sr4, gr4, gr5, gr6, got;

	text[0] = 'K';
	text[2] = 'V';
	outb(0x3c4, 4);
	sr4 = inb(0x3c5);
	outb(0x3ce, 4);
	gr4 = inb(0x3cf);
	outb(0x3ce, 5);
	gr5 = inb(0x3cf);
	outb(0x3ce, 6);
	gr6 = inb(0x3cf);
	outb(0x3c4, 4);
	outb(0x3c5, 0x06);		/* planar, no odd/even */
	outb(0x3ce, 4);
	outb(0x3cf, 0);			/* read plane 0 */
	outb(0x3ce, 5);
	outb(0x3cf, 0);
	outb(0x3ce, 6);
	outb(0x3cf, 0x05);		/* graphics, A0000 for 128 KiB */
	got = a0[1];
	outb(0x3c4, 4);
	outb(0x3c5, sr4);
	outb(0x3ce, 4);
	outb(0x3cf, gr4);
	outb(0x3ce, 5);
	outb(0x3cf, gr5);
	outb(0x3ce, 6);
	outb(0x3cf, gr6);
	text[0] = c0;
	text[2] = ' ';
	return got == 'V';
}

/*
 * fbuf: the standard VGA's EDID (valid, a preferred mode), the VBE id,
 * video memory size and capabilities, a 640x480x32 mode whose frame
 * buffer reads back what was written, the VGA ports and, when the legacy
 * window decodes, planar addressing behind it.  Skipped without one.
 */
void check_fbuf(void)
{
	struct fbdev d;
	bool ports, window = false;

	if (!pci_find(0x1234, 0x1111, 0))
		return;
	group_begin("fbuf");
	if (!fbdev_find(&d)) {
		check_fail("BARs not assigned");
		return;
	}
	if (d.pci->class != 0x03)
		check_fail("class 0x%x, want a display (0x03)", d.pci->class);
	if (!d.edid_w || !d.edid_h)
		check_fail("no valid EDID at BAR 2");
	check_vbe(&d);
	ports = check_vga_ports();
	if (ports)
		window = check_vga_window();
	pr("fbuf: %x:%x at %u:%u.%u, frame buffer 0x%lx, edid %ux%u, vga ports %s, window %s\n",
	   d.pci->vendor, d.pci->device, d.pci->bus, d.pci->dev, d.pci->fn, d.fb, d.edid_w,
	   d.edid_h, ports ? "yes" : "no", window ? "yes" : "no");
	group_end();
}
