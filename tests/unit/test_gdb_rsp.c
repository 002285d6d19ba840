// SPDX-License-Identifier: BSD-2-Clause
/*
 * The gdb stub's pure parts: packet framing (gdb/rsp.c), the page walk (gdb/pagewalk.c) over a
 * fake guest memory, and the session (gdb/session.c) against a fake target.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "gdb/gdbstub.h"
#include "gdb/pagewalk.h"
#include "gdb/rsp.h"
#include "gdb/session.h"

/* ---- framing ---- */

/* Feed @s; returns the last event that was not RSP_NONE. */
static enum rsp_event feed(struct rsp_parser *p, const char *s, size_t n)
{
	enum rsp_event last = RSP_NONE, e;

	for (size_t i = 0; i < n; i++)
		if ((e = rsp_feed(p, (uint8_t)s[i])) != RSP_NONE)
			last = e;
	return last;
}

#define FEED(p, lit) feed(p, lit, sizeof(lit) - 1)

static void test_packet_checksum(void **state)
{
	struct rsp_parser p;

	rsp_init(&p);
	assert_int_equal(FEED(&p, "$g#67"), RSP_PACKET);
	assert_int_equal(p.len, 1);
	assert_string_equal((char *)p.buf, "g");
	/* A wrong checksum, a non-hex checksum digit */
	assert_int_equal(FEED(&p, "$g#68"), RSP_BAD);
	assert_int_equal(FEED(&p, "$g#6z"), RSP_BAD);
	/* Upper-case checksum digits are fine; noise between packets is ignored. */
	assert_int_equal(FEED(&p, "xx$qC#B4"), RSP_PACKET);
	assert_string_equal((char *)p.buf, "qC");
	assert_int_equal(FEED(&p, "\x03"), RSP_INTERRUPT);
	assert_int_equal(FEED(&p, "+"), RSP_ACK);
	assert_int_equal(FEED(&p, "-"), RSP_NAK);
	/* A '$' inside a packet starts over. */
	assert_int_equal(FEED(&p, "$junk$g#67"), RSP_PACKET);
	assert_string_equal((char *)p.buf, "g");
}

static void test_packet_escape_rle(void **state)
{
	struct rsp_parser p;
	char frame[64];
	size_t n;

	rsp_init(&p);
	/* '}' escapes: "}\x03" is '#' (0x23). Checksum over the raw bytes. */
	n = rsp_encode("a#b$c}d*e", 9, frame, sizeof(frame));
	assert_true(n > 0);
	assert_null(memchr(frame + 1, '$', n - 1));
	assert_int_equal(feed(&p, frame, n), RSP_PACKET);
	assert_int_equal(p.len, 9);
	assert_memory_equal(p.buf, "a#b$c}d*e", 9);
	/* Run-length: "0* " is '0' and 3 more ("0000"). */
	assert_int_equal(FEED(&p, "$0* #7a"), RSP_PACKET);
	assert_string_equal((char *)p.buf, "0000");
	/* A count with nothing before it is refused. */
	assert_int_equal(FEED(&p, "$* #4a"), RSP_BAD);
	/* Long runs encode and decode back, 6 and 7 repeats avoid '#' and '$'. */
	for (size_t len = 1; len < 300; len++) {
		char in[300], out[700];

		memset(in, '0', len);
		n = rsp_encode(in, len, out, sizeof(out));
		assert_true(n > 0);
		assert_null(memchr(out + 1, '$', n - 1));
		assert_null(memchr(out + 1, '#', n - 4));
		assert_int_equal(feed(&p, out, n), RSP_PACKET);
		assert_int_equal(p.len, len);
		assert_memory_equal(p.buf, in, len);
	}
	/* Too small an output buffer is refused. */
	assert_int_equal(rsp_encode("abcdef", 6, frame, 5), 0);
}

