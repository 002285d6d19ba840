// SPDX-License-Identifier: BSD-2-Clause
/* vCPU and VM-wide KVM state for snapshots (see cpustate.h). */
#include "arch/x86/cpustate.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "sstream.h"
#include "vcpu.h"
#include "vm.h"

#define MSR_IA32_TSC 0x10
#define MSR_IA32_TSC_DEADLINE 0x6e0

/* ---- the MSR list: KVM's index list, keeping the MSRs that really read back ---- */

static uint32_t msr_list[CPUSTATE_MAX_MSRS];
static uint32_t msr_count;
static pthread_mutex_t msr_lock = PTHREAD_MUTEX_INITIALIZER;

static bool msr_reads(int vcpu_fd, uint32_t index)
{
	struct {
		struct kvm_msrs h;
		struct kvm_msr_entry e;
	} m = { .h.nmsrs = 1, .e.index = index };

	return ioctl(vcpu_fd, KVM_GET_MSRS, &m) == 1;
}

/* IA32_TSC first and TSC_DEADLINE last: the deadline is relative to the restored TSC. */
static int msr_rank(uint32_t index)
{
	return index == MSR_IA32_TSC ? 0 : index == MSR_IA32_TSC_DEADLINE ? 2 : 1;
}

static int msr_build_list(int kvm_fd, int vcpu_fd)
{
	struct kvm_msr_list *l;
	uint32_t n = 0;
	int ret = 0;

	pthread_mutex_lock(&msr_lock);
	if (msr_count)
		goto out;
	l = calloc(1, sizeof(*l) + 1024 * sizeof(uint32_t));
	if (!l) {
		ret = -ENOMEM;
		goto out;
	}
	l->nmsrs = 1024;
	if (ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, l) < 0) {
		ret = -errno;
		free(l);
		goto out;
	}
	for (int rank = 0; rank < 3; rank++)
		for (uint32_t i = 0; i < l->nmsrs && n < CPUSTATE_MAX_MSRS; i++)
			if (msr_rank(l->indices[i]) == rank && msr_reads(vcpu_fd, l->indices[i]))
				msr_list[n++] = l->indices[i];
	free(l);
	msr_count = n;
out:
	pthread_mutex_unlock(&msr_lock);
	return ret;
}

static int cpustate_get_msrs(struct vcpu *v, struct cpustate *cs)
{
	struct kvm_msrs *m;
	int ret = msr_build_list(v->vm->kvm_fd, v->fd);

	if (ret)
		return ret;
	m = calloc(1, sizeof(*m) + msr_count * sizeof(m->entries[0]));
	cs->msrs = calloc(msr_count ? msr_count : 1, sizeof(*cs->msrs));
	if (!m || !cs->msrs) {
		free(m);
		return -ENOMEM;
	}
	m->nmsrs = msr_count;
	for (uint32_t i = 0; i < msr_count; i++)
		m->entries[i].index = msr_list[i];
	ret = ioctl(v->fd, KVM_GET_MSRS, m);
	if (ret != (int)msr_count) {
		free(m);
		return ret < 0 ? -errno : -EIO;
	}
	memcpy(cs->msrs, m->entries, msr_count * sizeof(m->entries[0]));
	cs->nmsrs = msr_count;
	free(m);
	return 0;
}

static int cpustate_get_cpuid(struct vcpu *v, struct cpustate *cs)
{
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + CPUSTATE_MAX_CPUID * sizeof(c->entries[0]));

	if (!c)
		return -ENOMEM;
	c->nent = CPUSTATE_MAX_CPUID;
	if (ioctl(v->fd, KVM_GET_CPUID2, c) < 0) {
		free(c);
		return -errno;
	}
	cs->cpuid = calloc(c->nent ? c->nent : 1, sizeof(*cs->cpuid));
	if (!cs->cpuid) {
		free(c);
		return -ENOMEM;
	}
	memcpy(cs->cpuid, c->entries, c->nent * sizeof(c->entries[0]));
	cs->ncpuid = c->nent;
	free(c);
	return 0;
}

