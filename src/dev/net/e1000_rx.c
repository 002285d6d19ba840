// SPDX-License-Identifier: BSD-2-Clause
/*
 * e1000 receive (SDM 3.2, 13.4.22-13.5): length checks, the address filter (16 exact
 * addresses, the 4096-bit multicast hash, broadcast, promiscuous modes), VLAN filtering and
 * tag stripping, the receive FIFO, descriptor write-back with the FCS when it is not
 * stripped, the packet checksum and the IP/TCP/UDP checksum offload (RXCSUM), and the
 * receive interrupts (RXT0 with the RDTR and RADV delays, RXDMT0, RXO, SRPD).
 *
 * A frame that passes the filter goes straight into the ring when descriptors are free;
 * otherwise it waits in the FIFO, bounded by the receive share of the packet buffer
 * (PBA.RXA KiB, 48 by default) as on the chip, and beyond that it is dropped and counted
 * (MPC, RXO).  A frame is written only when enough descriptors are free for all of it, so a
 * descriptor never holds half a frame between two calls.  Under e->lock.
 */
#include <string.h>

#include "dev/net/e1000.h"
#include "dev/net/net_csum.h"
#include "vm.h"

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define IPPROTO_TCP_ 6
#define IPPROTO_UDP_ 17

static uint16_t get_be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static void put_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static bool is_tagged(const struct e1000 *e, const uint8_t *f, size_t len)
{
	return len >= 18 && get_be16(f + 12) == (uint16_t)e->s.reg[R_VET];
}

/* ---- the filter ---- */

/* The 12 bits of the destination address that index the multicast table (RCTL.MO). */
static unsigned mta_index(const struct e1000 *e, const uint8_t *da)
{
	static const unsigned shift[4] = { 4, 3, 2, 0 }; /* bits 47:36, 46:35, 45:34, 43:32 */
	unsigned mo = (e->s.reg[R_RCTL] >> E1000_RCTL_MO_SHIFT) & 3;

	return ((unsigned)(da[4] | da[5] << 8) >> shift[mo]) & 0xFFF;
}

/* An exact match in the receive address table: destination (AS 00) or source (AS 01). */
static bool ra_match(const struct e1000 *e, const uint8_t *f)
{
	const uint32_t *ra = e1000_table_c(e, T_RA);

	for (unsigned i = 0; i < 16; i++) {
		uint32_t lo = ra[2 * i], hi = ra[2 * i + 1];
		unsigned as = (hi >> E1000_RAH_AS_SHIFT) & 3;
		const uint8_t *a = as == 0 ? f : f + 6;
		uint8_t want[6] = { (uint8_t)lo,	 (uint8_t)(lo >> 8), (uint8_t)(lo >> 16),
				    (uint8_t)(lo >> 24), (uint8_t)hi,	     (uint8_t)(hi >> 8) };

		if ((hi & E1000_RAH_AV) && as < 2 && !memcmp(a, want, 6))
			return true;
	}
	return false;
}

static bool vlan_pass(const struct e1000 *e, const uint8_t *f, size_t len)
{
	uint32_t rctl = e->s.reg[R_RCTL];
	uint16_t tci;

	if (!(rctl & E1000_RCTL_VFE) || !is_tagged(e, f, len))
		return true;
	tci = get_be16(f + 14);
	if ((rctl & E1000_RCTL_CFIEN) && !!(tci & 0x1000) != !!(rctl & E1000_RCTL_CFI))
		return false;
	return e1000_table_c(e, T_VFTA)[(tci & 0xFFF) >> 5] >> (tci & 31) & 1;
}

bool e1000_rx_filter(const struct e1000 *e, const uint8_t *f, size_t len, bool *pif)
{
	static const uint8_t bcast[6] = { 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF };
	uint32_t rctl = e->s.reg[R_RCTL];
	unsigned h;

	*pif = false;
	if (!vlan_pass(e, f, len))
		return false;
	if (ra_match(e, f))
		return true;
	if (!memcmp(f, bcast, 6) && (rctl & (E1000_RCTL_BAM | E1000_RCTL_MPE)))
		return true;
	if (f[0] & 1) {
		if (rctl & E1000_RCTL_MPE)
			return true;
		h = mta_index(e, f);
		*pif = e1000_table_c(e, T_MTA)[h >> 5] >> (h & 31) & 1;
		return *pif;
	}
	return rctl & E1000_RCTL_UPE;
}

/* ---- checksum offload ---- */

static uint64_t pseudo4(const uint8_t *ip, uint8_t proto, uint32_t l4len)
{
	return csum_add(0, ip + 12, 8) + proto + l4len;
}

