"""Snapshots are exact: no guest event lost in an unfinished exit, disks that match the memory,
clocks that agree, queues that cannot block a snapshot, checkpoint targets checked first."""

import random
import re

from khyve_e2e import VM, Fail, assert_consecutive, check, restored_seqs, test

UART_FAIL = re.compile(rb"TESTGUEST FAIL: uart.*")


@test
def uart_reads_survive_checkpoints(wd):
    """mode=uart streams bytes through COM2/COM3 in loopback on two vCPUs, every byte counted.
    A vCPU saved between an IN exit and its completion (the next KVM_RUN) would restore with
    the byte already popped from the FIFO and the IN still to execute: one byte lost.  Many
    checkpoints at random moments, each restored: none may lose a byte."""
    vm = VM(wd, cpus=2, mem="64M", cmdline="mode=uart rate=10",
            extra=["-l", "com2,off", "-l", "com3,off"])
    vm.wait_for(rb"^uart: 2 streams", timeout=60)
    vm.wait_seq(3, timeout=60)
    rng = random.Random()
    snaps = []
    for i in range(40):
        snap = wd("u%d.snap" % i)
        vm.ctl("--checkpoint=" + snap)
        snaps.append(snap)
        vm.pump(rng.uniform(0, 0.05))
    m = vm.wait_for(rb"^uart: (\d+) bytes$", timeout=30)
    check(int(m.group(1)) > 0, "the streams moved no bytes:\n" + vm.tail())
    check(not UART_FAIL.search(vm.out), "the original lost bytes:\n" + vm.tail())
    vm.kill()
    lost = []
    for i, snap in enumerate(snaps):
        r = VM(wd, restore=snap, name="r%d" % i)
        try:
            r.wait_seq(3, timeout=60)
        except Fail:
            pass  # the guest's own report, checked below, says more
        if b"TESTGUEST FAIL" in r.out:
            try:
                r.wait_for(rb"TESTGUEST FAIL.*\n", timeout=5)  # the whole line
            except Fail:
                pass
        m = UART_FAIL.search(r.out)
        if m:
            lost.append("checkpoint %d: %s" % (i, m.group(0).decode(errors="replace")))
        else:
            r.check_alive()
            assert_consecutive(restored_seqs(r.out)[1], "restored checkpoint %d" % i)
        r.kill()
    check(not lost, "%d of %d restored checkpoints lost UART bytes:\n%s"
          % (len(lost), len(snaps), "\n".join(lost)))