static int cpustate_get_xsave(struct vcpu *v, struct cpustate *cs)
{
	int size = ioctl(v->vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
	unsigned long req = KVM_GET_XSAVE2;

	/* KVM_CAP_XSAVE2 gives the size of the whole area (AMX needs more than 4 KiB). */
	if (size < (int)sizeof(struct kvm_xsave)) {
		size = sizeof(struct kvm_xsave);
		req = KVM_GET_XSAVE;
	}
	if (size > CPUSTATE_MAX_XSAVE)
		return -E2BIG;
	cs->xsave = calloc(1, (size_t)size);
	if (!cs->xsave)
		return -ENOMEM;
	cs->xsave_size = (uint32_t)size;
	return ioctl(v->fd, req, cs->xsave) < 0 ? -errno : 0;
}

int cpustate_get(struct vcpu *v, struct cpustate *cs)
{
	int fd = v->fd, ret;

	memset(cs, 0, sizeof(*cs));
	if (ioctl(fd, KVM_GET_MP_STATE, &cs->mp) < 0 || ioctl(fd, KVM_GET_REGS, &cs->regs) < 0 ||
	    ioctl(fd, KVM_GET_SREGS, &cs->sregs) < 0 || ioctl(fd, KVM_GET_XCRS, &cs->xcrs) < 0 ||
	    ioctl(fd, KVM_GET_LAPIC, &cs->lapic) < 0 ||
	    ioctl(fd, KVM_GET_VCPU_EVENTS, &cs->events) < 0 ||
	    ioctl(fd, KVM_GET_DEBUGREGS, &cs->dbg) < 0)
		return -errno;
	ret = cpustate_get_xsave(v, cs);
	if (!ret)
		ret = cpustate_get_msrs(v, cs);
	if (!ret)
		ret = cpustate_get_cpuid(v, cs);
	return ret;
}

int cpustate_tsc(const struct cpustate *cs, uint64_t *tsc)
{
	for (uint32_t i = 0; i < cs->nmsrs; i++) {
		if (cs->msrs[i].index == MSR_IA32_TSC) {
			*tsc = cs->msrs[i].data;
			return 0;
		}
	}
	return -ENOENT;
}

int cpustate_set_tsc(struct cpustate *cs, uint64_t tsc)
{
	for (uint32_t i = 0; i < cs->nmsrs; i++) {
		if (cs->msrs[i].index == MSR_IA32_TSC) {
			cs->msrs[i].data = tsc;
			return 0;
		}
	}
	return -ENOENT;
}

void cpustate_free(struct cpustate *cs)
{
	free(cs->xsave);
	free(cs->msrs);
	free(cs->cpuid);
	cs->xsave = NULL;
	cs->msrs = NULL;
	cs->cpuid = NULL;
}

/* ---- coding ---- */

/* KVM's __u64 is unsigned long long: code it through a uint64_t copy, never a cast pointer. */
static void ss_k64(struct sstream *s, __u64 *v)
{
	uint64_t x = *v;

	ss_u64(s, &x);
	*v = x;
}

static void ss_k64_array(struct sstream *s, __u64 *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		ss_k64(s, &v[i]);
}

static void segment_io(struct sstream *s, struct kvm_segment *g)
{
	ss_k64(s, &g->base);
	ss_u32(s, &g->limit);
	ss_u16(s, &g->selector);
	ss_u8(s, &g->type);
	ss_u8(s, &g->present);
	ss_u8(s, &g->dpl);
	ss_u8(s, &g->db);
	ss_u8(s, &g->s);
	ss_u8(s, &g->l);
	ss_u8(s, &g->g);
	ss_u8(s, &g->avl);
	ss_u8(s, &g->unusable);
}

static void dtable_io(struct sstream *s, struct kvm_dtable *d)
{
	ss_k64(s, &d->base);
	ss_u16(s, &d->limit);
}

static void regs_io(struct sstream *s, struct kvm_regs *r)
{
	__u64 *f[] = { &r->rax, &r->rbx, &r->rcx, &r->rdx, &r->rsi, &r->rdi,
		       &r->rsp, &r->rbp, &r->r8,  &r->r9,  &r->r10, &r->r11,
		       &r->r12, &r->r13, &r->r14, &r->r15, &r->rip, &r->rflags };

	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++)
		ss_k64(s, f[i]);
}

static void sregs_io(struct sstream *s, struct kvm_sregs *r)
{
	struct kvm_segment *segs[] = { &r->cs, &r->ds, &r->es, &r->fs,
				       &r->gs, &r->ss, &r->tr, &r->ldt };

	for (size_t i = 0; i < sizeof(segs) / sizeof(segs[0]); i++)
		segment_io(s, segs[i]);
	dtable_io(s, &r->gdt);
	dtable_io(s, &r->idt);
	ss_k64(s, &r->cr0);
	ss_k64(s, &r->cr2);
	ss_k64(s, &r->cr3);
	ss_k64(s, &r->cr4);
	ss_k64(s, &r->cr8);
	ss_k64(s, &r->efer);
	ss_k64(s, &r->apic_base);
	ss_k64_array(s, r->interrupt_bitmap, 4);
}

