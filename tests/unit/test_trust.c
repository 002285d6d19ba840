// SPDX-License-Identifier: BSD-2-Clause
/*
 * Host resources never come from an unauthenticated snapshot: which keys name host objects,
 * what a restore keeps of a file's configuration, the host key and the MAC.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pwd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "snap/format.h"
#include "snap/trust.h"
#include "snapcraft.h"
#include "snapwrite.h"
#include "sstream.h"

#define MEM (16 * 4096ULL)

static char dir[64], path[128];

static int setup(void **state)
{
	strcpy(dir, "/tmp/khyve-trust-XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/vm.snap", dir);
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd);
}

static void test_key_classes(void **state)
{
	static const char *const guest[] = {
		"cpus",		 "memory.size",	  "pci.0.3.0.device", "pci.0.3.0.ro",
		"pci.0.4.0.mac", "rtc.localtime", "x86.strictmsr",    "pci.0.3.0.iothreads"
	};
	static const char *const host[] = { "name",
					    "ctl.socket",
					    "boot.kernel",
					    "snapshot.disks",
					    "lpc.com1.path",
					    "pci.0.3.0.path",
					    "pci.0.4.0.backend",
					    "pci.0.4.0.tap",
					    "pci.0.4.0.hostfwd",
					    "pci.0.4.0.hostfwd3",
					    "memory.path",
					    "pci.0.5.0.socket",
					    "pci.0.6.0.port.1.path",
					    "pci.0.6.0.port.0.romfile",
					    "lpc.bootvars",
					    "pci.0.7.0.tcp",
					    "pci.0.7.0.unix",
					    "pci.0.7.0.password" };
	static const char *const session[] = { "snapshot.disk_changed",
					       "snapshot.trust",
					       "snapshot.key",
					       "snapshot.verify",
					       "snapshot.time",
					       "config.dump",
					       "debug.timing",
					       "sandbox",
					       "user",
					       "log.level",
					       "log.file",
					       "gdb.port",
					       "gdb.address",
					       "gdb.wait" };

	for (size_t i = 0; i < sizeof(guest) / sizeof(guest[0]); i++)
		assert_int_equal(snap_key_class(guest[i]), SNAP_CFG_GUEST);
	for (size_t i = 0; i < sizeof(host) / sizeof(host[0]); i++)
		assert_int_equal(snap_key_class(host[i]), SNAP_CFG_HOST);
	for (size_t i = 0; i < sizeof(session) / sizeof(session[0]); i++)
		assert_int_equal(snap_key_class(session[i]), SNAP_CFG_SESSION);
}

/* What a crafted file says: every host resource points somewhere it should not. */
static void hostile_config(struct config *c)
{
	config_init(c);
	config_set(c, "name", "vm0");
	config_set(c, "cpus", "2");
	config_set(c, "ctl.socket", "/etc/evil.sock");
	config_set(c, "snapshot.trust", "file");
	config_set(c, "snapshot.key", "/tmp/attacker.key");
	config_set(c, "sandbox", "off");
	config_set(c, "snapshot.disks", "clone");
	config_set(c, "lpc.com1.path", "file:/etc/cron.d/x");
	config_set(c, "lpc.com2.path", "unix:/run/evil");
	config_set(c, "pci.0.3.0.device", "virtio-blk");
	config_set(c, "pci.0.3.0.path", "/dev/sda");
	config_set(c, "pci.0.3.0.ro", "true");
	config_set(c, "pci.0.4.0.device", "virtio-net");
	config_set(c, "pci.0.4.0.backend", "slirp");
	config_set(c, "pci.0.4.0.hostfwd", "tcp:22-:22");
	config_set(c, "pci.0.5.0.device", "virtio-net");
	config_set(c, "pci.0.5.0.backend", "tap0");
	config_set(c, "pci.1.6.2.device", "virtio-blk\033[2J");
	config_set(c, "pci.1.6.2.path", "/x");
}

