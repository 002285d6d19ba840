// SPDX-License-Identifier: BSD-2-Clause
/*
 * ACPI PM1a event and control blocks, the PM timer, the reset register and the platform's half
 * of the FACS global lock (see pm.h).  The snapshot holds the registers, the timer's count, the
 * FACS address and whether khyve owns or waits for the global lock (version 2; version 1
 * streams, without the lock, still load).
 *
 * The PM timer counts ticks = tmr_base + floor((vclock - ns_base) * 3579545 / 10^9); the guest
 * reads the low 24 bits.  TMR_STS is set each time bit 23 of the count changes.  That is
 * computed lazily (whenever the status is read or written, and on save) by comparing
 * count >> 23 with its value at the previous check; while TMR_EN is set a vtimer at the next
 * toggle does the same check so the SCI is raised on time.
 */
#include "dev/pc/pm.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sstream.h"
#include "vm.h"

#define PM1_STS_BITS (PM1_TMR_STS | PM1_GBL_STS | PM1_PWRBTN_STS | PM1_RTC_STS | PM1_WAK_STS)
/*
 * Every event this block has can be enabled.  An OS checks that an enable bit sticks before it
 * trusts the event (ACPICA: "Could not enable ... event"), so none may read back as 0.
 */
#define PM1_EN_BITS (PM1_TMR_EN | PM1_GBL_EN | PM1_PWRBTN_EN | PM1_RTC_EN)
#define PM1_BM_RLD (1U << 1)
/* Control bits that are stored; SLP_EN and GBL_RLS only act and read back as 0. */
#define PM1_CNT_BITS (PM1_SCI_EN | PM1_BM_RLD | PM1_SLP_TYP_MASK)

#define PM_TMR_MASK 0xFFFFFFULL
#define PM_TMR_TOGGLE 23

#define RESET_SYS_RST (1U << 1)
#define RESET_RST_CPU (1U << 2)
#define RESET_FULL_RST (1U << 3)

#define NSEC 1000000000ULL

struct pm {
	struct dev dev;
	struct vm *vm;
	pthread_mutex_t lock;
	uint16_t sts, en, cnt;
	uint8_t reset;
	uint64_t tmr_base, ns_base; /* PM timer: count at ns_base */
	uint64_t tmr_epoch;	    /* count >> 23 at the last TMR_STS update */
	struct vtimer vt;
	uint64_t deadline;
	bool armed;
	bool sci;		   /* level we drive on IRQ_SCI */
	uint64_t facs;		   /* guest address of the FACS, 0 when unknown */
	bool gl_owned, gl_waiting; /* khyve owns the global lock / waits for GBL_RLS */
};

/* Saved registers: snapshot layout and load staging copy.  Version 2 added the FACS fields. */
struct pm_regs {
	uint16_t sts, en, cnt;
	uint8_t reset;
	uint32_t tmr;
	uint64_t facs;
	bool gl_owned, gl_waiting;
};

static const struct dev_ops pm_ops;

static uint64_t pm_ticks(const struct pm *pm, uint64_t now)
{
	uint64_t ns = now > pm->ns_base ? now - pm->ns_base : 0;

	return pm->tmr_base + (uint64_t)((unsigned __int128)ns * PM_TMR_HZ / NSEC);
}

static void pm_update_sci(struct pm *pm)
{
	bool level = (pm->cnt & PM1_SCI_EN) && (pm->sts & pm->en & PM1_EN_BITS);

	if (level != pm->sci) {
		pm->sci = level;
		vm_set_irq(pm->vm, IRQ_SCI, level);
	}
}

/* Bring TMR_STS up to date: set if bit 23 changed since the previous check. */
static void pm_sync_tmr(struct pm *pm, uint64_t now)
{
	uint64_t epoch = pm_ticks(pm, now) >> PM_TMR_TOGGLE;

	if (epoch != pm->tmr_epoch) {
		pm->tmr_epoch = epoch;
		pm->sts |= PM1_TMR_STS;
	}
}

