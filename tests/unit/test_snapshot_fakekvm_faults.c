// SPDX-License-Identifier: BSD-2-Clause
/*
 * The save side of the snapshot orchestrator (snap/snapshot.c) against a KVM this test plays
 * itself (fi_ioctl_fake, tests/faultinj.h), so that it runs on any host, /dev/kvm or not: a VM
 * with guest RAM, a device, a disk and one vCPU (its thread not started), whose state (the
 * vCPU's registers and TSC, irqchips, PIT, clock) the fake hands out.
 *  - a checkpoint writes a file that verifies: the device's section, the VM state, the disks,
 *    the metadata with host paths made absolute, the pages written; the VM runs on;
 *  - a second one replaces it (and, with snapshot.disks=clone, drops the disk copy of the
 *    first); an incremental one holds only the pages written since, names its parent, and is
 *    refused where it could not be one; a suspending one ends the VM;
 *  - a stream (migration) sends the same state to its sink;
 *  - each failure (KVM's state, a device's save, a write, an allocation) fails the save with
 *    a message, leaves the previous file as it was, and the VM running.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cmocka.h>

#include "arch/x86/cpustate.h"
#include "config.h"
#include "dev/dev.h"
#include "evloop.h"
#include "faultinj.h"
#include "snap/chain.h"
#include "snap/disks.h"
#include "snap/format.h"
#include "snap/livecopy.h"
#include "snap/memory.h"
#include "snap/meta.h"
#include "snap/snapshot.h"
#include "sstream.h"
#include "vcpu.h"
#include "vm.h"

#include "fakekvm.h"
#include "statesnap.h"
#include "testfiles.h"

/* Descriptors nothing else in the process has: the fake answers for them. */
#define KVM_FD 1001
#define VM_FD 1002
#define VCPU_FD 1003
#define MSR_TSC 0x10
#define TSC_KHZ 2000000
#define RAM (16ULL << 20)
#define PG 4096ULL

static char dir[64], path[160], key[160];

/* ---- the fake KVM: VM-wide state only ---- */

static unsigned kvm_calls;

static uint64_t fake_tsc = 1000000000;

/* /dev/kvm: one MSR (IA32_TSC), no XSAVE2. */
static int fake_kvm(unsigned long req, void *arg)
{
	struct kvm_msr_list *l = arg;

	switch (req) {
	case KVM_GET_MSR_INDEX_LIST:
		l->nmsrs = 1;
		l->indices[0] = MSR_TSC;
		return 0;
	case KVM_CHECK_EXTENSION:
		return 0;
	default:
		errno = ENOTTY;
		return -1;
	}
}

/* The vCPU: every register set zero, its TSC running 1000 ticks per read. */
static int fake_vcpu(unsigned long req, void *arg)
{
	switch (req) {
	case KVM_GET_MP_STATE:
	case KVM_GET_REGS:
	case KVM_GET_SREGS:
	case KVM_GET_XCRS:
	case KVM_GET_LAPIC:
	case KVM_GET_VCPU_EVENTS:
	case KVM_GET_DEBUGREGS:
	case KVM_GET_XSAVE:
		memset(arg, 0, _IOC_SIZE(req));
		return 0;
	case KVM_GET_MSRS: {
		struct kvm_msrs *m = arg;

		for (uint32_t i = 0; i < m->nmsrs; i++)
			m->entries[i].data = m->entries[i].index == MSR_TSC ? (fake_tsc += 1000)
									    : 0;
		return (int)m->nmsrs;
	}
	case KVM_GET_CPUID2:
		((struct kvm_cpuid2 *)arg)->nent = 0;
		return 0;
	case KVM_GET_TSC_KHZ:
		return TSC_KHZ;
	default:
		errno = ENOTTY;
		return -1;
	}
}

static int fake_ioctl(int fd, unsigned long req, void *arg)
{
	if (fd == KVM_FD)
		return fake_kvm(req, arg);
	if (fd == VCPU_FD)
		return fake_vcpu(req, arg);
	if (fd != VM_FD)
		return (int)syscall(SYS_ioctl, fd, req, arg);
	kvm_calls++;
	return fakekvm_vm_get(req, arg, 123456789);
}

/* ---- a device ---- */

struct fakedev {
	struct dev d;
	int save_ret, pause_ret;
	unsigned paused, resumed, saves;
};

static int fd_pause(struct dev *d)
{
	struct fakedev *f = container_of(d, struct fakedev, d);

	if (f->pause_ret)
		return f->pause_ret;
	f->paused++;
	return 0;
}

static int fd_resume(struct dev *d)
{
	container_of(d, struct fakedev, d)->resumed++;
	return 0;
}

static int fd_save(struct dev *d, struct sstream *s)
{
	struct fakedev *f = container_of(d, struct fakedev, d);
	uint32_t v = 0xfeed0000 + f->saves++;

	ss_u32(s, &v);
	if (f->save_ret == -EPROTO)
		ss_fail(s, -EPROTO, "queue 3 is in a state no save can hold");
	return f->save_ret == -EPROTO ? 0 : f->save_ret;
}

static const struct dev_ops fake_ops = {
	.name = "fake",
	.version = 2,
	.pause = fd_pause,
	.resume = fd_resume,
	.save = fd_save,
};

/* ---- the VM ---- */

static struct vm vm;
static struct vcpu vcpu0;
static struct vcpu *vcpus[1] = { &vcpu0 };
static struct config cfg;
static struct fakedev dev;
static struct vm_disk disk;

