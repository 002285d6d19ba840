// SPDX-License-Identifier: BSD-2-Clause
/*
 * e1000 transmit (SDM 3.3-3.5): the descriptor ring between TDH and TDT, legacy descriptors
 * with their inserted checksum, context descriptors (the normal and the TCP segmentation
 * context), data descriptors with IP and TCP/UDP checksum insertion, TCP segmentation (TSO),
 * VLAN tag insertion, short-packet padding, descriptor write-back and the transmit interrupt
 * delays (TIDV, TADV).
 *
 * A packet is taken only once every descriptor up to its EOP lies before TDT, so between two
 * calls no packet is half-sent: a snapshot never has to hold transmit data.  Everything the
 * guest controls is checked: the ring (e1000_ring), every buffer (vm_gpa: wholly inside guest
 * RAM, else the packet is dropped and its descriptors completed), packet lengths, and every
 * context offset before a checksum or a TSO header field is written.  Descriptors are copied
 * out of guest memory before they are looked at, so a guest rewriting them meanwhile changes
 * nothing.  Under e->lock.
 *
 * Thread: the transmit worker (end of this file).  A TDT write only kicks it, so the vCPU is
 * back in the guest while the frames go through the backend (slirp costs microseconds a
 * frame): the worker walks the ring under e->lock exactly as the writer did (descriptors
 * written back, statistics, TXDW/TXQE/TXD_LOW and the TIDV/TADV timers at the same points),
 * collects the frames for the backend in txq, and sends them in order after dropping the
 * lock.  A walk stops at a packet boundary once TX_BATCH_BYTES are queued, so a ring of TSO
 * packets never holds much memory.  Pause drains (every whole packet before TDT walked and
 * sent) and stops the worker, so a snapshot holds no transmit work and its TDH is what was
 * processed; resume starts it again.  Frames a reset catches in a batch already taken go out,
 * as frames in the chip's FIFO would; nothing is walked after it.  With txthread=off (the
 * default; unit tests and the fuzzer set it too) there is no worker and the kick walks and
 * sends at once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dev/net/e1000.h"
#include "dev/net/net_csum.h"
#include "dev/pci/pci.h"
#include "log.h"
#include "vm.h"

#define TCP_FIN 0x01
#define TCP_PSH 0x08
#define TX_BATCH_BYTES (256 * 1024) /* a walk stops at a packet boundary past this */

struct txd {
	uint64_t addr;
	uint32_t lower, upper;
};

/* What the descriptors of one packet asked for. */
struct txpkt {
	bool legacy;	 /* offloads from a legacy descriptor */
	bool tso;	 /* part of the TCP segmentation context */
	bool bad;	 /* a buffer outside RAM, or too long: dropped */
	uint32_t popts;	 /* POPTS of the first data descriptor */
	uint32_t lower;	 /* command of the descriptor that decides VLE/IC (EOP or first) */
	uint32_t upper;	 /* its CSS/CSO/VLAN */
	uint32_t len;	 /* bytes assembled in tx_buf + 4 (non-TSO) */
	bool have_first; /* the first data descriptor was seen */
	/* TSO progress */
	uint32_t hdr_got; /* header bytes collected */
	uint32_t seg_len; /* payload bytes in the segment being built */
	uint32_t sent;	  /* payload bytes in segments already sent */
	uint32_t segno;
	uint32_t seq0;
	uint16_t id0;
	bool tso_ok;
};

static uint16_t get_be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)get_be16(p) << 16 | get_be16(p + 2);
}

static void put_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put_be32(uint8_t *p, uint32_t v)
{
	put_be16(p, (uint16_t)(v >> 16));
	put_be16(p + 2, (uint16_t)v);
}

static void txd_read(const uint8_t *ring, uint32_t i, struct txd *d)
{
	memcpy(&d->addr, ring + 16 * i, 8);
	memcpy(&d->lower, ring + 16 * i + E1000_TXD_LOWER, 4);
	memcpy(&d->upper, ring + 16 * i + E1000_TXD_UPPER, 4);
}

static bool txd_is_ext(const struct txd *d)
{
	return d->lower & E1000_TXD_CMD_DEXT;
}

static bool txd_is_ctx(const struct txd *d)
{
	return txd_is_ext(d) && (d->lower & E1000_TXD_DTYP_MASK) == E1000_TXD_DTYP_CTX;
}

static bool txd_is_data(const struct txd *d)
{
	return txd_is_ext(d) && (d->lower & E1000_TXD_DTYP_MASK) == E1000_TXD_DTYP_DATA;
}

