// SPDX-License-Identifier: BSD-2-Clause
/* Core: the state stream, configuration, command line, buses and the event loop's timers. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "bus.h"
#include "config.h"
#include "evloop.h"
#include "options.h"
#include "sstream.h"

struct sample {
	uint8_t a;
	uint16_t b;
	uint32_t c;
	uint64_t d;
	int64_t e;
	bool f;
	uint8_t bytes[5];
	uint32_t arr[3];
};

static void sample_io(struct sstream *s, struct sample *x)
{
	ss_u8(s, &x->a);
	ss_u16(s, &x->b);
	ss_u32(s, &x->c);
	ss_u64(s, &x->d);
	ss_i64(s, &x->e);
	ss_bool(s, &x->f);
	ss_bytes(s, x->bytes, sizeof(x->bytes));
	ss_u32_array(s, x->arr, 3);
	ss_expect_u32(s, 3, "array length");
}

static void test_sstream_roundtrip(void **state)
{
	struct sample in = { 0x12, 0x3456, 0x789abcde,	      0x0123456789abcdefULL,
			     -42,  true,   { 1, 2, 3, 4, 5 }, { 7, 8, 9 } },
		      out;
	struct sstream s, l;

	ss_init_save(&s);
	sample_io(&s, &in);
	assert_int_equal(ss_error(&s), 0);
	assert_int_equal(s.len, 1 + 2 + 4 + 8 + 8 + 1 + 5 + 12 + 4);
	/* Little endian on the wire, whatever the host. */
	assert_int_equal(s.buf[1], 0x56);
	assert_int_equal(s.buf[2], 0x34);
	memset(&out, 0, sizeof(out));
	ss_init_load(&l, s.buf, s.len);
	sample_io(&l, &out);
	assert_int_equal(ss_finish(&l), 0);
	assert_memory_equal(&in.bytes, &out.bytes, 5);
	assert_int_equal(out.a, in.a);
	assert_int_equal(out.b, in.b);
	assert_int_equal(out.c, in.c);
	assert_true(out.d == in.d && out.e == in.e && out.f);
	assert_int_equal(out.arr[2], 9);
	ss_free(&s);
}

static void test_sstream_refuses(void **state)
{
	struct sample in = { 0 }, out;
	struct sstream s, l;

	ss_init_save(&s);
	sample_io(&s, &in);
	/* Truncated: every length short of the whole fails, and the error is sticky. */
	for (size_t n = 0; n < s.len; n++) {
		ss_init_load(&l, s.buf, n);
		sample_io(&l, &out);
		assert_int_equal(ss_finish(&l), -EINVAL);
		assert_non_null(strstr(l.msg, "ends early"));
	}
	/* Left over bytes. */
	s.buf = realloc(s.buf, s.len + 1);
	ss_init_load(&l, s.buf, s.len + 1);
	sample_io(&l, &out);
	assert_int_equal(ss_finish(&l), -EINVAL);
	assert_non_null(strstr(l.msg, "left over"));
	/* A broken invariant names itself. */
	s.buf[s.len - 4] = 4;
	ss_init_load(&l, s.buf, s.len);
	sample_io(&l, &out);
	assert_int_equal(ss_error(&l), -EINVAL);
	assert_non_null(strstr(l.msg, "array length: saved 4, expected 3"));
	/* A bool that is neither 0 nor 1. */
	s.buf[23] = 2;
	ss_init_load(&l, s.buf, s.len);
	sample_io(&l, &out);
	assert_int_equal(ss_error(&l), -EINVAL);
	ss_free(&s);
}

