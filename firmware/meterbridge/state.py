"""What a board tells a person: the retained state document and the log topic.

`meterbridge/{client_id}/state` goes out on a change and every _PERIOD_S otherwise. A change is a
meter going on- or offline, the kind of its last error changing, a transaction opening or closing,
a read limit learned, the clock becoming set, the link connecting again. Counters (cycles, errors,
heap) move all the time and only ride along; a change within _GAP_S of the last document waits. The
warn and error lines (log.sink) go to `meterbridge/{client_id}/log`, one a second, from a queue of _KEEP.

Between documents nothing is allocated. app.py loads this once the link is up, and only when the heap
has room for it then (_REPORT_FREE): the tightest test heaps go without.
"""

import gc
import json
import sys
import time

from micropython import const

from . import hal, log
from .meter import ERRORS

VERSION = "0.1.0"  # the firmware's, as pyproject.toml's
_PERIOD_S = const(60)
_GAP_S = const(5)
_KEEP = const(6)  # log lines waiting for the link at most
_LINE = const(160)  # characters of a log line at most
_WATCHED = const(4)  # per meter: online, the kind of its last error, its open transaction, what it taught


def umqtt_version():
    """The pinned umqtt.simple's version (tools/fetch_umqtt.py writes umqtt/pinned.py beside it), else "other"."""
    import umqtt

    try:
        from umqtt import pinned
    except ImportError:
        return "other"  # a frozen one, or one of one's own: umqtt.simple carries no version itself
    sys.modules.pop("umqtt.pinned", None)  # unloaded again, as mqtt_link.py does
    delattr(umqtt, "pinned")
    return pinned.VERSION


class Reporter:
    """tick() once a second; publishes through the app's link and never queues for it."""

    def __init__(self, app):
        self.app = app
        base = app.link.status_topic[:-6]  # meterbridge/{client_id}/
        self.state_topic = base + b"state"
        self.log_topic = base + b"log"
        self.uptime_s = 0
        self._ms = 0
        self._at = time.ticks_ms()
        self._last = -_PERIOD_S  # uptime of the last document
        self._connects = 0  # the link's connects then
        self._due = True  # a change not yet in a document
        self._clock = False
        self._seen = [None] * (_WATCHED * len(app.modules))
        self.lines = []  # warn and error lines for the log topic, oldest first
        self.dropped = 0  # lines the full queue (or a full heap) refused since the topic last said so
        log.sink = self.keep

    def tick(self):
        t = time.ticks_ms()  # uptime counted once a second: ticks_ms wraps after 12 days on an ESP32
        ms = self._ms + time.ticks_diff(t, self._at)
        self.uptime_s += ms // 1000
        self._ms = ms % 1000
        self._at = t
        if self._changed():
            self._due = True
        link = self.app.link
        if not link.up:
            return
        if self.uptime_s - self._last >= (_GAP_S if self._due else _PERIOD_S):
            try:
                sent = link.publish(self.state_topic, self.document(), True)
            except MemoryError:
                sent = False  # tried again next second
            if sent:
                self._last, self._connects, self._due = self.uptime_s, link.connects, False
        lines = self.lines
        if lines:  # a line logged while this one is published only joins the queue: no recursion
            if link.publish(self.log_topic, lines[0]):
                lines.pop(0)
        elif self.dropped and link.publish(self.log_topic, "warn: %d log lines dropped" % self.dropped):
            self.dropped = 0

    def keep(self, lvl, args):
        """log.sink: queue a line for the log topic; a full queue drops and counts it. Never calls out."""
        if len(self.lines) >= _KEEP:
            self.dropped += 1
            return
        try:
            self.lines.append(log.NAMES[lvl // 10 - 1] + ": " + " ".join([str(a) for a in args])[:_LINE])
        except MemoryError:  # an out-of-memory report must not fail for want of its own line
            self.dropped += 1

    def _changed(self):
        changed = self.app.link.connects != self._connects
        if not self._clock and hal.epoch_ms() is not None:
            self._clock = changed = True
        seen = self._seen
        i = 0
        for mod in self.app.modules:
            m = mod.meter
            kind = m.last_error_kind  # a string of meter.ERRORS: the same object while the kind stays
            tx = mod.tx.journal.open
            taught = m.read_limits
            taught = taught and (taught["max_read"] or 0) * 1000 + len(taught["holes"])  # a small int: no object
            if seen[i] is not m.online or seen[i + 1] is not kind or seen[i + 2] is not tx or seen[i + 3] != taught:
                seen[i], seen[i + 1], seen[i + 2], seen[i + 3] = m.online, kind, tx, taught
                changed = True
            i += _WATCHED
        return changed

    def document(self):
        """The state document's JSON text."""
        app = self.app
        gc.collect()
        free = gc.mem_free()
        app.heap_min = min(app.heap_min, free)
        now = time.ticks_ms()
        meters = {}
        for mod in app.modules:
            m = mod.meter
            tx = mod.tx.journal.open
            failed = m.last_error_kind is not None
            meters[m.module_id] = {
                "online": m.online, "cycles": m.cycles, "errors": dict(zip(ERRORS, m.errors)),
                "last_error": m.last_error_kind,
                # the uptime it happened at (ticks_diff holds for about 6 days on an ESP32)
                "last_error_s": self.uptime_s - time.ticks_diff(now, m.last_error_ticks) // 1000 if failed else None,
                "transaction": tx and tx["tid"],
                # read limits this meter taught (learn.py): registers per read, holes [[first, last]]
                "read_limits": m.read_limits and {"max_read": m.read_limits["max_read"],
                                                  "holes": m.read_limits["holes"]}}
        link = app.link
        reset = getattr(hal, "reset_cause", None)  # a board's HAL has one; a process on unix just started
        return json.dumps({
            "firmware": VERSION, "umqtt": umqtt_version(), "platform": hal.PLATFORM, "uptime_s": self.uptime_s,
            "reset": reset and reset(), "heap": {"free": free, "floor": app.heap_min},
            "clock": "set" if self._clock else "unset",
            "link": {"connects": link.connects, "refused": link.refused},
            "meters": meters})
