// SPDX-License-Identifier: BSD-2-Clause
/* The 16550A UART, driven through port I/O as a guest drives it. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "devsnap.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "dev/pc/uart.h"
#include "sstream.h"
#include "vm.h"

#define COM1 0x3f8
#define THR 0
#define IER 1
#define IIR 2
#define FCR 2
#define LCR 3
#define MCR 4
#define LSR 5
#define MSR 6
#define SCR 7

/* Offsets in a version-1 uart state: corrupting them must be caught. */
#define ST_FCR 4
#define ST_RX_HEAD 11
#define ST_RX_COUNT 12
#define ST_MSR 8
#define ST_TIMEOUT 10

struct fixture {
	struct vm vm;
	struct dev *d;
	int irq_level[24];
	unsigned irq_calls;
};

static struct fixture *irq_owner[2];
static unsigned nowners;

static void record_irq(struct vm *vm, unsigned gsi, int level)
{
	for (unsigned i = 0; i < nowners; i++) {
		if (&irq_owner[i]->vm == vm) {
			assert_true(gsi < 24);
			irq_owner[i]->irq_level[gsi] = level;
			irq_owner[i]->irq_calls++;
		}
	}
}

static void fixture_init(struct fixture *f, const char *backend)
{
	char err[256];

	memset(f, 0, sizeof(*f));
	vm_init_bare(&f->vm, true);
	f->vm.set_irq = record_irq;
	irq_owner[nowners++] = f;
	f->d = uart_create(&f->vm, 0, backend, err, sizeof(err));
	if (!f->d)
		fail_msg("uart_create: %s", err);
}

static void fixture_fini(struct fixture *f)
{
	vm_destroy(&f->vm);
	nowners = 0;
}

static int setup(void **state)
{
	struct fixture *f = malloc(sizeof(*f));

	fixture_init(f, "off");
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture_fini(*state);
	free(*state);
	return 0;
}

static uint8_t in8(struct fixture *f, unsigned reg)
{
	uint8_t v = 0;

	assert_true(bus_access(&f->vm.pio, COM1 + reg, &v, 1, false));
	return v;
}

static void out8(struct fixture *f, unsigned reg, uint8_t v)
{
	assert_true(bus_access(&f->vm.pio, COM1 + reg, &v, 1, true));
}

static void inject(struct fixture *f, const char *s)
{
	uart_rx_inject(f->d, (const uint8_t *)s, strlen(s));
}

static void test_scratch(void **state)
{
	struct fixture *f = *state;

	out8(f, SCR, 0x5a);
	assert_int_equal(in8(f, SCR), 0x5a);
	out8(f, SCR, 0xa5);
	assert_int_equal(in8(f, SCR), 0xa5);
}

static void test_divisor_latch(void **state)
{
	struct fixture *f = *state;

	out8(f, IER, 0x05);
	out8(f, LCR, 0x83); /* DLAB, 8N1 */
	out8(f, THR, 0x0c); /* DLL: 9600 baud */
	out8(f, IER, 0x01); /* DLM */
	assert_int_equal(in8(f, THR), 0x0c);
	assert_int_equal(in8(f, IER), 0x01);
	out8(f, LCR, 0x03);
	/* The divisor writes did not touch IER, and DLAB off shows IER again. */
	assert_int_equal(in8(f, IER), 0x05);
	assert_int_equal(in8(f, LCR), 0x03);
	out8(f, LCR, 0x83);
	assert_int_equal(in8(f, THR), 0x0c);
	assert_int_equal(in8(f, IER), 0x01);
}

static void test_lsr_iir(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(in8(f, LSR), 0x60); /* THRE | TEMT */
	assert_int_equal(in8(f, IIR), 0x01); /* nothing pending, no FIFOs */
	out8(f, FCR, 0x07);		     /* enable, reset both FIFOs, trigger 1 */
	assert_int_equal(in8(f, IIR), 0xc1);
	out8(f, IER, 0x01);
	inject(f, "x");
	assert_int_equal(in8(f, LSR), 0x61);
	assert_int_equal(in8(f, IIR), 0xc4);
	assert_int_equal(f->irq_level[4], 1);
	assert_int_equal(in8(f, THR), 'x');
	assert_int_equal(in8(f, LSR), 0x60);
	assert_int_equal(in8(f, IIR), 0xc1);
	assert_int_equal(f->irq_level[4], 0);
	/* FIFOs off again: IIR's top bits follow. */
	out8(f, FCR, 0x00);
	assert_int_equal(in8(f, IIR), 0x01);
}

static void test_loopback(void **state)
{
	struct fixture *f = *state;

	out8(f, FCR, 0x01);
	out8(f, MCR, 0x10);
	out8(f, THR, 'A');
	out8(f, THR, 'B');
	assert_int_equal(in8(f, LSR) & 0x01, 0x01);
	assert_int_equal(in8(f, THR), 'A');
	assert_int_equal(in8(f, THR), 'B');
	assert_int_equal(in8(f, LSR) & 0x01, 0);
	/* Entering loopback dropped DCD, DSR and CTS: deltas flagged once. */
	assert_int_equal(in8(f, MSR), 0x0b);
	assert_int_equal(in8(f, MSR), 0x00);
	/* Linux's probe: MCR loop | OUT2 | RTS must read back as DCD | CTS. */
	out8(f, MCR, 0x1a);
	assert_int_equal(in8(f, MSR) & 0xf0, 0x90);
	out8(f, MCR, 0x14); /* OUT1: RI */
	assert_int_equal(in8(f, MSR) & 0xf0, 0x40);
	out8(f, MCR, 0x10); /* RI falls: trailing edge */
	assert_int_equal(in8(f, MSR) & 0x04, 0x04);
	out8(f, MCR, 0x00);
	assert_int_equal(in8(f, MSR) & 0xf0, 0xb0);
}

