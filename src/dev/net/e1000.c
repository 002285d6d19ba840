// SPDX-License-Identifier: BSD-2-Clause
/*
 * e1000: an Intel 82545EM gigabit Ethernet controller (PCI 8086:100F, copper), for guests
 * without virtio drivers: Linux's e1000, FreeBSD's em(4), Windows' in-box driver, iPXE.
 * Register and descriptor numbers are those of the PCI/PCI-X Family of Gigabit Ethernet
 * Controllers Software Developer's Manual (the "SDM"); e1000_regs.h lists them.
 *
 *	-s SLOT,e1000[,slirp][,hostfwd=RULE[;RULE..]][,mac=MAC]
 *	-s SLOT,e1000,tap=NAME[,mac=MAC]	(or bhyve's -s SLOT,e1000,tapN)
 *	... ,txthread=on	transmit on a worker thread (default off: the vCPU thread that
 *			writes TDT walks the ring and sends)
 *
 * The network is the backend layer every NIC shares (backend/net_backend.h): slirp by
 * default, or a tap interface.  mac= sets the address burnt into the EEPROM; without it the
 * address is derived from the VM name and the slot, as for virtio-net.
 *
 * What it emulates:
 *   - PCI: BAR 0 the 128 KiB register window, BAR 1 the I/O window (IOADDR/IODATA, which
 *     Linux uses for the reset), INTA, an MSI capability, a power-management capability.
 *   - The 64-word Microwire EEPROM (MAC address, IDs, checksum 0xBABA) read through EERD or
 *     bit-banged through EECD (read, and write/erase after EWEN); words written stay until
 *     the VM ends (they are in the snapshot too).
 *   - The PHY at MDIO address 1 through MDIC: an 88E1011 whose link is up with
 *     autonegotiation complete at 1000 Mb/s full duplex; reset, power down, loopback.
 *     STATUS.LU follows the PHY once the driver set CTRL.SLU; a change raises LSC.
 *   - Receive (e1000_rx.c) and transmit (e1000_tx.c); MAC and PHY loopback.
 *   - Interrupts: ICR (read clears, write 1 clears), ICS, IMS, IMC, the throttle ITR, the
 *     delays RDTR/RADV and TIDV/TADV (with flush-partial-descriptor), all on the VM's
 *     virtual clock; INTx is level (asserted while ICR & IMS), MSI one message per
 *     assertion.
 *   - The statistics registers the traffic moves (good, total, broadcast, multicast, size
 *     buckets, octets, missed, no-buffer, over/undersize, TSO contexts), clear on read.
 *   - Device reset (CTRL.RST), PHY reset (CTRL.PHY_RST, PHY control bit 15), EEPROM reload
 *     (CTRL_EXT.EE_RST).
 * Registers the 82545EM has for wake-up and manageability (WUC, WUFC, the IP and flexible
 * filter tables, MANC) hold what is written, but the VM has no sleep state to wake from, so
 * no wake-up packet is ever recognised; flow-control frames are never sent (the backends
 * have no pause frames), and the EEPROM says so.  Accesses must be 32 bits wide, as the SDM
 * requires: 64-bit accesses are split, narrower writes are ignored.
 *
 * Threads: registers on vCPU threads, the transmit worker (e1000_tx.c: a TDT write wakes it
 * and returns), frames from the backend on its thread, interrupt timers on the event-loop
 * thread; one lock (e1000.h).  Writes to
 * registers without an effect the guest waits for (RDT, RCTL, the filter tables...) are
 * coalesced MMIO: KVM buffers them and they arrive, in order, at the next exit of any vCPU,
 * before a frame from the network, at a pause, or from the VM's 10 ms tick (bus.h,
 * e1000_sync_regs below, -o mmio.coalesce).
 *
 * Snapshots: pause sends every whole packet the driver queued, stops the transmit worker
 * (resume starts it) and then holds frames from the network in the FIFO (dropped when it is full, as a link would drop them) until resume.
 * The saved state is every register, the filter and wake-up tables, the statistics, the
 * EEPROM and its Microwire state, the PHY registers, both transmit contexts, the interrupt
 * line and the timers as time remaining (re-armed on resume).  Frames still in the FIFO are
 * not saved.  After a restore the device announces the guest: a gratuitous ARP for the
 * address the guest last used in an ARP frame, or a RARP when it never sent one.  The
 * backend is opened from the restoring configuration, so it may differ from the saved one.
 */
#include "dev/net/e1000.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dev/pci/pci.h"
#include "log.h"
#include "sstream.h"
#include "vm.h"

#define E1000_STATE_VERSION 1
#define E1000_MAX_RING_REPORTS 8
#define PCIY_PM 0x01
#define ETH_P_ARP 0x0806

#define E1000_REG_WMASK(name, off, wmask, reset) [R_##name] = (wmask),
#define E1000_REG_RESET(name, off, wmask, reset) [R_##name] = (reset),
static const uint32_t reg_wmask[E1000_NREGS] = { E1000_REGS(E1000_REG_WMASK) };
static const uint32_t reg_reset[E1000_NREGS] = { E1000_REGS(E1000_REG_RESET) };

struct e1000_tabdesc {
	uint32_t base, n;
};

#define E1000_TAB_DESC(name, b, cnt) [T_##name] = { .base = (b), .n = (cnt) },
static const struct e1000_tabdesc tabs[E1000_NTABLES] = { E1000_TABLES(E1000_TAB_DESC) };

static uint32_t tab_first(enum e1000_table t)
{
	uint32_t first = 0;

	for (unsigned i = 0; i < (unsigned)t; i++)
		first += tabs[i].n;
	return first;
}

uint32_t *e1000_table(struct e1000 *e, enum e1000_table t)
{
	return &e->s.tab[tab_first(t)];
}

const uint32_t *e1000_table_c(const struct e1000 *e, enum e1000_table t)
{
	return &e->s.tab[tab_first(t)];
}

static int reg_index(uint32_t off)
{
	switch (off) {
#define E1000_REG_CASE(name, o, wmask, reset) \
	case o:                               \
		return R_##name;
		E1000_REGS(E1000_REG_CASE)
	}
	return -1;
}

/* The word of a register table at @off, or NULL. */
static uint32_t *tab_word(struct e1000 *e, uint32_t off, enum e1000_table *which)
{
	for (unsigned i = 0; i < E1000_NTABLES; i++) {
		if (off >= tabs[i].base && off < tabs[i].base + 4 * tabs[i].n) {
			*which = (enum e1000_table)i;
			return e1000_table(e, *which) + (off - tabs[i].base) / 4;
		}
	}
	return NULL;
}

