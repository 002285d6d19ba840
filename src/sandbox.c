// SPDX-License-Identifier: BSD-2-Clause
/*
 * The sandbox (see sandbox.h): the allow-list of system calls khyve makes once the VM runs.
 *
 * Adding a device or a backend that needs more (a VNC thread, io_uring, migration sockets,
 * userfaultfd...):
 *   1. run its e2e tests with -o sandbox=log; every call the filter would refuse is allowed
 *      and logged by the kernel: `dmesg | grep 'type=1326'` shows "syscall=N" (look the
 *      number up with `scmp_sys_resolver N` or ausyscall);
 *   2. add each call to the group below it belongs to, or a new group, with a comment that
 *      says who needs it and why; restrict its arguments when a few values are all that is
 *      needed (see the ioctl, socket, clone and mmap rules);
 *   3. the whole e2e suite runs with the sandbox on, so a call missed shows up there as a
 *      "forbidden system call" line and a dead khyve.
 * Everything opened before the guest runs (/dev/kvm, disks, tap, sockets bound) needs no entry
 * here: the filter is installed after machine_create and ctl_start.
 */
#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "config.h"
#include "evloop.h"
#include "snap/live.h"
#include "vm.h"

/* Calls allowed with any arguments, by group. */
static const int allowed[] = {
	/* Memory: malloc, thread stacks, guest RAM mapped from a snapshot, the key (mlock). */
	SCMP_SYS(brk),
	SCMP_SYS(munmap),
	SCMP_SYS(mremap),
	SCMP_SYS(madvise),
	SCMP_SYS(mlock),
	SCMP_SYS(munlock),
	SCMP_SYS(mincore),
	SCMP_SYS(membarrier),

	/* Threads and their synchronisation (pthread, the vCPU pause protocol). */
	SCMP_SYS(futex),
	SCMP_SYS(set_robust_list),
	SCMP_SYS(get_robust_list),
	SCMP_SYS(rseq),
	SCMP_SYS(sched_yield),
	SCMP_SYS(sched_getaffinity),
	/* -p: a vCPU thread is pinned as it is created (pthread_attr_setaffinity_np). */
	SCMP_SYS(sched_setaffinity),
	SCMP_SYS(set_tid_address),
	SCMP_SYS(gettid),
	SCMP_SYS(getpid),
	SCMP_SYS(exit),
	SCMP_SYS(exit_group),

	/* Signals: vCPU kicks (tgkill), the blocked set, the SIGSYS report itself. */
	SCMP_SYS(rt_sigaction),
	SCMP_SYS(rt_sigprocmask),
	SCMP_SYS(rt_sigreturn),
	SCMP_SYS(sigaltstack),
	SCMP_SYS(tgkill),
	SCMP_SYS(rt_sigtimedwait),

	/* Time: the event loop's timerfd, sleeps, clocks (when the vDSO does not answer). */
	SCMP_SYS(clock_gettime),
	SCMP_SYS(clock_getres),
	SCMP_SYS(gettimeofday),
	SCMP_SYS(time),
	SCMP_SYS(nanosleep),
	SCMP_SYS(clock_nanosleep),
	SCMP_SYS(timerfd_settime),
	SCMP_SYS(timerfd_gettime),

	/* Waiting: epoll (event loop, VNC, slirp), poll (control socket, tap, uart), eventfds. */
	SCMP_SYS(epoll_wait),
	SCMP_SYS(epoll_pwait),
	SCMP_SYS(epoll_pwait2),
	SCMP_SYS(epoll_ctl),
	SCMP_SYS(poll),
	SCMP_SYS(ppoll),
	SCMP_SYS(select),
	SCMP_SYS(pselect6),
	SCMP_SYS(eventfd2),
	SCMP_SYS(pipe2),

	/* Reading and writing what is open: disks, consoles, tap, sockets, guest memory. */
	SCMP_SYS(read),
	SCMP_SYS(write),
	SCMP_SYS(pread64),
	SCMP_SYS(pwrite64),
	SCMP_SYS(readv),
	SCMP_SYS(writev),
	SCMP_SYS(preadv),
	SCMP_SYS(pwritev),
	SCMP_SYS(preadv2),
	SCMP_SYS(pwritev2),
	SCMP_SYS(lseek),
	SCMP_SYS(close),
	SCMP_SYS(dup),
	SCMP_SYS(dup3),
	SCMP_SYS(fcntl),
	SCMP_SYS(fsync),
	SCMP_SYS(fdatasync),
	SCMP_SYS(fallocate),
	SCMP_SYS(ftruncate),
	SCMP_SYS(fstat),
	SCMP_SYS(newfstatat),
	SCMP_SYS(statx),
	SCMP_SYS(flock),
	SCMP_SYS(copy_file_range),
	SCMP_SYS(sendfile),

	/*
	 * Files a save makes and replaces: the snapshot (temporary file, rename), disk copies
	 * (snapshot.disks=clone, and removing the old ones), the host key on first use, its
	 * directory; realpath() of paths recorded in a snapshot.
	 */
	SCMP_SYS(openat),
	SCMP_SYS(open),
	SCMP_SYS(rename),
	SCMP_SYS(renameat),
	SCMP_SYS(renameat2),
	SCMP_SYS(unlink),
	SCMP_SYS(unlinkat),
	SCMP_SYS(link),
	SCMP_SYS(linkat),
	SCMP_SYS(mkdir),
	SCMP_SYS(mkdirat),
	SCMP_SYS(fchmod),
	SCMP_SYS(fchmodat),
	SCMP_SYS(readlink),
	SCMP_SYS(readlinkat),
	SCMP_SYS(getcwd),
	SCMP_SYS(getdents64),
	SCMP_SYS(access),
	SCMP_SYS(faccessat),
	SCMP_SYS(faccessat2),
	SCMP_SYS(stat),
	SCMP_SYS(lstat),
	SCMP_SYS(statfs),
	SCMP_SYS(fstatfs),
	SCMP_SYS(umask),
	SCMP_SYS(utimensat), /* futimens: a disk copy keeps its image's times (snap/disks.c) */

	/*
	 * Sockets that are already there or that khyve serves: control clients, VNC clients,
	 * the UART's unix socket, slirp's connections for the guest (socket() is below), and
	 * migration: the source's TCP connection to khyve -R (connect, poll, writev, SO_ERROR,
	 * timeouts), the destination's READY/GO exchange on the connection it accepted.
	 */
	SCMP_SYS(accept),
	SCMP_SYS(accept4),
	SCMP_SYS(bind),
	SCMP_SYS(listen),
	SCMP_SYS(connect),
	SCMP_SYS(sendto),
	SCMP_SYS(recvfrom),
	SCMP_SYS(sendmsg),
	SCMP_SYS(recvmsg),
	SCMP_SYS(sendmmsg),
	SCMP_SYS(recvmmsg),
	SCMP_SYS(shutdown),
	SCMP_SYS(setsockopt),
	SCMP_SYS(getsockopt),
	SCMP_SYS(getsockname),
	SCMP_SYS(getpeername),

	/* Identity (the key's owner check, messages), limits, randomness (virtio-rnd, keys). */
	SCMP_SYS(getuid),
	SCMP_SYS(geteuid),
	SCMP_SYS(getgid),
	SCMP_SYS(getegid),
	SCMP_SYS(getresuid),
	SCMP_SYS(getresgid),
	SCMP_SYS(getgroups),
	SCMP_SYS(uname),
	SCMP_SYS(getrlimit),
	SCMP_SYS(prlimit64),
	SCMP_SYS(getrusage),
	SCMP_SYS(sysinfo),
	SCMP_SYS(getrandom),
	SCMP_SYS(getpriority),
	SCMP_SYS(restart_syscall),
	/* Live checkpoints (snap/live.c): the userfaultfd that write-protects guest RAM. */
	SCMP_SYS(userfaultfd),

#ifdef __SANITIZE_ADDRESS__
	/*
	 * Sanitizer builds only (make asan): LeakSanitizer stops the world at exit with a
	 * tracer process that ptraces every thread.  Never in a build that ships.
	 */
	SCMP_SYS(ptrace),
	SCMP_SYS(wait4),
	SCMP_SYS(waitid),
	SCMP_SYS(process_vm_readv),
	SCMP_SYS(sched_getparam),
#endif
};

