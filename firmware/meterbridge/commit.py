"""A version on trial commits itself once it has proved healthy; slots.py rolls it back otherwise.

Healthy for health_s without a break: the MQTT link is up all along, and meters were read while it
was (their values went out), or no meter answered (a board without its meter, or without a clock
yet, can still be reached and updated again). Loaded only on a start on trial.
"""

import asyncio
import json
import sys
import time

import slots

from . import hal
from .log import INFO, log


def _cycles(app):
    """Poll cycles that gave a whole dataset, which the app publishes while the link is up."""
    return sum(m.meter.cycles - sum(m.meter.errors) for m in app.modules)


async def watch(app):
    trial = slots.trial()
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
            slots.commit()
            log(INFO, "update: version", trial["version"], "committed after a healthy", trial["health_s"], "s")
            app.link.publish(app.update[2] + b"result", json.dumps(slots.read()["result"]), True)
            package = sys.modules[__name__.rpartition(".")[0]]
            sys.modules.pop(__name__, None)  # done for this start: unloaded when the task ends
            if hasattr(package, "commit"):
                delattr(package, "commit")
            return
