#!/usr/bin/env python3
"""khyve disk benchmark: throughput and IOPS of the test guest's own virtio-blk and AHCI
drivers under khyve and under QEMU (virtio-blk-pci; ahci with ide-hd), same guest, same raw
image, same run.  bench/README.md explains every figure.

usage: bench/blk.py [--quick] [--reps N] [--seconds S] [--image-mib M] [--no-qemu]
                    [--dev virtio|ahci|all]

  --quick         one repetition, two operations (seqread, randwrite)
  --reps N        repetitions of each measurement (default 3); the table shows median (min..max)
  --seconds S     how long the guest runs each operation (default 5)
  --image-mib M   size of the raw image (default 256)
  --no-qemu       skip the QEMU peer
  --dev D         virtio (virtio-blk), ahci (an AHCI disk, NCQ) or all (default)

Environment: KHYVE_BUILD (default build/), QEMU (default qemu-system-x86_64), QEMU_CPU
(default host,arch-capabilities=off).  The image goes to a new directory under $TMPDIR
(default /tmp).

Timing is only reported, never judged: the exit status is 0 when every run worked (each guest
printed its BLKBENCH line and no failure), 1 when one did not, 2 when the benchmark could not
run at all.  Every process it starts and every file it makes is removed when it ends, whatever
the reason.
"""

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import time

sys.dont_write_bytecode = True	# leave no __pycache__ in the tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import (ROOT, BUILD, CPUS, MiB, KiB, BenchError, Owned, say, catch_signals, read,
                      unlink, random_file, warm, med, warnings, preflight, khyve_args,
                      qemu_args, qemu_guest, table, say_warnings)

KHYVE = os.path.join(BUILD, "khyve")
GUEST = os.path.join(BUILD, "testguest")
QGUEST = None	# the copy QEMU boots (qemu_guest())
# -cpu host alone makes QEMU abort on these PVM hosts: KVM refuses MSR 0x10a.
QEMU_CPU = os.environ.get("QEMU_CPU", "host,arch-capabilities=off")

MEM = "256M"

# (op, block size, queue depth).  Sequential: large blocks, a moderate depth, as a streaming
# reader or writer would; random: 4 KiB at a depth deep enough to keep several host threads
# busy, as a database would.
OPS = [
    ("seqread", 128 * KiB, 8),
    ("seqwrite", 128 * KiB, 8),
    ("randread", 4 * KiB, 32),
    ("randwrite", 4 * KiB, 32),
]
QUICK_OPS = ("seqread", "randwrite")

BLK_RE = re.compile(rb"^BLKBENCH\s+(.*)$", re.M)
KV_RE = re.compile(rb"(\w+)=(\S+)")


# ---- the image ----

def settle(img):
    """Write back what the previous run dirtied and let it pass, so that no run pays for the
    writeback of the one before; then read the whole image again, so it is in the host page
    cache when the next run starts (it is small against this host's RAM, so it stays there:
    both VMMs read it from memory)."""
    os.sync()
    time.sleep(0.3)
    warm(img)


# ---- one guest run ----

DEVS = ("virtio", "ahci")


def cmdline(dev, op, bs, depth, seconds):
    return "mode=%s blkop=%s blksize=%d blkdepth=%d seconds=%d" % (
        "ahcibench" if dev == "ahci" else "blkbench", op, bs, depth, seconds)


def freeze(own):
    """Copy khyve and the guest into our directory: others rebuild build/ in this shared tree,
    and a binary replaced halfway would make the runs incomparable."""
    global KHYVE, GUEST, QGUEST
    for name in ("KHYVE", "GUEST"):
        src = globals()[name]
        dst = own.path(os.path.basename(src))
        shutil.copy2(src, dst)
        globals()[name] = dst
    QGUEST = qemu_guest(GUEST, own.path("testguest-qemu"))


def tree_version():
    r = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"],
                       capture_output=True, text=True)
    return r.stdout.strip() or "unknown"


def vm_args(vmm, dev, img, log, cmd):
    """The command line of @vmm ("khyve" or "qemu") booting the guest with @cmd, @img as its
    @dev disk (virtio-blk, or an AHCI disk on port 0) and its console into @log."""
    if vmm == "khyve":
        return khyve_args(KHYVE, GUEST, MEM, log, cmd, "off", "blkbench",
                          ["-s", ("3,ahci-hd," if dev == "ahci" else "3,virtio-blk,") + img])
    disk = (["-device", "ahci,id=ahci0", "-device", "ide-hd,drive=d0,bus=ahci0.0"]
            if dev == "ahci" else ["-device", "virtio-blk-pci,drive=d0,disable-legacy=on"])
    return qemu_args(QEMU_CPU, "pc", MEM, QGUEST, cmd) + [
        "-drive", "file=%s,if=none,format=raw,id=d0,cache=writeback,aio=threads" % img] + \
        disk + ["-serial", "file:" + log, "-display", "none", "-no-reboot"]


