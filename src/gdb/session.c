// SPDX-License-Identifier: BSD-2-Clause
/* GDB remote protocol commands against a struct gdb_target (see session.h). */
#include "gdb/session.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#define INT3 0xcc
/* DR7: global enable of breakpoint n (bits 1, 3, 5, 7); GE, and bit 10 which reads as 1. */
#define DR7_G(n) (2ULL << (2 * (n)))
#define DR7_FIXED 0x600ULL
/* DR7's condition and length of breakpoint n: two bits each, from bit 16 + 4n. */
#define DR7_RW(n, rw) ((uint64_t)(rw) << (16 + 4 * (n)))
#define DR7_LEN(n, l) ((uint64_t)(l) << (18 + 4 * (n)))
#define DR7_RW_EXEC 0
#define DR7_RW_WRITE 1
#define DR7_RW_ACCESS 3
#define SIGINT_GDB 2
#define SIGTRAP_GDB 5

/* ---- registers and target.xml ---- */

struct gdb_reg {
	const char *name;
	unsigned bits;
	const char *type;
	const char *feature; /* the first register of a feature names it, the rest NULL */
	size_t off;
};

#define R(n, b, t, f, field)                                 \
	{                                                    \
		n, b, t, f, offsetof(struct gdb_regs, field) \
	}
static const struct gdb_reg regs[GDB_NREGS] = {
	R("rax", 64, "int64", "org.gnu.gdb.i386.core", gpr[0]),
	R("rbx", 64, "int64", NULL, gpr[1]),
	R("rcx", 64, "int64", NULL, gpr[2]),
	R("rdx", 64, "int64", NULL, gpr[3]),
	R("rsi", 64, "int64", NULL, gpr[4]),
	R("rdi", 64, "int64", NULL, gpr[5]),
	R("rbp", 64, "data_ptr", NULL, gpr[6]),
	R("rsp", 64, "data_ptr", NULL, gpr[7]),
	R("r8", 64, "int64", NULL, gpr[8]),
	R("r9", 64, "int64", NULL, gpr[9]),
	R("r10", 64, "int64", NULL, gpr[10]),
	R("r11", 64, "int64", NULL, gpr[11]),
	R("r12", 64, "int64", NULL, gpr[12]),
	R("r13", 64, "int64", NULL, gpr[13]),
	R("r14", 64, "int64", NULL, gpr[14]),
	R("r15", 64, "int64", NULL, gpr[15]),
	R("rip", 64, "code_ptr", NULL, rip),
	R("eflags", 32, "i386_eflags", NULL, eflags),
	R("cs", 32, "int32", NULL, seg[0]),
	R("ss", 32, "int32", NULL, seg[1]),
	R("ds", 32, "int32", NULL, seg[2]),
	R("es", 32, "int32", NULL, seg[3]),
	R("fs", 32, "int32", NULL, seg[4]),
	R("gs", 32, "int32", NULL, seg[5]),
	R("st0", 80, "i387_ext", NULL, st[0]),
	R("st1", 80, "i387_ext", NULL, st[1]),
	R("st2", 80, "i387_ext", NULL, st[2]),
	R("st3", 80, "i387_ext", NULL, st[3]),
	R("st4", 80, "i387_ext", NULL, st[4]),
	R("st5", 80, "i387_ext", NULL, st[5]),
	R("st6", 80, "i387_ext", NULL, st[6]),
	R("st7", 80, "i387_ext", NULL, st[7]),
	R("fctrl", 32, "int", NULL, fpu[0]),
	R("fstat", 32, "int", NULL, fpu[1]),
	R("ftag", 32, "int", NULL, fpu[2]),
	R("fiseg", 32, "int", NULL, fpu[3]),
	R("fioff", 32, "int", NULL, fpu[4]),
	R("foseg", 32, "int", NULL, fpu[5]),
	R("fooff", 32, "int", NULL, fpu[6]),
	R("fop", 32, "int", NULL, fpu[7]),
	R("xmm0", 128, "vec128", "org.gnu.gdb.i386.sse", xmm[0]),
	R("xmm1", 128, "vec128", NULL, xmm[1]),
	R("xmm2", 128, "vec128", NULL, xmm[2]),
	R("xmm3", 128, "vec128", NULL, xmm[3]),
	R("xmm4", 128, "vec128", NULL, xmm[4]),
	R("xmm5", 128, "vec128", NULL, xmm[5]),
	R("xmm6", 128, "vec128", NULL, xmm[6]),
	R("xmm7", 128, "vec128", NULL, xmm[7]),
	R("xmm8", 128, "vec128", NULL, xmm[8]),
	R("xmm9", 128, "vec128", NULL, xmm[9]),
	R("xmm10", 128, "vec128", NULL, xmm[10]),
	R("xmm11", 128, "vec128", NULL, xmm[11]),
	R("xmm12", 128, "vec128", NULL, xmm[12]),
	R("xmm13", 128, "vec128", NULL, xmm[13]),
	R("xmm14", 128, "vec128", NULL, xmm[14]),
	R("xmm15", 128, "vec128", NULL, xmm[15]),
	R("mxcsr", 32, "i386_mxcsr", NULL, mxcsr),
	R("fs_base", 64, "int", "org.gnu.gdb.i386.segments", fs_base),
	R("gs_base", 64, "int", NULL, gs_base),
	R("cr0", 64, "int", "org.khyve.x86.sys", cr0),
	R("cr2", 64, "int", NULL, cr2),
	R("cr3", 64, "int", NULL, cr3),
	R("cr4", 64, "int", NULL, cr4),
	R("cr8", 64, "int", NULL, cr8),
	R("efer", 64, "int", NULL, efer),
};
#undef R

