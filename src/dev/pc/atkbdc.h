/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The i8042 keyboard controller ("atkbdc", as bhyve calls it) with a PS/2 keyboard and a PS/2
 * mouse behind it: ports 0x60 (data) and 0x64 (status, command), IRQ 1 (keyboard) and IRQ 12
 * (mouse).  It is part of the LPC bridge: lpc creates it with one call.
 *
 * Input comes from the console backend (backend/console.h): the keyboard and the mouse
 * register there as the PS/2 front ends, so VNC clients type and point into them.
 *
 * Snapshot ("atkbdc"): the controller (command byte and its RAM, output buffer and which port
 * filled it, output port, the command waiting for data, its own reply queue) and both
 * devices with their reply and data queues and modes (ps2.h).
 */
#ifndef KHYVE_DEV_ATKBDC_H
#define KHYVE_DEV_ATKBDC_H

#include <stddef.h>

struct vm;
struct dev;

#define ATKBDC_DATA_PORT 0x60
#define ATKBDC_CMD_PORT 0x64
#define ATKBDC_IRQ_KBD 1
#define ATKBDC_IRQ_AUX 12

/* Create the controller and its devices in @vm.  NULL with a message in @err. */
struct dev *atkbdc_create(struct vm *vm, char *err, size_t errlen);

#endif
