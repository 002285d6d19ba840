/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The metadata section: JSON describing the snapshot for people and tools (bhyve's .meta and
 * more): VM name, vCPUs, memory, devices with their state versions, the configuration the VM
 * was built from, creation time, khyve version, host CPU.  Restore rebuilds the machine from
 * its "config" object.
 */
#ifndef KHYVE_SNAP_META_H
#define KHYVE_SNAP_META_H

#include <stddef.h>

struct vm;
struct config;

/* Returns a malloc'ed JSON string, or NULL.  @cfg is the configuration to record. */
char *snap_meta_build(struct vm *vm, const struct config *cfg);
/* Fill @cfg with the saved configuration. */
int snap_meta_config(const char *json, struct config *cfg, char *err, size_t errlen);

#endif
