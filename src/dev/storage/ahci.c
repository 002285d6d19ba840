// SPDX-License-Identifier: BSD-2-Clause
/*
 * AHCI: an ICH-class Serial ATA host bus adapter (AHCI 1.3) with up to 32 ports, each a hard
 * disk (ata.c) or an ATAPI CD-ROM (atapi.c) on a raw image of the block backend.
 *
 *	-s SLOT,ahci,hd:PATH[,OPTS],cd:PATH[,OPTS]...	one port per hd:/cd:, in order
 *	-s SLOT,ahci-hd,PATH[,OPTS]			one hard disk on port 0
 *	-s SLOT,ahci-cd,PATH[,OPTS]			one CD-ROM on port 0
 *
 * OPTS are bhyve's: the block backend's ro, nocache, direct, sectorsize=L[/P], nodelete and
 * iothreads=N (default 2 for a disk, 1 for a CD), and the drive's own ser=ID (IDENTIFY serial
 * number, 20 characters), model=NAME (40), rev=REV (firmware revision, 8) and nmrr=N (nominal
 * media rotation rate, IDENTIFY word 217: 1 for a solid-state disk, else RPM).  A CD is always
 * read-only.  Configuration keys: pci.0.S.0.port.N.{type,path,...}; ahci-hd/ahci-cd use
 * pci.0.S.0.{path,...}.
 *
 * What is emulated (AHCI 1.3; SATA 3.x; ACS-3 and MMC-6 for the commands): PCI class 01/06/01
 * (Intel 8086:2922, ICH9), ABAR in BAR 5, MSI and INTx.  Per port the command list, received
 * FIS area and command tables live in guest memory; the HBA fetches a command when PxCI is
 * written, maps its PRDT, and completes it with a D2H register FIS (non-queued; PIO data-in
 * also gets a PIO Setup FIS) or a Set Device Bits FIS (NCQ).  Non-queued commands run one at
 * a time; NCQ (READ/WRITE FPDMA QUEUED) commands run concurrently on the port's I/O threads.
 * A command's failure sets PxIS.TFES and stops the port's engine until the driver clears
 * PxCMD.ST, as AHCI 6.2.2 says.  Not emulated: port multipliers, FIS-based switching,
 * command completion coalescing, enclosure management, staggered spin-up, partial/slumber
 * power states (accepted, no effect), hot plug.
 *
 * The guest is hostile: every guest value (command header, command table, PRDT entries,
 * FIS lengths and types, LBAs and counts) is checked before use; a bad one fails that command
 * with a task-file error (ABRT), never khyve.
 *
 * Threads: registers are accessed on vCPU threads under hba->lock.  A write to PxCI kicks the
 * port's block backend; its worker threads call ahci_serve(), which takes issued commands,
 * executes them without the lock and completes them under it.
 *
 * Snapshots: pause drains every port (every issued command the engine may run is executed,
 * completed and interrupted; then the workers stop).  The state is the HBA's registers, each
 * port's registers and engine state, and the drives' state (ATA settings, ATAPI sense and
 * tray), with the configuration (port count and types, disk sizes, serial numbers) as
 * invariants a restore must match.  Everything else is in guest memory.
 */
#include "dev/storage/ahci.h"

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "dev/pci/pci.h"
#include "sstream.h"
#include "vm.h"

#define AHCI_STATE_VERSION 1
#define AHCI_BAR 5
#define AHCI_BAR_SIZE 0x2000 /* 0x100 + 32 ports x 0x80, rounded to a power of two */

/* Generic host control. */
#define HBA_CAP 0x00
#define HBA_GHC 0x04
#define HBA_IS 0x08
#define HBA_PI 0x0C
#define HBA_VS 0x10
#define HBA_CAP2 0x24
#define HBA_PORTS 0x100
#define HBA_PORT_LEN 0x80

#define CAP_SXS (1U << 5)
#define CAP_NCS_SHIFT 8
#define CAP_PSC (1U << 13)
#define CAP_SSC (1U << 14)
#define CAP_SAM (1U << 18)
#define CAP_ISS_SHIFT 20
#define CAP_SCLO (1U << 24)
#define CAP_SNCQ (1U << 30)
#define CAP_S64A (1U << 31)

#define GHC_HR (1U << 0)
#define GHC_IE (1U << 1)
#define GHC_AE (1U << 31)

/* Port registers. */
#define PX_CLB 0x00
#define PX_CLBU 0x04
#define PX_FB 0x08
#define PX_FBU 0x0C
#define PX_IS 0x10
#define PX_IE 0x14
#define PX_CMD 0x18
#define PX_TFD 0x20
#define PX_SIG 0x24
#define PX_SSTS 0x28
#define PX_SCTL 0x2C
#define PX_SERR 0x30
#define PX_SACT 0x34
#define PX_CI 0x38
#define PX_SNTF 0x3C
#define PX_FBS 0x40

#define IS_DHRS (1U << 0)
#define IS_PSS (1U << 1)
#define IS_SDBS (1U << 3)
#define IS_DPS (1U << 5)
#define IS_TFES (1U << 30)
#define IS_MASK 0xFDC000FFU /* the bits AHCI 1.3 defines */

#define CMD_ST (1U << 0)
#define CMD_SUD (1U << 1)
#define CMD_POD (1U << 2)
#define CMD_CLO (1U << 3)
#define CMD_FRE (1U << 4)
#define CMD_CCS_SHIFT 8
#define CMD_FR (1U << 14)
#define CMD_CR (1U << 15)
#define CMD_ATAPI (1U << 24)
#define CMD_RW (CMD_ST | CMD_SUD | CMD_POD | CMD_FRE | CMD_ATAPI | 0x0E000000U)

#define SSTS_UP 0x123 /* device present, Gen 2 speed, interface active */
#define SCTL_DET 0xF

#define SIG_ATA 0x00000101U
#define SIG_ATAPI 0xEB140101U

/* Received FIS area offsets. */
#define RFIS_PSFIS 0x20
#define RFIS_RFIS 0x40
#define RFIS_SDBFIS 0x58
#define RFIS_LEN 0x100

#define FIS_H2D 0x27
#define FIS_D2H 0x34
#define FIS_SDB 0xA1
#define FIS_PIO 0x5F

