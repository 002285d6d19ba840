#!/usr/bin/env python3
"""khyve incremental checkpoint benchmark: a 1 GiB counter guest rewriting a 16 MiB region
continuously, one full checkpoint, then incremental ones, each against dd writing the same
bytes (the incremental file's own data extents, copied out beforehand) with fsync, in the same
run.  Targets (issue 11): bytes <= 1.05x the dirtied pages; time <= 1.3x dd of those bytes.
Then a chain of --chain links (default 100) is restored, against the same chain merged into
one file: the time until the guest runs (khyve -o debug.timing=true), median of --reps.

usage: bench/incremental.py [--reps N] [--dirty 16M] [--mem 1G] [--chain 100]

Files go to a new directory under $TMPDIR (default /tmp).  Timing is reported, never judged:
exit status 0 when every run worked (the restored chain tip went on counting with its memory
check passing), 1 when one did not, 2 when the benchmark could not run.
"""

import argparse
import json
import os
import re
import signal
import struct
import subprocess
import sys
import time

sys.dont_write_bytecode = True	# leave no __pycache__ in the tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import (BUILD, MiB, BenchError, Owned, say, catch_signals, read, unlink, warm,
                      med, preflight, khyve_args, table)

KHYVE = os.path.join(BUILD, "khyve")
KHYVECTL = os.path.join(BUILD, "khyvectl")
GUEST = os.path.join(BUILD, "testguest")
SEQ_RE = re.compile(rb"^seq (\d+)$", re.M)


def now_ms():
    return time.monotonic() * 1e3


def nseq(log):
    return len(SEQ_RE.findall(read(log)))


def wait_seq(log, n, proc, timeout, what):
    end = time.time() + timeout
    while time.time() < end:
        if nseq(log) >= n:
            return
        if proc.poll() is not None:
            raise BenchError("%s exited (%s)" % (what, proc.returncode))
        time.sleep(0.1)
    raise BenchError("%s: no seq %d within %d s" % (what, n, timeout))


def ctl(sock, *args):
    r = subprocess.run([KHYVECTL, "--socket=" + sock, "--json"] + list(args),
                       capture_output=True, timeout=600)
    lines = [l for l in r.stdout.decode().splitlines() if l.strip()]
    reply = json.loads(lines[-1]) if lines else {}
    if r.returncode or not reply.get("ok"):
        raise BenchError("khyvectl %s: %s %s" % (" ".join(args), r.stdout.decode(),
                                                   r.stderr.decode()))
    return reply


def extents(path):
    """The data extents (offset, length) of a snapshot, from its memory map
    (doc/snapshot-format.md)."""
    with open(path, "rb") as f:
        hdr = f.read(100)
        nsec, toff, tlen = struct.unpack_from("<IQQ", hdr, 56)
        f.seek(toff)
        table_ = f.read(tlen)
        for i in range(nsec):
            typ, _ = struct.unpack_from("<II", table_, i * 80)
            off, length = struct.unpack_from("<QQ", table_, i * 80 + 56)
            if typ == 5:
                f.seek(off)
                mm = f.read(length)
                nr = struct.unpack_from("<I", mm, 0)[0]
                pos = 4 + nr * 24
                ne = struct.unpack_from("<I", mm, pos)[0]
                return [struct.unpack_from("<QQ", mm, pos + 4 + j * 24) for j in range(ne)]
    raise BenchError("%s: no memory map" % path)


def dd_floor(own, snap):
    """dd of the bytes @snap's memory holds, from a synced file in the page cache to a new
    file, with fsync; returns (ms, bytes)."""
    src, dst = own.path("dd.src"), own.path("dd.dst")
    n = 0
    with open(snap, "rb") as f, open(src, "wb") as out:
        for off, length in extents(snap):
            f.seek(off)
            out.write(f.read(length))
            n += length
        out.flush()
        os.fsync(out.fileno())
    warm(src)
    unlink(dst)
    t0 = now_ms()
    subprocess.run(["dd", "if=" + src, "of=" + dst, "bs=1M", "conv=fsync", "status=none"],
                   check=True)
    ms = now_ms() - t0
    unlink(dst)
    unlink(src)
    return ms, n


