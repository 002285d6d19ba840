// SPDX-License-Identifier: BSD-2-Clause
/*
 * The sandbox: in a child process (the filter cannot be taken off again), a forbidden system
 * call from a thread kills the process with a line naming the call, on threads started
 * before and after the filter; what khyve does while running still works.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "sandbox.h"
#include "snap/live.h"

typedef void (*probe_fn)(void);

struct outcome {
	int status;
	char err[1024];
};

/* Fork, install the sandbox (mode @mode), run @fn on a new thread (or on one started before
 * the filter with @early), report how the child ended and what it wrote on stderr. */
static void run_child(const char *mode, probe_fn fn, bool early, struct outcome *o);

struct thread_arg {
	probe_fn fn;
	int go[2];
};

static void *thread_main(void *opaque)
{
	struct thread_arg *a = opaque;
	char c;

	if (read(a->go[0], &c, 1) != 1)
		_exit(90);
	a->fn();
	return NULL;
}

static void child(const char *mode, probe_fn fn, bool early)
{
	struct thread_arg a = { .fn = fn };
	struct config cfg;
	char err[256];
	pthread_t t;

	config_init(&cfg);
	config_set(&cfg, "sandbox", mode);
	if (pipe(a.go))
		_exit(91);
	if (early && pthread_create(&t, NULL, thread_main, &a))
		_exit(92);
	if (sandbox_install(&cfg, err, sizeof(err))) {
		dprintf(2, "install: %s\n", err);
		_exit(93);
	}
	if (!early && pthread_create(&t, NULL, thread_main, &a))
		_exit(94);
	if (write(a.go[1], "x", 1) != 1)
		_exit(95);
	pthread_join(t, NULL);
	/* _exit: no exit handlers (a sanitizer's leak check would trace the process). */
	_exit(0);
}

static void run_child(const char *mode, probe_fn fn, bool early, struct outcome *o)
{
	int p[2];
	pid_t pid;
	ssize_t n, got = 0;

	assert_int_equal(pipe(p), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (!pid) {
		close(p[0]);
		dup2(p[1], 2);
		setrlimit(RLIMIT_CORE, &(struct rlimit){ 0, 0 });
		child(mode, fn, early);
	}
	close(p[1]);
	while ((n = read(p[0], o->err + got, sizeof(o->err) - 1 - (size_t)got)) > 0)
		got += n;
	o->err[got] = '\0';
	close(p[0]);
	assert_int_equal(waitpid(pid, &o->status, 0), pid);
}

static void expect_killed(const char *what, probe_fn fn, bool early)
{
	struct outcome o;

	run_child("on", fn, early, &o);
	if (!WIFSIGNALED(o.status) || WTERMSIG(o.status) != SIGSYS)
		fail_msg("%s: child ended with status 0x%x, not by SIGSYS; stderr: %s", what,
			 o.status, o.err);
	if (!strstr(o.err, "forbidden system call") || !strstr(o.err, what))
		fail_msg("the report '%s' does not name %s", o.err, what);
}

static void do_ptrace(void)
{
	syscall(SYS_ptrace, 0, 0, 0, 0);
}

static void do_execve(void)
{
	char *argv[] = { "/bin/true", NULL };

	execve("/bin/true", argv, NULL);
}

static void do_fork(void)
{
	/* A new process, not a thread. */
	syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
}

static void do_netlink(void)
{
	socket(AF_NETLINK, SOCK_RAW, 0);
}

static void do_exec_memory(void)
{
	mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
}

static void do_tiocsti(void)
{
	char c = 'x';

	ioctl(0, 0x5412 /* TIOCSTI: type into a terminal */, &c);
}

/* A priority other than the live checkpoint writer's (root could take the CPUs with it). */
static void do_nice_other(void)
{
	setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), -20);
}

/* Forbidden but harmless when it does run: asks for the current personality. */
static void do_personality(void)
{
	syscall(SYS_personality, 0xffffffffUL);
}

static void test_forbidden_killed(void **state)
{
	expect_killed("personality", do_personality, false);
	/* A thread that was already running when the filter went in is covered too. */
	expect_killed("personality", do_personality, true);
#ifndef __SANITIZE_ADDRESS__
	/* (Sanitizer builds let LeakSanitizer's tracer do these: see sandbox.c.) */
	expect_killed("ptrace", do_ptrace, false);
	expect_killed("clone", do_fork, false);
#else
	(void)do_ptrace;
	(void)do_fork;
#endif
	expect_killed("execve", do_execve, false);
	expect_killed("socket", do_netlink, false);
	expect_killed("mmap", do_exec_memory, false);
	expect_killed("ioctl", do_tiocsti, false);
	expect_killed("setpriority", do_nice_other, false);
}

static void *nothing(void *opaque)
{
	return opaque;
}

/* What a running khyve does: threads, memory, files, sockets, time, randomness. */
static void do_allowed(void)
{
	char path[] = "/tmp/khyve-sandbox-XXXXXX", buf[16];
	struct timespec ts;
	pthread_t t;
	void *m;
	int fd, sv[2];

	if (pthread_create(&t, NULL, nothing, NULL) || pthread_join(t, NULL))
		_exit(10);
	m = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED || munmap(m, 1 << 20))
		_exit(11);
	free(malloc(1 << 22));
	fd = mkstemp(path);
	if (fd < 0 || pwrite(fd, "data", 4, 0) != 4 || fsync(fd) || pread(fd, buf, 4, 0) != 4)
		_exit(12);
	close(fd);
	if (unlink(path))
		_exit(13);
	sv[0] = socket(AF_UNIX, SOCK_DGRAM, 0);
	sv[1] = socket(AF_INET6, SOCK_DGRAM, 0);
	if (sv[0] < 0 || sv[1] < 0)
		_exit(14);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		_exit(15);
	close(fd);
	if (clock_gettime(CLOCK_MONOTONIC, &ts) || getrandom(buf, sizeof(buf), 0) != sizeof(buf))
		_exit(16);
	/* The live checkpoint's writer (snap/live.c); refused with EACCES when not root. */
	if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), SNAP_LIVE_WRITER_NICE) &&
	    errno != EACCES && errno != EPERM)
		_exit(17);
	dprintf(2, "all allowed\n");
}

static void test_allowed_runs(void **state)
{
	struct outcome o;

	run_child("on", do_allowed, false, &o);
	if (!WIFEXITED(o.status) || WEXITSTATUS(o.status))
		fail_msg("allowed work failed: status 0x%x, stderr %s", o.status, o.err);
	assert_non_null(strstr(o.err, "all allowed"));
}

static void test_modes(void **state)
{
	struct outcome o;
	struct config cfg;
	char err[256];

	/* off: nothing installed; log: allowed and logged by the kernel. */
	run_child("off", do_personality, false, &o);
	assert_true(WIFEXITED(o.status) && WEXITSTATUS(o.status) == 0);
	run_child("log", do_personality, false, &o);
	assert_true(WIFEXITED(o.status) && WEXITSTATUS(o.status) == 0);
	config_init(&cfg);
	config_set(&cfg, "sandbox", "maybe");
	assert_int_equal(sandbox_install(&cfg, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "sandbox=maybe"));
	config_free(&cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_forbidden_killed),
		cmocka_unit_test(test_allowed_runs),
		cmocka_unit_test(test_modes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
