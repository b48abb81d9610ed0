"""The board's C modules that the firmware's own ESP32 HAL (hal/esp32.py) needs, stubbed for both ports.

machine: a UART with a meter on it (every read answered with zeros, a write with its echo), Pin, WDT, an RTC
that has been set, Timer; network without interfaces. On a board these are C, so bench/wasm/board.py loads this
module before the base of the firmware's own figure (bench/wasm32.py); the objects the firmware makes of them count
as its own. PolledIO gives the WebAssembly port's asyncio the IO queue that extmod/asyncio has.
"""

import time

from stub_net import Module


class PolledIO:
    """extmod/asyncio's IO queue where there is no select(): a task waiting on a stream looks again in 5 ms
    (the stub socket is always writable, and readable once BROKER has bytes for it)."""

    def _later(self, stream):
        from asyncio import core

        core._task_queue.push(core.cur_task, time.ticks_add(time.ticks_ms(), 5))

    queue_read = queue_write = _later

    def remove(self, task):
        pass


class UART:
    """machine.UART with a Modbus meter behind it that answers at once."""

    def __init__(self, id, baudrate=9600, **kwargs):
        self._reply = bytearray(256)
        self._n = 0

    def write(self, buf, n=None):
        r = self._reply
        r[0], r[1] = buf[0], buf[1]
        if buf[1] in (3, 4):
            count = buf[4] << 8 | buf[5]
            r[2] = 2 * count
            r[3 : 3 + 2 * count] = bytes(2 * count)  # zero is a value of every type, and a 0 exponent
            k = 3 + 2 * count
        else:  # FC6 / FC16: the echo of address and value or count
            r[2:6] = buf[2:6]
            k = 6
        c = _crc16(r, k)
        r[k], r[k + 1] = c & 0xFF, c >> 8
        self._n = k + 2
        return len(buf) if n is None else n

    def txdone(self):
        return True

    def readinto(self, mv, nbytes=None):
        n = min(self._n, len(mv))
        if not n:
            return None  # as the ESP32 port: nothing before the timeout
        mv[:n] = self._reply[:n]
        self._reply[: self._n - n] = self._reply[n : self._n]
        self._n -= n
        return n

    def deinit(self):
        pass


def _crc16(buf, n):
    """CRC-16/MODBUS of buf[:n]: init 0xFFFF, reflected polynomial 0xA001 (Modbus over Serial Line V1.02, 6.2.2).
    The stub's own, so that loading it interns none of the firmware's names (meterbridge.modbus.rtu has one)."""
    c = 0xFFFF
    for i in range(n):
        c ^= buf[i]
        for _ in range(8):
            c = (c >> 1) ^ 0xA001 if c & 1 else c >> 1
    return c


class Pin:
    IN = 1
    OUT = 3
    PULL_UP = 2

    def __init__(self, id, mode=-1, pull=-1, *, value=None):
        self._level = value or 0

    def value(self, x=None):
        if x is None:
            return self._level
        self._level = x
        return None


class WDT:
    def __init__(self, id=0, timeout=5000):
        pass

    def feed(self):
        pass


class RTC:
    """Set, as after NTP or an RTC kept over a reset: values are published from the start."""

    _memory = [b""]

    def datetime(self):
        t = time.gmtime()
        return (max(t[0], 2026), t[1], t[2], t[6], t[3], t[4], t[5], 0)

    def memory(self, data=None):
        if data is None:
            return self._memory[0]
        self._memory[0] = bytes(data)
        return None


class Timer:
    def __init__(self, id, **kwargs):
        pass

    def init(self, **kwargs):
        pass

    def deinit(self):
        pass


def _reset():
    raise SystemExit(99)


def machine_module():
    mod = Module()
    mod.UART, mod.Pin, mod.WDT, mod.RTC, mod.Timer = UART, Pin, WDT, RTC, Timer
    mod.reset = _reset
    mod.reset_cause = lambda: 1
    mod.PWRON_RESET, mod.HARD_RESET, mod.WDT_RESET, mod.SOFT_RESET = 1, 2, 3, 5
    return mod


def network_module():
    mod = Module()
    mod.hostname = lambda name=None: "bench"
    return mod
