// SPDX-License-Identifier: BSD-2-Clause
/*
 * bench/blockio.c: what the block backend's I/O costs on this host, worker threads against
 * io_uring, with no VM in the way.  The backend's model is "a worker takes a request and does
 * one preadv/pwritev"; io_uring's would be "one thread submits a batch and reaps completions".
 * Both read (or write) a file that is in the page cache, @depth requests at a time, for
 * @seconds, and print requests per second.
 *
 *	cc -O2 -o blockio bench/blockio.c -luring -lpthread
 *	blockio FILE seqread|randread|seqwrite|randwrite BLOCKSIZE DEPTH SECONDS threads|uring [THREADS]
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static int fd;
static uint64_t fsize, bs, nblocks;
static int wr, rnd;
static double seconds;
static volatile int stop;
static uint64_t seq_next;
static pthread_mutex_t seq_lock = PTHREAD_MUTEX_INITIALIZER;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t next_off(uint64_t *rs)
{
	uint64_t b;

	if (rnd) {
		*rs ^= *rs << 13;
		*rs ^= *rs >> 7;
		*rs ^= *rs << 17;
		return (*rs % nblocks) * bs;
	}
	pthread_mutex_lock(&seq_lock);
	b = seq_next++ % nblocks;
	pthread_mutex_unlock(&seq_lock);
	return b * bs;
}

struct worker {
	pthread_t t;
	uint64_t ios;
	unsigned id;
};

/* The backend's model: each thread one request at a time, synchronously. */
static void *thread_main(void *arg)
{
	struct worker *w = arg;
	uint64_t rs = 0x9e3779b97f4a7c15ULL * (w->id + 1);
	void *buf;
	struct iovec iov;

	if (posix_memalign(&buf, 4096, bs))
		return NULL;
	memset(buf, 0x5a, bs);
	while (!stop) {
		uint64_t off = next_off(&rs);
		ssize_t r;

		iov = (struct iovec){ buf, bs };
		r = wr ? pwritev(fd, &iov, 1, (off_t)off) : preadv(fd, &iov, 1, (off_t)off);
		if (r != (ssize_t)bs) {
			perror("preadv/pwritev");
			exit(1);
		}
		w->ios++;
	}
	free(buf);
	return NULL;
}

static uint64_t run_threads(unsigned n)
{
	struct worker *w = calloc(n, sizeof(*w));
	uint64_t ios = 0;

	for (unsigned i = 0; i < n; i++) {
		w[i].id = i;
		pthread_create(&w[i].t, NULL, thread_main, &w[i]);
	}
	usleep((useconds_t)(seconds * 1e6));
	stop = 1;
	for (unsigned i = 0; i < n; i++) {
		pthread_join(w[i].t, NULL);
		ios += w[i].ios;
	}
	free(w);
	return ios;
}

/* io_uring: keep @depth requests in flight from one thread, reaping in batches. */
static uint64_t run_uring(unsigned depth)
{
	struct io_uring ring;
	struct iovec *iov = calloc(depth, sizeof(*iov));
	uint64_t rs = 0x12345, ios = 0;
	double end = now() + seconds;
	unsigned inflight = 0;

	if (io_uring_queue_init(depth * 2, &ring, 0)) {
		perror("io_uring_queue_init");
		exit(1);
	}
	for (unsigned i = 0; i < depth; i++) {
		if (posix_memalign(&iov[i].iov_base, 4096, bs))
			exit(1);
		iov[i].iov_len = bs;
		memset(iov[i].iov_base, 0x5a, bs);
	}
	for (unsigned i = 0; i < depth; i++) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);

		if (wr)
			io_uring_prep_writev(sqe, fd, &iov[i], 1, next_off(&rs));
		else
			io_uring_prep_readv(sqe, fd, &iov[i], 1, next_off(&rs));
		io_uring_sqe_set_data(sqe, &iov[i]);
		inflight++;
	}
	io_uring_submit(&ring);
	while (inflight) {
		struct io_uring_cqe *cqe;
		unsigned head, n = 0;
		int refill = now() < end;

		if (io_uring_wait_cqe(&ring, &cqe))
			exit(1);
		io_uring_for_each_cqe(&ring, head, cqe)
		{
			struct iovec *v = io_uring_cqe_get_data(cqe);

			if (cqe->res != (int)bs) {
				fprintf(stderr, "io_uring: %d\n", cqe->res);
				exit(1);
			}
			n++;
			ios++;
			inflight--;
			if (refill) {
				struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);

				if (wr)
					io_uring_prep_writev(sqe, fd, v, 1, next_off(&rs));
				else
					io_uring_prep_readv(sqe, fd, v, 1, next_off(&rs));
				io_uring_sqe_set_data(sqe, v);
				inflight++;
			}
		}
		io_uring_cq_advance(&ring, n);
		if (refill)
			io_uring_submit(&ring);
	}
	io_uring_queue_exit(&ring);
	return ios;
}

int main(int argc, char **argv)
{
	struct stat st;
	const char *op;
	double t0, t;
	uint64_t ios;
	unsigned depth;

	if (argc < 7) {
		fprintf(stderr, "usage: %s FILE OP BS DEPTH SECONDS threads|uring [THREADS]\n",
			argv[0]);
		return 2;
	}
	op = argv[2];
	wr = strstr(op, "write") != NULL;
	rnd = !strncmp(op, "rand", 4);
	bs = strtoull(argv[3], NULL, 0);
	depth = (unsigned)atoi(argv[4]);
	seconds = atof(argv[5]);
	fd = open(argv[1], wr ? O_RDWR : O_RDONLY);
	if (fd < 0 || fstat(fd, &st) || !bs || !depth) {
		perror(argv[1]);
		return 2;
	}
	fsize = (uint64_t)st.st_size;
	nblocks = fsize / bs;
	t0 = now();
	if (!strcmp(argv[6], "uring"))
		ios = run_uring(depth);
	else
		ios = run_threads(argc > 7 ? (unsigned)atoi(argv[7]) : depth);
	t = now() - t0;
	printf("%s %s bs=%llu depth=%u: %.0f IOPS %.1f MB/s\n", argv[6], op,
	       (unsigned long long)bs, depth, ios / t, ios * bs / t / 1e6);
	return 0;
}
