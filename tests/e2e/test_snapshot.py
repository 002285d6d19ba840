"""Snapshots: checkpoint, suspend, restore, generations, refused files, faults."""

import glob
import os
import re
import struct
import subprocess
import time

from khyve_e2e import (KHYVECTL, VM, Fail, assert_consecutive, check, khyve_run, restored_seqs,
                       test, SEQ_RE)


def checkpoint_and_restore(wd, cpus, gens=1, mem="256M", cmdline="mode=counter", extra=()):
    vm = VM(wd, cpus=cpus, mem=mem, cmdline=cmdline, extra=extra)
    vm.wait_seq(4, timeout=120)
    for gen in range(gens):
        snap = wd("gen%d.snap" % gen)
        before = vm.seqs()[-1]
        rc, reply = vm.ctl("--checkpoint=" + snap)
        check(reply["bytes"] > 0 and reply["paused_ms"] <= reply["total_ms"], "reply %r" % reply)
        # The running VM goes on after a checkpoint, with no gap and no repeat.
        n = len(vm.seqs())
        vm.wait_seq(n + 3)
        assert_consecutive(vm.seqs(), "original after checkpoint %d" % gen)
        after = vm.seqs()
        vm.kill()
        # The restored VM continues from the checkpoint: the next seq after one the original
        # printed around the checkpoint, then consecutive.
        r = VM(wd, restore=snap, name="vm%d" % (gen + 1))
        r.wait_seq(3, timeout=120)
        first, seqs = restored_seqs(r.out)
        assert_consecutive(seqs, "restored generation %d" % (gen + 1))
        check(before <= seqs[0] - 1 <= after[-1],
              "restored seq starts at %d; the original printed %d before the checkpoint"
              % (seqs[0], before))
        check(seqs[0] - 1 in after, "seq %d (before the restored %d) was never printed by "
              "the original" % (seqs[0] - 1, seqs[0]))
        if re.fullmatch(rb"(s?e?q? )?\d*", first) and first and not SEQ_RE.match(first):
            # The tail of a line the original had begun: it must complete "seq N-1".
            line = ("seq %d" % (seqs[0] - 1)).encode()
            check(line.endswith(first), "restored console starts with %r, not the tail of %r"
                  % (first, line))
        check(b"TESTGUEST FAIL" not in r.out, "guest check failed after restore:\n" + r.tail())
        vm = r
    vm.kill()


@test
def checkpoint_restore_1cpu(wd):
    checkpoint_and_restore(wd, 1)


@test
def checkpoint_restore_4cpus(wd):
    checkpoint_and_restore(wd, 4)


@test
def three_generations(wd):
    checkpoint_and_restore(wd, 2, gens=3)


@test
def buffered_checkpoints(wd):
    """snapshot.direct=off: memory through the page cache (the default writes it O_DIRECT, which
    every other snapshot test uses); a value that is neither on nor off is refused at start."""
    r = khyve_run(["-m", "64M", "-o", "snapshot.direct=sometimes", "-o", "boot.kernel=none",
                   "vm"])
    check(r.returncode != 0 and b"snapshot.direct=sometimes: expected on or off" in r.stderr,
          "a bad snapshot.direct: %d %r" % (r.returncode, r.stderr))
    checkpoint_and_restore(wd, 2, gens=2, extra=["-o", "snapshot.direct=off"])


@test
def suspend_restore(wd):
    for cpus in (1, 4):
        vm = VM(wd, cpus=cpus, name="s%d" % cpus)
        vm.wait_seq(4, timeout=120)
        snap = wd("susp%d.snap" % cpus)
        vm.ctl("--suspend=" + snap)
        check(vm.wait_exit(30) == 0, "suspend must end khyve with status 0")
        r = VM(wd, restore=snap, name="r%d" % cpus)
        r.wait_seq(3, timeout=120)
        # Together the two consoles are one unbroken sequence.
        joined = vm.out + r.out
        seqs = [int(m.group(1)) for m in (SEQ_RE.match(l) for l in joined.split(b"\n")[:-1]) if m]
        assert_consecutive(seqs, "suspend + restore (%d vCPUs)" % cpus)
        check(seqs[0] == 1, "sequence must start at 1")
        check(b"TESTGUEST FAIL" not in joined, "guest check failed:\n" + r.tail())
        r.kill()


