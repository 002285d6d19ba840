// SPDX-License-Identifier: BSD-2-Clause
/*
 * AHCI driven as SeaBIOS and Linux drive it: ABAR registers, a command list and received-FIS
 * area in guest RAM, commands with PRDTs, completion by polling PxCI/PxSACT/PxIS.  The disk
 * and CD images are temporary files the test reads and writes directly to check what the
 * device did.  Commands run on the ports' worker threads, so every wait polls with a generous
 * bound (a hang fails the test; nothing asserts how long anything took).
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "dev/dev.h"
#include "dev/pci/pci.h"
#include "sstream.h"
#include "vm.h"
#include "devsnap.h"

extern const struct pci_emul pci_emul_ahci, pci_emul_ahci_hd, pci_emul_ahci_cd;

#define RAM_SIZE (32 * MiB)
#define IMG_SIZE (2 * MiB)
#define CD_SIZE (1 * MiB)
/* Guest RAM layout: per port a 1 KiB command list and a 256-byte FIS area; tables; data. */
#define CLB(p) (0x10000ULL + 0x1000ULL * (p))
#define FB(p) (0x10400ULL + 0x1000ULL * (p))
#define CT(p, s) (0x100000ULL + 0x10000ULL * (p) + 0x400ULL * (s))
#define DATA 0x800000ULL

/* Registers. */
#define GHC 0x04
#define HIS 0x08
#define PI 0x0C
#define VS 0x10
#define PX(p, r) (0x100 + 0x80 * (p) + (r))
#define P_CLB 0x00
#define P_FB 0x08
#define P_IS 0x10
#define P_IE 0x14
#define P_CMD 0x18
#define P_TFD 0x20
#define P_SIG 0x24
#define P_SSTS 0x28
#define P_SCTL 0x2C
#define P_SERR 0x30
#define P_SACT 0x34
#define P_CI 0x38
#define P_SNTF 0x3C

#define IS_DHRS 1U
#define IS_PSS 2U
#define IS_SDBS 8U
#define IS_TFES (1U << 30)

static unsigned irq_level, msi_count;

static void rec_irq(struct vm *vm, unsigned gsi, int level)
{
	__atomic_store_n(&irq_level, (unsigned)level, __ATOMIC_RELAXED);
}

static int rec_msi(struct vm *vm, uint64_t addr, uint32_t data)
{
	__atomic_add_fetch(&msi_count, 1, __ATOMIC_RELAXED);
	return 0;
}

struct fx {
	struct vm vm;
	struct config cfg;
	struct pci_dev *pd;
	uint64_t abar;
	char hd[256], cd[256];
};

static void make_image(char *path, size_t len, uint64_t size, bool pattern)
{
	const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	static uint8_t buf[65536];
	int fd;

	snprintf(path, len, "%s/khyve-test-ahci-XXXXXX", dir);
	fd = mkstemp(path);
	assert_true(fd >= 0);
	for (uint64_t off = 0; off < size; off += sizeof(buf)) {
		for (unsigned i = 0; i < sizeof(buf); i += 4) {
			uint32_t v = pattern ? (uint32_t)((off + i) / 4 * 2654435761U) : 0;

			memcpy(buf + i, &v, 4);
		}
		assert_int_equal(pwrite(fd, buf, sizeof(buf), (off_t)off), (ssize_t)sizeof(buf));
	}
	close(fd);
}

static void set(struct fx *f, const char *kv)
{
	char full[400];

	snprintf(full, sizeof(full), "pci.0.4.0.%s", kv);
	assert_int_equal(config_set_pair(&f->cfg, full), 0);
}

/* A VM with @e in slot 4 and the option lines @kv; NULL pd (and @err) when refused. */
static void fx_start_with(struct fx *f, const struct pci_emul *e, const char *const *kv, char *err,
			  size_t errlen)
{
	vm_init_bare(&f->vm, true);
	config_init(&f->cfg);
	f->vm.cfg = &f->cfg;
	f->vm.set_irq = rec_irq;
	f->vm.send_msi = rec_msi;
	assert_int_equal(vm_add_memory(&f->vm, RAM_SIZE), 0);
	for (; kv && *kv; kv++)
		set(f, *kv);
	if (pci_setup(&f->vm, err, errlen))
		fail_msg("pci_setup: %s", err);
	f->pd = pci_dev_add(&f->vm, 4, 0, e, err, errlen);
	if (f->pd)
		f->abar = pci_bar_addr(f->pd, 5);
}

/* Port 0 a disk, port 1 a CD. */
static void fx_start(struct fx *f)
{
	char kv[2][300], err[256];
	const char *keys[] = { "port.0.type=hd", kv[0], "port.1.type=cd", kv[1], NULL };

	make_image(f->hd, sizeof(f->hd), IMG_SIZE, true);
	make_image(f->cd, sizeof(f->cd), CD_SIZE, true);
	snprintf(kv[0], sizeof(kv[0]), "port.0.path=%s", f->hd);
	snprintf(kv[1], sizeof(kv[1]), "port.1.path=%s", f->cd);
	fx_start_with(f, &pci_emul_ahci, keys, err, sizeof(err));
	if (!f->pd)
		fail_msg("ahci: %s", err);
}

static void fx_stop(struct fx *f)
{
	if (f->pd)
		assert_int_equal(f->pd->dev.ops->pause(&f->pd->dev), 0);
	vm_destroy(&f->vm);
	config_free(&f->cfg);
	if (f->hd[0])
		unlink(f->hd);
	if (f->cd[0])
		unlink(f->cd);
}

static void *gpa(struct fx *f, uint64_t a, uint64_t len)
{
	void *p = vm_gpa(&f->vm, a, len);

	assert_non_null(p);
	return p;
}

static uint32_t rd(struct fx *f, unsigned reg)
{
	uint8_t b[4];

	assert_true(bus_access(&f->vm.mmio, f->abar + reg, b, 4, false));
	return (uint32_t)io_get(b, 4);
}

static void wr(struct fx *f, unsigned reg, uint32_t v)
{
	uint8_t b[4];

	io_put(b, 4, v);
	assert_true(bus_access(&f->vm.mmio, f->abar + reg, b, 4, true));
}

static void put32(struct fx *f, uint64_t a, uint32_t v)
{
	memcpy(gpa(f, a, 4), &v, 4);
}

static uint32_t get32(struct fx *f, uint64_t a)
{
	uint32_t v;

	memcpy(&v, gpa(f, a, 4), 4);
	return v;
}

/* SeaBIOS's port bring-up: addresses, FIS receive, link up, start. */
static void port_start(struct fx *f, unsigned p)
{
	memset(gpa(f, CLB(p), 0x1000), 0, 0x1000);
	wr(f, PX(p, P_CLB), (uint32_t)CLB(p));
	wr(f, PX(p, P_FB), (uint32_t)FB(p));
	wr(f, PX(p, P_CMD), rd(f, PX(p, P_CMD)) | 0x10);
	assert_int_equal(rd(f, PX(p, P_SSTS)) & 0xF, 3);
	wr(f, PX(p, P_SERR), rd(f, PX(p, P_SERR)));
	assert_int_equal(rd(f, PX(p, P_TFD)) & 0x88, 0);
	wr(f, PX(p, P_CMD), rd(f, PX(p, P_CMD)) | 0x1);
	assert_true(rd(f, PX(p, P_CMD)) & (1U << 15)); /* CR */
	wr(f, PX(p, P_IS), ~0U);
}

struct prd {
	uint64_t gpa;
	uint32_t len;
};

struct cmd {
	uint8_t fis[20];
	uint8_t acmd[16];
	bool write, atapi;
	unsigned cfl;
	const struct prd *prd;
	unsigned nprd;
	unsigned prdtl; /* PRDTL to claim, if not nprd */
	uint64_t ctba;	/* 0: CT(p, slot) */
};

static void fis_ata(struct cmd *c, uint8_t command, uint64_t lba, uint16_t count, uint16_t features)
{
	memset(c->fis, 0, sizeof(c->fis));
	c->fis[0] = 0x27;
	c->fis[1] = 0x80;
	c->fis[2] = command;
	c->fis[3] = (uint8_t)features;
	c->fis[11] = (uint8_t)(features >> 8);
	c->fis[4] = (uint8_t)lba;
	c->fis[5] = (uint8_t)(lba >> 8);
	c->fis[6] = (uint8_t)(lba >> 16);
	c->fis[7] = 0x40;
	c->fis[8] = (uint8_t)(lba >> 24);
	c->fis[9] = (uint8_t)(lba >> 32);
	c->fis[10] = (uint8_t)(lba >> 40);
	c->fis[12] = (uint8_t)count;
	c->fis[13] = (uint8_t)(count >> 8);
}

static void put_cmd(struct fx *f, unsigned p, unsigned slot, const struct cmd *c)
{
	uint64_t ct = c->ctba ? c->ctba : CT(p, slot);
	uint32_t dw0 = (c->cfl ? c->cfl : 5) | (c->atapi ? 1U << 5 : 0) | (c->write ? 1U << 6 : 0) |
		       (uint32_t)(c->prdtl ? c->prdtl : c->nprd) << 16;

	put32(f, CLB(p) + 32 * slot, dw0);
	put32(f, CLB(p) + 32 * slot + 4, 0xDEAD); /* PRDBC: the HBA must set it */
	put32(f, CLB(p) + 32 * slot + 8, (uint32_t)ct);
	put32(f, CLB(p) + 32 * slot + 12, (uint32_t)(ct >> 32));
	if (!vm_gpa(&f->vm, ct, 0x80))
		return;
	memcpy(gpa(f, ct, 20), c->fis, 20);
	memcpy(gpa(f, ct + 0x40, 16), c->acmd, 16);
	for (unsigned i = 0; i < c->nprd; i++) {
		put32(f, ct + 0x80 + 16 * i, (uint32_t)c->prd[i].gpa);
		put32(f, ct + 0x84 + 16 * i, (uint32_t)(c->prd[i].gpa >> 32));
		put32(f, ct + 0x88 + 16 * i, 0);
		put32(f, ct + 0x8C + 16 * i, c->prd[i].len - 1);
	}
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Wait until @mask of register @reg is clear or PxIS.TFES is set; returns PxIS. */
static uint32_t wait_done(struct fx *f, unsigned p, unsigned reg, uint32_t mask)
{
	uint64_t end = now_ms() + 20000;

	while (now_ms() < end) {
		uint32_t is = rd(f, PX(p, P_IS));

		if (!(rd(f, PX(p, reg)) & mask) || (is & IS_TFES))
			return is;
		usleep(100);
	}
	fail_msg("port %u: %#x of reg %#x still set after 20 s", p, mask, reg);
	return 0;
}

/* Issue one non-queued command in slot 0; returns the TFD after completion. */
static uint32_t run(struct fx *f, unsigned p, const struct cmd *c)
{
	wr(f, PX(p, P_IS), ~0U);
	put_cmd(f, p, 0, c);
	wr(f, PX(p, P_CI), 1);
	wait_done(f, p, P_CI, 1);
	return rd(f, PX(p, P_TFD));
}

/* SeaBIOS's recovery after an error: stop (CR drops), clear errors, start again. */
static void recover(struct fx *f, unsigned p)
{
	uint64_t end = now_ms() + 20000;

	wr(f, PX(p, P_CMD), rd(f, PX(p, P_CMD)) & ~1U);
	while (rd(f, PX(p, P_CMD)) & (1U << 15)) {
		assert_true(now_ms() < end);
		usleep(100);
	}
	assert_int_equal(rd(f, PX(p, P_CI)), 0);
	wr(f, PX(p, P_SERR), rd(f, PX(p, P_SERR)));
	wr(f, PX(p, P_IS), rd(f, PX(p, P_IS)));
	wr(f, PX(p, P_CMD), rd(f, PX(p, P_CMD)) | 1U);
}

static bool ok(uint32_t tfd)
{
	return (tfd & 0xFF) == 0x50 || ((tfd & 0x41) == 0x40 && !(tfd & 0x80));
}

static void read_file(const char *path, uint64_t off, void *buf, size_t len)
{
	int fd = open(path, O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, buf, len, (off_t)off), (ssize_t)len);
	close(fd);
}

/* ---- HBA ---- */

