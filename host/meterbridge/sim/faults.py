"""Fault injection: silent windows, extra reply delay, bad CRCs, exception replies, leading garbage, and lies
with a valid CRC: a read reply one register short (its byte count says so) or shifted by one register."""

import copy
import math
import time

from pymodbus.framer import FramerRTU

DEVICE_FAILURE = 4


class Faults:
    """The fault settings of one simulator process and the random draws that apply them."""

    def __init__(self, rng, silent_after=None, silent_for=math.inf, silent_every=None, delay_ms=0.0,
                 crc_error_rate=0.0, exception_rate=0.0, garbage_rate=0.0, byte_count_rate=0.0, shift_rate=0.0):
        self._rng = rng
        self._t0 = time.monotonic()
        self._after, self._for, self._every = silent_after, silent_for, silent_every
        self.delay = delay_ms / 1000
        self._crc, self._exception, self._garbage = crc_error_rate, exception_rate, garbage_rate
        self._byte_count, self._shift = byte_count_rate, shift_rate
        self._lies = 0
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

    def shift(self, fc, request):
        """request, maybe as a read of the same count one register further on (an off-by-one address map)."""
        if fc not in (3, 4) or request is None or self._rng.random() >= self._shift:
            return request
        shifted = copy.copy(request)
        shifted.address += 1
        return shifted

    def mangle(self, frame):
        """frame, maybe with a wrong byte count and a valid CRC, maybe with a broken CRC, maybe after random bytes."""
        if frame[1] in (3, 4) and frame[2] >= 2 and self._rng.random() < self._byte_count:
            self._lies += 1  # in turn: one register short, or a byte count one register short on a whole reply
            body = frame[:2] + bytes([frame[2] - 2]) + frame[3 : -4 if self._lies % 2 else -2]
            frame = body + FramerRTU.compute_CRC(body).to_bytes(2, "big")
        if self._rng.random() < self._crc:
            frame = frame[:-1] + bytes([frame[-1] ^ 0xFF])
        if self._rng.random() < self._garbage:
            frame = self._rng.randbytes(self._rng.randint(1, 8)) + frame
        return frame
