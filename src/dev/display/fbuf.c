// SPDX-License-Identifier: BSD-2-Clause
/*
 * fbuf: the PCI display, shown through the console backend's VNC server.
 *
 *	-s S,fbuf[,tcp=IP:PORT|rfb=IP:PORT|unix=PATH][,w=W][,h=H][,password=PW][,wait][,vga=io|on|off]
 *		[,font=PATH][,rom=PATH|off]
 *
 * bhyve's option shapes (tcp/unix, w/h, password, wait, vga; tcp=off: no VNC server, the
 * picture only for screenshots); the hardware is the Bochs/QEMU
 * "standard VGA" (PCI 1234:1111), whose interface the SeaBIOS VGA BIOS (vgabios-stdvga.bin),
 * Linux's bochs-drm and the Bochs VBE drivers of other systems drive:
 *
 *   BAR 0	16 MiB of video memory, prefetchable: guest RAM-like (a KVM slot with dirty
 *		logging), so drawing costs no exits and only what changed is redrawn
 *   BAR 2	4 KiB of registers: 0x000 an EDID block whose preferred mode is w x h (default
 *		1024x768), 0x400 the VGA ports 0x3C0-0x3DF, 0x500 the VBE registers, 0x600
 *		QEMU's extended registers (size, frame buffer byte order: little endian only)
 *   vga=io	the legacy VGA ports 0x3B0-0x3DF and the VBE ports 0x1CE/0x1CF (bhyve's default,
 *		and khyve's when booting a kernel directly)
 *   vga=on	also the legacy memory window 0xA0000-0xBFFFF, so BIOS text mode shows (the
 *		default with -l bootrom)
 *   vga=off	neither: a display for drivers that use BAR 2 only (class "other display")
 *   ROM	with vga=on, the SeaBIOS VGA BIOS for this hardware (vgabios-stdvga.bin, or
 *		rom=PATH), which firmware runs to set text mode and offer VBE modes
 *
 * The VBE modes go up to 1920x1200 at 32 bits per pixel (VBE "get capabilities" says so), and
 * w x h must fit that.  The power-on state is 80x25 text with the console font (font=PATH, or
 * the first of FONT_DEFAULT_PATHS there is) in plane 2, as a VGA BIOS leaves it, so a kernel
 * booted directly can write text at 0xB8000 with vga=on.  vga.c draws; drawing happens on the
 * console backend's thread when someone looks, under the device lock.
 *
 * Snapshot (after the PCI part): the ROM image, the VGA and VBE registers and palette (vga_regs) and the
 * video memory pages that were ever touched and are not all zero (sparse, as guest RAM is).
 * A restore redraws everything from them, so a client sees the picture it saw before.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "backend/console.h"
#include "bus.h"
#include "dev/display/font.h"
#include "dev/display/vga.h"
#include "dev/pci/pci.h"
#include "log.h"
#include "sstream.h"
#include "vm.h"

#define FBUF_STATE_VERSION 1
#define FBUF_VENDOR 0x1234
#define FBUF_DEVICE 0x1111
#define FBUF_SUBVENDOR 0x1af4
#define FBUF_SUBDEVICE 0x1100
#define FBUF_REVISION 2 /* with QEMU's extended registers */
#define PCIC_DISPLAY 0x03
#define PCIS_DISPLAY_VGA 0x00
#define PCIS_DISPLAY_OTHER 0x80

#define FBUF_VRAM_SIZE (16 * MiB)
#define FBUF_PAGES (FBUF_VRAM_SIZE / VGA_PAGE)
#define FBUF_MMIO_SIZE 4096
#define MMIO_EDID 0x000
#define MMIO_VGA 0x400
#define MMIO_VBE 0x500
#define MMIO_QEXT 0x600
#define QEXT_SIZE 8
#define QEXT_LITTLE 0x1e1e1e1e

#define FBUF_MAX_W 1920
#define FBUF_MAX_H 1200
#define FBUF_MIN_W 320
#define FBUF_MIN_H 200
#define FBUF_ROM_SIZE (64 * KiB)
#define FBUF_ROM_DEFAULT "/usr/share/seabios/vgabios-stdvga.bin"

enum fbuf_vga { FBUF_VGA_OFF, FBUF_VGA_IO, FBUF_VGA_ON };

