// SPDX-License-Identifier: BSD-2-Clause
/*
 * Disks in snapshots under host failures (tests/faultinj.h): an fsync that fails, a copy that
 * runs out of space or comes in pieces.  A failed disk save names the disk and what failed and
 * leaves no copy behind; a copy made in pieces is the image, byte for byte.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
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
#include "faultinj.h"
#include "snap/disks.h"
#include "sstream.h"
#include "vm.h"

#define IMG_SIZE (256 * 1024)

static char dir[64], snap[128];
static struct vm_disk disk[2];
static struct vm vm;
static struct config cfg;

/* Two images with data at the start, in the middle (after a hole) and at the end. */
static void make_image(struct vm_disk *d, const char *name, const char *id, uint8_t fill)
{
	uint8_t buf[8192];

	memset(d, 0, sizeof(*d));
	memset(buf, fill, sizeof(buf));
	snprintf(d->path, sizeof(d->path), "%s/%s", dir, name);
	d->fd = open(d->path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(d->fd >= 0);
	assert_int_equal(pwrite(d->fd, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	assert_int_equal(pwrite(d->fd, buf, sizeof(buf), 100 * 1024), (ssize_t)sizeof(buf));
	assert_int_equal(pwrite(d->fd, buf, 100, IMG_SIZE - 100), 100);
	snprintf(d->id, sizeof(d->id), "%s", id);
	snprintf(d->cfg_key, sizeof(d->cfg_key), "%s.path", id);
}

static int setup(void **state)
{
	strcpy(dir, "/tmp/khyve-diskf-XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(snap, sizeof(snap), "%s/s.snap", dir);
	make_image(&disk[0], "a.img", "pci.0.3.0", 0x11);
	make_image(&disk[1], "b.img", "pci.0.4.0", 0x22);
	disk[0].next = &disk[1];
	memset(&vm, 0, sizeof(vm));
	vm.disks = &disk[0];
	config_init(&cfg);
	fi_reset();
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];

	fi_reset();
	config_free(&cfg);
	close(disk[0].fd);
	close(disk[1].fd);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd);
}

static unsigned dir_entries(void)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	unsigned n = 0;

	assert_non_null(d);
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

static void expect_same_file(const char *a, const char *b)
{
	static uint8_t x[IMG_SIZE], y[IMG_SIZE];
	int fa = open(a, O_RDONLY), fb = open(b, O_RDONLY);
	struct stat st;

	assert_true(fa >= 0 && fb >= 0);
	assert_int_equal(fstat(fb, &st), 0);
	assert_int_equal(st.st_size, IMG_SIZE);
	assert_int_equal(pread(fa, x, sizeof(x), 0), IMG_SIZE);
	assert_int_equal(pread(fb, y, sizeof(y), 0), IMG_SIZE);
	assert_memory_equal(x, y, IMG_SIZE);
	close(fa);
	close(fb);
}

/* fsync of the second disk fails: the error names it and says fsync. */
static void test_sync_fsync_fails(void **state)
{
	struct snap_disks sd;
	char err[512] = "";

	fi_fail(FI_FSYNC, 2, EIO);
	assert_int_equal(snap_disks_save(&vm, snap, false, &cfg, &sd, err, sizeof(err)), -EIO);
	assert_true(fi_all_fired());
	assert_non_null(strstr(err, "disk pci.0.4.0"));
	assert_non_null(strstr(err, "fsync"));
	assert_non_null(strstr(err, strerror(EIO)));
	assert_int_equal(sd.n, 0);
	assert_null(sd.rec);
	/* The first disk's fstat failing likewise. */
	fi_reset();
	fi_fail(FI_FSTAT, 1, EIO);
	assert_int_equal(snap_disks_save(&vm, snap, false, &cfg, &sd, err, sizeof(err)), -EIO);
	assert_non_null(strstr(err, "disk pci.0.3.0"));
	assert_int_equal(dir_entries(), 2);
}

/*
 * With snapshot.disks=clone, the copy of the second disk runs out of space (or its fsync, or
 * the copy's creation, fails): no copy of either disk is left beside the snapshot.
 */
static void test_clone_fails_leaves_no_copy(void **state)
{
	static const struct {
		enum fi_call call;
		unsigned nth;
		int err;
	} faults[] = {
		/* each image has 3 data extents: the 4th copy is the second image's first */
		{ FI_COPY_FILE_RANGE, 4, ENOSPC },
		{ FI_COPY_FILE_RANGE, 6, EIO },
		{ FI_FTRUNCATE, 2, EFBIG },
		{ FI_LSEEK, 1, EIO },
		{ FI_LSEEK, 2, EIO }, /* where the first data extent ends */
		/* image 1, its copy, image 2, its copy */
		{ FI_FSYNC, 4, EIO },
		{ FI_FSYNC, 3, EIO },
		{ FI_OPEN, 2, EACCES },
	};

	for (unsigned i = 0; i < sizeof(faults) / sizeof(faults[0]); i++) {
		struct snap_disks sd;
		char err[512] = "";
		int ret;

		fi_reset();
		/* The data copy, also where the filesystem could reflink. */
		fi_ioctl_fail_from(FICLONE, 1, EOPNOTSUPP);
		fi_fail(faults[i].call, faults[i].nth, faults[i].err);
		ret = snap_disks_save(&vm, snap, true, &cfg, &sd, err, sizeof(err));
		if (ret != -faults[i].err)
			fail_msg("fault %u: %d (%s)", i, ret, err);
		assert_true(fi_all_fired());
		assert_non_null(strstr(err, "copying it to"));
		assert_non_null(strstr(err, strerror(faults[i].err)));
		/* Only the two images: every copy made before the failure is gone too. */
		if (dir_entries() != 2)
			fail_msg("fault %u left %u files", i, dir_entries());
		assert_int_equal(sd.n, 0);
	}
}

/* A copy made in short pieces (or interrupted) is still the whole image. */
static void test_clone_short_copies(void **state)
{
	struct snap_disks sd;
	char err[512] = "";

	fi_ioctl_fail_from(FICLONE, 1, EOPNOTSUPP);
	for (unsigned n = 1; n <= 3; n++)
		fi_short(FI_COPY_FILE_RANGE, n);
	assert_int_equal(snap_disks_save(&vm, snap, true, &cfg, &sd, err, sizeof(err)), 0);
	assert_true(fi_all_fired());
	assert_int_equal(sd.n, 2);
	expect_same_file(disk[0].path, sd.rec[0].path);
	expect_same_file(disk[1].path, sd.rec[1].path);
	assert_true(sd.rec[0].copy && sd.rec[1].copy);
	snap_disks_abort(&sd);
	snap_disks_free(&sd);
	assert_int_equal(dir_entries(), 2);
}

/* The records cannot be allocated: an error, nothing recorded. */
static void test_alloc_fails(void **state)
{
	struct snap_disks sd;
	char err[512] = "";

	fi_fail(FI_CALLOC, 1, ENOMEM);
	assert_int_equal(snap_disks_save(&vm, snap, true, &cfg, &sd, err, sizeof(err)), -ENOMEM);
	assert_int_equal(dir_entries(), 2);
	assert_int_equal(sd.n, 0);
}

/*
 * The copy is made but its path cannot be put in the saved configuration: an error, and the
 * copy goes (nothing would refer to it).
 */
static void test_record_path_fails(void **state)
{
	struct snap_disks sd;
	char err[512] = "";

	fi_ioctl_fail_from(FICLONE, 1, EOPNOTSUPP);
	fi_fail(FI_STRDUP, 1, ENOMEM);
	assert_int_equal(snap_disks_save(&vm, snap, true, &cfg, &sd, err, sizeof(err)), -ENOMEM);
	assert_true(fi_all_fired());
	assert_int_equal(dir_entries(), 2);
	assert_int_equal(sd.n, 0);
}

/* A disks section read back with no memory for its records: an error that says so. */
static void test_decode_alloc_fails(void **state)
{
	struct snap_disks sd, back;
	struct sstream s;
	char err[512] = "";

	assert_int_equal(snap_disks_save(&vm, snap, false, &cfg, &sd, err, sizeof(err)), 0);
	ss_init_save(&s);
	assert_int_equal(snap_disks_encode(&sd, &s), 0);
	fi_fail(FI_CALLOC, 1, ENOMEM);
	assert_int_equal(snap_disks_decode(s.buf, s.len, &back, err, sizeof(err)), -ENOMEM);
	assert_true(fi_all_fired());
	assert_string_equal(err, "disks section: out of memory");
	assert_null(back.rec);
	fi_reset();
	assert_int_equal(snap_disks_decode(s.buf, s.len, &back, err, sizeof(err)), 0);
	assert_int_equal(back.n, 2);
	snap_disks_free(&back);
	ss_free(&s);
	snap_disks_free(&sd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_sync_fsync_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_clone_fails_leaves_no_copy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_clone_short_copies, setup, teardown),
		cmocka_unit_test_setup_teardown(test_alloc_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_record_path_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_decode_alloc_fails, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
