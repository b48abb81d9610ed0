"""The end of an update: the switch to the trial (a config first checked for what an update needs).

Loaded by update.py once the stream is whole; the board resets at its end.
"""

import json
import os

import slots

from .log import INFO, log
from .update import Refused, rmtree, say


def _check_config(path):
    """What must hold before a config may be tried: JSON with an update_key. Every other field is checked by
    start-up on the trial start, with the heap still empty; a problem there rolls it back, naming the field."""
    try:
        with open(path) as f:
            doc = json.load(f)
    except ValueError as e:
        raise Refused("config: not valid JSON (%s)" % e) from None
    key = doc.get("update_key") if isinstance(doc, dict) else None
    if not isinstance(key, str) or len(key) < 32:
        raise Refused("config: update_key: missing (the board could not be updated any more)")


def switch(app, req, staging, files, low):
    """The whole update is on flash in staging: make it the trial and reset into it."""
    run = slots.running()
    code, config = run["code"], run["config"]
    if req["kind"] == "firmware":
        code = staging
    else:
        _check_config(staging + "/config.json")
        config = "config.b.json" if config == "config.a.json" else "config.a.json"
        os.rename(staging + "/config.json", config)
        rmtree(staging)
    st = slots.read()
    st["trial"] = {"code": code, "config": config, "version": req["version"], "boots": 0,
                   "health_s": req["health_s"], "deadline_s": req["deadline_s"], "why": None}
    st["last"] = req["version"]
    slots.write(st)  # the switch: one atomic rename
    log(INFO, "update to version", req["version"], "received (%d files); resetting into it" % files)
    say(app, re="data", version=req["version"], state="switching", heap_floor=low)
    slots.reset()
