"""Time the firmware's poll cycle: the real Meter and Master, under the unix port, on a (simulated) line.

micropython fw_cycle.py LINK BAUD PARITY PROFILE_PATH SLAVE CYCLES TIMEOUT_MS RETRIES
prints one JSON line: {"reads": the plan, "us": [each cycle], "ok": complete cycles, "stats": the master's}.
"""

import asyncio
import json
import sys
import time

from meterbridge import hal, planner, profile
from meterbridge.meter import Dataset, Meter
from meterbridge.modbus.master import Master


async def _cycles(meter, n):
    took, ok = [], 0
    for _ in range(n):
        t0 = time.ticks_us()
        if await meter.poll():
            ok += 1
        took.append(time.ticks_diff(time.ticks_us(), t0))
    return took, ok


def main():
    link, baud, parity, path, slave, cycles, timeout_ms, retries = sys.argv[1:9]
    baud = int(baud)
    prof = profile.load(path, baud, parity)
    master = Master(hal.Bus({"device": link}, baud, parity), baud, planner.char_bits(parity), int(timeout_ms),
                    int(retries))
    meter = Meter({"module_id": "bench", "meter_id": "bench", "slave": int(slave), "period_ms": 1000}, prof, master,
                  Dataset(prof.count))
    took, ok = asyncio.run(_cycles(meter, int(cycles)))
    print(json.dumps({"reads": prof.reads, "us": took, "ok": ok, "stats": master.stats}))


main()
