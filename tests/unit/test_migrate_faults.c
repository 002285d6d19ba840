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
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "evloop.h"
#include "faultinj.h"
#include "hltguest.h"
#include "loopsock.h"
#include "machine.h"
#include "migfeed.h"
#include "openfds.h"
#include "snap/migrate.h"
#include "snap/precopy.h"
#include "snap/snapshot.h"
#include "sstream.h"
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
	lo_free_addr(addr, sizeof(addr));
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

/* ---- without KVM: the receiver, the connections and the socket I/O, with host failures ---- */

#define PG 4096ULL
#define RX_MEM (4ULL << 20)

static int setup_nokvm(void **state)
{
	fi_reset();
	signal(SIGPIPE, SIG_IGN);
	return 0;
}

static int teardown_nokvm(void **state)
{
	fi_reset();
	return 0;
}

static int rx_hello(struct feed *r, uint32_t flags)
{
	uint8_t p[16];

	le32(p, MIG_VERSION);
	le32(p + 4, flags);
	le64(p + 8, RX_MEM);
	return feed(r, MIG_HELLO, p, sizeof(p));
}

static int rx_section(struct feed *r, uint32_t type, const char *id, const void *data, size_t n)
{
	uint8_t *p = calloc(1, MIG_SEC_HDR + n + 1);
	int ret;

	assert_non_null(p);
	le32(p, type);
	le32(p + 4, 1);
	strcpy((char *)p + 8, id);
	memcpy(p + MIG_SEC_HDR, data, n);
	ret = feed(r, MIG_SECTION, p, MIG_SEC_HDR + n);
	free(p);
	return ret;
}

static int rx_memmap(struct feed *r)
{
	struct snap_file f;
	struct sstream ss;
	int ret;

	memset(&f, 0, sizeof(f));
	f.nregions = 1;
	f.regions[0] = (struct snap_region){ 0, RX_MEM, SNAP_MEM_ALIGN };
	ss_init_save(&ss);
	snap_memmap_io(&ss, &f);
	assert_int_equal(ss_error(&ss), 0);
	ret = rx_section(r, SNAP_SEC_MEMMAP, "memory", ss.buf, ss.len);
	ss_free(&ss);
	return ret;
}

static int rx_mem(struct feed *r, uint64_t off, unsigned pages)
{
	size_t n = 8 + pages * PG;
	uint8_t *p = malloc(n);
	int ret;

	assert_non_null(p);
	le64(p, off);
	memset(p + 8, 0x3c, n - 8);
	ret = feed(r, MIG_MEM, p, n);
	free(p);
	return ret;
}

static int rx_round(struct feed *r, uint32_t round)
{
	uint8_t p[16] = { 0 };

	le32(p, round);
	return feed(r, MIG_ROUND, p, sizeof(p));
}

/* HELLO, the metadata, the memory map, pages in two units, END: ready to finish. */
static void rx_whole(struct feed *r)
{
	assert_int_equal(rx_hello(r, 0), 0);
	assert_int_equal(rx_section(r, SNAP_SEC_META, "meta", "{}", 2), 0);
	assert_int_equal(rx_memmap(r), 0);
	assert_int_equal(rx_mem(r, 0, 2), 0);
	assert_int_equal(rx_mem(r, 1ULL << 20, 1), 0);
	assert_int_equal(feed(r, MIG_END, NULL, 0), 0);
}

static void expect_rx(struct feed *r, int ret, int want, const char *msg)
{
	if (ret != want || !strstr(r->err, msg))
		fail_msg("got %d '%s', wanted %d '%s'", ret, r->err, want, msg);
	assert_true(fi_all_fired());
	fi_reset();
}

/*
 * The receiver's own failures: each allocation HELLO makes, the descriptor and the size of the
 * snapshot in memory, a section's and the memory's writes, a hole punched for a ZERO frame,
 * the mapping a ROUND checksums through, the disks section's copy.  Each is refused with its
 * errno (and a message where there is one to give), and the receiver is freed whole (ASan).
 */
