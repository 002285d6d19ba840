"""The gdb stub (-G): Debian's gdb attaches to the test guest, reads its registers and memory,
single-steps it, stops on a hardware breakpoint and a watchpoint (refused on PVM), and detaches
with the guest running on; a
checkpoint of the VM stopped in the debugger restores; the protocol's Ctrl-C and one debugger at
a time, spoken directly.

Where the host is PVM (KVM without VMX/SVM), the guest's ring 3 runs natively and its #DB and #BP
never reach KVM, so steps and breakpoints are tried in ring-0 code (the boot path, which PVM
emulates), which is where they work on hardware too."""

import json
import os
import re
import shutil
import socket
import subprocess
import time

from khyve_e2e import (GUEST, KHYVECTL, VM, Skip, assert_consecutive, check, restored_seqs,
                       test)

PORT_RE = re.compile(rb"khyve: gdb: listening on 127\.0\.0\.1:(\d+)")


def gdb_port(vm, timeout=60):
    end = time.time() + timeout
    while time.time() < end:
        m = PORT_RE.search(vm.err)
        if m:
            return int(m.group(1))
        vm.check_alive()
        vm.pump(0.2)
    raise AssertionError("khyve never said where the gdb stub listens:\n" + vm.err.decode())


def run_gdb(port, cmds, timeout=300):
    if not shutil.which("gdb"):
        raise Skip("gdb is not installed (scripts/deps.sh installs it)")
    args = ["gdb", "-batch", "-nx", "-ex", "set pagination off",
            "-ex", "target remote 127.0.0.1:%d" % port]
    for c in cmds:
        args += ["-ex", c]
    r = subprocess.run(args + [GUEST], capture_output=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    return r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")


def image_words(n):
    """The first @n 64-bit words of the guest's ELF file, which is loaded at 1 MiB headers
    and all (tests/guest/guest.ld), as gdb's x/gx prints them."""
    with open(GUEST, "rb") as f:
        data = f.read(8 * n)
    return ["0x%016x" % int.from_bytes(data[8 * i:8 * i + 8], "little") for i in range(n)]


def reg(out, name):
    m = re.search(r"^%s\s+(0x[0-9a-f]+)" % name, out, re.M)
    check(m, "no %s in gdb's output:\n%s" % (name, out))
    return int(m.group(1), 16)


def pcs(out):
    return [int(v, 16) for v in re.findall(r"^\$\d+ = \(void \(\*\)\(\)\) (0x[0-9a-f]+)", out,
                                           re.M)]


@test
def gdb_attach_running_guest(wd):
    """Attach to a running 2-vCPU guest: registers, memory, both vCPUs as threads, a
    checkpoint while it is stopped in the debugger; after the detach it runs on, and the
    checkpoint restores to the instant it was stopped at."""
    vm = VM(wd, cpus=2, extra=["-G", "0"])
    port = gdb_port(vm)
    before = vm.wait_seq(4, timeout=120)[-1]
    snap = wd("held.snap")
    reply = wd("ckpt.json")
    status = wd("status.json")
    out = run_gdb(port, [
        "info registers", "x/4gx 0x100000", "info threads", "thread 2", "p/x $cr3",
        "shell %s --vm=vm0 --socket=%s --json --checkpoint=%s > %s" % (KHYVECTL, vm.sock, snap,
                                                                       reply),
        "shell %s --vm=vm0 --socket=%s --json --status > %s" % (KHYVECTL, vm.sock, status),
        "thread 1", "detach"])
    n = len(vm.seqs())
    rip, cs, cr0, cr3 = reg(out, "rip"), reg(out, "cs"), reg(out, "cr0"), reg(out, "cr3")
    # Stopped somewhere in the image (the counter loop, or an interrupt handler), in long mode.
    check(0x100000 <= rip < 0x200000, "rip 0x%x is not in the guest image\n%s" % (rip, out))
    check(cs in (0x08, 0x10, 0x18, 0x23, 0x2b), "cs 0x%x\n%s" % (cs, out))
    check(cr0 & 0x80000001 == 0x80000001 and cr3, "cr0 0x%x cr3 0x%x\n%s" % (cr0, cr3, out))
    words = re.findall(r"0x[0-9a-f]{16}", out.split("0x100000:", 1)[-1])[:4]
    check(words == image_words(4), "memory at 1 MiB %r, the image starts %r"
          % (words, image_words(4)))
    check(re.search(r"^\*?\s*1\s+Thread 1 \(vCPU 0\)", out, re.M) and
          re.search(r"^\s*2\s+Thread 2 \(vCPU 1\)", out, re.M), "threads:\n" + out)
    check("detached" in out, "no detach:\n" + out)
    with open(reply) as f:
        ck = f.read()
    check('"ok": true' in ck or '"ok":true' in ck, "checkpoint while stopped: " + ck)
    with open(status) as f:
        st = json.loads(f.read().strip().splitlines()[-1])
    check(st.get("gdb") == {"address": "127.0.0.1:%d" % port, "debugger": "stopped"},
          "status while stopped in the debugger: %r" % st)
    _, st = vm.ctl("--status")
    check(st.get("gdb", {}).get("debugger") == "none", "status after the detach: %r" % st)
    # The guest runs on after the detach, with no gap and no repeat.
    vm.wait_seq(n + 4, timeout=120)
    assert_consecutive(vm.seqs(), "after the detach")
    check(b"TESTGUEST FAIL" not in vm.out, "the guest saw a failure:\n" + vm.tail())
    # The checkpoint holds the stopped instant: the restored guest goes on from a line the
    # original printed too (the original still runs: lines it printed before the stop may
    # not all have been read when the debugger returned).
    r = VM(wd, restore=snap, name="vm1")
    r.wait_seq(3, timeout=120)
    _, seqs = restored_seqs(r.out)
    assert_consecutive(seqs, "restored")
    end = time.time() + 60
    while seqs[0] - 1 not in vm.seqs() and time.time() < end:
        vm.pump(0.2)
    printed = vm.seqs()
    assert_consecutive(printed, "the original")
    vm.kill()
    check(before <= seqs[0] - 1 and seqs[0] - 1 in printed,
          "restored from seq %d; %d was printed before gdb attached" % (seqs[0], before))
    check(b"TESTGUEST FAIL" not in r.out, "restored guest saw a failure:\n" + r.tail())


@test
def gdb_wait_step_hbreak(wd):
    """-G w: the guest waits at its first instruction; stepi moves rip, a hardware breakpoint
    stops it where long mode begins, and after the detach it boots and counts."""
    vm = VM(wd, extra=["-G", "w0"])
    port = gdb_port(vm)
    out = run_gdb(port, [
        "set $rax = 0x5a5a1234",
        "p $pc", "stepi", "p $pc", "p/x $rax", "stepi", "p $pc", "hbreak long64", "continue", "p $pc",
        "info registers", "x/2gx 0x100000", "delete", "detach"])
    p = pcs(out)
    syms = subprocess.run(["nm", GUEST], capture_output=True).stdout.decode()
    addr = {m.group(2): int(m.group(1), 16)
            for m in re.finditer(r"^([0-9a-f]+) \w (\w+)$", syms, re.M)}
    check(len(p) == 4, "pcs %r:\n%s" % (p, out))
    check(p[0] == addr["pvh_start"], "the guest did not wait at its entry: pc 0x%x\n%s"
          % (p[0], out))
    # Read back after a step (gdb fetches the registers anew): boot32 sets eax only later.
    check(re.search(r"^\$\d+ = 0x5a5a1234$", out, re.M), "register write:\n" + out)
    check(p[0] < p[1] < p[2] < p[0] + 16, "stepi: pcs %s\n%s" % ([hex(x) for x in p], out))
    check(re.search(r"Breakpoint 1, 0x0*%x in long64" % addr["long64"], out) and
          p[3] == addr["long64"], "hardware breakpoint not hit:\n" + out)
    cr0, efer = reg(out, "cr0"), reg(out, "efer")
    check(cr0 & 0x80000001 == 0x80000001 and efer & 0x400, "at long64: cr0 0x%x efer 0x%x\n%s"
          % (cr0, efer, out))
    words = re.findall(r"0x[0-9a-f]{16}", out.split("0x100000:", 1)[-1])[:2]
    check(words == image_words(2), "memory at 1 MiB %r" % words)
    vm.wait_seq(3, timeout=120)
    assert_consecutive(vm.seqs(), "after the detach")
    check(b"TESTGUEST FAIL" not in vm.out, "the guest saw a failure:\n" + vm.tail())


def frame(payload):
    return b"$%s#%02x" % (payload, sum(payload) & 0xff)


def unrle(p):
    """A packet's run-length encoding undone: c*N is c and N - 29 more of it."""
    out = bytearray()
    i = 0
    while i < len(p):
        if p[i:i + 1] == b"*" and out and i + 1 < len(p):
            out += out[-1:] * (p[i + 1] - 29)
            i += 2
        else:
            out += p[i:i + 1]
            i += 1
    return bytes(out)


def read_packet(s, timeout=60):
    s.settimeout(timeout)
    buf = b""
    while True:
        m = re.search(rb"\$([^#]*)#[0-9a-f]{2}", buf)
        if m:
            return unrle(m.group(1))
        data = s.recv(4096)
        check(data, "the stub closed the connection; got %r" % buf)
        buf += data


@test
def gdb_protocol_interrupt(wd):
    """The protocol itself: the stop reply at attach, Ctrl-C (0x03) stops a guest let go with
    'c', a second debugger is turned away while one is connected, 'D' lets the guest go."""
    vm = VM(wd, extra=["-G", "0"])
    port = gdb_port(vm)
    vm.wait_seq(2, timeout=120)
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(frame(b"?"))
    check(read_packet(s).startswith(b"T05thread:1;"), "stop reply at attach")
    other = socket.create_connection(("127.0.0.1", port))
    other.settimeout(30)
    check(other.recv(64) == b"", "a second debugger was not turned away")
    other.close()
    s.sendall(b"+" + frame(b"c"))
    n = len(vm.seqs())
    vm.wait_seq(n + 2, timeout=120)  # it runs again
    s.sendall(b"\x03")
    check(read_packet(s).startswith(b"T02thread:1;"), "no SIGINT stop after Ctrl-C")
    s.sendall(b"+" + frame(b"g"))
    regs = read_packet(s)
    check(len(regs) > 16 * 16 and re.fullmatch(rb"[0-9a-f]+", regs), "g: %r" % regs[:80])
    s.sendall(b"+" + frame(b"D"))
    check(read_packet(s) == b"OK", "D")
    s.close()
    n = len(vm.seqs())
    vm.wait_seq(n + 3, timeout=120)
    assert_consecutive(vm.seqs(), "after the detach")
    check(b"TESTGUEST FAIL" not in vm.out, "the guest saw a failure:\n" + vm.tail())


@test
def gdb_watchpoint(wd):
    """A write watchpoint on the word the guest's first instructions store (start_info_pa). On
    hardware it stops right after that store; on PVM, whose emulator never checks data
    breakpoints, the stub refuses it and gdb says so instead of waiting forever. Either way
    the guest boots once gdb has gone."""
    vm = VM(wd, extra=["-G", "w0"])
    port = gdb_port(vm)
    syms = subprocess.run(["nm", GUEST], capture_output=True).stdout.decode()
    addr = {m.group(2): int(m.group(1), 16)
            for m in re.finditer(r"^([0-9a-f]+) \w (\w+)$", syms, re.M)}
    out = run_gdb(port, ["watch *(int *)0x%x" % addr["start_info_pa"], "continue", "p $pc",
                         "delete", "detach"], timeout=120)
    if os.path.exists("/sys/module/kvm_pvm"):
        check("Could not insert hardware watchpoint" in out, "PVM: not refused:\n" + out)
    else:
        check(re.search(r"Hardware watchpoint 1: \*\(int \*\)0x%x" % addr["start_info_pa"], out)
              and "New value" in out, "watchpoint did not stop:\n" + out)
        p = pcs(out)
        check(p and addr["pvh_start"] < p[-1] <= addr["pvh_start"] + 7, "stopped at %s" % p)
    check("detached" in out, "no detach:\n" + out)
    vm.wait_seq(3, timeout=120)
    check(b"TESTGUEST FAIL" not in vm.out, "the guest saw a failure:\n" + vm.tail())


@test
def gdb_kill_ends_the_vm(wd):
    """'k' (gdb's kill) ends the VM with status 4, as khyve(8) says."""
    vm = VM(wd, extra=["-G", "0"])
    port = gdb_port(vm)
    vm.wait_seq(1, timeout=120)
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(frame(b"k"))
    rc = vm.wait_exit(timeout=60)
    s.close()
    check(rc == 4, "khyve exited %s after k" % rc)
    check(b"the debugger killed the VM" in vm.err, "stderr:\n" + vm.err.decode())
