/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * -o user=NAME: khyve started as root becomes NAME (uid, gid and supplementary groups, all
 * of real, effective and saved) once the VM is built and the control socket bound, before
 * any vCPU runs.  Everything that needs root is open by then: /dev/kvm, disk images, tap
 * devices, console files, the snapshot being restored, /proc/self/pagemap.  From then on
 * saves write their files as NAME, with NAME's snapshot key (snap/trust.h).  The control
 * socket stays root's (root's khyvectl drives the VM).
 */
#ifndef KHYVE_USER_H
#define KHYVE_USER_H

#include <stddef.h>

struct config;

/* No-op without user=; as the same user, a no-op too; otherwise needs root. */
int user_drop(const struct config *cfg, char *err, size_t errlen);

#endif
