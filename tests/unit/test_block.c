// SPDX-License-Identifier: BSD-2-Clause
/*
 * The block backend on its own: options and their refusals, reads and writes (buffered and
 * O_DIRECT with unaligned buffers), range and read-only checks, discard and write-zeroes, the
 * worker pool's kick/pause/resume protocol and the snapshot disk registry.  Images are
 * temporary files the test reads and writes directly to check what the backend did.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "backend/block.h"
#include "vm.h"

#define IMG_SIZE (1024 * 1024)

/* ---- options from a table of key=value strings ---- */

struct opts {
	const char *kv[16];
};

static const char *opt_lookup(void *ctx, const char *key)
{
	struct opts *o = ctx;
	size_t n = strlen(key);

	/* A bare word is a flag, as khyve's -s parser makes it: "ro" is ro=true. */
	for (unsigned i = 0; i < 16 && o->kv[i]; i++) {
		if (!strcmp(o->kv[i], key))
			return "true";
		if (!strncmp(o->kv[i], key, n) && o->kv[i][n] == '=')
			return o->kv[i] + n + 1;
	}
	return NULL;
}

static void make_image(char *path, size_t len, uint64_t size, uint8_t fill)
{
	const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	uint8_t buf[4096];
	int fd;

	snprintf(path, len, "%s/khyve-test-block-XXXXXX", dir);
	fd = mkstemp(path);
	assert_true(fd >= 0);
	memset(buf, fill, sizeof(buf));
	for (uint64_t off = 0; off < size; off += sizeof(buf)) {
		size_t n = size - off < sizeof(buf) ? size - off : sizeof(buf);

		assert_int_equal(pwrite(fd, buf, n, (off_t)off), (ssize_t)n);
	}
	close(fd);
}

static char path_kv[300];

/* Open @path with extra options; returns the -errno and leaves the message in @err. */
static int try_open(const char *path, const char *const *extra, struct blk **b, char *err,
		    size_t errlen)
{
	struct opts o = { { 0 } };
	struct blk_args a = { .opt = opt_lookup, .opt_ctx = &o, .usage = "say path=" };
	unsigned n = 0;

	if (path) {
		snprintf(path_kv, sizeof(path_kv), "path=%s", path);
		o.kv[n++] = path_kv;
	}
	for (; extra && *extra && n < 15; extra++)
		o.kv[n++] = *extra;
	err[0] = '\0';
	return blk_open(&a, b, err, errlen);
}

static void expect_refused(const char *path, const char *const *extra, const char *needle)
{
	struct blk *b = (struct blk *)1;
	char err[512];

	assert_int_not_equal(try_open(path, extra, &b, err, sizeof(err)), 0);
	assert_null(b);
	if (!strstr(err, needle))
		fail_msg("error '%s' does not mention '%s'", err, needle);
}

