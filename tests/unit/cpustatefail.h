/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * KVM's vCPU and VM-wide state calls (arch/x86/cpustate.c) failing one at a time, for the
 * tests against a real KVM (test_cpustate_faults) and against a KVM the test plays
 * (test_cpustate_fakekvm_faults): the same failures, the same checks.  Include after
 * <cmocka.h> and "faultinj.h".
 */
#ifndef KHYVE_TESTS_CPUSTATEFAIL_H
#define KHYVE_TESTS_CPUSTATEFAIL_H

#include <errno.h>
#include <linux/kvm.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "arch/x86/cpustate.h"
#include "faultinj.h"
#include "vcpu.h"

/*
 * The first get of the process (the MSR list is built once and kept) finding
 * KVM_GET_MSR_INDEX_LIST failing: -EIO; then the list's buffer (the second calloc of a get,
 * the XSAVE area is the first) not allocated: -ENOMEM.
 */
static inline void cpustatefail_msr_list(struct vcpu *v)
{
	struct cpustate cs;

	fi_ioctl_fail(KVM_GET_MSR_INDEX_LIST, 1, EIO);
	assert_int_equal(cpustate_get(v, &cs), -EIO);
	assert_true(fi_all_fired());
	cpustate_free(&cs);
	fi_reset();
	fi_fail(FI_CALLOC, 2, ENOMEM);
	assert_int_equal(cpustate_get(v, &cs), -ENOMEM);
	assert_true(fi_all_fired());
	cpustate_free(&cs);
	fi_reset();
}

/*
 * Each ioctl cpustate_set(@v, @cs) makes failing in turn (EIO): it was made, and the set fails
 * with -EIO and a message naming it (after @prefix) and the error.  Then each of the set's
 * two allocations (the CPUID and the MSR buffers): -ENOMEM, naming the ioctl it was for.
 */
static inline void cpustatefail_set_each(struct vcpu *v, struct cpustate *cs, const char *prefix)
{
	static const struct {
		unsigned long req;
		const char *name;
	} reqs[] = {
		{ KVM_SET_CPUID2, "KVM_SET_CPUID" },
		{ KVM_SET_MP_STATE, "KVM_SET_MP_STATE" },
		{ KVM_SET_SREGS, "KVM_SET_SREGS" },
		{ KVM_SET_REGS, "KVM_SET_REGS" },
		{ KVM_SET_XCRS, "KVM_SET_XCRS" },
		{ KVM_SET_XSAVE, "KVM_SET_XSAVE" },
		{ KVM_SET_LAPIC, "KVM_SET_LAPIC" },
		{ KVM_SET_MSRS, "KVM_SET_MSRS" },
		{ KVM_SET_VCPU_EVENTS, "KVM_SET_VCPU_EVENTS" },
		{ KVM_SET_DEBUGREGS, "KVM_SET_DEBUGREGS" },
	};
	char err[256];

	for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
		char want[128];
		int ret;

		fi_reset();
		err[0] = '\0';
		fi_ioctl_fail(reqs[i].req, 1, EIO);
		ret = cpustate_set(v, cs, err, sizeof(err));
		if (!fi_all_fired())
			fail_msg("%s was not made by cpustate_set", reqs[i].name);
		snprintf(want, sizeof(want), "%s%s", prefix, reqs[i].name);
		if (ret != -EIO || !strstr(err, want) || !strstr(err, strerror(EIO)))
			fail_msg("%s failing: %d '%s'", reqs[i].name, ret, err);
	}
	for (unsigned n = 1; n <= 2; n++) {
		fi_reset();
		fi_fail(FI_CALLOC, n, ENOMEM);
		assert_int_equal(cpustate_set(v, cs, err, sizeof(err)), -ENOMEM);
		assert_true(fi_all_fired());
		assert_non_null(strstr(err, n == 1 ? "KVM_SET_CPUID" : "KVM_SET_MSRS"));
	}
}

/*
 * Each ioctl vmstate_get(@vm_fd) makes failing in turn (EIO; KVM_GET_IRQCHIP three times:
 * PIC master, PIC slave, IOAPIC): -EIO.  Then, from a state read whole, each of vmstate_set's:
 * -EIO and a message naming it (and, with @names_errno, the error).  @st: that state.
 */
static inline void cpustatefail_vmstate_each(int vm_fd, struct vmstate *st, bool names_errno)
{
	static const struct {
		unsigned long req;
		unsigned nth;
		const char *name;
	} get[] = {
		{ KVM_GET_IRQCHIP, 1, NULL }, { KVM_GET_IRQCHIP, 2, NULL },
		{ KVM_GET_IRQCHIP, 3, NULL }, { KVM_GET_PIT2, 1, NULL },
		{ KVM_GET_CLOCK, 1, NULL },
	},
	  set[] = {
		  { KVM_SET_IRQCHIP, 1, "KVM_SET_IRQCHIP" }, { KVM_SET_IRQCHIP, 2, "KVM_SET_IRQCHIP" },
		  { KVM_SET_IRQCHIP, 3, "KVM_SET_IRQCHIP" }, { KVM_SET_PIT2, 1, "KVM_SET_PIT2" },
		  { KVM_SET_CLOCK, 1, "KVM_SET_CLOCK" },
	  };
	char err[256];

	for (size_t i = 0; i < sizeof(get) / sizeof(get[0]); i++) {
		fi_reset();
		fi_ioctl_fail(get[i].req, get[i].nth, EIO);
		assert_int_equal(vmstate_get(vm_fd, st), -EIO);
		assert_true(fi_all_fired());
	}
	fi_reset();
	assert_int_equal(vmstate_get(vm_fd, st), 0);
	for (size_t i = 0; i < sizeof(set) / sizeof(set[0]); i++) {
		int ret;

		fi_reset();
		err[0] = '\0';
		fi_ioctl_fail(set[i].req, set[i].nth, EIO);
		ret = vmstate_set(vm_fd, st, err, sizeof(err));
		assert_true(fi_all_fired());
		if (ret != -EIO || !strstr(err, set[i].name) ||
		    (names_errno && !strstr(err, strerror(EIO))))
			fail_msg("%s #%u failing: %d '%s'", set[i].name, set[i].nth, ret, err);
	}
}

#endif