/* While TMR_EN is set, wake up at the next bit-23 toggle to raise the SCI on time. */
static void pm_arm(struct pm *pm)
{
	uint64_t target, ns;

	pm->armed = false;
	vtimer_cancel(&pm->vt);
	if (!(pm->en & PM1_TMR_EN))
		return;
	target = ((pm_ticks(pm, vclock_ns(&pm->vm->ev)) >> PM_TMR_TOGGLE) + 1) << PM_TMR_TOGGLE;
	/* The first nanosecond at which the count has reached target (rounding up). */
	ns = (uint64_t)(((unsigned __int128)(target - pm->tmr_base) * NSEC + PM_TMR_HZ - 1) /
			PM_TMR_HZ);
	pm->deadline = pm->ns_base + ns;
	pm->armed = true;
	vtimer_arm(&pm->vt, pm->deadline);
}

static void pm_tmr_expire(void *opaque)
{
	struct pm *pm = opaque;
	uint64_t now;

	pthread_mutex_lock(&pm->lock);
	now = vclock_ns(&pm->vm->ev);
	if (pm->armed && now >= pm->deadline) {
		pm_sync_tmr(pm, now);
		pm_update_sci(pm);
		pm_arm(pm);
	}
	pthread_mutex_unlock(&pm->lock);
}

/* PM1a event block: status in bits 15:0, enable in bits 31:16 of the 4-byte block. */
static void pm_evt_write(struct pm *pm, uint32_t val, uint32_t mask)
{
	uint16_t old_en = pm->en;

	pm_sync_tmr(pm, vclock_ns(&pm->vm->ev));
	pm->sts &= (uint16_t) ~(val & mask & PM1_STS_BITS);
	pm->en = (uint16_t)(((pm->en & ~(mask >> 16)) | ((val & mask) >> 16)) & PM1_EN_BITS);
	if ((old_en ^ pm->en) & PM1_TMR_EN)
		pm_arm(pm);
	pm_update_sci(pm);
}

static void pm_evt_io(void *opaque, uint64_t off, void *data, unsigned size, bool is_write)
{
	struct pm *pm = opaque;
	unsigned shift = (unsigned)off * 8;
	uint32_t mask = (uint32_t)(size >= 4 ? UINT32_MAX : ((1U << (8 * size)) - 1)) << shift;

	pthread_mutex_lock(&pm->lock);
	if (is_write) {
		pm_evt_write(pm, (uint32_t)io_get(data, size) << shift, mask);
	} else {
		pm_sync_tmr(pm, vclock_ns(&pm->vm->ev));
		pm_update_sci(pm);
		io_put(data, size, ((pm->sts | (uint32_t)pm->en << 16) & mask) >> shift);
	}
	pthread_mutex_unlock(&pm->lock);
}

/* ---- the global lock, platform side ---- */

static uint32_t *pm_gl_word(struct pm *pm)
{
	return pm->facs ? vm_gpa(pm->vm, pm->facs + FACS_GLOBAL_LOCK_OFFSET, 4) : NULL;
}

/*
 * ACPI's acquire on the shared dword: set owned, and if it was owned already set pending
 * instead (the owner then signals its release).  The OS does the same with lock cmpxchg on
 * another CPU, so this is an atomic compare-and-swap on guest memory too.
 */
static bool pm_gl_try(struct pm *pm)
{
	uint32_t *w = pm_gl_word(pm), old, new;

	old = __atomic_load_n(w, __ATOMIC_ACQUIRE);
	do {
		new = (old & ~(GL_PENDING | GL_OWNED)) | GL_OWNED;
		if (old & GL_OWNED)
			new |= GL_PENDING;
	} while (!__atomic_compare_exchange_n(w, &old, new, false, __ATOMIC_ACQ_REL,
					      __ATOMIC_ACQUIRE));
	return !(new &GL_PENDING);
}