static void test_refusals(void **state)
{
	char img[256], odd[256], dir[256];
	int fd;

	make_image(img, sizeof(img), IMG_SIZE, 0);
	make_image(odd, sizeof(odd), 1000, 0); /* not a multiple of 512 */
	snprintf(dir, sizeof(dir), "%s", img);
	*strrchr(dir, '/') = '\0';
	expect_refused(NULL, NULL, "say path=");
	expect_refused("/nonexistent/khyve.img", NULL, "/nonexistent/khyve.img");
	expect_refused(dir, NULL, "not a regular file");
	expect_refused(odd, NULL, "not a multiple");
	expect_refused(img, (const char *[]){ "ro=maybe", NULL }, "ro=maybe");
	expect_refused(img, (const char *[]){ "nocache=2", NULL }, "nocache=2");
	expect_refused(img, (const char *[]){ "sectorsize=1000", NULL }, "power of two");
	expect_refused(img, (const char *[]){ "sectorsize=8192", NULL }, "512");
	expect_refused(img, (const char *[]){ "sectorsize=4096/512", NULL }, "physical");
	expect_refused(img, (const char *[]){ "sectorsize=512/x", NULL }, "LOGICAL");
	expect_refused(img, (const char *[]){ "sectorsize=abc", NULL }, "LOGICAL");
	expect_refused(img, (const char *[]){ "iothreads=0", NULL }, "iothreads=0");
	expect_refused(img, (const char *[]){ "iothreads=17", NULL }, "iothreads=17");
	expect_refused(img, (const char *[]){ "iothreads=", NULL }, "iothreads=");
	expect_refused(img, (const char *[]){ "nodelete", "discard=on", NULL }, "disagree");
	/* A read-only file cannot be opened read-write: the message says how to fix it. */
	if (geteuid() != 0) {
		chmod(img, 0400);
		expect_refused(img, NULL, ",ro");
		chmod(img, 0600);
	}
	/* sectorsize=4096 on a 1000-byte-multiple image: refused, naming the sector size. */
	fd = open(odd, O_WRONLY | O_TRUNC);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 512 * 3), 0);
	close(fd);
	expect_refused(odd, (const char *[]){ "sectorsize=4096", NULL }, "4096-byte");
	unlink(img);
	unlink(odd);
}

static void test_geometry(void **state)
{
	char img[256], err[256];
	struct blk *b;

	make_image(img, sizeof(img), IMG_SIZE, 0);
	assert_int_equal(try_open(img, NULL, &b, err, sizeof(err)), 0);
	assert_int_equal(blk_size(b), IMG_SIZE);
	assert_int_equal(blk_lsize(b), 512);
	assert_int_equal(blk_psize(b), 4096);
	assert_false(blk_ro(b));
	assert_true(blk_can_discard(b));
	assert_int_equal(blk_nthreads(b), 1);
	assert_true(blk_fd(b) >= 0);
	assert_non_null(strstr(blk_path(b), "khyve-test-block-"));
	assert_true(blk_in_range(b, 0, IMG_SIZE));
	assert_false(blk_in_range(b, 512, IMG_SIZE));
	assert_false(blk_in_range(b, UINT64_MAX, 2));
	blk_close(b);
	assert_int_equal(try_open(img,
				  (const char *[]){ "sectorsize=4096/16384", "ro", "nodelete=on",
						    "iothreads=3", NULL },
				  &b, err, sizeof(err)),
			 0);
	assert_int_equal(blk_lsize(b), 4096);
	assert_int_equal(blk_psize(b), 16384);
	assert_true(blk_ro(b));
	assert_false(blk_can_discard(b));
	blk_close(b);
	assert_int_equal(try_open(img, (const char *[]){ "sectorsize=4096", "discard=off", NULL },
				  &b, err, sizeof(err)),
			 0);
	assert_int_equal(blk_psize(b), 4096);
	assert_false(blk_can_discard(b));
	blk_close(b);
	blk_close(NULL);
	unlink(img);
}

static void test_serial(void **state)
{
	struct opts o = { { 0 } };
	char ser[BLK_SERIAL_LEN], err[256];

	assert_int_equal(blk_parse_serial(opt_lookup, &o, "DEFAULT-1", ser, err, sizeof(err)), 0);
	assert_memory_equal(ser, "DEFAULT-1\0\0\0\0\0\0\0\0\0\0\0", BLK_SERIAL_LEN);
	o.kv[0] = "ser=ABCDEFGHIJKLMNOPQRST"; /* exactly 20 */
	assert_int_equal(blk_parse_serial(opt_lookup, &o, "D", ser, err, sizeof(err)), 0);
	assert_memory_equal(ser, "ABCDEFGHIJKLMNOPQRST", BLK_SERIAL_LEN);
	o.kv[0] = "serial=X1";
	assert_int_equal(blk_parse_serial(opt_lookup, &o, "D", ser, err, sizeof(err)), 0);
	assert_memory_equal(ser, "X1\0", 3);
	o.kv[0] = "ser=ABCDEFGHIJKLMNOPQRSTU";
	assert_int_equal(blk_parse_serial(opt_lookup, &o, "D", ser, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "at most 20"));
	o.kv[0] = "ser=tab\there";
	assert_int_equal(blk_parse_serial(opt_lookup, &o, "D", ser, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "printable"));
	o.kv[0] = "ser=A";
	o.kv[1] = "serial=B";
	assert_int_equal(blk_parse_serial(opt_lookup, &o, "D", ser, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "disagree"));
	o.kv[1] = "serial=A";
	assert_int_equal(blk_parse_serial(opt_lookup, &o, "D", ser, err, sizeof(err)), 0);
}

