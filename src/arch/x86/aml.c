// SPDX-License-Identifier: BSD-2-Clause
/* AML byte encoding, per the ACPI specification chapters "ACPI Machine Language" and
 * "Resource Data Types". */
#include "arch/x86/aml.h"

#include <errno.h>
#include <string.h>

#define AML_ZERO 0x00
#define AML_ONE 0x01
#define AML_NAME 0x08
#define AML_BYTE 0x0A
#define AML_WORD 0x0B
#define AML_DWORD 0x0C
#define AML_STRING 0x0D
#define AML_QWORD 0x0E
#define AML_SCOPE 0x10
#define AML_BUFFER 0x11
#define AML_PACKAGE 0x12
#define AML_METHOD 0x14
#define AML_NOTIFY 0x86
#define AML_RETURN 0xA4
#define AML_EXT 0x5B
#define AML_DEVICE 0x82 /* after AML_EXT */
#define AML_ROOT '\\'
#define AML_PARENT '^'
#define AML_DUAL_NAME 0x2E
#define AML_MULTI_NAME 0x2F

/* Resource descriptor tags (small items carry their length in the tag). */
#define RES_IRQ_NOFLAGS 0x22
#define RES_IO 0x47
#define RES_END 0x79
#define RES_MEM32_FIXED 0x86
#define RES_DWORD_ADDR 0x87
#define RES_WORD_ADDR 0x88
#define RES_QWORD_ADDR 0x8A

#define RES_TYPE_MEM 0
#define RES_TYPE_IO 1
#define RES_TYPE_BUS 2
/* General flags: producer (bit 0 clear), positive decode, MinFixed (bit 2), MaxFixed (bit 3). */
#define RES_WINDOW 0x0C
#define RES_IO_ENTIRE 0x03 /* I/O type flags: ISA and non-ISA ranges */
#define RES_MEM_RW 0x01	   /* memory type flags: read-write, non-cacheable */

void aml_init(struct aml *a, void *buf, size_t cap)
{
	a->buf = buf;
	a->len = 0;
	a->cap = cap;
	a->err = 0;
}

long aml_finish(const struct aml *a)
{
	return a->err ? a->err : (long)a->len;
}

static void aml_fail(struct aml *a, int err)
{
	if (!a->err)
		a->err = err;
}

static void aml_put(struct aml *a, const void *p, size_t n)
{
	if (a->err)
		return;
	if (n > a->cap - a->len) {
		aml_fail(a, -ENOSPC);
		return;
	}
	memcpy(a->buf + a->len, p, n);
	a->len += n;
}

/* Inserts @n bytes at @at, moving what follows. */
static void aml_insert(struct aml *a, size_t at, const uint8_t *p, size_t n)
{
	if (a->err)
		return;
	if (at > a->len || n > a->cap - a->len) {
		aml_fail(a, -ENOSPC);
		return;
	}
	memmove(a->buf + at + n, a->buf + at, a->len - at);
	memcpy(a->buf + at, p, n);
	a->len += n;
}

