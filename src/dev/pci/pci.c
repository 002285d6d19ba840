// SPDX-License-Identifier: BSD-2-Clause
/*
 * PCI bus 0 (see pci.h): configuration mechanism #1 and ECAM, configuration space with write
 * masks, BAR sizing and moves, INTx with shared lines, capabilities, MSI and MSI-X, the
 * emulation table, pci_setup() and the per-function snapshot.
 *
 * Locks: pd->lock guards one function's configuration space, INTx and MSI-X state; the bus's
 * bar_lock guards the registration of every BAR on the buses (a move of one BAR may free the
 * address another BAR waits for); intx_lock guards the per-GSI assertion counts.  Order:
 * pd->lock, then bar_lock or intx_lock.  bus_access() calls handlers without its own lock, so
 * a configuration write may (un)register BARs on the bus it came from.
 */
#include "dev/pci/pci.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arch/x86/e820.h"
#include "sstream.h"
#include "vm.h"

/*
 * Every PCI device type, by the name of its struct pci_emul (pci_emul_<name>, defined in the
 * emulation's own file).  Adding a device type is one line here.
 */
#define PCI_EMULATIONS(X) \
	X(hostbridge)     \
	X(lpc)            \
	X(ahci)           \
	X(ahci_hd)        \
	X(ahci_cd)        \
	X(fbuf)           \
	X(virtio_blk)     \
	X(virtio_net)     \
	X(virtio_rnd)     \
	X(e1000)          \
	X(xhci)

#define PCI_EMUL_DECLARE(n) extern const struct pci_emul pci_emul_##n;
#define PCI_EMUL_ENTRY(n) &pci_emul_##n,
PCI_EMULATIONS(PCI_EMUL_DECLARE)
static const struct pci_emul *const pci_emuls[] = { PCI_EMULATIONS(PCI_EMUL_ENTRY) };

#define CF8_PORT 0xCF8
#define CFC_PORT 0xCFC
#define CF8_ENABLE 0x80000000U
#define CF8_BITS 0x80FFFFFCU /* enable, bus, device, function, register */

#define MSI_CTRL_ENABLE 0x0001U
#define MSI_CTRL_MMC_SHIFT 1
#define MSI_CTRL_MME_SHIFT 4
#define MSI_CTRL_64BIT 0x0080U
#define MSI_CAP_LEN 14

#define MSIX_CTRL_FMASK 0x4000U
#define MSIX_CTRL_ENABLE 0x8000U
#define MSIX_CAP_LEN 12
#define MSIX_ENTRY_SIZE 16
#define MSIX_VEC_MASKED 1U

struct pci_bus {
	struct dev dev; /* "pci": saves the 0xCF8 address latch */
	struct vm *vm;
	pthread_mutex_t lock; /* cf8 */
	uint32_t cf8;
	/* Filled by pci_setup before the vCPUs run, then only read. */
	struct pci_dev *devs[PCI_SLOTS][PCI_FUNCS];
	pthread_mutex_t bar_lock;
	pthread_mutex_t intx_lock;
	unsigned intx_count[4]; /* assertions per PIRQ A-D, which is GSI 16..19 */
	/* The PIIX PIRQ route registers (the LPC bridge's 0x60-0x63) and what they drive. */
	uint8_t pirq_route[4];
	uint8_t pirq_irq[4];	/* the ISA IRQ each PIRQ drives now, 0 for none */
	unsigned isa_count[16]; /* PIRQs driving each ISA IRQ */
	uint64_t mmio_next, io_next, mmio64_next, mmio64_end;
	/* The reset register at 0xCF9, inside the dword at 0xCF8: see pci_claim_cf8(). */
	bus_io_fn cf9_fn;
	void *cf9_opaque;
};

/* ---- configuration space bytes ---- */

static uint32_t le_get(const uint8_t *p, unsigned size)
{
	return (uint32_t)io_get(p, size);
}

static void le_put(uint8_t *p, unsigned size, uint32_t v)
{
	io_put(p, size, v);
}

static uint32_t cfg_rd(const struct pci_dev *pd, unsigned off, unsigned size)
{
	return le_get(&pd->cfg[off], size);
}

static void cfg_wr(struct pci_dev *pd, unsigned off, unsigned size, uint32_t v)
{
	le_put(&pd->cfg[off], size, v);
}

static bool cfg_ok(unsigned off, unsigned size)
{
	return (size == 1 || size == 2 || size == 4) && off <= PCI_CFG_SIZE - size;
}

uint8_t pci_get_cfg8(struct pci_dev *pd, unsigned off)
{
	return (uint8_t)(pci_get_cfg32(pd, off & ~3U) >> (8 * (off & 3)));
}

uint16_t pci_get_cfg16(struct pci_dev *pd, unsigned off)
{
	uint16_t v = 0;

	pthread_mutex_lock(&pd->lock);
	if (cfg_ok(off, 2))
		v = (uint16_t)cfg_rd(pd, off, 2);
	pthread_mutex_unlock(&pd->lock);
	return v;
}

uint32_t pci_get_cfg32(struct pci_dev *pd, unsigned off)
{
	uint32_t v = 0;

	pthread_mutex_lock(&pd->lock);
	if (cfg_ok(off, 4))
		v = cfg_rd(pd, off, 4);
	pthread_mutex_unlock(&pd->lock);
	return v;
}

static void pci_set_cfg(struct pci_dev *pd, unsigned off, unsigned size, uint32_t v)
{
	pthread_mutex_lock(&pd->lock);
	if (cfg_ok(off, size))
		cfg_wr(pd, off, size, v);
	pthread_mutex_unlock(&pd->lock);
}

void pci_set_cfg8(struct pci_dev *pd, unsigned off, uint8_t v)
{
	pci_set_cfg(pd, off, 1, v);
}

void pci_set_cfg16(struct pci_dev *pd, unsigned off, uint16_t v)
{
	pci_set_cfg(pd, off, 2, v);
}

void pci_set_cfg32(struct pci_dev *pd, unsigned off, uint32_t v)
{
	pci_set_cfg(pd, off, 4, v);
}

void pci_set_wmask(struct pci_dev *pd, unsigned off, unsigned size, uint32_t mask)
{
	pthread_mutex_lock(&pd->lock);
	if (cfg_ok(off, size))
		le_put(&pd->wmask[off], size, mask);
	pthread_mutex_unlock(&pd->lock);
}

void pci_set_ids(struct pci_dev *pd, uint16_t vendor, uint16_t device, uint8_t class,
		 uint8_t subclass, uint8_t progif, uint8_t rev)
{
	pthread_mutex_lock(&pd->lock);
	cfg_wr(pd, PCIR_VENDOR, 2, vendor);
	cfg_wr(pd, PCIR_DEVICE, 2, device);
	cfg_wr(pd, PCIR_CLASS, 1, class);
	cfg_wr(pd, PCIR_SUBCLASS, 1, subclass);
	cfg_wr(pd, PCIR_PROGIF, 1, progif);
	cfg_wr(pd, PCIR_REVID, 1, rev);
	pthread_mutex_unlock(&pd->lock);
}

/* ---- BARs ---- */

static struct bus *bar_bus(const struct pci_bar *b)
{
	return b->type == PCI_BAR_IO ? &b->pd->vm->pio : &b->pd->vm->mmio;
}

static bool bar_is_base(const struct pci_bar *b)
{
	return b->type == PCI_BAR_IO || b->type == PCI_BAR_MEM32 || b->type == PCI_BAR_MEM64;
}

static uint32_t bar_flags(const struct pci_bar *b)
{
	uint32_t pf = b->prefetch ? 0x8 : 0;

	switch (b->type) {
	case PCI_BAR_IO:
		return 0x1;
	case PCI_BAR_MEM32:
		return pf;
	case PCI_BAR_MEM64:
		return 0x4 | pf;
	default:
		return 0;
	}
}

/* The value a BAR register holds after @v is written: the size's low bits read as 0. */
static uint32_t bar_encode(const struct pci_dev *pd, int i, uint32_t v)
{
	const struct pci_bar *b = &pd->bar[i];

	switch (b->type) {
	case PCI_BAR_IO:
		return (v & ~(uint32_t)(b->size - 1) & ~0x3U) | bar_flags(b);
	case PCI_BAR_MEM32:
	case PCI_BAR_MEM64:
		return (v & (uint32_t) ~(b->size - 1) & ~0xFU) | bar_flags(b);
	case PCI_BAR_MEM64_HI:
		return v & (uint32_t)(~(pd->bar[i - 1].size - 1) >> 32);
	default:
		return 0;
	}
}

/* The address a BAR register pair decodes, from configuration space @cfg. */
static uint64_t bar_decode(const struct pci_dev *pd, const uint8_t *cfg, int i)
{
	uint32_t lo = le_get(&cfg[PCIR_BAR(i)], 4);

	switch (pd->bar[i].type) {
	case PCI_BAR_IO:
		return lo & ~0x3U;
	case PCI_BAR_MEM32:
		return lo & ~0xFU;
	case PCI_BAR_MEM64:
		return (lo & ~0xFULL) | (uint64_t)le_get(&cfg[PCIR_BAR(i + 1)], 4) << 32;
	default:
		return 0;
	}
}

uint64_t pci_bar_addr(struct pci_dev *pd, int idx)
{
	uint64_t a = 0;

	if (idx < 0 || idx >= PCI_BARS)
		return 0;
	pthread_mutex_lock(&pd->lock);
	a = bar_decode(pd, pd->cfg, idx);
	pthread_mutex_unlock(&pd->lock);
	return a;
}