static void test_hba_registers(void **state)
{
	struct fx f = { 0 };

	fx_start(&f);
	assert_int_equal(pci_get_cfg16(f.pd, PCIR_VENDOR), 0x8086);
	assert_int_equal(pci_get_cfg8(f.pd, PCIR_CLASS), 0x01);
	assert_int_equal(pci_get_cfg8(f.pd, PCIR_SUBCLASS), 0x06);
	assert_int_equal(pci_get_cfg8(f.pd, PCIR_PROGIF), 0x01);
	assert_int_equal(rd(&f, VS), 0x00010300);
	assert_int_equal(rd(&f, 0) & 0x1F, 1);	       /* two ports */
	assert_true(rd(&f, 0) & (1U << 30));	       /* NCQ */
	assert_int_equal((rd(&f, 0) >> 8) & 0x1F, 31); /* 32 slots */
	assert_int_equal(rd(&f, PI), 3);
	assert_true(rd(&f, GHC) & (1U << 31));
	assert_int_equal(rd(&f, PX(0, P_SIG)), 0x00000101);
	assert_int_equal(rd(&f, PX(1, P_SIG)), 0xEB140101);
	assert_int_equal(rd(&f, PX(0, P_SSTS)), 0x123);
	/* A port register beyond the implemented ports reads 0, writes are ignored. */
	wr(&f, PX(5, P_CMD), 0xFFFFFFFF);
	assert_int_equal(rd(&f, PX(5, P_CMD)), 0);
	/* CLB and FB keep their alignment. */
	wr(&f, PX(0, P_CLB), 0x12345);
	assert_int_equal(rd(&f, PX(0, P_CLB)), 0x12000);
	wr(&f, PX(0, P_FB), 0x123FF);
	assert_int_equal(rd(&f, PX(0, P_FB)), 0x12300);
	/* A byte write merges into the register. */
	{
		uint8_t b = 0x10;

		assert_true(bus_access(&f.vm.mmio, f.abar + PX(0, P_CMD), &b, 1, true));
		assert_true(rd(&f, PX(0, P_CMD)) & 0x4010);
	}
	/* HBA reset: registers back to their defaults. */
	wr(&f, GHC, 1);
	assert_int_equal(rd(&f, PX(0, P_CLB)), 0);
	assert_int_equal(rd(&f, PX(0, P_CMD)) & 0x11, 0);
	assert_int_equal(rd(&f, GHC), 1U << 31);
	fx_stop(&f);
}

static void test_interrupts(void **state)
{
	struct fx f = { 0 };
	uint8_t buf[8];
	struct prd prd = { DATA, 512 };
	struct cmd c = { .prd = &prd, .nprd = 1 };

	fx_start(&f);
	port_start(&f, 0);
	fis_ata(&c, 0xEC, 0, 0, 0);
	wr(&f, PX(0, P_IE), IS_DHRS | IS_PSS | IS_TFES);
	wr(&f, GHC, (1U << 31) | 2);
	__atomic_store_n(&irq_level, 0, __ATOMIC_RELAXED);
	run(&f, 0, &c);
	assert_int_equal(irq_level, 1); /* INTx: level while IS has the port */
	assert_int_equal(rd(&f, HIS), 1);
	wr(&f, PX(0, P_IS), rd(&f, PX(0, P_IS)));
	wr(&f, HIS, 1);
	assert_int_equal(rd(&f, HIS), 0);
	assert_int_equal(irq_level, 0);
	/* MSI: enable it in config space, then one message per completion. */
	{
		unsigned cap = pci_get_cfg8(f.pd, PCIR_CAP_PTR);

		while (cap && pci_get_cfg8(f.pd, cap) != PCIY_MSI)
			cap = pci_get_cfg8(f.pd, cap + 1);
		assert_true(cap);
		io_put(buf, 2, 1);
		assert_true(bus_access(&f.vm.mmio, PCI_ECAM_BASE + (4ULL << 15) + cap + 2, buf, 2,
				       true));
	}
	msi_count = 0;
	run(&f, 0, &c);
	assert_true(__atomic_load_n(&msi_count, __ATOMIC_RELAXED) >= 1);
	fx_stop(&f);
}

/* ---- the disk ---- */

static uint16_t *identify(struct fx *f, unsigned p, uint8_t command, uint32_t *tfd)
{
	struct prd prd = { DATA, 512 };
	struct cmd c = { .prd = &prd, .nprd = 1 };

	memset(gpa(f, DATA, 512), 0xCC, 512);
	fis_ata(&c, command, 0, 0, 0);
	*tfd = run(f, p, &c);
	return gpa(f, DATA, 512);
}

static void check_id_string(const uint16_t *w, const char *want, size_t n)
{
	char s[48];

	for (size_t i = 0; i < n; i += 2) {
		s[i] = (char)(w[i / 2] >> 8);
		s[i + 1] = (char)w[i / 2];
	}
	s[n] = '\0';
	assert_string_equal(s, want);
}

static bool id_checksum_ok(const uint16_t *id)
{
	uint8_t sum = 0;

	for (unsigned i = 0; i < 256; i++)
		sum = (uint8_t)(sum + (id[i] & 0xFF) + (id[i] >> 8));
	return (id[255] & 0xFF) == 0xA5 && sum == 0;
}

static void test_identify(void **state)
{
	struct fx f = { 0 };
	uint16_t *id;
	uint32_t tfd;
	const uint8_t *psfis;

	fx_start(&f);
	port_start(&f, 0);
	/* SeaBIOS asks for IDENTIFY PACKET first: a disk aborts it. */
	identify(&f, 0, 0xA1, &tfd);
	assert_int_equal(tfd & 0xFF, 0x41);
	assert_int_equal((tfd >> 8) & 0xFF, 0x04);
	assert_true(rd(&f, PX(0, P_IS)) & IS_TFES);
	assert_true(rd(&f, PX(0, P_CI)) & 1); /* the failed slot stays until ST is cleared */
	recover(&f, 0);
	id = identify(&f, 0, 0xEC, &tfd);
	assert_int_equal(tfd & 0xFF, 0x50);
	assert_true(rd(&f, PX(0, P_IS)) & IS_PSS);
	psfis = gpa(&f, FB(0) + 0x20, 20);
	assert_int_equal(psfis[0], 0x5F);
	assert_int_equal(psfis[2], 0x50);
	assert_int_equal(get32(&f, CLB(0) + 4), 512); /* PRDBC */
	assert_int_equal(id[0], 0x0040);
	check_id_string(&id[27], "KHYVE HARDDISK                          ", 40);
	check_id_string(&id[10], "KHYVE040000         ", 20);
	assert_int_equal(id[100] | (uint32_t)id[101] << 16, IMG_SIZE / 512);
	assert_int_equal(id[60] | (uint32_t)id[61] << 16, IMG_SIZE / 512);
	assert_true(id[83] & (1U << 10)); /* LBA48 */
	assert_true(id[76] & (1U << 8));  /* NCQ */
	assert_int_equal(id[75], 31);
	assert_int_equal(id[169] & 1, 1); /* TRIM */
	assert_int_equal(id[217], 1);	  /* solid state by default */
	assert_true(id_checksum_ok(id));
	fx_stop(&f);
}

/*
 * A disk past 28-bit LBA (a sparse 200 GiB image): IDENTIFY caps the CHS cylinders at 16383
 * and the 28-bit capacity at 0x0FFFFFFF and gives the whole count in words 100-103; READ
 * NATIVE MAX answers 0x0FFFFFFF, READ NATIVE MAX EXT the last LBA.
 */
static void test_big_disk(void **state)
{
	const uint64_t sectors = 200ULL << 21;
	const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	struct cmd c = { 0 };
	struct fx f = { 0 };
	char kv[300], err[256];
	const uint8_t *rfis;
	uint16_t *id;
	uint32_t tfd;
	int fd;

	snprintf(f.hd, sizeof(f.hd), "%s/khyve-test-ahci-XXXXXX", dir);
	fd = mkstemp(f.hd);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)(sectors * 512)), 0);
	close(fd);
	snprintf(kv, sizeof(kv), "path=%s", f.hd);
	fx_start_with(&f, &pci_emul_ahci_hd, (const char *[]){ kv, NULL }, err, sizeof(err));
	if (!f.pd)
		fail_msg("ahci-hd: %s", err);
	port_start(&f, 0);
	id = identify(&f, 0, 0xEC, &tfd);
	assert_true(ok(tfd));
	assert_int_equal(id[1], 16383);
	assert_int_equal(id[60] | (uint32_t)id[61] << 16, 0x0FFFFFFF);
	assert_int_equal(id[100] | (uint64_t)id[101] << 16 | (uint64_t)id[102] << 32 |
				 (uint64_t)id[103] << 48,
			 sectors);
	rfis = gpa(&f, FB(0) + 0x40, 20);
	fis_ata(&c, 0xF8, 0, 0, 0);
	assert_true(ok(run(&f, 0, &c)));
	assert_int_equal(rfis[4] | rfis[5] << 8 | rfis[6] << 16 | (uint32_t)(rfis[7] & 0xF) << 24,
			 0x0FFFFFFF);
	fis_ata(&c, 0x27, 0, 0, 0);
	assert_true(ok(run(&f, 0, &c)));
	assert_int_equal(rfis[4] | rfis[5] << 8 | rfis[6] << 16 | (uint64_t)rfis[8] << 24 |
				 (uint64_t)rfis[9] << 32 | (uint64_t)rfis[10] << 40,
			 sectors - 1);
	fx_stop(&f);
}

static void test_options(void **state)
{
	struct fx f = { 0 };
	char img[256], kv[300], err[256];
	uint16_t *id;
	uint32_t tfd;

	make_image(img, sizeof(img), 1 * MiB, false);
	snprintf(kv, sizeof(kv), "path=%s", img);
	fx_start_with(&f, &pci_emul_ahci_hd,
		      (const char *[]){ kv, "ser=SN-42", "model=Disk Model X", "rev=R9",
					"nmrr=7200", "sectorsize=512/4096", NULL },
		      err, sizeof(err));
	assert_non_null(f.pd);
	port_start(&f, 0);
	id = identify(&f, 0, 0xEC, &tfd);
	assert_int_equal(tfd & 0xFF, 0x50);
	check_id_string(&id[10], "SN-42               ", 20);
	check_id_string(&id[27], "Disk Model X                            ", 40);
	check_id_string(&id[23], "R9      ", 8);
	assert_int_equal(id[217], 7200);
	assert_int_equal(id[106], 0x6003); /* 8 logical sectors per physical */
	fx_stop(&f);
	/* ro: reads work, writes and TRIM abort, IDENTIFY offers no TRIM */
	memset(&f, 0, sizeof(f));
	fx_start_with(&f, &pci_emul_ahci_hd, (const char *[]){ kv, "ro=true", NULL }, err,
		      sizeof(err));
	assert_non_null(f.pd);
	port_start(&f, 0);
	id = identify(&f, 0, 0xEC, &tfd);
	assert_int_equal(id[169], 0);
	{
		struct prd prd = { 0x800000, 4096 };
		struct cmd c = { .prd = &prd, .nprd = 1 };

		fis_ata(&c, 0x25, 0, 8, 0);
		assert_true(ok(run(&f, 0, &c)));
		c.write = true;
		fis_ata(&c, 0x35, 0, 8, 0);
		assert_false(ok(run(&f, 0, &c)));
		recover(&f, 0);
		fis_ata(&c, 0x06, 0, 1, 1);
		assert_false(ok(run(&f, 0, &c)));
	}
	fx_stop(&f);
	unlink(img);
}

static void refused(const struct pci_emul *e, const char *const *kv, const char *needle)
{
	struct fx f = { 0 };
	char err[400] = "";

	fx_start_with(&f, e, kv, err, sizeof(err));
	if (f.pd)
		fail_msg("accepted, wanted an error about '%s'", needle);
	if (!strstr(err, needle))
		fail_msg("error '%s' does not mention '%s'", err, needle);
	vm_destroy(&f.vm);
	config_free(&f.cfg);
}

