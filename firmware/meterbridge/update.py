"""An update in receive mode (receive.py): the signed command checked in full, then its stream into a staging
directory, hashed as it arrives.

Protocol (the host side is host/meterbridge/update.py), under meterbridge/{client_id}/update/:
- cmd: `<HMAC-SHA256 of the JSON, 64 hex> <JSON>`, the JSON {"client_id", "kind": "hello" | "firmware" |
  "config", "version", "size" and "sha256" of the MANIFEST, "total" bytes of the stream, "health_s",
  "deadline_s"}. The running bridge refuses a wrong HMAC, an open transaction or a version on trial, and
  resets into receive mode for the rest (update_cmd.py). Here another board's client_id, a version not
  above the last one switched to, or too little flash refuse it; nothing changes.
- data: 4 bytes big-endian stream offset, then up to max_payload - 4 bytes. The stream is the MANIFEST
  (lines `<sha256> <size> <path>`), then its files in its order; each file is hashed as it is written, so
  the HMAC over the manifest's hash covers every byte. An empty chunk ends the stream.
- status (out): {"re", "state": "restarting" | "ready" | "receiving" | "switching" | "refused", "why"},
  {"ack": offset} after each chunk, {"want": offset} when one went missing.
A firmware writes meterbridge/, lib/ and profiles/ of the code slot not running (a/b) with its MANIFEST;
a config writes config.json into cfgstage. Nothing but one chunk is in RAM.
"""

import binascii
import gc
import json
import os
from hashlib import sha256

import slots

from . import hal
from .update_cmd import signed

_DIRS = ("meterbridge/", "lib/", "profiles/")
_RESERVE = 16384  # flash left free for the journal and slots.json after an update


class Refused(Exception):
    """An update the board will not take: why."""


def say(app, **kw):
    app.link.publish(app.update[2] + b"status", json.dumps(kw))


def _free():
    s = os.statvfs(".")
    return s[0] * s[4]


def check(app, msg):
    """The accepted request of a command, or None once a hello or a bad HMAC is answered; Refused else."""
    if not signed(app.update[0], msg):
        say(app, re="cmd", state="refused", why="bad HMAC: the update key differs")  # a transfer goes on
        return None
    try:
        req = json.loads(msg[65:])
    except ValueError:
        raise Refused("not JSON") from None
    if req.get("client_id") != app.update[1]:
        raise Refused("signed for another board")
    st = slots.read()
    top = max(st["version"], st["last"])
    if req.get("kind") == "hello":
        say(app, re="hello", state="ready", version=st["version"], trial=False, last=st["last"],
            platform=hal.PLATFORM, chunk=app.update[3] - 4, free=_free())
        return None
    version = req.get("version")
    if type(version) is not int or version <= top:
        raise Refused("version %r is not above %d (an older bundle, or one replayed)" % (version, top))
    if req.get("kind") not in ("firmware", "config"):
        raise Refused("unknown kind %r" % req.get("kind"))
    h, d = req.get("health_s"), req.get("deadline_s")
    if not (type(h) is int and type(d) is int and 0 < h < d <= 3600):
        raise Refused("health_s and deadline_s: whole seconds, 0 < health_s < deadline_s <= 3600")
    if type(req.get("total")) is not int or type(req.get("size")) is not int or \
            not isinstance(req.get("sha256"), str):
        raise Refused("size, sha256 and total of the stream are missing")
    return req


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
    path = ("b" if slots.read()["code"] == "a" else "a") if req["kind"] == "firmware" else "cfgstage"
    rmtree(path)
    room = _free()
    if room < req["total"] + _RESERVE:
        raise Refused("flash full: the update needs %d bytes and %d more free, %d are free" %
                      (req["total"], _RESERVE, room))
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
