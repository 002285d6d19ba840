// SPDX-License-Identifier: BSD-2-Clause
/* The gdb stub: transport, KVM target and the debugger's hold (see gdbstub.h). */
#include "gdb/gdbstub.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/kvm.h>

#include "gdb/pagewalk.h"
#include "gdb/rsp.h"
#include "gdb/session.h"
#include "log.h"
#include "vcpu.h"
#include "vm.h"

#define BP_VECTOR 3
#define DR6_BS (1ULL << 14) /* single step */
#define DR6_B0_3 0xfULL	    /* which of DR0-DR3 matched */
#define SEND_TIMEOUT_MS 5000

struct gdbstub {
	struct vm *vm;
	int lfd, cfd, evfd;
	char where[80]; /* ADDR:PORT, for messages */
	bool wait;
	bool pvm;	     /* KVM without VMX/SVM (kvm_pvm): see pvm_note */
	uint32_t step_flags; /* KVM_GUESTDBG_SINGLESTEP, with BLOCKIRQ where KVM has it */
	struct rsp_parser rp;
	struct gdb_session s;
	struct gdb_target t;
	char frame[RSP_MAX_FRAME]; /* the last reply, sent again on '-' */
	size_t frame_len;
	bool broken; /* a reply could not be sent: the connection is dropped */
	bool killed; /* 'k': the VM is ending */
	struct pw_cpu *pw;
	bool *pw_valid;

	/*
	 * Between a resume and the stop that ends it, vCPU threads report debug exits here; the
	 * first one is the stop (the others re-execute their int3 or breakpoint when they run
	 * again, so nothing is lost).
	 */
	pthread_mutex_t lock;
	bool running;
	bool stop_valid;
	unsigned stop_cpu;
	enum gdb_stop_kind stop_kind;
	unsigned stop_dr6;	     /* B0-B3 of a GDB_STOP_HW_BP stop */
	bool *stepping;		     /* per vCPU, as the last resume set it */
	struct kvm_guest_debug *dbg; /* per vCPU, as the last resume set it */
};

/* ---- the option ---- */

int gdbstub_parse_opt(struct config *cfg, const char *arg, char *err, size_t errlen)
{
	const char *p = arg, *colon, *port;
	char addr[64] = "";
	unsigned long v;
	char *end;
	int ret = 0;

	if (*p == 'w') {
		ret = config_set(cfg, "gdb.wait", "true");
		p++;
	}
	colon = strrchr(p, ':');
	port = colon ? colon + 1 : p;
	if (colon) {
		size_t n = (size_t)(colon - p);

		/* [v6addr]:port, as a URL writes it */
		if (n >= 2 && p[0] == '[' && p[n - 1] == ']') {
			p++;
			n -= 2;
		}
		if (!n || n >= sizeof(addr))
			goto bad;
		memcpy(addr, p, n);
		addr[n] = '\0';
	}
	if (!isdigit((unsigned char)*port))
		goto bad;
	errno = 0;
	v = strtoul(port, &end, 10);
	if (errno || *end || v > 65535)
		goto bad;
	if (!ret)
		ret = config_set(cfg, "gdb.port", port);
	if (!ret && addr[0])
		ret = config_set(cfg, "gdb.address", addr);
	if (ret)
		snprintf(err, errlen, "-G %s: %s", arg, strerror(-ret));
	return ret;
bad:
	snprintf(err, errlen,
		 "-G %s: expected [w][ADDRESS:]PORT (e.g. -G 1234, -G w127.0.0.1:1234), PORT "
		 "0 to 65535",
		 arg);
	return -EINVAL;
}

/* ---- the target: registers ---- */

struct regs_arg {
	struct gdb_regs *r;
	const struct gdb_regs *w;
};

