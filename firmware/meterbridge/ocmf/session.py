"""Transactions of a meter that signs OCMF itself: journal phases, recovery after a reset, EVerest replies.

Before each step on the meter the journal records the transaction's phase (starting, running,
stopping), so after a reset at any instant the next request learns from phase and meter state
what happened (docs: ocmf_start_of_pmeter_or_transaction_after_powerloss.mmd):
- a start first stops whatever the meter still runs (that record is not sent: nobody asked for it);
- a stop of the open transaction stops the meter if it still runs, then reads the signed record;
- a stop repeated after its reply was lost reads the same record again while the meter holds it;
- a start repeated while its transaction runs (a QoS 1 redelivery) answers OK again and leaves the
  meter's transaction alone, so the stop's record covers the whole transaction.
The record is the meter's: its payload is passed on byte for byte, nothing is made up when the
meter cannot be reached (UNEXPECTED_ERROR with the reason, and the journal keeps the transaction).

The meter is the truth where the journal is not: a stop of a transaction the journal does not know
(deleted, unreadable) while the meter runs one ends the meter's and sends its record. A step whose
phase cannot be journaled first (storage full, read-only) is not taken: UNEXPECTED_ERROR names the
storage problem. A record nobody asked for is logged whole with its transaction id, never dropped unseen.

Loaded for one request (or key read) and unloaded after it (ocmf/__init__.py); what outlives a request is
kept in t, the meter's SignedTransactions.
"""

import gc

from micropython import const

from .. import hal, jsonout, powermeter
from ..everest_link import reply
from ..log import ERROR, WARN, log
from ..modbus.rtu import ModbusError
from .iskra import Iskra, MeterError  # the one interface so far, as profile.py checked

_OK = const("OK")
_FAILED = const("UNEXPECTED_ERROR")
_STARTING = const("starting")
_RUNNING = const("running")
_STOPPING = const("stopping")
_REPLY_EXTRA = const(512)  # status, field names, hex public key (182 characters) and timestamp
_REPLY_HEAD = const(b'{"status":"OK","signed_meter_value":{"signed_meter_data":')
_CUTS = const((40, 10))  # characters kept of each identification text when the metadata does not fit the meter
_MAX_ID = const(64)  # the journal keeps the transaction id; EVerest's are UUIDs (36 characters)
_REQUIRED = const(("transaction_id", "evse_id", "identification_status", "identification_type"))
_OPTIONAL = const(("identification_level", "identification_data"))  # tariff_text: not used by the meter


def _invalid(p):
    """Why a start's payload cannot be given to the meter, or None: types only, never lengths (README)."""
    if not isinstance(p, dict):
        return "payload must be a StartTransactionRequest object"
    for key in _REQUIRED + _OPTIONAL:
        v = p.get(key)
        if not isinstance(v, str) and (v is not None or key in _REQUIRED):
            return "payload.%s: must be a string" % key
        if key == "transaction_id" and not 0 < len(v) <= _MAX_ID:
            return "payload.transaction_id: must be 1..%d characters" % _MAX_ID
    flags = p.get("identification_flags", [])
    if not isinstance(flags, list) or not all(isinstance(f, str) for f in flags):
        return "payload.identification_flags: must be a list of strings"
    return None


def _cut(req, n):
    """req with every text the metadata takes cut to n characters (EVerest never refuses a long one)."""
    r = dict(req)
    for key in ("evse_id", "identification_level", "identification_type", "identification_data"):
        if r.get(key):
            r[key] = r[key][:n]
    r["identification_flags"] = [f[:n] for f in r.get("identification_flags", [])[:4]]
    return r


async def fetch_key(t, meter=None):
    """True once the meter's public key is known (read now if need be)."""
    if t.public_key is None:
        try:
            t.public_key = await (meter or Iskra(*t.meter)).public_key()
        except (ModbusError, MeterError) as e:
            if not t.key_failed:
                log(WARN, "cannot read the meter's OCMF public key (trying again):", e)
            t.key_failed = True
            return False
    return True


async def start(t, req):
    why = _invalid(req)
    if why:  # checked here, when its turn comes, so that the code of the check is in RAM only then
        log(WARN, "bad request:", why)
        return reply(_FAILED, why)
    tid = req["transaction_id"]
    meter = Iskra(*t.meter)
    meta = None
    for n in (None,) + _CUTS:
        try:
            meta = meter.metadata(req if n is None else _cut(req, n))
            break
        except (ValueError, MemoryError) as e:  # too long for the meter, or for free RAM: cut
            why = e
            gc.collect()  # the metadata that did not fit was up to a few KB
    if meta is None:
        return reply(_FAILED, "transaction %s: %s" % (tid, why))
    if n:
        log(WARN, "transaction", tid, "identification cut to", n, "characters per field to fit the meter")
    tx = t.journal.open
    try:
        if tx and tx["tid"] == tid and tx.get("phase") == _RUNNING and await meter.active():
            return reply(_OK)  # a repeat: the meter's transaction, and so its record, goes on
        await _stop_running(t, meter, "before starting " + tid)
        _save(t, {"tid": tid, "evse_id": req["evse_id"], "t": t.clock(), "phase": _STARTING, "meta": meta})
        await meter.begin(meta, t.clock())
        _phase(t, _RUNNING, False)
    except (ModbusError, MeterError) as e:
        return reply(_FAILED, "meter failed to start transaction %s: %s" % (tid, e))
    except OSError as e:  # storage could not journal the step first (or the bus device failed)
        return reply(_FAILED, "transaction %s not started: %s" % (tid, e))
    return reply(_OK)