static void test_config(void **state)
{
	char path[] = "/tmp/khyve-cfg-XXXXXX", err[256];
	struct config c;
	uint64_t sz;
	bool b;
	int fd;

	config_init(&c);
	assert_int_equal(config_set(&c, "b.x", "1"), 0);
	assert_int_equal(config_set(&c, "a", "2"), 0);
	assert_int_equal(config_set(&c, "b.x", "3"), 0);
	assert_string_equal(config_get(&c, "b.x"), "3");
	assert_null(config_get(&c, "b"));
	assert_int_equal(c.n, 2);
	assert_string_equal(c.kv[0].key, "a"); /* kept sorted */
	assert_int_equal(config_set_pair(&c, "noequals"), -EINVAL);
	assert_int_equal(config_set_pair(&c, "=v"), -EINVAL);
	assert_int_equal(config_set_pair(&c, "k=v=w"), 0);
	assert_string_equal(config_get(&c, "k"), "v=w");
	assert_int_equal(parse_size("512M", &sz), 0);
	assert_true(sz == 512ULL << 20);
	assert_int_equal(parse_size("4g", &sz), 0);
	assert_true(sz == 4ULL << 30);
	assert_int_equal(parse_size("12x", &sz), -EINVAL);
	assert_int_equal(parse_size("", &sz), -EINVAL);
	assert_int_equal(parse_size("99999999999999999999T", &sz), -EINVAL);
	config_set(&c, "flag", "yes");
	assert_int_equal(config_get_bool(&c, "flag", false, &b), 0);
	assert_true(b);
	config_set(&c, "flag", "maybe");
	assert_int_equal(config_get_bool(&c, "flag", false, &b), -EINVAL);
	config_unset(&c, "flag");
	assert_null(config_get(&c, "flag"));

	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_true(write(fd, "# comment\n\n  cpus = 4\nmemory.size=1G\n", 37) == 37);
	close(fd);
	assert_int_equal(config_load_file(&c, path, err, sizeof(err)), 0);
	assert_string_equal(config_get(&c, "cpus"), "4");
	assert_string_equal(config_get(&c, "memory.size"), "1G");
	fd = open(path, O_WRONLY | O_APPEND);
	assert_true(write(fd, "broken line\n", 12) == 12);
	close(fd);
	assert_int_equal(config_load_file(&c, path, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, ":5: expected key=value"));
	unlink(path);
	assert_int_equal(config_load_file(&c, path, err, sizeof(err)), -ENOENT);
	/* fopen takes a directory; reading it fails, which is no empty configuration. */
	err[0] = '\0';
	assert_int_equal(config_load_file(&c, "/", err, sizeof(err)), -EISDIR);
	assert_non_null(strstr(err, "/: Is a directory"));
	config_free(&c);
}

static int parse(struct config *c, char *err, int argc, ...)
{
	char *argv[32];
	struct options o;
	va_list ap;

	va_start(ap, argc);
	argv[0] = "khyve";
	for (int i = 1; i < argc; i++)
		argv[i] = va_arg(ap, char *);
	va_end(ap);
	argv[argc] = NULL;
	config_init(c);
	return options_parse(argc, argv, c, &o, err, 256);
}

static void test_options(void **state)
{
	struct config c;
	char err[256];

	assert_int_equal(parse(&c, err, 12, "-c", "4", "-m", "512", "-s", "0,hostbridge", "-s",
			       "3:1,virtio-blk,/x.img,ro", "-l", "com2,stdio", "vm1"),
			 0);
	assert_string_equal(config_get(&c, "cpus"), "4");
	assert_string_equal(config_get(&c, "memory.size"), "512M");
	assert_string_equal(config_get(&c, "pci.0.0.0.device"), "hostbridge");
	assert_string_equal(config_get(&c, "pci.0.3.1.device"), "virtio-blk");
	assert_string_equal(config_get(&c, "pci.0.3.1.path"), "/x.img");
	assert_string_equal(config_get(&c, "pci.0.3.1.ro"), "true");
	assert_string_equal(config_get(&c, "lpc.com2.path"), "stdio");
	assert_string_equal(config_get(&c, "name"), "vm1");
	config_free(&c);

	assert_int_equal(parse(&c, err, 4, "-c", "cpus=2,sockets=1", "v"), 0);
	assert_string_equal(config_get(&c, "sockets"), "1");
	config_free(&c);
	assert_int_equal(parse(&c, err, 4, "-c", "256", "v"), -EINVAL);
	assert_non_null(strstr(err, "-c 256"));
	config_free(&c);
	assert_int_equal(parse(&c, err, 6, "-s", "1,lpc", "-s", "1,lpc", "v"), -EINVAL);
	assert_non_null(strstr(err, "already in use"));
	config_free(&c);
	assert_int_equal(parse(&c, err, 4, "-s", "32,lpc", "v"), -EINVAL);
	config_free(&c);
	/* bhyve's -l bootrom,FILE[,VARSFILE] */
	assert_int_equal(parse(&c, err, 4, "-l", "bootrom,/x", "v"), 0);
	assert_string_equal(config_get(&c, "lpc.bootrom"), "/x");
	assert_null(config_get(&c, "lpc.bootvars"));
	config_free(&c);
	assert_int_equal(parse(&c, err, 4, "-l", "bootrom,/x,/y", "v"), 0);
	assert_string_equal(config_get(&c, "lpc.bootrom"), "/x");
	assert_string_equal(config_get(&c, "lpc.bootvars"), "/y");
	config_free(&c);
	assert_int_equal(parse(&c, err, 4, "-l", "bootrom", "v"), -EINVAL);
	assert_non_null(strstr(err, "missing the firmware file"));
	config_free(&c);
	assert_int_equal(parse(&c, err, 4, "-l", "bootrom,/x,/y,/z", "v"), -EINVAL);
	assert_non_null(strstr(err, "bootrom,FILE[,VARSFILE]"));
	config_free(&c);
	assert_int_equal(parse(&c, err, 4, "-l", "bootrom,,/y", "v"), -EINVAL);
	config_free(&c);
	assert_int_equal(parse(&c, err, 3, "-m", "v"), -EINVAL); /* -m eats "v" */
	config_free(&c);
	assert_int_equal(parse(&c, err, 3, "a", "b"), -EINVAL);
	assert_non_null(strstr(err, "unexpected argument 'b'"));
	config_free(&c);
	assert_int_equal(parse(&c, err, 2, "-q"), -EINVAL);
	assert_non_null(strstr(err, "-q"));
	config_free(&c);
	assert_int_equal(parse(&c, err, 1), -EINVAL);
	assert_non_null(strstr(err, "missing VM name"));
	config_free(&c);
}

