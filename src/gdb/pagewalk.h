/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Guest-virtual to guest-physical translation for the debugger, done in software from the
 * vCPU's control registers as the MMU would (Intel SDM vol. 3A, 4.3 32-bit paging, 4.4 PAE
 * paging, 4.5 4-level and 5-level paging): real mode and protected mode without paging are
 * the identity (on linear addresses), 32-bit paging with 4 MiB pages (PSE, PSE-36), PAE with
 * 2 MiB pages, 4- and 5-level paging with 2 MiB and 1 GiB pages.
 *
 * The page tables are guest memory: every entry is read through @read, which says whether the
 * guest-physical address is RAM, so a hostile table can only make a translation fail.  Access
 * rights (U/S, R/W, NX) are not checked: a debugger may look at any mapped page.
 */
#ifndef KHYVE_GDB_PAGEWALK_H
#define KHYVE_GDB_PAGEWALK_H

#include <stdint.h>

struct pw_cpu {
	uint64_t cr0, cr3, cr4, efer;
};

/* Read 8 bytes of guest-physical memory at @gpa: 0, or -1 when it is not RAM. */
typedef int (*pw_read_fn)(void *opaque, uint64_t gpa, uint64_t *val);

/*
 * Translate @gva: 0 with *@gpa, and in *@left the bytes from @gva to the end of its page (so
 * a caller walks again at each page); -EFAULT when it is not mapped (or not canonical).
 */
int pagewalk(const struct pw_cpu *cpu, pw_read_fn read, void *opaque, uint64_t gva, uint64_t *gpa,
	     uint64_t *left);

#endif
