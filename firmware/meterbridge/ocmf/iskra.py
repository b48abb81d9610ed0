"""Iskra WM3M4 / WM3M4C OCMF register interface: metadata, start, stop, signed record and public key.

Protocol facts from Iskra's WM3M4 & WM3M4C User's Manual, section 6.5 (p.37: the algorithm register,
120 registers per write, the transaction commands and the states they are valid in) and EVerest's
RsIskraMeter driver (everest-core modules/HardwareDrivers/PowerMeters/RsIskraMeter/src/main.rs and
utils.rs, written after the manual v1.14; docs/ocmf.md §3).
The register addresses come from the profile's "ocmf" section (checked by profile.py), which names their sources.
"""

import asyncio
import binascii
import json
import time

from micropython import const

from ..modbus.rtu import FC_READ_HOLDING

_IDLE = const(0)  # state: 0 idle, 1 active, 2 active after power failure, 3 active after reset
_ACTIVE = const(1)
_AFTER_POWER_FAILURE = const(2)
# Commands, in the high byte (manual 6.5.8, Table 15): 'B' begins (valid in the idle state); 'r' ends "with
# begin and end", so the signed record carries both readings, where 'E' (and 'L', 'R', 'A', 'P') would sign the
# end reading alone; both are valid in the active state and leave the meter idle (state 0), which EVerest's
# driver waits for after 'r'. One record with both readings is what a stop reply needs.
_START = const(0x4200)
_STOP = const(0x7200)
_BUSY = const(2)  # status: 0 not initialised, 1 idle, 2 in progress, 15 signed, anything else an error
_SIGNED = const(15)
_SYNCHRONISED = const(2)  # time status written after the clock is set
# RsIskraMeter waits up to 1 s for the state to change, then 15 s for the signature (ocmf/__init__.py counts
# two of these in a request's longest wait)
_SETTLE_MS = const(16000)
_POLL_MS = const(20)
# registers per block read or write: the manual (6.5.7: "Only 120 MODBUS registers (240 bytes) can be entered in
# one write command"); pyiskra (Iskra's library, cd23e27 adapters/Modbus.py) chunks reads and writes at 120, as
# Tinkerforge eichrecht.c ("max 120 registers in one go") does; Modbus itself allows 125 and 123
_BLOCK = const(120)
_SIG_MAX = const(72)  # longest DER ECDSA P-256 signature
_KEY_BYTES = const(64)  # public key X‖Y
_HEAD = const(5)  # "OCMF|" before the payload in the record buffer
_TAIL = const(154)  # |{"SD":"…"} after it: 8 + the signature's hex + 2
# DER SubjectPublicKeyInfo header of a P-256 key, followed by X‖Y (RsIskraMeter PUBLIC_KEY_PREFIX)
_SPKI_P256 = const("3059301306072A8648CE3D020106082A8648CE3D03010703420004")
_NO_ID = const('{"FV":"1.0","IS":false,"IT":"NONE"}')  # metadata when the journal lost the transaction's own
# one string rather than a dict of them: 0.5 KB less RAM (RsIskraMeter SignatureStatus)
_STATUS = const("signature status %d (128 date/time, 129 checksum, 130 command, 131 state, 132 measurement, "
                 "133 test mode, 243-255 internal error)")


class MeterError(Exception):
    """A signing meter refused or failed a step of a transaction; the text says which."""


def _hex(b):
    return binascii.hexlify(b).decode().upper()


def _text(s):
    """A JSON string without '|', which would split the OCMF record (RsIskraMeter replaces it too)."""
    return json.dumps(s.replace("|", " "))


def minimal_der(sig):
    """Hex of a DER ECDSA signature with r and s unpadded (the meter pads both to 32 bytes: RsIskraMeter
    utils.rs correct_signature); a signature of any other shape is passed on unchanged."""
    n = len(sig)
    if n < 2 or sig[0] != 0x30 or sig[1] != n - 2:
        return _hex(sig)
    ints = []
    i = 2
    while i < n:
        if sig[i] != 2 or i + 1 >= n or i + 2 + sig[i + 1] > n:
            return _hex(sig)
        j, end = i + 2, i + 2 + sig[i + 1]
        while j < end - 1 and sig[j] == 0 and sig[j + 1] < 0x80:
            j += 1
        ints.append(sig[j:end])
        i = end
    if len(ints) != 2:
        return _hex(sig)
    body = b"".join(b"\x02" + bytes((len(x),)) + x for x in ints)
    return _hex(b"\x30" + bytes((len(body),)) + body)


