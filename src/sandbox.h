/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The sandbox: a seccomp-bpf filter (libseccomp) installed on every thread once the VM is
 * built, before the guest runs, that allows only the system calls khyve needs from then on.
 * A guest that took over a device model can then not start programs, open network
 * namespaces, trace other processes, load kernel modules, make executable memory, and so on.
 * A forbidden call stops khyve with one line naming it:
 *
 *	khyve: sandbox: thread "vcpu0" made the forbidden system call ptrace (101); ...
 *
 * -o sandbox=on (default), off, or log (forbidden calls are logged by the kernel as audit
 * records in dmesg and allowed: how to find what a new device needs).  The allow-list, and
 * how to extend it, is in sandbox.c.
 */
#ifndef KHYVE_SANDBOX_H
#define KHYVE_SANDBOX_H

#include <stddef.h>

struct vm;
struct config;

/*
 * Compile the filter -o sandbox= asks for now, so that installing it later costs only the
 * system call (khyve -R: the install comes in a migration's downtime).  Optional.
 */
int sandbox_prepare(const struct config *cfg, char *err, size_t errlen);
/* Install the filter for the whole process (all threads) as -o sandbox= says. */
int sandbox_install(const struct config *cfg, char *err, size_t errlen);
/*
 * sandbox_install, then for tests, with debug.sandbox_probe=1: a forbidden call from the
 * event-loop thread (where device timers and the control socket run) shortly after start.
 */
int sandbox_start(struct vm *vm, char *err, size_t errlen);

#endif
