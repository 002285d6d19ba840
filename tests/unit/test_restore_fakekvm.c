// SPDX-License-Identifier: BSD-2-Clause
/*
 * A whole checkpoint and restore (snap/snapshot.c) of a VM built as khyve builds it
 * (machine_create), against a KVM this test plays itself, so that it runs on any host: this
 * file's open() hands out a memfd for /dev/kvm, and its ioctl() answers KVM's requests (every
 * KVM fd is a memfd, so the vCPU's kvm_run can be mapped) and passes every other one to the
 * kernel.  The vCPUs' threads are never started: nothing runs the guest.
 *  - what a checkpoint writes, a restore takes back: devices, the vCPU, the VM's clocks and
 *    irqchips (the fake records what it is given), memory mapped from the file;
 *  - a restore with snapshot.time=catchup moves the clock on; one whose disk changed is
 *    refused unless accepted; one over a chain maps each link's pages;
 *  - a device state that does not load, or KVM refusing the vCPU's state, refuses the restore.
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
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <linux/kvm.h>

#include <cmocka.h>

#include "config.h"
#include "hltguest.h"
#include "machine.h"
#include "snap/format.h"
#include "snap/snapshot.h"
#include "snapcraft.h"
#include "vm.h"

#define MSR_TSC 0x10
#define RUN_SIZE 8192

/* ---- the fake KVM ---- */

static struct {
	uint64_t tsc;
	unsigned sets;		     /* KVM_SET_* requests made */
	unsigned long refuse;	     /* this request fails with EINVAL */
	struct kvm_clock_data clock; /* what KVM_SET_CLOCK was given */
	unsigned set_clock;
} kvm = { .tsc = 5000000000ULL };

static int fake_fd(size_t size)
{
	int fd = memfd_create("fake-kvm", MFD_CLOEXEC);

	if (fd >= 0 && size && ftruncate(fd, (off_t)size) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

int open(const char *path, int flags, ...);
int ioctl(int fd, unsigned long req, ...);

int open(const char *path, int flags, ...)
{
	mode_t mode = 0;

	if (flags & (O_CREAT | __O_TMPFILE)) {
		va_list ap;

		va_start(ap, flags);
		mode = (mode_t)va_arg(ap, int);
		va_end(ap);
	}
	if (!strcmp(path, "/dev/kvm"))
		return fake_fd(0);
	return (int)syscall(SYS_openat, AT_FDCWD, path, flags, mode);
}

static int fake_kvm_ioctl(unsigned long req, void *arg)
{
	if (req == kvm.refuse) {
		errno = EINVAL;
		return -1;
	}
	switch (req) {
	case KVM_GET_API_VERSION:
		return KVM_API_VERSION;
	case KVM_GET_VCPU_MMAP_SIZE:
		return RUN_SIZE;
	case KVM_CREATE_VM:
		return fake_fd(0);
	case KVM_CREATE_VCPU:
		return fake_fd(RUN_SIZE);
	case KVM_CHECK_EXTENSION:
		return 0;
	case KVM_GET_TSC_KHZ:
		return 2000000;
	case KVM_GET_MSR_INDEX_LIST: {
		struct kvm_msr_list *l = arg;

		l->nmsrs = 1;
		l->indices[0] = MSR_TSC;
		return 0;
	}
	case KVM_GET_SUPPORTED_CPUID:
	case KVM_GET_CPUID2:
		((struct kvm_cpuid2 *)arg)->nent = 0;
		return 0;
	case KVM_GET_MSRS: {
		struct kvm_msrs *m = arg;

		for (uint32_t i = 0; i < m->nmsrs; i++)
			m->entries[i].data = m->entries[i].index == MSR_TSC ? (kvm.tsc += 1000) : 0;
		return (int)m->nmsrs;
	}
	case KVM_SET_MSRS:
		kvm.sets++;
		return (int)((struct kvm_msrs *)arg)->nmsrs;
	case KVM_SET_CLOCK:
		kvm.sets++;
		kvm.set_clock++;
		memcpy(&kvm.clock, arg, sizeof(kvm.clock));
		return 0;
	case KVM_RUN:
		errno = ENOSYS; /* nothing runs the guest here */
		return -1;
	default:
		if (_IOC_DIR(req) & _IOC_READ) {
			/* A KVM_GET_* of a fixed size: all zero (an irqchip keeps its id). */
			if (req == KVM_GET_IRQCHIP) {
				struct kvm_irqchip *c = arg;
				uint32_t id = c->chip_id;

				memset(c, 0, sizeof(*c));
				c->chip_id = id;
			} else {
				memset(arg, 0, _IOC_SIZE(req));
			}
			return 0;
		}
		kvm.sets++;
		return 0;
	}
}

int ioctl(int fd, unsigned long req, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, req);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (_IOC_TYPE(req) == KVMIO)
		return fake_kvm_ioctl(req, arg);
	return (int)syscall(SYS_ioctl, fd, req, arg);
}

/* ---- the VM ---- */

static char dir[64], path[160], kernel[160], key[160];
static struct config cfg;
static struct vm vm;

static void base_config(struct config *c)
{
	hltguest_config(c, kernel, key);
	assert_int_equal(config_set(c, "ctl.socket", "off"), 0);
}

static int setup(void **state)
{
	char err[1024] = "";

	strcpy(dir, "/tmp/khyve-rfk-XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/vm.snap", dir);
	snprintf(kernel, sizeof(kernel), "%s/kernel", dir);
	snprintf(key, sizeof(key), "%s/key", dir);
	assert_int_equal(hltguest_write(kernel), 0);
	memset(&vm, 0, sizeof(vm));
	base_config(&cfg);
	if (machine_check_config(&cfg, false, err, sizeof(err)) ||
	    machine_create(&vm, &cfg, false, err, sizeof(err)))
		fail_msg("building the VM: %s", err);
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];

	machine_destroy(&vm);
	config_free(&cfg);
	kvm.refuse = 0;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd);
}

