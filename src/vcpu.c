// SPDX-License-Identifier: BSD-2-Clause
/* vCPU threads: the exit loop and the pause protocol (see vcpu.h). */
#include "vcpu.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "gdb/gdbstub.h"
#include "log.h"
#include "vm.h"

#define VCPU_KICK_SIG SIGUSR1

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void vcpu_kick_handler(int sig)
{
	/* Only there to make KVM_RUN return -EINTR. */
}

static void vcpu_install_kick_once(void)
{
	struct sigaction sa = { .sa_handler = vcpu_kick_handler };

	/* No SA_RESTART: KVM_RUN must return to the loop. */
	sigemptyset(&sa.sa_mask);
	sigaction(VCPU_KICK_SIG, &sa, NULL);
}

static void vcpu_install_kick(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, vcpu_install_kick_once);
}

struct vcpu *vcpu_create(struct vm *vm, unsigned id, char *err, size_t errlen)
{
	struct vcpu *v = calloc(1, sizeof(*v));

	if (!v) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	v->vm = vm;
	v->id = id;
	pthread_mutex_init(&v->lock, NULL);
	pthread_cond_init(&v->cond, NULL);
	v->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, id);
	if (v->fd < 0) {
		snprintf(err, errlen, "KVM_CREATE_VCPU %u: %s", id, strerror(errno));
		free(v);
		return NULL;
	}
	v->run = mmap(NULL, (size_t)vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
	if (v->run == MAP_FAILED) {
		snprintf(err, errlen, "mmap of vCPU %u: %s", id, strerror(errno));
		close(v->fd);
		free(v);
		return NULL;
	}
	if (vcpu_set_cpuid(v)) {
		snprintf(err, errlen, "KVM_SET_CPUID2 on vCPU %u: %s", id, strerror(errno));
		vcpu_destroy(v);
		return NULL;
	}
	/* The VM's coalesced MMIO ring is reached through a vCPU's mapping: the first one's. */
	if (id == 0 && vm_coalesce_setup(vm, v->fd, err, errlen)) {
		vcpu_destroy(v);
		return NULL;
	}
	return v;
}

/*
 * What this host's KVM supports, asked once per process: KVM_GET_SUPPORTED_CPUID takes a
 * third of a millisecond here, once per vCPU, in the downtime of a restore or an incoming
 * migration.  The answer depends on the KVM module and the host CPU only, not on the VM.
 */
static struct {
	pthread_mutex_t lock;
	bool have;
	unsigned n;
	struct kvm_cpuid_entry2 e[VCPU_CPUID_MAX];
} supported = { .lock = PTHREAD_MUTEX_INITIALIZER };

int vcpu_supported_cpuid(int kvm_fd, struct kvm_cpuid2 *c, unsigned max)
{
	int ret = 0;

	pthread_mutex_lock(&supported.lock);
	if (!supported.have) {
		c->nent = max;
		if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, c) < 0) {
			ret = -errno;
		} else if (c->nent <= VCPU_CPUID_MAX) {
			supported.n = c->nent;
			memcpy(supported.e, c->entries, c->nent * sizeof(c->entries[0]));
			supported.have = true;
		}
	} else if (supported.n > max) {
		ret = -E2BIG;
	} else {
		c->nent = supported.n;
		memcpy(c->entries, supported.e, supported.n * sizeof(c->entries[0]));
	}
	pthread_mutex_unlock(&supported.lock);
	return ret;
}

int vcpu_set_cpuid(struct vcpu *v)
{
	unsigned max = VCPU_CPUID_MAX;
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + max * sizeof(c->entries[0]));
	struct cpu_topo topo = v->vm->topo;
	int ret = 0;

	/* A VM built without a configuration (unit tests): a socket per vCPU. */
	if (!topo.cpus)
		topo = (struct cpu_topo){ v->vm->ncpus, v->vm->ncpus, 1, 1 };
	if (!c)
		return -ENOMEM;
	ret = vcpu_supported_cpuid(v->vm->kvm_fd, c, max);
	if (ret) {
		errno = -ret;
		goto out;
	}
	for (unsigned i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];

		if (e->function == 1)
			e->ecx |= 1u << 31; /* hypervisor present */
	}
	/* APIC ids and the sockets, cores and threads around them (arch/x86/topology.c). */
	ret = topo_cpuid_apply(&topo, v->id, c->entries, &c->nent, max);
	if (ret)
		goto out;
	cpuid_mask_apply(&v->vm->cpuid_mask, c->entries, c->nent);
	if (ioctl(v->fd, KVM_SET_CPUID2, c) < 0) {
		ret = -errno;
		goto out;
	}
	/* Read back what the guest will see: not every KVM keeps what it is given. */
	c->nent = max;
	if (v->id == 0 && ioctl(v->fd, KVM_GET_CPUID2, c) == 0)
		cpuid_mask_unkept(&v->vm->cpuid_mask, c->entries, c->nent, &v->vm->cpuid_unkept);
