// SPDX-License-Identifier: BSD-2-Clause
/*
 * khyvectl: talk to a running khyve through its control socket (bhyvectl's option shapes:
 * --vm=NAME --checkpoint=FILE, --suspend=FILE, --pause, --resume, --status), and look at
 * snapshot files offline (snapshot info, snapshot verify).  man/khyvectl.8 is the manual and
 * doc/control-protocol.md the protocol.
 *
 * Exit status: 0 success, 1 khyve answered with an error (or the snapshot is corrupt),
 * 2 usage error, no connection, or a file that cannot be read.
 */
#include <errno.h>
#include <getopt.h>
#include <json-c/json.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <dirent.h>
#include <unistd.h>

#include "config.h"
#include "ctl/ctl.h"
#include "snap/chain.h"
#include "snap/disks.h"
#include "snap/format.h"
#include "snap/meta.h"
#include "snap/trust.h"
#include "version.h"

#define EXIT_REFUSED 1 /* khyve said no, or the file is corrupt */
#define EXIT_USAGE 2   /* bad command line, no connection, unreadable file */
#define MAX_REPLY (1 << 20)
#define MORE (-1) /* handle_reply: a progress line, the answer follows */

enum action {
	ACT_NONE,
	ACT_CHECKPOINT,
	ACT_SUSPEND,
	ACT_PAUSE,
	ACT_RESUME,
	ACT_STATUS,
	ACT_SCREENSHOT,
	ACT_POWEROFF,
	ACT_FORCE_POWEROFF,
	ACT_FORCE_RESET,
	ACT_DESTROY,
	ACT_LIST,
	ACT_INJECT_NMI,
	ACT_GET_STATS,
	ACT_MIGRATE,
};

struct opts {
	const char *vm, *socket;
	const char *dir; /* --list: where the sockets are (default: the usual places) */
	enum action action;
	const char *file;
	const char *addr; /* --migrate=ADDR:PORT */
	bool json, quiet;
	bool live; /* --live: a checkpoint with a pause of milliseconds, or pre-copy migration */
	uint64_t max_rate; /* --max-rate=SIZE: bytes per second of a save, 0 if not given */
	long max_downtime; /* --max-downtime=MS (with --live), 0 if not given */
	int autoconverge;  /* --auto-converge=on|off: 1, 0, or -1 if not given */
	long throttle_initial, throttle_increment; /* --throttle-initial/-increment=PCT, or 0 */
	bool incremental;   /* --incremental: only the pages written since the parent */
	const char *parent; /* --parent=PREV: the parent, which must be the last checkpoint */
	long vcpu;	    /* --vcpu=N for --inject-nmi, -1 if not given */
};

/* A client-side view of one request: where to, and whether a progress bar is on screen. */
struct client {
	const struct opts *o;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char file[PATH_MAX];
	char parent[PATH_MAX];
	const char *name; /* for messages: the VM name, or the socket path */
	int fd;
	bool bar;
	int bar_pct;
};

static void usage(FILE *f)
{
	fprintf(f, "usage: khyvectl --vm=NAME [--socket=PATH] ACTION [--json] [--quiet]\n"
		   "       khyvectl --list [--dir=DIR] [--json]\n"
		   "       khyvectl snapshot info [--json] [--key=PATH] FILE\n"
		   "       khyvectl snapshot verify [--json] FILE\n"
		   "       khyvectl snapshot merge [--json] CHAIN_TIP OUT\n"
		   "       khyvectl -h | --version\n"
		   "\n"
		   "actions:\n"
		   "  --checkpoint=FILE  save the running VM to FILE; the VM goes on running\n"
		   "    --live           pause the guest only to save vCPU and device state; its\n"
		   "                     memory is written while it runs (as of the pause)\n"
		   "    --max-downtime=MS  (with --live, a restored VM: its memory is pre-copied)\n"
		   "                     the budget for the last pages in the pause (default 2)\n"
		   "    --incremental    only the pages written since the last checkpoint or\n"
		   "                     restore, into a file that names it as its parent\n"
		   "    --parent=PREV    the same, saying which file that is (it must be)\n"
		   "  --suspend=FILE     save the VM to FILE, then end it\n"
		   "    --max-rate=SIZE  (with --checkpoint or --suspend) write at most SIZE\n"
		   "                     bytes per second (K, M, G), e.g. 100M\n"
		   "  --pause            stop the guest's vCPUs and devices\n"
		   "  --resume           let a paused guest run again\n"
		   "  --status           show the VM's state\n"
		   "  --screenshot=FILE  save what the VM's display shows as a PNG file\n"
		   "  --poweroff         press the ACPI power button (the guest shuts down)\n"
		   "  --force-poweroff   end the VM now, as a power off (khyve exits 1)\n"
		   "  --force-reset      end the VM now, as a reset (khyve exits 0)\n"
		   "  --destroy          end the VM now (khyve exits 4)\n"
		   "  --inject-nmi       send an NMI to vCPU 0 (or --vcpu=N)\n"
		   "  --get-stats        exits per vCPU, I/O per device, the last checkpoints\n"
		   "  --migrate=ADDR:PORT  send the VM to khyve -R ADDR:PORT; the VM ends here\n"
		   "    --live           copy memory while the guest runs, then stop it briefly\n"
		   "    --max-downtime=MS  (with --live) the pause to aim for: copy rounds go on\n"
		   "                     until what is left can be sent in MS (default 20)\n"
		   "    --auto-converge=on|off  (with --live) slow the vCPUs down while the\n"
		   "                     rounds do not shrink what is left (default on)\n"
		   "    --throttle-initial=PCT, --throttle-increment=PCT  the share of time the\n"
		   "                     vCPUs sleep at first and its growth per round (20, 10)\n"
		   "options:\n"
		   "  --vm=NAME          the VM (its socket is " CTL_DEFAULT_DIR "/NAME.sock, or\n"
		   "                     $XDG_RUNTIME_DIR/khyve/NAME.sock for a user who cannot\n"
		   "                     write " CTL_DEFAULT_DIR ")\n"
		   "  --socket=PATH      the control socket, for a VM started with -o "
		   "ctl.socket=PATH\n"
		   "  --json             print khyve's reply as JSON, one line\n"
		   "  --quiet            no progress bar, nothing printed on success (except "
		   "--status)\n"
		   "  -h, --help         this help\n"
		   "  --version          the version, commit and snapshot format\n");
}

/* --json anywhere on the command line: every error is a JSON object on stdout too. */
static bool json_mode;

static void json_error_out(const char *msg, bool usage)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "ok", json_object_new_boolean(0));
	json_object_object_add(o, "error", json_object_new_string(msg));
	if (usage)
		json_object_object_add(o, "usage", json_object_new_boolean(1));
	printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
								 JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "khyvectl: %s (see khyvectl -h)\n", msg);
	if (json_mode)
		json_error_out(msg, true);
	return EXIT_USAGE;
}

/* An error of the offline commands (snapshot info/verify): stderr, and JSON with --json. */
static void file_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void file_error(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "khyvectl: %s\n", msg);
	if (json_mode)
		json_error_out(msg, false);
}

/* ---- formatting ---- */

static void fmt_bytes(char *buf, size_t len, double b)
{
	if (b >= (double)(1ULL << 30))
		snprintf(buf, len, "%.1f GiB", b / (double)(1ULL << 30));
	else if (b >= (double)(1ULL << 20))
		snprintf(buf, len, "%.1f MiB", b / (double)(1ULL << 20));
	else if (b >= 1024)
		snprintf(buf, len, "%.1f KiB", b / 1024);
	else
		snprintf(buf, len, "%.0f bytes", b);
}

static void fmt_ms(char *buf, size_t len, double ms)
{
	if (ms >= 10000)
		snprintf(buf, len, "%.1f s", ms / 1000);
	else
		snprintf(buf, len, "%.1f ms", ms);
}

static void fmt_uptime(char *buf, size_t len, uint64_t ms)
{
	uint64_t s = ms / 1000;

	if (s >= 86400)
		snprintf(buf, len, "%llud %02lluh%02llum", (unsigned long long)(s / 86400),
			 (unsigned long long)(s / 3600 % 24), (unsigned long long)(s / 60 % 60));
	else if (s >= 3600)
		snprintf(buf, len, "%lluh%02llum%02llus", (unsigned long long)(s / 3600),
			 (unsigned long long)(s / 60 % 60), (unsigned long long)(s % 60));
	else if (s >= 60)
		snprintf(buf, len, "%llum%02llus", (unsigned long long)(s / 60),
			 (unsigned long long)(s % 60));
	else
		snprintf(buf, len, "%llu.%llus", (unsigned long long)s,
			 (unsigned long long)(ms % 1000 / 100));
}

