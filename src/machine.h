/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Assembling a PC from the configuration: memory, vCPUs, platform devices, PCI, ACPI, and
 * (for a fresh boot) the kernel.  A restore builds the same machine without loading a kernel
 * and then loads the saved state into it.
 */
#ifndef KHYVE_MACHINE_H
#define KHYVE_MACHINE_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

struct vm;

/* Check the configuration before anything is created (numbers, ranges, required keys). */
int machine_check_config(struct config *cfg, bool restoring, char *err, size_t errlen);
/*
 * Create the VM and every device.  With @restoring, guest memory is left for the restore to
 * map and no kernel is loaded.  On failure everything created is torn down.
 */
int machine_create(struct vm *vm, struct config *cfg, bool restoring, char *err, size_t errlen);
/* Start the event loop and the vCPUs; returns once they run. */
int machine_start(struct vm *vm, char *err, size_t errlen);
/* Stop the vCPUs and event loop and free everything. */
void machine_destroy(struct vm *vm);

#endif
