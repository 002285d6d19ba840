// SPDX-License-Identifier: BSD-2-Clause
/*
 * Guest RAM for unit tests of the live savers (test_live, test_livecopy): two anonymous
 * regions, the first at 0 and the second at 4 GiB, with pages numbered across both.
 */
#ifndef KHYVE_TESTS_TWORAM_H
#define KHYVE_TESTS_TWORAM_H

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include "vm.h"

/* @vm cleared, then regions of @r0 and @r1 bytes (whole pages). */
static inline int tworam_make(struct vm *vm, uint64_t r0, uint64_t r1)
{
	memset(vm, 0, sizeof(*vm));
	for (unsigned i = 0; i < 2; i++) {
		uint64_t size = i ? r1 : r0;
		void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
			       0);

		if (p == MAP_FAILED)
			return -errno;
		vm->mem[i] = (struct mem_region){ i ? 0x100000000ULL : 0, size, p, i };
		vm->nmem = i + 1;
	}
	return 0;
}

static inline void tworam_free(struct vm *vm)
{
	for (unsigned i = 0; i < vm->nmem; i++)
		munmap(vm->mem[i].hva, vm->mem[i].size);
}

/* Page @pg of the two regions, counted from the first. */
static inline uint8_t *tworam_page(const struct vm *vm, uint64_t pg)
{
	uint64_t n0 = vm->mem[0].size / 4096;

	return pg < n0 ? (uint8_t *)vm->mem[0].hva + pg * 4096
		       : (uint8_t *)vm->mem[1].hva + (pg - n0) * 4096;
}

#endif