/* Command header (32 bytes) and table. */
#define CH_CFL 0x1F
#define CH_A (1U << 5)
#define CH_W (1U << 6)
#define CH_PRDTL_SHIFT 16
#define CT_CFIS 0x00
#define CT_ACMD 0x40
#define CT_PRDT 0x80
#define PRD_DBC 0x3FFFFF
#define PRD_I (1U << 31)

/* ---- little helpers ---- */

static uint32_t rd32(const void *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return le32toh(v);
}

static void wr32(void *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, 4);
}

static uint64_t port_clb(const struct ahci_port *p)
{
	return (uint64_t)p->clbu << 32 | p->clb;
}

static uint64_t port_fb(const struct ahci_port *p)
{
	return (uint64_t)p->fbu << 32 | p->fb;
}

/* ---- the PRDT and data transfer ---- */

size_t ahci_sg_to_guest(struct ahci_cmd *c, const void *buf, size_t len)
{
	size_t done = 0;

	for (unsigned i = 0; i < c->nsg && done < len; i++) {
		size_t l = c->sg[i].iov_len < len - done ? c->sg[i].iov_len : len - done;

		memcpy(c->sg[i].iov_base, (const uint8_t *)buf + done, l);
		done += l;
	}
	return done;
}

size_t ahci_sg_from_guest(struct ahci_cmd *c, void *buf, size_t len)
{
	size_t done = 0;

	for (unsigned i = 0; i < c->nsg && done < len; i++) {
		size_t l = c->sg[i].iov_len < len - done ? c->sg[i].iov_len : len - done;

		memcpy((uint8_t *)buf + done, c->sg[i].iov_base, l);
		done += l;
	}
	return done;
}

/* Find byte @pos of the PRDT: entry *@i, *@skip bytes into it. */
static void sg_seek(const struct ahci_cmd *c, uint64_t pos, unsigned *i, size_t *skip)
{
	for (*i = 0; *i < c->nsg && pos >= c->sg[*i].iov_len; (*i)++)
		pos -= c->sg[*i].iov_len;
	*skip = (size_t)pos;
}

/* Slices of the PRDT, BLK_MAX_IOV buffers at a time, so any PRDT length works. */
int ahci_sg_disk(struct ahci_cmd *c, bool write, uint64_t off, uint64_t len)
{
	uint64_t pos = 0;

	if (len > c->sg_len)
		return -EINVAL;
	while (len) {
		uint64_t part = 0;
		unsigned i, n = 0;
		size_t skip;
		int ret;

		sg_seek(c, pos, &i, &skip);
		for (; n < BLK_MAX_IOV && i < c->nsg && part < len; i++, skip = 0) {
			size_t l = c->sg[i].iov_len - skip;

			if (l > len - part)
				l = (size_t)(len - part);
			c->io[n++] = (struct iovec){ (uint8_t *)c->sg[i].iov_base + skip, l };
			part += l;
		}
		/* The backend takes whole sectors per call: end a slice on a sector boundary. */
		for (uint64_t cut = part < len ? part % BLK_UNIT : 0; cut && n;) {
			struct iovec *last = &c->io[n - 1];
			size_t l = last->iov_len < cut ? last->iov_len : (size_t)cut;

			last->iov_len -= l;
			cut -= l;
			part -= l;
			if (!last->iov_len)
				n--;
		}
		if (!part)
			return -EINVAL;
		ret = write ? blk_writev(c->p->be, c->w, c->io, n, off)
			    : blk_readv(c->p->be, c->w, c->io, n, off);
		if (ret)
			return ret;
		pos += part;
		off += part;
		len -= part;
		c->xfer += part;
	}
	return 0;
}

/*
 * Map the PRDT at @gpa: every entry must lie in guest RAM.  DBA bit 0 is reserved (word
 * alignment) and DBC is a byte count minus one whose bit 0 must be 1 (an even count).
 */
static int map_prdt(struct ahci *h, struct ahci_cmd *c, uint64_t gpa, unsigned n)
{
	const uint8_t *prd = n ? vm_gpa(h->vm, gpa, (uint64_t)n * 16) : NULL;

	c->nsg = 0;
	c->sg_len = 0;
	if (n && !prd)
		return -EFAULT;
	for (unsigned i = 0; i < n; i++) {
		uint64_t dba = (uint64_t)rd32(prd + 16 * i + 4) << 32 | rd32(prd + 16 * i);
		uint32_t dw3 = rd32(prd + 16 * i + 12);
		uint64_t len = (uint64_t)(dw3 & PRD_DBC) + 1;
		void *hva;

		if ((dba & 1) || (len & 1))
			return -EINVAL;
		hva = vm_gpa(h->vm, dba, len);
		if (!hva)
			return -EFAULT;
		c->sg[c->nsg++] = (struct iovec){ hva, len };
		c->sg_len += len;
		c->prd_irq |= !!(dw3 & PRD_I);
	}
	return 0;
}

/* ---- interrupts ---- */

/* IS from the ports (level semantics, as QEMU and the ICH do), then the line or an MSI. */
static void update_irq(struct ahci *h)
{
	uint32_t is = 0;

	for (unsigned i = 0; i < h->nports; i++)
		if (h->port[i]->is & h->port[i]->ie)
			is |= 1U << i;
	h->is = is;
	if (pci_msi_enabled(h->pd)) {
		pci_irq_deassert(h->pd);
		if (is && (h->ghc & GHC_IE))
			pci_msi_notify(h->pd, 0);
		return;
	}
	if (is && (h->ghc & GHC_IE))
		pci_irq_assert(h->pd);
	else
		pci_irq_deassert(h->pd);
}

static void port_event(struct ahci_port *p, uint32_t bits)
{
	p->is |= bits;
	update_irq(p->hba);
}

/* ---- FISes to the guest ---- */

static uint8_t *rfis(struct ahci_port *p, unsigned off, unsigned len)
{
	if (!(p->cmd & CMD_FRE))
		return NULL;
	return vm_gpa(p->hba->vm, port_fb(p) + off, len);
}

static void fis_regs(uint8_t *f, uint8_t status, uint8_t error, uint64_t lba, uint8_t dev,
		     uint16_t count)
{
	f[2] = status;
	f[3] = error;
	f[4] = (uint8_t)lba;
	f[5] = (uint8_t)(lba >> 8);
	f[6] = (uint8_t)(lba >> 16);
	f[7] = dev;
	f[8] = (uint8_t)(lba >> 24);
	f[9] = (uint8_t)(lba >> 32);
	f[10] = (uint8_t)(lba >> 40);
	f[12] = (uint8_t)count;
	f[13] = (uint8_t)(count >> 8);
}

