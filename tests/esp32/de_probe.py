"""Unix-port script: Modbus reads through the ESP32 HAL's Bus on the stand-in UART; prints what was seen.

argv: baud parity count [de]. Output, one JSON line: reads (register words or an error per read),
edges, frames and releases as recorded by the stand-in machine module.
"""

import asyncio
import json
import struct
import sys

import machine

from meterbridge.hal import esp32
from meterbridge.modbus.master import Master
from meterbridge.modbus.rtu import ModbusError


async def _main(baud, parity, count, de):
    uart = {"id": 1, "tx": 17, "rx": 16, "de": de}
    bus = esp32.Bus(uart, baud, parity)
    master = Master(bus, baud, 10 if parity == "N" else 11, 500, 0)
    reads = []
    for _ in range(count):
        try:
            await master.read(1, 4, 0, 4)
            reads.append(list(struct.unpack_from(">4H", master.data())))
        except ModbusError as e:
            reads.append(str(e))
    bus.close()
    frames = [(f[0], f[1], f[2], len(f[3]), f[4]) for f in machine.FRAMES]
    releases = [(r[0], r[1], r[2], len(r[3])) for r in machine.RELEASES]
    print(json.dumps({"reads": reads, "edges": machine.EDGES, "frames": frames, "releases": releases}))


de = int(sys.argv[4]) if len(sys.argv) > 4 and sys.argv[4] != "none" else None
asyncio.run(_main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), de))
