"""Unix port HAL: a serial device path (pty or USB-RS485 adapter), a storage directory, the host clock."""

import _thread
import asyncio
import os
import sys
import termios
import time

from micropython import const

from .. import storage

PLATFORM = "unix"
_CLOCK_UNSET = os.getenv("MB_CLOCK_UNSET") == "1"

_PARENB = const(0o400)  # termbits.h c_cflag bits
_PARODD = const(0o1000)
_CSTOPB = const(0o100)
_VTIME = const(5)  # c_cc indices
_VMIN = const(6)


class Bus:
    """A serial line in raw, non-blocking mode: send a frame, read whatever has arrived."""

    def __init__(self, uart, baud, parity):
        device = uart.get("device") if isinstance(uart, dict) else None
        if not device:
            raise OSError("uart.device: a serial device path is needed on unix")
        try:
            self._f = open(device, "r+b")
            fd = self._f.fileno()
            termios.setraw(fd)
        except OSError as e:  # the path and the reason, not a bare "[Errno 2] ENOENT"
            raise OSError(device + (": no such device" if e.args[0] == 2 else ": %s" % e)) from None
        attrs = termios.tcgetattr(fd)
        self._char_us = (10 if parity == "N" else 11) * 1000000 // baud
        speed = supported_baud(baud)
        attrs[4] = attrs[5] = speed
        cflag = attrs[2] & ~(_PARENB | _PARODD | _CSTOPB)
        if parity == "E":
            cflag |= _PARENB
        elif parity == "O":
            cflag |= _PARENB | _PARODD
        attrs[2] = cflag
        # VMIN=0 VTIME=0: read() returns what is there instead of blocking for the full count
        attrs[6][_VMIN] = 0
        attrs[6][_VTIME] = 0
        try:
            termios.tcsetattr(fd, termios.TCSANOW, attrs)
        except OSError:
            if parity == "N":
                raise
            # Linux ptys refuse PARENB (EINVAL); a simulator on a pty times the parity bit itself
            attrs[2] = cflag & ~(_PARENB | _PARODD)
            termios.tcsetattr(fd, termios.TCSANOW, attrs)

    async def send(self, buf, n):
        """Write buf[:n] and return once it has left the wire; the adapter switches direction itself."""
        self._f.write(memoryview(buf)[:n])
        await asyncio.sleep_ms(n * self._char_us // 1000)  # write() returns when the kernel has the bytes

    def readinto(self, mv):
        """Read what has arrived into mv; 0 when nothing."""
        return self._f.readinto(mv) or 0

    def close(self):
        self._f.close()


def supported_baud(baud):
    """The speed code for baud (true), or None when this platform cannot drive the line at it.

    Linux <asm-generic/termbits.h> codes; the unix port's termios lacks the slower ones. The table is made per
    call: it is wanted at start-up only, and a module-level dict would stay in RAM.
    """
    return {1200: 0o11, 2400: 0o13, 4800: 0o14, 9600: 0o15, 19200: 0o16, 38400: 0o17,
            57600: 0o10001, 115200: 0o10002, 230400: 0o10003}.get(baud)


Storage = storage.Storage  # the same on every platform; re-exported for the app


def epoch_ms():
    """Milliseconds since 1970-01-01 UTC, or None while the clock is not yet valid.

    MB_CLOCK_UNSET=1 in the environment holds it unset, as a board without an NTP answer is (tests).
    """
    if _CLOCK_UNSET:
        return None
    return time.time_ns() // 1000000


gmtime = time.gmtime


class Watchdog:
    """machine.WDT's contract on unix: if feed() stops for timeout_ms, the process ends (a board resets).

    A thread watches, so a loop blocked in a system call is caught too.
    """

    def __init__(self, timeout_ms):
        self._timeout = timeout_ms
        self._last = time.ticks_ms()
        _thread.start_new_thread(self._watch, ())

    def feed(self):
        self._last = time.ticks_ms()

    def _watch(self):
        while True:
            time.sleep_ms(self._timeout // 8 + 1)
            quiet = time.ticks_diff(time.ticks_ms(), self._last)
            if quiet > self._timeout:
                print("[meterbridge] fatal: watchdog expired after %d ms without feed; ending the process "
                      "(a board would reset)" % quiet, file=sys.stderr)
                os.system("kill -9 $PPID")  # the shell's parent is this process; no os.kill on the unix port


def reset():
    """machine.reset(): the process ends, and meterbridge.boardrun starts it again as a board restarts."""
    os.system("kill -9 $PPID")  # the shell's parent is this process; no os.kill on the unix port


def stopped():
    """Nothing to keep up: the process ends with the firmware, and its watchdog thread with it."""


def config_path():
    """The config file: the first argument, else config.json in the working directory."""
    return sys.argv[1] if len(sys.argv) > 1 else "config.json"


def profiles_dir():
    """Where the profile JSON files live: firmware/profiles beside the package."""
    here = __file__.rsplit("/", 3)[0] if "/" in __file__ else "."
    return here + "/profiles"


def start_network(config):
    """The host's network is already up."""


def fatal(message):
    """Stop the firmware with a message (on a board this would reset)."""
    print("[meterbridge] fatal:", message, file=sys.stderr)
    sys.exit(2)