static double get_double(struct json_object *o, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(o, key, &v) ? json_object_get_double(v) : 0;
}

static uint64_t get_u64(struct json_object *o, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(o, key, &v) ? json_object_get_uint64(v) : 0;
}

static bool get_bool(struct json_object *o, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_boolean) &&
	       json_object_get_boolean(v);
}

static const char *get_str(struct json_object *o, const char *key, const char *dflt)
{
	struct json_object *v;

	if (json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string))
		return json_object_get_string(v);
	return dflt;
}

/* ---- progress bar ---- */

static volatile sig_atomic_t bar_shown;

static void bar_clear(void)
{
	static const char clr[] = "\r\033[K";

	if (bar_shown && write(STDERR_FILENO, clr, sizeof(clr) - 1) < 0) {
		/* nothing more we can do for a terminal that went away */
	}
	bar_shown = 0;
}

/* ^C during a save: leave a clean line (the save itself goes on inside khyve). */
static void on_signal(int sig)
{
	bar_clear();
	signal(sig, SIG_DFL);
	raise(sig);
}

static void bar_draw(struct client *c, uint64_t done, uint64_t total)
{
	int pct = total ? (int)(done * 100 / total) : 100;
	char bar[31], d[32], t[32];
	int fill = pct * 30 / 100;

	if (pct == c->bar_pct)
		return;
	c->bar_pct = pct;
	memset(bar, '#', (size_t)fill);
	memset(bar + fill, '-', (size_t)(30 - fill));
	bar[30] = '\0';
	fmt_bytes(d, sizeof(d), (double)done);
	fmt_bytes(t, sizeof(t), (double)total);
	fprintf(stderr, "\r\033[Ksaving [%s] %3d%%  %s of %s", bar, pct, d, t);
	fflush(stderr);
	bar_shown = 1;
}

/* ---- talking to khyve ---- */

/*
 * The server must be our own user or root: a socket someone else put at the path would
 * otherwise receive our requests (and the paths in them) and answer whatever it likes.
 */
static int check_server(struct client *c)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	if (getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
		fprintf(stderr, "khyvectl: control socket %s: cannot check who serves it: %s\n",
			c->path, strerror(errno));
	} else if (cred.uid != 0 && cred.uid != geteuid()) {
		fprintf(stderr,
			"khyvectl: control socket %s is served by uid %u (pid %d), not by you or "
			"root: refusing to talk to it\n",
			c->path, (unsigned)cred.uid, (int)cred.pid);
	} else {
		return 0;
	}
	close(c->fd);
	c->fd = -1;
	return EXIT_USAGE;
}

/* --json: a failure before khyve answered is a JSON object on stdout too. */
static void json_fail(const struct client *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void json_fail(const struct client *c, const char *fmt, ...)
{
	struct json_object *o;
	char msg[1024];
	va_list ap;

	if (!c->o->json && !json_mode)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	o = json_object_new_object();
	json_object_object_add(o, "ok", json_object_new_boolean(0));
	json_object_object_add(o, "error", json_object_new_string(msg));
	printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
								 JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
}

static int ctl_connect(struct client *c)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };

	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		fprintf(stderr, "khyvectl: socket: %s\n", strerror(errno));
		json_fail(c, "socket: %s", strerror(errno));
		return EXIT_USAGE;
	}
	memcpy(a.sun_path, c->path, strlen(c->path));
	if (connect(c->fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
		int ret = check_server(c);

		if (ret)
			json_fail(c, "control socket %s: not served by you or root", c->path);
		return ret;
	}
	fprintf(stderr, "khyvectl: cannot connect to control socket %s: %s\n", c->path,
		strerror(errno));
	json_fail(c, "cannot connect to control socket %s: %s", c->path, strerror(errno));
	if (c->o->vm)
		fprintf(stderr,
			"khyvectl: is VM '%s' running? Check the name given with --vm, "
			"or use --socket if it was started with -o ctl.socket=PATH\n",
			c->o->vm);
	else
		fprintf(stderr, "khyvectl: is the VM running? Check the --socket path\n");
	close(c->fd);
	return EXIT_USAGE;
}

static const char *request_name(enum action a)
{
	static const char *const names[] = {
		[ACT_CHECKPOINT] = "checkpoint",
		[ACT_SUSPEND] = "suspend",
		[ACT_PAUSE] = "pause",
		[ACT_RESUME] = "resume",
		[ACT_STATUS] = "status",
		[ACT_SCREENSHOT] = "screenshot",
		[ACT_POWEROFF] = "poweroff",
		[ACT_FORCE_POWEROFF] = "force-poweroff",
		[ACT_FORCE_RESET] = "force-reset",
		[ACT_DESTROY] = "destroy",
		[ACT_LIST] = "list",
		[ACT_INJECT_NMI] = "inject-nmi",
		[ACT_GET_STATS] = "get-stats",
		[ACT_MIGRATE] = "migrate",
	};

	return names[a];
}

