// SPDX-License-Identifier: BSD-2-Clause
/*
 * Migration (snap/migrate.c, snap/precopy.c) between two real VMs in this process, with host
 * failures injected (tests/faultinj.h) on one side at a time.  The source is a VM built as
 * khyve builds it (the three-byte guest of test_snapshot_faults: hlt; jmp back); the
 * destination runs on a thread of its own as `khyve -R` runs (migrate_incoming, then
 * migrate_incoming_go, then the VM is destroyed).
 *
 * For each N, the Nth call of a kind fails on one side (a write to the socket, a read from
 * it, an allocation, the memory mapping, the writes into the received snapshot, the restore's
 * allocations).  Either the migration fails, and then: both sides return an error with a
 * message, the source VM runs on (not paused, and a checkpoint of it succeeds), the
 * destination has no VM and no open descriptor left (its memfd, its socket); or, where the
 * failure was one the code retries or gets around, the VM moved whole (the source ended as
 * suspended, the destination restored it).  ASan's leak check covers what was allocated.
 * Stop-and-copy and live (pre-copy rounds on a sender thread) both.
 *
 * Needs /dev/kvm (skipped without it).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "evloop.h"
#include "faultinj.h"
#include "hltguest.h"
#include "machine.h"
#include "snap/migrate.h"
#include "snap/precopy.h"
#include "snap/snapshot.h"
#include "vm.h"

static char dir[64], kernel[160], key[160], snap[160], addr[64];
static struct config cfg;
static struct vm vm;
static bool have_kvm, source_up;

static void base_config(struct config *c)
{
	config_init(c);
	assert_int_equal(config_set(c, "cpus", "1"), 0);
	assert_int_equal(config_set(c, "memory.size", "16M"), 0);
	assert_int_equal(config_set(c, "boot.kernel", kernel), 0);
	assert_int_equal(config_set(c, "snapshot.key", key), 0);
}

/* A free TCP port on the loopback (the destination binds it with SO_REUSEADDR). */
static void pick_addr(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001) };
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	close(fd);
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", ntohs(sin.sin_port));
}

static void source_build(void)
{
	char err[1024] = "";

	fi_suspend(true);
	memset(&vm, 0, sizeof(vm));
	base_config(&cfg);
	if (machine_check_config(&cfg, false, err, sizeof(err)) ||
	    machine_create(&vm, &cfg, false, err, sizeof(err)) ||
	    machine_start(&vm, err, sizeof(err)))
		fail_msg("building the VM: %s", err);
	source_up = true;
	fi_suspend(false);
}

static void source_destroy(void)
{
	fi_suspend(true);
	if (source_up)
		machine_destroy(&vm);
	source_up = false;
	config_free(&cfg);
	fi_suspend(false);
}

static int setup(void **state)
{
	fi_reset();
	strcpy(dir, "/tmp/khyve-migf-XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(kernel, sizeof(kernel), "%s/kernel", dir);
	snprintf(key, sizeof(key), "%s/key", dir);
	snprintf(snap, sizeof(snap), "%s/vm.snap", dir);
	assert_int_equal(hltguest_write(kernel), 0);
	pick_addr();
	if (have_kvm)
		source_build();
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];

	fi_reset();
	if (have_kvm)
		source_destroy();
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd);
}

#define NEED_KVM()              \
	do {                    \
		if (!have_kvm)  \
			skip(); \
	} while (0)

/* Open descriptors of this process. */
static unsigned open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	unsigned n = 0;

	assert_non_null(d);
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

/* What the descriptors are, for a message. */
static void show_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;

	assert_non_null(d);
	while ((e = readdir(d))) {
		char p[300], t[256] = "";

		if (e->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "/proc/self/fd/%s", e->d_name);
		if (readlink(p, t, sizeof(t) - 1) < 0)
			continue;
		print_message("  fd %s: %s\n", e->d_name, t);
	}
	closedir(d);
}

/* ---- the destination: khyve -R on a thread ---- */

/* A fault the destination's thread sets on itself before it listens. */
struct fault {
	enum fi_call call;
	unsigned nth;
	int err;
	bool any_thread; /* count every thread's calls (the source's then runs immune) */
};

struct dest {
	pthread_t thread;
	const struct fault *fault; /* NULL: none here (the thread's calls then never fail) */
	struct config c;
	struct vm v;
	int ret;
	bool fired;
	atomic_bool done; /* migrate_incoming returned */
	char err[1024];
};