/* Buffer length: 16 bits in a legacy descriptor, 20 in a data descriptor. */
static uint32_t txd_len(const struct txd *d)
{
	if (!txd_is_ext(d))
		return d->lower & 0xFFFF;
	return txd_is_data(d) ? d->lower & 0xFFFFF : 0;
}

/* ---- checksums ---- */

/*
 * Write the checksum of [css, cse] (cse 0: to the end) at cso, big endian, adding @extra
 * (the TCP/UDP length TSO folds into the pseudo header).  Skipped, as the SDM says, when the
 * offsets fall outside the packet.
 */
static void csum_insert(uint8_t *p, uint32_t len, uint32_t css, uint32_t cse, uint32_t cso,
			uint32_t extra, bool udp)
{
	uint32_t end = cse && cse < len ? cse + 1 : len;
	uint16_t c;

	if (css >= end || cso > len - 2 || len < 2)
		return;
	c = csum_finish(csum_add(extra, p + css, end - css));
	if (udp && !c)
		c = 0xFFFF; /* RFC 768: a computed zero goes out as all ones */
	put_be16(p + cso, c);
}

static void ctx_csums(const struct e1000_txctx *c, uint32_t popts, uint8_t *p, uint32_t len,
		      uint32_t l4extra)
{
	if (popts & E1000_TXD_POPTS_IXSM)
		csum_insert(p, len, c->ipcss, c->ipcse, c->ipcso, 0, false);
	if (popts & E1000_TXD_POPTS_TXSM)
		csum_insert(p, len, c->tucss, c->tucse, c->tucso, l4extra,
			    !(c->tucmd & (E1000_TXC_TUCMD_TCP >> 24)));
}

/* ---- sending ---- */

/*
 * Finish a packet at tx_buf + 4: VLAN tag insertion (VLE with CTRL.VME), padding to the
 * minimum frame (TCTL.PSP), statistics, then the wire.
 */
static void tx_send(struct e1000 *e, uint32_t len, bool vle, uint16_t vlan)
{
	uint8_t *f = e->tx_buf + 4;

	if (len < 14)
		return; /* not even an Ethernet header: nothing a wire could carry */
	if (vle && (e->s.reg[R_CTRL] & E1000_CTRL_VME)) {
		memmove(f - 4, f, 12);
		f -= 4;
		put_be16(f + 12, (uint16_t)e->s.reg[R_VET]);
		put_be16(f + 14, vlan);
		len += 4;
	}
	if (len < 60 && (e->s.reg[R_TCTL] & E1000_TCTL_PSP)) {
		memset(f + len, 0, 60 - len);
		len = 60;
	}
	e1000_wire_out(e, f, len);
}

/* ---- TCP segmentation ---- */

/* Is the TSO context one whose header fields lie inside the header it copies? */
static bool tso_context_ok(const struct e1000_txctx *c, uint32_t popts)
{
	bool tcp = c->tucmd & (E1000_TXC_TUCMD_TCP >> 24);
	bool ipv4 = c->tucmd & (E1000_TXC_TUCMD_IP >> 24);

	if (!c->hdrlen || !c->mss || c->hdrlen + (uint32_t)c->mss > E1000_TX_MAX)
		return false;
	/* IPv4 total length and id, or the IPv6 payload length; TCP flags or UDP length. */
	if (c->ipcss + 6U > c->hdrlen || c->tucss + (tcp ? 14U : 6U) > c->hdrlen)
		return false;
	/* The IPv6 payload length is what follows its 40-byte header. */
	if (!ipv4 && c->ipcss + 40U > c->hdrlen)
		return false;
	if ((popts & E1000_TXD_POPTS_IXSM) && c->ipcso + 2U > c->hdrlen)
		return false;
	if ((popts & E1000_TXD_POPTS_TXSM) && c->tucso + 2U > c->hdrlen)
		return false;
	return true;
}

