// SPDX-License-Identifier: BSD-2-Clause
/*
 * vCPU and VM-wide KVM state (arch/x86/cpustate.c) against a KVM this test plays itself
 * (fi_ioctl_fake, tests/faultinj.h), so that it runs on any host, /dev/kvm or not:
 *  - cpustate_get reads every register set, the MSRs that really read back (IA32_TSC first,
 *    TSC_DEADLINE last), the XSAVE area at the size KVM_CAP_XSAVE2 gives, the vCPU's CPUID;
 *  - cpustate_set writes them back in KVM's order and says which MSR KVM refused;
 *  - cpustate_check refuses a CPUID feature word the host lacks, and only those;
 *  - vmstate_get/vmstate_set: the three irqchips, the PIT, the clock, in order;
 *  - each ioctl and each allocation failing in turn is reported, nothing leaks.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include <cmocka.h>

#include "arch/x86/cpustate.h"
#include "faultinj.h"
#include "vcpu.h"
#include "vm.h"

#include "cpustatefail.h"

/* Descriptors nothing else in the process has: the fake answers for them. */
#define KVM_FD 1001
#define VM_FD 1002
#define VCPU_FD 1003

#define MSR_TSC 0x10
#define MSR_SYSENTER_CS 0x174
#define MSR_TSC_DEADLINE 0x6e0
#define MSR_EFER 0xc0000080
#define MSR_UNREADABLE 0x4b564dff /* in KVM's list, but reading it fails */

/* ---- the fake KVM ---- */

static const uint32_t fake_index_list[] = { MSR_SYSENTER_CS, MSR_TSC_DEADLINE, MSR_UNREADABLE,
					    MSR_EFER, MSR_TSC };

static struct {
	unsigned long log[64]; /* the requests made, in order */
	unsigned nlog;
	int xsave2;	     /* KVM_CHECK_EXTENSION(KVM_CAP_XSAVE2) */
	bool msrs_short;     /* KVM_GET_MSRS reads one fewer than asked */
	uint32_t refuse_msr; /* KVM_SET_MSRS stops at this index */
	struct kvm_cpuid_entry2 cpuid[8];
	uint32_t ncpuid;
	/* What the setters were given. */
	struct cpustate set;
	uint8_t xsave[8192];
	struct kvm_msr_entry msrs[16];
	struct kvm_irqchip chips[3];
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clock;
} kvm;

static uint64_t msr_value(uint32_t index)
{
	return (uint64_t)index * 0x10001 + 7;
}

static int fake_errno(int e)
{
	errno = e;
	return -1;
}

static int fake_msrs(unsigned long req, struct kvm_msrs *m)
{
	for (uint32_t i = 0; i < m->nmsrs; i++) {
		struct kvm_msr_entry *e = &m->entries[i];

		if (req == KVM_GET_MSRS) {
			if (e->index == MSR_UNREADABLE || (kvm.msrs_short && i == m->nmsrs - 1))
				return (int)i;
			e->data = msr_value(e->index);
		} else {
			if (e->index == kvm.refuse_msr)
				return (int)i;
			if (i < 16)
				kvm.msrs[i] = *e;
			kvm.set.nmsrs = i + 1;
		}
	}
	return (int)m->nmsrs;
}

