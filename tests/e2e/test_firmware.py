"""Firmware boot (-l bootrom): Debian's SeaBIOS boots boot sectors this test assembles (from
virtio-blk, ahci-hd and an El Torito no-emulation CD on ahci-cd), and a GRUB rescue CD on
ahci-cd that multiboot-loads the test guest; a VM checkpointed at GRUB's prompt is restored and
answers a command typed on its serial console (a UNIX socket).

Needs the packages scripts/deps.sh installs (seabios, grub-pc-bin, grub-common, xorriso,
mtools, nasm): a missing one fails the test, it does not skip it."""

import os
import re
import shutil
import socket
import subprocess
import time

from khyve_e2e import GUEST, KHYVE, VM, check, khyve_run, test

SEABIOS = "/usr/share/seabios/bios-256k.bin"
MARKER = b"KHYVE-BOOTSECTOR"

# A boot sector: a line through the BIOS (int 10h, which SeaBIOS sends to COM1 as its serial
# console), a pause so that SeaBIOS has written all of it, a line straight to the COM1 port,
# then power off through the PM1a control register (S5), so khyve exits with status 1.
BOOTSECTOR = r"""
bits 16
org 0x7c00
    xor ax, ax
    mov ds, ax
    mov si, bios_msg
.tty:
    lodsb
    test al, al
    jz .wait
    mov ah, 0x0e
    mov bx, 7
    int 0x10
    jmp .tty
.wait:
    sti
    mov cx, 6           ; six timer ticks (~330 ms): the serial console drains
.tick:
    hlt
    loop .tick
    mov si, port_msg
.port:
    lodsb
    test al, al
    jz .off
    mov dx, 0x3f8
    out dx, al
    jmp .port
.off:
    mov dx, 0x404
    mov ax, 0x3400      ; SLP_TYP 5, SLP_EN
    out dx, ax
    cli
    hlt
bios_msg db 13, 10, "KHYVE-BOOTSECTOR-BIOS %(tag)s", 13, 10, 0
port_msg db "KHYVE-BOOTSECTOR-PORT %(tag)s", 13, 10, 0
times 510-($-$$) db 0
dw 0xaa55
"""


def need(path, pkg):
    check(os.path.exists(path), "%s is missing: install %s (scripts/deps.sh)" % (path, pkg))


def tool(name, pkg):
    check(shutil.which(name) is not None, "%s is missing: install %s (scripts/deps.sh)"
          % (name, pkg))


def bootsector(wd, tag, size=1 << 20):
    """A disk image of @size bytes whose first sector prints the markers with @tag."""
    tool("nasm", "nasm")
    src, binf, img = wd(tag + ".asm"), wd(tag + ".bin"), wd(tag + ".img")
    with open(src, "w") as f:
        f.write(BOOTSECTOR % {"tag": tag})
    subprocess.run(["nasm", "-f", "bin", src, "-o", binf], check=True)
    with open(binf, "rb") as f:
        code = f.read()
    check(len(code) == 512 and code[510:] == b"\x55\xaa", "the boot sector is not 512 bytes")
    with open(img, "wb") as f:
        f.write(code)
        f.truncate(size)
    return img


def grub_iso(wd, name, cfg, guest=False):
    """A grub-mkrescue image (El Torito and a hybrid MBR) with @cfg as its grub.cfg."""
    for t, p in (("grub-mkrescue", "grub-common"), ("xorriso", "xorriso"),
                 ("mformat", "mtools")):
        tool(t, p)
    need("/usr/lib/grub/i386-pc/cdboot.img", "grub-pc-bin")
    root = wd(name + ".d")
    os.makedirs(os.path.join(root, "boot", "grub"))
    with open(os.path.join(root, "boot", "grub", "grub.cfg"), "w") as f:
        f.write(cfg)
    if guest:
        shutil.copy(GUEST, os.path.join(root, "boot", "testguest"))
    iso = wd(name + ".iso")
    r = subprocess.run(["grub-mkrescue", "-o", iso, root], capture_output=True)
    check(r.returncode == 0, "grub-mkrescue failed: %s" % r.stderr.decode(errors="replace"))
    return iso


GRUB_SERIAL = "serial --unit=0 --speed=115200\nterminal_input serial\nterminal_output serial\n"


