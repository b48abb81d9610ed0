"""The EVerest Powermeter object as JSON text, built from exact decimals (no float on the way)."""

from micropython import const

from .meter import FIELD_BYTES, KEY, OBJECT, TEXT_BYTES

_HEAD = const(54)  # {"timestamp":"<24>","meter_id":"…"} without the meter id
_PER_OBJECT = const(6)  # ,"":{} around an object's name
_PER_KEY = const(9)  # ,"total": at most, before each number

# powermeter.yaml's Powermeter object and units.yaml's keys, in the order they are published
OBJECTS = ("energy_Wh_import", "energy_Wh_export", "power_W", "voltage_V", "current_A", "frequency_Hz", "VAR")
KEYS = ("total", "L1", "L2", "L3", "N", "DC")  # DC: a DC meter's voltage_V and current_A (units.yaml)
_IMPORT = const(0)  # energy_Wh_import: EVerest requires its total
# units.yaml: Energy, Power and ReactivePower require "total"; Frequency requires "L1"
_REQUIRED = const(b"\x00\x00\x00\xff\xff\x01\x00")  # per object: index into KEYS, or _ANY
_ANY = const(0xFF)


def text_size(profile, meter_id):
    """Bytes that are always enough for one dataset of this profile and meter id."""
    t = profile.fields
    size = _HEAD + len(meter_id.encode()) + (_PER_KEY + TEXT_BYTES) * profile.count
    last = None
    for j in range(profile.count):
        obj = t[j * FIELD_BYTES + OBJECT]
        if obj != last:
            size += _PER_OBJECT + len(OBJECTS[obj])
            last = obj
    return size


def timestamp(ms, gmtime):
    """RFC 3339 UTC with milliseconds, e.g. 2026-11-26T10:15:30.250Z."""
    t = gmtime(ms // 1000)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (t[0], t[1], t[2], t[3], t[4], t[5], ms % 1000)


def build(out, profile, dataset, meter_id, ts):
    """Write a meter.Dataset as JSON into out (a jsonout.Writer); False when it must not be published.

    The dataset's slot j holds field j of profile.fields, which come grouped by object. EVerest
    requires energy_Wh_import.total, so a dataset without it is not published. Objects missing the
    key their schema requires are left out.
    """
    out.n = 0
    out.put(b'{"timestamp":"')
    out.put(ts)
    out.put(b'","meter_id":"')
    out.put(meter_id)
    out.put(b'"')
    t = profile.fields
    n = profile.count
    lens = dataset.lens
    j = 0
    while j < n:
        obj = t[j * FIELD_BYTES + OBJECT]
        end = j + 1
        while end < n and t[end * FIELD_BYTES + OBJECT] == obj:
            end += 1
        if _has(t, lens, j, end, _REQUIRED[obj]):
            _put_object(out, t, dataset, j, end, OBJECTS[obj])
        elif obj == _IMPORT:
            return False
        j = end
    out.put(b"}")
    return True


def _put_object(out, t, dataset, j, end, name):
    out.put(b',"')
    out.put(name)
    out.put(b'":{')
    first = True
    text = memoryview(dataset.text)
    for k in range(j, end):
        n = dataset.lens[k]
        if not n:
            continue
        out.put(b'"' if first else b',"')
        first = False
        out.put(KEYS[t[k * FIELD_BYTES + KEY]])
        out.put(b'":')
        out.put(text[TEXT_BYTES * k : TEXT_BYTES * k + n])
    out.put(b"}")


def _has(t, lens, j, end, key):
    """Whether fields j..end-1 have a value: the one for key, or any one when key is _ANY."""
    for k in range(j, end):
        if lens[k] and (key == _ANY or t[k * FIELD_BYTES + KEY] == key):
            return True
    return False
