/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The 16550A UART (COM1..COM4).
 *
 * The guest sees a complete 16550A: 16-byte RX and TX FIFOs, RX trigger levels, the character
 * timeout, loopback, modem status deltas and the level-triggered ISA interrupt.  Behind it sits
 * one backend, the value of lpc.comN.path:
 *
 *	stdio		stdin (raw mode when it is a terminal) and stdout
 *	off		the port exists, nothing goes in or out
 *	unix:PATH	a listening UNIX stream socket, one client at a time
 *	file:PATH	output appended to a log file, no input
 *
 * Output never blocks a vCPU: the backend fd is non-blocking, bytes it cannot take at once are
 * kept in a bounded buffer flushed when the fd is writable, and dropped when that is full.
 * Input is read only while the RX FIFO has room, so nothing a client sends is lost.
 *
 * The snapshot holds the registers and both FIFOs, never the backend: a restored VM may be
 * connected to a different one.
 */
#ifndef KHYVE_DEV_UART_H
#define KHYVE_DEV_UART_H

#include <stddef.h>
#include <stdint.h>

struct vm;
struct dev;

#define UART_NPORTS 4

/*
 * Creates COM(@index + 1) with @backend ("stdio", "off", "unix:PATH", "file:PATH"; NULL means
 * "off").  Returns NULL with a message in @err on a bad index, an unknown backend or a backend
 * that cannot be opened.
 */
struct dev *uart_create(struct vm *vm, unsigned index, const char *backend, char *err,
			size_t errlen);

/*
 * Whether @backend names a backend uart_create knows (it is not opened): 0, or -EINVAL with a
 * message in @err naming COM(@index + 1).  A command line is checked with it before KVM is
 * touched.
 */
int uart_check_backend(unsigned index, const char *backend, char *err, size_t errlen);

/*
 * Puts @len bytes on the receive line as if a peer had sent them, whatever the backend.  Bytes
 * that find the RX FIFO full set the overrun bit and are lost, as on the wire.  Returns the
 * number of bytes that went into the FIFO.
 */
size_t uart_rx_inject(struct dev *d, const uint8_t *buf, size_t len);

/*
 * Writes out the output buffered while the backend was slow, waiting for it at most
 * @timeout_ms.  Returns 0, or -EAGAIN when bytes are still pending.  Also done by pause.
 */
int uart_flush(struct dev *d, int timeout_ms);

#endif
