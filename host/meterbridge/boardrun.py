"""Run the firmware under the unix port the way a board starts it: slots, then main, and resets.

A directory stands in for the board's filesystem: config.json, slots.json, the update slots a/ and
b/ and the journal live there, and the process runs with it as its working directory. The deployed
code (the root slot) is the compiled tree of build.firmware(). Each start runs slots.boot() first,
as boot.py does on a board, so the slot, its config, receive mode and a trial's rollback are the
board's own logic; a pending start's deadline runs in a thread where boot.py has a machine.Timer.
When the firmware ends as a board would reset (slots.reset(), the watchdog, or any ending while a
trial or a transfer is pending, which the board's deadline timer turns into a reset), it is started
again; any other ending stops the run, as a board stays in the REPL.

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

# boot.py's part on unix: slots.boot(), and a pending start's deadline (a thread for boot.py's machine.Timer)
_BOOT = """
import slots
_ms = slots.boot()
del slots
if _ms:
    import _thread, json, os, time

    def _expire():
        time.sleep_ms(_ms)
        with open("slots.json") as f:
            st = json.load(f)
        if st.get("trial") or st.get("receive"):
            open("expired", "w").close()
            os.system("kill -9 $PPID")

    _thread.start_new_thread(_expire, ())
from meterbridge.start import main
main()
"""


def _pending(directory):
    try:
        st = json.loads((directory / "slots.json").read_text())
        return bool(st.get("trial") or st.get("receive"))
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
        if child is not None and child.returncode is None:
            os.kill(child.pid, signum)  # not poll() or wait(): the child.wait() this interrupts holds their lock
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while True:
        child = subprocess.Popen(cmd, env=env, cwd=directory)
        try:
            rc = child.wait()
        except SystemExit:  # stop(): the firmware has the signal; the launcher ends after it
            child.wait()
            raise
        if not (rc < 0 or _pending(directory)):
            return rc
        print(f"[boardrun] the firmware ended ({rc}): starting it again, as a board resets", file=sys.stderr,
              flush=True)
        time.sleep(0.2)


if __name__ == "__main__":
    sys.exit(main())