/* The full x87 tag of physical register @p (SDM vol. 1, 8.1.7) from FXSAVE's abridged one. */
static unsigned fpu_tag(const struct kvm_fpu *f, unsigned p)
{
	unsigned top = (f->fsw >> 11) & 7;
	const uint8_t *st = f->fpr[(p - top) & 7];
	uint16_t exp = (uint16_t)((st[9] << 8 | st[8]) & 0x7fff);
	uint64_t man;

	if (!(f->ftwx & (1u << p)))
		return 3; /* empty */
	memcpy(&man, st, 8);
	if (exp == 0x7fff)
		return 2;
	if (exp == 0)
		return man ? 2 : 1;
	return man >> 63 ? 0 : 2;
}

static void regs_from_kvm(struct gdb_regs *r, const struct kvm_regs *kr, const struct kvm_sregs *ks,
			  const struct kvm_fpu *f)
{
	const uint64_t gpr[16] = { kr->rax, kr->rbx, kr->rcx, kr->rdx, kr->rsi, kr->rdi,
				   kr->rbp, kr->rsp, kr->r8,  kr->r9,  kr->r10, kr->r11,
				   kr->r12, kr->r13, kr->r14, kr->r15 };
	unsigned ftag = 0;

	memcpy(r->gpr, gpr, sizeof(gpr));
	r->rip = kr->rip;
	r->eflags = (uint32_t)kr->rflags;
	r->seg[0] = ks->cs.selector;
	r->seg[1] = ks->ss.selector;
	r->seg[2] = ks->ds.selector;
	r->seg[3] = ks->es.selector;
	r->seg[4] = ks->fs.selector;
	r->seg[5] = ks->gs.selector;
	r->fs_base = ks->fs.base;
	r->gs_base = ks->gs.base;
	r->cr0 = ks->cr0;
	r->cr2 = ks->cr2;
	r->cr3 = ks->cr3;
	r->cr4 = ks->cr4;
	r->cr8 = ks->cr8;
	r->efer = ks->efer;
	for (unsigned i = 0; i < 8; i++) {
		memcpy(r->st[i], f->fpr[i], 10);
		ftag |= fpu_tag(f, i) << (2 * i);
	}
	r->fpu[0] = f->fcw;
	r->fpu[1] = f->fsw;
	r->fpu[2] = ftag;
	r->fpu[3] = (uint32_t)(f->last_ip >> 32);
	r->fpu[4] = (uint32_t)f->last_ip;
	r->fpu[5] = (uint32_t)(f->last_dp >> 32);
	r->fpu[6] = (uint32_t)f->last_dp;
	r->fpu[7] = f->last_opcode;
	memcpy(r->xmm, f->xmm, sizeof(r->xmm));
	r->mxcsr = f->mxcsr;
}

static int regs_get_fn(struct vcpu *v, void *opaque)
{
	struct regs_arg *a = opaque;
	struct kvm_regs kr;
	struct kvm_sregs ks;
	struct kvm_fpu f;

	if (ioctl(v->fd, KVM_GET_REGS, &kr) || ioctl(v->fd, KVM_GET_SREGS, &ks) ||
	    ioctl(v->fd, KVM_GET_FPU, &f))
		return -errno;
	regs_from_kvm(a->r, &kr, &ks, &f);
	return 0;
}

/*
 * Each of the three KVM sets is written only when gdb changed something in it: KVM_SET_SREGS
 * also reloads the MMU and re-queues the pending interrupt, which nothing should do for a
 * write of rax.  A segment register written changes its selector only (the hidden descriptor
 * stays, as gdb has no way to say what it should be).
 */