static void test_receiver_fails(void **state)
{
	uint8_t z[16];
	struct feed r;

	for (unsigned n = 1; n <= 3; n++) {
		feed_init(&r);
		fi_fail(FI_CALLOC, n, ENOMEM);
		expect_rx(&r, rx_hello(&r, 0), -ENOMEM, "");
		feed_free(&r);
	}
	feed_init(&r);
	fi_fail(FI_FTRUNCATE, 1, ENOSPC);
	expect_rx(&r, rx_hello(&r, 0), -ENOSPC, "sizing the snapshot: No space left on device");
	feed_free(&r);

	feed_init(&r);
	assert_int_equal(rx_hello(&r, 0), 0);
	fi_fail(FI_PWRITE, 1, ENOSPC);
	expect_rx(&r, rx_section(&r, SNAP_SEC_DEV, "uart@lpc.com1", "state", 5), -ENOSPC,
		  "writing section uart@lpc.com1: No space left on device");
	fi_fail(FI_MALLOC, 1, ENOMEM);
	expect_rx(&r, rx_section(&r, SNAP_SEC_DISKS, "disks", "D", 1), -ENOMEM, "");
	assert_null(r.m.disks);
	fi_fail(FI_PWRITE, 1, EIO);
	expect_rx(&r, rx_mem(&r, 0, 1), -EIO, "writing guest memory: Input/output error");
	le64(z, 0);
	le64(z + 8, PG);
	fi_fail(FI_FALLOCATE, 1, EOPNOTSUPP);
	expect_rx(&r, feed(&r, MIG_ZERO, z, sizeof(z)), -EOPNOTSUPP,
		  "clearing guest memory: Operation not supported");
	/* What failed left no mark: the page written before the failures is all there is. */
	assert_int_equal(rx_mem(&r, PG, 1), 0);
	assert_int_equal(r.m.mem_bytes, PG);
	feed_free(&r);

	/* Live: the first ROUND maps the memory to checksum it. */
	feed_init(&r);
	assert_int_equal(rx_hello(&r, MIG_F_LIVE), 0);
	assert_int_equal(rx_mem(&r, 0, 4), 0);
	fi_fail(FI_MMAP, 1, ENOMEM);
	expect_rx(&r, rx_round(&r, 1), -ENOMEM,
		  "mapping the received memory: Cannot allocate memory");
	assert_null(r.m.mem);
	feed_free(&r);
}

/*
 * A whole stream received, then mig_in_finish with call @c failing with @e: it fails with -@e
 * and (@msg not NULL) a message holding @msg.
 */
static void finish_fails(enum fi_call c, int e, const char *msg)
{
	char err[512];
	struct feed r;

	feed_init(&r);
	rx_whole(&r);
	fi_fail(c, 1, e);
	assert_int_equal(mig_in_finish(&r.m, err, sizeof(err)), -e);
	if (msg)
		assert_non_null(strstr(err, msg));
	assert_true(fi_all_fired());
	fi_reset();
	feed_free(&r);
}

/*
 * Finishing: the mapping, the memory map's extents, its section, the commit.  Each failure is
 * refused and nothing half-made is taken for a snapshot: the receiver frees whole; the next
 * stream, fault-free, finishes.
 */
static void test_finish_fails(void **state)
{
	char err[512];
	struct feed r;

	finish_fails(FI_MMAP, ENOMEM, "mapping the received memory: Cannot allocate memory");
	finish_fails(FI_REALLOC, ENOMEM, NULL);
	finish_fails(FI_PWRITE, ENOSPC, "writing the memory map: No space left on device");
	feed_init(&r);
	rx_whole(&r);
	assert_int_equal(mig_in_finish(&r.m, err, sizeof(err)), 0);
	feed_free(&r);
}

