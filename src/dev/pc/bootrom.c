// SPDX-License-Identifier: BSD-2-Clause
/*
 * The firmware ROM, its variable-store flash and the PAM-controlled BIOS area (see bootrom.h).
 *
 * The PAM rules are the Intel 82441FX (i440FX PMC) datasheet's, section 3.2.17: for each
 * segment, RE set sends reads to DRAM and WE set sends writes to DRAM; an access not sent
 * to DRAM goes to PCI, where the PIIX3's BIOS decode gives 0xE0000-0xFFFFF to the flash
 * (the ROM alias) and nothing answers 0xC0000-0xDFFFF (reads all-ones).  The flash command
 * set is the Intel 28F series' as QEMU's pflash_cfi01 offers it to OVMF (read array 0xFF,
 * read status 0x70, clear status 0x50, byte program 0x10/0x40, block erase 0x20 + 0xD0).
 *
 * Locking: @lock guards the PAM modes, the flash state and the slots; the MMIO handlers run
 * on vCPU threads, bootrom_set_pam on the vCPU writing the host bridge, save/load on the
 * event loop with every vCPU paused.
 */
#include "dev/pc/bootrom.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "sstream.h"
#include "vm.h"

#define PAGE 4096ULL
#define FOUR_GIB (4ULL << 30)
#define ALIAS_SIZE (BIOS_AREA_END - BIOS_ALIAS_BASE)
#define FLASH_BLOCK 4096ULL /* OVMF's PcdOvmfFirmwareBlockSize */

#define FL_READ_ARRAY 0xFF
#define FL_READ_STATUS 0x70
#define FL_CLEAR_STATUS 0x50
#define FL_PROGRAM 0x10
#define FL_PROGRAM_ALT 0x40
#define FL_ERASE 0x20
#define FL_ERASE_CONFIRM 0xD0
#define FL_READ_ID 0x90
#define FL_CFI_QUERY 0x98
#define FL_STATUS_READY 0x80
#define FL_STATUS_ERASE_ERR 0x20
#define FL_STATUS_PROGRAM_ERR 0x10

/* What the flash does with the next write or read. */
enum flash_mode {
	FLASH_ARRAY = 0,   /* reads return the contents */
	FLASH_STATUS,	   /* reads return the status register */
	FLASH_PROGRAM,	   /* the next write is the byte to program */
	FLASH_ERASE_SETUP, /* the next write must be the erase confirmation */
	FLASH_ID,	   /* identifier / CFI query: reads return 0 but at offset 0-1 */
	FLASH_MODES,
};

struct bootrom {
	struct dev dev;
	struct vm *vm;
	pthread_mutex_t lock;

	uint8_t *img; /* the image, page-aligned; NULL until a restore loads it */
	uint64_t size;

	int vars_fd; /* -1 without a variable store */
	uint8_t *vars;
	uint64_t vars_size;
	uint32_t flash_mode;
	uint8_t flash_status;
	bool vars_slot_on, vars_on_bus;
	uint64_t vars_bus_base;
	struct vm_disk vars_disk;

	uint8_t pam[PAM_SEGMENTS];
	/* What each PAM slot holds now, so that only changes reach KVM. */
	const uint8_t *slot_hva[PAM_SEGMENTS];
	uint32_t slot_flags[PAM_SEGMENTS];
	bool mapped; /* vm_set_memslots ran: RAM exists and slots may be set */
};

static uint64_t pam_seg_base(unsigned i)
{
	return BIOS_AREA_BASE + (uint64_t)i * 0x4000;
}

static uint64_t pam_seg_size(unsigned i)
{
	return i == PAM_SEGMENTS - 1 ? 0x10000 : 0x4000;
}

int bootrom_pam_segment(uint64_t gpa)
{
	if (gpa < BIOS_AREA_BASE || gpa >= BIOS_AREA_END)
		return -1;
	if (gpa >= 0xF0000)
		return PAM_SEGMENTS - 1;
	return (int)((gpa - BIOS_AREA_BASE) / 0x4000);
}

uint64_t bootrom_area_size(struct vm *vm)
{
	return vm->bootrom ? vm->bootrom->size + vm->bootrom->vars_size : 0;
}