/* Send the segment in tx_buf + 4: its header fields, then its checksums. */
static void tso_emit(struct e1000 *e, struct txpkt *t, bool last)
{
	const struct e1000_txctx *c = &e->s.ctx[E1000_CTX_TSO];
	uint8_t *f = e->tx_buf + 4;
	uint32_t total = c->hdrlen + t->seg_len;
	bool tcp = c->tucmd & (E1000_TXC_TUCMD_TCP >> 24);

	memcpy(f, e->tx_hdr, c->hdrlen);
	if (c->tucmd & (E1000_TXC_TUCMD_IP >> 24)) {
		put_be16(f + c->ipcss + 2, (uint16_t)(total - c->ipcss));
		put_be16(f + c->ipcss + 4, (uint16_t)(t->id0 + t->segno));
	} else {
		/* IPv6: the payload length excludes the fixed 40-byte header. */
		put_be16(f + c->ipcss + 4, (uint16_t)(total - c->ipcss - 40));
	}
	if (tcp) {
		put_be32(f + c->tucss + 4, t->seq0 + t->sent);
		if (!last)
			f[c->tucss + 13] &= (uint8_t) ~(TCP_FIN | TCP_PSH);
	} else {
		put_be16(f + c->tucss + 4, (uint16_t)(total - c->tucss));
	}
	/* The guest's pseudo-header sum leaves out the length: each segment adds its own. */
	ctx_csums(c, t->popts, f, total, total - c->tucss);
	tx_send(e, total, t->lower & E1000_TXD_CMD_VLE, (uint16_t)(t->upper >> 16));
	t->sent += t->seg_len;
	t->seg_len = 0;
	t->segno++;
}

/* Feed @len bytes of a TSO packet: header first, then payload cut at MSS. */
static void tso_feed(struct e1000 *e, struct txpkt *t, const uint8_t *p, uint32_t len)
{
	const struct e1000_txctx *c = &e->s.ctx[E1000_CTX_TSO];

	if (t->hdr_got < c->hdrlen) {
		uint32_t n = c->hdrlen - t->hdr_got < len ? c->hdrlen - t->hdr_got : len;

		memcpy(e->tx_hdr + t->hdr_got, p, n);
		t->hdr_got += n;
		p += n;
		len -= n;
		if (t->hdr_got == c->hdrlen) {
			t->seq0 = get_be32(e->tx_hdr + c->tucss + 4);
			t->id0 = get_be16(e->tx_hdr + c->ipcss + 4);
		}
	}
	while (len) {
		uint32_t room = c->mss - t->seg_len, n = len < room ? len : room;

		if (t->sent + t->seg_len >= c->paylen) {
			/* More data than PAYLEN announced: the context ends here. */
			t->tso_ok = false;
			return;
		}
		if (t->sent + t->seg_len + n > c->paylen)
			n = c->paylen - t->sent - t->seg_len;
		memcpy(e->tx_buf + 4 + c->hdrlen + t->seg_len, p, n);
		t->seg_len += n;
		p += n;
		len -= n;
		if (t->seg_len == c->mss || t->sent + t->seg_len == c->paylen)
			tso_emit(e, t, t->sent + t->seg_len == c->paylen);
	}
}

/* ---- descriptors ---- */

/* Write DD back when asked (RS, or RPS), and start the transmit interrupt or its delay. */
static void txd_done(struct e1000 *e, uint8_t *ring, uint32_t i, const struct txd *d)
{
	uint8_t *sta = ring + 16 * i + E1000_TXD_UPPER;

	if (!(d->lower & (E1000_TXD_CMD_RS | E1000_TXD_CMD_RPS)))
		return;
	*sta = (uint8_t)((*sta & 0xF0) | E1000_TXD_STAT_DD);
	if ((d->lower & E1000_TXD_CMD_IDE) && (e->s.reg[R_TIDV] & 0xFFFF)) {
		/* TIDV restarts with every descriptor; TADV bounds the wait from the first. */
		e1000_timer_start(e, TM_TIDV, (e->s.reg[R_TIDV] & 0xFFFF) * 1024ULL, true);
		if (e->s.reg[R_TADV] & 0xFFFF)
			e1000_timer_start(e, TM_TADV, (e->s.reg[R_TADV] & 0xFFFF) * 1024ULL, false);
	} else {
		e1000_timer_stop(e, TM_TIDV);
		e1000_timer_stop(e, TM_TADV);
		e1000_raise(e, E1000_ICR_TXDW);
	}
}

static void ctx_load(struct e1000 *e, const struct txd *d)
{
	struct e1000_txctx *c =
		&e->s.ctx[d->lower & E1000_TXC_TUCMD_TSE ? E1000_CTX_TSO : E1000_CTX_NORMAL];

	c->ipcss = (uint8_t)d->addr;
	c->ipcso = (uint8_t)(d->addr >> 8);
	c->ipcse = (uint16_t)(d->addr >> 16);
	c->tucss = (uint8_t)(d->addr >> 32);
	c->tucso = (uint8_t)(d->addr >> 40);
	c->tucse = (uint16_t)(d->addr >> 48);
	c->paylen = d->lower & E1000_TXC_PAYLEN_MASK;
	c->tucmd = (uint8_t)(d->lower >> 24);
	c->hdrlen = (uint8_t)(d->upper >> 8);
	c->mss = (uint16_t)(d->upper >> 16);
}

