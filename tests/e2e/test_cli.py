"""The command line as a bhyve user meets it: typos refused with a suggestion, the help
listings, config.strict=false."""

import json
import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time

from khyve_e2e import GUEST, KHYVE, KHYVECTL, ROOT, VM, Fail, check, khyve_run, test

BASE = ["-s", "0,hostbridge", "-s", "31,lpc", "-l", "com1,off", "-o", "boot.kernel=" + GUEST]


def dump(*extra):
    """Parse and check a command line, print the configuration instead of running it."""
    return khyve_run(BASE + ["-o", "config.dump=true"] + list(extra) + ["vm"])


def refused_with(args, names, suggestion):
    r = dump(*args)
    err = r.stderr.decode()
    check(r.returncode == 4, "%r: exit %d, want 4 (stderr: %s)" % (args, r.returncode, err))
    check(names in err, "%r: the message does not name %r:\n%s" % (args, names, err))
    if suggestion:
        check("did you mean '%s'?" % suggestion in err,
              "%r: no suggestion of %r:\n%s" % (args, suggestion, err))
    check(err.count("\n") == 1, "%r: want one message, got:\n%s" % (args, err))
    check(r.stdout == b"", "%r: a refused command line printed a configuration" % (args,))


TYPOS = [
    (["-o", "boot.cmdlin=console=ttyS0"], "'boot.cmdlin'", "boot.cmdline"),
    (["-o", "snapshot.verfy=fast"], "'snapshot.verfy'", "snapshot.verify"),
    (["-o", "ctl.sokcet=/tmp/x.sock"], "'ctl.sokcet'", "ctl.socket"),
    (["-o", "Memory.Size=1G"], "'Memory.Size'", "memory.size"),
    (["-o", "lpc.com1.pth=stdio"], "'lpc.com1.pth'", "lpc.com1.path"),
    (["-s", "3,virtio-blk,disk.img,nocach"], "'nocach' for virtio-blk", "nocache"),
    (["-s", "3,virtio-blk,disk.img,sectorsise=4096"], "'sectorsise'", "sectorsize"),
    (["-s", "3,virtio-bkl,disk.img"], "virtio-bkl", "virtio-blk"),
    (["-s", "3,virtio-net,slirp,hostfwd=tcp::1-:2,mtv=9000"], "'mtv' for virtio-net", "mtu"),
    (["-s", "3,e1000,slirp,mca=02:00:00:00:00:01"], "'mca' for e1000", "mac"),
    (["-s", "4,ahci,hd:disk.img,nocahe,cd:x.iso"], "'port.0.nocahe' for ahci",
     "port.0.nocache"),
    (["-s", "4,ahci,hd:disk.img,cd:x.iso,serail=a"], "'port.1.serail'", "port.1.serial"),
    (["-s", "4,ahci-cd,x.iso,bootindx=1"], "'bootindx' for ahci-cd", "bootindex"),
    (["-s", "5,fbuf,tcp=off,wiat"], "'wiat' for fbuf", "wait"),
    (["-s", "3,virtio-rnd", "-o", "pci.0.3.0.devcie=virtio-rnd"], "'devcie'", "device"),
]


@test
def typos_refused_with_a_suggestion(wd):
    for args, names, suggestion in TYPOS:
        refused_with(args, names, suggestion)
    # Nothing close: the message lists what the device takes, or points at -o help.
    refused_with(["-s", "3,virtio-blk,disk.img,mac=02:00:00:00:00:01"],
                 "virtio-blk takes path, ro,", None)
    refused_with(["-s", "3,virtio-rnd,fast"], "virtio-rnd takes no options", None)
    refused_with(["-o", "frobnicate=1"], "khyve -o help", None)
    refused_with(["-o", "pci.0.9.0.path=disk.img"], "slot 0:9.0 has no device", None)
    refused_with(["-o", "pci.0.9.path=disk.img"], "pci.BUS.SLOT.FUNCTION.OPTION", None)
    refused_with(["-o", "config.strict=maybe"], "config.strict=maybe", None)


typos_refused_with_a_suggestion.needs_kvm = False


@test
def typos_in_a_config_file(wd):
    cfg = wd("vm.conf")
    with open(cfg, "w") as f:
        f.write("cpus=2\nboot.cmdlne=mode=counter\n")
    r = dump("-k", cfg)
    check(r.returncode == 4 and b"did you mean 'boot.cmdline'?" in r.stderr,
          "-k file typo: %d %s" % (r.returncode, r.stderr.decode()))


typos_in_a_config_file.needs_kvm = False


@test
def strict_false_warns(wd):
    r = dump("-o", "config.strict=false", "-o", "boot.cmdlin=x", "-s",
             "3,virtio-blk,disk.img,nocach")
    err = r.stderr.decode()
    check(r.returncode == 0, "config.strict=false still refused: %s" % err)
    check(err.count("warning:") == 2 and "did you mean 'boot.cmdline'?" in err
          and "did you mean 'nocache'?" in err, "want two warnings, got:\n" + err)
    # The configuration is used as given, unknown keys and all.
    out = r.stdout.decode().splitlines()
    check("boot.cmdlin=x" in out and "pci.0.3.0.nocach=true" in out, "dump: %s" % out)


strict_false_warns.needs_kvm = False