/* The socket I/O: interrupted calls are retried, short writes finished, a timeout said so. */
static void test_socket_io(void **state)
{
	uint8_t payload[2 * PG];
	struct mig_in m;
	char err[512];
	int sv[2], mfd;

	for (unsigned i = 0; i < sizeof(payload); i++)
		payload[i] = (uint8_t)(i * 7);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	/* A write cut short (the header alone went), then one interrupted: the frame goes whole. */
	fi_short(FI_WRITEV, 1);
	assert_int_equal(mig_send_frame(sv[0], MIG_REFUSE, payload, 1000, payload + 1000, 24), 0);
	assert_true(fi_all_fired());
	fi_reset();
	fi_eintr(FI_WRITEV, 1);
	assert_int_equal(mig_send_frame(sv[0], MIG_REFUSE, "x", 1, NULL, 0), 0);
	assert_true(fi_all_fired());
	fi_reset();
	/* The receiver reads it through interrupted reads: the frame, checksum and all. */
	mfd = memfd_create("migf", MFD_CLOEXEC);
	assert_true(mfd >= 0);
	mig_in_init(&m, mfd);
	fi_eintr(FI_READ, 2); /* the payload's */
	assert_int_equal(mig_recv(sv[1], &m, err, sizeof(err)), -EPROTO);
	assert_true(fi_all_fired());
	fi_reset();
	/* (A REFUSE is no frame for a destination, but it arrived whole to say so.) */
	assert_non_null(strstr(err, "REFUSE frame before HELLO"));
	/* The second, read straight. */
	assert_int_equal(mig_recv(sv[1], &m, err, sizeof(err)), -EPROTO);
	/* Nothing comes within the socket's timeout: said as a timeout. */
	fi_fail(FI_READ, 1, EAGAIN);
	assert_int_equal(mig_recv(sv[1], &m, err, sizeof(err)), -ETIMEDOUT);
	assert_string_equal(err, strerror(ETIMEDOUT));
	fi_reset();
	fi_fail(FI_WRITEV, 1, EAGAIN);
	assert_int_equal(mig_send_frame(sv[0], MIG_END, NULL, 0, NULL, 0), -ETIMEDOUT);
	fi_reset();
	/* A frame's payload that cannot be allocated, or read whole. */
	assert_int_equal(mig_send_frame(sv[0], MIG_MEM, payload, 8, payload, PG), 0);
	fi_fail(FI_MALLOC, 1, ENOMEM);
	assert_int_equal(mig_recv(sv[1], &m, err, sizeof(err)), -ENOMEM);
	assert_string_equal(err, "MEM frame: Cannot allocate memory");
	fi_reset();
	/* A read that fails: the header's, then a payload's (on a new connection). */
	close(sv[0]);
	close(sv[1]);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	fi_fail(FI_READ, 1, EIO);
	assert_int_equal(mig_recv(sv[1], &m, err, sizeof(err)), -EIO);
	assert_string_equal(err, strerror(EIO));
	fi_reset();
	assert_int_equal(mig_send_frame(sv[0], MIG_HELLO, payload, 16, NULL, 0), 0);
	fi_fail(FI_READ, 2, EIO);
	assert_int_equal(mig_recv(sv[1], &m, err, sizeof(err)), -EIO);
	assert_string_equal(err, "HELLO frame cut short: Input/output error");
	fi_reset();
	mig_in_free(&m);
	close(mfd);
	close(sv[0]);
	close(sv[1]);
}

/* A VM without KVM, whose RAM HELLO announces (it is never paused: it has no KVM clock). */
static void nokvm_vm(struct vm *v, struct config *c)
{
	vm_init_bare(v, false);
	config_init(c);
	v->cfg = c;
	v->mem[0].size = 2ULL << 20;
	v->mem[0].hva = mmap(NULL, v->mem[0].size, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(v->mem[0].hva != MAP_FAILED);
	v->nmem = 1;
}

/* Listening on a free port of the loopback, never accepting (the backlog completes it). */
static int listener(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001) };
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(fd, 4), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", ntohs(sin.sin_port));
	return fd;
}