static uint64_t pseudo6(const uint8_t *ip, uint8_t proto, uint32_t l4len)
{
	return csum_add(0, ip + 8, 32) + proto + l4len;
}

/* Verify a TCP or UDP checksum: TCPCS, and TCPE when it is wrong. */
static void l4_check(const uint8_t *l4, uint32_t l4len, uint8_t proto, uint64_t pseudo,
		     uint8_t *status, uint8_t *errors)
{
	if (proto != IPPROTO_TCP_ && proto != IPPROTO_UDP_)
		return;
	if (l4len < (proto == IPPROTO_TCP_ ? 20U : 8U))
		return;
	if (proto == IPPROTO_UDP_ && !get_be16(l4 + 6))
		return; /* UDP over IPv4 without a checksum: nothing to verify */
	*status |= E1000_RXD_STAT_TCPCS;
	if (csum_fold(csum_add(pseudo, l4, l4len)) != 0xFFFF)
		*errors |= E1000_RXD_ERR_TCPE;
}

static void rx_csum_ipv4(uint32_t rxcsum, const uint8_t *ip, size_t avail, uint8_t *status,
			 uint8_t *errors)
{
	uint32_t ihl, tot;

	if (avail < 20 || ip[0] >> 4 != 4)
		return;
	ihl = (ip[0] & 15) * 4U;
	tot = get_be16(ip + 2);
	if (ihl < 20 || tot < ihl || tot > avail)
		return;
	if (rxcsum & E1000_RXCSUM_IPOFL) {
		*status |= E1000_RXD_STAT_IPCS;
		if (csum_fold(csum_add(0, ip, ihl)) != 0xFFFF)
			*errors |= E1000_RXD_ERR_IPE;
	}
	if ((rxcsum & E1000_RXCSUM_TUOFL) && !(get_be16(ip + 6) & 0x3FFF)) /* not a fragment */
		l4_check(ip + ihl, tot - ihl, ip[9], pseudo4(ip, ip[9], tot - ihl), status, errors);
}

static void rx_csum_ipv6(uint32_t rxcsum, const uint8_t *ip, size_t avail, uint8_t *status,
			 uint8_t *errors)
{
	uint32_t plen;

	if (avail < 40 || ip[0] >> 4 != 6 || !(rxcsum & E1000_RXCSUM_TUOFL))
		return;
	plen = get_be16(ip + 4);
	if (plen > avail - 40)
		return;
	/* Only TCP or UDP right after the fixed header: extension headers are not parsed. */
	if (ip[6] == IPPROTO_UDP_ && plen >= 8 && !get_be16(ip + 40 + 6)) {
		*status |= E1000_RXD_STAT_TCPCS;
		*errors |= E1000_RXD_ERR_TCPE; /* a zero UDP checksum is invalid over IPv6 */
		return;
	}
	l4_check(ip + 40, plen, ip[6], pseudo6(ip, ip[6], plen), status, errors);
}

/* Status and error bits of the checksum offload for a frame as delivered. */
static void rx_csum(const struct e1000 *e, const uint8_t *f, size_t len, uint8_t *status,
		    uint8_t *errors)
{
	uint32_t rxcsum = e->s.reg[R_RXCSUM];
	size_t l3 = 14;
	uint16_t type;

	if (!(rxcsum & (E1000_RXCSUM_IPOFL | E1000_RXCSUM_TUOFL))) {
		*status |= E1000_RXD_STAT_IXSM;
		return;
	}
	type = get_be16(f + 12);
	if (is_tagged(e, f, len)) {
		l3 = 18;
		type = get_be16(f + 16);
	}
	if (type == ETH_P_IP)
		rx_csum_ipv4(rxcsum, f + l3, len - l3, status, errors);
	else if (type == ETH_P_IPV6)
		rx_csum_ipv6(rxcsum, f + l3, len - l3, status, errors);
}

/* ---- the ring ---- */

static uint32_t rx_bufsize(const struct e1000 *e)
{
	static const uint32_t std[4] = { 2048, 1024, 512, 256 };
	static const uint32_t ext[4] = { 2048, 16384, 8192,
					 4096 }; /* BSEX with BSIZE 00: reserved */
	uint32_t rctl = e->s.reg[R_RCTL];
	unsigned bs = (rctl >> E1000_RCTL_BSIZE_SHIFT) & 3;

	return rctl & E1000_RCTL_BSEX ? ext[bs] : std[bs];
}

