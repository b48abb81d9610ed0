"""An update's stream: the MANIFEST, then each file it lists, written into a staging directory and hashed.

Loaded by receive mode only (receive.py). Data messages on meterbridge/{client_id}/update/data hold 4
bytes big-endian stream offset, then up to max_payload - 4 bytes. The stream is the MANIFEST (lines
`<sha256> <size> <path>`), then its files in its order; each file is hashed as it is written, so the
HMAC over the manifest's hash (update_cmd.py) covers every byte. An empty chunk ends the stream. Each
chunk is acknowledged on update/status ({"ack": offset}); a gap asks for the stream from there
({"want": offset}). A firmware writes meterbridge/, lib/ and profiles/ of the code slot not running
(a/b) with its MANIFEST; a config writes config.json into cfgstage. Nothing but one chunk is in RAM.
"""

import binascii
import gc
import os
from hashlib import sha256

from .update_cmd import RESERVE, free, read, say

_DIRS = ("meterbridge/", "lib/", "profiles/")


class Refused(Exception):
    """An update the board will not take: why."""


def rmtree(path):
    try:
        entries = list(os.ilistdir(path))
    except OSError:
        return
    for e in entries:
        p = path + "/" + e[0]
        if e[1] == 0x4000:
            rmtree(p)
        else:
            os.remove(p)
    os.rmdir(path)


def staging(req):
    """The request's staging directory, emptied (of what a power cut in a transfer left): the code slot not
    running, or cfgstage. Refused when the flash has too little room for the stream."""
    path = ("b" if read()["code"] == "a" else "a") if req["kind"] == "firmware" else "cfgstage"
    rmtree(path)
    room = free()
    if room < req["total"] + RESERVE:
        raise Refused("flash full: the update needs %d bytes and %d more free, %d are free" %
                      (req["total"], RESERVE, room))
    return path


def _makedirs(path):
    at = 0
    while True:
        at = path.find("/", at + 1)
        if at < 0:
            return
        try:
            os.mkdir(path[:at])
        except OSError:
            pass  # there already


class Transfer:
    """One stream into a staging directory: the MANIFEST first, then each file it lists, hashed."""

    def __init__(self, req, staging):
        self.req = req
        self.dir = staging
        self.off = 0
        self.files = 0
        self.low = gc.mem_free()  # the free heap at its lowest while chunks arrived (each after a collection)
        self._m = None  # the manifest, read line by line once it is whole
        self._open("MANIFEST", req["size"], req["sha256"])

    def _open(self, path, size, digest):
        full = self.dir + "/" + path
        _makedirs(full)
        self._f = open(full, "wb")
        self._h = sha256()
        self._path, self._left, self._want = path, size, digest
        if not size:
            self._close()

    def _close(self):
        self._f.close()
        self._f = None
        if binascii.hexlify(self._h.digest()).decode() != self._want:
            raise Refused("%s: sha256 differs from the manifest (damaged on the way)" % self._path)
        if self._m is None:
            self._m = open(self.dir + "/MANIFEST")
        else:
            self.files += 1
        self._next()

    def _next(self):
        line = self._m.readline()
        if not line:
            return
        parts = line.split()
        if len(parts) != 3 or not parts[1].isdigit():
            raise Refused("MANIFEST: bad line")
        digest, size, path = parts
        kind = self.req["kind"]
        ok = path == "config.json" if kind == "config" else path.startswith(_DIRS)
        if not ok or ".." in path or "//" in path:
            raise Refused("MANIFEST: %s is not a file a %s update may write" % (path, kind))
        self._open(path, int(size), digest)

    def feed(self, mv):
        i, n = 0, len(mv)
        while i < n:
            if self._f is None:
                raise Refused("the stream is longer than its manifest")
            k = min(self._left, n - i)
            part = mv[i : i + k]
            self._f.write(part)
            self._h.update(part)
            self._left -= k
            i += k
            if not self._left:
                self._close()
        self.off += n

    def end(self):
        """The stream ended at self.off: complete, or refused as truncated."""
        if self._f is not None or self.off != self.req["total"]:
            raise Refused("truncated: %d of %d bytes arrived" % (self.off, self.req["total"]))
        self._m.close()

    def abort(self):
        for f in (self._f, self._m):
            if f is not None:
                f.close()
        rmtree(self.dir)

    def take(self, app, msg, oversize):
        """One data message; True once the stream ended whole."""
        self.low = min(self.low, gc.mem_free())  # the receiver collected just before
        off = int.from_bytes(bytes(msg[:4]), "big")
        if oversize or off > self.off:  # a chunk went missing (or was cut): ask for the stream from there
            say(app, want=self.off)
            return False
        if off < self.off:
            return False  # sent again after a want: already written
        if len(msg) > 4:
            self.feed(memoryview(msg)[4:])
            app.link.publish(app.update[2] + b"status", b'{"ack":%d}' % self.off)
            return False
        self.end()
        return True
