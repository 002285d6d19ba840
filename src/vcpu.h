/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * vCPU threads and the pause protocol.
 *
 * Each vCPU is a thread looping on KVM_RUN.  vcpus_pause() asks every vCPU to leave KVM_RUN
 * (immediate_exit plus a signal, so a vCPU that is about to enter returns at once) and waits
 * until each has acknowledged that it is parked outside KVM_RUN.  While parked, a vCPU can be
 * handed work to run on its own thread (vcpu_run_on: KVM requires vCPU ioctls from the thread
 * that runs it on some architectures, and it keeps each vCPU's state saving parallel).
 * vcpus_resume() lets them all go.
 *
 * The debugger (gdb/gdbstub.h) stops vCPUs with a hold of its own, vcpus_hold(), which parks
 * them the same way under another flag: a pause and resume (a checkpoint, khyvectl --pause)
 * of a VM stopped in the debugger leaves it stopped, and a vCPU the debugger lets go
 * (vcpu_release) still waits while a pause is requested.  Work can be handed to a vCPU parked
 * either way.
 */
#ifndef KHYVE_VCPU_H
#define KHYVE_VCPU_H

#include <linux/kvm.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>

struct vm;

/* Exit counts are kept by KVM exit reason below this; higher reasons share the last slot. */
#define VCPU_EXIT_REASONS 48

struct vcpu {
	struct vm *vm;
	unsigned id;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	bool started;
	cpu_set_t *pin; /* -p: the host CPUs its thread may run on, or NULL */

	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool pause_req, paused, stop;
	bool dbg_hold;	    /* stopped by the debugger (vcpus_hold), apart from pause_req */
	bool exit_pending;  /* the last exit is finished by the next KVM_RUN (vcpu.c) */
	bool clock_stopped; /* tell the guest's kvmclock it was stopped (vcpu.c) */
	/* Work handed to a parked vCPU. */
	int (*work)(struct vcpu *, void *);
	void *work_arg;
	int work_ret;
	bool work_done;
	/* For khyvectl --get-stats: written by the vCPU's thread only, read with atomics. */
	uint64_t exits[VCPU_EXIT_REASONS + 1];
	uint64_t nmis; /* NMIs injected by vcpu_inject_nmi */
	/* Auto-converge (vcpus_throttle): sleep this long when next out of KVM_RUN (v->lock). */
	uint64_t throttle_ns;
	bool throttled;				/* asleep for it now (v->lock) */
	uint64_t throttle_sleeps, throttled_ns; /* for --get-stats, read with atomics */
};

struct vcpu *vcpu_create(struct vm *vm, unsigned id, char *err, size_t errlen);
void vcpu_destroy(struct vcpu *v);
int vcpu_start(struct vcpu *v);
/* Room for CPUID entries: KVM's list is about 75 long on today's hosts. */
#define VCPU_CPUID_MAX 256

/*
 * KVM_GET_SUPPORTED_CPUID into @c (room for @max entries), asked of @kvm_fd the first time
 * and remembered for the process; 0 or -errno.
 */
int vcpu_supported_cpuid(int kvm_fd, struct kvm_cpuid2 *c, unsigned max);
/* Set CPUID: KVM's supported set, APIC id @id, hypervisor bit. */
int vcpu_set_cpuid(struct vcpu *v);

int vcpus_pause(struct vm *vm);
void vcpus_resume(struct vm *vm);
/* The debugger's hold: every vCPU parked (as vcpus_pause) until vcpu_release. */
void vcpus_hold(struct vm *vm);
void vcpu_release(struct vcpu *v);
/* On @v's own thread (a debug exit): @v parks once it returns to its loop. */
void vcpu_hold_self(struct vcpu *v);
/* Run @fn on parked vCPU @v's thread and return its result. */
int vcpu_run_on(struct vcpu *v, int (*fn)(struct vcpu *, void *), void *arg);
/* KVM's name of exit reason @reason ("io", "mmio", ...), or NULL for one it has no name for. */
const char *vcpu_exit_name(unsigned reason);
/* The number of exits of @reason (VCPU_EXIT_REASONS for every higher one) so far. */
uint64_t vcpu_exit_count(const struct vcpu *v, unsigned reason);
/*
 * Queue an NMI on @v (KVM_NMI, on its own thread).  The vCPUs must be parked (vcpus_pause):
 * a KVM_NMI from another thread would wait for KVM_RUN to return, which a halted vCPU
 * might not do for a long time.
 */
int vcpu_inject_nmi(struct vcpu *v);
/*
 * Auto-converge (live migration, snap/precopy.c): from now on every vCPU spends @pct percent
 * of its time asleep outside KVM_RUN, as QEMU's cpu-throttle does: each slice of
 * VCPU_THROTTLE_SLICE_NS running is followed by a sleep of slice * pct / (100 - pct), started
 * by a kick from a timer on the event loop.  The guest sees only time go by (its clocks run on
 * as they do while the host deschedules it).  @pct is 0 to 99; 0 ends the throttle and wakes
 * any vCPU asleep for it.  On the event-loop thread.
 */
#define VCPU_THROTTLE_SLICE_NS 10000000ULL
#define VCPU_THROTTLE_MAX 99
void vcpus_throttle(struct vm *vm, unsigned pct);
/* Stop every vCPU thread for good (the VM is ending). */
void vcpus_stop(struct vm *vm);

#endif
