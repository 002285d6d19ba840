// SPDX-License-Identifier: BSD-2-Clause
/*
 * Kernel loaders against their protocols.  Each test writes a small kernel image of the kind
 * under test (a bzImage with setup sectors and header fields, a PVH ELF with its note, a
 * multiboot kernel) to a temporary file, loads it into a VM whose RAM is a buffer, and reads
 * the result back at the offsets the protocol documents (not through khyve's structs).
 */
#include <elf.h>
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

#include "arch/x86/boot.h"
#include "arch/x86/e820.h"
#include "config.h"
#include "vm.h"

#define RAM_SIZE (64 * MiB)

struct fixture {
	struct vm vm;
	struct config cfg;
	uint8_t *ram;
	char dir[64];
	char kernel[128], initrd[128];
	char err[512];
	struct boot_entry entry;
};

static struct fixture *fx_new(uint64_t ram_size)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	vm_init_bare(&f->vm, true);
	f->ram = calloc(1, ram_size);
	assert_non_null(f->ram);
	f->vm.mem[0] = (struct mem_region){ .gpa = 0, .size = ram_size, .hva = f->ram };
	f->vm.nmem = 1;
	f->vm.ram_size = ram_size;
	f->vm.ncpus = 1;
	config_init(&f->cfg);
	f->vm.cfg = &f->cfg;
	strcpy(f->dir, "/tmp/khyve-boot-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->kernel, sizeof(f->kernel), "%s/kernel", f->dir);
	snprintf(f->initrd, sizeof(f->initrd), "%s/initrd.img", f->dir);
	return f;
}

static void fx_free(struct fixture *f)
{
	unlink(f->kernel);
	unlink(f->initrd);
	rmdir(f->dir);
	config_free(&f->cfg);
	free(f->ram);
	free(f);
}

static void write_file(const char *path, const void *data, size_t len)
{
	FILE *fp = fopen(path, "wb");

	assert_non_null(fp);
	if (len)
		assert_int_equal(fwrite(data, len, 1, fp), 1);
	assert_int_equal(fclose(fp), 0);
}

static void fx_kernel(struct fixture *f, const void *img, size_t len)
{
	write_file(f->kernel, img, len);
	assert_int_equal(config_set(&f->cfg, "boot.kernel", f->kernel), 0);
}

static uint8_t *fx_initrd(struct fixture *f, size_t len)
{
	uint8_t *d = malloc(len);

	assert_non_null(d);
	for (size_t i = 0; i < len; i++)
		d[i] = (uint8_t)(i * 13 + 5);
	write_file(f->initrd, d, len);
	assert_int_equal(config_set(&f->cfg, "boot.initrd", f->initrd), 0);
	return d;
}

static int fx_load(struct fixture *f)
{
	f->err[0] = 0;
	return boot_load(&f->vm, &f->entry, f->err, sizeof(f->err));
}

/* The load failed with @ret and a message that names the file and contains @what. */
static void fx_refused(struct fixture *f, int ret, const char *what)
{
	char prefix[200];

	assert_int_equal(fx_load(f), ret);
	snprintf(prefix, sizeof(prefix), "boot.kernel %s: ", f->kernel);
	if (strncmp(f->err, prefix, strlen(prefix)) || !strstr(f->err, what))
		fail_msg("message \"%s\" lacks \"%s\"", f->err, what);
}