static void test_thre_interrupt(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(f->irq_level[4], 0);
	out8(f, IER, 0x02);
	/* Enabling ETBEI with THR empty raises the interrupt at once. */
	assert_int_equal(f->irq_level[4], 1);
	assert_int_equal(in8(f, IIR), 0x02);
	/* Reading IIR while it shows THRE acknowledges it. */
	assert_int_equal(f->irq_level[4], 0);
	assert_int_equal(in8(f, IIR), 0x01);
	/* A write to THR sends the byte at once: THR is empty again, so THRE is back. */
	out8(f, THR, 'z');
	assert_int_equal(f->irq_level[4], 1);
	assert_int_equal(in8(f, IIR), 0x02);
	assert_int_equal(f->irq_level[4], 0);
	/* Toggling ETBEI re-raises it, as Linux's THRE test expects. */
	out8(f, IER, 0x00);
	out8(f, IER, 0x02);
	assert_int_equal(f->irq_level[4], 1);
	out8(f, IER, 0x00);
	assert_int_equal(f->irq_level[4], 0);
	assert_int_equal(in8(f, IIR), 0x01);
}

static void test_rx_trigger_and_timeout(void **state)
{
	struct fixture *f = *state;
	uint64_t t0 = vclock_ns(&f->vm.ev);

	out8(f, FCR, 0x81); /* FIFO on, trigger level 8 */
	out8(f, IER, 0x01);
	inject(f, "1234567");
	assert_int_equal(in8(f, IIR), 0xc1);
	assert_int_equal(f->irq_level[4], 0);
	inject(f, "8");
	assert_int_equal(in8(f, IIR), 0xc4);
	assert_int_equal(f->irq_level[4], 1);
	assert_int_equal(in8(f, THR), '1');
	assert_int_equal(in8(f, THR), '2');
	/* Below the trigger level: no interrupt until four character times pass. */
	assert_int_equal(in8(f, IIR), 0xc1);
	assert_int_equal(f->irq_level[4], 0);
	evloop_advance(&f->vm.ev, t0 + 100000);
	assert_int_equal(f->irq_level[4], 0);
	evloop_advance(&f->vm.ev, t0 + 50000000);
	assert_int_equal(f->irq_level[4], 1);
	assert_int_equal(in8(f, IIR), 0xcc);
	/* A new character does not clear a pending timeout (only a read does). */
	inject(f, "9");
	assert_int_equal(in8(f, IIR), 0xcc);
	assert_int_equal(f->irq_level[4], 1);
	/* A read clears the timeout; the rest is drained in order. */
	assert_int_equal(in8(f, THR), '3');
	assert_int_equal(f->irq_level[4], 0);
	for (char c = '4'; c <= '9'; c++)
		assert_int_equal(in8(f, THR), c);
	assert_int_equal(in8(f, LSR) & 0x01, 0);
	evloop_advance(&f->vm.ev, t0 + 200000000);
	assert_int_equal(in8(f, IIR), 0xc1);
	/* Injecting nothing changes nothing; with no backend there is nothing to flush. */
	assert_int_equal(uart_rx_inject(f->d, (const uint8_t *)"", 0), 0);
	assert_int_equal(in8(f, LSR) & 0x01, 0);
	assert_int_equal(uart_flush(f->d, 10), 0);
	/* FIFO reset empties the receiver. */
	inject(f, "abc");
	out8(f, FCR, 0x83);
	assert_int_equal(in8(f, LSR) & 0x01, 0);
}

/*
 * The character timeout is four character times of the programmed frame: 8N2 at divisor 0
 * (taken as 1, 115200 baud) is 4 x 11 bits = 382 us, 8N1 4 x 10 bits = 347 us.
 */
static void test_timeout_frame_format(void **state)
{
	struct fixture *f = *state;
	uint64_t t0;

	out8(f, LCR, 0x80);
	out8(f, THR, 0x00); /* DLL 0 */
	out8(f, IER, 0x00); /* DLM 0 */
	out8(f, LCR, 0x07); /* 8 bits, 2 stop bits */
	out8(f, FCR, 0x81); /* trigger level 8 */
	out8(f, IER, 0x01);
	t0 = vclock_ns(&f->vm.ev);
	inject(f, "x");
	evloop_advance(&f->vm.ev, t0 + 370000);
	assert_int_equal(f->irq_level[4], 0);
	evloop_advance(&f->vm.ev, t0 + 390000);
	assert_int_equal(f->irq_level[4], 1);
	assert_int_equal(in8(f, IIR), 0xcc);
	assert_int_equal(in8(f, THR), 'x');
	assert_int_equal(f->irq_level[4], 0);
	out8(f, LCR, 0x03); /* 8N1: shorter */
	t0 = vclock_ns(&f->vm.ev);
	inject(f, "y");
	evloop_advance(&f->vm.ev, t0 + 340000);
	assert_int_equal(f->irq_level[4], 0);
	evloop_advance(&f->vm.ev, t0 + 350000);
	assert_int_equal(f->irq_level[4], 1);
	/* Disabling the FIFO drops the byte and the timeout with it. */
	out8(f, FCR, 0x00);
	assert_int_equal(f->irq_level[4], 0);
	assert_int_equal(in8(f, LSR) & 0x01, 0);
	/* Loopback DTR is DSR; RI staying up is no trailing edge. */
	out8(f, MCR, 0x11);
	assert_int_equal(in8(f, MSR) & 0xf0, 0x20);
	out8(f, MCR, 0x14);
	in8(f, MSR);
	out8(f, MCR, 0x14);
	assert_int_equal(in8(f, MSR) & 0x04, 0);
}

