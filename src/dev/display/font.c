// SPDX-License-Identifier: BSD-2-Clause
/* PSF console fonts to VGA code page 437 glyphs (see font.h). */
#include "dev/display/font.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#define FONT_MAX_FILE (1 << 20)
#define PSF1_MAGIC0 0x36
#define PSF1_MAGIC1 0x04
#define PSF1_MODE512 0x01
#define PSF1_MODEHASTAB 0x02
#define PSF1_MODEHASSEQ 0x04
#define PSF2_MAGIC 0x864ab572U
#define PSF2_HAS_UNICODE 0x01
#define NO_GLYPH 0xffff

const uint16_t font_cp437[256] = {
	0x0000, 0x263a, 0x263b, 0x2665, 0x2666, 0x2663, 0x2660, 0x2022, 0x25d8, 0x25cb, 0x25d9,
	0x2642, 0x2640, 0x266a, 0x266b, 0x263c, 0x25ba, 0x25c4, 0x2195, 0x203c, 0x00b6, 0x00a7,
	0x25ac, 0x21a8, 0x2191, 0x2193, 0x2192, 0x2190, 0x221f, 0x2194, 0x25b2, 0x25bc, 0x0020,
	0x0021, 0x0022, 0x0023, 0x0024, 0x0025, 0x0026, 0x0027, 0x0028, 0x0029, 0x002a, 0x002b,
	0x002c, 0x002d, 0x002e, 0x002f, 0x0030, 0x0031, 0x0032, 0x0033, 0x0034, 0x0035, 0x0036,
	0x0037, 0x0038, 0x0039, 0x003a, 0x003b, 0x003c, 0x003d, 0x003e, 0x003f, 0x0040, 0x0041,
	0x0042, 0x0043, 0x0044, 0x0045, 0x0046, 0x0047, 0x0048, 0x0049, 0x004a, 0x004b, 0x004c,
	0x004d, 0x004e, 0x004f, 0x0050, 0x0051, 0x0052, 0x0053, 0x0054, 0x0055, 0x0056, 0x0057,
	0x0058, 0x0059, 0x005a, 0x005b, 0x005c, 0x005d, 0x005e, 0x005f, 0x0060, 0x0061, 0x0062,
	0x0063, 0x0064, 0x0065, 0x0066, 0x0067, 0x0068, 0x0069, 0x006a, 0x006b, 0x006c, 0x006d,
	0x006e, 0x006f, 0x0070, 0x0071, 0x0072, 0x0073, 0x0074, 0x0075, 0x0076, 0x0077, 0x0078,
	0x0079, 0x007a, 0x007b, 0x007c, 0x007d, 0x007e, 0x2302, 0x00c7, 0x00fc, 0x00e9, 0x00e2,
	0x00e4, 0x00e0, 0x00e5, 0x00e7, 0x00ea, 0x00eb, 0x00e8, 0x00ef, 0x00ee, 0x00ec, 0x00c4,
	0x00c5, 0x00c9, 0x00e6, 0x00c6, 0x00f4, 0x00f6, 0x00f2, 0x00fb, 0x00f9, 0x00ff, 0x00d6,
	0x00dc, 0x00a2, 0x00a3, 0x00a5, 0x20a7, 0x0192, 0x00e1, 0x00ed, 0x00f3, 0x00fa, 0x00f1,
	0x00d1, 0x00aa, 0x00ba, 0x00bf, 0x2310, 0x00ac, 0x00bd, 0x00bc, 0x00a1, 0x00ab, 0x00bb,
	0x2591, 0x2592, 0x2593, 0x2502, 0x2524, 0x2561, 0x2562, 0x2556, 0x2555, 0x2563, 0x2551,
	0x2557, 0x255d, 0x255c, 0x255b, 0x2510, 0x2514, 0x2534, 0x252c, 0x251c, 0x2500, 0x253c,
	0x255e, 0x255f, 0x255a, 0x2554, 0x2569, 0x2566, 0x2560, 0x2550, 0x256c, 0x2567, 0x2568,
	0x2564, 0x2565, 0x2559, 0x2558, 0x2552, 0x2553, 0x256b, 0x256a, 0x2518, 0x250c, 0x2588,
	0x2584, 0x258c, 0x2590, 0x2580, 0x03b1, 0x00df, 0x0393, 0x03c0, 0x03a3, 0x03c3, 0x00b5,
	0x03c4, 0x03a6, 0x0398, 0x03a9, 0x03b4, 0x221e, 0x03c6, 0x03b5, 0x2229, 0x2261, 0x00b1,
	0x2265, 0x2264, 0x2320, 0x2321, 0x00f7, 0x2248, 0x00b0, 0x2219, 0x00b7, 0x221a, 0x207f,
	0x00b2, 0x25a0, 0x00a0,
};

