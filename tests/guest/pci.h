/* SPDX-License-Identifier: MIT */
/*
 * khyve test guest, ring 3: PCI configuration mechanism #1 (0xCF8/0xCFC
 * through the port-I/O system call), bus 0 enumeration, BARs as the
 * firmware or the monitor assigned them, capability lists, and mapping a
 * BAR that lies above the 4 GiB head.S maps.
 */
#ifndef PCI_H
#define PCI_H

#include "types.h"

#define PCI_VENDOR_ID		0x00
#define PCI_DEVICE_ID		0x02
#define PCI_COMMAND		0x04
#define PCI_STATUS		0x06
#define PCI_REVISION		0x08
#define PCI_HEADER_TYPE		0x0e
#define PCI_BAR0		0x10
#define PCI_CAP_PTR		0x34

#define PCI_CMD_IO		0x0001
#define PCI_CMD_MEM		0x0002
#define PCI_CMD_MASTER		0x0004
#define PCI_CMD_INTX_OFF	0x0400
#define PCI_STATUS_CAPS		0x0010

#define PCI_CAP_VENDOR		0x09
#define PCI_CAP_MSIX		0x11

#define PCI_MAX_FNS		64

struct pci_fn {
	u8 bus, dev, fn;
	u16 vendor, device;
	u8 class, subclass, prog_if, revision;
};

u32 pci_read32(const struct pci_fn *f, u32 off);
u16 pci_read16(const struct pci_fn *f, u32 off);
u8 pci_read8(const struct pci_fn *f, u32 off);
void pci_write32(const struct pci_fn *f, u32 off, u32 v);
void pci_write16(const struct pci_fn *f, u32 off, u16 v);
void pci_write8(const struct pci_fn *f, u32 off, u8 v);

/* Every function on bus 0 (scanned once, then cached). */
u32 pci_scan(const struct pci_fn **list);
/* The @nth (0-based) function with this vendor and device id, or NULL. */
const struct pci_fn *pci_find(u16 vendor, u16 device, u32 nth);

/*
 * BAR @bar's address as assigned (0 if unassigned or an I/O BAR; the
 * caller names a BAR, never the upper half of a 64-bit one). *is64 says
 * whether it is a 64-bit BAR.
 */
u64 pci_bar_addr(const struct pci_fn *f, u32 bar, bool *is64);

/* Capability list: offset of the first / next capability, 0 at the end. */
u8 pci_cap_first(const struct pci_fn *f);
u8 pci_cap_next(const struct pci_fn *f, u8 cap);

/* Make [addr, addr+len) reachable from ring 3, uncached (2 MiB pages). */
int map_mmio(u64 addr, u64 len);

#endif
