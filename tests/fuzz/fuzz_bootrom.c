// SPDX-License-Identifier: BSD-2-Clause
/*
 * libFuzzer target: the firmware ROM's guest side (bootrom.c with the i440FX host bridge,
 * hostbridge.c): the BIOS area 0xC0000-0xFFFFF as the PAM registers route it, the variable
 * store's flash command set, a device's DMA into the BIOS area, and the snapshot.  Each input
 * builds a fresh bare VM with 2 MiB of RAM, a 16 KiB ROM, an 8 KiB variable store (reset to
 * the same bytes every time) and the host bridge at 0:0.0, then runs operations:
 *
 *	00 off:u24 val:u32 size:u8	write the BIOS area at 0xC0000 + off % 256 KiB, size 1/2/4
 *	01 off:u24 size:u8		read it (checked, below)
 *	02 off:u16 val:u32 size:u8	write the variable store at off % 8 KiB
 *	03 off:u16 size:u8		read it
 *	04 reg:u8 val:u32 size:u8	write the host bridge's configuration space (PAM0-6 are
 *					0x59-0x5F, SMRAM 0x72) through 0xCF8/0xCFC
 *	05 reg:u8 size:u8		read it
 *	06 off:u24 len:u8 bytes		DMA (bootrom_dma_write) at 0xB0000 + off % 448 KiB
 *	07				save, load into the same device, save again (the first
 *					four times: each copies the ROM three times)
 *
 * What must hold: no crash, no sanitizer report; a saved state loads and saves back to the same
 * bytes; a byte read from the BIOS area is the RAM's when its segment's PAM read enable is set
 * (read back from the host bridge), else the ROM's last bytes where the ROM is aliased below
 * 1 MiB and 0xFF elsewhere; a DMA write that the PAM refuses leaves those RAM bytes alone,
 * and is reported refused exactly when some byte was.  60 s here (ASan+UBSan, a loaded host):
 * 390 execs/s, 492 edges, no failure; bios_byte reading RAM on the write enable, or the DMA
 * check testing the read enable, fail within seconds.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "dev/pc/bootrom.h"
#include "dev/pci/pci.h"
#include "sstream.h"
#include "vm.h"
#include "fuzz.h"

#define RAM (2 * MiB)
#define ROM_SIZE (16 * KiB)
#define VARS_SIZE (8 * KiB)
#define VARS_AT ((4ULL << 30) - ROM_SIZE - VARS_SIZE)
#define DMA_BASE 0xB0000ULL
#define DMA_SPAN (448 * KiB) /* 0xB0000 to 0x120000: below, inside and above the area */

static uint8_t rom[ROM_SIZE], vars[VARS_SIZE];
static int vars_fd = -1;
static char rom_path[64], vars_path[64];

void fuzz_init(void)
{
	int fd;

	for (size_t i = 0; i < sizeof(rom); i++)
		rom[i] = (uint8_t)(i * 7 + 1);
	for (size_t i = 0; i < sizeof(vars); i++)
		vars[i] = (uint8_t)(i * 13);
	fd = fz_memfd("rom", rom, sizeof(rom));
	vars_fd = fz_memfd("vars", vars, sizeof(vars));
	snprintf(rom_path, sizeof(rom_path), "/proc/self/fd/%d", fd);
	snprintf(vars_path, sizeof(vars_path), "/proc/self/fd/%d", vars_fd);
}

static uint64_t bus_rw(struct bus *b, uint64_t a, uint64_t v, unsigned size, bool write)
{
	bus_access(b, a, &v, size, write);
	return v;
}

static uint64_t hb(struct vm *vm, unsigned reg, uint64_t v, unsigned size, bool write)
{
	bus_rw(&vm->pio, 0xCF8, 0x80000000u | (reg & 0xFC), 4, true);
	return bus_rw(&vm->pio, 0xCFC + (reg & 3), v, size, write);
}

/* The segment's mode as the guest reads the PAM registers back (bootrom.h's segments). */
static uint8_t pam_mode(struct vm *vm, uint64_t gpa)
{
	int i = bootrom_pam_segment(gpa);
	uint8_t r;

	if (i == 12)
		return (uint8_t)((hb(vm, 0x59, 0, 1, false) >> 4) & 3);
	r = (uint8_t)hb(vm, 0x5A + (unsigned)i / 2, 0, 1, false);
	return (uint8_t)((i & 1 ? r >> 4 : r) & 3);
}

