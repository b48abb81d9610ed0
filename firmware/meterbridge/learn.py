"""Reading a refused read in pieces and learning from it: loaded by meter.py on the first refusal only.

A refused read is read in pieces of whole fields in the same cycle; a refused piece teaches a smaller
limit or a hole and the rest is read again. The pieces are found by scanning the field table, not by
building lists, so the learning needs next to no RAM on a crowded heap. What is learned goes into
meter.limits, saved to flash: profile.py plans the next start with it.
"""

import json

from micropython import const

from . import decode
from .log import WARN, log
from .meter import EXP_READ, FIELD_BYTES, READ, TYPE
from .modbus import rtu

# Modbus Application Protocol v1.1b3, section 7: what a slave answers to a read it will not serve
_ILLEGAL_ADDRESS = const(2)  # a register it does not have (a hole)
_ILLEGAL_VALUE = const(3)  # a count it does not accept (too long)
SILENT = const(4)  # no reply at all: some meters just drop a request over their limit (meter.py passes it)
_SILENCES = const(1)  # silent pieces tolerated in one split before the meter counts as silent
_NONE = const(0x10000)
_next = 0  # _span's second result


async def pieces(m, i, why):
    """Read plan read i in pieces of whole fields, each within the learned limit and off learned holes;
    a refused piece teaches a smaller limit or a hole and the rest is read again, in this cycle.
    why: how the whole read was refused (an exception code, SILENT), or 0 (not tried)."""
    addr, count = m.profile.reads[i]
    first = m.read_limits is None
    if first:
        m.read_limits = {"profile": m.profile.name, "slave": m.slave, "max_read": None, "holes": []}
    lim = m.read_limits["max_read"] or rtu.MAX_READ
    holes = len(m.read_limits["holes"])
    at = longest = 0
    silences = _SILENCES
    try:  # a cycle that fails teaches nothing: it may be the meter failing, not its limits
        if why:
            lim = _teach(m, i, 0, count, why, lim)
        while True:
            start = _span(m, i, at)
            if start == _NONE:
                break
            end = start + _next
            while True:  # whole spans onward, while within the limit and off the holes
                nxt = _span(m, i, end)
                if nxt == _NONE or nxt + _next - start > lim or m.holed(addr + start, addr + nxt):
                    break
                end = nxt + _next
            try:
                await m.master.read(m.slave, m.profile.fc, addr + start, end - start)
                m.heard = m.cycles
                m.take(i, 2 * start, 2 * (end - start))
                at = end
                longest = max(longest, end - start)
                continue
            except rtu.ModbusError as e:
                if e.kind == rtu.EXCEPTION:
                    m.heard = m.cycles
                    if e.code not in (_ILLEGAL_ADDRESS, _ILLEGAL_VALUE) or _span(m, i, start) + _next >= end:
                        if e.code in (_ILLEGAL_ADDRESS, _ILLEGAL_VALUE) and not m.failures:
                            log(WARN, m.module_id, "slave %d refuses registers %d..%d, which fields need (%s): "
                                "does the profile fit this meter?" % (m.slave, addr + start, addr + end - 1, e))
                        raise
                    code = e.code
                elif e.kind == rtu.TIMEOUT and silences and _span(m, i, start) + _next < end:
                    silences -= 1
                    code = SILENT
                else:
                    raise
            why = why or code
            lim = _teach(m, i, start, end, code, lim)
    except rtu.ModbusError:
        del m.read_limits["holes"][holes:]
        if first:
            m.read_limits = None
        raise
    if not why:
        return
    learned = ""
    if lim < (m.read_limits["max_read"] or rtu.MAX_READ):
        m.read_limits["max_read"] = lim = min(lim, longest)  # what worked: a restart never reads longer
        learned = "max_read %d " % lim
    if len(m.read_limits["holes"]) > holes:
        learned += "holes %s " % m.read_limits["holes"][holes:]
    log(WARN, m.module_id, "slave %d refused reading registers %d..%d (%s): read in pieces; learned %s%s" % (
        m.slave, addr, addr + count - 1, "no reply" if why == SILENT else "exception %d" % why,
        learned or "nothing new ", "(saved)" if learned and _save(m) else "(not saved)"))

def _teach(m, i, start, end, code, lim):
    """What a refusal of registers start..end (relative to plan read i) teaches: a hole at the widest gap
    between its fields for exception 2, else (or with no gap) a limit of half its length. The new limit."""
    addr = m.profile.reads[i][0]
    gap = at = 0
    s = _span(m, i, start)
    while code == _ILLEGAL_ADDRESS:
        at = s + _next
        s = _span(m, i, at)
        if s >= end:
            break
        if s - at > gap:
            gap, first = s - at, at
    if gap:
        m.read_limits["holes"].append([addr + first, addr + first + gap - 1])
        return lim
    return (end - start) // 2

def _span(m, i, at):
    """The first register (relative to plan read i) from at on that one of its fields or exponents starts
    at, and in _next its length with the spans overlapping it; _NONE when there is none."""
    t = m.profile.fields
    first = end = _NONE
    grown = True
    while grown:
        grown = False
        for x in range(0, len(t), FIELD_BYTES):
            for r in (READ, EXP_READ):
                if t[x + r] != i:
                    continue
                o = t[x + r + 1] // 2  # OFFSET follows READ, EXP_OFFSET follows EXP_READ
                e = o + (decode.width(t[x + TYPE]) if r == READ else 1)
                if at <= o < first:
                    first, end, grown = o, e, True
                elif first <= o < end < e:
                    end, grown = e, True
    global _next
    _next = end - first
    return first

def _save(m):
    """Write the limits to flash; False when there is no storage or it refused."""
    if m.storage is None:
        return False
    try:
        m.storage.write("limits-%s.json" % m.module_id, json.dumps(m.read_limits))  # profile.LIMITS
    except OSError as e:
        log(WARN, m.module_id, "cannot save learned limits:", e)
        return False
    return True