static void test_overrun(void **state)
{
	struct fixture *f = *state;
	uint8_t buf[20];

	for (unsigned i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)i;
	out8(f, FCR, 0xc1);
	out8(f, IER, 0x05);
	assert_int_equal(uart_rx_inject(f->d, buf, sizeof(buf)), 16);
	assert_int_equal(in8(f, IIR), 0xc6); /* line status outranks data */
	assert_int_equal(in8(f, LSR), 0x63); /* DR | OE | THRE | TEMT */
	assert_int_equal(in8(f, LSR), 0x61); /* OE clears on read */
	assert_int_equal(in8(f, IIR), 0xc4);
	/* With FIFOs the bytes that found it full are lost, the first 16 kept. */
	for (unsigned i = 0; i < 16; i++)
		assert_int_equal(in8(f, THR), i);
	/* Without FIFOs a new byte overwrites the unread one. */
	out8(f, FCR, 0x00);
	assert_int_equal(uart_rx_inject(f->d, buf + 1, 2), 1);
	assert_int_equal(in8(f, LSR) & 0x03, 0x03);
	assert_int_equal(in8(f, THR), 2);
}

static void test_iir_priority(void **state)
{
	struct fixture *f = *state;
	uint8_t buf[17] = { 0 };

	out8(f, FCR, 0x01);
	out8(f, MCR, 0x10); /* modem status deltas */
	out8(f, IER, 0x0f);
	uart_rx_inject(f->d, buf, sizeof(buf)); /* data and overrun */
	assert_int_equal(in8(f, IIR), 0xc6);
	in8(f, LSR);
	assert_int_equal(in8(f, IIR), 0xc4);
	while (in8(f, LSR) & 0x01)
		in8(f, THR);
	assert_int_equal(in8(f, IIR), 0xc2);
	assert_int_equal(in8(f, IIR), 0xc0); /* THRE acknowledged: modem status */
	assert_int_equal(f->irq_level[4], 1);
	in8(f, MSR);
	assert_int_equal(in8(f, IIR), 0xc1);
	assert_int_equal(f->irq_level[4], 0);
}

/* Put the UART in a state with something in every part of it. */
static void make_busy(struct fixture *f)
{
	out8(f, LCR, 0x83);
	out8(f, THR, 0x01);
	out8(f, LCR, 0x1b);
	out8(f, FCR, 0x41);
	out8(f, SCR, 0x77);
	out8(f, MCR, 0x0b);
	out8(f, IER, 0x01);
	inject(f, "Qrst"); /* trigger level 4 reached */
}

/* LSR and MSR writes (factory test features) change nothing; a wide access is byte by byte. */
static void test_odd_accesses(void **state)
{
	struct fixture *f = *state;
	uint8_t w[2] = { 0x5a, 0xa5 }, r[4] = { 0 };

	out8(f, SCR, 0x11);
	out8(f, LSR, 0x1f);
	assert_int_equal(in8(f, LSR), 0x60);
	out8(f, MSR, 0xff);
	assert_int_equal(in8(f, MSR) & 0xf0, 0xb0);
	/* Two bytes at MSR: MSR ignores its byte, SCR takes the second; none past the port. */
	assert_true(bus_access(&f->vm.pio, COM1 + MSR, w, 2, true));
	assert_int_equal(in8(f, SCR), 0xa5);
	assert_false(bus_access(&f->vm.pio, COM1 + SCR, w, 2, true));
	/* Four bytes from MCR: MCR, LSR, MSR, SCR. */
	out8(f, MCR, 0x03);
	assert_true(bus_access(&f->vm.pio, COM1 + MCR, r, 4, false));
	assert_int_equal(r[0], 0x03);
	assert_int_equal(r[1], 0x60);
	assert_int_equal(r[3], 0xa5);
	/* DLAB: data and IER are the divisor latch, written and read back. */
	out8(f, LCR, 0x80);
	out8(f, THR, 0x0c);
	out8(f, IER, 0x01);
	assert_int_equal(in8(f, THR), 0x0c);
	assert_int_equal(in8(f, IER), 0x01);
	out8(f, LCR, 0x03);
	assert_int_equal(in8(f, IER), 0x00);
}

static void test_snapshot_roundtrip(void **state)
{
	struct fixture *f = *state, g;
	struct sstream a, b;

	make_busy(f);
	devsnap_save(f->d, &a);
	fixture_init(&g, "off");
	assert_int_equal(devsnap_load(g.d, a.buf, a.len, 1), 0);
	assert_int_equal(g.d->ops->resume(g.d), 0);
	devsnap_save(g.d, &b);
	assert_int_equal(a.len, b.len);
	assert_memory_equal(a.buf, b.buf, a.len);
	/* The line was driven from the loaded state: RX data with ERBFI. */
	assert_int_equal(g.irq_level[4], 1);
	assert_int_equal(in8(&g, LCR), 0x1b);
	assert_int_equal(in8(&g, SCR), 0x77);
	assert_int_equal(in8(&g, MCR), 0x0b);
	assert_int_equal(in8(&g, IIR), 0xc4);
	assert_int_equal(in8(&g, THR), 'Q');
	assert_int_equal(in8(&g, THR), 'r');
	assert_int_equal(g.irq_level[4], 0);
	out8(&g, LCR, 0x9b);
	assert_int_equal(in8(&g, THR), 0x01);
	ss_free(&a);
	ss_free(&b);
	vm_destroy(&g.vm);
}

