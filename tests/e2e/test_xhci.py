"""xHCI with the USB tablet: the test guest's selftest group (reset, enumeration, descriptors,
one interrupt transfer), SeaBIOS enumerating the controller and still booting, and pointer
events from our RFB client arriving at the tablet exactly once, also across checkpoints, a
pause and suspend/restore with one and four vCPUs."""

import re
import time

from khyve_e2e import VM, check, khyve_run, test
from test_console import connect, console_vm, free_port
from test_firmware import bootsector, expect_bootsector, fw_vm

TABLET = ["-s", "30,xhci,tablet"]
# Whole lines only: a line still being printed ("abs X Y btn 0" before its " dz -1") must not count.
ABS_RE = re.compile(rb"^abs (\d+) (\d+) btn (\d+)(?: dz (-?\d+))?\r?\n", re.M)


def scale(v, size):
    return v * 32767 // (size - 1)


def abs_events(out):
    return [tuple(int(g) if g is not None else 0 for g in m.groups())
            for m in ABS_RE.finditer(out)]


def clicks(c, points, size=(1024, 768)):
    """Send (x, y, mask) pointer events; what the tablet must report for each, in order.
    Every event changes the buttons, so none may merge with another."""
    want = []
    for x, y, mask in points:
        c.pointer(x, y, mask)
        want.append((scale(x, size[0]), scale(y, size[1]), mask & 1 | (mask & 4) >> 1 |
                     (mask & 2) << 1, 0))
    return want


def expect_abs(vm, want, what, timeout=30):
    end = time.time() + timeout
    got = abs_events(vm.out)
    while len(got) < len(want) and time.time() < end:
        vm.pump(0.2)
        got = abs_events(vm.out)
    vm.pump(0.5)  # anything extra (a repeat) would show now
    got = abs_events(vm.out)
    check(got == want, "%s: the tablet reported\n  %s\nwant\n  %s\n%s" % (what, got, want, vm.tail(1500)))


def points(n, base):
    """n clicks and releases at distinct positions."""
    return [(base + 37 * i % 900, 50 + 23 * i % 700, 1 if i % 2 == 0 else 0)
            for i in range(n)]


@test
def xhci_selftest(wd):
    vm = VM(wd, cmdline="mode=selftest", extra=TABLET)
    vm.wait_for(rb"TESTGUEST (PASS|FAIL.*)$", timeout=120)
    check(b"ok xhci" in vm.out, "the self-test did not check the xHCI:\n" + vm.tail())
    check(b"TESTGUEST PASS" in vm.out, "selftest:\n" + vm.tail())
    check(vm.wait_exit(30) == 1, "power off exits 1")


@test
def xhci_seabios_boots(wd):
    # SeaBIOS enumerates xHCI controllers and their devices; it must neither hang nor
    # complain, and still find the disk.
    img = bootsector(wd, "xhci")
    vm = fw_vm(wd, [(3, "virtio-blk", img, "")], extra=TABLET)
    expect_bootsector(vm, "xhci", timeout=90)
    check(b"xhci" not in vm.err, "khyve complained:\n" + vm.err.decode(errors="replace"))


@test
def xhci_bad_options(wd):
    for opts, msg in (("30,xhci,tablet=yes", b"tablet takes no value"),
                      ("30,xhci,slot.1.device=mouse", b"unknown USB device")):
        r = khyve_run(["-m", "64M", "-s", "0,hostbridge", "-s", "31,lpc", "-s", opts,
                       "-o", "boot.kernel=/nonexistent", "vmx"])
        check(r.returncode != 0 and msg in r.stderr,
              "-s %s: exit %d, %s" % (opts, r.returncode, r.stderr))


@test
def xhci_tablet_exactly_once(wd):
    vm = console_vm(wd, extra=TABLET)
    vm.wait_for(rb"^console: gfx .*tablet", timeout=120)
    c = connect(vm.vnc)
    # The tablet has the pointer once configured (the PS/2 mouse gets nothing).
    want = clicks(c, points(12, 100))
    # the wheel: a click up and one down, each once (the releases change nothing)
    c.pointer(500, 400, 8)
    c.pointer(500, 400, 0)
    c.pointer(500, 400, 16)
    c.pointer(500, 400, 0)
    x, y = scale(500, 1024), scale(400, 768)
    want += [(x, y, 0, 1), (x, y, 0, -1)]
    expect_abs(vm, want, "pointer events")
    check(b"\nrel " not in vm.out, "the PS/2 mouse got events the tablet should have")
    c.close()


def tablet_cycles(wd, cpus):
    vm = console_vm(wd, cmdline="mode=console redraw=10", cpus=cpus, extra=TABLET)
    vm.wait_for(rb"^console: gfx .*tablet", timeout=120)
    c = connect(vm.vnc)
    want = []
    for rnd in range(3):
        want += clicks(c, points(6, 100 + rnd))
        vm.ctl("--checkpoint=" + wd("c%d.snap" % rnd))
        want += clicks(c, points(4, 300 + rnd))
        # The guest runs between checkpoints only briefly: let it catch up, so a round
        # never sends more than the tablet queues (real tablets merge beyond that too).
        expect_abs(vm, want, "across checkpoint %d" % rnd)
    # Events sent while paused wait in the tablet; the snapshot takes them.
    vm.ctl("--pause")
    paused = clicks(c, points(6, 500))
    time.sleep(0.5)
    vm.ctl("--suspend=" + wd("s.snap"))
    check(vm.wait_exit(60) == 0, "suspend should exit 0")
    c.close()
    check(abs_events(vm.out) == want, "events sent while paused were reported before the "
          "suspend")
    port = free_port()
    r = VM(wd, name="r", restore=wd("s.snap"),
           extra=["-o", "pci.0.29.0.tcp=127.0.0.1:%d" % port])
    expect_abs(r, paused, "events queued while paused, after the restore", timeout=60)
    c = connect(("127.0.0.1", port))
    more = clicks(c, points(6, 700))
    expect_abs(r, paused + more, "after the restore")
    seqs = r.seqs()
    check(seqs and seqs[-1] > 0, "no seq lines after the restore")
    c.close()


@test
def xhci_tablet_snapshot_cycles_1cpu(wd):
    tablet_cycles(wd, 1)


@test
def xhci_tablet_snapshot_cycles_4cpus(wd):
    tablet_cycles(wd, 4)
