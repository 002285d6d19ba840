#!/usr/bin/env python3
"""Restore prefetch: time from spawning a restore until the guest has rewritten its whole
region once, for khyve with each snapshot.prefetch setting and for QEMU's restore (which
loads every page before the guest runs), in the same run.  bench/README.md explains it.

usage: bench/prefetch.py [--reps N] [--size 1G] [--touched 128] [--modes off,read,...]
                         [--no-qemu] [--cold]

The guest: the counter test guest on 2 vCPUs rewriting a --touched MiB region (default 128)
with passes=1, so each "seq" line is followed by "passes: A B", how many whole passes over
its share each vCPU has finished.  The figure is the time from spawn until every vCPU's count
is two more than in the first such line after the restore: each vCPU has then finished the
pass it was in and one whole pass more, so every page of the region was written after the
restore (and at most one pass more than that was timed, alike for everyone).  Runs alternate
(each repetition goes through every setting, in a rotated order) so that the host's load
falls on all of them alike.  --cold drops the snapshot file's pages from the page cache
before each restore (posix_fadvise DONTNEED on that file only), as after a reboot or a copy
from elsewhere; by default the file is in the page cache, as right after the checkpoint.  Timing is reported, never judged; exit 0 when every run worked.
"""

import argparse
import os
import re
import signal
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import snapshot as sb  # noqa: E402  (its Khyve, Qemu and QMP helpers)
from benchlib import (BenchError, Owned, say, catch_signals, med, warnings, preflight,  # noqa: E402
                      qemu_guest, table, say_warnings)

PASSES_RE = re.compile(rb"^passes:((?: \d+)+)$", re.M)
MODES = ["off", "willneed", "read", "write"]


def passes(path):
    return [[int(x) for x in m.group(1).split()] for m in PASSES_RE.finditer(sb.read(path))]


def wait_rewritten(path, proc, t0, what, timeout=120):
    """ms from @t0 until every vCPU's pass count is two more than in the first line."""
    end = time.monotonic() + timeout
    first = None
    while time.monotonic() < end:
        ps = passes(path)
        if ps and first is None:
            first = ps[0]
        if first is not None:
            for p in ps:
                if len(p) == len(first) and all(a >= b + 2 for a, b in zip(p, first)):
                    return sb.now_ms() - t0
        if proc.poll() is not None:
            raise BenchError("%s exited (status %s)" % (what, proc.returncode))
        time.sleep(0.005)
    raise BenchError("%s: region not rewritten in %d s" % (what, timeout))


def drop_cache(path):
    """Drop @path's clean pages from the page cache (that file only)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fdatasync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def khyve_run(own, snap, mode, i):
    log = own.path("k-%s-%d.log" % (mode, i))
    t0 = sb.now_ms()
    p = own.spawn([sb.KHYVE, "-r", snap, "-o", "ctl.socket=off", "-o", "snapshot.prefetch=" + mode,
                   "-l", "com1,file:" + log, "restored"],
                  stderr=open(own.path("k-%s-%d.err" % (mode, i)), "wb"))
    try:
        ms = wait_rewritten(log, p, t0, "khyve prefetch=%s" % mode)
        say("  khyve prefetch=%-8s %7.1f ms" % (mode, ms))
        return ms
    finally:
        sb.note_guest_failures(log, "khyve prefetch=%s" % mode)
        own.stop(p)


def qemu_run(own, size, snap, i):
    q = sb.Qemu(own, size, "restore-%d" % i, incoming="exec:cat '%s'" % snap)
    try:
        qmp = q.qmp = sb.QMP(q.sock, q.p)
        end = time.monotonic() + 300
        while qmp.cmd("query-status")["status"] in ("inmigrate", "prelaunch"):
            if time.monotonic() > end:
                raise BenchError("QEMU still loading after 300 s")
            time.sleep(0.001)
        if qmp.cmd("query-status")["status"] != "running":
            qmp.cmd("cont")
        ms = wait_rewritten(q.log, q.p, q.t0, "QEMU restore")
        say("  QEMU restore         %7.1f ms" % ms)
        return ms
    finally:
        sb.note_guest_failures(q.log, "QEMU restored")
        q.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--size", default="1G")
    ap.add_argument("--touched", type=int, default=128, metavar="MIB")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--no-qemu", action="store_true")
    ap.add_argument("--cold", action="store_true", help="snapshot file not in the page cache")
    a = ap.parse_args()
    modes = [m for m in a.modes.split(",") if m]
    qemu = not a.no_qemu
    sb.TOUCHED = a.touched << 20
    sb.CMDLINE = "mode=counter mem=%dM passes=1 rate=50" % a.touched
    bad = preflight(qemu)
    if bad is not None:
        return bad
    catch_signals()
    own = Owned("khyve-prefetch-", signal.SIGINT)
    res = {}
    status = 0
    try:
        k = sb.Khyve(own, a.size)
        k.wait_booted()
        sb.warm_up(lambda: k.checkpoint()["bytes"], "khyve")
        k.checkpoint()
        k.stop()
        kinds = modes[:]
        if qemu:
            sb.QGUEST = qemu_guest(sb.GUEST, own.path("testguest-qemu"))
            q = sb.Qemu.boot(own, a.size)
            sb.wait_seq(q.log, 8, q.p, 120, "QEMU")
            q.checkpoint()
            q.stop()
            kinds.append("qemu")
        say("load before: %s" % open("/proc/loadavg").read().strip())
        for i in range(a.reps):
            order = kinds[i % len(kinds):] + kinds[:i % len(kinds)]
            for kind in order:
                sb.settle()
                if a.cold:
                    drop_cache(q.snap if kind == "qemu" else k.snap)
                try:
                    ms = (qemu_run(own, a.size, q.snap, i) if kind == "qemu"
                          else khyve_run(own, k.snap, kind, i))
                    res.setdefault(kind, []).append(ms)
                except BenchError as e:
                    warnings.add("%s run %d: %s" % (kind, i, e))
                    status = 1
        say("load after: %s" % open("/proc/loadavg").read().strip())
        base = med(res.get("qemu", []))
        rows = [["restore -> guest has re-touched its %d MiB (%s, 2 vCPUs%s)"
                 % (a.touched, a.size, ", cold cache" if a.cold else ""),
                 "median ms", "min ms", "vs QEMU"]]
        for kind in kinds:
            xs = res.get(kind, [])
            m = med(xs)
            rows.append(["khyve prefetch=" + kind if kind != "qemu" else "QEMU (eager load)",
                         "%.0f" % m if m else "-", "%.0f" % min(xs) if xs else "-",
                         "%.2fx" % (m / base) if m and base else "-"])
        say("")
        table(rows)
        say_warnings()
    finally:
        own.cleanup()
    return status


if __name__ == "__main__":
    sys.exit(main())
