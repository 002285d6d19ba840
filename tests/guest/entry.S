/* SPDX-License-Identifier: MIT */
/*
 * khyve test guest: interrupt and exception entry, the port-I/O syscall,
 * and the drop to ring 3. Handlers are as short as possible because each
 * ring-0 instruction is emulated.
 */
#include "guest.h"

#define LAPIC_EOI	0xfee000b0
#define PERCPU_MASK	(~(PERCPU_SIZE - 1))

	.text
	.code64

/*
 * Exception stubs, 16 bytes each: push a dummy error code where the CPU
 * does not, push the vector, then report and power off.
 */
	.p2align 4
	.globl exc_stubs
exc_stubs:
	.set vec, 0
	.rept 32
	.p2align 4
	.if vec == 6
	jmp ud_entry
	.elseif (vec == 8 || (vec >= 10 && vec <= 14) || vec == 17 || vec == 21 || vec == 29 || vec == 30)
	nop
	nop
	.else
	pushq $0
	.endif
	pushq $vec
	jmp exc_common
	.set vec, vec + 1
	.endr

/*
 * #UD: ring 3's system call is "ud2" (0f 0b). Under PVM, ring 3 cannot
 * reach ring 0 with "int n" (it gets #UD) nor with in/out (#GP), but an
 * exception is always reflected to the guest's IDT, on hardware too.
 * Skip the instruction and dispatch; anything else is a real fault.
 */
ud_entry:
	cmpq $(SEL_UCODE | 3), 8(%rsp)
	jne 1f
	pushq %rcx
	movq 8(%rsp), %rcx
	cmpw $0x0b0f, (%rcx)
	popq %rcx
	jne 1f
	addq $2, (%rsp)
	jmp syscall_entry
1:	pushq $0
	pushq $6
	jmp exc_common

exc_common:
	pushq %rax
	pushq %rbx
	pushq %rcx
	pushq %rdx
	pushq %rsi
	pushq %rdi
	pushq %rbp
	pushq %r8
	pushq %r9
	pushq %r10
	pushq %r11
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	movq %rsp, %rdi
	andq $-16, %rsp
	call fault_report
1:	cli
	hlt
	jmp 1b

/*
 * Counting interrupt stubs for vectors 32..255, 32 bytes each: bump this
 * CPU's counter for the vector, EOI the local APIC, return.
 */
	.p2align 5
	.globl irq_stubs
irq_stubs:
	.set vec, 32
	.rept 224
	.p2align 5
	pushq %rax
	movq %rsp, %rax
	andq $PERCPU_MASK, %rax
	incq (vec * 8)(%rax)
	movl $LAPIC_EOI, %eax
	movl $0, (%rax)
	popq %rax
	iretq
	.set vec, vec + 1
	.endr

/*
 * NMI (khyvectl --inject-nmi): count it in the per-CPU slot of vector 2, which no
 * interrupt uses, and go on.  No EOI: an NMI is not an APIC interrupt.  On the current
 * stack, not an IST one (an NMI in an IRQ stub must not reuse its stack): from ring 3 that
 * is the TSS's rsp0, and ring 0 after the start runs only on it too, per-CPU stacks both.
 */
	.globl nmi_entry
nmi_entry:
	pushq %rax
	movq %rsp, %rax
	andq $PERCPU_MASK, %rax
	incq (2 * 8)(%rax)
	popq %rax
	iretq

/* Spurious vector: count, no EOI. */
	.globl irq_spurious
irq_spurious:
	pushq %rax
	movq %rsp, %rax
	andq $PERCPU_MASK, %rax
	incq (VEC_SPURIOUS * 8)(%rax)
	popq %rax
	iretq

/* RTC (IRQ 8): also read register C so the RTC can interrupt again. */
	.globl irq_rtc
irq_rtc:
	pushq %rax
	pushq %rcx
	movq %rsp, %rcx
	andq $PERCPU_MASK, %rcx
	incq (VEC_RTC * 8)(%rcx)
	movb $0x0c, %al
	outb %al, $0x70
	inb $0x71, %al
	orb %al, PERCPU_RTC_FLAGS(%rcx)
	movl $LAPIC_EOI, %eax
	movl $0, (%rax)
	popq %rcx
	popq %rax
	iretq

/*
 * ACPI SCI (level triggered): acknowledge every PM1a status bit so the
 * line drops before the EOI, and leave the bits for ring 3 to act on.
 */
	.globl irq_sci