static uint64_t vars_base(const struct bootrom *r)
{
	return FOUR_GIB - r->size - r->vars_size;
}

static int set_slot(struct vm *vm, unsigned slot, uint64_t gpa, uint64_t size, const void *hva,
		    uint32_t flags)
{
	struct kvm_userspace_memory_region kr = {
		.slot = slot,
		.flags = flags,
		.guest_phys_addr = gpa,
		.memory_size = hva ? size : 0,
		.userspace_addr = (uintptr_t)hva,
	};

	struct kvm_userspace_memory_region del = kr;

	if (vm->vm_fd < 0)
		return 0; /* unit tests: no KVM, the MMIO handlers do everything */
	/*
	 * A slot's backing or flags cannot change in place: delete it first (KVM refuses to
	 * delete a slot that does not exist; that is fine).
	 */
	del.memory_size = 0;
	del.flags = 0;
	ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &del);
	if (!hva)
		return 0;
	return ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &kr) < 0 ? -errno : 0;
}

/* The byte the ROM alias shows at @gpa in the BIOS area, if the ROM covers it. */
static const uint8_t *rom_alias(const struct bootrom *r, uint64_t gpa)
{
	uint64_t alias = r->size < ALIAS_SIZE ? r->size : ALIAS_SIZE;

	if (!r->img || gpa < BIOS_AREA_END - alias || gpa >= BIOS_AREA_END)
		return NULL;
	return r->img + r->size - (BIOS_AREA_END - gpa);
}

/* What segment @i should map for its mode: RAM, read-only RAM, the ROM alias, or nothing. */
static const uint8_t *pam_backing(struct bootrom *r, unsigned i, uint32_t *flags)
{
	uint64_t base = pam_seg_base(i), size = pam_seg_size(i);
	uint8_t *ram = vm_gpa(r->vm, base, size);

	*flags = 0;
	if (r->pam[i] & PAM_RE) {
		if (!(r->pam[i] & PAM_WE))
			*flags = KVM_MEM_READONLY;
		return ram;
	}
	*flags = KVM_MEM_READONLY;
	/* The alias covers a whole segment or none of it (sizes are 4 KiB multiples). */
	if (rom_alias(r, base) && rom_alias(r, base + size - 1))
		return rom_alias(r, base);
	return NULL;
}

/* Bring segment @i's slot in line with its mode.  r->lock held. */
static int pam_sync_segment(struct bootrom *r, unsigned i)
{
	uint32_t flags;
	const uint8_t *hva = pam_backing(r, i, &flags);
	int ret;

	if (!r->mapped || (hva == r->slot_hva[i] && flags == r->slot_flags[i]))
		return 0;
	ret = set_slot(r->vm, BOOTROM_SLOT_PAM + i, pam_seg_base(i), pam_seg_size(i), hva, flags);
	r->slot_hva[i] = ret ? NULL : hva;
	r->slot_flags[i] = flags;
	return ret;
}

/*
 * The flash is mapped for reading only while it is in read-array mode; in the other modes
 * every read must come to vars_io.  r->lock held.
 */
static int vars_sync(struct bootrom *r, bool force)
{
	bool on = r->mapped && r->vars && r->img && r->flash_mode == FLASH_ARRAY;
	int ret = 0;

	if (on == r->vars_slot_on && !force)
		return 0;
	ret = set_slot(r->vm, BOOTROM_SLOT_VARS, vars_base(r), r->vars_size, on ? r->vars : NULL,
		       KVM_MEM_READONLY);
	if (!ret)
		r->vars_slot_on = on;
	return ret;
}

int bootrom_map(struct vm *vm)
{
	struct bootrom *r = vm->bootrom;
	int ret = 0;

	if (!r)
		return 0;
	pthread_mutex_lock(&r->lock);
	r->mapped = true;
	if (r->img)
		ret = set_slot(vm, BOOTROM_SLOT_ROM, FOUR_GIB - r->size, r->size, r->img,
			       KVM_MEM_READONLY);
	/* Slots are re-made from scratch (a restore maps RAM anew). */
	for (unsigned i = 0; i < PAM_SEGMENTS; i++)
		r->slot_hva[i] = (const uint8_t *)1;
	for (unsigned i = 0; !ret && i < PAM_SEGMENTS; i++)
		ret = pam_sync_segment(r, i);
	if (!ret)
		ret = vars_sync(r, true);
	pthread_mutex_unlock(&r->lock);
	return ret;
}

