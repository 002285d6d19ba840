/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The display/input backend: one per VM, shared by every device that shows a picture or takes
 * keys and pointer movement, and by the VNC server that connects them to a person (bhyve's
 * console.c idea).  Front ends never open sockets or know about RFB; the backend never knows a
 * register of any device.
 *
 *   display front end (fbuf) --refresh()--> console --> VNC server (vnc.c), screenshots
 *   VNC client --keysym / pointer--> console --key()/rel()/abs()--> PS/2 keyboard, PS/2 mouse,
 *                                                                  USB tablet, ...
 *
 * Input front ends.  A device registers one struct console_input per function it offers
 * (a keyboard, a relative pointer, an absolute pointer) with console_input_add(), typically
 * from its create/init function, and removes it in its destroy.  That one call is all a new
 * input device needs; nothing in the backend changes.  Each event goes to exactly one front
 * end of its kind:
 *
 *   - keys go to the keyboard with the highest priority whose active() (if given) says yes;
 *   - pointer events go to the pointer (relative or absolute) with the highest priority whose
 *     active() says yes.  An absolute pointer gets the position scaled to 0..CONSOLE_ABS_MAX
 *     over the displayed picture; a relative one gets the difference from the previous
 *     position, in pixels.  So a USB tablet (CONSOLE_PRIO_TABLET) takes the pointer from the
 *     PS/2 mouse (CONSOLE_PRIO_PS2) when it is present, and can hand it back by answering
 *     false from active() (e.g. while the guest has not configured it).
 *
 * Keys are Linux input key codes (KEY_A... from <linux/input-event-codes.h>): layout-free
 * positions on a PC keyboard, which every keyboard front end maps to its own codes (PS/2 scan
 * code sets, USB HID usages).  The backend maps X11 keysyms from VNC clients to them with a
 * US layout (keymap.c).  The backend tracks which keys are down: a key pressed again while
 * down (a client's autorepeat) is not passed on, since keyboards repeat by themselves
 * (typematic), and the keys a client still holds are released when it disconnects.
 *
 * Front-end callbacks run on the backend's thread (the VNC server) or on the caller's thread
 * for console_*_event(); they may take the device's own lock, and must not block for long.
 * They may be called while the VM is paused for a snapshot: a device then queues the event in
 * its state (it is in the snapshot if the device is saved afterwards, else it is delivered by
 * the running VM after the checkpoint) and must not raise interrupts until it resumes.
 *
 * Display front end.  One device (fbuf) attaches with console_display_attach(), which also
 * starts the VNC server from the device's options.  The backend owns a surface (32-bit
 * 0x00RRGGBB pixels, rows of @width pixels); from its thread it calls refresh(), in which
 * the front end brings the surface up to date with what the guest shows, resizes it with
 * console_surface_resize() when the mode changed, and reports each changed rectangle with
 * console_damage().  refresh() is called only while someone looks (a VNC client is
 * connected, or a screenshot is taken), at most CONSOLE_REFRESH_HZ times a second, so an
 * idle guest with nobody watching costs nothing, and one that draws nothing costs a few
 * cheap refresh() calls.
 */
#ifndef KHYVE_BACKEND_CONSOLE_H
#define KHYVE_BACKEND_CONSOLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vm;
struct console;
struct console_input;

#define CONSOLE_ABS_MAX 0x7fff
#define CONSOLE_REFRESH_HZ 60
#define CONSOLE_MAX_WIDTH 1920
#define CONSOLE_MAX_HEIGHT 1200

/* Pointer buttons, in the order PS/2 and USB HID number them. */
#define CONSOLE_BTN_LEFT 0x01
#define CONSOLE_BTN_RIGHT 0x02
#define CONSOLE_BTN_MIDDLE 0x04
#define CONSOLE_BTN_SIDE 0x08
#define CONSOLE_BTN_EXTRA 0x10

/* Priorities of the input front ends khyve has; higher wins. */
#define CONSOLE_PRIO_PS2 10
#define CONSOLE_PRIO_USB 20
#define CONSOLE_PRIO_TABLET 30

enum console_input_type {
	CONSOLE_KEYBOARD,
	CONSOLE_POINTER_REL,
	CONSOLE_POINTER_ABS,
};

