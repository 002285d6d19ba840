// SPDX-License-Identifier: BSD-2-Clause
/* GDB remote protocol framing (see rsp.h). */
#include "rsp.h"

#include <string.h>

/* gdb's run-length counts start at 29: '*' then (29 + n) repeats the last byte n more times. */
#define RLE_BIAS 29
#define RLE_MIN 3
#define RLE_MAX 97 /* the count character stays printable ASCII ('~') */

void rsp_init(struct rsp_parser *p)
{
	memset(p, 0, sizeof(*p));
}

int rsp_hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static void put(struct rsp_parser *p, uint8_t c)
{
	if (p->len >= RSP_MAX_PAYLOAD) {
		p->overflow = true;
		return;
	}
	p->buf[p->len++] = c;
}

static enum rsp_event finish(struct rsp_parser *p, int lo)
{
	int hi = rsp_hexval(p->got);
	bool good = hi >= 0 && lo >= 0 && (uint8_t)(hi << 4 | lo) == p->sum && !p->overflow;

	p->state = RSP_IDLE;
	p->buf[p->len] = '\0';
	if (!good)
		p->len = 0;
	return good ? RSP_PACKET : RSP_BAD;
}

/* A byte inside $...#: the checksum covers it as sent, escapes and counts included. */
static enum rsp_event feed_data(struct rsp_parser *p, uint8_t c)
{
	if (c == '#') {
		p->state = RSP_SUM1;
		return RSP_NONE;
	}
	if (c == '$') {
		/* A new packet in the middle of one: gdb gave up on the old one. */
		p->len = 0;
		p->sum = 0;
		p->overflow = false;
		p->state = RSP_DATA;
		return RSP_NONE;
	}
	p->sum += c;
	switch (p->state) {
	case RSP_ESC:
		put(p, c ^ 0x20);
		p->state = RSP_DATA;
		break;
	case RSP_RLE:
		/* A count with nothing to repeat, or out of range, spoils the packet. */
		if (!p->len || c < RLE_BIAS + RLE_MIN || c > RLE_BIAS + RLE_MAX) {
			p->overflow = true;
		} else {
			uint8_t last = p->buf[p->len - 1];

			for (int n = c - RLE_BIAS; n > 0; n--)
				put(p, last);
		}
		p->state = RSP_DATA;
		break;
	default:
		if (c == '}')
			p->state = RSP_ESC;
		else if (c == '*')
			p->state = RSP_RLE;
		else
			put(p, c);
		break;
	}
	return RSP_NONE;
}

enum rsp_event rsp_feed(struct rsp_parser *p, uint8_t c)
{
	switch (p->state) {
	case RSP_IDLE:
		if (c == '$') {
			p->len = 0;
			p->sum = 0;
			p->overflow = false;
			p->state = RSP_DATA;
			return RSP_NONE;
		}
		if (c == 0x03)
			return RSP_INTERRUPT;
		if (c == '+')
			return RSP_ACK;
		if (c == '-')
			return RSP_NAK;
		return RSP_NONE; /* noise between packets */
	case RSP_SUM1:
		p->got = c;
		p->state = RSP_SUM2;
		return RSP_NONE;
	case RSP_SUM2:
		return finish(p, rsp_hexval(c));
	default:
		return feed_data(p, c);
	}
}

static bool must_escape(uint8_t c)
{
	return c == '$' || c == '#' || c == '}' || c == '*';
}

/* How many times @b[0] repeats from the start of @b (at most @len). */
static size_t run_length(const uint8_t *b, size_t len)
{
	size_t n = 1;

	while (n < len && b[n] == b[0])
		n++;
	return n;
}

size_t rsp_encode(const void *payload, size_t len, char *out, size_t cap)
{
	static const char hex[] = "0123456789abcdef";
	const uint8_t *b = payload;
	size_t o = 0;
	uint8_t sum = 0;

	if (cap < 4)
		return 0;
	out[o++] = '$';
	for (size_t i = 0; i < len;) {
		uint8_t c = b[i];
		size_t run = must_escape(c) ? 1 : run_length(b + i, len - i);
		size_t extra = run - 1;

		if (o + 4 + 3 > cap)
			return 0;
		if (must_escape(c)) {
			out[o++] = '}';
			sum += '}';
			c ^= 0x20;
		}
		out[o++] = (char)c;
		sum += c;
		i++;
		if (extra < RLE_MIN)
			continue;
		if (extra > RLE_MAX)
			extra = RLE_MAX;
		/* '#' and '$' may not be counts: 6 and 7 repeats become 5. */
		if (extra + RLE_BIAS == '#' || extra + RLE_BIAS == '$')
			extra = '#' - 1 - RLE_BIAS;
		out[o++] = '*';
		out[o++] = (char)(extra + RLE_BIAS);
		sum += '*';
		sum += (uint8_t)(extra + RLE_BIAS);
		i += extra;
	}
	if (o + 3 > cap)
		return 0;
	out[o++] = '#';
	out[o++] = hex[sum >> 4];
	out[o++] = hex[sum & 15];
	return o;
}

int rsp_hex_u64(const char **s, const char *end, uint64_t *out)
{
	const char *p = *s;
	uint64_t v = 0;
	int d, n = 0;

	while (p < end && (d = rsp_hexval(*p)) >= 0) {
		if (++n > 16)
			return -1;
		v = v << 4 | (uint64_t)d;
		p++;
	}
	if (!n)
		return -1;
	*s = p;
	*out = v;
	return 0;
}

int rsp_hex_decode(const char *s, size_t n, uint8_t *out)
{
	for (size_t i = 0; i < n; i++) {
		int hi = rsp_hexval(s[2 * i]), lo = hi < 0 ? -1 : rsp_hexval(s[2 * i + 1]);

		if (lo < 0)
			return -1;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

void rsp_hex_encode(const void *in, size_t n, char *out)
{
	static const char hex[] = "0123456789abcdef";
	const uint8_t *b = in;

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hex[b[i] >> 4];
		out[2 * i + 1] = hex[b[i] & 15];
	}
}
