// SPDX-License-Identifier: BSD-2-Clause
/*
 * The CPUID policy (see cpuid.h): a table of the features cpu.features can take away, where
 * each lives (Intel SDM vol. 2A, CPUID; AMD APM vol. 3, appendix E) and what depends on it.
 */
#include "arch/x86/cpuid.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REG_EAX 0
#define REG_EBX 1
#define REG_ECX 2
#define REG_EDX 3

static const struct {
	uint32_t fn, idx;
	int reg;
} cpuid_words[CPUID_NWORDS] = {
	[CPUID_1_ECX] = { 1, 0, REG_ECX },
	[CPUID_1_EDX] = { 1, 0, REG_EDX },
	[CPUID_7_0_EBX] = { 7, 0, REG_EBX },
	[CPUID_7_0_ECX] = { 7, 0, REG_ECX },
	[CPUID_7_0_EDX] = { 7, 0, REG_EDX },
	[CPUID_7_1_EAX] = { 7, 1, REG_EAX },
	[CPUID_D_1_EAX] = { 0xd, 1, REG_EAX },
	[CPUID_80000001_ECX] = { 0x80000001, 0, REG_ECX },
	[CPUID_80000001_EDX] = { 0x80000001, 0, REG_EDX },
	[CPUID_KVM_FEATURES] = { 0x40000001, 0, REG_EAX },
};

struct cpuid_feature {
	const char *name; /* as Linux prints it in /proc/cpuinfo */
	enum cpuid_word word;
	uint8_t bit;
	const char *needs; /* a feature this one cannot be without, or NULL */
};

/*
 * Features a guest may be denied.  Bits an OS sets itself (OSXSAVE, OSPKE) and the ones no
 * 64-bit guest runs without (lm, nx, fpu, sse2...) are not here.  @needs makes taking away a
 * base feature take what is built on it, as Linux's own cpuid-deps table does.
 */
