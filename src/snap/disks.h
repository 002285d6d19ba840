/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Disk images in snapshots.  A checkpoint fsyncs every registered image (struct vm_disk), so
 * what the guest wrote before the checkpoint is durable.  With snapshot.disks=clone it also
 * stores a copy of each image beside the snapshot (FICLONE reflink where the filesystem can,
 * else a sparse copy) and records the copy's path in the snapshot's configuration, so a restore
 * sees each disk exactly as it was.  Without it the restored guest sees the disk as it is now.
 */
#ifndef KHYVE_SNAP_DISKS_H
#define KHYVE_SNAP_DISKS_H

#include <stdbool.h>
#include <stddef.h>

struct vm;
struct config;

struct snap_disks {
	unsigned n;
	char (*path)[4200]; /* copies written by this save */
};

/*
 * fsync every disk; with @clone copy each to a file of its own beside @snap_path and point
 * @meta_cfg's path key at it.
 */
int snap_disks_save(struct vm *vm, const char *snap_path, bool clone, struct config *meta_cfg,
		    struct snap_disks *sd, char *err, size_t errlen);
/* The snapshot was committed: remove the copies the file it replaced used (@old_cfg). */
void snap_disks_commit(struct snap_disks *sd, const char *snap_path, const struct config *old_cfg);
/* The save failed: remove this save's copies. */
void snap_disks_abort(struct snap_disks *sd);

#endif
