// SPDX-License-Identifier: MIT
/*
 * khyve test guest, ring 3: string helpers, formatted COM1 output,
 * time keeping, the watchdog, power off, command line.
 */
#include "user.h"

/* rep stosb / movsb: fast on every CPU since Ivy Bridge, and no SSE (ring 3 keeps to GPRs). */
void *memset(void *d, int c, size_t n)
{
	void *p = d;

	asm volatile("rep stosb" : "+D"(p), "+c"(n) : "a"(c) : "memory");
	return d;
}

void *memcpy(void *d, const void *s, size_t n)
{
	void *p = d;

	asm volatile("rep movsb" : "+D"(p), "+S"(s), "+c"(n) : : "memory");
	return d;
}

int memcmp(const void *a, const void *b, size_t n)
{
	const u8 *p = a, *q = b;

	for (; n; n--, p++, q++)
		if (*p != *q)
			return *p - *q;
	return 0;
}

size_t strlen(const char *s)
{
	size_t n = 0;

	while (s[n])
		n++;
	return n;
}

/* ---- formatting: %s %c %d %u %x with optional 'l' and zero-pad width ---- */
struct outbuf {
	char *buf;
	size_t size, len;
};

static void ob_put(struct outbuf *o, char c)
{
	if (o->len + 1 < o->size)
		o->buf[o->len] = c;
	o->len++;
}

static void ob_num(struct outbuf *o, u64 v, int base, int width, char pad)
{
	char tmp[24];
	int n = 0;

	do {
		tmp[n++] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v);
	while (width-- > n)
		ob_put(o, pad);
	while (n)
		ob_put(o, tmp[--n]);
}

int vfmt(char *buf, size_t size, const char *f, va_list ap)
{
	struct outbuf o = { buf, size, 0 };

	for (; *f; f++) {
		int lng = 0, width = 0;
		char pad = ' ';
		s64 sv;

		if (*f != '%') {
			ob_put(&o, *f);
			continue;
		}
		f++;
		if (*f == '0')
			pad = '0';
		while (*f >= '0' && *f <= '9')
			width = width * 10 + *f++ - '0';
		while (*f == 'l')
			lng = 1, f++;
		switch (*f) {
		case 's': {
			const char *s = va_arg(ap, const char *);

			while (*s)
				ob_put(&o, *s++);
			break;
		}
		case 'c':
			ob_put(&o, va_arg(ap, int));
			break;
		case 'd':
			sv = lng ? va_arg(ap, s64) : va_arg(ap, int);
			if (sv < 0) {
				ob_put(&o, '-');
				sv = -sv;
			}
			ob_num(&o, sv, 10, width, pad);
			break;
		case 'u':
			ob_num(&o, lng ? va_arg(ap, u64) : va_arg(ap, u32), 10, width, pad);
			break;
		case 'x':
			ob_num(&o, lng ? va_arg(ap, u64) : va_arg(ap, u32), 16, width, pad);
			break;
		default:
			ob_put(&o, *f);
			break;
		}
	}
	if (size)
		buf[o.len < size ? o.len : size - 1] = 0;
	return o.len;
}

int fmt(char *buf, size_t size, const char *f, ...)
{
	va_list ap;
	int n;

	va_start(ap, f);
	n = vfmt(buf, size, f, ap);
	va_end(ap);
	return n;
}

/* One syscall per line: the ring-0 side polls LSR.THRE per byte. */
static void uart_write(const char *s, size_t n)
{
	syscall3(SYS_UART_WRITE, COM1, (u64)s, n);
}

void pr(const char *f, ...)
{
	char buf[160];
	va_list ap;
	int n;

	va_start(ap, f);
	n = vfmt(buf, sizeof(buf), f, ap);
	va_end(ap);
	if (n >= (int)sizeof(buf))
		n = sizeof(buf) - 1;
	uart_write(buf, n);
}

/* 115200 8N1, FIFOs on, OUT2 set (gates the IRQ line on PCs), no IER */
void uart_init(void)
{
	outb(COM1 + 1, 0);
	outb(COM1 + 3, 0x80);
	outb(COM1 + 0, 1);
	outb(COM1 + 1, 0);
	outb(COM1 + 3, 0x03);
	outb(COM1 + 2, 0x07);
	outb(COM1 + 4, 0x0b);
}