@test
def every_known_key_passes(wd):
    """Every key -o help lists is accepted, and the manual documents it."""
    r = khyve_run(["-o", "help"])
    check(r.returncode == 0, "-o help: %d" % r.returncode)
    keys = [l.split()[0] for l in r.stdout.decode().splitlines()[1:]
            if l.startswith("  ") and not l.split()[0].startswith("pci.")]
    check(len(keys) > 25 and "boot.cmdline" in keys and "lpc.com4.path" in keys,
          "-o help lists: %s" % keys)
    man = subprocess.run("groff -mandoc -Tutf8 -P-cbou %s" % os.path.join(ROOT, "man", "khyve.8"),
                         shell=True, capture_output=True).stdout.decode()
    check("config.strict" in man, "man/khyve.8 did not render")
    args = []
    for k in keys:
        # vcpu.#.cpuset: '#' is a number (khyve.8 writes vcpu.N.cpuset).
        args += ["-o", k.replace("#", "0") + "=1"]
        k = k.replace("#", "N")
        # lpc.com1.path .. lpc.com4.path are documented once, as lpc.comN.path.
        check(any(re.search(r"(?<![\w.])%s(?![\w.])" % re.escape(n), man)
                  for n in (k, re.sub(r"com\d", "comN", k))),
              "man/khyve.8 does not document " + k)
    r = khyve_run(["-o", "config.dump=true"] + args + ["vm"])
    check(r.returncode == 0, "known keys refused: %s" % r.stderr.decode())
    # Every option -s help lists for a device is accepted on that device.
    r = khyve_run(["-s", "help"])
    check(r.returncode == 0 and b"virtio-blk" in r.stdout, "-s help")
    for line in r.stdout.decode().splitlines()[1:]:
        emul, opts = line.split(None, 1)
        if opts.startswith("("):
            continue
        prefix = ""
        m = re.match(r"(\S+)\{(.*)\}$", opts)
        if m:
            prefix, opts = m.group(1).replace("N", "0"), m.group(2)
        keys = ["pci.0.3.0.device=" + emul]
        for o in opts.split(", "):
            # N stands for a number: a trailing one (hostfwdN) or a path part (slot.N.device).
            o = prefix + re.sub(r"N$|(?<=\.)N(?=\.)", "1", o)
            keys.append("pci.0.3.0.%s=1" % o)
        r2 = khyve_run(["-o", "config.dump=true"] + sum((["-o", k] for k in keys), []) + ["vm"])
        check(r2.returncode == 0, "%s: its own options refused: %s" % (emul, r2.stderr.decode()))


every_known_key_passes.needs_kvm = False


@test
def help_listings(wd):
    r = khyve_run(["-s", "help"])
    out = r.stdout.decode()
    check(r.returncode == 0, "-s help exit %d" % r.returncode)
    for emul in ("hostbridge", "lpc", "virtio-blk", "virtio-net", "virtio-rnd", "ahci",
                 "ahci-hd", "ahci-cd", "e1000", "fbuf"):
        check(re.search(r"^  %s\s" % re.escape(emul), out, re.M), "-s help lacks " + emul)
    r = khyve_run(["-l", "help"])
    out = r.stdout.decode()
    check(r.returncode == 0, "-l help exit %d" % r.returncode)
    for dev in ("com1", "com2", "com3", "com4", "bootrom"):
        check(re.search(r"^  %s\s" % dev, out, re.M), "-l help lacks " + dev)
    r = khyve_run(["-h"])
    check(b"-o help" in r.stdout, "khyve -h does not mention -o help")


help_listings.needs_kvm = False


@test
def restore_typo_refused(wd):
    """A typo on a restore's command line is caught too, with the snapshot's devices known."""
    vm = VM(wd, extra=["-s", "3,virtio-net,slirp"])
    vm.wait_seq(2, timeout=120)
    snap = wd("vm0.snap")
    vm.ctl("--suspend=" + snap)
    check(vm.wait_exit(120) == 0, "suspend exit")
    base = ["-r", snap, "-l", "com1,stdio", "-o", "ctl.socket=" + wd("r.sock")]
    r = khyve_run(base + ["-o", "snapshot.verfy=fast", "vm0"], timeout=120)
    check(r.returncode == 4 and b"did you mean 'snapshot.verify'?" in r.stderr,
          "restore typo: %d %s" % (r.returncode, r.stderr.decode()))
    # The slot's device comes from the snapshot: its options are known, typos are not.
    r = khyve_run(base + ["-o", "pci.0.3.0.hostfwdd=", "vm0"], timeout=120)
    check(r.returncode == 4 and b"'hostfwdd' for virtio-net" in r.stderr
          and b"did you mean 'hostfwd'?" in r.stderr,
          "restore option typo: %d %s" % (r.returncode, r.stderr.decode()))
    # With config.strict=false the restore goes ahead (the unknown key is a session one).
    vm2 = VM(wd, name="vm0", restore=snap,
             extra=["-o", "config.strict=false", "-o", "config.frob=1"])
    vm2.wait_seq(2, timeout=120)
    check(b"warning: unknown configuration key 'config.frob'" in vm2.err,
          "no warning: " + vm2.err.decode(errors="replace"))


VERSION_RE = r"^%s (\d+\.\d+\.\d+) \(commit ([0-9a-f]{12}(-dirty)?|unknown)\), snapshot format (\d+)\n$"


@test
def version_on_both_tools(wd):
    head = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short=12", "HEAD"],
                          capture_output=True).stdout.decode().strip()
    for tool, path in (("khyve", KHYVE), ("khyvectl", KHYVECTL)):
        r = subprocess.run([path, "--version"], capture_output=True)
        out = r.stdout.decode()
        m = re.match(VERSION_RE % tool, out)
        check(r.returncode == 0 and m, "%s --version: %d %r" % (tool, r.returncode, out))
        # The commit is the one the tree was built from (a build outside git says unknown).
        check(not head or m.group(2).startswith(head),
              "%s --version names commit %s, the tree is at %s" % (tool, m.group(2), head))
        check(m.group(4) == "2", "snapshot format %s" % m.group(4))
    r = khyve_run(["--frobnicate", "vm"])
    check(r.returncode == 4 and b"unknown option '--frobnicate'" in r.stderr,
          "unknown long option: %d %s" % (r.returncode, r.stderr.decode()))
    r = khyve_run(["--help"])
    check(r.returncode == 0 and b"Usage: khyve" in r.stdout, "khyve --help")


version_on_both_tools.needs_kvm = False


def guest_args(wd, lpc_slot="31", cpus="1", cmdline="mode=selftest", name="vm0"):
    return [KHYVE, "-c", cpus, "-m", "512M", "-s", "0,hostbridge", "-s", lpc_slot + ",lpc",
            "-l", "com1,stdio", "-o", "boot.kernel=" + GUEST, "-o", "boot.cmdline=" + cmdline,
            "-o", "ctl.socket=" + wd(name + ".sock"), name]


