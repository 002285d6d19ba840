// SPDX-License-Identifier: BSD-2-Clause
/*
 * Kernel loaders.  The kernel file is mapped read-only and every offset, size and address in
 * it is checked before use: against the file's size, against guest RAM, and against the areas
 * doc/platform.md keeps for boot data and firmware, so that a corrupt or hostile image is
 * refused with a message instead of writing outside what it may use.
 *
 * Protocols, from their documentation:
 *  - Linux: Documentation/arch/x86/boot.rst, "64-bit boot protocol";
 *  - PVH: Xen's docs/misc/pvh.pandoc;
 *  - Multiboot: the Multiboot Specification 0.6.96.
 */
#include "arch/x86/boot.h"
#include "arch/x86/cpuid.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arch/x86/bootparam.h"
#include "arch/x86/e820.h"
#include "config.h"
#include "log.h"
#include "vm.h"

#define PAGE_SIZE 4096ULL
#define PAGE_ALIGN_DOWN(x) ((x) & ~(PAGE_SIZE - 1))

#define LINUX_MIN_VERSION 0x0206  /* cmdline_size; 2.6.20 */
#define LINUX_XLF_VERSION 0x020C  /* xloadflags */
#define LINUX_RSDP_VERSION 0x020E /* boot_params.acpi_rsdp_addr */
#define LINUX_ENTRY64 0x200	  /* 64-bit entry: load address + 0x200 */
#define LINUX_INITRD_MAX_OLD 0x37FFFFFF
/* The 64-bit path never runs the real-mode setup code; this is the customary value. */
#define LINUX_HEAP_END 0xFE00

/* Inside the BOOT_INFO_ADDR page, after the zero page / start_info / multiboot info. */
#define INFO_MODLIST (BOOT_INFO_ADDR + 0x100)
#define INFO_MODNAME (BOOT_INFO_ADDR + 0x140)
#define INFO_MODNAME_MAX 64
#define INFO_LOADER_NAME (BOOT_INFO_ADDR + 0x180)
#define INFO_MEMMAP (BOOT_INFO_ADDR + 0x200)

#define BOOT_GDT_ENTRIES 6
#define BOOT_GDT_SIZE (BOOT_GDT_ENTRIES * 8)

#define PTE_P (1ULL << 0)
#define PTE_RW (1ULL << 1)
#define PTE_PS (1ULL << 7)

#define CR0_PE (1ULL << 0)
#define CR0_NW (1ULL << 29)
#define CR0_CD (1ULL << 30)
#define CR0_PG (1ULL << 31)
#define CR4_PAE (1ULL << 5)
#define EFER_LME (1ULL << 8)
#define EFER_LMA (1ULL << 10)

struct boot_ctx {
	struct vm *vm;
	char *err;
	size_t errlen;
	const char *key, *file; /* what an error message names */
	const char *path;	/* boot.kernel */
	const uint8_t *img;	/* its contents, mapped read-only */
	size_t size;
	const char *cmdline;
	const char *initrd; /* boot.initrd, or NULL */
	uint64_t lowmem_end;
	struct e820_entry e820[E820_MAX_ENTRIES];
	unsigned ne820;
	uint64_t kernel_start, kernel_end; /* guest range the loaded kernel occupies */
	uint64_t initrd_addr, initrd_size;
};

/* Areas a kernel or initrd may not overwrite: the loaders' own data and the firmware's. */
static const struct {
	uint64_t start, end;
	const char *what;
} boot_reserved[] = {
	{ BOOT_GDT_ADDR, BOOT_GDT_ADDR + BOOT_GDT_SIZE, "boot GDT" },
	{ BOOT_INFO_ADDR, BOOT_PGTABLE_END, "boot information and page tables" },
	{ BOOT_CMDLINE_ADDR, BOOT_CMDLINE_ADDR + BOOT_CMDLINE_MAX, "command line" },
	{ EBDA_BASE, 1 * MiB, "BIOS area and ACPI tables" },
};

static const uint64_t boot_gdt[BOOT_GDT_ENTRIES] = {
	0,
	0x00CF9B000000FFFFULL, /* 0x08: code, 32-bit, base 0, limit 4 GiB, read/execute */
	0x00AF9B000000FFFFULL, /* 0x10: code, 64-bit (L), base 0, limit 4 GiB */
	0x00CF93000000FFFFULL, /* 0x18: data, base 0, limit 4 GiB, read/write */
	0x00008B0000000067ULL, /* 0x20: TSS (busy), base 0, limit 0x67 */
	0,		       /* its upper half when read as a 64-bit TSS descriptor */
};

static int __attribute__((format(printf, 3, 4)))
boot_err(struct boot_ctx *c, int ret, const char *fmt, ...)
{
	va_list ap;
	int n;

	n = snprintf(c->err, c->errlen, "%s %s: ", c->key, c->file);
	if (n >= 0 && (size_t)n < c->errlen) {
		va_start(ap, fmt);
		vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
		va_end(ap);
	}
	return ret;
}

static unsigned long long mib(uint64_t v)
{
	return (unsigned long long)(v >> 20);
}

