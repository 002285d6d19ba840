/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The gdb stub (bhyve's -G [w][bind_addr:]port): a TCP listener for one debugger at a time,
 * speaking the GDB remote protocol (rsp.h framing, session.h commands) against the real
 * machine: registers through KVM_GET/SET_REGS, SREGS and FPU on each vCPU's own thread,
 * memory through the software page walk (pagewalk.h) into guest RAM, single steps and
 * breakpoints through KVM_SET_GUEST_DEBUG.
 *
 * Keys: gdb.port (0: any free port, printed), gdb.address (default 127.0.0.1), gdb.wait (the
 * guest's first instruction waits for the debugger).  When a debugger connects, sends Ctrl-C
 * or a vCPU stops (a step, a breakpoint), every vCPU is held (vcpus_hold, a hold of the
 * debugger's own, apart from the snapshot pause); a continue lets them go.  Closing the
 * connection is a detach: breakpoints are taken out and the guest runs on.
 *
 * Threads: everything runs on the event-loop thread but gdbstub_debug_exit, which runs on the
 * vCPU thread that took a KVM_EXIT_DEBUG and hands the stop over through an eventfd.
 */
#ifndef KHYVE_GDB_GDBSTUB_H
#define KHYVE_GDB_GDBSTUB_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

struct vm;
struct vcpu;

/* -G [w][ADDR:]PORT into gdb.wait, gdb.address and gdb.port.  0 or -EINVAL with @err. */
int gdbstub_parse_opt(struct config *cfg, const char *arg, char *err, size_t errlen);
/*
 * With gdb.port set: bind and listen (before privileges are dropped and the sandbox is on)
 * and, with gdb.wait, hold every vCPU before it runs.  0 without gdb.port.
 */
int gdbstub_open(struct vm *vm, char *err, size_t errlen);
/* Once the vCPUs run: accept debuggers (on the event loop). */
int gdbstub_go(struct vm *vm, char *err, size_t errlen);
/* The VM is ending: the connection and the listener closed (on the event loop). */
void gdbstub_stop(struct vm *vm);
/* After the vCPU threads are gone. */
void gdbstub_free(struct vm *vm);
/* A KVM_EXIT_DEBUG on @v's thread: false when there is no debugger to take it. */
bool gdbstub_debug_exit(struct vcpu *v);
/*
 * For khyvectl --status: where the stub listens and what the debugger does ("none",
 * "stopped": the guest is stopped in it, "running": it let the guest go).  NULL without -G.
 * On the event loop.
 */
const char *gdbstub_status(struct vm *vm, const char **debugger);
/*
 * Why a checkpoint (or a migration) of the VM cannot be taken now, or NULL: software
 * breakpoints are int3 bytes in guest RAM, which the file would keep.
 */
const char *gdbstub_save_refusal(struct vm *vm);

#endif
