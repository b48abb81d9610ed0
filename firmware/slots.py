"""Which firmware version a board starts: code slots, a trial start, its commit or rollback.

The deployed code sits at the root (slot ""); updates go to `a` or `b`, each a whole tree of
meterbridge/, lib/ and profiles/ with its MANIFEST. The file `slots.json` says which slot and which
config file run, and replaces itself atomically (a new file renamed over the old), so a power cut
leaves the old state or the new one:
    {"v": 1, "code": "" | "a" | "b", "config": name, "version": n, "last": highest version switched to,
     "receive": null | {"cmd": the signed command, "boots", "why", and once receive mode checked it
                        its fields: "kind", "version", "total", "health_s", "deadline_s", ...},
     "trial": null | {"code", "config", "version", "boots", "health_s", "deadline_s", "why"},
     "result": null | {"version", "state": "committed" | "rolled back" | "refused", "why"}}
boot() runs before the app (boot.py on a board, meterbridge.boardrun on unix). A signed command the
running bridge wrote to update.cmd gets one start in receive mode (sys.argv[2] == "receive": a start
that loads nothing of the bridge checks it, answers it and takes the stream); a trial gets one start.
If that start ends otherwise (a crash, a reset, a power cut, or past its deadline_s), the next boot
drops it, runs the old version and records why. This module is the boot loader's part: it is never
updated over the air and imports nothing of the package. It leaves RAM after boot(); sys.argv[2] ==
"slots" tells the app that a boot chose its slot. Receive mode imports it again; the bridge reads and
writes slots.json without it (app.py, commit.py), for it has little heap to spare.
"""

import json
import os
import sys

STATE = "slots.json"
_EXPIRED = "expired"  # boot.py writes it when a pending start's deadline passes, then resets
CMD = "update.cmd"  # the running bridge writes a signed command there for receive mode (meterbridge/update_cmd.py)
_BLANK = {"v": 1, "code": "", "config": "config.json", "version": 0, "last": 0, "receive": None, "trial": None,
          "result": None}
_GRACE_S = 30  # a receive mode that outlives its own deadline_s (which it enforces itself) by this is reset


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


def _take(path):
    """The text of the file path, which is removed; None when there is none."""
    try:
        with open(path) as f:
            text = f.read()
        os.remove(path)
        return text
    except OSError:
        return None


def _why(t, r, expired):
    """Why the pending trial t (or transfer r) is dropped: its start ended without a commit (or a switch)."""
    p = t or r
    if p.get("why"):
        return p["why"]
    if expired and t:
        return "no commit within %d s (health window %d s)" % (t["deadline_s"], t["health_s"])
    if expired:
        return "the receiver did not end within %d s" % (r["deadline_s"] + _GRACE_S)
    return ("it ended before it committed" if t else "the transfer ended before it was whole") + \
        " (crash, reset or power cut)"


def boot():
    """Choose this start's slot, put it first on sys.path, its config in sys.argv[1] and the mode in sys.argv[2]:
    "receive" for an update's transfer, else "slots". Returns the deadline (ms) of a start on trial or in
    receive mode, else None: the caller (boot.py, with a machine.Timer) resets the board then if it is still
    pending, after writing the file `expired`; this module keeps nothing in RAM for it."""
    st = read()
    expired = _take(_EXPIRED) is not None
    cmd = _take(CMD)  # removed first: a power cut from here on loses the command, never loops on it
    t, r = st["trial"], st.get("receive")  # never both: the bridge refuses a command while a version is on trial
    pending = t or r
    dropped = pending and pending["boots"]
    if dropped:  # its one start ended without a commit (a trial) or a switch (a transfer)
        st["trial"] = st["receive"] = None
        if pending["version"] is not None:  # not a command that was only answered (a hello)
            st["result"] = {"version": pending["version"], "state": "rolled back" if t else "refused",
                            "why": _why(t, r, expired)}
        t = r = pending = None
    if cmd and not t:  # the bridge took a signed command: one start in receive mode checks and carries it out
        r = pending = st["receive"] = {"cmd": cmd, "version": None, "deadline_s": 3600, "boots": 0}
    if pending:
        pending["boots"] = 1
    if pending or dropped:
        write(st)
    cur = t or st
    if cur["code"]:
        sys.path[:0] = [cur["code"], cur["code"] + "/lib"]
    sys.argv[:] = ["main.py", cur["config"], "receive" if r else "slots"]
    sys.modules.pop(__name__, None)  # the app needs none of this in RAM
    if pending:
        return (pending["deadline_s"] + (_GRACE_S if r else 0)) * 1000
    return None


def failed(why):
    """This start on trial (or in receive mode) cannot go on: record why and reset; the next boot drops it."""
    st = read()
    t = st["trial"] or st.get("receive")
    if t and t["boots"]:
        print("[meterbridge] error: this start failed:", why, file=sys.stderr)
        t["why"] = t.get("why") or why
        write(st)
        reset()


def reset():
    """A board reset; on unix the process ends and meterbridge.boardrun starts it again."""
    import time

    time.sleep_ms(300)  # what was just published leaves the socket
    try:
        os.remove("starts")  # boot.py's crash-loop count: a reset on purpose starts a new state, never a loop
    except OSError:
        pass
    try:
        from machine import reset
    except ImportError:
        print("[meterbridge] info: reset", file=sys.stderr)
        os.system("kill -9 $PPID")  # the shell's parent is this process; no os.kill on the unix port
        return
    reset()
