// SPDX-License-Identifier: BSD-2-Clause
/*
 * ACPI tables, laid out from the ACPI specification (6.x numbering; the FADT is revision 5,
 * minor 1, which every OS since Windows 8 and Linux 3.x reads).  All tables are written once,
 * before the guest starts, into 0xE0000..0xFFFFF.
 */
#include "arch/x86/acpi.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "arch/x86/aml.h"
#include "arch/x86/e820.h"
#include "dev/pc/atkbdc.h"
#include "dev/pc/pm.h"
#include "dev/pci/lpc.h"
#include "dev/pci/pci.h"
#include "dev/pc/vmgenid.h"
#include "vm.h"

#define PACKED __attribute__((packed))

struct acpi_header {
	char sig[4];
	uint32_t length;
	uint8_t revision;
	uint8_t checksum;
	char oem_id[6];
	char oem_table_id[8];
	uint32_t oem_revision;
	char creator_id[4];
	uint32_t creator_revision;
} PACKED;

struct acpi_rsdp {
	char sig[8];
	uint8_t checksum; /* over the first 20 bytes (ACPI 1.0 part) */
	char oem_id[6];
	uint8_t revision; /* 2: ACPI 2.0+, has the XSDT */
	uint32_t rsdt;
	uint32_t length;
	uint64_t xsdt;
	uint8_t ext_checksum; /* over all 36 bytes */
	uint8_t reserved[3];
} PACKED;

/* Generic Address Structure. */
struct acpi_gas {
	uint8_t space;
	uint8_t bit_width;
	uint8_t bit_offset;
	uint8_t access_size;
	uint64_t address;
} PACKED;

struct acpi_fadt {
	struct acpi_header h;
	uint32_t facs, dsdt;
	uint8_t reserved0, pm_profile;
	uint16_t sci_int;
	uint32_t smi_cmd;
	uint8_t acpi_enable, acpi_disable, s4bios_req, pstate_cnt;
	uint32_t pm1a_evt, pm1b_evt, pm1a_cnt, pm1b_cnt, pm2_cnt, pm_tmr, gpe0, gpe1;
	uint8_t pm1_evt_len, pm1_cnt_len, pm2_cnt_len, pm_tmr_len;
	uint8_t gpe0_len, gpe1_len, gpe1_base, cst_cnt;
	uint16_t p_lvl2_lat, p_lvl3_lat, flush_size, flush_stride;
	uint8_t duty_offset, duty_width, day_alrm, mon_alrm, century;
	uint16_t iapc_boot_arch;
	uint8_t reserved1;
	uint32_t flags;
	struct acpi_gas reset_reg;
	uint8_t reset_value;
	uint16_t arm_boot_arch;
	uint8_t minor_version;
	uint64_t x_facs, x_dsdt;
	struct acpi_gas x_pm1a_evt, x_pm1b_evt, x_pm1a_cnt, x_pm1b_cnt, x_pm2_cnt, x_pm_tmr;
	struct acpi_gas x_gpe0, x_gpe1, sleep_control, sleep_status;
} PACKED;

struct acpi_facs {
	char sig[4];
	uint32_t length;
	uint32_t hw_signature;
	uint32_t waking_vector;
	uint32_t global_lock;
	uint32_t flags;
	uint64_t x_waking_vector;
	uint8_t version;
	uint8_t reserved0[3];
	uint32_t ospm_flags;
	uint8_t reserved1[24];
} PACKED;

struct acpi_madt {
	struct acpi_header h;
	uint32_t lapic_addr;
	uint32_t flags;
} PACKED;

struct madt_lapic {
	uint8_t type, length, uid, apic_id;
	uint32_t flags;
} PACKED;

struct madt_ioapic {
	uint8_t type, length, id, reserved;
	uint32_t addr, gsi_base;
} PACKED;

struct madt_override {
	uint8_t type, length, bus, source;
	uint32_t gsi;
	uint16_t flags;
} PACKED;

struct madt_lapic_nmi {
	uint8_t type, length, uid;
	uint16_t flags;
	uint8_t lint;
} PACKED;

