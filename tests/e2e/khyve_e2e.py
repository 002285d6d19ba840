"""End-to-end harness: run build/khyve with the test guest, read its console, talk to it with
build/khyvectl, check what the guest printed.  Used by the test_*.py files here."""

import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("KHYVE_BUILD", os.path.join(ROOT, "build"))
KHYVE = os.path.join(BUILD, "khyve")
KHYVECTL = os.path.join(BUILD, "khyvectl")
GUEST = os.path.join(BUILD, "testguest")
SEQ_RE = re.compile(rb"^seq (\d+)$")


class Fail(Exception):
    pass


class Skip(Exception):
    """A test that cannot run here for a reason it names (printed loudly, counted as skipped)."""


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def have_kvm():
    return os.access("/dev/kvm", os.R_OK | os.W_OK)


class Workdir:
    def __init__(self):
        self.path = tempfile.mkdtemp(prefix="khyve-e2e-")
        self.vms = []

    def __call__(self, name):
        return os.path.join(self.path, name)

    def cleanup(self):
        for vm in self.vms:
            vm.kill()
        shutil.rmtree(self.path, ignore_errors=True)


class VM:
    """One khyve process with its console (COM1 on stdio) captured."""

    def __init__(self, wd, name="vm0", cpus=1, mem="256M", cmdline="mode=counter",
                 extra=(), restore=None, args=None, cwd=None):
        self.wd = wd
        self.name = name
        self.sock = wd(name + ".sock")
        if args is None:
            args = [KHYVE]
            if restore:
                args += ["-r", restore]
            else:
                args += ["-c", str(cpus), "-m", mem, "-s", "0,hostbridge", "-s", "31,lpc",
                         "-l", "com1,stdio", "-o", "boot.kernel=" + GUEST,
                         "-o", "boot.cmdline=" + cmdline]
            args += ["-o", "ctl.socket=" + self.sock]
            args += list(extra)
            args += [name]
        self.args = args
        wd.vms.append(self)
        self.out = b""
        self.err = b""
        self.p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, cwd=cwd)
        os.set_blocking(self.p.stdout.fileno(), False)
        os.set_blocking(self.p.stderr.fileno(), False)

    def pump(self, timeout=0.1):
        fds = [f for f in (self.p.stdout, self.p.stderr) if not f.closed]
        r, _, _ = select.select(fds, [], [], timeout)
        for f in r:
            data = f.read()
            if data is None:
                continue
            if f is self.p.stdout:
                self.out += data
            else:
                self.err += data
            if data == b"":
                pass

    def drain(self):
        """Read all the output waiting in the pipes."""
        size = None
        while size != (len(self.out), len(self.err)):
            size = (len(self.out), len(self.err))
            self.pump(0)

    def wait_for(self, pattern, timeout=60):
        """Wait until the console matches @pattern (bytes regex); returns the match."""
        rx = re.compile(pattern, re.M)
        end = time.time() + timeout
        while time.time() < end:
            m = rx.search(self.out)
            if m:
                return m
            if self.p.poll() is not None:
                self.pump(0)
                m = rx.search(self.out)
                if m:
                    return m
                raise Fail("khyve exited (%s) before printing %r\nconsole:\n%s\nstderr:\n%s"
                           % (self.p.returncode, pattern, self.tail(), self.err.decode(errors="replace")))
            self.pump(0.2)
        raise Fail("timeout waiting for %r\nconsole:\n%s\nstderr:\n%s"
                   % (pattern, self.tail(), self.err.decode(errors="replace")))

    def seqs(self):
        """seq numbers of the complete console lines (a line still being written is not)."""
        return seq_numbers(self.out)

    def wait_seq(self, n, timeout=60):
        """Wait until the guest printed at least @n seq lines (any numbers)."""
        end = time.time() + timeout
        while time.time() < end:
            if len(self.seqs()) >= n:
                return self.seqs()
            self.check_alive()
            self.pump(0.2)
        raise Fail("timeout waiting for %d seq lines; console:\n%s" % (n, self.tail()))

    def check_alive(self):
        if self.p.poll() is not None:
            self.pump(0)
            raise Fail("khyve exited (%s)\nconsole:\n%s\nstderr:\n%s"
                       % (self.p.returncode, self.tail(), self.err.decode(errors="replace")))
        if b"TESTGUEST FAIL" in self.out:
            raise Fail("guest reported a failure:\n" + self.tail())

    def wait_exit(self, timeout=60):
        end = time.time() + timeout
        while time.time() < end:
            if self.p.poll() is not None:
                self.pump(0)
                self.pump(0)
                return self.p.returncode
            self.pump(0.2)
        raise Fail("khyve did not exit; console:\n" + self.tail())

    def ctl(self, *args, expect_ok=True):
        r = subprocess.run([KHYVECTL, "--vm=" + self.name, "--socket=" + self.sock, "--json"]
                           + list(args), capture_output=True, timeout=300)
        # What the guest printed while khyvectl waited came before the command's effect (a
        # checkpoint's instant): read it now, so that lines a test counts from here are after.
        self.drain()
        lines = [l for l in r.stdout.decode().splitlines() if l.strip()]
        reply = json.loads(lines[-1]) if lines else {}
        if expect_ok:
            check(r.returncode == 0 and reply.get("ok"),
                  "khyvectl %s failed (%d): %s %s" % (" ".join(args), r.returncode,
                                                       r.stdout.decode(), r.stderr.decode()))
        return r.returncode, reply

    def tail(self, n=2000):
        return self.out[-n:].decode(errors="replace")

    def kill(self):
        if self.p.poll() is None and os.environ.get("KHYVE_COVERAGE"):
            # make coverage: SIGINT ends khyve through exit(), which writes its gcov data.
            self.p.send_signal(signal.SIGINT)
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                pass
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()
        for f in (self.p.stdout, self.p.stderr):
            try:
                f.close()
            except Exception:
                pass