def fw_vm(wd, disks, cpus=1, mem="256M", console="stdio", extra=(), name="vm0"):
    """khyve with SeaBIOS and @disks: list of (slot, emulation, path, options)."""
    need(SEABIOS, "seabios")
    args = [KHYVE, "-c", str(cpus), "-m", mem, "-s", "0,hostbridge", "-s", "31,lpc",
            "-l", "com1," + console, "-l", "bootrom," + SEABIOS]
    for slot, emul, path, opts in disks:
        args += ["-s", "%d,%s,%s%s" % (slot, emul, path, opts)]
    args += ["-o", "ctl.socket=" + wd(name + ".sock")] + list(extra) + [name]
    return VM(wd, name=name, args=args)


def expect_bootsector(vm, tag, timeout=60):
    vm.wait_for(rb"KHYVE-BOOTSECTOR-BIOS " + tag.encode() + rb"\r?$", timeout)
    vm.wait_for(rb"KHYVE-BOOTSECTOR-PORT " + tag.encode() + rb"\r?$", timeout)
    rc = vm.wait_exit(30)
    check(rc == 1, "khyve exited %d after the boot sector powered off (want 1)" % rc)
    check(b"SeaBIOS" in vm.out, "no SeaBIOS banner on COM1")


@test
def seabios_virtio_blk_bootsector(wd):
    img = bootsector(wd, "vblk")
    for cpus in (1, 2):
        vm = fw_vm(wd, [(3, "virtio-blk", img, "")], cpus=cpus, name="vm%d" % cpus)
        expect_bootsector(vm, "vblk")


@test
def seabios_ahci_hd_bootsector(wd):
    vm = fw_vm(wd, [(3, "ahci-hd", bootsector(wd, "ahcihd"), "")])
    expect_bootsector(vm, "ahcihd")


@test
def seabios_ahci_cd_eltorito_no_emulation(wd):
    # An El Torito image whose boot entry is the boot sector, no emulation, 4 sectors loaded
    # at 0x7C00.
    tool("xorriso", "xorriso")
    img = bootsector(wd, "ahcicd", size=512)
    root = wd("cdroot")
    os.makedirs(root)
    shutil.copy(img, os.path.join(root, "boot.bin"))
    iso = wd("eltorito.iso")
    r = subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-b", "boot.bin", "-no-emul-boot",
                        "-boot-load-size", "4", "-o", iso, root], capture_output=True)
    check(r.returncode == 0, "xorriso failed: %s" % r.stderr.decode(errors="replace"))
    vm = fw_vm(wd, [(3, "ahci-cd", iso, "")])
    expect_bootsector(vm, "ahcicd")
    check(b"Booting from DVD/CD" in vm.out, "SeaBIOS did not boot the CD")


@test
def seabios_bootindex_picks_the_disk(wd):
    # Without a boot order SeaBIOS tries the disk in the lower slot first.
    a, b = bootsector(wd, "slot3"), bootsector(wd, "slot4")
    vm = fw_vm(wd, [(3, "virtio-blk", a, ""), (4, "virtio-blk", b, "")], name="plain")
    expect_bootsector(vm, "slot3")
    vm = fw_vm(wd, [(3, "virtio-blk", a, ",bootindex=2"), (4, "virtio-blk", b, ",bootindex=1")],
               name="ordered")
    expect_bootsector(vm, "slot4")
    check(b"slot3" not in vm.out, "the disk with the later bootindex ran")


# A legacy PCI option ROM for virtio-rnd (1af4:1044, which SeaBIOS has no driver of its own
# for, so it runs the device's ROM): its init entry writes a line straight to COM1 and
# returns.  One 512-byte image; the last byte makes the sum of all bytes 0, as a BIOS checks.
OPTIONROM = r"""
bits 16
org 0
    db 0x55, 0xaa, 1        ; signature, size in 512-byte blocks
    jmp short init          ; the init entry, far-called at offset 3
times 0x18-($-$$) db 0
    dw pcir                 ; PCI data structure
    dw 0                    ; no PnP header: a legacy ROM, init only
pcir:
    db "PCIR"
    dw 0x1af4, 0x1044       ; vendor, device: virtio-rnd
    dw 0                    ; no device list
    dw 0x18                 ; structure length
    db 0                    ; structure revision
    db 0, 0, 0xff           ; class code
    dw 1                    ; image length, 512-byte blocks
    dw 1                    ; code revision
    db 0                    ; x86 code
    db 0x80                 ; the last image
    dw 0
init:
    pusha
    push ds
    push cs
    pop ds
    mov si, msg
.next:
    lodsb
    test al, al
    jz .done
    mov ah, al
    mov dx, 0x3fd           ; wait for an empty transmitter
.thr:
    in al, dx
    test al, 0x20
    jz .thr
    mov al, ah
    mov dx, 0x3f8
    out dx, al
    jmp .next
.done:
    pop ds
    popa
    retf
msg db 13, 10, "KHYVE-OPTIONROM %(tag)s", 13, 10, 0
times 511-($-$$) db 0
    db 0                    ; checksum, set by the test
"""