struct acpi_hpet {
	struct acpi_header h;
	uint32_t block_id;
	struct acpi_gas base;
	uint8_t number;
	uint16_t min_tick;
	uint8_t page_protection;
} PACKED;

struct acpi_mcfg {
	struct acpi_header h;
	uint8_t reserved[8];
	uint64_t base;
	uint16_t segment;
	uint8_t start_bus, end_bus;
	uint32_t reserved1;
} PACKED;

_Static_assert(sizeof(struct acpi_header) == 36, "ACPI header");
_Static_assert(sizeof(struct acpi_rsdp) == 36, "RSDP");
_Static_assert(sizeof(struct acpi_fadt) == 268, "FADT rev 5");
_Static_assert(offsetof(struct acpi_fadt, reset_reg) == 116, "FADT reset register");
_Static_assert(offsetof(struct acpi_fadt, x_pm_tmr) == 208, "FADT X_PM_TMR_BLK");
_Static_assert(sizeof(struct acpi_facs) == 64, "FACS");
_Static_assert(sizeof(struct acpi_hpet) == 56, "HPET");
_Static_assert(sizeof(struct acpi_mcfg) == 60, "MCFG");

#define GAS_MEMORY 0
#define GAS_IO 1
#define GAS_BYTE 1
#define GAS_WORD 2
#define GAS_DWORD 3

#define FADT_WBINVD (1u << 0)
#define FADT_PROC_C1 (1u << 2)
#define FADT_SLP_BUTTON (1u << 5) /* no sleep button */
#define FADT_RESET_REG_SUP (1u << 10)
#define BOOT_ARCH_LEGACY_DEVICES (1u << 0)
#define BOOT_ARCH_8042 (1u << 1)
#define BOOT_ARCH_VGA_NOT_PRESENT (1u << 2)

#define MADT_PCAT_COMPAT 1u /* dual 8259 present (KVM's PIC) */
#define MADT_LAPIC 0
#define MADT_IOAPIC 1
#define MADT_OVERRIDE 2
#define MADT_LAPIC_NMI 4
/* MPS INTI flags: polarity in bits 1:0, trigger mode in bits 3:2. */
#define INTI_ACTIVE_HIGH 0x1
#define INTI_EDGE 0x4
#define INTI_LEVEL 0xC

/* PM1 event block: status + enable, 16 bits each; control 16 bits; timer 32 bits. */
#define PM1_EVT_LEN 4
#define PM1_CNT_LEN 2
#define PM_TMR_LEN 4
#define RESET_VALUE 0x06

/* HPET General Capabilities low 32 bits as the device reports them: Intel vendor id,
 * LegacyReplacement capable, 64-bit counter, 3 comparators (NUM_TIM_CAP = 2), revision 1. */
#define HPET_BLOCK_ID 0x8086A201u
#define HPET_MMIO_LEN 0x400
#define HPET_MIN_TICK 0x80

static const struct {
	uint16_t port;
	uint8_t irq;
} acpi_com[4] = {
	{ 0x3F8, IRQ_COM1_3 }, { 0x2F8, IRQ_COM2_4 }, { 0x3E8, IRQ_COM1_3 }, { 0x2E8, IRQ_COM2_4 }
};

/* A bump allocator over the guest's table area. */
struct acpi_ctx {
	struct vm *vm;
	uint8_t *mem;  /* host address of the table area */
	uint64_t base; /* its guest address: ACPI_TABLES_BASE, or 0 for an image */
	size_t off, cap;
	uint64_t facs;	  /* where the FACS went */
	bool firmware;	  /* an image for firmware, which assigns the BARs itself */
	uint64_t vmgenid; /* where the VM generation id went, 0 without the device */
};

static void *acpi_alloc(struct acpi_ctx *c, size_t len, size_t align, uint64_t *gpa)
{
	size_t at = (c->off + align - 1) & ~(align - 1);

	if (at > c->cap || len > c->cap - at)
		return NULL;
	c->off = at + len;
	*gpa = c->base + at;
	return c->mem + at;
}

static uint8_t acpi_sum(const void *p, size_t len)
{
	const uint8_t *b = p;
	uint8_t sum = 0;

	while (len--)
		sum += *b++;
	return sum;
}