struct fbuf {
	struct pci_dev *pd;
	struct vm *vm;
	pthread_mutex_t lock;
	struct vga vga;
	uint8_t *vram;
	unsigned w, h;
	enum fbuf_vga mode;
	uint8_t edid[128];
	uint64_t kvm_dirty[FBUF_PAGES / 64];
	struct console *con;
	bool ports, window, attached;
	uint8_t rom[FBUF_ROM_SIZE]; /* the VGA BIOS, rom_len bytes of it; saved with the state */
	uint32_t rom_len;
};

static const char *const fbuf_options[] = {
	"device", "tcp", "rfb", "unix", "w", "h", "password", "wait", "vga", "font", "rom", NULL,
};

/* ---- EDID ---- */

/* A 128-byte EDID 1.4 block: khyve's monitor with w x h at 60 Hz as its preferred mode. */
static void fbuf_edid(uint8_t *e, unsigned w, unsigned h)
{
	static const uint8_t chroma[10] = { 0xee, 0x91, 0xa3, 0x54, 0x4c,
					    0x99, 0x26, 0x0f, 0x50, 0x54 };
	static const char name[] = "khyve";
	/* Reduced blanking: short porches, as flat panels take them. */
	unsigned hb = 160, vb = 30, hmm = w * 264 / 1000, vmm = h * 264 / 1000;
	unsigned clock = (w + hb) * (h + vb) * 60 / 10000; /* 10 kHz units */
	uint8_t *d = e + 54, sum = 0;

	memset(e, 0, 128);
	memcpy(e, "\x00\xff\xff\xff\xff\xff\xff\x00", 8);
	e[8] = 0x2d; /* "KHV", five bits a letter */
	e[9] = 0x16;
	e[10] = 0x11;
	e[11] = 0x11;
	e[16] = 1;
	e[17] = 2024 - 1990;
	e[18] = 1;
	e[19] = 4;
	e[20] = 0xa0; /* digital, 8 bits per colour */
	e[21] = (uint8_t)(hmm / 10);
	e[22] = (uint8_t)(vmm / 10);
	e[23] = 120;  /* gamma 2.2 */
	e[24] = 0x06; /* sRGB; the first detailed timing is the preferred one */
	memcpy(e + 25, chroma, sizeof(chroma));
	e[35] = 0x21;		  /* 640x480@60, 800x600@60 */
	e[36] = 0x08;		  /* 1024x768@60 */
	memset(e + 38, 0x01, 16); /* no standard timings */
	d[0] = (uint8_t)clock;
	d[1] = (uint8_t)(clock >> 8);
	d[2] = (uint8_t)w;
	d[3] = (uint8_t)hb;
	d[4] = (uint8_t)((w >> 8) << 4 | hb >> 8);
	d[5] = (uint8_t)h;
	d[6] = (uint8_t)vb;
	d[7] = (uint8_t)((h >> 8) << 4 | vb >> 8);
	d[8] = 48;
	d[9] = 32;
	d[10] = 3 << 4 | 6;
	d[12] = (uint8_t)hmm;
	d[13] = (uint8_t)vmm;
	d[14] = (uint8_t)((hmm >> 8) << 4 | vmm >> 8);
	d[17] = 0x1e; /* digital separate sync, both positive */
	d += 18;
	memcpy(d, "\x00\x00\x00\xfd\x00\x32\x4b\x1e\xa0\x14\x00\x0a     ", 18); /* ranges */
	d += 18;
	memcpy(d, "\x00\x00\x00\xfc\x00", 5);
	memset(d + 5, ' ', 13);
	memcpy(d + 5, name, sizeof(name) - 1);
	d[5 + sizeof(name) - 1] = '\n';
	d += 18;
	d[3] = 0x10; /* dummy descriptor */
	for (unsigned i = 0; i < 127; i++)
		sum = (uint8_t)(sum + e[i]);
	e[127] = (uint8_t)-sum;
}

/* ---- guest accesses ---- */