static int send_request(struct client *c)
{
	struct json_object *o = json_object_new_object();
	const char *s;
	size_t len;
	int ret = 0;

	json_object_object_add(o, "request", json_object_new_string(request_name(c->o->action)));
	if (c->o->action == ACT_CHECKPOINT || c->o->action == ACT_SUSPEND) {
		json_object_object_add(o, "file", json_object_new_string(c->file));
		json_object_object_add(o, "progress", json_object_new_boolean(c->bar));
		if (c->o->live)
			json_object_object_add(o, "live", json_object_new_boolean(true));
		if (c->o->max_rate)
			json_object_object_add(o, "max_rate",
					       json_object_new_int64((int64_t)c->o->max_rate));
		if (c->o->incremental)
			json_object_object_add(o, "incremental", json_object_new_boolean(true));
		if (c->o->parent)
			json_object_object_add(o, "parent", json_object_new_string(c->parent));
		if (c->o->max_downtime)
			json_object_object_add(o, "max_downtime_ms",
					       json_object_new_int64(c->o->max_downtime));
	} else if (c->o->action == ACT_MIGRATE) {
		json_object_object_add(o, "address", json_object_new_string(c->o->addr));
		json_object_object_add(o, "progress", json_object_new_boolean(c->bar));
		if (c->o->live)
			json_object_object_add(o, "live", json_object_new_boolean(true));
		if (c->o->max_downtime)
			json_object_object_add(o, "max_downtime_ms",
					       json_object_new_int64(c->o->max_downtime));
		if (c->o->autoconverge >= 0)
			json_object_object_add(o, "autoconverge",
					       json_object_new_boolean(c->o->autoconverge));
		if (c->o->throttle_initial)
			json_object_object_add(o, "throttle_initial",
					       json_object_new_int64(c->o->throttle_initial));
		if (c->o->throttle_increment)
			json_object_object_add(o, "throttle_increment",
					       json_object_new_int64(c->o->throttle_increment));
	} else if (c->o->action == ACT_SCREENSHOT) {
		json_object_object_add(o, "file", json_object_new_string(c->file));
	} else if (c->o->action == ACT_INJECT_NMI && c->o->vcpu >= 0) {
		json_object_object_add(o, "vcpu", json_object_new_int64(c->o->vcpu));
	}
	s = json_object_to_json_string_ext(o,
					   JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	len = strlen(s);
	/* One write of the line and its newline: khyve reads lines, not bytes. */
	char *line = malloc(len + 1);

	if (!line) {
		json_object_put(o);
		return -ENOMEM;
	}
	memcpy(line, s, len);
	line[len] = '\n';
	for (size_t off = 0; off < len + 1;) {
		ssize_t n = send(c->fd, line + off, len + 1 - off, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = -errno;
			break;
		}
		off += (size_t)n;
	}
	free(line);
	json_object_put(o);
	return ret;
}

/*
 * Read one reply line into a growing buffer kept between calls.  Returns the line
 * (NUL-terminated, valid until the next call) or NULL at EOF/error.
 */
static char *read_line(int fd, char **buf, size_t *len, size_t *cap, size_t *consumed)
{
	char *nl;

	memmove(*buf, *buf + *consumed, *len - *consumed);
	*len -= *consumed;
	*consumed = 0;
	for (;;) {
		nl = memchr(*buf, '\n', *len);
		if (nl) {
			*nl = '\0';
			*consumed = (size_t)(nl - *buf) + 1;
			return *buf;
		}
		if (*len + 1 >= *cap) {
			if (*cap >= MAX_REPLY)
				return NULL;
			*cap *= 2;
			char *nb = realloc(*buf, *cap);

			if (!nb)
				return NULL;
			*buf = nb;
		}
		ssize_t n = read(fd, *buf + *len, *cap - *len - 1);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return NULL;
		*len += (size_t)n;
	}
}

static void print_save(struct client *c, struct json_object *r, bool suspend)
{
	char size[32], total[32], paused[32];

	fmt_bytes(size, sizeof(size), (double)get_u64(r, "bytes"));
	fmt_ms(total, sizeof(total), get_double(r, "total_ms"));
	fmt_ms(paused, sizeof(paused), get_double(r, "paused_ms"));
	printf("%s%s%s %s \u2192 %s: %s in %s, guest paused %s%s\n",
	       suspend ? "suspend" : "checkpoint", get_bool(r, "live") ? " (live)" : "",
	       get_bool(r, "incremental") ? " (incremental)" : "", c->name,
	       get_str(r, "file", c->file), size, total, paused,
	       suspend ? "; the VM has exited" : "");
	if (get_bool(r, "incremental"))
		printf("  its parent: %s\n", get_str(r, "parent", "?"));
	if (get_bool(r, "live") && !strcmp(get_str(r, "method", ""), "dirty-log"))
		printf("  pre-copied with the dirty log (a restored VM): %llu rounds, %llu pages "
		       "written in the pause (%s)\n",
		       (unsigned long long)get_u64(r, "rounds"),
		       (unsigned long long)get_u64(r, "final_pages"), get_str(r, "converged", "?"));
	if (*get_str(r, "note", ""))
		printf("  note: %s\n", get_str(r, "note", ""));
}

static void print_round(struct json_object *v)
{
	char sent[32], dirty[32], took[32];

	fmt_bytes(sent, sizeof(sent), (double)get_u64(v, "bytes"));
	fmt_bytes(dirty, sizeof(dirty), (double)get_u64(v, "dirty_pages") * 4096);
	fmt_ms(took, sizeof(took), get_double(v, "ms"));
	fprintf(stderr, "  round %llu: sent %s in %s, %s written meanwhile",
		(unsigned long long)get_u64(v, "round"), sent, took, dirty);
	if (get_u64(v, "throttle_pct"))
		fprintf(stderr, ", vCPUs throttled %llu%%",
			(unsigned long long)get_u64(v, "throttle_pct"));
	fputc('\n', stderr);
}

static void print_migrate(struct client *c, struct json_object *r)
{
	char size[32], total[32], down[32];

	fmt_bytes(size, sizeof(size), (double)get_u64(r, "bytes"));
	fmt_ms(total, sizeof(total), get_double(r, "total_ms"));
	fmt_ms(down, sizeof(down), get_double(r, "downtime_ms"));
	printf("migrate%s %s \u2192 %s: %s in %llu round%s, %s, guest stopped %s; the VM runs "
	       "there now and has exited here\n",
	       get_bool(r, "live") ? " (live)" : "", c->name, get_str(r, "address", c->o->addr),
	       size, (unsigned long long)get_u64(r, "rounds"), get_u64(r, "rounds") == 1 ? "" : "s",
	       total, down);
	if (get_u64(r, "throttle_pct"))
		printf("  auto-converge throttled the vCPUs up to %llu%% of their time\n",
		       (unsigned long long)get_u64(r, "throttle_pct"));
}

static void print_status(struct json_object *r)
{
	char mem[32], up[32], paused[48] = "";
	struct json_object *sv;

	fmt_bytes(mem, sizeof(mem), (double)get_u64(r, "memory"));
	fmt_uptime(up, sizeof(up), get_u64(r, "uptime_ms"));
	if (json_object_object_get_ex(r, "paused_ms", NULL)) {
		char t[32];

		fmt_ms(t, sizeof(t), get_double(r, "paused_ms"));
		snprintf(paused, sizeof(paused), " for %s", t);
	}
	printf("%s: %s%s, %llu vCPU%s, %s of memory, up %s, pid %llu\n", get_str(r, "vm", "?"),
	       get_str(r, "state", "?"), paused, (unsigned long long)get_u64(r, "vcpus"),
	       get_u64(r, "vcpus") == 1 ? "" : "s", mem, up, (unsigned long long)get_u64(r, "pid"));
	if (json_object_object_get_ex(r, "save", &sv)) {
		if (get_bool(sv, "live")) {
			printf("  saving %s (live): its memory is being written\n",
			       get_str(sv, "file", "?"));
		} else {
			char d[32], t[32], e[32];
			uint64_t done = get_u64(sv, "done"), total = get_u64(sv, "total");

			fmt_bytes(d, sizeof(d), (double)done);
			fmt_bytes(t, sizeof(t), (double)total);
			fmt_ms(e, sizeof(e), get_double(sv, "elapsed_ms"));
			printf("  saving %s (%s): %s of %s written (%d%%), for %s\n",
			       get_str(sv, "file", "?"), get_str(sv, "kind", "checkpoint"), d, t,
			       total ? (int)(done * 100 / total) : 0, e);
		}
	}
	if (json_object_object_get_ex(r, "pending", NULL))
		printf("  pending: %s (at resume)\n", get_str(r, "pending", "?"));
	if (json_object_object_get_ex(r, "uuid", NULL))
		printf("  uuid: %s\n", get_str(r, "uuid", "?"));
	if (json_object_object_get_ex(r, "gdb", &sv)) {
		const char *d = get_str(sv, "debugger", "none");

		printf("  gdb stub on %s: %s\n", get_str(sv, "address", "?"),
		       !strcmp(d, "stopped") ? "a debugger is connected, the guest is stopped in it"
		       : !strcmp(d, "running") ? "a debugger is connected, the guest runs"
					       : "no debugger connected");
	}
}

static void print_stats(struct json_object *r)
{
	struct json_object *a, *v;

	printf("%s: up ", get_str(r, "vm", "?"));
	{
		char up[32];

		fmt_uptime(up, sizeof(up), get_u64(r, "uptime_ms"));
		printf("%s\n", up);
	}
	if (json_object_object_get_ex(r, "vcpus", &a) && json_object_is_type(a, json_type_array)) {
		printf("exits:\n");
		for (size_t i = 0; i < json_object_array_length(a); i++) {
			struct json_object *c = json_object_array_get_idx(a, i), *e;

			printf("  vcpu %" PRIu64 ": %" PRIu64 " total", get_u64(c, "vcpu"),
			       get_u64(c, "exits_total"));
			if (json_object_object_get_ex(c, "exits", &e) &&
			    json_object_is_type(e, json_type_object)) {
				json_object_object_foreach (e, k, n)
					printf(", %s %" PRIu64, k, json_object_get_uint64(n));
			}
			if (get_u64(c, "nmis_injected"))
				printf("; %" PRIu64 " NMI%s injected", get_u64(c, "nmis_injected"),
				       get_u64(c, "nmis_injected") == 1 ? "" : "s");
			if (get_u64(c, "throttle_sleeps")) {
				char t[32];

				fmt_ms(t, sizeof(t), get_double(c, "throttled_ms"));
				printf("; slept %s for auto-converge%s", t,
				       get_bool(c, "throttled") ? " (throttled now)" : "");
			}
			printf("\n");
		}
	}
	if (get_u64(r, "throttle_pct"))
		printf("auto-converge (live migration): vCPUs throttled %" PRIu64 "%%\n",
		       get_u64(r, "throttle_pct"));
	if (json_object_object_get_ex(r, "io", &a) && json_object_is_type(a, json_type_array)) {
		printf("I/O:\n  %-20s %-16s %12s %12s %12s\n", "DEVICE", "REGION", "READS",
		       "WRITES", "BYTES");
		for (size_t i = 0; i < json_object_array_length(a); i++) {
			v = json_object_array_get_idx(a, i);
			if (!get_u64(v, "reads") && !get_u64(v, "writes"))
				continue;
			printf("  %-20s %-16s %12" PRIu64 " %12" PRIu64 " %12" PRIu64 "\n",
			       get_str(v, "device", "?"), get_str(v, "region", "?"),
			       get_u64(v, "reads"), get_u64(v, "writes"), get_u64(v, "bytes"));
		}
	}
	if (json_object_object_get_ex(r, "coalesced", &v) &&
	    json_object_is_type(v, json_type_object))
		printf("coalesced MMIO: %" PRIu64 " zones, %" PRIu64 " writes buffered, %" PRIu64
		       " drains, %" PRIu64 " dropped\n",
		       get_u64(v, "zones"), get_u64(v, "writes"), get_u64(v, "drains"),
		       get_u64(v, "dropped"));
	if (json_object_object_get_ex(r, "snapshots", &a) &&
	    json_object_is_type(a, json_type_array)) {
		size_t n = json_object_array_length(a);

		printf("snapshots:%s\n", n ? "" : " none yet");
		for (size_t i = 0; i < n; i++) {
			char size[32], paused[32], total[32];

			v = json_object_array_get_idx(a, i);
			fmt_bytes(size, sizeof(size), (double)get_u64(v, "bytes"));
			fmt_ms(paused, sizeof(paused), get_double(v, "paused_ms"));
			fmt_ms(total, sizeof(total), get_double(v, "total_ms"));
			printf("  %s %s%s %s: %s in %s, guest paused %s\n", get_str(v, "time", "?"),
			       get_str(v, "kind", "?"), get_bool(v, "live") ? " (live)" : "",
			       get_str(v, "file", "?"), size, total, paused);
		}
	}
}

static void print_ok(struct client *c, struct json_object *r)
{
	char t[32];

	switch (c->o->action) {
	case ACT_MIGRATE:
		print_migrate(c, r);
		break;
	case ACT_CHECKPOINT:
	case ACT_SUSPEND:
		print_save(c, r, c->o->action == ACT_SUSPEND);
		break;
	case ACT_PAUSE:
		fmt_ms(t, sizeof(t), get_double(r, "took_ms"));
		printf("%s: paused (took %s)\n", c->name, t);
		break;
	case ACT_RESUME:
		if (json_object_object_get_ex(r, "paused_ms", NULL)) {
			fmt_ms(t, sizeof(t), get_double(r, "paused_ms"));
			printf("%s: running again after %s paused\n", c->name, t);
		} else {
			printf("%s: running again\n", c->name);
		}
		break;
	case ACT_STATUS:
		print_status(r);
		break;
	case ACT_GET_STATS:
		print_stats(r);
		break;
	case ACT_INJECT_NMI:
		printf("%s: NMI sent to vCPU %" PRIu64 "%s\n", c->name, get_u64(r, "vcpu"),
		       !strcmp(get_str(r, "delivered", "now"), "now")
			       ? ""
			       : " (the VM is paused: the guest takes it when it resumes)");
		break;
	case ACT_SCREENSHOT:
		printf("%s: screenshot %" PRIu64 "x%" PRIu64 " \u2192 %s\n", c->name,
		       get_u64(r, "width"), get_u64(r, "height"), c->file);
		break;
	case ACT_POWEROFF:
		printf("%s: power button pressed; the guest decides what to do\n", c->name);
		break;
	case ACT_FORCE_POWEROFF:
	case ACT_FORCE_RESET:
	case ACT_DESTROY:
		printf("%s: %s; khyve exits with status %" PRIu64 "\n", c->name,
		       get_str(r, "state", "done"), get_u64(r, "exit_status"));
		break;
	case ACT_LIST:
	case ACT_NONE:
		break;
	}
}

static void print_error(struct client *c, const char *msg)
{
	enum action a = c->o->action;

	if (a == ACT_CHECKPOINT || a == ACT_SUSPEND || a == ACT_MIGRATE)
		fprintf(stderr, "khyvectl: %s %s \u2192 %s failed: %s\n", request_name(a), c->name,
			a == ACT_MIGRATE ? c->o->addr : c->file, msg);
	else
		fprintf(stderr, "khyvectl: %s %s: %s\n", request_name(a), c->name, msg);
}

/* Handle one reply line: MORE when more lines follow (progress), else the exit status. */
static int handle_reply(struct client *c, const char *line)
{
	struct json_object *r = json_tokener_parse(line), *v;
	int ret;

	if (!r || !json_object_is_type(r, json_type_object)) {
		bar_clear();
		fprintf(stderr, "khyvectl: %s: khyve sent something that is not JSON: %.200s\n",
			c->name, line);
		json_fail(c, "khyve sent something that is not JSON");
		json_object_put(r);
		return EXIT_REFUSED;
	}
	if (json_object_object_get_ex(r, "progress", &v) &&
	    json_object_object_get_ex(v, "round", NULL)) {
		/* A live migration's round: one line each (JSON as it came with --json). */
		if (c->o->json) {
			printf("%s\n", line);
			fflush(stdout); /* as it comes: a script may act on a round */
		} else if (!c->o->quiet) {
			print_round(v);
		}
		json_object_put(r);
		return MORE;
	}
	if (json_object_object_get_ex(r, "progress", &v)) {
		if (c->bar)
			bar_draw(c, get_u64(v, "done"), get_u64(v, "total"));
		json_object_put(r);
		return MORE;
	}
	bar_clear();
	ret = json_object_object_get_ex(r, "ok", &v) && json_object_get_boolean(v) ? 0
										   : EXIT_REFUSED;
	if (c->o->json)
		printf("%s\n", line);
	else if (ret)
		print_error(c, get_str(r, "error", "khyve refused the request without saying why"));
	else if (!c->o->quiet || c->o->action == ACT_STATUS || c->o->action == ACT_GET_STATS)
		print_ok(c, r);
	json_object_put(r);
	return ret;
}

static int run_request(struct client *c)
{
	size_t len = 0, cap = 4096, consumed = 0;
	char *buf = malloc(cap), *line;
	int ret, send_err;

	if (!buf)
		return EXIT_USAGE;
	/*
	 * A send that fails (khyve closed the connection) is not the end: khyve may have said
	 * why first ("too many control connections", "permission denied"), and that is read
	 * and reported below in its words.
	 */
	send_err = send_request(c);
	ret = MORE;
	while (ret == MORE && (line = read_line(c->fd, &buf, &len, &cap, &consumed)))
		ret = handle_reply(c, line);
	if (ret == MORE && send_err) {
		bar_clear();
		fprintf(stderr, "khyvectl: sending to %s: %s\n", c->path, strerror(-send_err));
		json_fail(c, "sending to %s: %s", c->path, strerror(-send_err));
		ret = EXIT_USAGE;
	} else if (ret == MORE) {
		bar_clear();
		fprintf(stderr,
			"khyvectl: %s: the connection to %s closed before khyve "
			"replied; check khyve's own output\n",
			c->name, c->path);
		json_fail(c, "the connection to %s closed before khyve replied", c->path);
		ret = EXIT_USAGE;
	}
	free(buf);
	return ret;
}

/* khyve runs in its own working directory: send it absolute paths. */
static int absolute_path(const char *in, char *out, size_t len)
{
	char cwd[PATH_MAX];

	if (in[0] == '/')
		return snprintf(out, len, "%s", in) < (int)len ? 0 : -ENAMETOOLONG;
	if (!getcwd(cwd, sizeof(cwd)))
		return -errno;
	return snprintf(out, len, "%s/%s", strcmp(cwd, "/") ? cwd : "", in) < (int)len
		       ? 0
		       : -ENAMETOOLONG;
}

/* ---- --list: every VM whose control socket is in a directory ---- */

/* The status of the VM behind socket @path, or NULL (not a live khyve of ours). */
static struct json_object *list_status(const struct opts *o, const char *path)
{
	struct opts q = *o;
	struct client c = { .o = &q, .fd = -1, .name = path };
	size_t len = 0, cap = 4096, consumed = 0;
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	struct json_object *r = NULL, *v;
	char *buf, *line;

	q.action = ACT_STATUS;
	if (strlen(path) >= sizeof(a.sun_path) || !(buf = malloc(cap)))
		return NULL;
	memcpy(c.path, path, strlen(path) + 1);
	memcpy(a.sun_path, path, strlen(path));
	c.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c.fd >= 0 && !connect(c.fd, (struct sockaddr *)&a, sizeof(a)) && !check_server(&c) &&
	    !send_request(&c) && (line = read_line(c.fd, &buf, &len, &cap, &consumed))) {
		r = json_tokener_parse(line);
		if (!r || !json_object_object_get_ex(r, "ok", &v) || !json_object_get_boolean(v)) {
			json_object_put(r);
			r = NULL;
		}
	}
	if (c.fd >= 0)
		close(c.fd);
	free(buf);
	return r;
}

