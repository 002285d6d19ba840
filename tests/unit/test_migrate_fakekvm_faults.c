// SPDX-License-Identifier: BSD-2-Clause
/*
 * Migration's source side (snap/migrate.c, snap/precopy.c) to the end, against a KVM this test
 * plays itself (fi_ioctl_fake: the VM-wide state of a VM with no vCPU), so that it runs on any
 * host, /dev/kvm or not, and a destination played here (barelive.h) that receives the stream
 * into a snapshot and then answers as told:
 *  - it runs the guest (READY, GO, RUNNING): the source's VM ends as suspended; the stream was
 *    a whole snapshot with an AUTH this user's key made; live, the last dirty pages went in
 *    the final pause straight from guest memory;
 *  - it refuses before GO, answers with a frame it may not, or hangs up: the source resumes;
 *  - it refuses after GO: the source resumes; it hangs up after GO: nobody knows whether the
 *    guest runs there, so the source stays paused and says so;
 *  - each write of the source failing in turn: the source resumes, or (after GO) stays paused.
 */
#include <errno.h>
#include <linux/kvm.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>

#include <cmocka.h>

#include "barelive.h"
#include "fakekvm.h"
#include "faultinj.h"
#include "openfds.h"
#include "snap/dirty.h"
#include "snap/migrate.h"
#include "snap/precopy.h"
#include "snap/snapshot.h"

#define VM_FD 1002 /* a descriptor nothing else in the process has: the fake answers for it */
#define R0 (4ULL << 20)
#define R1 (2ULL << 20)
#define NPAGES ((R0 + R1) / BL_PAGE)
#define MS 1000000ULL

static int fake_ioctl(int fd, unsigned long req, void *arg)
{
	if (fd != VM_FD)
		return (int)syscall(SYS_ioctl, fd, req, arg);
	return fakekvm_vm_get(req, arg, 987654321);
}

static struct bl_vm b;
static char dir[64], key[160];
static uint64_t data_pages;

static int setup(void **state)
{
	fi_reset();
	signal(SIGPIPE, SIG_IGN);
	strcpy(dir, "/tmp/khyve-migk-XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(key, sizeof(key), "%s/key", dir);
	bl_vm_make(&b, R0, R1);
	b.vm.vm_fd = VM_FD;
	b.vm.name = "mk";
	assert_int_equal(config_set(&b.cfg, "snapshot.key", key), 0);
	assert_int_equal(config_set(&b.cfg, "memory.size", "6M"), 0);
	data_pages = 0;
	for (uint64_t pg = 0; pg < NPAGES; pg += 5, data_pages++)
		memset(bl_page(&b, pg), (int)(pg % 200) + 1, BL_PAGE);
	fi_ioctl_fake(fake_ioctl);
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];

	fi_reset();
	fi_ioctl_fake(NULL);
	b.vm.vm_fd = -1;
	bl_vm_free(&b);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd);
}

/* The destination holds every page of the guest as it is now. */
static void check_received(struct bl_dest *d)
{
	static uint8_t buf[BL_PAGE], zero[BL_PAGE];

	for (uint64_t pg = 0; pg < NPAGES; pg++) {
		bool data = memcmp(bl_page(&b, pg), zero, BL_PAGE) != 0;

		if (data && (!bl_dest_page(d, pg, buf) || memcmp(buf, bl_page(&b, pg), BL_PAGE)))
			fail_msg("page %llu: not received as it is", (unsigned long long)pg);
	}
}

static int send_to(struct bl_dest *d, enum bl_answer a, struct migrate_result *res, char *err,
		   size_t errlen)
{
	int ret;

	bl_dest_start(d, false, NULL);
	d->answer = a;
	d->auth_cfg = &b.cfg;
	ret = migrate_send(&b.vm, d->addr, NULL, res, err, errlen);
	bl_dest_join(d);
	return ret;
}

/*
 * It runs there: the VM ends here as suspended.  What went was a whole snapshot (it finishes
 * and its every page is there), authenticated with this user's key.
 */
