// SPDX-License-Identifier: BSD-2-Clause
/* Disk images in snapshots (see disks.h). */
#include "snap/disks.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "snap/format.h"
#include "sstream.h"
#include "vm.h"

#define NSEC 1000000000L

int snap_abs_path(const char *path, char *out, size_t len)
{
	char cwd[4096];
	int n;

	if (path[0] == '/') {
		n = snprintf(out, len, "%s", path);
	} else {
		if (!getcwd(cwd, sizeof(cwd)))
			return -errno;
		while (path[0] == '.' && path[1] == '/')
			path += 2;
		n = snprintf(out, len, "%s%s%s", cwd, strcmp(cwd, "/") ? "/" : "", path);
	}
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* ---- saving ---- */

/* Copy only the data extents: a sparse image stays sparse. */
static int copy_sparse(int in, int out)
{
	struct stat st;
	off_t pos = 0;

	if (fstat(in, &st) < 0 || ftruncate(out, st.st_size) < 0)
		return -errno;
	while (pos < st.st_size) {
		off_t data = lseek(in, pos, SEEK_DATA), hole;

		if (data < 0)
			return errno == ENXIO ? 0 : -errno;
		hole = lseek(in, data, SEEK_HOLE);
		if (hole < 0)
			return -errno;
		for (off_t o = data; o < hole;) {
			off_t src = o, dst = o;
			ssize_t n = copy_file_range(in, &src, out, &dst, (size_t)(hole - o), 0);

			if (n <= 0)
				return n < 0 ? -errno : -EIO;
			o += n;
		}
		pos = hole;
	}
	return 0;
}

/*
 * Give a writable image a modification time of its own, to the nanosecond: a write after the
 * checkpoint then always gives it another one, even within the filesystem clock's tick (which
 * may be several milliseconds: a write just before the pause and one just after the resume
 * could otherwise leave the same time).  An image khyve cannot set times on (not its owner)
 * keeps the time of its last write.
 */
static void disk_stamp(int fd)
{
	struct timespec ts[2] = { { .tv_nsec = UTIME_OMIT } };
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || (fl & O_ACCMODE) == O_RDONLY)
		return;
	clock_gettime(CLOCK_REALTIME, &ts[1]);
	futimens(fd, ts);
}

/* fsync, stamp and describe the image open as @fd. */
static int disk_record(int fd, const char *id, const char *path, bool copy,
		       struct snap_disk_rec *rec)
{
	struct stat st;

	disk_stamp(fd);
	if (fsync(fd) < 0 || fstat(fd, &st) < 0)
		return -errno;
	snprintf(rec->id, sizeof(rec->id), "%s", id);
	if (rec->path != path)
		snprintf(rec->path, sizeof(rec->path), "%s", path);
	rec->size = (uint64_t)st.st_size;
	rec->mtime_sec = (uint64_t)st.st_mtim.tv_sec;
	rec->mtime_nsec = (uint32_t)st.st_mtim.tv_nsec;
	rec->dev = st.st_dev;
	rec->ino = st.st_ino;
	rec->copy = copy;
	return 0;
}

