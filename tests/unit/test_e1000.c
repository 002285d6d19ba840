// SPDX-License-Identifier: BSD-2-Clause
/*
 * e1000 as a guest driver sees it: PCI identity, the EEPROM through EERD and bit-banged
 * Microwire, the PHY through MDIC, link and LSC, interrupt causes and masks, ITR, the
 * receive and transmit delay timers, legacy and context/data transmit descriptors with their
 * checksums checked against a reference computation, TSO segment boundaries and headers,
 * VLAN insertion and stripping, the receive filters, the receive checksum offload, the FCS,
 * the FIFO, loopback, statistics, reset, the I/O window, malformed rings, pause and snapshot
 * (save -> load -> save identity, timers re-armed from the time left, the announce, refused
 * streams), coalesced MMIO (which registers are buffered, the zones following BAR 0, buffered
 * writes landing before a frame from the network and before a snapshot), options, and on the real slirp backend (loopback only) a hostfwd connection
 * reaching the receive ring as a TCP SYN.  A "wire" backend registered through the
 * net_backend interface stands in for the network elsewhere: it records what the device
 * sends and injects what it receives.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "backend/net_backend.h"
#include "config.h"
#include "dev/net/e1000.h"
#include "dev/net/e1000_regs.h"
#include "dev/net/net_csum.h"
#include "dev/pci/pci.h"
#include "devsnap.h"
#include "snap/snapshot.h"
#include "sstream.h"
#include "vm.h"

extern const struct pci_emul pci_emul_e1000;

#define SLOT 3
#define RAM_SIZE (32 * MiB)
#define NDESC 64
#define TX_RING 0x100000ULL
#define RX_RING 0x110000ULL
#define TXB(i) (0x200000ULL + (uint64_t)(i)*0x10000) /* 64 KiB each */
#define RXB(i) (0x800000ULL + (uint64_t)(i)*0x4000)  /* 16 KiB each */

/* ---- the wire: records what the device sends ---- */

#define WIRE_MAX 256

static uint8_t *sent[WIRE_MAX];
static size_t sent_len[WIRE_MAX];
static unsigned nsent;
static bool wire_full;
/*
 * For the transmit worker's tests: the worker sends on its own thread.  A closed gate holds
 * every send until the test opens it (a slow network), and wire_waiting says one is held.
 */
static pthread_mutex_t wire_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wire_cv = PTHREAD_COND_INITIALIZER;
static bool wire_gate, wire_timed_out;
static unsigned wire_waiting;

/* Wait on wire_cv (with wire_mu); a guard against a hang, not a timing assertion. */
static bool wire_wait(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 30;
	return pthread_cond_timedwait(&wire_cv, &wire_mu, &ts) == 0;
}

static int wire_open(struct net_backend *nb, const struct net_backend_args *a, char *err,
		     size_t errlen)
{
	return 0;
}

static int wire_send(struct net_backend *nb, const void *frame, size_t len)
{
	int ret = 0;

	pthread_mutex_lock(&wire_mu);
	while (wire_gate && !wire_timed_out) {
		wire_waiting++;
		pthread_cond_broadcast(&wire_cv);
		if (!wire_wait())
			wire_timed_out = true;
		wire_waiting--;
	}
	if (nsent == WIRE_MAX || wire_full) {
		ret = -ENOBUFS;
	} else {
		sent[nsent] = malloc(len);
		memcpy(sent[nsent], frame, len);
		sent_len[nsent++] = len;
	}
	pthread_cond_broadcast(&wire_cv);
	pthread_mutex_unlock(&wire_mu);
	return ret;
}

static void wire_close(struct net_backend *nb)
{
}

static const struct net_backend_type wire_type = {
	.name = "wire",
	.usage = "wire",
	.open = wire_open,
	.send = wire_send,
	.close = wire_close,
};

static void wire_reset(void)
{
	for (unsigned i = 0; i < nsent; i++)
		free(sent[i]);
	nsent = 0;
	wire_full = false;
	wire_gate = wire_timed_out = false;
}

/* ---- interrupt recorders ---- */

static int irq_level[32];
static unsigned irq_raised[32], msi_count;

static void rec_irq(struct vm *vm, unsigned gsi, int level)
{
	if (gsi >= 32)
		return;
	if (level && !irq_level[gsi])
		irq_raised[gsi]++;
	irq_level[gsi] = level;
}

static int rec_msi(struct vm *vm, uint64_t addr, uint32_t data)
{
	msi_count++;
	return 0;
}

/* ---- reference computations, written independently of net_csum.c ---- */

static uint16_t ref_sum(const uint8_t *p, size_t len, uint32_t start)
{
	uint32_t s = start;

	for (size_t i = 0; i < len; i++)
		s += i & 1 ? p[i] : (uint32_t)p[i] << 8;
	while (s >> 16)
		s = (s & 0xFFFF) + (s >> 16);
	return (uint16_t)s;
}

static uint32_t ref_crc32(const uint8_t *p, size_t len)
{
	uint32_t c = 0xFFFFFFFF;

	for (size_t i = 0; i < len; i++) {
		c ^= p[i];
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (0xEDB88320U & (0U - (c & 1)));
	}
	return ~c;
}

static uint16_t be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)be16(p) << 16 | be16(p + 2);
}

static void wbe16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void wbe32(uint8_t *p, uint32_t v)
{
	wbe16(p, (uint16_t)(v >> 16));
	wbe16(p + 2, (uint16_t)v);
}

/* Is the IPv4 header checksum right? */
static bool ipv4_ok(const uint8_t *ip)
{
	return ref_sum(ip, (ip[0] & 15) * 4U, 0) == 0xFFFF;
}

/* Is the TCP or UDP checksum of this IPv4 packet right? */
static bool l4_ok_v4(const uint8_t *ip)
{
	unsigned ihl = (ip[0] & 15) * 4U, tot = be16(ip + 2), l4 = tot - ihl;
	uint32_t s = ref_sum(ip + 12, 8, 0) + ip[9] + l4;

	return ref_sum(ip + ihl, l4, s) == 0xFFFF;
}

static bool l4_ok_v6(const uint8_t *ip)
{
	unsigned plen = be16(ip + 4);
	uint32_t s = ref_sum(ip + 8, 32, 0) + ip[6] + plen;

	return ref_sum(ip + 40, plen, s) == 0xFFFF;
}

/* ---- frames ---- */

static const uint8_t peer_mac[6] = { 0x52, 0x55, 0x0A, 0x00, 0x02, 0x02 };
static const uint8_t bcast[6] = { 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF };

static void fill(uint8_t *p, size_t len, uint8_t seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(seed + i * 13 + (i >> 8));
}

static size_t eth(uint8_t *f, const uint8_t *dst, const uint8_t *src, uint16_t type)
{
	memcpy(f, dst, 6);
	memcpy(f + 6, src, 6);
	wbe16(f + 12, type);
	return 14;
}

/*
 * An IPv4 TCP (or UDP) packet with @plen payload bytes after an Ethernet header; the IP and
 * L4 checksums correct when @good, else the L4 checksum field holds @l4csum as given.
 */
static size_t ipv4_pkt(uint8_t *f, const uint8_t *dst, const uint8_t *src, bool tcp, size_t plen,
		       uint8_t seed)
{
	uint8_t *ip = f + eth(f, dst, src, 0x0800), *l4 = ip + 20;
	size_t l4len = (tcp ? 20 : 8) + plen;

	memset(ip, 0, 20);
	ip[0] = 0x45;
	wbe16(ip + 2, (uint16_t)(20 + l4len));
	wbe16(ip + 4, 0x1234);
	wbe16(ip + 6, 0x4000);
	ip[8] = 64;
	ip[9] = tcp ? 6 : 17;
	wbe32(ip + 12, 0x0A00020F);
	wbe32(ip + 16, 0x0A000202);
	memset(l4, 0, tcp ? 20 : 8);
	wbe16(l4, 5555);
	wbe16(l4 + 2, 7777);
	if (tcp) {
		wbe32(l4 + 4, 1000);
		wbe32(l4 + 8, 2000);
		l4[12] = 0x50;
		l4[13] = 0x18; /* PSH, ACK */
		wbe16(l4 + 14, 65535);
	} else {
		wbe16(l4 + 4, (uint16_t)l4len);
	}
	fill(l4 + (tcp ? 20 : 8), plen, seed);
	wbe16(ip + 10, (uint16_t)~ref_sum(ip, 20, 0));
	wbe16(l4 + (tcp ? 16 : 6),
	      (uint16_t)~ref_sum(l4, l4len, ref_sum(ip + 12, 8, 0) + ip[9] + (uint32_t)l4len));
	return 14 + 20 + l4len;
}

static size_t ipv6_tcp_pkt(uint8_t *f, const uint8_t *dst, const uint8_t *src, size_t plen)
{
	uint8_t *ip = f + eth(f, dst, src, 0x86DD), *l4 = ip + 40;
	size_t l4len = 20 + plen;

	memset(ip, 0, 40);
	ip[0] = 0x60;
	wbe16(ip + 4, (uint16_t)l4len);
	ip[6] = 6;
	ip[7] = 64;
	ip[8] = 0xFE;
	ip[9] = 0x80;
	ip[23] = 1;
	ip[24] = 0xFE;
	ip[25] = 0x80;
	ip[39] = 2;
	memset(l4, 0, 20);
	wbe16(l4, 5555);
	wbe16(l4 + 2, 80);
	wbe32(l4 + 4, 77);
	l4[12] = 0x50;
	l4[13] = 0x19; /* FIN, PSH, ACK */
	fill(l4 + 20, plen, 9);
	wbe16(l4 + 16, (uint16_t)~ref_sum(l4, l4len, ref_sum(ip + 8, 32, 0) + 6 + (uint32_t)l4len));
	return 74 + plen;
}

/* ---- the fixture: a VM with RAM, a PCI bus and one e1000 ---- */

struct fx {
	struct vm vm;
	struct config cfg;
	struct pci_dev *pd;
	struct e1000 *e;
	uint64_t bar;
	uint16_t io;
	uint32_t tdt, rdt;
	uint32_t rx_next; /* next receive descriptor the "driver" looks at */
};

static void *gpa(struct fx *f, uint64_t a, uint64_t len)
{
	void *p = vm_gpa(&f->vm, a, len);

	assert_non_null(p);
	return p;
}

static uint32_t r32(struct fx *f, uint32_t off)
{
	uint8_t b[4];

	bus_access(&f->vm.mmio, f->bar + off, b, 4, false);
	return (uint32_t)io_get(b, 4);
}

static void w32(struct fx *f, uint32_t off, uint32_t v)
{
	uint8_t b[4];

	io_put(b, 4, v);
	bus_access(&f->vm.mmio, f->bar + off, b, 4, true);
}

static void fx_create(struct fx *f, const char *const *opts)
{
	char err[256], key[128];

	memset(f, 0, sizeof(*f));
	vm_init_bare(&f->vm, true);
	config_init(&f->cfg);
	f->vm.cfg = &f->cfg;
	f->vm.name = "testvm";
	f->vm.set_irq = rec_irq;
	f->vm.send_msi = rec_msi;
	assert_int_equal(vm_add_memory(&f->vm, RAM_SIZE), 0);
	assert_int_equal(config_set_pair(&f->cfg, "pci.0.0.0.device=hostbridge"), 0);
	/* Deterministic: no transmit worker unless a test asks for one (txthread=on later wins). */
	snprintf(key, sizeof(key), "pci.0.%d.0.txthread=off", SLOT);
	assert_int_equal(config_set_pair(&f->cfg, key), 0);
	for (; opts && *opts; opts++) {
		snprintf(key, sizeof(key), "pci.0.%d.0.%s", SLOT, *opts);
		assert_int_equal(config_set_pair(&f->cfg, key), 0);
	}
	if (pci_setup(&f->vm, err, sizeof(err)))
		fail_msg("pci_setup: %s", err);
}

static struct pci_dev *fx_add(struct fx *f, char *err, size_t errlen)
{
	f->pd = pci_dev_add(&f->vm, SLOT, 0, &pci_emul_e1000, err, errlen);
	if (!f->pd)
		return NULL;
	f->e = f->pd->priv;
	f->bar = pci_bar_addr(f->pd, 0);
	f->io = (uint16_t)pci_bar_addr(f->pd, 1);
	assert_true(f->bar && f->io);
	return f->pd;
}

static void fx_init(struct fx *f, const char *const *opts)
{
	char err[256];

	fx_create(f, opts);
	if (!fx_add(f, err, sizeof(err)))
		fail_msg("e1000: %s", err);
}

static void fx_destroy(struct fx *f)
{
	vm_destroy(&f->vm);
	config_free(&f->cfg);
}

static void advance(struct fx *f, uint64_t ns)
{
	evloop_advance(&f->vm.ev, vclock_ns(&f->vm.ev) + ns);
}

/* ---- the driver's side ---- */

static void txd_put(struct fx *f, uint32_t i, uint64_t addr, uint32_t lower, uint32_t upper)
{
	uint8_t *d = gpa(f, TX_RING + 16ULL * i, 16);

	memcpy(d, &addr, 8);
	memcpy(d + 8, &lower, 4);
	memcpy(d + 12, &upper, 4);
}

static uint8_t txd_sta(struct fx *f, uint32_t i)
{
	return *(uint8_t *)gpa(f, TX_RING + 16ULL * i + 12, 1);
}

/* Queue descriptor at TDT (no doorbell). */
static uint32_t tx_add(struct fx *f, uint64_t addr, uint32_t lower, uint32_t upper)
{
	uint32_t i = f->tdt;

	txd_put(f, i, addr, lower, upper);
	f->tdt = (f->tdt + 1) % NDESC;
	return i;
}

static void tx_kick(struct fx *f)
{
	w32(f, E1000_TDT, f->tdt);
}

/* A legacy descriptor for @len bytes copied into buffer @b. */
static uint32_t tx_legacy(struct fx *f, unsigned b, const void *data, size_t len, uint32_t cmd,
			  uint32_t upper)
{
	memcpy(gpa(f, TXB(b), len), data, len);
	return tx_add(f, TXB(b), (uint32_t)len | cmd, upper);
}

/* Give back up to @count descriptors the device has used (it owns RDH up to RDT). */
static void rx_give(struct fx *f, uint32_t count)
{
	uint32_t owned = (f->rdt + NDESC - r32(f, E1000_RDH)) % NDESC;

	if (count > NDESC - 1 - owned)
		count = NDESC - 1 - owned;
	for (uint32_t k = 0; k < count; k++) {
		uint32_t i = f->rdt;
		uint64_t a = RXB(i);
		uint8_t *d = gpa(f, RX_RING + 16ULL * i, 16);

		memset(d, 0, 16);
		memcpy(d, &a, 8);
		f->rdt = (f->rdt + 1) % NDESC;
	}
	w32(f, E1000_RDT, f->rdt);
}

struct rxd {
	uint64_t addr;
	uint16_t len, csum, special;
	uint8_t status, errors;
};

static void rxd_get(struct fx *f, uint32_t i, struct rxd *r)
{
	const uint8_t *d = gpa(f, RX_RING + 16ULL * i, 16);

	memcpy(&r->addr, d, 8);
	memcpy(&r->len, d + 8, 2);
	memcpy(&r->csum, d + 10, 2);
	r->status = d[12];
	r->errors = d[13];
	memcpy(&r->special, d + 14, 2);
}

/* The next received descriptor, or false. */
static bool rx_next(struct fx *f, struct rxd *r, const uint8_t **data)
{
	rxd_get(f, f->rx_next, r);
	if (!(r->status & E1000_RXD_STAT_DD))
		return false;
	*data = gpa(f, r->addr, r->len ? r->len : 1);
	f->rx_next = (f->rx_next + 1) % NDESC;
	return true;
}

static void inject(struct fx *f, const void *frame, size_t len)
{
	f->e->nb->rx(f->e->nb->opaque, frame, len);
}

/* What Linux's e1000 does before traffic flows: link, rings, units on. */
static void drv_up(struct fx *f, uint32_t rctl_extra)
{
	memset(gpa(f, TX_RING, 16 * NDESC), 0, 16 * NDESC);
	memset(gpa(f, RX_RING, 16 * NDESC), 0, 16 * NDESC);
	w32(f, E1000_CTRL, r32(f, E1000_CTRL) | E1000_CTRL_SLU);
	w32(f, E1000_TDBAL, (uint32_t)TX_RING);
	w32(f, E1000_TDBAH, 0);
	w32(f, E1000_TDLEN, 16 * NDESC);
	w32(f, E1000_TDH, 0);
	w32(f, E1000_TDT, 0);
	w32(f, E1000_TCTL, E1000_TCTL_EN | E1000_TCTL_PSP);
	w32(f, E1000_RDBAL, (uint32_t)RX_RING);
	w32(f, E1000_RDBAH, 0);
	w32(f, E1000_RDLEN, 16 * NDESC);
	w32(f, E1000_RDH, 0);
	w32(f, E1000_RDT, 0);
	f->tdt = f->rdt = f->rx_next = 0;
	w32(f, E1000_RCTL, E1000_RCTL_EN | E1000_RCTL_BAM | rctl_extra);
	rx_give(f, NDESC - 1);
	(void)r32(f, E1000_ICR);
}

static void my_mac(struct fx *f, uint8_t mac[6])
{
	uint32_t lo = r32(f, E1000_RA), hi = r32(f, E1000_RA + 4);

	for (int i = 0; i < 4; i++)
		mac[i] = (uint8_t)(lo >> 8 * i);
	mac[4] = (uint8_t)hi;
	mac[5] = (uint8_t)(hi >> 8);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	net_backend_register(&wire_type);
	wire_reset();
	memset(irq_level, 0, sizeof(irq_level));
	memset(irq_raised, 0, sizeof(irq_raised));
	msi_count = 0;
	fx_init(f, (const char *const[]){ "backend=wire", "mac=52:54:00:12:34:56", NULL });
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	fx_destroy(f);
	free(f);
	wire_reset();
	return 0;
}

/* ---- identity, EEPROM, PHY ---- */

static void test_identity(void **state)
{
	struct fx *f = *state;
	unsigned cap, found = 0;

	assert_int_equal(pci_get_cfg16(f->pd, PCIR_VENDOR), 0x8086);
	assert_int_equal(pci_get_cfg16(f->pd, PCIR_DEVICE), 0x100F);
	assert_int_equal(pci_get_cfg8(f->pd, PCIR_CLASS), 0x02);
	assert_int_equal(pci_get_cfg8(f->pd, PCIR_SUBCLASS), 0x00);
	assert_int_equal(pci_get_cfg16(f->pd, PCIR_SUBVEND), 0x8086);
	assert_int_equal(pci_get_cfg8(f->pd, PCIR_INTPIN), 1);
	assert_int_equal(pci_get_cfg32(f->pd, PCIR_BAR(0)) & 0xF, 0); /* 32-bit memory */
	assert_int_equal(pci_get_cfg32(f->pd, PCIR_BAR(1)) & 0x1, 1); /* I/O */
	for (cap = pci_get_cfg8(f->pd, PCIR_CAP_PTR); cap; cap = pci_get_cfg8(f->pd, cap + 1))
		found |= 1U << pci_get_cfg8(f->pd, cap);
	assert_true(found & (1U << PCIY_MSI));
	assert_true(found & (1U << 0x01)); /* power management */
	/* STATUS: 1000 Mb/s full duplex; no link before the driver sets SLU. */
	assert_int_equal(r32(f, E1000_STATUS) & (E1000_STATUS_FD | E1000_STATUS_LU),
			 E1000_STATUS_FD);
	assert_int_equal(r32(f, E1000_STATUS) & (3U << 6), E1000_STATUS_SPEED_1000);
	assert_int_equal(r32(f, E1000_VET), 0x8100);
	assert_int_equal(r32(f, E1000_PBA), 0x30);
}

