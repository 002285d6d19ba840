// SPDX-License-Identifier: BSD-2-Clause
/*
 * vCPU and VM-wide KVM state (arch/x86/cpustate.c): save -> load into a fresh state -> save
 * gives the same bytes; every truncation, trailing byte, wrong version and out-of-range count
 * is refused; each bound is accepted at its maximum.  With /dev/kvm, the state of a real vCPU
 * goes through the stream and back into another vCPU, and the CPUID check refuses a feature
 * the host lacks.
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
#include "sstream.h"
#include "vcpu.h"
#include "vm.h"

/* ---- a state full of distinct values ---- */

static uint64_t rng_state;

static uint64_t rnd64(void)
{
	uint64_t x = rng_state += 0x9e3779b97f4a7c15ull;

	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static void fill(void *p, size_t n)
{
	uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		b[i] = (uint8_t)rnd64();
}

/* Every field random; the counts and sizes at @nxcrs, @xsave, @nmsrs, @ncpuid. */
static void cs_make(struct cpustate *cs, uint32_t nxcrs, uint32_t xsave, uint32_t nmsrs,
		    uint32_t ncpuid)
{
	memset(cs, 0, sizeof(*cs));
	fill(&cs->regs, sizeof(cs->regs));
	fill(&cs->sregs, sizeof(cs->sregs));
	fill(&cs->xcrs, sizeof(cs->xcrs));
	fill(&cs->lapic, sizeof(cs->lapic));
	fill(&cs->events, sizeof(cs->events));
	fill(&cs->dbg, sizeof(cs->dbg));
	cs->mp.mp_state = KVM_MP_STATE_HALTED;
	cs->xcrs.nr_xcrs = nxcrs;
	cs->xsave_size = xsave;
	cs->xsave = malloc(xsave);
	fill(cs->xsave, xsave);
	cs->nmsrs = nmsrs;
	cs->msrs = calloc(nmsrs ? nmsrs : 1, sizeof(*cs->msrs));
	for (uint32_t i = 0; i < nmsrs; i++) {
		cs->msrs[i].index = (uint32_t)rnd64();
		cs->msrs[i].data = rnd64();
	}
	cs->ncpuid = ncpuid;
	cs->cpuid = calloc(ncpuid ? ncpuid : 1, sizeof(*cs->cpuid));
	for (uint32_t i = 0; i < ncpuid; i++)
		fill(&cs->cpuid[i], offsetof(struct kvm_cpuid_entry2, padding));
}

#define XSAVE_MIN ((uint32_t)sizeof(struct kvm_xsave))

static void cs_default(struct cpustate *cs)
{
	cs_make(cs, 2, XSAVE_MIN + 64, 40, 30);
}

static void cs_save(struct cpustate *cs, struct sstream *s)
{
	ss_init_save(s);
	cpustate_io(s, cs);
	assert_int_equal(ss_error(s), 0);
}

/* Load @len bytes at @version into a fresh state: 0 or the stream's -errno; *@msg if asked. */
static int cs_load(const void *buf, size_t len, unsigned version, struct cpustate *out, char *msg,
		   size_t msglen)
{
	struct sstream s;
	int ret;

	memset(out, 0, sizeof(*out));
	ss_init_load(&s, buf, len);
	cpustate_load(&s, out, version);
	ret = ss_finish(&s);
	if (msg)
		snprintf(msg, msglen, "%s", s.msg);
	return ret;
}

/* A load of the patched bytes must fail, naming @what. */
static void cs_refused(const void *buf, size_t len, const char *what)
{
	struct cpustate cs;
	char msg[256];

	assert_int_equal(cs_load(buf, len, CPUSTATE_VERSION, &cs, msg, sizeof(msg)), -EINVAL);
	if (what && !strstr(msg, what))
		fail_msg("refusal \"%s\" does not name \"%s\"", msg, what);
	cpustate_free(&cs);
}

static void put32(uint8_t *b, size_t off, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		b[off + i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *b, size_t off)
{
	return b[off] | b[off + 1] << 8 | b[off + 2] << 16 | (uint32_t)b[off + 3] << 24;
}

/*
 * Where each count lies in the stream, from the format's field widths: MP state, 18 regs,
 * sregs (8 segments of 23 bytes, 2 tables of 10, 7 control registers, the 32-byte bitmap),
 * then XCRs; after them the LAPIC page, the events (37 bytes), the debug registers (56).
 */
#define OFF_XCRS (4 + 18 * 8 + 8 * 23 + 2 * 10 + 7 * 8 + 32)
#define OFF_XSAVE(nx) (OFF_XCRS + 8 + 12 * (nx) + KVM_APIC_REG_SIZE + 37 + 56)
#define OFF_MSRS(nx, xs) (OFF_XSAVE(nx) + 4 + (xs))
#define OFF_CPUID(nx, xs, nm) (OFF_MSRS(nx, xs) + 4 + 12 * (nm))

/* ---- tests ---- */

/* save -> load -> save is the identity, and the loaded state holds every value. */
static void test_cpustate_identity(void **state)
{
	struct cpustate a, b;
	struct sstream s1, s2;

	cs_default(&a);
	cs_save(&a, &s1);
	assert_int_equal(cs_load(s1.buf, s1.len, CPUSTATE_VERSION, &b, NULL, 0), 0);
	cs_save(&b, &s2);
	assert_int_equal(s1.len, s2.len);
	assert_memory_equal(s1.buf, s2.buf, s1.len);
	assert_int_equal(b.mp.mp_state, KVM_MP_STATE_HALTED);
	assert_memory_equal(&a.regs, &b.regs, sizeof(a.regs));
	assert_int_equal(a.sregs.cr3, b.sregs.cr3);
	assert_int_equal(a.sregs.efer, b.sregs.efer);
	assert_int_equal(a.sregs.tr.selector, b.sregs.tr.selector);
	assert_memory_equal(a.sregs.interrupt_bitmap, b.sregs.interrupt_bitmap,
			    sizeof(a.sregs.interrupt_bitmap));
	assert_int_equal(b.xcrs.nr_xcrs, 2);
	assert_int_equal(a.xcrs.xcrs[1].value, b.xcrs.xcrs[1].value);
	assert_memory_equal(a.lapic.regs, b.lapic.regs, sizeof(a.lapic.regs));
	assert_int_equal(a.events.exception_payload, b.events.exception_payload);
	assert_int_equal(a.events.sipi_vector, b.events.sipi_vector);
	assert_int_equal(a.dbg.dr7, b.dbg.dr7);
	assert_int_equal(b.xsave_size, a.xsave_size);
	assert_memory_equal(a.xsave, b.xsave, a.xsave_size);
	assert_int_equal(b.nmsrs, 40);
	assert_memory_equal(a.msrs, b.msrs, 40 * sizeof(*a.msrs));
	assert_int_equal(b.ncpuid, 30);
	for (uint32_t i = 0; i < 30; i++)
		assert_memory_equal(&a.cpuid[i], &b.cpuid[i],
				    offsetof(struct kvm_cpuid_entry2, padding));
	/* The offsets the bound tests patch at are where the counts are. */
	assert_int_equal(get32(s1.buf, 0), KVM_MP_STATE_HALTED);
	assert_int_equal(get32(s1.buf, OFF_XCRS), 2);
	assert_int_equal(get32(s1.buf, OFF_XSAVE(2)), XSAVE_MIN + 64);
	assert_int_equal(get32(s1.buf, OFF_MSRS(2, XSAVE_MIN + 64)), 40);
	assert_int_equal(get32(s1.buf, OFF_CPUID(2, XSAVE_MIN + 64, 40)), 30);
	assert_int_equal(s1.len, OFF_CPUID(2, XSAVE_MIN + 64, 40) + 4 + 30 * 28);
	ss_free(&s1);
	ss_free(&s2);
	cpustate_free(&a);
	cpustate_free(&b);
}

/* Every prefix of a valid stream is refused, and so is a byte too many. */
static void test_cpustate_truncated(void **state)
{
	struct cpustate a;
	struct sstream s;
	uint8_t *longer;

	cs_make(&a, 1, XSAVE_MIN, 3, 2);
	cs_save(&a, &s);
	for (size_t n = 0; n < s.len; n++)
		cs_refused(s.buf, n, n ? "ends early" : NULL);
	longer = calloc(1, s.len + 1);
	memcpy(longer, s.buf, s.len);
	cs_refused(longer, s.len + 1, "left over");
	free(longer);
	ss_free(&s);
	cpustate_free(&a);
}

/* Only the version this khyve writes is read. */
static void test_cpustate_wrong_version(void **state)
{
	struct cpustate a, b;
	struct sstream s;
	char msg[256];

	cs_default(&a);
	cs_save(&a, &s);
	for (unsigned v = 0; v < 4; v++) {
		int ret = cs_load(s.buf, s.len, v, &b, msg, sizeof(msg));

		if (v == CPUSTATE_VERSION) {
			assert_int_equal(ret, 0);
		} else {
			assert_int_equal(ret, -EINVAL);
			assert_non_null(strstr(msg, "version"));
		}
		cpustate_free(&b);
	}
	ss_free(&s);
	cpustate_free(&a);
}

/* Each count one past its bound is refused before it sizes anything. */
static void test_cpustate_bounds_refused(void **state)
{
	const uint32_t xs = XSAVE_MIN + 64;
	struct {
		size_t off;
		uint32_t value;
		const char *what;
	} cases[] = {
		{ 0, KVM_MP_STATE_AP_RESET_HOLD + 1, "MP state" },
		{ 0, 0xffffffff, "MP state" },
		{ OFF_XCRS, KVM_MAX_XCRS + 1, "XCR count" },
		{ OFF_XCRS, 0xffffffff, "XCR count" },
		{ OFF_XSAVE(2), CPUSTATE_MAX_XSAVE + 1, "XSAVE size" },
		{ OFF_XSAVE(2), 0xffffffff, "XSAVE size" },
		{ OFF_XSAVE(2), XSAVE_MIN - 1, "too small" },
		{ OFF_XSAVE(2), 0, "too small" },
		{ OFF_MSRS(2, xs), CPUSTATE_MAX_MSRS + 1, "MSR count" },
		{ OFF_MSRS(2, xs), 0xffffffff, "MSR count" },
		{ OFF_CPUID(2, xs, 40), CPUSTATE_MAX_CPUID + 1, "CPUID entry count" },
		{ OFF_CPUID(2, xs, 40), 0xffffffff, "CPUID entry count" },
	};
	struct cpustate a;
	struct sstream s;

	cs_default(&a);
	cs_save(&a, &s);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint8_t *b = malloc(s.len);

		memcpy(b, s.buf, s.len);
		put32(b, cases[i].off, cases[i].value);
		cs_refused(b, s.len, cases[i].what);
		free(b);
	}
	ss_free(&s);
	cpustate_free(&a);
}

/* ... and each at its bound is accepted. */
static void test_cpustate_bounds_accepted(void **state)
{
	struct cpustate a, b;
	struct sstream s1, s2;

	cs_make(&a, KVM_MAX_XCRS, CPUSTATE_MAX_XSAVE, CPUSTATE_MAX_MSRS, CPUSTATE_MAX_CPUID);
	a.mp.mp_state = KVM_MP_STATE_AP_RESET_HOLD;
	cs_save(&a, &s1);
	assert_int_equal(cs_load(s1.buf, s1.len, CPUSTATE_VERSION, &b, NULL, 0), 0);
	cs_save(&b, &s2);
	assert_int_equal(s1.len, s2.len);
	assert_memory_equal(s1.buf, s2.buf, s1.len);
	ss_free(&s1);
	ss_free(&s2);
	cpustate_free(&b);
	cpustate_free(&a);
	/* The smallest XSAVE area KVM takes, and empty MSR and CPUID lists. */
	cs_make(&a, 0, XSAVE_MIN, 0, 0);
	cs_save(&a, &s1);
	assert_int_equal(cs_load(s1.buf, s1.len, CPUSTATE_VERSION, &b, NULL, 0), 0);
	assert_int_equal(b.xsave_size, XSAVE_MIN);
	assert_int_equal(b.nmsrs, 0);
	assert_int_equal(b.ncpuid, 0);
	ss_free(&s1);
	cpustate_free(&b);
	cpustate_free(&a);
}

/* The saved TSC is found by its index, replaced in place, and missing is an error. */
static void test_cpustate_tsc(void **state)
{
	struct cpustate a;
	uint64_t tsc = 0;

	cs_make(&a, 0, XSAVE_MIN, 4, 0);
	assert_int_equal(cpustate_tsc(&a, &tsc), -ENOENT);
	assert_int_equal(cpustate_set_tsc(&a, 5), -ENOENT);
	a.msrs[2].index = 0x10;
	a.msrs[2].data = 1234;
	assert_int_equal(cpustate_tsc(&a, &tsc), 0);
	assert_int_equal(tsc, 1234);
	assert_int_equal(cpustate_set_tsc(&a, 99), 0);
	assert_int_equal(a.msrs[2].data, 99);
	assert_int_equal(a.msrs[3].data != 99, 1);
	cpustate_free(&a);
	assert_null(a.msrs);
	assert_null(a.xsave);
	assert_null(a.cpuid);
}

/* ---- VM-wide state ---- */

static void vm_make(struct vmstate *st)
{
	memset(st, 0, sizeof(*st));
	fill(&st->pic, sizeof(st->pic));
	fill(&st->ioapic, sizeof(st->ioapic));
	fill(&st->pit, sizeof(st->pit));
	st->clock.clock = rnd64();
	st->vclock = rnd64();
	st->realtime_ns = rnd64();
}

static int vm_load(const void *buf, size_t len, unsigned version, struct vmstate *st)
{
	struct sstream s;

	memset(st, 0, sizeof(*st));
	ss_init_load(&s, buf, len);
	vmstate_load(&s, st, version);
	return ss_finish(&s);
}

static void test_vmstate(void **state)
{
	struct vmstate a, b;
	struct sstream s1, s2;
	/* 2 PICs of 16 bytes, then the IOAPIC: base, regsel, id, irr, and the pin count. */
	const size_t pins_off = 2 * 16 + 8 + 4 + 4 + 4;

	vm_make(&a);
	ss_init_save(&s1);
	vmstate_io(&s1, &a);
	assert_int_equal(ss_error(&s1), 0);
	assert_int_equal(vm_load(s1.buf, s1.len, VMSTATE_VERSION, &b), 0);
	ss_init_save(&s2);
	vmstate_io(&s2, &b);
	assert_int_equal(s1.len, s2.len);
	assert_memory_equal(s1.buf, s2.buf, s1.len);
	assert_int_equal(b.pic[0].chip_id, KVM_IRQCHIP_PIC_MASTER);
	assert_int_equal(b.pic[1].chip_id, KVM_IRQCHIP_PIC_SLAVE);
	assert_int_equal(b.ioapic.chip_id, KVM_IRQCHIP_IOAPIC);
	assert_int_equal(b.clock.clock, a.clock.clock);
	assert_int_equal(b.vclock, a.vclock);
	assert_int_equal(b.realtime_ns, a.realtime_ns);
	assert_int_equal(b.pit.channels[2].count_load_time, a.pit.channels[2].count_load_time);
	assert_memory_equal(&b.ioapic.chip.ioapic.redirtbl, &a.ioapic.chip.ioapic.redirtbl,
			    sizeof(a.ioapic.chip.ioapic.redirtbl));
	/* Truncated, a byte too many, another version, another pin count: refused. */
	for (size_t n = 0; n < s1.len; n++)
		assert_int_equal(vm_load(s1.buf, n, VMSTATE_VERSION, &b), -EINVAL);
	{
		uint8_t *l = calloc(1, s1.len + 1);

		memcpy(l, s1.buf, s1.len);
		assert_int_equal(vm_load(l, s1.len + 1, VMSTATE_VERSION, &b), -EINVAL);
		assert_int_equal(get32(l, pins_off), KVM_IOAPIC_NUM_PINS);
		put32(l, pins_off, KVM_IOAPIC_NUM_PINS + 1);
		assert_int_equal(vm_load(l, s1.len, VMSTATE_VERSION, &b), -EINVAL);
		put32(l, pins_off, KVM_IOAPIC_NUM_PINS - 1);
		assert_int_equal(vm_load(l, s1.len, VMSTATE_VERSION, &b), -EINVAL);
		free(l);
	}
	assert_int_equal(vm_load(s1.buf, s1.len, 0, &b), -EINVAL);
	assert_int_equal(vm_load(s1.buf, s1.len, VMSTATE_VERSION + 1, &b), -EINVAL);
	ss_free(&s1);
	ss_free(&s2);
}

/* ---- on a real vCPU ---- */

struct kvm_fixture {
	struct vm vm;
	struct vcpu v[2];
};

static int kvm_setup(void **state)
{
	struct kvm_fixture *f = calloc(1, sizeof(*f));
	struct kvm_cpuid2 *c;

	f->vm.kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (f->vm.kvm_fd < 0) {
		/* Only a machine without KVM skips these; any other failure is one. */
		assert_int_equal(errno, ENOENT);
		free(f);
		*state = NULL;
		return 0;
	}
	f->vm.vm_fd = ioctl(f->vm.kvm_fd, KVM_CREATE_VM, 0);
	assert_true(f->vm.vm_fd >= 0);
	assert_int_equal(ioctl(f->vm.vm_fd, KVM_CREATE_IRQCHIP, 0), 0);
	c = calloc(1, sizeof(*c) + 256 * sizeof(c->entries[0]));
	c->nent = 256;
	assert_int_equal(ioctl(f->vm.kvm_fd, KVM_GET_SUPPORTED_CPUID, c), 0);
	for (unsigned i = 0; i < 2; i++) {
		f->v[i].vm = &f->vm;
		f->v[i].id = i;
		f->v[i].fd = ioctl(f->vm.vm_fd, KVM_CREATE_VCPU, i);
		assert_true(f->v[i].fd >= 0);
		assert_int_equal(ioctl(f->v[i].fd, KVM_SET_CPUID2, c), 0);
	}
	free(c);
	*state = f;
	return 0;
}

static int kvm_teardown(void **state)
{
	struct kvm_fixture *f = *state;

	if (!f)
		return 0;
	for (unsigned i = 0; i < 2; i++)
		close(f->v[i].fd);
	close(f->vm.vm_fd);
	close(f->vm.kvm_fd);
	free(f);
	return 0;
}

/* vCPU 0's state, changed, through the stream into vCPU 1 reads back the same. */
static void test_cpustate_kvm_roundtrip(void **state)
{
	struct kvm_fixture *f = *state;
	struct cpustate a, b, c;
	struct sstream s;
	char err[256] = "";
	uint64_t tsc;

	if (!f)
		skip(); /* no /dev/kvm */
	assert_int_equal(cpustate_get(&f->v[0], &a), 0);
	assert_true(a.nmsrs > 0 && a.ncpuid > 0 && a.xsave_size >= XSAVE_MIN);
	assert_int_equal(cpustate_tsc(&a, &tsc), 0);
	a.regs.rax = 0x1122334455667788ull;
	a.regs.rip = 0xfff0;
	a.regs.r15 = 42;
	a.dbg.db[1] = 0x4000;
	cs_save(&a, &s);
	assert_int_equal(cs_load(s.buf, s.len, CPUSTATE_VERSION, &b, NULL, 0), 0);
	ss_free(&s);
	assert_int_equal(cpustate_check(&b, f->v[1].fd, err, sizeof(err)), 0);
	assert_int_equal(cpustate_set(&f->v[1], &b, err, sizeof(err)), 0);
	assert_int_equal(cpustate_get(&f->v[1], &c), 0);
	assert_int_equal(c.regs.rax, 0x1122334455667788ull);
	assert_int_equal(c.regs.rip, 0xfff0);
	assert_int_equal(c.regs.r15, 42);
	assert_int_equal(c.dbg.db[1], 0x4000);
	assert_int_equal(c.mp.mp_state, a.mp.mp_state);
	assert_int_equal(c.sregs.cr0, a.sregs.cr0);
	assert_int_equal(c.sregs.cs.selector, a.sregs.cs.selector);
	assert_int_equal(c.nmsrs, a.nmsrs);
	cpustate_free(&a);
	cpustate_free(&b);
	cpustate_free(&c);
}

/* A CPU feature the guest saw and this host lacks refuses the restore, naming the word. */
static void test_cpustate_kvm_check(void **state)
{
	struct kvm_fixture *f = *state;
	struct cpustate a;
	char err[256] = "";
	int found = 0;

	if (!f)
		skip(); /* no /dev/kvm */
	assert_int_equal(cpustate_get(&f->v[0], &a), 0);
	for (uint32_t i = 0; i < a.ncpuid && !found; i++) {
		struct kvm_cpuid_entry2 *e = &a.cpuid[i];

		/* CPUID.7.0:EBX: the highest bit this host does not give a vCPU. */
		if (e->function == 7 && e->index == 0) {
			for (int bit = 31; bit >= 0; bit--) {
				if (!(e->ebx & (1u << bit))) {
					e->ebx |= 1u << bit;
					found = 1;
					break;
				}
			}
		}
	}
	assert_true(found);
	assert_int_equal(cpustate_check(&a, f->v[1].fd, err, sizeof(err)), -ENOTSUP);
	assert_non_null(strstr(err, "CPUID.7.0:EBX"));
	/* The hypervisor bit is khyve's own: a guest that saw it restores anywhere. */
	cpustate_free(&a);
	assert_int_equal(cpustate_get(&f->v[0], &a), 0);
	for (uint32_t i = 0; i < a.ncpuid; i++)
		if (a.cpuid[i].function == 1)
			a.cpuid[i].ecx |= 1u << 31;
	assert_int_equal(cpustate_check(&a, f->v[1].fd, err, sizeof(err)), 0);
	cpustate_free(&a);
}

/* KVM refusing the state names the step; an unknown MSR names the MSR. */
static void test_cpustate_kvm_refused(void **state)
{
	struct kvm_fixture *f = *state;
	struct cpustate a;
	char err[256] = "";

	if (!f)
		skip(); /* no /dev/kvm */
	assert_int_equal(cpustate_get(&f->v[0], &a), 0);
	assert_true(a.nmsrs >= 2);
	a.msrs[1].index = 0x4b564dff; /* past KVM's paravirtual range: no such MSR */
	assert_int_equal(cpustate_set(&f->v[1], &a, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "MSR 0x4b564dff"));
	cpustate_free(&a);
	assert_int_equal(cpustate_get(&f->v[0], &a), 0);
	a.mp.mp_state = 0x7fff;
	assert_int_not_equal(cpustate_set(&f->v[1], &a, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "MP_STATE"));
	cpustate_free(&a);
}

/* KVM refusing a step of the restore: the error names the step (each corrupted alone). */
static void test_cpustate_kvm_steps(void **state)
{
	struct kvm_fixture *f = *state;
	static const char *const steps[] = { "SREGS", "XCRS", "VCPU_EVENTS", "DEBUGREGS" };
	char err[256];

	if (!f)
		skip(); /* no /dev/kvm */
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		struct cpustate a;

		assert_int_equal(cpustate_get(&f->v[0], &a), 0);
		switch (i) {
		case 0:
			a.sregs.cr0 = 0x80000000; /* paging without protection */
			break;
		case 1:
			a.xcrs.nr_xcrs = 1;
			a.xcrs.xcrs[0].xcr = 0;
			a.xcrs.xcrs[0].value = 0; /* XCR0 without x87 */
			break;
		case 2:
			a.events.flags = 0x80000000; /* no such flag */
			break;
		case 3:
			a.dbg.flags = 1; /* must be zero */
			break;
		}
		err[0] = 0;
		assert_int_not_equal(cpustate_set(&f->v[1], &a, err, sizeof(err)), 0);
		if (!strstr(err, steps[i]) || !strstr(err, "vCPU 1"))
			fail_msg("error \"%s\" does not name KVM_SET_%s", err, steps[i]);
		cpustate_free(&a);
	}
	/* A vCPU that is not one: the first read fails. */
	{
		struct vcpu bad = { .vm = &f->vm, .id = 7, .fd = -1 };
		struct cpustate a;

		assert_int_equal(cpustate_get(&bad, &a), -EBADF);
		cpustate_free(&a);
	}
	/* A VM without a PIT: its state cannot be read, nor a saved PIT set. */
	{
		struct vmstate st;

		assert_int_not_equal(vmstate_get(f->vm.vm_fd, &st), 0);
		memset(&st, 0, sizeof(st));
		st.pic[0].chip_id = KVM_IRQCHIP_PIC_MASTER;
		st.pic[1].chip_id = KVM_IRQCHIP_PIC_SLAVE;
		st.ioapic.chip_id = KVM_IRQCHIP_IOAPIC;
		assert_int_not_equal(vmstate_set(f->vm.vm_fd, &st, err, sizeof(err)), 0);
		assert_non_null(strstr(err, "KVM_SET_PIT2"));
		assert_int_not_equal(vmstate_set(-1, &st, err, sizeof(err)), 0);
		assert_non_null(strstr(err, "KVM_SET_IRQCHIP"));
	}
}