static const char *at(const char *name)
{
	return testfile_at(dir, name);
}

static void fill(uint64_t page, unsigned n, uint8_t v)
{
	memset(vm_gpa(&vm, page * PG, n * PG), v, n * PG);
}

static bool live_loop; /* the VM's event loop runs on its thread (live checkpoints) */

static int setup(void **state)
{
	char cwd[4096];
	int fd;

	fi_reset();
	strcpy(dir, "/tmp/khyve-snapk-XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/vm.snap", dir);
	snprintf(key, sizeof(key), "%s/key", dir);
	vm_init_bare(&vm, !live_loop);
	vm.kvm_fd = KVM_FD;
	vm.vm_fd = VM_FD;
	/* One vCPU, its thread not started: work for it runs on the caller's. */
	memset(&vcpu0, 0, sizeof(vcpu0));
	vcpu0.vm = &vm;
	vcpu0.fd = VCPU_FD;
	vcpu0.run = calloc(1, sizeof(*vcpu0.run));
	pthread_mutex_init(&vcpu0.lock, NULL);
	pthread_cond_init(&vcpu0.cond, NULL);
	vm.vcpus = vcpus;
	vm.ncpus = 1;
	vm.name = "fk";
	config_init(&cfg);
	config_set(&cfg, "cpus", "1");
	config_set(&cfg, "memory.size", "16M");
	config_set(&cfg, "snapshot.key", key);
	config_set(&cfg, "ctl.socket", "off");
	config_set(&cfg, "lpc.com1.path", "file:com1.log"); /* relative: made absolute */
	config_set(&cfg, "lpc.com2.path", "stdio");
	config_set(&cfg, "boot.kernel", "kernel.bin");
	config_set(&cfg, "boot.initrd", "./initrd.img");
	config_set(&cfg, "lpc.com3.path", "unix:console.sock");
	config_set(&cfg, "lpc.com4.path", "file:");
	config_set(&cfg, "pci.0.3.0.device", "virtio-blk");
	vm.cfg = &cfg;
	assert_int_equal(vm_add_memory(&vm, RAM), 0);
	vm.ram_size = RAM;
	dev = (struct fakedev){ .d = { .ops = &fake_ops, .id = "fake@pci.0.5.0" } };
	vm.devs = &dev.d;
	memset(&disk, 0, sizeof(disk));
	snprintf(disk.path, sizeof(disk.path), "%s/disk.img", dir);
	fd = open(disk.path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "disk", 4), 4);
	disk.fd = fd;
	snprintf(disk.id, sizeof(disk.id), "pci.0.3.0");
	snprintf(disk.cfg_key, sizeof(disk.cfg_key), "pci.0.3.0.path");
	config_set(&cfg, "pci.0.3.0.path", disk.path);
	vm.disks = &disk;
	fill(3, 2, 0x5a);
	fill(700, 1, 0x77);
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(chdir(dir), 0);
	fi_ioctl_fake(fake_ioctl);
	if (live_loop)
		assert_int_equal(evloop_start(&vm.ev), 0);
	return 0;
}

static int setup_live(void **state)
{
	live_loop = true;
	return setup(state);
}

static int teardown(void **state)
{
	char cmd[128];

	fi_reset();
	fi_ioctl_fake(NULL);
	assert_int_equal(chdir("/"), 0);
	vm.devs = NULL;
	vm.disks = NULL;
	vm.cfg = NULL;
	vm.kvm_fd = vm.vm_fd = -1;
	vm.vcpus = NULL;
	vm.ncpus = 0;
	vm_destroy(&vm);
	free(vcpu0.run);
	live_loop = false;
	close(disk.fd);
	config_free(&cfg);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd);
}

/* Entries in the directory other than the key, the disk and the files named in @keep. */
static unsigned others(const char *keep)
{
	return testfile_count(dir, (const char *const[]){ "key", "disk.img", NULL }, keep);
}

static void put_old(void)
{
	testfile_put_old(path);
}

static bool old_untouched(void)
{
	return testfile_is_old(path) && others("vm.snap base.snap") == 0;
}

static int save_to(const char *p, const struct snap_save_opts *o, struct snap_result *res,
		   char *err, size_t errlen)
{
	err[0] = '\0';
	return snap_save(&vm, p, o, res, err, errlen);
}

/* A save to @p with @o refused: @want, with a message that says @needle. */
static void save_refused(const char *p, const struct snap_save_opts *o, int want,
			 const char *needle)
{
	struct snap_result res;
	char err[1024];

	assert_int_equal(save_to(p, o, &res, err, sizeof(err)), want);
	assert_non_null(strstr(err, needle));
}

static void open_ok(const char *p, struct snap_file *f)
{
	char err[512];

	if (snap_file_open(f, p, true, err, sizeof(err)))
		fail_msg("%s", err);
}

/* ---- tests ---- */

