// SPDX-License-Identifier: BSD-2-Clause
/*
 * The ATA hard disk behind an AHCI port (ACS-3): IDENTIFY DEVICE, READ/WRITE DMA (EXT),
 * READ/WRITE SECTORS and MULTIPLE (PIO over the PRDT), READ/WRITE FPDMA QUEUED (NCQ), FLUSH
 * CACHE (EXT), DATA SET MANAGEMENT (TRIM), SET FEATURES, SET MULTIPLE MODE, READ LOG (DMA) EXT
 * (directory and the NCQ command error log), SMART (enable, status, data and thresholds as a
 * healthy disk answers them), READ VERIFY, CHECK POWER MODE, the power commands (accepted),
 * READ NATIVE MAX ADDRESS (EXT), EXECUTE DEVICE DIAGNOSTIC.  Anything else aborts.
 *
 * Every LBA and count is checked against the image; a transfer must fit the PRDT.  The
 * volatile write cache is on by default (the host page cache); with it off (SET FEATURES 82h)
 * and for FUA writes, every write is flushed before it completes.
 */
#include <endian.h>
#include <errno.h>
#include <string.h>

#include "dev/storage/ahci.h"
#include "sstream.h"

#define DSM_MAX_BLOCKS 8 /* IDENTIFY word 105: 512-byte blocks of ranges per DSM command */

enum {
	CMD_NOP = 0x00,
	CMD_DSM = 0x06,
	CMD_DEVICE_RESET = 0x08,
	CMD_READ_SECTORS = 0x20,
	CMD_READ_SECTORS_NR = 0x21,
	CMD_READ_SECTORS_EXT = 0x24,
	CMD_READ_DMA_EXT = 0x25,
	CMD_READ_NATIVE_MAX_EXT = 0x27,
	CMD_READ_MULTIPLE_EXT = 0x29,
	CMD_READ_LOG_EXT = 0x2F,
	CMD_WRITE_SECTORS = 0x30,
	CMD_WRITE_SECTORS_NR = 0x31,
	CMD_WRITE_SECTORS_EXT = 0x34,
	CMD_WRITE_DMA_EXT = 0x35,
	CMD_WRITE_MULTIPLE_EXT = 0x39,
	CMD_WRITE_DMA_FUA_EXT = 0x3D,
	CMD_VERIFY = 0x40,
	CMD_VERIFY_NR = 0x41,
	CMD_VERIFY_EXT = 0x42,
	CMD_READ_LOG_DMA_EXT = 0x47,
	CMD_READ_FPDMA = 0x60,
	CMD_WRITE_FPDMA = 0x61,
	CMD_SEEK = 0x70,
	CMD_DIAGNOSTIC = 0x90,
	CMD_INIT_PARAMS = 0x91,
	CMD_PACKET = 0xA0,
	CMD_IDENTIFY_PACKET = 0xA1,
	CMD_SMART = 0xB0,
	CMD_READ_MULTIPLE = 0xC4,
	CMD_WRITE_MULTIPLE = 0xC5,
	CMD_SET_MULTIPLE = 0xC6,
	CMD_READ_DMA = 0xC8,
	CMD_READ_DMA_NR = 0xC9,
	CMD_WRITE_DMA = 0xCA,
	CMD_WRITE_DMA_NR = 0xCB,
	CMD_WRITE_MULTIPLE_FUA_EXT = 0xCE,
	CMD_STANDBY_IMMEDIATE = 0xE0,
	CMD_IDLE_IMMEDIATE = 0xE1,
	CMD_STANDBY = 0xE2,
	CMD_IDLE = 0xE3,
	CMD_CHECK_POWER = 0xE5,
	CMD_SLEEP = 0xE6,
	CMD_FLUSH = 0xE7,
	CMD_FLUSH_EXT = 0xEA,
	CMD_IDENTIFY = 0xEC,
	CMD_SET_FEATURES = 0xEF,
	CMD_SECURITY_FREEZE = 0xF5,
	CMD_READ_NATIVE_MAX = 0xF8,
};

#define LOG_DIRECTORY 0x00
#define LOG_NCQ_ERROR 0x10

bool ata_is_ncq(uint8_t command)
{
	return command == CMD_READ_FPDMA || command == CMD_WRITE_FPDMA;
}

