"""Migration over loopback (khyve -R, khyvectl --migrate): the guest continues on the
destination where it stopped on the source, the source exits 0; every failure before the hand
over (a refusal, a destination that dies mid-transfer, nobody listening) leaves the source
running the guest as before."""

import json
import os
import re
import signal
import socket
import subprocess
import threading
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


def migrate_live(vm, port, *args):
    """khyvectl --migrate --live: (exit status, progress lines, final reply)."""
    r = subprocess.run([KHYVECTL, "--socket=" + vm.sock, "--json", "--live",
                        "--migrate=127.0.0.1:%d" % port] + list(args),
                       capture_output=True, timeout=300)
    lines = [json.loads(l) for l in r.stdout.decode().splitlines() if l.strip()]
    check(lines, "no reply: %r %r" % (r.stdout, r.stderr))
    return r.returncode, [l["progress"] for l in lines[:-1]], lines[-1]


def live_handed_over(src, dst, rc, rounds, reply, what):
    """A live migration: progress lines per round, a reply that adds up, then handed_over."""
    check(rc == 0 and reply.get("ok") and reply.get("live") is True, "%s: %r" % (what, reply))
    check(len(rounds) >= 1 and [r["round"] for r in rounds] == list(range(1, len(rounds) + 1)),
          "%s: progress lines %r" % (what, rounds))
    check(reply["rounds"] == len(rounds) + 1, "%s: %d rounds reported, %d lines"
          % (what, reply["rounds"], len(rounds)))
    check(reply["precopy_pages"] == sum(r["pages"] for r in rounds),
          "%s: pre-copy pages %r vs rounds %r" % (what, reply, rounds))
    check(reply["final_pages"] <= rounds[-1]["dirty_pages"] + reply["precopy_pages"],
          "%s: %r" % (what, reply))
    check(reply.get("converged"), "%s: no reason the rounds stopped: %r" % (what, reply))
    handed_over(src, dst, reply, what)


def uffds(vm):
    """userfaultfds the khyve process holds (dirty tracking holds one while it runs)."""
    n = 0
    for fd in os.listdir("/proc/%d/fd" % vm.p.pid):
        try:
            n += "userfaultfd" in os.readlink("/proc/%d/fd/%s" % (vm.p.pid, fd))
        except OSError:
            pass
    return n


