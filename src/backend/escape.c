// SPDX-License-Identifier: BSD-2-Clause
/* The console escape state machine (see escape.h). */
#include "backend/escape.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

void escape_init(struct escape *e, int ch)
{
	e->ch = ch;
	e->line_start = true;
	e->held = false;
}

size_t escape_pending(const struct escape *e)
{
	return e->held ? 1 : 0;
}

/* The byte after an escape character at a line start. */
static size_t escape_command(struct escape *e, uint8_t b, uint8_t *out, unsigned *actions)
{
	size_t n = 0;

	e->held = false;
	if (b == '.') {
		*actions |= ESCAPE_STOP;
		return 0;
	}
	if (b == '?') {
		/* Nothing went to the guest: the line still starts here, as in ssh. */
		*actions |= ESCAPE_HELP;
		return 0;
	}
	if (b != e->ch)
		out[n++] = (uint8_t)e->ch;
	out[n++] = b;
	e->line_start = b == '\r' || b == '\n';
	return n;
}

size_t escape_filter(struct escape *e, const uint8_t *in, size_t n, uint8_t *out, unsigned *actions)
{
	size_t o = 0;

	for (size_t i = 0; i < n && !(*actions & ESCAPE_STOP); i++) {
		uint8_t b = in[i];

		if (e->held) {
			o += escape_command(e, b, out + o, actions);
		} else if (e->ch != ESCAPE_OFF && e->line_start && b == e->ch) {
			e->held = true;
		} else {
			out[o++] = b;
			e->line_start = b == '\r' || b == '\n';
		}
	}
	return o;
}

int escape_parse(const char *s, int *ch, char *err, size_t errlen)
{
	if (!s || !strcmp(s, "~")) {
		*ch = '~';
		return 0;
	}
	if (!strcmp(s, "none")) {
		*ch = ESCAPE_OFF;
		return 0;
	}
	if (s[0] == '^' && s[1] && !s[2] &&
	    ((s[1] >= '@' && s[1] <= '_') || (s[1] >= 'a' && s[1] <= 'z'))) {
		*ch = s[1] & 0x1f;
		if (*ch != '\r' && *ch != '\n')
			return 0;
	} else if (s[0] && !s[1] && (unsigned char)s[0] > ' ' && (unsigned char)s[0] < 0x7f) {
		*ch = s[0];
		return 0;
	}
	snprintf(err, errlen,
		 "console.escape=%s: use none, one printable character, or ^X for a control "
		 "character other than ^J and ^M",
		 s);
	return -EINVAL;
}

void escape_help(int ch, char *buf, size_t len)
{
	char c[3] = { (char)ch, 0, 0 };

	if (ch < ' ') {
		c[0] = '^';
		c[1] = (char)(ch + '@');
	}
	snprintf(buf, len,
		 "khyve console escapes (after a newline):\n"
		 "  %s.  stop the VM now (as khyvectl --destroy, exit status 4)\n"
		 "  %s?  this help\n"
		 "  %s%s  send %s to the guest\n"
		 "  (-o console.escape=none turns them off, =CHAR changes %s)\n",
		 c, c, c, c, c, c);
}