out:
	free(c);
	return ret;
}

static void vcpu_dump_error(struct vcpu *v, const char *what)
{
	struct kvm_regs regs;
	struct kvm_sregs sregs;

	if (ioctl(v->fd, KVM_GET_REGS, &regs) || ioctl(v->fd, KVM_GET_SREGS, &sregs)) {
		log_error("vCPU %u: %s", v->id, what);
		return;
	}
	log_error("vCPU %u: %s at rip 0x%llx (cs 0x%x, cr0 0x%llx, efer 0x%llx)", v->id, what,
		  regs.rip, sregs.cs.selector, sregs.cr0, sregs.efer);
}

static void vcpu_io(struct vcpu *v)
{
	struct kvm_run *r = v->run;
	uint8_t *data = (uint8_t *)r + r->io.data_offset;
	bool wr = r->io.direction == KVM_EXIT_IO_OUT;

	/* String I/O (rep ins/outs) arrives as @count consecutive items. */
	for (unsigned i = 0; i < r->io.count; i++) {
		if (!bus_access(&v->vm->pio, r->io.port, data + i * r->io.size, r->io.size, wr) &&
		    v->vm->strictio) {
			/* -e, bhyve's debugging aid: say where, then stop. */
			log_error("vCPU %u: %s of %u byte(s) at I/O port 0x%x, which nothing "
				  "emulates: stopping (-e)",
				  v->id, wr ? "write" : "read", r->io.size, r->io.port);
			vm_request_exit(v->vm, VM_EXIT_ERROR);
			return;
		}
	}
}

static void vcpu_system_event(struct vcpu *v)
{
	switch (v->run->system_event.type) {
	case KVM_SYSTEM_EVENT_SHUTDOWN:
		vm_request_exit(v->vm, VM_EXIT_POWEROFF);
		break;
	case KVM_SYSTEM_EVENT_RESET:
		vm_request_exit(v->vm, VM_EXIT_REBOOT);
		break;
	default:
		vcpu_dump_error(v, "unexpected system event");
		vm_request_exit(v->vm, VM_EXIT_ERROR);
		break;
	}
}

const char *vcpu_exit_name(unsigned reason)
{
	static const char *const names[] = {
		[KVM_EXIT_UNKNOWN] = "unknown",
		[KVM_EXIT_EXCEPTION] = "exception",
		[KVM_EXIT_IO] = "io",
		[KVM_EXIT_HYPERCALL] = "hypercall",
		[KVM_EXIT_DEBUG] = "debug",
		[KVM_EXIT_HLT] = "hlt",
		[KVM_EXIT_MMIO] = "mmio",
		[KVM_EXIT_IRQ_WINDOW_OPEN] = "irq_window_open",
		[KVM_EXIT_SHUTDOWN] = "shutdown",
		[KVM_EXIT_FAIL_ENTRY] = "fail_entry",
		[KVM_EXIT_INTR] = "intr",
		[KVM_EXIT_SET_TPR] = "set_tpr",
		[KVM_EXIT_TPR_ACCESS] = "tpr_access",
		[KVM_EXIT_NMI] = "nmi",
		[KVM_EXIT_INTERNAL_ERROR] = "internal_error",
		[KVM_EXIT_SYSTEM_EVENT] = "system_event",
		[KVM_EXIT_IOAPIC_EOI] = "ioapic_eoi",
		[KVM_EXIT_X86_RDMSR] = "rdmsr",
		[KVM_EXIT_X86_WRMSR] = "wrmsr",
	};

	return reason < sizeof(names) / sizeof(names[0]) ? names[reason] : NULL;
}