static void *dest_main(void *arg)
{
	struct dest *d = arg;
	bool made;

	if (d->fault) {
		if (d->fault->any_thread)
			fi_any_thread();
		fi_fail(d->fault->call, d->fault->nth, d->fault->err);
	} else {
		fi_suspend(true);
	}
	d->ret = migrate_incoming(&d->v, &d->c, addr, d->err, sizeof(d->err));
	atomic_store(&d->done, true);
	made = !d->ret;
	if (!d->ret)
		d->ret = migrate_incoming_go(d->err, sizeof(d->err));
	/* The guest would run here now (khyve starts it, then tells the source). */
	if (!d->ret)
		migrate_incoming_running();
	d->fired = fi_all_fired();
	fi_suspend(true);
	migrate_incoming_cleanup();
	/* A refused VM is none: nothing to destroy (as khyve -R exits). */
	if (made)
		machine_destroy(&d->v);
	config_free(&d->c);
	return NULL;
}

static void dest_start(struct dest *d, const struct fault *f)
{
	memset(d, 0, sizeof(*d));
	d->fault = f;
	fi_suspend(true);
	base_config(&d->c);
	config_unset(&d->c, "boot.kernel");
	fi_suspend(false);
	assert_int_equal(pthread_create(&d->thread, NULL, dest_main, d), 0);
}

/* ---- the source ---- */

/* The destination may not listen yet: a refused connection is tried again (nothing paused). */
#define CONNECT_TRIES 1000

static int send_stop_and_copy(char *err, size_t errlen)
{
	struct migrate_result res;
	int ret;

	for (unsigned i = 0; i < CONNECT_TRIES; i++) {
		ret = migrate_send(&vm, addr, NULL, &res, err, errlen);
		if (ret != -ECONNREFUSED)
			break;
		usleep(2000);
	}
	return ret;
}

/* Live: started on the event-loop thread, finished there (its @done). */
struct live_req {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool finished;
	int ret;
	unsigned rounds;
	const struct fault *fault; /* set on the loop thread, before the start */
	char err[1024];
};

static struct live_req lreq = { .lock = PTHREAD_MUTEX_INITIALIZER,
				.cond = PTHREAD_COND_INITIALIZER };

static void live_finished(int ret, unsigned rounds, const char *err)
{
	pthread_mutex_lock(&lreq.lock);
	lreq.ret = ret;
	lreq.rounds = rounds;
	snprintf(lreq.err, sizeof(lreq.err), "%s", err ? err : "");
	lreq.finished = true;
	pthread_cond_broadcast(&lreq.cond);
	pthread_mutex_unlock(&lreq.lock);
}

static void live_done(void *opaque, int ret, const struct migrate_result *res, const char *err)
{
	live_finished(ret, res->rounds, err);
}

static void live_start(void *opaque)
{
	struct mig_policy p = { .max_downtime_ns = 20000000, .max_rounds = 5 };
	char err[1024] = "";
	int ret;

	if (lreq.fault) {
		if (lreq.fault->any_thread)
			fi_any_thread();
		fi_fail(lreq.fault->call, lreq.fault->nth, lreq.fault->err);
	}
	ret = migrate_live_start(&vm, addr, &p, NULL, live_done, NULL, err, sizeof(err));
	if (ret)
		live_finished(ret, 0, err);
}

/* Work queued on the loop thread before this (the end of the migration's reply) is done. */
static void loop_mark(void *opaque)
{
	pthread_mutex_lock(&lreq.lock);
	*(bool *)opaque = true;
	pthread_cond_broadcast(&lreq.cond);
	pthread_mutex_unlock(&lreq.lock);
}

static void loop_barrier(void)
{
	bool done = false;

	evloop_call(&vm.ev, loop_mark, &done);
	pthread_mutex_lock(&lreq.lock);
	while (!done)
		pthread_cond_wait(&lreq.cond, &lreq.lock);
	pthread_mutex_unlock(&lreq.lock);
}

static int send_live(const struct fault *f, char *err, size_t errlen)
{
	int ret = 0;

	for (unsigned i = 0; i < CONNECT_TRIES; i++) {
		pthread_mutex_lock(&lreq.lock);
		lreq.finished = false;
		lreq.fault = f;
		lreq.err[0] = '\0';
		pthread_mutex_unlock(&lreq.lock);
		evloop_call(&vm.ev, live_start, NULL);
		pthread_mutex_lock(&lreq.lock);
		while (!lreq.finished)
			pthread_cond_wait(&lreq.cond, &lreq.lock);
		ret = lreq.ret;
		snprintf(err, errlen, "%s", lreq.err);
		pthread_mutex_unlock(&lreq.lock);
		/* The reply comes before the migration's last descriptors are closed. */
		if (ret)
			loop_barrier();
		if (ret != -ECONNREFUSED)
			break;
		/* Set again for the next attempt (a source fault: the destination has none). */
		if (f)
			fi_reset();
		usleep(2000);
	}
	return ret;
}