static int regs_set_fn(struct vcpu *v, void *opaque)
{
	struct regs_arg *a = opaque;
	const struct gdb_regs *w = a->w;
	struct gdb_regs cur;
	struct kvm_regs kr;
	struct kvm_sregs ks;
	struct kvm_fpu f;
	struct kvm_segment *segs[6] = { &ks.cs, &ks.ss, &ks.ds, &ks.es, &ks.fs, &ks.gs };
	__u64 *gpr[16] = { &kr.rax, &kr.rbx, &kr.rcx, &kr.rdx, &kr.rsi, &kr.rdi, &kr.rbp, &kr.rsp,
			   &kr.r8,  &kr.r9,  &kr.r10, &kr.r11, &kr.r12, &kr.r13, &kr.r14, &kr.r15 };

	if (ioctl(v->fd, KVM_GET_REGS, &kr) || ioctl(v->fd, KVM_GET_SREGS, &ks) ||
	    ioctl(v->fd, KVM_GET_FPU, &f))
		return -errno;
	regs_from_kvm(&cur, &kr, &ks, &f);
	for (unsigned i = 0; i < 16; i++)
		*gpr[i] = w->gpr[i];
	kr.rip = w->rip;
	/* The upper half of RFLAGS is reserved: gdb's eflags is 32 bits. */
	kr.rflags = w->eflags;
	if (ioctl(v->fd, KVM_SET_REGS, &kr))
		return -errno;
	if (memcmp(cur.seg, w->seg, sizeof(w->seg)) || cur.fs_base != w->fs_base ||
	    cur.gs_base != w->gs_base || cur.cr0 != w->cr0 || cur.cr2 != w->cr2 ||
	    cur.cr3 != w->cr3 || cur.cr4 != w->cr4 || cur.cr8 != w->cr8 || cur.efer != w->efer) {
		for (unsigned i = 0; i < 6; i++)
			segs[i]->selector = (uint16_t)w->seg[i];
		ks.fs.base = w->fs_base;
		ks.gs.base = w->gs_base;
		ks.cr0 = w->cr0;
		ks.cr2 = w->cr2;
		ks.cr3 = w->cr3;
		ks.cr4 = w->cr4;
		ks.cr8 = w->cr8;
		ks.efer = w->efer;
		if (ioctl(v->fd, KVM_SET_SREGS, &ks))
			return -errno;
	}
	if (memcmp(cur.st, w->st, sizeof(w->st)) || memcmp(cur.fpu, w->fpu, sizeof(w->fpu)) ||
	    memcmp(cur.xmm, w->xmm, sizeof(w->xmm)) || cur.mxcsr != w->mxcsr) {
		for (unsigned i = 0; i < 8; i++)
			memcpy(f.fpr[i], w->st[i], 10);
		f.fcw = (uint16_t)w->fpu[0];
		f.fsw = (uint16_t)w->fpu[1];
		f.ftwx = 0;
		for (unsigned p = 0; p < 8; p++)
			if (((w->fpu[2] >> (2 * p)) & 3) != 3)
				f.ftwx |= (uint8_t)(1u << p);
		f.last_ip = (uint64_t)w->fpu[3] << 32 | w->fpu[4];
		f.last_dp = (uint64_t)w->fpu[5] << 32 | w->fpu[6];
		f.last_opcode = (uint16_t)w->fpu[7];
		memcpy(f.xmm, w->xmm, sizeof(f.xmm));
		f.mxcsr = w->mxcsr;
		if (ioctl(v->fd, KVM_SET_FPU, &f))
			return -errno;
	}
	return 0;
}

static int t_get_regs(void *opaque, unsigned cpu, struct gdb_regs *r)
{
	struct gdbstub *g = opaque;
	struct regs_arg a = { .r = r };

	return vcpu_run_on(g->vm->vcpus[cpu], regs_get_fn, &a);
}

static int t_set_regs(void *opaque, unsigned cpu, const struct gdb_regs *r)
{
	struct gdbstub *g = opaque;
	struct regs_arg a = { .w = r };

	g->pw_valid[cpu] = false; /* cr3 and the paging mode may have changed */
	return vcpu_run_on(g->vm->vcpus[cpu], regs_set_fn, &a);
}

/* ---- the target: memory ---- */

static int pw_read(void *opaque, uint64_t gpa, uint64_t *val)
{
	void *p = vm_gpa(opaque, gpa, 8);

	if (!p)
		return -1;
	memcpy(val, p, 8);
	return 0;
}

static int sregs_pw_fn(struct vcpu *v, void *opaque)
{
	struct pw_cpu *pw = opaque;
	struct kvm_sregs ks;

	if (ioctl(v->fd, KVM_GET_SREGS, &ks))
		return -errno;
	*pw = (struct pw_cpu){ ks.cr0, ks.cr3, ks.cr4, ks.efer };
	return 0;
}

