// SPDX-License-Identifier: BSD-2-Clause
/*
 * The snapshot orchestrator (snap/snapshot.c) where it needs no /dev/kvm: everything a restore
 * checks before a VM exists (options, the file, its chain, metadata, trust, the command line
 * against the saved configuration, every vCPU and VM section decoded), and the refusals of a
 * save, a live checkpoint and a pause that come before or instead of KVM's part.  Each refusal
 * says why, and leaves nothing behind: no temporary file, no paused VM.
 *
 * The snapshot files are written here with the real writer (snap/format.h): a VM of one vCPU
 * and 16 MiB, with the vCPU and VM sections of an all-zero state.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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

#include "arch/x86/cpustate.h"
#include "config.h"
#include "dev/dev.h"
#include "snap/format.h"
#include "snap/snapshot.h"
#include "snap/trust.h"
#include "sstream.h"
#include "vm.h"

#include "statesnap.h"
#include "testfiles.h"

#define MEMSZ STATESNAP_MEM

static char dir[64], path[160], key[160], otherkey[160];

static const char *at(const char *name)
{
	return testfile_at(dir, name);
}

static int setup(void **state)
{
	strcpy(dir, "/tmp/khyve-snap-XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/vm.snap", dir);
	snprintf(key, sizeof(key), "%s/key", dir);
	snprintf(otherkey, sizeof(otherkey), "%s/other.key", dir);
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd);
}

/* ---- writing snapshot files ---- */

/* A snapshot at the test's path (statesnap.h). */
static void write_snap(const struct spec *sp)
{
	write_snap_at(path, sp);
}

/* ---- restoring (never past the checks: dump_config, or a host without KVM) ---- */

/* A command line: the key at @key, fast verification, and @n more "key=value" pairs. */
static void cmdline(struct config *c, unsigned n, ...)
{
	va_list ap;

	config_init(c);
	assert_int_equal(config_set(c, "snapshot.key", key), 0);
	va_start(ap, n);
	for (unsigned i = 0; i < n; i++)
		assert_int_equal(config_set_pair(c, va_arg(ap, const char *)), 0);
	va_end(ap);
}

/* snap_restore with dump_config of @c (freed here): its result, the dump in @out. */
static int restore_dump(struct config *c, char *out, size_t outlen, char *err, size_t errlen)
{
	char tmp[200];
	struct vm vm;
	int fd, saved, ret;
	ssize_t n;

	snprintf(tmp, sizeof(tmp), "%s/dump", dir);
	fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	fflush(stdout);
	saved = dup(STDOUT_FILENO);
	assert_true(dup2(fd, STDOUT_FILENO) >= 0);
	memset(&vm, 0, sizeof(vm));
	err[0] = '\0';
	ret = snap_restore(&vm, c, path, true, err, errlen);
	fflush(stdout);
	assert_true(dup2(saved, STDOUT_FILENO) >= 0);
	close(saved);
	n = pread(fd, out, outlen - 1, 0);
	out[n > 0 ? n : 0] = '\0';
	close(fd);
	unlink(tmp);
	config_free(c);
	return ret;
}

/* The restore of @path with @c (freed here) must fail with @want, @err saying @needle. */
static void refused(struct config *c, int want, const char *needle)
{
	char out[4096], err[2048];
	int ret = restore_dump(c, out, sizeof(out), err, sizeof(err));

	if (ret != want)
		fail_msg("restore: %d (%s), want %d", ret, err, want);
	if (!strstr(err, needle))
		fail_msg("\"%s\" does not say \"%s\"", err, needle);
	assert_string_equal(out, "");
}

/* The checks pass: the merged configuration holds each of @n "key=value\n" lines. */
static void accepted(struct config *c, unsigned n, ...)
{
	char out[4096], err[2048];
	int ret = restore_dump(c, out, sizeof(out), err, sizeof(err));
	va_list ap;

	if (ret != 1)
		fail_msg("restore: %d (%s), want the configuration dumped", ret, err);
	va_start(ap, n);
	for (unsigned i = 0; i < n; i++) {
		const char *line = va_arg(ap, const char *);

		if (!strstr(out, line))
			fail_msg("the dump does not hold %s:\n%s", line, out);
	}
	va_end(ap);
}

