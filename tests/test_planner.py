"""The read planner: least wire time, exact against brute force; the 125 limit, max_read and holes hold."""

import importlib.util
import itertools
import random
import sys
import types

import pytest

from meterbridge import paths

# planner.py is pure: under CPython it needs only micropython.const
sys.modules.setdefault("micropython", types.SimpleNamespace(const=lambda x: x))
_spec = importlib.util.spec_from_file_location("fw_planner", paths.FIRMWARE / "meterbridge" / "planner.py")
planner = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(planner)

BAUDS = (1200, 2400, 9600, 19200, 38400, 115200)


def cost(reads, baud, bits):
    """Total wire time of a plan by the planner's own cost model."""
    return sum(planner.request_cost_us(count, baud, bits) for _, count in reads)


def check_valid(reads, spans, max_read, holes):
    """Every span wholly inside one read; every read within max_read and off the holes."""
    for addr, count in reads:
        assert 1 <= count <= max_read
        assert not any(addr <= hi and lo < addr + count for lo, hi in holes), (addr, count, holes)
    for s, e in spans:
        assert any(addr <= s and e <= addr + count for addr, count in reads), (s, e, reads)


def brute_force(spans, max_read, holes, baud, bits):
    """Least cost over every set of candidate reads (any span start to any span end) that covers all spans."""
    candidates = [(s, e - s) for s in {a for a, _ in spans} for e in {b for _, b in spans}
                  if 0 < e - s <= max_read and not any(s <= hi and lo < e for lo, hi in holes)]
    best = None
    for k in range(1, len(spans) + 1):
        for reads in itertools.combinations(candidates, k):
            if all(any(a <= s and e <= a + c for a, c in reads) for s, e in spans):
                c = cost(reads, baud, bits)
                best = c if best is None else min(best, c)
    return best


def random_instance(rng):
    """Fields as profiles have them: disjoint, often adjacent, and some registers wanted twice (nested)."""
    spans, at = [], rng.randrange(0, 10)
    for _ in range(rng.randint(1, 5)):
        at += 0 if rng.random() < 0.4 else rng.randint(1, 15)
        spans.append((at, at + rng.choice((1, 2, 2, 4))))
        at = spans[-1][1]
    if rng.random() < 0.3:
        s, e = rng.choice(spans)
        reg = rng.randrange(s, e)
        spans.append((reg, reg + 1))  # an exp_reg inside a field, or a field mapped twice
    holes = []
    for _ in range(rng.choice((0, 0, 1, 2))):
        lo = rng.randrange(0, at + 2)
        holes.append([lo, lo + rng.randrange(0, 4)])
    return spans, rng.randint(1, 24), holes, rng.choice(BAUDS), rng.choice((10, 11))


def test_plan_is_optimal_against_brute_force():
    rng = random.Random(7)
    feasible = 0
    for _ in range(600):
        spans, max_read, holes, baud, bits = random_instance(rng)
        want = brute_force(spans, max_read, holes, baud, bits)
        if want is None:
            with pytest.raises(ValueError):
                planner.plan(spans, max_read, holes, baud, bits)
            continue
        reads = planner.plan(spans, max_read, holes, baud, bits)
        check_valid(reads, spans, max_read, holes)
        assert cost(reads, baud, bits) == want, (spans, max_read, holes, baud, bits, reads)
        feasible += 1
    assert feasible > 300


def test_adjacent_fields_longer_than_one_read_are_split_between_fields():
    spans = [(r, r + 2) for r in range(0, 250, 2)]  # 125 floats, 250 registers, no gap anywhere
    reads = planner.plan(spans, 125, [], 9600, 10)
    check_valid(reads, spans, 125, [])
    assert len(reads) == 3  # 125 is odd: two reads cannot end between fields


def test_at_most_125_registers_per_read():
    assert planner.plan([(r, r + 1) for r in range(125)], 125, [], 9600, 10) == [(0, 125)]
    reads = planner.plan([(r, r + 1) for r in range(126)], 125, [], 9600, 10)
    assert len(reads) == 2 and max(count for _, count in reads) <= 125


def test_max_read_lowers_the_limit():
    spans = [(r, r + 2) for r in range(0, 40, 2)]
    reads = planner.plan(spans, 16, [], 9600, 10)
    check_valid(reads, spans, 16, [])
    assert len(reads) == 3
    with pytest.raises(ValueError, match="10..13"):
        planner.plan([(10, 14)], 3, [], 9600, 10)


def test_holes_are_never_read():
    spans = [(0, 2), (4, 6)]
    assert planner.plan(spans, 125, [], 9600, 10) == [(0, 6)]
    assert planner.plan(spans, 125, [[2, 2]], 9600, 10) == [(0, 2), (4, 2)]
    assert planner.plan(spans, 125, [[3, 3]], 9600, 10) == [(0, 2), (4, 2)]
    with pytest.raises(ValueError):
        planner.plan(spans, 125, [[5, 7]], 9600, 10)


def test_gaps_are_bridged_only_while_cheaper_than_a_request():
    gap_cost = 2 * 10 * 1000000 // 9600  # two bytes per bridged register
    request = planner.request_cost_us(0, 9600, 10)
    cheap = request // gap_cost  # registers a new request is worth
    assert planner.plan([(0, 2), (2 + cheap, 4 + cheap)], 125, [], 9600, 10) == [(0, 4 + cheap)]
    far = cheap + 1
    assert planner.plan([(0, 2), (2 + far, 4 + far)], 125, [], 9600, 10) == [(0, 2), (2 + far, 2)]


def test_registers_wanted_twice_are_read_once():
    assert sorted(planner.plan([(0, 4), (2, 3), (0, 4), (4, 6)], 4, [], 9600, 10)) == [(0, 4), (4, 2)]


def test_shortest_read_first():
    # a dead meter fails on the first read: the shortest reply to wait for before the timeout starts
    spans = [(0, 30), (224, 226), (346, 358)]
    assert planner.plan(spans, 80, [], 9600, 10) == [(224, 2), (346, 12), (0, 30)]


def test_request_cost_counts_frames_silences_and_turnaround():
    # 9600 8N1: 13 + 2·2 bytes of 10 bits, two t3.5 of 38.5 bits, the turnaround
    assert planner.request_cost_us(2, 9600, 10) == 170 * 1000000 // 9600 + 2 * (38500000 // 9600) + 60000
    assert planner.request_cost_us(2, 9600, 11) > planner.request_cost_us(2, 9600, 10)
    # above 19200 baud t3.5 is fixed at 1750 us
    assert planner.request_cost_us(0, 38400, 10) == 130 * 1000000 // 38400 + 3500 + 60000
    assert planner.char_bits("N") == 10 and planner.char_bits("E") == 11 and planner.char_bits("O") == 11
