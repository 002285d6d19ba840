// SPDX-License-Identifier: MIT
/*
 * khyve test guest, ring 3: PCI configuration space through mechanism #1
 * (every access is two port-I/O system calls), bus 0 enumeration, BAR
 * addresses and capability lists, and identity mappings for BARs above
 * 4 GiB (QEMU's firmware may put 64-bit BARs there).
 */
#include "user.h"
#include "pci.h"

#define CONF_ADDR	0xcf8
#define CONF_DATA	0xcfc

static u32 conf_addr(const struct pci_fn *f, u32 off)
{
	return 0x80000000u | (u32)f->bus << 16 | (u32)f->dev << 11 |
	       (u32)f->fn << 8 | (off & 0xfc);
}

u32 pci_read32(const struct pci_fn *f, u32 off)
{
	outl(CONF_ADDR, conf_addr(f, off));
	return inl(CONF_DATA);
}

u16 pci_read16(const struct pci_fn *f, u32 off)
{
	outl(CONF_ADDR, conf_addr(f, off));
	return inw(CONF_DATA + (off & 2));
}

u8 pci_read8(const struct pci_fn *f, u32 off)
{
	outl(CONF_ADDR, conf_addr(f, off));
	return inb(CONF_DATA + (off & 3));
}

void pci_write32(const struct pci_fn *f, u32 off, u32 v)
{
	outl(CONF_ADDR, conf_addr(f, off));
	outl(CONF_DATA, v);
}

void pci_write16(const struct pci_fn *f, u32 off, u16 v)
{
	outl(CONF_ADDR, conf_addr(f, off));
	outw(CONF_DATA + (off & 2), v);
}

void pci_write8(const struct pci_fn *f, u32 off, u8 v)
{
	outl(CONF_ADDR, conf_addr(f, off));
	outb(CONF_DATA + (off & 3), v);
}

/* ---- enumeration ---- */

static struct pci_fn fns[PCI_MAX_FNS];
static u32 nfns;
static bool scanned;

static void scan_fn(u8 dev, u8 fn)
{
	struct pci_fn *f = &fns[nfns];
	u32 id, cls;

	f->bus = 0;
	f->dev = dev;
	f->fn = fn;
	id = pci_read32(f, PCI_VENDOR_ID);
	if ((id & 0xffff) == 0xffff || (id & 0xffff) == 0)
		return;
	cls = pci_read32(f, PCI_REVISION);
	f->vendor = id;
	f->device = id >> 16;
	f->revision = cls;
	f->prog_if = cls >> 8;
	f->subclass = cls >> 16;
	f->class = cls >> 24;
	if (nfns < PCI_MAX_FNS - 1)
		nfns++;
}

u32 pci_scan(const struct pci_fn **list)
{
	struct pci_fn probe = { 0 };
	u8 dev, fn, nfn;

	if (!scanned) {
		for (dev = 0; dev < 32; dev++) {
			probe.dev = dev;
			probe.fn = 0;
			if ((pci_read32(&probe, PCI_VENDOR_ID) & 0xffff) == 0xffff)
				continue;
			nfn = pci_read8(&probe, PCI_HEADER_TYPE) & 0x80 ? 8 : 1;
			for (fn = 0; fn < nfn; fn++)
				scan_fn(dev, fn);
		}
		scanned = true;
	}
	*list = fns;
	return nfns;
}

const struct pci_fn *pci_find(u16 vendor, u16 device, u32 nth)
{
	const struct pci_fn *l;
	u32 n = pci_scan(&l), i;

	for (i = 0; i < n; i++)
		if (l[i].vendor == vendor && l[i].device == device && !nth--)
			return &l[i];
	return NULL;
}

u64 pci_bar_addr(const struct pci_fn *f, u32 bar, bool *is64)
{
	u32 lo, hi = 0;

	*is64 = false;
	if (bar > 5)
		return 0;
	lo = pci_read32(f, PCI_BAR0 + 4 * bar);
	if (lo & 1)
		return 0;	/* I/O space: not used by virtio 1.x here */
	if ((lo & 6) == 4) {
		if (bar == 5)
			return 0;
		hi = pci_read32(f, PCI_BAR0 + 4 * (bar + 1));
		*is64 = true;
	}
	return ((u64)hi << 32 | lo) & ~0xfull;
}

/* ---- capabilities ---- */

u8 pci_cap_first(const struct pci_fn *f)
{
	if (!(pci_read16(f, PCI_STATUS) & PCI_STATUS_CAPS))
		return 0;
	return pci_read8(f, PCI_CAP_PTR) & 0xfc;
}

u8 pci_cap_next(const struct pci_fn *f, u8 cap)
{
	return pci_read8(f, cap + 1) & 0xfc;
}

/* ---- mappings above 4 GiB ---- */

#define PTE_TABLE	0x007ull	/* present, writable, user */
#define PTE_MMIO2M	0x09full	/* + PWT, PCD, 2 MiB page */
#define PT_POOL		16

extern u64 pml4[512];
static u64 pt_pool[PT_POOL][512] __attribute__((section(".noinit"), aligned(4096)));
static u32 pt_used;

/* The table an entry points to, created (zeroed) if the entry is empty. */
static u64 *pt_child(u64 *entry)
{
	u64 *t;

	if (*entry & 1)
		return (u64 *)(*entry & 0x000ffffffffff000ull);
	if (pt_used == PT_POOL)
		return NULL;
	t = pt_pool[pt_used++];
	memset(t, 0, 4096);
	WRITE_ONCE(*entry, (u64)t | PTE_TABLE);
	return t;
}

/*
 * head.S maps the first 4 GiB. Above that, fill in 2 MiB uncached pages.
 * The page tables are ordinary user memory (identity mapped), and entries
 * only go from not-present to present, which no TLB caches: no flush.
 */
int map_mmio(u64 addr, u64 len)
{
	u64 a = addr & ~0x1fffffull, end = addr + len;
	u64 *pdpt_t, *pd_t, *e;

	if (end <= 4ull << 30)
		return 0;
	if (end < addr || end > 1ull << 48)
		return -1;
	for (; a < end; a += 1ull << 21) {
		if (a < 4ull << 30)
			continue;
		pdpt_t = pt_child(&pml4[(a >> 39) & 511]);
		pd_t = pdpt_t ? pt_child(&pdpt_t[(a >> 30) & 511]) : NULL;
		if (!pd_t)
			return -1;
		e = &pd_t[(a >> 21) & 511];
		if (!(*e & 1))
			WRITE_ONCE(*e, a | PTE_MMIO2M);
	}
	return 0;
}
