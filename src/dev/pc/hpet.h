/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The HPET (IA-PC High Precision Event Timer, rev 1.0a) at HPET_BASE, 1 KiB of MMIO.
 *
 * What the guest sees: a 64-bit main counter at 100 MHz (period 10 ns, 10000000 fs), three
 * comparators (timer 0 periodic-capable, all 64-bit capable with a 32-bit mode), level or
 * edge interrupts routed to IOAPIC pins 20-23, and legacy replacement (timer 0 to GSI 2, which
 * is IRQ0 after the MADT override, timer 1 to GSI 8).  FSB (MSI) delivery is not offered.
 *
 * The counter is a function of the VM's virtual clock, never incremented: a restore therefore
 * continues it from the saved value.  Comparator matches are vtimers set at the virtual time
 * the counter reaches the comparator.
 */
#ifndef KHYVE_DEV_HPET_H
#define KHYVE_DEV_HPET_H

#include <stddef.h>

struct vm;
struct dev;

#define HPET_MMIO_SIZE 0x400
#define HPET_NTIMERS 3
#define HPET_PERIOD_FS 10000000ULL /* counter tick: 10 ns */
#define HPET_FIRST_PIN 20	   /* INT_ROUTE_CAP: IOAPIC pins 20-23 */
#define HPET_LAST_PIN 23

/* Creates the HPET, disabled, as after reset.  NULL with a message in @err on failure. */
struct dev *hpet_create(struct vm *vm, char *err, size_t errlen);

#endif
