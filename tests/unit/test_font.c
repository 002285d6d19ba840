// SPDX-License-Identifier: BSD-2-Clause
/*
 * Console fonts (dev/display/font.c): PSF1 and PSF2 files, with and without a Unicode table,
 * mapped to code page 437; block elements a font lacks are drawn; malformed headers,
 * truncated files and files that are not fonts are refused with a message.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "dev/display/font.h"

#define CP437_E_ACUTE 0x82 /* U+00E9 */
#define CP437_HLINE 0xC4   /* U+2500 */
#define CP437_FULL 0xDB	   /* U+2588 */
#define CP437_LIGHT 0xB0   /* U+2591 */
#define CP437_UPPER 0xDF   /* U+2580 */

static struct font ft;
static char err[256];

static void put32(uint8_t *b, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		b[i] = (uint8_t)(v >> (8 * i));
}

/* A PSF2 header: @count glyphs of @bytes bytes, @h rows of @w pixels, table flag @flags. */
static void psf2_hdr(uint8_t *b, uint32_t hsize, uint32_t flags, uint32_t count, uint32_t bytes,
		     uint32_t h, uint32_t w)
{
	put32(b, 0x864ab572U);
	put32(b + 4, 0);
	put32(b + 8, hsize);
	put32(b + 12, flags);
	put32(b + 16, count);
	put32(b + 20, bytes);
	put32(b + 24, h);
	put32(b + 28, w);
}

static int parse(const uint8_t *b, size_t len)
{
	err[0] = 0;
	return font_parse_psf(b, len, &ft, err, sizeof(err));
}

/* PSF1 without a table: glyphs in CP437 order; glyph c's rows are all c. */
static void test_psf1_plain(void **state)
{
	size_t len = 4 + 256 * 16;
	uint8_t *b = calloc(1, len);

	b[0] = 0x36;
	b[1] = 0x04;
	b[3] = 16;
	for (unsigned c = 0; c < 256; c++)
		memset(b + 4 + c * 16, (int)c, 16);
	assert_int_equal(parse(b, len), 0);
	assert_int_equal(ft.height, 16);
	assert_int_equal(ft.missing, 0);
	assert_int_equal(ft.glyph['A'][0], 'A');
	assert_int_equal(ft.glyph[0xFE][15], 0xFE);
	/* One byte short: truncated. */
	assert_int_equal(parse(b, len - 1), -EINVAL);
	assert_non_null(strstr(err, "truncated: 256 glyphs of 16 bytes need 4100 bytes"));
	free(b);
}

/* PSF1, 512 glyphs with a UCS-2 table: sequences skipped, the first mapping wins. */
static void test_psf1_table(void **state)
{
	static const uint16_t tab[] = {
		0x0041, 0xfffe, 0x0042, 0xffff, /* glyph 0: 'A'; the sequence's 'B' is not it */
		0x0042, 0xffff,			/* glyph 1: 'B' */
		0x0041, 0x2500, 0xffff,		/* glyph 2: 'A' again (ignored), U+2500 */
	};
	size_t glyphs = 512 * 8, len = 4 + glyphs + sizeof(tab);
	uint8_t *b = calloc(1, len);

	b[0] = 0x36;
	b[1] = 0x04;
	b[2] = 0x01 | 0x02; /* 512 glyphs, table */
	b[3] = 8;
	for (unsigned g = 0; g < 3; g++)
		memset(b + 4 + g * 8, 0x10 + (int)g, 8);
	for (size_t i = 0; i < sizeof(tab) / 2; i++) {
		b[4 + glyphs + 2 * i] = (uint8_t)tab[i];
		b[4 + glyphs + 2 * i + 1] = (uint8_t)(tab[i] >> 8);
	}
	assert_int_equal(parse(b, len), 0);
	assert_int_equal(ft.height, 8);
	assert_int_equal(ft.glyph['A'][0], 0x10);
	assert_int_equal(ft.glyph['B'][7], 0x11);
	assert_int_equal(ft.glyph[CP437_HLINE][3], 0x12);
	/* Absent block elements are drawn: full, upper half, light shade. */
	for (unsigned y = 0; y < 8; y++) {
		assert_int_equal(ft.glyph[CP437_FULL][y], 0xff);
		assert_int_equal(ft.glyph[CP437_UPPER][y], y < 4 ? 0xff : 0);
		assert_int_equal(ft.glyph[CP437_LIGHT][y], y & 1 ? 0x88 : 0x22);
	}
	/* 255 codes less the 3 mapped and the 8 drawn. */
	assert_int_equal(ft.missing, 255 - 3 - 8);
	assert_int_equal(ft.glyph['C'][0], 0);
	free(b);
}