/* The packet checksum: the ones' complement sum from RXCSUM.PCSS to the end of the FCS. */
static uint16_t packet_csum(const struct e1000 *e, const uint8_t *f, size_t len, const uint8_t *fcs,
			    size_t fcs_len)
{
	size_t pcss = e->s.reg[R_RXCSUM] & E1000_RXCSUM_PCSS_MASK;
	uint64_t sum = 0;

	if (pcss < len)
		sum = csum_add(0, f + pcss, len - pcss);
	if (fcs_len && pcss < len + fcs_len) {
		size_t skip = pcss > len ? pcss - len : 0;
		uint16_t s = csum_fold(csum_add(0, fcs + skip, fcs_len - skip));

		/* Bytes that start at an odd offset of the range swap halves in the sum. */
		if ((len > pcss ? len - pcss : 0) & 1)
			s = (uint16_t)(s << 8 | s >> 8);
		sum += s;
	}
	return csum_fold(sum);
}

static void rx_stats(struct e1000 *e, const uint8_t *f, uint32_t wire_len)
{
	static const uint32_t bound[] = { 64, 127, 255, 511, 1023, 1522 };
	static const unsigned reg[] = { E1000_ST_PRC64,	 E1000_ST_PRC127,  E1000_ST_PRC255,
					E1000_ST_PRC511, E1000_ST_PRC1023, E1000_ST_PRC1522 };

	e1000_stat(e, E1000_ST_GPRC, 1);
	e1000_stat(e, E1000_ST_TPR, 1);
	e1000_stat64(e, E1000_ST_GORCL, wire_len);
	e1000_stat64(e, E1000_ST_TORL, wire_len);
	for (unsigned i = 0; i < 6; i++) {
		if (wire_len <= bound[i]) {
			e1000_stat(e, reg[i], 1);
			break;
		}
	}
	if (f[0] & 1)
		e1000_stat(e,
			   memcmp(f, "\xFF\xFF\xFF\xFF\xFF\xFF", 6) ? E1000_ST_MPRC : E1000_ST_BPRC,
			   1);
}

/* The interrupts that follow a frame written to the ring. */
static void rx_interrupts(struct e1000 *e, uint32_t n, uint32_t wire_len)
{
	uint32_t rdtr = e->s.reg[R_RDTR] & 0xFFFF, radv = e->s.reg[R_RADV] & 0xFFFF;
	uint32_t free_desc = (e->s.reg[R_RDT] + n - e->s.reg[R_RDH]) % n;
	unsigned rdmts = (e->s.reg[R_RCTL] >> E1000_RCTL_RDMTS_SHIFT) & 3;
	uint32_t srpd = e->s.reg[R_RSRPD] & 0xFFF;

	if (!rdtr) {
		e1000_raise(e, E1000_ICR_RXT0);
	} else {
		/* RDTR restarts with every frame; RADV bounds the wait from the first. */
		e1000_timer_start(e, TM_RDTR, rdtr * 1024ULL, true);
		if (radv)
			e1000_timer_start(e, TM_RADV, radv * 1024ULL, false);
	}
	/* Free descriptors down to 1/2, 1/4 or 1/8 of the ring (RDMTS 11 is reserved). */
	if (free_desc <= n >> (1 + (rdmts < 3 ? rdmts : 2)))
		e1000_raise(e, E1000_ICR_RXDMT0);
	if (srpd && wire_len <= srpd)
		e1000_raise(e, E1000_ICR_SRPD);
}

/* Copy [off, off + n) of the frame followed by its FCS into @dst. */
static void rx_copy(uint8_t *dst, const uint8_t *f, size_t len, const uint8_t *fcs, size_t off,
		    size_t n)
{
	if (off < len) {
		size_t m = len - off < n ? len - off : n;

		memcpy(dst, f + off, m);
		dst += m;
		off += m;
		n -= m;
	}
	if (n)
		memcpy(dst, fcs + (off - len), n);
}

/*
 * Write one frame (VLAN tag already removed when stripped, already padded) into the ring.
 * Returns true when the frame left the FIFO's hands (written, or never writable), false when
 * it waits for descriptors.
 */
