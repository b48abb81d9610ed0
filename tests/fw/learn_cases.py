"""Read plans that learn, as the firmware's Meter sees them: a stand-in bus that refuses reads the way a
real slave does (exception 03 or silence over its limit, exception 02 for a hole). One JSON line per case.

micropython learn_cases.py PROFILE_PATH STORAGE_DIR LIMIT HOLE_FIRST HOLE_LAST MODE BASE
MODE: exception | silent. HOLE_FIRST -1: no hole. BASE: even registers' first value (see word).
micropython learn_cases.py logs PROFILE_PATH: the warnings of a meter that never answers, of one that
answers and then refuses everything, and of one that answers and then falls silent.
"""

import asyncio
import json
import sys

from meterbridge import meter as meter_module
from meterbridge import profile, storage
from meterbridge.meter import Dataset, Meter
from meterbridge.modbus import rtu

BASE = 0x4120  # even registers: a float32's high word near 10.0, or (little-endian INT32) a small value


def word(reg):
    """The stand-in meter's register contents: plausible and different from register to register."""
    return BASE + (reg & 0x3F) if reg % 2 == 0 else 0


class Bus:
    """A master stand-in: serves word(reg), refuses as a slave with limit and hole would."""

    def __init__(self, limit=125, hole=None, silent=False):
        self.limit, self.hole, self.silent = limit, hole, silent
        self.buf = bytearray(250)
        self.refused = 0

    async def read(self, slave, fc, addr, count):
        if count > self.limit:
            self.refused += 1
            if self.silent:
                raise rtu.ModbusError(rtu.TIMEOUT, "no reply")
            raise rtu.ModbusError(rtu.EXCEPTION, "exception code 3", 3)
        if self.hole and addr <= self.hole[1] and self.hole[0] <= addr + count - 1:
            self.refused += 1
            raise rtu.ModbusError(rtu.EXCEPTION, "exception code 2", 2)
        for k in range(count):
            w = word(addr + k)
            self.buf[2 * k] = w >> 8
            self.buf[2 * k + 1] = w & 0xFF

    def data(self):
        return memoryview(self.buf)


def meter(prof, bus, store):
    cfg = {"module_id": "pm1", "meter_id": "pm1", "slave": 1, "period_ms": 1000}
    return Meter(cfg, prof, bus, Dataset(prof.count), store)


def dataset(m):
    d = m.dataset
    return [bytes(d.text[40 * j : 40 * j + d.lens[j]]).decode() for j in range(m.profile.count)]


class Script(Bus):
    """A bus that answers for the first `good` reads, then fails every read with `error`."""

    def __init__(self, good, error):
        super().__init__()
        self.good, self.error = good, error

    async def read(self, slave, fc, addr, count):
        if self.good <= 0:
            raise self.error
        self.good -= 1
        await super().read(slave, fc, addr, count)


def logs(path):
    lines = []
    meter_module.log = lambda lvl, *args: lines.append(" ".join(str(a) for a in args))
    prof = profile.load(path)
    for name, bus in (("never", Script(0, rtu.ModbusError(rtu.TIMEOUT, "no reply from slave 1"))),
                      ("refusing", Script(len(prof.reads), rtu.ModbusError(rtu.EXCEPTION, "exception code 4", 4))),
                      ("silent", Script(len(prof.reads), rtu.ModbusError(rtu.TIMEOUT, "no reply from slave 1")))):
        del lines[:]
        m = meter(prof, bus, None)
        for _ in range(4):
            asyncio.run(m.poll())
        print(json.dumps({"case": name, "log": lines}))


def main():
    if sys.argv[1] == "logs":
        return logs(sys.argv[2])
    global BASE
    path, root, limit, first, last, mode, base = sys.argv[1:8]
    BASE = int(base)
    hole = None if int(first) < 0 else (int(first), int(last))
    store = storage.Storage(root)
    ref = meter(profile.load(path), Bus(), None)
    whole = asyncio.run(ref.poll())
    want = dataset(ref)
    prof = profile.load(path, 9600, "N", store.read(profile.LIMITS % "pm1"))
    bus = Bus(int(limit), hole, mode == "silent")
    m = meter(prof, bus, store)
    polls = []
    for _ in range(3):
        before = bus.refused
        ok = asyncio.run(m.poll())
        polls.append([ok, bus.refused - before, dataset(m) == want])
    saved = store.read(profile.LIMITS % "pm1")
    # a restart: the plan made with what was saved, a fresh meter on the same bus
    again = profile.load(path, 9600, "N", saved)
    bus.refused = 0
    m2 = meter(again, bus, store)
    ok2 = asyncio.run(m2.poll())
    print(json.dumps({"plan": prof.reads, "polls": polls, "limits": m.read_limits,
                      "saved": json.loads(saved) if saved else None, "replan": again.reads,
                      "restart": [ok2, bus.refused, dataset(m2) == want],
                      "values": sum(1 for v in want if v) if whole else 0}))


main()
