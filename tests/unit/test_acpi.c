// SPDX-License-Identifier: BSD-2-Clause
/*
 * ACPI tables: build them into a RAM buffer and read them back as a guest would, from the
 * RSDP through the XSDT, checking every field against the ACPI specification's offsets (not
 * against khyve's own structs).  Each table is also disassembled with iasl (acpica-tools,
 * installed by scripts/deps.sh) and the DSDT recompiled; without iasl the tests fail.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "arch/x86/acpi.h"
#include "config.h"
#include "dev/pc/pm.h"
#include "dev/pc/vmgenid.h"
#include "vm.h"

#define RAM_SIZE (32 * MiB)

struct fixture {
	struct vm vm;
	struct config cfg;
	void *ram;
};

static struct fixture *fixture_new(unsigned ncpus, const char *const *coms)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	vm_init_bare(&f->vm, true);
	f->ram = calloc(1, RAM_SIZE);
	assert_non_null(f->ram);
	f->vm.mem[0] = (struct mem_region){ .gpa = 0, .size = RAM_SIZE, .hva = f->ram };
	f->vm.nmem = 1;
	f->vm.ram_size = RAM_SIZE;
	f->vm.ncpus = ncpus;
	config_init(&f->cfg);
	for (; coms && *coms; coms++) {
		char key[32];

		snprintf(key, sizeof(key), "lpc.%s.path", *coms);
		assert_int_equal(config_set(&f->cfg, key, "stdio"), 0);
	}
	f->vm.cfg = &f->cfg;
	return f;
}

static void fixture_free(struct fixture *f)
{
	config_free(&f->cfg);
	free(f->ram);
	free(f);
}

static const uint8_t *gp(struct fixture *f, uint64_t gpa, uint64_t len)
{
	const uint8_t *p = vm_gpa(&f->vm, gpa, len);

	assert_non_null(p);
	return p;
}

static uint8_t rd8(const uint8_t *p, unsigned off)
{
	return p[off];
}

static uint16_t rd16(const uint8_t *p, unsigned off)
{
	return (uint16_t)(p[off] | p[off + 1] << 8);
}

static uint32_t rd32(const uint8_t *p, unsigned off)
{
	return rd16(p, off) | (uint32_t)rd16(p, off + 2) << 16;
}

static uint64_t rd64(const uint8_t *p, unsigned off)
{
	return rd32(p, off) | (uint64_t)rd32(p, off + 4) << 32;
}

static uint8_t sum(const uint8_t *p, size_t len)
{
	uint8_t s = 0;

	while (len--)
		s += *p++;
	return s;
}

/* A table's header: signature, length within reason, checksum, OEM id, revision. */
static const uint8_t *table(struct fixture *f, uint64_t gpa, const char *sig, uint8_t rev)
{
	const uint8_t *h = gp(f, gpa, 36);
	uint32_t len = rd32(h, 4);

	assert_memory_equal(h, sig, 4);
	assert_true(len >= 36 && len < 0x10000);
	assert_true(gpa >= ACPI_TABLES_BASE && gpa + len <= ACPI_TABLES_END);
	h = gp(f, gpa, len);
	assert_int_equal(sum(h, len), 0);
	assert_int_equal(rd8(h, 8), rev);
	assert_memory_equal(h + 10, "KHYVE ", 6);
	return h;
}

struct tables {
	const uint8_t *rsdp, *xsdt, *rsdt, *fadt, *facs, *dsdt, *madt, *hpet, *mcfg;
};

static const uint8_t **slot(struct tables *t, const uint8_t *h)
{
	if (!memcmp(h, "FACP", 4))
		return &t->fadt;
	if (!memcmp(h, "APIC", 4))
		return &t->madt;
	if (!memcmp(h, "HPET", 4))
		return &t->hpet;
	if (!memcmp(h, "MCFG", 4))
		return &t->mcfg;
	fail_msg("unexpected table %.4s", (const char *)h);
	return NULL;
}

