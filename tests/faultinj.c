// SPDX-License-Identifier: BSD-2-Clause
/*
 * Fault injection (tests/faultinj.h): __wrap_X for each host call the linker redirects with
 * --wrap=X; __real_X is the C library's.  Rules live in a small table under a mutex; the
 * wrappers never allocate, so wrapping malloc cannot recurse.
 */
#include "faultinj.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

enum fi_mode { FI_MODE_FAIL, FI_MODE_SHORT, FI_MODE_EINTR };

struct fi_rule {
	bool active, sticky, fired, any_thread;
	enum fi_call call;
	enum fi_mode mode;
	unsigned long req; /* ioctl request, 0: any */
	unsigned skip;	   /* matching calls to let through before it fires */
	int err;
	pthread_t tid;
};

#define FI_RULES 32
static pthread_mutex_t fi_lock = PTHREAD_MUTEX_INITIALIZER;
static struct fi_rule fi_rules[FI_RULES];
static bool fi_any;
static atomic_uint fi_ncalls[FI_NCALLS], fi_nhits[FI_NCALLS];
static atomic_bool fi_armed; /* any rule set: the fast path skips the lock */
static _Thread_local bool fi_suspended;
static _Atomic(fi_ioctl_fn) fi_fake; /* stands in for the kernel's ioctl when set */

struct fi_act {
	enum fi_mode mode;
	int err;
};

static int fi_default_err(enum fi_call c)
{
	switch (c) {
	case FI_MALLOC:
	case FI_CALLOC:
	case FI_REALLOC:
	case FI_STRDUP:
	case FI_MMAP:
		return ENOMEM;
	default:
		return EIO;
	}
}

static void fi_add(enum fi_call c, unsigned long req, unsigned nth, enum fi_mode mode, int err,
		   bool sticky)
{
	pthread_mutex_lock(&fi_lock);
	for (unsigned i = 0; i < FI_RULES; i++) {
		struct fi_rule *r = &fi_rules[i];

		if (r->active || r->fired)
			continue;
		*r = (struct fi_rule){ .active = true,
				       .sticky = sticky,
				       .any_thread = fi_any,
				       .call = c,
				       .mode = mode,
				       .req = req,
				       .skip = nth ? nth - 1 : 0,
				       .err = err ? err : fi_default_err(c),
				       .tid = pthread_self() };
		atomic_store(&fi_armed, true);
		break;
	}
	pthread_mutex_unlock(&fi_lock);
}

void fi_fail(enum fi_call c, unsigned nth, int err)
{
	fi_add(c, 0, nth, FI_MODE_FAIL, err, false);
}

void fi_fail_from(enum fi_call c, unsigned nth, int err)
{
	fi_add(c, 0, nth, FI_MODE_FAIL, err, true);
}

void fi_short(enum fi_call c, unsigned nth)
{
	fi_add(c, 0, nth, FI_MODE_SHORT, 0, false);
}

void fi_eintr(enum fi_call c, unsigned nth)
{
	fi_add(c, 0, nth, FI_MODE_EINTR, EINTR, false);
}

void fi_ioctl_fail(unsigned long req, unsigned nth, int err)
{
	fi_add(FI_IOCTL, req, nth, FI_MODE_FAIL, err, false);
}

void fi_ioctl_fail_from(unsigned long req, unsigned nth, int err)
{
	fi_add(FI_IOCTL, req, nth, FI_MODE_FAIL, err, true);
}

void fi_ioctl_fake(fi_ioctl_fn fn)
{
	atomic_store(&fi_fake, fn);
}

void fi_suspend(bool on)
{
	fi_suspended = on;
}

void fi_any_thread(void)
{
	pthread_mutex_lock(&fi_lock);
	fi_any = true;
	pthread_mutex_unlock(&fi_lock);
}

void fi_reset(void)
{
	pthread_mutex_lock(&fi_lock);
	memset(fi_rules, 0, sizeof(fi_rules));
	fi_any = false;
	atomic_store(&fi_armed, false);
	for (unsigned i = 0; i < FI_NCALLS; i++) {
		atomic_store(&fi_ncalls[i], 0);
		atomic_store(&fi_nhits[i], 0);
	}
	pthread_mutex_unlock(&fi_lock);
}

