"""Core: the test guest's platform self-test, power off, bad command lines, counter mode."""

import os

from khyve_e2e import GUEST, KHYVE, VM, check, khyve_run, test, assert_consecutive


def selftest(wd, cpus, extra=()):
    vm = VM(wd, cpus=cpus, mem="512M", cmdline="mode=selftest", extra=extra)
    vm.wait_for(rb"TESTGUEST (PASS|FAIL.*)$", timeout=240)
    check(b"TESTGUEST PASS" in vm.out, "guest self-test failed:\n" + vm.tail())
    # The LPC bridge brings the keyboard controller: its group must have run.
    check(b"\nok atkbdc\n" in vm.out, "no 'ok atkbdc' line:\n" + vm.tail())
    status = vm.wait_exit(60)
    check(status == 1, "power off should exit 1, got %s" % status)


@test
def selftest_1cpu(wd):
    selftest(wd, 1)


@test
def selftest_2cpus_lenient_msrs(wd):
    selftest(wd, 2, extra=["-w"])


@test
def selftest_4cpus(wd):
    selftest(wd, 4)


@test
def counter_4cpus(wd):
    vm = VM(wd, cpus=4, cmdline="mode=counter")
    seqs = vm.wait_seq(8, timeout=120)
    assert_consecutive(seqs, "counter")
    check(seqs[0] == 1, "counter must start at seq 1, got %d" % seqs[0])
    rc, st = vm.ctl("--status")
    check(st["vcpus"] == 4 and st["state"] == "running", "status: %r" % st)


def refused(args, needle, needs_kernel=False):
    r = khyve_run(args)
    err = r.stderr.decode()
    check(r.returncode == 4, "%r: exit %d, want 4 (stderr: %s)" % (args, r.returncode, err))
    check(needle in err, "%r: message %r does not mention %r" % (args, err, needle))
    check(err.count("\n") <= 2, "%r: want one clear message, got:\n%s" % (args, err))


def base(*extra):
    return ["-s", "0,hostbridge", "-s", "31,lpc", "-l", "com1,off", *extra]


@test
def bad_command_lines(wd):
    k = "boot.kernel=" + GUEST
    refused(["-Z", "vm"], "-Z")
    refused(["-c", "0", "vm"], "-c 0")
    refused(["-c", "many", "vm"], "-c many")
    refused(["-m", "lots", "vm"], "-m lots")
    refused(["-o", k], "VM name")
    refused(["-o", "novalue", "vm"], "novalue")
    refused(["-s", "40,hostbridge", "-o", k, "vm"], "-s 40,hostbridge")
    refused(["-s", "3,nosuchdevice", "-o", k, "vm"], "nosuchdevice")
    refused(["-s", "3,lpc", "-s", "3,hostbridge", "-o", k, "vm"], "3")
    refused(["-l", "com9,stdio", "-o", k, "vm"], "com9")
    refused(["-l", "com1,bogus", "-o", k, "vm"], "bogus")
    refused(base("vm"), "boot.kernel")
    refused(base("-k", wd("nofile"), "vm"), "nofile")
    refused(["-r", wd("nosnap"), "vm"], "nosnap")


bad_command_lines.needs_kvm = False


@test
def bad_kernels(wd):
    # Read once the VM is made (after the devices' options): KVM is needed to get there.
    refused(base("-o", "boot.kernel=" + wd("missing"), "vm"), wd("missing"))
    junk = wd("junk")
    with open(junk, "wb") as f:
        f.write(b"this is not a kernel" * 100)
    refused(base("-o", "boot.kernel=" + junk, "vm"), "junk")


@test
def config_file_and_dump(wd):
    cfgfile = wd("vm.conf")
    with open(cfgfile, "w") as f:
        f.write("# a comment\ncpus=2\nmemory.size=64M\nboot.kernel=%s\n" % GUEST)
    r = khyve_run(["-k", cfgfile, "-s", "0,hostbridge", "-l", "com1,stdio",
                   "-o", "config.dump=true", "vm7"])
    out = r.stdout.decode()
    check(r.returncode == 0, "config dump failed: %s" % r.stderr.decode())
    for line in ("cpus=2", "memory.size=64M", "name=vm7", "pci.0.0.0.device=hostbridge",
                 "lpc.com1.path=stdio", "boot.kernel=" + GUEST):
        check(line in out.splitlines(), "config dump lacks %s:\n%s" % (line, out))


config_file_and_dump.needs_kvm = False


@test
def help_and_usage(wd):
    r = khyve_run(["-h"])
    check(r.returncode == 0 and b"Usage: khyve" in r.stdout, "khyve -h")


help_and_usage.needs_kvm = False