static void list_dir(const struct opts *o, const char *dir, struct json_object *vms)
{
	DIR *d = opendir(dir);
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d))) {
		size_t n = strlen(e->d_name);
		char path[PATH_MAX];
		struct json_object *st;

		if (n < 6 || strcmp(e->d_name + n - 5, ".sock") ||
		    snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) >= (int)sizeof(path))
			continue;
		st = list_status(o, path);
		if (st) {
			json_object_object_add(st, "socket", json_object_new_string(path));
			json_object_array_add(vms, st);
		}
	}
	closedir(d);
}

static int list_cmp(const void *a, const void *b)
{
	return strcmp(get_str(*(struct json_object *const *)a, "vm", ""),
		      get_str(*(struct json_object *const *)b, "vm", ""));
}

static int list_vms(const struct opts *o)
{
	struct json_object *out = json_object_new_object(), *vms = json_object_new_array();
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	char dir[PATH_MAX];

	if (o->dir) {
		list_dir(o, o->dir, vms);
	} else {
		list_dir(o, CTL_DEFAULT_DIR, vms);
		if (xdg && *xdg && snprintf(dir, sizeof(dir), "%s/khyve", xdg) < (int)sizeof(dir))
			list_dir(o, dir, vms);
	}
	json_object_array_sort(vms, list_cmp);
	if (o->json) {
		json_object_object_add(out, "ok", json_object_new_boolean(1));
		json_object_object_add(out, "vms", json_object_get(vms));
		printf("%s\n",
		       json_object_to_json_string_ext(out, JSON_C_TO_STRING_PLAIN |
								   JSON_C_TO_STRING_NOSLASHESCAPE));
	} else {
		printf("%-16s %8s %-8s %5s %10s %12s\n", "NAME", "PID", "STATE", "VCPUS", "MEMORY",
		       "UPTIME");
		for (size_t i = 0; i < json_object_array_length(vms); i++) {
			struct json_object *v = json_object_array_get_idx(vms, i);
			char mem[32], up[32];

			fmt_bytes(mem, sizeof(mem), (double)get_u64(v, "memory"));
			fmt_uptime(up, sizeof(up), get_u64(v, "uptime_ms"));
			printf("%-16s %8" PRIu64 " %-8s %5" PRIu64 " %10s %12s\n",
			       get_str(v, "vm", "?"), get_u64(v, "pid"), get_str(v, "state", "?"),
			       get_u64(v, "vcpus"), mem, up);
		}
	}
	json_object_put(vms);
	json_object_put(out);
	return 0;
}