/*
 * Where each BAR should be on the bus, from its register and COMMAND: decoding enabled, an
 * address other than 0 (unassigned) and a range that fits the address space.  Called with
 * pd->lock held.
 */
static void pci_bars_want(struct pci_dev *pd)
{
	uint16_t cmd = (uint16_t)cfg_rd(pd, PCIR_COMMAND, 2);

	pthread_mutex_lock(&pd->bus->bar_lock);
	for (int i = 0; i < PCI_BARS; i++) {
		struct pci_bar *b = &pd->bar[i];
		uint64_t a = bar_decode(pd, pd->cfg, i);

		if (!bar_is_base(b))
			continue;
		b->want_addr = a;
		/*
		 * A BAR holds only addresses aligned to its size (its low bits are read-only,
		 * and pci_dev_check refuses others from a file), so a memory BAR cannot wrap;
		 * one ending at 2^64 the bus refuses and it stays down.
		 */
		if (b->type == PCI_BAR_IO)
			b->want_on = (cmd & PCIM_CMD_IO) && a && a + b->size <= 0x10000;
		else
			b->want_on = (cmd & PCIM_CMD_MEM) && a;
	}
	if (pd->rom.data) {
		uint32_t r = cfg_rd(pd, PCIR_ROM, 4);

		pd->rom.want_addr = r & ~(uint32_t)(pd->rom.size - 1);
		/* Decoded only with its own enable bit and memory decoding on. */
		pd->rom.want_on = (r & PCIM_ROM_ENABLE) && (cmd & PCIM_CMD_MEM) &&
				  pd->rom.want_addr;
	}
	pthread_mutex_unlock(&pd->bus->bar_lock);
}

static void pci_bar_io(void *opaque, uint64_t off, void *data, unsigned size, bool is_write);

static void pci_rom_io(void *opaque, uint64_t off, void *data, unsigned size, bool is_write)
{
	const struct pci_rom *rom = &((struct pci_dev *)opaque)->rom;

	if (is_write)
		return;
	for (unsigned i = 0; i < size; i++)
		((uint8_t *)data)[i] = off + i < rom->len ? rom->data[off + i] : 0;
}

/* The ROM BAR's part of pci_bus_sync_bars (bar_lock held): @up false takes it down. */
static void pci_rom_sync(struct pci_dev *pd, bool up)
{
	struct pci_rom *rom = &pd->rom;

	if (!rom->data)
		return;
	if (!up && rom->on && (!rom->want_on || rom->addr != rom->want_addr)) {
		bus_unregister(&pd->vm->mmio, rom->addr);
		rom->on = false;
	}
	if (up && rom->want_on && !rom->on &&
	    !bus_register(&pd->vm->mmio, rom->want_addr, rom->size, pci_rom_io, pd)) {
		bus_stats_name(&pd->vm->mmio, pd, pd->dev.id, "rom");
		rom->on = true;
		rom->addr = rom->want_addr;
	}
}

/*
 * A coalescing BAR's zones at its current address (bar_lock held), put up or taken down
 * with its bus range.  A zone KVM refuses is simply not there: its writes exit.
 */
static void pci_bar_zones(struct pci_bar *b, bool up)
{
	for (unsigned i = 0; i < b->nczones; i++) {
		uint64_t a = b->addr + b->czones[i].base;

		if (up)
			bus_coalesce_add(&b->pd->vm->mmio, a, b->czones[i].len);
		else
			bus_coalesce_del(&b->pd->vm->mmio, a, b->czones[i].len);
	}
}

/*
 * Make the buses match what every BAR wants: first take down each registration that moved or
 * was disabled, then put up each wanted one.  A BAR whose address overlaps something else
 * stays down (the guest programmed a conflict) and is retried at the next sync, so one that
 * waited for another BAR to move away comes up when it does.
 */
static void pci_bus_sync_bars(struct pci_bus *bus)
{
	pthread_mutex_lock(&bus->bar_lock);
	for (unsigned s = 0; s < PCI_SLOTS * PCI_FUNCS; s++) {
		struct pci_dev *pd = bus->devs[s / PCI_FUNCS][s % PCI_FUNCS];

		for (int i = 0; pd && i < PCI_BARS; i++) {
			struct pci_bar *b = &pd->bar[i];

			if (b->on && (!b->want_on || b->addr != b->want_addr)) {
				if (b->ram_slot >= 0)
					vm_devmem_unmap(pd->vm, b->ram_slot);
				b->ram_slot = -1;
				pci_bar_zones(b, false);
				bus_unregister(bar_bus(b), b->addr);
				b->on = false;
			}
		}
		if (pd)
			pci_rom_sync(pd, false);
	}
	for (unsigned s = 0; s < PCI_SLOTS * PCI_FUNCS; s++) {
		struct pci_dev *pd = bus->devs[s / PCI_FUNCS][s % PCI_FUNCS];

		for (int i = 0; pd && i < PCI_BARS; i++) {
			struct pci_bar *b = &pd->bar[i];

			if (b->want_on && !b->on &&
			    !bus_register(bar_bus(b), b->want_addr, b->size, pci_bar_io, b)) {
				char what[16];

				snprintf(what, sizeof(what), "bar%d", i);
				bus_stats_name(bar_bus(b), b, pd->dev.id, what);
				b->on = true;
				b->addr = b->want_addr;
				/* The bus range stays too: it keeps other BARs from overlapping. */
				if (b->ram)
					b->ram_slot = vm_devmem_map(pd->vm, b->addr, b->size,
								    b->ram, b->ram_log);
				pci_bar_zones(b, true);
			}
		}
		if (pd)
			pci_rom_sync(pd, true);
	}
	pthread_mutex_unlock(&bus->bar_lock);
}

/* A write of @size bytes at @off into a BAR register (merged into its dword). */
static void pci_bar_write(struct pci_dev *pd, unsigned off, unsigned size, uint32_t val)
{
	unsigned reg = off & ~3U, shift = (off & 3) * 8;
	uint32_t mask = size == 4 ? UINT32_MAX : ((1U << (8 * size)) - 1) << shift;
	uint32_t v = (cfg_rd(pd, reg, 4) & ~mask) | ((val << shift) & mask);
	int i = (int)(reg - PCIR_BAR(0)) / 4;
	uint32_t old = cfg_rd(pd, reg, 4);

	cfg_wr(pd, reg, 4, bar_encode(pd, i, v));
	if (cfg_rd(pd, reg, 4) != old) {
		pci_bars_want(pd);
		pci_bus_sync_bars(pd->bus);
	}
}

int pci_bar_declare(struct pci_dev *pd, int idx, enum pci_bar_type type, uint64_t size,
		    bool prefetch)
{
	uint64_t min = type == PCI_BAR_IO ? 4 : 16, max, sz = min;
	struct pci_bar *b;

	switch (type) {
	case PCI_BAR_IO:
		max = 256; /* the PCI limit for I/O BARs */
		break;
	case PCI_BAR_MEM32:
		max = PCI_MMIO32_SIZE;
		break;
	case PCI_BAR_MEM64:
		max = 1ULL << 40;
		break;
	default:
		return -EINVAL;
	}
	if (idx < 0 || idx >= PCI_BARS || (type == PCI_BAR_MEM64 && idx == PCI_BARS - 1) || !size ||
	    size > max)
		return -EINVAL;
	while (sz < size)
		sz <<= 1;
	if (pd->bar[idx].type || (type == PCI_BAR_MEM64 && pd->bar[idx + 1].type))
		return -EBUSY;
	b = &pd->bar[idx];
	b->type = type;
	b->size = sz;
	b->prefetch = prefetch && type != PCI_BAR_IO;
	if (type == PCI_BAR_MEM64) {
		pd->bar[idx + 1].type = PCI_BAR_MEM64_HI;
		pd->bar[idx + 1].size = sz;
	}
	pthread_mutex_lock(&pd->lock);
	cfg_wr(pd, PCIR_BAR(idx), 4, bar_flags(b));
	pthread_mutex_unlock(&pd->lock);
	return 0;
}

static unsigned msix_pba_words(unsigned nvec);

int pci_bar_coalesce(struct pci_dev *pd, int idx, const struct bus_zone *sync, unsigned nsync)
{
	struct bus_zone holes[PCI_COALESCE_ZONES + 2], zones[PCI_COALESCE_ZONES];
	struct pci_bar *b;
	unsigned n;

	if (idx < 0 || idx >= PCI_BARS || nsync > PCI_COALESCE_ZONES)
		return -EINVAL;
	b = &pd->bar[idx];
	if ((b->type != PCI_BAR_MEM32 && b->type != PCI_BAR_MEM64) || b->ram || b->czones)
		return -EINVAL;
	memcpy(holes, sync, nsync * sizeof(*sync));
	if (pd->msix.nvec && pd->msix.bar == idx) {
		/* Masking a vector takes effect at once (PCI 3.0, 6.8.2.9): never buffered. */
		holes[nsync++] = (struct bus_zone){ pd->msix.table_off, 16ULL * pd->msix.nvec };
		holes[nsync++] = (struct bus_zone){ pd->msix.pba_off,
						    8ULL * msix_pba_words(pd->msix.nvec) };
	}
	n = bus_zones_split(b->size, holes, nsync, zones, PCI_COALESCE_ZONES);
	if (n > PCI_COALESCE_ZONES)
		return -ENOSPC;
	if (!n)
		return 0;
	b->czones = malloc(n * sizeof(*zones));
	if (!b->czones)
		return -ENOMEM;
	memcpy(b->czones, zones, n * sizeof(*zones));
	b->nczones = n;
	return 0;
}