static void test_filter_untrusted(void **state)
{
	struct config saved, cmd;
	char missing[1024];

	hostile_config(&saved);
	config_init(&cmd);
	assert_int_equal(snap_trust_filter(&saved, &cmd, false, missing, sizeof(missing)), 7);
	/* Hostile text never reaches the suggested options (the escape sequence above). */
	assert_string_equal(missing, "-s 3,virtio-blk,PATH -s 4,virtio-net,slirp "
				     "-s 5,virtio-net,tap=NAME -s 1:6:2,EMULATION,PATH "
				     "-l com1,file:PATH -l com2,unix:PATH VMNAME");
	/* Only what the guest sees is left. */
	assert_int_equal(saved.n, 6);
	assert_string_equal(config_get(&saved, "cpus"), "2");
	assert_string_equal(config_get(&saved, "pci.0.3.0.ro"), "true");
	assert_non_null(config_get(&saved, "pci.0.5.0.device"));
	assert_null(config_get(&saved, "pci.0.4.0.hostfwd"));
	assert_null(config_get(&saved, "snapshot.trust"));
	assert_null(config_get(&saved, "sandbox"));
	config_free(&saved);
}

/* The option suggested for each kind of host resource, as the user would type it. */
static void test_filter_option_kinds(void **state)
{
	struct config saved, cmd;
	char missing[1024];

	config_init(&saved);
	config_init(&cmd);
	config_set(&saved, "lpc.com3.path", "stdio");
	config_set(&saved, "lpc.com4.path", "tcp:1.2.3.4:5");
	config_set(&saved, "lpc.bootvars", "/var/vm/vars.fd");
	config_set(&saved, "pci.0.7.1.device", "virtio-net");
	config_set(&saved, "pci.0.7.1.tap", "tap9");
	config_set(&saved, "pci.0.8.0.device", "e1000");
	config_set(&saved, "pci.0.8.0.backend", "tap3");
	config_set(&saved, "pci.0.9.0.device", "fbuf");
	config_set(&saved, "pci.0.9.0.unix", "/run/vnc");
	config_set(&saved, "pci.0.10.0.device", "virtio-net");
	config_set(&saved, "pci.0.10.0.backend", "vde:/x");
	config_set(&saved, "pci.0.11.0.device", "ahci");
	config_set(&saved, "pci.0.11.0.port.0.path", "/d");
	assert_int_equal(snap_trust_filter(&saved, &cmd, false, missing, sizeof(missing)), 8);
	/*
	 * In the configuration's (sorted) order.  An AHCI port's disk is a key below the
	 * function (pci.B.S.F.port.N.path): it is suggested as the -o that sets it.
	 */
	assert_string_equal(missing, "-s 10,virtio-net,backend=VALUE -s 7:1,virtio-net,tap=NAME "
				     "-s 8,e1000,tap=NAME -s 9,fbuf,unix=VALUE -l com3,stdio "
				     "-l com4,BACKEND -o lpc.bootvars=VALUE "
				     "-o pci.0.11.0.port.0.path=VALUE");
	/* Nothing of them is left to come from the file. */
	assert_null(config_get(&saved, "lpc.bootvars"));
	assert_null(config_get(&saved, "pci.0.9.0.unix"));
	assert_string_equal(config_get(&saved, "pci.0.9.0.device"), "fbuf");
	config_free(&saved);
	config_free(&cmd);
}

static void test_filter_cmdline_names(void **state)
{
	struct config saved, cmd;
	char missing[1024];

	/* Each device named on the command line needs nothing more from the file. */
	hostile_config(&saved);
	config_init(&cmd);
	config_set(&cmd, "name", "mine");
	config_set(&cmd, "pci.0.3.0.path", "/var/vm/disk.img");
	config_set(&cmd, "pci.0.4.0.backend", "slirp");
	config_set(&cmd, "pci.0.5.0.tap", "tap7");
	config_set(&cmd, "lpc.com1.path", "stdio");
	config_set(&cmd, "lpc.com2.path", "off");
	assert_int_equal(snap_trust_filter(&saved, &cmd, false, missing, sizeof(missing)), 1);
	assert_string_equal(missing, "-s 1:6:2,EMULATION,PATH");
	/* The file's own value is gone even where the command line gives another key. */
	assert_null(config_get(&saved, "pci.0.5.0.backend"));
	config_free(&saved);
	config_free(&cmd);
}

