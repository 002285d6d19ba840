// SPDX-License-Identifier: BSD-2-Clause
/* Where a checkpoint may be written (see target.h). */
#include "snap/target.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "config.h"
#include "ctl/ctl.h"
#include "snap/disks.h"
#include "snap/format.h"
#include "snap/memory.h"
#include "vm.h"

/* What a snapshot holds besides guest memory: header, sections, table (a bound). */
#define SNAP_OVERHEAD (SNAP_MEM_ALIGN + (1 << 20))
#define MiB_ROUND(x) ((unsigned long long)(((x) + (1 << 20) - 1) >> 20))

static const char *file_kind(mode_t m)
{
	return S_ISDIR(m)    ? "a directory"
	       : S_ISLNK(m)  ? "a symbolic link"
	       : S_ISCHR(m)  ? "a character device"
	       : S_ISBLK(m)  ? "a block device"
	       : S_ISFIFO(m) ? "a FIFO"
	       : S_ISSOCK(m) ? "a socket"
			     : "not a regular file";
}

static bool same_file(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}

/* What of this VM's the regular file @st is, or NULL: its disks, its console log files. */
static const char *used_by_vm(struct vm *vm, const struct stat *st, char *buf, size_t len)
{
	struct stat o;

	for (struct vm_disk *d = vm->disks; d; d = d->next) {
		if (!fstat(d->fd, &o) && same_file(st, &o)) {
			snprintf(buf, len, "the disk image of %s", d->id);
			return buf;
		}
	}
	for (unsigned i = 1; i <= 4; i++) {
		char key[32];
		const char *v;

		snprintf(key, sizeof(key), "lpc.com%u.path", i);
		v = vm->cfg ? config_get(vm->cfg, key) : NULL;
		if (v && !strncmp(v, "file:", 5) && !stat(v + 5, &o) && same_file(st, &o)) {
			snprintf(buf, len, "the COM%u log file", i);
			return buf;
		}
	}
	return NULL;
}

/* Is @abs this VM's control socket path (it may be gone from the filesystem)? */
static bool is_ctl_socket(struct vm *vm, const char *abs)
{
	const char *configured = vm->cfg ? config_get(vm->cfg, "ctl.socket") : NULL;
	char sock[4096], sock_abs[4096];

	if (configured && !strcmp(configured, "off"))
		return false;
	return !ctl_socket_path(vm->name, configured, sock, sizeof(sock)) &&
	       !snap_abs_path(sock, sock_abs, sizeof(sock_abs)) && !strcmp(sock_abs, abs);
}

static int check_existing(struct vm *vm, const char *path, const char *abs, char *err,
			  size_t errlen)
{
	char what[96];
	struct stat st;

	if (is_ctl_socket(vm, abs)) {
		snprintf(err, errlen, "checkpoint target %s is this VM's control socket", path);
		return -EINVAL;
	}
	if (lstat(abs, &st)) {
		if (errno == ENOENT)
			return 0;
		snprintf(err, errlen, "checkpoint target %s: %s", path, strerror(errno));
		return -errno;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen,
			 "checkpoint target %s is %s: a checkpoint only replaces a regular file "
			 "(give the path of one, or a new name)",
			 path, file_kind(st.st_mode));
		return S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
	}
	if (used_by_vm(vm, &st, what, sizeof(what))) {
		snprintf(err, errlen, "checkpoint target %s is %s: this VM is using it", path,
			 what);
		return -EBUSY;
	}
	return 0;
}

static int check_dir(struct vm *vm, const char *path, const char *abs, char *err, size_t errlen)
{
	char dir[4096];
	char *slash;
	struct statvfs fs;
	struct stat st;
	uint64_t need, avail;
	int ret;

	snprintf(dir, sizeof(dir), "%s", abs);
	slash = strrchr(dir, '/');
	if (slash == dir)
		slash[1] = '\0';
	else
		*slash = '\0';
	if (stat(dir, &st) || !S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "checkpoint target %s: directory %s %s", path, dir,
			 errno == ENOENT ? "does not exist" : "is not a directory");
		return -ENOENT;
	}
	if (access(dir, W_OK | X_OK)) {
		ret = -errno;
		snprintf(err, errlen, "checkpoint target %s: cannot write in directory %s: %s",
			 path, dir, strerror(errno));
		return ret;
	}
	/*
	 * Room for the memory a save stores, when the filesystem says how much it has.  Counting
	 * the touched pages walks the page table of all guest RAM (a few ms per GiB), so it is
	 * done only when there is not room for all of it.
	 */
	if (statvfs(dir, &fs) || !fs.f_blocks)
		return 0;
	avail = (uint64_t)fs.f_bavail * fs.f_frsize;
	if (avail >= snap_memory_size(vm) + SNAP_OVERHEAD)
		return 0;
	if (snap_memory_touched(vm, vm->backing, &need))
		return 0;
	need += SNAP_OVERHEAD;
	if (avail >= need)
		return 0;
	snprintf(err, errlen,
		 "checkpoint target %s: %s: %s has %llu MiB free, the snapshot needs about "
		 "%llu MiB (the guest memory in use)",
		 path, strerror(ENOSPC), dir, MiB_ROUND(avail), MiB_ROUND(need));
	return -ENOSPC;
}

int snap_target_check(struct vm *vm, const char *path, char *err, size_t errlen)
{
	char abs[4096];
	size_t n = strlen(path);
	int ret;

	if (!n || path[n - 1] == '/') {
		snprintf(err, errlen, "checkpoint target '%s' names no file", path);
		return -EINVAL;
	}
	ret = snap_abs_path(path, abs, sizeof(abs));
	if (ret) {
		snprintf(err, errlen, "checkpoint target %s: %s", path, strerror(-ret));
		return ret;
	}
	ret = check_existing(vm, path, abs, err, errlen);
	if (!ret)
		ret = check_dir(vm, path, abs, err, errlen);
	return ret;
}