/* The OS released the lock with pending set and wrote GBL_RLS: take it if khyve waits. */
static void pm_gl_rls(struct pm *pm)
{
	if (!pm->gl_waiting || !pm_gl_word(pm))
		return;
	if (pm_gl_try(pm)) {
		pm->gl_waiting = false;
		pm->gl_owned = true;
	}
}

int pm_set_facs(struct dev *d, uint64_t gpa)
{
	struct pm *pm = container_of(d, struct pm, dev);

	if (!gpa || (gpa & 63) || !vm_gpa(pm->vm, gpa, 64))
		return -EINVAL;
	pthread_mutex_lock(&pm->lock);
	pm->facs = gpa;
	pthread_mutex_unlock(&pm->lock);
	return 0;
}

int pm_global_lock_acquire(struct dev *d)
{
	struct pm *pm = container_of(d, struct pm, dev);
	int ret = 0;

	pthread_mutex_lock(&pm->lock);
	if (!pm_gl_word(pm))
		ret = -ENODEV;
	else if (pm->gl_owned)
		ret = 0;
	else if (pm_gl_try(pm))
		pm->gl_owned = true;
	else {
		pm->gl_waiting = true;
		ret = -EBUSY;
	}
	pthread_mutex_unlock(&pm->lock);
	return ret;
}

bool pm_global_lock_owned(struct dev *d)
{
	struct pm *pm = container_of(d, struct pm, dev);
	bool owned;

	pthread_mutex_lock(&pm->lock);
	owned = pm->gl_owned;
	pthread_mutex_unlock(&pm->lock);
	return owned;
}

int pm_global_lock_release(struct dev *d)
{
	struct pm *pm = container_of(d, struct pm, dev);
	uint32_t *w, old;

	pthread_mutex_lock(&pm->lock);
	w = pm_gl_word(pm);
	if (!pm->gl_owned || !w) {
		pthread_mutex_unlock(&pm->lock);
		return -EPERM;
	}
	old = __atomic_fetch_and(w, ~(GL_PENDING | GL_OWNED), __ATOMIC_ACQ_REL);
	pm->gl_owned = false;
	/* BIOS_RLS: tell the OS, which set pending while khyve held the lock. */
	if (old & GL_PENDING) {
		pm->sts |= PM1_GBL_STS;
		pm_update_sci(pm);
	}
	pthread_mutex_unlock(&pm->lock);
	return 0;
}

void pm_rtc_alarm(void *opaque)
{
	struct pm *pm = opaque;

	pthread_mutex_lock(&pm->lock);
	pm->sts |= PM1_RTC_STS;
	pm_update_sci(pm);
	pthread_mutex_unlock(&pm->lock);
}

static void pm_cnt_write(struct pm *pm, uint16_t v)
{
	pm->cnt = v & PM1_CNT_BITS;
	pm_update_sci(pm);
	if (v & PM1_GBL_RLS)
		pm_gl_rls(pm);
	if ((v & PM1_SLP_EN) && ((v & PM1_SLP_TYP_MASK) >> PM1_SLP_TYP_SHIFT) == SLP_TYP_S5)
		vm_request_exit(pm->vm, VM_EXIT_POWEROFF);
	/* S1-S4 are not offered by the DSDT; a guest that asks anyway keeps running. */
}

static void pm_cnt_io(void *opaque, uint64_t off, void *data, unsigned size, bool is_write)
{
	struct pm *pm = opaque;
	unsigned shift = (unsigned)off * 8;
	uint32_t mask = (uint32_t)(size >= 2 ? 0xFFFF : 0xFF) << shift;

	pthread_mutex_lock(&pm->lock);
	if (is_write)
		pm_cnt_write(pm, (uint16_t)((pm->cnt & ~mask) |
					    (((uint32_t)io_get(data, size) << shift) & mask)));
	else
		io_put(data, size, (pm->cnt & mask) >> shift);
	pthread_mutex_unlock(&pm->lock);
}

