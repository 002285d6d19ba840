"""Unprivileged: khyve and khyvectl as a throwaway non-root user in group kvm (boot, checkpoint,
restore), khyve -o user=NAME giving up root, and the control socket's checks of who is on the
other side."""

import json
import os
import pwd
import shutil
import subprocess

from khyve_e2e import GUEST, KHYVE, KHYVECTL, VM, Fail, assert_consecutive, check, restored_seqs, test


class User:
    """A user made for one test, in group kvm, with a home in the work directory and copies of
    the binaries it may run (the build directory may sit under a private home)."""

    def __init__(self, wd):
        if os.geteuid() != 0:
            raise Fail("this test needs root to create a throwaway user in group kvm")
        self.name = "khyve-e2e-%d" % os.getpid()
        os.chmod(wd.path, 0o711)
        self.home = wd("home")
        os.mkdir(self.home, 0o700)
        r = subprocess.run(["useradd", "-M", "-d", self.home, "-s", "/usr/sbin/nologin",
                            "-G", "kvm", self.name], capture_output=True)
        check(r.returncode == 0, "useradd: %s" % r.stderr.decode())
        pw = pwd.getpwnam(self.name)
        self.uid, self.gid = pw.pw_uid, pw.pw_gid
        os.chown(self.home, self.uid, self.gid)
        self.run = os.path.join(self.home, "run")
        os.mkdir(self.run, 0o700)
        os.chown(self.run, self.uid, self.gid)
        bindir = wd("bin")
        os.mkdir(bindir, 0o755)
        for src, name in ((KHYVE, "khyve"), (KHYVECTL, "khyvectl"), (GUEST, "testguest")):
            shutil.copy(src, os.path.join(bindir, name))
            os.chmod(os.path.join(bindir, name), 0o755)
        self.khyve = os.path.join(bindir, "khyve")
        self.khyvectl = os.path.join(bindir, "khyvectl")
        self.guest = os.path.join(bindir, "testguest")

    def argv(self, args):
        return ["setpriv", "--reuid", self.name, "--regid", self.name, "--init-groups",
                "env", "-i", "HOME=" + self.home, "XDG_RUNTIME_DIR=" + self.run,
                "PATH=" + os.environ.get("PATH", "/usr/bin:/bin")] + list(args)

    def path(self, *p):
        return os.path.join(self.home, *p)

    def ctl(self, *args):
        r = subprocess.run(self.argv([self.khyvectl] + list(args)), capture_output=True,
                           timeout=300)
        return r.returncode, r.stdout.decode(), r.stderr.decode()

    def remove(self):
        subprocess.run(["userdel", self.name], capture_output=True)


def owner(path):
    st = os.lstat(path)
    return st.st_uid, st.st_mode & 0o7777


def boot_args(u, name, extra=()):
    return [u.khyve, "-m", "64M", "-s", "0,hostbridge", "-s", "31,lpc", "-l", "com1,stdio",
            "-o", "boot.kernel=" + u.guest, "-o", "boot.cmdline=mode=counter"] + \
        list(extra) + [name]


@test
def unprivileged_boot_checkpoint_restore(wd):
    u = User(wd)
    vms = []
    try:
        vm = VM(wd, args=u.argv(boot_args(u, "uvm")))
        vms.append(vm)
        vm.wait_seq(3, timeout=120)
        # khyvectl finds the socket where khyve put it for this user: $XDG_RUNTIME_DIR/khyve.
        sock = u.path("run", "khyve", "uvm.sock")
        check(owner(sock) == (u.uid, 0o600), "socket %s: %r" % (sock, owner(sock)))
        snap = u.path("a.snap")
        rc, out, err = u.ctl("--vm=uvm", "--json", "--checkpoint=" + snap)
        check(rc == 0 and json.loads(out)["ok"], "checkpoint as the user: %s %s" % (out, err))
        check(owner(snap)[0] == u.uid, "the snapshot belongs to the user")
        key = u.path(".local", "state", "khyve", "snapshot.key")
        check(owner(key) == (u.uid, 0o600), "the user's snapshot key: %r" % (owner(key),))
        # root's khyvectl will not talk to a socket another user serves.
        r = subprocess.run([KHYVECTL, "--socket=" + sock, "--status"], capture_output=True)
        check(r.returncode == 2 and b"served by uid %d" % u.uid in r.stderr,
              "root's khyvectl to the user's socket: %d %r" % (r.returncode, r.stderr))
        n = len(vm.seqs())
        vm.wait_seq(n + 2)
        assert_consecutive(vm.seqs(), "the user's VM after its checkpoint")
        vm.kill()
        # The user's own file is authenticated with the user's key: nothing to name again.
        r = VM(wd, args=u.argv([u.khyve, "-r", snap, "uvm2"]))
        vms.append(r)
        r.wait_seq(3, timeout=120)
        assert_consecutive(restored_seqs(r.out)[1], "restored as the user")
        rc, out, err = u.ctl("--vm=uvm2", "--status")
        check(rc == 0 and "uvm2: running" in out, "status as the user: %s %s" % (out, err))
        r.kill()
    finally:
        for v in vms:
            v.kill()
        u.remove()