static void test_packet_too_long(void **state)
{
	struct rsp_parser p;
	char *big = malloc(RSP_MAX_PAYLOAD + 10);

	rsp_init(&p);
	memset(big, 'a', RSP_MAX_PAYLOAD + 10);
	big[0] = '$';
	assert_int_equal(feed(&p, big, RSP_MAX_PAYLOAD + 10), RSP_NONE);
	/* Whatever the checksum, an overlong packet is bad, and the next one is fine. */
	assert_int_equal(FEED(&p, "#00"), RSP_BAD);
	assert_int_equal(FEED(&p, "$g#67"), RSP_PACKET);
	/* A run-length count that overflows the buffer spoils the packet too. */
	memset(big, '~', RSP_MAX_PAYLOAD + 10);
	big[0] = '$';
	big[1] = 'a';
	for (int i = 2; i < 200; i += 2)
		big[i] = '*';
	assert_int_equal(feed(&p, big, 200), RSP_NONE);
	assert_int_equal(FEED(&p, "#00"), RSP_BAD);
	free(big);
}

static void test_hex(void **state)
{
	const char *s = "ffffffffffffffff,1", *t = "1ffffffffffffffff", *u = ",";
	uint64_t v;
	uint8_t b[4];

	assert_int_equal(rsp_hex_u64(&s, s + strlen(s), &v), 0);
	assert_true(v == UINT64_MAX);
	assert_int_equal(*s, ',');
	/* 17 digits, and none, are refused. */
	assert_int_equal(rsp_hex_u64(&t, t + strlen(t), &v), -1);
	assert_int_equal(rsp_hex_u64(&u, u + 1, &v), -1);
	/* The end bound is kept. */
	s = "12345";
	assert_int_equal(rsp_hex_u64(&s, s + 2, &v), 0);
	assert_true(v == 0x12);
	assert_int_equal(rsp_hex_decode("deadBEEF", 4, b), 0);
	assert_memory_equal(b, "\xde\xad\xbe\xef", 4);
	assert_int_equal(rsp_hex_decode("de:d", 2, b), -1);
	assert_int_equal(rsp_hex_decode("d", 1, b), -1); /* NUL is not a digit */
}

/* ---- the page walk, over a fake guest memory ---- */

#define FAKE_RAM (8 << 20)
static uint8_t *ram;

static int fake_read8(void *opaque, uint64_t gpa, uint64_t *val)
{
	if (gpa > FAKE_RAM - 8)
		return -1;
	memcpy(val, ram + gpa, 8);
	return 0;
}

static void pte(uint64_t table, unsigned idx, uint64_t val)
{
	memcpy(ram + table + 8 * idx, &val, 8);
}

static void pte32(uint64_t table, unsigned idx, uint32_t val)
{
	memcpy(ram + table + 4 * idx, &val, 4);
}

static int walk(const struct pw_cpu *c, uint64_t gva, uint64_t *gpa, uint64_t *left)
{
	return pagewalk(c, fake_read8, NULL, gva, gpa, left);
}

static void test_pagewalk_long(void **state)
{
	/* PML4 at 0x1000, PDPT 0x2000, PD 0x3000, PT 0x4000. */
	struct pw_cpu c = { .cr0 = 0x80000011, .cr3 = 0x1000, .cr4 = 0x20, .efer = 0x500 };
	uint64_t gpa, left;

	ram = calloc(1, FAKE_RAM);
	pte(0x1000, 0, 0x2003);
	pte(0x1000, 511, 0x2003); /* the top of the address space too */
	pte(0x2000, 0, 0x3003);
	pte(0x2000, 1, 0x40000083);	       /* 1 GiB page at 1 GiB → 0x40000000 */
	pte(0x3000, 0, 0x4003);		       /* 4 KiB pages for 0-2 MiB */
	pte(0x3000, 1, 0x00600083);	       /* 2 MiB page at 2 MiB → 6 MiB */
	pte(0x4000, 5, 0x8000000000007003ULL); /* NX set: still readable for a debugger */
	assert_int_equal(walk(&c, 0x5123, &gpa, &left), 0);
	assert_true(gpa == 0x7123);
	assert_true(left == 0x1000 - 0x123);
	assert_int_equal(walk(&c, 0x200010, &gpa, &left), 0);
	assert_true(gpa == 0x600010);
	assert_true(left == 0x200000 - 0x10);
	assert_int_equal(walk(&c, 0x40000000 + 0x12345, &gpa, &left), 0);
	assert_true(gpa == 0x40012345);
	assert_true(left == (1ULL << 30) - 0x12345);
	/* A page not present, a table not present, a non-canonical address. */
	assert_int_equal(walk(&c, 0x6000, &gpa, &left), -EFAULT);
	assert_int_equal(walk(&c, 0x80000000, &gpa, &left), -EFAULT);
	assert_int_equal(walk(&c, 0x0000800000000000ULL, &gpa, &left), -EFAULT);
	assert_int_equal(walk(&c, 0xffffff8000005000ULL, &gpa, &left), 0);
	assert_true(gpa == 0x7000);
	/* A hostile table pointing outside RAM only fails the walk. */
	pte(0x3000, 2, 0x000ffffffffff003ULL);
	assert_int_equal(walk(&c, 0x400000, &gpa, &left), -EFAULT);
	/* 5-level paging: one more table on top (PML5 at 0x5000). */
	c.cr4 |= 1 << 12;
	c.cr3 = 0x5000;
	pte(0x5000, 0, 0x1003);
	assert_int_equal(walk(&c, 0x5123, &gpa, &left), 0);
	assert_true(gpa == 0x7123);
	assert_int_equal(walk(&c, 0x0000800000000000ULL, &gpa, &left), -EFAULT);
	free(ram);
}

