/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Kernel loaders: Linux bzImage (64-bit boot protocol), PVH ELF and Multiboot v1, chosen by
 * the contents of boot.kernel.  boot_load() puts the kernel, its initrd (boot.initrd), its
 * command line (boot.cmdline) and the protocol's boot data into guest RAM at the places
 * doc/platform.md gives, and says how the BSP must start; boot_setup_sregs/regs turn that
 * into vCPU state.  Everything is checked against guest RAM and the reserved areas: the
 * image is untrusted input.
 *
 * Nothing here needs /dev/kvm, so the loaders are unit-tested on a VM whose RAM is a buffer.
 */
#ifndef KHYVE_BOOT_H
#define KHYVE_BOOT_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vm;

/* Boot data in low RAM (doc/platform.md). */
#define BOOT_GDT_ADDR 0x500ULL
#define BOOT_INFO_ADDR 0x7000ULL    /* zero page, hvm_start_info or multiboot info */
#define BOOT_STACK_TOP 0x8FF0ULL    /* a valid stack for kernels that want one */
#define BOOT_PGTABLE_ADDR 0x9000ULL /* PML4; PDPT and page directories follow */
#define BOOT_PGTABLE_END 0xD000ULL
#define BOOT_CMDLINE_ADDR 0x20000ULL
#define BOOT_CMDLINE_MAX 0x10000ULL /* bytes, with the terminating NUL */

/* The boot GDT: one table for every protocol. */
#define BOOT_SEL_CODE32 0x08 /* PVH, multiboot */
#define BOOT_SEL_CODE64 0x10 /* Linux __BOOT_CS */
#define BOOT_SEL_DATA 0x18   /* Linux __BOOT_DS; data for the 32-bit protocols too */
#define BOOT_SEL_TSS 0x20

struct boot_entry {	/* how the BSP starts */
	bool long_mode; /* true: 64-bit with paging (bzImage); false: 32-bit flat, paging off */
	uint64_t rip, rsp;
	uint64_t rsi, rbx, rax; /* RSI = boot_params; EBX = start_info; EAX/EBX multiboot */
	uint64_t cr3;		/* long mode: boot page tables */
	uint64_t gdt_base;
	uint16_t gdt_limit;
};

/*
 * Loads boot.kernel (with boot.initrd and boot.cmdline) into @vm's RAM and fills @entry.
 * Returns 0, or -errno with a message in @err naming the file and what is wrong with it.
 */
int boot_load(struct vm *vm, struct boot_entry *entry, char *err, size_t errlen);
/* Edits the reset state KVM gave the BSP: segments, GDT, TR, CR0/CR3/CR4, EFER. */
void boot_setup_sregs(const struct boot_entry *e, struct kvm_sregs *sregs);
/* Edits the reset registers: RIP, RSP, the protocol registers, RFLAGS (interrupts off). */
void boot_setup_regs(const struct boot_entry *e, struct kvm_regs *regs);

#endif
