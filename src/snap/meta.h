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
/*
 * The metadata's summary agrees with its configuration @cfg and with the file's sections:
 * "vcpus" with the cpus key and the vCPU sections (exactly cpu0..cpuN-1), "memory" with
 * memory.size and the memory area, "devices" with the device sections and their versions,
 * "name" with the name key.  A file that disagrees with itself is refused.
 */
struct snap_file;
int snap_meta_check(const char *json, const struct config *cfg, const struct snap_file *f,
		    char *err, size_t errlen);

#endif
