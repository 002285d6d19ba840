// SPDX-License-Identifier: BSD-2-Clause
/* Where a restored VM's host resources come from: the host key, the MAC check, the filter. */
#include "snap/trust.h"

#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <libgen.h>
#include <pthread.h>
#include <pwd.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"

/* ---- which keys name host objects ---- */

/* About this run of khyve, never taken from a file however trusted. */
static const char *const session_keys[] = {
	"config.*",
	"debug.*",
	"snapshot.trust",
	"snapshot.key",
	"snapshot.verify",
	"snapshot.time",
	"snapshot.prefetch",
	"snapshot.disk_changed",
	"snapshot.direct",
	"sandbox",
	"sandbox.*",
	"user",
	"mmio.coalesce",
	"log.*",
	"gdb.*",
};

/*
 * Host policy: where the control socket goes, what was booted, how disks are saved.  From an
 * unauthenticated file these are dropped and the defaults (or the command line) apply.
 */
static const char *const policy_keys[] = { "ctl.*", "boot.*", "snapshot.*" };

/*
 * Device options that name host objects, by the last part of their key (pci.0.3.0.path,
 * lpc.com1.path).  A device option that names a host file, socket, interface, port or secret
 * must use one of these names, or be added here: that is what keeps a snapshot file from
 * choosing it.  "primary" options are the ones a device cannot run without; a restore of an
 * unauthenticated file refuses to start until the command line names one for each device.
 */
static const struct {
	const char *pattern;
	bool primary;
} host_options[] = {
	{ "path", true },      { "backend", true },  { "tap", true },
	{ "socket", true },    { "unix", true },     { "tcp", true },
	{ "file", true },      { "dir", true },	     { "listen", true },
	{ "fd", true },	       { "hostfwd", false }, { "hostfwd[0-9]*", false },
	{ "password", false }, { "bootvars", true }, /* lpc.bootvars: the flash file */
	{ "rfb", true },       { "romfile", false }, { "font", false },
	{ "rom", false },
};

static bool match_any(const char *const *pats, size_t n, const char *key)
{
	for (size_t i = 0; i < n; i++)
		if (!fnmatch(pats[i], key, 0))
			return true;
	return false;
}

static bool is_policy(const char *key)
{
	return match_any(policy_keys, sizeof(policy_keys) / sizeof(policy_keys[0]), key);
}

/* -1 if the key is not a device host option, else whether it is a primary one. */
static int host_option(const char *key)
{
	const char *last = strrchr(key, '.');

	if (!last)
		return -1;
	for (size_t i = 0; i < sizeof(host_options) / sizeof(host_options[0]); i++)
		if (!fnmatch(host_options[i].pattern, last + 1, 0))
			return host_options[i].primary;
	return -1;
}

enum snap_key_class snap_key_class(const char *key)
{
	if (match_any(session_keys, sizeof(session_keys) / sizeof(session_keys[0]), key))
		return SNAP_CFG_SESSION;
	/* The VM name names the control socket (CTL_DEFAULT_DIR/NAME.sock). */
	if (!strcmp(key, "name") || is_policy(key) || host_option(key) >= 0)
		return SNAP_CFG_HOST;
	return SNAP_CFG_GUEST;
}

void snap_sanitize(const char *s, char *out, size_t len)
{
	size_t o = 0;

	if (!len)
		return;
	for (; *s && o + 5 < len; s++) {
		unsigned char c = (unsigned char)*s;

		if (c >= 0x20 && c < 0x7f && c != '\\') {
			out[o++] = (char)c;
		} else {
			snprintf(out + o, len - o, "\\x%02x", c);
			o += 4;
		}
	}
	out[o] = '\0';
}

/* ---- the host key ---- */