struct psf {
	const uint8_t *glyphs;
	unsigned count, bytes, height, width;
	uint16_t *map; /* Unicode (BMP) to glyph, NO_GLYPH when none; NULL without a table */
};

static void map_add(struct psf *p, uint32_t cp, unsigned g)
{
	if (cp < 0x10000 && p->map[cp] == NO_GLYPH)
		p->map[cp] = (uint16_t)g;
}

/* PSF1 table: per glyph, UCS-2 values to 0xFFFF; 0xFFFE starts sequences (skipped). */
static void psf1_table(struct psf *p, const uint8_t *t, size_t len)
{
	bool seq = false;
	unsigned g = 0;

	for (size_t i = 0; i + 1 < len && g < p->count; i += 2) {
		uint16_t v = (uint16_t)(t[i] | t[i + 1] << 8);

		if (v == 0xffff) {
			g++;
			seq = false;
		} else if (v == 0xfffe) {
			seq = true;
		} else if (!seq) {
			map_add(p, v, g);
		}
	}
}

/* One UTF-8 character at @t (at most @len bytes): its code point and length, or 0. */
static unsigned utf8_get(const uint8_t *t, size_t len, uint32_t *cp)
{
	unsigned n = t[0] < 0x80	     ? 1
		     : (t[0] & 0xe0) == 0xc0 ? 2
		     : (t[0] & 0xf0) == 0xe0 ? 3
		     : (t[0] & 0xf8) == 0xf0 ? 4
					     : 0;
	uint32_t v;

	if (!n || n > len)
		return 0;
	v = n == 1 ? t[0] : t[0] & (0x7f >> n);
	for (unsigned i = 1; i < n; i++) {
		if ((t[i] & 0xc0) != 0x80)
			return 0;
		v = v << 6 | (t[i] & 0x3f);
	}
	*cp = v;
	return n;
}

/* PSF2 table: per glyph, UTF-8 characters to 0xFF; 0xFE starts sequences (skipped). */
static void psf2_table(struct psf *p, const uint8_t *t, size_t len)
{
	bool seq = false;
	unsigned g = 0;

	for (size_t i = 0; i < len && g < p->count;) {
		uint32_t cp;
		unsigned n;

		if (t[i] == 0xff) {
			g++;
			seq = false;
			i++;
		} else if (t[i] == 0xfe) {
			seq = true;
			i++;
		} else if ((n = utf8_get(&t[i], len - i, &cp))) {
			if (!seq)
				map_add(p, cp, g);
			i += n;
		} else {
			i++; /* not UTF-8: skip the byte */
		}
	}
}