static void test_pagewalk_legacy(void **state)
{
	struct pw_cpu real = { .cr0 = 0x10 };
	struct pw_cpu pae = { .cr0 = 0x80000011, .cr3 = 0x1020, .cr4 = 0x20 };
	struct pw_cpu p32 = { .cr0 = 0x80000011, .cr3 = 0x2000, .cr4 = 0x10 };
	uint64_t gpa, left;

	ram = calloc(1, FAKE_RAM);
	/* No paging: identity on 32 bits. */
	assert_int_equal(walk(&real, 0xb8000, &gpa, &left), 0);
	assert_true(gpa == 0xb8000 && left == 0x1000);
	assert_int_equal(walk(&real, 0x100000000ULL, &gpa, &left), -EFAULT);
	/* PAE: 4 PDPTEs at CR3 (32-byte aligned), 2 MiB page in the PD at 0x3000. */
	pte(0x1020, 3, 0x3001);
	pte(0x3000, 511, 0x00400083);
	assert_int_equal(walk(&pae, 0xffe00000 + 0x42, &gpa, &left), 0);
	assert_true(gpa == 0x400042);
	assert_int_equal(walk(&pae, 0x42, &gpa, &left), -EFAULT);
	assert_int_equal(walk(&pae, 0x100000000ULL, &gpa, &left), -EFAULT);
	/* 32-bit: a 4 MiB page (PSE) and a 4 KiB page through the PT at 0x4000. */
	pte32(0x2000, 1, 0x00400083);
	pte32(0x2000, 2, 0x4003);
	pte32(0x4000, 3, 0x6003);
	assert_int_equal(walk(&p32, 0x00400000 + 0x1234, &gpa, &left), 0);
	assert_true(gpa == 0x401234);
	assert_true(left == (4 << 20) - 0x1234);
	assert_int_equal(walk(&p32, 0x00803010, &gpa, &left), 0);
	assert_true(gpa == 0x6010);
	/* PSE-36: PDE bits 20:13 are address bits 39:32. */
	pte32(0x2000, 3, 0x00c00083 | (0x5 << 13));
	assert_int_equal(walk(&p32, 0x00c00000, &gpa, &left), 0);
	assert_true(gpa == 0x500c00000ULL);
	free(ram);
}

/* ---- the session, against a fake target ---- */

#define NCPUS 2
#define MEM 0x10000

static struct {
	uint8_t mem[MEM];
	struct gdb_regs regs[NCPUS];
	struct gdb_resume last;
	int resumes, kills;
	char out[RSP_MAX_PAYLOAD + 1];
	size_t outlen;
} ft;

static int ft_get_regs(void *o, unsigned cpu, struct gdb_regs *r)
{
	assert_true(cpu < NCPUS);
	*r = ft.regs[cpu];
	return 0;
}

static int ft_set_regs(void *o, unsigned cpu, const struct gdb_regs *r)
{
	assert_true(cpu < NCPUS);
	ft.regs[cpu] = *r;
	return 0;
}

/* Virtual 0x400000 + x is physical x (cpu 0); cpu 1 sees it one page on. */
static int ft_translate(void *o, unsigned cpu, uint64_t gva, uint64_t *gpa, uint64_t *left)
{
	if (gva < 0x400000 || gva - 0x400000 >= MEM)
		return -EFAULT;
	*gpa = gva - 0x400000 + (cpu ? 0x1000 : 0);
	*left = 0x1000 - (gva & 0xfff);
	return 0;
}

