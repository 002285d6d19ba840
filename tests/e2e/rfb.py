"""A small RFB 3.8 client for the console tests: handshake (no authentication or VNC
authentication), raw frame buffer updates with DesktopSize, key and pointer events.

The frame buffer is kept as 32-bit pixels 0x00RRGGBB (the client asks for that format), in
a bytearray of width * height * 4 bytes, little endian."""

import socket
import struct
import time

# ---- DES, for VNC authentication only (the protocol fixes it) ----

_PC1 = [57, 49, 41, 33, 25, 17, 9, 1, 58, 50, 42, 34, 26, 18, 10, 2, 59, 51, 43, 35, 27, 19,
        11, 3, 60, 52, 44, 36, 63, 55, 47, 39, 31, 23, 15, 7, 62, 54, 46, 38, 30, 22, 14, 6,
        61, 53, 45, 37, 29, 21, 13, 5, 28, 20, 12, 4]
_PC2 = [14, 17, 11, 24, 1, 5, 3, 28, 15, 6, 21, 10, 23, 19, 12, 4, 26, 8, 16, 7, 27, 20, 13,
        2, 41, 52, 31, 37, 47, 55, 30, 40, 51, 45, 33, 48, 44, 49, 39, 56, 34, 53, 46, 42,
        50, 36, 29, 32]
_SHIFTS = [1, 1, 2, 2, 2, 2, 2, 2, 1, 2, 2, 2, 2, 2, 2, 1]
_IP = [58, 50, 42, 34, 26, 18, 10, 2, 60, 52, 44, 36, 28, 20, 12, 4, 62, 54, 46, 38, 30, 22,
       14, 6, 64, 56, 48, 40, 32, 24, 16, 8, 57, 49, 41, 33, 25, 17, 9, 1, 59, 51, 43, 35,
       27, 19, 11, 3, 61, 53, 45, 37, 29, 21, 13, 5, 63, 55, 47, 39, 31, 23, 15, 7]
_FP = [_IP.index(i) + 1 for i in range(1, 65)]
_E = [32, 1, 2, 3, 4, 5, 4, 5, 6, 7, 8, 9, 8, 9, 10, 11, 12, 13, 12, 13, 14, 15, 16, 17, 16,
      17, 18, 19, 20, 21, 20, 21, 22, 23, 24, 25, 24, 25, 26, 27, 28, 29, 28, 29, 30, 31,
      32, 1]
_P = [16, 7, 20, 21, 29, 12, 28, 17, 1, 15, 23, 26, 5, 18, 31, 10, 2, 8, 24, 14, 32, 27, 3,
      9, 19, 13, 30, 6, 22, 11, 4, 25]
_S = [
    "14 4 13 1 2 15 11 8 3 10 6 12 5 9 0 7 0 15 7 4 14 2 13 1 10 6 12 11 9 5 3 8 "
    "4 1 14 8 13 6 2 11 15 12 9 7 3 10 5 0 15 12 8 2 4 9 1 7 5 11 3 14 10 0 6 13",
    "15 1 8 14 6 11 3 4 9 7 2 13 12 0 5 10 3 13 4 7 15 2 8 14 12 0 1 10 6 9 11 5 "
    "0 14 7 11 10 4 13 1 5 8 12 6 9 3 2 15 13 8 10 1 3 15 4 2 11 6 7 12 0 5 14 9",
    "10 0 9 14 6 3 15 5 1 13 12 7 11 4 2 8 13 7 0 9 3 4 6 10 2 8 5 14 12 11 15 1 "
    "13 6 4 9 8 15 3 0 11 1 2 12 5 10 14 7 1 10 13 0 6 9 8 7 4 15 14 3 11 5 2 12",
    "7 13 14 3 0 6 9 10 1 2 8 5 11 12 4 15 13 8 11 5 6 15 0 3 4 7 2 12 1 10 14 9 "
    "10 6 9 0 12 11 7 13 15 1 3 14 5 2 8 4 3 15 0 6 10 1 13 8 9 4 5 11 12 7 2 14",
    "2 12 4 1 7 10 11 6 8 5 3 15 13 0 14 9 14 11 2 12 4 7 13 1 5 0 15 10 3 9 8 6 "
    "4 2 1 11 10 13 7 8 15 9 12 5 6 3 0 14 11 8 12 7 1 14 2 13 6 15 0 9 10 4 5 3",
    "12 1 10 15 9 2 6 8 0 13 3 4 14 7 5 11 10 15 4 2 7 12 9 5 6 1 13 14 0 11 3 8 "
    "9 14 15 5 2 8 12 3 7 0 4 10 1 13 11 6 4 3 2 12 9 5 15 10 11 14 1 7 6 0 8 13",
    "4 11 2 14 15 0 8 13 3 12 9 7 5 10 6 1 13 0 11 7 4 9 1 10 14 3 5 12 2 15 8 6 "
    "1 4 11 13 12 3 7 14 10 15 6 8 0 5 9 2 6 11 13 8 1 4 10 7 9 5 0 15 14 2 3 12",
    "13 2 8 4 6 15 11 1 10 9 3 14 5 0 12 7 1 15 13 8 10 3 7 4 12 5 6 11 0 14 9 2 "
    "7 11 4 1 9 12 14 2 0 6 10 13 15 3 5 8 2 1 14 7 4 10 8 13 15 12 9 0 3 5 6 11",
]
_S = [[int(v) for v in s.split()] for s in _S]