void ata_put_string(uint16_t *words, const char *s, size_t n)
{
	for (size_t i = 0; i + 1 < n; i += 2)
		words[i / 2] = (uint16_t)((uint8_t)s[i] << 8 | (uint8_t)s[i + 1]);
}

/* Word 255: A5h and a checksum byte that makes the 512 bytes sum to zero (ACS 7.12.7.91). */
void ata_checksum(uint16_t *id)
{
	uint8_t sum = 0xA5;

	for (unsigned i = 0; i < 255; i++)
		sum = (uint8_t)(sum + (id[i] & 0xFF) + (id[i] >> 8));
	id[255] = (uint16_t)(0xA5 | (uint8_t)-sum << 8);
}

void ata_reset(struct ahci_port *p)
{
	p->ata.wce = true;
	p->ata.smart = true;
	p->ata.mult = 16;
	p->ata.xfer = 0x45; /* UDMA 5 */
	p->ata.ncq_err = false;
}

/* The registers after reset or diagnostics say what kind of device this is (ACS 9.12). */
void ata_signature(struct ahci_port *p, struct ahci_cmd *c)
{
	c->r_count = 1;
	c->r_lba = p->type == AHCI_HD ? 1 : 0xEB1401;
	c->r_device = 0;
}

static void put_le16(uint16_t *w, uint16_t v)
{
	*w = htole16(v);
}

static void identify(struct ahci_port *p, uint16_t *id)
{
	uint64_t n = p->sectors, lba28 = n < 0x0FFFFFFF ? n : 0x0FFFFFFF;
	uint32_t ratio = blk_psize(p->be) / p->lsize;
	uint16_t cyl = (uint16_t)(n / (16 * 63) < 16383 ? n / (16 * 63) : 16383);
	unsigned log2 = 0;

	while ((1U << log2) < ratio)
		log2++;
	memset(id, 0, 512);
	id[0] = 0x0040; /* fixed, not removable */
	id[1] = cyl;
	id[3] = 16;
	id[6] = 63;
	ata_put_string(&id[10], p->serial, 20);
	ata_put_string(&id[23], p->rev, 8);
	ata_put_string(&id[27], p->model, 40);
	id[47] = 0x8000 | 16;
	id[49] = 1U << 11 | 1U << 9 | 1U << 8; /* IORDY, LBA, DMA */
	id[50] = 0x4000;
	id[53] = 0x0006; /* words 64-70 and 88 valid */
	id[54] = cyl;
	id[55] = 16;
	id[56] = 63;
	id[57] = (uint16_t)(cyl * 16 * 63);
	id[58] = (uint16_t)((cyl * 16 * 63) >> 16);
	id[59] = (uint16_t)(0x100 | p->ata.mult);
	id[60] = (uint16_t)lba28;
	id[61] = (uint16_t)(lba28 >> 16);
	id[63] = 0x0007 | ((p->ata.xfer & 0xF8) == 0x20 ? 1U << (8 + (p->ata.xfer & 7)) : 0);
	id[64] = 0x0003;
	id[65] = id[66] = id[67] = id[68] = 120;
	/* Deterministic and zero read after trim: the backend punches holes. */
	id[69] = blk_can_discard(p->be) ? (1U << 14 | 1U << 5) : 0;
	id[75] = AHCI_SLOTS - 1;
	id[76] = 1U << 8 | 1U << 2 | 1U << 1;		 /* NCQ, Gen 2, Gen 1 */
	id[80] = 0x03F0;				 /* ATA/ATAPI-4 to ACS-2 */
	id[82] = 1U << 14 | 1U << 6 | 1U << 5 | 1U << 0; /* NOP, look-ahead, write cache, SMART */
	id[83] = 1U << 14 | 1U << 13 | 1U << 12 | 1U << 10; /* FLUSH EXT, FLUSH, LBA48 */
	id[84] = 1U << 14 | 1U << 5;			    /* GPL */
	id[85] = (uint16_t)(1U << 14 | 1U << 6 | (p->ata.wce ? 1U << 5 : 0) |
			    (p->ata.smart ? 1U : 0));
	id[86] = 1U << 13 | 1U << 12 | 1U << 10;
	id[87] = 1U << 14 | 1U << 5;
	id[88] = 0x003F | ((p->ata.xfer & 0xF8) == 0x40 ? 1U << (8 + (p->ata.xfer & 7)) : 0);
	id[93] = 0;
	for (unsigned i = 0; i < 4; i++)
		id[100 + i] = (uint16_t)(n >> (16 * i));
	id[105] = blk_can_discard(p->be) ? DSM_MAX_BLOCKS : 0;
	id[106] = (uint16_t)(0x4000 | (log2 ? 1U << 13 | log2 : 0) |
			     (p->lsize > ATA_SECTOR ? 1U << 12 : 0));
	if (p->lsize > ATA_SECTOR) {
		id[117] = (uint16_t)(p->lsize / 2);
		id[118] = (uint16_t)(p->lsize / 2 >> 16);
	}
	id[169] = blk_can_discard(p->be) ? 1 : 0; /* TRIM */
	id[217] = p->nmrr;
	id[222] = 0x1000 | 0x3F; /* SATA, through 3.1 */
	for (unsigned i = 0; i < 256; i++)
		put_le16(&id[i], id[i]);
	ata_checksum(id);
	put_le16(&id[255], id[255]);
}

