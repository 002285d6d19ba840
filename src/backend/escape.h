/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The console escape of a serial port on a terminal (stdio), as ssh(1) and cu(1) have it.
 * After a newline (CR or LF) or before anything was typed, the escape character (~ unless
 * console.escape says otherwise) starts a command:
 *
 *	~.	stop the VM at once (as khyvectl --destroy: exit status 4)
 *	~?	print the escapes on the terminal (stderr), nothing to the guest
 *	~~	send one ~ to the guest
 *	~X	anything else: both characters go to the guest
 *
 * This is a pure state machine over the bytes typed; the UART feeds it what it reads from
 * stdin and acts on what it reports.  It knows nothing of terminals or the VM.
 */
#ifndef KHYVE_BACKEND_ESCAPE_H
#define KHYVE_BACKEND_ESCAPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ESCAPE_OFF (-1)

/* What escape_filter() saw, as bits. */
#define ESCAPE_HELP 0x1 /* ~? was typed: show the help */
#define ESCAPE_STOP 0x2 /* ~. was typed: stop the VM; the input after it was dropped */

struct escape {
	int ch;		 /* the escape character, or ESCAPE_OFF */
	bool line_start; /* nothing typed yet, or the last byte was CR or LF */
	bool held;	 /* the escape character was typed at a line start: waiting for the next */
};

void escape_init(struct escape *e, int ch);

/*
 * Filter @n typed bytes from @in into @out, which must have room for @n + escape_pending()
 * bytes; returns how many bytes go to the guest and sets ESCAPE_* bits in *@actions.
 * An escape character at the end of @in is held until the next call.
 */
size_t escape_filter(struct escape *e, const uint8_t *in, size_t n, uint8_t *out,
		     unsigned *actions);

/* How many more bytes than it is given the next escape_filter() may return (0 or 1). */
size_t escape_pending(const struct escape *e);

/*
 * The value of console.escape: "none" (ESCAPE_OFF), one character, or ^X for a control
 * character (ssh's notation).  0, or -EINVAL with a message in @err.
 */
int escape_parse(const char *s, int *ch, char *err, size_t errlen);

/* The help printed for ~?, lines ending in "\n". */
void escape_help(int ch, char *buf, size_t len);

#endif