static void test_snapshot_refused(void **state)
{
	struct fixture *f = *state, g;
	struct sstream a;
	uint8_t *bad;

	make_busy(f);
	devsnap_save(f->d, &a);
	bad = malloc(a.len + 1);
	fixture_init(&g, "off");
	out8(&g, SCR, 0x42);

	for (size_t len = 0; len < a.len; len += 7)
		devsnap_expect_refused(g.d, a.buf, len, 1);
	devsnap_expect_refused(g.d, a.buf, a.len - 1, 1);
	memcpy(bad, a.buf, a.len);
	bad[a.len] = 0;
	devsnap_expect_refused(g.d, bad, a.len + 1, 1); /* trailing garbage */
	devsnap_expect_refused(g.d, a.buf, a.len, 2);	/* unknown version */
	bad[ST_RX_COUNT] = 17;
	devsnap_expect_refused(g.d, bad, a.len, 1); /* count beyond the FIFO */
	memcpy(bad, a.buf, a.len);
	bad[ST_RX_HEAD] = 16;
	devsnap_expect_refused(g.d, bad, a.len, 1); /* head outside the FIFO */
	memcpy(bad, a.buf, a.len);
	bad[ST_FCR] = 0; /* 16450 mode with 2 bytes queued */
	devsnap_expect_refused(g.d, bad, a.len, 1);
	memcpy(bad, a.buf, a.len);
	bad[ST_FCR] |= 0x02; /* a self-clearing bit */
	devsnap_expect_refused(g.d, bad, a.len, 1);
	/* A character timeout pending with nothing to time out: accepted with data, not empty. */
	memcpy(bad, a.buf, a.len);
	assert_true(bad[ST_RX_COUNT] > 0);
	bad[ST_TIMEOUT] = 1;
	assert_int_equal(devsnap_load(g.d, bad, a.len, 1), 0);
	bad[ST_RX_COUNT] = 0;
	devsnap_expect_refused(g.d, bad, a.len, 1);
	/* Modem status lines that the loopback wiring of MCR does not give. */
	memcpy(bad, a.buf, a.len);
	bad[ST_MSR] ^= 0x80;
	devsnap_expect_refused(g.d, bad, a.len, 1);
	/* FIFO disabled: one byte at most (RX and TX). */
	memcpy(bad, a.buf, a.len);
	bad[ST_FCR] = 0;
	bad[ST_RX_COUNT] = 1;
	assert_int_equal(devsnap_load(g.d, bad, a.len, 1), 0);
	bad[ST_RX_COUNT] = 2;
	devsnap_expect_refused(g.d, bad, a.len, 1);
	assert_int_equal(devsnap_load(g.d, a.buf, a.len, 1), 0);
	out8(&g, SCR, 0x42);
	assert_int_equal(in8(&g, SCR), 0x42);

	free(bad);
	ss_free(&a);
	vm_destroy(&g.vm);
}