static void fbuf_mmio(struct fbuf *f, uint64_t off, void *data, unsigned size, bool is_write)
{
	if (off < MMIO_VGA) {
		uint64_t v = 0;

		for (unsigned i = 0; i < size && off + i < sizeof(f->edid); i++)
			v |= (uint64_t)f->edid[off + i] << (8 * i);
		if (!is_write)
			io_put(data, size, v);
	} else if (off < MMIO_VGA + 0x20) {
		vga_ioport(&f->vga, (uint16_t)(0x3c0 + off - MMIO_VGA), data, size, is_write);
	} else if (off >= MMIO_VBE && off < MMIO_VBE + 2 * VBE_NREGS && !(off & 1)) {
		unsigned idx = (unsigned)(off - MMIO_VBE) / 2;

		if (is_write)
			vga_vbe_write(&f->vga, idx, (uint16_t)io_get(data, size));
		else
			io_put(data, size, vga_vbe_read(&f->vga, idx));
	} else if (off == MMIO_QEXT && !is_write) {
		io_put(data, size, QEXT_SIZE);
	} else if (off == MMIO_QEXT + 4 && !is_write) {
		io_put(data, size, QEXT_LITTLE); /* writes asking for big endian are ignored */
	} else if (!is_write) {
		io_put(data, size, 0);
	}
}

static void fbuf_bar_io(struct pci_dev *pd, int bar, uint64_t off, void *data, unsigned size,
			bool is_write)
{
	struct fbuf *f = pd->priv;

	pthread_mutex_lock(&f->lock);
	if (bar == 2) {
		fbuf_mmio(f, off, data, size, is_write);
	} else if (bar == 0 && off + size <= FBUF_VRAM_SIZE) {
		/* Only without a KVM slot (unit tests): the guest normally writes directly. */
		if (is_write) {
			memcpy(&f->vram[off], data, size);
			vga_mark(&f->vga, off, size);
		} else {
			memcpy(data, &f->vram[off], size);
		}
	}
	pthread_mutex_unlock(&f->lock);
}

static void fbuf_vga_io(void *opaque, uint64_t off, void *data, unsigned size, bool is_write)
{
	struct fbuf *f = opaque;

	pthread_mutex_lock(&f->lock);
	vga_ioport(&f->vga, (uint16_t)(VGA_IO_BASE + off), data, size, is_write);
	pthread_mutex_unlock(&f->lock);
}

static void fbuf_vbe_io(void *opaque, uint64_t off, void *data, unsigned size, bool is_write)
{
	struct fbuf *f = opaque;

	pthread_mutex_lock(&f->lock);
	vga_vbe_ioport(&f->vga, (uint16_t)(VBE_IO_BASE + off), data, size, is_write);
	pthread_mutex_unlock(&f->lock);
}

static void fbuf_window_io(void *opaque, uint64_t off, void *data, unsigned size, bool is_write)
{
	struct fbuf *f = opaque;

	pthread_mutex_lock(&f->lock);
	vga_mem(&f->vga, off, data, size, is_write);
	pthread_mutex_unlock(&f->lock);
}

/* ---- the console ---- */

static void fbuf_refresh(void *opaque, struct console_surface *s, bool full)
{
	struct fbuf *f = opaque;

	pthread_mutex_lock(&f->lock);
	/*
	 * What the guest wrote through BAR 0 since the last picture, as KVM recorded it; while
	 * the guest keeps rewriting the whole screen, the log only every so often (each read
	 * makes the guest's next write to every page fault: 5 frames a second instead of 30 on
	 * a nested host) and the picture compared instead.
	 */
	if (vga_log_due(&f->vga) && !pci_bar_ram_dirty(f->pd, 0, f->kvm_dirty))
		vga_log_pages(&f->vga, f->kvm_dirty);
	vga_render(&f->vga, s, full);
	pthread_mutex_unlock(&f->lock);
}

static const struct console_display_ops fbuf_display = {
	.refresh = fbuf_refresh,
};

/* ---- snapshot ---- */

static bool page_zero(const uint8_t *p)
{
	for (unsigned i = 0; i < VGA_PAGE; i += 8) {
		uint64_t v;

		memcpy(&v, p + i, 8);
		if (v)
			return false;
	}
	return true;
}

