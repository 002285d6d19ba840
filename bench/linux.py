#!/usr/bin/env python3
"""Boot the Linux test kernel (tests/linux/) under khyve and under QEMU in the same run, with
the same kernel, initramfs, command line and devices, and report the time from start to each
driver's probe line and to `Run /init`, and the khyve/QEMU ratios.

usage: bench/linux.py [--reps N] [--cpus N] [--no-qemu] [--printk-time] [--keep DIR]

  --reps N       boots of each VMM, taking turns (default 1; the table shows medians)
  --cpus N       vCPUs (default 1)
  --no-qemu      khyve only
  --printk-time  add printk.time=1 to the command line (the guest's own timestamps)
  --keep DIR     write each boot's console to DIR/VMM-N.txt (to see where the time went)

Both VMMs boot the PVH entry of the same vmlinux (QEMU's -kernel takes it too), with virtio-blk
(a partitioned disk), virtio-net and e1000 on slirp, virtio-rng, AHCI with a disk and a CD, the
PC devices, COM1 as the console, `ip=dhcp` on virtio-net.  The command line hides from the
kernel what this machine's KVM cannot emulate (`noxsave clearcpuid=...`, the same for both),
and both hide KVM's PV IPI hypercalls in CPUID.  Times are wall-clock from the VMM's start to the
moment its console line arrived.  It reports; it never judges: exit 0 when every boot reached
`Run /init`, 1 when one did not, 2 when nothing could be measured.

Environment: KHYVE_LINUX (the kernel; see tests/linux/linuxguest.py), KHYVE_BUILD, QEMU,
QEMU_CPU (default host,arch-capabilities=off,-kvm-pv-ipi,-kvm-pv-tlb-flush,
-kvm-pv-sched-yield)."""

import argparse
import os
import re
import select
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "linux"))
from benchlib import (BUILD, QEMU, BenchError, Owned, catch_signals, med, preflight, say,  # noqa: E402
                      table)
import linuxguest  # noqa: E402

# KVM's PV IPI and TLB-flush hypercalls hidden from both, as the tests do (doc/linux-guest.md).
QEMU_CPU = os.environ.get("QEMU_CPU", "host,arch-capabilities=off," +
                          ",".join("-" + f for f in linuxguest.PVM_KVM))