/* Write a pattern through three unequal buffers, read it back through two, check the file. */
static void rw_roundtrip(struct blk *b, const char *img, size_t align_off)
{
	uint8_t *mem = NULL, *out = NULL, file[3 * 512];
	struct iovec iov[3];
	int fd;

	assert_int_equal(posix_memalign((void **)&mem, 4096, 3 * 4096), 0);
	assert_int_equal(posix_memalign((void **)&out, 4096, 3 * 4096), 0);
	for (unsigned i = 0; i < 3 * 512; i++)
		mem[align_off + i] = (uint8_t)(i * 7 + 1);
	iov[0] = (struct iovec){ mem + align_off, 100 };
	iov[1] = (struct iovec){ mem + align_off + 100, 1000 };
	iov[2] = (struct iovec){ mem + align_off + 1100, 3 * 512 - 1100 };
	assert_int_equal(blk_writev(b, NULL, iov, 3, 8 * 512), 0);
	fd = open(img, O_RDONLY);
	assert_int_equal(pread(fd, file, sizeof(file), 8 * 512), (ssize_t)sizeof(file));
	close(fd);
	assert_memory_equal(file, mem + align_off, sizeof(file));
	memset(out, 0, 3 * 4096);
	iov[0] = (struct iovec){ out + align_off, 513 };
	iov[1] = (struct iovec){ out + align_off + 513, 3 * 512 - 513 };
	assert_int_equal(blk_readv(b, NULL, iov, 2, 8 * 512), 0);
	assert_memory_equal(out + align_off, mem + align_off, 3 * 512);
	free(mem);
	free(out);
}

static void test_read_write(void **state)
{
	char img[256], err[256];
	struct iovec iov[BLK_MAX_IOV + 1];
	uint8_t buf[1024];
	struct blk *b;

	make_image(img, sizeof(img), IMG_SIZE, 0x5a);
	assert_int_equal(try_open(img, NULL, &b, err, sizeof(err)), 0);
	rw_roundtrip(b, img, 0);
	rw_roundtrip(b, img, 3);
	/* Past the end, unaligned offsets and lengths, too many buffers: refused. */
	iov[0] = (struct iovec){ buf, 1024 };
	assert_int_equal(blk_readv(b, NULL, iov, 1, IMG_SIZE - 512), -EINVAL);
	iov[0] = (struct iovec){ buf, 1024 };
	assert_int_equal(blk_readv(b, NULL, iov, 1, 100), -EINVAL);
	iov[0] = (struct iovec){ buf, 1000 };
	assert_int_equal(blk_writev(b, NULL, iov, 1, 0), -EINVAL);
	iov[0] = (struct iovec){ buf, SIZE_MAX };
	iov[1] = (struct iovec){ buf, 2 };
	assert_int_equal(blk_readv(b, NULL, iov, 2, 0), -EINVAL);
	for (unsigned i = 0; i <= BLK_MAX_IOV; i++)
		iov[i] = (struct iovec){ buf, 0 };
	assert_int_equal(blk_readv(b, NULL, iov, BLK_MAX_IOV + 1, 0), -EINVAL);
	assert_int_equal(blk_readv(b, NULL, iov, BLK_MAX_IOV, 0), 0);
	assert_int_equal(blk_flush(b), 0);
	/* The image shrank under us: a read past its new end is an I/O error, not a hang. */
	assert_int_equal(truncate(img, 4096), 0);
	iov[0] = (struct iovec){ buf, 1024 };
	assert_int_equal(blk_readv(b, NULL, iov, 1, 8192), -EIO);
	blk_close(b);
	unlink(img);
}