static int control(const struct opts *o)
{
	struct client c = { .o = o, .fd = -1, .bar_pct = -1 };
	int ret;

	ret = ctl_socket_path(o->vm, o->socket, c.path, sizeof(c.path));
	if (ret == -ENAMETOOLONG)
		return usage_error("the control socket path for %s is too long",
				   o->socket ? o->socket : o->vm);
	if (ret)
		return usage_error("'%s' is not a valid VM name (no '/', '.' or '..')", o->vm);
	c.name = o->vm ? o->vm : c.path;
	if (o->file && absolute_path(o->file, c.file, sizeof(c.file)))
		return usage_error("%s: cannot make an absolute path of it", o->file);
	if (o->parent && absolute_path(o->parent, c.parent, sizeof(c.parent)))
		return usage_error("%s: cannot make an absolute path of it", o->parent);
	/* A progress bar only for a person watching a terminal. */
	c.bar = (o->action == ACT_CHECKPOINT || o->action == ACT_SUSPEND ||
		 o->action == ACT_MIGRATE) &&
		!o->quiet && isatty(STDERR_FILENO);
	ret = ctl_connect(&c);
	if (ret)
		return ret;
	if (c.bar) {
		signal(SIGINT, on_signal);
		signal(SIGTERM, on_signal);
	}
	ret = run_request(&c);
	close(c.fd);
	return ret;
}

/* ---- offline: snapshot info / verify ---- */

/* Errors that mean "could not read the file" (exit 2) rather than "the file is bad" (1). */
static int open_error_status(int ret)
{
	switch (-ret) {
	case ENOENT:
	case EACCES:
	case EPERM:
	case ENOTDIR:
	case ELOOP:
	case ENAMETOOLONG:
	case EMFILE:
	case ENFILE:
	case ENOMEM:
	case EISDIR:
		return EXIT_USAGE;
	default:
		return EXIT_REFUSED;
	}
}

static int snap_open(struct snap_file *f, const char *path, bool verify)
{
	char err[512] = "";
	struct stat st;
	int ret;

	if (stat(path, &st) < 0) {
		file_error("%s: %s", path, strerror(errno));
		return EXIT_USAGE;
	}
	if (!S_ISREG(st.st_mode)) {
		file_error("%s: not a regular file", path);
		return EXIT_USAGE;
	}
	ret = snap_file_open(f, path, verify, err, sizeof(err));
	if (ret) {
		file_error("%s", err[0] ? err : strerror(-ret));
		return open_error_status(ret);
	}
	return 0;
}

static void add_u64(struct json_object *o, const char *key, uint64_t v)
{
	json_object_object_add(o, key, json_object_new_uint64(v));
}

static struct json_object *sections_json(const struct snap_file *f)
{
	struct json_object *a = json_object_new_array();

	for (unsigned i = 0; i < f->nsections; i++) {
		const struct snap_section *s = &f->sections[i];
		struct json_object *o = json_object_new_object();
		const char *type = snap_section_type_name(s->type);

		json_object_object_add(o, "type", json_object_new_string(type ? type : "?"));
		json_object_object_add(o, "id", json_object_new_string(s->id));
		add_u64(o, "version", s->version);
		add_u64(o, "offset", s->offset);
		add_u64(o, "length", s->length);
		json_object_array_add(a, o);
	}
	return a;
}

static struct json_object *memory_json(const struct snap_file *f)
{
	struct json_object *o = json_object_new_object(), *a = json_object_new_array();
	uint64_t data = 0;

	for (unsigned i = 0; i < f->nregions; i++) {
		struct json_object *r = json_object_new_object();

		add_u64(r, "gpa", f->regions[i].gpa);
		add_u64(r, "size", f->regions[i].size);
		add_u64(r, "file_offset", f->regions[i].file_offset);
		json_object_array_add(a, r);
	}
	for (unsigned i = 0; i < f->nextents; i++)
		data += f->extents[i].length;
	json_object_object_add(o, "regions", a);
	add_u64(o, "extents", f->nextents);
	add_u64(o, "data_bytes", data);
	add_u64(o, "offset", f->mem_offset);
	add_u64(o, "size", f->mem_size);
	return o;
}

/* Each device in the metadata gets the version and size of its section in the table. */
static void annotate_devices(struct json_object *meta, const struct snap_file *f)
{
	struct json_object *devs, *d, *id;

	if (!json_object_object_get_ex(meta, "devices", &devs) ||
	    !json_object_is_type(devs, json_type_array))
		return;
	for (size_t i = 0; i < json_object_array_length(devs); i++) {
		const struct snap_section *s;

		d = json_object_array_get_idx(devs, i);
		if (!json_object_is_type(d, json_type_object) ||
		    !json_object_object_get_ex(d, "id", &id) ||
		    !json_object_is_type(id, json_type_string))
			continue;
		s = snap_file_find(f, SNAP_SEC_DEV, json_object_get_string(id));
		if (!s)
			continue;
		add_u64(d, "section_version", s->version);
		add_u64(d, "section_bytes", s->length);
	}
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

static void add_resource(const char *group, const char *cfg_key, const char *value,
			 const char *option, void *opaque)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "key", json_object_new_string(cfg_key));
	json_object_object_add(o, "value", json_object_new_string(value));
	json_object_object_add(o, "device", json_object_new_string(group));
	if (option)
		json_object_object_add(o, "option", json_object_new_string(option));
	json_object_array_add(opaque, o);
}

/*
 * Whether this user's khyve would take the file's host resources, and which they are: what a
 * restore of an unauthenticated file needs on its command line.
 */
