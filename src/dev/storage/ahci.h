/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * AHCI internals shared by the HBA (ahci.c), the ATA disk command set (ata.c) and the ATAPI
 * CD-ROM (atapi.c).  The HBA fetches a command from guest memory, checks it and maps its PRDT
 * (struct ahci_cmd); the device half executes it and fills in the result registers; the HBA
 * writes the FISes, updates the port registers and interrupts.
 */
#ifndef KHYVE_DEV_STORAGE_AHCI_H
#define KHYVE_DEV_STORAGE_AHCI_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "backend/block.h"

struct ahci;
struct sstream;

#define AHCI_MAX_PORTS 32
#define AHCI_SLOTS 32
#define AHCI_MAX_PRD 65535 /* PRDTL is 16 bits */

/* ATA status and error bits. */
#define ATA_S_ERR 0x01
#define ATA_S_DRQ 0x08
#define ATA_S_DSC 0x10
#define ATA_S_DF 0x20
#define ATA_S_DRDY 0x40
#define ATA_S_BSY 0x80
#define ATA_E_ABRT 0x04
#define ATA_E_IDNF 0x10
#define ATA_E_UNC 0x40

#define ATA_SECTOR 512

enum ahci_dev_type { AHCI_HD, AHCI_CD };

/* The ATAPI device's state (saved in snapshots). */
struct atapi_state {
	uint8_t sense_key, asc, ascq; /* for REQUEST SENSE */
	bool ua;		      /* unit attention pending (medium changed) */
	bool tray_open;		      /* no medium */
	bool locked;		      /* PREVENT MEDIUM REMOVAL */
	uint8_t event;		      /* media event for GET EVENT STATUS, 0 none */
};

/* The ATA device's settings (saved in snapshots). */
struct ata_state {
	bool wce;	     /* volatile write cache on (SET FEATURES 02h/82h) */
	bool smart;	     /* SMART enabled */
	uint8_t mult;	     /* SET MULTIPLE sectors per block, 0 = off */
	uint8_t xfer;	     /* SET FEATURES 03h transfer mode */
	bool ncq_err;	     /* NCQ error log (10h) holds a failed command */
	uint8_t ncq_log[20]; /* tag, status, error, lba, device, count of that command */
};

struct ahci_port {
	struct ahci *hba;
	unsigned idx;
	enum ahci_dev_type type;
	struct blk *be;
	uint64_t sectors; /* in logical sectors (hd: lsize bytes; cd: 2048 bytes) */
	uint32_t lsize;	  /* bytes per logical sector */
	char serial[20];  /* ATA strings, space padded */
	char model[40];
	char rev[8];
	uint16_t nmrr;	  /* nominal media rotation rate (IDENTIFY word 217) */
	char cfg_key[72]; /* "pci.0.4.0.port.1" */
	char id[56];	  /* disk id for the snapshot registry */

	/* Registers and engine state, under hba->lock. */
	uint32_t clb, clbu, fb, fbu, is, ie, cmd, tfd, sig, ssts, sctl, serr, sact, ci, sntf;
	uint32_t taken;	  /* slots a worker is executing */
	uint32_t gen;	  /* bumped when the engine stops: older completions are dropped */
	bool nonq;	  /* a non-queued command is executing (it runs alone) */
	bool halted;	  /* a task-file error stopped the engine until ST is cleared */
	uint32_t next;	  /* slot to look at first (round robin, like CCS) */
	unsigned running; /* serve() calls in progress (pause waits for 0) */
	struct ata_state ata;
	struct atapi_state atapi;
};

struct ahci {
	struct pci_dev *pd;
	struct vm *vm;
	pthread_mutex_t lock;
	pthread_cond_t idle; /* a port's work finished: pause re-checks */
	uint32_t ghc, is;
	unsigned nports;
	bool pausing;
	struct ahci_port *port[AHCI_MAX_PORTS];
};

/* One command being executed, with its PRDT mapped to host memory. */
struct ahci_cmd {
	struct ahci_port *p;
	struct blk_worker *w;
	unsigned slot;
	bool write, atapi; /* command header W and A bits */
	uint8_t fis[20];   /* the H2D register FIS */
	uint8_t acmd[16];  /* the ATAPI packet */
	/* The PRDT: guest buffers in order; prd_irq when an entry asked for DPS. */
	struct iovec *sg;
	unsigned nsg;
	uint64_t sg_len;
	bool prd_irq;
	struct iovec *io; /* BLK_MAX_IOV entries of scratch for disk I/O */
	/* The register FIS decoded. */
	uint8_t command, device;
	uint16_t features, count;
	uint64_t lba;
	bool ncq;
	/* Results: status, error and the registers of the completion FIS. */
	uint8_t status, error;
	uint8_t r_count;
	uint64_t r_lba;
	uint8_t r_device;
	bool pio;      /* data went by PIO: a PIO Setup FIS precedes the completion */
	uint64_t xfer; /* bytes transferred (PRDBC) */
};

/* Per-worker scratch: the mapped PRDT and the I/O vectors. */
struct ahci_scratch {
	struct iovec sg[AHCI_MAX_PRD];
	struct iovec io[BLK_MAX_IOV];
};

/* Copy device data to the guest's buffers (data-in) / from them (data-out); bytes copied. */
size_t ahci_sg_to_guest(struct ahci_cmd *c, const void *buf, size_t len);
size_t ahci_sg_from_guest(struct ahci_cmd *c, void *buf, size_t len);
/* Disk I/O of @len bytes at byte @off through the buffers: 0 or -errno. */
int ahci_sg_disk(struct ahci_cmd *c, bool write, uint64_t off, uint64_t len);

/* Command results. */
static inline void ahci_ok(struct ahci_cmd *c)
{
	c->status = ATA_S_DRDY | ATA_S_DSC;
	c->error = 0;
}

static inline void ahci_abort(struct ahci_cmd *c)
{
	c->status = ATA_S_DRDY | ATA_S_ERR;
	c->error = ATA_E_ABRT;
}

/* Space padded ATA string of @n bytes; IDENTIFY words hold byte pairs swapped. */
void ata_put_string(uint16_t *words, const char *s, size_t n);
void ata_checksum(uint16_t *id);

/* ata.c: the hard disk. */
void ata_exec(struct ahci_cmd *c);
bool ata_is_ncq(uint8_t command);
/* A queued command failed: record it in the NCQ error log (10h).  Under hba->lock. */
void ata_ncq_error(struct ahci_port *p, const struct ahci_cmd *c);
void ata_reset(struct ahci_port *p);
void ata_signature(struct ahci_port *p, struct ahci_cmd *c);
/* atapi.c: the CD-ROM (ATA commands it takes and the PACKET command). */
void atapi_exec(struct ahci_cmd *c);
void atapi_reset(struct ahci_port *p, bool power_on);
/* Snapshot of the device half; load decodes into @p's staging copy (the caller commits). */
void ata_state_io(struct sstream *s, struct ata_state *a);
void atapi_state_io(struct sstream *s, struct atapi_state *a);
int atapi_state_check(struct sstream *s, const struct atapi_state *a);

#endif
