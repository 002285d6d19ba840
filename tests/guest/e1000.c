// SPDX-License-Identifier: MIT
/*
 * khyve test guest, ring 3: an Intel 8254x (82545EM, 8086:100F) driver,
 * polled, written from the PCI/PCI-X Family of Gigabit Ethernet
 * Controllers Software Developer's Manual as a real driver is (the
 * numbers here are the manual's, not khyve's header). Two users:
 *
 *  - the network modes (net.c) through e1000_nic_open(): reset through
 *    the I/O window as Linux does, the MAC from the EEPROM (EERD), the
 *    link (CTRL.SLU, STATUS.LU), one receive and one transmit ring of 64
 *    legacy descriptors with 2 KiB buffers, CRC stripped, no interrupts
 *    (IMC all, completions found by polling DD);
 *  - mode=selftest through e1000_selftest(): the EEPROM checksum through
 *    EERD and the bit-banged Microwire interface, the PHY's identity and
 *    link through MDIC, interrupt causes, then two frames through PHY
 *    loopback, one with a context descriptor asking for IP and UDP
 *    checksum insertion and one legacy descriptor inserting the UDP
 *    checksum, each received with its FCS, which is checked, and with the
 *    receive checksum offload's verdict, checked against our own sums.
 *
 * Rings and buffers come from vio_alloc (guest RAM above the image), so a
 * snapshot carries them; after a restore the driver simply goes on.
 */
#include "user.h"
#include "pci.h"
#include "virtio.h"
#include "net.h"

#define E1K_VENDOR	0x8086
#define E1K_DEVICE	0x100f

#define CTRL		0x0000
#define STATUS		0x0008
#define EECD		0x0010
#define EERD		0x0014
#define MDIC		0x0020
#define ICR		0x00c0
#define ICS		0x00c8
#define IMC		0x00d8
#define RCTL		0x0100
#define TCTL		0x0400
#define TIPG		0x0410
#define RDBAL		0x2800
#define RDBAH		0x2804
#define RDLEN		0x2808
#define RDH		0x2810
#define RDT		0x2818
#define TDBAL		0x3800
#define TDBAH		0x3804
#define TDLEN		0x3808
#define TDH		0x3810
#define TDT		0x3818
#define GPRC		0x4074
#define GPTC		0x4080
#define RXCSUM		0x5000
#define RAL0		0x5400
#define RAH0		0x5404

#define CTRL_SLU	(1u << 6)
#define CTRL_RST	(1u << 26)
#define STATUS_FD	(1u << 0)
#define STATUS_LU	(1u << 1)
#define EECD_SK		(1u << 0)
#define EECD_CS		(1u << 1)
#define EECD_DI		(1u << 2)
#define EECD_DO		(1u << 3)
#define EECD_REQ	(1u << 6)
#define EECD_GNT	(1u << 7)
#define EERD_START	(1u << 0)
#define EERD_DONE	(1u << 4)
#define MDIC_WRITE	(1u << 26)
#define MDIC_READ	(2u << 26)
#define MDIC_READY	(1u << 28)
#define MDIC_ERROR	(1u << 30)
#define ICR_TXDW	(1u << 0)
#define RCTL_EN		(1u << 1)
#define RCTL_BAM	(1u << 15)
#define RCTL_SECRC	(1u << 26)
#define TCTL_EN		(1u << 1)
#define TCTL_PSP	(1u << 3)
#define RXCSUM_IPOFL	(1u << 8)
#define RXCSUM_TUOFL	(1u << 9)

#define TXD_EOP		(1u << 24)
#define TXD_IFCS	(1u << 25)
#define TXD_IC		(1u << 26)
#define TXD_RS		(1u << 27)
#define TXD_DEXT	(1u << 29)
#define TXD_DTYP_DATA	(1u << 20)
#define TXC_TUCMD_IP	(1u << 25)
#define TXD_POPTS_IXSM	(1u << 8)
#define TXD_POPTS_TXSM	(1u << 9)
#define RXD_DD		0x01
#define RXD_EOP		0x02
#define RXD_IXSM	0x04
#define RXD_TCPCS	0x20
#define RXD_IPCS	0x40
#define RXD_ERR_MASK	0xf7	/* every error but reserved bit 3 */