static int fbuf_save(struct pci_dev *pd, struct sstream *s)
{
	struct fbuf *f = pd->priv;
	unsigned char *resident = malloc(FBUF_PAGES);
	uint32_t n = 0;

	if (!resident)
		return ss_fail(s, -ENOMEM, "out of memory");
	pthread_mutex_lock(&f->lock);
	/* Pages never touched are not even resident: they are not read, let alone saved. */
	if (mincore(f->vram, FBUF_VRAM_SIZE, resident))
		memset(resident, 1, FBUF_PAGES);
	for (uint32_t i = 0; i < FBUF_PAGES; i++) {
		resident[i] = (resident[i] & 1) && !page_zero(&f->vram[(size_t)i * VGA_PAGE]);
		n += resident[i];
	}
	ss_expect_u32(s, f->mode, "fbuf vga mode");
	ss_expect_u32(s, FBUF_VRAM_SIZE, "fbuf video memory size");
	/* The ROM too: a restore needs no ROM file and shows the very code that was saved. */
	ss_expect_u32(s, f->rom_len, "fbuf ROM size");
	ss_bytes(s, f->rom, f->rom_len);
	vga_regs_state(s, &f->vga.r);
	ss_u32(s, &n);
	for (uint32_t i = 0; i < FBUF_PAGES && !ss_error(s); i++) {
		if (!resident[i])
			continue;
		ss_u32(s, &i);
		ss_bytes(s, &f->vram[(size_t)i * VGA_PAGE], VGA_PAGE);
	}
	pthread_mutex_unlock(&f->lock);
	free(resident);
	return ss_error(s);
}

static int fbuf_load(struct pci_dev *pd, struct sstream *s, unsigned version)
{
	struct fbuf *f = pd->priv;
	struct vga_regs *r = calloc(1, sizeof(*r));
	uint32_t n = 0, *idx = NULL, prev = 0;
	uint8_t *pages = NULL, *rom = malloc(FBUF_ROM_SIZE);

	if (!r || !rom) {
		free(r);
		free(rom);
		return ss_fail(s, -ENOMEM, "out of memory");
	}
	if (version != FBUF_STATE_VERSION)
		ss_fail(s, -EINVAL, "fbuf state version %u is not supported (%u)", version,
			FBUF_STATE_VERSION);
	ss_expect_u32(s, f->mode, "fbuf vga mode");
	ss_expect_u32(s, FBUF_VRAM_SIZE, "fbuf video memory size");
	ss_expect_u32(s, f->rom_len, "fbuf ROM size");
	if (!ss_error(s))
		ss_bytes(s, rom, f->rom_len);
	vga_regs_state(s, r);
	if (!ss_error(s))
		vga_regs_check(s, &f->vga, r);
	ss_u32(s, &n);
	ss_check_max(s, n, FBUF_PAGES, "fbuf saved pages");
	if (!ss_error(s) && n) {
		idx = calloc(n, sizeof(*idx));
		pages = malloc((size_t)n * VGA_PAGE);
		if (!idx || !pages)
			ss_fail(s, -ENOMEM, "out of memory");
	}
	for (uint32_t i = 0; i < n && !ss_error(s); i++) {
		ss_u32(s, &idx[i]);
		if (!ss_error(s) && (idx[i] >= FBUF_PAGES || (i && idx[i] <= prev)))
			ss_fail(s, -EINVAL, "fbuf page %u out of order or range", idx[i]);
		prev = idx[i];
		ss_bytes(s, pages + (size_t)i * VGA_PAGE, VGA_PAGE);
	}
	if (!ss_finish(s)) {
		pthread_mutex_lock(&f->lock);
		/* Everything else reads as zero, and costs no memory. */
		if (madvise(f->vram, FBUF_VRAM_SIZE, MADV_DONTNEED))
			memset(f->vram, 0, FBUF_VRAM_SIZE);
		for (uint32_t i = 0; i < n; i++)
			memcpy(&f->vram[(size_t)idx[i] * VGA_PAGE], pages + (size_t)i * VGA_PAGE,
			       VGA_PAGE);
		memcpy(f->rom, rom, f->rom_len);
		vga_regs_commit(&f->vga, r);
		pthread_mutex_unlock(&f->lock);
	}
	free(idx);
	free(pages);
	free(rom);
	free(r);
	return ss_error(s);
}

/* ---- setting up ---- */

struct opt_check {
	const char *prefix;
	char bad[64];
};

