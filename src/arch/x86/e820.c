// SPDX-License-Identifier: BSD-2-Clause
/* The guest memory map: doc/platform.md in table form. */
#include "arch/x86/e820.h"

#include <errno.h>
#include <stdbool.h>

#include "vm.h"

/* The 64-bit PCI window: fits the 39 physical address bits of the smallest hosts KVM runs on. */
#define MMIO64_SIZE (32 * GiB)

/* Fixed MMIO of the platform that an OS must not treat as free address space. */
static const struct e820_entry e820_fixed_mmio[] = {
	/* Linux uses MMCONFIG only when the MCFG area is reserved in e820 (or by ACPI). */
	{ PCI_ECAM_BASE, PCI_ECAM_SIZE, E820_RESERVED },
	{ IOAPIC_BASE, 0x1000, E820_RESERVED },
	{ HPET_BASE, 0x1000, E820_RESERVED },
	{ LAPIC_BASE, 0x1000, E820_RESERVED },
};

uint64_t e820_lowmem_end(uint64_t ram_size)
{
	return ram_size < LOWMEM_LIMIT ? ram_size : LOWMEM_LIMIT;
}

/* Appends one entry; false when @out is full. */
static bool e820_add(struct e820_entry *out, unsigned max, unsigned *n, uint64_t addr,
		     uint64_t size, uint32_t type)
{
	if (*n >= max)
		return false;
	out[(*n)++] = (struct e820_entry){ .addr = addr, .size = size, .type = type };
	return true;
}

int e820_build(uint64_t ram_size, struct e820_entry *out, unsigned max)
{
	uint64_t low = e820_lowmem_end(ram_size);
	unsigned n = 0;
	bool ok;

	if (ram_size < E820_MIN_RAM)
		return -EINVAL;
	ok = e820_add(out, max, &n, 0, EBDA_BASE, E820_RAM) &&
	     /* EBDA, VGA hole, option ROMs, ACPI tables, BIOS: what legacy code expects there. */
	     e820_add(out, max, &n, EBDA_BASE, 1 * MiB - EBDA_BASE, E820_RESERVED) &&
	     e820_add(out, max, &n, 1 * MiB, low - 1 * MiB, E820_RAM);
	for (unsigned i = 0; ok && i < sizeof(e820_fixed_mmio) / sizeof(e820_fixed_mmio[0]); i++)
		ok = e820_add(out, max, &n, e820_fixed_mmio[i].addr, e820_fixed_mmio[i].size,
			      e820_fixed_mmio[i].type);
	if (ok && ram_size > low)
		ok = e820_add(out, max, &n, HIGHMEM_BASE, ram_size - low, E820_RAM);
	return ok ? (int)n : -ENOSPC;
}

void e820_mmio64_window(uint64_t ram_size, uint64_t *base, uint64_t *size)
{
	uint64_t end = HIGHMEM_BASE;

	if (ram_size > LOWMEM_LIMIT)
		end += ram_size - LOWMEM_LIMIT;
	*base = (end + GiB - 1) & ~(GiB - 1);
	*size = MMIO64_SIZE;
}
