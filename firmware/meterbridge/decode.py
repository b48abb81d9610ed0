"""Registers to exact decimals: every value becomes (mantissa, exp10), never a float.

ESP32 floats are 32-bit, so a float32 kWh counter times 1000 in float loses whole Wh. A float32 is
m * 2**e exactly, which is m * 5**-e * 10**e: an integer and a power of ten, carried to the JSON text.
"""

from micropython import const

TYPES = ("u16", "s16", "u32", "s32", "u64", "s64", "f32", "t5", "t6")  # raw() takes an index into it
_WIDTHS = const(b"\x01\x01\x02\x02\x04\x04\x02\x02\x02")  # registers each type occupies
S16 = const(1)
_S32 = const(3)
_S64 = const(5)
_F32 = const(6)
_T5 = const(7)
_T6 = const(8)
_SIG_DIGITS = const(7)  # a float32 carries 7 significant decimal digits; more would be noise


def type_index(type_name):
    """The index of a type's name in TYPES, or None when unknown."""
    return TYPES.index(type_name) if type_name in TYPES else None


def width(kind):
    """Registers a type (an index into TYPES) occupies."""
    return _WIDTHS[kind]


def _unsigned(buf, off, words, little):
    v = 0
    for i in range(words):
        at = off + 2 * (words - 1 - i if little else i)  # each register big-endian
        v = (v << 16) | (buf[at] << 8) | buf[at + 1]
    return v


def raw(buf, off, kind, little):
    """Decode the registers of type TYPES[kind] at buf[off:] to (mantissa, exp10), or None for "no value"."""
    if kind >= _T5:
        v = _unsigned(buf, off, 2, False)
        exp = v >> 24
        exp = exp - 256 if exp & 0x80 else exp
        m = v & 0xFFFFFF
        if kind == _T6 and m & 0x800000:
            m -= 0x1000000
        return m, exp
    n = _WIDTHS[kind]
    v = _unsigned(buf, off, n, little)
    bits = 16 * n
    if kind == _F32:
        return _float32(v)
    if kind == S16 or kind == _S32 or kind == _S64:
        if v == (1 << (bits - 1)) - 1:
            return None  # ABB and others: max positive means "no value"
        if v >> (bits - 1):
            v -= 1 << bits
    elif v == (1 << bits) - 1:
        return None
    return v, 0


def _float32(v):
    e = (v >> 23) & 0xFF
    if e == 0xFF:
        return None  # NaN or infinity: the meter has no value
    m = v & 0x7FFFFF
    if e:
        m |= 0x800000
    else:
        e = 1
    if v >> 31:
        m = -m
    e -= 150  # bias 127 + 23 fraction bits
    if e >= 0:
        return m << e, 0
    return m * 5 ** (-e), e


def normalise(m, e, exact):
    """Strip trailing zeros; energy stays exact, measurements keep 7 significant digits."""
    if m == 0:
        return 0, 0
    drop = 0
    if not exact:
        digits = len(str(abs(m)))
        if digits > _SIG_DIGITS:
            drop = digits - _SIG_DIGITS
    if drop:  # m / 10**drop, rounded half to even
        d = 10**drop
        m, r = divmod(m, d)  # floor division: r has the sign of d (positive)
        if 2 * r > d or (2 * r == d and m & 1):
            m += 1
        if m == 0:
            return 0, 0
        e += drop
    while m and m % 10 == 0:
        m //= 10
        e += 1
    return m, e


def to_text(m, e):
    """JSON number text of m * 10**e."""
    if e >= 0:
        return str(m * 10**e)
    s = str(abs(m))
    if len(s) <= -e:
        s = "0" * (1 - e - len(s)) + s
    s = s[:e] + "." + s[e:]
    return "-" + s if m < 0 else s


def parse(buf, i, end):
    """(m, exp10) of the number text to_text wrote into buf[i:end] (a few objects, not one per digit)."""
    neg = buf[i] == 0x2D  # "-"
    dot = i
    while dot < end and buf[dot] != 0x2E:  # "."
        dot += 1
    mv = memoryview(buf)
    m = int(mv[i + neg : dot])
    frac = end - dot - 1
    if frac > 0:
        m = m * 10**frac + int(mv[dot + 1 : end])
    else:
        frac = 0
    return (-m if neg else m), -frac