static void test_handed_over(void **state)
{
	struct migrate_result res;
	struct bl_dest d;
	char err[1024];
	unsigned fds = open_fds();

	assert_int_equal(send_to(&d, BL_RUN, &res, err, sizeof(err)), 0);
	assert_true(d.got_go);
	assert_int_equal(d.finish_ret, 0);
	assert_true(d.m.have_mac);
	assert_true(d.authentic);
	check_received(&d);
	assert_int_equal(atomic_load(&b.vm.exit_status), VM_EXIT_SUSPENDED);
	assert_int_equal(res.rounds, 1);
	assert_int_equal(res.mem_pages, data_pages);
	assert_true(res.bytes > data_pages * BL_PAGE);
	assert_true(res.downtime_ns > 0 && res.downtime_ns <= res.total_ns);
	bl_dest_free(&d);
	assert_int_equal(open_fds(), fds);
}

/* Refused, a wrong answer, none: before GO the guest runs here again, and it says why. */
static void test_not_handed_over(void **state)
{
	static const struct {
		enum bl_answer a;
		int ret;
		const char *msg;
	} kinds[] = {
		{ BL_REFUSE_READY, -ECONNREFUSED, "the destination refused the VM: no room" },
		{ BL_WRONG, -EPROTO, "the destination answered with a RUNNING frame" },
		{ BL_BIG, -EPROTO, "the destination did not answer: a MEM frame of 5000 bytes" },
		{ BL_CLOSE_END, -ECONNRESET,
		  "the destination did not answer: the connection was closed" },
		{ BL_REFUSE_GO, -ECONNREFUSED, "the destination refused the VM: cannot run it" },
	};
	unsigned fds = open_fds();

	for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
		struct migrate_result res;
		struct bl_dest d;
		char err[1024];
		int ret = send_to(&d, kinds[k].a, &res, err, sizeof(err));

		if (ret != kinds[k].ret || strcmp(err, kinds[k].msg))
			fail_msg("got %d '%s', wanted %d '%s'", ret, err, kinds[k].ret,
				 kinds[k].msg);
		assert_int_equal(d.finish_ret, 0);
		assert_false(b.vm.paused);
		assert_int_equal(atomic_load(&b.vm.exit_status), -1);
		bl_dest_free(&d);
		assert_int_equal(open_fds(), fds);
	}
}

/*
 * GO went out and nothing came back: the destination may run the guest, so the source must
 * not; it stays paused and says what to do.
 */
static void test_unconfirmed(void **state)
{
	struct migrate_result res;
	struct bl_dest d;
	char err[1024], ignore[64];

	assert_int_equal(send_to(&d, BL_CLOSE_GO, &res, err, sizeof(err)), -EINPROGRESS);
	assert_true(d.got_go);
	assert_non_null(strstr(err, "handed over, but the destination did not confirm it runs "
				    "the VM: the connection was closed; the VM stays paused here"));
	assert_true(b.vm.paused);
	assert_int_equal(atomic_load(&b.vm.exit_status), -1);
	bl_dest_free(&d);
	/* The operator's --resume. */
	assert_int_equal(snap_resume_vm(&b.vm, ignore, sizeof(ignore)), 0);
}

/*
 * Each write of the source failing in turn (HELLO, the sections, memory, AUTH, END, GO): the
 * source resumes and says why, or, once GO went, stays paused.
 */
static void test_write_sweep(void **state)
{
	struct migrate_result res;
	struct bl_dest d;
	char err[1024], ignore[64];
	unsigned total, failed = 0;

	fi_any_thread();
	fi_fail(FI_WRITEV, 1000000, EPIPE); /* never: counts the writes */
	assert_int_equal(send_to(&d, BL_RUN, &res, err, sizeof(err)), 0);
	total = fi_calls(FI_WRITEV);
	fi_reset();
	bl_dest_free(&d);
	/* Handed over, it stays paused here for good: as a new VM for the sweep. */
	assert_true(b.vm.paused);
	assert_int_equal(snap_resume_vm(&b.vm, ignore, sizeof(ignore)), 0);
	assert_true(total > 4);
	for (unsigned n = 1; n <= total; n++) {
		int ret;

		atomic_store(&b.vm.exit_status, -1);
		fi_fail(FI_WRITEV, n, EPIPE);
		ret = send_to(&d, BL_RUN, &res, err, sizeof(err));
		assert_true(fi_all_fired());
		fi_reset();
		bl_dest_free(&d);
		if (ret == -EINPROGRESS) {
			assert_true(b.vm.paused);
			assert_int_equal(snap_resume_vm(&b.vm, ignore, sizeof(ignore)), 0);
			continue;
		}
		if (!ret)
			fail_msg("write %u of %u failing: the migration succeeded", n, total);
		assert_true(err[0]);
		assert_false(b.vm.paused);
		assert_int_equal(atomic_load(&b.vm.exit_status), -1);
		failed++;
	}
	assert_true(failed >= total - 1);
}