#define NDESC		64
#define BUF		NET_BUF_LEN

struct desc {
	u64 addr;
	u32 lower, upper;
};

struct e1k {
	const struct pci_fn *pci;
	u64 mmio;
	u16 io;
	volatile struct desc *txr, *rxr;
	u8 *txb, *rxb;
	u32 tdt, rx_next, rx_done;
	bool tx_used[NDESC];
	u16 ee[64];
};

static struct e1k dev;

static u32 rd(u32 reg) { return mmio_read32(dev.mmio + reg); }
static void wr(u32 reg, u32 v) { mmio_write32(dev.mmio + reg, v); }

/* ---- EEPROM ---- */

static int ee_read_all(char *why, u32 wl)
{
	u16 sum = 0;
	u32 i, v, tries;

	for (i = 0; i < 64; i++) {
		wr(EERD, i << 8 | EERD_START);
		for (tries = 0; !((v = rd(EERD)) & EERD_DONE); tries++) {
			if (tries == 100000) {
				fmt(why, wl, "EERD read of word %u never done", i);
				return -1;
			}
		}
		dev.ee[i] = v >> 16;
		sum += dev.ee[i];
	}
	if (sum != 0xbaba) {
		fmt(why, wl, "EEPROM checksum 0x%x, want 0xbaba", sum);
		return -1;
	}
	return 0;
}

/* Microwire, bit by bit: DI is sampled on SK's rising edge, DO read while SK is high. */
static void ee_clock_out(u32 *eecd, u32 bits, int n)
{
	while (n--) {
		*eecd = (*eecd & ~EECD_DI) | (bits >> n & 1 ? EECD_DI : 0);
		wr(EECD, *eecd);
		wr(EECD, *eecd | EECD_SK);
		wr(EECD, *eecd);
	}
}

static int ee_bitbang(u32 word, u16 *out, char *why, u32 wl)
{
	u32 eecd = rd(EECD) | EECD_REQ, i;
	u16 v = 0;

	wr(EECD, eecd);
	for (i = 0; !(rd(EECD) & EECD_GNT); i++) {
		if (i == 10000) {
			fmt(why, wl, "EECD: no grant after EE_REQ");
			return -1;
		}
	}
	eecd &= ~(EECD_SK | EECD_DI);
	eecd |= EECD_CS;
	wr(EECD, eecd);
	ee_clock_out(&eecd, 0x6, 3);	/* start bit and READ */
	ee_clock_out(&eecd, word, 6);
	for (i = 0; i < 16; i++) {
		wr(EECD, eecd | EECD_SK);
		v = v << 1 | !!(rd(EECD) & EECD_DO);
		wr(EECD, eecd);
	}
	wr(EECD, eecd & ~(EECD_CS | EECD_REQ));
	*out = v;
	return 0;
}

/* ---- PHY ---- */

static int phy_read(u32 reg, u16 *v, char *why, u32 wl)
{
	u32 m, i;

	wr(MDIC, reg << 16 | 1u << 21 | MDIC_READ);
	for (i = 0; !((m = rd(MDIC)) & MDIC_READY); i++) {
		if (i == 100000) {
			fmt(why, wl, "MDIC read of PHY register %u never ready", reg);
			return -1;
		}
	}
	if (m & MDIC_ERROR) {
		fmt(why, wl, "MDIC read of PHY register %u failed", reg);
		return -1;
	}
	*v = m;
	return 0;
}

static int phy_write(u32 reg, u16 v, char *why, u32 wl)
{
	u32 m, i;

	wr(MDIC, v | reg << 16 | 1u << 21 | MDIC_WRITE);
	for (i = 0; !((m = rd(MDIC)) & MDIC_READY); i++) {
		if (i == 100000) {
			fmt(why, wl, "MDIC write of PHY register %u never ready", reg);
			return -1;
		}
	}
	if (m & MDIC_ERROR) {
		fmt(why, wl, "MDIC write of PHY register %u failed", reg);
		return -1;
	}
	return 0;
}