struct io_rec {
	uint64_t off;
	uint64_t val;
	unsigned size;
	bool wr;
	int calls;
};

static void rec_io(void *opaque, uint64_t off, void *data, unsigned size, bool wr)
{
	struct io_rec *r = opaque;

	r->off = off;
	r->size = size;
	r->wr = wr;
	r->calls++;
	if (wr)
		r->val = io_get(data, size);
	else
		io_put(data, size, 0x1122334455667788ULL);
}

static void test_bus(void **state)
{
	struct io_rec a = { 0 }, b = { 0 };
	struct bus bus;
	uint8_t data[8];

	bus_init(&bus);
	assert_int_equal(bus_register(&bus, 0x100, 8, rec_io, &a), 0);
	assert_int_equal(bus_register(&bus, 0x200, 4, rec_io, &b), 0);
	assert_int_equal(bus_register(&bus, 0x104, 8, rec_io, &b), -EEXIST);
	assert_int_equal(bus_register(&bus, 0xfc, 8, rec_io, &b), -EEXIST);
	assert_int_equal(bus_register(&bus, 0x10, 0, rec_io, &b), -EINVAL);
	io_put(data, 2, 0xbeef);
	assert_true(bus_access(&bus, 0x106, data, 2, true));
	assert_int_equal(a.off, 6);
	assert_int_equal(a.val, 0xbeef);
	assert_true(bus_access(&bus, 0x200, data, 4, false));
	assert_int_equal(io_get(data, 4), 0x55667788);
	/* Unclaimed: all-ones, nobody called; a straddling access is unclaimed too. */
	memset(data, 0, sizeof(data));
	assert_false(bus_access(&bus, 0x300, data, 4, false));
	assert_int_equal(io_get(data, 4), 0xffffffff);
	assert_false(bus_access(&bus, 0x106, data, 4, false));
	assert_int_equal(a.calls, 1);
	assert_int_equal(bus_unregister(&bus, 0x100), 0);
	assert_int_equal(bus_unregister(&bus, 0x100), -ENOENT);
	assert_false(bus_access(&bus, 0x100, data, 1, true));
	assert_int_equal(a.calls, 1);
	bus_destroy(&bus);
}

struct stats_seen {
	unsigned n;
	struct bus_stats st[4];
};

static void stats_collect(const struct bus_stats *st, void *arg)
{
	struct stats_seen *seen = arg;

	if (seen->n < 4)
		seen->st[seen->n] = *st;
	seen->n++;
}