static void trust_json(struct json_object *out, const struct snap_file *f, const char *key)
{
	struct json_object *a = json_object_new_object(), *res = json_object_new_array();
	struct config cfg, none;
	struct snap_keyref ref;
	char why[600] = "", err[512], missing[1600];
	enum snap_auth auth = SNAP_AUTH_NOKEY;

	config_init(&cfg);
	config_init(&none);
	if (key)
		config_set(&cfg, "snapshot.key", key);
	if (!snap_key_locate(&cfg, &ref, why, sizeof(why))) {
		auth = snap_authenticate(f, &ref, why, sizeof(why));
		json_object_object_add(a, "key", json_object_new_string(ref.path));
	}
	config_free(&cfg);
	json_object_object_add(a, "status", json_object_new_string(snap_auth_name(auth)));
	json_object_object_add(a, "detail", json_object_new_string(why));
	json_object_object_add(out, "authentication", a);
	config_init(&cfg);
	if (snap_meta_config(f->meta_json, &cfg, err, sizeof(err))) {
		json_object_put(res);
		config_free(&cfg);
		return;
	}
	snap_host_resources(&cfg, add_resource, res);
	json_object_object_add(out, "host_resources", res);
	if (auth != SNAP_AUTH_VALID &&
	    snap_trust_filter(&cfg, &none, false, missing, sizeof(missing)) > 0)
		json_object_object_add(out, "restore_needs", json_object_new_string(missing));
	config_free(&cfg);
}

/* The disks section: what a restore compares each disk with. */
static void disks_json(struct json_object *out, const struct snap_file *f)
{
	struct json_object *a;
	struct snap_disks sd;
	char err[256], when[64];
	int ret = snap_disks_read(f, &sd, err, sizeof(err));

	if (ret == -ENOENT)
		return;
	if (ret) {
		json_object_object_add(out, "disks_error", json_object_new_string(err));
		return;
	}
	a = json_object_new_array();
	for (unsigned i = 0; i < sd.n; i++) {
		const struct snap_disk_rec *r = &sd.rec[i];
		struct json_object *o = json_object_new_object();

		iso8601(when, sizeof(when), r->mtime_sec * 1000000000ULL + r->mtime_nsec);
		json_object_object_add(o, "device", json_object_new_string(r->id));
		json_object_object_add(o, "path", json_object_new_string(r->path));
		add_u64(o, "size", r->size);
		json_object_object_add(o, "modified", json_object_new_string(when));
		add_u64(o, "modified_ns", r->mtime_sec * 1000000000ULL + r->mtime_nsec);
		json_object_object_add(o, "copy", json_object_new_boolean(r->copy));
		json_object_array_add(a, o);
	}
	json_object_object_add(out, "disks", a);
	snap_disks_free(&sd);
}

/*
 * The chain of an incremental snapshot, tip first: each link's file, depth, identity and data,
 * and how many pages of the restored memory come from it.  NULL with @err if it does not
 * resolve.
 */
static struct json_object *chain_json(const struct snap_chain *c)
{
	struct json_object *a = json_object_new_array();
	char id[2 * SNAP_ID_BYTES + 1], when[64];
	uint64_t *newest = calloc(c->nlinks, sizeof(*newest));

	for (uint64_t p = 0; newest && p < c->npages; p++)
		if (c->owner[p] != SNAP_NO_LINK)
			newest[c->owner[p]]++;
	for (unsigned k = 0; k < c->nlinks; k++) {
		const struct snap_file *f = c->file[k];
		struct json_object *o = json_object_new_object();
		uint8_t raw[SNAP_ID_BYTES];
		uint64_t data = 0;

		for (unsigned i = 0; i < f->nextents; i++)
			data += f->extents[i].length;
		json_object_object_add(o, "file", json_object_new_string(c->name[k]));
		add_u64(o, "depth", f->has_parent ? f->parent.depth : 0);
		if (!snap_file_identity(f, raw)) {
			snap_id_hex(raw, id);
			json_object_object_add(o, "identity", json_object_new_string(id));
		}
		iso8601(when, sizeof(when), f->created_ns);
		json_object_object_add(o, "created", json_object_new_string(when));
		add_u64(o, "data_bytes", data);
		add_u64(o, "extents", f->nextents);
		if (newest)
			add_u64(o, "newest_pages", newest[k]);
		if (f->has_parent)
			json_object_object_add(o, "parent", json_object_new_string(f->parent.name));
		json_object_array_add(a, o);
	}
	free(newest);
	return a;
}

/* The human summary of snapshot info: a few lines from the full document. */
static void info_print(struct json_object *out)
{
	struct json_object *a, *v, *cfg;
	char mem[32], size[32], data[32];
	size_t ndev = 0;

	fmt_bytes(mem, sizeof(mem), (double)get_u64(out, "memory"));
	fmt_bytes(size, sizeof(size), (double)get_u64(out, "file_size"));
	printf("%s: snapshot of VM '%s', format %" PRIu64 ", written by khyve %s at %s\n",
	       get_str(out, "file", "?"), get_str(out, "name", "?"), get_u64(out, "format_version"),
	       get_str(out, "khyve_version", "?"), get_str(out, "created", "?"));
	if (json_object_object_get_ex(out, "devices", &a) &&
	    json_object_is_type(a, json_type_array))
		ndev = json_object_array_length(a);
	printf("  machine: %" PRIu64 " vCPU%s, %s of memory, %zu devices", get_u64(out, "vcpus"),
	       get_u64(out, "vcpus") == 1 ? "" : "s", mem, ndev);
	if (json_object_object_get_ex(out, "config", &cfg) &&
	    json_object_object_get_ex(cfg, "uuid", NULL))
		printf(", uuid %s", get_str(cfg, "uuid", "?"));
	printf("\n");
	if (json_object_object_get_ex(out, "guest_memory", &v)) {
		fmt_bytes(data, sizeof(data), (double)get_u64(v, "data_bytes"));
		printf("  file: %s; guest memory data %s in %" PRIu64 " extents\n", size, data,
		       get_u64(v, "extents"));
	}
	if (json_object_object_get_ex(out, "disks", &a) && json_object_is_type(a, json_type_array))
		for (size_t i = 0; i < json_object_array_length(a); i++) {
			v = json_object_array_get_idx(a, i);
			printf("  disk %s: %s%s\n", get_str(v, "device", "?"),
			       get_str(v, "path", "?"),
			       get_bool(v, "copy") ? " (a copy made with the snapshot)" : "");
		}
	if (json_object_object_get_ex(out, "chain", &a) &&
	    json_object_is_type(a, json_type_array) && json_object_array_length(a) > 1) {
		printf("  incremental: a chain of %zu links, down to its full base:\n",
		       json_object_array_length(a));
		for (size_t i = 0; i < json_object_array_length(a); i++) {
			v = json_object_array_get_idx(a, i);
			fmt_bytes(data, sizeof(data), (double)get_u64(v, "data_bytes"));
			printf("    %s: %s of data, %" PRIu64 " pages newest here\n",
			       get_str(v, "file", "?"), data, get_u64(v, "newest_pages"));
		}
	}
	if (json_object_object_get_ex(out, "chain_error", NULL))
		printf("  incremental, but its chain does not resolve: %s\n",
		       get_str(out, "chain_error", ""));
	if (json_object_object_get_ex(out, "authentication", &v))
		printf("  authentication: %s%s%s\n", get_str(v, "status", "?"),
		       *get_str(v, "detail", "") ? ": " : "", get_str(v, "detail", ""));
	if (json_object_object_get_ex(out, "restore_needs", NULL))
		printf("  a restore needs on its command line: %s\n",
		       get_str(out, "restore_needs", ""));
	printf("  (khyvectl snapshot info --json %s shows everything)\n",
	       get_str(out, "file", "FILE"));
}

