"""Meter profiles: one JSON file per model, checked and compiled into read plan and field table.

Used at start-up only: the results are plain attribute holders (no methods), so the app can drop
this module and the planner from RAM once every profile is loaded.
"""

import json
from collections import namedtuple

from . import decode, planner
from .modbus.rtu import FC_READ_HOLDING, FC_READ_INPUT, MAX_READ

_OBJECTS = ("energy_Wh_import", "energy_Wh_export", "power_W", "voltage_V", "current_A", "frequency_Hz", "VAR")
_KEYS = ("total", "L1", "L2", "L3", "N")


class ProfileError(ValueError):
    """A profile file that cannot be used, with the field and the reason."""


# One Powermeter value and where the plan reads it: read is an index into reads, offset the byte
# offset in that read's data; exp_read is None unless an exponent register scales the value.
# A namedtuple is a compact tuple in RAM, where an instance with attributes carries a dict.
Field = namedtuple("Field", ("obj", "key", "type", "exp10", "exact", "index", "read", "offset", "exp_read",
                             "exp_offset"))


# the registers each OCMF interface needs; the profile's "ocmf" section gives their addresses
_OCMF = {"iskra": ("state", "command", "status", "zone", "time", "metadata_length", "payload_length",
                   "signature_length", "algorithm", "time_status", "metadata", "payload", "public_key",
                   "signature")}


class Profile:
    """A checked profile: name, fc, little (word order), max_read, defaults, fields, reads, objects, ocmf."""


def _int(where, v, lo, hi):
    if type(v) is not int or not lo <= v <= hi:
        raise ProfileError("%s: must be an integer %d..%d" % (where, lo, hi))
    return v


def _field(name, spec):
    where = "fields." + name
    obj, _, key = name.partition(".")
    if obj not in _OBJECTS or key not in _KEYS:
        raise ProfileError(where + ": not a Powermeter value (object.key)")
    # the constant strings, not the parsed copies: every field then shares them (qstrs)
    obj = _OBJECTS[_OBJECTS.index(obj)]
    key = _KEYS[_KEYS.index(key)]
    if not isinstance(spec, dict):
        raise ProfileError(where + ": must be an object")
    type_name = spec.get("type")
    type_name = decode.canonical(type_name)
    if type_name is None:
        raise ProfileError(where + ".type: unknown type %r" % (spec.get("type"),))
    reg = _int(where + ".reg", spec.get("reg"), 0, 65535)
    exp10 = _int(where + ".exp10", spec.get("exp10", 0), -9, 9)
    exp_reg = spec.get("exp_reg")
    if exp_reg is not None:
        _int(where + ".exp_reg", exp_reg, 0, 65535)
    return obj, key, reg, type_name, exp10, exp_reg


def compile_profile(doc, baud=9600, parity="N"):
    """A Profile from a parsed profile document, with the read plan for this line speed."""
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
    p.defaults = doc.get("defaults", {})
    fields = doc.get("fields")
    if not isinstance(fields, dict) or not fields:
        raise ProfileError("fields: must be a non-empty object")
    specs = [_field(name, spec) for name, spec in fields.items()]
    if not any(obj == "energy_Wh_import" and key == "total" for obj, key, *_ in specs):
        raise ProfileError("fields: energy_Wh_import.total is required by EVerest")
    spans = []
    for _, _, reg, type_name, _, exp_reg in specs:
        spans.append((reg, reg + decode.width(type_name)))
        if exp_reg is not None:
            spans.append((exp_reg, exp_reg + 1))
    try:
        p.reads = planner.plan(spans, p.max_read, holes, baud, planner.char_bits(parity))
    except ValueError as e:
        raise ProfileError("holes/max_read: " + str(e)) from None
    p.fields = []
    for i, (obj, key, reg, type_name, exp10, exp_reg) in enumerate(specs):
        read, offset = _locate(p.reads, reg)
        exp_read, exp_offset = _locate(p.reads, exp_reg) if exp_reg is not None else (None, 0)
        p.fields.append(Field(obj, key, type_name, exp10, obj.startswith("energy"), i, read, offset, exp_read,
                              exp_offset))
    p.objects = _group(p.fields)
    p.ocmf = _ocmf(doc.get("ocmf"))
    return p


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


def _group(fields):
    """[(object, [fields])] in Powermeter order, keys in a fixed order."""
    groups = []
    for obj in _OBJECTS:
        members = [f for f in fields if f.obj == obj]
        if members:
            groups.append((obj, sorted(members, key=lambda f: _KEYS.index(f.key))))
    return groups


def load(path, baud=9600, parity="N"):
    """Read and check a profile file; ProfileError names the file, field and reason."""
    try:
        with open(path) as f:
            doc = json.load(f)
    except OSError:
        raise ProfileError("%s: cannot read profile" % path) from None
    except ValueError as e:
        raise ProfileError("%s: not valid JSON (%s)" % (path, e)) from None
    try:
        return compile_profile(doc, baud, parity)
    except ProfileError as e:
        raise ProfileError("%s: %s" % (path, e)) from None
