/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Every clock of a VM sampled in one instant, for a snapshot.
 *
 * A snapshot holds four clocks the guest compares with each other: khyve's device clock
 * (vclock, which the HPET, the PM timer and the RTC count from), kvmclock, each vCPU's TSC,
 * and the wall-clock time of the save.  They must all be as of one instant, or the restored
 * guest sees them disagree by however long the save took between two readings (seconds, when
 * the save copies a disk).  snap_clocks_sample() reads them right after the vCPUs stopped,
 * before anything slow, and freezes the vclock at the sampled value, so that devices saved
 * later still save their counters as of that instant.  The TSC of each vCPU is read on its own
 * thread a little later and taken back to the instant with the vCPU's TSC frequency.
 */
#ifndef KHYVE_SNAP_CLOCKS_H
#define KHYVE_SNAP_CLOCKS_H

#include <linux/kvm.h>
#include <stddef.h>
#include <stdint.h>

struct vm;

struct snap_clocks {
	uint64_t mono_ns;     /* host CLOCK_MONOTONIC of the instant */
	uint64_t realtime_ns; /* CLOCK_REALTIME of the instant */
	uint64_t vclock;
	struct kvm_clock_data kvmclock;
	unsigned ncpus;
	uint64_t *tsc; /* each vCPU's TSC at the instant */
};

/* The vCPUs are paused.  Freezes the vclock (until snap_clocks_release). */
int snap_clocks_sample(struct vm *vm, struct snap_clocks *c, char *err, size_t errlen);
/* Thaw the vclock (it runs on as if never frozen) and free @c. */
void snap_clocks_release(struct vm *vm, struct snap_clocks *c);

/*
 * Restore, after vCPU @v's state was set from a snapshot whose TSC was @saved: how far (ns)
 * its TSC has run from that value, as of host CLOCK_MONOTONIC *@read_ns.  Where KVM set it,
 * that is the short time since the set; some KVMs cannot offset the TSC (PVM: the guest's
 * ring 3 reads the host's TSC natively), and then the restored guest's TSC is the host's and
 * has moved on by the whole time since the save.  Either way the other clocks start from
 * their saved values plus this much (plus the time since *@read_ns), and all agree.
 */
struct vcpu;
int64_t snap_tsc_since_ns(struct vcpu *v, uint64_t saved, uint64_t *read_ns);

/* A TSC read at host time @read_ns taken back to @at_ns at @khz (no change if @khz is 0). */
uint64_t snap_tsc_at(uint64_t tsc, uint64_t read_ns, uint64_t at_ns, uint32_t khz);

#endif