/* What a read of @gpa in the BIOS area must give. */
static uint8_t expected(struct vm *vm, uint64_t gpa)
{
	if (pam_mode(vm, gpa) & PAM_RE)
		return *(uint8_t *)vm_gpa(vm, gpa, 1);
	if (gpa >= BIOS_AREA_END - ROM_SIZE)
		return rom[ROM_SIZE - (BIOS_AREA_END - gpa)];
	return 0xFF;
}

static void check_read(struct vm *vm, uint64_t gpa, unsigned size)
{
	uint64_t v = bus_rw(&vm->mmio, gpa, 0, size, false);

	for (unsigned k = 0; k < size; k++) {
		uint8_t want = expected(vm, gpa + k), got = (uint8_t)(v >> (8 * k));

		FZ_ASSERT(got == want, "BIOS area 0x%llx read 0x%02x, want 0x%02x (PAM mode %u)",
			  (unsigned long long)(gpa + k), got, want, pam_mode(vm, gpa + k));
	}
}

static void dma(struct vm *vm, uint64_t gpa, const uint8_t *p, size_t n)
{
	uint8_t before[256];
	uint8_t *ram = vm_gpa(vm, gpa, n);
	bool ok, refused = false;

	if (ram)
		memcpy(before, ram, n);
	ok = bootrom_dma_write(vm, gpa, p, n);
	FZ_ASSERT(ram || !ok, "DMA outside RAM at 0x%llx accepted", (unsigned long long)gpa);
	for (size_t k = 0; ram && k < n; k++) {
		int i = bootrom_pam_segment(gpa + k);
		bool writable = i < 0 || (pam_mode(vm, gpa + k) & PAM_WE);

		FZ_ASSERT(ram[k] == (writable ? p[k] : before[k]),
			  "DMA byte at 0x%llx: 0x%02x (PAM write enable %d)",
			  (unsigned long long)(gpa + k), ram[k], writable);
		refused |= !writable;
	}
	FZ_ASSERT(!ram || ok == !refused, "DMA at 0x%llx: %s, but %s byte was refused",
		  (unsigned long long)gpa, ok ? "accepted" : "refused", refused ? "a" : "no");
}

static void identity(struct dev *d)
{
	fz_dev_identity(d, d->ops->version, "bootrom");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz f = { data, size };
	struct config cfg;
	struct dev *d;
	struct vm vm;
	char err[256];
	unsigned saves = 0;

	/* The store as it was: what an earlier input programmed is gone. */
	if (pwrite(vars_fd, vars, sizeof(vars), 0) != (ssize_t)sizeof(vars))
		abort();
	fz_vm_init(&vm, &cfg, RAM);
	config_set(&cfg, "lpc.bootrom", rom_path);
	config_set(&cfg, "lpc.bootvars", vars_path);
	config_set(&cfg, "pci.0.0.0.device", "hostbridge");
	FZ_ASSERT(!bootrom_create(&vm, false, err, sizeof(err)), "bootrom_create: %s", err);
	FZ_ASSERT(!bootrom_map(&vm), "bootrom_map failed");
	FZ_ASSERT(!pci_setup(&vm, err, sizeof(err)), "pci_setup: %s", err);
	d = vm_find_dev(&vm, "bootrom");
	FZ_ASSERT(d, "no bootrom device");
	for (unsigned n = 0; !fz_empty(&f) && n < 4096; n++) {
		uint8_t op = fz_u8(&f) % 8, reg;
		uint64_t off, v;
		unsigned sz;

		switch (op) {
		case 0:
			off = fz_uint(&f, 3) % (BIOS_AREA_END - BIOS_AREA_BASE);
			v = fz_u32(&f);
			sz = fz_size(&f);
			bus_rw(&vm.mmio, BIOS_AREA_BASE + off, v, sz, true);
			break;
		case 1:
			off = fz_uint(&f, 3) % (BIOS_AREA_END - BIOS_AREA_BASE);
			sz = fz_size(&f);
			if (off + sz <= BIOS_AREA_END - BIOS_AREA_BASE)
				check_read(&vm, BIOS_AREA_BASE + off, sz);
			break;
		case 2:
			off = fz_u16(&f) % VARS_SIZE;
			v = fz_u32(&f);
			sz = fz_size(&f);
			bus_rw(&vm.mmio, VARS_AT + off, v, sz, true);
			break;
		case 3:
			off = fz_u16(&f) % VARS_SIZE;
			bus_rw(&vm.mmio, VARS_AT + off, 0, fz_size(&f), false);
			break;
		case 4:
			reg = fz_u8(&f);
			v = fz_u32(&f);
			sz = fz_size(&f);
			hb(&vm, reg & ~(sz - 1), v, sz, true);
			break;
		case 5:
			reg = fz_u8(&f);
			sz = fz_size(&f);
			hb(&vm, reg & ~(sz - 1), 0, sz, false);
			break;
		case 6: {
			size_t len, got;
			const uint8_t *p;

			off = fz_uint(&f, 3) % DMA_SPAN;
			len = fz_u8(&f);
			p = fz_bytes(&f, len, &got);
			if (got)
				dma(&vm, DMA_BASE + off, p, got);
			break;
		}
		default:
			if (saves++ < 4)
				identity(d);
			break;
		}
	}
	identity(d);
	vm_destroy(&vm);
	config_free(&cfg);
	return 0;
}

