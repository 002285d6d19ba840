// SPDX-License-Identifier: BSD-2-Clause
/*
 * The snapshot orchestrator (snap/snapshot.c) on a real VM, with host failures injected
 * (tests/faultinj.h).  The guest is a multiboot kernel of three bytes (hlt; jmp back) written
 * here; the VM is built as khyve builds it (machine_create, machine_start).
 *
 * A save that fails at any write, at the fsync, at the rename, at any ioctl reading vCPU or VM
 * state, or at any allocation, returns the error, leaves the previous file at the path as it
 * was and no temporary file, and the VM runs on (not paused; the next save succeeds).  A
 * restore that fails at any read, the memory mapping, any ioctl setting state, or any
 * allocation is refused with a message and leaves no VM behind.  A live checkpoint that fails
 * at any allocation, its temporary file, userfaultfd's set-up or write-protection, the page
 * table scan, a pagemap read, a write, the fsync or the rename does the same.  A live
 * checkpoint (either method) is the parent of the next incremental one; one that fails leaves
 * the last parent the parent, with no page lost.
 *
 * Needs /dev/kvm (skipped without it, as the other KVM tests are).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "dev/dev.h"
#include "evloop.h"
#include "faultinj.h"
#include "hltguest.h"
#include "machine.h"
#include "snap/chain.h"
#include "snap/dirty.h"
#include "snap/format.h"
#include "snap/meta.h"
#include "snap/pagemap.h"
#include "snap/snapshot.h"
#include "sstream.h"
#include "vm.h"

#include "statesnap.h"
#include "testfiles.h"

static char dir[64], path[160], kernel[160], key[160];
static struct config cfg;
static struct vm vm;
static bool have_kvm;
static struct config rcfg; /* test_live_restored's restored VM keeps it */
static bool rcfg_used;

static void base_config(struct config *c)
{
	hltguest_config(c, kernel, key);
}

static int setup(void **state)
{
	char err[1024] = "";

	fi_reset();
	strcpy(dir, "/tmp/khyve-snapf-XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/vm.snap", dir);
	snprintf(kernel, sizeof(kernel), "%s/kernel", dir);
	snprintf(key, sizeof(key), "%s/key", dir);
	assert_int_equal(hltguest_write(kernel), 0);
	memset(&vm, 0, sizeof(vm));
	base_config(&cfg);
	if (!have_kvm)
		return 0;
	if (machine_check_config(&cfg, false, err, sizeof(err)) ||
	    machine_create(&vm, &cfg, false, err, sizeof(err)) ||
	    machine_start(&vm, err, sizeof(err)))
		fail_msg("building the VM: %s", err);
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];

	fi_reset();
	if (have_kvm)
		machine_destroy(&vm);
	config_free(&cfg);
	if (rcfg_used)
		config_free(&rcfg);
	rcfg_used = false;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd);
}

/* Entries in the directory other than the kernel and the key. */
static unsigned dir_files(void)
{
	return testfile_count(dir, (const char *const[]){ "kernel", "key", NULL }, NULL);
}

static void put_old(void)
{
	testfile_put_old(path);
}

static bool old_untouched(void)
{
	return testfile_is_old(path) && dir_files() == 1;
}

static int save(char *err, size_t errlen)
{
	struct snap_result res;

	err[0] = '\0';
	return snap_save(&vm, path, NULL, &res, err, errlen);
}

/* After a failed save: the VM runs (not paused) and a save without faults succeeds. */
static void check_vm_goes_on(void)
{
	char err[1024];

	fi_reset();
	assert_false(vm.paused);
	if (save(err, sizeof(err)))
		fail_msg("a save after the failed one: %s", err);
	put_old();
}

/* Restore @path into a fresh VM: 0 with it created (then destroyed here), or the error. */
static int restore(char *err, size_t errlen)
{
	struct config c;
	struct vm v;
	int ret;

	memset(&v, 0, sizeof(v));
	fi_suspend(true);
	base_config(&c);
	config_unset(&c, "boot.kernel");
	fi_suspend(false);
	err[0] = '\0';
	ret = snap_restore(&v, &c, path, false, err, errlen);
	fi_suspend(true);
	if (!ret)
		machine_destroy(&v);
	config_free(&c);
	fi_suspend(false);
	return ret;
}

#define NEED_KVM()              \
	do {                    \
		if (!have_kvm)  \
			skip(); \
	} while (0)

static void test_save_restore(void **state)
{
	char err[1024];

	NEED_KVM();
	if (save(err, sizeof(err)))
		fail_msg("save: %s", err);
	assert_false(vm.paused);
	assert_int_equal(dir_files(), 1);
	if (restore(err, sizeof(err)))
		fail_msg("restore: %s", err);
}

/*
 * Host paths of the configuration other than disks are saved absolute, so that a restore
 * started in another directory finds the same files: the kernel and initrd, the control
 * socket, console files and sockets (file:/unix:).  Absolute paths, "off", "stdio" and keys
 * that name no host path are saved as they are.
 */
static void test_save_abs_paths(void **state)
{
	struct snap_file f;
	struct config mc;
	char err[1024], cwd[4096];
	static const char *const same[][2] = {
		{ "ctl.socket", "off" },	  { "boot.initrd", "/abs/initrd" },
		{ "lpc.com3.path", "stdio" },	  { "lpc.com4.path", "file:/abs/com4.log" },
		{ "lpc.com1.pathx", "file:rel" }, { "boot.cmdline", "console=ttyS0 x" },
	};

	NEED_KVM();
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(chdir(dir), 0);
	assert_int_equal(config_set(&cfg, "boot.kernel", "kernel"), 0);
	assert_int_equal(config_set(&cfg, "lpc.com1.path", "file:com1.log"), 0);
	assert_int_equal(config_set(&cfg, "lpc.com2.path", "unix:com2.sock"), 0);
	for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++)
		assert_int_equal(config_set(&cfg, same[i][0], same[i][1]), 0);
	if (save(err, sizeof(err)))
		fail_msg("save: %s", err);
	assert_int_equal(chdir(cwd), 0);
	assert_int_equal(snap_file_open(&f, path, false, err, sizeof(err)), 0);
	config_init(&mc);
	if (snap_meta_config(f.meta_json, &mc, err, sizeof(err)))
		fail_msg("meta: %s", err);
	snap_file_close(&f);
	testfile_check_path(&mc, "boot.kernel", "", dir, "kernel");
	testfile_check_path(&mc, "lpc.com1.path", "file:", dir, "com1.log");
	testfile_check_path(&mc, "lpc.com2.path", "unix:", dir, "com2.sock");
	for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++)
		assert_string_equal(config_get(&mc, same[i][0]), same[i][1]);
	config_free(&mc);
	/* A relative control socket too. */
	assert_int_equal(chdir(dir), 0);
	assert_int_equal(config_set(&cfg, "ctl.socket", "vm.sock"), 0);
	if (save(err, sizeof(err)))
		fail_msg("save: %s", err);
	assert_int_equal(chdir(cwd), 0);
	assert_int_equal(snap_file_open(&f, path, false, err, sizeof(err)), 0);
	config_init(&mc);
	assert_int_equal(snap_meta_config(f.meta_json, &mc, err, sizeof(err)), 0);
	snap_file_close(&f);
	testfile_check_path(&mc, "ctl.socket", "", dir, "vm.sock");
	config_free(&mc);
}

