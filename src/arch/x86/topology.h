/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The CPU topology the guest sees: -c [[cpus=]N][,sockets=S][,cores=C][,threads=T] (bhyve's
 * shape; keys cpus, sockets, cores, threads).
 *
 * vCPU i is thread i % T of core (i / T) % C of socket i / (T * C), and its APIC id is i.
 * That keeps APIC ids equal to KVM vCPU ids and the MADT's list contiguous, which needs C and
 * T to be powers of two (the APIC id packs thread, core and socket into bit fields of
 * log2(T) and log2(C) bits; other counts would leave holes).  The CPUID leaves that describe
 * topology all say the same thing (Intel SDM vol. 2A, CPUID; AMD APM vol. 3, appendix E):
 *   0x1	EBX[23:16] logical processors per package, EBX[31:24] APIC id, EDX.HTT
 *   0x4	EAX[25:14] logical processors sharing each cache, EAX[31:26] cores per package
 *   0xB, 0x1F	the SMT and core levels (shift widths, counts) and the x2APIC id
 *   0x80000008 ECX (AMD) logical processors per package, 0x8000001E (AMD) ids
 * Without sockets/cores/threads every vCPU is a socket of its own, as in bhyve.
 */
#ifndef KHYVE_ARCH_X86_TOPOLOGY_H
#define KHYVE_ARCH_X86_TOPOLOGY_H

#include <stddef.h>

#include <linux/kvm.h>

#include "config.h"

#define TOPO_MAX_CPUS 255 /* xAPIC ids; 0xFF is the broadcast id */

struct cpu_topo {
	unsigned cpus, sockets, cores, threads;
};

/*
 * The topology from the keys cpus, sockets, cores and threads: missing ones are worked out
 * (cpus = S * C * T; with cpus given, sockets, else cores, is what is left over).  -EINVAL
 * with @err for values that do not multiply up, are out of range or not powers of two.
 */
int topo_from_config(const struct config *cfg, struct cpu_topo *t, char *err, size_t errlen);

/*
 * Make the @n entries @e (KVM_GET_SUPPORTED_CPUID's, room for @max) describe @t to the vCPU
 * whose APIC id is @apic_id.  Leaves 0xB and 0x1F are rewritten whole (subleaves added when
 * the host had fewer), so *@n may grow.  -ENOSPC when @max is too small.
 */
int topo_cpuid_apply(const struct cpu_topo *t, unsigned apic_id, struct kvm_cpuid_entry2 *e,
		     unsigned *n, unsigned max);

#endif