/* ---- bring-up ---- */

static void rings_init(u32 rctl)
{
	u32 i;

	if (!dev.txr) {
		dev.txr = vio_alloc(NDESC * 16, 4096);
		dev.rxr = vio_alloc(NDESC * 16, 4096);
		dev.txb = vio_alloc(NDESC * BUF, 4096);
		dev.rxb = vio_alloc(NDESC * BUF, 4096);
		if (!dev.txr || !dev.rxr || !dev.txb || !dev.rxb)
			fail_final("e1000: out of memory");
	}
	for (i = 0; i < NDESC; i++) {
		dev.txr[i].addr = (u64)(dev.txb + i * BUF);
		dev.txr[i].lower = dev.txr[i].upper = 0;
		dev.rxr[i].addr = (u64)(dev.rxb + i * BUF);
		dev.rxr[i].lower = dev.rxr[i].upper = 0;
		dev.tx_used[i] = false;
	}
	dev.tdt = dev.rx_next = 0;
	wr(TDBAL, (u32)(u64)dev.txr);
	wr(TDBAH, (u32)((u64)dev.txr >> 32));
	wr(TDLEN, NDESC * 16);
	wr(TDH, 0);
	wr(TDT, 0);
	wr(TIPG, 10 | 8 << 10 | 6 << 20);
	wr(TCTL, TCTL_EN | TCTL_PSP | 0x10 << 4 | 0x40 << 12);
	wr(RDBAL, (u32)(u64)dev.rxr);
	wr(RDBAH, (u32)((u64)dev.rxr >> 32));
	wr(RDLEN, NDESC * 16);
	wr(RDH, 0);
	wr(RDT, NDESC - 1);	/* the one at RDT stays ours: the ring is never "full" */
	wr(RCTL, rctl);
}

/* Reset (through the I/O window), EEPROM, link. 0, -1 with @why, 1: no device. */
static int e1k_probe(char *why, u32 wl)
{
	struct rtime rt;
	u32 i;
	bool is64;

	dev.pci = pci_find(E1K_VENDOR, E1K_DEVICE, 0);
	if (!dev.pci)
		return 1;
	pci_write16(dev.pci, PCI_COMMAND, PCI_CMD_MEM | PCI_CMD_IO | PCI_CMD_MASTER |
		    PCI_CMD_INTX_OFF);
	dev.mmio = pci_bar_addr(dev.pci, 0, &is64);
	dev.io = pci_read32(dev.pci, PCI_BAR0 + 4) & 1 ? pci_read32(dev.pci, PCI_BAR0 + 4) & ~3u
							: 0;
	if (!dev.mmio || map_mmio(dev.mmio, 0x20000)) {
		fmt(why, wl, "BAR 0 unusable (0x%lx)", dev.mmio);
		return -1;
	}
	/* Linux resets through the I/O window: the 8254x cannot ack a 64-bit write then. */
	if (dev.io) {
		outl(dev.io, CTRL);
		outl(dev.io + 4, rd(CTRL) | CTRL_RST);
	} else {
		wr(CTRL, rd(CTRL) | CTRL_RST);
	}
	rt_start(&rt);
	while (rd(CTRL) & CTRL_RST) {
		if (rt_ms(&rt) > 100) {
			fmt(why, wl, "CTRL.RST still set after 100 ms");
			return -1;
		}
	}
	wr(IMC, ~0u);
	(void)rd(ICR);
	if (ee_read_all(why, wl))
		return -1;
	for (i = 0; i < 6; i++)
		nic.mac[i] = dev.ee[i / 2] >> (8 * (i & 1));
	if (rd(RAL0) != ((u32)dev.ee[1] << 16 | dev.ee[0]) ||
	    rd(RAH0) != (1u << 31 | dev.ee[2])) {
		fmt(why, wl, "RA[0] %x:%x is not the EEPROM's address", rd(RAH0), rd(RAL0));
		return -1;
	}
	wr(CTRL, (rd(CTRL) | CTRL_SLU) & ~(1u << 3 | 1u << 11 | 1u << 12 | 1u << 31));
	rt_start(&rt);
	while (!(rd(STATUS) & STATUS_LU)) {
		if (rt_ms(&rt) > 2000) {
			fmt(why, wl, "no link 2 s after CTRL.SLU (STATUS 0x%x)", rd(STATUS));
			return -1;
		}
	}
	return 0;
}

