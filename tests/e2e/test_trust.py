"""Trust: a crafted snapshot (configuration rewritten, checksums recomputed) cannot make khyve
open, create or delete a host path that the restore command line did not name."""

import json
import os
import struct
import subprocess

from khyve_e2e import KHYVE, KHYVECTL, VM, check, khyve_run, restored_seqs, test
from snapcraft import Snap, rewrite_config


def disk(wd, name, size=4 << 20, fill=b""):
    path = wd(name)
    with open(path, "wb") as f:
        f.write(fill)
        f.truncate(size)
    return path


def info(path, key):
    r = subprocess.run([KHYVECTL, "snapshot", "info", "--json", "--key=" + key, path],
                       capture_output=True)
    check(r.returncode == 0, "snapshot info %s: %s" % (path, r.stderr.decode()))
    return json.loads(r.stdout)


def content(path):
    with open(path, "rb") as f:
        return f.read()


@test
def crafted_snapshot_names_no_host_path(wd):
    key = wd("snapshot.key")
    img = disk(wd, "disk.img")
    vm = VM(wd, mem="64M", extra=["-s", "3,virtio-blk," + img, "-o", "snapshot.key=" + key])
    vm.wait_seq(3, timeout=120)
    good = wd("good.snap")
    vm.ctl("--checkpoint=" + good)
    vm.kill()
    i = info(good, key)
    check(i["authentication"]["status"] == "valid", "own snapshot: %r" % i["authentication"])
    check("restore_needs" not in i, "an authenticated file needs nothing: %r" % i)
    keys = {r["key"] for r in i["host_resources"]}
    check({"pci.0.3.0.path", "lpc.com1.path", "name"} <= keys, "host resources %r" % keys)

    victim_log, victim_ctl = wd("victim.log"), wd("victim-ctl.sock")
    victim_img = disk(wd, "victim.img", fill=b"precious" * 512)
    before = content(victim_img)
    crafted = wd("crafted.snap")
    rewrite_config(good, crafted, {
        "lpc.com1.path": "file:" + victim_log,
        "pci.0.3.0.path": victim_img,
        "ctl.socket": victim_ctl,
        "snapshot.trust": "file",   # a file cannot vouch for itself
        "sandbox": "off",
    })
    v = subprocess.run([KHYVECTL, "snapshot", "verify", crafted], capture_output=True)
    check(v.returncode == 0, "the crafted file's checksums must all be right: %s" % v.stderr)
    i = info(crafted, key)
    check(i["authentication"]["status"] == "invalid", "crafted: %r" % i["authentication"])
    want = "-s 3,virtio-blk,PATH -l com1,file:PATH VMNAME"
    check(i.get("restore_needs") == want, "restore_needs %r, want %r" % (i.get("restore_needs"),
                                                                         want))

    # Without the command line naming them, the restore stops before opening anything.
    r = khyve_run(["-r", crafted, "-o", "snapshot.key=" + key, "-o", "ctl.socket=off",
                   "vmx"], timeout=60)
    err = r.stderr.decode()
    check(r.returncode == 4, "restore of the crafted file: exit %d (%s)" % (r.returncode, err))
    check("not authenticated" in err and "-s 3,virtio-blk,PATH -l com1,file:PATH" in err,
          "the refusal must name the options to add: %r" % err)
    check(b"seq" not in r.stdout, "a refused restore must not run the guest")

    # Named on the command line, the restore runs with the command line's resources only.  No
    # ctl.socket is given, so the file's would be used if it were trusted.
    name = "trust%d" % os.getpid()
    r = VM(wd, args=[KHYVE, "-r", crafted, "-o", "snapshot.key=" + key,
                     "-s", "3,virtio-blk," + img, "-l", "com1,stdio", name])
    r.wait_seq(3, timeout=120)
    check(restored_seqs(r.out)[1], "the restored guest runs")
    r.kill()
    for p in (victim_log, victim_ctl):
        check(not os.path.lexists(p), "%s was created from the crafted file" % p)
    check(content(victim_img) == before, "the crafted file's disk was written")

    # Another user's or host's key: the genuine file is not authenticated either.
    other = wd("other.key")
    with open(other, "wb") as f:
        f.write(os.urandom(32))
    os.chmod(other, 0o600)
    r = khyve_run(["-r", good, "-o", "snapshot.key=" + other, "-o", "ctl.socket=off", "vmx"])
    check(r.returncode == 4 and b"does not match the snapshot key" in r.stderr,
          "a file from another key: %r" % r.stderr)

    # The user may vouch for a file: then its resources are used (this is what the checks
    # above keep from happening without it).  victim.img is not the disk the snapshot was
    # taken with, which the restore refuses unless told otherwise.
    r = VM(wd, restore=crafted, name="vouched",
           extra=["-o", "snapshot.trust=file", "-o", "snapshot.key=" + key,
                  "-o", "snapshot.disk_changed=accept"])
    end_ok = False
    for _ in range(300):
        if os.path.exists(victim_log) and b"seq" in content(victim_log):
            end_ok = True
            break
        r.check_alive()
        r.pump(0.2)
    r.kill()
    check(end_ok, "with snapshot.trust=file the file's console log is used")