TICKS_RE = re.compile(rb"^ticks: rtc (\d+) pit (\d+) hpet (\d+) lapic((?: \d+)+)$")


def ticks(out, partial_first=False):
    """The guest's ticks lines (counter mode, ticks=1): (rtc seconds of day, PIT interrupts,
    HPET interrupts, [LAPIC timer interrupts per CPU]), from complete lines only."""
    lines = out.split(b"\n")[:-1]
    if partial_first:
        lines = lines[1:]
    return [(int(m.group(1)), int(m.group(2)), int(m.group(3)), [int(x) for x in m.group(4).split()])
            for m in (TICKS_RE.match(l) for l in lines) if m]


def wait_ticks(vm, n, partial_first=False, timeout=60):
    end = time.time() + timeout
    while len(ticks(vm.out, partial_first)) < n:
        check(time.time() < end, "no %d ticks lines in %d s:\n%s" % (n, timeout, vm.tail()))
        vm.check_alive()
        vm.pump(0.2)
    return ticks(vm.out, partial_first)


def timers_fired(a, b, cpus, what):
    """Between ticks lines @a and @b every timer interrupted the guest."""
    check(len(a[3]) == cpus and len(b[3]) == cpus, "%s: LAPIC counts of %d CPUs: %r %r"
          % (what, cpus, a, b))
    check(b[1] > a[1], "%s: no PIT interrupt between %r and %r" % (what, a, b))
    check(b[2] > a[2], "%s: no HPET interrupt between %r and %r" % (what, a, b))
    for cpu, (x, y) in enumerate(zip(a[3], b[3])):
        check(y > x, "%s: no LAPIC timer interrupt on CPU %d between %r and %r"
              % (what, cpu, a, b))


@test
def checkpoints_under_timer_load(wd):
    """Many checkpoints in a row while every timer interrupts the guest; the timers go on
    firing through them, and again in the VM restored from the last one."""
    vm = VM(wd, cpus=4, cmdline="mode=counter rate=20 ticks=1")
    vm.wait_seq(10, timeout=120)
    first = wait_ticks(vm, 2)
    timers_fired(first[0], first[1], 4, "before the checkpoints")
    snap = wd("load.snap")
    for _ in range(6):
        vm.ctl("--checkpoint=" + snap)
    saved = ticks(vm.out)[-1]
    k = len(ticks(vm.out))
    after = wait_ticks(vm, k + 2)
    timers_fired(after[k], after[k + 1], 4, "after 6 checkpoints")
    n = len(vm.seqs())
    vm.wait_seq(n + 5)
    assert_consecutive(vm.seqs(), "original under repeated checkpoints")
    check(b"TESTGUEST FAIL" not in vm.out, "original: guest failed:\n" + vm.tail())
    vm.kill()
    r = VM(wd, restore=snap, name="vm1")
    r.wait_seq(10, timeout=120)
    t = wait_ticks(r, 3, partial_first=True)
    timers_fired(t[-2], t[-1], 4, "restored after repeated checkpoints")
    # The counts live in guest memory: the restored guest goes on from the saved ones.
    check(t[0][1] >= saved[1], "restored PIT count %d is below the %d seen before the last "
          "checkpoint" % (t[0][1], saved[1]))
    assert_consecutive(restored_seqs(r.out)[1], "restored after repeated checkpoints")
    r.check_alive()


# ---- refused files ----

HDR = struct.Struct("<8sII32sQIQQQQQ")
SEC = struct.Struct("<II48sQQQ")


