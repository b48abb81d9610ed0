"""Unix-port script: Modbus transactions through the ESP32 HAL's Bus on the stand-in UART; prints what was seen.

argv: baud parity count [de [words [block_ms]]]. Each transaction reads 4 registers, or with words > 0
writes that many (FC16: a long frame). With block_ms, another task blocks the whole program for
block_ms (as DNS or a TLS handshake does) whenever it gets to run while DE is high.
Output, one JSON line: reads (register words, True for a write, or an error each), edges, frames and
releases as recorded by the stand-in machine module, and how often the other task ran while DE was high.
"""

import asyncio
import json
import struct
import sys
import time

import machine

from meterbridge.hal import esp32
from meterbridge.modbus.master import Master
from meterbridge.modbus.rtu import ModbusError


async def _blocker(de, block_ms, seen):
    while True:
        await asyncio.sleep_ms(0)
        if machine.level(de):
            seen[0] += 1
            time.sleep_ms(block_ms)


async def _main(baud, parity, count, de, words, block_ms):
    uart = {"id": 1, "tx": 17, "rx": 16, "de": de}
    bus = esp32.Bus(uart, baud, parity)
    master = Master(bus, baud, 10 if parity == "N" else 11, 500, 0)
    blocked = [0]
    if block_ms:
        asyncio.create_task(_blocker(de, block_ms, blocked))
    reads = []
    for _ in range(count):
        try:
            if words:
                await master.write(1, 0x100, list(range(words)))
                reads.append(True)
            else:
                await master.read(1, 4, 0, 4)
                reads.append(list(struct.unpack_from(">4H", master.data())))
        except ModbusError as e:
            reads.append(str(e))
    bus.close()
    frames = [(f[0], f[1], f[2], len(f[3]), f[4]) for f in machine.FRAMES]
    releases = [(r[0], r[1], r[2], len(r[3])) for r in machine.RELEASES]
    print(json.dumps({"reads": reads, "edges": machine.EDGES, "frames": frames, "releases": releases,
                      "blocked_with_de_high": blocked[0]}))


args = sys.argv[1:] + [None] * 6
de = int(args[3]) if args[3] not in (None, "none") else None
asyncio.run(_main(int(args[0]), args[1], int(args[2]), de, int(args[4] or 0), int(args[5] or 0)))
