// SPDX-License-Identifier: BSD-2-Clause
/*
 * The host bridge, conventionally at 0:0.0 (-s 0,hostbridge).
 *
 * A VM booting a kernel directly gets bhyve's host bridge: vendor and device 0x1275, which no
 * guest driver binds to, no BARs and no state.  A VM booting firmware (-l bootrom) gets what
 * SeaBIOS and OVMF expect of a QEMU "pc" machine: an Intel 82441FX PMC (i440FX, 8086:1237
 * rev 02) with QEMU's subsystem ids (1af4:1100, by which SeaBIOS knows it may use fw_cfg),
 * and the chipset registers firmware programs:
 *
 *	0x59-0x5F  PAM0-PAM6: read/write enables of the BIOS area segments (datasheet 3.2.17);
 *		   a change remaps the segments at once (dev/pc/bootrom.c)
 *	0x72	   SMRAM: kept, without effect (there is no SMM)
 *
 * PAM and SMRAM are part of the configuration space the PCI snapshot saves; after a load,
 * resume maps the BIOS area as they say.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "dev/pc/bootrom.h"
#include "dev/pci/pci.h"
#include "vm.h"

#define HOSTBRIDGE_VENDOR 0x1275
#define HOSTBRIDGE_DEVICE 0x1275

#define I440FX_VENDOR 0x8086
#define I440FX_DEVICE 0x1237
#define I440FX_REV 0x02
#define QEMU_SUBVENDOR 0x1af4
#define QEMU_SUBDEVICE 0x1100

#define I440FX_PAM0 0x59
#define I440FX_PAM_REGS 7
#define I440FX_SMRAM 0x72
#define SMRAM_DEFAULT 0x02 /* C_BASE_SEG = 010: the SMRAM would be at 0xA0000 */
#define SMRAM_WMASK 0x78
#define CHIPSET_FIRST 0x40 /* the device-specific registers */

/* Bits the guest may write in each PAM register: RE, WE, CE per nibble; PAM0 high only. */
static uint8_t pam_wmask(unsigned reg)
{
	return reg == I440FX_PAM0 ? 0x70 : 0x77;
}

static bool is_pam(unsigned off)
{
	return off >= I440FX_PAM0 && off < I440FX_PAM0 + I440FX_PAM_REGS;
}

/* Segment modes from the PAM registers: PAM0 bits 5:4 for 0xF0000, then two per register. */
static void i440fx_apply_pam(struct pci_dev *pd)
{
	uint8_t mode[PAM_SEGMENTS];

	mode[PAM_SEGMENTS - 1] = (pci_get_cfg8(pd, I440FX_PAM0) >> 4) & 3;
	for (unsigned k = 0; k < 6; k++) {
		uint8_t v = pci_get_cfg8(pd, I440FX_PAM0 + 1 + k);

		mode[2 * k] = v & 3;
		mode[2 * k + 1] = (v >> 4) & 3;
	}
	bootrom_set_pam(pd->vm, mode);
}

static bool i440fx_cfg_write(struct pci_dev *pd, unsigned off, unsigned size, uint32_t val)
{
	bool pam = false;

	if (off + size <= CHIPSET_FIRST)
		return false; /* the standard header: pci.c */
	for (unsigned i = 0; i < size; i++) {
		unsigned o = off + i;
		uint8_t b = (uint8_t)(val >> (8 * i)), m;

		if (is_pam(o))
			m = pam_wmask(o);
		else if (o == I440FX_SMRAM)
			m = SMRAM_WMASK;
		else
			continue; /* DRAM timing and the like: accepted, no effect */
		pci_set_cfg8(pd, o, (uint8_t)((pci_get_cfg8(pd, o) & ~m) | (b & m)));
		pam |= is_pam(o);
	}
	if (pam)
		i440fx_apply_pam(pd);
	return true;
}

static int i440fx_resume(struct pci_dev *pd)
{
	i440fx_apply_pam(pd);
	return 0;
}

static int hostbridge_init(struct vm *vm, struct pci_dev *pd, const char *opts, char *err,
			   size_t errlen)
{
	if (!vm->bootrom) {
		pci_set_ids(pd, HOSTBRIDGE_VENDOR, HOSTBRIDGE_DEVICE, PCIC_BRIDGE, PCIS_BRIDGE_HOST,
			    0, 0);
		return 0;
	}
	if (pd->slot || pd->func) {
		snprintf(err, errlen,
			 "firmware looks for the host bridge at 0:0.0 (-s 0,hostbridge)");
		return -EINVAL;
	}
	pci_set_ids(pd, I440FX_VENDOR, I440FX_DEVICE, PCIC_BRIDGE, PCIS_BRIDGE_HOST, 0, I440FX_REV);
	pci_set_cfg16(pd, PCIR_SUBVEND, QEMU_SUBVENDOR);
	pci_set_cfg16(pd, PCIR_SUBDEV, QEMU_SUBDEVICE);
	/* At reset every segment is routed to PCI: the CPU fetches the BIOS from the ROM. */
	for (unsigned r = 0; r < I440FX_PAM_REGS; r++)
		pci_set_wmask(pd, I440FX_PAM0 + r, 1, pam_wmask(I440FX_PAM0 + r));
	pci_set_cfg8(pd, I440FX_SMRAM, SMRAM_DEFAULT);
	pci_set_wmask(pd, I440FX_SMRAM, 1, SMRAM_WMASK);
	return 0;
}

static bool hostbridge_cfg_write(struct pci_dev *pd, unsigned off, unsigned size, uint32_t val)
{
	return pd->vm->bootrom && i440fx_cfg_write(pd, off, size, val);
}

static int hostbridge_resume(struct pci_dev *pd)
{
	return pd->vm->bootrom ? i440fx_resume(pd) : 0;
}

const struct pci_emul pci_emul_hostbridge = {
	.name = "hostbridge",
	.version = 1,
	.init = hostbridge_init,
	.cfg_write = hostbridge_cfg_write,
	.resume = hostbridge_resume,
};
