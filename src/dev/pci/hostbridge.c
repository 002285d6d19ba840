// SPDX-License-Identifier: BSD-2-Clause
/*
 * The host bridge, conventionally at 0:0.0 (-s 0,hostbridge).  It has no BARs and no state:
 * guests only look at its identity.  The ids are bhyve's (vendor and device 0x1275), which no
 * guest driver binds to, so nothing tries to program chipset registers we do not have.
 */
#include "dev/pci/pci.h"

#define HOSTBRIDGE_VENDOR 0x1275
#define HOSTBRIDGE_DEVICE 0x1275

static int hostbridge_init(struct vm *vm, struct pci_dev *pd, const char *opts, char *err,
			   size_t errlen)
{
	pci_set_ids(pd, HOSTBRIDGE_VENDOR, HOSTBRIDGE_DEVICE, PCIC_BRIDGE, PCIS_BRIDGE_HOST, 0, 0);
	return 0;
}

const struct pci_emul pci_emul_hostbridge = {
	.name = "hostbridge",
	.version = 1,
	.init = hostbridge_init,
};
