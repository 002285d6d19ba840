// SPDX-License-Identifier: BSD-2-Clause
/*
 * The LPC (PCI-to-ISA) bridge: the PCI face of the legacy devices (COM ports, RTC, PM block),
 * which are created by the machine, not here, and the home of the keyboard controller
 * (atkbdc.c), which a PC always has behind its ISA bridge.  It may sit at any bus-0 slot and
 * function, as in bhyve (-s 1,lpc; 31 is where Intel chipsets have it); the DSDT describes
 * the ISA bus below whatever address it has (lpc_pci_addr).  There is at most one.  The ids are the Intel PIIX3 ISA bridge's, as in bhyve: Linux only applies a
 * harmless quirk to it, where ICH ids would make the lpc_ich driver look for ACPI and GPIO
 * base registers we do not emulate.
 *
 * Like the PIIX3, it holds the PCI interrupt router: PIRQ A-D route registers at 0x60-0x63
 * (bit 7 disables, bits 3:0 name the ISA IRQ; 0x80 at power-on), which firmware programs so
 * that a guest using the 8259 gets PCI interrupts on the IRQ it wrote in each function's
 * interrupt line register.  pci.c does the wiring; the snapshot holds the four registers.
 */
#include <errno.h>
#include <stdio.h>

#include "dev/pc/atkbdc.h"
#include "dev/pci/lpc.h"
#include "dev/pci/pci.h"
#include "sstream.h"

#define LPC_VENDOR 0x8086
#define LPC_DEVICE 0x7000
#define LPC_PIRQ_ROUTE 0x60 /* PIRQRC[A:D], one byte each */
#define LPC_STATE_ROUTES 2  /* state version 1 had no state: routes at power-on */

int lpc_pci_addr(struct vm *vm, unsigned *devfn)
{
	for (unsigned s = 0; s < PCI_SLOTS; s++) {
		for (unsigned f = 0; f < PCI_FUNCS; f++) {
			struct pci_dev *pd = pci_find_dev(vm, s, f);

			if (pd && pd->emul == &pci_emul_lpc) {
				*devfn = s * 8 + f;
				return 0;
			}
		}
	}
	return -ENOENT;
}

static int lpc_init(struct vm *vm, struct pci_dev *pd, const char *opts, char *err, size_t errlen)
{
	unsigned other;

	/* Functions are added in slot order: an earlier one is already on the bus. */
	if (!lpc_pci_addr(vm, &other) && other != pd->slot * 8 + pd->func) {
		snprintf(err, errlen,
			 "a second LPC bridge (there is one at 0:%u.%u already; a PC has one ISA "
			 "bus)",
			 other / 8, other % 8);
		return -EINVAL;
	}
	pci_set_ids(pd, LPC_VENDOR, LPC_DEVICE, PCIC_BRIDGE, PCIS_BRIDGE_ISA, 0, 0);
	return atkbdc_create(vm, err, errlen) ? 0 : -EINVAL;
}

static bool lpc_is_route(unsigned off)
{
	return off >= LPC_PIRQ_ROUTE && off < LPC_PIRQ_ROUTE + 4;
}

/* Accesses are naturally aligned, so one inside the block lies wholly inside it. */
static bool lpc_cfg_read(struct pci_dev *pd, unsigned off, unsigned size, uint32_t *val)
{
	if (!lpc_is_route(off))
		return false;
	*val = 0;
	for (unsigned i = 0; i < size; i++)
		*val |= (uint32_t)pci_pirq_route(pd->vm, off - LPC_PIRQ_ROUTE + i) << (8 * i);
	return true;
}

static bool lpc_cfg_write(struct pci_dev *pd, unsigned off, unsigned size, uint32_t val)
{
	if (!lpc_is_route(off))
		return false;
	for (unsigned i = 0; i < size; i++)
		pci_pirq_route_set(pd->vm, off - LPC_PIRQ_ROUTE + i, (uint8_t)(val >> (8 * i)));
	return true;
}

static int lpc_save(struct pci_dev *pd, struct sstream *s)
{
	uint8_t r[4];

	for (unsigned i = 0; i < 4; i++)
		r[i] = pci_pirq_route(pd->vm, i);
	ss_u8_array(s, r, 4);
	return ss_error(s);
}

static int lpc_load(struct pci_dev *pd, struct sstream *s, unsigned version)
{
	uint8_t r[4] = { PCI_PIRQ_DISABLE, PCI_PIRQ_DISABLE, PCI_PIRQ_DISABLE, PCI_PIRQ_DISABLE };

	if (version >= LPC_STATE_ROUTES)
		ss_u8_array(s, r, 4);
	for (unsigned i = 0; i < 4 && !ss_error(s); i++)
		if (r[i] & ~PCI_PIRQ_ROUTE_BITS)
			ss_fail(s, -EINVAL, "PIRQ%c route register 0x%02x has reserved bits",
				'A' + i, r[i]);
	if (ss_finish(s))
		return ss_error(s);
	for (unsigned i = 0; i < 4; i++)
		pci_pirq_route_set(pd->vm, i, r[i]);
	return 0;
}

const struct pci_emul pci_emul_lpc = {
	.name = "lpc",
	.version = LPC_STATE_ROUTES,
	.init = lpc_init,
	.cfg_read = lpc_cfg_read,
	.cfg_write = lpc_cfg_write,
	.save = lpc_save,
	.load = lpc_load,
};

#define LPC_COM(n)                                                                                \
	{                                                                                         \
		"com" #n, "BACKEND", "serial port COM" #n ": stdio, off, unix:PATH or file:PATH", \
		{                                                                                 \
			"lpc.com" #n ".path"                                                      \
		}                                                                                 \
	}

const struct lpc_device lpc_devices[] = {
	LPC_COM(1),
	LPC_COM(2),
	LPC_COM(3),
	LPC_COM(4),
	{ "bootrom",
	  "FILE[,VARSFILE]",
	  "boot firmware (SeaBIOS, OVMF) and its variable store",
	  { "lpc.bootrom", "lpc.bootvars" } },
	{ NULL, NULL, NULL, { NULL } },
};