static uint8_t rev_of(const uint8_t *h)
{
	if (!memcmp(h, "FACP", 4))
		return 5;
	if (!memcmp(h, "APIC", 4))
		return 3;
	return 1;
}

/* RSDP → XSDT (and RSDT) → every table. */
static void walk(struct fixture *f, struct tables *t)
{
	uint64_t gpa;

	memset(t, 0, sizeof(*t));
	t->rsdp = gp(f, ACPI_TABLES_BASE, 36);
	assert_memory_equal(t->rsdp, "RSD PTR ", 8);
	assert_int_equal(sum(t->rsdp, 20), 0);
	assert_int_equal(rd8(t->rsdp, 15), 2);
	assert_int_equal(rd32(t->rsdp, 20), 36);
	assert_int_equal(sum(t->rsdp, 36), 0);
	assert_memory_equal(t->rsdp + 9, "KHYVE ", 6);

	t->xsdt = table(f, rd64(t->rsdp, 24), "XSDT", 1);
	t->rsdt = table(f, rd32(t->rsdp, 16), "RSDT", 1);
	assert_int_equal((rd32(t->xsdt, 4) - 36) / 8, 4);
	assert_int_equal((rd32(t->rsdt, 4) - 36) / 4, 4);
	for (unsigned i = 0; i < 4; i++) {
		const uint8_t *h;

		gpa = rd64(t->xsdt, 36 + 8 * i);
		assert_int_equal(rd32(t->rsdt, 36 + 4 * i), gpa);
		h = gp(f, gpa, 4);
		h = table(f, gpa, (const char *)h, rev_of(h));
		assert_null(*slot(t, h));
		*slot(t, h) = h;
	}
	assert_non_null(t->fadt);
	assert_non_null(t->madt);
	assert_non_null(t->hpet);
	assert_non_null(t->mcfg);

	gpa = rd64(t->fadt, 140);
	assert_int_equal(rd32(t->fadt, 40), gpa);
	t->dsdt = table(f, gpa, "DSDT", 2);
	gpa = rd32(t->fadt, 36);
	assert_int_equal(gpa % 64, 0);
	t->facs = gp(f, gpa, 64);
	assert_memory_equal(t->facs, "FACS", 4);
	assert_int_equal(rd32(t->facs, 4), 64);
}

static void check_gas(const uint8_t *p, unsigned off, uint8_t space, uint8_t width, uint64_t addr)
{
	assert_int_equal(rd8(p, off), space);
	assert_int_equal(rd8(p, off + 1), width);
	assert_int_equal(rd8(p, off + 2), 0);
	assert_int_equal(rd64(p, off + 4), addr);
}

static void check_fadt(const uint8_t *fadt)
{
	uint32_t flags = rd32(fadt, 112);

	assert_int_equal(rd32(fadt, 4), 268);
	assert_int_equal(rd16(fadt, 46), 9);	 /* SCI_INT */
	assert_int_equal(rd32(fadt, 48), 0);	 /* no SMI_CMD: always in ACPI mode */
	assert_int_equal(rd32(fadt, 56), 0x400); /* PM1a_EVT_BLK */
	assert_int_equal(rd32(fadt, 60), 0);
	assert_int_equal(rd32(fadt, 64), 0x404); /* PM1a_CNT_BLK */
	assert_int_equal(rd32(fadt, 68), 0);
	assert_int_equal(rd32(fadt, 76), 0x408); /* PM_TMR_BLK */
	assert_int_equal(rd8(fadt, 88), 4);
	assert_int_equal(rd8(fadt, 89), 2);
	assert_int_equal(rd8(fadt, 91), 4);
	assert_int_equal(rd16(fadt, 109) & 0x7, 0x5); /* LEGACY_DEVICES, no 8042, no VGA */
	assert_true(flags & (1u << 0));		      /* WBINVD */
	assert_false(flags & (1u << 8));	      /* TMR_VAL_EXT: 24-bit timer */
	assert_true(flags & (1u << 10));	      /* RESET_REG_SUP */
	assert_false(flags & (1u << 6));	      /* FIX_RTC: RTC_STS is in PM1 */
	assert_false(flags & (1u << 20));	      /* not HW_REDUCED */
	check_gas(fadt, 116, 1, 8, 0xCF9);	      /* RESET_REG */
	assert_int_equal(rd8(fadt, 128), 6);
	check_gas(fadt, 148, 1, 32, 0x400); /* X_PM1a_EVT_BLK */
	check_gas(fadt, 172, 1, 16, 0x404); /* X_PM1a_CNT_BLK */
	check_gas(fadt, 208, 1, 32, 0x408); /* X_PM_TMR_BLK */
}