static void test_bad_backend(void **state)
{
	struct fixture *f = *state;
	char err[256];

	assert_null(uart_create(&f->vm, 1, "tcp:1234", err, sizeof(err)));
	assert_non_null(strstr(err, "com2: unknown backend 'tcp:1234'"));
	assert_non_null(strstr(err, "stdio, off, unix:PATH or file:PATH"));
	assert_null(uart_create(&f->vm, 4, "off", err, sizeof(err)));
	assert_non_null(strstr(err, "com5"));
	/* The same grammar checked without opening anything (a command line, before KVM). */
	err[0] = '\0';
	assert_int_equal(uart_check_backend(2, "tcp:1234", err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "com3: unknown backend 'tcp:1234' (use stdio, off, unix:PATH or "
				 "file:PATH)");
	assert_int_equal(uart_check_backend(0, "file:", err, sizeof(err)), -EINVAL);
	err[0] = '\0';
	assert_int_equal(uart_check_backend(0, NULL, err, sizeof(err)), 0);
	assert_int_equal(uart_check_backend(0, "off", err, sizeof(err)), 0);
	assert_int_equal(uart_check_backend(0, "stdio", err, sizeof(err)), 0);
	assert_int_equal(uart_check_backend(0, "unix:/nonexistent-khyve/s", err, sizeof(err)), 0);
	assert_int_equal(uart_check_backend(0, "file:/nonexistent-khyve/x", err, sizeof(err)), 0);
	assert_string_equal(err, "");
	assert_null(uart_create(&f->vm, 1, "file:/nonexistent-khyve/x", err, sizeof(err)));
	assert_string_equal(err, "com2: cannot open log file /nonexistent-khyve/x: "
				 "No such file or directory");
	/* COM1 exists already: its ports are taken. */
	assert_null(uart_create(&f->vm, 0, "off", err, sizeof(err)));
	assert_non_null(strstr(err, "already taken"));
}

static void com3_out8(struct fixture *f, unsigned reg, uint8_t v)
{
	assert_true(bus_access(&f->vm.pio, 0x3e8 + reg, &v, 1, true));
}

static uint8_t com3_in8(struct fixture *f, unsigned reg)
{
	uint8_t v = 0;

	assert_true(bus_access(&f->vm.pio, 0x3e8 + reg, &v, 1, false));
	return v;
}

/* COM1 and COM3 share IRQ 4: the line stays up while either port asks for it. */
static void test_shared_line(void **state)
{
	struct fixture *f = *state;
	struct dev *com3;
	char err[256];

	com3 = uart_create(&f->vm, 2, "off", err, sizeof(err));
	assert_non_null(com3);
	assert_string_equal(com3->id, "uart@com3");
	out8(f, IER, 0x02);
	assert_int_equal(f->irq_level[4], 1);
	com3_out8(f, IER, 0x02);
	assert_int_equal(f->irq_level[4], 1);
	in8(f, IIR); /* COM1 acknowledged, COM3 still pending */
	assert_int_equal(f->irq_level[4], 1);
	/* A forced re-drive (resume) of the quiet port must not lower the line either. */
	assert_int_equal(f->d->ops->resume(f->d), 0);
	assert_int_equal(f->irq_level[4], 1);
	assert_int_equal(com3_in8(f, IIR), 0x02);
	assert_int_equal(f->irq_level[4], 0);
}

static void test_file_backend(void **state)
{
	struct fixture f;
	char path[] = "/tmp/khyve-uart-XXXXXX", backend[64], buf[64] = "";
	const char *msg = "hello, log\r\n";
	FILE *fp;
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	close(fd);
	snprintf(backend, sizeof(backend), "file:%s", path);
	fixture_init(&f, backend);
	for (const char *p = msg; *p; p++)
		out8(&f, THR, (uint8_t)*p);
	/* Loopback output stays inside the UART. */
	out8(&f, MCR, 0x10);
	out8(&f, THR, '!');
	assert_int_equal(f.d->ops->pause(f.d), 0);
	fp = fopen(path, "r");
	assert_non_null(fp);
	assert_non_null(fgets(buf, sizeof(buf), fp));
	fclose(fp);
	assert_string_equal(buf, msg);
	fixture_fini(&f);
	unlink(path);
}

/* A log path that is a symlink is refused and the file it points to never created. */
static void test_file_backend_no_symlink(void **state)
{
	struct fixture *f = *state;
	char dir[] = "/tmp/khyve-uart-XXXXXX", link[96], target[96], fifo[96], backend[128];
	char err[256];
	struct stat st;

	assert_non_null(mkdtemp(dir));
	snprintf(link, sizeof(link), "%s/log", dir);
	snprintf(target, sizeof(target), "%s/victim", dir);
	snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
	assert_int_equal(symlink(target, link), 0);
	snprintf(backend, sizeof(backend), "file:%s", link);
	assert_null(uart_create(&f->vm, 1, backend, err, sizeof(err)));
	assert_non_null(strstr(err, "symbolic link"));
	assert_int_equal(lstat(target, &st), -1);
	/* A FIFO would block khyve in open(): refused without waiting for a reader. */
	assert_int_equal(mkfifo(fifo, 0600), 0);
	snprintf(backend, sizeof(backend), "file:%s", fifo);
	assert_null(uart_create(&f->vm, 1, backend, err, sizeof(err)));
	assert_non_null(strstr(err, "not a regular file"));
	/* With a reader the open succeeds, and the FIFO is still refused. */
	{
		int r = open(fifo, O_RDONLY | O_NONBLOCK | O_CLOEXEC);

		assert_true(r >= 0);
		err[0] = '\0';
		assert_null(uart_create(&f->vm, 1, backend, err, sizeof(err)));
		assert_non_null(strstr(err, "is not a regular file or a device"));
		close(r);
	}
	/* New logs are private. */
	snprintf(backend, sizeof(backend), "file:%s", target);
	assert_non_null(uart_create(&f->vm, 1, backend, err, sizeof(err)));
	assert_int_equal(stat(target, &st), 0);
	assert_int_equal(st.st_mode & 077, 0);
	unlink(link);
	unlink(fifo);
	unlink(target);
	rmdir(dir);
}

/* ---- the unix socket backend, with the event loop running ---- */

static int unix_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Read @n bytes from @fd (a bound of 10 s against a hang, not a timing check). */
static void read_n(int fd, uint8_t *buf, size_t n)
{
	uint64_t end = now_ms() + 10000;
	size_t got = 0;

	while (got < n) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t r;

		assert_true(now_ms() < end);
		if (poll(&p, 1, 100) <= 0)
			continue;
		r = read(fd, buf + got, n - got);
		assert_true(r > 0);
		got += (size_t)r;
	}
}

/* The guest reads @n bytes from RBR as they come (bounded by 10 s likewise). */
static void guest_read_n(struct fixture *f, uint8_t *buf, size_t n)
{
	uint64_t end = now_ms() + 10000;

	for (size_t got = 0; got < n;) {
		assert_true(now_ms() < end);
		if (in8(f, LSR) & 0x01)
			buf[got++] = in8(f, THR);
		else
			usleep(1000);
	}
}

