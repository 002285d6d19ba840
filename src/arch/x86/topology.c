// SPDX-License-Identifier: BSD-2-Clause
/* The CPU topology the guest sees, from -c to the CPUID leaves (see topology.h). */
#include "arch/x86/topology.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CPUID_1_EDX_HTT (1U << 28)
#define TOPO_LEVEL_SMT 1
#define TOPO_LEVEL_CORE 2
#define VENDOR_AMD_EBX 0x68747541   /* "Auth"enticAMD */
#define VENDOR_HYGON_EBX 0x6f677948 /* "Hygo"nGenuine */

/* A count key: absent (0), or 1..TOPO_MAX_CPUS. */
static int topo_key(const struct config *cfg, const char *key, unsigned *out, char *err,
		    size_t errlen)
{
	const char *v = config_get(cfg, key);
	unsigned long n;
	char *end;

	*out = 0;
	if (!v)
		return 0;
	n = strtoul(v, &end, 10);
	if (*v < '0' || *v > '9' || *end || !n || n > TOPO_MAX_CPUS) {
		snprintf(err, errlen, "%s=%s: must be a number from 1 to %d", key, v,
			 TOPO_MAX_CPUS);
		return -EINVAL;
	}
	*out = (unsigned)n;
	return 0;
}

static bool pow2(unsigned n)
{
	return n && !(n & (n - 1));
}

/* Bits an id field needs to count @n things. */
static unsigned id_bits(unsigned n)
{
	unsigned b = 0;

	while ((1U << b) < n)
		b++;
	return b;
}

int topo_from_config(const struct config *cfg, struct cpu_topo *t, char *err, size_t errlen)
{
	unsigned cpus, s, c, th;

	if (topo_key(cfg, "cpus", &cpus, err, errlen) ||
	    topo_key(cfg, "sockets", &s, err, errlen) || topo_key(cfg, "cores", &c, err, errlen) ||
	    topo_key(cfg, "threads", &th, err, errlen))
		return -EINVAL;
	if (!th)
		th = 1;
	if (!cpus) {
		s = s ? s : 1;
		c = c ? c : 1;
		cpus = s * c * th;
	} else if (!s) {
		/* bhyve: without sockets=, what is left over of cpus are sockets. */
		c = c ? c : 1;
		s = cpus / (c * th);
	} else if (!c) {
		c = cpus / (s * th);
	}
	if (!s || !c || s * c * th != cpus) {
		snprintf(err, errlen,
			 "-c: %u vCPUs are not %s%u socket(s) x %s%u core(s) x %u thread(s) "
			 "(cpus must be sockets x cores x threads)",
			 cpus, s ? "" : "a whole number of ", s ? s : cpus,
			 c ? "" : "a whole number of ", c ? c : 1, th);
		return -EINVAL;
	}
	if (cpus > TOPO_MAX_CPUS) {
		snprintf(err, errlen,
			 "-c: %u sockets x %u cores x %u threads is %u vCPUs; at most %d", s, c, th,
			 cpus, TOPO_MAX_CPUS);
		return -EINVAL;
	}
	if (!pow2(c) || !pow2(th)) {
		snprintf(err, errlen,
			 "-c: cores=%u threads=%u: cores and threads per socket must be powers of "
			 "two (1, 2, 4, ...), so that APIC ids have no holes; use more sockets",
			 c, th);
		return -EINVAL;
	}
	t->cpus = cpus;
	t->sockets = s;
	t->cores = c;
	t->threads = th;
	return 0;
}

/* One subleaf of 0xB or 0x1F: @level 0 (SMT), 1 (core) or 2 (the end of the list). */
static void topo_level(const struct cpu_topo *t, unsigned apic_id, uint32_t fn, unsigned level,
		       struct kvm_cpuid_entry2 *e)
{
	unsigned tbits = id_bits(t->threads), cbits = id_bits(t->cores);

	memset(e, 0, sizeof(*e));
	e->function = fn;
	e->index = level;
	e->flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
	e->ecx = level & 0xff;
	e->edx = apic_id;
	if (level == 0) {
		e->eax = tbits;
		e->ebx = t->threads;
		e->ecx |= TOPO_LEVEL_SMT << 8;
	} else if (level == 1) {
		e->eax = tbits + cbits;
		e->ebx = t->threads * t->cores;
		e->ecx |= TOPO_LEVEL_CORE << 8;
	}
}

int topo_cpuid_apply(const struct cpu_topo *t, unsigned apic_id, struct kvm_cpuid_entry2 *e,
		     unsigned *n, unsigned max)
{
	unsigned per_pkg = t->cores * t->threads;
	unsigned core = apic_id / t->threads % t->cores, socket = apic_id / per_pkg;
	uint32_t max_leaf = 0, vendor = 0;
	bool amd;
	unsigned o = 0;

	for (unsigned i = 0; i < *n; i++) {
		if (e[i].function == 0) {
			max_leaf = e[i].eax;
			vendor = e[i].ebx;
		}
	}
	amd = vendor == VENDOR_AMD_EBX || vendor == VENDOR_HYGON_EBX;
	for (unsigned i = 0; i < *n; i++) {
		struct kvm_cpuid_entry2 *x = &e[i];

		switch (x->function) {
		case 1:
			x->ebx = (x->ebx & 0xffff) | apic_id << 24 | (per_pkg & 0xff) << 16;
			x->edx = per_pkg > 1 ? x->edx | CPUID_1_EDX_HTT : x->edx & ~CPUID_1_EDX_HTT;
			break;
		case 4:
			/* A cache (type != 0): L1 and L2 are a core's, L3 the package's. */
			if (x->eax & 0x1f) {
				unsigned share = ((x->eax >> 5) & 7) >= 3 ? per_pkg : t->threads;

				x->eax = (x->eax & 0x3fff) | (share - 1) << 14 |
					 (t->cores - 1) << 26;
			}
			break;
		case 0x80000008:
			if (amd)
				x->ecx = (x->ecx & ~0xf0ffU) | ((per_pkg - 1) & 0xff) |
					 id_bits(per_pkg) << 12;
			break;
		case 0x8000001e:
			x->eax = apic_id;
			x->ebx = (x->ebx & ~0xffffU) | (t->threads - 1) << 8 | core;
			x->ecx = (x->ecx & ~0xffU) | socket;
			break;
		default:
			break;
		}
		/* 0xB and 0x1F are written afresh below. */
		if (x->function != 0xb && x->function != 0x1f)
			e[o++] = *x;
	}
	for (uint32_t fn = 0xb; fn <= 0x1f; fn += 0x1f - 0xb) {
		if (max_leaf < fn)
			continue;
		if (o + 3 > max)
			return -ENOSPC;
		for (unsigned level = 0; level < 3; level++)
			topo_level(t, apic_id, fn, level, &e[o++]);
	}
	*n = o;
	return 0;
}
