"""Stand-in for micropython-lib's ntptime: settime() sets the stand-in RTC while a link is up.

STANDIN_NTP=down makes the server unreachable (OSError ETIMEDOUT, as a lost UDP reply does).
"""

import os
import time as _time

import machine
import network

host = "pool.ntp.org"
timeout = 1


def time():
    """Seconds since 1970 from the "server" (the host clock)."""
    if not network.link_up() or os.getenv("STANDIN_NTP") == "down":
        raise OSError(110)  # ETIMEDOUT
    return _time.time_ns() // 1000000000


def settime():
    tm = _time.gmtime(time())
    machine.RTC().datetime((tm[0], tm[1], tm[2], tm[6] + 1, tm[3], tm[4], tm[5], 0))
