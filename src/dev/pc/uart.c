// SPDX-License-Identifier: BSD-2-Clause
/*
 * The 16550A UART: see uart.h.
 *
 * Locking: the register file, the FIFOs and the backend fds are guarded by u->lock.  Port I/O
 * runs on vCPU threads; fd events, the RX timeout timer and pause/resume/save/load run on the
 * event-loop thread.  The event loop calls us without its own lock held, so calling evloop
 * functions with u->lock held cannot deadlock.  evloop_del_fd is only legal on the loop
 * thread, so vCPU-side code only ever changes an fd's event mask (see uart_watch_sync).
 */
#include "dev/pc/uart.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include "backend/escape.h"
#include "config.h"
#include "sstream.h"
#include "vm.h"

#define UART_STATE_VERSION 1
#define UART_FIFO_SIZE 16
#define UART_OUTBUF_SIZE 65536
/* The divisor latch divides the 1.8432 MHz crystal by 16: divisor 1 is 115200 baud. */
#define UART_BAUD_BASE 115200
/* A slow divisor would make the character timeout long enough to feel like a hang. */
#define UART_TIMEOUT_MAX_NS 20000000ULL

/* Register offsets; DLAB in LCR turns 0 and 1 into the divisor latch. */
#define REG_DATA 0 /* RBR (read), THR (write), DLL */
#define REG_IER 1  /* DLM when DLAB */
#define REG_IIR 2  /* IIR (read), FCR (write) */
#define REG_LCR 3
#define REG_MCR 4
#define REG_LSR 5
#define REG_MSR 6
#define REG_SCR 7

#define IER_ERBFI 0x01 /* RX data available (and character timeout) */
#define IER_ETBEI 0x02 /* THR empty */
#define IER_ELSI 0x04  /* line status */
#define IER_EDSSI 0x08 /* modem status */
#define IER_MASK 0x0f

#define IIR_NONE 0x01
#define IIR_MSR 0x00
#define IIR_THRE 0x02
#define IIR_RDA 0x04
#define IIR_RLS 0x06
#define IIR_TIMEOUT 0x0c
#define IIR_FIFO_ON 0xc0

#define FCR_ENABLE 0x01
#define FCR_RX_RESET 0x02
#define FCR_TX_RESET 0x04
#define FCR_DMA 0x08
#define FCR_TRIGGER 0xc0
#define FCR_KEPT (FCR_ENABLE | FCR_DMA | FCR_TRIGGER)

#define LCR_DLAB 0x80

#define MCR_DTR 0x01
#define MCR_RTS 0x02
#define MCR_OUT1 0x04
#define MCR_OUT2 0x08
#define MCR_LOOP 0x10
#define MCR_MASK 0x1f

#define LSR_DR 0x01
#define LSR_OE 0x02
#define LSR_PE 0x04
#define LSR_FE 0x08
#define LSR_BI 0x10
#define LSR_THRE 0x20
#define LSR_TEMT 0x40
#define LSR_ERRORS (LSR_OE | LSR_PE | LSR_FE | LSR_BI)

#define MSR_DCTS 0x01
#define MSR_DDSR 0x02
#define MSR_TERI 0x04
#define MSR_DDCD 0x08
#define MSR_DELTAS 0x0f
#define MSR_CTS 0x10
#define MSR_DSR 0x20
#define MSR_RI 0x40
#define MSR_DCD 0x80

static const uint16_t uart_ports[UART_NPORTS] = { 0x3f8, 0x2f8, 0x3e8, 0x2e8 };
static const uint8_t uart_irqs[UART_NPORTS] = { IRQ_COM1_3, IRQ_COM2_4, IRQ_COM1_3, IRQ_COM2_4 };

struct uart_fifo {
	uint8_t buf[UART_FIFO_SIZE];
	uint8_t head, count;
};

/* Everything the guest can observe, and so exactly what a snapshot holds. */
struct uart_regs {
	uint8_t ier, lcr, mcr, scr, fcr, dll, dlm;
	uint8_t lsr_err;      /* OE/PE/FE/BI; DR, THRE and TEMT follow the FIFOs */
	uint8_t msr;	      /* line states and delta bits */
	bool thre_pending;    /* THR went empty and IIR has not reported it yet */
	bool timeout_pending; /* character timeout, cleared by reading RBR */
	struct uart_fifo rx, tx;
};

enum uart_kind { UART_OFF, UART_STDIO, UART_UNIX, UART_FILE };

struct uart;

/* One fd registered with the event loop; events is the mask it is registered with. */
struct uart_watch {
	struct uart *u;
	int fd;
	uint32_t events;
	bool registered;
};

struct uart {
	struct dev dev;
	struct vm *vm;
	pthread_mutex_t lock;
	unsigned index, irq;
	uint16_t base;
	struct uart_regs r;
	int irq_level;	      /* this port's request; under uart_line_lock */
	struct uart *sibling; /* the port sharing our ISA line; under uart_line_lock */
	struct vtimer rx_timer;
	uint64_t rx_deadline; /* 0 when the timeout timer is not armed */
	bool paused;	      /* by pause, or loaded and not yet resumed */

	enum uart_kind kind;
	char *sock_path; /* unix: the socket file we created */
	int in_fd, out_fd, listen_fd;
	bool out_is_sock, out_broken;
	struct uart_watch w_in, w_out, w_listen;
	struct escape esc; /* stdio on a terminal: ~. and friends (escape.h) */
	int in_carry;	   /* a byte the escape let through that found the FIFO full, or -1 */
	uint8_t *obuf;	   /* output the backend could not take yet (ring) */
	size_t ohead, olen;
	uint64_t dropped;
};

