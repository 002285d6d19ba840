#!/usr/bin/env python3
"""khyve live migration benchmark: downtime and total time of khyvectl --migrate --live over
loopback, against QEMU's own live migration (migrate to tcp:, then query-migrate) of the same
test guest in the same run.  bench/README.md explains every figure.

usage: python3 bench/migrate.py [--reps N] [--mem 1G] [--touched MIB] [--no-qemu]
                                [--max-downtime MS] [--auto-converge on|off]
                                [--link MIB_PER_S]

  --reps N          migrations of each VMM (default 3); the table shows median (min-max)
  --mem SIZE        guest memory (default 1G)
  --touched MIB     the region the counter guest rewrites on its 2 vCPUs (default 128)
  --no-qemu         skip the QEMU peer
  --max-downtime MS khyve's downtime budget (default: khyve's own, 20 ms)
  --auto-converge on|off  khyve's vCPU throttling while rounds do not shrink (default on;
                    QEMU keeps its default, off)
  --link MIB_PER_S  khyve only (implies --no-qemu): the stream goes through a loopback relay
                    that carries this many MiB/s, a link slower than the guest writes

Each repetition boots a fresh source, waits until the guest has written its whole region once
(so pre-copy has all of it to send while the guest keeps rewriting it), starts the destination
(khyve -R 127.0.0.1:0 / QEMU -incoming tcp:127.0.0.1:PORT), migrates, and checks that the
guest goes on counting there with its memory check passing.  QEMU runs with its defaults but
for max-bandwidth, lifted from QEMU 7.2's 32 MiB/s (as bench/snapshot.py does); its downtime
limit stays at its default 300 ms.

Timing is only reported, never judged: the exit status is 0 when every migration worked, 1
when one did not, 2 when the benchmark could not run at all.  Every process it starts and
every file it makes is removed when it ends.
"""

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True	# leave no __pycache__ in the tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import snapshot as sb  # noqa: E402  (its QEMU, QMP and console helpers)
from benchlib import (BUILD, MiB, BenchError, Owned, say, catch_signals, read, med,  # noqa: E402
                      warnings, preflight, khyve_args, qemu_guest, table, say_warnings)

KHYVE = os.path.join(BUILD, "khyve")
KHYVECTL = os.path.join(BUILD, "khyvectl")
GUEST = os.path.join(BUILD, "testguest")
LISTEN_RE = re.compile(rb"waiting for an incoming VM on 127\.0\.0\.1:(\d+)")
INCOMING_RE = re.compile(rb"incoming: after END: memory map ([0-9.]+) ms, restore ([0-9.]+) ms, "
                         rb"then ([0-9.]+) ms until READY, ([0-9.]+) ms until GO, "
                         rb"([0-9.]+) ms until running")
WRITTEN = b"region written once"


def wait_text(path, text, proc, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if text in read(path):
            return
        if proc.poll() is not None:
            raise BenchError("%s exited (%s) before printing %r" % (what, proc.returncode, text))
        time.sleep(0.05)
    raise BenchError("%s never printed %r in %d s" % (what, text, timeout))


def goes_on(log, proc, what, lines=20):
    """The guest counts on at the destination, and its memory check has not failed."""
    n = len(sb.seqs(log))
    sb.wait_seq(log, n + lines, proc, 60, what)
    s = sb.seqs(log)
    if s != list(range(s[0], s[0] + len(s))):
        raise BenchError("%s: seq has a gap or a repeat" % what)
    if sb.fail_lines(log):
        raise BenchError("%s: %s" % (what, sb.fail_lines(log)[0]))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Link:
    """--link: a loopback relay carrying the source's stream at @rate bytes per second (the
    answers come back at once), a link slower than the guest dirties its memory."""

    def __init__(self, port, rate):
        self.to, self.rate, self.socks = port, rate, []
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(1)
        self.port = self.ls.getsockname()[1]
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        try:
            a, _ = self.ls.accept()
            b = socket.create_connection(("127.0.0.1", self.to))
        except OSError:
            return
        self.socks = [a, b]
        threading.Thread(target=self.pipe, args=(b, a, 0), daemon=True).start()
        self.pipe(a, b, self.rate)

    @staticmethod
    def pipe(frm, to, rate):
        t = time.monotonic()
        try:
            while True:
                d = frm.recv(1 << 20)
                if not d:
                    break
                to.sendall(d)
                if rate:
                    t = max(t, time.monotonic() - 0.05) + len(d) / rate
                    time.sleep(max(0, t - time.monotonic()))
            to.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self):
        for s in self.socks + [self.ls]:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


# ---- khyve ----

