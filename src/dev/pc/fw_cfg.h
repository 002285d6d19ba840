/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * QEMU's firmware configuration interface (fw_cfg), the x86 I/O-port flavour, as SeaBIOS and
 * OVMF read it (QEMU's docs/specs/fw_cfg.rst; bhyve 14 has one for its EDK2 too):
 *
 *	0x510	selector (16-bit write): picks an item and rewinds it
 *	0x511	data (8-bit read): the next byte of the item, 0 past its end
 *	0x514	DMA address, big endian: the high dword at 0x514, the low dword at 0x518
 *		(writing it starts the transfer), or a qword at 0x514; reads give "QEMU CFG"
 *
 * Items are selected by key: the fixed ones (signature, interface id, CPU count, file
 * directory...) and named files from FW_CFG_FILE_FIRST on, listed in the file directory
 * (key 0x19) with big-endian sizes and keys.  A DMA request is a 16-byte structure in guest
 * memory { be32 control, be32 length, be64 address }: control holds the selector (high 16
 * bits) and SELECT/READ/SKIP/WRITE; the device clears it when done, or leaves ERROR set.
 * Every guest value is checked: the structure and each byte moved must be guest RAM, the
 * length is a u32 moved in pieces, an unknown selector reads zeros, a read past an item's
 * end gives zeros; a DMA write goes only into a file made writable and only inside it (else
 * ERROR), and its owner is told.
 *
 * The snapshot holds every item (the guest may be half-way through reading one, and the
 * items describe the machine it booted on), the selector, the offset and the DMA address.
 * Threads: accesses come from vCPU threads under the device lock.
 */
#ifndef KHYVE_DEV_FW_CFG_H
#define KHYVE_DEV_FW_CFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vm;
struct fw_cfg;

#define FW_CFG_PORT_SEL 0x510
#define FW_CFG_PORT_DATA 0x511
#define FW_CFG_PORT_DMA 0x514
#define FW_CFG_PORT_LEN 12 /* 0x510 - 0x51B */

#define FW_CFG_SIGNATURE 0x00
#define FW_CFG_ID 0x01
#define FW_CFG_UUID 0x02
#define FW_CFG_RAM_SIZE 0x03
#define FW_CFG_NOGRAPHIC 0x04
#define FW_CFG_NB_CPUS 0x05
#define FW_CFG_MAX_CPUS 0x0f
#define FW_CFG_FILE_DIR 0x19
#define FW_CFG_FILE_FIRST 0x20
#define FW_CFG_ARCH_LOCAL 0x8000
#define FW_CFG_IRQ0_OVERRIDE (FW_CFG_ARCH_LOCAL + 2)

#define FW_CFG_ID_TRADITIONAL 0x1
#define FW_CFG_ID_DMA 0x2

#define FW_CFG_DMA_ERROR 0x01
#define FW_CFG_DMA_READ 0x02
#define FW_CFG_DMA_SKIP 0x04
#define FW_CFG_DMA_SELECT 0x08
#define FW_CFG_DMA_WRITE 0x10

#define FW_CFG_NAME_LEN 56	     /* with the terminating NUL */
#define FW_CFG_MAX_ITEMS 256	     /* files and fixed items together */
#define FW_CFG_MAX_TOTAL (16u << 20) /* bytes of all items: a bound for snapshot loads */

/* Creates the device at its ports ("fw_cfg" in the device list).  NULL with @err. */
struct fw_cfg *fw_cfg_create(struct vm *vm, char *err, size_t errlen);

/* Item @key gets a copy of @len bytes at @data.  -EEXIST, -ENOSPC, -EINVAL, -ENOMEM. */
int fw_cfg_add_item(struct fw_cfg *fc, uint16_t key, const void *data, uint32_t len);
/* A named file (at most FW_CFG_NAME_LEN - 1 characters) at the next free key. */
int fw_cfg_add_file(struct fw_cfg *fc, const char *name, const void *data, uint32_t len);
/*
 * A file the guest may write by DMA (as the loader's WRITE_POINTER does); @fn gets its whole
 * content after each write, under the device lock, from a vCPU thread.
 */
typedef void (*fw_cfg_write_fn)(void *opaque, const uint8_t *data, uint32_t len);
int fw_cfg_add_file_writable(struct fw_cfg *fc, const char *name, const void *data, uint32_t len,
			     fw_cfg_write_fn fn, void *opaque);

/* The port handler, for tests and the fuzzer (offset from FW_CFG_PORT_SEL). */
void fw_cfg_io(void *opaque, uint64_t off, void *data, unsigned size, bool is_write);

#endif