/*
 * The source's connection: the socket, the connect, the wait for it (failed, or timed out),
 * its result.  Each failure is said with the address and what to check; nothing is left
 * open, and the VM runs on.
 */
static void test_connect_fails(void **state)
{
	static const struct {
		enum fi_call c;
		int err;
		bool shrt;
	} kinds[] = {
		{ FI_SOCKET, EMFILE, false },
		{ FI_CONNECT, ENETUNREACH, false },
		{ FI_POLL, ENOMEM, false },
		{ FI_POLL, ETIMEDOUT, true },
		{ FI_GETSOCKOPT, ENOPROTOOPT, false },
	};
	struct migrate_result res;
	struct config c;
	struct vm v;
	char err[1024], want[512];
	unsigned fds;
	int lfd;

	nokvm_vm(&v, &c);
	lfd = listener();
	fds = open_fds();
	for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
		if (kinds[k].shrt)
			fi_short(kinds[k].c, 1);
		else
			fi_fail(kinds[k].c, 1, kinds[k].err);
		assert_int_equal(migrate_send(&v, addr, NULL, &res, err, sizeof(err)),
				 -kinds[k].err);
		assert_true(fi_all_fired());
		fi_reset();
		snprintf(want, sizeof(want), "connecting to %s: %s (is khyve -R %s waiting there?)",
			 addr, strerror(kinds[k].err), addr);
		assert_string_equal(err, want);
		assert_false(v.paused);
		assert_int_equal(open_fds(), fds);
	}
	close(lfd);
	vm_destroy(&v);
	config_free(&c);
}

/* khyve -R on a thread of its own, with @fault set there first. */
struct incoming {
	pthread_t thread;
	const struct fault *fault;
	bool eintr;
	struct vm v;
	struct config c;
	int ret;
	char err[1024];
};

static void *incoming_main(void *arg)
{
	struct incoming *in = arg;

	if (in->eintr)
		fi_eintr(in->fault->call, in->fault->nth);
	else if (in->fault)
		fi_fail(in->fault->call, in->fault->nth, in->fault->err);
	in->ret = migrate_incoming(&in->v, &in->c, addr, in->err, sizeof(in->err));
	return NULL;
}

static void incoming_start(struct incoming *in, const struct fault *f, bool eintr)
{
	memset(in, 0, sizeof(*in));
	in->fault = f;
	in->eintr = eintr;
	config_init(&in->c);
	assert_int_equal(pthread_create(&in->thread, NULL, incoming_main, in), 0);
}

static void incoming_join(struct incoming *in)
{
	assert_int_equal(pthread_join(in->thread, NULL), 0);
	config_free(&in->c);
}

/* A source that connects (as soon as the destination listens) and sends @n bytes of @p. */
static int source_connect(const void *p, size_t n)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001) };

	sin.sin_port = htons((uint16_t)atoi(strchr(addr, ':') + 1));
	for (unsigned i = 0; i < CONNECT_TRIES; i++) {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

		assert_true(fd >= 0);
		if (!connect(fd, (struct sockaddr *)&sin, sizeof(sin))) {
			assert_int_equal(write(fd, p, n), (ssize_t)n);
			shutdown(fd, SHUT_WR);
			return fd;
		}
		close(fd);
		usleep(2000);
	}
	fail_msg("nothing listens on %s", addr);
	return -1;
}

/* The destination's REFUSE, its text in @why. */
static void read_refuse(int fd, char *why, size_t len)
{
	uint8_t h[MIG_HDR];
	struct mig_frame f;
	char err[256];

	assert_int_equal(read(fd, h, sizeof(h)), (ssize_t)sizeof(h));
	assert_int_equal(mig_frame_decode(h, &f, err, sizeof(err)), 0);
	assert_int_equal(f.type, MIG_REFUSE);
	assert_true(f.length < len);
	assert_int_equal(read(fd, why, f.length), (ssize_t)f.length);
	why[f.length] = '\0';
}