void bootrom_set_pam(struct vm *vm, const uint8_t mode[PAM_SEGMENTS])
{
	struct bootrom *r = vm->bootrom;

	if (!r)
		return;
	pthread_mutex_lock(&r->lock);
	for (unsigned i = 0; i < PAM_SEGMENTS; i++) {
		r->pam[i] = mode[i] & (PAM_RE | PAM_WE);
		if (pam_sync_segment(r, i))
			log_warn("bootrom: cannot map BIOS segment 0x%llx: %s",
				 (unsigned long long)pam_seg_base(i), strerror(errno));
	}
	pthread_mutex_unlock(&r->lock);
}

/* One byte of the BIOS area, as the PAM state says.  r->lock held. */
static void bios_byte(struct bootrom *r, uint64_t gpa, uint8_t *b, bool is_write)
{
	int i = bootrom_pam_segment(gpa);
	uint8_t *ram = vm_gpa(r->vm, gpa, 1);
	const uint8_t *rom = rom_alias(r, gpa);

	if (i < 0)
		return;
	if (is_write) {
		if ((r->pam[i] & PAM_WE) && ram)
			*ram = *b;
		return; /* to PCI: the flash ignores it */
	}
	if ((r->pam[i] & PAM_RE) && ram)
		*b = *ram;
	else
		*b = rom ? *rom : 0xFF;
}

static void bios_io(void *opaque, uint64_t off, void *data, unsigned size, bool is_write)
{
	struct bootrom *r = opaque;

	pthread_mutex_lock(&r->lock);
	for (unsigned k = 0; k < size; k++)
		bios_byte(r, BIOS_AREA_BASE + off + k, (uint8_t *)data + k, is_write);
	pthread_mutex_unlock(&r->lock);
}

bool bootrom_dma_write(struct vm *vm, uint64_t gpa, const void *data, uint64_t len)
{
	struct bootrom *r = vm->bootrom;
	uint8_t *dst = vm_gpa(vm, gpa, len);
	bool ok = true;

	if (!dst)
		return false;
	if (!r || gpa >= BIOS_AREA_END || gpa + len <= BIOS_AREA_BASE) {
		memcpy(dst, data, len);
		return true;
	}
	pthread_mutex_lock(&r->lock);
	for (uint64_t k = 0; k < len; k++) {
		int i = bootrom_pam_segment(gpa + k);

		if (i >= 0 && !(r->pam[i] & PAM_WE))
			ok = false;
		else
			dst[k] = ((const uint8_t *)data)[k];
	}
	pthread_mutex_unlock(&r->lock);
	return ok;
}

/* ---- the variable store flash ---- */

static int flash_store(struct bootrom *r, uint64_t off, const void *p, size_t n)
{
	/* Through the file, so the page cache (and the read-only mapping) see it at once. */
	if (pwrite(r->vars_fd, p, n, (off_t)off) != (ssize_t)n)
		return -EIO;
	return 0;
}

