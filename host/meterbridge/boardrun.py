"""Run the firmware under the unix port the way a board starts it: slots, then main, and resets.

A directory stands in for the board's filesystem: config.json, slots.json, the update slots a/ and
b/ and the journal live there, and the process runs with it as its working directory. The deployed
code (the root slot) is the compiled tree of build.firmware(). Each start runs slots.boot() first,
as boot.py does on a board, so the slot, its config and a trial's rollback are the board's own
logic. When the firmware ends as a board would reset (slots.reset(), the watchdog, or any ending
while a trial is pending, which the board's trial timer turns into a reset), it is started again;
any other ending stops the run, as a board stays in the REPL.

    python -m meterbridge.boardrun DIR [HEAPSIZE]
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from . import build, paths

_BOOT = "import slots\nslots.boot()\ndel slots\nfrom meterbridge.start import main\nmain()\n"


def _trial_pending(directory):
    try:
        return bool(json.loads((directory / "slots.json").read_text()).get("trial"))
    except (OSError, ValueError):
        return False


def command(heapsize=None):
    """The unix-port command line and environment of one start."""
    root = build.firmware()
    env = dict(os.environ, MICROPYPATH=os.pathsep.join([".frozen", str(root), str(root / "lib")]))
    heap = ["-X", f"heapsize={heapsize}"] if heapsize else []
    return [paths.micropython(), *heap, "-c", _BOOT], env


def main(argv=None):
    args = argv or sys.argv[1:]
    directory = Path(args[0]).resolve()
    cmd, env = command(args[1] if len(args) > 1 else None)
    child = None

    def stop(signum, _frame):
        if child is not None and child.poll() is None:
            child.send_signal(signum)
            child.wait()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while True:
        child = subprocess.Popen(cmd, env=env, cwd=directory)
        rc = child.wait()
        if not (rc < 0 or _trial_pending(directory)):
            return rc
        print(f"[boardrun] the firmware ended ({rc}): starting it again, as a board resets", file=sys.stderr,
              flush=True)
        time.sleep(0.2)


if __name__ == "__main__":
    sys.exit(main())
