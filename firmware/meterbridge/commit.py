"""A version on trial commits itself once it has proved healthy; slots.py rolls it back otherwise.

Healthy for health_s without a break: the MQTT link is up all along, and meters were read while it
was (their values went out), or no meter answered (a board without its meter, or without a clock
yet, can still be reached and updated again). Loaded only on a start on trial.
"""

import asyncio
import json
import os
import sys
import time

from . import hal
from .log import INFO, log


def _cycles(app):
    """Poll cycles that gave a whole dataset, which the app publishes while the link is up."""
    return sum(m.meter.cycles - sum(m.meter.errors) for m in app.modules)


def _commit():
    """Make the trial the running version in slots.json (slots.py's format, written atomically as slots.write
    does): here, for loading slots.py takes more heap than a bridge has to spare."""
    with open("slots.json") as f:
        st = json.load(f)
    t = st["trial"]
    st.update(code=t["code"], config=t["config"], version=t["version"], trial=None,
              result={"version": t["version"], "state": "committed", "why": None})
    with open("slots.json.new", "w") as f:  # as slots.write(): a new file renamed over the old one
        json.dump(st, f)
    try:
        os.rename("slots.json.new", "slots.json")
    except OSError:
        os.remove("slots.json")  # FAT refuses to rename over a file
        os.rename("slots.json.new", "slots.json")
    return st["result"]


async def watch(app, trial):
    """trial: slots.json's "trial" of this start."""
    need = trial["health_s"] * 1000
    since = None
    while True:
        await asyncio.sleep_ms(1000)
        if not app.link.up:
            since = None
            continue
        now = time.ticks_ms()
        if since is None:
            since, cycles, answered = now, _cycles(app), False
        answered = answered or any(m.meter.fresh() for m in app.modules)
        values = _cycles(app) > cycles or not answered or hal.epoch_ms() is None
        if time.ticks_diff(now, since) >= need and values:
            try:
                result = _commit()
            except MemoryError:
                continue  # tried again in a second
            app.trial = None
            log(INFO, "update: version", trial["version"], "committed after a healthy", trial["health_s"], "s")
            app.link.publish(app.update[2] + b"result", json.dumps(result), True)
            package = sys.modules[__name__.rpartition(".")[0]]
            sys.modules.pop(__name__, None)  # done for this start: unloaded when the task ends
            if hasattr(package, "commit"):
                delattr(package, "commit")
            return
