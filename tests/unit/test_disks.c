// SPDX-License-Identifier: BSD-2-Clause
/*
 * Disks in snapshots: the identity a checkpoint records (and the refusals of a damaged record),
 * the check a restore makes, and which disk copies a checkpoint may delete.
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
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "snap/disks.h"
#include "snap/format.h"
#include "sstream.h"
#include "vm.h"

#include "snapwrite.h"

static char dir[64];

static int setup(void **state)
{
	strcpy(dir, "/tmp/khyve-disks-XXXXXX");
	assert_non_null(mkdtemp(dir));
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd);
}

static int make_image(const char *name, const char *data, struct vm_disk *d, const char *id)
{
	memset(d, 0, sizeof(*d));
	snprintf(d->path, sizeof(d->path), "%s/%s", dir, name);
	d->fd = open(d->path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(d->fd >= 0);
	assert_int_equal(pwrite(d->fd, data, strlen(data), 0), (ssize_t)strlen(data));
	snprintf(d->id, sizeof(d->id), "%s", id);
	snprintf(d->cfg_key, sizeof(d->cfg_key), "%s.path", id);
	return d->fd;
}

static struct snap_disks two_records(void)
{
	struct snap_disks sd = { .n = 2, .rec = calloc(2, sizeof(struct snap_disk_rec)) };

	assert_non_null(sd.rec);
	sd.rec[0] = (struct snap_disk_rec){ .id = "pci.0.3.0",
					    .path = "/images/a.img",
					    .size = 8 << 20,
					    .mtime_sec = 1700000000,
					    .mtime_nsec = 123456789,
					    .dev = 2049,
					    .ino = 77 };
	sd.rec[1] = (struct snap_disk_rec){ .id = "pci.0.4.0",
					    .path = "/snaps/s.snap.x.1.img",
					    .size = 4096,
					    .mtime_sec = 5,
					    .dev = 9,
					    .ino = 1,
					    .copy = true };
	return sd;
}

/* encode -> decode -> encode gives the same bytes, and the decoded records are the saved ones. */
static void test_roundtrip(void **state)
{
	struct snap_disks sd = two_records(), back;
	struct sstream a, b;
	char err[256];

	ss_init_save(&a);
	assert_int_equal(snap_disks_encode(&sd, &a), 0);
	assert_int_equal(snap_disks_decode(a.buf, a.len, &back, err, sizeof(err)), 0);
	assert_int_equal(back.n, 2);
	assert_memory_equal(&back.rec[0], &sd.rec[0], sizeof(sd.rec[0]));
	assert_memory_equal(&back.rec[1], &sd.rec[1], sizeof(sd.rec[1]));
	assert_ptr_equal(snap_disks_find(&back, "pci.0.4.0"), &back.rec[1]);
	assert_null(snap_disks_find(&back, "pci.0.5.0"));
	ss_init_save(&b);
	assert_int_equal(snap_disks_encode(&back, &b), 0);
	assert_int_equal(a.len, b.len);
	assert_memory_equal(a.buf, b.buf, a.len);
	ss_free(&a);
	ss_free(&b);
	snap_disks_free(&sd);
	snap_disks_free(&back);
}

static void expect_refused(struct snap_disks *sd, const char *needle)
{
	struct snap_disks back;
	struct sstream s;
	char err[256] = "";

	ss_init_save(&s);
	assert_int_equal(snap_disks_encode(sd, &s), 0);
	assert_int_equal(snap_disks_decode(s.buf, s.len, &back, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, needle));
	assert_int_equal(back.n, 0);
	assert_null(back.rec);
	ss_free(&s);
}