/* ioctl requests outside KVM's and the block layer's types: exact values. */
static const unsigned long ioctls[] = {
	0x5401,	    /* TCGETS: isatty(), the console's terminal mode */
	0x5402,	    /* TCSETS */
	0x5403,	    /* TCSETSW: the terminal put back at exit */
	0x5404,	    /* TCSETSF */
	0x5413,	    /* TIOCGWINSZ */
	0x541B,	    /* FIONREAD */
	0x5421,	    /* FIONBIO */
	0x5411,	    /* TIOCOUTQ / SIOCOUTQ */
	0x40049409, /* FICLONE: a disk copy by reflink (snapshot.disks=clone) */
	0xC0606610, /* PAGEMAP_SCAN: dirty-page tracking reads written pages (snap/dirty.c) */
};

static int add(scmp_filter_ctx ctx, int nr, unsigned n, const struct scmp_arg_cmp *a)
{
	return seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, nr, n, a);
}

static int add_rules(scmp_filter_ctx ctx)
{
	int ret = 0;

	for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]) && !ret; i++)
		ret = add(ctx, allowed[i], 0, NULL);
	/* ioctl: KVM (type 0xAE) for vCPUs and the VM, the block layer (0x12: size, discard,
	 * zeroing of block devices), and the few terminal and file requests above.  TIOCSTI
	 * and everything else is refused. */
	if (!ret)
		ret = add(ctx, SCMP_SYS(ioctl), 1,
			  (struct scmp_arg_cmp[]){ SCMP_A1(SCMP_CMP_MASKED_EQ, 0xff00, 0xAE00) });
	if (!ret)
		ret = add(ctx, SCMP_SYS(ioctl), 1,
			  (struct scmp_arg_cmp[]){ SCMP_A1(SCMP_CMP_MASKED_EQ, 0xff00, 0x1200) });
	/* userfaultfd (type 0xAA): live checkpoints register, write-protect and release RAM. */
	if (!ret)
		ret = add(ctx, SCMP_SYS(ioctl), 1,
			  (struct scmp_arg_cmp[]){ SCMP_A1(SCMP_CMP_MASKED_EQ, 0xff00, 0xAA00) });
	for (size_t i = 0; i < sizeof(ioctls) / sizeof(ioctls[0]) && !ret; i++)
		ret = add(ctx, SCMP_SYS(ioctl), 1,
			  (struct scmp_arg_cmp[]){ SCMP_A1(SCMP_CMP_EQ, ioctls[i]) });
		/* Threads only, never a new process: clone with CLONE_THREAD; clone3 (whose flags a
	 * filter cannot see) says ENOSYS, and the C library falls back to clone. */
