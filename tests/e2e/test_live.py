"""Live checkpoints: the guest pauses only for vCPU and device state, memory is written while it
runs, and the file holds the state of the pause instant."""

import json
import os
import re
import signal
import subprocess
import time

from khyve_e2e import (KHYVECTL, VM, Fail, assert_consecutive, check, restored_seqs, test,
                       SEQ_RE)


def live(vm, snap, expect_ok=True):
    return vm.ctl("--checkpoint=" + snap, "--live", expect_ok=expect_ok)


def restore_check(wd, vm, snap, name, before, after):
    """Restore @snap: seq continues from one the original printed around the checkpoint, then
    consecutive, and the memory check of a full pass over the pattern passes."""
    r = VM(wd, restore=snap, name=name)
    r.wait_seq(6, timeout=120)
    first, seqs = restored_seqs(r.out)
    assert_consecutive(seqs, "restored from " + os.path.basename(snap))
    check(before <= seqs[0] - 1 <= after[-1],
          "restored seq starts at %d; the original printed %d before the checkpoint"
          % (seqs[0], before))
    check(seqs[0] - 1 in after, "seq %d (before the restored %d) was never printed by the "
          "original" % (seqs[0] - 1, seqs[0]))
    if re.fullmatch(rb"(s?e?q? )?\d*", first) and first and not SEQ_RE.match(first):
        line = ("seq %d" % (seqs[0] - 1)).encode()
        check(line.endswith(first), "restored console starts with %r, not the tail of %r"
              % (first, line))
    # The workers verify every word of their previous pass: several passes over 128 MiB.
    time.sleep(3)
    r.pump(0)
    check(b"TESTGUEST FAIL" not in r.out, "guest check failed after restore:\n" + r.tail())
    r.check_alive()
    r.kill()


