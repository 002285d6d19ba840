#!/usr/bin/env python3
"""khyve snapshot benchmark: checkpoint and restore times of the counter test guest, against
the physical limits of this machine (dd writing the same bytes with fsync, an empty KVM VM) and
against QEMU doing the same job.  bench/README.md explains every figure.

usage: bench/snapshot.py [--quick] [--reps N] [--no-qemu] [--sizes 512M,1G,4G]

  --quick     512 MiB guest only, one repetition, no QEMU
  --reps N    repetitions of each measurement (default 5); the table shows median and min
  --no-qemu   skip the QEMU peer
  --sizes L   guest sizes to run (default 512M,4G)

Environment: KHYVE_BUILD (default build/), QEMU (default qemu-system-x86_64), QEMU_MACHINE
(default pc; q35 works too).  Files go to a new directory under $TMPDIR (default /tmp): set
TMPDIR to measure another filesystem.

Timing is only reported, never judged: the exit status is 0 when every run worked (the
snapshots were written, the restored guests went on counting), 1 when one did not, 2 when the
benchmark could not run at all.  Every process it starts and every file it makes is removed when
it ends, whatever the reason.
"""

import argparse
import json
import math
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time

sys.dont_write_bytecode = True	# leave no __pycache__ in the tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from incremental import extents  # noqa: E402  (the memory map's data extents)
from benchlib import (ROOT, BUILD, CPUS, MiB, BenchError, Owned, say, catch_signals, read,
                      unlink, warm, med, warnings, preflight, khyve_args,
                      qemu_args, qemu_guest, table, say_warnings)

KHYVE = os.path.join(BUILD, "khyve")
KHYVECTL = os.path.join(BUILD, "khyvectl")
GUEST = os.path.join(BUILD, "testguest")
QGUEST = None	# the copy QEMU boots (qemu_guest())
QEMU_MACHINE = os.environ.get("QEMU_MACHINE", "pc")	# PIIX: the closest to khyve's PC

TOUCHED = 128 << 20			# the guest's pattern region: mem=128M
CMDLINE = "mode=counter mem=128M"
SEQ_RE = re.compile(rb"^seq (\d+)$", re.M)
RUNNING_RE = re.compile(rb"guest running ([0-9.]+) ms after start")


def now_ms():
    return time.monotonic() * 1e3


# ---- small helpers ----

def seqs(path):
    return [int(m.group(1)) for m in SEQ_RE.finditer(read(path))]


def fail_lines(path):
    return [l.decode(errors="replace") for l in read(path).splitlines()
            if b"TESTGUEST FAIL" in l]