int pci_bar_set_ram(struct pci_dev *pd, int idx, void *hva, bool log_dirty)
{
	struct pci_bar *b;

	if (idx < 0 || idx >= PCI_BARS || !hva)
		return -EINVAL;
	b = &pd->bar[idx];
	if (b->type != PCI_BAR_MEM32 && b->type != PCI_BAR_MEM64)
		return -EINVAL;
	b->ram = hva;
	b->ram_log = log_dirty;
	return 0;
}

int pci_rom_set(struct pci_dev *pd, const uint8_t *data, size_t len, uint64_t size)
{
	uint32_t mask;

	if (!data || !len || len > size || size < 2048 || size > (16 << 20) ||
	    (size & (size - 1)) || pd->rom.data)
		return -EINVAL;
	pd->rom.data = data;
	pd->rom.len = len;
	pd->rom.size = size;
	mask = ~(uint32_t)(size - 1) | PCIM_ROM_ENABLE;
	pci_set_wmask(pd, PCIR_ROM, 4, mask);
	return 0;
}

#define PCI_ROMFILE_MAX (16u << 20) /* the largest ROM BAR pci_rom_set offers */

static uint16_t rom_u16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

/*
 * Does one image of the ROM (@n bytes at @r) carry this function's vendor and device id?
 * Firmware walks the images (PCI Firmware 3.0, 5.1: 0x55AA, the PCIR structure, its image
 * length and last-image bit) and runs only one made for the function it reads it from.
 */
static int pci_rom_check(const uint8_t *r, size_t n, uint16_t vendor, uint16_t device)
{
	size_t off = 0;

	while (off + 0x1A <= n) {
		const uint8_t *img = r + off;
		size_t pcir = rom_u16(img + 0x18), len;

		if (img[0] != 0x55 || img[1] != 0xAA)
			return off ? -ENOENT : -EINVAL;
		if (off + pcir + 0x18 > n || memcmp(img + pcir, "PCIR", 4))
			return off ? -ENOENT : -EINVAL;
		if (rom_u16(img + pcir + 4) == vendor && rom_u16(img + pcir + 6) == device)
			return 0;
		len = (size_t)rom_u16(img + pcir + 0x10) * 512;
		if ((img[pcir + 0x15] & 0x80) || !len)
			break;
		off += len;
	}
	return off || n >= 0x1A ? -ENOENT : -EINVAL;
}

/*
 * romfile=PATH, bhyve's option for any PCI function: the file becomes its expansion ROM, in a
 * ROM BAR of the next power of two (at least 2 KiB), which firmware sizes, maps and copies
 * like a plug-in card's.  Read once here; the bytes stay the device's for the VM's life.
 */
static int pci_romfile(struct pci_dev *pd, char *err, size_t errlen)
{
	const char *path = pci_dev_opt(pd, "romfile");
	uint16_t vendor = rom_u16(&pd->cfg[PCIR_VENDOR]), device = rom_u16(&pd->cfg[PCIR_DEVICE]);
	struct stat st;
	uint64_t size = 2048;
	uint8_t *buf = NULL;
	ssize_t got = 0;
	int fd, ret;

	if (!path)
		return 0;
	if (pd->rom.data) {
		snprintf(err, errlen,
			 "%s: romfile=%s: %s has an expansion ROM of its own (see its rom= option)",
			 pd->opts, path, pd->emul->name);
		return -EEXIST;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st)) {
		ret = -errno;
		snprintf(err, errlen, "%s: romfile=%s: %s", pd->opts, path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode) || st.st_size <= 0 || st.st_size > PCI_ROMFILE_MAX) {
		snprintf(err, errlen, "%s: romfile=%s: not a file of 1 byte to %u MiB", pd->opts,
			 path, PCI_ROMFILE_MAX >> 20);
		ret = -EINVAL;
		goto out;
	}
	buf = malloc((size_t)st.st_size);
	if (buf)
		got = pread(fd, buf, (size_t)st.st_size, 0);
	if (!buf || got != st.st_size) {
		ret = buf ? (got < 0 ? -errno : -EIO) : -ENOMEM;
		snprintf(err, errlen, "%s: romfile=%s: %s", pd->opts, path, strerror(-ret));
		goto out;
	}
	ret = pci_rom_check(buf, (size_t)got, vendor, device);
	if (ret) {
		if (ret == -EINVAL)
			snprintf(err, errlen,
				 "%s: romfile=%s: not a PCI option ROM (no 0x55AA signature "
				 "with a PCIR structure)",
				 pd->opts, path);
		else
			snprintf(err, errlen,
				 "%s: romfile=%s: no image in it is for PCI %04x:%04x (%s), so "
				 "firmware would not run it",
				 pd->opts, path, vendor, device, pd->emul->name);
		goto out;
	}
	while (size < (uint64_t)got)
		size <<= 1;
	ret = pci_rom_set(pd, buf, (size_t)got, size);
	if (ret)
		snprintf(err, errlen, "%s: romfile=%s: %s", pd->opts, path, strerror(-ret));
	else
		pd->rom_owned = buf;
out:
	if (ret)
		free(buf);
	if (fd >= 0)
		close(fd);
	return ret;
}

int pci_bar_ram_dirty(struct pci_dev *pd, int idx, uint64_t *bitmap)
{
	int ret = -ENODEV;

	if (idx < 0 || idx >= PCI_BARS)
		return -EINVAL;
	pthread_mutex_lock(&pd->bus->bar_lock);
	if (pd->bar[idx].ram_slot >= 0)
		ret = vm_devmem_dirty(pd->vm, pd->bar[idx].ram_slot, bitmap);
	pthread_mutex_unlock(&pd->bus->bar_lock);
	return ret;
}

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) & ~(a - 1);
}

/* Carve @size (a power of two) from [*next, end); 0 when it does not fit. */
static uint64_t pci_carve(uint64_t *next, uint64_t end, uint64_t size)
{
	uint64_t a = align_up(*next, size);

	if (a < *next || a > end || size > end - a)
		return 0;
	*next = a + size;
	return a;
}

/* Assign every declared BAR an address, in BAR order, and enable decoding. */
static int pci_alloc_bars(struct pci_bus *bus, struct pci_dev *pd, char *err, size_t errlen)
{
	uint16_t cmd = 0;

	for (int i = 0; i < PCI_BARS; i++) {
		struct pci_bar *b = &pd->bar[i];
		uint64_t a = 0;

		switch (b->type) {
		case PCI_BAR_IO:
			a = pci_carve(&bus->io_next, PCI_IO_WINDOW_END, b->size);
			cmd |= PCIM_CMD_IO;
			break;
		case PCI_BAR_MEM64:
			a = pci_carve(&bus->mmio_next, PCI_MMIO32_BASE + PCI_MMIO32_SIZE, b->size);
			if (!a)
				a = pci_carve(&bus->mmio64_next, bus->mmio64_end, b->size);
			cmd |= PCIM_CMD_MEM;
			break;
		case PCI_BAR_MEM32:
			a = pci_carve(&bus->mmio_next, PCI_MMIO32_BASE + PCI_MMIO32_SIZE, b->size);
			cmd |= PCIM_CMD_MEM;
			break;
		default:
			continue;
		}
		if (!a) {
			snprintf(err, errlen,
				 "%s: no room for BAR %d (%" PRIu64 " bytes) in the PCI "
				 "%s window",
				 pd->opts, i, b->size, b->type == PCI_BAR_IO ? "I/O" : "memory");
			return -ENOSPC;
		}
		pthread_mutex_lock(&pd->lock);
		cfg_wr(pd, PCIR_BAR(i), 4, bar_encode(pd, i, (uint32_t)a));
		if (b->type == PCI_BAR_MEM64)
			cfg_wr(pd, PCIR_BAR(i + 1), 4, bar_encode(pd, i + 1, (uint32_t)(a >> 32)));
		pthread_mutex_unlock(&pd->lock);
	}
	if (pd->rom.data) {
		/* An address, decoding off: firmware enables it to copy the ROM, and so may an OS. */
		uint64_t a = pci_carve(&bus->mmio_next, PCI_MMIO32_BASE + PCI_MMIO32_SIZE,
				       pd->rom.size);

		if (!a) {
			snprintf(err, errlen, "%s: no room for its ROM in the PCI memory window",
				 pd->opts);
			return -ENOSPC;
		}
		pthread_mutex_lock(&pd->lock);
		cfg_wr(pd, PCIR_ROM, 4, (uint32_t)a);
		pthread_mutex_unlock(&pd->lock);
	}
	pthread_mutex_lock(&pd->lock);
	cfg_wr(pd, PCIR_COMMAND, 2, cfg_rd(pd, PCIR_COMMAND, 2) | cmd);
	pthread_mutex_unlock(&pd->lock);
	return 0;
}

/* ---- capabilities ---- */