static void events_io(struct sstream *s, struct kvm_vcpu_events *e)
{
	ss_u8(s, &e->exception.injected);
	ss_u8(s, &e->exception.nr);
	ss_u8(s, &e->exception.has_error_code);
	ss_u8(s, &e->exception.pending);
	ss_u32(s, &e->exception.error_code);
	ss_u8(s, &e->interrupt.injected);
	ss_u8(s, &e->interrupt.nr);
	ss_u8(s, &e->interrupt.soft);
	ss_u8(s, &e->interrupt.shadow);
	ss_u8(s, &e->nmi.injected);
	ss_u8(s, &e->nmi.pending);
	ss_u8(s, &e->nmi.masked);
	ss_u32(s, &e->sipi_vector);
	ss_u32(s, &e->flags);
	ss_u8(s, &e->smi.smm);
	ss_u8(s, &e->smi.pending);
	ss_u8(s, &e->smi.smm_inside_nmi);
	ss_u8(s, &e->smi.latched_init);
	ss_u8(s, &e->triple_fault.pending);
	ss_u8(s, &e->exception_has_payload);
	ss_k64(s, &e->exception_payload);
}

static void debugregs_io(struct sstream *s, struct kvm_debugregs *d)
{
	ss_k64_array(s, d->db, 4);
	ss_k64(s, &d->dr6);
	ss_k64(s, &d->dr7);
	ss_k64(s, &d->flags);
}

static void xcrs_io(struct sstream *s, struct kvm_xcrs *x)
{
	ss_u32(s, &x->nr_xcrs);
	ss_check_max(s, x->nr_xcrs, KVM_MAX_XCRS, "XCR count");
	ss_u32(s, &x->flags);
	for (uint32_t i = 0; i < x->nr_xcrs && !s->err; i++) {
		ss_u32(s, &x->xcrs[i].xcr);
		ss_k64(s, &x->xcrs[i].value);
	}
}

/* Load-side: allocate @n elements of @size for a list whose count came from the stream. */
static void *list_alloc(struct sstream *s, void **p, uint32_t n, uint32_t max, size_t size,
			const char *what)
{
	ss_check_max(s, n, max, what);
	if (!s->loading || s->err)
		return *p;
	*p = calloc(n ? n : 1, size);
	if (!*p)
		ss_fail(s, -ENOMEM, "out of memory");
	return *p;
}

static void msrs_io(struct sstream *s, struct cpustate *cs)
{
	ss_u32(s, &cs->nmsrs);
	if (!list_alloc(s, (void **)&cs->msrs, cs->nmsrs, CPUSTATE_MAX_MSRS, sizeof(*cs->msrs),
			"MSR count"))
		return;
	for (uint32_t i = 0; i < cs->nmsrs && !s->err; i++) {
		ss_u32(s, &cs->msrs[i].index);
		ss_k64(s, &cs->msrs[i].data);
	}
}

static void cpuid_io(struct sstream *s, struct cpustate *cs)
{
	ss_u32(s, &cs->ncpuid);
	if (!list_alloc(s, (void **)&cs->cpuid, cs->ncpuid, CPUSTATE_MAX_CPUID, sizeof(*cs->cpuid),
			"CPUID entry count"))
		return;
	for (uint32_t i = 0; i < cs->ncpuid && !s->err; i++) {
		struct kvm_cpuid_entry2 *e = &cs->cpuid[i];

		ss_u32(s, &e->function);
		ss_u32(s, &e->index);
		ss_u32(s, &e->flags);
		ss_u32(s, &e->eax);
		ss_u32(s, &e->ebx);
		ss_u32(s, &e->ecx);
		ss_u32(s, &e->edx);
	}
}