/* A device whose save refuses, saying why in its stream (a worker busy, say). */
static int refusing_save(struct dev *d, struct sstream *s)
{
	return ss_fail(s, -EBUSY, "2 workers busy");
}

/*
 * The device's own reason reaches the user, after the device's id said once (the reason was
 * replaced by strerror before: "saving device refuser: Device or resource busy").
 */
static void test_save_device_refuses(void **state)
{
	static const struct dev_ops ops = { .name = "refuser",
					    .version = 1,
					    .save = refusing_save };
	struct dev d = { .ops = &ops, .id = "refuser" };
	char err[1024];

	NEED_KVM();
	d.next = vm.devs;
	vm.devs = &d;
	assert_int_equal(save(err, sizeof(err)), -EBUSY);
	vm.devs = d.next;
	assert_string_equal(err, "saving device refuser: 2 workers busy");
	assert_false(vm.paused);
	assert_int_equal(dir_files(), 0);
	if (save(err, sizeof(err)))
		fail_msg("save after the refusal: %s", err);
}

/* Every pwrite of a save failing in turn (disk full). */
static void test_save_write_fails(void **state)
{
	char err[1024];
	unsigned writes;

	NEED_KVM();
	/* The first save also makes the key; count the writes of the next. */
	assert_int_equal(save(err, sizeof(err)), 0);
	put_old();
	fi_reset();
	assert_int_equal(save(err, sizeof(err)), 0);
	writes = fi_calls(FI_PWRITE);
	assert_true(writes >= 5);
	put_old();
	for (unsigned n = 1; n <= writes; n++) {
		fi_reset();
		/* The vCPU sections are written on the vCPU's thread. */
		fi_any_thread();
		fi_fail(FI_PWRITE, n, ENOSPC);
		if (save(err, sizeof(err)) != -ENOSPC)
			fail_msg("write %u of %u failing: '%s'", n, writes, err);
		assert_true(fi_all_fired());
		if (!strstr(err, strerror(ENOSPC)))
			fail_msg("write %u: '%s'", n, err);
		if (!old_untouched())
			fail_msg("write %u failing changed the file at the path", n);
		check_vm_goes_on();
	}
}

static void test_save_commit_fails(void **state)
{
	char err[1024];

	NEED_KVM();
	put_old();
	fi_fail(FI_FSYNC, 1, EIO);
	assert_int_equal(save(err, sizeof(err)), -EIO);
	assert_true(old_untouched());
	check_vm_goes_on();
	fi_fail(FI_RENAME, 1, EROFS);
	assert_int_equal(save(err, sizeof(err)), -EROFS);
	assert_non_null(strstr(err, "renaming"));
	assert_true(old_untouched());
	check_vm_goes_on();
	fi_fail(FI_MKOSTEMP, 1, ENOSPC);
	assert_int_equal(save(err, sizeof(err)), -ENOSPC);
	assert_true(old_untouched());
	check_vm_goes_on();
}

/* KVM refusing to hand out vCPU or VM state (on the vCPU's thread or the caller's). */
static void test_save_ioctl_fails(void **state)
{
	static const unsigned long reqs[] = {
		KVM_GET_REGS,	  KVM_GET_SREGS, KVM_GET_LAPIC,	    KVM_GET_MSRS,
		KVM_GET_IRQCHIP,  KVM_GET_PIT2,	 KVM_GET_CLOCK,	    KVM_GET_VCPU_EVENTS,
		KVM_GET_MP_STATE, KVM_GET_XCRS,	 KVM_GET_DEBUGREGS, KVM_GET_CPUID2,
	};
	char err[1024];

	NEED_KVM();
	put_old();
	for (unsigned i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
		int ret;

		fi_reset();
		fi_any_thread();
		fi_ioctl_fail(reqs[i], 1, EIO);
		ret = save(err, sizeof(err));
		if (!fi_all_fired())
			fail_msg("ioctl %lx was not made by a save", reqs[i]);
		if (ret != -EIO || !err[0])
			fail_msg("ioctl %lx failing: %d '%s'", reqs[i], ret, err);
		if (!old_untouched())
			fail_msg("ioctl %lx failing changed the file", reqs[i]);
		check_vm_goes_on();
	}
}

/*
 * Every allocation of a save on the calling thread failing in turn: either the save fails
 * (previous file untouched) or, where the allocation was optional, it succeeds with a whole
 * file; the VM always runs on.
 */
static void test_save_alloc_sweep(void **state)
{
	static const enum fi_call kinds[] = { FI_MALLOC, FI_CALLOC, FI_REALLOC };
	char err[1024];

	NEED_KVM();
	for (unsigned k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
		unsigned total;

		put_old();
		assert_int_equal(save(err, sizeof(err)), 0);
		put_old();
		fi_reset();
		assert_int_equal(save(err, sizeof(err)), 0);
		total = fi_calls(kinds[k]);
		put_old();
		for (unsigned n = 1; n <= total; n++) {
			int ret;

			fi_reset();
			fi_fail(kinds[k], n, ENOMEM);
			ret = save(err, sizeof(err));
			if (ret && (!old_untouched() || !err[0]))
				fail_msg("allocation %u/%u failing: %d '%s', file changed or no "
					 "message",
					 k, n, ret, err);
			fi_reset();
			if (!ret && restore(err, sizeof(err)))
				fail_msg("allocation %u/%u failed, save succeeded, restore: %s", k,
					 n, err);
			check_vm_goes_on();
		}
	}
}

