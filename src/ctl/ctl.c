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
#include <stddef.h>
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

#include "backend/console.h"
#include "backend/png.h"
#include "dev/pc/pm.h"
#include "gdb/gdbstub.h"
#include "ctl/ctl_proto.h"
#include "log.h"
#include "snap/livecopy.h"
#include "snap/migrate.h"
#include "snap/precopy.h"
#include "snap/prefetch.h"
#include "snap/snapshot.h"
#include "snap/trust.h"
#include "vcpu.h"
#include "version.h"
#include "vm.h"

#define CTL_MAX_CONNS 8
/* Defaults of ctl.idle_ms, ctl.line_ms, ctl.stall_ms (see conn_deadline). */
#define CTL_IDLE_MS 60000
#define CTL_LINE_MS 10000
#define CTL_STALL_MS 10000
#define CTL_OUT_MAX (256 * 1024)     /* replies waiting for one client: more drops it */
#define CTL_MIN_RATE (1 << 20)	     /* the least "max_rate" of a save: 1 MiB/s */
#define CTL_OUT_OPTIONAL (16 * 1024) /* progress lines are skipped above this */
#define CTL_PROGRESS_NS 100000000ULL
#define CTL_JSON_DEPTH 16
#define CTL_SERVE_NS 50000000ULL /* during a save: look at the other connections this often */
#define CTL_HISTORY 8		 /* checkpoints --get-stats remembers */

struct ctl_conn {
	struct ctl *ctl;
	int fd;
	bool dead;	  /* write failed or peer gone: close after the current line */
	bool eof;	  /* the peer sent all it will: close once its replies are out */
	bool waiting;	  /* a live checkpoint's reply is still to come: never idle */
	bool busy;	  /* its request is being handled (a save): never closed meanwhile */
	uint32_t events;  /* what epoll watches for it */
	uint64_t last_ns; /* accepted, or the last complete request (monotonic) */
	uint64_t line_ns; /* first byte of the incomplete line in buf, 0 if none */
	uint64_t out_ns;  /* replies last moved (or were queued into an empty buffer) */
	struct vtimer timer;
	char *out; /* replies not yet sent: out[ooff..olen) */
	size_t olen, ooff, ocap;
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
	uint64_t idle_ns, line_ns, stall_ns; /* timeouts */
	uint64_t paused_since;	    /* monotonic ns of the last pause request, 0 if unknown */
	struct ctl_conn *live_conn; /* where a live checkpoint's reply goes, NULL if gone */
	struct ctl_conn *mig_conn;  /* where a live migration's lines go, NULL if gone */
	char mig_addr[260];
	char live_file[PATH_MAX];
	/* A save running on this thread: what --status says meanwhile (ctl_progress). */
	struct {
		bool on, suspend, migrate;
		uint64_t start_ns, done, total, served_ns;
		char file[PATH_MAX];
	} save;
	/* The last checkpoints, oldest first, for --get-stats. */
	struct ctl_hist {
		char file[PATH_MAX];
		uint64_t realtime_ns, paused_ns, total_ns, bytes;
		bool live, suspend;
	} hist[CTL_HISTORY];
	unsigned nhist;
};

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* ---- socket path ---- */

#define SUN_PATH_MAX sizeof(((struct sockaddr_un *)0)->sun_path)

/*
 * Where VMNAME.sock goes: /run/khyve for root and for anyone who may write there, else the
 * user's $XDG_RUNTIME_DIR/khyve (khyve and khyvectl run by the same user agree).
 */
const char *ctl_default_dir(char *buf, size_t len)
{
	const char *xdg = getenv("XDG_RUNTIME_DIR");

	if (geteuid() == 0 || !access(CTL_DEFAULT_DIR, W_OK | X_OK) || !xdg || xdg[0] != '/')
		snprintf(buf, len, "%s", CTL_DEFAULT_DIR);
	else
		snprintf(buf, len, "%s/khyve", xdg);
	return buf;
}

int ctl_socket_path(const char *vmname, const char *configured, char *buf, size_t len)
{
	char dir[PATH_MAX];
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
		n = snprintf(buf, len, "%s/%s.sock", ctl_default_dir(dir, sizeof(dir)), vmname);
	}
	if (n < 0 || (size_t)n >= len || (size_t)n >= SUN_PATH_MAX)
		return -ENAMETOOLONG;
	return 0;
}

static void path_error(struct vm *vm, const char *configured, int ret, char *err, size_t errlen)
{
	const char *name = vm->name ? vm->name : "";
	char dir[PATH_MAX];

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
			 ctl_default_dir(dir, sizeof(dir)), name, SUN_PATH_MAX - 1);
}

/* ---- replies ---- */