static uint32_t *ra_words(struct e1000 *e)
{
	return e1000_table(e, T_RA);
}

static uint16_t get_be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

uint64_t e1000_now(struct e1000 *e)
{
	return vclock_ns(&e->vm->ev);
}

/* ---- interrupts ---- */

/*
 * Drive the interrupt from ICR & IMS: asserted while a cause is pending and unmasked, but
 * no sooner than ITR x 256 ns after the previous assertion (the throttle timer waits).
 */
static void irq_update(struct e1000 *e)
{
	uint32_t pending = e->s.reg[R_ICR] & e->s.reg[R_IMS];
	uint32_t itr = e->s.reg[R_ITR] & 0xFFFF;
	uint64_t now;

	if (!pending) {
		if (e->s.irq) {
			e->s.irq = false;
			pci_irq_deassert(e->pd);
		}
		return;
	}
	if (e->s.irq)
		return;
	now = e1000_now(e);
	if (itr && now < e->s.itr_next) {
		e1000_timer_start(e, TM_ITR, e->s.itr_next - now, false);
		return;
	}
	e->s.irq = true;
	e->s.itr_next = now + itr * 256ULL;
	pci_interrupt(e->pd, 0);
}

void e1000_raise(struct e1000 *e, uint32_t causes)
{
	e->s.reg[R_ICR] |= causes & E1000_ICR_ALL;
	irq_update(e);
}

void e1000_timer_start(struct e1000 *e, enum e1000_timer t, uint64_t ns, bool restart)
{
	if (e->s.deadline[t] && !restart)
		return;
	e->s.deadline[t] = e1000_now(e) + ns;
	if (!e->s.deadline[t])
		e->s.deadline[t] = 1; /* 0 means stopped */
	vtimer_arm(&e->timer[t], e->s.deadline[t]);
}

void e1000_timer_stop(struct e1000 *e, enum e1000_timer t)
{
	if (!e->s.deadline[t])
		return;
	e->s.deadline[t] = 0;
	vtimer_cancel(&e->timer[t]);
}

static void timers_stop_all(struct e1000 *e)
{
	for (unsigned t = 0; t < E1000_NTIMERS; t++)
		e1000_timer_stop(e, (enum e1000_timer)t);
}

/* Event-loop thread.  A late call after a stop or a restart finds nothing due and returns. */
static void timer_fire(struct e1000 *e, enum e1000_timer t)
{
	pthread_mutex_lock(&e->lock);
	if (e->s.deadline[t] && e1000_now(e) >= e->s.deadline[t]) {
		e->s.deadline[t] = 0;
		switch (t) {
		case TM_RDTR:
		case TM_RADV:
			/* Either delay ends the wait: the interrupt covers every frame so far. */
			e1000_timer_stop(e, TM_RDTR);
			e1000_timer_stop(e, TM_RADV);
			e1000_raise(e, E1000_ICR_RXT0);
			break;
		case TM_TIDV:
		case TM_TADV:
			e1000_timer_stop(e, TM_TIDV);
			e1000_timer_stop(e, TM_TADV);
			e1000_raise(e, E1000_ICR_TXDW);
			break;
		default:
			irq_update(e);
			break;
		}
	}
	pthread_mutex_unlock(&e->lock);
}

#define E1000_TIMER_FN(t)                   \
	static void timer_##t(void *opaque) \
	{                                   \
		timer_fire(opaque, t);      \
	}
E1000_TIMER_FN(TM_RDTR)
E1000_TIMER_FN(TM_RADV)
E1000_TIMER_FN(TM_TIDV)
E1000_TIMER_FN(TM_TADV)
E1000_TIMER_FN(TM_ITR)

static const vtimer_fn timer_fns[E1000_NTIMERS] = {
	[TM_RDTR] = timer_TM_RDTR, [TM_RADV] = timer_TM_RADV, [TM_TIDV] = timer_TM_TIDV,
	[TM_TADV] = timer_TM_TADV, [TM_ITR] = timer_TM_ITR,
};

/* ---- link ---- */

static bool phy_link(const struct e1000 *e)
{
	uint16_t ctrl = e->s.phy[PHY_CTRL];

	return !(ctrl & (PHY_CTRL_POWER_DOWN | PHY_CTRL_ISOLATE)) &&
	       !(e->s.reg[R_CTRL] & E1000_CTRL_PHY_RST);
}

bool e1000_link_up(const struct e1000 *e)
{
	return phy_link(e) && (e->s.reg[R_CTRL] & E1000_CTRL_SLU);
}

bool e1000_loopback(const struct e1000 *e)
{
	return (e->s.reg[R_RCTL] & E1000_RCTL_LBM_MASK) == E1000_RCTL_LBM_MAC ||
	       (e->s.phy[PHY_CTRL] & PHY_CTRL_LOOPBACK);
}

static void link_update(struct e1000 *e)
{
	bool up = e1000_link_up(e);

	if (up != e->s.link) {
		e->s.link = up;
		e1000_raise(e, E1000_ICR_LSC);
	}
}

static uint32_t status_read(const struct e1000 *e)
{
	uint32_t v = E1000_STATUS_FD | E1000_STATUS_SPEED_1000 | E1000_STATUS_ASDV_1000;

	if (e1000_link_up(e))
		v |= E1000_STATUS_LU;
	return v;
}

/* ---- statistics ---- */

void e1000_stat(struct e1000 *e, unsigned off, uint32_t v)
{
	uint32_t *c = &e->s.stats[off / 4];

	/* The counters stick at their maximum rather than wrap. */
	*c = *c > UINT32_MAX - v ? UINT32_MAX : *c + v;
}

void e1000_stat64(struct e1000 *e, unsigned off_lo, uint64_t v)
{
	uint32_t *c = &e->s.stats[off_lo / 4];
	uint64_t cur = (uint64_t)c[1] << 32 | c[0];

	cur = cur > UINT64_MAX - v ? UINT64_MAX : cur + v;
	c[0] = (uint32_t)cur;
	c[1] = (uint32_t)(cur >> 32);
}

/* Clear on read; a 64-bit counter clears when its high half is read (low first). */
static uint32_t stat_read(struct e1000 *e, unsigned off)
{
	uint32_t *c = &e->s.stats[off / 4], v = *c;

	switch (off) {
	case E1000_ST_GORCL:
	case E1000_ST_GOTCL:
	case E1000_ST_TORL:
	case E1000_ST_TOTL:
		return v;
	case E1000_ST_GORCH:
	case E1000_ST_GOTCH:
	case E1000_ST_TORH:
	case E1000_ST_TOTH:
		c[-1] = 0;
		break;
	}
	*c = 0;
	return v;
}

/* ---- EEPROM ---- */