/* The terminal belongs to the process, so its saved mode does too. */
static struct termios uart_tty_saved;
static bool uart_tty_raw, uart_tty_atexit, uart_stdio_used;

static const struct dev_ops uart_ops;

/* FIFOs ------------------------------------------------------------------------------------ */

static unsigned uart_fifo_cap(const struct uart *u)
{
	return (u->r.fcr & FCR_ENABLE) ? UART_FIFO_SIZE : 1;
}

static void fifo_push(struct uart_fifo *f, uint8_t b)
{
	f->buf[(f->head + f->count) % UART_FIFO_SIZE] = b;
	f->count++;
}

static uint8_t fifo_pop(struct uart_fifo *f)
{
	uint8_t b = f->buf[f->head];

	f->head = (f->head + 1) % UART_FIFO_SIZE;
	f->count--;
	return b;
}

static void fifo_reset(struct uart_fifo *f)
{
	f->head = 0;
	f->count = 0;
}

static unsigned uart_rx_trigger(const struct uart *u)
{
	static const unsigned levels[4] = { 1, 4, 8, 14 };

	if (!(u->r.fcr & FCR_ENABLE))
		return 1;
	return levels[u->r.fcr >> 6];
}

/* Interrupts ------------------------------------------------------------------------------- */

/* The highest-priority pending, enabled source, as IIR bits 3:0. */
static uint8_t uart_intr_source(const struct uart *u)
{
	const struct uart_regs *r = &u->r;

	if ((r->ier & IER_ELSI) && (r->lsr_err & LSR_ERRORS))
		return IIR_RLS;
	if ((r->ier & IER_ERBFI) && r->rx.count >= uart_rx_trigger(u))
		return IIR_RDA;
	if ((r->ier & IER_ERBFI) && r->timeout_pending)
		return IIR_TIMEOUT;
	if ((r->ier & IER_ETBEI) && r->thre_pending)
		return IIR_THRE;
	if ((r->ier & IER_EDSSI) && (r->msr & MSR_DELTAS))
		return IIR_MSR;
	return IIR_NONE;
}

/*
 * COM1/COM3 and COM2/COM4 share an ISA line, and KVM keeps one level per line for all of
 * userspace: the line is driven with the OR of both ports' requests, under one lock so two
 * ports changing at once cannot leave it low while one of them still asks.
 */
static pthread_mutex_t uart_line_lock = PTHREAD_MUTEX_INITIALIZER;

/* Level triggered: the line follows "some enabled condition is pending". */
static void uart_update_irq(struct uart *u, bool force)
{
	int level = uart_intr_source(u) != IIR_NONE;

	pthread_mutex_lock(&uart_line_lock);
	if (force || level != u->irq_level) {
		u->irq_level = level;
		vm_set_irq(u->vm, u->irq, level || (u->sibling && u->sibling->irq_level));
	}
	pthread_mutex_unlock(&uart_line_lock);
}

static void uart_link_sibling(struct uart *u, bool link)
{
	struct dev *d;
	char id[sizeof(u->dev.id)];

	pthread_mutex_lock(&uart_line_lock);
	if (link) {
		snprintf(id, sizeof(id), "uart@com%u", (u->index ^ 2) + 1);
		d = vm_find_dev(u->vm, id);
		u->sibling = d ? container_of(d, struct uart, dev) : NULL;
		if (u->sibling)
			u->sibling->sibling = u;
	} else if (u->sibling) {
		u->sibling->sibling = NULL;
		u->sibling = NULL;
	}
	pthread_mutex_unlock(&uart_line_lock);
}

/* Character timeout ------------------------------------------------------------------------ */

/* Four character times at the programmed divisor and frame format. */
static uint64_t uart_timeout_ns(const struct uart *u)
{
	unsigned divisor = u->r.dll | (u->r.dlm << 8);
	unsigned bits = 1 + 5 + (u->r.lcr & 3) + ((u->r.lcr & 0x08) ? 1 : 0) +
			((u->r.lcr & 0x04) ? 2 : 1);
	uint64_t ns;

	if (!divisor)
		divisor = 1;
	ns = 4ULL * bits * divisor * 1000000000ULL / UART_BAUD_BASE;
	return ns < UART_TIMEOUT_MAX_NS ? ns : UART_TIMEOUT_MAX_NS;
}

/*
 * The 16550A reports a timeout when the RX FIFO holds data and nothing was received or read
 * for four character times; every receive and every read restarts that window.
 */
static void uart_rx_timer_restart(struct uart *u)
{
	if (!u->paused && (u->r.fcr & FCR_ENABLE) && u->r.rx.count && !u->r.timeout_pending) {
		u->rx_deadline = vclock_ns(&u->vm->ev) + uart_timeout_ns(u);
		vtimer_arm(&u->rx_timer, u->rx_deadline);
	} else if (u->rx_deadline) {
		u->rx_deadline = 0;
		vtimer_cancel(&u->rx_timer);
	}
}

static void uart_rx_timer_fire(void *opaque)
{
	struct uart *u = opaque;

	pthread_mutex_lock(&u->lock);
	/* A run that raced with a re-arm or a cancel is stale: ignore it. */
	if (u->rx_deadline && vclock_ns(&u->vm->ev) >= u->rx_deadline) {
		u->rx_deadline = 0;
		if ((u->r.fcr & FCR_ENABLE) && u->r.rx.count)
			u->r.timeout_pending = true;
		uart_update_irq(u, false);
	}
	pthread_mutex_unlock(&u->lock);
}

