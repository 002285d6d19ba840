// SPDX-License-Identifier: BSD-2-Clause
/*
 * The ATAPI CD-ROM behind an AHCI port: the ATA commands a packet device takes (IDENTIFY
 * PACKET DEVICE, PACKET, DEVICE RESET, EXECUTE DEVICE DIAGNOSTIC, SET FEATURES, CHECK POWER
 * MODE, the power commands; IDENTIFY DEVICE aborts with the packet signature, as ACS says) and,
 * in PACKET, the SCSI/MMC-6 commands firmware, boot loaders and installers use: TEST UNIT
 * READY, REQUEST SENSE, INQUIRY (standard data and VPD pages 00h, 80h, 83h), MODE SENSE (6)
 * and (10) (pages 01h, 0Dh, 2Ah, 3Fh), START STOP UNIT (eject and load the tray), PREVENT
 * ALLOW MEDIUM REMOVAL, READ CAPACITY, READ (10)/(12), READ CD (user data), READ TOC/PMA/ATIP
 * (formats 0, 1 and 2), GET CONFIGURATION, GET EVENT STATUS NOTIFICATION (media class,
 * polled), READ DISC INFORMATION, MECHANISM STATUS, SEEK, VERIFY, SET CD SPEED.  Others end
 * in CHECK CONDITION, ILLEGAL REQUEST / INVALID COMMAND OPERATION CODE.
 *
 * The medium is the image, one data track of 2048-byte sectors; it is a DVD-ROM to GET
 * CONFIGURATION when larger than a CD can be.  Ejecting (START STOP UNIT with LoEj) empties
 * the tray until it is loaded again; loading reports a new medium (UNIT ATTENTION 28h and a
 * media event), as a drive whose disc was changed does.
 */
#include <errno.h>
#include <string.h>

#include "dev/storage/ahci.h"
#include "sstream.h"

#define CD_SECTOR 2048
#define CD_MAX_BYTES (900ULL << 20) /* larger than this is a DVD */

/* Sense keys and additional sense codes. */
#define SK_NOT_READY 0x02
#define SK_ILLEGAL_REQUEST 0x05
#define SK_UNIT_ATTENTION 0x06
#define ASC_INVALID_OPCODE 0x20
#define ASC_LBA_OUT_OF_RANGE 0x21
#define ASC_INVALID_FIELD 0x24
#define ASC_MEDIUM_CHANGED 0x28
#define ASC_POWER_ON 0x29
#define ASC_SAVING_UNSUPPORTED 0x39
#define ASC_NO_MEDIUM 0x3A
#define ASC_REMOVAL_PREVENTED 0x53

/* Media event codes (GET EVENT STATUS NOTIFICATION). */
#define EV_NEW_MEDIA 2
#define EV_MEDIA_REMOVAL 3

enum {
	SCSI_TEST_UNIT_READY = 0x00,
	SCSI_REQUEST_SENSE = 0x03,
	SCSI_INQUIRY = 0x12,
	SCSI_MODE_SELECT6 = 0x15,
	SCSI_MODE_SENSE6 = 0x1A,
	SCSI_START_STOP = 0x1B,
	SCSI_PREVENT_ALLOW = 0x1E,
	SCSI_READ_CAPACITY = 0x25,
	SCSI_READ10 = 0x28,
	SCSI_SEEK10 = 0x2B,
	SCSI_VERIFY10 = 0x2F,
	SCSI_SYNC_CACHE = 0x35,
	SCSI_READ_TOC = 0x43,
	SCSI_GET_CONFIGURATION = 0x46,
	SCSI_GET_EVENT_STATUS = 0x4A,
	SCSI_READ_DISC_INFO = 0x51,
	SCSI_MODE_SELECT10 = 0x55,
	SCSI_MODE_SENSE10 = 0x5A,
	SCSI_READ12 = 0xA8,
	SCSI_SET_CD_SPEED = 0xBB,
	SCSI_MECHANISM_STATUS = 0xBD,
	SCSI_READ_CD = 0xBE,
};