@test
def lpc_in_any_slot(wd):
    """bhyve puts the LPC bridge wherever -s says (-s 1,lpc); the ISA devices behind it work."""
    vm = VM(wd, args=guest_args(wd, lpc_slot="1"))
    vm.wait_for(rb"TESTGUEST (PASS|FAIL.*)$", timeout=240)
    check(b"TESTGUEST PASS" in vm.out and b"\nok atkbdc\n" in vm.out,
          "self-test with the LPC bridge at 0:1.0:\n" + vm.tail())
    check(vm.wait_exit(60) == 1, "power off")
    r = khyve_run(guest_args(wd, lpc_slot="1")[1:-1] + ["-s", "31,lpc", "vm1"])
    check(r.returncode == 4 and b"second LPC bridge" in r.stderr,
          "two LPC bridges: %d %s" % (r.returncode, r.stderr.decode()))


@test
def cpu_topology(wd):
    """-c sockets=S,cores=C,threads=T: the vCPU count follows, the guest runs on all of them,
    and counts that do not multiply up are refused."""
    r = dump("-c", "sockets=2,cores=2")
    check(r.returncode == 0 and "cpus=4" in r.stdout.decode().splitlines(),
          "-c sockets=2,cores=2 gives cpus=4: %s" % r.stdout.decode())
    for bad, needle in (("cpus=4,sockets=3", "4 vCPUs"), ("sockets=2,cores=3", "powers of two"),
                        ("sockets=16,cores=16", "256 vCPUs"), ("cpus=4,sockets=2,cores=1", "4 vCPUs")):
        r = khyve_run(BASE + ["-c", bad, "vm"])
        check(r.returncode == 4 and needle.encode() in r.stderr,
              "-c %s: %d %s" % (bad, r.returncode, r.stderr.decode()))
    vm = VM(wd, args=guest_args(wd, cpus="cpus=4,sockets=1,cores=2,threads=2"))
    vm.wait_for(rb"TESTGUEST (PASS|FAIL.*)$", timeout=240)
    check(b"TESTGUEST PASS" in vm.out, "self-test on 1 socket x 2 cores x 2 threads:\n" + vm.tail())
    check(vm.wait_exit(60) == 1, "power off")


# A 4 KiB boot ROM (the reset vector jumps to its start, real mode): it writes the low dword
# of the APIC base MSR and the 16 bytes of the fw_cfg UUID to COM1, reads I/O port 0x99
# (which nothing emulates), then halts.  What -x, -U and -e change, seen from the guest.
PROBE_ROM = """bits 16
org 0xF000
start:
    mov ecx, 0x1b
    rdmsr
    mov dx, 0x3f8
    mov cx, 4
.apic:
    out dx, al
    shr eax, 8
    loop .apic
    mov dx, 0x510
    mov ax, 2
    out dx, ax
    mov cx, 16
.uuid:
    mov dx, 0x511
    in al, dx
    mov dx, 0x3f8
    out dx, al
    loop .uuid
    in al, 0x99
    cli
.halt:
    hlt
    jmp .halt
times 4080-($-$$) db 0
    jmp start
times 4096-($-$$) db 0
"""

UUID = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"


def probe_rom(wd):
    src, rom = wd("probe.asm"), wd("probe.rom")
    with open(src, "w") as f:
        f.write(PROBE_ROM)
    subprocess.run(["nasm", "-f", "bin", src, "-o", rom], check=True)
    return rom


def probe_vm(wd, name, *extra):
    return VM(wd, name=name, args=[KHYVE, "-s", "0,hostbridge", "-s", "31,lpc", "-l",
                                   "com1,stdio", "-l", "bootrom," + probe_rom(wd), "-o",
                                   "ctl.socket=" + wd(name + ".sock"), *extra, name])


def wait_bytes(vm, n, timeout=60):
    end = time.time() + timeout
    while len(vm.out) < n and time.time() < end and vm.p.poll() is None:
        vm.pump(0.2)
    vm.pump(0.2)
    check(len(vm.out) >= n, "%s printed %d of %d bytes; stderr %s"
          % (vm.name, len(vm.out), n, vm.err.decode(errors="replace")))
    return vm.out[:n]


@test
def x2apic_uuid_strictio_seen_by_the_guest(wd):
    plain = probe_vm(wd, "plain")
    out = wait_bytes(plain, 20)
    base = struct.unpack("<I", out[:4])[0]
    check(base & 0xfffff000 == 0xfee00000 and base & (1 << 11) and not base & (1 << 10),
          "without -x the APIC base is xAPIC mode: 0x%x" % base)
    # Without -U, as bhyve: a UUID of the host's and the VM's names, stable across boots,
    # shown in status (a version 8 UUID of the RFC's variant).
    uuid = out[4:20]
    check(uuid != bytes(16) and uuid[6] >> 4 == 8 and uuid[8] >> 6 == 2,
          "without -U: a name-based UUID, got %s" % uuid.hex())
    rc, st = plain.ctl("--status")
    check(st.get("uuid", "").replace("-", "") == uuid.hex(),
          "status %r, the guest saw %s" % (st.get("uuid"), uuid.hex()))
    time.sleep(1)
    check(plain.p.poll() is None, "without -e an unemulated port is ignored: khyve exited")
    plain.kill()
    again = probe_vm(wd, "plain")
    check(wait_bytes(again, 20)[4:20] == uuid, "the same VM booted again has another UUID")
    again.kill()
    other = probe_vm(wd, "other")
    check(wait_bytes(other, 20)[4:20] not in (uuid, bytes(16)),
          "another VM name gives the same UUID")
    other.kill()

    vm = probe_vm(wd, "probe", "-x", "-U", UUID, "-e")
    out = wait_bytes(vm, 20)
    base = struct.unpack("<I", out[:4])[0]
    check(base & (1 << 10) and base & (1 << 11) and base & (1 << 8),
          "-x: the BSP's APIC base says x2APIC, enabled, BSP: 0x%x" % base)
    check(out[4:20] == bytes.fromhex(UUID.replace("-", "")),
          "-U: fw_cfg gives the guest %s" % out[4:20].hex())
    status = vm.wait_exit(60)
    check(status == 4 and b"I/O port 0x99" in vm.err and b"(-e)" in vm.err,
          "-e: exit %s, stderr %s" % (status, vm.err.decode(errors="replace")))


