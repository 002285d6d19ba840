"""e1000: the self-test's EEPROM, PHY and loopback checks, the numbered UDP exchange across
checkpoint / suspend / restore cycles with 1 and 4 vCPUs, a restore onto a tap backend, a
hostfwd rule, bad options, a transmit stream through the worker thread across a checkpoint."""

import os
import re
import shutil
import socket
import struct
import subprocess
import threading
import time

from khyve_e2e import GUEST, KHYVE, VM, Skip, assert_consecutive, check, test
from test_virtio import Echo, cycles, no_fail, refused, virtio_vm


@test
def e1000_selftest(wd):
    vm = virtio_vm(wd, "mode=selftest", cpus=2, devices=["3,e1000,slirp"])
    vm.wait_for(rb"TESTGUEST (PASS|FAIL.*)$", timeout=120)
    check(b"ok e1000" in vm.out, "the self-test did not check the e1000:\n" + vm.tail())
    check(b"TESTGUEST PASS" in vm.out, "selftest:\n" + vm.tail())
    check(vm.wait_exit(30) == 1, "power off exits 1")


def e1000_cycles(wd, cpus):
    echo = Echo()
    try:
        cycles(wd, "mode=net nic=e1000 netport=%d" % echo.port, ["3,e1000,slirp"], cpus, 2)
        check(echo.count > 10, "the echo server saw %d messages" % echo.count)
    finally:
        echo.close()


@test
def e1000_snapshots_1cpu(wd):
    e1000_cycles(wd, 1)


@test
def e1000_snapshots_4cpus(wd):
    e1000_cycles(wd, 4)


@test
def e1000_picked_among_nics(wd):
    """With virtio-net and e1000 both there, nic=e1000 drives the e1000."""
    echo = Echo()
    try:
        vm = virtio_vm(wd, "mode=net nic=e1000 netport=%d" % echo.port,
                       devices=["3,virtio-net,slirp", "4,e1000,slirp"])
        vm.wait_seq(3, timeout=120)
        check(b"net: e1000 at 00:04.0" in vm.out, "not the e1000:\n" + vm.tail())
        no_fail(vm, "e1000 beside virtio-net")
        vm.kill()
    finally:
        echo.close()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def ip(*args):
    subprocess.run(["ip"] + list(args), check=True, capture_output=True)


ECHO_IN_NS = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
while True:
    d, a = s.recvfrom(2048)
    s.sendto(d, a)
"""


@test
def e1000_restore_onto_tap(wd):
    """Suspend on slirp, restore onto a tap in a network namespace whose host is 10.0.2.2:
    the guest's numbered exchange goes on (it re-ARPs for the gateway), with no gap."""
    if os.geteuid() != 0:
        raise Skip("needs root for a network namespace and a tap interface (CI runs as root)")
    if not shutil.which("ip"):
        raise Skip("needs ip(8) from iproute2 (scripts/deps.sh installs it)")
    ns, tap = "khyve-e2e-%d" % os.getpid(), "tapke1000"
    echo = Echo()
    helper = None
    ip("netns", "add", ns)
    try:
        ip("-n", ns, "link", "set", "lo", "up")
        ip("-n", ns, "tuntap", "add", "dev", tap, "mode", "tap")
        ip("-n", ns, "addr", "add", "10.0.2.2/24", "dev", tap)
        ip("-n", ns, "link", "set", tap, "up")
        # A hostfwd rule in the saved configuration: the restore drops it with hostfwd=.
        vm = virtio_vm(wd, "mode=net nic=e1000 netport=%d" % echo.port,
                       devices=["3,e1000,slirp,hostfwd=tcp:127.0.0.1:%d-:22" % free_port()])
        vm.wait_seq(4, timeout=120)
        snap = wd("s.snap")
        vm.ctl("--suspend=" + snap)
        check(vm.wait_exit(60) == 0, "suspend must exit 0")
        before = vm.out
        helper = subprocess.Popen(["ip", "netns", "exec", ns, "python3", "-c", ECHO_IN_NS,
                                   "10.0.2.2", str(echo.port)])
        r = VM(wd, name="tap", args=["ip", "netns", "exec", ns, KHYVE, "-r", snap,
                                     "-s", "3,e1000," + tap, "-o", "pci.0.3.0.hostfwd=",
                                     "-o", "ctl.socket=" + wd("tap.sock"), "tap"])
        r.wait_seq(6, timeout=120)
        lines = (before + r.out).split(b"\n")[:-1]
        seqs = [int(l[4:]) for l in lines if l.startswith(b"seq ") and l[4:].isdigit()]
        assert_consecutive(seqs, "slirp, then tap")
        no_fail(r, "restored onto tap")
        check(b"TESTGUEST FAIL" not in r.out, r.tail())
        r.kill()
    finally:
        if helper:
            helper.kill()
            helper.wait()
        echo.close()
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@test
def e1000_hostfwd(wd):
    """-s 3,e1000,slirp,hostfwd=tcp:PORT-:22, as the README gives it: the host port listens
    and takes a connection (slirp passes it to 10.0.2.15:22 as a SYN, tests/unit/test_e1000's
    test_slirp_hostfwd_syn follows it into the receive ring; the test guest speaks no TCP)
    while the guest's UDP exchange goes on."""
    echo = Echo()
    port = free_port()
    try:
        vm = virtio_vm(wd, "mode=net nic=e1000 netport=%d" % echo.port,
                       devices=["3,e1000,slirp,hostfwd=tcp:%d-:22" % port])
        n = len(vm.wait_seq(3, timeout=120))
        c = socket.create_connection(("127.0.0.1", port), timeout=10)
        c.close()
        vm.wait_seq(n + 3, timeout=60)
        no_fail(vm, "e1000 with a hostfwd rule")
        vm.kill()
    finally:
        echo.close()


