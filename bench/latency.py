"""Start/stop reply latency of the firmware while it polls, beside the paho floor on the same broker."""

import random
import subprocess
import sys
import time

from rig import BENCH, Rig
from table import row

from meterbridge import procs
from meterbridge.everest import EverestClient

FLOOR_ID = "floor"
TARGET_MS = 20.0
TARGET_RATIO = 3.0


def _p(samples, q):
    """The q-th percentile (0..100) of samples, nearest rank."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def _once(ev, i):
    """One start or stop request (alternating, one transaction per pair); its reply latency in ms."""
    tid = f"bench-{i // 2}"
    t0 = time.time()
    if i % 2 == 0:
        ev.start_transaction(tid)
    else:
        ev.stop_transaction(tid)
    return (ev.last_reply.received - t0) * 1000


def _start_floor(port):
    """The floor responder as its own process, once it has subscribed."""
    proc = subprocess.Popen([sys.executable, str(BENCH / "floor.py"), str(port), FLOOR_ID],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    if proc.stdout.readline().strip() != "ready":
        procs.stop(proc)
        raise RuntimeError("floor responder did not start")
    return proc


def measure(workdir, port, requests=2000, period_ms=100, warmup=10):
    """Interleave requests to the firmware and to the floor; {name: [ms, ...]}."""
    with Rig(workdir, port, period_ms) as rig:
        rig.spawn(*rig.command())
        floor = _start_floor(port)
        try:
            with EverestClient("127.0.0.1", port, rig.module_id) as fw_ev, \
                    EverestClient("127.0.0.1", port, FLOOR_ID) as floor_ev:
                fw_ev.wait_for("powermeter_values", timeout=15)  # polling runs
                clients = {"firmware": fw_ev, "floor": floor_ev}
                got = {name: [] for name in clients}
                for i in range(warmup + requests):
                    for name, ev in clients.items():
                        ms = _once(ev, i)
                        if i >= warmup:
                            got[name].append(ms)
                    time.sleep(random.uniform(0, 0.01))  # land at any phase of the poll cycle
            return got
        except TimeoutError as e:
            raise RuntimeError(f"{e}\n{rig.log_text()[-2000:]}") from None
        finally:
            procs.stop(floor)


def _default_broker_p99(workdir, requests, period_ms):
    """The firmware's p99 and the floor's through a mosquitto with its default config (Nagle on)."""
    port = procs.free_port()
    broker = procs.start_mosquitto(port, workdir)
    try:
        got = measure(workdir / "default-broker", port, requests, period_ms)
    finally:
        procs.stop(broker)
    return _p(got["firmware"], 99), _p(got["floor"], 99)


def rows(workdir, port, requests=2000, period_ms=100):
    """p50 and p99 on the bench's broker (TCP_NODELAY); p99 through a mosquitto left at its defaults, as a note."""
    got = measure(workdir, port, requests, period_ms)
    fw, fl = got["firmware"], got["floor"]
    where = f"{len(fw)} requests, polling every {period_ms} ms"
    p50, f50 = _p(fw, 50), _p(fl, 50)
    p99, f99 = _p(fw, 99), _p(fl, 99)
    few = min(requests, 500)
    d99, df99 = _default_broker_p99(workdir, few, period_ms)
    return [
        row(f"start/stop reply p50 ({where})", f"{p50:.2f} ms", f"paho floor {f50:.2f} ms", p50 / f50),
        row(f"start/stop reply p99 ({where})", f"{p99:.2f} ms", f"paho floor {f99:.2f} ms", p99 / f99,
            f"≤ {TARGET_MS:g} ms and ≤ {TARGET_RATIO:g}× floor", p99 <= TARGET_MS and p99 <= TARGET_RATIO * f99),
        row(f"start/stop reply p99, mosquitto without set_tcp_nodelay ({few} requests)", f"{d99:.2f} ms",
            f"paho floor {df99:.2f} ms", d99 / df99),
    ]
