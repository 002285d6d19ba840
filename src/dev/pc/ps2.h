/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The two PS/2 devices behind the i8042 (atkbdc.c): the keyboard (ps2kbd.c) and the mouse
 * (ps2mouse.c).  They are parts of the controller: it owns their state, calls them with its
 * lock held, and saves them in its snapshot section.  Each device has two byte queues towards
 * the controller: replies to commands, which go first (a driver waiting for an ACK must not
 * find it behind a screenful of scan codes), and data (scan codes, movement packets).
 *
 * References: IBM PS/2 Hardware Interface Technical Reference (keyboard and auxiliary device
 * chapters); the scan code tables of the IBM keyboard references; Microsoft's IntelliMouse
 * protocol notes for the wheel ID detection.
 */
#ifndef KHYVE_DEV_PS2_H
#define KHYVE_DEV_PS2_H

#include <stdbool.h>
#include <stdint.h>

struct sstream;

#define PS2_QUEUE_SIZE 256
#define PS2_REPLY_SIZE 8

/* Bytes both devices send. */
#define PS2_ACK 0xfa
#define PS2_RESEND 0xfe
#define PS2_BAT_OK 0xaa
#define PS2_ECHO 0xee

struct ps2_queue {
	uint8_t buf[PS2_QUEUE_SIZE];
	uint16_t head, count;
	uint16_t size; /* capacity in use: PS2_QUEUE_SIZE or PS2_REPLY_SIZE */
};

void ps2_queue_init(struct ps2_queue *q, uint16_t size);
bool ps2_queue_room(const struct ps2_queue *q, unsigned n);
void ps2_queue_push(struct ps2_queue *q, uint8_t b);
int ps2_queue_pop(struct ps2_queue *q); /* -1 when empty */
int ps2_queue_peek(const struct ps2_queue *q, unsigned i);
void ps2_queue_state(struct sstream *s, struct ps2_queue *q);
void ps2_queue_check(struct sstream *s, const struct ps2_queue *q, const char *what);

/* ---- keyboard ---- */

struct ps2kbd {
	struct ps2_queue reply, data;
	bool scanning;	   /* F4/F5: keys are reported */
	uint8_t scanset;   /* 1 or 2 */
	uint8_t leds;	   /* ED: bit 0 scroll, 1 num, 2 caps lock */
	uint8_t typematic; /* F3: bits 0-4 rate, 5-6 delay */
	uint8_t pending;   /* command waiting for its parameter (ED, F0, F3), or 0 */
	uint8_t last;	   /* last byte sent, for FE (resend) */
	bool overrun;	   /* the data queue overflowed; the overrun code is queued */
	/* Typematic repeat of the last key pressed: not saved (see ps2kbd_load_fixup). */
	uint16_t held;	    /* Linux key code, 0 when none */
	uint64_t repeat_at; /* vclock ns of the next repeat */
};

void ps2kbd_reset(struct ps2kbd *k);
/* A byte from the host (through the controller's data port). */
void ps2kbd_write(struct ps2kbd *k, uint8_t b);
/* Next byte for the controller (replies first), or -1. */
int ps2kbd_read(struct ps2kbd *k);
bool ps2kbd_pending(const struct ps2kbd *k);
/* Key @keycode (Linux KEY_*) pressed or released at vclock @now. */
void ps2kbd_key(struct ps2kbd *k, unsigned keycode, bool down, uint64_t now);
/* The typematic timer fired at @now: queue a repeat if due.  Returns the next deadline or 0. */
uint64_t ps2kbd_repeat(struct ps2kbd *k, uint64_t now);
/* Set-2 make code bytes of @keycode into @out (up to 8); 0 when the key has none. */
unsigned ps2kbd_set2_make(unsigned keycode, uint8_t *out);
/* The i8042's set-2 to set-1 translation of one byte (without the F0 break prefix). */
uint8_t ps2_translate(uint8_t set2);
void ps2kbd_state(struct sstream *s, struct ps2kbd *k);
void ps2kbd_check(struct sstream *s, const struct ps2kbd *k);

/* ---- mouse ---- */

struct ps2mouse {
	struct ps2_queue reply, data;
	bool enabled;	    /* F4/F5: data reporting in stream mode */
	bool remote;	    /* F0 remote / EA stream */
	bool wrap;	    /* EE wrap (echo) mode */
	bool scaling21;	    /* E7/E6 */
	uint8_t rate;	    /* samples per second, F3 */
	uint8_t res;	    /* E8: 0-3, 1, 2, 4, 8 counts per mm */
	uint8_t id;	    /* 0 plain, 3 IntelliMouse (wheel), 4 IntelliMouse Explorer */
	uint8_t pending;    /* command waiting for its parameter (F3, E8), or 0 */
	uint8_t last;	    /* last byte sent, for FE */
	uint8_t knock[3];   /* the last three sample rates set, newest last */
	uint8_t buttons;    /* CONSOLE_BTN_* held */
	uint8_t reported;   /* buttons in the last packet queued */
	int32_t dx, dy, dz; /* movement not reported yet, in counts (y up) */
	int32_t fx, fy;	    /* sub-count remainders of resolution scaling, in 1/8 */
};

void ps2mouse_reset(struct ps2mouse *m);
void ps2mouse_write(struct ps2mouse *m, uint8_t b);
int ps2mouse_read(struct ps2mouse *m);
bool ps2mouse_pending(const struct ps2mouse *m);
/* Movement in pixels (y down), wheel clicks up, buttons held now. */
void ps2mouse_move(struct ps2mouse *m, int dx, int dy, int dz, unsigned buttons);
/* Room appeared in the data queue: report movement still pending. */
void ps2mouse_flush(struct ps2mouse *m);
void ps2mouse_state(struct sstream *s, struct ps2mouse *m);
void ps2mouse_check(struct sstream *s, const struct ps2mouse *m);

#endif