uint64_t vcpu_exit_count(const struct vcpu *v, unsigned reason)
{
	return __atomic_load_n(&v->exits[reason < VCPU_EXIT_REASONS ? reason : VCPU_EXIT_REASONS],
			       __ATOMIC_RELAXED);
}

static void vcpu_count_exit(struct vcpu *v, unsigned reason)
{
	uint64_t *c = &v->exits[reason < VCPU_EXIT_REASONS ? reason : VCPU_EXIT_REASONS];

	/* One writer (this thread): a relaxed store is enough for readers elsewhere. */
	__atomic_store_n(c, *c + 1, __ATOMIC_RELAXED);
}

static int vcpu_nmi_fn(struct vcpu *v, void *arg)
{
	(void)arg;
	if (ioctl(v->fd, KVM_NMI) < 0)
		return -errno;
	__atomic_store_n(&v->nmis, v->nmis + 1, __ATOMIC_RELAXED);
	return 0;
}

int vcpu_inject_nmi(struct vcpu *v)
{
	return vcpu_run_on(v, vcpu_nmi_fn, NULL);
}

/* One exit.  Returns false when this vCPU must stop running the guest. */
static bool vcpu_handle_exit(struct vcpu *v)
{
	struct kvm_run *r = v->run;

	/*
	 * Writes KVM buffered (coalesced MMIO, bus.h), by any vCPU, land before anything this
	 * exit does or reads: a register read, a doorbell, a port, even a halt (the tick would
	 * get them there, later).  Without coalesced zones this is two loads.
	 */
	bus_coalesce_drain(&v->vm->mmio);
	vcpu_count_exit(v, r->exit_reason);
	switch (r->exit_reason) {
	case KVM_EXIT_IO:
		vcpu_io(v);
		return true;
	case KVM_EXIT_MMIO:
		bus_access(&v->vm->mmio, r->mmio.phys_addr, r->mmio.data, r->mmio.len,
			   r->mmio.is_write);
		return true;
	case KVM_EXIT_INTR:
	case KVM_EXIT_IRQ_WINDOW_OPEN:
		return true;
	case KVM_EXIT_X86_RDMSR:
		/* Only with -w (vm.c): an MSR KVM does not know reads as 0. */
		r->msr.data = 0;
		r->msr.error = 0;
		return true;
	case KVM_EXIT_X86_WRMSR:
		r->msr.error = 0; /* and writes to it are dropped */
		return true;
	case KVM_EXIT_DEBUG:
		/* Only with the debugger's KVM_SET_GUEST_DEBUG (gdb/gdbstub.c). */
		if (gdbstub_debug_exit(v))
			return true;
		vcpu_dump_error(v, "debug exit with no debugger");
		vm_request_exit(v->vm, VM_EXIT_ERROR);
		return false;
	case KVM_EXIT_HLT:
		vm_request_exit(v->vm, VM_EXIT_HALT);
		return false;
	case KVM_EXIT_SHUTDOWN:
		vcpu_dump_error(v, "triple fault");
		vm_request_exit(v->vm, VM_EXIT_TRIPLEFAULT);
		return false;
	case KVM_EXIT_SYSTEM_EVENT:
		vcpu_system_event(v);
		return false;
	case KVM_EXIT_INTERNAL_ERROR:
		vcpu_dump_error(v, "KVM internal error (emulation failure?)");
		vm_request_exit(v->vm, VM_EXIT_ERROR);
		return false;
	case KVM_EXIT_FAIL_ENTRY:
		vcpu_dump_error(v, "VM entry failed");
		vm_request_exit(v->vm, VM_EXIT_ERROR);
		return false;
	default:
		log_error("vCPU %u: unhandled exit reason %u", v->id, r->exit_reason);
		vm_request_exit(v->vm, VM_EXIT_ERROR);
		return false;
	}
}

/*
 * Exits that KVM finishes only when the vCPU next enters KVM_RUN (api.rst, on kvm_run's
 * exit reasons: "the corresponding operations are complete (and guest state is consistent)
 * only after userspace has re-entered the kernel"): the value of an IN or an MMIO read
 * reaches the guest's register, RIP moves past an IN or OUT, the next part of a string I/O
 * or of an MMIO access split across pages, an MSR access khyve answered.  Until then the
 * registers still show the instruction as not executed, while the device's side of it has
 * happened (a byte popped from a FIFO, a flag cleared on read).  khyve enables none of the
 * other exits that need this (HYPERCALL, XEN).
 */
