// SPDX-License-Identifier: BSD-2-Clause
/*
 * The checkpoint target (snap/target.c), checked before the guest pauses: only a new name or
 * a regular file the VM does not use is replaced; every other kind of file, the VM's disks,
 * console logs and control socket, a missing or non-directory parent are refused, by name.
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
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/statvfs.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "snap/disks.h"
#include "snap/target.h"
#include "testfiles.h"
#include "vm.h"

static char dir[64];

static const char *at(const char *name)
{
	return testfile_at(dir, name);
}

static void touch(const char *p)
{
	int fd = open(p, O_CREAT | O_WRONLY | O_TRUNC, 0644);

	assert_true(fd >= 0);
	close(fd);
}

struct fx {
	struct vm vm;
	struct config cfg;
	struct vm_disk disk;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	char kv[200];

	strcpy(dir, "/tmp/khyve-target-XXXXXX");
	assert_non_null(mkdtemp(dir));
	vm_init_bare(&f->vm, true);
	config_init(&f->cfg);
	f->vm.cfg = &f->cfg;
	f->vm.name = "tvm";
	snprintf(kv, sizeof(kv), "file:%s", at("com2.log"));
	config_set(&f->cfg, "lpc.com2.path", kv);
	config_set(&f->cfg, "ctl.socket", at("tvm.sock"));
	touch(at("com2.log"));
	touch(at("disk.img"));
	f->disk.fd = open(at("disk.img"), O_RDWR);
	assert_true(f->disk.fd >= 0);
	snprintf(f->disk.id, sizeof(f->disk.id), "pci@0.3.0");
	f->vm.disks = &f->disk;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	char cmd[128];

	close(f->disk.fd);
	f->vm.disks = NULL;
	f->vm.cfg = NULL;
	vm_destroy(&f->vm);
	config_free(&f->cfg);
	free(f);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd);
}

static void refused(struct fx *f, const char *path, int want, const char *needle)
{
	char err[512] = "";
	int ret = snap_target_check(&f->vm, path, err, sizeof(err));

	if (ret != want)
		fail_msg("%s: %d (%s), want %d", path, ret, err, want);
	if (!strstr(err, needle))
		fail_msg("%s: \"%s\" does not say \"%s\"", path, err, needle);
}

static void accepted(struct fx *f, const char *path)
{
	char err[512] = "";

	if (snap_target_check(&f->vm, path, err, sizeof(err)))
		fail_msg("%s refused: %s", path, err);
}

static void test_new_and_regular(void **state)
{
	struct fx *f = *state;

	accepted(f, at("new.snap"));
	touch(at("old.snap"));
	accepted(f, at("old.snap"));
	/* A relative name, in the current directory. */
	assert_int_equal(chdir(dir), 0);
	accepted(f, "rel.snap");
	accepted(f, "/tmp/../tmp/x-khyve-target-not-there.snap");
	assert_int_equal(chdir("/"), 0);
}

static void test_not_a_file(void **state)
{
	struct fx *f = *state;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int s;

	refused(f, "", -EINVAL, "names no file");
	refused(f, at("sub/"), -EINVAL, "names no file");
	assert_int_equal(mkdir(at("d"), 0755), 0);
	refused(f, at("d"), -EISDIR, "a directory");
	assert_int_equal(symlink(at("old"), at("link")), 0);
	refused(f, at("link"), -EINVAL, "a symbolic link");
	assert_int_equal(mkfifo(at("fifo"), 0600), 0);
	refused(f, at("fifo"), -EINVAL, "a FIFO");
	refused(f, "/dev/null", -EINVAL, "a character device");
	s = socket(AF_UNIX, SOCK_STREAM, 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", at("other.sock"));
	assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
	refused(f, at("other.sock"), -EINVAL, "a socket");
	close(s);
}

static void test_used_by_the_vm(void **state)
{
	struct fx *f = *state;

	refused(f, at("disk.img"), -EBUSY, "the disk image of pci@0.3.0");
	refused(f, at("com2.log"), -EBUSY, "the COM2 log file");
	/* Its control socket, present or not (a VM may run on after it was removed). */
	refused(f, at("tvm.sock"), -EINVAL, "control socket");
	config_set(&f->cfg, "ctl.socket", "off");
	accepted(f, at("tvm.sock"));
	/* Another name for the disk is the same file. */
	assert_int_equal(link(at("disk.img"), at("hard.img")), 0);
	refused(f, at("hard.img"), -EBUSY, "the disk image");
}

static void test_directory(void **state)
{
	struct fx *f = *state;

	refused(f, at("nodir/x.snap"), -ENOENT, "does not exist");
	touch(at("plain"));
	refused(f, at("plain/x.snap"), -ENOTDIR, "Not a directory");
	/* The root directory as parent. */
	accepted(f, "/khyve-target-test-not-there.snap");
}

/*
 * Guest RAM larger than the directory's free space is no refusal by itself: a save stores
 * only the pages in use, so only those are counted against the space (here a few).
 */
static void test_room_for_touched_pages(void **state)
{
	struct fx *f = *state;
	struct statvfs fs;
	uint64_t size;
	uint8_t *p;

	assert_int_equal(statvfs(dir, &fs), 0);
	if (!fs.f_blocks)
		skip(); /* a filesystem that does not say how much it has */
	size = ((uint64_t)fs.f_bavail * fs.f_frsize + (1ULL << 30)) & ~((1ULL << 21) - 1);
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		 -1, 0);
	assert_true(p != MAP_FAILED);
	memset(p, 1, 3 * 4096);
	memset(p + size - 4096, 2, 4096);
	f->vm.mem[0] = (struct mem_region){ 0, size, p, 0 };
	f->vm.nmem = 1;
	accepted(f, at("big.snap"));
	f->vm.nmem = 0;
	munmap(p, size);
}

