// SPDX-License-Identifier: BSD-2-Clause
/*
 * Restore prefetch (snap/prefetch.c) with host failures injected (tests/faultinj.h): its
 * allocations (refused with -ENOMEM, no thread, nothing leaked), a populate interrupted or
 * asked to try again (retried: every byte is still prefetched), a populate this kernel does
 * not have (the prefetch ends at once; the guest's own faults bring the pages in).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include <cmocka.h>

#include "faultinj.h"
#include "snap/memory.h"
#include "snap/prefetch.h"
#include "vm.h"

#define CHUNK SNAP_PREFETCH_CHUNK
#define RAM (4 * CHUNK)

static uint8_t *ram;

static int setup(void **state)
{
	fi_reset();
	ram = mmap(NULL, RAM, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(ram != MAP_FAILED);
	return 0;
}

static int teardown(void **state)
{
	fi_reset();
	munmap(ram, RAM);
	return 0;
}

static void test_alloc_fails(void **state)
{
	struct snap_prefetch_range r = { ram, RAM };
	struct mem_backing b = { .nextents = 1 };
	struct snap_prefetch *p;
	struct vm vm;

	fi_fail(FI_CALLOC, 1, ENOMEM);
	assert_int_equal(snap_prefetch_start(SNAP_PREFETCH_READ, &r, 1, &p), -ENOMEM);
	assert_null(p);
	fi_fail(FI_MALLOC, 1, ENOMEM);
	assert_int_equal(snap_prefetch_start(SNAP_PREFETCH_READ, &r, 1, &p), -ENOMEM);
	assert_null(p);
	assert_true(fi_all_fired());
	fi_reset();
	/* A restored VM's: the list of its ranges. */
	memset(&vm, 0, sizeof(vm));
	vm.mem[0] = (struct mem_region){ 0, RAM, ram, 0 };
	vm.nmem = 1;
	b.extents = &(struct snap_extent){ 4096, CHUNK, 0 };
	b.region_file_offset[0] = 4096;
	vm.backing = &b;
	fi_fail(FI_CALLOC, 1, ENOMEM);
	assert_int_equal(snap_prefetch_vm(&vm, SNAP_PREFETCH_WRITE), -ENOMEM);
	assert_true(fi_all_fired());
	fi_reset();
	assert_null(vm.prefetch);
	/* Without failures: the one extent, written ahead. */
	assert_int_equal(snap_prefetch_vm(&vm, SNAP_PREFETCH_WRITE), 0);
	snap_prefetch_wait(vm.prefetch);
	assert_int_equal(snap_prefetch_bytes(vm.prefetch), CHUNK);
	snap_prefetch_vm_stop(&vm);
	assert_null(vm.prefetch);
}

/* Interrupted, or to be tried again: every chunk is still prefetched. */
static void test_retried(void **state)
{
	struct snap_prefetch_range r = { ram, RAM };
	struct snap_prefetch *p;

	fi_any_thread();
	fi_eintr(FI_MADVISE, 1);
	fi_fail(FI_MADVISE, 3, EAGAIN);
	assert_int_equal(snap_prefetch_start(SNAP_PREFETCH_READ, &r, 1, &p), 0);
	snap_prefetch_wait(p);
	assert_true(fi_all_fired());
	assert_int_equal(fi_hits(FI_MADVISE), 2);
	assert_int_equal(fi_calls(FI_MADVISE), RAM / CHUNK + 2);
	fi_reset();
	assert_int_equal(snap_prefetch_bytes(p), RAM);
	snap_prefetch_stop(p);
}

/* No MADV_POPULATE_* here (EINVAL): the prefetch ends at its first chunk, finished. */
static void test_no_populate(void **state)
{
	struct snap_prefetch_range r = { ram, RAM };
	struct snap_prefetch *p;

	fi_any_thread();
	fi_fail(FI_MADVISE, 1, EINVAL);
	assert_int_equal(snap_prefetch_start(SNAP_PREFETCH_WRITE, &r, 1, &p), 0);
	snap_prefetch_wait(p);
	assert_true(fi_all_fired());
	assert_int_equal(fi_calls(FI_MADVISE), 1);
	fi_reset();
	assert_true(snap_prefetch_finished(p));
	assert_int_equal(snap_prefetch_bytes(p), 0);
	snap_prefetch_stop(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_alloc_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_retried, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_populate, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