struct ctl_req {
	struct vm *vm;
	struct json_object *in;
	ctl_send_fn send;
	void *opaque;
	const char *file;
	bool progress, live, incremental;
	uint64_t max_rate;  /* bytes per second, 0: no limit */
	const char *parent; /* an incremental checkpoint's parent, or NULL */
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

static void ctl_serve_during_save(struct ctl *ctl);

/*
 * Every progress report of a save: the counts --status shows, a look at the other
 * connections (the loop thread is busy with the save), and a line to the client if it asked.
 */
static void ctl_progress(void *opaque, uint64_t done, uint64_t total)
{
	struct ctl_req *r = opaque;
	struct ctl *ctl = r->vm->ctl;
	struct json_object *o, *p;
	uint64_t now = mono_ns();
	int pct = total ? (int)(done * 100 / total) : 100;

	if (ctl && ctl->save.on) {
		ctl->save.done = done;
		ctl->save.total = total;
		if (now - ctl->save.served_ns >= CTL_SERVE_NS) {
			ctl->save.served_ns = now;
			ctl_serve_during_save(ctl);
		}
	}
	if (!r->progress)
		return;
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

static void conn_send(void *opaque, const char *json);
static void conn_settle(struct ctl_conn *c);
static int req_checkpoint(struct ctl_req *r);

static struct json_object *save_reply(const struct snap_result *res, const char *file, bool live)
{
	struct json_object *o = ok_obj();

	add_ms(o, "paused_ms", res->paused_ns);
	add_ms(o, "total_ms", res->total_ns);
	add_u64(o, "bytes", res->bytes);
	add_u64(o, "mem_pages", res->mem_pages);
	add_u64(o, "zero_pages", res->zero_pages);
	json_object_object_add(o, "live", json_object_new_boolean(live));
	if (live && res->method)
		json_object_object_add(o, "method", json_object_new_string(res->method));
	if (live && res->rounds) {
		/* Dirty-log pre-copy (a restored VM): rounds, then the final pause. */
		add_u64(o, "rounds", res->rounds);
		add_u64(o, "precopy_pages", res->precopy_pages);
		add_u64(o, "final_pages", res->final_pages);
		add_u64(o, "pause_stop_us", res->pause_stop_ns / 1000);
		add_u64(o, "pause_state_us", res->pause_state_ns / 1000);
		add_u64(o, "pause_mem_us", res->pause_mem_ns / 1000);
		add_u64(o, "reread_bytes", res->reread_bytes);
		json_object_object_add(o, "converged",
				       json_object_new_string(res->converged ? res->converged
									     : ""));
	} else if (live) {
		add_u64(o, "fault_pages", res->fault_pages);
		add_u64(o, "pause_stop_us", res->pause_stop_ns / 1000);
		add_u64(o, "pause_state_us", res->pause_state_ns / 1000);
		add_u64(o, "pause_arm_us", res->pause_arm_ns / 1000);
		add_u64(o, "arm_pages", res->arm_pages);
		add_ms(o, "prearm_ms", res->prearm_ns);
		add_u64(o, "prearm_rounds", res->prearm_rounds);
		add_u64(o, "prearm_pages", res->prearm_pages);
		add_u64(o, "prearm_faults", res->prearm_faults);
	}
	json_object_object_add(o, "incremental", json_object_new_boolean(res->incremental));
	if (res->incremental)
		json_object_object_add(o, "parent", json_object_new_string(res->parent));
	if (res->note[0])
		json_object_object_add(o, "note", json_object_new_string(res->note));
	json_object_object_add(o, "file", json_object_new_string(file));
	return o;
}

static uint64_t real_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void history_add(struct ctl *ctl, const char *file, const struct snap_result *res, bool live,
			bool suspend)
{
	struct ctl_hist *h;

	if (!ctl)
		return;
	if (ctl->nhist == CTL_HISTORY) {
		memmove(&ctl->hist[0], &ctl->hist[1], sizeof(ctl->hist[0]) * (CTL_HISTORY - 1));
		ctl->nhist--;
	}
	h = &ctl->hist[ctl->nhist++];
	snprintf(h->file, sizeof(h->file), "%s", file);
	h->realtime_ns = real_ns();
	h->paused_ns = res->paused_ns;
	h->total_ns = res->total_ns;
	h->bytes = res->bytes;
	h->live = live;
	h->suspend = suspend;
}

/* The end of a live checkpoint, on the loop thread: the reply to whoever asked, if still there. */
static void live_done(void *opaque, int ret, const struct snap_result *res, const char *err)
{
	struct ctl *ctl = opaque;
	struct ctl_conn *c = ctl->live_conn;
	struct ctl_req r = { .vm = ctl->vm, .send = conn_send, .opaque = c };

	ctl->live_conn = NULL;
	if (!ret)
		history_add(ctl, ctl->live_file, res, true, false);
	if (!c)
		return;
	c->waiting = false;
	if (ret)
		reply_error(&r, ret, "%s", err[0] ? err : strerror(-ret));
	else
		send_obj(&r, save_reply(res, ctl->live_file, true));
	conn_settle(c);
}

/* "max_downtime_ms" and "max_rounds" of a live request (@what names it) into @p. */
static int policy_limits(struct ctl_req *r, const char *what, struct mig_policy *p)
{
	struct json_object *v;

	if (json_object_object_get_ex(r->in, "max_downtime_ms", &v)) {
		int64_t ms = json_object_get_int64(v);

		if (!json_object_is_type(v, json_type_int) || ms < 1 || ms > 600000)
			return reply_error(r, -EINVAL,
					   "%s: \"max_downtime_ms\" must be an integer from 1 to "
					   "600000",
					   what);
		p->max_downtime_ns = (uint64_t)ms * 1000000ULL;
	}
	if (json_object_object_get_ex(r->in, "max_rounds", &v)) {
		int64_t n = json_object_get_int64(v);

		if (!json_object_is_type(v, json_type_int) || n < 1 || n >= MIG_MAX_ROUNDS)
			return reply_error(r, -EINVAL,
					   "%s: \"max_rounds\" must be an integer from 1 to %u",
					   what, MIG_MAX_ROUNDS - 1);
		p->max_rounds = (unsigned)n;
	}
	return 0;
}

/*
 * The guest runs again when this returns; the reply comes when the file is written (no
 * progress lines: the writer thread does not talk to connections).  Only a connection can
 * wait for it.
 */
static int req_save_live(struct ctl_req *r)
{
	struct mig_policy pol = snap_livecopy_policy();
	struct ctl *ctl = r->vm->ctl;
	int ret;

	/* Only a restored VM's pre-copy (method dirty-log) has rounds to bound. */
	ret = policy_limits(r, "checkpoint", &pol);
	if (ret)
		return ret;
	if (!ctl || r->send != conn_send)
		return reply_error(r, -EINVAL, "checkpoint: live needs a control connection");
	ret = snap_save_live(r->vm, r->file, &pol, live_done, ctl, r->err, sizeof(r->err));
	if (ret)
		return reply_error(r, ret, "%s", r->err[0] ? r->err : strerror(-ret));
	/* Only now: a refused request (one is running already) must not touch that one's. */
	snprintf(ctl->live_file, sizeof(ctl->live_file), "%s", r->file);
	ctl->live_conn = r->opaque;
	ctl->live_conn->waiting = true;
	return 0;
}

static int req_save(struct ctl_req *r, bool suspend)
{
	struct snap_save_opts opts = { .suspend = suspend };
	struct snap_result res = { 0 };
	struct ctl *ctl = r->vm->ctl;
	struct json_object *reply;
	const char *fallback;
	int ret;

	if (vm_ending(r->vm))
		return reply_error(r, -ESHUTDOWN, "the VM is shutting down");
	/* Always reported: --status shows a save's progress even to those who did not ask. */
	opts.progress = ctl_progress;
	opts.progress_opaque = r;
	r->last_ns = mono_ns();
	r->last_done = 0;
	r->last_pct = 0;
	r->err[0] = '\0';
	opts.max_rate = r->max_rate;
	opts.incremental = r->incremental;
	opts.parent = r->parent;
	if (r->live && (r->incremental || r->parent))
		return reply_error(r, -EOPNOTSUPP,
				   "checkpoint: a live checkpoint cannot be incremental yet; give "
				   "\"live\" or \"incremental\"/\"parent\"");
	if (!r->live && (json_object_object_get_ex(r->in, "max_downtime_ms", NULL) ||
			 json_object_object_get_ex(r->in, "max_rounds", NULL)))
		return reply_error(r, -EINVAL,
				   "checkpoint: \"max_downtime_ms\" and \"max_rounds\" go with "
				   "\"live\": true");
	/* What cannot be checkpointed live is checkpointed stop-the-world; the reply says why. */
	fallback = r->live ? snap_live_refusal(r->vm) : NULL;
	if (r->live && !fallback) {
		if (r->max_rate)
			return reply_error(r, -EOPNOTSUPP,
					   "checkpoint: \"max_rate\" is not applied to a live "
					   "checkpoint (the guest runs meanwhile); give one or the "
					   "other");
		return req_save_live(r);
	}
	if (ctl) {
		ctl->save.on = true;
		ctl->save.suspend = suspend;
		ctl->save.start_ns = ctl->save.served_ns = mono_ns();
		ctl->save.done = ctl->save.total = 0;
		snprintf(ctl->save.file, sizeof(ctl->save.file), "%s", r->file);
	}
	ret = snap_save(r->vm, r->file, &opts, &res, r->err, sizeof(r->err));
	if (ctl)
		ctl->save.on = false;
	if (ret)
		return reply_error(r, ret, "%s", r->err[0] ? r->err : strerror(-ret));
	history_add(ctl, r->file, &res, false, suspend);
	reply = save_reply(&res, r->file, false);
	if (fallback)
		json_object_object_add(reply, "live_refused", json_object_new_string(fallback));
	send_obj(r, reply);
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

static struct json_object *migrate_reply(const struct migrate_result *res, const char *addr,
					 bool live)
{
	struct json_object *o = ok_obj();

	json_object_object_add(o, "address", json_object_new_string(addr));
	json_object_object_add(o, "live", json_object_new_boolean(live));
	add_u64(o, "rounds", res->rounds);
	add_u64(o, "bytes", res->bytes);
	add_u64(o, "mem_pages", res->mem_pages);
	add_u64(o, "zero_pages", res->zero_pages);
	add_ms(o, "total_ms", res->total_ns);
	add_ms(o, "downtime_ms", res->downtime_ns);
	if (live) {
		add_u64(o, "precopy_pages", res->precopy_pages);
		add_u64(o, "final_pages", res->final_pages);
		add_ms(o, "pause_stop_ms", res->stop_ns);
		add_ms(o, "pause_state_ms", res->state_ns);
		add_ms(o, "pause_mem_ms", res->mem_ns);
		add_ms(o, "pause_handover_ms", res->handover_ns);
		json_object_object_add(o, "converged",
				       json_object_new_string(res->converged ? res->converged
									     : ""));
		add_u64(o, "throttle_pct", res->throttle_pct);
	}
	return o;
}

/* A pre-copy round ended (loop thread): one progress line to whoever asked. */
static void migrate_round(void *opaque, unsigned round, const struct mig_round *mr,
			  uint64_t estimate_ns)
{
	struct ctl *ctl = opaque;
	struct ctl_req r = { .vm = ctl->vm, .send = conn_send, .opaque = ctl->mig_conn };
	struct json_object *o, *p;

	if (!ctl->mig_conn)
		return;
	o = json_object_new_object();
	p = json_object_new_object();
	add_u64(p, "round", round);
	add_u64(p, "pages", mr->pages);
	add_u64(p, "bytes", mr->bytes);
	add_ms(p, "ms", mr->ns);
	add_u64(p, "dirty_pages", mr->dirty);
	add_u64(p, "throttle_pct", mr->throttle);
	if (estimate_ns != UINT64_MAX)
		add_ms(p, "estimate_ms", estimate_ns);
	json_object_object_add(o, "progress", p);
	send_obj(&r, o);
}

static void migrate_done(void *opaque, int ret, const struct migrate_result *res, const char *err)
{
	struct ctl *ctl = opaque;
	struct ctl_conn *c = ctl->mig_conn;
	struct ctl_req r = { .vm = ctl->vm, .send = conn_send, .opaque = c };

	ctl->mig_conn = NULL;
	if (!c)
		return;
	c->waiting = false;
	if (ret)
		reply_error(&r, ret, "migrate to %s: %s", ctl->mig_addr,
			    err[0] ? err : strerror(-ret));
	else
		send_obj(&r, migrate_reply(res, ctl->mig_addr, true));
	conn_settle(c);
}

/* A percentage field of a live request, 1 to MIG_THROTTLE_MAX. */
static int migrate_pct(struct ctl_req *r, const char *name, unsigned *pct)
{
	struct json_object *v;
	int64_t n;

	if (!json_object_object_get_ex(r->in, name, &v))
		return 0;
	n = json_object_get_int64(v);
	if (!json_object_is_type(v, json_type_int) || n < 1 || n > MIG_THROTTLE_MAX)
		return reply_error(r, -EINVAL, "migrate: \"%s\" must be an integer from 1 to %u",
				   name, MIG_THROTTLE_MAX);
	*pct = (unsigned)n;
	return 0;
}

/*
 * The policy fields of a live request: "max_downtime_ms", "max_rounds", "autoconverge",
 * "throttle_initial", "throttle_increment".
 */
static int migrate_policy(struct ctl_req *r, struct mig_policy *p)
{
	struct json_object *v;
	int ret;

	*p = (struct mig_policy){ .max_downtime_ns = MIG_DEFAULT_DOWNTIME_MS * 1000000ULL,
				  .max_rounds = MIG_DEFAULT_ROUNDS,
				  .stall_rounds = MIG_STALL_ROUNDS,
				  .handover_ns = MIG_DEFAULT_HANDOVER_MS * 1000000ULL,
				  .floor_ns = MIG_DEFAULT_FLOOR_US * 1000ULL,
				  .autoconverge = true,
				  .throttle_initial = MIG_THROTTLE_INITIAL,
				  .throttle_increment = MIG_THROTTLE_INCREMENT };
	if (json_object_object_get_ex(r->in, "autoconverge", &v)) {
		if (!json_object_is_type(v, json_type_boolean))
			return reply_error(r, -EINVAL,
					   "migrate: \"autoconverge\" must be true or false");
		p->autoconverge = json_object_get_boolean(v);
	}
	ret = migrate_pct(r, "throttle_initial", &p->throttle_initial);
	if (!ret)
		ret = migrate_pct(r, "throttle_increment", &p->throttle_increment);
	return ret ? ret : policy_limits(r, "migrate", p);
}

/* The fields only a live migration takes. */
static const char *const live_fields[] = { "max_downtime_ms", "max_rounds", "autoconverge",
					   "throttle_initial", "throttle_increment" };

/* The guest runs on while the rounds go; the lines and the reply come from migrate_round/done. */
static int req_migrate_live(struct ctl_req *r, const char *addr)
{
	struct ctl *ctl = r->vm->ctl;
	struct mig_policy p;
	int ret;

	ret = migrate_policy(r, &p);
	if (ret)
		return ret;
	if (!ctl || r->send != conn_send)
		return reply_error(r, -EINVAL, "migrate: live needs a control connection");
	/* The pre-copy rounds read every page anyway: the prefetch would only compete. */
	snap_prefetch_vm_stop(r->vm);
	ret = migrate_live_start(r->vm, addr, &p, migrate_round, migrate_done, ctl, r->err,
				 sizeof(r->err));
	if (ret)
		return reply_error(r, ret, "migrate to %s: %s", addr,
				   r->err[0] ? r->err : strerror(-ret));
	snprintf(ctl->mig_addr, sizeof(ctl->mig_addr), "%s", addr);
	ctl->mig_conn = r->opaque;
	ctl->mig_conn->waiting = true;
	return 0;
}

/*
 * Send the VM to khyve -R at "address" (snap/migrate.h).  Progress lines as a checkpoint's;
 * the reply comes when the destination runs the guest (then this khyve ends, as after a
 * suspend) or when it failed (then the guest runs on here).
 */
static int req_migrate(struct ctl_req *r)
{
	struct snap_save_opts opts = { .progress = ctl_progress, .progress_opaque = r };
	struct migrate_result res;
	struct ctl *ctl = r->vm->ctl;
	struct json_object *v;
	const char *addr;
	int ret;

	if (!json_object_object_get_ex(r->in, "address", &v) ||
	    !json_object_is_type(v, json_type_string))
		return reply_error(r, -EINVAL, "migrate: \"address\" must be given as a string");
	addr = json_object_get_string(v);
	if ((size_t)json_object_get_string_len(v) != strlen(addr) || strlen(addr) > 256)
		return reply_error(r, -EINVAL, "migrate: \"address\" is not an address");
	if (json_object_object_get_ex(r->in, "progress", &v)) {
		if (!json_object_is_type(v, json_type_boolean))
			return reply_error(r, -EINVAL,
					   "migrate: \"progress\" must be true or false");
		r->progress = json_object_get_boolean(v);
	}
	if (json_object_object_get_ex(r->in, "live", &v)) {
		if (!json_object_is_type(v, json_type_boolean))
			return reply_error(r, -EINVAL, "migrate: \"live\" must be true or false");
		r->live = json_object_get_boolean(v);
	}
	if (vm_ending(r->vm))
		return reply_error(r, -ESHUTDOWN, "the VM is shutting down");
	r->last_ns = mono_ns();
	r->err[0] = '\0';
	if (r->live)
		return req_migrate_live(r, addr);
	for (unsigned i = 0; i < sizeof(live_fields) / sizeof(live_fields[0]); i++)
		if (json_object_object_get_ex(r->in, live_fields[i], NULL))
			return reply_error(r, -EINVAL, "migrate: \"%s\" goes with \"live\": true",
					   live_fields[i]);
	if (ctl) {
		ctl->save.on = ctl->save.migrate = true;
		ctl->save.suspend = false;
		ctl->save.start_ns = ctl->save.served_ns = mono_ns();
		ctl->save.done = ctl->save.total = 0;
		snprintf(ctl->save.file, sizeof(ctl->save.file), "tcp:%s", addr);
	}
	ret = migrate_send(r->vm, addr, &opts, &res, r->err, sizeof(r->err));
	if (ctl)
		ctl->save.on = ctl->save.migrate = false;
	if (ret)
		return reply_error(r, ret, "migrate to %s: %s", addr,
				   r->err[0] ? r->err : strerror(-ret));
	send_obj(r, migrate_reply(&res, addr, false));
	return 0;
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
	/* A SIGTERM that came while paused (main.c): the guest sees the button now. */
	if (vm->poweroff_pending) {
		struct dev *pm = vm_find_dev(vm, "pm");

		vm->poweroff_pending = false;
		if (pm)
			pm_power_button(pm);
		json_object_object_add(o, "pending_done", json_object_new_string("poweroff"));
	}
	if (vm->ctl && vm->ctl->paused_since)
		add_ms(o, "paused_ms", mono_ns() - vm->ctl->paused_since);
	add_ms(o, "took_ms", mono_ns() - t0);
	if (vm->ctl)
		vm->ctl->paused_since = 0;
	send_obj(r, o);
	return 0;
}

static bool vm_saving(const struct vm *vm)
{
	return (vm->ctl && vm->ctl->save.on) || vm->live;
}

/* A save under way: what it writes, and (stop-the-world saves) how far it got in bytes. */
static void add_save_state(struct json_object *o, struct vm *vm, uint64_t now)
{
	struct json_object *s = json_object_new_object();
	struct ctl *ctl = vm->ctl;

	if (ctl && ctl->save.on) {
		json_object_object_add(s, "file", json_object_new_string(ctl->save.file));
		json_object_object_add(s, "kind",
				       json_object_new_string(ctl->save.migrate	  ? "migrate"
							      : ctl->save.suspend ? "suspend"
										  : "checkpoint"));
		add_u64(s, "done", ctl->save.done);
		add_u64(s, "total", ctl->save.total);
		add_ms(s, "elapsed_ms", now - ctl->save.start_ns);
		json_object_object_add(s, "live", json_object_new_boolean(0));
	} else {
		if (ctl)
			json_object_object_add(s, "file", json_object_new_string(ctl->live_file));
		json_object_object_add(s, "kind", json_object_new_string("checkpoint"));
		json_object_object_add(s, "live", json_object_new_boolean(1));
	}
	json_object_object_add(o, "save", s);
}

/* -G: where the stub listens and whether a debugger holds the guest ("state" stays as it is). */
static void add_gdb_state(struct json_object *o, struct vm *vm)
{
	const char *debugger = NULL, *where = gdbstub_status(vm, &debugger);
	struct json_object *g;

	if (!where)
		return;
	g = json_object_new_object();
	json_object_object_add(g, "address", json_object_new_string(where));
	json_object_object_add(g, "debugger", json_object_new_string(debugger));
	json_object_object_add(o, "gdb", g);
}

static int req_status(struct ctl_req *r)
{
	struct vm *vm = r->vm;
	struct json_object *o = ok_obj();
	uint64_t now = mono_ns();

	json_object_object_add(o, "vm", json_object_new_string(vm->name ? vm->name : ""));
	json_object_object_add(o, "state",
			       json_object_new_string(vm_ending(vm)   ? "exiting"
						      : vm_saving(vm) ? "saving"
						      : vm->paused    ? "paused"
								      : "running"));
	if (vm_saving(vm) && !vm_ending(vm))
		add_save_state(o, vm, now);
	if (vm->poweroff_pending)
		json_object_object_add(o, "pending", json_object_new_string("poweroff"));
	add_u64(o, "vcpus", vm->ncpus);
	add_u64(o, "memory", vm->ram_size);
	add_u64(o, "uptime_ms",
		vm->start_ns && now > vm->start_ns ? (now - vm->start_ns) / 1000000 : 0);
	if (vm->paused && vm->ctl && vm->ctl->paused_since)
		add_ms(o, "paused_ms", now - vm->ctl->paused_since);
	add_u64(o, "pid", (uint64_t)getpid());
	json_object_object_add(o, "version", json_object_new_string(KHYVE_VERSION));
	json_object_object_add(o, "commit", json_object_new_string(khyve_commit));
	if (vm->cfg && config_get(vm->cfg, "uuid"))
		json_object_object_add(o, "uuid",
				       json_object_new_string(config_get(vm->cfg, "uuid")));
	add_gdb_state(o, vm);
	send_obj(r, o);
	return 0;
}

/*
 * Lifecycle, bhyvectl's names: the ACPI power button (the guest decides), or an end the guest
 * has no say in.  The reply goes out first; khyve then exits with the status the manual
 * gives: 1 for a power off, 0 for a reset (as for a guest's reboot), 4 for destroy.
 */
static int req_poweroff(struct ctl_req *r)
{
	struct dev *pm = vm_find_dev(r->vm, "pm");
	struct json_object *o;

	if (vm_ending(r->vm))
		return reply_error(r, -ESHUTDOWN, "the VM is shutting down");
	if (r->vm->paused)
		return reply_error(r, -EBUSY,
				   "the VM is paused, its guest cannot see the button: resume it "
				   "first, or use --force-poweroff");
	if (!pm)
		return reply_error(r, -ENODEV, "the VM has no ACPI power button");
	pm_power_button(pm);
	o = ok_obj();
	json_object_object_add(o, "state", json_object_new_string("running"));
	send_obj(r, o);
	return 0;
}

static int req_end(struct ctl_req *r, int status, const char *state)
{
	struct json_object *o;

	if (vm_ending(r->vm))
		return reply_error(r, -ESHUTDOWN, "the VM is shutting down");
	o = ok_obj();
	json_object_object_add(o, "state", json_object_new_string(state));
	add_u64(o, "exit_status", (uint64_t)status);
	send_obj(r, o);
	vm_request_exit(r->vm, status);
	return 0;
}

static int req_force_poweroff(struct ctl_req *r)
{
	return req_end(r, VM_EXIT_POWEROFF, "powered off");
}

static int req_force_reset(struct ctl_req *r)
{
	return req_end(r, VM_EXIT_REBOOT, "reset");
}

static int req_destroy(struct ctl_req *r)
{
	return req_end(r, VM_EXIT_ERROR, "destroyed");
}

/* The display as a PNG file: what a VNC client sees now. */
static int req_screenshot(struct ctl_req *r)
{
	struct console *c = console_of(r->vm);
	uint64_t t0 = mono_ns();
	struct json_object *o;
	uint32_t *px = NULL;
	unsigned w, h;
	int ret;

	ret = c ? console_snapshot_image(c, &px, &w, &h) : -ENODEV;
	if (ret == -ENODEV)
		return reply_error(r, ret, "screenshot: the VM has no display (add -s SLOT,fbuf)");
	if (ret)
		return reply_error(r, ret, "screenshot: %s", strerror(-ret));
	ret = png_write(r->file, px, w, h, r->err, sizeof(r->err));
	free(px);
	if (ret)
		return reply_error(r, ret, "screenshot: %s", r->err);
	o = ok_obj();
	json_object_object_add(o, "file", json_object_new_string(r->file));
	add_u64(o, "width", w);
	add_u64(o, "height", h);
	add_ms(o, "took_ms", mono_ns() - t0);
	send_obj(r, o);
	return 0;
}

/* bhyvectl --inject-nmi: an NMI on one vCPU ("vcpu", default 0), as a front-panel button. */
static int req_inject_nmi(struct ctl_req *r)
{
	struct vm *vm = r->vm;
	struct json_object *o, *v;
	int64_t id = 0;
	int ret;

	if (json_object_object_get_ex(r->in, "vcpu", &v)) {
		if (!json_object_is_type(v, json_type_int))
			return reply_error(r, -EINVAL, "inject-nmi: \"vcpu\" must be a number");
		id = json_object_get_int64(v);
	}
	if (id < 0 || (uint64_t)id >= vm->ncpus)
		return reply_error(r, -EINVAL, "inject-nmi: the VM has no vCPU %lld (it has %u)",
				   (long long)id, vm->ncpus);
	if (vm_ending(vm))
		return reply_error(r, -ESHUTDOWN, "the VM is shutting down");
	/* KVM_NMI from the vCPU's own thread, with it parked (vcpu.h); a paused VM is already. */
	if (!vm->paused)
		vcpus_pause(vm);
	ret = vcpu_inject_nmi(vm->vcpus[id]);
	if (!vm->paused)
		vcpus_resume(vm);
	if (ret)
		return reply_error(r, ret, "inject-nmi: KVM_NMI on vCPU %lld: %s", (long long)id,
				   strerror(-ret));
	o = ok_obj();
	add_u64(o, "vcpu", (uint64_t)id);
	json_object_object_add(o, "delivered",
			       json_object_new_string(vm->paused ? "on resume" : "now"));
	send_obj(r, o);
	return 0;
}

static void iso8601(char *buf, size_t len, uint64_t ns)
{
	time_t t = (time_t)(ns / 1000000000ULL);
	struct tm tm;

	if (gmtime_r(&t, &tm))
		strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
	else
		snprintf(buf, len, "?");
}

static struct json_object *stats_vcpus(struct vm *vm)
{
	struct json_object *a = json_object_new_array();

	for (unsigned i = 0; i < vm->ncpus; i++) {
		struct vcpu *v = vm->vcpus[i];
		struct json_object *o = json_object_new_object(), *e = json_object_new_object();
		uint64_t total = 0;

		for (unsigned reason = 0; reason <= VCPU_EXIT_REASONS; reason++) {
			uint64_t n = vcpu_exit_count(v, reason);
			const char *name = vcpu_exit_name(reason);
			char other[16];

			if (!n)
				continue;
			if (!name) {
				snprintf(other, sizeof(other),
					 reason < VCPU_EXIT_REASONS ? "reason_%u" : "reason_higher",
					 reason);
				name = other;
			}
			add_u64(e, name, n);
			total += n;
		}
		add_u64(o, "vcpu", i);
		add_u64(o, "exits_total", total);
		json_object_object_add(o, "exits", e);
		add_u64(o, "nmis_injected", __atomic_load_n(&v->nmis, __ATOMIC_RELAXED));
		/* Auto-converge (live migration): sleeps so far, and whether one is due or on. */
		add_u64(o, "throttle_sleeps",
			__atomic_load_n(&v->throttle_sleeps, __ATOMIC_RELAXED));
		add_ms(o, "throttled_ms", __atomic_load_n(&v->throttled_ns, __ATOMIC_RELAXED));
		pthread_mutex_lock(&v->lock);
		json_object_object_add(o, "throttled",
				       json_object_new_boolean(v->throttled || v->throttle_ns));
		pthread_mutex_unlock(&v->lock);
		json_object_array_add(a, o);
	}
	return a;
}

struct stats_io {
	struct json_object *a;
	const char *bus;
};

static void stats_io_one(const struct bus_stats *st, void *arg)
{
	struct stats_io *s = arg;
	struct json_object *o = json_object_new_object();
	char what[48];

	if (st->what[0])
		snprintf(what, sizeof(what), "%s", st->what);
	else
		snprintf(what, sizeof(what), "%s 0x%llx", s->bus, (unsigned long long)st->base);
	json_object_object_add(o, "device", json_object_new_string(st->owner[0] ? st->owner : "?"));
	json_object_object_add(o, "region", json_object_new_string(what));
	json_object_object_add(o, "bus", json_object_new_string(s->bus));
	add_u64(o, "base", st->base);
	add_u64(o, "size", st->len);
	add_u64(o, "reads", st->reads);
	add_u64(o, "writes", st->writes);
	add_u64(o, "bytes", st->bytes);
	json_object_array_add(s->a, o);
}

static struct json_object *stats_snapshots(struct ctl *ctl)
{
	struct json_object *a = json_object_new_array();

	for (unsigned i = 0; ctl && i < ctl->nhist; i++) {
		const struct ctl_hist *h = &ctl->hist[i];
		struct json_object *o = json_object_new_object();
		char when[64];

		iso8601(when, sizeof(when), h->realtime_ns);
		json_object_object_add(o, "file", json_object_new_string(h->file));
		json_object_object_add(o, "time", json_object_new_string(when));
		add_u64(o, "time_ns", h->realtime_ns);
		json_object_object_add(o, "kind",
				       json_object_new_string(h->suspend ? "suspend"
									 : "checkpoint"));
		json_object_object_add(o, "live", json_object_new_boolean(h->live));
		add_ms(o, "paused_ms", h->paused_ns);
		add_ms(o, "total_ms", h->total_ns);
		add_u64(o, "bytes", h->bytes);
		json_object_array_add(a, o);
	}
	return a;
}

/* The coalesced MMIO ring (bus.h): null when the VM has none. */
static struct json_object *stats_coalesced(struct vm *vm)
{
	struct bus_coalesce_stats cs;
	struct json_object *o;

	if (!vm->mmio.ring)
		return NULL;
	bus_coalesce_get_stats(&vm->mmio, &cs);
	o = json_object_new_object();
	add_u64(o, "zones", cs.zones);
	add_u64(o, "writes", cs.writes);
	add_u64(o, "drains", cs.drains);
	add_u64(o, "dropped", cs.dropped);
	return o;
}

/* bhyvectl --get-stats: exits per vCPU, accesses per device region, the last checkpoints. */
static int req_get_stats(struct ctl_req *r)
{
	struct vm *vm = r->vm;
	struct json_object *o = ok_obj();
	struct stats_io io = { .a = json_object_new_array() };
	uint64_t now = mono_ns();

	json_object_object_add(o, "vm", json_object_new_string(vm->name ? vm->name : ""));
	add_u64(o, "uptime_ms",
		vm->start_ns && now > vm->start_ns ? (now - vm->start_ns) / 1000000 : 0);
	json_object_object_add(o, "vcpus", stats_vcpus(vm));
	add_u64(o, "throttle_pct", vm->throttle_pct);
	io.bus = "pio";
	bus_stats_foreach(&vm->pio, stats_io_one, &io);
	io.bus = "mmio";
	bus_stats_foreach(&vm->mmio, stats_io_one, &io);
	json_object_object_add(o, "io", io.a);
	json_object_object_add(o, "coalesced", stats_coalesced(vm));
	json_object_object_add(o, "snapshots", stats_snapshots(vm->ctl));
	send_obj(r, o);
	return 0;
}

static const struct ctl_request {
	const char *name;
	bool save; /* takes "file" and "progress" */
	bool file; /* takes "file" */
	int (*fn)(struct ctl_req *r);
} ctl_requests[] = {
	{ "checkpoint", true, true, req_checkpoint },
	{ "suspend", true, true, req_suspend },
	{ "migrate", false, false, req_migrate },
	{ "pause", false, false, req_pause },
	{ "resume", false, false, req_resume },
	{ "status", false, false, req_status },
	{ "screenshot", false, true, req_screenshot },
	{ "poweroff", false, false, req_poweroff },
	{ "force-poweroff", false, false, req_force_poweroff },
	{ "force-reset", false, false, req_force_reset },
	{ "destroy", false, false, req_destroy },
	{ "inject-nmi", false, false, req_inject_nmi },
	{ "get-stats", false, false, req_get_stats },
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
	if (json_object_object_get_ex(r->in, "live", &v)) {
		if (!json_object_is_type(v, json_type_boolean))
			return reply_error(r, -EINVAL, "%s: \"live\" must be true or false", name);
		r->live = json_object_get_boolean(v);
	}
	if (json_object_object_get_ex(r->in, "incremental", &v)) {
		if (!json_object_is_type(v, json_type_boolean))
			return reply_error(r, -EINVAL, "%s: \"incremental\" must be true or false",
					   name);
		r->incremental = json_object_get_boolean(v);
	}
	if (json_object_object_get_ex(r->in, "parent", &v)) {
		if (!json_object_is_type(v, json_type_string))
			return reply_error(r, -EINVAL, "%s: \"parent\" must be a string", name);
		r->parent = json_object_get_string(v);
		if ((size_t)json_object_get_string_len(v) != strlen(r->parent) || !*r->parent ||
		    r->parent[0] != '/' || strlen(r->parent) >= PATH_MAX)
			return reply_error(r, -EINVAL,
					   "%s: \"parent\" must be an absolute path (khyve's "
					   "working directory is not yours)",
					   name);
	}
	if (json_object_object_get_ex(r->in, "max_rate", &v)) {
		int64_t rate = json_object_get_int64(v);

		if (!json_object_is_type(v, json_type_int) || rate < CTL_MIN_RATE)
			return reply_error(r, -EINVAL,
					   "%s: \"max_rate\" must be a number of bytes per second, "
					   "at least %d (1 MiB/s)",
					   name, CTL_MIN_RATE);
		r->max_rate = (uint64_t)rate;
	}
	return 0;
}

static bool migrate_live_field(const char *key)
{
	for (unsigned i = 0; i < sizeof(live_fields) / sizeof(live_fields[0]); i++)
		if (!strcmp(key, live_fields[i]))
			return true;
	return false;
}

/* Unknown fields are refused so that a misspelt option is not silently ignored. */
static int check_fields(struct ctl_req *r, const struct ctl_request *q)
{
	json_object_object_foreach (r->in, key, val) {
		(void)val;
		if (!strcmp(key, "request"))
			continue;
		if ((q->save || q->file) && !strcmp(key, "file"))
			continue;
		if (q->save && (!strcmp(key, "progress") || !strcmp(key, "max_rate") ||
				!strcmp(key, "incremental") || !strcmp(key, "parent")))
			continue;
		if (q->fn == req_checkpoint &&
		    (!strcmp(key, "live") || !strcmp(key, "max_downtime_ms") ||
		     !strcmp(key, "max_rounds")))
			continue;
		if (q->fn == req_inject_nmi && !strcmp(key, "vcpu"))
			continue;
		if (q->fn == req_migrate && (!strcmp(key, "address") || !strcmp(key, "live") ||
					     !strcmp(key, "progress") || migrate_live_field(key)))
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
		if (!ret && (q->save || q->file))
			ret = parse_save_fields(r, q->name);
		/* During a save only what looks: the VM is stopped in the middle of being written. */
		if (!ret && r->vm->ctl && r->vm->ctl->save.on && q->fn != req_status &&
		    q->fn != req_get_stats)
			return reply_error(r, -EBUSY,
					   "%s: a %s is being saved; try again when it is done "
					   "(khyvectl --status shows how far it is)",
					   q->name,
					   r->vm->ctl->save.migrate   ? "migration"
					   : r->vm->ctl->save.suspend ? "suspend"
								      : "checkpoint");
		return ret ? ret : q->fn(r);
	}
	return reply_error(r, -EINVAL,
			   "unknown request \"%.64s\" (expected checkpoint, suspend, "
			   "migrate, pause, resume, status, screenshot, poweroff, force-poweroff, "
			   "force-reset, destroy, inject-nmi or get-stats)",
			   name);
}

int ctl_handle_line(struct vm *vm, const char *line, ctl_send_fn send, void *opaque)
{
	struct ctl_req r = { .vm = vm, .send = send, .opaque = opaque };
	int ret;

	if (strlen(line) > CTL_MAX_LINE)
		return reply_error(&r, -E2BIG, "request longer than %d bytes", CTL_MAX_LINE);
	if (log_enabled(LOG_DEBUG)) {
		char shown[512];

		/* The client's bytes: control characters are not written to a terminal. */
		snap_sanitize(line, shown, sizeof(shown));
		log_debug("control request: %s", shown);
	}
	r.in = parse_line(&r, line, &ret);
	if (!r.in)
		return ret;
	ret = dispatch(&r);
	json_object_put(r.in);
	return ret;
}

/* ---- connections ---- */

/*
 * Replies go into a buffer of the connection's own and are sent as the socket takes them
 * (EPOLLOUT), so a client that stops reading never blocks the event loop (the guest's timers
 * run there).  It is dropped when too much waits for it, or when nothing moved for a while.
 * Progress lines are optional: skipped while replies are backed up.
 */
static void conn_close(struct ctl_conn *c);
static void conn_arm(struct ctl_conn *c);
static void conn_settle(struct ctl_conn *c);

static void conn_watch(struct ctl_conn *c)
{
	uint32_t want = (c->eof ? 0 : EPOLLIN) | (c->olen > c->ooff ? EPOLLOUT : 0);

	if (want != c->events && !evloop_mod_fd(&c->ctl->vm->ev, c->fd, want))
		c->events = want;
}

/* Send what the socket takes now; never waits. */
static void conn_flush(struct ctl_conn *c)
{
	while (c->ooff < c->olen && !c->dead) {
		ssize_t n = send(c->fd, c->out + c->ooff, c->olen - c->ooff,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n > 0) {
			c->ooff += (size_t)n;
			c->out_ns = mono_ns();
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		c->dead = true; /* the client is gone */
	}
	if (c->ooff == c->olen)
		c->ooff = c->olen = 0;
}

static void conn_send(void *opaque, const char *json)
{
	struct ctl_conn *c = opaque;
	size_t len = strlen(json), pending = c->olen - c->ooff;
	bool optional = !strncmp(json, "{\"progress\"", 11);

	if (c->dead || (optional && pending > CTL_OUT_OPTIONAL))
		return;
	if (pending + len + 1 > CTL_OUT_MAX) {
		c->dead = true; /* too far behind: the client is not reading */
		return;
	}
	if (c->ooff) {
		memmove(c->out, c->out + c->ooff, pending);
		c->olen = pending;
		c->ooff = 0;
	}
	if (c->olen + len + 1 > c->ocap) {
		size_t cap = c->ocap ? c->ocap : 4096;
		char *n;

		while (cap < c->olen + len + 1)
			cap *= 2;
		n = realloc(c->out, cap);
		if (!n) {
			c->dead = true;
			return;
		}
		c->out = n;
		c->ocap = cap;
	}
	if (!pending)
		c->out_ns = mono_ns();
	memcpy(c->out + c->olen, json, len);
	c->out[c->olen + len] = '\n';
	c->olen += len + 1;
	conn_flush(c);
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
	if (ctl->live_conn == c)
		ctl->live_conn = NULL; /* the checkpoint goes on; its reply has nowhere to go */
	if (ctl->mig_conn == c)
		ctl->mig_conn = NULL; /* the migration goes on */
	vtimer_cancel(&c->timer);
	evloop_del_fd(&ctl->vm->ev, c->fd);
	close(c->fd);
	free(c->out);
	free(c);
}

/* Tell the client why it is being closed, as far as its socket takes it, then close. */
static void conn_drop(struct ctl_conn *c, const char *why)
{
	struct ctl_req r = { .send = conn_send, .opaque = c };

	if (!c->dead)
		reply_error(&r, -ETIMEDOUT, "%s", why);
	conn_close(c);
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
	c->busy = true;
	ctl_handle_line(c->ctl->vm, line, conn_send, c);
	c->busy = false;
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
		c->last_ns = mono_ns();
	}
	memmove(c->buf, c->buf + start, c->len - start);
	c->len -= start;
	/* A partial line's clock starts at its first byte and is not reset by more bytes. */
	if (!c->len)
		c->line_ns = 0;
	else if (start || !c->line_ns)
		c->line_ns = mono_ns();
}

static void conn_read(struct ctl_conn *c)
{
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
		c->len = 0;
		c->line_ns = 0;
		c->eof = true;
		if (n < 0)
			c->dead = true;
		return;
	}
	c->len += (size_t)n;
	conn_lines(c);
	if (!c->dead && c->len > CTL_MAX_LINE) {
		struct ctl_req r = { .send = conn_send, .opaque = c };

		reply_error(&r, -E2BIG, "request line longer than %d bytes", CTL_MAX_LINE);
		c->eof = true; /* read no more; the error is sent, then the connection closed */
		c->len = 0;
	}
}

static void conn_event(void *opaque, uint32_t events)
{
	struct ctl_conn *c = opaque;

	if (events & EPOLLOUT)
		conn_flush(c);
	if (!c->dead && !c->eof && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		conn_read(c);
	else if (!c->dead && (events & EPOLLERR))
		c->dead = true;
	conn_settle(c);
}

/* After reading or replying: close a connection that is done, else watch and time it. */
static void conn_settle(struct ctl_conn *c)
{
	/* Done: the peer stopped sending and has all its replies (or is gone). */
	if (c->dead || (c->eof && c->ooff == c->olen && !c->waiting)) {
		conn_close(c);
		return;
	}
	conn_watch(c);
	conn_arm(c);
}

/*
 * Timeouts, so that connections that say nothing cannot hold slots: an idle connection goes
 * after ctl.idle_ms, a request line must be complete within ctl.line_ms of its first byte
 * (bytes trickling in do not extend it), and queued replies that the client does not read
 * for ctl.stall_ms drop it.
 */
static uint64_t conn_deadline(const struct ctl_conn *c)
{
	if (c->ooff < c->olen)
		return c->out_ns + c->ctl->stall_ns;
	if (c->len)
		return c->line_ns + c->ctl->line_ns;
	if (c->waiting) /* not idle: its live checkpoint is being written */
		return mono_ns() + c->ctl->idle_ns;
	return c->last_ns + c->ctl->idle_ns;
}

static void conn_arm(struct ctl_conn *c)
{
	uint64_t now = mono_ns(), d = conn_deadline(c);

	/* The vtimer runs on the VM clock; only the distance from now matters here. */
	vtimer_arm(&c->timer, vclock_ns(&c->ctl->vm->ev) + (d > now ? d - now : 0));
}

static void conn_timeout(void *opaque)
{
	struct ctl_conn *c = opaque;
	uint64_t now = mono_ns();

	if (now < conn_deadline(c)) {
		conn_arm(c);
		return;
	}
	if (c->ooff < c->olen)
		conn_close(c); /* it is not reading: nothing more can reach it */
	else if (c->len)
		conn_drop(c, "request line not completed in time: closing the connection");
	else
		conn_drop(c, "idle for too long: closing the connection");
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
	char line[200];
	int n = snprintf(line, sizeof(line), "{\"ok\":false,\"error\":\"%s\"}\n", msg);

	if (send(fd, line, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
		/* the client is gone already: nothing to tell it */
	}
	close(fd);
}

/* A new client always gets in: when every slot is taken, the least recently active goes. */
static void ctl_make_room(struct ctl *ctl)
{
	struct ctl_conn *old = NULL;

	for (struct ctl_conn *c = ctl->conns; c; c = c->next) {
		uint64_t act = c->line_ns > c->last_ns ? c->line_ns : c->last_ns;

		if (c->busy)
			continue; /* the one whose save is running */
		if (!old || act < (old->line_ns > old->last_ns ? old->line_ns : old->last_ns))
			old = c;
	}
	if (old)
		conn_drop(old, "too many control connections: closing the least recently "
			       "active one");
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
			ctl_refuse(fd, "permission denied: the VM belongs to another user");
			continue;
		}
		if (ctl->nconns >= CTL_MAX_CONNS)
			ctl_make_room(ctl);
		c = calloc(1, sizeof(*c));
		if (!c) {
			ctl_refuse(fd, "out of memory");
			continue;
		}
		c->ctl = ctl;
		c->fd = fd;
		c->last_ns = mono_ns();
		c->events = EPOLLIN;
		vtimer_init(&c->timer, &ctl->vm->ev, conn_timeout, c);
		if (evloop_add_fd(&ctl->vm->ev, fd, EPOLLIN, conn_event, c)) {
			free(c);
			ctl_refuse(fd, "out of memory");
			continue;
		}
		c->next = ctl->conns;
		ctl->conns = c;
		ctl->nconns++;
		conn_arm(c);
	}
}

/*
 * A save holds the loop thread for as long as it takes; meanwhile its progress reports call
 * this, so that new clients get in and --status is answered (dispatch refuses the rest).
 * The saving connection is busy and left alone: its progress lines are its own.
 */
static void ctl_serve_during_save(struct ctl *ctl)
{
	struct ctl_conn *c, *next;

	ctl_accept(ctl, EPOLLIN);
	for (c = ctl->conns; c; c = next) {
		next = c->next;
		if (c->busy)
			continue;
		conn_flush(c);
		if (!c->dead && !c->eof)
			conn_read(c);
		conn_settle(c);
	}
}

/* ---- start and stop ---- */

/* The directory part of @path ("." for none). */
static void dir_of(const char *path, char *dir, size_t len)
{
	char *slash;

	snprintf(dir, len, "%s", path);
	slash = strrchr(dir, '/');
	if (!slash)
		snprintf(dir, len, ".");
	else if (slash == dir)
		dir[1] = '\0';
	else
		*slash = '\0';
}

/*
 * mkdir -p for the socket's directory; new directories are private (0700).  The directory
 * itself is then checked: owned by us (or root), and writable by nobody else unless it is
 * sticky like /tmp (where others cannot remove or rename our socket).  khyve's own default
 * directory must be ours and private.
 */
static int make_dirs(const char *path, bool is_default, char *err, size_t errlen)
{
	char dir[PATH_MAX];
	struct stat st;
	bool private;

	dir_of(path, dir, sizeof(dir));
	for (char *p = dir + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(dir, 0700) < 0 && errno != EEXIST)
			goto fail;
		*p = '/';
	}
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		goto fail;
	if (stat(dir, &st) < 0)
		goto fail;
	if (!S_ISDIR(st.st_mode)) {
		errno = ENOTDIR;
		goto fail;
	}
	if (is_default)
	private = st.st_uid == geteuid() && !(st.st_mode & 077);
	else private = (st.st_uid == geteuid() || st.st_uid == 0) &&
		       (!(st.st_mode & 022) || (st.st_mode & S_ISVTX));
	if (!private) {
		snprintf(err, errlen,
			 "control socket directory %s (owner uid %u, mode %04o) is not private: "
			 "others could replace the socket; it must belong to uid %u and be "
			 "writable only by it",
			 dir, (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777),
			 (unsigned)geteuid());
		return -EPERM;
	}
	return 0;
fail:
	snprintf(err, errlen, "cannot create the directory of control socket %s: %s%s", path,
		 strerror(errno), is_default ? " (set -o ctl.socket=PATH or ctl.socket=off)" : "");
	return -errno;
}

/* Lock the directory while we probe, remove a stale socket and bind, so two khyves that start
 * with the same name at once cannot both decide the socket is stale. */
static int lock_dir(const char *path)
{
	char dir[PATH_MAX];
	int fd;

	dir_of(path, dir, sizeof(dir));
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
	int ret;

	ctl->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (ctl->lfd < 0)
		return -errno;
	fill_addr(&a, ctl->path);
	/*
	 * No umask() around bind: other threads may create files meanwhile.  Others cannot
	 * connect in the moment before the chmod: the directory was checked, the file gets the
	 * process umask (no write bit for others by default), and every client's credentials
	 * are checked at accept.
	 */
	ret = bind(ctl->lfd, (struct sockaddr *)&a, sizeof(a));
	if (ret < 0) {
		ret = -errno;
		if (ret == -EADDRINUSE)
			snprintf(err, errlen, "control socket %s is in use by another VM",
				 ctl->path);
		return ret;
	}
	/* chmod that never follows a symlink put in the socket's place. */
	if (lstat(ctl->path, &st) < 0)
		ret = -errno;
	else if (!S_ISSOCK(st.st_mode) || st.st_uid != geteuid())
		ret = -EPERM; /* not the socket we just bound: leave it alone */
	else if (fchmodat(AT_FDCWD, ctl->path, 0600, AT_SYMLINK_NOFOLLOW) < 0 ||
		 listen(ctl->lfd, 16) < 0)
		ret = -errno;
	if (ret) {
		snprintf(err, errlen, "control socket %s: cannot make it private: %s", ctl->path,
			 strerror(-ret));
		if (ret != -EPERM)
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

	ret = make_dirs(ctl->path, is_default, err, errlen);
	if (ret)
		return ret;
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

static int ctl_timeouts(struct ctl *ctl, const struct config *cfg, char *err, size_t errlen)
{
	static const struct {
		const char *key;
		unsigned dflt;
		size_t off;
	} t[] = {
		{ "ctl.idle_ms", CTL_IDLE_MS, offsetof(struct ctl, idle_ns) },
		{ "ctl.line_ms", CTL_LINE_MS, offsetof(struct ctl, line_ns) },
		{ "ctl.stall_ms", CTL_STALL_MS, offsetof(struct ctl, stall_ns) },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		const char *v = cfg ? config_get(cfg, t[i].key) : NULL;
		unsigned long ms = t[i].dflt;
		char *end;

		if (v) {
			errno = 0;
			ms = strtoul(v, &end, 10);
			if (errno || *end || !*v || !ms || ms > 86400000) {
				snprintf(err, errlen,
					 "%s=%s: expected milliseconds from 1 to 86400000",
					 t[i].key, v);
				return -EINVAL;
			}
		}
		*(uint64_t *)((char *)ctl + t[i].off) = (uint64_t)ms * 1000000ULL;
	}
	return 0;
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
	ret = ctl_timeouts(ctl, vm->cfg, err, errlen);
	if (ret)
		goto fail;
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

	/* The last replies (a suspend's) get a short while to reach their clients. */
	for (int i = 0; i < 100; i++) {
		bool pending = false;

		for (struct ctl_conn *c = ctl->conns; c; c = c->next) {
			conn_flush(c);
			pending |= !c->dead && c->ooff < c->olen;
		}
		if (!pending)
			break;
		poll(NULL, 0, 10);
	}
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
