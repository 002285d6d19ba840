// SPDX-License-Identifier: BSD-2-Clause
/*
 * The LPC (PCI-to-ISA) bridge: the PCI face of the legacy devices (COM ports, RTC, PM block),
 * which are created by the machine, not here, and the home of the keyboard controller
 * (atkbdc.c), which a PC always has behind its ISA bridge.  It sits at 0:31.0 only, as on Intel chipsets
 * and in bhyve, because the DSDT describes the ISA bus below that address; that also makes it
 * unique.  The ids are the Intel PIIX3 ISA bridge's, as in bhyve: Linux only applies a
 * harmless quirk to it, where ICH ids would make the lpc_ich driver look for ACPI and GPIO
 * base registers we do not emulate.
 */
#include <errno.h>
#include <stdio.h>

#include "dev/pc/atkbdc.h"
#include "dev/pci/pci.h"

#define LPC_SLOT 31
#define LPC_VENDOR 0x8086
#define LPC_DEVICE 0x7000

static int lpc_init(struct vm *vm, struct pci_dev *pd, const char *opts, char *err, size_t errlen)
{
	if (pd->slot != LPC_SLOT || pd->func != 0) {
		snprintf(err, errlen,
			 "the LPC bridge must be at slot %u function 0 (-s %u,lpc): "
			 "the ACPI tables describe the ISA bus there",
			 LPC_SLOT, LPC_SLOT);
		return -EINVAL;
	}
	pci_set_ids(pd, LPC_VENDOR, LPC_DEVICE, PCIC_BRIDGE, PCIS_BRIDGE_ISA, 0, 0);
	return atkbdc_create(vm, err, errlen) ? 0 : -EINVAL;
}

const struct pci_emul pci_emul_lpc = {
	.name = "lpc",
	.version = 1,
	.init = lpc_init,
};