static uint16_t eerd(struct fx *f, unsigned addr)
{
	uint32_t v;

	w32(f, E1000_EERD, addr << E1000_EERD_ADDR_SHIFT | E1000_EERD_START);
	v = r32(f, E1000_EERD);
	assert_true(v & E1000_EERD_DONE);
	assert_int_equal((v >> E1000_EERD_ADDR_SHIFT) & 0xFF, addr);
	return (uint16_t)(v >> 16);
}

static void test_eeprom_eerd(void **state)
{
	struct fx *f = *state;
	uint16_t sum = 0;

	assert_int_equal(eerd(f, 0), 0x5452);
	assert_int_equal(eerd(f, 1), 0x1200);
	assert_int_equal(eerd(f, 2), 0x5634);
	for (unsigned i = 0; i < 64; i++)
		sum = (uint16_t)(sum + eerd(f, i));
	assert_int_equal(sum, 0xBABA);
	assert_int_equal(eerd(f, 0x0D), 0x100F);
	assert_int_equal(eerd(f, 0x0E), 0x8086);
	assert_int_equal(eerd(f, 0x40 + 1), eerd(f, 1)); /* the 64-word part wraps */
	/* Without START nothing is read and DONE stays clear. */
	w32(f, E1000_EERD, 3 << E1000_EERD_ADDR_SHIFT);
	assert_int_equal(r32(f, E1000_EERD) & E1000_EERD_DONE, 0);
	/* The burnt-in address is what RA[0] holds after reset. */
	assert_int_equal(r32(f, E1000_RA), 0x12005452);
	assert_int_equal(r32(f, E1000_RA + 4), 0x80005634);
}

/* Linux's e1000 Microwire routines: raise and lower SK around each bit. */
static void ee_out(struct fx *f, uint32_t *eecd, uint32_t data, int bits)
{
	for (int i = bits - 1; i >= 0; i--) {
		*eecd = (*eecd & ~E1000_EECD_DI) | (data >> i & 1 ? E1000_EECD_DI : 0);
		w32(f, E1000_EECD, *eecd);
		w32(f, E1000_EECD, *eecd | E1000_EECD_SK);
		w32(f, E1000_EECD, *eecd);
	}
}

static uint16_t ee_in(struct fx *f, uint32_t eecd)
{
	uint16_t v = 0;

	for (int i = 0; i < 16; i++) {
		w32(f, E1000_EECD, eecd | E1000_EECD_SK);
		v = (uint16_t)(v << 1 | !!(r32(f, E1000_EECD) & E1000_EECD_DO));
		w32(f, E1000_EECD, eecd);
	}
	return v;
}

static uint32_t ee_start(struct fx *f)
{
	uint32_t eecd = r32(f, E1000_EECD) | E1000_EECD_REQ;

	w32(f, E1000_EECD, eecd);
	assert_true(r32(f, E1000_EECD) & E1000_EECD_GNT);
	assert_true(r32(f, E1000_EECD) & E1000_EECD_PRES);
	assert_int_equal(r32(f, E1000_EECD) & (1U << 9), 0); /* 64 words */
	eecd &= ~(E1000_EECD_DI | E1000_EECD_SK);
	w32(f, E1000_EECD, eecd);
	eecd |= E1000_EECD_CS;
	w32(f, E1000_EECD, eecd);
	return eecd;
}

static void ee_stop(struct fx *f, uint32_t *eecd)
{
	*eecd &= ~(E1000_EECD_CS | E1000_EECD_DI | E1000_EECD_SK);
	w32(f, E1000_EECD, *eecd);
}

static uint16_t ee_read(struct fx *f, unsigned addr)
{
	uint32_t eecd = ee_start(f);
	uint16_t v;

	ee_out(f, &eecd, E1000_EE_READ_OPCODE, 3);
	ee_out(f, &eecd, addr, 6);
	v = ee_in(f, eecd);
	ee_stop(f, &eecd);
	return v;
}

/* opcode (3 bits, with the start bit), 6 address bits, optional data. */
static void ee_cmd(struct fx *f, unsigned op, unsigned addr, int data)
{
	uint32_t eecd = ee_start(f);

	ee_out(f, &eecd, op, 3);
	ee_out(f, &eecd, addr, 6);
	if (data >= 0)
		ee_out(f, &eecd, (uint32_t)data, 16);
	ee_stop(f, &eecd);
	/* Ready: DO high once CS is up again. */
	eecd = ee_start(f);
	assert_true(r32(f, E1000_EECD) & E1000_EECD_DO);
	ee_stop(f, &eecd);
}

static void test_eeprom_microwire(void **state)
{
	struct fx *f = *state;
	uint32_t eecd;

	for (unsigned i = 0; i < 64; i++)
		assert_int_equal(ee_read(f, i), eerd(f, i));
	/* A sequential read continues into the next word while CS stays high. */
	eecd = ee_start(f);
	ee_out(f, &eecd, E1000_EE_READ_OPCODE, 3);
	ee_out(f, &eecd, 0, 6);
	assert_int_equal(ee_in(f, eecd), 0x5452);
	assert_int_equal(ee_in(f, eecd), 0x1200);
	ee_stop(f, &eecd);
	/* Leading zeros before the start bit are ignored. */
	eecd = ee_start(f);
	ee_out(f, &eecd, 0, 2);
	ee_out(f, &eecd, E1000_EE_READ_OPCODE, 3);
	ee_out(f, &eecd, 2, 6);
	assert_int_equal(ee_in(f, eecd), 0x5634);
	ee_stop(f, &eecd);
	/* Writes need EWEN first. */
	ee_cmd(f, 5, 0x30, 0xBEEF); /* WRITE while disabled */
	assert_int_equal(eerd(f, 0x30), 0);
	ee_cmd(f, 4, 0x30, -1); /* EWEN: 100 11xxxx */
	ee_cmd(f, 5, 0x30, 0xBEEF);
	assert_int_equal(eerd(f, 0x30), 0xBEEF);
	assert_int_equal(ee_read(f, 0x30), 0xBEEF);
	ee_cmd(f, 7, 0x30, -1); /* ERASE */
	assert_int_equal(eerd(f, 0x30), 0xFFFF);
	ee_cmd(f, 4, 0x10, 0x1234); /* WRAL: 100 01xxxx */
	assert_int_equal(eerd(f, 0x3F), 0x1234);
	assert_int_equal(eerd(f, 0x00), 0x1234);
	ee_cmd(f, 4, 0x20, -1); /* ERAL */
	assert_int_equal(eerd(f, 0x07), 0xFFFF);
	ee_cmd(f, 4, 0x00, -1); /* EWDS */
	ee_cmd(f, 5, 0x01, 0x0000);
	assert_int_equal(eerd(f, 0x01), 0xFFFF);
}

static uint32_t mdic(struct fx *f, unsigned phy, unsigned reg, uint32_t op, uint16_t data)
{
	w32(f, E1000_MDIC, data | reg << E1000_MDIC_REG_SHIFT | phy << E1000_MDIC_PHY_SHIFT | op);
	return r32(f, E1000_MDIC);
}

static uint16_t phy_rd(struct fx *f, unsigned reg)
{
	uint32_t v = mdic(f, 1, reg, E1000_MDIC_OP_READ, 0);

	assert_true(v & E1000_MDIC_READY);
	assert_false(v & E1000_MDIC_ERROR);
	return (uint16_t)v;
}

static void phy_wr(struct fx *f, unsigned reg, uint16_t v)
{
	uint32_t r = mdic(f, 1, reg, E1000_MDIC_OP_WRITE, v);

	assert_true(r & E1000_MDIC_READY);
	assert_false(r & E1000_MDIC_ERROR);
}

static void test_phy(void **state)
{
	struct fx *f = *state;

	/* Linux matches M88E1011_I_PHY_ID 0x01410C20 (revision masked). */
	assert_int_equal(((uint32_t)phy_rd(f, PHY_ID1) << 16 | phy_rd(f, PHY_ID2)) & ~0xFU,
			 0x01410C20);
	assert_int_equal(phy_rd(f, PHY_STATUS) & (PHY_STATUS_LINK | PHY_STATUS_ANEG_DONE),
			 PHY_STATUS_LINK | PHY_STATUS_ANEG_DONE);
	assert_int_equal(phy_rd(f, PHY_M88_SPEC_STATUS) & 0xEC00, 0xAC00);
	assert_int_equal(phy_rd(f, PHY_GBSR) & 0x0C00, 0x0C00);
	assert_int_equal(phy_rd(f, PHY_EXT_STATUS), 0x3000);
	/* Another PHY address, or a reserved opcode: an error. */
	assert_true(mdic(f, 2, PHY_ID1, E1000_MDIC_OP_READ, 0) & E1000_MDIC_ERROR);
	assert_true(mdic(f, 1, PHY_ID1, 3U << 26, 0) & E1000_MDIC_ERROR);
	/* Writable and read-only registers. */
	phy_wr(f, PHY_ANAR, 0x0DE1);
	assert_int_equal(phy_rd(f, PHY_ANAR), 0x0DE1);
	phy_wr(f, PHY_ID1, 0);
	assert_int_equal(phy_rd(f, PHY_ID1), 0x0141);
	phy_wr(f, PHY_STATUS, 0);
	assert_true(phy_rd(f, PHY_STATUS) & PHY_STATUS_LINK);
	/* Restarting autonegotiation completes at once and the bit clears itself. */
	phy_wr(f, PHY_CTRL, 0x1140 | PHY_CTRL_ANEG_RESTART);
	assert_int_equal(phy_rd(f, PHY_CTRL), 0x1140);
	assert_true(phy_rd(f, PHY_STATUS) & PHY_STATUS_ANEG_DONE);
	/* Forced speed: link without autonegotiation. */
	phy_wr(f, PHY_CTRL, 0x0140);
	assert_int_equal(phy_rd(f, PHY_STATUS) & (PHY_STATUS_LINK | PHY_STATUS_ANEG_DONE),
			 PHY_STATUS_LINK);
	assert_int_equal(phy_rd(f, PHY_ANLPAR), 0);
	/* PHY reset: defaults again, the reset bit reads back clear. */
	phy_wr(f, PHY_CTRL, PHY_CTRL_RESET | 0x1140);
	assert_int_equal(phy_rd(f, PHY_CTRL), 0x1140);
	assert_int_equal(phy_rd(f, PHY_ANAR), 0x01E1);
	/* CTRL.PHY_RST holds the PHY in reset: no link. */
	phy_wr(f, PHY_ANAR, 0x0DE1);
	w32(f, E1000_CTRL, r32(f, E1000_CTRL) | E1000_CTRL_PHY_RST);
	assert_false(phy_rd(f, PHY_STATUS) & PHY_STATUS_LINK);
	w32(f, E1000_CTRL, r32(f, E1000_CTRL) & ~E1000_CTRL_PHY_RST);
	assert_int_equal(phy_rd(f, PHY_ANAR), 0x01E1);
	/* MDIC with I set raises MDAC. */
	w32(f, E1000_IMS, E1000_ICR_MDAC);
	(void)r32(f, E1000_ICR);
	w32(f, E1000_MDIC,
	    PHY_ID1 << E1000_MDIC_REG_SHIFT | 1 << E1000_MDIC_PHY_SHIFT | E1000_MDIC_OP_READ |
		    E1000_MDIC_INT_EN);
	assert_true(r32(f, E1000_ICR) & E1000_ICR_MDAC);
}

static void test_link_and_lsc(void **state)
{
	struct fx *f = *state;
	unsigned gsi = pci_intx_gsi(SLOT, 1);

	w32(f, E1000_IMS, E1000_ICR_LSC);
	assert_int_equal(irq_level[gsi], 0);
	w32(f, E1000_CTRL, r32(f, E1000_CTRL) | E1000_CTRL_SLU);
	assert_true(r32(f, E1000_STATUS) & E1000_STATUS_LU);
	assert_int_equal(irq_level[gsi], 1);
	assert_true(r32(f, E1000_ICR) & E1000_ICR_LSC);
	assert_int_equal(irq_level[gsi], 0);
	/* Powering the PHY down takes the link away: LSC again. */
	phy_wr(f, PHY_CTRL, 0x1140 | PHY_CTRL_POWER_DOWN);
	assert_false(r32(f, E1000_STATUS) & E1000_STATUS_LU);
	assert_false(phy_rd(f, PHY_STATUS) & PHY_STATUS_LINK);
	assert_true(r32(f, E1000_ICR) & E1000_ICR_LSC);
	phy_wr(f, PHY_CTRL, 0x1140);
	assert_true(r32(f, E1000_STATUS) & E1000_STATUS_LU);
	assert_true(r32(f, E1000_ICR) & E1000_ICR_LSC);
	/* A write that changes nothing about the link raises nothing. */
	phy_wr(f, PHY_ANAR, 0x01E1);
	assert_int_equal(r32(f, E1000_ICR), 0);
}

/* ---- interrupts ---- */

static void test_interrupt_causes(void **state)
{
	struct fx *f = *state;
	unsigned gsi = pci_intx_gsi(SLOT, 1);

	/* A masked cause is recorded but does not interrupt. */
	w32(f, E1000_ICS, E1000_ICR_RXT0 | E1000_ICR_TXDW);
	assert_int_equal(irq_level[gsi], 0);
	w32(f, E1000_IMS, E1000_ICR_RXT0);
	assert_int_equal(r32(f, E1000_IMS), E1000_ICR_RXT0);
	assert_int_equal(irq_level[gsi], 1);
	w32(f, E1000_IMC, E1000_ICR_RXT0);
	assert_int_equal(irq_level[gsi], 0);
	assert_int_equal(r32(f, E1000_IMS), 0);
	w32(f, E1000_IMS, E1000_ICR_RXT0 | E1000_ICR_TXDW);
	assert_int_equal(irq_level[gsi], 1);
	/* Write-1-to-clear one cause: the other keeps the line up. */
	w32(f, E1000_ICR, E1000_ICR_RXT0);
	assert_int_equal(irq_level[gsi], 1);
	/* Reading clears all and lowers the line; ICS and IMC read as 0. */
	assert_int_equal(r32(f, E1000_ICR), E1000_ICR_TXDW);
	assert_int_equal(irq_level[gsi], 0);
	assert_int_equal(r32(f, E1000_ICR), 0);
	assert_int_equal(r32(f, E1000_ICS), 0);
	assert_int_equal(r32(f, E1000_IMC), 0);
	/* Bits the device does not have are not set. */
	w32(f, E1000_ICS, 0xFFFFFFFF);
	assert_int_equal(r32(f, E1000_ICR), E1000_ICR_ALL);
}

static void test_msi(void **state)
{
	struct fx *f = *state;
	unsigned cap = pci_get_cfg8(f->pd, PCIR_CAP_PTR), gsi = pci_intx_gsi(SLOT, 1);
	uint8_t b[4];

	while (cap && pci_get_cfg8(f->pd, cap) != PCIY_MSI)
		cap = pci_get_cfg8(f->pd, cap + 1);
	assert_true(cap);
	/* Enable MSI through configuration space (mechanism #1). */
	io_put(b, 4, 0x80000000U | SLOT << 11 | (cap & 0xFC));
	bus_access(&f->vm.pio, 0xCF8, b, 4, true);
	io_put(b, 2, 0x0001);
	bus_access(&f->vm.pio, 0xCFC + ((cap + 2) & 3), b, 2, true);
	assert_true(pci_msi_enabled(f->pd));
	w32(f, E1000_IMS, E1000_ICR_RXT0 | E1000_ICR_TXDW);
	w32(f, E1000_ICS, E1000_ICR_RXT0);
	assert_int_equal(msi_count, 1);
	assert_int_equal(irq_level[gsi], 0);
	/* No new message while the cause is unacknowledged. */
	w32(f, E1000_ICS, E1000_ICR_TXDW);
	assert_int_equal(msi_count, 1);
	/* Clearing one of two: what is left needs a message of its own. */
	w32(f, E1000_ICR, E1000_ICR_RXT0);
	assert_int_equal(msi_count, 2);
	(void)r32(f, E1000_ICR);
	w32(f, E1000_ICS, E1000_ICR_RXT0);
	assert_int_equal(msi_count, 3);
}

static void test_itr(void **state)
{
	struct fx *f = *state;
	unsigned gsi = pci_intx_gsi(SLOT, 1);

	w32(f, E1000_ITR, 1000); /* 256 us between interrupts */
	w32(f, E1000_IMS, E1000_ICR_RXT0);
	w32(f, E1000_ICS, E1000_ICR_RXT0);
	assert_int_equal(irq_raised[gsi], 1);
	(void)r32(f, E1000_ICR);
	w32(f, E1000_ICS, E1000_ICR_RXT0);
	assert_int_equal(irq_level[gsi], 0); /* throttled */
	advance(f, 200000);
	assert_int_equal(irq_level[gsi], 0);
	advance(f, 57000);
	assert_int_equal(irq_level[gsi], 1);
	assert_int_equal(irq_raised[gsi], 2);
	/* A cause acknowledged while throttled needs no interrupt at all. */
	(void)r32(f, E1000_ICR);
	w32(f, E1000_ICS, E1000_ICR_RXT0);
	w32(f, E1000_ICR, E1000_ICR_RXT0);
	advance(f, 300000);
	assert_int_equal(irq_raised[gsi], 2);
	/* ITR 0: no throttling. */
	w32(f, E1000_ITR, 0);
	w32(f, E1000_ICS, E1000_ICR_RXT0);
	assert_int_equal(irq_raised[gsi], 3);
	(void)r32(f, E1000_ICR);
	w32(f, E1000_ICS, E1000_ICR_RXT0);
	assert_int_equal(irq_raised[gsi], 4);
}

/* ---- transmit ---- */

