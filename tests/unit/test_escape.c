// SPDX-License-Identifier: BSD-2-Clause
/* The console escape state machine (backend/escape.c): ~. ~? ~~ after a newline, as ssh. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "backend/escape.h"

struct run {
	char out[256];
	size_t len;
	unsigned actions;
};

/* Feed @typed in pieces of @chunk bytes, as reads from a terminal may cut it. */
static void feed(struct escape *e, const char *typed, size_t chunk, struct run *r)
{
	size_t n = strlen(typed);

	memset(r, 0, sizeof(*r));
	for (size_t i = 0; i < n && !(r->actions & ESCAPE_STOP); i += chunk) {
		size_t k = n - i < chunk ? n - i : chunk;
		uint8_t out[64];
		size_t o;

		assert_true(k <= 32);
		o = escape_filter(e, (const uint8_t *)typed + i, k, out, &r->actions);
		assert_true(o <= k + 1);
		assert_true(r->len + o < sizeof(r->out));
		memcpy(r->out + r->len, out, o);
		r->len += o;
	}
	r->out[r->len] = '\0';
}

/* What the guest gets from @typed with escape character @ch, in every chunking. */
static void expect(int ch, const char *typed, const char *guest, unsigned actions)
{
	for (size_t chunk = 1; chunk <= 4; chunk++) {
		struct escape e;
		struct run r;

		escape_init(&e, ch);
		feed(&e, typed, chunk, &r);
		if (strcmp(r.out, guest) || r.actions != actions)
			fail_msg("%s (chunks of %zu): guest got '%s' actions %u, want '%s' %u",
				 typed, chunk, r.out, r.actions, guest, actions);
	}
}

static void test_plain_text_passes(void **state)
{
	(void)state;
	expect('~', "hello\r", "hello\r", 0);
	expect('~', "a~.b~?c~~d", "a~.b~?c~~d", 0); /* not after a newline: no escape */
	expect('~', "", "", 0);
}

static void test_stop(void **state)
{
	(void)state;
	expect('~', "~.", "", ESCAPE_STOP);
	expect('~', "ls\r~.more", "ls\r", ESCAPE_STOP); /* what follows is dropped */
	expect('~', "x\n~.", "x\n", ESCAPE_STOP);
}

static void test_help_sends_nothing(void **state)
{
	(void)state;
	expect('~', "~?", "", ESCAPE_HELP);
	/* Still at the start of a line after the help: ~. works next. */
	expect('~', "\r~?~.", "\r", ESCAPE_HELP | ESCAPE_STOP);
}

static void test_tilde_tilde_sends_one(void **state)
{
	(void)state;
	expect('~', "~~", "~", 0);
	/* The line no longer starts there: the next ~. is text. */
	expect('~', "~~.", "~.", 0);
	expect('~', "\r~~~.", "\r~~.", 0);
}

static void test_other_passes_both(void **state)
{
	(void)state;
	expect('~', "~x", "~x", 0);
	expect('~', "~\r~.", "~\r", ESCAPE_STOP); /* ~ then Enter: a new line starts */
	expect('~', "~/tmp", "~/tmp", 0);
}

static void test_held_across_reads(void **state)
{
	struct escape e;
	uint8_t out[4];
	unsigned actions = 0;

	(void)state;
	escape_init(&e, '~');
	assert_int_equal(escape_filter(&e, (const uint8_t *)"~", 1, out, &actions), 0);
	assert_int_equal(escape_pending(&e), 1);
	assert_int_equal(escape_filter(&e, (const uint8_t *)"a", 1, out, &actions), 2);
	assert_memory_equal(out, "~a", 2);
	assert_int_equal(escape_pending(&e), 0);
	assert_int_equal(actions, 0);
}

static void test_other_char_and_off(void **state)
{
	(void)state;
	expect('#', "#.", "", ESCAPE_STOP);
	expect('#', "~.", "~.", 0);
	expect('#', "##", "#", 0);
	expect(0x1d, "\x1d.", "", ESCAPE_STOP); /* ^] */
	expect(ESCAPE_OFF, "~.~?~~", "~.~?~~", 0);
}

static void test_parse(void **state)
{
	char err[256];
	int ch;

	(void)state;
	assert_int_equal(escape_parse(NULL, &ch, err, sizeof(err)), 0);
	assert_int_equal(ch, '~');
	assert_int_equal(escape_parse("none", &ch, err, sizeof(err)), 0);
	assert_int_equal(ch, ESCAPE_OFF);
	assert_int_equal(escape_parse("#", &ch, err, sizeof(err)), 0);
	assert_int_equal(ch, '#');
	assert_int_equal(escape_parse("^]", &ch, err, sizeof(err)), 0);
	assert_int_equal(ch, 0x1d);
	assert_int_equal(escape_parse("^a", &ch, err, sizeof(err)), 0);
	assert_int_equal(ch, 1);
	const char *bad[] = { "", "ab", " ", "^M", "^J", "^~x", "\x7f", "^1" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		assert_int_equal(escape_parse(bad[i], &ch, err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, "console.escape="));
	}
}

static void test_help_text(void **state)
{
	char buf[512];

	(void)state;
	escape_help('~', buf, sizeof(buf));
	assert_non_null(strstr(buf, "~.  stop the VM"));
	assert_non_null(strstr(buf, "~?  this help"));
	assert_non_null(strstr(buf, "~~  send ~"));
	escape_help(0x1d, buf, sizeof(buf));
	assert_non_null(strstr(buf, "^].  stop the VM"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_text_passes),
		cmocka_unit_test(test_stop),
		cmocka_unit_test(test_help_sends_nothing),
		cmocka_unit_test(test_tilde_tilde_sends_one),
		cmocka_unit_test(test_other_passes_both),
		cmocka_unit_test(test_held_across_reads),
		cmocka_unit_test(test_other_char_and_off),
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_help_text),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