static int ft_read(void *o, uint64_t gpa, void *buf, size_t len)
{
	if (gpa >= MEM || len > MEM - gpa)
		return -EFAULT;
	memcpy(buf, ft.mem + gpa, len);
	return 0;
}

static int ft_write(void *o, uint64_t gpa, const void *buf, size_t len)
{
	if (gpa >= MEM || len > MEM - gpa)
		return -EFAULT;
	memcpy(ft.mem + gpa, buf, len);
	return 0;
}

static int ft_resume(void *o, const struct gdb_resume *r)
{
	ft.last = *r;
	ft.resumes++;
	return 0;
}

static void ft_kill(void *o)
{
	ft.kills++;
}

static void ft_send(void *o, const char *p, size_t len)
{
	assert_true(len <= RSP_MAX_PAYLOAD);
	memcpy(ft.out, p, len);
	ft.out[len] = '\0';
	ft.outlen = len;
}

static const struct gdb_target ftarget = {
	.ncpus = NCPUS,
	.get_regs = ft_get_regs,
	.set_regs = ft_set_regs,
	.translate = ft_translate,
	.read_phys = ft_read,
	.write_phys = ft_write,
	.resume = ft_resume,
	.kill = ft_kill,
	.send = ft_send,
};

static struct gdb_session sess;

static enum gdb_state cmd(const char *p)
{
	ft.out[0] = '\0';
	ft.outlen = (size_t)-1;
	return gdb_session_packet(&sess, (const uint8_t *)p, strlen(p));
}

static void session_setup(void)
{
	memset(&ft, 0, sizeof(ft));
	for (unsigned i = 0; i < MEM; i++)
		ft.mem[i] = (uint8_t)i;
	ft.regs[0].rip = 0x401000;
	ft.regs[1].rip = 0x402000;
	ft.regs[0].gpr[0] = 0x1122334455667788ULL;
	gdb_session_init(&sess, &ftarget);
}

static void test_session_queries(void **state)
{
	session_setup();
	cmd("qSupported:multiprocess+;swbreak+");
	assert_non_null(strstr(ft.out, "PacketSize=1000"));
	assert_non_null(strstr(ft.out, "qXfer:features:read+"));
	cmd("?");
	assert_string_equal(ft.out, "T05thread:1;");
	cmd("qfThreadInfo");
	assert_string_equal(ft.out, "m1,2");
	cmd("qsThreadInfo");
	assert_string_equal(ft.out, "l");
	cmd("qC");
	assert_string_equal(ft.out, "QC1");
	cmd("T2");
	assert_string_equal(ft.out, "OK");
	cmd("T3");
	assert_string_equal(ft.out, "E03");
	cmd("Hg2");
	assert_string_equal(ft.out, "OK");
	cmd("qC");
	assert_string_equal(ft.out, "QC2");
	cmd("Hg9");
	assert_true(ft.out[0] == 'E');
	cmd("vCont?");
	assert_string_equal(ft.out, "vCont;c;C;s;S");
	cmd("vMustReplyEmpty");
	assert_int_equal(ft.outlen, 0);
	cmd("qAttached");
	assert_string_equal(ft.out, "1");
}

static void test_session_target_xml(void **state)
{
	const char *xml = gdb_target_xml();
	size_t total = strlen(xml), got = 0;
	char *copy = calloc(1, total + 1);

	session_setup();
	assert_non_null(strstr(xml, "<architecture>i386:x86-64</architecture>"));
	assert_non_null(strstr(xml, "org.gnu.gdb.i386.core"));
	/* Read it in pieces of 100 as gdb does: m...m...l */
	for (;;) {
		char q[80];

		snprintf(q, sizeof(q), "qXfer:features:read:target.xml:%zx,64", got);
		cmd(q);
		assert_true(ft.out[0] == 'm' || ft.out[0] == 'l');
		assert_true(got + ft.outlen - 1 <= total);
		memcpy(copy + got, ft.out + 1, ft.outlen - 1);
		got += ft.outlen - 1;
		if (ft.out[0] == 'l')
			break;
	}
	assert_int_equal(got, total);
	assert_string_equal(copy, xml);
	cmd("qXfer:features:read:other.xml:0,100");
	assert_true(ft.out[0] == 'E');
	free(copy);
}

