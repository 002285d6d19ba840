"""virtio-blk, virtio-net and virtio-rnd: I/O across snapshots, hostile drivers, bad options."""

import os
import re
import socket
import subprocess
import threading
import time

from khyve_e2e import (GUEST, VM, assert_consecutive, check, khyve_run, restored_seqs, test)


def disk(wd, name="disk.img", size=8 << 20):
    path = wd(name)
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def virtio_vm(wd, cmdline, cpus=1, name="vm0", devices=(), extra=()):
    args = []
    for d in devices:
        args += ["-s", d]
    return VM(wd, cpus=cpus, name=name, cmdline=cmdline, extra=list(args) + list(extra))


def no_fail(vm, what):
    check(b"TESTGUEST FAIL" not in vm.out, "%s: guest failed:\n%s" % (what, vm.tail()))


def cycles(wd, cmdline, devices, cpus, rounds, extra=()):
    """Checkpoint (the original goes on) and restore, then suspend and restore, @rounds times;
    the guest checks its own I/O throughout and the seq numbers never break."""
    vm = virtio_vm(wd, cmdline, cpus=cpus, devices=devices, extra=extra)
    vm.wait_seq(4, timeout=120)
    for i in range(rounds):
        snap = wd("c%d.snap" % i)
        vm.ctl("--checkpoint=" + snap)
        n = len(vm.seqs())
        vm.wait_seq(n + 3, timeout=60)
        assert_consecutive(vm.seqs(), "original after checkpoint %d" % i)
        no_fail(vm, "original after checkpoint %d" % i)
        vm.kill()
        vm = VM(wd, restore=snap, name="r%d" % i)
        vm.wait_seq(4, timeout=120)
        assert_consecutive(restored_seqs(vm.out)[1], "restored checkpoint %d" % i)
        no_fail(vm, "restored checkpoint %d" % i)
        susp = wd("s%d.snap" % i)
        vm.ctl("--suspend=" + susp)
        check(vm.wait_exit(60) == 0, "suspend must exit 0")
        before = vm.out		# everything the suspended VM printed
        vm = VM(wd, restore=susp, name="q%d" % i)
        vm.wait_seq(4, timeout=120)
        lines = (before + vm.out).split(b"\n")[:-1]
        seqs = [int(l[4:]) for l in lines if l.startswith(b"seq ") and l[4:].isdigit()]
        assert_consecutive(seqs, "suspend/restore %d" % i)
        no_fail(vm, "restored suspend %d" % i)
    vm.kill()


@test
def blk_snapshots_1cpu(wd):
    img = disk(wd)
    cycles(wd, "mode=blk rering=0", ["3,virtio-blk," + img], 1, 2, extra=["-o", "snapshot.disks=clone"])


@test
def blk_snapshots_4cpus(wd):
    img = disk(wd)
    cycles(wd, "mode=blk rering=0", ["3,virtio-blk," + img], 4, 2, extra=["-o", "snapshot.disks=clone"])


def pass_lines(out):
    return re.findall(rb"^blk: pass \d+, .*\n", out, re.M)


def wait_pass_lines(vm, n, timeout=120):
    end = time.time() + timeout
    while len(pass_lines(vm.out)) < n:
        check(time.time() < end, "no %d blk pass lines in %d s:\n%s" % (n, timeout, vm.tail()))
        vm.check_alive()
        vm.pump(0.2)


def read(path):
    with open(path, "rb") as f:
        return f.read()


@test
def blk_clone_is_the_disk_as_it_was(wd):
    """Without a clone the checkpoint's disk moves on; with one, a restore sees it as it was:
    the restored guest reads back a whole pass and finds every block its memory says it
    wrote."""
    img = disk(wd)
    vm = virtio_vm(wd, "mode=blk rering=0", devices=["3,virtio-blk," + img],
                   extra=["-o", "snapshot.disks=clone"])
    vm.wait_seq(4, timeout=120)
    wait_pass_lines(vm, 1)
    snap = wd("c.snap")
    vm.ctl("--checkpoint=" + snap)
    clones = [f for f in os.listdir(wd.path) if f.startswith("c.snap.") and f.endswith(".img")]
    check(len(clones) == 1, "one disk copy beside the snapshot, got %r" % clones)
    vm.ctl("--checkpoint=" + snap)
    clones2 = [f for f in os.listdir(wd.path) if f.startswith("c.snap.") and f.endswith(".img")]
    check(len(clones2) == 1 and clones2 != clones, "a new checkpoint replaces the old copy: %r"
          % clones2)
    copy = wd(clones2[0])
    frozen = read(copy)
    # The original runs on: it writes its own disk, never the copy.
    wait_pass_lines(vm, len(pass_lines(vm.out)) + 1)
    no_fail(vm, "original after the checkpoints")
    vm.kill()
    check(read(img) != frozen, "the running VM's disk did not move on after the checkpoint")
    check(read(copy) == frozen, "the disk copy changed while the original VM ran")
    # The restore runs on the copy: two progress lines mean a whole pass after the restore
    # read every block back and checked it against the guest's bookkeeping.
    r = VM(wd, restore=snap, name="r1")
    r.wait_seq(4, timeout=120)
    fds = "/proc/%d/fd" % r.p.pid
    opened = []
    for fd in os.listdir(fds):
        try:
            opened.append(os.readlink(os.path.join(fds, fd)))
        except OSError:
            pass
    check(copy in opened and img not in opened, "the restored VM must run on %s: %r"
          % (copy, [o for o in opened if o.endswith(".img")]))
    wait_pass_lines(r, 2)
    no_fail(r, "restored from the clone")
    assert_consecutive(restored_seqs(r.out)[1], "restored from the clone")
    check(read(copy) != frozen, "the restored VM did not write its disk")
    r.kill()