@test
def bad_e1000_options(wd):
    base = ["-s", "0,hostbridge", "-s", "31,lpc", "-l", "com1,off", "-o", "ctl.socket=off",
            "-o", "boot.kernel=" + GUEST]
    refused(base + ["-s", "3,e1000,carrier-pigeon", "vm"], "carrier-pigeon")
    refused(base + ["-s", "3,e1000,slirp,mac=zz:00", "vm"], "mac")
    refused(base + ["-s", "3,e1000,tap0,hostfwd=tcp:2222-:22", "vm"], "hostfwd needs")
    refused(base + ["-s", "3,e1000,slirp,hostfwd=tcp:2222", "vm"], "hostfwd rule")


@test
def e1000_coalesced_mmio(wd):
    """KVM buffers the e1000's writes outside ICR/IMS/TDT... (coalesced MMIO): --get-stats
    shows its zones and writes handed over, none dropped, while the guest's UDP exchange runs;
    -o mmio.coalesce=off runs the same exchange with every write exiting."""
    echo = Echo()
    try:
        vm = virtio_vm(wd, "mode=net nic=e1000 netport=%d" % echo.port,
                       devices=["3,e1000,slirp"])
        vm.wait_seq(4, timeout=120)
        _, st = vm.ctl("--get-stats")
        co = st.get("coalesced")
        if co is None:
            vm.kill()
            raise Skip("this KVM has no KVM_CAP_COALESCED_MMIO")
        check(co["zones"] == 6, "e1000 BAR 0 zones: %r" % co)
        check(co["writes"] > 0 and co["dropped"] == 0, "coalesced writes: %r" % co)
        bar0 = [r for r in st["io"] if r["device"] == "pci@0.3.0" and r["region"] == "bar0"]
        check(bar0 and bar0[0]["writes"] >= co["writes"],
              "the buffered writes reach bar0's handler: %r %r" % (bar0, co))
        no_fail(vm, "e1000 with coalesced MMIO")
        vm.kill()
        off = virtio_vm(wd, "mode=net nic=e1000 netport=%d" % echo.port, name="off",
                        devices=["3,e1000,slirp"], extra=["-o", "mmio.coalesce=off"])
        off.wait_seq(4, timeout=120)
        _, st = off.ctl("--get-stats")
        check(st.get("coalesced", 0) is None, "mmio.coalesce=off: %r" % st.get("coalesced"))
        no_fail(off, "e1000 without coalesced MMIO")
        off.kill()
    finally:
        echo.close()
    base = ["-s", "0,hostbridge", "-s", "31,lpc", "-l", "com1,off", "-o", "ctl.socket=off",
            "-o", "boot.kernel=" + GUEST]
    refused(base + ["-s", "3,e1000,slirp", "-o", "mmio.coalesce=sometimes", "vm"],
            "mmio.coalesce")


class StreamSink(threading.Thread):
    """The host end of the guest's mode=netbench tx stream (bench/net_sink.c's protocol):
    counts the "KHBD" + seq datagrams, acknowledges every 16th with "KHBA" + the count, and
    notes any sequence number that is not above the one before (a frame out of ring order)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = False
        self.count = 0
        self.last = -1
        self.disorder = []
        self.start()

    def run(self):
        while not self.stop:
            try:
                data, addr = self.sock.recvfrom(2048)
            except socket.timeout:
                continue
            if len(data) < 8 or data[:4] != b"KHBD":
                continue
            seq = struct.unpack(">I", data[4:8])[0]
            if seq <= self.last and len(self.disorder) < 10:
                self.disorder.append((self.last, seq))
            self.last = max(self.last, seq)
            self.count += 1
            if self.count % 16 == 0:
                self.sock.sendto(b"KHBA" + struct.pack(">I", self.count), addr)

    def close(self):
        self.stop = True
        self.join(2)
        self.sock.close()


@test
def e1000_tx_stream(wd):
    """The guest streams UDP as fast as its window of 64 allows (mode=netbench netdir=tx, 2
    vCPUs) while the device transmits on its worker thread, and a checkpoint lands in the
    middle (pause drains the ring and stops the worker, resume starts it): the guest
    finishes with its NETBENCH line and no failure, and the host sees the datagrams in ring
    order.  This caught the test guest's driver filling the whole 64-descriptor ring, which
    a device that transmits after the TDT write returns reads as empty."""
    sink = StreamSink()
    try:
        vm = virtio_vm(wd, "mode=netbench nic=e1000 netdir=tx netport=%d netsize=1472 "
                       "netwin=64 seconds=3" % sink.port, cpus=2, devices=["3,e1000,slirp,txthread=on"])
        vm.wait_for(rb"^net: gateway", timeout=120)
        time.sleep(1)
        vm.ctl("--checkpoint=" + wd("c.snap"))
        m = vm.wait_for(rb"^(NETBENCH [^\r\n]*|TESTGUEST FAIL[^\r\n]*)\r?\n", timeout=60)
        no_fail(vm, "e1000 tx stream")
        check(m.group(1).startswith(b"NETBENCH dir=tx"), vm.tail())
        pkts = int(re.search(rb" pkts=(\d+)", m.group(1)).group(1))
        check(pkts > 100, "the guest counted %d acknowledged datagrams:\n%s" % (pkts, vm.tail()))
        check(sink.count >= pkts, "the sink saw %d datagrams, the guest %d acknowledged"
              % (sink.count, pkts))
        check(not sink.disorder, "datagrams out of ring order (previous, then): %r"
              % sink.disorder)
        vm.wait_exit(30)
    finally:
        sink.close()