/* The first data-carrying descriptor of a packet decides its kind. */
static void pkt_first(struct e1000 *e, struct txpkt *t, const struct txd *d)
{
	t->have_first = true;
	t->legacy = !txd_is_ext(d);
	t->tso = txd_is_data(d) && (d->lower & E1000_TXD_CMD_TSE);
	t->popts = txd_is_data(d) ? d->upper : 0;
	if (t->tso) {
		/* TSO: VLE and the VLAN tag come from the first descriptor. */
		t->lower = d->lower;
		t->upper = d->upper;
		t->tso_ok = tso_context_ok(&e->s.ctx[E1000_CTX_TSO], t->popts);
		e1000_stat(e, E1000_ST_TSCTC, 1);
	}
}

static void pkt_data(struct e1000 *e, struct txpkt *t, const struct txd *d)
{
	uint32_t len = txd_len(d);
	const uint8_t *p;

	if (!len || !d->addr || t->bad)
		return;
	p = vm_gpa(e->vm, d->addr, len);
	if (!p) {
		t->bad = true; /* a buffer outside guest RAM: the packet is dropped */
		return;
	}
	if (t->tso) {
		if (t->tso_ok)
			tso_feed(e, t, p, len);
		return;
	}
	if (len > E1000_TX_MAX - t->len) {
		t->bad = true; /* longer than any packet the unit assembles */
		return;
	}
	memcpy(e->tx_buf + 4 + t->len, p, len);
	t->len += len;
}

/* The offloads of a finished non-TSO packet, then the wire. */
static void pkt_finish(struct e1000 *e, struct txpkt *t)
{
	uint8_t *f = e->tx_buf + 4;

	if (t->legacy) {
		if (t->lower & E1000_TXD_CMD_IC) {
			uint32_t css = (t->upper >> 8) & 0xFF, cso = (t->lower >> 16) & 0xFF;

			csum_insert(f, t->len, css, 0, cso, 0, false);
		}
	} else {
		ctx_csums(&e->s.ctx[E1000_CTX_NORMAL], t->popts, f, t->len, 0);
	}
	tx_send(e, t->len, t->lower & E1000_TXD_CMD_VLE, (uint16_t)(t->upper >> 16));
}

/* Descriptors [head, end] are one packet (end has EOP). */
static void tx_packet(struct e1000 *e, uint8_t *ring, uint32_t n, uint32_t head, uint32_t end)
{
	struct txpkt t = { .len = 0 };

	for (uint32_t i = head;; i = (i + 1) % n) {
		struct txd d;

		txd_read(ring, i, &d);
		if (txd_is_ctx(&d)) {
			ctx_load(e, &d);
		} else if (txd_is_data(&d) || !txd_is_ext(&d)) {
			if (!t.have_first)
				pkt_first(e, &t, &d);
			pkt_data(e, &t, &d);
			if (!t.tso && (d.lower & E1000_TXD_CMD_EOP)) {
				t.lower = d.lower;
				t.upper = d.upper;
			}
		}
		/* Descriptors of a reserved type transfer nothing. */
		txd_done(e, ring, i, &d);
		if (i == end)
			break;
	}
	if (!t.have_first)
		return;
	if (t.tso) {
		const struct e1000_txctx *c = &e->s.ctx[E1000_CTX_TSO];

		if (!t.bad && t.tso_ok && t.seg_len)
			tso_emit(e, &t, true);
		if (t.bad || !t.tso_ok || t.sent != c->paylen || t.hdr_got != c->hdrlen)
			e1000_stat(e, E1000_ST_TSCTFC, 1);
		return;
	}
	if (!t.bad)
		pkt_finish(e, &t);
}

/* The index of the EOP descriptor of the packet starting at @head, if it is before @tail. */
static bool find_eop(const uint8_t *ring, uint32_t n, uint32_t head, uint32_t tail, uint32_t *end)
{
	for (uint32_t i = head; i != tail; i = (i + 1) % n) {
		struct txd d;

		txd_read(ring, i, &d);
		if (!txd_is_ctx(&d) && (d.lower & E1000_TXD_CMD_EOP)) {
			*end = i;
			return true;
		}
	}
	return false;
}