/* ---- live: the final pause, to the end ---- */

/* After each round the guest writes every other page of 600: the final pause sends them. */
static bool idle_guest;

static void write_after_round(void *opaque, unsigned round, const struct mig_round *r,
			      uint64_t estimate_ns)
{
	if (idle_guest)
		return;
	for (uint64_t pg = 1; pg < 1200; pg += 2)
		memset(bl_page(&b, pg), (int)(round + pg) % 250 + 1, BL_PAGE);
}

struct live {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
	int ret;
	struct migrate_result res;
	char err[1024];
	const char *addr;
};

static void live_done(void *opaque, int ret, const struct migrate_result *res, const char *err)
{
	struct live *l = opaque;

	pthread_mutex_lock(&l->lock);
	l->ret = ret;
	l->res = *res;
	snprintf(l->err, sizeof(l->err), "%s", err ? err : "");
	l->done = true;
	pthread_cond_broadcast(&l->cond);
	pthread_mutex_unlock(&l->lock);
}

static void live_start(void *opaque)
{
	struct mig_policy p = { .max_downtime_ns = 1000 * MS, .max_rounds = 5 };
	struct live *l = opaque;
	char err[512];

	if (migrate_live_start(&b.vm, l->addr, &p, write_after_round, live_done, l, err,
			       sizeof(err)))
		fail_msg("%s", err);
}

/* A live migration to a destination that runs the guest after it, started and ended. */
static void handed_over(struct live *l, struct bl_dest *d)
{
	bl_dest_start(d, false, NULL);
	d->answer = BL_RUN;
	l->addr = d->addr;
	evloop_call(&b.vm.ev, live_start, l);
	pthread_mutex_lock(&l->lock);
	while (!l->done)
		pthread_cond_wait(&l->cond, &l->lock);
	pthread_mutex_unlock(&l->lock);
	bl_dest_join(d);
}

/*
 * Live, handed over: the rounds, then the final pause sends the pages written since the last
 * one (hundreds of runs: more than one write of iovecs) straight from guest memory; the
 * destination holds the guest as it is at the end; the VM ends here.
 */
static void test_live_handed_over(void **state)
{
	struct live l = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };
	struct bl_dest d;
	unsigned fds = open_fds();

	handed_over(&l, &d);
	if (l.ret)
		fail_msg("%d '%s'", l.ret, l.err);
	assert_int_equal(d.finish_ret, 0);
	check_received(&d);
	assert_int_equal(atomic_load(&b.vm.exit_status), VM_EXIT_SUSPENDED);
	assert_true(l.res.rounds >= 2);
	assert_int_equal(l.res.final_pages, 600);
	assert_int_equal(l.res.mem_pages, l.res.precopy_pages + l.res.final_pages);
	assert_non_null(l.res.converged);
	bl_dest_free(&d);
	/* The loop thread frees the migration right after its reply. */
	for (unsigned i = 0; b.vm.migration && i < 10000; i++)
		usleep(1000);
	assert_null(b.vm.migration);
	assert_int_equal(dirty_clients(&b.vm), 0);
	assert_int_equal(open_fds(), fds);
}

/* An idle guest: one round, nothing dirty in the final pause, handed over all the same. */
static void test_live_idle_handed_over(void **state)
{
	struct live l = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };
	struct bl_dest d;

	idle_guest = true;
	handed_over(&l, &d);
	idle_guest = false;
	if (l.ret)
		fail_msg("%d '%s'", l.ret, l.err);
	assert_int_equal(l.res.rounds, 2); /* the pre-copy round and the final pause */
	assert_int_equal(l.res.final_pages, 0);
	assert_int_equal(l.res.precopy_pages, data_pages);
	check_received(&d);
	assert_int_equal(atomic_load(&b.vm.exit_status), VM_EXIT_SUSPENDED);
	bl_dest_free(&d);
	for (unsigned i = 0; b.vm.migration && i < 10000; i++)
		usleep(1000);
	assert_null(b.vm.migration);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_handed_over, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_handed_over, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unconfirmed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_sweep, setup, teardown),
		cmocka_unit_test_setup_teardown(test_live_handed_over, setup, teardown),
		cmocka_unit_test_setup_teardown(test_live_idle_handed_over, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
