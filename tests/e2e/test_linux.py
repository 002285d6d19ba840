"""A real Linux kernel (tests/linux/) on khyve: it boots with one and two vCPUs, its own drivers
probe every device and report the values khyve gives them, it parses partition tables it must
read from two disks, gets an address by DHCP through slirp on virtio-net and on e1000, and
boots to the end after a checkpoint or a suspend taken at a random moment of the boot.

Ring 0 is emulated on some KVMs (PVM), where a boot takes minutes: `make check` runs these in
the background beside the other tests (`make check-linux`).  LINUX_SEED=n repeats the random
snapshot moments of a failed run."""

import os
import random
import re
import sys
import time

from khyve_e2e import KHYVE, VM, Fail, check, khyve_run, test

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "linux"))
import linuxguest  # noqa: E402

BOOT_TIMEOUT = int(os.environ.get("LINUX_TIMEOUT", "2400"))
VDA_SIZE = 32 << 20
SDA_SIZE = 24 << 20
NET_MAC = "52:54:00:12:34:56"
E1000_MAC = "52:54:00:12:34:57"


def linux_test(fn):
    fn.linux = True
    return test(fn)


class Boot:
    """The files one boot needs, made fresh in the test's directory."""

    def __init__(self, wd, tag):
        self.kernel = linuxguest.kernel_image()
        self.initrd = linuxguest.write_initramfs(wd(tag + "-initrd.cpio"))
        self.vda = linuxguest.write_disk(wd(tag + "-vda.img"), VDA_SIZE)
        self.sda = linuxguest.write_disk(wd(tag + "-sda.img"), SDA_SIZE)
        self.cd = linuxguest.write_cd(wd(tag + "-cd.iso"))

    def args(self, cpus, netdev, extra=()):
        """khyve's command line: every device Linux has a driver for here, DHCP on @netdev
        ("virtio" or "e1000")."""
        cmdline = linuxguest.BASE_CMDLINE + " ip=:::::%s:dhcp" % NETDEV[netdev]
        return [KHYVE, "-c", str(cpus), "-m", "256M",
                "-s", "0,hostbridge", "-s", "31,lpc", "-l", "com1,stdio",
                "-s", "3,virtio-blk,%s,ser=KHYVEVDA01" % self.vda,
                "-s", "4,virtio-net,slirp,mac=" + NET_MAC,
                "-s", "5,virtio-rnd",
                "-s", "6,ahci,hd:%s,model=KhyveTestDisk,ser=KHYVESDA01,cd:%s,model=KhyveTestCD"
                % (self.sda, self.cd),
                "-s", "7,e1000,slirp,mac=" + E1000_MAC,
                "-o", "boot.kernel=" + self.kernel, "-o", "boot.initrd=" + self.initrd,
                "-o", "boot.cmdline=" + cmdline,
                "-o", "cpu.features=" + linuxguest.PVM_FEATURES] + list(extra)


# Linux names the NICs in the order their drivers bind: virtio_net (through virtio_pci, which
# comes first) before e1000.
NETDEV = {"virtio": "eth0", "e1000": "eth1"}


def start(wd, name, args):
    sock = wd(name + ".sock")
    return VM(wd, name=name, args=args + ["-o", "ctl.socket=" + sock, name])


def console(out):
    return out.replace(b"\r", b"")


def bad_lines(out, first_boot=False):
    text = console(out)
    bad = [m.group(0) for rx in linuxguest.BAD
           for m in re.finditer(rb"^.*" + rx + rb".*$", text, re.M)]
    if first_boot:
        bad = [l for l in bad if not any(re.search(ok, l) for ok in linuxguest.FIRST_BOOT_OK)]
    return bad


LOGS = os.path.join(linuxguest.ROOT, "build", "linux-logs")


def keep_console(vm, name):
    """Each console is kept in build/linux-logs/ (the test's directory goes away)."""
    os.makedirs(LOGS, exist_ok=True)
    with open(os.path.join(LOGS, name + ".log"), "wb") as f:
        f.write(console(vm.out))


def wait_end(vm, what):
    """A boot ends with init failing (nothing in ring 3 runs, see linuxguest.py), a panic
    and, with panic=1, a reset: khyve exits 0."""
    try:
        rc = vm.wait_exit(BOOT_TIMEOUT)
    except Fail:
        keep_console(vm, vm.name)
        raise Fail("%s: the boot did not end in %d s (on a KVM that emulates ring 0, a host too "
                   "busy to run the guest's timer tick in time livelocks it: "
                   "doc/linux-guest.md)\nconsole:\n%s" % (what, BOOT_TIMEOUT, vm.tail(6000)))
    keep_console(vm, vm.name)
    check(rc == 0, "%s: khyve exited %d\nconsole:\n%s\nstderr:\n%s"
          % (what, rc, vm.tail(6000), vm.err.decode(errors="replace")))
    check(b"No working init found" in vm.out,
          "%s: the boot did not end with init failing:\n%s" % (what, vm.tail(6000)))


