#!/usr/bin/env python3
"""khyve network benchmark: a windowed UDP stream between the test guest and a sink on the
host, through e1000 and through virtio-net, under khyve and under QEMU (e1000-82545em,
virtio-net-pci), same guest, same backend type (slirp), same run.  bench/README.md explains
every figure.

usage: bench/net.py [--quick] [--reps N] [--seconds S] [--size B] [--window W] [--no-qemu]
                    [--nic e1000|virtio|all] [--dir tx|rx|all] [--khyve-opt KEY=VALUE]...

  --quick       one repetition
  --reps N      repetitions of each measurement (default 3); the table shows median (min..max)
  --seconds S   how long the guest streams in each run (default 5)
  --size B      UDP payload bytes per datagram (default 1472: full-size frames)
  --window W    datagrams in flight (default 64)
  --no-qemu     skip the QEMU peer
  --nic N       e1000, virtio (virtio-net) or all (default)
  --dir D       tx (guest to host), rx (host to guest) or all (default)
  --khyve-opt KEY=VALUE
                an -o option for khyve's runs, e.g. mmio.coalesce=off (repeatable)

Environment: KHYVE_BUILD (default build/), QEMU (default qemu-system-x86_64), QEMU_CPU
(default host,arch-capabilities=off), CC (default cc) for the sink.

Timing is only reported, never judged: the exit status is 0 when every run worked (each guest
printed its NETBENCH line and no failure), 1 when one did not, 2 when the benchmark could not
run at all.  Every process it starts and every file it makes is removed when it ends.
"""

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

sys.dont_write_bytecode = True	# leave no __pycache__ in the tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import (ROOT, BUILD, CPUS, BenchError, Owned, say, catch_signals, read, unlink,
                      med, warnings, preflight, khyve_args, qemu_args, qemu_guest, table, say_warnings)

KHYVE = os.path.join(BUILD, "khyve")
GUEST = os.path.join(BUILD, "testguest")
QGUEST = None	# the copy QEMU boots (qemu_guest())
QEMU_CPU = os.environ.get("QEMU_CPU", "host,arch-capabilities=off")
MEM = "256M"

NICS = ("e1000", "virtio")
DIRS = ("tx", "rx")
# The device under khyve and the same device under QEMU.  QEMU's plain "e1000" is an 82540EM;
# e1000-82545em is the same emulation with the 82545EM's identity, which is what khyve has.
KHYVE_DEV = {"e1000": "3,e1000,slirp", "virtio": "3,virtio-net,slirp"}
QEMU_DEV = {"e1000": "e1000-82545em", "virtio": "virtio-net-pci,disable-legacy=on"}
PEER = {"e1000": "e1000-82545em", "virtio": "virtio-net-pci"}

NET_RE = re.compile(rb"^NETBENCH\s+(.*)$", re.M)
KV_RE = re.compile(rb"(\w+)=(\S+)")


def freeze(own):
    """Copy khyve and the guest into our directory (others rebuild build/ meanwhile), and
    build the sink there."""
    global KHYVE, GUEST, QGUEST
    for name in ("KHYVE", "GUEST"):
        src = globals()[name]
        dst = own.path(os.path.basename(src))
        shutil.copy2(src, dst)
        globals()[name] = dst
    QGUEST = qemu_guest(GUEST, own.path("testguest-qemu"))
    sink = own.path("net_sink")
    subprocess.run([os.environ.get("CC", "cc"), "-O2", "-Wall", "-o", sink,
                    os.path.join(ROOT, "bench", "net_sink.c")], check=True)
    return sink


def tree_version():
    r = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"],
                       capture_output=True, text=True)
    return r.stdout.strip() or "unknown"


def free_udp_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def vm_args(vmm, nic, log, cmd, opts=()):
    if vmm == "khyve":
        extra = ["-s", KHYVE_DEV[nic]]
        for o in opts:
            extra += ["-o", o]
        return khyve_args(KHYVE, GUEST, MEM, log, cmd, "off", "netbench", extra)
    return qemu_args(QEMU_CPU, "pc", MEM, QGUEST, cmd) + [
        "-netdev", "user,id=n0", "-device", QEMU_DEV[nic] + ",netdev=n0",
        "-serial", "file:" + log, "-display", "none", "-no-reboot"]


