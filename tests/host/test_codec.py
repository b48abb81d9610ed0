"""meterbridge.codec: the exact reference for profile register encodings."""

import json
import struct
from decimal import Decimal, localcontext

import pytest

from meterbridge.codec import ProfileError, decode_exact, encode, load_profile


def f32_words(value):
    """The two big-endian words of a float32."""
    return list(struct.unpack(">HH", struct.pack(">f", value)))


def test_f32_known_vector_both_orders():
    field = {"type": "f32"}
    assert encode(field, 1234.5, "big") == [0x449A, 0x5000]
    assert encode(field, 1234.5, "little") == [0x5000, 0x449A]
    assert decode_exact(field, [0x449A, 0x5000], "big") == Decimal("1234.5")
    assert decode_exact(field, [0x5000, 0x449A], "little") == Decimal("1234.5")


def test_f32_kwh_to_wh_is_exact():
    field = {"type": "f32", "exp10": 3}
    words = f32_words(98765.4296875)
    assert decode_exact(field, words, "big") == Decimal("98765429.6875")
    assert encode(field, Decimal("98765429.6875"), "big") == words
    assert str(decode_exact(field, words, "big")) == "98765429.6875"


def test_f32_decimal_has_every_digit():
    # float32(0.001) has 31 significant digits: more than Decimal's default 28-digit context
    value = decode_exact({"type": "f32", "exp10": 3}, f32_words(0.001), "big")
    with localcontext() as ctx:
        ctx.prec = 100
        assert value == Decimal(struct.unpack(">f", struct.pack(">f", 0.001))[0]) * 1000


def test_f32_rounds_to_nearest_float32():
    words = encode({"type": "f32"}, 0.1, "big")
    assert words == [0x3DCC, 0xCCCD]


@pytest.mark.parametrize("words", [[0x7FC0, 0], [0x7F80, 0], [0xFF80, 0], [0xFFFF, 0xFFFF]])
def test_f32_nan_and_inf_are_no_value(words):
    assert decode_exact({"type": "f32", "exp10": 3}, words, "big") is None


def test_f32_no_value_encodes_nan():
    assert decode_exact({"type": "f32"}, encode({"type": "f32"}, None, "big"), "big") is None


@pytest.mark.parametrize(("kind", "exp10", "value"), [
    ("u16", -2, Decimal("49.98")),
    ("s16", -1, Decimal("-12.3")),
    ("u32", -1, Decimal("230.4")),
    ("s32", -2, Decimal("-7345.67")),
    ("u64", 1, Decimal("123456789012340")),
    ("s64", 0, Decimal("-9000000000000000000")),
    ("s32", 2, Decimal("5432100")),
])
@pytest.mark.parametrize("order", ["big", "little"])
def test_integer_round_trips(kind, exp10, value, order):
    field = {"type": kind, "exp10": exp10}
    assert decode_exact(field, encode(field, value, order), order) == value


def test_integer_word_orders():
    field = {"type": "u32"}
    assert encode(field, 0x12345678, "big") == [0x1234, 0x5678]
    assert encode(field, 0x12345678, "little") == [0x5678, 0x1234]
    assert decode_exact({"type": "u64"}, [4, 3, 2, 1], "little") == (1 << 48) + (2 << 32) + (3 << 16) + 4


def test_integer_encode_rounds_to_the_scale():
    assert encode({"type": "u32", "exp10": -1}, 230.44, "big") == [0, 2304]
    assert encode({"type": "u16", "exp10": 1}, Decimal("15"), "big") == [2]  # half to even


@pytest.mark.parametrize(("kind", "words"), [
    ("u16", [0xFFFF]),
    ("s16", [0x7FFF]),
    ("u32", [0xFFFF, 0xFFFF]),
    ("s32", [0x7FFF, 0xFFFF]),
    ("u64", [0xFFFF] * 4),
    ("s64", [0x7FFF, 0xFFFF, 0xFFFF, 0xFFFF]),
])
def test_integer_no_value_markers(kind, words):
    field = {"type": kind, "exp10": 1}
    assert decode_exact(field, words, "big") is None
    assert encode(field, None, "big") == words
    assert decode_exact(field, words[::-1], "little") is None


