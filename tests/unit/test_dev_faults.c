// SPDX-License-Identifier: BSD-2-Clause
/*
 * Devices created on a host that runs out of memory (tests/faultinj.h): with the Nth malloc
 * (calloc, realloc, strdup, open, openat, mmap, fstat, dup, eventfd) of a device's creation
 * failing, for N = 1, 2, ... until creation no longer meets the fault, every attempt is refused with a message, leaves the slot free for a later
 * device and leaks nothing (ASan's leak check runs on this binary in asan-unit).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

#include "dev/pc/atkbdc.h"
#include "dev/pc/bootrom.h"
#include "dev/pc/fw_cfg.h"
#include "dev/pc/hpet.h"
#include "dev/pc/pm.h"
#include "dev/pc/rtc.h"
#include "dev/pc/uart.h"
#include "dev/pc/vmgenid.h"
#include "dev/pci/pci.h"
#include "devsnap.h"
#include "faultinj.h"
#include "vm.h"

/* More attempts than any device makes allocations: the sweep must end before this. */
#define SWEEP_MAX 64

extern const struct pci_emul pci_emul_virtio_rnd, pci_emul_xhci, pci_emul_hostbridge, pci_emul_lpc,
	pci_emul_virtio_blk, pci_emul_ahci_hd, pci_emul_fbuf;

static const char *dev_opts[4]; /* pci.0.4.0.KEY=VALUE lines of the device under test */

static void no_irq(struct vm *vm, unsigned gsi, int level)
{
}

static int no_msi(struct vm *vm, uint64_t addr, uint32_t data)
{
	return 0;
}

/* ---- save and load of a created device ---- */

/*
 * Save @d with the Nth allocation failing: the save reports it (its return or the stream's
 * sticky error).  Load its own bytes back with the Nth allocation failing: a refused load
 * leaves the device saving what it saved before, one that met no fault succeeds.
 */
static void state_sweep(struct dev *d)
{
	static const enum fi_call kinds[] = { FI_MALLOC, FI_CALLOC, FI_REALLOC };
	struct sstream s;
	size_t len, len2;
	uint8_t *good = devsnap_save_copy(d, &len), *again;

	for (unsigned i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		for (unsigned n = 1;; n++) {
			int ret;
			bool hit;

			assert_true(n < SWEEP_MAX);
			fi_reset();
			fi_fail(kinds[i], n, 0);
			ss_init_save(&s);
			ret = d->ops->save(d, &s);
			if (!ret)
				ret = ss_error(&s);
			hit = fi_hits(kinds[i]) > 0;
			fi_reset();
			ss_free(&s);
			if (!hit) {
				assert_int_equal(ret, 0);
				break;
			}
			assert_int_not_equal(ret, 0);
		}
		for (unsigned n = 1;; n++) {
			int ret;
			bool hit;

			assert_true(n < SWEEP_MAX);
			fi_reset();
			fi_fail(kinds[i], n, 0);
			ret = devsnap_load(d, good, len, d->ops->version);
			hit = fi_hits(kinds[i]) > 0;
			fi_reset();
			again = devsnap_save_copy(d, &len2);
			assert_int_equal(len2, len);
			assert_memory_equal(again, good, len);
			free(again);
			if (!hit) {
				assert_int_equal(ret, 0);
				break;
			}
		}
	}
	free(good);
}

/*
 * Add @e in slot 4 of a fresh VM with the @nth call of @c failing; returns whether the fault
 * was met.  A refused device says why and frees its slot; one that met no fault is created.
 */
static bool add_with_fault(const struct pci_emul *e, enum fi_call c, unsigned nth)
{
	struct vm vm;
	struct pci_dev *pd;
	char err[256] = "";
	bool hit;

	vm_init_bare(&vm, true);
	vm.set_irq = no_irq;
	vm.send_msi = no_msi;
	assert_int_equal(vm_add_memory(&vm, 1 << 20), 0);
	struct config cfg;
	char kv[300];

	config_init(&cfg);
	vm.cfg = &cfg;
	for (unsigned i = 0; dev_opts[i]; i++) {
		snprintf(kv, sizeof(kv), "pci.0.4.0.%s", dev_opts[i]);
		assert_int_equal(config_set_pair(&cfg, kv), 0);
	}
	assert_int_equal(pci_setup(&vm, err, sizeof(err)), 0);
	fi_reset();
	fi_fail(c, nth, 0);
	pd = pci_dev_add(&vm, 4, 0, e, err, sizeof(err));
	hit = fi_hits(c) > 0;
	fi_reset();
	if (!hit) {
		assert_non_null(pd);
		if (c == FI_MALLOC)
			state_sweep(&pd->dev);
	} else if (!pd) {
		assert_string_not_equal(err, "");
		assert_false(pci_slot_used(&vm, 4, 0));
	}
	vm_destroy(&vm);
	config_free(&cfg);
	return hit;
}