static void write_d2h(struct ahci_port *p, uint8_t status, uint8_t error, uint64_t lba, uint8_t dev,
		      uint16_t count)
{
	uint8_t *f = rfis(p, RFIS_RFIS, 20);

	p->tfd = (uint32_t)error << 8 | status;
	if (!f)
		return;
	memset(f, 0, 20);
	f[0] = FIS_D2H;
	f[1] = 0x40; /* I */
	fis_regs(f, status, error, lba, dev, count);
}

static void write_pio_setup(struct ahci_port *p, const struct ahci_cmd *c)
{
	uint8_t *f = rfis(p, RFIS_PSFIS, 20);

	if (!f)
		return;
	memset(f, 0, 20);
	f[0] = FIS_PIO;
	f[1] = 0x60; /* I, D (device to host) */
	fis_regs(f, c->status, c->error, c->r_lba, c->r_device, c->r_count);
	f[15] = c->status; /* E_Status: the status after the transfer */
	f[16] = (uint8_t)c->xfer;
	f[17] = (uint8_t)(c->xfer >> 8);
}

static void write_sdb(struct ahci_port *p, uint8_t status, uint8_t error, uint32_t sact)
{
	uint8_t *f = rfis(p, RFIS_SDBFIS, 8);

	p->tfd = (uint32_t)error << 8 | status;
	if (!f)
		return;
	f[0] = FIS_SDB;
	f[1] = 0x40;
	f[2] = status & 0x77;
	f[3] = error;
	wr32(f + 4, sact);
}

/* ---- the command engine ---- */

static bool engine_on(const struct ahci_port *p)
{
	return (p->cmd & CMD_ST) && !p->halted;
}

/* The register FIS of slot @s, or NULL when its header or table is outside RAM. */
static const uint8_t *slot_fis(struct ahci_port *p, unsigned s)
{
	const uint8_t *ch = vm_gpa(p->hba->vm, port_clb(p) + 32 * s, 32);
	uint64_t ctba;

	if (!ch)
		return NULL;
	ctba = ((uint64_t)rd32(ch + 12) << 32 | rd32(ch + 8)) & ~0x7FULL;
	return vm_gpa(p->hba->vm, ctba, 20);
}

static bool slot_is_ncq(struct ahci_port *p, unsigned s)
{
	const uint8_t *f = slot_fis(p, s);

	return p->type == AHCI_HD && f && f[0] == FIS_H2D && (f[1] & 0x80) && ata_is_ncq(f[2]);
}

/*
 * The next slot to execute, or -1.  NCQ commands run side by side; a non-queued one waits
 * until nothing else runs, and nothing starts beside it.  Under hba->lock.
 */
static int pick(struct ahci_port *p, bool *ncq)
{
	uint32_t cand;

	if (!engine_on(p) || p->nonq)
		return -1;
	cand = p->ci & ~p->taken;
	for (unsigned k = 0; cand && k < AHCI_SLOTS; k++) {
		unsigned s = (p->next + k) % AHCI_SLOTS;

		if (!(cand & (1U << s)))
			continue;
		*ncq = slot_is_ncq(p, s);
		if (!*ncq && p->taken)
			continue;
		p->next = (s + 1) % AHCI_SLOTS;
		return (int)s;
	}
	return -1;
}

static void decode_fis(struct ahci_cmd *c)
{
	const uint8_t *f = c->fis;

	c->command = f[2];
	c->features = (uint16_t)(f[3] | f[11] << 8);
	c->device = f[7];
	c->lba = (uint64_t)f[4] | (uint64_t)f[5] << 8 | (uint64_t)f[6] << 16 |
		 (uint64_t)f[8] << 24 | (uint64_t)f[9] << 32 | (uint64_t)f[10] << 40;
	c->count = (uint16_t)(f[12] | f[13] << 8);
}

/* Fetch slot @s's command into @c: 0, or -errno for a malformed command. */
static int fetch(struct ahci_port *p, struct ahci_cmd *c, unsigned s, uint64_t clb)
{
	struct ahci *h = p->hba;
	const uint8_t *ch = vm_gpa(h->vm, clb + 32 * s, 32);
	const uint8_t *ct;
	uint32_t dw0;
	uint64_t ctba;
	unsigned cfl;

	if (!ch)
		return -EFAULT;
	dw0 = rd32(ch);
	ctba = ((uint64_t)rd32(ch + 12) << 32 | rd32(ch + 8)) & ~0x7FULL;
	cfl = dw0 & CH_CFL;
	c->write = !!(dw0 & CH_W);
	c->atapi = !!(dw0 & CH_A);
	ct = vm_gpa(h->vm, ctba, CT_PRDT);
	/* A register FIS is 5 dwords; CFL 2..16 by the spec.  Type and C bit must say so. */
	if (!ct || cfl < 5 || cfl > 16)
		return -EINVAL;
	memcpy(c->fis, ct + CT_CFIS, sizeof(c->fis));
	memcpy(c->acmd, ct + CT_ACMD, sizeof(c->acmd));
	if (c->fis[0] != FIS_H2D || !(c->fis[1] & 0x80))
		return -EINVAL;
	decode_fis(c);
	return map_prdt(h, c, ctba + CT_PRDT, dw0 >> CH_PRDTL_SHIFT);
}

static void execute(struct ahci_port *p, struct ahci_cmd *c, uint64_t clb)
{
	c->status = ATA_S_DRDY | ATA_S_ERR;
	c->error = ATA_E_ABRT;
	if (fetch(p, c, c->slot, clb))
		return;
	if (p->type == AHCI_HD)
		ata_exec(c);
	else
		atapi_exec(c);
}