static void test_tx_legacy(void **state)
{
	struct fx *f = *state;
	uint8_t frame[300], mac[6];
	size_t len;
	uint32_t i;

	drv_up(f, 0);
	my_mac(f, mac);
	len = ipv4_pkt(frame, peer_mac, mac, false, 200, 1);
	w32(f, E1000_IMS, E1000_ICR_TXDW | E1000_ICR_TXQE);
	/* One packet in two buffers, RS on the last. */
	tx_legacy(f, 0, frame, 100, 0, 0);
	i = tx_legacy(f, 1, frame + 100, len - 100, E1000_TXD_CMD_EOP | E1000_TXD_CMD_RS, 0);
	tx_kick(f);
	assert_int_equal(nsent, 1);
	assert_int_equal(sent_len[0], len);
	assert_memory_equal(sent[0], frame, len);
	assert_int_equal(r32(f, E1000_TDH), f->tdt);
	assert_int_equal(txd_sta(f, 0) & E1000_TXD_STAT_DD, 0); /* no RS, no write-back */
	assert_true(txd_sta(f, i) & E1000_TXD_STAT_DD);
	assert_int_equal(r32(f, E1000_ICR) & (E1000_ICR_TXDW | E1000_ICR_TXQE),
			 E1000_ICR_TXDW | E1000_ICR_TXQE);
	/* A short frame is padded to 60 bytes (TCTL.PSP). */
	tx_legacy(f, 2, frame, 42, E1000_TXD_CMD_EOP, 0);
	tx_kick(f);
	assert_int_equal(sent_len[1], 60);
	assert_memory_equal(sent[1], frame, 42);
	for (int k = 42; k < 60; k++)
		assert_int_equal(sent[1][k], 0);
	/* Statistics: 2 good packets with their FCS; clear on read. */
	assert_int_equal(r32(f, E1000_STATS + E1000_ST_GPTC), 2);
	assert_int_equal(r32(f, E1000_STATS + E1000_ST_GPTC), 0);
	assert_int_equal(r32(f, E1000_STATS + E1000_ST_GOTCL), len + 4 + 64);
	assert_int_equal(r32(f, E1000_STATS + E1000_ST_GOTCH), 0);
	assert_int_equal(r32(f, E1000_STATS + E1000_ST_GOTCL), 0); /* high read cleared both */
	assert_int_equal(r32(f, E1000_STATS + E1000_ST_PTC64), 1);
	assert_int_equal(r32(f, E1000_STATS + E1000_ST_PTC255), 1);
	/* Null address and zero length descriptors transfer nothing but complete. */
	tx_add(f, 0, 100 | E1000_TXD_CMD_RS, 0);
	i = tx_add(f, TXB(3), 0 | E1000_TXD_CMD_RS | E1000_TXD_CMD_EOP, 0);
	tx_kick(f);
	assert_int_equal(nsent, 2);
	assert_true(txd_sta(f, i) & E1000_TXD_STAT_DD);
	/* Transmit disabled: nothing moves until it is enabled again. */
	w32(f, E1000_TCTL, 0);
	tx_legacy(f, 4, frame, len, E1000_TXD_CMD_EOP, 0);
	tx_kick(f);
	assert_int_equal(nsent, 2);
	w32(f, E1000_TCTL, E1000_TCTL_EN);
	assert_int_equal(nsent, 3);
}

/* Jumbo frames go out whole over several descriptors; one the unit cannot assemble does not. */
static void test_tx_jumbo(void **state)
{
	struct fx *f = *state;
	static uint8_t frame[E1000_TX_MAX + 1];
	uint8_t mac[6];
	uint32_t i;

	drv_up(f, 0);
	my_mac(f, mac);
	fill(frame, sizeof(frame), 91);
	memcpy(frame, peer_mac, 6);
	memcpy(frame + 6, mac, 6);
	/* 9014 bytes (a 9000-byte MTU) in three buffers. */
	tx_legacy(f, 0, frame, 4000, 0, 0);
	tx_legacy(f, 1, frame + 4000, 4000, 0, 0);
	i = tx_legacy(f, 2, frame + 8000, 1014, E1000_TXD_CMD_EOP | E1000_TXD_CMD_RS, 0);
	tx_kick(f);
	assert_int_equal(nsent, 1);
	assert_int_equal(sent_len[0], 9014);
	assert_memory_equal(sent[0], frame, 9014);
	assert_true(txd_sta(f, i) & E1000_TXD_STAT_DD);
	/* The largest packet the unit assembles, in one buffer. */
	tx_legacy(f, 3, frame, E1000_TX_MAX, E1000_TXD_CMD_EOP, 0);
	tx_kick(f);
	assert_int_equal(nsent, 2);
	assert_int_equal(sent_len[1], E1000_TX_MAX);
	assert_memory_equal(sent[1], frame, E1000_TX_MAX);
	/* One byte more: dropped, its descriptors still completed, the next packet goes. */
	tx_legacy(f, 4, frame, E1000_TX_MAX - 100, 0, 0);
	i = tx_legacy(f, 5, frame, 101, E1000_TXD_CMD_EOP | E1000_TXD_CMD_RS, 0);
	tx_legacy(f, 6, frame, 64, E1000_TXD_CMD_EOP, 0);
	tx_kick(f);
	assert_true(txd_sta(f, i) & E1000_TXD_STAT_DD);
	assert_int_equal(nsent, 3);
	assert_int_equal(sent_len[2], 64);
	assert_int_equal(r32(f, E1000_TDH), f->tdt);
	/* Counted as good packets, in no size bucket up to 1522. */
	assert_int_equal(r32(f, E1000_STATS + E1000_ST_GPTC), 3);
	assert_int_equal(r32(f, E1000_STATS + E1000_ST_PTC1522), 0);
	assert_int_equal(r32(f, E1000_STATS + E1000_ST_PTC64), 0);
	assert_int_equal(r32(f, E1000_STATS + E1000_ST_PTC127), 1);
}

static void test_tx_waits_for_eop(void **state)
{
	struct fx *f = *state;
	uint8_t frame[200], mac[6];
	size_t len;

	drv_up(f, 0);
	my_mac(f, mac);
	len = ipv4_pkt(frame, peer_mac, mac, true, 100, 2);
	tx_legacy(f, 0, frame, 50, E1000_TXD_CMD_RS, 0);
	tx_kick(f);
	/* Half a packet: nothing sent, TDH stays at its first descriptor. */
	assert_int_equal(nsent, 0);
	assert_int_equal(r32(f, E1000_TDH), 0);
	assert_int_equal(txd_sta(f, 0), 0);
	tx_legacy(f, 1, frame + 50, len - 50, E1000_TXD_CMD_EOP | E1000_TXD_CMD_RS, 0);
	tx_kick(f);
	assert_int_equal(nsent, 1);
	assert_memory_equal(sent[0], frame, len);
	assert_int_equal(r32(f, E1000_TDH), 2);
}

static void test_tx_legacy_checksum(void **state)
{
	struct fx *f = *state;
	uint8_t frame[600], mac[6];
	size_t len;

	drv_up(f, 0);
	my_mac(f, mac);
	len = ipv4_pkt(frame, peer_mac, mac, true, 500, 3);
	/* What a driver leaves for the device: the pseudo-header sum in the field. */
	{
		uint32_t ps = ref_sum(frame + 26, 8, 0) + 6 + (uint32_t)(len - 34);

		while (ps >> 16)
			ps = (ps & 0xFFFF) + (ps >> 16);
		wbe16(frame + 34 + 16, (uint16_t)ps);
	}
	/* CSS = start of TCP, CSO = its checksum field. */
	tx_legacy(f, 0, frame, len, E1000_TXD_CMD_EOP | E1000_TXD_CMD_IC | (34 + 16) << 16,
		  34 << 8);
	tx_kick(f);
	assert_int_equal(nsent, 1);
	assert_true(l4_ok_v4(sent[0] + 14));
	/* CSO beyond the packet: the checksum is not inserted. */
	tx_legacy(f, 1, frame, 100, E1000_TXD_CMD_EOP | E1000_TXD_CMD_IC | 99U << 16, 34 << 8);
	tx_kick(f);
	assert_memory_equal(sent[1], frame, 100);
}

/* A context descriptor for checksums (TSE off) or TSO. */
static uint32_t tx_ctx(struct fx *f, uint8_t ipcss, uint8_t ipcso, uint16_t ipcse, uint8_t tucss,
		       uint8_t tucso, uint16_t tucse, uint32_t tucmd, uint32_t paylen,
		       uint8_t hdrlen, uint16_t mss)
{
	uint64_t lo = ipcss | (uint64_t)ipcso << 8 | (uint64_t)ipcse << 16 | (uint64_t)tucss << 32 |
		      (uint64_t)tucso << 40 | (uint64_t)tucse << 48;

	return tx_add(f, lo, E1000_TXD_CMD_DEXT | E1000_TXD_DTYP_CTX | tucmd | paylen,
		      (uint32_t)hdrlen << 8 | (uint32_t)mss << 16);
}

static uint32_t tx_data(struct fx *f, unsigned b, const void *p, size_t len, uint32_t cmd,
			uint32_t popts, uint16_t vlan)
{
	memcpy(gpa(f, TXB(b), len), p, len);
	return tx_add(f, TXB(b), E1000_TXD_CMD_DEXT | E1000_TXD_DTYP_DATA | cmd | (uint32_t)len,
		      popts | (uint32_t)vlan << 16);
}

/*
 * A context descriptor between a packet's data descriptors: it is taken (DD) and transfers
 * nothing; the packet goes out once, whole, with every byte of both data descriptors.
 */
static void test_tx_context_inside_packet(void **state)
{
	struct fx *f = *state;
	uint8_t frame[1600], mac[6];
	uint32_t d0, c, d1;
	size_t len;

	drv_up(f, 0);
	my_mac(f, mac);
	len = ipv4_pkt(frame, peer_mac, mac, true, 700, 21);
	d0 = tx_data(f, 0, frame, 60, E1000_TXD_CMD_RS, 0, 0);
	c = tx_ctx(f, 14, 24, 33, 34, 50, 0,
		   E1000_TXC_TUCMD_IP | E1000_TXC_TUCMD_TCP | E1000_TXD_CMD_RS, 0, 0, 0);
	d1 = tx_data(f, 1, frame + 60, len - 60, E1000_TXD_CMD_EOP | E1000_TXD_CMD_RS, 0, 0);
	tx_kick(f);
	assert_int_equal(nsent, 1);
	assert_int_equal(sent_len[0], len);
	assert_memory_equal(sent[0], frame, len);
	assert_true(txd_sta(f, d0) & E1000_TXD_STAT_DD);
	assert_true(txd_sta(f, c) & E1000_TXD_STAT_DD);
	assert_true(txd_sta(f, d1) & E1000_TXD_STAT_DD);
	assert_int_equal(r32(f, E1000_TDH), f->tdt);
}

static void test_tx_context_checksums(void **state)
{
	struct fx *f = *state;
	uint8_t frame[1600], mac[6];
	size_t len;
	uint32_t c;

	drv_up(f, 0);
	my_mac(f, mac);
	for (int udp = 0; udp < 2; udp++) {
		uint8_t *ip = frame + 14;
		unsigned cso = udp ? 6 : 16;
		uint32_t ps;

		len = ipv4_pkt(frame, peer_mac, mac, !udp, 1000 + udp * 333, (uint8_t)(4 + udp));
		/* IP checksum zero, L4 field the pseudo-header sum: as Linux leaves them. */
		wbe16(ip + 10, 0);
		ps = ref_sum(ip + 12, 8, 0) + ip[9] + (uint32_t)(len - 34);
		while (ps >> 16)
			ps = (ps & 0xFFFF) + (ps >> 16);
		wbe16(ip + 20 + cso, (uint16_t)ps);
		c = tx_ctx(f, 14, 24, 33, 34, (uint8_t)(34 + cso), 0,
			   E1000_TXC_TUCMD_IP | (udp ? 0 : E1000_TXC_TUCMD_TCP) | E1000_TXD_CMD_RS,
			   0, 0, 0);
		/* Two data descriptors; POPTS comes from the first. */
		tx_data(f, 0, frame, 60, 0, E1000_TXD_POPTS_IXSM | E1000_TXD_POPTS_TXSM, 0);
		tx_data(f, 1, frame + 60, len - 60, E1000_TXD_CMD_EOP, 0, 0);
		tx_kick(f);
		assert_int_equal(nsent, (unsigned)udp + 1);
		assert_int_equal(sent_len[udp], len);
		assert_true(ipv4_ok(sent[udp] + 14));
		assert_true(l4_ok_v4(sent[udp] + 14));
		assert_memory_equal(sent[udp] + 34 + 20, frame + 34 + 20, len - 54);
		assert_true(txd_sta(f, c) & E1000_TXD_STAT_DD);
	}
	/* Only IXSM: the TCP field is left as the guest wrote it. */
	len = ipv4_pkt(frame, peer_mac, mac, true, 100, 6);
	wbe16(frame + 24, 0);
	wbe16(frame + 50, 0xABCD);
	tx_ctx(f, 14, 24, 33, 34, 50, 0, E1000_TXC_TUCMD_IP | E1000_TXC_TUCMD_TCP, 0, 0, 0);
	tx_data(f, 2, frame, len, E1000_TXD_CMD_EOP, E1000_TXD_POPTS_IXSM, 0);
	tx_kick(f);
	assert_true(ipv4_ok(sent[2] + 14));
	assert_int_equal(be16(sent[2] + 50), 0xABCD);
	/* A TUCSE that ends the sum early covers only that range. */
	tx_ctx(f, 0, 0, 0, 14, 12, 19, 0, 0, 0, 0);
	memset(frame, 0, 64);
	fill(frame + 14, 6, 1);
	tx_data(f, 3, frame, 64, E1000_TXD_CMD_EOP, E1000_TXD_POPTS_TXSM, 0);
	tx_kick(f);
	assert_int_equal(be16(sent[3] + 12), (uint16_t)~ref_sum(frame + 14, 6, 0));
}

/* TSO of @plen payload bytes at @mss: check every segment against the original. */
static void tso_check(struct fx *f, bool ipv6, bool udp, size_t plen, uint16_t mss, unsigned split)
{
	static uint8_t frame[70000];
	uint8_t mac[6], *ip = frame + 14;
	unsigned hdr = ipv6 ? 74 : udp ? 42 : 54, l3 = ipv6 ? 40 : 20;
	unsigned tucso = 14 + l3 + (udp ? 6 : 16);
	unsigned nseg = (unsigned)((plen + mss - 1) / mss), first = nsent;
	uint32_t seq0 = 0, ps;
	size_t len, off = 0;

	my_mac(f, mac);
	if (ipv6) {
		len = ipv6_tcp_pkt(frame, peer_mac, mac, plen);
		ps = ref_sum(ip + 8, 32, 0) + 6;
	} else {
		len = ipv4_pkt(frame, peer_mac, mac, !udp, plen, 7);
		frame[14 + 20 + 13] |= 0x01; /* FIN: only the last segment may keep it */
		wbe16(ip + 10, 0);
		ps = ref_sum(ip + 12, 8, 0) + ip[9];
	}
	if (!udp)
		seq0 = be32(frame + 14 + l3 + 4);
	/* Linux's TSO: the pseudo-header sum without the length. */
	while (ps >> 16)
		ps = (ps & 0xFFFF) + (ps >> 16);
	wbe16(frame + tucso, (uint16_t)ps);
	tx_ctx(f, 14, ipv6 ? 0 : 24, ipv6 ? 0 : 33, (uint8_t)(14 + l3), (uint8_t)tucso, 0,
	       (ipv6 ? 0 : E1000_TXC_TUCMD_IP) | (udp ? 0 : E1000_TXC_TUCMD_TCP) |
		       E1000_TXC_TUCMD_TSE,
	       (uint32_t)plen, (uint8_t)hdr, mss);
	/* The header split over two descriptors, the payload over several. */
	tx_data(f, 0, frame, split, E1000_TXD_CMD_TSE,
		(ipv6 ? 0 : E1000_TXD_POPTS_IXSM) | E1000_TXD_POPTS_TXSM, 0);
	off = split;
	for (unsigned b = 1; off < len; b++) {
		size_t n = len - off < 9000 ? len - off : 9000;

		tx_data(f, b, frame + off, n,
			E1000_TXD_CMD_TSE |
				(off + n == len ? E1000_TXD_CMD_EOP | E1000_TXD_CMD_RS : 0),
			0, 0);
		off += n;
	}
	tx_kick(f);
	assert_int_equal(nsent - first, nseg);
	off = 0;
	for (unsigned s = 0; s < nseg; s++) {
		const uint8_t *g = sent[first + s], *gip = g + 14, *l4 = gip + l3;
		size_t seg = plen - off < mss ? plen - off : mss;
		bool last = s == nseg - 1;

		if (sent_len[first + s] != (hdr + seg < 60 ? 60 : hdr + seg))
			fail_msg("tso v6=%d udp=%d plen=%zu mss=%u: segment %u of %u is %zu bytes",
				 ipv6, udp, plen, mss, s, nseg, sent_len[first + s]);

		assert_int_equal(sent_len[first + s], hdr + seg < 60 ? 60 : hdr + seg);
		assert_memory_equal(g, frame, 14);
		assert_memory_equal(g + hdr, frame + hdr + off, seg);
		if (ipv6) {
			assert_int_equal(be16(gip + 4), hdr - 54 + seg);
			assert_true(l4_ok_v6(gip));
		} else {
			assert_int_equal(be16(gip + 2), hdr - 14 + seg);
			assert_int_equal(be16(gip + 4), 0x1234 + s);
			assert_true(ipv4_ok(gip));
			assert_true(l4_ok_v4(gip));
		}
		if (udp) {
			assert_int_equal(be16(l4 + 4), 8 + seg);
		} else {
			assert_int_equal(be32(l4 + 4), seq0 + off);
			/* FIN and PSH only on the last segment; ACK on all. */
			assert_int_equal(l4[13] & 0x09, last ? frame[14 + l3 + 13] & 0x09 : 0);
			assert_true(l4[13] & 0x10);
		}
		off += seg;
	}
}

static void test_tso(void **state)
{
	struct fx *f = *state;

	drv_up(f, 0);
	tso_check(f, false, false, 4000, 1000, 30); /* exact multiple */
	tso_check(f, false, false, 4321, 1448, 54);
	tso_check(f, false, false, 65000, 1460, 10);
	tso_check(f, false, true, 3000, 1000, 42); /* UDP */
	tso_check(f, true, false, 5000, 1440, 70); /* IPv6 */
	tso_check(f, false, false, 100, 1460, 54); /* one segment, smaller than MSS */
	assert_int_equal(r32(f, E1000_STATS + E1000_ST_TSCTC), 6);
	assert_int_equal(r32(f, E1000_STATS + E1000_ST_TSCTFC), 0);
}