static const struct cpuid_feature cpuid_features[] = {
	{ "pni", CPUID_1_ECX, 0, NULL },
	{ "pclmulqdq", CPUID_1_ECX, 1, NULL },
	{ "monitor", CPUID_1_ECX, 3, NULL },
	{ "vmx", CPUID_1_ECX, 5, NULL },
	{ "ssse3", CPUID_1_ECX, 9, "pni" },
	{ "fma", CPUID_1_ECX, 12, "avx" },
	{ "cx16", CPUID_1_ECX, 13, NULL },
	{ "pcid", CPUID_1_ECX, 17, NULL },
	{ "sse4_1", CPUID_1_ECX, 19, "ssse3" },
	{ "sse4_2", CPUID_1_ECX, 20, "sse4_1" },
	{ "x2apic", CPUID_1_ECX, 21, NULL },
	{ "movbe", CPUID_1_ECX, 22, NULL },
	{ "popcnt", CPUID_1_ECX, 23, NULL },
	{ "tsc_deadline_timer", CPUID_1_ECX, 24, NULL },
	{ "aes", CPUID_1_ECX, 25, NULL },
	{ "xsave", CPUID_1_ECX, 26, NULL },
	{ "avx", CPUID_1_ECX, 28, "xsave" },
	{ "f16c", CPUID_1_ECX, 29, "avx" },
	{ "rdrand", CPUID_1_ECX, 30, NULL },
	{ "mtrr", CPUID_1_EDX, 12, NULL },
	{ "pat", CPUID_1_EDX, 16, NULL },
	{ "clflush", CPUID_1_EDX, 19, NULL },
	{ "ht", CPUID_1_EDX, 28, NULL },
	{ "fsgsbase", CPUID_7_0_EBX, 0, NULL },
	{ "bmi1", CPUID_7_0_EBX, 3, NULL },
	{ "hle", CPUID_7_0_EBX, 4, NULL },
	{ "avx2", CPUID_7_0_EBX, 5, "avx" },
	{ "smep", CPUID_7_0_EBX, 7, NULL },
	{ "bmi2", CPUID_7_0_EBX, 8, NULL },
	{ "erms", CPUID_7_0_EBX, 9, NULL },
	{ "invpcid", CPUID_7_0_EBX, 10, NULL },
	{ "rtm", CPUID_7_0_EBX, 11, NULL },
	{ "mpx", CPUID_7_0_EBX, 14, "xsave" },
	{ "avx512f", CPUID_7_0_EBX, 16, "avx2" },
	{ "avx512dq", CPUID_7_0_EBX, 17, "avx512f" },
	{ "rdseed", CPUID_7_0_EBX, 18, NULL },
	{ "adx", CPUID_7_0_EBX, 19, NULL },
	{ "smap", CPUID_7_0_EBX, 20, NULL },
	{ "avx512ifma", CPUID_7_0_EBX, 21, "avx512f" },
	{ "clflushopt", CPUID_7_0_EBX, 23, NULL },
	{ "clwb", CPUID_7_0_EBX, 24, NULL },
	{ "avx512pf", CPUID_7_0_EBX, 26, "avx512f" },
	{ "avx512er", CPUID_7_0_EBX, 27, "avx512f" },
	{ "avx512cd", CPUID_7_0_EBX, 28, "avx512f" },
	{ "sha_ni", CPUID_7_0_EBX, 29, NULL },
	{ "avx512bw", CPUID_7_0_EBX, 30, "avx512f" },
	{ "avx512vl", CPUID_7_0_EBX, 31, "avx512f" },
	{ "avx512vbmi", CPUID_7_0_ECX, 1, "avx512f" },
	{ "umip", CPUID_7_0_ECX, 2, NULL },
	{ "pku", CPUID_7_0_ECX, 3, "xsave" },
	{ "waitpkg", CPUID_7_0_ECX, 5, NULL },
	{ "avx512_vbmi2", CPUID_7_0_ECX, 6, "avx512f" },
	{ "gfni", CPUID_7_0_ECX, 8, NULL },
	{ "vaes", CPUID_7_0_ECX, 9, "avx" },
	{ "vpclmulqdq", CPUID_7_0_ECX, 10, "avx" },
	{ "avx512_vnni", CPUID_7_0_ECX, 11, "avx512f" },
	{ "avx512_bitalg", CPUID_7_0_ECX, 12, "avx512f" },
	{ "avx512_vpopcntdq", CPUID_7_0_ECX, 14, "avx512f" },
	{ "la57", CPUID_7_0_ECX, 16, NULL },
	{ "rdpid", CPUID_7_0_ECX, 22, NULL },
	{ "movdiri", CPUID_7_0_ECX, 27, NULL },
	{ "movdir64b", CPUID_7_0_ECX, 28, NULL },
	{ "fsrm", CPUID_7_0_EDX, 4, NULL },
	{ "avx512_vp2intersect", CPUID_7_0_EDX, 8, "avx512f" },
	{ "serialize", CPUID_7_0_EDX, 14, NULL },
	{ "tsxldtrk", CPUID_7_0_EDX, 16, NULL },
	{ "amx_bf16", CPUID_7_0_EDX, 22, "amx_tile" },
	{ "avx512_fp16", CPUID_7_0_EDX, 23, "avx512bw" },
	{ "amx_tile", CPUID_7_0_EDX, 24, "xsave" },
	{ "amx_int8", CPUID_7_0_EDX, 25, "amx_tile" },
	{ "avx_vnni", CPUID_7_1_EAX, 4, "avx2" },
	{ "avx512_bf16", CPUID_7_1_EAX, 5, "avx512bw" },
	{ "xsaveopt", CPUID_D_1_EAX, 0, "xsave" },
	{ "xsavec", CPUID_D_1_EAX, 1, "xsave" },
	{ "xgetbv1", CPUID_D_1_EAX, 2, "xsave" },
	{ "xsaves", CPUID_D_1_EAX, 3, "xsavec" },
	{ "lahf_lm", CPUID_80000001_ECX, 0, NULL },
	{ "abm", CPUID_80000001_ECX, 5, NULL },
	{ "sse4a", CPUID_80000001_ECX, 6, NULL },
	{ "misalignsse", CPUID_80000001_ECX, 7, NULL },
	{ "3dnowprefetch", CPUID_80000001_ECX, 8, NULL },
	{ "xop", CPUID_80000001_ECX, 11, "avx" },
	{ "fma4", CPUID_80000001_ECX, 16, "avx" },
	{ "tbm", CPUID_80000001_ECX, 21, NULL },
	{ "topoext", CPUID_80000001_ECX, 22, NULL },
	{ "pdpe1gb", CPUID_80000001_EDX, 26, NULL },
	{ "rdtscp", CPUID_80000001_EDX, 27, NULL },
	/* KVM's (Documentation/virt/kvm/x86/cpuid.rst), by QEMU's names for them. */
	{ "kvmclock", CPUID_KVM_FEATURES, 0, NULL },
	{ "kvm-nopiodelay", CPUID_KVM_FEATURES, 1, NULL },
	{ "kvmclock2", CPUID_KVM_FEATURES, 3, NULL },
	{ "kvm-asyncpf", CPUID_KVM_FEATURES, 4, NULL },
	{ "kvm-steal-time", CPUID_KVM_FEATURES, 5, NULL },
	{ "kvm-pv-eoi", CPUID_KVM_FEATURES, 6, NULL },
	{ "kvm-pv-unhalt", CPUID_KVM_FEATURES, 7, NULL },
	{ "kvm-pv-tlb-flush", CPUID_KVM_FEATURES, 9, NULL },
	{ "kvm-asyncpf-vmexit", CPUID_KVM_FEATURES, 10, "kvm-asyncpf" },
	{ "kvm-pv-ipi", CPUID_KVM_FEATURES, 11, NULL },
	{ "kvm-poll-control", CPUID_KVM_FEATURES, 12, NULL },
	{ "kvm-pv-sched-yield", CPUID_KVM_FEATURES, 13, NULL },
	{ "kvm-asyncpf-int", CPUID_KVM_FEATURES, 14, "kvm-asyncpf" },
	{ "kvm-msi-ext-dest-id", CPUID_KVM_FEATURES, 15, NULL },
};