/* PSF2 with a UTF-8 table: 2-, 3- and 4-byte characters; bytes that are not UTF-8 skipped. */
static void test_psf2_utf8(void **state)
{
	static const uint8_t tab[] = {
		0xc3, 0xa9, 0xff,	      /* glyph 0: U+00E9 */
		0xe2, 0x94, 0x80, 0xff,	      /* glyph 1: U+2500 */
		0xf0, 0x9f, 0x98, 0x80,	      /* glyph 2: U+1F600 (past the BMP: unused), */
		0x80, 'Z',  0xff,	      /* a stray continuation byte, then 'Z' */
		0xe2, 'Y',  0xfe, 'X',	0xff, /* glyph 3: a broken 3-byte start, 'Y'; seq 'X' */
		0xc3,			      /* a 2-byte start cut off by the end */
	};
	size_t len = 32 + 4 * 16 + sizeof(tab);
	uint8_t *b = calloc(1, len);

	psf2_hdr(b, 32, 1, 4, 16, 16, 8);
	for (unsigned g = 0; g < 4; g++)
		memset(b + 32 + g * 16, 0x20 + (int)g, 16);
	memcpy(b + 32 + 64, tab, sizeof(tab));
	assert_int_equal(parse(b, len), 0);
	assert_int_equal(ft.glyph[CP437_E_ACUTE][0], 0x20);
	assert_int_equal(ft.glyph[CP437_HLINE][0], 0x21);
	assert_int_equal(ft.glyph['Z'][0], 0x22);
	assert_int_equal(ft.glyph['Y'][0], 0x23);
	assert_int_equal(ft.glyph['X'][0], 0);
	free(b);
}