/* Write the outcome of @c; under hba->lock, only if the engine ran it (same generation). */
static void complete(struct ahci_port *p, struct ahci_cmd *c, uint64_t clb)
{
	uint32_t bit = 1U << c->slot, ev = 0;
	bool err = c->status & ATA_S_ERR;
	uint8_t *ch;

	if (c->prd_irq && !err)
		ev |= IS_DPS;
	if (c->ncq) {
		if (err) {
			/* Concurrent NCQ commands may fail together: the log is kept under the lock. */
			ata_ncq_error(p, c);
			write_sdb(p, c->status, c->error, 0);
			p->halted = true;
			ev |= IS_TFES | IS_SDBS;
		} else {
			p->sact &= ~bit;
			write_sdb(p, ATA_S_DRDY | ATA_S_DSC, 0, bit);
			ev |= IS_SDBS;
		}
		port_event(p, ev);
		return;
	}
	ch = vm_gpa(p->hba->vm, clb + 32 * c->slot, 32);
	if (ch)
		wr32(ch + 4, (uint32_t)c->xfer); /* PRDBC */
	if (c->pio) {
		write_pio_setup(p, c);
		ev |= IS_PSS;
	}
	write_d2h(p, c->status, c->error, c->r_lba, c->r_device, c->r_count);
	ev |= IS_DHRS;
	if (err) {
		/* AHCI 6.2.2.1: the engine stops, PxCI keeps the failed slot until ST is cleared. */
		p->halted = true;
		ev |= IS_TFES;
	} else {
		p->ci &= ~bit;
	}
	port_event(p, ev);
}

/* Worker thread: run the port's commands until none is left or the backend pauses. */
static void ahci_serve(void *opaque, struct blk_worker *w, void *scratch)
{
	struct ahci_port *p = opaque;
	struct ahci *h = p->hba;
	struct ahci_scratch *sc = scratch;
	struct ahci_cmd c;

	pthread_mutex_lock(&h->lock);
	p->running++;
	while (blk_running(p->be)) {
		uint32_t gen = p->gen;
		uint64_t clb = port_clb(p);
		bool ncq = false;
		int s = pick(p, &ncq);

		if (s < 0)
			break;
		p->taken |= 1U << s;
		p->nonq = !ncq;
		if (ncq)
			p->ci &= ~(1U << s); /* the device has accepted it: SACT tracks it now */
		/* Another worker may take an NCQ command beside this one. */
		if (ncq && (p->ci & ~p->taken))
			blk_kick(p->be);
		pthread_mutex_unlock(&h->lock);
		memset(&c, 0, sizeof(c));
		c.p = p;
		c.w = w;
		c.slot = (unsigned)s;
		c.sg = sc->sg;
		c.io = sc->io;
		c.ncq = ncq;
		execute(p, &c, clb);
		pthread_mutex_lock(&h->lock);
		p->taken &= ~(1U << s);
		if (!ncq)
			p->nonq = false;
		if (gen == p->gen)
			complete(p, &c, clb);
		if (!p->taken && !(p->cmd & CMD_ST))
			p->cmd &= ~CMD_CR; /* the engine stopped and its last command is done */
	}
	p->running--;
	pthread_cond_broadcast(&h->idle);
	pthread_mutex_unlock(&h->lock);
}

/* ---- port registers ---- */

/* The engine stops: forget what was issued; commands still executing complete into nothing. */
static void port_stop(struct ahci_port *p)
{
	p->ci = 0;
	p->sact = 0;
	p->halted = false;
	p->gen++;
	p->cmd &= ~(CMD_ST | (0x1FU << CMD_CCS_SHIFT));
	if (!p->taken)
		p->cmd &= ~CMD_CR;
}

/* The device after power-on or COMRESET: its signature, status and an initial D2H FIS. */
static void port_device_reset(struct ahci_port *p)
{
	struct ahci_cmd c = { .p = p };

	if (p->type == AHCI_HD)
		ata_reset(p);
	else
		atapi_reset(p, false);
	ata_signature(p, &c);
	p->sig = p->type == AHCI_HD ? SIG_ATA : SIG_ATAPI;
	p->ssts = SSTS_UP;
	p->serr |= 1U << 26; /* DIAG.X: the device's COMINIT was seen */
	write_d2h(p, p->type == AHCI_HD ? ATA_S_DRDY | ATA_S_DSC : 0, 0x01, c.r_lba, 0, c.r_count);
	port_event(p, IS_DHRS);
}

static void port_reset_regs(struct ahci_port *p)
{
	port_stop(p);
	p->clb = p->clbu = p->fb = p->fbu = 0;
	p->is = p->ie = p->serr = p->sntf = p->sctl = 0;
	p->cmd = CMD_SUD | CMD_POD;
	p->tfd = p->type == AHCI_HD ? (0x01 << 8 | ATA_S_DRDY | ATA_S_DSC) : 0x0100;
	p->sig = p->type == AHCI_HD ? SIG_ATA : SIG_ATAPI;
	p->ssts = SSTS_UP;
	p->next = 0;
	if (p->type == AHCI_HD)
		ata_reset(p);
	else
		atapi_reset(p, true);
}

static void port_write_cmd(struct ahci_port *p, uint32_t v)
{
	uint32_t old = p->cmd;

	p->cmd = (old & ~CMD_RW) | (v & CMD_RW);
	if (v & CMD_CLO)
		p->tfd &= ~(uint32_t)(ATA_S_BSY | ATA_S_DRQ);
	if (p->cmd & CMD_FRE)
		p->cmd |= CMD_FR;
	else
		p->cmd &= ~CMD_FR;
	if ((old & CMD_ST) && !(v & CMD_ST))
		port_stop(p);
	if (!(old & CMD_ST) && (v & CMD_ST)) {
		p->cmd |= CMD_CR;
		p->next = 0;
		blk_kick(p->be);
	}
}

static void port_write_sctl(struct ahci_port *p, uint32_t v)
{
	uint32_t old = p->sctl;

	p->sctl = v & 0xFFF;
	if ((v & SCTL_DET) == 1 && (old & SCTL_DET) != 1) {
		/* COMRESET: the link goes down and the device resets. */
		port_stop(p);
		p->ssts = 0;
		p->tfd = 0x7F | ATA_S_BSY;
	} else if ((v & SCTL_DET) == 0 && (old & SCTL_DET) == 1) {
		port_device_reset(p);
	}
}

static uint32_t port_read(struct ahci_port *p, unsigned reg)
{
	switch (reg) {
	case PX_CLB:
		return p->clb;
	case PX_CLBU:
		return p->clbu;
	case PX_FB:
		return p->fb;
	case PX_FBU:
		return p->fbu;
	case PX_IS:
		return p->is;
	case PX_IE:
		return p->ie;
	case PX_CMD:
		return p->cmd | (p->next % AHCI_SLOTS) << CMD_CCS_SHIFT;
	case PX_TFD:
		return p->tfd;
	case PX_SIG:
		return p->sig;
	case PX_SSTS:
		return p->ssts;
	case PX_SCTL:
		return p->sctl;
	case PX_SERR:
		return p->serr;
	case PX_SACT:
		return p->sact;
	case PX_CI:
		/* NCQ slots leave PxCI when the device takes them; non-queued ones on completion. */
		return p->ci;
	case PX_SNTF:
		return p->sntf;
	default:
		return 0;
	}
}