/* The guest's output reaches the client; the client's input reaches the guest, none lost. */
static void test_unix_backend(void **state)
{
	char dir[] = "/tmp/khyve-uartu-XXXXXX", path[128], backend[160], err[256];
	uint8_t in[100], got[100], out[64];
	struct fixture f;
	int c;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/com1", dir);
	snprintf(backend, sizeof(backend), "unix:%s", path);
	memset(&f, 0, sizeof(f));
	vm_init_bare(&f.vm, false);
	f.vm.set_irq = record_irq;
	irq_owner[nowners++] = &f;
	assert_int_equal(evloop_start(&f.vm.ev), 0);
	f.d = uart_create(&f.vm, 0, backend, err, sizeof(err));
	if (!f.d)
		fail_msg("uart_create: %s", err);
	out8(&f, FCR, 0x01); /* FIFOs on: 16 bytes of room for input */
	c = unix_connect(path);
	/* Input larger than the FIFO: the UART stops reading while it is full, loses nothing. */
	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (uint8_t)(i * 7 + 1);
	assert_int_equal(write(c, in, sizeof(in)), sizeof(in));
	guest_read_n(&f, got, sizeof(got));
	assert_memory_equal(in, got, sizeof(in));
	assert_int_equal(in8(&f, LSR) & 0x02, 0); /* no overrun */
	/* Output: what the guest sends, in order (the client is connected: nothing dropped). */
	for (size_t i = 0; i < sizeof(out); i++)
		out8(&f, THR, (uint8_t)('A' + i % 26));
	read_n(c, got, sizeof(out));
	for (size_t i = 0; i < sizeof(out); i++)
		assert_int_equal(got[i], 'A' + i % 26);
	/* The client leaves; the next one gets what is sent after it came, from its first byte. */
	close(c);
	{
		uint64_t end = now_ms() + 10000;

		/* Until the UART has seen the hang-up, a new client waits in the backlog. */
		c = unix_connect(path);
		for (;;) {
			uint8_t b;
			struct pollfd p = { .fd = c, .events = POLLIN };

			assert_true(now_ms() < end);
			out8(&f, THR, 'z');
			if (poll(&p, 1, 20) > 0 && read(c, &b, 1) == 1) {
				assert_int_equal(b, 'z');
				break;
			}
		}
	}
	/* The second client's input reaches the guest too. */
	while (in8(&f, LSR) & 0x01)
		(void)in8(&f, THR);
	assert_int_equal(write(c, "ok", 2), 2);
	guest_read_n(&f, got, 2);
	assert_memory_equal(got, "ok", 2);
	/* Loopback: input waits in the socket, not in the FIFO, until loopback ends. */
	out8(&f, MCR, 0x10);
	assert_int_equal(write(c, "L", 1), 1);
	usleep(50000);
	assert_int_equal(in8(&f, LSR) & 0x01, 0);
	out8(&f, MCR, 0x00);
	guest_read_n(&f, got, 1);
	assert_int_equal(got[0], 'L');
	close(c);
	evloop_stop(&f.vm.ev);
	fixture_fini(&f);
	/* The socket file goes with the device. */
	assert_int_equal(access(path, F_OK), -1);
	rmdir(dir);
}

/*
 * A client that stops reading: the socket and the 64 KiB buffer fill, later output is
 * dropped, the guest never blocks; what arrives is the first bytes, in order.
 */
static void test_unix_backend_full(void **state)
{
	char dir[] = "/tmp/khyve-uartu-XXXXXX", path[128], backend[160], err[256];
	const size_t total = 4 << 20;
	struct fixture f;
	uint8_t *buf = malloc(total);
	size_t got = 0;
	int c;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/com1", dir);
	snprintf(backend, sizeof(backend), "unix:%s", path);
	memset(&f, 0, sizeof(f));
	vm_init_bare(&f.vm, false);
	f.vm.set_irq = record_irq;
	irq_owner[nowners++] = &f;
	assert_int_equal(evloop_start(&f.vm.ev), 0);
	f.d = uart_create(&f.vm, 0, backend, err, sizeof(err));
	assert_non_null(f.d);
	c = unix_connect(path);
	/* The first byte waits for the accept: it is sent once the client is known. */
	{
		uint64_t end = now_ms() + 10000;
		uint8_t b;

		for (;;) {
			struct pollfd p = { .fd = c, .events = POLLIN };

			assert_true(now_ms() < end);
			out8(&f, THR, 0);
			if (poll(&p, 1, 20) > 0) {
				while (read(c, &b, 1) == 1 && poll(&p, 1, 50) > 0)
					;
				break;
			}
		}
	}
	for (size_t i = 0; i < total; i++)
		out8(&f, THR, (uint8_t)(i % 251));
	/* The guest went on: the THR is empty again at once. */
	assert_true(in8(&f, LSR) & 0x20);
	/* Nobody reads: what is buffered cannot be flushed. */
	assert_int_equal(uart_flush(f.d, 50), -EAGAIN);
	for (;;) {
		struct pollfd p = { .fd = c, .events = POLLIN };
		ssize_t r;

		if (poll(&p, 1, 500) <= 0)
			break;
		r = read(c, buf + got, total - got);
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	/* More than the buffer alone, less than everything; a prefix, byte for byte. */
	assert_true(got > 65536);
	assert_true(got < total);
	assert_int_equal(uart_flush(f.d, 50), 0);
	for (size_t i = 0; i < got; i++)
		if (buf[i] != (uint8_t)(i % 251))
			fail_msg("byte %zu is %u, want %zu", i, buf[i], i % 251);
	close(c);
	evloop_stop(&f.vm.ev);
	fixture_fini(&f);
	free(buf);
	rmdir(dir);
}

/* Socket paths: a stale socket is replaced, a live one, a non-socket or a long path refused. */
static void test_unix_backend_paths(void **state)
{
	struct fixture *f = *state;
	char dir[] = "/tmp/khyve-uartu-XXXXXX", path[128], backend[300], err[512];
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int s;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/sock", dir);
	memcpy(sa.sun_path, path, strlen(path) + 1);
	/* Live: someone listens there. */
	s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(s, 1), 0);
	snprintf(backend, sizeof(backend), "unix:%s", path);
	assert_null(uart_create(&f->vm, 1, backend, err, sizeof(err)));
	assert_non_null(strstr(err, "in use by a running program"));
	/* Stale: the listener died and left the file. */
	close(s);
	assert_non_null(uart_create(&f->vm, 1, backend, err, sizeof(err)));
	unlink(path);
	/* A regular file is not removed: binding fails and says so. */
	close(open(path, O_CREAT | O_WRONLY, 0600));
	assert_null(uart_create(&f->vm, 2, backend, err, sizeof(err)));
	assert_non_null(strstr(err, "com3: cannot listen on"));
	assert_int_equal(access(path, F_OK), 0);
	unlink(path);
	/* Empty, and longer than sun_path holds. */
	assert_null(uart_create(&f->vm, 2, "unix:", err, sizeof(err)));
	if (!strstr(err, "is empty or longer than"))
		fail_msg("unix: refused with '%s'", err);
	memset(backend, 'a', sizeof(backend) - 1);
	backend[sizeof(backend) - 1] = '\0';
	memcpy(backend, "unix:/", 6);
	assert_null(uart_create(&f->vm, 2, backend, err, sizeof(err)));
	if (!strstr(err, "is empty or longer than"))
		fail_msg("long path refused with %s", err);
	rmdir(dir);
}

