/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * bhyve's host-side options, on KVM (man/khyve.8 says which are no-ops and why):
 *   -S  memory.wired=true	guest RAM locked in host memory (mlock)
 *   -p  vcpu.N.cpuset=LIST	vCPU N's thread runs on those host CPUs ("1", "0-3,6")
 *   -U  uuid=UUID		the system UUID firmware puts in SMBIOS (fw_cfg), in status
 *   -x  x86.x2apic=true		the local APICs start in x2APIC mode
 *   -e  x86.strictio=true	an access to an I/O port nothing emulates stops the VM
 */
#ifndef KHYVE_BHYVE_OPTS_H
#define KHYVE_BHYVE_OPTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct vm;

/* "12345678-9abc-def0-1234-56789abcdef0" into its 16 bytes (as written).  0 or -EINVAL. */
int uuid_parse(const char *s, uint8_t out[16]);
/*
 * Without -U, as bhyve: a UUID of this host's name and the VM's, the same at every boot of
 * the VM here (a version 8 UUID of a BLAKE2b hash of them), set as uuid= so that status
 * shows it and a snapshot keeps it.  0 or -errno with @err.
 */
int bhyve_opts_default_uuid(struct config *cfg, char *err, size_t errlen);
/* -p VCPU:HOSTCPU: adds HOSTCPU to vcpu.VCPU.cpuset.  0 or -EINVAL with @err. */
int bhyve_opt_pin(struct config *cfg, const char *arg, char *err, size_t errlen);
/* The values of these keys, checked before a VM is built (with @ncpus vCPUs). */
int bhyve_opts_check(const struct config *cfg, unsigned ncpus, char *err, size_t errlen);
/* On the built VM: vCPU pinning (vcpu->pin), x2APIC mode (not on restore), strict I/O. */
int bhyve_opts_apply(struct vm *vm, bool restoring, char *err, size_t errlen);
/* -S: lock guest RAM, once its memory is mapped (boot or restore), before privileges go. */
int bhyve_opts_wire(struct vm *vm, char *err, size_t errlen);

#endif
