/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The e1000 device's internals, shared by e1000.c (registers, interrupts, EEPROM, PHY, reset,
 * snapshot), e1000_tx.c (transmit ring, offloads, TSO) and e1000_rx.c (filters, receive
 * ring), and by the unit tests.  e1000.c's header comment describes the device.
 *
 * Locking: one lock, e->lock, covers everything below but the frames of a batch the transmit
 * worker has taken out of txq: register accesses (vCPU threads), the transmit ring walk (on
 * the worker, or with txthread=off on the vCPU thread that writes TDT), frames from the
 * backend (its thread), the interrupt timers (the event-loop thread) and snapshots.  The ring
 * walk runs whole under the lock, so no TCTL, TDBAL/TDLEN, TDH or reset write lands in the
 * middle of it.  Nothing that holds the lock waits for the guest or for the network: the
 * worker calls the backend only after dropping it, and the backend takes or drops a frame at
 * once.  The worker's flags (tx_kick, tx_busy, tx_stop, tx_running) are under e->lock too.
 */
#ifndef KHYVE_DEV_NET_E1000_H
#define KHYVE_DEV_NET_E1000_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "backend/net_backend.h"
#include "dev/net/e1000_regs.h"
#include "evloop.h"

struct pci_dev;
struct sstream;
struct vm;

#define E1000_TX_MAX 16384 /* largest packet the transmit unit assembles (SDM: 16288) */
#define E1000_RX_MAX 16384 /* largest frame received with RCTL.LPE, FCS not counted */
#define E1000_RX_STD 1514  /* without LPE: 1518 bytes with FCS, 4 more with a VLAN tag */
#define E1000_FIFO_FRAMES 1024

/*
 * Registers kept as plain values: name, offset, bits the guest may write, value after reset.
 * Registers with side effects (ICR, EECD, MDIC, TDT...) are here too for their storage and
 * reset value; e1000.c's register switch gives them their behaviour.
 */