static void test_checkpoint(void **state)
{
	const struct snap_section *sec;
	struct snap_disks sd;
	struct snap_result res;
	struct snap_file f;
	struct config saved;
	char err[1024];
	uint64_t tsc0 = fake_tsc;
	void *buf;

	if (save_to(path, NULL, &res, err, sizeof(err)))
		fail_msg("save: %s", err);
	assert_true(res.bytes > 3 * PG);
	assert_false(res.incremental);
	assert_false(vm.paused);
	assert_int_equal(dev.paused, 1);
	assert_int_equal(dev.resumed, 1);
	assert_true(kvm_calls >= 5);
	assert_int_equal(others("vm.snap"), 0);

	open_ok(path, &f);
	assert_false(f.has_parent);
	assert_int_equal(f.nextents, 2);
	assert_int_equal(f.mem_size, RAM);
	/* The vCPU's TSC as of the instant the clocks were read, not of its own save. */
	sec = snap_file_find(&f, SNAP_SEC_VCPU, "cpu0");
	assert_non_null(sec);
	{
		struct cpustate cs = { 0 };
		struct sstream st;
		uint64_t tsc;

		assert_int_equal(snap_file_read(&f, sec, &buf), 0);
		ss_init_load(&st, buf, sec->length);
		cpustate_load(&st, &cs, sec->version);
		assert_int_equal(ss_finish(&st), 0);
		assert_int_equal(cpustate_tsc(&cs, &tsc), 0);
		/* At most the clocks' read (the first), though the save read it again later. */
		assert_true(tsc <= tsc0 + 1000);
		assert_true(fake_tsc > tsc0 + 1000);
		cpustate_free(&cs);
		free(buf);
	}
	assert_non_null(snap_file_find(&f, SNAP_SEC_VM, "vm"));
	sec = snap_file_find(&f, SNAP_SEC_DEV, "fake@pci.0.5.0");
	assert_non_null(sec);
	assert_int_equal(sec->version, 2);
	assert_int_equal(snap_file_read(&f, sec, &buf), 0);
	assert_int_equal(*(uint32_t *)buf, 0xfeed0000);
	free(buf);
	assert_int_equal(snap_disks_read(&f, &sd, err, sizeof(err)), 0);
	assert_int_equal(sd.n, 1);
	assert_string_equal(sd.rec[0].path, disk.path);
	assert_false(sd.rec[0].copy);
	snap_disks_free(&sd);
	/* Host paths of the saved configuration are absolute; others stay as they were. */
	config_init(&saved);
	assert_int_equal(snap_meta_config(f.meta_json, &saved, err, sizeof(err)), 0);
	testfile_check_path(&saved, "lpc.com1.path", "file:", dir, "com1.log");
	assert_string_equal(config_get(&saved, "lpc.com2.path"), "stdio");
	testfile_check_path(&saved, "boot.kernel", "", dir, "kernel.bin");
	testfile_check_path(&saved, "boot.initrd", "", dir, "initrd.img");
	testfile_check_path(&saved, "lpc.com3.path", "unix:", dir, "console.sock");
	assert_string_equal(config_get(&saved, "lpc.com4.path"), "file:");
	assert_string_equal(config_get(&saved, "ctl.socket"), "off");
	config_free(&saved);
	/* The VM's own configuration is left as it was. */
	assert_string_equal(config_get(&cfg, "boot.kernel"), "kernel.bin");
	snap_file_close(&f);
	/* Authenticated with this host's key. */
	{
		struct snap_keyref ref;

		assert_int_equal(snap_key_locate(&cfg, &ref, err, sizeof(err)), 0);
		open_ok(path, &f);
		assert_int_equal(snap_authenticate(&f, &ref, err, sizeof(err)), SNAP_AUTH_VALID);
		snap_file_close(&f);
	}
}

/*
 * A checkpoint over the last one replaces it; with snapshot.disks=clone each keeps a copy of
 * the disk, and the one replaced takes its copy with it.
 */
static void test_replace_and_clone(void **state)
{
	struct snap_result res;
	struct snap_disks sd;
	struct snap_file f;
	char err[1024], first[4096];

	config_set(&cfg, "snapshot.disks", "clone");
	config_set(&cfg, "snapshot.direct", "off");
	assert_int_equal(save_to(path, NULL, &res, err, sizeof(err)), 0);
	open_ok(path, &f);
	assert_int_equal(snap_disks_read(&f, &sd, err, sizeof(err)), 0);
	assert_true(sd.rec[0].copy);
	snprintf(first, sizeof(first), "%s", sd.rec[0].path);
	snap_disks_free(&sd);
	snap_file_close(&f);
	assert_int_equal(access(first, F_OK), 0);
	assert_int_equal(others("vm.snap"), 1); /* the copy */

	fill(5, 1, 0x11);
	assert_int_equal(save_to(path, NULL, &res, err, sizeof(err)), 0);
	assert_int_equal(access(first, F_OK), -1);
	assert_int_equal(others("vm.snap"), 1); /* the new copy only */
	open_ok(path, &f);
	assert_int_equal(f.nextents, 2); /* 3-5, 700 */
	assert_int_equal(f.extents[0].length, 3 * PG);
	snap_file_close(&f);
}

