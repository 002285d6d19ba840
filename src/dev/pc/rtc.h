/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The MC146818 real-time clock and its 128 bytes of CMOS (ports 0x70/0x71, ISA IRQ 8).
 *
 * The RTC's time is a function of the VM's virtual clock: the seconds it shows are a base
 * time plus the virtual nanoseconds since a base instant, so a restored VM continues from the
 * time it was saved with, however long it was suspended.  The base starts at the host's
 * time (local time, or UTC when rtc.localtime=false as bhyve's -u), and guest writes to the
 * time registers move it.  Periodic, update-ended and alarm interrupts run on vtimers and
 * pulse IRQ 8 (the guest programs the IOAPIC pin edge-triggered).
 *
 * The CMOS reports the memory size at creation, as bhyve and QEMU do.
 */
#ifndef KHYVE_DEV_RTC_H
#define KHYVE_DEV_RTC_H

#include <stddef.h>
#include <stdint.h>

struct vm;
struct dev;

struct dev *rtc_create(struct vm *vm, char *err, size_t errlen);

/*
 * Move the RTC's time forward by @seconds: used when a restore is asked to make the guest's
 * wall-clock time catch up with the time spent suspended.  Has no effect while the guest
 * holds the clock stopped to set it (register B SET).
 */
void rtc_advance_wallclock(struct dev *d, uint64_t seconds);

/*
 * Call @fn(@opaque) whenever the alarm raises the interrupt (AF with AIE): the ACPI PM block
 * sets RTC_STS from it.  @fn runs with the RTC's lock held and must not call back here.
 */
void rtc_set_alarm_hook(struct dev *d, void (*fn)(void *), void *opaque);

#endif
