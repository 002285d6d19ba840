// SPDX-License-Identifier: BSD-2-Clause
/*
 * The smallest guest a real VM of a unit test can boot (test_snapshot_faults,
 * test_migrate_faults, test_restore_fakekvm): a multiboot image with load addresses (the a.out
 * kludge) whose code at 1 MiB is `hlt; jmp back`, and the configuration of a VM that boots it.
 */
#ifndef KHYVE_TESTS_HLTGUEST_H
#define KHYVE_TESTS_HLTGUEST_H

#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

/* Write it to @path; 0, or -1 when the file could not be written. */
static inline int hltguest_write(const char *path)
{
	uint32_t h[8] = { 0x1BADB002, 0x00010000, 0, 0x100000, 0x100000, 0, 0, 0x100020 };
	uint8_t img[64] = { 0 };
	int fd, ok;

	h[2] = (uint32_t) - (h[0] + h[1]);
	memcpy(img, h, sizeof(h));
	img[32] = 0xf4; /* hlt */
	img[33] = 0xeb; /* jmp -3 */
	img[34] = 0xfd;
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		return -1;
	ok = write(fd, img, sizeof(img)) == (ssize_t)sizeof(img);
	return close(fd) == 0 && ok ? 0 : -1;
}

/*
 * @c (initialised here): a VM of one vCPU and 16 MiB booting the guest at @kernel, its
 * snapshots signed with the key at @key.  Include after <cmocka.h>.
 */
static inline void hltguest_config(struct config *c, const char *kernel, const char *key)
{
	config_init(c);
	assert_int_equal(config_set(c, "cpus", "1"), 0);
	assert_int_equal(config_set(c, "memory.size", "16M"), 0);
	assert_int_equal(config_set(c, "boot.kernel", kernel), 0);
	assert_int_equal(config_set(c, "snapshot.key", key), 0);
}

#endif
