#!/usr/bin/env python3
"""Clones: N concurrent restores of one snapshot, and what each costs in memory.

A 1 GiB test guest (2 vCPUs, counter mode rewriting a 16 MiB region) is checkpointed; then
N (default 10) khyve processes restore that one file at once and run for a few seconds.  Each
clone's guest memory maps the file privately, so pages it only reads are shared through the
page cache and only the pages it writes are its own.  Per clone, from /proc/PID/smaps_rollup:
Pss (its share of everything it maps), Anonymous (pages it copied on write: what it dirtied,
plus khyve's own heap), and Pss - Anonymous, the shared part it is charged for.  Target
(issue 11): Pss <= dirtied pages + 8 MiB.  Reports; exit 0 if every clone ran on, 1 if not.

    bench/clones.py [--clones N] [--mem 16M] [--seconds 3] [--prefetch MODE]

--prefetch: each clone's -o snapshot.prefetch= (default: khyve's default).
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "e2e"))
from khyve_e2e import VM, Workdir  # noqa: E402


def rollup(pid):
    out = {}
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[2] == "kB":
                out[parts[0].rstrip(":")] = int(parts[1]) * 1024
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clones", type=int, default=10)
    ap.add_argument("--mem", default="16M", help="the region the guest rewrites")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--prefetch", help="snapshot.prefetch of each clone")
    a = ap.parse_args()
    wd = Workdir()
    ok = True
    try:
        vm = VM(wd, cpus=2, mem="1G", cmdline="mode=counter mem=%s rate=20" % a.mem)
        vm.wait_seq(5, timeout=120)
        snap = wd("base.snap")
        rc, reply = vm.ctl("--checkpoint=" + snap)
        vm.kill()
        print("snapshot: %d bytes of guest memory" % reply["bytes"])
        extra = ["-o", "snapshot.prefetch=" + a.prefetch] if a.prefetch else []
        clones = [VM(wd, restore=snap, name="c%d" % i, extra=extra) for i in range(a.clones)]
        for c in clones:
            c.wait_seq(2, timeout=120)
        time.sleep(a.seconds)
        rows = []
        for c in clones:
            c.pump(0)
            r = rollup(c.p.pid)
            rows.append(r)
            print("clone %s: Pss %.1f MiB, Anonymous %.1f MiB, Pss - Anonymous %.1f MiB, Rss %.1f MiB"
                  % (c.name, r["Pss"] / 2**20, r["Anonymous"] / 2**20,
                     (r["Pss"] - r["Anonymous"]) / 2**20, r["Rss"] / 2**20))
        for c in clones:
            n = len(c.seqs())
            try:
                c.wait_seq(n + 2, timeout=60)
            except Exception as e:
                ok = False
                print("clone %s did not count on: %s" % (c.name, e))
            c.kill()
        over = [r["Pss"] - r["Anonymous"] for r in rows]
        print("%d clones: per-clone Pss median %.1f MiB; Pss - dirtied (Anonymous) median %.1f MiB,"
              " max %.1f MiB; target <= 8 MiB: %s"
              % (len(rows), statistics.median(r["Pss"] for r in rows) / 2**20,
                 statistics.median(over) / 2**20, max(over) / 2**20,
                 "met" if max(over) <= 8 << 20 else "MISSED"))
        region = int(a.mem[:-1]) << {"K": 10, "M": 20, "G": 30}[a.mem[-1].upper()]
        print("per-clone Pss max %.1f MiB vs the region the guest rewrites + 8 MiB (%.1f MiB): %s"
              % (max(r["Pss"] for r in rows) / 2**20, (region + (8 << 20)) / 2**20,
                 "met" if max(r["Pss"] for r in rows) <= region + (8 << 20) else "MISSED"))
    finally:
        wd.cleanup()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
