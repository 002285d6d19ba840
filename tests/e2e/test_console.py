"""The graphical console: fbuf's picture through VNC (our RFB client, vncsnapshot), the
test guest's mode=console echoing PS/2 keys and mouse movement sent by a VNC client exactly
once, also across checkpoints, pauses and suspend/restore, VNC authentication, UNIX sockets,
wait, and bad options."""

import base64
import gzip
import json
import os
import re
import select
import shutil
import socket
import subprocess
import sys
import time

import rfb
from khyve_e2e import KHYVE, ROOT, VM, check, khyve_run, test

GUEST_CONSOLE_C = os.path.join(ROOT, "tests", "guest", "console.c")
FONT = "/usr/share/consolefonts/Uni2-VGA16.psf.gz"

# Set-1 make codes of the letters (what mode=console prints for them).
LETTER_CODES = dict(zip("abcdefghijklmnopqrstuvwxyz",
                        [0x1e, 0x30, 0x2e, 0x20, 0x12, 0x21, 0x22, 0x23, 0x17, 0x24, 0x25,
                         0x26, 0x32, 0x31, 0x18, 0x19, 0x10, 0x13, 0x1f, 0x14, 0x16, 0x2f,
                         0x11, 0x2d, 0x15, 0x2c]))
KEY_RE = re.compile(rb"^key 0x([0-9a-f]+) (down|up)$", re.M)
REL_RE = re.compile(rb"^rel (-?\d+) (-?\d+) (-?\d+) btn (\d+)$", re.M)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def console_vm(wd, cmdline="mode=console", fbuf="", cpus=1, name="vm0", extra=()):
    port = free_port()
    opts = "29,fbuf,tcp=127.0.0.1:%d" % port + ("," + fbuf if fbuf else "")
    vm = VM(wd, name=name, cpus=cpus, cmdline=cmdline, extra=["-s", opts] + list(extra))
    vm.vnc = ("127.0.0.1", port)
    return vm


def connect(addr, timeout=30, **kw):
    end = time.time() + timeout
    while True:
        try:
            return rfb.RFB(addr, **kw)
        except (ConnectionRefusedError, FileNotFoundError):
            if time.time() > end:
                raise
            time.sleep(0.2)


# ---- the picture mode=console draws, computed as console.c computes it ----

def guest_glyphs():
    src = open(GUEST_CONSOLE_C).read()
    text = re.search(r'#define CONSOLE_TEXT\s+"([^"]*)"', src).group(1)
    scale = int(re.search(r"#define TEXT_SCALE\s+(\d+)", src).group(1))
    x0 = int(re.search(r"#define TEXT_X\s+(\d+)", src).group(1))
    glyphs = {}
    for c, rows in re.findall(r"\{ '(.)', \{ ([^}]*) \} \}", src):
        glyphs[c] = [int(v, 16) for v in rows.split(",")]
    return text, scale, x0, glyphs


BARS = [0xffffff, 0xffff00, 0x00ffff, 0x00ff00, 0xff00ff, 0xff0000, 0x0000ff, 0x000000]


