#!/usr/bin/env python3
"""khyve VNC benchmark: what an idle guest with a VNC client connected costs the host, and how
many full screens a second a client gets from a guest redrawing its whole screen, under khyve
(fbuf, libvncserver) and under QEMU (std VGA, -vnc), same guest, same client, same run.
bench/README.md explains every figure.

usage: bench/vnc.py [--quick] [--reps N] [--seconds S] [--fps F] [--no-qemu]

  --quick       one repetition
  --reps N      repetitions of each measurement (default 3); the table shows median (min..max)
  --seconds S   how long each phase is measured (default 10)
  --fps F       the guest's redraw rate (default 30)
  --no-qemu     skip the QEMU peer

Environment: KHYVE_BUILD (default build/), QEMU (default qemu-system-x86_64), QEMU_CPU
(default host,arch-capabilities=off).

Timing is only reported, never judged: the exit status is 0 when every run worked, 1 when one
did not (no picture, a guest failure), 2 when the benchmark could not run at all.  Every
process it starts and every file it makes is removed when it ends.
"""

import argparse
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time

sys.dont_write_bytecode = True	# leave no __pycache__ in the tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import (ROOT, BUILD, CPUS, BenchError, Owned, say, catch_signals, read, unlink,
                      med, warnings, preflight, khyve_args, qemu_args, qemu_guest, table,
                      say_warnings)
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
import rfb  # noqa: E402  (the e2e tests' RFB client: handshake and pixel format)

KHYVE = os.path.join(BUILD, "khyve")
GUEST = os.path.join(BUILD, "testguest")
QGUEST = None	# the copy QEMU boots (qemu_guest())
QEMU_CPU = os.environ.get("QEMU_CPU", "host,arch-capabilities=off")
MEM = "256M"
W, H = 1024, 768
HZ = os.sysconf("SC_CLK_TCK")

CONSOLE_RE = re.compile(rb"^console: gfx (\d+)x(\d+)", re.M)
FRAMES_RE = re.compile(rb"^frames (\d+) at (\d+) ms$", re.M)


def guest_frames(log):
    """The guest's last "frames N at T ms" line (mode=console redrawfull): (N, T)."""
    m = FRAMES_RE.findall(read(log))
    return (int(m[-1][0]), int(m[-1][1])) if m else None


def freeze(own):
    """Copy khyve and the guest into our directory (others rebuild build/ meanwhile)."""
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


def free_vnc_port():
    """A free TCP port from 5910 on (QEMU's -vnc takes a display number: port - 5900)."""
    for port in range(5910, 6000):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    raise BenchError("no free TCP port in 5910..5999")


def vm_args(vmm, port, log, cmd):
    if vmm == "khyve":
        return khyve_args(KHYVE, GUEST, MEM, log, cmd, "off", "vncbench",
                          ["-s", "29,fbuf,tcp=127.0.0.1:%d,w=%d,h=%d" % (port, W, H)])
    return qemu_args(QEMU_CPU, "pc", MEM, QGUEST, cmd) + [
        "-device", "VGA,xres=%d,yres=%d" % (W, H), "-vnc", "127.0.0.1:%d" % (port - 5900),
        "-serial", "file:" + log, "-no-reboot", "-name", "vncbench,debug-threads=on"]


# ---- CPU time from /proc ----

def cpu_times(pid):
    """(whole process, its vCPU threads) CPU seconds so far.  vCPU threads: khyve's "vcpuN",
    QEMU's "CPU N/KVM"."""
    with open("/proc/%d/stat" % pid) as f:
        st = f.read().rsplit(")", 1)[1].split()
    total = (int(st[11]) + int(st[12])) / HZ
    vcpu = 0.0
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                raw = f.read()
        except OSError:
            continue
        name = raw[raw.index("(") + 1:raw.rindex(")")]
        if re.match(r"vcpu\d+$|CPU \d+/KVM$", name):
            t = raw.rsplit(")", 1)[1].split()
            vcpu += (int(t[11]) + int(t[12])) / HZ
    return total, vcpu


# ---- the client ----