unsigned fi_calls(enum fi_call c)
{
	return atomic_load(&fi_ncalls[c]);
}

unsigned fi_hits(enum fi_call c)
{
	return atomic_load(&fi_nhits[c]);
}

bool fi_all_fired(void)
{
	bool all = true;

	pthread_mutex_lock(&fi_lock);
	for (unsigned i = 0; i < FI_RULES; i++)
		if (fi_rules[i].active && !fi_rules[i].fired)
			all = false;
	pthread_mutex_unlock(&fi_lock);
	return all;
}

/* Whether a rule fires for this call; *@a says how. */
static bool fi_check(enum fi_call c, unsigned long req, struct fi_act *a)
{
	bool hit = false;

	if (fi_suspended)
		return false;
	atomic_fetch_add(&fi_ncalls[c], 1);
	if (!atomic_load(&fi_armed))
		return false;
	pthread_mutex_lock(&fi_lock);
	for (unsigned i = 0; i < FI_RULES && !hit; i++) {
		struct fi_rule *r = &fi_rules[i];

		if (!r->active || r->call != c || (r->req && r->req != req) ||
		    (!r->any_thread && !pthread_equal(r->tid, pthread_self())))
			continue;
		if (r->skip) {
			r->skip--;
			continue;
		}
		hit = true;
		r->fired = true;
		if (!r->sticky)
			r->active = false;
		a->mode = r->mode;
		a->err = r->err;
	}
	pthread_mutex_unlock(&fi_lock);
	if (hit)
		atomic_fetch_add(&fi_nhits[c], 1);
	return hit;
}

/* A failing rule: errno set, true returned.  A short one halves *@len. */
static bool fi_io(enum fi_call c, size_t *len)
{
	struct fi_act a;

	if (!fi_check(c, 0, &a))
		return false;
	if (a.mode == FI_MODE_SHORT) {
		if (len && *len > 1)
			*len /= 2;
		return false;
	}
	errno = a.err;
	return true;
}

/* ---- the wrappers ---- */

#define REAL(ret, name, ...)            \
	ret __real_##name(__VA_ARGS__); \
	ret __wrap_##name(__VA_ARGS__);

REAL(ssize_t, read, int fd, void *buf, size_t n)
ssize_t __wrap_read(int fd, void *buf, size_t n)
{
	return fi_io(FI_READ, &n) ? -1 : __real_read(fd, buf, n);
}

REAL(ssize_t, pread, int fd, void *buf, size_t n, off_t off)
ssize_t __wrap_pread(int fd, void *buf, size_t n, off_t off)
{
	return fi_io(FI_PREAD, &n) ? -1 : __real_pread(fd, buf, n, off);
}

REAL(ssize_t, write, int fd, const void *buf, size_t n)
ssize_t __wrap_write(int fd, const void *buf, size_t n)
{
	return fi_io(FI_WRITE, &n) ? -1 : __real_write(fd, buf, n);
}

REAL(ssize_t, pwrite, int fd, const void *buf, size_t n, off_t off)
ssize_t __wrap_pwrite(int fd, const void *buf, size_t n, off_t off)
{
	return fi_io(FI_PWRITE, &n) ? -1 : __real_pwrite(fd, buf, n, off);
}

/* Vectored calls: a short transfer keeps the first half of the vectors (at least one). */
REAL(ssize_t, preadv, int fd, const struct iovec *iov, int cnt, off_t off)
ssize_t __wrap_preadv(int fd, const struct iovec *iov, int cnt, off_t off)
{
	size_t n = (size_t)cnt;

	return fi_io(FI_PREADV, &n) ? -1 : __real_preadv(fd, iov, (int)n, off);
}

REAL(ssize_t, pwritev, int fd, const struct iovec *iov, int cnt, off_t off)
ssize_t __wrap_pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
	size_t n = (size_t)cnt;

	return fi_io(FI_PWRITEV, &n) ? -1 : __real_pwritev(fd, iov, (int)n, off);
}

REAL(ssize_t, writev, int fd, const struct iovec *iov, int cnt)
ssize_t __wrap_writev(int fd, const struct iovec *iov, int cnt)
{
	size_t n = (size_t)cnt;

	return fi_io(FI_WRITEV, &n) ? -1 : __real_writev(fd, iov, (int)n);
}

