"""One levelled log helper with a fixed prefix (stderr on unix, the REPL on a board).

Once something drains them (state.Reporter sets `lines` to a list), warn and error lines are also
queued for the log topic. The queue is bounded: once it holds _KEEP lines a new one is dropped and
counted in `dropped` until the topic has said so. Queuing never calls out, so a line logged while a
queued one is being published (the link going down) only joins the queue: no recursion.
"""

import sys

from micropython import const

DEBUG = 10
INFO = 20
WARN = 30
ERROR = 40
_NAMES = {DEBUG: "debug", INFO: "info", WARN: "warn", ERROR: "error"}
_KEEP = const(6)  # lines waiting for the link at most
_LINE = const(160)  # characters of a queued line at most

level = INFO
lines = None  # queued warn and error lines, oldest first; None: nobody takes them
dropped = 0  # lines the full queue (or a full heap) refused since the log topic last said so


def log(lvl, *args):
    global dropped
    if lvl < level:
        return
    print("[meterbridge]", _NAMES[lvl] + ":", *args, file=sys.stderr)
    if lvl < WARN or lines is None:
        return
    if len(lines) >= _KEEP:
        dropped += 1
        return
    try:
        text = " ".join([str(a) for a in args])
        lines.append(_NAMES[lvl] + ": " + text[:_LINE])
    except MemoryError:  # an out-of-memory report must not fail for want of its own line
        dropped += 1