@test
def pinning_wiring_uuid_status(wd):
    """-p pins vCPU threads, -S locks guest RAM, -U shows in status."""
    vm = VM(wd, cpus=2, mem="64M", extra=["-S", "-p", "0:0", "-p", "1:0", "-U", UUID])
    vm.wait_seq(2, timeout=120)
    pinned = {}
    for tid in os.listdir("/proc/%d/task" % vm.p.pid):
        comm = open("/proc/%d/task/%s/comm" % (vm.p.pid, tid)).read().strip()
        if comm.startswith("vcpu"):
            status = open("/proc/%d/task/%s/status" % (vm.p.pid, tid)).read()
            pinned[comm] = re.search(r"Cpus_allowed_list:\s*(\S+)", status).group(1)
    check(pinned == {"vcpu0": "0", "vcpu1": "0"}, "vCPU threads' host CPUs: %s" % pinned)
    locked = int(re.search(r"VmLck:\s*(\d+) kB", open("/proc/%d/status" % vm.p.pid).read())
                 .group(1))
    check(locked >= 64 * 1024, "-S: %d kB locked, want the 64 MiB of guest RAM" % locked)
    rc, st = vm.ctl("--status")
    check(st.get("uuid") == UUID, "status: %r" % st)


@test
def bhyve_flags_and_keys(wd):
    """bhyve's flags set bhyve's keys; the no-ops are accepted; old names are aliases."""
    r = dump("-A", "-D", "-H", "-P", "-W", "-Y", "-S", "-x", "-e", "-u", "-U", UUID, "-p", "0:0")
    out = r.stdout.decode().splitlines()
    for line in ("acpi_tables=true", "destroy_on_poweroff=true", "x86.vmexit_on_hlt=true",
                 "x86.vmexit_on_pause=true", "virtio_msix=false", "x86.mptable=false",
                 "memory.wired=true", "x86.x2apic=true", "x86.strictio=true",
                 "rtc.use_localtime=false", "uuid=" + UUID, "vcpu.0.cpuset=0"):
        check(line in out, "dump lacks %s: %s %s" % (line, out, r.stderr.decode()))
    r = dump("-o", "rtc.localtime=false")
    check("rtc.use_localtime=false" in r.stdout.decode().splitlines(),
          "rtc.localtime is an alias of rtc.use_localtime: %s" % r.stdout.decode())
    for bad, needle in ((["-U", "not-a-uuid"], "uuid=not-a-uuid"), (["-p", "0"], "-p 0"),
                        (["-p", "5:0"], "vcpu.5.cpuset: the VM has 1 vCPUs"),
                        (["-o", "x86.x2apic=perhaps"], "x86.x2apic=perhaps")):
        r = khyve_run(BASE + bad + ["vm"])
        check(r.returncode == 4 and needle.encode() in r.stderr,
              "%s: %d %s" % (bad, r.returncode, r.stderr.decode()))


@test
def bhyve_manual_example(wd):
    """bhyve(8)'s first example, with the test guest as the kernel instead of a disk image's."""
    disk = wd("image")
    with open(disk, "wb") as f:
        f.truncate(1 << 20)
    vm = VM(wd, args=[KHYVE, "-c", "2", "-s", "0,hostbridge", "-s", "1,lpc", "-s",
                      "2,virtio-blk," + disk, "-l", "com1,stdio", "-A", "-H", "-P", "-m", "1G",
                      "-o", "boot.kernel=" + GUEST, "-o", "boot.cmdline=mode=selftest",
                      "-o", "ctl.socket=" + wd("vm1.sock"), "vm1"])
    vm.wait_for(rb"TESTGUEST (PASS|FAIL.*)$", timeout=240)
    check(b"TESTGUEST PASS" in vm.out, "bhyve's example:\n" + vm.tail())
    check(vm.wait_exit(60) == 1, "power off exits 1")


def ctl_raw(*args):
    return subprocess.run([KHYVECTL] + list(args), capture_output=True, timeout=120)


@test
def list_three_vms(wd):
    vms = [VM(wd, name="vm%d" % i, cpus=1 + i % 2, mem="%dM" % (64 * (i + 1))) for i in range(3)]
    for vm in vms:
        vm.wait_seq(1, timeout=120)
    vms[1].ctl("--pause")
    r = ctl_raw("--list", "--dir=" + wd.path, "--json")
    check(r.returncode == 0, "--list: %d %s" % (r.returncode, r.stderr.decode()))
    got = json.loads(r.stdout)["vms"]
    check([v["vm"] for v in got] == ["vm0", "vm1", "vm2"], "--list names: %s" % got)
    for vm, v in zip(vms, got):
        check(v["pid"] == vm.p.pid and v["vcpus"] == 1 + int(vm.name[2]) % 2
              and v["memory"] == 64 * (int(vm.name[2]) + 1) << 20 and "uptime_ms" in v,
              "%s: %s" % (vm.name, v))
    check([v["state"] for v in got] == ["running", "paused", "running"], "states: %s" % got)
    r = ctl_raw("--list", "--dir=" + wd.path)
    lines = r.stdout.decode().splitlines()
    check(r.returncode == 0 and lines[0].split() == ["NAME", "PID", "STATE", "VCPUS", "MEMORY",
                                                       "UPTIME"] and len(lines) == 4
          and lines[2].split()[:3] == ["vm1", str(vms[1].p.pid), "paused"],
          "--list table:\n" + r.stdout.decode())
    # A VM that ended leaves no entry, even if its socket file stayed.
    vms[2].kill()
    open(wd("stale.sock"), "w").close()
    got = json.loads(ctl_raw("--list", "--dir=" + wd.path, "--json").stdout)["vms"]
    check([v["vm"] for v in got] == ["vm0", "vm1"], "after one ended: %s" % got)


