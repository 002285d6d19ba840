"""Incremental snapshots: chains of checkpoints, restore of every link, merge, refused parents."""

import os
import re
import struct
import subprocess
import time

from khyve_e2e import (KHYVECTL, VM, assert_consecutive, check, khyve_run, restored_seqs, test)

# The counter guest rewrites (and checks) REGION continuously: what each link must hold.
REGION = 4 << 20
CMDLINE = "mode=counter mem=%d" % REGION


def restore_continues(wd, snap, name, before, after):
    """Restore @snap: seq continues from the checkpoint and the guest's memory check passes."""
    r = VM(wd, restore=snap, name=name)
    r.wait_seq(3, timeout=120)
    _, seqs = restored_seqs(r.out)
    assert_consecutive(seqs, "restored " + os.path.basename(snap))
    check(before <= seqs[0] - 1 <= after, "%s: restored seq starts at %d, checkpoint was "
          "between %d and %d" % (snap, seqs[0], before, after))
    # A few passes of the pattern over the region: every word read back is checked.
    r.wait_seq(len(r.seqs()) + 3, timeout=60)
    check(b"TESTGUEST FAIL" not in r.out, "memory check failed after restoring %s:\n%s"
          % (snap, r.tail()))
    r.kill()
    return seqs


PASSES_RE = re.compile(rb"^passes:((?: \d+)+)\n", re.M)


def passes_after(vm, offset):
    """Each vCPU's finished passes over its share, from the first passes line (cmdline passes=1)
    that starts at or after @offset in the console."""
    end = time.time() + 60
    while True:
        m = PASSES_RE.search(vm.out, offset)
        if m:
            return [int(x) for x in m.group(1).split()], m.end()
        check(time.time() < end, "no passes line for 60 s:\n" + vm.tail())
        vm.check_alive()
        vm.pump(0.2)


def wait_region_rewritten(vm):
    """Wait until every vCPU has written its whole share after this moment: two more finished
    passes than it had at the next passes line (the pass it was in may have begun before)."""
    vm.drain()
    start, off = passes_after(vm, len(vm.out))
    while True:
        now, off = passes_after(vm, off)
        if all(n >= s + 2 for n, s in zip(now, start)):
            return


def take_chain(wd, vm, links, prefix="c", rewritten=False):
    """A full checkpoint, then @links incremental ones; [(file, seq before, seq after, reply)].
    @rewritten: between two links the guest rewrites its whole region (cmdline passes=1)."""
    out = []
    for i in range(links + 1):
        snap = wd("%s%d.snap" % (prefix, i))
        vm.wait_seq(len(vm.seqs()) + 1)
        before = vm.seqs()[-1]
        args = ["--checkpoint=" + snap]
        if i:
            args += ["--incremental"] if i % 2 else ["--parent=" + out[-1][0]]
        _, reply = vm.ctl(*args)
        check(bool(reply.get("incremental")) == (i > 0), "link %d reply %r" % (i, reply))
        if i:
            check(reply["parent"] == os.path.basename(out[-1][0]), "parent %r" % reply)
        vm.wait_seq(len(vm.seqs()) + 1)
        if rewritten:
            wait_region_rewritten(vm)
        out.append((snap, before, vm.seqs()[-1], reply))
    return out


def chain_of(wd, links):
    vm = VM(wd, mem="64M", cmdline=CMDLINE)
    vm.wait_seq(3, timeout=120)
    chain = take_chain(wd, vm, links)
    vm.kill()
    for i, (snap, before, after, _) in enumerate(chain):
        if i in (0, 1, len(chain) - 1) or links <= 3:
            restore_continues(wd, snap, "r%d" % i, before, after)
    return chain


@test
def chain_1(wd):
    chain_of(wd, 1)


@test
def chain_3(wd):
    chain_of(wd, 3)


@test
def chain_20(wd):
    chain = chain_of(wd, 20)
    r = subprocess.run([KHYVECTL, "snapshot", "verify", chain[-1][0]], capture_output=True)
    check(r.returncode == 0 and b"21 links" in r.stdout, "verify: %r %r" % (r.stdout, r.stderr))


@test
def incremental_bytes(wd):
    """An incremental checkpoint stores about the pages the guest dirtied: its region."""
    vm = VM(wd, mem="256M", cmdline=CMDLINE + " passes=1")
    vm.wait_seq(3, timeout=120)
    chain = take_chain(wd, vm, 2, rewritten=True)
    vm.kill()
    full, inc = chain[0][3], chain[2][3]
    region_pages = REGION // 4096
    # The region, plus what else the guest writes (stack, its data, page tables).
    check(region_pages <= inc["mem_pages"] <= region_pages + 256,
          "incremental stored %d pages; the guest dirties %d" % (inc["mem_pages"], region_pages))
    check(inc["bytes"] <= inc["mem_pages"] * 4096 + (256 << 10),
          "incremental wrote %d bytes for %d pages" % (inc["bytes"], inc["mem_pages"]))
    check(inc["bytes"] < full["bytes"], "incremental %d not less than full %d"
          % (inc["bytes"], full["bytes"]))