/* An incremental checkpoint holds the pages written since its parent, and names it. */
static void test_incremental(void **state)
{
	struct snap_save_opts o = { .incremental = true };
	struct snap_result res;
	struct snap_chain c;
	struct snap_file f;
	char err[1024];

	/* No parent yet. */
	save_refused(at("i1.snap"), &o, -EINVAL, "take a full checkpoint first");
	assert_int_equal(save_to(path, NULL, &res, err, sizeof(err)), 0);
	fill(9, 1, 0x99);
	fill(700, 1, 0x78);
	if (save_to(at("i1.snap"), &o, &res, err, sizeof(err)))
		fail_msg("incremental: %s", err);
	assert_true(res.incremental);
	assert_string_equal(res.parent, "vm.snap");
	open_ok(at("i1.snap"), &f);
	assert_true(f.has_parent);
	assert_string_equal(f.parent.name, "vm.snap");
	assert_int_equal(f.parent.depth, 1);
	/* Pages 9 and 700: a page written with 0x78 where 0x77 was counts, a page not is not. */
	assert_int_equal(f.nextents, 2);
	assert_int_equal(f.extents[0].file_offset, f.mem_offset + 9 * PG);
	assert_int_equal(f.extents[1].file_offset, f.mem_offset + 700 * PG);
	assert_int_equal(snap_chain_open(&c, &f, at("i1.snap"), true, err, sizeof(err)), 0);
	assert_int_equal(c.nlinks, 2);
	snap_chain_close(&c);
	snap_file_close(&f);

	/* The next builds on i1, naming it by --parent. */
	o.parent = at("i1.snap");
	fill(10, 1, 0xaa);
	if (save_to(at("i2.snap"), &o, &res, err, sizeof(err)))
		fail_msg("incremental on i1: %s", err);
	open_ok(at("i2.snap"), &f);
	assert_int_equal(f.parent.depth, 2);
	assert_string_equal(f.parent.name, "i1.snap");
	snap_file_close(&f);

	/* Not the last checkpoint; another directory; the parent itself. */
	o.parent = path;
	save_refused(at("i3.snap"), &o, -EINVAL, "is not this VM's last checkpoint");
	o.parent = NULL;
	save_refused("/tmp/khyve-snapk-elsewhere.snap", &o, -EINVAL,
		     "goes in the directory of its parent");
	save_refused(at("i2.snap"), &o, -EINVAL, "is its own parent");
	/* The parent replaced since by another file: it is not the pages' parent any more. */
	write_snap_at(at("i2.snap"), &(struct spec){ 0 });
	save_refused(at("i3.snap"), &o, -ESTALE, "has changed since it was taken");
	/* Or gone. */
	assert_int_equal(unlink(at("i2.snap")), 0);
	save_refused(at("i3.snap"), &o, -ENOENT, "checkpoint: the parent");
	assert_int_equal(access(at("i3.snap"), F_OK), -1);
	/* A full checkpoint is a parent again. */
	assert_int_equal(save_to(at("full.snap"), NULL, &res, err, sizeof(err)), 0);
	assert_int_equal(save_to(at("i3.snap"), &o, &res, err, sizeof(err)), 0);
	assert_true(res.incremental);
	assert_string_equal(res.parent, "full.snap");
}

/* A suspending checkpoint ends the VM; it is no parent (the VM does not run on from it). */
static void test_suspend(void **state)
{
	struct snap_save_opts o = { .suspend = true };
	struct snap_result res;
	char err[1024];

	assert_int_equal(save_to(path, &o, &res, err, sizeof(err)), 0);
	assert_int_equal(vm_wait_exit(&vm), VM_EXIT_SUSPENDED);
	assert_int_equal(dev.resumed, 0);
	o = (struct snap_save_opts){ .incremental = true };
	save_refused(at("i.snap"), &o, -EINVAL, "needs a parent");
}

struct sink {
	unsigned sections, mem_writes;
	uint64_t mem_bytes;
	int fail_section; /* fail the section of this type (0: none) */
};

static int sink_fn(void *opaque, const struct snap_section *sec, uint64_t offset, const void *buf,
		   uint64_t len)
{
	struct sink *s = opaque;

	if (!sec) {
		s->mem_writes++;
		s->mem_bytes += len;
		return 0;
	}
	if (s->fail_section && sec->type == (uint32_t)s->fail_section)
		return -EPIPE;
	s->sections++;
	return 0;
}

static int stream_mem(void *opaque, struct snap_result *res, char *err, size_t errlen)
{
	int *ret = opaque;

	if (*ret)
		snprintf(err, errlen, "the other side went away");
	return *ret;
}

/* A stream sends the state (and memory, unless the caller sends it); the VM stays paused. */
static void test_stream(void **state)
{
	struct snap_result res = { 0 };
	struct snap_writer w;
	struct sink s = { 0 };
	char err[512] = "";
	int mem_ret = 0;

	snap_writer_open_sink(&w, RAM, sink_fn, &s);
	assert_int_equal(snap_save_stream(&vm, &w, NULL, NULL, NULL, &res, err, sizeof(err)), 0);
	assert_true(vm.paused);
	assert_int_equal(s.mem_bytes, 3 * PG);
	assert_int_equal(s.sections, 6); /* dev, cpu0, vm, disks, meta, memmap */
	assert_int_equal(snap_resume_vm(&vm, err, sizeof(err)), 0);
	snap_writer_abort(&w);

	/* The caller's memory: only the map of the regions follows it. */
	memset(&s, 0, sizeof(s));
	snap_writer_open_sink(&w, RAM, sink_fn, &s);
	assert_int_equal(snap_save_stream(&vm, &w, stream_mem, &mem_ret, NULL, &res, err,
					  sizeof(err)),
			 0);
	assert_int_equal(s.mem_writes, 0);
	assert_int_equal(s.sections, 6);
	assert_int_equal(snap_resume_vm(&vm, err, sizeof(err)), 0);
	snap_writer_abort(&w);

	/* It fails: the VM runs again. */
	mem_ret = -ECONNRESET;
	snap_writer_open_sink(&w, RAM, sink_fn, &s);
	assert_int_equal(snap_save_stream(&vm, &w, stream_mem, &mem_ret, NULL, &res, err,
					  sizeof(err)),
			 -ECONNRESET);
	assert_string_equal(err, "the other side went away");
	assert_false(vm.paused);
	snap_writer_abort(&w);
	/* A section the sink cannot take. */
	memset(&s, 0, sizeof(s));
	s.fail_section = SNAP_SEC_META;
	snap_writer_open_sink(&w, RAM, sink_fn, &s);
	assert_int_equal(snap_save_stream(&vm, &w, NULL, NULL, NULL, &res, err, sizeof(err)),
			 -EPIPE);
	assert_non_null(strstr(err, "saving metadata"));
	assert_false(vm.paused);
	snap_writer_abort(&w);
}