def parse(console):
    """The guest's BLKBENCH line as a dict: op, and every other field that is a number
    (bytes, ios, ns are needed; bs, depth, notifies are used when present).  None when there
    is no such line or it lacks a needed field."""
    m = BLK_RE.search(console)
    if not m:
        return None
    out = {}
    for k, v in KV_RE.findall(m.group(1)):
        k, v = k.decode(), v.decode()
        try:
            out[k] = int(v)
        except ValueError:
            out[k] = v
    if not isinstance(out.get("op"), str):
        return None
    for k in ("bytes", "ios", "ns"):
        if not isinstance(out.get(k), int):
            return None
    return out if out["ns"] > 0 else None


def run_one(own, vmm, dev, img, op, bs, depth, seconds, tag):
    """Boot the guest under @vmm, wait until it powers off, return its BLKBENCH figures."""
    log = own.path("%s.log" % tag)
    err = own.path("%s.err" % tag)
    cmd = cmdline(dev, op, bs, depth, seconds)
    args = vm_args(vmm, dev, img, log, cmd)
    with open(err, "wb") as ef:
        p = own.spawn(args, stderr=ef)
    try:
        # QEMU's firmware makes its boot take seconds here; the guest's own timer covers
        # only the I/O, so the limit is generous.
        end = time.monotonic() + seconds + 120
        while p.poll() is None and time.monotonic() < end:
            if b"TESTGUEST FAIL" in read(log):
                time.sleep(0.5)  # let it print its detail, then stop it
                break
            time.sleep(0.1)
        console = read(log)
        running = p.poll() is None
    finally:
        own.stop(p)
    for l in console.splitlines():
        if b"TESTGUEST FAIL" in l or l.startswith(b"exception "):
            warnings.add("%s %s: guest printed '%s'" %
                         (vmm, op, l.decode(errors="replace").strip()))
    r = parse(console)
    if r is None:
        raise BenchError("%s %s: no BLKBENCH line (%s); console ends with:\n%s\nstderr:\n%s" %
                         (vmm, op, "still running after %d s" % (seconds + 120) if running
                          else "exit status %s" % p.returncode,
                          console[-400:].decode(errors="replace"),
                          read(err)[-400:].decode(errors="replace")))
    if r["op"] != op:
        raise BenchError("%s: asked for %s, the guest measured %s" % (vmm, op, r["op"]))
    if r["ios"] == 0:
        raise BenchError("%s %s: the guest completed no I/O" % (vmm, op))
    for k, want in (("bs", bs), ("depth", depth)):
        if k in r and r[k] != want:
            raise BenchError("%s %s: asked for %s=%d, the guest used %d" %
                             (vmm, op, k, want, r[k]))
    unlink(log)
    unlink(err)
    return r


def mbps(r):
    return r["bytes"] / r["ns"] * 1e3  # 10^6 bytes per second


def iops(r):
    return r["ios"] / r["ns"] * 1e9


# ---- the report ----

def fmt(xs, prec):
    """median (min..max): for a rate the best run is the largest, the worst the smallest."""
    if not xs:
        return "-"
    return "%.*f (%.*f..%.*f)" % (prec, med(xs), prec, min(xs), prec, max(xs))


def fmt_ratio(a, b):
    if not a or not b:
        return "-"
    return "%.2fx (min %.2fx, max %.2fx)" % (med(a) / med(b), min(a) / min(b),
                                             max(a) / max(b))


def verdict(a, b, target):
    """'met' when the ratio of the medians and that of the best runs (the maxima) both reach
    @target, 'MISSED' when neither does, 'noisy' when they disagree."""
    if not a or not b:
        return ""
    ok = [med(a) / med(b) >= target, max(a) / max(b) >= target]
    return "met" if all(ok) else "MISSED" if not any(ok) else "noisy"