/* PIO data-in of a buffer the device made. */
static void data_in(struct ahci_cmd *c, const void *buf, size_t len)
{
	if (c->sg_len < len) {
		ahci_abort(c);
		return;
	}
	c->xfer = ahci_sg_to_guest(c, buf, len);
	c->pio = true;
	ahci_ok(c);
}

/* ---- reads and writes ---- */

struct rw {
	uint64_t lba, count;
	bool write, fua, pio;
};

/* 28-bit commands: LBA mode, or CHS with the geometry IDENTIFY reports. */
static uint64_t lba28(const struct ahci_cmd *c, bool *ok)
{
	uint64_t cyl, head = c->device & 0xF, sect = c->lba & 0xFF;

	*ok = true;
	if (c->device & 0x40)
		return (c->lba & 0xFFFFFF) | head << 24;
	cyl = (c->lba >> 8) & 0xFFFF;
	if (!sect || sect > 63) {
		*ok = false;
		return 0;
	}
	return (cyl * 16 + head) * 63 + sect - 1;
}

static bool decode_rw(struct ahci_cmd *c, struct rw *r)
{
	bool ok = true;

	memset(r, 0, sizeof(*r));
	switch (c->command) {
	case CMD_READ_DMA:
	case CMD_READ_DMA_NR:
	case CMD_WRITE_DMA:
	case CMD_WRITE_DMA_NR:
	case CMD_READ_SECTORS:
	case CMD_READ_SECTORS_NR:
	case CMD_WRITE_SECTORS:
	case CMD_WRITE_SECTORS_NR:
	case CMD_READ_MULTIPLE:
	case CMD_WRITE_MULTIPLE:
	case CMD_VERIFY:
	case CMD_VERIFY_NR:
		r->lba = lba28(c, &ok);
		r->count = (c->count & 0xFF) ? (c->count & 0xFF) : 256;
		break;
	case CMD_READ_FPDMA:
	case CMD_WRITE_FPDMA:
		r->lba = c->lba;
		r->count = c->features ? c->features : 65536;
		r->fua = c->device & 0x80;
		break;
	default:
		r->lba = c->lba;
		r->count = c->count ? c->count : 65536;
		break;
	}
	switch (c->command) {
	case CMD_WRITE_DMA:
	case CMD_WRITE_DMA_NR:
	case CMD_WRITE_DMA_EXT:
	case CMD_WRITE_FPDMA:
		r->write = true;
		break;
	case CMD_WRITE_DMA_FUA_EXT:
		r->write = r->fua = true;
		break;
	case CMD_WRITE_MULTIPLE_FUA_EXT:
		r->write = r->fua = r->pio = true;
		break;
	case CMD_WRITE_SECTORS:
	case CMD_WRITE_SECTORS_NR:
	case CMD_WRITE_SECTORS_EXT:
	case CMD_WRITE_MULTIPLE:
	case CMD_WRITE_MULTIPLE_EXT:
		r->write = r->pio = true;
		break;
	case CMD_READ_SECTORS:
	case CMD_READ_SECTORS_NR:
	case CMD_READ_SECTORS_EXT:
	case CMD_READ_MULTIPLE:
	case CMD_READ_MULTIPLE_EXT:
		r->pio = true;
		break;
	default:
		break;
	}
	return ok;
}