#ifdef __SANITIZE_ADDRESS__
	if (!ret) /* LeakSanitizer's tracer (above) */
		ret = add(ctx, SCMP_SYS(clone), 0, NULL);
	if (!ret)
		ret = add(ctx, SCMP_SYS(prctl), 0, NULL);
#else
	if (!ret)
		ret = add(ctx, SCMP_SYS(clone), 1,
			  (struct scmp_arg_cmp[]){
				  SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD) });
#endif
	if (!ret)
		ret = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
	/* New sockets for slirp (the guest's TCP/UDP, IPv4 and IPv6) and UNIX sockets. */
	for (int dom = 0; dom < 3 && !ret; dom++)
		ret = add(ctx, SCMP_SYS(socket), 1,
			  (struct scmp_arg_cmp[]){
				  SCMP_A0(SCMP_CMP_EQ,
					  (int[]){ AF_UNIX, AF_INET, AF_INET6 }[dom]) });
	/* No executable memory once running: a payload cannot be made to run. */
	if (!ret)
		ret = add(ctx, SCMP_SYS(mmap), 1,
			  (struct scmp_arg_cmp[]){ SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0) });
	if (!ret)
		ret = add(ctx, SCMP_SYS(mprotect), 1,
			  (struct scmp_arg_cmp[]){ SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0) });
	/* setpriority: the live checkpoint's writer raises its own (snap/live.c), to that one
	 * value only. */
	if (!ret)
		ret = add(ctx, SCMP_SYS(setpriority), 2,
			  (struct scmp_arg_cmp[]){ SCMP_A0(SCMP_CMP_EQ, PRIO_PROCESS),
						   SCMP_A2(SCMP_CMP_MASKED_EQ, 0xffffffffU,
							   (uint32_t)SNAP_LIVE_WRITER_NICE) });
	/* prctl: thread names only. */
	for (int op = 0; op < 2 && !ret; op++)
		ret = add(ctx, SCMP_SYS(prctl), 1,
			  (struct scmp_arg_cmp[]){
				  SCMP_A0(SCMP_CMP_EQ, (int[]){ PR_SET_NAME, PR_GET_NAME }[op]) });
	return ret;
}

