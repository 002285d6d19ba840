// SPDX-License-Identifier: BSD-2-Clause
/*
 * Guest RAM for unit tests of the live savers (test_live, test_livecopy): two anonymous
 * regions, the first at 0 and the second at 4 GiB, with pages numbered across both, and the
 * pattern the tests write into a page, and the _faults tests' RAM and writer.
 */
#ifndef KHYVE_TESTS_TWORAM_H
#define KHYVE_TESTS_TWORAM_H

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "snap/format.h"
#include "vm.h"

/* @vm cleared, then regions of @r0 and @r1 bytes (whole pages). */
static inline int tworam_make(struct vm *vm, uint64_t r0, uint64_t r1)
{
	memset(vm, 0, sizeof(*vm));
	for (unsigned i = 0; i < 2; i++) {
		uint64_t size = i ? r1 : r0;
		/* Mapped as khyve maps guest RAM (no transparent huge pages, vm.h). */
		void *p = vm_map_aligned(size, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

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

/*
 * Page @pg written whole: each 64-bit word is @pg times an odd constant, xor @tag, xor its
 * index, so every page differs, and (through @tag) every generation of it.
 */
static inline void tworam_fill(const struct vm *vm, uint64_t pg, uint64_t tag)
{
	uint64_t *p = (uint64_t *)tworam_page(vm, pg);

	for (unsigned i = 0; i < 4096 / 8; i++)
		p[i] = pg * 0x9e3779b97f4a7c15ULL ^ tag ^ i;
}

/*
 * The _faults tests' set-up: @vm's RAM with every other page at generation 1 of @fill (more
 * runs of pages than one pagemap read returns), and @w open on "@name.PID" (in @path) for a
 * checkpoint of it.
 */
static inline void tworam_setup_writer(struct vm *vm, uint64_t r0, uint64_t r1,
				       void (*fill)(uint64_t pg, unsigned gen),
				       struct snap_writer *w, char *path, size_t pathlen,
				       const char *name)
{
	char err[256];

	assert_int_equal(tworam_make(vm, r0, r1), 0);
	for (uint64_t pg = 0; pg < (r0 + r1) / 4096; pg += 2)
		fill(pg, 1);
	snprintf(path, pathlen, "%s.%d", name, (int)getpid());
	assert_int_equal(snap_writer_open(w, path, r0 + r1, err, sizeof(err)), 0);
}

#endif
