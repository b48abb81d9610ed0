"""Receive mode: a start that loads nothing of the bridge carries out a signed command with the whole heap.

The running bridge took a signed command (update_cmd.py), wrote it to update.cmd and reset; slots.boot()
put it in slots.json ("receive") and started this mode (sys.argv[2] == "receive") with a deadline, and
this start is its only one. Here: the config checked, the network, an MQTT link subscribed to update/cmd
and update/data, and the command checked in full and answered (update.check): a hello says what the
board runs, and the next command is awaited for _IDLE_MS; an accepted update says "receiving" and its
stream goes into the staging directory (update.Transfer), then to the switch to a trial
(update_switch) and a reset. A newer command replaces the one under way. A refusal (a bad command,
damaged, truncated, nothing for _QUIET_MS, past deadline_s, a bad config) clears the staging directory,
records why in slots.json's result and resets into the running version, untouched throughout.
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
from .update import Refused, Transfer, check, say, staging

_IDLE_MS = const(60000)  # after a hello: the host builds the firmware for this platform, then sends it
_QUIET_MS = const(20000)  # the host sends again after 10 s without an acknowledgement (host update.py REPLY_S)
_LINK_DEADLINE_MS = const(15000)  # as app.py: a connect may block on socket timeouts a few times over
_TICK_MS = const(500)


class Receiver:
    """The link and the transfer under way; update.py's functions take it as the app."""

    def __init__(self, cfg, cmd):
        b = cfg["broker"]
        base = ("meterbridge/%s/update/" % b["client_id"]).encode()
        self.update = (cfg["update_key"], b["client_id"], base, b["max_payload"])
        self.cmd = cmd.encode()  # answered once the link is up
        self.req = self.t = None
        self.began = self.last = time.ticks_ms()
        from .mqtt_link import MqttLink

        self.link = MqttLink(b, [base + b"cmd", base + b"data"], self._on_message, self._on_connect,
                             bytearray(b["max_payload"]))

    def _on_connect(self):
        self.last = time.ticks_ms()
        if self.cmd:
            cmd, self.cmd = self.cmd, None
            self._on_message(self.update[2] + b"cmd", memoryview(cmd), 0, 0)
        elif self.t:  # the link came back: the stream from where it stopped
            say(self, re="cmd", version=self.req["version"], state="receiving", chunk=self.update[3] - 4)
            say(self, want=self.t.off)

    def _on_message(self, topic, msg, oversize, retained):
        if retained or not topic.startswith(self.update[2]):
            return  # EVerest's requests, kept by the broker for the bridge's session: not served here
        self.last = time.ticks_ms()
        gc.collect()
        try:
            if topic.endswith(b"/cmd"):
                self._command(msg, oversize)
            elif self.t is None:
                say(self, re="data", state="refused", why="no update under way")
            elif self.t.take(self, msg, oversize):  # the stream is whole: switch to it (the board resets)
                from .update_switch import switch

                switch(self, self.req, self.t.dir, self.t.files, self.t.low)
        except Refused as e:
            self.fail(str(e))
        except MemoryError:
            self.fail("out of memory on the board")
        except (OSError, ValueError, KeyError, TypeError) as e:
            self.fail("%s: %s" % (type(e).__name__, e))

    def _command(self, msg, oversize):
        """A command: answered; an update accepted replaces the one under way, unless it is not newer (the same
        command sent again: the host repeats one nothing answered)."""
        if oversize:
            raise Refused("not a signed command")
        try:
            req = check(self, msg)
        except Refused as e:
            if self.t is None:
                raise
            say(self, re="cmd", state="refused", why=str(e))  # the transfer under way goes on
            return
        if req is None or self.req and req["version"] <= self.req["version"]:
            return
        if self.t:
            self.t.abort()
        self.req = req
        st = slots.read()
        st["receive"] = dict(req, boots=1)
        slots.write(st)
        self.began = time.ticks_ms()
        self.t = Transfer(req, staging(req))
        log.log(log.INFO, "update to version", req["version"], "(%s, %d bytes)" % (req["kind"], req["total"]))
        say(self, re="cmd", version=req["version"], state="receiving", chunk=self.update[3] - 4)

    def fail(self, why):
        """Refused: staging cleared, why recorded (for an update), and a reset into the running version."""
        log.log(log.WARN, "update refused:", why)
        if self.t:
            try:
                self.t.abort()
            except OSError:
                pass  # the next update clears the staging directory again
        version = self.req and self.req["version"]
        result = _record(version, why)
        say(self, re="update", version=version, state="refused", why=why)
        if result:
            self.link.publish(self.update[2] + b"result", json.dumps(result), True)
        slots.reset()

    async def _timer(self, beat):
        while True:
            beat()
            now = time.ticks_ms()
            if self.t is None:
                if time.ticks_diff(now, self.began) > _IDLE_MS:
                    log.log(log.INFO, "receive mode: no update came; back to the bridge")
                    _record(None, None)
                    slots.reset()
            elif self.link.up and time.ticks_diff(now, self.last) > _QUIET_MS:
                self.fail("stalled: nothing arrived for %d s, at byte %d of %d" %
                          (_QUIET_MS // 1000, self.t.off, self.req["total"]))
            elif time.ticks_diff(now, self.began) > self.req["deadline_s"] * 1000:
                self.fail("not received within deadline_s (%d s): %d of %d bytes arrived" %
                          (self.req["deadline_s"], self.t.off, self.req["total"]))
            await asyncio.sleep_ms(_TICK_MS)

    async def run(self, watchdog_ms):
        from .supervisor import Supervisor

        sup = Supervisor(hal.Watchdog(watchdog_ms))
        sup.watch("link", _LINK_DEADLINE_MS)
        sup.watch("timer", 4 * _TICK_MS)
        sup.spawn("link", lambda: self.link.run(lambda: sup.beat("link")))
        sup.spawn("timer", lambda: self._timer(lambda: sup.beat("timer")))
        await sup.run()


def _record(version, why):
    """The command dropped from slots.json, with why for an update (version): the next boot runs the bridge."""
    st = slots.read()
    st["receive"] = None
    if version is not None:
        st["result"] = {"version": version, "state": "refused", "why": why}
    slots.write(st)
    return version is not None and st["result"]


def main():
    r = slots.read().get("receive")
    if not r:
        slots.reset()  # nothing to receive (cannot happen after slots.boot()): the next boot runs the bridge
        return
    from . import config

    try:
        cfg = config.load(hal.config_path(), hal.supported_baud)
    except config.ConfigError as e:  # the running config: its start fails the same way, after this reset
        _record(r["version"], "config: %s" % e)
        slots.reset()
        return
    finally:
        sys.modules.pop(config.__name__, None)
        del sys.modules[__name__.rpartition(".")[0]].config
        gc.collect()
    log.level = {"debug": log.DEBUG, "info": log.INFO, "warn": log.WARN, "error": log.ERROR}[cfg["log_level"]]
    log.log(log.INFO, "receive mode: a signed command to carry out")
    hal.start_network(cfg)
    rx = Receiver(cfg, r["cmd"])
    watchdog_ms = cfg["watchdog_ms"]
    del cfg, r
    gc.collect()
    asyncio.run(rx.run(watchdog_ms))