/* The types gdb's own 64bit-core.xml and 64bit-sse.xml define for these registers. */
static const char xml_core_types[] =
	"<flags id=\"i386_eflags\" size=\"4\"><field name=\"CF\" start=\"0\" end=\"0\"/>"
	"<field name=\"\" start=\"1\" end=\"1\"/><field name=\"PF\" start=\"2\" end=\"2\"/>"
	"<field name=\"AF\" start=\"4\" end=\"4\"/><field name=\"ZF\" start=\"6\" end=\"6\"/>"
	"<field name=\"SF\" start=\"7\" end=\"7\"/><field name=\"TF\" start=\"8\" end=\"8\"/>"
	"<field name=\"IF\" start=\"9\" end=\"9\"/><field name=\"DF\" start=\"10\" end=\"10\"/>"
	"<field name=\"OF\" start=\"11\" end=\"11\"/><field name=\"NT\" start=\"14\" "
	"end=\"14\"/><field name=\"RF\" start=\"16\" end=\"16\"/><field name=\"VM\" "
	"start=\"17\" end=\"17\"/><field name=\"AC\" start=\"18\" end=\"18\"/><field "
	"name=\"VIF\" start=\"19\" end=\"19\"/><field name=\"VIP\" start=\"20\" end=\"20\"/>"
	"<field name=\"ID\" start=\"21\" end=\"21\"/></flags>";
static const char xml_sse_types[] =
	"<vector id=\"v8bf16\" type=\"bfloat16\" count=\"8\"/>"
	"<vector id=\"v4f\" type=\"ieee_single\" count=\"4\"/>"
	"<vector id=\"v2d\" type=\"ieee_double\" count=\"2\"/>"
	"<vector id=\"v16i8\" type=\"int8\" count=\"16\"/>"
	"<vector id=\"v8i16\" type=\"int16\" count=\"8\"/>"
	"<vector id=\"v4i32\" type=\"int32\" count=\"4\"/>"
	"<vector id=\"v2i64\" type=\"int64\" count=\"2\"/>"
	"<union id=\"vec128\"><field name=\"v8_bfloat16\" type=\"v8bf16\"/>"
	"<field name=\"v4_float\" type=\"v4f\"/><field name=\"v2_double\" type=\"v2d\"/>"
	"<field name=\"v16_int8\" type=\"v16i8\"/><field name=\"v8_int16\" type=\"v8i16\"/>"
	"<field name=\"v4_int32\" type=\"v4i32\"/><field name=\"v2_int64\" type=\"v2i64\"/>"
	"<field name=\"uint128\" type=\"uint128\"/></union>"
	"<flags id=\"i386_mxcsr\" size=\"4\"><field name=\"IE\" start=\"0\" end=\"0\"/>"
	"<field name=\"DE\" start=\"1\" end=\"1\"/><field name=\"ZE\" start=\"2\" end=\"2\"/>"
	"<field name=\"OE\" start=\"3\" end=\"3\"/><field name=\"UE\" start=\"4\" end=\"4\"/>"
	"<field name=\"PE\" start=\"5\" end=\"5\"/><field name=\"DAZ\" start=\"6\" end=\"6\"/>"
	"<field name=\"IM\" start=\"7\" end=\"7\"/><field name=\"DM\" start=\"8\" end=\"8\"/>"
	"<field name=\"ZM\" start=\"9\" end=\"9\"/><field name=\"OM\" start=\"10\" end=\"10\"/>"
	"<field name=\"UM\" start=\"11\" end=\"11\"/><field name=\"PM\" start=\"12\" "
	"end=\"12\"/><field name=\"FZ\" start=\"15\" end=\"15\"/></flags>";

static size_t xml_append(char *buf, size_t cap, size_t n, const char *s)
{
	size_t l = strlen(s);

	if (n + l < cap) {
		memcpy(buf + n, s, l + 1);
		n += l;
	}
	return n;
}

