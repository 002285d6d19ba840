// SPDX-License-Identifier: BSD-2-Clause
/*
 * Live checkpoints' memory (snap/live.c) on plain memory laid out as guest RAM (tworam.h),
 * with host failures injected (tests/faultinj.h): the allocations, the pagemap, the
 * userfaultfd's API, registration and write-protection before and in the pause, the writer's
 * own unprotect of a page the guest wrote before the pause, the writer's pagemap reads and
 * file writes, the memory map's allocations.  Each is refused with its message ("checkpoint
 * without --live" where the host cannot do it), and after it every page of RAM is writable
 * again: the guest is never left waiting on a page.  Interrupted calls are retried; a writer
 * cancelled before it starts saves nothing; a kept userfaultfd serves one checkpoint after
 * another.  Skipped where this process has no userfaultfd write-protection (as test_live is).
 */
#include <errno.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cmocka.h>

#include "faultinj.h"
#include "livesync.h"
#include "snap/format.h"
#include "snap/live.h"
#include "snap/pagemap.h"
#include "tworam.h"
#include "vm.h"

#define PG 4096ULL
#define R0 (8 * 1024 * 1024ULL) /* every other page written: more runs than 1024 */
#define R1 (2 * 1024 * 1024ULL)
#define NPAGES ((R0 + R1) / PG)

static struct vm vm;
static char path[64];
static struct snap_writer w;

static void fill(uint64_t pg, unsigned gen)
{
	tworam_fill(&vm, pg, (uint64_t)gen << 56);
}

static bool have_live;

static int setup(void **state)
{
	fi_reset();
	tworam_setup_writer(&vm, R0, R1, fill, &w, path, sizeof(path), "/tmp/khyve-test-livef");
	return 0;
}

static int teardown(void **state)
{
	fi_reset();
	snap_writer_abort(&w);
	tworam_free(&vm);
	return 0;
}

/* Whether this process can write-protect RAM with userfaultfd at all; else skip. */
static void need_live(void)
{
	struct snap_live *l;
	char err[256];
	int ret;

	if (have_live)
		return;
	ret = snap_live_prearm(&vm, &w, &l, err, sizeof(err));
	if (ret) {
		print_message("no live checkpoint here: %s\n", err);
		skip();
	}
	snap_live_free(l);
	have_live = true;
}

/* Every page takes a write: nothing is protected any more (a write would hang). */
static void check_writable(void)
{
	for (uint64_t pg = 0; pg < NPAGES; pg++)
		fill(pg, 9);
	assert_true(*(uint64_t *)tworam_page(&vm, NPAGES - 1) ==
		    ((NPAGES - 1) * 0x9e3779b97f4a7c15ULL ^ 9ULL << 56));
}

/* snap_live_prearm fails with @want and a message holding @msg; RAM is writable after it. */
static void prearm_fails(int want, const char *msg)
{
	struct snap_live *l = (struct snap_live *)&l;
	char err[256] = "";
	int ret = snap_live_prearm(&vm, &w, &l, err, sizeof(err));

	if (ret != want || !strstr(err, msg))
		fail_msg("got %d '%s', wanted %d '%s'", ret, err, want, msg);
	assert_true(fi_all_fired());
	fi_reset();
	check_writable();
}

static void test_prearm_fails(void **state)
{
	need_live();
	/* Its state, each region's bitmap of pages saved. */
	for (unsigned n = 1; n <= 3; n++) {
		fi_fail(FI_CALLOC, n, ENOMEM);
		prearm_fails(-ENOMEM, "");
	}
	fi_fail(FI_OPEN, 1, EACCES);
	prearm_fails(-EACCES, "/proc/self/pagemap: Permission denied: checkpoint without --live");
	fi_ioctl_fail(UFFDIO_API, 1, EINVAL);
	prearm_fails(-EINVAL, "userfaultfd: Invalid argument: checkpoint without --live");
	/* The first region, then the second (the first is handed back). */
	fi_ioctl_fail(UFFDIO_REGISTER, 1, EINVAL);
	prearm_fails(-EINVAL,
		     "userfaultfd cannot write-protect guest memory here (Invalid argument): "
		     "checkpoint without --live");
	fi_ioctl_fail(UFFDIO_REGISTER, 2, EPERM);
	prearm_fails(-EPERM, "userfaultfd cannot write-protect guest memory here");
	/* Protecting RAM, the first time or when a round protects what was written again. */
	fi_ioctl_fail(UFFDIO_WRITEPROTECT, 2, ENOMEM);
	prearm_fails(-ENOMEM, "write-protecting guest memory: Cannot allocate memory");
	fi_ioctl_fail(PAGEMAP_SCAN, 1, EIO);
	prearm_fails(-EIO, "write-protecting guest memory: Input/output error");
}