int pci_cap_add(struct pci_dev *pd, uint8_t id, unsigned len)
{
	unsigned off;

	pthread_mutex_lock(&pd->lock);
	off = pd->cap_free ? pd->cap_free : 0x40;
	if (len < 2 || off + len > PCI_CFG_SIZE) {
		pthread_mutex_unlock(&pd->lock);
		return -ENOSPC;
	}
	cfg_wr(pd, off, 1, id);
	cfg_wr(pd, off + 1, 1, 0);
	cfg_wr(pd, pd->cap_last ? pd->cap_last + 1 : PCIR_CAP_PTR, 1, off);
	cfg_wr(pd, PCIR_STATUS, 2, cfg_rd(pd, PCIR_STATUS, 2) | PCIM_STATUS_CAPLIST);
	pd->cap_last = off;
	pd->cap_free = (off + len + 3) & ~3U;
	pthread_mutex_unlock(&pd->lock);
	return (int)off;
}

/* ---- INTx ---- */

static struct pci_bus *pci_bus_of(struct vm *vm);

/*
 * The PIIX wiring QEMU's "pc" has and SeaBIOS assumes (its piix_pci_slot_get_irq): INTA of
 * slot s is on PIRQ (s - 1) mod 4, the next pins on the next PIRQs.
 */
unsigned pci_intx_pirq(unsigned slot, unsigned pin)
{
	return (slot + pin + 2) % 4;
}

unsigned pci_intx_gsi(unsigned slot, unsigned pin)
{
	return PCI_GSI_BASE + pci_intx_pirq(slot, pin);
}

/* The ISA IRQ a route register sends its PIRQ to, 0 when off (PIIX3 datasheet 2.2.1). */
static unsigned pirq_target(uint8_t route)
{
	/* IRQ 0-2, 8 and 13 are reserved; bit 7 disables the routing. */
	const unsigned usable = 0xDEF8;

	return !(route & PCI_PIRQ_DISABLE) && (usable >> (route & 0xF) & 1) ? route & 0xFu : 0;
}

/* PIRQ @j to the ISA IRQ its route register names while a function drives it.  intx_lock. */
static void pirq_sync(struct pci_bus *bus, unsigned j)
{
	unsigned want = bus->intx_count[j] ? pirq_target(bus->pirq_route[j]) : 0;
	unsigned have = bus->pirq_irq[j];

	if (want == have)
		return;
	if (have && --bus->isa_count[have] == 0)
		vm_set_irq(bus->vm, have, 0);
	if (want && bus->isa_count[want]++ == 0)
		vm_set_irq(bus->vm, want, 1);
	bus->pirq_irq[j] = (uint8_t)want;
}

uint8_t pci_pirq_route(struct vm *vm, unsigned pirq)
{
	struct pci_bus *bus = pci_bus_of(vm);
	uint8_t v;

	if (!bus || pirq > 3)
		return PCI_PIRQ_DISABLE;
	pthread_mutex_lock(&bus->intx_lock);
	v = bus->pirq_route[pirq];
	pthread_mutex_unlock(&bus->intx_lock);
	return v;
}

void pci_pirq_route_set(struct vm *vm, unsigned pirq, uint8_t route)
{
	struct pci_bus *bus = pci_bus_of(vm);

	if (!bus || pirq > 3)
		return;
	pthread_mutex_lock(&bus->intx_lock);
	bus->pirq_route[pirq] = route & PCI_PIRQ_ROUTE_BITS;
	pirq_sync(bus, pirq);
	pthread_mutex_unlock(&bus->intx_lock);
}

int pci_intx_init(struct pci_dev *pd, unsigned pin)
{
	if (pin < 1 || pin > 4)
		return -EINVAL;
	pthread_mutex_lock(&pd->lock);
	cfg_wr(pd, PCIR_INTPIN, 1, pin);
	cfg_wr(pd, PCIR_INTLINE, 1, pci_intx_gsi(pd->slot, pin));
	pthread_mutex_unlock(&pd->lock);
	return 0;
}

/*
 * Drive our share of the INTx line: counted on the GSI while asserted and not disabled by
 * COMMAND.INTx_DISABLE; the GSI is high while any function counts on it.  STATUS.INT shows
 * the device's output whatever the disable bit says.  Called with pd->lock held.
 */
static void pci_intx_update(struct pci_dev *pd)
{
	unsigned pin = pd->cfg[PCIR_INTPIN], gsi, idx;
	uint16_t cmd = (uint16_t)cfg_rd(pd, PCIR_COMMAND, 2);
	uint16_t sts = (uint16_t)cfg_rd(pd, PCIR_STATUS, 2) & ~PCIM_STATUS_INTR;
	bool on = pd->intx_asserted && pin && !(cmd & PCIM_CMD_INTX_DISABLE);
	struct pci_bus *bus = pd->bus;

	cfg_wr(pd, PCIR_STATUS, 2, sts | (pd->intx_asserted ? PCIM_STATUS_INTR : 0));
	if (on == pd->intx_on)
		return;
	pd->intx_on = on;
	gsi = pci_intx_gsi(pd->slot, pin);
	idx = gsi - PCI_GSI_BASE;
	pthread_mutex_lock(&bus->intx_lock);
	if (on && bus->intx_count[idx]++ == 0)
		vm_set_irq(pd->vm, gsi, 1);
	else if (!on && --bus->intx_count[idx] == 0)
		vm_set_irq(pd->vm, gsi, 0);
	pirq_sync(bus, idx);
	pthread_mutex_unlock(&bus->intx_lock);
}

static void pci_irq_set(struct pci_dev *pd, bool level)
{
	pthread_mutex_lock(&pd->lock);
	pd->intx_asserted = level;
	pci_intx_update(pd);
	pthread_mutex_unlock(&pd->lock);
}

void pci_irq_assert(struct pci_dev *pd)
{
	pci_irq_set(pd, true);
}

void pci_irq_deassert(struct pci_dev *pd)
{
	pci_irq_set(pd, false);
}

/* ---- MSI ---- */

int pci_msi_init(struct pci_dev *pd, unsigned nvec)
{
	unsigned mmc = 0;
	int c;

	if (!nvec || nvec > 32 || (nvec & (nvec - 1)) || pd->msi_cap)
		return -EINVAL;
	while ((1U << mmc) < nvec)
		mmc++;
	c = pci_cap_add(pd, PCIY_MSI, MSI_CAP_LEN);
	if (c < 0)
		return c;
	pthread_mutex_lock(&pd->lock);
	pd->msi_cap = (unsigned)c;
	cfg_wr(pd, c + 2, 2, MSI_CTRL_64BIT | mmc << MSI_CTRL_MMC_SHIFT);
	le_put(&pd->wmask[c + 2], 2, MSI_CTRL_ENABLE | 7U << MSI_CTRL_MME_SHIFT);
	le_put(&pd->wmask[c + 4], 4, 0xFFFFFFFC);
	le_put(&pd->wmask[c + 8], 4, 0xFFFFFFFF);
	le_put(&pd->wmask[c + 12], 2, 0xFFFF);
	pthread_mutex_unlock(&pd->lock);
	return 0;
}

/* The guest may not enable more vectors than offered (MME <= MMC): clamp.  pd->lock held. */
static void pci_msi_ctrl_written(struct pci_dev *pd)
{
	unsigned c = pd->msi_cap;
	uint16_t ctrl = (uint16_t)cfg_rd(pd, c + 2, 2);
	unsigned mmc = (ctrl >> MSI_CTRL_MMC_SHIFT) & 7, mme = (ctrl >> MSI_CTRL_MME_SHIFT) & 7;

	if (mme > mmc)
		cfg_wr(pd, c + 2, 2,
		       (ctrl & ~(7U << MSI_CTRL_MME_SHIFT)) | mmc << MSI_CTRL_MME_SHIFT);
}

static bool msi_enabled_locked(const struct pci_dev *pd)
{
	return pd->msi_cap && (cfg_rd(pd, pd->msi_cap + 2, 2) & MSI_CTRL_ENABLE);
}

bool pci_msi_enabled(struct pci_dev *pd)
{
	bool on;

	pthread_mutex_lock(&pd->lock);
	on = msi_enabled_locked(pd);
	pthread_mutex_unlock(&pd->lock);
	return on;
}

int pci_msi_notify(struct pci_dev *pd, unsigned v)
{
	unsigned c = pd->msi_cap, n;
	uint64_t addr;
	uint32_t data;
	int ret = -EINVAL;

	pthread_mutex_lock(&pd->lock);
	if (!msi_enabled_locked(pd))
		goto out;
	n = 1U << ((cfg_rd(pd, c + 2, 2) >> MSI_CTRL_MME_SHIFT) & 7);
	if (v >= n)
		goto out;
	addr = cfg_rd(pd, c + 4, 4) | (uint64_t)cfg_rd(pd, c + 8, 4) << 32;
	/* With several vectors enabled, the low bits of the data carry the vector number. */
	data = (cfg_rd(pd, c + 12, 2) & ~(n - 1)) | v;
	ret = pd->vm->send_msi(pd->vm, addr, data);
out:
	pthread_mutex_unlock(&pd->lock);
	return ret;
}

/* ---- MSI-X ---- */

static unsigned msix_pba_words(unsigned nvec)
{
	return (nvec + 63) / 64;
}