static void test_tso_refused(void **state)
{
	struct fx *f = *state;
	uint8_t frame[6000] = { 0 }, mac[6];
	size_t len;

	drv_up(f, 0);
	my_mac(f, mac);
	len = ipv4_pkt(frame, peer_mac, mac, true, 2000, 8);
	/* MSS 0: the context is unusable, the packet dropped, its descriptors completed. */
	tx_ctx(f, 14, 24, 33, 34, 50, 0,
	       E1000_TXC_TUCMD_IP | E1000_TXC_TUCMD_TCP | E1000_TXC_TUCMD_TSE, 2000, 54, 0);
	tx_data(f, 0, frame, len, E1000_TXD_CMD_TSE | E1000_TXD_CMD_EOP | E1000_TXD_CMD_RS,
		E1000_TXD_POPTS_TXSM, 0);
	tx_kick(f);
	assert_int_equal(nsent, 0);
	assert_true(txd_sta(f, f->tdt - 1) & E1000_TXD_STAT_DD);
	/* The TCP header beyond HDRLEN: refused too. */
	tx_ctx(f, 14, 24, 33, 50, 66, 0,
	       E1000_TXC_TUCMD_IP | E1000_TXC_TUCMD_TCP | E1000_TXC_TUCMD_TSE, 2000, 54, 500);
	tx_data(f, 1, frame, len, E1000_TXD_CMD_TSE | E1000_TXD_CMD_EOP, E1000_TXD_POPTS_TXSM, 0);
	tx_kick(f);
	assert_int_equal(nsent, 0);
	/* PAYLEN shorter than the data: the segments up to PAYLEN go, the rest does not. */
	tx_ctx(f, 14, 24, 33, 34, 50, 0,
	       E1000_TXC_TUCMD_IP | E1000_TXC_TUCMD_TCP | E1000_TXC_TUCMD_TSE, 1000, 54, 500);
	tx_data(f, 2, frame, len, E1000_TXD_CMD_TSE | E1000_TXD_CMD_EOP, E1000_TXD_POPTS_TXSM, 0);
	tx_kick(f);
	assert_int_equal(nsent, 2);
	/* PAYLEN longer than the data: what came is sent, the last as last. */
	tx_ctx(f, 14, 24, 33, 34, 50, 0,
	       E1000_TXC_TUCMD_IP | E1000_TXC_TUCMD_TCP | E1000_TXC_TUCMD_TSE, 5000, 54, 1500);
	tx_data(f, 3, frame, len, E1000_TXD_CMD_TSE | E1000_TXD_CMD_EOP, E1000_TXD_POPTS_TXSM, 0);
	tx_kick(f);
	assert_int_equal(nsent, 4);
	assert_int_equal(sent_len[3], 54 + 500);
	assert_int_equal(r32(f, E1000_STATS + E1000_ST_TSCTFC), 4);
	/* A non-TSO packet longer than the unit assembles: dropped. */
	for (unsigned b = 0; b < 3; b++)
		tx_data(f, 4 + b, frame, 3000 + 3000 * (b == 2), b == 2 ? E1000_TXD_CMD_EOP : 0, 0,
			0);
	for (unsigned b = 0; b < 5; b++)
		tx_add(f, TXB(8), E1000_TXD_CMD_DEXT | E1000_TXD_DTYP_DATA | 3000, 0);
	tx_add(f, TXB(8), E1000_TXD_CMD_DEXT | E1000_TXD_DTYP_DATA | E1000_TXD_CMD_EOP | 3000, 0);
	tx_kick(f);
	assert_int_equal(nsent, 5); /* 12000 bytes went; 18000 did not */
	assert_int_equal(sent_len[4], 12000);
}

static void test_tx_vlan_insert(void **state)
{
	struct fx *f = *state;
	uint8_t frame[200], mac[6];
	size_t len;

	drv_up(f, 0);
	my_mac(f, mac);
	len = ipv4_pkt(frame, peer_mac, mac, false, 100, 9);
	/* VLE without CTRL.VME: no tag. */
	tx_legacy(f, 0, frame, len, E1000_TXD_CMD_EOP | E1000_TXD_CMD_VLE, 0x0123U << 16);
	tx_kick(f);
	assert_int_equal(sent_len[0], len);
	w32(f, E1000_CTRL, r32(f, E1000_CTRL) | E1000_CTRL_VME);
	tx_legacy(f, 1, frame, len, E1000_TXD_CMD_EOP | E1000_TXD_CMD_VLE, 0x2123U << 16);
	tx_data(f, 2, frame, len, E1000_TXD_CMD_EOP | E1000_TXD_CMD_VLE, 0, 0x0456);
	tx_kick(f);
	for (unsigned i = 1; i < 3; i++) {
		assert_int_equal(sent_len[i], len + 4);
		assert_memory_equal(sent[i], frame, 12);
		assert_int_equal(be16(sent[i] + 12), 0x8100);
		assert_int_equal(be16(sent[i] + 14), i == 1 ? 0x2123 : 0x0456);
		assert_memory_equal(sent[i] + 16, frame + 12, len - 12);
	}
}

static void test_tx_bad_buffers_and_rings(void **state)
{
	struct fx *f = *state;
	uint8_t frame[100] = { 0 };
	uint32_t i;

	drv_up(f, 0);
	memcpy(frame, peer_mac, 6);
	/* A buffer outside RAM (and one wrapping 2^64): dropped, completed. */
	tx_add(f, 0xFFFFFFFF0000ULL, 64 | E1000_TXD_CMD_EOP | E1000_TXD_CMD_RS, 0);
	i = tx_add(f, ~0ULL - 8, 64 | E1000_TXD_CMD_EOP | E1000_TXD_CMD_RS, 0);
	tx_kick(f);
	assert_int_equal(nsent, 0);
	assert_true(txd_sta(f, i) & E1000_TXD_STAT_DD);
	/* A reserved descriptor type transfers nothing but ends the packet. */
	tx_add(f, TXB(0), E1000_TXD_CMD_DEXT | (7U << 20) | E1000_TXD_CMD_EOP | 64, 0);
	tx_kick(f);
	assert_int_equal(nsent, 0);
	assert_int_equal(r32(f, E1000_TDH), f->tdt);
	/* TDT beyond the ring: transmit stops, khyve goes on. */
	tx_legacy(f, 0, frame, 60, E1000_TXD_CMD_EOP, 0);
	w32(f, E1000_TDT, NDESC + 5);
	assert_int_equal(nsent, 0);
	w32(f, E1000_TDT, f->tdt);
	assert_int_equal(nsent, 1);
	/* A ring outside guest RAM: nothing read from there. */
	w32(f, E1000_TCTL, 0);
	w32(f, E1000_TDBAL, 0xF0000000);
	w32(f, E1000_TDBAH, 0x10);
	w32(f, E1000_TDH, 0);
	w32(f, E1000_TDT, 3);
	w32(f, E1000_TCTL, E1000_TCTL_EN);
	assert_int_equal(nsent, 1);
	assert_int_equal(r32(f, E1000_TDH), 0);
	/* A ring ending past the end of RAM. */
	w32(f, E1000_TDBAH, 0);
	w32(f, E1000_TDBAL, (uint32_t)(RAM_SIZE - 512));
	w32(f, E1000_TDT, 3);
	assert_int_equal(r32(f, E1000_TDH), 0);
}

/* ---- receive ---- */

static void test_rx_basic_and_fcs(void **state)
{
	struct fx *f = *state;
	uint8_t frame[1600], mac[6];
	const uint8_t *data;
	struct rxd r;
	size_t len;
	uint32_t crc;
	unsigned gsi = pci_intx_gsi(SLOT, 1);

	drv_up(f, 0);
	my_mac(f, mac);
	w32(f, E1000_IMS, E1000_ICR_RXT0);
	len = ipv4_pkt(frame, mac, peer_mac, true, 1000, 10);
	inject(f, frame, len);
	assert_true(rx_next(f, &r, &data));
	/* Without SECRC the FCS follows the data and counts in the length. */
	assert_int_equal(r.len, len + 4);
	assert_memory_equal(data, frame, len);
	crc = ref_crc32(frame, len);
	assert_memory_equal(data + len, &crc, 4);
	assert_int_equal(r.status & (E1000_RXD_STAT_DD | E1000_RXD_STAT_EOP | E1000_RXD_STAT_PIF),
			 E1000_RXD_STAT_DD | E1000_RXD_STAT_EOP);
	assert_int_equal(r.errors, 0);
	/* The packet checksum covers everything from PCSS (0) to the end of the FCS. */
	{
		uint8_t all[1604];

		memcpy(all, frame, len);
		memcpy(all + len, &crc, 4);
		assert_int_equal(r.csum, ref_sum(all, len + 4, 0));
		w32(f, E1000_RXCSUM, r32(f, E1000_RXCSUM) | 15); /* PCSS 15: odd */
		inject(f, frame, len);
		assert_true(rx_next(f, &r, &data));
		assert_int_equal(r.csum, ref_sum(all + 15, len + 4 - 15, 0));
	}
	assert_int_equal(irq_level[gsi], 1); /* RDTR 0: at once */
	assert_int_equal(r32(f, E1000_RDH), 2);
	/* SECRC: no FCS. */
	w32(f, E1000_RCTL, r32(f, E1000_RCTL) | E1000_RCTL_SECRC);
	inject(f, frame, len);
	assert_true(rx_next(f, &r, &data));
	assert_int_equal(r.len, len);
	/* A runt from the network is padded to the 60-byte minimum. */
	inject(f, frame, 42);
	assert_true(rx_next(f, &r, &data));
	assert_int_equal(r.len, 60);
	assert_memory_equal(data, frame, 42);
	for (int k = 42; k < 60; k++)
		assert_int_equal(data[k], 0);
	/* Not even a header: counted undersize, dropped. */
	inject(f, frame, 10);
	assert_false(rx_next(f, &r, &data));
	assert_int_equal(r32(f, E1000_STATS + E1000_ST_RUC), 1);
	assert_int_equal(r32(f, E1000_STATS + E1000_ST_GPRC), 4);
	assert_int_equal(r32(f, E1000_STATS + E1000_ST_TPR), 4);
	assert_int_equal(r32(f, E1000_STATS + E1000_ST_PRC1522), 3);
	assert_int_equal(r32(f, E1000_STATS + E1000_ST_PRC64), 1);
}

static void test_rx_disabled_or_no_link(void **state)
{
	struct fx *f = *state;
	uint8_t frame[100], mac[6];
	const uint8_t *data;
	struct rxd r;

	drv_up(f, 0);
	my_mac(f, mac);
	eth(frame, mac, peer_mac, 0x0800);
	w32(f, E1000_RCTL, r32(f, E1000_RCTL) & ~E1000_RCTL_EN);
	inject(f, frame, 60);
	w32(f, E1000_RCTL, r32(f, E1000_RCTL) | E1000_RCTL_EN);
	assert_false(rx_next(f, &r, &data));
	w32(f, E1000_CTRL, r32(f, E1000_CTRL) & ~E1000_CTRL_SLU);
	inject(f, frame, 60);
	w32(f, E1000_CTRL, r32(f, E1000_CTRL) | E1000_CTRL_SLU);
	assert_false(rx_next(f, &r, &data));
	inject(f, frame, 60);
	assert_true(rx_next(f, &r, &data));
}

static bool rx_takes(struct fx *f, const uint8_t *dst, bool *pif)
{
	uint8_t frame[60] = { 0 };
	const uint8_t *data;
	struct rxd r;

	eth(frame, dst, peer_mac, 0x0800);
	inject(f, frame, sizeof(frame));
	if (!rx_next(f, &r, &data))
		return false;
	*pif = r.status & E1000_RXD_STAT_PIF;
	return true;
}

static void test_rx_filters(void **state)
{
	struct fx *f = *state;
	uint8_t mac[6], other[6] = { 0x52, 0x54, 0, 0, 0, 9 },
			mc[6] = { 0x01, 0x00, 0x5E, 0x01, 0x23, 0x45 };
	uint8_t mc2[6] = { 0x33, 0x33, 0, 0, 0, 1 };
	bool pif;

	drv_up(f, 0);
	my_mac(f, mac);
	assert_true(rx_takes(f, mac, &pif));
	assert_false(pif);
	assert_false(rx_takes(f, other, &pif));
	assert_true(rx_takes(f, bcast, &pif));
	/* Broadcast without BAM. */
	w32(f, E1000_RCTL, r32(f, E1000_RCTL) & ~E1000_RCTL_BAM);
	assert_false(rx_takes(f, bcast, &pif));
	/* Unicast promiscuous. */
	w32(f, E1000_RCTL, r32(f, E1000_RCTL) | E1000_RCTL_UPE);
	assert_true(rx_takes(f, other, &pif));
	assert_false(rx_takes(f, mc, &pif));
	w32(f, E1000_RCTL, r32(f, E1000_RCTL) & ~E1000_RCTL_UPE);
	/* A second exact address in RA[1]. */
	w32(f, E1000_RA + 8, 0x00005452);
	w32(f, E1000_RA + 12, 0x80000900);
	assert_true(rx_takes(f, other, &pif));
	assert_int_equal(r32(f, E1000_RA + 12), 0x80000900);
	w32(f, E1000_RA + 12, 0x0000FFFF | 1U << 16); /* AV clear: invalid again */
	assert_false(rx_takes(f, other, &pif));
	/* AS 01 matches the source address. */
	w32(f, E1000_RA + 8,
	    (uint32_t)peer_mac[0] | peer_mac[1] << 8 | peer_mac[2] << 16 |
		    (uint32_t)peer_mac[3] << 24);
	w32(f, E1000_RA + 12, E1000_RAH_AV | 1U << 16 | peer_mac[4] | peer_mac[5] << 8);
	assert_true(rx_takes(f, other, &pif));
	w32(f, E1000_RA + 12, 0);
	/* Multicast through the hash, each MO bit selection. */
	for (unsigned mo = 0; mo < 4; mo++) {
		static const unsigned shift[4] = { 4, 3, 2, 0 };
		unsigned h = ((unsigned)(mc[4] | mc[5] << 8) >> shift[mo]) & 0xFFF;

		w32(f, E1000_RCTL, (r32(f, E1000_RCTL) & ~(3U << 12)) | mo << 12);
		for (unsigned i = 0; i < 128; i++)
			w32(f, E1000_MTA + 4 * i, 0);
		assert_false(rx_takes(f, mc, &pif));
		w32(f, E1000_MTA + 4 * (h >> 5), 1U << (h & 31));
		assert_true(rx_takes(f, mc, &pif));
		assert_true(pif);
		assert_false(rx_takes(f, mc2, &pif));
	}
	/* Multicast promiscuous takes every group, and broadcast. */
	w32(f, E1000_RCTL, r32(f, E1000_RCTL) | E1000_RCTL_MPE);
	assert_true(rx_takes(f, mc2, &pif));
	assert_true(rx_takes(f, bcast, &pif));
	assert_int_equal(r32(f, E1000_STATS + E1000_ST_MPRC), 5);
	assert_int_equal(r32(f, E1000_STATS + E1000_ST_BPRC), 2);
}

static void test_rx_vlan(void **state)
{
	struct fx *f = *state;
	uint8_t frame[200], tagged[204], mac[6];
	const uint8_t *data;
	struct rxd r;
	size_t len;

	drv_up(f, E1000_RCTL_SECRC);
	my_mac(f, mac);
	len = ipv4_pkt(frame, mac, peer_mac, true, 100, 11);
	memcpy(tagged, frame, 12);
	wbe16(tagged + 12, 0x8100);
	wbe16(tagged + 14, 0x3005); /* priority 1, CFI 1, VLAN 5 */
	memcpy(tagged + 16, frame + 12, len - 12);
	/* No VME: the tag stays in the frame. */
	inject(f, tagged, len + 4);
	assert_true(rx_next(f, &r, &data));
	assert_int_equal(r.len, len + 4);
	assert_false(r.status & E1000_RXD_STAT_VP);
	/* VME: stripped into the descriptor. */
	w32(f, E1000_CTRL, r32(f, E1000_CTRL) | E1000_CTRL_VME);
	inject(f, tagged, len + 4);
	assert_true(rx_next(f, &r, &data));
	assert_int_equal(r.len, len);
	assert_memory_equal(data, frame, len);
	assert_true(r.status & E1000_RXD_STAT_VP);
	assert_int_equal(r.special, 0x3005);
	/* The VLAN filter: VLAN 5 absent from VFTA. */
	w32(f, E1000_RCTL, r32(f, E1000_RCTL) | E1000_RCTL_VFE);
	inject(f, tagged, len + 4);
	assert_false(rx_next(f, &r, &data));
	w32(f, E1000_VFTA, 1U << 5);
	inject(f, tagged, len + 4);
	assert_true(rx_next(f, &r, &data));
	/* CFI checked: CFIEN with CFI 0 refuses our CFI-1 frame. */
	w32(f, E1000_RCTL, r32(f, E1000_RCTL) | E1000_RCTL_CFIEN);
	inject(f, tagged, len + 4);
	assert_false(rx_next(f, &r, &data));
	w32(f, E1000_RCTL, r32(f, E1000_RCTL) | E1000_RCTL_CFI);
	inject(f, tagged, len + 4);
	assert_true(rx_next(f, &r, &data));
	/* Untagged frames pass the VLAN filter. */
	inject(f, frame, len);
	assert_true(rx_next(f, &r, &data));
	assert_false(r.status & E1000_RXD_STAT_VP);
	/* Checksums are found behind a tag that was not stripped. */
	w32(f, E1000_CTRL, r32(f, E1000_CTRL) & ~E1000_CTRL_VME);
	w32(f, E1000_RXCSUM, E1000_RXCSUM_IPOFL | E1000_RXCSUM_TUOFL);
	inject(f, tagged, len + 4);
	assert_true(rx_next(f, &r, &data));
	assert_int_equal(r.status & (E1000_RXD_STAT_IPCS | E1000_RXD_STAT_TCPCS),
			 E1000_RXD_STAT_IPCS | E1000_RXD_STAT_TCPCS);
	assert_int_equal(r.errors, 0);
}

#define rx_csum_case(f, frame, len, st, er) rx_csum_check(f, frame, len, st, er, __LINE__)

static void rx_csum_check(struct fx *f, const uint8_t *frame, size_t len, uint8_t want_status,
			  uint8_t want_errors, int line)
{
	const uint8_t *data;
	struct rxd r;
	uint8_t st;

	inject(f, frame, len);
	assert_true(rx_next(f, &r, &data));
	st = r.status & (E1000_RXD_STAT_IPCS | E1000_RXD_STAT_TCPCS | E1000_RXD_STAT_IXSM);
	if (st != want_status || r.errors != want_errors)
		fail_msg("line %d: status 0x%x errors 0x%x, want 0x%x 0x%x", line, st, r.errors,
			 want_status, want_errors);
}