class Client(rfb.RFB):
    """The e2e RFB client, with a reader that counts updates and throws the pixels away (a
    Python copy of every pixel would make the client the bottleneck)."""

    def skip(self, n):
        take = min(n, len(self.buf))
        self.buf = self.buf[take:]
        n -= take
        if not hasattr(self, "scratch"):
            self.scratch = memoryview(bytearray(1 << 20))
        while n:
            got = self.s.recv_into(self.scratch, min(n, len(self.scratch)))
            if not got:
                raise rfb.RFBError("server closed the connection")
            n -= got

    def update(self):
        """Read one server message; returns the update's raw rectangles as (x, y, w, h), or
        None for any other message."""
        t = self.recv(1)[0]
        if t != 0:
            self.buf = bytes([t]) + self.buf
            self.read_message()
            return None
        self.recv(1)
        n = struct.unpack(">H", self.recv(2))[0]
        rects = []
        for _ in range(n):
            x, y, w, h, enc = struct.unpack(">HHHHi", self.recv(12))
            if enc == 0:
                self.skip(w * h * 4)
                rects.append((x, y, w, h))
            elif enc == -223:
                self.resize(w, h)
            else:
                raise rfb.RFBError("unexpected encoding %d" % enc)
        return rects

    def pump(self, seconds):
        """Keep one incremental request outstanding for @seconds, as a viewer does.  Returns
        (updates, pixel area received, complete screens, elapsed s).  A complete screen is
        counted each time every row has been sent whole (the widths sent for it add up to
        the screen's) since the last one: with a guest that changes every pixel in every
        frame, that is a frame delivered, however the server split it into updates."""
        updates = area = screens = 0
        covered = [0] * self.height
        missing = self.height
        self.request()
        t0 = time.monotonic()
        end = t0 + seconds
        try:
            while time.monotonic() < end:
                # Wait (briefly) only for a message to begin: once it has, it is read whole.
                # A timeout in the middle of one lost the bytes already taken off the buffer
                # and the stream fell out of step ("unexpected encoding").
                if not self.buf and not select.select([self.s], [], [], 0.25)[0]:
                    continue
                rects = self.update()
                if rects is None:
                    continue
                updates += 1
                self.request()
                if len(covered) != self.height:
                    covered, missing = [0] * self.height, self.height
                for x, y, w, h in rects:
                    area += w * h
                    for row in range(y, min(y + h, self.height)):
                        was = covered[row]
                        covered[row] = was + w
                        if was < self.width <= was + w:
                            missing -= 1
                if missing <= 0:
                    screens += 1
                    covered = [max(0, c - self.width) for c in covered]
                    missing = sum(1 for c in covered if c < self.width)
        finally:
            self.s.settimeout(30)
        return updates, area, screens, time.monotonic() - t0


def connect(port, timeout=60):
    end = time.monotonic() + timeout
    while True:
        try:
            return Client(("127.0.0.1", port), timeout=30)
        except (ConnectionRefusedError, ConnectionResetError, rfb.RFBError, socket.timeout):
            if time.monotonic() > end:
                raise BenchError("no VNC server on 127.0.0.1:%d" % port)
            time.sleep(0.2)


# ---- one VM ----

def boot(own, vmm, cmd, tag):
    port = free_vnc_port()
    log, err = own.path(tag + ".log"), own.path(tag + ".err")
    ef = open(err, "wb")
    p = own.spawn(vm_args(vmm, port, log, cmd), stderr=ef)
    ef.close()
    end = time.monotonic() + 120
    while time.monotonic() < end:
        con = read(log)
        m = CONSOLE_RE.search(con)
        if m:
            if (int(m.group(1)), int(m.group(2))) != (W, H):
                own.stop(p)
                raise BenchError("%s: the guest set %sx%s, not %dx%d" %
                                 (vmm, m.group(1).decode(), m.group(2).decode(), W, H))
            return p, port, log, err
        if p.poll() is not None or b"TESTGUEST FAIL" in con:
            break
        time.sleep(0.1)
    own.stop(p)
    raise BenchError("%s: the guest never drew its console (%s); console ends with:\n%s\n"
                     "stderr:\n%s" % (vmm, "exited %s" % p.returncode if p.poll() is not None
                                      else "still running", read(log)[-300:].decode(
                                          errors="replace"),
                                      read(err)[-300:].decode(errors="replace")))


