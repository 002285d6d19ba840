"""Snapshots are exact: no guest event lost in an unfinished exit, disks that match the memory,
clocks that agree, queues that cannot block a snapshot, checkpoint targets checked first."""

import json
import os
import random
import re
import stat
import subprocess

from khyve_e2e import (KHYVECTL, VM, Fail, assert_consecutive, check, khyve_run, restored_seqs, test,
                       seq_numbers)

UART_FAIL = re.compile(rb"TESTGUEST FAIL: uart.*")


@test
def uart_reads_survive_checkpoints(wd):
    """mode=uart streams bytes through COM2/COM3 in loopback on two vCPUs, every byte counted.
    A vCPU saved between an IN exit and its completion (the next KVM_RUN) would restore with
    the byte already popped from the FIFO and the IN still to execute: one byte lost.  Many
    checkpoints at random moments, each restored: none may lose a byte."""
    vm = VM(wd, cpus=2, mem="64M", cmdline="mode=uart rate=10",
            extra=["-l", "com2,off", "-l", "com3,off"])
    vm.wait_for(rb"^uart: 2 streams", timeout=60)
    vm.wait_seq(3, timeout=60)
    rng = random.Random()
    snaps = []
    for i in range(40):
        snap = wd("u%d.snap" % i)
        vm.ctl("--checkpoint=" + snap)
        snaps.append(snap)
        vm.pump(rng.uniform(0, 0.05))
    m = vm.wait_for(rb"^uart: (\d+) bytes$", timeout=30)
    check(int(m.group(1)) > 0, "the streams moved no bytes:\n" + vm.tail())
    check(not UART_FAIL.search(vm.out), "the original lost bytes:\n" + vm.tail())
    vm.kill()
    lost = []
    for i, snap in enumerate(snaps):
        r = VM(wd, restore=snap, name="r%d" % i)
        try:
            r.wait_seq(3, timeout=60)
        except Fail:
            pass  # the guest's own report, checked below, says more
        if b"TESTGUEST FAIL" in r.out:
            try:
                r.wait_for(rb"TESTGUEST FAIL.*\n", timeout=5)  # the whole line
            except Fail:
                pass
        m = UART_FAIL.search(r.out)
        if m:
            lost.append("checkpoint %d: %s" % (i, m.group(0).decode(errors="replace")))
        else:
            r.check_alive()
            assert_consecutive(restored_seqs(r.out)[1], "restored checkpoint %d" % i)
        r.kill()
    check(not lost, "%d of %d restored checkpoints lost UART bytes:\n%s"
          % (len(lost), len(snaps), "\n".join(lost)))


# ---- disks ----

def disk(wd, name="disk.img", size=8 << 20):
    path = wd(name)
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def copies(wd, snap):
    base = os.path.basename(snap) + "."
    return sorted(f for f in os.listdir(wd.path) if f.startswith(base) and f.endswith(".img"))


def open_images(vm):
    """The image files khyve has open, as /proc shows them (a deleted one ends "(deleted)")."""
    fds = "/proc/%d/fd" % vm.p.pid
    out = []
    for fd in os.listdir(fds):
        try:
            target = os.readlink(os.path.join(fds, fd))
        except OSError:
            continue
        if ".img" in target:
            out.append(target)
    return out


def no_fail(vm, what):
    check(b"TESTGUEST FAIL" not in vm.out, "%s: guest failed:\n%s" % (what, vm.tail()))


BLK = "mode=blk rering=0"
CLONE = ["-o", "snapshot.disks=clone"]


@test
def clone_checkpoint_keeps_the_running_disk(wd):
    """A VM restored from S runs on S's disk copy.  Checkpointing it to S again must not delete
    that copy (the VM would write to a deleted inode from then on); only copies nobody uses
    go, and only files that are still the copy khyve made."""
    img = disk(wd)
    vm = VM(wd, cmdline=BLK, extra=["-s", "3,virtio-blk," + img] + CLONE)
    vm.wait_seq(4, timeout=120)
    snap = wd("s.snap")
    vm.ctl("--checkpoint=" + snap)
    vm.kill()
    (c1,) = copies(wd, snap)
    r = VM(wd, restore=snap, name="r1")
    r.wait_seq(4, timeout=120)
    check([t for t in open_images(r) if t.endswith(c1)], "the restored VM runs on %s: %r"
          % (c1, open_images(r)))
    for gen in range(2):
        r.ctl("--checkpoint=" + snap)
        imgs = open_images(r)
        check(not [t for t in imgs if t.endswith("(deleted)")],
              "checkpoint %d deleted the disk the VM runs on: %r" % (gen, imgs))
        now = copies(wd, snap)
        check(c1 in now and len(now) == 2, "after checkpoint %d: copies %r (the VM runs on %s; "
              "the older unused one must go)" % (gen, now, c1))
        n = len(r.seqs())
        r.wait_seq(n + 3, timeout=60)
        no_fail(r, "restored VM after checkpoint %d" % gen)
    r.kill()
    # The last checkpoint's copy holds every write the guest's memory knows of.
    q = VM(wd, restore=snap, name="r2")
    q.wait_seq(6, timeout=120)
    no_fail(q, "restore of the re-checkpointed file")
    assert_consecutive(restored_seqs(q.out)[1], "restore of the re-checkpointed file")
    # A file put in place of a copy (same name, another inode) is not khyve's to delete.
    t = wd("t.snap")
    q.ctl("--checkpoint=" + t)
    (tc,) = copies(wd, t)
    impostor = disk(wd, "impostor", 4096)
    with open(impostor, "wb") as f:
        f.write(b"not khyve's")
    os.rename(impostor, wd(tc))
    q.ctl("--checkpoint=" + t)
    check(os.path.exists(wd(tc)) and open(wd(tc), "rb").read() == b"not khyve's",
          "a checkpoint deleted %s, a file khyve did not make" % tc)
    q.kill()