def size_str(n):
    return "%dK" % (n // KiB) if n < MiB else "%dM" % (n // MiB)


PEER = {"virtio": "virtio-blk-pci", "ahci": "ahci + ide-hd"}


def summary(res, devs, ops, reps, seconds, mib, qemu):
    rows = [["device", "op", "bs", "depth", "VMM", "MB/s: median (min..max)",
             "IOPS: median (min..max)", "target", "verdict"]]
    for dev, op, bs, depth in [(d,) + o for d in devs for o in ops]:
        k = res.get(("khyve", dev, op), [])
        q = res.get(("qemu", dev, op), [])
        rows.append([dev, op, size_str(bs), depth, "khyve", fmt([mbps(r) for r in k], 1),
                     fmt([iops(r) for r in k], 0), "", ""])
        if qemu:
            rows.append(["", "", "", "", "QEMU " + PEER[dev], fmt([mbps(r) for r in q], 1),
                         fmt([iops(r) for r in q], 0), "", ""])
            rows.append(["", "", "", "", "khyve / QEMU",
                         fmt_ratio([mbps(r) for r in k], [mbps(r) for r in q]), "",
                         ">= 1.0x", verdict([mbps(r) for r in k], [mbps(r) for r in q], 1.0)])
    say("")
    say("khyve disk benchmark (%s), %s, %s, %d vCPUs, %s RAM, %d MiB raw image in the host "
        "page cache, %d s per run; median (min..max) of %d runs; ratios of medians (of minima, "
        "of maxima)" %
        (", ".join(devs), time.strftime("%Y-%m-%d"), os.uname().nodename, CPUS, MEM, mib,
         seconds, reps))
    table(rows)
    say("tree %s; host load average (1 min) %.1f at the start, %.1f at the end" %
        (res["version"], res["load0"], os.getloadavg()[0]))
    say_warnings()


# ---- main ----

def bench(own, img, devs, ops, reps, seconds, qemu, res):
    """For each repetition, each device and op, khyve and QEMU take turns; who goes first
    alternates from one repetition to the next, so a drift in this host's load falls on both."""
    vmms = ["khyve", "qemu"] if qemu else ["khyve"]
    bad = 0
    for i in range(reps):
        for dev, op, bs, depth in [(d,) + o for d in devs for o in ops]:
            order = vmms if i % 2 == 0 else list(reversed(vmms))
            for vmm in order:
                settle(img)
                try:
                    r = run_one(own, vmm, dev, img, op, bs, depth, seconds,
                                "%s-%s-%s-%d" % (vmm, dev, op, i))
                except BenchError as e:
                    warnings.add(str(e))
                    bad += 1
                    continue
                res.setdefault((vmm, dev, op), []).append(r)
                kicks = ", %.2f doorbells/io" % (r["notifies"] / r["ios"]) \
                    if isinstance(r.get("notifies"), int) else ""
                if dev == "ahci":
                    kicks = ""  # every AHCI command is a register write
                say("  %-5s %-6s %-9s run %d: %8.1f MB/s %9.0f IOPS  (%d ios in %.3f s%s)" %
                    (vmm, dev, op, i + 1, mbps(r), iops(r), r["ios"], r["ns"] / 1e9, kicks))
    return bad


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="one repetition, seqread and randwrite only")
    ap.add_argument("--reps", type=int, default=3, help="repetitions (default 3)")
    ap.add_argument("--seconds", type=int, default=5, help="seconds per run (default 5)")
    ap.add_argument("--image-mib", type=int, default=256, help="image size (default 256)")
    ap.add_argument("--no-qemu", action="store_true", help="skip the QEMU peer")
    ap.add_argument("--dev", choices=DEVS + ("all",), default="all",
                    help="virtio, ahci or all (default)")
    a = ap.parse_args()
    devs = DEVS if a.dev == "all" else (a.dev,)
    reps = 1 if a.quick else max(1, a.reps)
    ops = [o for o in OPS if o[0] in QUICK_OPS] if a.quick else OPS
    seconds = max(1, a.seconds)
    mib = max(16, a.image_mib)
    qemu = not a.no_qemu

    bad = preflight(qemu)
    if bad is not None:
        return bad

    catch_signals()
    own = Owned("khyve-blkbench-", signal.SIGTERM)
    res = {"load0": os.getloadavg()[0], "version": tree_version()}
    status = 0
    try:
        freeze(own)
        img = own.path("disk.raw")
        say("== %d MiB raw image of random bytes in %s; %d vCPUs, %s RAM, %d s per run" %
            (mib, own.dir, CPUS, MEM, seconds))
        for op, bs, depth in ops:
            say("   %-9s blksize %s depth %d" % (op, size_str(bs), depth))
        random_file(img, mib)
        if bench(own, img, devs, ops, reps, seconds, qemu, res):
            status = 1
        summary(res, devs, ops, reps, seconds, mib, qemu)
    except KeyboardInterrupt:
        say("bench: interrupted")
        status = 130
    finally:
        own.cleanup()
    return status


if __name__ == "__main__":
    sys.exit(main())
