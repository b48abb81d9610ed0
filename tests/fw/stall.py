"""A supervised task stalls (mode "task") or blocks the whole loop (mode "loop"): the watchdog must end us."""

import asyncio
import sys
import time

from meterbridge import hal
from meterbridge.supervisor import Supervisor


async def steady(sup):
    while True:
        sup.beat("steady")
        await asyncio.sleep_ms(50)


async def stalls(sup, mode):
    for _ in range(10):
        sup.beat("stalls")
        await asyncio.sleep_ms(50)
    print("stalling now", mode)
    if mode == "loop":
        time.sleep(10)  # blocks every task, the supervisor too
    await asyncio.sleep(10)


async def main(mode):
    sup = Supervisor(hal.Watchdog(1500))
    sup.watch("steady", 1000)
    sup.watch("stalls", 1000)
    asyncio.create_task(steady(sup))
    asyncio.create_task(sup.run())
    await stalls(sup, mode)
    print("survived: the watchdog did not fire")


asyncio.run(main(sys.argv[1]))