static int fake_vcpu_get(unsigned long req, void *arg)
{
	switch (req) {
	case KVM_GET_MP_STATE:
		((struct kvm_mp_state *)arg)->mp_state = KVM_MP_STATE_HALTED;
		return 0;
	case KVM_GET_REGS:
		memset(arg, 0, sizeof(struct kvm_regs));
		((struct kvm_regs *)arg)->rip = 0xfff0;
		((struct kvm_regs *)arg)->rax = 0x1234;
		return 0;
	case KVM_GET_SREGS:
		memset(arg, 0, sizeof(struct kvm_sregs));
		((struct kvm_sregs *)arg)->cr0 = 0x80000011;
		((struct kvm_sregs *)arg)->apic_base = 0xfee00900;
		return 0;
	case KVM_GET_XCRS:
		memset(arg, 0, sizeof(struct kvm_xcrs));
		((struct kvm_xcrs *)arg)->nr_xcrs = 1;
		((struct kvm_xcrs *)arg)->xcrs[0].value = 7;
		return 0;
	case KVM_GET_LAPIC:
		memset(arg, 0x5a, sizeof(struct kvm_lapic_state));
		return 0;
	case KVM_GET_VCPU_EVENTS:
		memset(arg, 0, sizeof(struct kvm_vcpu_events));
		((struct kvm_vcpu_events *)arg)->exception.nr = 14;
		return 0;
	case KVM_GET_DEBUGREGS:
		memset(arg, 0, sizeof(struct kvm_debugregs));
		((struct kvm_debugregs *)arg)->dr7 = 0x400;
		return 0;
	}
	return fake_errno(ENOTTY);
}

static int fake_vcpu(unsigned long req, void *arg)
{
	struct kvm_cpuid2 *c = arg;
	int size = kvm.xsave2 >= (int)sizeof(struct kvm_xsave) ? kvm.xsave2 : 4096;

	switch (req) {
	case KVM_GET_MSRS:
	case KVM_SET_MSRS:
		return fake_msrs(req, arg);
	case KVM_GET_XSAVE:
	case KVM_GET_XSAVE2:
		/* KVM_GET_XSAVE2 writes the whole area, the size KVM_CAP_XSAVE2 said. */
		if ((req == KVM_GET_XSAVE2) != (size > 4096))
			return fake_errno(EINVAL);
		for (int i = 0; i < size; i++)
			((uint8_t *)arg)[i] = (uint8_t)(i * 7 + 1);
		return 0;
	case KVM_GET_CPUID2:
		if (c->nent < kvm.ncpuid) {
			c->nent = kvm.ncpuid;
			return fake_errno(E2BIG);
		}
		memcpy(c->entries, kvm.cpuid, kvm.ncpuid * sizeof(c->entries[0]));
		c->nent = kvm.ncpuid;
		return 0;
	case KVM_SET_CPUID2:
		kvm.set.ncpuid = c->nent;
		return 0;
	case KVM_SET_MP_STATE:
		kvm.set.mp = *(struct kvm_mp_state *)arg;
		return 0;
	case KVM_SET_REGS:
		kvm.set.regs = *(struct kvm_regs *)arg;
		return 0;
	case KVM_SET_SREGS:
		kvm.set.sregs = *(struct kvm_sregs *)arg;
		return 0;
	case KVM_SET_XCRS:
		kvm.set.xcrs = *(struct kvm_xcrs *)arg;
		return 0;
	case KVM_SET_XSAVE:
		memcpy(kvm.xsave, arg,
		       (size_t)size < sizeof(kvm.xsave) ? (size_t)size : sizeof(kvm.xsave));
		return 0;
	case KVM_SET_LAPIC:
		kvm.set.lapic = *(struct kvm_lapic_state *)arg;
		return 0;
	case KVM_SET_VCPU_EVENTS:
		kvm.set.events = *(struct kvm_vcpu_events *)arg;
		return 0;
	case KVM_SET_DEBUGREGS:
		kvm.set.dbg = *(struct kvm_debugregs *)arg;
		return 0;
	}
	return fake_vcpu_get(req, arg);
}