/* What fails and how: each refuses the save, the old file stays, the VM runs on. */
static void expect_save_fails(int want, const char *needle)
{
	struct snap_result res;
	char err[1024];
	int ret = save_to(path, NULL, &res, err, sizeof(err));

	fi_reset();
	fi_ioctl_fake(fake_ioctl);
	if (ret != want)
		fail_msg("save: %d (%s), want %d", ret, err, want);
	if (needle && !strstr(err, needle))
		fail_msg("\"%s\" does not say \"%s\"", err, needle);
	if (!old_untouched())
		fail_msg("the failed save (%s) changed the file at the path", err);
	assert_false(vm.paused);
	assert_int_equal(dev.paused, dev.resumed);
}

static void test_failures(void **state)
{
	static const unsigned long reqs[] = { KVM_GET_IRQCHIP, KVM_GET_PIT2, KVM_GET_CLOCK };

	put_old();
	for (unsigned i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
		fi_ioctl_fail(reqs[i], 1, EIO);
		expect_save_fails(-EIO, strerror(EIO));
	}
	fi_ioctl_fail(KVM_GET_IRQCHIP, 2, EINVAL);
	expect_save_fails(-EINVAL, "reading VM state from KVM");
	/* The vCPU: its TSC at the instant, then its registers. */
	fi_ioctl_fail(KVM_GET_MSRS, 1, EIO);
	expect_save_fails(-EIO, "reading the TSC of vCPU 0");
	fi_ioctl_fail(KVM_GET_SREGS, 1, EFAULT);
	expect_save_fails(-EFAULT, "saving vCPU 0: Bad address");
	dev.save_ret = -ENODEV;
	expect_save_fails(-ENODEV, "saving device fake@pci.0.5.0: No such device");
	dev.save_ret = -EPROTO;
	expect_save_fails(-EPROTO, "saving device fake@pci.0.5.0: queue 3 is in a state");
	dev.save_ret = 0;
	/* The device cannot pause: the clocks read for the instant are let go (running again). */
	dev.pause_ret = -EBUSY;
	expect_save_fails(-EBUSY, "pausing device fake@pci.0.5.0");
	dev.pause_ret = 0;
	{
		uint64_t t = vclock_ns(&vm.ev);

		evloop_advance(&vm.ev, 7000000000ULL);
		assert_true(vclock_ns(&vm.ev) > t);
	}
	/* The disk cannot be synced; the host paths cannot be made absolute. */
	fi_fail(FI_FSYNC, 1, EIO);
	expect_save_fails(-EIO, "disk pci.0.3.0");
	{
		char longp[4200];

		memset(longp, 'k', sizeof(longp) - 1);
		longp[sizeof(longp) - 1] = '\0';
		memcpy(longp, "file:", 5);
		config_set(&cfg, "lpc.com3.path", longp);
		expect_save_fails(-ENAMETOOLONG, "making host paths absolute");
		config_unset(&cfg, "lpc.com3.path");
	}
}

/* Every write of a checkpoint failing in turn (the disk full). */
static void test_write_sweep(void **state)
{
	struct snap_result res;
	char err[1024];
	unsigned writes;

	assert_int_equal(save_to(path, NULL, &res, err, sizeof(err)), 0);
	put_old();
	fi_reset();
	fi_ioctl_fake(fake_ioctl);
	assert_int_equal(save_to(path, NULL, &res, err, sizeof(err)), 0);
	writes = fi_calls(FI_PWRITE);
	assert_true(writes >= 5);
	put_old();
	for (unsigned n = 1; n <= writes; n++) {
		fi_fail(FI_PWRITE, n, ENOSPC);
		expect_save_fails(-ENOSPC, strerror(ENOSPC));
	}
	fi_fail(FI_RENAME, 1, EROFS);
	expect_save_fails(-EROFS, "renaming");
}

/* Every allocation of a checkpoint failing in turn: it fails with a message, or succeeds. */
static void test_alloc_sweep(void **state)
{
	static const enum fi_call kinds[] = { FI_MALLOC, FI_CALLOC, FI_REALLOC, FI_STRDUP };
	struct snap_result res;
	char err[1024];

	for (unsigned k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
		unsigned total;

		fi_reset();
		fi_ioctl_fake(fake_ioctl);
		assert_int_equal(save_to(path, NULL, &res, err, sizeof(err)), 0);
		total = fi_calls(kinds[k]);
		for (unsigned n = 1; n <= total; n++) {
			int ret;

			put_old();
			fi_reset();
			fi_ioctl_fake(fake_ioctl);
			fi_fail(kinds[k], n, ENOMEM);
			ret = save_to(path, NULL, &res, err, sizeof(err));
			fi_reset();
			fi_ioctl_fake(fake_ioctl);
			if (ret && (!err[0] || !old_untouched()))
				fail_msg("allocation %u/%u failing: %d '%s', no message or file "
					 "changed",
					 k, n, ret, err);
			if (!ret) {
				struct snap_file f;

				open_ok(path, &f);
				snap_file_close(&f);
			}
			assert_false(vm.paused);
		}
	}
}