static void test_session_regs(void **state)
{
	char g[1300];

	session_setup();
	cmd("g");
	/* 600 bytes of registers: 16 GPRs, rip, eflags, segments, x87, sse, bases, sys. */
	assert_int_equal(ft.outlen, 1200);
	assert_memory_equal(ft.out, "8877665544332211", 16);
	assert_memory_equal(ft.out + 16 * 16, "0010400000000000", 16); /* rip */
	cmd("p10");
	assert_string_equal(ft.out, "0010400000000000");
	cmd("p41");
	assert_true(ft.out[0] == 'E');
	cmd("P10=0020400000000000");
	assert_string_equal(ft.out, "OK");
	assert_true(ft.regs[0].rip == 0x402000);
	cmd("P10=00204000");
	assert_true(ft.out[0] == 'E'); /* short */
	cmd("P10=002040000000000z");
	assert_true(ft.out[0] == 'E');
	/* G writes back what g read, and refuses the wrong length. */
	cmd("g");
	g[0] = 'G';
	memcpy(g + 1, ft.out, ft.outlen + 1);
	g[1] = 'f';
	cmd(g);
	assert_string_equal(ft.out, "OK");
	assert_true(ft.regs[0].gpr[0] == 0x11223344556677f8ULL);
	g[100] = '\0';
	cmd(g);
	assert_true(ft.out[0] == 'E');
	/* Hg selects the vCPU whose registers g reads. */
	cmd("Hg2");
	cmd("p10");
	assert_string_equal(ft.out, "0020400000000000");
}

static void test_session_memory(void **state)
{
	session_setup();
	cmd("m400010,4");
	assert_string_equal(ft.out, "10111213");
	/* Across a page boundary, and partly outside memory: what could be read. */
	cmd("m400ffe,4");
	assert_string_equal(ft.out, "feff0001");
	cmd("m40fffe,8");
	assert_string_equal(ft.out, "feff");
	cmd("m0,4");
	assert_string_equal(ft.out, "E0e");
	cmd("mffffffffffffffff,ffffffffffffffff");
	assert_true(ft.out[0] == 'E');
	cmd("m400000,zz");
	assert_true(ft.out[0] == 'E');
	/* A huge length is cut to what a reply holds. */
	cmd("m400000,100000");
	assert_int_equal(ft.outlen, RSP_MAX_PAYLOAD);
	cmd("M400020,2:abcd");
	assert_string_equal(ft.out, "OK");
	assert_int_equal(ft.mem[0x20], 0xab);
	assert_int_equal(ft.mem[0x21], 0xcd);
	cmd("M400020,2:abc");
	assert_true(ft.out[0] == 'E');
	cmd("M400020,1:abcd");
	assert_true(ft.out[0] == 'E');
	cmd("M0,1:ab");
	assert_true(ft.out[0] == 'E');
	/* X: binary (the parser already removed the escapes) */
	assert_int_equal(gdb_session_packet(&sess, (const uint8_t *)"X400030,3:\0#}", 13),
			 GDB_STOPPED);
	assert_string_equal(ft.out, "OK");
	assert_memory_equal(ft.mem + 0x30, "\0#}", 3);
	cmd("X400030,4:abc");
	assert_true(ft.out[0] == 'E');
	/* Hg2: the other vCPU's address space. */
	cmd("Hg2");
	cmd("m400010,1");
	assert_string_equal(ft.out, "10");
	assert_int_equal(ft.mem[0x1010], 0x10);
}