@test
def lifecycle_exit_statuses(wd):
    """--poweroff (the guest shuts down: 1), --force-poweroff (1), --force-reset (0), --destroy
    (4), each with khyvectl's own status 0."""
    for name, action, want in (("a", "--poweroff", 1), ("b", "--force-poweroff", 1),
                               ("c", "--force-reset", 0), ("d", "--destroy", 4)):
        vm = VM(wd, name=name)
        vm.wait_seq(2, timeout=120)
        rc, reply = vm.ctl(action)
        check(rc == 0 and reply.get("ok"), "%s: %d %r" % (action, rc, reply))
        status = vm.wait_exit(120)
        check(status == want, "%s: khyve exited %s, want %d" % (action, status, want))
    # The guest cannot see a button while paused: refused, the VM stays.
    vm = VM(wd, name="e")
    vm.wait_seq(1, timeout=120)
    vm.ctl("--pause")
    rc, reply = vm.ctl("--poweroff", expect_ok=False)
    check(rc == 1 and "paused" in reply.get("error", ""), "--poweroff while paused: %r" % reply)
    check(vm.p.poll() is None, "a refused --poweroff ended the VM")


@test
def json_errors_are_json(wd):
    """With --json, a failure before khyve answers (nobody on the socket) is still one JSON
    object on stdout, beside the message on stderr."""
    r = ctl_raw("--socket=" + wd("nobody.sock"), "--status", "--json")
    check(r.returncode == 2, "no VM: exit %d" % r.returncode)
    reply = json.loads(r.stdout)
    check(reply["ok"] is False and "nobody.sock" in reply["error"], "reply: %r" % reply)
    check(b"cannot connect" in r.stderr, "stderr: %s" % r.stderr.decode())
    r = ctl_raw("--list", "--dir=" + wd.path, "--json")
    check(r.returncode == 0 and json.loads(r.stdout) == {"ok": True, "vms": []},
          "--list of an empty directory: %s" % r.stdout.decode())


json_errors_are_json.needs_kvm = False


@test
def make_install_completion_and_unit(wd):
    """make install puts the manuals, docs, test guest, bash completion and the example
    systemd unit in place; the completion offers -o keys and VM names."""
    dest = wd("root")
    r = subprocess.run(["make", "-s", "-C", ROOT, "install", "DESTDIR=" + dest, "PREFIX=/usr"],
                       capture_output=True)
    check(r.returncode == 0, "make install: %s" % r.stderr.decode())
    for f in ("sbin/khyve", "sbin/khyvectl", "share/man/man8/khyve.8", "share/man/man8/khyvectl.8",
              "share/bash-completion/completions/khyve", "share/bash-completion/completions/khyvectl",
              "share/doc/khyve/khyve@.service", "share/khyve/testguest",
              "share/doc/khyve/control-protocol.md"):
        check(os.path.exists(os.path.join(dest, "usr", f)), "make install did not install " + f)
    unit = open(os.path.join(dest, "usr/share/doc/khyve/khyve@.service")).read()
    check("ExecStart=" in unit and "--poweroff" in unit, "the unit: %s" % unit)
    comp = os.path.join(dest, "usr/share/bash-completion/completions/khyve")
    script = ('source %s; COMP_WORDS=(khyve -o boot.cmd); COMP_CWORD=2; _khyve; '
              'echo "${COMPREPLY[@]}"; COMP_WORDS=(khyvectl --pow); COMP_CWORD=1; _khyvectl; '
              'echo "${COMPREPLY[@]}"' % comp)
    env = dict(os.environ, PATH=os.path.dirname(KHYVE) + ":" + os.environ["PATH"])
    r = subprocess.run(["bash", "-c", script], capture_output=True, env=env)
    out = r.stdout.decode().splitlines()
    check(len(out) == 2 and out[0] == "boot.cmdline=" and out[1] == "--poweroff",
          "completion: %r %s" % (out, r.stderr.decode()))


make_install_completion_and_unit.needs_kvm = False