def check_guest(vmm, log):
    for l in read(log).splitlines():
        if b"TESTGUEST FAIL" in l or l.startswith(b"exception "):
            raise BenchError("%s: guest printed '%s'" % (vmm, l.decode(errors="replace")))


def measure_cpu(p, seconds, work=None):
    t0, v0 = cpu_times(p.pid)
    w0 = time.monotonic()
    out = work(seconds) if work else time.sleep(seconds)
    t1, v1 = cpu_times(p.pid)
    wall = time.monotonic() - w0
    return {"cpu": (t1 - t0) / wall * 100, "vcpu": (v1 - v0) / wall * 100,
            "other": ((t1 - t0) - (v1 - v0)) / wall * 100}, out


def run_idle(own, vmm, a, tag):
    """mode=console, nothing drawing: CPU with no client, then with a client connected."""
    p, port, log, err = boot(own, vmm, "mode=console", tag)
    try:
        time.sleep(2)  # let the boot's last work settle
        alone, _ = measure_cpu(p, a.seconds)
        c = connect(port)
        try:
            c.capture()
            conn, (ups, area, _, el) = measure_cpu(p, a.seconds, c.pump)
        finally:
            c.close()
        check_guest(vmm, log)
    finally:
        own.stop(p)
    unlink(log)
    unlink(err)
    conn["updates"] = ups / el
    return alone, conn


def run_redraw(own, vmm, a, tag):
    """mode=console redraw=FPS redrawfull: every pixel changes FPS times a second."""
    p, port, log, err = boot(own, vmm, "mode=console redraw=%d redrawfull" % a.fps, tag)
    try:
        c = connect(port)
        try:
            c.capture()
            c.pump(1)  # the first second: the server catches up with the picture
            g0, c0 = guest_frames(log), time.process_time()
            r, (ups, area, screens, el) = measure_cpu(p, a.seconds, c.pump)
            g1, c1 = guest_frames(log), time.process_time()
        finally:
            c.close()
        check_guest(vmm, log)
    finally:
        own.stop(p)
    unlink(log)
    unlink(err)
    r["updates"] = ups / el
    r["fps"] = screens / el
    r["pixels"] = area / (c.width * c.height) / el
    r["client"] = (c1 - c0) / el * 100
    if not g0 or not g1 or g1[1] <= g0[1]:
        raise BenchError("%s: the guest printed no frames lines while redrawing" % vmm)
    r["gfps"] = (g1[0] - g0[0]) / (g1[1] - g0[1]) * 1000
    return r


# ---- the report ----

def fmt(xs, prec):
    if not xs:
        return "-"
    return "%.*f (%.*f..%.*f)" % (prec, med(xs), prec, min(xs), prec, max(xs))


