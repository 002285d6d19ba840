// SPDX-License-Identifier: BSD-2-Clause
/*
 * The control socket: a UNIX stream socket per VM speaking newline-delimited JSON
 * (doc/control-protocol.md).  Everything here runs on the VM's event-loop thread: accepting,
 * reading, and handling requests, so requests from all clients are naturally serialized with
 * each other and with device timers.  A save runs for as long as it takes on that thread;
 * snap_save() is written to be called from there.
 *
 * The client is trusted no more than it must be: lines are bounded, JSON is parsed with a
 * depth limit, every field is type-checked, and a client that stops reading or vanishes only
 * loses its own connection.
 */
#include "ctl/ctl.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "ctl/ctl_proto.h"
#include "snap/snapshot.h"
#include "version.h"
#include "vm.h"

#define CTL_MAX_CONNS 8
#define CTL_SEND_TIMEOUT_MS 2000 /* a client that reads nothing for this long is dropped */
#define CTL_PROGRESS_NS 100000000ULL
#define CTL_JSON_DEPTH 16

struct ctl_conn {
	struct ctl *ctl;
	int fd;
	bool dead; /* write failed or peer gone: close after the current line */
	size_t len;
	char buf[CTL_MAX_LINE + 2]; /* a full line, its newline, and a NUL */
	struct ctl_conn *next;
};

struct ctl {
	struct vm *vm;
	int lfd;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	dev_t dev; /* identity of the socket file we bound, so stop never */
	ino_t ino; /* unlinks a socket that a later khyve put at the same path */
	struct ctl_conn *conns;
	unsigned nconns;
	uint64_t paused_since; /* monotonic ns of the last pause request, 0 if unknown */
};

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* ---- socket path ---- */

#define SUN_PATH_MAX sizeof(((struct sockaddr_un *)0)->sun_path)

int ctl_socket_path(const char *vmname, const char *configured, char *buf, size_t len)
{
	int n;

	if (configured) {
		if (!*configured)
			return -EINVAL;
		n = snprintf(buf, len, "%s", configured);
	} else {
		/* The name becomes a file name: no directories, nothing that walks upwards. */
		if (!vmname || !*vmname || strchr(vmname, '/') || !strcmp(vmname, ".") ||
		    !strcmp(vmname, ".."))
			return -EINVAL;
		n = snprintf(buf, len, "%s/%s.sock", CTL_DEFAULT_DIR, vmname);
	}
	if (n < 0 || (size_t)n >= len || (size_t)n >= SUN_PATH_MAX)
		return -ENAMETOOLONG;
	return 0;
}

static void path_error(struct vm *vm, const char *configured, int ret, char *err, size_t errlen)
{
	const char *name = vm->name ? vm->name : "";

	if (configured && ret == -EINVAL)
		snprintf(err, errlen,
			 "ctl.socket: an empty path is not a socket path "
			 "(use ctl.socket=off to disable the control socket)");
	else if (configured)
		snprintf(err, errlen,
			 "ctl.socket=%s: longer than the %zu bytes a UNIX socket "
			 "path may have",
			 configured, SUN_PATH_MAX - 1);
	else if (ret == -EINVAL && !*name)
		snprintf(err, errlen,
			 "the VM has no name to name its control socket; "
			 "give one or set -o ctl.socket=PATH");
	else if (ret == -EINVAL)
		snprintf(err, errlen,
			 "VM name '%s' cannot name a control socket file "
			 "(no '/', '.' or '..'); set -o ctl.socket=PATH",
			 name);
	else
		snprintf(err, errlen,
			 "control socket %s/%s.sock would be longer than the %zu "
			 "bytes a UNIX socket path may have; use a shorter VM name or "
			 "-o ctl.socket=PATH",
			 CTL_DEFAULT_DIR, name, SUN_PATH_MAX - 1);
}

/* ---- replies ---- */

struct ctl_req {
	struct vm *vm;
	struct json_object *in;
	ctl_send_fn send;
	void *opaque;
	const char *file;
	bool progress;
	uint64_t last_ns, last_done;
	int last_pct;
	char err[512];
};