/* Access counts per handler: kept across a move, named by the device that registered them. */
static void test_bus_stats(void **state)
{
	struct io_rec a = { 0 }, b = { 0 };
	struct stats_seen seen = { 0 };
	struct bus bus;
	uint8_t data[8] = { 0 };

	bus_init(&bus);
	assert_int_equal(bus_register(&bus, 0x100, 8, rec_io, &a), 0);
	bus_stats_claim(&bus, "uart@com1");
	assert_int_equal(bus_register(&bus, 0x200, 4, rec_io, &b), 0);
	bus_stats_claim(&bus, "rtc");
	assert_true(bus_access(&bus, 0x100, data, 1, true));
	assert_true(bus_access(&bus, 0x105, data, 1, false));
	assert_true(bus_access(&bus, 0x105, data, 1, false));
	assert_true(bus_access(&bus, 0x200, data, 4, true));
	assert_false(bus_access(&bus, 0x300, data, 4, true)); /* unclaimed: nobody's */
	/* A BAR that moves: the same handler counts on in the same record, under its new name. */
	assert_int_equal(bus_unregister(&bus, 0x200), 0);
	assert_int_equal(bus_register(&bus, 0x400, 4, rec_io, &b), 0);
	bus_stats_name(&bus, &b, "pci@0.3.0", "bar0");
	assert_true(bus_access(&bus, 0x402, data, 2, false));
	bus_stats_foreach(&bus, stats_collect, &seen);
	assert_int_equal(seen.n, 2);
	assert_string_equal(seen.st[0].owner, "uart@com1");
	assert_string_equal(seen.st[0].what, "");
	assert_int_equal(seen.st[0].base, 0x100);
	assert_int_equal(seen.st[0].reads, 2);
	assert_int_equal(seen.st[0].writes, 1);
	assert_int_equal(seen.st[0].bytes, 3);
	assert_string_equal(seen.st[1].owner, "pci@0.3.0");
	assert_string_equal(seen.st[1].what, "bar0");
	assert_int_equal(seen.st[1].base, 0x400);
	assert_int_equal(seen.st[1].len, 4);
	assert_int_equal(seen.st[1].reads, 1);
	assert_int_equal(seen.st[1].writes, 1);
	assert_int_equal(seen.st[1].bytes, 6);
	bus_destroy(&bus);
}

static int fired[4];
static uint64_t fired_at[4];
static struct evloop *tev;

static void on_timer(void *opaque)
{
	int i = (int)(intptr_t)opaque;

	fired[i]++;
	fired_at[i] = vclock_ns(tev);
}

static void test_timers_manual(void **state)
{
	struct evloop ev;
	struct vtimer t[3];

	evloop_init_manual(&ev, 1000);
	tev = &ev;
	memset(fired, 0, sizeof(fired));
	for (int i = 0; i < 3; i++)
		vtimer_init(&t[i], &ev, on_timer, (void *)(intptr_t)i);
	vtimer_arm(&t[0], 5000);
	vtimer_arm(&t[1], 3000);
	vtimer_arm(&t[2], 9000);
	vtimer_cancel(&t[2]);
	evloop_advance(&ev, 4000);
	assert_int_equal(fired[1], 1);
	assert_int_equal(fired[0], 0);
	assert_true(fired_at[1] == 3000); /* the callback sees its own deadline */
	evloop_advance(&ev, 10000);
	assert_int_equal(fired[0], 1);
	assert_true(fired_at[0] == 5000);
	assert_int_equal(fired[2], 0);
	assert_true(vclock_ns(&ev) == 10000);
	vclock_set(&ev, 50);
	assert_true(vclock_ns(&ev) == 50);
	evloop_destroy(&ev);
}

static void test_timers_thread(void **state)
{
	struct evloop ev;
	struct vtimer t;
	uint64_t now;

	assert_int_equal(evloop_init(&ev), 0);
	tev = &ev;
	memset(fired, 0, sizeof(fired));
	vclock_set(&ev, 123456789);
	now = vclock_ns(&ev);
	assert_true(now >= 123456789 && now < 123456789 + 5000000000ULL);
	assert_int_equal(evloop_start(&ev), 0);
	vtimer_init(&t, &ev, on_timer, (void *)(intptr_t)3);
	vtimer_arm(&t, vclock_ns(&ev) + 1000000);
	/* No timing asserted: only that it fires, in order, no earlier than its deadline. */
	for (int i = 0; i < 5000 && !__atomic_load_n(&fired[3], __ATOMIC_ACQUIRE); i++)
		usleep(1000);
	assert_int_equal(fired[3], 1);
	assert_true(fired_at[3] >= t.deadline);
	evloop_stop(&ev);
	evloop_destroy(&ev);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sstream_roundtrip),
		cmocka_unit_test(test_sstream_refuses),
		cmocka_unit_test(test_config),
		cmocka_unit_test(test_options),
		cmocka_unit_test(test_bus),
		cmocka_unit_test(test_bus_stats),
		cmocka_unit_test(test_timers_manual),
		cmocka_unit_test(test_timers_thread),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