static void port_write(struct ahci_port *p, unsigned reg, uint32_t v)
{
	switch (reg) {
	case PX_CLB:
		p->clb = v & ~0x3FFU;
		break;
	case PX_CLBU:
		p->clbu = v;
		break;
	case PX_FB:
		p->fb = v & ~0xFFU;
		break;
	case PX_FBU:
		p->fbu = v;
		break;
	case PX_IS:
		p->is &= ~v;
		update_irq(p->hba);
		break;
	case PX_IE:
		p->ie = v & IS_MASK;
		update_irq(p->hba);
		break;
	case PX_CMD:
		port_write_cmd(p, v);
		break;
	case PX_SCTL:
		port_write_sctl(p, v);
		break;
	case PX_SERR:
		p->serr &= ~v;
		break;
	case PX_SACT:
		if (p->cmd & CMD_ST)
			p->sact |= v;
		break;
	case PX_CI:
		if (p->cmd & CMD_ST) {
			p->ci |= v;
			blk_kick(p->be);
		}
		break;
	case PX_SNTF:
		p->sntf &= ~v;
		break;
	default:
		break;
	}
}

/* ---- HBA registers ---- */

static uint32_t hba_cap(const struct ahci *h)
{
	return (h->nports - 1) | (AHCI_SLOTS - 1) << CAP_NCS_SHIFT | CAP_PSC | CAP_SSC | CAP_SAM |
	       2U << CAP_ISS_SHIFT | CAP_SCLO | CAP_SNCQ | CAP_S64A;
}

static uint32_t hba_pi(const struct ahci *h)
{
	return h->nports == 32 ? 0xFFFFFFFFU : (1U << h->nports) - 1;
}

static void hba_reset(struct ahci *h)
{
	for (unsigned i = 0; i < h->nports; i++)
		port_reset_regs(h->port[i]);
	h->ghc = GHC_AE;
	update_irq(h);
}

static uint32_t hba_read(struct ahci *h, unsigned reg)
{
	switch (reg) {
	case HBA_CAP:
		return hba_cap(h);
	case HBA_GHC:
		return h->ghc;
	case HBA_IS:
		return h->is;
	case HBA_PI:
		return hba_pi(h);
	case HBA_VS:
		return 0x00010300; /* 1.3 */
	default:
		return 0;
	}
}

static void hba_write(struct ahci *h, unsigned reg, uint32_t v)
{
	if (reg == HBA_GHC) {
		if (v & GHC_HR) {
			hba_reset(h);
			return;
		}
		h->ghc = GHC_AE | (v & GHC_IE);
		update_irq(h);
	} else if (reg == HBA_IS) {
		/* IS follows the ports' PxIS & PxIE: re-evaluate (a still-pending port stays). */
		update_irq(h);
	}
}

static void ahci_bar_io(struct pci_dev *pd, int bar, uint64_t off, void *data, unsigned size,
			bool is_write)
{
	struct ahci *h = pd->priv;
	unsigned reg = (unsigned)(off & ~3ULL), shift = (unsigned)(off & 3) * 8;
	uint32_t v = 0;

	if (bar != AHCI_BAR || off >= AHCI_BAR_SIZE) {
		if (!is_write)
			memset(data, 0, size);
		return;
	}
	pthread_mutex_lock(&h->lock);
	if (is_write) {
		/* Registers are dwords; a narrower write merges into the current value. */
		memcpy(&v, data, size < 4 ? size : 4);
		v = le32toh(v);
		if (size < 4 || shift) {
			uint32_t cur =
				reg < HBA_PORTS ? hba_read(h, reg)
				: ((reg - HBA_PORTS) / HBA_PORT_LEN < h->nports)
					? port_read(h->port[(reg - HBA_PORTS) / HBA_PORT_LEN],
						    (reg - HBA_PORTS) % HBA_PORT_LEN)
					: 0;
			uint32_t mask = (size >= 4 ? 0xFFFFFFFFU : (1U << (8 * size)) - 1) << shift;

			/* RW1C/RW1S registers must not see the other bytes again: write only ours. */
			v = (v << shift & mask) |
			    ((reg == HBA_IS ||
			      (reg >= HBA_PORTS && ((reg - HBA_PORTS) % HBA_PORT_LEN == PX_IS ||
						    (reg - HBA_PORTS) % HBA_PORT_LEN == PX_SERR ||
						    (reg - HBA_PORTS) % HBA_PORT_LEN == PX_CI ||
						    (reg - HBA_PORTS) % HBA_PORT_LEN == PX_SACT ||
						    (reg - HBA_PORTS) % HBA_PORT_LEN == PX_SNTF)))
				     ? 0
				     : cur & ~mask);
		}
		if (reg < HBA_PORTS)
			hba_write(h, reg, v);
		else if ((reg - HBA_PORTS) / HBA_PORT_LEN < h->nports)
			port_write(h->port[(reg - HBA_PORTS) / HBA_PORT_LEN],
				   (reg - HBA_PORTS) % HBA_PORT_LEN, v);
	} else {
		if (reg < HBA_PORTS)
			v = hba_read(h, reg);
		else if ((reg - HBA_PORTS) / HBA_PORT_LEN < h->nports)
			v = port_read(h->port[(reg - HBA_PORTS) / HBA_PORT_LEN],
				      (reg - HBA_PORTS) % HBA_PORT_LEN);
		v = htole32(v >> shift);
		memset(data, 0, size);
		memcpy(data, &v, size < 4 ? size : 4);
	}
	pthread_mutex_unlock(&h->lock);
}

/* ---- configuration ---- */

struct port_opt_ctx {
	struct pci_dev *pd;
	const char *prefix; /* "port.N." or "" */
	bool cd;	    /* a CD is read-only whatever the file allows */
};

static const char *port_opt(void *ctx, const char *key)
{
	struct port_opt_ctx *o = ctx;
	char k[96];

	if (o->cd && !strcmp(key, "ro"))
		return "true";

	snprintf(k, sizeof(k), "%s%s", o->prefix, key);
	return pci_dev_opt(o->pd, k);
}