/* [gpa, gpa+len) must be guest RAM and clear of the reserved areas. */
static int boot_check(struct boot_ctx *c, uint64_t gpa, uint64_t len, const char *what)
{
	unsigned long long s = gpa, e = gpa + len;

	if (!len)
		return 0;
	if (len > UINT64_MAX - gpa || !vm_gpa(c->vm, gpa, len))
		return boot_err(c, -ENOSPC,
				"%s at 0x%llx-0x%llx does not fit in guest RAM "
				"(%llu MiB)",
				what, s, e - 1, mib(c->vm->ram_size));
	for (unsigned i = 0; i < sizeof(boot_reserved) / sizeof(boot_reserved[0]); i++) {
		if (gpa < boot_reserved[i].end && boot_reserved[i].start < gpa + len)
			return boot_err(c, -ENOSPC,
					"%s at 0x%llx-0x%llx overlaps the %s at "
					"0x%llx-0x%llx",
					what, s, e - 1, boot_reserved[i].what,
					(unsigned long long)boot_reserved[i].start,
					(unsigned long long)boot_reserved[i].end - 1);
	}
	return 0;
}

static int boot_cmdline(struct boot_ctx *c, uint64_t max)
{
	size_t len = strlen(c->cmdline);
	char *dst;

	if (max > BOOT_CMDLINE_MAX - 1)
		max = BOOT_CMDLINE_MAX - 1;
	if (len > max)
		return boot_err(c, -E2BIG,
				"boot.cmdline is %zu bytes; this kernel accepts at most "
				"%llu",
				len, (unsigned long long)max);
	dst = vm_gpa(c->vm, BOOT_CMDLINE_ADDR, len + 1);
	if (!dst)
		return boot_err(c, -ENOSPC, "no guest RAM for the command line");
	memcpy(dst, c->cmdline, len + 1);
	return 0;
}