static void test_nocache(void **state)
{
	char img[256], err[256];
	struct blk *b;

	make_image(img, sizeof(img), IMG_SIZE, 0);
	if (try_open(img, (const char *[]){ "nocache", NULL }, &b, err, sizeof(err))) {
		/* tmpfs before Linux 6.6 has no O_DIRECT: the refusal must say so. */
		assert_non_null(strstr(err, "drop nocache"));
		print_message("nocache: %s (O_DIRECT not tested on this filesystem)\n", err);
		unlink(img);
		return;
	}
	rw_roundtrip(b, img, 0); /* aligned: straight to the file */
	rw_roundtrip(b, img, 3); /* unaligned: through the bounce buffer */
	blk_close(b);
	assert_int_equal(try_open(img, (const char *[]){ "direct", "sync=off", NULL }, &b, err,
				  sizeof(err)),
			 0);
	rw_roundtrip(b, img, 1);
	blk_close(b);
	unlink(img);
}

static void test_read_only(void **state)
{
	char img[256], err[256];
	uint8_t buf[512];
	struct iovec iov = { buf, sizeof(buf) };
	struct blk *b;

	make_image(img, sizeof(img), IMG_SIZE, 0x11);
	assert_int_equal(try_open(img, (const char *[]){ "ro", NULL }, &b, err, sizeof(err)), 0);
	assert_int_equal(blk_writev(b, NULL, &iov, 1, 0), -EROFS);
	assert_int_equal(blk_discard(b, NULL, 0, 512), -EROFS);
	assert_int_equal(blk_write_zeroes(b, NULL, 0, 512, false), -EROFS);
	iov = (struct iovec){ buf, sizeof(buf) };
	assert_int_equal(blk_readv(b, NULL, &iov, 1, 0), 0);
	assert_int_equal(buf[0], 0x11);
	assert_int_equal(blk_flush(b), 0);
	blk_close(b);
	unlink(img);
}

static void read_file(const char *img, uint64_t off, void *buf, size_t len)
{
	int fd = open(img, O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, buf, len, (off_t)off), (ssize_t)len);
	close(fd);
}

static bool all(const uint8_t *p, size_t n, uint8_t v)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != v)
			return false;
	return true;
}

static void test_discard_zeroes(void **state)
{
	static uint8_t buf[65536];
	char img[256], err[256];
	struct blk *b;

	make_image(img, sizeof(img), IMG_SIZE, 0xee);
	assert_int_equal(try_open(img, NULL, &b, err, sizeof(err)), 0);
	/* write-zeroes must read as zeros, with or without unmap */
	assert_int_equal(blk_write_zeroes(b, NULL, 4096, 4096, false), 0);
	assert_int_equal(blk_write_zeroes(b, NULL, 65536, 65536, true), 0);
	read_file(img, 0, buf, 4096);
	assert_true(all(buf, 4096, 0xee));
	read_file(img, 4096, buf, 4096);
	assert_true(all(buf, 4096, 0));
	read_file(img, 65536, buf, 65536);
	assert_true(all(buf, 65536, 0));
	/* discard of a whole block: punched (ext4, xfs, tmpfs) or, where the host cannot, kept */
	assert_int_equal(blk_discard(b, NULL, 131072, 65536), 0);
	assert_int_equal(blk_discard(b, NULL, 0, 0), 0);
	assert_int_equal(blk_discard(b, NULL, 1, 512), -EINVAL);
	assert_int_equal(blk_discard(b, NULL, 0, 100), -EINVAL);
	assert_int_equal(blk_discard(b, NULL, IMG_SIZE, 512), -EINVAL);
	assert_int_equal(blk_write_zeroes(b, NULL, IMG_SIZE - 512, 1024, false), -EINVAL);
	assert_int_equal(blk_write_zeroes(b, NULL, 0, 0, false), 0);
	read_file(img, 131072, buf, 65536);
	assert_true(all(buf, 65536, 0) || all(buf, 65536, 0xee));
	blk_close(b);
	/* nodelete: discard leaves the data, write-zeroes still zeroes */
	assert_int_equal(try_open(img, (const char *[]){ "nodelete", NULL }, &b, err, sizeof(err)),
			 0);
	assert_int_equal(blk_discard(b, NULL, 0, 4096), 0);
	read_file(img, 0, buf, 4096);
	assert_true(all(buf, 4096, 0xee));
	assert_int_equal(blk_write_zeroes(b, NULL, 0, 4096, true), 0);
	read_file(img, 0, buf, 4096);
	assert_true(all(buf, 4096, 0));
	blk_close(b);
	unlink(img);
}