/* Options a port may have; anything else is a typo the user should hear about. */
static const char *const port_keys[] = { "type",    "path",	 "ro",	       "nocache",
					 "direct",  "sync",	 "sectorsize", "nodelete",
					 "discard", "iothreads", "ser",	       "serial",
					 "model",   "rev",	 "nmrr",       "bootindex",
					 "romfile", NULL };

struct unknown_ctx {
	const char *base; /* "pci.0.4.0." */
	bool multi;	  /* ahci: options live under port.N. */
	char bad[128];
};

static void check_key(const char *key, const char *value, void *opaque)
{
	struct unknown_ctx *u = opaque;
	const char *k = key + strlen(u->base);

	if (u->bad[0] || !strcmp(k, "device"))
		return;
	if (u->multi) {
		if (strncmp(k, "port.", 5))
			goto bad;
		k = strchr(k + 5, '.');
		if (!k)
			goto bad;
		k++;
	}
	for (unsigned i = 0; port_keys[i]; i++)
		if (!strcmp(k, port_keys[i]))
			return;
bad:
	snprintf(u->bad, sizeof(u->bad), "%s", key + strlen(u->base));
}

static void put_str(char *dst, size_t n, const char *s)
{
	size_t l = strlen(s);

	memset(dst, ' ', n);
	memcpy(dst, s, l < n ? l : n);
}

static int opt_string(blk_opt_fn opt, void *ctx, const char *name, const char *dflt, char *out,
		      size_t n, char *err, size_t errlen)
{
	const char *v = opt(ctx, name);

	if (!v)
		v = dflt;
	if (strlen(v) > n) {
		snprintf(err, errlen, "%s=%s: at most %zu characters", name, v, n);
		return -EINVAL;
	}
	for (const char *c = v; *c; c++) {
		if (*c < 0x20 || *c > 0x7e) {
			snprintf(err, errlen, "%s=%s: printable ASCII only", name, v);
			return -EINVAL;
		}
	}
	put_str(out, n, v);
	return 0;
}

static int port_strings(struct ahci_port *p, blk_opt_fn opt, void *ctx, char *err, size_t errlen)
{
	const char *nmrr = opt(ctx, "nmrr");
	char dflt[32], ser[BLK_SERIAL_LEN + 1] = { 0 };
	int ret;

	snprintf(dflt, sizeof(dflt), "KHYVE%02u%02u%02u", p->hba->pd->slot, p->hba->pd->func,
		 p->idx);
	ret = blk_parse_serial(opt, ctx, dflt, ser, err, errlen);
	if (ret)
		return ret;
	put_str(p->serial, sizeof(p->serial), ser);
	ret = opt_string(opt, ctx, "model", p->type == AHCI_HD ? "KHYVE HARDDISK" : "KHYVE DVD-ROM",
			 p->model, sizeof(p->model), err, errlen);
	if (!ret)
		ret = opt_string(opt, ctx, "rev", "1.0", p->rev, sizeof(p->rev), err, errlen);
	if (ret)
		return ret;
	if (nmrr) {
		char *end;
		unsigned long v = strtoul(nmrr, &end, 0);

		/* ACS: 0 not reported, 1 non-rotating, 0401h..FFFEh RPM. */
		if (!*nmrr || *end || (v > 1 && v < 0x401) || v > 0xFFFE) {
			snprintf(err, errlen,
				 "nmrr=%s: 0 (not reported), 1 (solid state) or a rotation rate "
				 "from 1025 to 65534 RPM",
				 nmrr);
			return -EINVAL;
		}
		p->nmrr = (uint16_t)v;
	} else {
		p->nmrr = 1;
	}
	return 0;
}

static int port_open(struct ahci *h, unsigned idx, enum ahci_dev_type type, const char *prefix,
		     char *err, size_t errlen)
{
	struct ahci_port *p = calloc(1, sizeof(*p));
	struct port_opt_ctx o = { h->pd, prefix, false };
	char usage[192], key[96], name[16];
	struct blk_args a = {
		.vm = h->vm,
		.opt = port_opt,
		.opt_ctx = &o,
		.cfg_key = key,
		.thread_name = name,
		.usage = usage,
		.default_threads = type == AHCI_HD ? 2 : 1,
		.scratch_size = sizeof(struct ahci_scratch),
		.serve = ahci_serve,
	};
	int ret;

	if (!p)
		return -ENOMEM;
	p->hba = h;
	p->idx = idx;
	p->type = type;
	a.opaque = p;
	a.id = p->id;
	snprintf(p->id, sizeof(p->id), "%s.port%u", h->pd->dev.id, idx);
	snprintf(key, sizeof(key), "%s.%spath", h->pd->opts, prefix);
	snprintf(usage, sizeof(usage), "port %u: use hd:PATH or cd:PATH, or set %s", idx, key);
	snprintf(name, sizeof(name), "ahci%u.%u", h->pd->slot, idx);
	if (type == AHCI_CD && port_opt(&o, "ro")) {
		bool ro;

		if (blk_opt_bool(port_opt, &o, "ro", true, &ro, err, errlen))
			goto fail;
		if (!ro) {
			snprintf(err, errlen, "port %u: a CD-ROM is read-only (drop ro=%s)", idx,
				 port_opt(&o, "ro"));
			goto fail;
		}
	}
	o.cd = type == AHCI_CD;
	ret = port_strings(p, port_opt, &o, err, errlen);
	if (!ret)
		ret = blk_open(&a, &p->be, err, errlen);
	if (ret) {
		free(p);
		return ret;
	}
	p->lsize = type == AHCI_CD ? 2048 : blk_lsize(p->be);
	p->sectors = blk_size(p->be) / p->lsize;
	h->port[idx] = p;
	h->nports = idx + 1;
	port_reset_regs(p);
	return 0;
fail:
	free(p);
	return -EINVAL;
}

static void ahci_free(struct ahci *h)
{
	for (unsigned i = 0; i < AHCI_MAX_PORTS; i++) {
		if (!h->port[i])
			continue;
		blk_close(h->port[i]->be);
		free(h->port[i]);
	}
	pthread_cond_destroy(&h->idle);
	pthread_mutex_destroy(&h->lock);
	free(h);
}