static void test_filter_trusted(void **state)
{
	struct config saved, cmd;
	char missing[64];

	hostile_config(&saved);
	config_init(&cmd);
	assert_int_equal(snap_trust_filter(&saved, &cmd, true, missing, sizeof(missing)), 0);
	assert_string_equal(missing, "");
	/* Host resources stay; session settings never come from a file, however trusted. */
	assert_string_equal(config_get(&saved, "pci.0.3.0.path"), "/dev/sda");
	assert_string_equal(config_get(&saved, "name"), "vm0");
	assert_null(config_get(&saved, "snapshot.trust"));
	assert_null(config_get(&saved, "snapshot.key"));
	assert_null(config_get(&saved, "sandbox"));
	config_free(&saved);
}

static void test_sanitize(void **state)
{
	char out[32];

	snap_sanitize("a\033[2J\\b\xff", out, sizeof(out));
	assert_string_equal(out, "a\\x1b[2J\\x5cb\\xff");
	snap_sanitize("0123456789abcdef", out, 8);
	assert_true(strlen(out) < 8);
}

static void keyref(struct snap_keyref *ref, const char *name)
{
	memset(ref, 0, sizeof(*ref));
	ref->uid = geteuid();
	snprintf(ref->path, sizeof(ref->path), "%s/%s", dir, name);
}

static void write_key(const char *name, mode_t mode, size_t len)
{
	char p[256];
	uint8_t k[64] = { 1, 2, 3 };
	int fd;

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	assert_true(write(fd, k, len) == (ssize_t)len);
	fchmod(fd, mode);
	close(fd);
}

static void expect_key_error(const struct snap_keyref *ref, int want, const char *needle)
{
	uint8_t k[SNAP_KEY_BYTES];
	char err[512] = "";

	assert_int_equal(snap_key_load(ref, false, k, err, sizeof(err)), want);
	if (!strstr(err, needle))
		fail_msg("error '%s' does not mention '%s'", err, needle);
}