/* A VM paused by a request is checkpointed as it is, and stays paused. */
static void test_paused_checkpoint(void **state)
{
	struct snap_result res;
	struct snap_file f;
	char err[1024];

	assert_int_equal(snap_pause_vm(&vm, err, sizeof(err)), 0);
	assert_int_equal(save_to(path, NULL, &res, err, sizeof(err)), 0);
	assert_true(vm.paused);
	assert_int_equal(dev.paused, 1);
	assert_int_equal(dev.resumed, 0);
	open_ok(path, &f);
	snap_file_close(&f);
	assert_int_equal(snap_resume_vm(&vm, err, sizeof(err)), 0);
}

/*
 * The file a clone checkpoint replaces names disk copies to delete only if this host's khyve
 * wrote it: one with no MAC, or one with no disks section, deletes nothing.
 */
static void test_replace_unauthenticated(void **state)
{
	struct snap_result res;
	char err[1024];
	int fd;

	config_set(&cfg, "snapshot.disks", "clone");
	fd = open(at("vm.snap.pci.0.3.0.0123456789ab.img"), O_WRONLY | O_CREAT, 0600);
	assert_true(fd >= 0);
	close(fd);
	write_snap_at(path, &(struct spec){ 0 });
	assert_int_equal(save_to(path, NULL, &res, err, sizeof(err)), 0);
	write_snap_at(path, &(struct spec){ .key = key });
	assert_int_equal(save_to(path, NULL, &res, err, sizeof(err)), 0);
	assert_int_equal(access(at("vm.snap.pci.0.3.0.0123456789ab.img"), F_OK), 0);
}

/*
 * More refusals of an incremental checkpoint: a --parent that does not exist, a directory
 * that does not; and one that fails after taking the written pages gives them back, so the
 * next one still holds them.
 */
static void test_incremental_more(void **state)
{
	struct snap_save_opts o = { .incremental = true };
	struct snap_result res;
	struct snap_file f;
	char err[1024];

	assert_int_equal(save_to(path, NULL, &res, err, sizeof(err)), 0);
	o.parent = at("no-such.snap");
	save_refused(at("i1.snap"), &o, -EINVAL, "is not this VM's last checkpoint");
	o.parent = NULL;
	save_refused("/khyve-test-no-such-dir/i1.snap", &o, -EINVAL,
		     "goes in the directory of its parent");

	fill(30, 1, 0x30);
	fi_fail(FI_RENAME, 1, EROFS);
	assert_int_equal(save_to(at("i1.snap"), &o, &res, err, sizeof(err)), -EROFS);
	fi_reset();
	fi_ioctl_fake(fake_ioctl);
	fill(31, 1, 0x31);
	assert_int_equal(save_to(at("i1.snap"), &o, &res, err, sizeof(err)), 0);
	open_ok(at("i1.snap"), &f);
	assert_int_equal(f.nextents, 1);
	assert_int_equal(f.extents[0].file_offset, f.mem_offset + 30 * PG);
	assert_int_equal(f.extents[0].length, 2 * PG);
	snap_file_close(&f);
	/* Its chain section cannot be written: refused, and the pages are given back again. */
	fill(32, 1, 0x32);
	{
		unsigned writes;

		fi_reset();
		fi_ioctl_fake(fake_ioctl);
		assert_int_equal(save_to(at("i2.snap"), &o, &res, err, sizeof(err)), 0);
		writes = fi_calls(FI_PWRITE);
		fill(33, 1, 0x33);
		for (unsigned n = 1; n <= writes; n++) {
			fi_fail(FI_PWRITE, n, EIO);
			assert_int_equal(save_to(at("i3.snap"), &o, &res, err, sizeof(err)), -EIO);
			fi_reset();
			fi_ioctl_fake(fake_ioctl);
		}
	}
	assert_int_equal(save_to(at("i3.snap"), &o, &res, err, sizeof(err)), 0);
	assert_string_equal(res.parent, "i2.snap");
	open_ok(at("i3.snap"), &f);
	assert_int_equal(f.nextents, 1);
	assert_int_equal(f.extents[0].file_offset, f.mem_offset + 33 * PG);
	snap_file_close(&f);
}

/*
 * A chain has at most SNAP_CHAIN_MAX links: an incremental checkpoint that would make it
 * longer is written as a full one, and says so; the next builds on that one.
 */
static void test_chain_limit(void **state)
{
	struct snap_save_opts o = { .incremental = true };
	struct snap_result res;
	struct snap_file f;
	char err[1024], name[32];

	assert_int_equal(save_to(path, NULL, &res, err, sizeof(err)), 0);
	for (unsigned i = 1; i < SNAP_CHAIN_MAX; i++) {
		snprintf(name, sizeof(name), "i%u.snap", i);
		fill(40 + i % 8, 1, (uint8_t)i);
		if (save_to(at(name), &o, &res, err, sizeof(err)) || !res.incremental)
			fail_msg("link %u: %s", i, err);
	}
	open_ok(at("i255.snap"), &f);
	assert_int_equal(f.parent.depth, SNAP_CHAIN_MAX - 1);
	snap_file_close(&f);
	fill(50, 1, 0x50);
	assert_int_equal(save_to(at("full.snap"), &o, &res, err, sizeof(err)), 0);
	assert_false(res.incremental);
	assert_non_null(strstr(res.note, "the chain has 256 links, the most there may be"));
	open_ok(at("full.snap"), &f);
	assert_false(f.has_parent);
	snap_file_close(&f);
	fill(51, 1, 0x51);
	assert_int_equal(save_to(at("next.snap"), &o, &res, err, sizeof(err)), 0);
	assert_true(res.incremental);
	assert_string_equal(res.parent, "full.snap");
}

