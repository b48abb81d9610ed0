"""One meter on a bus: poll its plan, decode every field, keep the last good dataset and its age.

A read the meter refuses although its profile allows it (exception 2 or 3, or silence while shorter
reads are answered) is read in pieces in the same cycle by learn.py, and what the refusal teaches
(a lower limit, or a hole in a bridged gap) goes into `read_limits`, saved to flash so the next start
plans with it (profile.py).
"""

import time

from micropython import const

from . import decode
from .log import WARN, log
from .modbus import rtu

_OFFLINE_AFTER = const(2)  # failed cycles in a row before the meter counts as unreachable
_FRESH_MS = const(4000)  # a meter is read at least every 2 s (app._PROBE_MS): older than this, it is silent
# Modbus Application Protocol v1.1b3, section 7: what a slave answers to a read it will not serve
_ILLEGAL_ADDRESS = const(2)  # a register it does not have (a hole)
_ILLEGAL_VALUE = const(3)  # a count it does not accept (too long)
_SILENT = const(4)  # no reply at all: learn.SILENT
# Kinds of failed cycle, counted in Meter.errors in this order: the bus's (rtu.TIMEOUT .. rtu.BYTE_COUNT, the
# ModbusError's kind) and a dataset the plausibility check refused.
ERRORS = ("timeout", "crc", "exception", "garbage", "byte_count", "implausible")
_IMPLAUSIBLE = const(5)
_POWER = const(2)  # power_W's index in powermeter.OBJECTS: the largest power bounds how fast energy grows
_SLACK_WH = const(1000)  # energy may grow this much more than the largest power allows (a counter's step)

# A profile's field table (profile.py builds it): FIELD_BYTES bytes per Powermeter value, in the
# order they are published. One bytes object instead of a tuple per value: 9 bytes, not ~100.
OBJECT = const(0)  # index into powermeter.OBJECTS
KEY = const(1)  # index into powermeter.KEYS
TYPE = const(2)  # index into decode.TYPES
_EXP10 = const(3)  # the profile's exp10, plus EXP10_BIAS
_EXACT = const(4)  # 1 for energy: kept exact, never rounded to float32 digits
READ = const(5)  # index into profile.reads
OFFSET = const(6)  # byte offset of the value in that read's data
EXP_READ = const(7)  # NO_EXP, or the read holding an s16 exponent register that scales the value
_EXP_OFFSET = const(8)
FIELD_BYTES = const(9)
EXP10_BIAS = const(128)
NO_EXP = const(255)
# Each value's JSON number is kept in a fixed slot, so a dataset leaves no objects on the heap between
# cycles (long-lived small objects are what fragments a small heap). An exact float32 energy in Wh
# takes up to ~35 characters; a value that needs more is published as absent.
TEXT_BYTES = const(40)


class Dataset:
    """A meter's last complete dataset: each value's JSON number in a slot of TEXT_BYTES, field j at
    TEXT_BYTES * j, and its length (0: no value). Made at start-up, while the heap has room in one piece."""

    def __init__(self, count):
        self.text = bytearray(TEXT_BYTES * count)
        self.lens = bytearray(count)


