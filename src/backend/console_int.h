/* SPDX-License-Identifier: BSD-2-Clause */
/* Inside the console backend: what console.c and the VNC server (vnc.c) share. */
#ifndef KHYVE_BACKEND_CONSOLE_INT_H
#define KHYVE_BACKEND_CONSOLE_INT_H

#include <stdbool.h>
#include <stddef.h>

#include "backend/console.h"

struct vnc;

/*
 * Bring the surface up to date (refresh() of the display front end) and return it with the
 * display lock held: the caller reads it, then calls console_refresh_done().  NULL (no lock
 * held) when no display is attached.
 */
struct console_surface *console_refresh(struct console *c, bool full);
void console_refresh_done(struct console *c);

/* vnc.c: start the server for @c as @cfg says; stop it (joins its thread). */
int vnc_start(struct console *c, const struct console_vnc_cfg *cfg, struct vnc **out, char *err,
	      size_t errlen);
void vnc_stop(struct vnc *v);

#endif
