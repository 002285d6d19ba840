// SPDX-License-Identifier: BSD-2-Clause
/*
 * The fw_cfg contents for firmware boot (see firmware.h).  The file formats are QEMU's, as
 * SeaBIOS (src/fw/paravirt.c, romfile_loader.c, boot.c) and OVMF read them.
 */
#include "arch/x86/firmware.h"
#include "bhyve_opts.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/acpi.h"
#include "arch/x86/e820.h"
#include "dev/pc/bootrom.h"
#include "dev/pc/fw_cfg.h"
#include "dev/pc/pm.h"
#include "dev/pci/pci.h"
#include "vm.h"

#define ACPI_IMAGE_MAX (128 * 1024)
#define LOADER_MAX_ENTRIES 64
#define RSDP_LEN 36
#define HDR_LEN 36
#define E820_ENTRY_LEN 20
#define FW_E820_MAX 16
#define BOOTINDEX_MAX 9999
#define FAILWAIT_DEFAULT_S 10
#define FAILWAIT_MAX_S 3600

static const char rsdp_file[] = "etc/acpi/rsdp";
static const char tables_file[] = "etc/acpi/tables";
/* Where firmware put the FACS (8 bytes, little endian), which khyve's PM block needs. */
static const char facs_addr_file[] = "etc/khyve/facs-addr";

/* ---- configuration ---- */

struct fw_check {
	char *err;
	size_t errlen;
	bool bootrom;
	int ret;
};

static bool parse_ulong(const char *s, unsigned long max, unsigned long *out)
{
	char *end;

	if (!s || *s < '0' || *s > '9')
		return false;
	errno = 0;
	*out = strtoul(s, &end, 10);
	return !errno && !*end && *out <= max;
}

static void check_bootindex(const char *key, const char *value, void *opaque)
{
	struct fw_check *c = opaque;
	size_t n = strlen(key);
	unsigned long v;

	if (c->ret || n < 10 || strcmp(key + n - 10, ".bootindex"))
		return;
	if (!c->bootrom) {
		snprintf(c->err, c->errlen,
			 "%s=%s: bootindex is for firmware boot (-l bootrom,FILE); a kernel "
			 "given with boot.kernel needs no boot order",
			 key, value);
		c->ret = -EINVAL;
	} else if (!parse_ulong(value, BOOTINDEX_MAX, &v)) {
		snprintf(c->err, c->errlen, "%s=%s: bootindex must be a number from 0 to %d", key,
			 value, BOOTINDEX_MAX);
		c->ret = -EINVAL;
	}
}

int firmware_check_config(const struct config *cfg, bool restoring, char *err, size_t errlen)
{
	struct fw_check c = { .err = err, .errlen = errlen };
	const char *hb = config_get(cfg, "pci.0.0.0.device");
	const char *v = config_get(cfg, "fw.failwait");
	unsigned long n;

	c.bootrom = config_get(cfg, "lpc.bootrom") != NULL;
	if (c.bootrom && config_get(cfg, "boot.kernel") && !restoring) {
		snprintf(err, errlen,
			 "-l bootrom and -o boot.kernel both say what to boot: give "
			 "one of them");
		return -EINVAL;
	}
	if (config_get(cfg, "lpc.bootvars") && !c.bootrom) {
		snprintf(err, errlen, "lpc.bootvars needs a boot ROM: -l bootrom,FILE,VARSFILE");
		return -EINVAL;
	}
	if (c.bootrom && (!hb || strcmp(hb, "hostbridge"))) {
		snprintf(err, errlen,
			 "firmware needs the host bridge at 0:0.0: add -s 0,hostbridge "
			 "(it holds the PAM registers of the BIOS area)");
		return -EINVAL;
	}
	if (v && !parse_ulong(v, FAILWAIT_MAX_S, &n)) {
		snprintf(err, errlen, "fw.failwait=%s: seconds from 0 to %d", v, FAILWAIT_MAX_S);
		return -EINVAL;
	}
	config_foreach(cfg, "pci.", check_bootindex, &c);
	return c.ret;
}

/* ---- etc/e820 ---- */

