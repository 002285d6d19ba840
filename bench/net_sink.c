// SPDX-License-Identifier: BSD-2-Clause
/*
 * The host end of the test guest's mode=netbench (tests/guest/netbench.c), built by
 * bench/net.py into its temporary directory.
 *
 *	net_sink PORT
 *
 * Listens on 127.0.0.1:PORT, where slirp (khyve's and QEMU's alike) delivers the guest's
 * datagrams to 10.0.2.2:PORT.  Every datagram is "KHB" + a type:
 *	D + seq + filler	data: counted; every 16th is acknowledged with A + the count
 *	R + size, window, seconds	stream data to the sender, keeping at most `window`
 *				unacknowledged (the guest acknowledges with A + its count),
 *				until E arrives or seconds + 5 have passed
 *	E				end of a stream
 * Numbers are 32-bit big endian.  Prints nothing until it ends: then "sink: N data
 * datagrams received, M sent" on stdout.  Stops on SIGTERM.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define ACK_EVERY 16
#define STALL_NS 100000000LL
#define SINK_BUF (4 << 20) /* capped at net.core.rmem_max / wmem_max */

static volatile sig_atomic_t stop;
static uint64_t received, sent;

static void on_term(int sig __attribute__((unused)))
{
	stop = 1;
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void ack(int fd, const struct sockaddr_in *to, uint32_t count)
{
	uint8_t a[8] = { 'K', 'H', 'B', 'A' };

	put32(a + 4, count);
	sendto(fd, a, sizeof(a), 0, (const struct sockaddr *)to, sizeof(*to));
}

/* Stream to @peer until it says E, or for @seconds + 5. */
static void stream(int fd, const struct sockaddr_in *peer, uint32_t size, uint32_t win,
		   uint32_t seconds)
{
	static uint8_t d[2048];
	int64_t end = now_ns() + (int64_t)(seconds + 5) * 1000000000LL, last = now_ns();
	uint64_t seq = 0, acked = 0;

	if (size < 16 || size > sizeof(d) || !win)
		return;
	for (uint32_t i = 0; i < size; i++)
		d[i] = (uint8_t)i;
	memcpy(d, "KHBD", 4);
	while (!stop && now_ns() < end) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		uint8_t b[64];
		ssize_t n;

		while (seq - acked < win) {
			put32(d + 4, (uint32_t)seq);
			if (sendto(fd, d, size, 0, (const struct sockaddr *)peer, sizeof(*peer)) < 0)
				break;
			seq++;
			sent++;
		}
		if (poll(&p, 1, 20) < 0 && errno != EINTR)
			return;
		while ((n = recv(fd, b, sizeof(b), MSG_DONTWAIT)) >= 8) {
			if (!memcmp(b, "KHBE", 4))
				return;
			if (!memcmp(b, "KHBA", 4) && get32(b + 4) > acked) {
				acked = get32(b + 4);
				last = now_ns();
			}
		}
		if (now_ns() - last > STALL_NS) {
			acked = seq; /* lost on the way: give up on what is in flight */
			last = now_ns();
		}
	}
}

int main(int argc, char **argv)
{
	struct sockaddr_in a = { .sin_family = AF_INET }, from, cur = { 0 };
	uint8_t b[2048];
	int fd, port;

	if (argc != 2 || (port = atoi(argv[1])) <= 0 || port > 65535) {
		fprintf(stderr, "usage: net_sink PORT\n");
		return 2;
	}
	/* No SA_RESTART: SIGTERM must interrupt the blocking recvfrom. */
	sigaction(SIGTERM, &(struct sigaction){ .sa_handler = on_term }, NULL);
	fd = socket(AF_INET, SOCK_DGRAM, 0);
	/*
	 * Room for a whole window of full-size datagrams and more: with the default buffer a
	 * sink descheduled on a busy host dropped some, and the sender waited 100 ms for each
	 * loss, a pause that measured this host's scheduler rather than the VMM.
	 */
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &(int){ SINK_BUF }, sizeof(int));
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &(int){ SINK_BUF }, sizeof(int));
	a.sin_port = htons((uint16_t)port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a))) {
		perror("net_sink: bind");
		return 1;
	}
	while (!stop) {
		socklen_t fl = sizeof(from);
		ssize_t n = recvfrom(fd, b, sizeof(b), 0, (struct sockaddr *)&from, &fl);

		if (n < 8 || memcmp(b, "KHB", 3))
			continue;
		if (b[3] == 'D') {
			/* A new sender starts a new count. */
			if (from.sin_port != cur.sin_port || from.sin_addr.s_addr != cur.sin_addr.s_addr) {
				cur = from;
				received = 0;
			}
			if (++received % ACK_EVERY == 0)
				ack(fd, &from, (uint32_t)received);
		} else if (b[3] == 'R' && n >= 16) {
			stream(fd, &from, get32(b + 4), get32(b + 8), get32(b + 12));
		}
	}
	printf("sink: %llu data datagrams received, %llu sent\n", (unsigned long long)received,
	       (unsigned long long)sent);
	return 0;
}