int pci_msix_init(struct pci_dev *pd, unsigned nvec, int bar)
{
	struct pci_msix *m = &pd->msix;
	uint32_t table_size = nvec * MSIX_ENTRY_SIZE, pba_off;
	int c, ret;

	if (!nvec || nvec > PCI_MSIX_MAX || m->nvec)
		return -EINVAL;
	/* The PBA on its own page after the table, as bhyve and most hardware do. */
	pba_off = (uint32_t)align_up(table_size, 4096);
	ret = pci_bar_declare(pd, bar, PCI_BAR_MEM32, pba_off + msix_pba_words(nvec) * 8, false);
	if (ret)
		return ret;
	m->table = calloc(nvec, 4 * sizeof(uint32_t));
	m->pba = calloc(msix_pba_words(nvec), sizeof(uint64_t));
	if (!m->table || !m->pba)
		goto nomem;
	c = pci_cap_add(pd, PCIY_MSIX, MSIX_CAP_LEN);
	if (c < 0)
		goto nomem;
	for (unsigned v = 0; v < nvec; v++)
		m->table[4 * v + 3] = MSIX_VEC_MASKED;
	pthread_mutex_lock(&pd->lock);
	m->nvec = nvec;
	m->bar = bar;
	m->table_off = 0;
	m->pba_off = pba_off;
	pd->msix_cap = (unsigned)c;
	cfg_wr(pd, c + 2, 2, nvec - 1);
	cfg_wr(pd, c + 4, 4, m->table_off | (uint32_t)bar);
	cfg_wr(pd, c + 8, 4, m->pba_off | (uint32_t)bar);
	le_put(&pd->wmask[c + 2], 2, MSIX_CTRL_ENABLE | MSIX_CTRL_FMASK);
	pthread_mutex_unlock(&pd->lock);
	return 0;
nomem:
	free(m->table);
	free(m->pba);
	m->table = NULL;
	m->pba = NULL;
	return -ENOMEM;
}

static bool msix_enabled_locked(const struct pci_dev *pd)
{
	return pd->msix_cap && (cfg_rd(pd, pd->msix_cap + 2, 2) & MSIX_CTRL_ENABLE);
}

bool pci_msix_enabled(struct pci_dev *pd)
{
	bool on;

	pthread_mutex_lock(&pd->lock);
	on = msix_enabled_locked(pd);
	pthread_mutex_unlock(&pd->lock);
	return on;
}

/* Send vector @v if it is pending and nothing masks it.  pd->lock held. */
static int pci_msix_deliver(struct pci_dev *pd, unsigned v)
{
	struct pci_msix *m = &pd->msix;
	const uint32_t *e = &m->table[4 * v];

	if (!(m->pba[v / 64] & (1ULL << (v % 64))) || !msix_enabled_locked(pd) ||
	    (cfg_rd(pd, pd->msix_cap + 2, 2) & MSIX_CTRL_FMASK) || (e[3] & MSIX_VEC_MASKED))
		return 0;
	m->pba[v / 64] &= ~(1ULL << (v % 64));
	return pd->vm->send_msi(pd->vm, e[0] | (uint64_t)e[1] << 32, e[2]);
}

static void pci_msix_deliver_pending(struct pci_dev *pd)
{
	for (unsigned v = 0; v < pd->msix.nvec; v++)
		pci_msix_deliver(pd, v);
}

int pci_msix_notify(struct pci_dev *pd, unsigned v)
{
	int ret = -EINVAL;

	pthread_mutex_lock(&pd->lock);
	if (v < pd->msix.nvec && msix_enabled_locked(pd)) {
		/* Pending until delivered: a masked vector stays pending until unmasked. */
		pd->msix.pba[v / 64] |= 1ULL << (v % 64);
		ret = pci_msix_deliver(pd, v);
	}
	pthread_mutex_unlock(&pd->lock);
	return ret;
}

/* One dword of the table at byte @off.  pd->lock held. */
static void pci_msix_table_rw(struct pci_dev *pd, uint64_t off, uint32_t *val, bool is_write)
{
	unsigned v = (unsigned)(off / MSIX_ENTRY_SIZE), w = (unsigned)(off % MSIX_ENTRY_SIZE) / 4;
	uint32_t *e = &pd->msix.table[4 * v];

	if (!is_write) {
		*val = e[w];
		return;
	}
	if (w == 0)
		e[0] = *val & ~0x3U; /* dword-aligned addresses */
	else if (w == 3)
		e[3] = *val & MSIX_VEC_MASKED; /* the rest is reserved */
	else
		e[w] = *val;
	if (w == 3)
		pci_msix_deliver(pd, v);
}

/* Table and PBA accesses in the MSI-X BAR: aligned 4 or 8 bytes.  False if not there. */
static bool pci_msix_bar_io(struct pci_dev *pd, uint64_t off, void *data, unsigned size,
			    bool is_write)
{
	struct pci_msix *m = &pd->msix;
	uint64_t tsize = (uint64_t)m->nvec * MSIX_ENTRY_SIZE, psize = msix_pba_words(m->nvec) * 8;
	bool in_table = off >= m->table_off && off - m->table_off < tsize;
	bool in_pba = off >= m->pba_off && off - m->pba_off < psize;

	if (!in_table && !in_pba)
		return false;
	if ((size != 4 && size != 8) || off % size) {
		if (!is_write)
			memset(data, 0, size);
		return true;
	}
	pthread_mutex_lock(&pd->lock);
	for (unsigned i = 0; i < size / 4; i++) {
		uint32_t dw = (uint32_t)io_get((uint8_t *)data + 4 * i, 4);

		if (in_table) {
			pci_msix_table_rw(pd, off - m->table_off + 4 * i, &dw, is_write);
		} else if (!is_write) {
			uint64_t bit = (off - m->pba_off) * 8 + 32 * i;

			dw = (uint32_t)(m->pba[bit / 64] >> (bit % 64));
		}
		if (!is_write)
			io_put((uint8_t *)data + 4 * i, 4, dw);
	}
	pthread_mutex_unlock(&pd->lock);
	return true;
}

int pci_interrupt(struct pci_dev *pd, unsigned v)
{
	if (pci_msix_enabled(pd))
		return pci_msix_notify(pd, v);
	if (pci_msi_enabled(pd))
		return pci_msi_notify(pd, v);
	pci_irq_assert(pd);
	return 0;
}

static void pci_bar_io(void *opaque, uint64_t off, void *data, unsigned size, bool is_write)
{
	struct pci_bar *b = opaque;
	struct pci_dev *pd = b->pd;

	if (pd->msix.nvec && b->idx == pd->msix.bar &&
	    pci_msix_bar_io(pd, off, data, size, is_write))
		return;
	if (pd->emul->bar_io)
		pd->emul->bar_io(pd, b->idx, off, data, size, is_write);
	else if (!is_write)
		memset(data, 0xff, size);
}

/* ---- configuration access ---- */

static bool overlaps(unsigned off, unsigned size, unsigned reg, unsigned len)
{
	return off < reg + len && reg < off + size;
}

/* The generic write: write masks, write-1-to-clear bits, then side effects. */
static void pci_cfg_write_locked(struct pci_dev *pd, unsigned off, unsigned size, uint32_t val)
{
	uint16_t old_cmd = (uint16_t)cfg_rd(pd, PCIR_COMMAND, 2), cmd;

	if (off >= PCIR_BAR(0) && off < PCIR_BAR(PCI_BARS)) {
		pci_bar_write(pd, off, size, val);
		return;
	}
	for (unsigned i = 0; i < size; i++) {
		unsigned o = off + i;
		uint8_t b = (uint8_t)(val >> (8 * i));

		pd->cfg[o] = (uint8_t)((pd->cfg[o] & ~pd->wmask[o]) | (b & pd->wmask[o]));
		pd->cfg[o] &= (uint8_t) ~(b & pd->w1c[o]);
	}
	cmd = (uint16_t)cfg_rd(pd, PCIR_COMMAND, 2);
	if (((old_cmd ^ cmd) & (PCIM_CMD_IO | PCIM_CMD_MEM)) ||
	    (pd->rom.data && overlaps(off, size, PCIR_ROM, 4))) {
		pci_bars_want(pd);
		pci_bus_sync_bars(pd->bus);
	}
	if ((old_cmd ^ cmd) & PCIM_CMD_INTX_DISABLE)
		pci_intx_update(pd);
	if (pd->msi_cap && overlaps(off, size, pd->msi_cap + 2, 2))
		pci_msi_ctrl_written(pd);
	if (pd->msix_cap && overlaps(off, size, pd->msix_cap + 2, 2))
		pci_msix_deliver_pending(pd);
}

static void pci_cfg_access(struct pci_bus *bus, unsigned slot, unsigned func, unsigned off,
			   void *data, unsigned size, bool is_write)
{
	struct pci_dev *pd = bus->devs[slot][func];
	uint32_t v;

	if (!pd || (size != 1 && size != 2 && size != 4) || off % size) {
		if (!is_write)
			memset(data, 0xff, size);
		return;
	}
	if (off >= PCI_CFG_SIZE) {
		/* PCIe extended space: a zero header ends the (empty) extended list. */
		if (!is_write)
			memset(data, 0, size);
		return;
	}
	if (is_write) {
		v = (uint32_t)io_get(data, size);
		if (pd->emul->cfg_write && pd->emul->cfg_write(pd, off, size, v))
			return;
		pthread_mutex_lock(&pd->lock);
		pci_cfg_write_locked(pd, off, size, v);
		pthread_mutex_unlock(&pd->lock);
	} else {
		if (!pd->emul->cfg_read || !pd->emul->cfg_read(pd, off, size, &v)) {
			pthread_mutex_lock(&pd->lock);
			v = cfg_rd(pd, off, size);
			pthread_mutex_unlock(&pd->lock);
		}
		io_put(data, size, v);
	}
}