/* ---- reporting a forbidden call ---- */

#define NAMES 512
static char names[NAMES][24]; /* filled at install: the handler may not allocate */

static size_t put(char *buf, size_t pos, size_t len, const char *s)
{
	while (*s && pos + 1 < len)
		buf[pos++] = *s++;
	return pos;
}

static size_t put_num(char *buf, size_t pos, size_t len, long v)
{
	char d[24];
	int n = 0;

	if (v < 0) {
		pos = put(buf, pos, len, "-");
		v = -v;
	}
	do
		d[n++] = (char)('0' + v % 10);
	while ((v /= 10) && n < 23);
	while (n && pos + 1 < len)
		buf[pos++] = d[--n];
	return pos;
}

/* Async-signal-safe: one line on stderr, then SIGSYS's default action kills the process. */
static void on_sigsys(int sig, siginfo_t *si, void *uc)
{
	char msg[320], thread[17] = "";
	int nr = si->si_syscall;
	size_t n = 0;

	prctl(PR_GET_NAME, thread, 0, 0, 0);
	n = put(msg, n, sizeof(msg), "khyve: sandbox: thread \"");
	n = put(msg, n, sizeof(msg), thread);
	n = put(msg, n, sizeof(msg), "\" made the forbidden system call ");
	n = put(msg, n, sizeof(msg), nr >= 0 && nr < NAMES && names[nr][0] ? names[nr] : "?");
	n = put(msg, n, sizeof(msg), " (");
	n = put_num(msg, n, sizeof(msg), nr);
	n = put(msg, n, sizeof(msg),
		"); stopping khyve (a bug, or a guest exploiting one; -o sandbox=log lets it "
		"through and logs it)\n");
	if (write(STDERR_FILENO, msg, n) < 0) {
		/* nothing else to tell it with */
	}
	/* SA_RESETHAND made the action the default again: this kills, with a core dump. */
	raise(SIGSYS);
}

static void fill_names(void)
{
	for (int nr = 0; nr < NAMES; nr++) {
		char *s = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);

		if (s)
			snprintf(names[nr], sizeof(names[nr]), "%s", s);
		free(s);
	}
}

/* The mode -o sandbox= asks for: 0 off, 1 on, 2 log; -EINVAL with @err otherwise. */
static int sandbox_mode(const struct config *cfg, char *err, size_t errlen)
{
	const char *mode = config_get_default(cfg, "sandbox", "on");

	if (!strcmp(mode, "off") || !strcmp(mode, "false"))
		return 0;
	if (!strcmp(mode, "on") || !strcmp(mode, "true"))
		return 1;
	if (!strcmp(mode, "log"))
		return 2;
	snprintf(err, errlen, "sandbox=%s: expected on, off or log", mode);
	return -EINVAL;
}

/*
 * The filter compiled ahead (sandbox_prepare): libseccomp's BPF for one mode, loaded later
 * with the seccomp system call as libseccomp would (no new privileges, every thread).
 */
static struct {
	int mode; /* 0: none prepared */
	struct sock_fprog prog;
} prepared;

