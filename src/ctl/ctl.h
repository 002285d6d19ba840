/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The control socket: a UNIX stream socket per VM (config key ctl.socket, default
 * /run/khyve/VMNAME.sock, or $XDG_RUNTIME_DIR/khyve/VMNAME.sock for a user who cannot write
 * /run/khyve; mode 0600, in a private directory) speaking one JSON object per line.  Requests run on the
 * VM's event-loop thread.  doc/control-protocol.md describes the messages.
 */
#ifndef KHYVE_CTL_H
#define KHYVE_CTL_H

#include <stddef.h>

struct vm;

#define CTL_DEFAULT_DIR "/run/khyve"

int ctl_start(struct vm *vm, char *err, size_t errlen);
void ctl_stop(struct vm *vm);
/* CTL_DEFAULT_DIR, or $XDG_RUNTIME_DIR/khyve for a user who may not write there. */
const char *ctl_default_dir(char *buf, size_t len);
/* The socket path for a VM name and config (what ctl_start binds, what khyvectl connects to). */
int ctl_socket_path(const char *vmname, const char *configured, char *buf, size_t len);

#endif
