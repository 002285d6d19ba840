/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The PAGEMAP_SCAN ioctl of /proc/self/pagemap (Linux 6.7, linux/fs.h), for build hosts whose
 * headers are older than the kernel khyve runs on: the kernel ABI, defined only if missing
 * (linux/fs.h is not included: it clashes with glibc's sys/mount.h).
 */
#ifndef KHYVE_SNAP_PAGEMAP_H
#define KHYVE_SNAP_PAGEMAP_H

#include <stdint.h>
#include <sys/ioctl.h>

#ifndef PAGEMAP_SCAN
struct page_region {
	uint64_t start, end, categories;
};
struct pm_scan_arg {
	uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
	uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};
#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#define PM_SCAN_WP_MATCHING (1 << 0)
#define PM_SCAN_CHECK_WPASYNC (1 << 1)
#define PAGE_IS_WRITTEN (1 << 1)
#define PAGE_IS_PRESENT (1 << 3)
#define PAGE_IS_SWAPPED (1 << 4)
#endif

#endif
