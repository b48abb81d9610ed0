"""Every profile: loads and plans sanely in the firmware, and end to end publishes what the simulated meter serves."""

import json
import random
from decimal import ROUND_HALF_EVEN, Context
from itertools import pairwise

import pytest

from conftest import flatten
from fw import run
from meterbridge import schema
from meterbridge.codec import PROFILE_DIR, WIDTHS, load_profile
from meterbridge.sim.meter import Meter
from test_ocmf import SIGNING_HEAP

PROFILES = sorted(p.stem for p in PROFILE_DIR.glob("*.json"))
MESSAGES = 3  # published datasets compared per profile


def plans(lines):
    """The firmware's view of "NAME BAUD PARITY" lines: {name, max_read, reads, fields} or {error}."""
    stdin = "".join(f"{PROFILE_DIR / name}.json {baud} {parity}\n" for name, baud, parity in lines)
    return [json.loads(line) for line in run("plan_profiles.py", stdin).splitlines()]


def defaults(name):
    """(slave, baud, parity) a profile's meter ships with."""
    d = load_profile(name)["defaults"]
    return d.get("slave", 1), d.get("baud", 9600), d.get("parity", "N")


def test_every_profile_loads_and_plans_sanely():
    lines = [(name, baud, parity) for name in PROFILES
             for baud, parity in {(defaults(name)[1], defaults(name)[2]), (9600, "N"), (38400, "E")}]
    for (name, baud, _), got in zip(lines, plans(lines), strict=True):
        assert "error" not in got, got
        doc = load_profile(name)
        assert got["max_read"] == doc.get("max_read", 125) <= 125
        reads = got["reads"]
        assert all(1 <= count <= got["max_read"] for _, count in reads), (name, baud, reads)
        assert [n for _, n in reads] == sorted(n for _, n in reads), "shortest read first"
        assert all(a + n <= b for (a, n), (b, _) in pairwise(sorted(reads))), "reads do not overlap"
        for path, field in doc["fields"].items():
            read, offset = got["fields"][path]
            addr, count = reads[read]
            assert addr + offset // 2 == field["reg"] and offset // 2 + WIDTHS[field["type"]] <= count, (name, path)
        holes = doc.get("holes", [])
        assert not any(a <= hi and lo < a + n for a, n in reads for lo, hi in holes), (name, reads)


def test_sdm630_full_dataset_in_three_requests_at_9600():
    (got,) = plans([("eastron_sdm630_v2", 9600, "N")])
    assert len(got["reads"]) <= 3 and len(got["fields"]) == 24


@pytest.mark.parametrize("name", PROFILES)
def test_the_simulator_serves_every_field(name):
    meter = Meter(load_profile(name), random.Random(1))
    assert all(v is not None for v in meter.table.truth().values())


def test_the_widest_dataset_fits_its_buffer():
    """Every value at its slot's full length fits the buffer made for the profile, with little to spare."""
    lines = run("widest_dataset.py", args=[PROFILE_DIR / f"{name}.json" for name in PROFILES]).splitlines()
    assert len(lines) == len(PROFILES)
    for line in lines:
        name, values, spare = line.split()
        assert int(values) == len(load_profile(name)["fields"]) and 0 <= int(spare) <= 128, line


def expected(path, value):
    """What the firmware publishes for an exact served value: energy exact, the rest to 7 digits."""
    if path.startswith("energy"):
        return value
    return Context(prec=7, rounding=ROUND_HALF_EVEN).plus(value)


@pytest.mark.parametrize("name", PROFILES)
def test_published_values_equal_the_meter_truth(bridge, name):
    slave, baud, parity = defaults(name)
    heap = {"heapsize": SIGNING_HEAP} if "ocmf" in load_profile(name) else {}  # a signing meter's heap (README)
    b = bridge(profile=name, slave=slave, baud=baud, meter={"parity": parity}, period_ms=500,
               sim_args=("--parity", parity, "--update-ms", "2000"), **heap)
    with b.everest() as ev:
        start = 0
        for _ in range(MESSAGES):
            start = ev.wait_for("powermeter_values", timeout=10, start=start).seq + 1
        msgs = ev.messages("powermeter_values")[:MESSAGES]
    served = [{p: expected(p, v) for p, v in rec.items()} for _, rec in b.truth()]
    assert set(served[-1]) == set(load_profile(name)["fields"]), "the meter serves every field"
    whole = 0
    for m in msgs:
        assert schema.errors("Powermeter", m.value) == []
        flat = flatten(m.value)
        assert set(flat) == set(served[-1]), "every field is published"
        for path, v in flat.items():
            assert any(rec[path] == v for rec in served), f"{path}={v} is not a value the meter served"
        whole += flat in served
    assert whole >= 1, "a dataset is read whole, from one moment"