/* A block device is refused by kind, like every other non-regular file. */
static void test_block_device(void **state)
{
	struct fx *f = *state;
	struct stat st;

	if (stat("/dev/loop0", &st) || !S_ISBLK(st.st_mode))
		skip(); /* no block device to point at */
	refused(f, "/dev/loop0", -EINVAL, "a block device");
}

/*
 * What the VM uses, when parts of it are missing: a disk whose descriptor is gone, a console
 * that is no file or whose log file is gone, no control socket configured (the default path).
 */
static void test_used_partly_missing(void **state)
{
	struct fx *f = *state;
	struct vm_disk gone = { .fd = -1, .id = "pci@0.4.0" };
	char kv[200];

	gone.next = f->vm.disks;
	f->vm.disks = &gone;
	config_set(&f->cfg, "lpc.com1.path", "stdio");
	snprintf(kv, sizeof(kv), "file:%s", at("gone.log"));
	config_set(&f->cfg, "lpc.com3.path", kv);
	config_unset(&f->cfg, "ctl.socket");
	touch(at("old.snap"));
	accepted(f, at("old.snap"));
	refused(f, at("disk.img"), -EBUSY, "the disk image of pci@0.3.0");
	refused(f, at("com2.log"), -EBUSY, "the COM2 log file");
	/* A VM with no configuration at all. */
	f->vm.cfg = NULL;
	accepted(f, at("old.snap"));
	refused(f, at("disk.img"), -EBUSY, "the disk image of pci@0.3.0");
	f->vm.cfg = &f->cfg;
	f->vm.disks = gone.next;
}

/* A path that cannot be made absolute; a filesystem that says nothing of its free space. */
static void test_path_limits(void **state)
{
	struct fx *f = *state;
	char longp[5000];

	memset(longp, 'p', sizeof(longp) - 1);
	longp[0] = '/';
	longp[sizeof(longp) - 1] = '\0';
	refused(f, longp, -ENAMETOOLONG, "checkpoint target /ppp");
	accepted(f, "/proc/khyve-target-test.snap");
}

/*
 * A control socket path that cannot be (an empty ctl.socket, a VM with no name and none
 * configured) names no file: nothing is refused as the socket.
 */
static void test_no_socket_path(void **state)
{
	struct fx *f = *state;

	touch(at("tvm.sock"));
	config_set(&f->cfg, "ctl.socket", "");
	accepted(f, at("tvm.sock"));
	config_unset(&f->cfg, "ctl.socket");
	f->vm.name = NULL;
	accepted(f, at("tvm.sock"));
	f->vm.name = "tvm";
}

/* Paths are made absolute against the current directory, "./" dropped, and never cut. */
static void test_abs_path(void **state)
{
	char out[64], cwd[4096], want[4200];

	assert_int_equal(snap_abs_path("/a/b", out, sizeof(out)), 0);
	assert_string_equal(out, "/a/b");
	assert_int_equal(chdir("/"), 0);
	assert_int_equal(snap_abs_path("./././x.snap", out, sizeof(out)), 0);
	assert_string_equal(out, "/x.snap");
	assert_int_equal(chdir("/tmp"), 0);
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	snprintf(want, sizeof(want), "%s/y.snap", cwd);
	assert_int_equal(snap_abs_path("./y.snap", out, sizeof(out)), 0);
	assert_string_equal(out, want);
	assert_int_equal(snap_abs_path("y.snap", out, 8), -ENAMETOOLONG);
	assert_int_equal(snap_abs_path("/abcdefgh", out, 8), -ENAMETOOLONG);
	assert_int_equal(chdir("/"), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_new_and_regular, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_a_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_used_by_the_vm, setup, teardown),
		cmocka_unit_test_setup_teardown(test_directory, setup, teardown),
		cmocka_unit_test_setup_teardown(test_room_for_touched_pages, setup, teardown),
		cmocka_unit_test(test_abs_path),
		cmocka_unit_test_setup_teardown(test_block_device, setup, teardown),
		cmocka_unit_test_setup_teardown(test_used_partly_missing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_path_limits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_socket_path, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
