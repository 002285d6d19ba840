// SPDX-License-Identifier: BSD-2-Clause
/*
 * Live migration's pre-copy rounds (snap/precopy.c) on a VM without KVM (barelive.h), with
 * host failures injected (tests/faultinj.h): the start's allocations, its eventfd, the
 * dirty-page tracking it cannot have, the sender thread's writes and its first look at the
 * page tables.  Each is refused with its message, and the source runs on with no thread, no
 * dirty-page client and no descriptor of the migration left.  A write that is interrupted is
 * retried.  Dirty-page tracking that breaks after the start makes every touched page count
 * as written each round: the rounds go on to the most there may be, auto-converge throttling
 * harder each time, and the destination still holds every page.
 */
#include <linux/userfaultfd.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "barelive.h"
#include "faultinj.h"
#include "openfds.h"
#include "snap/dirty.h"
#include "snap/pagemap.h"
#include "snap/precopy.h"

#define R0 (8ULL << 20)
#define R1 (2ULL << 20)
#define NPAGES ((R0 + R1) / BL_PAGE)
#define MS 1000000ULL

static struct bl_vm b;
static uint64_t data_pages;

/* Pages written in both regions, some cleared again; the count of those with data. */
static int setup(void **state)
{
	fi_reset();
	signal(SIGPIPE, SIG_IGN);
	bl_vm_make(&b, R0, R1);
	data_pages = 0;
	for (uint64_t pg = 0; pg < NPAGES; pg += 3) {
		uint64_t *p = (uint64_t *)bl_page(&b, pg);

		for (unsigned i = 0; i < BL_PAGE / 8; i++)
			p[i] = pg * 0x9e3779b97f4a7c15ULL ^ i;
		if (pg % 5 == 0)
			memset(p, 0, BL_PAGE);
		else
			data_pages++;
	}
	return 0;
}

static int teardown(void **state)
{
	fi_reset();
	bl_vm_free(&b);
	return 0;
}

static void check_source_runs(unsigned fds)
{
	assert_false(b.vm.paused);
	assert_null(b.vm.migration);
	assert_int_equal(dirty_clients(&b.vm), 0);
	assert_int_equal(b.vm.throttle_pct, 0);
	assert_int_equal(open_fds(), fds);
}

static const struct mig_policy pol = { .max_downtime_ns = 20 * MS, .max_rounds = 5 };

/* The fault of a start, set on the loop thread (where migrate_live_start runs). */
static enum fi_call start_call;
static unsigned start_nth;
static int start_err;

static void set_start_fault(struct bl_live *l)
{
	fi_fail(start_call, start_nth, start_err);
}

/* A start that fails: the message, and nothing made is left (the destination hears EOF). */
static void start_fails(enum fi_call c, unsigned nth, int err, int want, const char *msg)
{
	struct bl_live l = { .on_loop = set_start_fault };
	unsigned fds = open_fds();
	struct bl_dest d;
	int ret;

	start_call = c;
	start_nth = nth;
	start_err = err;
	bl_dest_start(&d, false, NULL);
	ret = bl_live_start(&l, &b, d.addr, &pol);
	if (ret != want || !strstr(l.start_err, msg))
		fail_msg("got %d '%s', wanted %d '%s'", ret, l.start_err, want, msg);
	assert_true(fi_all_fired());
	fi_reset();
	/* The destination may not have been connected to: now it is, and hears nothing more. */
	if (c != FI_MALLOC && c != FI_CALLOC && c != FI_EVENTFD)
		bl_dest_join(&d);
	else {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		struct sockaddr_in sin = { .sin_family = AF_INET,
					   .sin_addr.s_addr = htonl(0x7f000001) };

		sin.sin_port = htons((uint16_t)atoi(strchr(d.addr, ':') + 1));
		assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
		close(fd);
		bl_dest_join(&d);
	}
	bl_dest_free(&d);
	bl_live_free(&l);
	check_source_runs(fds);
}

static void test_start_fails(void **state)
{
	/* The migration, its bitmap (callocs); its bounce buffer (malloc); its eventfd. */
	start_fails(FI_CALLOC, 1, ENOMEM, -ENOMEM,
		    "starting the migration: Cannot allocate memory");
	start_fails(FI_CALLOC, 2, ENOMEM, -ENOMEM,
		    "starting the migration: Cannot allocate memory");
	start_fails(FI_MALLOC, 1, ENOMEM, -ENOMEM,
		    "starting the migration: Cannot allocate memory");
	start_fails(FI_EVENTFD, 1, EMFILE, -EMFILE, "starting the migration: Too many open files");
	/* HELLO not sent. */
	start_fails(FI_WRITEV, 1, EPIPE, -EPIPE, ": Broken pipe");
	/* No dirty-page tracking on this kernel (no userfaultfd write-protection). */
	start_fails(FI_IOCTL, 1, EINVAL, -EOPNOTSUPP,
		    "dirty-page tracking is not available (Operation not supported): migrate "
		    "without --live");
}

/* A fault on the sender thread's calls (every thread's, set on the loop thread). */
static enum fi_call thread_call;
static unsigned thread_nth;
static int thread_err;
static bool thread_eintr;

static void set_thread_fault(struct bl_live *l)
{
	fi_any_thread();
	if (thread_eintr)
		fi_eintr(thread_call, thread_nth);
	else
		fi_fail(thread_call, thread_nth, thread_err);
}

static void run_thread_fault(struct bl_live *l, struct bl_dest *d, enum fi_call c, unsigned nth,
			     int err, bool eintr)
{
	thread_call = c;
	thread_nth = nth;
	thread_err = err;
	thread_eintr = eintr;
	l->on_loop = set_thread_fault;
	bl_dest_start(d, false, "cut");
	assert_int_equal(bl_live_start(l, &b, d->addr, &pol), 0);
	bl_live_wait(l);
	assert_true(fi_all_fired());
	fi_reset();
	bl_dest_join(d);
}

