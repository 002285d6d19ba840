// SPDX-License-Identifier: BSD-2-Clause
/*
 * Dirty-page tracking (snap/dirty.c) with host failures injected (tests/faultinj.h): a client
 * that cannot be made (no userfaultfd API, registration or write-protection refused, no
 * pagemap, no PAGEMAP_SCAN, an allocation failing) is refused with the error a caller acts on
 * (-EOPNOTSUPP where the kernel cannot track) and leaves no tracker behind, so the next client
 * tracks; interrupted ioctls are retried; a scan failing under a second client breaks the
 * tracker for every client (-EIO), and a later client is refused, never given a partial view.
 * The hand-over to a live checkpoint and back failing breaks it for good (-EIO) too.
 * Skipped where this kernel cannot track at all (as test_dirty is).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "faultinj.h"
#include "snap/dirty.h"
#include "snap/pagemap.h"
#include "vm.h"

#define PG 4096ULL
#define R0 (4 * 1024 * 1024ULL)
#define R1 (2 * 1024 * 1024ULL)
#define NPAGES ((R0 + R1) / PG)

static struct vm vm;
static uint64_t bm[NPAGES / 64];

static int setup(void **state)
{
	(void)state;
	fi_reset();
	memset(&vm, 0, sizeof(vm));
	for (unsigned i = 0; i < 2; i++) {
		uint64_t size = i ? R1 : R0;
		void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
			       0);

		assert_true(p != MAP_FAILED);
		vm.mem[i] = (struct mem_region){ i ? 0x100000000ULL : 0, size, p, i };
	}
	vm.nmem = 2;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	fi_reset();
	dirty_vm_free(&vm);
	for (unsigned i = 0; i < vm.nmem; i++)
		munmap(vm.mem[i].hva, vm.mem[i].size);
	return 0;
}

static uint8_t *page(uint64_t pg)
{
	return pg < R0 / PG ? (uint8_t *)vm.mem[0].hva + pg * PG
			    : (uint8_t *)vm.mem[1].hva + (pg - R0 / PG) * PG;
}

static bool bit(uint64_t pg)
{
	return bm[pg / 64] >> (pg % 64) & 1;
}

/* A client made now tracks: a write to @pg (in either region) is its only dirty page. */
static void expect_tracks(uint64_t pg)
{
	struct dirty_client *c;
	unsigned n = 0;

	assert_int_equal(dirty_client_new(&vm, &c), 0);
	assert_non_null(vm.dirty);
	*page(pg) = 0x42;
	assert_int_equal(dirty_client_fetch(c, bm, NPAGES), 0);
	for (size_t i = 0; i < NPAGES / 64; i++)
		n += (unsigned)__builtin_popcountll(bm[i]);
	assert_int_equal(n, 1);
	assert_true(bit(pg));
	dirty_client_free(c);
	assert_null(vm.dirty);
}

/* Whether this kernel tracks (userfaultfd write-protect, PAGEMAP_SCAN); else skip. */
static void need_tracking(void)
{
	struct dirty_client *c;
	int ret = dirty_client_new(&vm, &c);

	if (ret == -EOPNOTSUPP || ret == -EPERM || ret == -ENOSYS)
		skip();
	assert_int_equal(ret, 0);
	dirty_client_free(c);
}

/* One failure while making the first client: refused with @want, nothing left, then tracks. */
static void expect_refused_once(int want)
{
	struct dirty_client *c = (struct dirty_client *)&c;

	assert_int_equal(dirty_client_new(&vm, &c), want);
	assert_true(fi_all_fired());
	fi_reset();
	assert_null(c);
	assert_null(vm.dirty);
	expect_tracks(1024 + 7);
}

static void test_first_client_refused(void **state)
{
	(void)state;
	need_tracking();
	/* The userfaultfd API: EINVAL means no such feature (a kernel that cannot track). */
	fi_ioctl_fail(UFFDIO_API, 1, EINVAL);
	expect_refused_once(-EOPNOTSUPP);
	fi_ioctl_fail(UFFDIO_API, 1, EPERM); /* not allowed (a sysctl): cannot track either */
	expect_refused_once(-EOPNOTSUPP);
	/* Registration of the first or the second region. */
	fi_ioctl_fail(UFFDIO_REGISTER, 1, EINVAL);
	expect_refused_once(-EOPNOTSUPP);
	fi_ioctl_fail(UFFDIO_REGISTER, 2, ENOMEM);
	expect_refused_once(-ENOMEM);
	/* Write-protection refused. */
	fi_ioctl_fail(UFFDIO_WRITEPROTECT, 2, EFAULT);
	expect_refused_once(-EFAULT);
	/* No pagemap to scan. */
	fi_fail(FI_OPEN, 1, EACCES);
	expect_refused_once(-EACCES);
	/* No PAGEMAP_SCAN (an older kernel: ENOTTY) is "cannot track". */
	fi_ioctl_fail(PAGEMAP_SCAN, 1, ENOTTY);
	expect_refused_once(-EOPNOTSUPP);
	fi_ioctl_fail(PAGEMAP_SCAN, 1, EIO);
	expect_refused_once(-EIO);
	/* The client, the tracker, the client's bitmap. */
	for (unsigned n = 1; n <= 3; n++) {
		fi_fail(FI_CALLOC, n, ENOMEM);
		expect_refused_once(-ENOMEM);
	}
}

