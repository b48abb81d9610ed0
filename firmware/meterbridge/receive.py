"""Receive mode: a start that loads nothing of the bridge takes an update's stream with the whole heap.

The running bridge accepted a signed command (update_cmd.handle), recorded it in slots.json and reset;
slots.boot() started this mode (sys.argv[2] == "receive") with a deadline, and this start is the
request's only one. Here: the config checked, the network, an MQTT link subscribed to update/data and
update/cmd (a newer command replaces the request), "receiving" on update/status, the stream written
into the staging directory (update.Transfer), then the switch to a trial (update_switch) and a reset.
A refusal (damaged, truncated, no data for _QUIET_MS, past deadline_s, a bad config) clears the staging
directory, records why in slots.json's result and resets into the running version, untouched throughout.
EVerest's requests are not served meanwhile. The watchdog is fed while the link and the timer make progress.
"""

import asyncio
import gc
import json
import sys
import time

from micropython import const

import slots

from . import hal, log
from .update import Refused, Transfer, staging
from .update_cmd import check, say

_QUIET_MS = const(20000)  # the host sends again after 10 s without an acknowledgement (update.py REPLY_S)
_LINK_DEADLINE_MS = const(15000)  # as app.py: a connect may block on socket timeouts a few times over
_TICK_MS = const(500)


class Receiver:
    """The link and the transfer of one request; update_cmd's and update.py's functions take it as the app."""

    modules = ()  # no meters here: the bridge checked for open transactions before it reset

    def __init__(self, cfg, req):
        b = cfg["broker"]
        base = ("meterbridge/%s/update/" % b["client_id"]).encode()
        self.update = (cfg["update_key"], b["client_id"], base, b["max_payload"])
        self.req = req
        self.began = self.last = time.ticks_ms()
        from .mqtt_link import MqttLink

        self.t = Transfer(req, staging(req))
        self.link = MqttLink(b, [base + b"cmd", base + b"data"], self._on_message, self._on_connect,
                             bytearray(b["max_payload"]))

    def _on_connect(self):
        self.last = time.ticks_ms()
        say(self, re="cmd", version=self.req["version"], state="receiving", chunk=self.update[3] - 4)
        if self.t.off:
            say(self, want=self.t.off)  # the link came back: the stream from where it stopped

    def _on_message(self, topic, msg, oversize, retained):
        if retained or not topic.startswith(self.update[2]):
            return  # EVerest's requests, kept by the broker for the bridge's session: not served here
        self.last = time.ticks_ms()
        gc.collect()
        try:
            if topic.endswith(b"/cmd"):
                self._command(msg)
            elif self.t.take(self, msg, oversize):  # the stream is whole: switch to it (the board resets)
                from .update_switch import switch

                switch(self, self.req, self.t.dir, self.t.files, self.t.low)
        except Refused as e:
            self.fail(str(e))
        except MemoryError:
            self.fail("out of memory on the board")
        except (OSError, ValueError, KeyError, TypeError) as e:
            self.fail("%s: %s" % (type(e).__name__, e))

    def _command(self, msg):
        """A newer signed command replaces the request; the same one again (a redelivery) changes nothing."""
        try:
            req = check(self, msg, slots.read())
        except (ValueError, KeyError, TypeError) as e:
            say(self, re="cmd", state="refused", why=repr(e))  # the transfer under way goes on
            return
        if req is None or req["version"] <= self.req["version"]:
            return
        self.t.abort()
        st = slots.read()
        st["receive"] = dict(req, boots=1)
        slots.write(st)
        self.req = req
        self.began = time.ticks_ms()
        self.t = Transfer(req, staging(req))
        self._on_connect()

    def fail(self, why):
        """Refused: staging cleared, why recorded, and a reset into the running version."""
        log.log(log.WARN, "update refused:", why)
        try:
            self.t.abort()
        except OSError:
            pass  # the next update clears the staging directory again
        result = _record(self.req, why)
        say(self, re="update", version=self.req["version"], state="refused", why=why)
        self.link.publish(self.update[2] + b"result", json.dumps(result), True)
        slots.reset()

    async def _timer(self, beat):
        deadline = self.req["deadline_s"] * 1000
        while True:
            beat()
            now = time.ticks_ms()
            if self.link.up and time.ticks_diff(now, self.last) > _QUIET_MS:
                self.fail("stalled: nothing arrived for %d s, at byte %d of %d" %
                          (_QUIET_MS // 1000, self.t.off, self.req["total"]))
            if time.ticks_diff(now, self.began) > deadline:
                self.fail("not received within deadline_s (%d s): %d of %d bytes arrived" %
                          (deadline // 1000, self.t.off, self.req["total"]))
            await asyncio.sleep_ms(_TICK_MS)

    async def run(self, watchdog_ms):
        from .supervisor import Supervisor

        sup = Supervisor(hal.Watchdog(watchdog_ms))
        sup.watch("link", _LINK_DEADLINE_MS)
        sup.watch("timer", 4 * _TICK_MS)
        sup.spawn("link", lambda: self.link.run(lambda: sup.beat("link")))
        sup.spawn("timer", lambda: self._timer(lambda: sup.beat("timer")))
        await sup.run()


def _record(req, why):
    """The request dropped, and why, in slots.json: the next boot runs the running version."""
    st = slots.read()
    st["receive"] = None
    st["result"] = {"version": req["version"], "state": "refused", "why": why}
    slots.write(st)
    return st["result"]


def main():
    req = slots.read().get("receive")
    if not req:
        slots.reset()  # nothing to receive (cannot happen after slots.boot()): the next boot runs the bridge
        return
    from . import config

    try:
        cfg = config.load(hal.config_path(), hal.supported_baud)
    except config.ConfigError as e:  # the running config: its start fails the same way, after this reset
        _record(req, "config: %s" % e)
        slots.reset()
        return
    finally:
        sys.modules.pop(config.__name__, None)
        del sys.modules[__name__.rpartition(".")[0]].config
        gc.collect()
    log.level = {"debug": log.DEBUG, "info": log.INFO, "warn": log.WARN, "error": log.ERROR}[cfg["log_level"]]
    log.log(log.INFO, "receive mode: update to version", req["version"], "(%s, %d bytes)" % (req["kind"], req["total"]))
    hal.start_network(cfg)
    try:
        r = Receiver(cfg, req)
    except Refused as e:
        _record(req, str(e))
        slots.reset()
        return
    watchdog_ms = cfg["watchdog_ms"]
    del cfg
    gc.collect()
    asyncio.run(r.run(watchdog_ms))
