"""Crafting hostile snapshot files: read the header and the section table, change any section
(the metadata's configuration, say), and write the file back with every checksum recomputed, as
an attacker would.  The layout is taken from doc/snapshot-format.md, not from khyve's code."""

import ctypes
import json
import struct
import subprocess

_xx = ctypes.CDLL("libxxhash.so.0")
_xx.XXH3_64bits.restype = ctypes.c_uint64
_xx.XXH3_64bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]

HDR = struct.Struct("<8sII32sQIQQQQQ")  # the fields header_io codes, 100 bytes
SEC = struct.Struct("<II48sQQQ")


def xxh3(data):
    return _xx.XXH3_64bits(data, len(data))


class Snap:
    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            self.page = bytearray(f.read(4096))
            (self.magic, self.version, self.hsize, self.kver, self.created, nsec, toff, tlen,
             _, self.moff, self.msize) = HDR.unpack_from(self.page)
            f.seek(toff)
            table = f.read(tlen)
            self.sections = []
            for i in range(nsec):
                typ, ver, sid, off, length, _ = SEC.unpack_from(table, i * SEC.size)
                f.seek(off)
                self.sections.append([typ, ver, sid, f.read(length)])

    def find(self, sid):
        for s in self.sections:
            if s[2].rstrip(b"\0").decode() == sid:
                return s
        raise KeyError(sid)

    def meta(self):
        return json.loads(self.find("meta")[3])

    def extents(self):
        """(file offset, length) of each guest-memory extent the memory map lists."""
        data = self.find("memory")[3]
        nreg = struct.unpack_from("<I", data)[0]
        pos = 4 + nreg * 24
        n = struct.unpack_from("<I", data, pos)[0]
        return [struct.unpack_from("<QQ", data, pos + 4 + 24 * i) for i in range(n)]

    def set_meta(self, meta):
        self.find("meta")[3] = json.dumps(meta).encode()

    def store(self, path):
        """A copy of the file read, with the sections after the memory area, the table after
        them, every checksum recomputed; the memory area (sparse) and the authentication
        block are left as they were."""
        pos = self.moff + self.msize
        body, table = b"", b""
        for typ, ver, sid, data in self.sections:
            table += SEC.pack(typ, ver, sid, pos, len(data), xxh3(data))
            body += data
            pos += len(data)
        hdr = HDR.pack(self.magic, self.version, self.hsize, self.kver, self.created,
                       len(self.sections), pos, len(table), xxh3(table), self.moff, self.msize)
        page = bytearray(self.page)
        page[:HDR.size] = hdr
        page[HDR.size:HDR.size + 8] = struct.pack("<Q", xxh3(hdr))
        if path != self.path:
            subprocess.run(["cp", "--sparse=always", self.path, path], check=True)
        with open(path, "r+b") as f:
            f.write(page)
            f.seek(self.moff + self.msize)
            f.write(body + table)
            f.truncate()


def rewrite_config(src, dst, changes):
    """Copy snapshot @src to @dst with its saved configuration changed (None removes a key)."""
    s = Snap(src)
    meta = s.meta()
    for k, v in changes.items():
        if v is None:
            meta["config"].pop(k, None)
        else:
            meta["config"][k] = v
    s.set_meta(meta)
    s.store(dst)