static void pm_tmr_io(void *opaque, uint64_t off, void *data, unsigned size, bool is_write)
{
	struct pm *pm = opaque;
	uint64_t v;

	if (is_write)
		return; /* read-only */
	pthread_mutex_lock(&pm->lock);
	v = pm_ticks(pm, vclock_ns(&pm->vm->ev)) & PM_TMR_MASK;
	pthread_mutex_unlock(&pm->lock);
	io_put(data, size, v >> (off * 8));
}

/*
 * Reset control.  SYS_RST and FULL_RST choose the kind of reset and are kept; RST_CPU starts
 * it and reads back as 0.  Every kind of reset is a reboot of the VM.
 */
static void pm_reset_io(void *opaque, uint64_t off, void *data, unsigned size, bool is_write)
{
	struct pm *pm = opaque;

	pthread_mutex_lock(&pm->lock);
	if (is_write) {
		uint8_t v = (uint8_t)io_get(data, 1);

		pm->reset = v & (RESET_SYS_RST | RESET_FULL_RST);
		if (v & RESET_RST_CPU)
			vm_request_exit(pm->vm, VM_EXIT_REBOOT);
	} else {
		io_put(data, size, pm->reset);
	}
	pthread_mutex_unlock(&pm->lock);
}

void pm_power_button(struct dev *d)
{
	struct pm *pm = container_of(d, struct pm, dev);

	pthread_mutex_lock(&pm->lock);
	pm->sts |= PM1_PWRBTN_STS;
	pm_update_sci(pm);
	pthread_mutex_unlock(&pm->lock);
}

static void pm_regs_stream(struct sstream *s, struct pm_regs *r, unsigned version)
{
	ss_u16(s, &r->sts);
	ss_u16(s, &r->en);
	ss_u16(s, &r->cnt);
	ss_u8(s, &r->reset);
	ss_u32(s, &r->tmr);
	if (version < 2)
		return;
	ss_u64(s, &r->facs);
	ss_bool(s, &r->gl_owned);
	ss_bool(s, &r->gl_waiting);
}

static void pm_regs_check(struct sstream *s, const struct pm_regs *r, struct vm *vm)
{
	if (r->sts & ~PM1_STS_BITS)
		ss_fail(s, -EINVAL, "PM1 status 0x%x has unknown bits set", r->sts);
	if (r->en & ~PM1_EN_BITS)
		ss_fail(s, -EINVAL, "PM1 enable 0x%x has unknown bits set", r->en);
	if (r->cnt & ~PM1_CNT_BITS)
		ss_fail(s, -EINVAL, "PM1 control 0x%x has unknown bits set", r->cnt);
	if (r->reset & ~(RESET_SYS_RST | RESET_FULL_RST))
		ss_fail(s, -EINVAL, "reset control 0x%x has unknown bits set", r->reset);
	ss_check_max(s, r->tmr, PM_TMR_MASK, "PM timer");
	if (r->facs && ((r->facs & 63) || !vm_gpa(vm, r->facs, 64)))
		ss_fail(s, -EINVAL, "FACS at 0x%llx is not 64-byte aligned guest RAM",
			(unsigned long long)r->facs);
	if ((r->gl_owned || r->gl_waiting) && !r->facs)
		ss_fail(s, -EINVAL, "global lock state without a FACS");
	if (r->gl_owned && r->gl_waiting)
		ss_fail(s, -EINVAL, "global lock both owned and waited for");
}

static int pm_save(struct dev *d, struct sstream *s)
{
	struct pm *pm = container_of(d, struct pm, dev);
	struct pm_regs r;
	uint64_t now;

	pthread_mutex_lock(&pm->lock);
	now = vclock_ns(&pm->vm->ev);
	/* Saved status must include a toggle that has happened, so the epoch can be derived. */
	pm_sync_tmr(pm, now);
	pm_update_sci(pm);
	r.sts = pm->sts;
	r.en = pm->en;
	r.cnt = pm->cnt;
	r.reset = pm->reset;
	r.tmr = (uint32_t)(pm_ticks(pm, now) & PM_TMR_MASK);
	r.facs = pm->facs;
	r.gl_owned = pm->gl_owned;
	r.gl_waiting = pm->gl_waiting;
	pthread_mutex_unlock(&pm->lock);
	pm_regs_stream(s, &r, pm_ops.version);
	return ss_error(s);
}