static void test_session_breakpoints(void **state)
{
	session_setup();
	cmd("Z0,400040,1");
	assert_string_equal(ft.out, "OK");
	assert_int_equal(ft.mem[0x40], 0xcc);
	assert_int_equal(gdb_session_sw_bps(&sess), 1);
	assert_true(gdb_session_is_sw_bp(&sess, 0x40));
	/* Reads show the original byte; a write over it changes what z0 puts back. */
	cmd("m40003f,3");
	assert_string_equal(ft.out, "3f4041");
	cmd("M400040,1:77");
	assert_int_equal(ft.mem[0x40], 0xcc);
	cmd("m400040,1");
	assert_string_equal(ft.out, "77");
	/* Twice is once; bad kinds, unknown types, unmapped addresses. */
	cmd("Z0,400040,1");
	assert_int_equal(gdb_session_sw_bps(&sess), 1);
	cmd("Z0,400041,2");
	assert_true(ft.out[0] == 'E');
	cmd("Z3,400040,4");
	assert_int_equal(ft.outlen, 0);
	cmd("Z5,400040,1");
	assert_int_equal(ft.outlen, 0);
	cmd("Z0,10,1");
	assert_true(ft.out[0] == 'E');
	cmd("Z0,400040");
	assert_true(ft.out[0] == 'E');
	/* A continue hands the breakpoints to the target. */
	assert_int_equal(cmd("c"), GDB_RUNNING);
	assert_true(ft.last.sw_bp);
	assert_int_equal(ft.last.action[0], GDB_CONT);
	assert_int_equal(ft.last.action[1], GDB_CONT);
	/* Packets while running are dropped; the stop reply comes with the stop. */
	cmd("g");
	assert_int_equal(ft.outlen, (size_t)-1);
	gdb_session_stopped(&sess, 1, GDB_STOP_SW_BP);
	assert_string_equal(ft.out, "T05thread:2;swbreak:;");
	cmd("z0,400040,1");
	assert_string_equal(ft.out, "OK");
	assert_int_equal(ft.mem[0x40], 0x77);
	assert_int_equal(gdb_session_sw_bps(&sess), 0);
	/* Hardware: four debug registers, then no room. */
	for (int i = 0; i < 4; i++) {
		char z[32];

		snprintf(z, sizeof(z), "Z1,40010%d,1", i);
		cmd(z);
		assert_string_equal(ft.out, "OK");
	}
	cmd("Z1,400200,1");
	assert_string_equal(ft.out, "E1c");
	cmd("z1,400102,1");
	cmd("vCont;c");
	assert_false(ft.last.sw_bp);
	assert_true(ft.last.dr[0] == 0x400100 && ft.last.dr[3] == 0x400103);
	assert_true(ft.last.dr7 == (0x600 | 0x02 | 0x08 | 0x80));
}

static void test_session_resume(void **state)
{
	session_setup();
	/* vCont: the leftmost action naming a thread wins; bare actions apply to the rest. */
	assert_int_equal(cmd("vCont;s:2;c"), GDB_RUNNING);
	assert_int_equal(ft.last.action[0], GDB_CONT);
	assert_int_equal(ft.last.action[1], GDB_STEP);
	gdb_session_stopped(&sess, 1, GDB_STOP_STEP);
	assert_string_equal(ft.out, "T05thread:2;");
	assert_int_equal(cmd("vCont;s:1"), GDB_RUNNING);
	assert_int_equal(ft.last.action[0], GDB_STEP);
	assert_int_equal(ft.last.action[1], GDB_STAY);
	gdb_session_stopped(&sess, 0, GDB_STOP_INTERRUPT);
	assert_string_equal(ft.out, "T02thread:1;");
	ft.resumes = 0;
	assert_int_equal(cmd("vCont;x"), GDB_STOPPED);
	assert_int_equal(cmd("vCont;s:5"), GDB_STOPPED);
	assert_int_equal(cmd("vCont;c:1;"), GDB_STOPPED);
	assert_int_equal(cmd("vCont"), GDB_STOPPED);
	assert_int_equal(ft.resumes, 0);
	/* s steps the stopped vCPU alone; c addr moves rip first; C ignores the signal. */
	assert_int_equal(cmd("s"), GDB_RUNNING);
	assert_int_equal(ft.last.action[0], GDB_STEP);
	assert_int_equal(ft.last.action[1], GDB_STAY);
	gdb_session_stopped(&sess, 0, GDB_STOP_STEP);
	assert_int_equal(cmd("c400500"), GDB_RUNNING);
	assert_true(ft.regs[0].rip == 0x400500);
	gdb_session_stopped(&sess, 0, GDB_STOP_STEP);
	assert_int_equal(cmd("C05;400600"), GDB_RUNNING);
	assert_true(ft.regs[0].rip == 0x400600);
	gdb_session_stopped(&sess, 0, GDB_STOP_STEP);
	assert_int_equal(cmd("cxyz"), GDB_STOPPED);
	assert_true(ft.out[0] == 'E');
	/* Hc2 then c: only that vCPU runs. */
	cmd("Hc2");
	assert_int_equal(cmd("c"), GDB_RUNNING);
	assert_int_equal(ft.last.action[0], GDB_STAY);
	assert_int_equal(ft.last.action[1], GDB_CONT);
	gdb_session_stopped(&sess, 1, GDB_STOP_INTERRUPT);
	/* D: breakpoints out, everything runs, nothing more is answered. */
	cmd("Z0,400040,1");
	assert_int_equal(cmd("D"), GDB_DETACHED);
	assert_string_equal(ft.out, "OK");
	assert_int_equal(ft.mem[0x40], 0x40);
	assert_int_equal(ft.last.action[0], GDB_CONT);
	assert_int_equal(ft.last.action[1], GDB_CONT);
	assert_false(ft.last.sw_bp);
	assert_int_equal(cmd("g"), GDB_DETACHED);
	assert_int_equal(ft.outlen, (size_t)-1);
}