def wait_seq(path, n, proc, timeout, what):
    """Wait until the console at @path shows @n seq lines while @proc lives."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if len(seqs(path)) >= n:
            return
        if proc.poll() is not None:
            raise BenchError("%s exited (status %s) before printing %d seq lines; console "
                             "ends with:\n%s" % (what, proc.returncode, n, read(path)[-400:]
                                                  .decode(errors="replace")))
        time.sleep(0.05)
    raise BenchError("%s printed %d of %d seq lines in %d s" %
                     (what, len(seqs(path)), n, timeout))


def note_guest_failures(path, what):
    for l in fail_lines(path):
        warnings.add("%s: guest printed '%s'" % (what, l.strip()))


# ---- khyve ----

class Khyve:
    """A khyve running the counter guest, with its control socket."""

    def __init__(self, own, size):
        self.own, self.size = own, size
        self.name = "bench" + size.lower()
        self.log = own.path(self.name + ".log")
        self.sock = own.path(self.name + ".sock")
        self.snap = own.path(self.name + ".snap")
        self.p = own.spawn(khyve_args(KHYVE, GUEST, size, self.log, CMDLINE, self.sock,
                                      self.name),
                           stderr=open(own.path(self.name + ".err"), "wb"))

    def wait_booted(self):
        wait_seq(self.log, 5, self.p, 120, "khyve (%s)" % self.size)

    def ctl(self, *args):
        r = subprocess.run([KHYVECTL, "--vm=" + self.name, "--socket=" + self.sock, "--json"]
                           + list(args), capture_output=True, timeout=600)
        lines = [l for l in r.stdout.decode().splitlines() if l.strip()]
        try:
            reply = json.loads(lines[-1])
        except (IndexError, ValueError):
            reply = {}
        if r.returncode or not reply.get("ok"):
            raise BenchError("khyvectl %s failed (status %d): %s %s" %
                             (" ".join(args), r.returncode, r.stdout.decode().strip(),
                              r.stderr.decode().strip()))
        return reply

    def checkpoint(self):
        return self.ctl("--checkpoint=" + self.snap)

    def live_checkpoint(self):
        return self.ctl("--checkpoint=" + self.snap, "--live")

    def pause(self):
        self.ctl("--pause")

    def resume(self):
        self.ctl("--resume")

    def still_counting(self):
        wait_seq(self.log, len(seqs(self.log)) + 2, self.p, 30,
                 "khyve (%s) after its checkpoints" % self.size)
        note_guest_failures(self.log, "khyve %s (booted)" % self.size)

    def stop(self):
        self.own.stop(self.p)


class RestoredKhyve(Khyve):
    """A khyve restored from @snap, with a control socket: its RAM maps that file privately,
    so its live checkpoints pre-copy with the dirty log (method "dirty-log")."""

    def __init__(self, own, size, snap):
        self.own, self.size = own, size
        self.name = "restored" + size.lower()
        self.log = own.path(self.name + ".log")
        self.sock = own.path(self.name + ".sock")
        self.snap = own.path(self.name + ".snap")
        self.p = own.spawn([KHYVE, "-r", snap, "-l", "com1,file:" + self.log,
                            "-o", "ctl.socket=" + self.sock, self.name],
                           stderr=open(own.path(self.name + ".err"), "wb"))


def khyve_restore(own, size, snap, verify, i):
    """Restore @snap until the guest runs, then until it prints two more seq lines.  Returns
    (khyve's own ms, ms from spawn to that report)."""
    log = own.path("restore-%s-%s-%d.log" % (size, verify, i))
    t0 = now_ms()
    p = own.spawn([KHYVE, "-r", snap, "-o", "debug.timing=true", "-o", "ctl.socket=off",
                   "-l", "com1,file:" + log, "-o", "snapshot.verify=" + verify, "restored"],
                  stderr=subprocess.PIPE)
    err, ms, t1 = b"", None, None
    try:
        end = time.monotonic() + 60
        while ms is None and time.monotonic() < end:
            r, _, _ = select.select([p.stderr], [], [], 0.5)
            if not r:
                continue
            data = os.read(p.stderr.fileno(), 4096)
            err += data
            m = RUNNING_RE.search(err)
            if m:
                t1 = now_ms()
                ms = float(m.group(1))
            elif not data:
                break
        if ms is None:
            raise BenchError("khyve -r (%s, verify=%s) did not report a running guest: %s" %
                             (size, verify, err.decode(errors="replace").strip()))
        wait_seq(log, 2, p, 30, "restored khyve (%s, verify=%s)" % (size, verify))
        say("  khyve %s restore verify=%s: guest running %.2f ms after main(), %.2f ms after "
            "spawn; it goes on from seq %d" % (size, verify, ms, t1 - t0, seqs(log)[0]))
        return ms, t1 - t0
    finally:
        note_guest_failures(log, "khyve %s restored" % size)
        own.stop(p)


# ---- physical limits ----

class DD:
    """dd writing the snapshot's own data bytes (its memory extents, whole MiB rounded up)
    from a file in the page cache to a new file on the same filesystem, with fsync as khyve
    does.  The same bytes, not random ones: this machine's storage seems to compress (a 1 GiB
    checkpoint of the counter pattern took 0.9-1.1 s, dd of 1 GiB of random bytes 4.7-5.0 s),
    so a floor made of other bytes is not the floor."""

    def __init__(self, own, snap):
        self.src, self.dst = own.path("dd.src"), own.path("dd.dst")
        n = 0
        with open(snap, "rb") as f, open(self.src, "wb") as out:
            for off, length in extents(snap):
                f.seek(off)
                out.write(f.read(length))
                n += length
            out.flush()
            os.fsync(out.fileno())	# synced: no writeback of it while dd runs
        self.count = math.ceil(n / MiB)
        self.run()			# warm-up, not counted

    def run(self):
        warm(self.src)			# make sure it is in the page cache
        unlink(self.dst)
        t0 = now_ms()
        subprocess.run(["dd", "if=" + self.src, "of=" + self.dst, "bs=1M",
                        "count=%d" % self.count, "conv=fsync", "status=none"], check=True)
        ms = now_ms() - t0
        unlink(self.dst)
        return ms

    def close(self):
        unlink(self.src)


def build_floor(own):
    exe = own.path("kvm_floor")
    subprocess.run(["gcc", "-O2", "-std=gnu11", "-Wall", "-Wextra", "-Werror", "-o", exe,
                    os.path.join(ROOT, "bench", "kvm_floor.c")], check=True)
    return exe


def floor_run(exe, size):
    r = subprocess.run([exe, size, str(CPUS)], capture_output=True, check=True)
    return float(r.stdout.split()[1])


# ---- QEMU ----

class QMP:
    def __init__(self, path, proc, timeout=30):
        end = time.monotonic() + timeout
        while True:
            self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                self.s.connect(path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                self.s.close()
                if proc.poll() is not None or time.monotonic() > end:
                    raise BenchError("QEMU's QMP socket %s never answered" % path)
                time.sleep(0.001)
        self.buf = b""
        self.recv()			# greeting
        self.cmd("qmp_capabilities")

    def recv(self):
        while b"\n" not in self.buf:
            data = self.s.recv(65536)
            if not data:
                raise BenchError("QEMU closed its QMP socket")
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def cmd(self, name, args=None):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        self.s.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            r = self.recv()
            if "event" in r:
                continue
            if "error" in r:
                raise BenchError("QMP %s: %s" % (name, r["error"].get("desc")))
            return r["return"]

    def close(self):
        self.s.close()


class Qemu:
    """QEMU running the same guest, with no default devices."""
    cpu = "host"

    def __init__(self, own, size, tag, incoming=None):
        self.own, self.size = own, size
        self.log = own.path("qemu-%s.log" % tag)
        self.sock = own.path("qemu-%s.qmp" % tag)
        self.errpath = own.path("qemu-%s.err" % tag)
        self.snap = own.path("qemu-%s.mig" % size)
        args = qemu_args(Qemu.cpu, QEMU_MACHINE, size, QGUEST, CMDLINE) + [
            "-display", "none", "-serial", "file:" + self.log,
            "-qmp", "unix:%s,server=on,wait=off" % self.sock]
        if incoming:
            args += ["-incoming", incoming]
        self.t0 = now_ms()
        self.p = own.spawn(args, stderr=open(self.errpath, "wb"))
        self.qmp = None

    @staticmethod
    def boot(own, size):
        """Boot the guest; fall back to -cpu host,arch-capabilities=off when this KVM refuses
        QEMU's IA32_ARCH_CAPABILITIES (seen on nested PVM hosts)."""
        q = Qemu(own, size, "boot-" + size)
        try:
            wait_seq(q.log, 5, q.p, 600, "QEMU (%s)" % size)
        except BenchError:
            err = read(q.errpath)
            q.stop()
            if Qemu.cpu != "host" or b"MSR 0x10a" not in err:
                raise BenchError("QEMU (%s) did not boot the guest: %s" %
                                 (size, err.decode(errors="replace").strip()))
            warnings.add("QEMU: this KVM refuses MSR 0x10a with -cpu host; "
                         "using -cpu host,arch-capabilities=off")
            Qemu.cpu = "host,arch-capabilities=off"
            q = Qemu(own, size, "boot2-" + size)
            wait_seq(q.log, 5, q.p, 600, "QEMU (%s)" % size)
        q.qmp = QMP(q.sock, q.p)
        # QEMU 7.2 throttles migration to 32 MiB/s by default: lift it, as libvirt's save does.
        q.qmp.cmd("migrate-set-parameters", {"max-bandwidth": 1 << 40})
        return q

    def checkpoint(self):
        """stop, migrate to self.snap through an exec: helper that also syncs the file, cont.
        The checkpoint is done when QEMU says the migration completed and the helper has
        synced the file (it then creates a marker).  Returns (total ms, paused ms, size)."""
        path, qmp = self.snap, self.qmp
        done = path + ".done"
        unlink(path)
        unlink(done)
        t0 = now_ms()
        qmp.cmd("stop")
        qmp.cmd("migrate", {"uri": "exec:cat > '%s' && sync '%s' && touch '%s'" %
                            (path, path, done)})
        while True:
            st = qmp.cmd("query-migrate").get("status")
            if st == "completed":
                break
            if st in ("failed", "cancelled"):
                raise BenchError("QEMU migration to %s %s" % (path, st))
            time.sleep(0.001)
        t_done = now_ms() if os.path.exists(done) else None
        qmp.cmd("cont")
        t_cont = now_ms()
        end = time.monotonic() + 120
        while t_done is None:
            if os.path.exists(done):
                t_done = now_ms()
            elif time.monotonic() > end:
                raise BenchError("QEMU's migration helper never finished writing " + path)
            else:
                time.sleep(0.001)
        unlink(done)
        return t_done - t0, t_cont - t0, os.path.getsize(path)

    def live_checkpoint(self):
        """QEMU's background-snapshot (userfaultfd write protection, like khyve --live): a
        migration to self.snap while the guest runs, with the capability on for this one only.
        Returns (ms until the file is synced, QEMU's reported downtime in ms, size)."""
        path, qmp = self.snap, self.qmp
        done = path + ".done"
        unlink(path)
        unlink(done)
        qmp.cmd("migrate-set-capabilities", {"capabilities": [
            {"capability": "background-snapshot", "state": True}]})
        try:
            t0 = now_ms()
            qmp.cmd("migrate", {"uri": "exec:cat > '%s' && sync '%s' && touch '%s'" %
                                (path, path, done)})
            while True:
                info = qmp.cmd("query-migrate")
                if info.get("status") == "completed":
                    break
                if info.get("status") in ("failed", "cancelled"):
                    raise BenchError("QEMU background snapshot to %s %s: %s" %
                                     (path, info.get("status"), info.get("error-desc", "")))
                time.sleep(0.001)
            end = time.monotonic() + 120
            while not os.path.exists(done):
                if time.monotonic() > end:
                    raise BenchError("QEMU's migration helper never finished writing " + path)
                time.sleep(0.001)
            t_done = now_ms()
        finally:
            qmp.cmd("migrate-set-capabilities", {"capabilities": [
                {"capability": "background-snapshot", "state": False}]})
        unlink(done)
        return t_done - t0, float(info.get("downtime", 0)), os.path.getsize(path)

    def pause(self):
        self.qmp.cmd("stop")

    def resume(self):
        self.qmp.cmd("cont")

    def still_counting(self):
        wait_seq(self.log, len(seqs(self.log)) + 2, self.p, 30,
                 "QEMU (%s) after its checkpoints" % self.size)
        note_guest_failures(self.log, "QEMU %s (booted)" % self.size)

    def stop(self):
        if self.qmp:
            self.qmp.close()
        self.own.stop(self.p, signal.SIGTERM)


def qemu_restore(own, size, snap, i):
    """Start QEMU with -incoming from @snap.  Returns ms from spawn until the stream is loaded
    and until the guest runs (after a cont: the stream says the VM was stopped)."""
    q = Qemu(own, size, "restore-%s-%d" % (size, i), incoming="exec:cat '%s'" % snap)
    try:
        qmp = q.qmp = QMP(q.sock, q.p)
        end = time.monotonic() + 300
        while True:
            st = qmp.cmd("query-status")["status"]
            if st not in ("inmigrate", "prelaunch"):
                break
            if time.monotonic() > end:
                raise BenchError("QEMU (%s) still loading after 300 s" % size)
            time.sleep(0.001)
        t_loaded = now_ms()
        if st != "running":
            qmp.cmd("cont")
        t_run = now_ms()
        st = qmp.cmd("query-status")["status"]
        if st != "running":
            raise BenchError("QEMU (%s) restore: the guest is %s, not running" % (size, st))
        wait_seq(q.log, 2, q.p, 30, "restored QEMU (%s)" % size)
        say("  QEMU %s restore: loaded %.1f ms, running %.1f ms after spawn; it goes on from "
            "seq %d" % (size, t_loaded - q.t0, t_run - q.t0, seqs(q.log)[0]))
        return t_loaded - q.t0, t_run - q.t0
    finally:
        note_guest_failures(q.log, "QEMU %s restored" % size)
        q.stop()


# ---- one guest size, everything interleaved ----

def settle():
    """Let the previous step's leftovers pass (a VM being torn down, writeback, the discards
    of a deleted file), so that they are not timed as part of the next step."""
    os.sync()
    time.sleep(0.3)


def warm_up(vm, what):
    """A first checkpoint, not counted; repeated until the whole region is in it."""
    end = time.monotonic() + 120
    while True:
        n = vm()
        if n >= TOUCHED or time.monotonic() > end:
            break
        time.sleep(1)
    if n < TOUCHED:
        warnings.add("%s: only %d bytes saved, less than the %d the guest touches" %
                     (what, n, TOUCHED))
    return n


def add(r, key, value):
    r.setdefault(key, []).append(value)


def bench_size(own, size, reps, qemu, floor_exe, r):
    """Checkpoints: khyve, dd and QEMU take turns, each with the other VM paused so that the
    one measured has the host's CPUs.  Restores: kvm_floor, khyve (fast, full) and QEMU take
    turns with no other VM running.  Taking turns spreads this host's noise evenly."""
    say("== %s guest, %d vCPUs, %s" % (size, CPUS, CMDLINE))
    k = Khyve(own, size)
    q = Qemu.boot(own, size) if qemu else None
    k.wait_booted()
    nbytes = warm_up(lambda: k.checkpoint()["bytes"], "khyve " + size)
    k.pause()
    if q:
        warm_up(lambda: q.checkpoint()[2], "QEMU " + size)
        q.pause()
    k.checkpoint()			# a file of this VM's memory for dd's bytes
    dd = DD(own, k.snap)
    for i in range(reps):
        # Each timed step starts on a quiet disk, the previous file already deleted: the
        # checkpoints, like dd, write a new file and free nothing while timed.
        unlink(k.snap)
        settle()
        k.resume()
        time.sleep(0.5)			# the guest runs between checkpoints
        c = k.checkpoint()
        k.pause()
        st = os.stat(k.snap)
        for key in ("total_ms", "paused_ms", "bytes"):
            add(r, "ck_" + key, c[key])
        add(r, "ck_alloc", st.st_blocks * 512)
        settle()
        add(r, "dd", dd.run())
        say("  khyve %s checkpoint %d: total %.1f ms, paused %.1f ms, %d bytes, %d allocated;"
            " dd %.1f ms" % (size, i + 1, c["total_ms"], c["paused_ms"], c["bytes"],
                             st.st_blocks * 512, r["dd"][-1]))
        # The same VM checkpointed live: the guest runs (and rewrites its region) while
        # memory is written; paused_ms is how long its vCPUs were stopped.
        unlink(k.snap)
        settle()
        k.resume()
        time.sleep(0.5)
        lc = k.live_checkpoint()
        k.pause()
        for key in ("total_ms", "paused_ms", "bytes", "fault_pages"):
            add(r, "live_" + key, lc.get(key, 0))
        say("  khyve %s live checkpoint %d: total %.1f ms, paused %.3f ms, %d bytes, %d pages "
            "saved ahead of the writer" % (size, i + 1, lc["total_ms"], lc["paused_ms"],
                                           lc["bytes"], lc.get("fault_pages", 0)))
        if q:
            unlink(q.snap)
            settle()
            q.resume()
            time.sleep(0.5)
            total, paused, nbytes = q.checkpoint()
            q.pause()
            add(r, "q_total", total)
            add(r, "q_paused", paused)
            add(r, "q_size", nbytes)
            say("  QEMU %s checkpoint %d: total %.1f ms, paused %.1f ms, %d bytes" %
                (size, i + 1, total, paused, nbytes))
            unlink(q.snap)
            settle()
            q.resume()
            time.sleep(0.5)
            try:
                total, down, nbytes = q.live_checkpoint()
                add(r, "q_live_total", total)
                add(r, "q_live_down", down)
                say("  QEMU %s background-snapshot %d: total %.1f ms, downtime %.1f ms, %d "
                    "bytes" % (size, i + 1, total, down, nbytes))
            except BenchError as e:
                warnings.add(str(e))
            q.pause()
    dd.close()
    k.resume()
    k.still_counting()
    k.stop()
    if q:
        q.resume()
        q.still_counting()
        q.stop()

    floor_run(floor_exe, size)		# warm-up, not counted
    for i in range(reps):
        settle()
        add(r, "floor", floor_run(floor_exe, size))
        say("  kvm_floor %s: %.2f ms" % (size, r["floor"][-1]))
        for verify in ("fast", "full"):
            settle()
            try:
                ms, wall = khyve_restore(own, size, k.snap, verify, i)
                add(r, verify, ms)
                add(r, verify + "_wall", wall)
            except BenchError as e:
                add(r, "restore_bad", 1)
                warnings.add(str(e))
        if q:
            settle()
            try:
                loaded, running = qemu_restore(own, size, q.snap, i)
                add(r, "q_loaded", loaded)
                add(r, "q_running", running)
            except BenchError as e:
                add(r, "q_bad", 1)
                warnings.add(str(e))
    bench_restored(own, size, reps, k.snap, r)
    unlink(k.snap)
    if q:
        unlink(q.snap)


def bench_restored(own, size, reps, snap, r):
    """A VM restored from @snap, checkpointed stop-the-world and live (dirty-log pre-copy) by
    turns while it rewrites its region: pause and total of both, rounds of the live one."""
    k = RestoredKhyve(own, size, snap)
    k.wait_booted()
    for i in range(reps):
        for kind in ("rs_ck_", "rs_live_"):
            unlink(k.snap)
            settle()
            time.sleep(0.5)		# the guest runs between checkpoints
            c = k.checkpoint() if kind == "rs_ck_" else k.live_checkpoint()
            for key in ("total_ms", "paused_ms", "bytes", "rounds", "final_pages"):
                add(r, kind + key, c.get(key, 0))
            if kind == "rs_live_" and c.get("method") != "dirty-log":
                warnings.add("restored %s: live checkpoint method %r" % (size, c.get("method")))
            say("  restored khyve %s %s checkpoint %d: total %.1f ms, paused %.3f ms, %d bytes%s"
                % (size, "live" if kind == "rs_live_" else "stop-the-world", i + 1,
                   c["total_ms"], c["paused_ms"], c["bytes"],
                   ", %d rounds, %d pages in the pause (%s); pause: stop %d us, state %d us,"
                   " memory %d us; %d bytes read back" %
                   (c.get("rounds", 0), c.get("final_pages", 0), c.get("converged"),
                    c.get("pause_stop_us", 0), c.get("pause_state_us", 0),
                    c.get("pause_mem_us", 0), c.get("reread_bytes", 0))
                   if kind == "rs_live_" else ""))
    k.still_counting()
    k.stop()
    unlink(k.snap)


# ---- the report ----

def fmt_ms(xs):
    if not xs:
        return "-"
    return "%.1f (%.1f)" % (med(xs), min(xs)) if med(xs) >= 100 else \
        "%.2f (%.2f)" % (med(xs), min(xs))


def fmt_mib(xs):
    return "%.2f MiB" % (med(xs) / MiB) if xs else "-"


def ratio(a, b):
    return med(a) / med(b) if a and b else None


def fmt_ratio(a, b):
    r = ratio(a, b)
    if r is None:
        return "-"
    return "%.2fx (min %.2fx)" % (r, min(a) / min(b))


def verdict(values, limit):
    """'met' when every value is within @limit, 'MISSED' when none is, 'noisy' when the
    medians and the minima disagree."""
    within = [v <= limit for v in values]
    return "met" if all(within) else "MISSED" if not any(within) else "noisy"


def ratios(a, b):
    return [med(a) / med(b), min(a) / min(b)]


def diffs(a, b):
    return [med(a) - med(b), min(a) - min(b)]


def summary(res, sizes, qemu):
    R = lambda size: res.get(size, {})
    rows = []

    def cell(f, *args):
        try:
            return f(*args)
        except (KeyError, TypeError, ZeroDivisionError):
            return None	# that part did not run

    def row(label, f, target="", judge=None):
        cells = [cell(f, R(s)) or "-" for s in sizes]
        v = ""
        if judge:
            vs = [(s, cell(judge, s, R(s))) for s in sizes]
            vs = [(s, x) for s, x in vs if x]
            v = vs[0][1] if len(vs) == 1 else ", ".join("%s %s" % sx for sx in vs)
        rows.append([label] + cells + [target, v])

    row("khyve checkpoint total_ms", lambda r: fmt_ms(r["ck_total_ms"]))
    row("khyve checkpoint paused_ms", lambda r: fmt_ms(r["ck_paused_ms"]))
    row("khyve live checkpoint paused_ms", lambda r: fmt_ms(r["live_paused_ms"]),
        "<= 2 ms", lambda s, r: verdict([med(r["live_paused_ms"])], 2.0))
    row("khyve live checkpoint total_ms", lambda r: fmt_ms(r["live_total_ms"]))
    row("  live total / stop-the-world total",
        lambda r: fmt_ratio(r["live_total_ms"], r["ck_total_ms"]), "<= 1.5x",
        lambda s, r: verdict(ratios(r["live_total_ms"], r["ck_total_ms"]), 1.5))
    row("  live pause / stop-the-world pause",
        lambda r: fmt_ratio(r["live_paused_ms"], r["ck_paused_ms"]))
    row("live pages saved ahead of the writer", lambda r: "%d" % med(r["live_fault_pages"]))
    row("restored VM: stop-the-world paused_ms", lambda r: fmt_ms(r["rs_ck_paused_ms"]))
    row("restored VM: live (dirty-log) paused_ms", lambda r: fmt_ms(r["rs_live_paused_ms"]),
        "<= 2 ms", lambda s, r: verdict([med(r["rs_live_paused_ms"])], 2.0))
    row("  live pause / stop-the-world pause",
        lambda r: fmt_ratio(r["rs_live_paused_ms"], r["rs_ck_paused_ms"]))
    row("restored VM: stop-the-world total_ms", lambda r: fmt_ms(r["rs_ck_total_ms"]))
    row("restored VM: live (dirty-log) total_ms", lambda r: fmt_ms(r["rs_live_total_ms"]))
    row("  live total / stop-the-world total",
        lambda r: fmt_ratio(r["rs_live_total_ms"], r["rs_ck_total_ms"]), "<= 1.5x",
        lambda s, r: verdict(ratios(r["rs_live_total_ms"], r["rs_ck_total_ms"]), 1.5))
    row("  live rounds; pages written in the pause",
        lambda r: "%d; %d" % (med(r["rs_live_rounds"]), med(r["rs_live_final_pages"])))
    row("  live bytes / stop-the-world bytes",
        lambda r: fmt_ratio(r["rs_live_bytes"], r["rs_ck_bytes"]))
    row("dd same bytes, conv=fsync (ms)", lambda r: fmt_ms(r["dd"]))
    row("  checkpoint / dd", lambda r: fmt_ratio(r["ck_total_ms"], r["dd"]), "<= 1.3x",
        lambda s, r: verdict(ratios(r["ck_total_ms"], r["dd"]), 1.3))
    row("snapshot bytes written (reply)", lambda r: fmt_mib(r["ck_bytes"]))
    row("snapshot allocated on disk", lambda r: fmt_mib(r["ck_alloc"]))
    row("  allocated / touched (%d MiB)" % (TOUCHED >> 20),
        lambda r: "%.4fx" % (med(r["ck_alloc"]) / TOUCHED), "<= 1.02x",
        lambda s, r: verdict([med(r["ck_alloc"]) / TOUCHED], 1.02))
    row("kvm_floor: empty VM (ms)", lambda r: fmt_ms(r["floor"]))
    row("khyve restore verify=fast (ms)", lambda r: fmt_ms(r["fast"]))
    row("khyve restore verify=full (ms)", lambda r: fmt_ms(r["full"]))
    row("  fast - floor (ms)", lambda r: "%+.2f (min %+.2f)" % tuple(diffs(r["fast"], r["floor"])),
        "<= 3 ms at 512M", lambda s, r: verdict(diffs(r["fast"], r["floor"]), 3.0)
        if s == "512M" else None)
    row("  fast / floor", lambda r: fmt_ratio(r["fast"], r["floor"]), "<= 1.2x at 4G",
        lambda s, r: verdict(ratios(r["fast"], r["floor"]), 1.2) if s == "4G" else None)
    row("  full / fast", lambda r: fmt_ratio(r["full"], r["fast"]))
    row("khyve restore fast, spawn->running", lambda r: fmt_ms(r["fast_wall"]))
    row("restored khyve guest counts on",
        lambda r: "NO (%d failed)" % len(r["restore_bad"]) if "restore_bad" in r else
        "yes" if "fast" in r else None)
    if qemu:
        row("QEMU checkpoint: stop..synced (ms)", lambda r: fmt_ms(r["q_total"]))
        row("QEMU checkpoint: paused (ms)", lambda r: fmt_ms(r["q_paused"]))
        row("QEMU migration file", lambda r: fmt_mib(r["q_size"]))
        row("QEMU background-snapshot downtime (ms)", lambda r: fmt_ms(r["q_live_down"]))
        row("QEMU background-snapshot total (ms)", lambda r: fmt_ms(r["q_live_total"]))
        row("  khyve live pause / QEMU downtime",
            lambda r: fmt_ratio(r["live_paused_ms"], r["q_live_down"]), "<= 0.1x",
            lambda s, r: verdict(ratios(r["live_paused_ms"], r["q_live_down"]), 0.1))
        row("  khyve / QEMU checkpoint", lambda r: fmt_ratio(r["ck_total_ms"], r["q_total"]),
            "<= 0.33x", lambda s, r: verdict(ratios(r["ck_total_ms"], r["q_total"]), 1 / 3))
        row("QEMU restore, spawn->loaded (ms)", lambda r: fmt_ms(r["q_loaded"]))
        row("QEMU restore, spawn->running (ms)", lambda r: fmt_ms(r["q_running"]))
        row("  khyve / QEMU restore", lambda r: fmt_ratio(r["fast_wall"], r["q_running"]))
        row("restored QEMU guest counts on",
            lambda r: "NO (%d failed)" % len(r["q_bad"]) if "q_bad" in r else
            "yes" if "q_running" in r else None)
    say("")
    say("khyve snapshot benchmark, %s, %s, %d vCPUs, %s touched; "
        "median (min) of %d runs; ratios of medians (of minima)" % (time.strftime("%Y-%m-%d"), os.uname().nodename, CPUS,
                                     "%d MiB" % (TOUCHED >> 20), res["reps"]))
    table([["figure"] + ["%s guest" % s for s in sizes] + ["target", "verdict"]] + rows)
    say_warnings()


def main():
    global QGUEST
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="512 MiB only, one repetition, no QEMU")
    ap.add_argument("--reps", type=int, default=5, help="repetitions (default 5)")
    ap.add_argument("--no-qemu", action="store_true", help="skip the QEMU peer")
    ap.add_argument("--sizes", help="guest sizes, comma-separated (default 512M,4G; the live "
                    "checkpoint targets are for 1G)")
    ap.add_argument("--touched", type=int, default=128, metavar="MIB",
                    help="MiB the guest rewrites (default 128; 1024 to go past the page "
                    "cache's dirty limit)")
    a = ap.parse_args()
    global TOUCHED, CMDLINE
    TOUCHED = a.touched << 20
    CMDLINE = "mode=counter mem=%dM" % a.touched
    sizes = ["512M"] if a.quick else ["512M", "4G"]
    if a.sizes:
        sizes = [x for x in a.sizes.split(",") if x]
    reps = 1 if a.quick else max(1, a.reps)
    qemu = not (a.quick or a.no_qemu)

    bad = preflight(qemu)
    if bad is not None:
        return bad

    catch_signals()
    own = Owned("khyve-bench-", signal.SIGINT)
    res = {"reps": reps}
    status = 0
    try:
        QGUEST = qemu_guest(GUEST, own.path("testguest-qemu"))
        floor_exe = build_floor(own)
        for size in sizes:
            try:
                bench_size(own, size, reps, qemu, floor_exe, res.setdefault(size, {}))
            except BenchError as e:
                warnings.add("%s: %s" % (size, e))
                status = 1
        if any(res[s].get("restore_bad") or res[s].get("q_bad") for s in sizes if s in res):
            status = 1
        summary(res, [s for s in sizes if s in res], qemu)
    finally:
        own.cleanup()
    return status


if __name__ == "__main__":
    sys.exit(main())