static void eeprom_build(struct e1000 *e)
{
	uint16_t *w = e->s.eeprom, sum = 0;

	memset(w, 0, E1000_EE_WORDS * sizeof(*w));
	for (int i = 0; i < 3; i++)
		w[E1000_EE_MAC + i] = (uint16_t)(e->mac[2 * i] | e->mac[2 * i + 1] << 8);
	w[E1000_EE_ID_LED] = 0xFFFF; /* no LED settings: drivers use their defaults */
	w[E1000_EE_PBA] = 0x4B48;    /* "KH": the board is khyve's */
	w[E1000_EE_PBA + 1] = 0x0001;
	/* Signature 01b in bits 15:14; load the subsystem and device IDs from here. */
	w[E1000_EE_INIT1] = 0x4003;
	w[E1000_EE_SUBSYS] = E1000_DEV_82545EM;
	w[E1000_EE_SUBVEN] = E1000_VENDOR;
	w[E1000_EE_DEVID] = E1000_DEV_82545EM;
	w[E1000_EE_VENID] = E1000_VENDOR;
	w[E1000_EE_INIT2] = 0x0000; /* no PAUSE, no ASM_DIR: no flow control */
	w[E1000_EE_INIT3] = 0x0000; /* no wake-up */
	for (int i = 0; i < E1000_EE_CHECKSUM; i++)
		sum = (uint16_t)(sum + w[i]);
	w[E1000_EE_CHECKSUM] = (uint16_t)(E1000_EE_SUM - sum);
}

/* What the chip loads from the EEPROM after a reset: receive address 0. */
static void eeprom_load_ra(struct e1000 *e)
{
	uint32_t *ra = ra_words(e);
	const uint16_t *w = e->s.eeprom;

	ra[0] = (uint32_t)w[0] | (uint32_t)w[1] << 16;
	ra[1] = w[2] | E1000_RAH_AV;
}

static void ee_cmd_done(struct e1000_eewire *ee, uint16_t *mem)
{
	unsigned op = (ee->in >> 6) & 3, addr = ee->in & 0x3F;

	ee->state = EEW_DONE;
	ee->addr = (uint8_t)addr;
	switch (op) {
	case 2: /* READ */
		ee->state = EEW_READ;
		ee->nout = 0;
		break;
	case 1: /* WRITE: 16 data bits follow */
		ee->state = EEW_DATA;
		break;
	case 3: /* ERASE */
		if (ee->write_en)
			mem[addr] = 0xFFFF;
		break;
	default: /* 00: the two top address bits extend the opcode */
		switch (addr >> 4) {
		case 3:
			ee->write_en = true; /* EWEN */
			break;
		case 0:
			ee->write_en = false; /* EWDS */
			break;
		case 2: /* ERAL */
			if (ee->write_en)
				memset(mem, 0xFF, E1000_EE_WORDS * sizeof(*mem));
			break;
		case 1: /* WRAL */
			ee->state = EEW_DATA;
			ee->addr = 0xFF;
			break;
		}
	}
	ee->in = 0;
	ee->nin = 0;
}

/* One rising edge of SK with CS high: shift DI in, or the next data bit out. */
static void ee_clock(struct e1000_eewire *ee, uint16_t *mem, bool di)
{
	switch (ee->state) {
	case EEW_CMD:
		if (!ee->nin && !ee->in && !di)
			return; /* waiting for the start bit */
		ee->in = ee->in << 1 | di;
		if (++ee->nin == 3 + E1000_EE_ABITS)
			ee_cmd_done(ee, mem);
		break;
	case EEW_READ:
		ee->nout++;
		break;
	case EEW_DATA:
		ee->in = ee->in << 1 | di;
		if (++ee->nin == 16) {
			if (ee->write_en && ee->addr == 0xFF)
				for (int i = 0; i < E1000_EE_WORDS; i++)
					mem[i] = (uint16_t)ee->in;
			else if (ee->write_en)
				mem[ee->addr] = (uint16_t)ee->in;
			ee->state = EEW_DONE;
		}
		break;
	}
}

static void eecd_write(struct e1000 *e, uint32_t v)
{
	struct e1000_eewire *ee = &e->s.ee;
	uint8_t pins = (uint8_t)(v & (E1000_EECD_SK | E1000_EECD_CS | E1000_EECD_DI));

	e->s.reg[R_EECD] = v & reg_wmask[R_EECD];
	if (!(pins & E1000_EECD_CS) || !(ee->last & E1000_EECD_CS)) {
		/* CS low, or just raised: a new command starts. */
		ee->state = EEW_CMD;
		ee->in = 0;
		ee->nin = 0;
	}
	if ((pins & E1000_EECD_CS) && (pins & E1000_EECD_SK) && !(ee->last & E1000_EECD_SK))
		ee_clock(ee, e->s.eeprom, pins & E1000_EECD_DI);
	ee->last = pins;
}

static uint32_t eecd_read(const struct e1000 *e)
{
	const struct e1000_eewire *ee = &e->s.ee;
	uint32_t v = e->s.reg[R_EECD] | E1000_EECD_PRES;
	bool dout = true; /* idle, or a write finished: "ready" */

	if (v & E1000_EECD_REQ)
		v |= E1000_EECD_GNT; /* nothing else uses the EEPROM: granted at once */
	if (ee->state == EEW_READ) {
		if (!ee->nout) {
			dout = false; /* the dummy zero before the data */
		} else {
			unsigned bit = ee->nout - 1u;
			uint16_t w = e->s.eeprom[(ee->addr + bit / 16) % E1000_EE_WORDS];

			dout = w >> (15 - bit % 16) & 1;
		}
	}
	return dout ? v | E1000_EECD_DO : v & ~E1000_EECD_DO;
}

static void eerd_write(struct e1000 *e, uint32_t v)
{
	unsigned addr = (v >> E1000_EERD_ADDR_SHIFT) & 0xFF;

	if (!(v & E1000_EERD_START)) {
		e->s.reg[R_EERD] = v & reg_wmask[R_EERD] & ~E1000_EERD_DONE;
		return;
	}
	/* Done at once; the 64-word part ignores the top address bits. */
	e->s.reg[R_EERD] = (uint32_t)e->s.eeprom[addr % E1000_EE_WORDS] << E1000_EERD_DATA_SHIFT |
			   addr << E1000_EERD_ADDR_SHIFT | E1000_EERD_DONE;
}

/* ---- PHY ---- */