static void test_refusals(void **state)
{
	char img[256], kv[300], kv1[300];

	make_image(img, sizeof(img), 1 * MiB, false);
	snprintf(kv, sizeof(kv), "path=%s", img);
	snprintf(kv1, sizeof(kv1), "port.0.path=%s", img);
	refused(&pci_emul_ahci, NULL, "no drives");
	refused(&pci_emul_ahci_hd, NULL, "missing disk image");
	refused(&pci_emul_ahci, (const char *[]){ "port.0.type=tape", kv1, NULL }, "type=tape");
	refused(&pci_emul_ahci_hd, (const char *[]){ kv, "nmr=1", NULL }, "nmr");
	refused(&pci_emul_ahci, (const char *[]){ "port.0.type=hd", kv1, "port.0.bogus=1", NULL },
		"port.0.bogus");
	refused(&pci_emul_ahci, (const char *[]){ "port.0.type=hd", kv1, "speed=1", NULL },
		"speed");
	refused(&pci_emul_ahci_hd, (const char *[]){ kv, "nmrr=500", NULL }, "nmrr=500");
	refused(&pci_emul_ahci_hd, (const char *[]){ kv, "nmrr=x", NULL }, "nmrr=x");
	refused(&pci_emul_ahci_hd,
		(const char *[]){ kv, "model=0123456789012345678901234567890123456789X", NULL },
		"at most 40");
	refused(&pci_emul_ahci_hd, (const char *[]){ kv, "rev=123456789", NULL }, "at most 8");
	refused(&pci_emul_ahci_hd, (const char *[]){ kv, "rev=a\tb", NULL }, "printable");
	refused(&pci_emul_ahci_hd, (const char *[]){ kv, "ser=012345678901234567890", NULL },
		"at most 20");
	refused(&pci_emul_ahci_cd, (const char *[]){ kv, "ro=off", NULL }, "read-only");
	refused(&pci_emul_ahci_cd, (const char *[]){ kv, "ro=perhaps", NULL }, "ro=perhaps");
	refused(&pci_emul_ahci_hd, (const char *[]){ kv, "sectorsize=3", NULL }, "sectorsize");
	unlink(img);
}

static void test_read_write(void **state)
{
	struct fx f = { 0 };
	struct prd prd[3] = { { DATA, 1024 }, { DATA + 0x10000, 512 }, { DATA + 0x20000, 2560 } };
	struct cmd c = { .prd = prd, .nprd = 3 };
	uint8_t file[4096], *mem;
	uint32_t tfd;

	fx_start(&f);
	port_start(&f, 0);
	/* READ DMA EXT of 8 sectors at LBA 100 into three buffers. */
	fis_ata(&c, 0x25, 100, 8, 0);
	tfd = run(&f, 0, &c);
	assert_true(ok(tfd));
	assert_int_equal(get32(&f, CLB(0) + 4), 4096);
	assert_true(rd(&f, PX(0, P_IS)) & IS_DHRS);
	read_file(f.hd, 100 * 512, file, sizeof(file));
	assert_memory_equal(gpa(&f, DATA, 1024), file, 1024);
	assert_memory_equal(gpa(&f, DATA + 0x10000, 512), file + 1024, 512);
	assert_memory_equal(gpa(&f, DATA + 0x20000, 2560), file + 1536, 2560);
	/* WRITE DMA (28-bit) of 2 sectors at LBA 7. */
	mem = gpa(&f, DATA, 1024);
	for (unsigned i = 0; i < 1024; i++)
		mem[i] = (uint8_t)(i ^ 0x5A);
	prd[0].len = 1024;
	c.nprd = 1;
	c.write = true;
	fis_ata(&c, 0xCA, 7, 2, 0);
	tfd = run(&f, 0, &c);
	assert_true(ok(tfd));
	read_file(f.hd, 7 * 512, file, 1024);
	assert_memory_equal(file, mem, 1024);
	/* READ SECTORS (PIO) reads it back, with a PIO Setup FIS. */
	memset(mem, 0, 1024);
	c.write = false;
	fis_ata(&c, 0x20, 7, 2, 0);
	tfd = run(&f, 0, &c);
	assert_true(ok(tfd));
	assert_true(rd(&f, PX(0, P_IS)) & IS_PSS);
	assert_memory_equal(file, mem, 1024);
	/* WRITE SECTORS EXT (PIO), then FLUSH CACHE EXT. */
	c.write = true;
	memset(mem, 0x77, 512);
	fis_ata(&c, 0x34, 9, 1, 0);
	assert_true(ok(run(&f, 0, &c)));
	read_file(f.hd, 9 * 512, file, 512);
	assert_memory_equal(file, mem, 512);
	c.nprd = 0;
	fis_ata(&c, 0xEA, 0, 0, 0);
	assert_true(ok(run(&f, 0, &c)));
	/* CHS addressing (device bit 6 clear): cylinder 0, head 0, sector 10 is LBA 9. */
	c.write = false;
	c.nprd = 1;
	memset(mem, 0, 512);
	fis_ata(&c, 0xC8, 10, 1, 0);
	c.fis[7] = 0;
	assert_true(ok(run(&f, 0, &c)));
	assert_int_equal(mem[0], 0x77);
	/* READ VERIFY in range is fine. */
	c.nprd = 0;
	fis_ata(&c, 0x42, 10, 10, 0);
	assert_true(ok(run(&f, 0, &c)));
	fx_stop(&f);
}

/*
 * A PRDT longer than one backend call takes (BLK_MAX_IOV buffers) whose first 1024 entries do
 * not end on a sector: the transfer is split at a sector boundary inside the PRDT, and every
 * byte still lands where its entry says.  Entry lengths [512 x 1023, 2, 510]: the cut drops
 * the 2-byte entry from the first call; [4, 512 x 1023, 508]: it shortens entry 1023 and the
 * next call starts inside it.
 */
static void test_prdt_split(void **state)
{
	enum { N = 1025, LEN = 1024 * 512 };
	static struct prd prd[N];
	struct cmd c = { .prd = prd, .nprd = N };
	static uint8_t file[LEN];
	uint8_t *mem;
	struct fx f = { 0 };
	uint64_t at = 0;

	fx_start(&f);
	port_start(&f, 0);
	/* A read of 1024 sectors at LBA 0; the 2-byte entry far from the others. */
	for (unsigned i = 0; i < 1023; i++)
		prd[i] = (struct prd){ DATA + 512 * i, 512 };
	prd[1023] = (struct prd){ DATA + 0x100000, 2 };
	prd[1024] = (struct prd){ DATA + 1023 * 512, 510 };
	memset(gpa(&f, DATA, 0x100002), 0, 0x100002);
	fis_ata(&c, 0x25, 0, 1024, 0);
	assert_true(ok(run(&f, 0, &c)));
	assert_int_equal(get32(&f, CLB(0) + 4), LEN);
	read_file(f.hd, 0, file, LEN);
	assert_memory_equal(gpa(&f, DATA, 1023 * 512), file, 1023 * 512);
	assert_memory_equal(gpa(&f, DATA + 0x100000, 2), file + 1023 * 512, 2);
	assert_memory_equal(gpa(&f, DATA + 1023 * 512, 510), file + 1023 * 512 + 2, 510);
	/* A write of 1024 sectors at LBA 1024 from [4, 512 x 1023, 508], buffers in order. */
	mem = gpa(&f, DATA, LEN);
	for (unsigned i = 0; i < LEN; i++)
		mem[i] = (uint8_t)(i * 13 + i / 512);
	for (unsigned i = 0; i < N; i++) {
		uint32_t len = i == 0 ? 4 : i == N - 1 ? 508 : 512;

		prd[i] = (struct prd){ DATA + at, len };
		at += len;
	}
	assert_int_equal(at, LEN);
	c.write = true;
	fis_ata(&c, 0x35, 1024, 1024, 0);
	assert_true(ok(run(&f, 0, &c)));
	assert_int_equal(get32(&f, CLB(0) + 4), LEN);
	read_file(f.hd, 1024 * 512, file, LEN);
	assert_memory_equal(file, mem, LEN);
	fx_stop(&f);
}

/* Every malformed command fails that command with a task-file error; the port recovers. */
static void test_malformed(void **state)
{
	struct fx f = { 0 };
	struct prd prd = { DATA, 4096 };
	struct cmd good = { .prd = &prd, .nprd = 1 };
	struct cmd c;
	uint32_t tfd;

	fx_start(&f);
	port_start(&f, 0);
	fis_ata(&good, 0x25, 0, 8, 0);
	struct {
		const char *what;
		void (*mk)(struct cmd *c);
	} cases[] = {
		{ "LBA past the end", NULL },
		{ "count past the end", NULL },
		{ "PRDT too short", NULL },
		{ "PRD outside RAM", NULL },
		{ "odd byte count", NULL },
		{ "odd address", NULL },
		{ "table outside RAM", NULL },
		{ "CFL too small", NULL },
		{ "CFL too large", NULL },
		{ "not a register FIS", NULL },
		{ "control FIS", NULL },
		{ "unknown command", NULL },
		{ "NOP", NULL },
		{ "PACKET on a disk", NULL },
		{ "PRDT outside RAM", NULL },
		{ "LBA48 past 2^48", NULL },
	};
	struct prd bad = { 0 };

	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		c = good;
		switch (i) {
		case 0:
			fis_ata(&c, 0x25, IMG_SIZE / 512, 1, 0);
			break;
		case 1:
			fis_ata(&c, 0x25, IMG_SIZE / 512 - 4, 8, 0);
			break;
		case 2:
			prd.len = 2048;
			break;
		case 3:
			bad = (struct prd){ RAM_SIZE - 512, 4096 };
			c.prd = &bad;
			break;
		case 4:
			bad = (struct prd){ DATA, 4095 };
			c.prd = &bad;
			break;
		case 5:
			bad = (struct prd){ DATA + 1, 4096 };
			c.prd = &bad;
			break;
		case 6:
			c.ctba = 0xFFFF0000ULL;
			break;
		case 7:
			c.cfl = 4;
			break;
		case 8:
			c.cfl = 17;
			break;
		case 9:
			c.fis[0] = 0x34;
			break;
		case 10:
			c.fis[1] = 0;
			break;
		case 11:
			fis_ata(&c, 0xFE, 0, 0, 0);
			break;
		case 12:
			fis_ata(&c, 0x00, 0, 0, 0);
			break;
		case 13:
			fis_ata(&c, 0xA0, 0, 0, 0);
			break;
		case 14:
			c.prdtl = 0xFFFF;
			c.ctba = RAM_SIZE - 0x1000;
			break;
		case 15:
			fis_ata(&c, 0x25, 0xFFFFFFFFFFFFULL, 0xFFFF, 0);
			break;
		}
		tfd = run(&f, 0, &c);
		if (!(tfd & 1) || !(rd(&f, PX(0, P_IS)) & IS_TFES))
			fail_msg("%s: tfd %#x is %#x, want a task-file error", cases[i].what, tfd,
				 rd(&f, PX(0, P_IS)));
		prd.len = 4096;
		recover(&f, 0);
		tfd = run(&f, 0, &good);
		if (!ok(tfd))
			fail_msg("after %s: a good command got tfd %#x", cases[i].what, tfd);
	}
	fx_stop(&f);
}

