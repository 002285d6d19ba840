// SPDX-License-Identifier: BSD-2-Clause
/*
 * The boot ROM and the BIOS area: PAM modes as the i440FX host bridge sets them (through its
 * configuration space), the ROM alias, PAM-aware device writes, the variable-store flash
 * commands, snapshot identity and refusals.  No KVM: every access goes through the MMIO
 * handlers, which apply the same rules as the memory slots.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "dev/pc/bootrom.h"
#include "dev/pci/pci.h"
#include "devsnap.h"
#include "vm.h"

#define RAM (16 * MiB)
#define ROM_SIZE (64 * KiB)
#define VARS_SIZE (8 * KiB)

struct fx {
	struct vm vm;
	struct config cfg;
	uint8_t *ram;
	char rom[64], vars[64];
};

static void write_file(const char *path, size_t n, uint8_t seed)
{
	FILE *f = fopen(path, "wb");

	for (size_t i = 0; i < n; i++)
		fputc((int)(uint8_t)(seed + i * 7), f);
	fclose(f);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	char err[256];

	snprintf(f->rom, sizeof(f->rom), "/tmp/khyve-test-rom.%d", getpid());
	snprintf(f->vars, sizeof(f->vars), "/tmp/khyve-test-vars.%d", getpid());
	write_file(f->rom, ROM_SIZE, 1);
	write_file(f->vars, VARS_SIZE, 0);
	vm_init_bare(&f->vm, true);
	config_init(&f->cfg);
	config_set(&f->cfg, "lpc.bootrom", f->rom);
	config_set(&f->cfg, "lpc.bootvars", f->vars);
	config_set(&f->cfg, "pci.0.0.0.device", "hostbridge");
	f->vm.cfg = &f->cfg;
	f->ram = calloc(1, RAM);
	f->vm.mem[0] = (struct mem_region){ .gpa = 0, .size = RAM, .hva = f->ram };
	f->vm.nmem = 1;
	f->vm.ram_size = RAM;
	assert_int_equal(bootrom_create(&f->vm, false, err, sizeof(err)), 0);
	assert_int_equal(bootrom_map(&f->vm), 0);
	assert_int_equal(pci_setup(&f->vm, err, sizeof(err)), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	vm_destroy(&f->vm);
	config_free(&f->cfg);
	unlink(f->rom);
	unlink(f->vars);
	free(f->ram);
	free(f);
	return 0;
}

static uint8_t rom_byte(uint64_t off)
{
	return (uint8_t)(1 + off * 7);
}

static uint8_t vm_rd8(struct vm *vm, uint64_t gpa)
{
	uint8_t b = 0x5A;

	bus_access(&vm->mmio, gpa, &b, 1, false);
	return b;
}

static void vm_wr8(struct vm *vm, uint64_t gpa, uint8_t v)
{
	bus_access(&vm->mmio, gpa, &v, 1, true);
}

static uint8_t rd8(struct fx *f, uint64_t gpa)
{
	return vm_rd8(&f->vm, gpa);
}

static void wr8(struct fx *f, uint64_t gpa, uint8_t v)
{
	vm_wr8(&f->vm, gpa, v);
}

/* Mechanism #1 configuration write to the host bridge. */
static void hb_write(struct fx *f, unsigned reg, uint32_t v, unsigned size)
{
	uint8_t a[4], d[4];

	io_put(a, 4, 0x80000000U | (reg & 0xFC));
	bus_access(&f->vm.pio, 0xCF8, a, 4, true);
	io_put(d, size, v);
	bus_access(&f->vm.pio, 0xCFC + (reg & 3), d, size, true);
}

static uint32_t hb_read(struct fx *f, unsigned reg, unsigned size)
{
	uint8_t a[4], d[4] = { 0 };

	io_put(a, 4, 0x80000000U | (reg & 0xFC));
	bus_access(&f->vm.pio, 0xCF8, a, 4, true);
	bus_access(&f->vm.pio, 0xCFC + (reg & 3), d, size, false);
	return (uint32_t)io_get(d, size);
}