/* Reads of a restore failing in turn (I/O error), and short or interrupted. */
static void test_restore_read_fails(void **state)
{
	char err[1024];
	unsigned reads;

	NEED_KVM();
	assert_int_equal(save(err, sizeof(err)), 0);
	fi_reset();
	if (restore(err, sizeof(err)))
		fail_msg("restore: %s", err);
	reads = fi_calls(FI_PREAD);
	assert_true(reads >= 5);
	for (unsigned n = 1; n <= reads; n++) {
		fi_reset();
		fi_fail(FI_PREAD, n, EIO);
		if (restore(err, sizeof(err)) != -EIO || !err[0])
			fail_msg("read %u failing: '%s'", n, err);
		fi_reset();
		fi_short(FI_PREAD, n);
		if (restore(err, sizeof(err)))
			fail_msg("read %u short: %s", n, err);
	}
}

/* The memory mapping, and KVM refusing each piece of state a restore sets. */
static void test_restore_setup_fails(void **state)
{
	static const unsigned long reqs[] = {
		KVM_SET_REGS,	KVM_SET_SREGS,	     KVM_SET_LAPIC,    KVM_SET_MSRS,
		KVM_SET_XSAVE,	KVM_SET_IRQCHIP,     KVM_SET_PIT2,     KVM_SET_CLOCK,
		KVM_SET_XCRS,	KVM_SET_VCPU_EVENTS, KVM_SET_MP_STATE, KVM_SET_DEBUGREGS,
		KVM_SET_CPUID2,
	};
	char err[1024];
	unsigned maps;

	NEED_KVM();
	assert_int_equal(save(err, sizeof(err)), 0);
	for (unsigned i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
		int ret;

		fi_reset();
		fi_any_thread();
		fi_ioctl_fail(reqs[i], 1, EINVAL);
		ret = restore(err, sizeof(err));
		if (!fi_all_fired())
			fail_msg("ioctl %lx was not made by a restore", reqs[i]);
		if (!ret || !err[0])
			fail_msg("ioctl %lx failing: %d '%s'", reqs[i], ret, err);
	}
	/*
	 * The host's CPUID, which the saved one is checked against: the second KVM_GET_CPUID2 (the
	 * first, when the vCPU is made, only reads back what was set, and may fail).
	 */
	fi_reset();
	fi_any_thread();
	fi_ioctl_fail(KVM_GET_CPUID2, 2, EIO);
	assert_int_equal(restore(err, sizeof(err)), -EIO);
	assert_non_null(strstr(err, "KVM_GET_CPUID2"));
	fi_reset();
	assert_int_equal(restore(err, sizeof(err)), 0);
	maps = fi_calls(FI_MMAP);
	for (unsigned n = 1; n <= maps; n++) {
		fi_reset();
		fi_fail(FI_MMAP, n, ENOMEM);
		if (!restore(err, sizeof(err)) || !err[0])
			fail_msg("mmap %u failing: restored, or no message", n);
	}
	fi_reset();
	fi_fail(FI_DUP, 1, EMFILE);
	assert_int_not_equal(restore(err, sizeof(err)), 0);
}

/* Every allocation of a restore failing in turn: refused with a message, or restored. */
static void test_restore_alloc_sweep(void **state)
{
	static const enum fi_call kinds[] = { FI_MALLOC, FI_CALLOC, FI_REALLOC, FI_STRDUP };
	char err[1024];

	NEED_KVM();
	assert_int_equal(save(err, sizeof(err)), 0);
	for (unsigned k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
		unsigned total;

		fi_reset();
		assert_int_equal(restore(err, sizeof(err)), 0);
		total = fi_calls(kinds[k]);
		for (unsigned n = 1; n <= total; n++) {
			int ret;

			fi_reset();
			fi_fail(kinds[k], n, ENOMEM);
			ret = restore(err, sizeof(err));
			if (ret && !err[0])
				fail_msg("allocation %u/%u failing: %d with no message", k, n, ret);
		}
	}
}

/* Restore with @key=@value on the command line: the error (0 when restored). */
static int restore_with(const char *k, const char *value, char *err, size_t errlen)
{
	struct config c;
	struct vm v;
	int ret;

	memset(&v, 0, sizeof(v));
	base_config(&c);
	config_unset(&c, "boot.kernel");
	assert_int_equal(config_set(&c, k, value), 0);
	err[0] = '\0';
	ret = snap_restore(&v, &c, path, false, err, errlen);
	if (!ret)
		machine_destroy(&v);
	config_free(&c);
	return ret;
}

/* The restore options: each bad value named, each good one restores. */
static void test_restore_options(void **state)
{
	static const struct {
		const char *key, *value, *needle; /* needle NULL: restores */
	} cases[] = {
		{ "snapshot.verify", "half", "snapshot.verify=half: expected full or fast" },
		{ "snapshot.time", "later", "snapshot.time=later: expected frozen or catchup" },
		{ "snapshot.disk_changed", "maybe", "expected refuse or accept" },
		{ "snapshot.trust", "perhaps", "snapshot.trust" },
		{ "cpus", "2", "option cpus=2 does not match the snapshot (cpus=1)" },
		{ "memory.size", "32M", "does not match the snapshot" },
		{ "snapshot.verify", "fast", NULL },
		{ "snapshot.time", "catchup", NULL },
		{ "snapshot.disk_changed", "accept", NULL },
		{ "snapshot.trust", "none", NULL },
	};
	char err[1024];

	NEED_KVM();
	assert_int_equal(save(err, sizeof(err)), 0);
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int ret = restore_with(cases[i].key, cases[i].value, err, sizeof(err));

		if (!cases[i].needle && ret)
			fail_msg("%s=%s: %s", cases[i].key, cases[i].value, err);
		if (cases[i].needle && (ret != -EINVAL || !strstr(err, cases[i].needle)))
			fail_msg("%s=%s: %d '%s' (expected '%s')", cases[i].key, cases[i].value,
				 ret, err, cases[i].needle);
	}
}