/* ---- frames ---- */

static void e1k_kick(void)
{
	wr(TDT, dev.tdt);
}

/* Wait until descriptor @i, if it was ever handed to the device, is done (DD). */
static void tx_wait(u32 i)
{
	volatile struct desc *d = &dev.txr[i];
	struct rtime rt;

	if (!dev.tx_used[i] || (READ_ONCE(d->upper) & 1))
		return;
	e1k_kick();	/* it may be queued but not kicked yet (batch mode) */
	rt_start(&rt);
	while (!(READ_ONCE(d->upper) & 1)) {	/* DD */
		if (rt_ms(&rt) > 5000)
			fail_final("e1000: transmit descriptor %u not done in 5 s (TDH %u)", i,
				   rd(TDH));
		cpu_relax();
	}
}

/*
 * The next free descriptor.  One always stays free, as in Linux's e1000 driver: the
 * device processes TDH up to TDT, so a full ring (TDT == TDH) would look empty to it.
 * A device that transmits after the TDT write returns (khyve's transmit thread, a real
 * chip) can still be behind when the guest has queued a whole ring.
 */
static volatile struct desc *tx_slot(void)
{
	tx_wait(dev.tdt);
	tx_wait((dev.tdt + 1) % NDESC);
	return &dev.txr[dev.tdt];
}

static void tx_put(u32 lower, u32 upper)
{
	volatile struct desc *d = &dev.txr[dev.tdt];

	d->upper = upper;
	barrier();
	d->lower = lower;
	dev.tx_used[dev.tdt] = true;
	dev.tdt = (dev.tdt + 1) % NDESC;
}

static void e1k_tx(const u8 *f, u32 len)
{
	tx_slot();
	if (len > BUF)
		fail_final("e1000: frame of %u bytes", len);
	memcpy(dev.txb + dev.tdt * BUF, f, len);
	/* Legacy descriptor: the frame, insert FCS, report status. */
	tx_put(len | TXD_EOP | TXD_IFCS | TXD_RS, 0);
	if (!nic.batch)
		e1k_kick();
}

/* Every descriptor with DD, in order; hand them back with one RDT write. */
static void e1k_rx_poll(void (*cb)(const u8 *f, u32 len))
{
	volatile struct desc *d;
	u32 last = NDESC, st;

	for (;;) {
		d = &dev.rxr[dev.rx_next];
		st = __atomic_load_n((volatile u8 *)d + 12, __ATOMIC_ACQUIRE);
		if (!(st & RXD_DD))
			break;
		/* Whole frames only (2 KiB buffers hold any standard one), no errors. */
		if ((st & RXD_EOP) && !((d->upper >> 8) & RXD_ERR_MASK))
			cb(dev.rxb + dev.rx_next * BUF, (u16)d->lower);
		d->upper = 0;
		last = dev.rx_next;
		dev.rx_next = (dev.rx_next + 1) % NDESC;
		dev.rx_done++;
	}
	if (last != NDESC)
		wr(RDT, last);
}

static void e1k_flush(void)
{
	e1k_kick();
}

int e1000_nic_open(struct nic *n)
{
	char why[96];
	u16 id1 = 0, id2 = 0;
	int r = e1k_probe(why, sizeof(why));

	if (r > 0)
		return -1;
	if (r)
		fail_final("e1000: %s", why);
	rings_init(RCTL_EN | RCTL_BAM | RCTL_SECRC);
	n->name = "e1000";
	n->tx = e1k_tx;
	n->rx_poll = e1k_rx_poll;
	n->flush = e1k_flush;
	phy_read(2, &id1, why, sizeof(why));
	phy_read(3, &id2, why, sizeof(why));
	pr("net: e1000 at %02x:%02x.%u, mac %02x:%02x:%02x:%02x:%02x:%02x, link %s, "
	   "phy %04x%04x, eeprom ok\n", dev.pci->bus, dev.pci->dev, dev.pci->fn, n->mac[0],
	   n->mac[1], n->mac[2], n->mac[3], n->mac[4], n->mac[5],
	   rd(STATUS) & STATUS_LU ? "up" : "down", id1, id2);
	return 0;
}