static void set_error_lba(struct ahci_cmd *c, uint64_t lba, uint8_t error)
{
	c->status = ATA_S_DRDY | ATA_S_ERR;
	c->error = error;
	c->r_lba = lba;
	c->r_device = 0x40;
}

void ata_ncq_error(struct ahci_port *p, const struct ahci_cmd *c)
{
	uint8_t *l = p->ata.ncq_log;

	memset(l, 0, sizeof(p->ata.ncq_log));
	l[0] = (uint8_t)(c->slot & 0x1F);
	l[2] = c->status;
	l[3] = c->error;
	for (unsigned i = 0; i < 3; i++) {
		l[4 + i] = (uint8_t)(c->lba >> (8 * i));
		l[8 + i] = (uint8_t)(c->lba >> (24 + 8 * i));
	}
	l[7] = c->device;
	l[12] = (uint8_t)c->count;
	l[13] = (uint8_t)(c->count >> 8);
	p->ata.ncq_err = true;
}

static void do_rw(struct ahci_cmd *c)
{
	struct ahci_port *p = c->p;
	uint64_t bytes;
	struct rw r;
	int ret;

	if (!decode_rw(c, &r) || r.lba > p->sectors || r.count > p->sectors - r.lba) {
		set_error_lba(c, r.lba, ATA_E_IDNF | ATA_E_ABRT);
		return;
	}
	if ((c->command == CMD_READ_MULTIPLE || c->command == CMD_WRITE_MULTIPLE ||
	     c->command == CMD_READ_MULTIPLE_EXT || c->command == CMD_WRITE_MULTIPLE_EXT ||
	     c->command == CMD_WRITE_MULTIPLE_FUA_EXT) &&
	    !p->ata.mult) {
		ahci_abort(c);
		return;
	}
	bytes = r.count * p->lsize;
	if (c->sg_len < bytes || (r.write && blk_ro(p->be))) {
		/* A PRDT too short for the transfer, or a write to a read-only disk. */
		ahci_abort(c);
		return;
	}
	ret = ahci_sg_disk(c, r.write, r.lba * p->lsize, bytes);
	if (!ret && r.write && (r.fua || !p->ata.wce))
		ret = blk_flush(p->be);
	if (ret) {
		set_error_lba(c, r.lba, ATA_E_UNC);
		return;
	}
	c->pio = r.pio && !r.write;
	ahci_ok(c);
}

static void do_verify(struct ahci_cmd *c)
{
	struct rw r;

	if (!decode_rw(c, &r) || r.lba > c->p->sectors || r.count > c->p->sectors - r.lba)
		set_error_lba(c, r.lba, ATA_E_IDNF | ATA_E_ABRT);
	else
		ahci_ok(c);
}

/* ---- DATA SET MANAGEMENT (TRIM) ---- */

static void do_dsm(struct ahci_cmd *c)
{
	struct ahci_port *p = c->p;
	uint64_t range[DSM_MAX_BLOCKS * ATA_SECTOR / 8];
	unsigned blocks = c->count, n;

	if (!(c->features & 1) || !blk_can_discard(p->be) || !blocks || blocks > DSM_MAX_BLOCKS ||
	    c->sg_len < (uint64_t)blocks * ATA_SECTOR) {
		ahci_abort(c);
		return;
	}
	n = blocks * ATA_SECTOR / 8;
	c->xfer = ahci_sg_from_guest(c, range, n * 8);
	/* Every range is checked before any is discarded: all or nothing. */
	for (unsigned i = 0; i < n; i++) {
		uint64_t e = le64toh(range[i]), lba = e & 0xFFFFFFFFFFFFULL, len = e >> 48;

		if (len && (lba > p->sectors || len > p->sectors - lba)) {
			set_error_lba(c, lba, ATA_E_IDNF | ATA_E_ABRT);
			return;
		}
	}
	for (unsigned i = 0; i < n; i++) {
		uint64_t e = le64toh(range[i]), lba = e & 0xFFFFFFFFFFFFULL, len = e >> 48;

		if (len && blk_discard(p->be, c->w, lba * p->lsize, len * p->lsize)) {
			set_error_lba(c, lba, ATA_E_ABRT);
			return;
		}
	}
	ahci_ok(c);
}