static void acpi_header(struct acpi_header *h, const char *sig, uint32_t len, uint8_t rev)
{
	memcpy(h->sig, sig, 4);
	h->length = len;
	h->revision = rev;
	memcpy(h->oem_id, ACPI_OEM_ID, 6);
	memcpy(h->oem_table_id, "KHYV", 4);
	memcpy(h->oem_table_id + 4, sig, 4);
	h->oem_revision = 1;
	memcpy(h->creator_id, "KHYV", 4);
	h->creator_revision = 1;
}

/* Call once the table is complete: the bytes of the whole table sum to zero. */
static void acpi_checksum(struct acpi_header *h)
{
	h->checksum = 0;
	h->checksum = (uint8_t)-acpi_sum(h, h->length);
}

static struct acpi_gas gas_io(uint16_t port, uint8_t len, uint8_t access)
{
	return (struct acpi_gas){ .space = GAS_IO,
				  .bit_width = (uint8_t)(len * 8),
				  .access_size = access,
				  .address = port };
}

static uint64_t acpi_facs(struct acpi_ctx *c)
{
	struct acpi_facs *f;
	uint64_t gpa;

	/* The FACS has no checksum but must be 64-byte aligned. */
	f = acpi_alloc(c, sizeof(*f), 64, &gpa);
	if (!f)
		return 0;
	memcpy(f->sig, "FACS", 4);
	f->length = sizeof(*f);
	f->version = 2;
	return gpa;
}

static uint64_t acpi_fadt(struct acpi_ctx *c, uint64_t facs, uint64_t dsdt)
{
	struct acpi_fadt *f;
	uint64_t gpa;

	f = acpi_alloc(c, sizeof(*f), 16, &gpa);
	if (!f)
		return 0;
	acpi_header(&f->h, "FACP", sizeof(*f), 5);
	f->minor_version = 1;
	/* X_FIRMWARE_CTRL must stay zero when FIRMWARE_CTRL is used (below 4 GiB). */
	f->facs = (uint32_t)facs;
	f->dsdt = (uint32_t)dsdt;
	f->x_dsdt = dsdt;
	f->sci_int = IRQ_SCI;
	/*
	 * No SMI_CMD: the OS sees a machine that is always in ACPI mode, so the PM device
	 * reports SCI_EN set from reset and there is no enable handshake to emulate.
	 */
	f->smi_cmd = 0;
	f->pm1a_evt = PM1A_EVT_PORT;
	f->pm1a_cnt = PM1A_CNT_PORT;
	f->pm_tmr = PM_TMR_PORT;
	f->pm1_evt_len = PM1_EVT_LEN;
	f->pm1_cnt_len = PM1_CNT_LEN;
	f->pm_tmr_len = PM_TMR_LEN;
	f->x_pm1a_evt = gas_io(PM1A_EVT_PORT, PM1_EVT_LEN, GAS_WORD);
	f->x_pm1a_cnt = gas_io(PM1A_CNT_PORT, PM1_CNT_LEN, GAS_WORD);
	f->x_pm_tmr = gas_io(PM_TMR_PORT, PM_TMR_LEN, GAS_DWORD);
	/* Latencies above the limits (100 us, 1000 us) say "no C2, no C3". */
	f->p_lvl2_lat = 101;
	f->p_lvl3_lat = 1001;
	/* The i8042 is in the LPC bridge when there is one (OSes probe it only if told). */
	f->iapc_boot_arch = BOOT_ARCH_LEGACY_DEVICES;
	if (!c->vm->vga)
		f->iapc_boot_arch |= BOOT_ARCH_VGA_NOT_PRESENT;
	if (vm_find_dev(c->vm, "atkbdc"))
		f->iapc_boot_arch |= BOOT_ARCH_8042;
	/*
	 * The power button is the fixed-feature one (PWR_BUTTON clear): PWRBTN_STS in PM1.
	 * TMR_VAL_EXT clear: the PM timer is 24 bits.  Not HW_REDUCED, so the FACS has the
	 * global lock and PM1 has GBL_STS/GBL_EN.
	 * FIX_RTC clear: RTC_STS/RTC_EN are in PM1 (the RTC alarm sets RTC_STS, dev/pc/pm.h).
	 */
	f->flags = FADT_WBINVD | FADT_PROC_C1 | FADT_SLP_BUTTON | FADT_RESET_REG_SUP;
	f->reset_reg = gas_io(RESET_PORT, 1, GAS_BYTE);
	f->reset_value = RESET_VALUE;
	acpi_checksum(&f->h);
	return gpa;
}