/* ---- live checkpoints: started and ended on the VM's event loop thread ---- */

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
	int ret;
	char err[512];
	struct snap_result res;
} lw = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

static void live_done(void *opaque, int ret, const struct snap_result *res, const char *err)
{
	pthread_mutex_lock(&lw.lock);
	lw.done = true;
	lw.ret = ret;
	lw.res = *res;
	snprintf(lw.err, sizeof(lw.err), "%s", err ? err : "");
	pthread_cond_broadcast(&lw.cond);
	pthread_mutex_unlock(&lw.lock);
}

/* Wait for the live checkpoint started to report its end (live_done). */
static void live_wait(void)
{
	pthread_mutex_lock(&lw.lock);
	while (!lw.done)
		pthread_cond_wait(&lw.cond, &lw.lock);
	pthread_mutex_unlock(&lw.lock);
}

struct live_start {
	const char *path;
	int ret;
	char err[512];
};

static void start_live(void *opaque)
{
	struct live_start *ls = opaque;

	ls->ret = snap_save_live(&vm, ls->path, NULL, live_done, NULL, ls->err, sizeof(ls->err));
}

/* A live checkpoint to @p: its start's result, then (started) the one reported at its end. */
static int live_to(const char *p, char *err, size_t errlen)
{
	struct live_start ls = { .path = p };

	lw.done = false;
	evloop_call(&vm.ev, start_live, &ls);
	if (ls.ret) {
		snprintf(err, errlen, "%s", ls.err);
		return ls.ret;
	}
	live_wait();
	snprintf(err, errlen, "%s", lw.err);
	return lw.ret;
}

/*
 * A live checkpoint to the path (over a previous file) written by @method, nothing of it left
 * running, the VM running and its device paused and resumed once; @f: the file, opened, of
 * two extents.  @what names it if it fails.
 */
static void live_written(const char *what, const char *method, struct snap_file *f)
{
	char err[1024];

	put_old();
	if (live_to(path, err, sizeof(err)))
		fail_msg("%s: %s", what, err);
	assert_string_equal(lw.res.method, method);
	assert_null(vm.live);
	assert_false(vm.paused);
	assert_int_equal(dev.paused, 1);
	assert_int_equal(dev.resumed, 1);
	open_ok(path, f);
	assert_int_equal(f->nextents, 2);
}

/*
 * A live checkpoint writes the same file as a paused one, with the guest running meanwhile;
 * it is the parent of the next incremental checkpoint, as one that fails is not.
 */
static void test_live(void **state)
{
	struct snap_save_opts o = { .incremental = true };
	struct snap_result res;
	struct snap_file f;
	char err[1024];

	live_written("live", "write-protect", &f);
	assert_true(lw.res.bytes > 3 * PG);
	assert_non_null(snap_file_find(&f, SNAP_SEC_DEV, "fake@pci.0.5.0"));
	snap_file_close(&f);

	fill(12, 1, 0x12);
	if (save_to(at("i1.snap"), &o, &res, err, sizeof(err)))
		fail_msg("incremental on the live one: %s", err);
	assert_string_equal(res.parent, "vm.snap");
	open_ok(at("i1.snap"), &f);
	assert_true(f.has_parent);
	snap_file_close(&f);

	/* A live checkpoint with tracking on (the incremental one started it), failing late. */
	fi_any_thread();
	fi_fail(FI_RENAME, 1, EROFS);
	assert_int_equal(live_to(at("l2.snap"), err, sizeof(err)), -EROFS);
	assert_non_null(strstr(err, "renaming"));
	fi_reset();
	fi_ioctl_fake(fake_ioctl);
	assert_int_equal(access(at("l2.snap"), F_OK), -1);
	assert_false(vm.paused);
	/* The last parent is still i1. */
	fill(13, 1, 0x13);
	assert_int_equal(save_to(at("i2.snap"), &o, &res, err, sizeof(err)), 0);
	assert_string_equal(res.parent, "i1.snap");
	/* And a live one to it succeeds with tracking on. */
	assert_int_equal(live_to(at("l3.snap"), err, sizeof(err)), 0);
	fill(14, 1, 0x14);
	assert_int_equal(save_to(at("i3.snap"), &o, &res, err, sizeof(err)), 0);
	assert_string_equal(res.parent, "l3.snap");
}

/*
 * A live checkpoint to the path whose last pause cannot read KVM's state: refused, the previous
 * file as it was, no live checkpoint left, the VM running and its device resumed.
 */
static void live_pause_fails(char *err, size_t errlen)
{
	fi_any_thread(); /* the loop thread starts it */
	fi_ioctl_fail(KVM_GET_PIT2, 1, EIO);
	assert_int_equal(live_to(path, err, errlen), -EIO);
	assert_non_null(strstr(err, "reading VM state from KVM"));
	fi_reset();
	fi_ioctl_fake(fake_ioctl);
	assert_true(old_untouched());
	assert_null(vm.live);
	assert_false(vm.paused);
	assert_int_equal(dev.paused, dev.resumed);
}

