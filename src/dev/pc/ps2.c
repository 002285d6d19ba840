// SPDX-License-Identifier: BSD-2-Clause
/* What both PS/2 devices share (see ps2.h): byte queues and their snapshot. */
#include "dev/pc/ps2.h"

#include <errno.h>
#include <string.h>

#include "sstream.h"

void ps2_queue_init(struct ps2_queue *q, uint16_t size)
{
	memset(q, 0, sizeof(*q));
	q->size = size;
}

bool ps2_queue_room(const struct ps2_queue *q, unsigned n)
{
	return q->count + n <= q->size;
}

void ps2_queue_push(struct ps2_queue *q, uint8_t b)
{
	if (q->count >= q->size)
		return;
	q->buf[(q->head + q->count) % PS2_QUEUE_SIZE] = b;
	q->count++;
}

int ps2_queue_pop(struct ps2_queue *q)
{
	uint8_t b;

	if (!q->count)
		return -1;
	b = q->buf[q->head];
	q->head = (q->head + 1) % PS2_QUEUE_SIZE;
	q->count--;
	return b;
}

int ps2_queue_peek(const struct ps2_queue *q, unsigned i)
{
	return i < q->count ? q->buf[(q->head + i) % PS2_QUEUE_SIZE] : -1;
}

/*
 * A queue is saved as its bytes in order (the head position is not state the guest can see),
 * so a loaded queue starts at 0 and saves the same bytes again.
 */
void ps2_queue_state(struct sstream *s, struct ps2_queue *q)
{
	uint8_t lin[PS2_QUEUE_SIZE];

	ss_expect_u32(s, q->size, "PS/2 queue size");
	if (!s->loading)
		for (unsigned i = 0; i < q->count; i++)
			lin[i] = (uint8_t)ps2_queue_peek(q, i);
	ss_u16(s, &q->count);
	if (s->loading) {
		ss_check_max(s, q->count, q->size, "PS/2 queue length");
		if (ss_error(s))
			return;
		q->head = 0;
	}
	ss_bytes(s, s->loading ? q->buf : lin, q->count);
}

void ps2_queue_check(struct sstream *s, const struct ps2_queue *q, const char *what)
{
	if (q->count > q->size || q->head >= PS2_QUEUE_SIZE)
		ss_fail(s, -EINVAL, "%s queue: %u bytes at %u do not fit %u", what, q->count,
			q->head, q->size);
}