static int fake_vm(unsigned long req, void *arg)
{
	struct kvm_irqchip *chip = arg;

	switch (req) {
	case KVM_GET_IRQCHIP:
		if (chip->chip_id > KVM_IRQCHIP_IOAPIC)
			return fake_errno(EINVAL);
		memset(&chip->chip, 0, sizeof(chip->chip));
		if (chip->chip_id == KVM_IRQCHIP_IOAPIC)
			chip->chip.ioapic.id = 2;
		else
			chip->chip.pic.irq_base = chip->chip_id == KVM_IRQCHIP_PIC_MASTER ? 0x08
											  : 0x70;
		return 0;
	case KVM_SET_IRQCHIP:
		if (chip->chip_id > KVM_IRQCHIP_IOAPIC)
			return fake_errno(EINVAL);
		kvm.chips[chip->chip_id] = *chip;
		return 0;
	case KVM_GET_PIT2:
		memset(arg, 0, sizeof(struct kvm_pit_state2));
		((struct kvm_pit_state2 *)arg)->channels[0].count = 0x10000;
		return 0;
	case KVM_SET_PIT2:
		kvm.pit = *(struct kvm_pit_state2 *)arg;
		return 0;
	case KVM_GET_CLOCK:
		memset(arg, 0, sizeof(struct kvm_clock_data));
		((struct kvm_clock_data *)arg)->clock = 123456789;
		((struct kvm_clock_data *)arg)->flags = KVM_CLOCK_TSC_STABLE;
		return 0;
	case KVM_SET_CLOCK:
		kvm.clock = *(struct kvm_clock_data *)arg;
		return 0;
	}
	return fake_errno(ENOTTY);
}

static int fake_system(unsigned long req, void *arg)
{
	struct kvm_msr_list *l = arg;
	uint32_t n = sizeof(fake_index_list) / sizeof(fake_index_list[0]);

	switch (req) {
	case KVM_CHECK_EXTENSION:
		return (uint32_t)(uintptr_t)arg == KVM_CAP_XSAVE2 ? kvm.xsave2 : 0;
	case KVM_GET_MSR_INDEX_LIST:
		if (l->nmsrs < n) {
			l->nmsrs = n;
			return fake_errno(E2BIG);
		}
		memcpy(l->indices, fake_index_list, sizeof(fake_index_list));
		l->nmsrs = n;
		return 0;
	}
	return fake_errno(ENOTTY);
}

static int fake_ioctl(int fd, unsigned long req, void *arg)
{
	if (kvm.nlog < sizeof(kvm.log) / sizeof(kvm.log[0]))
		kvm.log[kvm.nlog++] = req;
	switch (fd) {
	case KVM_FD:
		return fake_system(req, arg);
	case VM_FD:
		return fake_vm(req, arg);
	case VCPU_FD:
		return fake_vcpu(req, arg);
	}
	return fake_errno(EBADF);
}

/* ---- fixture ---- */

struct fx {
	struct vm vm;
	struct vcpu v;
};

static void cpuid_entry(struct kvm_cpuid_entry2 *e, uint32_t fn, uint32_t idx, uint32_t flags,
			uint32_t eax, uint32_t ebx, uint32_t ecx, uint32_t edx)
{
	*e = (struct kvm_cpuid_entry2){ .function = fn,
					.index = idx,
					.flags = flags,
					.eax = eax,
					.ebx = ebx,
					.ecx = ecx,
					.edx = edx };
}

/* The host's CPUID: leaf 1, leaf 7.0, leaf 0xD at two indexes, leaf 0x80000001. */
static void host_cpuid(void)
{
	kvm.ncpuid = 5;
	cpuid_entry(&kvm.cpuid[0], 1, 0, 0, 0x806c1, 0, 0x7ffafbff, 0xbfebfbff);
	cpuid_entry(&kvm.cpuid[1], 7, 0, KVM_CPUID_FLAG_SIGNIFCANT_INDEX, 0, 0x00000fff, 0x0f, 0);
	cpuid_entry(&kvm.cpuid[2], 0xd, 0, KVM_CPUID_FLAG_SIGNIFCANT_INDEX, 0xff, 0, 0, 0);
	cpuid_entry(&kvm.cpuid[3], 0xd, 1, KVM_CPUID_FLAG_SIGNIFCANT_INDEX, 0x0f, 0, 0, 0);
	cpuid_entry(&kvm.cpuid[4], 0x80000001, 0, 0, 0, 0, 0x121, 0x2c100800);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	memset(&kvm, 0, sizeof(kvm));
	kvm.xsave2 = 8192;
	host_cpuid();
	fi_reset();
	fi_ioctl_fake(fake_ioctl);
	f->vm.kvm_fd = KVM_FD;
	f->vm.vm_fd = VM_FD;
	f->v.vm = &f->vm;
	f->v.fd = VCPU_FD;
	f->v.id = 3;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fi_ioctl_fake(NULL);
	fi_reset();
	free(*state);
	return 0;
}

