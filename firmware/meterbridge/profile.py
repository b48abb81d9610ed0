"""Meter profiles: one JSON file per model, checked and compiled into read plan and field table."""

import json

from . import decode, planner
from .modbus.rtu import FC_READ_HOLDING, FC_READ_INPUT, MAX_READ

_OBJECTS = ("energy_Wh_import", "energy_Wh_export", "power_W", "voltage_V", "current_A", "frequency_Hz", "VAR")
_KEYS = ("total", "L1", "L2", "L3", "N")
# units.yaml: Energy, Power and ReactivePower require "total"; Frequency requires "L1"
_REQUIRED = {"energy_Wh_import": "total", "energy_Wh_export": "total", "power_W": "total", "VAR": "total",
             "frequency_Hz": "L1"}


class ProfileError(ValueError):
    """A profile file that cannot be used, with the field and the reason."""


class Field:
    """One Powermeter value: where it is read and how it is decoded."""

    def __init__(self, obj, key, reg, type_name, exp10, exp_reg):
        self.obj = obj
        self.key = key
        self.reg = reg
        self.type = type_name
        self.exp10 = exp10
        self.exp_reg = exp_reg
        self.exact = obj.startswith("energy")
        self.read = 0  # index into the plan, set by Profile
        self.offset = 0  # byte offset of reg in that read's data
        self.exp_read = 0
        self.exp_offset = 0
        self.index = 0  # position in Profile.fields and in a decoded values list


def _int(where, v, lo, hi):
    if type(v) is not int or not lo <= v <= hi:
        raise ProfileError("%s: must be an integer %d..%d" % (where, lo, hi))
    return v


def _field(name, spec):
    where = "fields." + name
    obj, _, key = name.partition(".")
    if obj not in _OBJECTS or key not in _KEYS:
        raise ProfileError(where + ": not a Powermeter value (object.key)")
    if not isinstance(spec, dict):
        raise ProfileError(where + ": must be an object")
    type_name = spec.get("type")
    if decode.width(type_name) is None:
        raise ProfileError(where + ".type: unknown type %r" % (type_name,))
    reg = _int(where + ".reg", spec.get("reg"), 0, 65535)
    exp10 = _int(where + ".exp10", spec.get("exp10", 0), -9, 9)
    exp_reg = spec.get("exp_reg")
    if exp_reg is not None:
        _int(where + ".exp_reg", exp_reg, 0, 65535)
    return Field(obj, key, reg, type_name, exp10, exp_reg)


class Profile:
    """A checked profile: function code, word order, fields and the read plan for a line speed."""

    def __init__(self, doc, baud=9600, parity="N"):
        if not isinstance(doc, dict):
            raise ProfileError("profile: must be a JSON object")
        self.name = doc.get("name", "?")
        self.fc = doc.get("function_code")
        if self.fc not in (FC_READ_HOLDING, FC_READ_INPUT):
            raise ProfileError("function_code: must be 3 or 4")
        order = doc.get("word_order", "big")
        if order not in ("big", "little"):
            raise ProfileError("word_order: must be 'big' or 'little'")
        self.little = order == "little"
        self.max_read = _int("max_read", doc.get("max_read", MAX_READ), 1, MAX_READ)
        holes = doc.get("holes", [])
        if not isinstance(holes, list) or not all(isinstance(h, list) and len(h) == 2 for h in holes):
            raise ProfileError("holes: must be a list of [first, last] register ranges")
        self.defaults = doc.get("defaults", {})
        fields = doc.get("fields")
        if not isinstance(fields, dict) or not fields:
            raise ProfileError("fields: must be a non-empty object")
        self.fields = [_field(name, spec) for name, spec in fields.items()]
        for i, f in enumerate(self.fields):
            f.index = i
        if not any(f.obj == "energy_Wh_import" and f.key == "total" for f in self.fields):
            raise ProfileError("fields: energy_Wh_import.total is required by EVerest")
        spans = []
        for f in self.fields:
            spans.append((f.reg, f.reg + decode.width(f.type)))
            if f.exp_reg is not None:
                spans.append((f.exp_reg, f.exp_reg + 1))
        try:
            self.reads = planner.plan(spans, self.max_read, holes, baud, planner.char_bits(parity))
        except ValueError as e:
            raise ProfileError("holes/max_read: " + str(e)) from None
        for f in self.fields:
            f.read, f.offset = self._locate(f.reg)
            if f.exp_reg is not None:
                f.exp_read, f.exp_offset = self._locate(f.exp_reg)
        self.objects = self._group()

    def _locate(self, reg):
        for i, (addr, count) in enumerate(self.reads):
            if addr <= reg < addr + count:
                return i, 2 * (reg - addr)
        raise ProfileError("register %d not covered by the plan" % reg)

    def _group(self):
        """[(object, [fields])] in Powermeter order; objects lacking their required key dropped."""
        groups = []
        for obj in _OBJECTS:
            members = [f for f in self.fields if f.obj == obj]
            if members:
                groups.append((obj, sorted(members, key=lambda f: _KEYS.index(f.key))))
        return groups

    def required(self, obj):
        """The key EVerest's schema requires in obj, or None."""
        return _REQUIRED.get(obj)


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
        return Profile(doc, baud, parity)
    except ProfileError as e:
        raise ProfileError("%s: %s" % (path, e)) from None
