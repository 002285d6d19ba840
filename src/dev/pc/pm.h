/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The ACPI fixed-hardware power-management block and the reset control register.
 *
 *	PM1A_EVT_PORT (0x400)	PM1a status (16 bits, write 1 to clear): TMR_STS, PWRBTN_STS,
 *				WAK_STS; PM1a enable at +2: TMR_EN, PWRBTN_EN
 *	PM1A_CNT_PORT (0x404)	PM1a control: SCI_EN, SLP_TYP, SLP_EN.  Entering S5 powers the
 *				VM off; other sleep states are ignored
 *	PM_TMR_PORT (0x408)	the 24-bit ACPI PM timer at 3.579545 MHz
 *	RESET_PORT (0xCF9)	reset control, one byte: a write with RST_CPU (bit 2) reboots
 *
 * The SCI (IRQ 9, level, active high) is high while SCI_EN is set and some enabled status bit
 * is set.  There is no SMI command port, so the platform starts in ACPI mode: SCI_EN is set at
 * reset.  The PM timer is a function of the virtual clock and continues from its saved value
 * after a restore.
 *
 * The reset register is a single byte at 0xCF9, inside the dword 0xCF8 that belongs to PCI
 * configuration mechanism #1: create this device before pci_setup(), which forwards byte
 * accesses at 0xCF9 to it.
 */
#ifndef KHYVE_DEV_PM_H
#define KHYVE_DEV_PM_H

#include <stddef.h>

struct vm;
struct dev;

#define PM_TMR_HZ 3579545ULL

#define PM1_TMR_STS (1U << 0)
#define PM1_PWRBTN_STS (1U << 8)
#define PM1_WAK_STS (1U << 15)
#define PM1_TMR_EN (1U << 0)
#define PM1_PWRBTN_EN (1U << 8)
#define PM1_SCI_EN (1U << 0)
#define PM1_SLP_TYP_SHIFT 10
#define PM1_SLP_TYP_MASK (7U << PM1_SLP_TYP_SHIFT)
#define PM1_SLP_EN (1U << 13)

struct dev *pm_create(struct vm *vm, char *err, size_t errlen);

/* Press the power button: sets PWRBTN_STS, raising the SCI if the guest enabled it. */
void pm_power_button(struct dev *d);

#endif
