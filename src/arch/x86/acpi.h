/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The ACPI tables a guest finds at ACPI_TABLES_BASE (doc/platform.md): RSDP, RSDT, XSDT,
 * FADT, FACS, MADT, HPET, MCFG and a DSDT written by the AML emitter (aml.h).  They describe
 * the platform as khyve builds it: vCPUs, IOAPIC, the PM1 blocks and PM timer, the reset
 * register, HPET, PCI ECAM and host bridge windows, the COM ports that exist and the RTC.
 *
 * Nothing in the tables changes while the guest runs, so they are plain guest RAM and are
 * saved with it: a restore needs no call here.
 */
#ifndef KHYVE_ACPI_H
#define KHYVE_ACPI_H

#include <stddef.h>
#include <stdint.h>

struct vm;

/* The tables live in 0xE0000..0xFFFFF; the RSDP is first, inside the legacy scan range. */
#define ACPI_TABLES_END 0x100000ULL
#define ACPI_OEM_ID "KHYVE " /* 6 characters */
#define ACPI_MAX_CPUS 255    /* xAPIC ids; 0xFF is the broadcast id */

/*
 * Writes the tables into guest memory for vm->ncpus vCPUs and the COM ports configured
 * (lpc.comN.path).  Returns 0 or -errno with a message in @err.
 */
int acpi_build(struct vm *vm, char *err, size_t errlen);

/*
 * The same tables laid out at guest address 0 in @buf (@cap bytes, the RSDP first), for
 * firmware to place wherever it likes (arch/x86/firmware.c hands them over by fw_cfg).
 * Every pointer between tables is then an offset in @buf.  *@len gets the bytes used.
 */
int acpi_build_image(struct vm *vm, uint8_t *buf, size_t cap, size_t *len, char *err,
		     size_t errlen);

#endif
