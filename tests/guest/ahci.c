// SPDX-License-Identifier: MIT
/*
 * khyve test guest, ring 3: a polled AHCI driver, mode=ahci and mode=ahcibench.
 *
 * Every AHCI controller on bus 0 (class 01h/06h/01h) is brought up as an
 * OS would (AHCI 1.3 section 10: AE, ports stopped, command list and FIS
 * area set, FIS receive on, errors cleared, engine started); each port
 * with a device is an ATA disk (signature 101h: IDENTIFY DEVICE) or an
 * ATAPI CD-ROM (EB140101h: IDENTIFY PACKET DEVICE, then TEST UNIT READY,
 * INQUIRY, READ CAPACITY). No interrupts: PxCI and PxSACT are polled.
 *
 * mode=ahci does on every disk what mode=blk does on virtio-blk: passes of
 * 64 KiB blocks, each read and checked against the pass that last wrote
 * it, then written with this pass's pattern (the same pattern as blk:
 * the first word of each sector names pass and sector), blkdepth (default
 * 4, at most 31) blocks in flight as NCQ commands (READ/WRITE FPDMA
 * QUEUED) when the disk and the HBA can, else one READ/WRITE DMA EXT at a
 * time; a FLUSH CACHE EXT every blkflush writes, issued when no queued
 * command is outstanding (ATA does not mix the two). Each data buffer is
 * spread over four PRDT entries. On every CD, READ(10) of 32 KiB at a time
 * walks the disc for ever, each sector checked against the pattern the
 * e2e test writes into the image (cd_word below), so a CD read is in
 * flight across snapshots too. seq lines as blk; any mismatch, error
 * status or 30 s without a completion is a TESTGUEST FAIL line.
 *
 * mode=ahcibench keeps blkdepth NCQ commands of blksize bytes in flight
 * on the first disk for `seconds` and prints a BLKBENCH line as blkbench
 * does (notifies: register writes that issued commands). Completions are
 * polled in PxSACT alone, and every command that completed is issued again
 * with one PxSACT and one PxCI write, as Linux batches its queue.
 */
#include "user.h"
#include "pci.h"
#include "virtio.h"

#define AHCI_CLASS	0x01
#define AHCI_SUBCLASS	0x06
#define AHCI_PROGIF	0x01

#define HBA_CAP		0x00
#define HBA_GHC		0x04
#define HBA_PI		0x0c
#define PX(p, r)	(0x100 + 0x80 * (p) + (r))
#define P_CLB		0x00
#define P_CLBU		0x04
#define P_FB		0x08
#define P_FBU		0x0c
#define P_IS		0x10
#define P_IE		0x14
#define P_CMD		0x18
#define P_TFD		0x20
#define P_SIG		0x24
#define P_SSTS		0x28
#define P_SERR		0x30
#define P_SACT		0x34
#define P_CI		0x38

#define CMD_ST		(1u << 0)
#define CMD_FRE		(1u << 4)
#define CMD_FR		(1u << 14)
#define CMD_CR		(1u << 15)
#define IS_TFES		(1u << 30)
#define CAP_SNCQ	(1u << 30)

#define SIG_ATA		0x00000101u
#define SIG_ATAPI	0xeb140101u

#define MAX_HBAS	4
#define MAX_DISKS	8
#define SLOTS		32
#define NPRD		4
#define CT_SIZE		256	/* 128 bytes of FIS and packet, NPRD entries */
#define CHUNK		(64u << 10)
#define CD_CHUNK	(32u << 10)
#define STALL_MS	30000
#define MAX_FAILS	20

struct cmdhdr {
	u32 dw0, prdbc, ctba, ctbau, rsv[4];
};

struct port {
	u64 abar;
	u32 idx;
	bool cd, ncq;
	struct cmdhdr *cl;
	u8 *fis;
	u8 *ct;			/* SLOTS tables of CT_SIZE */
	u64 sectors;		/* disk: 512-byte sectors; CD: 2048-byte blocks */
	char model[41];
};

static struct port ports[MAX_DISKS];
static u32 nports;
static char why[128];

static u32 rd(const struct port *p, u32 reg) { return mmio_read32(p->abar + PX(p->idx, reg)); }
static void wr(const struct port *p, u32 reg, u32 v) { mmio_write32(p->abar + PX(p->idx, reg), v); }

