"""What a board tells a person: the retained state document and the log topic.

`meterbridge/{client_id}/state` goes out on a change and every _PERIOD_S otherwise. A change is a
meter going on- or offline, the kind of its last error changing, a transaction opening or closing,
a read limit learned, the clock becoming set, the link connecting again. Counters (cycles, errors,
heap) move all the time and only ride along; a change within _GAP_S of the last document waits. The
warn and error lines (log.sink) go to `meterbridge/{client_id}/log`, one a second, from a queue of _KEEP.

Between documents nothing is allocated; the document's own code (state_doc.py) is loaded for each one. app.py
loads this once the link is up, on every board (a signing meter's only where its requests keep room for their
code).
"""

import gc
import sys
import time

from micropython import const

from . import hal, jsonout, log

VERSION = "0.1.0"  # the firmware's, as pyproject.toml's
_PERIOD_S = const(60)
_GAP_S = const(5)
_KEEP = const(6)  # log lines waiting for the link at most
_LINE = const(160)  # characters of a log line at most
_WATCHED = const(4)  # per meter: online, the kind of its last error, its open transaction, what it taught
_BYTES = const(640)  # the document's buffer where start-up made none (stages.py): one meter's


class Reporter:
    """tick() once a second; publishes through the app's link and never queues for it."""

    def __init__(self, app):
        self.app = app
        base = app.link.status_topic[:-6]  # meterbridge/{client_id}/
        self.state_topic = base + b"state"
        self.log_topic = base + b"log"
        self.uptime_s = 0
        self._at = time.ticks_ms()  # when uptime_s last counted a second
        self._last = -_PERIOD_S  # uptime of the last document
        self._due = True  # a change not yet in a document
        # what a change is seen against: the link's connects, the clock set, then _WATCHED per meter
        self._seen = [0, False] + [None] * (_WATCHED * len(app.modules))
        self.lines = []  # warn and error lines for the log topic, oldest first
        self.dropped = 0  # lines the full queue (or a full heap) refused since the topic last said so
        # the document is written into a buffer made at start-up while the heap was whole (app.doc, the first
        # meter's values buffer: stages.py): built as one string, it needed a block of its whole size on a heap
        # in pieces, and a 64k heap often had none
        self.out = app.doc or jsonout.Writer(_BYTES)
        # the pinned umqtt.simple's version (tools/fetch_umqtt.py writes umqtt/pinned.py beside it), else "other":
        # a frozen one, or one of one's own (umqtt.simple carries no version itself)
        import umqtt

        try:
            from umqtt import pinned

            self.umqtt = pinned.VERSION
            sys.modules.pop("umqtt.pinned", None)  # unloaded again, as mqtt_link.py does
            delattr(umqtt, "pinned")
        except ImportError:
            self.umqtt = "other"
        log.sink = self.keep

    def tick(self):
        """Count the uptime, see what changed, publish the document when due and one log line."""
        s = time.ticks_diff(time.ticks_ms(), self._at) // 1000  # counted here: ticks_ms wraps after 12 days
        self.uptime_s += s
        self._at = time.ticks_add(self._at, s * 1000)
        app = self.app
        link = app.link
        seen = self._seen
        clock = seen[1] or hal.epoch_ms() is not None  # once set, set
        if seen[0] != link.connects or seen[1] != clock:
            seen[0], seen[1], self._due = link.connects, clock, True
        i = 2
        for mod in app.modules:
            m = mod.meter
            kind = m.last_error_kind  # a string of meter.ERRORS: the same object while the kind stays
            tx = mod.tx.journal.open
            taught = m.read_limits
            taught = taught and (taught["max_read"] or 0) * 1000 + len(taught["holes"])  # a small int: no object
            if seen[i] is not m.online or seen[i + 1] is not kind or seen[i + 2] is not tx or seen[i + 3] != taught:
                seen[i], seen[i + 1], seen[i + 2], seen[i + 3] = m.online, kind, tx, taught
                self._due = True
            i += _WATCHED
        if not link.up:
            return
        if self.uptime_s - self._last >= (_GAP_S if self._due else _PERIOD_S):
            out = self.out
            try:
                from . import state_doc  # loaded for each document and unloaded after: wanted once a minute

                state_doc.write(out, app, self.uptime_s, seen[1], self.umqtt)
                sent = link.publish(self.state_topic, out.mv[: out.n], True)
            except ValueError:  # longer than the buffer (long ids, many holes learned): a larger one from now on
                self.out = None
                gc.collect()
                self.out = jsonout.Writer(2 * len(out.buf))
                sent = False  # tried again next second
            except MemoryError:
                sent = False
            finally:  # also after a load that ran out of memory half-way: no part of it stays
                package = sys.modules[__name__.rpartition(".")[0]]
                sys.modules.pop(package.__name__ + ".state_doc", None)
                if hasattr(package, "state_doc"):
                    delattr(package, "state_doc")
            if sent:
                self._last, self._due = self.uptime_s, False
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