#define E1000_REGS(X)                                            \
	X(CTRL, E1000_CTRL, ~E1000_CTRL_RST, 0x00000201U)        \
	X(EECD, E1000_EECD, 0x00000077U, E1000_EECD_FWE_DIS)     \
	X(EERD, E1000_EERD, 0x0000FF11U, 0)                      \
	X(CTRL_EXT, E1000_CTRL_EXT, ~E1000_CTRL_EXT_EE_RST, 0)   \
	X(MDIC, E1000_MDIC, 0x3FFFFFFFU, E1000_MDIC_READY)       \
	X(FCAL, E1000_FCAL, 0xFFFFFFFFU, 0)                      \
	X(FCAH, E1000_FCAH, 0x0000FFFFU, 0)                      \
	X(FCT, E1000_FCT, 0x0000FFFFU, 0)                        \
	X(VET, E1000_VET, 0x0000FFFFU, 0x8100)                   \
	X(ICR, E1000_ICR, E1000_ICR_ALL, 0)                      \
	X(ITR, E1000_ITR, 0x0000FFFFU, 0)                        \
	X(IMS, E1000_IMS, E1000_ICR_ALL, 0)                      \
	X(RCTL, E1000_RCTL, 0x06DFB3FEU, 0)                      \
	X(FCTTV, E1000_FCTTV, 0x0000FFFFU, 0)                    \
	X(TXCW, E1000_TXCW, 0xC000FFFFU, 0)                      \
	X(RXCW, E1000_RXCW, 0, 0)                                \
	X(TCTL, E1000_TCTL, 0x037FFFFAU, 0x00000008U)            \
	X(TIPG, E1000_TIPG, 0x3FFFFFFFU, 0x00602008U)            \
	X(AIFS, E1000_AIFS, 0x0000FFFFU, 0)                      \
	X(LEDCTL, E1000_LEDCTL, 0xFFFFFFFFU, 0x07068302U)        \
	X(PBA, E1000_PBA, E1000_PBA_RXA_MASK, E1000_PBA_RESET)   \
	X(FCRTL, E1000_FCRTL, 0x8000FFF8U, 0)                    \
	X(FCRTH, E1000_FCRTH, 0x0000FFF8U, 0)                    \
	X(RDFH, E1000_RDFH, 0x00001FFFU, 0)                      \
	X(RDFT, E1000_RDFT, 0x00001FFFU, 0)                      \
	X(RDFHS, E1000_RDFHS, 0x00001FFFU, 0)                    \
	X(RDFTS, E1000_RDFTS, 0x00001FFFU, 0)                    \
	X(RDFPC, E1000_RDFPC, 0x00001FFFU, 0)                    \
	X(RDBAL, E1000_RDBAL, 0xFFFFFFF0U, 0)                    \
	X(RDBAH, E1000_RDBAH, 0xFFFFFFFFU, 0)                    \
	X(RDLEN, E1000_RDLEN, 0x000FFF80U, 0)                    \
	X(RDH, E1000_RDH, 0x0000FFFFU, 0)                        \
	X(RDT, E1000_RDT, 0x0000FFFFU, 0)                        \
	X(RDTR, E1000_RDTR, 0x0000FFFFU, 0)                      \
	X(RXDCTL, E1000_RXDCTL, 0x013F3F3FU, 0x00010000U)        \
	X(RADV, E1000_RADV, 0x0000FFFFU, 0)                      \
	X(RSRPD, E1000_RSRPD, 0x00000FFFU, 0)                    \
	X(TDFH, E1000_TDFH, 0x00001FFFU, 0)                      \
	X(TDFT, E1000_TDFT, 0x00001FFFU, 0)                      \
	X(TDFHS, E1000_TDFHS, 0x00001FFFU, 0)                    \
	X(TDFTS, E1000_TDFTS, 0x00001FFFU, 0)                    \
	X(TDFPC, E1000_TDFPC, 0x00001FFFU, 0)                    \
	X(TDBAL, E1000_TDBAL, 0xFFFFFFF0U, 0)                    \
	X(TDBAH, E1000_TDBAH, 0xFFFFFFFFU, 0)                    \
	X(TDLEN, E1000_TDLEN, 0x000FFF80U, 0)                    \
	X(TDH, E1000_TDH, 0x0000FFFFU, 0)                        \
	X(TDT, E1000_TDT, 0x0000FFFFU, 0)                        \
	X(TIDV, E1000_TIDV, 0x0000FFFFU, 0)                      \
	X(TXDCTL, E1000_TXDCTL, 0xFF3F3F3FU, 0)                  \
	X(TADV, E1000_TADV, 0x0000FFFFU, 0)                      \
	X(TSPMT, E1000_TSPMT, 0xFFFFFFFFU, 0x01000400U)          \
	X(RXCSUM, E1000_RXCSUM, 0x000003FFU, E1000_RXCSUM_IPOFL) \
	X(WUC, E1000_WUC, 0x0000000FU, 0)                        \
	X(WUFC, E1000_WUFC, 0x000F00FFU, 0)                      \
	X(WUS, E1000_WUS, 0x000F00FFU, 0)                        \
	X(MANC, E1000_MANC, 0xFFFFFFFFU, 0)                      \
	X(IPAV, E1000_IPAV, 0x0001000FU, 0)                      \
	X(WUPL, E1000_WUPL, 0x00000FFFU, 0)

#define E1000_REG_ENUM(name, off, wmask, reset) R_##name,
enum e1000_reg { E1000_REGS(E1000_REG_ENUM) E1000_NREGS };

/* Register arrays kept as plain values (filter and wake-up tables): base, dwords. */
#define E1000_TABLES(X)          \
	X(MTA, E1000_MTA, 128)   \
	X(RA, E1000_RA, 32)      \
	X(VFTA, E1000_VFTA, 128) \
	X(IP4AT, E1000_IP4AT, 8) \
	X(IP6AT, E1000_IP6AT, 4) \
	X(WUPM, E1000_WUPM, 32)  \
	X(FFLT, E1000_FFLT, 8)   \
	X(FFMT, E1000_FFMT, 256) \
	X(FFVT, E1000_FFVT, 256)