static bool logged(unsigned long req)
{
	for (unsigned i = 0; i < kvm.nlog; i++)
		if (kvm.log[i] == req)
			return true;
	return false;
}

/* ---- tests ---- */

/*
 * First in this process: the MSR list is built once and kept, so only the first get can find
 * KVM_GET_MSR_INDEX_LIST failing or its buffer not allocated.  Then the list holds the MSRs
 * that read back, IA32_TSC first and TSC_DEADLINE last.
 */
static void test_get(void **state)
{
	struct fx *f = *state;
	static const uint32_t want[] = { MSR_TSC, MSR_SYSENTER_CS, MSR_EFER, MSR_TSC_DEADLINE };
	struct cpustate cs;
	uint64_t tsc;

	cpustatefail_msr_list(&f->v);

	assert_int_equal(cpustate_get(&f->v, &cs), 0);
	assert_int_equal(cs.mp.mp_state, KVM_MP_STATE_HALTED);
	assert_int_equal(cs.regs.rip, 0xfff0);
	assert_int_equal(cs.regs.rax, 0x1234);
	assert_int_equal(cs.sregs.cr0, 0x80000011);
	assert_int_equal(cs.sregs.apic_base, 0xfee00900);
	assert_int_equal(cs.xcrs.nr_xcrs, 1);
	assert_int_equal(cs.xcrs.xcrs[0].value, 7);
	assert_int_equal((uint8_t)cs.lapic.regs[0x20], 0x5a);
	assert_int_equal(cs.events.exception.nr, 14);
	assert_int_equal(cs.dbg.dr7, 0x400);
	/* The whole XSAVE2 area, read with KVM_GET_XSAVE2. */
	assert_int_equal(cs.xsave_size, 8192);
	assert_int_equal(cs.xsave[8191], (uint8_t)(8191 * 7 + 1));
	assert_true(logged(KVM_GET_XSAVE2));
	assert_int_equal(cs.nmsrs, 4);
	for (uint32_t i = 0; i < 4; i++) {
		assert_int_equal(cs.msrs[i].index, want[i]);
		assert_int_equal(cs.msrs[i].data, msr_value(want[i]));
	}
	assert_int_equal(cpustate_tsc(&cs, &tsc), 0);
	assert_int_equal(tsc, msr_value(MSR_TSC));
	assert_int_equal(cpustate_set_tsc(&cs, 99), 0);
	assert_int_equal(cpustate_tsc(&cs, &tsc), 0);
	assert_int_equal(tsc, 99);
	assert_int_equal(cs.ncpuid, 5);
	assert_memory_equal(cs.cpuid, kvm.cpuid, 5 * sizeof(cs.cpuid[0]));
	cpustate_free(&cs);
}