/* khyve -R with @f set (interrupting, if @eintr) against a source sending @p: its REFUSE in @why. */
static void refused_source(struct incoming *in, const struct fault *f, bool eintr, const void *p,
			   size_t n, char *why, size_t len)
{
	int fd;

	incoming_start(in, f, eintr);
	fd = source_connect(p, n);
	read_refuse(fd, why, len);
	close(fd);
	incoming_join(in);
}

/*
 * The destination's listening socket, its listen, its accept (an interrupted one is tried
 * again), the memfd the stream goes into: each failure is said with the address (the memfd's
 * to the source too, in REFUSE), and nothing is left open.
 */
static void test_listen_fails(void **state)
{
	static const struct fault listen_faults[] = {
		{ FI_SOCKET, 1, EMFILE, false },
		{ FI_LISTEN, 1, EADDRINUSE, false },
		{ FI_ACCEPT4, 1, ECONNABORTED, false },
	};
	static const struct fault memfd = { FI_MEMFD_CREATE, 1, EMFILE, false },
				  accept_intr = { FI_ACCEPT4, 1, EINTR, false };
	static const struct fault hello_calloc = { FI_CALLOC, 1, ENOMEM, false };
	uint8_t hello[MIG_HDR + 16], p[16];
	struct incoming in;
	char want[256], why[MIG_MAX_MSG + 1];
	unsigned fds = open_fds();

	le32(p, MIG_VERSION);
	le32(p + 4, 0);
	le64(p + 8, RX_MEM);
	mig_frame_encode(hello, MIG_HELLO, p, sizeof(p));
	memcpy(hello + MIG_HDR, p, sizeof(p));
	lo_free_addr(addr, sizeof(addr));
	for (size_t k = 0; k < sizeof(listen_faults) / sizeof(listen_faults[0]); k++) {
		incoming_start(&in, &listen_faults[k], false);
		incoming_join(&in);
		snprintf(want, sizeof(want), "-R %s: %s", addr, strerror(listen_faults[k].err));
		assert_int_equal(in.ret, -listen_faults[k].err);
		assert_string_equal(in.err, want);
		assert_int_equal(open_fds(), fds);
	}
	/* No memfd for the stream: the source hears why. */
	refused_source(&in, &memfd, false, "", 0, why, sizeof(why));
	assert_int_equal(in.ret, -EMFILE);
	snprintf(want, sizeof(want), "memfd_create: %s", strerror(EMFILE));
	assert_string_equal(in.err, want);
	assert_string_equal(why, want);
	assert_int_equal(open_fds(), fds);
	/* HELLO's bitmaps cannot be allocated: the source hears that, in words. */
	refused_source(&in, &hello_calloc, false, hello, sizeof(hello), why, sizeof(why));
	assert_int_equal(in.ret, -ENOMEM);
	snprintf(want, sizeof(want), "incoming VM: %s", strerror(ENOMEM));
	assert_string_equal(in.err, want);
	assert_string_equal(why, want);
	assert_int_equal(open_fds(), fds);
	/* An accept interrupted by a signal waits on: the connection comes, its stream is read. */
	refused_source(&in, &accept_intr, true, "not a migration stream!", 24, why, sizeof(why));
	assert_int_equal(in.ret, -EPROTO);
	assert_string_equal(why, "incoming VM: not a khyve migration stream (bad frame magic)");
	assert_int_equal(open_fds(), fds);
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
		cmocka_unit_test_setup_teardown(test_receiver_fails, setup_nokvm, teardown_nokvm),
		cmocka_unit_test_setup_teardown(test_finish_fails, setup_nokvm, teardown_nokvm),
		cmocka_unit_test_setup_teardown(test_socket_io, setup_nokvm, teardown_nokvm),
		cmocka_unit_test_setup_teardown(test_connect_fails, setup_nokvm, teardown_nokvm),
		cmocka_unit_test_setup_teardown(test_listen_fails, setup_nokvm, teardown_nokvm),
	};

	have_kvm = access("/dev/kvm", R_OK | W_OK) == 0;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