def _perm(v, table, width):
    out = 0
    for pos in table:
        out = (out << 1) | ((v >> (width - pos)) & 1)
    return out


def des_encrypt(key8, block8):
    k = _perm(int.from_bytes(key8, "big"), _PC1, 64)
    c, d = k >> 28, k & 0xFFFFFFF
    subkeys = []
    for s in _SHIFTS:
        c = ((c << s) | (c >> (28 - s))) & 0xFFFFFFF
        d = ((d << s) | (d >> (28 - s))) & 0xFFFFFFF
        subkeys.append(_perm((c << 28) | d, _PC2, 56))
    v = _perm(int.from_bytes(block8, "big"), _IP, 64)
    left, right = v >> 32, v & 0xFFFFFFFF
    for sk in subkeys:
        x = _perm(right, _E, 32) ^ sk
        f = 0
        for i in range(8):
            six = (x >> (42 - 6 * i)) & 0x3F
            f = (f << 4) | _S[i][((six & 0x20) >> 4 | (six & 1)) * 16 + ((six >> 1) & 0xF)]
        left, right = right, left ^ _perm(f, _P, 32)
    return _perm((right << 32) | left, _FP, 64).to_bytes(8, "big")


assert des_encrypt(bytes.fromhex("133457799BBCDFF1"),
                   bytes.fromhex("0123456789ABCDEF")).hex() == "85e813540f0ab405"


def vnc_response(password, challenge):
    """VNC authentication: DES with the password (8 bytes, each bit-reversed) as the key."""
    key = (password.encode()[:8] + b"\0" * 8)[:8]
    key = bytes(int("{:08b}".format(b)[::-1], 2) for b in key)
    return des_encrypt(key, challenge[:8]) + des_encrypt(key, challenge[8:16])


# ---- the client ----

class RFBError(Exception):
    pass