def joined_seqs(*outs):
    return seq_numbers(b"".join(outs))


def refused_restore(args, cwd=None):
    """khyve @args must refuse to start (exit 4); returns its stderr."""
    try:
        r = khyve_run(args, timeout=30, cwd=cwd)
    except subprocess.TimeoutExpired:
        raise Fail("khyve %s was not refused: it ran the guest" % " ".join(args))
    err = r.stderr.decode()
    check(r.returncode == 4, "khyve %s: exit %d, want 4: %s" % (" ".join(args), r.returncode,
                                                               err))
    check(b"seq" not in r.stdout, "a refused restore must not run the guest")
    return err


@test
def restore_refuses_a_disk_that_moved_on(wd):
    """Restoring onto a disk written since the checkpoint would give the guest memory that does
    not match its disk: refused, with a message and an override.  Disk paths are saved absolute
    (a VM started with a relative path is restored from another directory)."""
    disk(wd, "disk.img")
    vm = VM(wd, cmdline=BLK, extra=["-s", "3,virtio-blk,disk.img"], cwd=wd.path)
    vm.wait_seq(4, timeout=120)
    snap = wd("c.snap")
    vm.ctl("--checkpoint=" + snap)
    info = json.loads(subprocess.run([KHYVECTL, "snapshot", "info", "--json", snap], capture_output=True,
                                     check=True).stdout)
    (d,) = info["disks"]
    check(d["path"] == wd("disk.img") and d["size"] == 8 << 20 and not d["copy"]
          and d["device"] == "pci@0.3.0", "khyvectl snapshot info disks: %r" % info["disks"])
    # The VM goes on writing the disk, then goes away: the checkpoint's disk is gone with it.
    n = len(vm.seqs())
    vm.wait_seq(n + 4, timeout=60)
    vm.wait_for(rb"^blk: pass [1-9]", timeout=60)
    vm.kill()
    ctl = ["-o", "ctl.socket=" + wd("x.sock")]
    err = refused_restore(["-r", snap] + ctl + ["vm1"], cwd="/")
    for needle in ("disk.img", "changed since the snapshot", "snapshot.disk_changed=accept"):
        check(needle in err, "the refusal %r does not say %r" % (err, needle))
    check(wd("disk.img") in err, "the path in %r is not the absolute one" % err)
    err = refused_restore(["-r", snap] + ctl + ["-o", "snapshot.disk_changed=maybe", "vm1"])
    check("snapshot.disk_changed=maybe" in err, "a bad snapshot.disk_changed: %s" % err)
    # The user may insist (the guest then finds its disk as it is now, and says so).
    a = VM(wd, restore=snap, name="vm2", extra=["-o", "snapshot.disk_changed=accept"], cwd="/")
    a.wait_for(rb"^seq \d+$", timeout=120)
    check(b"changed since the snapshot" in a.err, "accept says what it accepted: %r" % a.err)
    a.kill()

    # Suspend: the disk is left as the memory knows it, and a restore from elsewhere works ...
    vm = VM(wd, name="s", cmdline=BLK, extra=["-s", "3,virtio-blk,disk.img"], cwd=wd.path)
    vm.wait_seq(4, timeout=120)
    susp = wd("s.snap")
    vm.ctl("--suspend=" + susp)
    check(vm.wait_exit(60) == 0, "suspend exits 0")
    r = VM(wd, restore=susp, name="s1", cwd="/")
    r.wait_seq(6, timeout=120)
    no_fail(r, "restore of a suspended VM from another directory")
    assert_consecutive(joined_seqs(vm.out, r.out), "suspend + restore")
    r.kill()
    # ... once: the restored VM has written to it since.
    err = refused_restore(["-r", susp] + ctl + ["s2"])
    check("changed since the snapshot" in err,
          "a second restore of one suspend onto the disk the first one ran on: %s" % err)


# ---- clocks ----

def mount_tmpfs(path, size):
    os.makedirs(path, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=" + size, "khyve-e2e", path],
                       capture_output=True)
    if r.returncode:
        raise Fail("this test needs root to mount a tmpfs (%s)" % r.stderr.decode())


def filled_image(path, size):
    """A non-sparse image: every block holds data, so a copy has to write all of it."""
    block = os.urandom(1 << 20)
    with open(path, "wb") as f:
        for _ in range(size >> 20):
            f.write(block)