int snap_key_locate(const struct config *cfg, struct snap_keyref *ref, char *err, size_t errlen)
{
	const char *user = config_get(cfg, "user"), *path = config_get(cfg, "snapshot.key");
	const char *home = NULL, *state = NULL;
	struct passwd pw, *res = NULL;
	char buf[4096];
	int n;

	ref->uid = geteuid();
	ref->dflt = !(path && *path);
	if (user) {
		/* -o user=NAME: khyve runs as NAME, so the key is NAME's, whoever started it. */
		if (getpwnam_r(user, &pw, buf, sizeof(buf), &res) || !res) {
			snprintf(err, errlen, "user=%s: no such user", user);
			return -ENOENT;
		}
		ref->uid = pw.pw_uid;
		home = pw.pw_dir;
	} else if (ref->uid != 0) {
		state = getenv("XDG_STATE_HOME");
		home = getenv("HOME");
		if (!home || home[0] != '/') {
			home = NULL;
			if (!getpwuid_r(ref->uid, &pw, buf, sizeof(buf), &res) && res)
				home = pw.pw_dir;
		}
	}
	if (path && *path)
		n = snprintf(ref->path, sizeof(ref->path), "%s", path);
	else if (ref->uid == 0)
		n = snprintf(ref->path, sizeof(ref->path), "%s/%s", SNAP_KEY_DIR_ROOT,
			     SNAP_KEY_NAME);
	else if (state && state[0] == '/')
		n = snprintf(ref->path, sizeof(ref->path), "%s/khyve/%s", state, SNAP_KEY_NAME);
	else if (home && home[0] == '/')
		n = snprintf(ref->path, sizeof(ref->path), "%s/.local/state/khyve/%s", home,
			     SNAP_KEY_NAME);
	else {
		snprintf(err, errlen,
			 "no home directory to keep the snapshot key in; set -o snapshot.key=PATH");
		return -ENOENT;
	}
	if (n < 0 || (size_t)n >= sizeof(ref->path)) {
		snprintf(err, errlen, "snapshot key path is too long");
		return -ENAMETOOLONG;
	}
	return 0;
}

static struct {
	pthread_mutex_t lock;
	bool valid;
	uid_t uid;
	char path[4096];
	uint8_t key[SNAP_KEY_BYTES];
} key_cache = { .lock = PTHREAD_MUTEX_INITIALIZER };

/* mkdir -p of @dir with private new directories. */
static int make_private_dirs(const char *dir)
{
	char d[4096];

	snprintf(d, sizeof(d), "%s", dir);
	for (char *p = d + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(d, 0700) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(d, 0700) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/* The key's directory: a directory, owned by the user or root, writable by nobody else. */
static int open_key_dir(const char *dir, uid_t uid, char *err, size_t errlen)
{
	struct stat st;
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int ret;

	if (fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "snapshot key directory %s: %s", dir, strerror(errno));
		return ret;
	}
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		snprintf(err, errlen, "snapshot key directory %s: %s", dir, strerror(errno));
		close(fd);
		return ret;
	}
	if (st.st_uid != uid && st.st_uid != 0) {
		snprintf(err, errlen,
			 "snapshot key directory %s is owned by uid %u, not by uid %u or root: "
			 "another user could replace the key",
			 dir, (unsigned)st.st_uid, (unsigned)uid);
		close(fd);
		return -EPERM;
	}
	if (st.st_mode & 022) {
		snprintf(err, errlen,
			 "snapshot key directory %s is writable by others (mode %04o): another "
			 "user could replace the key; use a private directory",
			 dir, (unsigned)(st.st_mode & 07777));
		close(fd);
		return -EPERM;
	}
	return fd;
}

static int read_key(int dfd, const char *base, const char *path, uid_t uid,
		    uint8_t key[SNAP_KEY_BYTES], char *err, size_t errlen)
{
	int fd = openat(dfd, base, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	struct stat st;
	ssize_t n;
	int ret;

	if (fd < 0) {
		ret = -errno;
		if (ret != -ENOENT)
			snprintf(err, errlen, "snapshot key %s: %s", path, strerror(errno));
		else
			snprintf(err, errlen, "there is no snapshot key at %s", path);
		return ret;
	}
	ret = fstat(fd, &st) < 0 ? -errno : 0;
	if (ret) {
		snprintf(err, errlen, "snapshot key %s: %s", path, strerror(-ret));
	} else if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "snapshot key %s is not a regular file", path);
		ret = -EINVAL;
	} else if (st.st_uid != uid) {
		snprintf(err, errlen, "snapshot key %s is owned by uid %u, not %u", path,
			 (unsigned)st.st_uid, (unsigned)uid);
		ret = -EPERM;
	} else if (st.st_mode & 077) {
		snprintf(err, errlen,
			 "snapshot key %s can be read by others (mode %04o); it must be 0600", path,
			 (unsigned)(st.st_mode & 07777));
		ret = -EPERM;
	} else if (st.st_size != SNAP_KEY_BYTES) {
		snprintf(err, errlen, "snapshot key %s is %lld bytes, not %d", path,
			 (long long)st.st_size, SNAP_KEY_BYTES);
		ret = -EINVAL;
	}
	if (!ret) {
		n = pread(fd, key, SNAP_KEY_BYTES, 0);
		if (n != SNAP_KEY_BYTES) {
			snprintf(err, errlen, "snapshot key %s: short read", path);
			ret = -EIO;
		}
	}
	close(fd);
	return ret;
}

