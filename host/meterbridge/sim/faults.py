"""Fault injection: silent windows, extra reply delay, bad CRCs, exception replies, leading garbage."""

import math
import time

DEVICE_FAILURE = 4


class Faults:
    """The fault settings of one simulator process and the random draws that apply them."""

    def __init__(self, rng, silent_after=None, silent_for=math.inf, silent_every=None, delay_ms=0.0,
                 crc_error_rate=0.0, exception_rate=0.0, garbage_rate=0.0):
        self._rng = rng
        self._t0 = time.monotonic()
        self._after, self._for, self._every = silent_after, silent_for, silent_every
        self.delay = delay_ms / 1000
        self._crc, self._exception, self._garbage = crc_error_rate, exception_rate, garbage_rate
        self.toggled = False

    def toggle(self):
        """Flip the manual silence (SIGUSR1)."""
        self.toggled = not self.toggled

    def silent(self, now):
        """Whether requests go unanswered at monotonic time now (manual toggle or scheduled window)."""
        if self.toggled:
            return True
        if self._after is None:
            return False
        since = now - self._t0 - self._after
        if since >= 0 and self._every:
            since %= self._every
        return 0 <= since < self._for

    def failure(self):
        """Whether this reply becomes exception 4, SLAVE DEVICE FAILURE."""
        return self._rng.random() < self._exception

    def mangle(self, frame):
        """frame, maybe with a broken CRC and maybe with random bytes in front."""
        if self._rng.random() < self._crc:
            frame = frame[:-1] + bytes([frame[-1] ^ 0xFF])
        if self._rng.random() < self._garbage:
            frame = self._rng.randbytes(self._rng.randint(1, 8)) + frame
        return frame