def sections(path):
    with open(path, "rb") as f:
        data = f.read(4096)
        h = HDR.unpack_from(data)
        nsec, toff, tlen = h[5], h[6], h[7]
        f.seek(toff)
        table = f.read(tlen)
    out = {}
    for i in range(nsec):
        typ, ver, sid, off, length, _ = SEC.unpack_from(table, i * SEC.size)
        out[sid.rstrip(b"\0").decode()] = (typ, off, length)
    return out


def first_extent(path, memmap):
    """File offset of the first guest-memory extent the memory map lists."""
    _, off, length = memmap
    with open(path, "rb") as f:
        f.seek(off)
        data = f.read(length)
    nreg = struct.unpack_from("<I", data)[0]
    pos = 4 + nreg * 24
    next_ = struct.unpack_from("<I", data, pos)[0]
    check(next_ > 0, "the snapshot holds no guest memory")
    return struct.unpack_from("<Q", data, pos + 4)[0]


def flip(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x10]))


def copy(src, dst):
    with open(src, "rb") as a, open(dst, "wb") as b:
        b.write(a.read())


def refuse_restore(wd, path, needle, *extra):
    r = khyve_run(["-r", path, "-o", "ctl.socket=" + wd("x.sock"), *extra, "vmx"], timeout=60)
    err = r.stderr.decode()
    check(r.returncode == 4, "restore of %s: exit %d, want 4; stderr %s" %
          (os.path.basename(path), r.returncode, err))
    check(needle in err, "restore of %s: %r does not say %r" % (os.path.basename(path), err,
                                                               needle))
    check(b"seq" not in r.stdout, "a refused snapshot must not run the guest")
    v = subprocess.run([KHYVECTL, "snapshot", "verify", path], capture_output=True)
    return v


@test
def refused_snapshots(wd):
    vm = VM(wd, cpus=2)
    vm.wait_seq(3, timeout=120)
    good = wd("good.snap")
    vm.ctl("--checkpoint=" + good)
    vm.kill()
    secs = sections(good)
    check("meta" in secs and "uart@com1" in secs, "sections: %r" % list(secs))
    v = subprocess.run([KHYVECTL, "snapshot", "verify", good], capture_output=True)
    check(v.returncode == 0, "verify of a good snapshot: %s" % v.stdout.decode())

    cases = []
    p = wd("meta.snap"); copy(good, p); flip(p, secs["meta"][1] + 10)
    cases.append((p, "checksum"))
    p = wd("dev.snap"); copy(good, p); flip(p, secs["uart@com1"][1] + 1)
    cases.append((p, "checksum"))
    p = wd("mem.snap"); copy(good, p)
    flip(p, first_extent(good, secs["memory"]) + 100)
    cases.append((p, "memory"))
    p = wd("version.snap"); copy(good, p)
    with open(p, "r+b") as f:
        f.seek(8)
        f.write(struct.pack("<I", 99))
    cases.append((p, "format version 99"))
    p = wd("trunc.snap"); copy(good, p)
    os.truncate(p, os.path.getsize(p) // 2)
    cases.append((p, "trunc"))
    p = wd("short.snap"); copy(good, p)
    os.truncate(p, 100)
    cases.append((p, "too short"))
    p = wd("notsnap.snap")
    with open(p, "wb") as f:
        f.write(b"\x7fELF" + b"\0" * 8192)
    cases.append((p, "not a khyve snapshot"))
    for path, needle in cases:
        v = refuse_restore(wd, path, needle)
        check(v.returncode != 0, "khyvectl snapshot verify accepted %s" % path)
    # Command-line options must match the snapshot, except backend paths.
    refuse_restore(wd, good, "does not match", "-c", "3")
    refuse_restore(wd, good, "not in the snapshot", "-s", "5,hostbridge")
    # ...while a changed backend path is accepted (console moved to a log file).
    log = wd("console.log")
    r = VM(wd, restore=good, name="vmlog", extra=["-l", "com1,file:" + log])
    def logged():
        return open(log, "rb").read() if os.path.exists(log) else b""
    end = time.time() + 60
    while time.time() < end and b"seq" not in logged():
        r.check_alive()
        time.sleep(0.2)
    check(b"seq" in logged(), "restored console did not reach the new log file")
    check(r.out == b"", "the restored console must go to the log file only")
    r.kill()


# ---- faults ----

def mount_tmpfs(path, opts):
    os.makedirs(path, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "khyve-e2e", path],
                       capture_output=True)
    if r.returncode:
        raise Fail("this test needs root to mount a small tmpfs (%s)" % r.stderr.decode())


