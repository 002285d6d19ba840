// SPDX-License-Identifier: BSD-2-Clause
/*
 * virtio-blk on a failing host disk (tests/faultinj.h): a read, write, flush, discard or
 * write-zeroes the host refuses completes with VIRTIO_BLK_S_IOERR (the guest sees an I/O
 * error, khyve goes on), the image is not changed by a failed write, the next request works;
 * interrupted and short transfers are carried on; a host without fallocate gets its zeroes
 * written instead and its discards dropped.
 *
 * The driver side (a bare VM, the device in slot 3, rings in guest RAM) is test_virtio_blk.c's,
 * included here with its own main renamed.
 */
int test_virtio_blk_main(void);
#define main test_virtio_blk_main
#include "test_virtio_blk.c"
#undef main

#include "faultinj.h"

static void fault_setup_rules(void)
{
	fi_reset();
	/* The requests run on the device's worker threads. */
	fi_any_thread();
}

static void test_io_errors(void **state)
{
	struct tstate *t = *state;
	struct fx *f = &t->f;
	uint8_t *d = gpa(f, DATA_GPA, 64 * KiB), want[4096];

	/* A read the host fails: IOERR, then the same read works. */
	fault_setup_rules();
	fi_fail(FI_PREADV, 1, EIO);
	assert_int_equal(req(f, T_IN, 8, DATA_GPA, 4096, NULL), S_IOERR);
	assert_int_equal(fi_hits(FI_PREADV), 1);
	fi_reset();
	memset(d, 0, 4096);
	assert_int_equal(req(f, T_IN, 8, DATA_GPA, 4096, NULL), S_OK);
	assert_int_equal(d[0], 0x5A);

	/* A write the host fails (disk full): IOERR, the image unchanged. */
	pattern(want, sizeof(want), 3);
	memcpy(d, want, sizeof(want));
	fault_setup_rules();
	fi_fail(FI_PWRITEV, 1, ENOSPC);
	assert_int_equal(req(f, T_OUT, 16, DATA_GPA, 4096, NULL), S_IOERR);
	assert_true(fi_all_fired());
	assert_true(file_all(t->img, 16 * 512, 4096, 0x5A));
	fi_reset();
	assert_int_equal(req(f, T_OUT, 16, DATA_GPA, 4096, NULL), S_OK);
	assert_false(file_all(t->img, 16 * 512, 4096, 0x5A));

	/* A flush the host fails. */
	fault_setup_rules();
	fi_fail(FI_FDATASYNC, 1, EIO);
	assert_int_equal(req(f, T_FLUSH, 0, 0, 0, NULL), S_IOERR);
	assert_true(fi_all_fired());
	fi_reset();
	assert_int_equal(req(f, T_FLUSH, 0, 0, 0, NULL), S_OK);
}

/* Interrupted transfers are retried; the data is whole. */
static void test_interrupted(void **state)
{
	struct tstate *t = *state;
	struct fx *f = &t->f;
	uint8_t *d = gpa(f, DATA_GPA, 64 * KiB), want[8192], got[8192];

	pattern(want, sizeof(want), 4);
	memcpy(d, want, sizeof(want));
	fault_setup_rules();
	fi_eintr(FI_PWRITEV, 1);
	assert_int_equal(req(f, T_OUT, 32, DATA_GPA, 8192, NULL), S_OK);
	assert_int_equal(fi_hits(FI_PWRITEV), 1);
	file_read(t->img, 32 * 512, got, sizeof(got));
	assert_memory_equal(got, want, sizeof(want));
	memset(d, 0, sizeof(want));
	fault_setup_rules();
	fi_eintr(FI_PREADV, 1);
	assert_int_equal(req(f, T_IN, 32, DATA_GPA, 8192, NULL), S_OK);
	assert_int_equal(fi_hits(FI_PREADV), 1);
	assert_memory_equal(d, want, sizeof(want));
}

/*
 * Discard and write-zeroes: a host that cannot punch holes or zero ranges (EOPNOTSUPP) still
 * zeroes (written out) and drops the discard (only a hint); a real failure is IOERR.
 */
static void test_fallocate_faults(void **state)
{
	struct tstate *t = *state;
	struct fx *f = &t->f;

	fault_setup_rules();
	fi_fail_from(FI_FALLOCATE, 1, EOPNOTSUPP);
	assert_int_equal(seg_req(f, T_WRITE_ZEROES, (uint64_t[]){ 100 }, (uint32_t[]){ 8 },
				 (uint32_t[]){ 1 }, 1, 0),
			 S_OK);
	assert_true(fi_calls(FI_FALLOCATE) >= 1);
	assert_true(file_all(t->img, 100 * 512, 8 * 512, 0));
	assert_true(file_all(t->img, 108 * 512, 512, 0x5A));
	assert_int_equal(seg_req(f, T_DISCARD, (uint64_t[]){ 200 }, (uint32_t[]){ 8 },
				 (uint32_t[]){ 0 }, 1, 0),
			 S_OK);
	/* Dropped: the data is still there. */
	assert_true(file_all(t->img, 200 * 512, 8 * 512, 0x5A));

	/* The slow path's write failing, and fallocate failing for real. */
	fault_setup_rules();
	fi_fail_from(FI_FALLOCATE, 1, EOPNOTSUPP);
	fi_fail(FI_PWRITEV, 1, EIO);
	assert_int_equal(seg_req(f, T_WRITE_ZEROES, (uint64_t[]){ 300 }, (uint32_t[]){ 8 },
				 (uint32_t[]){ 0 }, 1, 0),
			 S_IOERR);
	fault_setup_rules();
	fi_fail(FI_FALLOCATE, 1, EIO);
	assert_int_equal(seg_req(f, T_DISCARD, (uint64_t[]){ 300 }, (uint32_t[]){ 8 },
				 (uint32_t[]){ 0 }, 1, 0),
			 S_IOERR);
	fault_setup_rules();
	fi_fail(FI_FALLOCATE, 1, ENOSPC);
	assert_int_equal(seg_req(f, T_WRITE_ZEROES, (uint64_t[]){ 300 }, (uint32_t[]){ 8 },
				 (uint32_t[]){ 1 }, 1, 0),
			 S_IOERR);
	assert_true(file_all(t->img, 300 * 512, 8 * 512, 0x5A));
	fi_reset();
	assert_int_equal(seg_req(f, T_WRITE_ZEROES, (uint64_t[]){ 300 }, (uint32_t[]){ 8 },
				 (uint32_t[]){ 0 }, 1, 0),
			 S_OK);
	assert_true(file_all(t->img, 300 * 512, 8 * 512, 0));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_io_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_interrupted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fallocate_faults, setup, teardown),
	};

	(void)test_virtio_blk_main;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