/* Backend fds ------------------------------------------------------------------------------ */

static void uart_fd_event(void *opaque, uint32_t events);

/* Whether input should be read now: never into a full FIFO, in loopback or while paused. */
static bool uart_want_input(const struct uart *u)
{
	return u->in_fd >= 0 && !u->paused && !(u->r.mcr & MCR_LOOP) &&
	       u->r.rx.count < uart_fifo_cap(u);
}

static uint32_t uart_watch_want(const struct uart *u, const struct uart_watch *w)
{
	uint32_t m = 0;

	if (w == &u->w_listen)
		return (u->listen_fd >= 0 && u->in_fd < 0) ? EPOLLIN : 0;
	if (w->fd < 0)
		return 0;
	if (w->fd == u->in_fd && uart_want_input(u))
		m |= EPOLLIN;
	if (w->fd == u->out_fd && u->olen)
		m |= EPOLLOUT;
	return m;
}

/*
 * Bring @w's registration in line with what the device wants.  Only the loop thread
 * (@on_loop) may remove an fd; elsewhere an unwanted fd keeps a mask of 0, and if it then
 * reports a hang-up the callback removes it.
 */
static void uart_watch_sync(struct uart *u, struct uart_watch *w, bool on_loop)
{
	struct evloop *ev = &u->vm->ev;
	uint32_t want = uart_watch_want(u, w);

	if (w->registered) {
		/* Also when the mask is already 0: a hang-up is reported even then. */
		if (!want && on_loop) {
			evloop_del_fd(ev, w->fd);
			w->registered = false;
			w->events = 0;
		} else if (want != w->events && !evloop_mod_fd(ev, w->fd, want)) {
			w->events = want;
		}
		return;
	}
	if (!want)
		return;
	if (!evloop_add_fd(ev, w->fd, want, uart_fd_event, w)) {
		w->registered = true;
		w->events = want;
	} else if (w->fd == u->in_fd && u->in_fd != u->out_fd) {
		/* stdin that epoll cannot watch (a regular file, /dev/null): no input. */
		close(u->in_fd);
		u->in_fd = w->fd = -1;
	} else {
		u->dropped += u->olen;
		u->olen = 0;
	}
}

static void uart_watch_all(struct uart *u, bool on_loop)
{
	uart_watch_sync(u, &u->w_in, on_loop);
	uart_watch_sync(u, &u->w_out, on_loop);
	uart_watch_sync(u, &u->w_listen, on_loop);
}

/* Loop thread (or no loop running) only: forget @w's fd; the caller closes it. */
static void uart_watch_drop(struct uart *u, struct uart_watch *w)
{
	if (w->registered)
		evloop_del_fd(&u->vm->ev, w->fd);
	w->registered = false;
	w->events = 0;
	w->fd = -1;
}

/* The unix client went away (or stdin ended): stop using its fd. */
static void uart_close_input(struct uart *u)
{
	int fd = u->in_fd;

	uart_watch_drop(u, &u->w_in);
	if (fd == u->out_fd) {
		u->out_fd = -1;
		u->dropped += u->olen;
		u->olen = 0;
		u->out_broken = false;
	}
	u->in_fd = -1;
	if (fd >= 0)
		close(fd);
}

static ssize_t uart_out_write(struct uart *u, const void *buf, size_t len)
{
	if (u->out_is_sock)
		return send(u->out_fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
	return write(u->out_fd, buf, len);
}

/* A write failed for good (the reader left): drop output until a new client connects. */
static void uart_out_failed(struct uart *u)
{
	u->out_broken = true;
	u->dropped += u->olen;
	u->olen = 0;
}

/* Write as much buffered output as the backend takes now. */
static void uart_out_flush_some(struct uart *u)
{
	while (u->olen && u->out_fd >= 0 && !u->out_broken) {
		size_t chunk = UART_OUTBUF_SIZE - u->ohead;
		ssize_t n;

		if (chunk > u->olen)
			chunk = u->olen;
		n = uart_out_write(u, u->obuf + u->ohead, chunk);
		if (n < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				uart_out_failed(u);
			return;
		}
		u->ohead = (u->ohead + (size_t)n) % UART_OUTBUF_SIZE;
		u->olen -= (size_t)n;
	}
	if (!u->olen)
		u->ohead = 0;
}

/* A byte the guest transmitted, to the backend; never blocks. */
static void uart_out_byte(struct uart *u, uint8_t b)
{
	ssize_t n;

	if (u->out_fd < 0 || u->out_broken)
		return;
	if (!u->olen) {
		n = uart_out_write(u, &b, 1);
		if (n == 1)
			return;
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
			uart_out_failed(u);
			return;
		}
	}
	if (u->olen == UART_OUTBUF_SIZE) {
		u->dropped++;
		return;
	}
	u->obuf[(u->ohead + u->olen) % UART_OUTBUF_SIZE] = b;
	u->olen++;
	if (u->olen == 1)
		uart_watch_all(u, false);
}

/* Receive ---------------------------------------------------------------------------------- */

/* One character arrives on the line (from the backend, loopback or injection). */
static bool uart_rx_byte(struct uart *u, uint8_t b)
{
	struct uart_regs *r = &u->r;

	if (r->rx.count < uart_fifo_cap(u)) {
		fifo_push(&r->rx, b);
		return true;
	}
	r->lsr_err |= LSR_OE;
	/* Without FIFOs the new character overwrites the holding register; with them it is lost. */
	if (!(r->fcr & FCR_ENABLE))
		r->rx.buf[r->rx.head] = b;
	return false;
}

