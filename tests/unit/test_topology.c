// SPDX-License-Identifier: BSD-2-Clause
/*
 * CPU topology: -c's counts, and the CPUID leaves built from them decoded the way a guest
 * decodes them (Linux's detect_extended_topology and cacheinfo), for every vCPU.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "arch/x86/topology.h"
#include "config.h"

static char err[256];

static int topo(struct cpu_topo *t, ...)
{
	struct config c;
	const char *p;
	va_list ap;
	int ret;

	config_init(&c);
	va_start(ap, t);
	while ((p = va_arg(ap, const char *)))
		assert_int_equal(config_set_pair(&c, p), 0);
	va_end(ap);
	memset(t, 0, sizeof(*t));
	err[0] = '\0';
	ret = topo_from_config(&c, t, err, sizeof(err));
	config_free(&c);
	return ret;
}

static void expect(const struct cpu_topo *t, unsigned cpus, unsigned s, unsigned c, unsigned th)
{
	assert_int_equal(t->cpus, cpus);
	assert_int_equal(t->sockets, s);
	assert_int_equal(t->cores, c);
	assert_int_equal(t->threads, th);
}

static void test_counts(void **state)
{
	struct cpu_topo t;

	assert_int_equal(topo(&t, NULL), 0);
	expect(&t, 1, 1, 1, 1);
	assert_int_equal(topo(&t, "cpus=4", NULL), 0); /* bhyve: a socket per vCPU */
	expect(&t, 4, 4, 1, 1);
	assert_int_equal(topo(&t, "sockets=2", "cores=2", NULL), 0);
	expect(&t, 4, 2, 2, 1);
	assert_int_equal(topo(&t, "cpus=8", "sockets=2", NULL), 0);
	expect(&t, 8, 2, 4, 1);
	assert_int_equal(topo(&t, "cpus=8", "threads=2", NULL), 0);
	expect(&t, 8, 4, 1, 2);
	assert_int_equal(topo(&t, "cpus=6", "sockets=3", "threads=2", NULL), 0);
	expect(&t, 6, 3, 1, 2);
	assert_int_equal(topo(&t, "cpus=16", "sockets=1", "cores=8", "threads=2", NULL), 0);
	expect(&t, 16, 1, 8, 2);

	/* Inconsistent: refused, naming what does not multiply up. */
	assert_int_equal(topo(&t, "cpus=4", "sockets=3", NULL), -EINVAL);
	assert_non_null(strstr(err, "4 vCPUs"));
	assert_int_equal(topo(&t, "cpus=4", "sockets=2", "cores=1", "threads=1", NULL), -EINVAL);
	assert_int_equal(topo(&t, "cpus=3", "threads=2", NULL), -EINVAL);
	/* Holes in APIC ids: refused. */
	assert_int_equal(topo(&t, "sockets=2", "cores=3", NULL), -EINVAL);
	assert_non_null(strstr(err, "powers of two"));
	assert_int_equal(topo(&t, "threads=3", NULL), -EINVAL);
	assert_int_equal(topo(&t, "sockets=16", "cores=16", NULL), -EINVAL);
	assert_non_null(strstr(err, "256 vCPUs"));
	assert_int_equal(topo(&t, "cores=0", NULL), -EINVAL);
	assert_int_equal(topo(&t, "cpus=x", NULL), -EINVAL);
}

/* What KVM_GET_SUPPORTED_CPUID gives on an Intel host, trimmed to the leaves that matter. */
static unsigned host_cpuid(struct kvm_cpuid_entry2 *e, uint32_t max_leaf, uint32_t vendor)
{
	unsigned n = 0;

	memset(e, 0, 32 * sizeof(*e));
	e[n++] = (struct kvm_cpuid_entry2){ .function = 0, .eax = max_leaf, .ebx = vendor };
	/* host: APIC id 7, 64 logical per package */
	e[n++] = (struct kvm_cpuid_entry2){ .function = 1, .ebx = 0x07400800, .edx = 0 };
	for (unsigned i = 0; i < 5; i++) {
		static const uint32_t type_level[5] = { 0x21, 0x22, 0x43, 0x63, 0 };

		e[n++] = (struct kvm_cpuid_entry2){ .function = 4,
						    .index = i,
						    .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
						    .eax = type_level[i] | 0xfc00c000 };
	}
	e[n++] = (struct kvm_cpuid_entry2){
		.function = 0xb, .index = 0, .eax = 1, .ebx = 2, .ecx = 0x100, .edx = 7
	};
	e[n++] = (struct kvm_cpuid_entry2){ .function = 0x80000008, .eax = 0x3030 };
	return n;
}

static const struct kvm_cpuid_entry2 *find(const struct kvm_cpuid_entry2 *e, unsigned n,
					   uint32_t fn, uint32_t idx)
{
	for (unsigned i = 0; i < n; i++)
		if (e[i].function == fn && e[i].index == idx)
			return &e[i];
	return NULL;
}

