/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * A vCPU's KVM state, for snapshots.  cpustate_get() reads everything from a paused vCPU (on
 * its own thread); cpustate_io() codes it through the state stream; cpustate_check() compares
 * the CPUID the guest saw with what this host's KVM offers; cpustate_set() writes it back in
 * the order KVM requires (see the comment there).
 */
#ifndef KHYVE_CPUSTATE_H
#define KHYVE_CPUSTATE_H

#include <linux/kvm.h>
#include <stddef.h>
#include <stdint.h>

#define CPUSTATE_VERSION 1
#define CPUSTATE_MAX_MSRS 256
#define CPUSTATE_MAX_CPUID 256
#define CPUSTATE_MAX_XSAVE (64 * 1024)

struct sstream;
struct vcpu;

struct cpustate {
	struct kvm_mp_state mp;
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_xcrs xcrs;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events events;
	struct kvm_debugregs dbg;
	uint32_t xsave_size;
	uint8_t *xsave; /* struct kvm_xsave, xsave_size bytes */
	uint32_t nmsrs;
	struct kvm_msr_entry *msrs;
	uint32_t ncpuid;
	struct kvm_cpuid_entry2 *cpuid;
};

int cpustate_get(struct vcpu *v, struct cpustate *cs);
void cpustate_io(struct sstream *s, struct cpustate *cs);
/* Load a section saved at @version into @cs (zeroed by the caller): fails the stream on error. */
void cpustate_load(struct sstream *s, struct cpustate *cs, unsigned version);
/*
 * CPUID features the guest saw must all be offered here: compared with the CPUID of a vCPU
 * khyve just created (@vcpu_fd).  Fills @err naming what is missing.
 */
int cpustate_check(const struct cpustate *cs, int vcpu_fd, char *err, size_t errlen);
int cpustate_set(struct vcpu *v, const struct cpustate *cs, char *err, size_t errlen);
void cpustate_free(struct cpustate *cs);
/* The saved IA32_TSC. */
int cpustate_tsc(const struct cpustate *cs, uint64_t *tsc);
/* Replace the saved IA32_TSC (snapshots save the value of the instant all clocks were read). */
int cpustate_set_tsc(struct cpustate *cs, uint64_t tsc);

/* VM-wide KVM state: PIC master and slave, IOAPIC, PIT, KVM clock. */
struct vmstate {
	struct kvm_irqchip pic[2];
	struct kvm_irqchip ioapic;
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clock;
	uint64_t vclock;      /* khyve's device clock (evloop.h) */
	uint64_t realtime_ns; /* CLOCK_REALTIME at save, for wall-clock catch-up */
};

#define VMSTATE_VERSION 1

int vmstate_get(int vm_fd, struct vmstate *st);
void vmstate_io(struct sstream *s, struct vmstate *st);
void vmstate_load(struct sstream *s, struct vmstate *st, unsigned version);
int vmstate_set(int vm_fd, const struct vmstate *st, char *err, size_t errlen);

#endif