/*
 * After the RX FIFO changed: timeout window, interrupt line, whether to read the backend.  A
 * pending timeout is cleared by a read of RBR (@read), not by a new character.
 */
static void uart_rx_changed(struct uart *u, bool read, bool on_loop)
{
	if (read)
		u->r.timeout_pending = false;
	uart_rx_timer_restart(u);
	uart_update_irq(u, false);
	uart_watch_all(u, on_loop);
}

/* A byte held back by the escape goes first, as soon as the FIFO has room. */
static void uart_push_carry(struct uart *u)
{
	if (u->in_carry >= 0 && u->r.rx.count < uart_fifo_cap(u)) {
		uart_rx_byte(u, (uint8_t)u->in_carry);
		u->in_carry = -1;
	}
}

/* To the terminal, never the guest; a failed write only loses the message. */
static void uart_tell(const char *msg)
{
	ssize_t n = write(STDERR_FILENO, msg, strlen(msg));

	(void)n;
}

/* ~. or ~? typed on the terminal (see escape.h). */
static void uart_escape_act(struct uart *u, unsigned actions)
{
	char msg[512];

	if (actions & ESCAPE_HELP) {
		escape_help(u->esc.ch, msg, sizeof(msg));
		uart_tell(msg);
	}
	if (actions & ESCAPE_STOP) {
		snprintf(msg, sizeof(msg),
			 "\nkhyve: console escape: stopping the VM (exit status %d)\n",
			 VM_EXIT_ERROR);
		uart_tell(msg);
		uart_close_input(u);
		vm_request_exit(u->vm, VM_EXIT_ERROR);
	}
}

static void uart_read_input(struct uart *u)
{
	uint8_t buf[UART_FIFO_SIZE], out[UART_FIFO_SIZE + 1];
	size_t room, len;
	unsigned actions = 0;
	ssize_t n;

	uart_push_carry(u);
	room = uart_fifo_cap(u) - u->r.rx.count;
	if (!room || u->in_carry >= 0) {
		uart_rx_changed(u, false, true);
		return;
	}
	n = read(u->in_fd, buf, room);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (n <= 0) {
		/* End of input: stdin closed or the client left. */
		uart_close_input(u);
		return;
	}
	/* At most one byte more than was read: an escape character held from before. */
	len = escape_filter(&u->esc, buf, (size_t)n, out, &actions);
	for (size_t i = 0; i < len && i < room; i++)
		uart_rx_byte(u, out[i]);
	if (len > room)
		u->in_carry = out[room];
	uart_rx_changed(u, false, true);
	if (actions)
		uart_escape_act(u, actions);
}

static void uart_accept(struct uart *u)
{
	int fd = accept4(u->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	if (fd < 0)
		return;
	u->in_fd = u->out_fd = fd;
	u->out_is_sock = true;
	u->out_broken = false;
	u->w_in.fd = fd;
}

static void uart_fd_event(void *opaque, uint32_t events)
{
	struct uart_watch *w = opaque;
	struct uart *u = w->u;

	pthread_mutex_lock(&u->lock);
	if (w->fd < 0 || !w->registered)
		goto out;
	if (w == &u->w_listen) {
		uart_accept(u);
		goto out;
	}
	if ((events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) && w->fd == u->out_fd)
		uart_out_flush_some(u);
	/* An fd we no longer want is unregistered by the sync below, which also stops a
	 * hang-up from being reported over and over. */
	if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && w->fd == u->in_fd && uart_want_input(u))
		uart_read_input(u);
out:
	uart_watch_all(u, true);
	pthread_mutex_unlock(&u->lock);
}

/* Registers -------------------------------------------------------------------------------- */

/* Modem lines: looped back from MCR in loopback mode, else a peer that is always there. */
static uint8_t uart_msr_lines(uint8_t mcr)
{
	uint8_t lines = 0;

	if (!(mcr & MCR_LOOP))
		return MSR_DCD | MSR_DSR | MSR_CTS;
	if (mcr & MCR_RTS)
		lines |= MSR_CTS;
	if (mcr & MCR_DTR)
		lines |= MSR_DSR;
	if (mcr & MCR_OUT1)
		lines |= MSR_RI;
	if (mcr & MCR_OUT2)
		lines |= MSR_DCD;
	return lines;
}

static void uart_update_msr(struct uart *u)
{
	uint8_t old = u->r.msr & 0xf0, now = uart_msr_lines(u->r.mcr);
	uint8_t changed = old ^ now;

	if (changed & MSR_CTS)
		u->r.msr |= MSR_DCTS;
	if (changed & MSR_DSR)
		u->r.msr |= MSR_DDSR;
	if (changed & MSR_DCD)
		u->r.msr |= MSR_DDCD;
	/* TERI flags only the trailing edge of RI. */
	if ((old & MSR_RI) && !(now & MSR_RI))
		u->r.msr |= MSR_TERI;
	u->r.msr = (u->r.msr & MSR_DELTAS) | now;
}

/* Move everything in the TX FIFO out: backend output is instant. */
static void uart_tx_drain(struct uart *u)
{
	bool had = u->r.tx.count;

	while (u->r.tx.count) {
		uint8_t b = fifo_pop(&u->r.tx);

		if (u->r.mcr & MCR_LOOP) {
			uart_rx_byte(u, b);
			uart_rx_changed(u, false, false);
		} else {
			uart_out_byte(u, b);
		}
	}
	if (had)
		u->r.thre_pending = true;
}