static void test_restore_options(void **state)
{
	struct config c;

	write_snap(&(struct spec){ 0 });
	cmdline(&c, 1, "snapshot.verify=quick");
	refused(&c, -EINVAL, "snapshot.verify=quick: expected full or fast");
	cmdline(&c, 1, "snapshot.time=later");
	refused(&c, -EINVAL, "snapshot.time=later: expected frozen or catchup");
	cmdline(&c, 1, "snapshot.disk_changed=ignore");
	refused(&c, -EINVAL, "snapshot.disk_changed=ignore: expected refuse or accept");
	cmdline(&c, 1, "snapshot.prefetch=all");
	refused(&c, -EINVAL, "snapshot.prefetch=all: expected off, willneed, read or write");
	cmdline(&c, 1, "snapshot.trust=maybe");
	refused(&c, -EINVAL, "snapshot.trust=maybe: expected auto, file or none");
	/* Every accepted value of each. */
	cmdline(&c, 4, "snapshot.verify=fast", "snapshot.time=catchup",
		"snapshot.disk_changed=accept", "snapshot.prefetch=off");
	accepted(&c, 3, "cpus=1\n", "memory.size=16M\n", "snapshot.time=catchup\n");
	cmdline(&c, 3, "snapshot.verify=full", "snapshot.time=frozen",
		"snapshot.disk_changed=refuse");
	accepted(&c, 1, "snapshot.verify=full\n");
}

static void test_restore_bad_file(void **state)
{
	struct config c;

	cmdline(&c, 0);
	refused(&c, -ENOENT, "No such file or directory");
	write_snap(&(struct spec){ .chain = true });
	cmdline(&c, 0);
	refused(&c, -ENOENT, "its parent");
	write_snap(&(struct spec){ .meta = "{\"vcpus\":1}" });
	cmdline(&c, 0);
	refused(&c, -EINVAL, "metadata has no configuration");
	write_snap(&(struct spec){ .meta = "{\"vcpus\":2,\"config\":{}}" });
	cmdline(&c, 0);
	refused(&c, -EINVAL, "metadata: vcpus does not match the configuration");
}

/* Every section a VM needs is decoded before the VM is made: a bad one is refused, by name. */
static void test_restore_decode(void **state)
{
	struct config c;

	write_snap(&(struct spec){ .no_vm = true });
	cmdline(&c, 0);
	refused(&c, -EINVAL, "no state for the VM");
	write_snap(&(struct spec){ .cpu_version = CPUSTATE_VERSION + 1 });
	cmdline(&c, 0);
	refused(&c, -EINVAL, "section cpu0: vCPU state version 2 is not supported");
	write_snap(&(struct spec){ .short_vm = true });
	cmdline(&c, 0);
	refused(&c, -EINVAL, "section vm:");
}

/* What the command line may change (host and session keys) and what it must repeat exactly. */
static void test_restore_merge(void **state)
{
	struct config c;

	write_snap(&(struct spec){ .config = "\"x86.strictmsr\":\"true\"" });
	cmdline(&c, 1, "cpus=2");
	refused(&c, -EINVAL, "option cpus=2 does not match the snapshot (cpus=1)");
	cmdline(&c, 1, "rtc.use_localtime=true");
	refused(&c, -EINVAL,
		"option rtc.use_localtime=true is not in the snapshot's configuration");
	cmdline(&c, 1, "no.such.option=1");
	refused(&c, -EINVAL, "no.such.option");
	/* The same value is no change; a session key is the command line's. */
	cmdline(&c, 3, "cpus=1", "x86.strictmsr=true", "snapshot.time=catchup");
	accepted(&c, 3, "cpus=1\n", "x86.strictmsr=true\n", "snapshot.time=catchup\n");
}

/*
 * Host resources: from an unauthenticated file none is used, and the restore names the
 * options to give; from an authenticated one (or with snapshot.trust=file) they are kept.
 */