/* ---- time ---- */
u64 tsc_hz = 2000000000ull;	/* replaced by tsc_calibrate() */

u64 now_us(void)
{
	u64 t = rdtsc();

	return t / tsc_hz * 1000000 + t % tsc_hz * 1000000 / tsc_hz;
}

void udelay(u64 us)
{
	u64 end = rdtsc() + us * (tsc_hz / 1000000);

	while ((s64)(rdtsc() - end) < 0) {
		watchdog_poll();
		cpu_relax();
	}
}

/* ---- failure, watchdog, power off ---- */
const char *cur_check = "boot";
u64 watchdog_deadline;

void watchdog_poll(void)
{
	power_button_poll();
	if (watchdog_deadline && (s64)(rdtsc() - watchdog_deadline) > 0) {
		watchdog_deadline = 0;
		fail_final("timeout in %s", cur_check);
	}
}

void poweroff(void)
{
	u16 v = plat.slp_typa << 10 | 1 << 13;

	if (plat.pm1a_cnt) {
		outw(plat.pm1a_cnt, v);
		if (plat.pm1b_cnt)
			outw(plat.pm1b_cnt, plat.slp_typb << 10 | 1 << 13);
	}
	udelay(100000);
	pr("poweroff did not take effect, halting\n");
	sys_halt();
}

void fail_final(const char *f, ...)
{
	char buf[128];
	va_list ap;

	va_start(ap, f);
	vfmt(buf, sizeof(buf), f, ap);
	va_end(ap);
	pr("TESTGUEST FAIL: %s\n", buf);
	poweroff();
}

/* ---- command line: mode=selftest|counter mem=SIZE[KMG] rate=N ---- */
struct options opt = { .mode = MODE_SELFTEST, .mem = 16ull << 20, .rate = 4, .clockslack = 5000 };

static u64 parse_num(const char *s, const char **end)
{
	u64 v = 0;

	while (*s >= '0' && *s <= '9')
		v = v * 10 + *s++ - '0';
	switch (*s) {
	case 'k': case 'K': v <<= 10; s++; break;
	case 'm': case 'M': v <<= 20; s++; break;
	case 'g': case 'G': v <<= 30; s++; break;
	}
	*end = s;
	return v;
}

static bool word_is(const char *w, const char *key, const char **val)
{
	size_t n = strlen(key);

	if (memcmp(w, key, n))
		return false;
	*val = w + n;
	return true;
}

static void cmdline_word(const char *w)
{
	const char *v, *end;

	if (vio_cmdline_word(w) || console_cmdline_word(w))
		return;
	if (word_is(w, "mode=counter", &v))
		opt.mode = MODE_COUNTER;
	else if (word_is(w, "mode=selftest", &v))
		opt.mode = MODE_SELFTEST;
	else if (word_is(w, "mode=uart", &v))
		opt.mode = MODE_UART;
	else if (word_is(w, "mode=echo", &v))
		opt.mode = MODE_ECHO;
	else if (word_is(w, "mode=ahcibench", &v))
		opt.mode = MODE_AHCIBENCH;
	else if (word_is(w, "mode=ahci", &v))
		opt.mode = MODE_AHCI;
	else if (word_is(w, "mode=clocks", &v))
		opt.mode = MODE_CLOCKS;
	else if (word_is(w, "clockslack=", &v))
		opt.clockslack = parse_num(v, &end);
	else if (word_is(w, "ticks=", &v))
		opt.ticks = parse_num(v, &end);
	else if (word_is(w, "passes=", &v))
		opt.passes = parse_num(v, &end);
	else if (word_is(w, "mem=", &v))
		opt.mem = parse_num(v, &end);
	else if (word_is(w, "rate=", &v))
		opt.rate = parse_num(v, &end);
}

void cmdline_parse(const char *s)
{
	while (s && *s) {
		while (*s == ' ')
			s++;
		if (*s)
			cmdline_word(s);
		while (*s && *s != ' ')
			s++;
	}
	if (!opt.rate)
		opt.rate = 1;
	if (opt.mem < 4096)
		opt.mem = 4096;
}
