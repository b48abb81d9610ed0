"""One meter on a bus: poll its plan, decode every field, keep the last good dataset and its age."""

import time

from micropython import const

from . import decode
from .log import WARN, log
from .modbus import rtu

_OFFLINE_AFTER = const(2)  # failed cycles in a row before the meter counts as unreachable


class Meter:
    """Reads one profile's plan from one slave; a cycle yields a whole dataset or nothing."""

    def __init__(self, cfg, profile, master):
        self.module_id = cfg["module_id"]
        self.meter_id = cfg["meter_id"]
        self.slave = cfg["slave"]
        self.period_ms = cfg["period_ms"]
        self.profile = profile
        self.master = master
        self.values = [None] * len(profile.fields)
        self._exps = [0] * len(profile.fields)
        self.online = False
        self.failures = 0
        self.last_ok = None  # ticks_ms of the last complete cycle
        self.last_error = None
        self.cycles = 0  # poll cycles attempted, for the debug heap line and soak tests

    def fresh(self):
        """True while the meter answers: online, and its last complete cycle is recent."""
        if not self.online:
            return False
        return time.ticks_diff(time.ticks_ms(), self.last_ok) < max(3 * self.period_ms, 3000)

    async def poll(self):
        """Read the whole plan; True when every read succeeded and values hold a fresh dataset."""
        p = self.profile
        self.cycles += 1
        try:
            for i, (addr, count) in enumerate(p.reads):
                await self.master.read(self.slave, p.fc, addr, count)
                self._take(i)
        except rtu.ModbusError as e:
            self.failures += 1
            self.last_error = e
            if self.failures >= _OFFLINE_AFTER and self.online:
                self.online = False
                log(WARN, self.module_id, "meter unreachable:", e)
            return False
        self.failures = 0
        self.online = True
        self.last_ok = time.ticks_ms()
        self._finish()
        return True

    def _take(self, i):
        data = self.master.data()
        little = self.profile.little
        for f in self.profile.fields:
            if f.read == i:
                self.values[f.index] = decode.raw(data, f.offset, f.type, little)
            if f.exp_read == i:
                e = decode.raw(data, f.exp_offset, "s16", False)
                self._exps[f.index] = e[0] if e else None

    def _finish(self):
        vals = self.values
        for f in self.profile.fields:
            v = vals[f.index]
            e = self._exps[f.index]
            if v is None or e is None:
                vals[f.index] = None
            else:
                vals[f.index] = decode.normalise(v[0], v[1] + f.exp10 + e, f.exact)