/* ---- the worker pool ---- */

struct pool {
	pthread_mutex_t lock;
	pthread_cond_t cv;
	unsigned calls, inside, max_inside;
	bool hold;	      /* serve() waits until released */
	struct blk *b;	      /* set after open */
	bool saw_not_running; /* serve() saw blk_running() false while held */
	void *scratch[4];
};

static void pool_serve(void *opaque, struct blk_worker *w, void *scratch)
{
	struct pool *p = opaque;

	assert_non_null(w);
	assert_non_null(scratch);
	assert_true(all(scratch, 64, 0));
	pthread_mutex_lock(&p->lock);
	p->calls++;
	p->inside++;
	if (p->inside > p->max_inside)
		p->max_inside = p->inside;
	pthread_cond_broadcast(&p->cv);
	while (p->hold)
		pthread_cond_wait(&p->cv, &p->lock);
	pthread_mutex_unlock(&p->lock);
	if (!blk_running(p->b))
		p->saw_not_running = true;
	pthread_mutex_lock(&p->lock);
	p->inside--;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->lock);
}

static void pool_wait(struct pool *p, unsigned calls, unsigned inside)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 20;
	pthread_mutex_lock(&p->lock);
	while (p->calls < calls || p->inside != inside)
		if (pthread_cond_timedwait(&p->cv, &p->lock, &ts))
			fail_msg("serve(): %u calls, %u inside, waited for %u and %u", p->calls,
				 p->inside, calls, inside);
	pthread_mutex_unlock(&p->lock);
}

struct pause_arg {
	struct blk *b;
	bool done;
};

static void *pause_thread(void *arg)
{
	struct pause_arg *pa = arg;

	blk_pause(pa->b);
	__atomic_store_n(&pa->done, true, __ATOMIC_RELEASE);
	return NULL;
}