/* ---- logs and SMART ---- */

static void log_checksum(uint8_t *page)
{
	uint8_t sum = 0;

	for (unsigned i = 0; i < 511; i++)
		sum = (uint8_t)(sum + page[i]);
	page[511] = (uint8_t)-sum;
}

static void do_read_log(struct ahci_cmd *c)
{
	struct ahci_port *p = c->p;
	uint8_t page[ATA_SECTOR];
	unsigned log = c->lba & 0xFF, pg = (unsigned)((c->lba >> 8) & 0xFF);

	/* One page at page 0 for each log this disk has. */
	if (c->count != 1 || pg || (c->lba >> 16)) {
		ahci_abort(c);
		return;
	}
	memset(page, 0, sizeof(page));
	switch (log) {
	case LOG_DIRECTORY:
		page[0] = 1; /* GPL version 1 */
		page[2 * LOG_NCQ_ERROR] = 1;
		break;
	case LOG_NCQ_ERROR:
		if (p->ata.ncq_err)
			memcpy(page, p->ata.ncq_log, sizeof(p->ata.ncq_log));
		else
			page[0] = 0x80; /* NQ: no queued command failed */
		p->ata.ncq_err = false;
		log_checksum(page);
		break;
	default:
		ahci_abort(c);
		return;
	}
	data_in(c, page, sizeof(page));
	c->pio = c->command == CMD_READ_LOG_EXT;
}

static void smart_data(uint8_t *page, bool thresholds)
{
	memset(page, 0, ATA_SECTOR);
	page[0] = 0x10; /* revision */
	if (!thresholds) {
		page[362] = 0x82; /* off-line data collection completed */
		page[367] = 0x03; /* off-line capabilities */
		page[368] = 0x03; /* SMART capability: saves on power-down, autosave */
		page[370] = 0x01; /* error logging */
	}
	log_checksum(page);
}

static void do_smart(struct ahci_cmd *c)
{
	struct ahci_port *p = c->p;
	uint8_t page[ATA_SECTOR];
	unsigned sub = c->features & 0xFF;

	/* The key: LBA mid 4Fh, LBA high C2h. */
	if (((c->lba >> 8) & 0xFFFF) != 0xC24F || (!p->ata.smart && sub != 0xD8)) {
		ahci_abort(c);
		return;
	}
	switch (sub) {
	case 0xD8: /* enable */
		p->ata.smart = true;
		break;
	case 0xD9: /* disable */
		p->ata.smart = false;
		break;
	case 0xD2: /* attribute autosave */
	case 0xD4: /* execute off-line immediate */
		break;
	case 0xDA: /* return status: the key unchanged means no threshold exceeded */
		c->r_lba = 0xC24F00;
		break;
	case 0xD0: /* read data */
	case 0xD1: /* read thresholds */
		smart_data(page, sub == 0xD1);
		data_in(c, page, sizeof(page));
		return;
	default:
		ahci_abort(c);
		return;
	}
	ahci_ok(c);
}

/* ---- settings ---- */

static void do_set_features(struct ahci_cmd *c)
{
	struct ahci_port *p = c->p;
	uint8_t mode = (uint8_t)c->count;

	switch (c->features & 0xFF) {
	case 0x02:
		p->ata.wce = true;
		break;
	case 0x82:
		/* Writes become durable before they complete: flush what is cached now. */
		if (blk_flush(p->be)) {
			ahci_abort(c);
			return;
		}
		p->ata.wce = false;
		break;
	case 0x03:
		/* PIO default/0-4, multiword DMA 0-2, UDMA 0-6 */
		if (!(mode <= 0x01 || (mode >= 0x08 && mode <= 0x0C) ||
		      (mode >= 0x20 && mode <= 0x22) || (mode >= 0x40 && mode <= 0x46))) {
			ahci_abort(c);
			return;
		}
		p->ata.xfer = mode;
		break;
	case 0x05: /* APM */
	case 0x85:
	case 0x10: /* SATA features */
	case 0x90:
	case 0x55: /* read look-ahead */
	case 0xAA:
	case 0x66: /* power-on defaults */
	case 0xCC:
		break;
	default:
		ahci_abort(c);
		return;
	}
	ahci_ok(c);
}