/* ---- commands ---- */

/* Slot @s: a register FIS for @command, the buffer in NPRD pieces. */
static void build(struct port *p, u32 s, u8 command, u64 lba, u16 count, u16 features,
		  void *buf, u32 len, bool write, bool atapi)
{
	u8 *ct = p->ct + s * CT_SIZE, *f = ct;
	u32 n = len ? NPRD : 0, piece = len / NPRD, i;

	memset(ct, 0, 0x80 + 16 * NPRD);
	f[0] = 0x27;
	f[1] = 0x80;
	f[2] = command;
	f[3] = features;
	f[4] = lba;
	f[5] = lba >> 8;
	f[6] = lba >> 16;
	f[7] = 0x40;
	f[8] = lba >> 24;
	f[9] = lba >> 32;
	f[10] = lba >> 40;
	f[11] = features >> 8;
	f[12] = count;
	f[13] = count >> 8;
	/* Pieces of even length (the PRD byte count is odd); the last takes the rest. */
	if (len && (piece & 1 || piece == 0))
		n = 1;
	for (i = 0; i < n; i++) {
		u32 *prd = (u32 *)(ct + 0x80 + 16 * i);
		u64 a = (u64)buf + (u64)i * (n == 1 ? 0 : piece);
		u32 l = n == 1 ? len : (i == n - 1 ? len - piece * (n - 1) : piece);

		prd[0] = a;
		prd[1] = a >> 32;
		prd[2] = 0;
		prd[3] = l - 1;
	}
	p->cl[s].dw0 = 5 | (atapi ? 1u << 5 : 0) | (write ? 1u << 6 : 0) | n << 16;
	p->cl[s].prdbc = 0;
	p->cl[s].ctba = (u64)ct;
	p->cl[s].ctbau = (u64)ct >> 32;
	barrier();
}

static u8 *cdb_of(struct port *p, u32 s)
{
	return p->ct + s * CT_SIZE + 0x40;
}

static void issue_slot(struct port *p, u32 s, bool ncq)
{
	barrier();
	if (ncq)
		wr(p, P_SACT, 1u << s);
	wr(p, P_CI, 1u << s);
}

static const char *tfd_str(struct port *p)
{
	fmt(why, sizeof(why), "port %u tfd 0x%x is 0x%x serr 0x%x ci 0x%x sact 0x%x", p->idx,
	    rd(p, P_TFD), rd(p, P_IS), rd(p, P_SERR), rd(p, P_CI), rd(p, P_SACT));
	return why;
}

/* Run one non-queued command in slot 0 and wait; 0, or -1 on error or timeout. */
static int run_sync(struct port *p, u32 ms)
{
	struct rtime t;

	wr(p, P_IS, ~0u);
	issue_slot(p, 0, false);
	rt_start(&t);
	while (rd(p, P_CI) & 1) {
		if (rd(p, P_IS) & IS_TFES)
			return -1;
		if (rt_ms(&t) > ms)
			return -1;
		cpu_relax();
	}
	return rd(p, P_TFD) & 1 ? -1 : 0;
}

/* After an error: stop the engine (PxCI clears), clear the errors, start again. */
static void recover(struct port *p)
{
	struct rtime t;

	wr(p, P_CMD, rd(p, P_CMD) & ~CMD_ST);
	rt_start(&t);
	while ((rd(p, P_CMD) & CMD_CR) && rt_ms(&t) < 1000)
		cpu_relax();
	wr(p, P_SERR, rd(p, P_SERR));
	wr(p, P_IS, rd(p, P_IS));
	wr(p, P_CMD, rd(p, P_CMD) | CMD_ST);
}

static void id_string(char *out, const u16 *w, u32 n)
{
	u32 i;

	for (i = 0; i < n; i += 2) {
		out[i] = w[i / 2] >> 8;
		out[i + 1] = w[i / 2];
	}
	out[n] = 0;
	while (n && out[n - 1] == ' ')
		out[--n] = 0;
}

static u32 be32(const u8 *b) { return (u32)b[0] << 24 | b[1] << 16 | b[2] << 8 | b[3]; }

static int packet_sync(struct port *p, const u8 *cdb, void *buf, u32 len)
{
	build(p, 0, 0xa0, 0, 0, 1, buf, len, false, true);
	memcpy(cdb_of(p, 0), cdb, 12);
	return run_sync(p, 5000);
}

