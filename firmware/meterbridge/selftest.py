"""The firmware's pure logic checked on the board itself: `meterbridge selftest` runs run() through mpremote.

Prints one line per check, `SELFTEST {"check", "ok", "detail"}` (ok: true, false, or null for a fact
reported), after one `SELFTEST {"board": ...}` line. Never imported by the bridge. Expected values come
from outside the firmware: IEEE 754 float32 bit patterns expanded exactly, the CRC-16/MODBUS check value,
and the Modbus Application Protocol's frame layouts.
"""

import gc
import json
import sys

_JOURNAL_DIR = "selftest-journal"


def _say(doc):
    print("SELFTEST", json.dumps(doc))


def _board():
    impl = sys.implementation
    gc.collect()
    return {"board": sys.platform, "micropython": ".".join(str(n) for n in impl.version[:3]),
            "machine": getattr(impl, "_machine", "?"), "mpy": getattr(impl, "_mpy", 0) & 0xFF,
            "heap_free": gc.mem_free(), "heap_used": gc.mem_alloc()}


def _words(*words):
    buf = bytearray(2 * len(words))
    for i, w in enumerate(words):
        buf[2 * i] = w >> 8
        buf[2 * i + 1] = w & 0xFF
    return buf


def energy():
    """float32 kWh registers to exact Wh text, as meter.py decodes them (no float on the way)."""
    from . import decode

    cases = (  # (words, type, exp10, the exact decimal of that float32 times 10^exp10)
        ((0x47C0, 0xE6B7), "f32", 3, "98765429.6875"),  # 98765.4296875 kWh
        ((0x3DCC, 0xCCCD), "f32", 3, "100.000001490116119384765625"),  # the float32 nearest 0.1 kWh
        ((0x4B80, 0x0000), "f32", 3, "16777216000"),  # 2^24 kWh, where a float32 stops holding integers
        ((0xBE80, 0x0000), "f32", 3, "-250"),  # -0.25 kWh
        ((0xFFFF, 0xFFFE), "s32", -1, "-0.2"),
    )
    for words, kind, exp10, want in cases:
        value = decode.raw(_words(*words), 0, decode.type_index(kind), False)
        m, e = decode.normalise(value[0], value[1] + exp10, True)
        got = decode.to_text(m, e)
        if got != want:
            return False, "%s %04x%04x: %s, want %s" % (kind, words[0], words[1], got, want)
    if decode.raw(_words(0x7FC0, 0), 0, decode.type_index("f32"), False) is not None:
        return False, "a float32 NaN decoded as a value"
    return True, "%d values exact, NaN refused" % len(cases)


def rtu():
    """CRC-16/MODBUS, a read request's bytes, and reply checking (good, corrupt, exception)."""
    from .modbus import rtu

    if rtu.crc16(b"123456789", 9) != 0x4B37:  # the CRC-16/MODBUS check value
        return False, "crc16('123456789') = %04x, want 4b37" % rtu.crc16(b"123456789", 9)
    req = bytearray(8)
    n = rtu.encode_read(req, 1, 4, 0, 4)
    if bytes(req[:n]) != b"\x01\x04\x00\x00\x00\x04\xf1\xc9":
        return False, "FC4 read request is %s" % bytes(req[:n])
    reply = bytearray(b"\x01\x04\x08\x00\x01\x00\x02\x00\x03\x00\x04\xbc\xce")
    rtu.check_response(req, reply, len(reply))
    reply[5] ^= 1
    try:
        rtu.check_response(req, reply, len(reply))
        return False, "a reply with a flipped bit passed"
    except rtu.ModbusError as e:
        if e.kind != rtu.CRC:
            return False, "a reply with a flipped bit: %s" % e
    try:
        rtu.check_response(req, bytearray(b"\x01\x84\x02\xc2\xc1"), 5)
        return False, "an exception reply passed"
    except rtu.ModbusError as e:
        if e.kind != rtu.EXCEPTION or e.code != 2:
            return False, "exception code %d, want 2" % e.code
    return True, "CRC, request, reply, corrupt reply and exception reply"


