/* SPDX-License-Identifier: MIT */
/*
 * khyve test guest, ring 3: the contract between the drivers (hw.c,
 * acpi.c, smp.c), the library (lib.c) and the two workloads (selftest.c,
 * counter.c). Ring 3 runs natively; port I/O goes through the syscall
 * (ud2, see entry.S).
 */
#ifndef USER_H
#define USER_H

#include "types.h"
#include "guest.h"

#define COM1		0x3f8
#define LAPIC_BASE	0xfee00000ull
#define IOAPIC_DEFAULT	0xfec00000ull
#define HPET_DEFAULT	0xfed00000ull

/* ---- syscalls ---- */
static inline u64 syscall3(u64 nr, u64 a, u64 b, u64 c)
{
	asm volatile("ud2"
		     : "+a"(nr), "+D"(a), "+S"(b), "+d"(c)
		     : : "rcx", "r8", "memory");
	return nr;
}

static inline u8 inb(u16 port) { return syscall3(SYS_INB, port, 0, 0); }
static inline u16 inw(u16 port) { return syscall3(SYS_INW, port, 0, 0); }
static inline u32 inl(u16 port) { return syscall3(SYS_INL, port, 0, 0); }
static inline void outb(u16 port, u8 v) { syscall3(SYS_OUTB, port, v, 0); }
static inline void outw(u16 port, u16 v) { syscall3(SYS_OUTW, port, v, 0); }
static inline void outl(u16 port, u32 v) { syscall3(SYS_OUTL, port, v, 0); }
static inline u8 cmos_read(u8 idx) { return syscall3(SYS_CMOS_READ, idx, 0, 0); }
static inline void cmos_write(u8 idx, u8 v) { syscall3(SYS_CMOS_WRITE, idx, v, 0); }

/* Sleep until an interrupt unless *addr has moved away from val. */
static inline void sys_hlt(volatile u64 *addr, u64 val)
{
	syscall3(SYS_HLT, (u64)addr, val, 0);
}

static inline void __attribute__((noreturn)) sys_halt(void)
{
	syscall3(SYS_HALT, 0, 0, 0);
	__builtin_unreachable();
}

/* ---- MMIO, TSC ---- */
static inline u32 mmio_read32(u64 addr) { return *(volatile u32 *)addr; }
static inline void mmio_write32(u64 addr, u32 v) { *(volatile u32 *)addr = v; }

static inline u64 rdtsc(void)
{
	u32 lo, hi;

	asm volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return (u64)hi << 32 | lo;
}

static inline void cpu_relax(void) { asm volatile("pause" ::: "memory"); }
static inline void barrier(void) { asm volatile("" ::: "memory"); }

#define READ_ONCE(x) (*(volatile typeof(x) *)&(x))
#define WRITE_ONCE(x, v) (*(volatile typeof(x) *)&(x) = (v))

/* ---- per-CPU interrupt counters (kept by the ring-0 stubs) ---- */
extern u8 percpu[MAX_CPUS][PERCPU_SIZE];

static inline u64 irq_count(u32 cpu, u32 vec)
{
	return READ_ONCE(((u64 *)percpu[cpu])[vec]);
}

static inline u64 *rtc_flags_ptr(u32 cpu)
{
	return (u64 *)(percpu[cpu] + PERCPU_RTC_FLAGS);
}

