// SPDX-License-Identifier: BSD-2-Clause
/*
 * The host key (snap/trust.h) under host failures (tests/faultinj.h): creating it fails at
 * each step (no file, a failed or short write, fsync, no hard links, no rename), reading it
 * fails or comes short, looking at it or its directory fails.  Each is an error that says what
 * failed, no half-made key or temporary file stays, and the next try makes a good key.
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

#include "config.h"
#include "faultinj.h"
#include "snap/format.h"
#include "snap/trust.h"

static char dir[64];
static unsigned nkey; /* the key is cached per path: each try gets a path of its own */

static int setup(void **state)
{
	strcpy(dir, "/tmp/khyve-trustf-XXXXXX");
	assert_non_null(mkdtemp(dir));
	fi_reset();
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];

	fi_reset();
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

/* A fresh key path in the directory. */
static void new_ref(struct snap_keyref *ref)
{
	struct config c;
	char p[128], err[256];

	snprintf(p, sizeof(p), "%s/key%u", dir, nkey++);
	config_init(&c);
	assert_int_equal(config_set(&c, "snapshot.key", p), 0);
	assert_int_equal(snap_key_locate(&c, ref, err, sizeof(err)), 0);
	config_free(&c);
}

/* Creating the key fails at each step: an error naming it, nothing left in the directory. */
static void test_create_fails(void **state)
{
	static const struct {
		enum fi_call call;
		unsigned nth;
		int err;
		const char *needle;
	} faults[] = {
		/* the first openat looks for an existing key, the second creates the new one */
		{ FI_OPENAT, 2, ENOSPC, "cannot create snapshot key" },
		{ FI_WRITE, 1, ENOSPC, "cannot create snapshot key" },
		{ FI_FSYNC, 1, EIO, "cannot create snapshot key" },
		{ FI_LINKAT, 1, EMLINK, "cannot create snapshot key" },
	};

	for (unsigned i = 0; i < sizeof(faults) / sizeof(faults[0]); i++) {
		struct snap_keyref ref;
		uint8_t key[SNAP_KEY_BYTES];
		char err[512] = "";
		int ret;

		new_ref(&ref);
		fi_reset();
		fi_fail(faults[i].call, faults[i].nth, faults[i].err);
		ret = snap_key_load(&ref, true, key, err, sizeof(err));
		assert_true(fi_all_fired());
		if (ret >= 0 || !strstr(err, faults[i].needle) || !strstr(err, ref.path))
			fail_msg("fault %u: %d '%s'", i, ret, err);
		if (dir_entries())
			fail_msg("fault %u left %u files", i, dir_entries());
		/* The next try makes the key. */
		fi_reset();
		assert_int_equal(snap_key_load(&ref, true, key, err, sizeof(err)), 0);
		assert_int_equal(dir_entries(), 1);
		assert_int_equal(unlink(ref.path), 0);
	}
}

/* A short write of the new key is an error, not a short key. */
static void test_create_short_write(void **state)
{
	struct snap_keyref ref;
	uint8_t key[SNAP_KEY_BYTES];
	char err[512] = "";

	new_ref(&ref);
	fi_short(FI_WRITE, 1);
	assert_int_equal(snap_key_load(&ref, true, key, err, sizeof(err)), -EIO);
	assert_non_null(strstr(err, "cannot create snapshot key"));
	assert_int_equal(dir_entries(), 0);
}