static int t_translate(void *opaque, unsigned cpu, uint64_t gva, uint64_t *gpa, uint64_t *left)
{
	struct gdbstub *g = opaque;

	/* The control registers of a stopped vCPU stay as they were until it runs again. */
	if (!g->pw_valid[cpu]) {
		int ret = vcpu_run_on(g->vm->vcpus[cpu], sregs_pw_fn, &g->pw[cpu]);

		if (ret)
			return ret;
		g->pw_valid[cpu] = true;
	}
	return pagewalk(&g->pw[cpu], pw_read, g->vm, gva, gpa, left);
}

static int t_read_phys(void *opaque, uint64_t gpa, void *buf, size_t len)
{
	struct gdbstub *g = opaque;
	void *p = vm_gpa(g->vm, gpa, len);

	if (!p)
		return -EFAULT;
	memcpy(buf, p, len);
	return 0;
}

static int t_write_phys(void *opaque, uint64_t gpa, const void *buf, size_t len)
{
	struct gdbstub *g = opaque;
	void *p = vm_gpa(g->vm, gpa, len);

	/*
	 * A live checkpoint write-protects RAM and copies pages as the guest first writes them:
	 * a write from here would wait for its writer on this very thread.
	 */
	if (g->vm->live)
		return -EBUSY;
	if (!p)
		return -EFAULT;
	memcpy(p, buf, len);
	return 0;
}

/* ---- the target: running ---- */

static int set_debug_fn(struct vcpu *v, void *opaque)
{
	return ioctl(v->fd, KVM_SET_GUEST_DEBUG, opaque) ? -errno : 0;
}

static int cpl_fn(struct vcpu *v, void *opaque)
{
	struct kvm_sregs ks;

	if (ioctl(v->fd, KVM_GET_SREGS, &ks))
		return -errno;
	*(unsigned *)opaque = ks.cs.selector & 3;
	return 0;
}

/*
 * On PVM (measured) the guest's ring 3 runs natively and its #DB and #BP go straight to the guest, not
 * to KVM: a step there would hand the guest a debug exception it never asked for.  Refused,
 * so gdb says the step failed instead of the guest crashing.
 */
static int pvm_check_step(struct gdbstub *g, const struct gdb_resume *r)
{
	for (unsigned i = 0; g->pvm && i < g->vm->ncpus; i++) {
		unsigned cpl = 0;
		int ret;

		if (r->action[i] != GDB_STEP)
			continue;
		ret = vcpu_run_on(g->vm->vcpus[i], cpl_fn, &cpl);
		if (ret)
			return ret;
		if (cpl == 3) {
			log_warn("gdb: vCPU %u is in ring 3, where this host (PVM) "
				 "cannot single-step: refused",
				 i);
			return -EOPNOTSUPP;
		}
	}
	return 0;
}

static int t_resume(void *opaque, const struct gdb_resume *r)
{
	struct gdbstub *g = opaque;
	struct vm *vm = g->vm;
	uint64_t n;
	int ret = pvm_check_step(g, r);

	if (ret)
		return ret;
	for (unsigned i = 0; i < vm->ncpus; i++) {
		struct kvm_guest_debug *d = &g->dbg[i];

		memset(d, 0, sizeof(*d));
		if (r->sw_bp)
			d->control |= KVM_GUESTDBG_USE_SW_BP;
		if (r->dr7) {
			d->control |= KVM_GUESTDBG_USE_HW_BP;
			memcpy(d->arch.debugreg, r->dr, sizeof(r->dr));
			d->arch.debugreg[7] = r->dr7;
		}
		if (r->action[i] == GDB_STEP)
			d->control |= g->step_flags;
		if (d->control)
			d->control |= KVM_GUESTDBG_ENABLE;
		ret = vcpu_run_on(vm->vcpus[i], set_debug_fn, d);
		if (ret)
			return ret;
	}
	/* A stop an earlier run left in the eventfd is stale. */
	if (read(g->evfd, &n, sizeof(n)) < 0) {
		/* nothing was there */
	}
	pthread_mutex_lock(&g->lock);
	g->running = true;
	g->stop_valid = false;
	for (unsigned i = 0; i < vm->ncpus; i++)
		g->stepping[i] = r->action[i] == GDB_STEP;
	pthread_mutex_unlock(&g->lock);
	for (unsigned i = 0; i < vm->ncpus; i++) {
		g->pw_valid[i] = false;
		if (r->action[i] != GDB_STAY)
			vcpu_release(vm->vcpus[i]);
	}
	return 0;
}

