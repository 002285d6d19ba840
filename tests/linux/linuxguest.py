"""The Linux test guest: which kernel image to boot, the files it boots with (an initramfs, a
partitioned disk, a CD image) and the console lines its drivers print.  Used by
tests/e2e/test_linux.py and bench/linux.py.

The kernel is Debian's linux-source-6.1 built by tests/linux/build.sh.  Its image is, in order:
$KHYVE_LINUX; ../shared/guests/vmlinux-6.1-khyve-test beside the project (a prebuilt copy); the
build/ cache of tests/linux/build.sh, built the first time it is wanted and never again."""

import bisect
import os
import re
import struct
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
SHARED_NAME = os.path.join("shared", "guests", "vmlinux-6.1-khyve-test")
CACHED = os.path.join(ROOT, "build", "linux", "vmlinux")
SECTOR = 512


def shared_image():
    """../shared/guests/ beside the project: beside this checkout, or beside the main one when
    this is a git worktree of it."""
    roots = [ROOT]
    try:
        common = subprocess.run(["git", "-C", ROOT, "rev-parse", "--path-format=absolute",
                                 "--git-common-dir"], capture_output=True, text=True, timeout=10)
        if common.returncode == 0 and common.stdout.strip():
            roots.append(os.path.dirname(common.stdout.strip()))
    except (OSError, subprocess.SubprocessError):
        pass
    for r in roots:
        path = os.path.abspath(os.path.join(r, "..", SHARED_NAME))
        if os.path.isfile(path):
            return path
    return None


def kernel_image(build=True):
    """Path of the kernel to boot, or None when there is none and @build is False."""
    env = os.environ.get("KHYVE_LINUX")
    if env:
        if not os.path.isfile(env):
            raise FileNotFoundError("KHYVE_LINUX=%s: no such file" % env)
        return env
    shared = shared_image()
    if shared:
        return shared
    if os.path.isfile(CACHED):
        return CACHED
    if not build:
        return None
    # Built once into build/linux/ (6 to 10 minutes on 2 cores); later runs reuse it.
    subprocess.run([os.path.join(HERE, "build.sh")], check=True)
    return CACHED


# -- initramfs -----------------------------------------------------------------------------------
# User space cannot run on every KVM the tests run on (PVM mis-delivers a ring-3 `syscall`), so
# /init is a script whose interpreter does not exist: the kernel prints `Run /init as init
# process`, fails to exec it, finds no other init and panics; with panic=1 it resets and khyve
# exits 0.  Nothing in ring 3 ever runs, and the end of the boot is a clean exit.

def _cpio_entry(name, mode, data=b"", rdev=(0, 0), ino=1):
    name_b = name.encode() + b"\0"
    hdr = b"070701" + b"".join(b"%08X" % v for v in (
        ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name_b), 0))
    out = hdr + name_b
    out += b"\0" * (-len(out) % 4)
    out += data
    out += b"\0" * (-len(out) % 4)
    return out


def write_initramfs(path):
    blob = _cpio_entry("dev", 0o040755, ino=1)
    blob += _cpio_entry("dev/console", 0o020600, rdev=(5, 1), ino=2)
    blob += _cpio_entry("init", 0o100755, b"#!/khyve-no-interpreter\n", ino=3)
    blob += _cpio_entry("TRAILER!!!", 0, ino=0)
    blob += b"\0" * (-len(blob) % 512)
    with open(path, "wb") as f:
        f.write(blob)
    return path


# -- partitioned disks ---------------------------------------------------------------------------
# An MBR with a primary partition and an extended one holding two logical partitions.  The
# kernel finds the logical ones only by reading the extended boot records in the middle of the
# disk, and the last one ends at the last sector, so a wrong capacity or a read at the wrong
# offset shows as a missing partition or an "extends beyond EOD" warning.

def _mbr_entry(ptype, start, count):
    return struct.pack("<B3sB3sII", 0, b"\xfe\xff\xff", ptype, b"\xfe\xff\xff", start, count)


def _boot_record(entries, sig=0x4B485956):
    rec = bytearray(SECTOR)
    struct.pack_into("<I", rec, 440, sig)
    for i, e in enumerate(entries):
        rec[446 + 16 * i:446 + 16 * (i + 1)] = e
    rec[510:512] = b"\x55\xaa"
    return bytes(rec)