static void *madt_put(uint8_t **p, size_t len, uint8_t type)
{
	uint8_t *e = *p;

	e[0] = type;
	e[1] = (uint8_t)len;
	*p += len;
	return e;
}

static void madt_override(uint8_t **p, uint8_t irq, uint32_t gsi, uint16_t flags)
{
	struct madt_override *o = madt_put(p, sizeof(*o), MADT_OVERRIDE);

	o->bus = 0; /* ISA */
	o->source = irq;
	o->gsi = gsi;
	o->flags = flags;
}

static uint64_t acpi_madt(struct acpi_ctx *c)
{
	unsigned ncpus = c->vm->ncpus;
	size_t len = sizeof(struct acpi_madt) + ncpus * sizeof(struct madt_lapic) +
		     sizeof(struct madt_ioapic) + 2 * sizeof(struct madt_override) +
		     sizeof(struct madt_lapic_nmi);
	struct madt_ioapic *io;
	struct madt_lapic_nmi *nmi;
	struct acpi_madt *m;
	uint64_t gpa;
	uint8_t *p;

	m = acpi_alloc(c, len, 16, &gpa);
	if (!m)
		return 0;
	acpi_header(&m->h, "APIC", (uint32_t)len, 3);
	m->lapic_addr = (uint32_t)LAPIC_BASE;
	m->flags = MADT_PCAT_COMPAT;
	p = (uint8_t *)(m + 1);
	for (unsigned i = 0; i < ncpus; i++) {
		struct madt_lapic *l = madt_put(&p, sizeof(*l), MADT_LAPIC);

		l->uid = (uint8_t)i;
		l->apic_id = (uint8_t)i;
		l->flags = 1; /* enabled */
	}
	io = madt_put(&p, sizeof(*io), MADT_IOAPIC);
	io->id = 0;
	io->addr = (uint32_t)IOAPIC_BASE;
	io->gsi_base = 0;
	/* The PIT's IRQ0 is wired to pin 2, as on every PC. */
	madt_override(&p, IRQ_PIT, 2, INTI_ACTIVE_HIGH | INTI_EDGE);
	madt_override(&p, IRQ_SCI, IRQ_SCI, INTI_ACTIVE_HIGH | INTI_LEVEL);
	nmi = madt_put(&p, sizeof(*nmi), MADT_LAPIC_NMI);
	nmi->uid = 0xFF; /* all processors */
	nmi->flags = 0;	 /* bus conforming */
	nmi->lint = 1;
	acpi_checksum(&m->h);
	return gpa;
}

static uint64_t acpi_hpet(struct acpi_ctx *c)
{
	struct acpi_hpet *h;
	uint64_t gpa;

	h = acpi_alloc(c, sizeof(*h), 16, &gpa);
	if (!h)
		return 0;
	acpi_header(&h->h, "HPET", sizeof(*h), 1);
	h->block_id = HPET_BLOCK_ID;
	h->base = (struct acpi_gas){ .space = GAS_MEMORY, .bit_width = 64, .address = HPET_BASE };
	h->number = 0;
	h->min_tick = HPET_MIN_TICK;
	acpi_checksum(&h->h);
	return gpa;
}

static uint64_t acpi_mcfg(struct acpi_ctx *c)
{
	struct acpi_mcfg *m;
	uint64_t gpa;

	m = acpi_alloc(c, sizeof(*m), 16, &gpa);
	if (!m)
		return 0;
	acpi_header(&m->h, "MCFG", sizeof(*m), 1);
	m->base = PCI_ECAM_BASE;
	m->segment = 0;
	m->start_bus = 0;
	m->end_bus = (uint8_t)((PCI_ECAM_SIZE >> 20) - 1); /* 1 MiB of ECAM per bus */
	acpi_checksum(&m->h);
	return gpa;
}

