"""The signed commands of an update (hello, firmware, config): checked before anything changes.

Loaded by update.py for a command and unloaded right after it.
"""

import binascii
import json
import os
from hashlib import sha256

from micropython import const

import slots

from . import hal
from .log import INFO, log
from .update import Refused, Transfer, rmtree, say

_BLOCK = const(64)  # SHA-256 block size, RFC 2104's B
_RESERVE = const(16384)  # flash left free for the journal and slots.json after an update


def hmac_sha256(key, msg):
    """RFC 2104 HMAC with SHA-256: H((K ^ opad) | H((K ^ ipad) | msg))."""
    if len(key) > _BLOCK:
        key = sha256(key).digest()
    key = key + bytes(_BLOCK - len(key))
    inner = sha256(bytes(b ^ 0x36 for b in key))
    inner.update(msg)
    outer = sha256(bytes(b ^ 0x5C for b in key))
    outer.update(inner.digest())
    return outer.digest()


def _same(a, b):
    """Equal bytes, compared in time that does not depend on where they differ."""
    if len(a) != len(b):
        return False
    d = 0
    for x, y in zip(a, b):
        d |= x ^ y
    return d == 0


def _free():
    s = os.statvfs(".")
    return s[0] * s[4]


def check(app, msg, oversize):
    """The accepted request of a command, or None once a hello or a bad HMAC is answered; Refused else."""
    key, client_id = app.update[0], app.update[1]
    if key is None:
        raise Refused("no update_key in the board's config: deploy it over USB once")
    if oversize or len(msg) < 66 or msg[64:65] != b" ":
        raise Refused("not a signed command")
    body = msg[65:]
    if not _same(binascii.hexlify(hmac_sha256(binascii.unhexlify(key), body)), msg[:64]):
        say(app, re="cmd", state="refused", why="bad HMAC: the update key differs")  # a transfer goes on
        return None
    req = json.loads(body)
    if req.get("client_id") != client_id:
        raise Refused("signed for another board")
    st = slots.read()
    run = slots.running()
    if req["kind"] == "hello":
        say(app, re="hello", state="ready", version=run["version"], trial=run["trial"], last=st["last"],
             platform=hal.PLATFORM, chunk=app.update[3] - 4, free=_free())
        return None
    version = req["version"]
    if run["trial"]:
        raise Refused("version %d is still on trial" % run["version"])
    if type(version) is not int or version <= max(st["version"], st["last"]):
        raise Refused("version %r is not above %d (an older bundle, or one replayed)" %
                      (version, max(st["version"], st["last"])))
    if req["kind"] not in ("firmware", "config"):
        raise Refused("unknown kind %r" % req["kind"])
    h, d = req["health_s"], req["deadline_s"]
    if not (type(h) is int and type(d) is int and 0 < h < d <= 3600):
        raise Refused("health_s and deadline_s: whole seconds, 0 < health_s < deadline_s <= 3600")
    return req


def start(app, req):
    """A transfer for an accepted request, into a cleared staging directory with room for it."""
    if req["kind"] == "firmware":
        staging = "b" if slots.running()["code"] == "a" else "a"
    else:
        staging = "cfgstage"
    rmtree(staging)
    os.mkdir(staging)
    room = _free()
    if room < req["total"] + _RESERVE:
        rmtree(staging)
        raise Refused("flash full: the update needs %d bytes and %d more free, %d are free" %
                      (req["total"], _RESERVE, room))
    t = Transfer(req, staging)
    log(INFO, "update to version", req["version"], "(%s, %d bytes) started" % (req["kind"], req["total"]))
    say(app, re="cmd", version=req["version"], state="receiving")
    return t