static const uint16_t phy_reset_val[PHY_NREGS] = {
	[PHY_CTRL] = 0x1140, /* autonegotiation on, full duplex, 1000 Mb/s */
	[PHY_ID1] = 0x0141,  /* Marvell */
	[PHY_ID2] = 0x0C20,  /* 88E1011, revision 0 */
	[PHY_ANAR] = 0x01E1, /* 10/100 half and full, IEEE 802.3 */
	[PHY_NPTX] = 0x2001,	     [PHY_GBCR] = 0x0300, /* 1000 half and full */
	[PHY_EXT_STATUS] = 0x3000,   [PHY_M88_SPEC_CTRL] = 0x0068, [PHY_M88_EXT_SPEC_CTRL] = 0x0C60,
	[PHY_M88_LED_CTRL] = 0x4100,
};

/* Registers a write cannot change (status, identity, the partner's abilities). */
static bool phy_read_only(unsigned r)
{
	switch (r) {
	case PHY_STATUS:
	case PHY_ID1:
	case PHY_ID2:
	case PHY_ANLPAR:
	case PHY_ANER:
	case PHY_LPNPR:
	case PHY_GBSR:
	case PHY_EXT_STATUS:
	case PHY_M88_SPEC_STATUS:
	case PHY_M88_INT_STATUS:
	case PHY_M88_RX_ERR:
		return true;
	}
	return false;
}

static void phy_reset(struct e1000 *e)
{
	memcpy(e->s.phy, phy_reset_val, sizeof(e->s.phy));
}

static uint16_t phy_read(const struct e1000 *e, unsigned r)
{
	bool link = phy_link(e);
	bool aneg = e->s.phy[PHY_CTRL] & PHY_CTRL_ANEG_EN;

	switch (r) {
	case PHY_STATUS:
		return (uint16_t)(0x7949 | (link ? PHY_STATUS_LINK : 0) |
				  (link && aneg ? PHY_STATUS_ANEG_DONE : 0));
	case PHY_ANLPAR: /* the partner: 10/100 half and full, pause, acknowledged */
		return link && aneg ? 0x45E1 : 0;
	case PHY_ANER:
		return link && aneg ? 0x0001 : 0; /* the partner autonegotiates */
	case PHY_GBSR: /* local and remote receiver OK, the partner does 1000 half and full */
		return link ? 0x3C00 : 0;
	case PHY_M88_SPEC_STATUS: /* 1000 Mb/s, full duplex, resolved, link */
		return link ? 0xAC00 : 0;
	default:
		return e->s.phy[r];
	}
}

static void phy_write(struct e1000 *e, unsigned r, uint16_t v)
{
	if (phy_read_only(r))
		return;
	if (r == PHY_CTRL && (v & PHY_CTRL_RESET)) {
		phy_reset(e);
		/* Reset keeps what this write asks for besides itself, as the PHY latches it. */
		v = (uint16_t)(v & ~PHY_CTRL_RESET);
	}
	if (r == PHY_CTRL)
		v &= (uint16_t)~PHY_CTRL_ANEG_RESTART; /* autonegotiation completes at once */
	e->s.phy[r] = v;
	link_update(e);
}

static void mdic_write(struct e1000 *e, uint32_t v)
{
	unsigned phy = (v >> E1000_MDIC_PHY_SHIFT) & 0x1F, r = (v >> E1000_MDIC_REG_SHIFT) & 0x1F;
	uint32_t op = v & (3U << 26);

	v &= reg_wmask[R_MDIC];
	if (phy != PHY_ADDR || (op != E1000_MDIC_OP_READ && op != E1000_MDIC_OP_WRITE)) {
		/* Nothing answers at another address: the management frame fails. */
		e->s.reg[R_MDIC] = v | E1000_MDIC_READY | E1000_MDIC_ERROR;
	} else if (op == E1000_MDIC_OP_READ) {
		e->s.reg[R_MDIC] = (v & ~E1000_MDIC_DATA_MASK) | phy_read(e, r) | E1000_MDIC_READY;
	} else {
		phy_write(e, r, (uint16_t)v);
		e->s.reg[R_MDIC] = v | E1000_MDIC_READY;
	}
	if (v & E1000_MDIC_INT_EN)
		e1000_raise(e, E1000_ICR_MDAC);
}

/* ---- reset ---- */

/* CTRL.RST or power-up: everything but PCI configuration, the EEPROM and the PHY. */
static void dev_reset(struct e1000 *e)
{
	timers_stop_all(e);
	memcpy(e->s.reg, reg_reset, sizeof(e->s.reg));
	memset(e->s.tab, 0, sizeof(e->s.tab));
	memset(e->s.stats, 0, sizeof(e->s.stats));
	memset(e->s.ctx, 0, sizeof(e->s.ctx));
	memset(&e->s.ee, 0, sizeof(e->s.ee));
	e->s.ioaddr = 0;
	e->s.itr_next = 0;
	e->s.link = false; /* CTRL.SLU is clear again */
	if (e->s.irq) {
		e->s.irq = false;
		pci_irq_deassert(e->pd);
	}
	eeprom_load_ra(e);
	net_rxq_clear(&e->fifo);
	e->ring_error[0] = e->ring_error[1] = false;
}

/* ---- rings ---- */