void cpustate_io(struct sstream *s, struct cpustate *cs)
{
	ss_u32(s, &cs->mp.mp_state);
	ss_check_max(s, cs->mp.mp_state, KVM_MP_STATE_AP_RESET_HOLD, "MP state");
	regs_io(s, &cs->regs);
	sregs_io(s, &cs->sregs);
	xcrs_io(s, &cs->xcrs);
	ss_bytes(s, cs->lapic.regs, sizeof(cs->lapic.regs));
	events_io(s, &cs->events);
	debugregs_io(s, &cs->dbg);
	ss_u32(s, &cs->xsave_size);
	ss_check_max(s, cs->xsave_size, CPUSTATE_MAX_XSAVE, "XSAVE size");
	if (s->loading && !s->err && cs->xsave_size < sizeof(struct kvm_xsave))
		ss_fail(s, -EINVAL, "XSAVE size %u is too small", cs->xsave_size);
	if (list_alloc(s, (void **)&cs->xsave, cs->xsave_size, CPUSTATE_MAX_XSAVE, 1, "XSAVE size"))
		ss_bytes(s, cs->xsave, cs->xsave_size);
	msrs_io(s, cs);
	cpuid_io(s, cs);
}

void cpustate_load(struct sstream *s, struct cpustate *cs, unsigned version)
{
	/* Fields are never reinterpreted: a version this khyve does not write is refused. */
	if (version != CPUSTATE_VERSION) {
		ss_fail(s, -EINVAL, "vCPU state version %u is not supported (%u)", version,
			CPUSTATE_VERSION);
		return;
	}
	cpustate_io(s, cs);
}

/* ---- restore ---- */

static const struct kvm_cpuid_entry2 *cpuid_find(const struct kvm_cpuid_entry2 *e, uint32_t n,
						 uint32_t fn, uint32_t idx)
{
	for (uint32_t i = 0; i < n; i++)
		if (e[i].function == fn &&
		    (!(e[i].flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) || e[i].index == idx))
			return &e[i];
	return NULL;
}

int cpustate_check(const struct cpustate *cs, int vcpu_fd, char *err, size_t errlen)
{
	/* The feature words a guest decides its code paths on. */
	static const struct {
		uint32_t fn, idx;
		int reg;
		const char *name;
	} words[] = {
		{ 1, 0, 2, "CPUID.1:ECX" },
		{ 1, 0, 3, "CPUID.1:EDX" },
		{ 7, 0, 1, "CPUID.7.0:EBX" },
		{ 7, 0, 2, "CPUID.7.0:ECX" },
		{ 7, 0, 3, "CPUID.7.0:EDX" },
		{ 0xd, 1, 0, "CPUID.0xD.1:EAX" },
		{ 0x80000001, 0, 2, "CPUID.80000001:ECX" },
		{ 0x80000001, 0, 3, "CPUID.80000001:EDX" },
	};
	struct kvm_cpuid2 *sup = calloc(1, sizeof(*sup) + 256 * sizeof(sup->entries[0]));
	int ret = 0;

	if (!sup)
		return -ENOMEM;
	/*
	 * Compare with what this host gives a new vCPU (vcpu_set_cpuid), not with the raw
	 * KVM_GET_SUPPORTED_CPUID list: some KVMs (PVM) fill in more than that list shows.
	 */
	sup->nent = 256;
	if (ioctl(vcpu_fd, KVM_GET_CPUID2, sup) < 0) {
		ret = -errno;
		snprintf(err, errlen, "KVM_GET_CPUID2: %s", strerror(errno));
		goto out;
	}
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
		const struct kvm_cpuid_entry2 *a, *b;
		uint32_t saved, here;

		a = cpuid_find(cs->cpuid, cs->ncpuid, words[i].fn, words[i].idx);
		b = cpuid_find(sup->entries, sup->nent, words[i].fn, words[i].idx);
		if (!a)
			continue;
		saved = (&a->eax)[words[i].reg];
		here = b ? (&b->eax)[words[i].reg] : 0;
		/* The hypervisor bit is ours to set, not the host's. */
		if (words[i].fn == 1 && words[i].reg == 2)
			saved &= ~(1u << 31);
		if (saved & ~here) {
			snprintf(err, errlen,
				 "the guest saw CPU features this host lacks: %s bits "
				 "0x%08x",
				 words[i].name, saved & ~here);
			ret = -ENOTSUP;
			goto out;
		}
	}
out:
	free(sup);
	return ret;
}

static int cpustate_set_cpuid(struct vcpu *v, const struct cpustate *cs)
{
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + cs->ncpuid * sizeof(c->entries[0]));
	int ret = 0;

	if (!c)
		return -ENOMEM;
	c->nent = cs->ncpuid;
	memcpy(c->entries, cs->cpuid, cs->ncpuid * sizeof(c->entries[0]));
	if (ioctl(v->fd, KVM_SET_CPUID2, c) < 0)
		ret = -errno;
	free(c);
	return ret;
}

