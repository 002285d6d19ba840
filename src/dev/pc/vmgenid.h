/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * VM Generation ID (dev/pc/vmgenid.c): a 128-bit identifier in guest memory that changes at
 * every restore, with an ACPI notification, so a guest reseeds what must stay unique.
 */
#ifndef KHYVE_DEV_VMGENID_H
#define KHYVE_DEV_VMGENID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vm;
struct dev;

#define VMGENID_IRQ 5	 /* ISA IRQ of the Generic Event Device that notifies a change */
#define VMGENID_SIZE 16	 /* bytes of the identifier */
#define VMGENID_ALIGN 16 /* its address: 8-byte aligned (the spec), never across a page */

/*
 * With -o vmgenid=on (the default for a boot with a kernel and no boot ROM, where khyve writes
 * the ACPI tables; a restore takes the snapshot's setting, off when it has none): the device,
 * added to @vm.  0 when it is off; -errno with @err when the option is wrong.
 */
int vmgenid_create(struct vm *vm, bool restoring, char *err, size_t errlen);
/* The ACPI tables put the identifier at @gpa: a fresh one is written there. */
int vmgenid_set_addr(struct dev *d, uint64_t gpa);

#endif