static void uart_write_thr(struct uart *u, uint8_t v)
{
	/* Writing THR acknowledges a THRE interrupt; the byte leaves at once, so it comes back. */
	u->r.thre_pending = false;
	if (u->r.tx.count < uart_fifo_cap(u))
		fifo_push(&u->r.tx, v);
	uart_tx_drain(u);
}

static void uart_write_ier(struct uart *u, uint8_t v)
{
	uint8_t changed = (u->r.ier ^ v) & IER_ETBEI;

	u->r.ier = v & IER_MASK;
	/* Enabling ETBEI with the THR empty raises THRE right away, as Linux's probe expects. */
	if (changed)
		u->r.thre_pending = (v & IER_ETBEI) && !u->r.tx.count;
}

static void uart_write_fcr(struct uart *u, uint8_t v)
{
	struct uart_regs *r = &u->r;
	bool tx_had_data = r->tx.count;

	/* Switching between FIFO and 16450 mode empties both FIFOs. */
	if ((v ^ r->fcr) & FCR_ENABLE) {
		fifo_reset(&r->rx);
		fifo_reset(&r->tx);
		r->timeout_pending = false;
	}
	if (v & FCR_ENABLE) {
		if (v & FCR_RX_RESET) {
			fifo_reset(&r->rx);
			r->timeout_pending = false;
		}
		if (v & FCR_TX_RESET)
			fifo_reset(&r->tx);
		/* The other bits are programmed only together with FIFO enable. */
		r->fcr = v & FCR_KEPT;
	} else {
		r->fcr = 0;
	}
	if (tx_had_data && !r->tx.count)
		r->thre_pending = true;
	uart_rx_timer_restart(u);
	uart_watch_all(u, false);
}

static uint8_t uart_read_rbr(struct uart *u)
{
	uint8_t b = 0;

	if (u->r.rx.count)
		b = fifo_pop(&u->r.rx);
	uart_push_carry(u);
	uart_rx_changed(u, true, false);
	return b;
}

static uint8_t uart_read_iir(struct uart *u)
{
	uint8_t src = uart_intr_source(u);

	/* Reading IIR while it reports THRE is the other way to acknowledge it. */
	if (src == IIR_THRE)
		u->r.thre_pending = false;
	return src | ((u->r.fcr & FCR_ENABLE) ? IIR_FIFO_ON : 0);
}

static uint8_t uart_read_lsr(struct uart *u)
{
	uint8_t v = u->r.lsr_err;

	if (u->r.rx.count)
		v |= LSR_DR;
	if (!u->r.tx.count)
		v |= LSR_THRE | LSR_TEMT;
	/* The error bits clear on read. */
	u->r.lsr_err = 0;
	return v;
}

static uint8_t uart_read_msr(struct uart *u)
{
	uint8_t v = u->r.msr;

	u->r.msr &= ~MSR_DELTAS;
	return v;
}

static uint8_t uart_read(struct uart *u, unsigned reg)
{
	bool dlab = u->r.lcr & LCR_DLAB;

	switch (reg) {
	case REG_DATA:
		return dlab ? u->r.dll : uart_read_rbr(u);
	case REG_IER:
		return dlab ? u->r.dlm : u->r.ier;
	case REG_IIR:
		return uart_read_iir(u);
	case REG_LCR:
		return u->r.lcr;
	case REG_MCR:
		return u->r.mcr;
	case REG_LSR:
		return uart_read_lsr(u);
	case REG_MSR:
		return uart_read_msr(u);
	default:
		return u->r.scr;
	}
}

static void uart_write(struct uart *u, unsigned reg, uint8_t v)
{
	bool dlab = u->r.lcr & LCR_DLAB;

	switch (reg) {
	case REG_DATA:
		if (dlab)
			u->r.dll = v;
		else
			uart_write_thr(u, v);
		break;
	case REG_IER:
		if (dlab)
			u->r.dlm = v;
		else
			uart_write_ier(u, v);
		break;
	case REG_IIR:
		uart_write_fcr(u, v);
		break;
	case REG_LCR:
		u->r.lcr = v;
		break;
	case REG_MCR:
		u->r.mcr = v & MCR_MASK;
		uart_update_msr(u);
		uart_watch_all(u, false);
		break;
	case REG_SCR:
		u->r.scr = v;
		break;
	default:
		/* LSR and MSR writes are factory-test features; ignore them. */
		break;
	}
}

/* An 8-bit ISA device: a wider access is a run of byte accesses. */
static void uart_io(void *opaque, uint64_t offset, void *data, unsigned size, bool is_write)
{
	struct uart *u = opaque;
	uint8_t *p = data;

	pthread_mutex_lock(&u->lock);
	for (unsigned i = 0; i < size && offset + i < 8; i++) {
		if (is_write)
			uart_write(u, (unsigned)(offset + i), p[i]);
		else
			p[i] = uart_read(u, (unsigned)(offset + i));
	}
	uart_update_irq(u, false);
	pthread_mutex_unlock(&u->lock);
}

/* Public helpers --------------------------------------------------------------------------- */

size_t uart_rx_inject(struct dev *d, const uint8_t *buf, size_t len)
{
	struct uart *u = container_of(d, struct uart, dev);
	size_t stored = 0;

	pthread_mutex_lock(&u->lock);
	for (size_t i = 0; i < len; i++)
		stored += uart_rx_byte(u, buf[i]);
	if (len)
		uart_rx_changed(u, false, false);
	pthread_mutex_unlock(&u->lock);
	return stored;
}