/* 0, -errno, or 1 when KVM refused the MSR *@refused (the index, not an errno: 0x10 is one). */
static int cpustate_set_msrs(struct vcpu *v, const struct cpustate *cs, uint32_t *refused)
{
	struct kvm_msrs *m = calloc(1, sizeof(*m) + cs->nmsrs * sizeof(m->entries[0]));
	int ret;

	if (!m)
		return -ENOMEM;
	m->nmsrs = cs->nmsrs;
	memcpy(m->entries, cs->msrs, cs->nmsrs * sizeof(m->entries[0]));
	ret = ioctl(v->fd, KVM_SET_MSRS, m);
	/* KVM_SET_MSRS stops at the first MSR it refuses: the count tells which. */
	if (ret >= 0 && ret < (int)cs->nmsrs) {
		*refused = cs->msrs[ret].index;
		ret = 1;
	} else {
		ret = ret < 0 ? -errno : 0;
	}
	free(m);
	return ret;
}

/*
 * KVM's ordering rules, in the order applied:
 *  - CPUID first: it decides which MSRs and XSAVE features are valid;
 *  - MP_STATE before REGS (an AP in INIT/SIPI state would otherwise reset what REGS set);
 *  - SREGS before REGS (the mode decides how RIP/RFLAGS are taken), then XCRS before XSAVE;
 *  - SREGS before LAPIC (apic_base enables the LAPIC) and LAPIC before MSRS (TSC_DEADLINE is
 *    only accepted in TSC-deadline mode); within MSRS, IA32_TSC before TSC_DEADLINE (the list
 *    is ordered so when it is built);
 *  - REGS before VCPU_EVENTS (pending exceptions and interrupt shadow refer to that RIP);
 *  - DEBUGREGS last.
 */
int cpustate_set(struct vcpu *v, const struct cpustate *cs, char *err, size_t errlen)
{
	int fd = v->fd, ret;
	uint32_t refused = 0;
	const char *what;

	what = "CPUID";
	if ((ret = cpustate_set_cpuid(v, cs)))
		goto fail;
	what = "MP_STATE";
	if (ioctl(fd, KVM_SET_MP_STATE, &cs->mp) < 0)
		goto fail_errno;
	what = "SREGS";
	if (ioctl(fd, KVM_SET_SREGS, &cs->sregs) < 0)
		goto fail_errno;
	what = "REGS";
	if (ioctl(fd, KVM_SET_REGS, &cs->regs) < 0)
		goto fail_errno;
	what = "XCRS";
	if (ioctl(fd, KVM_SET_XCRS, &cs->xcrs) < 0)
		goto fail_errno;
	what = "XSAVE";
	if (ioctl(fd, KVM_SET_XSAVE, cs->xsave) < 0)
		goto fail_errno;
	what = "LAPIC";
	if (ioctl(fd, KVM_SET_LAPIC, &cs->lapic) < 0)
		goto fail_errno;
	what = "MSRS";
	ret = cpustate_set_msrs(v, cs, &refused);
	if (ret == 1) {
		snprintf(err, errlen, "vCPU %u: KVM refused MSR 0x%x", v->id, refused);
		return -EINVAL;
	}
	if (ret)
		goto fail;
	what = "VCPU_EVENTS";
	if (ioctl(fd, KVM_SET_VCPU_EVENTS, &cs->events) < 0)
		goto fail_errno;
	what = "DEBUGREGS";
	if (ioctl(fd, KVM_SET_DEBUGREGS, &cs->dbg) < 0)
		goto fail_errno;
	return 0;
fail_errno:
	ret = -errno;
fail:
	snprintf(err, errlen, "vCPU %u: KVM_SET_%s: %s", v->id, what, strerror(-ret));
	return ret;
}

/* ---- VM-wide state ---- */

int vmstate_get(int vm_fd, struct vmstate *st)
{
	memset(st, 0, sizeof(*st));
	st->pic[0].chip_id = KVM_IRQCHIP_PIC_MASTER;
	st->pic[1].chip_id = KVM_IRQCHIP_PIC_SLAVE;
	st->ioapic.chip_id = KVM_IRQCHIP_IOAPIC;
	if (ioctl(vm_fd, KVM_GET_IRQCHIP, &st->pic[0]) < 0 ||
	    ioctl(vm_fd, KVM_GET_IRQCHIP, &st->pic[1]) < 0 ||
	    ioctl(vm_fd, KVM_GET_IRQCHIP, &st->ioapic) < 0 ||
	    ioctl(vm_fd, KVM_GET_PIT2, &st->pit) < 0 || ioctl(vm_fd, KVM_GET_CLOCK, &st->clock) < 0)
		return -errno;
	return 0;
}

