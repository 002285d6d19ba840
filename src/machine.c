// SPDX-License-Identifier: BSD-2-Clause
/* Assembling a PC from the configuration (see machine.h). */
#include "machine.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

#include "arch/x86/acpi.h"
#include "arch/x86/boot.h"
#include "arch/x86/cpuid.h"
#include "arch/x86/firmware.h"
#include "backend/escape.h"
#include "bhyve_opts.h"
#include "dev/pc/bootrom.h"
#include "dev/pc/vmgenid.h"
#include "dev/pc/hpet.h"
#include "dev/pci/pci.h"
#include "dev/pc/pm.h"
#include "dev/pc/rtc.h"
#include "dev/pc/uart.h"
#include "gdb/gdbstub.h"
#include "log.h"
#include "vcpu.h"
#include "vm.h"

#define DEFAULT_MEMORY "256M"
#define MIN_MEMORY (16 * MiB)

int machine_check_config(struct config *cfg, bool restoring, char *err, size_t errlen)
{
	struct cpu_topo topo;
	uint64_t mem;
	const char *v;

	if (topo_from_config(cfg, &topo, err, errlen) ||
	    bhyve_opts_check(cfg, topo.cpus, err, errlen))
		return -EINVAL;
	if (config_get_size(cfg, "memory.size", 0, &mem) ||
	    (config_get(cfg, "memory.size") && mem < MIN_MEMORY)) {
		snprintf(err, errlen, "memory.size=%s: must be a size of at least 16M",
			 config_get(cfg, "memory.size"));
		return -EINVAL;
	}
	if (mem & 0xfff) {
		snprintf(err, errlen, "memory.size=%s: must be a multiple of 4 KiB",
			 config_get(cfg, "memory.size"));
		return -EINVAL;
	}
	v = config_get_default(cfg, "snapshot.disks", "sync");
	if (strcmp(v, "sync") && strcmp(v, "clone")) {
		snprintf(err, errlen, "snapshot.disks=%s: expected sync or clone", v);
		return -EINVAL;
	}
	bool direct;

	if (config_get_bool(cfg, "snapshot.direct", true, &direct)) {
		snprintf(err, errlen, "snapshot.direct=%s: expected on or off",
			 config_get(cfg, "snapshot.direct"));
		return -EINVAL;
	}
	if (!restoring && !config_get(cfg, "boot.kernel") && !config_get(cfg, "lpc.bootrom")) {
		snprintf(err, errlen,
			 "nothing to boot: give a kernel with -o boot.kernel=PATH "
			 "or firmware with -l bootrom,FILE");
		return -EINVAL;
	}
	struct cpuid_mask mask;
	int ch, ret = cpuid_mask_parse(config_get(cfg, "cpu.features"), &mask, err, errlen);

	if (!ret)
		ret = escape_parse(config_get(cfg, "console.escape"), &ch, err, errlen);
	for (unsigned i = 0; i < UART_NPORTS && !ret; i++) {
		char key[32];

		snprintf(key, sizeof(key), "lpc.com%u.path", i + 1);
		ret = uart_check_backend(i, config_get(cfg, key), err, errlen);
	}
	return ret ? ret : firmware_check_config(cfg, restoring, err, errlen);
}

static int machine_add_uarts(struct vm *vm, char *err, size_t errlen)
{
	for (unsigned i = 0; i < 4; i++) {
		char key[32];
		const char *path;

		snprintf(key, sizeof(key), "lpc.com%u.path", i + 1);
		path = config_get(vm->cfg, key);
		if (path && !uart_create(vm, i, path, err, errlen))
			return -EINVAL;
	}
	return 0;
}

static int machine_add_devices(struct vm *vm, bool restoring, char *err, size_t errlen)
{
	struct dev *rtc, *pm;
	int ret;

	/* Creation order is snapshot order; keep it stable. */
	if (!(rtc = rtc_create(vm, err, errlen)) || !(pm = pm_create(vm, err, errlen)) ||
	    !hpet_create(vm, err, errlen))
		return -EINVAL;
	rtc_set_alarm_hook(rtc, pm_rtc_alarm, pm);
	if (machine_add_uarts(vm, err, errlen))
		return -EINVAL;
	ret = pci_setup(vm, err, errlen);
	return ret ? ret : vmgenid_create(vm, restoring, err, errlen);
}