@test
def migrate_live_counter(wd):
    """Live: 2 vCPUs rewrite 64 MiB while pre-copy rounds run; the destination's seq goes on
    with no gap or repeat, its memory check passes, the source exits 0."""
    src = VM(wd, name="src", cpus=2, mem="256M", cmdline="mode=counter mem=64M rate=50")
    src.wait_for(rb"region written once", timeout=180)
    src.wait_seq(10, timeout=120)
    dst, port = dest(wd, "dst")
    rc, rounds, reply = migrate_live(src, port, "--max-downtime=50")
    print("  rounds: %r\n  reply: %r" % (rounds, reply))
    live_handed_over(src, dst, rc, rounds, reply, "live counter guest")
    check(rounds[0]["pages"] >= (64 << 20) // 4096, "round 1 sent %r" % rounds[0])
    n = len(dst.seqs())
    dst.wait_seq(n + 100, timeout=120)  # 2 s: the workers verify more than one pass meanwhile
    check(b"TESTGUEST FAIL" not in dst.out, "guest check failed after migration:\n" + dst.tail())
    dst.kill()


def stats(vm):
    rc, st = vm.ctl("--get-stats")
    return st


def human_stats(vm):
    r = subprocess.run([KHYVECTL, "--socket=" + vm.sock, "--get-stats"], capture_output=True,
                       timeout=60)
    return r.stdout.decode()


def live_popen(vm, port, *args):
    """khyvectl --migrate --live, its lines read as they come."""
    return subprocess.Popen([KHYVECTL, "--socket=" + vm.sock, "--json", "--live",
                             "--migrate=127.0.0.1:%d" % port] + list(args),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def next_line(cl, what):
    line = cl.stdout.readline()
    if not line:
        raise Fail("%s: khyvectl ended early: %r" % (what, cl.stderr.read()))
    return json.loads(line)


class SlowLink:
    """A TCP relay on loopback that carries the source's stream to @port at @rate bytes per
    second (the answers come back at once): a link slower than the guest dirties memory."""

    def __init__(self, port, rate):
        self.port_to, self.rate, self.socks = port, rate, []
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(1)
        self.port = self.ls.getsockname()[1]
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        try:
            a, _ = self.ls.accept()
            b = socket.create_connection(("127.0.0.1", self.port_to))
        except OSError:
            return
        self.socks = [a, b]
        threading.Thread(target=self.pipe, args=(b, a, 0), daemon=True).start()
        self.pipe(a, b, self.rate)

    def pipe(self, frm, to, rate):
        t = time.monotonic()
        try:
            while True:
                d = frm.recv(65536)
                if not d:
                    break
                to.sendall(d)
                if rate:
                    t += len(d) / rate
                    time.sleep(max(0, t - time.monotonic()))
            to.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self):
        for s in self.socks + [self.ls]:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


SLOW = 8 << 20  # bytes per second: a 16 MiB hot set takes 2 s a round


def live_lines(cl):
    out, err = cl.communicate(timeout=300)
    lines = [json.loads(l) for l in out.decode().splitlines() if l.strip()]
    check(lines, "no reply: %r %r" % (out, err))
    return [l["progress"] for l in lines[:-1]], lines[-1]


@test
def migrate_live_throttled(wd):
    """Auto-converge: over a link slower than the guest dirties its 16 MiB, round 2 leaves
    dirty again most of what it sent, so the vCPUs are throttled for the next rounds; they still
    run (seq goes on, with no gap or repeat, on the destination), the memory check passes
    there, and the reply and the progress lines show the throttle.  With --auto-converge=off
    the same link throttles nothing."""
    for off in (False, True):
        what = "counter guest over a slow link" + (", no auto-converge" if off else "")
        src = VM(wd, name="src%d" % off, cpus=2, mem="256M",
                 cmdline="mode=counter mem=16M rate=50")
        src.wait_for(rb"region written once", timeout=180)
        src.wait_seq(10, timeout=120)
        dst, port = dest(wd, "dst%d" % off)
        link = SlowLink(port, SLOW)
        cl = live_popen(src, link.port, *(["--auto-converge=off"] if off else []))
        rounds, reply = live_lines(cl)
        link.close()
        print("  rounds: %r\n  reply: %r" % (rounds, reply))
        check(len(rounds) >= 2 and rounds[1]["dirty_pages"] * 2 > rounds[1]["pages"],
              "%s: round 2 did not leave more than half its pages dirty: %r" % (what, rounds))
        top = max(r["throttle_pct"] for r in rounds)
        check(reply.get("throttle_pct") == top, "%s: reply %r, rounds %r" % (what, reply, rounds))
        if off:
            check(top == 0, "%s: throttled: %r" % (what, rounds))
        else:
            check(top >= 20 and rounds[2]["throttle_pct"] == 20,
                  "%s: round 3 not throttled at 20%%: %r" % (what, rounds))
        live_handed_over(src, dst, cl.returncode, rounds, reply, what)
        n = len(dst.seqs())
        dst.wait_seq(n + 100, timeout=120)
        check(b"TESTGUEST FAIL" not in dst.out, "%s: guest check failed:\n%s" % (what, dst.tail()))
        st = stats(dst)
        check(st["throttle_pct"] == 0 and not any(v["throttled"] for v in st["vcpus"]),
              "%s: the destination runs throttled: %r" % (what, st))
        dst.kill()


@test
def migrate_live_throttled_destination_killed(wd):
    """The destination dies while auto-converge throttles the vCPUs (round 3 over a slow
    link): the migration fails, the throttle is gone (get-stats: 0%, no vCPU asleep for it, no
    sleep after), and the source counts on."""
    src = VM(wd, name="src", cpus=2, mem="256M", cmdline="mode=counter mem=16M rate=50")
    src.wait_for(rb"region written once", timeout=180)
    st = stats(src)
    check(st["throttle_pct"] == 0 and all(v["throttle_sleeps"] == 0 for v in st["vcpus"]),
          "throttled before any migration: %r" % st)
    dst, port = dest(wd, "dst")
    link = SlowLink(port, SLOW)
    cl = live_popen(src, link.port)
    next_line(cl, "round 1")
    r2 = next_line(cl, "round 2")["progress"]
    check(r2["dirty_pages"] * 2 > r2["pages"], "round 2 shrank the dirty set: %r" % r2)
    # Round 3 (16 MiB again, 2 s over the link) is under way, throttled.
    during = stats(src)
    check(during["throttle_pct"] == 20, "not throttled at 20%% in round 3: %r" % during)
    n = len(src.seqs())
    src.wait_seq(n + 25, timeout=120)  # a throttled guest still counts
    during = stats(src)
    check(sum(v["throttle_sleeps"] for v in during["vcpus"]) > 0, "no sleep: %r" % during)
    human = human_stats(src)
    check("vCPUs throttled 20%" in human and "for auto-converge" in human,
          "khyvectl --get-stats while throttled:\n" + human)
    check(cl.poll() is None, "the migration ended in round 3")
    dst.p.kill()
    link.close()
    rounds, reply = live_lines(cl)
    check(cl.returncode != 0 and not reply.get("ok"),
          "live migration to a killed destination succeeded: %r" % reply)
    after = stats(src)
    check(after["throttle_pct"] == 0 and not any(v["throttled"] for v in after["vcpus"]),
          "the failed migration left the vCPUs throttled: %r" % after)
    human = human_stats(src)
    check("vCPUs throttled" not in human and "throttled now" not in human
          and "for auto-converge" in human, "khyvectl --get-stats after:\n" + human)
    still_running(src, "source after its destination died while throttled")
    later = stats(src)
    check([v["throttle_sleeps"] for v in later["vcpus"]]
          == [v["throttle_sleeps"] for v in after["vcpus"]],
          "throttle sleeps after the migration failed: %r then %r" % (after, later))


@test
def migrate_live_restored_vm(wd):
    """A VM restored from a snapshot (its RAM a private mapping of the file, which a live
    checkpoint cannot write-protect) migrates live: pre-copy tracks it with KVM's dirty log,
    pages still only in the file travel too, and the guest's memory check passes there."""
    orig = VM(wd, name="orig", cpus=2, mem="256M", cmdline="mode=counter mem=32M rate=50")
    orig.wait_for(rb"region written once", timeout=180)
    orig.wait_seq(5, timeout=120)
    snap = wd("orig.snap")
    orig.ctl("--checkpoint=" + snap)
    orig.kill()
    src = VM(wd, name="src", restore=snap)
    src.wait_seq(10, timeout=120)
    # (A live checkpoint of it pre-copies with the same dirty log, then it migrates.)
    rc, reply = src.ctl("--checkpoint=" + wd("live.snap"), "--live")
    check(reply.get("live") is True and reply.get("method") == "dirty-log",
          "a live checkpoint of a restored VM: reply %r" % reply)
    dst, port = dest(wd, "dst")
    rc, rounds, reply = migrate_live(src, port)
    print("  reply: %r" % reply)
    live_handed_over(src, dst, rc, rounds, reply, "restored counter guest")
    n = len(dst.seqs())
    dst.wait_seq(n + 100, timeout=120)  # 2 s: more than one verified pass over the region
    check(b"TESTGUEST FAIL" not in dst.out, "guest check failed after migration:\n" + dst.tail())
    dst.kill()


@test
def migrate_live_blk(wd):
    """Live with virtio-blk on shared storage: requests in flight during the rounds and the
    pause; the guest's disk checks pass on the destination."""
    img = wd("disk.img")
    with open(img, "wb") as f:
        f.truncate(8 << 20)
    src = VM(wd, name="src", cpus=2, cmdline="mode=blk rering=0 rate=50",
             extra=["-s", "3,virtio-blk," + img])
    src.wait_seq(15, timeout=120)
    dst, port = dest(wd, "dst")
    rc, rounds, reply = migrate_live(src, port)
    print("  reply: %r" % reply)
    live_handed_over(src, dst, rc, rounds, reply, "live blk guest")
    n = len(dst.seqs())
    dst.wait_seq(n + 15, timeout=60)
    check(b"TESTGUEST FAIL" not in dst.out, "blk guest failed after migration:\n" + dst.tail())
    dst.kill()


@test
def migrate_live_destination_killed(wd):
    """The destination stops reading in the first pre-copy round and is killed: the source
    says the connection went, its guest never paused and counts on, the dirty tracking the
    migration started is released, and a second live migration then succeeds."""
    src = VM(wd, name="src", cpus=2, mem="256M", cmdline="mode=counter mem=96M rate=50")
    src.wait_for(rb"region written once", timeout=180)
    check(uffds(src) == 0, "dirty tracking before any migration")
    dst, port = dest(wd, "dst")
    os.kill(dst.p.pid, signal.SIGSTOP)
    cl = subprocess.Popen([KHYVECTL, "--socket=" + src.sock, "--json", "--live",
                           "--migrate=127.0.0.1:%d" % port], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE)
    n = len(src.seqs())
    src.wait_seq(n + 25, timeout=60)  # counting on, mid pre-copy (half a second at least)
    check(cl.poll() is None, "the migration ended while the destination was stopped")
    check(uffds(src) == 1, "no dirty tracking during the pre-copy rounds")
    dst.p.kill()
    out, err = cl.communicate(timeout=60)
    check(cl.returncode != 0, "live migration to a killed destination succeeded: %r" % out)
    check(b"closed" in out or b"reset" in out or b"pipe" in out.lower(),
          "the error does not say the connection went: %r" % out)
    still_running(src, "source after its destination died mid pre-copy")
    check(uffds(src) == 0, "the failed migration left dirty tracking on")
    dst2, port = dest(wd, "dst2")
    rc, rounds, reply = migrate_live(src, port)
    live_handed_over(src, dst2, rc, rounds, reply, "live migration after a failed one")
    dst2.kill()


@test
def migrate_live_refused_config(wd):
    """Live to a destination whose command line does not match: the rounds run, the refusal
    comes at the final pause (the restore's checks), the guest resumes on the source with its
    dirty tracking released, and the error gives the destination's reason."""
    src = VM(wd, name="src", cmdline="mode=counter mem=16M rate=50")
    src.wait_seq(5, timeout=120)
    bad, port = dest(wd, "bad", ["-c", "2"])
    rc, rounds, reply = migrate_live(src, port)
    check(rc != 0 and not reply.get("ok"), "live migration to a mismatched khyve: %r" % reply)
    check("cpus=2 does not match" in reply.get("error", ""), "error: %r" % reply)
    check(len(rounds) >= 1, "no pre-copy round before the refusal: %r" % rounds)
    check(bad.wait_exit(30) != 0, "the refusing destination exited 0")
    still_running(src, "source after a refused live migration")
    check(uffds(src) == 0, "the refused migration left dirty tracking on")