/* Every record a khyve could not have written is refused, and so is every truncation. */
static void test_refused(void **state)
{
	struct snap_disks sd = two_records(), back;
	struct sstream s;
	char err[256];
	uint8_t *buf;

	sd.rec[1].mtime_nsec = 1000000000;
	expect_refused(&sd, "nanoseconds");
	sd.rec[1].mtime_nsec = 0;
	strcpy(sd.rec[0].path, "relative.img");
	expect_refused(&sd, "not absolute");
	strcpy(sd.rec[0].path, "/a.img");
	strcpy(sd.rec[1].id, "pci.0.3.0");
	expect_refused(&sd, "listed twice");
	strcpy(sd.rec[1].id, "");
	expect_refused(&sd, "empty id");
	strcpy(sd.rec[1].id, "pci.0.4.0");

	ss_init_save(&s);
	assert_int_equal(snap_disks_encode(&sd, &s), 0);
	for (size_t len = 0; len < s.len; len++)
		assert_int_not_equal(snap_disks_decode(s.buf, len, &back, err, sizeof(err)), 0);
	/* One byte too many, a flag bit this version does not know, a count over the limit. */
	buf = calloc(1, s.len + 1);
	assert_non_null(buf);
	memcpy(buf, s.buf, s.len);
	assert_int_equal(snap_disks_decode(buf, s.len + 1, &back, err, sizeof(err)), -EINVAL);
	buf[s.len - 1] = 2;
	assert_int_equal(snap_disks_decode(buf, s.len, &back, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "flags"));
	memcpy(buf, s.buf, s.len);
	memcpy(buf, &(uint32_t){ SNAP_DISKS_MAX + 1 }, 4);
	assert_int_equal(snap_disks_decode(buf, s.len, &back, err, sizeof(err)), -EINVAL);
	/* A NUL inside a path (it would hide what follows from every check). */
	memcpy(buf, s.buf, s.len);
	buf[4 + 4 + strlen("pci.0.3.0") + 4 + 1] = 0;
	assert_int_equal(snap_disks_decode(buf, s.len, &back, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "NUL"));
	free(buf);
	ss_free(&s);
	snap_disks_free(&sd);
}

/* The restore check: the disk as it was passes; a written or resized one is refused. */
static void test_check(void **state)
{
	struct snap_disks sd;
	struct config cfg;
	struct vm_disk d;
	struct vm vm;
	char err[512] = "", saved_dir[4096];

	make_image("a.img", "hello", &d, "pci.0.3.0");
	memset(&vm, 0, sizeof(vm));
	vm.disks = &d;
	config_init(&cfg);
	/* A relative path is recorded absolute. */
	assert_non_null(getcwd(saved_dir, sizeof(saved_dir)));
	assert_int_equal(chdir(dir), 0);
	strcpy(d.path, "a.img");
	assert_int_equal(snap_disks_save(&vm, "s.snap", false, &cfg, &sd, err, sizeof(err)), 0);
	assert_int_equal(chdir(saved_dir), 0);
	assert_int_equal(sd.n, 1);
	assert_false(sd.rec[0].copy);
	assert_int_equal(sd.rec[0].size, 5);
	assert_string_equal(sd.rec[0].path + strlen(dir), "/a.img");
	assert_string_equal(config_get(&cfg, "pci.0.3.0.path"), sd.rec[0].path);

	assert_int_equal(snap_disk_check(&sd.rec[0], d.id, d.fd, d.path, false, err, sizeof(err)),
			 0);
	/* Rewritten with the same bytes: still a change (the guest's memory cannot know). */
	assert_int_equal(pwrite(d.fd, "h", 1, 0), 1);
	assert_int_equal(snap_disk_check(&sd.rec[0], d.id, d.fd, d.path, false, err, sizeof(err)),
			 -ESTALE);
	assert_non_null(strstr(err, "changed since the snapshot"));
	assert_non_null(strstr(err, "snapshot.disk_changed=accept"));
	assert_non_null(strstr(err, "modified"));
	assert_int_equal(snap_disk_check(&sd.rec[0], d.id, d.fd, d.path, true, err, sizeof(err)),
			 0);
	assert_int_equal(ftruncate(d.fd, 4096), 0);
	assert_int_equal(snap_disk_check(&sd.rec[0], d.id, d.fd, d.path, false, err, sizeof(err)),
			 -ESTALE);
	assert_non_null(strstr(err, "size 4096 bytes, 5 at the checkpoint"));
	/* Nothing recorded (an older khyve's snapshot): not refused. */
	assert_int_equal(snap_disk_check(NULL, d.id, d.fd, d.path, false, err, sizeof(err)), 0);
	snap_disks_free(&sd);
	config_free(&cfg);
	close(d.fd);
}

