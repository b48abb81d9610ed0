"""One levelled log helper with a fixed prefix (stderr on unix, the REPL on a board)."""

import sys

DEBUG = 10
INFO = 20
WARN = 30
ERROR = 40
_NAMES = {DEBUG: "debug", INFO: "info", WARN: "warn", ERROR: "error"}

level = INFO


def log(lvl, *args):
    if lvl >= level:
        print("[meterbridge]", _NAMES[lvl] + ":", *args, file=sys.stderr)