def planner():
    """Fewest wire time: near registers in one read, far ones apart, never across a hole."""
    from . import planner

    cases = (  # (spans, max_read, holes, reads)
        ([(0, 2), (2, 4), (6, 8)], 125, [], [(0, 8)]),  # a 2-register gap is cheaper than a request
        ([(0, 2), (100, 102)], 125, [], [(0, 2), (100, 2)]),  # 98 registers are not
        ([(0, 2), (4, 6)], 125, [[2, 3]], [(0, 2), (4, 2)]),  # a hole the meter refuses
        ([(0, 2), (60, 62)], 40, [], [(0, 2), (60, 2)]),  # max_read
    )
    for spans, max_read, holes, want in cases:
        got = planner.plan(spans, max_read, holes, 9600, planner.char_bits("N"))
        if got != want:
            return False, "%s: %s, want %s" % (spans, got, want)
    return True, "%d plans" % len(cases)


def powermeter():
    """A Powermeter object as JSON text from a profile and a dataset, and it parses back."""
    from . import jsonout, powermeter, profile
    from .meter import TEXT_BYTES, Dataset

    prof = profile.compile_profile({"function_code": 4, "fields": {
        "energy_Wh_import.total": {"reg": 0, "type": "f32", "exp10": 3},
        "power_W.total": {"reg": 2, "type": "f32"}, "power_W.L1": {"reg": 4, "type": "f32"}}})
    data = Dataset(prof.count)
    for j, text in enumerate((b"98765429.6875", b"1234.5", b"-0.5")):
        data.text[j * TEXT_BYTES : j * TEXT_BYTES + len(text)] = text
        data.lens[j] = len(text)
    out = jsonout.Writer(powermeter.text_size(prof, "pm1"))
    if not powermeter.build(out, prof, data, "pm1", "2025-11-26T10:15:30.250Z"):
        return False, "refused a dataset with energy_Wh_import.total"
    text = bytes(out.mv[: out.n]).decode()
    want = ('{"timestamp":"2025-11-26T10:15:30.250Z","meter_id":"pm1","energy_Wh_import":{"total":98765429.6875},'
            '"power_W":{"total":1234.5,"L1":-0.5}}')
    if text != want:
        return False, text
    json.loads(text)
    data.lens[0] = 0
    if powermeter.build(out, prof, data, "pm1", "2025-11-26T10:15:30.250Z"):
        return False, "published a dataset without energy_Wh_import.total"
    return True, "%d bytes, exact energy, none without the import total" % len(text)


def journal():
    """A transaction written to this board's filesystem, read back, replaced, and removed again."""
    import os

    from .journal import Journal
    from .storage import Storage

    storage = Storage(_JOURNAL_DIR)
    try:
        tx = {"tid": "selftest-1", "evse_id": "1", "t": None}
        Journal(storage, "selftest").save(tx)
        again = Journal(storage, "selftest")
        if again.open != tx or again.seq != 1:
            return False, "read back %r (seq %d)" % (again.open, again.seq)
        again.save(None, "selftest-1")
        last = Journal(storage, "selftest")
        if last.open is not None or last.last != "selftest-1" or last.seq != 2:
            return False, "after stop: %r, %r (seq %d)" % (last.open, last.last, last.seq)
    finally:
        for name in os.listdir(_JOURNAL_DIR):
            os.remove(_JOURNAL_DIR + "/" + name)
        os.rmdir(_JOURNAL_DIR)
    return True, "written, read back, replaced and removed in %s/%s" % (os.getcwd().rstrip("/"), _JOURNAL_DIR)


def umqtt():
    """Which umqtt.simple the bridge imports: the pinned one (its version file beside it), or another."""
    import umqtt.simple as simple

    path = getattr(simple, "__file__", "(frozen, no file)")
    try:
        from umqtt import pinned

        return True, "%s at %s" % (pinned.VERSION, path)
    except ImportError:
        return None, "not the pinned one (no umqtt/pinned.py beside it): %s" % path


CHECKS = (("energy decode, float32 to exact decimal", energy), ("RTU framing and CRC", rtu),
          ("read planner", planner), ("Powermeter JSON", powermeter), ("journal on this filesystem", journal),
          ("umqtt.simple in use", umqtt))


def run():
    """Every check, each on its own: one that fails or raises never stops the others."""
    _say(_board())
    for name, check in CHECKS:
        gc.collect()
        try:
            ok, detail = check()
        except Exception as e:  # a broken module is a failed check, reported with what it raised
            ok, detail = False, "%s: %s" % (type(e).__name__, e)
        _say({"check": name, "ok": ok, "detail": detail})
    _say({"done": True})