static void t_kill(void *opaque)
{
	struct gdbstub *g = opaque;

	g->killed = true;
	vm_request_exit(g->vm, VM_EXIT_ERROR);
}

static void t_send(void *opaque, const char *payload, size_t len)
{
	struct gdbstub *g = opaque;
	size_t off = 0;

	g->frame_len = rsp_encode(payload, len, g->frame, sizeof(g->frame));
	while (!g->broken && off < g->frame_len) {
		ssize_t n = write(g->cfd, g->frame + off, g->frame_len - off);
		struct pollfd p = { .fd = g->cfd, .events = POLLOUT };

		if (n > 0) {
			off += (size_t)n;
			continue;
		}
		/* A debugger that reads nothing for this long is gone. */
		if (n < 0 && (errno == EAGAIN || errno == EINTR) &&
		    poll(&p, 1, SEND_TIMEOUT_MS) > 0)
			continue;
		g->broken = true;
	}
}

static void raw_send(struct gdbstub *g, const char *s, size_t n)
{
	if (!g->broken && write(g->cfd, s, n) != (ssize_t)n)
		g->broken = true;
}

/* ---- stops ---- */

/* Is the int3 at linear @pc one of ours?  On the vCPU's thread, while it is stopped. */
static bool sw_bp_ours(struct gdbstub *g, struct vcpu *v, uint64_t pc)
{
	struct pw_cpu pw;
	uint64_t gpa, left;

	if (sregs_pw_fn(v, &pw) || pagewalk(&pw, pw_read, g->vm, pc, &gpa, &left))
		return false;
	/* The breakpoint list changes only while every vCPU is held: this read races nothing. */
	return gdb_session_is_sw_bp(&g->s, gpa);
}

/* An exception that was the guest's own: give it back (KVM injects it at the next entry). */
static void reinject(struct vcpu *v, struct kvm_guest_debug *d, uint32_t flag)
{
	struct kvm_guest_debug once = *d;

	once.control |= flag;
	if (ioctl(v->fd, KVM_SET_GUEST_DEBUG, &once))
		log_warn("gdb: vCPU %u: cannot give the guest its exception: %s", v->id,
			 strerror(errno));
}

bool gdbstub_debug_exit(struct vcpu *v)
{
	struct gdbstub *g = v->vm->gdb;
	struct kvm_debug_exit_arch *a = &v->run->debug.arch;
	enum gdb_stop_kind kind;
	bool stepping;
	uint64_t one = 1;

	if (!g)
		return false;
	pthread_mutex_lock(&g->lock);
	stepping = g->stepping[v->id];
	pthread_mutex_unlock(&g->lock);
	if (a->exception == BP_VECTOR) {
		if (!sw_bp_ours(g, v, a->pc)) {
			reinject(v, &g->dbg[v->id], KVM_GUESTDBG_INJECT_BP);
			return true;
		}
		kind = GDB_STOP_SW_BP;
	} else if (stepping || (a->dr6 & DR6_BS)) {
		kind = GDB_STOP_STEP;
	} else if (a->dr6 & DR6_B0_3) {
		kind = GDB_STOP_HW_BP;
	} else {
		reinject(v, &g->dbg[v->id], KVM_GUESTDBG_INJECT_DB);
		return true;
	}
	vcpu_hold_self(v);
	pthread_mutex_lock(&g->lock);
	if (g->running && !g->stop_valid) {
		g->stop_valid = true;
		g->stop_cpu = v->id;
		g->stop_kind = kind;
		g->stop_dr6 = (unsigned)(a->dr6 & DR6_B0_3);
		if (write(g->evfd, &one, sizeof(one)) < 0) {
			/* the count is already non-zero */
		}
	}
	pthread_mutex_unlock(&g->lock);
	return true;
}