#define NFEATURES (sizeof(cpuid_features) / sizeof(cpuid_features[0]))

static const struct cpuid_feature *cpuid_feature_find(const char *name, size_t len)
{
	for (size_t i = 0; i < NFEATURES; i++)
		if (strlen(cpuid_features[i].name) == len &&
		    !strncmp(cpuid_features[i].name, name, len))
			return &cpuid_features[i];
	return NULL;
}

static bool cpuid_mask_test(const struct cpuid_mask *m, const struct cpuid_feature *f)
{
	return m->clear[f->word] & (1u << f->bit);
}

/* Take @f away, and everything that needs it (the table is short: a fixpoint is cheap). */
static void cpuid_mask_clear(struct cpuid_mask *m, const struct cpuid_feature *f)
{
	bool changed = true;

	m->clear[f->word] |= 1u << f->bit;
	while (changed) {
		changed = false;
		for (size_t i = 0; i < NFEATURES; i++) {
			const struct cpuid_feature *g = &cpuid_features[i];
			const struct cpuid_feature *dep;

			if (!g->needs || cpuid_mask_test(m, g))
				continue;
			dep = cpuid_feature_find(g->needs, strlen(g->needs));
			if (dep && cpuid_mask_test(m, dep)) {
				m->clear[g->word] |= 1u << g->bit;
				changed = true;
			}
		}
	}
}

int cpuid_mask_parse(const char *spec, struct cpuid_mask *m, char *err, size_t errlen)
{
	const char *p = spec;

	memset(m, 0, sizeof(*m));
	while (p && *p) {
		size_t len = strcspn(p, ",");
		const struct cpuid_feature *f;

		if (len == 0) {
			snprintf(err, errlen, "cpu.features: empty item in '%s'", spec);
			return -EINVAL;
		}
		if (p[0] != '-') {
			snprintf(err, errlen,
				 "cpu.features: '%.*s': features can only be taken away "
				 "('-%.*s'); the guest already gets every feature this host's KVM "
				 "supports",
				 (int)len, p, (int)len - (p[0] == '+'), p + (p[0] == '+'));
			return -EINVAL;
		}
		f = cpuid_feature_find(p + 1, len - 1);
		if (!f) {
			snprintf(err, errlen,
				 "cpu.features: unknown CPU feature '%.*s' (names as in "
				 "/proc/cpuinfo, or QEMU's kvm-pv-ipi style names)",
				 (int)len - 1, p + 1);
			return -EINVAL;
		}
		m->named[f->word] |= 1u << f->bit;
		cpuid_mask_clear(m, f);
		p += len;
		if (*p == ',')
			p++;
		if (p[-1] == ',' && !*p) {
			snprintf(err, errlen, "cpu.features: trailing ',' in '%s'", spec);
			return -EINVAL;
		}
	}
	return 0;
}

