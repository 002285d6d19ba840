/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The CPUID policy: which CPU features a guest is told about.
 *
 * A vCPU starts from what KVM supports on this host (KVM_GET_SUPPORTED_CPUID); cpu.features
 * takes features away, by their Linux /proc/cpuinfo names, as QEMU's -cpu host,-feat does:
 *
 *     -o cpu.features=-popcnt,-xsave,-avx2
 *
 * Uses: running a guest on a KVM whose instruction emulator lacks some instructions (PVM
 * here: doc/platform.md), and giving guests on unlike hosts one feature set so a snapshot
 * taken on one restores on the other.  Taking a feature away takes away the features built on
 * it (xsave takes avx, xsaveopt, pku...), so the guest never sees an impossible combination.
 * KVM's paravirtual features (leaf 0x40000001) have QEMU's names: -kvm-pv-ipi and so on.
 * Features cannot be added: KVM's supported set is already the most a guest can have.
 *
 * The mask is applied once, when vCPUs are created; the CPUID a guest saw is saved in its
 * snapshot with each vCPU (cpustate.c), so a restored guest keeps it without the option.
 */
#ifndef KHYVE_ARCH_X86_CPUID_H
#define KHYVE_ARCH_X86_CPUID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <linux/kvm.h>

/* The CPUID words holding the features the policy knows. */
enum cpuid_word {
	CPUID_1_ECX,
	CPUID_1_EDX,
	CPUID_7_0_EBX,
	CPUID_7_0_ECX,
	CPUID_7_0_EDX,
	CPUID_7_1_EAX,
	CPUID_D_1_EAX,
	CPUID_80000001_ECX,
	CPUID_80000001_EDX,
	CPUID_KVM_FEATURES, /* 0x40000001 EAX: KVM's paravirtual features */
	CPUID_NWORDS
};

struct cpuid_mask {
	uint32_t clear[CPUID_NWORDS]; /* bits to clear in each word */
	uint32_t named[CPUID_NWORDS]; /* those of them the user named (no dependents) */
};

/* Longest clearcpuid= value Linux reads (arch/x86/kernel/cpu/common.c: 127 characters). */
#define CPUID_LINUX_CLEARCPUID_MAX 127

/*
 * Parse a cpu.features value (NULL or "" is an empty mask) into @m.  Returns 0, or -EINVAL
 * with a message in @err naming the item at fault.
 */
int cpuid_mask_parse(const char *spec, struct cpuid_mask *m, char *err, size_t errlen);

/* Whether the mask takes the feature called @name away (false for unknown names). */
bool cpuid_mask_has(const struct cpuid_mask *m, const char *name);

/* Clear the masked bits in the @n CPUID entries @e (and leaf 0xD when XSAVE goes). */
void cpuid_mask_apply(const struct cpuid_mask *m, struct kvm_cpuid_entry2 *e, unsigned n);

/*
 * Some KVMs do not keep the CPUID they are given: PVM replaces leaves 1, 7 and 0xD with the
 * host's after KVM_SET_CPUID2 (it keeps KVM's own leaf 0x40000001).  From the @n entries @e
 * read back with KVM_GET_CPUID2, put in @out the features @m names that the guest still sees.
 */
void cpuid_mask_unkept(const struct cpuid_mask *m, const struct kvm_cpuid_entry2 *e, unsigned n,
		       struct cpuid_mask *out);

/*
 * The Linux command line that takes away the features of @m that CPUID could not:
 * "noxsave clearcpuid=popcnt,..." into @buf (empty when there are none).  KVM's paravirtual
 * features have no such option and are left out.  Returns the length, or -ENOSPC when it does
 * not fit in @len or the clearcpuid= list is longer than Linux reads.
 */
int cpuid_mask_linux_cmdline(const struct cpuid_mask *m, char *buf, size_t len);

#endif