/* Without KVM_CAP_XSAVE2 the legacy 4 KiB KVM_GET_XSAVE; an area above the limit is refused. */
static void test_get_xsave_sizes(void **state)
{
	struct fx *f = *state;
	struct cpustate cs;

	kvm.xsave2 = 0;
	assert_int_equal(cpustate_get(&f->v, &cs), 0);
	assert_int_equal(cs.xsave_size, sizeof(struct kvm_xsave));
	assert_true(logged(KVM_GET_XSAVE));
	assert_false(logged(KVM_GET_XSAVE2));
	cpustate_free(&cs);
	kvm.xsave2 = CPUSTATE_MAX_XSAVE;
	kvm.nlog = 0;
	assert_int_equal(cpustate_get(&f->v, &cs), 0);
	assert_int_equal(cs.xsave_size, CPUSTATE_MAX_XSAVE);
	cpustate_free(&cs);
	kvm.xsave2 = CPUSTATE_MAX_XSAVE + 1;
	assert_int_equal(cpustate_get(&f->v, &cs), -E2BIG);
	cpustate_free(&cs);
}

/* Each ioctl of a get failing: its errno; KVM reading fewer MSRs than asked: -EIO. */
static void test_get_fails(void **state)
{
	struct fx *f = *state;
	static const unsigned long reqs[] = {
		KVM_GET_MP_STATE, KVM_GET_REGS,	       KVM_GET_SREGS,	  KVM_GET_XCRS,
		KVM_GET_LAPIC,	  KVM_GET_VCPU_EVENTS, KVM_GET_DEBUGREGS, KVM_GET_XSAVE2,
		KVM_GET_MSRS,	  KVM_GET_CPUID2,
	};
	struct cpustate cs;

	for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
		int ret;

		fi_reset();
		fi_ioctl_fail(reqs[i], 1, EPERM);
		ret = cpustate_get(&f->v, &cs);
		if (!fi_all_fired() || ret != -EPERM)
			fail_msg("ioctl %lx failing: %d", reqs[i], ret);
		cpustate_free(&cs);
	}
	fi_reset();
	kvm.msrs_short = true;
	assert_int_equal(cpustate_get(&f->v, &cs), -EIO);
	cpustate_free(&cs);
	kvm.msrs_short = false;
	/* Each allocation: the XSAVE area, the two MSR buffers, the two CPUID ones. */
	for (unsigned n = 1; n <= 5; n++) {
		fi_reset();
		fi_fail(FI_CALLOC, n, ENOMEM);
		assert_int_equal(cpustate_get(&f->v, &cs), -ENOMEM);
		assert_true(fi_all_fired());
		cpustate_free(&cs);
	}
	fi_reset();
	fi_fail(FI_CALLOC, 6, ENOMEM);
	assert_int_equal(cpustate_get(&f->v, &cs), 0);
	assert_false(fi_all_fired());
	cpustate_free(&cs);
}

/* A set writes each part, in KVM's order, with exactly the values it was given. */
static void test_set(void **state)
{
	struct fx *f = *state;
	static const unsigned long order[] = {
		KVM_SET_CPUID2,	     KVM_SET_MP_STATE,	KVM_SET_SREGS, KVM_SET_REGS,
		KVM_SET_XCRS,	     KVM_SET_XSAVE,	KVM_SET_LAPIC, KVM_SET_MSRS,
		KVM_SET_VCPU_EVENTS, KVM_SET_DEBUGREGS,
	};
	struct cpustate cs;
	char err[256] = "";

	assert_int_equal(cpustate_get(&f->v, &cs), 0);
	cs.regs.rip = 0x7c00;
	cs.msrs[1].data = 0x42;
	kvm.nlog = 0;
	assert_int_equal(cpustate_set(&f->v, &cs, err, sizeof(err)), 0);
	assert_string_equal(err, "");
	assert_int_equal(kvm.nlog, sizeof(order) / sizeof(order[0]));
	assert_memory_equal(kvm.log, order, sizeof(order));
	assert_int_equal(kvm.set.ncpuid, cs.ncpuid);
	assert_memory_equal(&kvm.set.mp, &cs.mp, sizeof(cs.mp));
	assert_memory_equal(&kvm.set.regs, &cs.regs, sizeof(cs.regs));
	assert_memory_equal(&kvm.set.sregs, &cs.sregs, sizeof(cs.sregs));
	assert_memory_equal(&kvm.set.xcrs, &cs.xcrs, sizeof(cs.xcrs));
	assert_memory_equal(kvm.xsave, cs.xsave, cs.xsave_size);
	assert_memory_equal(&kvm.set.lapic, &cs.lapic, sizeof(cs.lapic));
	assert_int_equal(kvm.set.nmsrs, cs.nmsrs);
	assert_memory_equal(kvm.msrs, cs.msrs, cs.nmsrs * sizeof(cs.msrs[0]));
	assert_memory_equal(&kvm.set.events, &cs.events, sizeof(cs.events));
	assert_memory_equal(&kvm.set.dbg, &cs.dbg, sizeof(cs.dbg));
	cpustate_free(&cs);
}