/* ECAM: bus 0 only, so the 1 MiB window holds 32 devices x 8 functions x 4 KiB. */
static void pci_ecam_io(void *opaque, uint64_t off, void *data, unsigned size, bool is_write)
{
	struct pci_bus *bus = opaque;
	unsigned slot = (unsigned)(off >> 15) & 31, func = (unsigned)(off >> 12) & 7;
	unsigned reg = (unsigned)off & 0xFFF;

	if (size == 8 && !(reg & 7)) {
		/* A 64-bit access is two dword accesses. */
		pci_cfg_access(bus, slot, func, reg, data, 4, is_write);
		pci_cfg_access(bus, slot, func, reg + 4, (uint8_t *)data + 4, 4, is_write);
		return;
	}
	pci_cfg_access(bus, slot, func, reg, data, size, is_write);
}

/*
 * 0xCF8-0xCFB: the address register is a dword at 0xCF8; a byte at 0xCF9 is the reset
 * register (on PCs the two share these ports: only dword accesses reach the address
 * register).  The bus routes an access to a single range, so we own the dword and pass the
 * byte at 0xCF9 to the handler that was registered there (pm.c).
 */
static void pci_cf8_io(void *opaque, uint64_t off, void *data, unsigned size, bool is_write)
{
	struct pci_bus *bus = opaque;

	if (off == 0 && size == 4) {
		pthread_mutex_lock(&bus->lock);
		if (is_write)
			bus->cf8 = (uint32_t)io_get(data, 4) & CF8_BITS;
		else
			io_put(data, 4, bus->cf8);
		pthread_mutex_unlock(&bus->lock);
	} else if (off == 1 && size == 1 && bus->cf9_fn) {
		bus->cf9_fn(bus->cf9_opaque, 0, data, 1, is_write);
	} else if (!is_write) {
		memset(data, 0xff, size);
	}
}

static void pci_cfc_io(void *opaque, uint64_t off, void *data, unsigned size, bool is_write)
{
	struct pci_bus *bus = opaque;
	uint32_t a;

	pthread_mutex_lock(&bus->lock);
	a = bus->cf8;
	pthread_mutex_unlock(&bus->lock);
	if (!(a & CF8_ENABLE) || ((a >> 16) & 0xFF) != 0) {
		if (!is_write)
			memset(data, 0xff, size);
		return;
	}
	pci_cfg_access(bus, (a >> 11) & 31, (a >> 8) & 7, (a & 0xFC) + (unsigned)off, data, size,
		       is_write);
}

/* Take over the 1-byte range at 0xCF9 if one exists, and register the dword at 0xCF8. */
static int pci_claim_cf8(struct pci_bus *bus)
{
	struct bus *pio = &bus->vm->pio;
	int ret = bus_register(pio, CF8_PORT, 4, pci_cf8_io, bus);

	if (ret != -EEXIST)
		return ret;
	/* struct bus is public; look for exactly [0xCF9, 1) and nothing else in the dword. */
	pthread_rwlock_rdlock(&pio->lock);
	for (unsigned i = 0; i < pio->n; i++) {
		if (pio->ranges[i].base == RESET_PORT && pio->ranges[i].len == 1) {
			bus->cf9_fn = pio->ranges[i].fn;
			bus->cf9_opaque = pio->ranges[i].opaque;
		}
	}
	pthread_rwlock_unlock(&pio->lock);
	if (!bus->cf9_fn)
		return -EEXIST;
	bus_unregister(pio, RESET_PORT);
	ret = bus_register(pio, CF8_PORT, 4, pci_cf8_io, bus);
	if (ret) {
		bus_register(pio, RESET_PORT, 1, bus->cf9_fn, bus->cf9_opaque);
		bus->cf9_fn = NULL;
	}
	return ret;
}

/* ---- the bus device (0xCF8 latch) ---- */

static struct pci_bus *pci_bus_of(struct vm *vm);

static int pci_bus_save(struct dev *d, struct sstream *s)
{
	struct pci_bus *bus = container_of(d, struct pci_bus, dev);
	uint32_t a;

	pthread_mutex_lock(&bus->lock);
	a = bus->cf8;
	pthread_mutex_unlock(&bus->lock);
	ss_u32(s, &a);
	return ss_error(s);
}

static int pci_bus_load(struct dev *d, struct sstream *s, unsigned version)
{
	struct pci_bus *bus = container_of(d, struct pci_bus, dev);
	uint32_t a = 0;

	if (version != d->ops->version)
		return ss_fail(s, -EINVAL, "state version %u is not supported (%u)", version,
			       d->ops->version);
	ss_u32(s, &a);
	if (!ss_error(s) && (a & ~CF8_BITS))
		ss_fail(s, -EINVAL, "PCI address register 0x%08x has reserved bits set", a);
	if (ss_finish(s))
		return ss_error(s);
	pthread_mutex_lock(&bus->lock);
	bus->cf8 = a;
	pthread_mutex_unlock(&bus->lock);
	return 0;
}

static int pci_noop(struct dev *d)
{
	return 0;
}

static void pci_bus_destroy(struct dev *d)
{
	struct pci_bus *bus = container_of(d, struct pci_bus, dev);

	pthread_mutex_destroy(&bus->lock);
	pthread_mutex_destroy(&bus->bar_lock);
	pthread_mutex_destroy(&bus->intx_lock);
	free(bus);
}

static const struct dev_ops pci_bus_ops = {
	.name = "pci-bus",
	.version = 1,
	.pause = pci_noop,
	.resume = pci_noop,
	.save = pci_bus_save,
	.load = pci_bus_load,
	.destroy = pci_bus_destroy,
};

static struct pci_bus *pci_bus_of(struct vm *vm)
{
	struct dev *d = vm_find_dev(vm, "pci");

	return d && d->ops == &pci_bus_ops ? container_of(d, struct pci_bus, dev) : NULL;
}

/* ---- a function's snapshot ---- */

struct pci_dev_state {
	uint8_t cfg[PCI_CFG_SIZE];
	bool intx;
	uint32_t *table;
	uint64_t *pba;
};

static int pci_dev_save(struct dev *d, struct sstream *s)
{
	struct pci_dev *pd = container_of(d, struct pci_dev, dev);
	uint32_t ver = pd->emul->version;

	pthread_mutex_lock(&pd->lock);
	ss_expect_u32(s, PCI_CFG_SIZE, "PCI configuration space size");
	ss_bytes(s, pd->cfg, PCI_CFG_SIZE);
	ss_bool(s, &pd->intx_asserted);
	ss_expect_u32(s, pd->msix.nvec, "MSI-X vectors");
	if (pd->msix.nvec) {
		ss_u32_array(s, pd->msix.table, 4 * (size_t)pd->msix.nvec);
		ss_u64_array(s, pd->msix.pba, msix_pba_words(pd->msix.nvec));
	}
	pthread_mutex_unlock(&pd->lock);
	ss_u32(s, &ver);
	if (pd->emul->save && !ss_error(s)) {
		int ret = pd->emul->save(pd, s);

		if (ret && !ss_error(s))
			ss_fail(s, ret, "%s state: %s", pd->emul->name, strerror(-ret));
	}
	return ss_error(s);
}

/*
 * Could this function have produced @st?  Read-only configuration bytes must be equal (the
 * same emulation in the same slot), BAR registers must be values the BAR can hold, and the
 * MSI/MSI-X state must be in range.  pd->lock held.
 */
static void pci_dev_check(struct pci_dev *pd, struct sstream *s, const struct pci_dev_state *st)
{
	for (unsigned o = 0; o < PCI_CFG_SIZE; o++) {
		uint8_t fixed = (uint8_t) ~(pd->wmask[o] | pd->w1c[o]);

		if (o >= PCIR_BAR(0) && o < PCIR_BAR(PCI_BARS))
			continue;
		if (o == PCIR_STATUS)
			fixed &= (uint8_t)~PCIM_STATUS_INTR;
		if ((st->cfg[o] ^ pd->cfg[o]) & fixed) {
			ss_fail(s, -EINVAL,
				"read-only configuration byte 0x%02x is 0x%02x, this "
				"%s has 0x%02x",
				o, st->cfg[o], pd->emul->name, pd->cfg[o]);
			return;
		}
	}
	for (int i = 0; i < PCI_BARS; i++) {
		uint32_t v = le_get(&st->cfg[PCIR_BAR(i)], 4);

		if (bar_encode(pd, i, v) != v)
			ss_fail(s, -EINVAL, "BAR %d holds 0x%08x, which this BAR cannot hold", i,
				v);
	}
	if (pd->msi_cap) {
		uint16_t ctrl = (uint16_t)le_get(&st->cfg[pd->msi_cap + 2], 2);

		if (((ctrl >> MSI_CTRL_MME_SHIFT) & 7) > ((ctrl >> MSI_CTRL_MMC_SHIFT) & 7))
			ss_fail(s, -EINVAL, "MSI enables more vectors than offered");
	}
	for (unsigned v = 0; v < pd->msix.nvec; v++) {
		if ((st->table[4 * v] & 0x3) || (st->table[4 * v + 3] & ~MSIX_VEC_MASKED))
			ss_fail(s, -EINVAL, "MSI-X entry %u has reserved bits set", v);
	}
	if (pd->msix.nvec % 64 &&
	    st->pba[msix_pba_words(pd->msix.nvec) - 1] >> (pd->msix.nvec % 64))
		ss_fail(s, -EINVAL, "MSI-X pending bits beyond vector %u", pd->msix.nvec - 1);
}