int uart_flush(struct dev *d, int timeout_ms)
{
	struct uart *u = container_of(d, struct uart, dev);
	struct pollfd pfd = { .events = POLLOUT };
	int ret = 0;

	for (int waited = 0;; waited += 10) {
		pthread_mutex_lock(&u->lock);
		uart_out_flush_some(u);
		pfd.fd = u->out_fd;
		if (!u->olen || u->out_broken || u->out_fd < 0) {
			pthread_mutex_unlock(&u->lock);
			break;
		}
		pthread_mutex_unlock(&u->lock);
		if (waited >= timeout_ms) {
			ret = -EAGAIN;
			break;
		}
		/* Wait outside the lock so vCPUs can still use the port meanwhile. */
		poll(&pfd, 1, 10);
	}
	return ret;
}

/* Snapshot --------------------------------------------------------------------------------- */

static void uart_fifo_state(struct sstream *s, struct uart_fifo *f)
{
	ss_u8(s, &f->head);
	ss_u8(s, &f->count);
	ss_u8_array(s, f->buf, UART_FIFO_SIZE);
}

static void uart_regs_state(struct sstream *s, struct uart_regs *r)
{
	ss_u8(s, &r->ier);
	ss_u8(s, &r->lcr);
	ss_u8(s, &r->mcr);
	ss_u8(s, &r->scr);
	ss_u8(s, &r->fcr);
	ss_u8(s, &r->dll);
	ss_u8(s, &r->dlm);
	ss_u8(s, &r->lsr_err);
	ss_u8(s, &r->msr);
	ss_bool(s, &r->thre_pending);
	ss_bool(s, &r->timeout_pending);
	uart_fifo_state(s, &r->rx);
	uart_fifo_state(s, &r->tx);
}

/* A loaded register file must be one this code could have produced. */
static void uart_regs_check(struct sstream *s, const struct uart_regs *r)
{
	unsigned cap = (r->fcr & FCR_ENABLE) ? UART_FIFO_SIZE : 1;

	ss_check_max(s, r->ier & ~IER_MASK, 0, "uart IER reserved bits");
	ss_check_max(s, r->mcr & ~MCR_MASK, 0, "uart MCR reserved bits");
	ss_check_max(s, r->fcr & ~FCR_KEPT, 0, "uart FCR self-clearing bits");
	ss_check_max(s, r->lsr_err & ~LSR_ERRORS, 0, "uart LSR derived bits");
	ss_check_max(s, r->rx.head, UART_FIFO_SIZE - 1, "uart RX FIFO head");
	ss_check_max(s, r->rx.count, cap, "uart RX FIFO count");
	ss_check_max(s, r->tx.head, UART_FIFO_SIZE - 1, "uart TX FIFO head");
	ss_check_max(s, r->tx.count, cap, "uart TX FIFO count");
	if (!s->err && (r->msr & 0xf0) != uart_msr_lines(r->mcr))
		ss_fail(s, -EINVAL, "uart MSR lines 0x%02x do not match MCR 0x%02x", r->msr,
			r->mcr);
	if (!s->err && r->timeout_pending && !r->rx.count)
		ss_fail(s, -EINVAL, "uart character timeout pending with an empty RX FIFO");
}

static int uart_save(struct dev *d, struct sstream *s)
{
	struct uart *u = container_of(d, struct uart, dev);

	pthread_mutex_lock(&u->lock);
	uart_regs_state(s, &u->r);
	pthread_mutex_unlock(&u->lock);
	return ss_error(s);
}

static int uart_load(struct dev *d, struct sstream *s, unsigned version)
{
	struct uart *u = container_of(d, struct uart, dev);
	struct uart_regs st;

	if (version != UART_STATE_VERSION)
		return ss_fail(s, -EINVAL, "state version %u is not supported (%u)", version,
			       UART_STATE_VERSION);
	memset(&st, 0, sizeof(st));
	uart_regs_state(s, &st);
	uart_regs_check(s, &st);
	if (ss_finish(s))
		return ss_error(s);

	pthread_mutex_lock(&u->lock);
	u->r = st;
	uart_tx_drain(u);
	/*
	 * The restore sets the virtual clock after loading devices, so the timeout timer and
	 * input wait for resume (the orchestrator's last step): until then the device stays
	 * paused.  The line is driven now from the loaded state, and again on resume.
	 */
	u->paused = true;
	uart_rx_timer_restart(u);
	uart_update_irq(u, true);
	uart_watch_all(u, true);
	pthread_mutex_unlock(&u->lock);
	return 0;
}

static int uart_pause(struct dev *d)
{
	struct uart *u = container_of(d, struct uart, dev);

	pthread_mutex_lock(&u->lock);
	u->paused = true;
	uart_rx_timer_restart(u);
	uart_watch_all(u, true);
	pthread_mutex_unlock(&u->lock);
	/* Output the guest already sent is on the wire from its point of view. */
	uart_flush(d, 1000);
	return 0;
}

static int uart_resume(struct dev *d)
{
	struct uart *u = container_of(d, struct uart, dev);

	pthread_mutex_lock(&u->lock);
	u->paused = false;
	uart_rx_timer_restart(u);
	/* Forced: after a restore the interrupt controllers were loaded after this device. */
	uart_update_irq(u, true);
	uart_watch_all(u, true);
	pthread_mutex_unlock(&u->lock);
	return 0;
}

/* Backends --------------------------------------------------------------------------------- */

