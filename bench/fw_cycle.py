"""Time the firmware's poll cycle: the real Meter and Master, under the unix port, on a (simulated) line.

micropython fw_cycle.py LINK BAUD PARITY PROFILE_PATH SLAVE CYCLES TIMEOUT_MS RETRIES [STORAGE_DIR]
prints one JSON line: {"reads": the plan, "us": [each cycle], "ok": complete cycles, "oks": [each cycle's
result], "stats": the master's, "learned": the meter's read_limits}. With STORAGE_DIR the meter loads and
saves what it learns there, as the firmware does (a second run is a restart).
"""

import asyncio
import json
import sys
import time

from meterbridge import hal, planner, profile, storage
from meterbridge.meter import Dataset, Meter
from meterbridge.modbus.master import Master


async def _cycles(meter, n):
    took, oks = [], []
    for _ in range(n):
        t0 = time.ticks_us()
        oks.append(await meter.poll())
        took.append(time.ticks_diff(time.ticks_us(), t0))
    return took, oks


def main():
    link, baud, parity, path, slave, cycles, timeout_ms, retries = sys.argv[1:9]
    store = storage.Storage(sys.argv[9]) if len(sys.argv) > 9 else None
    baud = int(baud)
    prof = profile.load(path, baud, parity, store.read(profile.LIMITS % "bench") if store else None, int(slave))
    master = Master(hal.Bus({"device": link}, baud, parity), baud, planner.char_bits(parity), int(timeout_ms),
                    int(retries))
    meter = Meter({"module_id": "bench", "meter_id": "bench", "slave": int(slave), "period_ms": 1000}, prof, master,
                  Dataset(prof.count), store)
    took, oks = asyncio.run(_cycles(meter, int(cycles)))
    print(json.dumps({"reads": prof.reads, "us": took, "ok": oks.count(True), "oks": oks, "stats": master.stats,
                      "learned": meter.read_limits}))


main()