/* dump_config prints the merged configuration and builds no VM. */
static void test_restore_dump_config(void **state)
{
	struct config c;
	struct vm v;
	char err[1024];
	FILE *saved = stdout, *out;
	char buf[4096] = "";

	NEED_KVM();
	assert_int_equal(save(err, sizeof(err)), 0);
	memset(&v, 0, sizeof(v));
	base_config(&c);
	config_unset(&c, "boot.kernel");
	out = tmpfile();
	assert_non_null(out);
	stdout = out;
	assert_int_equal(snap_restore(&v, &c, path, true, err, sizeof(err)), 1);
	stdout = saved;
	rewind(out);
	assert_true(fread(buf, 1, sizeof(buf) - 1, out) > 0);
	fclose(out);
	assert_non_null(strstr(buf, "memory.size=16M"));
	assert_non_null(strstr(buf, "boot.kernel="));
	config_free(&c);
}

/* Pausing twice, resuming a running VM, checkpointing a paused VM (it stays paused). */
static void test_pause_resume(void **state)
{
	struct snap_result res;
	char err[1024];

	NEED_KVM();
	assert_int_equal(snap_resume_vm(&vm, err, sizeof(err)), -EALREADY);
	assert_non_null(strstr(err, "not paused"));
	assert_int_equal(snap_pause_vm(&vm, err, sizeof(err)), 0);
	assert_true(vm.paused);
	assert_int_equal(snap_pause_vm(&vm, err, sizeof(err)), -EALREADY);
	assert_non_null(strstr(err, "already paused"));
	assert_int_equal(snap_save(&vm, path, NULL, &res, err, sizeof(err)), 0);
	assert_true(vm.paused);
	/* A failed save of a paused VM leaves it paused too. */
	put_old();
	fi_fail(FI_FSYNC, 1, EIO);
	assert_int_equal(snap_save(&vm, path, NULL, &res, err, sizeof(err)), -EIO);
	assert_true(vm.paused);
	assert_true(old_untouched());
	fi_reset();
	/* A live checkpoint of a paused VM is refused, and the VM stays paused. */
	assert_int_equal(snap_save_live(&vm, path, NULL, NULL, NULL, err, sizeof(err)), -EALREADY);
	assert_non_null(strstr(err, "without --live"));
	assert_true(old_untouched());
	assert_int_equal(snap_resume_vm(&vm, err, sizeof(err)), 0);
	assert_false(vm.paused);
	/* No eventfd for the live checkpoint: refused before anything is paused or written. */
	fi_fail(FI_EVENTFD, 1, EMFILE);
	assert_int_equal(snap_save_live(&vm, path, NULL, NULL, NULL, err, sizeof(err)), -EMFILE);
	assert_non_null(strstr(err, "eventfd"));
	assert_false(vm.paused);
	assert_true(old_untouched());
}

/* A suspend: the save succeeds and the VM is told to end as suspended. */
static void test_suspend(void **state)
{
	struct snap_save_opts opts = { .suspend = true };
	struct snap_result res;
	char err[1024];

	NEED_KVM();
	assert_int_equal(snap_save(&vm, path, &opts, &res, err, sizeof(err)), 0);
	assert_int_equal(vm_wait_exit(&vm), VM_EXIT_SUSPENDED);
	assert_true(res.bytes > 0);
	if (restore(err, sizeof(err)))
		fail_msg("restore of the suspended VM: %s", err);
}

/* ---- live checkpoints: started on the event-loop thread, finished there ---- */

struct live_req {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool started, finished;
	int start_ret, ret, busy_ret;
	struct snap_result res;
	char err[1024], busy_err[1024];
};

static struct live_req lreq = { .lock = PTHREAD_MUTEX_INITIALIZER,
				.cond = PTHREAD_COND_INITIALIZER };

static void live_done(void *opaque, int ret, const struct snap_result *res, const char *err)
{
	pthread_mutex_lock(&lreq.lock);
	lreq.ret = ret;
	if (res)
		lreq.res = *res;
	snprintf(lreq.err, sizeof(lreq.err), "%s", err ? err : "");
	lreq.finished = true;
	pthread_cond_broadcast(&lreq.cond);
	pthread_mutex_unlock(&lreq.lock);
}

/* A fault set on the loop thread itself, just before the start (NULL: none). */
struct live_fault {
	enum fi_call call;
	unsigned long req; /* FI_IOCTL: the request */
	unsigned nth;
	int err;
};
static const struct live_fault *loop_fault;
/* The live checkpoint's file (NULL: @path); with @busy_parent, an incremental one is asked for
 * on the loop thread while it is being written (its result in lreq.busy_ret, busy_err). */
static const char *live_path;
static const char *busy_parent;

static void live_start(void *opaque)
{
	char err[1024] = "";
	int ret;

	if (loop_fault && loop_fault->call == FI_IOCTL)
		fi_ioctl_fail(loop_fault->req, loop_fault->nth, loop_fault->err);
	else if (loop_fault)
		fi_fail(loop_fault->call, loop_fault->nth, loop_fault->err);
	ret = snap_save_live(&vm, live_path ? live_path : path, NULL, live_done, NULL, err,
			     sizeof(err));
	if (!ret && busy_parent) {
		struct snap_save_opts o = { .incremental = true, .parent = busy_parent };
		struct snap_result r;
		char path2[200];

		/* vm.live is set until live_end, which runs on this thread: deterministic. */
		snprintf(path2, sizeof(path2), "%s/busy.snap", dir);
		lreq.busy_ret = snap_save(&vm, path2, &o, &r, lreq.busy_err, sizeof(lreq.busy_err));
	}

	pthread_mutex_lock(&lreq.lock);
	lreq.start_ret = ret;
	if (ret) {
		snprintf(lreq.err, sizeof(lreq.err), "%s", err);
		lreq.finished = true;
		lreq.ret = ret;
	}
	lreq.started = true;
	pthread_cond_broadcast(&lreq.cond);
	pthread_mutex_unlock(&lreq.lock);
}

/* A live checkpoint to @path: its result (the start's error, or the writer's). */
static int save_live(char *err, size_t errlen)
{
	int ret;

	pthread_mutex_lock(&lreq.lock);
	lreq.started = lreq.finished = false;
	lreq.err[0] = '\0';
	pthread_mutex_unlock(&lreq.lock);
	evloop_call(&vm.ev, live_start, NULL);
	pthread_mutex_lock(&lreq.lock);
	while (!lreq.finished)
		pthread_cond_wait(&lreq.cond, &lreq.lock);
	ret = lreq.ret;
	snprintf(err, errlen, "%s", lreq.err);
	pthread_mutex_unlock(&lreq.lock);
	return ret;
}