#define E1000_TAB_ENUM(name, base, n) T_##name,
enum e1000_table { E1000_TABLES(E1000_TAB_ENUM) E1000_NTABLES };
#define E1000_TAB_SIZE(name, base, n) +(n)
#define E1000_TAB_WORDS (0 E1000_TABLES(E1000_TAB_SIZE))

/* One transmit offload context (SDM 3.3.6): the normal one and the TCP segmentation one. */
struct e1000_txctx {
	uint8_t ipcss, ipcso, tucss, tucso;
	uint16_t ipcse, tucse;
	uint32_t paylen; /* TSO: payload bytes after the header */
	uint8_t tucmd;	 /* E1000_TXC_TUCMD_* >> 24 */
	uint8_t hdrlen;	 /* TSO: bytes of header copied into every segment */
	uint16_t mss;	 /* TSO: payload bytes per segment */
};

enum { E1000_CTX_NORMAL, E1000_CTX_TSO, E1000_NCTX };

/* The bit-banged Microwire interface behind EECD (SDM 5.3). */
struct e1000_eewire {
	uint32_t in;   /* bits shifted in since CS rose */
	uint8_t nin;   /* how many (after the start bit) */
	uint8_t last;  /* SK, CS, DI as last written */
	uint8_t state; /* EEW_* */
	uint8_t addr;  /* word being read or written */
	uint16_t nout; /* READ: rising edges since the address */
	bool write_en; /* EWEN seen, EWDS not since */
};

enum { EEW_CMD, EEW_READ, EEW_DATA, EEW_DONE };

enum e1000_timer { TM_RDTR, TM_RADV, TM_TIDV, TM_TADV, TM_ITR, E1000_NTIMERS };

/*
 * The guest-visible state: everything a snapshot holds.  Kept in one struct so a load can
 * decode into a staging copy, check it, and commit it with one assignment.
 */
struct e1000_state {
	uint32_t reg[E1000_NREGS];
	uint32_t tab[E1000_TAB_WORDS];
	uint32_t stats[E1000_NSTATS];
	uint16_t eeprom[E1000_EE_WORDS];
	uint16_t phy[PHY_NREGS];
	struct e1000_eewire ee;
	struct e1000_txctx ctx[E1000_NCTX];
	uint32_t ioaddr;   /* the I/O BAR's address latch */
	bool irq;	   /* interrupt raised and not yet acknowledged (INTx asserted) */
	bool link;	   /* STATUS.LU as the guest last saw it: a change raises LSC */
	uint32_t guest_ip; /* learnt from the guest's ARP frames, for the announce */
	/* Timers: virtual-clock deadlines, 0 when stopped (saved as time remaining). */
	uint64_t deadline[E1000_NTIMERS];
	uint64_t itr_next; /* no interrupt before this vclock time (ITR), saved as remaining */
};

struct e1000 {
	struct vm *vm;
	struct pci_dev *pd;
	struct net_backend *nb;
	uint8_t mac[6]; /* the configured address, burnt into the EEPROM at creation */
	pthread_mutex_t lock;
	struct e1000_state s;
	struct vtimer timer[E1000_NTIMERS];

	/* Frames for the guest while it has no receive buffers (sized by PBA.RXA). */
	struct net_rxq fifo;
	bool paused;
	bool announce; /* set by a load: announce the guest on resume */
	bool rearm;    /* set by a load: start the timers on resume from the times below */
	int64_t rearm_left[E1000_NTIMERS];
	uint64_t rearm_itr;
	bool ring_error[2]; /* a bad receive / transmit ring was reported since its setup */
	unsigned ring_reports;

	/*
	 * Transmit scratch: one packet, or one TSO segment (header and payload), after 4 spare
	 * bytes where a VLAN tag insertion moves the addresses to.
	 */
	uint8_t tx_buf[4 + E1000_TX_MAX];
	uint8_t tx_hdr[256]; /* the TSO header as the guest wrote it */