struct console_input_ops {
	enum console_input_type type;
	const char *name; /* for messages: "ps2-keyboard" */
	int priority;
	/* CONSOLE_KEYBOARD: @keycode is a Linux KEY_* code (< 256), pressed or released. */
	void (*key)(void *opaque, unsigned keycode, bool down);
	/*
	 * CONSOLE_POINTER_REL: movement in pixels (x right, y down), @dz wheel clicks (positive
	 * away from the user, "up"), @buttons the CONSOLE_BTN_* held now.
	 */
	void (*rel)(void *opaque, int dx, int dy, int dz, unsigned buttons);
	/* CONSOLE_POINTER_ABS: position scaled to 0..CONSOLE_ABS_MAX, wheel and buttons. */
	void (*abs)(void *opaque, unsigned x, unsigned y, int dz, unsigned buttons);
	/* Optional: does the guest use this device now?  NULL means always. */
	bool (*active)(void *opaque);
};

/*
 * The VM's console, created on first use; every console_get() is paired with a
 * console_put(), the last of which frees it.  NULL when out of memory.
 */
struct console *console_get(struct vm *vm);
void console_put(struct console *c);

/* Register an input front end; NULL when out of memory.  @ops must outlive it. */
struct console_input *console_input_add(struct console *c, const struct console_input_ops *ops,
					void *opaque);
/* Unregister; no callback of @in runs after this returns. */
void console_input_remove(struct console_input *in);

/* ---- events from clients (the VNC server, tests) ---- */

/* An X11 keysym pressed or released; keysyms the US layout does not know are ignored. */
void console_keysym_event(struct console *c, uint32_t keysym, bool down);
/* A key by Linux key code. */
void console_key_event(struct console *c, unsigned keycode, bool down);
/*
 * The pointer at (@x, @y) in surface pixels with the RFB button mask @mask: bit 0 left,
 * 1 middle, 2 right, 3/4 wheel up/down (a press is one click), 7/8 side/extra.
 */
void console_pointer_event(struct console *c, unsigned x, unsigned y, unsigned mask);
/* A client went away: release every key it still holds and its buttons. */
void console_release_all(struct console *c);

/* ---- the display ---- */

struct console_surface {
	uint32_t *pixels; /* width * height, 0x00RRGGBB */
	unsigned width, height;
	/* Set by console_damage(): the bounding box of what changed in this refresh. */
	unsigned dx0, dy0, dx1, dy1;
	bool damaged;
	void *priv; /* the backend's */
};

struct console_display_ops {
	/*
	 * Bring @s up to date with the guest's picture: console_surface_resize() first if the
	 * size changed, then console_damage() for every rectangle written.  With @full, the
	 * front end redraws everything (the backend asks after a resize or a new client).
	 */
	void (*refresh)(void *opaque, struct console_surface *s, bool full);
};

/* Where and how the VNC server listens: the fbuf options (see vnc.c). */
struct console_vnc_cfg {
	const char *tcp;       /* "IP:PORT", "IP" (port 5900), ":PORT"; NULL with unix */
	const char *unix_path; /* a UNIX socket instead of TCP */
	const char *password;  /* VNC authentication, at most 8 characters; NULL: none */
	bool wait;	       /* console_display_attach() returns once a client connected */
	const char *name;      /* desktop name shown by clients */
};

/*
 * Attach the display front end and start the VNC server (@cfg NULL: no server, screenshots
 * only).  One display per VM.  0 or -errno with a message in @err.
 */
int console_display_attach(struct console *c, const struct console_display_ops *ops, void *opaque,
			   const struct console_vnc_cfg *cfg, char *err, size_t errlen);
/* Stop the server and detach; refresh() is not called after this returns. */
void console_display_detach(struct console *c);

/* For refresh(): make the surface @w x @h (contents undefined until redrawn).  0 or -errno. */
int console_surface_resize(struct console_surface *s, unsigned w, unsigned h);
/* For refresh(): the rectangle (@x, @y, @w, @h) was written. */
void console_damage(struct console_surface *s, unsigned x, unsigned y, unsigned w, unsigned h);

/*
 * A copy of what the display shows now (after a refresh), for screenshots: *@pixels is
 * malloc'ed, width * height.  -ENODEV when no display is attached.
 */
int console_snapshot_image(struct console *c, uint32_t **pixels, unsigned *width, unsigned *height);

/* The VM's console if one exists (no reference taken), for the control socket. */
struct console *console_of(struct vm *vm);

/* keymap.c: the Linux key code of X11 keysym @keysym on a US keyboard, or 0. */
unsigned keymap_keysym_to_key(uint32_t keysym);

#endif
