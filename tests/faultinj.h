/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Fault injection for unit tests: the host calls khyve makes (read, pwrite, fsync, rename,
 * open, mmap, malloc, ioctl, ...) go through wrappers (the linker's --wrap=SYMBOL, only for
 * tests/unit/test_*_faults binaries, never for khyve itself) which a test tells to fail.
 *
 *	fi_fail(FI_PWRITE, 3, EIO);     the 3rd pwrite from now fails with EIO, once
 *	fi_fail_from(FI_MALLOC, 1, 0);  every malloc from now fails (ENOMEM)
 *	fi_short(FI_PWRITE, 1);         the next pwrite transfers half (at least one byte)
 *	fi_eintr(FI_READ, 1);           the next read fails with EINTR, once
 *	fi_ioctl_fail(KVM_SET_MSRS, 1, EINVAL);  the next ioctl of that request fails
 *	fi_short(FI_POLL, 1);           the next poll finds nothing ready (as if it timed out)
 *
 * A rule counts only the calls made by the thread that set it unless fi_any_thread() was
 * called first (a vCPU's ioctls run on its own thread).  fi_reset() drops every rule and
 * counter; fi_calls() says how many calls of a kind went through since, fi_hits() how many
 * were made to fail.  Without rules every wrapper is the real call.
 */
#ifndef KHYVE_TEST_FAULTINJ_H
#define KHYVE_TEST_FAULTINJ_H

#include <stdbool.h>

enum fi_call {
	FI_READ,
	FI_PREAD,
	FI_PREADV,
	FI_WRITE,
	FI_PWRITE,
	FI_PWRITEV,
	FI_WRITEV,
	FI_FSYNC,
	FI_FDATASYNC,
	FI_RENAME,
	FI_RENAMEAT2,
	FI_OPEN,
	FI_OPENAT,
	FI_MKOSTEMP,
	FI_FTRUNCATE,
	FI_FALLOCATE,
	FI_MMAP,
	FI_MALLOC,
	FI_CALLOC,
	FI_REALLOC,
	FI_STRDUP,
	FI_IOCTL,
	FI_FSTAT,
	FI_DUP,
	FI_LINKAT,
	FI_COPY_FILE_RANGE,
	FI_LSEEK,
	FI_FCHMOD,
	FI_EVENTFD,
	FI_GETRANDOM,
	FI_SOCKET,
	FI_CONNECT,
	FI_POLL,
	FI_GETSOCKOPT,
	FI_LISTEN,
	FI_ACCEPT4,
	FI_MEMFD_CREATE,
	FI_MADVISE,
	FI_NCALLS
};

/* The @nth call of @c from now (1 = the next) fails with @err (0: the call's usual ENOMEM/EIO). */
void fi_fail(enum fi_call c, unsigned nth, int err);
/* The @nth call and every one after it fail with @err. */
void fi_fail_from(enum fi_call c, unsigned nth, int err);
/* The @nth call transfers half its length (reads, writes, getrandom; poll: none ready), once. */
void fi_short(enum fi_call c, unsigned nth);
/* The @nth call fails with EINTR, once (the caller is expected to retry). */
void fi_eintr(enum fi_call c, unsigned nth);
/* The @nth ioctl with request @req fails with @err, once; fi_ioctl_fail_from: and after. */
void fi_ioctl_fail(unsigned long req, unsigned nth, int err);
void fi_ioctl_fail_from(unsigned long req, unsigned nth, int err);
/*
 * Every ioctl a rule does not fail goes to @fn instead of the kernel (NULL: the kernel again),
 * from any thread, whatever fi_reset: a test plays KVM on a host without /dev/kvm.
 */
typedef int (*fi_ioctl_fn)(int fd, unsigned long req, void *arg);
void fi_ioctl_fake(fi_ioctl_fn fn);
/* While suspended, this thread's calls go straight through, counted by no rule (test set-up). */
void fi_suspend(bool on);
/* Rules set after this count calls from every thread (until fi_reset). */
void fi_any_thread(void);
void fi_reset(void);
/* Calls of @c since fi_reset (from any thread), and how many of them a rule made fail. */
unsigned fi_calls(enum fi_call c);
unsigned fi_hits(enum fi_call c);
/* Whether every rule set since fi_reset has fired (a test checks its fault was reached). */
bool fi_all_fired(void);

#endif
