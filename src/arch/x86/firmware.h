/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * What khyve tells firmware (-l bootrom) about the machine, through fw_cfg (dev/pc/fw_cfg.h):
 *
 *	etc/e820		RAM and the reserved ranges (doc/platform.md)
 *	etc/acpi/rsdp		khyve's ACPI tables (arch/x86/acpi.h), laid out at 0,
 *	etc/acpi/tables		with the BIOS linker/loader script that places them and
 *	etc/table-loader	patches their pointers and checksums
 *	bootorder		devices with bootindex=N, in that order
 *	etc/boot-fail-wait	how long firmware waits before rebooting when nothing boots
 *	etc/sercon-port		the COM port firmware uses as its console (khyve has no display)
 *
 * and the fixed items: signature, DMA interface, vCPU count, no graphics, IRQ0 override.
 */
#ifndef KHYVE_ARCH_FIRMWARE_H
#define KHYVE_ARCH_FIRMWARE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct vm;
struct fw_cfg;

/* Table-loader commands (QEMU's hw/acpi/bios-linker-loader.c numbering). */
#define LOADER_ALLOCATE 1
#define LOADER_ADD_POINTER 2
#define LOADER_ADD_CHECKSUM 3
#define LOADER_WRITE_POINTER 4
#define LOADER_ZONE_HIGH 1
#define LOADER_ZONE_FSEG 2
#define LOADER_ENTRY_SIZE 128
#define LOADER_FILE_LEN 56

/* lpc.bootrom, bootindex= and fw.* keys: consistent, in range. */
int firmware_check_config(const struct config *cfg, bool restoring, char *err, size_t errlen);

/* Create fw_cfg and fill it for @vm. */
int firmware_setup(struct vm *vm, char *err, size_t errlen);

/*
 * The linker/loader script for an ACPI image laid out at 0 (acpi_build_image): allocate
 * the RSDP in the F segment and the tables in high memory, point every table pointer (RSDP,
 * RSDT, XSDT, FADT) at the tables' address, fix every checksum.  The pointers are found by
 * walking the image as an OS reads it.  Fills @out (room for @max entries) and returns the
 * number of bytes, or -EINVAL for an image that is not well formed, -ENOSPC.
 */
long firmware_acpi_loader(const uint8_t *img, size_t len, uint8_t *out, size_t max);

/* etc/e820 for a guest of @ram_size with a ROM area of @rom_size below 4 GiB. */
int firmware_e820(uint64_t ram_size, uint64_t rom_size, uint8_t *out, size_t cap, size_t *len);

#endif
