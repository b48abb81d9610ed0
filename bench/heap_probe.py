"""The firmware's heap under the unix port: app.main() itself, with a 1 Hz sampler beside its tasks.

micropython heap_probe.py CONFIG SECONDS  (MICROPYPATH as for the firmware, run in its place as main.py is)
main() runs unchanged up to its asyncio.run(), which is taken over here: it prints "boot FREE TOTAL", runs the
firmware's tasks for SECONDS beside a sampler, then prints "floor FREE": the lowest gc.mem_free() sample, each
taken right after a gc.collect() (without it a sample only says how long ago the last collection was).
"""

import asyncio
import gc
import sys

from meterbridge import app


async def _sample(firmware, seconds):
    asyncio.create_task(firmware)
    low = gc.mem_free()
    for _ in range(seconds):
        await asyncio.sleep(1)
        gc.collect()
        low = min(low, gc.mem_free())
    print("floor", low)


def _run(firmware):
    gc.collect()
    print("boot", gc.mem_free(), gc.mem_free() + gc.mem_alloc())
    _asyncio_run(_sample(firmware, int(sys.argv[2])))


_asyncio_run = asyncio.run
asyncio.run = _run
app.main()