/* Interrupted write-protection and scans are retried; the checkpoint goes on. */
static void test_prearm_interrupted(void **state)
{
	struct snap_live *l;
	char err[256];

	need_live();
	fi_ioctl_fail(UFFDIO_WRITEPROTECT, 1, EINTR);
	fi_ioctl_fail(UFFDIO_WRITEPROTECT, 2, EAGAIN);
	fi_ioctl_fail(PAGEMAP_SCAN, 1, EAGAIN);
	assert_int_equal(snap_live_prearm(&vm, &w, &l, err, sizeof(err)), 0);
	assert_true(fi_all_fired());
	fi_reset();
	fi_ioctl_fail(PAGEMAP_SCAN, 1, EINTR);
	assert_int_equal(snap_live_arm(l, err, sizeof(err)), 0);
	assert_true(fi_all_fired());
	fi_reset();
	snap_live_free(l);
	check_writable();
}

/* The pause's scan fails: the pause says so; freed, the checkpoint leaves RAM writable. */
static void test_arm_fails(void **state)
{
	struct snap_live *l;
	char err[256];

	need_live();
	assert_int_equal(snap_live_prearm(&vm, &w, &l, err, sizeof(err)), 0);
	fill(10, 2); /* written before the pause: protected again by it */
	fi_ioctl_fail(PAGEMAP_SCAN, 1, EFAULT);
	assert_int_equal(snap_live_arm(l, err, sizeof(err)), -EFAULT);
	assert_string_equal(err, "write-protecting guest memory: Bad address");
	assert_true(fi_all_fired());
	fi_reset();
	snap_live_free(l);
	check_writable();
	/* The scan finds the page written, but it cannot be protected again. */
	assert_int_equal(snap_live_prearm(&vm, &w, &l, err, sizeof(err)), 0);
	fill(10, 3);
	fi_ioctl_fail(UFFDIO_WRITEPROTECT, 1, ENOSPC);
	assert_int_equal(snap_live_arm(l, err, sizeof(err)), -ENOSPC);
	assert_string_equal(err, "write-protecting guest memory: No space left on device");
	assert_true(fi_all_fired());
	fi_reset();
	snap_live_free(l);
	check_writable();
}

/* Wait (without a deadline to meet) until the rules set have fired on the writer's thread. */
static void wait_fired(void)
{
	for (unsigned i = 0; !fi_all_fired(); i++) {
		if (i == 10000)
			fail_msg("the writer never read its userfaultfd");
		usleep(1000);
	}
}

/*
 * Before the pause, the writer cannot read its userfaultfd: it makes all of RAM writable and
 * the pause reports it.  An interrupted read is read again.
 */
static void test_prearm_read_fails(void **state)
{
	struct snap_live *l;
	char err[256];

	need_live();
	assert_int_equal(snap_live_prearm(&vm, &w, &l, err, sizeof(err)), 0);
	fi_any_thread();
	fi_eintr(FI_READ, 1);
	wait_fired();
	fi_reset();
	fill(30, 2);
	fi_any_thread();
	fi_fail(FI_READ, 1, EIO);
	wait_fired();
	fi_reset();
	fill(31, 2);
	assert_int_equal(snap_live_arm(l, err, sizeof(err)), -EIO);
	assert_string_equal(err, "write-protecting guest memory: Input/output error");
	snap_live_free(l);
	check_writable();
}

/*
 * Before the pause, the writer cannot make a page the guest writes writable again: it makes
 * all of RAM writable (the guest's write goes on, and every one after it), and the pause
 * reports the failure instead of a checkpoint that missed that write.
 */
static void test_prearm_fault_fails(void **state)
{
	struct snap_live *l;
	char err[256];

	need_live();
	assert_int_equal(snap_live_prearm(&vm, &w, &l, err, sizeof(err)), 0);
	fi_any_thread();
	fi_ioctl_fail(UFFDIO_WRITEPROTECT, 1, ENOMEM);
	fill(20, 2); /* waits for the writer, which fails to let it go, and releases RAM */
	assert_true(fi_all_fired());
	fi_reset();
	fill(21, 2);
	assert_int_equal(snap_live_arm(l, err, sizeof(err)), -ENOMEM);
	assert_string_equal(err, "write-protecting guest memory: Cannot allocate memory");
	snap_live_free(l);
	check_writable();
}

static struct ls_flag done = LS_FLAG_INIT; /* the writer's end */

/* A checkpoint from prearm to the writer's end; snap_live_result's return (message in @err). */
static int checkpoint(struct snap_live **lp, struct snap_file *map, struct snap_result *res,
		      bool cancel, char *err, size_t errlen)
{
	struct snap_live *l;

	assert_int_equal(snap_live_prearm(&vm, &w, &l, err, errlen), 0);
	assert_int_equal(snap_live_arm(l, err, errlen), 0);
	if (cancel)
		snap_live_cancel(l);
	done.up = false;
	assert_int_equal(snap_live_start(l, ls_raise, &done), 0);
	ls_wait(&done);
	*lp = l;
	memset(map, 0, sizeof(*map));
	return snap_live_result(l, map, res, err, errlen);
}