REAL(int, fsync, int fd)
int __wrap_fsync(int fd)
{
	return fi_io(FI_FSYNC, NULL) ? -1 : __real_fsync(fd);
}

REAL(int, fdatasync, int fd)
int __wrap_fdatasync(int fd)
{
	return fi_io(FI_FDATASYNC, NULL) ? -1 : __real_fdatasync(fd);
}

REAL(int, rename, const char *a, const char *b)
int __wrap_rename(const char *a, const char *b)
{
	return fi_io(FI_RENAME, NULL) ? -1 : __real_rename(a, b);
}

REAL(int, renameat2, int da, const char *a, int db, const char *b, unsigned flags)
int __wrap_renameat2(int da, const char *a, int db, const char *b, unsigned flags)
{
	return fi_io(FI_RENAMEAT2, NULL) ? -1 : __real_renameat2(da, a, db, b, flags);
}

REAL(int, open, const char *path, int flags, ...)
int __wrap_open(const char *path, int flags, ...)
{
	mode_t mode = 0;

	if (flags & (O_CREAT | __O_TMPFILE)) {
		va_list ap;

		va_start(ap, flags);
		mode = (mode_t)va_arg(ap, int);
		va_end(ap);
	}
	return fi_io(FI_OPEN, NULL) ? -1 : __real_open(path, flags, mode);
}

REAL(int, openat, int dirfd, const char *path, int flags, ...)
int __wrap_openat(int dirfd, const char *path, int flags, ...)
{
	mode_t mode = 0;

	if (flags & (O_CREAT | __O_TMPFILE)) {
		va_list ap;

		va_start(ap, flags);
		mode = (mode_t)va_arg(ap, int);
		va_end(ap);
	}
	return fi_io(FI_OPENAT, NULL) ? -1 : __real_openat(dirfd, path, flags, mode);
}

REAL(int, mkostemp, char *tmpl, int flags)
int __wrap_mkostemp(char *tmpl, int flags)
{
	return fi_io(FI_MKOSTEMP, NULL) ? -1 : __real_mkostemp(tmpl, flags);
}

REAL(int, ftruncate, int fd, off_t len)
int __wrap_ftruncate(int fd, off_t len)
{
	return fi_io(FI_FTRUNCATE, NULL) ? -1 : __real_ftruncate(fd, len);
}

REAL(int, fallocate, int fd, int mode, off_t off, off_t len)
int __wrap_fallocate(int fd, int mode, off_t off, off_t len)
{
	return fi_io(FI_FALLOCATE, NULL) ? -1 : __real_fallocate(fd, mode, off, len);
}

REAL(void *, mmap, void *addr, size_t len, int prot, int flags, int fd, off_t off)
void *__wrap_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	return fi_io(FI_MMAP, NULL) ? MAP_FAILED : __real_mmap(addr, len, prot, flags, fd, off);
}

REAL(void *, malloc, size_t n)
void *__wrap_malloc(size_t n)
{
	return fi_io(FI_MALLOC, NULL) ? NULL : __real_malloc(n);
}

REAL(void *, calloc, size_t n, size_t size)
void *__wrap_calloc(size_t n, size_t size)
{
	return fi_io(FI_CALLOC, NULL) ? NULL : __real_calloc(n, size);
}

REAL(void *, realloc, void *p, size_t n)
void *__wrap_realloc(void *p, size_t n)
{
	return fi_io(FI_REALLOC, NULL) ? NULL : __real_realloc(p, n);
}

REAL(char *, strdup, const char *s)
char *__wrap_strdup(const char *s)
{
	return fi_io(FI_STRDUP, NULL) ? NULL : __real_strdup(s);
}

REAL(int, ioctl, int fd, unsigned long req, ...)
int __wrap_ioctl(int fd, unsigned long req, ...)
{
	struct fi_act a;
	fi_ioctl_fn fake;
	va_list ap;
	void *arg;

	va_start(ap, req);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (fi_check(FI_IOCTL, req, &a)) {
		errno = a.err;
		return -1;
	}
	fake = atomic_load(&fi_fake);
	if (fake)
		return fake(fd, req, arg);
	return __real_ioctl(fd, req, arg);
}

REAL(int, fstat, int fd, struct stat *st)
int __wrap_fstat(int fd, struct stat *st)
{
	return fi_io(FI_FSTAT, NULL) ? -1 : __real_fstat(fd, st);
}