/* The test's own stdin, stdout and stderr, saved while a stdio port uses other descriptors. */
struct stdio_swap {
	int saved[3];
	unsigned n;
};

/* Descriptors 0 to @n - 1 become @fds[0 .. n - 1], the test's own saved. */
static void stdio_swap_in(struct stdio_swap *s, const int *fds, unsigned n)
{
	s->n = n;
	for (unsigned i = 0; i < n; i++) {
		s->saved[i] = dup((int)i);
		assert_true(s->saved[i] >= 0);
	}
	for (unsigned i = 0; i < n; i++)
		assert_int_equal(dup2(fds[i], (int)i), (int)i);
}

/* The test's own descriptors back (the port keeps its duplicates). */
static void stdio_swap_back(struct stdio_swap *s)
{
	for (unsigned i = 0; i < s->n; i++) {
		assert_int_equal(dup2(s->saved[i], (int)i), (int)i);
		close(s->saved[i]);
	}
	s->n = 0;
}

/* A bare VM for a stdio COM1 (with @cfg, if any), its interrupts recorded. */
static void stdio_fixture(struct fixture *f, struct config *cfg)
{
	memset(f, 0, sizeof(*f));
	vm_init_bare(&f->vm, false);
	f->vm.set_irq = record_irq;
	irq_owner[nowners++] = f;
	f->vm.cfg = cfg;
}

/*
 * COM1 made on stdio with the event loop running; the test's descriptors come back at once
 * when @swap_back (or when the port cannot be made, before the test fails).
 */
static void stdio_port(struct fixture *f, struct stdio_swap *s, bool swap_back)
{
	char err[256] = "";

	assert_int_equal(evloop_start(&f->vm.ev), 0);
	f->d = uart_create(&f->vm, 0, "stdio", err, sizeof(err));
	if (!f->d || swap_back)
		stdio_swap_back(s);
	if (!f->d)
		fail_msg("uart_create: %s", err);
}

/*
 * stdio on a terminal (a pty standing in for the user's): the terminal is put in raw input
 * mode with output processing kept, a second stdio port is refused, the guest's output
 * reaches the terminal, the user's keys reach the guest, and the terminal's settings come
 * back when the port goes.
 */
static void test_stdio_pty(void **state)
{
	struct termios before, during, after;
	struct stdio_swap sw;
	struct fixture f;
	char err[256] = "";
	uint8_t got[3];
	int master, slave;

	assert_int_equal(openpty(&master, &slave, NULL, NULL, NULL), 0);
	assert_int_equal(tcgetattr(slave, &before), 0);
	assert_true(before.c_lflag & ICANON);
	stdio_swap_in(&sw, (const int[]){ slave, slave }, 2);
	stdio_fixture(&f, NULL);
	stdio_port(&f, &sw, false);
	assert_null(uart_create(&f.vm, 1, "stdio", err, sizeof(err)));
	assert_non_null(strstr(err, "com2: stdio is already used by another serial port"));
	assert_int_equal(tcgetattr(slave, &during), 0);
	assert_false(during.c_lflag & (ICANON | ECHO));
	assert_true(during.c_oflag & OPOST);

	for (const char *p = "OK!"; *p; p++)
		out8(&f, THR, (uint8_t)*p);
	read_n(master, got, 3);
	assert_memory_equal(got, "OK!", 3);
	assert_int_equal(write(master, "xyz", 3), 3);
	guest_read_n(&f, got, 3);
	assert_memory_equal(got, "xyz", 3);

	fixture_fini(&f);
	assert_int_equal(tcgetattr(slave, &after), 0);
	assert_true(after.c_lflag & ICANON);
	stdio_swap_back(&sw);
	close(slave);
	close(master);
}

/* Read from @fd until what was read holds @needle (bounded by 10 s against a hang). */
static void read_until(int fd, const char *needle)
{
	uint64_t end = now_ms() + 10000;
	char buf[2048];
	size_t got = 0;

	while (got < sizeof(buf) - 1) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t r;

		assert_true(now_ms() < end);
		if (poll(&p, 1, 100) <= 0)
			continue;
		r = read(fd, buf + got, sizeof(buf) - 1 - got);
		assert_true(r > 0);
		got += (size_t)r;
		buf[got] = '\0';
		if (strstr(buf, needle))
			return;
	}
	fail_msg("'%s' never came; got '%s'", needle, buf);
}

/*
 * The console escape on a terminal: ~? at the start prints the help on the terminal (stderr)
 * and sends the guest nothing; ~~ after a newline sends one ~; ~. stops the VM with exit
 * status 4 and says so on the terminal.
 */