static void test_session_kill(void **state)
{
	session_setup();
	cmd("Z0,400040,1");
	assert_int_equal(cmd("k"), GDB_DETACHED);
	assert_int_equal(ft.kills, 1);
	assert_int_equal(ft.mem[0x40], 0x40);
}

/* Z2 and Z4 take debug registers with their condition and length; the stop names them. */
static void test_session_watchpoints(void **state)
{
	session_setup();
	/* Lengths 1, 2, 4, 8, aligned; no read-only watchpoints on x86. */
	cmd("Z2,400041,4");
	assert_string_equal(ft.out, "E16");
	cmd("Z2,400040,3");
	assert_string_equal(ft.out, "E16");
	cmd("Z3,400040,4");
	assert_int_equal(ft.outlen, 0);
	cmd("Z1,400100,1");
	assert_string_equal(ft.out, "OK");
	cmd("Z2,400040,4");
	assert_string_equal(ft.out, "OK");
	cmd("Z4,400048,8");
	assert_string_equal(ft.out, "OK");
	cmd("Z2,400050,2");
	assert_string_equal(ft.out, "OK");
	cmd("Z2,400060,1");
	assert_string_equal(ft.out, "E1c"); /* four debug registers in all */
	/* A write watchpoint and an access one at one address are two. */
	cmd("z2,400050,2");
	cmd("Z4,400040,4");
	assert_string_equal(ft.out, "OK");
	assert_int_equal(cmd("c"), GDB_RUNNING);
	assert_true(ft.last.dr[0] == 0x400100 && ft.last.dr[1] == 0x400040 &&
		    ft.last.dr[2] == 0x400048 && ft.last.dr[3] == 0x400040);
	/* DR7: G0-G3; RW/LEN 0: exec/1; 1: write/4 (01/11); 2: access/8 (11/10); 3: access/4. */
	assert_true(ft.last.dr7 == (0x600 | 0xaa | (0x0ULL << 16) | (0xdULL << 20) |
				    (0xbULL << 24) | (0xfULL << 28)));
	/* DR6 B1: the write watchpoint, named by its address. */
	gdb_session_stopped_hw(&sess, 1, 0x2);
	assert_string_equal(ft.out, "T05thread:2;watch:400040;");
	assert_int_equal(cmd("c"), GDB_RUNNING);
	gdb_session_stopped_hw(&sess, 0, 0x4);
	assert_string_equal(ft.out, "T05thread:1;awatch:400048;");
	assert_int_equal(cmd("c"), GDB_RUNNING);
	gdb_session_stopped_hw(&sess, 0, 0x1);
	assert_string_equal(ft.out, "T05thread:1;hwbreak:;");
	/* Removal matches the type and length: z2 of a Z4 leaves it. */
	cmd("z2,400048,8");
	assert_string_equal(ft.out, "OK");
	assert_int_equal(cmd("c"), GDB_RUNNING);
	assert_true(ft.last.dr[2] == 0x400048 && (ft.last.dr7 & 0x20));
	gdb_session_stopped(&sess, 0, GDB_STOP_INTERRUPT);
	cmd("z4,400048,8");
	cmd("z4,400040,4");
	cmd("z2,400040,4");
	cmd("z1,400100,1");
	assert_int_equal(cmd("c"), GDB_RUNNING);
	assert_true(ft.last.dr7 == 0);
	/* A bit of a free slot says nothing: a plain hardware stop. */
	gdb_session_stopped_hw(&sess, 0, 0x8);
	assert_string_equal(ft.out, "T05thread:1;hwbreak:;");
}