static void sweep_one(const struct pci_emul *e, enum fi_call c)
{
	unsigned n = 1;

	while (n < SWEEP_MAX && add_with_fault(e, c, n))
		n++;
	assert_true(n < SWEEP_MAX);
}

/* Every kind of host call a creation may make, one kind at a time. */
static void sweep(const struct pci_emul *e)
{
	static const enum fi_call kinds[] = { FI_MALLOC, FI_CALLOC, FI_REALLOC, FI_STRDUP,
					      FI_OPEN,	 FI_OPENAT, FI_MMAP,	FI_FSTAT,
					      FI_DUP,	 FI_EVENTFD };

	for (unsigned i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		sweep_one(e, kinds[i]);
}

/* Devices with a disk image, a VNC socket or no options. */
static void test_more_oom(void **state)
{
	char img[64], kv[96], sock[96];
	int fd;

	snprintf(img, sizeof(img), "/tmp/khyve-devfaults.%d", getpid());
	fd = open(img, O_CREAT | O_RDWR | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 1 << 20), 0);
	close(fd);
	sweep(&pci_emul_hostbridge);
	sweep(&pci_emul_lpc);
	sweep(&pci_emul_xhci);
	snprintf(kv, sizeof(kv), "path=%s", img);
	dev_opts[0] = kv;
	sweep(&pci_emul_virtio_blk);
	sweep(&pci_emul_ahci_hd);
	snprintf(sock, sizeof(sock), "unix=%s.vnc", img);
	dev_opts[0] = sock;
	dev_opts[1] = "font=/nonexistent";
	sweep(&pci_emul_fbuf);
	dev_opts[0] = dev_opts[1] = NULL;
	unlink(img);
}

static void test_virtio_rnd_oom(void **state)
{
	sweep(&pci_emul_virtio_rnd);
}

/* ---- the platform devices (not on PCI) ---- */

static char uart_log[96];

/* Create one platform device in @vm: 0 when created, else nonzero with @err. */
static int make_uart(struct vm *vm, char *err, size_t errlen)
{
	char be[128];

	snprintf(be, sizeof(be), "file:%s", uart_log);
	return !uart_create(vm, 0, be, err, errlen);
}

static int make_rtc(struct vm *vm, char *err, size_t errlen)
{
	return !rtc_create(vm, err, errlen);
}

static int make_hpet(struct vm *vm, char *err, size_t errlen)
{
	return !hpet_create(vm, err, errlen);
}

static int make_pm(struct vm *vm, char *err, size_t errlen)
{
	return !pm_create(vm, err, errlen);
}

static int make_atkbdc(struct vm *vm, char *err, size_t errlen)
{
	return !atkbdc_create(vm, err, errlen);
}

static struct config rom_cfg;

/* A 64 KiB boot ROM and an 8 KiB variable store (files set up by the test). */
static int make_bootrom(struct vm *vm, char *err, size_t errlen)
{
	vm->cfg = &rom_cfg;
	return bootrom_create(vm, false, err, errlen);
}

static int make_fw_cfg(struct vm *vm, char *err, size_t errlen)
{
	return !fw_cfg_create(vm, err, errlen);
}

static bool plat_with_fault(int (*make)(struct vm *, char *, size_t), enum fi_call c, unsigned nth)
{
	struct vm vm;
	char err[256] = "";
	bool hit;
	int ret;

	vm_init_bare(&vm, true);
	vm.set_irq = no_irq;
	vm.send_msi = no_msi;
	vm.ncpus = 1;
	assert_int_equal(vm_add_memory(&vm, 1 << 20), 0);
	fi_reset();
	fi_fail(c, nth, 0);
	ret = make(&vm, err, sizeof(err));
	hit = fi_hits(c) > 0;
	fi_reset();
	if (!hit) {
		assert_int_equal(ret, 0);
		if (c == FI_MALLOC)
			state_sweep(vm.devs);
	} else if (ret) {
		assert_string_not_equal(err, "");
		assert_null(vm.devs); /* nothing half-registered */
	}
	vm_destroy(&vm);
	return hit;
}

