// SPDX-License-Identifier: MIT
/*
 * khyve test guest, mode=uart: bytes streamed through UARTs in loopback,
 * each one counted, so that a snapshot taken in the middle of an I/O exit
 * shows up.
 *
 * CPU n (n < 3) drives COM2, COM3 or COM4 (whichever exist; khyve:
 * -l com2,off) with MCR.LOOP set and the FIFOs on: it writes 16 bytes to
 * THR with one rep outsb and reads them back from RBR with 16 insb or
 * (every other exchange) one rep insb (sys_uart_xchg), then checks that the 16 bytes are the next 16 of its
 * stream and that LSR shows no overrun and nothing left over. A read of
 * RBR pops a byte, and KVM puts it in the guest's register only when the
 * vCPU enters KVM_RUN again, so a vCPU saved before that replays the read
 * on restore: a byte (or 16 with rep insb) lost, a mismatch. A write
 * replayed would push a byte twice (an overrun).
 *
 * The BSP prints "seq N" at `rate` per second, "uart: N bytes" every 2 s
 * and, for each mismatch (at most 20 per CPU),
 *   TESTGUEST FAIL: uart com<k>: byte <i>: want 0x.. got 0x.. (lsr 0x..)
 * after which that stream resynchronises (FIFOs reset) and goes on.
 */
#include "user.h"

#define XCHG_LEN	16
#define LSR_DR		0x01
#define LSR_ERRORS	0x1e	/* OE, PE, FE, BI */
#define MAX_REPORTS	20

static const u16 uart_base[] = { 0x2f8, 0x3e8, 0x2e8 };

struct stream {
	u16 base;
	u8 com;			/* 2..4 */
	volatile u64 bytes;	/* checked and right */
	volatile u64 fails;
	/* the first unreported failure, for the BSP to print */
	volatile u64 rep_pending, rep_byte;
	volatile u8 rep_want, rep_got, rep_lsr;
};

static struct stream streams[3];
static u32 nstreams;
static u64 seq;

static u8 stream_byte(u64 i)
{
	return (u8)((i * 0x9e3779b97f4a7c15ull) >> 56);
}

static bool uart_present(u16 base)
{
	outb(base + 7, 0x5a);
	if (inb(base + 7) != 0x5a)
		return false;
	outb(base + 7, 0xa5);
	return inb(base + 7) == 0xa5;
}

/* 115200 8N1, FIFOs on and cleared, loopback, no interrupts. */
static void uart_loop_init(u16 base)
{
	outb(base + 1, 0);
	outb(base + 3, 0x80);
	outb(base + 0, 1);
	outb(base + 1, 0);
	outb(base + 3, 0x03);
	outb(base + 2, 0x07);
	outb(base + 4, 0x10);
	(void)inb(base + 5);
}

static void stream_fail(struct stream *st, u64 at, u8 want, u8 got, u8 lsr)
{
	st->fails++;
	if (st->fails > MAX_REPORTS || READ_ONCE(st->rep_pending))
		return;
	st->rep_byte = at;
	st->rep_want = want;
	st->rep_got = got;
	st->rep_lsr = lsr;
	WRITE_ONCE(st->rep_pending, 1);
}

/* One exchange: 16 bytes out, 16 back, all checked. */
static void stream_step(struct stream *st)
{
	u8 buf[2 * XCHG_LEN];
	u64 at = st->bytes;
	u8 lsr;
	u32 i;

	for (i = 0; i < XCHG_LEN; i++) {
		buf[i] = stream_byte(at + i);
		buf[XCHG_LEN + i] = ~buf[i];
	}
	lsr = syscall3(SYS_UART_XCHG, st->base, (u64)buf, at / XCHG_LEN % 2);
	for (i = 0; i < XCHG_LEN; i++) {
		if (buf[XCHG_LEN + i] != buf[i]) {
			stream_fail(st, at + i, buf[i], buf[XCHG_LEN + i], lsr);
			uart_loop_init(st->base);
			return;
		}
	}
	if (lsr & (LSR_ERRORS | LSR_DR)) {
		/* Right bytes, but some were doubled (overrun) or are left over. */
		stream_fail(st, at + XCHG_LEN, 0, 0, lsr);
		uart_loop_init(st->base);
	}
	st->bytes = at + XCHG_LEN;
}

static void reports_print(void)
{
	u32 i;

	for (i = 0; i < nstreams; i++) {
		struct stream *st = &streams[i];

		if (!READ_ONCE(st->rep_pending))
			continue;
		pr("TESTGUEST FAIL: uart com%u: byte %lu: want 0x%x got 0x%x (lsr 0x%x)\n",
		   st->com, st->rep_byte, st->rep_want, st->rep_got, st->rep_lsr);
		WRITE_ONCE(st->rep_pending, 0);
	}
}

void uart_ap(u32 cpu)
{
	if (cpu < nstreams)
		for (;;)
			stream_step(&streams[cpu]);
	for (;;)
		sys_hlt(NULL, 0);
}

void uart_run(void)
{
	u64 period = tsc_hz / opt.rate, next, report, t, total;
	u32 i;

	for (i = 0; i < 3 && nstreams < ncpus_up; i++) {
		if (!uart_present(uart_base[i]))
			continue;
		streams[nstreams].base = uart_base[i];
		streams[nstreams].com = i + 2;
		uart_loop_init(uart_base[i]);
		nstreams++;
	}
	if (!nstreams)
		fail_final("uart: no COM2, COM3 or COM4 to loop back (khyve: -l com2,off)");
	pr("uart: %u streams of %u-byte exchanges on %u cpus\n", nstreams, XCHG_LEN, ncpus_up);
	WRITE_ONCE(go_mode, MODE_UART + 1);
	next = rdtsc() + period;
	report = rdtsc() + 2 * tsc_hz;
	for (;;) {
		stream_step(&streams[0]);
		power_button_poll();
		t = rdtsc();
		reports_print();
		if ((s64)(t - next) >= 0) {
			pr("seq %lu\n", ++seq);
			next = t + period;
		}
		if ((s64)(t - report) >= 0) {
			for (i = 0, total = 0; i < nstreams; i++)
				total += streams[i].bytes;
			pr("uart: %lu bytes\n", total);
			report = t + 2 * tsc_hz;
		}
	}
}