/* RSDT (32-bit entries) or XSDT (64-bit entries) listing @n tables. */
static uint64_t acpi_root(struct acpi_ctx *c, const char *sig, const uint64_t *tables, unsigned n,
			  size_t esize)
{
	size_t len = sizeof(struct acpi_header) + n * esize;
	struct acpi_header *h;
	uint64_t gpa;
	uint8_t *p;

	h = acpi_alloc(c, len, 16, &gpa);
	if (!h)
		return 0;
	acpi_header(h, sig, (uint32_t)len, 1);
	p = (uint8_t *)(h + 1);
	for (unsigned i = 0; i < n; i++, p += esize)
		memcpy(p, &tables[i], esize); /* little-endian host: low bytes first */
	acpi_checksum(h);
	return gpa;
}

static void acpi_rsdp(struct acpi_ctx *c, uint64_t rsdt, uint64_t xsdt)
{
	struct acpi_rsdp *r = (struct acpi_rsdp *)c->mem; /* offset 0, reserved by the caller */

	memcpy(r->sig, "RSD PTR ", 8);
	memcpy(r->oem_id, ACPI_OEM_ID, 6);
	r->revision = 2;
	r->rsdt = (uint32_t)rsdt;
	r->length = sizeof(*r);
	r->xsdt = xsdt;
	r->checksum = (uint8_t)-acpi_sum(r, 20);
	r->ext_checksum = (uint8_t)-acpi_sum(r, sizeof(*r));
}

/* ---- DSDT ---- */

static void dsdt_cpus(struct aml *a, unsigned ncpus)
{
	char name[8];

	/* Processor devices, so that OSes that bind a driver per CPU find one per MADT entry. */
	for (unsigned i = 0; i < ncpus; i++) {
		struct aml_mark d;

		snprintf(name, sizeof(name), "C%03X", i & 0xFFF);
		d = aml_device_open(a, name);
		aml_name(a, "_HID");
		aml_string(a, "ACPI0007");
		aml_name_int(a, "_UID", i);
		aml_close(a, d);
	}
}

/*
 * The root bridge's windows must hold every BAR, or an OS moves (or refuses) the device.  khyve
 * assigns BARs in PCI_MMIO32_BASE..+SIZE.  Firmware assigns its own: SeaBIOS on a 440FX top down
 * from the IOAPIC (0xFEC00000) to 2 GiB, or 3 GiB when low RAM is above 2 GiB (its
 * i440fx_mem_addr_setup), OVMF from the same start up to 0xFC000000; so with firmware the window
 * is that range, less the ECAM, which SeaBIOS does not know of.  The 64-bit window is the same
 * both ways: SeaBIOS places 64-bit BARs that do not fit below 4 GiB from the first GiB boundary
 * above RAM, and so does khyve.
 */
static void dsdt_pci_crs(struct aml *a, uint64_t ram_size, bool firmware)
{
	uint64_t base64, size64, low = e820_lowmem_end(ram_size);
	uint64_t fw_base = low <= 2 * GiB ? 2 * GiB : LOWMEM_LIMIT;
	struct aml_mark b;

	e820_mmio64_window(ram_size, &base64, &size64);
	aml_name(a, "_CRS");
	b = aml_buffer_open(a);
	aml_res_bus_window(a, 0, 0);
	aml_res_io(a, 0xCF8, 8);
	aml_res_io_window(a, 0x0000, 0x0CF7);
	aml_res_io_window(a, 0x0D00, 0xFFFF);
	if (firmware) {
		aml_res_mem32_window(a, (uint32_t)fw_base, (uint32_t)(PCI_ECAM_BASE - fw_base));
		aml_res_mem32_window(a, (uint32_t)(PCI_ECAM_BASE + PCI_ECAM_SIZE),
				     (uint32_t)(IOAPIC_BASE - PCI_ECAM_BASE - PCI_ECAM_SIZE));
	} else {
		aml_res_mem32_window(a, (uint32_t)PCI_MMIO32_BASE, (uint32_t)PCI_MMIO32_SIZE);
	}
	aml_res_mem64_window(a, base64, size64);
	aml_res_end(a);
	aml_close(a, b);
}