static void test_platform_oom(void **state)
{
	static const enum fi_call kinds[] = { FI_MALLOC, FI_CALLOC,  FI_REALLOC, FI_STRDUP,
					      FI_OPEN,	 FI_OPENAT,  FI_MMAP,	 FI_FSTAT,
					      FI_DUP,	 FI_EVENTFD, FI_PREAD };
	int (*const makers[])(struct vm *, char *, size_t) = {
		make_uart, make_rtc, make_hpet, make_pm, make_atkbdc, make_fw_cfg, make_bootrom,
	};

	char rom[64], vars[64];
	int fd;

	snprintf(uart_log, sizeof(uart_log), "/tmp/khyve-devfaults-log.%d", getpid());
	snprintf(rom, sizeof(rom), "/tmp/khyve-devfaults-rom.%d", getpid());
	snprintf(vars, sizeof(vars), "/tmp/khyve-devfaults-vars.%d", getpid());
	fd = open(rom, O_CREAT | O_RDWR | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 64 << 10), 0);
	close(fd);
	fd = open(vars, O_CREAT | O_RDWR | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 8 << 10), 0);
	close(fd);
	config_init(&rom_cfg);
	config_set(&rom_cfg, "lpc.bootrom", rom);
	config_set(&rom_cfg, "lpc.bootvars", vars);
	for (unsigned m = 0; m < sizeof(makers) / sizeof(makers[0]); m++) {
		for (unsigned i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
			unsigned n = 1;

			while (n < SWEEP_MAX && plat_with_fault(makers[m], kinds[i], n))
				n++;
			assert_true(n < SWEEP_MAX);
		}
	}
	config_free(&rom_cfg);
	unlink(uart_log);
	unlink(rom);
	unlink(vars);
}

/* ---- the host's entropy failing (getrandom) ---- */

static unsigned vmgenid_edges;

static void count_irq(struct vm *vm, unsigned gsi, int level)
{
	if (gsi == VMGENID_IRQ && level)
		vmgenid_edges++;
}

#define VMGENID_GPA 0xE0040ULL

/*
 * No new identifier when getrandom fails or comes back short: the error is returned (-EIO for
 * a short one, whatever errno held before), the guest's copy stays as it was, and a restore
 * that could not renew it does not notify the guest.
 */
static void test_vmgenid_getrandom_fails(void **state)
{
	static const uint8_t zero[VMGENID_SIZE];
	uint8_t a[VMGENID_SIZE], *id, *saved;
	struct config cfg;
	char err[256] = "";
	struct vm vm;
	struct dev *d;
	size_t len;

	vm_init_bare(&vm, true);
	config_init(&cfg);
	vm.cfg = &cfg;
	vm.set_irq = count_irq;
	assert_int_equal(vm_add_memory(&vm, 1 << 20), 0);
	assert_int_equal(vmgenid_create(&vm, false, err, sizeof(err)), 0);
	d = vm_find_dev(&vm, "vmgenid");
	assert_non_null(d);
	id = vm_gpa(&vm, VMGENID_GPA, VMGENID_SIZE);
	fi_reset();
	fi_fail(FI_GETRANDOM, 1, EAGAIN);
	assert_int_equal(vmgenid_set_addr(d, VMGENID_GPA), -EAGAIN);
	assert_true(fi_all_fired());
	assert_memory_equal(id, zero, VMGENID_SIZE);
	fi_reset();
	fi_short(FI_GETRANDOM, 1);
	errno = EBADF;
	assert_int_equal(vmgenid_set_addr(d, VMGENID_GPA), -EIO);
	assert_true(fi_all_fired());
	assert_memory_equal(id, zero, VMGENID_SIZE);
	fi_reset();
	assert_int_equal(vmgenid_set_addr(d, VMGENID_GPA), 0);
	assert_memory_not_equal(id, zero, VMGENID_SIZE);
	memcpy(a, id, VMGENID_SIZE);
	saved = devsnap_save_copy(d, &len);
	/* A restore: no identifier, no notification. */
	fi_fail(FI_GETRANDOM, 1, EIO);
	assert_int_equal(devsnap_load(d, saved, len, 1), -EIO);
	assert_true(fi_all_fired());
	assert_memory_equal(id, a, VMGENID_SIZE);
	assert_int_equal(d->ops->resume(d), 0);
	assert_int_equal(vmgenid_edges, 0);
	fi_reset();
	assert_int_equal(devsnap_load(d, saved, len, 1), 0);
	assert_memory_not_equal(id, a, VMGENID_SIZE);
	assert_int_equal(d->ops->resume(d), 0);
	assert_int_equal(vmgenid_edges, 1);
	free(saved);
	vm_destroy(&vm);
	config_free(&cfg);
}

