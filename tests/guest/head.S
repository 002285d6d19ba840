/* SPDX-License-Identifier: MIT */
/*
 * khyve test guest: PVH entry, identity page tables, long mode, AP
 * trampoline. Every instruction here runs emulated (~1.5 us each under
 * PVM), so this file does the least that needs ring 0 and no more.
 */
#include "guest.h"

#define CR0_PE		0x00000001
#define CR0_NW		0x20000000
#define CR0_CD		0x40000000
#define CR0_PG		0x80000000
#define CR4_PAE		0x00000020
#define MSR_EFER	0xc0000080
#define EFER_LME	0x00000100

#define PTE_P		0x001
#define PTE_RW		0x002
#define PTE_US		0x004
#define PTE_PWT		0x008
#define PTE_PCD		0x010
#define PTE_PS		0x080
#define PTE_TABLE	(PTE_P | PTE_RW | PTE_US)
#define PTE_LARGE	(PTE_P | PTE_RW | PTE_US | PTE_PS)

/* 2 MiB pages covering the LAPIC/IOAPIC/HPET area get PCD|PWT */
#define PD_MMIO_FIRST	(0xfec00000 >> 21)
#define PD_MMIO_LAST	(0xfee00000 >> 21)

/* PVH ELF note: XEN_ELFNOTE_PHYS32_ENTRY (18), name "Xen" */
	.section .note.xen, "a"
	.p2align 2
	.long 4
	.long 8
	.long 18
	.asciz "Xen"
	.p2align 2
	.quad pvh_start

/*
 * Multiboot v1 header (within the first 8 KiB of the file), so that a boot loader (GRUB's
 * "multiboot") can start the same image: page-aligned modules, memory information.  The ELF
 * entry point is mb_start; PVH uses the note above.
 */
#define MB_MAGIC	0x1badb002
#define MB_FLAGS	0x00000003
	.section .mbheader, "a"
	.p2align 2
	.long MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)

	.section .text.head, "ax"
	.code32
	.globl pvh_start, mb_start
pvh_start:
	cli
	movl %ebx, start_info_pa
	jmp boot32
/* Multiboot: EAX = 0x2badb002, EBX = multiboot information, no stack, flat segments. */
mb_start:
	cli
	movl %ebx, mb_info_pa
boot32:
	lgdt gdt_ptr
	ljmp $SEL_KCODE32, $1f
1:	movl $SEL_KDATA, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss

	/* zero PML4 and PDPT, the only paging structures not fully written */
	movl $pml4, %edi
	movl $(2 * 4096 / 4), %ecx
	xorl %eax, %eax
	rep stosl

	movl $(pdpt + PTE_TABLE), pml4
	movl $(pd + PTE_TABLE), pdpt
	movl $(pd + 0x1000 + PTE_TABLE), pdpt + 8
	movl $(pd + 0x2000 + PTE_TABLE), pdpt + 16
	movl $(pd + 0x3000 + PTE_TABLE), pdpt + 24

	/* 2048 x 2 MiB identity pages: the first 4 GiB */
	movl $pd, %edi
	movl $PTE_LARGE, %eax
	movl $2048, %ecx
2:	movl %eax, (%edi)
	movl $0, 4(%edi)
	addl $0x200000, %eax
	addl $8, %edi
	loop 2b
	orl $(PTE_PCD | PTE_PWT), pd + 8 * PD_MMIO_FIRST
	orl $(PTE_PCD | PTE_PWT), pd + 8 * PD_MMIO_LAST
	jmp enter_long

/* APs arrive here from the trampoline, in protected mode, CS = KCODE32 */
	.globl ap_entry32
ap_entry32:
	movl $SEL_KDATA, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss

enter_long:
	movl %cr4, %eax
	orl $CR4_PAE, %eax
	movl %eax, %cr4
	movl $pml4, %eax
	movl %eax, %cr3
	movl $MSR_EFER, %ecx
	rdmsr
	orl $EFER_LME, %eax
	wrmsr
	movl %cr0, %eax
	andl $~(CR0_CD | CR0_NW), %eax
	orl $(CR0_PG | CR0_PE), %eax
	movl %eax, %cr0
	ljmp $SEL_KCODE, $long64

	.code64
long64:
	movl $SEL_KDATA, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	xorl %eax, %eax
	movl %eax, %fs
	movl %eax, %gs
	/* cpu index: 0 for the BSP, set by the BSP before each SIPI */
	movl ap_boot_cpu, %edi
	movl %edi, %eax
	shll $15, %eax		/* PERCPU_SIZE */
	leaq percpu + PERCPU_RSP0_TOP(%rax), %rsp
	testl %edi, %edi
	jnz 3f
	call bsp_setup
	xorl %edi, %edi
3:	call cpu_enter
4:	hlt
	jmp 4b

/*
 * AP trampoline, copied to TRAMP_BASE by ring 3 before the SIPI.
 * Real mode, CS = TRAMP_BASE >> 4, IP = 0.
 */
	.section .rodata.tramp, "a"
	.code16
	.globl tramp_start, tramp_end
tramp_start:
	cli
	movw %cs, %ax
	movw %ax, %ds
	lgdtl tramp_gdt_ptr - tramp_start
	movl %cr0, %eax
	orl $CR0_PE, %eax
	movl %eax, %cr0
	ljmpl $SEL_KCODE32, $ap_entry32
	.p2align 2
tramp_gdt_ptr:
	.word GDT_ENTRIES * 8 - 1
	.long gdt
tramp_end:

	.data
	.p2align 3
	.globl start_info_pa, mb_info_pa, ap_boot_cpu, gdt_ptr
start_info_pa:
	.long 0
mb_info_pa:
	.long 0
ap_boot_cpu:
	.long 0
gdt_ptr:
	.word GDT_ENTRIES * 8 - 1
	.quad gdt

	.section .pgtable, "aw", @nobits
	.p2align 12
	.globl pml4, pdpt, pd
pml4:	.skip 4096
pdpt:	.skip 4096
pd:	.skip 4 * 4096