static void test_identity_and_reset(void **state)
{
	struct fx *f = *state;

	assert_int_equal(hb_read(f, 0, 4), 0x12378086);
	assert_int_equal(hb_read(f, 0x2C, 4), 0x11001af4);
	/* At reset everything goes to PCI: the F segment shows the ROM's last 64 KiB. */
	assert_int_equal(rd8(f, 0xF0000), rom_byte(0));
	assert_int_equal(rd8(f, 0xFFFF0), rom_byte(ROM_SIZE - 16));
	/* The ROM is only 64 KiB: below it, and in the C/D segments, nothing answers. */
	assert_int_equal(rd8(f, 0xE0000), 0xFF);
	assert_int_equal(rd8(f, 0xC0000), 0xFF);
	/* Writes to the ROM are dropped. */
	f->ram[0xF0000] = 0x11;
	wr8(f, 0xF0000, 0x22);
	assert_int_equal(f->ram[0xF0000], 0x11);
	assert_int_equal(rd8(f, 0xF0000), rom_byte(0));
}

static void test_pam_modes(void **state)
{
	struct fx *f = *state;

	f->ram[0xF0000] = 0x11;
	f->ram[0xC4000] = 0x33;
	/* SeaBIOS's first step: F segment write-only to RAM (PAM0 = 0x20): copy itself down. */
	hb_write(f, 0x59, 0x20, 1);
	wr8(f, 0xF0000, 0x22);
	assert_int_equal(f->ram[0xF0000], 0x22);
	assert_int_equal(rd8(f, 0xF0000), rom_byte(0)); /* reads still from the ROM */
	/* Read/write RAM (0x30), as a dword write at 0x58 covering PAM0-PAM2. */
	hb_write(f, 0x58, 0x00333000, 4);
	assert_int_equal(hb_read(f, 0x59, 1), 0x30);
	assert_int_equal(hb_read(f, 0x5A, 1), 0x33);
	assert_int_equal(rd8(f, 0xF0000), 0x22);
	assert_int_equal(rd8(f, 0xC4000), 0x33);
	wr8(f, 0xC4000, 0x44);
	assert_int_equal(f->ram[0xC4000], 0x44);
	/* Read-only RAM (0x10): reads RAM, writes dropped. */
	hb_write(f, 0x59, 0x10, 1);
	wr8(f, 0xF0000, 0x55);
	assert_int_equal(rd8(f, 0xF0000), 0x22);
	/* Bits outside RE/WE/CE and the reserved PAM0 low nibble do not stick. */
	hb_write(f, 0x59, 0xFF, 1);
	assert_int_equal(hb_read(f, 0x59, 1), 0x70);
	/* A device write follows the same rules. */
	hb_write(f, 0x59, 0x10, 1);
	assert_false(bootrom_dma_write(&f->vm, 0xFFFF0, "x", 1));
	hb_write(f, 0x59, 0x30, 1);
	assert_true(bootrom_dma_write(&f->vm, 0xFFFF0, "x", 1));
	assert_int_equal(f->ram[0xFFFF0], 'x');
	assert_true(bootrom_dma_write(&f->vm, 0x100000, "y", 1));
	assert_false(bootrom_dma_write(&f->vm, RAM - 1, "zz", 2));
	assert_int_equal(bootrom_pam_segment(0xBFFFF), -1);
	assert_int_equal(bootrom_pam_segment(0xC0000), 0);
	assert_int_equal(bootrom_pam_segment(0xEFFFF), 11);
	assert_int_equal(bootrom_pam_segment(0xF8000), 12);
	assert_int_equal(bootrom_pam_segment(0x100000), -1);
}

static uint64_t vars_at(void)
{
	return (4ULL << 30) - ROM_SIZE - VARS_SIZE;
}

/*
 * The i440FX's other registers: SMRAM keeps only its writable bits (D_OPEN, D_CLS, D_LCK,
 * G_SMRAME) over its fixed C_BASE_SEG, DRAM timing and the rest of the chipset space take
 * writes without effect, the standard header stays pci.c's (COMMAND), and with firmware the
 * host bridge must be at 0:0.0.
 */