def khyve_once(own, a, i):
    """One live migration between two khyve processes.  Returns the reply plus the
    destination's own timing (debug.timing)."""
    src_log, dst_log = own.path("k-src%d.log" % i), own.path("k-dst%d.log" % i)
    src_sock, dst_sock = own.path("k-src%d.sock" % i), own.path("k-dst%d.sock" % i)
    dst_err = own.path("k-dst%d.err" % i)
    src = own.spawn(khyve_args(KHYVE, GUEST, a.mem, src_log, sb.CMDLINE, src_sock, "ksrc%d" % i),
                    stderr=open(own.path("k-src%d.err" % i), "wb"))
    dst = link = None
    try:
        wait_text(src_log, WRITTEN, src, 300, "khyve source")
        sb.wait_seq(src_log, len(sb.seqs(src_log)) + 5, src, 60, "khyve source")
        dst = own.spawn([KHYVE, "-R", "127.0.0.1:0", "-l", "com1,file:" + dst_log,
                         "-o", "ctl.socket=" + dst_sock, "-o", "debug.timing=true",
                         "kdst%d" % i], stderr=open(dst_err, "wb"))
        end = time.monotonic() + 30
        while not LISTEN_RE.search(read(dst_err)):
            if dst.poll() is not None or time.monotonic() > end:
                raise BenchError("khyve -R never listened: %s" % read(dst_err).decode())
            time.sleep(0.01)
        port = int(LISTEN_RE.search(read(dst_err)).group(1))
        if a.link:
            link = Link(port, a.link * MiB)
            port = link.port
        args = [KHYVECTL, "--socket=" + src_sock, "--json", "--live",
                "--migrate=127.0.0.1:%d" % port]
        if a.max_downtime:
            args.append("--max-downtime=%d" % a.max_downtime)
        if a.auto_converge:
            args.append("--auto-converge=" + a.auto_converge)
        r = subprocess.run(args, capture_output=True, timeout=600)
        lines = [json.loads(l) for l in r.stdout.decode().splitlines() if l.strip()]
        reply = lines[-1] if lines else {}
        if r.returncode or not reply.get("ok"):
            raise BenchError("khyve live migration failed: %s %s" %
                             (r.stdout.decode().strip(), r.stderr.decode().strip()))
        if src.wait(30) != 0:
            raise BenchError("the khyve source exited %s after migrating" % src.returncode)
        goes_on(dst_log, dst, "khyve destination")
        m = INCOMING_RE.search(read(dst_err))
        if m:
            reply["dst"] = [float(x) for x in m.groups()]
        reply["round_lines"] = [l["progress"] for l in lines[:-1]]
        return reply
    finally:
        if link:
            link.close()
        own.stop(src)
        if dst:
            own.stop(dst)


# ---- QEMU ----

def qemu_once(own, a, i):
    """One QEMU live migration to a QEMU -incoming on loopback.  Returns query-migrate's
    final answer (total-time, downtime, setup-time in ms, ram counters)."""
    port = free_port()
    src = sb.Qemu.boot(own, a.mem)
    dst = None
    try:
        wait_text(src.log, WRITTEN, src.p, 300, "QEMU source")
        dst = sb.Qemu(own, a.mem, "dst%d" % i, incoming="tcp:127.0.0.1:%d" % port)
        dst.qmp = sb.QMP(dst.sock, dst.p)
        src.qmp.cmd("migrate", {"uri": "tcp:127.0.0.1:%d" % port})
        end = time.monotonic() + 600
        while True:
            info = src.qmp.cmd("query-migrate")
            if info.get("status") == "completed":
                break
            if info.get("status") in ("failed", "cancelled") or time.monotonic() > end:
                raise BenchError("QEMU migration %s: %s" % (info.get("status"),
                                                            info.get("error-desc", "")))
            time.sleep(0.005)
        st = dst.qmp.cmd("query-status")["status"]
        if st != "running":
            raise BenchError("QEMU destination is %s after the migration" % st)
        goes_on(dst.log, dst.p, "QEMU destination")
        return info
    finally:
        src.stop()
        if dst:
            dst.stop()


# ---- report ----

def fmt(xs, unit="ms"):
    return "%.1f %s (%.1f-%.1f)" % (med(xs), unit, min(xs), max(xs)) if xs else "-"