const char *gdb_target_xml(void)
{
	static char xml[16384];
	size_t n = 0;

	if (xml[0])
		return xml;
	n = xml_append(xml, sizeof(xml), n,
		       "<?xml version=\"1.0\"?><!DOCTYPE target SYSTEM \"gdb-target.dtd\">"
		       "<target version=\"1.0\"><architecture>i386:x86-64</architecture>");
	for (unsigned i = 0; i < GDB_NREGS; i++) {
		char line[160];

		if (regs[i].feature) {
			if (i)
				n = xml_append(xml, sizeof(xml), n, "</feature>");
			snprintf(line, sizeof(line), "<feature name=\"%s\">", regs[i].feature);
			n = xml_append(xml, sizeof(xml), n, line);
			if (i == 0)
				n = xml_append(xml, sizeof(xml), n, xml_core_types);
			else if (!strcmp(regs[i].name, "xmm0"))
				n = xml_append(xml, sizeof(xml), n, xml_sse_types);
		}
		snprintf(line, sizeof(line), "<reg name=\"%s\" bitsize=\"%u\" type=\"%s\"/>",
			 regs[i].name, regs[i].bits, regs[i].type);
		n = xml_append(xml, sizeof(xml), n, line);
	}
	xml_append(xml, sizeof(xml), n, "</feature></target>");
	return xml;
}

static size_t regs_size(void)
{
	size_t n = 0;

	for (unsigned i = 0; i < GDB_NREGS; i++)
		n += regs[i].bits / 8;
	return n;
}

/* ---- replies ---- */