/* NCQ: 32 commands in flight, completion through SACT and Set Device Bits FISes. */
static void test_ncq(void **state)
{
	struct fx f = { 0 };
	struct prd prd[32];
	struct cmd c[32];
	uint8_t file[4096];
	uint32_t all = 0xFFFFFFFFU;

	fx_start(&f);
	port_start(&f, 0);
	for (unsigned s = 0; s < 32; s++) {
		uint8_t *m = gpa(&f, DATA + 4096ULL * s, 4096);

		memset(m, (int)(s + 1), 4096);
		prd[s] = (struct prd){ DATA + 4096ULL * s, 4096 };
		c[s] = (struct cmd){ .prd = &prd[s], .nprd = 1, .write = true };
		/* WRITE FPDMA QUEUED: count in features, tag in count[7:3]. */
		fis_ata(&c[s], 0x61, 16ULL * s, (uint16_t)(s << 3), 8);
		put_cmd(&f, 0, s, &c[s]);
	}
	wr(&f, PX(0, P_SACT), all);
	wr(&f, PX(0, P_CI), all);
	wait_done(&f, 0, P_SACT, all);
	assert_false(rd(&f, PX(0, P_IS)) & IS_TFES);
	assert_true(rd(&f, PX(0, P_IS)) & IS_SDBS);
	assert_int_equal(rd(&f, PX(0, P_CI)), 0);
	for (unsigned s = 0; s < 32; s++) {
		read_file(f.hd, 16ULL * s * 512, file, 4096);
		for (unsigned i = 0; i < 4096; i++)
			if (file[i] != s + 1)
				fail_msg("tag %u byte %u: %u", s, i, file[i]);
	}
	/* READ FPDMA QUEUED back into cleared buffers. */
	memset(gpa(&f, DATA, 32 * 4096), 0, 32 * 4096);
	for (unsigned s = 0; s < 32; s++) {
		c[s].write = false;
		fis_ata(&c[s], 0x60, 16ULL * s, (uint16_t)(s << 3), 8);
		put_cmd(&f, 0, s, &c[s]);
	}
	wr(&f, PX(0, P_SACT), all);
	wr(&f, PX(0, P_CI), all);
	wait_done(&f, 0, P_SACT, all);
	for (unsigned s = 0; s < 32; s++)
		assert_int_equal(((uint8_t *)gpa(&f, DATA + 4096ULL * s, 4096))[4095], s + 1);
	/* A failing NCQ command: TFES, the NCQ error log names its tag. */
	fis_ata(&c[5], 0x60, IMG_SIZE / 512, 5 << 3, 8);
	put_cmd(&f, 0, 5, &c[5]);
	wr(&f, PX(0, P_SACT), 1U << 5);
	wr(&f, PX(0, P_CI), 1U << 5);
	assert_true(wait_done(&f, 0, P_SACT, 1U << 5) & IS_TFES);
	recover(&f, 0);
	{
		struct prd lp = { DATA, 512 };
		struct cmd l = { .prd = &lp, .nprd = 1 };
		uint8_t *log = gpa(&f, DATA, 512), sum = 0;

		fis_ata(&l, 0x2F, 0x10, 1, 0);
		assert_true(ok(run(&f, 0, &l)));
		assert_int_equal(log[0], 5);
		assert_true(log[2] & 1);
		for (unsigned i = 0; i < 512; i++)
			sum = (uint8_t)(sum + log[i]);
		assert_int_equal(sum, 0);
		assert_true(ok(run(&f, 0, &l)));
		assert_int_equal(log[0], 0x80); /* read once: cleared */
		/* the directory lists the NCQ error log */
		fis_ata(&l, 0x47, 0x00, 1, 0);
		assert_true(ok(run(&f, 0, &l)));
		assert_int_equal(log[0], 1);
		assert_int_equal(log[0x20], 1);
		fis_ata(&l, 0x2F, 0x30, 1, 0);
		assert_false(ok(run(&f, 0, &l)));
		recover(&f, 0);
	}
	fx_stop(&f);
}

static void test_dsm_smart_features(void **state)
{
	struct fx f = { 0 };
	struct prd prd = { DATA, 512 };
	struct cmd c = { .prd = &prd, .nprd = 1 };
	uint64_t *range = NULL;
	uint8_t file[4096], *mem;
	const uint8_t *rfis;

	fx_start(&f);
	port_start(&f, 0);
	/* TRIM 8 sectors at LBA 64 (a whole 4 KiB block), then they read as zeros. */
	range = gpa(&f, DATA, 512);
	memset(range, 0, 512);
	range[0] = 64 | (uint64_t)8 << 48;
	c.write = true;
	fis_ata(&c, 0x06, 0, 1, 1);
	assert_true(ok(run(&f, 0, &c)));
	read_file(f.hd, 64 * 512, file, 4096);
	for (unsigned i = 0; i < 4096; i++)
		assert_int_equal(file[i], 0);
	/* A range past the end fails, and nothing is discarded. */
	range[0] = 128 | (uint64_t)8 << 48;
	range[1] = (IMG_SIZE / 512) | (uint64_t)1 << 48;
	fis_ata(&c, 0x06, 0, 1, 1);
	assert_false(ok(run(&f, 0, &c)));
	recover(&f, 0);
	read_file(f.hd, 128 * 512, file, 512);
	assert_int_not_equal(file[0] | file[1] | file[2] | file[3], 0);
	/* DSM without the TRIM bit aborts. */
	fis_ata(&c, 0x06, 0, 1, 0);
	assert_false(ok(run(&f, 0, &c)));
	recover(&f, 0);
	/* SMART RETURN STATUS: healthy (the key stays 4Fh/C2h). */
	c.write = false;
	c.nprd = 0;
	fis_ata(&c, 0xB0, 0xC24F00, 0, 0xDA);
	assert_true(ok(run(&f, 0, &c)));
	rfis = gpa(&f, FB(0) + 0x40, 20);
	assert_int_equal(rfis[0], 0x34);
	assert_int_equal(rfis[5], 0x4F);
	assert_int_equal(rfis[6], 0xC2);
	/* SMART READ DATA: 512 bytes that sum to zero. */
	c.nprd = 1;
	fis_ata(&c, 0xB0, 0xC24F00, 0, 0xD0);
	assert_true(ok(run(&f, 0, &c)));
	mem = gpa(&f, DATA, 512);
	{
		uint8_t sum = 0;

		for (unsigned i = 0; i < 512; i++)
			sum = (uint8_t)(sum + mem[i]);
		assert_int_equal(sum, 0);
	}
	/* Without the key SMART aborts; disabled SMART aborts everything but enable. */
	fis_ata(&c, 0xB0, 0, 0, 0xDA);
	assert_false(ok(run(&f, 0, &c)));
	recover(&f, 0);
	c.nprd = 0;
	fis_ata(&c, 0xB0, 0xC24F00, 0, 0xD9);
	assert_true(ok(run(&f, 0, &c)));
	fis_ata(&c, 0xB0, 0xC24F00, 0, 0xDA);
	assert_false(ok(run(&f, 0, &c)));
	recover(&f, 0);
	fis_ata(&c, 0xB0, 0xC24F00, 0, 0xD8);
	assert_true(ok(run(&f, 0, &c)));
	/* SET FEATURES: write cache off, transfer mode UDMA 6; a bad mode aborts. */
	fis_ata(&c, 0xEF, 0, 0, 0x82);
	assert_true(ok(run(&f, 0, &c)));
	fis_ata(&c, 0xEF, 0, 0x46, 0x03);
	assert_true(ok(run(&f, 0, &c)));
	fis_ata(&c, 0xEF, 0, 0x77, 0x03);
	assert_false(ok(run(&f, 0, &c)));
	recover(&f, 0);
	fis_ata(&c, 0xEF, 0, 0, 0x99);
	assert_false(ok(run(&f, 0, &c)));
	recover(&f, 0);
	{
		uint32_t tfd;
		uint16_t *id = identify(&f, 0, 0xEC, &tfd);

		assert_false(id[85] & (1U << 5)); /* write cache off */
		assert_true(id[88] & (1U << 14)); /* UDMA 6 selected */
	}
	/* SET MULTIPLE: 8 is fine, 3 is not; READ MULTIPLE works with it. */
	fis_ata(&c, 0xC6, 0, 8, 0);
	assert_true(ok(run(&f, 0, &c)));
	fis_ata(&c, 0xC6, 0, 3, 0);
	assert_false(ok(run(&f, 0, &c)));
	recover(&f, 0);
	c.nprd = 1;
	fis_ata(&c, 0xC4, 0, 1, 0);
	assert_true(ok(run(&f, 0, &c)));
	fis_ata(&c, 0xC6, 0, 0, 0);
	assert_true(ok(run(&f, 0, &c)));
	fis_ata(&c, 0xC4, 0, 1, 0);
	assert_false(ok(run(&f, 0, &c))); /* multiple mode off */
	recover(&f, 0);
	/* CHECK POWER MODE: FFh (active); READ NATIVE MAX EXT: the last LBA. */
	c.nprd = 0;
	fis_ata(&c, 0xE5, 0, 0, 0);
	assert_true(ok(run(&f, 0, &c)));
	assert_int_equal(rfis[12], 0xFF);
	fis_ata(&c, 0x27, 0, 0, 0);
	assert_true(ok(run(&f, 0, &c)));
	assert_int_equal(rfis[4] | rfis[5] << 8 | rfis[6] << 16, IMG_SIZE / 512 - 1);
	fis_ata(&c, 0xF8, 0, 0, 0);
	assert_true(ok(run(&f, 0, &c)));
	assert_int_equal(rfis[4] | rfis[5] << 8 | rfis[6] << 16, IMG_SIZE / 512 - 1);
	for (unsigned cmd = 0xE0; cmd <= 0xE3; cmd++) {
		fis_ata(&c, (uint8_t)cmd, 0, 0, 0);
		assert_true(ok(run(&f, 0, &c)));
	}
	fis_ata(&c, 0x90, 0, 0, 0);
	assert_true(ok(run(&f, 0, &c)));
	assert_int_equal(rfis[3], 0x01);
	fx_stop(&f);
}

/* Command a task-file error must end: TFD.ERR set, PxIS.TFES raised; then recover. */
static uint32_t want_abort(struct fx *f, unsigned p, const struct cmd *c, const char *what)
{
	uint32_t tfd = run(f, p, c);

	if (!(tfd & 1) || !(rd(f, PX(p, P_IS)) & IS_TFES))
		fail_msg("%s: tfd %#x, want a task-file error", what, tfd);
	recover(f, p);
	return tfd;
}

/*
 * The guest-controlled fields of ATA commands that the other tests leave at their common
 * values: CHS addressing, a zero count meaning 256/65536 sectors, the DSM, log and SMART
 * sub-fields, every transfer mode SET FEATURES takes or refuses, and IDENTIFY reporting them.
 */