static void uart_tty_restore(void)
{
	if (uart_tty_raw) {
		tcsetattr(STDIN_FILENO, TCSANOW, &uart_tty_saved);
		uart_tty_raw = false;
	}
}

/*
 * Raw input so every key reaches the guest (^C included), but output post-processing stays
 * on so khyve's own messages on the same terminal still start at column 0.
 */
static void uart_tty_make_raw(void)
{
	struct termios t;

	if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &uart_tty_saved))
		return;
	t = uart_tty_saved;
	cfmakeraw(&t);
	t.c_oflag |= OPOST;
	if (tcsetattr(STDIN_FILENO, TCSANOW, &t))
		return;
	uart_tty_raw = true;
	if (!uart_tty_atexit && !atexit(uart_tty_restore))
		uart_tty_atexit = true;
}

/*
 * A private, non-blocking open file description of stdin/stdout: setting O_NONBLOCK on fd 0
 * or 1 themselves would change the terminal description the whole process (and its parent
 * shell) shares.  Regular files never block and are used as they are; where /proc cannot
 * reopen the fd (sockets) a duplicate is used and sockets are written with MSG_DONTWAIT.
 */
static int uart_reopen_std(int fd, int flags)
{
	char path[32];
	struct stat st;
	int nfd;

	if (fstat(fd, &st))
		return -1;
	if (!S_ISREG(st.st_mode)) {
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		nfd = open(path, flags | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
		if (nfd >= 0)
			return nfd;
	}
	return fcntl(fd, F_DUPFD_CLOEXEC, 0);
}

static int uart_open_stdio(struct uart *u, const char *name, char *err, size_t errlen)
{
	struct stat st;
	int ch, ret;

	if (uart_stdio_used) {
		snprintf(err, errlen, "%s: stdio is already used by another serial port", name);
		return -EBUSY;
	}
	u->out_fd = uart_reopen_std(STDOUT_FILENO, O_WRONLY);
	if (u->out_fd < 0) {
		snprintf(err, errlen, "%s: cannot use stdout: %s", name, strerror(errno));
		return -errno;
	}
	u->out_is_sock = !fstat(u->out_fd, &st) && S_ISSOCK(st.st_mode);
	/* No stdin (closed) is fine: the port has output only. */
	u->in_fd = uart_reopen_std(STDIN_FILENO, O_RDONLY);
	/*
	 * The escape is for a person at a terminal, as in ssh: a pipe or a file on stdin is
	 * passed on byte for byte.
	 */
	ret = escape_parse(u->vm->cfg ? config_get(u->vm->cfg, "console.escape") : NULL, &ch, err,
			   errlen);
	if (ret)
		return ret;
	escape_init(&u->esc, isatty(STDIN_FILENO) ? ch : ESCAPE_OFF);
	/* Claimed only now, so a failed open never releases another port's claim. */
	u->kind = UART_STDIO;
	uart_stdio_used = true;
	uart_tty_make_raw();
	return 0;
}

static int uart_open_file(struct uart *u, const char *name, const char *path, char *err,
			  size_t errlen)
{
	struct stat st;
	int ret;

	/*
	 * Never through a symlink (a log in a shared directory must not be redirected onto
	 * another file), never onto a FIFO that would block khyve: a regular file or a
	 * character device such as /dev/null, opened without waiting.  New logs are private:
	 * they hold whatever the guest printed.
	 */
	u->out_fd = open(path,
			 O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC |
				 O_NOCTTY,
			 0600);
	if (u->out_fd < 0) {
		ret = -errno;
		if (errno == ENXIO) /* a FIFO nobody reads */
			snprintf(err, errlen, "%s: log file %s is not a regular file or a device",
				 name, path);
		else
			snprintf(err, errlen, "%s: cannot open log file %s: %s%s", name, path,
				 strerror(errno), errno == ELOOP ? " (it is a symbolic link)" : "");
		return ret;
	}
	if (fstat(u->out_fd, &st) || !(S_ISREG(st.st_mode) || S_ISCHR(st.st_mode))) {
		snprintf(err, errlen, "%s: log file %s is not a regular file or a device", name,
			 path);
		return -EINVAL;
	}
	/* Files are written as before, blocking; the flag was only for the open. */
	fcntl(u->out_fd, F_SETFL, fcntl(u->out_fd, F_GETFL) & ~O_NONBLOCK);
	return 0;
}

/* A socket file left by a khyve that died is removed; a live one is someone else's. */
static int uart_unlink_stale(const struct sockaddr_un *sa)
{
	struct stat st;
	int fd, ret = 0;

	if (lstat(sa->sun_path, &st) || !S_ISSOCK(st.st_mode))
		return 0;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (!connect(fd, (const struct sockaddr *)sa, sizeof(*sa)))
		ret = -EADDRINUSE;
	else if (errno == ECONNREFUSED)
		unlink(sa->sun_path);
	close(fd);
	return ret;
}

static int uart_open_unix(struct uart *u, const char *name, const char *path, char *err,
			  size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int ret;

	if (!*path || strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "%s: socket path '%s' is empty or longer than %zu bytes",
			 name, path, sizeof(sa.sun_path) - 1);
		return -EINVAL;
	}
	strcpy(sa.sun_path, path);
	ret = uart_unlink_stale(&sa);
	if (ret) {
		snprintf(err, errlen, "%s: socket %s is in use by a running program", name, path);
		return ret;
	}
	u->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (u->listen_fd < 0 || bind(u->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    listen(u->listen_fd, 1)) {
		ret = -errno;
		snprintf(err, errlen, "%s: cannot listen on %s: %s", name, path, strerror(errno));
		return ret;
	}
	u->sock_path = strdup(path);
	return 0;
}

int uart_check_backend(unsigned index, const char *backend, char *err, size_t errlen)
{
	if (!backend || !strcmp(backend, "off") || !strcmp(backend, "stdio") ||
	    !strncmp(backend, "unix:", 5) || (!strncmp(backend, "file:", 5) && backend[5]))
		return 0;
	snprintf(err, errlen,
		 "com%u: unknown backend '%s' (use stdio, off, unix:PATH or file:PATH)", index + 1,
		 backend);
	return -EINVAL;
}

static int uart_open_backend(struct uart *u, const char *backend, char *err, size_t errlen)
{
	char name[8];

	snprintf(name, sizeof(name), "com%u", u->index + 1);
	if (!backend || !strcmp(backend, "off"))
		return 0;
	if (!strcmp(backend, "stdio"))
		return uart_open_stdio(u, name, err, errlen);
	if (!strncmp(backend, "unix:", 5)) {
		u->kind = UART_UNIX;
		return uart_open_unix(u, name, backend + 5, err, errlen);
	}
	if (!strncmp(backend, "file:", 5) && backend[5]) {
		u->kind = UART_FILE;
		return uart_open_file(u, name, backend + 5, err, errlen);
	}
	return uart_check_backend(u->index, backend, err, errlen);
}

static void uart_close_backend(struct uart *u)
{
	uart_watch_drop(u, &u->w_listen);
	uart_watch_drop(u, &u->w_out);
	uart_watch_drop(u, &u->w_in);
	if (u->in_fd >= 0 && u->in_fd != u->out_fd)
		close(u->in_fd);
	if (u->out_fd >= 0)
		close(u->out_fd);
	if (u->listen_fd >= 0)
		close(u->listen_fd);
	u->in_fd = u->out_fd = u->listen_fd = -1;
	if (u->sock_path) {
		unlink(u->sock_path);
		free(u->sock_path);
		u->sock_path = NULL;
	}
	if (u->kind == UART_STDIO) {
		uart_tty_restore();
		uart_stdio_used = false;
	}
}

/* Lifecycle -------------------------------------------------------------------------------- */

static void uart_reset(struct uart *u)
{
	memset(&u->r, 0, sizeof(u->r));
	u->r.dll = 1;	 /* 115200 baud until the guest says otherwise */
	u->r.lcr = 0x03; /* 8N1 */
	u->r.msr = uart_msr_lines(0);
	u->irq_level = 0;
}

static void uart_destroy(struct dev *d)
{
	struct uart *u = container_of(d, struct uart, dev);

	uart_flush(d, 200);
	vtimer_cancel(&u->rx_timer);
	bus_unregister(&u->vm->pio, u->base);
	uart_link_sibling(u, false);
	uart_close_backend(u);
	pthread_mutex_destroy(&u->lock);
	free(u->obuf);
	free(u);
}

struct dev *uart_create(struct vm *vm, unsigned index, const char *backend, char *err,
			size_t errlen)
{
	struct uart *u;
	int ret;

	if (index >= UART_NPORTS) {
		snprintf(err, errlen, "com%u: no such serial port (com1 to com4)", index + 1);
		return NULL;
	}
	u = calloc(1, sizeof(*u));
	if (!u || !(u->obuf = malloc(UART_OUTBUF_SIZE))) {
		snprintf(err, errlen, "com%u: out of memory", index + 1);
		free(u);
		return NULL;
	}
	u->vm = vm;
	u->index = index;
	u->base = uart_ports[index];
	u->irq = uart_irqs[index];
	u->in_fd = u->out_fd = u->listen_fd = -1;
	u->in_carry = -1;
	escape_init(&u->esc, ESCAPE_OFF);
	u->w_in = (struct uart_watch){ .u = u, .fd = -1 };
	u->w_out = (struct uart_watch){ .u = u, .fd = -1 };
	u->w_listen = (struct uart_watch){ .u = u, .fd = -1 };
	u->dev.ops = &uart_ops;
	snprintf(u->dev.id, sizeof(u->dev.id), "uart@com%u", index + 1);
	pthread_mutex_init(&u->lock, NULL);
	vtimer_init(&u->rx_timer, &vm->ev, uart_rx_timer_fire, u);
	uart_reset(u);

	ret = uart_open_backend(u, backend, err, errlen);
	if (ret)
		goto fail;
	u->w_in.fd = u->in_fd;
	u->w_out.fd = u->out_fd != u->in_fd ? u->out_fd : -1;
	u->w_listen.fd = u->listen_fd;
	ret = bus_register(&vm->pio, u->base, 8, uart_io, u);
	if (ret) {
		snprintf(err, errlen, "com%u: ports 0x%x-0x%x are already taken", index + 1,
			 u->base, u->base + 7);
		goto fail;
	}
	pthread_mutex_lock(&u->lock);
	uart_watch_all(u, true);
	pthread_mutex_unlock(&u->lock);
	uart_link_sibling(u, true);
	vm_add_dev(vm, &u->dev);
	return &u->dev;
fail:
	uart_close_backend(u);
	pthread_mutex_destroy(&u->lock);
	free(u->obuf);
	free(u);
	return NULL;
}

static const struct dev_ops uart_ops = {
	.name = "uart",
	.version = UART_STATE_VERSION,
	.pause = uart_pause,
	.resume = uart_resume,
	.save = uart_save,
	.load = uart_load,
	.destroy = uart_destroy,
};