def console_picture(w, h, frame=0):
    text, scale, x0, glyphs = guest_glyphs()
    px = [0] * (w * h)
    for y in range(h):
        for x in range(w):
            if y < h // 2:
                c = BARS[((x + frame * 8) % w) * 8 // w]
            else:
                c = (x * 255 // (w - 1)) << 16 | ((y - h // 2) * 255 // (h - h // 2 - 1)) << 8 | 0x80
            px[y * w + x] = c
    y0, cw = h // 2 + 16, 6 * scale
    for y in range(y0 - scale, y0 + 8 * scale):
        for x in range(x0 - scale, min(x0 + len(text) * cw, w)):
            px[y * w + x] = 0
    for i, ch in enumerate(text):
        g = glyphs.get(ch)
        for y in range(7 * scale if g else 0):
            for x in range(5 * scale):
                if g[y // scale] & (0x10 >> (x // scale)):
                    px[(y0 + y) * w + x0 + i * cw + x] = 0xffffff
    return px


def pixels(fb):
    return [fb[i] | fb[i + 1] << 8 | fb[i + 2] << 16 for i in range(0, len(fb), 4)]


def compare(got, want, w, what):
    bad = [i for i in range(len(want)) if got[i] != want[i]]
    check(not bad, "%s: %d of %d pixels differ, first at (%d, %d): 0x%06x, want 0x%06x"
          % (what, len(bad), len(want), bad[0] % w, bad[0] // w, got[bad[0]], want[bad[0]])
          if bad else "")


# ---- text mode, rendered from the console font ----

def psf_cp437(path):
    """The font's glyphs for each CP437 code (16 rows), as fbuf's reset loads them."""
    d = gzip.open(path).read()
    assert d[:2] == b"\x36\x04", "expected a PSF1 font"
    mode, h = d[2], d[3]
    n = 512 if mode & 1 else 256
    table = d[4 + n * h:]
    cmap, g, seq = {}, 0, False
    for i in range(0, len(table) - 1, 2):
        v = table[i] | table[i + 1] << 8
        if v == 0xFFFF:
            g, seq = g + 1, False
        elif v == 0xFFFE:
            seq = True
        elif not seq:
            cmap.setdefault(v, g)
    low = [0x0000, 0x263A, 0x263B, 0x2665, 0x2666, 0x2663, 0x2660, 0x2022, 0x25D8, 0x25CB,
           0x25D9, 0x2642, 0x2640, 0x266A, 0x266B, 0x263C, 0x25BA, 0x25C4, 0x2195, 0x203C,
           0x00B6, 0x00A7, 0x25AC, 0x21A8, 0x2191, 0x2193, 0x2192, 0x2190, 0x221F, 0x2194,
           0x25B2, 0x25BC]
    cps = low + [ord(bytes([b]).decode("cp437")) for b in range(0x20, 0x100)]
    cps[0x7F] = 0x2302
    out = []
    for c in range(256):
        gi = cmap.get(cps[c]) if c else None
        if gi is not None:
            out.append(list(d[4 + gi * h:4 + gi * h + h]))
        elif cps[c] == 0x2588:
            out.append([0xFF] * h)
        else:
            out.append([0] * h)
    return out


EGA = [0x000000, 0x0000aa, 0x00aa00, 0x00aaaa, 0xaa0000, 0xaa00aa, 0xaa5500, 0xaaaaaa,
       0x555555, 0x5555ff, 0x55ff55, 0x55ffff, 0xff5555, 0xff55ff, 0xffff55, 0xffffff]


def text_picture(cells):
    """720x400: 80x25 cells of 9x16, 9th column background except line drawing chars."""
    font = psf_cp437(FONT)
    w, h = 720, 400
    px = [0] * (w * h)
    for i, (ch, at) in enumerate(cells):
        cx, cy = i % 80, i // 80
        fg, bg = EGA[at & 15], EGA[(at >> 4) & 7]
        for y in range(16):
            bits = font[ch][y]
            for x in range(9):
                on = bits & (0x80 >> x) if x < 8 else (0xC0 <= ch <= 0xDF and bits & 1)
                px[(cy * 16 + y) * w + cx * 9 + x] = fg if on else bg
    return px


def console_text_cells():
    text = guest_glyphs()[0]
    cells = [(0x20, 0x07)] * (80 * 25)
    for i, c in enumerate(text):
        cells[i] = (ord(c), 0x1F)
    for i in range(1, 16):
        cells[2 * 80 + i] = (0xDB, i)
    return cells


# ---- input ----

def key_events(out):
    """(code, down) for each key line of the guest, typematic repeats aside."""
    return [(int(m.group(1), 16), m.group(2) == b"down") for m in KEY_RE.finditer(out)]


def tap_letters(c, letters):
    sent = []
    for ch in letters:
        c.tap(ord(ch))
        sent += [(LETTER_CODES[ch], True), (LETTER_CODES[ch], False)]
    return sent


def wait_keys(vm, n, timeout=60):
    end = time.time() + timeout
    while time.time() < end:
        got = key_events(vm.out)
        if len(got) >= n:
            return got
        vm.check_alive()
        vm.pump(0.2)
    raise AssertionError("the guest echoed %d of %d key events:\n%s"
                         % (len(key_events(vm.out)), n, vm.tail()))


def expect_keys(vm, sent, what, timeout=60):
    got = wait_keys(vm, len(sent), timeout)
    time.sleep(0.3)
    vm.pump(0.1)
    got = key_events(vm.out)
    check(got == sent, "%s: keys sent and echoed differ (lost or doubled):\nsent %s\ngot  %s"
          % (what, sent, got))


# ---- tests ----

@test
def selftest_with_fbuf(wd):
    for vga, ports, window in (("on", "yes", "yes"), ("io", "yes", "no"), ("off", "no", "no")):
        vm = console_vm(wd, cmdline="mode=selftest", fbuf="vga=" + vga, name="vm" + vga)
        vm.wait_for(rb"TESTGUEST (PASS|FAIL.*)$", timeout=240)
        check(b"TESTGUEST PASS" in vm.out and b"\nok fbuf\n" in vm.out,
              "vga=%s: self-test failed:\n%s" % (vga, vm.tail()))
        want = ("edid 1024x768, vga ports %s, window %s" % (ports, window)).encode()
        check(want in vm.out, "vga=%s: no %r line:\n%s" % (vga, want, vm.tail()))
        check(vm.wait_exit(60) == 1, "power off should exit 1")


@test
def console_picture_gfx(wd):
    vm = console_vm(wd)
    m = vm.wait_for(rb"^console: gfx (\d+)x(\d+),", timeout=120)
    w, h = int(m.group(1)), int(m.group(2))
    check((w, h) == (1024, 768), "mode=console took %dx%d, the EDID says 1024x768" % (w, h))
    c = connect(vm.vnc)
    check(c.name == "vm0", "desktop name %r" % c.name)
    cw, ch, fb = c.capture()
    check((cw, ch) == (w, h), "VNC picture is %dx%d" % (cw, ch))
    compare(pixels(fb), console_picture(w, h), w, "the picture through VNC")
    # A second client at once, then vncsnapshot (JPEG: colours within a tolerance).
    shot = wd("shot.jpg")
    r = subprocess.run(["vncsnapshot", "-quiet", "-allowblank", "%s::%d" % vm.vnc, shot],
                       capture_output=True, timeout=60)
    check(r.returncode == 0, "vncsnapshot failed: %s" % r.stderr.decode())
    ppm = subprocess.run(["convert", shot, "ppm:-"], capture_output=True, timeout=60).stdout
    hdr = ppm.split(b"\n", 3)
    check(hdr[1] == b"1024 768", "vncsnapshot picture is %r" % hdr[1])
    data = hdr[3]
    for i, colour in enumerate(BARS):
        x, y = i * 128 + 64, 100
        o = (y * 1024 + x) * 3
        got = (data[o] << 16) | (data[o + 1] << 8) | data[o + 2]
        close = all(abs(((got >> s) & 255) - ((colour >> s) & 255)) < 48 for s in (0, 8, 16))
        check(close, "bar %d at (%d, %d) is 0x%06x, want about 0x%06x" % (i, x, y, got, colour))
    c.close()


def read_png(path):
    """(w, h, [0x00RRGGBB...]) of an 8-bit RGB PNG as khyve writes it (filter 0 rows)."""
    import struct
    import zlib
    data = open(path, "rb").read()
    check(data[:8] == b"\x89PNG\r\n\x1a\n", "%s is not a PNG file" % path)
    o, idat, w, h = 8, b"", 0, 0
    while o < len(data):
        n, t = struct.unpack(">I4s", data[o:o + 8])
        body = data[o + 8:o + 8 + n]
        check(zlib.crc32(t + body) == struct.unpack(">I", data[o + 8 + n:o + 12 + n])[0],
              "bad CRC in %s chunk" % t)
        if t == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
            check((depth, ctype) == (8, 2), "PNG depth %d colour type %d" % (depth, ctype))
        elif t == b"IDAT":
            idat += body
        o += 12 + n
    raw = zlib.decompress(idat)
    px = []
    for y in range(h):
        row = raw[y * (1 + 3 * w):(y + 1) * (1 + 3 * w)]
        check(row[0] == 0, "row %d has filter %d" % (y, row[0]))
        px += [row[1 + 3 * x] << 16 | row[2 + 3 * x] << 8 | row[3 + 3 * x] for x in range(w)]
    return w, h, px


@test
def console_screenshot(wd):
    vm = console_vm(wd, fbuf="w=640,h=480")
    vm.wait_for(rb"^console: gfx 640x480,", timeout=120)
    png = wd("shot.png")
    rc, reply = vm.ctl("--screenshot=" + png)
    check(reply.get("width") == 640 and reply.get("height") == 480, "reply %r" % reply)
    w, h, px = read_png(png)
    check((w, h) == (640, 480), "screenshot is %dx%d" % (w, h))
    compare(px, console_picture(640, 480), 640, "the screenshot")
    # Relative paths are made absolute by khyvectl; a VM without a display says so.
    other = VM(wd, name="nodisplay", cmdline="mode=counter")
    other.wait_seq(1)
    rc, reply = other.ctl("--screenshot=" + wd("none.png"), expect_ok=False)
    check(rc != 0 and "has no display" in reply.get("error", ""), "no display: %r" % reply)
    check(not os.path.exists(wd("none.png")), "a file was written without a display")


@test
def console_picture_text(wd):
    check(os.path.exists(FONT), "%s is missing (scripts/deps.sh installs console-setup-linux)"
          % FONT)
    vm = console_vm(wd, cmdline="mode=console conmode=text", fbuf="vga=on")
    vm.wait_for(rb"^console: text", timeout=120)
    c = connect(vm.vnc)
    # The guest's text may take a refresh to arrive.
    end = time.time() + 20
    want = text_picture(console_text_cells())
    while True:
        w, h, fb = c.capture()
        got = pixels(fb)
        if (w, h) == (720, 400) and got == want or time.time() > end:
            break
        time.sleep(0.5)
    check((w, h) == (720, 400), "text mode picture is %dx%d, want 720x400" % (w, h))
    compare(got, want, w, "text mode with " + os.path.basename(FONT))


@test
def console_input_exactly_once(wd):
    vm = console_vm(wd)
    vm.wait_for(rb"^console: gfx .*mouse id 3", timeout=120)
    c = connect(vm.vnc)
    sent = tap_letters(c, "thequickbrownfoxjumpsoverthelazydog")
    # Shift, an extended key (left arrow), Pause.
    c.key(0xffe1, True)
    c.tap(ord("A"))
    c.key(0xffe1, False)
    c.tap(0xff51)
    sent += [(0x2a, True), (0x1e, True), (0x1e, False), (0x2a, False), (0xe04b, True),
             (0xe04b, False)]
    expect_keys(vm, sent, "keys")
    # Pointer: movement adds up exactly, each button change and wheel click once.
    c.pointer(500, 400)
    moves = [(510, 390, 0), (530, 395, 1), (530, 395, 0), (400, 300, 4), (400, 300, 0),
             (400, 300, 8), (400, 300, 0), (400, 300, 16), (400, 300, 0)]
    for x, y, b in moves:
        c.pointer(x, y, b)
    end = time.time() + 30
    while time.time() < end:
        rel = [tuple(int(v) for v in m.groups()) for m in REL_RE.finditer(vm.out)]
        if sum(1 for r in rel if r[2]) >= 2 and rel and rel[-1][3] == 0:
            break
        vm.pump(0.2)
    sx, sy = sum(r[0] for r in rel), sum(r[1] for r in rel)
    check((sx, sy) == (400, 300), "movement adds up to (%d, %d), the pointer went to "
          "(400, 300) from the corner: %s" % (sx, sy, rel))
    wheel = [r[2] for r in rel if r[2]]
    check(wheel == [1, -1], "wheel clicks %s, want [1, -1]" % wheel)
    btns = [r[3] for r in rel]
    check(btns.count(1) >= 1 and 2 in btns, "buttons seen: %s" % btns)
    c.close()


def snapshot_input_cycles(wd, cpus):
    vm = console_vm(wd, cmdline="mode=console redraw=10", cpus=cpus)
    vm.wait_for(rb"^console: gfx", timeout=120)
    c = connect(vm.vnc)
    sent = []
    letters = "abcdefghijklmnopqrstuvwxyz"
    for rnd in range(3):
        sent += tap_letters(c, letters[rnd * 5:rnd * 5 + 5])
        vm.ctl("--checkpoint=" + wd("c%d.snap" % rnd))
        sent += tap_letters(c, letters[rnd * 5 + 5:rnd * 5 + 8])
        check(c.updates_for(0.5) > 0, "no picture update while the guest draws")
    expect_keys(vm, sent, "across checkpoints")
    # Keys typed while the VM is paused wait in the PS/2 queue; the snapshot takes them.
    vm.ctl("--pause")
    paused = tap_letters(c, "khyve")
    time.sleep(0.5)
    vm.ctl("--suspend=" + wd("s.snap"))
    check(vm.wait_exit(60) == 0, "suspend should exit 0")
    c.close()
    check(key_events(vm.out) == sent, "keys typed while paused were echoed before the suspend")
    port = free_port()
    r = VM(wd, name="r", restore=wd("s.snap"),
           extra=["-o", "pci.0.29.0.tcp=127.0.0.1:%d" % port])
    expect_keys(r, paused, "keys queued while paused, after the restore")
    c = connect(("127.0.0.1", port))
    more = tap_letters(c, "zyx")
    expect_keys(r, paused + more, "after the restore")
    seqs = r.seqs()
    check(seqs and seqs[-1] > 0, "no seq lines after the restore")
    c.close()


@test
def console_snapshot_cycles_1cpu(wd):
    snapshot_input_cycles(wd, 1)


@test
def console_snapshot_cycles_4cpus(wd):
    snapshot_input_cycles(wd, 4)


@test
def console_same_picture_after_restore(wd):
    vm = console_vm(wd)
    vm.wait_for(rb"^console: gfx", timeout=120)
    c = connect(vm.vnc)
    before = c.capture()
    vm.ctl("--suspend=" + wd("p.snap"))
    vm.wait_exit(60)
    c.close()
    port = free_port()
    r = VM(wd, name="r", restore=wd("p.snap"),
           extra=["-o", "pci.0.29.0.tcp=127.0.0.1:%d" % port])
    r.wait_for(rb"^seq", timeout=60)
    c = connect(("127.0.0.1", port))
    after = c.capture()
    check(before[:2] == after[:2], "size %s before, %s after" % (before[:2], after[:2]))
    compare(pixels(after[2]), pixels(before[2]), before[0], "after the restore")
    r.check_alive()


@test
def console_password_and_unix_socket(wd):
    sock = wd("vnc.sock")
    vm = VM(wd, cmdline="mode=console",
            extra=["-s", "29,fbuf,unix=%s,password=s3cret,w=800,h=600" % sock])
    vm.wait_for(rb"^console: gfx 800x600", timeout=120)
    c = connect(sock, password="s3cret")
    check(c.security_types == [2], "security types %s, want VNC authentication only"
          % c.security_types)
    w, h, fb = c.capture()
    compare(pixels(fb), console_picture(800, 600), 800, "800x600 through a UNIX socket")
    c.close()
    try:
        rfb.RFB(sock, password="wrong")
        check(False, "a wrong password was accepted")
    except rfb.RFBError as e:
        check("authentication failed" in str(e), "wrong password: %s" % e)
    try:
        rfb.RFB(sock)
        check(False, "a client without a password was accepted")
    except rfb.RFBError as e:
        check("no usable security type" in str(e), "no password: %s" % e)


@test
def console_wait_for_client(wd):
    sock = wd("vnc.sock")
    vm = VM(wd, cmdline="mode=console", extra=["-s", "29,fbuf,unix=%s,wait" % sock])
    end = time.time() + 5
    while time.time() < end and not os.path.exists(sock):
        vm.pump(0.1)
    time.sleep(1)
    vm.pump(0.2)
    check(b"testguest:" not in vm.out, "the guest ran before a client connected")
    check(b"waiting for a VNC client on " + sock.encode() in vm.err,
          "no waiting message: %r" % vm.err)
    c = connect(sock)
    vm.wait_for(rb"^console: gfx", timeout=120)
    c.close()


@test
def console_bad_options(wd):
    base = ["-s", "0,hostbridge", "-s", "31,lpc", "-o", "boot.kernel=/bin/true", "vm0"]
    cases = [
        ("29,fbuf,w=4000", "w=4000: must be a multiple of 8 from 320 to 1920"),
        ("29,fbuf,vga=sometimes", "vga=sometimes: expected io, on or off"),
        ("29,fbuf,passwd=x", "unknown option 'passwd'"),
        ("29,fbuf,tcp=127.0.0.1:99999", "port must be a number from 1 to 65535"),
        ("29,fbuf,password=longerthan8", "at most 8 characters"),
    ]
    for opt, needle in cases:
        r = khyve_run(["-s", opt] + base)
        check(r.returncode == 4, "-s %s: exit %d, want 4" % (opt, r.returncode))
        check(needle in r.stderr.decode(), "-s %s: %r lacks %r" % (opt, r.stderr, needle))
    # The address in use: one clear message.
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    r = khyve_run(["-s", "29,fbuf,tcp=127.0.0.1:%d" % s.getsockname()[1]] + base)
    s.close()
    check(r.returncode == 4 and b"cannot listen" in r.stderr, "address in use: %r" % r.stderr)


def screen_text(w, h, fb, font):
    """Read VGA text off a 720x400 picture: each 9x16 cell against the console font's ASCII
    glyphs, the nearest within 16 of 128 pixels (the reference rendering, with a tolerance:
    the VGA BIOS draws with its own font)."""
    px = pixels(fb)
    rows = []
    for cy in range(h // 16):
        line = ""
        for cx in range(w // 9):
            bits = []
            for y in range(16):
                b = 0
                for x in range(8):
                    c = px[(cy * 16 + y) * w + cx * 9 + x]
                    lum = (c >> 16 & 255) + (c >> 8 & 255) + (c & 255)
                    b = b << 1 | (lum > 192)
                bits.append(b)
            best, dist = "?", 17
            for ch in range(0x20, 0x7F):
                d = sum(bin(a ^ g).count("1") for a, g in zip(bits, font[ch]))
                if d < dist:
                    best, dist = chr(ch), d
            line += best
        rows.append(line.rstrip())
    return rows


@test
def console_seabios_text(wd):
    """SeaBIOS and its VGA BIOS (the fbuf's ROM) write text; the VNC picture shows it."""
    seabios = "/usr/share/seabios/bios-256k.bin"
    check(os.path.exists(seabios) and os.path.exists(FONT), "seabios or the console font is "
          "missing (scripts/deps.sh)")
    port = free_port()
    vm = VM(wd, args=[KHYVE, "-c", "1", "-m", "256M", "-s", "0,hostbridge", "-s", "31,lpc",
                      "-s", "29,fbuf,tcp=127.0.0.1:%d" % port, "-l", "com1,stdio",
                      "-l", "bootrom," + seabios, "-o", "fw.failwait=120",
                      "-o", "ctl.socket=" + wd("vm0.sock"), "vm0"])
    vm.wait_for(rb"No bootable device", timeout=180)
    c = connect(("127.0.0.1", port))
    font = psf_cp437(FONT)
    end = time.time() + 30
    while True:
        w, h, fb = c.capture()
        rows = screen_text(w, h, fb, font) if (w, h) == (720, 400) else []
        text = "\n".join(rows)
        if "No bootable device" in text or time.time() > end:
            break
        time.sleep(1)
    check((w, h) == (720, 400), "the firmware's screen is %dx%d, want 80x25 text" % (w, h))
    check(rows and rows[0].startswith("SeaBIOS (version"), "no SeaBIOS banner on the screen:\n"
          + text)
    check("No bootable device" in text, "SeaBIOS's message is not on the screen:\n" + text)
    c.close()



# A boot sector that reads keys through the BIOS (int 16h, AH=10h: wait for a key) and prints
# each one's scan code and character on COM1, "KEY SSCC".
KEYS_BOOTSECTOR = r"""
bits 16
org 0x7c00
    xor ax, ax
    mov ds, ax
    mov si, ready
    call puts
.loop:
    mov ah, 0x10
    int 0x16
    mov bx, ax
    mov si, keymsg
    call puts
    mov al, bh
    call hex
    mov al, bl
    call hex
    mov si, eol
    call puts
    jmp .loop
puts:
    lodsb
    test al, al
    jz .done
    call putc
    jmp puts
.done:
    ret
hex:
    push ax
    shr al, 4
    call nib
    pop ax
    and al, 15
nib:
    add al, '0'
    cmp al, '9'
    jbe putc
    add al, 7
putc:
    push dx
    push ax
    mov dx, 0x3fd
.wait:
    in al, dx
    test al, 0x20
    jz .wait
    pop ax
    mov dx, 0x3f8
    out dx, al
    pop dx
    ret
ready db "KHYVE-KEYS-READY", 13, 10, 0
keymsg db "KEY ", 0
eol db 13, 10, 0
times 510-($-$$) db 0
dw 0xaa55
"""

BIOS_KEY_RE = re.compile(rb"^KEY ([0-9A-F]{4})\r?$", re.M)


@test
def seabios_keys_over_vnc(wd):
    """Keys from a VNC client reach a program through the firmware: the PS/2 keyboard's
    interrupts, SeaBIOS's keyboard buffer and int 16h, each key exactly once and in order
    (shift included), also after a suspend and restore in the middle."""
    from test_firmware import fw_vm, tool

    tool("nasm", "nasm")
    src, img = wd("keys.asm"), wd("keys.img")
    with open(src, "w") as f:
        f.write(KEYS_BOOTSECTOR)
    subprocess.run(["nasm", "-f", "bin", src, "-o", img], check=True)
    with open(img, "r+b") as f:
        f.truncate(1 << 20)
    port = free_port()
    vm = fw_vm(wd, [(3, "ahci-hd", img, ""), (29, "fbuf", "tcp=127.0.0.1:%d" % port, "")])
    vm.wait_for(rb"KHYVE-KEYS-READY", 180)
    c = connect(("127.0.0.1", port))
    # a, Down (extended: E0 in the low byte), Return, Shift+A as a viewer sends it, 7.
    shift_a = [(0xFFE1, True), (ord("A"), True), (ord("A"), False), (0xFFE1, False)]
    sent = [([(ord("a"), True), (ord("a"), False)], "1E61"),
            ([(0xFF54, True), (0xFF54, False)], "50E0"),
            ([(0xFF0D, True), (0xFF0D, False)], "1C0D"),
            (shift_a, "1E41"),
            ([(ord("7"), True), (ord("7"), False)], "0837")]

    def typed(vm, keys):
        for events, _ in keys:
            for keysym, down in events:
                c.key(keysym, down)
            time.sleep(0.2)
        want = [code for _, code in keys]
        end = time.time() + 60
        while len(BIOS_KEY_RE.findall(vm.out)) < len(want) and time.time() < end:
            vm.pump(0.5)
        time.sleep(1)  # a key sent twice would show by now
        vm.pump(0)
        got = [k.decode() for k in BIOS_KEY_RE.findall(vm.out)]
        check(got == want, "keys through the BIOS: got %r, want %r" % (got, want))

    typed(vm, sent[:3])
    vm.ctl("--suspend=" + wd("k.snap"))
    vm.wait_exit(60)
    c.close()
    port = free_port()
    r = VM(wd, name="r", restore=wd("k.snap"), extra=["-o", "pci.0.29.0.tcp=127.0.0.1:%d" % port])
    c = connect(("127.0.0.1", port))
    typed(r, sent[3:])
    c.close()
    r.check_alive()

def text_screen_until(c, font, cond, what, timeout):
    """Capture @c's picture until the VGA text read off it satisfies @cond; returns (w, h,
    picture, text).  Fails with @what and the last screen's text after @timeout seconds."""
    end = time.time() + timeout
    while True:
        w, h, fb = c.capture()
        text = "\n".join(screen_text(w, h, fb, font)) if (w, h) == (720, 400) else ""
        if cond(text):
            return w, h, fb, text
        check(time.time() < end, "%s (%dx%d):\n%s" % (what, w, h, text))
        time.sleep(0.5)


# GRUB's menu on its serial and VGA-text terminals; @input is GRUB's keyboard: its default
# (the BIOS's int 16h) or its own PS/2 driver (at_keyboard, which polls the i8042).
GRUB_MENU_CFG = """serial --unit=0 --speed=115200
%(input)s
terminal_output serial console
set timeout=-1
echo KHYVE-GRUB-MENU
menuentry "khyve first" { echo KHYVE-ENTRY-FIRST; sleep 600 }
menuentry "khyve second" { echo KHYVE-ENTRY-SECOND; sleep 600 }
"""


def grub_menu_keys(wd, grub_input, key_timeout):
    """GRUB's menu, shown on the fbuf's VGA text screen, driven with keys from a VNC client
    through the PS/2 keyboard: Down moves the highlight on the screen, Return then runs the
    second entry, not the first."""
    from test_firmware import fw_vm, grub_iso

    iso = grub_iso(wd, "menu", GRUB_MENU_CFG % {"input": grub_input})
    port = free_port()
    vm = fw_vm(wd, [(3, "ahci-cd", iso, ""), (29, "fbuf", "tcp=127.0.0.1:%d" % port, "")])
    vm.wait_for(rb"KHYVE-GRUB-MENU", 300)
    c = connect(("127.0.0.1", port))
    font = psf_cp437(FONT)
    # The highlighted entry is drawn inverted, which the glyph match does not read: at first
    # only the second entry is legible, after Down only the first.
    text_screen_until(c, font, lambda t: "GNU GRUB" in t and "khyve second" in t
                      and "khyve first" not in t,
                      "GRUB's menu with its first entry highlighted is not on the VNC screen", 120)
    c.tap(0xFF54)   # Down
    text_screen_until(c, font, lambda t: "khyve first" in t and "khyve second" not in t,
                      "after Down, the highlight did not move to GRUB's second entry",
                      key_timeout)
    c.tap(0xFF0D)   # Return
    m = vm.wait_for(rb"KHYVE-ENTRY-(FIRST|SECOND)", key_timeout)
    check(m.group(1) == b"SECOND", "Down and Return ran GRUB's %s entry, not the second"
          % m.group(1).decode().lower())
    c.close()
    vm.check_alive()


@test
def grub_menu_keys_over_vnc(wd):
    """GRUB as installed, reading keys through SeaBIOS (int 16h).  On this PVM host a key takes
    6-10 s to reach it (doc/platform.md), hence the long wait."""
    grub_menu_keys(wd, "", 180)


@test
def grub_menu_keys_at_keyboard(wd):
    """GRUB's own PS/2 driver (insmod at_keyboard): it resets and configures the i8042 and the
    keyboard itself, then polls them."""
    grub_menu_keys(wd, "insmod at_keyboard\nterminal_input at_keyboard", 60)


class Chromium:
    """Headless Chromium driven over its DevTools pipe (fds 3 and 4, NUL-separated JSON):
    no debugging port, no client library."""

    def __init__(self, wd, width=1000, height=800):
        r3, self.w3 = os.pipe()
        self.r4, w4 = os.pipe()

        def child():
            os.dup2(r3, 3)
            os.dup2(w4, 4)

        exe = next((p for p in ("chromium", "chromium-browser") if shutil.which(p)), None)
        check(exe, "chromium is missing (scripts/deps.sh installs it)")
        self.p = subprocess.Popen(
            [exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--no-first-run", "--window-size=%d,%d" % (width, height),
             "--remote-debugging-pipe", "--user-data-dir=" + wd("chromium"), "about:blank"],
            pass_fds=(3, 4), preexec_fn=child, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        os.close(r3)
        os.close(w4)
        self.buf, self.next_id = b"", 0
        targets = self.call("Target.getTargets")["targetInfos"]
        page = [t for t in targets if t["type"] == "page"][0]["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": page,
                                                           "flatten": True})["sessionId"]

    def call(self, method, params=None, page=False, timeout=30):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if page:
            msg["sessionId"] = self.session
        os.write(self.w3, json.dumps(msg).encode() + b"\0")
        end = time.time() + timeout
        while time.time() < end:
            while b"\0" in self.buf:
                line, self.buf = self.buf.split(b"\0", 1)
                o = json.loads(line)
                if o.get("id") == self.next_id:
                    check("error" not in o, "%s: %s" % (method, o.get("error")))
                    return o["result"]
            r, _, _ = select.select([self.r4], [], [], 1)
            if r:
                data = os.read(self.r4, 1 << 20)
                check(data, "chromium went away")
                self.buf += data
        raise AssertionError("chromium did not answer %s" % method)

    def eval(self, expr):
        return self.call("Runtime.evaluate", {"expression": expr, "returnByValue": True},
                         page=True)["result"].get("value")

    def close(self):
        self.p.kill()
        self.p.wait()
        os.close(self.w3)
        os.close(self.r4)


class NoVNC:
    """noVNC's page (vnc_lite.html through websockify) in headless Chromium, connected to the
    VNC server at @addr, unscaled."""

    def __init__(self, wd, addr, name="vm0"):
        check(os.path.exists("/usr/share/novnc/vnc_lite.html"),
              "novnc is missing (scripts/deps.sh)")
        self.wd = wd
        wport = free_port()
        cmd = [shutil.which("websockify")] if shutil.which("websockify") else [
            sys.executable, "-m", "websockify"]
        self.ws = subprocess.Popen(cmd + ["--web", "/usr/share/novnc", "127.0.0.1:%d" % wport,
                                          "%s:%d" % addr],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.browser = None
        try:
            self.browser = Chromium(wd)
            self.browser.call("Page.navigate", {
                "url": "http://127.0.0.1:%d/vnc_lite.html?host=127.0.0.1&port=%d"
                       % (wport, wport)}, page=True)
            end, status = time.time() + 60, ""
            while time.time() < end:
                status = self.browser.eval(
                    "(document.getElementById('status')||{}).textContent") or ""
                if "Connected" in status:
                    break
                time.sleep(0.5)
            check("Connected to " + name in status, "noVNC says %r" % status)
        except BaseException:
            self.close()
            raise

    def canvas(self):
        """The canvas's place on the page: [left, top, width, height]."""
        return self.browser.eval("(function(){var r=document.querySelector('canvas')"
                                 ".getBoundingClientRect();return [r.left,r.top,r.width,"
                                 "r.height];})()")

    def screenshot(self):
        """The page as (width, RGB bytes)."""
        png = self.wd("novnc.png")
        with open(png, "wb") as f:
            f.write(base64.b64decode(self.browser.call(
                "Page.captureScreenshot", {"format": "png"}, page=True)["data"]))
        ppm = subprocess.run(["convert", png, "ppm:-"], capture_output=True, timeout=60).stdout
        hdr = ppm.split(b"\n", 3)
        return int(hdr[1].split()[0]), hdr[3]

    def picture(self, w, h):
        """The canvas as a @w x @h picture in the RFB client's format (4 bytes a pixel, the
        value 0xRRGGBB little-endian), read off a screenshot: unscaled, one to one."""
        left, top, cw, ch = self.canvas()
        check((round(cw), round(ch)) == (w, h), "the noVNC canvas is %rx%r, want %dx%d"
              % (cw, ch, w, h))
        pw, data = self.screenshot()
        out = bytearray()
        for y in range(int(top), int(top) + h):
            for x in range(int(left), int(left) + w):
                o = (y * pw + x) * 3
                out += bytes((data[o + 2], data[o + 1], data[o], 0))
        return bytes(out)

    def close(self):
        if self.browser:
            self.browser.close()
            self.browser = None
        self.ws.kill()
        self.ws.wait()


def firmware_screen_in_novnc(wd, vm, port, want, name):
    """The VGA text screen of @vm holds every string of @want through our RFB client, then
    through noVNC in the browser: the page's canvas has the VNC picture's pixels (all but a
    blinking cursor's) and the same text."""
    c = connect(("127.0.0.1", port))
    font = psf_cp437(FONT)
    w, h, fb, _ = text_screen_until(c, font, lambda t: all(x in t for x in want),
                                    "%r not on the VNC screen" % want, 60)
    page = NoVNC(wd, ("127.0.0.1", port), name)
    try:
        time.sleep(1)
        pic = page.picture(w, h)
    finally:
        page.close()
    c.close()
    ptext = "\n".join(screen_text(w, h, pic, font))
    check(all(x in ptext for x in want), "%r not on the noVNC page:\n%s" % (want, ptext))
    differ = sum(a != b for a, b in zip(pixels(pic), pixels(fb)))
    check(differ <= 9 * 16, "the noVNC page differs from the VNC picture in %d pixels" % differ)


@test
def firmware_screens_in_novnc(wd):
    """SeaBIOS's and GRUB's screens in noVNC in a browser, as a VNC viewer shows them."""
    from test_firmware import fw_vm, grub_iso

    check(os.path.exists(FONT), "the console font is missing (scripts/deps.sh)")
    port = free_port()
    vm = fw_vm(wd, [(29, "fbuf", "tcp=127.0.0.1:%d" % port, "")],
               extra=["-o", "fw.failwait=120"])
    vm.wait_for(rb"No bootable device", 180)
    firmware_screen_in_novnc(wd, vm, port, ["SeaBIOS (version", "No bootable device"], "vm0")
    vm.kill()
    iso = grub_iso(wd, "menu", GRUB_MENU_CFG % {"input": ""})
    port = free_port()
    vm = fw_vm(wd, [(3, "ahci-cd", iso, ""), (29, "fbuf", "tcp=127.0.0.1:%d" % port, "")],
               name="vm1")
    vm.wait_for(rb"KHYVE-GRUB-MENU", 300)
    firmware_screen_in_novnc(wd, vm, port, ["GNU GRUB", "khyve second"], "vm1")
    vm.check_alive()


@test
def console_novnc_in_chromium(wd):
    """The console in a real browser: noVNC through websockify, a screenshot of the page whose
    pixels show the guest's picture, and a key typed into the page reaching the guest."""
    vm = console_vm(wd, fbuf="w=640,h=480")
    vm.wait_for(rb"^console: gfx 640x480,", timeout=120)
    page = NoVNC(wd, vm.vnc)
    browser = page.browser
    try:
        time.sleep(1)
        left, top, cw, ch = page.canvas()
        pw, data = page.screenshot()
        check(cw > 300 and ch > 200, "the noVNC canvas is %rx%r" % (cw, ch))
        for i, colour in enumerate(BARS):
            x = int(left + (i * 80 + 40) * cw / 640)
            y = int(top + 100 * ch / 480)
            o = (y * pw + x) * 3
            got = data[o] << 16 | data[o + 1] << 8 | data[o + 2]
            check(got == colour, "noVNC page: bar %d at (%d, %d) is 0x%06x, want 0x%06x"
                  % (i, x, y, got, colour))
        # A key typed into the page: noVNC sends its keysym, the guest echoes the scan code.
        browser.call("Input.dispatchMouseEvent", {"type": "mousePressed", "x": left + 10,
                                                  "y": top + 10, "button": "left",
                                                  "clickCount": 1}, page=True)
        browser.call("Input.dispatchMouseEvent", {"type": "mouseReleased", "x": left + 10,
                                                  "y": top + 10, "button": "left",
                                                  "clickCount": 1}, page=True)
        for t in ("keyDown", "keyUp"):
            browser.call("Input.dispatchKeyEvent", {"type": t, "key": "q", "code": "KeyQ",
                                                    "windowsVirtualKeyCode": 81,
                                                    "text": "q" if t == "keyDown" else ""},
                         page=True)
        vm.wait_for(rb"^key 0x10 down\n", timeout=30)
        vm.wait_for(rb"^key 0x10 up\n", timeout=30)
    finally:
        page.close()