/* Interrupted write-protection and scans are retried: the client tracks as usual. */
static void test_interrupted_retried(void **state)
{
	struct dirty_client *c;

	(void)state;
	need_tracking();
	fi_ioctl_fail(UFFDIO_WRITEPROTECT, 1, EINTR);
	fi_ioctl_fail(UFFDIO_WRITEPROTECT, 2, EAGAIN);
	fi_ioctl_fail(PAGEMAP_SCAN, 1, EINTR);
	assert_int_equal(dirty_client_new(&vm, &c), 0);
	assert_true(fi_all_fired());
	fi_reset();
	*page(3) = 1;
	fi_ioctl_fail(PAGEMAP_SCAN, 1, EAGAIN);
	assert_int_equal(dirty_client_fetch(c, bm, NPAGES), 0);
	assert_true(fi_all_fired());
	fi_reset();
	assert_true(bit(3));
	dirty_client_free(c);
}

/*
 * A second client whose first scan fails: refused, and the tracker is broken for the first
 * client too (its writes since its last fetch are unknown); a third client is refused.  A
 * harvest by the first falls back to every touched page.
 */
static void test_broken_tracker(void **state)
{
	struct dirty_client *a, *b = NULL, *c = NULL;
	uint64_t count = 0;

	(void)state;
	need_tracking();
	assert_int_equal(dirty_client_new(&vm, &a), 0);
	*page(9) = 1;
	fi_ioctl_fail(PAGEMAP_SCAN, 1, EIO);
	assert_int_equal(dirty_client_new(&vm, &b), -EIO);
	assert_true(fi_all_fired());
	fi_reset();
	assert_null(b);
	assert_int_equal(dirty_client_new(&vm, &c), -EIO);
	assert_null(c);
	assert_int_equal(dirty_client_fetch(a, bm, NPAGES), -EIO);
	*page(1024 + 1) = 1;
	assert_int_equal(dirty_harvest(a, &vm, bm, NPAGES, &count), 0);
	assert_int_equal(count, 2); /* the two pages ever written */
	assert_true(bit(9));
	assert_true(bit(1024 + 1));
	dirty_client_free(a);
	assert_null(vm.dirty);
	expect_tracks(5);
}

/* A fetch of another size is refused without breaking the tracker; a failed scan breaks it. */
static void test_fetch_refused(void **state)
{
	struct dirty_client *a;

	(void)state;
	need_tracking();
	assert_int_equal(dirty_client_new(&vm, &a), 0);
	assert_int_equal(dirty_client_fetch(a, bm, NPAGES - 1), -EINVAL);
	*page(2) = 1;
	assert_int_equal(dirty_client_fetch(a, bm, NPAGES), 0);
	assert_true(bit(2));
	fi_ioctl_fail(PAGEMAP_SCAN, 1, EFAULT);
	assert_int_equal(dirty_client_fetch(a, bm, NPAGES), -EIO);
	fi_reset();
	assert_int_equal(dirty_client_fetch(a, bm, NPAGES), -EIO);
	dirty_client_free(a);
}

/* With the userfaultfd kept (khyve before it gives up root), clients use it and track. */
static void test_kept_uffd(void **state)
{
	(void)state;
	need_tracking();
	dirty_keep_uffd();
	dirty_keep_uffd(); /* once only */
	fi_reset();
	expect_tracks(100);
	/* The kept descriptor outlives each tracker: a second round tracks too. */
	expect_tracks(1024 + 100);
}

/*
 * The hand-over to a live checkpoint and back, failing: a scan that fails as RAM is handed
 * over, or when it is taken back (before or after it is protected again), or the protection
 * itself.  Each says so, and the tracker is broken for good (-EIO): its clients' fetches fail
 * (a harvest falls back to every touched page), never a partial view; a hand-over of a
 * broken tracker does nothing.  The next tracker, once these clients are gone, tracks.
 */
static void test_handover_fails(void **state)
{
	static const struct {
		bool suspend; /* fails as RAM is handed over, else when taken back */
		unsigned long req;
		unsigned nth;
		int err;
	} kinds[] = {
		{ true, PAGEMAP_SCAN, 1, EFAULT },
		{ false, PAGEMAP_SCAN, 1, EFAULT },    /* counting what is there */
		{ false, UFFDIO_REGISTER, 1, ENOMEM }, /* protecting it again */
		{ false, PAGEMAP_SCAN, 3, EFAULT },    /* counting what is present after */
	};
	struct dirty_client *c;
	uint64_t count = 0;

	(void)state;
	need_tracking();
	for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
		int ret;

		assert_int_equal(dirty_client_new(&vm, &c), 0);
		*page(4) = 1;
		if (!kinds[k].suspend)
			assert_int_equal(dirty_suspend(&vm), 0);
		/* Counted per region: the second region's scans come after the first's. */
		fi_ioctl_fail(kinds[k].req, kinds[k].nth, kinds[k].err);
		ret = kinds[k].suspend ? dirty_suspend(&vm) : dirty_resume(&vm);
		assert_int_equal(ret, -kinds[k].err);
		assert_true(fi_all_fired());
		fi_reset();
		if (kinds[k].suspend)
			assert_int_equal(dirty_resume(&vm), 0); /* broken: nothing to take back */
		assert_int_equal(dirty_client_fetch(c, bm, NPAGES), -EIO);
		assert_int_equal(dirty_suspend(&vm), 0);
		assert_int_equal(dirty_harvest(c, &vm, bm, NPAGES, &count), 0);
		assert_true(bit(4));
		dirty_client_free(c);
		assert_null(vm.dirty);
	}
	expect_tracks(1024 + 9);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_first_client_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_interrupted_retried, setup, teardown),
		cmocka_unit_test_setup_teardown(test_broken_tracker, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fetch_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_kept_uffd, setup, teardown),
		cmocka_unit_test_setup_teardown(test_handover_fails, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