def parse(console):
    m = NET_RE.search(console)
    if not m:
        return None
    out = {}
    for k, v in KV_RE.findall(m.group(1)):
        k, v = k.decode(), v.decode()
        try:
            out[k] = int(v)
        except ValueError:
            out[k] = v
    for k in ("pkts", "bytes", "ns", "size"):
        if not isinstance(out.get(k), int):
            return None
    return out if out["ns"] > 0 else None


def run_one(own, sink, vmm, nic, d, a, tag):
    """Start a sink, boot the guest under @vmm, wait until it powers off, return its figures."""
    port = free_udp_port()
    log, err = own.path(tag + ".log"), own.path(tag + ".err")
    cmd = "mode=netbench nic=%s netdir=%s netport=%d netsize=%d netwin=%d seconds=%d" % (
        "e1000" if nic == "e1000" else "virtio", d, port, a.size, a.window, a.seconds)
    s = own.spawn([sink, str(port)], stdout=subprocess.PIPE)
    time.sleep(0.1)
    with open(err, "wb") as ef:
        p = own.spawn(vm_args(vmm, nic, log, cmd, a.khyve_opt), stderr=ef)
    try:
        end = time.monotonic() + a.seconds + 120
        while p.poll() is None and time.monotonic() < end:
            if b"TESTGUEST FAIL" in read(log):
                time.sleep(0.5)
                break
            time.sleep(0.1)
        console = read(log)
        running = p.poll() is None
    finally:
        own.stop(p)
        own.stop(s, signal.SIGTERM)
    for l in console.splitlines():
        if b"TESTGUEST FAIL" in l or l.startswith(b"exception "):
            warnings.add("%s %s %s: guest printed '%s'" %
                         (vmm, nic, d, l.decode(errors="replace").strip()))
    r = parse(console)
    if r is None:
        raise BenchError("%s %s %s: no NETBENCH line (%s); console ends with:\n%s\nstderr:\n%s"
                         % (vmm, nic, d, "still running" if running
                            else "exit status %s" % p.returncode,
                            console[-400:].decode(errors="replace"),
                            read(err)[-400:].decode(errors="replace")))
    if r.get("dir") != d or r["pkts"] == 0:
        raise BenchError("%s %s %s: the guest measured %r" % (vmm, nic, d, r))
    if r.get("lost"):
        warnings.add("%s %s %s: %d datagrams lost (given up after 100 ms)" %
                     (vmm, nic, d, r["lost"]))
    unlink(log)
    unlink(err)
    return r


def pps(r):
    return r["pkts"] / r["ns"] * 1e9


def mbps(r):
    return r["bytes"] / r["ns"] * 1e3


def fmt(xs, prec):
    if not xs:
        return "-"
    return "%.*f (%.*f..%.*f)" % (prec, med(xs), prec, min(xs), prec, max(xs))


def fmt_ratio(a, b):
    if not a or not b:
        return "-"
    return "%.2fx (min %.2fx, max %.2fx)" % (med(a) / med(b), min(a) / min(b),
                                             max(a) / max(b))


def fmt_paired(a, b):
    """The median of the repetition-by-repetition ratios: each khyve run is next to its QEMU
    run in time, so a drift in the host's load cancels out of each ratio."""
    r = [x / y for x, y in zip(a, b) if y] if len(a) == len(b) else []  # a failed run: unpaired
    if not r:
        return "-"
    return "%.2fx (%.2fx..%.2fx)" % (med(r), min(r), max(r))


def verdict(a, b, target):
    if not a or not b:
        return ""
    ok = [med(a) / med(b) >= target, max(a) / max(b) >= target]
    return "met" if all(ok) else "MISSED" if not any(ok) else "noisy"