CLOCKS_WORST = re.compile(rb"^clocks: worst hpet (-?\d+) us, pm (-?\d+) us$", re.M)


@test
def clocks_agree_after_a_slow_checkpoint(wd):
    """A checkpoint that copies a big disk (tmpfs: no reflink, so a real copy, over 1 s) must
    still record every clock as of one instant: after the restore the guest's HPET, PM timer
    and TSC agree within 5 ms (mode=clocks checks every 20 ms)."""
    mnt = wd("tmpfs")
    mount_tmpfs(mnt, "5g")
    try:
        paused = 0
        # Bigger disks until the copy takes over 1 s (a fast host copies 1 GiB in less).
        for size in (256 << 20, 1 << 30, 2 << 30):
            img = os.path.join(mnt, "big.img")
            filled_image(img, size)
            snap = os.path.join(mnt, "c.snap")
            vm = VM(wd, name="c%d" % (size >> 20), cmdline="mode=clocks", cpus=2, mem="128M",
                    extra=["-s", "3,virtio-blk," + img] + CLONE)
            vm.wait_for(rb"^clocks: worst", timeout=120)
            _, reply = vm.ctl("--checkpoint=" + snap)
            paused = reply["paused_ms"]
            # The original ran through the pause with every clock: they agree there too.
            vm.wait_for(rb"^clocks: worst.*\n(.*\n)*clocks: worst", timeout=60)
            no_fail(vm, "the original after a %d ms checkpoint" % paused)
            vm.kill()
            if paused > 1000:
                break
            for f in os.listdir(mnt):
                os.unlink(os.path.join(mnt, f))
        check(paused > 1000, "the checkpoint copied its disk in %d ms: the test needs > 1 s"
              % paused)
        r = VM(wd, restore=snap, name="r")
        r.wait_for(rb"^clocks: worst.*\n(.*\n)*clocks: worst.*\n", timeout=120)
        no_fail(r, "restored after a checkpoint paused %d ms" % paused)
        worst = [max(abs(int(h)), abs(int(p))) for h, p in CLOCKS_WORST.findall(r.out)]
        check(worst and max(worst) < 5000, "clocks disagree by %r us" % worst)
        r.kill()
    finally:
        subprocess.run(["umount", "-l", mnt], capture_output=True)


# ---- checkpoint targets ----

@test
def checkpoint_target_checked_first(wd):
    """A checkpoint replaces its target by rename: never a device, a symlink, a directory, the
    VM's control socket, disk or console log; and a target that cannot work is refused before
    the guest is paused, with nothing written."""
    img = disk(wd)
    log = wd("console.log")
    vm = VM(wd, cpus=2, cmdline="mode=counter mem=32M",
            extra=["-s", "3,virtio-blk," + img, "-l", "com2,file:" + log])
    vm.wait_seq(3, timeout=120)
    link = wd("link.snap")
    os.symlink(wd("elsewhere.snap"), link)
    os.mkdir(wd("dir.snap"))
    fifo = wd("fifo.snap")
    os.mkfifo(fifo)
    # A character device of our own (a khyve that replaced /dev/null would break the host).
    null = wd("null")
    os.mknod(null, 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    cases = [(null, "character device"), (link, "symbolic link"),
             (wd("dir.snap"), "directory"), (fifo, "FIFO"), (vm.sock, "control socket"),
             (img, "disk image"), (log, "COM2 log file"),
             (wd("nodir/x.snap"), "does not exist"), (wd("dir.snap") + "/", "names no file")]
    for target, why in cases:
        before = set(os.listdir(wd.path))
        rc, reply = vm.ctl("--checkpoint=" + target, expect_ok=False)
        check(rc != 0 and not reply.get("ok") and why in reply.get("error", ""),
              "checkpoint to %s: %r, want a refusal saying %r" % (target, reply, why))
        check(set(os.listdir(wd.path)) == before, "checkpoint to %s left %r"
              % (target, set(os.listdir(wd.path)) - before))
    check(os.path.islink(link) and not os.path.exists(wd("elsewhere.snap")), "symlink replaced")
    check(stat.S_ISCHR(os.stat(null).st_mode), "the character device was replaced")
    # The VM still answers on its socket and its disk is still there.
    vm.ctl("--checkpoint=" + wd("ok.snap"))
    check(os.path.getsize(img) == 8 << 20, "the disk image was replaced")
    # Too little room: refused before the pause, with the sizes.
    small = wd("small")
    mount_tmpfs(small, "4m")
    try:
        n = len(vm.seqs())
        rc, reply = vm.ctl("--checkpoint=" + os.path.join(small, "vm.snap"), expect_ok=False)
        err = reply.get("error", "")
        check(rc != 0 and "No space" in err and "MiB free" in err,
              "a checkpoint to a 4 MiB filesystem: %r" % reply)
        check(os.listdir(small) == [], "files left on the small filesystem: %r"
              % os.listdir(small))
    finally:
        subprocess.run(["umount", "-l", small], capture_output=True)
    vm.wait_seq(n + 2, timeout=60)
    assert_consecutive(vm.seqs(), "the guest after refused checkpoints")
    vm.kill()