static void test_stdio_escape(void **state)
{
	struct stdio_swap sw;
	struct fixture f;
	int master, slave;
	uint8_t got[4];
	uint64_t end;

	assert_int_equal(openpty(&master, &slave, NULL, NULL, NULL), 0);
	stdio_swap_in(&sw, (const int[]){ slave, slave, slave }, 3);
	stdio_fixture(&f, NULL);
	stdio_port(&f, &sw, false);
	out8(&f, FCR, 0x01);
	assert_int_equal(write(master, "~?", 2), 2);
	read_until(master, "~.");
	assert_int_equal(write(master, "x\r~~", 4), 4);
	guest_read_n(&f, got, 3);
	assert_memory_equal(got, "x\r~", 3);
	assert_int_equal(in8(&f, LSR) & 0x01, 0);
	assert_int_equal(atomic_load(&f.vm.exit_status), -1);
	assert_int_equal(write(master, "\r~.", 3), 3);
	read_until(master, "stopping the VM (exit status 4)");
	for (end = now_ms() + 10000; atomic_load(&f.vm.exit_status) == -1;) {
		assert_true(now_ms() < end);
		usleep(1000);
	}
	assert_int_equal(atomic_load(&f.vm.exit_status), VM_EXIT_ERROR);
	guest_read_n(&f, got, 1);
	assert_int_equal(got[0], '\r');
	fixture_fini(&f);
	stdio_swap_back(&sw);
	close(slave);
	close(master);
}

/*
 * stdio on sockets (a service manager's): /proc cannot reopen them, so duplicates are used,
 * output is sent without blocking and input comes through; no escape off a terminal.  An
 * invalid console.escape is refused.
 */
static void test_stdio_sockets(void **state)
{
	int in[2], out[2];
	struct stdio_swap sw;
	struct config cfg;
	char err[256] = "";
	struct fixture f;
	uint8_t got[4];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, in), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, out), 0);
	stdio_swap_in(&sw, (const int[]){ in[0], out[0] }, 2);
	config_init(&cfg);
	stdio_fixture(&f, &cfg);
	assert_int_equal(config_set(&cfg, "console.escape", "ab"), 0);
	assert_null(uart_create(&f.vm, 0, "stdio", err, sizeof(err)));
	assert_string_not_equal(err, "");
	assert_int_equal(config_set(&cfg, "console.escape", "~"), 0);
	stdio_port(&f, &sw, true);
	for (const char *p = "OK!"; *p; p++)
		out8(&f, THR, (uint8_t)*p);
	read_n(out[1], got, 3);
	assert_memory_equal(got, "OK!", 3);
	/* Not a terminal: ~. is two bytes for the guest. */
	assert_int_equal(write(in[1], "~.z", 3), 3);
	guest_read_n(&f, got, 3);
	assert_memory_equal(got, "~.z", 3);
	assert_int_equal(atomic_load(&f.vm.exit_status), -1);
	fixture_fini(&f);
	config_free(&cfg);
	for (int i = 0; i < 2; i++) {
		close(in[i]);
		close(out[i]);
	}
}

/*
 * stdio on regular files (khyve <in >log): output is appended to the file; a regular file
 * on stdin, which epoll cannot watch, is no input at all (the guest sees no data, and the
 * port still works).
 */
static void test_stdio_files(void **state)
{
	char in_path[] = "/tmp/khyve-uart-in-XXXXXX", out_path[] = "/tmp/khyve-uart-out-XXXXXX";
	char buf[16] = "";
	int in = mkstemp(in_path), out = mkstemp(out_path);
	struct stdio_swap sw;
	struct fixture f;

	assert_true(in >= 0 && out >= 0);
	assert_int_equal(write(in, "never", 5), 5);
	assert_int_equal(lseek(in, 0, SEEK_SET), 0);
	stdio_swap_in(&sw, (const int[]){ in, out }, 2);
	stdio_fixture(&f, NULL);
	stdio_port(&f, &sw, true);
	for (const char *p = "log\n"; *p; p++)
		out8(&f, THR, (uint8_t)*p);
	assert_int_equal(f.d->ops->pause(f.d), 0);
	assert_int_equal(in8(&f, LSR) & 0x01, 0); /* no data from the file */
	assert_int_equal(pread(out, buf, sizeof(buf) - 1, 0), 4);
	assert_string_equal(buf, "log\n");
	fixture_fini(&f);
	close(in);
	close(out);
	unlink(in_path);
	unlink(out_path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_scratch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_divisor_latch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lsr_iir, setup, teardown),
		cmocka_unit_test_setup_teardown(test_loopback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_thre_interrupt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rx_trigger_and_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timeout_frame_format, setup, teardown),
		cmocka_unit_test_setup_teardown(test_overrun, setup, teardown),
		cmocka_unit_test_setup_teardown(test_iir_priority, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_roundtrip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_backend, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shared_line, setup, teardown),
		cmocka_unit_test_setup_teardown(test_odd_accesses, setup, teardown),
		cmocka_unit_test(test_file_backend),
		cmocka_unit_test(test_unix_backend),
		cmocka_unit_test(test_unix_backend_full),
		cmocka_unit_test_setup_teardown(test_unix_backend_paths, setup, teardown),
		cmocka_unit_test_setup_teardown(test_file_backend_no_symlink, setup, teardown),
		cmocka_unit_test(test_stdio_pty),
		cmocka_unit_test(test_stdio_escape),
		cmocka_unit_test(test_stdio_sockets),
		cmocka_unit_test(test_stdio_files),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
