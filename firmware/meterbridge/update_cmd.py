"""The running bridge's part of an update: a signed command hands over to a fresh start, or is refused.

Commands on meterbridge/{client_id}/update/cmd are `<HMAC-SHA256 of the JSON, 64 hex> <JSON>` (update.py
has the protocol). The bridge loads this small module at start-up, when a board's boot chose the slot,
while its heap is still whole: in the running bridge a few KB are free and in pieces, too few to load
code for a command. It checks only what must hold before the board resets: the HMAC (nothing unsigned
resets a board), no transaction open on any meter (an update never cuts a charging session's metering),
no version on trial. Then it writes the command to update.cmd (a new file renamed, so a power cut leaves
it whole or absent), answers `restarting` and resets; slots.boot() starts receive mode (receive.py),
which checks the command in full with the whole heap, answers it and takes the stream.
"""

import json
import os
import time
from binascii import hexlify, unhexlify
from hashlib import sha256

from . import hal


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


def signed(key, msg):
    """Whether the command msg carries the HMAC of its JSON with key (hex), compared in a time that does not
    depend on where they differ."""
    d = len(msg) < 66
    for x, y in zip(hexlify(hmac_sha256(unhexlify(key), msg[65:])), msg):
        d |= x ^ y
    return not d


def handle(app, msg):
    """A command to the running bridge: refused here, or written for receive mode and the board reset."""
    why = None
    if app.update[0] is None:
        why = "no update_key in the board's config: deploy it over USB once"
    elif not signed(app.update[0], msg):
        why = "bad HMAC: the update key differs"
    elif app.trial:
        why = "version %d is still on trial" % app.trial["version"]
    for mod in app.modules:
        if why is None and mod.tx.journal.open:
            why = "a transaction is open on %s: update once it has stopped" % mod.meter.module_id
    status = app.update[2] + b"status"
    if why is None:
        try:
            with open("update.cmd.new", "wb") as f:
                f.write(msg)
            os.rename("update.cmd.new", "update.cmd")
        except OSError as e:
            why = "update.cmd: %s" % e  # a full flash
    if why:
        app.link.publish(status, json.dumps({"re": "cmd", "state": "refused", "why": why}))
        return
    app.link.publish(status, b'{"re":"cmd","state":"restarting"}')
    time.sleep_ms(300)  # as slots.reset(): what was just published leaves the socket
    hal.reset()