static void test_hostbridge_registers(void **state)
{
	struct fx *f = *state;

	assert_int_equal(hb_read(f, 0x72, 1), 0x02);
	hb_write(f, 0x72, 0xFF, 1);
	assert_int_equal(hb_read(f, 0x72, 1), 0x7A);
	hb_write(f, 0x72, 0x00, 1);
	assert_int_equal(hb_read(f, 0x72, 1), 0x02);
	hb_write(f, 0x50, 0xFFFFFFFF, 4);
	assert_int_equal(hb_read(f, 0x50, 4), 0);
	hb_write(f, 0x04, 0x0006, 2);
	assert_int_equal(hb_read(f, 0x04, 2) & 0x6, 0x6);
	/* A dword over 0x70-0x73: SMRAM takes its bits, its neighbours nothing. */
	hb_write(f, 0x70, 0xFFFFFFFF, 4);
	assert_int_equal(hb_read(f, 0x70, 4), 0x7AU << 16);
	{
		char err[256] = "";

		assert_null(
			pci_dev_add(&f->vm, 1, 0, pci_emul_find("hostbridge"), err, sizeof(err)));
		assert_non_null(strstr(err, "firmware looks for the host bridge at 0:0.0"));
	}
}

static void test_flash(void **state)
{
	struct fx *f = *state;
	uint64_t v = vars_at();
	uint8_t b;
	FILE *fp;

	/* Read array: the file.  OVMF's probe: clear status, read, read status gives 0. */
	assert_int_equal(rd8(f, v + 0x10), (uint8_t)(0x10 * 7));
	wr8(f, v + 0x10, 0x50);
	assert_int_equal(rd8(f, v + 0x10), (uint8_t)(0x10 * 7));
	wr8(f, v + 0x10, 0x70);
	assert_int_equal(rd8(f, v + 0x10), 0x00);
	wr8(f, v + 0x10, 0xFF);
	/* Program a byte: it reaches the file; status shows ready. */
	wr8(f, v + 5, 0x10);
	wr8(f, v + 5, 0xA5);
	assert_int_equal(rd8(f, v + 5), 0x80);
	wr8(f, v + 5, 0xFF);
	assert_int_equal(rd8(f, v + 5), 0xA5);
	/* Erase the second 4 KiB block. */
	wr8(f, v + 4096 + 9, 0x20);
	wr8(f, v + 4096 + 9, 0xD0);
	wr8(f, v, 0xFF);
	assert_int_equal(rd8(f, v + 4096), 0xFF);
	assert_int_equal(rd8(f, v + 8191), 0xFF);
	assert_int_equal(rd8(f, v + 4095), (uint8_t)(4095 * 7));
	fp = fopen(f->vars, "rb");
	fseek(fp, 5, SEEK_SET);
	b = (uint8_t)fgetc(fp);
	fclose(fp);
	assert_int_equal(b, 0xA5);
	/* An erase without its confirmation sets the error bits and erases nothing. */
	wr8(f, v + 100, 0x20);
	wr8(f, v + 100, 0x00);
	assert_int_equal(rd8(f, v + 100) & 0x30, 0x30);
	wr8(f, v, 0x50);
	assert_int_equal(rd8(f, v + 100), (uint8_t)(100 * 7));
}

/*
 * Flash commands OVMF's driver sends less often: the identifier and CFI queries, program
 * with the alternate code, status while a program waits for its byte, an unknown command
 * (back to read array) and wide accesses (a command in the low byte).
 */
