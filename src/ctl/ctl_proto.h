/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The control protocol without the socket: one request line in, zero or more reply lines
 * out through a callback.  ctl.c feeds it lines read from client connections; unit tests
 * call it directly.  doc/control-protocol.md describes the messages.
 */
#ifndef KHYVE_CTL_PROTO_H
#define KHYVE_CTL_PROTO_H

struct vm;

/* Longest request line accepted, without its newline. */
#define CTL_MAX_LINE (64 * 1024)

/* Receives one reply line: a JSON object, no trailing newline. */
typedef void (*ctl_send_fn)(void *opaque, const char *json);

/*
 * Handle one request line (NUL-terminated, without the newline).  Always sends exactly one
 * final reply ({"ok":true,...} or {"ok":false,"error":...}), preceded by progress lines when
 * a save asked for them.  Returns 0 when the reply said ok, else the negative errno of the
 * failure.  Save requests call snap_save() and must run on the VM's event-loop thread.
 */
int ctl_handle_line(struct vm *vm, const char *line, ctl_send_fn send, void *opaque);

#endif