static void put_le(uint8_t *p, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

int firmware_e820(uint64_t ram_size, uint64_t rom_size, uint8_t *out, size_t cap, size_t *len)
{
	struct e820_entry in[E820_MAX_ENTRIES], e[FW_E820_MAX];
	int n = e820_build(ram_size, in, E820_MAX_ENTRIES);
	unsigned k = 0;

	if (n < 0)
		return n;
	/*
	 * As QEMU gives it: all RAM below the hole in one entry (firmware reserves its own
	 * areas below 1 MiB), the platform's reserved ranges, KVM's real-mode pages and the
	 * ROM below 4 GiB, RAM above 4 GiB.
	 */
	e[k++] = (struct e820_entry){ 0, e820_lowmem_end(ram_size), E820_RAM };
	for (int i = 0; i < n; i++)
		if (in[i].addr >= HIGHMEM_BASE || (in[i].addr >= MiB && in[i].type != E820_RAM))
			e[k++] = in[i];
	e[k++] = (struct e820_entry){ VM_IDENTITY_MAP_ADDR, 4 * 4096, E820_RESERVED };
	if (rom_size)
		e[k++] = (struct e820_entry){ HIGHMEM_BASE - rom_size, rom_size, E820_RESERVED };
	/* Sorted by address: insertion sort of a dozen entries. */
	for (unsigned i = 1; i < k; i++)
		for (unsigned j = i; j && e[j - 1].addr > e[j].addr; j--) {
			struct e820_entry t = e[j];

			e[j] = e[j - 1];
			e[j - 1] = t;
		}
	if (k * E820_ENTRY_LEN > cap)
		return -ENOSPC;
	for (unsigned i = 0; i < k; i++) {
		put_le(out + i * E820_ENTRY_LEN, e[i].addr, 8);
		put_le(out + i * E820_ENTRY_LEN + 8, e[i].size, 8);
		put_le(out + i * E820_ENTRY_LEN + 16, e[i].type, 4);
	}
	*len = k * E820_ENTRY_LEN;
	return 0;
}

/* ---- etc/table-loader ---- */

struct loader {
	uint8_t *out;
	size_t max, n;
	bool full;
	uint32_t facs; /* the FACS's offset in the tables, 0 when there is none */
};

static uint8_t *loader_entry(struct loader *l, uint32_t cmd)
{
	uint8_t *e;

	if (l->n >= l->max) {
		l->full = true;
		return NULL;
	}
	e = l->out + l->n++ * LOADER_ENTRY_SIZE;
	memset(e, 0, LOADER_ENTRY_SIZE);
	put_le(e, cmd, 4);
	return e;
}

static void loader_alloc(struct loader *l, const char *file, uint32_t align, uint8_t zone)
{
	uint8_t *e = loader_entry(l, LOADER_ALLOCATE);

	if (!e)
		return;
	memcpy(e + 4, file, strlen(file));
	put_le(e + 4 + LOADER_FILE_LEN, align, 4);
	e[4 + LOADER_FILE_LEN + 4] = zone;
}

/* The @size-byte pointer at @off in @dest gets the address of the tables added. */
static void loader_pointer(struct loader *l, const char *dest, uint32_t off, uint8_t size)
{
	uint8_t *e = loader_entry(l, LOADER_ADD_POINTER);

	if (!e)
		return;
	memcpy(e + 4, dest, strlen(dest));
	memcpy(e + 4 + LOADER_FILE_LEN, tables_file, sizeof(tables_file) - 1);
	put_le(e + 4 + 2 * LOADER_FILE_LEN, off, 4);
	e[4 + 2 * LOADER_FILE_LEN + 4] = size;
}

/* Firmware writes the address of @src_off in the tables into the writable file @dest. */
static void loader_write_pointer(struct loader *l, const char *dest, uint32_t src_off)
{
	uint8_t *e = loader_entry(l, LOADER_WRITE_POINTER);

	if (!e)
		return;
	memcpy(e + 4, dest, strlen(dest));
	memcpy(e + 4 + LOADER_FILE_LEN, tables_file, sizeof(tables_file) - 1);
	put_le(e + 4 + 2 * LOADER_FILE_LEN, 0, 4);
	put_le(e + 8 + 2 * LOADER_FILE_LEN, src_off, 4);
	e[12 + 2 * LOADER_FILE_LEN] = 8;
}

static void loader_checksum(struct loader *l, const char *file, uint32_t off, uint32_t start,
			    uint32_t len)
{
	uint8_t *e = loader_entry(l, LOADER_ADD_CHECKSUM);

	if (!e)
		return;
	memcpy(e + 4, file, strlen(file));
	put_le(e + 4 + LOADER_FILE_LEN, off, 4);
	put_le(e + 8 + LOADER_FILE_LEN, start, 4);
	put_le(e + 12 + LOADER_FILE_LEN, len, 4);
}

/* A table at @off must lie wholly inside the image, after the RSDP, its length sane. */
static bool table_ok(const uint8_t *img, size_t len, uint64_t off)
{
	uint32_t tlen;

	if (off < RSDP_LEN || off > len || len - off < HDR_LEN)
		return false;
	tlen = (uint32_t)get_le(img + off + 4, 4);
	return tlen >= HDR_LEN && tlen <= len - off;
}

/* The pointer at @at (@size bytes) of a table must point at a table, or be 0 (none). */
static bool ptr_to_table(const uint8_t *img, size_t len, size_t at, unsigned size)
{
	uint64_t p = get_le(img + at, size);

	return p == 0 || (p < len && (p + 4 <= len) &&
			  (!memcmp(img + p, "FACS", 4) || table_ok(img, len, p)));
}

/* The FADT's FIRMWARE_CTRL, DSDT, X_FIRMWARE_CTRL and X_DSDT, where its length has them. */
static bool loader_fadt(struct loader *l, const uint8_t *img, size_t len, uint32_t t)
{
	static const struct {
		unsigned off, size;
	} ptrs[] = { { 36, 4 }, { 40, 4 }, { 132, 8 }, { 140, 8 } };
	uint32_t tlen = (uint32_t)get_le(img + t + 4, 4);

	for (unsigned i = 0; i < sizeof(ptrs) / sizeof(ptrs[0]); i++) {
		if (ptrs[i].off + ptrs[i].size > tlen)
			continue;
		if (!ptr_to_table(img, len, t + ptrs[i].off, ptrs[i].size))
			return false;
		if (get_le(img + t + ptrs[i].off, ptrs[i].size))
			loader_pointer(l, tables_file, t + ptrs[i].off, (uint8_t)ptrs[i].size);
		if (ptrs[i].off == 36 && !memcmp(img + get_le(img + t + 36, 4), "FACS", 4))
			l->facs = (uint32_t)get_le(img + t + 36, 4);
		/* The DSDT's own checksum is already right: it holds no pointers. */
	}
	return true;
}

/* Pointers and checksum of the RSDT (@esize 4) or XSDT (8) at @t, then of its tables. */
static bool loader_root(struct loader *l, const uint8_t *img, size_t len, uint32_t t,
			unsigned esize)
{
	uint32_t tlen = (uint32_t)get_le(img + t + 4, 4);

	for (uint32_t at = t + HDR_LEN; at + esize <= t + tlen; at += esize) {
		uint64_t p = get_le(img + at, esize);

		if (!table_ok(img, len, p))
			return false;
		loader_pointer(l, tables_file, at, (uint8_t)esize);
		/*
		 * Each table once, from the RSDT's list (the XSDT lists the same ones): its
		 * pointers, then its checksum over them.
		 */
		if (esize == 4) {
			if (!memcmp(img + p, "FACP", 4) && !loader_fadt(l, img, len, (uint32_t)p))
				return false;
			loader_checksum(l, tables_file, (uint32_t)p + 9, (uint32_t)p,
					(uint32_t)get_le(img + p + 4, 4));
		}
	}
	loader_checksum(l, tables_file, t + 9, t, tlen);
	return true;
}

long firmware_acpi_loader(const uint8_t *img, size_t len, uint8_t *out, size_t max)
{
	struct loader l = { .out = out, .max = max };
	uint64_t rsdt, xsdt;

	if (len < RSDP_LEN || memcmp(img, "RSD PTR ", 8))
		return -EINVAL;
	rsdt = get_le(img + 16, 4);
	xsdt = get_le(img + 24, 8);
	if (!table_ok(img, len, rsdt) || memcmp(img + rsdt, "RSDT", 4) ||
	    (xsdt && (!table_ok(img, len, xsdt) || memcmp(img + xsdt, "XSDT", 4))))
		return -EINVAL;
	/* 64-byte alignment for the FACS, which the image aligns from its start. */
	loader_alloc(&l, rsdp_file, 16, LOADER_ZONE_FSEG);
	loader_alloc(&l, tables_file, 64, LOADER_ZONE_HIGH);
	if (!loader_root(&l, img, len, (uint32_t)rsdt, 4) ||
	    (xsdt && !loader_root(&l, img, len, (uint32_t)xsdt, 8)))
		return -EINVAL;
	loader_pointer(&l, rsdp_file, 16, 4);
	if (xsdt)
		loader_pointer(&l, rsdp_file, 24, 8);
	loader_checksum(&l, rsdp_file, 8, 0, 20);
	loader_checksum(&l, rsdp_file, 32, 0, RSDP_LEN);
	/* Last, when the FACS is where it stays: its address for the global lock's owner. */
	if (l.facs)
		loader_write_pointer(&l, facs_addr_file, l.facs);
	if (l.full)
		return -ENOSPC;
	return (long)(l.n * LOADER_ENTRY_SIZE);
}

/*
 * Firmware has placed the FACS: the PM block plays the platform's part of its global lock
 * there (as acpi_build tells it without firmware).  The guest wrote the value: it must be an
 * aligned FACS in RAM, else the PM block goes on without one.
 */
static void fw_facs_written(void *opaque, const uint8_t *data, uint32_t len)
{
	struct vm *vm = opaque;
	struct dev *pm = vm_find_dev(vm, "pm");
	uint64_t gpa = len == 8 ? get_le(data, 8) : 0;
	const uint8_t *f = gpa ? vm_gpa(vm, gpa, 64) : NULL;

	if (pm && f && !memcmp(f, "FACS", 4))
		pm_set_facs(pm, gpa);
}

static int fw_acpi(struct vm *vm, struct fw_cfg *fc, char *err, size_t errlen)
{
	static const uint8_t zero[8];
	uint8_t *img = calloc(1, ACPI_IMAGE_MAX);
	uint8_t *script = calloc(LOADER_MAX_ENTRIES, LOADER_ENTRY_SIZE);
	size_t len = 0;
	long slen;
	int ret = -ENOMEM;

	if (!img || !script)
		goto out;
	ret = acpi_build_image(vm, img, ACPI_IMAGE_MAX, &len, err, errlen);
	if (ret)
		goto out;
	slen = firmware_acpi_loader(img, len, script, LOADER_MAX_ENTRIES);
	if (slen < 0) {
		ret = (int)slen;
		snprintf(err, errlen, "fw_cfg: cannot write the ACPI table loader: %s",
			 strerror(-ret));
		goto out;
	}
	ret = fw_cfg_add_file(fc, rsdp_file, img, RSDP_LEN);
	/* The RSDP is its own file: no second copy in the tables' memory. */
	memset(img, 0, RSDP_LEN);
	if (!ret)
		ret = fw_cfg_add_file(fc, tables_file, img, (uint32_t)len);
	if (!ret)
		ret = fw_cfg_add_file(fc, "etc/table-loader", script, (uint32_t)slen);
	if (!ret)
		ret = fw_cfg_add_file_writable(fc, facs_addr_file, zero, sizeof(zero),
					       fw_facs_written, vm);
	if (ret)
		snprintf(err, errlen, "fw_cfg: ACPI files: %s", strerror(-ret));
out:
	free(img);
	free(script);
	return ret;
}

/* ---- bootorder ---- */

struct boot_dev {
	unsigned long index;
	unsigned slot, func;
	const char *emul;
};

static int boot_dev_cmp(const void *a, const void *b)
{
	const struct boot_dev *x = a, *y = b;

	if (x->index != y->index)
		return x->index < y->index ? -1 : 1;
	return (int)(x->slot * 8 + x->func) - (int)(y->slot * 8 + y->func);
}

/*
 * Open Firmware paths as SeaBIOS matches them: "/pci@i0cf8/NAME@SLOT[,FUNC]", and for a disk
 * behind an AHCI port its drive and unit.
 */
static int fw_bootorder(struct vm *vm, struct fw_cfg *fc, char *err, size_t errlen)
{
	struct boot_dev devs[PCI_SLOTS * PCI_FUNCS];
	char *text, *p;
	unsigned n = 0;
	int ret;

	for (unsigned s = 0; s < PCI_SLOTS; s++) {
		for (unsigned f = 0; f < PCI_FUNCS; f++) {
			struct pci_dev *pd = pci_find_dev(vm, s, f);
			const char *bi = pd ? pci_dev_opt(pd, "bootindex") : NULL;

			if (bi && parse_ulong(bi, BOOTINDEX_MAX, &devs[n].index)) {
				devs[n].slot = s;
				devs[n].func = f;
				devs[n].emul = pd->emul->name;
				n++;
			}
		}
	}
	if (!n)
		return 0;
	qsort(devs, n, sizeof(devs[0]), boot_dev_cmp);
	p = text = calloc(n, 96);
	if (!text)
		return -ENOMEM;
	for (unsigned i = 0; i < n; i++) {
		bool ata = !strncmp(devs[i].emul, "ahci", 4);

		p += sprintf(p, "/pci@i0cf8/%s@%x", devs[i].emul, devs[i].slot);
		if (devs[i].func)
			p += sprintf(p, ",%x", devs[i].func);
		p += sprintf(p, "%s\n", ata ? "/drive@0/disk@0" : "");
	}
	ret = fw_cfg_add_file(fc, "bootorder", text, (uint32_t)(p - text) + 1);
	if (ret)
		snprintf(err, errlen, "fw_cfg: bootorder: %s", strerror(-ret));
	free(text);
	return ret;
}

/* ---- the rest ---- */

static int fw_add_le(struct fw_cfg *fc, uint16_t key, const char *file, uint64_t v, unsigned n)
{
	uint8_t b[8];

	put_le(b, v, n);
	return file ? fw_cfg_add_file(fc, file, b, n) : fw_cfg_add_item(fc, key, b, n);
}

/* The first COM port that exists is the firmware's console. */
static int fw_sercon(struct vm *vm, struct fw_cfg *fc)
{
	static const uint16_t ports[4] = { 0x3F8, 0x2F8, 0x3E8, 0x2E8 };

	for (unsigned i = 0; i < 4; i++) {
		char key[32];

		snprintf(key, sizeof(key), "lpc.com%u.path", i + 1);
		if (config_get(vm->cfg, key))
			return fw_add_le(fc, 0, "etc/sercon-port", ports[i], 2);
	}
	return 0;
}

int firmware_setup(struct vm *vm, char *err, size_t errlen)
{
	struct fw_cfg *fc = fw_cfg_create(vm, err, errlen);
	uint8_t e820[FW_E820_MAX * E820_ENTRY_LEN], uuid[16] = { 0 };
	unsigned long wait = FAILWAIT_DEFAULT_S;
	size_t len;
	int ret;

	if (!fc)
		return -EINVAL;
	parse_ulong(config_get(vm->cfg, "fw.failwait"), FAILWAIT_MAX_S, &wait);
	/* -U: SeaBIOS puts it in the SMBIOS system table (type 1); checked by the machine. */
	if (config_get(vm->cfg, "uuid"))
		uuid_parse(config_get(vm->cfg, "uuid"), uuid);
	ret = fw_add_le(fc, FW_CFG_NB_CPUS, NULL, vm->ncpus, 2);
	if (!ret)
		ret = fw_add_le(fc, FW_CFG_MAX_CPUS, NULL, vm->ncpus, 2);
	if (!ret)
		ret = fw_add_le(fc, FW_CFG_NOGRAPHIC, NULL, 1, 2);
	if (!ret)
		ret = fw_add_le(fc, FW_CFG_RAM_SIZE, NULL, vm->ram_size, 8);
	/* The MADT sends IRQ0 to pin 2; SeaBIOS's MP table must say the same. */
	if (!ret)
		ret = fw_add_le(fc, FW_CFG_IRQ0_OVERRIDE, NULL, 1, 4);
	if (!ret)
		ret = fw_cfg_add_item(fc, FW_CFG_UUID, uuid, sizeof(uuid));
	if (!ret)
		ret = firmware_e820(vm->ram_size, bootrom_area_size(vm), e820, sizeof(e820), &len);
	if (!ret)
		ret = fw_cfg_add_file(fc, "etc/e820", e820, (uint32_t)len);
	if (!ret)
		ret = fw_add_le(fc, 0, "etc/boot-fail-wait", wait * 1000, 4);
	if (!ret)
		ret = fw_sercon(vm, fc);
	if (ret) {
		snprintf(err, errlen, "fw_cfg: %s", strerror(-ret));
		return ret;
	}
	ret = fw_acpi(vm, fc, err, errlen);
	return ret ? ret : fw_bootorder(vm, fc, err, errlen);
}