/*
 * A new key, atomically: written to a private temporary name, fsynced, then linked to its
 * name, which fails if another khyve created one meanwhile (then that one is used).
 */
static int create_key(int dfd, const char *base, const char *path, uid_t uid,
		      uint8_t key[SNAP_KEY_BYTES], char *err, size_t errlen)
{
	uint8_t fresh[SNAP_KEY_BYTES];
	char tmp[4200];
	int fd = -1, ret;

	if (geteuid() != uid) {
		snprintf(err, errlen, "cannot create uid %u's snapshot key %s as uid %u",
			 (unsigned)uid, path, (unsigned)geteuid());
		return -EPERM;
	}
	for (int i = 0; i < 16 && fd < 0; i++) {
		snprintf(tmp, sizeof(tmp), ".%s.%08x", base, randombytes_random());
		fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0 && errno != EEXIST)
			break;
	}
	if (fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "cannot create snapshot key %s: %s", path, strerror(errno));
		return ret;
	}
	randombytes_buf(fresh, sizeof(fresh));
	ret = write(fd, fresh, sizeof(fresh)) == (ssize_t)sizeof(fresh) ? 0 : -EIO;
	if (!ret && fsync(fd) < 0)
		ret = -errno;
	close(fd);
	if (!ret && linkat(dfd, tmp, dfd, base, 0) < 0) {
		ret = -errno;
		/* No hard links here: a rename that never replaces does the same. */
		if (ret == -EPERM || ret == -EOPNOTSUPP)
			ret = renameat2(dfd, tmp, dfd, base, RENAME_NOREPLACE) < 0 ? -errno : 0;
	}
	unlinkat(dfd, tmp, 0);
	sodium_memzero(fresh, sizeof(fresh));
	if (ret && ret != -EEXIST) {
		snprintf(err, errlen, "cannot create snapshot key %s: %s", path, strerror(-ret));
		return ret;
	}
	fsync(dfd);
	/* Ours or the one another khyve made first: read back what is there. */
	return read_key(dfd, base, path, uid, key, err, errlen);
}

int snap_key_load(const struct snap_keyref *ref, bool create, uint8_t key[SNAP_KEY_BYTES],
		  char *err, size_t errlen)
{
	char dir[4096], base[4096], tmp[4096];
	int dfd, ret;

	if (sodium_init() < 0) {
		snprintf(err, errlen, "libsodium cannot be initialised");
		return -EIO;
	}
	pthread_mutex_lock(&key_cache.lock);
	if (key_cache.valid && key_cache.uid == ref->uid && !strcmp(key_cache.path, ref->path)) {
		memcpy(key, key_cache.key, SNAP_KEY_BYTES);
		pthread_mutex_unlock(&key_cache.lock);
		return 0;
	}
	snprintf(tmp, sizeof(tmp), "%s", ref->path);
	snprintf(dir, sizeof(dir), "%s", dirname(tmp));
	snprintf(tmp, sizeof(tmp), "%s", ref->path);
	snprintf(base, sizeof(base), "%s", basename(tmp));
	/* The default place is made on first use; a configured one must exist already. */
	ret = create && ref->dflt ? make_private_dirs(dir) : 0;
	if (ret) {
		snprintf(err, errlen, "cannot create %s for the snapshot key: %s", dir,
			 strerror(-ret));
		goto out;
	}
	dfd = open_key_dir(dir, ref->uid, err, errlen);
	if (dfd < 0) {
		ret = dfd;
		goto out;
	}
	ret = read_key(dfd, base, ref->path, ref->uid, key, err, errlen);
	if (ret == -ENOENT && create)
		ret = create_key(dfd, base, ref->path, ref->uid, key, err, errlen);
	close(dfd);
	if (!ret) {
		if (errlen)
			err[0] = '\0';
		key_cache.valid = true;
		key_cache.uid = ref->uid;
		snprintf(key_cache.path, sizeof(key_cache.path), "%s", ref->path);
		memcpy(key_cache.key, key, SNAP_KEY_BYTES);
		sodium_mlock(key_cache.key, sizeof(key_cache.key));
	}
out:
	pthread_mutex_unlock(&key_cache.lock);
	return ret;
}

/* ---- trusting a file ---- */

