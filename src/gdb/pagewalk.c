// SPDX-License-Identifier: BSD-2-Clause
/* Software page walk for the debugger (see pagewalk.h). */
#include "pagewalk.h"

#include <errno.h>

#define CR0_PG (1ULL << 31)
#define CR4_PSE (1ULL << 4)
#define CR4_PAE (1ULL << 5)
#define CR4_LA57 (1ULL << 12)
#define EFER_LMA (1ULL << 10)

#define PTE_P (1ULL << 0)
#define PTE_PS (1ULL << 7)
/* Bits 51:12 of a PAE or long-mode entry: the next table or the page (MAXPHYADDR 52). */
#define PTE_ADDR 0x000ffffffffff000ULL

static int done(uint64_t base, uint64_t size, uint64_t gva, uint64_t *gpa, uint64_t *left)
{
	uint64_t off = gva & (size - 1);

	*gpa = base + off;
	*left = size - off;
	return 0;
}

/* 4-level (@levels 4) or 5-level paging, and PAE's 3 levels (@levels 3, 32-bit addresses). */
static int walk_pae(const struct pw_cpu *c, unsigned levels, pw_read_fn read, void *opaque,
		    uint64_t gva, uint64_t *gpa, uint64_t *left)
{
	/* PAE's CR3 points at a 32-byte aligned table of 4 entries; long mode's at a page. */
	uint64_t table = levels == 3 ? c->cr3 & 0xffffffe0ULL : c->cr3 & PTE_ADDR;

	for (unsigned l = levels; l >= 1; l--) {
		unsigned shift = 12 + 9 * (l - 1);
		unsigned idx = l == 3 && levels == 3 ? (gva >> 30) & 3 : (gva >> shift) & 511;
		uint64_t e;

		if (read(opaque, table + 8ULL * idx, &e) || !(e & PTE_P))
			return -EFAULT;
		/* A large page: 1 GiB at level 3 (long mode only), 2 MiB at level 2. */
		if ((l == 2 || (l == 3 && levels > 3)) && (e & PTE_PS)) {
			uint64_t size = 1ULL << shift;

			return done(e & PTE_ADDR & ~(size - 1), size, gva, gpa, left);
		}
		if (l == 1)
			return done(e & PTE_ADDR, 4096, gva, gpa, left);
		table = e & PTE_ADDR;
	}
	return -EFAULT;
}

/* 32-bit paging: 4-byte entries, 4 MiB pages with CR4.PSE (PSE-36: bits 20:13 are 39:32). */
static int walk_32(const struct pw_cpu *c, pw_read_fn read, void *opaque, uint64_t gva,
		   uint64_t *gpa, uint64_t *left)
{
	uint64_t pde, pte, a;

	/* Entries are 4 bytes: read 8 at the 8-aligned address and take the right half. */
	a = (c->cr3 & 0xfffff000ULL) + 4 * ((gva >> 22) & 1023);
	if (read(opaque, a & ~7ULL, &pde))
		return -EFAULT;
	pde = (a & 4) ? pde >> 32 : pde & 0xffffffffULL;
	if (!(pde & PTE_P))
		return -EFAULT;
	if ((pde & PTE_PS) && (c->cr4 & CR4_PSE)) {
		uint64_t base = (pde & 0xffc00000ULL) | ((pde >> 13) & 0xffULL) << 32;

		return done(base, 4ULL << 20, gva, gpa, left);
	}
	a = (pde & 0xfffff000ULL) + 4 * ((gva >> 12) & 1023);
	if (read(opaque, a & ~7ULL, &pte))
		return -EFAULT;
	pte = (a & 4) ? pte >> 32 : pte & 0xffffffffULL;
	if (!(pte & PTE_P))
		return -EFAULT;
	return done(pte & 0xfffff000ULL, 4096, gva, gpa, left);
}

/* Bits above 47 (56 with LA57) must all equal bit 47 (56). */
static int canonical(uint64_t gva, unsigned bits)
{
	int64_t s = (int64_t)(gva << (64 - bits)) >> (64 - bits);

	return (uint64_t)s == gva;
}

int pagewalk(const struct pw_cpu *c, pw_read_fn read, void *opaque, uint64_t gva, uint64_t *gpa,
	     uint64_t *left)
{
	if (!(c->cr0 & CR0_PG)) {
		/* Real mode, or protected mode without paging: linear is physical (32 bits). */
		if (gva > 0xffffffffULL)
			return -EFAULT;
		return done(gva & ~4095ULL, 4096, gva, gpa, left);
	}
	if (c->efer & EFER_LMA) {
		unsigned levels = (c->cr4 & CR4_LA57) ? 5 : 4;

		if (!canonical(gva, levels == 5 ? 57 : 48))
			return -EFAULT;
		return walk_pae(c, levels, read, opaque, gva, gpa, left);
	}
	/* Outside long mode a linear address has 32 bits. */
	if (gva > 0xffffffffULL)
		return -EFAULT;
	if (c->cr4 & CR4_PAE)
		return walk_pae(c, 3, read, opaque, gva, gpa, left);
	return walk_32(c, read, opaque, gva, gpa, left);
}
