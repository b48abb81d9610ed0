"""Modbus RTU master: one per bus; owns silence, timeouts, retries and the bus lock."""

import asyncio
import time

from micropython import const

from . import rtu

_BUF = const(256)  # largest RTU frame (Modbus over serial line v1.02, 2.5.1.1)
_GAP_MS = const(30)  # silence that ends a reply in flow: USB adapters deliver in chunks up to ~16 ms apart


class Master:
    """Runs transactions on one Bus, one at a time, with every wait bounded."""

    def __init__(self, bus, baud, bits, timeout_ms=200, retries=1):
        self.bus = bus
        self.timeout_ms = timeout_ms
        self.retries = retries
        self.lock = asyncio.Lock()
        self.char_us = bits * 1000000 // baud
        # Modbus over serial line v1.02, 2.5.1.1: t3.5 chars, fixed 1750 us above 19200 baud
        self.silence_us = 35 * self.char_us // 10 if baud <= 19200 else 1750
        self._req = bytearray(_BUF)
        self._resp = bytearray(_BUF)
        self._mv = memoryview(self._resp)
        self._idle_since = time.ticks_us()
        self.stats = [0, 0, 0]  # transactions, retries, failures

    def data(self):
        """The register bytes of the last read (slave, fc and count skipped)."""
        return self._mv[3:]

    # read and write hand on _transact's coroutine, and it takes the lock without `async with` (whose
    # __aenter__ and __aexit__ are coroutines too): each awaited level is one more frame made on the heap per
    # transaction, and a small heap in pieces may have no room for one

    def read(self, slave, fc, addr, count):
        """Read count registers (await it); the bytes are in data() until the next transaction."""
        return self._transact(slave, fc, addr, count)

    def write(self, slave, addr, words):
        """Write words to holding registers, FC6 for one and FC16 for several (await it)."""
        return self._transact(slave, None, addr, words)

    async def _transact(self, slave, fc, addr, what):
        """A read of what registers with function fc, or a write of the words what (fc None)."""
        await self.lock.acquire()  # the request buffer is shared by every meter on the bus
        try:
            if fc is None:
                n = rtu.encode_write(self._req, slave, addr, what)
            else:
                n = rtu.encode_read(self._req, slave, fc, addr, what)
            self.stats[0] += 1
            tries = self.retries + 1
            while True:
                tries -= 1
                try:
                    return await self._once(n)
                except rtu.ModbusError as e:
                    if e.kind == rtu.EXCEPTION:  # an answer: asking again gets the same one
                        raise
                    if not tries:
                        self.stats[2] += 1
                        raise
                    self.stats[1] += 1
        finally:
            self.lock.release()

    async def _once(self, n):
        req = self._req
        bus = self.bus
        wait = self.silence_us - time.ticks_diff(time.ticks_us(), self._idle_since)
        if wait > 0:
            await asyncio.sleep_ms(wait // 1000 + 1)
        while bus.readinto(self._mv):
            pass  # drop late bytes of an earlier, abandoned reply
        await bus.send(req, n)  # returns once the request has left the wire
        want = rtu.expected_length(req)
        got = 0
        sent = last = time.ticks_ms()
        # the reply cannot be complete before its own wire time has passed
        await asyncio.sleep_ms(min(want * self.char_us // 1000, self.timeout_ms))
        while True:
            k = bus.readinto(self._mv[got:want])
            now = time.ticks_ms()
            if k:
                got = self._resync(got + k)
                last = now
            if got >= want or (got >= 5 and self._resp[1] & 0x80):
                break
            # the timeout is for the reply to start; once it flows, only a stall ends it
            if time.ticks_diff(now, sent if got == 0 else last) > (self.timeout_ms if got == 0 else _GAP_MS):
                self._idle_since = time.ticks_us()
                if rtu.whole(self._resp, got):  # a short reply with a valid CRC: refused for its size
                    rtu.check_response(req, self._resp, got)
                raise rtu.ModbusError(rtu.TIMEOUT, "no reply from slave %d (%d of %d bytes)" % (req[0], got, want))
            await asyncio.sleep_ms(1)
        self._idle_since = time.ticks_us()
        rtu.check_response(req, self._resp, 5 if self._resp[1] & 0x80 else got)

    def _resync(self, got):
        """Drop bytes before the first that can start our reply (stray bytes after DE switching)."""
        resp = self._resp
        slave = self._req[0]
        i = 0
        while i < got and resp[i] != slave:
            i += 1
        if i:
            resp[0 : got - i] = resp[i:got]
        return got - i
