// SPDX-License-Identifier: MIT
/*
 * khyve test guest, ring 3: ACPI tables. Everything the guest needs to
 * know about the platform (CPUs, IOAPIC, ISA overrides, HPET, PM timer,
 * PM1 blocks, S5 sleep type) comes from here, so the same image runs on
 * khyve and on QEMU, whose addresses differ.
 */
#include "user.h"

struct platform plat;

struct sdt {
	char sig[4];
	u32 length;
	u8 revision;
	u8 checksum;
	char oem[6];
	char oem_table[8];
	u32 oem_rev;
	u32 creator;
	u32 creator_rev;
} __attribute__((packed));

static u8 rd8(const void *p, u32 off) { return *((const u8 *)p + off); }
static u16 rd16(const void *p, u32 off) { return *(const u16 *)((const u8 *)p + off); }
static u32 rd32(const void *p, u32 off) { return *(const u32 *)((const u8 *)p + off); }
static u64 rd64(const void *p, u32 off) { return *(const u64 *)((const u8 *)p + off); }

static bool checksum_ok(const void *p, u32 len)
{
	const u8 *b = p;
	u8 sum = 0;

	while (len--)
		sum += *b++;
	return sum == 0;
}

static bool rsdp_valid(u64 a)
{
	return !memcmp((void *)a, "RSD PTR ", 8) && checksum_ok((void *)a, 20);
}

static u64 rsdp_find(u64 hint)
{
	u64 a;

	if (hint && rsdp_valid(hint))
		return hint;
	for (a = 0xe0000; a < 0x100000; a += 16)
		if (rsdp_valid(a))
			return a;
	return 0;
}

/* Walk the XSDT (or RSDT) and return the table with signature sig. */
static const struct sdt *acpi_table(const char *sig)
{
	const void *r = (const void *)plat.rsdp;
	const struct sdt *root;
	u32 i, n, esz;
	u64 t;

	if (rd8(r, 15) >= 2 && rd64(r, 24)) {
		root = (const void *)rd64(r, 24);
		esz = 8;
	} else {
		root = (const void *)(u64)rd32(r, 16);
		esz = 4;
	}
	n = (root->length - sizeof(*root)) / esz;
	for (i = 0; i < n; i++) {
		u32 off = sizeof(*root) + i * esz;

		t = esz == 8 ? rd64(root, off) : rd32(root, off);
		if (t && !memcmp((void *)t, sig, 4))
			return (const void *)t;
	}
	return NULL;
}

static void madt_entry(const u8 *e)
{
	switch (e[0]) {
	case 0:	/* processor local APIC */
		if ((rd32(e, 4) & 1) && plat.ncpus < MAX_CPUS)
			plat.apic_id[plat.ncpus++] = e[3];
		break;
	case 1:	/* IOAPIC: use the one with GSI base 0 */
		if (!plat.ioapic_base || rd32(e, 8) == 0) {
			plat.ioapic_base = rd32(e, 4);
			plat.ioapic_gsi_base = rd32(e, 8);
		}
		break;
	case 2:	/* interrupt source override */
		if (plat.noverrides < 16) {
			struct irq_override *o = &plat.overrides[plat.noverrides++];

			o->source = e[3];
			o->gsi = rd32(e, 4);
			o->flags = rd16(e, 8);
		}
		break;
	case 5:	/* local APIC address override */
		plat.lapic_base = rd64(e, 4);
		break;
	}
}

static int madt_parse(void)
{
	const struct sdt *m = acpi_table("APIC");
	const u8 *p, *end;

	if (!m)
		return -1;
	plat.lapic_base = rd32(m, 36);
	p = (const u8 *)m + 44;
	end = (const u8 *)m + m->length;
	while (p + 2 <= end && p[1] >= 2) {
		madt_entry(p);
		p += p[1];
	}
	return plat.ncpus ? 0 : -1;
}

/* ISA IRQ -> GSI with polarity/trigger, per the MADT overrides. */
u32 isa_gsi(u8 irq, bool *level, bool *low)
{
	u32 i;

	*level = false;
	*low = false;
	for (i = 0; i < plat.noverrides; i++) {
		struct irq_override *o = &plat.overrides[i];

		if (o->source != irq)
			continue;
		*low = (o->flags & 3) == 3;
		*level = ((o->flags >> 2) & 3) == 3;
		return o->gsi;
	}
	return irq;
}

