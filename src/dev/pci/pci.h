/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * PCI bus 0: configuration access, BARs, INTx, MSI and MSI-X, and the table of device types.
 *
 * Configuration space is reached by mechanism #1 (0xCF8 address dword, 0xCFC-0xCFF data) and
 * by ECAM at PCI_ECAM_BASE (bus 0 only).  A function nobody emulates reads as all-ones.
 *
 * Device types ("emulations", bhyve's pci_devemu) are listed once, in pci.c's PCI_EMULATIONS
 * table: adding one is one line there plus its struct pci_emul in its own file.  pci_setup()
 * creates one instance per configured function from the keys
 *
 *	pci.<bus>.<slot>.<func>.device=<emulation>
 *	pci.<bus>.<slot>.<func>.<option>=<value>	(read with pci_dev_opt())
 *
 * Each function is a struct dev with id "pci@0.<slot>.<func>".  Its snapshot holds the whole
 * configuration space (BAR registers, MSI capability), the INTx state, the MSI-X table and
 * PBA, then the emulation's own state; a load puts the BARs back at the saved addresses.
 *
 * Resources (doc/platform.md): 32-bit BARs come from PCI_MMIO32_BASE..+PCI_MMIO32_SIZE (64-bit
 * BARs too, or the 64-bit window above RAM when that is full), I/O BARs from
 * PCI_IO_WINDOW_BASE..PCI_IO_WINDOW_END.  BARs are assigned and decoding enabled at creation,
 * since no firmware runs before the kernel.  Any function takes romfile=PATH, a PCI option ROM
 * file that becomes its expansion ROM (pci_rom_set), read once at creation.
 *
 * INTx pin p (INTA = 1) of slot s is on PIRQ (s + p - 2) mod 4 as in QEMU's PIIX "pc" (what
 * SeaBIOS assumes); PIRQ A-D are IOAPIC pins (GSI) 16-19, level triggered, functions sharing
 * one are OR-ed, and a PIRQ whose route register in the LPC bridge (0x60-0x63, as the PIIX3's)
 * names an ISA IRQ drives that IRQ too (the 8259 and the IOAPIC pin of that number), as
 * firmware sets them up for a guest that uses the PIC.
 *
 * Threads: configuration accesses and BAR accesses come from vCPU threads; the pci_* calls
 * below may be used from any thread (each function's state has its own lock).  Emulation
 * hooks are called without that lock held, so they may call back into pci_*.
 */
#ifndef KHYVE_DEV_PCI_H
#define KHYVE_DEV_PCI_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bus.h"
#include "dev/dev.h"

struct vm;
struct sstream;
struct pci_bus;
struct pci_dev;

#define PCI_SLOTS 32
#define PCI_FUNCS 8
#define PCI_CFG_SIZE 256 /* ECAM offsets above this read 0 (no extended caps) */
#define PCI_BARS 6
#define PCI_GSI_BASE 16
#define PCI_IO_WINDOW_BASE 0x6000
#define PCI_IO_WINDOW_END 0x10000
#define PCI_MSIX_MAX 2048

/* Configuration space registers (type 0 header). */
#define PCIR_VENDOR 0x00
#define PCIR_DEVICE 0x02
#define PCIR_COMMAND 0x04
#define PCIR_STATUS 0x06
#define PCIR_REVID 0x08
#define PCIR_PROGIF 0x09
#define PCIR_SUBCLASS 0x0A
#define PCIR_CLASS 0x0B
#define PCIR_CACHELNSZ 0x0C
#define PCIR_LATTIMER 0x0D
#define PCIR_HDRTYPE 0x0E
#define PCIR_BAR(i) (0x10 + 4 * (i))
#define PCIR_SUBVEND 0x2C
#define PCIR_SUBDEV 0x2E
#define PCIR_ROM 0x30
#define PCIR_CAP_PTR 0x34
#define PCIR_INTLINE 0x3C
#define PCIR_INTPIN 0x3D

#define PCIM_CMD_IO (1U << 0)
#define PCIM_CMD_MEM (1U << 1)
#define PCIM_CMD_BUSMASTER (1U << 2)
#define PCIM_CMD_INTX_DISABLE (1U << 10)
#define PCIM_STATUS_INTR (1U << 3)
#define PCIM_STATUS_CAPLIST (1U << 4)
#define PCIM_HDRTYPE_MULTI 0x80
#define PCIM_ROM_ENABLE 0x01

#define PCIY_MSI 0x05
#define PCIY_VENDOR 0x09
#define PCIY_MSIX 0x11

#define PCIC_BRIDGE 0x06
#define PCIS_BRIDGE_HOST 0x00
#define PCIS_BRIDGE_ISA 0x01

enum pci_bar_type {
	PCI_BAR_NONE = 0,
	PCI_BAR_IO,
	PCI_BAR_MEM32,
	PCI_BAR_MEM64,	  /* takes this BAR and the next one */
	PCI_BAR_MEM64_HI, /* internal: upper half of a 64-bit BAR */
};

/*
 * Options a device type takes: pci.B.S.F.<prefix><name> for each name of the NULL-terminated
 * @names; '#' in either matches a number ("port.#.").  The key registry (keys.h) refuses
 * options no list has.
 */
struct pci_optlist {
	const char *prefix;
	const char *const *names;
};
#define PCI_OPTLISTS 4

/* A device type.  Only name and init are required. */
struct pci_emul {
	const char *name; /* "hostbridge", the value of pci.B.S.F.device */
	unsigned version; /* version of the state save() writes */
	/* Its options and its backends' ("device" and "bootindex" are every function's). */
	struct pci_optlist options[PCI_OPTLISTS];
	/*
	 * Set up @pd: identity (pci_set_ids), BARs (pci_bar_declare), capabilities, INTx
	 * pin.  @opts is the function's config prefix "pci.0.S.F"; read options with
	 * pci_dev_opt().  Returns 0 or -errno with a message in @err.  On failure the
	 * emulation frees what it allocated; destroy is not called.
	 */
	int (*init)(struct vm *vm, struct pci_dev *pd, const char *opts, char *err, size_t errlen);
	/* Access to BAR @bar at @offset within it (never to the MSI-X table or PBA). */
	void (*bar_io)(struct pci_dev *pd, int bar, uint64_t offset, void *data, unsigned size,
		       bool is_write);
	/*
	 * Optional configuration-space overrides, tried before the generic code: return true
	 * when the access was handled.  @off is the register offset, @size 1, 2 or 4.
	 */
	bool (*cfg_read)(struct pci_dev *pd, unsigned off, unsigned size, uint32_t *val);
	bool (*cfg_write)(struct pci_dev *pd, unsigned off, unsigned size, uint32_t val);
	/*
	 * Device state after the PCI part of the snapshot.  load() ends the section: it
	 * decodes into a staging copy, validates, calls ss_finish() and commits only when
	 * that returned 0.  The PCI part is committed after load() returned 0.
	 */
	int (*save)(struct pci_dev *pd, struct sstream *s);
	int (*load)(struct pci_dev *pd, struct sstream *s, unsigned version);
	int (*pause)(struct pci_dev *pd);
	int (*resume)(struct pci_dev *pd);
	void (*destroy)(struct pci_dev *pd);
};

struct pci_bar {
	struct pci_dev *pd;
	int idx;
	enum pci_bar_type type;
	uint64_t size; /* power of two */
	bool prefetch;
	/* Bus registration, under the bus's BAR lock: wanted and current. */
	bool want_on, on;
	uint64_t want_addr, addr;
	/* Host memory behind the BAR (pci_bar_set_ram), its KVM slot while mapped or -1. */
	void *ram;
	bool ram_log;
	int ram_slot;
	/* pci_bar_coalesce: the zones, as offsets within the BAR, registered while it decodes. */
	struct bus_zone *czones;
	unsigned nczones;
};

/* The expansion ROM BAR (configuration offset 0x30), read-only memory of the emulation's. */
struct pci_rom {
	const uint8_t *data; /* NULL: no ROM */
	size_t len;
	uint64_t size; /* power of two, at least 2 KiB */
	/* Bus registration, under the bus's BAR lock, as for BARs. */
	bool want_on, on;
	uint64_t want_addr, addr;
};

struct pci_msix {
	unsigned nvec; /* 0: no MSI-X capability */
	int bar;
	uint32_t table_off, pba_off; /* within the BAR */
	uint32_t *table;	     /* nvec entries of 4 dwords */
	uint64_t *pba;		     /* (nvec + 63) / 64 words */
};

/*
 * A PCI function.  Emulations keep their state in @priv and use the accessors below rather
 * than the fields.
 */
struct pci_dev {
	struct dev dev;
	struct vm *vm;
	struct pci_bus *bus;
	const struct pci_emul *emul;
	void *priv;
	unsigned slot, func;
	char opts[24]; /* "pci.0.S.F" */

	pthread_mutex_t lock; /* everything below */
	uint8_t cfg[PCI_CFG_SIZE];
	uint8_t wmask[PCI_CFG_SIZE]; /* bits the guest may write */
	uint8_t w1c[PCI_CFG_SIZE];   /* bits the guest clears by writing 1 */
	struct pci_bar bar[PCI_BARS];
	bool intx_asserted;	     /* the device's INTx output */
	bool intx_on;		     /* counted on the GSI (asserted and not disabled) */
	unsigned cap_last, cap_free; /* capability list tail, next free offset */
	unsigned msi_cap, msix_cap;  /* capability offsets, 0 if absent */
	struct pci_msix msix;
	struct pci_rom rom;
	uint8_t *rom_owned; /* romfile=: the file's bytes, which rom.data points at */
};

/* Create the bus and every function of the configuration.  0 or -errno with @err. */
int pci_setup(struct vm *vm, char *err, size_t errlen);

/*
 * Add one function with emulation @e (pci_setup does this for each configured function; also
 * for tests with emulations outside the table).  The bus must exist.  NULL with @err.
 */
struct pci_dev *pci_dev_add(struct vm *vm, unsigned slot, unsigned func, const struct pci_emul *e,
			    char *err, size_t errlen);

const struct pci_emul *pci_emul_find(const char *name);
/* The @i-th device type of the table, NULL past the end. */
const struct pci_emul *pci_emul_get(unsigned i);
struct pci_dev *pci_find_dev(struct vm *vm, unsigned slot, unsigned func);
bool pci_slot_used(struct vm *vm, unsigned slot, unsigned func);

/* The value of pci.0.S.F.@name, or NULL. */
const char *pci_dev_opt(struct pci_dev *pd, const char *name);

/* Configuration space as the device sets it up (init) or reads it. */
uint8_t pci_get_cfg8(struct pci_dev *pd, unsigned off);
uint16_t pci_get_cfg16(struct pci_dev *pd, unsigned off);
uint32_t pci_get_cfg32(struct pci_dev *pd, unsigned off);
void pci_set_cfg8(struct pci_dev *pd, unsigned off, uint8_t v);
void pci_set_cfg16(struct pci_dev *pd, unsigned off, uint16_t v);
void pci_set_cfg32(struct pci_dev *pd, unsigned off, uint32_t v);
/* Make bits of @size bytes at @off guest-writable (@mask set) or read-only. */
void pci_set_wmask(struct pci_dev *pd, unsigned off, unsigned size, uint32_t mask);
void pci_set_ids(struct pci_dev *pd, uint16_t vendor, uint16_t device, uint8_t class,
		 uint8_t subclass, uint8_t progif, uint8_t rev);

/*
 * Declare BAR @idx (init only): @size is rounded up to a power of two (at least 16 bytes for
 * memory, 4 for I/O).  A 64-bit BAR also takes @idx + 1.  The bus assigns the address.
 */
int pci_bar_declare(struct pci_dev *pd, int idx, enum pci_bar_type type, uint64_t size,
		    bool prefetch);
/*
 * Back memory BAR @idx (declared) with @hva, host memory of the BAR's size: while the BAR
 * decodes, the guest reaches it directly (vm_devmem_map) without exits, and with @log_dirty
 * the pages it writes are recorded for pci_bar_ram_dirty().  Accesses that still arrive
 * (no KVM: unit tests) go to bar_io as usual.  init only.
 */
int pci_bar_set_ram(struct pci_dev *pd, int idx, void *hva, bool log_dirty);
/*
 * The pages of RAM BAR @idx written since the last call, one bit per 4 KiB page, into
 * @bitmap (BAR size / 4096 bits, rounded up to 64).  -ENODEV when it is not mapped now.
 */
int pci_bar_ram_dirty(struct pci_dev *pd, int idx, uint64_t *bitmap);
/*
 * Let KVM buffer the guest's writes to memory BAR @idx (declared, not RAM-backed) as
 * coalesced MMIO (bus.h), except in the @nsync ranges @sync (offsets within the BAR): the
 * registers whose writes have an effect the guest waits for without another exit, such as a
 * doorbell, an interrupt mask or cause, a reset.  Reads always exit, and every exit first
 * hands over what was buffered, so a register the guest reads back needs no hole; a backend
 * thread that reads state such writes change calls bus_coalesce_drain first.  An MSI-X table
 * or PBA in the BAR (pci_msix_init first) is kept out too.  The zones follow the BAR as the
 * guest moves it; without the ring (bus.h) it changes nothing.  init only.  0 or -errno.
 */
#define PCI_COALESCE_ZONES 32 /* most zones one BAR may need */
int pci_bar_coalesce(struct pci_dev *pd, int idx, const struct bus_zone *sync, unsigned nsync);
/*
 * An expansion ROM of @len bytes at @data (which the emulation keeps, and may rewrite while
 * the VM is paused) in a ROM BAR of @size bytes (a power of two >= @len, >= 2 KiB), as a
 * VGA BIOS or boot ROM comes: firmware sizes it, maps it with the enable bit and copies it.
 * Reads beyond @len return 0; writes are ignored.  init only.
 */
int pci_rom_set(struct pci_dev *pd, const uint8_t *data, size_t len, uint64_t size);
/* Current guest address of BAR @idx (as programmed by the guest). */
uint64_t pci_bar_addr(struct pci_dev *pd, int idx);

/* Append a capability of @len bytes with id @id; returns its offset or -ENOSPC. */
int pci_cap_add(struct pci_dev *pd, uint8_t id, unsigned len);

/* PIRQ route registers: bit 7 off, bits 3:0 the ISA IRQ; power-on 0x80. */
#define PCI_PIRQ_DISABLE 0x80
#define PCI_PIRQ_ROUTE_BITS 0x8F
/* The PIRQ (0-3 for A-D) of INTx pin @pin (1-4) of @slot. */
unsigned pci_intx_pirq(unsigned slot, unsigned pin);
/* Route register of PIRQ @pirq, as the LPC bridge shows it; setting it re-drives the lines. */
uint8_t pci_pirq_route(struct vm *vm, unsigned pirq);
void pci_pirq_route_set(struct vm *vm, unsigned pirq, uint8_t route);

/* INTx pin @pin (1 = INTA .. 4 = INTD); the line register gets the GSI. */
int pci_intx_init(struct pci_dev *pd, unsigned pin);
void pci_irq_assert(struct pci_dev *pd);
void pci_irq_deassert(struct pci_dev *pd);
/* GSI that INTx pin @pin (1-4) of @slot is wired to. */
unsigned pci_intx_gsi(unsigned slot, unsigned pin);

/* MSI capability (64-bit addresses, @nvec = 1, 2, 4 .. 32 vectors); init only. */
int pci_msi_init(struct pci_dev *pd, unsigned nvec);
/* MSI-X with @nvec vectors, table at offset 0 of BAR @bar and the PBA after it (own BAR). */
int pci_msix_init(struct pci_dev *pd, unsigned nvec, int bar);
bool pci_msi_enabled(struct pci_dev *pd);
bool pci_msix_enabled(struct pci_dev *pd);
/* Send vector @v: 0 when sent (or left pending, for a masked MSI-X vector), else -errno. */
int pci_msi_notify(struct pci_dev *pd, unsigned v);
int pci_msix_notify(struct pci_dev *pd, unsigned v);
/*
 * Interrupt the guest the way it chose: MSI-X vector @v if enabled, else MSI vector @v, else
 * assert INTx (the emulation deasserts it when the guest acknowledges).
 */
int pci_interrupt(struct pci_dev *pd, unsigned v);

#endif
