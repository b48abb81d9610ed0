"""A long run of the firmware with transactions and broker restarts interleaved, and its heap figures."""

import re
import time

from conftest import Bridge
from meterbridge import paths, procs
from meterbridge.everest import EverestClient

SOAK_PROFILE = str(paths.REPO / "tests" / "data" / "soak_meter.json")
_HEAP = re.compile(r"heap free (\d+) floor (\d+) cycles (\d+)")


def heap_lines(log):
    """[(free, floor, cycles)] from the firmware's debug heap lines."""
    return [tuple(map(int, m.groups())) for m in _HEAP.finditer(log)]


def soak(workdir, cycles, restarts, heapsize="64k", form="rom", timeout=1800):
    """Run until the firmware has polled `cycles` times; return its heap lines and what was done."""
    port = procs.free_port()
    broker = procs.start_mosquitto(port, workdir)
    b = Bridge(workdir / "b", port, profile=SOAK_PROFILE, baud=115200, period_ms=10, heapsize=heapsize, form=form,
               meter={"timeout_ms": 100})
    b.dir.mkdir()
    b.config.update(log_level="debug", heap_log_s=2)
    b.start()
    done = {"restarts": 0, "transactions": 0}
    end = time.monotonic() + timeout
    try:
        ev = EverestClient("127.0.0.1", port, "pm1")
        ev.connect()
        step = cycles // (restarts + 1)
        while time.monotonic() < end and b.alive():
            lines = heap_lines(b.firmware_log())
            polled = lines[-1][2] if lines else 0
            if polled >= cycles:
                break
            if done["restarts"] < restarts and polled >= step * (done["restarts"] + 1):
                procs.stop(broker)
                broker = procs.start_mosquitto(port, workdir)
                done["restarts"] += 1
            try:
                tid = f"soak-{done['transactions']}"
                ev.start_transaction(tid, timeout=3)
                ev.stop_transaction(tid, timeout=3)
                done["transactions"] += 1
            except (TimeoutError, ConnectionError):
                time.sleep(0.5)  # the broker is restarting
        ev.close()
        return {"alive": b.alive(), "heap": heap_lines(b.firmware_log()), "log": b.firmware_log(), **done}
    finally:
        b.stop()
        procs.stop(broker)


def flat(heap, warmup=0.25, tolerance=1024):
    """True when the post-collection free heap shows no downward trend after warm-up."""
    settled = heap[int(len(heap) * warmup):]
    half = len(settled) // 2
    first, second = settled[:half], settled[half:]
    return bool(first and second) and min(f for f, _, _ in second) >= min(f for f, _, _ in first) - tolerance
