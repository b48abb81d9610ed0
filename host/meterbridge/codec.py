"""Meter profiles (firmware/profiles/*.json) and the exact meaning of their register encodings."""

import json
import math
import struct
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

PROFILE_DIR = Path(__file__).resolve().parents[2] / "firmware" / "profiles"
WIDTHS = {"u16": 1, "s16": 1, "u32": 2, "s32": 2, "u64": 4, "s64": 4, "f32": 2, "t5": 2, "t6": 2}
MAX_READ = 125


class ProfileError(ValueError):
    """A profile that cannot be read or breaks the format in firmware/profiles/README.md."""


def load_profile(ref):
    """Load a profile by name (firmware/profiles/NAME.json) or by path (anything with '/' or '.json')."""
    ref = str(ref)
    path = Path(ref) if "/" in ref or ref.endswith(".json") else PROFILE_DIR / f"{ref}.json"
    try:
        profile = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ProfileError(f"profile {ref}: {e}") from e
    _check(profile, ref)
    return profile


def _check(profile, ref):
    """Raise ProfileError unless profile has the keys and field entries the format requires."""
    problems = []
    if profile.get("function_code") not in (3, 4):
        problems.append("function_code must be 3 or 4")
    if profile.get("word_order") not in ("big", "little"):
        problems.append("word_order must be big or little")
    if not 1 <= profile.get("max_read", MAX_READ) <= MAX_READ:
        problems.append(f"max_read must be 1..{MAX_READ}")
    if any(len(h) != 2 or h[0] > h[1] for h in profile.get("holes", [])):
        problems.append("holes must be [first, last] ranges")
    fields = profile.get("fields") or {}
    if not fields:
        problems.append("no fields")
    for path, field in fields.items():
        kind = field.get("type")
        if kind not in WIDTHS or not 0 <= field.get("reg", -1) <= 0x10000 - WIDTHS[kind]:
            problems.append(f"{path}: needs a known type and a reg inside 0..65535")
    if problems:
        raise ProfileError(f"profile {ref}: " + "; ".join(problems))


def encode(field, value, word_order):
    """Register words carrying physical value (None: the type's "no value" marker) for a field entry."""
    kind = field["type"]
    if kind == "f32":
        raw = math.nan if value is None else float(_raw(field, value))
        return _split(struct.unpack(">I", struct.pack(">f", raw))[0], 2, word_order)
    if kind in ("t5", "t6"):
        return _t_words(kind, _raw(field, value))
    bits, signed = 16 * WIDTHS[kind], kind[0] == "s"
    marker = _marker(bits, signed)
    raw = marker if value is None else int(_raw(field, value).to_integral_value(ROUND_HALF_EVEN))
    if value is not None and not (-marker - 1 if signed else 0) <= raw < marker:
        raise OverflowError(f"{value} does not fit {kind} with exp10 {field.get('exp10', 0)}")
    return _split(raw & ((1 << bits) - 1), WIDTHS[kind], word_order)


def decode_exact(field, words, word_order, exp_words=None):
    """Exact Decimal the words carry × 10^exp10 (× 10^exp_reg word); None for the "no value" markers."""
    kind = field["type"]
    if len(words) != WIDTHS[kind]:
        raise ValueError(f"{kind} takes {WIDTHS[kind]} registers, got {len(words)}")
    if kind in ("t5", "t6"):
        mantissa = (words[0] & 0xFF) << 16 | words[1]
        mantissa = _signed(mantissa, 24) if kind == "t6" else mantissa
        value = _shift(Decimal(mantissa), _signed(words[0] >> 8, 8))
    elif kind == "f32":
        number = struct.unpack(">f", struct.pack(">I", _join(words, word_order)))[0]
        if not math.isfinite(number):
            return None
        value = Decimal(number)
    else:
        bits, signed = 16 * len(words), kind[0] == "s"
        raw = _join(words, word_order)
        raw = _signed(raw, bits) if signed else raw
        if raw == _marker(bits, signed):
            return None
        value = Decimal(raw)
    exponent = field.get("exp10", 0)
    if "exp_reg" in field:
        if exp_words is None:
            raise ValueError("field has exp_reg: pass its register as exp_words")
        extra = decode_exact({"type": "s16"}, exp_words, word_order)
        if extra is None:
            return None
        exponent += int(extra)
    return _shift(value, exponent)


def _raw(field, value):
    """The register-side number for a physical value: value / 10^exp10, exactly."""
    return _shift(Decimal(value), -field.get("exp10", 0))


def _shift(value, exponent):
    """value × 10^exponent without rounding (Decimal context precision does not apply)."""
    sign, digits, exp = value.as_tuple()
    return Decimal((sign, digits, exp + exponent))


def _t_words(kind, raw):
    """Iskra T5/T6 words: the smallest decimal exponent whose mantissa still fits 24 bits."""
    if not raw:
        return [0, 0]
    if raw < 0 and kind == "t5":
        raise OverflowError(f"{raw} is negative: t5 is unsigned")
    low, high = (-(1 << 23), 1 << 23) if kind == "t6" else (0, 1 << 24)
    for exponent in range(-128, 128):
        mantissa = int(_shift(raw, -exponent).to_integral_value(ROUND_HALF_EVEN))
        if low <= mantissa < high:
            return [(exponent & 0xFF) << 8 | (mantissa >> 16) & 0xFF, mantissa & 0xFFFF]
    raise OverflowError(f"{raw} does not fit {kind}")


def _marker(bits, signed):
    """The "no value" raw integer: all ones unsigned, the maximum positive value signed."""
    return (1 << (bits - 1 if signed else bits)) - 1


def _signed(raw, bits):
    """Two's complement reading of an unsigned raw integer."""
    return raw - (1 << bits) if raw >> (bits - 1) else raw


def _split(raw, count, word_order):
    """Unsigned raw integer as count words in word_order."""
    words = [raw >> 16 * (count - 1 - i) & 0xFFFF for i in range(count)]
    return words[::-1] if word_order == "little" else words


def _join(words, word_order):
    """Unsigned integer from words in word_order."""
    raw = 0
    for word in words[::-1] if word_order == "little" else words:
        raw = raw << 16 | word
    return raw