static bool vcpu_exit_needs_completion(uint32_t reason)
{
	switch (reason) {
	case KVM_EXIT_IO:
	case KVM_EXIT_MMIO:
	case KVM_EXIT_X86_RDMSR:
	case KVM_EXIT_X86_WRMSR:
		return true;
	default:
		return false;
	}
}

/* Park here while a pause is requested; run any work handed over.  Called with v->lock. */
static void vcpu_park(struct vcpu *v)
{
	v->paused = true;
	pthread_cond_broadcast(&v->cond);
	while ((v->pause_req || v->dbg_hold || v->work) && !v->stop) {
		if (v->work) {
			int (*fn)(struct vcpu *, void *) = v->work;

			pthread_mutex_unlock(&v->lock);
			v->work_ret = fn(v, v->work_arg);
			pthread_mutex_lock(&v->lock);
			v->work = NULL;
			v->work_done = true;
			pthread_cond_broadcast(&v->cond);
			continue;
		}
		pthread_cond_wait(&v->cond, &v->lock);
	}
	v->paused = false;
	v->clock_stopped = true;
	v->run->immediate_exit = 0;
}

/*
 * After a pause or a restore the guest's clocks have moved on by the time it was stopped (all
 * of it on a KVM that cannot set the TSC, where a restore keeps every clock in agreement with
 * the TSC: snap/clocks.h).  KVM_KVMCLOCK_CTRL sets PVCLOCK_GUEST_STOPPED in the vCPU's pvclock
 * page, and a Linux guest's soft-lockup, RCU-stall, hung-task and clocksource watchdogs then
 * take the gap for a stopped VM rather than a hung CPU, as QEMU does on every resume.  Called
 * on the vCPU's thread before it runs again, after a restore has set its kvmclock MSR.  It fails
 * with EINVAL while the guest has not enabled kvmclock: there is nobody to tell then.
 */
static void vcpu_clock_stopped(struct vcpu *v)
{
	if (!v->clock_stopped)
		return;
	v->clock_stopped = false;
	ioctl(v->fd, KVM_KVMCLOCK_CTRL, 0);
}

/*
 * Auto-converge: sleep the time vcpus_throttle asked for, outside KVM_RUN (a kick brought the
 * vCPU here).  A pause, the debugger, the VM's end or the throttle's end wake it early.  Called
 * with v->lock, which the wait gives up.
 */