static void test_flash_more(void **state)
{
	struct fx *f = *state;
	uint64_t v = vars_at();
	uint8_t b[4];

	wr8(f, v + 0x200, 0x90);
	assert_int_equal(rd8(f, v), 0x89);
	assert_int_equal(rd8(f, v + 1), 0xA2);
	assert_int_equal(rd8(f, v + 2), 0);
	wr8(f, v, 0xFF);
	wr8(f, v + 0x55, 0x98);
	assert_int_equal(rd8(f, v), 0x89);
	wr8(f, v, 0x12); /* unknown: read array */
	assert_int_equal(rd8(f, v + 0x10), (uint8_t)(0x10 * 7));
	/* Program with 40h: status reads while the byte is awaited, then ready. */
	wr8(f, v + 6, 0x40);
	assert_int_equal(rd8(f, v + 6), 0x00);
	wr8(f, v + 6, 0x3C);
	assert_int_equal(rd8(f, v + 6), 0x80);
	/* Erase setup reads status too. */
	wr8(f, v + 0x300, 0x20);
	assert_int_equal(rd8(f, v + 0x300), 0x80);
	wr8(f, v + 0x300, 0xFF); /* not the confirmation: both error bits */
	assert_int_equal(rd8(f, v + 0x300), 0xB0);
	wr8(f, v, 0x50);
	/* A word write carries the command in its low byte; a word read is two array bytes. */
	io_put(b, 2, 0x00FF);
	assert_true(bus_access(&f->vm.mmio, v + 6, b, 2, true));
	assert_true(bus_access(&f->vm.mmio, v + 6, b, 2, false));
	assert_int_equal(b[0], 0x3C);
	assert_int_equal(b[1], (uint8_t)(7 * 7));
	/* An access across the end of the store never reaches it: the bus refuses it. */
	assert_false(bus_access(&f->vm.mmio, v + VARS_SIZE - 2, b, 4, false));
}

static void test_snapshot(void **state)
{
	struct fx *f = *state;
	struct dev *d = vm_find_dev(&f->vm, "bootrom");
	uint8_t *a, *b, *bad;
	size_t alen, blen;

	assert_non_null(d);
	wr8(f, vars_at(), 0x70); /* flash in status mode: saved */
	a = devsnap_save_copy(d, &alen);
	assert_int_equal(alen, 8 + ROM_SIZE + 8 + 4 + 1);
	assert_int_equal(devsnap_load(d, a, alen, 1), 0);
	b = devsnap_save_copy(d, &blen);
	assert_int_equal(alen, blen);
	assert_memory_equal(a, b, alen);
	assert_int_equal(rd8(f, vars_at()), 0x00); /* still the status */
	assert_int_equal(rd8(f, 0xF0000), rom_byte(0));
	devsnap_expect_refused(d, a, alen - 1, 1);
	bad = malloc(alen);
	/* An image size that is not whole pages. */
	memcpy(bad, a, alen);
	bad[0] = 1;
	devsnap_expect_refused(d, bad, alen, 1);
	/* A variable store of another size than lpc.bootvars. */
	memcpy(bad, a, alen);
	bad[8 + ROM_SIZE] ^= 0x10;
	devsnap_expect_refused(d, bad, alen, 1);
	/* A flash mode that does not exist. */
	memcpy(bad, a, alen);
	bad[8 + ROM_SIZE + 8] = 0x77;
	devsnap_expect_refused(d, bad, alen, 1);
	/* Image sizes of 0 and of 32 MiB: refused before anything is allocated for them. */
	memcpy(bad, a, alen);
	memset(bad, 0, 8);
	devsnap_expect_refused(d, bad, alen, 1);
	bad[3] = 0x02; /* 0x02000000 */
	devsnap_expect_refused(d, bad, alen, 1);
	/* 16 MiB of image is allowed alone, not with the variable store beside it. */
	{
		const size_t big = 16ULL << 20, n = 8 + big + 8 + 4 + 1;
		uint8_t *h = calloc(1, n);

		assert_non_null(h);
		h[3] = 0x01; /* 0x01000000 */
		memcpy(h + 8 + big, a + 8 + ROM_SIZE, 8 + 4 + 1);
		assert_true(h[8 + big] | h[8 + big + 1] | h[8 + big + 2]); /* a store is there */
		devsnap_expect_refused(d, h, n, 1);
		free(h);
	}
	free(a);
	free(b);
	free(bad);
}