def summary(res, nics, dirs, a, qemu):
    rows = [["NIC", "dir", "VMM", "packets/s: median (min..max)", "MB/s: median (min..max)",
             "target", "verdict"]]
    for nic in nics:
        for d in dirs:
            k = res.get(("khyve", nic, d), [])
            q = res.get(("qemu", nic, d), [])
            rows.append([nic, d, "khyve", fmt([pps(r) for r in k], 0),
                         fmt([mbps(r) for r in k], 1), "", ""])
            if qemu:
                rows.append(["", "", "QEMU " + PEER[nic], fmt([pps(r) for r in q], 0),
                             fmt([mbps(r) for r in q], 1), "", ""])
                rows.append(["", "", "khyve / QEMU",
                             fmt_ratio([pps(r) for r in k], [pps(r) for r in q]), "",
                             ">= 1.0x", verdict([pps(r) for r in k], [pps(r) for r in q], 1.0)])
                rows.append(["", "", "  run by run", fmt_paired([pps(r) for r in k],
                                                                [pps(r) for r in q]),
                             "", "", ""])
    say("")
    say("khyve network benchmark, %s, %s, %d vCPUs, %s RAM, slirp, %d-byte datagrams, window "
        "%d, %d s per run; median (min..max) of %d runs; ratios of medians (of minima, of "
        "maxima)" % (time.strftime("%Y-%m-%d"), os.uname().nodename, CPUS, MEM, a.size,
                     a.window, a.seconds, a.reps))
    table(rows)
    say("tree %s; host load average (1 min) %.1f at the start, %.1f at the end%s" %
        (res["version"], res["load0"], os.getloadavg()[0],
         "".join("; khyve -o " + o for o in a.khyve_opt)))
    say_warnings()


def bench(own, sink, nics, dirs, a, qemu, res):
    """khyve and QEMU take turns for each NIC and direction; who goes first alternates from one
    repetition to the next, so a drift in this host's load falls on both."""
    vmms = ["khyve", "qemu"] if qemu else ["khyve"]
    bad = 0
    for i in range(a.reps):
        for nic in nics:
            for d in dirs:
                for vmm in (vmms if i % 2 == 0 else list(reversed(vmms))):
                    try:
                        r = run_one(own, sink, vmm, nic, d, a,
                                    "%s-%s-%s-%d" % (vmm, nic, d, i))
                    except BenchError as e:
                        warnings.add(str(e))
                        bad += 1
                        continue
                    res.setdefault((vmm, nic, d), []).append(r)
                    say("  %-5s %-6s %s run %d: %8.0f packets/s %7.1f MB/s  (%d in %.3f s)" %
                        (vmm, nic, d, i + 1, pps(r), mbps(r), r["pkts"], r["ns"] / 1e9))
    return bad


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="one repetition")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--size", type=int, default=1472)
    ap.add_argument("--window", type=int, default=64)
    ap.add_argument("--no-qemu", action="store_true")
    ap.add_argument("--nic", choices=NICS + ("all",), default="all")
    ap.add_argument("--dir", choices=DIRS + ("all",), default="all")
    ap.add_argument("--khyve-opt", action="append", default=[], metavar="KEY=VALUE",
                    help="an -o option for khyve's runs (repeatable)")
    a = ap.parse_args()
    a.reps = 1 if a.quick else max(1, a.reps)
    a.seconds = max(1, a.seconds)
    if not 16 <= a.size <= 1472:
        say("bench: --size must be 16 to 1472")
        return 2
    nics = NICS if a.nic == "all" else (a.nic,)
    dirs = DIRS if a.dir == "all" else (a.dir,)
    qemu = not a.no_qemu
    bad = preflight(qemu)
    if bad is not None:
        return bad
    catch_signals()
    own = Owned("khyve-netbench-", signal.SIGTERM)
    res = {"load0": os.getloadavg()[0], "version": tree_version()}
    status = 0
    try:
        sink = freeze(own)
        say("== netbench: %s, %s; %d vCPUs, %s RAM, slirp, %d s per run" %
            (", ".join(nics), ", ".join(dirs), CPUS, MEM, a.seconds))
        if bench(own, sink, nics, dirs, a, qemu, res):
            status = 1
        summary(res, nics, dirs, a, qemu)
    except KeyboardInterrupt:
        say("bench: interrupted")
        status = 130
    finally:
        own.cleanup()
    return status


if __name__ == "__main__":
    sys.exit(main())
