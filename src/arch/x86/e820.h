/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The guest's physical memory map as firmware would report it (BIOS e820), built from the RAM
 * size alone so that every boot protocol (boot_params, PVH memmap, multiboot mmap) and the
 * ACPI tables describe the same machine: doc/platform.md is the reference.
 */
#ifndef KHYVE_E820_H
#define KHYVE_E820_H

#include <stdint.h>

/* Types as the ACPI spec / BIOS INT 15h E820 number them; PVH and multiboot use the same. */
#define E820_RAM 1
#define E820_RESERVED 2
#define E820_ACPI 3
#define E820_NVS 4

/* The smallest guest khyve boots: room for the boot data, a kernel and its page tables. */
#define E820_MIN_RAM (16ULL << 20)
/* More than e820_build ever returns. */
#define E820_MAX_ENTRIES 16

struct e820_entry {
	uint64_t addr, size;
	uint32_t type;
};

/*
 * Fills @out (room for @max) with the map of a guest with @ram_size bytes of RAM, sorted by
 * address and never overlapping.  Returns the number of entries, -EINVAL when @ram_size is
 * below E820_MIN_RAM, -ENOSPC when @max is too small.
 */
int e820_build(uint64_t ram_size, struct e820_entry *out, unsigned max);

/* End of the RAM below the PCI hole: min(RAM size, LOWMEM_LIMIT). */
uint64_t e820_lowmem_end(uint64_t ram_size);

/*
 * The 64-bit PCI MMIO window the DSDT offers above the end of RAM (1 GiB aligned).  A PCI
 * bus placing 64-bit BARs must stay inside it.
 */
void e820_mmio64_window(uint64_t ram_size, uint64_t *base, uint64_t *size);

#endif