	/*
	 * The transmit worker (e1000_tx.c): TDT and TCTL writes set tx_kick and return; the
	 * worker walks the ring under e->lock, putting the frames for the backend in txq, then
	 * takes txq and sends it without the lock.  Without it (txthread=off, the default, also in
	 * the unit tests and the fuzzer) the writer walks and sends itself.
	 */
	bool tx_thread_opt; /* txthread=on (off by default) */
	bool tx_running;    /* the worker exists and takes kicks */
	bool tx_stop;	    /* the worker is asked to exit */
	bool tx_kick;	    /* the ring may hold packets not walked yet */
	bool tx_busy;	    /* the worker is walking or sending a batch */
	pthread_t tx_tid;
	pthread_cond_t tx_cv;		  /* to the worker: a kick or stop */
	pthread_cond_t tx_idle_cv;	  /* from the worker: !tx_kick && !tx_busy */
	struct net_rxq txq;		  /* walked frames for the backend, in ring order */
	uint8_t rx_buf[E1000_RX_MAX + 4]; /* a frame with its VLAN tag removed or padded */
};

/* ---- e1000.c ---- */
uint64_t e1000_now(struct e1000 *e);
/* Set causes in ICR and interrupt the guest if they are unmasked (and ITR allows). */
void e1000_raise(struct e1000 *e, uint32_t causes);
/* Start timer @t to fire @ns from now; a running one is moved only when @restart. */
void e1000_timer_start(struct e1000 *e, enum e1000_timer t, uint64_t ns, bool restart);
void e1000_timer_stop(struct e1000 *e, enum e1000_timer t);
/* STATUS.LU: the guest sees a link (PHY up and CTRL.SLU set). */
bool e1000_link_up(const struct e1000 *e);
/* Transmitted frames come back to the receive unit (MAC or PHY loopback). */
bool e1000_loopback(const struct e1000 *e);
/* Add to a statistics counter (offset within 0x4000); 64-bit ones take the low offset. */
void e1000_stat(struct e1000 *e, unsigned off, uint32_t v);
void e1000_stat64(struct e1000 *e, unsigned off_lo, uint64_t v);
/* The words of register table @t in e->s.tab. */
uint32_t *e1000_table(struct e1000 *e, enum e1000_table t);
const uint32_t *e1000_table_c(const struct e1000 *e, enum e1000_table t);
/* The host address of the receive (@tx false) or transmit ring, checked; NULL to stop. */
uint8_t *e1000_ring(struct e1000 *e, bool tx, uint32_t *ndesc);
/* A frame for the wire (or the loopback): VLAN, padding, statistics done by the caller. */
void e1000_wire_out(struct e1000 *e, const uint8_t *frame, size_t len);

/* ---- e1000_tx.c ---- */
/* Process every whole packet between TDH and TDT (the worker, or the caller without one). */
void e1000_tx_run(struct e1000 *e);
/* TDT, TCTL or the ring changed: wake the worker, or walk the ring now without one. */
void e1000_tx_kick(struct e1000 *e);
/* Every whole packet before TDT walked and handed to the backend when this returns. */
void e1000_tx_drain(struct e1000 *e);
/* Start the worker (with e->lock): 0 or -errno, and the device then transmits synchronously. */
int e1000_tx_start(struct e1000 *e);
/* Drain, then stop and join the worker.  Called without e->lock. */
void e1000_tx_stop(struct e1000 *e);
/* A frame for the backend: queued for the worker, or sent now without one. */
void e1000_tx_backend(struct e1000 *e, const uint8_t *frame, size_t len);

/* ---- e1000_rx.c ---- */
/* A frame from the wire or the loopback: filter, then deliver or hold it in the FIFO. */
void e1000_rx_input(struct e1000 *e, const uint8_t *frame, size_t len);
/* Deliver held frames while there are receive descriptors. */
void e1000_rx_flush(struct e1000 *e);
/* Does the receive filter take a frame to @dst (and was that match inexact: *pif)? */
bool e1000_rx_filter(const struct e1000 *e, const uint8_t *frame, size_t len, bool *pif);

#endif