def option_rom(wd, tag):
    tool("nasm", "nasm")
    src, binf = wd(tag + "-rom.asm"), wd(tag + ".rom")
    with open(src, "w") as f:
        f.write(OPTIONROM % {"tag": tag})
    subprocess.run(["nasm", "-f", "bin", src, "-o", binf], check=True)
    with open(binf, "rb") as f:
        rom = bytearray(f.read())
    check(len(rom) == 512, "the option ROM is %d bytes, not 512" % len(rom))
    rom[511] = (-sum(rom[:511])) & 0xff
    with open(binf, "wb") as f:
        f.write(rom)
    return binf


@test
def seabios_runs_a_romfile(wd):
    # romfile= on a device SeaBIOS has no driver for: SeaBIOS finds the ROM in its ROM BAR,
    # copies it and runs its init, then boots the disk as usual.
    rom = option_rom(wd, "rnd")
    vm = fw_vm(wd, [(3, "virtio-blk", bootsector(wd, "romboot"), ""),
                    (4, "virtio-rnd", "romfile=" + rom, "")])
    vm.wait_for(rb"KHYVE-OPTIONROM rnd\r?$", 60)
    expect_bootsector(vm, "romboot")
    check(vm.out.index(b"KHYVE-OPTIONROM") < vm.out.index(b"KHYVE-BOOTSECTOR-BIOS"),
          "the option ROM ran after the boot sector")
    # A file that is no option ROM, or is one for another device, is refused at start.
    for data, msg in ((b"\x11" * 600, b"not a PCI option ROM"),
                      (open(rom, "rb").read(), b"no image in it is for PCI 1af4:1042")):
        bad = wd("bad.rom")
        with open(bad, "wb") as f:
            f.write(data)
        r = khyve_run(["-s", "0,hostbridge", "-s", "31,lpc", "-l", "com1,off", "-o",
                       "ctl.socket=off", "-l", "bootrom," + SEABIOS, "-s",
                       "3,virtio-blk,%s,romfile=%s" % (bootsector(wd, "x"), bad), "vmx"])
        check(r.returncode == 4, "bad romfile: exit %d, want 4" % r.returncode)
        check(msg in r.stderr and b"romfile=" in r.stderr,
              "bad romfile: message %r does not say %r" % (r.stderr, msg))


@test
def seabios_nothing_to_boot_reboots(wd):
    # An empty disk: SeaBIOS says so and, after fw.failwait seconds, resets: exit status 0.
    empty = wd("empty.img")
    with open(empty, "wb") as f:
        f.truncate(1 << 20)
    vm = fw_vm(wd, [(3, "virtio-blk", empty, "")], extra=["-o", "fw.failwait=1"])
    vm.wait_for(rb"No bootable device", 60)
    rc = vm.wait_exit(60)
    check(rc == 0, "khyve exited %d when the firmware rebooted (want 0)" % rc)


@test
def grub_multiboot_selftest(wd):
    cfg = GRUB_SERIAL + ("set timeout=0\necho KHYVE-GRUB-CFG\n"
                         "multiboot /boot/testguest mode=selftest\nboot\n")
    iso = grub_iso(wd, "mb", cfg, guest=True)
    vm = fw_vm(wd, [(3, "ahci-cd", iso, "")], mem="512M")
    vm.wait_for(rb"KHYVE-GRUB-CFG", 240)
    vm.wait_for(rb"testguest: selftest, 1/1 cpus", 120)  # GRUB ends lines "\n\r"
    vm.wait_for(rb"TESTGUEST (PASS|FAIL)", 120)
    check(b"TESTGUEST PASS" in vm.out, "self-test failed:\n" + vm.tail())
    # SeaBIOS's PIRQ routes and line registers agree with khyve's wiring (the AHCI CD's pin).
    check(b"ok pci-intx" in vm.out, "the pci-intx group did not run:\n" + vm.tail())
    rc = vm.wait_exit(30)
    check(rc == 1, "khyve exited %d after the guest powered off (want 1)" % rc)


