"""The signed commands of an update (hello, firmware, config), checked before anything changes.

Protocol (the host side is host/meterbridge/update.py), under meterbridge/{client_id}/update/:
- cmd: `<HMAC-SHA256 of the JSON, 64 hex> <JSON>`, the JSON {"client_id", "kind": "hello" | "firmware" |
  "config", "version", "size" and "sha256" of the MANIFEST, "total" bytes of the stream, "health_s",
  "deadline_s"}. A wrong HMAC, another board's client_id, a version not above the last one switched
  to, a version on trial, a transaction open on a meter, or too little flash refuse it; nothing changes.
- status (out): {"re", "state": "ready" | "restarting" | "receiving" | "switching" | "refused", "why"}.
The running bridge loads this module for a command and unloads it after (app.py); an accepted firmware
or config command is recorded in slots.json ("receive") and the board resets, and the next start
receives the stream with the whole heap (receive.py, which checks newer commands here too). The bridge
has a few KB to spare, so this module is as small as it can be and loads nothing else, not even
slots.py: it reads and writes slots.json the way slots.py does.
"""

import json
import os
import time
from binascii import hexlify, unhexlify
from hashlib import sha256

from . import hal

RESERVE = 16384  # flash left free for the journal and slots.json after an update


def hmac_sha256(key, msg):
    """RFC 2104 HMAC with SHA-256 (block size 64): H((K ^ opad) | H((K ^ ipad) | msg))."""
    if len(key) > 64:
        key = sha256(key).digest()
    key += bytes(64 - len(key))
    inner = sha256(bytes(b ^ 0x36 for b in key))
    inner.update(msg)
    outer = sha256(bytes(b ^ 0x5C for b in key))
    outer.update(inner.digest())
    return outer.digest()


def say(app, **kw):
    app.link.publish(app.update[2] + b"status", json.dumps(kw))


def read():
    """slots.json as slots.read() gives it."""
    try:
        with open("slots.json") as f:
            return json.load(f)
    except (OSError, ValueError):  # none yet (a deploy)
        return {"v": 1, "code": "", "config": "config.json", "version": 0, "last": 0, "trial": None, "result": None}


def free():
    s = os.statvfs(".")
    return s[0] * s[4]


def check(app, msg, st):
    """The accepted request of a signed command (msg, a memoryview), given slots.json's state st; None once a
    hello or a bad HMAC is answered; ValueError(why) else."""
    key = app.update[0]
    if key is None:
        raise ValueError("no update_key in the board's config: deploy it over USB once")
    mac = hexlify(hmac_sha256(unhexlify(key), msg[65:]))
    d = len(msg) < 66
    for x, y in zip(mac, msg):  # compared in a time that does not depend on where they differ
        d |= x ^ y
    if d:
        say(app, re="cmd", state="refused", why="bad HMAC: the update key differs")  # a transfer goes on
        return None
    req = json.loads(msg[65:])
    t = st["trial"]
    if req["client_id"] != app.update[1]:
        raise ValueError("signed for another board")
    if req["kind"] == "hello":
        say(app, re="hello", state="ready", version=(t or st)["version"], trial=bool(t), last=st["last"],
            platform=hal.PLATFORM, chunk=app.update[3] - 4, free=free())
        return None
    if t:
        raise ValueError("version %d is still on trial" % t["version"])
    v, top = req["version"], max(st["version"], st["last"])
    if type(v) is not int or v <= top:
        raise ValueError("version %r is not above %d (an older bundle, or one replayed)" % (v, top))
    if req["kind"] not in ("firmware", "config"):
        raise ValueError("unknown kind")
    if not 0 < req["health_s"] < req["deadline_s"] <= 3600:
        raise ValueError("health_s and deadline_s: 0 < health_s < deadline_s <= 3600 s")
    if free() < req["total"] + RESERVE:
        raise ValueError("flash full: the update needs %d bytes and %d more free, %d are free" %
                         (req["total"], RESERVE, free()))
    return req


def handle(app, msg):
    """A command to the running bridge (msg, a memoryview): an accepted update is recorded, then the board
    resets into receive mode; a refusal goes to update/status."""
    try:
        st = read()
        req = check(app, msg, st)
        if req is None:
            return
        for mod in app.modules:  # a charging session's metering is never cut by an update
            if mod.tx.journal.open:
                raise ValueError("a transaction is open on %s: update once it has stopped" % mod.meter.module_id)
        st["receive"] = dict(req, boots=0)
        with open("slots.json.new", "w") as f:  # as slots.write(): a new file renamed over the old one
            json.dump(st, f)
        os.rename("slots.json.new", "slots.json")
    except MemoryError:
        raise  # answered by the app
    except Exception as e:  # noqa: BLE001 - a bad command is answered, whatever is wrong with it
        say(app, re="update", state="refused", why=str(e) if isinstance(e, ValueError) else repr(e))
        return
    say(app, re="cmd", version=req["version"], state="restarting")
    time.sleep_ms(300)  # as slots.reset(): what was just published leaves the socket
    hal.reset()