static void flash_write(struct bootrom *r, uint64_t off, uint8_t v)
{
	switch (r->flash_mode) {
	case FLASH_PROGRAM:
		if (flash_store(r, off, &v, 1))
			r->flash_status |= FL_STATUS_PROGRAM_ERR;
		r->flash_status |= FL_STATUS_READY;
		r->flash_mode = FLASH_STATUS;
		return;
	case FLASH_ERASE_SETUP:
		if (v == FL_ERASE_CONFIRM) {
			static const uint8_t ones[FLASH_BLOCK] = {
				[0 ... FLASH_BLOCK - 1] = 0xFF,
			};

			if (flash_store(r, off & ~(FLASH_BLOCK - 1), ones, sizeof(ones)))
				r->flash_status |= FL_STATUS_ERASE_ERR;
		} else {
			r->flash_status |= FL_STATUS_ERASE_ERR | FL_STATUS_PROGRAM_ERR;
		}
		r->flash_status |= FL_STATUS_READY;
		r->flash_mode = FLASH_STATUS;
		return;
	default:
		break;
	}
	switch (v) {
	case FL_PROGRAM:
	case FL_PROGRAM_ALT:
		r->flash_mode = FLASH_PROGRAM;
		break;
	case FL_ERASE:
		r->flash_mode = FLASH_ERASE_SETUP;
		break;
	case FL_CLEAR_STATUS:
		r->flash_status = 0;
		r->flash_mode = FLASH_ARRAY;
		break;
	case FL_READ_STATUS:
		r->flash_mode = FLASH_STATUS;
		break;
	case FL_READ_ID:
	case FL_CFI_QUERY:
		r->flash_mode = FLASH_ID;
		break;
	default: /* FL_READ_ARRAY and anything unknown */
		r->flash_mode = FLASH_ARRAY;
		break;
	}
}

static uint8_t flash_read(struct bootrom *r, uint64_t off)
{
	switch (r->flash_mode) {
	case FLASH_STATUS:
	case FLASH_PROGRAM:
	case FLASH_ERASE_SETUP:
		return r->flash_status;
	case FLASH_ID:
		/* Manufacturer Intel, device 28F008SA: what a query for the id gets. */
		return off == 0 ? 0x89 : off == 1 ? 0xA2 : 0;
	default:
		return r->vars[off];
	}
}

static void vars_io(void *opaque, uint64_t off, void *data, unsigned size, bool is_write)
{
	struct bootrom *r = opaque;

	pthread_mutex_lock(&r->lock);
	for (unsigned k = 0; k < size; k++) {
		if (off + k >= r->vars_size) {
			if (!is_write)
				((uint8_t *)data)[k] = 0xFF;
			continue;
		}
		if (is_write) {
			/* A command is one byte; a wider write carries it in its low byte. */
			if (k == 0)
				flash_write(r, off, ((uint8_t *)data)[0]);
		} else {
			((uint8_t *)data)[k] = flash_read(r, off + k);
		}
	}
	vars_sync(r, false);
	pthread_mutex_unlock(&r->lock);
}

/*
 * The flash sits right below an image of @rom_size: claim its addresses for vars_io (a
 * restore learns the size only when the image loads).
 */
static int vars_register(struct bootrom *r, uint64_t rom_size)
{
	uint64_t base = FOUR_GIB - rom_size - r->vars_size;
	int ret;

	if (!r->vars_size || (r->vars_on_bus && r->vars_bus_base == base))
		return 0;
	if (r->vars_on_bus)
		bus_unregister(&r->vm->mmio, r->vars_bus_base);
	r->vars_on_bus = false;
	ret = bus_register(&r->vm->mmio, base, r->vars_size, vars_io, r);
	if (!ret) {
		r->vars_on_bus = true;
		r->vars_bus_base = base;
	}
	return ret;
}

/* ---- snapshot ---- */

struct bootrom_state {
	uint64_t size;
	uint8_t *img;
	uint64_t vars_size;
	uint32_t flash_mode;
	uint8_t flash_status;
};