static void send_obj(struct ctl_req *r, struct json_object *o)
{
	r->send(r->opaque,
		json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
							  JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
}

static int reply_error(struct ctl_req *r, int ret, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int reply_error(struct ctl_req *r, int ret, const char *fmt, ...)
{
	struct json_object *o = json_object_new_object();
	char msg[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	json_object_object_add(o, "ok", json_object_new_boolean(0));
	json_object_object_add(o, "error", json_object_new_string(msg));
	send_obj(r, o);
	return ret;
}

/* Milliseconds with three decimals, written as such (not as a binary double's digits). */
static void add_ms(struct json_object *o, const char *key, uint64_t ns)
{
	char s[32];

	snprintf(s, sizeof(s), "%llu.%03llu", (unsigned long long)(ns / 1000000),
		 (unsigned long long)(ns / 1000 % 1000));
	json_object_object_add(o, key, json_object_new_double_s((double)ns / 1e6, s));
}

static void add_u64(struct json_object *o, const char *key, uint64_t v)
{
	json_object_object_add(o, key, json_object_new_uint64(v));
}

static struct json_object *ok_obj(void)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "ok", json_object_new_boolean(1));
	return o;
}

/* ---- requests ---- */

static bool vm_ending(struct vm *vm)
{
	return atomic_load(&vm->exit_status) >= 0;
}

static void ctl_progress(void *opaque, uint64_t done, uint64_t total)
{
	struct ctl_req *r = opaque;
	struct json_object *o, *p;
	uint64_t now = mono_ns();
	int pct = total ? (int)(done * 100 / total) : 100;

	/* At most one line per percent or per 100 ms: a client must not slow the save down. */
	if (done == r->last_done || (pct == r->last_pct && now - r->last_ns < CTL_PROGRESS_NS))
		return;
	r->last_done = done;
	r->last_pct = pct;
	r->last_ns = now;
	o = json_object_new_object();
	p = json_object_new_object();
	add_u64(p, "done", done);
	add_u64(p, "total", total);
	json_object_object_add(o, "progress", p);
	send_obj(r, o);
}

static int req_save(struct ctl_req *r, bool suspend)
{
	struct snap_save_opts opts = { .suspend = suspend };
	struct snap_result res = { 0 };
	struct json_object *o;
	int ret;

	if (vm_ending(r->vm))
		return reply_error(r, -ESHUTDOWN, "the VM is shutting down");
	if (r->progress) {
		opts.progress = ctl_progress;
		opts.progress_opaque = r;
		r->last_ns = mono_ns();
		r->last_done = 0;
		r->last_pct = 0;
	}
	r->err[0] = '\0';
	ret = snap_save(r->vm, r->file, &opts, &res, r->err, sizeof(r->err));
	if (ret)
		return reply_error(r, ret, "%s", r->err[0] ? r->err : strerror(-ret));
	o = ok_obj();
	add_ms(o, "paused_ms", res.paused_ns);
	add_ms(o, "total_ms", res.total_ns);
	add_u64(o, "bytes", res.bytes);
	add_u64(o, "mem_pages", res.mem_pages);
	add_u64(o, "zero_pages", res.zero_pages);
	json_object_object_add(o, "file", json_object_new_string(r->file));
	send_obj(r, o);
	return 0;
}

static int req_checkpoint(struct ctl_req *r)
{
	return req_save(r, false);
}

static int req_suspend(struct ctl_req *r)
{
	return req_save(r, true);
}

static int req_pause(struct ctl_req *r)
{
	struct vm *vm = r->vm;
	uint64_t t0 = mono_ns();
	struct json_object *o;
	int ret;

	if (vm_ending(vm))
		return reply_error(r, -ESHUTDOWN, "the VM is shutting down");
	if (vm->paused)
		return reply_error(r, -EALREADY, "the VM is already paused");
	r->err[0] = '\0';
	ret = snap_pause_vm(vm, r->err, sizeof(r->err));
	if (ret)
		return reply_error(r, ret, "pause: %s", r->err[0] ? r->err : strerror(-ret));
	vm->paused = true;
	if (vm->ctl)
		vm->ctl->paused_since = mono_ns();
	o = ok_obj();
	json_object_object_add(o, "state", json_object_new_string("paused"));
	add_ms(o, "took_ms", mono_ns() - t0);
	send_obj(r, o);
	return 0;
}

static int req_resume(struct ctl_req *r)
{
	struct vm *vm = r->vm;
	uint64_t t0 = mono_ns();
	struct json_object *o;
	int ret;

	if (vm_ending(vm))
		return reply_error(r, -ESHUTDOWN, "the VM is shutting down");
	if (!vm->paused)
		return reply_error(r, -EALREADY, "the VM is not paused");
	r->err[0] = '\0';
	ret = snap_resume_vm(vm, r->err, sizeof(r->err));
	if (ret)
		return reply_error(r, ret, "resume: %s", r->err[0] ? r->err : strerror(-ret));
	vm->paused = false;
	o = ok_obj();
	json_object_object_add(o, "state", json_object_new_string("running"));
	if (vm->ctl && vm->ctl->paused_since)
		add_ms(o, "paused_ms", mono_ns() - vm->ctl->paused_since);
	add_ms(o, "took_ms", mono_ns() - t0);
	if (vm->ctl)
		vm->ctl->paused_since = 0;
	send_obj(r, o);
	return 0;
}

static int req_status(struct ctl_req *r)
{
	struct vm *vm = r->vm;
	struct json_object *o = ok_obj();
	uint64_t now = mono_ns();

	json_object_object_add(o, "vm", json_object_new_string(vm->name ? vm->name : ""));
	json_object_object_add(o, "state",
			       json_object_new_string(vm_ending(vm) ? "exiting"
						      : vm->paused  ? "paused"
								    : "running"));
	add_u64(o, "vcpus", vm->ncpus);
	add_u64(o, "memory", vm->ram_size);
	add_u64(o, "uptime_ms",
		vm->start_ns && now > vm->start_ns ? (now - vm->start_ns) / 1000000 : 0);
	if (vm->paused && vm->ctl && vm->ctl->paused_since)
		add_ms(o, "paused_ms", now - vm->ctl->paused_since);
	add_u64(o, "pid", (uint64_t)getpid());
	json_object_object_add(o, "version", json_object_new_string(KHYVE_VERSION));
	send_obj(r, o);
	return 0;
}

static const struct ctl_request {
	const char *name;
	bool save; /* takes "file" and "progress" */
	int (*fn)(struct ctl_req *r);
} ctl_requests[] = {
	{ "checkpoint", true, req_checkpoint }, { "suspend", true, req_suspend },
	{ "pause", false, req_pause },		{ "resume", false, req_resume },
	{ "status", false, req_status },
};

/* Fields of a save request: an absolute path (khyve's cwd is not the client's) and a bool. */
static int parse_save_fields(struct ctl_req *r, const char *name)
{
	struct json_object *v;

	if (!json_object_object_get_ex(r->in, "file", &v) ||
	    !json_object_is_type(v, json_type_string))
		return reply_error(r, -EINVAL, "%s: \"file\" must be given as a string", name);
	r->file = json_object_get_string(v);
	if ((size_t)json_object_get_string_len(v) != strlen(r->file))
		return reply_error(r, -EINVAL, "%s: \"file\" holds a NUL character", name);
	if (!*r->file)
		return reply_error(r, -EINVAL, "%s: \"file\" is empty", name);
	if (strlen(r->file) >= PATH_MAX)
		return reply_error(r, -ENAMETOOLONG, "%s: \"file\" is longer than %d bytes", name,
				   PATH_MAX - 1);
	if (r->file[0] != '/')
		return reply_error(r, -EINVAL,
				   "%s: file '%s' is a relative path; give an "
				   "absolute path (khyve's working directory is not yours)",
				   name, r->file);
	if (json_object_object_get_ex(r->in, "progress", &v)) {
		if (!json_object_is_type(v, json_type_boolean))
			return reply_error(r, -EINVAL, "%s: \"progress\" must be true or false",
					   name);
		r->progress = json_object_get_boolean(v);
	}
	return 0;
}

/* Unknown fields are refused so that a misspelt option is not silently ignored. */
static int check_fields(struct ctl_req *r, const struct ctl_request *q)
{
	json_object_object_foreach (r->in, key, val) {
		(void)val;
		if (!strcmp(key, "request"))
			continue;
		if (q->save && (!strcmp(key, "file") || !strcmp(key, "progress")))
			continue;
		return reply_error(r, -EINVAL, "%s: unknown field \"%s\"", q->name, key);
	}
	return 0;
}

static struct json_object *parse_line(struct ctl_req *r, const char *line, int *ret)
{
	struct json_tokener *tok = json_tokener_new_ex(CTL_JSON_DEPTH);
	size_t len = strlen(line);
	struct json_object *o;
	enum json_tokener_error e;

	*ret = -ENOMEM;
	if (!tok) {
		reply_error(r, -ENOMEM, "out of memory");
		return NULL;
	}
	o = json_tokener_parse_ex(tok, line, (int)len);
	e = json_tokener_get_error(tok);
	if (o && e == json_tokener_success) {
		const char *p = line + json_tokener_get_parse_end(tok);

		p += strspn(p, " \t\r");
		if (*p) {
			json_object_put(o);
			o = NULL;
			*ret = reply_error(r, -EINVAL,
					   "malformed request: text after the JSON "
					   "object");
		}
	} else {
		json_object_put(o);
		o = NULL;
		*ret = reply_error(r, -EINVAL, "malformed request: %s",
				   e == json_tokener_continue ? "incomplete JSON"
							      : json_tokener_error_desc(e));
	}
	json_tokener_free(tok);
	return o;
}

static int dispatch(struct ctl_req *r)
{
	struct json_object *v;
	const char *name;
	int ret;

	if (!json_object_is_type(r->in, json_type_object))
		return reply_error(r, -EINVAL, "malformed request: expected a JSON object");
	if (!json_object_object_get_ex(r->in, "request", &v) ||
	    !json_object_is_type(v, json_type_string))
		return reply_error(r, -EINVAL, "malformed request: no \"request\" string");
	name = json_object_get_string(v);
	for (size_t i = 0; i < sizeof(ctl_requests) / sizeof(ctl_requests[0]); i++) {
		const struct ctl_request *q = &ctl_requests[i];

		if (strcmp(name, q->name))
			continue;
		ret = check_fields(r, q);
		if (!ret && q->save)
			ret = parse_save_fields(r, q->name);
		return ret ? ret : q->fn(r);
	}
	return reply_error(r, -EINVAL,
			   "unknown request \"%.64s\" (expected checkpoint, suspend, "
			   "pause, resume or status)",
			   name);
}

int ctl_handle_line(struct vm *vm, const char *line, ctl_send_fn send, void *opaque)
{
	struct ctl_req r = { .vm = vm, .send = send, .opaque = opaque };
	int ret;

	if (strlen(line) > CTL_MAX_LINE)
		return reply_error(&r, -E2BIG, "request longer than %d bytes", CTL_MAX_LINE);
	r.in = parse_line(&r, line, &ret);
	if (!r.in)
		return ret;
	ret = dispatch(&r);
	json_object_put(r.in);
	return ret;
}

/* ---- connections ---- */

/*
 * Write a whole line, waiting at most CTL_SEND_TIMEOUT_MS for a client that reads slowly.
 * With @optional (progress lines), give up at once if nothing fits, so that a client that
 * does not read never stretches a save; once a line is started it is finished, so the stream
 * stays line-aligned.
 */
static void conn_write(struct ctl_conn *c, const char *s, size_t len, bool optional)
{
	uint64_t deadline = mono_ns() + CTL_SEND_TIMEOUT_MS * 1000000ULL;

	while (len && !c->dead) {
		ssize_t n = send(c->fd, s, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		struct pollfd p = { .fd = c->fd, .events = POLLOUT };
		uint64_t now;

		if (n > 0) {
			s += n;
			len -= (size_t)n;
			optional = false;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
			c->dead = true;
			return;
		}
		if (optional)
			return;
		now = mono_ns();
		if (now >= deadline) {
			c->dead = true;
			return;
		}
		if (poll(&p, 1, (int)((deadline - now) / 1000000) + 1) < 0 && errno != EINTR)
			c->dead = true;
	}
}

static void conn_send(void *opaque, const char *json)
{
	struct ctl_conn *c = opaque;
	size_t len = strlen(json);
	char *line = malloc(len + 1);

	if (!line) {
		c->dead = true;
		return;
	}
	memcpy(line, json, len);
	line[len] = '\n';
	conn_write(c, line, len + 1, !strncmp(json, "{\"progress\"", 11));
	free(line);
}

static void conn_close(struct ctl_conn *c)
{
	struct ctl *ctl = c->ctl;
	struct ctl_conn **pp;

	for (pp = &ctl->conns; *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	ctl->nconns--;
	evloop_del_fd(&ctl->vm->ev, c->fd);
	close(c->fd);
	free(c);
}

static void conn_line(struct ctl_conn *c, char *line, size_t len)
{
	struct ctl_req r = { .send = conn_send, .opaque = c };

	if (len && line[len - 1] == '\r')
		line[--len] = '\0';
	if (!len)
		return; /* blank lines are allowed between requests */
	if (memchr(line, '\0', len)) {
		reply_error(&r, -EINVAL, "malformed request: NUL byte in the line");
		return;
	}
	ctl_handle_line(c->ctl->vm, line, conn_send, c);
}

/* Handle every complete line in the buffer; keep the incomplete tail. */
static void conn_lines(struct ctl_conn *c)
{
	size_t start = 0;
	char *nl;

	while (!c->dead && (nl = memchr(c->buf + start, '\n', c->len - start))) {
		*nl = '\0';
		conn_line(c, c->buf + start, (size_t)(nl - (c->buf + start)));
		start = (size_t)(nl - c->buf) + 1;
	}
	memmove(c->buf, c->buf + start, c->len - start);
	c->len -= start;
}

static void conn_event(void *opaque, uint32_t events)
{
	struct ctl_conn *c = opaque;
	size_t room = CTL_MAX_LINE + 1 - c->len;
	ssize_t n = recv(c->fd, c->buf + c->len, room, MSG_DONTWAIT);

	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (n <= 0) {
		/* EOF: a last request without its newline still gets its answer. */
		if (n == 0 && c->len && !c->dead) {
			c->buf[c->len] = '\0';
			conn_line(c, c->buf, c->len);
		}
		conn_close(c);
		return;
	}
	c->len += (size_t)n;
	conn_lines(c);
	if (!c->dead && c->len > CTL_MAX_LINE) {
		struct ctl_req r = { .send = conn_send, .opaque = c };

		reply_error(&r, -E2BIG, "request line longer than %d bytes", CTL_MAX_LINE);
		c->dead = true;
	}
	if (c->dead)
		conn_close(c);
}

/* Only our own user (or root) may drive the VM, whatever the socket file's mode ends up as. */
static bool peer_allowed(int fd)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return false;
	return cred.uid == 0 || cred.uid == geteuid();
}

static void ctl_refuse(int fd, const char *msg)
{
	char line[160];
	int n = snprintf(line, sizeof(line), "{\"ok\":false,\"error\":\"%s\"}\n", msg);

	if (send(fd, line, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
		/* the client is gone already: nothing to tell it */
	}
	close(fd);
}

static void ctl_accept(void *opaque, uint32_t events)
{
	struct ctl *ctl = opaque;
	struct ctl_conn *c;
	int fd;

	for (;;) {
		fd = accept4(ctl->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return; /* EAGAIN, or an aborted connection: nothing to do */
		if (!peer_allowed(fd)) {
			ctl_refuse(fd, "permission denied");
			continue;
		}
		if (ctl->nconns >= CTL_MAX_CONNS) {
			ctl_refuse(fd, "too many control connections");
			continue;
		}
		c = malloc(sizeof(*c));
		if (!c) {
			ctl_refuse(fd, "out of memory");
			continue;
		}
		c->ctl = ctl;
		c->fd = fd;
		c->dead = false;
		c->len = 0;
		if (evloop_add_fd(&ctl->vm->ev, fd, EPOLLIN, conn_event, c)) {
			free(c);
			ctl_refuse(fd, "out of memory");
			continue;
		}
		c->next = ctl->conns;
		ctl->conns = c;
		ctl->nconns++;
	}
}

/* ---- start and stop ---- */

/* mkdir -p for the socket's directory; new directories are private (0700). */
static int make_dirs(const char *path)
{
	char dir[PATH_MAX];
	char *slash;

	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return 0;
	*slash = '\0';
	for (char *p = dir + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(dir, 0700) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/* Lock the directory while we probe, remove a stale socket and bind, so two khyves that start
 * with the same name at once cannot both decide the socket is stale. */
static int lock_dir(const char *path)
{
	char dir[PATH_MAX];
	char *slash;
	int fd;

	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == dir)
		dir[1] = '\0';
	else
		*slash = '\0';
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0 && flock(fd, LOCK_EX) < 0) {
		close(fd);
		fd = -1; /* no flock here (odd filesystem): go on without the lock */
	}
	return fd;
}

static void fill_addr(struct sockaddr_un *a, const char *path)
{
	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	memcpy(a->sun_path, path, strlen(path));
}

/* 1 if a live process listens at @path, 0 if nothing does (stale file removed), or -errno. */
static int probe_and_clean(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un a;
	struct stat st;
	int fd, ret;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode)) {
		snprintf(err, errlen,
			 "control socket %s: the path exists and is not a socket; "
			 "remove it or choose another ctl.socket",
			 path);
		return -EEXIST;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	fill_addr(&a, path);
	ret = connect(fd, (struct sockaddr *)&a, sizeof(a));
	/* EAGAIN: a full backlog, which also means someone is listening. */
	if (ret == 0 || errno == EAGAIN || errno == EINPROGRESS) {
		close(fd);
		snprintf(err, errlen, "control socket %s is in use by another VM", path);
		return 1;
	}
	ret = errno;
	close(fd);
	if (ret != ECONNREFUSED)
		return -ret;
	/* Left behind by a khyve that died: nobody can be reached through it. */
	if (unlink(path) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

static int ctl_bind(struct ctl *ctl, char *err, size_t errlen)
{
	struct sockaddr_un a;
	struct stat st;
	mode_t old;
	int ret;

	ctl->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (ctl->lfd < 0)
		return -errno;
	fill_addr(&a, ctl->path);
	/* The file is created private: no window in which others could connect. */
	old = umask(0177);
	ret = bind(ctl->lfd, (struct sockaddr *)&a, sizeof(a));
	umask(old);
	if (ret < 0) {
		ret = -errno;
		if (ret == -EADDRINUSE)
			snprintf(err, errlen, "control socket %s is in use by another VM",
				 ctl->path);
		return ret;
	}
	if (chmod(ctl->path, 0600) < 0 || lstat(ctl->path, &st) < 0 || listen(ctl->lfd, 8) < 0) {
		ret = -errno;
		unlink(ctl->path);
		return ret;
	}
	ctl->dev = st.st_dev;
	ctl->ino = st.st_ino;
	return 0;
}

static int ctl_open(struct ctl *ctl, bool is_default, char *err, size_t errlen)
{
	int lockfd, ret;

	ret = make_dirs(ctl->path);
	if (ret) {
		snprintf(err, errlen, "cannot create the directory of control socket %s: %s%s",
			 ctl->path, strerror(-ret),
			 is_default ? " (set -o ctl.socket=PATH or ctl.socket=off)" : "");
		return ret;
	}
	lockfd = lock_dir(ctl->path);
	ret = probe_and_clean(ctl->path, err, errlen);
	if (ret == 1)
		ret = -EADDRINUSE;
	else if (!ret)
		ret = ctl_bind(ctl, err, errlen);
	if (lockfd >= 0)
		close(lockfd);
	if (ret && !err[0])
		snprintf(err, errlen, "control socket %s: %s", ctl->path, strerror(-ret));
	return ret;
}

int ctl_start(struct vm *vm, char *err, size_t errlen)
{
	const char *configured = vm->cfg ? config_get(vm->cfg, "ctl.socket") : NULL;
	struct ctl *ctl;
	int ret;

	vm->ctl = NULL;
	if (configured && !strcmp(configured, "off"))
		return 0;
	ctl = calloc(1, sizeof(*ctl));
	if (!ctl) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	ctl->vm = vm;
	ctl->lfd = -1;
	ret = ctl_socket_path(vm->name, configured, ctl->path, sizeof(ctl->path));
	if (ret) {
		path_error(vm, configured, ret, err, errlen);
		goto fail;
	}
	if (errlen)
		err[0] = '\0';
	ret = ctl_open(ctl, !configured, err, errlen);
	if (ret)
		goto fail;
	ret = evloop_add_fd(&vm->ev, ctl->lfd, EPOLLIN, ctl_accept, ctl);
	if (ret) {
		snprintf(err, errlen, "control socket %s: %s", ctl->path, strerror(-ret));
		unlink(ctl->path);
		goto fail;
	}
	vm->ctl = ctl;
	return 0;
fail:
	if (ctl->lfd >= 0)
		close(ctl->lfd);
	free(ctl);
	return ret;
}

static void ctl_stop_fn(void *opaque)
{
	struct ctl *ctl = opaque;
	struct stat st;

	while (ctl->conns)
		conn_close(ctl->conns);
	evloop_del_fd(&ctl->vm->ev, ctl->lfd);
	close(ctl->lfd);
	/* Unlink only our own socket, not one a newer khyve bound after ours was removed. */
	if (lstat(ctl->path, &st) == 0 && st.st_dev == ctl->dev && st.st_ino == ctl->ino)
		unlink(ctl->path);
	ctl->vm->ctl = NULL;
	free(ctl);
}

void ctl_stop(struct vm *vm)
{
	struct ctl *ctl = vm->ctl;

	if (!ctl)
		return;
	/* Connections belong to the loop thread: tear them down there (or here if it stopped). */
	evloop_call(&vm->ev, ctl_stop_fn, ctl);
}
