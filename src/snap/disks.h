/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Disk images in snapshots.
 *
 * A checkpoint fsyncs every registered image (struct vm_disk), so what the guest wrote before
 * the checkpoint is durable.  With snapshot.disks=clone it also stores a copy of each image
 * beside the snapshot (FICLONE reflink where the filesystem can, else a sparse copy) and points
 * the snapshot's configuration at the copy, so a restore sees each disk exactly as it was.
 *
 * The "disks" section records, for each disk, what identifies the state the guest's memory
 * goes with (doc/snapshot-format.md, "Disks"): the absolute path, the size and the
 * modification time (a stamp this code sets right after the fsync, to the nanosecond, so any
 * later write gives the file another one), plus device and inode numbers and whether the file
 * is a copy this code made.  A restore refuses a disk whose size or modification time differ
 * (snap_disk_check), unless the user accepts it (snapshot.disk_changed=accept).  Only files
 * that section lists as copies, still the same inode, named as this code names them and not
 * open in the VM, are ever deleted (snap_disks_commit).
 */
#ifndef KHYVE_SNAP_DISKS_H
#define KHYVE_SNAP_DISKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vm;
struct config;
struct snap_file;
struct snap_writer;

#define SNAP_DISKS_VERSION 1
#define SNAP_DISKS_MAX 256

/* One disk's identity as saved. */
struct snap_disk_rec {
	char id[48];	 /* device instance id ("pci.0.3.0") */
	char path[4096]; /* absolute: the image, or the copy this save made */
	uint64_t size;
	uint64_t mtime_sec;
	uint32_t mtime_nsec;
	uint64_t dev, ino;
	bool copy; /* a copy made beside the snapshot (snapshot.disks=clone) */
};

struct snap_disks {
	unsigned n;
	struct snap_disk_rec *rec;
	unsigned ncopies; /* rec[0 .. ncopies) with copy set were written by this save */
};

/*
 * fsync and stamp every disk and record its identity; with @clone copy each to a file of its
 * own beside @snap_path and point @meta_cfg's path key at the copy.  Disk paths in @meta_cfg
 * become absolute.
 */
int snap_disks_save(struct vm *vm, const char *snap_path, bool clone, struct config *meta_cfg,
		    struct snap_disks *sd, char *err, size_t errlen);
/* The "disks" section, and its bytes alone (into a saving stream). */
struct sstream;
int snap_disks_encode(const struct snap_disks *sd, struct sstream *s);
int snap_disks_write(const struct snap_disks *sd, struct snap_writer *w);
/*
 * Decode and check @f's "disks" section into @sd.  -ENOENT (and an empty @sd) when the file
 * has none (written before khyve recorded disks), -EINVAL with @err when it is malformed.
 */
int snap_disks_read(const struct snap_file *f, struct snap_disks *sd, char *err, size_t errlen);
/* Decode a "disks" section's bytes: what snap_disks_read does after finding the section. */
int snap_disks_decode(const void *buf, size_t len, struct snap_disks *sd, char *err, size_t errlen);
const struct snap_disk_rec *snap_disks_find(const struct snap_disks *sd, const char *id);

/*
 * The snapshot was committed.  Delete the copies the file it replaced had made (@old, from
 * that file's disks section; NULL when there was none or it is not trusted), but only those
 * that snap_disks_save named for @snap_path, that are still the inode recorded, and that no
 * disk of @vm has open (a VM restored from that file runs on them).
 */
void snap_disks_commit(struct snap_disks *sd, struct vm *vm, const char *snap_path,
		       const struct snap_disks *old);
/* The save failed: remove this save's copies. */
void snap_disks_abort(struct snap_disks *sd);
void snap_disks_free(struct snap_disks *sd);

/*
 * Restore: is the image open as @fd (at @path, the path the restore uses) the one @saved
 * describes?  0 if its size and modification time match; else, unless @accept, -ESTALE with
 * @err saying what changed and what to do.  @saved NULL: the snapshot recorded nothing for
 * this disk (an older khyve); 0 with a warning on stderr.
 */
int snap_disk_check(const struct snap_disk_rec *saved, const char *id, int fd, const char *path,
		    bool accept, char *err, size_t errlen);
/* snap_disk_check for every disk of @vm against @f's disks section. */
int snap_disks_verify(struct vm *vm, const struct snap_file *f, bool accept, char *err,
		      size_t errlen);

/* @path made absolute against the current directory (not resolved: symlinks stay). */
int snap_abs_path(const char *path, char *out, size_t len);

#endif
