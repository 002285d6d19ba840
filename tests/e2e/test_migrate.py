"""Migration over loopback (khyve -R, khyvectl --migrate): the guest continues on the
destination where it stopped on the source, the source exits 0; every failure before the hand
over (a refusal, a destination that dies mid-transfer, nobody listening) leaves the source
running the guest as before."""

import os
import re
import signal
import socket
import subprocess
import time

from khyve_e2e import (KHYVE, KHYVECTL, VM, Fail, assert_consecutive, check, restored_seqs,
                       test)

LISTEN_RE = re.compile(rb"waiting for an incoming VM on 127\.0\.0\.1:(\d+)")


def dest(wd, name, extra=()):
    """khyve -R on a free loopback port; returns (VM, port) once it listens."""
    d = VM(wd, name=name, args=[KHYVE, "-R", "127.0.0.1:0", "-l", "com1,stdio",
                                "-o", "ctl.socket=" + wd(name + ".sock")] + list(extra) + [name])
    end = time.time() + 30
    while time.time() < end:
        m = LISTEN_RE.search(d.err)
        if m:
            return d, int(m.group(1))
        if d.p.poll() is not None:
            d.pump(0)
            raise Fail("khyve -R exited (%s): %s" % (d.p.returncode, d.err.decode()))
        d.pump(0.1)
    raise Fail("khyve -R never listened: %s" % d.err.decode())


def migrate(vm, port, *args, expect_ok=True):
    return vm.ctl("--migrate=127.0.0.1:%d" % port, *args, expect_ok=expect_ok)


def handed_over(src, dst, reply, what):
    """The source exits 0; the destination's seq continues from the source's last line."""
    check(reply.get("rounds", 0) >= 1 and reply["bytes"] > 0, "reply %r" % reply)
    check(0 < reply["downtime_ms"] <= reply["total_ms"], "reply %r" % reply)
    rc = src.wait_exit(30)
    check(rc == 0, "%s: the source exited %s after migrating, not 0:\n%s"
          % (what, rc, src.err.decode(errors="replace")))
    last = src.seqs()[-1]
    dst.wait_seq(10, timeout=120)
    first, seqs = restored_seqs(dst.out)
    assert_consecutive(seqs, what + " on the destination")
    check(seqs[0] == last + 1 or (seqs[0] == last + 2 and first.strip()),
          "%s: the source printed seq %d last, the destination starts at %d"
          % (what, last, seqs[0]))
    dst.check_alive()


def still_running(vm, what):
    n = len(vm.seqs())
    vm.wait_seq(n + 10, timeout=60)
    assert_consecutive(vm.seqs(), what)
    vm.check_alive()


@test
def migrate_counter(wd):
    """2 vCPUs rewriting 16 MiB: migrated, the guest's memory check passes there, seq goes on."""
    src = VM(wd, name="src", cpus=2, cmdline="mode=counter mem=16M rate=50")
    src.wait_seq(10, timeout=120)
    dst, port = dest(wd, "dst")
    rc, reply = migrate(src, port)
    print("  migrate: %r" % reply)
    check(reply.get("live") is False and reply.get("address") == "127.0.0.1:%d" % port,
          "reply %r" % reply)
    handed_over(src, dst, reply, "counter guest")
    # The workers verify every word of their previous pass, several passes over 16 MiB.
    time.sleep(2)
    dst.pump(0)
    check(b"TESTGUEST FAIL" not in dst.out, "guest check failed after migration:\n" + dst.tail())
    # The destination is a VM like any other: it answers its own control socket.
    rc, st = dst.ctl("--status")
    check(st.get("state") == "running", "destination status %r" % st)
    dst.kill()


@test
def migrate_blk_shared_disk(wd):
    """virtio-blk on shared storage: the destination opens the same image, nothing is copied
    or removed (even with snapshot.disks=clone), and the guest's disk checks pass there."""
    img = wd("disk.img")
    with open(img, "wb") as f:
        f.truncate(8 << 20)
    src = VM(wd, name="src", cpus=2, cmdline="mode=blk rering=0 rate=50",
             extra=["-s", "3,virtio-blk," + img, "-o", "snapshot.disks=clone"])
    src.wait_seq(15, timeout=120)
    dst, port = dest(wd, "dst")
    before = sorted(os.listdir(wd.path))
    rc, reply = migrate(src, port)
    handed_over(src, dst, reply, "blk guest")
    after = sorted(f for f in os.listdir(wd.path) if not f.endswith(".sock"))
    check(after == [f for f in before if not f.endswith(".sock")],
          "files changed in the disk's directory: %r -> %r" % (before, after))
    n = len(dst.seqs())
    dst.wait_seq(n + 15, timeout=60)
    check(b"TESTGUEST FAIL" not in dst.out, "blk guest failed after migration:\n" + dst.tail())
    dst.kill()