/* A CD: IDENTIFY PACKET, TEST UNIT READY until it is, INQUIRY, READ CAPACITY. */
static void cd_probe(struct port *p, u8 *buf)
{
	static const u8 tur[12], inq[12] = { 0x12, 0, 0, 0, 36 }, cap[12] = { 0x25 };
	int tries;

	build(p, 0, 0xa1, 0, 0, 0, buf, 512, false, false);
	if (run_sync(p, 5000))
		fail_final("ahci: IDENTIFY PACKET DEVICE: %s", tfd_str(p));
	if ((((u16 *)buf)[0] >> 8 & 0x1f) != 5)
		fail_final("ahci: port %u: packet device type %u, not a CD", p->idx,
			   ((u16 *)buf)[0] >> 8 & 0x1f);
	id_string(p->model, (u16 *)buf + 27, 40);
	for (tries = 0; packet_sync(p, tur, NULL, 0); tries++) {
		recover(p);
		if (tries > 3)
			fail_final("ahci: CD on port %u never ready: %s", p->idx, tfd_str(p));
	}
	if (packet_sync(p, inq, buf, 36) || (buf[0] & 0x1f) != 5 || !(buf[1] & 0x80))
		fail_final("ahci: CD INQUIRY: %s, type %u", tfd_str(p), buf[0]);
	if (packet_sync(p, cap, buf, 8) || be32(buf + 4) != 2048)
		fail_final("ahci: CD READ CAPACITY: %s", tfd_str(p));
	p->sectors = (u64)be32(buf) + 1;
}

static void disk_probe(struct port *p, u8 *buf, u32 cap)
{
	u16 *id = (u16 *)buf;

	build(p, 0, 0xec, 0, 0, 0, buf, 512, false, false);
	if (run_sync(p, 5000))
		fail_final("ahci: IDENTIFY DEVICE: %s", tfd_str(p));
	id_string(p->model, id + 27, 40);
	p->sectors = id[83] & 1u << 10 ? (u64)id[100] | (u64)id[101] << 16 |
				 (u64)id[102] << 32 | (u64)id[103] << 48
			       : (u64)id[60] | (u64)id[61] << 16;
	p->ncq = (cap & CAP_SNCQ) && (id[76] & 1u << 8);
	if (!p->sectors)
		fail_final("ahci: port %u: capacity 0", p->idx);
}

static void port_up(u64 abar, u32 idx, u32 cap)
{
	struct port *p = &ports[nports];
	struct rtime t;
	u32 sig;
	u8 *buf;

	if (nports == MAX_DISKS)
		return;
	p->abar = abar;
	p->idx = idx;
	if ((rd(p, P_SSTS) & 0xf) != 3)
		return;
	/* Stop the engine and FIS receive; wait for them to stop. */
	wr(p, P_CMD, rd(p, P_CMD) & ~(CMD_ST | CMD_FRE));
	rt_start(&t);
	while (rd(p, P_CMD) & (CMD_CR | CMD_FR))
		if (rt_ms(&t) > 500)
			fail_final("ahci: port %u does not stop", idx);
	p->cl = vio_alloc(1024, 1024);
	p->fis = vio_alloc(256, 256);
	p->ct = vio_alloc(SLOTS * CT_SIZE, 128);
	buf = vio_alloc(4096, 4096);
	if (!p->cl || !p->fis || !p->ct || !buf)
		fail_final("ahci: out of memory");
	wr(p, P_CLB, (u64)p->cl);
	wr(p, P_CLBU, (u64)p->cl >> 32);
	wr(p, P_FB, (u64)p->fis);
	wr(p, P_FBU, (u64)p->fis >> 32);
	wr(p, P_CMD, rd(p, P_CMD) | CMD_FRE);
	wr(p, P_SERR, ~0u);
	wr(p, P_IS, ~0u);
	wr(p, P_IE, 0);
	rt_start(&t);
	while (rd(p, P_TFD) & 0x88)
		if (rt_ms(&t) > 5000)
			fail_final("ahci: port %u stays busy: %s", idx, tfd_str(p));
	wr(p, P_CMD, rd(p, P_CMD) | CMD_ST);
	sig = rd(p, P_SIG);
	if (sig == SIG_ATAPI) {
		p->cd = true;
		cd_probe(p, buf);
	} else if (sig == SIG_ATA) {
		disk_probe(p, buf, cap);
	} else {
		return;
	}
	pr("ahci: port %u: %s \"%s\", %lu %s sectors%s\n", idx, p->cd ? "cd" : "disk", p->model,
	   p->sectors, p->cd ? "2048-byte" : "512-byte", p->ncq ? ", NCQ" : "");
	nports++;
}