static void test_bad_files(void **state)
{
	struct vm vm;
	struct config cfg;
	char err[256], path[64], vars[64];

	snprintf(path, sizeof(path), "/tmp/khyve-test-badrom.%d", getpid());
	write_file(path, 1000, 0);
	vm_init_bare(&vm, true);
	config_init(&cfg);
	vm.cfg = &cfg;
	config_set(&cfg, "lpc.bootrom", path);
	assert_int_equal(bootrom_create(&vm, false, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "4 KiB pages"));
	config_set(&cfg, "lpc.bootrom", "/nonexistent/rom");
	assert_int_not_equal(bootrom_create(&vm, false, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "/nonexistent/rom"));
	assert_null(vm.bootrom);
	/* Not a regular file; an empty one. */
	config_set(&cfg, "lpc.bootrom", "/tmp");
	assert_int_equal(bootrom_create(&vm, false, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "lpc.bootrom /tmp: a boot ROM is a file"));
	write_file(path, 0, 0);
	config_set(&cfg, "lpc.bootrom", path);
	assert_int_equal(bootrom_create(&vm, false, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "(this one is 0 bytes)"));
	/* Past 16 MiB (a sparse file). */
	assert_int_equal(truncate(path, 16 * MiB + 4096), 0);
	assert_int_equal(bootrom_create(&vm, false, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "4 KiB to 16 MiB"));
	/* A good ROM with a bad variable store: missing, a partial page, too big with the ROM. */
	write_file(path, ROM_SIZE, 1);
	snprintf(vars, sizeof(vars), "/tmp/khyve-test-badvars.%d", getpid());
	config_set(&cfg, "lpc.bootvars", vars);
	assert_int_equal(bootrom_create(&vm, false, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "lpc.bootvars"));
	write_file(vars, 1000, 0);
	assert_int_equal(bootrom_create(&vm, false, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "a variable store is a file in whole 4 KiB pages"));
	assert_int_equal(truncate(vars, 16 * MiB), 0);
	assert_int_equal(bootrom_create(&vm, false, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "at most 16 MiB with the boot ROM"));
	config_set(&cfg, "lpc.bootvars", "/tmp");
	assert_int_equal(bootrom_create(&vm, false, err, sizeof(err)), -EISDIR);
	assert_null(vm.bootrom);
	assert_null(vm.devs);
	unlink(vars);
	unlink(path);
	vm_destroy(&vm);
	config_free(&cfg);
}

/* A bare VM with @ram bytes of RAM (0: none) and lpc.bootrom/lpc.bootvars as given. */
struct bare {
	struct vm vm;
	struct config cfg;
	uint8_t *ram;
};

static void bare_init(struct bare *b, uint64_t ram, const char *rom, const char *vars)
{
	memset(b, 0, sizeof(*b));
	vm_init_bare(&b->vm, true);
	config_init(&b->cfg);
	b->vm.cfg = &b->cfg;
	if (rom)
		config_set(&b->cfg, "lpc.bootrom", rom);
	if (vars)
		config_set(&b->cfg, "lpc.bootvars", vars);
	if (ram) {
		b->ram = calloc(1, ram);
		assert_non_null(b->ram);
		b->vm.mem[0] = (struct mem_region){ .gpa = 0, .size = ram, .hva = b->ram };
		b->vm.nmem = 1;
		b->vm.ram_size = ram;
	}
}

static void bare_free(struct bare *b)
{
	vm_destroy(&b->vm);
	config_free(&b->cfg);
	free(b->ram);
}

static void nop_io(void *opaque, uint64_t off, void *data, unsigned size, bool is_write)
{
}

/* No lpc.bootrom: nothing is made, and the entry points do nothing (DMA goes to RAM). */
static void test_no_bootrom(void **state)
{
	static const uint8_t data[4] = { 1, 2, 3, 4 };
	uint8_t mode[PAM_SEGMENTS] = { 0 };
	struct bare b;
	char err[256] = "";

	bare_init(&b, 2 * MiB, NULL, NULL);
	assert_int_equal(bootrom_create(&b.vm, false, err, sizeof(err)), 0);
	assert_null(b.vm.bootrom);
	assert_null(b.vm.devs);
	assert_int_equal(bootrom_area_size(&b.vm), 0);
	assert_int_equal(bootrom_map(&b.vm), 0);
	bootrom_set_pam(&b.vm, mode);
	assert_true(bootrom_dma_write(&b.vm, 0xF0000, data, sizeof(data)));
	assert_memory_equal(b.ram + 0xF0000, data, sizeof(data));
	assert_false(bootrom_dma_write(&b.vm, 2 * MiB - 2, data, sizeof(data)));
	assert_string_equal(err, "");
	bare_free(&b);
}

