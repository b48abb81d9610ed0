"""`make bench`: the real firmware under the unix port against mosquitto and the simulator, as one table."""

import argparse
import datetime
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import heap
import latency
import link
import rate
import size
import startup
import update
import wasm32
from table import failed, render

from meterbridge import build, paths, procs


def _cpu():
    """The CPU model and the number of CPUs, from /proc/cpuinfo."""
    info = Path("/proc/cpuinfo").read_text().splitlines()
    models = [line.split(":", 1)[1].strip() for line in info if line.startswith("model name")]
    return f"{models[0] if models else platform.processor() or 'unknown CPU'}, {os.cpu_count()} CPUs"


def header():
    """Date, machine and interpreter versions, as Markdown lines."""
    mp = subprocess.run([paths.micropython(), "--version"], capture_output=True, text=True).stdout.strip()
    return [f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
            f"- machine: {platform.machine()}, {_cpu()}, load average {os.getloadavg()[0]:.2f} at start",
            f"- python: {platform.python_implementation()} {platform.python_version()}",
            f"- micropython: {mp}"]


def _wire(quick):
    """The rows of bench/wire.py, or one row saying why there are none."""
    try:
        import wire
    except ImportError as e:
        return [failed("wire efficiency (bench/wire.py)", f"missing: {e}")]
    got = wire.rows(quick=quick)
    bad = [r for r in got if not isinstance(r, dict) or "row" not in r]
    if bad:
        return [failed("wire efficiency (bench/wire.py)", f"rows not in the table's format: {bad[0]!r}")]
    return got


def sections(work, port, quick):
    """(name, thunk) for every part of the table, in order."""
    n = 3 if quick else 9
    secs = 5 if quick else 20
    return [
        ("latency", lambda: latency.rows(work / "latency", port, requests=200 if quick else 2000)),
        ("boot", lambda: startup.rows(work / "boot", port, runs=n)),
        ("rate", lambda: rate.rows(work / "rate", port, seconds=secs / 2)),
        ("heap 64k rom", lambda: heap.rows(work / "heap64rom", port, "64k", "rom", seconds=secs)),
        ("heap 64k", lambda: heap.rows(work / "heap64", port, "64k", seconds=secs, required=False)),
        ("heap 100k", lambda: heap.rows(work / "heap100", port, "100k", seconds=secs)),
        ("heap 32-bit", lambda: wasm32.rows(work / "wasm32", seconds=secs)),
        ("update", lambda: update.rows(work / "update", port)),
        ("broker faults", lambda: link.rows(port)),
        ("size", size.rows),
        ("wire", lambda: _wire(quick)),
    ]


def measure(work, quick):
    """Every row, with one mosquitto for all; a part that raises becomes a failed row."""
    port = procs.free_port()
    # without it mosquitto holds a reply back for a delayed ACK (~40 ms); latency.py measures both ways
    broker = procs.start_mosquitto(port, work, extra_conf="set_tcp_nodelay true\n")
    rows = []
    try:
        for name, thunk in sections(work, port, quick):
            t0 = time.monotonic()
            try:
                rows += thunk()
            except Exception as e:  # one broken part must not hide the others
                print(f"bench: {name}: {type(e).__name__}: {e}", file=sys.stderr)
                rows.append(failed(name, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"))
            print(f"bench: {name} done in {time.monotonic() - t0:.1f} s", file=sys.stderr, flush=True)
    finally:
        procs.stop(broker)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer samples, for trying the bench out")
    args = parser.parse_args()
    t0 = time.monotonic()
    print("\n".join(header()), flush=True)
    build.firmware()
    with tempfile.TemporaryDirectory(prefix="meterbridge-bench-") as tmp:
        rows = measure(Path(tmp), args.quick)
    print(f"- bench wall time: {time.monotonic() - t0:.0f} s{' (--quick)' if args.quick else ''}\n")
    print(render(rows))
    sys.exit(1 if any(r.get("ok") is False for r in rows) else 0)


if __name__ == "__main__":
    main()