static void ahci_setup(void)
{
	const struct pci_fn *l;
	u32 n = pci_scan(&l), i, nhba = 0, cap, pi, j;

	for (i = 0; i < n && nhba < MAX_HBAS; i++) {
		bool is64;
		u64 abar;

		if (l[i].class != AHCI_CLASS || l[i].subclass != AHCI_SUBCLASS ||
		    l[i].prog_if != AHCI_PROGIF)
			continue;
		abar = pci_bar_addr(&l[i], 5, &is64);
		if (!abar || map_mmio(abar, 0x2000))
			fail_final("ahci: %u.%u: no usable ABAR", l[i].dev, l[i].fn);
		pci_write16(&l[i], PCI_COMMAND,
			    PCI_CMD_MEM | PCI_CMD_MASTER | PCI_CMD_INTX_OFF);
		mmio_write32(abar + HBA_GHC, 1u << 31);
		cap = mmio_read32(abar + HBA_CAP);
		pi = mmio_read32(abar + HBA_PI);
		pr("ahci: %u.%u at 0x%lx, cap 0x%x, ports 0x%x\n", l[i].dev, l[i].fn, abar, cap,
		   pi);
		for (j = 0; j < 32; j++)
			if (pi & 1u << j)
				port_up(abar, j, cap);
		nhba++;
	}
	if (!nhba)
		fail_final("ahci: no AHCI controller");
}

/* ---- the data patterns ---- */

#define SECTOR_TAG	0xb1ull

/* Word @word of a disk in pass @p: mode=blk's pattern. */
static inline u64 pattern(u32 p, u64 word)
{
	u64 x;

	if (!(word % 64))
		return SECTOR_TAG << 56 | (u64)(p & 0xfffffff) << 28 | (word / 64 & 0xfffffff);
	x = (p + 1) * 0x9e3779b97f4a7c15ull ^ (word + 1) * 0xbf58476d1ce4e5b9ull;
	x ^= x >> 31;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 29;
	return x;
}

/*
 * Word @w of the CD image the e2e test makes (tests/e2e/test_ahci.py,
 * cd_image): the first word of each 2048-byte sector is CDh in the top
 * byte and the sector number, the rest a hash of the word's index.
 */
static inline u64 cd_word(u64 w)
{
	u64 x = (w + 1) * 0x9e3779b97f4a7c15ull;

	if (!(w % 256))
		return 0xcdull << 56 | w / 256;
	x ^= x >> 29;
	return x;
}

/* ---- mode=ahci ---- */

enum { S_IDLE, S_READ, S_WRITE };

struct dslot {
	u64 *buf;
	u32 block, len, state;
};

struct disk {
	struct port *p;
	struct dslot s[SLOTS];
	u32 *written;		/* per block: 1 + pass of the last completed write, 0: never */
	u32 nblocks, next_block, busy, pass, depth;
	u64 writes, flushes, since_flush;
	bool flush_due, flushing;
	struct rtime stall;
	bool stalled;
	/* CD */
	u64 *cbuf;
	u64 cnext, creads;
	bool creading;
};

static struct disk disks[MAX_DISKS];
static u64 seq, fails;

static u32 block_len(struct disk *d, u32 b)
{
	u64 cap = d->p->sectors * 512, off = (u64)b * CHUNK;

	return cap - off < CHUNK ? cap - off : CHUNK;
}

static void verify(struct disk *d, struct dslot *s)
{
	u32 last = d->written[s->block], n = s->len / 8, w, bad = 0, first = 0;
	u64 base = (u64)s->block * (CHUNK / 8);

	if (!last)
		return;
	for (w = 0; w < n; w++)
		if (s->buf[w] != pattern(last - 1, base + w) && !bad++)
			first = w;
	if (!bad || ++fails > MAX_FAILS)
		return;
	pr("TESTGUEST FAIL: ahci port %u block %u pass %u: %u of %u words differ from pass %u\n",
	   d->p->idx, s->block, d->pass, bad, n, last - 1);
	pr("ahci: block %u byte %u: want 0x%lx got 0x%lx\n", s->block, first * 8,
	   pattern(last - 1, base + first), s->buf[first]);
}