def partition_layout(sectors):
    """(name suffix, first sector, sector count) of the partitions write_disk makes."""
    p1 = (1, 2048, sectors // 4)
    ext_start = p1[1] + p1[2]
    ext_count = sectors - ext_start
    l1 = (5, ext_start + 2048, ext_count // 2 - 2048)
    ebr2 = ext_start + ext_count // 2
    l2 = (6, ebr2 + 2048, sectors - ebr2 - 2048)
    return [p1, (2, ext_start, ext_count), l1, l2]


def write_disk(path, size):
    sectors = size // SECTOR
    p1, ext, l1, l2 = partition_layout(sectors)
    ebr2 = ext[1] + ext[2] // 2
    with open(path, "wb") as f:
        f.truncate(size)
        f.seek(0)
        f.write(_boot_record([_mbr_entry(0x83, p1[1], p1[2]), _mbr_entry(0x05, ext[1], ext[2])]))
        # Logical partitions: start relative to their EBR; the link relative to the extended one.
        f.seek(ext[1] * SECTOR)
        f.write(_boot_record([_mbr_entry(0x83, l1[1] - ext[1], l1[2]),
                              _mbr_entry(0x05, ebr2 - ext[1], sectors - ebr2)], sig=0))
        f.seek(ebr2 * SECTOR)
        f.write(_boot_record([_mbr_entry(0x83, l2[1] - ebr2, l2[2])], sig=0))
    return path


def write_cd(path, size=2 * 1024 * 1024):
    with open(path, "wb") as f:
        f.truncate(size)
    return path


# -- command line --------------------------------------------------------------------------------
# What this machine's KVM (PVM) needs (doc/linux-guest.md): the instructions its emulator lacks
# in ring 0 hidden from the kernel.  PVM does not keep the CPUID it is given for these leaves,
# so khyve's cpu.features passes them on as `noxsave clearcpuid=...` (Linux reads 127
# characters of that list: these are the ones that matter).  The KVM PV hypercalls Linux would
# use for IPIs and TLB flushes are hidden too: their `vmcall` can livelock on this KVM, and
# PVM does keep that leaf.
# tsc_deadline_timer: with it, Linux's periodic tick re-arms a one-shot timer and catches up every
# tick it missed in a loop (tick_handle_periodic), which never ends once a busy host makes the
# emulated tick handler slower than a tick; the LAPIC's periodic mode lets missed ticks go.
# (avx2, avx512f and pku go with noxsave, by Linux's own CPUID dependencies; this KVM shows no
# rdpid.)
PVM_CLEAR = ("smap,smep,umip,popcnt,fsgsbase,erms,fsrm,movbe,bmi1,bmi2,"
             "clflushopt,clwb,rdrand,rdseed,aes,pclmulqdq,tsc_deadline_timer")
PVM_KVM = ["kvm-pv-ipi", "kvm-pv-tlb-flush", "kvm-pv-sched-yield"]
PVM_FEATURES = ",".join("-" + f for f in ["xsave"] + PVM_CLEAR.split(",") + PVM_KVM)
BASE_CMDLINE = "console=ttyS0 loglevel=7 panic=1"
LONG_CMDLINE = BASE_CMDLINE + " noxsave clearcpuid=" + PVM_CLEAR


# -- what the console must show ------------------------------------------------------------------
# Each device's Linux driver announces it; @values are checked against the device's options by
# the caller.  Patterns run on the console with carriage returns removed, one line at a time
# (re.M).  The order is roughly the order Linux prints them in.
def probes(vda_sectors, sda_sectors, e1000_mac, net_mac):
    mac = lambda m: re.escape(m.encode())
    return [
        ("smp", rb"^smp: Brought up 1 node, (\d+) CPUs?$"),
        ("ttyS0", rb"ttyS0 at I/O 0x3f8 \(irq = 4, base_baud = 115200\) is a 16550A$"),
        ("rtc_cmos", rb"^rtc_cmos 00:\d+: registered as rtc0$"),
        ("virtio_blk", rb"^virtio_blk virtio\d+: \[vda\] %d 512-byte logical blocks " % vda_sectors),
        ("vda partitions", rb"^ vda: vda1 vda2 < vda5 vda6 >$"),
        ("ahci", rb"^ahci 0000:00:06\.0: AHCI 0001\.0300 32 slots 2 ports \d Gbps 0x3 impl SATA mode$"),
        ("ata disk", rb"^ata\d\.00: ATA-\d+: KhyveTestDisk, "),
        ("ata sectors", rb"^ata\d\.00: %d sectors, multi \d+: LBA48 NCQ \(depth 32\)" % sda_sectors),
        ("sd", rb"^sd \d:0:0:0: \[sda\] %d 512-byte logical blocks" % sda_sectors),
        ("sda partitions", rb"^ sda: sda1 sda2 < sda5 sda6 >$"),
        ("cd model", rb"^scsi \d:0:0:0: CD-ROM +ATA +KhyveTestCD "),
        ("sr", rb"^sr \d:0:0:0: \[sr0\] scsi3-mmc drive"),
        ("e1000", rb"^e1000 0000:00:07\.0 (eth\d): \(PCI:33MHz:32-bit\) %s$" % mac(e1000_mac)),
        ("e1000 name", rb"^e1000 0000:00:07\.0 eth\d: Intel\(R\) PRO/1000 Network Connection$"),
        ("keyboard", rb"^input: AT Translated Set 2 keyboard as /devices/platform/i8042/serio0/"),
        ("mouse", rb"^input: [^\n]*PS/2 [^\n]*Mouse as /devices/platform/i8042/serio1/"),
        # xHCI (slot 8) with the tablet on USB 2 port 1, bound by usbhid and hid-generic.
        ("xhci", rb"^xhci_hcd 0000:00:08\.0: hcc params 0x[0-9a-f]{8} hci version 0x110 quirks "
                 rb"0x[0-9a-f]+$"),
        ("usb tablet", rb"^usb 1-1: new full-speed USB device number \d+ using xhci_hcd$"),
        ("tablet input", rb"^input: khyve khyve USB tablet as /devices/pci0000:00/0000:00:08\.0/"
                         rb"usb1/1-1/1-1:1\.0/0003:1209:6B68\.\d{4}/input/input\d+$"),
        ("tablet hid", rb"^hid-generic 0003:1209:6B68\.\d{4}: input: USB HID v1\.11 Mouse "
                       rb"\[khyve khyve USB tablet\] on usb-0000:00:08\.0-1/input0$"),
        ("dhcp", rb"^IP-Config: Got DHCP answer from 10\.0\.2\.2, my address is 10\.0\.2\.15$"),
        ("ip-config", rb"^IP-Config: Complete:\n +device=(eth\d), hwaddr=([0-9a-f:]+), "
                      rb"ipaddr=10\.0\.2\.15, mask=255\.255\.255\.0, gw=10\.0\.2\.2$"),
        ("run init", rb"^Run /init as init process$"),
    ]


# The probes of the xHCI and the tablet (khyve's own IDs): bench/linux.py, which boots QEMU too,
# gives neither VMM the controller.
XHCI_PROBES = {"xhci", "usb tablet", "tablet input", "tablet hid"}


# Lines no boot may show: ACPI complaints, kernel bugs and warnings, and the reports by which
# the kernel's own watchdogs judge time and interrupts (after a restore above all).
BAD = [
    rb"ACPI Error", rb"ACPI Warning", rb"BUG", rb"WARNING", rb"Oops",
    rb"clocksource[^\n]*unstable", rb"Lost \d+ RTC interrupts", rb"rcu: INFO",
    rb"blocked for more than \d+ seconds", rb"soft lockup", rb"hard LOCKUP",
    rb"nobody cared", rb"No irq handler", rb"lost interrupt", rb"timed out",
    rb"virtio[^\n]*(error|broken)", rb"I/O error", rb"Buffer I/O",
    rb"[Ee]mulation failure",
]
# Lines a first boot may show where ring 0 is emulated: rtc_cmos arms HPET timer 1 for 1/64 s
# before it installs its handler, and on a slow guest the handler runs periods late and counts
# them (doc/linux-guest.md).  A kernel restored after that probe has no such timer armed: there
# it is an error.
FIRST_BOOT_OK = [rb"hpet: Lost \d+ RTC interrupts$"]



# -- judging a console ---------------------------------------------------------------------------
# Where ring 0 is emulated (about 1.5 us an instruction, slower on a busy host) two of the
# kernel's own boot steps run for many seconds on the init task without ever scheduling (the
# test kernel is not preemptible), and can outlast RCU's 21 s stall timeout (or the soft-lockup
# detector's 20 s), on a first boot as on a restored one (doc/linux-guest.md):
# - the blake2s self-test (`blake2s_selftest`, run by the initcall `blake2s_mod_init` in a
#   kernel without CONFIG_CRYPTO_MANAGER_DISABLE_TESTS);
# - the end of kernel_init: free_initmem and mark_readonly free the init code and the gaps
#   around rodata, and free_reserved_area poisons every freed byte (0xcc, `rep stosb`: 4 MiB,
#   one emulated iteration a byte).
# A stall report is excused only when every CPU it names was, by its own backtrace, in one of
# these on PID 1 before the point where that step is over: the interrupted code (RIP, or the
# first task frame under the interrupt entry) is one of the step's functions and its caller is
# on the stack.  Any other stall, a stall's report of a timer that did not fire, a starved RCU
# kthread on a CPU that was not stalled, and every other report is not excused.

KNOWN_SPANS = [
    # (what, the interrupted function is one of, one of these is on the stack, over once)
    ("the blake2s self-test",
     {"blake2s_compress_generic", "blake2s_compress", "blake2s_update", "blake2s_final",
      "__blake2s_init", "blake2s.constprop.0", "blake2s_selftest", "blake2s_mod_init",
      "memcpy", "__memcpy", "memset", "__memset", "memcmp"},
     {"blake2s_selftest", "blake2s_mod_init"},
     rb"^Freeing unused kernel image"),
    ("kernel_init freeing and poisoning init memory",
     {"free_reserved_area", "free_init_pages", "free_initmem", "free_kernel_image_pages",
      "mark_rodata_ro", "memset", "__memset"},
     {"kernel_init"},
     rb"^Run /init as init process$"),
]

STALL_HEAD = re.compile(rb"rcu: INFO: \S+ (self-detected stall on CPU|"
                        rb"detected stalls on CPUs/tasks:)|watchdog: BUG: soft lockup - CPU#(\d+) stuck")
STALLED_CPU = re.compile(rb"^rcu: \t?\s*(\d+)-[.\w]{4}: \(")
# Where one CPU's backtrace starts: the NMI handler's header, the task dump's, or (a stall the
# CPU detected itself: show_regs of the interrupted code) its CPU line.
TRACE_HEAD = re.compile(rb"^(?:NMI backtrace for cpu (\d+)$|Task dump for CPU (\d+):$|"
                        rb"CPU: (\d+) PID: \d+ )")
CPU_LINE = re.compile(rb"^CPU: (\d+) PID: (\d+) ")
TASK_LINE = re.compile(rb"^task:\S+ .* pid:(\d+) ")
STARVED = re.compile(rb"kthread starved for \d+ jiffies!.*->cpu=(\d+)")
# A stack frame or RIP: a name (with CONFIG_KALLSYMS) or a bare address (without, as here).
FRAME = re.compile(rb"^\s*(?:\? )?(0x[0-9a-f]{16}|[A-Za-z_.][\w.]*)"
                   rb"(?:\+0x[0-9a-f]+/0x[0-9a-f]+)?(?: \[\w+\])?\s*$")
RIP = re.compile(rb"^RIP: [0-9a-f]{4}:(0x[0-9a-f]{16}|[A-Za-z_.][\w.]*)")
ENTRY = ("asm_", "sysvec_", "irqentry_", "common_interrupt", "__sysvec_")


def symbolizer(image):
    """A function: kernel text address -> name of the function holding it, from the image's
    own symbol table (`nm`; the test kernel has no KALLSYMS, so its backtraces are addresses)."""
    out = subprocess.run(["nm", "-n", image], capture_output=True, text=True, check=True).stdout
    table = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in ("t", "T", "w", "W"):
            table.append((int(parts[0], 16), parts[2]))
    return table_symbolizer(table)


def table_symbolizer(table):
    """The same from (start address, name) pairs."""
    table = sorted(table)
    addrs = [a for a, _ in table]

    def resolve(addr):
        i = bisect.bisect_right(addrs, addr) - 1
        return table[i][1] if i >= 0 else None
    return resolve


def _name(tok, resolve):
    tok = tok.decode()
    return resolve(int(tok, 16)) if tok.startswith("0x") else tok


class Trace:
    """One CPU's backtrace in a report: its CPU and PID, the interrupted code's function (RIP,
    or the first task frame under the interrupt entry) and the task-context frames."""

    def __init__(self, cpu, lines, resolve):
        self.cpu, self.pid, self.rip, self.task = cpu, None, None, []
        in_task = False
        for l in lines:
            m = CPU_LINE.match(l) or TASK_LINE.match(l)
            if m and self.pid is None:
                self.pid = int(m.groups()[-1])
            m = RIP.match(l)
            if m and self.rip is None:
                self.rip = _name(m.group(1), resolve)
            s = l.strip()
            if s == b"<TASK>":
                in_task = True
            elif s == b"</TASK>":
                in_task = False
            elif in_task:
                f = FRAME.match(l)
                if f:
                    self.task.append(_name(f.group(1), resolve))
        if self.rip is None:
            self.rip = next((n for n in self.task if n and not n.startswith(ENTRY)), None)

    def span(self, lineno, over):
        """The known span this CPU was in (KNOWN_SPANS), or None."""
        if self.pid != 1:
            return None
        for what, funcs, callers, end in KNOWN_SPANS:
            if self.rip in funcs and any(n in callers for n in self.task) and lineno < over[end]:
                return what
        return None

    def __str__(self):
        return "CPU %d (PID %s) in %s, task stack %s" % (
            self.cpu, self.pid, self.rip, ", ".join(str(n) for n in self.task[:8]))


def _trace_end(lines, i):
    """Index past the backtrace starting at lines[i]: its </TASK> (at most 200 lines on)."""
    for j in range(i, min(len(lines), i + 200)):
        if lines[j].strip() == b"</TASK>":
            return j + 1
    return min(len(lines), i + 200)


def stall_reports(lines, resolve):
    """Every stall report on the console: (first line, past its last line, what excuses it or
    None, why not)."""
    over = {end: next((i for i, l in enumerate(lines) if re.search(end, l)), len(lines))
            for _, _, _, end in KNOWN_SPANS}
    out = []
    i = 0
    while i < len(lines):
        m = STALL_HEAD.search(lines[i])
        if not m:
            i += 1
            continue
        start, j = i, i + 1
        cpus, traces = set(), {}
        if m.group(2) is not None:
            cpus.add(int(m.group(2)))  # a soft lockup: its CPU's backtrace follows at once
            end = _trace_end(lines, j)
            traces[int(m.group(2))] = Trace(int(m.group(2)), lines[j:end], resolve)
            j = end
        else:
            while j < len(lines) and (STALLED_CPU.match(lines[j]) or
                                      lines[j].startswith((b"rcu: \t", b"\t("))):
                c = STALLED_CPU.match(lines[j])
                if c:
                    cpus.add(int(c.group(1)))
                j += 1
            # RCU's own findings, then one backtrace per stalled CPU.
            while j < len(lines) and j < start + 600 and not STALL_HEAD.search(lines[j]):
                t = TRACE_HEAD.match(lines[j])
                if t:
                    cpu = int(next(g for g in t.groups() if g is not None))
                    end = _trace_end(lines, j + 1)
                    traces[cpu] = Trace(cpu, lines[j:end], resolve)
                    j = end
                    if cpus <= set(traces):
                        break
                    continue
                j += 1
        why, spans = [], set()
        if not cpus:
            why.append("no stalled CPU named")
        for c in sorted(cpus):
            t = traces.get(c)
            span = t.span(start, over) if t else None
            if t is None:
                why.append("no backtrace of CPU %d" % c)
            elif span is None:
                why.append(str(t))
            else:
                spans.add(span)
        for l in lines[start:j]:
            if b"timer wakeup didn't happen" in l or b"Possible timer handling issue" in l:
                why.append("a timer did not fire: " + l.decode(errors="replace").strip())
            s = STARVED.search(l)
            if s and int(s.group(1)) not in cpus:
                why.append("RCU's kthread starved on CPU %s, which was not stalled"
                           % s.group(1).decode())
        out.append((start, j, None if why else ", ".join(sorted(spans)), "; ".join(why)))
        i = max(j, i + 1)
    return out


def judge(text, resolve, ok=()):
    """The console's reports (BAD lines) left once the excused stalls (KNOWN_SPANS) are taken
    out, as (line, why it was not excused) pairs, and the excused ones as (line, span) pairs.
    @text: the console, carriage returns removed; @ok: patterns of lines allowed here
    (FIRST_BOOT_OK on a first boot)."""
    lines = text.split(b"\n")
    skip, excused, reasons = set(), [], {}
    for start, end, span, why in stall_reports(lines, resolve):
        if span:
            skip.update(range(start, end))
            excused.append((lines[start], span))
        else:
            reasons[start] = why
    bad = []
    for i, l in enumerate(lines):
        if i in skip or not any(re.search(rx, l) for rx in BAD):
            continue
        if any(re.search(rx, l) for rx in ok):
            continue
        bad.append((l, reasons.get(i, "")))
    return bad, excused