/* Decode 0xB / 0x1F as Linux does: SMT and core shift widths, then the ids. */
static void decode_levels(const struct kvm_cpuid_entry2 *e, unsigned n, uint32_t fn,
			  const struct cpu_topo *t, unsigned apic)
{
	const struct kvm_cpuid_entry2 *smt = find(e, n, fn, 0), *core = find(e, n, fn, 1);
	const struct kvm_cpuid_entry2 *end = find(e, n, fn, 2);
	unsigned s0, s1;

	assert_non_null(smt);
	assert_non_null(core);
	assert_non_null(end);
	assert_int_equal((smt->ecx >> 8) & 0xff, 1);
	assert_int_equal((core->ecx >> 8) & 0xff, 2);
	assert_int_equal((end->ecx >> 8) & 0xff, 0); /* the list ends */
	assert_int_equal(smt->ecx & 0xff, 0);
	assert_int_equal(core->ecx & 0xff, 1);
	assert_int_equal(smt->ebx & 0xffff, t->threads);
	assert_int_equal(core->ebx & 0xffff, t->threads * t->cores);
	assert_int_equal(smt->edx, apic);
	assert_int_equal(core->edx, apic);
	assert_true(smt->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX);
	s0 = smt->eax & 0x1f;
	s1 = core->eax & 0x1f;
	assert_true((1U << s0) >= t->threads && (1U << s1) >= t->threads * t->cores);
	assert_int_equal(apic & ((1U << s0) - 1), apic % t->threads);
	assert_int_equal((apic >> s0) & ((1U << (s1 - s0)) - 1), apic / t->threads % t->cores);
	assert_int_equal(apic >> s1, apic / (t->threads * t->cores));
}

static void check_vcpus(const struct cpu_topo *t, uint32_t max_leaf)
{
	unsigned per_pkg = t->cores * t->threads;

	/* The MADT lists APIC ids 0 .. cpus-1 (acpi.c): each vCPU's CPUID must say its own. */
	for (unsigned apic = 0; apic < t->cpus; apic++) {
		struct kvm_cpuid_entry2 e[32];
		unsigned n = host_cpuid(e, max_leaf, 0x756e6547 /* "Genu"ineIntel */);
		const struct kvm_cpuid_entry2 *l1, *l3, *l1d;

		assert_int_equal(topo_cpuid_apply(t, apic, e, &n, 32), 0);
		l1 = find(e, n, 1, 0);
		assert_int_equal(l1->ebx >> 24, apic);
		assert_int_equal((l1->ebx >> 16) & 0xff, per_pkg);
		assert_int_equal(l1->ebx & 0xffff, 0x0800); /* CLFLUSH size etc. untouched */
		assert_int_equal(!!(l1->edx & (1U << 28)), per_pkg > 1);
		l1d = find(e, n, 4, 0);
		l3 = find(e, n, 4, 3);
		assert_int_equal(((l1d->eax >> 14) & 0xfff) + 1, t->threads);
		assert_int_equal(((l3->eax >> 14) & 0xfff) + 1, per_pkg);
		assert_int_equal((l1d->eax >> 26) + 1, t->cores);
		assert_int_equal(l1d->eax & 0x3fff, 0x21);	     /* type and level kept */
		assert_int_equal(find(e, n, 4, 4)->eax, 0xfc00c000); /* no cache: untouched */
		decode_levels(e, n, 0xb, t, apic);
		if (max_leaf >= 0x1f)
			decode_levels(e, n, 0x1f, t, apic);
		else
			assert_null(find(e, n, 0x1f, 0));
		/* Intel: AMD's count stays the host's (reserved there). */
		assert_int_equal(find(e, n, 0x80000008, 0)->ecx, 0);
	}
}

static void test_cpuid(void **state)
{
	static const struct cpu_topo shapes[] = {
		{ 1, 1, 1, 1 }, { 4, 4, 1, 1 },	 { 4, 2, 2, 1 },  { 8, 2, 2, 2 },
		{ 6, 3, 1, 2 }, { 16, 1, 8, 2 }, { 12, 3, 4, 1 },
	};

	for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
		check_vcpus(&shapes[i], 0x1f);
		check_vcpus(&shapes[i], 0x16);
	}
}

static void test_cpuid_amd_and_space(void **state)
{
	struct cpu_topo t = { 8, 2, 4, 1 };
	struct kvm_cpuid_entry2 e[32];
	unsigned n = host_cpuid(e, 0x10, 0x68747541 /* "Auth"enticAMD */);

	e[n++] = (struct kvm_cpuid_entry2){ .function = 0x8000001e, .ebx = 0xff0000 };
	assert_int_equal(topo_cpuid_apply(&t, 6, e, &n, 32), 0);
	assert_int_equal(find(e, n, 0x80000008, 0)->ecx & 0xff, 3);
	assert_int_equal((find(e, n, 0x80000008, 0)->ecx >> 12) & 0xf, 2);
	assert_int_equal(find(e, n, 0x8000001e, 0)->eax, 6);
	assert_int_equal(find(e, n, 0x8000001e, 0)->ebx, 0xff0002); /* core 2, 1 thread */
	assert_int_equal(find(e, n, 0x8000001e, 0)->ecx & 0xff, 1); /* socket 1 */

	/* No room for the levels: refused, not written past the array. */
	n = host_cpuid(e, 0x1f, 0x756e6547);
	assert_int_equal(topo_cpuid_apply(&t, 0, e, &n, n + 2), -ENOSPC);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_counts),
		cmocka_unit_test(test_cpuid),
		cmocka_unit_test(test_cpuid_amd_and_space),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