/* Little-endian @n bytes of @v into @p. */
static void put_le(uint8_t *p, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void aml_le(struct aml *a, uint64_t v, unsigned n)
{
	uint8_t b[8];

	put_le(b, v, n);
	aml_put(a, b, n);
}

void aml_byte(struct aml *a, uint8_t v)
{
	aml_le(a, v, 1);
}

void aml_word(struct aml *a, uint16_t v)
{
	aml_le(a, v, 2);
}

void aml_dword(struct aml *a, uint32_t v)
{
	aml_le(a, v, 4);
}

void aml_qword(struct aml *a, uint64_t v)
{
	aml_le(a, v, 8);
}

/* Encodes @v as an integer term into @p (up to 9 bytes); returns its length. */
static unsigned aml_int_encode(uint8_t *p, uint64_t v)
{
	if (v <= 1) {
		p[0] = v ? AML_ONE : AML_ZERO;
		return 1;
	}
	if (v <= 0xFF) {
		p[0] = AML_BYTE;
		put_le(p + 1, v, 1);
		return 2;
	}
	if (v <= 0xFFFF) {
		p[0] = AML_WORD;
		put_le(p + 1, v, 2);
		return 3;
	}
	if (v <= 0xFFFFFFFF) {
		p[0] = AML_DWORD;
		put_le(p + 1, v, 4);
		return 5;
	}
	p[0] = AML_QWORD;
	put_le(p + 1, v, 8);
	return 9;
}

void aml_int(struct aml *a, uint64_t v)
{
	uint8_t b[9];

	aml_put(a, b, aml_int_encode(b, v));
}

static bool aml_lead_char(char c)
{
	return (c >= 'A' && c <= 'Z') || c == '_';
}

static bool aml_name_char(char c)
{
	return aml_lead_char(c) || (c >= '0' && c <= '9');
}

/* One NameSeg from @s (up to '.' or the end), padded to 4 with '_'; returns chars consumed. */
static size_t aml_nameseg(struct aml *a, const char *s)
{
	char seg[4] = { '_', '_', '_', '_' };
	size_t n = 0;

	while (s[n] && s[n] != '.') {
		if (n == 4 || !aml_name_char(s[n]) || (n == 0 && !aml_lead_char(s[n]))) {
			aml_fail(a, -EINVAL);
			return n;
		}
		seg[n] = s[n];
		n++;
	}
	if (!n)
		aml_fail(a, -EINVAL);
	aml_put(a, seg, 4);
	return n;
}

void aml_namestring(struct aml *a, const char *path)
{
	unsigned nseg = 0;
	const char *p;

	if (*path == AML_ROOT)
		aml_byte(a, *path++);
	else
		while (*path == AML_PARENT)
			aml_byte(a, *path++);
	if (!*path) {
		aml_byte(a, 0); /* NullName */
		return;
	}
	for (p = path, nseg = 1; *p; p++)
		nseg += *p == '.';
	if (nseg == 2) {
		aml_byte(a, AML_DUAL_NAME);
	} else if (nseg > 2) {
		aml_byte(a, AML_MULTI_NAME);
		aml_byte(a, (uint8_t)nseg);
	}
	while (!a->err) {
		path += aml_nameseg(a, path);
		if (*path != '.')
			break;
		path++;
	}
}

void aml_string(struct aml *a, const char *s)
{
	aml_byte(a, AML_STRING);
	aml_put(a, s, strlen(s) + 1);
}

static int aml_hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

void aml_eisaid(struct aml *a, const char *id)
{
	uint32_t v = 0;

	if (strlen(id) != 7) {
		aml_fail(a, -EINVAL);
		return;
	}
	/* Three letters of 5 bits each ('A' = 1), then four hex digits. */
	for (int i = 0; i < 3; i++) {
		if (id[i] < 'A' || id[i] > 'Z')
			aml_fail(a, -EINVAL);
		v = (v << 5) | (uint32_t)(id[i] - 'A' + 1);
	}
	for (int i = 3; i < 7; i++) {
		int h = aml_hex(id[i]);

		if (h < 0)
			aml_fail(a, -EINVAL);
		v = (v << 4) | (uint32_t)(h & 0xF);
	}
	/* The 32-bit value is stored big-endian; as an AML integer that is byte-swapped. */
	aml_byte(a, AML_DWORD);
	aml_dword(a, __builtin_bswap32(v));
}

void aml_name(struct aml *a, const char *name)
{
	aml_byte(a, AML_NAME);
	aml_namestring(a, name);
}

void aml_name_int(struct aml *a, const char *name, uint64_t v)
{
	aml_name(a, name);
	aml_int(a, v);
}

void aml_name_eisaid(struct aml *a, const char *name, const char *id)
{
	aml_name(a, name);
	aml_eisaid(a, id);
}

static struct aml_mark aml_mark(struct aml *a, bool buffer)
{
	return (struct aml_mark){ .at = a->len, .buffer = buffer };
}

struct aml_mark aml_scope_open(struct aml *a, const char *path)
{
	struct aml_mark m;

	aml_byte(a, AML_SCOPE);
	m = aml_mark(a, false);
	aml_namestring(a, path);
	return m;
}

struct aml_mark aml_device_open(struct aml *a, const char *name)
{
	struct aml_mark m;

	aml_byte(a, AML_EXT);
	aml_byte(a, AML_DEVICE);
	m = aml_mark(a, false);
	aml_namestring(a, name);
	return m;
}

struct aml_mark aml_method_open(struct aml *a, const char *name, unsigned nargs)
{
	struct aml_mark m;

	aml_byte(a, AML_METHOD);
	m = aml_mark(a, false);
	aml_namestring(a, name);
	/* MethodFlags: ArgCount in bits 0-2, not serialized, SyncLevel 0. */
	if (nargs > 7)
		aml_fail(a, -EINVAL);
	aml_byte(a, (uint8_t)(nargs & 7));
	return m;
}

void aml_return(struct aml *a)
{
	aml_byte(a, AML_RETURN);
}

void aml_notify(struct aml *a, const char *path, uint8_t value)
{
	aml_byte(a, AML_NOTIFY);
	aml_namestring(a, path);
	aml_int(a, value);
}

struct aml_mark aml_package_open(struct aml *a, unsigned nelem)
{
	struct aml_mark m;

	if (nelem > 0xFF) /* NumElements is one byte; VarPackage is not needed here */
		aml_fail(a, -EINVAL);
	aml_byte(a, AML_PACKAGE);
	m = aml_mark(a, false);
	aml_byte(a, (uint8_t)nelem);
	return m;
}

struct aml_mark aml_buffer_open(struct aml *a)
{
	aml_byte(a, AML_BUFFER);
	return aml_mark(a, true);
}

/*
 * PkgLength counts itself: one byte holds up to 63; otherwise the lead byte has the number of
 * following bytes in bits 7:6 and the low 4 bits of the length, the next bytes 8 bits each.
 */
static unsigned aml_pkglen_encode(uint8_t *p, size_t body)
{
	unsigned n;

	if (body + 1 <= 0x3F) {
		p[0] = (uint8_t)(body + 1);
		return 1;
	}
	for (n = 2; n < 4 && body + n >= (1UL << (4 + 8 * (n - 1))); n++)
		;
	size_t total = body + n;

	p[0] = (uint8_t)(((n - 1) << 6) | (total & 0xF));
	for (unsigned i = 1; i < n; i++)
		p[i] = (uint8_t)(total >> (4 + 8 * (i - 1)));
	return n;
}

void aml_close(struct aml *a, struct aml_mark m)
{
	uint8_t hdr[4 + 9];
	unsigned n, nsize = 0;
	uint8_t size[9];
	size_t body;

	if (a->err)
		return;
	if (m.at > a->len || a->len - m.at >= (1UL << 28) - 16) {
		aml_fail(a, -ENOSPC);
		return;
	}
	body = a->len - m.at;
	/* A Buffer's contents start with BufferSize, which then counts in the PkgLength. */
	if (m.buffer)
		nsize = aml_int_encode(size, body);
	n = aml_pkglen_encode(hdr, body + nsize);
	memcpy(hdr + n, size, nsize);
	aml_insert(a, m.at, hdr, n + nsize);
}

void aml_res_io(struct aml *a, uint16_t base, uint8_t len)
{
	aml_byte(a, RES_IO);
	aml_byte(a, 0x01); /* 16-bit decode */
	aml_word(a, base);
	aml_word(a, base);
	aml_byte(a, 1); /* alignment */
	aml_byte(a, len);
}

void aml_res_irq(struct aml *a, unsigned irq)
{
	if (irq > 15)
		aml_fail(a, -EINVAL);
	aml_byte(a, RES_IRQ_NOFLAGS);
	aml_word(a, (uint16_t)(1u << (irq & 15)));
}

/* Word Address Space Descriptor: producer window with fixed bounds. */
static void aml_res_word_window(struct aml *a, uint8_t type, uint8_t tflags, uint16_t min,
				uint16_t max)
{
	aml_byte(a, RES_WORD_ADDR);
	aml_word(a, 13);
	aml_byte(a, type);
	aml_byte(a, RES_WINDOW);
	aml_byte(a, tflags);
	aml_word(a, 0); /* granularity */
	aml_word(a, min);
	aml_word(a, max);
	aml_word(a, 0); /* translation */
	aml_word(a, (uint16_t)(max - min + 1));
}

void aml_res_bus_window(struct aml *a, uint16_t min, uint16_t max)
{
	aml_res_word_window(a, RES_TYPE_BUS, 0, min, max);
}

void aml_res_io_window(struct aml *a, uint16_t min, uint16_t max)
{
	aml_res_word_window(a, RES_TYPE_IO, RES_IO_ENTIRE, min, max);
}

void aml_res_mem32_window(struct aml *a, uint32_t base, uint32_t len)
{
	aml_byte(a, RES_DWORD_ADDR);
	aml_word(a, 23);
	aml_byte(a, RES_TYPE_MEM);
	aml_byte(a, RES_WINDOW);
	aml_byte(a, RES_MEM_RW);
	aml_dword(a, 0); /* granularity */
	aml_dword(a, base);
	aml_dword(a, base + len - 1);
	aml_dword(a, 0); /* translation */
	aml_dword(a, len);
}

void aml_res_mem64_window(struct aml *a, uint64_t base, uint64_t len)
{
	aml_byte(a, RES_QWORD_ADDR);
	aml_word(a, 43);
	aml_byte(a, RES_TYPE_MEM);
	aml_byte(a, RES_WINDOW);
	aml_byte(a, RES_MEM_RW);
	aml_qword(a, 0);
	aml_qword(a, base);
	aml_qword(a, base + len - 1);
	aml_qword(a, 0);
	aml_qword(a, len);
}

void aml_res_mem32_fixed(struct aml *a, uint32_t base, uint32_t len, bool writable)
{
	aml_byte(a, RES_MEM32_FIXED);
	aml_word(a, 9);
	aml_byte(a, writable ? 1 : 0);
	aml_dword(a, base);
	aml_dword(a, len);
}

void aml_res_end(struct aml *a)
{
	aml_byte(a, RES_END);
	aml_byte(a, 0); /* checksum 0: "treat as valid" */
}