enum mode { STOP_AND_COPY, LIVE };

/*
 * A source that failed before it connected leaves the destination waiting for a connection:
 * one that closes at once ends its wait (it is refused as a cut stream).
 */
static void dest_unblock(struct dest *d)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001) };

	sin.sin_port = htons((uint16_t)atoi(strchr(addr, ':') + 1));
	while (!atomic_load(&d->done)) {
		int fd = socket(AF_INET, SOCK_STREAM, 0);

		assert_true(fd >= 0);
		connect(fd, (struct sockaddr *)&sin, sizeof(sin));
		close(fd);
		usleep(2000);
	}
}

static bool src_fired;

/* One migration: the source's result (its message in @err), the destination's in @d. */
static int migrate(enum mode mode, const struct fault *src_fault, const struct fault *dst_fault,
		   struct dest *d, char *err, size_t errlen)
{
	int ret;

	err[0] = '\0';
	dest_start(d, dst_fault);
	if (mode == LIVE) {
		ret = send_live(src_fault, err, errlen);
	} else {
		if (src_fault) {
			if (src_fault->any_thread)
				fi_any_thread();
			fi_fail(src_fault->call, src_fault->nth, src_fault->err);
		}
		ret = send_stop_and_copy(err, errlen);
	}
	src_fired = src_fault && fi_all_fired();
	if (ret)
		dest_unblock(d);
	assert_int_equal(pthread_join(d->thread, NULL), 0);
	return ret;
}

/*
 * The outcome of one migration with a fault: both sides failed with a message and the source
 * runs on, or (@may_succeed) it moved whole.  The source is built again after a success.
 * Returns whether it failed.
 */
static bool check_outcome(const char *what, unsigned n, int ret, const struct dest *d,
			  const char *err, unsigned fds, bool may_succeed)
{
	char e[1024];

	fi_reset();
	/*
	 * GO went out and the destination took the VM, but its RUNNING never reached the source
	 * (its write or the source's read failed): the source cannot tell whether the guest runs
	 * there, so it must stay paused (not run, not end), and say so.  The operator then stops
	 * it, as here.  (A GO the destination could not read is refused: the source resumes.)
	 */
	if (ret == -EINPROGRESS) {
		if (d->ret)
			fail_msg("%s %u failing: the source stays paused, but the destination did "
				 "not take the VM: %d '%s'",
				 what, n, d->ret, d->err);
		if (!vm.paused || atomic_load(&vm.exit_status) >= 0 || !strstr(err, "stays paused"))
			fail_msg("%s %u failing: unconfirmed hand-over: paused %d, exit status %d, "
				 "'%s'",
				 what, n, vm.paused, atomic_load(&vm.exit_status), err);
		print_message("%s %u failing: RUNNING lost, the source stays paused\n", what, n);
		source_destroy();
		source_build();
		return true;
	}
	if (!ret && !d->ret) {
		if (!may_succeed)
			fail_msg("%s %u failing: the migration succeeded", what, n);
		assert_int_equal(vm_wait_exit(&vm), VM_EXIT_SUSPENDED);
		source_destroy();
		source_build();
		return false;
	}
	if (!ret || !d->ret || !err[0] || !d->err[0])
		fail_msg("%s %u failing: source %d '%s', destination %d '%s'", what, n, ret, err,
			 d->ret, d->err);
	if (vm.paused)
		fail_msg("%s %u failing: the source VM is left paused ('%s')", what, n, err);
	if (open_fds() != fds) {
		show_fds();
		fail_msg("%s %u failing: %u descriptors open, %u before ('%s' / '%s')", what, n,
			 open_fds(), fds, err, d->err);
	}
	/* The source runs on: it can be checkpointed (its own pause and resume work). */
	if (snap_save(&vm, snap, NULL, &(struct snap_result){ 0 }, e, sizeof(e)))
		fail_msg("%s %u failing: a checkpoint of the source after it: %s", what, n, e);
	unlink(snap);
	return true;
}

