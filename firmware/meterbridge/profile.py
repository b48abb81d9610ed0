"""Meter profiles: one JSON file per model, checked and compiled into read plan and field table.

Used at start-up only: the results are plain attribute holders (no methods), so the app can drop
this module and the planner from RAM once every profile is loaded.
"""

import json

from micropython import const

from . import decode, planner
from .log import WARN, log
from .meter import EXP10_BIAS, NO_EXP
from .modbus.rtu import FC_READ_HOLDING, FC_READ_INPUT, MAX_READ
from .powermeter import KEYS, OBJECTS

LIMITS = "limits-%s.json"  # storage file of a meter's learned limits, by module_id (learn.py writes it)


class ProfileError(ValueError):
    """A profile file that cannot be used, with the field and the reason."""


# the registers each OCMF interface needs; the profile's "ocmf" section gives their addresses
_OCMF = {"iskra": ("state", "command", "status", "zone", "time", "metadata_length", "payload_length",
                   "signature_length", "signature_format", "time_status", "metadata", "payload", "public_key",
                   "signature")}


# The largest |value| per Powermeter object (in OBJECTS order) a meter can physically report, unless the
# profile's "limits" says less: 1000 V is the top of low voltage (IEC 60038), 10 kA covers CT-connected
# meters, power is three phases of both; 10^11 Wh is beyond any 8-digit kWh register.
_VOLTS = const(1000)
_AMPS = const(10000)
_LIMITS = const((10**11, 10**11, 3 * _VOLTS * _AMPS, _VOLTS, _AMPS, 100, 3 * _VOLTS * _AMPS))


class Profile:
    """A checked profile: name, fc, little (word order), max_read, reads, fields (the table meter.py
    describes), count (of fields), limits (largest |value| per Powermeter object), energy_reset (whether the
    meter's energy counters can be reset, so may go down), ocmf and read_limits (what the meter taught,
    meter.Meter's read_limits)."""


def _int(where, v, lo, hi):
    if type(v) is not int or not lo <= v <= hi:
        raise ProfileError("%s: must be an integer %d..%d" % (where, lo, hi))
    return v


def _field(name, spec):
    where = "fields." + name
    obj, _, key = name.partition(".")
    if obj not in OBJECTS or key not in KEYS:
        raise ProfileError(where + ": not a Powermeter value (object.key)")
    if not isinstance(spec, dict):
        raise ProfileError(where + ": must be an object")
    kind = decode.type_index(spec.get("type"))
    if kind is None:
        raise ProfileError(where + ".type: unknown type %r" % (spec.get("type"),))
    reg = _int(where + ".reg", spec.get("reg"), 0, 65535)
    exp10 = _int(where + ".exp10", spec.get("exp10", 0), -9, 9)
    exp_reg = spec.get("exp_reg")
    if exp_reg is not None:
        _int(where + ".exp_reg", exp_reg, 0, 65535)
    return OBJECTS.index(obj), KEYS.index(key), reg, kind, exp10, exp_reg


def _read_limits(raw, name, slave):
    """The limits a meter taught an earlier run (learn.py writes them), if they are for this profile and
    slave and well formed; else None."""
    if raw is None:
        return None
    try:
        doc = json.loads(raw)
        ok = (doc["profile"] == name and doc["slave"] == slave and isinstance(doc["holes"], list)
              and all(type(a) is int and type(b) is int and 0 <= a <= b <= 65535 for a, b in doc["holes"])
              and (doc["max_read"] is None or type(doc["max_read"]) is int and 1 <= doc["max_read"] <= MAX_READ))
    except (ValueError, TypeError, KeyError, UnicodeError):
        ok = False
    if not ok:
        log(WARN, "learned limits of another profile or slave, or unreadable: ignored", raw[:80])
        return None
    return doc