static void pic_io(struct sstream *s, struct kvm_pic_state *p)
{
	uint8_t *f[] = { &p->last_irr,
			 &p->irr,
			 &p->imr,
			 &p->isr,
			 &p->priority_add,
			 &p->irq_base,
			 &p->read_reg_select,
			 &p->poll,
			 &p->special_mask,
			 &p->init_state,
			 &p->auto_eoi,
			 &p->rotate_on_auto_eoi,
			 &p->special_fully_nested_mode,
			 &p->init4,
			 &p->elcr,
			 &p->elcr_mask };

	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++)
		ss_u8(s, f[i]);
}

static void ioapic_io(struct sstream *s, struct kvm_ioapic_state *a)
{
	ss_k64(s, &a->base_address);
	ss_u32(s, &a->ioregsel);
	ss_u32(s, &a->id);
	ss_u32(s, &a->irr);
	ss_expect_u32(s, KVM_IOAPIC_NUM_PINS, "IOAPIC pins");
	for (unsigned i = 0; i < KVM_IOAPIC_NUM_PINS; i++)
		ss_k64(s, &a->redirtbl[i].bits);
}

static void pit_io(struct sstream *s, struct kvm_pit_state2 *p)
{
	for (unsigned i = 0; i < 3; i++) {
		struct kvm_pit_channel_state *c = &p->channels[i];
		uint8_t *f[] = { &c->count_latched, &c->status_latched, &c->status,
				 &c->read_state,    &c->write_state,	&c->write_latch,
				 &c->rw_mode,	    &c->mode,		&c->bcd,
				 &c->gate };

		ss_u32(s, &c->count);
		ss_u16(s, &c->latched_count);
		for (size_t j = 0; j < sizeof(f) / sizeof(f[0]); j++)
			ss_u8(s, f[j]);
		{
			int64_t t = c->count_load_time;

			ss_i64(s, &t);
			c->count_load_time = t;
		}
	}
	ss_u32(s, &p->flags);
}

void vmstate_io(struct sstream *s, struct vmstate *st)
{
	pic_io(s, &st->pic[0].chip.pic);
	pic_io(s, &st->pic[1].chip.pic);
	ioapic_io(s, &st->ioapic.chip.ioapic);
	pit_io(s, &st->pit);
	ss_k64(s, &st->clock.clock);
	ss_u64(s, &st->vclock);
	ss_u64(s, &st->realtime_ns);
	if (s->loading) {
		st->pic[0].chip_id = KVM_IRQCHIP_PIC_MASTER;
		st->pic[1].chip_id = KVM_IRQCHIP_PIC_SLAVE;
		st->ioapic.chip_id = KVM_IRQCHIP_IOAPIC;
	}
}

void vmstate_load(struct sstream *s, struct vmstate *st, unsigned version)
{
	if (version != VMSTATE_VERSION) {
		ss_fail(s, -EINVAL, "VM state version %u is not supported (%u)", version,
			VMSTATE_VERSION);
		return;
	}
	vmstate_io(s, st);
}

int vmstate_set(int vm_fd, const struct vmstate *st, char *err, size_t errlen)
{
	struct kvm_clock_data clock = { .clock = st->clock.clock };
	const char *what = "IRQCHIP";

	if (ioctl(vm_fd, KVM_SET_IRQCHIP, &st->pic[0]) < 0 ||
	    ioctl(vm_fd, KVM_SET_IRQCHIP, &st->pic[1]) < 0 ||
	    ioctl(vm_fd, KVM_SET_IRQCHIP, &st->ioapic) < 0)
		goto fail;
	what = "PIT2";
	if (ioctl(vm_fd, KVM_SET_PIT2, &st->pit) < 0)
		goto fail;
	/* Before any vCPU runs: kvmclock readings continue from the saved value. */
	what = "CLOCK";
	if (ioctl(vm_fd, KVM_SET_CLOCK, &clock) < 0)
		goto fail;
	return 0;
fail:
	snprintf(err, errlen, "KVM_SET_%s: %s", what, strerror(errno));
	return -errno;
}