class RFB:
    def __init__(self, addr, password=None, timeout=30, shared=True):
        if isinstance(addr, str):
            self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        else:
            self.s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        self.s.connect(addr)
        self.buf = b""
        self.handshake(password, shared)

    def close(self):
        self.s.close()

    def recv(self, n):
        while len(self.buf) < n:
            data = self.s.recv(max(65536, n - len(self.buf)))
            if not data:
                raise RFBError("server closed the connection")
            self.buf += data
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def handshake(self, password, shared):
        ver = self.recv(12)
        if not ver.startswith(b"RFB 003."):
            raise RFBError("not an RFB server: %r" % ver)
        self.server_version = ver.decode().strip()
        self.s.sendall(b"RFB 003.008\n")
        n = self.recv(1)[0]
        if n == 0:
            reason = self.recv(struct.unpack(">I", self.recv(4))[0])
            raise RFBError("refused: %s" % reason.decode(errors="replace"))
        types = list(self.recv(n))
        self.security_types = types
        if password is not None and 2 in types:
            self.s.sendall(bytes([2]))
            self.s.sendall(vnc_response(password, self.recv(16)))
        elif 1 in types:
            self.s.sendall(bytes([1]))
        else:
            raise RFBError("no usable security type in %r" % types)
        result = struct.unpack(">I", self.recv(4))[0]
        if result != 0:
            reason = self.recv(struct.unpack(">I", self.recv(4))[0])
            raise RFBError("authentication failed: %s" % reason.decode(errors="replace"))
        self.s.sendall(bytes([1 if shared else 0]))
        w, h = struct.unpack(">HH", self.recv(4))
        self.recv(16)  # the server's pixel format
        self.name = self.recv(struct.unpack(">I", self.recv(4))[0]).decode(errors="replace")
        # 32 bpp, depth 24, little endian, true colour, 0x00RRGGBB.
        self.s.sendall(struct.pack(">BxxxBBBBHHHBBBxxx", 0, 32, 24, 0, 1, 255, 255, 255,
                                   16, 8, 0))
        self.s.sendall(struct.pack(">BxHii", 2, 2, 0, -223))  # Raw, DesktopSize
        self.resize(w, h)

    def resize(self, w, h):
        self.width, self.height = w, h
        self.fb = bytearray(w * h * 4)

    def request(self, incremental=True):
        self.s.sendall(struct.pack(">BBHHHH", 3, 1 if incremental else 0, 0, 0, self.width,
                                   self.height))

    def read_message(self):
        """One server message; returns its type (0 = an update, with its rectangles)."""
        t = self.recv(1)[0]
        if t == 0:
            self.recv(1)
            n = struct.unpack(">H", self.recv(2))[0]
            rects = []
            for _ in range(n):
                x, y, w, h, enc = struct.unpack(">HHHHi", self.recv(12))
                if enc == 0:
                    data = self.recv(w * h * 4)
                    for row in range(h):
                        o = ((y + row) * self.width + x) * 4
                        self.fb[o:o + w * 4] = data[row * w * 4:(row + 1) * w * 4]
                elif enc == -223:
                    self.resize(w, h)
                else:
                    raise RFBError("unexpected encoding %d" % enc)
                rects.append((x, y, w, h, enc))
            self.last_rects = rects
        elif t == 1:
            self.recv(3)
            n = struct.unpack(">H", self.recv(2))[0]
            self.recv(6 * n)
        elif t == 2:
            pass
        elif t == 3:
            self.recv(3)
            self.recv(struct.unpack(">I", self.recv(4))[0])
        else:
            raise RFBError("unknown server message %d" % t)
        return t

    def capture(self, timeout=30):
        """The whole picture as it is now (a full update)."""
        end = time.time() + timeout
        self.request(incremental=False)
        while time.time() < end:
            if self.read_message() == 0:
                covered = sum(w * h for (_, _, w, h, e) in self.last_rects if e == 0)
                if covered >= self.width * self.height:
                    return self.width, self.height, bytes(self.fb)
                if any(e == -223 for (*_, e) in self.last_rects):
                    self.request(incremental=False)
        raise RFBError("no full update within %d s" % timeout)

    def updates_for(self, seconds):
        """Ask for incremental updates for @seconds; returns how many updates came."""
        end = time.time() + seconds
        n = 0
        self.s.settimeout(0.5)
        self.request()
        try:
            while time.time() < end:
                try:
                    t = self.read_message()
                except socket.timeout:
                    continue
                if t == 0:
                    n += 1
                    self.request()
        finally:
            self.s.settimeout(30)
        return n

    def pixel(self, x, y):
        o = (y * self.width + x) * 4
        return self.fb[o] | self.fb[o + 1] << 8 | self.fb[o + 2] << 16

    def key(self, keysym, down):
        self.s.sendall(struct.pack(">BBxxI", 4, 1 if down else 0, keysym))

    def tap(self, keysym):
        self.key(keysym, True)
        self.key(keysym, False)

    def pointer(self, x, y, mask=0):
        self.s.sendall(struct.pack(">BBHH", 5, mask, x, y))
