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
};

/*
 * Parse a cpu.features value (NULL or "" is an empty mask) into @m.  Returns 0, or -EINVAL
 * with a message in @err naming the item at fault.
 */
int cpuid_mask_parse(const char *spec, struct cpuid_mask *m, char *err, size_t errlen);

/* Whether the mask takes the feature called @name away (false for unknown names). */
bool cpuid_mask_has(const struct cpuid_mask *m, const char *name);

/* Clear the masked bits in the @n CPUID entries @e (and leaf 0xD when XSAVE goes). */
void cpuid_mask_apply(const struct cpuid_mask *m, struct kvm_cpuid_entry2 *e, unsigned n);

#endif