/* The VM-wide state of a real VM goes back in. */
static void test_vmstate_kvm(void **state)
{
	struct kvm_fixture *f = *state;
	struct vmstate a, b;
	struct sstream s;
	char err[256] = "";

	if (!f)
		skip(); /* no /dev/kvm */
	assert_int_equal(ioctl(f->vm.vm_fd, KVM_CREATE_PIT2, &(struct kvm_pit_config){ 0 }), 0);
	assert_int_equal(vmstate_get(f->vm.vm_fd, &a), 0);
	a.ioapic.chip.ioapic.redirtbl[5].bits = 0x10000 | 0x35;
	ss_init_save(&s);
	vmstate_io(&s, &a);
	assert_int_equal(vm_load(s.buf, s.len, VMSTATE_VERSION, &b), 0);
	ss_free(&s);
	assert_int_equal(vmstate_set(f->vm.vm_fd, &b, err, sizeof(err)), 0);
	assert_int_equal(vmstate_get(f->vm.vm_fd, &a), 0);
	assert_int_equal(a.ioapic.chip.ioapic.redirtbl[5].bits, 0x10000 | 0x35);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cpustate_identity),
		cmocka_unit_test(test_cpustate_truncated),
		cmocka_unit_test(test_cpustate_wrong_version),
		cmocka_unit_test(test_cpustate_bounds_refused),
		cmocka_unit_test(test_cpustate_bounds_accepted),
		cmocka_unit_test(test_cpustate_tsc),
		cmocka_unit_test(test_vmstate),
		cmocka_unit_test_setup_teardown(test_cpustate_kvm_roundtrip, kvm_setup,
						kvm_teardown),
		cmocka_unit_test_setup_teardown(test_cpustate_kvm_check, kvm_setup, kvm_teardown),
		cmocka_unit_test_setup_teardown(test_cpustate_kvm_refused, kvm_setup, kvm_teardown),
		cmocka_unit_test_setup_teardown(test_cpustate_kvm_steps, kvm_setup, kvm_teardown),
		cmocka_unit_test_setup_teardown(test_vmstate_kvm, kvm_setup, kvm_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