def run(own, args):
    dirty = args.dirty_bytes
    log, sock = own.path("vm.log"), own.path("vm.sock")
    cmd = "mode=counter mem=%d" % dirty
    p = own.spawn(khyve_args(KHYVE, GUEST, args.mem, log, cmd, sock, "incbench"),
                  stderr=open(own.path("vm.err"), "wb"))
    wait_seq(log, 5, p, 120, "khyve")
    base = own.path("inc0.snap")
    ctl(sock, "--checkpoint=" + base)
    rows = []
    for i in range(1, args.reps + 1):
        # Long enough for the guest to rewrite its whole region (several passes a second).
        time.sleep(1.0)
        snap = own.path("inc%d.snap" % i)
        r = ctl(sock, "--checkpoint=" + snap, "--incremental")
        if not r.get("incremental"):
            raise BenchError("checkpoint %d was not incremental: %s" % (i, r.get("note")))
        dd_ms, dd_bytes = dd_floor(own, snap)
        rows.append((r, dd_ms, dd_bytes))
        say("  run %d: %.1f ms (paused %.1f), %d bytes, %d pages; dd of its %d data bytes "
            "%.1f ms" % (i, r["total_ms"], r["paused_ms"], r["bytes"], r["mem_pages"],
                         dd_bytes, dd_ms))
    # A long chain: more incremental links on top, to the chain length asked for.
    for i in range(args.reps + 1, args.chain):
        time.sleep(0.05)
        snap = own.path("inc%d.snap" % i)
        ctl(sock, "--checkpoint=" + snap, "--incremental")
    own.stop(p)
    # The chain restores: the tip's guest goes on counting, its memory check passing.
    rlog, rsock = own.path("r.log"), own.path("r.sock")
    rp = own.spawn([KHYVE, "-r", snap, "-l", "com1,file:" + rlog, "-o", "ctl.socket=" + rsock,
                    "incbench-r"], stderr=open(own.path("r.err"), "wb"))
    wait_seq(rlog, 3, rp, 120, "restored chain tip")
    time.sleep(1.5)
    ok = b"TESTGUEST FAIL" not in read(rlog)
    own.stop(rp)
    merged = own.path("merged.snap")
    subprocess.run([KHYVECTL, "snapshot", "merge", snap, merged], check=True,
                   capture_output=True)
    times = {"chain": [], "merged": []}
    for i in range(args.reps):
        for what, f in (("chain", snap), ("merged", merged)):
            times[what].append(restore_ms(own, f, i))
    return rows, ok, times


RUNNING_RE = re.compile(rb"guest running ([0-9.]+) ms after start")


def restore_ms(own, snap, i):
    """khyve -r @snap until the guest runs, as khyve reports it (debug.timing)."""
    log, sock, err = own.path("t.log"), own.path("t.sock"), own.path("t.err")
    unlink(log)
    p = own.spawn([KHYVE, "-r", snap, "-l", "com1,file:" + log, "-o", "ctl.socket=" + sock,
                   "-o", "debug.timing=true", "incbench-t%d" % i], stderr=open(err, "wb"))
    end = time.time() + 120
    while time.time() < end:
        m = RUNNING_RE.search(read(err))
        if m:
            break
        if p.poll() is not None:
            raise BenchError("restore of %s exited: %s" % (snap, read(err).decode()))
        time.sleep(0.02)
    else:
        raise BenchError("restore of %s: no timing line" % snap)
    wait_seq(log, nseq(log) + 1, p, 60, "restored " + os.path.basename(snap))
    own.stop(p)
    return float(m.group(1))


def report(rows, dirty, times, links):
    b = med([r["bytes"] for r, _, _ in rows])
    pages = med([r["mem_pages"] * 4096 for r, _, _ in rows])
    t = med([r["total_ms"] for r, _, _ in rows])
    pz = med([r["paused_ms"] for r, _, _ in rows])
    dd = med([d for _, d, _ in rows])
    say("")
    table([["figure", "median", "target", "ratio"],
           ["incremental bytes / guest region (%d MiB)" % (dirty // MiB),
            "%d" % b, "<= 1.05x", "%.3fx" % (b / dirty)],
           ["incremental bytes / pages it found dirty", "%d" % pages, "-",
            "%.3fx" % (b / pages)],
           ["incremental checkpoint time / dd of its bytes", "%.1f ms / %.1f ms" % (t, dd),
            "<= 1.3x", "%.2fx" % (t / dd)],
           ["guest pause", "%.1f ms" % pz, "-", "-"],
           ["restore of a %d-link chain / of it merged" % links,
            "%.1f ms / %.1f ms" % (med(times["chain"]), med(times["merged"])), "about 1x",
            "%.2fx" % (med(times["chain"]) / med(times["merged"]))]])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--dirty", default="16M")
    ap.add_argument("--mem", default="1G")
    ap.add_argument("--chain", type=int, default=100)
    args = ap.parse_args()
    args.dirty_bytes = int(args.dirty.rstrip("M")) * MiB
    st = preflight(False)
    if st is not None:
        return st
    catch_signals()
    own = Owned("khyve-incbench-", signal.SIGTERM)
    try:
        say("incremental checkpoints: %s guest, counter rewriting %s, %d runs, files in %s"
            % (args.mem, args.dirty, args.reps, own.dir))
        rows, ok, times = run(own, args)
        report(rows, args.dirty_bytes, times, max(args.chain, args.reps + 1))
        if not ok:
            say("the restored chain tip reported a guest failure")
            return 1
        return 0
    except BenchError as e:
        say("bench: " + str(e))
        return 1
    finally:
        own.cleanup()


if __name__ == "__main__":
    sys.exit(main())
