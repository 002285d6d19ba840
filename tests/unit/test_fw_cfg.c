// SPDX-License-Identifier: BSD-2-Clause
/*
 * fw_cfg: selectors, the data port, the file directory, DMA with good and hostile requests,
 * snapshot identity and refusals; the ACPI table loader script and etc/e820 of firmware.c.
 */
#include <endian.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "arch/x86/acpi.h"
#include "arch/x86/e820.h"
#include "arch/x86/firmware.h"
#include "config.h"
#include "dev/pc/fw_cfg.h"
#include "dev/pc/pm.h"
#include "devsnap.h"
#include "vm.h"

#define RAM (16 * MiB)
#define DESC 0x1000 /* where the tests put DMA descriptors */
#define BUF 0x2000

struct fx {
	struct vm vm;
	uint8_t *ram;
	struct fw_cfg *fc;
	struct dev *dev;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	char err[256];

	vm_init_bare(&f->vm, true);
	f->ram = calloc(1, RAM);
	f->vm.mem[0] = (struct mem_region){ .gpa = 0, .size = RAM, .hva = f->ram };
	f->vm.nmem = 1;
	f->vm.ram_size = RAM;
	f->vm.ncpus = 1;
	f->fc = fw_cfg_create(&f->vm, err, sizeof(err));
	assert_non_null(f->fc);
	f->dev = f->vm.devs;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	vm_destroy(&f->vm);
	free(f->ram);
	free(f);
	return 0;
}

static void sel(struct fx *f, uint16_t key)
{
	uint8_t b[2] = { (uint8_t)key, (uint8_t)(key >> 8) };

	assert_true(bus_access(&f->vm.pio, FW_CFG_PORT_SEL, b, 2, true));
}

static uint8_t rd(struct fx *f)
{
	uint8_t b = 0xAA;

	assert_true(bus_access(&f->vm.pio, FW_CFG_PORT_DATA, &b, 1, false));
	return b;
}