def summary(res, a, qemu):
    vmms = ["khyve", "qemu"] if qemu else ["khyve"]
    name = {"khyve": "khyve fbuf", "qemu": "QEMU VGA -vnc"}
    rows = [["figure", "VMM", "median (min..max)", "target"]]

    def add(label, key, field, prec, target=""):
        for vmm in vmms:
            xs = [r[field] for r in res.get((vmm, key), [])]
            rows.append([label if vmm == "khyve" else "", name[vmm], fmt(xs, prec),
                         target if vmm == "khyve" else ""])
    add("idle, no client: % of a CPU, whole VMM", "alone", "cpu", 2)
    add("idle, no client: % of a CPU, vCPU threads", "alone", "vcpu", 2)
    add("idle, client: % of a CPU, whole VMM", "idle", "cpu", 2)
    add("idle, client: % of a CPU, vCPU threads", "idle", "vcpu", 2)
    add("idle, client: % of a CPU, other threads (VNC)", "idle", "other", 2, "< 1%")
    add("idle, client: updates/s", "idle", "updates", 1)
    add("redraw %d fps: frames/s the guest drew" % a.fps, "redraw", "gfps", 1)
    add("redraw %d fps: complete frames/s received" % a.fps, "redraw", "fps", 1, ">= 25")
    add("redraw %d fps: pixels received, screens/s" % a.fps, "redraw", "pixels", 1)
    add("redraw %d fps: client CPU, %% of a CPU" % a.fps, "redraw", "client", 1)
    add("redraw %d fps: updates/s" % a.fps, "redraw", "updates", 1)
    add("redraw %d fps: %% of a CPU, whole VMM" % a.fps, "redraw", "cpu", 1)
    add("redraw %d fps: %% of a CPU, other threads" % a.fps, "redraw", "other", 1)
    if qemu:
        k = [r["fps"] for r in res.get(("khyve", "redraw"), [])]
        q = [r["fps"] for r in res.get(("qemu", "redraw"), [])]
        if k and q and med(q):
            rows.append(["redraw: khyve / QEMU complete frames/s", "",
                         "%.2fx (min %.2fx, max %.2fx)" % (med(k) / med(q), min(k) / min(q),
                                                           max(k) / max(q)), ""])
    say("")
    say("khyve VNC benchmark, %s, %s, %d vCPUs, %s RAM, %dx%d 32 bpp, raw encoding, "
        "%d s per phase; median (min..max) of %d runs" %
        (time.strftime("%Y-%m-%d"), os.uname().nodename, CPUS, MEM, W, H, a.seconds, a.reps))
    table(rows)
    say("tree %s; host load average (1 min) %.1f at the start, %.1f at the end" %
        (res["version"], res["load0"], os.getloadavg()[0]))
    say_warnings()


def bench(own, a, qemu, res):
    vmms = ["khyve", "qemu"] if qemu else ["khyve"]
    bad = 0
    for i in range(a.reps):
        for vmm in (vmms if i % 2 == 0 else list(reversed(vmms))):
            try:
                alone, idle = run_idle(own, vmm, a, "%s-idle-%d" % (vmm, i))
                res.setdefault((vmm, "alone"), []).append(alone)
                res.setdefault((vmm, "idle"), []).append(idle)
                say("  %-5s idle   run %d: %.2f%% of a CPU alone, %.2f%% with a client "
                    "(vCPUs %.2f%%, other %.2f%%), %.1f updates/s" %
                    (vmm, i + 1, alone["cpu"], idle["cpu"], idle["vcpu"], idle["other"],
                     idle["updates"]))
            except (BenchError, rfb.RFBError, OSError) as e:
                warnings.add("%s idle run %d: %s" % (vmm, i + 1, e))
                bad += 1
            try:
                r = run_redraw(own, vmm, a, "%s-redraw-%d" % (vmm, i))
                res.setdefault((vmm, "redraw"), []).append(r)
                say("  %-5s redraw run %d: guest %.1f frames/s, %.1f complete frames/s received "
                    "(%.1f screens of pixels), %.1f updates/s, %.1f%% of a CPU (other threads "
                    "%.1f%%), client %.1f%%" %
                    (vmm, i + 1, r["gfps"], r["fps"], r["pixels"], r["updates"], r["cpu"],
                     r["other"], r["client"]))
            except (BenchError, rfb.RFBError, OSError) as e:
                warnings.add("%s redraw run %d: %s" % (vmm, i + 1, e))
                bad += 1
    return bad


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="one repetition")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--no-qemu", action="store_true")
    a = ap.parse_args()
    a.reps = 1 if a.quick else max(1, a.reps)
    a.seconds = max(1, a.seconds)
    a.fps = min(max(1, a.fps), 120)
    qemu = not a.no_qemu
    bad = preflight(qemu)
    if bad is not None:
        return bad
    catch_signals()
    own = Owned("khyve-vncbench-", signal.SIGTERM)
    res = {"load0": os.getloadavg()[0], "version": tree_version()}
    status = 0
    try:
        freeze(own)
        say("== vncbench: %dx%d, guest redraw %d fps, %d s per phase" % (W, H, a.fps,
                                                                          a.seconds))
        if bench(own, a, qemu, res):
            status = 1
        summary(res, a, qemu)
    except KeyboardInterrupt:
        say("bench: interrupted")
        status = 130
    finally:
        own.cleanup()
    return status


if __name__ == "__main__":
    sys.exit(main())