irq_sci:
	pushq %rax
	pushq %rcx
	pushq %rdx
	movq %rsp, %rcx
	andq $PERCPU_MASK, %rcx
	incq (VEC_SCI * 8)(%rcx)
	movzwl kern_pm1a_evt, %edx
	inw %dx, %ax
	outw %ax, %dx
	orw %ax, PERCPU_SCI_STATUS(%rcx)
	movl $LAPIC_EOI, %eax
	movl $0, (%rax)
	popq %rdx
	popq %rcx
	popq %rax
	iretq

/*
 * System call (entered from ud_entry with an iretq frame): privileged
 * operations for ring 3. Clobbers rax, rcx, rdx, rsi, rdi, r8; result
 * in rax.
 */
	.globl syscall_entry
syscall_entry:
	cmpq $SYS_MAX, %rax
	jae 1f
	jmp *sys_table(, %rax, 8)
1:	movq $-1, %rax
	iretq

sys_inb:
	movl %edi, %edx
	xorl %eax, %eax
	inb %dx, %al
	iretq
sys_inw:
	movl %edi, %edx
	xorl %eax, %eax
	inw %dx, %ax
	iretq
sys_inl:
	movl %edi, %edx
	inl %dx, %eax
	iretq
sys_outb:
	movl %edi, %edx
	movl %esi, %eax
	outb %al, %dx
	iretq
sys_outw:
	movl %edi, %edx
	movl %esi, %eax
	outw %ax, %dx
	iretq
sys_outl:
	movl %edi, %edx
	movl %esi, %eax
	outl %eax, %dx
	iretq

/* Polled 16550 output: wait for LSR.THRE (bounded), write one byte. */
sys_uart_write:
	movq %rdx, %rcx
1:	testq %rcx, %rcx
	jz 4f
	movl $100000, %r8d
	leal 5(%rdi), %edx
2:	inb %dx, %al
	testb $0x20, %al
	jnz 3f
	decl %r8d
	jnz 2b
3:	movl %edi, %edx
	movb (%rsi), %al
	outb %al, %dx
	incq %rsi
	decq %rcx
	jmp 1b
4:	xorl %eax, %eax
	iretq

/* CMOS index+data in one go, so the RTC handler cannot move the index */
sys_cmos_read:
	movl %edi, %eax
	outb %al, $0x70
	xorl %eax, %eax
	inb $0x71, %al
	iretq
sys_cmos_write:
	movl %edi, %eax
	outb %al, $0x70
	movl %esi, %eax
	outb %al, $0x71
	iretq

/*
 * Sleep until the next interrupt unless *rdi != rsi: checked with IF=0,
 * and sti;hlt opens no window, so a wake-up cannot be lost.
 */
sys_hlt:
	testq %rdi, %rdi
	jz 1f
	cmpq (%rdi), %rsi
	jne 2f
1:	sti
	hlt
	cli
2:	xorl %eax, %eax
	iretq

sys_halt:
	cli
	hlt
	jmp sys_halt

/*
 * UART loopback exchange: rep outsb 16 bytes from @rsi to THR at port
 * @rdi, then read 16 from RBR into @rsi + 16 with 16 single insb (or one
 * rep insb if @rdx is 1), return LSR. Every read pops a byte: mode=uart
 * checks that none is lost or replayed. Single instructions, unrolled,
 * because under PVM each ring-0 instruction costs about as much as the
 * exit it makes.
 */
sys_uart_xchg:
	cld
	movq %rdx, %r8
	movl $16, %ecx
	movl %edi, %edx
	rep outsb
	movq %rsi, %rdi
	testq %r8, %r8
	jnz 1f
	.rept 16
	insb
	.endr
	jmp 2f
1:	movl $16, %ecx
	rep insb
2:	addl $5, %edx
	xorl %eax, %eax
	inb %dx, %al
	iretq

	.section .rodata
	.p2align 3
sys_table:
	.quad sys_inb, sys_inw, sys_inl
	.quad sys_outb, sys_outw, sys_outl
	.quad sys_uart_write, sys_cmos_read, sys_cmos_write
	.quad sys_hlt, sys_halt, sys_uart_xchg

	.text
/* enter_user(entry, stack_top, arg): iretq to ring 3, IF set */
	.globl enter_user
enter_user:
	pushq $(SEL_UDATA | 3)
	pushq %rsi
	pushq $0x202
	pushq $(SEL_UCODE | 3)
	pushq %rdi
	movq %rdx, %rdi
	xorl %esi, %esi
	xorl %edx, %edx
	iretq