static int ports_open(struct ahci *h, const char *emul, char *err, size_t errlen)
{
	char prefix[32], perr[400];
	unsigned n = 0;
	int ret;

	if (strcmp(emul, "ahci")) {
		ret = port_open(h, 0, strcmp(emul, "ahci-cd") ? AHCI_HD : AHCI_CD, "", perr,
				sizeof(perr));
		if (ret)
			snprintf(err, errlen, "%s", perr);
		return ret;
	}
	for (; n < AHCI_MAX_PORTS; n++) {
		const char *type;

		snprintf(prefix, sizeof(prefix), "port.%u.type", n);
		type = pci_dev_opt(h->pd, prefix);
		if (!type)
			break;
		if (strcmp(type, "hd") && strcmp(type, "cd")) {
			snprintf(err, errlen, "port %u: type=%s: want hd or cd", n, type);
			return -EINVAL;
		}
		snprintf(prefix, sizeof(prefix), "port.%u.", n);
		ret = port_open(h, n, strcmp(type, "cd") ? AHCI_HD : AHCI_CD, prefix, perr,
				sizeof(perr));
		if (ret) {
			snprintf(err, errlen, "%s", perr);
			return ret;
		}
	}
	if (!n) {
		snprintf(err, errlen,
			 "no drives: use -s %u,ahci,hd:PATH[,OPTS],cd:PATH[,OPTS]... (up to %d)",
			 h->pd->slot, AHCI_MAX_PORTS);
		return -EINVAL;
	}
	return 0;
}

static int ahci_check_options(struct ahci *h, const char *emul, char *err, size_t errlen)
{
	struct unknown_ctx u = { .multi = !strcmp(emul, "ahci") };
	char base[40];

	snprintf(base, sizeof(base), "%s.", h->pd->opts);
	u.base = base;
	config_foreach(h->vm->cfg, base, check_key, &u);
	if (u.bad[0]) {
		snprintf(err, errlen,
			 "unknown option '%s' (a drive takes ro, nocache, direct, sectorsize=, "
			 "nodelete, iothreads=, ser=, model=, rev=, nmrr=)",
			 u.bad);
		return -EINVAL;
	}
	return 0;
}

static int ahci_init_common(struct vm *vm, struct pci_dev *pd, const char *emul, char *err,
			    size_t errlen)
{
	struct ahci *h = calloc(1, sizeof(*h));
	int ret;

	if (!h) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	h->pd = pd;
	h->vm = vm;
	pthread_mutex_init(&h->lock, NULL);
	pthread_cond_init(&h->idle, NULL);
	pd->priv = h;
	ret = vm->cfg ? ahci_check_options(h, emul, err, errlen) : 0;
	if (!ret)
		ret = ports_open(h, emul, err, errlen);
	if (!ret) {
		pci_set_ids(pd, 0x8086, 0x2922, 0x01, 0x06, 0x01, 0x02);
		pci_set_cfg16(pd, PCIR_SUBVEND, 0x8086);
		pci_set_cfg16(pd, PCIR_SUBDEV, 0x2922);
		ret = pci_bar_declare(pd, AHCI_BAR, PCI_BAR_MEM32, AHCI_BAR_SIZE, false);
		if (!ret)
			ret = pci_msi_init(pd, 1);
		if (!ret)
			ret = pci_intx_init(pd, 1);
		if (ret)
			snprintf(err, errlen, "PCI setup: %s", strerror(-ret));
	}
	if (ret) {
		pd->priv = NULL;
		ahci_free(h);
		return ret;
	}
	h->ghc = GHC_AE;
	return 0;
}

static int ahci_init(struct vm *vm, struct pci_dev *pd, const char *opts, char *err, size_t errlen)
{
	return ahci_init_common(vm, pd, "ahci", err, errlen);
}

static int ahci_hd_init(struct vm *vm, struct pci_dev *pd, const char *opts, char *err,
			size_t errlen)
{
	return ahci_init_common(vm, pd, "ahci-hd", err, errlen);
}

static int ahci_cd_init(struct vm *vm, struct pci_dev *pd, const char *opts, char *err,
			size_t errlen)
{
	return ahci_init_common(vm, pd, "ahci-cd", err, errlen);
}

static void ahci_destroy(struct pci_dev *pd)
{
	struct ahci *h = pd->priv;

	if (!h)
		return;
	ahci_free(h);
	pd->priv = NULL;
}

/* ---- pause and resume ---- */

static bool port_drained(struct ahci_port *p)
{
	bool ncq;
	uint32_t saved_next = p->next;
	bool more;

	if (p->running || p->taken)
		return false;
	more = pick(p, &ncq) >= 0;
	p->next = saved_next;
	return !more;
}

/*
 * Every command the engine may still run is run, completed and interrupted (the vCPUs are
 * paused, so nothing new arrives); then the workers stop.
 */
static int ahci_pause(struct pci_dev *pd)
{
	struct ahci *h = pd->priv;

	pthread_mutex_lock(&h->lock);
	for (unsigned i = 0; i < h->nports; i++) {
		struct ahci_port *p = h->port[i];

		while (!port_drained(p)) {
			blk_kick(p->be);
			pthread_cond_wait(&h->idle, &h->lock);
		}
	}
	pthread_mutex_unlock(&h->lock);
	for (unsigned i = 0; i < h->nports; i++)
		blk_pause(h->port[i]->be);
	return 0;
}

static int ahci_resume(struct pci_dev *pd)
{
	struct ahci *h = pd->priv;

	for (unsigned i = 0; i < h->nports; i++)
		blk_resume(h->port[i]->be, true);
	return 0;
}

/* ---- snapshot ---- */

static void port_regs_io(struct sstream *s, struct ahci_port *p)
{
	ss_u32(s, &p->clb);
	ss_u32(s, &p->clbu);
	ss_u32(s, &p->fb);
	ss_u32(s, &p->fbu);
	ss_u32(s, &p->is);
	ss_u32(s, &p->ie);
	ss_u32(s, &p->cmd);
	ss_u32(s, &p->tfd);
	ss_u32(s, &p->sig);
	ss_u32(s, &p->ssts);
	ss_u32(s, &p->sctl);
	ss_u32(s, &p->serr);
	ss_u32(s, &p->sact);
	ss_u32(s, &p->ci);
	ss_u32(s, &p->sntf);
	ss_u32(s, &p->gen);
	ss_bool(s, &p->halted);
	ss_u32(s, &p->next);
	if (p->type == AHCI_HD)
		ata_state_io(s, &p->ata);
	else
		atapi_state_io(s, &p->atapi);
}

