"""The fault suite at full size: broker restarts, malformed requests, meter faults and lies, and a long soak.

`python bench/faults.py [--restarts 20] [--payloads 10000] [--cycles 100000]` prints one table. It
reuses the test suite's harness (tests/), so the bench and the tests exercise the same thing.
"""

import argparse
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from table import render, row  # noqa: E402

from conftest import Bridge, flatten  # noqa: E402
from fuzz import storm  # noqa: E402
from meterbridge import procs  # noqa: E402
from restarts import restart_delays  # noqa: E402
from soak import flat, soak  # noqa: E402

_METER_FAULTS = ["--crc-error-rate", "0.2", "--exception-rate", "0.1", "--garbage-rate", "0.2",
                 "--byte-count-rate", "0.1", "--shift-rate", "0.1"]


def restarts(work, count):
    delays, alive = restart_delays(work, count)
    worst = max(delays) if delays else float("inf")
    return [row(f"broker restarts: values again after the broker returns (max of {count})", f"{worst:.2f} s",
                f"median {statistics.median(delays):.2f} s" if delays else "none came back", target="≤ 2 s",
                ok=len(delays) == count and worst <= 2.0),
            row("crashes across broker restarts", 0 if alive else 1, "—", target="0", ok=alive)]


def _bridge(work, port, **kw):
    b = Bridge(work, port, **kw)
    work.mkdir()
    return b.start()


def payloads(work, port, count):
    b = _bridge(work, port)
    try:
        f = storm(b, port, count)
    finally:
        b.stop()
    return [row(f"malformed requests ({count}): crashes", 0 if f["alive"] else 1, "—", target="0", ok=f["alive"]),
            row("publishes to topics outside the module", len(f["bad_topics"]), "—", target="0",
                ok=not f["bad_topics"]),
            row("error replies to answerable requests", f["replies"], f"{f['answerable']} answerable",
                f["replies"] / max(f["answerable"], 1), target="≥ 0.95×", ok=f["replies"] >= 0.95 * f["answerable"])]


def stale(work, port, seconds=30):
    b = _bridge(work, port, sim_args=_METER_FAULTS)
    try:
        with b.everest() as ev:
            time.sleep(seconds)
            msgs = ev.messages("powermeter_values")
        served = {}
        for _, rec in b.truth():
            for path, v in rec.items():
                served.setdefault(path, set()).add(v)
        bad = sum(1 for m in msgs for p, v in flatten(m.value).items()
                  if p.startswith("energy") and Decimal(v) not in served[p])
        alive = b.alive()
        refused = b.firmware_log().count("dataset refused:")
    finally:
        b.stop()
    return [row(f"stale, mixed or made-up energy under meter faults ({' '.join(_METER_FAULTS)})", bad,
                f"{len(msgs)} datasets published in {seconds} s, {refused} runs of refused ones logged", target="0",
                ok=bad == 0 and alive)]


def soak_rows(work, cycles):
    run = soak(work, cycles, restarts=5)
    heap = run["heap"]
    floor = min(f for f, _, _ in heap[len(heap) // 4:]) if heap else 0
    ok = run["alive"] and "MemoryError" not in run["log"] and flat(heap)
    return [row(f"soak: {heap[-1][2] if heap else 0} poll cycles, {run['transactions']} transactions, "
                f"{run['restarts']} broker restarts at -X heapsize=64k, code in ROMFS", f"heap floor {floor} B",
                f"free after boot {heap[0][0] if heap else 0} B", target="no MemoryError, flat floor", ok=ok)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--restarts", type=int, default=20)
    ap.add_argument("--payloads", type=int, default=10000)
    ap.add_argument("--cycles", type=int, default=100000)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="meterbridge-faults-"))
    port = procs.free_port()
    broker = procs.start_mosquitto(port, work)
    rows = []
    try:
        (work / "restarts").mkdir()
        rows += restarts(work / "restarts", args.restarts)
        rows += payloads(work / "payloads", port, args.payloads)
        rows += stale(work / "stale", port)
        (work / "soak").mkdir()
        rows += soak_rows(work / "soak", args.cycles)
    finally:
        procs.stop(broker)
    print(render(rows))
    return 0 if all(r["ok"] is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