/* Each ioctl of a set failing: its errno and a message naming it; an allocation: -ENOMEM. */
static void test_set_fails(void **state)
{
	struct fx *f = *state;
	struct cpustate cs;

	assert_int_equal(cpustate_get(&f->v, &cs), 0);
	cpustatefail_set_each(&f->v, &cs, "vCPU 3: ");
	fi_reset();
	cpustate_free(&cs);
}

/*
 * KVM_SET_MSRS stops at an MSR it refuses: the set fails with -EINVAL and names that MSR,
 * whatever its index (IA32_TSC is 0x10, TSC_DEADLINE 0x6e0: small numbers, not errnos).
 */
static void test_set_msr_refused(void **state)
{
	struct fx *f = *state;
	static const uint32_t refuse[] = { MSR_TSC, MSR_SYSENTER_CS, MSR_EFER, MSR_TSC_DEADLINE };
	struct cpustate cs;

	assert_int_equal(cpustate_get(&f->v, &cs), 0);
	for (size_t i = 0; i < sizeof(refuse) / sizeof(refuse[0]); i++) {
		char err[256] = "", want[64];

		kvm.refuse_msr = refuse[i];
		kvm.nlog = 0;
		assert_int_equal(cpustate_set(&f->v, &cs, err, sizeof(err)), -EINVAL);
		snprintf(want, sizeof(want), "vCPU 3: KVM refused MSR 0x%x", refuse[i]);
		assert_string_equal(err, want);
		/* Nothing after the MSRs was written. */
		assert_false(logged(KVM_SET_VCPU_EVENTS));
	}
	cpustate_free(&cs);
}

/* The saved CPUID as this host's, then one word changed in @e. */
static void guest_cpuid(struct cpustate *cs)
{
	cs->ncpuid = kvm.ncpuid;
	cs->cpuid = calloc(kvm.ncpuid, sizeof(*cs->cpuid));
	memcpy(cs->cpuid, kvm.cpuid, kvm.ncpuid * sizeof(*cs->cpuid));
}

static int check(struct fx *f, struct cpustate *cs, char *err, size_t errlen)
{
	err[0] = '\0';
	return cpustate_check(cs, f->v.fd, err, errlen);
}