/* No hard links on this filesystem: a rename that never replaces makes the key instead. */
static void test_create_without_links(void **state)
{
	struct snap_keyref ref;
	uint8_t key[SNAP_KEY_BYTES], again[SNAP_KEY_BYTES];
	char err[512] = "";
	int fd;

	new_ref(&ref);
	fi_fail(FI_LINKAT, 1, EPERM);
	assert_int_equal(snap_key_load(&ref, true, key, err, sizeof(err)), 0);
	assert_int_equal(fi_calls(FI_RENAMEAT2), 1);
	assert_int_equal(dir_entries(), 1);
	/* The file holds the key the load returned. */
	fi_reset();
	fd = open(ref.path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(read(fd, again, sizeof(again)), (ssize_t)sizeof(again));
	close(fd);
	assert_memory_equal(key, again, sizeof(key));
	/* Neither links nor renames: an error, and no temporary file. */
	new_ref(&ref);
	fi_fail(FI_LINKAT, 1, EOPNOTSUPP);
	fi_fail(FI_RENAMEAT2, 1, EINVAL);
	assert_int_equal(snap_key_load(&ref, true, key, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "cannot create snapshot key"));
	assert_int_equal(dir_entries(), 1);
}

/* Reading an existing key: it cannot be looked at, or reads short. */
static void test_read_fails(void **state)
{
	struct snap_keyref ref, other;
	uint8_t key[SNAP_KEY_BYTES];
	char err[512] = "";
	int fd;

	new_ref(&ref);
	assert_int_equal(snap_key_load(&ref, true, key, err, sizeof(err)), 0);
	/* Another path naming the same file: the cache does not answer for it. */
	new_ref(&other);
	assert_int_equal(link(ref.path, other.path), 0);

	fi_reset();
	fi_short(FI_PREAD, 1);
	assert_int_equal(snap_key_load(&other, false, key, err, sizeof(err)), -EIO);
	assert_non_null(strstr(err, "short read"));

	/* The key's fstat (the second: the first is the directory's). */
	new_ref(&other);
	assert_int_equal(link(ref.path, other.path), 0);
	fi_reset();
	fi_fail(FI_FSTAT, 2, EIO);
	err[0] = '\0';
	assert_int_equal(snap_key_load(&other, false, key, err, sizeof(err)), -EIO);
	if (!strstr(err, other.path))
		fail_msg("fstat of the key failing: '%s'", err);

	/* The directory's fstat. */
	new_ref(&other);
	assert_int_equal(link(ref.path, other.path), 0);
	fi_reset();
	fi_fail(FI_FSTAT, 1, EIO);
	err[0] = '\0';
	assert_int_equal(snap_key_load(&other, false, key, err, sizeof(err)), -EIO);
	if (!strstr(err, dir))
		fail_msg("fstat of the key directory failing: '%s'", err);

	/* Opening the key, or its directory. */
	new_ref(&other);
	assert_int_equal(link(ref.path, other.path), 0);
	fi_reset();
	fi_fail(FI_OPENAT, 1, EACCES);
	assert_int_equal(snap_key_load(&other, false, key, err, sizeof(err)), -EACCES);
	assert_non_null(strstr(err, strerror(EACCES)));
	fi_reset();
	fi_fail(FI_OPEN, 1, EACCES);
	assert_int_equal(snap_key_load(&other, false, key, err, sizeof(err)), -EACCES);
	assert_non_null(strstr(err, "snapshot key directory"));
	fd = open(other.path, O_RDONLY);
	assert_true(fd >= 0);
	close(fd);
}

/*
 * The filter's own bookkeeping (the keys to drop) running out of memory at each allocation:
 * an error, and the configuration left whole (the restore stops; nothing half-filtered goes
 * on).  Past the last allocation, the count of options to add.
 */
static void test_filter_alloc_sweep(void **state)
{
	static const enum fi_call kinds[] = { FI_STRDUP, FI_MALLOC, FI_REALLOC };
	static const char *const kv[][2] = {
		{ "cpus", "2" },
		{ "sandbox", "off" },
		{ "snapshot.trust", "file" },
		{ "ctl.socket", "/x.sock" },
		{ "pci.0.3.0.device", "virtio-blk" },
		{ "pci.0.3.0.path", "/dev/sda" },
		{ "lpc.com1.path", "stdio" },
		{ "name", "vm0" },
	};
	const unsigned nkv = sizeof(kv) / sizeof(kv[0]);
	struct config saved, cmd;
	char missing[256];

	config_init(&cmd);
	for (unsigned k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
		unsigned total = 0;

		for (unsigned n = 0;; n++) {
			int ret;

			config_init(&saved);
			for (unsigned i = 0; i < nkv; i++)
				assert_int_equal(config_set(&saved, kv[i][0], kv[i][1]), 0);
			fi_reset();
			if (n)
				fi_fail(kinds[k], n, ENOMEM);
			ret = snap_trust_filter(&saved, &cmd, false, missing, sizeof(missing));
			if (!n) {
				total = fi_calls(kinds[k]);
				assert_int_equal(ret, 3);
			} else if (ret < 0) {
				assert_int_equal(ret, -ENOMEM);
				assert_int_equal(saved.n, nkv);
			} else {
				assert_int_equal(ret, 3);
				assert_int_equal(saved.n, 2); /* cpus, pci.0.3.0.device */
			}
			config_free(&saved);
			if (n && n >= total)
				break;
		}
	}
	fi_reset();
	config_free(&cmd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_create_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_create_short_write, setup, teardown),
		cmocka_unit_test_setup_teardown(test_create_without_links, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_fails, setup, teardown),
		cmocka_unit_test(test_filter_alloc_sweep),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