static void fbuf_check_key(const char *key, const char *value, void *opaque)
{
	struct opt_check *c = opaque;
	const char *name = key + strlen(c->prefix);

	if (c->bad[0] || strchr(name, '.'))
		return;
	for (size_t i = 0; fbuf_options[i]; i++)
		if (!strcmp(name, fbuf_options[i]))
			return;
	snprintf(c->bad, sizeof(c->bad), "%s", name);
}

static int fbuf_uint(struct pci_dev *pd, const char *name, unsigned dflt, unsigned lo, unsigned hi,
		     unsigned *out, char *err, size_t errlen)
{
	const char *v = pci_dev_opt(pd, name);
	char *end;
	unsigned long n;

	if (!v) {
		*out = dflt;
		return 0;
	}
	n = strtoul(v, &end, 10);
	if (*v < '0' || *v > '9' || *end || n < lo || n > hi || (n & 7)) {
		snprintf(err, errlen, "%s=%s: must be a multiple of 8 from %u to %u", name, v, lo,
			 hi);
		return -EINVAL;
	}
	*out = (unsigned)n;
	return 0;
}

static int fbuf_options_parse(struct fbuf *f, struct console_vnc_cfg *vc, char *err, size_t errlen)
{
	struct pci_dev *pd = f->pd;
	struct opt_check chk = { .prefix = NULL };
	char prefix[40];
	const char *vga = pci_dev_opt(pd, "vga");
	int ret;

	snprintf(prefix, sizeof(prefix), "%s.", pd->opts);
	chk.prefix = prefix;
	config_foreach(f->vm->cfg, prefix, fbuf_check_key, &chk);
	if (chk.bad[0]) {
		snprintf(err, errlen,
			 "unknown option '%s' (fbuf takes tcp, unix, w, h, password, wait, vga, "
			 "font, rom)",
			 chk.bad);
		return -EINVAL;
	}
	ret = fbuf_uint(pd, "w", 1024, FBUF_MIN_W, FBUF_MAX_W, &f->w, err, errlen);
	if (!ret)
		ret = fbuf_uint(pd, "h", 768, FBUF_MIN_H, FBUF_MAX_H, &f->h, err, errlen);
	if (ret)
		return ret;
	if (!vga)
		f->mode = config_get(f->vm->cfg, "lpc.bootrom") ? FBUF_VGA_ON : FBUF_VGA_IO;
	else if (!strcmp(vga, "io"))
		f->mode = FBUF_VGA_IO;
	else if (!strcmp(vga, "on"))
		f->mode = FBUF_VGA_ON;
	else if (!strcmp(vga, "off"))
		f->mode = FBUF_VGA_OFF;
	else {
		snprintf(err, errlen, "vga=%s: expected io, on or off", vga);
		return -EINVAL;
	}
	/* rfb= is bhyve's older name of tcp=. */
	vc->tcp = pci_dev_opt(pd, "tcp") ? pci_dev_opt(pd, "tcp") : pci_dev_opt(pd, "rfb");
	vc->unix_path = pci_dev_opt(pd, "unix");
	vc->password = pci_dev_opt(pd, "password");
	vc->name = f->vm->name;
	if (vc->tcp && vc->unix_path) {
		snprintf(err, errlen, "tcp= and unix= exclude each other: give one");
		return -EINVAL;
	}
	snprintf(prefix, sizeof(prefix), "%s.wait", pd->opts);
	if (config_get_bool(f->vm->cfg, prefix, false, &vc->wait)) {
		snprintf(err, errlen, "wait=%s: expected true or false (or just wait)",
			 pci_dev_opt(pd, "wait"));
		return -EINVAL;
	}
	return 0;
}

/* The console font into plane 2; without one, text shows once the guest loads a font. */
static void fbuf_font(struct fbuf *f)
{
	static const char *const paths[] = FONT_DEFAULT_PATHS;
	const char *want = pci_dev_opt(f->pd, "font");
	struct font *font = malloc(sizeof(*font));
	char err[256] = "";
	bool ok = false;

	if (!font)
		return;
	if (want) {
		ok = !font_load(want, font, err, sizeof(err));
	} else {
		for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]) && !ok; i++)
			ok = !font_load(paths[i], font, err, sizeof(err));
	}
	if (ok)
		vga_load_font(&f->vga, font->glyph, font->height);
	else
		log_warn("%s (fbuf): no console font (%s): text mode stays blank until the "
			 "guest loads a font; install console-setup-linux or give font=PATH",
			 f->pd->opts, err);
	free(font);
}