/* Every malformed header is refused with what is wrong. */
static void test_bad_headers(void **state)
{
	uint8_t b[32 + 64] = { 0 };

	assert_int_equal(parse(b, sizeof(b)), -EINVAL);
	assert_string_equal(err, "not a PSF font");
	b[0] = 0x36;
	b[1] = 0x04;
	assert_int_equal(parse(b, 3), -EINVAL); /* too short for a PSF1 header */
	assert_string_equal(err, "not a PSF font");

	psf2_hdr(b, 16, 0, 4, 16, 16, 8); /* header size below 32 */
	assert_int_equal(parse(b, sizeof(b)), -EINVAL);
	assert_string_equal(err, "bad PSF2 header");
	psf2_hdr(b, 200, 0, 4, 16, 16, 8); /* header past the file */
	assert_int_equal(parse(b, sizeof(b)), -EINVAL);
	assert_string_equal(err, "bad PSF2 header");
	psf2_hdr(b, 32, 0, 0, 16, 16, 8); /* no glyphs */
	assert_int_equal(parse(b, sizeof(b)), -EINVAL);
	psf2_hdr(b, 32, 0, 70000, 16, 16, 8); /* too many */
	assert_int_equal(parse(b, sizeof(b)), -EINVAL);
	psf2_hdr(b, 32, 0, 1, 5000, 16, 8); /* glyphs too big */
	assert_int_equal(parse(b, sizeof(b)), -EINVAL);
	psf2_hdr(b, 32, 0, 5, 16, 16, 8); /* 80 bytes of glyphs in 64 */
	assert_int_equal(parse(b, sizeof(b)), -EINVAL);
	assert_string_equal(err, "bad PSF2 header");

	psf2_hdr(b, 32, 0, 4, 16, 16, 9); /* 9 pixels wide */
	assert_int_equal(parse(b, sizeof(b)), -EINVAL);
	assert_non_null(strstr(err, "glyphs are 9x16; VGA text needs 8 pixels wide"));
	psf2_hdr(b, 32, 0, 4, 16, 0, 8); /* no rows */
	assert_int_equal(parse(b, sizeof(b)), -EINVAL);
	assert_non_null(strstr(err, "glyphs are 8x0"));
	psf2_hdr(b, 32, 0, 1, 64, 33, 8); /* 33 rows */
	assert_int_equal(parse(b, sizeof(b)), -EINVAL);
	assert_non_null(strstr(err, "glyphs are 8x33"));
	psf2_hdr(b, 32, 0, 4, 8, 16, 8); /* 16 rows in 8 bytes */
	assert_int_equal(parse(b, sizeof(b)), -EINVAL);
	assert_non_null(strstr(err, "glyphs are 8x16"));
	psf2_hdr(b, 32, 0, 4, 16, 16, 8); /* and a good one */
	assert_int_equal(parse(b, sizeof(b)), 0);
	assert_int_equal(ft.missing, 255 - 3 - 8); /* glyphs 1-3 in CP437 order, 8 drawn */
}

static void write_bytes(const char *path, const void *b, size_t len)
{
	FILE *fp = fopen(path, "wb");

	assert_non_null(fp);
	assert_int_equal(fwrite(b, 1, len, fp), len);
	fclose(fp);
}

/* Files: gzip-compressed or not; missing, unreadable, too big or not a font refused. */
static void test_load(void **state)
{
	char path[64], gzpath[64];
	uint8_t b[32 + 4 * 16] = { 0 }, *big;
	gzFile gz;

	snprintf(path, sizeof(path), "/tmp/khyve-font.%d", getpid());
	snprintf(gzpath, sizeof(gzpath), "/tmp/khyve-font.%d.gz", getpid());
	psf2_hdr(b, 32, 0, 4, 16, 16, 8);
	memset(b + 32 + 16, 0x5a, 16); /* glyph 1 */
	write_bytes(path, b, sizeof(b));
	memset(&ft, 0, sizeof(ft));
	assert_int_equal(font_load(path, &ft, err, sizeof(err)), 0);
	assert_int_equal(ft.glyph[1][0], 0x5a);
	gz = gzopen(gzpath, "wb");
	assert_non_null(gz);
	assert_int_equal(gzwrite(gz, b, sizeof(b)), (int)sizeof(b));
	gzclose(gz);
	memset(&ft, 0, sizeof(ft));
	assert_int_equal(font_load(gzpath, &ft, err, sizeof(err)), 0);
	assert_int_equal(ft.glyph[1][15], 0x5a);
	unlink(gzpath);

	assert_int_equal(font_load("/nonexistent/font.psf", &ft, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "/nonexistent/font.psf: No such file"));
	assert_int_equal(font_load("/tmp", &ft, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "/tmp: cannot read or gunzip it"));
	write_bytes(path, "hello", 5);
	assert_int_equal(font_load(path, &ft, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, ": not a PSF font"));
	assert_non_null(strstr(err, path));
	big = calloc(1, 1 << 20);
	write_bytes(path, big, 1 << 20);
	free(big);
	assert_int_equal(font_load(path, &ft, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, ": too big"));
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_psf1_plain), cmocka_unit_test(test_psf1_table),
		cmocka_unit_test(test_psf2_utf8),  cmocka_unit_test(test_bad_headers),
		cmocka_unit_test(test_load),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
