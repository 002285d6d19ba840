"""AHCI: disks and CD-ROMs across snapshots, bad options."""

import struct

from khyve_e2e import GUEST, VM, check, khyve_run, test
from test_virtio import cycles, disk, no_fail, refused

M64 = (1 << 64) - 1


def cd_word(w):
    """Word @w of the CD image: tests/guest/ahci.c's cd_word."""
    if w % 256 == 0:
        return 0xCD << 56 | w // 256
    x = ((w + 1) * 0x9E3779B97F4A7C15) & M64
    return x ^ (x >> 29)


def cd_image(wd, name="cd.iso", size=2 << 20):
    path = wd(name)
    n = size // 8
    with open(path, "wb") as f:
        f.write(struct.pack("<%dQ" % n, *[cd_word(w) for w in range(n)]))
    return path


def ahci_devices(wd):
    """Two disks (one through ahci-hd) and a CD: every kind of port the guest drives."""
    return ["4,ahci,hd:%s,cd:%s" % (disk(wd), cd_image(wd)),
            "5,ahci-hd,%s,nmrr=7200" % disk(wd, "d2.img", 4 << 20)]


@test
def ahci_snapshots_1cpu(wd):
    cycles(wd, "mode=ahci blkdepth=8", ahci_devices(wd), 1, 2,
           extra=["-o", "snapshot.disks=clone"])


@test
def ahci_snapshots_4cpus(wd):
    cycles(wd, "mode=ahci blkdepth=16", ahci_devices(wd), 4, 2,
           extra=["-o", "snapshot.disks=clone"])


@test
def ahci_guest_sees_every_drive(wd):
    """The guest finds both disks with NCQ and the CD, and reads the CD's known content."""
    vm = VM(wd, cpus=2, cmdline="mode=ahci", extra=sum((["-s", d] for d in ahci_devices(wd)), []))
    vm.wait_seq(6, timeout=120)
    vm.wait_for(rb"ahci: cd port 1: [1-9][0-9]* reads", timeout=60)
    no_fail(vm, "mode=ahci")
    out = vm.out.decode(errors="replace")
    check(out.count("disk \"KHYVE HARDDISK\"") == 2 and "NCQ" in out, out)
    check("cd \"KHYVE DVD-ROM\", 1024 2048-byte sectors" in out, out)
    vm.kill()


@test
def bad_ahci_options(wd):
    base = ["-s", "0,hostbridge", "-s", "31,lpc", "-l", "com1,off", "-o", "ctl.socket=off",
            "-o", "boot.kernel=" + GUEST]
    img = disk(wd)
    refused(base + ["-s", "4,ahci", "vm"], "no drives")
    refused(base + ["-s", "4,ahci,hd:", "vm"], "needs a path")
    refused(base + ["-s", "4,ahci,hd:" + wd("nope.img"), "vm"], "nope.img")
    refused(base + ["-s", "4,ahci,hd:%s,nmr=1" % img, "vm"], "port.0.nmr")
    refused(base + ["-s", "4,ahci,hd:%s,cd:%s,ro=off" % (img, img), "vm"], "read-only")
    refused(base + ["-s", "4,ahci-hd,%s,nmrr=99" % img, "vm"], "nmrr=99")
    refused(base + ["-s", "4,ahci-hd,%s,sectorsize=100" % img, "vm"], "sectorsize")
    refused(base + ["-s", "4,ahci-hd", "vm"], "path")
    many = ",".join("hd:" + img for _ in range(33))
    refused(base + ["-s", "4,ahci," + many, "vm"], "32 ports")


@test
def ahci_selftest(wd):
    """A guest boots beside an HBA with a disk and a CD (the HBA must not disturb anything)."""
    img = disk(wd)
    cd = disk(wd, "cd.iso", 2 << 20)
    r = khyve_run(["-s", "0,hostbridge", "-s", "31,lpc", "-s", "4,ahci,hd:%s,cd:%s" % (img, cd),
                   "-s", "5,ahci-cd," + cd, "-l", "com1,stdio", "-o", "ctl.socket=off",
                   "-o", "boot.kernel=" + GUEST, "-o", "boot.cmdline=mode=selftest", "vm"])
    check(r.returncode == 1 and b"TESTGUEST PASS" in r.stdout,
          "exit %d:\n%s" % (r.returncode, (r.stdout + r.stderr).decode(errors="replace")[-2000:]))
