/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * xHCI internals shared by the controller (xhci.c: registers, ports, the event ring,
 * interrupts, snapshots), the command ring (xhci_cmd.c: slots, endpoints, contexts) and the
 * transfer rings (xhci_xfer.c: control and interrupt transfers).  Section numbers are the
 * xHCI 1.2 specification's.
 *
 * Everything below is under xhci->lock.  Guest memory (rings, contexts, buffers) is read and
 * written through xhci_mem(), which checks every range against guest RAM.
 */
#ifndef KHYVE_DEV_USB_XHCI_H
#define KHYVE_DEV_USB_XHCI_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "dev/usb/usb.h"

struct pci_dev;
struct vm;

#define XHCI_SLOTS 32
#define XHCI_PORTS_USB2 4
#define XHCI_PORTS 8 /* 1-4 USB 2, 5-8 USB 3 */
#define XHCI_INTRS 1
#define XHCI_ERST_MAX 16
#define XHCI_EPS 32	       /* device context index 1..31 */
#define XHCI_PENDING_MAX 64    /* events waiting for room in the event ring */
#define XHCI_TD_MAX 64	       /* TRBs in one TD */
#define XHCI_LINKS_MAX 16      /* Link TRBs in a row before a ring counts as broken */
#define XHCI_CMDS_PER_RING 256 /* commands per doorbell: a ring that loops stops here */
#define XHCI_TDS_PER_KICK 256
#define XHCI_XFER_MAX 65536 /* bytes in one control data stage or TD */

/* TRB types (6.4.6). */
#define TRB_NORMAL 1
#define TRB_SETUP 2
#define TRB_DATA 3
#define TRB_STATUS 4
#define TRB_ISOCH 5
#define TRB_LINK 6
#define TRB_EVENT_DATA 7
#define TRB_NOOP 8
#define TRB_ENABLE_SLOT 9
#define TRB_DISABLE_SLOT 10
#define TRB_ADDRESS_DEVICE 11
#define TRB_CONFIGURE_EP 12
#define TRB_EVALUATE_CTX 13
#define TRB_RESET_EP 14
#define TRB_STOP_EP 15
#define TRB_SET_TR_DEQ 16
#define TRB_RESET_DEVICE 17
#define TRB_FORCE_EVENT 18
#define TRB_NEG_BANDWIDTH 19
#define TRB_SET_LT 20
#define TRB_GET_PORT_BW 21
#define TRB_FORCE_HEADER 22
#define TRB_NOOP_CMD 23
#define TRB_EV_TRANSFER 32
#define TRB_EV_CMD 33
#define TRB_EV_PORT 34
#define TRB_EV_HC 37

/* TRB control dword bits. */
#define TRB_C (1U << 0)
#define TRB_TC (1U << 1) /* Link: toggle cycle */
#define TRB_ENT (1U << 1)
#define TRB_ISP (1U << 2)
#define TRB_CH (1U << 4)
#define TRB_IOC (1U << 5)
#define TRB_IDT (1U << 6)
#define TRB_BSR (1U << 9) /* Address Device: block SET_ADDRESS */
#define TRB_DC (1U << 9)  /* Configure Endpoint: deconfigure */
#define TRB_DIR_IN (1U << 16)
#define TRB_ED (1U << 2) /* event: Event Data */
#define TRB_TYPE(c) (((c) >> 10) & 0x3f)
#define TRB_SLOT(c) ((c) >> 24)
#define TRB_EP(c) (((c) >> 16) & 0x1f)
#define TRB_LEN(s) ((s)&0x1ffff)

/* Completion codes (6.4.5). */
#define CC_SUCCESS 1
#define CC_DATA_BUFFER 2
#define CC_BABBLE 3
#define CC_TRANSACTION 4
#define CC_TRB 5
#define CC_STALL 6
#define CC_RESOURCE 7
#define CC_NO_SLOTS 9
#define CC_SLOT_NOT_ENABLED 11
#define CC_EP_NOT_ENABLED 12
#define CC_SHORT_PACKET 13
#define CC_PARAMETER 17
#define CC_CONTEXT_STATE 19
#define CC_EVENT_RING_FULL 21
#define CC_CMD_RING_STOPPED 24
#define CC_CMD_ABORTED 25
#define CC_STOPPED 26