/* The timer continues from the saved count on the current vclock; re-armed here, in load. */
static int pm_load(struct dev *d, struct sstream *s, unsigned version)
{
	struct pm *pm = container_of(d, struct pm, dev);
	struct pm_regs r;

	memset(&r, 0, sizeof(r));
	pm_regs_stream(s, &r, version);
	if (!ss_error(s))
		pm_regs_check(s, &r, pm->vm);
	if (ss_finish(s))
		return ss_error(s);
	pthread_mutex_lock(&pm->lock);
	pm->sts = r.sts;
	pm->en = r.en;
	pm->cnt = r.cnt;
	pm->reset = r.reset;
	pm->tmr_base = r.tmr;
	pm->ns_base = vclock_ns(&pm->vm->ev);
	pm->tmr_epoch = r.tmr >> PM_TMR_TOGGLE;
	pm->facs = r.facs;
	pm->gl_owned = r.gl_owned;
	pm->gl_waiting = r.gl_waiting;
	pm_arm(pm);
	pm_update_sci(pm);
	pthread_mutex_unlock(&pm->lock);
	return 0;
}

static int pm_pause(struct dev *d)
{
	return 0;
}

static int pm_resume(struct dev *d)
{
	return 0;
}

static void pm_destroy(struct dev *d)
{
	struct pm *pm = container_of(d, struct pm, dev);

	vtimer_cancel(&pm->vt);
	pthread_mutex_destroy(&pm->lock);
	free(pm);
}

static const struct dev_ops pm_ops = {
	.name = "pm",
	.version = 2,
	.pause = pm_pause,
	.resume = pm_resume,
	.save = pm_save,
	.load = pm_load,
	.destroy = pm_destroy,
};

static int pm_register(struct vm *vm, struct pm *pm, char *err, size_t errlen)
{
	static const struct {
		uint16_t port, len;
		bus_io_fn fn;
	} ranges[] = {
		{ PM1A_EVT_PORT, 4, pm_evt_io },
		{ PM1A_CNT_PORT, 2, pm_cnt_io },
		{ PM_TMR_PORT, 4, pm_tmr_io },
		{ RESET_PORT, 1, pm_reset_io },
	};

	for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++) {
		int ret = bus_register(&vm->pio, ranges[i].port, ranges[i].len, ranges[i].fn, pm);

		if (ret) {
			snprintf(err, errlen, "pm: I/O port 0x%x: %s", ranges[i].port,
				 strerror(-ret));
			while (i--)
				bus_unregister(&vm->pio, ranges[i].port);
			return ret;
		}
	}
	return 0;
}

struct dev *pm_create(struct vm *vm, char *err, size_t errlen)
{
	struct pm *pm = calloc(1, sizeof(*pm));

	if (!pm) {
		snprintf(err, errlen, "pm: out of memory");
		return NULL;
	}
	pm->dev.ops = &pm_ops;
	snprintf(pm->dev.id, sizeof(pm->dev.id), "pm");
	pm->vm = vm;
	pthread_mutex_init(&pm->lock, NULL);
	vtimer_init(&pm->vt, &vm->ev, pm_tmr_expire, pm);
	pm->cnt = PM1_SCI_EN;
	pm->ns_base = vclock_ns(&vm->ev);
	if (pm_register(vm, pm, err, errlen)) {
		pthread_mutex_destroy(&pm->lock);
		free(pm);
		return NULL;
	}
	vm_add_dev(vm, &pm->dev);
	return &pm->dev;
}
