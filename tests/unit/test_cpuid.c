// SPDX-License-Identifier: BSD-2-Clause
/* The CPUID policy (arch/x86/cpuid.h): cpu.features parsing, dependencies, applying a mask. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "arch/x86/cpuid.h"

static int parse(const char *spec, struct cpuid_mask *m, char *err, size_t errlen)
{
	memset(m, 0xa5, sizeof(*m)); /* parse must start from an empty mask */
	return cpuid_mask_parse(spec, m, err, errlen);
}

static void test_empty(void **state)
{
	static const struct cpuid_mask none;
	struct cpuid_mask m;
	char err[256];

	assert_int_equal(parse(NULL, &m, err, sizeof(err)), 0);
	assert_memory_equal(&m, &none, sizeof(m));
	assert_int_equal(parse("", &m, err, sizeof(err)), 0);
	assert_memory_equal(&m, &none, sizeof(m));
}

static void test_bits(void **state)
{
	struct cpuid_mask m;
	char err[256];

	assert_int_equal(parse("-popcnt,-smap,-rdpid,-abm,-xsaves", &m, err, sizeof(err)), 0);
	assert_int_equal(m.clear[CPUID_1_ECX], 1u << 23);
	assert_int_equal(m.clear[CPUID_7_0_EBX], 1u << 20);
	assert_int_equal(m.clear[CPUID_7_0_ECX], 1u << 22);
	assert_int_equal(m.clear[CPUID_80000001_ECX], 1u << 5);
	assert_int_equal(m.clear[CPUID_D_1_EAX], 1u << 3);
	assert_int_equal(m.clear[CPUID_1_EDX], 0);
	assert_true(cpuid_mask_has(&m, "popcnt"));
	assert_false(cpuid_mask_has(&m, "xsave"));
	assert_false(cpuid_mask_has(&m, "nosuch"));
}

/* Taking XSAVE away takes everything whose state lives in the XSAVE area. */
static void test_deps(void **state)
{
	static const char *const gone[] = { "xsave",	   "avx",     "avx2",	  "fma",
					    "f16c",	   "avx512f", "avx512bw", "avx512vl",
					    "avx512_fp16", "pku",     "xsaveopt", "xsavec",
					    "xsaves",	   "vaes",    "amx_int8", "avx_vnni",
					    "avx512_bf16" };
	struct cpuid_mask m;
	char err[256];

	assert_int_equal(parse("-xsave", &m, err, sizeof(err)), 0);
	for (size_t i = 0; i < sizeof(gone) / sizeof(gone[0]); i++)
		if (!cpuid_mask_has(&m, gone[i]))
			fail_msg("-xsave left %s", gone[i]);
	assert_false(cpuid_mask_has(&m, "popcnt"));
	assert_false(cpuid_mask_has(&m, "sse4_2"));
	assert_false(cpuid_mask_has(&m, "aes"));

	/* A leaf feature takes nothing with it; a middle one only what is above it. */
	assert_int_equal(parse("-avx2", &m, err, sizeof(err)), 0);
	assert_true(cpuid_mask_has(&m, "avx512f"));
	assert_false(cpuid_mask_has(&m, "avx"));
	assert_int_equal(parse("-ssse3", &m, err, sizeof(err)), 0);
	assert_true(cpuid_mask_has(&m, "sse4_1"));
	assert_true(cpuid_mask_has(&m, "sse4_2"));
	assert_false(cpuid_mask_has(&m, "pni"));
}

static void test_refused(void **state)
{
	static const struct {
		const char *spec, *msg;
	} bad[] = {
		{ "popcnt", "only be taken away ('-popcnt')" },
		{ "+avx", "only be taken away ('-avx')" },
		{ "-popcn", "unknown CPU feature 'popcn'" },
		{ "-", "unknown CPU feature ''" },
		{ "-popcnt,,-avx", "empty item" },
		{ ",-avx", "empty item" },
		{ "-popcnt,", "trailing ','" },
		{ "-avx,-lm", "unknown CPU feature 'lm'" },
	};
	struct cpuid_mask m;
	char err[256];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = 0;
		assert_int_equal(parse(bad[i].spec, &m, err, sizeof(err)), -EINVAL);
		if (!strstr(err, bad[i].msg))
			fail_msg("'%s': message '%s' lacks '%s'", bad[i].spec, err, bad[i].msg);
		assert_non_null(strstr(err, "cpu.features"));
	}
}

static struct kvm_cpuid_entry2 entry(uint32_t fn, uint32_t idx, uint32_t flags)
{
	struct kvm_cpuid_entry2 e = { .function = fn, .index = idx, .flags = flags };

	e.eax = e.ebx = e.ecx = e.edx = 0xffffffff;
	return e;
}