static void fill(struct vm *v, uint64_t page, uint8_t val)
{
	memset(vm_gpa(v, page * 4096, 4096), val, 4096);
}

/* Restore @path with the command line @c (freed here): 0 with @out built, or the error. */
static int restore(struct vm *out, struct config *c, char *err, size_t errlen)
{
	int ret;

	memset(out, 0, sizeof(*out));
	err[0] = '\0';
	ret = snap_restore(out, c, path, false, err, errlen);
	if (ret)
		config_free(c);
	return ret;
}

static void restored_free(struct vm *v, struct config *c)
{
	machine_destroy(v);
	config_free(c);
}

static void cmdline(struct config *c)
{
	config_init(c);
	assert_int_equal(config_set(c, "snapshot.key", key), 0);
}

static void test_save_restore(void **state)
{
	struct snap_result res;
	struct config c;
	struct vm r;
	char err[2048];

	fill(&vm, 3, 0x5a);
	fill(&vm, 700, 0x77);
	if (snap_save(&vm, path, NULL, &res, err, sizeof(err)))
		fail_msg("save: %s", err);
	cmdline(&c);
	if (restore(&r, &c, err, sizeof(err)))
		fail_msg("restore: %s", err);
	/* Memory from the file; the clock set before any vCPU could run. */
	assert_int_equal(*(uint8_t *)vm_gpa(&r, 3 * 4096, 1), 0x5a);
	assert_int_equal(*(uint8_t *)vm_gpa(&r, 700 * 4096, 1), 0x77);
	assert_int_equal(*(uint8_t *)vm_gpa(&r, 4 * 4096, 1), 0);
	assert_true(kvm.set_clock >= 1);
	assert_non_null(r.backing);
	restored_free(&r, &c);
}

static uint64_t realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void save_ok(void)
{
	struct snap_result res;
	char err[2048];

	if (snap_save(&vm, path, NULL, &res, err, sizeof(err)))
		fail_msg("save: %s", err);
}

/*
 * snapshot.time=catchup: kvmclock moves on by at least the wall-clock time since the save.
 * A host whose TSC is behind the saved one is warned about, and the restore goes on.
 */
static void test_catchup_and_tsc_behind(void **state)
{
	struct config c;
	struct vm r;
	uint64_t saved_by, before;
	char err[2048];

	save_ok();
	saved_by = realtime_ns();
	cmdline(&c);
	assert_int_equal(config_set(&c, "snapshot.time", "catchup"), 0);
	kvm.set_clock = 0;
	before = realtime_ns();
	if (restore(&r, &c, err, sizeof(err)))
		fail_msg("restore: %s", err);
	assert_int_equal(kvm.set_clock, 1);
	/* The saved kvmclock was 0: it is now at least the wall-clock time away. */
	assert_true(kvm.clock.clock >= before - saved_by);
	restored_free(&r, &c);

	kvm.tsc = 1000; /* far behind what the file holds */
	cmdline(&c);
	if (restore(&r, &c, err, sizeof(err)))
		fail_msg("restore with the TSC behind: %s", err);
	restored_free(&r, &c);
}

/* KVM refusing a vCPU's or the VM's state: the restore is refused and nothing is left. */
static void test_kvm_refuses(void **state)
{
	static const unsigned long reqs[] = { KVM_SET_REGS, KVM_SET_SREGS, KVM_SET_IRQCHIP,
					      KVM_SET_PIT2, KVM_SET_USER_MEMORY_REGION };
	struct config c;
	struct vm r;
	char err[2048];

	save_ok();
	for (unsigned i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
		kvm.refuse = reqs[i];
		cmdline(&c);
		if (!restore(&r, &c, err, sizeof(err)))
			fail_msg("request %lx refused, the restore succeeded", reqs[i]);
		if (!err[0])
			fail_msg("request %lx refused: no message", reqs[i]);
	}
	kvm.refuse = 0;
}