static void check_madt(const uint8_t *madt, unsigned ncpus)
{
	unsigned n = 0, nlapic = 0, nioapic = 0, novr = 0, nnmi = 0;
	uint32_t len = rd32(madt, 4);

	assert_int_equal(rd32(madt, 36), 0xFEE00000);
	assert_int_equal(rd32(madt, 40) & 1, 1); /* PCAT_COMPAT */
	for (unsigned off = 44; off < len; off += rd8(madt, off + 1), n++) {
		const uint8_t *e = madt + off;

		assert_true(e[1] >= 2 && off + e[1] <= len);
		switch (e[0]) {
		case 0:
			assert_int_equal(e[1], 8);
			assert_int_equal(e[2], nlapic); /* processor UID */
			assert_int_equal(e[3], nlapic); /* APIC id */
			assert_int_equal(rd32(e, 4) & 1, 1);
			nlapic++;
			break;
		case 1:
			assert_int_equal(e[1], 12);
			assert_int_equal(e[2], 0);
			assert_int_equal(rd32(e, 4), 0xFEC00000);
			assert_int_equal(rd32(e, 8), 0);
			nioapic++;
			break;
		case 2:
			assert_int_equal(e[1], 10);
			assert_int_equal(e[2], 0);
			if (e[3] == 0) {
				assert_int_equal(rd32(e, 4), 2);
				assert_int_equal((rd16(e, 8) >> 2) & 3, 1); /* edge */
			} else {
				assert_int_equal(e[3], 9);
				assert_int_equal(rd32(e, 4), 9);
				assert_int_equal(rd16(e, 8) & 3, 1);	    /* high */
				assert_int_equal((rd16(e, 8) >> 2) & 3, 3); /* level */
			}
			novr++;
			break;
		case 4:
			assert_int_equal(e[1], 6);
			assert_int_equal(e[5], 1); /* LINT1 */
			nnmi++;
			break;
		default:
			fail_msg("unexpected MADT entry type %u", e[0]);
		}
	}
	assert_int_equal(nlapic, ncpus);
	assert_int_equal(nioapic, 1);
	assert_int_equal(novr, 2);
	assert_int_equal(nnmi, 1);
	assert_int_equal(n, ncpus + 1 + 2 + 1);
}

static void check_hpet_mcfg(const uint8_t *hpet, const uint8_t *mcfg)
{
	assert_int_equal(rd32(hpet, 4), 56);
	assert_int_equal(((rd32(hpet, 36) >> 8) & 0x1F) + 1, 3); /* comparators */
	check_gas(hpet, 40, 0, 64, 0xFED00000);
	assert_true(rd16(hpet, 53) > 0); /* minimum tick */

	assert_int_equal(rd32(mcfg, 4), 60);
	assert_int_equal(rd64(mcfg, 44), 0xE0000000);
	assert_int_equal(rd16(mcfg, 52), 0);
	assert_int_equal(rd8(mcfg, 54), 0);
	assert_int_equal(rd8(mcfg, 55), 0);
}

static unsigned count(const uint8_t *p, size_t len, const void *pat, size_t plen)
{
	unsigned n = 0;

	for (size_t i = 0; i + plen <= len; i++)
		n += !memcmp(p + i, pat, plen);
	return n;
}