static void test_pool(void **state)
{
	struct pool p = { .lock = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };
	struct opts o = { { "iothreads=2", NULL } };
	struct blk_args a = { .opt = opt_lookup,
			      .opt_ctx = &o,
			      .thread_name = "test",
			      .scratch_size = 64,
			      .serve = pool_serve,
			      .opaque = &p };
	struct pause_arg pa;
	char img[256], err[256];
	pthread_t t;

	make_image(img, sizeof(img), IMG_SIZE, 0);
	snprintf(path_kv, sizeof(path_kv), "path=%s", img);
	o.kv[1] = path_kv;
	assert_int_equal(blk_open(&a, &p.b, err, sizeof(err)), 0);
	assert_int_equal(blk_nthreads(p.b), 2);
	/* One kick, one serve() call; a kick while it runs wakes the second worker. */
	p.hold = true;
	blk_kick(p.b);
	pool_wait(&p, 1, 1);
	blk_kick(p.b);
	pool_wait(&p, 2, 2);
	assert_int_equal(blk_busy(p.b), 2);
	/* Pause waits for both serve() calls to return, and they see blk_running() false. */
	pa = (struct pause_arg){ p.b, false };
	assert_int_equal(pthread_create(&t, NULL, pause_thread, &pa), 0);
	usleep(50 * 1000);
	assert_false(__atomic_load_n(&pa.done, __ATOMIC_ACQUIRE));
	pthread_mutex_lock(&p.lock);
	p.hold = false;
	pthread_cond_broadcast(&p.cv);
	pthread_mutex_unlock(&p.lock);
	pthread_join(t, NULL);
	assert_true(pa.done);
	assert_int_equal(blk_busy(p.b), 0);
	assert_true(p.saw_not_running);
	assert_int_equal(p.max_inside, 2);
	/* A kick while paused calls nothing until resume. */
	blk_kick(p.b);
	usleep(50 * 1000);
	assert_int_equal(p.calls, 2);
	blk_resume(p.b, false);
	pool_wait(&p, 3, 0);
	/* Resume with kick looks for work even without one. */
	blk_pause(p.b);
	blk_resume(p.b, true);
	pool_wait(&p, 4, 0);
	assert_true(blk_running(p.b));
	blk_close(p.b);
	unlink(img);
}

/* ---- the snapshot registry ---- */

static void test_registry(void **state)
{
	struct opts o = { { 0 } };
	struct blk_args a = {
		.opt = opt_lookup, .opt_ctx = &o, .cfg_key = "pci.0.3.0.path", .id = "pci@0.3.0"
	};
	struct blk *b1, *b2;
	char img[256], img2[256], err[256], kv2[300];
	struct vm vm;

	vm_init_bare(&vm, true);
	a.vm = &vm;
	make_image(img, sizeof(img), IMG_SIZE, 0);
	make_image(img2, sizeof(img2), IMG_SIZE, 0);
	snprintf(path_kv, sizeof(path_kv), "path=%s", img);
	o.kv[0] = path_kv;
	assert_int_equal(blk_open(&a, &b1, err, sizeof(err)), 0);
	snprintf(kv2, sizeof(kv2), "path=%s", img2);
	o.kv[0] = kv2;
	a.cfg_key = "pci.0.4.0.port.1.path";
	a.id = "pci@0.4.0.port1";
	assert_int_equal(blk_open(&a, &b2, err, sizeof(err)), 0);
	assert_non_null(vm.disks);
	assert_ptr_equal(vm.disks->fd, blk_fd(b2));
	assert_string_equal(vm.disks->cfg_key, "pci.0.4.0.port.1.path");
	assert_string_equal(vm.disks->id, "pci@0.4.0.port1");
	assert_string_equal(vm.disks->path, blk_path(b2));
	assert_non_null(vm.disks->next);
	assert_string_equal(vm.disks->next->id, "pci@0.3.0");
	assert_null(vm.disks->next->next);
	blk_close(b1); /* the one at the tail */
	assert_string_equal(vm.disks->id, "pci@0.4.0.port1");
	assert_null(vm.disks->next);
	blk_close(b2);
	assert_null(vm.disks);
	/* A refused open leaves nothing registered. */
	o.kv[1] = "sectorsize=3";
	assert_int_not_equal(blk_open(&a, &b1, err, sizeof(err)), 0);
	assert_null(vm.disks);
	vm_destroy(&vm);
	unlink(img);
	unlink(img2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_refusals),       cmocka_unit_test(test_geometry),
		cmocka_unit_test(test_serial),	       cmocka_unit_test(test_read_write),
		cmocka_unit_test(test_nocache),	       cmocka_unit_test(test_read_only),
		cmocka_unit_test(test_discard_zeroes), cmocka_unit_test(test_pool),
		cmocka_unit_test(test_registry),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
