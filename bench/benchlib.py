"""What bench/snapshot.py and bench/blk.py share: the errors they report, the processes and
files they own (all removed on the way out), their checks before a run, the khyve and QEMU
command lines they start from, and the pieces of their reports.  Not a script of its own."""

import os
import shutil
import signal
import statistics
import subprocess
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
BUILD = os.environ.get("KHYVE_BUILD", os.path.join(ROOT, "build"))
QEMU = os.environ.get("QEMU", "qemu-system-x86_64")

CPUS = 2
MiB = 1 << 20
KiB = 1 << 10


class BenchError(Exception):
    """A run that did not work (as opposed to one that was slow)."""


def say(msg):
    print(msg, flush=True)


def on_signal(signum, frame):
    raise SystemExit(128 + signum)


def catch_signals():
    """SIGTERM and SIGHUP end the benchmark as an exception would, so its cleanup runs."""
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)


# ---- processes and files we own: all removed on the way out ----

class Owned:
    def __init__(self, prefix, stop_signal):
        self.dir = tempfile.mkdtemp(prefix=prefix)
        self.procs = []
        self.stop_signal = stop_signal

    def path(self, name):
        return os.path.join(self.dir, name)

    def spawn(self, args, **kw):
        """Start @args in its own process group, so that stopping it also stops anything it
        started (QEMU's exec: migration helpers; a wrapper script)."""
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("stdout", subprocess.DEVNULL)
        p = subprocess.Popen(args, start_new_session=True, **kw)
        self.procs.append(p)
        return p

    def stop(self, p, sig=None, grace=5.0):
        """Ask @p to end with @sig (by default the one given when this was made), then kill
        its group if it has not within @grace s."""
        if sig is None:
            sig = self.stop_signal
        if p.poll() is None:
            try:
                os.killpg(p.pid, sig)
                p.wait(grace)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if p.poll() is None:
            p.wait()
        for f in (p.stdout, p.stderr):
            if f:
                f.close()
        if p in self.procs:
            self.procs.remove(p)

    def cleanup(self):
        for p in list(self.procs):
            self.stop(p, signal.SIGKILL, 0)
        shutil.rmtree(self.dir, ignore_errors=True)


# ---- small helpers ----

def read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return b""


def unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def random_file(path, mib):
    """@mib MiB of random bytes at @path, written once and synced (no writeback of it later,
    and reads of it return real data, not holes the host could answer without a page)."""
    with open(path, "wb") as f:
        for _ in range(mib):
            f.write(os.urandom(MiB))
        os.fsync(f.fileno())


def warm(path):
    """Read the whole file, so that it is in the host page cache."""
    with open(path, "rb") as f:
        while f.read(16 * MiB):
            pass


class Warn(list):
    def add(self, msg):
        if msg not in self:
            self.append(msg)
            say("  warning: " + msg)


warnings = Warn()


# ---- before a run ----

def preflight(qemu):
    """Check for /dev/kvm (and QEMU when @qemu), and build the tree.  Returns None when the
    benchmark can run, else its exit status (2) after saying why not."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        say("bench: /dev/kvm is missing or not accessible: nothing to measure")
        return 2
    if qemu and not shutil.which(QEMU):
        say("bench: %s not found (apt-get install qemu-system-x86), or use --no-qemu" % QEMU)
        return 2
    r = subprocess.run(["make", "--no-print-directory", "-C", ROOT, "all"],
                       capture_output=True, text=True)
    if r.returncode:
        say(r.stdout + r.stderr)
        say("bench: make failed")
        return 2
    return None


# ---- command lines ----

MB_MAGIC = 0x1badb002


def qemu_guest(src, dst):
    """Copy the test guest to @dst without its multiboot header, and return @dst.  QEMU's
    -kernel tries multiboot before PVH, and its multiboot loader refuses a 64-bit ELF; with
    the header's magic cleared it boots the image through its PVH note, as khyve does."""
    with open(src, "rb") as f:
        img = bytearray(f.read())
    for off in range(0, min(len(img), 8192) - 11, 4):
        magic, flags, csum = (int.from_bytes(img[off + i:off + i + 4], "little")
                              for i in (0, 4, 8))
        if magic == MB_MAGIC and (magic + flags + csum) & 0xffffffff == 0:
            img[off:off + 4] = bytes(4)
    with open(dst, "wb") as f:
        f.write(img)
    return dst


def khyve_args(khyve, guest, mem, log, cmd, ctl, name, devices=()):
    """khyve with @CPUS vCPUs, @mem RAM, the host bridge and LPC, @devices (more -s options),
    COM1 into @log, booting @guest with @cmd, its control socket @ctl ("off" for none)."""
    return ([khyve, "-c", str(CPUS), "-m", mem, "-s", "0,hostbridge", "-s", "31,lpc"]
            + list(devices) +
            ["-l", "com1,file:" + log, "-o", "boot.kernel=" + guest, "-o", "boot.cmdline=" + cmd,
             "-o", "ctl.socket=" + ctl, name])


def qemu_args(cpu, machine, mem, guest, cmd):
    """The start of a QEMU command line booting @guest with @cmd under KVM, with no default
    devices; the caller adds the console and the rest."""
    return [QEMU, "-nodefaults", "-no-user-config", "-enable-kvm", "-cpu", cpu,
            "-M", machine, "-m", mem, "-smp", str(CPUS), "-kernel", guest, "-append", cmd]


# ---- the report ----

def med(xs):
    return statistics.median(xs) if xs else None


def table(rows):
    """@rows[0] is the header; every column as wide as its widest cell."""
    width = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, width)).rstrip()
    say(line(rows[0]))
    say(line(["-" * w for w in width]))
    for r in rows[1:]:
        say(line(r))


def say_warnings():
    if warnings:
        say("")
        say("warnings:")
        for w in warnings:
            say("  - " + w.replace("\n", "\n    "))
