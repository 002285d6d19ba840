/* SPDX-License-Identifier: MIT */
/*
 * khyve test guest: constants shared by the ring-0 stub (assembly and C)
 * and the ring-3 workloads. Keep this header usable from .S files.
 */
#ifndef GUEST_H
#define GUEST_H

#define MAX_CPUS		32

/*
 * Per-CPU block, naturally aligned so that an interrupt stub finds it by
 * masking its stack pointer: every ring-0 stack of a CPU lives inside it.
 *   0x0000  u64 irq_count[256]   bumped by the interrupt stubs
 *   0x0800  u64 rtc_flags        OR of RTC register C values seen
 *   0x0808  u64 sci_status       OR of PM1a status values seen by the SCI stub
 *   0x0840  struct tss
 *   0x1000 .. 0x4000  RSP0 stack (syscalls, exceptions from ring 3)
 *   0x4000 .. 0x7000  IST1 stack (all interrupts)
 *   0x7000 .. 0x8000  IST2 stack (double fault)
 */
#define PERCPU_SIZE		0x8000
#define PERCPU_RTC_FLAGS	0x800
#define PERCPU_SCI_STATUS	0x808
#define PERCPU_CLEAR_SIZE	0x810	/* counters and flags, zeroed at start */
#define PERCPU_TSS		0x840
#define PERCPU_RSP0_TOP		0x4000
#define PERCPU_IST1_TOP		0x7000
#define PERCPU_IST2_TOP		0x8000

#define USTACK_SIZE		0x8000

/* Real-mode AP trampoline page (SIPI vector 0x10); free in khyve's map. */
#define TRAMP_BASE		0x10000

/* GDT selectors */
#define SEL_KCODE		0x08
#define SEL_KDATA		0x10
#define SEL_UDATA		0x18
#define SEL_UCODE		0x20
#define SEL_KCODE32		0x28
#define SEL_TSS0		0x30
#define GDT_ENTRIES		(6 + 2 * MAX_CPUS)

/* Interrupt vectors */
#define VEC_PIC_BASE		0x20	/* legacy PIC, remapped and masked */
#define VEC_IOAPIC_BASE		0x30	/* IOAPIC pin n -> 0x30 + n */
#define VEC_RTC			(VEC_IOAPIC_BASE + 8)
#define VEC_SCI			0x52	/* ACPI SCI, level triggered */
#define VEC_LAPIC_TIMER		0x50
#define VEC_IPI			0x51
#define VEC_SPURIOUS		0xff

/* Syscalls: ud2 (see entry.S), rax = number, rdi/rsi/rdx = arguments */
#define SYS_INB			0	/* (port) */
#define SYS_INW			1
#define SYS_INL			2
#define SYS_OUTB		3	/* (port, value) */
#define SYS_OUTW		4
#define SYS_OUTL		5
#define SYS_UART_WRITE		6	/* (base, buf, len): polled THR writes */
#define SYS_CMOS_READ		7	/* (index) */
#define SYS_CMOS_WRITE		8	/* (index, value) */
#define SYS_HLT			9	/* (addr, val): hlt if *addr == val */
#define SYS_HALT		10	/* cli; hlt forever */
#define SYS_UART_XCHG		11	/* (base, buf, rep): 16 bytes out and back, LSR */
#define SYS_MAX			12

/* hvm_start_info (PVH) */
#define PVH_MAGIC		0x336ec578

#endif
