"""`meterbridge selftest --port P`: the firmware's own checks (meterbridge/selftest.py) run on the board.

Entering the raw REPL interrupts the bridge (Ctrl-C); the watchdog keeps being fed from a Timer meanwhile
(hal/esp32.py stopped()). The result is a Markdown table, ready to paste into a bug report. A board is
reset afterwards, so the bridge runs again; the unix port on a pty is not (its soft reset ends it).
"""

import json
import sys
from importlib.metadata import PackageNotFoundError, version

from rich import box
from rich.console import Console
from rich.table import Table

from .. import deploy
from ..errors import CommandError

_RUN = "from meterbridge import selftest\nselftest.run()\n"
_MARK = "SELFTEST "
_RESULT = {True: "pass", False: "FAIL", None: "note"}


def add_arguments(parser):
    parser.add_argument("--port", required=True, help="serial port of the board (or a pty to the unix port)")
    parser.add_argument("--no-reset", action="store_true", help="leave the board at the REPL afterwards")
    parser.add_argument("--timeout", type=float, default=120, help="seconds the checks may take (default 120)")


def _host_version():
    try:
        return version("meterbridge")
    except PackageNotFoundError:
        return "?"


def _parse(text):
    """(board info, [check results], whether the run finished) from the device's SELFTEST lines."""
    board, checks, done = {}, [], False
    for line in text.splitlines():
        if not line.startswith(_MARK):
            continue
        doc = json.loads(line[len(_MARK):])
        if "board" in doc:
            board = doc
        elif "check" in doc:
            checks.append(doc)
        done = done or doc.get("done", False)
    return board, checks, done


def _print(port, board, checks, done):
    console = Console(width=240, highlight=False)  # rows never wrap: the table pastes as it is
    console.print(f"meterbridge selftest on {port}: {board.get('board', '?')}, MicroPython "
                  f"{board.get('micropython', '?')} (mpy {board.get('mpy', '?')}), {board.get('machine', '?')}; "
                  f"heap {board.get('heap_used', '?')} B used, {board.get('heap_free', '?')} B free; "
                  f"host toolkit {_host_version()}\n", markup=False)
    table = Table(box=box.MARKDOWN, show_edge=True)
    for column in ("check", "result", "detail"):
        table.add_column(column)
    for c in checks:
        table.add_row(c["check"], _RESULT[c["ok"]], c["detail"])
    if not done:
        table.add_row("(the run)", "FAIL", "ended before its last check: see the lines above")
    console.print(table)


def run(args):
    device = deploy.Device(args.port)
    try:
        platform, _ = device.info()
        try:
            text = device.output(_RUN, "the self-test", args.timeout)
        except CommandError as e:
            if "ImportError" in str(e):
                raise CommandError(f"{args.port}: the board has no meterbridge.selftest; deploy the firmware "
                                   "first (meterbridge deploy)") from None
            raise
        if platform == "esp32" and not args.no_reset:
            device.reset()
    finally:
        device.close()
    board, checks, done = _parse(text)
    other = [line for line in text.splitlines() if line.strip() and not line.startswith(_MARK)]
    for line in other:  # what the bridge said as it stopped, and anything else the board printed
        print(line, file=sys.stderr)
    _print(args.port, board, checks, done)
    return 0 if done and all(c["ok"] is not False for c in checks) else 1
