/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The firmware ROM and the BIOS area of a PC (-l bootrom,FILE[,VARSFILE], as bhyve).
 *
 * The image is mapped read-only so that it ends at 4 GiB, where the reset vector (0xFFFFFFF0)
 * is; its last 128 KiB also appear at 0xE0000-0xFFFFF, as a PC's ISA bridge decodes the BIOS
 * range to the flash chip.  VARSFILE, when given, is a flash device directly below the image
 * (OVMF's variable store): it reads as the file, and takes the Intel/Sharp command set
 * (CFI query, read status, byte program, block erase) that OVMF drives; programs and erases
 * go to the file (MAP_SHARED) at once.
 *
 * What the guest sees at 0xC0000-0xFFFFF is decided by the host bridge's PAM registers
 * (bootrom_set_pam, called by the i440FX host bridge): 12 segments of 16 KiB from 0xC0000 and
 * one of 64 KiB at 0xF0000, each with a read enable (reads from RAM, else from the ROM alias
 * for 0xE0000 and up, or from nothing: all-ones) and a write enable (writes to RAM, else
 * dropped).  Each segment is a KVM memory slot of its own (RAM, read-only RAM or the ROM), so
 * a guest running from it costs no exits; writes to a read-only slot and accesses with no
 * slot come to bootrom's MMIO handler, which applies the same rules.
 *
 * The snapshot holds the image (a restore needs no ROM file and runs the very code that was
 * saved) and the flash's command state; the PAM state is the host bridge's configuration space.
 * The variable store's contents are the file's, like a disk's.
 */
#ifndef KHYVE_DEV_BOOTROM_H
#define KHYVE_DEV_BOOTROM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vm;

#define BOOTROM_MAX_SIZE (16ULL << 20) /* image plus variable store, ending at 4 GiB */
#define BIOS_AREA_BASE 0xC0000ULL
#define BIOS_AREA_END 0x100000ULL
#define BIOS_ALIAS_BASE 0xE0000ULL /* where the ROM's last 128 KiB appear */
#define PAM_SEGMENTS 13		   /* 12 x 16 KiB from 0xC0000, 64 KiB at 0xF0000 */

/* A segment's mode: PAM register nibbles, as the i440FX datasheet numbers them. */
#define PAM_RE 0x1 /* reads from RAM */
#define PAM_WE 0x2 /* writes to RAM */

/*
 * KVM memory slots.  RAM regions use slots 0 and 1 (vm.c); with a boot ROM, the RAM of
 * region 0 above the BIOS area moves to BOOTROM_SLOT_RAM_HIGH.
 */
#define BOOTROM_SLOT_RAM_HIGH 16
#define BOOTROM_SLOT_ROM 17
#define BOOTROM_SLOT_VARS 18
#define BOOTROM_SLOT_PAM 19 /* .. + PAM_SEGMENTS - 1 */

/*
 * Reads lpc.bootrom (and lpc.bootvars) and attaches the ROM to @vm (vm->bootrom, and a
 * device "bootrom" in the device list).  With @restoring the image comes from the snapshot
 * instead of the file.  0 or -errno with a message in @err.
 */
int bootrom_create(struct vm *vm, bool restoring, char *err, size_t errlen);

/* Hand KVM the slots of the ROM, the flash and the BIOS area (vm_set_memslots calls this). */
int bootrom_map(struct vm *vm);

/* The host bridge's PAM registers changed: @mode[i] for segment i (PAM_RE | PAM_WE). */
void bootrom_set_pam(struct vm *vm, const uint8_t mode[PAM_SEGMENTS]);

/* Bytes the ROM and its variable store take below 4 GiB (0 before a restore loads it). */
uint64_t bootrom_area_size(struct vm *vm);

/* Segment index of @gpa inside the BIOS area, or -1. */
int bootrom_pam_segment(uint64_t gpa);

/*
 * A write of @len bytes at @gpa by a device (fw_cfg DMA) that may fall in the BIOS area: done
 * as the PAM state says (RAM written only where writes are enabled).  Returns false when any
 * byte could not be written.  @gpa..+@len must already be known to be guest RAM.
 */
bool bootrom_dma_write(struct vm *vm, uint64_t gpa, const void *data, uint64_t len);

#endif