static void test_live(void **state)
{
	char err[1024];
	unsigned writes;

	NEED_KVM();
	if (save_live(err, sizeof(err)))
		fail_msg("live checkpoint: %s", err);
	assert_false(vm.paused);
	assert_int_equal(dir_files(), 1);
	if (restore(err, sizeof(err)))
		fail_msg("restore of a live checkpoint: %s", err);
	put_old();
	fi_reset();
	assert_int_equal(save_live(err, sizeof(err)), 0);
	writes = fi_calls(FI_PWRITE);
	assert_true(writes >= 5);
	put_old();
	/* The disk fills up at each write in turn (the writer thread's included). */
	for (unsigned n = 1; n <= writes; n++) {
		int ret;

		fi_reset();
		fi_any_thread();
		fi_fail(FI_PWRITE, n, ENOSPC);
		ret = save_live(err, sizeof(err));
		if (ret != -ENOSPC || !strstr(err, strerror(ENOSPC)))
			fail_msg("live, write %u of %u failing: %d '%s'", n, writes, ret, err);
		if (!old_untouched())
			fail_msg("live, write %u failing changed the file at the path", n);
		assert_false(vm.paused);
	}
	/* The commit's fsync, and no userfaultfd. */
	fi_reset();
	fi_any_thread();
	fi_fail(FI_FSYNC, 1, EIO);
	assert_int_equal(save_live(err, sizeof(err)), -EIO);
	assert_true(old_untouched());
	fi_reset();
	fi_any_thread();
	fi_ioctl_fail(UFFDIO_REGISTER, 1, EINVAL);
	assert_int_not_equal(save_live(err, sizeof(err)), 0);
	assert_true(err[0] != '\0');
	assert_true(old_untouched());
	assert_false(vm.paused);
	fi_reset();
	if (save_live(err, sizeof(err)))
		fail_msg("live checkpoint after the failures: %s", err);
}

/* The VM becomes one restored from a checkpoint of itself (its RAM maps that file), running. */

static void become_restored(void)
{
	char err[1024];

	if (save(err, sizeof(err)))
		fail_msg("checkpoint: %s", err);
	machine_destroy(&vm);
	memset(&vm, 0, sizeof(vm));
	base_config(&rcfg);
	rcfg_used = true;
	config_unset(&rcfg, "boot.kernel");
	if (snap_restore(&vm, &rcfg, path, false, err, sizeof(err)) ||
	    machine_start(&vm, err, sizeof(err)))
		fail_msg("restoring the VM: %s", err);
	assert_non_null(vm.backing);
}

/*
 * A restored VM is checkpointed live by pre-copy with the dirty log (snap/livecopy.h); the file
 * restores.  The disk fills up at each write in turn (the pre-copy thread's and the pause's):
 * the error comes back, the file at the path is untouched, the VM runs, and its dirty-page
 * client is gone (the tracking the restore started stays).
 */
static void test_live_restored(void **state)
{
	unsigned writes, clients;
	char err[1024];

	NEED_KVM();
	become_restored();
	clients = dirty_clients(&vm);
	if (save_live(err, sizeof(err)))
		fail_msg("live checkpoint of a restored VM: %s", err);
	assert_string_equal(lreq.res.method, "dirty-log");
	assert_true(lreq.res.rounds >= 2);
	assert_true(lreq.res.mem_pages > 0);
	assert_false(vm.paused);
	assert_int_equal(dirty_clients(&vm), clients);
	assert_int_equal(dir_files(), 1);
	if (restore(err, sizeof(err)))
		fail_msg("restore of a dirty-log live checkpoint: %s", err);
	put_old();
	fi_reset();
	fi_any_thread();
	assert_int_equal(save_live(err, sizeof(err)), 0);
	writes = fi_calls(FI_PWRITE);
	assert_true(writes >= 5);
	put_old();
	for (unsigned n = 1; n <= writes; n++) {
		int ret;

		fi_reset();
		fi_any_thread();
		fi_fail(FI_PWRITE, n, ENOSPC);
		ret = save_live(err, sizeof(err));
		if (ret != -ENOSPC || !strstr(err, strerror(ENOSPC)))
			fail_msg("dirty-log live, write %u of %u failing: %d '%s'", n, writes, ret,
				 err);
		if (!old_untouched())
			fail_msg("dirty-log live, write %u failing changed the file at the path",
				 n);
		assert_false(vm.paused);
		assert_int_equal(dirty_clients(&vm), clients);
	}
	/* The commit's fsync; a state ioctl in the final pause. */
	fi_reset();
	fi_any_thread();
	fi_fail(FI_FSYNC, 1, EIO);
	assert_int_equal(save_live(err, sizeof(err)), -EIO);
	assert_true(old_untouched());
	fi_reset();
	fi_any_thread();
	fi_ioctl_fail(KVM_GET_REGS, 1, EIO);
	assert_int_not_equal(save_live(err, sizeof(err)), 0);
	assert_true(old_untouched());
	assert_false(vm.paused);
	assert_int_equal(dirty_clients(&vm), clients);
	fi_reset();
	if (save_live(err, sizeof(err)))
		fail_msg("dirty-log live checkpoint after the failures: %s", err);
	if (restore(err, sizeof(err)))
		fail_msg("restore after the failures: %s", err);
}

/* The next N of a sweep: every one of the first 4, then doubling. */
static unsigned next_nth(unsigned n)
{
	return n < 4 ? n + 1 : n * 2;
}

/*
 * One live checkpoint with @f: on the loop thread (@any false) or on every thread of the VM.
 * Either it fails with a message, the previous file untouched, the VM running; or (the call
 * was one the checkpoint does without, or past the last of its kind) the file restores.
 * Returns whether the fault fired.
 */
