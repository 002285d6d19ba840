/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The LPC devices -l configures (bhyve's lpc_device names): the COM ports and the boot ROM.
 * Each lists the lpc.* keys it reads, for the key registry (keys.h) and `khyve -l help`.
 */
#ifndef KHYVE_DEV_PCI_LPC_H
#define KHYVE_DEV_PCI_LPC_H

#define LPC_KEYS 3
/* Where the DSDT puts the ISA bus when there is no LPC bridge: Intel's 0:31.0. */
#define LPC_DEFAULT_DEVFN (31 * 8)

struct lpc_device {
	const char *name; /* as -l takes it: "com1" */
	const char *args; /* what follows "-l NAME,": "BACKEND" */
	const char *help;
	const char *keys[LPC_KEYS]; /* the keys it reads, NULL-padded */
};

/* Every LPC device, ending with a NULL name. */
extern const struct lpc_device lpc_devices[];

struct vm;
extern const struct pci_emul pci_emul_lpc;

/* Where the LPC bridge is: slot * 8 + function on bus 0 in *@devfn, or -ENOENT. */
int lpc_pci_addr(struct vm *vm, unsigned *devfn);

#endif