static void vcpu_throttle_sleep(struct vcpu *v)
{
	uint64_t ns = v->throttle_ns, t0 = now_ns();
	struct timespec ts;

	v->throttle_ns = 0;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += (time_t)(ns / 1000000000ULL);
	ts.tv_nsec += (long)(ns % 1000000000ULL);
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	v->throttled = true;
	while (v->throttled && !v->pause_req && !v->dbg_hold && !v->stop)
		if (pthread_cond_timedwait(&v->cond, &v->lock, &ts) == ETIMEDOUT)
			break;
	v->throttled = false;
	/* The kick's immediate_exit; a pause asking again sets it again, under this lock. */
	if (!v->pause_req && !v->dbg_hold && !v->stop)
		v->run->immediate_exit = 0;
	__atomic_store_n(&v->throttle_sleeps, v->throttle_sleeps + 1, __ATOMIC_RELAXED);
	__atomic_store_n(&v->throttled_ns, v->throttled_ns + (now_ns() - t0), __ATOMIC_RELAXED);
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	bool running = true;
	char name[16];
	int ret;

	snprintf(name, sizeof(name), "vcpu%u", v->id);
	pthread_setname_np(pthread_self(), name);
	for (;;) {
		pthread_mutex_lock(&v->lock);
		if ((v->pause_req || v->dbg_hold) && v->exit_pending) {
			/*
			 * Never park, and so never have the state read for a snapshot, in the
			 * middle of an exit (vcpu_exit_needs_completion): a restored guest would
			 * execute the instruction again and its event would be gone.  Enter
			 * KVM_RUN once more with immediate_exit set instead: KVM completes the
			 * exit and returns -EINTR before the guest runs another instruction (or
			 * exits again if completing needs us, and we come back here).
			 */
			v->run->immediate_exit = 1;
		} else if (v->pause_req || v->dbg_hold || !running) {
			vcpu_park(v);
		} else if (v->throttle_ns) {
			vcpu_throttle_sleep(v);
			if (v->pause_req || v->dbg_hold) {
				pthread_mutex_unlock(&v->lock);
				continue; /* park (or finish the exit) first */
			}
		} else if (v->run->immediate_exit && !v->stop) {
			/* A throttle kick whose sleep was called off before this vCPU got to it. */
			v->run->immediate_exit = 0;
		}
		if (v->stop) {
			pthread_mutex_unlock(&v->lock);
			break;
		}
		pthread_mutex_unlock(&v->lock);
		if (!running) {
			/* The guest cannot continue on this vCPU; wait for the VM to end. */
			pthread_mutex_lock(&v->lock);
			while (!v->stop && !v->pause_req && !v->dbg_hold)
				pthread_cond_wait(&v->cond, &v->lock);
			pthread_mutex_unlock(&v->lock);
			continue;
		}
		vcpu_clock_stopped(v);
		ret = ioctl(v->fd, KVM_RUN, 0);
		/* Entering finished the previous exit (or the vCPU is broken for good). */
		v->exit_pending = false;
		if (ret < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			vcpu_dump_error(v, strerror(errno));
			vm_request_exit(v->vm, VM_EXIT_ERROR);
			running = false;
			continue;
		}
		running = vcpu_handle_exit(v);
		v->exit_pending = running && vcpu_exit_needs_completion(v->run->exit_reason);
	}
	return NULL;
}

int vcpu_start(struct vcpu *v)
{
	int err;

	pthread_attr_t attr;

	vcpu_install_kick();
	pthread_attr_init(&attr);
	/* -p: pinned from its first instruction. */
	err = v->pin ? pthread_attr_setaffinity_np(&attr, sizeof(*v->pin), v->pin) : 0;
	if (!err)
		err = pthread_create(&v->thread, &attr, vcpu_thread, v);
	pthread_attr_destroy(&attr);
	if (err)
		return -err;
	v->started = true;
	v->clock_stopped = true; /* a restored guest's clock jumped too */
	return 0;
}

static void vcpu_kick(struct vcpu *v)
{
	v->run->immediate_exit = 1;
	if (v->started)
		pthread_kill(v->thread, VCPU_KICK_SIG);
}

/* Wait until every vCPU asked to stop (pause_req or dbg_hold) is parked. */
static void vcpus_wait_parked(struct vm *vm)
{
	for (unsigned i = 0; i < vm->ncpus; i++) {
		struct vcpu *v = vm->vcpus[i];

		pthread_mutex_lock(&v->lock);
		while (v->started && !v->paused) {
			/* Re-kick: the signal may have landed before the thread blocked. */
			struct timespec ts;

			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 10 * 1000 * 1000;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			if (pthread_cond_timedwait(&v->cond, &v->lock, &ts) == ETIMEDOUT)
				vcpu_kick(v);
		}
		pthread_mutex_unlock(&v->lock);
	}
}

int vcpus_pause(struct vm *vm)
{
	for (unsigned i = 0; i < vm->ncpus; i++) {
		struct vcpu *v = vm->vcpus[i];

		pthread_mutex_lock(&v->lock);
		v->pause_req = true;
		vcpu_kick(v);
		pthread_cond_broadcast(&v->cond); /* a vCPU asleep for auto-converge */
		pthread_mutex_unlock(&v->lock);
	}
	vcpus_wait_parked(vm);
	return 0;
}

void vcpus_resume(struct vm *vm)
{
	for (unsigned i = 0; i < vm->ncpus; i++) {
		struct vcpu *v = vm->vcpus[i];

		pthread_mutex_lock(&v->lock);
		v->pause_req = false;
		pthread_cond_broadcast(&v->cond);
		pthread_mutex_unlock(&v->lock);
	}
}

