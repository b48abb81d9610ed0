"""The HAL the bench stubs on both ports: the UART with a meter on it, the watchdog, the clock.

They stand in for the board's HAL (hal/esp32.py and machine.UART), so their heap counts with the firmware's
(bench/wasm/board.py measures). The flash is the port's own filesystem, through the firmware's Storage.
PolledIO gives the WebAssembly port's asyncio the IO queue that extmod/asyncio has.
"""

import time

from stub_net import Module

# asyncio is imported where it is used: the firmware's own imports are part of its heap

class PolledIO:
    """extmod/asyncio's IO queue where there is no select(): a task waiting on a stream looks again in 5 ms
    (the stub socket is always writable, and readable once BROKER has bytes for it)."""

    def _later(self, stream):
        from asyncio import core

        core._task_queue.push(core.cur_task, time.ticks_add(time.ticks_ms(), 5))

    queue_read = queue_write = _later

    def remove(self, task):
        pass


class Bus:
    """The UART with a meter on it: every read gets an answer (all registers 0), a write its echo."""

    def __init__(self, uart, baud, parity):
        from meterbridge.modbus import rtu

        self._rtu = rtu
        self._reply = bytearray(256)
        self._n = 0

    async def send(self, buf, n):
        import asyncio

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
        c = self._rtu.crc16(r, k)
        r[k], r[k + 1] = c & 0xFF, c >> 8
        self._n = k + 2
        await asyncio.sleep_ms(0)

    def readinto(self, mv):
        n = min(self._n, len(mv))
        mv[:n] = self._reply[:n]
        self._reply[: self._n - n] = self._reply[n : self._n]
        self._n -= n
        return n

    def close(self):
        pass


class Watchdog:
    def __init__(self, timeout_ms):
        pass

    def feed(self):
        pass


def hal_module():
    from meterbridge import storage

    mod = Module()
    mod.PLATFORM = "bench"
    mod.Bus = Bus
    mod.Storage = storage.Storage
    mod.Watchdog = Watchdog
    mod.supported_baud = lambda baud: 300 <= baud <= 115200
    mod.epoch_ms = lambda: 1764152130250 + time.ticks_ms()
    mod.gmtime = lambda s: time.gmtime(s - 946684800) if time.gmtime(0)[0] == 2000 else time.gmtime(s)
    mod.config_path = lambda: "config.json"
    mod.profiles_dir = lambda: "profiles"
    mod.default_storage_dir = lambda: "meterbridge-state"
    mod.start_network = lambda cfg: None
    mod.stopped = lambda: None

    def fatal(message):
        raise RuntimeError(message)

    mod.fatal = fatal
    return mod