static int snapshot_info(const char *path, const char *keypath)
{
	struct json_object *out, *meta;
	struct snap_file f;
	char created[64];
	int ret;

	ret = snap_open(&f, path, false);
	if (ret)
		return ret;
	out = json_object_new_object();
	json_object_object_add(out, "file", json_object_new_string(path));
	add_u64(out, "format_version", f.format_version);
	json_object_object_add(out, "khyve_version", json_object_new_string(f.khyve_version));
	iso8601(created, sizeof(created), f.created_ns);
	json_object_object_add(out, "created", json_object_new_string(created));
	/* Pass the metadata through: whatever khyve recorded, the reader sees. */
	meta = json_tokener_parse(f.meta_json);
	if (meta && json_object_is_type(meta, json_type_object)) {
		annotate_devices(meta, &f);
		json_object_object_foreach (meta, key, val)
			json_object_object_add(out, key, json_object_get(val));
	} else {
		json_object_object_add(out, "meta_error",
				       json_object_new_string("the metadata is not a JSON object"));
	}
	json_object_put(meta);
	add_u64(out, "file_size", f.file_size);
	json_object_object_add(out, "sections", sections_json(&f));
	json_object_object_add(out, "guest_memory", memory_json(&f));
	disks_json(out, &f);
	if (f.has_parent) {
		struct snap_chain c;
		char err[600];

		if (snap_chain_open(&c, &f, path, false, err, sizeof(err))) {
			json_object_object_add(out, "chain_error", json_object_new_string(err));
		} else {
			json_object_object_add(out, "chain", chain_json(&c));
			snap_chain_close(&c);
		}
	}
	trust_json(out, &f, keypath);
	if (json_mode)
		printf("%s\n",
		       json_object_to_json_string_ext(out, JSON_C_TO_STRING_PRETTY |
								   JSON_C_TO_STRING_SPACED |
								   JSON_C_TO_STRING_NOSLASHESCAPE));
	else
		info_print(out);
	json_object_put(out);
	snap_file_close(&f);
	return 0;
}

/* Open @path and its chain, every link's memory checked when @verify. */
static int chain_open(struct snap_file *f, struct snap_chain *c, const char *path, bool verify)
{
	char err[600] = "";
	int ret = snap_open(f, path, verify);

	if (ret)
		return ret;
	ret = snap_chain_open(c, f, path, false, err, sizeof(err));
	/* verify: every extent of every link, not only those a restore reads. */
	for (unsigned k = 1; !ret && verify && k < c->nlinks; k++)
		for (unsigned i = 0; !ret && i < c->file[k]->nextents; i++)
			ret = snap_file_verify_extent(c->file[k], i, c->name[k], err, sizeof(err));
	if (ret) {
		if (c->nlinks)
			snap_chain_close(c);
		snap_file_close(f);
		file_error("%s", err[0] ? err : strerror(-ret));
		return open_error_status(ret) == EXIT_USAGE && ret != -ENOENT ? EXIT_USAGE
									      : EXIT_REFUSED;
	}
	return 0;
}

static int snapshot_verify(const char *path)
{
	struct snap_chain c;
	struct snap_file f;
	uint64_t data = 0;
	unsigned nsec = 0, next = 0;
	int ret;

	ret = chain_open(&f, &c, path, true);
	if (ret)
		return ret;
	for (unsigned k = 0; k < c.nlinks; k++) {
		const struct snap_file *l = c.file[k];

		for (unsigned i = 0; i < l->nsections; i++)
			data += l->sections[i].length;
		for (unsigned i = 0; i < l->nextents; i++)
			data += l->extents[i].length;
		nsec += l->nsections;
		next += l->nextents;
	}
	if (json_mode) {
		struct json_object *o = json_object_new_object();

		json_object_object_add(o, "ok", json_object_new_boolean(1));
		json_object_object_add(o, "file", json_object_new_string(path));
		add_u64(o, "sections", nsec);
		add_u64(o, "extents", next);
		add_u64(o, "data_bytes", data);
		add_u64(o, "file_size", f.file_size);
		add_u64(o, "links", c.nlinks);
		if (c.nlinks > 1)
			json_object_object_add(o, "chain", chain_json(&c));
		printf("%s\n",
		       json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
								 JSON_C_TO_STRING_NOSLASHESCAPE));
		json_object_put(o);
	} else if (c.nlinks > 1) {
		printf("%s: ok, a chain of %u links (%u sections, %u memory extents, %.1f MiB of "
		       "data)\n",
		       path, c.nlinks, nsec, next, (double)data / (double)(1ULL << 20));
	} else {
		printf("%s: ok (%u sections, %u memory extents, %.1f MiB of data)\n", path, nsec,
		       next, (double)data / (double)(1ULL << 20));
	}
	snap_chain_close(&c);
	snap_file_close(&f);
	return 0;
}

/*
 * snapshot merge: one full snapshot from a chain.  It carries a MAC only if the tip is
 * authenticated for this user (then the user's khyve wrote what it says), made with the
 * same key; otherwise it is as unauthenticated as the tip.
 */
static int snapshot_merge(const char *path, const char *out)
{
	uint8_t key[SNAP_KEY_BYTES];
	struct snap_merge_result res;
	struct snap_keyref ref;
	struct snap_chain c;
	struct snap_file f;
	struct config cfg;
	char err[600] = "", why[600] = "";
	bool keyed = false;
	int ret;

	ret = chain_open(&f, &c, path, true);
	if (ret)
		return ret;
	config_init(&cfg);
	if (!snap_key_locate(&cfg, &ref, why, sizeof(why)) &&
	    snap_authenticate(&f, &ref, why, sizeof(why)) == SNAP_AUTH_VALID &&
	    !snap_key_load(&ref, false, key, why, sizeof(why)))
		keyed = true;
	config_free(&cfg);
	ret = snap_chain_merge(&c, out, keyed ? key : NULL, &res, err, sizeof(err));
	memset(key, 0, sizeof(key));
	if (ret) {
		file_error("%s", err[0] ? err : strerror(-ret));
	} else if (json_mode) {
		struct json_object *o = json_object_new_object();

		json_object_object_add(o, "ok", json_object_new_boolean(1));
		json_object_object_add(o, "file", json_object_new_string(out));
		add_u64(o, "links", c.nlinks);
		add_u64(o, "bytes", res.bytes);
		add_u64(o, "mem_pages", res.mem_pages);
		add_u64(o, "zero_pages", res.zero_pages);
		json_object_object_add(o, "authenticated", json_object_new_boolean(keyed));
		printf("%s\n",
		       json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
								 JSON_C_TO_STRING_NOSLASHESCAPE));
		json_object_put(o);
	} else {
		printf("%s: %u links merged into %s (%.1f MiB of data)%s\n", path, c.nlinks, out,
		       (double)res.bytes / (double)(1ULL << 20),
		       keyed ? "" : "; not authenticated (the tip is not)");
	}
	snap_chain_close(&c);
	snap_file_close(&f);
	return ret ? EXIT_REFUSED : 0;
}

static int snapshot_cmd(int argc, char **argv)
{
	const char *key = NULL, *file = NULL, *out = NULL;
	bool info, merge;

	if (argc < 2)
		return usage_error("snapshot: expected 'info FILE', 'verify FILE' or 'merge "
				   "CHAIN_TIP OUT'");
	if (strcmp(argv[1], "info") && strcmp(argv[1], "verify") && strcmp(argv[1], "merge"))
		return usage_error(
			"snapshot: unknown command '%s' (expected info, verify or merge)", argv[1]);
	info = !strcmp(argv[1], "info");
	merge = !strcmp(argv[1], "merge");
	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			continue; /* json_mode, set in main */
		if (info && !strncmp(argv[i], "--key=", 6)) {
			key = argv[i] + 6;
			continue;
		}
		if (argv[i][0] == '-' && argv[i][1])
			return usage_error("snapshot %s: unknown option '%s'", argv[1], argv[i]);
		if (merge && file && !out) {
			out = argv[i];
			continue;
		}
		if (file)
			return usage_error(merge ? "snapshot merge: expected CHAIN_TIP and OUT"
						 : "snapshot %s: expected exactly one FILE",
					   argv[1]);
		file = argv[i];
	}
	if (merge)
		return file && out ? snapshot_merge(file, out)
				   : usage_error("snapshot merge: expected CHAIN_TIP and OUT");
	if (!file)
		return usage_error("snapshot %s: expected exactly one FILE", argv[1]);
	return info ? snapshot_info(file, key) : snapshot_verify(file);
}

/* ---- command line ---- */

static int set_action(struct opts *o, enum action a, const char *file)
{
	if (o->action != ACT_NONE)
		return usage_error(
			"give only one action (--checkpoint, --suspend, --pause, "
			"--resume, --status, --screenshot, --poweroff, --force-poweroff, "
			"--force-reset, --destroy, --inject-nmi, --get-stats, --migrate, --list)");
	if (file && !*file)
		return usage_error("--%s needs a FILE", request_name(a));
	o->action = a;
	o->file = file;
	return 0;
}