static void port_invariants(struct sstream *s, struct ahci_port *p)
{
	uint8_t type = (uint8_t)p->type, serial[20];
	uint64_t sectors = p->sectors;
	uint32_t lsize = p->lsize;

	memcpy(serial, p->serial, sizeof(serial));
	ss_u8(s, &type);
	ss_u64(s, &sectors);
	ss_u32(s, &lsize);
	ss_bytes(s, serial, sizeof(serial));
	if (!s->loading)
		return;
	if (type != p->type)
		ss_fail(s, -EINVAL, "port %u: the snapshot has a %s, this VM a %s", p->idx,
			type == AHCI_HD ? "hard disk" : "CD-ROM",
			p->type == AHCI_HD ? "hard disk" : "CD-ROM");
	else if (sectors != p->sectors || lsize != p->lsize)
		ss_fail(s, -EINVAL,
			"port %u: disk size differs: %" PRIu64 " bytes in the snapshot, %" PRIu64
			" in %s (a restore needs an image of the same size)",
			p->idx, sectors * lsize, p->sectors * p->lsize, blk_path(p->be));
	else if (memcmp(serial, p->serial, sizeof(serial)))
		ss_fail(s, -EINVAL,
			"port %u: the snapshot's drive had serial '%.20s', this one '%.20s'",
			p->idx, (const char *)serial, p->serial);
}

static int ahci_save(struct pci_dev *pd, struct sstream *s)
{
	struct ahci *h = pd->priv;
	uint32_t nports = h->nports;
	int ret = 0;

	pthread_mutex_lock(&h->lock);
	for (unsigned i = 0; i < h->nports; i++)
		if (h->port[i]->taken || h->port[i]->running)
			ret = ss_fail(s, -EBUSY, "port %u busy at save: pause the device first", i);
	if (!ret) {
		ss_u32(s, &nports);
		ss_u32(s, &h->ghc);
		for (unsigned i = 0; i < h->nports; i++) {
			port_invariants(s, h->port[i]);
			port_regs_io(s, h->port[i]);
		}
	}
	pthread_mutex_unlock(&h->lock);
	return ss_error(s);
}

/* A loaded port must be one this code could have produced. */
static void port_check(struct sstream *s, const struct ahci_port *p)
{
	if (p->clb & 0x3FF || p->fb & 0xFF)
		ss_fail(s, -EINVAL, "port %u: command list or FIS base misaligned", p->idx);
	if (p->next >= AHCI_SLOTS)
		ss_fail(s, -EINVAL, "port %u: slot %u out of range", p->idx, p->next);
	if ((p->cmd & ~(CMD_RW | CMD_FR | CMD_CR)) || (p->is & ~IS_MASK) || (p->ie & ~IS_MASK))
		ss_fail(s, -EINVAL, "port %u: reserved register bits set", p->idx);
	if (!(p->cmd & CMD_ST) && (p->ci || p->sact))
		ss_fail(s, -EINVAL, "port %u: commands issued with the engine stopped", p->idx);
	if (p->sctl & ~0xFFFU)
		ss_fail(s, -EINVAL, "port %u: reserved SCTL bits set", p->idx);
	if (p->type == AHCI_CD)
		atapi_state_check(s, &p->atapi);
	else if (p->ata.mult > 16 || (p->ata.mult & (p->ata.mult - 1)))
		ss_fail(s, -EINVAL, "port %u: multiple count %u", p->idx, p->ata.mult);
}

static int ahci_load(struct pci_dev *pd, struct sstream *s, unsigned version)
{
	struct ahci *h = pd->priv;
	struct ahci_port *stage;
	uint32_t nports = 0, ghc = 0;

	if (version != AHCI_STATE_VERSION)
		return ss_fail(s, -EINVAL, "state version %u is not supported (%u)", version,
			       AHCI_STATE_VERSION);
	ss_u32(s, &nports);
	ss_u32(s, &ghc);
	if (!ss_error(s) && nports != h->nports)
		return ss_fail(s, -EINVAL, "the snapshot's HBA has %u ports, this one %u", nports,
			       h->nports);
	if (!ss_error(s) && ghc & ~(GHC_AE | GHC_IE))
		return ss_fail(s, -EINVAL, "GHC %#x has reserved bits", ghc);
	stage = calloc(h->nports, sizeof(*stage));
	if (!stage)
		return ss_fail(s, -ENOMEM, "out of memory");
	pthread_mutex_lock(&h->lock);
	for (unsigned i = 0; i < h->nports && !ss_error(s); i++) {
		stage[i] = *h->port[i];
		port_invariants(s, &stage[i]);
		port_regs_io(s, &stage[i]);
		if (!ss_error(s))
			port_check(s, &stage[i]);
	}
	if (!ss_error(s))
		ss_finish(s);
	if (!ss_error(s)) {
		for (unsigned i = 0; i < h->nports; i++) {
			stage[i].taken = 0;
			stage[i].nonq = false;
			stage[i].running = 0;
			*h->port[i] = stage[i];
		}
		h->ghc = ghc | GHC_AE;
		/* IS is derived; the line's level is the PCI part's. */
		h->is = 0;
		for (unsigned i = 0; i < h->nports; i++)
			if (h->port[i]->is & h->port[i]->ie)
				h->is |= 1U << i;
	}
	pthread_mutex_unlock(&h->lock);
	free(stage);
	return ss_error(s);
}

#define AHCI_EMUL(sym, emul_name, initfn, port_prefix)     \
	const struct pci_emul pci_emul_##sym = {           \
		.name = emul_name,                         \
		.version = AHCI_STATE_VERSION,             \
		.options = { { port_prefix, port_keys } }, \
		.init = initfn,                            \
		.bar_io = ahci_bar_io,                     \
		.save = ahci_save,                         \
		.load = ahci_load,                         \
		.pause = ahci_pause,                       \
		.resume = ahci_resume,                     \
		.destroy = ahci_destroy,                   \
	}

/* ahci's drives take their options under port.N. (options.c), ahci-hd's and ahci-cd's one. */
AHCI_EMUL(ahci, "ahci", ahci_init, "port.#.");
AHCI_EMUL(ahci_hd, "ahci-hd", ahci_hd_init, NULL);
AHCI_EMUL(ahci_cd, "ahci-cd", ahci_cd_init, NULL);
