// SPDX-License-Identifier: MIT
/*
 * khyve test guest, ring 0: descriptor tables, per-CPU start, exception
 * reports. Everything here runs emulated, so it stays small; ring 3 does
 * the rest (see main.c).
 */
#include "kernel.h"

struct tss {
	u32 reserved0;
	u64 rsp[3];
	u64 reserved1;
	u64 ist[7];
	u64 reserved2;
	u16 reserved3;
	u16 iomap_base;
} __attribute__((packed));

struct idt_gate {
	u16 offset_lo;
	u16 selector;
	u8 ist;
	u8 type;
	u16 offset_mid;
	u32 offset_hi;
	u32 reserved;
};

u64 gdt[GDT_ENTRIES] __attribute__((aligned(16))) = {
	[SEL_KCODE / 8] = 0x00af9a000000ffffull,
	[SEL_KDATA / 8] = 0x00cf92000000ffffull,
	[SEL_UDATA / 8] = 0x00cff2000000ffffull,
	[SEL_UCODE / 8] = 0x00affa000000ffffull,
	[SEL_KCODE32 / 8] = 0x00cf9a000000ffffull,
};

static struct idt_gate idt[256] __attribute__((section(".noinit"), aligned(16)));
static struct {
	u16 limit;
	u64 base;
} __attribute__((packed)) idt_ptr = { sizeof(idt) - 1, (u64)idt };

u8 percpu[MAX_CPUS][PERCPU_SIZE] __attribute__((section(".noinit"), aligned(PERCPU_SIZE)));
u8 ustack[MAX_CPUS][USTACK_SIZE] __attribute__((section(".noinit"), aligned(4096)));

/* Written by ring 3 once ACPI is parsed; used to power off on a fault. */
u16 kern_pm1a_evt, kern_pm1a_cnt, kern_pm1b_cnt;
u16 kern_slp_typ;

extern char exc_stubs[], irq_stubs[], irq_spurious[], irq_rtc[], irq_sci[], nmi_entry[];
void enter_user(void (*entry)(u32), u64 stack, u64 arg) __attribute__((noreturn));

static void idt_set(int vec, void *handler, int ist, int dpl)
{
	u64 a = (u64)handler;
	struct idt_gate *g = &idt[vec];

	g->offset_lo = a;
	g->selector = SEL_KCODE;
	g->ist = ist;
	g->type = 0x8e | (dpl << 5);	/* present, 64-bit interrupt gate */
	g->offset_mid = a >> 16;
	g->offset_hi = a >> 32;
	g->reserved = 0;
}

static void idt_fill(void)
{
	int v;

	for (v = 0; v < 32; v++)
		idt_set(v, exc_stubs + 16 * v, v == 8 ? 2 : 0, 0);
	for (v = 32; v < 256; v++)
		idt_set(v, irq_stubs + 32 * (v - 32), 1, 0);
	idt_set(2, nmi_entry, 0, 0);
	idt_set(VEC_RTC, irq_rtc, 1, 0);
	idt_set(VEC_SPURIOUS, irq_spurious, 1, 0);
	idt_set(VEC_SCI, irq_sci, 1, 0);
}

/* Remap the 8259s away from the exception vectors and mask them. */
static void pic_disable(void)
{
	outb(0x20, 0x11);
	outb(0xa0, 0x11);
	outb(0x21, VEC_PIC_BASE);
	outb(0xa1, VEC_PIC_BASE + 8);
	outb(0x21, 4);
	outb(0xa1, 2);
	outb(0x21, 1);
	outb(0xa1, 1);
	outb(0x21, 0xff);
	outb(0xa1, 0xff);
}

void bsp_setup(void)
{
	idt_fill();
	pic_disable();
}

static void tss_install(u32 cpu)
{
	u8 *pc = percpu[cpu];
	struct tss *t = (struct tss *)(pc + PERCPU_TSS);
	u64 base = (u64)t;
	int slot = SEL_TSS0 / 8 + 2 * cpu;

	t->rsp[0] = (u64)pc + PERCPU_RSP0_TOP;
	t->ist[0] = (u64)pc + PERCPU_IST1_TOP;
	t->ist[1] = (u64)pc + PERCPU_IST2_TOP;
	t->iomap_base = sizeof(*t);
	gdt[slot] = (sizeof(*t) - 1) | (base & 0xffffff) << 16 |
		    0x89ull << 40 | ((base >> 24) & 0xff) << 56;
	gdt[slot + 1] = base >> 32;
	asm volatile("ltr %w0" : : "r"(slot * 8));
}

void cpu_enter(u32 cpu)
{
	tss_install(cpu);
	asm volatile("lidt %0" : : "m"(idt_ptr));
	enter_user(ring3_main, (u64)ustack[cpu + 1], cpu);
}

/* Exception report: the only ring-0 code that prints. */
static void r0_putc(char c)
{
	int n = 100000;

	while (!(inb(0x3f8 + 5) & 0x20) && --n)
		;
	outb(0x3f8, c);
}

static void r0_puts(const char *s)
{
	while (*s)
		r0_putc(*s++);
}

static void r0_hex(u64 v)
{
	int i;

	r0_puts("0x");
	for (i = 60; i >= 0; i -= 4)
		r0_putc("0123456789abcdef"[(v >> i) & 15]);
}

static void r0_dec(u64 v)
{
	if (v >= 10)
		r0_dec(v / 10);
	r0_putc('0' + v % 10);
}

void fault_report(struct fault_frame *f)
{
	u64 cr2;

	asm volatile("mov %%cr2, %0" : "=r"(cr2));
	r0_puts("\nexception ");
	r0_dec(f->vector);
	r0_puts(" rip ");
	r0_hex(f->rip);
	r0_puts(" err ");
	r0_hex(f->error);
	r0_puts(" cr2 ");
	r0_hex(cr2);
	r0_puts(" rsp ");
	r0_hex(f->rsp);
	r0_puts("\nTESTGUEST FAIL: exception ");
	r0_dec(f->vector);
	r0_puts(" at ");
	r0_hex(f->rip);
	r0_puts("\n");
	if (kern_pm1a_cnt) {
		outw(kern_pm1a_cnt, kern_slp_typ << 10 | 1 << 13);
	} else {
		/* before ACPI was parsed: khyve's PM1a_CNT (S5 = 5), QEMU's (S5 = 0) */
		outw(0x404, 5 << 10 | 1 << 13);
		outw(0x604, 1 << 13);
	}
}
