"""Which firmware version a board starts: code slots, a trial start, its commit or rollback.

The deployed code sits at the root (slot ""); updates go to `a` or `b`, each a whole tree of
meterbridge/, lib/ and profiles/ with its MANIFEST. The file `slots.json` says which slot and which
config file run, and replaces itself atomically (a new file renamed over the old), so a power cut
leaves the old state or the new one:
    {"v": 1, "code": "" | "a" | "b", "config": name, "version": n, "last": highest version switched to,
     "trial": null | {"code", "config", "version", "boots", "health_s", "deadline_s", "why"},
     "result": null | {"version", "state": "committed" | "rolled back", "why"}}
boot() runs before the app (boot.py on a board, meterbridge.boardrun on unix): a trial gets one
start; if that start ends before the app commits it (a crash, a reset, a power cut, or no commit
within deadline_s), the next boot goes back to the old slot and records why. This module is the
boot loader's part: it is never updated over the air and imports nothing of the package. It leaves
RAM after boot() (a trial's deadline keeps its functions); sys.argv[2] == "slots" tells the app that
a boot chose its slot, and the update code imports this module again when it needs it.
"""

import json
import os
import sys

STATE = "slots.json"
_BLANK = {"v": 1, "code": "", "config": "config.json", "version": 0, "last": 0, "trial": None, "result": None}

def read():
    try:
        with open(STATE) as f:
            st = json.load(f)
    except (OSError, ValueError):
        return dict(_BLANK)  # none yet (a deploy), or unreadable: the deployed root tree runs
    return st if isinstance(st, dict) and st.get("v") == 1 else dict(_BLANK)


def write(st):
    tmp = STATE + ".new"
    with open(tmp, "w") as f:
        json.dump(st, f)
    try:
        os.rename(tmp, STATE)  # POSIX and littlefs replace the old file atomically
    except OSError:
        os.remove(STATE)  # FAT refuses to rename over a file
        os.rename(tmp, STATE)


def running():
    """{"code", "config", "version", "trial": bool} of this start: boot() ended any trial but the one it starts."""
    st = read()
    cur = st["trial"] or st
    return {"code": cur["code"], "config": cur["config"], "version": cur["version"], "trial": bool(st["trial"])}


def booted():
    """True when a boot chose this start's slot (updates over MQTT are on)."""
    return sys.argv[2:3] == ["slots"]


def boot():
    """Choose this start's slot, put it first on sys.path, its config in sys.argv[1] and "slots" in sys.argv[2]."""
    st = read()
    t = st["trial"]
    if t and t["boots"]:
        st["trial"] = None
        st["result"] = {"version": t["version"], "state": "rolled back",
                        "why": t.get("why") or "it ended before it committed (crash, reset or power cut)"}
        write(st)
        t = None
    elif t:
        t["boots"] = 1
        write(st)
    cur = t or st
    if cur["code"]:
        sys.path[:0] = [cur["code"], cur["code"] + "/lib"]
    sys.argv[:] = ["main.py", cur["config"], "slots"]
    if t:
        _arm(t["deadline_s"] * 1000)
    sys.modules.pop(__name__, None)  # the app needs none of this in RAM


def trial():
    """This start's trial (its health window and deadline), or None when the running version is committed."""
    return read()["trial"]


def commit():
    """Make the trial the running version: a reset from now on starts it again."""
    st = read()
    t = st["trial"]
    if not t:
        return
    st.update(code=t["code"], config=t["config"], version=t["version"], trial=None,
              result={"version": t["version"], "state": "committed", "why": None})
    write(st)


def failed(why):
    """This start on trial cannot run: record why and reset; the next boot rolls it back."""
    st = read()
    t = st["trial"]
    if t and t["boots"]:
        print("[meterbridge] error: this start on trial failed:", why, file=sys.stderr)
        t["why"] = t["why"] or why
        write(st)
        reset()


def _expire(_=None):
    """The trial's deadline passed without a commit."""
    t = read()["trial"]
    if t:
        failed("no commit within %d s (health window %d s)" % (t["deadline_s"], t["health_s"]))


def _arm(ms):
    """Call _expire after ms, whatever the app does: a hardware timer on a board, a thread on unix."""
    try:
        from machine import Timer

        Timer(1).init(mode=Timer.ONE_SHOT, period=ms, callback=_expire)  # Timer(0) is boot.py's watchdog feeder
    except (ImportError, AttributeError):
        import _thread
        import time

        def later():
            time.sleep_ms(ms)
            _expire()

        _thread.start_new_thread(later, ())


def reset():
    """A board reset; on unix the process ends and meterbridge.boardrun starts it again."""
    import time

    time.sleep_ms(300)  # what was just published leaves the socket
    try:
        from machine import reset
    except ImportError:
        print("[meterbridge] info: reset", file=sys.stderr)
        os.system("kill -9 $PPID")  # the shell's parent is this process; no os.kill on the unix port
        return
    reset()