REAL(int, dup, int fd)
int __wrap_dup(int fd)
{
	return fi_io(FI_DUP, NULL) ? -1 : __real_dup(fd);
}

REAL(int, linkat, int da, const char *a, int db, const char *b, int flags)
int __wrap_linkat(int da, const char *a, int db, const char *b, int flags)
{
	return fi_io(FI_LINKAT, NULL) ? -1 : __real_linkat(da, a, db, b, flags);
}

REAL(ssize_t, copy_file_range, int in, off_t *ioff, int out, off_t *ooff, size_t n, unsigned flags)
ssize_t __wrap_copy_file_range(int in, off_t *ioff, int out, off_t *ooff, size_t n, unsigned flags)
{
	return fi_io(FI_COPY_FILE_RANGE, &n)
		       ? -1
		       : __real_copy_file_range(in, ioff, out, ooff, n, flags);
}

REAL(off_t, lseek, int fd, off_t off, int whence)
off_t __wrap_lseek(int fd, off_t off, int whence)
{
	return fi_io(FI_LSEEK, NULL) ? -1 : __real_lseek(fd, off, whence);
}

REAL(int, fchmod, int fd, mode_t mode)
int __wrap_fchmod(int fd, mode_t mode)
{
	return fi_io(FI_FCHMOD, NULL) ? -1 : __real_fchmod(fd, mode);
}

REAL(int, eventfd, unsigned init, int flags)
int __wrap_eventfd(unsigned init, int flags)
{
	return fi_io(FI_EVENTFD, NULL) ? -1 : __real_eventfd(init, flags);
}

REAL(ssize_t, getrandom, void *buf, size_t n, unsigned flags)
ssize_t __wrap_getrandom(void *buf, size_t n, unsigned flags)
{
	return fi_io(FI_GETRANDOM, &n) ? -1 : __real_getrandom(buf, n, flags);
}

/* Sockets (snap/migrate.c): connecting, listening, accepting; the migration's memfd. */
REAL(int, socket, int domain, int type, int proto)
int __wrap_socket(int domain, int type, int proto)
{
	return fi_io(FI_SOCKET, NULL) ? -1 : __real_socket(domain, type, proto);
}

REAL(int, connect, int fd, const struct sockaddr *sa, socklen_t len)
int __wrap_connect(int fd, const struct sockaddr *sa, socklen_t len)
{
	return fi_io(FI_CONNECT, NULL) ? -1 : __real_connect(fd, sa, len);
}

/* A short poll finds nothing ready at once, as one that timed out. */
REAL(int, poll, struct pollfd *fds, nfds_t n, int timeout)
int __wrap_poll(struct pollfd *fds, nfds_t n, int timeout)
{
	size_t len = 2;

	if (fi_io(FI_POLL, &len))
		return -1;
	return len == 1 ? 0 : __real_poll(fds, n, timeout);
}

REAL(int, getsockopt, int fd, int level, int name, void *val, socklen_t *len)
int __wrap_getsockopt(int fd, int level, int name, void *val, socklen_t *len)
{
	return fi_io(FI_GETSOCKOPT, NULL) ? -1 : __real_getsockopt(fd, level, name, val, len);
}

REAL(int, listen, int fd, int backlog)
int __wrap_listen(int fd, int backlog)
{
	return fi_io(FI_LISTEN, NULL) ? -1 : __real_listen(fd, backlog);
}

REAL(int, accept4, int fd, struct sockaddr *sa, socklen_t *len, int flags)
int __wrap_accept4(int fd, struct sockaddr *sa, socklen_t *len, int flags)
{
	return fi_io(FI_ACCEPT4, NULL) ? -1 : __real_accept4(fd, sa, len, flags);
}

REAL(int, memfd_create, const char *name, unsigned flags)
int __wrap_memfd_create(const char *name, unsigned flags)
{
	return fi_io(FI_MEMFD_CREATE, NULL) ? -1 : __real_memfd_create(name, flags);
}

/* Memory advice (snap/prefetch.c's populates). */
REAL(int, madvise, void *addr, size_t len, int advice)
int __wrap_madvise(void *addr, size_t len, int advice)
{
	return fi_io(FI_MADVISE, NULL) ? -1 : __real_madvise(addr, len, advice);
}