/*
 * Every slot's INTA..INTD straight to the GSI of its PIRQ (pci.h: QEMU's PIIX wiring, which
 * SeaBIOS programs the route registers for): no link devices, nothing for the OS to program.
 */
static void dsdt_pci_prt(struct aml *a)
{
	struct aml_mark prt;

	aml_name(a, "_PRT");
	prt = aml_package_open(a, PCI_SLOTS * 4);
	for (unsigned slot = 0; slot < PCI_SLOTS; slot++) {
		for (unsigned pin = 0; pin < 4; pin++) {
			struct aml_mark e = aml_package_open(a, 4);

			aml_int(a, ((uint64_t)slot << 16) | 0xFFFF); /* any function */
			aml_int(a, pin);
			aml_int(a, 0); /* Source: none, the index is a GSI */
			aml_int(a, pci_intx_gsi(slot, pin + 1));
			aml_close(a, e);
		}
	}
	aml_close(a, prt);
}

static void dsdt_isa_dev(struct aml *a, const char *name, const char *hid, int uid, uint16_t port,
			 uint8_t len, unsigned irq)
{
	struct aml_mark d, b;

	d = aml_device_open(a, name);
	aml_name_eisaid(a, "_HID", hid);
	if (uid >= 0)
		aml_name_int(a, "_UID", (uint64_t)uid);
	aml_name(a, "_CRS");
	b = aml_buffer_open(a);
	aml_res_io(a, port, len);
	aml_res_irq(a, irq);
	aml_res_end(a);
	aml_close(a, b);
	aml_close(a, d);
}

/* The keyboard controller: the keyboard has both ports and IRQ 1, the mouse IRQ 12. */
static void dsdt_ps2(struct aml *a)
{
	struct aml_mark d, b;

	d = aml_device_open(a, "KBD");
	aml_name_eisaid(a, "_HID", "PNP0303");
	aml_name(a, "_CRS");
	b = aml_buffer_open(a);
	aml_res_io(a, ATKBDC_DATA_PORT, 1);
	aml_res_io(a, ATKBDC_CMD_PORT, 1);
	aml_res_irq(a, ATKBDC_IRQ_KBD);
	aml_res_end(a);
	aml_close(a, b);
	aml_close(a, d);
	d = aml_device_open(a, "MOU");
	aml_name_eisaid(a, "_HID", "PNP0F13");
	aml_name(a, "_CRS");
	b = aml_buffer_open(a);
	aml_res_irq(a, ATKBDC_IRQ_AUX);
	aml_res_end(a);
	aml_close(a, b);
	aml_close(a, d);
}

static void dsdt_isa(struct aml *a, struct vm *vm)
{
	const struct config *cfg = vm->cfg;
	struct aml_mark isa;

	unsigned devfn = LPC_DEFAULT_DEVFN;

	/* Below the LPC bridge, wherever -s put it (0:31.0 on Intel chipsets). */
	lpc_pci_addr(vm, &devfn);
	isa = aml_device_open(a, "ISA");
	aml_name_int(a, "_ADR", (uint64_t)(devfn / 8) << 16 | devfn % 8);
	for (unsigned i = 0; i < 4; i++) {
		char key[24], name[8];

		snprintf(key, sizeof(key), "lpc.com%u.path", i + 1);
		if (!cfg || !config_get(cfg, key))
			continue;
		snprintf(name, sizeof(name), "COM%u", i + 1);
		dsdt_isa_dev(a, name, "PNP0501", (int)i + 1, acpi_com[i].port, 8, acpi_com[i].irq);
	}
	dsdt_isa_dev(a, "RTC", "PNP0B00", -1, 0x70, 2, IRQ_RTC);
	if (vm_find_dev(vm, "atkbdc"))
		dsdt_ps2(a);
	aml_close(a, isa);
}

static void dsdt_pci(struct aml *a, struct vm *vm, bool firmware)
{
	struct aml_mark pci;

	pci = aml_device_open(a, "PCI0");
	aml_name_eisaid(a, "_HID", "PNP0A08");
	aml_name_eisaid(a, "_CID", "PNP0A03");
	aml_name_int(a, "_SEG", 0);
	aml_name_int(a, "_BBN", 0);
	aml_name_int(a, "_UID", 0);
	dsdt_pci_crs(a, vm->ram_size, firmware);
	dsdt_pci_prt(a);
	dsdt_isa(a, vm);
	aml_close(a, pci);
}