static void put16(uint8_t *p, unsigned off, uint16_t v)
{
	p[off] = (uint8_t)v;
	p[off + 1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, unsigned off, uint32_t v)
{
	put16(p, off, (uint16_t)v);
	put16(p, off + 2, (uint16_t)(v >> 16));
}

static void put64(uint8_t *p, unsigned off, uint64_t v)
{
	put32(p, off, (uint32_t)v);
	put32(p, off + 4, (uint32_t)(v >> 32));
}

static uint16_t get16(const uint8_t *p, uint64_t off)
{
	return (uint16_t)(p[off] | p[off + 1] << 8);
}

static uint32_t get32(const uint8_t *p, uint64_t off)
{
	return get16(p, off) | (uint32_t)get16(p, off + 2) << 16;
}

static uint64_t get64(const uint8_t *p, uint64_t off)
{
	return get32(p, off) | (uint64_t)get32(p, off + 4) << 32;
}

static void fill(uint8_t *p, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(i * 7 + seed);
}

/* ---- bzImage ---- */

struct bz {
	uint16_t version;
	uint16_t xloadflags;
	uint8_t setup_sects;
	uint8_t relocatable;
	uint32_t init_size;
	uint32_t cmdline_size;
	uint32_t initrd_addr_max;
	uint64_t pref_address;
	size_t payload;
};

static const struct bz bz_default = {
	.version = 0x020F,
	.xloadflags = 0x3,
	.setup_sects = 2,
	.relocatable = 1,
	.init_size = 4 * MiB,
	.cmdline_size = 2047,
	.initrd_addr_max = 0x7FFFFFFF,
	.pref_address = 16 * MiB,
	.payload = 20000,
};

#define BZ_PAYLOAD_SEED 3

/* The layout of boot.rst: setup sectors holding the header at 0x1F1, then the payload. */
static uint8_t *make_bzimage(const struct bz *o, size_t *len)
{
	size_t setup = (o->setup_sects + 1u) * 512u;
	uint8_t *img = calloc(1, setup + o->payload);

	assert_non_null(img);
	memset(img, 0x90, setup);
	memset(img + 0x1F1, 0, 0x26C - 0x1F1);
	img[0x1F1] = o->setup_sects;
	put32(img, 0x1F4, (uint32_t)((o->payload + 15) / 16)); /* syssize */
	put16(img, 0x1FA, 0xFFFF);			       /* vid_mode */
	put16(img, 0x1FE, 0xAA55);
	img[0x200] = 0xEB; /* jmp past the header */
	img[0x201] = 0x6A;
	memcpy(img + 0x202, "HdrS", 4);
	put16(img, 0x206, o->version);
	put16(img, 0x20E, 0x1234);   /* kernel_version */
	img[0x211] = 0x01;	     /* LOADED_HIGH */
	put32(img, 0x214, 0x100000); /* code32_start */
	put32(img, 0x22C, o->initrd_addr_max);
	put32(img, 0x230, 2 * MiB); /* kernel_alignment */
	img[0x234] = o->relocatable;
	img[0x235] = 21; /* min_alignment */
	put16(img, 0x236, o->xloadflags);
	put32(img, 0x238, o->cmdline_size);
	put64(img, 0x258, o->pref_address);
	put32(img, 0x260, o->init_size);
	fill(img + setup, o->payload, BZ_PAYLOAD_SEED);
	*len = setup + o->payload;
	return img;
}

static void fx_bzimage(struct fixture *f, const struct bz *o)
{
	size_t len;
	uint8_t *img = make_bzimage(o, &len);

	fx_kernel(f, img, len);
	free(img);
}

/* Walks the boot page tables for @va; returns the physical address or ~0 if unmapped. */
static uint64_t walk(const uint8_t *ram, uint64_t cr3, uint64_t va)
{
	uint64_t e = get64(ram, cr3 + 8 * ((va >> 39) & 511));

	if (!(e & 1))
		return ~0ULL;
	e = get64(ram, (e & 0xFFFFFFFFF000ULL) + 8 * ((va >> 30) & 511));
	if (!(e & 1) || !(e & 2))
		return ~0ULL;
	if (e & 0x80)
		return (e & 0xFFFFC0000000ULL) + (va & (GiB - 1));
	e = get64(ram, (e & 0xFFFFFFFFF000ULL) + 8 * ((va >> 21) & 511));
	if (!(e & 1) || !(e & 2) || !(e & 0x80))
		return ~0ULL;
	return (e & 0xFFFFFFE00000ULL) + (va & (2 * MiB - 1));
}

/* A GDT descriptor: flat 4 GiB, present, ring 0, code (64-bit or 32-bit) or data. */
static void check_descriptor(const uint8_t *ram, const struct boot_entry *e, unsigned sel,
			     bool code, bool l)
{
	uint64_t d;

	assert_true(sel + 7 <= e->gdt_limit);
	d = get64(ram, e->gdt_base + sel);
	assert_int_equal((d >> 47) & 1, 1);				 /* present */
	assert_int_equal((d >> 45) & 3, 0);				 /* DPL 0 */
	assert_int_equal((d >> 44) & 1, 1);				 /* code/data */
	assert_int_equal((d >> 43) & 1, code);				 /* executable */
	assert_int_equal((d >> 41) & 1, 1);				 /* readable/writable */
	assert_int_equal((d >> 55) & 1, 1);				 /* 4 KiB granularity */
	assert_int_equal((d & 0xFFFF) | ((d >> 32) & 0xF0000), 0xFFFFF); /* limit */
	assert_int_equal(((d >> 16) & 0xFFFFFF) | ((d >> 32) & 0xFF000000), 0); /* base */
	assert_int_equal((d >> 53) & 1, l);					/* L */
	assert_int_equal((d >> 54) & 1, !l);					/* D/B */
}

static void check_e820_table(const uint8_t *p, unsigned n, unsigned stride, unsigned type_off)
{
	struct e820_entry want[E820_MAX_ENTRIES];
	int nwant = e820_build(RAM_SIZE, want, E820_MAX_ENTRIES);

	assert_int_equal(n, nwant);
	for (unsigned i = 0; i < n; i++) {
		assert_int_equal(get64(p, i * stride), want[i].addr);
		assert_int_equal(get64(p, i * stride + 8), want[i].size);
		assert_int_equal(get32(p, i * stride + type_off), want[i].type);
	}
}

static void test_bzimage_boot_params(void **state)
{
	struct fixture *f = fx_new(RAM_SIZE);
	const char *cmdline = "console=ttyS0 root=/dev/vda rw";
	const uint8_t *bp = f->ram + 0x7000;
	size_t img_len, initrd_len = 3 * 4096 + 100;
	uint8_t *img = make_bzimage(&bz_default, &img_len), *initrd;
	uint32_t rd;

	fx_kernel(f, img, img_len);
	initrd = fx_initrd(f, initrd_len);
	assert_int_equal(config_set(&f->cfg, "boot.cmdline", cmdline), 0);
	assert_int_equal(fx_load(f), 0);

	/* The setup header, copied: unchanged fields equal the image's. */
	assert_memory_equal(bp + 0x1F1, img + 0x1F1, 0x210 - 0x1F1);
	assert_memory_equal(bp + 0x22C, img + 0x22C, 0x23C - 0x22C);
	assert_memory_equal(bp + 0x258, img + 0x258, 0x264 - 0x258);
	/* Loader fields. */
	assert_int_equal(bp[0x210], 0xFF);	     /* type_of_loader */
	assert_int_equal(bp[0x211] & 0x81, 0x81);    /* LOADED_HIGH, CAN_USE_HEAP */
	assert_int_not_equal(get16(bp, 0x224), 0);   /* heap_end_ptr */
	assert_int_equal(get32(bp, 0x23C), 0);	     /* hardware_subarch */
	assert_int_equal(get64(bp, 0x070), 0xE0000); /* acpi_rsdp_addr */
	/* Command line. */
	assert_int_equal(get32(bp, 0x228), 0x20000);
	assert_int_equal(get32(bp, 0x0C8), 0);
	assert_string_equal((const char *)f->ram + 0x20000, cmdline);
	/* e820 in boot_params equals e820_build. */
	check_e820_table(bp + 0x2D0, bp[0x1E8], 20, 16);
	/* The kernel at its preferred address. */
	assert_memory_equal(f->ram + 16 * MiB, img + 3 * 512, bz_default.payload);
	/* initrd: page aligned, at the top of RAM, above the kernel's init_size. */
	rd = get32(bp, 0x218);
	assert_int_equal(get32(bp, 0x21C), initrd_len);
	assert_int_equal(get32(bp, 0x0C0), 0);
	assert_int_equal(get32(bp, 0x0C4), 0);
	assert_int_equal(rd % 4096, 0);
	assert_true(rd >= 16 * MiB + bz_default.init_size);
	assert_true(rd + initrd_len <= RAM_SIZE && RAM_SIZE - (rd + initrd_len) < 4096);
	assert_memory_equal(f->ram + rd, initrd, initrd_len);
	free(initrd);
	free(img);
	fx_free(f);
}

static void test_bzimage_entry(void **state)
{
	struct fixture *f = fx_new(RAM_SIZE);
	const struct boot_entry *e = &f->entry;
	struct kvm_sregs sregs = { .cr0 = 0x60000010 };
	struct kvm_regs regs = { .rflags = 0x202 };

	fx_bzimage(f, &bz_default);
	assert_int_equal(fx_load(f), 0);
	assert_true(e->long_mode);
	assert_int_equal(e->rip, 16 * MiB + 0x200);
	assert_int_equal(e->rsi, 0x7000);
	assert_int_equal(e->cr3, 0x9000);
	assert_int_equal(e->gdt_base, 0x500);
	/* Identity map of the first 4 GiB. */
	for (uint64_t a = 0; a < 4 * GiB; a += 2 * MiB) {
		assert_int_equal(walk(f->ram, e->cr3, a), a);
		assert_int_equal(walk(f->ram, e->cr3, a + 2 * MiB - 8), a + 2 * MiB - 8);
	}
	/* __BOOT_CS 0x10 (64-bit code), __BOOT_DS 0x18 (data). */
	check_descriptor(f->ram, e, 0x10, true, true);
	check_descriptor(f->ram, e, 0x18, false, false);

	boot_setup_sregs(e, &sregs);
	boot_setup_regs(e, &regs);
	assert_int_equal(sregs.cs.selector, 0x10);
	assert_int_equal(sregs.cs.l, 1);
	assert_int_equal(sregs.cs.db, 0);
	assert_int_equal(sregs.ds.selector, 0x18);
	assert_int_equal(sregs.ss.selector, 0x18);
	assert_int_equal(sregs.es.selector, 0x18);
	assert_int_equal(sregs.cr0 & 0x80000001, 0x80000001); /* PG, PE */
	assert_int_equal(sregs.cr0 & 0x60000000, 0);	      /* caches on */
	assert_int_equal(sregs.cr4 & 0x20, 0x20);	      /* PAE */
	assert_int_equal(sregs.efer & 0x500, 0x500);	      /* LME, LMA */
	assert_int_equal(sregs.cr3, 0x9000);
	assert_int_equal(sregs.gdt.base, 0x500);
	assert_int_equal(regs.rip, 16 * MiB + 0x200);
	assert_int_equal(regs.rsi, 0x7000);
	assert_int_equal(regs.rflags & 0x200, 0); /* interrupts off */
	fx_free(f);
}

/* Too big for pref_address: a relocatable kernel moves down to its alignment. */
static void test_bzimage_relocates(void **state)
{
	struct fixture *f = fx_new(RAM_SIZE);
	struct bz o = bz_default;

	o.init_size = 56 * MiB;
	fx_bzimage(f, &o);
	assert_int_equal(fx_load(f), 0);
	assert_int_equal(f->entry.rip, 2 * MiB + 0x200);
	assert_int_equal(get32(f->ram + 0x7000, 0x214), 2 * MiB); /* code32_start */
	o.relocatable = 0;
	fx_bzimage(f, &o);
	fx_refused(f, -ENOSPC, "not relocatable");
	fx_free(f);
}

/* The initrd respects initrd_addr_max. */
static void test_bzimage_initrd_addr_max(void **state)
{
	struct fixture *f = fx_new(RAM_SIZE);
	struct bz o = bz_default;
	uint8_t *initrd;
	uint32_t rd;

	o.initrd_addr_max = 48 * MiB - 1;
	fx_bzimage(f, &o);
	initrd = fx_initrd(f, 5000);
	assert_int_equal(fx_load(f), 0);
	rd = get32(f->ram + 0x7000, 0x218);
	assert_true(rd + 5000 <= 48 * MiB && 48 * MiB - (rd + 5000) < 4096);
	free(initrd);
	fx_free(f);
}

static void test_bzimage_refusals(void **state)
{
	struct fixture *f = fx_new(RAM_SIZE);
	struct bz o = bz_default;
	size_t len;
	uint8_t *img;

	/* Truncated: the payload is shorter than syssize says. */
	img = make_bzimage(&o, &len);
	fx_kernel(f, img, len - 100);
	free(img);
	fx_refused(f, -ENOEXEC, "truncated bzImage");
	/* Old protocol. */
	o = bz_default;
	o.version = 0x0204;
	fx_bzimage(f, &o);
	fx_refused(f, -ENOEXEC, "boot protocol 2.04 is too old");
	/* 32-bit only (no XLF_KERNEL_64), and 2.10 (no xloadflags at all). */
	o = bz_default;
	o.xloadflags = 0;
	fx_bzimage(f, &o);
	fx_refused(f, -ENOEXEC, "no 64-bit entry point");
	o.version = 0x020A;
	o.xloadflags = 1;
	fx_bzimage(f, &o);
	fx_refused(f, -ENOEXEC, "no 64-bit entry point");
	/* Too big for RAM. */
	o = bz_default;
	o.init_size = 200 * MiB;
	fx_bzimage(f, &o);
	fx_refused(f, -ENOSPC, "more than the guest's 64 MiB");
	/* Command line longer than cmdline_size. */
	o = bz_default;
	o.cmdline_size = 16;
	fx_bzimage(f, &o);
	assert_int_equal(config_set(&f->cfg, "boot.cmdline", "0123456789abcdefX"), 0);
	fx_refused(f, -E2BIG, "boot.cmdline is 17 bytes; this kernel accepts at most 16");
	assert_int_equal(config_set(&f->cfg, "boot.cmdline", "0123456789abcdef"), 0);
	assert_int_equal(fx_load(f), 0);
	fx_free(f);
}

static void test_not_a_kernel(void **state)
{
	struct fixture *f = fx_new(RAM_SIZE);
	char msg[300];
	uint8_t junk[9000];

	fill(junk, sizeof(junk), 1);
	fx_kernel(f, junk, sizeof(junk));
	assert_int_equal(fx_load(f), -ENOEXEC);
	snprintf(msg, sizeof(msg),
		 "boot.kernel %s: not a Linux bzImage, PVH ELF or multiboot kernel", f->kernel);
	assert_string_equal(f->err, msg);
	/* Empty file, missing file, no boot.kernel at all. */
	fx_kernel(f, junk, 0);
	fx_refused(f, -ENOEXEC, "empty");
	assert_int_equal(config_set(&f->cfg, "boot.kernel", "/nonexistent/vmlinuz"), 0);
	assert_int_equal(fx_load(f), -ENOENT);
	assert_non_null(strstr(f->err, "/nonexistent/vmlinuz"));
	config_unset(&f->cfg, "boot.kernel");
	assert_int_equal(fx_load(f), -EINVAL);
	assert_non_null(strstr(f->err, "boot.kernel"));
	fx_free(f);
}

static void test_initrd_refusals(void **state)
{
	struct fixture *f = fx_new(RAM_SIZE);
	uint8_t *d;

	fx_bzimage(f, &bz_default);
	d = fx_initrd(f, 60 * MiB);
	assert_int_equal(fx_load(f), -ENOSPC);
	assert_non_null(strstr(f->err, "boot.initrd"));
	assert_non_null(strstr(f->err, "do not fit"));
	free(d);
	write_file(f->initrd, "", 0);
	assert_int_equal(fx_load(f), -EINVAL);
	assert_non_null(strstr(f->err, "empty"));
	fx_free(f);
}

static void test_ram_too_small(void **state)
{
	struct fixture *f = fx_new(RAM_SIZE);

	fx_bzimage(f, &bz_default);
	f->vm.ram_size = 8 * MiB;
	assert_int_equal(fx_load(f), -EINVAL);
	assert_non_null(strstr(f->err, "minimum"));
	fx_free(f);
}

/* ---- PVH ---- */

#define PVH_LOAD 0x100000ULL
#define PVH_ENTRY (PVH_LOAD + 0x10)
#define PVH_FILESZ 0x2000
#define PVH_MEMSZ 0x5000
#define PVH_SEG_OFF 0x1000

/* ELF64 with a PT_LOAD linked high but loaded at PVH_LOAD, and a PT_NOTE with the entry. */
static uint8_t *make_pvh(uint64_t paddr, unsigned descsz, bool with_note, size_t *len)
{
	size_t size = PVH_SEG_OFF + PVH_FILESZ;
	uint8_t *img = calloc(1, size);
	Elf64_Ehdr *eh = (Elf64_Ehdr *)img;
	Elf64_Phdr *ph = (Elf64_Phdr *)(img + sizeof(*eh));
	uint8_t *note = img + 0x100;

	assert_non_null(img);
	memcpy(eh->e_ident, ELFMAG, SELFMAG);
	eh->e_ident[EI_CLASS] = ELFCLASS64;
	eh->e_ident[EI_DATA] = ELFDATA2LSB;
	eh->e_ident[EI_VERSION] = EV_CURRENT;
	eh->e_type = ET_EXEC;
	eh->e_machine = EM_X86_64;
	eh->e_version = EV_CURRENT;
	eh->e_entry = 0xFFFFFFFF81000000ULL; /* the 64-bit entry: not what PVH uses */
	eh->e_phoff = sizeof(*eh);
	eh->e_ehsize = sizeof(*eh);
	eh->e_phentsize = sizeof(*ph);
	eh->e_phnum = 2;
	ph[0] = (Elf64_Phdr){ .p_type = PT_LOAD,
			      .p_flags = PF_R | PF_X,
			      .p_offset = PVH_SEG_OFF,
			      .p_vaddr = 0xFFFFFFFF81000000ULL,
			      .p_paddr = paddr,
			      .p_filesz = PVH_FILESZ,
			      .p_memsz = PVH_MEMSZ,
			      .p_align = 4096 };
	ph[1] = (Elf64_Phdr){ .p_type = PT_NOTE, .p_offset = 0x100, .p_filesz = 0x40, .p_align = 4 };
	/* An unrelated note first, then Xen's PHYS32_ENTRY. */
	put32(note, 0, 4);
	put32(note, 4, 4);
	put32(note, 8, 3);
	memcpy(note + 12, "GNU", 4);
	note += 20;
	if (with_note) {
		put32(note, 0, 4);
		put32(note, 4, descsz);
		put32(note, 8, 18);
		memcpy(note + 12, "Xen", 4);
		put64(note, 16, PVH_ENTRY);
		if (descsz == 4)
			put32(note, 20, 0);
	}
	fill(img + PVH_SEG_OFF, PVH_FILESZ, 11);
	*len = size;
	return img;
}

static void fx_pvh(struct fixture *f, uint64_t paddr, unsigned descsz, bool with_note)
{
	size_t len;
	uint8_t *img = make_pvh(paddr, descsz, with_note, &len);

	fx_kernel(f, img, len);
	free(img);
}

static void check_32bit_entry(struct fixture *f)
{
	struct kvm_sregs sregs = { .cr0 = 0x60000010, .efer = 0 };
	const struct boot_entry *e = &f->entry;

	assert_false(e->long_mode);
	check_descriptor(f->ram, e, 0x08, true, false);
	check_descriptor(f->ram, e, 0x18, false, false);
	boot_setup_sregs(e, &sregs);
	assert_int_equal(sregs.cs.selector, 0x08);
	assert_int_equal(sregs.cs.db, 1);
	assert_int_equal(sregs.cs.l, 0);
	assert_int_equal(sregs.cs.base, 0);
	assert_int_equal(sregs.cs.limit, 0xFFFFFFFF);
	assert_int_equal(sregs.ds.selector, 0x18);
	assert_int_equal(sregs.ss.db, 1);
	assert_int_equal(sregs.cr0 & 0x80000001, 0x1); /* PE, no paging */
	assert_int_equal(sregs.cr4, 0);
	assert_int_equal(sregs.efer & 0x500, 0);
	assert_int_equal(sregs.tr.limit, 0x67);
	assert_int_equal(sregs.tr.type, 11);
}

static void test_pvh(void **state)
{
	struct fixture *f = fx_new(RAM_SIZE);
	const uint8_t *si = f->ram + 0x7000;
	size_t len;
	uint8_t *img = make_pvh(PVH_LOAD, 8, true, &len), *initrd;
	struct kvm_regs regs = { 0 };
	uint64_t mod;

	fx_kernel(f, img, len);
	initrd = fx_initrd(f, 10000);
	assert_int_equal(config_set(&f->cfg, "boot.cmdline", "pvh cmdline"), 0);
	memset(f->ram + PVH_LOAD, 0xAA, PVH_MEMSZ); /* bss must come out zero */
	assert_int_equal(fx_load(f), 0);
	/* Segment at p_paddr, bss zeroed. */
	assert_memory_equal(f->ram + PVH_LOAD, img + PVH_SEG_OFF, PVH_FILESZ);
	for (size_t i = PVH_FILESZ; i < PVH_MEMSZ; i++)
		assert_int_equal(f->ram[PVH_LOAD + i], 0);
	/* hvm_start_info. */
	assert_int_equal(get32(si, 0), 0x336ec578);
	assert_int_equal(get32(si, 4), 1); /* version */
	assert_string_equal((const char *)f->ram + get64(si, 24), "pvh cmdline");
	assert_int_equal(get64(si, 32), 0xE0000); /* rsdp_paddr */
	check_e820_table(f->ram + get64(si, 40), get32(si, 48), 24, 16);
	assert_int_equal(get32(si, 12), 1); /* nr_modules */
	mod = get64(si, 16);
	assert_int_equal(get64(f->ram, mod + 8), 10000);
	assert_int_equal(get64(f->ram, mod) % 4096, 0);
	assert_memory_equal(f->ram + get64(f->ram, mod), initrd, 10000);
	/* Entry. */
	assert_int_equal(f->entry.rip, PVH_ENTRY);
	assert_int_equal(f->entry.rbx, 0x7000);
	check_32bit_entry(f);
	boot_setup_regs(&f->entry, &regs);
	assert_int_equal(regs.rbx, 0x7000);
	assert_int_equal(regs.rip, PVH_ENTRY);
	assert_int_equal(regs.rflags, 2);
	free(initrd);
	free(img);
	fx_free(f);
}

/* A 4-byte note descriptor (as Linux writes it), no initrd, no command line. */
static void test_pvh_note4_no_initrd(void **state)
{
	struct fixture *f = fx_new(RAM_SIZE);
	const uint8_t *si = f->ram + 0x7000;

	fx_pvh(f, PVH_LOAD, 4, true);
	assert_int_equal(fx_load(f), 0);
	assert_int_equal(f->entry.rip, PVH_ENTRY);
	assert_int_equal(get32(si, 12), 0);
	assert_string_equal((const char *)f->ram + get64(si, 24), "");
	fx_free(f);
}

static void test_pvh_refusals(void **state)
{
	struct fixture *f = fx_new(RAM_SIZE);
	char *big = malloc(70000);

	/* An ELF without the note and without a multiboot header. */
	fx_pvh(f, PVH_LOAD, 8, false);
	fx_refused(f, -ENOEXEC, "not a Linux bzImage, PVH ELF or multiboot kernel");
	/* Segments over the boot data, or outside RAM. */
	fx_pvh(f, 0x7000, 8, true);
	fx_refused(f, -ENOSPC, "overlaps the boot information");
	fx_pvh(f, RAM_SIZE - 0x1000, 8, true);
	fx_refused(f, -ENOSPC, "does not fit in guest RAM");
	/* Entry outside the loaded segment. */
	fx_pvh(f, 2 * MiB, 8, true);
	fx_refused(f, -ENOEXEC, "entry point 0x100010 is outside the loaded kernel");
	/* Command line over 64 KiB. */
	fx_pvh(f, PVH_LOAD, 8, true);
	memset(big, 'x', 69999);
	big[69999] = 0;
	assert_int_equal(config_set(&f->cfg, "boot.cmdline", big), 0);
	fx_refused(f, -E2BIG, "boot.cmdline is 69999 bytes; this kernel accepts at most 65535");
	free(big);
	fx_free(f);
}

/* ---- multiboot ---- */

#define MB_LOAD 0x100000U
#define MB_FILESZ 0x3000U
#define MB_BSS_END (MB_LOAD + 0x5000U)
#define MB_ENTRY (MB_LOAD + 0x20U)

static void put_mb_header(uint8_t *p, uint32_t flags)
{
	put32(p, 0, 0x1BADB002);
	put32(p, 4, flags);
	put32(p, 8, (uint32_t) - (0x1BADB002u + flags));
}

/* a.out kludge: header at file offset 0x40 says where the file goes. */
static uint8_t *make_mb_aout(uint32_t flags, size_t *len)
{
	uint8_t *img = malloc(MB_FILESZ);
	uint8_t *h = img + 0x40;

	assert_non_null(img);
	fill(img, MB_FILESZ, 17);
	put_mb_header(h, flags);
	put32(h, 12, MB_LOAD + 0x40); /* header_addr */
	put32(h, 16, MB_LOAD);	      /* load_addr */
	put32(h, 20, 0);	      /* load_end_addr: whole file */
	put32(h, 24, MB_BSS_END);
	put32(h, 28, MB_ENTRY);
	*len = MB_FILESZ;
	return img;
}

static void check_mbi(struct fixture *f, const uint8_t *initrd, size_t initrd_len)
{
	const uint8_t *mbi = f->ram + 0x7000;
	uint32_t flags = get32(mbi, 0), mods;

	assert_int_equal(f->entry.rax, 0x2BADB002);
	assert_int_equal(f->entry.rbx, 0x7000);
	assert_true(flags & (1u << 0)); /* mem_* */
	assert_int_equal(get32(mbi, 4), 639);
	assert_int_equal(get32(mbi, 8), (RAM_SIZE - MiB) / 1024);
	assert_true(flags & (1u << 2)); /* cmdline */
	assert_string_equal((const char *)f->ram + get32(mbi, 16), "mb args");
	assert_true(flags & (1u << 6)); /* mmap */
	check_e820_table(f->ram + get32(mbi, 48) + 4, get32(mbi, 44) / 24, 24, 16);
	for (uint32_t off = 0; off < get32(mbi, 44); off += 24)
		assert_int_equal(get32(f->ram + get32(mbi, 48), off), 20); /* size field */
	assert_true(flags & (1u << 9));					   /* loader name */
	assert_string_equal((const char *)f->ram + get32(mbi, 64), "khyve");
	if (!initrd) {
		assert_int_equal(get32(mbi, 20), 0);
		return;
	}
	assert_true(flags & (1u << 3)); /* mods */
	assert_int_equal(get32(mbi, 20), 1);
	mods = get32(mbi, 24);
	assert_int_equal(get32(f->ram, mods) % 4096, 0); /* page aligned */
	assert_int_equal(get32(f->ram, mods + 4) - get32(f->ram, mods), initrd_len);
	assert_memory_equal(f->ram + get32(f->ram, mods), initrd, initrd_len);
	assert_string_equal((const char *)f->ram + get32(f->ram, mods + 8), "initrd.img");
}

static void test_multiboot_aout(void **state)
{
	struct fixture *f = fx_new(RAM_SIZE);
	size_t len;
	uint8_t *img = make_mb_aout(0x00010003, &len), *initrd;

	fx_kernel(f, img, len);
	initrd = fx_initrd(f, 4097);
	assert_int_equal(config_set(&f->cfg, "boot.cmdline", "mb args"), 0);
	memset(f->ram + MB_LOAD, 0xAA, MB_BSS_END - MB_LOAD);
	assert_int_equal(fx_load(f), 0);
	assert_memory_equal(f->ram + MB_LOAD, img, MB_FILESZ);
	for (uint32_t a = MB_LOAD + MB_FILESZ; a < MB_BSS_END; a++)
		assert_int_equal(f->ram[a], 0);
	assert_int_equal(f->entry.rip, MB_ENTRY);
	check_mbi(f, initrd, 4097);
	check_32bit_entry(f);
	free(initrd);
	free(img);
	fx_free(f);
}

/* ELF32 with a segment linked at 3 GiB + 1 MiB and loaded at 1 MiB: the entry is translated. */
static void test_multiboot_elf(void **state)
{
	struct fixture *f = fx_new(RAM_SIZE);
	size_t size = 0x1000 + MB_FILESZ;
	uint8_t *img = calloc(1, size);
	Elf32_Ehdr *eh = (Elf32_Ehdr *)img;
	Elf32_Phdr *ph = (Elf32_Phdr *)(img + sizeof(*eh));

	assert_non_null(img);
	memcpy(eh->e_ident, ELFMAG, SELFMAG);
	eh->e_ident[EI_CLASS] = ELFCLASS32;
	eh->e_ident[EI_DATA] = ELFDATA2LSB;
	eh->e_ident[EI_VERSION] = EV_CURRENT;
	eh->e_type = ET_EXEC;
	eh->e_machine = EM_386;
	eh->e_version = EV_CURRENT;
	eh->e_entry = 0xC0100010;
	eh->e_phoff = sizeof(*eh);
	eh->e_ehsize = sizeof(*eh);
	eh->e_phentsize = sizeof(*ph);
	eh->e_phnum = 1;
	ph[0] = (Elf32_Phdr){ .p_type = PT_LOAD,
			      .p_offset = 0x1000,
			      .p_vaddr = 0xC0100000,
			      .p_paddr = MB_LOAD,
			      .p_filesz = MB_FILESZ,
			      .p_memsz = MB_FILESZ,
			      .p_align = 4096 };
	fill(img + 0x1000, MB_FILESZ, 5);
	put_mb_header(img + 0x1000 + 0x100, 0x00000003); /* within the first 8 KiB */
	fx_kernel(f, img, size);
	assert_int_equal(config_set(&f->cfg, "boot.cmdline", "mb args"), 0);
	assert_int_equal(fx_load(f), 0);
	assert_memory_equal(f->ram + MB_LOAD, img + 0x1000, MB_FILESZ);
	assert_int_equal(f->entry.rip, MB_LOAD + 0x10);
	check_mbi(f, NULL, 0);
	free(img);
	fx_free(f);
}

static void test_multiboot_refusals(void **state)
{
	struct fixture *f = fx_new(RAM_SIZE);
	size_t len;
	uint8_t *img;

	/* Requires a video mode (flag 2): the spec says refuse. */
	img = make_mb_aout(0x00010007, &len);
	fx_kernel(f, img, len);
	fx_refused(f, -ENOTSUP, "a video mode");
	/* Bad checksum: no multiboot header at all. */
	put32(img, 0x48, 0);
	fx_kernel(f, img, len);
	fx_refused(f, -ENOEXEC, "not a Linux bzImage, PVH ELF or multiboot kernel");
	free(img);
	/* Not ELF and no addresses. */
	img = make_mb_aout(0x00000003, &len);
	fx_kernel(f, img, len);
	fx_refused(f, -ENOEXEC, "header flag 16");
	free(img);
	/* load_end beyond the file. */
	img = make_mb_aout(0x00010003, &len);
	put32(img + 0x40, 20, MB_LOAD + MB_FILESZ + 0x1000);
	fx_kernel(f, img, len);
	fx_refused(f, -ENOEXEC, "truncated multiboot kernel");
	free(img);
	fx_free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bzimage_boot_params),
		cmocka_unit_test(test_bzimage_entry),
		cmocka_unit_test(test_bzimage_relocates),
		cmocka_unit_test(test_bzimage_initrd_addr_max),
		cmocka_unit_test(test_bzimage_refusals),
		cmocka_unit_test(test_not_a_kernel),
		cmocka_unit_test(test_initrd_refusals),
		cmocka_unit_test(test_ram_too_small),
		cmocka_unit_test(test_pvh),
		cmocka_unit_test(test_pvh_note4_no_initrd),
		cmocka_unit_test(test_pvh_refusals),
		cmocka_unit_test(test_multiboot_aout),
		cmocka_unit_test(test_multiboot_elf),
		cmocka_unit_test(test_multiboot_refusals),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