static void test_rx_checksum_offload(void **state)
{
	struct fx *f = *state;
	uint8_t frame[1600], mac[6];
	const uint8_t both = E1000_RXD_STAT_IPCS | E1000_RXD_STAT_TCPCS;
	size_t len;

	drv_up(f, E1000_RCTL_SECRC);
	my_mac(f, mac);
	/* Reset value: IP checksum offload only. */
	len = ipv4_pkt(frame, mac, peer_mac, true, 999, 12);
	rx_csum_case(f, frame, len, E1000_RXD_STAT_IPCS, 0);
	w32(f, E1000_RXCSUM, E1000_RXCSUM_IPOFL | E1000_RXCSUM_TUOFL);
	rx_csum_case(f, frame, len, both, 0);
	len = ipv4_pkt(frame, mac, peer_mac, false, 501, 13);
	rx_csum_case(f, frame, len, both, 0);
	/* A UDP datagram without a checksum: nothing to check. */
	wbe16(frame + 40, 0);
	rx_csum_case(f, frame, len, E1000_RXD_STAT_IPCS, 0);
	/* Bad IP header checksum; bad TCP checksum. */
	len = ipv4_pkt(frame, mac, peer_mac, true, 300, 14);
	frame[24] ^= 1;
	rx_csum_case(f, frame, len, both, E1000_RXD_ERR_IPE);
	frame[24] ^= 1;
	frame[len - 1] ^= 0x40;
	rx_csum_case(f, frame, len, both, E1000_RXD_ERR_TCPE);
	/* A fragment: the IP header is checked, not the TCP one. */
	len = ipv4_pkt(frame, mac, peer_mac, true, 300, 14);
	wbe16(frame + 20, 0x2000); /* more fragments */
	wbe16(frame + 24, 0);
	wbe16(frame + 24, (uint16_t)~ref_sum(frame + 14, 20, 0));
	rx_csum_case(f, frame, len, E1000_RXD_STAT_IPCS, 0);
	/* IPv6 TCP, good and bad. */
	len = ipv6_tcp_pkt(frame, mac, peer_mac, 400);
	rx_csum_case(f, frame, len, E1000_RXD_STAT_TCPCS, 0);
	frame[60] ^= 1;
	rx_csum_case(f, frame, len, E1000_RXD_STAT_TCPCS, E1000_RXD_ERR_TCPE);
	/* IPv6 UDP with a zero checksum is invalid. */
	len = ipv6_tcp_pkt(frame, mac, peer_mac, 40);
	frame[20] = 17;
	wbe16(frame + 54 + 6, 0);
	rx_csum_case(f, frame, len, E1000_RXD_STAT_TCPCS, E1000_RXD_ERR_TCPE);
	/* Truncated or bogus headers: no indication at all. */
	len = ipv4_pkt(frame, mac, peer_mac, true, 300, 15);
	wbe16(frame + 16, 2000); /* total length beyond the frame */
	rx_csum_case(f, frame, len, 0, 0);
	frame[14] = 0x43; /* IHL 3 */
	rx_csum_case(f, frame, len, 0, 0);
	eth(frame, mac, peer_mac, 0x0806);
	rx_csum_case(f, frame, 60, 0, 0);
	/* IPv4 carrying neither TCP nor UDP (ICMP), or a TCP header cut short: IP only. */
	len = ipv4_pkt(frame, mac, peer_mac, true, 300, 16);
	frame[23] = 1;
	wbe16(frame + 24, 0);
	wbe16(frame + 24, (uint16_t)~ref_sum(frame + 14, 20, 0));
	rx_csum_case(f, frame, len, E1000_RXD_STAT_IPCS, 0);
	len = ipv4_pkt(frame, mac, peer_mac, true, 0, 16);
	wbe16(frame + 16, 30);
	wbe16(frame + 24, 0);
	wbe16(frame + 24, (uint16_t)~ref_sum(frame + 14, 20, 0));
	rx_csum_case(f, frame, len, E1000_RXD_STAT_IPCS, 0);
	/* A total length below the header's: no indication. */
	wbe16(frame + 16, 10);
	rx_csum_case(f, frame, len, 0, 0);
	/* TCP/UDP offload alone: TCPCS without IPCS. */
	w32(f, E1000_RXCSUM, E1000_RXCSUM_TUOFL);
	len = ipv4_pkt(frame, mac, peer_mac, true, 200, 17);
	rx_csum_case(f, frame, len, E1000_RXD_STAT_TCPCS, 0);
	/* IP offload alone: IPv6 (which has no header checksum) gets nothing. */
	w32(f, E1000_RXCSUM, E1000_RXCSUM_IPOFL);
	len = ipv6_tcp_pkt(frame, mac, peer_mac, 100);
	rx_csum_case(f, frame, len, 0, 0);
	w32(f, E1000_RXCSUM, E1000_RXCSUM_IPOFL | E1000_RXCSUM_TUOFL);
	/* IPv6 with a payload length beyond the frame: nothing. */
	wbe16(frame + 18, 2000);
	rx_csum_case(f, frame, len, 0, 0);
	/* IPv6 UDP with a checksum: verified. */
	len = ipv6_tcp_pkt(frame, mac, peer_mac, 100);
	frame[20] = 17;
	wbe16(frame + 54 + 4, 120);
	wbe16(frame + 54 + 6, 0);
	wbe16(frame + 54 + 6,
	      (uint16_t)~ref_sum(frame + 54, 120, ref_sum(frame + 22, 32, 0) + 17 + 120U));
	rx_csum_case(f, frame, len, E1000_RXD_STAT_TCPCS, 0);
	frame[100] ^= 2;
	rx_csum_case(f, frame, len, E1000_RXD_STAT_TCPCS, E1000_RXD_ERR_TCPE);
	/* Offload off: IXSM says "ignore". */
	w32(f, E1000_RXCSUM, 0);
	len = ipv4_pkt(frame, mac, peer_mac, true, 300, 15);
	rx_csum_case(f, frame, len, E1000_RXD_STAT_IXSM, 0);
}

static void test_rx_jumbo_and_buffers(void **state)
{
	struct fx *f = *state;
	static uint8_t frame[16384];
	uint8_t mac[6];
	const uint8_t *data;
	struct rxd r;
	size_t got = 0;
	unsigned n = 0;

	drv_up(f, E1000_RCTL_SECRC | 3U << E1000_RCTL_BSIZE_SHIFT); /* 256-byte buffers */
	my_mac(f, mac);
	eth(frame, mac, peer_mac, 0x0800);
	fill(frame + 14, sizeof(frame) - 14, 3);
	/* Without LPE, 1514 (1518 with a tag) is the longest. */
	inject(f, frame, 1515);
	assert_false(rx_next(f, &r, &data));
	assert_int_equal(r32(f, E1000_STATS + E1000_ST_ROC), 1);
	inject(f, frame, 1514);
	while (rx_next(f, &r, &data)) {
		assert_memory_equal(data, frame + got, r.len);
		got += r.len;
		n++;
		if (r.status & E1000_RXD_STAT_EOP)
			break;
	}
	assert_int_equal(got, 1514);
	assert_int_equal(n, 6);
	/* LPE and 16 KiB buffers (BSEX): one descriptor for the biggest frame. */
	w32(f, E1000_RCTL,
	    E1000_RCTL_EN | E1000_RCTL_SECRC | E1000_RCTL_LPE | E1000_RCTL_BSEX |
		    1U << E1000_RCTL_BSIZE_SHIFT);
	rx_give(f, 10);
	inject(f, frame, 16384);
	assert_true(rx_next(f, &r, &data));
	assert_int_equal(r.len, 16384);
	assert_true(r.status & E1000_RXD_STAT_EOP);
	inject(f, frame, 16385);
	assert_false(rx_next(f, &r, &data));
	/* 2 KiB buffers: 9000 bytes with its FCS take 5. */
	w32(f, E1000_RCTL, E1000_RCTL_EN | E1000_RCTL_LPE);
	inject(f, frame, 9000);
	for (got = 0, n = 0; rx_next(f, &r, &data); n++) {
		got += r.len;
		assert_int_equal(!!(r.status & E1000_RXD_STAT_EOP), got == 9004);
	}
	assert_int_equal(got, 9004);
	assert_int_equal(n, 5);
}

static void test_rx_fifo(void **state)
{
	struct fx *f = *state;
	uint8_t frame[1514], mac[6];
	const uint8_t *data;
	struct rxd r;
	unsigned got = 0;

	drv_up(f, E1000_RCTL_SECRC);
	my_mac(f, mac);
	w32(f, E1000_IMS, E1000_ICR_RXO);
	eth(frame, mac, peer_mac, 0x0800);
	/* 63 descriptors take 63 frames; the FIFO (48 KiB) holds 32 more; the rest is lost. */
	for (unsigned i = 0; i < 100; i++) {
		frame[14] = (uint8_t)i;
		inject(f, frame, sizeof(frame));
	}
	assert_int_equal(r32(f, E1000_STATS + E1000_ST_RNBC), 37);
	assert_int_equal(r32(f, E1000_STATS + E1000_ST_MPC), 100 - 63 - 32);
	assert_true(r32(f, E1000_ICR) & E1000_ICR_RXO);
	while (rx_next(f, &r, &data)) {
		assert_int_equal(data[14], got);
		got++;
	}
	assert_int_equal(got, 63);
	/* Descriptors given back: the FIFO drains in order. */
	rx_give(f, 40);
	while (rx_next(f, &r, &data)) {
		assert_int_equal(data[14], got);
		got++;
	}
	assert_int_equal(got, 95);
	/* A frame waiting when the receiver is turned off is gone. */
	inject(f, frame, 100);
	inject(f, frame, 100);
	inject(f, frame, 100);
	inject(f, frame, 100);
	inject(f, frame, 100);
	inject(f, frame, 100);
	inject(f, frame, 100);
	inject(f, frame, 100);
	inject(f, frame, 100);
	assert_int_equal(f->e->fifo.n, 1);
	w32(f, E1000_RCTL, r32(f, E1000_RCTL) & ~E1000_RCTL_EN);
	assert_int_equal(f->e->fifo.n, 0);
	/* A frame that needs more buffers than the ring has: dropped, not kept forever. */
	w32(f, E1000_RCTL, E1000_RCTL_EN | E1000_RCTL_LPE | 3U << E1000_RCTL_BSIZE_SHIFT);
	rx_give(f, 20);
	{
		static uint8_t big[16384];

		memcpy(big, frame, 14);
		inject(f, big, sizeof(big));
	}
	assert_int_equal(f->e->fifo.n, 0);
}

static void test_rx_interrupt_delays(void **state)
{
	struct fx *f = *state;
	uint8_t frame[60] = { 0 }, mac[6];
	unsigned gsi = pci_intx_gsi(SLOT, 1);

	drv_up(f, 0);
	my_mac(f, mac);
	eth(frame, mac, peer_mac, 0x0800);
	w32(f, E1000_IMS, E1000_ICR_RXT0);
	w32(f, E1000_RDTR, 100); /* 102.4 us after the last frame */
	w32(f, E1000_RADV, 250); /* 256 us after the first */
	inject(f, frame, 60);
	advance(f, 100000);
	assert_int_equal(irq_level[gsi], 0);
	inject(f, frame, 60); /* restarts RDTR */
	advance(f, 100000);
	assert_int_equal(irq_level[gsi], 0);
	inject(f, frame, 60);
	advance(f, 57000); /* RADV: 256 us since the first frame */
	assert_int_equal(irq_level[gsi], 1);
	assert_int_equal(r32(f, E1000_ICR), E1000_ICR_RXT0);
	/* Both stopped: nothing more fires. */
	advance(f, 1000000);
	assert_int_equal(irq_level[gsi], 0);
	/* RDTR alone. */
	w32(f, E1000_RADV, 0);
	inject(f, frame, 60);
	advance(f, 102000);
	assert_int_equal(irq_level[gsi], 0);
	advance(f, 1000);
	assert_int_equal(irq_level[gsi], 1);
	(void)r32(f, E1000_ICR);
	/* Flush partial descriptor block: now. */
	inject(f, frame, 60);
	assert_int_equal(irq_level[gsi], 0);
	w32(f, E1000_RDTR, 100 | E1000_RDTR_FPD);
	assert_int_equal(irq_level[gsi], 1);
	assert_int_equal(r32(f, E1000_RDTR), 100);
	(void)r32(f, E1000_ICR);
	advance(f, 1000000);
	assert_int_equal(irq_level[gsi], 0);
	/* RXDMT0: free descriptors down to half the ring (RDMTS 00). */
	w32(f, E1000_RDTR, 0);
	w32(f, E1000_IMS, E1000_ICR_RXDMT0);
	(void)r32(f, E1000_ICR);
	while (!(r32(f, E1000_ICR) & E1000_ICR_RXDMT0))
		inject(f, frame, 60);
	assert_int_equal((r32(f, E1000_RDT) + NDESC - r32(f, E1000_RDH)) % NDESC, NDESC / 2);
	/* SRPD: a frame no longer than RSRPD. */
	w32(f, E1000_RSRPD, 100);
	w32(f, E1000_IMS, E1000_ICR_SRPD);
	rx_give(f, 40);
	(void)r32(f, E1000_ICR);
	inject(f, frame, 60);
	assert_true(r32(f, E1000_ICR) & E1000_ICR_SRPD);
}

static void test_tx_interrupt_delays(void **state)
{
	struct fx *f = *state;
	uint8_t frame[60] = { 0 };
	unsigned gsi = pci_intx_gsi(SLOT, 1);

	drv_up(f, 0);
	memcpy(frame, peer_mac, 6);
	w32(f, E1000_IMS, E1000_ICR_TXDW);
	w32(f, E1000_TIDV, 8);	/* 8.2 us */
	w32(f, E1000_TADV, 32); /* 32.8 us */
	for (int k = 0; k < 5; k++) {
		tx_legacy(f, 0, frame, 60, E1000_TXD_CMD_EOP | E1000_TXD_CMD_RS | E1000_TXD_CMD_IDE,
			  0);
		tx_kick(f);
		assert_int_equal(irq_level[gsi], 0);
		advance(f, 7000);
	}
	/* 35 us after the first, TADV has fired although TIDV kept restarting. */
	assert_int_equal(irq_level[gsi], 1);
	(void)r32(f, E1000_ICR);
	tx_legacy(f, 0, frame, 60, E1000_TXD_CMD_EOP | E1000_TXD_CMD_RS | E1000_TXD_CMD_IDE, 0);
	tx_kick(f);
	advance(f, 8100);
	assert_int_equal(irq_level[gsi], 0);
	advance(f, 200);
	assert_int_equal(irq_level[gsi], 1);
	(void)r32(f, E1000_ICR);
	/* Without IDE: at once, and a pending delay goes with it. */
	tx_legacy(f, 0, frame, 60, E1000_TXD_CMD_EOP | E1000_TXD_CMD_RS | E1000_TXD_CMD_IDE, 0);
	tx_legacy(f, 1, frame, 60, E1000_TXD_CMD_EOP | E1000_TXD_CMD_RS, 0);
	tx_kick(f);
	assert_int_equal(irq_level[gsi], 1);
	(void)r32(f, E1000_ICR);
	advance(f, 100000);
	assert_int_equal(irq_level[gsi], 0);
	/* TIDV's own FPD. */
	tx_legacy(f, 0, frame, 60, E1000_TXD_CMD_EOP | E1000_TXD_CMD_RS | E1000_TXD_CMD_IDE, 0);
	tx_kick(f);
	w32(f, E1000_TIDV, 8 | E1000_RDTR_FPD);
	assert_int_equal(irq_level[gsi], 1);
	/* TXD_LOW with a low threshold, TXQE when the ring empties. */
	w32(f, E1000_TXDCTL, 1U << E1000_TXDCTL_LWTHRESH_SHIFT);
	(void)r32(f, E1000_ICR);
	tx_legacy(f, 0, frame, 60, E1000_TXD_CMD_EOP, 0);
	tx_kick(f);
	assert_int_equal(r32(f, E1000_ICR) & (E1000_ICR_TXD_LOW | E1000_ICR_TXQE),
			 E1000_ICR_TXD_LOW | E1000_ICR_TXQE);
}

static void test_loopback(void **state)
{
	struct fx *f = *state;
	uint8_t frame[200], mac[6];
	const uint8_t *data;
	struct rxd r;
	size_t len;

	drv_up(f, E1000_RCTL_SECRC);
	my_mac(f, mac);
	len = ipv4_pkt(frame, mac, mac, false, 120, 16);
	/* MAC loopback (RCTL.LBM 01): the frame comes back, the wire sees nothing. */
	w32(f, E1000_RCTL, r32(f, E1000_RCTL) | E1000_RCTL_LBM_MAC);
	tx_legacy(f, 0, frame, len, E1000_TXD_CMD_EOP, 0);
	tx_kick(f);
	assert_int_equal(nsent, 0);
	assert_true(rx_next(f, &r, &data));
	assert_int_equal(r.len, len);
	assert_memory_equal(data, frame, len);
	/* Frames from the wire are not heard meanwhile. */
	inject(f, frame, len);
	assert_false(rx_next(f, &r, &data));
	w32(f, E1000_RCTL, r32(f, E1000_RCTL) & ~E1000_RCTL_LBM_MASK);
	/* PHY loopback, as ethtool's self-test sets it up. */
	phy_wr(f, PHY_CTRL, 0x4140);
	tx_legacy(f, 1, frame, len, E1000_TXD_CMD_EOP, 0);
	tx_kick(f);
	assert_int_equal(nsent, 0);
	assert_true(rx_next(f, &r, &data));
	assert_memory_equal(data, frame, len);
	phy_wr(f, PHY_CTRL, 0x1140);
	tx_legacy(f, 2, frame, len, E1000_TXD_CMD_EOP, 0);
	tx_kick(f);
	assert_int_equal(nsent, 1);
}

/* ---- registers, reset ---- */

static void test_register_masks(void **state)
{
	struct fx *f = *state;
	static const struct {
		uint32_t off, mask;
	} pat[] = {
		/* What Linux's e1000 register self-test writes and expects to read back. */
		{ E1000_FCAL, 0xFFFFFFFF },  { E1000_FCAH, 0x0000FFFF },
		{ E1000_FCT, 0x0000FFFF },   { E1000_VET, 0x0000FFFF },
		{ E1000_RDTR, 0x0000FFFF },  { E1000_RDBAH, 0xFFFFFFFF },
		{ E1000_RDLEN, 0x000FFF80 }, { E1000_RDH, 0x0000FFFF },
		{ E1000_RDT, 0x0000FFFF },   { E1000_FCRTH, 0x0000FFF8 },
		{ E1000_FCTTV, 0x0000FFFF }, { E1000_TIPG, 0x3FFFFFFF },
		{ E1000_TDBAH, 0xFFFFFFFF }, { E1000_TDLEN, 0x000FFF80 },
		{ E1000_RDBAL, 0xFFFFFFF0 }, { E1000_TDBAL, 0xFFFFFFF0 },
		{ E1000_RCTL, 0x06DFB3FE },  { E1000_MTA, 0xFFFFFFFF },
		{ E1000_RA, 0xFFFFFFFF },    { E1000_RA + 4, 0x8003FFFF },
	};
	uint32_t before;

	for (size_t i = 0; i < sizeof(pat) / sizeof(pat[0]); i++) {
		w32(f, pat[i].off, 0xFFFFFFFF);
		assert_int_equal(r32(f, pat[i].off), pat[i].mask);
		w32(f, pat[i].off, 0x5A5A5A5A);
		assert_int_equal(r32(f, pat[i].off), 0x5A5A5A5A & pat[i].mask);
		w32(f, pat[i].off, 0);
	}
	/* STATUS is read only. */
	before = r32(f, E1000_STATUS);
	w32(f, E1000_STATUS, ~before);
	assert_int_equal(r32(f, E1000_STATUS), before);
	/* Statistics cannot be written. */
	w32(f, E1000_STATS + E1000_ST_GPRC, 77);
	assert_int_equal(r32(f, E1000_STATS + E1000_ST_GPRC), 0);
	/* Reserved space reads 0 and ignores writes. */
	w32(f, 0x0F00, 0x1234);
	assert_int_equal(r32(f, 0x0F00), 0);
	/* CTRL at its alias. */
	assert_int_equal(r32(f, E1000_CTRL_ALIAS), r32(f, E1000_CTRL));
	w32(f, E1000_CTRL_ALIAS, r32(f, E1000_CTRL) | E1000_CTRL_SLU);
	assert_true(r32(f, E1000_CTRL) & E1000_CTRL_SLU);
	/* Wake-up tables and WUS (write 1 to clear). */
	w32(f, E1000_FFMT + 8 * 127, 0xF);
	assert_int_equal(r32(f, E1000_FFMT + 8 * 127), 0xF);
	w32(f, E1000_WUFC, 0xFFFFFFFF);
	assert_int_equal(r32(f, E1000_WUFC), 0x000F00FF);
	w32(f, E1000_WUS, 0xFFFFFFFF);
	assert_int_equal(r32(f, E1000_WUS), 0);
	/* CTRL_EXT.EE_RST reloads RA[0] from the EEPROM and clears itself. */
	w32(f, E1000_RA, 0);
	w32(f, E1000_CTRL_EXT, E1000_CTRL_EXT_EE_RST);
	assert_int_equal(r32(f, E1000_RA), 0x12005452);
	assert_int_equal(r32(f, E1000_CTRL_EXT) & E1000_CTRL_EXT_EE_RST, 0);
}