static scmp_filter_ctx build(bool log, char *err, size_t errlen)
{
	scmp_filter_ctx ctx;
	int ret;

	fill_names();
	ctx = seccomp_init(log ? SCMP_ACT_LOG : SCMP_ACT_TRAP);
	if (!ctx) {
		snprintf(err, errlen, "sandbox: libseccomp cannot start a filter");
		return NULL;
	}
	/* Every thread, also those already running (event loop, I/O workers). */
	ret = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1);
	if (!ret)
		ret = add_rules(ctx);
	if (ret) {
		snprintf(err, errlen, "sandbox: building the system-call filter: %s",
			 strerror(-ret));
		seccomp_release(ctx);
		return NULL;
	}
	return ctx;
}

int sandbox_prepare(const struct config *cfg, char *err, size_t errlen)
{
	int mode = sandbox_mode(cfg, err, errlen), fd, ret = 0;
	scmp_filter_ctx ctx;
	off_t len;

	if (mode <= 0)
		return mode;
	ctx = build(mode == 2, err, errlen);
	if (!ctx)
		return -EINVAL;
	fd = memfd_create("khyve-seccomp", MFD_CLOEXEC);
	if (fd < 0 || seccomp_export_bpf(ctx, fd) || (len = lseek(fd, 0, SEEK_CUR)) <= 0 ||
	    len % sizeof(struct sock_filter) || len / sizeof(struct sock_filter) > 0xffff)
		ret = -EIO;
	if (!ret) {
		prepared.prog.filter = malloc((size_t)len);
		prepared.prog.len = (unsigned short)(len / sizeof(struct sock_filter));
		if (!prepared.prog.filter || pread(fd, prepared.prog.filter, (size_t)len, 0) != len)
			ret = -EIO;
	}
	if (fd >= 0)
		close(fd);
	seccomp_release(ctx);
	if (ret) {
		/* Not fatal: sandbox_install builds it then. */
		free(prepared.prog.filter);
		prepared.prog.filter = NULL;
		return 0;
	}
	prepared.mode = mode;
	return 0;
}

static int load_prepared(void)
{
	long r;

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		return -errno;
	r = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC,
		    &prepared.prog);
	/* A positive value names a thread that could not take the filter. */
	return r < 0 ? -errno : r ? -EAGAIN : 0;
}

int sandbox_install(const struct config *cfg, char *err, size_t errlen)
{
	struct sigaction sa = { .sa_sigaction = on_sigsys, .sa_flags = SA_SIGINFO | SA_RESETHAND };
	int mode = sandbox_mode(cfg, err, errlen), ret;
	scmp_filter_ctx ctx = NULL;

	if (mode <= 0)
		return mode;
	if (prepared.mode != mode) {
		ctx = build(mode == 2, err, errlen);
		if (!ctx)
			return -EINVAL;
	}
	ret = 0;
	if (mode == 1) {
		sigemptyset(&sa.sa_mask);
		ret = sigaction(SIGSYS, &sa, NULL) ? -errno : 0;
	}
	if (!ret)
		ret = ctx ? seccomp_load(ctx) : load_prepared();
	if (ctx)
		seccomp_release(ctx);
	if (ret)
		snprintf(err, errlen,
			 "sandbox: cannot install the system-call filter: %s (-o sandbox=off runs "
			 "without it)",
			 strerror(-ret));
	return ret;
}

/* ---- the test probe ---- */

struct probe {
	struct vtimer t;
};

static void probe_fire(void *opaque)
{
	/* Something no device does, harmless where it is allowed: ask for the personality. */
	syscall(SYS_personality, 0xffffffffUL);
}

int sandbox_start(struct vm *vm, char *err, size_t errlen)
{
	static struct probe p;
	bool probe = false;
	int ret = sandbox_install(vm->cfg, err, errlen);

	if (ret)
		return ret;
	if (config_get_bool(vm->cfg, "debug.sandbox_probe", false, &probe)) {
		snprintf(err, errlen, "debug.sandbox_probe: expected true or false");
		return -EINVAL;
	}
	if (probe) {
		vtimer_init(&p.t, &vm->ev, probe_fire, NULL);
		vtimer_arm(&p.t, vclock_ns(&vm->ev) + 200000000ULL);
	}
	return 0;
}
