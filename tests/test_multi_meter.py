"""Several meters on one RS-485 bus (one simulator serving several slave ids on one pty), one of them dead."""

import json
from itertools import pairwise

import pytest

from conftest import Bridge
from fw import run
from meterbridge import paths, procs
from meterbridge.everest import EverestClient
from meterbridge.sim.link import char_time, frame_gap

BAUD = 9600
PERIOD_MS = 1000
TIMEOUT_MS = 150
RETRIES = 1
SLACK_S = 0.02  # scheduling slack per request on a busy 2-core machine
INTERVALS = 4  # publish intervals observed per live meter
# Three meters with their code in ROMFS, and the state and log topics, fit 80k on the 64-bit unix port; every
# object there takes about twice what it takes on an ESP32 (32-bit).
HEAPSIZE = "80k"


def start_bus(workdir, broker, live, dead, heapsize=HEAPSIZE):
    """A Bridge whose simulator serves the live (profile, slave) meters and whose firmware also polls dead."""
    (profile, slave), *others = live
    workdir.mkdir()
    b = Bridge(workdir, broker, profile=profile, slave=slave, baud=BAUD, period_ms=PERIOD_MS, heapsize=heapsize,
               form="rom", meter={"timeout_ms": TIMEOUT_MS, "retries": RETRIES})
    first = b.config["meters"][0]
    for i, (p, s) in enumerate(others + [dead], start=2):
        b.config["meters"].append({**first, "module_id": f"pm{i}", "profile": p, "slave": s})
    for p, s in others:
        b.sim_cmd += ["--meter", f"{p}:{s}"]
    return b.start()


@pytest.fixture
def bus(tmp_path, broker):
    """Factory: bus(live, dead) starts one; all are stopped after the test."""
    made = []

    def make(live, dead, **kw):
        made.append(start_bus(tmp_path / f"bus{len(made)}", broker, live, dead, **kw))
        return made[-1]

    yield make
    for b in made:
        b.stop()


@pytest.mark.parametrize(("live", "dead"), [
    ([("eastron_sdm630_v2", 1)], ("eastron_sdm630_v2", 7)),
    ([("eastron_sdm630_v2", 1), ("carlo_gavazzi_em340", 2)], ("abb_b23", 9)),
], ids=["two meters", "three meters"])
def test_live_meters_keep_their_period_beside_a_dead_one(bus, broker, live, dead):
    b = bus(live, dead)
    modules = [m["module_id"] for m in b.config["meters"]]
    clients = [EverestClient("127.0.0.1", broker, module_id) for module_id in modules]
    for c in clients:
        c.connect()
    try:
        for c in clients[:-1]:
            start = 0
            for _ in range(INTERVALS + 1):
                start = c.wait_for("powermeter_values", timeout=10, start=start).seq + 1
        for c in clients[:-1]:
            got = [m.received for m in c.messages("powermeter_values")][: INTERVALS + 1]
            gaps = [t1 - t0 for t0, t1 in pairwise(got)]
            mean = sum(gaps) / len(gaps)
            assert 0.8 < mean / (PERIOD_MS / 1000) < 1.25, (c.base, gaps)
            assert max(gaps) < 2 * PERIOD_MS / 1000, (c.base, gaps)
            assert len(c.messages("communication_check")) >= INTERVALS - 1
        assert clients[-1].messages() == [], "a dead meter publishes no values and no communication_check"
    finally:
        for c in clients:
            c.close()
    assert b.alive()


def test_many_long_topics_fit_the_connect_handshake(bus, broker):
    """CONNECT and every SUBSCRIBE wait in the receive buffer until the handshake sends them; a non-signing bridge
    sizes that buffer for a request's head (512 B), which three meters with long module ids overflow."""
    long_id = "charger-left-cabinet-meter-"
    b = bus([("eastron_sdm630_v2", 1), ("carlo_gavazzi_em340", 2)], ("abb_b23", 9), heapsize="100k")
    b.stop()
    for m in b.config["meters"]:
        m["module_id"] = long_id + m["module_id"]
    b.start()  # before the fix: ValueError in connect, never online
    with EverestClient("127.0.0.1", broker, long_id + "pm1") as ev:
        ev.wait_for("powermeter_values", timeout=10)
    assert "connect failed" not in b.firmware_log()


def test_a_dead_meter_costs_its_timeout_per_try(bus):
    b = bus([("eastron_sdm630_v2", 1), ("carlo_gavazzi_em340", 2)], ("eastron_sdm630_v2", 7))
    procs.stop(b.fw)  # the firmware's own meters would share the line with this measurement
    script = paths.REPO / "bench" / "fw_cycle.py"
    out = json.loads(run(script, args=(b.link, BAUD, "N", paths.PROFILES / "eastron_sdm630_v2.json", 7, 3,
                                       TIMEOUT_MS, RETRIES)))
    assert out["ok"] == 0 and out["stats"] == [3, 3 * RETRIES, 3], "each cycle ends at its first read"
    shortest = min(count for _, count in out["reads"])
    # per try: t3.5, then the request and the shortest reply's wire time, then the timeout
    frames = (8 + 5 + 2 * shortest) * char_time(BAUD, "N") + frame_gap(BAUD)
    for us in out["us"]:
        assert us / 1e6 <= (RETRIES + 1) * (TIMEOUT_MS / 1000 + frames + SLACK_S), out