/* ---- helpers ---- */

static void be16(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint32_t get_be16(const uint8_t *p)
{
	return (uint32_t)p[0] << 8 | p[1];
}

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The command failed: CHECK CONDITION with this sense, which REQUEST SENSE returns. */
static void check_condition(struct ahci_cmd *c, uint8_t key, uint8_t asc, uint8_t ascq)
{
	struct atapi_state *a = &c->p->atapi;

	a->sense_key = key;
	a->asc = asc;
	a->ascq = ascq;
	c->status = ATA_S_DRDY | ATA_S_ERR;
	c->error = (uint8_t)(key << 4 | ATA_E_ABRT);
	c->r_count = 0x03; /* I/O, C/D: status phase */
}

static void good(struct ahci_cmd *c)
{
	struct atapi_state *a = &c->p->atapi;

	a->sense_key = a->asc = a->ascq = 0;
	ahci_ok(c);
	c->r_count = 0x03;
}

static void invalid_field(struct ahci_cmd *c)
{
	check_condition(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD, 0);
}

/* Data-in of @len bytes, cut to the allocation length and what the PRDT holds. */
static void reply(struct ahci_cmd *c, const void *buf, size_t len, size_t alloc)
{
	if (len > alloc)
		len = alloc;
	c->xfer = ahci_sg_to_guest(c, buf, len);
	c->pio = !(c->features & 1);
	good(c);
}

static bool has_medium(const struct ahci_port *p)
{
	return !p->atapi.tray_open;
}

static void lba_to_msf(uint8_t *p, uint32_t lba)
{
	lba += 150;
	p[0] = 0;
	p[1] = (uint8_t)(lba / (75 * 60));
	p[2] = (uint8_t)((lba / 75) % 60);
	p[3] = (uint8_t)(lba % 75);
}

static uint32_t capacity(const struct ahci_port *p)
{
	return p->sectors > 0xFFFFFFFFULL ? 0xFFFFFFFFU : (uint32_t)p->sectors;
}

/* ---- the commands ---- */

static void request_sense(struct ahci_cmd *c, const uint8_t *cdb)
{
	struct atapi_state *a = &c->p->atapi;
	uint8_t s[18] = { 0x70 };

	s[2] = a->sense_key;
	s[7] = 10;
	s[12] = a->asc;
	s[13] = a->ascq;
	if (!a->sense_key && !has_medium(c->p)) {
		s[2] = SK_NOT_READY;
		s[12] = ASC_NO_MEDIUM;
	}
	reply(c, s, sizeof(s), cdb[4]);
}

static void inquiry(struct ahci_cmd *c, const uint8_t *cdb)
{
	struct ahci_port *p = c->p;
	uint8_t d[96];
	size_t alloc = get_be16(cdb + 3);

	memset(d, 0, sizeof(d));
	if (cdb[1] & 1) {
		d[0] = 0x05;
		d[1] = cdb[2];
		switch (cdb[2]) {
		case 0x00:
			d[3] = 3;
			d[4] = 0x00;
			d[5] = 0x80;
			d[6] = 0x83;
			reply(c, d, 7, alloc);
			return;
		case 0x80:
			d[3] = 20;
			memcpy(d + 4, p->serial, 20);
			reply(c, d, 24, alloc);
			return;
		case 0x83:
			/* One T10 vendor id designator: "ATA", the model and the serial. */
			d[4] = 0x02; /* ASCII */
			d[5] = 0x01; /* T10 vendor id */
			d[7] = 68;
			memcpy(d + 8, "ATA     ", 8);
			memcpy(d + 16, p->model, 40);
			memcpy(d + 56, p->serial, 20);
			d[3] = 72;
			reply(c, d, 76, alloc);
			return;
		default:
			invalid_field(c);
			return;
		}
	}
	if (cdb[2]) {
		invalid_field(c);
		return;
	}
	d[0] = 0x05; /* CD/DVD */
	d[1] = 0x80; /* removable */
	d[2] = 0x05; /* SPC-3 */
	d[3] = 0x32; /* ACA-less, response data format 2 */
	d[4] = 31;
	memcpy(d + 8, "ATA     ", 8);
	memcpy(d + 16, p->model, 16);
	memcpy(d + 32, p->rev, 4);
	reply(c, d, 36, alloc);
}

/* One mode page at @d, or 0 when @page is not one of ours. */
static size_t mode_page(const struct ahci_port *p, uint8_t *d, unsigned page, unsigned pc)
{
	bool changeable = pc == 1;

	switch (page) {
	case 0x01: /* read error recovery */
		d[0] = 0x01;
		d[1] = 0x0A;
		d[3] = changeable ? 0 : 5; /* read retry count */
		return 12;
	case 0x0D: /* CD device parameters */
		d[0] = 0x0D;
		d[1] = 0x06;
		if (!changeable) {
			be16(d + 4, 60); /* S units per M unit */
			be16(d + 6, 75); /* F units per S unit */
		}
		return 8;
	case 0x2A: /* capabilities and mechanical status */
		d[0] = 0x2A;
		d[1] = 0x14;
		if (changeable)
			return 22;
		d[2] = 0x3B; /* reads CD-R, CD-RW, method 2, DVD-ROM, DVD-R, DVD-RAM */
		d[4] = 0x71; /* multisession, mode 2 form 1/2, audio play */
		d[5] = 0x7F;
		/* lock, lock state, (no) prevent jumper, eject, tray loading mechanism */
		d[6] = (uint8_t)(0x29 | (p->atapi.locked ? 0x02 : 0));
		be16(d + 8, 706);  /* max read speed, kB/s (4x) */
		be16(d + 10, 2);   /* volume levels */
		be16(d + 12, 512); /* buffer, KiB */
		be16(d + 14, 706); /* current read speed */
		return 22;
	default:
		return 0;
	}
}

static void mode_sense(struct ahci_cmd *c, const uint8_t *cdb, bool ten)
{
	static const unsigned pages[] = { 0x01, 0x0D, 0x2A };
	unsigned page = cdb[2] & 0x3F, pc = cdb[2] >> 6, hdr = ten ? 8 : 4;
	size_t alloc = ten ? get_be16(cdb + 7) : cdb[4], len = hdr, n;
	uint8_t d[128];

	if (pc == 3) {
		check_condition(c, SK_ILLEGAL_REQUEST, ASC_SAVING_UNSUPPORTED, 0);
		return;
	}
	memset(d, 0, sizeof(d));
	for (unsigned i = 0; i < 3; i++) {
		if (page != 0x3F && page != pages[i])
			continue;
		n = mode_page(c->p, d + len, pages[i], pc);
		len += n;
	}
	if (len == hdr) {
		invalid_field(c);
		return;
	}
	/* Medium type: 70h for no disc, else 01h (120 mm data). */
	if (ten) {
		be16(d, (uint32_t)(len - 2));
		d[2] = has_medium(c->p) ? 0x01 : 0x70;
	} else {
		d[0] = (uint8_t)(len - 1);
		d[1] = has_medium(c->p) ? 0x01 : 0x70;
	}
	reply(c, d, len, alloc);
}

static void start_stop(struct ahci_cmd *c, const uint8_t *cdb)
{
	struct atapi_state *a = &c->p->atapi;
	bool loej = cdb[4] & 2, start = cdb[4] & 1;

	if (loej && !start) {
		if (a->locked) {
			check_condition(c, SK_ILLEGAL_REQUEST, ASC_REMOVAL_PREVENTED, 2);
			return;
		}
		if (!a->tray_open)
			a->event = EV_MEDIA_REMOVAL;
		a->tray_open = true;
	} else if (loej && start) {
		if (a->tray_open) {
			a->tray_open = false;
			a->ua = true;
			a->event = EV_NEW_MEDIA;
		}
	}
	good(c);
}

static void read_capacity(struct ahci_cmd *c)
{
	uint8_t d[8];

	be32(d, capacity(c->p) ? capacity(c->p) - 1 : 0);
	be32(d + 4, CD_SECTOR);
	reply(c, d, sizeof(d), sizeof(d));
}

static void read_blocks(struct ahci_cmd *c, uint64_t lba, uint64_t count)
{
	struct ahci_port *p = c->p;

	if (lba > p->sectors || count > p->sectors - lba) {
		check_condition(c, SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE, 0);
		return;
	}
	if (count * CD_SECTOR > c->sg_len) {
		/* More data than buffers: the HBA cannot place it. */
		ahci_abort(c);
		return;
	}
	if (ahci_sg_disk(c, false, lba * CD_SECTOR, count * CD_SECTOR)) {
		check_condition(c, 0x03, 0x11, 0); /* MEDIUM ERROR, unrecovered read error */
		return;
	}
	c->pio = !(c->features & 1);
	good(c);
}

static void read_cd(struct ahci_cmd *c, const uint8_t *cdb)
{
	uint32_t count = (uint32_t)cdb[6] << 16 | get_be16(cdb + 7);

	/* Only user data of any sector type: what a data disc holds. */
	if ((cdb[9] & 0xF8) != 0x10 || (cdb[1] & 0x1C) > 0x08) {
		invalid_field(c);
		return;
	}
	read_blocks(c, get_be32(cdb + 2), count);
}

static size_t toc_entry(uint8_t *d, uint8_t track, uint32_t lba, bool msf)
{
	d[0] = 0;
	d[1] = 0x14; /* ADR 1, data track */
	d[2] = track;
	d[3] = 0;
	if (msf)
		lba_to_msf(d + 4, lba);
	else
		be32(d + 4, lba);
	return 8;
}

static size_t full_toc_entry(uint8_t *d, uint8_t point, uint8_t pm, uint8_t ps, uint8_t pf)
{
	memset(d, 0, 11);
	d[0] = 1;    /* session */
	d[1] = 0x14; /* ADR 1, data */
	d[3] = point;
	d[8] = pm;
	d[9] = ps;
	d[10] = pf;
	return 11;
}

static void read_toc(struct ahci_cmd *c, const uint8_t *cdb)
{
	bool msf = cdb[1] & 2;
	unsigned fmt = cdb[2] & 0x0F, track = cdb[6];
	size_t alloc = get_be16(cdb + 7), len = 4;
	uint32_t end = capacity(c->p);
	uint8_t d[64], m[4];

	/* SFF-8020 put the format in the control byte's top bits. */
	if (!fmt)
		fmt = cdb[9] >> 6;
	memset(d, 0, sizeof(d));
	switch (fmt) {
	case 0:
		if (track > 1 && track != 0xAA) {
			invalid_field(c);
			return;
		}
		d[2] = d[3] = 1;
		if (track <= 1)
			len += toc_entry(d + len, 1, 0, msf);
		len += toc_entry(d + len, 0xAA, end, msf);
		break;
	case 1: /* session information: one session starting at track 1 */
		d[2] = d[3] = 1;
		len += toc_entry(d + len, 1, 0, msf);
		break;
	case 2: /* full TOC: A0h first track, A1h last track, A2h lead-out, then track 1 */
		d[2] = d[3] = 1;
		len += full_toc_entry(d + len, 0xA0, 1, 0, 0);
		len += full_toc_entry(d + len, 0xA1, 1, 0, 0);
		lba_to_msf(m, end);
		len += full_toc_entry(d + len, 0xA2, m[1], m[2], m[3]);
		lba_to_msf(m, 0);
		len += full_toc_entry(d + len, 1, m[1], m[2], m[3]);
		break;
	default:
		invalid_field(c);
		return;
	}
	be16(d, (uint32_t)(len - 2));
	reply(c, d, len, alloc);
}

static uint16_t profile(const struct ahci_port *p)
{
	if (!has_medium(p))
		return 0;
	return p->sectors * CD_SECTOR > CD_MAX_BYTES ? 0x0010 : 0x0008; /* DVD-ROM : CD-ROM */
}

/* One feature descriptor at @d (current when @cur); its length. */
static size_t feature(const struct ahci_port *p, uint8_t *d, unsigned code)
{
	uint16_t prof = profile(p);

	memset(d, 0, 16);
	be16(d, code);
	switch (code) {
	case 0x0000:	     /* profile list */
		d[2] = 0x03; /* persistent, current */
		d[3] = 8;
		be16(d + 4, 0x0010);
		d[6] = prof == 0x0010;
		be16(d + 8, 0x0008);
		d[10] = prof == 0x0008;
		return 12;
	case 0x0001:	     /* core */
		d[2] = 0x07; /* version 1, persistent, current */
		d[3] = 8;
		be32(d + 4, 2); /* ATAPI */
		d[8] = 1;	/* DBE */
		return 12;
	case 0x0002: /* morphing */
		d[2] = 0x07;
		d[3] = 4;
		d[4] = 0x02; /* OCEvent: GET EVENT STATUS NOTIFICATION */
		return 8;
	case 0x0003: /* removable medium: tray, eject, lock */
		d[2] = 0x03;
		d[3] = 4;
		d[4] = (uint8_t)(0x29 | (p->atapi.locked ? 0x04 : 0));
		return 8;
	case 0x0010: /* random readable */
		d[2] = prof ? 0x01 : 0;
		d[3] = 8;
		be32(d + 4, CD_SECTOR);
		be16(d + 8, 1);
		return 12;
	case 0x001E: /* CD read */
		d[2] = 0x08 | (prof == 0x0008);
		d[3] = 4;
		return 8;
	case 0x001F: /* DVD read */
		d[2] = 0x04 | (prof == 0x0010);
		d[3] = 4;
		return 8;
	default:
		return 0;
	}
}

static void get_configuration(struct ahci_cmd *c, const uint8_t *cdb)
{
	static const unsigned codes[] = { 0x0000, 0x0001, 0x0002, 0x0003, 0x0010, 0x001E, 0x001F };
	unsigned rt = cdb[1] & 3, start = get_be16(cdb + 2);
	size_t alloc = get_be16(cdb + 7), len = 8;
	uint8_t d[128];

	if (rt == 3) {
		invalid_field(c);
		return;
	}
	memset(d, 0, sizeof(d));
	be16(d + 6, profile(c->p));
	for (unsigned i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		size_t n;

		if (codes[i] < start || (rt == 2 && codes[i] != start))
			continue;
		n = feature(c->p, d + len, codes[i]);
		if (rt == 1 && !(d[len + 2] & 1))
			continue; /* only current features */
		len += n;
	}
	be32(d, (uint32_t)(len - 4));
	reply(c, d, len, alloc);
}

static void get_event_status(struct ahci_cmd *c, const uint8_t *cdb)
{
	struct atapi_state *a = &c->p->atapi;
	size_t alloc = get_be16(cdb + 7);
	uint8_t d[8] = { 0 };

	if (!(cdb[1] & 1)) { /* only polled operation */
		invalid_field(c);
		return;
	}
	d[3] = 0x10; /* media class supported */
	if (!(cdb[4] & 0x10)) {
		d[2] = 0x80; /* NEA: no event of a requested class */
		be16(d, 2);
		reply(c, d, 4, alloc);
		return;
	}
	be16(d, 6);
	d[2] = 0x04; /* media */
	d[4] = a->event;
	d[5] = has_medium(c->p) ? 0x02 : 0x01; /* medium present : tray open */
	a->event = 0;
	reply(c, d, 8, alloc);
}

static void read_disc_info(struct ahci_cmd *c, const uint8_t *cdb)
{
	uint8_t d[34] = { 0 };

	if (cdb[1] & 7) { /* only the standard disc information */
		invalid_field(c);
		return;
	}
	be16(d, 32);
	d[2] = 0x0E; /* last session complete, disc complete */
	d[3] = 1;    /* first track */
	d[4] = 1;    /* sessions */
	d[5] = 1;    /* first track in last session */
	d[6] = 1;    /* last track in last session */
	d[7] = 0x20; /* unrestricted use */
	reply(c, d, sizeof(d), get_be16(cdb + 7));
}

static void mechanism_status(struct ahci_cmd *c, const uint8_t *cdb)
{
	uint8_t d[8] = { 0 };

	d[1] = c->p->atapi.tray_open ? 0x10 : 0;
	reply(c, d, sizeof(d), get_be16(cdb + 8));
}

/* Commands that report a pending unit attention first (SPC: all but these). */
static bool reports_ua(uint8_t op)
{
	return op != SCSI_INQUIRY && op != SCSI_REQUEST_SENSE && op != SCSI_GET_CONFIGURATION &&
	       op != SCSI_GET_EVENT_STATUS;
}

/* Commands that need a medium. */
static bool needs_medium(uint8_t op)
{
	switch (op) {
	case SCSI_TEST_UNIT_READY:
	case SCSI_READ_CAPACITY:
	case SCSI_READ10:
	case SCSI_READ12:
	case SCSI_READ_CD:
	case SCSI_READ_TOC:
	case SCSI_READ_DISC_INFO:
	case SCSI_SEEK10:
	case SCSI_VERIFY10:
		return true;
	default:
		return false;
	}
}

static void packet(struct ahci_cmd *c)
{
	struct atapi_state *a = &c->p->atapi;
	const uint8_t *cdb = c->acmd;
	uint8_t op = cdb[0];

	if (a->ua && reports_ua(op)) {
		a->ua = false;
		check_condition(c, SK_UNIT_ATTENTION, ASC_MEDIUM_CHANGED, 0);
		return;
	}
	if (needs_medium(op) && !has_medium(c->p)) {
		check_condition(c, SK_NOT_READY, ASC_NO_MEDIUM, a->tray_open ? 2 : 1);
		return;
	}
	switch (op) {
	case SCSI_TEST_UNIT_READY:
	case SCSI_SEEK10:
	case SCSI_VERIFY10:
	case SCSI_SET_CD_SPEED:
	case SCSI_SYNC_CACHE:
		good(c);
		return;
	case SCSI_MODE_SELECT6:
	case SCSI_MODE_SELECT10:
		/* Nothing is changeable: the parameters are taken and ignored. */
		good(c);
		return;
	case SCSI_REQUEST_SENSE:
		request_sense(c, cdb);
		return;
	case SCSI_INQUIRY:
		inquiry(c, cdb);
		return;
	case SCSI_MODE_SENSE6:
		mode_sense(c, cdb, false);
		return;
	case SCSI_MODE_SENSE10:
		mode_sense(c, cdb, true);
		return;
	case SCSI_START_STOP:
		start_stop(c, cdb);
		return;
	case SCSI_PREVENT_ALLOW:
		a->locked = cdb[4] & 1;
		good(c);
		return;
	case SCSI_READ_CAPACITY:
		read_capacity(c);
		return;
	case SCSI_READ10:
		read_blocks(c, get_be32(cdb + 2), get_be16(cdb + 7));
		return;
	case SCSI_READ12:
		read_blocks(c, get_be32(cdb + 2), get_be32(cdb + 6));
		return;
	case SCSI_READ_CD:
		read_cd(c, cdb);
		return;
	case SCSI_READ_TOC:
		read_toc(c, cdb);
		return;
	case SCSI_GET_CONFIGURATION:
		get_configuration(c, cdb);
		return;
	case SCSI_GET_EVENT_STATUS:
		get_event_status(c, cdb);
		return;
	case SCSI_READ_DISC_INFO:
		read_disc_info(c, cdb);
		return;
	case SCSI_MECHANISM_STATUS:
		mechanism_status(c, cdb);
		return;
	default:
		check_condition(c, SK_ILLEGAL_REQUEST, ASC_INVALID_OPCODE, 0);
		return;
	}
}

static void identify_packet(struct ahci_port *p, uint16_t *id)
{
	memset(id, 0, 512);
	id[0] = 0x8000 | 0x05 << 8 | 0x80 | 0x40; /* ATAPI, CD-ROM, removable, 50 us DRQ */
	ata_put_string(&id[10], p->serial, 20);
	ata_put_string(&id[23], p->rev, 8);
	ata_put_string(&id[27], p->model, 40);
	id[49] = 1U << 9 | 1U << 8; /* LBA, DMA */
	id[53] = 0x0006;
	id[63] = 0x0007;
	id[64] = 0x0003;
	id[65] = id[66] = id[67] = id[68] = 120;
	id[71] = 30; /* typical time from PACKET to bus release, ns */
	id[72] = 30;
	id[76] = 1U << 2 | 1U << 1; /* Gen 2, Gen 1 */
	id[80] = 0x03F0;
	id[82] = 1U << 14 | 1U << 4; /* NOP, PACKET */
	id[83] = 1U << 14;
	id[84] = 1U << 14;
	id[85] = 1U << 14 | 1U << 4;
	id[86] = 0;
	id[87] = 1U << 14;
	id[88] = 0x003F | 1U << 13; /* UDMA 5 selected */
	id[222] = 0x1000 | 0x3F;
	ata_checksum(id);
}

void atapi_reset(struct ahci_port *p, bool power_on)
{
	struct atapi_state *a = &p->atapi;

	a->sense_key = a->asc = a->ascq = 0;
	a->locked = false;
	if (power_on) {
		a->tray_open = false;
		a->event = 0;
		a->ua = false;
	}
}

void atapi_exec(struct ahci_cmd *c)
{
	uint16_t id[256];

	switch (c->command) {
	case 0xA0: /* PACKET */
		packet(c);
		return;
	case 0xA1: /* IDENTIFY PACKET DEVICE */
		identify_packet(c->p, id);
		if (c->sg_len < sizeof(id)) {
			ahci_abort(c);
			return;
		}
		c->xfer = ahci_sg_to_guest(c, id, sizeof(id));
		c->pio = true;
		ahci_ok(c);
		return;
	case 0xEC: /* IDENTIFY DEVICE: abort, with the packet signature (ACS 7.12.2) */
		ahci_abort(c);
		ata_signature(c->p, c);
		return;
	case 0x08: /* DEVICE RESET */
	case 0x90: /* EXECUTE DEVICE DIAGNOSTIC */
		atapi_reset(c->p, false);
		ata_signature(c->p, c);
		c->status = 0;
		c->error = 0x01;
		return;
	case 0xE5: /* CHECK POWER MODE */
		ahci_ok(c);
		c->r_count = 0xFF;
		return;
	case 0xEF:	    /* SET FEATURES: transfer mode and the like, accepted */
	case 0xE0 ... 0xE3: /* standby, idle */
	case 0xE7:	    /* FLUSH CACHE: nothing is written */
		ahci_ok(c);
		return;
	default:
		ahci_abort(c);
		return;
	}
}

void atapi_state_io(struct sstream *s, struct atapi_state *a)
{
	ss_u8(s, &a->sense_key);
	ss_u8(s, &a->asc);
	ss_u8(s, &a->ascq);
	ss_bool(s, &a->ua);
	ss_bool(s, &a->tray_open);
	ss_bool(s, &a->locked);
	ss_u8(s, &a->event);
}

int atapi_state_check(struct sstream *s, const struct atapi_state *a)
{
	if (a->sense_key > 0x0F ||
	    (a->event != 0 && a->event != EV_NEW_MEDIA && a->event != EV_MEDIA_REMOVAL))
		return ss_fail(s, -EINVAL, "ATAPI sense key %u or media event %u out of range",
			       a->sense_key, a->event);
	return 0;
}
