"""The sandbox: every khyve runs under its seccomp filter (the whole suite does), a forbidden
system call from a device thread kills it with a line naming the call, sandbox=off runs
without the filter."""

import signal

from khyve_e2e import VM, check, khyve_run, test


def seccomp_mode(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("Seccomp:"):
                return int(line.split()[1])
    return None


@test
def sandbox_installed(wd):
    vm = VM(wd, name="sb", mem="64M")
    vm.wait_seq(2, timeout=120)
    check(seccomp_mode(vm.p.pid) == 2, "a running khyve is in seccomp filter mode")
    vm.ctl("--checkpoint=" + wd("sb.snap"))
    n = len(vm.seqs())
    vm.wait_seq(n + 2)
    vm.kill()
    off = VM(wd, name="nosb", mem="64M", extra=["-o", "sandbox=off"])
    off.wait_seq(2, timeout=120)
    check(seccomp_mode(off.p.pid) == 0, "sandbox=off: no filter")
    off.kill()
    r = khyve_run(["-o", "sandbox=maybe", "-s", "0,hostbridge", "-o", "ctl.socket=off",
                   "-o", "boot.kernel=/nonexistent", "x"])
    check(r.returncode == 4, "a bad sandbox= value is refused: %r" % r.stderr)


@test
def sandbox_kills_forbidden_call(wd):
    # debug.sandbox_probe: the event-loop thread, where device timers run, makes a call no
    # device makes, a moment after the guest started.
    vm = VM(wd, name="probe", mem="64M", extra=["-o", "debug.sandbox_probe=true"])
    rc = vm.wait_exit(60)
    err = vm.err.decode(errors="replace")
    check(rc == -signal.SIGSYS, "khyve must die by SIGSYS, got %r; stderr %s" % (rc, err))
    check("made the forbidden system call personality" in err, "the log line: %r" % err)
    # Without the sandbox the same call is harmless and the VM runs on.
    vm = VM(wd, name="probe2", mem="64M",
            extra=["-o", "debug.sandbox_probe=true", "-o", "sandbox=off"])
    vm.wait_seq(4, timeout=120)
    vm.check_alive()
    vm.kill()