@test
def control_refusal_in_words(wd):
    """A client khyve will not serve hears why, not 'Broken pipe'."""
    u = User(wd)
    vm = None
    try:
        pub = wd("pub")
        os.mkdir(pub, 0o755)
        sock = os.path.join(pub, "root.sock")
        vm = VM(wd, args=boot_args(u, "rootvm", ["-o", "ctl.socket=" + sock]))
        vm.wait_seq(2, timeout=120)
        os.chmod(sock, 0o666)   # let the other user connect at all
        rc, out, err = u.ctl("--socket=" + sock, "--status")
        check(rc == 1 and "permission denied: the VM belongs to another user" in err,
              "the user's khyvectl to root's VM: %d %r" % (rc, err))
        check("Broken pipe" not in err, err)
        vm.kill()
    finally:
        if vm:
            vm.kill()
        u.remove()


def proc_ids(pid):
    ids = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("Uid", "Gid", "CapEff", "Groups"):
                ids[k] = v.split()
    return ids


@test
def run_as_user_option(wd):
    """khyve -o user=NAME: root opens what it needs, then the VM runs as NAME; its saves are
    NAME's files, authenticated with NAME's key."""
    u = User(wd)
    vms = []
    try:
        sock = wd("asuser.sock")
        args = boot_args(u, "asuser", ["-o", "user=" + u.name, "-o", "ctl.socket=" + sock])
        vm = VM(wd, args=args)
        vms.append(vm)
        vm.wait_seq(3, timeout=120)
        ids = proc_ids(vm.p.pid)
        check(ids["Uid"] == [str(u.uid)] * 4 and ids["Gid"] == [str(u.gid)] * 4,
              "khyve runs as the user: %r" % ids)
        check(int(ids["CapEff"][0], 16) == 0, "no capabilities left: %r" % ids)
        check(str(os.stat("/dev/kvm").st_gid) in ids["Groups"], "in group kvm: %r" % ids)
        snap = u.path("b.snap")
        r = subprocess.run([KHYVECTL, "--socket=" + sock, "--json", "--checkpoint=" + snap],
                           capture_output=True)
        check(r.returncode == 0, "root's checkpoint of the user's VM: %r" % r.stderr)
        check(owner(snap)[0] == u.uid, "the snapshot is the user's file")
        key = u.path(".local", "state", "khyve", "snapshot.key")
        check(owner(key) == (u.uid, 0o600), "the user's key: %r" % (owner(key),))
        # A live checkpoint uses the userfaultfd root opened before giving up root.
        r = subprocess.run([KHYVECTL, "--socket=" + sock, "--json", "--live",
                            "--checkpoint=" + u.path("l.snap")], capture_output=True)
        check(r.returncode == 0 and json.loads(r.stdout.decode().splitlines()[-1]).get("live"),
              "live checkpoint of the user's VM: %r %r" % (r.stdout, r.stderr))
        vm.kill()
        # Restored for the same user, the file is authenticated; for root it is not.
        r = subprocess.run([KHYVE, "-r", snap, "-o", "ctl.socket=off", "rootx"],
                           capture_output=True, timeout=60)
        check(r.returncode == 4 and b"not authenticated" in r.stderr,
              "root's own restore of the user's file: %r" % r.stderr)
        r = VM(wd, args=[KHYVE, "-r", snap, "-o", "user=" + u.name, "-o",
                         "ctl.socket=" + wd("asuser2.sock"), "asuser2"])
        vms.append(r)
        r.wait_seq(3, timeout=120)
        assert_consecutive(restored_seqs(r.out)[1], "restored with user=")
        r.kill()
    finally:
        for v in vms:
            v.kill()
        u.remove()