static int parse_args(int argc, char **argv, struct opts *o)
{
	static const struct option longopts[] = {
		{ "vm", required_argument, NULL, 'v' },
		{ "socket", required_argument, NULL, 's' },
		{ "checkpoint", required_argument, NULL, 'c' },
		{ "suspend", required_argument, NULL, 'S' },
		{ "pause", no_argument, NULL, 'p' },
		{ "resume", no_argument, NULL, 'r' },
		{ "status", no_argument, NULL, 't' },
		{ "screenshot", required_argument, NULL, 'P' },
		{ "poweroff", no_argument, NULL, 'O' },
		{ "force-poweroff", no_argument, NULL, 'F' },
		{ "force-reset", no_argument, NULL, 'R' },
		{ "destroy", no_argument, NULL, 'D' },
		{ "list", no_argument, NULL, 'l' },
		{ "inject-nmi", no_argument, NULL, 'N' },
		{ "get-stats", no_argument, NULL, 'G' },
		{ "migrate", required_argument, NULL, 'g' },
		{ "vcpu", required_argument, NULL, 'C' },
		{ "dir", required_argument, NULL, 'd' },
		{ "json", no_argument, NULL, 'j' },
		{ "live", no_argument, NULL, 'L' },
		{ "max-rate", required_argument, NULL, 'M' },
		{ "max-downtime", required_argument, NULL, 'W' },
		{ "auto-converge", required_argument, NULL, 'a' },
		{ "throttle-initial", required_argument, NULL, 'T' },
		{ "throttle-increment", required_argument, NULL, 'i' },
		{ "incremental", no_argument, NULL, 'I' },
		{ "parent", required_argument, NULL, 'A' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int ch, ret = 0;

	opterr = 0;
	while (!ret && (ch = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'v':
			o->vm = optarg;
			break;
		case 's':
			o->socket = optarg;
			break;
		case 'c':
			ret = set_action(o, ACT_CHECKPOINT, optarg);
			break;
		case 'S':
			ret = set_action(o, ACT_SUSPEND, optarg);
			break;
		case 'p':
			ret = set_action(o, ACT_PAUSE, NULL);
			break;
		case 'r':
			ret = set_action(o, ACT_RESUME, NULL);
			break;
		case 't':
			ret = set_action(o, ACT_STATUS, NULL);
			break;
		case 'P':
			ret = set_action(o, ACT_SCREENSHOT, optarg);
			break;
		case 'O':
			ret = set_action(o, ACT_POWEROFF, NULL);
			break;
		case 'F':
			ret = set_action(o, ACT_FORCE_POWEROFF, NULL);
			break;
		case 'R':
			ret = set_action(o, ACT_FORCE_RESET, NULL);
			break;
		case 'D':
			ret = set_action(o, ACT_DESTROY, NULL);
			break;
		case 'l':
			ret = set_action(o, ACT_LIST, NULL);
			break;
		case 'N':
			ret = set_action(o, ACT_INJECT_NMI, NULL);
			break;
		case 'G':
			ret = set_action(o, ACT_GET_STATS, NULL);
			break;
		case 'g':
			ret = set_action(o, ACT_MIGRATE, NULL);
			if (!ret && !*optarg)
				ret = usage_error("--migrate needs ADDR:PORT");
			o->addr = optarg;
			break;
		case 'C': {
			char *end;

			errno = 0;
			o->vcpu = strtol(optarg, &end, 10);
			if (errno || end == optarg || *end || o->vcpu < 0 || o->vcpu > 1023)
				ret = usage_error("--vcpu=%s: expected a vCPU number (0, 1, ...)",
						  optarg);
			break;
		}
		case 'd':
			o->dir = optarg;
			break;
		case 'j':
			o->json = true;
			break;
		case 'L':
			o->live = true;
			break;
		case 'I':
			o->incremental = true;
			break;
		case 'A':
			o->parent = optarg;
			break;
		case 'M':
			if (parse_size(optarg, &o->max_rate) || o->max_rate < (1 << 20) ||
			    o->max_rate > INT64_MAX)
				ret = usage_error("--max-rate=%s: expected bytes per second of at "
						  "least 1M, such as 100M",
						  optarg);
			break;
		case 'W': {
			char *end;

			errno = 0;
			o->max_downtime = strtol(optarg, &end, 10);
			if (errno || end == optarg || *end || o->max_downtime < 1 ||
			    o->max_downtime > 600000)
				ret = usage_error("--max-downtime=%s: expected milliseconds from 1 "
						  "to 600000, such as 20",
						  optarg);
			break;
		}
		case 'a':
			if (!strcmp(optarg, "on"))
				o->autoconverge = 1;
			else if (!strcmp(optarg, "off"))
				o->autoconverge = 0;
			else
				ret = usage_error("--auto-converge=%s: expected on or off", optarg);
			break;
		case 'T':
		case 'i': {
			long *pct = ch == 'T' ? &o->throttle_initial : &o->throttle_increment;
			char *end;

			errno = 0;
			*pct = strtol(optarg, &end, 10);
			if (errno || end == optarg || *end || *pct < 1 || *pct > 99)
				ret = usage_error(
					"--throttle-%s=%s: expected a percentage from 1 to "
					"99",
					ch == 'T' ? "initial" : "increment", optarg);
			break;
		}
		case 'q':
			o->quiet = true;
			break;
		case 'h':
			usage(stdout);
			return -1;
		case 'V':
			version_print(stdout, "khyvectl");
			return -1;
		case ':':
			return usage_error("%s needs a value", argv[optind - 1]);
		default:
			if (optopt)
				return usage_error("unknown option '-%c'", optopt);
			return usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (ret)
		return ret;
	if (optind < argc)
		return usage_error("unexpected argument '%s'", argv[optind]);
	if (o->action == ACT_NONE)
		return usage_error("nothing to do: give an action such as --status, --list, "
				   "--checkpoint=FILE or --poweroff");
	if (o->live && o->action != ACT_CHECKPOINT && o->action != ACT_MIGRATE)
		return usage_error("--live goes with --checkpoint=FILE or --migrate=ADDR:PORT");
	if (o->max_rate && o->action != ACT_CHECKPOINT && o->action != ACT_SUSPEND)
		return usage_error("--max-rate=SIZE goes with --checkpoint=FILE or --suspend=FILE");
	if (o->max_downtime &&
	    (!o->live || (o->action != ACT_MIGRATE && o->action != ACT_CHECKPOINT)))
		return usage_error("--max-downtime=MS goes with --migrate=ADDR:PORT --live or "
				   "--checkpoint=FILE --live");
	if ((o->autoconverge >= 0 || o->throttle_initial || o->throttle_increment) &&
	    (o->action != ACT_MIGRATE || !o->live))
		return usage_error("--auto-converge and --throttle-* go with --migrate=ADDR:PORT "
				   "--live");
	if (o->autoconverge == 0 && (o->throttle_initial || o->throttle_increment))
		return usage_error("--throttle-* need --auto-converge=on");
	if (o->max_rate && o->live)
		return usage_error("--max-rate=SIZE is not applied to a --live checkpoint");
	if ((o->incremental || o->parent) && o->action != ACT_CHECKPOINT &&
	    o->action != ACT_SUSPEND)
		return usage_error("--incremental and --parent=PREV go with --checkpoint=FILE or "
				   "--suspend=FILE");
	if ((o->incremental || o->parent) && o->live)
		return usage_error("--incremental and --parent=PREV do not go with --live");
	if (o->vcpu >= 0 && o->action != ACT_INJECT_NMI)
		return usage_error("--vcpu=N goes with --inject-nmi");
	if (o->action == ACT_LIST)
		return o->vm || o->socket
			       ? usage_error("--list shows every VM: no --vm or --socket")
			       : 0;
	if (o->dir)
		return usage_error("--dir goes with --list only");
	if (!o->vm && !o->socket)
		return usage_error("which VM? Give --vm=NAME (or --socket=PATH)");
	return 0;
}

int main(int argc, char **argv)
{
	struct opts o = { .action = ACT_NONE, .vcpu = -1, .autoconverge = -1 };
	int ret;

	signal(SIGPIPE, SIG_IGN);
	for (int i = 1; i < argc && strcmp(argv[i], "--"); i++)
		if (!strcmp(argv[i], "--json"))
			json_mode = true;
	if (argc > 1 && !strcmp(argv[1], "snapshot"))
		return snapshot_cmd(argc - 1, argv + 1);
	ret = parse_args(argc, argv, &o);
	if (ret)
		return ret < 0 ? 0 : ret;
	return o.action == ACT_LIST ? list_vms(&o) : control(&o);
}