/* ---- mode=selftest ---- */

static u32 crc32(const u8 *p, u32 n)
{
	u32 c = 0xffffffff, k;

	while (n--) {
		c ^= *p++;
		for (k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0xedb88320 : c >> 1;
	}
	return ~c;
}

/* A UDP datagram from us to us: IP checksum 0, UDP field the pseudo-header sum. */
static u32 loop_frame(u8 *f, u32 plen, u8 seed)
{
	u8 *ip = f + 14, *udp = ip + 20;
	u32 i, ulen = 8 + plen;

	memcpy(f, nic.mac, 6);
	memcpy(f + 6, nic.mac, 6);
	put16be(f + 12, 0x0800);
	memset(ip, 0, 20);
	ip[0] = 0x45;
	put16be(ip + 2, 20 + ulen);
	put16be(ip + 4, seed);
	ip[8] = 64;
	ip[9] = 17;
	put32be(ip + 12, 0x0a00020f);
	put32be(ip + 16, 0x0a00020f);
	put16be(udp, 1000 + seed);
	put16be(udp + 2, 2000);
	put16be(udp + 4, ulen);
	for (i = 0; i < plen; i++)
		udp[8 + i] = seed + i * 3;
	/* csum_fold complements: undo it to leave the plain pseudo-header sum. */
	put16be(udp + 6, ~csum_fold(csum_add(17 + ulen, ip + 12, 8)));
	return 14 + 20 + ulen;
}

static int loop_check(const u8 *sent, u32 len, u32 idx, char *why, u32 wl)
{
	volatile struct desc *d = &dev.rxr[idx];
	const u8 *got = dev.rxb + idx * BUF, *ip = got + 14;
	u32 rlen = (u16)d->lower, crc, st = d->upper & 0xff, err = (d->upper >> 8) & 0xff;

	if (!(st & RXD_DD) || !(st & RXD_EOP) || rlen != len + 4) {
		fmt(why, wl, "loopback frame %u: status 0x%x, length %u (want %u)", idx, st, rlen,
		    len + 4);
		return -1;
	}
	crc = crc32(got, len);
	if (memcmp(got + len, &crc, 4)) {
		fmt(why, wl, "loopback frame %u: bad FCS", idx);
		return -1;
	}
	if (memcmp(got + 42, sent + 42, len - 42) || memcmp(got, sent, 12)) {
		fmt(why, wl, "loopback frame %u: payload differs", idx);
		return -1;
	}
	if (csum_fold(csum_add(0, ip, 20)) ||
	    csum_fold(csum_add(17 + len - 34, ip + 12, 8) + csum_add(0, ip + 20, len - 34))) {
		fmt(why, wl, "loopback frame %u: the inserted checksums are wrong", idx);
		return -1;
	}
	if ((st & (RXD_IPCS | RXD_TCPCS | RXD_IXSM)) != (RXD_IPCS | RXD_TCPCS) || err) {
		fmt(why, wl, "loopback frame %u: checksum offload status 0x%x errors 0x%x", idx, st,
		    err);
		return -1;
	}
	return 0;
}

static int selftest_loopback(char *why, u32 wl)
{
	static u8 f1[300], f2[300];
	u32 l1 = loop_frame(f1, 200, 1), l2 = loop_frame(f2, 123, 2);
	struct rtime rt;
	u32 gptc, gprc;

	/*
	 * PHY loopback, as ethtool's self-test sets it up on an 82545 (QEMU has no MAC
	 * loopback), the FCS kept (checked below), receive checksum offload on.
	 */
	if (phy_write(0, 0x4140, why, wl))
		return -1;
	wr(RXCSUM, RXCSUM_IPOFL | RXCSUM_TUOFL);
	rings_init(RCTL_EN | RCTL_BAM);
	(void)rd(GPTC);
	(void)rd(GPRC);
	/* Frame 1: a context (IP 14..33 at 24, UDP from 34 at 40), then the data with IXSM|TXSM. */
	tx_slot();
	dev.txr[dev.tdt].addr = 14 | 24 << 8 | 33 << 16 | 34ull << 32 | 40ull << 40;
	tx_put(TXD_DEXT | TXC_TUCMD_IP | TXD_RS, 0);
	tx_slot();
	memcpy(dev.txb + dev.tdt * BUF, f1, l1);
	dev.txr[dev.tdt].addr = (u64)(dev.txb + dev.tdt * BUF);
	tx_put(TXD_DEXT | TXD_DTYP_DATA | TXD_EOP | TXD_IFCS | TXD_RS | l1,
	       TXD_POPTS_IXSM | TXD_POPTS_TXSM);
	/* Frame 2: legacy, the UDP checksum inserted (CSS 34, CSO 40); the IP one by us. */
	put16be(f2 + 24, csum_fold(csum_add(0, f2 + 14, 20)));
	tx_slot();
	memcpy(dev.txb + dev.tdt * BUF, f2, l2);
	tx_put(l2 | 40 << 16 | TXD_EOP | TXD_IFCS | TXD_IC | TXD_RS, 34 << 8);
	e1k_kick();
	rt_start(&rt);
	while (!(dev.rxr[1].upper & RXD_DD)) {
		if (rt_ms(&rt) > 2000) {
			fmt(why, wl, "loopback: %s frame not received in 2 s (RDH %u TDH %u)",
			    dev.rxr[0].upper & RXD_DD ? "second" : "first", rd(RDH), rd(TDH));
			return -1;
		}
	}
	/* What the device sent has the checksums filled in: check against frame 1 as sent. */
	if (loop_check(f1, l1, 0, why, wl) || loop_check(f2, l2, 1, why, wl))
		return -1;
	gptc = rd(GPTC);
	gprc = rd(GPRC);
	if (gptc != 2 || gprc != 2) {
		fmt(why, wl, "statistics: %u sent, %u received, want 2 and 2", gptc, gprc);
		return -1;
	}
	return 0;
}

int e1000_selftest(char *why, u32 wl)
{
	struct rtime rt;
	u16 w, id1, id2, st;
	u32 i;
	int r = e1k_probe(why, wl);

	if (r)
		return r;
	for (i = 0; i < 3; i++) {
		if (ee_bitbang(i, &w, why, wl))
			return -1;
		if (w != dev.ee[i]) {
			fmt(why, wl, "EEPROM word %u: 0x%x bit-banged, 0x%x through EERD", i, w,
			    dev.ee[i]);
			return -1;
		}
	}
	if (phy_read(2, &id1, why, wl) || phy_read(3, &id2, why, wl))
		return -1;
	/* Restart autonegotiation as drivers do; it takes a while (QEMU: 500 ms). */
	if (phy_write(0, 0x1340, why, wl))
		return -1;
	rt_start(&rt);
	do {
		if (phy_read(1, &st, why, wl))
			return -1;
	} while ((st & 0x24) != 0x24 && rt_ms(&rt) < 5000);
	if (id1 != 0x0141 || (id2 & 0xfff0) != 0x0c20) {
		fmt(why, wl, "PHY id %04x%04x, want an 88E1011 (01410c2x)", id1, id2);
		return -1;
	}
	if ((st & 0x24) != 0x24 || (rd(STATUS) & (STATUS_FD | 3u << 6)) != (STATUS_FD | 2u << 6)) {
		fmt(why, wl, "PHY status 0x%x, STATUS 0x%x: want link, autonegotiated 1000 full",
		    st, rd(STATUS));
		return -1;
	}
	(void)rd(ICR);		/* LSC from the link coming up, and anything else */
	wr(ICS, ICR_TXDW);
	if (rd(ICR) != ICR_TXDW || rd(ICR)) {
		fmt(why, wl, "ICS/ICR: a cause set is not read back once");
		return -1;
	}
	r = selftest_loopback(why, wl);
	wr(CTRL, rd(CTRL) | CTRL_RST);	/* leave it quiet */
	return r;
}