static void dsdt_mem_dev(struct aml *a, const char *name, const char *hid, uint32_t base,
			 uint32_t len, bool writable)
{
	struct aml_mark d, b;

	d = aml_device_open(a, name);
	aml_name_eisaid(a, "_HID", hid);
	aml_name_int(a, "_UID", 0);
	aml_name(a, "_CRS");
	b = aml_buffer_open(a);
	aml_res_mem32_fixed(a, base, len, writable);
	aml_res_end(a);
	aml_close(a, b);
	aml_close(a, d);
}

/*
 * VM Generation ID (dev/pc/vmgenid.c): the device with the identifier's address, and a
 * Generic Event Device whose interrupt makes it notify the OS of a change.
 */
static void dsdt_vmgenid(struct aml *a, uint64_t gpa)
{
	struct aml_mark d, m, p, b;

	d = aml_device_open(a, "VGEN");
	aml_name(a, "_HID");
	aml_string(a, "KHYV0001");
	aml_name(a, "_CID");
	aml_string(a, "VM_Gen_Counter");
	aml_name(a, "_DDN");
	aml_string(a, "VM_Gen_Counter");
	m = aml_method_open(a, "ADDR", 0);
	aml_return(a);
	p = aml_package_open(a, 2);
	/* DWords always, so the guest's parser (and ours in tests) finds two of them. */
	aml_byte(a, 0x0C);
	aml_dword(a, (uint32_t)gpa);
	aml_byte(a, 0x0C);
	aml_dword(a, (uint32_t)(gpa >> 32));
	aml_close(a, p);
	aml_close(a, m);
	aml_close(a, d);

	d = aml_device_open(a, "GED0");
	aml_name(a, "_HID");
	aml_string(a, "ACPI0013");
	aml_name(a, "_CRS");
	b = aml_buffer_open(a);
	aml_res_irq(a, VMGENID_IRQ);
	aml_res_end(a);
	aml_close(a, b);
	m = aml_method_open(a, "_EVT", 1);
	aml_notify(a, "\\_SB.VGEN", 0x80);
	aml_close(a, m);
	aml_close(a, d);
}

static void dsdt_body(struct aml *a, struct vm *vm, bool firmware, uint64_t vmgenid)
{
	struct aml_mark sb, s5;

	/* \_S5: SLP_TYPa, SLP_TYPb and two reserved values (doc/platform.md). */
	aml_name(a, "_S5");
	s5 = aml_package_open(a, 4);
	aml_int(a, SLP_TYP_S5);
	aml_int(a, SLP_TYP_S5);
	aml_int(a, 0);
	aml_int(a, 0);
	aml_close(a, s5);

	sb = aml_scope_open(a, "\\_SB");
	dsdt_cpus(a, vm->ncpus);
	dsdt_pci(a, vm, firmware);
	dsdt_mem_dev(a, "HPET", "PNP0103", (uint32_t)HPET_BASE, HPET_MMIO_LEN, false);
	/* Motherboard resources: ECAM is claimed here as well as in e820. */
	dsdt_mem_dev(a, "MRES", "PNP0C02", (uint32_t)PCI_ECAM_BASE, (uint32_t)PCI_ECAM_SIZE, true);
	if (vmgenid)
		dsdt_vmgenid(a, vmgenid);
	aml_close(a, sb);
}

static uint64_t acpi_dsdt(struct acpi_ctx *c)
{
	struct acpi_header *h;
	struct aml a;
	uint64_t gpa;
	long len;

	h = acpi_alloc(c, sizeof(*h), 16, &gpa);
	if (!h)
		return 0;
	aml_init(&a, h + 1, c->cap - c->off);
	dsdt_body(&a, c->vm, c->firmware, c->vmgenid);
	len = aml_finish(&a);
	if (len < 0)
		return 0;
	c->off += (size_t)len;
	/* Revision 2: integers are 64 bits (the 64-bit PCI window needs them). */
	acpi_header(h, "DSDT", (uint32_t)(sizeof(*h) + (size_t)len), 2);
	acpi_checksum(h);
	return gpa;
}

