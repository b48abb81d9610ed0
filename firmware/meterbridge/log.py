"""One levelled log helper with a fixed prefix (stderr on unix, the REPL on a board).

Once something sends them on (state.Reporter sets `sink`), warn and error lines also go to sink.
"""

import sys

DEBUG = 10
INFO = 20
WARN = 30
ERROR = 40
NAMES = ("debug", "info", "warn", "error")  # by level // 10 - 1

level = INFO
sink = None  # called with each warn and error line's level and arguments


def log(lvl, *args):
    if lvl >= level:
        print("[meterbridge]", NAMES[lvl // 10 - 1] + ":", *args, file=sys.stderr)
        if lvl >= WARN and sink:
            sink(lvl, args)