static void do_set_multiple(struct ahci_cmd *c)
{
	unsigned n = c->count & 0xFF;

	if (n > 16 || (n & (n - 1))) {
		ahci_abort(c);
		return;
	}
	c->p->ata.mult = (uint8_t)n;
	ahci_ok(c);
}

static void do_native_max(struct ahci_cmd *c, bool ext)
{
	uint64_t max = c->p->sectors ? c->p->sectors - 1 : 0;

	if (!ext) {
		if (max > 0x0FFFFFFF)
			max = 0x0FFFFFFF;
		c->r_device = (uint8_t)(0x40 | ((max >> 24) & 0xF));
		max &= 0xFFFFFF;
	} else {
		c->r_device = 0x40;
	}
	c->r_lba = max;
	ahci_ok(c);
}

void ata_exec(struct ahci_cmd *c)
{
	uint16_t id[256];

	switch (c->command) {
	case CMD_IDENTIFY:
		identify(c->p, id);
		data_in(c, id, sizeof(id));
		return;
	case CMD_READ_DMA:
	case CMD_READ_DMA_NR:
	case CMD_READ_DMA_EXT:
	case CMD_WRITE_DMA:
	case CMD_WRITE_DMA_NR:
	case CMD_WRITE_DMA_EXT:
	case CMD_WRITE_DMA_FUA_EXT:
	case CMD_READ_FPDMA:
	case CMD_WRITE_FPDMA:
	case CMD_READ_SECTORS:
	case CMD_READ_SECTORS_NR:
	case CMD_READ_SECTORS_EXT:
	case CMD_WRITE_SECTORS:
	case CMD_WRITE_SECTORS_NR:
	case CMD_WRITE_SECTORS_EXT:
	case CMD_READ_MULTIPLE:
	case CMD_READ_MULTIPLE_EXT:
	case CMD_WRITE_MULTIPLE:
	case CMD_WRITE_MULTIPLE_EXT:
	case CMD_WRITE_MULTIPLE_FUA_EXT:
		do_rw(c);
		return;
	case CMD_VERIFY:
	case CMD_VERIFY_NR:
	case CMD_VERIFY_EXT:
		do_verify(c);
		return;
	case CMD_FLUSH:
	case CMD_FLUSH_EXT:
		if (blk_flush(c->p->be))
			ahci_abort(c);
		else
			ahci_ok(c);
		return;
	case CMD_DSM:
		do_dsm(c);
		return;
	case CMD_READ_LOG_EXT:
	case CMD_READ_LOG_DMA_EXT:
		do_read_log(c);
		return;
	case CMD_SMART:
		do_smart(c);
		return;
	case CMD_SET_FEATURES:
		do_set_features(c);
		return;
	case CMD_SET_MULTIPLE:
		do_set_multiple(c);
		return;
	case CMD_READ_NATIVE_MAX:
		do_native_max(c, false);
		return;
	case CMD_READ_NATIVE_MAX_EXT:
		do_native_max(c, true);
		return;
	case CMD_CHECK_POWER:
		c->r_count = 0xFF; /* active or idle */
		ahci_ok(c);
		return;
	case CMD_DIAGNOSTIC:
		ata_signature(c->p, c);
		ahci_ok(c);
		c->error = 0x01; /* device 0 passed */
		return;
	case CMD_STANDBY_IMMEDIATE:
	case CMD_IDLE_IMMEDIATE:
	case CMD_STANDBY:
	case CMD_IDLE:
	case CMD_SLEEP:
	case CMD_SEEK:
	case CMD_INIT_PARAMS:
	case CMD_SECURITY_FREEZE:
		ahci_ok(c);
		return;
	case 0x10 ... 0x1F: /* RECALIBRATE */
		ahci_ok(c);
		return;
	default:
		/* NOP, PACKET, IDENTIFY PACKET, DEVICE RESET and the rest: not a packet device. */
		ahci_abort(c);
		return;
	}
}

void ata_state_io(struct sstream *s, struct ata_state *a)
{
	ss_bool(s, &a->wce);
	ss_bool(s, &a->smart);
	ss_u8(s, &a->mult);
	ss_u8(s, &a->xfer);
	ss_bool(s, &a->ncq_err);
	ss_bytes(s, a->ncq_log, sizeof(a->ncq_log));
}