def check_boot(out, what, cpus, netdev):
    """Every driver's line with the values of the devices given, nothing bad."""
    text = console(out)
    bad = bad_lines(out, first_boot=True)
    check(not bad, "%s: the kernel reported:\n  %s\nconsole:\n%s"
          % (what, "\n  ".join(l.decode(errors="replace") for l in bad), text[-6000:].decode(errors="replace")))
    found = {}
    for name, rx in linuxguest.probes(VDA_SIZE // 512, SDA_SIZE // 512, E1000_MAC, NET_MAC):
        m = re.search(rx, text, re.M)
        check(m, "%s: no %s line (%r) on the console:\n%s"
              % (what, name, rx, text.decode(errors="replace")))
        found[name] = m
    check(int(found["smp"].group(1)) == cpus,
          "%s: %s" % (what, found["smp"].group(0).decode()))
    # The address came through the NIC asked for, whose MAC is the one given to khyve.
    dev, hwaddr = found["ip-config"].group(1).decode(), found["ip-config"].group(2).decode()
    want = {"e1000": E1000_MAC, "virtio": NET_MAC}[netdev]
    check(dev == NETDEV[netdev] and hwaddr == want,
          "%s: DHCP on %s (%s), want %s with %s" % (what, dev, hwaddr, NETDEV[netdev], want))
    check(found["e1000"].group(1).decode() == NETDEV["e1000"],
          "%s: e1000 is %s" % (what, found["e1000"].group(1).decode()))
    if netdev == "e1000":
        check(re.search(rb"^e1000: %s NIC Link is Up 1000 Mbps Full Duplex" % dev.encode(),
                        text, re.M), "%s: e1000 reported no link" % what)
    # virtio-rng: the hw_random core reads it as soon as it registers, which initializes the
    # CRNG (no other entropy source is fast enough here: RDRAND/RDSEED are hidden).
    check(b"random: crng init done" in text, "%s: the CRNG was never seeded" % what)
    return found


def boot(wd, cpus, netdev):
    b = Boot(wd, "c%d" % cpus)
    vm = start(wd, "linux%d" % cpus, b.args(cpus, netdev))
    return vm


@linux_test
def linux_boots(wd):
    """-c 1 with DHCP on e1000, then -c 2 with DHCP on virtio-net.  One after the other: where
    ring 0 is emulated two boots at once starve each other's timer ticks."""
    for cpus, netdev in ((1, "e1000"), (2, "virtio")):
        vm = boot(wd, cpus, netdev)
        wait_end(vm, "-c %d" % cpus)
        check_boot(vm.out, "-c %d" % cpus, cpus, netdev)


def wait_random(vm, rng, pattern, span, what):
    """Wait for @pattern, then a random 0..@span seconds; the moment is reported on failure."""
    vm.wait_for(pattern, timeout=BOOT_TIMEOUT)
    delay = rng.uniform(0, span)
    end = time.time() + delay
    while time.time() < end:
        vm.check_alive()
        vm.pump(0.2)
    return "%s + %.1f s" % (what, delay)


@linux_test
def linux_snapshots(wd):
    """-c 2: a checkpoint while the kernel brings up its devices, then a suspend a little
    later; both restored, one after the other, boot to the end with every device line."""
    seed = int(os.environ.get("LINUX_SEED", str(random.randrange(1 << 30))))
    rng = random.Random(seed)
    b = Boot(wd, "snap")
    vm = start(wd, "linuxsnap", b.args(2, "virtio", ["-o", "snapshot.disks=clone"]))
    ckpt, susp = wd("boot.snap"), wd("suspend.snap")
    try:
        # Moments scaled by how fast this machine boots (seconds here, milliseconds on VMX).
        t0 = time.time()
        vm.wait_for(rb"smp: Brought up", timeout=BOOT_TIMEOUT)
        pace = time.time() - t0
        t1 = wait_random(vm, rng, rb"smp: Brought up", pace, "after SMP bring-up")
        # Paused, the console holds exactly what the guest printed before the checkpoint
        # (what was still in the UART comes out of the restored one).
        vm.ctl("--pause")
        for _ in range(10):
            vm.pump(0.2)
        before_ckpt = vm.out
        vm.ctl("--checkpoint=" + ckpt)
        vm.ctl("--resume")
        t2 = wait_random(vm, rng, rb"(virtio_blk|ahci|e1000) ", pace / 2, "after a first probe")
        vm.ctl("--suspend=" + susp)
        check(vm.wait_exit(300) == 0, "suspend: khyve did not exit 0")
        before_susp = vm.out
        what = "seed %d: restore of the checkpoint taken %s" % (seed, t1)
        r1 = VM(wd, restore=ckpt, name="rck")
        wait_end(r1, what)
        r2 = VM(wd, restore=susp, name="rsu")
        wait_end(r2, "seed %d: restore of the suspend %s" % (seed, t2))
    except Fail as e:
        raise Fail("seed %d: %s" % (seed, e))
    check(b"No working init found" not in before_susp,
          "seed %d: the boot ended before the suspend" % seed)
    for r, before, w in ((r1, before_ckpt, what),
                         (r2, before_susp, "seed %d: restore of the suspend %s" % (seed, t2))):
        check_boot(before + r.out, w, 2, "virtio")
        # rtc_cmos arms its HPET timer when it probes: a restore from before that probe may
        # see the same first-boot report (linuxguest.FIRST_BOOT_OK), one from after it not.
        probed_after = re.search(rb"^rtc_cmos \S+: registered as rtc0", console(r.out), re.M)
        bad = bad_lines(r.out, first_boot=bool(probed_after))
        check(not bad, "%s: reports after the restore: %s" % (w, bad))


@test
def linux_cpu_features_refused(wd):
    """cpu.features takes features away by name; anything else is refused before a VM exists."""
    base = ["-s", "0,hostbridge", "-s", "31,lpc", "-l", "com1,off", "-o", "ctl.socket=off",
            "-o", "boot.kernel=/bin/true"]
    for spec, needle in (("-popcnt,-nosuchfeature", "unknown CPU feature 'nosuchfeature'"),
                         ("+avx", "can only be taken away"),
                         ("popcnt", "can only be taken away"),
                         ("-popcnt,", "trailing")):
        r = khyve_run(base + ["-o", "cpu.features=" + spec, "vm"])
        err = r.stderr.decode()
        check(r.returncode == 4 and needle in err and "cpu.features" in err,
              "cpu.features=%s: exit %d, %r" % (spec, r.returncode, err))


linux_cpu_features_refused.needs_kvm = False