VDA, SDA = 32 << 20, 24 << 20
NET_MAC, E1000_MAC = "52:54:00:12:34:56", "52:54:00:12:34:57"
TIMEOUT = 3000
PRINTK_TIME = re.compile(rb"^\[ *\d+\.\d+\] ", re.M)
# The virtio-net device is eth0 (virtio_net binds before e1000).
CMDLINE = linuxguest.LONG_CMDLINE + " ip=:::::eth0:dhcp"
MILESTONES = [(n, rx) for n, rx in linuxguest.probes(VDA // 512, SDA // 512, E1000_MAC, NET_MAC)
              if n != "ip-config" and n not in linuxguest.XHCI_PROBES] + [("end", rb"No working init found")]


def files(own):
    return dict(kernel=linuxguest.kernel_image(),
                initrd=linuxguest.write_initramfs(own.path("initrd.cpio")),
                vda=linuxguest.write_disk(own.path("vda.img"), VDA),
                sda=linuxguest.write_disk(own.path("sda.img"), SDA),
                cd=linuxguest.write_cd(own.path("cd.iso")))


def khyve_cmd(f, cpus):
    return [os.path.join(BUILD, "khyve"), "-c", str(cpus), "-m", "256M",
            "-s", "0,hostbridge", "-s", "31,lpc", "-l", "com1,stdio",
            "-s", "3,virtio-blk," + f["vda"], "-s", "4,virtio-net,slirp,mac=" + NET_MAC,
            "-s", "5,virtio-rnd",
            "-s", "6,ahci,hd:%s,model=KhyveTestDisk,cd:%s,model=KhyveTestCD" % (f["sda"], f["cd"]),
            "-s", "7,e1000,slirp,mac=" + E1000_MAC,
            "-o", "boot.kernel=" + f["kernel"], "-o", "boot.initrd=" + f["initrd"],
            "-o", "boot.cmdline=" + CMDLINE, "-o", "ctl.socket=off",
            "-o", "cpu.features=" + ",".join("-" + f for f in linuxguest.PVM_KVM), "benchlinux"]


def qemu_cmd(f, cpus):
    # The same devices at the same slots; i8042, the RTC, the HPET and the PIT come with -M pc.
    return [QEMU, "-nodefaults", "-no-user-config", "-enable-kvm", "-cpu", QEMU_CPU,
            "-M", "pc", "-m", "256M", "-smp", str(cpus), "-display", "none", "-no-reboot",
            "-serial", "stdio", "-kernel", f["kernel"], "-initrd", f["initrd"],
            "-append", CMDLINE,
            "-drive", "file=%s,if=none,id=vda,format=raw" % f["vda"],
            "-device", "virtio-blk-pci,drive=vda,disable-legacy=on,addr=3",
            "-netdev", "user,id=n0",
            "-device", "virtio-net-pci,netdev=n0,disable-legacy=on,mac=%s,addr=4" % NET_MAC,
            "-device", "virtio-rng-pci,disable-legacy=on,addr=5",
            "-device", "ahci,id=ahci,addr=6",
            "-drive", "file=%s,if=none,id=sda,format=raw" % f["sda"],
            "-device", "ide-hd,drive=sda,bus=ahci.0,model=KhyveTestDisk",
            "-drive", "file=%s,if=none,id=cd,format=raw,media=cdrom,readonly=on" % f["cd"],
            "-device", "ide-cd,drive=cd,bus=ahci.1,model=KhyveTestCD",
            "-netdev", "user,id=n1", "-device", "e1000,netdev=n1,mac=%s,addr=7" % E1000_MAC]


def boot(own, args, keep=None):
    """Run one boot; returns {milestone: seconds from start} for those seen.  With @keep, the
    console goes to that file."""
    t0 = time.monotonic()
    p = own.spawn(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    out, seen = b"", {}
    fd = p.stdout.fileno()
    while True:
        if time.monotonic() - t0 > TIMEOUT:
            break
        r, _, _ = select.select([fd], [], [], 1.0)
        if not r:
            if p.poll() is not None:
                break
            continue
        data = os.read(fd, 65536)
        if not data:
            break
        out += data.replace(b"\r", b"")
        now = time.monotonic() - t0
        # The milestones match whole lines: without printk.time's "[    1.234567] " prefix.
        text = PRINTK_TIME.sub(b"", out)
        for name, rx in MILESTONES:
            if name not in seen and re.search(rx, text, re.M):
                seen[name] = now
    own.stop(p)
    if keep:
        with open(keep, "wb") as f:
            f.write(out)
    if "run init" not in seen:
        raise BenchError("%s did not reach Run /init; console tail:\n%s"
                         % (os.path.basename(args[0]), out[-3000:].decode(errors="replace")))
    return seen


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--cpus", type=int, default=1)
    ap.add_argument("--no-qemu", action="store_true")
    ap.add_argument("--printk-time", action="store_true")
    ap.add_argument("--keep", metavar="DIR")
    a = ap.parse_args()
    global CMDLINE
    if a.printk_time:
        CMDLINE += " printk.time=1"
    if a.keep:
        os.makedirs(a.keep, exist_ok=True)
    catch_signals()
    qemu = not a.no_qemu
    bad = preflight(qemu)
    if bad is not None:
        return bad
    own = Owned("khyve-benchlinux-", 15)
    res = {"khyve": [], "qemu": []}
    status = 0
    try:
        f = files(own)
        say("kernel %s, %d vCPU(s), cmdline: %s" % (f["kernel"], a.cpus, CMDLINE))
        for rep in range(a.reps):
            for vmm in (["khyve", "qemu"] if qemu else ["khyve"]):
                # Fresh disks each boot: both see the same bytes.
                linuxguest.write_disk(f["vda"], VDA)
                linuxguest.write_disk(f["sda"], SDA)
                args = khyve_cmd(f, a.cpus) if vmm == "khyve" else qemu_cmd(f, a.cpus)
                keep = os.path.join(a.keep, "%s-%d.txt" % (vmm, rep + 1)) if a.keep else None
                try:
                    seen = boot(own, args, keep)
                except BenchError as e:
                    say("%s boot %d: %s" % (vmm, rep + 1, e))
                    status = 1
                    continue
                res[vmm].append(seen)
                say("%s boot %d: Run /init after %.1f s" % (vmm, rep + 1, seen["run init"]))
    finally:
        own.cleanup()
    rows = [["milestone", "khyve s", "qemu s", "khyve/qemu"]]
    for name, _ in MILESTONES:
        k = med([s[name] for s in res["khyve"] if name in s])
        q = med([s[name] for s in res["qemu"] if name in s])
        rows.append([name, "%.1f" % k if k is not None else "-",
                     "%.1f" % q if q is not None else "-",
                     "%.2fx" % (k / q) if k is not None and q else "-"])
    say("")
    table(rows)
    return status


if __name__ == "__main__":
    sys.exit(main())