static void test_ata_fields(void **state)
{
	struct fx f = { 0 };
	struct prd prd = { DATA, 4096 };
	struct cmd c = { .prd = &prd, .nprd = 1 };
	uint8_t file[512], *mem;
	uint16_t *id;
	uint32_t tfd;

	fx_start(&f);
	port_start(&f, 0);
	/* CHS: cylinder 1, head 2, sector 5 is LBA (1 * 16 + 2) * 63 + 4. */
	fis_ata(&c, 0xC8, 0, 1, 0);
	c.fis[4] = 5;
	c.fis[5] = 1;
	c.fis[6] = 0;
	c.fis[7] = 0xA0 | 2;
	memset(gpa(&f, DATA, 512), 0, 512);
	assert_true(ok(run(&f, 0, &c)));
	read_file(f.hd, ((1 * 16 + 2) * 63 + 4) * 512ULL, file, 512);
	assert_memory_equal(gpa(&f, DATA, 512), file, 512);
	/* Sector numbers count from 1 to 63: 0 and 64 do not address anything. */
	c.fis[4] = 0;
	assert_int_equal(want_abort(&f, 0, &c, "CHS sector 0") >> 8 & 0xFF, 0x14); /* IDNF|ABRT */
	c.fis[4] = 64;
	assert_int_equal(want_abort(&f, 0, &c, "CHS sector 64") >> 8 & 0xFF, 0x14);
	/* A zero count is 256 sectors (28-bit) or 65536 (48-bit): more than the PRDT or the disk. */
	fis_ata(&c, 0xC8, 0, 0, 0);
	assert_int_equal(want_abort(&f, 0, &c, "READ DMA of 256 sectors into 4 KiB") >> 8 & 0xFF,
			 0x04);
	fis_ata(&c, 0x25, 0, 0, 0);
	assert_int_equal(want_abort(&f, 0, &c, "READ DMA EXT of 65536 sectors") >> 8 & 0xFF, 0x14);
	/* VERIFY checks the range only. */
	fis_ata(&c, 0x42, IMG_SIZE / 512 - 1, 1, 0);
	assert_true(ok(run(&f, 0, &c)));
	fis_ata(&c, 0x42, IMG_SIZE / 512 - 1, 2, 0);
	want_abort(&f, 0, &c, "VERIFY EXT past the end");
	fis_ata(&c, 0x40, IMG_SIZE / 512, 1, 0);
	want_abort(&f, 0, &c, "VERIFY past the end");
	/* DSM: zero blocks, more blocks than IDENTIFY offers, more than the PRDT holds. */
	c.write = true;
	memset(gpa(&f, DATA, 4096), 0, 4096);
	fis_ata(&c, 0x06, 0, 0, 1);
	want_abort(&f, 0, &c, "DSM of 0 blocks");
	fis_ata(&c, 0x06, 0, 9, 1);
	want_abort(&f, 0, &c, "DSM of 9 blocks into a 4 KiB PRDT");
	fis_ata(&c, 0x06, 0, 0xFFFF, 1);
	want_abort(&f, 0, &c, "DSM of 65535 blocks");
	/* ... and one whose every entry has length 0 discards nothing, successfully. */
	((uint64_t *)gpa(&f, DATA, 8))[0] = 5; /* LBA 5, length 0 */
	fis_ata(&c, 0x06, 0, 1, 1);
	assert_true(ok(run(&f, 0, &c)));
	read_file(f.hd, 5 * 512, file, 512);
	assert_int_not_equal(file[0] | file[1] | file[2] | file[3], 0);
	c.write = false;
	/* READ LOG EXT: one page, page 0, of log 0 or 10h only. */
	prd.len = 512;
	fis_ata(&c, 0x2F, 0x00, 1, 0);
	assert_true(ok(run(&f, 0, &c)));
	mem = gpa(&f, DATA, 512);
	assert_int_equal(mem[0], 1);
	assert_int_equal(mem[2 * 0x10], 1);
	fis_ata(&c, 0x2F, 0x00, 2, 0);
	want_abort(&f, 0, &c, "READ LOG EXT of 2 pages");
	fis_ata(&c, 0x2F, 0x0100, 1, 0);
	want_abort(&f, 0, &c, "READ LOG EXT page 1");
	fis_ata(&c, 0x2F, 0x010000, 1, 0);
	want_abort(&f, 0, &c, "READ LOG EXT with high LBA bits");
	fis_ata(&c, 0x2F, 0x11, 1, 0);
	want_abort(&f, 0, &c, "READ LOG EXT of log 11h");
	/* SMART: thresholds (a page without the capability bytes), autosave, offline, bad sub. */
	fis_ata(&c, 0xB0, 0xC24F00, 0, 0xD1);
	memset(gpa(&f, DATA, 512), 0xCC, 512);
	assert_true(ok(run(&f, 0, &c)));
	mem = gpa(&f, DATA, 512);
	assert_int_equal(mem[0], 0x10);
	assert_int_equal(mem[362], 0);
	assert_int_equal(mem[368], 0);
	{
		uint8_t sum = 0;

		for (unsigned i = 0; i < 512; i++)
			sum = (uint8_t)(sum + mem[i]);
		assert_int_equal(sum, 0);
	}
	c.nprd = 0;
	fis_ata(&c, 0xB0, 0xC24F00, 0, 0xD2);
	assert_true(ok(run(&f, 0, &c)));
	fis_ata(&c, 0xB0, 0xC24F00, 0, 0xD4);
	assert_true(ok(run(&f, 0, &c)));
	fis_ata(&c, 0xB0, 0xC24F00, 0, 0xD5);
	want_abort(&f, 0, &c, "SMART subcommand D5h");
	/* SMART READ DATA into no PRDT: the data has nowhere to go. */
	fis_ata(&c, 0xB0, 0xC24F00, 0, 0xD0);
	want_abort(&f, 0, &c, "SMART READ DATA without a PRDT");
	/* SET FEATURES transfer mode: the edges of each range, taken or refused. */
	{
		static const uint8_t good[] = { 0x00, 0x01, 0x08, 0x0C, 0x20, 0x22, 0x40, 0x46 };
		static const uint8_t bad[] = { 0x02, 0x07, 0x0D, 0x1F, 0x23, 0x3F, 0x47 };

		for (unsigned i = 0; i < sizeof(good); i++) {
			fis_ata(&c, 0xEF, 0, good[i], 0x03);
			if (!ok(run(&f, 0, &c)))
				fail_msg("transfer mode %#x refused", good[i]);
		}
		for (unsigned i = 0; i < sizeof(bad); i++) {
			fis_ata(&c, 0xEF, 0, bad[i], 0x03);
			want_abort(&f, 0, &c, "a transfer mode out of range");
		}
	}
	/* The last mode taken was UDMA 6; multiword DMA 2 now, as IDENTIFY word 63 shows. */
	fis_ata(&c, 0xEF, 0, 0x22, 0x03);
	assert_true(ok(run(&f, 0, &c)));
	id = identify(&f, 0, 0xEC, &tfd);
	assert_int_equal(id[63], 0x0007 | 1U << 10);
	assert_int_equal(id[88], 0x003F);
	/* Write cache on again, look-ahead and power-on-default features accepted. */
	for (unsigned i = 0; i < 6; i++) {
		static const uint8_t feat[] = { 0x02, 0x05, 0x85, 0x55, 0xAA, 0x66 };

		fis_ata(&c, 0xEF, 0, 0, feat[i]);
		assert_true(ok(run(&f, 0, &c)));
	}
	id = identify(&f, 0, 0xEC, &tfd);
	assert_true(id[85] & (1U << 5));
	/* SET MULTIPLE: 16 is the most, 17 and 32 are refused; IDENTIFY word 59 says 16. */
	fis_ata(&c, 0xC6, 0, 16, 0);
	assert_true(ok(run(&f, 0, &c)));
	fis_ata(&c, 0xC6, 0, 17, 0);
	want_abort(&f, 0, &c, "SET MULTIPLE 17");
	fis_ata(&c, 0xC6, 0, 32, 0);
	want_abort(&f, 0, &c, "SET MULTIPLE 32");
	id = identify(&f, 0, 0xEC, &tfd);
	assert_int_equal(id[59], 0x110);
	fx_stop(&f);
}

/*
 * Port and HBA registers away from the bring-up path: the upper address dwords, the
 * reserved port and HBA offsets, SACT/CI while the engine is stopped, SNTF write-1-to-clear,
 * writes to read-only HBA registers, a COMRESET asked for twice and a DET of 0 with no
 * COMRESET before it (neither resets anything), and ST written again while running.
 */
static void test_register_corners(void **state)
{
	struct fx f = { 0 };
	uint32_t cap;

	fx_start(&f);
	wr(&f, PX(0, 0x04), 0x12345678); /* CLBU */
	wr(&f, PX(0, 0x0C), 0x9ABCDEF0); /* FBU */
	assert_int_equal(rd(&f, PX(0, 0x04)), 0x12345678);
	assert_int_equal(rd(&f, PX(0, 0x0C)), 0x9ABCDEF0);
	wr(&f, PX(0, 0x04), 0);
	wr(&f, PX(0, 0x0C), 0);
	wr(&f, PX(0, 0x40), 0xFFFFFFFF); /* reserved / vendor space */
	assert_int_equal(rd(&f, PX(0, 0x40)), 0);
	assert_int_equal(rd(&f, 0x14), 0); /* CCC_CTL: no command completion coalescing */
	assert_int_equal(rd(&f, 0x24), 0); /* CAP2 */
	cap = rd(&f, 0x00);
	wr(&f, 0x00, 0);
	wr(&f, PI, 0);
	wr(&f, VS, 0);
	assert_int_equal(rd(&f, 0x00), cap);
	assert_int_equal(rd(&f, PI), 3);
	assert_int_equal(rd(&f, VS), 0x00010300);
	/* SACT and CI take nothing while the engine is stopped. */
	wr(&f, PX(0, P_SACT), 1);
	wr(&f, PX(0, P_CI), 1);
	assert_int_equal(rd(&f, PX(0, P_SACT)), 0);
	assert_int_equal(rd(&f, PX(0, P_CI)), 0);
	wr(&f, PX(0, P_SNTF), ~0U);
	assert_int_equal(rd(&f, PX(0, P_SNTF)), 0);
	/* DET 0 with no COMRESET before: the link stays up, nothing is reset. */
	port_start(&f, 0);
	wr(&f, PX(0, P_IS), ~0U);
	wr(&f, PX(0, P_SCTL), 0x300);
	assert_int_equal(rd(&f, PX(0, P_SCTL)), 0x300);
	assert_int_equal(rd(&f, PX(0, P_SSTS)) & 0xF, 3);
	assert_false(rd(&f, PX(0, P_IS)) & IS_DHRS);
	/* ST again while running: CR stays, the engine keeps its place. */
	wr(&f, PX(0, P_CMD), rd(&f, PX(0, P_CMD)) | 1);
	assert_true(rd(&f, PX(0, P_CMD)) & (1U << 15));
	{
		struct prd prd = { DATA, 512 };
		struct cmd c = { .prd = &prd, .nprd = 1 };

		fis_ata(&c, 0x25, 0, 1, 0);
		assert_true(ok(run(&f, 0, &c)));
	}
	/* COMRESET asked for twice: one reset, and the second write changes nothing more. */
	wr(&f, PX(0, P_SCTL), 0x301);
	assert_int_equal(rd(&f, PX(0, P_SSTS)) & 0xF, 0);
	wr(&f, PX(0, P_SCTL), 0x301);
	assert_int_equal(rd(&f, PX(0, P_SSTS)) & 0xF, 0);
	wr(&f, PX(0, P_IS), ~0U);
	wr(&f, PX(0, P_SCTL), 0x300);
	assert_int_equal(rd(&f, PX(0, P_SSTS)) & 0xF, 3);
	assert_true(rd(&f, PX(0, P_IS)) & IS_DHRS);
	assert_int_equal(rd(&f, PX(0, P_SIG)), 0x00000101);
	fx_stop(&f);
}

/* COMRESET: the link drops, the device comes back with its signature in a D2H FIS. */
static void test_comreset(void **state)
{
	struct fx f = { 0 };
	const uint8_t *rfis;

	fx_start(&f);
	port_start(&f, 1);
	wr(&f, PX(1, P_SCTL), 1);
	assert_int_equal(rd(&f, PX(1, P_SSTS)) & 0xF, 0);
	assert_int_equal(rd(&f, PX(1, P_CMD)) & 1, 0);
	wr(&f, PX(1, P_SCTL), 0);
	assert_int_equal(rd(&f, PX(1, P_SSTS)) & 0xF, 3);
	assert_int_equal(rd(&f, PX(1, P_SIG)), 0xEB140101);
	assert_true(rd(&f, PX(1, P_IS)) & IS_DHRS);
	rfis = gpa(&f, FB(1) + 0x40, 20);
	assert_int_equal(rfis[0], 0x34);
	assert_int_equal(rfis[5], 0x14);
	assert_int_equal(rfis[6], 0xEB);
	/* CLO clears BSY and DRQ. */
	wr(&f, PX(1, P_CMD), rd(&f, PX(1, P_CMD)) | 8);
	assert_int_equal(rd(&f, PX(1, P_TFD)) & 0x88, 0);
	fx_stop(&f);
}

static uint32_t rd_n(struct fx *f, uint64_t off, unsigned size)
{
	uint8_t b[4] = { 0 };

	assert_true(bus_access(&f->vm.mmio, f->abar + off, b, size, false));
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static void wr_n(struct fx *f, uint64_t off, unsigned size, uint32_t v)
{
	uint8_t b[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24) };

	assert_true(bus_access(&f->vm.mmio, f->abar + off, b, size, true));
}

/*
 * Byte and word accesses to dword registers: reads give the addressed bytes; a narrow write
 * merges into read-write registers, but write-1-to-clear and write-1-to-set registers (PxIS,
 * PxSERR, PxCI, PxSACT, PxSNTF, IS) take only the bytes written: writing back the others
 * would clear (or issue) what the guest never touched.
 */