static void rd_n(struct fx *f, void *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		((uint8_t *)p)[i] = rd(f);
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* Put a descriptor at @desc in RAM and start it: high dword, then low dword. */
static uint32_t dma(struct fx *f, uint64_t desc, uint32_t control, uint32_t len, uint64_t addr)
{
	uint8_t *d = f->ram + desc, hi[4], lo[4];

	put_be32(d, control);
	put_be32(d + 4, len);
	put_be32(d + 8, (uint32_t)(addr >> 32));
	put_be32(d + 12, (uint32_t)addr);
	put_be32(hi, (uint32_t)(desc >> 32));
	put_be32(lo, (uint32_t)desc);
	bus_access(&f->vm.pio, FW_CFG_PORT_DMA, hi, 4, true);
	bus_access(&f->vm.pio, FW_CFG_PORT_DMA + 4, lo, 4, true);
	return be32(d);
}

static void test_signature_and_id(void **state)
{
	struct fx *f = *state;
	uint8_t sig[5] = { 0 }, id[4], d[8];

	/* Selected at reset: the signature. */
	rd_n(f, sig, 4);
	assert_string_equal((char *)sig, "QEMU");
	assert_int_equal(rd(f), 0); /* past the end: zeros */
	sel(f, FW_CFG_ID);
	rd_n(f, id, 4);
	assert_int_equal(id[0], FW_CFG_ID_TRADITIONAL | FW_CFG_ID_DMA);
	/* The DMA register reads as "QEMU CFG", in any width. */
	assert_true(bus_access(&f->vm.pio, FW_CFG_PORT_DMA, d, 8, false));
	assert_memory_equal(d, "QEMU CFG", 8);
	assert_true(bus_access(&f->vm.pio, FW_CFG_PORT_DMA + 4, d, 4, false));
	assert_memory_equal(d, " CFG", 4);
	/* An unknown selector reads zeros; reselecting rewinds. */
	sel(f, 0x1234);
	assert_int_equal(rd(f), 0);
	sel(f, FW_CFG_SIGNATURE);
	assert_int_equal(rd(f), 'Q');
	sel(f, FW_CFG_SIGNATURE | 0x4000); /* the old write channel bit is ignored */
	assert_int_equal(rd(f), 'Q');
}

static void test_file_directory(void **state)
{
	struct fx *f = *state;
	uint8_t dir[4 + 2 * 64], b[3];
	char name[80];

	assert_int_equal(fw_cfg_add_file(f->fc, "etc/one", "abc", 3), 0);
	assert_int_equal(fw_cfg_add_file(f->fc, "etc/two", "xy", 2), 0);
	assert_int_equal(fw_cfg_add_file(f->fc, "etc/one", "abc", 3), -EEXIST);
	memset(name, 'n', sizeof(name));
	name[FW_CFG_NAME_LEN - 1] = '\0'; /* 55 characters and the NUL fit */
	assert_int_equal(fw_cfg_add_file(f->fc, name, "", 0), 0);
	name[FW_CFG_NAME_LEN - 1] = 'n';
	name[FW_CFG_NAME_LEN] = '\0'; /* 56 do not */
	assert_int_equal(fw_cfg_add_file(f->fc, name, "", 0), -EINVAL);
	assert_int_equal(fw_cfg_add_item(f->fc, FW_CFG_FILE_DIR, "x", 1), -EINVAL);
	assert_int_equal(fw_cfg_add_item(f->fc, FW_CFG_FILE_FIRST, "x", 1), -EINVAL);
	sel(f, FW_CFG_FILE_DIR);
	rd_n(f, dir, sizeof(dir));
	assert_int_equal(be32(dir), 3);
	assert_int_equal(be32(dir + 4), 3);
	assert_int_equal(dir[8] << 8 | dir[9], FW_CFG_FILE_FIRST);
	assert_string_equal((char *)dir + 12, "etc/one");
	assert_int_equal(be32(dir + 68), 2);
	assert_int_equal(dir[72] << 8 | dir[73], FW_CFG_FILE_FIRST + 1);
	assert_string_equal((char *)dir + 76, "etc/two");
	sel(f, FW_CFG_FILE_FIRST + 1);
	rd_n(f, b, 3);
	assert_memory_equal(b, "xy\0", 3);
}

static void test_dma_read_skip_select(void **state)
{
	struct fx *f = *state;
	uint8_t *buf = f->ram + BUF;

	assert_int_equal(fw_cfg_add_file(f->fc, "f", "0123456789", 10), 0);
	memset(buf, 0xEE, 32);
	/* Select and read 4 bytes, skip 2, read the rest and 4 more (zeros past the end). */
	assert_int_equal(dma(f, DESC, FW_CFG_FILE_FIRST << 16 | FW_CFG_DMA_SELECT | FW_CFG_DMA_READ,
			     4, BUF),
			 0);
	assert_memory_equal(buf, "0123", 4);
	assert_int_equal(dma(f, DESC, FW_CFG_DMA_SKIP, 2, 0), 0);
	assert_int_equal(dma(f, DESC, FW_CFG_DMA_READ, 8, BUF + 4), 0);
	assert_memory_equal(buf + 4, "6789\0\0\0\0", 8);
	assert_int_equal(buf[12], 0xEE);
	/* The port reads on from where DMA left off: past the end. */
	assert_int_equal(rd(f), 0);
	/* Writes fail: the item is not writable. */
	assert_int_equal(dma(f, DESC,
			     FW_CFG_FILE_FIRST << 16 | FW_CFG_DMA_SELECT | FW_CFG_DMA_WRITE, 4,
			     BUF),
			 FW_CFG_DMA_ERROR);
	/* No operation bit: nothing moves, no error. */
	assert_int_equal(dma(f, DESC, 0, 4, BUF), 0);
	/* A qword write at 0x514 starts a transfer too. */
	uint8_t q[8];

	put_be32(f->ram + DESC, FW_CFG_SIGNATURE << 16 | FW_CFG_DMA_SELECT | FW_CFG_DMA_READ);
	put_be32(f->ram + DESC + 4, 4);
	put_be32(f->ram + DESC + 8, 0);
	put_be32(f->ram + DESC + 12, BUF + 20);
	put_be32(q, 0);
	put_be32(q + 4, DESC);
	bus_access(&f->vm.pio, FW_CFG_PORT_DMA, q, 8, true);
	assert_int_equal(be32(f->ram + DESC), 0);
	assert_memory_equal(buf + 20, "QEMU", 4);
}

/*
 * A key nothing answers to: DMA reads give zeros, writes fail, the data port reads 0.  The
 * ports between the data port and the DMA address read 0; a DMA address write of a width or
 * at an offset the interface does not have starts nothing.
 */
static void test_dma_unknown_key_and_odd_ports(void **state)
{
	struct fx *f = *state;
	uint8_t *buf = f->ram + BUF, b[4] = { 0xAA, 0xAA, 0xAA, 0xAA }, hi[4] = { 0 };

	memset(buf, 0xEE, 16);
	assert_int_equal(dma(f, DESC, 0x3ABC << 16 | FW_CFG_DMA_SELECT | FW_CFG_DMA_READ, 8, BUF),
			 0);
	assert_memory_equal(buf, "\0\0\0\0\0\0\0\0", 8);
	assert_int_equal(buf[8], 0xEE);
	assert_int_equal(dma(f, DESC, FW_CFG_DMA_WRITE, 4, BUF), FW_CFG_DMA_ERROR);
	assert_int_equal(rd(f), 0);
	assert_true(bus_access(&f->vm.pio, FW_CFG_PORT_DATA + 1, b, 2, false));
	assert_int_equal(b[0] | b[1], 0);
	/* 0x512: not a port of the interface. */
	memset(b, 0xAA, sizeof(b));
	bus_access(&f->vm.pio, FW_CFG_PORT_SEL + 2, b, 1, false);
	assert_int_equal(b[0], 0);
	/* A descriptor is there, but a 4-byte write at 0x516 or a 2-byte one at 0x518 is not
	 * the address's low half: it does not run. */
	put_be32(f->ram + DESC, FW_CFG_SIGNATURE << 16 | FW_CFG_DMA_SELECT | FW_CFG_DMA_READ);
	put_be32(f->ram + DESC + 4, 4);
	put_be32(f->ram + DESC + 8, 0);
	put_be32(f->ram + DESC + 12, BUF);
	bus_access(&f->vm.pio, FW_CFG_PORT_DMA, hi, 4, true);
	put_be32(b, DESC);
	bus_access(&f->vm.pio, FW_CFG_PORT_DMA + 2, b, 4, true);
	bus_access(&f->vm.pio, FW_CFG_PORT_DMA + 4, b + 2, 2, true);
	assert_int_equal(be32(f->ram + DESC) >> 16, FW_CFG_SIGNATURE);
	assert_int_equal(buf[0], 0);
	bus_access(&f->vm.pio, FW_CFG_PORT_DMA + 4, b, 4, true);
	assert_int_equal(be32(f->ram + DESC), 0);
	assert_memory_equal(buf, "QEMU", 4);
}

static uint8_t seen[16];
static uint32_t seen_len;
static unsigned seen_calls;

static void on_write(void *opaque, const uint8_t *data, uint32_t len)
{
	assert_ptr_equal(opaque, &seen_calls);
	memcpy(seen, data, len < sizeof(seen) ? len : sizeof(seen));
	seen_len = len;
	seen_calls++;
}

/* A writable file takes DMA writes inside it, its owner sees each; nothing else is writable. */
static void test_dma_write(void **state)
{
	struct fx *f = *state;
	const uint32_t key = FW_CFG_FILE_FIRST + 1;
	uint8_t got[8];

	seen_calls = 0;
	assert_int_equal(fw_cfg_add_file(f->fc, "ro", "abcd", 4), 0);
	assert_int_equal(fw_cfg_add_file_writable(f->fc, "rw", "\0\0\0\0\0\0\0\0", 8, on_write,
						  &seen_calls),
			 0);
	assert_int_equal(fw_cfg_add_file_writable(f->fc, "nofn", "x", 1, NULL, NULL), -EINVAL);
	memcpy(f->ram + BUF, "\x11\x22\x33\x44\x55\x66\x77\x88", 8);
	assert_int_equal(dma(f, DESC, key << 16 | FW_CFG_DMA_SELECT | FW_CFG_DMA_WRITE, 8, BUF), 0);
	assert_int_equal(seen_calls, 1);
	assert_int_equal(seen_len, 8);
	assert_memory_equal(seen, "\x11\x22\x33\x44\x55\x66\x77\x88", 8);
	/* Skip then write, as SeaBIOS does for an offset: only the tail changes. */
	memcpy(f->ram + BUF, "\xAA\xBB", 2);
	assert_int_equal(dma(f, DESC, key << 16 | FW_CFG_DMA_SELECT | FW_CFG_DMA_SKIP, 6, 0), 0);
	assert_int_equal(dma(f, DESC, FW_CFG_DMA_WRITE, 2, BUF), 0);
	assert_memory_equal(seen, "\x11\x22\x33\x44\x55\x66\xAA\xBB", 8);
	/* The guest reads back what it wrote. */
	sel(f, (uint16_t)key);
	rd_n(f, got, 8);
	assert_memory_equal(got, seen, 8);
	/* Past the end, from outside RAM, or into a read-only item: ERROR, no call. */
	assert_int_equal(dma(f, DESC, key << 16 | FW_CFG_DMA_SELECT | FW_CFG_DMA_WRITE, 9, BUF),
			 FW_CFG_DMA_ERROR);
	assert_int_equal(dma(f, DESC, key << 16 | FW_CFG_DMA_SELECT | FW_CFG_DMA_SKIP, 4, 0), 0);
	assert_int_equal(dma(f, DESC, FW_CFG_DMA_WRITE, 5, BUF), FW_CFG_DMA_ERROR);
	assert_int_equal(dma(f, DESC, key << 16 | FW_CFG_DMA_SELECT | FW_CFG_DMA_WRITE, 8, RAM - 4),
			 FW_CFG_DMA_ERROR);
	assert_int_equal(dma(f, DESC, key << 16 | FW_CFG_DMA_SELECT | FW_CFG_DMA_WRITE, 8,
			     0xFFFFFFFFFFFFFFFCULL),
			 FW_CFG_DMA_ERROR);
	assert_int_equal(dma(f, DESC,
			     FW_CFG_FILE_FIRST << 16 | FW_CFG_DMA_SELECT | FW_CFG_DMA_WRITE, 1,
			     BUF),
			 FW_CFG_DMA_ERROR);
	assert_int_equal(dma(f, DESC, FW_CFG_SIGNATURE << 16 | FW_CFG_DMA_SELECT | FW_CFG_DMA_WRITE,
			     1, BUF),
			 FW_CFG_DMA_ERROR);
	assert_int_equal(seen_calls, 2);
	sel(f, FW_CFG_FILE_FIRST);
	rd_n(f, got, 4);
	assert_memory_equal(got, "abcd", 4);
}

/*
 * A snapshot keeps what the guest wrote; the file stays writable in the VM that loads it
 * because that VM made it writable, not because the snapshot says so.
 */
static void test_dma_write_snapshot(void **state)
{
	struct fx *f = *state, *g;
	const uint32_t key = FW_CFG_FILE_FIRST;
	struct sstream s;
	uint8_t got[4];

	seen_calls = 0;
	assert_int_equal(fw_cfg_add_file_writable(f->fc, "rw", "\0\0\0\0", 4, on_write,
						  &seen_calls),
			 0);
	memcpy(f->ram + BUF, "WXYZ", 4);
	assert_int_equal(dma(f, DESC, key << 16 | FW_CFG_DMA_SELECT | FW_CFG_DMA_WRITE, 4, BUF), 0);
	ss_init_save(&s);
	assert_int_equal(f->dev->ops->save(f->dev, &s), 0);
	setup((void **)&g);
	assert_int_equal(fw_cfg_add_file_writable(g->fc, "rw", "\0\0\0\0", 4, on_write,
						  &seen_calls),
			 0);
	assert_int_equal(devsnap_load(g->dev, s.buf, s.len, 1), 0);
	sel(g, (uint16_t)key);
	rd_n(g, got, 4);
	assert_memory_equal(got, "WXYZ", 4);
	assert_int_equal(seen_calls, 1); /* a load tells no one */
	memcpy(g->ram + BUF, "abcd", 4);
	assert_int_equal(dma(g, DESC, key << 16 | FW_CFG_DMA_SELECT | FW_CFG_DMA_WRITE, 4, BUF), 0);
	assert_int_equal(seen_calls, 2);
	teardown((void **)&g);
	/* Into a VM where no file of that name is writable: the saved one is read-only. */
	setup((void **)&g);
	assert_int_equal(devsnap_load(g->dev, s.buf, s.len, 1), 0);
	assert_int_equal(dma(g, DESC, key << 16 | FW_CFG_DMA_SELECT | FW_CFG_DMA_WRITE, 4, BUF),
			 FW_CFG_DMA_ERROR);
	assert_int_equal(seen_calls, 2);
	teardown((void **)&g);
	ss_free(&s);
}

static void test_dma_hostile(void **state)
{
	struct fx *f = *state;
	uint8_t before[64];

	assert_int_equal(fw_cfg_add_file(f->fc, "f", "0123456789", 10), 0);
	/* Destination outside RAM, or wrapping around: ERROR, RAM untouched. */
	memcpy(before, f->ram + BUF, sizeof(before));
	assert_int_equal(dma(f, DESC, FW_CFG_FILE_FIRST << 16 | FW_CFG_DMA_SELECT | FW_CFG_DMA_READ,
			     10, RAM - 4),
			 FW_CFG_DMA_ERROR);
	assert_int_equal(dma(f, DESC, FW_CFG_DMA_SELECT | FW_CFG_DMA_READ, 16,
			     0xFFFFFFFFFFFFFFF8ULL),
			 FW_CFG_DMA_ERROR);
	assert_int_equal(dma(f, DESC, FW_CFG_DMA_SELECT | FW_CFG_DMA_READ, 0xFFFFFFFF, BUF),
			 FW_CFG_DMA_ERROR);
	assert_memory_equal(before + 4, f->ram + BUF + 4, sizeof(before) - 4);
	/* A huge skip is fine: it moves nothing. */
	assert_int_equal(dma(f, DESC, FW_CFG_FILE_FIRST << 16 | FW_CFG_DMA_SELECT | FW_CFG_DMA_SKIP,
			     0xFFFFFFFF, 0),
			 0);
	/* A descriptor outside RAM: nothing happens, nothing crashes. */
	uint8_t hi[4], lo[4];

	put_be32(hi, 0xFFFFFFFF);
	put_be32(lo, 0xFFFFFFF8);
	bus_access(&f->vm.pio, FW_CFG_PORT_DMA, hi, 4, true);
	bus_access(&f->vm.pio, FW_CFG_PORT_DMA + 4, lo, 4, true);
	/* The descriptor straddling the end of RAM is refused too. */
	put_be32(hi, 0);
	put_be32(lo, RAM - 8);
	bus_access(&f->vm.pio, FW_CFG_PORT_DMA, hi, 4, true);
	bus_access(&f->vm.pio, FW_CFG_PORT_DMA + 4, lo, 4, true);
	/* Odd-sized and misplaced accesses are ignored. */
	uint8_t b[2] = { 1, 2 };

	bus_access(&f->vm.pio, FW_CFG_PORT_DMA + 1, b, 2, true);
	bus_access(&f->vm.pio, FW_CFG_PORT_DATA, b, 1, true);
	bus_access(&f->vm.pio, FW_CFG_PORT_SEL, b, 1, true);
	sel(f, FW_CFG_SIGNATURE);
	assert_int_equal(rd(f), 'Q');
	/* The selector reads 0 as a word. */
	b[0] = b[1] = 0xff;
	bus_access(&f->vm.pio, FW_CFG_PORT_SEL, b, 2, false);
	assert_int_equal(b[0] | b[1], 0);
	/* The DMA register reads "QEMU CFG" (big endian), whole or in parts. */
	{
		uint8_t sig[8];

		bus_access(&f->vm.pio, FW_CFG_PORT_DMA, sig, 4, false);
		bus_access(&f->vm.pio, FW_CFG_PORT_DMA + 4, sig + 4, 4, false);
		assert_memory_equal(sig, "QEMU CFG", 8);
	}
	/* One 64-bit write of the descriptor's address runs it too (a SELECT only: no data). */
	{
		uint8_t a8[8] = { 0, 0, 0, 0, 0, 0, (uint8_t)(DESC >> 8), (uint8_t)DESC };
		uint8_t *d = f->ram + DESC;

		put_be32(d, FW_CFG_FILE_FIRST << 16 | FW_CFG_DMA_SELECT);
		put_be32(d + 4, 0);
		put_be32(d + 8, 0);
		put_be32(d + 12, 0);
		bus_access(&f->vm.pio, FW_CFG_PORT_DMA, a8, 8, true);
		assert_int_equal(be32(d), 0); /* done, no error */
		assert_int_equal(rd(f), '0'); /* "f" is selected */
		put_be32(d, FW_CFG_DMA_READ);
		put_be32(d + 4, 3);
		put_be32(d + 12, BUF);
		bus_access(&f->vm.pio, FW_CFG_PORT_DMA, a8, 8, true);
		assert_int_equal(be32(d), 0);
		assert_memory_equal(f->ram + BUF, "123", 3);
	}
}

static void test_snapshot(void **state)
{
	struct fx *f = *state;
	uint8_t *a, *b, *bad;
	size_t alen, blen;

	assert_int_equal(fw_cfg_add_file(f->fc, "etc/x", "hello", 5), 0);
	sel(f, FW_CFG_FILE_FIRST);
	rd(f);
	rd(f);
	a = devsnap_save_copy(f->dev, &alen);
	sel(f, FW_CFG_SIGNATURE);
	assert_int_equal(devsnap_load(f->dev, a, alen, 1), 0);
	/* Where the guest was: two bytes into etc/x. */
	assert_int_equal(rd(f), 'l');
	b = devsnap_save_copy(f->dev, &blen);
	assert_int_equal(alen, blen);
	/* save -> load -> save identity after moving on by one byte and back */
	sel(f, FW_CFG_FILE_FIRST);
	rd(f);
	rd(f);
	free(b);
	b = devsnap_save_copy(f->dev, &blen);
	assert_memory_equal(a, b, alen);
	/* Truncated, and a count beyond the limit: refused, nothing changed. */
	devsnap_expect_refused(f->dev, a, alen - 1, 1);
	bad = malloc(alen);
	memcpy(bad, a, alen);
	bad[0] = 0xFF;
	bad[1] = 0xFF;
	devsnap_expect_refused(f->dev, bad, alen, 1);
	/* An offset past the selected item: the last u64 is the DMA address, before it u32. */
	memcpy(bad, a, alen);
	bad[alen - 12] = 0x7F;
	devsnap_expect_refused(f->dev, bad, alen, 1);
	/* An unterminated name. */
	memcpy(bad, a, alen);
	memset(bad + 4 + 2, 'z', FW_CFG_NAME_LEN); /* first item's name */
	devsnap_expect_refused(f->dev, bad, alen, 1);
	free(a);
	free(b);
	free(bad);
}

/*
 * A snapshot's selector state must match its items: the selected flag against the key, an
 * offset with nothing selected, and a key that two items claim are each refused; no item
 * selected at offset 0 is a state the device has after reset, and loads.
 */
static void test_snapshot_selector_checks(void **state)
{
	struct fx *f = *state;
	uint8_t *a, *bad;
	size_t alen, sel_at, flag_at, off_at, second;
	uint32_t len0;

	assert_int_equal(fw_cfg_add_file(f->fc, "etc/y", "abc", 3), 0);
	sel(f, FW_CFG_SIGNATURE);
	rd(f);
	a = devsnap_save_copy(f->dev, &alen);
	bad = malloc(alen);
	/* The tail: next_file u16, sel u16, selected u8, off u32, dma_addr u64. */
	off_at = alen - 12;
	flag_at = alen - 13;
	sel_at = alen - 15;
	assert_int_equal(a[sel_at] | a[sel_at + 1] << 8, FW_CFG_SIGNATURE);
	assert_int_equal(a[flag_at], 1);
	assert_int_equal(a[off_at], 1);
	memcpy(bad, a, alen);
	bad[flag_at] = 0; /* not selected, yet the key is an item */
	devsnap_expect_refused(f->dev, bad, alen, 1);
	bad[sel_at] = 0x77;
	bad[sel_at + 1] = 0x37; /* no such item: not selected is right, the offset is not */
	devsnap_expect_refused(f->dev, bad, alen, 1);
	bad[off_at] = 0;
	assert_int_equal(devsnap_load(f->dev, bad, alen, 1), 0);
	assert_int_equal(rd(f), 0); /* nothing selected reads 0 */
	memcpy(bad, a, alen);
	bad[sel_at] = 0x77;
	bad[sel_at + 1] = 0x37; /* selected, but no item has the key */
	devsnap_expect_refused(f->dev, bad, alen, 1);
	/* The second item claims the first one's key. */
	memcpy(bad, a, alen);
	memcpy(&len0, a + 4 + 2 + FW_CFG_NAME_LEN, 4);
	second = 4 + 2 + FW_CFG_NAME_LEN + 4 + le32toh(len0);
	assert_true(second + 2 < alen);
	memcpy(bad + second, a + 4, 2);
	devsnap_expect_refused(f->dev, bad, alen, 1);
	assert_int_equal(devsnap_load(f->dev, a, alen, 1), 0);
	free(a);
	free(bad);
}

/* ---- firmware.c ---- */

static uint64_t le(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

/* What the script's WRITE_POINTER (at most one) had firmware write, and where. */
static uint64_t written_ptr;
static char written_file[LOADER_FILE_LEN];

/* Run a loader script as SeaBIOS would, with the tables at @tables_at and RSDP at @rsdp_at. */
static void run_loader(const uint8_t *script, long len, uint8_t *rsdp, uint8_t *tables,
		       uint64_t rsdp_at, uint64_t tables_at)
{
	written_ptr = 0;
	written_file[0] = '\0';
	for (long off = 0; off < len; off += LOADER_ENTRY_SIZE) {
		const uint8_t *e = script + off;
		uint32_t cmd = (uint32_t)le(e, 4);
		const char *file = (const char *)e + 4;
		uint8_t *blob = !strcmp(file, "etc/acpi/rsdp") ? rsdp : tables;

		if (cmd == LOADER_ALLOCATE) {
			assert_true(!strcmp(file, "etc/acpi/rsdp") ||
				    !strcmp(file, "etc/acpi/tables"));
		} else if (cmd == LOADER_ADD_POINTER) {
			uint32_t at = (uint32_t)le(e + 4 + 2 * LOADER_FILE_LEN, 4);
			unsigned size = e[4 + 2 * LOADER_FILE_LEN + 4];
			uint64_t v = le(blob + at, size) + tables_at;

			assert_string_equal((char *)e + 4 + LOADER_FILE_LEN, "etc/acpi/tables");
			for (unsigned i = 0; i < size; i++)
				blob[at + i] = (uint8_t)(v >> (8 * i));
		} else if (cmd == LOADER_ADD_CHECKSUM) {
			uint32_t res = (uint32_t)le(e + 4 + LOADER_FILE_LEN, 4);
			uint32_t start = (uint32_t)le(e + 8 + LOADER_FILE_LEN, 4);
			uint32_t n = (uint32_t)le(e + 12 + LOADER_FILE_LEN, 4);
			uint8_t sum = 0;

			for (uint32_t i = 0; i < n; i++)
				sum += blob[start + i];
			blob[res] -= sum;
		} else if (cmd == LOADER_WRITE_POINTER) {
			/* dest file, src file, dst_offset, src_offset, size: at the end. */
			assert_string_equal((char *)e + 4 + LOADER_FILE_LEN, "etc/acpi/tables");
			assert_int_equal(le(e + 4 + 2 * LOADER_FILE_LEN, 4), 0);
			assert_int_equal(e[12 + 2 * LOADER_FILE_LEN], 8);
			assert_int_equal(off + LOADER_ENTRY_SIZE, len);
			snprintf(written_file, sizeof(written_file), "%s", file);
			written_ptr = tables_at + le(e + 8 + 2 * LOADER_FILE_LEN, 4);
		} else {
			fail_msg("unknown loader command %u", cmd);
		}
	}
	(void)rsdp_at;
}

static uint8_t sum8(const uint8_t *p, size_t n)
{
	uint8_t s = 0;

	while (n--)
		s += *p++;
	return s;
}

static void test_acpi_loader(void **state)
{
	struct fx *f = *state;
	uint8_t *img = calloc(1, 128 * 1024), *script = calloc(64, LOADER_ENTRY_SIZE);
	uint8_t rsdp[36];
	const uint64_t at = 0x7F00000;
	char err[256];
	size_t len = 0;
	long slen;

	f->vm.cfg = NULL;
	assert_int_equal(acpi_build_image(&f->vm, img, 128 * 1024, &len, err, sizeof(err)), 0);
	slen = firmware_acpi_loader(img, len, script, 64);
	assert_true(slen > 0 && slen % LOADER_ENTRY_SIZE == 0);
	memcpy(rsdp, img, 36);
	run_loader(script, slen, rsdp, img, 0xF0000, at);
	/* Every table reached from the relocated RSDP has a right checksum and is in place. */
	assert_int_equal(sum8(rsdp, 20), 0);
	assert_int_equal(sum8(rsdp, 36), 0);
	uint64_t rsdt = le(rsdp + 16, 4), xsdt = le(rsdp + 24, 8);

	assert_true(rsdt >= at && rsdt < at + len && xsdt >= at && xsdt < at + len);
	const uint8_t *r = img + (rsdt - at), *x = img + (xsdt - at);

	assert_memory_equal(r, "RSDT", 4);
	assert_int_equal(sum8(r, le(r + 4, 4)), 0);
	assert_int_equal(sum8(x, le(x + 4, 4)), 0);
	for (uint32_t i = 36; i < le(r + 4, 4); i += 4) {
		uint64_t t = le(r + i, 4);
		const uint8_t *tab = img + (t - at);

		assert_true(t >= at && t < at + len);
		assert_int_equal(sum8(tab, le(tab + 4, 4)), 0);
		assert_int_equal(le(x + 36 + 2 * (i - 36), 8), t);
		if (!memcmp(tab, "FACP", 4)) {
			uint64_t facs = le(tab + 36, 4), dsdt = le(tab + 40, 4);

			assert_memory_equal(img + (facs - at), "FACS", 4);
			assert_int_equal(facs % 64, 0);
			/* Firmware tells khyve where the FACS went. */
			assert_string_equal(written_file, "etc/khyve/facs-addr");
			assert_int_equal(written_ptr, facs);
			assert_memory_equal(img + (dsdt - at), "DSDT", 4);
			assert_int_equal(le(tab + 140, 8), dsdt);
			assert_int_equal(sum8(img + (dsdt - at), le(img + (dsdt - at) + 4, 4)), 0);
		}
	}
	/* A broken image is refused, never followed out of bounds. */
	assert_int_equal(acpi_build_image(&f->vm, img, 128 * 1024, &len, err, sizeof(err)), 0);
	img[16] = 0xF0; /* RSDT pointer past the image */
	img[17] = 0xFF;
	assert_int_equal(firmware_acpi_loader(img, len, script, 64), -EINVAL);
	assert_int_equal(firmware_acpi_loader(img, 10, script, 64), -EINVAL);
	assert_int_equal(acpi_build_image(&f->vm, img, 128 * 1024, &len, err, sizeof(err)), 0);
	assert_int_equal(firmware_acpi_loader(img, len, script, 3), -ENOSPC);
	free(img);
	free(script);
}

/* The fw_cfg key of file @name, from the directory. */
static uint16_t file_key(struct fx *f, const char *name)
{
	uint8_t hdr[4], e[64];
	uint32_t n;

	sel(f, FW_CFG_FILE_DIR);
	rd_n(f, hdr, 4);
	n = be32(hdr);
	for (uint32_t i = 0; i < n; i++) {
		rd_n(f, e, 64);
		if (!strcmp((char *)e + 8, name))
			return (uint16_t)(e[4] << 8 | e[5]);
	}
	fail_msg("no fw_cfg file %s", name);
	return 0;
}

/*
 * firmware_setup's machine: once firmware writes where it put the FACS (the loader's
 * WRITE_POINTER), khyve's side of the global lock works there; a value that is no FACS in
 * RAM is ignored.
 */
static void test_facs_from_firmware(void **state)
{
	struct fx g = { 0 };
	struct config cfg;
	struct dev *pm;
	char err[256];
	uint16_t key;
	(void)state;

	vm_init_bare(&g.vm, true);
	g.ram = calloc(1, RAM);
	g.vm.mem[0] = (struct mem_region){ .gpa = 0, .size = RAM, .hva = g.ram };
	g.vm.nmem = 1;
	g.vm.ram_size = RAM;
	g.vm.ncpus = 1;
	config_init(&cfg);
	g.vm.cfg = &cfg;
	pm = pm_create(&g.vm, err, sizeof(err));
	assert_non_null(pm);
	if (firmware_setup(&g.vm, err, sizeof(err)))
		fail_msg("firmware_setup: %s", err);
	key = file_key(&g, "etc/khyve/facs-addr");
	assert_int_equal(pm_global_lock_acquire(pm), -ENODEV); /* no FACS known yet */
	/* Not a FACS there, then an unaligned one, then outside RAM: ignored. */
	const uint64_t bad[] = { 0x10000, 0x20010, RAM + 0x1000 };

	memcpy(g.ram + 0x20010, "FACS", 4);
	for (unsigned i = 0; i < 3; i++) {
		memcpy(g.ram + BUF, &bad[i], 8);
		assert_int_equal(dma(&g, DESC,
				     (uint32_t)key << 16 | FW_CFG_DMA_SELECT | FW_CFG_DMA_WRITE, 8,
				     BUF),
				 0);
		assert_int_equal(pm_global_lock_acquire(pm), -ENODEV);
	}
	/* A FACS where firmware put it. */
	const uint64_t facs = 0x30000;

	memcpy(g.ram + facs, "FACS", 4);
	g.ram[facs + 4] = 64;
	memcpy(g.ram + BUF, &facs, 8);
	assert_int_equal(dma(&g, DESC, (uint32_t)key << 16 | FW_CFG_DMA_SELECT | FW_CFG_DMA_WRITE,
			     8, BUF),
			 0);
	assert_int_equal(pm_global_lock_acquire(pm), 0);
	assert_int_equal(le(g.ram + facs + 16, 4), GL_OWNED);
	assert_int_equal(pm_global_lock_release(pm), 0);
	assert_int_equal(le(g.ram + facs + 16, 4), 0);
	vm_destroy(&g.vm);
	config_free(&cfg);
	free(g.ram);
}

static void test_e820(void **state)
{
	uint8_t out[16 * 20];
	size_t len;
	bool low = false, high = false, rom = false, ecam = false;

	assert_int_equal(firmware_e820(5 * GiB, 256 * KiB, out, sizeof(out), &len), 0);
	assert_int_equal(len % 20, 0);
	for (size_t i = 0; i < len; i += 20) {
		uint64_t a = le(out + i, 8), n = le(out + i + 8, 8);
		uint32_t t = (uint32_t)le(out + i + 16, 4);

		if (i)
			assert_true(a >= le(out + i - 20, 8) + le(out + i - 12, 8));
		low |= a == 0 && n == LOWMEM_LIMIT && t == E820_RAM;
		high |= a == HIGHMEM_BASE && n == 2 * GiB && t == E820_RAM;
		rom |= a == HIGHMEM_BASE - 256 * KiB && t == E820_RESERVED;
		ecam |= a == PCI_ECAM_BASE && t == E820_RESERVED;
	}
	assert_true(low && high && rom && ecam);
	assert_int_equal(firmware_e820(5 * GiB, 0, out, 40, &len), -ENOSPC);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_signature_and_id, setup, teardown),
		cmocka_unit_test_setup_teardown(test_file_directory, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dma_read_skip_select, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dma_unknown_key_and_odd_ports, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_dma_hostile, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dma_write, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dma_write_snapshot, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_selector_checks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_acpi_loader, setup, teardown),
		cmocka_unit_test_setup_teardown(test_e820, setup, teardown),
		cmocka_unit_test(test_facs_from_firmware),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