/* A FADT register: prefer the 64-bit GAS when it names an I/O port. */
static u16 fadt_port(const struct sdt *f, u32 legacy_off, u32 gas_off)
{
	if (f->length >= gas_off + 12 && rd8(f, gas_off) == 1 && rd64(f, gas_off + 4))
		return rd64(f, gas_off + 4);
	return rd32(f, legacy_off);
}

/* AML integer at p (ZeroOp, OneOp, BytePrefix, WordPrefix). */
static int aml_int(const u8 *p, u16 *v)
{
	switch (p[0]) {
	case 0x00: *v = 0; return 1;
	case 0x01: *v = 1; return 1;
	case 0x0a: *v = p[1]; return 2;
	case 0x0b: *v = rd16(p, 1); return 3;
	}
	*v = p[0];
	return 1;
}

/* Find Name(_S5_, Package() {a, b, ...}) in the DSDT's AML bytes. */
static void dsdt_s5(const struct sdt *d)
{
	const u8 *p = (const u8 *)d + sizeof(*d);
	const u8 *end = (const u8 *)d + d->length;

	for (; p + 8 < end; p++) {
		if (memcmp(p, "_S5_", 4) || p[4] != 0x12)
			continue;
		p += 5;
		p += 1 + (p[0] >> 6);	/* PkgLength */
		p++;			/* NumElements */
		p += aml_int(p, &plat.slp_typa);
		aml_int(p, &plat.slp_typb);
		plat.have_s5 = true;
		return;
	}
}

static const u8 *aml_find(const u8 *p, const u8 *end, const char *s, u32 n)
{
	for (; p + n <= end; p++)
		if (!memcmp(p, s, n))
			return p;
	return 0;
}

/*
 * VM Generation ID: Method(ADDR) { Return (Package(2) { DWord lo, DWord hi }) } in the
 * VGEN device, and the IRQ in the _CRS of the Generic Event Device (ACPI0013) that notifies
 * it.  Only the encodings khyve writes are understood; anything else means "none".
 */
static void dsdt_vmgenid(const struct sdt *d)
{
	const u8 *p = (const u8 *)d + sizeof(*d);
	const u8 *end = (const u8 *)d + d->length;
	const u8 *a = aml_find(p, end, "ADDR", 4), *g, *c;

	plat.vmgenid_irq = 0xff;
	if (a && a + 19 <= end && a[4] == 0 && a[5] == 0xa4 && a[6] == 0x12 && a[8] == 2 &&
	    a[9] == 0x0c && a[14] == 0x0c)
		plat.vmgenid = rd32(a, 10) | (u64)rd32(a, 15) << 32;
	g = aml_find(p, end, "ACPI0013", 8);
	c = g ? aml_find(g, end, "_CRS", 4) : 0;
	for (u32 i = 0; c && i < 12 && c + i + 3 <= end; i++) {
		u16 mask = rd16(c, i + 1);

		if (c[i] == 0x22 && mask && !(mask & (mask - 1))) {
			plat.vmgenid_irq = (u8)__builtin_ctz(mask);
			break;
		}
	}
}

static int fadt_parse(void)
{
	const struct sdt *f = acpi_table("FACP");
	u64 dsdt;

	if (!f)
		return -1;
	plat.sci = rd16(f, 46);
	plat.pm1a_evt = fadt_port(f, 56, 148);
	plat.pm1_evt_len = rd8(f, 88);
	plat.pm1a_cnt = fadt_port(f, 64, 172);
	plat.pm1b_cnt = fadt_port(f, 68, 184);
	plat.pm_tmr = fadt_port(f, 76, 208);
	plat.pm_tmr_32 = rd32(f, 112) & (1 << 8);
	if (f->length >= 129) {
		plat.reset_space = rd8(f, 116);
		plat.reset_addr = rd64(f, 120);
		plat.reset_val = rd8(f, 128);
	}
	dsdt = f->length >= 148 && rd64(f, 140) ? rd64(f, 140) : rd32(f, 40);
	if (dsdt && !memcmp((void *)dsdt, "DSDT", 4)) {
		dsdt_s5((const void *)dsdt);
		dsdt_vmgenid((const void *)dsdt);
	}
	return 0;
}

static void hpet_parse(void)
{
	const struct sdt *h = acpi_table("HPET");

	if (h && h->length >= 52)
		plat.hpet_base = rd64(h, 44);
}

int acpi_parse(u64 rsdp_hint)
{
	plat.rsdp = rsdp_find(rsdp_hint);
	if (!plat.rsdp)
		return -1;
	if (madt_parse() || fadt_parse())
		return -2;
	hpet_parse();
	if (!plat.ioapic_base)
		plat.ioapic_base = IOAPIC_DEFAULT;
	return 0;
}
