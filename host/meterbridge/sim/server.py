"""The simulator loop: answer requests with wire timing and advance the values until told to stop."""

import select
import sys
import time

from pymodbus.pdu import ExceptionResponse

from .faults import DEVICE_FAILURE
from .link import char_time, frame_gap
from .rtu import RtuFramer
from .slave import respond

TURNAROUND = 0.001  # seconds a meter takes to start replying after the request's silent interval
STALE = 0.05  # seconds of silence after which an incomplete frame is dropped (pty scheduling is loose)


class Server:
    """Serves meters (slave id -> Meter) with faults, logging the served values to truth."""

    def __init__(self, meters, faults, truth, update_s, control, check_line=False):
        self._meters, self._faults, self._truth = meters, faults, truth
        # with meters at different line settings, each hears only frames sent at its own (see sim --help)
        self._check_line = check_line
        self._update_s, self._control = update_s, control
        self._framer = RtuFramer()
        self._record()

    def serve(self, link, banner):
        """Print banner to stderr and answer on link until control says stop."""
        self._link = link
        print(banner, file=sys.stderr, flush=True)
        last_step = last_rx = time.monotonic()
        while not self._control.stop:
            now = time.monotonic()
            if now >= last_step + self._update_s:
                for meter in self._meters.values():
                    meter.advance(now - last_step)
                self._record()
                last_step = now
            timeout = last_step + self._update_s - now
            if self._framer.pending:
                timeout = min(timeout, last_rx + STALE - now)
            ready, _, _ = select.select([link, self._control.wake], [], [], max(timeout, 0.0))
            if self._control.wake in ready:
                self._control.drain()
            if link in ready:
                self._framer.feed(link.read())
                last_rx = time.monotonic()
            elif self._framer.pending and time.monotonic() - last_rx >= STALE:
                self._framer.clear()
            while not self._control.stop and (request := self._framer.pop()):
                self._answer(*request, last_rx)

    def _answer(self, slave, fc, request, size, received):
        """Apply a request to its meter (every meter for broadcast 0) and send the reply, faults applied."""
        targets = [self._meters[slave]] if slave in self._meters else []
        if slave == 0:
            targets = list(self._meters.values())
        baud, parity = self._link.baud, self._link.parity
        if self._check_line:
            heard, parities = self._link.line()
            targets = [m for m in targets if (m.baud or baud) == heard and (m.parity or parity) in parities]
        if not targets or self._faults.silent(time.monotonic()):
            return
        if slave and self._faults.failure():  # a failing meter applies nothing
            reply = ExceptionResponse(fc, DEVICE_FAILURE)
        else:
            request = self._faults.shift(fc, request)
            for meter in targets:
                reply = respond(meter.table, fc, request)
            if fc in (6, 16):
                self._record()
        if slave and reply is not None:  # None: a read the meter leaves unanswered
            baud = targets[0].baud or baud
            char = char_time(baud, targets[0].parity or parity)
            frame = self._faults.mangle(self._framer.build(slave, reply))
            start = received + self._link.rx_lag(size, char) + frame_gap(baud) + TURNAROUND + self._faults.delay
            self._link.send(frame, start, char)

    def _record(self):
        """Append a truth line for each meter whose served values changed."""
        for slave, meter in self._meters.items():
            self._truth.record(slave, meter.table.truth())