/*
 * A ROM larger than the 128 KiB alias: its last 128 KiB show at 0xE0000-0xFFFFF, nothing
 * below; without lpc.bootvars there is no flash below the image.
 */
static void test_large_rom(void **state)
{
	const uint64_t size = 256 * KiB;
	uint8_t mode[PAM_SEGMENTS] = { 0 };
	struct bare b;
	char err[256], rom[64];

	snprintf(rom, sizeof(rom), "/tmp/khyve-test-bigrom.%d", getpid());
	write_file(rom, size, 1);
	bare_init(&b, 2 * MiB, rom, NULL);
	assert_int_equal(bootrom_create(&b.vm, false, err, sizeof(err)), 0);
	assert_int_equal(bootrom_map(&b.vm), 0);
	assert_int_equal(bootrom_area_size(&b.vm), size);
	assert_int_equal(vm_rd8(&b.vm, 0xE0000), rom_byte(size - 128 * KiB));
	assert_int_equal(vm_rd8(&b.vm, 0xFFFFF), rom_byte(size - 1));
	assert_int_equal(vm_rd8(&b.vm, 0xDFFFF), 0xFF);
	/* The image itself at the top of 4 GiB is KVM's slot; below it nothing is decoded. */
	assert_false(bus_access(&b.vm.mmio, (4ULL << 30) - size - 4096, &mode[0], 1, false));
	mode[0] = 0;
	/* The E segments made RAM: the alias goes, RAM answers. */
	for (unsigned i = 8; i < 12; i++)
		mode[i] = PAM_RE | PAM_WE;
	bootrom_set_pam(&b.vm, mode);
	b.ram[0xE0000] = 0x42;
	assert_int_equal(vm_rd8(&b.vm, 0xE0000), 0x42);
	assert_int_equal(vm_rd8(&b.vm, 0xF0000), rom_byte(size - 64 * KiB));
	bare_free(&b);
	unlink(rom);
}

/* RAM ends below the BIOS area: enabled segments have no RAM to read or write. */
static void test_ram_below_bios_area(void **state)
{
	static const uint8_t data[2] = { 7, 8 };
	uint8_t mode[PAM_SEGMENTS];
	struct bare b;
	char err[256], rom[64];

	snprintf(rom, sizeof(rom), "/tmp/khyve-test-smallram.%d", getpid());
	write_file(rom, ROM_SIZE, 1);
	bare_init(&b, 512 * KiB, rom, NULL);
	assert_int_equal(bootrom_create(&b.vm, false, err, sizeof(err)), 0);
	assert_int_equal(bootrom_map(&b.vm), 0);
	memset(mode, PAM_RE | PAM_WE, sizeof(mode));
	bootrom_set_pam(&b.vm, mode);
	vm_wr8(&b.vm, 0xC0000, 0x33);
	assert_int_equal(vm_rd8(&b.vm, 0xC0000), 0xFF);
	assert_int_equal(vm_rd8(&b.vm, 0xF0000), rom_byte(0));
	assert_false(bootrom_dma_write(&b.vm, 0xC0000, data, sizeof(data)));
	/* Below the area, in RAM: written as asked. */
	assert_true(bootrom_dma_write(&b.vm, 0x1000, data, sizeof(data)));
	assert_memory_equal(b.ram + 0x1000, data, sizeof(data));
	bare_free(&b);
	unlink(rom);
}

/*
 * A restore's device reads no image (the file may be gone): the BIOS area shows nothing until
 * the snapshot's image loads, the flash is decoded below it from then on, and a later load of
 * another image replaces it.
 */