/*
 * A device's state that does not load (cut short, its checksum made to match, as an attacker
 * would): refused by the device, named; the restore leaves no VM.
 */
static void test_device_state_refused(void **state)
{
	struct config c;
	struct craft cr;
	struct vm r;
	char err[2048], id[64] = "", want[128];

	save_ok();
	craft_load(&cr, path);
	for (unsigned i = 0; i < cr.nsec && !id[0]; i++)
		if (cr.sec[i].type == SNAP_SEC_DEV && cr.sec[i].length > 4) {
			uint8_t cut[2];

			snprintf(id, sizeof(id), "%s", cr.sec[i].id);
			memcpy(cut, cr.sec[i].data, sizeof(cut));
			craft_set(&cr, i, cut, sizeof(cut));
		}
	assert_true(id[0]);
	craft_relayout(&cr);
	craft_store(&cr, path);
	craft_free(&cr);
	cmdline(&c);
	assert_int_not_equal(restore(&r, &c, err, sizeof(err)), 0);
	snprintf(want, sizeof(want), "device %s: ", id);
	if (!strstr(err, want))
		fail_msg("'%s' does not say '%s'", err, want);
}

/* A chain: the restored memory is each page's newest copy, from whichever link holds it. */
static void test_restore_chain(void **state)
{
	struct snap_save_opts o = { .incremental = true };
	struct snap_result res;
	char tip[160], err[2048];
	struct config c;
	struct vm r;

	fill(&vm, 3, 0x5a);
	fill(&vm, 4, 0x5b);
	save_ok();
	fill(&vm, 4, 0x6b);
	fill(&vm, 9, 0x69);
	snprintf(tip, sizeof(tip), "%s/tip.snap", dir);
	if (snap_save(&vm, tip, &o, &res, err, sizeof(err)))
		fail_msg("incremental: %s", err);
	assert_true(res.incremental);
	snprintf(path, sizeof(path), "%s", tip);
	cmdline(&c);
	assert_int_equal(config_set(&c, "snapshot.prefetch", "read"), 0);
	if (restore(&r, &c, err, sizeof(err)))
		fail_msg("restore of the chain: %s", err);
	assert_int_equal(*(uint8_t *)vm_gpa(&r, 3 * 4096, 1), 0x5a);
	assert_int_equal(*(uint8_t *)vm_gpa(&r, 4 * 4096, 1), 0x6b);
	assert_int_equal(*(uint8_t *)vm_gpa(&r, 9 * 4096, 1), 0x69);
	/* The restored tip is the parent of the next incremental checkpoint. */
	fill(&r, 10, 0x10);
	snprintf(tip, sizeof(tip), "%s/next.snap", dir);
	assert_int_equal(snap_save(&r, tip, &o, &res, err, sizeof(err)), 0);
	assert_string_equal(res.parent, "tip.snap");
	restored_free(&r, &c);
}

/*
 * A VM with a disk: a restore checks it is the disk as it was at the checkpoint, refusing one
 * written since unless snapshot.disk_changed=accept says to go on.
 */
static void test_disk_changed(void **state)
{
	struct config c;
	struct vm r;
	char img[200], err[2048];
	int fd;

	machine_destroy(&vm);
	config_free(&cfg);
	snprintf(img, sizeof(img), "%s/disk.img", dir);
	fd = open(img, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 1 << 20), 0);
	close(fd);
	base_config(&cfg);
	assert_int_equal(config_set(&cfg, "pci.0.3.0.device", "virtio-blk"), 0);
	assert_int_equal(config_set(&cfg, "pci.0.3.0.path", img), 0);
	memset(&vm, 0, sizeof(vm));
	if (machine_check_config(&cfg, false, err, sizeof(err)) ||
	    machine_create(&vm, &cfg, false, err, sizeof(err)))
		fail_msg("building the VM with a disk: %s", err);
	save_ok();
	cmdline(&c);
	if (restore(&r, &c, err, sizeof(err)))
		fail_msg("restore with the disk as it was: %s", err);
	restored_free(&r, &c);

	fd = open(img, O_WRONLY);
	assert_int_equal(pwrite(fd, "x", 1, 512), 1);
	close(fd);
	cmdline(&c);
	assert_int_equal(restore(&r, &c, err, sizeof(err)), -ESTALE);
	assert_non_null(strstr(err, "disk pci@0.3.0 ("));
	assert_non_null(strstr(err, "changed since the snapshot was taken"));
	cmdline(&c);
	assert_int_equal(config_set(&c, "snapshot.disk_changed", "accept"), 0);
	if (restore(&r, &c, err, sizeof(err)))
		fail_msg("restore accepting the changed disk: %s", err);
	restored_free(&r, &c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_save_restore, setup, teardown),
		cmocka_unit_test_setup_teardown(test_catchup_and_tsc_behind, setup, teardown),
		cmocka_unit_test_setup_teardown(test_kvm_refuses, setup, teardown),
		cmocka_unit_test_setup_teardown(test_device_state_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restore_chain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_disk_changed, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