def assert_consecutive(seqs, what):
    check(seqs, what + ": no seq lines")
    for a, b in zip(seqs, seqs[1:]):
        check(b == a + 1, "%s: seq %d followed by %d (gap or repeat)" % (what, a, b))


def full_lines(out):
    """Console lines, without a partial first line (restored output starts mid-line)."""
    return out.split(b"\n")


def seq_numbers(out):
    """seq numbers of the complete lines of console output @out (the last line, not ended yet,
    is not).  The tail of a line a restored console starts with ("q 41") never matches; a whole
    "seq 41" does."""
    return [int(m.group(1)) for m in (SEQ_RE.match(l) for l in out.split(b"\n")[:-1]) if m]


def restored_seqs(out):
    """seq numbers of complete lines in a restored VM's console.  The first line may be the tail
    of a line the original VM had started ("q 41"): it is returned separately.  A restore that
    was paused between two lines starts with a whole one, which counts (b"" is returned)."""
    lines = out.split(b"\n")
    whole_first = len(lines) > 1 and SEQ_RE.match(lines[0])
    first = b"" if whole_first else lines[0]
    complete = lines[:-1] if whole_first else lines[1:-1]
    return first, [int(m.group(1)) for m in (SEQ_RE.match(l) for l in complete) if m]


def khyve_run(args, timeout=30, cwd=None):
    return subprocess.run([KHYVE] + args, capture_output=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, cwd=cwd)


TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


def main(modules):
    # E2E_ONLY=a,b: tests whose name holds one of the substrings; make check runs the slow
    # groups (test_linux) beside the others with E2E_EXCLUDE=substring[,substring].
    only = [s for s in os.environ.get("E2E_ONLY", "").split(",") if s]
    exclude = [s for s in os.environ.get("E2E_EXCLUDE", "").split(",") if s]
    if not have_kvm():
        print("=" * 70)
        print("SKIPPING KVM TESTS LOUDLY: /dev/kvm is missing or not accessible here.")
        print("=" * 70)
    passed = failed = skipped = 0
    for fn in TESTS:
        name = fn.__module__ + "." + fn.__name__
        if only and not any(s in name for s in only):
            continue
        if any(s in name for s in exclude):
            continue
        needs_kvm = getattr(fn, "needs_kvm", True)
        if needs_kvm and not have_kvm():
            print("SKIP %s (no /dev/kvm)" % name)
            skipped += 1
            continue
        wd = Workdir()
        t0 = time.time()
        try:
            fn(wd)
            passed += 1
            print("PASS %s (%.1fs)" % (name, time.time() - t0), flush=True)
        except Skip as e:
            skipped += 1
            print("SKIP %s: %s" % (name, e), flush=True)
        except Exception as e:
            failed += 1
            print("FAIL %s (%.1fs)" % (name, time.time() - t0), flush=True)
            if isinstance(e, Fail):
                print("  " + str(e).replace("\n", "\n  "))
            else:
                traceback.print_exc()
        finally:
            wd.cleanup()
    print("e2e: %d passed, %d failed, %d skipped" % (passed, failed, skipped))
    return 1 if failed else 0
