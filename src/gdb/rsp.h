/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The GDB remote serial protocol's framing ("Remote Protocol" in the GDB manual, "Overview"
 * and "Packets"): $payload#cc with a modulo-256 checksum, '}' escapes (the byte XOR 0x20)
 * and run-length encoding ('*' and a count character).  Pure code, no I/O: the stub feeds
 * every byte the network gives it into rsp_feed() and frames its replies with rsp_encode().
 *
 * Every byte comes from the network and is untrusted: a packet longer than RSP_MAX_PAYLOAD
 * is dropped whole (and reported as bad, so gdb is told '-'), the hex helpers take only the
 * digits they are allowed and say how many they used.
 */
#ifndef KHYVE_GDB_RSP_H
#define KHYVE_GDB_RSP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The largest decoded payload accepted, and what qSupported announces as PacketSize. */
#define RSP_MAX_PAYLOAD 4096
/* A framed reply of a RSP_MAX_PAYLOAD payload: every byte escaped, and room to spare */
#define RSP_MAX_FRAME (2 * RSP_MAX_PAYLOAD + 8)

enum rsp_event {
	RSP_NONE,      /* byte consumed, nothing complete yet */
	RSP_PACKET,    /* a packet with a good checksum: p->buf, p->len (answer '+') */
	RSP_BAD,       /* a packet with a bad checksum, or too long: answer '-' */
	RSP_INTERRUPT, /* 0x03 outside a packet: gdb's Ctrl-C */
	RSP_ACK,       /* '+' */
	RSP_NAK,       /* '-': resend the last reply */
};

struct rsp_parser {
	enum { RSP_IDLE, RSP_DATA, RSP_ESC, RSP_RLE, RSP_SUM1, RSP_SUM2 } state;
	uint8_t buf[RSP_MAX_PAYLOAD + 1]; /* NUL after the payload, for the text commands */
	size_t len;
	uint8_t sum, got; /* checksum of the raw bytes; the first checksum digit */
	bool overflow;	  /* this packet outgrew buf: it is reported as RSP_BAD */
};

void rsp_init(struct rsp_parser *p);
/* One byte from the network. */
enum rsp_event rsp_feed(struct rsp_parser *p, uint8_t c);

/*
 * Frame @len bytes of @payload into @out ($...#cc), escaping what must be and run-length
 * encoding runs.  Returns the frame's length, or 0 when @cap is too small.
 */
size_t rsp_encode(const void *payload, size_t len, char *out, size_t cap);

/* The value of hex digit @c, or -1. */
int rsp_hexval(int c);
/*
 * A hex number of 1 to 16 digits at *@s (no more than @end): advances *@s past it.  0, or -1
 * when there is no digit or the number has more than 16.
 */
int rsp_hex_u64(const char **s, const char *end, uint64_t *out);
/* 2*@n hex digits at @s into @n bytes; -1 if one is not a hex digit. */
int rsp_hex_decode(const char *s, size_t n, uint8_t *out);
/* @n bytes as 2*@n lower-case hex digits (no NUL). */
void rsp_hex_encode(const void *in, size_t n, char *out);

#endif
