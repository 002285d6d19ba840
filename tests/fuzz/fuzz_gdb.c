// SPDX-License-Identifier: BSD-2-Clause
/*
 * libFuzzer target: the gdb stub's protocol, as a hostile debugger on the network drives it.
 * The input is the byte stream from the TCP connection: every byte goes through the packet
 * parser (gdb/rsp.c) and every complete packet into a session (gdb/session.c) whose target is a
 * fake 2-vCPU machine with 64 KiB of RAM reachable at virtual 0x400000.  A byte 0x03 while
 * the session runs is the interrupt, and a stop is reported after each packet that resumed.
 *
 * What must hold: no crash or sanitizer report; every reply fits a packet and frames with
 * rsp_encode; RAM is reached only in bounds (the fake target asserts it); an inserted software
 * breakpoint's byte is an int3; after the final detach no int3 the session wrote is left.
 */
#include <errno.h>
#include <string.h>

#include "gdb/rsp.h"
#include "gdb/session.h"
#include "fuzz.h"

#define MEM 0x10000
#define BASE 0x400000ULL

static uint8_t mem[MEM], orig[MEM];
static struct gdb_regs regs[2];
static struct gdb_session sess;

static int f_get_regs(void *o, unsigned cpu, struct gdb_regs *r)
{
	FZ_ASSERT(cpu < 2, "get_regs of vCPU %u", cpu);
	*r = regs[cpu];
	return 0;
}

static int f_set_regs(void *o, unsigned cpu, const struct gdb_regs *r)
{
	FZ_ASSERT(cpu < 2, "set_regs of vCPU %u", cpu);
	regs[cpu] = *r;
	return 0;
}

static int f_translate(void *o, unsigned cpu, uint64_t gva, uint64_t *gpa, uint64_t *left)
{
	FZ_ASSERT(cpu < 2, "translate on vCPU %u", cpu);
	if (gva < BASE || gva - BASE >= MEM)
		return -EFAULT;
	*gpa = gva - BASE;
	*left = 0x1000 - (gva & 0xfff);
	return 0;
}

static int f_read(void *o, uint64_t gpa, void *buf, size_t len)
{
	if (gpa >= MEM || len > MEM - gpa)
		return -EFAULT;
	memcpy(buf, mem + gpa, len);
	return 0;
}

static int f_write(void *o, uint64_t gpa, const void *buf, size_t len)
{
	if (gpa >= MEM || len > MEM - gpa)
		return -EFAULT;
	memcpy(mem + gpa, buf, len);
	memcpy(orig + gpa, buf, len); /* what the guest's memory should now hold */
	return 0;
}

static int f_resume(void *o, const struct gdb_resume *r)
{
	for (unsigned i = 2; i < GDB_MAX_CPUS; i++)
		FZ_ASSERT(r->action[i] == GDB_STAY, "action for vCPU %u", i);
	return 0;
}

static void f_kill(void *o)
{
}

static void f_send(void *o, const char *p, size_t len)
{
	static char frame[RSP_MAX_FRAME];

	FZ_ASSERT(len <= RSP_MAX_PAYLOAD, "reply of %zu bytes", len);
	FZ_ASSERT(rsp_encode(p, len, frame, sizeof(frame)) > 0, "reply does not frame");
}

static const struct gdb_target target = {
	.ncpus = 2,
	.get_regs = f_get_regs,
	.set_regs = f_set_regs,
	.translate = f_translate,
	.read_phys = f_read,
	.write_phys = f_write,
	.resume = f_resume,
	.kill = f_kill,
	.send = f_send,
};

/* The int3s the session put in: writes through f_write updated orig, so they differ. */
static void check_breakpoints(void)
{
	for (unsigned i = 0; i < GDB_MAX_SW_BP; i++) {
		const struct gdb_sw_bp *b = &sess.sw[i];

		if (b->used)
			FZ_ASSERT(b->gpa < MEM && mem[b->gpa] == 0xcc, "breakpoint %u not in", i);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct rsp_parser p;

	for (unsigned i = 0; i < MEM; i++)
		mem[i] = (uint8_t)(i * 7);
	memset(regs, 0, sizeof(regs));
	rsp_init(&p);
	gdb_session_init(&sess, &target);
	for (size_t i = 0; i < size && sess.state != GDB_DETACHED; i++) {
		switch (rsp_feed(&p, data[i])) {
		case RSP_PACKET:
			FZ_ASSERT(p.len <= RSP_MAX_PAYLOAD, "packet of %zu bytes", p.len);
			if (gdb_session_packet(&sess, p.buf, p.len) != GDB_RUNNING)
				break;
			/* The checksum's last digit picks the stop: an int3, or DR6 bits. */
			if (data[i] & 2)
				gdb_session_stopped_hw(&sess, data[i] & 1, data[i] >> 2);
			else
				gdb_session_stopped(&sess, data[i] & 1, GDB_STOP_SW_BP);
			break;
		case RSP_INTERRUPT:
			if (sess.state == GDB_RUNNING)
				gdb_session_stopped(&sess, 0, GDB_STOP_INTERRUPT);
			break;
		default:
			break;
		}
		check_breakpoints();
	}
	/* The connection closes: whatever was inserted comes out. */
	if (sess.state != GDB_DETACHED) {
		memcpy(orig, mem, MEM);
		for (unsigned i = 0; i < GDB_MAX_SW_BP; i++)
			if (sess.sw[i].used)
				orig[sess.sw[i].gpa] = sess.sw[i].orig;
		gdb_session_detach(&sess);
		FZ_ASSERT(!memcmp(mem, orig, MEM), "detach left memory changed");
	}
	FZ_ASSERT(gdb_session_sw_bps(&sess) == 0, "breakpoints left after detach");
	return 0;
}

static void seed(const char *name, const char *packets)
{
	struct fz_seed s;
	char frame[RSP_MAX_FRAME];

	fz_seed_start(&s);
	/* Each ';'-free line of @packets is one packet, framed as gdb would. */
	for (const char *p = packets; *p;) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);

		fz_put_bytes(&s, frame, rsp_encode(p, len, frame, sizeof(frame)));
		fz_put_bytes(&s, "+", 1);
		p += len + (nl ? 1 : 0);
	}
	fz_seed_write(&s, name);
}

void fuzz_seeds(void)
{
	/* What gdb 13 sends when it attaches, reads, steps, breaks and detaches. */
	seed("attach", "qSupported:multiprocess+;swbreak+;hwbreak+;qRelocInsn+;fork-events+\n"
		       "vMustReplyEmpty\nQStartNoAckMode\nHgp0.0\n"
		       "qXfer:features:read:target.xml:0,ffb\nqTStatus\n?\nqfThreadInfo\n"
		       "qsThreadInfo\nqAttached\nHc-1\nqC\nqOffsets\ng\n");
	seed("memory", "m400000,40\nM400010,4:01020304\nX400020,2:ab\nm400ff0,20\nm0,4\n"
		       "p10\nP10=0000400000000000\nG00\n");
	seed("breakpoints", "Z0,400100,1\nZ1,400200,1\nm400100,1\nvCont;c\nz0,400100,1\n"
			    "z1,400200,1\nvCont;s:1;c\nvCont;s:2\nD\n");
	seed("threads", "Hg2\nqC\nT1\nT3\nqThreadExtraInfo,2\nHc2\ns\nc400010\nC05;400020\nk\n");
}