class Echo(threading.Thread):
    """A UDP echo server on loopback, for the guest's numbered messages."""

    def __init__(self):
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = False
        self.count = 0
        self.start()

    def run(self):
        while not self.stop:
            try:
                data, addr = self.sock.recvfrom(2048)
            except socket.timeout:
                continue
            self.count += 1
            self.sock.sendto(data, addr)

    def close(self):
        self.stop = True
        self.join(2)
        self.sock.close()


@test
def net_snapshots(wd):
    echo = Echo()
    try:
        cycles(wd, "mode=net netport=%d" % echo.port, ["4,virtio-net,slirp"], 2, 2)
        check(echo.count > 10, "the echo server saw %d messages" % echo.count)
    finally:
        echo.close()


@test
def rnd(wd):
    vm = virtio_vm(wd, "mode=rnd", devices=["5,virtio-rnd"])
    vm.wait_for(rb"TESTGUEST (PASS|FAIL.*)$", timeout=120)
    check(b"TESTGUEST PASS" in vm.out, "rnd:\n" + vm.tail())
    check(vm.wait_exit(30) == 1, "power off exits 1")


@test
def evil_driver(wd):
    """Malformed descriptors: khyve survives, resets the device, keeps serving the others."""
    img = disk(wd)
    vm = virtio_vm(wd, "mode=evil", cpus=2, devices=["3,virtio-blk," + img,
                                                      "4,virtio-net,slirp", "5,virtio-rnd"])
    vm.wait_for(rb"TESTGUEST (PASS|FAIL.*)$", timeout=240)
    check(b"TESTGUEST PASS" in vm.out, "evil:\n" + vm.tail(4000))
    check(vm.wait_exit(30) == 1, "khyve must survive the evil guest and power off with 1")
    check(b"NEEDS_RESET" in vm.err or b"needs reset" in vm.err.lower(),
          "khyve should log the devices it reset:\n" + vm.err.decode(errors="replace"))


def refused(args, needle):
    r = khyve_run(args)
    err = r.stderr.decode()
    check(r.returncode == 4, "%r: exit %d, want 4 (%s)" % (args, r.returncode, err))
    check(needle in err, "%r: %r does not mention %r" % (args, err, needle))


@test
def bad_virtio_options(wd):
    base = ["-s", "0,hostbridge", "-s", "31,lpc", "-l", "com1,off", "-o", "ctl.socket=off",
            "-o", "boot.kernel=" + GUEST]
    refused(base + ["-s", "3,virtio-blk," + wd("nope.img"), "vm"], "nope.img")
    refused(base + ["-s", "3,virtio-blk", "vm"], "path")
    img = disk(wd)
    refused(base + ["-s", "3,virtio-blk,%s,sectorsize=1000" % img, "vm"], "sectorsize")
    refused(base + ["-s", "3,virtio-blk,%s,iothreads=99" % img, "vm"], "iothreads=99")
    refused(base + ["-s", "4,virtio-net,carrier-pigeon", "vm"], "carrier-pigeon")
    refused(base + ["-s", "4,virtio-net,slirp,mac=zz:00", "vm"], "mac")
    refused(base + ["-o", "snapshot.disks=maybe", "vm"], "snapshot.disks")


@test
def restore_to_another_disk(wd):
    """A restore may point the disk elsewhere (a clone of the VM on a copy of its disk)."""
    img = disk(wd)
    vm = virtio_vm(wd, "mode=blk rering=0", devices=["3,virtio-blk," + img])
    vm.wait_seq(4, timeout=120)
    snap = wd("s.snap")
    vm.ctl("--suspend=" + snap)
    check(vm.wait_exit(60) == 0, "suspend exits 0")
    copy, plain = wd("copy.img"), wd("plain.img")
    # A copy that keeps the time stamp (cp -p) is the disk as it was; one that does not
    # cannot be told from a disk that moved on.
    subprocess.run(["cp", "-p", "--sparse=always", img, copy], check=True)
    subprocess.run(["cp", "--sparse=always", img, plain], check=True)
    os.truncate(img, 0)		# the original is gone: only the copy can satisfy the guest
    x = khyve_run(["-r", snap, "-o", "ctl.socket=off", "-s", "3,virtio-blk," + plain, "vm2"])
    check(x.returncode == 4 and b"changed since the snapshot" in x.stderr,
          "a copy with another time stamp must be refused: " + x.stderr.decode())
    r = VM(wd, restore=snap, name="clone", extra=["-s", "3,virtio-blk," + copy])
    r.wait_seq(6, timeout=120)
    no_fail(r, "restored on a copy of the disk")
    r.kill()
    small = disk(wd, "small.img", 4 << 20)
    x = khyve_run(["-r", snap, "-o", "ctl.socket=off", "-s", "3,virtio-blk," + small, "vm2"])
    check(x.returncode == 4 and b"size" in x.stderr, "a disk of another size must be refused: "
          + x.stderr.decode())
