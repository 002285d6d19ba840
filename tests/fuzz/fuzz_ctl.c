// SPDX-License-Identifier: BSD-2-Clause
/*
 * libFuzzer target: the control protocol (src/ctl/), as a local client drives it.  The first
 * input byte chooses how the rest arrives:
 *
 *	even	through the socket: one connection to a running server (ctl_start on a bare
 *		VM, its event loop on its own thread) gets the bytes, then EOF; every reply
 *		line is read back until the server closes
 *	odd	straight into ctl_handle_line(), one call per line (split at '\n' as the
 *		server does)
 *
 * The VM is marked as ending, so checkpoint, suspend, pause and resume are parsed and checked
 * in full and then refused before they touch a file or a vCPU (a fuzzer must not write
 * snapshots to paths it makes up); status runs.  What must hold: no crash, no sanitizer
 * report, no hang, exactly one final reply per request and every reply line a JSON object
 * with a boolean "ok" (progress lines aside).
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <json-c/json.h>

#include "config.h"
#include "ctl/ctl.h"
#include "ctl/ctl_proto.h"
#include "vm.h"
#include "fuzz.h"

static struct vm vm;
static struct config cfg;
static char dir[64], sock_path[128];

/* The server's thread goes with the process; only its files need removing. */
static void stop(void)
{
	unlink(sock_path);
	rmdir(dir);
}

/* Started at the first input, not in fuzz_init: writing the seeds needs no server. */
static void start(void)
{
	const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	char err[256];

	snprintf(dir, sizeof(dir), "%s/khyve-fuzz-ctl-XXXXXX", tmp);
	if (!mkdtemp(dir))
		abort();
	snprintf(sock_path, sizeof(sock_path), "%s/ctl.sock", dir);
	vm_init_bare(&vm, false); /* a real clock: the server's thread waits on its fds */
	config_init(&cfg);
	vm.cfg = &cfg;
	vm.name = "fuzz";
	config_set(&cfg, "ctl.socket", sock_path);
	/* Save, pause and resume are refused after their fields are checked. */
	atomic_store(&vm.exit_status, VM_EXIT_POWEROFF);
	if (evloop_start(&vm.ev) || ctl_start(&vm, err, sizeof(err))) {
		fprintf(stderr, "fuzz: ctl_start: %s\n", err);
		abort();
	}
	atexit(stop);
}

/* A reply line: a JSON object with "ok", or a progress line. */
static bool reply_ok(const char *line, size_t len, bool *final)
{
	struct json_object *o = json_tokener_parse(line), *v;
	bool good;

	good = o && json_object_is_type(o, json_type_object) && strlen(line) == len;
	*final = good && json_object_object_get_ex(o, "ok", &v);
	good = good && (*final ? json_object_is_type(v, json_type_boolean)
			       : json_object_object_get_ex(o, "progress", &v));
	json_object_put(o);
	return good;
}

struct count {
	unsigned finals;
};

static void record(void *opaque, const char *json)
{
	struct count *c = opaque;
	bool final;

	FZ_ASSERT(reply_ok(json, strlen(json), &final), "malformed reply: %s", json);
	c->finals += final;
}

static void direct(const uint8_t *data, size_t size)
{
	char *buf = malloc(size + 1), *line, *nl;

	if (!buf)
		abort();
	memcpy(buf, data, size);
	buf[size] = '\0';
	for (line = buf; line; line = nl) {
		struct count c = { 0 };

		nl = strchr(line, '\n');
		if (nl)
			*nl++ = '\0';
		ctl_handle_line(&vm, line, record, &c);
		FZ_ASSERT(c.finals == 1, "%u final replies to one request", c.finals);
		if (line + strlen(line) < buf + size && !nl)
			break; /* a NUL in the input ends what a C string can carry */
	}
	free(buf);
}

static void through_socket(const uint8_t *data, size_t size)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	static char in[1 << 20];
	size_t have = 0, start = 0, sent = 0;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(a.sun_path, sizeof(a.sun_path), "%s", sock_path);
	FZ_ASSERT(fd >= 0 && !connect(fd, (struct sockaddr *)&a, sizeof(a)), "connect: %s",
		  strerror(errno));
	if (!size)
		shutdown(fd, SHUT_WR);
	for (;;) {
		struct pollfd p = { fd, POLLIN | (sent < size ? POLLOUT : 0), 0 };
		ssize_t n;

		FZ_ASSERT(poll(&p, 1, 10000) == 1, "the server went quiet");
		if (p.revents & POLLOUT) {
			n = send(fd, data + sent, size - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (n > 0)
				sent += (size_t)n;
			else if (n < 0 && errno != EAGAIN)
				sent = size; /* the server dropped us: read what it said */
			if (sent == size)
				shutdown(fd, SHUT_WR);
		}
		if (!(p.revents & (POLLIN | POLLHUP | POLLERR)))
			continue;
		n = recv(fd, in + have, sizeof(in) - 1 - have, 0);
		if (n <= 0)
			break;
		have += (size_t)n;
		for (char *nl; (nl = memchr(in + start, '\n', have - start));) {
			bool final;

			*nl = '\0';
			if (getenv("FUZZ_VERBOSE"))
				fprintf(stderr, "fuzz: reply %s\n", in + start);
			FZ_ASSERT(reply_ok(in + start, (size_t)(nl - in - start), &final),
				  "malformed reply: %s", in + start);
			start = (size_t)(nl - in) + 1;
		}
		memmove(in, in + start, have - start);
		have -= start;
		start = 0;
		FZ_ASSERT(have < sizeof(in) - 1, "a reply line without end");
	}
	FZ_ASSERT(have == 0, "a reply without its newline");
	close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool started;

	if (!started) {
		start();
		started = true;
	}
	if (!size)
		return 0;
	if (data[0] & 1)
		direct(data + 1, size - 1);
	else
		through_socket(data + 1, size - 1);
	return 0;
}

static void seed(const char *name, bool socket, const char *text)
{
	struct fz_seed s;

	fz_seed_start(&s);
	fz_put(&s, socket ? 0 : 1, 1);
	fz_put_bytes(&s, text, strlen(text));
	fz_seed_write(&s, name);
}

void fuzz_seeds(void)
{
	/* What khyvectl sends, and a few ways to get it wrong. */
	seed("status", true, "{\"request\":\"status\"}\n");
	seed("checkpoint", true,
	     "{\"request\":\"checkpoint\",\"file\":\"/nonexistent/x.snap\",\"progress\":true}\n");
	seed("suspend", false, "{\"request\":\"suspend\",\"file\":\"/nonexistent/x.snap\"}");
	seed("pause-resume", true, "{\"request\":\"pause\"}\r\n\n{\"request\":\"resume\"}\n");
	seed("screenshot", false, "{\"request\":\"screenshot\",\"file\":\"/nonexistent/x.png\"}");
	seed("bad", true,
	     "{\"request\":\"status\",\"x\":1}\n[1,2]\n{\"request\":7}\n{\"request\":\"status\"} "
	     "x\n"
	     "{\"request\":\"checkpoint\",\"file\":\"rel\"}\n{\"request\":\"status\"");
}