static void test_access_sizes(void **state)
{
	struct fx *f = *state;
	uint8_t b[8];

	w32(f, E1000_FCAL, 0x11223344);
	/* A 16-bit write is ignored; a 16-bit read returns the low half. */
	io_put(b, 2, 0xFFFF);
	bus_access(&f->vm.mmio, f->bar + E1000_FCAL, b, 2, true);
	assert_int_equal(r32(f, E1000_FCAL), 0x11223344);
	bus_access(&f->vm.mmio, f->bar + E1000_FCAL, b, 2, false);
	assert_int_equal(io_get(b, 2), 0x3344);
	/* Unaligned: nothing. */
	bus_access(&f->vm.mmio, f->bar + E1000_FCAL + 1, b, 2, false);
	assert_int_equal(io_get(b, 2), 0);
	/* 64 bits: two dwords. */
	io_put(b, 8, 0x00000ABC55667788ULL);
	bus_access(&f->vm.mmio, f->bar + E1000_FCAL, b, 8, true);
	assert_int_equal(r32(f, E1000_FCAL), 0x55667788);
	assert_int_equal(r32(f, E1000_FCAH), 0x0ABC);
	bus_access(&f->vm.mmio, f->bar + E1000_FCAL, b, 8, false);
	assert_int_equal(io_get(b, 8), 0x00000ABC55667788ULL);
}

static uint32_t io_rd(struct fx *f, unsigned off, unsigned size)
{
	uint8_t b[4];

	bus_access(&f->vm.pio, f->io + off, b, size, false);
	return (uint32_t)io_get(b, size);
}

static void io_wr(struct fx *f, unsigned off, unsigned size, uint32_t v)
{
	uint8_t b[4];

	io_put(b, size, v);
	bus_access(&f->vm.pio, f->io + off, b, size, true);
}

static void test_io_window_and_reset(void **state)
{
	struct fx *f = *state;
	uint8_t frame[60] = { 0 }, mac[6];

	drv_up(f, 0);
	my_mac(f, mac);
	io_wr(f, E1000_IOADDR, 4, E1000_FCAL);
	io_wr(f, E1000_IODATA, 4, 0xCAFE);
	assert_int_equal(r32(f, E1000_FCAL), 0xCAFE);
	assert_int_equal(io_rd(f, E1000_IOADDR, 4), E1000_FCAL);
	assert_int_equal(io_rd(f, E1000_IODATA, 4), 0xCAFE);
	/* Narrow accesses and other offsets do nothing. */
	io_wr(f, E1000_IODATA, 2, 0x1);
	assert_int_equal(r32(f, E1000_FCAL), 0xCAFE);
	assert_int_equal(io_rd(f, 8, 4), 0);
	/* The reset Linux issues through the I/O window. */
	w32(f, E1000_MTA + 4, 0xFFFF);
	w32(f, E1000_ITR, 500);
	phy_wr(f, PHY_ANAR, 0x0DE1);
	w32(f, E1000_RCTL, r32(f, E1000_RCTL) & ~E1000_RCTL_EN);
	eth(frame, mac, peer_mac, 0x0800);
	io_wr(f, E1000_IOADDR, 4, E1000_CTRL);
	io_wr(f, E1000_IODATA, 4, r32(f, E1000_CTRL) | E1000_CTRL_RST);
	assert_int_equal(r32(f, E1000_CTRL) & E1000_CTRL_RST, 0);
	assert_int_equal(r32(f, E1000_CTRL) & E1000_CTRL_SLU, 0);
	assert_int_equal(r32(f, E1000_ITR), 0);
	assert_int_equal(r32(f, E1000_MTA + 4), 0);
	assert_int_equal(r32(f, E1000_TDLEN), 0);
	assert_int_equal(r32(f, E1000_RCTL), 0);
	assert_int_equal(r32(f, E1000_RA), 0x12005452); /* from the EEPROM again */
	assert_int_equal(r32(f, E1000_RA + 4), 0x80005634);
	assert_int_equal(phy_rd(f, PHY_ANAR), 0x0DE1); /* the PHY is not reset */
	assert_int_equal(io_rd(f, E1000_IOADDR, 4), 0);
	assert_false(r32(f, E1000_STATUS) & E1000_STATUS_LU);
}

/* ---- pause, snapshot ---- */

static void test_pause_drains_tx_holds_rx(void **state)
{
	struct fx *f = *state;
	uint8_t frame[100] = { 0 }, mac[6];
	const uint8_t *data;
	struct rxd r;
	struct dev *d = &f->pd->dev;

	drv_up(f, E1000_RCTL_SECRC);
	my_mac(f, mac);
	eth(frame, peer_mac, mac, 0x0800);
	/* Two packets queued behind a TDT the device has not looked at yet. */
	tx_legacy(f, 0, frame, 100, E1000_TXD_CMD_EOP, 0);
	tx_legacy(f, 1, frame, 100, E1000_TXD_CMD_EOP, 0);
	f->e->s.reg[R_TDT] = f->tdt; /* as if the doorbell raced with the pause */
	assert_int_equal(nsent, 0);
	assert_int_equal(d->ops->pause(d), 0);
	assert_int_equal(nsent, 2);
	/* Paused: frames from the network wait. */
	eth(frame, mac, peer_mac, 0x0800);
	inject(f, frame, 100);
	assert_false(rx_next(f, &r, &data));
	assert_int_equal(f->e->fifo.n, 1);
	assert_int_equal(d->ops->resume(d), 0);
	assert_true(rx_next(f, &r, &data));
	assert_int_equal(r.len, 100);
}

/* ---- the transmit worker (txthread=on) ---- */

static int setup_worker(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	net_backend_register(&wire_type);
	wire_reset();
	fx_init(f, (const char *const[]){ "backend=wire", "mac=52:54:00:12:34:56", "txthread=on",
					  NULL });
	assert_true(f->e->tx_running);
	*state = f;
	return 0;
}

/* Packet @k: a frame whose payload carries its number. */
static void tx_numbered(struct fx *f, unsigned k, const uint8_t mac[6])
{
	uint8_t frame[80] = { 0 };

	eth(frame, peer_mac, mac, 0x0800);
	frame[20] = (uint8_t)k;
	frame[21] = (uint8_t)(k >> 8);
	/* Its own buffer: the worker reads it after the doorbell, as a NIC would. */
	tx_legacy(f, k % 48, frame, sizeof(frame), E1000_TXD_CMD_EOP | E1000_TXD_CMD_RS, 0);
}

static void assert_numbered(unsigned from, unsigned to)
{
	assert_int_equal(nsent, to);
	for (unsigned k = from; k < to; k++) {
		assert_int_equal(sent_len[k], 80);
		assert_int_equal(sent[k][20] | sent[k][21] << 8, k);
	}
}

/*
 * Frames go out in ring order from the worker; pause drains the ring completely (TDH == TDT,
 * every frame handed to the backend, descriptors written back, TXQE) and stops the worker;
 * resume starts it again.
 */
static void test_txworker_order_and_pause(void **state)
{
	struct fx *f = *state;
	struct dev *d = &f->pd->dev;
	uint8_t mac[6];

	drv_up(f, 0);
	my_mac(f, mac);
	for (unsigned k = 0; k < 40; k++) {
		tx_numbered(f, k, mac);
		if (k % 8 == 7)
			tx_kick(f); /* several doorbells while the worker may be sending */
	}
	assert_int_equal(d->ops->pause(d), 0);
	assert_false(f->e->tx_running);
	assert_int_equal(r32(f, E1000_TDH), f->tdt);
	assert_int_equal(r32(f, E1000_TDT), f->tdt);
	assert_numbered(0, 40);
	for (unsigned i = 0; i < 40; i++)
		assert_true(txd_sta(f, i) & E1000_TXD_STAT_DD);
	assert_true(r32(f, E1000_ICR) & E1000_ICR_TXQE);
	assert_int_equal(r32(f, E1000_STATS + E1000_ST_GPTC), 40);
	/* A doorbell rung while paused waits for resume, which restarts the worker. */
	tx_numbered(f, 40, mac);
	tx_kick(f);
	assert_int_equal(nsent, 40);
	assert_int_equal(d->ops->resume(d), 0);
	assert_true(f->e->tx_running);
	for (unsigned k = 41; k < 45; k++)
		tx_numbered(f, k, mac);
	tx_kick(f);
	assert_int_equal(d->ops->pause(d), 0);
	assert_int_equal(r32(f, E1000_TDH), f->tdt);
	assert_numbered(0, 45);
	assert_int_equal(d->ops->resume(d), 0);
}

/*
 * The TDT write returns while the network holds the frames (the worker sends without the
 * device lock, so registers stay reachable), and a reset then stops the ring: the frames
 * walked before it go out, nothing after it is walked.
 */
static void test_txworker_slow_wire_and_reset(void **state)
{
	struct fx *f = *state;
	struct dev *d = &f->pd->dev;
	uint8_t mac[6];

	drv_up(f, 0);
	my_mac(f, mac);
	pthread_mutex_lock(&wire_mu);
	wire_gate = true;
	pthread_mutex_unlock(&wire_mu);
	for (unsigned k = 0; k < 3; k++)
		tx_numbered(f, k, mac);
	tx_kick(f); /* without a worker this would wait at the gate */
	pthread_mutex_lock(&wire_mu);
	while (!wire_waiting && !wire_timed_out)
		if (!wire_wait())
			wire_timed_out = true;
	assert_false(wire_timed_out);
	assert_int_equal(nsent, 0);
	pthread_mutex_unlock(&wire_mu);
	/* The walk is done (descriptors written back) though nothing reached the wire yet. */
	assert_int_equal(r32(f, E1000_TDH), f->tdt);
	assert_true(txd_sta(f, 2) & E1000_TXD_STAT_DD);
	w32(f, E1000_CTRL, E1000_CTRL_RST);
	assert_int_equal(r32(f, E1000_TDH), 0);
	assert_int_equal(r32(f, E1000_TDT), 0);
	assert_int_equal(r32(f, E1000_TCTL) & E1000_TCTL_EN, 0);
	/* Descriptors behind a doorbell after the reset are not walked: the unit is off. */
	memset(gpa(f, TX_RING, 16 * NDESC), 0, 16 * NDESC);
	f->tdt = 0;
	tx_numbered(f, 3, mac);
	tx_kick(f);
	pthread_mutex_lock(&wire_mu);
	wire_gate = false;
	pthread_cond_broadcast(&wire_cv);
	pthread_mutex_unlock(&wire_mu);
	assert_int_equal(d->ops->pause(d), 0);
	assert_false(wire_timed_out);
	assert_numbered(0, 3);
	assert_int_equal(r32(f, E1000_TDH), 0);
	assert_int_equal(txd_sta(f, 0) & E1000_TXD_STAT_DD, 0);
	assert_int_equal(d->ops->resume(d), 0);
	/* Set up again, it transmits. */
	drv_up(f, 0);
	tx_numbered(f, 3, mac);
	tx_kick(f);
	assert_int_equal(d->ops->pause(d), 0);
	assert_numbered(0, 4);
	assert_int_equal(d->ops->resume(d), 0);
}

/* Put the device in a busy state: traffic, filters, a context, timers pending. */
static void make_busy(struct fx *f)
{
	uint8_t frame[60] = { 0 }, mac[6];

	drv_up(f, 0);
	my_mac(f, mac);
	eth(frame, mac, peer_mac, 0x0800);
	w32(f, E1000_MTA + 40, 0x12345678);
	w32(f, E1000_VFTA + 4, 0x10);
	w32(f, E1000_IMS, E1000_ICR_RXT0 | E1000_ICR_TXDW | E1000_ICR_LSC);
	w32(f, E1000_ITR, 2000);
	w32(f, E1000_RDTR, 500);
	phy_wr(f, PHY_ANAR, 0x0DE1);
	tx_ctx(f, 14, 24, 33, 34, 50, 0, E1000_TXC_TUCMD_IP, 0, 0, 0);
	tx_kick(f);
	inject(f, frame, 60); /* RDTR running */
	w32(f, E1000_ICS, E1000_ICR_TXDW);
	(void)r32(f, E1000_ICR);
	w32(f, E1000_ICS, E1000_ICR_TXDW); /* throttled: ITR timer running */
	{
		/* Half a Microwire read, and an ARP that tells the guest's address. */
		uint32_t eecd = ee_start(f);
		uint8_t arp[60] = { 0 };

		ee_out(f, &eecd, E1000_EE_READ_OPCODE, 3);
		eth(arp, bcast, mac, 0x0806);
		wbe16(arp + 14, 1);
		wbe16(arp + 16, 0x0800);
		arp[18] = 6;
		arp[19] = 4;
		wbe16(arp + 20, 1);
		memcpy(arp + 22, mac, 6);
		wbe32(arp + 28, 0x0A00020F);
		wbe32(arp + 38, 0x0A000202);
		tx_legacy(f, 0, arp, 60, E1000_TXD_CMD_EOP, 0);
		tx_kick(f);
	}
}

static void test_snapshot_roundtrip(void **state)
{
	struct fx *f = *state, g;
	struct dev *d = &f->pd->dev;
	uint8_t *a, *b, frame[60] = { 0 }, mac[6];
	size_t alen, blen;
	unsigned gsi = pci_intx_gsi(SLOT, 1);

	make_busy(f);
	assert_int_equal(f->e->s.guest_ip, 0x0A00020F);
	advance(f, 100000);
	assert_int_equal(d->ops->pause(d), 0);
	a = devsnap_save_copy(d, &alen);
	assert_int_equal(d->ops->resume(d), 0);
	/* A fresh device, on another VM, loads it and saves the same bytes. */
	fx_init(&g, (const char *const[]){ "backend=wire", "mac=52:54:00:aa:bb:cc", NULL });
	advance(&g, 5000000000ULL); /* its clock is elsewhere: only time left matters */
	assert_int_equal(devsnap_load(&g.pd->dev, a, alen, pci_emul_e1000.version), 0);
	b = devsnap_save_copy(&g.pd->dev, &blen);
	assert_int_equal(alen, blen);
	assert_memory_equal(a, b, alen);
	free(b);
	/* The loaded device is the saved one: the saved MAC, registers, PHY, EEPROM. */
	g.tdt = f->tdt;
	g.rdt = f->rdt;
	g.rx_next = r32(&g, E1000_RDH);
	my_mac(&g, mac);
	assert_int_equal(mac[3], 0x12);
	assert_int_equal(r32(&g, E1000_MTA + 40), 0x12345678);
	assert_int_equal(phy_rd(&g, PHY_ANAR), 0x0DE1);
	assert_int_equal(eerd(&g, 2), 0x5634);
	assert_true(r32(&g, E1000_STATUS) & E1000_STATUS_LU);
	/* Resume: the announce (a gratuitous ARP for the address it learnt) goes out first. */
	wire_reset();
	memset(irq_level, 0, sizeof(irq_level));
	assert_int_equal(g.pd->dev.ops->resume(&g.pd->dev), 0);
	assert_int_equal(nsent, 1);
	assert_int_equal(be16(sent[0] + 12), 0x0806);
	assert_memory_equal(sent[0], bcast, 6);
	assert_memory_equal(sent[0] + 6, mac, 6);
	assert_int_equal(be16(sent[0] + 20), 1);
	assert_int_equal(be32(sent[0] + 28), 0x0A00020F);
	assert_int_equal(be32(sent[0] + 38), 0x0A00020F);
	/* Timers come back with the time they had left: RDTR had 512 - 100 us. */
	advance(&g, 400000);
	assert_int_equal(irq_level[gsi], 0);
	advance(&g, 20000);
	assert_int_equal(irq_level[gsi], 1);
	assert_true(r32(&g, E1000_ICR) & (E1000_ICR_RXT0 | E1000_ICR_TXDW));
	/* The loaded rings work on the new VM's memory (a copy of nothing: it is empty). */
	eth(frame, mac, peer_mac, 0x0800);
	memcpy(gpa(&g, RX_RING, 16 * NDESC), gpa(f, RX_RING, 16 * NDESC), 16 * NDESC);
	inject(&g, frame, 60);
	{
		struct rxd r;
		const uint8_t *data;

		assert_true(rx_next(&g, &r, &data));
		assert_memory_equal(data, frame, 60);
	}
	fx_destroy(&g);
	free(a);
}

static void test_snapshot_rarp_without_address(void **state)
{
	struct fx *f = *state, g;
	struct dev *d = &f->pd->dev;
	uint8_t *a, mac[6];
	size_t alen;

	drv_up(f, 0);
	my_mac(f, mac);
	a = devsnap_save_copy(d, &alen);
	fx_init(&g, (const char *const[]){ "backend=wire", NULL });
	assert_int_equal(devsnap_load(&g.pd->dev, a, alen, 1), 0);
	wire_reset();
	assert_int_equal(g.pd->dev.ops->resume(&g.pd->dev), 0);
	assert_int_equal(nsent, 1);
	assert_int_equal(be16(sent[0] + 12), 0x8035);
	assert_memory_equal(sent[0] + 6, mac, 6);
	assert_memory_equal(sent[0] + 22, mac, 6);
	/* A second resume (after a checkpoint) announces nothing. */
	assert_int_equal(g.pd->dev.ops->pause(&g.pd->dev), 0);
	assert_int_equal(g.pd->dev.ops->resume(&g.pd->dev), 0);
	assert_int_equal(nsent, 1);
	fx_destroy(&g);
	free(a);
}

/* Offset of the e1000 part in a saved section: after PCI config, INTx, MSI-X count, version. */
static size_t dev_part(void)
{
	return 4 + PCI_CFG_SIZE + 1 + 4 + 4;
}

static void corrupt_u32(uint8_t *buf, size_t off, uint32_t v)
{
	memcpy(buf + off, &v, 4);
}

/* devsnap_expect_refused, saying which case failed. */
#define refused(d, buf, len, ver)                                                 \
	do {                                                                      \
		if (!devsnap_load_fails(d, buf, len, ver))                        \
			fail_msg("line %d: a bad stream was accepted", __LINE__); \
		devsnap_expect_refused(d, buf, len, ver);                         \
	} while (0)

static bool devsnap_load_fails(struct dev *d, const uint8_t *buf, size_t len, unsigned ver)
{
	uint8_t *keep;
	size_t klen;
	bool fails;

	keep = devsnap_save_copy(d, &klen);
	fails = devsnap_load(d, buf, len, ver) != 0;
	if (!fails)
		assert_int_equal(devsnap_load(d, keep, klen, ver), 0);
	free(keep);
	return fails;
}