bool cpuid_mask_has(const struct cpuid_mask *m, const char *name)
{
	const struct cpuid_feature *f = cpuid_feature_find(name, strlen(name));

	return f && cpuid_mask_test(m, f);
}

void cpuid_mask_apply(const struct cpuid_mask *m, struct kvm_cpuid_entry2 *e, unsigned n)
{
	bool no_xsave = cpuid_mask_has(m, "xsave");

	for (unsigned i = 0; i < n; i++) {
		for (int w = 0; w < CPUID_NWORDS; w++) {
			if (e[i].function != cpuid_words[w].fn)
				continue;
			if ((e[i].flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) &&
			    e[i].index != cpuid_words[w].idx)
				continue;
			(&e[i].eax)[cpuid_words[w].reg] &= ~m->clear[w];
		}
		/*
		 * Without XSAVE the state-component leaf describes nothing: zero it, so a guest
		 * that reads it anyway sizes no XSAVE area (what hardware with XSAVE off shows).
		 */
		if (no_xsave && e[i].function == 0xd)
			e[i].eax = e[i].ebx = e[i].ecx = e[i].edx = 0;
	}
}

static const struct kvm_cpuid_entry2 *cpuid_entry(const struct kvm_cpuid_entry2 *e, unsigned n,
						  int w)
{
	for (unsigned i = 0; i < n; i++)
		if (e[i].function == cpuid_words[w].fn &&
		    (!(e[i].flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) ||
		     e[i].index == cpuid_words[w].idx))
			return &e[i];
	return NULL;
}

void cpuid_mask_unkept(const struct cpuid_mask *m, const struct kvm_cpuid_entry2 *e, unsigned n,
		       struct cpuid_mask *out)
{
	memset(out, 0, sizeof(*out));
	for (int w = 0; w < CPUID_NWORDS; w++) {
		const struct kvm_cpuid_entry2 *x = cpuid_entry(e, n, w);
		uint32_t seen = x ? (&x->eax)[cpuid_words[w].reg] : 0;

		out->named[w] = m->named[w] & seen;
		out->clear[w] = m->clear[w] & seen;
	}
}

int cpuid_mask_linux_cmdline(const struct cpuid_mask *m, char *buf, size_t len)
{
	size_t at = 0, list = 0;
	int n;

	if (!len)
		return -ENOSPC;
	buf[0] = 0;
	if (m->named[CPUID_1_ECX] & (1u << 26)) { /* xsave: Linux says noxsave */
		n = snprintf(buf, len, "noxsave");
		if (n < 0 || (size_t)n >= len)
			return -ENOSPC;
		at = (size_t)n;
	}
	for (size_t i = 0; i < NFEATURES; i++) {
		const struct cpuid_feature *f = &cpuid_features[i];

		if (f->word == CPUID_KVM_FEATURES || !(m->named[f->word] & (1u << f->bit)) ||
		    !strcmp(f->name, "xsave"))
			continue;
		n = snprintf(buf + at, len - at, "%s%s",
			     list ? ","
			     : at ? " clearcpuid="
				  : "clearcpuid=",
			     f->name);
		if (n < 0 || (size_t)n >= len - at)
			return -ENOSPC;
		list += strlen(f->name) + (list ? 1 : 0);
		at += (size_t)n;
	}
	return list > CPUID_LINUX_CLEARCPUID_MAX ? -ENOSPC : (int)at;
}