static void pci_dev_commit(struct pci_dev *pd, const struct pci_dev_state *st)
{
	pthread_mutex_lock(&pd->lock);
	memcpy(pd->cfg, st->cfg, PCI_CFG_SIZE);
	pd->intx_asserted = st->intx;
	if (pd->msix.nvec) {
		memcpy(pd->msix.table, st->table, 4 * sizeof(uint32_t) * pd->msix.nvec);
		memcpy(pd->msix.pba, st->pba, 8 * msix_pba_words(pd->msix.nvec));
	}
	pci_intx_update(pd);
	pci_bars_want(pd);
	pthread_mutex_unlock(&pd->lock);
	/* BARs go back to the saved addresses; one still blocked by another function that
	 * has not been loaded yet comes up when that one moves, or at resume. */
	pci_bus_sync_bars(pd->bus);
}

static int pci_dev_load(struct dev *d, struct sstream *s, unsigned version)
{
	struct pci_dev *pd = container_of(d, struct pci_dev, dev);
	struct pci_dev_state st = { .intx = false };
	uint32_t ver = 0;
	unsigned nvec = pd->msix.nvec;
	int ret;

	if (version != d->ops->version)
		return ss_fail(s, -EINVAL, "state version %u is not supported (%u)", version,
			       d->ops->version);
	if (nvec) {
		st.table = calloc(nvec, 4 * sizeof(uint32_t));
		st.pba = calloc(msix_pba_words(nvec), sizeof(uint64_t));
		if (!st.table || !st.pba) {
			ret = ss_fail(s, -ENOMEM, "out of memory");
			goto out;
		}
	}
	ss_expect_u32(s, PCI_CFG_SIZE, "PCI configuration space size");
	ss_bytes(s, st.cfg, PCI_CFG_SIZE);
	ss_bool(s, &st.intx);
	ss_expect_u32(s, nvec, "MSI-X vectors");
	if (nvec) {
		ss_u32_array(s, st.table, 4 * (size_t)nvec);
		ss_u64_array(s, st.pba, msix_pba_words(nvec));
	}
	ss_u32(s, &ver);
	if (!ss_error(s) && (!ver || ver > pd->emul->version))
		ss_fail(s, -EINVAL, "%s state version %u is %s (%u)", pd->emul->name, ver,
			ver ? "newer than this khyve supports" : "not a valid state version",
			pd->emul->version);
	if (!ss_error(s)) {
		pthread_mutex_lock(&pd->lock);
		pci_dev_check(pd, s, &st);
		pthread_mutex_unlock(&pd->lock);
	}
	if (ss_error(s)) {
		ret = ss_error(s);
		goto out;
	}
	/* The emulation's part ends the section; it finishes the stream and commits itself. */
	ret = pd->emul->load ? pd->emul->load(pd, s, ver) : ss_finish(s);
	if (!ret)
		ret = ss_error(s);
	if (!ret)
		pci_dev_commit(pd, &st);
out:
	free(st.table);
	free(st.pba);
	return ret;
}

static int pci_dev_pause(struct dev *d)
{
	struct pci_dev *pd = container_of(d, struct pci_dev, dev);

	return pd->emul->pause ? pd->emul->pause(pd) : 0;
}

static int pci_dev_resume(struct dev *d)
{
	struct pci_dev *pd = container_of(d, struct pci_dev, dev);

	pci_bus_sync_bars(pd->bus);
	return pd->emul->resume ? pd->emul->resume(pd) : 0;
}

static void pci_dev_free(struct pci_dev *pd)
{
	free(pd->rom_owned);
	free(pd->msix.table);
	free(pd->msix.pba);
	for (int i = 0; i < PCI_BARS; i++)
		free(pd->bar[i].czones);
	pthread_mutex_destroy(&pd->lock);
	free(pd);
}

/* Runs after the bus device's destroy: must not touch pd->bus. */
static void pci_dev_destroy(struct dev *d)
{
	struct pci_dev *pd = container_of(d, struct pci_dev, dev);

	if (pd->emul->destroy)
		pd->emul->destroy(pd);
	pci_dev_free(pd);
}

static const struct dev_ops pci_dev_ops = {
	.name = "pci",
	.version = 1,
	.pause = pci_dev_pause,
	.resume = pci_dev_resume,
	.save = pci_dev_save,
	.load = pci_dev_load,
	.destroy = pci_dev_destroy,
};

/* ---- creating functions ---- */

/* Writable header fields every function has; the rest is read-only unless set up. */
static void pci_cfg_defaults(struct pci_dev *pd)
{
	le_put(&pd->wmask[PCIR_COMMAND], 2,
	       PCIM_CMD_IO | PCIM_CMD_MEM | PCIM_CMD_BUSMASTER | 0x0040 | 0x0100 |
		       PCIM_CMD_INTX_DISABLE);	  /* + parity and SERR enables */
	le_put(&pd->w1c[PCIR_STATUS], 2, 0xF900); /* error bits */
	pd->wmask[PCIR_CACHELNSZ] = 0xFF;
	pd->wmask[PCIR_LATTIMER] = 0xFF;
	pd->wmask[PCIR_INTLINE] = 0xFF;
	pd->cfg[PCIR_INTLINE] = 0xFF; /* no interrupt line */
}

/* Set the multi-function bit of every function in @slot when it has more than one. */
static void pci_slot_fix_multi(struct pci_bus *bus, unsigned slot)
{
	unsigned n = 0;

	for (unsigned f = 0; f < PCI_FUNCS; f++)
		n += bus->devs[slot][f] != NULL;
	for (unsigned f = 0; f < PCI_FUNCS && n > 1; f++) {
		struct pci_dev *pd = bus->devs[slot][f];

		if (pd) {
			pthread_mutex_lock(&pd->lock);
			pd->cfg[PCIR_HDRTYPE] |= PCIM_HDRTYPE_MULTI;
			pthread_mutex_unlock(&pd->lock);
		}
	}
}

static struct pci_dev *pci_dev_alloc(struct vm *vm, struct pci_bus *bus, unsigned slot,
				     unsigned func, const struct pci_emul *e)
{
	struct pci_dev *pd = calloc(1, sizeof(*pd));

	if (!pd)
		return NULL;
	pd->dev.ops = &pci_dev_ops;
	pd->dev.kind = e->name;
	snprintf(pd->dev.id, sizeof(pd->dev.id), "pci@0.%u.%u", slot, func);
	snprintf(pd->opts, sizeof(pd->opts), "pci.0.%u.%u", slot, func);
	pd->vm = vm;
	pd->bus = bus;
	pd->emul = e;
	pd->slot = slot;
	pd->func = func;
	pthread_mutex_init(&pd->lock, NULL);
	for (int i = 0; i < PCI_BARS; i++) {
		pd->bar[i].pd = pd;
		pd->bar[i].idx = i;
		pd->bar[i].ram_slot = -1;
	}
	pci_cfg_defaults(pd);
	return pd;
}

/* All wanted BARs of @pd are on the bus; else the guest-visible layout would lie. */
static int pci_dev_check_bars(struct pci_dev *pd, char *err, size_t errlen)
{
	int ret = 0;

	pthread_mutex_lock(&pd->bus->bar_lock);
	for (int i = 0; i < PCI_BARS && !ret; i++) {
		if (pd->bar[i].want_on && !pd->bar[i].on) {
			snprintf(err, errlen, "%s: BAR %d at 0x%" PRIx64 " overlaps another device",
				 pd->opts, i, pd->bar[i].want_addr);
			ret = -EEXIST;
		}
	}
	pthread_mutex_unlock(&pd->bus->bar_lock);
	return ret;
}

static void pci_dev_unplug(struct pci_bus *bus, struct pci_dev *pd)
{
	pthread_mutex_lock(&pd->lock);
	cfg_wr(pd, PCIR_COMMAND, 2, 0);
	pci_bars_want(pd);
	pthread_mutex_unlock(&pd->lock);
	pci_bus_sync_bars(bus);
	bus->devs[pd->slot][pd->func] = NULL;
}

struct pci_dev *pci_dev_add(struct vm *vm, unsigned slot, unsigned func, const struct pci_emul *e,
			    char *err, size_t errlen)
{
	struct pci_bus *bus = pci_bus_of(vm);
	struct pci_dev *pd;
	char msg[200] = "";

	if (!bus) {
		snprintf(err, errlen, "pci.0.%u.%u: the PCI bus does not exist", slot, func);
		return NULL;
	}
	if (slot >= PCI_SLOTS || func >= PCI_FUNCS) {
		snprintf(err, errlen, "PCI 0:%u.%u: slot must be 0-31 and function 0-7", slot,
			 func);
		return NULL;
	}
	if (bus->devs[slot][func]) {
		snprintf(err, errlen, "PCI slot 0:%u.%u is already used by %s", slot, func,
			 bus->devs[slot][func]->emul->name);
		return NULL;
	}
	pd = pci_dev_alloc(vm, bus, slot, func, e);
	if (!pd) {
		snprintf(err, errlen, "pci.0.%u.%u: out of memory", slot, func);
		return NULL;
	}
	if (e->init(vm, pd, pd->opts, msg, sizeof(msg))) {
		snprintf(err, errlen, "%s (%s): %s", pd->opts, e->name, msg);
		pci_dev_free(pd);
		return NULL;
	}
	if (pci_romfile(pd, err, errlen) || pci_alloc_bars(bus, pd, err, errlen))
		goto fail;
	bus->devs[slot][func] = pd;
	pthread_mutex_lock(&pd->lock);
	pci_bars_want(pd);
	pthread_mutex_unlock(&pd->lock);
	pci_bus_sync_bars(bus);
	if (pci_dev_check_bars(pd, err, errlen)) {
		pci_dev_unplug(bus, pd);
		goto fail;
	}
	pci_slot_fix_multi(bus, slot);
	vm_add_dev(vm, &pd->dev);
	return pd;
fail:
	if (e->destroy)
		e->destroy(pd);
	pci_dev_free(pd);
	return NULL;
}