def summary(k, q, a):
    say("")
    say("live migration over loopback%s, %s guest, %d vCPUs, counter rewriting %d MiB, "
        "%d repetition%s%s" % (" through a %d MiB/s relay" % a.link if a.link else "", a.mem,
                               sb.CPUS, a.touched, a.reps, "" if a.reps == 1 else "s",
                               ", auto-converge " + a.auto_converge if a.auto_converge else ""))
    kd = [r["downtime_ms"] for r in k]
    ks = [r["downtime_ms"] - r["pause_handover_ms"] for r in k]
    kt = [r["total_ms"] for r in k]
    qd = [float(r.get("downtime", 0)) for r in q]
    qt = [float(r.get("total-time", 0)) for r in q]
    rows = [["figure", "khyve", "QEMU", "ratio", "target"]]

    def ratio(x, y):
        return "%.2fx" % (med(x) / med(y)) if x and y and med(y) else "-"
    rows.append(["downtime (to RUNNING)", fmt(kd), fmt(qd), ratio(kd, qd), "<= 20 ms, <= 0.2x"])
    rows.append(["  pause to END sent", fmt(ks), fmt(qd), ratio(ks, qd), "(QEMU's definition)"])
    rows.append(["total time", fmt(kt), fmt(qt), ratio(kt, qt), "<= 1.0x"])
    rows.append(["rounds", "%g" % med([r["rounds"] for r in k]) if k else "-",
                 "%g" % med([r["ram"]["dirty-sync-count"] for r in q if "ram" in r])
                 if q else "-", "", ""])
    rows.append(["MiB sent", "%.1f" % (med([r["bytes"] for r in k]) / MiB) if k else "-",
                 "%.1f" % (med([r["ram"]["transferred"] for r in q if "ram" in r]) / MiB)
                 if q else "-", "", ""])
    table(rows)
    if k:
        say("")
        say("where khyve's pause went (median ms): " + ", ".join(
            "%s %.2f" % (n, med([r[f] for r in k])) for n, f in (
                ("stop vCPUs+devices", "pause_stop_ms"), ("state", "pause_state_ms"),
                ("last pages", "pause_mem_ms"), ("handover", "pause_handover_ms"))))
        d = [r["dst"] for r in k if "dst" in r]
        if d:
            say("  the destination after END: " + ", ".join(
                "%s %.2f" % (n, med([x[j] for x in d])) for j, n in enumerate(
                    ("memory map", "restore", "to READY", "READY to GO", "GO to running"))))
        say("  final pages: %s; rounds stopped because: %s" % (
            ", ".join(str(r["final_pages"]) for r in k),
            "; ".join(sorted(set(r.get("converged", "?") for r in k)))))
        say("  auto-converge throttle reached: %s" % ", ".join(
            "%d%%" % r.get("throttle_pct", 0) for r in k))
    if q:
        say("  QEMU setup-time %.1f ms, expected-downtime limit 300 ms (default)" %
            med([float(r.get("setup-time", 0)) for r in q]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--mem", default="1G")
    ap.add_argument("--touched", type=int, default=128, metavar="MIB")
    ap.add_argument("--no-qemu", action="store_true")
    ap.add_argument("--max-downtime", type=int, metavar="MS")
    ap.add_argument("--auto-converge", choices=("on", "off"),
                    help="khyve's auto-converge (default: khyve's own, on)")
    ap.add_argument("--link", type=int, metavar="MIB_PER_S",
                    help="khyve only: send through a relay this slow (MiB/s)")
    a = ap.parse_args()
    a.reps = max(1, a.reps)
    a.no_qemu = a.no_qemu or bool(a.link)
    sb.CMDLINE = "mode=counter mem=%dM rate=50" % a.touched
    bad = preflight(not a.no_qemu)
    if bad is not None:
        return bad
    catch_signals()
    own = Owned("khyve-migbench-", signal.SIGINT)
    k, q, status = [], [], 0
    load0 = " ".join("%.2f" % x for x in os.getloadavg())
    try:
        sb.QGUEST = qemu_guest(GUEST, own.path("testguest-qemu"))
        for i in range(a.reps):
            for name, fn, out in (("khyve", khyve_once, k), ("QEMU", qemu_once, q)):
                if name == "QEMU" and a.no_qemu:
                    continue
                try:
                    r = fn(own, a, i)
                except BenchError as e:
                    warnings.add("%s run %d: %s" % (name, i + 1, e))
                    status = 1
                    continue
                out.append(r)
                if name == "khyve":
                    say("  khyve %d: downtime %.2f ms, total %.1f ms, %d rounds (%s), "
                        "%d final pages; pause: stop %.2f, state %.2f, pages %.2f, "
                        "handover %.2f; destination %s" % (
                            i + 1, r["downtime_ms"], r["total_ms"], r["rounds"],
                            r.get("converged"), r["final_pages"], r["pause_stop_ms"],
                            r["pause_state_ms"], r["pause_mem_ms"], r["pause_handover_ms"],
                            r.get("dst")))
                    say("    rounds' dirty pages %s, throttle %s%%" % (
                        [x["dirty_pages"] for x in r["round_lines"]],
                        [x.get("throttle_pct", 0) for x in r["round_lines"]]))
                else:
                    say("  QEMU %d: downtime %s ms, total %s ms, setup %s ms, %s syncs" % (
                        i + 1, r.get("downtime"), r.get("total-time"), r.get("setup-time"),
                        r.get("ram", {}).get("dirty-sync-count")))
        summary(k, q, a)
        say("load average (1, 5, 15 min): %s at the start, %s at the end" % (
            load0, " ".join("%.2f" % x for x in os.getloadavg())))
        say_warnings()
    finally:
        own.cleanup()
    return status


if __name__ == "__main__":
    sys.exit(main())