static void test_restore_trust(void **state)
{
	static const char *const disk = "\"pci.0.3.0.device\":\"virtio-blk\","
					"\"pci.0.3.0.path\":\"/khyve-test-no-such-disk\"";
	struct config c;

	write_snap(&(struct spec){ .config = disk });
	cmdline(&c, 0);
	refused(&c, -EPERM, "is not authenticated (it carries no MAC)");
	cmdline(&c, 0);
	refused(&c, -EPERM, "add -s 3,virtio-blk,PATH to the command line");
	cmdline(&c, 1, "snapshot.trust=none");
	refused(&c, -EPERM, "(snapshot.trust=none)");
	/* No key to check it with: the user named does not exist. */
	cmdline(&c, 1, "user=khyve-test-no-such-user");
	refused(&c, -EPERM, "user=khyve-test-no-such-user: no such user");
	/* The command line names the disk: the file's path is not used. */
	cmdline(&c, 1, "pci.0.3.0.path=/khyve-test-other-disk");
	accepted(&c, 2, "pci.0.3.0.path=/khyve-test-other-disk\n", "pci.0.3.0.device=virtio-blk\n");
	cmdline(&c, 1, "snapshot.trust=file");
	accepted(&c, 1, "pci.0.3.0.path=/khyve-test-no-such-disk\n");

	/* Authenticated with the key it was written with, and with no other. */
	write_snap(&(struct spec){ .config = disk, .key = key });
	cmdline(&c, 0);
	accepted(&c, 1, "pci.0.3.0.path=/khyve-test-no-such-disk\n");
	cmdline(&c, 0);
	assert_int_equal(config_set(&c, "snapshot.key", otherkey), 0);
	{
		struct snap_keyref ref = { .uid = geteuid() };
		uint8_t k[SNAP_KEY_BYTES];
		char err[512];

		snprintf(ref.path, sizeof(ref.path), "%s", otherkey);
		assert_int_equal(snap_key_load(&ref, true, k, err, sizeof(err)), 0);
	}
	refused(&c, -EPERM, "its MAC does not match the snapshot key");
	cmdline(&c, 1, "snapshot.trust=none");
	refused(&c, -EPERM, "(snapshot.trust=none)");
}

/* A trusted file's policy keys are kept, and then checked as the command line's would be. */
static void test_restore_saved_config_checked(void **state)
{
	struct config c;

	write_snap(&(struct spec){ .config = "\"snapshot.disks\":\"mirror\"", .key = key });
	cmdline(&c, 0);
	refused(&c, -EINVAL, "snapshot.disks=mirror: expected sync or clone");
	/* Untrusted, the policy is dropped (the default applies): no refusal. */
	write_snap(&(struct spec){ .config = "\"snapshot.disks\":\"mirror\"" });
	cmdline(&c, 0);
	accepted(&c, 1, "cpus=1\n");
}

/* Past the checks, the VM is made: on a host without KVM that is refused, and nothing runs. */
static void test_restore_without_kvm(void **state)
{
	struct config c;
	struct vm vm;
	char err[1024] = "";
	int ret;

	if (!access("/dev/kvm", F_OK))
		skip(); /* with KVM this would restore the VM (test_snapshot_faults does) */
	write_snap(&(struct spec){ 0 });
	cmdline(&c, 0);
	memset(&vm, 0, sizeof(vm));
	ret = snap_restore(&vm, &c, path, false, err, sizeof(err));
	if (ret >= 0 || !strstr(err, "/dev/kvm"))
		fail_msg("restore without KVM: %d (%s)", ret, err);
	/* The command line became the merged configuration, the caller's to free. */
	assert_string_equal(config_get(&c, "cpus"), "1");
	assert_string_equal(config_get(&c, "snapshot.key"), key);
	config_free(&c);
}

/* ---- saving and pausing a VM with no KVM behind it ---- */

struct fakedev {
	struct dev d;
	int pause_ret;
	unsigned paused, resumed;
};

static int fake_pause(struct dev *d)
{
	struct fakedev *f = container_of(d, struct fakedev, d);

	f->paused++;
	return f->pause_ret;
}

static int fake_resume(struct dev *d)
{
	container_of(d, struct fakedev, d)->resumed++;
	return 0;
}

static int fake_save(struct dev *d, struct sstream *s)
{
	fail_msg("device %s saved", d->id);
	return -EIO;
}

static const struct dev_ops fake_ops = {
	.name = "fake", .version = 1, .pause = fake_pause, .resume = fake_resume, .save = fake_save
};

struct fx {
	struct vm vm;
	struct config cfg;
	struct fakedev a, b;
};

static int vm_setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	setup(state);
	vm_init_bare(&f->vm, true);
	config_init(&f->cfg);
	assert_int_equal(config_set(&f->cfg, "snapshot.key", key), 0);
	assert_int_equal(config_set(&f->cfg, "ctl.socket", "off"), 0);
	f->vm.cfg = &f->cfg;
	f->vm.name = "snapvm";
	f->a = (struct fakedev){ .d = { .ops = &fake_ops, .id = "a" } };
	f->b = (struct fakedev){ .d = { .ops = &fake_ops, .id = "b" } };
	f->a.d.next = &f->b.d;
	f->vm.devs = &f->a.d;
	*state = f;
	return 0;
}

