"""Updates over MQTT: a signed command starts one, the files stream into a free slot, slots.py switches.

Loaded only when a message arrives on meterbridge/{client_id}/update/cmd or .../update/data, and
unloaded when the transfer ends. Protocol (the host side is host/meterbridge/update.py):
- cmd: `<HMAC-SHA256 of the JSON, 64 hex> <JSON>`, the JSON {"client_id", "kind": "hello" | "firmware" |
  "config", "version", "size" and "sha256" of the MANIFEST, "total" bytes of the stream, "health_s",
  "deadline_s"}. A wrong HMAC, another board's client_id, a version not above the last one switched
  to, or too little flash refuse it; nothing on the board changes.
- data: 4 bytes big-endian stream offset, then up to chunk bytes. The stream is the MANIFEST (lines
  `<sha256> <size> <path>`), then its files in its order; each file is hashed as it is written, so the
  HMAC over the manifest's hash covers every byte. An empty chunk ends the stream.
- status (out): {"re", "state": "ready" | "receiving" | "switching" | "refused", "why"}, {"ack": offset}
  after each chunk, {"want": offset} when one went missing; `switching` carries the heap floor seen.
A firmware goes to the slot not running (a/b) with its MANIFEST; a config (JSON with an update_key)
becomes config.a.json or config.b.json. Either starts as a trial (slots.py), whose start-up checks
the config's every field.
This module holds the stream; update_cmd (commands) and update_switch (the end) are loaded for
their moment only, so a transfer needs little more RAM than this module and one chunk.
"""

import binascii
import gc
import json
import os
import sys
from hashlib import sha256

from .log import WARN, log

_DIRS = ("meterbridge/", "lib/", "profiles/")

_t = None  # the transfer under way


class Refused(Exception):
    """An update the board will not take: why."""


def say(app, **kw):
    app.link.publish(app.update[2] + b"status", json.dumps(kw))


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


def _part(name):
    """A module of this package, loaded now; _unload(name) drops it again."""
    full = __name__.rpartition(".")[0] + "." + name
    __import__(full)
    return sys.modules[full]


def _unload(name):
    package = sys.modules[__name__.rpartition(".")[0]]
    sys.modules.pop(package.__name__ + "." + name, None)
    if hasattr(package, name):
        delattr(package, name)
    gc.collect()


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
        self.low = min(self.low, gc.mem_free())  # app._on_update collected just before
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


def handle(app, kind, msg, oversize):
    """A message on update/cmd (kind "cmd") or update/data; refusals go to update/status."""
    global _t
    try:
        if kind == "cmd":
            try:
                cmd = _part("update_cmd")
                req = cmd.check(app, bytes(msg), oversize)
                if req is not None:
                    if _t is not None:
                        _t.abort()  # a new update replaces the one under way
                        _t = None
                    _t = cmd.start(app, req)
            finally:
                cmd = None
                _unload("update_cmd")
        elif _t is None:
            say(app, re="data", state="refused", why="no update under way")
        elif _t.take(app, msg, oversize):  # the stream is whole: switch to it
            t, _t = _t, None
            try:
                _part("update_switch").switch(app, t.req, t.dir, t.files, t.low)  # resets the board
            except Refused:
                rmtree(t.dir)
                raise
            finally:
                _unload("update_switch")
    except Refused as e:
        _refuse(app, str(e))
    except MemoryError:
        _refuse(app, "out of memory on the board")
    except (OSError, ValueError, KeyError, TypeError) as e:
        _refuse(app, "%s: %s" % (type(e).__name__, e))
    if _t is None:
        _unload(__name__.rpartition(".")[2])  # idle: this module leaves RAM when the app's call returns


def _refuse(app, why):
    global _t
    version = None
    gc.collect()
    if _t is not None:
        version = _t.req["version"]
        try:
            _t.abort()
        except OSError:
            pass  # the next update clears the staging directory again
        _t = None
    log(WARN, "update refused:", why)
    say(app, re="update", version=version, state="refused", why=why)
