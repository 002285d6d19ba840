/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Register layout the virtio 1.x spec fixes for the PCI transport: the common configuration
 * window's offsets and the vendor capability types.  Shared by the transport and the tests
 * that drive it as a driver would.
 */
#ifndef KHYVE_VIRTIO_PCI_REGS_H
#define KHYVE_VIRTIO_PCI_REGS_H

/* Vendor capability types (virtio_pci_cap.cfg_type). */
#define CAP_COMMON_CFG 1
#define CAP_NOTIFY_CFG 2
#define CAP_ISR_CFG 3
#define CAP_DEVICE_CFG 4
#define CAP_PCI_CFG 5

/* Common configuration window (struct virtio_pci_common_cfg). */
#define CC_DFSELECT 0x00
#define CC_DF 0x04
#define CC_GFSELECT 0x08
#define CC_GF 0x0C
#define CC_MSIX 0x10
#define CC_NUMQ 0x12
#define CC_STATUS 0x14
#define CC_CFGGEN 0x15
#define CC_QSELECT 0x16
#define CC_QSIZE 0x18
#define CC_QMSIX 0x1A
#define CC_QENABLE 0x1C
#define CC_QNOFF 0x1E
#define CC_QDESC 0x20
#define CC_QAVAIL 0x28
#define CC_QUSED 0x30

#endif