static void test_narrow_accesses(void **state)
{
	struct fx f = { 0 };

	fx_start(&f);
	/* After a COMRESET: PxIS.DHRS (bit 0) and PxSERR.DIAG.X (bit 26) are set. */
	port_start(&f, 1);
	wr(&f, PX(1, P_SCTL), 1);
	wr(&f, PX(1, P_SCTL), 0);
	assert_true(rd(&f, PX(1, P_IS)) & 1);
	assert_true(rd(&f, PX(1, P_SERR)) & (1U << 26));
	/* Reads of parts of a register. */
	assert_int_equal(rd_n(&f, VS + 2, 2), 0x0001);
	assert_int_equal(rd_n(&f, VS + 1, 1), 0x03);
	assert_int_equal(rd_n(&f, PX(1, P_SIG) + 3, 1), 0xEB);
	assert_int_equal(rd_n(&f, PX(1, P_SIG) + 2, 2), 0xEB14);
	/* Zeros to the other bytes of RW1C registers clear nothing. */
	wr_n(&f, PX(1, P_SERR), 1, 0);
	wr_n(&f, PX(1, P_SERR) + 1, 2, 0);
	assert_true(rd(&f, PX(1, P_SERR)) & (1U << 26));
	wr_n(&f, PX(1, P_IS) + 2, 2, 0);
	wr_n(&f, PX(1, P_IS) + 3, 1, 0);
	assert_true(rd(&f, PX(1, P_IS)) & 1);
	wr_n(&f, PX(1, P_SNTF) + 1, 1, 0);
	wr_n(&f, PX(1, P_SACT) + 1, 1, 0);
	wr_n(&f, PX(1, P_CI) + 1, 1, 0);
	wr_n(&f, HIS + 1, 1, 0);
	assert_int_equal(rd(&f, PX(1, P_CI)), 0);
	assert_int_equal(rd(&f, PX(1, P_SACT)), 0);
	/* The bit itself, in its own byte: cleared. */
	wr_n(&f, PX(1, P_SERR) + 3, 1, 0x04);
	assert_false(rd(&f, PX(1, P_SERR)) & (1U << 26));
	wr_n(&f, PX(1, P_IS), 1, 0x01);
	assert_false(rd(&f, PX(1, P_IS)) & 1);
	/* A read-write register: a word in the high half keeps the low half. */
	wr(&f, PX(1, P_IE), 0x0000003F);
	wr_n(&f, PX(1, P_IE) + 2, 2, 0x0040);
	assert_int_equal(rd(&f, PX(1, P_IE)) & 0x7D40003F, 0x0040003F);
	/* Beyond the ports this HBA has: reads 0 in pieces too. */
	assert_int_equal(rd_n(&f, PX(7, P_SIG) + 1, 1), 0);
	fx_stop(&f);
}

/* ---- the CD ---- */

static uint32_t packet(struct fx *f, const uint8_t *cdb, size_t cdblen, uint32_t len)
{
	struct prd prd = { DATA, len ? len : 2 };
	struct cmd c = { .prd = &prd, .nprd = len ? 1 : 0, .atapi = true };

	fis_ata(&c, 0xA0, 0, 0, 1);
	memcpy(c.acmd, cdb, cdblen);
	return run(f, 1, &c);
}

static void sense(struct fx *f, uint8_t *key, uint8_t *asc)
{
	static const uint8_t rs[12] = { 0x03, 0, 0, 0, 18 };
	const uint8_t *d = gpa(f, DATA, 18);

	assert_true(ok(packet(f, rs, 12, 18)));
	assert_int_equal(d[0], 0x70);
	*key = d[2] & 0xF;
	*asc = d[12];
}

static void want_check(struct fx *f, const uint8_t *cdb, uint32_t len, uint8_t key, uint8_t asc)
{
	uint32_t tfd = packet(f, cdb, 12, len);
	uint8_t k, a;

	if (!(tfd & 1))
		fail_msg("CDB %02x: tfd %#x, want CHECK CONDITION", cdb[0], tfd);
	assert_int_equal((tfd >> 12) & 0xF, key);
	recover(f, 1);
	sense(f, &k, &a);
	assert_int_equal(k, key);
	assert_int_equal(a, asc);
}

static void test_cd(void **state)
{
	struct fx f = { 0 };
	uint8_t cdb[12], file[4096], k, a;
	const uint8_t *d;
	uint16_t *id;
	uint32_t tfd;

	fx_start(&f);
	port_start(&f, 1);
	d = gpa(&f, DATA, 4096);
	id = identify(&f, 1, 0xA1, &tfd);
	assert_int_equal(tfd & 0xFF, 0x50);
	assert_int_equal((id[0] >> 8) & 0x1F, 5); /* CD-ROM */
	assert_true(id[0] & 0x80);		  /* removable */
	assert_true(id_checksum_ok(id));
	/* IDENTIFY DEVICE aborts with the packet signature. */
	identify(&f, 1, 0xEC, &tfd);
	assert_true(tfd & 1);
	assert_int_equal(((const uint8_t *)gpa(&f, FB(1) + 0x40, 20))[6], 0xEB);
	recover(&f, 1);
	/* TEST UNIT READY, INQUIRY */
	memset(cdb, 0, 12);
	assert_true(ok(packet(&f, cdb, 12, 0)));
	cdb[0] = 0x12;
	cdb[4] = 36;
	assert_true(ok(packet(&f, cdb, 12, 36)));
	assert_int_equal(d[0], 5);
	assert_int_equal(d[1], 0x80);
	assert_memory_equal(d + 16, "KHYVE DVD-ROM   ", 16);
	assert_int_equal(get32(&f, CLB(1) + 4), 36);
	cdb[1] = 1; /* VPD 80h: the serial number */
	cdb[2] = 0x80;
	assert_true(ok(packet(&f, cdb, 12, 24)));
	assert_int_equal(d[3], 20);
	cdb[2] = 0x42;
	want_check(&f, cdb, 36, 5, 0x24);
	/* READ CAPACITY */
	memset(cdb, 0, 12);
	cdb[0] = 0x25;
	assert_true(ok(packet(&f, cdb, 12, 8)));
	assert_int_equal(d[0] << 24 | d[1] << 16 | d[2] << 8 | d[3], CD_SIZE / 2048 - 1);
	assert_int_equal(d[4] << 24 | d[5] << 16 | d[6] << 8 | d[7], 2048);
	/* READ(10) 2 blocks at 16 (the ISO 9660 volume descriptors), READ(12), READ CD */
	memset(cdb, 0, 12);
	cdb[0] = 0x28;
	cdb[5] = 16;
	cdb[8] = 2;
	assert_true(ok(packet(&f, cdb, 12, 4096)));
	read_file(f.cd, 16 * 2048, file, 4096);
	assert_memory_equal(d, file, 4096);
	memset(cdb, 0, 12);
	memset(gpa(&f, DATA, 4096), 0, 4096);
	cdb[0] = 0xA8;
	cdb[5] = 16;
	cdb[9] = 2;
	assert_true(ok(packet(&f, cdb, 12, 4096)));
	assert_memory_equal(d, file, 4096);
	memset(cdb, 0, 12);
	memset(gpa(&f, DATA, 4096), 0, 4096);
	cdb[0] = 0xBE;
	cdb[5] = 16;
	cdb[8] = 1;
	cdb[9] = 0x10;
	assert_true(ok(packet(&f, cdb, 12, 2048)));
	assert_memory_equal(d, file, 2048);
	/* past the end: ILLEGAL REQUEST, LBA out of range */
	memset(cdb, 0, 12);
	cdb[0] = 0x28;
	cdb[4] = (CD_SIZE / 2048) >> 8;
	cdb[5] = (CD_SIZE / 2048) & 0xFF;
	cdb[8] = 1;
	want_check(&f, cdb, 2048, 5, 0x21);
	/* READ TOC format 0, LBA: track 1 at 0, lead-out at the end */
	memset(cdb, 0, 12);
	cdb[0] = 0x43;
	cdb[8] = 100;
	assert_true(ok(packet(&f, cdb, 12, 100)));
	assert_int_equal(d[0] << 8 | d[1], 18);
	assert_int_equal(d[6], 1);
	assert_int_equal(d[14], 0xAA);
	assert_int_equal(d[16] << 24 | d[17] << 16 | d[18] << 8 | d[19], CD_SIZE / 2048);
	cdb[1] = 2; /* MSF: track 1 at 00:02:00 */
	assert_true(ok(packet(&f, cdb, 12, 100)));
	assert_int_equal(d[10], 2);
	cdb[1] = 0;
	cdb[2] = 1; /* session info */
	assert_true(ok(packet(&f, cdb, 12, 100)));
	assert_int_equal(d[0] << 8 | d[1], 10);
	cdb[2] = 2; /* full TOC */
	assert_true(ok(packet(&f, cdb, 12, 100)));
	assert_int_equal(d[0] << 8 | d[1], 46);
	cdb[2] = 5;
	want_check(&f, cdb, 100, 5, 0x24);
	/* GET CONFIGURATION: a CD-ROM profile is current */
	memset(cdb, 0, 12);
	cdb[0] = 0x46;
	cdb[8] = 128;
	assert_true(ok(packet(&f, cdb, 12, 128)));
	assert_int_equal(d[6] << 8 | d[7], 0x0008);
	cdb[1] = 2; /* only feature 0x0010 */
	cdb[3] = 0x10;
	assert_true(ok(packet(&f, cdb, 12, 128)));
	assert_int_equal(d[0] << 24 | d[1] << 16 | d[2] << 8 | d[3], 4 + 12);
	assert_int_equal(d[8] << 8 | d[9], 0x0010);
	/* GET EVENT STATUS NOTIFICATION, polled, media class: medium present, no event */
	memset(cdb, 0, 12);
	cdb[0] = 0x4A;
	cdb[1] = 1;
	cdb[4] = 0x10;
	cdb[8] = 8;
	assert_true(ok(packet(&f, cdb, 12, 8)));
	assert_int_equal(d[2], 4);
	assert_int_equal(d[4], 0);
	assert_int_equal(d[5], 2);
	cdb[1] = 0; /* asynchronous: not supported */
	want_check(&f, cdb, 8, 5, 0x24);
	/* MODE SENSE(10) page 2Ah, MODE SENSE(6) all pages; saved values are refused */
	memset(cdb, 0, 12);
	cdb[0] = 0x5A;
	cdb[2] = 0x2A;
	cdb[8] = 64;
	assert_true(ok(packet(&f, cdb, 12, 64)));
	assert_int_equal(d[8], 0x2A);
	cdb[2] = 0xC0 | 0x2A;
	want_check(&f, cdb, 64, 5, 0x39);
	memset(cdb, 0, 12);
	cdb[0] = 0x1A;
	cdb[2] = 0x3F;
	cdb[4] = 255;
	assert_true(ok(packet(&f, cdb, 12, 256)));
	assert_int_equal(d[0] + 1, 4 + 12 + 8 + 22);
	cdb[2] = 0x05;
	want_check(&f, cdb, 256, 5, 0x24);
	/* READ DISC INFORMATION, MECHANISM STATUS, SET CD SPEED */
	memset(cdb, 0, 12);
	cdb[0] = 0x51;
	cdb[8] = 34;
	assert_true(ok(packet(&f, cdb, 12, 34)));
	assert_int_equal(d[2], 0x0E);
	memset(cdb, 0, 12);
	cdb[0] = 0xBD;
	cdb[9] = 8;
	assert_true(ok(packet(&f, cdb, 12, 8)));
	memset(cdb, 0, 12);
	cdb[0] = 0xBB;
	assert_true(ok(packet(&f, cdb, 12, 0)));
	/* an unknown opcode */
	memset(cdb, 0, 12);
	cdb[0] = 0xD9;
	want_check(&f, cdb, 0, 5, 0x20);
	/* Locked: eject refused.  Unlocked: eject, no medium, load, unit attention. */
	memset(cdb, 0, 12);
	cdb[0] = 0x1E;
	cdb[4] = 1;
	assert_true(ok(packet(&f, cdb, 12, 0)));
	memset(cdb, 0, 12);
	cdb[0] = 0x1B;
	cdb[4] = 2;
	want_check(&f, cdb, 0, 5, 0x53);
	memset(cdb, 0, 12);
	cdb[0] = 0x1E;
	assert_true(ok(packet(&f, cdb, 12, 0)));
	memset(cdb, 0, 12);
	cdb[0] = 0x1B;
	cdb[4] = 2;
	assert_true(ok(packet(&f, cdb, 12, 0)));
	memset(cdb, 0, 12);
	want_check(&f, cdb, 0, 2, 0x3A); /* TEST UNIT READY: no medium */
	cdb[0] = 0x4A;
	cdb[1] = 1;
	cdb[4] = 0x10;
	cdb[8] = 8;
	assert_true(ok(packet(&f, cdb, 12, 8)));
	assert_int_equal(d[4], 3); /* media removal */
	assert_int_equal(d[5], 1); /* tray open */
	memset(cdb, 0, 12);
	cdb[0] = 0x1B;
	cdb[4] = 3;
	assert_true(ok(packet(&f, cdb, 12, 0)));
	memset(cdb, 0, 12);
	want_check(&f, cdb, 0, 6, 0x28); /* unit attention: medium changed */
	assert_true(ok(packet(&f, cdb, 12, 0)));
	sense(&f, &k, &a);
	assert_int_equal(k, 0);
	fx_stop(&f);
}