static uint32_t le32(const uint8_t *b)
{
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static int psf_header(const uint8_t *buf, size_t len, struct psf *p, const uint8_t **table,
		      size_t *tlen, char *err, size_t errlen)
{
	size_t end;

	if (len >= 4 && buf[0] == PSF1_MAGIC0 && buf[1] == PSF1_MAGIC1) {
		p->count = (buf[2] & PSF1_MODE512) ? 512 : 256;
		p->height = p->bytes = buf[3];
		p->width = 8;
		p->glyphs = buf + 4;
		end = 4 + (size_t)p->count * p->bytes;
		*table = (buf[2] & (PSF1_MODEHASTAB | PSF1_MODEHASSEQ)) ? buf + end : NULL;
	} else if (len >= 32 && le32(buf) == PSF2_MAGIC) {
		uint32_t hsize = le32(buf + 8), flags = le32(buf + 12);

		p->count = le32(buf + 16);
		p->bytes = le32(buf + 20);
		p->height = le32(buf + 24);
		p->width = le32(buf + 28);
		if (hsize < 32 || hsize > len || !p->count || p->count > 65536 || p->bytes > 4096 ||
		    (uint64_t)p->count * p->bytes > len - hsize) {
			snprintf(err, errlen, "bad PSF2 header");
			return -EINVAL;
		}
		p->glyphs = buf + hsize;
		end = hsize + (size_t)p->count * p->bytes;
		*table = (flags & PSF2_HAS_UNICODE) ? buf + end : NULL;
	} else {
		snprintf(err, errlen, "not a PSF font");
		return -EINVAL;
	}
	if (end > len) {
		snprintf(err, errlen,
			 "truncated: %u glyphs of %u bytes need %zu bytes, the file "
			 "has %zu",
			 p->count, p->bytes, end, len);
		return -EINVAL;
	}
	if (p->width != 8 || !p->height || p->height > 32 || p->bytes < p->height) {
		snprintf(err, errlen,
			 "glyphs are %ux%u; VGA text needs 8 pixels wide, at most 32 "
			 "high",
			 p->width, p->height);
		return -EINVAL;
	}
	*tlen = *table ? len - end : 0;
	return 0;
}

/* Block elements and shades a font may lack, drawn as the VGA ROM font has them. */
static bool font_synth(uint16_t cp, unsigned h, uint8_t *g)
{
	for (unsigned y = 0; y < h; y++) {
		switch (cp) {
		case 0x2588:
			g[y] = 0xff;
			break;
		case 0x2584:
			g[y] = y >= h / 2 ? 0xff : 0;
			break;
		case 0x2580:
			g[y] = y < h / 2 ? 0xff : 0;
			break;
		case 0x258c:
			g[y] = 0xf0;
			break;
		case 0x2590:
			g[y] = 0x0f;
			break;
		case 0x2591:
			g[y] = y & 1 ? 0x88 : 0x22;
			break;
		case 0x2592:
			g[y] = y & 1 ? 0xaa : 0x55;
			break;
		case 0x2593:
			g[y] = y & 1 ? 0xdd : 0x77;
			break;
		default:
			return false;
		}
	}
	return true;
}

int font_parse_psf(const uint8_t *buf, size_t len, struct font *f, char *err, size_t errlen)
{
	struct psf p = { 0 };
	const uint8_t *table;
	size_t tlen;
	int ret = psf_header(buf, len, &p, &table, &tlen, err, errlen);

	if (ret)
		return ret;
	memset(f, 0, sizeof(*f));
	f->height = p.height;
	if (table) {
		p.map = malloc(0x10000 * sizeof(*p.map));
		if (!p.map) {
			snprintf(err, errlen, "out of memory");
			return -ENOMEM;
		}
		memset(p.map, 0xff, 0x10000 * sizeof(*p.map));
		if (buf[0] == PSF1_MAGIC0)
			psf1_table(&p, table, tlen);
		else
			psf2_table(&p, table, tlen);
	}
	for (unsigned c = 1; c < 256; c++) {
		/* Without a table the font is in CP437 order, as VGA ROM fonts are. */
		unsigned g = p.map ? p.map[font_cp437[c]] : c < p.count ? c : NO_GLYPH;

		if (g != NO_GLYPH)
			memcpy(f->glyph[c], p.glyphs + (size_t)g * p.bytes, p.height);
		else if (!font_synth(font_cp437[c], p.height, f->glyph[c]))
			f->missing++;
	}
	free(p.map);
	return 0;
}

int font_load(const char *path, struct font *f, char *err, size_t errlen)
{
	uint8_t *buf = malloc(FONT_MAX_FILE);
	gzFile gz;
	int n, fd, ret;

	if (!buf) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	gz = fd >= 0 ? gzdopen(fd, "rb") : NULL;
	if (!gz) {
		ret = fd < 0 ? -errno : -ENOMEM;
		snprintf(err, errlen, "%s: %s", path, strerror(-ret));
		if (fd >= 0)
			close(fd);
		free(buf);
		return ret;
	}
	/* gzread passes a file that is not compressed through unchanged. */
	n = gzread(gz, buf, FONT_MAX_FILE);
	gzclose(gz);
	if (n < 0 || n == FONT_MAX_FILE) {
		snprintf(err, errlen, "%s: %s", path,
			 n < 0 ? "cannot read or gunzip it" : "too big");
		free(buf);
		return -EINVAL;
	}
	ret = font_parse_psf(buf, (size_t)n, f, err, errlen);
	if (ret) {
		char why[200];

		snprintf(why, sizeof(why), "%s", err);
		snprintf(err, errlen, "%s: %s", path, why);
	}
	free(buf);
	return ret;
}