@test
def crafted_old_snapshot_chooses_no_deletion(wd):
    """A checkpoint over an existing file deletes the disk copies that file used, only if this
    host's khyve wrote it: a file someone else put at the path cannot choose what is deleted."""
    key = wd("snapshot.key")
    img = disk(wd, "disk.img")
    vm = VM(wd, mem="64M", extra=["-s", "3,virtio-blk," + img, "-o", "snapshot.key=" + key,
                                  "-o", "snapshot.disks=clone"])
    vm.wait_seq(3, timeout=120)
    snap = wd("c.snap")
    vm.ctl("--checkpoint=" + snap)
    clones = [f for f in os.listdir(wd.path) if f.startswith("c.snap.") and f.endswith(".img")]
    check(len(clones) == 1, "one disk copy: %r" % clones)
    # The old file's copy goes when a new checkpoint replaces it (the file is ours).
    vm.ctl("--checkpoint=" + snap)
    now = [f for f in os.listdir(wd.path) if f.startswith("c.snap.") and f.endswith(".img")]
    check(len(now) == 1 and now != clones, "the replaced copy is deleted: %r" % now)
    # Someone rewrites the file at the path to name a victim that looks like a copy.
    victim = disk(wd, "c.snap.victim.img", fill=b"precious")
    rewrite_config(snap, snap, {"pci.0.3.0.path": victim})
    vm.ctl("--checkpoint=" + snap)
    check(os.path.exists(victim), "a crafted old snapshot made khyve delete %s" % victim)
    vm.kill()


@test
def crafted_files_refused(wd):
    """The mutation campaign's survivors, each refused with a clear message (every checksum
    recomputed, so only the new checks can catch them)."""
    key = wd("snapshot.key")
    vm = VM(wd, cpus=2, mem="64M", extra=["-o", "snapshot.key=" + key])
    vm.wait_seq(3, timeout=120)
    good = wd("good.snap")
    vm.ctl("--checkpoint=" + good)
    vm.kill()
    cases = []

    for sid in ("hpet", "pci", "pci@0.0.0"):
        s = Snap(good)
        s.find(sid)[1] = 0
        p = wd("v0-%s.snap" % sid)
        s.store(p)
        cases.append((p, "section dev %s has version 0" % sid))
    for what, change in (("vcpus", lambda m: m.update(vcpus=3)),
                         ("memory", lambda m: m.update(memory=m["memory"] * 2)),
                         ("devices", lambda m: m["devices"].pop())):
        s = Snap(good)
        meta = s.meta()
        change(meta)
        s.set_meta(meta)
        p = wd("meta-%s.snap" % what)
        s.store(p)
        cases.append((p, "metadata: %s" % what if what != "vcpus" else "vcpus does not match"))
    # A byte in a hole of the memory area, well away from any extent.
    p = wd("hole.snap")
    s = Snap(good)
    s.store(p)
    listed = s.extents()
    hole = next(off for off in range(s.moff, s.moff + s.msize, 4096)
                if not any(e <= off < e + n for e, n in listed))
    with open(p, "r+b") as f:
        f.seek(hole + 5)
        f.write(b"\x01")
    cases.append((p, "holds data the memory map does not list"))
    p = wd("appended.snap")
    Snap(good).store(p)
    with open(p, "ab") as f:
        f.write(b"tail")
    cases.append((p, "4 bytes after the section table"))
    p = wd("padding.snap")
    s = Snap(good)
    s.page[3000] = 1
    s.store(p)
    cases.append((p, "byte 3000 of the header page is not zero"))

    for p, needle in cases:
        r = khyve_run(["-r", p, "-o", "snapshot.key=" + key, "-o", "ctl.socket=off", "vmx"],
                      timeout=60)
        err = r.stderr.decode()
        check(r.returncode == 4 and needle in err,
              "%s: exit %d, stderr %r (want %r)" % (os.path.basename(p), r.returncode, err,
                                                     needle))
        check(b"seq" not in r.stdout, "%s ran the guest" % p)
    # The untouched file restores, so the cases above fail only for what was changed.
    r = VM(wd, restore=good, name="ok", extra=["-o", "snapshot.key=" + key])
    r.wait_seq(3, timeout=120)
    r.kill()