static void test_snapshot_refused(void **state)
{
	struct fx *f = *state;
	struct dev *d = &f->pd->dev;
	uint8_t *a, *c;
	size_t alen, base = dev_part(), regs = base + 4; /* after the register count */

	make_busy(f);
	a = devsnap_save_copy(d, &alen);
	c = malloc(alen + 4);
	/* Truncated anywhere. */
	for (size_t cut = 0; cut < alen; cut += 97)
		refused(d, a, cut, 1);
	/* A newer e1000 state version, or an older one this khyve never wrote. */
	memcpy(c, a, alen);
	corrupt_u32(c, dev_part() - 4, 2);
	refused(d, c, alen, 1);
	corrupt_u32(c, dev_part() - 4, 0);
	refused(d, c, alen, 1);
	/* Trailing bytes. */
	memcpy(c, a, alen);
	memset(c + alen, 0, 4);
	refused(d, c, alen + 4, 1);
	/* A register count that differs. */
	memcpy(c, a, alen);
	corrupt_u32(c, base, E1000_NREGS + 1);
	refused(d, c, alen, 1);
	/* A register with bits it does not have (RDLEN not a multiple of 128). */
	memcpy(c, a, alen);
	corrupt_u32(c, regs + 4 * R_RDLEN, 0x404);
	refused(d, c, alen, 1);
	memcpy(c, a, alen);
	corrupt_u32(c, regs + 4 * R_ICR, 0x80000000);
	refused(d, c, alen, 1);
	/* Timers: the last 8 bytes are the throttle, before them 5 x 8 time-left values. */
	memcpy(c, a, alen);
	{
		int64_t bad = 1000000000;

		memcpy(c + alen - 8 - 8, &bad, 8);
	}
	refused(d, c, alen, 1);
	memcpy(c, a, alen);
	{
		uint64_t bad = ~0ULL;

		memcpy(c + alen - 8, &bad, 8);
	}
	refused(d, c, alen, 1);
	memcpy(c, a, alen);
	{
		int64_t bad = -5;

		memcpy(c + alen - 8 - 8 * 5, &bad, 8);
	}
	refused(d, c, alen, 1);
	/* And the unmodified stream still loads. */
	assert_int_equal(devsnap_load(d, a, alen, 1), 0);
	free(c);
	free(a);
}

/* Found by the fuzzer: a failed MDIC access left ERROR set, which the load refused. */
static void test_snapshot_after_mdic_error(void **state)
{
	struct fx *f = *state;
	struct dev *d = &f->pd->dev;
	uint8_t *a;
	size_t alen;

	assert_true(mdic(f, 2, PHY_ID1, E1000_MDIC_OP_READ, 0) & E1000_MDIC_ERROR);
	a = devsnap_save_copy(d, &alen);
	assert_int_equal(devsnap_load(d, a, alen, 1), 0);
	assert_true(r32(f, E1000_MDIC) & E1000_MDIC_ERROR);
	free(a);
}

static void test_snapshot_refused_fields(void **state)
{
	struct fx *f = *state;
	struct dev *d = &f->pd->dev;
	uint8_t *a, *c;
	size_t alen, off;

	make_busy(f);
	a = devsnap_save_copy(d, &alen);
	c = malloc(alen);
	/* The Microwire state follows regs, tables, stats, EEPROM and PHY (with their counts). */
	off = dev_part() + 4 + 4 * E1000_NREGS + 4 + 4 * E1000_TAB_WORDS + 4 + 4 * E1000_NSTATS +
	      4 + 2 * E1000_EE_WORDS + 4 + 2 * PHY_NREGS;
	memcpy(c, a, alen);
	c[off + 4 + 1 + 1] = 9; /* state */
	refused(d, c, alen, 1);
	memcpy(c, a, alen);
	c[off + 4 + 1 + 1 + 1] = 64; /* addr */
	refused(d, c, alen, 1);
	memcpy(c, a, alen);
	c[off + 4] = 40; /* nin */
	refused(d, c, alen, 1);
	memcpy(c, a, alen);
	c[off + 4 + 1] = 0x80; /* last pins */
	refused(d, c, alen, 1);
	/* Transmit context payload length beyond 20 bits. */
	off += 4 + 1 + 1 + 1 + 1 + 2 + 1;
	memcpy(c, a, alen);
	corrupt_u32(c, off + 8, 0x00100000);
	refused(d, c, alen, 1);
	/* IOADDR beyond the window. */
	off += 2 * 16;
	memcpy(c, a, alen);
	corrupt_u32(c, off, 0x20000);
	refused(d, c, alen, 1);
	corrupt_u32(c, off, 0x2); /* not dword aligned */
	refused(d, c, alen, 1);
	free(c);
	free(a);
}

/* ---- every register, and the corners ---- */

static void test_register_sweep(void **state)
{
	struct fx *f = *state;
	static const struct {
		uint32_t off, wmask, reset;
	} regs[] = {
#define REG_ROW(name, off, wmask, reset) { off, wmask, reset },
		E1000_REGS(REG_ROW)
	};

	for (size_t i = 0; i < sizeof(regs) / sizeof(regs[0]); i++) {
		uint32_t off = regs[i].off, want = regs[i].wmask;

		/* Registers whose writes act (reset, EEPROM, MDIC, causes) have their own tests. */
		if (off == E1000_CTRL || off == E1000_EECD || off == E1000_EERD ||
		    off == E1000_CTRL_EXT || off == E1000_MDIC || off == E1000_ICR ||
		    off == E1000_IMS)
			continue;
		if (off == E1000_RDTR || off == E1000_TIDV)
			want = 0xFFFF; /* FPD acts and is not kept */
		if (off == E1000_WUS)
			want = 0; /* write 1 to clear */
		w32(f, off, 0xFFFFFFFF);
		if (r32(f, off) != want)
			fail_msg("register 0x%04x reads 0x%08x after all ones, want 0x%08x", off,
				 r32(f, off), want);
		w32(f, off, 0);
	}
	/* After a device reset each holds its reset value again. */
	for (size_t i = 0; i < sizeof(regs) / sizeof(regs[0]); i++)
		if (regs[i].off != E1000_EECD && regs[i].off != E1000_ICR)
			w32(f, regs[i].off, regs[i].wmask & 0x5A5A5A5A);
	w32(f, E1000_CTRL, E1000_CTRL_RST);
	for (size_t i = 0; i < sizeof(regs) / sizeof(regs[0]); i++) {
		uint32_t off = regs[i].off, v = r32(f, off);

		if (off == E1000_EECD)
			v &= 0x77; /* PRES, GNT, DO are the device's */
		if (off != E1000_ICR && v != regs[i].reset)
			fail_msg("register 0x%04x is 0x%08x after reset, want 0x%08x", off, v,
				 regs[i].reset);
	}
}

static void test_phy_and_eeprom_corners(void **state)
{
	struct fx *f = *state;
	uint32_t eecd;

	/* Without a link the partner's registers read 0. */
	phy_wr(f, PHY_CTRL, 0x1140 | PHY_CTRL_POWER_DOWN);
	assert_int_equal(phy_rd(f, PHY_ANLPAR), 0);
	assert_int_equal(phy_rd(f, PHY_ANER), 0);
	assert_int_equal(phy_rd(f, PHY_GBSR), 0);
	assert_int_equal(phy_rd(f, PHY_M88_SPEC_STATUS), 0);
	phy_wr(f, PHY_CTRL, 0x1140);
	assert_int_equal(phy_rd(f, PHY_ANER), 1);
	/* ERASE and ERAL without EWEN change nothing. */
	ee_cmd(f, 7, 0x05, -1);
	ee_cmd(f, 4, 0x20, -1);
	assert_int_equal(eerd(f, 0x05), 0);
	assert_int_equal(eerd(f, 0x0D), 0x100F);
	/* Clocks after a finished command are ignored until CS drops. */
	eecd = ee_start(f);
	ee_out(f, &eecd, 4, 3);
	ee_out(f, &eecd, 0x30, 6); /* EWEN */
	ee_out(f, &eecd, 0xFFFF, 16);
	ee_stop(f, &eecd);
	ee_cmd(f, 5, 0x06, 0x4242);
	assert_int_equal(eerd(f, 0x06), 0x4242);
	/* CTRL_EXT without EE_RST keeps RA[0] as the driver set it. */
	w32(f, E1000_RA, 0x11111111);
	w32(f, E1000_CTRL_EXT, 0x100);
	assert_int_equal(r32(f, E1000_RA), 0x11111111);
	assert_int_equal(r32(f, E1000_CTRL_EXT), 0x100);
}

static void test_stats_saturate(void **state)
{
	struct fx *f = *state;
	uint8_t frame[60] = { 0 }, mac[6];

	drv_up(f, 0);
	my_mac(f, mac);
	eth(frame, mac, peer_mac, 0x0800);
	f->e->s.stats[E1000_ST_GPRC / 4] = 0xFFFFFFFF;
	f->e->s.stats[E1000_ST_GORCL / 4] = 0xFFFFFFFF;
	f->e->s.stats[E1000_ST_GORCH / 4] = 0xFFFFFFFF;
	inject(f, frame, 60);
	assert_int_equal(r32(f, E1000_STATS + E1000_ST_GPRC), 0xFFFFFFFF);
	assert_int_equal(r32(f, E1000_STATS + E1000_ST_GORCL), 0xFFFFFFFF);
	assert_int_equal(r32(f, E1000_STATS + E1000_ST_GORCH), 0xFFFFFFFF);
	/* 64-bit: carried into the high half. */
	f->e->s.stats[E1000_ST_TORL / 4] = 0xFFFFFFF0;
	inject(f, frame, 60);
	assert_int_equal(r32(f, E1000_STATS + E1000_ST_TORL), 0x00000030);
	assert_int_equal(r32(f, E1000_STATS + E1000_ST_TORH), 1);
}

static void test_tx_corners(void **state)
{
	struct fx *f = *state;
	uint8_t frame[200], mac[6], arp[60] = { 0 };
	uint8_t mc[6] = { 0x01, 0x00, 0x5E, 0, 0, 1 };
	size_t len;

	drv_up(f, 0);
	my_mac(f, mac);
	/* Without PSP a short frame goes as it is. */
	w32(f, E1000_TCTL, E1000_TCTL_EN);
	eth(frame, mc, mac, 0x0800);
	tx_legacy(f, 0, frame, 20, E1000_TXD_CMD_EOP, 0);
	tx_kick(f);
	assert_int_equal(sent_len[0], 20);
	assert_int_equal(r32(f, E1000_STATS + E1000_ST_MPTC), 1);
	/* An Ethernet header cut short is not sent at all. */
	tx_legacy(f, 0, frame, 10, E1000_TXD_CMD_EOP, 0);
	tx_kick(f);
	assert_int_equal(nsent, 1);
	/* Legacy IC with CSS beyond the packet inserts nothing. */
	len = ipv4_pkt(frame, peer_mac, mac, false, 100, 1);
	tx_legacy(f, 0, frame, len, E1000_TXD_CMD_EOP | E1000_TXD_CMD_IC | 40U << 16, 250U << 8);
	tx_kick(f);
	assert_memory_equal(sent[1], frame, len);
	/* A UDP checksum that comes out 0 is sent as all ones (RFC 768). */
	for (uint32_t v = 0; v < 0x10000; v++) {
		uint8_t *ip = frame + 14;

		len = ipv4_pkt(frame, peer_mac, mac, false, 100, 2);
		wbe16(frame + len - 2, (uint16_t)v);
		wbe16(ip + 26, 0);
		if (ref_sum(ip + 20, (uint32_t)len - 34,
			    ref_sum(ip + 12, 8, 0) + 17 + (uint32_t)len - 34) == 0xFFFF) {
			uint32_t ps = ref_sum(ip + 12, 8, 0) + 17 + (uint32_t)(len - 34);

			while (ps >> 16)
				ps = (ps & 0xFFFF) + (ps >> 16);
			wbe16(ip + 26, (uint16_t)ps);
			break;
		}
	}
	tx_ctx(f, 14, 24, 33, 34, 40, 0, E1000_TXC_TUCMD_IP, 0, 0, 0);
	tx_data(f, 1, frame, len, E1000_TXD_CMD_EOP, E1000_TXD_POPTS_TXSM, 0);
	tx_kick(f);
	assert_int_equal(be16(sent[2] + 40), 0xFFFF);
	/* The guest's address is learnt from its ARP frames only, and only when sensible. */
	eth(arp, bcast, mac, 0x0806);
	wbe16(arp + 14, 1);
	wbe16(arp + 16, 0x0800);
	arp[18] = 6;
	arp[19] = 4;
	memcpy(arp + 22, mac, 6);
	wbe32(arp + 28, 0); /* no address yet (a DHCP probe) */
	tx_legacy(f, 0, arp, 60, E1000_TXD_CMD_EOP, 0);
	arp[22] ^= 1; /* sender address not the frame's source */
	wbe32(arp + 28, 0x0A000263);
	tx_legacy(f, 1, arp, 60, E1000_TXD_CMD_EOP, 0);
	arp[22] ^= 1;
	arp[19] = 16; /* not IPv4 */
	tx_legacy(f, 2, arp, 60, E1000_TXD_CMD_EOP, 0);
	tx_kick(f);
	assert_int_equal(f->e->s.guest_ip, 0);
	/* No link (SLU cleared): frames are not put on the wire. */
	w32(f, E1000_CTRL, r32(f, E1000_CTRL) & ~E1000_CTRL_SLU);
	tx_legacy(f, 0, frame, len, E1000_TXD_CMD_EOP, 0);
	tx_kick(f);
	assert_int_equal(nsent, 6);
}

static void test_tso_context_checks(void **state)
{
	struct fx *f = *state;
	uint8_t frame[3000], mac[6];
	size_t len;

	drv_up(f, 0);
	my_mac(f, mac);
	len = ipv4_pkt(frame, peer_mac, mac, true, 2000, 8);
	/* IPv6 context with a header too short for the 40-byte IPv6 header. */
	tx_ctx(f, 14, 0, 0, 20, 36, 0, E1000_TXC_TUCMD_TCP | E1000_TXC_TUCMD_TSE, 2000, 50, 500);
	tx_data(f, 0, frame, len, E1000_TXD_CMD_TSE | E1000_TXD_CMD_EOP, E1000_TXD_POPTS_TXSM, 0);
	/* IXSM with the IP checksum field beyond the header. */
	tx_ctx(f, 14, 60, 33, 34, 50, 0,
	       E1000_TXC_TUCMD_IP | E1000_TXC_TUCMD_TCP | E1000_TXC_TUCMD_TSE, 2000, 54, 500);
	tx_data(f, 1, frame, len, E1000_TXD_CMD_TSE | E1000_TXD_CMD_EOP, E1000_TXD_POPTS_IXSM, 0);
	/* TXSM with the TCP checksum field beyond the header. */
	tx_ctx(f, 14, 24, 33, 34, 60, 0,
	       E1000_TXC_TUCMD_IP | E1000_TXC_TUCMD_TCP | E1000_TXC_TUCMD_TSE, 2000, 54, 500);
	tx_data(f, 2, frame, len, E1000_TXD_CMD_TSE | E1000_TXD_CMD_EOP, E1000_TXD_POPTS_TXSM, 0);
	/* HDRLEN + MSS beyond the largest packet. */
	tx_ctx(f, 14, 24, 33, 34, 50, 0,
	       E1000_TXC_TUCMD_IP | E1000_TXC_TUCMD_TCP | E1000_TXC_TUCMD_TSE, 2000, 54, 16380);
	tx_data(f, 3, frame, len, E1000_TXD_CMD_TSE | E1000_TXD_CMD_EOP, E1000_TXD_POPTS_TXSM, 0);
	/* HDRLEN 0. */
	tx_ctx(f, 14, 24, 33, 34, 50, 0,
	       E1000_TXC_TUCMD_IP | E1000_TXC_TUCMD_TCP | E1000_TXC_TUCMD_TSE, 2000, 0, 500);
	tx_data(f, 4, frame, len, E1000_TXD_CMD_TSE | E1000_TXD_CMD_EOP, 0, 0);
	/* A buffer outside RAM in the middle of a TSO packet. */
	tx_ctx(f, 14, 24, 33, 34, 50, 0,
	       E1000_TXC_TUCMD_IP | E1000_TXC_TUCMD_TCP | E1000_TXC_TUCMD_TSE, 2000, 54, 500);
	tx_data(f, 5, frame, 600, E1000_TXD_CMD_TSE, E1000_TXD_POPTS_TXSM, 0);
	tx_add(f, 0xFFFFFFFF0000ULL,
	       E1000_TXD_CMD_DEXT | E1000_TXD_DTYP_DATA | E1000_TXD_CMD_TSE | E1000_TXD_CMD_EOP |
		       1454,
	       0);
	tx_kick(f);
	assert_int_equal(nsent, 1); /* only the first full segment of the last packet left */
	assert_int_equal(r32(f, E1000_STATS + E1000_ST_TSCTFC), 6);
	assert_int_equal(r32(f, E1000_TDH), f->tdt);
}

static void test_rx_corners(void **state)
{
	struct fx *f = *state;
	uint8_t frame[100] = { 0 }, mac[6];
	const uint8_t *data;
	struct rxd r;

	drv_up(f, E1000_RCTL_SECRC);
	my_mac(f, mac);
	eth(frame, mac, peer_mac, 0x0800);
	/* A descriptor whose buffer is outside RAM: the frame is reported broken (RXE). */
	{
		uint64_t bad = 0xFFFFFFFF0000ULL;
		uint8_t *d = gpa(f, RX_RING + 16ULL * f->rx_next, 16);

		memcpy(d, &bad, 8);
	}
	inject(f, frame, 60);
	rxd_get(f, f->rx_next, &r);
	assert_true(r.status & E1000_RXD_STAT_DD);
	assert_true(r.errors & E1000_RXD_ERR_RXE);
	f->rx_next++;
	/* A receive ring that is not set up, or broken, holds frames until it is repaired. */
	w32(f, E1000_RDH, NDESC + 1);
	inject(f, frame, 60);
	assert_int_equal(f->e->fifo.n, 1);
	w32(f, E1000_RDH, f->rx_next);
	assert_int_equal(f->e->fifo.n, 0);
	assert_true(rx_next(f, &r, &data));
	w32(f, E1000_RDLEN, 0);
	inject(f, frame, 60);
	assert_int_equal(f->e->fifo.n, 1);
	w32(f, E1000_RDLEN, 16 * NDESC);
	assert_true(rx_next(f, &r, &data));
	/* PBA.RXA 0: the FIFO still takes a frame of up to 1 KiB. */
	w32(f, E1000_PBA, 0);
	w32(f, E1000_RDLEN, 0);
	inject(f, frame, 60);
	inject(f, frame, 1000);
	assert_int_equal(f->e->fifo.n, 1);
	/* PCSS beyond the frame and its FCS: the packet checksum is 0. */
	w32(f, E1000_RDLEN, 16 * NDESC);
	assert_true(rx_next(f, &r, &data));
	w32(f, E1000_RCTL, r32(f, E1000_RCTL) & ~E1000_RCTL_SECRC);
	w32(f, E1000_RXCSUM, 0x400 | 0xFF);
	w32(f, E1000_RXCSUM, 0xFF);
	inject(f, frame, 60);
	assert_true(rx_next(f, &r, &data));
	assert_int_equal(r.csum, 0);
	/* A PCSS inside the FCS. */
	w32(f, E1000_RXCSUM, 62);
	inject(f, frame, 60);
	assert_true(rx_next(f, &r, &data));
	assert_int_equal(r.csum, ref_sum(data + 62, 2, 0));
	/* A tagged frame too short to hold its tag counts as untagged. */
	wbe16(frame + 12, 0x8100);
	w32(f, E1000_CTRL, r32(f, E1000_CTRL) | E1000_CTRL_VME);
	inject(f, frame, 16);
	assert_true(rx_next(f, &r, &data));
	assert_false(r.status & E1000_RXD_STAT_VP);
}