static int vm_teardown(void **state)
{
	struct fx *f = *state;

	f->vm.devs = NULL;
	f->vm.live = NULL;
	f->vm.migration = NULL;
	f->vm.cfg = NULL;
	vm_destroy(&f->vm);
	config_free(&f->cfg);
	free(f);
	return teardown(state);
}

/* Entries in the test directory other than the key. */
static unsigned dir_files(void)
{
	return testfile_count(dir, (const char *const[]){ "key", NULL }, NULL);
}

static void test_pause_resume(void **state)
{
	struct fx *f = *state;
	char err[256] = "";

	assert_int_equal(snap_resume_vm(&f->vm, err, sizeof(err)), -EALREADY);
	assert_string_equal(err, "the VM is not paused");
	assert_int_equal(snap_pause_vm(&f->vm, err, sizeof(err)), 0);
	assert_true(f->vm.paused);
	assert_int_equal(f->a.paused + f->b.paused, 2);
	assert_int_equal(snap_pause_vm(&f->vm, err, sizeof(err)), -EALREADY);
	assert_string_equal(err, "the VM is already paused");
	assert_int_equal(f->a.paused + f->b.paused, 2);
	assert_int_equal(snap_resume_vm(&f->vm, err, sizeof(err)), 0);
	assert_false(f->vm.paused);
	assert_int_equal(f->a.resumed + f->b.resumed, 2);
	assert_non_null(snap_live_refusal(&(struct vm){ .paused = true }));
	assert_null(snap_live_refusal(&f->vm));
}

/* A device that cannot pause: those paused before it run again, and so does the VM. */
static void test_pause_device_fails(void **state)
{
	struct fx *f = *state;
	char err[256] = "";

	f->b.pause_ret = -EIO;
	assert_int_equal(snap_pause_vm(&f->vm, err, sizeof(err)), -EIO);
	assert_string_equal(err, "pausing device b: Input/output error");
	assert_false(f->vm.paused);
	assert_int_equal(f->a.paused, 1);
	assert_int_equal(f->a.resumed, 1);
	assert_int_equal(f->b.resumed, 0);
}

/* A live checkpoint or migration under way: no pause, no save of any kind. */
static void test_busy(void **state)
{
	struct fx *f = *state;
	struct snap_result res;
	struct snap_writer w;
	char err[256] = "";

	f->vm.live = (struct live_save *)1;
	assert_int_equal(snap_pause_vm(&f->vm, err, sizeof(err)), -EBUSY);
	assert_string_equal(err, "a live checkpoint is being written; wait for its reply");
	assert_int_equal(snap_save(&f->vm, path, NULL, &res, err, sizeof(err)), -EBUSY);
	assert_int_equal(snap_save_live(&f->vm, path, NULL, NULL, NULL, err, sizeof(err)), -EBUSY);
	f->vm.live = NULL;
	f->vm.migration = (struct mig_live *)1;
	snap_writer_open_sink(&w, MEMSZ, NULL, NULL);
	assert_int_equal(snap_save_stream(&f->vm, &w, NULL, NULL, NULL, &res, err, sizeof(err)),
			 -EBUSY);
	assert_string_equal(err, "a live migration is under way; wait for its reply");
	assert_int_equal(snap_save(&f->vm, path, NULL, &res, err, sizeof(err)), -EBUSY);
	assert_string_equal(err, "a live migration is under way; wait for its reply");
	assert_false(f->vm.paused);
	assert_int_equal(f->a.paused, 0);
	assert_int_equal(dir_files(), 0);
}

static void save_refused(struct fx *f, const struct snap_save_opts *o, int want, const char *needle)
{
	struct snap_result res;
	char err[1024] = "";
	int ret = snap_save(&f->vm, path, o, &res, err, sizeof(err));

	if (ret != want)
		fail_msg("save: %d (%s), want %d", ret, err, want);
	if (!strstr(err, needle))
		fail_msg("\"%s\" does not say \"%s\"", err, needle);
}