@test
def live_checkpoint_hot_4cpus(wd):
    """4 vCPUs rewrite 128 MiB without pause; two live checkpoints; both restore exactly."""
    vm = VM(wd, cpus=4, mem="512M", cmdline="mode=counter mem=128M rate=50")
    vm.wait_seq(5, timeout=120)
    # Until the first pass has touched all 128 MiB (an ordinary checkpoint holds all of it).
    end = time.time() + 120
    while vm.ctl("--checkpoint=" + wd("warm.snap"))[1]["bytes"] < 128 << 20:
        check(time.time() < end, "the guest never filled its 128 MiB")
        time.sleep(0.5)
    os.unlink(wd("warm.snap"))
    snaps = []
    for i in range(2):
        snap = wd("live%d.snap" % i)
        before = vm.seqs()[-1]
        rc, reply = live(vm, snap)
        print("  live checkpoint %d: %r" % (i, reply))
        check(reply.get("live") is True, "reply does not say live: %r" % reply)
        check(reply["bytes"] >= 128 << 20, "a live checkpoint of 128 MiB of pattern wrote %d "
              "bytes" % reply["bytes"])
        check(0 < reply["paused_ms"] <= reply["total_ms"], "reply %r" % reply)
        check(reply["mem_pages"] >= (128 << 20) // 4096, "reply %r" % reply)
        # The guest kept writing while memory was saved: some pages were saved first.
        check(reply["fault_pages"] > 0, "no guest write waited for its page: %r" % reply)
        n = len(vm.seqs())
        vm.wait_seq(n + 10)
        assert_consecutive(vm.seqs(), "original after live checkpoint %d" % i)
        vm.check_alive()
        snaps.append((snap, before, vm.seqs()))
    out = subprocess.run([KHYVECTL, "snapshot", "verify", snaps[0][0]], capture_output=True)
    check(out.returncode == 0, "snapshot verify: %s" % out.stderr.decode())
    vm.kill()
    for i, (snap, before, after) in enumerate(snaps):
        restore_check(wd, vm, snap, "r%d" % i, before, after)


@test
def live_checkpoint_armed_before_pause(wd):
    """RAM is write-protected before the pause while 4 vCPUs rewrite 128 MiB, so pages are
    written between arming and the pause; three live checkpoints back to back all restore with
    the memory check passing (each file holds the pause instant, those pages included)."""
    vm = VM(wd, cpus=4, mem="1G", cmdline="mode=counter mem=128M rate=50")
    vm.wait_seq(5, timeout=120)
    end = time.time() + 180
    while vm.ctl("--checkpoint=" + wd("warm.snap"))[1]["bytes"] < 128 << 20:
        check(time.time() < end, "the guest never filled its 128 MiB")
        time.sleep(1)
    os.unlink(wd("warm.snap"))
    snaps, prearm_faults = [], 0
    for i in range(3):
        snap = wd("armed%d.snap" % i)
        before = vm.seqs()[-1]
        rc, reply = live(vm, snap)
        print("  live checkpoint %d: %r" % (i, reply))
        check(reply.get("live") is True and reply["bytes"] >= 128 << 20, "reply %r" % reply)
        check(1 <= reply["prearm_rounds"] <= 3, "reply %r" % reply)
        parts = reply["pause_stop_us"] + reply["pause_state_us"] + reply["pause_arm_us"]
        check(parts <= reply["paused_ms"] * 1000 + 1, "pause parts %d us > pause: %r"
              % (parts, reply))
        prearm_faults += reply["prearm_faults"]
        snaps.append((snap, before))
    # The guest wrote protected pages before the pause: the case the pause must re-protect.
    check(prearm_faults > 0, "no guest write between arming and the pause in 3 checkpoints")
    n = len(vm.seqs())
    vm.wait_seq(n + 5)
    assert_consecutive(vm.seqs(), "original after the live checkpoints")
    after = vm.seqs()
    vm.kill()
    for i, (snap, before) in enumerate(snaps):
        restore_check(wd, vm, snap, "a%d" % i, before, after)


@test
def live_checkpoint_refusals(wd):
    """Where a live checkpoint cannot be made, the reply says why and the guest runs on."""
    vm = VM(wd, cpus=2, cmdline="mode=counter mem=32M rate=50")
    vm.wait_seq(5, timeout=120)
    rc, reply = live(vm, wd("nodir/x.snap"), expect_ok=False)
    check(rc != 0 and "does not exist" in reply.get("error", ""), "reply %r" % reply)
    vm.ctl("--pause")
    rc, reply = live(vm, wd("p.snap"), expect_ok=False)
    vm.ctl("--resume")
    # A paused guest has nothing to gain from --live: it is checkpointed as it is.
    check(rc == 0 and reply.get("ok") and reply.get("live") is False
          and "paused" in reply.get("live_refused", ""),
          "a paused VM's --live checkpoint: %r" % reply)
    n = len(vm.seqs())
    vm.wait_seq(n + 5)
    assert_consecutive(vm.seqs(), "guest after refused live checkpoints")
    snap = wd("a.snap")
    live(vm, snap)
    vm.kill()


def restored_counter(wd, name, mem, region, cpus=2):
    """A counter guest that has written its whole region, checkpointed, restored: the VM."""
    orig = VM(wd, name=name + "o", cpus=cpus, mem=mem,
              cmdline="mode=counter mem=%s rate=50" % region)
    orig.wait_for(rb"region written once", timeout=600)
    orig.wait_seq(5, timeout=120)
    snap = wd(name + "o.snap")
    orig.ctl("--checkpoint=" + snap)
    orig.kill()
    r = VM(wd, restore=snap, name=name)
    r.wait_seq(5, timeout=120)
    return r


def dirty_log_reply(reply, what):
    check(reply.get("ok") and reply.get("live") is True and reply.get("method") == "dirty-log",
          "%s: reply %r" % (what, reply))
    check(reply["rounds"] >= 2 and reply.get("converged"), "%s: rounds %r" % (what, reply))
    check(0 < reply["paused_ms"] <= reply["total_ms"], "%s: reply %r" % (what, reply))
    parts = reply["pause_stop_us"] + reply["pause_state_us"] + reply["pause_mem_us"]
    check(parts <= reply["paused_ms"] * 1000 + 1, "%s: pause parts %d us: %r"
          % (what, parts, reply))
    check(reply["precopy_pages"] >= reply["mem_pages"] - reply["final_pages"],
          "%s: pages %r" % (what, reply))


@test
def live_checkpoint_restored_vm(wd):
    """A VM restored from a snapshot (RAM a private mapping of that file, which userfaultfd
    cannot write-protect) is checkpointed live by pre-copy with the dirty log while 2 vCPUs
    rewrite 32 MiB: the reply says live and dirty-log, the guest never stops counting, and the
    file restores with the memory check passing and seq going on from the final pause."""
    r = restored_counter(wd, "r0", "256M", "32M")
    snaps = []
    for i in range(2):
        snap = wd("pre%d.snap" % i)
        before = r.seqs()[-1]
        # The second with the tightest budget for the last pages (more rounds, if any).
        rc, reply = r.ctl("--checkpoint=" + snap, "--live", *(["--max-downtime=1"] if i else []))
        print("  live checkpoint of a restored VM %d: %r" % (i, reply))
        dirty_log_reply(reply, "restored VM, checkpoint %d" % i)
        check(reply["mem_pages"] >= (32 << 20) // 4096, "reply %r" % reply)
        # Well past the checkpoint: lines printed before it may still have been unread then.
        n = len(r.seqs())
        r.wait_seq(n + 15)
        assert_consecutive(restored_seqs(r.out)[1], "restored guest after live checkpoint %d"
                           % i)
        r.check_alive()
        snaps.append((snap, before, restored_seqs(r.out)[1]))
    out = subprocess.run([KHYVECTL, "snapshot", "verify", snaps[0][0]], capture_output=True)
    check(out.returncode == 0, "snapshot verify: %s" % out.stderr.decode())
    r.kill()
    for i, (snap, before, after) in enumerate(snaps):
        restore_check(wd, r, snap, "p%d" % i, before, after)


@test
def live_checkpoint_restored_vm_disk_full(wd):
    """The disk fills up during a dirty-log live checkpoint of a restored VM: the reply is an
    error, no file is left, the guest runs on, and the next live checkpoint works."""
    r = restored_counter(wd, "f0", "512M", "128M")
    small = wd("small")
    mount_tmpfs(small, "size=200m")
    try:
        snap = os.path.join(small, "vm.snap")
        p = subprocess.Popen([KHYVECTL, "--vm=" + r.name, "--socket=" + r.sock, "--json",
                              "--checkpoint=" + snap, "--live"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        fill_once_begun(r, small)
        out, err = p.communicate(timeout=300)
        check(p.returncode != 0 and b"No space" in out, "dirty-log live checkpoint onto a "
              "full disk: %r %r" % (out, err))
        check(sorted(os.listdir(small)) == ["fill"], "files left: %r" % os.listdir(small))
        n = len(r.seqs())
        r.wait_seq(n + 15)
        assert_consecutive(restored_seqs(r.out)[1], "restored guest after a failed live "
                           "checkpoint")
        r.check_alive()
        os.unlink(os.path.join(small, "fill"))
        rc, reply = live(r, snap)
        dirty_log_reply(reply, "after the full disk")
    finally:
        subprocess.run(["umount", "-l", small], capture_output=True)
    r.check_alive()
    r.kill()


def fill_once_begun(vm, small):
    """Once the checkpoint's temporary file is in @small, take all the room that is left.  The
    VM is stopped (SIGSTOP) meanwhile: its writer, ahead of the vCPUs, would otherwise have
    written the whole file before a loaded host ran this test again, and the disk would fill
    too late (a live checkpoint's later rounds rewrite pages in place, needing no room)."""
    end = time.time() + 30
    while time.time() < end and not any(f.startswith(".vm.snap.") for f in os.listdir(small)):
        time.sleep(0.001)
    os.kill(vm.p.pid, signal.SIGSTOP)
    try:
        st = os.statvfs(small)
        fd = os.open(os.path.join(small, "fill"), os.O_CREAT | os.O_WRONLY, 0o600)
        try:
            os.posix_fallocate(fd, 0, st.f_bavail * st.f_frsize)
        finally:
            os.close(fd)
    finally:
        os.kill(vm.p.pid, signal.SIGCONT)


def mount_tmpfs(path, opts):
    os.makedirs(path, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "khyve-e2e", path],
                       capture_output=True)
    if r.returncode:
        raise Fail("this test needs root to mount a small tmpfs (%s)" % r.stderr.decode())


@test
def live_checkpoint_disk_full(wd):
    """The disk fills up while memory is written (the guest runs already): the reply is an
    error, no file is left, every page is writable again and the guest runs on unharmed."""
    vm = VM(wd, cpus=4, mem="512M", cmdline="mode=counter mem=256M rate=50")
    vm.wait_seq(5, timeout=120)
    # All 256 MiB in use first, so that writing them takes long after the file appears (the
    # guest says when each vCPU has written all of its share once; a busy host takes minutes).
    vm.wait_for(rb"counter: region written once", 900)
    bytes_ = vm.ctl("--checkpoint=" + wd("warm.snap"))[1]["bytes"]
    check(bytes_ >= 256 << 20, "the guest said its 256 MiB are written, a checkpoint "
          "stored %d bytes" % bytes_)
    os.unlink(wd("warm.snap"))
    small = wd("small")
    mount_tmpfs(small, "size=320m")
    try:
        snap = os.path.join(small, "vm.snap")
        p = subprocess.Popen([KHYVECTL, "--vm=" + vm.name, "--socket=" + vm.sock, "--json",
                              "--checkpoint=" + snap, "--live"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        fill_once_begun(vm, small)
        out, err = p.communicate(timeout=120)
        check(p.returncode != 0 and b"No space" in out, "live checkpoint onto a full disk: %r %r"
              % (out, err))
        check(sorted(os.listdir(small)) == ["fill"], "files left: %r" % os.listdir(small))
        n = len(vm.seqs())
        vm.wait_seq(n + 10)
        assert_consecutive(vm.seqs(), "guest after a failed live checkpoint")
        time.sleep(2)
        vm.check_alive()
        # And a live checkpoint works again afterwards; while it writes, other saves and
        # pauses are refused, and its reply still names its own file.
        os.unlink(os.path.join(small, "fill"))
        p = subprocess.Popen([KHYVECTL, "--vm=" + vm.name, "--socket=" + vm.sock, "--json",
                              "--checkpoint=" + snap, "--live"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        end = time.time() + 30
        while time.time() < end and not any(f.startswith(".vm.snap.") for f in os.listdir(small)):
            time.sleep(0.001)
        rc, busy = live(vm, wd("other.snap"), expect_ok=False)
        rc2, paused = vm.ctl("--pause", expect_ok=False)
        out, err = p.communicate(timeout=120)
        reply = json.loads(out.decode().splitlines()[-1])
        check(p.returncode == 0 and reply.get("live") is True and reply.get("file") == snap,
              "live checkpoint after the full disk: %r %r" % (out, err))
        check("being written" in busy.get("error", "") and not os.path.exists(wd("other.snap")),
              "a second live checkpoint meanwhile: %r" % busy)
        check("being written" in paused.get("error", ""), "a pause meanwhile: %r" % paused)
    finally:
        subprocess.run(["umount", "-l", small], capture_output=True)
    vm.check_alive()
    vm.kill()


@test
def live_checkpoint_blk_dma(wd):
    """virtio-blk keeps reading into guest memory from its own thread while memory is written:
    those writes wait for their pages like the vCPUs' do.  The disk copy (snapshot.disks=clone)
    and the memory of the pause instant restore together: the guest's own data checks pass."""
    img = wd("disk.img")
    with open(img, "wb") as f:
        f.truncate(8 << 20)
    vm = VM(wd, cpus=2, cmdline="mode=blk rering=0 rate=50",
            extra=["-s", "3,virtio-blk," + img, "-o", "snapshot.disks=clone"])
    vm.wait_seq(20, timeout=120)
    snaps = []
    for i in range(3):
        snap = wd("blk%d.snap" % i)
        before = vm.seqs()[-1]
        rc, reply = live(vm, snap)
        check(reply.get("live") is True, "reply %r" % reply)
        n = len(vm.seqs())
        vm.wait_seq(n + 10)
        assert_consecutive(vm.seqs(), "blk guest after live checkpoint %d" % i)
        vm.check_alive()
        snaps.append((snap, before, vm.seqs()))
    vm.kill()
    for i, (snap, before, after) in enumerate(snaps):
        r = VM(wd, restore=snap, name="b%d" % i)
        r.wait_seq(15, timeout=120)
        first, seqs = restored_seqs(r.out)
        assert_consecutive(seqs, "blk guest restored from live checkpoint %d" % i)
        check(before <= seqs[0] - 1 <= after[-1], "restored seq starts at %d, the original "
              "printed %d before checkpoint %d" % (seqs[0], before, i))
        r.check_alive()
        r.kill()


GENID_RE = re.compile(rb"^vmgenid ([0-9a-f]{32})$", re.M)


def genids(out):
    return [m.group(1) for m in GENID_RE.finditer(out)]


@test
def vmgenid_changes_on_every_restore(wd):
    """The guest reads its VM Generation ID from ACPI: one at boot, kept across checkpoints
    that are not restored (live or not), a new one with a notification at every restore."""
    vm = VM(wd, cpus=2, cmdline="mode=counter mem=16M rate=50")
    vm.wait_for(rb"^vmgenid [0-9a-f]{32}$", timeout=120)
    snap, snap2 = wd("g.snap"), wd("g2.snap")
    vm.ctl("--checkpoint=" + snap)
    live(vm, snap2)
    n = len(vm.seqs())
    vm.wait_seq(n + 150)  # three seconds: the guest looks at the id once a second
    booted = genids(vm.out)
    check(len(booted) == 1 and booted[0] != b"0" * 32,
          "the running guest's id changed across checkpoints: %r" % booted)
    check(b"vmgenid notify" not in vm.out, "a checkpoint notified the running guest")
    vm.kill()
    seen = [booted[0]]
    for i, path in enumerate((snap, snap, snap2)):
        r = VM(wd, restore=path, name="r%d" % i)
        r.wait_for(rb"^vmgenid notify 1$", timeout=120)
        r.wait_for(rb"^vmgenid [0-9a-f]{32}$", timeout=30)
        ids = genids(r.out)
        check(len(ids) == 1, "restore %d printed ids %r" % (i, ids))
        check(ids[0] not in seen, "restore %d got id %s, seen before: %r" % (i, ids[0], seen))
        seen.append(ids[0])
        r.check_alive()
        r.kill()
    # Off: no device, the guest finds no id.
    vm = VM(wd, name="off", cmdline="mode=counter mem=16M rate=50", extra=["-o", "vmgenid=off"])
    vm.wait_seq(60, timeout=120)
    check(not genids(vm.out), "vmgenid=off still shows an id")
    vm.kill()