/* Failing in its pause (KVM's state cannot be read): refused at once, the file goes. */
static void test_live_pause_fails(void **state)
{
	char err[1024];

	put_old();
	live_pause_fails(err, sizeof(err));
	/* It is no parent; with no live checkpoint, an abort does nothing. */
	save_refused(at("i.snap"), &(struct snap_save_opts){ .incremental = true }, -EINVAL,
		     "needs a parent");
	snap_save_live_abort(&vm);
	assert_null(vm.live);
}

/*
 * A restored VM (its RAM a private mapping of its snapshot, here one written for the purpose)
 * is checkpointed live by dirty-log pre-copy: its rounds copy memory into the new file while
 * it runs, the last pause the pages still dirty and the state.
 */
/* Make the VM's RAM a private mapping of a fresh snapshot file, as a restored VM's is. */
static void make_restored(void)
{
	struct mem_backing *b = calloc(1, sizeof(*b));
	struct snap_file f;
	void *hva;

	write_snap_at(at("base.snap"), &(struct spec){ 0 });
	open_ok(at("base.snap"), &f);
	hva = mmap(vm.mem[0].hva, RAM, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, f.fd,
		   (off_t)f.mem_offset);
	assert_ptr_equal(hva, vm.mem[0].hva);
	b->fd = dup(f.fd);
	b->region_file_offset[0] = f.regions[0].file_offset;
	snap_file_close(&f);
	vm.backing = b;
	fill(3, 2, 0x5a);
	fill(700, 1, 0x77);
}

static void test_live_restored(void **state)
{
	struct snap_file f;
	char err[1024];

	make_restored();
	live_written("live of a restored VM", "dirty-log", &f);
	assert_int_equal(f.extents[0].file_offset, f.mem_offset + 3 * PG);
	assert_int_equal(f.extents[0].length, 2 * PG);
	snap_file_close(&f);
	/* It is the parent of the next incremental checkpoint. */
	{
		struct snap_save_opts o = { .incremental = true };
		struct snap_result res;

		fill(20, 1, 0x20);
		assert_int_equal(save_to(at("i1.snap"), &o, &res, err, sizeof(err)), 0);
		assert_string_equal(res.parent, "vm.snap");
	}
}

/*
 * Dirty-log pre-copy failing: in its rounds (a write of the file) or in its last pause (KVM's
 * state): the error reaches the requester, the previous file stays, the VM runs on.
 */
static void test_live_restored_fails(void **state)
{
	char err[1024];

	make_restored();
	put_old();
	fi_any_thread();
	fi_fail(FI_PWRITE, 1, ENOSPC);
	assert_int_equal(live_to(path, err, sizeof(err)), -ENOSPC);
	assert_true(err[0]);
	fi_reset();
	fi_ioctl_fake(fake_ioctl);
	assert_true(old_untouched());
	assert_false(vm.paused);

	live_pause_fails(err, sizeof(err));
	/* With a policy of the caller's, it succeeds. */
	{
		struct live_start ls = { .path = path };
		struct mig_policy pol = snap_livecopy_policy();

		lw.done = false;
		ls.ret = snap_save_live(&vm, path, &pol, live_done, NULL, ls.err, sizeof(ls.err));
		assert_int_equal(ls.ret, 0);
		live_wait();
		assert_int_equal(lw.ret, 0);
	}
}

/*
 * The VM ends while a live checkpoint is written (snap_save_live_abort): the requester hears
 * once, either that it was written or that it was not (-ECANCELED); nothing is left running.
 */
static void live_abort(bool restored)
{
	struct live_start ls = { .path = path };
	struct snap_file f;

	/* Before anything tracks the RAM: remapping it under a tracker would break that. */
	if (restored)
		make_restored();
	put_old();
	lw.done = false;
	evloop_call(&vm.ev, start_live, &ls);
	assert_int_equal(ls.ret, 0);
	snap_save_live_abort(&vm);
	live_wait();
	assert_null(vm.live);
	assert_false(vm.paused);
	if (lw.ret) {
		assert_int_equal(lw.ret, -ECANCELED);
		assert_non_null(strstr(lw.err, "the VM ended before"));
		assert_true(old_untouched());
	} else {
		open_ok(path, &f);
		snap_file_close(&f);
	}
}

static void test_live_abort(void **state)
{
	live_abort(false);
}

static void test_live_abort_restored(void **state)
{
	live_abort(true);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_checkpoint, setup, teardown),
		cmocka_unit_test_setup_teardown(test_replace_and_clone, setup, teardown),
		cmocka_unit_test_setup_teardown(test_incremental, setup, teardown),
		cmocka_unit_test_setup_teardown(test_suspend, setup, teardown),
		cmocka_unit_test_setup_teardown(test_paused_checkpoint, setup, teardown),
		cmocka_unit_test_setup_teardown(test_replace_unauthenticated, setup, teardown),
		cmocka_unit_test_setup_teardown(test_incremental_more, setup, teardown),
		cmocka_unit_test_setup_teardown(test_chain_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stream, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failures, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_sweep, setup, teardown),
		cmocka_unit_test_setup_teardown(test_alloc_sweep, setup, teardown),
		cmocka_unit_test_setup_teardown(test_live, setup_live, teardown),
		cmocka_unit_test_setup_teardown(test_live_pause_fails, setup_live, teardown),
		cmocka_unit_test_setup_teardown(test_live_restored, setup_live, teardown),
		cmocka_unit_test_setup_teardown(test_live_restored_fails, setup_live, teardown),
		cmocka_unit_test_setup_teardown(test_live_abort, setup_live, teardown),
		cmocka_unit_test_setup_teardown(test_live_abort_restored, setup_live, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