class Iskra:
    """One Iskra meter's OCMF interface, reached through a Modbus master (its longest request: ocmf/__init__.py)."""

    def __init__(self, registers, master, slave, record, words):
        self._r = registers  # {name: address}
        self._master = master
        self._slave = slave
        self._meta_max = 2 * (self._r["payload"] - self._r["metadata"])  # the payload follows the metadata
        self._buf = record  # the whole OCMF record is put together here: _HEAD + payload + _TAIL bytes at most
        self._max = len(record) - _HEAD - _TAIL
        self._mv = memoryview(record)
        self._words = words  # _BLOCK registers: one FC16 write of metadata, built in place

    def metadata(self, req):
        """Metadata JSON (manual 6.5.15): the request's identification and EVSE; ValueError when too long."""
        parts = ['{"FV":"1.0","IS":' + ("true" if req["identification_status"] == "ASSIGNED" else "false")]
        if req.get("identification_level"):  # null and absent alike: EVerest sends none
            parts.append('"IL":' + _text(req["identification_level"]))
        parts.append('"IF":[' + ",".join(_text(f) for f in req.get("identification_flags", [])[:4]) + "]")
        parts.append('"IT":' + _text(req["identification_type"]))
        parts.append('"ID":' + _text(req.get("identification_data") or ""))
        if req["evse_id"]:
            parts.append('"CT":"EVSEID","CI":' + _text(req["evse_id"]))
        meta = ",".join(parts) + "}"
        n = len(memoryview(meta))  # its UTF-8 bytes, without a copy
        if n > self._meta_max:
            raise ValueError("identification is %d bytes, the meter takes at most %d" % (n, self._meta_max))
        return meta

    async def active(self):
        """True while the meter runs a transaction (in any of its active states)."""
        return await self._word("state") != _IDLE

    async def begin(self, meta, now_ms):
        """Give the meter time and metadata and start its transaction; returns once the start is signed."""
        await self._give(meta, now_ms, True)
        await self._set("command", _START)
        await self._settle(_ACTIVE)

    async def end(self, meta, now_ms):
        """End the running transaction; after a power failure time and metadata go first (manual §6.6)."""
        state = await self._word("state")
        if state == _IDLE:
            raise MeterError("no transaction is running on the meter")
        if state == _AFTER_POWER_FAILURE:
            await self._give(meta or _NO_ID, now_ms, False)
        await self._set("command", _STOP)
        await self._settle(_IDLE)

    async def record(self):
        """The last transaction's OCMF record (payload byte for byte, signature as hex DER), in place, as bytes."""
        n = await self._word("payload_length")
        m = await self._word("signature_length")
        if not 0 < n <= self._max or not 0 < m <= _SIG_MAX:
            raise MeterError("no signed record (payload %d bytes, signature %d bytes)" % (n, m))
        await self._read("signature", m)
        tail = ('|{"SD":"%s"}' % minimal_der(self._buf[:m])).encode()
        await self._read("payload", n, _HEAD)
        end = _HEAD + n + len(tail)
        self._mv[:_HEAD] = b"OCMF|"  # after the signature, which was read into the buffer's start
        self._mv[_HEAD + n : end] = tail
        return self._mv[:end]  # valid until the next read; the reply is written in the same buffer (session.py)

    async def public_key(self):
        """The meter's OCMF key as hex DER SubjectPublicKeyInfo."""
        await self._read("public_key", _KEY_BYTES)
        xy = bytes(self._mv[:_KEY_BYTES])
        if not any(xy):
            raise MeterError("the meter has no public key")
        return _SPKI_P256 + _hex(xy)

    async def _word(self, name):
        await self._master.read(self._slave, FC_READ_HOLDING, self._r[name], 1)
        d = self._master.data()
        return d[0] << 8 | d[1]

    async def _set(self, name, value, offset=0):
        await self._master.write(self._slave, self._r[name] + offset, (value,))

    async def _give(self, meta, now_ms, start):
        """Time (unless the clock is not valid yet), before a start the signature format, then the metadata."""
        if now_ms is not None:
            s = now_ms // 1000
            await self._set("time", s >> 16 & 0xFFFF)  # UTC seconds, high word first, a register at a time
            await self._set("time", s & 0xFFFF, 1)
            await self._set("zone", 0)  # the firmware keeps UTC
            await self._set("time_status", _SYNCHRONISED)
        if start:
            await self._set("signature_format", 0)  # 0: ASN.1 DER, which record() unpads
        data = memoryview(meta)  # its UTF-8 bytes, without a copy
        words = self._words
        n = len(data)
        for i in range(0, n, 2 * _BLOCK):
            k = 0
            for j in range(i, min(i + 2 * _BLOCK, n), 2):
                words[k] = data[j] << 8 | (data[j + 1] if j + 1 < n else 0)  # an odd length ends in a zero byte
                k += 1
            await self._master.write(self._slave, self._r["metadata"] + i // 2, memoryview(words)[:k])
        await self._set("metadata_length", len(data))

    async def _read(self, name, n, at=0):
        """Read n bytes from register name on into the buffer from at on, _BLOCK registers at a time."""
        words = (n + 1) // 2
        done = 0
        while done < words:
            count = min(words - done, _BLOCK)
            await self._master.read(self._slave, FC_READ_HOLDING, self._r[name] + done, count)
            self._mv[at + 2 * done : at + 2 * (done + count)] = self._master.data()[: 2 * count]
            done += count

    async def _settle(self, state):
        """Wait for the meter to reach state and sign (the driver allows 1 s and 15 s; here 16 s in all)."""
        deadline = time.ticks_add(time.ticks_ms(), _SETTLE_MS)
        while True:
            now = await self._word("state")
            status = await self._word("status")
            if status == _SIGNED and now == state:
                return
            if _BUSY < status != _SIGNED:
                raise MeterError(_STATUS % status)
            if time.ticks_diff(deadline, time.ticks_ms()) <= 0:
                raise MeterError("no signature within %d ms (state %d, status %d)" % (_SETTLE_MS, now, status))
            await asyncio.sleep_ms(_POLL_MS)
