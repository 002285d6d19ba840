/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Console fonts for VGA text mode: a PSF file (version 1 or 2, gzip-compressed or not, with a
 * Unicode table, as Debian's console-setup ships them in /usr/share/consolefonts) read at run
 * time and turned into the 256 glyphs of code page 437, the character set of the VGA ROM font
 * that text-mode software expects.  The reset of fbuf loads them into font map 0 in plane 2,
 * where a VGA BIOS would put its own; guests that load another font get theirs.
 */
#ifndef KHYVE_DEV_FONT_H
#define KHYVE_DEV_FONT_H

#include <stddef.h>
#include <stdint.h>

/* The fonts tried when none is configured, in order. */
#define FONT_DEFAULT_PATHS                                                 \
	{                                                                  \
		"/usr/share/consolefonts/Uni2-VGA16.psf.gz",               \
			"/usr/share/consolefonts/Lat15-VGA16.psf.gz",      \
			"/usr/share/kbd/consolefonts/default8x16.psfu.gz", \
			"/usr/share/consolefonts/default8x16.psfu.gz"      \
	}

/* The Unicode code point of each CP437 code, with the VGA ROM's glyphs for 0x01-0x1F. */
extern const uint16_t font_cp437[256];

struct font {
	uint8_t glyph[256][32]; /* CP437 order, 8 pixels a row, MSB left */
	unsigned height;	/* rows, at most 32 */
	unsigned missing;	/* codes the font had no glyph for (drawn blank or synthesised) */
};

/*
 * Parse a PSF font of @len bytes (already decompressed).  The font must be 8 pixels wide and
 * at most 32 high.  0 or -errno with a message in @err.
 */
int font_parse_psf(const uint8_t *buf, size_t len, struct font *f, char *err, size_t errlen);
/* Read (gunzip if needed) and parse @path. */
int font_load(const char *path, struct font *f, char *err, size_t errlen);

#endif
