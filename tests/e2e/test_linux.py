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
                "-s", "8,xhci,tablet",
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


_RESOLVE = {}


def resolver():
    """Names for the kernel's text addresses (its backtraces have no symbols), read once."""
    image = linuxguest.kernel_image()
    if image not in _RESOLVE:
        _RESOLVE[image] = linuxguest.symbolizer(image)
    return _RESOLVE[image]


def bad_lines(out, first_boot=False, what=""):
    """The console's reports, less the stalls of the kernel's own long boot steps
    (linuxguest.judge), which are named on the test's output when excused."""
    ok = linuxguest.FIRST_BOOT_OK if first_boot else ()
    bad, excused = linuxguest.judge(console(out), resolver(), ok)
    for l, span in excused:
        print("  note: %s: excused (%s): %s" % (what, span, l.decode(errors="replace").strip()),
              flush=True)
    return [l + (b" [" + why.encode() + b"]" if why else b"") for l, why in bad]


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
    bad = bad_lines(out, first_boot=True, what=what)
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
        bad = bad_lines(r.out, first_boot=bool(probed_after), what=w)
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


# -- the judge of stall reports, on recorded consoles (no KVM) -----------------------------------
CONSOLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "linux", "consoles")
# The symbols of the shared image the recorded consoles came from (`nm -n`), with the symbol
# after each so that an address resolves as it does in the image.
SYMBOLS = [(0xffffffff81001080, "ret_from_fork"),
           (0xffffffff810010b0, "rewind_stack_and_make_dead"),
           (0xffffffff810c13f8, "free_reserved_area"),
           (0xffffffff810c1510, "setup_per_zone_wmarks"),
           (0xffffffff8112f55c, "blake2s_update"), (0xffffffff8112f605, "blake2s_final"),
           (0xffffffff8112f656, "blake2s_compress_generic"), (0xffffffff811306ea, "sha1_transform"),
           (0xffffffff81130919, "sha1_init"),
           (0xffffffff8136996b, "kernel_init"), (0xffffffff81369a67, "text_poke_queue"),
           (0xffffffff8136a027, "free_initmem"), (0xffffffff8136a046, "spp_getpage"),
           (0xffffffff8136dab0, "native_safe_halt"), (0xffffffff8136dac4, "default_idle"),
           (0xffffffff8136dac6, "mwait_idle"),
           (0xffffffff81400c70, "asm_sysvec_apic_timer_interrupt"),
           (0xffffffff81400c90, "asm_sysvec_x86_platform_ipi"),
           (0xffffffff81afcfdf, "do_one_initcall"), (0xffffffff81afd0eb, "console_on_rootfs"),
           (0xffffffff81afd138, "kernel_init_freeable"), (0xffffffff81afd2d2, "early_hostname"),
           (0xffffffff81b1ca4d, "blake2s_mod_init"), (0xffffffff81b1ca5a, "blake2s_selftest"),
           (0xffffffff81b1cda8, "percpu_counter_startup")]

# A blake2s stall in both of RCU's forms, made from the recorded one's lines with the self-test's
# addresses (RIP in blake2s_compress_generic, called from blake2s_update in the self-test).
BLAKE2S_TASK = b""" <TASK>
 ? 0xffffffff8112f5d1
 ? 0xffffffff81b1cb2e
 ? 0xffffffff81b1ca56
 ? 0xffffffff81afd07c
 ? 0xffffffff81afd260
 ? 0xffffffff8136999e
 ? 0xffffffff8100109f
 </TASK>"""
