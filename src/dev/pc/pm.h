/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The ACPI fixed-hardware power-management block and the reset control register.
 *
 *	PM1A_EVT_PORT (0x400)	PM1a status (16 bits, write 1 to clear): TMR_STS, GBL_STS,
 *				PWRBTN_STS, RTC_STS, WAK_STS; PM1a enable at +2: TMR_EN,
 *				GBL_EN, PWRBTN_EN, RTC_EN
 *	PM1A_CNT_PORT (0x404)	PM1a control: SCI_EN, GBL_RLS, SLP_TYP, SLP_EN.  Entering S5
 *				powers the VM off; other sleep states are ignored
 *	PM_TMR_PORT (0x408)	the 24-bit ACPI PM timer at 3.579545 MHz
 *	RESET_PORT (0xCF9)	reset control, one byte: a write with RST_CPU (bit 2) reboots
 *
 * The SCI (IRQ 9, level, active high) is high while SCI_EN is set and some enabled status bit
 * is set.  RTC_STS is set when the RTC raises its alarm interrupt (machine.c connects the RTC
 * to pm_rtc_alarm), so the FADT does not set FIX_RTC.
 *
 * The global lock (ACPI 6.5 sections 4.8.3.1 and 5.2.10.1) is a dword in the FACS that the OS
 * and the platform firmware share; here khyve is the firmware.  The platform side takes it with
 * pm_global_lock_acquire(): when the OS holds it, the pending bit is set and the lock is
 * granted when the OS releases it and writes GBL_RLS (the firmware's "SMI").  When khyve
 * releases a lock the OS is waiting for (pending set), it does what BIOS_RLS does on a
 * chipset: sets GBL_STS, which raises the SCI while GBL_EN is set.  There is no SMI command port, so the platform starts in ACPI mode: SCI_EN is set at
 * reset.  The PM timer is a function of the virtual clock and continues from its saved value
 * after a restore.
 *
 * The reset register is a single byte at 0xCF9, inside the dword 0xCF8 that belongs to PCI
 * configuration mechanism #1: create this device before pci_setup(), which forwards byte
 * accesses at 0xCF9 to it.
 */
#ifndef KHYVE_DEV_PM_H
#define KHYVE_DEV_PM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vm;
struct dev;

#define PM_TMR_HZ 3579545ULL

#define PM1_TMR_STS (1U << 0)
#define PM1_GBL_STS (1U << 5)
#define PM1_PWRBTN_STS (1U << 8)
#define PM1_RTC_STS (1U << 10)
#define PM1_WAK_STS (1U << 15)
#define PM1_TMR_EN (1U << 0)
#define PM1_GBL_EN (1U << 5)
#define PM1_PWRBTN_EN (1U << 8)
#define PM1_RTC_EN (1U << 10)
#define PM1_SCI_EN (1U << 0)
#define PM1_GBL_RLS (1U << 2)
#define PM1_SLP_TYP_SHIFT 10
#define PM1_SLP_TYP_MASK (7U << PM1_SLP_TYP_SHIFT)
#define PM1_SLP_EN (1U << 13)

struct dev *pm_create(struct vm *vm, char *err, size_t errlen);

/* Press the power button: sets PWRBTN_STS, raising the SCI if the guest enabled it. */
void pm_power_button(struct dev *d);

/* The RTC raised its alarm interrupt: sets RTC_STS (@opaque is the pm device). */
void pm_rtc_alarm(void *opaque);

/* The FACS global lock dword (ACPI 5.2.10.1). */
#define FACS_GLOBAL_LOCK_OFFSET 16
#define GL_PENDING (1U << 0)
#define GL_OWNED (1U << 1)

/*
 * Where the FACS is (acpi_build tells; saved with the device).  Returns -EINVAL unless @gpa is
 * 64-byte aligned and its 64 bytes are guest RAM.
 */
int pm_set_facs(struct dev *d, uint64_t gpa);

/*
 * The platform's side of the global lock.  acquire returns 0 when khyve now owns it, -EBUSY
 * when the OS owns it (pending is set; the lock is khyve's once the OS writes GBL_RLS, see
 * pm_global_lock_owned) and -ENODEV without a FACS.  release returns -EPERM when khyve does
 * not own the lock, and signals the OS (GBL_STS) if it was waiting.
 */
int pm_global_lock_acquire(struct dev *d);
bool pm_global_lock_owned(struct dev *d);
int pm_global_lock_release(struct dev *d);

#endif