def umount(path):
    subprocess.run(["umount", "-l", path], capture_output=True)


@test
def checkpoint_faults(wd):
    vm = VM(wd, cpus=2, cmdline="mode=counter mem=32M")
    vm.wait_seq(3, timeout=120)
    small, ro = wd("small"), wd("ro")
    mount_tmpfs(small, "size=4m")
    mount_tmpfs(ro, "size=4m")
    try:
        # A good small snapshot first is impossible on a 4 MiB fs: put an "old" file there.
        old = os.path.join(small, "vm.snap")
        with open(old, "wb") as f:
            f.write(b"previous contents")
        subprocess.run(["mount", "-o", "remount,ro", ro], check=True)
        for target, why in ((old, "No space"), (os.path.join(ro, "vm.snap"), "Read-only")):
            rc, reply = vm.ctl("--checkpoint=" + target, expect_ok=False)
            check(rc == 1 and not reply.get("ok"), "checkpoint to %s should fail: %r" %
                  (target, reply))
            check(why in reply.get("error", ""), "error %r should say %r" % (reply, why))
            n = len(vm.seqs())
            vm.wait_seq(n + 2)
            assert_consecutive(vm.seqs(), "guest after a failed checkpoint")
        check(open(old, "rb").read() == b"previous contents", "the old file was damaged")
        check(os.listdir(small) == ["vm.snap"], "temporary files left: %r" % os.listdir(small))
    finally:
        umount(small)
        umount(ro)
    vm.kill()