def test_integer_limits():
    assert decode_exact({"type": "s32"}, [0x8000, 0], "big") == -(1 << 31)
    assert decode_exact({"type": "s16"}, [0x7FFE], "big") == 32766
    with pytest.raises(OverflowError):
        encode({"type": "u16"}, 0xFFFF, "big")  # would read as "no value"
    with pytest.raises(OverflowError):
        encode({"type": "u32"}, -1, "big")


def test_t5_t6_known_vectors():
    assert decode_exact({"type": "t5"}, [0xFC23, 0x1C48], "big") == Decimal("230.1")
    assert decode_exact({"type": "t6"}, [0xFEFF, 0xFFFF], "big") == Decimal("-0.01")
    assert decode_exact({"type": "t5"}, [0xFEFF, 0xFFFF], "big") == Decimal("167772.15")
    # t5 and t6 are high word first whatever the profile says
    assert decode_exact({"type": "t5"}, [0x0200, 0x0005], "little") == Decimal("500")


@pytest.mark.parametrize("kind", ["t5", "t6"])
@pytest.mark.parametrize("value", ["230.1", "50", "0", "0.001", "8388607", "1234567000"])
def test_t5_t6_round_trips(kind, value):
    field = {"type": kind}
    assert decode_exact(field, encode(field, Decimal(value), "big"), "big") == Decimal(value)


def test_t5_t6_keep_the_widest_mantissa():
    assert encode({"type": "t5"}, Decimal("230.1"), "big") == [0xFC23, 0x1C48]  # 2301000 × 10^-4
    assert encode({"type": "t5"}, Decimal("16777215"), "big") == [0x00FF, 0xFFFF]
    assert encode({"type": "t6"}, Decimal("16777215"), "big") == [0x0119, 0x999A]  # 1677722 × 10^1


def test_t5_t6_signs_and_limits():
    assert decode_exact({"type": "t6"}, encode({"type": "t6"}, -7.25, "big"), "big") == Decimal("-7.25")
    with pytest.raises(OverflowError):
        encode({"type": "t5"}, -1, "big")


def test_exp_reg_scales_further():
    field = {"type": "s32", "exp10": 0, "exp_reg": 414}
    assert decode_exact(field, [0, 12345], "big", [0xFFFF]) == Decimal("1234.5")
    assert decode_exact(field, [0, 12345], "big", [2]) == Decimal("1234500")
    assert decode_exact(field, [0, 12345], "big", [0x7FFF]) is None
    with pytest.raises(ValueError):
        decode_exact(field, [0, 12345], "big")


def test_wrong_word_count():
    with pytest.raises(ValueError):
        decode_exact({"type": "f32"}, [1], "big")


def test_load_profile_by_name_and_path(tmp_path):
    by_name = load_profile("eastron_sdm630_v2")
    assert by_name["fields"]["energy_Wh_import.total"] == {"reg": 72, "type": "f32", "exp10": 3}
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({**by_name, "name": "mine"}))
    assert load_profile(path)["name"] == "mine"
    assert load_profile(str(path))["name"] == "mine"


@pytest.mark.parametrize("change", [
    {"word_order": "middle"},
    {"function_code": 6},
    {"max_read": 126},
    {"holes": [[10, 5]]},
    {"fields": {"voltage_V.L1": {"reg": 0, "type": "f64"}}},
    {"fields": {"voltage_V.L1": {"reg": 65535, "type": "f32"}}},
])
def test_load_profile_rejects_bad_profiles(tmp_path, change):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({**load_profile("eastron_sdm630_v2"), **change}))
    with pytest.raises(ProfileError):
        load_profile(path)


def test_load_profile_missing():
    with pytest.raises(ProfileError):
        load_profile("no_such_meter")