static bool live_fault_once(const struct live_fault *f, bool any, bool may_succeed,
			    const char *what)
{
	char err[1024];
	bool fired;
	int ret;

	fi_reset();
	put_old();
	if (any) {
		fi_any_thread();
		if (f->call == FI_IOCTL)
			fi_ioctl_fail(f->req, f->nth, f->err);
		else
			fi_fail(f->call, f->nth, f->err);
	} else {
		loop_fault = f;
	}
	ret = save_live(err, sizeof(err));
	loop_fault = NULL;
	fired = fi_all_fired();
	fi_reset();
	if (vm.paused)
		fail_msg("live, %s %u failing: the VM is left paused ('%s')", what, f->nth, err);
	if (ret) {
		if (!err[0])
			fail_msg("live, %s %u failing: %d with no message", what, f->nth, ret);
		if (!old_untouched())
			fail_msg("live, %s %u failing: '%s', and the file at the path "
				 "changed "
				 "(or a temporary file is left)",
				 what, f->nth, err);
	} else {
		/*
		 * Dirty-page tracking (for the next incremental checkpoint) uses userfaultfd and
		 * PAGEMAP_SCAN too; its failure does not fail the checkpoint, whose note says so.
		 */
		if (fired && !may_succeed && !strstr(lreq.res.note, "dirty-page tracking failed"))
			fail_msg("live, %s %u failing: the checkpoint succeeded", what, f->nth);
		if (restore(err, sizeof(err)))
			fail_msg("live, %s %u failed, the checkpoint succeeded, restore: %s", what,
				 f->nth, err);
	}
	return fired;
}

static void live_sweep(enum fi_call c, unsigned long req, int e, bool any, bool may_succeed,
		       const char *what)
{
	unsigned n, fired = 0;

	for (n = 1; n < 4096; n = next_nth(n)) {
		struct live_fault f = { c, req, n, e };

		if (!live_fault_once(&f, any, may_succeed, what))
			break;
		fired++;
	}
	if (!fired)
		fail_msg("live, %s: no such call in a live checkpoint", what);
	print_message("live, %s: %u faults reached\n", what, fired);
}

/*
 * The host failing a live checkpoint (snap/live.c) at each step: its allocations and temporary
 * file on the loop thread; userfaultfd's set-up and write-protection, the page-table scan
 * and the pagemap reads on the writer thread; each one a clear error, nothing left behind.
 */
static void test_live_faults(void **state)
{
	NEED_KVM();
	live_sweep(FI_CALLOC, 0, ENOMEM, false, true, "calloc");
	live_sweep(FI_MALLOC, 0, ENOMEM, false, true, "malloc");
	live_sweep(FI_REALLOC, 0, ENOMEM, false, true, "realloc");
	live_sweep(FI_MKOSTEMP, 0, ENOSPC, false, false, "mkostemp");
	live_sweep(FI_IOCTL, UFFDIO_API, EINVAL, true, false, "UFFDIO_API");
	live_sweep(FI_IOCTL, UFFDIO_WRITEPROTECT, ENOMEM, true, false, "UFFDIO_WRITEPROTECT");
	live_sweep(FI_IOCTL, PAGEMAP_SCAN, EIO, true, false, "PAGEMAP_SCAN");
	live_sweep(FI_PREAD, 0, EIO, true, false, "pread");
	/* The file's fsync fails the checkpoint; the directory's, after the rename, cannot. */
	assert_true(
		live_fault_once(&(struct live_fault){ FI_FSYNC, 0, 1, EIO }, true, false, "fsync"));
	assert_true(live_fault_once(&(struct live_fault){ FI_FSYNC, 0, 2, EIO }, true, true,
				    "directory fsync"));
	live_sweep(FI_RENAME, 0, EROFS, true, false, "rename");
}

/* ---- a live checkpoint as the parent of an incremental one ---- */

#define PG 4096ULL
#define SCRATCH 2048 /* page 2048 (8 MiB) on: guest RAM the hlt guest never looks at */

/* Pages [@first, @first + @n) of guest RAM get generation @gen, written as a device would. */
static void scribble(uint64_t first, uint64_t n, unsigned gen)
{
	for (uint64_t pg = first; pg < first + n; pg++) {
		uint64_t *p = (uint64_t *)((uint8_t *)vm.mem[0].hva + pg * PG);

		for (unsigned i = 0; i < PG / 8; i++)
			p[i] = pg * 0x9e3779b97f4a7c15ULL ^ (uint64_t)gen << 56 ^ i;
	}
}

/* An incremental checkpoint to @name in the test directory, its parent @parent. */
static void save_incremental(const char *name, const char *parent, char *out, size_t outlen,
			     struct snap_result *res)
{
	struct snap_save_opts o = { .incremental = true, .parent = parent };
	char err[1024] = "";

	snprintf(out, outlen, "%s/%s", dir, name);
	if (snap_save(&vm, out, &o, res, err, sizeof(err)))
		fail_msg("incremental checkpoint with parent %s: %s", parent, err);
	if (!res->incremental)
		fail_msg("an incremental checkpoint of %s was written full: %s", parent, res->note);
}

/* The pages @file holds (it must be an incremental one): one bit per page in @bitmap. */
static void file_pages(const char *file, uint64_t *bitmap, size_t words)
{
	struct snap_file f;
	char err[1024];

	memset(bitmap, 0, words * 8);
	if (snap_file_open(&f, file, true, err, sizeof(err)))
		fail_msg("%s", err);
	assert_true(f.has_parent);
	assert_int_equal(f.nregions, 1);
	for (unsigned e = 0; e < f.nextents; e++) {
		uint64_t pg = (f.extents[e].file_offset - f.regions[0].file_offset) / PG;

		for (uint64_t n = 0; n < f.extents[e].length / PG; n++, pg++)
			bitmap[pg / 64] |= 1ULL << (pg % 64);
	}
	snap_file_close(&f);
}

/*
 * The chain ending in @file holds the VM's RAM as it is now, byte for byte (each page read
 * from its newest link, as a restore maps it and a merge writes it), and it restores (a
 * restore then writes a new VM generation ID into guest memory, so its RAM is not compared).
 */