class Console:
    """A client of khyve's unix:PATH serial backend."""

    def __init__(self, path, timeout=30):
        end = time.time() + timeout
        while True:
            try:
                self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.s.connect(path)
                break
            except OSError:
                self.s.close()
                check(time.time() < end, "no serial console at " + path)
                time.sleep(0.1)
        self.buf = b""

    def wait_for(self, pattern, timeout):
        rx = re.compile(pattern)
        end = time.time() + timeout
        self.s.settimeout(0.5)
        while not rx.search(self.buf):
            check(time.time() < end, "timeout waiting for %r on the console; got:\n%r"
                  % (pattern, self.buf[-600:]))
            try:
                data = self.s.recv(4096)
            except socket.timeout:
                continue
            check(data != b"", "the console closed; got:\n%r" % self.buf[-600:])
            self.buf += data

    def type(self, line):
        self.s.sendall(line.encode() + b"\r")

    def close(self):
        self.s.close()


@test
def grub_prompt_checkpoint_restore(wd):
    iso = grub_iso(wd, "prompt", GRUB_SERIAL + "echo KHYVE-GRUB-PROMPT\n")
    con = wd("con0")
    vm = fw_vm(wd, [(3, "ahci-cd", iso, "")], console="unix:" + con)
    c = Console(con)
    c.wait_for(rb"KHYVE-GRUB-PROMPT", 240)
    c.wait_for(rb"grub> $", 60)
    snap = wd("grub.snap")
    vm.ctl("--checkpoint=" + snap)
    # The original answers too: the checkpoint left it running.
    c.type("set x=BEFORE")
    c.type("echo KHYVE-$x")
    c.wait_for(rb"KHYVE-BEFORE", 60)
    c.close()
    vm.kill()
    con1 = wd("con1")
    r = VM(wd, name="vm1", restore=snap, extra=["-l", "com1,unix:" + con1])
    c = Console(con1)
    # GRUB on the restored VM has the state of the checkpoint: x is not set yet.
    c.type("echo KHYVE-[$x]")
    c.wait_for(rb"KHYVE-\[\]", 60)
    c.type("set x=AFTER")
    c.type("echo KHYVE-$x")
    c.wait_for(rb"KHYVE-AFTER", 60)
    c.close()
    r.check_alive()


@test
def bootrom_bad_options(wd):
    need(SEABIOS, "seabios")
    base = ["-s", "0,hostbridge", "-s", "31,lpc", "-l", "com1,off", "-o", "ctl.socket=off"]
    cases = [
        (["-l", "bootrom," + wd("missing.bin")], b"missing.bin"),
        (["-l", "bootrom"], b"missing the firmware file"),
        (["-l", "bootrom," + SEABIOS, "-o", "boot.kernel=" + GUEST], b"give one of them"),
        (["-o", "boot.kernel=" + GUEST, "-s", "3,virtio-blk," + wd("missing.bin")
          + ",bootindex=1"], b"bootindex is for firmware boot"),
        (["-l", "bootrom," + SEABIOS, "-o", "fw.failwait=x"], b"fw.failwait"),
    ]
    odd = wd("odd.bin")
    with open(odd, "wb") as f:
        f.write(b"\0" * 1000)
    cases.append((["-l", "bootrom," + odd], b"whole 4 KiB pages"))
    for extra, msg in cases:
        r = khyve_run(base + extra + ["vmx"])
        check(r.returncode == 4, "%s: exit %d, want 4" % (extra, r.returncode))
        check(msg in r.stderr, "%s: message %r does not say %r" % (extra, r.stderr, msg))
    r = khyve_run(["-s", "31,lpc", "-l", "com1,off", "-o", "ctl.socket=off",
                   "-l", "bootrom," + SEABIOS, "vmx"])
    check(r.returncode == 4 and b"-s 0,hostbridge" in r.stderr,
          "no host bridge: %d %r" % (r.returncode, r.stderr))