/* Reads all of @fd into guest memory at @dst. */
static int boot_read_all(int fd, uint8_t *dst, uint64_t size)
{
	uint64_t done = 0;

	while (done < size) {
		ssize_t n = pread(fd, dst + done, size - done, (off_t)done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO; /* the file shrank under us */
		done += (uint64_t)n;
	}
	return 0;
}

/* The initrd goes page-aligned at the top of RAM below @limit, above the kernel. */
static int boot_initrd_place(struct boot_ctx *c, int fd, uint64_t size, uint64_t limit)
{
	uint64_t addr;
	int ret;

	if (limit > c->lowmem_end)
		limit = c->lowmem_end;
	addr = size <= limit ? PAGE_ALIGN_DOWN(limit - size) : 0;
	if (size > limit || addr < c->kernel_end || addr < 1 * MiB)
		return boot_err(c, -ENOSPC,
				"%llu bytes do not fit between the kernel's end "
				"(0x%llx) and 0x%llx; give the guest more memory",
				(unsigned long long)size, (unsigned long long)c->kernel_end,
				(unsigned long long)limit);
	ret = boot_check(c, addr, size, "initrd");
	if (ret)
		return ret;
	ret = boot_read_all(fd, vm_gpa(c->vm, addr, size), size);
	if (ret)
		return boot_err(c, ret, "%s",
				ret == -EIO ? "file shrank while being read" : strerror(-ret));
	c->initrd_addr = addr;
	c->initrd_size = size;
	return 0;
}

static int boot_initrd(struct boot_ctx *c, uint64_t limit)
{
	struct stat st;
	int fd, ret;

	if (!c->initrd)
		return 0;
	c->key = "boot.initrd";
	c->file = c->initrd;
	fd = open(c->initrd, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return boot_err(c, -errno, "%s", strerror(errno));
	if (fstat(fd, &st) < 0)
		ret = boot_err(c, -errno, "%s", strerror(errno));
	else if (!S_ISREG(st.st_mode))
		ret = boot_err(c, -EINVAL, "not a regular file");
	else if (st.st_size == 0)
		ret = boot_err(c, -EINVAL, "empty file");
	else
		ret = boot_initrd_place(c, fd, (uint64_t)st.st_size, limit);
	close(fd);
	if (!ret) {
		c->key = "boot.kernel";
		c->file = c->path;
	}
	return ret;
}

static void *boot_info_page(struct boot_ctx *c)
{
	void *p = vm_gpa(c->vm, BOOT_INFO_ADDR, PAGE_SIZE);

	memset(p, 0, PAGE_SIZE);
	return p;
}

/* Identity map of 0..4 GiB: 2 MiB pages for the first 2 GiB, 1 GiB pages above. */
static void boot_pagetables(struct boot_ctx *c)
{
	uint64_t *pml4 = vm_gpa(c->vm, BOOT_PGTABLE_ADDR, BOOT_PGTABLE_END - BOOT_PGTABLE_ADDR);
	uint64_t *pdpt = pml4 + 512, *pd = pml4 + 1024;

	memset(pml4, 0, BOOT_PGTABLE_END - BOOT_PGTABLE_ADDR);
	pml4[0] = (BOOT_PGTABLE_ADDR + 0x1000) | PTE_P | PTE_RW;
	/*
	 * Two page directories fit in the area doc/platform.md gives; a guest with up to 2 GiB
	 * of RAM then never depends on 1 GiB page support, and larger guests' kernels build
	 * their own tables before they touch memory that high.
	 */
	pdpt[0] = (BOOT_PGTABLE_ADDR + 0x2000) | PTE_P | PTE_RW;
	pdpt[1] = (BOOT_PGTABLE_ADDR + 0x3000) | PTE_P | PTE_RW;
	pdpt[2] = (2 * GiB) | PTE_P | PTE_RW | PTE_PS;
	pdpt[3] = (3 * GiB) | PTE_P | PTE_RW | PTE_PS;
	for (uint64_t i = 0; i < 1024; i++)
		pd[i] = (i * 2 * MiB) | PTE_P | PTE_RW | PTE_PS;
}

static void boot_write_gdt(struct boot_ctx *c, struct boot_entry *e)
{
	memcpy(vm_gpa(c->vm, BOOT_GDT_ADDR, BOOT_GDT_SIZE), boot_gdt, BOOT_GDT_SIZE);
	e->gdt_base = BOOT_GDT_ADDR;
	e->gdt_limit = BOOT_GDT_SIZE - 1;
	e->rsp = BOOT_STACK_TOP;
}

/* ---- Linux bzImage ---- */

static bool linux_fits(const struct boot_ctx *c, uint64_t load, uint64_t need)
{
	return load >= 1 * MiB && load <= c->lowmem_end && need <= c->lowmem_end - load;
}

static int linux_check(struct boot_ctx *c, const struct setup_header *h, uint64_t *setup_size)
{
	unsigned sects = h->setup_sects ? h->setup_sects : SETUP_SECTS_DEFAULT;
	uint64_t hdr_end = 0x202 + (uint64_t)c->img[0x201];

	if (h->version < LINUX_MIN_VERSION)
		return boot_err(c, -ENOEXEC,
				"Linux boot protocol %u.%02u is too old; khyve needs "
				"2.06 or later",
				h->version >> 8, h->version & 0xFF);
	if (h->version < LINUX_XLF_VERSION || !(h->xloadflags & XLF_KERNEL_64))
		return boot_err(
			c, -ENOEXEC,
			"this bzImage has no 64-bit entry point "
			"(XLF_KERNEL_64, boot protocol %u.%02u): khyve boots 64-bit kernels",
			h->version >> 8, h->version & 0xFF);
	if (h->boot_flag != SETUP_BOOT_FLAG)
		return boot_err(c, -ENOEXEC, "bad bzImage: no 0xAA55 boot flag at 0x1FE");
	*setup_size = (sects + 1ULL) * 512;
	if (hdr_end > *setup_size || *setup_size > c->size ||
	    (uint64_t)h->syssize * 16 > c->size - *setup_size)
		return boot_err(c, -ENOEXEC,
				"truncated bzImage: the header describes %llu bytes, "
				"the file has %zu",
				(unsigned long long)(*setup_size + (uint64_t)h->syssize * 16),
				c->size);
	return 0;
}

/* At pref_address when the kernel fits there, else as low as its alignment allows. */
static int linux_place(struct boot_ctx *c, const struct setup_header *h, uint64_t need,
		       uint64_t *load)
{
	uint64_t align = h->kernel_alignment;

	*load = h->pref_address ? h->pref_address : 1 * MiB;
	if (linux_fits(c, *load, need))
		return 0;
	if (!h->relocatable_kernel)
		return boot_err(c, -ENOSPC,
				"the kernel (not relocatable) needs %llu MiB at 0x%llx, "
				"beyond the guest's %llu MiB of RAM",
				mib(need + MiB - 1), (unsigned long long)*load,
				mib(c->vm->ram_size));
	if (align < PAGE_SIZE || align > GiB || (align & (align - 1)))
		return boot_err(c, -ENOEXEC, "bad kernel_alignment 0x%llx",
				(unsigned long long)align);
	*load = (1 * MiB + align - 1) & ~(align - 1);
	if (linux_fits(c, *load, need))
		return 0;
	return boot_err(c, -ENOSPC,
			"the kernel needs %llu MiB of RAM from 0x%llx (init_size), "
			"more than the guest's %llu MiB; give it more memory",
			mib(need + MiB - 1), (unsigned long long)*load, mib(c->vm->ram_size));
}

static void linux_boot_params(struct boot_ctx *c, struct boot_params *bp, uint64_t load)
{
	struct setup_header *h = &bp->hdr;

	h->type_of_loader = LOADER_TYPE_UNDEFINED;
	h->loadflags |= LOADED_HIGH | CAN_USE_HEAP;
	h->heap_end_ptr = LINUX_HEAP_END;
	h->code32_start = (uint32_t)load;
	h->cmd_line_ptr = (uint32_t)BOOT_CMDLINE_ADDR;
	bp->ext_cmd_line_ptr = 0;
	h->ramdisk_image = (uint32_t)c->initrd_addr;
	h->ramdisk_size = (uint32_t)c->initrd_size;
	bp->ext_ramdisk_image = (uint32_t)(c->initrd_addr >> 32);
	bp->ext_ramdisk_size = (uint32_t)(c->initrd_size >> 32);
	h->hardware_subarch = 0; /* a normal PC */
	h->hardware_subarch_data = 0;
	h->setup_data = 0;
	if (h->version >= LINUX_RSDP_VERSION)
		bp->acpi_rsdp_addr = ACPI_TABLES_BASE;
	bp->e820_entries = (uint8_t)c->ne820;
	for (unsigned i = 0; i < c->ne820; i++) {
		bp->e820_table[i].addr = c->e820[i].addr;
		bp->e820_table[i].size = c->e820[i].size;
		bp->e820_table[i].type = c->e820[i].type;
	}
}

/* Bytes of the setup header the kernel announces, capped at @cap (from offset 0x1F1). */
static uint64_t linux_hdr_len(const struct boot_ctx *c, uint64_t cap)
{
	uint64_t end = 0x202 + (uint64_t)c->img[0x201];

	if (end > c->size)
		end = c->size;
	return (end < cap ? end : cap) - SETUP_HDR_OFFSET;
}

static int linux_load(struct boot_ctx *c, struct boot_entry *e)
{
	uint64_t setup_size = 0, ksize, need, load = 0;
	struct boot_params *bp;
	struct setup_header h;
	int ret;

	/* Fields past the header's announced end are setup code, not header: keep them 0. */
	memset(&h, 0, sizeof(h));
	memcpy(&h, c->img + SETUP_HDR_OFFSET, linux_hdr_len(c, SETUP_HDR_OFFSET + sizeof(h)));
	ret = linux_check(c, &h, &setup_size);
	if (ret)
		return ret;
	ksize = c->size - setup_size;
	need = h.init_size > ksize ? h.init_size : ksize;
	ret = boot_cmdline(c, h.cmdline_size);
	if (!ret)
		ret = linux_place(c, &h, need, &load);
	if (ret)
		return ret;
	memcpy(vm_gpa(c->vm, load, ksize), c->img + setup_size, ksize);
	c->kernel_start = load;
	c->kernel_end = load + need;
	ret = boot_initrd(c, (uint64_t)h.initrd_addr_max + 1);
	if (ret)
		return ret;

	bp = boot_info_page(c);
	/* The header as the kernel wrote it, up to where boot_params' next field starts. */
	memcpy(&bp->hdr, c->img + SETUP_HDR_OFFSET,
	       linux_hdr_len(c, offsetof(struct boot_params, edd_mbr_sig_buffer)));
	linux_boot_params(c, bp, load);
	boot_pagetables(c);
	e->long_mode = true;
	e->rip = load + LINUX_ENTRY64;
	e->rsi = BOOT_INFO_ADDR;
	e->cr3 = BOOT_PGTABLE_ADDR;
	return 0;
}

/* ---- ELF (PVH, and multiboot kernels without load addresses) ---- */

struct elf_image {
	bool is64;
	uint64_t entry, phoff;
	unsigned phnum, phentsize;
};

struct elf_seg {
	uint32_t type;
	uint64_t offset, vaddr, paddr, filesz, memsz, align;
};

/* 1: an x86 ELF with sane program headers; 0: not ELF; < 0: refused, message set. */
static int elf_open(struct boot_ctx *c, struct elf_image *e)
{
	Elf64_Ehdr h64;
	Elf32_Ehdr h32;
	size_t need;

	if (c->size < EI_NIDENT || memcmp(c->img, ELFMAG, SELFMAG))
		return 0;
	if (c->img[EI_DATA] != ELFDATA2LSB)
		return boot_err(c, -ENOEXEC, "not a little-endian ELF");
	if (c->img[EI_CLASS] == ELFCLASS64 && c->size >= sizeof(h64)) {
		memcpy(&h64, c->img, sizeof(h64));
		if (h64.e_machine != EM_X86_64)
			return boot_err(c, -ENOEXEC, "ELF for machine %u, not x86-64",
					h64.e_machine);
		*e = (struct elf_image){ true, h64.e_entry, h64.e_phoff, h64.e_phnum,
					 h64.e_phentsize };
		need = sizeof(Elf64_Phdr);
	} else if (c->img[EI_CLASS] == ELFCLASS32 && c->size >= sizeof(h32)) {
		memcpy(&h32, c->img, sizeof(h32));
		if (h32.e_machine != EM_386)
			return boot_err(c, -ENOEXEC, "ELF for machine %u, not i386", h32.e_machine);
		*e = (struct elf_image){ false, h32.e_entry, h32.e_phoff, h32.e_phnum,
					 h32.e_phentsize };
		need = sizeof(Elf32_Phdr);
	} else {
		return boot_err(c, -ENOEXEC, "truncated or unknown-class ELF");
	}
	if (!e->phnum || e->phentsize < need || e->phoff > c->size ||
	    (uint64_t)e->phnum * e->phentsize > c->size - e->phoff)
		return boot_err(c, -ENOEXEC, "bad ELF program headers (%u at 0x%llx)", e->phnum,
				(unsigned long long)e->phoff);
	return 1;
}

static void elf_seg(const struct boot_ctx *c, const struct elf_image *e, unsigned i,
		    struct elf_seg *s)
{
	const uint8_t *p = c->img + e->phoff + (uint64_t)i * e->phentsize;
	Elf64_Phdr p64;
	Elf32_Phdr p32;

	if (e->is64) {
		memcpy(&p64, p, sizeof(p64));
		*s = (struct elf_seg){ p64.p_type,   p64.p_offset, p64.p_vaddr, p64.p_paddr,
				       p64.p_filesz, p64.p_memsz,  p64.p_align };
	} else {
		memcpy(&p32, p, sizeof(p32));
		*s = (struct elf_seg){ p32.p_type,   p32.p_offset, p32.p_vaddr, p32.p_paddr,
				       p32.p_filesz, p32.p_memsz,  p32.p_align };
	}
}

static uint32_t img_le32(const struct boot_ctx *c, uint64_t off)
{
	uint32_t v;

	memcpy(&v, c->img + off, 4);
	return v;
}

/* Looks for XEN_ELFNOTE_PHYS32_ENTRY in one PT_NOTE segment; 1 when found. */
static int pvh_note_in(const struct boot_ctx *c, const struct elf_seg *s, uint64_t *entry)
{
	uint64_t align = s->align == 8 ? 8 : 4;
	uint64_t p = s->offset, end = s->offset + s->filesz;

	while (end - p >= 12) {
		uint32_t namesz = img_le32(c, p), descsz = img_le32(c, p + 4);
		uint32_t type = img_le32(c, p + 8);
		uint64_t name = p + 12;
		uint64_t desc = name + ((namesz + align - 1) & ~(align - 1));
		uint64_t next = desc + ((descsz + align - 1) & ~(align - 1));

		if (desc > end || descsz > end - desc)
			return 0; /* malformed: stop reading this segment */
		if (namesz == 4 && !memcmp(c->img + name, "Xen", 4) &&
		    type == XEN_ELFNOTE_PHYS32_ENTRY && (descsz == 4 || descsz == 8)) {
			*entry = img_le32(c, desc);
			if (descsz == 8)
				*entry |= (uint64_t)img_le32(c, desc + 4) << 32;
			return 1;
		}
		if (next > end)
			return 0;
		p = next;
	}
	return 0;
}

static bool pvh_find_entry(const struct boot_ctx *c, const struct elf_image *e, uint64_t *entry)
{
	struct elf_seg s;

	for (unsigned i = 0; i < e->phnum; i++) {
		elf_seg(c, e, i, &s);
		if (s.type != PT_NOTE || s.offset > c->size || s.filesz > c->size - s.offset)
			continue;
		if (pvh_note_in(c, &s, entry))
			return true;
	}
	return false;
}

/* The 32-bit protocols start with paging off: everything must be below 4 GiB. */
static int elf_load_seg(struct boot_ctx *c, unsigned i, const struct elf_seg *s)
{
	char what[32];
	uint8_t *dst;
	int ret;

	snprintf(what, sizeof(what), "ELF segment %u", i);
	if (s->filesz > s->memsz)
		return boot_err(c, -ENOEXEC, "%s: p_filesz 0x%llx exceeds p_memsz 0x%llx", what,
				(unsigned long long)s->filesz, (unsigned long long)s->memsz);
	if (s->offset > c->size || s->filesz > c->size - s->offset)
		return boot_err(c, -ENOEXEC, "truncated ELF: %s ends at 0x%llx, the file at 0x%zx",
				what, (unsigned long long)(s->offset + s->filesz), c->size);
	if (s->paddr >= 4 * GiB || s->memsz > 4 * GiB - s->paddr)
		return boot_err(c, -ENOEXEC, "%s at 0x%llx is not below 4 GiB", what,
				(unsigned long long)s->paddr);
	ret = boot_check(c, s->paddr, s->memsz, what);
	if (ret)
		return ret;
	dst = vm_gpa(c->vm, s->paddr, s->memsz);
	memcpy(dst, c->img + s->offset, s->filesz);
	memset(dst + s->filesz, 0, s->memsz - s->filesz); /* bss */
	if (s->paddr < c->kernel_start)
		c->kernel_start = s->paddr;
	if (s->paddr + s->memsz > c->kernel_end)
		c->kernel_end = s->paddr + s->memsz;
	return 0;
}

static int elf_load(struct boot_ctx *c, const struct elf_image *e)
{
	unsigned loaded = 0;
	struct elf_seg s;
	int ret;

	c->kernel_start = UINT64_MAX;
	c->kernel_end = 0;
	for (unsigned i = 0; i < e->phnum; i++) {
		elf_seg(c, e, i, &s);
		if (s.type != PT_LOAD || !s.memsz)
			continue;
		ret = elf_load_seg(c, i, &s);
		if (ret)
			return ret;
		loaded++;
	}
	if (!loaded)
		return boot_err(c, -ENOEXEC, "ELF without a loadable segment");
	return 0;
}

/* Multiboot's ELF entry is virtual when the segment holding it is linked elsewhere. */
static uint64_t elf_entry_phys(const struct boot_ctx *c, const struct elf_image *e)
{
	struct elf_seg s;

	for (unsigned i = 0; i < e->phnum; i++) {
		elf_seg(c, e, i, &s);
		if (s.type == PT_LOAD && e->entry >= s.vaddr && e->entry - s.vaddr < s.memsz)
			return e->entry - s.vaddr + s.paddr;
	}
	return e->entry;
}

static int boot_check_entry(struct boot_ctx *c, uint64_t entry)
{
	if (entry < c->kernel_start || entry >= c->kernel_end)
		return boot_err(c, -ENOEXEC,
				"entry point 0x%llx is outside the loaded kernel "
				"(0x%llx-0x%llx)",
				(unsigned long long)entry, (unsigned long long)c->kernel_start,
				(unsigned long long)c->kernel_end - 1);
	return 0;
}

/* ---- PVH ---- */

static void pvh_start_info(struct boot_ctx *c)
{
	struct hvm_start_info *si = boot_info_page(c);
	struct hvm_memmap_table_entry *mm;
	struct hvm_modlist_entry *mod;

	si->magic = HVM_START_MAGIC;
	si->version = 1;
	si->cmdline_paddr = BOOT_CMDLINE_ADDR;
	si->rsdp_paddr = ACPI_TABLES_BASE;
	si->memmap_paddr = INFO_MEMMAP;
	si->memmap_entries = c->ne820;
	mm = vm_gpa(c->vm, INFO_MEMMAP, c->ne820 * sizeof(*mm));
	for (unsigned i = 0; i < c->ne820; i++)
		mm[i] = (struct hvm_memmap_table_entry){ .addr = c->e820[i].addr,
							 .size = c->e820[i].size,
							 .type = c->e820[i].type };
	if (c->initrd_size) {
		si->nr_modules = 1;
		si->modlist_paddr = INFO_MODLIST;
		mod = vm_gpa(c->vm, INFO_MODLIST, sizeof(*mod));
		mod->paddr = c->initrd_addr;
		mod->size = c->initrd_size;
	}
}

static int pvh_load(struct boot_ctx *c, const struct elf_image *elf, uint64_t entry,
		    struct boot_entry *e)
{
	int ret = boot_cmdline(c, BOOT_CMDLINE_MAX - 1);

	ret = ret ? ret : elf_load(c, elf);
	ret = ret ? ret : boot_check_entry(c, entry);
	ret = ret ? ret : boot_initrd(c, c->lowmem_end);
	if (ret)
		return ret;
	pvh_start_info(c);
	e->rip = entry;
	e->rbx = BOOT_INFO_ADDR;
	return 0;
}

/* ---- Multiboot ---- */

/* Offset of a valid multiboot header within the first 8 KiB, or -1. */
static long mb_find(const struct boot_ctx *c, struct mb_header *h)
{
	size_t lim = c->size < MB_SEARCH_LEN ? c->size : MB_SEARCH_LEN;

	for (size_t off = 0; off + 12 <= lim; off += MB_SEARCH_ALIGN) {
		uint32_t magic = img_le32(c, off), flags = img_le32(c, off + 4);

		if (magic == MB_HEADER_MAGIC && magic + flags + img_le32(c, off + 8) == 0) {
			memset(h, 0, sizeof(*h));
			memcpy(h, c->img + off,
			       c->size - off < sizeof(*h) ? c->size - off : sizeof(*h));
			return (long)off;
		}
	}
	return -1;
}

/* The a.out kludge: the header says where the file goes. */
static int mb_load_aout(struct boot_ctx *c, size_t off, const struct mb_header *h, uint64_t *entry)
{
	uint64_t file_off, load_end, bss_end, len;
	uint8_t *dst;
	int ret;

	if (off + sizeof(*h) > c->size)
		return boot_err(c, -ENOEXEC, "truncated multiboot header");
	if (h->header_addr < h->load_addr || h->header_addr - h->load_addr > off)
		return boot_err(c, -ENOEXEC,
				"multiboot load_addr 0x%x / header_addr 0x%x point "
				"before the start of the file",
				h->load_addr, h->header_addr);
	file_off = off - (h->header_addr - h->load_addr);
	load_end = h->load_end_addr ? h->load_end_addr
				    : (uint64_t)h->load_addr + (c->size - file_off);
	bss_end = h->bss_end_addr ? h->bss_end_addr : load_end;
	if (load_end < h->load_addr || bss_end < load_end)
		return boot_err(c, -ENOEXEC,
				"bad multiboot addresses: load 0x%x-0x%llx, bss end "
				"0x%llx",
				h->load_addr, (unsigned long long)load_end,
				(unsigned long long)bss_end);
	len = load_end - h->load_addr;
	if (len > c->size - file_off)
		return boot_err(c, -ENOEXEC,
				"truncated multiboot kernel: %llu bytes from offset "
				"0x%llx, the file has %zu",
				(unsigned long long)len, (unsigned long long)file_off, c->size);
	if (bss_end > 4 * GiB)
		return boot_err(c, -ENOEXEC, "multiboot kernel ends above 4 GiB");
	ret = boot_check(c, h->load_addr, bss_end - h->load_addr, "kernel");
	if (ret)
		return ret;
	dst = vm_gpa(c->vm, h->load_addr, bss_end - h->load_addr);
	memcpy(dst, c->img + file_off, len);
	memset(dst + len, 0, bss_end - load_end);
	c->kernel_start = h->load_addr;
	c->kernel_end = bss_end;
	*entry = h->entry_addr;
	return 0;
}

static int mb_load_kernel(struct boot_ctx *c, size_t off, const struct mb_header *h,
			  uint64_t *entry)
{
	struct elf_image elf;
	int ret;

	if (h->flags & MB_AOUT_KLUDGE)
		return mb_load_aout(c, off, h, entry);
	ret = elf_open(c, &elf);
	if (ret == 0)
		return boot_err(c, -ENOEXEC,
				"multiboot kernel that is not ELF must give its "
				"load addresses (header flag 16)");
	if (ret < 0)
		return ret;
	ret = elf_load(c, &elf);
	*entry = elf_entry_phys(c, &elf);
	return ret;
}

static void mb_info(struct boot_ctx *c)
{
	struct mb_info *mbi = boot_info_page(c);
	struct mb_mmap_entry *mm;
	uint64_t upper = (c->lowmem_end - 1 * MiB) / KiB;

	mbi->flags = MBI_MEMORY | MBI_CMDLINE | MBI_MODS | MBI_MMAP | MBI_LOADER_NAME;
	mbi->mem_lower = (uint32_t)(EBDA_BASE / KiB);
	mbi->mem_upper = (uint32_t)upper;
	mbi->cmdline = (uint32_t)BOOT_CMDLINE_ADDR;
	mbi->mmap_addr = (uint32_t)INFO_MEMMAP;
	mbi->mmap_length = c->ne820 * (uint32_t)sizeof(*mm);
	mm = vm_gpa(c->vm, INFO_MEMMAP, mbi->mmap_length);
	for (unsigned i = 0; i < c->ne820; i++)
		mm[i] = (struct mb_mmap_entry){ .size = sizeof(*mm) - 4,
						.base_addr = c->e820[i].addr,
						.length = c->e820[i].size,
						.type = c->e820[i].type };
	mbi->boot_loader_name = (uint32_t)INFO_LOADER_NAME;
	strcpy(vm_gpa(c->vm, INFO_LOADER_NAME, sizeof("khyve")), "khyve");
	if (c->initrd_size) {
		struct mb_module *mod = vm_gpa(c->vm, INFO_MODLIST, sizeof(*mod));
		const char *base = strrchr(c->initrd, '/');

		mbi->mods_count = 1;
		mbi->mods_addr = (uint32_t)INFO_MODLIST;
		mod->mod_start = (uint32_t)c->initrd_addr;
		mod->mod_end = (uint32_t)(c->initrd_addr + c->initrd_size);
		mod->string = (uint32_t)INFO_MODNAME;
		/* The module's "command line": its file name, as a boot loader would give it. */
		snprintf(vm_gpa(c->vm, INFO_MODNAME, INFO_MODNAME_MAX), INFO_MODNAME_MAX, "%s",
			 base ? base + 1 : c->initrd);
	}
}

static int mb_load(struct boot_ctx *c, struct boot_entry *e, size_t off, const struct mb_header *h)
{
	uint32_t unsupported = h->flags & MB_REQUIRED_MASK & ~(MB_PAGE_ALIGN | MB_MEMORY_INFO);
	uint64_t entry = 0;
	int ret;

	/* The spec: a loader that cannot meet a requirement bit must refuse the kernel. */
	if (unsupported)
		return boot_err(c, -ENOTSUP,
				"the multiboot header requires %s (flags 0x%x), "
				"which khyve does not provide",
				unsupported & MB_VIDEO_MODE ? "a video mode" : "unknown features",
				h->flags);
	ret = boot_cmdline(c, BOOT_CMDLINE_MAX - 1);
	ret = ret ? ret : mb_load_kernel(c, off, h, &entry);
	ret = ret ? ret : boot_check_entry(c, entry);
	/* Modules always go on page boundaries, which meets MB_PAGE_ALIGN. */
	ret = ret ? ret : boot_initrd(c, c->lowmem_end);
	if (ret)
		return ret;
	mb_info(c);
	e->rip = entry;
	e->rax = MB_BOOT_MAGIC;
	e->rbx = BOOT_INFO_ADDR;
	return 0;
}

/* ---- entry points ---- */

static int boot_detect_and_load(struct boot_ctx *c, struct boot_entry *e)
{
	struct elf_image elf;
	struct mb_header mb;
	uint64_t entry;
	long off;
	int ret;

	if (c->size >= 0x206 && img_le32(c, 0x202) == SETUP_HDR_MAGIC)
		return linux_load(c, e);
	ret = elf_open(c, &elf);
	if (ret < 0)
		return ret;
	if (ret > 0 && pvh_find_entry(c, &elf, &entry))
		return pvh_load(c, &elf, entry, e);
	off = mb_find(c, &mb);
	if (off >= 0)
		return mb_load(c, e, (size_t)off, &mb);
	return boot_err(c, -ENOEXEC, "not a Linux bzImage, PVH ELF or multiboot kernel");
}

static int boot_map_kernel(struct boot_ctx *c)
{
	struct stat st;
	int fd, ret = 0;
	void *p;

	fd = open(c->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return boot_err(c, -errno, "%s", strerror(errno));
	if (fstat(fd, &st) < 0)
		ret = boot_err(c, -errno, "%s", strerror(errno));
	else if (!S_ISREG(st.st_mode) || st.st_size == 0)
		ret = boot_err(c, -ENOEXEC, "empty or not a regular file");
	if (ret) {
		close(fd);
		return ret;
	}
	p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	ret = p == MAP_FAILED ? -errno : 0;
	close(fd);
	if (ret)
		return boot_err(c, ret, "mmap: %s", strerror(-ret));
	c->img = p;
	c->size = (size_t)st.st_size;
	return 0;
}

/*
 * cpu.features on a KVM that did not keep the CPUID it was given (PVM: arch/x86/cpuid.h):
 * a Linux kernel can still be told, on its command line, to leave those features alone.
 * @cmdline then points to @buf, the user's command line with the options appended.
 */
static int boot_cpuid_cmdline(struct vm *vm, const char **cmdline, char *buf, size_t len)
{
	static const struct cpuid_mask none;
	char extra[512];
	int n;

	if (!memcmp(vm->cpuid_unkept.named, none.named, sizeof(none.named)))
		return 0;
	n = cpuid_mask_linux_cmdline(&vm->cpuid_unkept, extra, sizeof(extra));
	if (n < 0) {
		log_warn("this KVM shows the guest CPU features cpu.features takes "
			 "away, and they are too many for a Linux clearcpuid= (%d characters "
			 "at most): the guest sees them",
			 CPUID_LINUX_CLEARCPUID_MAX);
		return 0;
	}
	if (!n)
		return 0;
	if (snprintf(buf, len, "%s%s%s", *cmdline, **cmdline ? " " : "", extra) >= (int)len)
		return 0; /* boot_cmdline reports the user's own line if that is too long */
	log_warn("this KVM shows the guest CPU features cpu.features takes away; "
		 "added to the kernel command line: %s",
		 extra);
	*cmdline = buf;
	return 0;
}

int boot_load(struct vm *vm, struct boot_entry *entry, char *err, size_t errlen)
{
	struct boot_ctx c = { .vm = vm, .err = err, .errlen = errlen, .key = "boot.kernel" };
	char cmdline[BOOT_CMDLINE_MAX];
	int ret;

	c.path = vm->cfg ? config_get(vm->cfg, "boot.kernel") : NULL;
	if (!c.path) {
		snprintf(err, errlen, "nothing to boot: set boot.kernel=PATH");
		return -EINVAL;
	}
	c.file = c.path;
	c.initrd = config_get(vm->cfg, "boot.initrd");
	c.cmdline = config_get_default(vm->cfg, "boot.cmdline", "");
	ret = boot_cpuid_cmdline(vm, &c.cmdline, cmdline, sizeof(cmdline));
	if (ret)
		return ret;
	ret = e820_build(vm->ram_size, c.e820, E820_MAX_ENTRIES);
	if (ret < 0) {
		snprintf(err, errlen, "guest RAM of %llu MiB is below the %llu MiB minimum",
			 mib(vm->ram_size), mib(E820_MIN_RAM));
		return ret;
	}
	c.ne820 = (unsigned)ret;
	c.lowmem_end = e820_lowmem_end(vm->ram_size);
	/* The boot data below 1 MiB must be RAM before any of it is written. */
	if (!vm_gpa(vm, 0, 1 * MiB) || !vm_gpa(vm, 1 * MiB, c.lowmem_end - 1 * MiB)) {
		snprintf(err, errlen, "guest RAM is not mapped at 0-0x%llx",
			 (unsigned long long)c.lowmem_end - 1);
		return -EINVAL;
	}
	ret = boot_map_kernel(&c);
	if (ret)
		return ret;
	memset(entry, 0, sizeof(*entry));
	ret = boot_detect_and_load(&c, entry);
	munmap((void *)c.img, c.size);
	if (!ret)
		boot_write_gdt(&c, entry);
	return ret;
}

static void boot_segment(struct kvm_segment *s, uint16_t sel, uint8_t type, bool code64)
{
	*s = (struct kvm_segment){ .base = 0,
				   .limit = 0xFFFFFFFF,
				   .selector = sel,
				   .type = type,
				   .present = 1,
				   .dpl = 0,
				   .db = !code64,
				   .s = 1,
				   .l = code64,
				   .g = 1 };
}

void boot_setup_sregs(const struct boot_entry *e, struct kvm_sregs *sregs)
{
	struct kvm_segment data;

	/* Accessed bit set in both types (0xB, 0x3): VMX wants usable segments accessed. */
	if (e->long_mode)
		boot_segment(&sregs->cs, BOOT_SEL_CODE64, 0xB, true);
	else
		boot_segment(&sregs->cs, BOOT_SEL_CODE32, 0xB, false);
	boot_segment(&data, BOOT_SEL_DATA, 0x3, false);
	sregs->ds = sregs->es = sregs->fs = sregs->gs = sregs->ss = data;
	sregs->tr = (struct kvm_segment){
		.base = 0, .limit = 0x67, .selector = BOOT_SEL_TSS, .type = 11, .present = 1
	};
	sregs->gdt.base = e->gdt_base;
	sregs->gdt.limit = e->gdt_limit;
	/* Caches on (CD/NW clear): KVM's reset CR0 has them set. */
	sregs->cr0 = (sregs->cr0 | CR0_PE) & ~(CR0_CD | CR0_NW | CR0_PG);
	if (e->long_mode) {
		sregs->cr0 |= CR0_PG;
		sregs->cr3 = e->cr3;
		sregs->cr4 = CR4_PAE;
		sregs->efer |= EFER_LME | EFER_LMA;
	} else {
		sregs->cr3 = 0;
		sregs->cr4 = 0;
		sregs->efer &= ~(EFER_LME | EFER_LMA);
	}
}

void boot_setup_regs(const struct boot_entry *e, struct kvm_regs *regs)
{
	regs->rflags = 0x2; /* bit 1 is always set; IF clear: interrupts off */
	regs->rip = e->rip;
	regs->rsp = e->rsp;
	regs->rsi = e->rsi;
	regs->rbx = e->rbx;
	regs->rax = e->rax;
}
