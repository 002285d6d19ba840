// SPDX-License-Identifier: BSD-2-Clause
/* Every clock of a VM sampled in one instant (see clocks.h). */
#include "snap/clocks.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

#include "evloop.h"
#include "vcpu.h"
#include "vm.h"

#define MSR_IA32_TSC 0x10

static uint64_t now_ns(clockid_t clk)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

uint64_t snap_tsc_at(uint64_t tsc, uint64_t read_ns, uint64_t at_ns, uint32_t khz)
{
	unsigned __int128 ticks;

	if (!khz || read_ns <= at_ns)
		return tsc;
	ticks = (unsigned __int128)(read_ns - at_ns) * khz / 1000000;
	return ticks > tsc ? 0 : tsc - (uint64_t)ticks;
}

struct tsc_read {
	uint64_t tsc, mono_ns;
	uint32_t khz;
};

/* On the vCPU's thread: its TSC, when it was read, and its frequency. */
static int tsc_read_one(struct vcpu *v, void *arg)
{
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e;
	} m;
	struct tsc_read *t = arg;
	int khz;

	memset(&m, 0, sizeof(m));
	m.hdr.nmsrs = 1;
	m.e.index = MSR_IA32_TSC;
	if (ioctl(v->fd, KVM_GET_MSRS, &m) != 1)
		return -EIO;
	t->mono_ns = now_ns(CLOCK_MONOTONIC);
	t->tsc = m.e.data;
	khz = ioctl(v->fd, KVM_GET_TSC_KHZ, 0);
	t->khz = khz > 0 ? (uint32_t)khz : 0;
	return 0;
}

int64_t snap_tsc_since_ns(struct vcpu *v, uint64_t saved, uint64_t *read_ns)
{
	struct tsc_read t = { 0 };
	__int128 d;

	*read_ns = now_ns(CLOCK_MONOTONIC);
	if (vcpu_run_on(v, tsc_read_one, &t) || !t.khz)
		return 0;
	*read_ns = t.mono_ns;
	d = ((__int128)t.tsc - (__int128)saved) * 1000000 / t.khz;
	return d > INT64_MAX ? INT64_MAX : d < INT64_MIN ? INT64_MIN : (int64_t)d;
}

int snap_clocks_sample(struct vm *vm, struct snap_clocks *c, char *err, size_t errlen)
{
	memset(c, 0, sizeof(*c));
	c->tsc = calloc(vm->ncpus ? vm->ncpus : 1, sizeof(*c->tsc));
	if (!c->tsc)
		return -ENOMEM;
	c->ncpus = vm->ncpus;
	/* The instant: these four reads take microseconds. */
	c->vclock = vclock_freeze(&vm->ev);
	if (ioctl(vm->vm_fd, KVM_GET_CLOCK, &c->kvmclock) < 0) {
		int ret = -errno;

		snprintf(err, errlen, "reading the KVM clock: %s", strerror(errno));
		snap_clocks_release(vm, c);
		return ret;
	}
	c->mono_ns = now_ns(CLOCK_MONOTONIC);
	c->realtime_ns = now_ns(CLOCK_REALTIME);
	for (unsigned i = 0; i < vm->ncpus; i++) {
		struct tsc_read t = { 0 };
		int ret = vcpu_run_on(vm->vcpus[i], tsc_read_one, &t);

		if (ret) {
			snprintf(err, errlen, "reading the TSC of vCPU %u: %s", i, strerror(-ret));
			snap_clocks_release(vm, c);
			return ret;
		}
		c->tsc[i] = snap_tsc_at(t.tsc, t.mono_ns, c->mono_ns, t.khz);
	}
	return 0;
}

void snap_clocks_release(struct vm *vm, struct snap_clocks *c)
{
	vclock_thaw(&vm->ev);
	free(c->tsc);
	c->tsc = NULL;
	c->ncpus = 0;
}