/*
 * The sender thread's writes fail (the destination went away): the rounds end, the reply says
 * so in words, the source runs on.  Its first look at the page tables failing ends them too.
 */
static void test_sender_fails(void **state)
{
	static const struct {
		enum fi_call c;
		unsigned nth;
		int err;
		const char *msg;
	} kinds[] = {
		{ FI_WRITEV, 2, EPIPE, "the connection to the destination was closed" },
		{ FI_WRITEV, 2, ECONNRESET, "the connection to the destination was closed" },
		{ FI_WRITEV, 3, EIO, "Input/output error" },
		{ FI_PREAD, 1, EIO, "Input/output error" },
	};

	for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
		struct bl_live l = { 0 };
		unsigned fds = open_fds();
		struct bl_dest d;

		run_thread_fault(&l, &d, kinds[k].c, kinds[k].nth, kinds[k].err, false);
		assert_int_equal(l.ret, -kinds[k].err);
		assert_string_equal(l.err, kinds[k].msg);
		assert_int_equal(l.res.rounds, 0);
		assert_int_equal(l.progress, 0);
		/* The destination saw the stream end before END. */
		assert_int_equal(d.ret, -ECONNRESET);
		bl_dest_free(&d);
		bl_live_free(&l);
		check_source_runs(fds);
	}
}

/* An interrupted write is retried: the round goes whole, and only the final pause fails. */
static void test_sender_eintr(void **state)
{
	struct bl_live l = { 0 };
	unsigned fds = open_fds();
	struct bl_dest d;

	run_thread_fault(&l, &d, FI_WRITEV, 2, 0, true);
	assert_int_equal(l.ret, -EBADF);
	assert_non_null(strstr(l.err, "reading the KVM clock: "));
	assert_non_null(strstr(l.err, "; the destination refused the VM: cut"));
	assert_int_equal(l.res.rounds, 1);
	assert_int_equal(l.res.precopy_pages, data_pages);
	assert_int_equal(d.m.rounds, 1);
	bl_dest_free(&d);
	bl_live_free(&l);
	check_source_runs(fds);
}

static void break_tracking(struct bl_live *l)
{
	/* The tracker's first scan (one per region) works; every one after fails. */
	fi_any_thread();
	fi_ioctl_fail_from(PAGEMAP_SCAN, 3, EIO);
}

/*
 * Tracking breaks after the start: each harvest then counts every touched page as written
 * (always right, only larger).  No budget is met, so the rounds go on to max_rounds, and
 * auto-converge throttles from the second round on, harder each round.  Every round sends
 * the whole guest again; the destination holds it.
 */
static void test_broken_tracking(void **state)
{
	struct mig_policy p = { .max_downtime_ns = 1,
				.max_rounds = 4,
				.autoconverge = true,
				.throttle_initial = 20,
				.throttle_increment = 10 };
	struct bl_live l = { .on_loop = break_tracking };
	unsigned fds = open_fds();
	struct bl_dest d;

	bl_dest_start(&d, false, "cut");
	assert_int_equal(bl_live_start(&l, &b, d.addr, &p), 0);
	bl_live_wait(&l);
	assert_true(fi_all_fired());
	assert_int_equal(fi_hits(FI_IOCTL), 1); /* broken once, for good */
	fi_reset();
	bl_dest_join(&d);
	assert_int_equal(l.ret, -EBADF);
	assert_int_equal(l.res.rounds, 4);
	assert_string_equal(l.res.converged, "the most rounds");
	/* Round 2 left as much dirty as it sent: 20%; round 3 too: 30%; round 4 is the last. */
	assert_int_equal(l.res.throttle_pct, 30);
	assert_true(l.res.precopy_pages >= data_pages * 4);
	assert_int_equal(l.progress, 4);
	assert_true(l.progress_ok);
	assert_int_equal(d.m.rounds, 4);
	for (uint64_t pg = 0; pg < NPAGES; pg++) {
		static uint8_t buf[BL_PAGE], zero[BL_PAGE];
		bool data = memcmp(bl_page(&b, pg), zero, BL_PAGE) != 0;

		if (data && (!bl_dest_page(&d, pg, buf) || memcmp(buf, bl_page(&b, pg), BL_PAGE)))
			fail_msg("page %llu: not received as it is", (unsigned long long)pg);
	}
	bl_dest_free(&d);
	bl_live_free(&l);
	check_source_runs(fds);
}

/*
 * A round of more than the bounce buffer holds (8 MiB) writes as it goes: the first of those
 * writes failing ends the rounds at once.
 */
static void test_bounce_flush_fails(void **state)
{
	struct bl_live l = { 0 };
	unsigned fds = open_fds();
	struct bl_dest d;

	for (uint64_t pg = 0; pg < NPAGES; pg++)
		memset(bl_page(&b, pg), (int)(pg % 250) + 1, BL_PAGE);
	run_thread_fault(&l, &d, FI_WRITEV, 2, ECONNRESET, false);
	assert_int_equal(l.ret, -ECONNRESET);
	assert_string_equal(l.err, "the connection to the destination was closed");
	assert_int_equal(l.res.rounds, 0);
	assert_int_equal(d.mem, 0);
	bl_dest_free(&d);
	bl_live_free(&l);
	check_source_runs(fds);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_start_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sender_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sender_eintr, setup, teardown),
		cmocka_unit_test_setup_teardown(test_broken_tracking, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bounce_flush_fails, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