static int machine_add_vcpus(struct vm *vm, char *err, size_t errlen)
{
	if (topo_from_config(vm->cfg, &vm->topo, err, errlen))
		return -EINVAL;
	vm->ncpus = vm->topo.cpus;
	vm->vcpus = calloc(vm->ncpus, sizeof(*vm->vcpus));
	if (!vm->vcpus)
		return -ENOMEM;
	for (unsigned i = 0; i < vm->ncpus; i++) {
		vm->vcpus[i] = vcpu_create(vm, i, err, errlen);
		if (!vm->vcpus[i])
			return -EINVAL;
	}
	return 0;
}

/* Load the kernel and point the BSP at its entry. */
static int machine_boot(struct vm *vm, char *err, size_t errlen)
{
	struct boot_entry entry;
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	int fd = vm->vcpus[0]->fd;
	int ret;

	ret = boot_load(vm, &entry, err, errlen);
	if (ret)
		return ret;
	if (ioctl(fd, KVM_GET_SREGS, &sregs) < 0 || ioctl(fd, KVM_GET_REGS, &regs) < 0)
		goto fail;
	boot_setup_sregs(&entry, &sregs);
	boot_setup_regs(&entry, &regs);
	/* SREGS before REGS: the mode decides how RIP and flags are taken. */
	if (ioctl(fd, KVM_SET_SREGS, &sregs) < 0 || ioctl(fd, KVM_SET_REGS, &regs) < 0)
		goto fail;
	return 0;
fail:
	ret = -errno;
	snprintf(err, errlen, "setting the boot vCPU's registers: %s", strerror(errno));
	return ret;
}

int machine_create(struct vm *vm, struct config *cfg, bool restoring, char *err, size_t errlen)
{
	uint64_t mem;
	int ret;

	/* A restored VM keeps the UUID its snapshot recorded (or has none, if it had none). */
	ret = restoring ? 0 : bhyve_opts_default_uuid(cfg, err, errlen);
	if (!ret)
		ret = vm_create(vm, cfg, err, errlen);
	if (!ret)
		ret = bootrom_create(vm, restoring, err, errlen);
	if (ret)
		goto fail;
	config_get_size(cfg, "memory.size", 0, &mem);
	if (!mem)
		parse_size(DEFAULT_MEMORY, &mem);
	vm->ram_size = mem;
	if (!restoring) {
		ret = vm_add_memory(vm, mem);
		if (!ret)
			ret = vm_set_memslots(vm);
		if (ret) {
			snprintf(err, errlen, "guest memory (%llu MiB): %s",
				 (unsigned long long)(mem >> 20), strerror(-ret));
			goto fail;
		}
	}
	ret = machine_add_vcpus(vm, err, errlen);
	if (!ret)
		ret = machine_add_devices(vm, restoring, err, errlen);
	if (ret)
		goto fail;
	if (vm->bootrom) {
		/* Firmware starts at the reset vector, where KVM put the BSP. */
		ret = firmware_setup(vm, err, errlen);
	} else if (!restoring) {
		ret = acpi_build(vm, err, errlen);
		if (!ret)
			ret = machine_boot(vm, err, errlen);
	}
	/* After the boot state: -x changes the APIC base that KVM_SET_SREGS wrote. */
	if (!ret)
		ret = bhyve_opts_apply(vm, restoring, err, errlen);
	if (ret)
		goto fail;
	if (log_enabled(LOG_DEBUG)) {
		log_debug("%s: %u vCPUs, %llu MiB of RAM%s", vm->name, vm->ncpus,
			  (unsigned long long)(mem >> 20), restoring ? ", to be restored" : "");
		for (struct dev *d = vm->devs; d; d = d->next)
			log_debug("device %s: %s", d->id, d->kind ? d->kind : d->ops->name);
	}
	return 0;
fail:
	vm_destroy(vm);
	return ret ? ret : -EINVAL;
}

int machine_start(struct vm *vm, char *err, size_t errlen)
{
	struct timespec ts;
	int ret = evloop_start(&vm->ev);

	clock_gettime(CLOCK_MONOTONIC, &ts);
	vm->start_ns = (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;

	for (unsigned i = 0; !ret && i < vm->ncpus; i++)
		ret = vcpu_start(vm->vcpus[i]);
	if (ret)
		snprintf(err, errlen, "starting threads: %s", strerror(-ret));
	return ret;
}

void machine_destroy(struct vm *vm)
{
	vcpus_stop(vm);
	gdbstub_free(vm);
	vm_destroy(vm);
}