/* Every feature word the guest saw must be offered here; the hypervisor bit is ours. */
static void test_check(void **state)
{
	struct fx *f = *state;
	struct cpustate cs = { 0 };
	char err[256];

	guest_cpuid(&cs);
	assert_int_equal(check(f, &cs, err, sizeof(err)), 0);
	/* CPUID.1:ECX bit 31 (hypervisor) set by khyve, not offered by the host: fine. */
	kvm.cpuid[0].ecx &= ~(1u << 31);
	cs.cpuid[0].ecx |= 1u << 31;
	assert_int_equal(check(f, &cs, err, sizeof(err)), 0);
	/* Any other bit of it is not. */
	cs.cpuid[0].ecx |= 1u << 30 | 1u << 2;
	kvm.cpuid[0].ecx &= ~(1u << 30 | 1u << 2);
	assert_int_equal(check(f, &cs, err, sizeof(err)), -ENOTSUP);
	assert_non_null(strstr(err, "CPUID.1:ECX bits 0x40000004"));
	memcpy(cs.cpuid, kvm.cpuid, kvm.ncpuid * sizeof(*cs.cpuid));
	/* Leaf 0xD is matched by index: index 1 lacks what index 0 has. */
	cs.cpuid[3].eax = 0x30;
	assert_int_equal(check(f, &cs, err, sizeof(err)), -ENOTSUP);
	assert_non_null(strstr(err, "CPUID.0xD.1:EAX bits 0x00000030"));
	cs.cpuid[3].eax = 0x0f;
	/* A leaf the host does not have at all: every bit of it is missing. */
	kvm.ncpuid = 4;
	assert_int_equal(check(f, &cs, err, sizeof(err)), -ENOTSUP);
	assert_non_null(strstr(err, "CPUID.80000001:ECX bits 0x00000121"));
	/* A leaf the guest never saw is not compared. */
	cs.ncpuid = 1;
	assert_int_equal(check(f, &cs, err, sizeof(err)), 0);
	/* The host's CPUID unreadable, or no memory to read it. */
	fi_ioctl_fail(KVM_GET_CPUID2, 1, EIO);
	assert_int_equal(check(f, &cs, err, sizeof(err)), -EIO);
	assert_non_null(strstr(err, "KVM_GET_CPUID2: "));
	assert_non_null(strstr(err, strerror(EIO)));
	fi_reset();
	fi_fail(FI_CALLOC, 1, ENOMEM);
	assert_int_equal(check(f, &cs, err, sizeof(err)), -ENOMEM);
	fi_reset();
	cpustate_free(&cs);
}

/* The irqchips by id, the PIT and the clock; a set writes them back, the clock without flags. */
static void test_vmstate(void **state)
{
	struct vmstate st;
	char err[256] = "";

	assert_int_equal(vmstate_get(VM_FD, &st), 0);
	assert_int_equal(st.pic[0].chip_id, KVM_IRQCHIP_PIC_MASTER);
	assert_int_equal(st.pic[0].chip.pic.irq_base, 0x08);
	assert_int_equal(st.pic[1].chip_id, KVM_IRQCHIP_PIC_SLAVE);
	assert_int_equal(st.pic[1].chip.pic.irq_base, 0x70);
	assert_int_equal(st.ioapic.chip_id, KVM_IRQCHIP_IOAPIC);
	assert_int_equal(st.ioapic.chip.ioapic.id, 2);
	assert_int_equal(st.pit.channels[0].count, 0x10000);
	assert_int_equal(st.clock.clock, 123456789);
	st.clock.clock = 987654321;
	kvm.nlog = 0;
	assert_int_equal(vmstate_set(VM_FD, &st, err, sizeof(err)), 0);
	assert_int_equal(kvm.nlog, 5);
	assert_int_equal(kvm.log[3], KVM_SET_PIT2);
	assert_int_equal(kvm.log[4], KVM_SET_CLOCK);
	assert_int_equal(kvm.chips[KVM_IRQCHIP_PIC_SLAVE].chip.pic.irq_base, 0x70);
	assert_int_equal(kvm.chips[KVM_IRQCHIP_IOAPIC].chip.ioapic.id, 2);
	assert_int_equal(kvm.pit.channels[0].count, 0x10000);
	assert_int_equal(kvm.clock.clock, 987654321);
	assert_int_equal(kvm.clock.flags, 0);
}

static void test_vmstate_fails(void **state)
{
	struct vmstate st;

	cpustatefail_vmstate_each(VM_FD, &st, true);
	fi_reset();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_get, setup, teardown),
		cmocka_unit_test_setup_teardown(test_get_xsave_sizes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_get_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_set, setup, teardown),
		cmocka_unit_test_setup_teardown(test_set_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_set_msr_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_check, setup, teardown),
		cmocka_unit_test_setup_teardown(test_vmstate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_vmstate_fails, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
