"""What a board tells a person: the retained state document and the log topic.

`meterbridge/{client_id}/state` goes out on a change and every _PERIOD_S otherwise. A change is a
meter going on- or offline, the kind of its last error changing, a transaction opening or closing,
a read limit learned, the clock becoming set, the link connecting again. Counters (cycles, errors,
heap) move all the time and only ride along; a change within _GAP_S of the last document waits. The
warn and error lines (log.sink) go to `meterbridge/{client_id}/log`, one a second, from a queue of _KEEP.

Between documents nothing is allocated. app.py loads this once the link is up, on every board (a signing
meter's only where its requests keep room for their code).
"""

import gc
import sys
import time

from micropython import const

from . import hal, jsonout, log
from .meter import ERRORS

VERSION = "0.1.0"  # the firmware's, as pyproject.toml's
_PERIOD_S = const(60)
_GAP_S = const(5)
_KEEP = const(6)  # log lines waiting for the link at most
_LINE = const(160)  # characters of a log line at most
_WATCHED = const(4)  # per meter: online, the kind of its last error, its open transaction, what it taught
_BYTES = const(640)  # the document's buffer where start-up made none (stages.py): one meter's


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
        # the document is written into a buffer made at start-up while the heap was whole (app.doc, the first
        # meter's values buffer: stages.py): built as one string, it needed a block of its whole size on a heap
        # in pieces, and a 64k heap often had none
        self.out = app.doc or jsonout.Writer(_BYTES)
        self.umqtt = umqtt_version()
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
            out = self.out
            try:
                self.document()
                sent = link.publish(self.state_topic, out.mv[: out.n], True)
            except ValueError:  # longer than the buffer (long ids, many holes learned): a larger one from now on
                self.out = None
                gc.collect()
                self.out = jsonout.Writer(2 * len(out.buf))
                sent = False  # tried again next second
            except MemoryError:
                sent = False
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
        """Write the state document's JSON text into self.out, a few short strings at a time."""
        app = self.app
        gc.collect()
        free = gc.mem_free()
        app.heap_min = min(app.heap_min, free)
        link = app.link
        reset = getattr(hal, "reset_cause", None)  # a board's HAL has one; a process on unix just started
        reset = reset and reset()
        out = self.out
        out.n = 0
        out.put('{"firmware":"%s","umqtt":"%s","platform":"%s",' % (VERSION, self.umqtt, hal.PLATFORM))
        out.put('"uptime_s":%d,"reset":%s,' % (self.uptime_s, '"%s"' % reset if reset else "null"))
        out.put('"heap":{"free":%d,"floor":%d},"clock":"%s",' % (free, app.heap_min,
                                                                  "set" if self._clock else "unset"))
        out.put('"link":{"connects":%d,"refused":%d},"meters":{' % (link.connects, link.refused))
        now = time.ticks_ms()
        comma = ""
        for mod in app.modules:
            m = mod.meter
            # a module id holds no character JSON escapes (config.py refuses " \\ and control characters)
            out.put('%s"%s":{"online":%s,"cycles":%d,"errors":{' % (comma, m.module_id, "true" if m.online else
                                                                      "false", m.cycles))
            comma = ""
            for kind, n in zip(ERRORS, m.errors):
                out.put('%s"%s":%d' % (comma, kind, n))
                comma = ","
            kind = m.last_error_kind
            if kind:  # the uptime it happened at (ticks_diff holds for about 6 days on an ESP32)
                out.put('},"last_error":"%s","last_error_s":%d,' % (
                    kind, self.uptime_s - time.ticks_diff(now, m.last_error_ticks) // 1000))
            else:
                out.put('},"last_error":null,"last_error_s":null,')
            out.put('"transaction":')
            tx = mod.tx.journal.open
            if tx:
                out.put_string(tx["tid"].encode())
            else:
                out.put("null")
            limits = m.read_limits  # what this meter taught (learn.py): registers per read, holes [[first, last]]
            if limits:
                out.put(',"read_limits":{"max_read":%s,"holes":[' % (limits["max_read"] or "null"))
                for i, (lo, hi) in enumerate(limits["holes"]):
                    out.put("%s[%d,%d]" % ("," if i else "", lo, hi))
                out.put("]}}")
            else:
                out.put(',"read_limits":null}')
        out.put("}}")
