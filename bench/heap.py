"""Heap at a -X heapsize, from the firmware's own log: free after boot, and the once-a-second debug heap line."""

import re
import time

from rig import Rig
from table import failed, row

from meterbridge import procs
from meterbridge.everest import EverestClient

_BOOT = re.compile(rb"heap free (\d+)$", re.M)  # the start-up line ends with it
_LIVE = re.compile(rb"heap free (\d+) floor")  # the debug line: free right after a gc.collect()
_ERROR = re.compile(r"\w+(Error|Exception)\b")


def _values(ev, start):
    """How many powermeter_values arrived from seq start on."""
    return sum(m.seq >= start for m in ev.messages("powermeter_values"))


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


def _why(text):
    """The last exception in a MicroPython run's output (bytes), with the frame it came from; else the last line."""
    lines = [line.strip() for line in text.decode(errors="replace").strip().splitlines()] or ["no output"]
    errors = [i for i, line in enumerate(lines) if _ERROR.match(line)]
    if not errors:
        return lines[-1]
    i = errors[-1]
    return " — ".join(lines[i - 1 : i + 1]) if i and lines[i - 1].startswith("File ") else lines[i]


def _run(rig, ev, heapsize, form, seconds):
    """The firmware at heapsize for `seconds` under requests; (kept publishing and answering, sent, its log)."""
    start = ev.mark()
    proc = rig.spawn(*rig.command(heapsize=heapsize, form=form))
    values, missed, sent = _drive(proc, ev, start, time.monotonic() + seconds)
    healthy = proc.poll() is None and values >= seconds // 2 and missed == 0
    procs.stop(proc)
    return healthy, sent, rig.fw_log.read_bytes()


def _starts(rig, ev, heapsize, form):
    """True when the firmware reaches its first values at heapsize."""
    start = ev.mark()
    proc = rig.spawn(*rig.command(heapsize=heapsize, form=form))
    deadline = time.monotonic() + 5
    try:
        while proc.poll() is None and time.monotonic() < deadline and not _values(ev, start):
            time.sleep(0.05)
        return bool(_values(ev, start))
    finally:
        procs.stop(proc)


def _smallest(rig, ev, form, lo=16, hi=256):
    """The smallest -X heapsize in KiB (lo < it <= hi) at which the firmware reaches its first values."""
    if not _starts(rig, ev, f"{hi}k", form):
        return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if _starts(rig, ev, f"{mid}k", form) else (mid, hi)
    return hi


def rows(workdir, port, heapsize, form="mpy", seconds=20, required=True):
    """Free after boot and whether the firmware keeps running, then its floor; or, failing that, the heap it needs.

    form "mpy" loads the code from .mpy files into the heap; "rom" runs it in place from a ROMFS image.
    required=False reports the size without a target: a measurement, not a promise.
    """
    code = "code in ROMFS" if form == "rom" else "code from .mpy files"
    name = f"-X heapsize={heapsize}, {code}"
    size = int(heapsize.rstrip("k")) * 1024
    with Rig(workdir, port, log_level="debug", heap_log_s=1) as rig, \
            EverestClient("127.0.0.1", port, rig.module_id) as ev:
        healthy, sent, log = _run(rig, ev, heapsize, form, seconds)
        boot = _BOOT.search(log)
        live = [int(n) for n in _LIVE.findall(log)]
        value = f"{boot.group(1).decode()} B" if boot else "does not start"
        first = row(f"heap free after boot, {name} (the firmware's start-up log line)", value, f"heap {size} B",
                    int(boot.group(1)) / size if boot else None,
                    f"then publishes and answers for {seconds} s" if required else "—", healthy if required else None)
        if healthy and live:
            return [first, row(f"heap free floor, {name}: lowest of {len(live)} debug heap lines (1/s, after "
                               f"gc.collect) over {seconds} s of polling and {sent} requests", f"{min(live)} B",
                               f"heap {size} B", min(live) / size)]
        if healthy:
            return [first, failed(f"heap free floor, {name}", "no debug heap line in the firmware's log")]
        first["value"] += f"; {_why(log)}"
        need = _smallest(rig, ev, form)
        return [first, row(f"smallest -X heapsize at which the firmware reaches its first values, {code}",
                           f"{need}k" if need else "> 256k", heapsize, need * 1024 / size if need else None,
                           f"≤ {heapsize}" if required else "—", False if required else None)]
