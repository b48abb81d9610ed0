"""Board start-up: stay in the REPL (safe mode) when asked or after a crash loop, else let main.py run.

Safe mode raises SafeMode here, and MicroPython skips main.py when boot.py fails, so the REPL stays
free for mpremote. It is entered when:
- the file `safemode` exists (`meterbridge deploy` sets it while copying; remove it by hand otherwise),
- the app started _MAX_STARTS times without a healthy minute in between (the HAL counts starts in
  `starts` and its Watchdog clears them); a power-on clears the count, and safe mode does too,
  so the next reset tries again,
- the board's button (board.json) is held while the board starts.
After a soft reset (Ctrl-D, mpremote) a watchdog started by the bridge is fed from machine.Timer(0)
until the bridge starts again, so the REPL stays up.
Then slots.py (never updated over the air) picks the code slot and config: a new version on trial, an
update's transfer (receive mode), or the committed one, and rolls back a trial that ended before it
committed. A trial or a transfer gets a deadline: a machine.Timer here resets the board if it is still
pending then (the next boot rolls it back, and says why).
This file is self-contained on purpose: it must work even when the meterbridge package is broken.
"""

import json
import os
import time

import machine
from micropython import const

_SAFE_FLAG = "safemode"
_STARTS = "starts"  # written by meterbridge/hal/esp32.py
_MAX_STARTS = const(3)
_WINDOW_MS = const(1000)  # how long the button is watched for
_FEEDER = const(0)  # the machine.Timer that feeds the watchdog while the bridge does not (hal/esp32.py: the same)
_DEADLINE = const(1)  # the machine.Timer of a start on trial or in receive mode


class SafeMode(Exception):
    """The bridge is not started; the REPL is free."""


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass  # not there


def _starts():
    try:
        with open(_STARTS) as f:
            return int(f.read())
    except (OSError, ValueError):
        return 0


def _board():
    try:
        with open("board.json") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _button_held(board):
    """Watch the board's button for _WINDOW_MS; True if it was pressed."""
    button = board.get("button")
    if not button:
        return False
    Pin = machine.Pin
    pin = Pin(button["pin"], Pin.IN, Pin.PULL_UP if button.get("pull") else None)
    deadline = time.ticks_add(time.ticks_ms(), _WINDOW_MS)
    while time.ticks_diff(deadline, time.ticks_ms()) > 0:
        if pin.value() == button["active"]:
            return True
        time.sleep_ms(20)
    return False


def _reason():
    """Why to stay in safe mode, or None to run the bridge."""
    try:
        os.stat(_SAFE_FLAG)
        return "the file " + _SAFE_FLAG + " exists"
    except OSError:
        pass
    if machine.reset_cause() == machine.PWRON_RESET:
        _remove(_STARTS)
    n = _starts()
    if n >= _MAX_STARTS:
        _remove(_STARTS)
        return "%d starts in a row ended in a reset" % n
    if _button_held(_board()):
        return "the button was held"
    return None


def _keep_watchdog_fed():
    """After a soft reset, a watchdog the bridge started still runs (it cannot be stopped) with the timeout
    the HAL kept in RTC memory: feed it from a Timer, so the REPL and mpremote stay up until the bridge's
    own supervisor takes over (meterbridge/hal/esp32.py stops this Timer then)."""
    if machine.reset_cause() != machine.SOFT_RESET:
        return  # a hard reset stopped it
    try:
        timeout = int(machine.RTC().memory())
    except ValueError:
        return  # none was started
    wdt = machine.WDT(timeout=timeout)
    machine.Timer(_FEEDER).init(period=timeout // 4, callback=lambda t: wdt.feed())


try:
    _keep_watchdog_fed()
except Exception as e:  # as below: never in the way of the bridge
    print("boot.py:", repr(e))
try:
    _why = _reason()
except Exception as e:  # a fault in this guard must not keep the bridge from starting
    print("boot.py:", repr(e))
    _why = None
if _why:
    raise SafeMode("safe mode, " + _why + ": the bridge is not started; fix it with mpremote, then reset")

def _expire(_timer):
    """A start on trial (or receiving an update) is past its deadline: if it is still pending, tell the next
    boot (the file slots.py reads) and reset."""
    with open("slots.json") as f:
        st = json.load(f)
    if st.get("trial") or st.get("receive"):
        open("expired", "w").close()
        machine.reset()


try:
    import slots  # which code slot and config start: a new version on trial, a transfer, or the committed one

    _ms = slots.boot()
    del slots  # out of RAM (boot() took it out of sys.modules)
    if _ms:
        machine.Timer(_DEADLINE).init(mode=machine.Timer.ONE_SHOT, period=_ms, callback=_expire)
except Exception as e:  # a broken slot state must not keep the deployed bridge from starting
    print("boot.py: slots:", repr(e))