static void reply(struct gdb_session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void reply(struct gdb_session *s, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(s->reply, sizeof(s->reply), fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if ((size_t)n >= sizeof(s->reply))
		n = sizeof(s->reply) - 1;
	s->t->send(s->t->opaque, s->reply, (size_t)n);
}

static void reply_raw(struct gdb_session *s, const char *buf, size_t len)
{
	s->t->send(s->t->opaque, buf, len);
}

/* gdb's errors are "Enn", nn a hex errno of our choosing. */
static void reply_err(struct gdb_session *s, int err)
{
	reply(s, "E%02x", (unsigned)(err < 0 ? -err : err) & 0xff);
}

static void reply_stop(struct gdb_session *s)
{
	int sig = s->stop_kind == GDB_STOP_INTERRUPT ? SIGINT_GDB : SIGTRAP_GDB;
	const char *why = s->stop_kind == GDB_STOP_SW_BP   ? "swbreak:;"
			  : s->stop_kind == GDB_STOP_HW_BP ? "hwbreak:;"
							   : "";
	int w = s->stop_slot;

	/* A watchpoint's stop names it by its address, as gdb set it. */
	if (s->stop_kind == GDB_STOP_HW_BP && w >= 0 && s->hw_rw[w] != DR7_RW_EXEC)
		return reply(s, "T%02xthread:%x;%swatch:%llx;", sig, s->stop_cpu + 1,
			     s->hw_rw[w] == DR7_RW_ACCESS ? "a" : "", (unsigned long long)s->hw[w]);
	reply(s, "T%02xthread:%x;%s", sig, s->stop_cpu + 1, why);
}

/* ---- parsing helpers ---- */

struct cursor {
	const char *p, *end;
};

static bool cur_char(struct cursor *c, char ch)
{
	if (c->p < c->end && *c->p == ch) {
		c->p++;
		return true;
	}
	return false;
}

static bool cur_hex(struct cursor *c, uint64_t *v)
{
	return rsp_hex_u64(&c->p, c->end, v) == 0;
}

static bool cur_done(const struct cursor *c)
{
	return c->p == c->end;
}

/* A thread id: -1 (all), 0 (any) or a vCPU's.  *@cpu is -1, -2 (any) or the vCPU. */
static bool cur_thread(struct gdb_session *s, struct cursor *c, int *cpu)
{
	uint64_t v;

	if (cur_char(c, '-')) {
		if (!cur_char(c, '1'))
			return false;
		*cpu = -1;
		return true;
	}
	if (!cur_hex(c, &v))
		return false;
	if (v == 0) {
		*cpu = -2;
		return true;
	}
	if (v > s->t->ncpus)
		return false;
	*cpu = (int)(v - 1);
	return true;
}

/* "ADDR,LEN" */
static bool cur_addr_len(struct cursor *c, uint64_t *addr, uint64_t *len)
{
	return cur_hex(c, addr) && cur_char(c, ',') && cur_hex(c, len);
}

/* ---- memory ---- */

/* Bytes of a software breakpoint inside [gpa, gpa + n) of @buf show what gdb wrote there. */
static void mem_shadow(struct gdb_session *s, uint64_t gpa, uint8_t *buf, size_t n)
{
	for (unsigned i = 0; i < GDB_MAX_SW_BP; i++) {
		struct gdb_sw_bp *b = &s->sw[i];

		if (b->used && b->gpa >= gpa && b->gpa - gpa < n)
			buf[b->gpa - gpa] = b->orig;
	}
}

/* Read up to @len bytes at @addr of vCPU @cpu's space: how many could be (stops at a hole). */
static size_t mem_read(struct gdb_session *s, unsigned cpu, uint64_t addr, uint8_t *buf, size_t len)
{
	size_t done = 0;

	while (done < len) {
		uint64_t gpa, left, n;

		if (s->t->translate(s->t->opaque, cpu, addr + done, &gpa, &left))
			break;
		n = left < len - done ? left : len - done;
		if (s->t->read_phys(s->t->opaque, gpa, buf + done, n))
			break;
		mem_shadow(s, gpa, buf + done, n);
		done += n;
	}
	return done;
}

/* A write over a software breakpoint changes the byte it restores; the int3 stays. */
static int mem_write(struct gdb_session *s, unsigned cpu, uint64_t addr, const uint8_t *buf,
		     size_t len)
{
	size_t done = 0;
	static const uint8_t int3 = INT3;

	while (done < len) {
		uint64_t gpa, left, n;

		if (s->t->translate(s->t->opaque, cpu, addr + done, &gpa, &left))
			return -EFAULT;
		n = left < len - done ? left : len - done;
		if (s->t->write_phys(s->t->opaque, gpa, buf + done, n))
			return -EFAULT;
		for (unsigned i = 0; i < GDB_MAX_SW_BP; i++) {
			struct gdb_sw_bp *b = &s->sw[i];

			if (b->used && b->gpa >= gpa && b->gpa - gpa < n) {
				b->orig = buf[done + (b->gpa - gpa)];
				s->t->write_phys(s->t->opaque, b->gpa, &int3, 1);
			}
		}
		done += n;
	}
	return 0;
}

/* The most gdb may ask for in one m: its hex must fit a reply. */
#define MEM_MAX (RSP_MAX_PAYLOAD / 2)

static void cmd_read_mem(struct gdb_session *s, struct cursor *c)
{
	static uint8_t buf[MEM_MAX];
	uint64_t addr, len;
	size_t got;

	if (!cur_addr_len(c, &addr, &len) || !cur_done(c))
		return reply_err(s, EINVAL);
	if (len > MEM_MAX)
		len = MEM_MAX;
	got = mem_read(s, s->g_cpu, addr, buf, len);
	if (!got && len)
		return reply_err(s, EFAULT);
	rsp_hex_encode(buf, got, s->reply);
	reply_raw(s, s->reply, 2 * got);
}

/* M addr,len:hex and X addr,len:binary */
static void cmd_write_mem(struct gdb_session *s, struct cursor *c, bool binary)
{
	static uint8_t buf[RSP_MAX_PAYLOAD];
	uint64_t addr, len;
	size_t avail;

	if (!cur_addr_len(c, &addr, &len) || !cur_char(c, ':'))
		return reply_err(s, EINVAL);
	avail = (size_t)(c->end - c->p);
	if (binary ? len != avail : len > avail / 2 || avail != 2 * len)
		return reply_err(s, EINVAL);
	if (binary)
		memcpy(buf, c->p, len);
	else if (rsp_hex_decode(c->p, len, buf))
		return reply_err(s, EINVAL);
	if (mem_write(s, s->g_cpu, addr, buf, len))
		return reply_err(s, EFAULT);
	reply(s, "OK");
}

/* ---- registers ---- */

static int regs_load(struct gdb_session *s, unsigned cpu)
{
	memset(&s->regs, 0, sizeof(s->regs));
	return s->t->get_regs(s->t->opaque, cpu, &s->regs);
}

static void cmd_read_regs(struct gdb_session *s)
{
	size_t n = 0;
	int ret = regs_load(s, s->g_cpu);

	if (ret)
		return reply_err(s, ret);
	for (unsigned i = 0; i < GDB_NREGS; i++) {
		rsp_hex_encode((const uint8_t *)&s->regs + regs[i].off, regs[i].bits / 8,
			       s->reply + n);
		n += regs[i].bits / 4;
	}
	reply_raw(s, s->reply, n);
}

static void cmd_write_regs(struct gdb_session *s, struct cursor *c)
{
	size_t n = 0;
	int ret;

	if ((size_t)(c->end - c->p) != 2 * regs_size())
		return reply_err(s, EINVAL);
	ret = regs_load(s, s->g_cpu);
	if (ret)
		return reply_err(s, ret);
	for (unsigned i = 0; i < GDB_NREGS; i++) {
		if (rsp_hex_decode(c->p + n, regs[i].bits / 8, (uint8_t *)&s->regs + regs[i].off))
			return reply_err(s, EINVAL);
		n += regs[i].bits / 4;
	}
	ret = s->t->set_regs(s->t->opaque, s->g_cpu, &s->regs);
	if (ret)
		return reply_err(s, ret);
	reply(s, "OK");
}

static void cmd_read_reg(struct gdb_session *s, struct cursor *c)
{
	uint64_t n;
	int ret;

	if (!cur_hex(c, &n) || !cur_done(c) || n >= GDB_NREGS)
		return reply_err(s, EINVAL);
	ret = regs_load(s, s->g_cpu);
	if (ret)
		return reply_err(s, ret);
	rsp_hex_encode((const uint8_t *)&s->regs + regs[n].off, regs[n].bits / 8, s->reply);
	reply_raw(s, s->reply, regs[n].bits / 4);
}

static void cmd_write_reg(struct gdb_session *s, struct cursor *c)
{
	uint64_t n;
	int ret;

	if (!cur_hex(c, &n) || !cur_char(c, '=') || n >= GDB_NREGS ||
	    (size_t)(c->end - c->p) != regs[n].bits / 4)
		return reply_err(s, EINVAL);
	ret = regs_load(s, s->g_cpu);
	if (ret)
		return reply_err(s, ret);
	if (rsp_hex_decode(c->p, regs[n].bits / 8, (uint8_t *)&s->regs + regs[n].off))
		return reply_err(s, EINVAL);
	ret = s->t->set_regs(s->t->opaque, s->g_cpu, &s->regs);
	if (ret)
		return reply_err(s, ret);
	reply(s, "OK");
}

/* ---- breakpoints ---- */

static struct gdb_sw_bp *sw_find(struct gdb_session *s, uint64_t addr)
{
	for (unsigned i = 0; i < GDB_MAX_SW_BP; i++)
		if (s->sw[i].used && s->sw[i].addr == addr)
			return &s->sw[i];
	return NULL;
}

static int sw_insert(struct gdb_session *s, uint64_t addr)
{
	static const uint8_t int3 = INT3;
	struct gdb_sw_bp *b = NULL;
	uint64_t gpa, left;
	uint8_t orig;

	if (sw_find(s, addr))
		return 0;
	for (unsigned i = 0; i < GDB_MAX_SW_BP && !b; i++)
		if (!s->sw[i].used)
			b = &s->sw[i];
	if (!b)
		return -ENOSPC;
	/* Two gdb addresses on one byte (two address spaces) would save an int3 as orig. */
	if (s->t->translate(s->t->opaque, s->g_cpu, addr, &gpa, &left) ||
	    gdb_session_is_sw_bp(s, gpa) || s->t->read_phys(s->t->opaque, gpa, &orig, 1) ||
	    s->t->write_phys(s->t->opaque, gpa, &int3, 1))
		return -EFAULT;
	*b = (struct gdb_sw_bp){ .addr = addr, .gpa = gpa, .orig = orig, .used = true };
	return 0;
}

static void sw_remove(struct gdb_session *s, struct gdb_sw_bp *b)
{
	uint8_t cur;

	/* Put the byte back unless the guest has written over the int3 since. */
	if (!s->t->read_phys(s->t->opaque, b->gpa, &cur, 1) && cur == INT3)
		s->t->write_phys(s->t->opaque, b->gpa, &b->orig, 1);
	b->used = false;
}

static bool hw_same(const struct gdb_session *s, int i, uint64_t addr, uint8_t rw, uint8_t len)
{
	return s->hw_used[i] && s->hw[i] == addr && s->hw_rw[i] == rw && s->hw_len[i] == len;
}

/* A debug register: an instruction breakpoint (@rw exec, @len 1) or a watchpoint. */
static int hw_insert(struct gdb_session *s, uint64_t addr, uint8_t rw, uint8_t len)
{
	int free_slot = -1;

	for (int i = GDB_MAX_HW_BP - 1; i >= 0; i--) {
		if (hw_same(s, i, addr, rw, len))
			return 0;
		if (!s->hw_used[i])
			free_slot = i;
	}
	if (free_slot < 0)
		return -ENOSPC;
	s->hw[free_slot] = addr;
	s->hw_rw[free_slot] = rw;
	s->hw_len[free_slot] = len;
	s->hw_used[free_slot] = true;
	return 0;
}

static void hw_remove(struct gdb_session *s, uint64_t addr, uint8_t rw, uint8_t len)
{
	for (int i = 0; i < GDB_MAX_HW_BP; i++)
		if (hw_same(s, i, addr, rw, len))
			s->hw_used[i] = false;
}

/*
 * Z2 (write) and Z4 (access) watchpoints in the debug registers: 1, 2, 4 or 8 bytes, aligned
 * to their length (SDM vol. 3B, 18.2.5).  x86 has no read-only watchpoint: Z3 is answered ""
 * (not supported), never as an access watchpoint that would also stop on writes.
 */
static void cmd_watchpoint(struct gdb_session *s, bool insert, uint64_t type, uint64_t addr,
			   uint64_t len)
{
	uint8_t rw = type == 2 ? DR7_RW_WRITE : DR7_RW_ACCESS;
	int ret = 0;

	if (type == 3 || type > 4)
		return reply(s, "%s", "");
	if ((len != 1 && len != 2 && len != 4 && len != 8) || addr % len)
		return reply_err(s, EINVAL);
	if (insert && s->t->no_watch)
		ret = -EOPNOTSUPP;
	else if (insert)
		ret = hw_insert(s, addr, rw, (uint8_t)len);
	else
		hw_remove(s, addr, rw, (uint8_t)len);
	if (ret)
		return reply_err(s, ret);
	reply(s, "OK");
}

/* Z0/z0 (software) and Z1/z1 (hardware execution) breakpoints: [Zz]type,addr,kind. */
static void cmd_breakpoint(struct gdb_session *s, bool insert, struct cursor *c)
{
	uint64_t type, addr, kind;
	struct gdb_sw_bp *b;
	int ret = 0;

	if (!cur_hex(c, &type) || !cur_char(c, ',') || !cur_addr_len(c, &addr, &kind))
		return reply_err(s, EINVAL);
	/* Conditions and commands (";X...") are gdb's business: the rest is ignored. */
	if (!cur_done(c) && *c->p != ';')
		return reply_err(s, EINVAL);
	if (type > 1)
		return cmd_watchpoint(s, insert, type, addr, kind);
	if (kind != 1)
		return reply_err(s, EINVAL); /* an x86 breakpoint is one byte */
	if (type == 0 && insert && s->t->no_sw_bp)
		ret = -EOPNOTSUPP; /* an error, not "": gdb would write the int3 itself */
	else if (type == 0 && insert)
		ret = sw_insert(s, addr);
	else if (type == 0 && (b = sw_find(s, addr)))
		sw_remove(s, b);
	else if (type == 1 && insert)
		ret = hw_insert(s, addr, DR7_RW_EXEC, 1);
	else if (type == 1)
		hw_remove(s, addr, DR7_RW_EXEC, 1);
	if (ret)
		return reply_err(s, ret);
	reply(s, "OK");
}

/* ---- resuming ---- */

static void resume_debug(struct gdb_session *s, struct gdb_resume *r)
{
	/* DR7's LEN of 1, 2, 8 and 4 bytes is 00, 01, 10, 11 (hw_len is one of them). */
	static const uint8_t lenbits[9] = { [1] = 0, [2] = 1, [4] = 3, [8] = 2 };

	r->sw_bp = gdb_session_sw_bps(s) > 0;
	r->dr7 = 0;
	for (unsigned i = 0; i < GDB_MAX_HW_BP; i++) {
		r->dr[i] = s->hw_used[i] ? s->hw[i] : 0;
		if (s->hw_used[i])
			r->dr7 |= DR7_G(i) | DR7_RW(i, s->hw_rw[i]) |
				  DR7_LEN(i, lenbits[s->hw_len[i] <= 8 ? s->hw_len[i] : 1]);
	}
	if (r->dr7)
		r->dr7 |= DR7_FIXED;
}

static enum gdb_state do_resume(struct gdb_session *s, struct gdb_resume *r)
{
	int ret;

	resume_debug(s, r);
	ret = s->t->resume(s->t->opaque, r);
	if (ret) {
		reply_err(s, ret);
		return s->state;
	}
	s->state = GDB_RUNNING;
	return s->state;
}

/* c [addr], s [addr], C sig[;addr], S sig[;addr]: the Hc vCPU, or all with Hc-1. */
static enum gdb_state cmd_continue(struct gdb_session *s, struct cursor *c, bool step, bool sig)
{
	struct gdb_resume r;
	unsigned cpu = s->c_all ? s->stop_cpu : s->c_cpu;
	uint64_t v, addr = 0;
	bool have_addr = false;

	/* A signal to deliver means nothing to a VM: it is ignored, as QEMU does. */
	if (sig && (!cur_hex(c, &v) || (!cur_done(c) && !cur_char(c, ';'))))
		return reply_err(s, EINVAL), s->state;
	if (!cur_done(c)) {
		if (!cur_hex(c, &addr) || !cur_done(c))
			return reply_err(s, EINVAL), s->state;
		have_addr = true;
	}
	if (have_addr) {
		int ret = regs_load(s, cpu);

		s->regs.rip = addr;
		if (!ret)
			ret = s->t->set_regs(s->t->opaque, cpu, &s->regs);
		if (ret)
			return reply_err(s, ret), s->state;
	}
	memset(&r, 0, sizeof(r));
	for (unsigned i = 0; i < s->t->ncpus; i++)
		r.action[i] = (s->c_all || i == cpu) ? GDB_CONT : GDB_STAY;
	if (step) {
		/* A step moves one vCPU; the others stay stopped (as gdb's scheduler-locking). */
		for (unsigned i = 0; i < s->t->ncpus; i++)
			r.action[i] = GDB_STAY;
		r.action[cpu] = GDB_STEP;
	}
	return do_resume(s, &r);
}

/* vCont;ACTION[:TID];...: the leftmost action naming a vCPU (or naming none) applies to it. */
static enum gdb_state cmd_vcont(struct gdb_session *s, struct cursor *c)
{
	struct gdb_resume r;
	bool set[GDB_MAX_CPUS] = { false };
	bool any = false;

	memset(&r, 0, sizeof(r));
	while (cur_char(c, ';')) {
		uint8_t act;
		uint64_t v;
		int cpu = -1;

		if (cur_char(c, 'c'))
			act = GDB_CONT;
		else if (cur_char(c, 's'))
			act = GDB_STEP;
		else if (cur_char(c, 'C') && cur_hex(c, &v))
			act = GDB_CONT;
		else if (cur_char(c, 'S') && cur_hex(c, &v))
			act = GDB_STEP;
		else
			return reply_err(s, EINVAL), s->state;
		if (cur_char(c, ':') && !cur_thread(s, c, &cpu))
			return reply_err(s, EINVAL), s->state;
		for (unsigned i = 0; i < s->t->ncpus; i++) {
			if ((cpu < 0 || (unsigned)cpu == i) && !set[i]) {
				r.action[i] = act;
				set[i] = true;
				any = true;
			}
		}
	}
	if (!cur_done(c) || !any)
		return reply_err(s, EINVAL), s->state;
	return do_resume(s, &r);
}

/* ---- queries ---- */

static void cmd_thread_info(struct gdb_session *s)
{
	size_t n = 0;

	s->reply[n++] = 'm';
	for (unsigned i = 0; i < s->t->ncpus && n + 8 < sizeof(s->reply); i++)
		n += (size_t)snprintf(s->reply + n, sizeof(s->reply) - n, "%s%x", i ? "," : "",
				      i + 1);
	reply_raw(s, s->reply, n);
}

/* qXfer:features:read:target.xml:OFFSET,LENGTH */
static void cmd_xfer_features(struct gdb_session *s, struct cursor *c)
{
	static const char annex[] = "target.xml:";
	const char *xml = gdb_target_xml();
	size_t total = strlen(xml), n;
	uint64_t off, len;

	if ((size_t)(c->end - c->p) < sizeof(annex) - 1 || memcmp(c->p, annex, sizeof(annex) - 1))
		return reply_err(s, ENOENT);
	c->p += sizeof(annex) - 1;
	if (!cur_addr_len(c, &off, &len) || !cur_done(c))
		return reply_err(s, EINVAL);
	if (off >= total)
		return reply(s, "l");
	n = total - off;
	if (n > len)
		n = len;
	if (n > RSP_MAX_PAYLOAD - 1)
		n = RSP_MAX_PAYLOAD - 1;
	s->reply[0] = off + n < total ? 'm' : 'l';
	memcpy(s->reply + 1, xml + off, n);
	reply_raw(s, s->reply, n + 1);
}

static bool prefix(struct cursor *c, const char *p)
{
	size_t l = strlen(p);

	if ((size_t)(c->end - c->p) < l || memcmp(c->p, p, l))
		return false;
	c->p += l;
	return true;
}

static void cmd_query(struct gdb_session *s, struct cursor *c)
{
	int cpu;

	if (prefix(c, "Supported"))
		return reply(s,
			     "PacketSize=%x;qXfer:features:read+;swbreak+;hwbreak+;"
			     "vContSupported+",
			     RSP_MAX_PAYLOAD);
	if (prefix(c, "Xfer:features:read:"))
		return cmd_xfer_features(s, c);
	if (prefix(c, "fThreadInfo"))
		return cmd_thread_info(s);
	if (prefix(c, "sThreadInfo"))
		return reply(s, "l");
	if (prefix(c, "C") && cur_done(c))
		return reply(s, "QC%x", s->g_cpu + 1);
	if (prefix(c, "Attached"))
		return reply(s, "1"); /* gdb detaches at quit rather than killing the VM */
	if (prefix(c, "ThreadExtraInfo,")) {
		char text[32];
		int n;

		if (!cur_thread(s, c, &cpu) || cpu < 0 || !cur_done(c))
			return reply_err(s, EINVAL);
		n = snprintf(text, sizeof(text), "vCPU %d", cpu);
		rsp_hex_encode(text, (size_t)n, s->reply);
		return reply_raw(s, s->reply, 2 * (size_t)n);
	}
	reply(s, "%s", ""); /* not supported */
}

/* H[gc]TID */
static void cmd_set_thread(struct gdb_session *s, struct cursor *c)
{
	char op = c->p < c->end ? *c->p++ : 0;
	int cpu;

	if ((op != 'g' && op != 'c') || !cur_thread(s, c, &cpu) || !cur_done(c))
		return reply_err(s, EINVAL);
	if (op == 'g') {
		s->g_cpu = cpu >= 0 ? (unsigned)cpu : s->stop_cpu;
	} else {
		s->c_all = cpu < 0;
		s->c_cpu = cpu >= 0 ? (unsigned)cpu : s->stop_cpu;
	}
	reply(s, "OK");
}

static void cmd_thread_alive(struct gdb_session *s, struct cursor *c)
{
	int cpu;

	if (!cur_thread(s, c, &cpu) || cpu < 0 || !cur_done(c))
		return reply_err(s, ESRCH);
	reply(s, "OK");
}

/* ---- the session ---- */

void gdb_session_init(struct gdb_session *s, const struct gdb_target *t)
{
	memset(s, 0, sizeof(*s));
	s->t = t;
	s->c_all = true;
	s->stop_slot = -1;
	s->state = GDB_STOPPED;
	s->stop_kind = GDB_STOP_ATTACH;
}

unsigned gdb_session_sw_bps(const struct gdb_session *s)
{
	unsigned n = 0;

	for (unsigned i = 0; i < GDB_MAX_SW_BP; i++)
		n += s->sw[i].used;
	return n;
}

bool gdb_session_is_sw_bp(const struct gdb_session *s, uint64_t gpa)
{
	for (unsigned i = 0; i < GDB_MAX_SW_BP; i++)
		if (s->sw[i].used && s->sw[i].gpa == gpa)
			return true;
	return false;
}

void gdb_session_detach(struct gdb_session *s)
{
	struct gdb_resume r;

	for (unsigned i = 0; i < GDB_MAX_SW_BP; i++)
		if (s->sw[i].used)
			sw_remove(s, &s->sw[i]);
	memset(s->hw_used, 0, sizeof(s->hw_used));
	memset(&r, 0, sizeof(r));
	for (unsigned i = 0; i < s->t->ncpus; i++)
		r.action[i] = GDB_CONT;
	s->t->resume(s->t->opaque, &r);
	s->state = GDB_DETACHED;
}

static void stopped(struct gdb_session *s, unsigned cpu, enum gdb_stop_kind kind, int slot)
{
	bool was_running = s->state == GDB_RUNNING;

	if (cpu >= s->t->ncpus)
		cpu = 0;
	s->stop_cpu = cpu;
	s->stop_kind = kind;
	s->stop_slot = slot;
	/* gdb goes on with the thread that stopped, as it is told in the reply. */
	s->g_cpu = cpu;
	if (s->state == GDB_DETACHED)
		return;
	s->state = GDB_STOPPED;
	if (was_running)
		reply_stop(s);
}

void gdb_session_stopped(struct gdb_session *s, unsigned cpu, enum gdb_stop_kind kind)
{
	stopped(s, cpu, kind, -1);
}

void gdb_session_stopped_hw(struct gdb_session *s, unsigned cpu, unsigned dr6)
{
	int slot = -1;

	/* The first of ours that matched (a stale bit of a slot now free says nothing). */
	for (int i = 0; i < GDB_MAX_HW_BP && slot < 0; i++)
		if ((dr6 & (1u << i)) && s->hw_used[i])
			slot = i;
	stopped(s, cpu, GDB_STOP_HW_BP, slot);
}

enum gdb_state gdb_session_packet(struct gdb_session *s, const uint8_t *pkt, size_t len)
{
	struct cursor c = { (const char *)pkt + 1, (const char *)pkt + len };

	if (!len || s->state == GDB_DETACHED)
		return s->state;
	/* In all-stop mode gdb says nothing while the guest runs but Ctrl-C. */
	if (s->state == GDB_RUNNING)
		return s->state;
	switch (pkt[0]) {
	case '?':
		reply_stop(s);
		break;
	case 'g':
		cmd_read_regs(s);
		break;
	case 'G':
		cmd_write_regs(s, &c);
		break;
	case 'p':
		cmd_read_reg(s, &c);
		break;
	case 'P':
		cmd_write_reg(s, &c);
		break;
	case 'm':
		cmd_read_mem(s, &c);
		break;
	case 'M':
		cmd_write_mem(s, &c, false);
		break;
	case 'X':
		cmd_write_mem(s, &c, true);
		break;
	case 'c':
		return cmd_continue(s, &c, false, false);
	case 'C':
		return cmd_continue(s, &c, false, true);
	case 's':
		return cmd_continue(s, &c, true, false);
	case 'S':
		return cmd_continue(s, &c, true, true);
	case 'Z':
	case 'z':
		cmd_breakpoint(s, pkt[0] == 'Z', &c);
		break;
	case 'H':
		cmd_set_thread(s, &c);
		break;
	case 'T':
		cmd_thread_alive(s, &c);
		break;
	case 'q':
		cmd_query(s, &c);
		break;
	case 'v':
		if (prefix(&c, "Cont?") && cur_done(&c))
			reply(s, "vCont;c;C;s;S");
		else if (prefix(&c, "Cont") && c.p < c.end && *c.p == ';')
			return cmd_vcont(s, &c);
		else
			reply(s, "%s", "");
		break;
	case 'D':
		reply(s, "OK");
		gdb_session_detach(s);
		break;
	case 'k':
		/* No reply: gdb closes the connection. */
		gdb_session_detach(s);
		s->t->kill(s->t->opaque);
		break;
	default:
		reply(s, "%s", "");
		break;
	}
	return s->state;
}