class Meter:
    """Reads one profile's plan from one slave; a cycle yields a whole dataset or nothing.

    read_limits: None, or what this meter taught (profile.py loads it from flash): {"profile", "slave", "max_read"
    (registers per read, None while the profile's own holds), "holes" ([[first, last]] registers)}.
    """

    def __init__(self, cfg, profile, master, dataset, storage=None):
        self.module_id = cfg["module_id"]
        self.meter_id = cfg["meter_id"]
        self.slave = cfg["slave"]
        self.period_ms = cfg["period_ms"]
        self.profile = profile
        self.master = master
        self.dataset = dataset
        # the register bytes of this cycle's reads, read i at _base[i]: decoded only once every read is in, so no
        # value object lives across a read's awaits (where they cut a small heap into pieces too small for a frame)
        self._base = [0]
        for _, count in profile.reads:
            self._base.append(self._base[-1] + 2 * count)
        self._regs = bytearray(self._base.pop())
        self.online = False
        self.failures = 0
        self.last_ok = None  # ticks_ms of the last answer: a complete cycle, or a probe between cycles
        self.cycles = 0  # poll cycles attempted
        self.errors = [0] * len(ERRORS)  # failed cycles by kind, in ERRORS order
        self.last_error_kind = None  # a name from ERRORS
        self.last_error_ticks = 0  # ticks_ms of the last failed cycle (valid once last_error_kind is set)
        self.read_limits = profile.read_limits
        self.storage = storage  # where learn.py saves read_limits
        self.heard = 0  # the cycle of the meter's last reply (a value or an exception); 0: it never replied

    def fresh(self):
        """True while the meter answers: online, and its last answer is recent (whatever period_ms)."""
        if not self.online:
            return False
        return time.ticks_diff(time.ticks_ms(), self.last_ok) < _FRESH_MS

    async def probe(self):
        """One read of the plan between polls of a long period: a meter that stops answering shows at once."""
        addr, count = self.profile.reads[0]
        if self.read_limits:
            count = 1  # the meter refused some read: one register of a field is never refused
        try:
            await self.master.read(self.slave, self.profile.fc, addr, count)
        except rtu.ModbusError as e:
            self._failed(e)
            return
        self.failures = 0
        self.online = True
        self.last_ok = time.ticks_ms()

    async def poll(self):
        """Read the whole plan; True when every read succeeded and dataset holds a fresh, plausible one."""
        p = self.profile
        self.cycles += 1
        try:
            for i, (addr, count) in enumerate(p.reads):
                why = 0  # 0: over what the meter taught since start-up, read in pieces straight away
                taught = self.read_limits
                if not taught or count <= (taught["max_read"] or rtu.MAX_READ) and not self.holed(addr, addr + count):
                    try:
                        await self.master.read(self.slave, p.fc, addr, count)
                        self.heard = self.cycles
                        self.take(i, 0, 2 * count)
                        continue
                    except rtu.ModbusError as e:
                        if e.kind == rtu.EXCEPTION:
                            self.heard = self.cycles  # a refusal is an answer too
                            if e.code not in (_ILLEGAL_ADDRESS, _ILLEGAL_VALUE):
                                raise
                            why = e.code
                        elif e.kind == rtu.TIMEOUT and self.heard == self.cycles:
                            why = _SILENT  # silence is a limit only while shorter reads are answered
                        else:
                            raise
                try:
                    from . import learn  # rarely needed: loaded the first time a read is refused
                except MemoryError:
                    if not self.failures:
                        log(WARN, self.module_id, "no room to load learn.py for a read it refuses: lower max_read")
                    raise
                await learn.pieces(self, i, why)
        except rtu.ModbusError as e:
            self._failed(e)
            return False
        now = time.ticks_ms()
        why = self._check(now)
        if why:
            if self.last_error_kind != ERRORS[_IMPLAUSIBLE] or not self.failures:
                log(WARN, self.module_id, "dataset refused:", why)
            self._failed(why)
            return False
        self.failures = 0
        self.online = True
        self.last_ok = now
        self._finish()
        return True

    def holed(self, first, end):
        """Whether registers first..end-1 touch a hole the meter taught."""
        for lo, hi in self.read_limits["holes"]:
            if lo < end and first <= hi:
                return True
        return False

    def _failed(self, e):
        """Count a failed cycle: a bus error (rtu.ModbusError) of its kind, or why a dataset is implausible."""
        kind = e.kind if isinstance(e, rtu.ModbusError) else _IMPLAUSIBLE
        self.failures += 1
        self.errors[kind] += 1
        self.last_error_kind = ERRORS[kind]
        self.last_error_ticks = time.ticks_ms()
        if not self.heard:
            if self.failures == 1:  # said once, plainly: nothing on the line has ever come from this slave
                log(WARN, self.module_id, "slave %d has never answered (%s): check the wiring (A/B), slave id, baud "
                    "and parity" % (self.slave, e))
        elif self.failures >= _OFFLINE_AFTER and self.online:
            self.online = False
            if not kind:  # ERRORS[0], a timeout: "unreachable" is for silence only
                log(WARN, self.module_id, "meter unreachable:", e)
            else:
                log(WARN, self.module_id, "meter answers, but not usefully:", e)

    def take(self, i, skip, n):
        """Keep this reply's register bytes as bytes skip..skip+n of plan read i."""
        at = self._base[i] + skip
        self._regs[at : at + n] = self.master.data()[:n]

    def _value(self, j):
        """Field j's (mantissa, exp10) in this cycle's register bytes, or None: the meter has no value."""
        t = self.profile.fields
        at = j * FIELD_BYTES
        v = decode.raw(self._regs, self._base[t[at + READ]] + t[at + OFFSET], t[at + TYPE], self.profile.little)
        e = (0,)
        if t[at + EXP_READ] != NO_EXP:  # the field's s16 exponent register
            e = decode.raw(self._regs, self._base[t[at + EXP_READ]] + t[at + _EXP_OFFSET], decode.S16, False)
        if v is None or e is None:
            return None
        return v[0], v[1] + t[at + _EXP10] - EXP10_BIAS + e[0]

    def _check(self, now):
        """Why the cycle's dataset is implausible, or None (then _finish keeps it).

        Fields are decoded here and again in _finish, rather than kept between: a list per meter for them
        took RAM for good, for two passes of a few dozen values.
        """
        for j in range(self.profile.count):
            v = self._value(j)
            if v:
                why = self._implausible(j, v[0], v[1], now)
                if why:
                    return why
        return None

    def _implausible(self, j, m, e, now):
        """Why m·10^e cannot be field j's value: beyond the profile's limit, or an energy that is negative,
        went back (unless the meter's counters can be reset) or grew faster than the largest power allows."""
        p = self.profile
        t = p.fields
        at = j * FIELD_BYTES
        limit = p.limits[t[at + OBJECT]]
        why = None
        if (abs(m) > limit * 10**-e) if e < 0 else (abs(m) * 10**e > limit):
            why = "over %d" % limit
        elif t[at + _EXACT] and m < 0:
            why = "negative"
        elif t[at + _EXACT] and self.dataset.lens[j] and self.last_ok is not None:
            m0, e0 = decode.parse(self.dataset.text, TEXT_BYTES * j, TEXT_BYTES * j + self.dataset.lens[j])
            k = min(e, e0)
            new = m * 10 ** (e - k)
            old = m0 * 10 ** (e0 - k)
            # a float32 counter moves in steps of up to a ten-millionth of its value: a millionth is allowed
            grow = new - old - old // 1000000
            allowed = 2 * p.limits[_POWER] * time.ticks_diff(now, self.last_ok) // 3600000 + _SLACK_WH
            if k >= 0:
                grow *= 10**k
            else:
                allowed *= 10**-k
            if new < old and not p.energy_reset:
                why = "was " + decode.to_text(m0, e0)
            elif grow > allowed:
                why = "too fast from " + decode.to_text(m0, e0)
        if why:
            from .powermeter import KEYS, OBJECTS  # only for a refused dataset (powermeter imports this module)

            return "%s.%s %s %s" % (OBJECTS[t[at + OBJECT]], KEYS[t[at + KEY]], decode.to_text(m, e), why)
        return None

    def _finish(self):
        t = self.profile.fields
        d = self.dataset
        for j in range(self.profile.count):
            v = self._value(j)
            n = 0
            if v:
                m, e = decode.normalise(v[0], v[1], t[j * FIELD_BYTES + _EXACT])
                s = decode.to_text(m, e).encode()
                if len(s) <= TEXT_BYTES:
                    n = len(s)
                    d.text[TEXT_BYTES * j : TEXT_BYTES * j + n] = s
            d.lens[j] = n