static bool exists(const char *p)
{
	struct stat st;

	return !lstat(p, &st);
}

/*
 * Which copies a checkpoint deletes when it replaces a snapshot: the replaced file's copies,
 * but never one a disk of the VM has open, one replaced by another file, or one not named as
 * khyve names them.
 */
static void test_commit_deletes_only_unused_copies(void **state)
{
	struct snap_disks first, second, third;
	struct vm_disk d, running;
	struct config cfg;
	char snap[128], err[512], other[256];
	struct vm vm;
	int fd;

	snprintf(snap, sizeof(snap), "%s/s.snap", dir);
	make_image("a.img", "data", &d, "pci.0.3.0");
	memset(&vm, 0, sizeof(vm));
	vm.disks = &d;
	config_init(&cfg);
	assert_int_equal(snap_disks_save(&vm, snap, true, &cfg, &first, err, sizeof(err)), 0);
	assert_true(first.rec[0].copy);
	assert_int_equal(first.rec[0].size, 4);
	assert_true(exists(first.rec[0].path));
	assert_string_equal(config_get(&cfg, "pci.0.3.0.path"), first.rec[0].path);

	/* The VM now runs on the first copy (as one restored from that snapshot would). */
	memcpy(&running, &d, sizeof(d));
	running.fd = open(first.rec[0].path, O_RDWR | O_CLOEXEC);
	assert_true(running.fd >= 0);
	running.next = &d;
	vm.disks = &running;
	usleep(1000); /* another stamp in the copy's name */
	assert_int_equal(snap_disks_save(&vm, snap, true, &cfg, &second, err, sizeof(err)), 0);
	snap_disks_commit(&second, &vm, snap, &first);
	assert_true(exists(first.rec[0].path));
	close(running.fd);
	vm.disks = &d;

	/* No old file, or one not trusted: nothing is deleted. */
	assert_int_equal(snap_disks_save(&vm, snap, true, &cfg, &second, err, sizeof(err)), 0);
	snap_disks_commit(&second, &vm, snap, NULL);
	assert_true(exists(first.rec[0].path));
	/* Not in use any more: the next checkpoint over that file deletes it. */
	assert_int_equal(snap_disks_save(&vm, snap, true, &cfg, &second, err, sizeof(err)), 0);
	snap_disks_commit(&second, &vm, snap, &first);
	assert_false(exists(first.rec[0].path));

	/* A file put where a copy was (another inode) stays, and so does a name not ours. */
	fd = open(first.rec[0].path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	close(fd);
	first.rec[0].ino ^= 1;
	assert_int_equal(snap_disks_save(&vm, snap, false, &cfg, &third, err, sizeof(err)), 0);
	snap_disks_commit(&third, &vm, snap, &first);
	assert_true(exists(first.rec[0].path));
	snprintf(other, sizeof(other), "%s/victim.img", dir);
	fd = open(other, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	{
		struct stat st;

		assert_int_equal(fstat(fd, &st), 0);
		first.rec[0].dev = st.st_dev;
		first.rec[0].ino = st.st_ino;
	}
	close(fd);
	snprintf(first.rec[0].path, sizeof(first.rec[0].path), "%s", other);
	assert_int_equal(snap_disks_save(&vm, snap, false, &cfg, &third, err, sizeof(err)), 0);
	snap_disks_commit(&third, &vm, snap, &first);
	assert_true(exists(other));

	/* A failed save removes its own copies. */
	assert_int_equal(snap_disks_save(&vm, snap, true, &cfg, &third, err, sizeof(err)), 0);
	assert_true(strlen(third.rec[0].path) < sizeof(other));
	memcpy(other, third.rec[0].path, strlen(third.rec[0].path) + 1);
	assert_true(exists(other));
	snap_disks_abort(&third);
	assert_false(exists(other));
	snap_disks_free(&first);
	config_free(&cfg);
	close(d.fd);
}

/*
 * A hostile snapshot names the copy to delete: only a regular file named exactly as khyve
 * names its copies (<snapshot>.<id>.<at least 10 hex digits>.img), the very inode recorded,
 * is deleted.  Each near miss below is a file with the recorded inode that stays; the last,
 * named right, goes (so the test would see a deletion).
 */
static void test_copy_names_checked(void **state)
{
	static const char *const near[] = {
		"s.snapXpci.0.3.0.0123456789ab.img", /* no dot after the snapshot's name */
		"s.snap.pci.0.4.0.0123456789ab.img", /* another device's */
		"s.snap.pci.0.3.0X0123456789ab.img", /* no dot after the id */
		"s.snap.pci.0.3.0.012345678.img",    /* nine hex digits */
		"s.snap.pci.0.3.0.0123456789ab.img.bak",
		"s.snap.pci.0.3.0.0123456789AB.img", /* not khyve's lower-case hex */
		"other.snap.pci.0.3.0.0123456789ab.img",
	};
	struct snap_disks old = { .n = 1 }, cur;
	struct vm_disk d;
	struct config cfg;
	char snap[128], err[512], p[300], target[300];
	struct stat st;
	struct vm vm;
	int fd;

	snprintf(snap, sizeof(snap), "%s/s.snap", dir);
	make_image("a.img", "data", &d, "pci.0.3.0");
	memset(&vm, 0, sizeof(vm));
	vm.disks = &d;
	config_init(&cfg);
	old.rec = calloc(1, sizeof(*old.rec));
	assert_non_null(old.rec);
	for (size_t i = 0; i <= sizeof(near) / sizeof(near[0]); i++) {
		bool right = i == sizeof(near) / sizeof(near[0]);

		snprintf(p, sizeof(p), "%s/%s", dir,
			 right ? "s.snap.pci.0.3.0.0123456789ab.img" : near[i]);
		fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0600);
		assert_true(fd >= 0);
		assert_int_equal(fstat(fd, &st), 0);
		close(fd);
		old.rec[0] = (struct snap_disk_rec){ .id = "pci.0.3.0", .copy = true };
		snprintf(old.rec[0].path, sizeof(old.rec[0].path), "%s", p);
		old.rec[0].dev = st.st_dev;
		old.rec[0].ino = st.st_ino;
		assert_int_equal(snap_disks_save(&vm, snap, false, &cfg, &cur, err, sizeof(err)),
				 0);
		snap_disks_commit(&cur, &vm, snap, &old);
		if (exists(p) == right)
			fail_msg("%s: %s", p, right ? "not deleted" : "deleted");
		unlink(p);
	}
	/* Named right, but a symbolic link (to a file with the recorded inode): it stays. */
	snprintf(target, sizeof(target), "%s/victim", dir);
	fd = open(target, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	close(fd);
	snprintf(p, sizeof(p), "%s/s.snap.pci.0.3.0.0123456789ab.img", dir);
	assert_int_equal(symlink(target, p), 0);
	snprintf(old.rec[0].path, sizeof(old.rec[0].path), "%s", p);
	old.rec[0].dev = st.st_dev;
	old.rec[0].ino = st.st_ino;
	assert_int_equal(snap_disks_save(&vm, snap, false, &cfg, &cur, err, sizeof(err)), 0);
	snap_disks_commit(&cur, &vm, snap, &old);
	assert_int_equal(lstat(p, &st), 0);
	assert_true(exists(target));
	/* A record that is not a copy is never deleted, whatever its name. */
	unlink(p);
	fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	close(fd);
	old.rec[0].copy = false;
	old.rec[0].dev = st.st_dev;
	old.rec[0].ino = st.st_ino;
	assert_int_equal(snap_disks_save(&vm, snap, false, &cfg, &cur, err, sizeof(err)), 0);
	snap_disks_commit(&cur, &vm, snap, &old);
	assert_true(exists(p));
	snap_disks_free(&old);
	config_free(&cfg);
	close(d.fd);
}

/* A snapshot at @p with the disks section @sd (or @raw bytes at @version instead). */
static void write_snap(const char *p, const struct snap_disks *sd, const void *raw, size_t rawlen,
		       uint32_t version)
{
	struct snap_file map = { .nregions = 1 };
	struct snap_writer w;
	char err[256];

	assert_int_equal(snap_writer_open(&w, p, 4096, err, sizeof(err)), 0);
	assert_int_equal(snap_writer_section(&w, SNAP_SEC_META, "meta", 1, "{}", 2), 0);
	if (sd)
		assert_int_equal(snap_disks_write(sd, &w), 0);
	else if (raw)
		assert_int_equal(snap_writer_section(&w, SNAP_SEC_DISKS, "disks", version, raw,
						     rawlen),
				 0);
	map.regions[0] = (struct snap_region){ 0, 4096, w.mem_offset };
	snapwrite_memmap_commit(&w, &map);
}

static void open_snap(const char *p, struct snap_file *f)
{
	char err[256];

	if (snap_file_open(f, p, true, err, sizeof(err)))
		fail_msg("%s", err);
}

/* The disks section in a file: read back as written; absent, of another version, damaged. */
static void test_section_in_file(void **state)
{
	struct snap_disks sd = two_records(), back;
	struct snap_file f;
	char snap[128], err[256] = "";
	uint32_t n = 1;

	snprintf(snap, sizeof(snap), "%s/s.snap", dir);
	write_snap(snap, &sd, NULL, 0, 0);
	open_snap(snap, &f);
	assert_int_equal(snap_disks_read(&f, &back, err, sizeof(err)), 0);
	assert_int_equal(back.n, 2);
	assert_memory_equal(back.rec, sd.rec, 2 * sizeof(*sd.rec));
	assert_ptr_equal(snap_disks_find(&back, "pci.0.4.0"), &back.rec[1]);
	assert_null(snap_disks_find(&back, "pci.0.5.0"));
	snap_disks_free(&back);
	snap_file_close(&f);

	write_snap(snap, NULL, NULL, 0, 0);
	open_snap(snap, &f);
	assert_int_equal(snap_disks_read(&f, &back, err, sizeof(err)), -ENOENT);
	assert_int_equal(back.n, 0);
	snap_file_close(&f);

	write_snap(snap, NULL, &n, 4, SNAP_DISKS_VERSION + 1);
	open_snap(snap, &f);
	assert_int_equal(snap_disks_read(&f, &back, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "disks section version 2 is not supported (1)");
	snap_file_close(&f);

	/* One disk announced, none there. */
	write_snap(snap, NULL, &n, 4, SNAP_DISKS_VERSION);
	open_snap(snap, &f);
	assert_int_equal(snap_disks_read(&f, &back, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "disks section: "));
	assert_null(back.rec);
	snap_file_close(&f);
	snap_disks_free(&sd);
}

/* A restore checks each disk of the VM against the file's record of it. */
static void test_verify(void **state)
{
	struct snap_disks sd;
	struct snap_file f;
	struct config cfg;
	struct vm_disk d;
	struct vm vm;
	char snap[128], err[1024] = "";
	uint32_t n = 1;

	snprintf(snap, sizeof(snap), "%s/s.snap", dir);
	make_image("a.img", "hello", &d, "pci.0.3.0");
	memset(&vm, 0, sizeof(vm));
	config_init(&cfg);
	vm.disks = &d;
	assert_int_equal(snap_disks_save(&vm, snap, false, &cfg, &sd, err, sizeof(err)), 0);
	write_snap(snap, &sd, NULL, 0, 0);
	snap_disks_free(&sd);
	open_snap(snap, &f);
	assert_int_equal(snap_disks_verify(&vm, &f, false, err, sizeof(err)), 0);
	assert_int_equal(pwrite(d.fd, "J", 1, 0), 1);
	assert_int_equal(snap_disks_verify(&vm, &f, false, err, sizeof(err)), -ESTALE);
	assert_non_null(strstr(err, "disk pci.0.3.0 ("));
	assert_int_equal(snap_disks_verify(&vm, &f, true, err, sizeof(err)), 0);
	/* A VM with no disks has nothing to check. */
	vm.disks = NULL;
	assert_int_equal(snap_disks_verify(&vm, &f, false, err, sizeof(err)), 0);
	vm.disks = &d;
	snap_file_close(&f);

	/* A file that records no disks (an older khyve's): not refused. */
	write_snap(snap, NULL, NULL, 0, 0);
	open_snap(snap, &f);
	assert_int_equal(snap_disks_verify(&vm, &f, false, err, sizeof(err)), 0);
	snap_file_close(&f);
	/* A damaged record is: the restore cannot know the disk is the one saved. */
	write_snap(snap, NULL, &n, 4, SNAP_DISKS_VERSION);
	open_snap(snap, &f);
	assert_int_equal(snap_disks_verify(&vm, &f, true, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "disks section: "));
	snap_file_close(&f);
	config_free(&cfg);
	close(d.fd);
}

/* What a check says about a record it cannot compare or print in the usual way. */
static void test_check_messages(void **state)
{
	struct snap_disk_rec rec = { .id = "pci.0.3.0", .size = 5, .copy = true };
	struct vm_disk d;
	char err[1024] = "";

	make_image("a.img", "hello", &d, "pci.0.3.0");
	assert_int_equal(snap_disk_check(&rec, d.id, -1, d.path, false, err, sizeof(err)), -EBADF);
	assert_non_null(strstr(err, "Bad file descriptor"));
	/* Same size, a time gmtime cannot show: the seconds as they are. */
	rec.mtime_sec = 1ULL << 62;
	assert_int_equal(snap_disk_check(&rec, d.id, d.fd, d.path, false, err, sizeof(err)),
			 -ESTALE);
	assert_non_null(strstr(err, "4611686018427387904.000000000Z at the checkpoint"));
	assert_non_null(strstr(err, "has run on its copy"));
	close(d.fd);
}

/* The limits of a save's records: how many disks, how long the names get. */
static void test_save_limits(void **state)
{
	struct vm_disk *many = calloc(SNAP_DISKS_MAX + 1, sizeof(*many));
	char longp[4100], err[8192] = "";
	struct snap_disks sd;
	struct config cfg;
	struct vm_disk d;
	struct vm vm;

	memset(&vm, 0, sizeof(vm));
	config_init(&cfg);
	for (unsigned i = 0; i <= SNAP_DISKS_MAX; i++)
		many[i].next = i < SNAP_DISKS_MAX ? &many[i + 1] : NULL;
	vm.disks = many;
	assert_int_equal(snap_disks_save(&vm, "/s.snap", false, &cfg, &sd, err, sizeof(err)),
			 -E2BIG);
	assert_string_equal(err, "257 disks: a snapshot records at most 256");
	free(many);

	make_image("a.img", "hello", &d, "pci.0.3.0");
	vm.disks = &d;
	memset(longp, 'a', sizeof(longp) - 1);
	longp[0] = '/';
	longp[sizeof(longp) - 1] = '\0';
	assert_int_equal(snap_disks_save(&vm, longp, false, &cfg, &sd, err, sizeof(err)),
			 -ENAMETOOLONG);
	assert_non_null(strstr(err, "snapshot path /aaa"));
	/* A snapshot path that fits, with no room left for a copy's name beside it. */
	longp[4090] = '\0';
	assert_int_equal(snap_disks_save(&vm, longp, true, &cfg, &sd, err, sizeof(err)),
			 -ENAMETOOLONG);
	assert_non_null(strstr(err, "copying it to"));
	assert_null(config_get(&cfg, "pci.0.3.0.path"));
	/* An image path that cannot be made absolute. */
	memset(d.path, 'b', 4090);
	d.path[4090] = '\0';
	assert_int_equal(snap_disks_save(&vm, "/s.snap", false, &cfg, &sd, err, sizeof(err)),
			 -ENAMETOOLONG);
	assert_non_null(strstr(err, "disk pci.0.3.0 (bbb"));
	assert_int_equal(sd.n, 0);
	config_free(&cfg);
	close(d.fd);
}

/* Relative paths: "./" dropped, a name starting with a dot kept, a removed cwd refused. */
static void test_abs_path_relative(void **state)
{
	char cwd[4096], out[4200], want[4200], sub[128];

	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(chdir(dir), 0);
	assert_int_equal(snap_abs_path(".hidden", out, sizeof(out)), 0);
	snprintf(want, sizeof(want), "%s/.hidden", dir);
	assert_string_equal(out, want);
	snprintf(sub, sizeof(sub), "%s/gone", dir);
	assert_int_equal(mkdir(sub, 0700), 0);
	assert_int_equal(chdir(sub), 0);
	assert_int_equal(rmdir(sub), 0);
	assert_int_equal(snap_abs_path("x.snap", out, sizeof(out)), -ENOENT);
	assert_int_equal(chdir(cwd), 0);
}

/* With a snapshot path that cannot be made absolute, no copy is deleted. */
static void test_commit_long_path(void **state)
{
	struct snap_disks old = { .n = 1 }, cur = { 0 };
	char longp[4100], p[200];
	struct stat st;
	struct vm vm;
	int fd;

	memset(&vm, 0, sizeof(vm));
	memset(longp, 'a', sizeof(longp) - 1);
	longp[0] = '/';
	longp[sizeof(longp) - 1] = '\0';
	snprintf(p, sizeof(p), "%s/copy.img", dir);
	fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	close(fd);
	old.rec = calloc(1, sizeof(*old.rec));
	old.rec[0] = (struct snap_disk_rec){
		.id = "pci.0.3.0", .copy = true, .dev = st.st_dev, .ino = st.st_ino
	};
	snprintf(old.rec[0].path, sizeof(old.rec[0].path), "%s", p);
	snap_disks_commit(&cur, &vm, longp, &old);
	assert_true(exists(p));
	snap_disks_free(&old);
}

/*
 * A read-only image keeps its time stamp (khyve cannot set it, and need not: the guest
 * cannot write it), and a failed save of images it did not copy deletes none of them.
 */
static void test_sync_read_only(void **state)
{
	struct snap_disks sd;
	struct config cfg;
	struct vm_disk d;
	struct stat before, after;
	struct vm vm;
	char snap[128], err[512] = "";

	snprintf(snap, sizeof(snap), "%s/s.snap", dir);
	make_image("a.img", "hello", &d, "pci.0.3.0");
	close(d.fd);
	d.fd = open(d.path, O_RDONLY | O_CLOEXEC);
	assert_true(d.fd >= 0);
	assert_int_equal(fstat(d.fd, &before), 0);
	memset(&vm, 0, sizeof(vm));
	vm.disks = &d;
	config_init(&cfg);
	assert_int_equal(snap_disks_save(&vm, snap, false, &cfg, &sd, err, sizeof(err)), 0);
	assert_int_equal(fstat(d.fd, &after), 0);
	assert_int_equal(after.st_mtim.tv_sec, before.st_mtim.tv_sec);
	assert_int_equal(after.st_mtim.tv_nsec, before.st_mtim.tv_nsec);
	assert_int_equal(sd.rec[0].mtime_nsec, (uint32_t)before.st_mtim.tv_nsec);
	snap_disks_abort(&sd);
	assert_true(exists(d.path));
	config_free(&cfg);
	close(d.fd);
}

/* A sparse image is copied sparse, its trailing hole too; '/' in an id becomes '_'. */
static void test_clone_sparse(void **state)
{
	struct snap_disks sd;
	struct config cfg;
	struct vm_disk d;
	struct stat st;
	struct vm vm;
	char snap[128], err[512] = "", buf[6] = "";
	int fd;

	snprintf(snap, sizeof(snap), "%s/s.snap", dir);
	make_image("a.img", "hello", &d, "usb/0");
	assert_int_equal(ftruncate(d.fd, 64 << 20), 0);
	memset(&vm, 0, sizeof(vm));
	vm.disks = &d;
	config_init(&cfg);
	assert_int_equal(snap_disks_save(&vm, snap, true, &cfg, &sd, err, sizeof(err)), 0);
	assert_non_null(strstr(sd.rec[0].path, "/s.snap.usb_0."));
	assert_int_equal(stat(sd.rec[0].path, &st), 0);
	assert_int_equal(st.st_size, 64 << 20);
	assert_true((uint64_t)st.st_blocks * 512 < (1 << 20));
	fd = open(sd.rec[0].path, O_RDONLY);
	assert_int_equal(read(fd, buf, 5), 5);
	close(fd);
	assert_string_equal(buf, "hello");
	snap_disks_abort(&sd);
	config_free(&cfg);
	close(d.fd);
}

/* The warning of a changed disk a restore accepts is one line, as every log line is. */
static void test_accept_warning_one_line(void **state)
{
	struct snap_disk_rec rec = { .id = "pci.0.3.0", .size = 5 };
	struct vm_disk d;
	char log[200], out[2048] = "", err[256] = "";
	int fd, saved;
	ssize_t n;

	make_image("a.img", "hello", &d, "pci.0.3.0");
	snprintf(log, sizeof(log), "%s/log", dir);
	fd = open(log, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	saved = dup(STDERR_FILENO);
	assert_true(dup2(fd, STDERR_FILENO) >= 0);
	assert_int_equal(snap_disk_check(&rec, d.id, d.fd, d.path, true, err, sizeof(err)), 0);
	assert_true(dup2(saved, STDERR_FILENO) >= 0);
	close(saved);
	n = pread(fd, out, sizeof(out) - 1, 0);
	close(fd);
	assert_true(n > 0);
	assert_non_null(strstr(out, "going on as snapshot.disk_changed=accept says\n"));
	assert_ptr_equal(strchr(out, '\n'), out + n - 1);
	close(d.fd);
}

/* A VM with no disks: an empty record, which reads back as one. */
static void test_no_disks(void **state)
{
	struct snap_disks sd, back;
	struct config cfg;
	struct sstream s;
	struct vm vm;
	char err[256] = "";

	memset(&vm, 0, sizeof(vm));
	config_init(&cfg);
	assert_int_equal(snap_disks_save(&vm, "/s.snap", true, &cfg, &sd, err, sizeof(err)), 0);
	assert_int_equal(sd.n, 0);
	assert_int_equal(cfg.n, 0);
	ss_init_save(&s);
	assert_int_equal(snap_disks_encode(&sd, &s), 0);
	assert_int_equal(s.len, 4);
	assert_int_equal(snap_disks_decode(s.buf, s.len, &back, err, sizeof(err)), 0);
	assert_int_equal(back.n, 0);
	assert_null(snap_disks_find(&back, "pci.0.3.0"));
	snap_disks_free(&back);
	ss_free(&s);
	snap_disks_free(&sd);
	config_free(&cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_no_disks),
		cmocka_unit_test_setup_teardown(test_check, setup, teardown),
		cmocka_unit_test_setup_teardown(test_copy_names_checked, setup, teardown),
		cmocka_unit_test_setup_teardown(test_section_in_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_verify, setup, teardown),
		cmocka_unit_test_setup_teardown(test_check_messages, setup, teardown),
		cmocka_unit_test_setup_teardown(test_save_limits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sync_read_only, setup, teardown),
		cmocka_unit_test_setup_teardown(test_clone_sparse, setup, teardown),
		cmocka_unit_test_setup_teardown(test_abs_path_relative, setup, teardown),
		cmocka_unit_test_setup_teardown(test_commit_long_path, setup, teardown),
		cmocka_unit_test_setup_teardown(test_accept_warning_one_line, setup, teardown),
		cmocka_unit_test_setup_teardown(test_commit_deletes_only_unused_copies, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