@test
def kill_during_save(wd):
    vm = VM(wd, cpus=2, mem="2G", cmdline="mode=counter mem=1024M")
    vm.wait_seq(6, timeout=180)
    snap = wd("k.snap")
    vm.ctl("--checkpoint=" + snap)
    before = open(snap, "rb").read(4096)
    ctl = subprocess.Popen([KHYVECTL, "--vm=vm0", "--socket=" + vm.sock, "--json",
                            "--checkpoint=" + snap], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    end = time.time() + 30
    while time.time() < end and not glob.glob(wd(".k.snap.*")):
        time.sleep(0.001)
    vm.p.kill()
    vm.p.wait()
    ctl.wait(30)
    check(ctl.returncode != 0, "khyvectl must report the lost VM")
    check(open(snap, "rb").read(4096) == before, "the previous snapshot was replaced")
    v = subprocess.run([KHYVECTL, "snapshot", "verify", snap], capture_output=True)
    check(v.returncode == 0, "previous snapshot no longer verifies: %s" % v.stdout.decode())
    r = VM(wd, restore=snap, name="vm1")
    r.wait_seq(3, timeout=120)
    assert_consecutive(restored_seqs(r.out)[1], "restore of the surviving snapshot")
    r.kill()


@test
def restore_with_wallclock_catchup(wd):
    """snapshot.time=catchup: the guest's wall clock (RTC) moved on by the time away, its timers
    still fire and its counter goes on."""
    away = 5
    vm = VM(wd, cpus=2, cmdline="mode=counter ticks=1")
    vm.wait_seq(4, timeout=120)
    wait_ticks(vm, 2)
    snap = wd("t.snap")
    vm.ctl("--suspend=" + snap)
    check(vm.wait_exit(30) == 0, "suspend exits 0")
    before = ticks(vm.out)[-1]
    time.sleep(away)
    r = VM(wd, restore=snap, name="vm1", extra=["-o", "snapshot.time=catchup"])
    r.wait_seq(12, timeout=120)
    t = wait_ticks(r, 2)
    # The last line before the suspend was at most 1 s before it, the RTC counts whole seconds:
    # a guest whose clock stayed frozen would be at most 3 s on; one that caught up, >= away-1.
    gone = (t[0][0] - before[0]) % 86400
    check(away - 1 <= gone <= away + 60, "the guest's RTC moved %d s across a suspend of %d s "
          "(%r, then %r): it did not catch up" % (gone, away, before, t[0]))
    # ... to the host's wall clock (the RTC keeps host local time by default).
    lt = time.localtime()
    host = lt.tm_hour * 3600 + lt.tm_min * 60 + lt.tm_sec
    last = ticks(r.out)[-1][0]
    check(min((host - last) % 86400, (last - host) % 86400) <= 3,
          "the restored guest's RTC says %d s into the day, the host %d" % (last, host))
    timers_fired(t[0], t[1], 2, "after the catch-up")
    lines = (vm.out + r.out).split(b"\n")[:-1]
    seqs = [int(l[4:]) for l in lines if l.startswith(b"seq ") and l[4:].isdigit()]
    assert_consecutive(seqs, "suspend, %d s away, restore with catch-up" % away)
    r.check_alive()
    r.kill()
    bad = khyve_run(["-r", snap, "-o", "ctl.socket=off", "-o", "snapshot.time=later", "vm2"])
    check(bad.returncode == 4 and b"snapshot.time=later" in bad.stderr, "bad snapshot.time")


@test
def restore_with_prefetch(wd):
    """snapshot.prefetch=read and write: the restored guest counts on and its memory check
    passes; checkpoints (full, then incremental on it) taken while the prefetch may still run
    stop it and restore correctly; a bad value is refused."""
    vm = VM(wd, cpus=2, mem="1G", cmdline="mode=counter mem=256M rate=10")
    vm.wait_for(rb"counter: region written once", timeout=180)
    base = wd("base.snap")
    vm.ctl("--checkpoint=" + base)
    vm.kill()
    for mode in ("read", "write"):
        r = VM(wd, restore=base, name="p" + mode,
               extra=["-o", "snapshot.prefetch=" + mode, "-o", "log.level=debug"])
        r.wait_seq(1, timeout=120)
        # At once: 256 MiB take a while to prefetch, so these likely stop it half-way.
        full, inc = wd(mode + "-full.snap"), wd(mode + "-inc.snap")
        r.ctl("--checkpoint=" + full)
        rc, reply = r.ctl("--checkpoint=" + inc, "--incremental")
        check(reply.get("incremental"), "incremental checkpoint reply %r" % reply)
        r.wait_seq(len(r.seqs()) + 3, timeout=120)
        r.check_alive()
        assert_consecutive(restored_seqs(r.out)[1], "restored with prefetch=" + mode)
        r.kill()
        check(("prefetch (%s)" % mode).encode() in r.err,
              "no prefetch (%s) in khyve's log:\n%s" % (mode, r.err.decode(errors="replace")))
        for snap in (full, inc):
            c = VM(wd, restore=snap, name="c" + mode + os.path.basename(snap)[len(mode) + 1],
                   extra=["-o", "snapshot.prefetch=" + mode])
            c.wait_seq(4, timeout=120)
            c.check_alive()  # the guest's memory check: every word as it left it
            assert_consecutive(restored_seqs(c.out)[1], "restore of %s" % snap)
            c.kill()
    bad = khyve_run(["-r", base, "-o", "ctl.socket=off", "-o", "snapshot.prefetch=eager", "vx"])
    check(bad.returncode == 4 and b"snapshot.prefetch=eager" in bad.stderr,
          "bad snapshot.prefetch: %d %r" % (bad.returncode, bad.stderr))
