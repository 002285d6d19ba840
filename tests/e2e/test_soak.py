"""Soak: checkpoint, suspend+restore and restore of an older checkpoint, in random order at
random moments, on the counter and blk modes with two vCPUs.  The live lineage's seq numbers
never break, the guest never reports a failure, nothing hangs.

SOAK_CYCLES (default 50, split between the two modes) sets the number of cycles and
SOAK_SEED the random seed (printed, to reproduce a run); `make soak CYCLES=1000` runs a long
one.  Every wait is bounded, and so is the whole run (SOAK_CYCLES x 30 s)."""

import glob
import os
import random
import time

from khyve_e2e import VM, Fail, check, seq_numbers, test

CYCLE_LIMIT_S = 30


class Lineage:
    """The VM that is running now and what its predecessors printed, for the checks."""

    def __init__(self, wd, mode, rng, log):
        self.wd, self.mode, self.rng, self.log = wd, mode, rng, log
        self.n = 0
        self.checkpoints = []   # (path, last seq seen before, the VM), not yet restored
        self.extra = []
        if mode == "blk":
            img = wd("disk.img")
            with open(img, "wb") as f:
                f.truncate(8 << 20)
            self.extra = ["-s", "3,virtio-blk," + img, "-o", "snapshot.disks=clone"]
        cmdline = ("mode=blk rering=0" if mode == "blk" else "mode=counter") + " rate=10"
        self.vm = VM(wd, name=self.name(), cpus=2, cmdline=cmdline, extra=self.extra)
        self.origin = None      # the snapshot the current VM was restored from (its disk)
        self.vm.wait_seq(3, timeout=120)

    def name(self):
        self.n += 1
        return "%s%d" % (self.mode, self.n)

    def check_running(self, what):
        vm = self.vm
        check(b"TESTGUEST FAIL" not in vm.out, "%s: the guest failed:\n%s" % (what, vm.tail()))
        s = seq_numbers(vm.out)
        for a, b in zip(s, s[1:]):
            check(b == a + 1, "%s: seq %d followed by %d" % (what, a, b))
        return s

    def settle(self, what, n=2):
        # (VM.ctl read what the guest printed while khyvectl waited: it came before.)
        have = len(seq_numbers(self.vm.out))
        end = time.time() + 60
        while len(seq_numbers(self.vm.out)) < have + n:
            check(time.time() < end, "%s: no seq line for 60 s (hang?):\n%s"
                  % (what, self.vm.tail()))
            self.vm.check_alive()
            self.vm.pump(0.1)
        self.check_running(what)

    def delay(self):
        self.vm.pump(self.rng.uniform(0, 0.7))

    def checkpoint(self, i):
        self.delay()
        path = self.wd("%s-ck%d.snap" % (self.mode, i))
        before = self.check_running("before checkpoint %d" % i)
        self.vm.ctl("--checkpoint=" + path)
        # Enough lines that the one in progress at the pause is complete on our side too.
        self.settle("after checkpoint %d" % i, 5)
        self.checkpoints.append((path, before[-1] if before else 0, self.vm))

    def suspend_restore(self, i):
        self.delay()
        path = self.wd("%s-s%d.snap" % (self.mode, i))
        self.vm.ctl("--suspend=" + path)
        check(self.vm.wait_exit(60) == 0, "suspend %d must end khyve with 0" % i)
        old = self.vm
        joined = old.out
        self.vm = VM(self.wd, name=self.name(), restore=path)
        self.origin = os.path.basename(path)
        self.settle("restore of suspend %d" % i, 3)
        # The two consoles together are one unbroken sequence.
        s = seq_numbers(joined + self.vm.out)
        for a, b in zip(s, s[1:]):
            check(b == a + 1, "suspend+restore %d: seq %d followed by %d" % (i, a, b))
        self.vm.out = joined + self.vm.out
        old.kill()

    def restore_older(self, i):
        if not self.checkpoints:
            return self.checkpoint(i)
        path, before, orig = self.checkpoints.pop(self.rng.randrange(len(self.checkpoints)))
        self.delay()
        self.check_running("before restoring %s" % os.path.basename(path))
        self.vm.kill()
        self.vm = VM(self.wd, name=self.name(), restore=path)
        self.origin = os.path.basename(path)
        self.settle("restore of %s" % os.path.basename(path), 3)
        # It goes on from the line after one its original printed, no sooner than the last one
        # seen before the checkpoint.
        s = seq_numbers(self.vm.out)
        printed = set(seq_numbers(orig.out))
        check(s[0] - 1 >= before and s[0] - 1 in printed,
              "restore of %s: starts at seq %d; before the checkpoint the original had "
              "printed up to %d, and %s seq %d" % (os.path.basename(path), s[0], before,
                                                   "it printed" if s[0] - 1 in printed
                                                   else "it never printed", s[0] - 1))

    def cycle(self, i):
        action = self.rng.choice((self.checkpoint, self.suspend_restore, self.restore_older))
        t0 = time.time()
        action(i)
        self.log.append("%s %d %s %.1fs" % (self.mode, i, action.__name__, time.time() - t0))
        check(time.time() - t0 < CYCLE_LIMIT_S, "cycle %d (%s) took %.0f s" %
              (i, action.__name__, time.time() - t0))

    def prune(self):
        """A long run's snapshots would fill the disk: keep the newest few, the checkpoints
        still to restore and the one the running VM came from (it runs on its disk copy)."""
        snaps = sorted((p for p in os.listdir(self.wd.path) if p.endswith(".snap")),
                       key=lambda p: os.path.getmtime(self.wd(p)))
        keep = {os.path.basename(c[0]) for c in self.checkpoints[-8:]} | {self.origin}
        for p in snaps[:-16]:
            if p in keep:
                continue
            for f in [self.wd(p)] + glob.glob(glob.escape(self.wd(p)) + ".*.img"):
                os.unlink(f)
        self.checkpoints = [c for c in self.checkpoints if os.path.exists(c[0])]

    def close(self):
        self.check_running("at the end")
        self.vm.kill()


@test
def soak(wd):
    cycles = int(os.environ.get("SOAK_CYCLES", "50"))
    seed = int(os.environ.get("SOAK_SEED", str(random.randrange(1 << 30))))
    print("  soak: %d cycles, SOAK_SEED=%d" % (cycles, seed), flush=True)
    rng = random.Random(seed)
    deadline = time.time() + cycles * CYCLE_LIMIT_S
    log = []
    done = 0
    try:
        for mode, n in (("counter", cycles // 2), ("blk", cycles - cycles // 2)):
            lin = Lineage(wd, mode, rng, log)
            for i in range(n):
                check(time.time() < deadline, "the soak ran out of time")
                lin.cycle(i)
                done += 1
                if done % 50 == 0:
                    print("  soak: %d cycles done" % done, flush=True)
                lin.prune()
            lin.close()
    except Fail as e:
        raise Fail("%s\n(SOAK_SEED=%d, after %d cycles: %s)" % (e, seed, done,
                                                               "; ".join(log[-5:])))
    counts = {}
    for l in log:
        a = l.split()[2]
        counts[a] = counts.get(a, 0) + 1
    print("  soak: %d cycles, %r" % (done, counts), flush=True)