def compile_profile(doc, baud=9600, parity="N", learned=None, slave=1):
    """A Profile from a parsed profile document, with the read plan for this line speed and the limits a
    meter taught (learned: the bytes meter.py saved, or None)."""
    if not isinstance(doc, dict):
        raise ProfileError("profile: must be a JSON object")
    p = Profile()
    p.name = doc.get("name", "?")
    p.fc = doc.get("function_code")
    if p.fc not in (FC_READ_HOLDING, FC_READ_INPUT):
        raise ProfileError("function_code: must be 3 or 4")
    order = doc.get("word_order", "big")
    if order not in ("big", "little"):
        raise ProfileError("word_order: must be 'big' or 'little'")
    p.little = order == "little"
    p.max_read = _int("max_read", doc.get("max_read", MAX_READ), 1, MAX_READ)
    holes = doc.get("holes", [])
    if not isinstance(holes, list) or not all(isinstance(h, list) and len(h) == 2 for h in holes):
        raise ProfileError("holes: must be a list of [first, last] register ranges")
    fields = doc.get("fields")
    if not isinstance(fields, dict) or not fields:
        raise ProfileError("fields: must be a non-empty object")
    specs = sorted(_field(name, spec) for name, spec in fields.items())  # in Powermeter order
    if specs[0][:2] != (0, 0):
        raise ProfileError("fields: energy_Wh_import.total is required by EVerest")
    spans = []
    for _, _, reg, kind, _, exp_reg in specs:
        spans.append((reg, reg + decode.width(kind)))
        if exp_reg is not None:
            spans.append((exp_reg, exp_reg + 1))
    p.read_limits = taught = _read_limits(learned, p.name, slave)
    bits = planner.char_bits(parity)
    p.reads = None
    if taught:
        try:
            p.reads = planner.plan(spans, min(p.max_read, taught["max_read"] or MAX_READ), holes + taught["holes"],
                                   baud, bits)
        except ValueError:
            log(WARN, "learned limits leave some registers unreadable: ignored", learned[:80])
            p.read_limits = None
    if p.reads is None:
        try:
            p.reads = planner.plan(spans, p.max_read, holes, baud, bits)
        except ValueError as e:
            raise ProfileError("holes/max_read: " + str(e)) from None
    table = bytearray()
    for obj, key, reg, kind, exp10, exp_reg in specs:
        read, offset = _locate(p.reads, reg)
        exp_read, exp_offset = _locate(p.reads, exp_reg) if exp_reg is not None else (NO_EXP, 0)
        exact = OBJECTS[obj].startswith("energy")
        table.extend(bytes((obj, key, kind, exp10 + EXP10_BIAS, exact, read, offset, exp_read, exp_offset)))
    p.fields = bytes(table)
    p.count = len(specs)
    p.limits = _limits(doc.get("limits", {}))
    p.energy_reset = doc.get("energy_reset", False)
    if type(p.energy_reset) is not bool:
        raise ProfileError("energy_reset: must be true or false")
    p.ocmf = _ocmf(doc.get("ocmf"))
    return p


def _limits(spec):
    """The largest |value| per object: the defaults, lowered by the profile's "limits"."""
    if not isinstance(spec, dict):
        raise ProfileError("limits: must be an object")
    out = list(_LIMITS)
    for name, v in spec.items():
        if name not in OBJECTS:
            raise ProfileError("limits.%s: not a Powermeter object" % name)
        i = OBJECTS.index(name)
        out[i] = _int("limits." + name, v, 1, _LIMITS[i])
    return tuple(out)


def _ocmf(spec):
    """None, or {register name: address} of a signing meter's interface (its notes are left behind)."""
    if spec is None:
        return None
    if not isinstance(spec, dict) or spec.get("interface") not in _OCMF:
        raise ProfileError("ocmf.interface: must be one of %s" % ", ".join(_OCMF))
    regs = spec.get("registers")
    out = {}
    for name in _OCMF[spec["interface"]]:
        entry = regs.get(name) if isinstance(regs, dict) else None
        out[name] = _int("ocmf.registers.%s.reg" % name, entry.get("reg") if isinstance(entry, dict) else None,
                         0, 65535)
    return out


def _locate(reads, reg):
    for i, (addr, count) in enumerate(reads):
        if addr <= reg < addr + count:
            return i, 2 * (reg - addr)
    raise ProfileError("register %d not covered by the plan" % reg)


def load(path, baud=9600, parity="N", learned=None, slave=1):
    """Read and check a profile file; ProfileError names the file, field and reason. learned: the meter's
    limits file (bytes) learn.py wrote, or None."""
    try:
        with open(path) as f:
            doc = json.load(f)
    except OSError:
        raise ProfileError("%s: cannot read profile" % path) from None
    except ValueError as e:
        raise ProfileError("%s: not valid JSON (%s)" % (path, e)) from None
    try:
        return compile_profile(doc, baud, parity, learned, slave)
    except ProfileError as e:
        raise ProfileError("%s: %s" % (path, e)) from None