/* ---- the host failing the boot ROM's variable store (pwrite) ---- */

static uint8_t vars_rd(struct vm *vm, uint64_t gpa)
{
	uint8_t b = 0x5A;

	bus_access(&vm->mmio, gpa, &b, 1, false);
	return b;
}

static void vars_wr(struct vm *vm, uint64_t gpa, uint8_t v)
{
	bus_access(&vm->mmio, gpa, &v, 1, true);
}

/*
 * A program or block erase the host cannot write to the file: the status register shows
 * ready with the program (0x10) or erase (0x20) error, and the guest reads the old bytes
 * back; once the host writes again, so does the flash.
 */
static void test_bootrom_flash_host_fails(void **state)
{
	const uint64_t v = (4ULL << 30) - (64 << 10) - (8 << 10);
	char rom[64], vars[64], err[256];
	static uint8_t ram[1 << 20];
	struct config cfg;
	struct vm vm;
	int fd;

	snprintf(rom, sizeof(rom), "/tmp/khyve-devfaults-rom2.%d", getpid());
	snprintf(vars, sizeof(vars), "/tmp/khyve-devfaults-vars2.%d", getpid());
	fd = open(rom, O_CREAT | O_RDWR | O_TRUNC, 0600);
	assert_int_equal(ftruncate(fd, 64 << 10), 0);
	close(fd);
	fd = open(vars, O_CREAT | O_RDWR | O_TRUNC, 0600);
	assert_int_equal(ftruncate(fd, 8 << 10), 0);
	close(fd);
	vm_init_bare(&vm, true);
	config_init(&cfg);
	config_set(&cfg, "lpc.bootrom", rom);
	config_set(&cfg, "lpc.bootvars", vars);
	config_set(&cfg, "pci.0.0.0.device", "hostbridge");
	vm.cfg = &cfg;
	vm.mem[0] = (struct mem_region){ .gpa = 0, .size = sizeof(ram), .hva = ram };
	vm.nmem = 1;
	vm.ram_size = sizeof(ram);
	assert_int_equal(bootrom_create(&vm, false, err, sizeof(err)), 0);
	assert_int_equal(bootrom_map(&vm), 0);
	assert_int_equal(pci_setup(&vm, err, sizeof(err)), 0);
	assert_int_equal(vars_rd(&vm, v + 5), 0);
	fi_reset();
	fi_fail(FI_PWRITE, 1, EIO);
	vars_wr(&vm, v + 5, 0x40);
	vars_wr(&vm, v + 5, 0xA5);
	assert_true(fi_all_fired());
	assert_int_equal(vars_rd(&vm, v + 5), 0x90);
	vars_wr(&vm, v, 0xFF);
	assert_int_equal(vars_rd(&vm, v + 5), 0);
	fi_reset();
	fi_fail(FI_PWRITE, 1, ENOSPC);
	vars_wr(&vm, v + 4096, 0x20);
	vars_wr(&vm, v + 4096, 0xD0);
	assert_true(fi_all_fired());
	assert_int_equal(vars_rd(&vm, v + 4096), 0xB0);
	vars_wr(&vm, v, 0x50);
	assert_int_equal(vars_rd(&vm, v + 4096), 0);
	fi_reset();
	vars_wr(&vm, v + 5, 0x40);
	vars_wr(&vm, v + 5, 0xA5);
	assert_int_equal(vars_rd(&vm, v + 5), 0x80);
	vars_wr(&vm, v, 0xFF);
	assert_int_equal(vars_rd(&vm, v + 5), 0xA5);
	vm_destroy(&vm);
	config_free(&cfg);
	unlink(rom);
	unlink(vars);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_virtio_rnd_oom),
		cmocka_unit_test(test_more_oom),
		cmocka_unit_test(test_platform_oom),
		cmocka_unit_test(test_vmgenid_getrandom_fails),
		cmocka_unit_test(test_bootrom_flash_host_fails),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