/* Hold every vCPU; true if they were running for gdb (a stop is to be reported). */
static bool hold_all(struct gdbstub *g)
{
	bool was;

	pthread_mutex_lock(&g->lock);
	was = g->running;
	g->running = false;
	pthread_mutex_unlock(&g->lock);
	vcpus_hold(g->vm);
	return was;
}

static void on_stop(void *opaque, uint32_t events)
{
	struct gdbstub *g = opaque;
	enum gdb_stop_kind kind;
	unsigned cpu, dr6;
	bool valid;
	uint64_t n;

	if (read(g->evfd, &n, sizeof(n)) < 0)
		return;
	pthread_mutex_lock(&g->lock);
	valid = g->running && g->stop_valid;
	cpu = g->stop_cpu;
	kind = g->stop_kind;
	dr6 = g->stop_dr6;
	pthread_mutex_unlock(&g->lock);
	if (!valid || g->cfd < 0)
		return;
	hold_all(g);
	if (kind == GDB_STOP_HW_BP)
		gdb_session_stopped_hw(&g->s, cpu, dr6);
	else
		gdb_session_stopped(&g->s, cpu, kind);
}

/* ---- the connection ---- */

static void client_close(struct gdbstub *g, const char *why, bool ending)
{
	if (g->cfd < 0)
		return;
	if (g->s.state != GDB_DETACHED && !ending) {
		/* The session takes its breakpoints out with every vCPU stopped. */
		hold_all(g);
		gdb_session_detach(&g->s);
	}
	pthread_mutex_lock(&g->lock);
	g->running = false;
	pthread_mutex_unlock(&g->lock);
	evloop_del_fd(&g->vm->ev, g->cfd);
	close(g->cfd);
	g->cfd = -1;
	log_info("gdb: %s%s", why, ending ? "" : "; the guest runs on");
}

static void on_byte(struct gdbstub *g, uint8_t c)
{
	switch (rsp_feed(&g->rp, c)) {
	case RSP_PACKET:
		raw_send(g, "+", 1);
		gdb_session_packet(&g->s, g->rp.buf, g->rp.len);
		break;
	case RSP_BAD:
		raw_send(g, "-", 1);
		break;
	case RSP_NAK:
		if (g->frame_len)
			raw_send(g, g->frame, g->frame_len);
		break;
	case RSP_INTERRUPT:
		if (g->s.state == GDB_RUNNING && hold_all(g))
			gdb_session_stopped(&g->s, g->s.stop_cpu, GDB_STOP_INTERRUPT);
		break;
	default:
		break;
	}
}

static void on_client(void *opaque, uint32_t events)
{
	struct gdbstub *g = opaque;
	uint8_t buf[4096];
	ssize_t n = read(g->cfd, buf, sizeof(buf));

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0)
		return client_close(g, "the debugger closed the connection", false);
	for (ssize_t i = 0; i < n && g->cfd >= 0; i++) {
		on_byte(g, buf[i]);
		if (g->s.state == GDB_DETACHED && g->killed)
			return client_close(g, "the debugger killed the VM (k)", true);
		if (g->s.state == GDB_DETACHED)
			return client_close(g, "the debugger detached", false);
		if (g->broken)
			return client_close(g, "the debugger stopped reading", false);
	}
}