/* A migration without faults: the source ends as suspended, the destination ran it. */
static void check_clean(enum mode mode)
{
	struct dest d;
	char err[1024];
	unsigned fds;
	int ret;

	fi_reset();
	fds = open_fds();
	ret = migrate(mode, NULL, NULL, &d, err, sizeof(err));
	if (ret || d.ret)
		fail_msg("migration: source %d '%s', destination %d '%s'", ret, err, d.ret, d.err);
	assert_int_equal(vm_wait_exit(&vm), VM_EXIT_SUSPENDED);
	source_destroy();
	source_build();
	assert_int_equal(open_fds(), fds);
}

static void test_migrate(void **state)
{
	NEED_KVM();
	check_clean(STOP_AND_COPY);
	check_clean(LIVE);
	check_clean(STOP_AND_COPY);
}

/* Calls of @c on the source side (@any: all its threads) in one clean migration. */
static unsigned count_source(enum mode mode, enum fi_call c, bool any)
{
	struct fault probe = { c, 1000000, EIO, any };
	struct dest d;
	char err[1024];
	unsigned n;
	int ret;

	fi_reset();
	/* A rule that never fires, only so that calls are counted on the right threads. */
	ret = migrate(mode, &probe, NULL, &d, err, sizeof(err));
	n = fi_calls(c);
	if (ret || d.ret)
		fail_msg("counting migration: source %d '%s', destination %d '%s'", ret, err, d.ret,
			 d.err);
	fi_reset();
	assert_int_equal(vm_wait_exit(&vm), VM_EXIT_SUSPENDED);
	source_destroy();
	source_build();
	return n;
}

/* Calls of @c on the destination's thread in one clean migration. */
static unsigned count_dest(enum mode mode, enum fi_call c)
{
	struct fault probe = { c, 1000000, EIO, false };
	struct dest d;
	char err[1024];
	unsigned n;
	int ret;

	fi_reset();
	ret = migrate(mode, NULL, &probe, &d, err, sizeof(err));
	/* An upper bound: the source's other threads (its vCPU, its loop) count too. */
	n = fi_calls(c);
	if (ret || d.ret)
		fail_msg("counting migration: source %d '%s', destination %d '%s'", ret, err, d.ret,
			 d.err);
	fi_reset();
	assert_int_equal(vm_wait_exit(&vm), VM_EXIT_SUSPENDED);
	source_destroy();
	source_build();
	return n;
}

/* Which of 1..@total to try: the first 4, about 4 more spread out, and the last 2. */
static bool sampled(unsigned n, unsigned total)
{
	return n <= 4 || n + 1 >= total || n % (total / 4 + 1) == 0;
}

/*
 * The source's @c failing at each call in turn (@any: on any of its threads: the vCPU's
 * sections and the sender thread's frames), the destination immune.
 */
static void sweep_source(enum mode mode, enum fi_call c, int e, bool any, bool may_succeed,
			 const char *what)
{
	unsigned total = count_source(mode, c, any), failed = 0;
	bool fired;

	if (!total)
		fail_msg("%s: no call made by the source", what);
	for (unsigned n = 1; n <= total; n++) {
		struct fault f = { c, n, e, any };
		struct dest d;
		char err[1024];
		unsigned fds;
		int ret;

		if (!sampled(n, total))
			continue;
		fi_reset();
		fds = open_fds();
		ret = migrate(mode, &f, NULL, &d, err, sizeof(err));
		fired = src_fired;
		failed += check_outcome(what, n, ret, &d, err, fds, may_succeed || !fired);
		/*
		 * A frame of the stream not sent: the source shuts its side, so the destination
		 * (still reading) answers at once, and its reason is in the message.  Not HELLO
		 * (nothing was begun), nor GO, the last frame, after which the stream is over.
		 */
		if (mode == STOP_AND_COPY && c == FI_WRITEV && fired && ret && n > 1 && n < total &&
		    !strstr(err, "; the destination refused the VM: "))
			fail_msg("%s %u failing: no reason from the destination in '%s'", what, n,
				 err);
		/* Past the last call of its kind (the count included other threads' calls). */
		if (!fired)
			break;
	}
	/* Some of them were on the path that matters. */
	print_message("%s: %u calls, %u failures refused\n", what, total, failed);
	assert_true(failed > 0);
}

/* The destination's @c failing at each of its calls in turn, the source immune. */
static void sweep_dest(enum mode mode, enum fi_call c, int e, bool may_succeed, const char *what)
{
	unsigned total, failed = 0;

	fi_reset();
	total = count_dest(mode, c);
	if (!total)
		fail_msg("%s: no call made by the destination", what);
	for (unsigned n = 1; n <= total; n++) {
		struct fault f = { c, n, e, false };
		struct dest d;
		char err[1024];
		unsigned fds;
		int ret;

		if (!sampled(n, total))
			continue;
		fi_reset();
		fds = open_fds();
		fi_suspend(true); /* the source's calls on this thread */
		ret = migrate(mode, NULL, &f, &d, err, sizeof(err));
		fi_suspend(false);
		failed += check_outcome(what, n, ret, &d, err, fds, may_succeed || !d.fired);
		if (!d.fired)
			break;
	}
	print_message("%s: %u calls, %u failures refused\n", what, total, failed);
	assert_true(failed > 0);
}

