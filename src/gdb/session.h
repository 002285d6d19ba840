/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * A GDB remote protocol session: the commands of one connected debugger ("Packets" and
 * "General Query Packets" in the GDB manual), answered against a target that the session
 * sees only through struct gdb_target, so the unit tests and the fuzzer drive it with a fake
 * machine.  gdbstub.c is the real target (KVM vCPUs, guest RAM) and the transport.
 *
 * All-stop mode: every vCPU is stopped while gdb looks at the machine; a continue or a step
 * lets them go (vCont can step one vCPU and leave the others stopped), and when one stops,
 * all stop.  gdb thread ids are vCPU ids + 1 (0 and -1 mean "any" and "all" in gdb's packets).
 *
 * The session owns the breakpoints: software ones (Z0: an int3 byte written into guest RAM,
 * the original byte kept and shown in memory reads) and hardware ones (Z1: up to four
 * instruction breakpoints in the debug registers; Z2 and Z4 watchpoints share those four),
 * handed to the target at each resume.
 * Every packet is untrusted: lengths are bounded, hex is checked, memory is reached only
 * through the target's translate and RAM accessors, which refuse what is not guest RAM.
 */
#ifndef KHYVE_GDB_SESSION_H
#define KHYVE_GDB_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gdb/rsp.h"

#define GDB_MAX_CPUS 256
#define GDB_MAX_SW_BP 64
#define GDB_MAX_HW_BP 4

/* The registers gdb sees (target.xml: core, sse, segments and khyve's system registers). */
struct gdb_regs {
	uint64_t gpr[16]; /* rax rbx rcx rdx rsi rdi rbp rsp r8..r15 (gdb's order) */
	uint64_t rip;
	uint32_t eflags;
	uint32_t seg[6];   /* cs ss ds es fs gs selectors */
	uint8_t st[8][10]; /* x87 registers, 80 bits each */
	uint32_t fpu[8];   /* fctrl fstat ftag fiseg fioff foseg fooff fop */
	uint8_t xmm[16][16];
	uint32_t mxcsr;
	uint64_t fs_base, gs_base;
	uint64_t cr0, cr2, cr3, cr4, cr8, efer;
};

/* The number of registers in target.xml (and in 'g'); p/P take 0 to GDB_NREGS - 1. */
#define GDB_NREGS 65

enum gdb_action {
	GDB_STAY, /* stays stopped */
	GDB_CONT,
	GDB_STEP,
};

/* What the target is to run with at a resume. */
struct gdb_resume {
	uint8_t action[GDB_MAX_CPUS]; /* enum gdb_action per vCPU */
	bool sw_bp;		      /* software breakpoints are in memory: #BP exits to us */
	uint64_t dr[GDB_MAX_HW_BP];   /* hardware breakpoint addresses */
	uint64_t dr7;		      /* 0 with none */
};

struct gdb_target {
	unsigned ncpus;
	void *opaque;
	/* Z0 is refused (the host cannot stop on an int3: gdbstub.c on PVM). */
	bool no_sw_bp;
	/* Z2 and Z4 are refused (the host never stops on a data breakpoint: PVM). */
	bool no_watch;
	int (*get_regs)(void *opaque, unsigned cpu, struct gdb_regs *r);
	int (*set_regs)(void *opaque, unsigned cpu, const struct gdb_regs *r);
	/* @gva in @cpu's address space: guest-physical and bytes left in its page (pagewalk.h). */
	int (*translate)(void *opaque, unsigned cpu, uint64_t gva, uint64_t *gpa, uint64_t *left);
	/* Guest RAM only (never MMIO): 0, or -EFAULT. */
	int (*read_phys)(void *opaque, uint64_t gpa, void *buf, size_t len);
	int (*write_phys)(void *opaque, uint64_t gpa, const void *buf, size_t len);
	/* Let vCPUs run as @r says; the transport then waits for a stop or an interrupt. */
	int (*resume)(void *opaque, const struct gdb_resume *r);
	/* 'k': end the VM. */
	void (*kill)(void *opaque);
	/* Send one reply payload (the transport frames it with rsp_encode). */
	void (*send)(void *opaque, const char *payload, size_t len);
};

struct gdb_sw_bp {
	uint64_t addr, gpa; /* as gdb gave it; where the int3 is */
	uint8_t orig;	    /* the byte it replaced */
	bool used;
};

/* What a packet leaves the transport to do. */
enum gdb_state {
	GDB_STOPPED,  /* wait for the next packet */
	GDB_RUNNING,  /* the vCPUs run: wait for a stop (gdb_session_stopped) or Ctrl-C */
	GDB_DETACHED, /* close the connection (D, k); breakpoints are out, vCPUs run */
};

enum gdb_stop_kind {
	GDB_STOP_ATTACH, /* stopped when gdb connected (or before the guest's first instruction) */
	GDB_STOP_INTERRUPT,
	GDB_STOP_STEP,
	GDB_STOP_SW_BP,
	GDB_STOP_HW_BP,
};

struct gdb_session {
	const struct gdb_target *t;
	enum gdb_state state;
	unsigned g_cpu, c_cpu; /* Hg and Hc: the vCPU regs/memory and c/s apply to */
	bool c_all;	       /* Hc-1 (or never set): c and s resume every vCPU */
	unsigned stop_cpu;     /* the vCPU that reported the last stop */
	enum gdb_stop_kind stop_kind;
	struct gdb_sw_bp sw[GDB_MAX_SW_BP];
	uint64_t hw[GDB_MAX_HW_BP];
	uint8_t hw_rw[GDB_MAX_HW_BP];  /* DR7 condition: 0 execution, 1 write, 3 access */
	uint8_t hw_len[GDB_MAX_HW_BP]; /* bytes: 1 (breakpoints), 1, 2, 4, 8 (watchpoints) */
	bool hw_used[GDB_MAX_HW_BP];
	int stop_slot; /* the debug register of a GDB_STOP_HW_BP stop, or -1 */
	char reply[RSP_MAX_PAYLOAD + 1];
	struct gdb_regs regs;
};

void gdb_session_init(struct gdb_session *s, const struct gdb_target *t);
/* One packet's payload (rsp_feed's buf/len); returns the state it leaves. */
enum gdb_state gdb_session_packet(struct gdb_session *s, const uint8_t *pkt, size_t len);
/* Every vCPU is stopped because of @kind on @cpu: the stop reply goes out (when running). */
void gdb_session_stopped(struct gdb_session *s, unsigned cpu, enum gdb_stop_kind kind);
/* ... because of a debug register: @dr6's B0-B3 say which (a watchpoint is named in the reply). */
void gdb_session_stopped_hw(struct gdb_session *s, unsigned cpu, unsigned dr6);
/*
 * As if 'D' had come (the connection is gone): breakpoints out, every vCPU let go.  The
 * vCPUs must be stopped (the transport stops them first when they were running).
 */
void gdb_session_detach(struct gdb_session *s);
/* Software breakpoints in guest RAM now (a checkpoint refuses to save them). */
unsigned gdb_session_sw_bps(const struct gdb_session *s);
/* Is @gpa the int3 of one of our software breakpoints? */
bool gdb_session_is_sw_bp(const struct gdb_session *s, uint64_t gpa);
/* The target description gdb reads with qXfer:features:read:target.xml. */
const char *gdb_target_xml(void);

#endif