REGS = b"""Code: 48 89 da 48 29 ca 48 b9 b7 6d db b6 6d db b6 6d 48 c1 fa 03 <f3> aa f0 80 63 01 ef
RSP: 0018:ffffc9000000fd30 EFLAGS: 00000206
RAX: 00000000000000cc RBX: ffffea0000056ed0 RCX: 0000000000000800
CS:  0010 DS: 0000 ES: 0000 CR0: 0000000080050033
Call Trace:
"""
BLAKE2S_SELF = (b"""io scheduler kyber registered
rcu: INFO: rcu_sched self-detected stall on CPU
rcu: \t1-....: (5251 ticks this GP) idle=2c54/1/0x4000000000000000 softirq=301/301 fqs=2583
\t(t=5250 jiffies g=-1099 q=3 ncpus=2)
CPU: 1 PID: 1 Comm: swapper/0 Tainted: G S                 6.1.192 #4
RIP: 0010:0xffffffff8112f8a3
""" + REGS + BLAKE2S_TASK + b"""
input: Power Button as /devices/LNXSYSTM:00/LNXPWRBN:00/input/input0
""")
BLAKE2S_OTHER = (b"""io scheduler kyber registered
rcu: INFO: rcu_sched detected stalls on CPUs/tasks:
rcu: \t1-...0: (5250 ticks this GP) idle=2c54/1/0x4000000000000000 softirq=301/301 fqs=2583
\t(detected by 0, t=5252 jiffies, g=-1099, q=3 ncpus=2)
Sending NMI from CPU 0 to CPUs 1:
NMI backtrace for cpu 1
CPU: 1 PID: 1 Comm: swapper/0 Tainted: G S                 6.1.192 #4
RIP: 0010:0xffffffff8112f8a3
""" + REGS + BLAKE2S_TASK + b"""
input: Power Button as /devices/LNXSYSTM:00/LNXPWRBN:00/input/input0
""")
BLAKE2S_SOFT = (b"""io scheduler kyber registered
watchdog: BUG: soft lockup - CPU#1 stuck for 25s! [swapper/0:1]
Modules linked in:
CPU: 1 PID: 1 Comm: swapper/0 Tainted: G S                 6.1.192 #4
RIP: 0010:0xffffffff8112f8a3
""" + REGS + BLAKE2S_TASK + b"""
input: Power Button as /devices/LNXSYSTM:00/LNXPWRBN:00/input/input0
""")
# Reports no stall excuse may take with it.
OTHER_REPORTS = [
    b"hpet: Lost 2 RTC interrupts",
    b"clocksource: timekeeping watchdog on CPU1: Marking clocksource 'tsc' as unstable because "
    b"the skew is too large:",
    b"INFO: task swapper/0:1 blocked for more than 60 seconds.",
    b"WARNING: CPU: 0 PID: 1 at drivers/base/core.c:100 device_add+0x1/0x2",
    b"BUG: kernel NULL pointer dereference, address: 0000000000000000",
    b"ata1.00: exception Emask 0x0 SAct 0x1 SErr 0x0 action 0x6 frozen: lost interrupt",
    b"ACPI Error: Could not enable GlobalLock event (20220331/evxfevnt-182)",
]