def live_then_incremental(wd, vm, prefix, method):
    """A live checkpoint of @vm, then an incremental one naming it as the parent:
    (incremental file, seq before it, seq after it, its reply)."""
    live = wd(prefix + "live.snap")
    nxt = wd(prefix + "next.snap")
    vm.wait_seq(len(vm.seqs()) + 1)
    _, lr = vm.ctl("--checkpoint=" + live, "--live")
    check(lr.get("live") is True and lr.get("method") == method, "live reply %r" % lr)
    vm.wait_seq(len(vm.seqs()) + 2)
    before = vm.seqs()[-1]
    _, ir = vm.ctl("--checkpoint=" + nxt, "--parent=" + live)
    check(ir.get("incremental") is True and ir.get("parent") == os.path.basename(live),
          "incremental reply %r" % ir)
    vm.wait_seq(len(vm.seqs()) + 1)
    return nxt, before, vm.seqs()[-1], ir


@test
def live_parent(wd):
    """A live checkpoint is the parent of the next incremental one, for a booted VM (write
    protection) and a restored one (dirty-log pre-copy); each chain restores and continues."""
    vm = VM(wd, mem="64M", cmdline=CMDLINE)
    vm.wait_seq(3, timeout=120)
    nxt, before, after, _ = live_then_incremental(wd, vm, "b", "write-protect")
    vm.kill()
    restore_continues(wd, nxt, "rb", before, after)
    r = VM(wd, restore=nxt, name="rl")
    r.wait_seq(3, timeout=120)
    nxt2, before, after, ir = live_then_incremental(wd, r, "r", "dirty-log")
    r.kill()
    # Exactly the pages written since the live checkpoint's final pause: the guest's region
    # and little more, far less than the guest's memory.
    check(ir["mem_pages"] <= REGION // 4096 + 256, "incremental after a dirty-log live "
          "checkpoint stored %d pages" % ir["mem_pages"])
    restore_continues(wd, nxt2, "rr", before, after)


def mem_area(path):
    with open(path, "rb") as f:
        hdr = f.read(100)
        off, size = struct.unpack_from("<QQ", hdr, 84)
        f.seek(off)
        return f.read(size)


@test
def merge_equals_chain(wd):
    vm = VM(wd, mem="64M", cmdline=CMDLINE)
    vm.wait_seq(3, timeout=120)
    chain = take_chain(wd, vm, 3)
    # Paused: a full checkpoint of the same instant as the last link.
    vm.ctl("--pause")
    last = wd("c4.snap")
    vm.ctl("--checkpoint=" + last, "--incremental")
    flat = wd("flat.snap")
    vm.ctl("--checkpoint=" + flat)
    vm.kill()
    merged = wd("merged.snap")
    r = subprocess.run([KHYVECTL, "snapshot", "merge", last, merged], capture_output=True)
    check(r.returncode == 0, "merge: %r %r" % (r.stdout, r.stderr))
    check(mem_area(merged) == mem_area(flat), "the merged chain's memory differs from a full "
          "checkpoint of the same instant")
    before = chain[-1][2]
    restore_continues(wd, merged, "rm", before, before + 10**6)


@test
def changed_parent_refused(wd):
    vm = VM(wd, mem="64M", cmdline=CMDLINE)
    vm.wait_seq(3, timeout=120)
    chain = take_chain(wd, vm, 2)
    # Another checkpoint over the middle link: the tip's parent is not that file any more.
    vm.ctl("--checkpoint=" + chain[1][0])
    vm.kill()
    tip = chain[2][0]
    r = khyve_run(["-r", tip, "x"])
    err = r.stderr.decode()
    check(r.returncode != 0 and os.path.basename(chain[1][0]) in err and "changed" in err,
          "restore of a chain with a changed parent: rc %d: %s" % (r.returncode, err))
    r = subprocess.run([KHYVECTL, "snapshot", "verify", tip], capture_output=True)
    check(r.returncode != 0 and b"changed" in r.stderr, "verify: %r" % r.stderr)
    os.unlink(chain[1][0])
    r = khyve_run(["-r", tip, "x"])
    err = r.stderr.decode()
    check(r.returncode != 0 and "missing" in err and os.path.basename(chain[1][0]) in err,
          "restore of a chain with a missing parent: %s" % err)


@test
def no_parent_refused(wd):
    vm = VM(wd, mem="64M", cmdline=CMDLINE)
    vm.wait_seq(2, timeout=120)
    rc, reply = vm.ctl("--checkpoint=" + wd("a.snap"), "--incremental", expect_ok=False)
    check(rc != 0 and "needs a parent" in reply.get("error", ""), "reply %r" % reply)
    vm.ctl("--checkpoint=" + wd("a.snap"))
    rc, reply = vm.ctl("--checkpoint=" + wd("b.snap"), "--parent=" + wd("zzz.snap"),
                       expect_ok=False)
    check(rc != 0 and "not this VM's last checkpoint" in reply.get("error", ""),
          "reply %r" % reply)
    os.mkdir(wd("sub"))
    rc, reply = vm.ctl("--checkpoint=" + wd("sub/b.snap"), "--incremental", expect_ok=False)
    check(rc != 0 and "directory of its parent" in reply.get("error", ""), "reply %r" % reply)
    vm.kill()