static void test_restore_takes_the_image(void **state)
{
	struct fx *f = *state;
	struct dev *src = vm_find_dev(&f->vm, "bootrom"), *d;
	uint8_t *a, v;
	size_t alen;
	struct bare b;
	char err[256];

	a = devsnap_save_copy(src, &alen);
	bare_init(&b, RAM, "/nonexistent/rom", f->vars);
	assert_int_equal(bootrom_create(&b.vm, true, err, sizeof(err)), 0);
	assert_int_equal(bootrom_map(&b.vm), 0);
	d = vm_find_dev(&b.vm, "bootrom");
	assert_non_null(d);
	assert_int_equal(vm_rd8(&b.vm, 0xF0000), 0xFF);
	assert_false(bus_access(&b.vm.mmio, vars_at(), &v, 1, false)); /* not yet decoded */
	assert_int_equal(devsnap_load(d, a, alen, 1), 0);
	assert_int_equal(vm_rd8(&b.vm, 0xF0000), rom_byte(0));
	assert_int_equal(vm_rd8(&b.vm, 0xFFFF0), rom_byte(ROM_SIZE - 16));
	/* The flash, below the loaded image, answers its identifier query. */
	vm_wr8(&b.vm, vars_at(), 0x90);
	assert_int_equal(vm_rd8(&b.vm, vars_at()), 0x89);
	vm_wr8(&b.vm, vars_at(), 0xFF);
	assert_int_equal(vm_rd8(&b.vm, vars_at() + 1), 7); /* the store's second byte, again */
	/* Loaded again over an image: the same bytes back. */
	assert_int_equal(devsnap_load(d, a, alen, 1), 0);
	assert_int_equal(vm_rd8(&b.vm, 0xF0000), rom_byte(0));
	free(a);
	bare_free(&b);
}

/* The BIOS area or the flash's range already taken: refused, nothing left behind. */
static void test_ranges_taken(void **state)
{
	struct bare b;
	char err[256], rom[64], vars[64];

	snprintf(rom, sizeof(rom), "/tmp/khyve-test-takenrom.%d", getpid());
	snprintf(vars, sizeof(vars), "/tmp/khyve-test-takenvars.%d", getpid());
	write_file(rom, ROM_SIZE, 1);
	write_file(vars, VARS_SIZE, 0);
	bare_init(&b, RAM, rom, vars);
	assert_int_equal(bus_register(&b.vm.mmio, 0xD0000, 16, nop_io, NULL), 0);
	assert_int_equal(bootrom_create(&b.vm, false, err, sizeof(err)), -EEXIST);
	assert_non_null(strstr(err, "bootrom: its address range is taken"));
	assert_null(b.vm.bootrom);
	assert_int_equal(bus_unregister(&b.vm.mmio, 0xD0000), 0);
	/* The flash's range: the BIOS area is given back, so a second try can take it. */
	assert_int_equal(bus_register(&b.vm.mmio, vars_at() + 4096, 16, nop_io, NULL), 0);
	assert_int_equal(bootrom_create(&b.vm, false, err, sizeof(err)), -EEXIST);
	assert_non_null(strstr(err, "its address range is taken"));
	assert_null(b.vm.devs);
	assert_int_equal(bus_unregister(&b.vm.mmio, vars_at() + 4096), 0);
	assert_int_equal(bootrom_create(&b.vm, false, err, sizeof(err)), 0);
	assert_non_null(b.vm.bootrom);
	bare_free(&b);
	unlink(rom);
	unlink(vars);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_identity_and_reset, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pam_modes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hostbridge_registers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flash, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flash_more, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot, setup, teardown),
		cmocka_unit_test(test_bad_files),
		cmocka_unit_test(test_no_bootrom),
		cmocka_unit_test(test_large_rom),
		cmocka_unit_test(test_ram_below_bios_area),
		cmocka_unit_test_setup_teardown(test_restore_takes_the_image, setup, teardown),
		cmocka_unit_test(test_ranges_taken),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