/* Refusals before the guest pauses: it never stops for a save that cannot work. */
static void test_save_refused_before_pause(void **state)
{
	struct fx *f = *state;

	save_refused(f, &(struct snap_save_opts){ .incremental = true }, -EINVAL,
		     "an incremental checkpoint needs a parent, and this VM has none");
	save_refused(f, &(struct snap_save_opts){ .parent = "base.snap" }, -EINVAL,
		     "take a full checkpoint first");
	assert_int_equal(mkdir(path, 0700), 0);
	save_refused(f, NULL, -EISDIR, "a directory");
	assert_int_equal(rmdir(path), 0);
	/* A key another user could replace is no key to sign with. */
	assert_int_equal(mkdir(at("pub"), 0700), 0);
	assert_int_equal(chmod(at("pub"), 0777), 0);
	assert_int_equal(config_set(&f->cfg, "snapshot.key", at("pub/key")), 0);
	save_refused(f, NULL, -EPERM, "is writable by others");
	assert_int_equal(dir_files(), 1); /* pub/ only: no temporary file */
	assert_int_equal(f->a.paused, 0);
	assert_false(f->vm.paused);
}

static void put_old(void)
{
	testfile_put_old(path);
}

/* The file at the path is the one put there, and nothing else is in the directory. */
static void old_untouched(void)
{
	testfile_check_old(path);
	assert_int_equal(dir_files(), 1);
}

/*
 * Reading the clocks is the first thing a save does with the VM paused: when KVM cannot (here
 * there is no KVM VM), the save fails with the reason, the previous file stays, no temporary
 * file is left, and the VM is as it was (running, or paused by a request).
 */
static void test_save_clocks_fail(void **state)
{
	struct fx *f = *state;
	char err[256] = "";

	put_old();
	save_refused(f, NULL, -EBADF, "reading the KVM clock: Bad file descriptor");
	old_untouched();
	assert_false(f->vm.paused);
	assert_int_equal(f->a.paused, 0);
	assert_int_equal(snap_pause_vm(&f->vm, err, sizeof(err)), 0);
	save_refused(f, NULL, -EBADF, "reading the KVM clock");
	old_untouched();
	assert_true(f->vm.paused);
	assert_int_equal(f->a.resumed, 0);
}

static int no_sink(void *opaque, const struct snap_section *sec, uint64_t offset, const void *buf,
		   uint64_t len)
{
	fail_msg("a stream that never paused wrote %llu bytes", (unsigned long long)len);
	return -EIO;
}

static void test_stream_clocks_fail(void **state)
{
	struct fx *f = *state;
	struct snap_result res;
	struct snap_writer w;
	char err[256] = "";

	snap_writer_open_sink(&w, MEMSZ, no_sink, NULL);
	assert_int_equal(snap_save_stream(&f->vm, &w, NULL, NULL, NULL, &res, err, sizeof(err)),
			 -EBADF);
	assert_string_equal(err, "reading the KVM clock: Bad file descriptor");
	assert_false(f->vm.paused);
	assert_int_equal(f->a.paused, 0);
}

static void never_done(void *opaque, int ret, const struct snap_result *res, const char *err)
{
	fail_msg("a live checkpoint that did not start reported %d (%s)", ret, err);
}

static void live_refused(struct fx *f, int want, const char *needle)
{
	char err[1024] = "";
	int ret = snap_save_live(&f->vm, path, NULL, never_done, NULL, err, sizeof(err));

	if (ret != want)
		fail_msg("live: %d (%s), want %d", ret, err, want);
	if (!strstr(err, needle))
		fail_msg("\"%s\" does not say \"%s\"", err, needle);
	assert_null(f->vm.live);
}

static void test_live_refused(void **state)
{
	struct fx *f = *state;
	char err[256] = "";

	put_old();
	assert_int_equal(snap_pause_vm(&f->vm, err, sizeof(err)), 0);
	live_refused(f, -EALREADY, "the VM is paused: checkpoint it without --live");
	assert_int_equal(snap_resume_vm(&f->vm, err, sizeof(err)), 0);
	assert_int_equal(config_set(&f->cfg, "snapshot.key", at("nodir/key")), 0);
	live_refused(f, -ENOENT, "snapshot key directory");
	old_untouched();
	assert_int_equal(config_set(&f->cfg, "snapshot.key", key), 0);
	/* Started, and failed in its pause: the guest runs on, the file goes. */
	live_refused(f, -EBADF, "reading the KVM clock");
	old_untouched();
	assert_false(f->vm.paused);
}