static int clone_one(const struct vm_disk *d, struct snap_disk_rec *rec)
{
	int out = open(rec->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	int ret = 0;

	if (out < 0)
		return -errno;
	/* A reflink costs nothing on btrfs/xfs; elsewhere copy the data. */
	if (ioctl(out, FICLONE, d->fd) < 0)
		ret = copy_sparse(d->fd, out);
	if (!ret)
		ret = disk_record(out, d->id, rec->path, true, rec);
	close(out);
	if (ret)
		unlink(rec->path);
	return ret;
}

/* The device id as it appears in a copy's name: no '/'. */
static void id_for_name(const char *id, char *out, size_t len)
{
	snprintf(out, len, "%s", id);
	for (char *p = out; *p; p++)
		if (*p == '/')
			*p = '_';
}

/*
 * "<snapshot>.<id>.<stamp>.img" beside the snapshot (@snap_abs is absolute): a name of its own
 * per save, so writing it never touches the copy the file at the path refers to until the new
 * snapshot has replaced it.  copy_name_ok recognises exactly these names.
 */
static int copy_name(const char *snap_abs, const struct vm_disk *d, char *out, size_t len)
{
	char id[sizeof(d->id)];
	struct timespec ts;
	int n;

	id_for_name(d->id, id, sizeof(id));
	clock_gettime(CLOCK_REALTIME, &ts);
	n = snprintf(out, len, "%s.%s.%llx%09lx.img", snap_abs, id, (unsigned long long)ts.tv_sec,
		     (unsigned long)ts.tv_nsec);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static bool copy_name_ok(const char *snap_abs, const struct snap_disk_rec *r)
{
	size_t n = strlen(snap_abs), k, hex;
	char id[sizeof(r->id)];
	const char *p = r->path;

	id_for_name(r->id, id, sizeof(id));
	k = strlen(id);
	if (strncmp(p, snap_abs, n) || p[n] != '.' || strncmp(p + n + 1, id, k) ||
	    p[n + 1 + k] != '.')
		return false;
	p += n + k + 2;
	hex = strspn(p, "0123456789abcdef");
	return hex >= 10 && !strcmp(p + hex, ".img");
}

int snap_disks_save(struct vm *vm, const char *snap_path, bool clone, struct config *meta_cfg,
		    struct snap_disks *sd, char *err, size_t errlen)
{
	char snap_abs[4096];
	unsigned n = 0;
	int ret;

	memset(sd, 0, sizeof(*sd));
	for (struct vm_disk *d = vm->disks; d; d = d->next)
		n++;
	if (n > SNAP_DISKS_MAX) {
		snprintf(err, errlen, "%u disks: a snapshot records at most %u", n, SNAP_DISKS_MAX);
		return -E2BIG;
	}
	ret = snap_abs_path(snap_path, snap_abs, sizeof(snap_abs));
	if (ret) {
		snprintf(err, errlen, "snapshot path %s: %s", snap_path, strerror(-ret));
		return ret;
	}
	sd->rec = calloc(n ? n : 1, sizeof(*sd->rec));
	if (!sd->rec)
		return -ENOMEM;
	for (struct vm_disk *d = vm->disks; d; d = d->next) {
		struct snap_disk_rec *r = &sd->rec[sd->n];
		const char *what = "fsync";

		if (clone) {
			ret = copy_name(snap_abs, d, r->path, sizeof(r->path));
			if (!ret)
				ret = fsync(d->fd) < 0 ? -errno : clone_one(d, r);
			what = "copying it";
		} else {
			ret = snap_abs_path(d->path, r->path, sizeof(r->path));
			if (!ret)
				ret = disk_record(d->fd, d->id, r->path, false, r);
		}
		if (ret) {
			snprintf(err, errlen, "disk %s (%s): %s%s%s: %s", d->id, d->path, what,
				 clone ? " to " : "", clone ? r->path : "", strerror(-ret));
			snap_disks_abort(sd);
			return ret;
		}
		sd->n++;
		if (clone)
			sd->ncopies = sd->n;
		/* Absolute, so a restore from another directory finds the image. */
		ret = config_set(meta_cfg, d->cfg_key, r->path);
		if (ret) {
			snap_disks_abort(sd);
			return ret;
		}
	}
	return 0;
}

/* ---- the section ---- */

static void str_io(struct sstream *s, char *buf, size_t cap, const char *what)
{
	uint32_t len = s->loading ? 0 : (uint32_t)strlen(buf);

	ss_u32(s, &len);
	if (s->loading)
		ss_check_max(s, len, cap - 1, what);
	if (ss_error(s))
		return;
	ss_bytes(s, buf, len);
	if (s->loading && !ss_error(s)) {
		buf[len] = '\0';
		if (strlen(buf) != len)
			ss_fail(s, -EINVAL, "%s holds a NUL byte", what);
	}
}

static void rec_io(struct sstream *s, struct snap_disk_rec *r)
{
	uint8_t flags = r->copy;

	str_io(s, r->id, sizeof(r->id), "disk id");
	str_io(s, r->path, sizeof(r->path), "disk path");
	ss_u64(s, &r->size);
	ss_u64(s, &r->mtime_sec);
	ss_u32(s, &r->mtime_nsec);
	ss_u64(s, &r->dev);
	ss_u64(s, &r->ino);
	ss_u8(s, &flags);
	if (!s->loading || ss_error(s))
		return;
	if (!r->id[0] || r->path[0] != '/')
		ss_fail(s, -EINVAL, "disk %s: empty id or a path that is not absolute", r->id);
	ss_check_max(s, r->mtime_nsec, NSEC - 1, "disk modification time nanoseconds");
	ss_check_max(s, flags, 1, "disk flags");
	r->copy = flags & 1;
}

/* One function for both directions: the layout is written once. */
static void disks_io(struct sstream *s, struct snap_disks *sd)
{
	uint32_t n = sd->n;

	ss_u32(s, &n);
	if (s->loading) {
		ss_check_max(s, n, SNAP_DISKS_MAX, "disk count");
		if (ss_error(s))
			return;
		sd->rec = calloc(n ? n : 1, sizeof(*sd->rec));
		if (!sd->rec) {
			ss_fail(s, -ENOMEM, "out of memory");
			return;
		}
		sd->n = n;
	}
	for (unsigned i = 0; i < n && !ss_error(s); i++) {
		rec_io(s, &sd->rec[i]);
		for (unsigned j = 0; s->loading && j < i && !ss_error(s); j++)
			if (!strcmp(sd->rec[j].id, sd->rec[i].id))
				ss_fail(s, -EINVAL, "disk %s is listed twice", sd->rec[i].id);
	}
}

int snap_disks_encode(const struct snap_disks *sd, struct sstream *s)
{
	struct snap_disks copy = *sd;

	disks_io(s, &copy);
	return ss_error(s);
}

int snap_disks_write(const struct snap_disks *sd, struct snap_writer *w)
{
	struct sstream s;
	int ret;

	ss_init_save(&s);
	ret = snap_disks_encode(sd, &s);
	if (!ret)
		ret = snap_writer_section(w, SNAP_SEC_DISKS, "disks", SNAP_DISKS_VERSION, s.buf,
					  s.len);
	ss_free(&s);
	return ret;
}

int snap_disks_decode(const void *buf, size_t len, struct snap_disks *sd, char *err, size_t errlen)
{
	struct sstream s;
	int ret;

	memset(sd, 0, sizeof(*sd));
	ss_init_load(&s, buf, len);
	disks_io(&s, sd);
	ret = ss_finish(&s);
	if (ret) {
		snprintf(err, errlen, "disks section: %s", s.msg);
		snap_disks_free(sd);
	}
	return ret;
}

int snap_disks_read(const struct snap_file *f, struct snap_disks *sd, char *err, size_t errlen)
{
	const struct snap_section *sec = snap_file_find(f, SNAP_SEC_DISKS, "disks");
	void *buf;
	int ret;

	memset(sd, 0, sizeof(*sd));
	if (!sec)
		return -ENOENT;
	if (sec->version != SNAP_DISKS_VERSION) {
		snprintf(err, errlen, "disks section version %u is not supported (%u)",
			 sec->version, SNAP_DISKS_VERSION);
		return -EINVAL;
	}
	ret = snap_file_read(f, sec, &buf);
	if (ret) {
		snprintf(err, errlen, "disks section: %s", strerror(-ret));
		return ret;
	}
	ret = snap_disks_decode(buf, sec->length, sd, err, errlen);
	free(buf);
	return ret;
}

const struct snap_disk_rec *snap_disks_find(const struct snap_disks *sd, const char *id)
{
	for (unsigned i = 0; i < sd->n; i++)
		if (!strcmp(sd->rec[i].id, id))
			return &sd->rec[i];
	return NULL;
}

/* ---- after the save ---- */

static bool same_file(const struct stat *st, uint64_t dev, uint64_t ino)
{
	return (uint64_t)st->st_dev == dev && (uint64_t)st->st_ino == ino;
}

/* Does a disk of @vm have the file @st open (a VM restored from a snapshot runs on its copy)? */
static bool open_in_vm(struct vm *vm, const struct stat *st)
{
	struct stat ds;

	for (struct vm_disk *d = vm->disks; d; d = d->next)
		if (!fstat(d->fd, &ds) && same_file(st, ds.st_dev, ds.st_ino))
			return true;
	return false;
}

/* Delete @r, a copy the replaced snapshot made, if it is still exactly that and unused. */
static void drop_old_copy(struct vm *vm, const char *snap_abs, const struct snap_disks *sd,
			  const struct snap_disk_rec *r)
{
	struct stat st;

	if (!r->copy || !copy_name_ok(snap_abs, r))
		return;
	/* Not through a symlink, and the very inode that save made: not a file put there since. */
	if (lstat(r->path, &st) || !S_ISREG(st.st_mode) || !same_file(&st, r->dev, r->ino))
		return;
	if (open_in_vm(vm, &st))
		return;
	for (unsigned i = 0; i < sd->n; i++)
		if (same_file(&st, sd->rec[i].dev, sd->rec[i].ino))
			return;
	unlink(r->path);
}

void snap_disks_commit(struct snap_disks *sd, struct vm *vm, const char *snap_path,
		       const struct snap_disks *old)
{
	char snap_abs[4096];

	if (old && !snap_abs_path(snap_path, snap_abs, sizeof(snap_abs)))
		for (unsigned i = 0; i < old->n; i++)
			drop_old_copy(vm, snap_abs, sd, &old->rec[i]);
	snap_disks_free(sd);
}

void snap_disks_abort(struct snap_disks *sd)
{
	for (unsigned i = 0; i < sd->ncopies && i < sd->n; i++)
		if (sd->rec[i].copy)
			unlink(sd->rec[i].path);
	snap_disks_free(sd);
}

void snap_disks_free(struct snap_disks *sd)
{
	free(sd->rec);
	memset(sd, 0, sizeof(*sd));
}

/* ---- restoring ---- */

static void fmt_time(char *buf, size_t len, uint64_t sec, uint32_t nsec)
{
	time_t t = (time_t)sec;
	struct tm tm;
	char s[32];

	if (!gmtime_r(&t, &tm) || !strftime(s, sizeof(s), "%Y-%m-%dT%H:%M:%S", &tm))
		snprintf(s, sizeof(s), "%" PRIu64, sec);
	snprintf(buf, len, "%s.%09uZ", s, nsec);
}

int snap_disk_check(const struct snap_disk_rec *saved, const char *id, int fd, const char *path,
		    bool accept, char *err, size_t errlen)
{
	char what[200], was[48], now[48];
	struct stat st;

	if (!saved) {
		log_warn("disk %s (%s): the snapshot records nothing about it (an older "
			 "khyve wrote it), so khyve cannot check that it is the disk as it was",
			 id, path);
		return 0;
	}
	if (fstat(fd, &st) < 0) {
		snprintf(err, errlen, "disk %s (%s): %s", id, path, strerror(errno));
		return -errno;
	}
	if ((uint64_t)st.st_size == saved->size &&
	    (uint64_t)st.st_mtim.tv_sec == saved->mtime_sec &&
	    (uint32_t)st.st_mtim.tv_nsec == saved->mtime_nsec)
		return 0;
	if ((uint64_t)st.st_size != saved->size) {
		snprintf(what, sizeof(what), "size %jd bytes, %" PRIu64 " at the checkpoint",
			 (intmax_t)st.st_size, saved->size);
	} else {
		fmt_time(now, sizeof(now), (uint64_t)st.st_mtim.tv_sec,
			 (uint32_t)st.st_mtim.tv_nsec);
		fmt_time(was, sizeof(was), saved->mtime_sec, saved->mtime_nsec);
		snprintf(what, sizeof(what), "modified %s, %s at the checkpoint", now, was);
	}
	if (accept) {
		log_warn("disk %s (%s) changed since the snapshot (%s); going on as "
			 "snapshot.disk_changed=accept says",
			 id, path, what);
		return 0;
	}
	snprintf(err, errlen,
		 "disk %s (%s) changed since the snapshot was taken (%s), so the restored "
		 "guest's memory would not match it%s. Restore onto the disk as it was "
		 "(snapshot.disks=clone keeps a copy for one restore; cp -p keeps the time "
		 "stamp), or add -o snapshot.disk_changed=accept to use it anyway",
		 id, path, what,
		 saved->copy ? " (a VM restored from this snapshot has run on its copy)" : "");
	return -ESTALE;
}

int snap_disks_verify(struct vm *vm, const struct snap_file *f, bool accept, char *err,
		      size_t errlen)
{
	struct snap_disks sd;
	int ret = snap_disks_read(f, &sd, err, errlen);

	if (ret && ret != -ENOENT)
		return ret;
	ret = 0;
	for (struct vm_disk *d = vm->disks; d; d = d->next) {
		ret = snap_disk_check(snap_disks_find(&sd, d->id), d->id, d->fd, d->path, accept,
				      err, errlen);
		if (ret)
			break;
	}
	snap_disks_free(&sd);
	return ret;
}
