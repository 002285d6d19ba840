// SPDX-License-Identifier: BSD-2-Clause
/*
 * Control socket: the protocol through ctl_handle_line() on a bare VM (no KVM), the socket
 * path rules, and the real socket served by a running event loop.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/select.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "ctl/ctl.h"
#include "ctl/ctl_proto.h"
#include "vm.h"

/* ---- protocol, no socket ---- */

struct replies {
	unsigned n;
	char *line[8];
};

static void record(void *opaque, const char *json)
{
	struct replies *r = opaque;

	assert_true(r->n < 8);
	r->line[r->n++] = strdup(json);
}

static void replies_free(struct replies *r)
{
	for (unsigned i = 0; i < r->n; i++)
		free(r->line[i]);
	r->n = 0;
}

/* Send @line, expect exactly one reply, return it parsed (caller puts it). */
static struct json_object *ask(struct vm *vm, const char *line, int *ret)
{
	struct replies r = { 0 };
	struct json_object *o;

	*ret = ctl_handle_line(vm, line, record, &r);
	assert_int_equal(r.n, 1);
	o = json_tokener_parse(r.line[0]);
	assert_non_null(o);
	assert_true(json_object_is_type(o, json_type_object));
	replies_free(&r);
	return o;
}

static bool is_ok(struct json_object *o)
{
	struct json_object *v;

	assert_true(json_object_object_get_ex(o, "ok", &v));
	assert_true(json_object_is_type(v, json_type_boolean));
	return json_object_get_boolean(v);
}