static void cfg_write(struct fz_seed *s, unsigned reg, uint32_t v, unsigned size)
{
	fz_put(s, 4, 1);
	fz_put(s, reg, 1);
	fz_put(s, v, 4);
	fz_put_size(s, size);
}

static void vars_write(struct fz_seed *s, unsigned off, uint8_t v)
{
	fz_put(s, 2, 1);
	fz_put(s, off, 2);
	fz_put(s, v, 4);
	fz_put(s, 0, 1);
}

void fuzz_seeds(void)
{
	struct fz_seed s;

	/* SeaBIOS's shadowing: the ROM read, the segments made RAM, copied, made read-only. */
	fz_seed_start(&s);
	fz_put(&s, 1, 1);
	fz_put(&s, 0x3FFF0, 3);
	fz_put(&s, 2, 1);
	cfg_write(&s, 0x59, 0x30, 1);
	cfg_write(&s, 0x5A, 0x33333333, 4);
	fz_put(&s, 0, 1);
	fz_put(&s, 0x30000, 3);
	fz_put(&s, 0xdeadbeef, 4);
	fz_put(&s, 2, 1);
	cfg_write(&s, 0x59, 0x10, 1);
	fz_put(&s, 1, 1);
	fz_put(&s, 0x30000, 3);
	fz_put(&s, 2, 1);
	fz_put(&s, 7, 1);
	fz_seed_write(&s, "shadow");
	/* OVMF's variable writes: program two bytes, erase a block, read the status. */
	fz_seed_start(&s);
	vars_write(&s, 0x10, 0x40);
	vars_write(&s, 0x10, 0x5a);
	vars_write(&s, 0x11, 0x10);
	vars_write(&s, 0x11, 0xa5);
	vars_write(&s, 0x1000, 0x20);
	vars_write(&s, 0x1000, 0xd0);
	vars_write(&s, 0, 0x70);
	fz_put(&s, 3, 1);
	fz_put(&s, 0, 2);
	fz_put(&s, 0, 1);
	fz_put(&s, 7, 1);
	vars_write(&s, 0, 0xff);
	fz_seed_write(&s, "flash");
	/* DMA across the area's edges with some segments writable. */
	fz_seed_start(&s);
	cfg_write(&s, 0x5F, 0x22, 1);
	fz_put(&s, 6, 1);
	fz_put(&s, 0x3FFF0, 3);
	fz_put(&s, 32, 1);
	for (unsigned i = 0; i < 32; i++)
		fz_put(&s, i, 1);
	fz_put(&s, 1, 1);
	fz_put(&s, 0x2C000, 3);
	fz_put(&s, 2, 1);
	fz_seed_write(&s, "dma");
}