void e1000_tx_run(struct e1000 *e)
{
	uint32_t n, head, tail, end, lwthresh, start;
	uint8_t *ring;

	if (!(e->s.reg[R_TCTL] & E1000_TCTL_EN) || e->paused)
		return;
	ring = e1000_ring(e, true, &n);
	if (!ring)
		return;
	head = e->s.reg[R_TDH];
	tail = e->s.reg[R_TDT];
	start = head;
	while (head != tail) {
		struct txd d;

		txd_read(ring, head, &d);
		if (txd_is_ctx(&d)) {
			ctx_load(e, &d);
			txd_done(e, ring, head, &d);
			head = (head + 1) % n;
			continue;
		}
		/* A packet goes when all of it is there; until then it waits for TDT. */
		if (!find_eop(ring, n, head, tail, &end))
			break;
		tx_packet(e, ring, n, head, end);
		head = (end + 1) % n;
		if (e->tx_running && e->txq.bytes >= TX_BATCH_BYTES) {
			e->tx_kick = true; /* send this batch first, then walk on */
			break;
		}
	}
	e->s.reg[R_TDH] = head;
	if (head == start)
		return;
	if (head == tail)
		e1000_raise(e, E1000_ICR_TXQE);
	lwthresh = (e->s.reg[R_TXDCTL] >> E1000_TXDCTL_LWTHRESH_SHIFT) * 8;
	if (lwthresh && (tail + n - head) % n < lwthresh)
		e1000_raise(e, E1000_ICR_TXD_LOW);
}

/* ---- the worker ---- */

void e1000_tx_backend(struct e1000 *e, const uint8_t *frame, size_t len)
{
	/* A frame the queue cannot take is lost, as one the backend refuses would be. */
	if (e->tx_running)
		net_rxq_push(&e->txq, frame, len);
	else
		net_backend_send(e->nb, frame, len);
}

/* Send a batch taken out of txq, in order, without e->lock. */
static void tx_send_batch(struct e1000 *e, struct net_frame *f)
{
	while (f) {
		struct net_frame *next = f->next;

		net_backend_send(e->nb, f->data, f->len);
		free(f);
		f = next;
	}
}

static void *tx_worker(void *arg)
{
	struct e1000 *e = arg;

	pthread_mutex_lock(&e->lock);
	while (!e->tx_stop) {
		struct net_frame *batch;

		if (!e->tx_kick) {
			pthread_cond_wait(&e->tx_cv, &e->lock);
			continue;
		}
		e->tx_kick = false;
		e->tx_busy = true;
		e1000_tx_run(e);
		batch = e->txq.head;
		net_rxq_init(&e->txq, e->txq.max_frames, e->txq.max_bytes);
		pthread_mutex_unlock(&e->lock);
		tx_send_batch(e, batch);
		pthread_mutex_lock(&e->lock);
		e->tx_busy = false;
		if (!e->tx_kick)
			pthread_cond_broadcast(&e->tx_idle_cv);
	}
	pthread_mutex_unlock(&e->lock);
	return NULL;
}

void e1000_tx_kick(struct e1000 *e)
{
	if (!e->tx_running) {
		e1000_tx_run(e);
		return;
	}
	e->tx_kick = true;
	pthread_cond_signal(&e->tx_cv);
}

void e1000_tx_drain(struct e1000 *e)
{
	if (!e->tx_running) {
		e1000_tx_run(e);
		return;
	}
	/* A walk the worker is in may have stopped for its batch: it kicks itself again. */
	e1000_tx_kick(e);
	while (e->tx_kick || e->tx_busy)
		pthread_cond_wait(&e->tx_idle_cv, &e->lock);
}

int e1000_tx_start(struct e1000 *e)
{
	char name[16];
	int ret;

	if (!e->tx_thread_opt || e->tx_running)
		return 0;
	e->tx_stop = false;
	e->tx_kick = false;
	ret = pthread_create(&e->tx_tid, NULL, tx_worker, e);
	if (ret) {
		log_warn("%s: cannot start the transmit thread (%s); transmitting on the vCPU "
			 "thread",
			 e->pd->dev.id, strerror(ret));
		return -ret;
	}
	snprintf(name, sizeof(name), "e1000-tx%u", e->pd->slot);
	pthread_setname_np(e->tx_tid, name);
	e->tx_running = true;
	return 0;
}

void e1000_tx_stop(struct e1000 *e)
{
	pthread_mutex_lock(&e->lock);
	if (!e->tx_running) {
		pthread_mutex_unlock(&e->lock);
		return;
	}
	e1000_tx_drain(e);
	e->tx_stop = true;
	e->tx_running = false; /* from here the writer walks, and sends, itself */
	pthread_cond_signal(&e->tx_cv);
	pthread_mutex_unlock(&e->lock);
	pthread_join(e->tx_tid, NULL);
}
