// SPDX-License-Identifier: BSD-2-Clause
/* -o user=NAME: give up root once the VM is built (see user.h). */
#include "user.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "snap/dirty.h"
#include "snap/live.h"
#include "snap/memory.h"

int user_drop(const struct config *cfg, char *err, size_t errlen)
{
	const char *name = config_get(cfg, "user");
	struct passwd pw, *res = NULL;
	uid_t ruid, euid, suid;
	gid_t rgid, egid, sgid;
	char buf[4096];

	if (!name)
		return 0;
	if (getpwnam_r(name, &pw, buf, sizeof(buf), &res) || !res) {
		snprintf(err, errlen, "user=%s: no such user", name);
		return -ENOENT;
	}
	if (geteuid() != 0) {
		if (pw.pw_uid == geteuid())
			return 0;
		snprintf(err, errlen, "user=%s: only root can run a VM as another user", name);
		return -EPERM;
	}
	/* What a save needs that the new user may not open: the page-table flags, userfaultfd. */
	snap_memory_keep_pagemap();
	snap_live_keep_uffd();
	dirty_keep_uffd();
	/* Groups first (they need root), then the gid, then the uid, all three of each. */
	if (initgroups(name, pw.pw_gid) || setresgid(pw.pw_gid, pw.pw_gid, pw.pw_gid) ||
	    setresuid(pw.pw_uid, pw.pw_uid, pw.pw_uid)) {
		int ret = -errno;

		snprintf(err, errlen, "user=%s: cannot become uid %u: %s", name,
			 (unsigned)pw.pw_uid, strerror(errno));
		return ret;
	}
	/* Make sure: nothing of root is left to go back to. */
	if (getresuid(&ruid, &euid, &suid) || getresgid(&rgid, &egid, &sgid) || ruid != pw.pw_uid ||
	    euid != pw.pw_uid || suid != pw.pw_uid || rgid != pw.pw_gid || egid != pw.pw_gid ||
	    sgid != pw.pw_gid || (pw.pw_uid != 0 && !setuid(0))) {
		snprintf(err, errlen, "user=%s: the switch to uid %u did not hold", name,
			 (unsigned)pw.pw_uid);
		return -EPERM;
	}
	return 0;
}
