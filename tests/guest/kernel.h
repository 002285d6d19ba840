/* SPDX-License-Identifier: MIT */
/* khyve test guest: ring-0 internals (kernel.c, head.S, entry.S). */
#ifndef KERNEL_H
#define KERNEL_H

#include "types.h"
#include "guest.h"

/* Stack layout built by exc_common (entry.S) */
struct fault_frame {
	u64 r15, r14, r13, r12, r11, r10, r9, r8;
	u64 rbp, rdi, rsi, rdx, rcx, rbx, rax;
	u64 vector, error;
	u64 rip, cs, rflags, rsp, ss;
};

void bsp_setup(void);
void cpu_enter(u32 cpu) __attribute__((noreturn));
void fault_report(struct fault_frame *f);
void ring3_main(u32 cpu) __attribute__((noreturn));

extern u8 percpu[MAX_CPUS][PERCPU_SIZE];
extern u8 ustack[MAX_CPUS][USTACK_SIZE];
extern u16 kern_pm1a_evt, kern_pm1a_cnt, kern_pm1b_cnt, kern_slp_typ;

static inline void outb(u16 port, u8 v)
{
	asm volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline void outw(u16 port, u16 v)
{
	asm volatile("outw %0, %1" : : "a"(v), "Nd"(port));
}

static inline u8 inb(u16 port)
{
	u8 v;

	asm volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

#endif