/* Slot states (6.2.2) and endpoint states (6.2.3). */
#define SLOT_ENABLED 0 /* "disabled/enabled" in the context */
#define SLOT_DEFAULT 1
#define SLOT_ADDRESSED 2
#define SLOT_CONFIGURED 3
#define EP_DISABLED 0
#define EP_RUNNING 1
#define EP_HALTED 2
#define EP_STOPPED 3
#define EP_ERROR 4

/* Endpoint types (6.2.3, EP Type). */
#define EPT_ISOCH_OUT 1
#define EPT_INT_OUT 3
#define EPT_CONTROL 4
#define EPT_ISOCH_IN 5
#define EPT_INT_IN 7

#define CTX_SIZE 32 /* HCCPARAMS1.CSZ = 0 */

struct xhci_trb {
	uint64_t param;
	uint32_t status, control;
};

struct xhci_ep {
	uint8_t state, type;
	uint16_t mps;
	uint64_t deq; /* TR dequeue pointer */
	bool dcs;     /* its cycle state */
};

struct xhci_slot {
	bool enabled;
	uint8_t state; /* SLOT_* once enabled */
	uint8_t port;  /* root hub port, 0 until addressed */
	uint8_t addr;  /* USB address, 0 in the default state */
	uint64_t ctx;  /* output device context (from the DCBAA at Address Device) */
	struct xhci_ep ep[XHCI_EPS];
};

struct xhci_port {
	uint32_t portsc; /* the stored bits; see port_read() */
	uint32_t pmsc, li, hlpmc;
	struct usb_dev *dev;
};

/* Interrupter 0 and its event ring (4.9.4, 5.5.2). */
struct xhci_intr {
	uint32_t iman, imod, erstsz;
	uint64_t erstba, erdp;
	/* The producer: segment @seg of the ERST at @seg_base, @seg_size TRBs, slot @idx. */
	uint32_t seg, idx, seg_size;
	uint64_t seg_base;
	bool pcs;
	/* Events that found the ring full (or not set up), posted once there is room. */
	uint32_t npending;
	struct xhci_trb pending[XHCI_PENDING_MAX];
};

struct xhci {
	struct pci_dev *pd;
	struct vm *vm;
	pthread_mutex_t lock;
	bool paused; /* no transfer runs and no interrupt is raised */
	uint32_t usbcmd, usbsts, dnctrl, config;
	uint64_t dcbaap;
	uint64_t crdeq; /* command ring dequeue pointer */
	bool ccs, crr;	/* its cycle state; running */
	struct xhci_intr intr[XHCI_INTRS];
	struct xhci_port port[XHCI_PORTS + 1]; /* 1-based */
	struct xhci_slot slot[XHCI_SLOTS + 1]; /* 1-based */
	uint8_t buf[XHCI_XFER_MAX];	       /* control data stage and TD bounce buffer */
};

/* Guest memory [@gpa, @gpa + @len) or NULL when it is not all RAM. */
void *xhci_mem(struct xhci *x, uint64_t gpa, uint64_t len);
bool xhci_read_trb(struct xhci *x, uint64_t gpa, struct xhci_trb *t);

/* xhci.c: post an event on interrupter 0 and interrupt as the guest asked. */
void xhci_event(struct xhci *x, const struct xhci_trb *ev);
void xhci_transfer_event(struct xhci *x, unsigned slot, unsigned dci, uint64_t ptr, unsigned cc,
			 uint32_t residual, bool ed);
bool xhci_running(const struct xhci *x);

/* xhci_cmd.c */
void xhci_cmd_ring(struct xhci *x);
void xhci_cmd_stop(struct xhci *x, unsigned cc);
void xhci_slots_reset(struct xhci *x);
/* Write the endpoint's state and dequeue pointer / the slot's state to the output context. */
void xhci_ep_ctx_update(struct xhci *x, unsigned slot, unsigned dci);

/* xhci_xfer.c: run endpoint @dci of @slot until its ring is empty or the device NAKs. */
void xhci_ep_kick(struct xhci *x, unsigned slot, unsigned dci);
/* The guest rang the endpoint's doorbell: a stopped endpoint runs again. */
void xhci_ep_doorbell(struct xhci *x, unsigned slot, unsigned dci);

#endif
