"""The end of an update: a config checked in full, then the switch to the trial and a reset.

Loaded by receive mode (receive.py) once the stream is whole.
"""

import os

import slots

from . import hal
from .log import INFO, log
from .update import Refused, rmtree, say


def _check_config(path):
    """The config's every field, as start-up checks it, and an update_key (else no update could follow);
    the profiles it names must be on the board. Refused names the field and the reason."""
    from . import config

    try:
        cfg = config.load(path, hal.supported_baud)
    except config.ConfigError as e:
        raise Refused("config: " + str(e)) from None
    if not cfg["update_key"]:
        raise Refused("config: update_key: missing (the board could not be updated any more)")
    for i, m in enumerate(cfg["meters"]):
        name = m["profile"]
        try:
            os.stat(name if "/" in name else hal.profiles_dir() + "/" + name + ".json")
        except OSError:
            raise Refused("config: meters[%d].profile: %s is not on the board" % (i, name)) from None


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
    st["receive"] = None
    st["trial"] = {"code": code, "config": config, "version": req["version"], "boots": 0,
                   "health_s": req["health_s"], "deadline_s": req["deadline_s"], "why": None}
    st["last"] = req["version"]
    slots.write(st)  # the switch: one atomic rename
    log(INFO, "update to version", req["version"], "received (%d files); resetting into it" % files)
    say(app, re="data", version=req["version"], state="switching", heap_floor=low)
    slots.reset()