static void test_key_file(void **state)
{
	uint8_t k1[SNAP_KEY_BYTES], k2[SNAP_KEY_BYTES], zero[SNAP_KEY_BYTES] = { 0 };
	struct snap_keyref ref;
	char err[512], sub[128];
	struct stat st;

	/* Not there, not created on restore. */
	keyref(&ref, "none.key");
	expect_key_error(&ref, -ENOENT, "no snapshot key");
	assert_int_equal(stat(ref.path, &st), -1);
	/* Created on the first save: private, 32 random bytes, nothing else left behind. */
	keyref(&ref, "k.key");
	assert_int_equal(snap_key_load(&ref, true, k1, err, sizeof(err)), 0);
	assert_int_equal(stat(ref.path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(st.st_size, SNAP_KEY_BYTES);
	assert_memory_not_equal(k1, zero, sizeof(k1));
	snprintf(sub, sizeof(sub), "test $(ls -A %s | wc -l) -eq 1", dir);
	assert_int_equal(system(sub), 0);
	/* The same key again, also through another name for the same file. */
	keyref(&ref, "./k.key");
	assert_int_equal(snap_key_load(&ref, false, k2, err, sizeof(err)), 0);
	assert_memory_equal(k1, k2, sizeof(k1));
	/* Keys others could read or replace are not keys. */
	write_key("open.key", 0644, SNAP_KEY_BYTES);
	keyref(&ref, "open.key");
	expect_key_error(&ref, -EPERM, "must be 0600");
	write_key("short.key", 0600, 16);
	keyref(&ref, "short.key");
	expect_key_error(&ref, -EINVAL, "16 bytes");
	keyref(&ref, "link.key");
	assert_int_equal(symlink("k.key", ref.path), 0);
	expect_key_error(&ref, -ELOOP, "link.key");
	keyref(&ref, "k.key");
	ref.uid = geteuid() + 1000;
	expect_key_error(&ref, -EPERM, "owned by uid");
	snprintf(sub, sizeof(sub), "%s/shared", dir);
	assert_int_equal(mkdir(sub, 0777), 0);
	chmod(sub, 0777);
	keyref(&ref, "shared/k.key");
	expect_key_error(&ref, -EPERM, "writable by others");
	/* Writable by its group only: another user still could replace the key. */
	chmod(sub, 0770);
	expect_key_error(&ref, -EPERM, "writable by others");
	chmod(sub, 0777);
	assert_int_not_equal(snap_key_load(&ref, true, k2, err, sizeof(err)), 0);
	assert_int_equal(stat(ref.path, &st), -1);
	/* A configured key's directory is not made for it; the default one is. */
	keyref(&ref, "new/dir/k.key");
	assert_int_equal(snap_key_load(&ref, true, k2, err, sizeof(err)), -ENOENT);
	ref.dflt = true;
	assert_int_equal(snap_key_load(&ref, true, k2, err, sizeof(err)), 0);
	snprintf(sub, sizeof(sub), "%s/new/dir", dir);
	assert_int_equal(stat(sub, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);
}

static void test_key_locate(void **state)
{
	struct snap_keyref ref;
	struct config c;
	char err[256];

	config_init(&c);
	config_set(&c, "snapshot.key", "/some/where.key");
	assert_int_equal(snap_key_locate(&c, &ref, err, sizeof(err)), 0);
	assert_string_equal(ref.path, "/some/where.key");
	assert_false(ref.dflt);
	assert_int_equal(ref.uid, geteuid());
	/* user=NAME: that user's key, whoever starts khyve. */
	config_unset(&c, "snapshot.key");
	config_set(&c, "user", "root");
	assert_int_equal(snap_key_locate(&c, &ref, err, sizeof(err)), 0);
	assert_string_equal(ref.path, SNAP_KEY_DIR_ROOT "/" SNAP_KEY_NAME);
	assert_int_equal(ref.uid, 0);
	assert_true(ref.dflt);
	config_set(&c, "user", "no-such-user-khyve");
	assert_int_equal(snap_key_locate(&c, &ref, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "no-such-user-khyve"));
	config_free(&c);
}

/* An unprivileged uid: 65534 when the tests run as root, else the tests' own. */
static uid_t user_uid(void)
{
	return geteuid() ? geteuid() : 65534;
}

/* libgcov's, linked only into the coverage build (make coverage): a child that gave up root
 * cannot write the root-owned .gcda files, and one that leaves by _exit writes nothing. */
extern void __gcov_dump(void) __attribute__((weak));
extern void __gcov_reset(void) __attribute__((weak));

/* In a child running as @uid (when the tests run as root): snap_key_locate's result, by
 * XDG_STATE_HOME and HOME: 0 if it returned @want_ret and the path @want (or an error naming
 * @want), else the step that differed. */
static int locate_as(uid_t uid, const char *state_home, const char *home, int want_ret,
		     const char *want)
{
	pid_t pid = fork();
	int st;

	assert_true(pid >= 0);
	if (!pid) {
		struct snap_keyref ref;
		struct config c;
		char err[256];
		int ret, code;

		if (__gcov_reset)
			__gcov_reset(); /* the parent counts what it did before the fork */
		/* Real and effective uid @uid; the coverage build keeps root as the saved uid
		 * to write its counts at the end, which snap_key_locate does not look at. */
		if (!geteuid() && setresuid(uid, uid, __gcov_dump ? 0 : uid))
			_exit(2);
		config_init(&c);
		if (state_home)
			setenv("XDG_STATE_HOME", state_home, 1);
		else
			unsetenv("XDG_STATE_HOME");
		if (home)
			setenv("HOME", home, 1);
		else
			unsetenv("HOME");
		ret = snap_key_locate(&c, &ref, err, sizeof(err));
		if (ret != want_ret)
			code = 3;
		else if (ret)
			code = strstr(err, want) ? 0 : 5;
		else
			code = strcmp(ref.path, want) || ref.uid != geteuid() || !ref.dflt ? 4 : 0;
		if (__gcov_dump && !setresuid(0, 0, 0))
			__gcov_dump();
		_exit(code);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int locate_as_user(const char *state_home, const char *home, const char *want)
{
	return locate_as(user_uid(), state_home, home, 0, want);
}

static void test_key_locate_unprivileged(void **state)
{
	struct snap_keyref ref;
	struct config c;
	struct passwd *pw;
	char err[256], want[512], longpath[5000];

	assert_int_equal(locate_as_user("/st", "/h", "/st/khyve/" SNAP_KEY_NAME), 0);
	assert_int_equal(locate_as_user(NULL, "/h", "/h/.local/state/khyve/" SNAP_KEY_NAME), 0);
	/* A relative XDG_STATE_HOME or HOME is not used: the password file's home is. */
	pw = getpwuid(user_uid());
	assert_non_null(pw);
	snprintf(want, sizeof(want), "%s/.local/state/khyve/%s", pw->pw_dir, SNAP_KEY_NAME);
	assert_int_equal(locate_as_user("rel", "rel", want), 0);
	assert_int_equal(locate_as_user("", NULL, want), 0);
	/* user=NAME: NAME's uid and home. */
	config_init(&c);
	config_set(&c, "user", pw->pw_name);
	assert_int_equal(snap_key_locate(&c, &ref, err, sizeof(err)), 0);
	assert_int_equal(ref.uid, user_uid());
	assert_string_equal(ref.path, want);
	/* A path that does not fit. */
	config_unset(&c, "user");
	memset(longpath, 'k', sizeof(longpath) - 1);
	longpath[0] = '/';
	longpath[sizeof(longpath) - 1] = 0;
	config_set(&c, "snapshot.key", longpath);
	assert_int_equal(snap_key_locate(&c, &ref, err, sizeof(err)), -ENAMETOOLONG);
	assert_non_null(strstr(err, "too long"));
	config_free(&c);
	if (!geteuid()) {
		/* A uid the password file does not know: no home but an absolute HOME. */
		static const uid_t stranger = 4000000001u;
		char home[4100];

		assert_null(getpwuid(stranger));
		assert_int_equal(locate_as(stranger, NULL, NULL, -ENOENT,
					   "no home directory to keep the snapshot key in"),
				 0);
		assert_int_equal(locate_as(stranger, "st", "h", -ENOENT, "set -o snapshot.key"), 0);
		assert_int_equal(locate_as(stranger, NULL, "/h", 0,
					   "/h/.local/state/khyve/" SNAP_KEY_NAME),
				 0);
		/* A default path that does not fit. */
		memset(home, 'h', sizeof(home) - 1);
		home[0] = '/';
		home[sizeof(home) - 1] = 0;
		assert_int_equal(locate_as(stranger, NULL, home, -ENAMETOOLONG, "too long"), 0);
		assert_int_equal(locate_as(stranger, home, "/h", -ENAMETOOLONG, "too long"), 0);
	}
}

/* A small snapshot whose metadata holds @json, authenticated with @key unless NULL. */
static void write_snap(const char *p, const char *json, const uint8_t *key)
{
	struct snap_writer w;
	struct snap_file map;
	char err[256];

	assert_int_equal(snap_writer_open(&w, p, MEM, err, sizeof(err)), 0);
	if (key)
		snap_writer_set_key(&w, key);
	assert_int_equal(snap_writer_section(&w, SNAP_SEC_META, "meta", 1, json, strlen(json)), 0);
	memset(&map, 0, sizeof(map));
	map.nregions = 1;
	map.regions[0] = (struct snap_region){ 0, MEM, w.mem_offset };
	snapwrite_memmap_commit(&w, &map);
}

static int mac_of(const char *p, const uint8_t *key)
{
	struct snap_file f;
	char err[512];
	int ret;

	if (snap_file_open(&f, p, false, err, sizeof(err)))
		fail_msg("%s", err);
	ret = snap_file_check_mac(&f, key);
	snap_file_close(&f);
	return ret;
}

static const char json_a[] = "{\"config\":{\"lpc.com1.path\":\"stdio\"}}";
static const char json_b[] = "{\"config\":{\"lpc.com1.path\":\"file:/etc/passwd\"}}";

static void test_mac(void **state)
{
	uint8_t ka[SNAP_KEY_BYTES], kb[SNAP_KEY_BYTES];
	struct craft c;
	int meta;

	memset(ka, 0x11, sizeof(ka));
	memset(kb, 0x22, sizeof(kb));
	write_snap(path, json_a, ka);
	assert_int_equal(mac_of(path, ka), 0);
	assert_int_equal(mac_of(path, kb), -EBADMSG);
	write_snap(path, json_a, NULL);
	assert_int_equal(mac_of(path, ka), -ENODATA);
	/* The attack: rewrite the configuration and recompute every checksum. */
	write_snap(path, json_a, ka);
	craft_load(&c, path);
	meta = craft_find(&c, "meta");
	craft_set(&c, (unsigned)meta, json_b, strlen(json_b));
	craft_relayout(&c);
	craft_store(&c, path);
	craft_free(&c);
	assert_int_equal(mac_of(path, ka), -EBADMSG);
	/* Moving the MAC to another file does not carry the trust along. */
	write_snap(path, json_a, ka);
	{
		char other[160];
		struct craft d;

		snprintf(other, sizeof(other), "%s/other.snap", dir);
		write_snap(other, json_b, NULL);
		craft_load(&c, path);
		craft_load(&d, other);
		memcpy(d.page + CH_AUTH, c.page + CH_AUTH, CH_END - CH_AUTH);
		craft_store(&d, other);
		assert_int_equal(mac_of(other, ka), -EBADMSG);
		craft_free(&c);
		craft_free(&d);
	}
}

static void expect_open_refused(const char *p, const char *needle)
{
	struct snap_file f;
	char err[512] = "";

	assert_int_not_equal(snap_file_open(&f, p, false, err, sizeof(err)), 0);
	if (!strstr(err, needle))
		fail_msg("error '%s' does not mention '%s'", err, needle);
}

static void test_auth_block_checked(void **state)
{
	uint8_t ka[SNAP_KEY_BYTES];
	struct craft c;

	memset(ka, 0x11, sizeof(ka));
	write_snap(path, json_a, ka);
	craft_load(&c, path);
	craft_put(c.page + CH_AUTH, 7, 4);
	craft_store(&c, path);
	craft_free(&c);
	expect_open_refused(path, "unknown authentication scheme 7");
	write_snap(path, json_a, NULL);
	craft_load(&c, path);
	c.page[CH_MAC + 5] = 1;
	craft_store(&c, path);
	craft_free(&c);
	expect_open_refused(path, "MAC bytes without an authentication scheme");
	/* Every byte after the block is zero. */
	for (unsigned off = CH_END; off < 4096; off += 997) {
		write_snap(path, json_a, ka);
		craft_load(&c, path);
		c.page[off] = 0x40;
		craft_store(&c, path);
		craft_free(&c);
		expect_open_refused(path, "is not zero");
	}
}

static void test_authenticate(void **state)
{
	struct snap_keyref ref;
	struct snap_file f;
	uint8_t key[SNAP_KEY_BYTES];
	char err[512], why[600];

	keyref(&ref, "host.key");
	write_snap(path, json_a, NULL);
	assert_int_equal(snap_file_open(&f, path, false, err, sizeof(err)), 0);
	assert_int_equal(snap_authenticate(&f, &ref, why, sizeof(why)), SNAP_AUTH_NONE);
	snap_file_close(&f);
	memset(key, 0x33, sizeof(key));
	write_snap(path, json_a, key);
	assert_int_equal(snap_file_open(&f, path, false, err, sizeof(err)), 0);
	assert_int_equal(snap_authenticate(&f, &ref, why, sizeof(why)), SNAP_AUTH_NOKEY);
	assert_non_null(strstr(why, "host.key"));
	assert_int_equal(snap_key_load(&ref, true, key, err, sizeof(err)), 0);
	assert_int_equal(snap_authenticate(&f, &ref, why, sizeof(why)), SNAP_AUTH_INVALID);
	assert_non_null(strstr(why, "another host or by another user"));
	snap_file_close(&f);
	write_snap(path, json_a, key);
	assert_int_equal(snap_file_open(&f, path, false, err, sizeof(err)), 0);
	assert_int_equal(snap_authenticate(&f, &ref, why, sizeof(why)), SNAP_AUTH_VALID);
	snap_file_close(&f);
}

static void test_auth_names(void **state)
{
	assert_string_equal(snap_auth_name(SNAP_AUTH_VALID), "valid");
	assert_string_equal(snap_auth_name(SNAP_AUTH_INVALID), "invalid");
	assert_string_equal(snap_auth_name(SNAP_AUTH_NOKEY), "no key");
	assert_string_equal(snap_auth_name(SNAP_AUTH_NONE), "none");
}

/*
 * The options a refusal suggests never carry the file's text: an emulation name that is not a
 * plain short word becomes EMULATION; a console's stdio/off is said as it is; an LPC option
 * other than the path is the -o that sets it.  With no room for the list, only the count.
 */
static void test_filter_suggestions(void **state)
{
	struct config saved, cmd;
	char missing[1024];

	config_init(&saved);
	config_init(&cmd);
	config_set(&saved, "pci.0.3.0.path", "/a"); /* no device key */
	config_set(&saved, "pci.0.4.0.device", "");
	config_set(&saved, "pci.0.4.0.path", "/b");
	config_set(&saved, "pci.0.5.0.device", "virtio-blk-but-with-a-very-long-name");
	config_set(&saved, "pci.0.5.0.path", "/c");
	config_set(&saved, "lpc.com1.path", "off");
	config_set(&saved, "lpc.com2.socket", "/run/s");
	assert_int_equal(snap_trust_filter(&saved, &cmd, false, missing, sizeof(missing)), 5);
	assert_string_equal(missing, "-s 3,EMULATION,PATH -s 4,EMULATION,PATH "
				     "-s 5,EMULATION,PATH -l com1,off -o lpc.com2.socket=VALUE");
	config_free(&saved);
	config_init(&saved);
	config_set(&saved, "pci.0.3.0.path", "/a");
	assert_int_equal(snap_trust_filter(&saved, &cmd, false, NULL, 0), 1);
	assert_null(config_get(&saved, "pci.0.3.0.path"));
	config_free(&saved);
	config_free(&cmd);
	/* Nothing written where there is no room. */
	snap_sanitize("abc", missing, 0);
}

/* An empty snapshot.key is the default place; one too long for a path is refused. */
static void test_key_locate_bounds(void **state)
{
	struct snap_keyref ref;
	struct config c;
	char err[256], longp[5000];

	config_init(&c);
	config_set(&c, "snapshot.key", "");
	assert_int_equal(snap_key_locate(&c, &ref, err, sizeof(err)), 0);
	assert_true(ref.dflt);
	assert_true(ref.path[0] == '/');
	memset(longp, 'k', sizeof(longp) - 1);
	longp[0] = '/';
	longp[sizeof(longp) - 1] = '\0';
	config_set(&c, "snapshot.key", longp);
	assert_int_equal(snap_key_locate(&c, &ref, err, sizeof(err)), -ENAMETOOLONG);
	assert_string_equal(err, "snapshot key path is too long");
	config_free(&c);
}

/* A key that is not a regular file; a key of another user, which khyve cannot create. */
static void test_key_kinds(void **state)
{
	struct snap_keyref ref;
	uint8_t k[SNAP_KEY_BYTES];
	char p[256], err[512] = "";

	snprintf(p, sizeof(p), "%s/key.d", dir);
	assert_int_equal(mkdir(p, 0700), 0);
	keyref(&ref, "key.d");
	expect_key_error(&ref, -EINVAL, "is not a regular file");
	snprintf(p, sizeof(p), "%s/key.fifo", dir);
	assert_int_equal(mkfifo(p, 0600), 0);
	keyref(&ref, "key.fifo");
	expect_key_error(&ref, -EINVAL, "is not a regular file");
	keyref(&ref, "theirs");
	ref.uid = geteuid() + 4242;
	assert_int_equal(snap_key_load(&ref, true, k, err, sizeof(err)), -EPERM);
	assert_non_null(strstr(err, "cannot create uid"));
	snprintf(p, sizeof(p), "%s/theirs", dir);
	assert_int_equal(access(p, F_OK), -1);
	/* Made, with no room for a message: none written. */
	keyref(&ref, "mine");
	strcpy(err, "unchanged");
	assert_int_equal(snap_key_load(&ref, true, k, err, 0), 0);
	assert_string_equal(err, "unchanged");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_key_classes),
		cmocka_unit_test(test_filter_untrusted),
		cmocka_unit_test(test_filter_cmdline_names),
		cmocka_unit_test(test_filter_option_kinds),
		cmocka_unit_test(test_filter_trusted),
		cmocka_unit_test(test_sanitize),
		cmocka_unit_test(test_auth_names),
		cmocka_unit_test(test_filter_suggestions),
		cmocka_unit_test(test_key_locate_bounds),
		cmocka_unit_test_setup_teardown(test_key_kinds, setup, teardown),
		cmocka_unit_test_setup_teardown(test_key_file, setup, teardown),
		cmocka_unit_test(test_key_locate),
		cmocka_unit_test(test_key_locate_unprivileged),
		cmocka_unit_test_setup_teardown(test_mac, setup, teardown),
		cmocka_unit_test_setup_teardown(test_auth_block_checked, setup, teardown),
		cmocka_unit_test_setup_teardown(test_authenticate, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