@test
def crafted_device_state_names_the_device_once(wd):
    """A refused device section is named once, by the restore, and the device layers add only
    what they know (issue 12: "device pci@0.3.0: pci@0.3.0 (virtio-blk): ..." before)."""
    key = wd("snapshot.key")
    vm = VM(wd, mem="64M", extra=["-s", "4,virtio-rnd", "-o", "snapshot.key=" + key])
    vm.wait_seq(3, timeout=120)
    good = wd("good.snap")
    vm.ctl("--checkpoint=" + good)
    vm.kill()

    def pci_section_offsets(data):
        """Offsets of BAR 0 and, for a virtio function, of its device status byte (the layout
        of doc/snapshot-format.md: config space size, config space, INTx, MSI-X vectors,
        table, pending bits, the emulation's version, then the virtio transport)."""
        nvec = struct.unpack_from("<I", data, 4 + 256 + 1)[0]
        virtio = 4 + 256 + 1 + 4 + 16 * nvec + 8 * ((nvec + 63) // 64) + 4
        return 4 + 0x10, virtio + 8 + 4 + 4 + 2 + 2

    cases = []
    s = Snap(good)
    sec = s.find("pci@0.0.0")
    bar0, _ = pci_section_offsets(sec[3])
    data = bytearray(sec[3])
    struct.pack_into("<I", data, bar0 + 5 * 4, 0x1000)   # the host bridge has no BAR 5
    sec[3] = bytes(data)
    p = wd("bar.snap")
    s.store(p)
    cases.append((p, "pci@0.0.0", "BAR 5 holds 0x00001000"))
    s = Snap(good)
    sec = s.find("pci@0.4.0")
    _, status = pci_section_offsets(sec[3])
    data = bytearray(sec[3])
    data[status] = 0xff
    sec[3] = bytes(data)
    p = wd("status.snap")
    s.store(p)
    cases.append((p, "pci@0.4.0", "virtio-rnd: device status 0xff is not a reachable state"))

    for p, dev, needle in cases:
        r = khyve_run(["-r", p, "-o", "snapshot.key=" + key, "-o", "ctl.socket=off",
                       "-l", "com1,stdio", "vmx"], timeout=60)
        err = r.stderr.decode()
        check(r.returncode == 4 and ("device %s: %s" % (dev, needle)) in err,
              "%s: exit %d, stderr %r (want %r)" % (os.path.basename(p), r.returncode, err,
                                                     needle))
        check(err.count(dev) == 1, "%s named %d times: %r" % (dev, err.count(dev), err))


@test
def gdb_stub_never_from_a_snapshot(wd):
    """A gdb stub is a listening socket that can read and write the guest: a snapshot of a VM
    run with -G does not open one at restore, however much the file is trusted, nor does a
    crafted file naming gdb.port/gdb.address/gdb.wait; -G on the restore's command line does."""
    key = wd("snapshot.key")
    vm = VM(wd, mem="64M", extra=["-G", "0", "-o", "snapshot.key=" + key])
    vm.wait_seq(3, timeout=120)
    good = wd("good.snap")
    vm.ctl("--checkpoint=" + good)
    vm.kill()
    crafted = wd("crafted.snap")
    rewrite_config(good, crafted, {"gdb.port": "0", "gdb.address": "0.0.0.0",
                                   "gdb.wait": "true"})
    for snap in (good, crafted):
        extra = ["-o", "snapshot.trust=file"]
        r = VM(wd, restore=snap, name="r" + os.path.basename(snap)[0],
               extra=["-o", "snapshot.key=" + key] + extra)
        r.wait_seq(len(r.seqs()) + 3, timeout=120)  # it runs: nothing waits for a debugger
        r.pump(0.5)
        check(b"gdb:" not in r.err, "%s: a gdb stub at restore: %r"
              % (os.path.basename(snap), r.err))
        _, st = r.ctl("--status")
        check("gdb" not in st, "%s: status %r" % (os.path.basename(snap), st))
        r.kill()
    r = VM(wd, restore=good, name="rg", extra=["-o", "snapshot.key=" + key, "-G", "0"])
    r.wait_seq(len(r.seqs()) + 3, timeout=120)
    _, st = r.ctl("--status")
    check(st.get("gdb", {}).get("address", "").startswith("127.0.0.1:"),
          "-G on the restore's command line: status %r" % st)
    r.kill()
