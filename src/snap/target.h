/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Where a checkpoint may be written.  A save writes a temporary file beside the target and
 * renames it over the target, which replaces whatever is there; so before the guest is even
 * paused, the target is checked:
 *   - if something exists at the path (lstat: a symbolic link is not followed), it must be a
 *     regular file, and not one this VM uses: a disk image (or a copy it runs on), a console
 *     log file; nor the path of its control socket;
 *   - its directory must exist and be writable;
 *   - the filesystem must have room for the guest memory a save would store.
 */
#ifndef KHYVE_SNAP_TARGET_H
#define KHYVE_SNAP_TARGET_H

#include <stddef.h>

struct vm;

/* 0, or -errno with @err saying what is wrong with @path and what to do. */
int snap_target_check(struct vm *vm, const char *path, char *err, size_t errlen);

#endif