static void on_accept(void *opaque, uint32_t events)
{
	struct gdbstub *g = opaque;
	int one = 1, ret;
	int fd = accept4(g->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	if (fd < 0)
		return;
	if (g->cfd >= 0) {
		log_warn("gdb: a debugger is already connected: another one is "
			 "refused");
		close(fd);
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	ret = evloop_add_fd(&g->vm->ev, fd, EPOLLIN, on_client, g);
	if (ret) {
		close(fd);
		return;
	}
	g->cfd = fd;
	g->broken = false;
	g->killed = false;
	g->frame_len = 0;
	rsp_init(&g->rp);
	hold_all(g);
	gdb_session_init(&g->s, &g->t);
	log_info("gdb: debugger connected; the guest is stopped");
	if (g->pvm)
		log_info("gdb: this host's KVM is PVM: software breakpoints and "
			 "watchpoints are refused, single steps and hardware breakpoints work "
			 "in guest ring 0 only (khyve(8), -G)");
}

/* ---- setup ---- */

static int listen_on(struct gdbstub *g, const char *addr, const char *port, char *err,
		     size_t errlen)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC,
				  .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE };
	struct addrinfo *res;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[64], serv[16];
	int one = 1, ret = getaddrinfo(addr, port, &hints, &res);

	if (ret) {
		snprintf(err, errlen, "gdb.address=%s: %s", addr, gai_strerror(ret));
		return -EINVAL;
	}
	g->lfd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	ret = g->lfd < 0 ? -errno : 0;
	if (!ret)
		setsockopt(g->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (!ret && (bind(g->lfd, res->ai_addr, res->ai_addrlen) || listen(g->lfd, 1)))
		ret = -errno;
	freeaddrinfo(res);
	if (!ret && getsockname(g->lfd, (struct sockaddr *)&ss, &sl))
		ret = -errno;
	if (!ret && getnameinfo((struct sockaddr *)&ss, sl, host, sizeof(host), serv, sizeof(serv),
				NI_NUMERICHOST | NI_NUMERICSERV))
		ret = -EINVAL;
	if (ret) {
		snprintf(err, errlen, "gdb stub on %s:%s: %s", addr, port, strerror(-ret));
		return ret;
	}
	snprintf(g->where, sizeof(g->where), strchr(host, ':') ? "[%s]:%s" : "%s:%s", host, serv);
	return 0;
}

static uint32_t step_flags(struct vm *vm)
{
	int ext = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_SET_GUEST_DEBUG2);

	/* Keep interrupts out of a step, or it lands in whatever handler was pending. */
	if (ext > 0 && (ext & KVM_GUESTDBG_BLOCKIRQ))
		return KVM_GUESTDBG_SINGLESTEP | KVM_GUESTDBG_BLOCKIRQ;
	return KVM_GUESTDBG_SINGLESTEP;
}

static int stub_alloc(struct gdbstub *g, unsigned n)
{
	g->pw = calloc(n, sizeof(*g->pw));
	g->pw_valid = calloc(n, sizeof(*g->pw_valid));
	g->stepping = calloc(n, sizeof(*g->stepping));
	g->dbg = calloc(n, sizeof(*g->dbg));
	return g->pw && g->pw_valid && g->stepping && g->dbg ? 0 : -ENOMEM;
}