/* The commands that only answer: each completes (or fails) as a real drive's would. */
/*
 * The CD's tray, lock and mode pages as a guest sees them: changeable values, pages with the
 * tray open (no medium) and locked, a second eject or load changing nothing, the unit
 * attention after a load reported once, and the READ CD and INQUIRY fields it refuses.
 */
static void test_cd_tray_pages(void **state)
{
	struct fx f = { 0 };
	uint8_t cdb[12];
	const uint8_t *d;

	fx_start(&f);
	port_start(&f, 1);
	d = gpa(&f, DATA, 128);
	/* MODE SENSE(10), changeable values of every page: nothing can be changed. */
	memset(cdb, 0, 12);
	cdb[0] = 0x5A;
	cdb[2] = 0x40 | 0x3F;
	cdb[8] = 128;
	memset(gpa(&f, DATA, 128), 0xCC, 128);
	assert_true(ok(packet(&f, cdb, 12, 128)));
	assert_int_equal(d[0] << 8 | d[1], 8 + 12 + 8 + 22 - 2);
	assert_int_equal(d[2], 0x01); /* a disc */
	assert_int_equal(d[8], 0x01);
	assert_int_equal(d[11], 0); /* read retry count */
	assert_int_equal(d[20], 0x0D);
	assert_int_equal(d[24] | d[25] | d[26] | d[27], 0);
	assert_int_equal(d[28], 0x2A);
	assert_int_equal(d[30] | d[32] | d[33] | d[34], 0);
	/* MODE SENSE(6), current capabilities page: unlocked; then locked. */
	memset(cdb, 0, 12);
	cdb[0] = 0x1A;
	cdb[2] = 0x2A;
	cdb[4] = 64;
	assert_true(ok(packet(&f, cdb, 12, 64)));
	assert_int_equal(d[0], 4 + 22 - 1);
	assert_int_equal(d[1], 0x01);
	assert_int_equal(d[4 + 6], 0x29);
	{
		uint8_t lock[12] = { 0x1E, 0, 0, 0, 1 };

		assert_true(ok(packet(&f, lock, 12, 0)));
	}
	assert_true(ok(packet(&f, cdb, 12, 64)));
	assert_int_equal(d[4 + 6], 0x2B);
	/* GET CONFIGURATION feature 3 says locked too; an eject is refused while locked. */
	{
		uint8_t gc[12] = { 0x46, 2, 0, 3, 0, 0, 0, 0, 64 };
		uint8_t ej[12] = { 0x1B, 0, 0, 0, 2 };
		uint8_t unlock[12] = { 0x1E };

		assert_true(ok(packet(&f, gc, 12, 64)));
		assert_int_equal(d[8] << 8 | d[9], 3);
		assert_int_equal(d[12], 0x2D);
		want_check(&f, ej, 0, 5, 0x53);
		assert_true(ok(packet(&f, unlock, 12, 0)));
		/* Eject twice: the second finds the tray already open. */
		assert_true(ok(packet(&f, ej, 12, 0)));
		assert_true(ok(packet(&f, ej, 12, 0)));
	}
	/* With the tray open: medium type 70h in both MODE SENSEs, no current profile. */
	assert_true(ok(packet(&f, cdb, 12, 64)));
	assert_int_equal(d[1], 0x70);
	cdb[0] = 0x5A;
	cdb[2] = 0x01;
	cdb[4] = 0;
	cdb[8] = 64;
	assert_true(ok(packet(&f, cdb, 12, 64)));
	assert_int_equal(d[2], 0x70);
	{
		uint8_t gc[12] = { 0x46, 0, 0, 0, 0, 0, 0, 0, 128 };
		uint8_t ms[12] = { 0xBD, 0, 0, 0, 0, 0, 0, 0, 0, 8 };
		uint8_t tur[12] = { 0 };
		uint8_t load[12] = { 0x1B, 0, 0, 0, 3 };
		uint8_t gesn[12] = { 0x4A, 1, 0, 0, 0x10, 0, 0, 0, 8 };
		uint8_t k, a;

		assert_true(ok(packet(&f, gc, 12, 128)));
		assert_int_equal(d[6] << 8 | d[7], 0);
		assert_int_equal(d[8 + 6], 0);	/* DVD profile not current */
		assert_int_equal(d[8 + 10], 0); /* CD profile not current */
		assert_true(ok(packet(&f, ms, 12, 8)));
		assert_int_equal(d[1], 0x10);
		/* NOT READY, medium not present, tray open (ASCQ 2); REQUEST SENSE says so too */
		want_check(&f, tur, 0, 2, 0x3A);
		assert_int_equal(d[13], 2);
		sense(&f, &k, &a);
		assert_int_equal(k, 2);
		assert_int_equal(a, 0x3A);
		/* The event is media removal. */
		assert_true(ok(packet(&f, gesn, 12, 8)));
		assert_int_equal(d[4], 3);
		assert_int_equal(d[5], 0x01);
		/* Load: UNIT ATTENTION once, medium changed; loading again changes nothing. */
		assert_true(ok(packet(&f, load, 12, 0)));
		/* INQUIRY does not report it (nor clear it); an allocation of 8 gets 8 bytes. */
		{
			uint8_t inq[12] = { 0x12, 0, 0, 0, 8 };

			memset(gpa(&f, DATA, 64), 0xCC, 64);
			assert_true(ok(packet(&f, inq, 12, 64)));
			assert_int_equal(get32(&f, CLB(1) + 4), 8);
			assert_int_equal(d[0], 0x05);
			assert_int_equal(d[8], 0xCC);
		}
		want_check(&f, tur, 0, 6, 0x28);
		assert_true(ok(packet(&f, tur, 12, 0)));
		/* START without LoEj: the tray stays closed, the medium ready. */
		{
			uint8_t spin[12] = { 0x1B, 0, 0, 0, 1 };

			assert_true(ok(packet(&f, spin, 12, 0)));
			assert_true(ok(packet(&f, tur, 12, 0)));
		}
		assert_true(ok(packet(&f, load, 12, 0)));
		assert_true(ok(packet(&f, tur, 12, 0)));
		assert_true(ok(packet(&f, ms, 12, 8)));
		assert_int_equal(d[1], 0);
		assert_true(ok(packet(&f, gesn, 12, 8)));
		assert_int_equal(d[4], 2); /* new media */
		assert_int_equal(d[5], 0x02);
	}
	/* READ CD of a sector type past 2 (mode 2 form 2 and up): invalid field. */
	memset(cdb, 0, 12);
	cdb[0] = 0xBE;
	cdb[1] = 0x0C;
	cdb[8] = 1;
	cdb[9] = 0x10;
	want_check(&f, cdb, 2048, 5, 0x24);
	/* Standard INQUIRY with a page code: invalid field. */
	memset(cdb, 0, 12);
	cdb[0] = 0x12;
	cdb[2] = 0x80;
	cdb[4] = 36;
	want_check(&f, cdb, 36, 5, 0x24);
	/* MODE SENSE of a page the drive does not have; of saved values. */
	memset(cdb, 0, 12);
	cdb[0] = 0x1A;
	cdb[2] = 0x05;
	cdb[4] = 64;
	want_check(&f, cdb, 64, 5, 0x24);
	cdb[2] = 0xC0 | 0x2A;
	want_check(&f, cdb, 64, 5, 0x39);
	fx_stop(&f);
}

static void test_simple_commands(void **state)
{
	static const uint8_t ok_hd[] = { 0x10, 0x1F, 0x70, 0x91, 0xE0, 0xE1, 0xE2,
					 0xE3, 0xE6, 0xE7, 0xF5, 0x40, 0x41 };
	static const uint8_t bad_hd[] = { 0x00, 0x08, 0xA1, 0xA0, 0x03, 0xFF };
	static const uint8_t ok_cd[] = { 0xE5, 0xEF, 0xE0, 0xE3, 0xE7 };
	static const uint8_t ok_cdb[] = { 0x00, 0x2B, 0x2F, 0x35, 0x15, 0x55, 0xBB };
	struct fx f = { 0 };
	struct prd prd = { DATA, 4096 };
	struct cmd c = { .prd = &prd, .nprd = 1 };
	uint8_t cdb[12];
	uint32_t tfd;

	fx_start(&f);
	port_start(&f, 0);
	port_start(&f, 1);
	for (unsigned i = 0; i < sizeof(ok_hd); i++) {
		fis_ata(&c, ok_hd[i], 0, 1, 0);
		tfd = run(&f, 0, &c);
		if (!ok(tfd))
			fail_msg("disk command %#x: tfd %#x", ok_hd[i], tfd);
	}
	for (unsigned i = 0; i < sizeof(bad_hd); i++) {
		fis_ata(&c, bad_hd[i], 0, 1, 0);
		tfd = run(&f, 0, &c);
		if (ok(tfd) || (tfd >> 8) != 0x04)
			fail_msg("disk command %#x: tfd %#x, want ABRT", bad_hd[i], tfd);
		recover(&f, 0);
	}
	/* FUA writes and WRITE MULTIPLE FUA EXT are flushed before they complete. */
	c.write = true;
	fis_ata(&c, 0x3D, 200, 8, 0);
	assert_true(ok(run(&f, 0, &c)));
	fis_ata(&c, 0xCE, 208, 8, 0);
	assert_true(ok(run(&f, 0, &c)));
	fis_ata(&c, 0x39, 216, 8, 0);
	assert_true(ok(run(&f, 0, &c)));
	c.write = false;
	fis_ata(&c, 0x29, 216, 8, 0);
	assert_true(ok(run(&f, 0, &c)));
	for (unsigned i = 0; i < sizeof(ok_cd); i++) {
		fis_ata(&c, ok_cd[i], 0, 0, 0x03);
		c.fis[12] = 0x45;
		tfd = run(&f, 1, &c);
		if (!ok(tfd))
			fail_msg("CD command %#x: tfd %#x", ok_cd[i], tfd);
	}
	for (unsigned i = 0; i < sizeof(ok_cdb); i++) {
		memset(cdb, 0, 12);
		cdb[0] = ok_cdb[i];
		tfd = packet(&f, cdb, 12, 0);
		if (!ok(tfd))
			fail_msg("CDB %#x: tfd %#x", ok_cdb[i], tfd);
	}
	/* START STOP without LoEj changes nothing; DEVICE RESET answers with the signature. */
	memset(cdb, 0, 12);
	cdb[0] = 0x1B;
	cdb[4] = 1;
	assert_true(ok(packet(&f, cdb, 12, 0)));
	fis_ata(&c, 0x08, 0, 0, 0);
	tfd = run(&f, 1, &c);
	assert_false(tfd & 1);
	assert_int_equal(((const uint8_t *)gpa(&f, FB(1) + 0x40, 20))[6], 0xEB);
	fis_ata(&c, 0x25, 0, 1, 0); /* not a command a CD takes */
	assert_false(ok(run(&f, 1, &c)));
	recover(&f, 1);
	/* READ CD of another data format, INQUIRY VPD 00h and 83h, REQUEST SENSE when empty */
	memset(cdb, 0, 12);
	cdb[0] = 0xBE;
	cdb[8] = 1;
	cdb[9] = 0xF8;
	assert_false(ok(packet(&f, cdb, 12, 2048)));
	recover(&f, 1);
	memset(cdb, 0, 12);
	cdb[0] = 0x12;
	cdb[1] = 1;
	cdb[4] = 96;
	assert_true(ok(packet(&f, cdb, 12, 96)));
	assert_int_equal(((const uint8_t *)gpa(&f, DATA, 8))[3], 3);
	cdb[2] = 0x83;
	assert_true(ok(packet(&f, cdb, 12, 96)));
	assert_memory_equal((const uint8_t *)gpa(&f, DATA, 16) + 8, "ATA     ", 8);
	/* GET CONFIGURATION: only current features, and the reserved RT */
	memset(cdb, 0, 12);
	cdb[0] = 0x46;
	cdb[1] = 1;
	cdb[8] = 128;
	assert_true(ok(packet(&f, cdb, 12, 128)));
	cdb[1] = 3;
	assert_false(ok(packet(&f, cdb, 12, 128)));
	recover(&f, 1);
	/* GESN without the media class: no event available */
	memset(cdb, 0, 12);
	cdb[0] = 0x4A;
	cdb[1] = 1;
	cdb[4] = 0x02;
	cdb[8] = 8;
	assert_true(ok(packet(&f, cdb, 12, 8)));
	assert_int_equal(((const uint8_t *)gpa(&f, DATA, 4))[2], 0x80);
	/* READ TOC for track 2 (there is one track), lead-out alone; READ DISC INFO type 1 */
	memset(cdb, 0, 12);
	cdb[0] = 0x43;
	cdb[6] = 2;
	cdb[8] = 64;
	assert_false(ok(packet(&f, cdb, 12, 64)));
	recover(&f, 1);
	cdb[6] = 0xAA;
	assert_true(ok(packet(&f, cdb, 12, 64)));
	memset(cdb, 0, 12);
	cdb[0] = 0x51;
	cdb[1] = 1;
	cdb[8] = 34;
	assert_false(ok(packet(&f, cdb, 12, 34)));
	recover(&f, 1);
	/* A PRDT smaller than READ(10)'s data: the HBA cannot place it. */
	memset(cdb, 0, 12);
	cdb[0] = 0x28;
	cdb[8] = 4;
	assert_false(ok(packet(&f, cdb, 12, 2048)));
	recover(&f, 1);
	fx_stop(&f);
}

