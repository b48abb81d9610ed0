"""Replies of the wrong size and failed cycles, as the firmware sees them: one line of results per check."""

import asyncio

from meterbridge import profile
from meterbridge.meter import ERRORS, Dataset, Meter
from meterbridge.modbus import rtu


def _frame(body):
    buf = bytearray(len(body) + 2)
    buf[: len(body)] = body
    c = rtu.crc16(buf, len(body))
    buf[-2] = c & 0xFF
    buf[-1] = c >> 8
    return buf


def _verdict(req, resp):
    try:
        rtu.check_response(req, resp, len(resp))
    except rtu.ModbusError as e:
        return ERRORS[e.kind]
    return "ok"


req = bytearray(8)
rtu.encode_read(req, 1, 4, 0, 2)  # two registers: byte count 4
write = bytearray(8)
rtu.encode_write(write, 1, 100, (7,))
print(" ".join((
    _verdict(req, _frame(b"\x01\x04\x04\x00\x01\x00\x02")),  # right
    _verdict(req, _frame(b"\x01\x04\x02\x00\x01")),  # one register short, consistent count
    _verdict(req, _frame(b"\x01\x04\x06\x00\x01\x00\x02\x00\x03")),  # one register too many
    _verdict(req, _frame(b"\x01\x04\x02\x00\x01\x00\x02")),  # count field wrong, length right
    _verdict(req, _frame(b"\x01\x04\x04\x00\x01\x00")[:-1] + b"\x00"),  # bad CRC
    _verdict(write, _frame(b"\x01\x06\x00\x64\x00\x07")),  # write echoed
    _verdict(write, _frame(b"\x01\x06\x00\x65\x00\x07")),  # echo of another address
)))


class _Failing:
    """A master whose reads fail with the errors given, in turn."""

    def __init__(self, errors):
        self._errors = errors

    async def read(self, slave, fc, addr, count):
        raise self._errors.pop(0)


doc = {"function_code": 4, "fields": {"energy_Wh_import.total": {"reg": 0, "type": "f32", "exp10": 3}}}
prof = profile.compile_profile(doc)
errs = [rtu.ModbusError(rtu.TIMEOUT, "t"), rtu.ModbusError(rtu.CRC, "c"), rtu.ModbusError(rtu.EXCEPTION, "x", 4),
        rtu.ModbusError(rtu.GARBAGE, "g"), rtu.ModbusError(rtu.BYTE_COUNT, "b"), rtu.ModbusError(rtu.TIMEOUT, "t")]
m = Meter({"module_id": "m", "meter_id": "m", "slave": 1, "period_ms": 1000}, prof, _Failing(errs), Dataset(1))
for _ in range(6):
    asyncio.run(m.poll())
print(m.cycles, " ".join("%s=%d" % (k, n) for k, n in zip(ERRORS, m.errors)), m.last_error_kind)


class _Serving:
    """A master that serves one f32 energy register pair (kWh) and one f32 voltage, as set."""

    def __init__(self):
        self.words = bytearray(8)

    def set(self, kwh, volts):
        import struct

        self.words[:4] = struct.pack(">f", kwh)
        self.words[4:] = struct.pack(">f", volts)

    async def read(self, slave, fc, addr, count):
        pass

    def data(self):
        return memoryview(self.words)


doc = {"function_code": 4, "limits": {"voltage_V": 500},
       "fields": {"energy_Wh_import.total": {"reg": 0, "type": "f32", "exp10": 3},
                  "voltage_V.L1": {"reg": 2, "type": "f32"}}}
serving = _Serving()
m = Meter({"module_id": "m", "meter_id": "m", "slave": 1, "period_ms": 1000}, profile.compile_profile(doc), serving,
          Dataset(2))
out = []
# kWh, volts: fine; energy back by 1 kWh; fine again; voltage beyond the profile's 500 V; negative energy;
# a jump of 1 GWh within a second; -3.9e32 as a shifted reply gave; a later reading that moved on
for kwh, volts in ((1000.5, 230), (999.5, 230), (1000.75, 231), (1001, 501), (-1, 230), (1e6 + 1001, 230),
                   (-3.9e32, 230), (1001.25, 229.5)):
    serving.set(kwh, volts)
    ok = asyncio.run(m.poll())
    out.append("ok" if ok else m.last_error_kind)
print(" ".join(out), bytes(m.dataset.text[: m.dataset.lens[0]]).decode(), m.errors[5])