static void test_apply(void **state)
{
	struct kvm_cpuid_entry2 e[] = {
		entry(0, 0, 0),
		entry(1, 0, 0),
		entry(7, 0, KVM_CPUID_FLAG_SIGNIFCANT_INDEX),
		entry(7, 1, KVM_CPUID_FLAG_SIGNIFCANT_INDEX),
		entry(0xd, 0, KVM_CPUID_FLAG_SIGNIFCANT_INDEX),
		entry(0xd, 1, KVM_CPUID_FLAG_SIGNIFCANT_INDEX),
		entry(0xd, 2, KVM_CPUID_FLAG_SIGNIFCANT_INDEX),
		entry(0x80000001, 0, 0),
	};
	struct cpuid_mask m;
	char err[256];

	assert_int_equal(parse("-popcnt,-smep,-umip,-fsrm,-rdtscp", &m, err, sizeof(err)), 0);
	cpuid_mask_apply(&m, e, sizeof(e) / sizeof(e[0]));
	assert_int_equal(e[0].eax & e[0].ebx & e[0].ecx & e[0].edx, 0xffffffff);
	assert_int_equal(e[1].ecx, ~(1u << 23));
	assert_int_equal(e[1].edx, 0xffffffff);
	assert_int_equal(e[2].ebx, ~(1u << 7));
	assert_int_equal(e[2].ecx, ~(1u << 2));
	assert_int_equal(e[2].edx, ~(1u << 4));
	/* Subleaf 1 of leaf 7 is another word: leaf 7.0's bits do not touch it. */
	assert_int_equal(e[3].eax & e[3].ebx & e[3].ecx & e[3].edx, 0xffffffff);
	assert_int_equal(e[4].eax, 0xffffffff);
	assert_int_equal(e[7].edx, ~(1u << 27));

	assert_int_equal(parse("-xsave", &m, err, sizeof(err)), 0);
	cpuid_mask_apply(&m, e, sizeof(e) / sizeof(e[0]));
	assert_int_equal(e[1].ecx & (1u << 26 | 1u << 28 | 1u << 12 | 1u << 29), 0);
	assert_int_equal(e[2].ebx & (1u << 5 | 1u << 16), 0);
	for (int i = 4; i <= 6; i++)
		assert_int_equal(e[i].eax | e[i].ebx | e[i].ecx | e[i].edx, 0);
	assert_int_equal(e[3].eax & (1u << 4 | 1u << 5), 0);
}

/* A KVM that shows features anyway (PVM): what it kept, and the Linux options for the rest. */
static void test_unkept(void **state)
{
	struct kvm_cpuid_entry2 e[] = {
		entry(1, 0, 0),
		entry(7, 0, KVM_CPUID_FLAG_SIGNIFCANT_INDEX),
		entry(0x40000001, 0, 0),
	};
	struct cpuid_mask m, u;
	char err[256], buf[512];

	assert_int_equal(parse("-xsave,-popcnt,-smap,-kvm-pv-ipi", &m, err, sizeof(err)), 0);
	e[2].eax &= ~(1u << 11); /* KVM kept its own leaf: pv-ipi is gone */
	e[1].ebx &= ~(1u << 20); /* and, say, smap */
	cpuid_mask_unkept(&m, e, 3, &u);
	assert_true(cpuid_mask_has(&u, "popcnt"));
	assert_true(cpuid_mask_has(&u, "xsave"));
	assert_true(cpuid_mask_has(&u, "avx")); /* a dependent, still shown */
	assert_false(cpuid_mask_has(&u, "smap"));
	assert_false(cpuid_mask_has(&u, "kvm-pv-ipi"));
	/* Only what the user named goes on the command line; Linux drops the dependents. */
	assert_int_equal(cpuid_mask_linux_cmdline(&u, buf, sizeof(buf)),
			 (int)strlen("noxsave clearcpuid=popcnt"));
	assert_string_equal(buf, "noxsave clearcpuid=popcnt");

	/* Everything kept: nothing to add. */
	cpuid_mask_apply(&m, e, 3);
	cpuid_mask_unkept(&m, e, 3, &u);
	assert_int_equal(cpuid_mask_linux_cmdline(&u, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "");

	assert_int_equal(parse("-smap,-umip", &m, err, sizeof(err)), 0);
	assert_int_equal(cpuid_mask_linux_cmdline(&m, buf, sizeof(buf)),
			 (int)strlen("clearcpuid=smap,umip"));
	assert_string_equal(buf, "clearcpuid=smap,umip");
	assert_int_equal(cpuid_mask_linux_cmdline(&m, buf, 10), -ENOSPC);
	/* Linux reads 127 characters of clearcpuid=: a longer list would be cut. */
	assert_int_equal(parse("-avx512f,-avx512dq,-avx512ifma,-avx512pf,-avx512er,-avx512cd,"
			       "-avx512bw,-avx512vl,-avx512vbmi,-avx512_vbmi2,-avx512_vnni,"
			       "-avx512_bitalg,-avx512_vpopcntdq",
			       &m, err, sizeof(err)),
			 0);
	assert_int_equal(cpuid_mask_linux_cmdline(&m, buf, sizeof(buf)), -ENOSPC);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty), cmocka_unit_test(test_bits),
		cmocka_unit_test(test_deps),  cmocka_unit_test(test_refused),
		cmocka_unit_test(test_apply), cmocka_unit_test(test_unkept),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
