// SPDX-License-Identifier: BSD-2-Clause
/*
 * vCPU and VM-wide KVM state (arch/x86/cpustate.c) when KVM or memory fails
 * (tests/faultinj.h): each ioctl of cpustate_get, cpustate_set, vmstate_get and vmstate_set
 * failing in turn gives its errno back (and for the setters a message naming the ioctl);
 * each allocation failing gives -ENOMEM; nothing leaks (LeakSanitizer under make asan-unit).
 * Needs /dev/kvm; skipped without it.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cmocka.h>

#include "arch/x86/cpustate.h"
#include "faultinj.h"
#include "vcpu.h"
#include "vm.h"

#include "cpustatefail.h"

struct fx {
	struct vm vm;
	struct vcpu v;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct kvm_cpuid2 *c;

	fi_reset();
	f->vm.kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (f->vm.kvm_fd < 0) {
		assert_int_equal(errno, ENOENT);
		free(f);
		*state = NULL;
		return 0;
	}
	f->vm.vm_fd = ioctl(f->vm.kvm_fd, KVM_CREATE_VM, 0);
	assert_true(f->vm.vm_fd >= 0);
	assert_int_equal(ioctl(f->vm.vm_fd, KVM_CREATE_IRQCHIP, 0), 0);
	assert_int_equal(ioctl(f->vm.vm_fd, KVM_CREATE_PIT2, &(struct kvm_pit_config){ 0 }), 0);
	c = calloc(1, sizeof(*c) + 256 * sizeof(c->entries[0]));
	c->nent = 256;
	assert_int_equal(ioctl(f->vm.kvm_fd, KVM_GET_SUPPORTED_CPUID, c), 0);
	f->v.vm = &f->vm;
	f->v.fd = ioctl(f->vm.vm_fd, KVM_CREATE_VCPU, 0);
	assert_true(f->v.fd >= 0);
	assert_int_equal(ioctl(f->v.fd, KVM_SET_CPUID2, c), 0);
	free(c);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	fi_reset();
	if (!f)
		return 0;
	close(f->v.fd);
	close(f->vm.vm_fd);
	close(f->vm.kvm_fd);
	free(f);
	return 0;
}

/* The request cpustate_get reads XSAVE with on this host. */
static unsigned long xsave_get_req(struct fx *f)
{
	int size = ioctl(f->vm.kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);

	return size >= (int)sizeof(struct kvm_xsave) ? KVM_GET_XSAVE2 : KVM_GET_XSAVE;
}

/*
 * First in this process: the MSR list is built once and kept, so only the first get can
 * find KVM_GET_MSR_INDEX_LIST failing or its buffer not allocated.
 */
static void test_msr_list_fails(void **state)
{
	struct fx *f = *state;
	struct cpustate cs;

	if (!f)
		skip();
	cpustatefail_msr_list(&f->v);
	assert_int_equal(cpustate_get(&f->v, &cs), 0);
	assert_true(cs.nmsrs > 0);
	cpustate_free(&cs);
}

static void test_get_ioctl_fails(void **state)
{
	struct fx *f = *state;
	unsigned long reqs[] = {
		KVM_GET_MP_STATE, KVM_GET_REGS,	       KVM_GET_SREGS,	  KVM_GET_XCRS,
		KVM_GET_LAPIC,	  KVM_GET_VCPU_EVENTS, KVM_GET_DEBUGREGS, 0,
		KVM_GET_MSRS,	  KVM_GET_CPUID2,
	};
	struct cpustate cs;

	if (!f)
		skip();
	reqs[7] = xsave_get_req(f);
	for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
		int ret;

		fi_reset();
		fi_ioctl_fail(reqs[i], 1, EIO);
		ret = cpustate_get(&f->v, &cs);
		if (!fi_all_fired())
			fail_msg("ioctl %lx was not made by cpustate_get", reqs[i]);
		if (ret != -EIO)
			fail_msg("ioctl %lx failing: %d", reqs[i], ret);
		cpustate_free(&cs);
	}
}

/* Each allocation of a get failing in turn: -ENOMEM, until there are no more to fail. */
static void test_get_alloc_fails(void **state)
{
	struct fx *f = *state;
	struct cpustate cs;
	unsigned failed = 0;

	if (!f)
		skip();
	for (unsigned n = 1; n <= 8; n++) {
		int ret;

		fi_reset();
		fi_fail(FI_CALLOC, n, ENOMEM);
		ret = cpustate_get(&f->v, &cs);
		if (fi_all_fired()) {
			assert_int_equal(ret, -ENOMEM);
			failed++;
		} else {
			assert_int_equal(ret, 0);
		}
		cpustate_free(&cs);
	}
	/* xsave, the two MSR buffers, the two CPUID ones. */
	assert_true(failed >= 5);
}

static void test_set_ioctl_fails(void **state)
{
	struct fx *f = *state;
	struct cpustate cs;
	char err[256];

	if (!f)
		skip();
	fi_reset();
	assert_int_equal(cpustate_get(&f->v, &cs), 0);
	cpustatefail_set_each(&f->v, &cs, "");
	fi_reset();
	assert_int_equal(cpustate_set(&f->v, &cs, err, sizeof(err)), 0);
	cpustate_free(&cs);
}

static void test_vmstate_ioctl_fails(void **state)
{
	struct fx *f = *state;
	struct vmstate st;
	char err[256];

	if (!f)
		skip();
	cpustatefail_vmstate_each(f->vm.vm_fd, &st, false);
	fi_reset();
	assert_int_equal(vmstate_set(f->vm.vm_fd, &st, err, sizeof(err)), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_msr_list_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_get_ioctl_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_get_alloc_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_set_ioctl_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_vmstate_ioctl_fails, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
