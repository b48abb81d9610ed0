"""Property test: the firmware's decode (unix port) against codec.decode_exact for random registers."""

import json
import random
import re
from decimal import ROUND_HALF_EVEN, Context, Decimal

import pytest

from fw import run
from meterbridge.codec import WIDTHS, decode_exact

CASES_PER_TYPE = 400
# float32 words worth hitting on purpose: zeros, denormals, the normal range's ends, infinities, NaNs
F32_SPECIAL = [0x00000000, 0x80000000, 0x00000001, 0x807FFFFF, 0x00800000, 0x7F7FFFFF, 0xFF7FFFFF,
               0x7F800000, 0xFF800000, 0x7FC00000, 0x7F800001, 0xFFFFFFFF, 0x3F800000, 0x47C35000]
# a JSON number as the firmware writes it: no exponent, no leading or trailing zeros
CANONICAL = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]*[1-9])?")


def _split(raw, count, order):
    words = [raw >> 16 * (count - 1 - i) & 0xFFFF for i in range(count)]
    return words[::-1] if order == "little" else words


def _words(rng, kind, order):
    """Random words, one case in four drawn from the edges: specials, markers, extremes, small numbers."""
    count = WIDTHS[kind]
    bits = 16 * count
    if rng.random() < 0.25:
        if kind == "f32":
            raw = rng.choice(F32_SPECIAL + [rng.getrandbits(23) | rng.getrandbits(1) << 31])  # + a denormal
        else:
            raw = rng.choice([0, 1, (1 << bits) - 1, (1 << bits - 1) - 1, 1 << bits - 1, (1 << bits - 1) + 1,
                              rng.getrandbits(8), (1 << bits) - rng.getrandbits(8) - 1])
    else:
        raw = rng.getrandbits(bits)
    return _split(raw, count, order)


def _exp_word(rng):
    """The s16 exponent register: mostly small powers of ten, sometimes the no-value marker or far out."""
    return rng.choice([rng.randint(-12, 12) & 0xFFFF, 0x7FFF, rng.randint(-300, 300) & 0xFFFF])


def _cases():
    rng = random.Random(20240604)
    cases = []
    for kind in sorted(WIDTHS):
        for order in ("big", "little"):
            for _ in range(CASES_PER_TYPE // 2):
                exp = _exp_word(rng) if kind in ("s32", "u32", "s64") and rng.random() < 0.3 else None
                cases.append({"words": _words(rng, kind, order), "type": kind, "little": order == "little",
                              "exp10": rng.randint(-9, 9), "exp": exp, "exact": rng.random() < 0.5})
    return cases


def _reference(case):
    """decode_exact's Decimal, rounded half-even to 7 significant digits unless exact (energy)."""
    field = {"type": case["type"], "exp10": case["exp10"]}
    if case["exp"] is not None:
        field["exp_reg"] = 0
    exp_words = None if case["exp"] is None else [case["exp"]]
    value = decode_exact(field, case["words"], "little" if case["little"] else "big", exp_words)
    if value is None or case["exact"]:
        return value
    return Context(prec=7, rounding=ROUND_HALF_EVEN).plus(value)


@pytest.fixture(scope="module")
def decoded():
    cases = _cases()
    out = run("decode_cases.py", "".join(json.dumps(c) + "\n" for c in cases)).splitlines()
    assert len(out) == len(cases)
    return list(zip(cases, out, strict=True))


@pytest.mark.parametrize("kind", sorted(WIDTHS))
def test_firmware_decode_equals_the_exact_reference(decoded, kind):
    checked = 0
    for case, text in decoded:
        if case["type"] != kind:
            continue
        want = _reference(case)
        if want is None:
            assert text == "null", case
            continue
        assert CANONICAL.fullmatch(text), (case, text)
        assert Decimal(text) == want, (case, text, want)
        checked += 1
    assert checked > CASES_PER_TYPE // 2, "most cases carry a value"


def test_edges_are_covered(decoded):
    f32 = [tuple(c["words"][::-1] if c["little"] else c["words"]) for c, _ in decoded if c["type"] == "f32"]
    assert sum(w[0] & 0x7F80 == 0 and w != (0, 0) for w in f32) >= 10, "denormals"
    assert sum(w[0] & 0x7F80 == 0x7F80 for w in f32) >= 10, "NaN and infinities"
    assert sum(text == "null" for c, text in decoded if c["exp"] == 0x7FFF) >= 5, "exp_reg no value"


@pytest.mark.parametrize(("case", "text"), [
    ({"words": [0x47C0, 0xE6B7], "type": "f32", "exp10": 3}, "98765429.6875"),  # 98765.4296875 kWh in Wh
    ({"words": [0xE6B7, 0x47C0], "type": "f32", "little": True, "exp10": 0, "exact": False}, "98765.43"),
    ({"words": [0x0000, 0x0001], "type": "f32", "exp10": 0}, "0." + "0" * 44 +  # 2^-149, the least denormal
     "140129846432481707092372958328991613128026194187651577175706828388979108268586060148663818836212158203125"),
    ({"words": [0xFC23, 0x1C48], "type": "t5", "exp10": 0, "exact": False}, "230.1"),
    ({"words": [0xFFFF, 0xFFFF], "type": "t6", "exp10": 0}, "-0.1"),
    ({"words": [0x80FF, 0xFFFF], "type": "t6", "exp10": 128}, "-1"),
    ({"words": [0, 12345], "type": "s32", "exp10": 0, "exp": 0xFFFF}, "1234.5"),
    ({"words": [0x00BC, 0x6141], "type": "u32", "exp10": 0, "exact": False}, "12345660"),  # ties to even
    ({"words": [0xFF43, 0x9EBF], "type": "s32", "exp10": -2, "exact": False}, "-123456.6"),
    ({"words": [0x7FFF, 0xFFFF], "type": "s32", "exp10": 1}, "null"),
    ({"words": [0xFFFF, 0xFFFF, 0xFFFF, 0xFFFE], "type": "s64", "exp10": 1}, "-20"),
])
def test_known_vectors(case, text):
    full = {"little": False, "exp10": 0, "exp": None, "exact": True, **case}
    assert run("decode_cases.py", json.dumps(full) + "\n").strip() == text