static void submit(struct disk *d, u32 i, bool write)
{
	struct dslot *s = &d->s[i];
	u64 lba = (u64)s->block * (CHUNK / 512);
	u16 count = s->len / 512;
	struct port *p = d->p;

	if (p->ncq)
		build(p, i, write ? 0x61 : 0x60, lba, i << 3, count, s->buf, s->len, write, false);
	else
		build(p, i, write ? 0x35 : 0x25, lba, count, 0, s->buf, s->len, write, false);
	s->state = write ? S_WRITE : S_READ;
	issue_slot(p, i, p->ncq);
}

static void disk_issue(struct disk *d)
{
	u32 i;

	if (d->flush_due || d->flushing)
		return;
	for (i = 0; i < d->depth && d->next_block < d->nblocks; i++) {
		if (d->s[i].state != S_IDLE)
			continue;
		/* Without NCQ one command at a time. */
		if (!d->p->ncq && d->busy)
			return;
		d->s[i].block = d->next_block++;
		d->s[i].len = block_len(d, d->s[i].block);
		submit(d, i, false);
		d->busy++;
	}
	if (d->next_block == d->nblocks && !d->busy) {
		d->pass++;
		d->next_block = 0;
	}
}

static void flush_start(struct disk *d)
{
	build(d->p, SLOTS - 1, 0xea, 0, 0, 0, NULL, 0, false, false);
	issue_slot(d->p, SLOTS - 1, false);
	d->flushing = true;
	d->flush_due = false;
}

static void slot_done(struct disk *d, u32 i)
{
	struct dslot *s = &d->s[i];

	if (s->state == S_READ) {
		u32 n = s->len / 8, w;
		u64 base = (u64)s->block * (CHUNK / 8);

		if (!d->p->ncq && d->p->cl[i].prdbc != s->len)
			pr("TESTGUEST FAIL: ahci port %u: read of %u bytes, PRDBC %u\n", d->p->idx,
			   s->len, d->p->cl[i].prdbc);
		verify(d, s);
		for (w = 0; w < n; w++)
			s->buf[w] = pattern(d->pass, base + w);
		submit(d, i, true);
		return;
	}
	d->written[s->block] = d->pass + 1;
	s->state = S_IDLE;
	d->busy--;
	d->writes++;
	if (vopt.blkflush && ++d->since_flush >= vopt.blkflush) {
		d->since_flush = 0;
		d->flush_due = true;
	}
}

static void cd_submit(struct disk *d)
{
	struct port *p = d->p;
	u32 blocks = CD_CHUNK / 2048;
	u8 *cdb = cdb_of(p, 0);

	if (d->cnext + blocks > p->sectors)
		d->cnext = 0;
	if (blocks > p->sectors)
		blocks = p->sectors;
	build(p, 0, 0xa0, 0, 0, 1, d->cbuf, blocks * 2048, false, true);
	memset(cdb, 0, 12);
	cdb[0] = 0x28;
	cdb[2] = d->cnext >> 24;
	cdb[3] = d->cnext >> 16;
	cdb[4] = d->cnext >> 8;
	cdb[5] = d->cnext;
	cdb[7] = blocks >> 8;
	cdb[8] = blocks;
	issue_slot(p, 0, false);
	d->creading = true;
}

static void cd_done(struct disk *d)
{
	u32 blocks = CD_CHUNK / 2048 < d->p->sectors ? CD_CHUNK / 2048 : d->p->sectors, w;
	u64 base = d->cnext * 256;

	for (w = 0; w < blocks * 256; w++) {
		if (d->cbuf[w] != cd_word(base + w)) {
			if (++fails <= MAX_FAILS)
				pr("TESTGUEST FAIL: ahci cd port %u sector %lu word %u: want 0x%lx "
				   "got 0x%lx\n", d->p->idx, d->cnext + w / 256, w % 256,
				   cd_word(base + w), d->cbuf[w]);
			break;
		}
	}
	d->cnext += blocks;
	d->creads++;
	d->creading = false;
}

