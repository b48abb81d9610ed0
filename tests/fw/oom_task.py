"""A supervised task dies of MemoryError twice: it is started again, and the other task never notices."""

import asyncio

from meterbridge.supervisor import Supervisor

state = {"starts": 0, "turns": 0, "other": 0}


class Watchdog:
    def feed(self):
        pass


async def fragile():
    state["starts"] += 1
    while True:
        await asyncio.sleep_ms(10)
        if state["starts"] <= 2:
            bytearray(1 << 40)  # more than any heap: MemoryError
        state["turns"] += 1


async def other():
    while True:
        state["other"] += 1
        await asyncio.sleep_ms(10)


async def crashes():
    raise ValueError("a bug")


async def main():
    sup = Supervisor(Watchdog())
    sup.spawn("fragile", fragile)
    sup.spawn("other", other)
    sup.spawn("crashes", crashes)
    try:
        await asyncio.wait_for_ms(sup.run(), 600)
    except asyncio.TimeoutError:
        pass
    print(state["starts"], state["turns"] > 10, state["other"] > 30)


asyncio.run(main())