@test
def migrate_refused_config(wd):
    """A destination whose command line does not match the VM refuses it as a restore would
    refuse the file; the source says why and runs on; a later migration succeeds."""
    src = VM(wd, name="src", cmdline="mode=counter mem=8M rate=50")
    src.wait_seq(5, timeout=120)
    bad, port = dest(wd, "bad", ["-c", "2"])
    rc, reply = migrate(src, port, expect_ok=False)
    check(rc != 0 and not reply.get("ok"), "migration to a mismatched khyve: %r" % reply)
    check("cpus=2 does not match" in reply.get("error", ""), "error: %r" % reply)
    check(bad.wait_exit(30) != 0, "the refusing destination exited 0")
    still_running(src, "source after a refused migration")
    dst, port = dest(wd, "dst")
    rc, reply = migrate(src, port)
    handed_over(src, dst, reply, "second attempt")
    dst.kill()


@test
def migrate_destination_killed(wd):
    """The destination dies mid-transfer (stopped after accepting, so the transfer is stuck
    half way, then killed): the source says so and its guest runs on from where it was."""
    src = VM(wd, name="src", mem="256M", cmdline="mode=counter mem=96M rate=50")
    src.wait_seq(10, timeout=120)
    # Until the guest's pass has touched its 96 MiB: far more than socket buffers hold.
    end = time.time() + 120
    while src.ctl("--checkpoint=" + wd("w.snap"))[1]["bytes"] < 96 << 20:
        check(time.time() < end, "the guest never filled its 96 MiB")
        time.sleep(0.5)
    os.unlink(wd("w.snap"))
    dst, port = dest(wd, "dst")
    os.kill(dst.p.pid, signal.SIGSTOP)
    cl = subprocess.Popen([KHYVECTL, "--socket=" + src.sock, "--json",
                           "--migrate=127.0.0.1:%d" % port], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE)
    time.sleep(1.5)
    check(cl.poll() is None, "the migration ended while the destination was stopped")
    dst.p.kill()
    out, err = cl.communicate(timeout=60)
    check(cl.returncode != 0, "migration to a killed destination succeeded: %r" % out)
    check(b"reset" in out or b"closed" in out or b"pipe" in out.lower(),
          "the error does not say the connection went: %r" % out)
    still_running(src, "source after its destination died")
    time.sleep(1)
    src.pump(0)
    check(b"TESTGUEST FAIL" not in src.out, "source guest failed:\n" + src.tail())


@test
def migrate_connection_drops(wd):
    """Nobody listening, a peer that closes after the first frames, a peer that answers
    garbage: each is an error naming it, and the guest runs on."""
    src = VM(wd, name="src", cmdline="mode=counter mem=8M rate=50")
    src.wait_seq(5, timeout=120)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    rc, reply = migrate(src, port, expect_ok=False)
    check(rc != 0 and "Connection refused" in reply.get("error", ""), "reply %r" % reply)
    for behaviour in ("close", "garbage"):
        ls = socket.socket()
        ls.bind(("127.0.0.1", 0))
        ls.listen(1)
        port = ls.getsockname()[1]
        cl = subprocess.Popen([KHYVECTL, "--socket=" + src.sock, "--json",
                               "--migrate=127.0.0.1:%d" % port], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
        c, _ = ls.accept()
        c.recv(65536)
        if behaviour == "garbage":
            # Read everything, then answer with something that is not a frame.
            c.settimeout(3)
            try:
                while c.recv(1 << 20):
                    pass
            except socket.timeout:
                pass
            c.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n" + b"x" * 64)
        c.close()
        ls.close()
        out, err = cl.communicate(timeout=120)
        check(cl.returncode != 0, "%s: migration succeeded: %r" % (behaviour, out))
        if behaviour == "garbage":
            check(b"not a khyve migration stream" in out, "garbage: %r" % out)
        still_running(src, "source after a peer that did '%s'" % behaviour)