def ctl_socket(vm, request, timeout=300, replies=1):
    """Requests (one, or a list sent in one write) on a connection of our own; every reply
    line (progress lines too) until @replies answers came."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(vm.sock)
    reqs = request if isinstance(request, list) else [request]
    s.sendall("".join(json.dumps(r) + "\n" for r in reqs).encode())
    buf, lines = b"", []
    while True:
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            msg = json.loads(line)
            lines.append(msg)
            if "progress" not in msg:
                replies -= 1
            if replies <= 0:
                s.close()
                return lines
        data = s.recv(65536)
        if not data:
            s.close()
            return lines
        buf += data


@test
def inject_nmi_and_stats(wd):
    """--inject-nmi reaches the vCPU asked for (the guest counts NMIs), a paused guest takes
    it at resume; --get-stats counts exits per vCPU, the UART's writes (at least one per
    console byte), NMIs, and remembers the checkpoint; snapshot info is short unless --json."""
    vm = VM(wd, name="st", cpus=2)
    vm.wait_seq(2, timeout=120)
    rc, reply = vm.ctl("--inject-nmi")
    check(reply.get("vcpu") == 0, "inject-nmi reply: %r" % reply)
    vm.wait_for(rb"^nmi cpu 0: 1$", timeout=30)
    vm.ctl("--inject-nmi", "--vcpu=1")
    vm.wait_for(rb"^nmi cpu 1: 1$", timeout=30)
    rc, reply = vm.ctl("--inject-nmi", "--vcpu=2", expect_ok=False)
    check(rc == 1 and "no vCPU 2" in reply.get("error", ""), "--vcpu=2 of 2: %d %r" % (rc, reply))
    # Paused: queued, taken when the guest runs again.
    vm.ctl("--pause")
    rc, reply = vm.ctl("--inject-nmi")
    check(reply.get("delivered") == "on resume", "inject-nmi while paused: %r" % reply)
    time.sleep(1.5)
    vm.pump(0)
    check(b"nmi cpu 0: 2" not in vm.out, "a paused guest took the NMI")
    vm.ctl("--resume")
    vm.wait_for(rb"^nmi cpu 0: 2$", timeout=30)
    vm.check_alive()

    snap = wd("st.snap")
    rc, saved = vm.ctl("--checkpoint=" + snap)
    vm.pump(0)
    console = len(vm.out)
    rc, st = vm.ctl("--get-stats")
    cpus = {c["vcpu"]: c for c in st["vcpus"]}
    check(sorted(cpus) == [0, 1], "vcpus: %r" % st["vcpus"])
    check(cpus[0]["nmis_injected"] == 2 and cpus[1]["nmis_injected"] == 1,
          "NMIs counted: %r" % [(c["vcpu"], c["nmis_injected"]) for c in st["vcpus"]])
    check(cpus[0]["exits"].get("io", 0) > 0 and
          cpus[0]["exits_total"] >= sum(cpus[0]["exits"].values()) > 0,
          "vCPU 0 exits: %r" % cpus[0])
    uart = [r for r in st["io"] if r["device"] == "uart@com1"]
    check(len(uart) == 1 and uart[0]["bus"] == "pio" and uart[0]["base"] == 0x3f8,
          "uart@com1 region: %r" % uart)
    check(uart[0]["writes"] >= console and uart[0]["bytes"] >= uart[0]["writes"] + uart[0]["reads"],
          "uart@com1 writes %d for %d console bytes: %r" % (uart[0]["writes"], console, uart[0]))
    check(all(r["device"] != "?" for r in st["io"] if r["reads"] or r["writes"]),
          "a region in use has no device: %r" % [r for r in st["io"] if r["device"] == "?"])
    snaps = st["snapshots"]
    check(len(snaps) == 1 and snaps[0]["file"] == snap and snaps[0]["bytes"] == saved["bytes"]
          and snaps[0]["kind"] == "checkpoint" and snaps[0]["paused_ms"] > 0
          and re.match(r"\d{4}-\d\d-\d\dT", snaps[0]["time"]), "history: %r" % snaps)
    r = ctl_raw("--socket=" + vm.sock, "--get-stats")
    out = r.stdout.decode()
    check(r.returncode == 0 and "uart@com1" in out and "vcpu 1:" in out and snap in out
          and "2 NMIs injected" in out, "human --get-stats:\n" + out)

    # snapshot info: a short summary by default, the whole document with --json.
    r = ctl_raw("snapshot", "info", snap)
    out = r.stdout.decode()
    check(r.returncode == 0 and "snapshot of VM 'st'" in out and "2 vCPUs" in out
          and not out.lstrip().startswith("{") and len(out.splitlines()) < 12,
          "snapshot info:\n" + out)
    r = ctl_raw("snapshot", "info", "--json", snap)
    info = json.loads(r.stdout)
    check(info["vcpus"] == 2 and info["file"] == snap and "sections" in info, "info --json")
    r = ctl_raw("snapshot", "verify", "--json", snap)
    v = json.loads(r.stdout)
    check(r.returncode == 0 and v["ok"] is True and v["data_bytes"] > 0, "verify --json: %r" % v)
    bad = wd("bad.snap")
    with open(snap, "rb") as f:
        data = bytearray(f.read())
    sec = info["sections"][0]
    check(sec["length"] > 1, "first section: %r" % sec)
    data[sec["offset"] + 1] ^= 0xff
    with open(bad, "wb") as f:
        f.write(data)
    r = ctl_raw("snapshot", "verify", "--json", bad)
    v = json.loads(r.stdout)
    check(r.returncode == 1 and v["ok"] is False and v["error"], "verify --json of a bad file: "
          "%d %r" % (r.returncode, v))


@test
def status_while_saving(wd):
    """A checkpoint holds khyve's loop thread, but --status still answers: state saving with
    the bytes written and to write; other requests are refused meanwhile.  The progress lines
    count bytes of the file: they never go back, end equal, and end at what was written.
    The save is held to max_rate so that it lasts long enough to be seen (a fast disk wrote
    these 60 MB before the first --status got in); the time it took shows the rate kept."""
    vm = VM(wd, name="sv", mem="1G", cmdline="mode=counter mem=128M")
    # All 128 MiB written (8 steps of the memory scan, so several progress lines), which
    # takes a loaded host a while.
    vm.wait_for(rb"counter: region written once", 600)
    snap = wd("sv.snap")
    seen, refused = [], []
    result = {}
    rate = 32 << 20
    for bad in [5, "100M", 1.5e8, True]:
        r, = ctl_socket(vm, {"request": "checkpoint", "file": snap, "max_rate": bad})
        check(r.get("ok") is False and "max_rate" in r["error"], "max_rate %r: %r" % (bad, r))
    r, = ctl_socket(vm, {"request": "checkpoint", "file": snap, "live": True, "max_rate": rate})
    check(r.get("ok") is False and "live" in r["error"], "max_rate with live: %r" % r)
    check(not os.path.exists(snap), "a refused checkpoint wrote %s" % snap)
    t = threading.Thread(target=lambda: result.update(
        lines=ctl_socket(vm, {"request": "checkpoint", "file": snap, "progress": True,
                              "max_rate": rate})))
    t.start()
    while t.is_alive():
        # In one write: khyve reads both lines at once, so a status that says saving is
        # followed by a request handled during the same save (a screenshot: this VM has no
        # display, so outside a save it fails for that and changes nothing).
        r, p = ctl_socket(vm, [{"request": "status"},
                               {"request": "screenshot", "file": wd("x.png")}],
                          timeout=60, replies=2)
        if r.get("state") == "saving":
            seen.append(r)
            refused.append(p)
        time.sleep(0.02)
    t.join()
    lines = result["lines"]
    final = lines[-1]
    check(final.get("ok"), "checkpoint: %r" % final)
    check(seen, "no status during the save said saving (%d progress lines, %d bytes)"
          % (len(lines), final["bytes"]))
    for r in seen:
        s = r["save"]
        check(s["file"] == snap and s["kind"] == "checkpoint" and s["done"] <= s["total"],
              "status while saving: %r" % r)
    check(any(r["save"]["total"] > 0 for r in seen), "no byte counts in %r" % seen)
    check(all(p.get("ok") is False and "being saved" in p["error"] for p in refused),
          "a request during a save: %r" % refused)
    prog = [l["progress"] for l in lines if "progress" in l]
    check(len(prog) >= 2, "progress lines: %r" % prog)
    for a, b in zip(prog, prog[1:]):
        check(b["done"] >= a["done"] and b["total"] <= a["total"],
              "progress went back: %r then %r" % (a, b))
    last = prog[-1]
    check(last["done"] == last["total"], "the last progress line is not complete: %r" % last)
    check(0 <= final["bytes"] - last["done"] < 1 << 20 and prog[0]["total"] >= last["done"],
          "progress counts %r against %d bytes written" % (last, final["bytes"]))
    # Counted in file bytes, not memory scanned: 1 GiB of RAM, about 128 MiB touched.
    check(last["total"] < (1 << 30) - (64 << 20), "total %d is the RAM scanned" % last["total"])
    # max_rate: the memory cannot have been written faster than the rate (a lower bound the
    # throttle guarantees, whatever the host's speed).
    mem_bytes = final["mem_pages"] * 4096
    check(final["total_ms"] >= mem_bytes * 1000 / rate * 0.95,
          "max_rate %d: %d bytes of memory in %s ms" % (rate, mem_bytes, final["total_ms"]))
    rc, reply = vm.ctl("--status")
    check(reply["state"] == "running" and "save" not in reply, "after the save: %r" % reply)


@test
def sigterm_while_paused(wd):
    """SIGTERM on a paused VM: status says a power off is pending, nothing happens until the
    resume, then the guest sees the button and powers off (exit 1)."""
    vm = VM(wd, name="sp")
    vm.wait_seq(2, timeout=120)
    vm.ctl("--pause")
    vm.p.send_signal(signal.SIGTERM)
    time.sleep(1)
    rc, reply = vm.ctl("--status")
    check(reply["state"] == "paused" and reply.get("pending") == "poweroff",
          "status after SIGTERM while paused: %r" % reply)
    time.sleep(1)
    check(vm.p.poll() is None, "the paused VM ended on SIGTERM")
    r = ctl_raw("--socket=" + vm.sock, "--status")
    check(b"pending: poweroff" in r.stdout, "human status: %s" % r.stdout.decode())
    rc, reply = vm.ctl("--resume")
    check(reply.get("pending_done") == "poweroff", "resume reply: %r" % reply)
    status = vm.wait_exit(120)
    check(status == 1, "khyve exited %s after the pending power off, want 1" % status)
    vm.pump(0)
    check(b"SIGTERM while paused" in vm.err, "stderr: %s" % vm.err.decode())


@test
def json_usage_errors(wd):
    """--json: usage and parse errors are a JSON object on stdout too (exit 2)."""
    cases = [
        ["--json", "--bogus"],
        ["--status", "--json"],
        ["--vm=x", "--json", "--inject-nmi", "--vcpu=abc"],
        ["--vm=x", "--json", "--status", "--vcpu=1"],
        ["--vm=x", "--json", "--checkpoint="],
        ["snapshot", "verify", "--json"],
        ["snapshot", "info", "--json", "--frob", "f"],
        ["--vm=x", "--json", "--checkpoint=/tmp/f", "--max-rate=10K"],
        ["--vm=x", "--json", "--checkpoint=/tmp/f", "--max-rate=fast"],
        ["--vm=x", "--json", "--status", "--max-rate=100M"],
        ["--vm=x", "--json", "--checkpoint=/tmp/f", "--live", "--max-rate=100M"],
    ]
    for args in cases:
        r = ctl_raw(*args)
        check(r.returncode == 2, "%r: exit %d" % (args, r.returncode))
        try:
            reply = json.loads(r.stdout)
        except ValueError:
            raise Fail("%r: stdout is not JSON: %r" % (args, r.stdout))
        check(reply["ok"] is False and reply.get("usage") is True and reply["error"],
              "%r: %r" % (args, reply))
        check(r.stderr.startswith(b"khyvectl: "), "%r: stderr %r" % (args, r.stderr))
    r = ctl_raw("snapshot", "verify", "--json", wd("missing.snap"))
    reply = json.loads(r.stdout)
    check(r.returncode == 2 and reply["ok"] is False and "missing.snap" in reply["error"],
          "verify of a missing file: %r" % reply)
    # Without --json, stdout stays empty.
    r = ctl_raw("--bogus")
    check(r.returncode == 2 and r.stdout == b"", "without --json: %r" % r.stdout)


json_usage_errors.needs_kvm = False


class TtyVM:
    """khyve with COM1 on stdio and stdin, stdout and stderr a pseudo-terminal, as a person
    at a terminal runs it; the guest (mode=echo) prints every byte it receives."""

    def __init__(self, wd, name, *extra, stdin_pipe=False):
        import pty
        self.master, slave = pty.openpty()
        args = [KHYVE, "-m", "64M", "-s", "0,hostbridge", "-s", "31,lpc", "-l", "com1,stdio",
                "-o", "boot.kernel=" + GUEST, "-o", "boot.cmdline=mode=echo",
                "-o", "ctl.socket=" + wd(name + ".sock"), *extra, name]
        self.p = subprocess.Popen(args, stdin=subprocess.PIPE if stdin_pipe else slave,
                                  stdout=slave, stderr=slave)
        os.close(slave)
        self.out = b""
        wd.vms.append(self)

    def pump(self, timeout=0.2):
        import select
        r, _, _ = select.select([self.master], [], [], timeout)
        if r:
            try:
                self.out += os.read(self.master, 65536)
            except OSError:  # EIO: khyve exited, the terminal has no writer left
                time.sleep(timeout)

    def wait_for(self, pattern, timeout=60):
        end = time.time() + timeout
        while time.time() < end:
            m = re.search(pattern, self.out)
            if m:
                return m
            if self.p.poll() is not None:
                self.pump(0)
                if re.search(pattern, self.out):
                    return re.search(pattern, self.out)
                raise Fail("khyve exited (%s) before %r:\n%s"
                           % (self.p.returncode, pattern, self.out.decode(errors="replace")))
            self.pump()
        raise Fail("timeout waiting for %r:\n%s" % (pattern, self.out.decode(errors="replace")))

    def typed(self, data):
        if self.p.stdin:
            self.p.stdin.write(data)
            self.p.stdin.flush()
        else:
            os.write(self.master, data)

    def received(self):
        return bytes(int(h, 16) for h in re.findall(rb"rx ([0-9a-f]{2})\r?\n", self.out))

    def wait_received(self, want):
        end = time.time() + 30
        while self.received() != want and time.time() < end and self.p.poll() is None:
            self.pump()
        self.pump(0.5)  # and nothing more
        check(self.received() == want, "the guest received %r, want %r:\n%s"
              % (self.received(), want, self.out.decode(errors="replace")))

    def wait_exit(self, timeout=60):
        end = time.time() + timeout
        while self.p.poll() is None and time.time() < end:
            self.pump()
        check(self.p.poll() is not None, "khyve did not exit:\n" + self.out.decode())
        return self.p.returncode

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()
        try:
            os.close(self.master)
        except OSError:
            pass


@test
def console_escape_on_a_terminal(wd):
    """~~ sends one ~, ~? prints the help to the terminal only, ~X passes both, and ~. after a
    newline stops the VM with exit status 4 (as khyvectl --destroy)."""
    vm = TtyVM(wd, "esc")
    vm.wait_for(rb"echo: ready")
    vm.typed(b"~~x\r")
    vm.wait_received(b"~x\r")
    vm.typed(b"~?")
    vm.wait_for(rb"~\.  stop the VM")
    vm.typed(b"q~.\r")  # after the help the line still starts at q; ~. mid-line is text
    vm.wait_received(b"~x\rq~.\r")
    vm.typed(b"~z\r")
    vm.wait_received(b"~x\rq~.\r~z\r")
    vm.typed(b"~.")
    status = vm.wait_exit()
    check(status == 4, "~.: exit status %s, want 4:\n%s" % (status, vm.out.decode()))
    check(b"console escape: stopping the VM" in vm.out, "~. said nothing:\n" + vm.out.decode())
    check(vm.received() == b"~x\rq~.\r~z\r", "~. reached the guest: %r" % vm.received())

    # Another escape character; none turns them off.
    vm = TtyVM(wd, "hash", "-o", "console.escape=#")
    vm.wait_for(rb"echo: ready")
    vm.typed(b"~.\r")
    vm.wait_received(b"~.\r")
    vm.typed(b"#.")
    check(vm.wait_exit() == 4, "console.escape=#: #. did not stop the VM")
    vm = TtyVM(wd, "none", "-o", "console.escape=none")
    vm.wait_for(rb"echo: ready")
    vm.typed(b"~.~?")
    vm.wait_received(b"~.~?")
    check(vm.p.poll() is None, "console.escape=none: ~. stopped the VM")
    vm.kill()

    # Not a terminal on stdin (a pipe): every byte goes through.
    vm = TtyVM(wd, "pipe", stdin_pipe=True)
    vm.wait_for(rb"echo: ready")
    vm.typed(b"~.\n")
    vm.wait_received(b"~.\n")
    check(vm.p.poll() is None, "stdin a pipe: ~. stopped the VM")
    vm.kill()

    r = khyve_run(BASE + ["-o", "console.escape=ab", "vm"])
    check(r.returncode == 4 and b"console.escape=ab" in r.stderr,
          "a bad console.escape: %d %s" % (r.returncode, r.stderr.decode()))


@test
def log_levels_and_file(wd):
    """-v and -o log.level= choose what khyve says; -o log.file= keeps it, time-stamped; a
    log file is never opened through a symbolic link."""
    # Default: the warning of config.strict=false is said; log.level=error hides it.
    args = ["-o", "config.strict=false", "-o", "boot.cmdlin=x"]
    r = dump(*args)
    check(r.returncode == 0 and b"khyve: warning: unknown configuration key 'boot.cmdlin'"
          in r.stderr, "default level: %r" % r.stderr)
    r = dump(*(args + ["-o", "log.level=error"]))
    check(r.returncode == 0 and r.stderr == b"", "log.level=error still said %r" % r.stderr)
    r = dump("-o", "log.level=loud")
    check(r.returncode == 4 and b"log.level=loud" in r.stderr, "bad level: %r" % r.stderr)

    log = wd("khyve.log")
    vm = VM(wd, extra=["-v", "-o", "log.file=" + log])
    vm.wait_seq(3, timeout=120)
    vm.ctl("--checkpoint=" + wd("a.snap"))
    end = time.time() + 30
    while b": written" not in vm.err and time.time() < end:
        vm.pump(0.2)
    vm.kill()
    err = vm.err.decode()
    for want in ("khyve: device pci@0.0.0: hostbridge", "khyve: device uart@com1: uart",
                 "control request: ", "checkpoint " + wd("a.snap") + ": written"):
        check(want in err, "-v: %r not said:\n%s" % (want, err))
    with open(log) as f:
        lines = f.read().splitlines()
    stamp = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (error|warning|info|debug) ")
    check(lines and all(stamp.match(l) for l in lines), "log file lines: %r" % lines[:5])
    check(any(l.endswith(" debug device pci@0.0.0: hostbridge") for l in lines),
          "log file lacks the device lines: %r" % lines[:8])
    check(os.stat(log).st_mode & 0o777 == 0o600, "log file mode %o" % os.stat(log).st_mode)

    # A symbolic link as the log file: refused, nothing created where it points.
    victim = wd("victim")
    link = wd("link.log")
    os.symlink(victim, link)
    r = khyve_run(BASE + ["-o", "log.file=" + link, "-o", "ctl.socket=off", "vmx"])
    check(r.returncode == 4 and b"symbolic link" in r.stderr, "symlink: %d %r"
          % (r.returncode, r.stderr))
    check(not os.path.exists(victim), "a file was created through the link")


@test
def default_uuid_kept_by_restore(wd):
    """The UUID khyve chose without -U is the VM's: a restore under another name keeps it."""
    vm = VM(wd, mem="64M")
    vm.wait_seq(2, timeout=120)
    _, st = vm.ctl("--status")
    uuid = st.get("uuid", "")
    check(re.match(r"^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$",
                   uuid), "status uuid %r" % uuid)
    snap = wd("u.snap")
    vm.ctl("--checkpoint=" + snap)
    vm.kill()
    r = VM(wd, restore=snap, name="renamed")
    r.wait_seq(2, timeout=120)
    _, st = r.ctl("--status")
    check(st.get("uuid") == uuid, "restored: %r, saved %r" % (st.get("uuid"), uuid))
    r.kill()