static void chain_matches(const char *file)
{
	static uint8_t buf[PG];
	struct snap_chain c;
	struct snap_file f;
	struct config cfg2;
	struct vm v;
	char err[1024] = "";

	if (snap_file_open(&f, file, true, err, sizeof(err)) ||
	    snap_chain_open(&c, &f, file, true, err, sizeof(err)))
		fail_msg("%s", err);
	assert_true(c.nlinks >= 2);
	assert_int_equal(c.npages, vm.mem[0].size / PG);
	for (uint64_t pg = 0; pg < c.npages; pg++) {
		unsigned link = c.owner[pg];

		memset(buf, 0, PG);
		if (link != SNAP_NO_LINK) {
			const struct snap_file *l = c.file[link];

			assert_int_equal(pread(l->fd, buf, PG,
					       (off_t)(l->regions[0].file_offset + pg * PG)),
					 (ssize_t)PG);
		}
		if (memcmp(buf, (uint8_t *)vm.mem[0].hva + pg * PG, PG))
			fail_msg("%s: page %llu (from link %u) is not the VM's", file,
				 (unsigned long long)pg, link);
	}
	snap_chain_close(&c);
	snap_file_close(&f);
	memset(&v, 0, sizeof(v));
	base_config(&cfg2);
	config_unset(&cfg2, "boot.kernel");
	if (snap_restore(&v, &cfg2, file, false, err, sizeof(err)))
		fail_msg("restore of %s: %s", file, err);
	machine_destroy(&v);
	config_free(&cfg2);
}

/*
 * Take a live checkpoint to @path, write pages after it, take an incremental checkpoint
 * with the live file as its parent: accepted, it holds every page written since (and, with
 * @exact, those only: dirty-log pre-copy knows them exactly), and its chain restores to the
 * VM's memory.  Asked for while the live one is still being written, it is refused.
 */
static void live_then_incremental(bool exact)
{
	uint64_t bits[4096 / 64];
	struct snap_result res;
	char err[1024], next[200];

	scribble(SCRATCH, 100, 1);
	busy_parent = path;
	if (save_live(err, sizeof(err)))
		fail_msg("live checkpoint: %s", err);
	busy_parent = NULL;
	if (lreq.busy_ret != -EBUSY || !strstr(lreq.busy_err, "live checkpoint is being written"))
		fail_msg("an incremental checkpoint during a live one: %d '%s'", lreq.busy_ret,
			 lreq.busy_err);
	scribble(SCRATCH + 50, 10, 2);
	scribble(SCRATCH + 300, 3, 2);
	save_incremental("next.snap", path, next, sizeof(next), &res);
	assert_string_equal(res.parent, "vm.snap");
	file_pages(next, bits, sizeof(bits) / 8);
	for (uint64_t pg = 0; pg < vm.mem[0].size / PG; pg++) {
		bool want = (pg >= SCRATCH + 50 && pg < SCRATCH + 60) ||
			    (pg >= SCRATCH + 300 && pg < SCRATCH + 303);
		bool has = bits[pg / 64] >> (pg % 64) & 1;

		if (want && !has)
			fail_msg("page %llu was written after the live checkpoint and is not in "
				 "the incremental one",
				 (unsigned long long)pg);
		if (exact && has && !want)
			fail_msg("page %llu was not written after the live checkpoint and is in "
				 "the incremental one",
				 (unsigned long long)pg);
	}
	chain_matches(next);
}

/* Write protection (a booted VM). */
static void test_live_parent(void **state)
{
	NEED_KVM();
	live_then_incremental(false);
	assert_string_equal(lreq.res.method, "write-protect");
}

/* Dirty-log pre-copy (a restored VM). */
static void test_live_parent_restored(void **state)
{
	NEED_KVM();
	become_restored();
	live_then_incremental(true);
	assert_string_equal(lreq.res.method, "dirty-log");
}

/*
 * A live checkpoint that fails after its pause (the commit's fsync) leaves the last parent a
 * parent, and the pages written since it are not lost: the next incremental checkpoint of that
 * parent holds them and restores.
 */
static void live_fails_parent_stays(void)
{
	uint64_t bits[4096 / 64];
	struct snap_result res;
	char err[1024], lpath[200], next[200];

	snprintf(lpath, sizeof(lpath), "%s/live.snap", dir);
	scribble(SCRATCH, 20, 3);
	live_path = lpath;
	fi_reset();
	fi_any_thread();
	fi_fail(FI_FSYNC, 1, EIO);
	assert_int_equal(save_live(err, sizeof(err)), -EIO);
	fi_reset();
	live_path = NULL;
	assert_int_equal(access(lpath, F_OK), -1);
	save_incremental("next.snap", path, next, sizeof(next), &res);
	file_pages(next, bits, sizeof(bits) / 8);
	for (uint64_t pg = SCRATCH; pg < SCRATCH + 20; pg++)
		if (!(bits[pg / 64] >> (pg % 64) & 1))
			fail_msg("page %llu, written before the failed live checkpoint, is lost",
				 (unsigned long long)pg);
	chain_matches(next);
}

static void test_live_fails_parent_stays(void **state)
{
	char err[1024];

	NEED_KVM();
	if (save(err, sizeof(err)))
		fail_msg("checkpoint: %s", err);
	live_fails_parent_stays();
}

static void test_live_fails_parent_stays_restored(void **state)
{
	NEED_KVM();
	become_restored();
	live_fails_parent_stays();
}

/* ---- the checks of a restore, which need no KVM ---- */

/*
 * A chain of two authenticated files (tip at @path, its full parent beside it), naming a disk:
 * every part of a restore's checks has work to do (the chain, the MAC, the trust filter).
 */
static void write_chain_files(void)
{
	static const char disk[] = "\"pci.0.3.0.device\":\"virtio-blk\","
				   "\"pci.0.3.0.path\":\"/khyve-test-no-such-disk\"";
	struct snap_parent p = { .depth = 1, .name = "base.snap" };
	char base[200];

	fi_suspend(true);
	snprintf(base, sizeof(base), "%s/base.snap", dir);
	write_snap_at(base, &(struct spec){ .config = disk, .key = key, .id = p.id });
	write_snap_at(path, &(struct spec){ .config = disk, .key = key, .parent = &p });
	fi_suspend(false);
}

/* snap_restore with dump_config (its output dropped): 1 when every check passed. */
static int restore_checks(char *err, size_t errlen)
{
	struct config c;
	struct vm v;
	int ret, null, saved;

	fi_suspend(true);
	config_init(&c);
	assert_int_equal(config_set(&c, "snapshot.key", key), 0);
	fflush(stdout);
	saved = dup(STDOUT_FILENO);
	null = open("/dev/null", O_WRONLY);
	assert_true(saved >= 0 && null >= 0);
	dup2(null, STDOUT_FILENO);
	close(null);
	fi_suspend(false);
	memset(&v, 0, sizeof(v));
	err[0] = '\0';
	ret = snap_restore(&v, &c, path, true, err, errlen);
	fi_suspend(true);
	fflush(stdout);
	dup2(saved, STDOUT_FILENO);
	close(saved);
	config_free(&c);
	fi_suspend(false);
	return ret;
}