int snap_trust_mode(const struct config *cfg, enum snap_trust *mode, char *err, size_t errlen)
{
	const char *v = config_get_default(cfg, "snapshot.trust", "auto");

	if (!strcmp(v, "auto"))
		*mode = SNAP_TRUST_AUTO;
	else if (!strcmp(v, "file"))
		*mode = SNAP_TRUST_FILE;
	else if (!strcmp(v, "none"))
		*mode = SNAP_TRUST_NONE;
	else {
		snprintf(err, errlen, "snapshot.trust=%s: expected auto, file or none", v);
		return -EINVAL;
	}
	return 0;
}

const char *snap_auth_name(enum snap_auth a)
{
	switch (a) {
	case SNAP_AUTH_VALID:
		return "valid";
	case SNAP_AUTH_INVALID:
		return "invalid";
	case SNAP_AUTH_NOKEY:
		return "no key";
	case SNAP_AUTH_NONE:
	default:
		return "none";
	}
}

enum snap_auth snap_authenticate(const struct snap_file *f, const struct snap_keyref *ref,
				 char *why, size_t whylen)
{
	uint8_t key[SNAP_KEY_BYTES];
	char e[512] = "";
	int ret;

	if (f->auth_scheme == SNAP_AUTH_SCHEME_NONE) {
		snprintf(why, whylen, "it carries no MAC");
		return SNAP_AUTH_NONE;
	}
	ret = snap_key_load(ref, false, key, e, sizeof(e));
	if (ret) {
		snprintf(why, whylen, "%s", e);
		return SNAP_AUTH_NOKEY;
	}
	ret = snap_file_check_mac(f, key);
	sodium_memzero(key, sizeof(key));
	if (ret) {
		snprintf(why, whylen,
			 "its MAC does not match the snapshot key %s: it was written on another "
			 "host or by another user, or altered since",
			 ref->path);
		return SNAP_AUTH_INVALID;
	}
	snprintf(why, whylen, "authenticated with %s", ref->path);
	return SNAP_AUTH_VALID;
}

/* ---- host resources of a configuration ---- */

/* The device (or key) a host key belongs to: "pci.0.3.0", "lpc.com1", "name". */
static void key_group(const char *key, char *group, size_t len)
{
	const char *last = strrchr(key, '.');

	if (!last || is_policy(key) || snap_key_class(key) != SNAP_CFG_HOST || host_option(key) < 0)
		snprintf(group, len, "%s", key);
	else
		snprintf(group, len, "%.*s", (int)(last - key), key);
}