static void bootrom_state_io(struct sstream *s, struct bootrom_state *st)
{
	ss_u64(s, &st->size);
	if (s->loading && !ss_error(s)) {
		if (!st->size || st->size % PAGE || st->size > BOOTROM_MAX_SIZE) {
			ss_fail(s, -EINVAL,
				"bootrom: image size %llu is not a multiple of 4 KiB "
				"from 4 KiB to 16 MiB",
				(unsigned long long)st->size);
			return;
		}
		st->img = vm_map_aligned(st->size, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (st->img == MAP_FAILED) {
			st->img = NULL;
			ss_fail(s, -ENOMEM, "bootrom: out of memory for the image");
			return;
		}
	}
	ss_bytes(s, st->img, st->size);
	ss_u64(s, &st->vars_size);
	ss_u32(s, &st->flash_mode);
	ss_u8(s, &st->flash_status);
	ss_check_max(s, st->flash_mode, FLASH_MODES - 1, "bootrom: flash mode");
}

static int bootrom_save(struct dev *d, struct sstream *s)
{
	struct bootrom *r = container_of(d, struct bootrom, dev);
	struct bootrom_state st;

	pthread_mutex_lock(&r->lock);
	st = (struct bootrom_state){ r->size, r->img, r->vars_size, r->flash_mode,
				     r->flash_status };
	bootrom_state_io(s, &st);
	pthread_mutex_unlock(&r->lock);
	return ss_error(s);
}

static int bootrom_load(struct dev *d, struct sstream *s, unsigned version)
{
	struct bootrom *r = container_of(d, struct bootrom, dev);
	struct bootrom_state st = { 0 };
	int ret;

	bootrom_state_io(s, &st);
	if (!ss_error(s) && st.vars_size != r->vars_size)
		ss_fail(s, -EINVAL,
			"bootrom: the snapshot's variable store is %llu bytes, "
			"lpc.bootvars is %llu",
			(unsigned long long)st.vars_size, (unsigned long long)r->vars_size);
	if (!ss_error(s) && st.size + st.vars_size > BOOTROM_MAX_SIZE)
		ss_fail(s, -EINVAL, "bootrom: image and variable store exceed 16 MiB");
	ret = ss_finish(s);
	if (ret) {
		if (st.img)
			munmap(st.img, st.size);
		return ret;
	}
	ret = vars_register(r, st.size);
	if (ret) {
		munmap(st.img, st.size);
		return ss_fail(s, ret, "bootrom: the variable store's address range is taken");
	}
	pthread_mutex_lock(&r->lock);
	if (r->img) {
		set_slot(r->vm, BOOTROM_SLOT_ROM, FOUR_GIB - r->size, r->size, NULL, 0);
		munmap(r->img, r->size);
	}
	r->img = st.img;
	r->size = st.size;
	r->flash_mode = st.flash_mode;
	r->flash_status = st.flash_status;
	pthread_mutex_unlock(&r->lock);
	/* The ROM's slot and the alias follow the loaded image; PAM is the host bridge's. */
	return r->mapped ? bootrom_map(r->vm) : 0;
}

static void bootrom_destroy(struct dev *d)
{
	struct bootrom *r = container_of(d, struct bootrom, dev);

	if (r->img)
		munmap(r->img, r->size);
	if (r->vars)
		munmap(r->vars, r->vars_size);
	if (r->vars_fd >= 0)
		close(r->vars_fd);
	bus_unregister(&r->vm->mmio, BIOS_AREA_BASE);
	if (r->vars_on_bus)
		bus_unregister(&r->vm->mmio, r->vars_bus_base);
	pthread_mutex_destroy(&r->lock);
	r->vm->bootrom = NULL;
	free(r);
}

static const struct dev_ops bootrom_ops = {
	.name = "bootrom",
	.version = 1,
	.save = bootrom_save,
	.load = bootrom_load,
	.destroy = bootrom_destroy,
};

/* ---- creation ---- */

static int bootrom_read_image(struct bootrom *r, const char *path, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	int ret = 0;

	if (fd < 0 || fstat(fd, &st) < 0) {
		ret = -errno;
		snprintf(err, errlen, "lpc.bootrom %s: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode) || !st.st_size || st.st_size % (off_t)PAGE ||
	    (uint64_t)st.st_size > BOOTROM_MAX_SIZE) {
		snprintf(err, errlen,
			 "lpc.bootrom %s: a boot ROM is a file of 4 KiB to 16 MiB in "
			 "whole 4 KiB pages (this one is %lld bytes)",
			 path, (long long)st.st_size);
		ret = -EINVAL;
		goto out;
	}
	r->size = (uint64_t)st.st_size;
	r->img = vm_map_aligned(r->size, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (r->img == MAP_FAILED) {
		r->img = NULL;
		ret = -ENOMEM;
		snprintf(err, errlen, "lpc.bootrom %s: out of memory", path);
		goto out;
	}
	for (uint64_t done = 0; done < r->size;) {
		ssize_t n = pread(fd, r->img + done, r->size - done, (off_t)done);

		if (n <= 0) {
			ret = n < 0 ? -errno : -EIO;
			snprintf(err, errlen, "lpc.bootrom %s: read: %s", path, strerror(-ret));
			goto out;
		}
		done += (uint64_t)n;
	}
out:
	if (fd >= 0)
		close(fd);
	return ret;
}

static int bootrom_open_vars(struct bootrom *r, const char *path, uint64_t rom_size, char *err,
			     size_t errlen)
{
	struct stat st;

	r->vars_fd = open(path, O_RDWR | O_CLOEXEC);
	if (r->vars_fd < 0 || fstat(r->vars_fd, &st) < 0) {
		snprintf(err, errlen, "lpc.bootvars %s: %s", path, strerror(errno));
		return -errno;
	}
	if (!S_ISREG(st.st_mode) || !st.st_size || st.st_size % (off_t)PAGE ||
	    (uint64_t)st.st_size + rom_size > BOOTROM_MAX_SIZE) {
		snprintf(err, errlen,
			 "lpc.bootvars %s: a variable store is a file in whole 4 KiB "
			 "pages, at most 16 MiB with the boot ROM (this one is %lld bytes)",
			 path, (long long)st.st_size);
		return -EINVAL;
	}
	r->vars_size = (uint64_t)st.st_size;
	r->vars = vm_map_aligned(r->vars_size, MAP_SHARED, r->vars_fd, 0);
	if (r->vars == MAP_FAILED) {
		r->vars = NULL;
		snprintf(err, errlen, "lpc.bootvars %s: mmap: %s", path, strerror(errno));
		return -errno;
	}
	/* Checkpoints make it durable, and snapshot.disks=clone copies it, like a disk. */
	r->vars_disk.fd = r->vars_fd;
	snprintf(r->vars_disk.path, sizeof(r->vars_disk.path), "%s", path);
	snprintf(r->vars_disk.cfg_key, sizeof(r->vars_disk.cfg_key), "lpc.bootvars");
	snprintf(r->vars_disk.id, sizeof(r->vars_disk.id), "bootvars");
	return 0;
}

int bootrom_create(struct vm *vm, bool restoring, char *err, size_t errlen)
{
	const char *path = config_get(vm->cfg, "lpc.bootrom");
	const char *vars = config_get(vm->cfg, "lpc.bootvars");
	struct bootrom *r;
	int ret;

	if (!path)
		return 0;
	r = calloc(1, sizeof(*r));
	if (!r) {
		snprintf(err, errlen, "bootrom: out of memory");
		return -ENOMEM;
	}
	r->vm = vm;
	r->vars_fd = -1;
	pthread_mutex_init(&r->lock, NULL);
	r->dev.ops = &bootrom_ops;
	snprintf(r->dev.id, sizeof(r->dev.id), "bootrom");
	/* A restore takes the image from the snapshot: the file may be gone or different. */
	ret = restoring ? 0 : bootrom_read_image(r, path, err, errlen);
	if (!ret && vars)
		ret = bootrom_open_vars(r, vars, r->size, err, errlen);
	if (ret)
		goto fail;
	ret = bus_register(&vm->mmio, BIOS_AREA_BASE, BIOS_AREA_END - BIOS_AREA_BASE, bios_io, r);
	if (!ret && !restoring) {
		ret = vars_register(r, r->size);
		if (ret)
			bus_unregister(&vm->mmio, BIOS_AREA_BASE);
	}
	if (ret) {
		snprintf(err, errlen, "bootrom: its address range is taken: %s", strerror(-ret));
		goto fail;
	}
	vm->bootrom = r;
	vm_add_dev(vm, &r->dev);
	if (r->vars)
		vm_add_disk(vm, &r->vars_disk);
	return 0;
fail:
	if (r->img)
		munmap(r->img, r->size);
	if (r->vars)
		munmap(r->vars, r->vars_size);
	if (r->vars_fd >= 0)
		close(r->vars_fd);
	pthread_mutex_destroy(&r->lock);
	free(r);
	return ret;
}