/* A host that cannot stop on an int3 (PVM): Z0 is an error, never "", or gdb writes one. */
static void test_session_no_sw_bp(void **state)
{
	struct gdb_target t = ftarget;

	session_setup();
	t.no_sw_bp = true;
	gdb_session_init(&sess, &t);
	cmd("Z0,400040,1");
	assert_string_equal(ft.out, "E5f");
	assert_int_equal(ft.mem[0x40], 0x40);
	assert_int_equal(gdb_session_sw_bps(&sess), 0);
	cmd("z0,400040,1");
	assert_string_equal(ft.out, "OK");
	cmd("Z1,400040,1");
	assert_string_equal(ft.out, "OK");
	/* Nor does it stop on a data breakpoint. */
	t.no_watch = true;
	cmd("Z2,400040,4");
	assert_string_equal(ft.out, "E5f");
	cmd("Z4,400040,4");
	assert_string_equal(ft.out, "E5f");
	assert_int_equal(cmd("c"), GDB_RUNNING);
	assert_false(ft.last.sw_bp);
	assert_true(ft.last.dr7 == (0x600 | 0x02));
	assert_true(ft.last.dr[0] == 0x400040);
}

static void opt_ok(const char *arg, const char *port, const char *addr, const char *wait)
{
	struct config cfg;
	char err[256] = "";

	config_init(&cfg);
	assert_int_equal(gdbstub_parse_opt(&cfg, arg, err, sizeof(err)), 0);
	assert_string_equal(config_get(&cfg, "gdb.port"), port);
	if (addr)
		assert_string_equal(config_get(&cfg, "gdb.address"), addr);
	else
		assert_null(config_get(&cfg, "gdb.address"));
	if (wait)
		assert_string_equal(config_get(&cfg, "gdb.wait"), wait);
	else
		assert_null(config_get(&cfg, "gdb.wait"));
	config_free(&cfg);
}

static void opt_bad(const char *arg)
{
	struct config cfg;
	char err[256] = "";

	config_init(&cfg);
	assert_int_equal(gdbstub_parse_opt(&cfg, arg, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "-G"));
	assert_null(config_get(&cfg, "gdb.port"));
	config_free(&cfg);
}

/* bhyve's -G [w][bind_addr:]port into gdb.port, gdb.address, gdb.wait. */
static void test_gdb_option(void **state)
{
	opt_ok("1234", "1234", NULL, NULL);
	opt_ok("w1234", "1234", NULL, "true");
	opt_ok("w127.0.0.1:1234", "1234", "127.0.0.1", "true");
	opt_ok("0.0.0.0:0", "0", "0.0.0.0", NULL);
	opt_ok("[::1]:65535", "65535", "::1", NULL);
	opt_ok("localhost:9", "9", "localhost", NULL);
	opt_bad("");
	opt_bad("w");
	opt_bad("ww1234");
	opt_bad("gdb");
	opt_bad("65536");
	opt_bad("12x");
	opt_bad(":1234");
	opt_bad("127.0.0.1:");
	opt_bad("-1");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_packet_checksum),
		cmocka_unit_test(test_packet_escape_rle),
		cmocka_unit_test(test_packet_too_long),
		cmocka_unit_test(test_hex),
		cmocka_unit_test(test_pagewalk_long),
		cmocka_unit_test(test_pagewalk_legacy),
		cmocka_unit_test(test_session_queries),
		cmocka_unit_test(test_session_target_xml),
		cmocka_unit_test(test_session_regs),
		cmocka_unit_test(test_session_memory),
		cmocka_unit_test(test_session_breakpoints),
		cmocka_unit_test(test_session_resume),
		cmocka_unit_test(test_session_kill),
		cmocka_unit_test(test_session_watchpoints),
		cmocka_unit_test(test_session_no_sw_bp),
		cmocka_unit_test(test_gdb_option),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