async def stop(t, tid):
    journal = t.journal
    tx = journal.open
    meter = Iskra(*t.meter)
    try:
        if not tid:
            await _stop_running(t, meter, "on cancel-all")
            if journal.open or journal.last:
                journal.save(None)
            return reply(_OK)
        if not tx and journal.last != tid and await meter.active():
            log(WARN, "journal lost", tid, "that the meter runs: ending it")
            _save(t, {"tid": tid, "evse_id": "", "t": None, "phase": _STOPPING})
            tx = journal.open
        if tx and tx["tid"] == tid:
            if await meter.active():
                if tx.get("phase") != _STOPPING:
                    _phase(t, _STOPPING)
                await meter.end(tx.get("meta"), t.clock())
            elif tx.get("phase") != _STOPPING:
                journal.save(None)
                return reply(_FAILED, "transaction %s is not running on the meter (never started, or "
                                      "ended by the meter); no signed record" % tid)
        elif tx or journal.last != tid or await meter.active():
            return reply(_FAILED, "no open transaction %s" % tid)
        await fetch_key(t, meter)  # first: reading the key reuses the buffer the record is read into
        record = await meter.record()
    except (ModbusError, MeterError) as e:
        what = tid or "(all)"
        return reply(_FAILED, "meter failed to stop transaction %s: %s; no signed record" % (what, e))
    except OSError as e:
        return reply(_FAILED, "transaction %s not stopped: %s" % (tid or "(all)", e))
    try:
        text = _signed_reply(t, record)
    except UnicodeError:
        try:
            record = await meter.record()  # again: the reply written in place may have begun to cover it
        except (ModbusError, MeterError):
            pass
        _undelivered(tid, record)
        return reply(_FAILED, "the meter's signed record is not UTF-8 text; not passed on")
    journal.save(None, tid)
    return text


def _signed_reply(t, record):
    """The OK StopTransactionReply with the record, no string copies: written from the start of the buffer that
    holds the record further in (ocmf/__init__.py), which the escaped copy never overtakes while the reply's head
    and the record's growth fit before it; else into a buffer of the exact size."""
    out = t.reply
    size = jsonout.string_size(record)  # the record escaped, quotes included
    if len(_REPLY_HEAD) + size - len(record) > len(out.buf) - len(t.meter[3]) or size + _REPLY_EXTRA > len(out.buf):
        out = jsonout.Writer(size + _REPLY_EXTRA)
    out.n = 0
    out.put(_REPLY_HEAD)
    out.put_string(record)
    out.put(b',"signing_method":"","encoding_method":"OCMF"')
    if t.public_key:
        out.put(b',"public_key":"')
        out.put(t.public_key)
        out.put(b'"')
    ms = t.clock()
    if ms is not None:
        out.put(b',"timestamp":"')
        out.put(powermeter.timestamp(ms, hal.gmtime))
        out.put(b'"')
    out.put(b"}}")
    return out.mv[: out.n]


async def _stop_running(t, meter, why):
    """End whatever transaction the meter still runs, without a reply (nobody asked for its record)."""
    if not await meter.active():
        return
    tx = t.journal.open
    if tx:
        _phase(t, _STOPPING)
    await meter.end(tx.get("meta") if tx else None, t.clock())
    t.journal.save(None)
    tid = tx["tid"] if tx else "(unknown)"
    log(WARN, "stopped the meter's transaction", tid, why)
    try:
        _undelivered(tid, await meter.record())
    except (ModbusError, MeterError) as e:
        log(ERROR, "signed record of transaction", tid, "not delivered:", e)


def _save(t, tx, ahead=True):
    """Journal tx; ahead of the step on the meter it announces, OSError when storage cannot (after a
    step, the journal holds it and storage gets it at the next save that works)."""
    why = t.journal.save(tx)
    if why and ahead:
        raise OSError(why)


def _phase(t, phase, ahead=True):
    tx = dict(t.journal.open)
    tx["phase"] = phase
    _save(t, tx, ahead)


def _undelivered(tid, record):
    """Log a signed record that no reply carries, whole, so that it is never lost unseen."""
    log(ERROR, "signed record of transaction", tid, "not delivered:", bytes(record))