/* The source's writes to the socket: the frames, from every thread that sends them. */
static void test_source_write_fails(void **state)
{
	NEED_KVM();
	signal(SIGPIPE, SIG_IGN);
	sweep_source(STOP_AND_COPY, FI_WRITEV, EPIPE, true, false, "writev");
}

/* Its reads (READY, the refusal) and its allocations, on the thread that migrates. */
static void test_source_read_alloc_fails(void **state)
{
	NEED_KVM();
	sweep_source(STOP_AND_COPY, FI_READ, EIO, false, false, "read");
	sweep_source(STOP_AND_COPY, FI_MALLOC, ENOMEM, false, true, "malloc");
	sweep_source(STOP_AND_COPY, FI_CALLOC, ENOMEM, false, true, "calloc");
}

/* A kind of destination call to fail, N = 1, 2, ... in turn. */
struct dest_kind {
	enum fi_call c;
	int err;
	bool may_succeed; /* an allocation the restore can do without */
	const char *what;
};

static void sweep_dest_kinds(enum mode mode, const struct dest_kind *kinds, unsigned n)
{
	signal(SIGPIPE, SIG_IGN);
	for (unsigned k = 0; k < n; k++) {
		fi_reset();
		if (!count_dest(mode, kinds[k].c))
			continue; /* this build makes no such call there */
		sweep_dest(mode, kinds[k].c, kinds[k].err, kinds[k].may_succeed, kinds[k].what);
	}
}

/* The destination: reading the stream, writing it into the memfd, mapping it, restoring it. */
static void test_dest_fails(void **state)
{
	static const struct dest_kind kinds[] = {
		{ FI_READ, ECONNRESET, false, "read" },
		{ FI_WRITEV, EPIPE, false, "writev" },
		{ FI_PWRITE, ENOSPC, false, "pwrite" },
		{ FI_PWRITEV, ENOSPC, false, "pwritev" },
		{ FI_FTRUNCATE, ENOSPC, false, "ftruncate" },
		{ FI_MMAP, ENOMEM, false, "mmap" },
		{ FI_MALLOC, ENOMEM, true, "malloc" },
		{ FI_CALLOC, ENOMEM, true, "calloc" },
		{ FI_REALLOC, ENOMEM, true, "realloc" },
	};

	NEED_KVM();
	sweep_dest_kinds(STOP_AND_COPY, kinds, sizeof(kinds) / sizeof(kinds[0]));
}

/* Live: the sender thread's frames and the final pause's, each write failing in turn. */
static void test_live_source_fails(void **state)
{
	NEED_KVM();
	signal(SIGPIPE, SIG_IGN);
	sweep_source(LIVE, FI_WRITEV, EPIPE, true, false, "live writev");
	/* Starting it: the eventfd, the bitmap and bounce buffer, the first allocations. */
	sweep_source(LIVE, FI_EVENTFD, EMFILE, false, false, "live eventfd");
	sweep_source(LIVE, FI_CALLOC, ENOMEM, false, true, "live calloc");
	sweep_source(LIVE, FI_MALLOC, ENOMEM, false, true, "live malloc");
}

/* Live: the destination's reads, its mapping of the memory at the first ROUND, its writes. */
static void test_live_dest_fails(void **state)
{
	static const struct dest_kind kinds[] = {
		{ FI_READ, ECONNRESET, false, "live read" },
		/* The first may be the VM made ahead (vm_premake): the restore makes its own. */
		{ FI_MMAP, ENOMEM, true, "live mmap" },
		{ FI_PWRITEV, ENOSPC, false, "live pwritev" },
		{ FI_PWRITE, ENOSPC, false, "live pwrite" },
		{ FI_CALLOC, ENOMEM, true, "live calloc" },
	};

	NEED_KVM();
	sweep_dest_kinds(LIVE, kinds, sizeof(kinds) / sizeof(kinds[0]));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_migrate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_source_write_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_source_read_alloc_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dest_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_live_source_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_live_dest_fails, setup, teardown),
	};

	have_kvm = access("/dev/kvm", R_OK | W_OK) == 0;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