/* Look at what completed on @d; true if anything did. */
static bool disk_poll(struct disk *d)
{
	struct port *p = d->p;
	u32 is = rd(p, P_IS), ci, sact, i;
	bool any = false;

	if (is & IS_TFES)
		fail_final("ahci: port %u: task-file error: %s", p->idx, tfd_str(p));
	if (is)
		wr(p, P_IS, is);
	ci = rd(p, P_CI);
	if (p->cd) {
		if (d->creading && !(ci & 1)) {
			cd_done(d);
			any = true;
		}
		if (!d->creading)
			cd_submit(d);
		return any;
	}
	sact = rd(p, P_SACT);
	if (d->flushing && !(ci & 1u << (SLOTS - 1))) {
		d->flushing = false;
		d->flushes++;
		any = true;
	}
	for (i = 0; i < d->depth; i++) {
		u32 bit = 1u << i;

		if (d->s[i].state == S_IDLE || (ci & bit) || (p->ncq && (sact & bit)))
			continue;
		slot_done(d, i);
		any = true;
	}
	if (d->flush_due && !d->busy && !d->flushing)
		flush_start(d);
	disk_issue(d);
	return any;
}

static void disk_init(struct disk *d, struct port *p)
{
	u32 i;

	d->p = p;
	rt_start(&d->stall);
	if (p->cd) {
		d->cbuf = vio_alloc(CD_CHUNK, 4096);
		if (!d->cbuf)
			fail_final("ahci: out of memory");
		return;
	}
	d->depth = vopt.blkdepth ? vopt.blkdepth : 4;
	if (d->depth > SLOTS - 1)
		d->depth = SLOTS - 1;
	d->nblocks = (p->sectors * 512 + CHUNK - 1) / CHUNK;
	d->written = vio_alloc(d->nblocks * sizeof(u32), 64);
	if (!d->written)
		fail_final("ahci: no memory to track %u blocks", d->nblocks);
	for (i = 0; i < d->depth; i++) {
		d->s[i].buf = vio_alloc(CHUNK, 4096);
		if (!d->s[i].buf)
			fail_final("ahci: out of memory for buffers");
	}
	pr("ahci: port %u: %lu KiB, %u blocks, depth %u%s, flush every %lu writes\n", p->idx,
	   p->sectors / 2, d->nblocks, d->depth, p->ncq ? " (NCQ)" : "", vopt.blkflush);
}

static void report(void)
{
	static u64 last;
	u64 t = rdtsc();
	u32 i;

	if (last && t - last < 10 * tsc_hz)
		return;
	last = t;
	for (i = 0; i < nports; i++) {
		struct disk *d = &disks[i];

		if (d->p->cd)
			pr("ahci: cd port %u: %lu reads\n", d->p->idx, d->creads);
		else
			pr("ahci: port %u: pass %u, %lu writes, %lu flushes\n", d->p->idx, d->pass,
			   d->writes, d->flushes);
	}
}

void ahci_run(void)
{
	u64 period = tsc_hz / opt.rate, next, t;
	u32 i, ndisks = 0;

	cur_check = "ahci";
	ahci_setup();
	for (i = 0; i < nports; i++) {
		disk_init(&disks[i], &ports[i]);
		ndisks += !ports[i].cd;
	}
	if (!ndisks)
		fail_final("ahci: no disk found");
	next = rdtsc() + period;
	for (;;) {
		for (i = 0; i < nports; i++) {
			struct disk *d = &disks[i];

			if (disk_poll(d)) {
				rt_start(&d->stall);
				if (d->stalled)
					pr("ahci: port %u: completions again\n", d->p->idx);
				d->stalled = false;
			} else if (!d->stalled && rt_ms(&d->stall) > STALL_MS) {
				pr("TESTGUEST FAIL: ahci: no completion for %u s: %s\n",
				   STALL_MS / 1000, tfd_str(d->p));
				d->stalled = true;
			}
		}
		t = rdtsc();
		if ((s64)(t - next) >= 0) {
			pr("seq %lu\n", ++seq);
			next = seq_deadline(next, t, period);
			report();
		}
		power_button_poll();
		cpu_relax();
	}
}

/* ---- mode=ahcibench ---- */

static u64 rnd_state;

static u64 xorshift(void)
{
	u64 x = rnd_state;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return rnd_state = x;
}

