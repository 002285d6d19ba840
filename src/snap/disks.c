// SPDX-License-Identifier: BSD-2-Clause
/* Disk images in snapshots (see disks.h). */
#include "snap/disks.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "vm.h"

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

static int clone_one(const struct vm_disk *d, const char *tmp)
{
	int out = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	int ret = 0;

	if (out < 0)
		return -errno;
	/* A reflink costs nothing on btrfs/xfs; elsewhere copy the data. */
	if (ioctl(out, FICLONE, d->fd) < 0)
		ret = copy_sparse(d->fd, out);
	if (!ret && fsync(out) < 0)
		ret = -errno;
	close(out);
	if (ret)
		unlink(tmp);
	return ret;
}

/*
 * "vm.snap.pci@0.3.0.<stamp>.img": a name of its own per save, so writing it never touches the
 * copy the file at @snap_path refers to until the new snapshot has replaced it.
 */
static void disk_name(const char *snap_path, const struct vm_disk *d, char *out, size_t len)
{
	char id[sizeof(d->id)];
	struct timespec ts;

	snprintf(id, sizeof(id), "%s", d->id);
	for (char *p = id; *p; p++)
		if (*p == '/')
			*p = '_';
	clock_gettime(CLOCK_REALTIME, &ts);
	snprintf(out, len, "%s.%s.%llx%09lx.img", snap_path, id, (unsigned long long)ts.tv_sec,
		 (unsigned long)ts.tv_nsec);
}

int snap_disks_save(struct vm *vm, const char *snap_path, bool clone, struct config *meta_cfg,
		    struct snap_disks *sd, char *err, size_t errlen)
{
	unsigned n = 0;
	int ret;

	memset(sd, 0, sizeof(*sd));
	for (struct vm_disk *d = vm->disks; d; d = d->next)
		n++;
	for (struct vm_disk *d = vm->disks; d; d = d->next) {
		if (fsync(d->fd) < 0) {
			ret = -errno;
			snprintf(err, errlen, "disk %s (%s): fsync: %s", d->id, d->path,
				 strerror(errno));
			return ret;
		}
	}
	if (!clone || !n)
		return 0;
	sd->path = calloc(n, sizeof(*sd->path));
	if (!sd->path)
		return -ENOMEM;
	for (struct vm_disk *d = vm->disks; d; d = d->next) {
		disk_name(snap_path, d, sd->path[sd->n], sizeof(sd->path[0]));
		ret = clone_one(d, sd->path[sd->n]);
		if (ret) {
			snprintf(err, errlen, "disk %s: copying %s to %s: %s", d->id, d->path,
				 sd->path[sd->n], strerror(-ret));
			snap_disks_abort(sd);
			return ret;
		}
		sd->n++;
		ret = config_set(meta_cfg, d->cfg_key, sd->path[sd->n - 1]);
		if (ret) {
			snap_disks_abort(sd);
			return ret;
		}
	}
	return 0;
}

struct old_clone {
	const char *snap_path;
	const struct snap_disks *sd;
};

static void drop_old_clone(const char *key, const char *value, void *opaque)
{
	const struct old_clone *o = opaque;
	size_t n = strlen(o->snap_path), vl = strlen(value);

	/* Only copies this code made for that path: "<snap>.<id>.<stamp>.img". */
	if (strncmp(value, o->snap_path, n) || value[n] != '.' || vl < 4 ||
	    strcmp(value + vl - 4, ".img"))
		return;
	for (unsigned i = 0; i < o->sd->n; i++)
		if (!strcmp(o->sd->path[i], value))
			return;
	unlink(value);
}

void snap_disks_commit(struct snap_disks *sd, const char *snap_path, const struct config *old_cfg)
{
	struct old_clone o = { snap_path, sd };

	if (old_cfg)
		config_foreach(old_cfg, "pci.", drop_old_clone, &o);
	free(sd->path);
	memset(sd, 0, sizeof(*sd));
}

void snap_disks_abort(struct snap_disks *sd)
{
	for (unsigned i = 0; i < sd->n; i++)
		unlink(sd->path[i]);
	free(sd->path);
	memset(sd, 0, sizeof(*sd));
}