/* ---- snapshots ---- */

/* devsnap_expect_refused, saying which case was accepted. */
static void refuse_at(struct dev *d, const void *buf, size_t len, unsigned version, int line)
{
	struct sstream before;

	devsnap_save(d, &before);
	if (!devsnap_load(d, buf, len, version))
		fail_msg("line %d: a corrupt snapshot was accepted", line);
	ss_free(&before);
	devsnap_expect_refused(d, buf, len, version);
}
#define REFUSE(buf, len, v) refuse_at(&f.pd->dev, buf, len, v, __LINE__)

static void test_snapshot(void **state)
{
	struct fx f = { 0 }, g = { 0 };
	uint8_t *a, *b, *bad;
	size_t alen, blen;
	uint8_t cdb[12] = { 0x1B, 0, 0, 0, 2 };

	fx_start(&f);
	port_start(&f, 0);
	port_start(&f, 1);
	wr(&f, PX(0, P_IE), 0x5);
	wr(&f, GHC, (1U << 31) | 2);
	assert_true(ok(packet(&f, cdb, 12, 0))); /* eject: the tray state is saved */
	assert_int_equal(f.pd->dev.ops->pause(&f.pd->dev), 0);
	a = devsnap_save_copy(&f.pd->dev, &alen);
	/* into a fresh HBA on the same images: identical state */
	{
		char kv[2][300], err[256];
		const char *keys[] = { "port.0.type=hd", kv[0], "port.1.type=cd", kv[1], NULL };

		snprintf(kv[0], sizeof(kv[0]), "port.0.path=%s", f.hd);
		snprintf(kv[1], sizeof(kv[1]), "port.1.path=%s", f.cd);
		memset(&g, 0, sizeof(g));
		fx_start_with(&g, &pci_emul_ahci, keys, err, sizeof(err));
		assert_non_null(g.pd);
	}
	assert_int_equal(devsnap_load(&g.pd->dev, a, alen, 1), 0);
	b = devsnap_save_copy(&g.pd->dev, &blen);
	assert_int_equal(alen, blen);
	assert_memory_equal(a, b, alen);
	assert_int_equal(rd(&g, PX(0, P_CLB)), CLB(0));
	assert_int_equal(rd(&g, PX(1, P_CMD)) & 0x11, 0x11);
	/* the restored CD still has its tray open */
	{
		uint8_t tur[12] = { 0 };

		g.pd->dev.ops->resume(&g.pd->dev);
		assert_true(packet(&g, tur, 12, 0) & 1);
		assert_int_equal(g.pd->dev.ops->pause(&g.pd->dev), 0);
	}
	/* refused: truncated, a wrong version, a wrong port count, bad bits; g unchanged */
	REFUSE(a, alen - 3, 1);
	REFUSE(a, alen, 2);
	/* The AHCI part follows the PCI part: nports = 2, GHC = AE | IE. */
	{
		static const uint8_t mark[8] = { 2, 0, 0, 0, 2, 0, 0, 0x80 };
		const uint8_t *m = memmem(a, alen, mark, sizeof(mark));
		size_t o, p0;

		assert_non_null(m);
		o = (size_t)(m - a);
		p0 = o + 8; /* port 0: type, sectors, lsize, serial, then its registers */
		bad = malloc(alen + 4);
		memcpy(bad, a, alen);
		bad[o] = 3; /* nports */
		REFUSE(bad, alen, 1);
		memcpy(bad, a, alen);
		bad[o + 7] |= 0x40; /* GHC reserved bit */
		REFUSE(bad, alen, 1);
		memcpy(bad, a, alen);
		bad[p0] = 1; /* port 0 is a CD in the snapshot */
		REFUSE(bad, alen, 1);
		memcpy(bad, a, alen);
		bad[p0 + 1] ^= 1; /* port 0's size */
		REFUSE(bad, alen, 1);
		memcpy(bad, a, alen);
		bad[p0 + 1 + 8 + 4] ^= 1; /* port 0's serial number */
		REFUSE(bad, alen, 1);
		memcpy(bad, a, alen);
		bad[p0 + 1 + 8 + 4 + 20] |= 0x01; /* port 0's CLB misaligned */
		REFUSE(bad, alen, 1);
		memcpy(bad, a, alen);
		bad[p0 + 1 + 8 + 4 + 20 + 24] |= 0x80; /* port 0's PxCMD reserved bit 7 */
		REFUSE(bad, alen, 1);
		memcpy(bad, a, alen);
		bad[alen - 1] = 9; /* the CD's media event out of range */
		REFUSE(bad, alen, 1);
		memcpy(bad, a, alen);
		bad[alen - 4] = 2; /* the CD's unit attention flag is not a boolean */
		REFUSE(bad, alen, 1);
		memcpy(bad, a, alen);
		memcpy(bad + alen, "xxxx", 4); /* trailing bytes */
		REFUSE(bad, alen + 4, 1);
		/*
		 * Port 0's registers (clb clbu fb fbu is ie cmd tfd sig ssts sctl serr sact ci
		 * sntf gen, halted, next): values no HBA state produces.
		 */
		const size_t r0 = p0 + 1 + 8 + 4 + 20;

		assert_int_equal(io_get(a + r0, 4), CLB(0));
		memcpy(bad, a, alen);
		bad[r0 + 8] |= 0x80; /* FIS base not 256-byte aligned */
		REFUSE(bad, alen, 1);
		memcpy(bad, a, alen);
		bad[r0 + 1] |= 0x02; /* CLB bit 9: not 1 KiB aligned */
		REFUSE(bad, alen, 1);
		memcpy(bad, a, alen);
		bad[r0 + 65] = 32; /* next slot: one past the 32 */
		REFUSE(bad, alen, 1);
		memcpy(bad, a, alen);
		bad[r0 + 41] |= 0x10; /* SCTL bit 12: reserved */
		REFUSE(bad, alen, 1);
		memcpy(bad, a, alen);
		bad[r0 + 16 + 1] |= 0x01; /* PxIS bit 8: not an interrupt AHCI 1.3 has */
		REFUSE(bad, alen, 1);
		memcpy(bad, a, alen);
		bad[r0 + 20 + 2] |= 0x20; /* PxIE bit 21 likewise */
		REFUSE(bad, alen, 1);
		memcpy(bad, a, alen);
		bad[r0 + 26] |= 0x20; /* PxCMD.ESP: this HBA has no eSATA port */
		REFUSE(bad, alen, 1);
		memcpy(bad, a, alen);
		bad[r0 + 24] &= (uint8_t)~0x01; /* engine stopped ... */
		bad[r0 + 48] = 0x01;		/* ... with a queued command active */
		REFUSE(bad, alen, 1);
		bad[r0 + 48] = 0;
		bad[r0 + 52] = 0x01; /* ... or one issued */
		REFUSE(bad, alen, 1);
		bad[r0 + 52] = 0;
		assert_int_equal(devsnap_load(&f.pd->dev, bad, alen, 1), 0); /* stopped, idle */
		/* Port 0's ATA state (wce smart mult xfer ...): a multiple count SET MULTIPLE refuses. */
		assert_int_equal(a[r0 + 71], 16); /* the power-on default */
		memcpy(bad, a, alen);
		bad[r0 + 71] = 3;
		REFUSE(bad, alen, 1);
		bad[r0 + 71] = 32;
		REFUSE(bad, alen, 1);
		bad[r0 + 71] = 0;
		assert_int_equal(devsnap_load(&f.pd->dev, bad, alen, 1), 0);
		/* Port 0's logical sector size differs from this disk's. */
		memcpy(bad, a, alen);
		bad[p0 + 1 + 8 + 1] ^= 0x10;
		REFUSE(bad, alen, 1);
		/* The CD's sense key (sense asc ascq ua tray locked event): past 0Fh. */
		memcpy(bad, a, alen);
		bad[alen - 7] = 0x10;
		REFUSE(bad, alen, 1);
		bad[alen - 7] = 0x0F;
		bad[alen - 1] = 2; /* new media: a valid event */
		assert_int_equal(devsnap_load(&f.pd->dev, bad, alen, 1), 0);
	}
	free(bad);
	free(a);
	free(b);
	g.hd[0] = g.cd[0] = '\0'; /* f's images: f removes them */
	fx_stop(&g);
	fx_stop(&f);
}

/* Pause with commands issued: they are all executed and completed before it returns. */
static void test_pause_drains(void **state)
{
	struct fx f = { 0 };
	struct prd prd[32];
	struct cmd c[32];

	fx_start(&f);
	port_start(&f, 0);
	for (unsigned s = 0; s < 32; s++) {
		prd[s] = (struct prd){ DATA + 4096ULL * s, 4096 };
		c[s] = (struct cmd){ .prd = &prd[s], .nprd = 1 };
		fis_ata(&c[s], 0x60, 8ULL * s, (uint16_t)(s << 3), 8);
		put_cmd(&f, 0, s, &c[s]);
	}
	wr(&f, PX(0, P_SACT), 0xFFFFFFFF);
	wr(&f, PX(0, P_CI), 0xFFFFFFFF);
	assert_int_equal(f.pd->dev.ops->pause(&f.pd->dev), 0);
	assert_int_equal(rd(&f, PX(0, P_SACT)), 0);
	assert_int_equal(rd(&f, PX(0, P_CI)), 0);
	/* a command issued while paused runs on resume */
	fis_ata(&c[0], 0x25, 0, 8, 0);
	put_cmd(&f, 0, 0, &c[0]);
	wr(&f, PX(0, P_CI), 1);
	usleep(20000);
	assert_int_equal(rd(&f, PX(0, P_CI)), 1);
	assert_int_equal(f.pd->dev.ops->resume(&f.pd->dev), 0);
	wait_done(&f, 0, P_CI, 1);
	fx_stop(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hba_registers),	   cmocka_unit_test(test_interrupts),
		cmocka_unit_test(test_identify),	   cmocka_unit_test(test_options),
		cmocka_unit_test(test_refusals),	   cmocka_unit_test(test_read_write),
		cmocka_unit_test(test_prdt_split),	   cmocka_unit_test(test_big_disk),
		cmocka_unit_test(test_malformed),	   cmocka_unit_test(test_ncq),
		cmocka_unit_test(test_dsm_smart_features), cmocka_unit_test(test_comreset),
		cmocka_unit_test(test_narrow_accesses),	   cmocka_unit_test(test_cd),
		cmocka_unit_test(test_snapshot),	   cmocka_unit_test(test_pause_drains),
		cmocka_unit_test(test_simple_commands),	   cmocka_unit_test(test_ata_fields),
		cmocka_unit_test(test_cd_tray_pages),	   cmocka_unit_test(test_register_corners),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