/*
 * The VGA BIOS as the expansion ROM (rom=PATH, rom=off; by default Debian's SeaBIOS VGA BIOS
 * for this hardware when the legacy window is on, which it needs).  It must be an option ROM
 * for 1234:1111, or the firmware would not run it.
 */
static int fbuf_rom(struct fbuf *f, char *err, size_t errlen)
{
	const char *want = pci_dev_opt(f->pd, "rom");
	const char *path = want ? want : FBUF_ROM_DEFAULT;
	FILE *fp;
	size_t n;
	unsigned pcir;

	if ((want && !strcmp(want, "off")) || (!want && f->mode != FBUF_VGA_ON))
		return 0;
	fp = fopen(path, "rbe");
	if (!fp) {
		if (!want) {
			if (config_get(f->vm->cfg, "lpc.bootrom"))
				log_warn("%s (fbuf): no VGA BIOS (%s: %s): the firmware "
					 "will not show on the display; install seabios or give "
					 "rom=PATH",
					 f->pd->opts, path, strerror(errno));
			return 0;
		}
		snprintf(err, errlen, "rom=%s: %s", path, strerror(errno));
		return -errno;
	}
	n = fread(f->rom, 1, sizeof(f->rom), fp);
	if (n == sizeof(f->rom) && fgetc(fp) != EOF)
		n = 0;
	fclose(fp);
	pcir = n >= 0x1a ? (unsigned)(f->rom[0x18] | f->rom[0x19] << 8) : 0;
	if (n < 512 || f->rom[0] != 0x55 || f->rom[1] != 0xaa || pcir + 8 > n ||
	    memcmp(&f->rom[pcir], "PCIR", 4)) {
		snprintf(err, errlen, "rom=%s: not a PCI option ROM of at most %u KiB", path,
			 (unsigned)(FBUF_ROM_SIZE >> 10));
		return -EINVAL;
	}
	if ((f->rom[pcir + 4] | f->rom[pcir + 5] << 8) != FBUF_VENDOR ||
	    (f->rom[pcir + 6] | f->rom[pcir + 7] << 8) != FBUF_DEVICE) {
		snprintf(err, errlen,
			 "rom=%s: the ROM is for PCI %02x%02x:%02x%02x, this display "
			 "is %04x:%04x",
			 path, f->rom[pcir + 5], f->rom[pcir + 4], f->rom[pcir + 7],
			 f->rom[pcir + 6], FBUF_VENDOR, FBUF_DEVICE);
		return -EINVAL;
	}
	f->rom_len = (uint32_t)n;
	return pci_rom_set(f->pd, f->rom, n, FBUF_ROM_SIZE);
}

static int fbuf_legacy(struct fbuf *f, char *err, size_t errlen)
{
	struct vm *vm = f->vm;
	int ret;

	if (f->mode == FBUF_VGA_OFF)
		return 0;
	if (bus_register(&vm->pio, VGA_IO_BASE, VGA_IO_LEN, fbuf_vga_io, f)) {
		snprintf(err, errlen, "the VGA ports are taken (one fbuf per VM)");
		return -EBUSY;
	}
	if (bus_register(&vm->pio, VBE_IO_BASE, VBE_IO_LEN, fbuf_vbe_io, f)) {
		bus_unregister(&vm->pio, VGA_IO_BASE);
		snprintf(err, errlen, "the VBE ports 0x1ce-0x1d0 are taken");
		return -EBUSY;
	}
	f->ports = true;
	vm->vga = true;
	if (f->mode != FBUF_VGA_ON)
		return 0;
	ret = vm_mem_hole(vm, VGA_MEM_BASE, VGA_MEM_SIZE);
	if (!ret)
		ret = bus_register(&vm->mmio, VGA_MEM_BASE, VGA_MEM_SIZE, fbuf_window_io, f);
	if (ret) {
		snprintf(err, errlen, "the VGA memory window 0xa0000: %s", strerror(-ret));
		return ret;
	}
	f->window = true;
	return 0;
}

