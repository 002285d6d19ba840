// SPDX-License-Identifier: BSD-2-Clause
/*
 * TCP on the loopback for the migration tests (test_migrate*, test_precopy, barelive.h): a
 * port to give the destination, and reading a whole frame from a peer.
 */
#ifndef KHYVE_TESTS_LOOPSOCK_H
#define KHYVE_TESTS_LOOPSOCK_H

#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

/*
 * "127.0.0.1:PORT" in @addr, a TCP port of the loopback that nothing listens on (one just
 * freed; the destination binds it with SO_REUSEADDR).
 */
static inline void lo_free_addr(char *addr, size_t len)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001) };
	socklen_t slen = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &slen), 0);
	close(fd);
	snprintf(addr, len, "127.0.0.1:%u", ntohs(sin.sin_port));
}

/* @n bytes from @fd into @buf: false at the end of the stream or on an error first. */
static inline bool lo_read_all(int fd, void *buf, size_t n)
{
	uint8_t *p = buf;

	while (n) {
		ssize_t r = read(fd, p, n);

		if (r <= 0)
			return false;
		p += r;
		n -= (size_t)r;
	}
	return true;
}

#endif