const struct pci_emul *pci_emul_find(const char *name)
{
	for (size_t i = 0; i < sizeof(pci_emuls) / sizeof(pci_emuls[0]); i++)
		if (!strcmp(pci_emuls[i]->name, name))
			return pci_emuls[i];
	return NULL;
}

const struct pci_emul *pci_emul_get(unsigned i)
{
	return i < sizeof(pci_emuls) / sizeof(pci_emuls[0]) ? pci_emuls[i] : NULL;
}

struct pci_dev *pci_find_dev(struct vm *vm, unsigned slot, unsigned func)
{
	struct pci_bus *bus = pci_bus_of(vm);

	if (!bus || slot >= PCI_SLOTS || func >= PCI_FUNCS)
		return NULL;
	return bus->devs[slot][func];
}

bool pci_slot_used(struct vm *vm, unsigned slot, unsigned func)
{
	return pci_find_dev(vm, slot, func) != NULL;
}

const char *pci_dev_opt(struct pci_dev *pd, const char *name)
{
	char key[96];

	if (!pd->vm->cfg)
		return NULL;
	snprintf(key, sizeof(key), "%s.%s", pd->opts, name);
	return config_get(pd->vm->cfg, key);
}

/* ---- pci_setup: the configuration ---- */

struct pci_scan {
	const char *emul[PCI_SLOTS][PCI_FUNCS];
	const char *key[PCI_SLOTS][PCI_FUNCS];
	char err[256];
	int ret;
};

/* A decimal number of at most 3 digits, the whole of [s, end). */
static bool pci_parse_num(const char *s, const char *end, unsigned *out)
{
	unsigned v = 0;

	if (s == end || end - s > 3)
		return false;
	for (; s < end; s++) {
		if (*s < '0' || *s > '9')
			return false;
		v = v * 10 + (unsigned)(*s - '0');
	}
	*out = v;
	return true;
}

/* "pci.B.S.F.device=NAME": record NAME for B:S.F.  Other pci.* keys are options. */
static void pci_scan_key(const char *key, const char *value, void *opaque)
{
	struct pci_scan *sc = opaque;
	size_t len = strlen(key);
	const char *s = key + 4; /* after "pci." */
	unsigned n[3];
	bool ok = true;

	if (sc->ret || len < 7 || strcmp(key + len - 7, ".device"))
		return;
	for (int i = 0; i < 3 && ok; i++) {
		const char *end = strchr(s, '.');

		ok = end && pci_parse_num(s, end, &n[i]);
		s = end ? end + 1 : s;
	}
	/* pci.B.S.F.<option>.device is an emulation's option (xhci's slot.N.device). */
	if (ok && strchr(s, '.'))
		return;
	if (!ok || strcmp(s, "device")) {
		snprintf(sc->err, sizeof(sc->err), "%s: want pci.BUS.SLOT.FUNCTION.device", key);
		sc->ret = -EINVAL;
	} else if (n[0] != 0) {
		snprintf(sc->err, sizeof(sc->err),
			 "%s: PCI bus %u does not exist (khyve has bus 0 "
			 "only)",
			 key, n[0]);
		sc->ret = -EINVAL;
	} else if (n[1] >= PCI_SLOTS || n[2] >= PCI_FUNCS) {
		snprintf(sc->err, sizeof(sc->err),
			 "%s: PCI slot %u function %u is out of range "
			 "(slots 0-31, functions 0-7)",
			 key, n[1], n[2]);
		sc->ret = -EINVAL;
	} else if (sc->emul[n[1]][n[2]]) {
		snprintf(sc->err, sizeof(sc->err),
			 "PCI slot 0:%u.%u is configured twice (%s and "
			 "%s)",
			 n[1], n[2], sc->key[n[1]][n[2]], key);
		sc->ret = -EEXIST;
	} else {
		sc->emul[n[1]][n[2]] = value;
		sc->key[n[1]][n[2]] = key;
	}
}

static void pci_known_names(char *buf, size_t len)
{
	size_t used = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < sizeof(pci_emuls) / sizeof(pci_emuls[0]) && used < len; i++)
		used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? ", " : "",
					 pci_emuls[i]->name);
}

/* Functions in slot/function order, which is also their snapshot order. */
static int pci_setup_devices(struct vm *vm, char *err, size_t errlen)
{
	struct pci_scan *sc = calloc(1, sizeof(*sc));
	char known[160];
	int ret = 0;

	if (!sc) {
		snprintf(err, errlen, "pci: out of memory");
		return -ENOMEM;
	}
	if (vm->cfg)
		config_foreach(vm->cfg, "pci.", pci_scan_key, sc);
	if (sc->ret) {
		snprintf(err, errlen, "%s", sc->err);
		ret = sc->ret;
		goto out;
	}
	for (unsigned s = 0; s < PCI_SLOTS && !ret; s++) {
		for (unsigned f = 0; f < PCI_FUNCS && !ret; f++) {
			const struct pci_emul *e;

			if (!sc->emul[s][f])
				continue;
			e = pci_emul_find(sc->emul[s][f]);
			if (!e) {
				pci_known_names(known, sizeof(known));
				snprintf(err, errlen,
					 "%s=%s: unknown PCI emulation in slot 0:%u.%u "
					 "(known: %s)",
					 sc->key[s][f], sc->emul[s][f], s, f, known);
				ret = -EINVAL;
			} else if (f && !sc->emul[s][0]) {
				snprintf(err, errlen,
					 "%s: PCI slot 0:%u.%u needs function 0 in slot "
					 "%u too (guests scan functions 1-7 only after 0)",
					 sc->key[s][f], s, f, s);
				ret = -EINVAL;
			} else if (!pci_dev_add(vm, s, f, e, err, errlen)) {
				ret = -EINVAL;
			}
		}
	}
out:
	free(sc);
	return ret;
}

static int pci_bus_register(struct pci_bus *bus, char *err, size_t errlen)
{
	struct vm *vm = bus->vm;
	int ret;

	ret = bus_register(&vm->mmio, PCI_ECAM_BASE, PCI_ECAM_SIZE, pci_ecam_io, bus);
	if (ret) {
		snprintf(err, errlen, "pci: ECAM at 0x%llx: %s", (unsigned long long)PCI_ECAM_BASE,
			 strerror(-ret));
		return ret;
	}
	ret = pci_claim_cf8(bus);
	if (ret) {
		snprintf(err, errlen, "pci: I/O ports 0xcf8-0xcfb: %s", strerror(-ret));
		goto fail_ecam;
	}
	ret = bus_register(&vm->pio, CFC_PORT, 4, pci_cfc_io, bus);
	if (ret) {
		snprintf(err, errlen, "pci: I/O ports 0xcfc-0xcff: %s", strerror(-ret));
		goto fail_cf8;
	}
	return 0;
fail_cf8:
	bus_unregister(&vm->pio, CF8_PORT);
	if (bus->cf9_fn)
		bus_register(&vm->pio, RESET_PORT, 1, bus->cf9_fn, bus->cf9_opaque);
fail_ecam:
	bus_unregister(&vm->mmio, PCI_ECAM_BASE);
	return ret;
}

int pci_setup(struct vm *vm, char *err, size_t errlen)
{
	struct pci_bus *bus;
	uint64_t base64, size64;
	int ret;

	if (pci_bus_of(vm)) {
		snprintf(err, errlen, "pci: the bus is already set up");
		return -EEXIST;
	}
	bus = calloc(1, sizeof(*bus));
	if (!bus) {
		snprintf(err, errlen, "pci: out of memory");
		return -ENOMEM;
	}
	bus->dev.ops = &pci_bus_ops;
	snprintf(bus->dev.id, sizeof(bus->dev.id), "pci");
	bus->vm = vm;
	pthread_mutex_init(&bus->lock, NULL);
	pthread_mutex_init(&bus->bar_lock, NULL);
	pthread_mutex_init(&bus->intx_lock, NULL);
	memset(bus->pirq_route, PCI_PIRQ_DISABLE, sizeof(bus->pirq_route));
	bus->mmio_next = PCI_MMIO32_BASE;
	bus->io_next = PCI_IO_WINDOW_BASE;
	e820_mmio64_window(vm->ram_size, &base64, &size64);
	bus->mmio64_next = base64;
	bus->mmio64_end = base64 + size64;
	ret = pci_bus_register(bus, err, errlen);
	if (ret) {
		pci_bus_destroy(&bus->dev);
		return ret;
	}
	/* First in the device list: its snapshot section comes before the functions'. */
	vm_add_dev(vm, &bus->dev);
	return pci_setup_devices(vm, err, errlen);
}
