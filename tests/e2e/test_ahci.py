"""AHCI: disks and CD-ROMs across snapshots, bad options."""

from khyve_e2e import GUEST, check, khyve_run, test
from test_virtio import disk, refused


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