static const struct dev_ops bare_ops = { .name = "bare", .version = 1 };

/*
 * A device with no pause or resume of its own needs none; a migration in its final pause is
 * the one that pauses (snap_save_stream), so it is no reason to refuse.
 */
static void test_pause_bare_device(void **state)
{
	struct fx *f = *state;
	struct dev bare = { .ops = &bare_ops, .id = "bare" };
	char err[256] = "";

	f->b.d.next = &bare;
	f->vm.migration = (struct mig_live *)1;
	f->vm.migration_final = true;
	assert_int_equal(snap_pause_vm(&f->vm, err, sizeof(err)), 0);
	assert_int_equal(f->b.paused, 1);
	assert_int_equal(snap_resume_vm(&f->vm, err, sizeof(err)), 0);
	assert_int_equal(f->b.resumed, 1);
	/* The first device fails to pause; the bare one after it is never reached. */
	f->a.pause_ret = -EAGAIN;
	assert_int_equal(snap_pause_vm(&f->vm, err, sizeof(err)), -EAGAIN);
	assert_int_equal(f->b.paused, 1);
	f->a.pause_ret = 0;
	/* A bare device first: those after it still pause, and resume when one fails. */
	f->b.d.next = NULL;
	bare.next = &f->a.d;
	f->vm.devs = &bare;
	f->b.pause_ret = -EIO;
	assert_int_equal(snap_pause_vm(&f->vm, err, sizeof(err)), -EIO);
	assert_int_equal(f->a.resumed, 2); /* once after the first pause, once now */
	assert_false(f->vm.paused);
}

/*
 * snapshot.direct (on, off, or a value the VM's build refused) changes how memory is written,
 * never whether a save starts; with no room for a message, none is written.
 */
static void test_save_options(void **state)
{
	struct fx *f = *state;
	struct snap_result res;
	char err[64];

	put_old();
	config_set(&f->cfg, "snapshot.direct", "off");
	save_refused(f, NULL, -EBADF, "reading the KVM clock");
	config_set(&f->cfg, "snapshot.direct", "sideways");
	save_refused(f, NULL, -EBADF, "reading the KVM clock");
	old_untouched();
	strcpy(err, "unchanged");
	assert_int_equal(snap_save(&f->vm, path, NULL, &res, err, 0), -EBADF);
	assert_string_equal(err, "unchanged");
	old_untouched();
	{
		struct snap_writer w;

		snap_writer_open_sink(&w, MEMSZ, no_sink, NULL);
		assert_int_equal(snap_save_stream(&f->vm, &w, NULL, NULL, NULL, &res, err, 0),
				 -EBADF);
		assert_string_equal(err, "unchanged");
	}
	assert_false(f->vm.paused);
}

/* A restore with no room for a message still refuses, and writes none. */
static void test_restore_no_message_room(void **state)
{
	char err[64] = "unchanged";
	struct config c;
	struct vm vm;

	cmdline(&c, 1, "snapshot.verify=quick");
	memset(&vm, 0, sizeof(vm));
	assert_int_equal(snap_restore(&vm, &c, path, false, err, 0), -EINVAL);
	assert_string_equal(err, "unchanged");
	config_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_restore_options, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restore_bad_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restore_decode, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restore_merge, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restore_trust, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restore_saved_config_checked, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restore_without_kvm, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pause_resume, vm_setup, vm_teardown),
		cmocka_unit_test_setup_teardown(test_pause_device_fails, vm_setup, vm_teardown),
		cmocka_unit_test_setup_teardown(test_busy, vm_setup, vm_teardown),
		cmocka_unit_test_setup_teardown(test_save_refused_before_pause, vm_setup,
						vm_teardown),
		cmocka_unit_test_setup_teardown(test_save_clocks_fail, vm_setup, vm_teardown),
		cmocka_unit_test_setup_teardown(test_stream_clocks_fail, vm_setup, vm_teardown),
		cmocka_unit_test_setup_teardown(test_live_refused, vm_setup, vm_teardown),
		cmocka_unit_test_setup_teardown(test_pause_bare_device, vm_setup, vm_teardown),
		cmocka_unit_test_setup_teardown(test_save_options, vm_setup, vm_teardown),
		cmocka_unit_test_setup_teardown(test_restore_no_message_room, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
