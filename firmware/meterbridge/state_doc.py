"""The state document's JSON text (state.py), written into a jsonout.Writer a few short strings at a time.

state.Reporter loads this for each document and unloads it after: its code and strings take about 1 KB of RAM
even from ROM, and are wanted once a minute. Built as one string, the document needed a block of its whole size,
which a small heap in pieces often lacks; the Writer's buffer is made at start-up.
"""

import gc
import time

from . import hal
from .meter import ERRORS
from .state import VERSION


def write(out, app, uptime_s, clock, umqtt):
    """The document into out: app's meters and link, uptime_s, whether the clock is set, umqtt's version."""
    gc.collect()
    free = gc.mem_free()
    app.heap_min = min(app.heap_min, free)
    link = app.link
    reset = getattr(hal, "reset_cause", None)  # a board's HAL has one; a process on unix just started
    reset = reset and reset()
    out.n = 0
    out.put('{"firmware":"%s","umqtt":"%s","platform":"%s",' % (VERSION, umqtt, hal.PLATFORM))
    out.put('"uptime_s":%d,"reset":%s,' % (uptime_s, '"%s"' % reset if reset else "null"))
    out.put('"heap":{"free":%d,"floor":%d},"clock":"%s",' % (free, app.heap_min, "set" if clock else "unset"))
    out.put('"link":{"connects":%d,"refused":%d},"meters":{' % (link.connects, link.refused))
    now = time.ticks_ms()
    comma = ""
    for mod in app.modules:
        m = mod.meter
        # a module id holds no character JSON escapes (config.py refuses " \\ and control characters)
        out.put('%s"%s":{"online":%s,"cycles":%d,"errors":{' % (comma, m.module_id, "true" if m.online else "false",
                                                                  m.cycles))
        comma = ""
        for kind, n in zip(ERRORS, m.errors):
            out.put('%s"%s":%d' % (comma, kind, n))
            comma = ","
        kind = m.last_error_kind
        if kind:  # the uptime it happened at (ticks_diff holds for about 6 days on an ESP32)
            out.put('},"last_error":"%s","last_error_s":%d,' % (
                kind, uptime_s - time.ticks_diff(now, m.last_error_ticks) // 1000))
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