/* Lay every table out in @c's area, the RSDP first. */
static int acpi_build_tables(struct acpi_ctx *c, char *err, size_t errlen)
{
	uint64_t facs, dsdt, tables[4], rsdt, xsdt, rsdp;
	struct vm *vm = c->vm;

	if (vm->ncpus < 1 || vm->ncpus > ACPI_MAX_CPUS) {
		snprintf(err, errlen, "acpi: %u vCPUs; the MADT describes 1 to %u", vm->ncpus,
			 ACPI_MAX_CPUS);
		return -EINVAL;
	}
	memset(c->mem, 0, c->cap);
	/* The RSDP goes first, 16-byte aligned, where a legacy scan looks. */
	acpi_alloc(c, sizeof(struct acpi_rsdp), 16, &rsdp);
	/* The VM generation id: 16 bytes the OS leaves alone, named by the DSDT. */
	c->vmgenid = 0;
	if (vm_find_dev(vm, "vmgenid") &&
	    !acpi_alloc(c, VMGENID_SIZE, VMGENID_ALIGN, &c->vmgenid)) {
		snprintf(err, errlen, "acpi: no room for the VM generation id");
		return -ENOSPC;
	}
	dsdt = acpi_dsdt(c);
	facs = dsdt ? acpi_facs(c) : 0;
	tables[0] = facs ? acpi_fadt(c, facs, dsdt) : 0;
	tables[1] = tables[0] ? acpi_madt(c) : 0;
	tables[2] = tables[1] ? acpi_hpet(c) : 0;
	tables[3] = tables[2] ? acpi_mcfg(c) : 0;
	rsdt = tables[3] ? acpi_root(c, "RSDT", tables, 4, 4) : 0;
	xsdt = rsdt ? acpi_root(c, "XSDT", tables, 4, 8) : 0;
	if (!xsdt) {
		snprintf(err, errlen, "acpi: the tables do not fit in %zu bytes", c->cap);
		return -ENOSPC;
	}
	acpi_rsdp(c, rsdt, xsdt);
	c->facs = facs;
	return 0;
}

int acpi_build(struct vm *vm, char *err, size_t errlen)
{
	struct dev *pm;
	int ret;
	struct acpi_ctx c = { .vm = vm,
			      .base = ACPI_TABLES_BASE,
			      .cap = ACPI_TABLES_END - ACPI_TABLES_BASE };

	c.mem = vm_gpa(vm, ACPI_TABLES_BASE, c.cap);
	if (!c.mem) {
		snprintf(err, errlen, "acpi: guest RAM does not cover 0x%llx-0x%llx",
			 (unsigned long long)ACPI_TABLES_BASE,
			 (unsigned long long)ACPI_TABLES_END - 1);
		return -EINVAL;
	}
	ret = acpi_build_tables(&c, err, errlen);
	if (ret)
		return ret;
	if (c.vmgenid && vmgenid_set_addr(vm_find_dev(vm, "vmgenid"), c.vmgenid)) {
		snprintf(err, errlen, "acpi: cannot write the VM generation id");
		return -EIO;
	}
	/* The PM block plays the firmware's part of the FACS global lock. */
	pm = vm_find_dev(vm, "pm");
	if (pm && pm_set_facs(pm, c.facs)) {
		snprintf(err, errlen, "acpi: FACS at 0x%llx is not usable",
			 (unsigned long long)c.facs);
		return -EINVAL;
	}
	return 0;
}

/*
 * Firmware moves the tables where it likes, so the PM block learns no FACS address here (its
 * global-lock side then reports the lock as absent).
 */
int acpi_build_image(struct vm *vm, uint8_t *buf, size_t cap, size_t *len, char *err, size_t errlen)
{
	struct acpi_ctx c = { .vm = vm, .mem = buf, .base = 0, .cap = cap, .firmware = true };
	int ret = acpi_build_tables(&c, err, errlen);

	*len = c.off;
	return ret;
}