/*
 * The writer's pagemap reads (failed, short), its writes to the file, its extent list, a
 * cancel before it started: each ends the checkpoint with the writer's message, and RAM is
 * writable at once (the writer let go of it before it reported).
 */
static void test_writer_fails(void **state)
{
	static const struct {
		enum fi_call c;
		int err; /* 0: a short call */
		int want;
		const char *msg;
	} kinds[] = {
		{ FI_PREAD, EIO, -EIO, "saving guest memory: Input/output error" },
		{ FI_PREAD, 0, -EIO, "saving guest memory: Input/output error" },
		{ FI_PWRITE, ENOSPC, -ENOSPC, "saving guest memory: No space left on device" },
		{ FI_REALLOC, ENOMEM, -ENOMEM, "saving guest memory: Cannot allocate memory" },
	};
	struct snap_result res = { 0 };
	struct snap_file map;
	struct snap_live *l;
	char err[256];

	need_live();
	for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
		fi_any_thread();
		if (kinds[k].err)
			fi_fail(kinds[k].c, 1, kinds[k].err);
		else
			fi_short(kinds[k].c, 1);
		assert_int_equal(checkpoint(&l, &map, &res, false, err, sizeof(err)),
				 kinds[k].want);
		assert_string_equal(err, kinds[k].msg);
		assert_true(fi_all_fired());
		fi_reset();
		check_writable();
		snap_live_free(l);
	}
	assert_int_equal(checkpoint(&l, &map, &res, true, err, sizeof(err)), -ECANCELED);
	assert_string_equal(err, "saving guest memory: Operation canceled");
	check_writable();
	snap_live_free(l);
	/* The memory map's extents, once every page is saved. */
	fi_any_thread();
	fi_fail(FI_CALLOC, 1, ENOMEM);
	fi_suspend(true);
	assert_int_equal(snap_live_prearm(&vm, &w, &l, err, sizeof(err)), 0);
	assert_int_equal(snap_live_arm(l, err, sizeof(err)), 0);
	done.up = false;
	assert_int_equal(snap_live_start(l, ls_raise, &done), 0);
	ls_wait(&done);
	fi_suspend(false);
	memset(&map, 0, sizeof(map));
	assert_int_equal(snap_live_result(l, &map, &res, err, sizeof(err)), -ENOMEM);
	assert_true(fi_all_fired());
	fi_reset();
	snap_live_free(l);
	check_writable();
}

/* A kept userfaultfd (khyve before it gives up root) serves checkpoint after checkpoint. */
static void test_kept_uffd(void **state)
{
	struct snap_result res = { 0 };
	struct snap_file map;
	struct snap_live *l;
	char err[256];

	need_live();
	snap_live_keep_uffd();
	snap_live_keep_uffd(); /* once only */
	for (int i = 0; i < 2; i++) {
		assert_int_equal(checkpoint(&l, &map, &res, false, err, sizeof(err)), 0);
		/* Every other page was written (setup), then every page (check_writable). */
		assert_int_equal(res.mem_pages, i ? NPAGES : NPAGES / 2);
		free(map.extents);
		snap_live_free(l);
		check_writable();
	}
}

/* ---- a guest write that waits for the writer ---- */

/*
 * A write waits for the writer, which cannot save its page (the file is full): the checkpoint
 * fails with that, and the write goes on (every page writable again).
 */
static void test_fault_save_fails(void **state)
{
	struct snap_result res = { 0 };
	struct snap_file map = { 0 };
	struct snap_live *l;
	struct gwrite g;
	char err[256];

	need_live();
	assert_int_equal(snap_live_prearm(&vm, &w, &l, err, sizeof(err)), 0);
	assert_int_equal(snap_live_arm(l, err, sizeof(err)), 0);
	gwrite_start(&g, fill, 40, 5);
	fi_any_thread();
	fi_fail(FI_PWRITE, 1, ENOSPC); /* the writer saves the waiting page first */
	done.up = false;
	assert_int_equal(snap_live_start(l, ls_raise, &done), 0);
	ls_wait(&done);
	pthread_join(g.thread, NULL);
	assert_true(fi_all_fired());
	fi_reset();
	assert_int_equal(snap_live_result(l, &map, &res, err, sizeof(err)), -ENOSPC);
	assert_string_equal(err, "saving guest memory: No space left on device");
	snap_live_free(l);
	check_writable();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_prearm_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_prearm_interrupted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_arm_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_prearm_fault_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_prearm_read_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_writer_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fault_save_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_kept_uffd, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