void vcpus_hold(struct vm *vm)
{
	for (unsigned i = 0; i < vm->ncpus; i++) {
		struct vcpu *v = vm->vcpus[i];

		pthread_mutex_lock(&v->lock);
		if (!v->dbg_hold) {
			v->dbg_hold = true;
			vcpu_kick(v);
			pthread_cond_broadcast(&v->cond);
		}
		pthread_mutex_unlock(&v->lock);
	}
	vcpus_wait_parked(vm);
}

void vcpu_release(struct vcpu *v)
{
	pthread_mutex_lock(&v->lock);
	v->dbg_hold = false;
	pthread_cond_broadcast(&v->cond);
	pthread_mutex_unlock(&v->lock);
}

void vcpu_hold_self(struct vcpu *v)
{
	pthread_mutex_lock(&v->lock);
	v->dbg_hold = true;
	pthread_mutex_unlock(&v->lock);
}

int vcpu_run_on(struct vcpu *v, int (*fn)(struct vcpu *, void *), void *arg)
{
	int ret;

	if (!v->started)
		return fn(v, arg);
	pthread_mutex_lock(&v->lock);
	v->work_arg = arg;
	v->work_done = false;
	v->work = fn;
	pthread_cond_broadcast(&v->cond);
	while (!v->work_done)
		pthread_cond_wait(&v->cond, &v->lock);
	ret = v->work_ret;
	pthread_mutex_unlock(&v->lock);
	return ret;
}

/* The timer of vcpus_throttle: a slice has run, every vCPU sleeps now, the next slice after. */
static void vcpus_throttle_tick(void *opaque)
{
	struct vm *vm = opaque;
	unsigned pct = vm->throttle_pct;
	uint64_t sleep = VCPU_THROTTLE_SLICE_NS * pct / (100 - pct);

	if (!pct)
		return;
	for (unsigned i = 0; i < vm->ncpus; i++) {
		struct vcpu *v = vm->vcpus[i];

		if (!v || !v->started)
			continue;
		pthread_mutex_lock(&v->lock);
		v->throttle_ns = sleep;
		vcpu_kick(v);
		pthread_mutex_unlock(&v->lock);
	}
	vtimer_arm(&vm->throttle_timer, vclock_ns(&vm->ev) + sleep + VCPU_THROTTLE_SLICE_NS);
}

void vcpus_throttle(struct vm *vm, unsigned pct)
{
	bool was = vm->throttle_pct;

	pct = pct > VCPU_THROTTLE_MAX ? VCPU_THROTTLE_MAX : pct;
	vm->throttle_pct = pct;
	if (!vm->throttle_timer.ev)
		vtimer_init(&vm->throttle_timer, &vm->ev, vcpus_throttle_tick, vm);
	if (pct && !was) {
		/* A first slice at full speed, then the tick's rhythm (a new @pct from its next). */
		vtimer_arm(&vm->throttle_timer, vclock_ns(&vm->ev) + VCPU_THROTTLE_SLICE_NS);
		return;
	}
	if (pct)
		return;
	vtimer_cancel(&vm->throttle_timer);
	for (unsigned i = 0; i < vm->ncpus; i++) {
		struct vcpu *v = vm->vcpus[i];

		if (!v)
			continue;
		pthread_mutex_lock(&v->lock);
		v->throttle_ns = 0;
		v->throttled = false;
		pthread_cond_broadcast(&v->cond);
		pthread_mutex_unlock(&v->lock);
	}
}

void vcpus_stop(struct vm *vm)
{
	for (unsigned i = 0; i < vm->ncpus; i++) {
		struct vcpu *v = vm->vcpus[i];

		if (!v)
			continue;
		pthread_mutex_lock(&v->lock);
		v->stop = true;
		vcpu_kick(v);
		pthread_cond_broadcast(&v->cond);
		pthread_mutex_unlock(&v->lock);
	}
	for (unsigned i = 0; i < vm->ncpus; i++) {
		struct vcpu *v = vm->vcpus[i];

		if (v && v->started) {
			pthread_join(v->thread, NULL);
			v->started = false;
		}
	}
}

void vcpu_destroy(struct vcpu *v)
{
	if (v->run && v->run != MAP_FAILED)
		munmap(v->run, (size_t)v->vm->run_size);
	if (v->fd >= 0)
		close(v->fd);
	pthread_mutex_destroy(&v->lock);
	pthread_cond_destroy(&v->cond);
	free(v->pin);
	free(v);
}