/* EisaId("PNP0501") as AML: DWordPrefix and the compressed id. */
static const uint8_t eisa_pnp0501[] = { 0x0C, 0x41, 0xD0, 0x05, 0x01 };
static const uint8_t eisa_pnp0a08[] = { 0x0C, 0x41, 0xD0, 0x0A, 0x08 };
static const uint8_t s5_package[] = { '_',  'S',  '5',	'_',  0x12, 0x08, 0x04,
				      0x0A, 0x05, 0x0A, 0x05, 0x00, 0x00 };

static void check_dsdt(const uint8_t *dsdt, unsigned ncpus, const char *const *coms)
{
	size_t len = rd32(dsdt, 4);
	unsigned ncom = 0;

	assert_int_equal(count(dsdt, len, s5_package, sizeof(s5_package)), 1);
	assert_int_equal(count(dsdt, len, eisa_pnp0a08, sizeof(eisa_pnp0a08)), 1);
	assert_int_equal(count(dsdt, len, "ACPI0007", 8), ncpus);
	for (unsigned i = 1; i <= 4; i++) {
		char name[8];
		bool want = false;

		snprintf(name, sizeof(name), "COM%u", i);
		for (const char *const *c = coms; *c; c++)
			want |= !strcasecmp(*c, name);
		assert_int_equal(count(dsdt, len, name, 4), want);
		ncom += want;
	}
	assert_int_equal(count(dsdt, len, eisa_pnp0501, sizeof(eisa_pnp0501)), ncom);
	assert_int_equal(count(dsdt, len, "_PRT", 4), 1);
}

/* iasl: disassemble every table; recompile the DSDT.  Any error fails the test. */
static bool have_iasl(void)
{
	return system("command -v iasl >/dev/null 2>&1") == 0;
}