@test
def linux_selftest_stall_judged(wd):
    """The judge of the Linux tests' consoles excuses a stall only where the stalled CPU was in
    one of the kernel's own long boot steps (linuxguest.KNOWN_SPANS) on the init task, and
    refuses any stall elsewhere and every other report."""
    resolve = linuxguest.table_symbolizer(SYMBOLS)
    image = linuxguest.kernel_image(build=False)
    if image and os.path.basename(image) == "vmlinux-6.1-khyve-test":
        real = linuxguest.symbolizer(image)
        for addr, name in SYMBOLS:
            check(real(addr) == name, "the shared image has %s, not %s, at %#x"
                  % (real(addr), name, addr))

    def judged(text, excused_as, what):
        bad, excused = linuxguest.judge(text, resolve)
        if excused_as:
            check(not bad and [s for _, s in excused] == [excused_as],
                  "%s: want excused as %r, got bad %s, excused %s"
                  % (what, excused_as, bad, excused))
        else:
            check(bad and not excused, "%s: not refused (excused %s)" % (what, excused))
        return bad

    with open(os.path.join(CONSOLES, "free-initmem-stall.txt"), "rb") as f:
        freeing = f.read()
    stall = b"rcu: INFO: rcu_sched self-detected stall on CPU\n"
    check(stall in freeing, "the recorded console has no stall")
    # Recorded: a restored -c 2 boot, CPU 0 poisoning freed init memory in kernel_init.
    judged(freeing, "kernel_init freeing and poisoning init memory", "recorded free_initmem stall")
    judged(BLAKE2S_SELF, "the blake2s self-test", "blake2s, self-detected")
    judged(BLAKE2S_OTHER, "the blake2s self-test", "blake2s, detected by the other CPU")
    judged(BLAKE2S_SOFT, "the blake2s self-test", "blake2s, soft lockup")

    rip = b"RIP: 0010:0xffffffff810c1496"
    check(rip in freeing, "the recorded RIP moved")
    refused = [
        ("the same stall in the idle loop", freeing.replace(rip, b"RIP: 0010:0xffffffff8136dab5")),
        ("the same stall on another task", freeing.replace(b"CPU: 0 PID: 1 Comm: swapper/0",
                                                           b"CPU: 0 PID: 57 Comm: kworker/0:2")),
        ("the same stall once init runs",
         freeing.replace(stall, b"Run /init as init process\n" + stall)),
        ("the same stall with a lost timer", freeing.replace(
            b"\t(t=5250 jiffies g=-1119 q=7 ncpus=2)\n",
            b"\t(t=5250 jiffies g=-1119 q=7 ncpus=2)\nrcu: rcu_sched kthread timer wakeup didn't "
            b"happen for 5001 jiffies! g-1119 f0x0 RCU_GP_WAIT_FQS(5) ->state=0x402\n"
            b"rcu: \tPossible timer handling issue on cpu=1 timer-softirq=120\n")),
        ("the same stall with RCU's kthread starved on the other CPU", freeing.replace(
            b"\t(t=5250 jiffies g=-1119 q=7 ncpus=2)\n",
            b"\t(t=5250 jiffies g=-1119 q=7 ncpus=2)\nrcu: rcu_sched kthread starved for 5001 "
            b"jiffies! g-1119 f0x0 RCU_GP_WAIT_FQS(5) ->state=0x0 ->cpu=1\n")),
        ("a stall without its backtrace", freeing[:freeing.index(b"CPU: 0 PID: 1")]),
        ("blake2s on the stack, RIP elsewhere", BLAKE2S_OTHER.replace(
            b"RIP: 0010:0xffffffff8112f8a3", b"RIP: 0010:0xffffffff81130800")),
        ("blake2s after init memory was freed", b"Freeing unused kernel image (initmem) memory: "
                                                b"796K\n" + BLAKE2S_SELF),
        ("blake2s on one of two stalled CPUs", BLAKE2S_OTHER.replace(
            b"\t(detected by 0,", b"rcu: \t0-...0: (5250 ticks this GP) idle=1/1/0x0 softirq=1/1 "
                                  b"fqs=2583\n\t(detected by 0,")),
        ("a soft lockup in the idle loop", BLAKE2S_SOFT.replace(
            b"RIP: 0010:0xffffffff8112f8a3", b"RIP: 0010:0xffffffff8136dab5").replace(
            b"PID: 1 Comm: swapper/0", b"PID: 0 Comm: swapper/1")),
    ]
    for what, text in refused:
        judged(text, None, what)
    for line in OTHER_REPORTS:
        judged(line + b"\n", None, line.decode())
        # ... also right after an excused stall's report, and in the middle of the console.
        text = BLAKE2S_OTHER.replace(b"input: Power Button", line + b"\ninput: Power Button")
        bad, excused = linuxguest.judge(text, resolve)
        check([l for l, _ in bad] == [line] and len(excused) == 1,
              "%s after an excused stall: bad %s, excused %s" % (line.decode(), bad, excused))


linux_selftest_stall_judged.needs_kvm = False