int gdbstub_open(struct vm *vm, char *err, size_t errlen)
{
	const char *port = config_get(vm->cfg, "gdb.port");
	const char *addr = config_get_default(vm->cfg, "gdb.address", "127.0.0.1");
	struct gdbstub *g;
	bool wait = false;
	unsigned long v;
	char *end;
	int ret;

	if (!port)
		return 0;
	errno = 0;
	v = strtoul(port, &end, 10);
	if (!isdigit((unsigned char)*port) || errno || *end || v > 65535) {
		snprintf(err, errlen, "gdb.port=%s: expected a TCP port, 0 to 65535", port);
		return -EINVAL;
	}
	if (config_get_bool(vm->cfg, "gdb.wait", false, &wait)) {
		snprintf(err, errlen, "gdb.wait: expected true or false");
		return -EINVAL;
	}
	if (vm->ncpus > GDB_MAX_CPUS) {
		snprintf(err, errlen, "gdb stub: at most %u vCPUs", GDB_MAX_CPUS);
		return -EINVAL;
	}
	g = calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	g->vm = vm;
	g->lfd = g->cfd = g->evfd = -1;
	g->wait = wait;
	pthread_mutex_init(&g->lock, NULL);
	vm->gdb = g;
	ret = stub_alloc(g, vm->ncpus);
	if (!ret) {
		g->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		ret = g->evfd < 0 ? -errno : 0;
	}
	if (ret) {
		snprintf(err, errlen, "gdb stub: %s", strerror(-ret));
		return ret;
	}
	ret = listen_on(g, addr, port, err, errlen);
	if (ret)
		return ret;
	g->step_flags = step_flags(vm);
	/* The module's name is the one sign of it: its KVM API is the usual one. */
	g->pvm = access("/sys/module/kvm_pvm", F_OK) == 0;
	g->t = (struct gdb_target){
		.ncpus = vm->ncpus,
		.opaque = g,
		.no_sw_bp = g->pvm,
		.no_watch = g->pvm,
		.get_regs = t_get_regs,
		.set_regs = t_set_regs,
		.translate = t_translate,
		.read_phys = t_read_phys,
		.write_phys = t_write_phys,
		.resume = t_resume,
		.kill = t_kill,
		.send = t_send,
	};
	gdb_session_init(&g->s, &g->t);
	/* -G w: the vCPU threads park before their first instruction. */
	for (unsigned i = 0; wait && i < vm->ncpus; i++)
		vm->vcpus[i]->dbg_hold = true;
	return 0;
}

int gdbstub_go(struct vm *vm, char *err, size_t errlen)
{
	struct gdbstub *g = vm->gdb;
	int ret;

	if (!g)
		return 0;
	ret = evloop_add_fd(&vm->ev, g->evfd, EPOLLIN, on_stop, g);
	if (!ret)
		ret = evloop_add_fd(&vm->ev, g->lfd, EPOLLIN, on_accept, g);
	if (ret) {
		snprintf(err, errlen, "gdb stub: %s", strerror(-ret));
		return ret;
	}
	log_info("gdb: listening on %s%s", g->where,
		 g->wait ? "; the guest waits for the debugger (-G w)" : "");
	return 0;
}

static void stop_fn(void *opaque)
{
	struct gdbstub *g = opaque;

	client_close(g, "the VM is ending: the debugger is disconnected", true);
	if (g->lfd >= 0) {
		evloop_del_fd(&g->vm->ev, g->lfd);
		close(g->lfd);
		g->lfd = -1;
	}
	if (g->evfd >= 0)
		evloop_del_fd(&g->vm->ev, g->evfd);
}

void gdbstub_stop(struct vm *vm)
{
	if (vm->gdb)
		evloop_call(&vm->ev, stop_fn, vm->gdb);
}

void gdbstub_free(struct vm *vm)
{
	struct gdbstub *g = vm->gdb;

	if (!g)
		return;
	vm->gdb = NULL;
	if (g->lfd >= 0)
		close(g->lfd);
	if (g->cfd >= 0)
		close(g->cfd);
	if (g->evfd >= 0)
		close(g->evfd);
	pthread_mutex_destroy(&g->lock);
	free(g->pw);
	free(g->pw_valid);
	free(g->stepping);
	free(g->dbg);
	free(g);
}

const char *gdbstub_save_refusal(struct vm *vm)
{
	static char msg[160];
	unsigned n = vm->gdb && vm->gdb->cfd >= 0 ? gdb_session_sw_bps(&vm->gdb->s) : 0;

	if (!n)
		return NULL;
	snprintf(msg, sizeof(msg),
		 "the debugger has %u software breakpoint%s (int3 bytes) in guest memory: delete "
		 "them in gdb, or detach it, first",
		 n, n == 1 ? "" : "s");
	return msg;
}

const char *gdbstub_status(struct vm *vm, const char **debugger)
{
	struct gdbstub *g = vm->gdb;

	if (!g)
		return NULL;
	*debugger = g->cfd < 0 ? "none" : g->s.state == GDB_RUNNING ? "running" : "stopped";
	return g->where;
}