/*
 * Every allocation of a restore's checks failing in turn: refused with a message (never a
 * bare error, never a crash or a leak under ASan), or passed where the allocation was optional.
 */
static void test_restore_checks_alloc_sweep(void **state)
{
	static const enum fi_call kinds[] = { FI_MALLOC, FI_CALLOC, FI_REALLOC, FI_STRDUP };
	char err[2048];

	write_chain_files();
	assert_int_equal(restore_checks(err, sizeof(err)), 1);
	for (unsigned k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
		unsigned total;

		fi_reset();
		assert_int_equal(restore_checks(err, sizeof(err)), 1);
		total = fi_calls(kinds[k]);
		assert_true(total > 0);
		for (unsigned n = 1; n <= total; n++) {
			int ret;

			fi_reset();
			fi_fail(kinds[k], n, ENOMEM);
			ret = restore_checks(err, sizeof(err));
			if (ret != 1 && (ret >= 0 || !err[0]))
				fail_msg("allocation %u/%u failing: %d with no message", k, n, ret);
		}
	}
}

/* Each read of the files failing: refused, saying what could not be read. */
static void test_restore_checks_read_fails(void **state)
{
	static const enum fi_call kinds[] = { FI_PREAD, FI_OPEN, FI_OPENAT, FI_FSTAT };
	char err[2048];

	write_chain_files();
	for (unsigned k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
		unsigned total;

		fi_reset();
		assert_int_equal(restore_checks(err, sizeof(err)), 1);
		total = fi_calls(kinds[k]);
		for (unsigned n = 1; n <= total; n++) {
			int ret;

			fi_reset();
			fi_fail(kinds[k], n, EIO);
			ret = restore_checks(err, sizeof(err));
			if (!fi_all_fired())
				continue;
			if (ret != -EIO || !strstr(err, strerror(EIO)))
				fail_msg("call %u/%u failing: %d '%s'", k, n, ret, err);
		}
	}
}

/* A VM with no KVM behind it: saves fail at the clocks, after everything before them. */
static void bare_vm(struct vm *v, struct config *c)
{
	vm_init_bare(v, true);
	config_init(c);
	assert_int_equal(config_set(c, "snapshot.key", key), 0);
	assert_int_equal(config_set(c, "ctl.socket", "off"), 0);
	v->cfg = c;
	v->name = "bare";
}

static void bare_vm_free(struct vm *v, struct config *c)
{
	v->cfg = NULL;
	vm_destroy(v);
	config_free(c);
}

static void live_never_done(void *opaque, int ret, const struct snap_result *res, const char *err)
{
	fail_msg("a live checkpoint that never started reported %d (%s)", ret, err);
}

/*
 * Every allocation and the eventfd of a live checkpoint's start failing in turn, and every
 * allocation of a save up to the pause: refused with a message, nothing left behind (no
 * temporary file, the previous one untouched, no live checkpoint), the VM not paused.
 */
static void test_start_fails_without_kvm(void **state)
{
	static const enum fi_call kinds[] = { FI_MALLOC, FI_CALLOC, FI_REALLOC, FI_STRDUP,
					      FI_EVENTFD };
	struct snap_result res;
	struct config c;
	struct vm v;
	char err[1024];

	bare_vm(&v, &c);
	put_old();
	for (unsigned k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
		unsigned live, saves;

		fi_reset();
		err[0] = '\0';
		assert_int_equal(snap_save_live(&v, path, NULL, live_never_done, NULL, err,
						sizeof(err)),
				 -EBADF);
		live = fi_calls(kinds[k]);
		fi_reset();
		assert_int_equal(snap_save(&v, path, NULL, &res, err, sizeof(err)), -EBADF);
		saves = fi_calls(kinds[k]);
		for (unsigned n = 1; n <= live + saves; n++) {
			int ret;

			fi_reset();
			fi_fail(kinds[k], n <= live ? n : n - live,
				kinds[k] == FI_EVENTFD ? EMFILE : ENOMEM);
			err[0] = '\0';
			ret = n <= live ? snap_save_live(&v, path, NULL, live_never_done, NULL, err,
							 sizeof(err))
					: snap_save(&v, path, NULL, &res, err, sizeof(err));
			if (!ret || !err[0])
				fail_msg("call %u/%u failing: %d, no message", k, n, ret);
			if (!old_untouched() || v.live || v.paused)
				fail_msg("call %u/%u failing left something behind", k, n);
		}
	}
	fi_reset();
	fi_fail(FI_EVENTFD, 1, EMFILE);
	assert_int_equal(snap_save_live(&v, path, NULL, live_never_done, NULL, err, sizeof(err)),
			 -EMFILE);
	assert_non_null(strstr(err, "eventfd: "));
	fi_reset();
	bare_vm_free(&v, &c);
}

int main(void)

{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_save_restore, setup, teardown),
		cmocka_unit_test_setup_teardown(test_save_abs_paths, setup, teardown),
		cmocka_unit_test_setup_teardown(test_save_device_refuses, setup, teardown),
		cmocka_unit_test_setup_teardown(test_save_write_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_save_commit_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_save_ioctl_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_save_alloc_sweep, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restore_read_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restore_setup_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restore_alloc_sweep, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restore_options, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restore_dump_config, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pause_resume, setup, teardown),
		cmocka_unit_test_setup_teardown(test_suspend, setup, teardown),
		cmocka_unit_test_setup_teardown(test_live, setup, teardown),
		cmocka_unit_test_setup_teardown(test_live_restored, setup, teardown),
		cmocka_unit_test_setup_teardown(test_live_faults, setup, teardown),
		cmocka_unit_test_setup_teardown(test_live_parent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restore_checks_alloc_sweep, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restore_checks_read_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_start_fails_without_kvm, setup, teardown),
		cmocka_unit_test_setup_teardown(test_live_parent_restored, setup, teardown),
		cmocka_unit_test_setup_teardown(test_live_fails_parent_stays, setup, teardown),
		cmocka_unit_test_setup_teardown(test_live_fails_parent_stays_restored, setup,
						teardown),
	};

	have_kvm = access("/dev/kvm", R_OK | W_OK) == 0;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