static void fbuf_free(struct fbuf *f)
{
	if (f->attached)
		console_display_detach(f->con);
	console_put(f->con);
	if (f->window)
		bus_unregister(&f->vm->mmio, VGA_MEM_BASE);
	if (f->ports) {
		bus_unregister(&f->vm->pio, VGA_IO_BASE);
		bus_unregister(&f->vm->pio, VBE_IO_BASE);
	}
	vga_free(&f->vga);
	if (f->vram)
		munmap(f->vram, FBUF_VRAM_SIZE);
	pthread_mutex_destroy(&f->lock);
	free(f);
}

static int fbuf_setup_pci(struct fbuf *f)
{
	struct pci_dev *pd = f->pd;
	int ret;

	pci_set_ids(pd, FBUF_VENDOR, FBUF_DEVICE, PCIC_DISPLAY,
		    f->mode == FBUF_VGA_OFF ? PCIS_DISPLAY_OTHER : PCIS_DISPLAY_VGA, 0,
		    FBUF_REVISION);
	pci_set_cfg16(pd, PCIR_SUBVEND, FBUF_SUBVENDOR);
	pci_set_cfg16(pd, PCIR_SUBDEV, FBUF_SUBDEVICE);
	ret = pci_bar_declare(pd, 0, PCI_BAR_MEM32, FBUF_VRAM_SIZE, true);
	if (!ret)
		ret = pci_bar_set_ram(pd, 0, f->vram, true);
	if (!ret)
		ret = pci_bar_declare(pd, 2, PCI_BAR_MEM32, FBUF_MMIO_SIZE, false);
	return ret;
}

static int fbuf_init(struct vm *vm, struct pci_dev *pd, const char *opts, char *err, size_t errlen)
{
	struct fbuf *f = calloc(1, sizeof(*f));
	struct console_vnc_cfg vc = { .tcp = NULL };
	int ret;

	if (!f) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	f->pd = pd;
	f->vm = vm;
	pthread_mutex_init(&f->lock, NULL);
	ret = fbuf_options_parse(f, &vc, err, errlen);
	if (ret)
		goto fail;
	/* Never-touched video memory costs nothing (and is not saved). */
	f->vram = mmap(NULL, FBUF_VRAM_SIZE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (f->vram == MAP_FAILED) {
		f->vram = NULL;
		ret = -ENOMEM;
		snprintf(err, errlen, "cannot map %llu MiB of video memory", FBUF_VRAM_SIZE >> 20);
		goto fail;
	}
	ret = vga_init(&f->vga, f->vram, FBUF_VRAM_SIZE, FBUF_MAX_W, FBUF_MAX_H);
	if (ret) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	vga_reset(&f->vga);
	fbuf_font(f);
	fbuf_edid(f->edid, f->w, f->h);
	ret = fbuf_setup_pci(f);
	if (ret) {
		snprintf(err, errlen, "BARs: %s", strerror(-ret));
		goto fail;
	}
	ret = fbuf_rom(f, err, errlen);
	if (ret)
		goto fail;
	ret = fbuf_legacy(f, err, errlen);
	if (ret)
		goto fail;
	pd->priv = f;
	f->con = console_get(vm);
	if (!f->con) {
		ret = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	/* tcp=off: no VNC server, screenshots only. */
	ret = console_display_attach(f->con, &fbuf_display, f,
				     vc.tcp && !strcmp(vc.tcp, "off") ? NULL : &vc, err, errlen);
	if (ret)
		goto fail;
	f->attached = true;
	return 0;
fail:
	pd->priv = NULL;
	fbuf_free(f);
	return ret;
}

static void fbuf_destroy(struct pci_dev *pd)
{
	if (pd->priv)
		fbuf_free(pd->priv);
	pd->priv = NULL;
}

const struct pci_emul pci_emul_fbuf = {
	.name = "fbuf",
	.version = FBUF_STATE_VERSION,
	.options = { { .names = fbuf_options } },
	.init = fbuf_init,
	.bar_io = fbuf_bar_io,
	.save = fbuf_save,
	.load = fbuf_load,
	.destroy = fbuf_destroy,
};