static const char *str(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

static int64_t num(struct json_object *o, const char *key)
{
	struct json_object *v;

	assert_true(json_object_object_get_ex(o, key, &v));
	return json_object_get_int64(v);
}

/* The request must be refused with an error that mentions @needle. */
static void expect_error(struct vm *vm, const char *line, const char *needle)
{
	struct json_object *o;
	const char *e;
	int ret;

	o = ask(vm, line, &ret);
	assert_false(is_ok(o));
	assert_true(ret < 0);
	e = str(o, "error");
	assert_non_null(e);
	if (!strstr(e, needle))
		fail_msg("request %s: error '%s' does not mention '%s'", line, e, needle);
	json_object_put(o);
}

static struct vm *bare_vm(void)
{
	struct vm *vm = malloc(sizeof(*vm));

	vm_init_bare(vm, true);
	vm->name = "vm0";
	vm->ram_size = 256 * MiB;
	return vm;
}

static void free_vm(struct vm *vm)
{
	vm_destroy(vm);
	free(vm);
}

static void test_status(void **state)
{
	struct vm *vm = bare_vm();
	struct json_object *o;
	int ret;

	o = ask(vm, "{\"request\":\"status\"}", &ret);
	assert_int_equal(ret, 0);
	assert_true(is_ok(o));
	assert_string_equal(str(o, "vm"), "vm0");
	assert_string_equal(str(o, "state"), "running");
	assert_int_equal(num(o, "vcpus"), 0);
	assert_int_equal(num(o, "memory"), 256 * MiB);
	assert_int_equal(num(o, "pid"), getpid());
	assert_true(num(o, "uptime_ms") >= 0);
	json_object_put(o);

	/* Whitespace around the object and a CR from a telnet-ish client are fine. */
	o = ask(vm, "  { \"request\" : \"status\" }  \r", &ret);
	assert_true(is_ok(o));
	json_object_put(o);
	free_vm(vm);
}

static void test_malformed(void **state)
{
	struct vm *vm = bare_vm();

	expect_error(vm, "{", "malformed");
	expect_error(vm, "not json", "malformed");
	expect_error(vm, "", "malformed");
	expect_error(vm, "[\"status\"]", "JSON object");
	expect_error(vm, "\"status\"", "JSON object");
	expect_error(vm, "{\"request\":\"status\"} {\"request\":\"pause\"}", "after the JSON");
	expect_error(vm, "{\"request\":\"status\"} x", "after the JSON");
	expect_error(vm, "{\"request\":5}", "request");
	expect_error(vm, "{}", "request");
	expect_error(vm, "{\"request\":\"status\",\"extra\":1}", "unknown field");
	/* Deep nesting is cut off by the tokenizer's depth limit, not the stack. */
	{
		char deep[300];

		memset(deep, '[', sizeof(deep) - 1);
		deep[sizeof(deep) - 1] = '\0';
		expect_error(vm, deep, "malformed");
	}
	/* An oversized line is refused before parsing. */
	{
		char *big = malloc(CTL_MAX_LINE + 2);

		memset(big, ' ', CTL_MAX_LINE + 1);
		big[CTL_MAX_LINE + 1] = '\0';
		expect_error(vm, big, "longer than");
		free(big);
	}
	free_vm(vm);
}

static void test_unknown(void **state)
{
	struct vm *vm = bare_vm();

	expect_error(vm, "{\"request\":\"reboot\"}", "unknown request");
	expect_error(vm, "{\"request\":\"\"}", "unknown request");
	expect_error(vm, "{\"request\":\"STATUS\"}", "unknown request");
	free_vm(vm);
}

/* inject-nmi checks its vCPU; get-stats answers on a VM with no vCPUs and no devices. */
static void test_nmi_stats(void **state)
{
	struct vm *vm = bare_vm();
	struct json_object *o, *v;
	int ret;

	expect_error(vm, "{\"request\":\"inject-nmi\",\"vcpu\":\"0\"}", "must be a number");
	expect_error(vm, "{\"request\":\"inject-nmi\",\"vcpu\":-1}", "no vCPU -1");
	expect_error(vm, "{\"request\":\"inject-nmi\"}", "no vCPU 0");
	expect_error(vm, "{\"request\":\"inject-nmi\",\"cpu\":0}", "unknown field");
	expect_error(vm, "{\"request\":\"get-stats\",\"vcpu\":0}", "unknown field");
	o = ask(vm, "{\"request\":\"get-stats\"}", &ret);
	assert_int_equal(ret, 0);
	assert_true(is_ok(o));
	assert_true(json_object_object_get_ex(o, "vcpus", &v));
	assert_int_equal(json_object_array_length(v), 0);
	assert_true(json_object_object_get_ex(o, "io", &v));
	assert_true(json_object_is_type(v, json_type_array));
	assert_true(json_object_object_get_ex(o, "snapshots", &v));
	assert_int_equal(json_object_array_length(v), 0);
	json_object_put(o);
	free_vm(vm);
}

static void test_save_fields(void **state)
{
	struct vm *vm = bare_vm();

	expect_error(vm, "{\"request\":\"checkpoint\"}", "\"file\"");
	expect_error(vm, "{\"request\":\"suspend\"}", "\"file\"");
	expect_error(vm, "{\"request\":\"checkpoint\",\"file\":7}", "\"file\"");
	expect_error(vm, "{\"request\":\"checkpoint\",\"file\":null}", "\"file\"");
	expect_error(vm, "{\"request\":\"checkpoint\",\"file\":\"\"}", "empty");
	expect_error(vm, "{\"request\":\"checkpoint\",\"file\":\"vm.snap\"}", "absolute");
	expect_error(vm, "{\"request\":\"suspend\",\"file\":\"../x.snap\"}", "absolute");
	expect_error(vm, "{\"request\":\"checkpoint\",\"file\":\"/a\\u0000b\"}", "NUL");
	expect_error(vm, "{\"request\":\"checkpoint\",\"file\":\"/x\",\"progress\":\"yes\"}",
		     "progress");
	expect_error(vm, "{\"request\":\"checkpoint\",\"file\":\"/x\",\"fast\":true}",
		     "unknown field");
	expect_error(vm, "{\"request\":\"status\",\"file\":\"/x\"}", "unknown field");
	/* live: a boolean, for checkpoints only, and only a connection can wait for its reply. */
	expect_error(vm, "{\"request\":\"checkpoint\",\"file\":\"/x\",\"live\":1}", "\"live\"");
	expect_error(vm, "{\"request\":\"suspend\",\"file\":\"/x\",\"live\":true}",
		     "unknown field");
	expect_error(vm, "{\"request\":\"checkpoint\",\"file\":\"/x\",\"live\":true}",
		     "needs a control connection");
	/* The pre-copy's bounds (a restored VM's live checkpoint): checked, and only with live. */
#define CK "{\"request\":\"checkpoint\",\"file\":\"/x\","
	expect_error(vm, CK "\"max_downtime_ms\":5}",
		     "\"max_downtime_ms\" and \"max_rounds\" go with");
	expect_error(vm, CK "\"max_rounds\":3}", "go with \"live\": true");
	expect_error(vm, CK "\"live\":true,\"max_downtime_ms\":0}",
		     "checkpoint: \"max_downtime_ms\" must be an integer from 1");
	expect_error(vm, CK "\"live\":true,\"max_rounds\":1.5}",
		     "checkpoint: \"max_rounds\" must be an integer");
	expect_error(vm, CK "\"live\":true,\"autoconverge\":true}", "unknown field");
	expect_error(vm, CK "\"live\":true,\"max_downtime_ms\":5,\"max_rounds\":3}",
		     "needs a control connection");
#undef CK
	free_vm(vm);
}

/* migrate: the live policy's fields, checked before anything starts. */
static void test_migrate_fields(void **state)
{
	struct vm *vm = bare_vm();
	struct json_object *o;
	int ret;

#define MIG "{\"request\":\"migrate\",\"address\":\"127.0.0.1:1\","
	expect_error(vm, MIG "\"live\":true,\"autoconverge\":\"on\"}",
		     "\"autoconverge\" must be true or false");
	expect_error(vm, MIG "\"live\":true,\"throttle_initial\":0}",
		     "\"throttle_initial\" must be an integer from 1 to 99");
	expect_error(vm, MIG "\"live\":true,\"throttle_increment\":100}",
		     "\"throttle_increment\" must be an integer from 1 to 99");
	expect_error(vm, MIG "\"live\":true,\"throttle_increment\":1.5}",
		     "\"throttle_increment\" must be an integer");
	expect_error(vm, MIG "\"live\":true,\"max_rounds\":0}", "\"max_rounds\"");
	expect_error(vm, MIG "\"live\":true,\"auto_converge\":true}", "unknown field");
	/* Well-formed, but only a connection can wait for the rounds' lines. */
	expect_error(vm,
		     MIG "\"live\":true,\"autoconverge\":false,\"throttle_initial\":50,"
			 "\"throttle_increment\":25,\"max_downtime_ms\":30}",
		     "needs a control connection");
	/* Without live they are refused by name. */
	expect_error(vm, MIG "\"autoconverge\":true}", "\"autoconverge\" goes with \"live\"");
	expect_error(vm, MIG "\"throttle_initial\":20}", "\"throttle_initial\" goes with");
	expect_error(vm, MIG "\"max_rounds\":3}", "\"max_rounds\" goes with");
#undef MIG
	/* No migration, no throttle. */
	o = ask(vm, "{\"request\":\"get-stats\"}", &ret);
	assert_int_equal(ret, 0);
	assert_int_equal(num(o, "throttle_pct"), 0);
	json_object_put(o);
	free_vm(vm);
}

/* screenshot: an absolute file, no other field, and a display to take it from. */
static void test_screenshot_fields(void **state)
{
	struct vm *vm = bare_vm();

	expect_error(vm, "{\"request\":\"screenshot\"}", "\"file\"");
	expect_error(vm, "{\"request\":\"screenshot\",\"file\":\"x.png\"}", "absolute");
	expect_error(vm, "{\"request\":\"screenshot\",\"file\":\"/x.png\",\"progress\":true}",
		     "unknown field");
	expect_error(vm, "{\"request\":\"screenshot\",\"file\":\"/tmp/khyve-no.png\"}",
		     "has no display");
	free_vm(vm);
}

static void test_pause_resume(void **state)
{
	struct vm *vm = bare_vm();
	struct json_object *o;
	int ret;

	expect_error(vm, "{\"request\":\"resume\"}", "not paused");
	o = ask(vm, "{\"request\":\"pause\"}", &ret);
	assert_int_equal(ret, 0);
	assert_true(is_ok(o));
	assert_string_equal(str(o, "state"), "paused");
	json_object_put(o);
	assert_true(vm->paused);

	o = ask(vm, "{\"request\":\"status\"}", &ret);
	assert_string_equal(str(o, "state"), "paused");
	json_object_put(o);
	expect_error(vm, "{\"request\":\"pause\"}", "already paused");

	o = ask(vm, "{\"request\":\"resume\"}", &ret);
	assert_int_equal(ret, 0);
	assert_true(is_ok(o));
	assert_string_equal(str(o, "state"), "running");
	json_object_put(o);
	assert_false(vm->paused);
	expect_error(vm, "{\"request\":\"resume\"}", "not paused");
	free_vm(vm);
}

static void test_ending_vm(void **state)
{
	struct vm *vm = bare_vm();
	struct json_object *o;
	int ret;

	vm_request_exit(vm, VM_EXIT_POWEROFF);
	expect_error(vm, "{\"request\":\"pause\"}", "shutting down");
	expect_error(vm, "{\"request\":\"checkpoint\",\"file\":\"/tmp/x\"}", "shutting down");
	o = ask(vm, "{\"request\":\"status\"}", &ret);
	assert_true(is_ok(o));
	assert_string_equal(str(o, "state"), "exiting");
	json_object_put(o);
	free_vm(vm);
}

/* ---- socket path rules ---- */

static void test_socket_path(void **state)
{
	char buf[256], big[200];

	assert_int_equal(ctl_socket_path("vm0", NULL, buf, sizeof(buf)), 0);
	assert_string_equal(buf, CTL_DEFAULT_DIR "/vm0.sock");
	assert_int_equal(ctl_socket_path("vm0", "/tmp/k/x.sock", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "/tmp/k/x.sock");
	/* A configured path does not depend on the name at all. */
	assert_int_equal(ctl_socket_path(NULL, "/tmp/x.sock", buf, sizeof(buf)), 0);

	assert_int_equal(ctl_socket_path("", NULL, buf, sizeof(buf)), -EINVAL);
	assert_int_equal(ctl_socket_path(NULL, NULL, buf, sizeof(buf)), -EINVAL);
	assert_int_equal(ctl_socket_path("a/b", NULL, buf, sizeof(buf)), -EINVAL);
	assert_int_equal(ctl_socket_path("..", NULL, buf, sizeof(buf)), -EINVAL);
	assert_int_equal(ctl_socket_path(".", NULL, buf, sizeof(buf)), -EINVAL);
	assert_int_equal(ctl_socket_path("vm0", "", buf, sizeof(buf)), -EINVAL);

	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(ctl_socket_path(big, NULL, buf, sizeof(buf)), -ENAMETOOLONG);
	big[0] = '/';
	assert_int_equal(ctl_socket_path("vm0", big, buf, sizeof(buf)), -ENAMETOOLONG);
	/* The caller's buffer is honoured too. */
	assert_int_equal(ctl_socket_path("vm0", NULL, buf, 8), -ENAMETOOLONG);
}

static void test_bad_name_start(void **state)
{
	struct vm *vm = bare_vm();
	char err[256] = "";

	vm->name = "a/b";
	assert_int_equal(ctl_start(vm, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "a/b"));
	assert_null(vm->ctl);
	free_vm(vm);
}

/* ---- the real socket ---- */

struct sockvm {
	struct vm vm;
	struct config cfg;
	char dir[64], path[128];
};

static struct sockvm *sock_vm_opts(const char *dir, const char *const *kv)
{
	struct sockvm *s = calloc(1, sizeof(*s));
	char err[256] = "";

	vm_init_bare(&s->vm, false);
	config_init(&s->cfg);
	for (; kv && kv[0]; kv += 2)
		config_set(&s->cfg, kv[0], kv[1]);
	s->vm.cfg = &s->cfg;
	s->vm.name = "sockvm";
	s->vm.ram_size = 64 * MiB;
	snprintf(s->dir, sizeof(s->dir), "%s", dir);
	/* A directory that does not exist yet: ctl_start creates it. */
	snprintf(s->path, sizeof(s->path), "%s/sub/vm.sock", dir);
	config_set(&s->cfg, "ctl.socket", s->path);
	assert_int_equal(evloop_start(&s->vm.ev), 0);
	if (ctl_start(&s->vm, err, sizeof(err)))
		fail_msg("ctl_start: %s", err);
	assert_non_null(s->vm.ctl);
	return s;
}

static struct sockvm *sock_vm(const char *dir)
{
	return sock_vm_opts(dir, NULL);
}

static void sock_vm_free(struct sockvm *s)
{
	ctl_stop(&s->vm);
	vm_destroy(&s->vm);
	config_free(&s->cfg);
	free(s);
}

static int client(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = 5 };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	/* A broken server fails the test instead of hanging it. */
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

static void put(int fd, const char *s)
{
	assert_int_equal(send(fd, s, strlen(s), MSG_NOSIGNAL), (ssize_t)strlen(s));
}

/* Read one line (without its newline) or NULL at EOF; byte by byte keeps it simple. */
static char *get_line(int fd)
{
	static char line[4096];
	size_t n = 0;

	for (;;) {
		char ch;
		ssize_t r = read(fd, &ch, 1);

		if (r <= 0)
			return NULL;
		if (ch == '\n')
			break;
		assert_true(n < sizeof(line) - 1);
		line[n++] = ch;
	}
	line[n] = '\0';
	return line;
}

static struct json_object *get_reply(int fd)
{
	char *line = get_line(fd);
	struct json_object *o;

	assert_non_null(line);
	o = json_tokener_parse(line);
	assert_non_null(o);
	return o;
}

static char tmpdir[64];

static int setup_tmp(void **state)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/khyve-test-ctl.XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_tmp(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static void test_socket_status(void **state)
{
	struct sockvm *s = sock_vm(tmpdir);
	struct json_object *o;
	char path[128];
	struct stat st;
	int fd;

	assert_int_equal(lstat(s->path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0600);

	fd = client(s->path);
	put(fd, "{\"request\":\"status\"}\n");
	o = get_reply(fd);
	assert_true(is_ok(o));
	assert_string_equal(str(o, "vm"), "sockvm");
	assert_int_equal(num(o, "memory"), 64 * MiB);
	json_object_put(o);

	/* Errors leave the connection usable; blank lines are skipped; pipelining works. */
	put(fd, "garbage\n\n{\"request\":\"nope\"}\n{\"request\":\"status\"}\n");
	o = get_reply(fd);
	assert_false(is_ok(o));
	json_object_put(o);
	o = get_reply(fd);
	assert_false(is_ok(o));
	assert_non_null(strstr(str(o, "error"), "unknown request"));
	json_object_put(o);
	o = get_reply(fd);
	assert_true(is_ok(o));
	json_object_put(o);

	/* A request split over several writes is put together. */
	put(fd, "{\"requ");
	usleep(20000);
	put(fd, "est\":\"status\"}\n");
	o = get_reply(fd);
	assert_true(is_ok(o));
	json_object_put(o);

	/* A NUL inside a line is refused. */
	assert_int_equal(send(fd, "{\"request\":\"status\"}\0x\n", 23, MSG_NOSIGNAL), 23);
	o = get_reply(fd);
	assert_false(is_ok(o));
	json_object_put(o);
	close(fd);

	/* The last request may lack its newline if the client half-closes. */
	fd = client(s->path);
	put(fd, "{\"request\":\"status\"}");
	shutdown(fd, SHUT_WR);
	o = get_reply(fd);
	assert_true(is_ok(o));
	json_object_put(o);
	assert_null(get_line(fd));
	close(fd);

	snprintf(path, sizeof(path), "%s", s->path);
	sock_vm_free(s);
	/* ctl_stop removed the socket file. */
	assert_int_equal(lstat(path, &st), -1);
}

static void test_socket_abuse(void **state)
{
	struct sockvm *s = sock_vm(tmpdir);
	struct json_object *o;
	char *big;
	int fd;

	/* Oversized line: an error, then the server hangs up. */
	fd = client(s->path);
	big = malloc(CTL_MAX_LINE + 100);
	memset(big, 'x', CTL_MAX_LINE + 100);
	assert_int_equal(send(fd, big, CTL_MAX_LINE + 100, MSG_NOSIGNAL), CTL_MAX_LINE + 100);
	free(big);
	o = get_reply(fd);
	assert_false(is_ok(o));
	assert_non_null(strstr(str(o, "error"), "longer than"));
	json_object_put(o);
	assert_null(get_line(fd));
	close(fd);

	/* Clients that vanish mid-line, or right after asking, harm nothing. */
	fd = client(s->path);
	put(fd, "{\"request\":\"sta");
	close(fd);
	fd = client(s->path);
	put(fd, "{\"request\":\"status\"}\n");
	close(fd);
	fd = client(s->path);
	close(fd);

	/* Several connections at once each get their answer. */
	int a = client(s->path), b = client(s->path);

	put(b, "{\"request\":\"status\"}\n");
	put(a, "{\"request\":\"status\"}\n");
	o = get_reply(a);
	assert_true(is_ok(o));
	json_object_put(o);
	o = get_reply(b);
	assert_true(is_ok(o));
	json_object_put(o);
	close(a);
	close(b);

	/*
	 * A client that asks and asks but never reads: once its socket buffer is full, khyve
	 * gives up on it (after a bounded wait) and goes on serving others.
	 */
	{
		static const char req[] = "{\"request\":\"status\"}\n";
		char *flood = malloc(CTL_MAX_LINE);
		size_t n = CTL_MAX_LINE / (sizeof(req) - 1) * (sizeof(req) - 1);
		int rcv = 4096;

		for (size_t off = 0; off < n; off += sizeof(req) - 1)
			memcpy(flood + off, req, sizeof(req) - 1);
		fd = client(s->path);
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
		for (int i = 0; i < 8; i++)
			if (send(fd, flood, n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
				break;
		free(flood);
		a = client(s->path);
		put(a, "{\"request\":\"status\"}\n");
		o = get_reply(a);
		assert_true(is_ok(o));
		json_object_put(o);
		close(a);
		close(fd);
	}

	/* Pause and resume through the socket. */
	fd = client(s->path);
	put(fd, "{\"request\":\"pause\"}\n{\"request\":\"status\"}\n{\"request\":\"resume\"}\n");
	o = get_reply(fd);
	assert_true(is_ok(o));
	json_object_put(o);
	o = get_reply(fd);
	assert_string_equal(str(o, "state"), "paused");
	assert_non_null(str(o, "vm"));
	json_object_put(o);
	o = get_reply(fd);
	assert_true(is_ok(o));
	assert_true(json_object_object_get_ex(o, "paused_ms", NULL));
	json_object_put(o);
	close(fd);
	sock_vm_free(s);
}

static void test_socket_in_use(void **state)
{
	struct sockvm *s = sock_vm(tmpdir);
	struct vm other;
	char err[256] = "";
	int fd;

	vm_init_bare(&other, true);
	other.cfg = &s->cfg;
	other.name = "other";
	assert_int_equal(ctl_start(&other, err, sizeof(err)), -EADDRINUSE);
	assert_non_null(strstr(err, "in use by another VM"));
	assert_non_null(strstr(err, s->path));
	assert_null(other.ctl);
	vm_destroy(&other);

	/* The first VM still answers. */
	fd = client(s->path);
	put(fd, "{\"request\":\"status\"}\n");
	struct json_object *o = get_reply(fd);

	assert_true(is_ok(o));
	json_object_put(o);
	close(fd);
	sock_vm_free(s);
}

static void test_socket_stale_and_off(void **state)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	char path[100], err[256] = "";
	struct config cfg;
	struct stat st;
	struct vm vm;
	int fd;

	/* A socket file nobody listens on (a khyve that was killed) is replaced. */
	snprintf(path, sizeof(path), "%s/stale.sock", tmpdir);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	close(fd);
	config_init(&cfg);
	config_set(&cfg, "ctl.socket", path);
	vm_init_bare(&vm, true);
	vm.cfg = &cfg;
	vm.name = "stale";
	assert_int_equal(ctl_start(&vm, err, sizeof(err)), 0);
	assert_non_null(vm.ctl);
	/* The loop is not running: ctl_stop cleans up directly. */
	ctl_stop(&vm);
	assert_null(vm.ctl);
	assert_int_equal(lstat(path, &st), -1);

	/* A file that is not a socket is never removed. */
	fd = open(path, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(ctl_start(&vm, err, sizeof(err)), -EEXIST);
	assert_non_null(strstr(err, "not a socket"));
	assert_int_equal(lstat(path, &st), 0);
	unlink(path);

	/* ctl.socket=off: no socket, no error. */
	config_set(&cfg, "ctl.socket", "off");
	assert_int_equal(ctl_start(&vm, err, sizeof(err)), 0);
	assert_null(vm.ctl);
	ctl_stop(&vm);
	vm_destroy(&vm);
	config_free(&cfg);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void fired(void *opaque)
{
	__atomic_store_n((int *)opaque, 1, __ATOMIC_RELEASE);
}

/*
 * A client that asks a lot and reads nothing: its replies wait in its own buffer, the event
 * loop goes on (timers fire, others are served), and once it reads it gets every reply.
 */
static void test_socket_slow_reader(void **state)
{
	static const char req[] = "{\"request\":\"status\"}\n";
	struct sockvm *s = sock_vm(tmpdir);
	struct json_object *o;
	long wmem = 212992;
	size_t rlen, n, got = 0;
	struct vtimer t;
	int fd, b, tick = 0;
	char *flood, *line;
	FILE *fp;

	fp = fopen("/proc/sys/net/core/wmem_default", "r");
	if (fp) {
		assert_int_equal(fscanf(fp, "%ld", &wmem), 1);
		fclose(fp);
	}
	b = client(s->path);
	put(b, req);
	line = get_line(b);
	assert_non_null(line);
	rlen = strlen(line) + 1;
	/*
	 * Less than khyve keeps for one client, more than the kernel holds for it (the socket's
	 * send buffer, which counts each small reply with its overhead).
	 */
	n = 192 * 1024 / rlen;
	assert_true(n * 256 > (size_t)wmem);
	flood = malloc(n * (sizeof(req) - 1));
	for (size_t i = 0; i < n; i++)
		memcpy(flood + i * (sizeof(req) - 1), req, sizeof(req) - 1);
	fd = client(s->path);
	for (size_t off = 0; off < n * (sizeof(req) - 1);) {
		ssize_t w = send(fd, flood + off, n * (sizeof(req) - 1) - off, MSG_NOSIGNAL);

		assert_true(w > 0);
		off += (size_t)w;
	}
	free(flood);
	/* Meanwhile the loop serves others and runs timers. */
	put(b, req);
	o = get_reply(b);
	assert_true(is_ok(o));
	json_object_put(o);
	vtimer_init(&t, &s->vm.ev, fired, &tick);
	vtimer_arm(&t, vclock_ns(&s->vm.ev) + 1000000);
	for (uint64_t end = now_ms() + 5000;
	     !__atomic_load_n(&tick, __ATOMIC_ACQUIRE) && now_ms() < end;)
		usleep(1000);
	assert_int_equal(tick, 1);
	close(b);
	/* Nothing was lost: every request has its reply. */
	while (got < n && (line = get_line(fd))) {
		assert_non_null(strstr(line, "\"ok\":true"));
		got++;
	}
	assert_int_equal(got, n);
	close(fd);
	sock_vm_free(s);
}

static void expect_dropped(int fd, const char *why)
{
	char *line = get_line(fd);

	assert_non_null(line);
	if (!strstr(line, why))
		fail_msg("'%s' does not say '%s'", line, why);
	assert_null(get_line(fd));
}

/* Connections that say nothing, or trickle a line byte by byte, do not hold their slot. */
static void test_socket_timeouts(void **state)
{
	static const char *const kv[] = { "ctl.idle_ms", "300", "ctl.line_ms", "300", NULL };
	static const char req[] = "{\"request\":\"status\",\"padding\":\"......................\"}";
	struct sockvm *s = sock_vm_opts(tmpdir, kv);
	char bad[128] = "", err[256];
	size_t sent = 0;
	int fd;

	fd = client(s->path);
	expect_dropped(fd, "idle for too long");
	close(fd);
	/* One byte every 50 ms: dropped long before the line is done. */
	fd = client(s->path);
	for (; sent < sizeof(req) - 1; sent++) {
		struct timeval tv = { 0, 50000 };
		fd_set r;

		if (send(fd, req + sent, 1, MSG_NOSIGNAL) != 1)
			break;
		FD_ZERO(&r);
		FD_SET(fd, &r);
		if (select(fd + 1, &r, NULL, NULL, &tv) > 0)
			break;
	}
	assert_true(sent < sizeof(req) - 1);
	expect_dropped(fd, "not completed in time");
	close(fd);
	sock_vm_free(s);
	/* Timeouts are milliseconds, at least 1. */
	{
		struct vm vm;
		struct config cfg;

		config_init(&cfg);
		config_set(&cfg, "ctl.socket", "off");
		config_set(&cfg, "ctl.line_ms", "0");
		snprintf(bad, sizeof(bad), "%s/t.sock", tmpdir);
		config_set(&cfg, "ctl.socket", bad);
		vm_init_bare(&vm, true);
		vm.cfg = &cfg;
		vm.name = "t";
		assert_int_equal(ctl_start(&vm, err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, "ctl.line_ms=0"));
		vm_destroy(&vm);
		config_free(&cfg);
	}
}

/* Eight idle connections do not lock the next client out: the least recently active goes. */
static void test_socket_slots(void **state)
{
	struct sockvm *s = sock_vm(tmpdir);
	struct json_object *o;
	int idle[8], fd;

	for (int i = 0; i < 8; i++) {
		idle[i] = client(s->path);
		usleep(2000); /* distinct ages */
	}
	/* The newest idle one was active last; make the second one busier still. */
	put(idle[1], "{\"request\":\"status\"}\n");
	o = get_reply(idle[1]);
	json_object_put(o);
	fd = client(s->path);
	put(fd, "{\"request\":\"status\"}\n");
	o = get_reply(fd);
	assert_true(is_ok(o));
	json_object_put(o);
	expect_dropped(idle[0], "too many control connections");
	/* The others are still served. */
	put(idle[1], "{\"request\":\"status\"}\n");
	o = get_reply(idle[1]);
	assert_true(is_ok(o));
	json_object_put(o);
	for (int i = 0; i < 8; i++)
		close(idle[i]);
	close(fd);
	sock_vm_free(s);
}

/* The socket's directory must be private; a symlink in the socket's place is left alone. */
static void test_socket_directory(void **state)
{
	char dir[160], path[200], target[200], err[512] = "";
	struct config cfg;
	struct stat st;
	struct vm vm;
	int fd;

	config_init(&cfg);
	vm_init_bare(&vm, true);
	vm.cfg = &cfg;
	vm.name = "d";
	snprintf(dir, sizeof(dir), "%s/open", tmpdir);
	assert_int_equal(mkdir(dir, 0700), 0);
	chmod(dir, 0777);
	snprintf(path, sizeof(path), "%s/vm.sock", dir);
	config_set(&cfg, "ctl.socket", path);
	assert_int_equal(ctl_start(&vm, err, sizeof(err)), -EPERM);
	assert_non_null(strstr(err, "is not private"));
	assert_int_equal(lstat(path, &st), -1);
	/* Sticky, as /tmp: others cannot remove or rename our socket there. */
	chmod(dir, 01777);
	assert_int_equal(ctl_start(&vm, err, sizeof(err)), 0);
	ctl_stop(&vm);
	if (geteuid() == 0) {
		chmod(dir, 0700);
		assert_int_equal(chown(dir, 4321, 4321), 0);
		assert_int_equal(ctl_start(&vm, err, sizeof(err)), -EPERM);
		assert_non_null(strstr(err, "owner uid 4321"));
	} else {
		print_message("not root: the directory-owner case needs a second user\n");
	}
	/* A symlink where the socket goes: refused, its target untouched. */
	snprintf(target, sizeof(target), "%s/target", tmpdir);
	fd = open(target, O_CREAT | O_WRONLY, 0640);
	close(fd);
	snprintf(path, sizeof(path), "%s/link.sock", tmpdir);
	assert_int_equal(symlink(target, path), 0);
	config_set(&cfg, "ctl.socket", path);
	assert_int_equal(ctl_start(&vm, err, sizeof(err)), -EEXIST);
	assert_int_equal(stat(target, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0640);
	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISLNK(st.st_mode));
	vm_destroy(&vm);
	config_free(&cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_status),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_unknown),
		cmocka_unit_test(test_nmi_stats),
		cmocka_unit_test(test_migrate_fields),
		cmocka_unit_test(test_screenshot_fields),
		cmocka_unit_test(test_save_fields),
		cmocka_unit_test(test_pause_resume),
		cmocka_unit_test(test_ending_vm),
		cmocka_unit_test(test_socket_path),
		cmocka_unit_test(test_bad_name_start),
		cmocka_unit_test(test_socket_status),
		cmocka_unit_test(test_socket_abuse),
		cmocka_unit_test(test_socket_in_use),
		cmocka_unit_test(test_socket_stale_and_off),
		cmocka_unit_test(test_socket_slow_reader),
		cmocka_unit_test(test_socket_timeouts),
		cmocka_unit_test(test_socket_slots),
		cmocka_unit_test(test_socket_directory),
	};

	return cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
}