void ahcibench_run(void)
{
	u32 op = vopt.blkop, bs = vopt.blksize, dep, i, done;
	bool write = op == BLKOP_SEQWRITE || op == BLKOP_RANDWRITE;
	bool rnd = op == BLKOP_RANDREAD || op == BLKOP_RANDWRITE;
	u64 nreq, seq_off = 0, bytes = 0, ios = 0, t0, end, outstanding = 0, cap, notifies = 0;
	struct rtime stall;
	struct port *p = NULL;
	bool stop = false;
	u8 *bufs;

	cur_check = "ahcibench";
	ahci_setup();
	for (i = 0; i < nports && !p; i++)
		if (!ports[i].cd)
			p = &ports[i];
	if (!p)
		fail_final("ahcibench: no disk");
	cap = p->sectors * 512;
	dep = vopt.blkdepth ? vopt.blkdepth : 1;
	if (!p->ncq)
		dep = 1;
	if (dep > SLOTS)
		dep = SLOTS;
	if (!bs || bs % 512 || bs > (4u << 20) || bs > cap)
		fail_final("ahcibench: blksize %u: a multiple of 512 up to 4 MiB and the disk", bs);
	nreq = cap / bs;
	bufs = vio_alloc((u64)dep * bs, 4096);
	if (!bufs)
		fail_final("ahcibench: no memory for %u x %u bytes", dep, bs);
	for (i = 0; i < dep * bs / 8; i++)
		((u64 *)bufs)[i] = pattern(7, i);
	rnd_state = rdtsc() | 1;
	t0 = rdtsc();
	end = t0 + vopt.seconds * tsc_hz;
	rt_start(&stall);
	for (i = 0; i < dep; i++) {
		u64 off = (rnd ? xorshift() % nreq : seq_off++ % nreq) * bs;

		if (p->ncq)
			build(p, i, write ? 0x61 : 0x60, off / 512, i << 3, bs / 512,
			      bufs + (u64)i * bs, bs, write, false);
		else
			build(p, i, write ? 0x35 : 0x25, off / 512, bs / 512, 0, bufs, bs, write,
			      false);
		outstanding |= 1ull << i;
	}
	barrier();
	if (p->ncq)
		wr(p, P_SACT, (u32)outstanding);
	wr(p, P_CI, (u32)outstanding);
	while (outstanding) {
		u32 busy = p->ncq ? rd(p, P_SACT) : rd(p, P_CI), again = 0;

		done = (u32)outstanding & ~busy;
		if (!done) {
			/* Look for an error only while nothing completes: one register per poll. */
			if (rd(p, P_IS) & IS_TFES)
				fail_final("ahcibench: %s", tfd_str(p));
			cpu_relax();
			power_button_poll();
			if (rt_ms(&stall) > STALL_MS / 3)
				fail_final("ahcibench: stalled: %s", tfd_str(p));
			continue;
		}
		rt_start(&stall);
		if (!stop && (s64)(rdtsc() - end) >= 0)
			stop = true;
		for (i = 0; i < dep; i++) {
			u64 off;

			if (!(done & 1u << i))
				continue;
			bytes += bs;
			ios++;
			outstanding &= ~(1ull << i);
			if (stop)
				continue;
			off = (rnd ? xorshift() % nreq : seq_off++ % nreq) * bs;
			if (p->ncq)
				build(p, i, write ? 0x61 : 0x60, off / 512, i << 3, bs / 512,
				      bufs + (u64)i * bs, bs, write, false);
			else
				build(p, i, write ? 0x35 : 0x25, off / 512, bs / 512, 0, bufs, bs,
				      write, false);
			again |= 1u << i;
		}
		/* Every command that completed goes out again in one SACT and one CI write. */
		if (again) {
			barrier();
			if (p->ncq)
				wr(p, P_SACT, again);
			wr(p, P_CI, again);
			outstanding |= again;
			notifies += p->ncq ? 2 : 1;
		}
	}
	pr("BLKBENCH op=%s bytes=%lu ios=%lu ns=%lu bs=%u depth=%u notifies=%lu\n",
	   vio_blkop_name(op), bytes, ios, tsc_to_ns(rdtsc() - t0), bs, dep, notifies);
	pr("TESTGUEST PASS\n");
	poweroff();
}
