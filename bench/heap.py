"""Heap at a -X heapsize: free after boot from the firmware's own log line, the floor from heap_probe."""

import re
import subprocess
import time

from rig import BENCH, Rig
from table import failed, row

from meterbridge import procs
from meterbridge.everest import EverestClient

_BOOT = re.compile(rb"heap free (\d+)")
_ERROR = re.compile(r"\w+(Error|Exception)\b")


def _drive(proc, ev, start, deadline):
    """Once values flow, send start/stop pairs every 0.2 s while proc runs; (values, unanswered, sent)."""
    while proc.poll() is None and time.monotonic() < deadline and not _values(ev, start):
        time.sleep(0.05)
    missed = sent = 0
    while proc.poll() is None and time.monotonic() < deadline:
        tid = f"heap-{sent // 2}"
        try:
            (ev.stop_transaction if sent % 2 else ev.start_transaction)(tid, timeout=2)
        except TimeoutError:
            missed += proc.poll() is None  # not a miss when the process ended in the meantime
        sent += 1
        time.sleep(0.2)
    return _values(ev, start), missed, sent


def _values(ev, start):
    return sum(m.seq >= start for m in ev.messages("powermeter_values"))


def _why(text):
    """The last exception in a MicroPython run's output (bytes), with the frame it came from; else the last line."""
    lines = [line.strip() for line in text.decode(errors="replace").strip().splitlines()] or ["no output"]
    errors = [i for i, line in enumerate(lines) if _ERROR.match(line)]
    if not errors:
        return lines[-1]
    i = errors[-1]
    return " — ".join(lines[i - 1 : i + 1]) if i and lines[i - 1].startswith("File ") else lines[i]


def _run(rig, ev, cmd, env, seconds, stdout=None):
    """Run cmd for `seconds` (or until it ends) under requests; (proc, alive at the end, served, sent, its log).

    served: it published at least a value every 2 s and answered every request.
    """
    log_from = rig.fw_log.stat().st_size if rig.fw_log.exists() else 0
    start = ev.mark()
    proc = rig.spawn(cmd, env, stdout)
    values, missed, sent = _drive(proc, ev, start, time.monotonic() + seconds)
    alive = proc.poll() is None
    procs.stop(proc)
    return proc, alive, values >= seconds // 2 and missed == 0, sent, rig.fw_log.read_bytes()[log_from:]


def _starts(rig, ev, heapsize):
    """True when the firmware reaches its first values at heapsize."""
    start = ev.mark()
    proc = rig.spawn(*rig.command(heapsize=heapsize))
    deadline = time.monotonic() + 5
    try:
        while proc.poll() is None and time.monotonic() < deadline and not _values(ev, start):
            time.sleep(0.05)
        return bool(_values(ev, start))
    finally:
        procs.stop(proc)


def _smallest(rig, ev, lo=16, hi=256):
    """The smallest -X heapsize in KiB (lo < it <= hi) at which the firmware reaches its first values."""
    if not _starts(rig, ev, f"{hi}k"):
        return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if _starts(rig, ev, f"{mid}k") else (mid, hi)
    return hi


def _floor(rig, ev, heapsize, seconds, name):
    """The probe's row: the lowest free heap while the firmware runs beside a sampler."""
    cmd, env = rig.command(BENCH / "heap_probe.py", (rig.config, seconds), heapsize)
    proc, _, served, sent, log = _run(rig, ev, cmd, env, seconds + 2, subprocess.PIPE)
    out = proc.stdout.read()
    floor = re.search(rb"^floor (\d+)", out, re.M)
    if not floor or not served:
        return failed(f"heap free floor, {name}", f"the firmware under heap_probe failed: {_why(out + log)}")
    low, size = int(floor.group(1)), _bytes(heapsize)
    return row(f"heap free floor, {name} (heap_probe: lowest of 1/s samples after gc.collect, {seconds} s of "
               f"polling and {sent} requests)", f"{low} B", f"heap {size} B", low / size)


def _bytes(heapsize):
    return int(heapsize.rstrip("k")) * 1024


def rows(workdir, port, heapsize, seconds=20):
    """Free after boot and whether the firmware keeps running; then its floor, or the heap it needs."""
    name = f"-X heapsize={heapsize}"
    size = _bytes(heapsize)
    with Rig(workdir, port) as rig, EverestClient("127.0.0.1", port, rig.module_id) as ev:
        _, alive, served, _, log = _run(rig, ev, *rig.command(heapsize=heapsize), seconds)
        healthy = alive and served
        boot = _BOOT.search(log)
        value = f"{boot.group(1).decode()} B" if boot else "does not start"
        ratio = int(boot.group(1)) / size if boot else None
        first = row(f"heap free after boot, {name} (the firmware's own log line)", value, f"heap {size} B",
                    ratio, f"then publishes and answers for {seconds} s", healthy)
        if healthy:
            return [first, _floor(rig, ev, heapsize, seconds, name)]
        first["value"] += f"; {_why(log)}"
        need = _smallest(rig, ev)
        return [first, row("smallest -X heapsize at which the firmware reaches its first values",
                           f"{need}k" if need else "> 256k", heapsize, need * 1024 / size if need else None,
                           f"≤ {heapsize}", False)]