static bool rx_write(struct e1000 *e, const uint8_t *f, size_t len, bool vp, uint16_t tci, bool pif)
{
	uint32_t n, head, bufsize = rx_bufsize(e), need, avail, crc;
	uint8_t *ring = e1000_ring(e, false, &n), fcs[4], status = 0, errors = 0;
	size_t fcs_len = e->s.reg[R_RCTL] & E1000_RCTL_SECRC ? 0 : 4, total = len + fcs_len;
	uint16_t pcsum;
	bool bad = false;

	if (!ring)
		return false; /* no usable ring: wait until the driver sets one up */
	head = e->s.reg[R_RDH];
	need = (uint32_t)((total + bufsize - 1) / bufsize);
	avail = (e->s.reg[R_RDT] + n - head) % n;
	if (need >= n) {
		e1000_stat(e, E1000_ST_MPC, 1); /* more buffers than the ring can ever hold */
		return true;
	}
	if (need > avail)
		return false;
	if (fcs_len) {
		crc = eth_crc32(f, len);
		memcpy(fcs, &crc, 4); /* the FCS goes out least significant byte first */
	}
	rx_csum(e, f, len, &status, &errors);
	if (vp)
		status |= E1000_RXD_STAT_VP;
	if (pif)
		status |= E1000_RXD_STAT_PIF;
	pcsum = packet_csum(e, f, len, fcs, fcs_len);
	for (uint32_t k = 0; k < need; k++) {
		uint8_t *d = ring + 16 * ((head + k) % n), *dst;
		uint64_t addr;
		size_t off = (size_t)k * bufsize, m = total - off < bufsize ? total - off : bufsize;
		bool last = k == need - 1;
		uint8_t st = E1000_RXD_STAT_DD;

		memcpy(&addr, d + E1000_RXD_ADDR, 8);
		dst = vm_gpa(e->vm, addr, m);
		if (dst)
			rx_copy(dst, f, len, fcs, off, m);
		else
			bad = true; /* a buffer outside RAM: the frame is reported broken */
		put_le16(d + E1000_RXD_LEN, (uint16_t)m);
		put_le16(d + E1000_RXD_CSUM, k ? 0 : pcsum);
		d[E1000_RXD_ERRORS] = last ? (uint8_t)(errors | (bad ? E1000_RXD_ERR_RXE : 0)) : 0;
		put_le16(d + E1000_RXD_SPECIAL, last && vp ? tci : 0);
		if (last)
			st |= (uint8_t)(status | E1000_RXD_STAT_EOP);
		/* DD last, released: a driver polling it then sees the data and the length. */
		__atomic_store_n(d + E1000_RXD_STATUS, st, __ATOMIC_RELEASE);
	}
	e->s.reg[R_RDH] = (head + need) % n;
	rx_stats(e, f, (uint32_t)(len + 4));
	rx_interrupts(e, n, (uint32_t)total);
	return true;
}

/* Strip the VLAN tag (CTRL.VME) and pad to the minimum frame, then write it. */
static bool rx_deliver(struct e1000 *e, const uint8_t *f, size_t len)
{
	bool vp = false, pif;
	uint16_t tci = 0;

	/* The filter ran when the frame arrived; PIF is recomputed, the tables may not move. */
	e1000_rx_filter(e, f, len, &pif);
	if ((e->s.reg[R_CTRL] & E1000_CTRL_VME) && is_tagged(e, f, len)) {
		vp = true;
		tci = get_be16(f + 14);
		memcpy(e->rx_buf, f, 12);
		memcpy(e->rx_buf + 12, f + 16, len - 16);
		f = e->rx_buf;
		len -= 4;
	}
	if (len < 60) {
		if (f != e->rx_buf)
			memcpy(e->rx_buf, f, len);
		memset(e->rx_buf + len, 0, 60 - len);
		f = e->rx_buf;
		len = 60;
	}
	return rx_write(e, f, len, vp, tci, pif);
}

void e1000_rx_flush(struct e1000 *e)
{
	const struct net_frame *f;

	while (!e->paused && (e->s.reg[R_RCTL] & E1000_RCTL_EN) && (f = net_rxq_peek(&e->fifo)) &&
	       rx_deliver(e, f->data, f->len))
		net_rxq_pop(&e->fifo);
}

void e1000_rx_input(struct e1000 *e, const uint8_t *f, size_t len)
{
	uint32_t rctl = e->s.reg[R_RCTL];
	size_t max;
	bool pif;

	if (!(rctl & E1000_RCTL_EN))
		return; /* the receiver is off: nothing is received */
	if (len < 14) {
		e1000_stat(e, E1000_ST_RUC, 1);
		return;
	}
	max = rctl & E1000_RCTL_LPE ? E1000_RX_MAX : E1000_RX_STD + (is_tagged(e, f, len) ? 4 : 0);
	if (len > max) {
		e1000_stat(e, E1000_ST_ROC, 1);
		return;
	}
	if (!e1000_rx_filter(e, f, len, &pif))
		return;
	if (!e->paused && !net_rxq_peek(&e->fifo) && rx_deliver(e, f, len))
		return;
	if (!e->paused)
		e1000_stat(e, E1000_ST_RNBC, 1); /* held for want of descriptors */
	e->fifo.max_bytes = (size_t)((e->s.reg[R_PBA] & E1000_PBA_RXA_MASK) ?: 1) * 1024;
	if (net_rxq_push(&e->fifo, f, len)) {
		e1000_stat(e, E1000_ST_MPC, 1);
		e1000_raise(e, E1000_ICR_RXO);
	}
}