/* A word made only of [a-z0-9_-], else @dflt: hostile text never reaches a suggested option. */
static const char *plain_word(const char *s, const char *dflt)
{
	if (!s || !*s || strlen(s) > 32 ||
	    strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_-") != strlen(s))
		return dflt;
	return s;
}

/* The command-line option that gives @key (a primary host key of @group) its resource. */
static void host_option_text(const struct config *saved, const char *group, const char *key,
			     const char *value, char *out, size_t len)
{
	const char *opt = strrchr(key, '.') ? strrchr(key, '.') + 1 : key;
	unsigned b, s, f;
	int n = 0;

	if (!strcmp(key, "name")) {
		snprintf(out, len, "VMNAME");
	} else if (sscanf(group, "lpc.com%u%n", &s, &n) == 1 && !group[n] && !strcmp(opt, "path")) {
		const char *kind = !strcmp(value, "stdio") || !strcmp(value, "off") ? value
				   : !strncmp(value, "file:", 5)		    ? "file:PATH"
				   : !strncmp(value, "unix:", 5)		    ? "unix:PATH"
										    : "BACKEND";

		snprintf(out, len, "-l com%u,%s", s, kind);
	} else if (sscanf(group, "pci.%u.%u.%u%n", &b, &s, &f, &n) == 3 && !group[n]) {
		char slot[32], dkey[160];
		const char *emul, *arg;

		snprintf(dkey, sizeof(dkey), "%s.device", group);
		emul = plain_word(config_get(saved, dkey), "EMULATION");
		if (!b && !f)
			snprintf(slot, sizeof(slot), "%u", s);
		else if (!b)
			snprintf(slot, sizeof(slot), "%u:%u", s, f);
		else
			snprintf(slot, sizeof(slot), "%u:%u:%u", b, s, f);
		if (!strcmp(opt, "path"))
			arg = "PATH";
		else if (!strcmp(opt, "backend") && !strcmp(value, "slirp"))
			arg = "slirp";
		else if (!strcmp(opt, "tap") ||
			 (!strcmp(opt, "backend") && !strncmp(value, "tap", 3)))
			arg = "tap=NAME";
		else
			arg = NULL;
		if (arg)
			snprintf(out, len, "-s %s,%s,%s", slot, emul, arg);
		else
			snprintf(out, len, "-s %s,%s,%s=VALUE", slot, emul, plain_word(opt, "KEY"));
	} else {
		char k[128];

		snap_sanitize(key, k, sizeof(k));
		snprintf(out, len, "-o %s=VALUE", k);
	}
}

struct res_walk {
	const struct config *saved;
	void (*fn)(const char *group, const char *key, const char *value, const char *option,
		   void *opaque);
	void *opaque;
	char last_group[128];
};

static void res_key(const char *key, const char *value, void *opaque)
{
	struct res_walk *w = opaque;
	char group[128], option[192];
	bool required;

	if (snap_key_class(key) != SNAP_CFG_HOST)
		return;
	key_group(key, group, sizeof(group));
	/* One option per device, from its first primary key; policy keys need none. */
	required = !strcmp(key, "name") || (!is_policy(key) && host_option(key) == 1);
	if (required && strcmp(group, w->last_group)) {
		host_option_text(w->saved, group, key, value, option, sizeof(option));
		snprintf(w->last_group, sizeof(w->last_group), "%s", group);
		w->fn(group, key, value, option, w->opaque);
	} else {
		w->fn(group, key, value, NULL, w->opaque);
	}
}

void snap_host_resources(const struct config *saved,
			 void (*fn)(const char *group, const char *key, const char *value,
				    const char *option, void *opaque),
			 void *opaque)
{
	struct res_walk w = { .saved = saved, .fn = fn, .opaque = opaque };

	config_foreach(saved, "", res_key, &w);
}

/* Does the command line give any host key of @group? */
struct named {
	const char *group;
	bool found;
};

static void named_key(const char *key, const char *value, void *opaque)
{
	struct named *n = opaque;
	char group[128];

	if (snap_key_class(key) != SNAP_CFG_HOST)
		return;
	key_group(key, group, sizeof(group));
	if (!strcmp(group, n->group))
		n->found = true;
}

struct filter {
	const struct config *cmdline;
	bool trusted;
	struct config drop;
	/* Options to add, by kind so that the message reads as a command line does. */
	char pci[1024], lpc[256], other[512], name[16];
	int missing;
	int ret;
};

static void append(char *buf, size_t len, const char *s)
{
	size_t n = strlen(buf);

	if (*s && n < len)
		snprintf(buf + n, len - n, "%s%s", n ? " " : "", s);
}

static void filter_resource(const char *group, const char *key, const char *value,
			    const char *option, void *opaque)
{
	struct filter *f = opaque;
	struct named n = { .group = group };

	if (f->trusted)
		return;
	if (!f->ret)
		f->ret = config_set(&f->drop, key, value);
	if (!option)
		return;
	config_foreach(f->cmdline, "", named_key, &n);
	if (n.found)
		return;
	f->missing++;
	if (!strncmp(option, "-s ", 3))
		append(f->pci, sizeof(f->pci), option);
	else if (!strncmp(option, "-l ", 3))
		append(f->lpc, sizeof(f->lpc), option);
	else if (!strcmp(option, "VMNAME"))
		append(f->name, sizeof(f->name), option);
	else
		append(f->other, sizeof(f->other), option);
}

static void filter_session(const char *key, const char *value, void *opaque)
{
	struct filter *f = opaque;

	if (snap_key_class(key) == SNAP_CFG_SESSION && !f->ret)
		f->ret = config_set(&f->drop, key, value);
}

static void unset_key(const char *key, const char *value, void *opaque)
{
	config_unset(opaque, key);
}

int snap_trust_filter(struct config *saved, const struct config *cmdline, bool trusted,
		      char *missing, size_t len)
{
	struct filter f = { .cmdline = cmdline, .trusted = trusted };

	config_init(&f.drop);
	config_foreach(saved, "", filter_session, &f);
	snap_host_resources(saved, filter_resource, &f);
	if (f.ret) {
		config_free(&f.drop);
		return f.ret;
	}
	config_foreach(&f.drop, "", unset_key, saved);
	config_free(&f.drop);
	if (len) {
		missing[0] = '\0';
		append(missing, len, f.pci);
		append(missing, len, f.lpc);
		append(missing, len, f.other);
		append(missing, len, f.name);
	}
	return f.missing;
}