static void iasl_check(const struct tables *t)
{
	const uint8_t *all[] = { t->dsdt, t->fadt, t->madt, t->hpet, t->mcfg, t->xsdt, t->rsdt };
	char dir[] = "/tmp/khyve-acpi-XXXXXX", cmd[512];

	/* A machine without iasl has not checked the tables: that is a failure, not a pass. */
	if (!have_iasl())
		fail_msg("iasl (acpica-tools) is not installed, so the tables cannot be "
			 "disassembled and the DSDT recompiled: run scripts/deps.sh");
	assert_non_null(mkdtemp(dir));
	for (unsigned i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		char path[600];
		FILE *fp;

		snprintf(path, sizeof(path), "%s/%.4s.dat", dir, (const char *)all[i]);
		fp = fopen(path, "wb");
		assert_non_null(fp);
		assert_int_equal(fwrite(all[i], rd32(all[i], 4), 1, fp), 1);
		fclose(fp);
		/* iasl exits 0 even on some complaints: also fail on "Error"/"Invalid" lines. */
		snprintf(cmd, sizeof(cmd),
			 "cd %s && iasl -d %.4s.dat >%.4s.log 2>&1 && "
			 "! grep -Ei 'error|invalid|warning' %.4s.log %.4s.dsl",
			 dir, (const char *)all[i], (const char *)all[i], (const char *)all[i],
			 (const char *)all[i]);
		if (system(cmd) != 0)
			fail_msg("iasl disassembly of %.4s failed: see %s", (const char *)all[i],
				 dir);
	}
	/* Recompiling catches what a disassembler tolerates (missing _HID, bad ranges). */
	snprintf(cmd, sizeof(cmd),
		 "cd %s && iasl -p recompiled DSDT.dsl >compile.log 2>&1 && "
		 "grep -q 'Compilation successful. 0 Errors, 0 Warnings' compile.log",
		 dir);
	if (system(cmd) != 0)
		fail_msg("iasl could not recompile the DSDT: see %s/compile.log", dir);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

static void build_and_check(unsigned ncpus, const char *const *coms, bool iasl)
{
	struct fixture *f = fixture_new(ncpus, coms);
	char err[256] = "";
	struct tables t;

	assert_int_equal(acpi_build(&f->vm, err, sizeof(err)), 0);
	walk(f, &t);
	check_fadt(t.fadt);
	check_madt(t.madt, ncpus);
	check_hpet_mcfg(t.hpet, t.mcfg);
	check_dsdt(t.dsdt, ncpus, coms);
	if (iasl)
		iasl_check(&t);
	fixture_free(f);
}

static const uint8_t *memfind(const uint8_t *hay, size_t n, const void *needle, size_t m)
{
	for (size_t i = 0; i + m <= n; i++)
		if (!memcmp(hay + i, needle, m))
			return hay + i;
	return NULL;
}

/*
 * VM Generation ID: \_SB.VGEN's ADDR returns the address of 16 reserved bytes holding a
 * random id, and a GED on its IRQ notifies it; iasl accepts all of it.
 */
static void test_acpi_vmgenid(void **state)
{
	static const char *const coms[] = { "com1", NULL };
	struct fixture *f = fixture_new(2, coms);
	const uint8_t *p, zero[16] = { 0 };
	char err[256] = "";
	struct tables t;
	struct dev *d;
	uint64_t gpa;

	assert_int_equal(vmgenid_create(&f->vm, false, err, sizeof(err)), 0);
	d = vm_find_dev(&f->vm, "vmgenid");
	assert_non_null(d);
	assert_int_equal(acpi_build(&f->vm, err, sizeof(err)), 0);
	walk(f, &t);
	check_dsdt(t.dsdt, 2, coms);
	p = memfind(t.dsdt, rd32(t.dsdt, 4), "ADDR", 4);
	assert_non_null(p);
	/* flags 0, Return, Package(2) { DWord, DWord } */
	assert_int_equal(p[4], 0x00);
	assert_int_equal(p[5], 0xA4);
	assert_int_equal(p[6], 0x12);
	assert_int_equal(p[8], 2);
	assert_int_equal(p[9], 0x0C);
	assert_int_equal(p[14], 0x0C);
	gpa = rd32(p, 10) | (uint64_t)rd32(p, 15) << 32;
	assert_true(gpa >= ACPI_TABLES_BASE && gpa + 16 <= ACPI_TABLES_END);
	assert_int_equal(gpa % 16, 0);
	assert_memory_not_equal(gp(f, gpa, 16), zero, 16);
	assert_non_null(memfind(t.dsdt, rd32(t.dsdt, 4), "VM_Gen_Counter", 14));
	assert_non_null(memfind(t.dsdt, rd32(t.dsdt, 4), "ACPI0013", 8));
	iasl_check(&t);
	d->ops->destroy(d);
	fixture_free(f);
}

static const char *const com12[] = { "com1", "com2", NULL };
static const char *const com13[] = { "com1", "com3", NULL };
static const char *const com_none[] = { NULL };

static void test_acpi_1cpu(void **state)
{
	build_and_check(1, com12, true);
}

static void test_acpi_4cpu(void **state)
{
	build_and_check(4, com12, true);
}

static void test_acpi_com_ports_present_only(void **state)
{
	build_and_check(2, com13, false);
	build_and_check(2, com_none, false);
}

static void test_acpi_max_cpus(void **state)
{
	build_and_check(255, com12, true);
}

/* A large guest: the 64-bit PCI window sits above the RAM above 4 GiB. */
static void test_acpi_mmio64_above_ram(void **state)
{
	struct fixture *f = fixture_new(2, com12);
	/* QWordMemory descriptor: tag 0x8A, length 43, type memory. */
	static const uint8_t qword_mem[] = { 0x8A, 43, 0, 0 };
	char err[256] = "";
	struct tables t;
	const uint8_t *q;
	size_t len;

	f->vm.ram_size = 6 * GiB; /* only the low 32 MiB are backed; the tables live there */
	assert_int_equal(acpi_build(&f->vm, err, sizeof(err)), 0);
	walk(f, &t);
	len = rd32(t.dsdt, 4);
	q = memmem(t.dsdt, len, qword_mem, sizeof(qword_mem));
	assert_non_null(q);
	assert_true(rd64(q, 14) >= 4 * GiB + (6 * GiB - 3 * GiB)); /* min */
	assert_int_equal(rd64(q, 14) % GiB, 0);
	assert_int_equal(rd64(q, 22), rd64(q, 14) + rd64(q, 38) - 1); /* max */
	fixture_free(f);
}

/* The DWord memory windows of the DSDT at @dsdt: up to @max (min, max) pairs. */
static unsigned dword_windows(const uint8_t *dsdt, uint32_t w[][2], unsigned max)
{
	static const uint8_t tag[] = { 0x87, 23, 0, 0 }; /* DWord address, memory */
	size_t len = rd32(dsdt, 4), off = 0;
	unsigned n = 0;
	const uint8_t *p;

	while (n < max && (p = memmem(dsdt + off, len - off, tag, sizeof(tag)))) {
		w[n][0] = rd32(p, 10);
		w[n][1] = rd32(p, 14);
		assert_int_equal(rd32(p, 22), w[n][1] - w[n][0] + 1); /* length */
		n++;
		off = (size_t)(p - dsdt) + 26;
	}
	return n;
}

/* iasl disassembles @dsdt and the text holds every line of @want (extended regexes). */
static void iasl_dsdt_says(const uint8_t *dsdt, const char *const *want)
{
	char dir[] = "/tmp/khyve-acpi-XXXXXX", cmd[700], path[64];
	FILE *fp;

	if (!have_iasl()) {
		fprintf(stderr, "*** SKIPPED: iasl (acpica-tools) is not installed ***\n");
		return;
	}
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/DSDT.dat", dir);
	fp = fopen(path, "wb");
	assert_non_null(fp);
	assert_int_equal(fwrite(dsdt, rd32(dsdt, 4), 1, fp), 1);
	fclose(fp);
	snprintf(cmd, sizeof(cmd),
		 "cd %s && iasl -d DSDT.dat >log 2>&1 && ! grep -Ei 'error|invalid|warning' log "
		 "DSDT.dsl && iasl -p re DSDT.dsl >compile.log 2>&1 && "
		 "grep -q 'Compilation successful. 0 Errors, 0 Warnings' compile.log",
		 dir);
	if (system(cmd) != 0)
		fail_msg("iasl: the firmware DSDT does not disassemble and recompile: see %s", dir);
	for (; *want; want++) {
		snprintf(cmd, sizeof(cmd), "grep -Eq '%s' %s/DSDT.dsl", *want, dir);
		if (system(cmd) != 0)
			fail_msg("the disassembled DSDT (%s/DSDT.dsl) has no line matching '%s'",
				 dir, *want);
	}
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

/*
 * The tables firmware installs: the root bridge's 32-bit windows are where SeaBIOS puts BARs
 * (top down from the IOAPIC to 2 GiB, or 3 GiB above 2 GiB of low RAM), around the ECAM.
 */
static void test_acpi_firmware_windows(void **state)
{
	static const char *const want[] = {
		"0x80000000, +// Range Minimum",	 "0xDFFFFFFF, +// Range Maximum",
		"0xE0100000, +// Range Minimum",	 "0xFEBFFFFF, +// Range Maximum",
		"0x0000000100000000, +// Range Minimum", NULL,
	};
	struct fixture *f = fixture_new(2, com12);
	uint8_t *img = calloc(1, 128 * 1024);
	uint32_t w[4][2];
	const uint8_t *dsdt;
	char err[256] = "";
	size_t len = 0;

	assert_non_null(img);
	assert_int_equal(acpi_build_image(&f->vm, img, 128 * 1024, &len, err, sizeof(err)), 0);
	dsdt = memmem(img, len, "DSDT", 4);
	assert_non_null(dsdt);
	assert_int_equal(sum(dsdt, rd32(dsdt, 4)), 0);
	assert_int_equal(dword_windows(dsdt, w, 4), 2);
	assert_int_equal(w[0][0], 0x80000000);
	assert_int_equal(w[0][1], 0xDFFFFFFF);
	assert_int_equal(w[1][0], 0xE0100000);
	assert_int_equal(w[1][1], 0xFEBFFFFF);
	iasl_dsdt_says(dsdt, want);
	/* 2.5 GiB of RAM: SeaBIOS starts at 3 GiB, the top of khyve's low RAM. */
	f->vm.ram_size = 2 * GiB + 512 * MiB;
	assert_int_equal(acpi_build_image(&f->vm, img, 128 * 1024, &len, err, sizeof(err)), 0);
	dsdt = memmem(img, len, "DSDT", 4);
	assert_int_equal(dword_windows(dsdt, w, 4), 2);
	assert_int_equal(w[0][0], 0xC0000000);
	assert_int_equal(w[1][1], 0xFEBFFFFF);
	/* Without firmware, khyve's own window, which its BAR allocator uses. */
	f->vm.ram_size = RAM_SIZE;
	assert_int_equal(acpi_build(&f->vm, err, sizeof(err)), 0);
	dsdt = memmem(gp(f, 0xE0000, 0x20000), 0x20000, "DSDT", 4);
	assert_non_null(dsdt);
	assert_int_equal(dword_windows(dsdt, w, 4), 1);
	assert_int_equal(w[0][0], 0xC0000000);
	assert_int_equal(w[0][1], 0xDFFFFFFF);
	free(img);
	fixture_free(f);
}

/* The PM block learns where the FACS is, so the platform's side of the global lock works. */
static void test_acpi_facs_global_lock(void **state)
{
	struct fixture *f = fixture_new(1, com12);
	char err[256] = "";
	struct dev *pm = pm_create(&f->vm, err, sizeof(err));
	struct tables t;

	assert_non_null(pm);
	assert_int_equal(acpi_build(&f->vm, err, sizeof(err)), 0);
	walk(f, &t);
	assert_int_equal(rd32(t.facs, 16), 0); /* global lock free */
	assert_false(rd32(t.facs, 32) & 1);    /* FACS flags: no S4BIOS */
	assert_int_equal(pm_global_lock_acquire(pm), 0);
	assert_int_equal(rd32(t.facs, 16), GL_OWNED);
	assert_int_equal(pm_global_lock_release(pm), 0);
	assert_int_equal(rd32(t.facs, 16), 0);
	f->vm.nmem = 0; /* the fixture frees its RAM itself */
	vm_destroy(&f->vm);
	fixture_free(f);
}

static void test_acpi_refuses(void **state)
{
	struct fixture *f = fixture_new(0, com12);
	char err[256] = "";

	assert_int_equal(acpi_build(&f->vm, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "0 vCPUs"));
	f->vm.ncpus = 256;
	assert_int_equal(acpi_build(&f->vm, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "256 vCPUs"));
	/* RAM that does not reach the table area. */
	f->vm.ncpus = 1;
	f->vm.mem[0].size = 0xE0000;
	assert_int_equal(acpi_build(&f->vm, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "does not cover"));
	fixture_free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_acpi_1cpu),
		cmocka_unit_test(test_acpi_4cpu),
		cmocka_unit_test(test_acpi_com_ports_present_only),
		cmocka_unit_test(test_acpi_max_cpus),
		cmocka_unit_test(test_acpi_mmio64_above_ram),
		cmocka_unit_test(test_acpi_firmware_windows),
		cmocka_unit_test(test_acpi_facs_global_lock),
		cmocka_unit_test(test_acpi_refuses),
		cmocka_unit_test(test_acpi_vmgenid),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