static void test_resume_corners(void **state)
{
	struct fx *f = *state, g;
	struct dev *d = &f->pd->dev;
	uint8_t *a, mac[6];
	size_t alen;

	drv_up(f, 0);
	/* A timer already due when saved: it fires at once after the restore. */
	w32(f, E1000_IMS, E1000_ICR_RXT0);
	f->e->s.deadline[TM_RDTR] = vclock_ns(&f->vm.ev) - 1;
	/* RA[0] unset: the announce uses the EEPROM's address; TCTL off: no announce at all. */
	w32(f, E1000_RA + 4, 0);
	a = devsnap_save_copy(d, &alen);
	fx_init(&g, (const char *const[]){ "backend=wire", NULL });
	assert_int_equal(devsnap_load(&g.pd->dev, a, alen, 1), 0);
	wire_reset();
	assert_int_equal(g.pd->dev.ops->resume(&g.pd->dev), 0);
	assert_int_equal(nsent, 1);
	memcpy(mac, sent[0] + 6, 6);
	assert_int_equal(mac[3], 0x12); /* 52:54:00:12:34:56 from f's EEPROM */
	advance(&g, 1);
	assert_true(r32(&g, E1000_ICR) & E1000_ICR_RXT0);
	fx_destroy(&g);
	w32(f, E1000_TCTL, 0);
	free(a);
	a = devsnap_save_copy(d, &alen);
	fx_init(&g, (const char *const[]){ "backend=wire", NULL });
	assert_int_equal(devsnap_load(&g.pd->dev, a, alen, 1), 0);
	wire_reset();
	assert_int_equal(g.pd->dev.ops->resume(&g.pd->dev), 0);
	assert_int_equal(nsent, 0);
	fx_destroy(&g);
	free(a);
	/* A WRAL half done is a state a device can be in: saved and loaded. */
	{
		uint32_t eecd = ee_start(f);

		ee_out(f, &eecd, 4, 3);
		ee_out(f, &eecd, 0x10, 6);
		ee_out(f, &eecd, 0x12, 8);
	}
	a = devsnap_save_copy(d, &alen);
	assert_int_equal(devsnap_load(d, a, alen, 1), 0);
	free(a);
}

/* ---- options ---- */

static void expect_refused(const char *const *opts, const char *needle)
{
	struct fx f;
	char err[256] = "";

	fx_create(&f, opts);
	assert_null(fx_add(&f, err, sizeof(err)));
	if (!strstr(err, needle))
		fail_msg("'%s' does not mention '%s'", err, needle);
	fx_destroy(&f);
}

static void test_options(void **state)
{
	struct fx f;
	char err[256];
	uint8_t a[6], b[6];

	expect_refused((const char *const[]){ "backend=wire", "mac=01:00:5e:00:00:01", NULL },
		       "bad mac");
	expect_refused((const char *const[]){ "backend=wire", "mac=52:54", NULL }, "bad mac");
	expect_refused((const char *const[]){ "backend=vde", NULL }, "unknown backend 'vde'");
	expect_refused((const char *const[]){ "backend=wire", "hostfwd=tcp:2222-:22", NULL },
		       "needs the slirp backend");
	/* An empty hostfwd= (a restore dropping the saved rules) is no rule. */
	fx_create(&f, (const char *const[]){ "backend=wire", "hostfwd=", NULL });
	assert_non_null(fx_add(&f, err, sizeof(err)));
	/* The default address: stable, locally administered, unicast. */
	my_mac(&f, a);
	fx_destroy(&f);
	fx_init(&f, (const char *const[]){ "backend=wire", NULL });
	my_mac(&f, b);
	assert_memory_equal(a, b, 6);
	assert_int_equal(a[0], 0x52);
	assert_int_equal(a[0] & 1, 0);
	fx_destroy(&f);
}

/* ---- slirp, on loopback only ---- */

#define WAIT_NS 5000000000LL

static int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The next frame slirp's thread delivered, its descriptor handed back; false after 5 s. */
static bool wait_rx(struct fx *f, uint8_t *frame, size_t *flen)
{
	int64_t end = mono_ns() + WAIT_NS;
	const uint8_t *data;
	struct rxd r;

	for (;;) {
		pthread_mutex_lock(&f->e->lock);
		if (rx_next(f, &r, &data)) {
			*flen = r.len < 2048 ? r.len : 2048;
			memcpy(frame, data, *flen);
			pthread_mutex_unlock(&f->e->lock);
			rx_give(f, 1);
			return true;
		}
		pthread_mutex_unlock(&f->e->lock);
		if (mono_ns() > end)
			return false;
		nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
	}
}

static const uint8_t guest_ip[4] = { 10, 0, 2, 15 };

/* An ARP packet @op from the guest (10.0.2.15) asking for or answering @tip. */
static void tx_arp(struct fx *f, const uint8_t mac[6], uint16_t op, const uint8_t *tha,
		   const uint8_t tip[4])
{
	uint8_t p[60] = { 0 };

	memcpy(p, tha ? tha : bcast, 6);
	memcpy(p + 6, mac, 6);
	wbe16(p + 12, 0x0806);
	wbe16(p + 14, 1);
	wbe16(p + 16, 0x0800);
	p[18] = 6;
	p[19] = 4;
	wbe16(p + 20, op);
	memcpy(p + 22, mac, 6);
	memcpy(p + 28, guest_ip, 4);
	if (tha)
		memcpy(p + 32, tha, 6);
	memcpy(p + 38, tip, 4);
	tx_legacy(f, f->tdt, p, sizeof(p), E1000_TXD_CMD_EOP | E1000_TXD_CMD_IFCS, 0);
	tx_kick(f);
}

static uint16_t free_tcp_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	close(fd);
	return ntohs(sa.sin_port);
}

/*
 * -s 3,e1000,slirp,hostfwd=tcp:PORT-:22: a connection to 127.0.0.1:PORT reaches the guest
 * through the e1000's receive ring as a TCP SYN for 10.0.2.15:22.
 */
/* ---- coalesced MMIO (bus.h) ---- */

#define CRING_MAX 170 /* entries in a 4 KiB ring, as KVM's */

/* The fixture with a ring of the test's own standing in for KVM's, attached before the NIC. */
static struct kvm_coalesced_mmio_ring *cx_init(struct fx *f)
{
	struct kvm_coalesced_mmio_ring *ring = calloc(1, 4096);
	char err[256];

	assert_non_null(ring);
	net_backend_register(&wire_type);
	wire_reset();
	fx_create(f, (const char *const[]){ "backend=wire", "mac=52:54:00:12:34:56", NULL });
	assert_int_equal(vm_coalesce_attach(&f->vm, ring, CRING_MAX), 0);
	if (!fx_add(f, err, sizeof(err)))
		fail_msg("e1000: %s", err);
	return ring;
}

static void cx_destroy(struct fx *f, struct kvm_coalesced_mmio_ring *ring)
{
	fx_destroy(f);
	free(ring);
	wire_reset();
}

/* What KVM does with a guest's write into a zone. */
static void cx_write(struct fx *f, struct kvm_coalesced_mmio_ring *ring, uint32_t off, uint32_t v)
{
	struct kvm_coalesced_mmio *e = &ring->coalesced_mmio[ring->last];

	assert_int_not_equal((ring->last + 1) % CRING_MAX, ring->first);
	e->phys_addr = f->bar + off;
	e->len = 4;
	e->pio = 0;
	io_put(e->data, 4, v);
	__atomic_store_n(&ring->last, (ring->last + 1) % CRING_MAX, __ATOMIC_RELEASE);
}

static bool cx_buffered(struct fx *f, uint64_t addr)
{
	for (unsigned i = 0; i < f->vm.mmio.nzones; i++) {
		const struct bus_zone *z = &f->vm.mmio.zones[i];

		if (addr >= z->base && addr + 4 <= z->base + z->len)
			return true;
	}
	return false;
}

static void test_coalesced_zones(void **state)
{
	static const uint32_t sync[] = {
		E1000_CTRL,  E1000_CTRL_ALIAS, E1000_MDIC, E1000_ICR,  E1000_ITR,   E1000_ICS,
		E1000_IMS,   E1000_IMC,	       E1000_TCTL, E1000_RDTR, E1000_TDBAL, E1000_TDBAH,
		E1000_TDLEN, E1000_TDH,	       E1000_TDT,  E1000_TIDV,
	};
	static const uint32_t buffered[] = {
		E1000_STATUS, E1000_EECD, E1000_EERD, E1000_RCTL, E1000_RDBAL,
		E1000_RDLEN,  E1000_RDH,  E1000_RDT,  E1000_RADV, E1000_TADV,
		E1000_MTA,    E1000_RA,	  E1000_VFTA, E1000_TIPG, E1000_MMIO_SIZE - 4,
	};
	struct kvm_coalesced_mmio_ring *ring;
	struct fx f;
	uint64_t old, moved = 0xD0000000ULL;
	uint8_t b[4];

	(void)state;
	ring = cx_init(&f);
	assert_int_equal(f.vm.mmio.nzones, 6);
	for (unsigned i = 0; i < sizeof(sync) / sizeof(sync[0]); i++)
		if (cx_buffered(&f, f.bar + sync[i]))
			fail_msg("register 0x%x is coalesced", sync[i]);
	for (unsigned i = 0; i < sizeof(buffered) / sizeof(buffered[0]); i++)
		if (!cx_buffered(&f, f.bar + buffered[i]))
			fail_msg("register 0x%x is not coalesced", buffered[i]);
	/* The I/O window is port I/O: never buffered. */
	assert_false(cx_buffered(&f, f.io));
	/* The guest moves BAR 0: the zones go with it. */
	old = f.bar;
	io_put(b, 4, 0x80000000U | SLOT << 11 | PCIR_BAR(0));
	bus_access(&f.vm.pio, 0xCF8, b, 4, true);
	io_put(b, 4, (uint32_t)moved);
	bus_access(&f.vm.pio, 0xCFC, b, 4, true);
	f.bar = pci_bar_addr(f.pd, 0);
	assert_int_equal(f.bar, moved);
	assert_int_equal(f.vm.mmio.nzones, 6);
	assert_true(cx_buffered(&f, moved + E1000_RDT));
	assert_false(cx_buffered(&f, old + E1000_RDT));
	assert_false(cx_buffered(&f, moved + E1000_TDT));
	/* Memory decoding off: no zone at all; on again: back. */
	io_put(b, 4, 0x80000000U | SLOT << 11 | PCIR_COMMAND);
	bus_access(&f.vm.pio, 0xCF8, b, 4, true);
	io_put(b, 2, PCIM_CMD_IO);
	bus_access(&f.vm.pio, 0xCFC, b, 2, true);
	assert_int_equal(f.vm.mmio.nzones, 0);
	io_put(b, 2, PCIM_CMD_IO | PCIM_CMD_MEM);
	bus_access(&f.vm.pio, 0xCFC, b, 2, true);
	assert_int_equal(f.vm.mmio.nzones, 6);
	cx_destroy(&f, ring);
}

/* The backend thread's frame sees the receive buffers the guest gave back (RDT, buffered). */
static void test_coalesced_rdt_before_frame(void **state)
{
	struct kvm_coalesced_mmio_ring *ring;
	uint8_t frame[60], mac[6];
	const uint8_t *data;
	struct rxd r;
	struct fx f;

	(void)state;
	ring = cx_init(&f);
	drv_up(&f, 0);
	my_mac(&f, mac);
	/* The driver has used every buffer: none is the device's. */
	w32(&f, E1000_RDT, r32(&f, E1000_RDH));
	f.rdt = r32(&f, E1000_RDH);
	f.rx_next = f.rdt;
	/* It hands 4 back, with a write KVM only buffers. */
	for (uint32_t k = 0; k < 4; k++) {
		uint32_t i = (f.rdt + k) % NDESC;
		uint64_t a = RXB(i);
		uint8_t *d = gpa(&f, RX_RING + 16ULL * i, 16);

		memset(d, 0, 16);
		memcpy(d, &a, 8);
	}
	cx_write(&f, ring, E1000_RDT, (f.rdt + 4) % NDESC);
	assert_int_equal(r32(&f, E1000_RDT), f.rdt); /* not there yet */
	eth(frame, mac, peer_mac, 0x0800);
	fill(frame + 14, sizeof(frame) - 14, 3);
	inject(&f, frame, sizeof(frame));
	/* Delivered into the buffer given back, not held in the FIFO for a later write. */
	assert_true(rx_next(&f, &r, &data));
	assert_int_equal(r.len, sizeof(frame) + 4); /* with its FCS: RCTL.SECRC is clear */
	assert_memory_equal(data, frame, sizeof(frame));
	assert_int_equal(f.e->fifo.n, 0);
	assert_int_equal(ring->first, ring->last);
	cx_destroy(&f, ring);
}

/* A write still buffered when a checkpoint pauses the VM is in the snapshot. */
static void test_coalesced_snapshot_drain(void **state)
{
	struct kvm_coalesced_mmio_ring *ring;
	struct fx f, g;
	char err[256];
	uint8_t *a;
	size_t alen;

	(void)state;
	ring = cx_init(&f);
	drv_up(&f, 0);
	cx_write(&f, ring, E1000_RADV, 0x1234);
	cx_write(&f, ring, E1000_MTA + 8, 0xA5A5A5A5U);
	cx_write(&f, ring, E1000_RDT, 5);
	assert_int_equal(f.e->s.reg[R_RADV], 0); /* buffered: the device has not seen it */
	/* The orchestrator's pause: vCPUs (none here), the ring, then devices. */
	assert_int_equal(snap_pause_vm(&f.vm, err, sizeof(err)), 0);
	a = devsnap_save_copy(&f.pd->dev, &alen);
	assert_int_equal(snap_resume_vm(&f.vm, err, sizeof(err)), 0);
	fx_init(&g, (const char *const[]){ "backend=wire", "mac=52:54:00:aa:bb:cc", NULL });
	assert_int_equal(devsnap_load(&g.pd->dev, a, alen, pci_emul_e1000.version), 0);
	assert_int_equal(r32(&g, E1000_RADV), 0x1234);
	assert_int_equal(r32(&g, E1000_MTA + 8), 0xA5A5A5A5U);
	assert_int_equal(r32(&g, E1000_RDT), 5);
	free(a);
	fx_destroy(&g);
	cx_destroy(&f, ring);
}

/* A guest that polls memory and makes no exit: its writes land by the VM's tick. */
static void test_coalesced_tick(void **state)
{
	struct kvm_coalesced_mmio_ring *ring;
	struct fx f;

	(void)state;
	ring = cx_init(&f);
	cx_write(&f, ring, E1000_RADV, 0x77);
	advance(&f, VM_COALESCE_TICK_NS);
	assert_int_equal(f.e->s.reg[R_RADV], 0x77);
	cx_destroy(&f, ring);
}

static void test_slirp_hostfwd_syn(void **state)
{
	static uint8_t r[2048];
	struct fx f;
	char opt[64];
	uint16_t port = free_tcp_port();
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
	uint8_t mac[6];
	size_t rlen;
	bool syn = false;
	int fd;

	snprintf(opt, sizeof(opt), "hostfwd=tcp:%u-:22", port);
	fx_init(&f, (const char *const[]){ "backend=slirp", opt, NULL });
	drv_up(&f, 0);
	my_mac(&f, mac);
	/* A gratuitous ARP tells slirp where 10.0.2.15 is. */
	tx_arp(&f, mac, 1, NULL, guest_ip);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	assert_true(fd >= 0);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) && errno != EINPROGRESS)
		fail_msg("connect 127.0.0.1:%u: %s", port, strerror(errno));
	while (!syn && wait_rx(&f, r, &rlen)) {
		const uint8_t *ip = r + 14, *tcp;

		if (be16(r + 12) == 0x0806 && rlen >= 42 && be16(r + 20) == 1 &&
		    !memcmp(r + 38, guest_ip, 4)) {
			/* slirp asks for the guest's MAC after all: answer. */
			tx_arp(&f, mac, 2, r + 6, r + 28);
			continue;
		}
		if (be16(r + 12) != 0x0800 || rlen < 14 + 20 + 20 || ip[9] != 6)
			continue;
		tcp = ip + (ip[0] & 0xF) * 4;
		assert_memory_equal(r, mac, 6);
		assert_memory_equal(ip + 16, guest_ip, 4);
		assert_true(ipv4_ok(ip));
		assert_int_equal(be16(tcp + 2), 22);
		assert_true(tcp[13] & 0x02); /* SYN */
		syn = true;
	}
	close(fd);
	if (!syn)
		fail_msg("no SYN toward 10.0.2.15:22 after connecting to 127.0.0.1:%u", port);
	fx_destroy(&f);
}

/* ---- the helpers underneath ---- */

static void test_csum_and_crc(void **state)
{
	static uint8_t buf[3000];

	fill(buf, sizeof(buf), 77);
	for (size_t len = 0; len < 80; len++)
		assert_int_equal(csum_fold(csum_add(0, buf, len)), ref_sum(buf, len, 0));
	assert_int_equal(csum_fold(csum_add(0, buf, sizeof(buf))), ref_sum(buf, sizeof(buf), 0));
	for (size_t len = 0; len < 40; len++)
		assert_int_equal(eth_crc32(buf + 3, len), ref_crc32(buf + 3, len));
	assert_int_equal(eth_crc32(buf, sizeof(buf)), ref_crc32(buf, sizeof(buf)));
	/* The check value of CRC-32/IEEE. */
	assert_int_equal(eth_crc32("123456789", 9), 0xCBF43926);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_identity, setup, teardown),
		cmocka_unit_test_setup_teardown(test_eeprom_eerd, setup, teardown),
		cmocka_unit_test_setup_teardown(test_eeprom_microwire, setup, teardown),
		cmocka_unit_test_setup_teardown(test_phy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_link_and_lsc, setup, teardown),
		cmocka_unit_test_setup_teardown(test_interrupt_causes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_msi, setup, teardown),
		cmocka_unit_test_setup_teardown(test_itr, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tx_legacy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tx_waits_for_eop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tx_jumbo, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tx_legacy_checksum, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tx_context_checksums, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tx_context_inside_packet, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tso, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tso_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tx_vlan_insert, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tx_bad_buffers_and_rings, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rx_basic_and_fcs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rx_disabled_or_no_link, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rx_filters, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rx_vlan, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rx_checksum_offload, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rx_jumbo_and_buffers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rx_fifo, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rx_interrupt_delays, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tx_interrupt_delays, setup, teardown),
		cmocka_unit_test_setup_teardown(test_loopback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_register_masks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_access_sizes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_io_window_and_reset, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pause_drains_tx_holds_rx, setup, teardown),
		cmocka_unit_test_setup_teardown(test_txworker_order_and_pause, setup_worker,
						teardown),
		cmocka_unit_test_setup_teardown(test_txworker_slow_wire_and_reset, setup_worker,
						teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_roundtrip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_rarp_without_address, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_refused_fields, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_after_mdic_error, setup, teardown),
		cmocka_unit_test_setup_teardown(test_options, setup, teardown),
		cmocka_unit_test_setup_teardown(test_register_sweep, setup, teardown),
		cmocka_unit_test_setup_teardown(test_phy_and_eeprom_corners, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stats_saturate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tx_corners, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tso_context_checks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rx_corners, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resume_corners, setup, teardown),
		cmocka_unit_test(test_coalesced_zones),
		cmocka_unit_test(test_coalesced_rdt_before_frame),
		cmocka_unit_test(test_coalesced_snapshot_drain),
		cmocka_unit_test(test_coalesced_tick),
		cmocka_unit_test(test_slirp_hostfwd_syn),
		cmocka_unit_test(test_csum_and_crc),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