/* ---- lib.c ---- */
void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int vfmt(char *buf, size_t size, const char *fmt, va_list ap);
int fmt(char *buf, size_t size, const char *fmt, ...);
void pr(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void uart_init(void);

/* time, from the TSC once calibrated */
extern u64 tsc_hz;
u64 now_us(void);
void udelay(u64 us);

/* ---- ACPI power button (khyve presses it on SIGTERM) ---- */
void power_button_arm(void);
void power_button_poll(void);

/* ---- failure reporting, watchdog ---- */
extern const char *cur_check;
extern u64 watchdog_deadline;	/* TSC, 0 = off */
void watchdog_poll(void);
void poweroff(void) __attribute__((noreturn));
void fail_final(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

/* ---- command line ---- */
enum mode {
	MODE_SELFTEST, MODE_COUNTER,
	/* virtio.h */
	MODE_BLK, MODE_BLKBENCH, MODE_NET, MODE_NETBENCH, MODE_RND, MODE_EVIL,
	/* snapshot correctness: uartloop.c, clocks.c */
	MODE_UART, MODE_CLOCKS,
	/* ahci.c */
	MODE_AHCI, MODE_AHCIBENCH,
	MODE_CONSOLE,
	MODE_ECHO,	/* echo.c */
};
struct options {
	enum mode mode;
	u64 mem;
	u64 rate;
	u64 clockslack;	/* mode=clocks: us the timers may disagree by */
	u64 ticks;	/* mode=counter: print the timer counts every second */
	u64 passes;	/* mode=counter: print each CPU's completed passes with each seq */
};
extern struct options opt;
void cmdline_parse(const char *s);

/* ahci.c */
void ahci_run(void) __attribute__((noreturn));
void ahcibench_run(void) __attribute__((noreturn));
/* virtio.c: the virtio modes' command-line words, names and entry */
bool vio_cmdline_word(const char *w);
const char *vio_mode_name(void);
void vio_run(void) __attribute__((noreturn));

/* ---- main.c: PVH memory map ---- */
#define MEMMAP_MAX	64
struct memmap_entry {
	u64 addr, size;
	u32 type;
};
extern struct memmap_entry memmap[MEMMAP_MAX];
extern u32 memmap_count;

/* ---- acpi.c ---- */
struct irq_override {
	u8 source;
	u32 gsi;
	u16 flags;
};

struct platform {
	u64 rsdp;
	u32 ncpus;
	u8 apic_id[MAX_CPUS];
	u64 lapic_base;
	u64 ioapic_base;
	u32 ioapic_gsi_base;
	u32 noverrides;
	struct irq_override overrides[16];
	u64 hpet_base;
	u16 pm_tmr;
	bool pm_tmr_32;
	u16 pm1a_evt, pm1a_cnt, pm1b_cnt;
	u8 pm1_evt_len;
	u16 slp_typa, slp_typb;
	bool have_s5;
	u8 reset_space;
	u64 reset_addr;
	u8 reset_val;
	u16 sci;
	u64 vmgenid;		/* VM Generation ID address (\_SB.VGEN.ADDR), 0 if none */
	u8 vmgenid_irq;		/* the GED's ISA IRQ that notifies a change, 0xff if none */
};
extern struct platform plat;
int acpi_parse(u64 rsdp_hint);
u32 isa_gsi(u8 irq, bool *level, bool *low);

/* ---- hw.c ---- */
u32 lapic_read(u32 reg);
void lapic_write(u32 reg, u32 v);
u32 lapic_id(void);
void lapic_init(void);
void lapic_timer_periodic(u32 count);
u32 lapic_timer_calibrate(u32 hz);
void lapic_send_ipi(u32 apic, u32 icr_lo);

u32 ioapic_read(u32 reg);
void ioapic_write(u32 reg, u32 v);
u32 ioapic_pins(void);
void ioapic_mask_all(void);
void ioapic_route(u32 pin, u8 vec, u32 dest_apic, bool level, bool low);
void ioapic_mask(u32 pin);
u32 route_isa(u8 irq, u32 dest_apic);

extern u64 hpet_period_fs;
u32 hpet_read32(u32 reg);
void hpet_write32(u32 reg, u32 v);
u64 hpet_counter(void);
int hpet_init(void);
u64 hpet_ticks_to_us(u64 ticks);
u32 hpet_us_to_ticks(u64 us);
void hpet_counter_set_low(u32 lo);
int hpet_timer_start(u32 n, int pin, u64 period_us, bool periodic);
void hpet_legacy(bool on);
bool hpet_can_periodic(u32 n);
void hpet_timer_stop(u32 n);
u32 hpet_num_timers(void);
u32 hpet_route_cap(u32 n);
int hpet_pick_pin(u32 n);

u32 pm_timer_read(void);
u32 pm_timer_delta(u32 a, u32 b);

void pit_periodic(u32 hz);
void pit_stop(void);

int tsc_calibrate(void);

/* ---- smp.c ---- */
struct cpu_state {
	volatile u64 alive;		/* set by the CPU once in ring 3 */
	volatile u64 apic_id;
	volatile u64 progress;		/* counter mode: memory chunks done */
	volatile u64 passes;
	volatile u64 fail_count;	/* memory mismatches seen */
	volatile u64 fail_addr;		/* first mismatch */
	volatile u64 fail_expect;
	volatile u64 fail_got;
	u64 pad[8];
};
extern struct cpu_state cpus[MAX_CPUS];
extern volatile u64 go_mode;	/* APs wait for this before working */
extern volatile u32 lapic_timer_count;
extern u32 ncpus_up;
int smp_start(void);
void ap_main(u32 cpu) __attribute__((noreturn));

/* ---- selftest.c: what groups in other files use ---- */
void group_begin(const char *name);
void group_end(void);
void check_fail(const char *f, ...) __attribute__((format(printf, 1, 2)));
bool wait_irq(u32 cpu, u32 vec, u64 target, u64 timeout_us);

/* ---- ps2.c, fbuf.c: the i8042 and the standard VGA ---- */
void check_atkbdc(void);
void check_fbuf(void);
/* console.c: mode=console and its command-line words */
bool console_cmdline_word(const char *w);
void console_run(void) __attribute__((noreturn));

/* ---- workloads ---- */
void selftest_run(void) __attribute__((noreturn));
void counter_run(void) __attribute__((noreturn));
void counter_ap(u32 cpu) __attribute__((noreturn));
int memregion_setup(void);
void uart_run(void) __attribute__((noreturn));
void echo_run(void) __attribute__((noreturn));
void uart_ap(u32 cpu) __attribute__((noreturn));
void clocks_run(void) __attribute__((noreturn));

#endif