static void ring_report(struct e1000 *e, bool tx, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void ring_report(struct e1000 *e, bool tx, const char *fmt, ...)
{
	char why[160];
	va_list ap;

	/* The guest chooses how often this happens: once per ring setup, a few in all. */
	if (e->ring_error[tx] || e->ring_reports >= E1000_MAX_RING_REPORTS)
		return;
	e->ring_error[tx] = true;
	e->ring_reports++;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	log_warn("%s: e1000 %s ring: %s; the %s unit stops until the driver sets the ring "
		 "up again",
		 e->pd->dev.id, tx ? "transmit" : "receive", why, tx ? "transmit" : "receive");
}

uint8_t *e1000_ring(struct e1000 *e, bool tx, uint32_t *ndesc)
{
	const uint32_t *r = e->s.reg;
	uint32_t len = tx ? r[R_TDLEN] : r[R_RDLEN], n = len / 16;
	uint32_t head = tx ? r[R_TDH] : r[R_RDH], tail = tx ? r[R_TDT] : r[R_RDT];
	uint64_t base = tx ? (uint64_t)r[R_TDBAH] << 32 | r[R_TDBAL]
			   : (uint64_t)r[R_RDBAH] << 32 | r[R_RDBAL];
	uint8_t *p;

	if (!len)
		return NULL; /* not set up yet */
	if (head >= n || tail >= n) {
		ring_report(e, tx, "head %u or tail %u is beyond its %u descriptors", head, tail,
			    n);
		return NULL;
	}
	p = vm_gpa(e->vm, base, len);
	if (!p) {
		ring_report(e, tx, "0x%" PRIx64 " + %u bytes is not guest RAM", base, len);
		return NULL;
	}
	*ndesc = n;
	return p;
}

/* ---- the wire ---- */

/* The guest's address from an ARP frame it sends (sender protocol address). */
static void learn_ip(struct e1000 *e, const uint8_t *f, size_t len)
{
	const uint8_t *a = f + 14;
	uint32_t spa;

	if (len < 42 || get_be16(f + 12) != ETH_P_ARP || get_be16(a) != 1 ||
	    get_be16(a + 2) != 0x0800 || a[4] != 6 || a[5] != 4 || memcmp(a + 8, f + 6, 6))
		return;
	spa = (uint32_t)a[14] << 24 | (uint32_t)a[15] << 16 | (uint32_t)a[16] << 8 | a[17];
	if (spa)
		e->s.guest_ip = spa;
}

static void tx_stats(struct e1000 *e, const uint8_t *f, uint32_t wire_len)
{
	static const uint32_t bound[] = { 64, 127, 255, 511, 1023, 1522 };
	static const unsigned reg[] = { E1000_ST_PTC64,	 E1000_ST_PTC127,  E1000_ST_PTC255,
					E1000_ST_PTC511, E1000_ST_PTC1023, E1000_ST_PTC1522 };

	e1000_stat(e, E1000_ST_GPTC, 1);
	e1000_stat(e, E1000_ST_TPT, 1);
	e1000_stat64(e, E1000_ST_GOTCL, wire_len);
	e1000_stat64(e, E1000_ST_TOTL, wire_len);
	for (unsigned i = 0; i < 6; i++) {
		if (wire_len <= bound[i]) {
			e1000_stat(e, reg[i], 1);
			break;
		}
	}
	if (f[0] & 1)
		e1000_stat(e,
			   memcmp(f, "\xFF\xFF\xFF\xFF\xFF\xFF", 6) ? E1000_ST_MPTC : E1000_ST_BPTC,
			   1);
}

void e1000_wire_out(struct e1000 *e, const uint8_t *f, size_t len)
{
	learn_ip(e, f, len);
	tx_stats(e, f, (uint32_t)len + 4);
	if (e1000_loopback(e))
		e1000_rx_input(e, f, len);
	else if (e1000_link_up(e))
		e1000_tx_backend(e, f, len); /* a frame the backend cannot take is lost */
}

/* A frame from the network, on the backend's thread. */
static void e1000_backend_rx(void *opaque, const void *frame, size_t len)
{
	struct e1000 *e = opaque;

	/* RDT, RCTL and the filters as the guest last wrote them: buffered writes first. */
	bus_coalesce_drain(&e->vm->mmio);
	pthread_mutex_lock(&e->lock);
	/* No link, or looped back inside the PHY or MAC: the wire is not listened to. */
	if (e1000_link_up(e) && !e1000_loopback(e))
		e1000_rx_input(e, frame, len);
	pthread_mutex_unlock(&e->lock);
}

/* ---- registers ---- */

static uint32_t reg_read(struct e1000 *e, uint32_t off)
{
	enum e1000_table t;
	uint32_t *w, v;
	int i;

	if (off >= E1000_STATS && off < E1000_STATS + 4 * E1000_NSTATS)
		return stat_read(e, off - E1000_STATS);
	w = tab_word(e, off, &t);
	if (w)
		return *w;
	switch (off) {
	case E1000_CTRL_ALIAS:
		return e->s.reg[R_CTRL];
	case E1000_STATUS:
		return status_read(e);
	case E1000_EECD:
		return eecd_read(e);
	case E1000_ICR:
		v = e->s.reg[R_ICR];
		e->s.reg[R_ICR] = 0; /* reading acknowledges every cause */
		irq_update(e);
		return v;
	case E1000_ICS:
	case E1000_IMC:
		return 0; /* write-only */
	}
	i = reg_index(off);
	return i < 0 ? 0 : e->s.reg[i];
}

/* Ring registers: a new base or length may repair a ring reported broken. */
static void ring_written(struct e1000 *e, bool tx, bool layout)
{
	if (layout)
		e->ring_error[tx] = false;
	if (tx)
		e1000_tx_kick(e);
	else
		e1000_rx_flush(e);
}

static void ctrl_write(struct e1000 *e, uint32_t v)
{
	uint32_t old = e->s.reg[R_CTRL];

	if (v & E1000_CTRL_RST) {
		dev_reset(e);
		return;
	}
	e->s.reg[R_CTRL] = v & reg_wmask[R_CTRL];
	if ((v & ~old) & E1000_CTRL_PHY_RST)
		phy_reset(e);
	link_update(e);
}

static void rctl_write(struct e1000 *e, uint32_t v)
{
	uint32_t old = e->s.reg[R_RCTL];

	e->s.reg[R_RCTL] = v & reg_wmask[R_RCTL];
	if ((old & E1000_RCTL_EN) && !(v & E1000_RCTL_EN))
		net_rxq_clear(&e->fifo); /* the receive unit stops: its FIFO empties */
	e1000_rx_flush(e);
}

/* Writes with a side effect; false when @off is a plain register. */
static bool reg_write_special(struct e1000 *e, uint32_t off, uint32_t v)
{
	switch (off) {
	case E1000_CTRL:
	case E1000_CTRL_ALIAS:
		ctrl_write(e, v);
		return true;
	case E1000_EECD:
		eecd_write(e, v);
		return true;
	case E1000_EERD:
		eerd_write(e, v);
		return true;
	case E1000_CTRL_EXT:
		e->s.reg[R_CTRL_EXT] = v & reg_wmask[R_CTRL_EXT];
		if (v & E1000_CTRL_EXT_EE_RST)
			eeprom_load_ra(e);
		return true;
	case E1000_MDIC:
		mdic_write(e, v);
		return true;
	case E1000_ICR: /* write 1 to clear; with MSI what stays pending needs a new message */
		e->s.reg[R_ICR] &= ~v;
		if (pci_msi_enabled(e->pd))
			e->s.irq = false;
		irq_update(e);
		return true;
	case E1000_ICS:
		e1000_raise(e, v);
		return true;
	case E1000_IMS:
		e->s.reg[R_IMS] |= v & E1000_ICR_ALL;
		irq_update(e);
		return true;
	case E1000_IMC:
		e->s.reg[R_IMS] &= ~v;
		irq_update(e);
		return true;
	case E1000_RCTL:
		rctl_write(e, v);
		return true;
	case E1000_RDTR: /* FPD: the delay ends now */
	case E1000_TIDV:
		e->s.reg[off == E1000_RDTR ? R_RDTR : R_TIDV] = v & 0xFFFF;
		if (v & E1000_RDTR_FPD) {
			bool rx = off == E1000_RDTR;

			e1000_timer_stop(e, rx ? TM_RDTR : TM_TIDV);
			e1000_timer_stop(e, rx ? TM_RADV : TM_TADV);
			e1000_raise(e, rx ? E1000_ICR_RXT0 : E1000_ICR_TXDW);
		}
		return true;
	case E1000_WUS: /* status bits clear by writing 1 */
		e->s.reg[R_WUS] &= ~v;
		return true;
	}
	return false;
}

static void reg_write(struct e1000 *e, uint32_t off, uint32_t v)
{
	enum e1000_table t;
	uint32_t *w;
	int i;

	if (off >= E1000_STATS && off < E1000_STATS + 4 * E1000_NSTATS)
		return; /* read-only */
	w = tab_word(e, off, &t);
	if (w) {
		/* RAH: address, select and valid bits only. */
		*w = t == T_RA && (off & 4) ? v & 0x8003FFFFU : v;
		return;
	}
	if (reg_write_special(e, off, v))
		return;
	i = reg_index(off);
	if (i < 0)
		return; /* reserved: writes are ignored */
	e->s.reg[i] = v & reg_wmask[i];
	switch (off) {
	case E1000_TCTL:
		e1000_tx_kick(e);
		break;
	case E1000_TDBAL:
	case E1000_TDBAH:
	case E1000_TDLEN:
		ring_written(e, true, true);
		break;
	case E1000_TDH:
	case E1000_TDT:
		ring_written(e, true, false);
		break;
	case E1000_RDBAL:
	case E1000_RDBAH:
	case E1000_RDLEN:
		ring_written(e, false, true);
		break;
	case E1000_RDH:
	case E1000_RDT:
		ring_written(e, false, false);
		break;
	case E1000_ITR:
		irq_update(e);
		break;
	}
}

static void mmio(struct e1000 *e, uint64_t off, void *data, unsigned size, bool is_write)
{
	if (size == 8) {
		/* Two dword accesses, low first. */
		mmio(e, off, data, 4, is_write);
		mmio(e, off + 4, (uint8_t *)data + 4, 4, is_write);
		return;
	}
	if (off & 3 || off + size > E1000_MMIO_SIZE || (off & 3) + size > 4) {
		if (!is_write)
			memset(data, 0, size);
		return;
	}
	if (is_write) {
		if (size == 4)
			reg_write(e, (uint32_t)off, (uint32_t)io_get(data, 4));
		return; /* narrower writes are not allowed: ignored */
	}
	io_put(data, size, reg_read(e, (uint32_t)off));
}

/* BAR 1: IOADDR selects a register, IODATA reaches it (SDM 13.1.3). */
static void ioport(struct e1000 *e, uint64_t off, void *data, unsigned size, bool is_write)
{
	uint32_t v = is_write ? (uint32_t)io_get(data, size) : 0;

	if (size != 4 || (off != E1000_IOADDR && off != E1000_IODATA)) {
		if (!is_write)
			memset(data, 0, size);
		return;
	}
	if (off == E1000_IOADDR) {
		if (is_write)
			e->s.ioaddr = v & 0x1FFFC;
		else
			io_put(data, 4, e->s.ioaddr);
		return;
	}
	mmio(e, e->s.ioaddr, data, 4, is_write);
}

static void e1000_bar_io(struct pci_dev *pd, int bar, uint64_t off, void *data, unsigned size,
			 bool is_write)
{
	struct e1000 *e = pd->priv;

	pthread_mutex_lock(&e->lock);
	if (bar == 0)
		mmio(e, off, data, size, is_write);
	else
		ioport(e, off, data, size, is_write);
	pthread_mutex_unlock(&e->lock);
}

/* ---- snapshot ---- */

#define E1000_TIMER_MAX_NS (0xFFFFULL * 1024) /* the longest delay a register can ask for */

struct e1000_saved {
	struct e1000_state s;
	int64_t left[E1000_NTIMERS]; /* ns until the timer fires, -1 when stopped */
	uint64_t itr_left;
};

static void ctx_io(struct sstream *s, struct e1000_txctx *c)
{
	ss_u8(s, &c->ipcss);
	ss_u8(s, &c->ipcso);
	ss_u16(s, &c->ipcse);
	ss_u8(s, &c->tucss);
	ss_u8(s, &c->tucso);
	ss_u16(s, &c->tucse);
	ss_u32(s, &c->paylen);
	ss_u8(s, &c->tucmd);
	ss_u8(s, &c->hdrlen);
	ss_u16(s, &c->mss);
}

/* Save and load walk the same fields in the same order. */
static void state_io(struct sstream *s, struct e1000_saved *v)
{
	struct e1000_state *st = &v->s;
	struct e1000_eewire *ee = &st->ee;

	ss_expect_u32(s, E1000_NREGS, "e1000 registers");
	ss_u32_array(s, st->reg, E1000_NREGS);
	ss_expect_u32(s, E1000_TAB_WORDS, "e1000 table words");
	ss_u32_array(s, st->tab, E1000_TAB_WORDS);
	ss_expect_u32(s, E1000_NSTATS, "e1000 statistics");
	ss_u32_array(s, st->stats, E1000_NSTATS);
	ss_expect_u32(s, E1000_EE_WORDS, "e1000 EEPROM words");
	for (unsigned i = 0; i < E1000_EE_WORDS; i++)
		ss_u16(s, &st->eeprom[i]);
	ss_expect_u32(s, PHY_NREGS, "e1000 PHY registers");
	for (unsigned i = 0; i < PHY_NREGS; i++)
		ss_u16(s, &st->phy[i]);
	ss_u32(s, &ee->in);
	ss_u8(s, &ee->nin);
	ss_u8(s, &ee->last);
	ss_u8(s, &ee->state);
	ss_u8(s, &ee->addr);
	ss_u16(s, &ee->nout);
	ss_bool(s, &ee->write_en);
	for (unsigned i = 0; i < E1000_NCTX; i++)
		ctx_io(s, &st->ctx[i]);
	ss_u32(s, &st->ioaddr);
	ss_bool(s, &st->irq);
	ss_bool(s, &st->link);
	ss_u32(s, &st->guest_ip);
	ss_expect_u32(s, E1000_NTIMERS, "e1000 timers");
	for (unsigned i = 0; i < E1000_NTIMERS; i++)
		ss_i64(s, &v->left[i]);
	ss_u64(s, &v->itr_left);
}

static int e1000_save(struct pci_dev *pd, struct sstream *s)
{
	struct e1000 *e = pd->priv;
	struct e1000_saved *v = malloc(sizeof(*v));
	uint64_t now;

	if (!v)
		return ss_fail(s, -ENOMEM, "out of memory");
	pthread_mutex_lock(&e->lock);
	now = e1000_now(e);
	v->s = e->s;
	for (unsigned i = 0; i < E1000_NTIMERS; i++) {
		uint64_t d = e->s.deadline[i];

		v->left[i] = !d ? -1 : d > now ? (int64_t)(d - now) : 0;
	}
	v->itr_left = e->s.itr_next > now ? e->s.itr_next - now : 0;
	if (e->rearm) {
		/* Loaded and not resumed yet: the timers wait with their time left. */
		memcpy(v->left, e->rearm_left, sizeof(v->left));
		v->itr_left = e->rearm_itr;
	}
	pthread_mutex_unlock(&e->lock);
	state_io(s, v);
	free(v);
	return ss_error(s);
}

/* Could a device have been in this state?  Bits no register holds, out-of-range state. */
static void state_check(struct sstream *s, const struct e1000_saved *v)
{
	const struct e1000_state *st = &v->s;
	const struct e1000_eewire *ee = &st->ee;

	for (unsigned i = 0; i < E1000_NREGS; i++) {
		/* Bits the device sets: what EERD read (DONE is in the mask), MDIC's ERROR. */
		uint32_t valid = i == R_EERD   ? 0xFFFFFF11U
				 : i == R_MDIC ? reg_wmask[i] | E1000_MDIC_ERROR
					       : reg_wmask[i];

		if (st->reg[i] & ~valid)
			ss_fail(s, -EINVAL, "e1000 register %u holds 0x%08x, bits it does not have",
				i, st->reg[i]);
	}
	if (ee->state > EEW_DONE || ee->nin > 3 + E1000_EE_ABITS ||
	    (ee->addr >= E1000_EE_WORDS && ee->addr != 0xFF) || (ee->last & ~7U))
		ss_fail(s, -EINVAL, "e1000 EEPROM interface state is out of range");
	for (unsigned i = 0; i < E1000_NCTX; i++)
		if (st->ctx[i].paylen > E1000_TXC_PAYLEN_MASK)
			ss_fail(s, -EINVAL, "e1000 transmit context %u payload length %u", i,
				st->ctx[i].paylen);
	if (st->ioaddr & ~0x1FFFCU)
		ss_fail(s, -EINVAL, "e1000 IOADDR 0x%x out of range", st->ioaddr);
	for (unsigned i = 0; i < E1000_NTIMERS; i++)
		if (v->left[i] < -1 || v->left[i] > (int64_t)E1000_TIMER_MAX_NS)
			ss_fail(s, -EINVAL, "e1000 timer %u: %" PRId64 " ns left", i, v->left[i]);
	if (v->itr_left > E1000_TIMER_MAX_NS)
		ss_fail(s, -EINVAL, "e1000 interrupt throttle: %" PRIu64 " ns left", v->itr_left);
}

static int e1000_load(struct pci_dev *pd, struct sstream *s, unsigned version)
{
	struct e1000 *e = pd->priv;
	struct e1000_saved *v;

	if (version != E1000_STATE_VERSION)
		return ss_fail(s, -EINVAL, "e1000 state version %u is not supported (%u)", version,
			       E1000_STATE_VERSION);
	v = calloc(1, sizeof(*v));
	if (!v)
		return ss_fail(s, -ENOMEM, "out of memory");
	state_io(s, v);
	if (!ss_error(s))
		state_check(s, v);
	if (ss_finish(s)) {
		free(v);
		return ss_error(s);
	}
	pthread_mutex_lock(&e->lock);
	timers_stop_all(e);
	e->s = v->s;
	/* Deadlines come back on resume, from the clock the restored VM then has. */
	memset(e->s.deadline, 0, sizeof(e->s.deadline));
	memcpy(e->rearm_left, v->left, sizeof(e->rearm_left));
	e->rearm_itr = v->itr_left;
	e->rearm = true;
	net_rxq_clear(&e->fifo);
	e->ring_error[0] = e->ring_error[1] = false;
	e->announce = true;
	pthread_mutex_unlock(&e->lock);
	free(v);
	return 0;
}

/*
 * Send what the driver queued and stop the transmit worker (a snapshot holds no transmit
 * work: the saved TDH is what went out), then hold the network's frames in the FIFO.
 */
static int e1000_pause(struct pci_dev *pd)
{
	struct e1000 *e = pd->priv;

	e1000_tx_stop(e);
	pthread_mutex_lock(&e->lock);
	e1000_tx_run(e); /* without a worker (or one that could not start) */
	e->paused = true;
	pthread_mutex_unlock(&e->lock);
	return 0;
}

static int e1000_resume(struct pci_dev *pd)
{
	struct e1000 *e = pd->priv;
	uint64_t now;

	pthread_mutex_lock(&e->lock);
	e->paused = false;
	if (e->rearm) {
		now = e1000_now(e);
		for (unsigned i = 0; i < E1000_NTIMERS; i++)
			if (e->rearm_left[i] >= 0)
				e1000_timer_start(e, (enum e1000_timer)i,
						  (uint64_t)e->rearm_left[i], true);
		e->s.itr_next = now + e->rearm_itr;
		e->rearm = false;
	}
	if (e->announce && (e->s.reg[R_TCTL] & E1000_TCTL_EN) && e1000_link_up(e)) {
		const uint32_t *ra = ra_words(e);
		uint8_t mac[6] = { (uint8_t)ra[0],	   (uint8_t)(ra[0] >> 8),
				   (uint8_t)(ra[0] >> 16), (uint8_t)(ra[0] >> 24),
				   (uint8_t)ra[1],	   (uint8_t)(ra[1] >> 8) };

		/*
		 * RA[0] is the address the driver receives on; if it is unset, the one in the
		 * (restored) EEPROM, which the guest read, not the one this VM was given.
		 */
		if (!(ra[1] & E1000_RAH_AV) || !net_mac_valid(mac))
			for (int i = 0; i < 6; i++)
				mac[i] = (uint8_t)(e->s.eeprom[i / 2] >> (8 * (i & 1)));
		net_backend_announce(e->nb, mac, e->s.guest_ip);
	}
	e->announce = false;
	e1000_rx_flush(e);
	e1000_tx_start(e); /* on failure the device transmits on the vCPU thread */
	e1000_tx_kick(e);
	irq_update(e);
	pthread_mutex_unlock(&e->lock);
	return 0;
}

/* ---- setup ---- */

static const char *e1000_opt(void *ctx, const char *key)
{
	return pci_dev_opt(ctx, key);
}

static void e1000_free(struct e1000 *e)
{
	e1000_tx_stop(e);	  /* no frame is sent after this */
	net_backend_close(e->nb); /* joins its thread: no frame arrives after this */
	for (unsigned t = 0; t < E1000_NTIMERS; t++)
		vtimer_cancel(&e->timer[t]);
	net_rxq_clear(&e->fifo);
	net_rxq_clear(&e->txq);
	pthread_cond_destroy(&e->tx_cv);
	pthread_cond_destroy(&e->tx_idle_cv);
	pthread_mutex_destroy(&e->lock);
	free(e);
}

/*
 * The registers whose writes must reach the device at once (holes in the coalesced zones of
 * BAR 0, see pci_bar_coalesce): what the guest then waits for without reading the device
 * again.  Reset and link (CTRL and its alias), a PHY access (MDIC), interrupt causes, masks
 * and throttle (ICR, ITR, ICS, IMS, IMC), the flush-partial-descriptor bits of RDTR and TIDV
 * (an interrupt now), and everything that starts the transmitter: TCTL and the transmit
 * ring's TDBAL..TDT (TIDV is next to them).  QEMU keeps the same ones out of its zones, and
 * buffers the rest, RDT above all: a guest handing receive buffers back costs no exit.
 */
static const struct bus_zone e1000_sync_regs[] = {
	{ E1000_CTRL, E1000_STATUS - E1000_CTRL },
	{ E1000_MDIC, 4 },
	{ E1000_ICR, E1000_IMC + 4 - E1000_ICR },
	{ E1000_TCTL, 4 },
	{ E1000_RDTR, 4 },
	{ E1000_TDBAL, E1000_TIDV + 4 - E1000_TDBAL },
};

static int pci_setup_caps(struct pci_dev *pd)
{
	int pm, ret;

	pci_set_ids(pd, E1000_VENDOR, E1000_DEV_82545EM, 0x02, 0x00, 0x00, E1000_REVISION);
	pci_set_cfg16(pd, PCIR_SUBVEND, E1000_VENDOR);
	pci_set_cfg16(pd, PCIR_SUBDEV, E1000_DEV_82545EM);
	ret = pci_bar_declare(pd, 0, PCI_BAR_MEM32, E1000_MMIO_SIZE, false);
	if (!ret)
		ret = pci_bar_coalesce(pd, 0, e1000_sync_regs,
				       sizeof(e1000_sync_regs) / sizeof(e1000_sync_regs[0]));
	if (!ret)
		ret = pci_bar_declare(pd, 1, PCI_BAR_IO, E1000_IO_SIZE, false);
	if (!ret)
		ret = pci_intx_init(pd, 1);
	if (!ret)
		ret = pci_msi_init(pd, 1);
	if (ret)
		return ret;
	/* Power management 1.1, D0 and D3hot only, no PME: the power state reads back. */
	pm = pci_cap_add(pd, PCIY_PM, 8);
	if (pm < 0)
		return pm;
	pci_set_cfg16(pd, (unsigned)pm + 2, 0x0002);
	pci_set_wmask(pd, (unsigned)pm + 4, 2, 0x0003);
	return 0;
}

static int e1000_init(struct vm *vm, struct pci_dev *pd, const char *opts, char *err, size_t errlen)
{
	const char *mac = pci_dev_opt(pd, "mac"), *txthread = pci_dev_opt(pd, "txthread");
	struct e1000 *e = calloc(1, sizeof(*e));
	struct net_backend_args a = {
		.dev = pd->dev.id,
		.opt = e1000_opt,
		.opt_ctx = pd,
		.rx = e1000_backend_rx,
	};
	int ret;

	if (!e) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	e->vm = vm;
	e->pd = pd;
	pthread_mutex_init(&e->lock, NULL);
	pthread_cond_init(&e->tx_cv, NULL);
	pthread_cond_init(&e->tx_idle_cv, NULL);
	net_rxq_init(&e->fifo, E1000_FIFO_FRAMES, 48 * 1024);
	/* Bounds what a walk queues beyond TX_BATCH_BYTES: one more TSO packet. */
	net_rxq_init(&e->txq, 4096, 4 * 1024 * 1024);
	for (unsigned t = 0; t < E1000_NTIMERS; t++)
		vtimer_init(&e->timer[t], &vm->ev, timer_fns[t], e);
	if (mac && net_mac_parse(mac, e->mac)) {
		snprintf(err, errlen, "bad mac '%s' (want a unicast address xx:xx:xx:xx:xx:xx)",
			 mac);
		ret = -EINVAL;
		goto fail;
	}
	if (txthread && strcmp(txthread, "on") && strcmp(txthread, "off")) {
		snprintf(err, errlen, "txthread=%s: on or off", txthread);
		ret = -EINVAL;
		goto fail;
	}
	/*
	 * Off by default: on a 2-CPU host with two busy vCPUs the worker only competes with them
	 * (bench/README.md, "The e1000 transmit thread": 0.92-0.96x QEMU with it, 1.00-1.04x
	 * without, quiet host); with CPUs to spare it takes the ring walk off the vCPU.
	 */
	e->tx_thread_opt = txthread && !strcmp(txthread, "on");
	if (!mac)
		net_mac_default(vm->name, pd->slot, pd->func, e->mac);
	ret = pci_setup_caps(pd);
	if (ret) {
		snprintf(err, errlen, "PCI setup: %s", strerror(-ret));
		goto fail;
	}
	eeprom_build(e);
	phy_reset(e);
	dev_reset(e);
	pd->priv = e;
	/* Last: the backend's thread may deliver frames as soon as it runs. */
	a.opaque = e;
	e->nb = net_backend_open(&a, err, errlen);
	if (!e->nb) {
		ret = -EINVAL;
		goto fail;
	}
	pthread_mutex_lock(&e->lock);
	e1000_tx_start(e); /* on failure the device transmits on the vCPU thread */
	pthread_mutex_unlock(&e->lock);
	return 0;
fail:
	pd->priv = NULL;
	e1000_free(e);
	return ret;
}

static void e1000_destroy(struct pci_dev *pd)
{
	if (pd->priv)
		e1000_free(pd->priv);
	pd->priv = NULL;
}

static const char *const e1000_options[] = { "mac", "txthread", NULL };

const struct pci_emul pci_emul_e1000 = {
	.name = "e1000",
	.version = E1000_STATE_VERSION,
	.options = { { .names = e1000_options }, { .names = net_options } },
	.init = e1000_init,
	.bar_io = e1000_bar_io,
	.save = e1000_save,
	.load = e1000_load,
	.pause = e1000_pause,
	.resume = e1000_resume,
	.destroy = e1000_destroy,
};
