"""Stand-in for the ESP32 `machine` module on the unix port, after the MicroPython ESP32 docs.

What a logic analyser on the board would see is recorded: every output pin edge with its ticks_us
time (EDGES), every UART write with the time its last stop bit leaves at the configured baud and
framing (FRAMES), and every release of an RS-485 transceiver's DE pin (RELEASES) with the bytes the
transceiver lost because they arrived while DE was still high (its receiver is off then).
Wiring comes from the environment: STANDIN_UART<id>=<pty path>, STANDIN_UART<id>_DE=<gpio>,
STANDIN_PIN<gpio>=<input level>, STANDIN_RESET_CAUSE=<PWRON_RESET|WDT_RESET|...>,
STANDIN_RTC=set (the RTC kept a valid time over the reset; else it starts at 2000-01-01),
STANDIN_RTC_MEMORY=<bytes> (RTC.memory() kept over a soft reset), STANDIN_WDT=<timeout ms> (a watchdog
started before a soft reset: it still runs), STANDIN_TXDONE_GAP_US=<us> (txdone() also true that long after
each write, as if the TX FIFO were read before the interrupt fills it from the ring buffer).

The watchdog resets the "board" as the chip's does (docs: machine.WDT; ports/esp32/machine_wdt.c): not
fed within its timeout, it ends the process from a thread, whatever the program is doing; it cannot be
stopped, and WDT() again only sets a new timeout. Timer callbacks run in a thread of their own (on the
board they are scheduled and run between bytecodes, and while the REPL waits for input).

The UART keeps the board's timing (ports/esp32/machine_uart.c, ESP-IDF uart driver): bytes leave one
after another at the baud rate and framing, a write returns once its bytes fit in the TX ring buffer plus
the 128-byte hardware FIFO (it blocks while they do not), and txdone() is true only once the last stop bit
of everything written is out. A transmitter thread puts each byte on the pty when its stop bit has gone out.
"""

import _thread
import os
import select
import sys
import termios
import time

PWRON_RESET = 1  # machine.reset_cause() values of the ESP32 port
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5
RESET_EXIT = 99  # process exit status that stands for machine.reset()
_HW_FIFO = 128  # bytes of the UART's own TX FIFO (ESP32 TRM, UART)

EDGES = []  # (gpio, level, ticks_us)
FRAMES = []  # (uart id, start ticks_us, end ticks_us, bytes, DE level while written)
RELEASES = []  # (uart id, ticks_us, end ticks_us of the last frame, bytes lost while DE was high)
WDT_EXPIRED = []  # (ms since the previous feed, timeout ms): the board would have reset
_levels = {}  # gpio -> output level
_de_of = {}  # gpio -> UART whose transceiver's DE/RE it drives


def level(gpio):
    """The level an output pin drives now (0 before it was ever driven)."""
    return _levels.get(gpio, 0)


def reset_cause():
    return globals()[os.getenv("STANDIN_RESET_CAUSE", "PWRON_RESET")]


def reset():
    """Never returns, as on the board: the process ends with RESET_EXIT."""
    print("[standin] machine.reset()")
    raise SystemExit(RESET_EXIT)


def unique_id():
    return b"\x24\x0a\xc4\x00\x00\x01"


def freq():
    return 240000000


def idle():
    pass


class Pin:
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_DOWN = 1
    PULL_UP = 2

    def __init__(self, id, mode=-1, pull=-1, *, value=None):
        self.id = id
        self._mode = self.IN
        self._pull = None
        self.init(mode, pull, value=value)

    def init(self, mode=-1, pull=-1, *, value=None):
        if mode in (self.OUT, self.OPEN_DRAIN) and 34 <= self.id <= 39:
            raise ValueError("pin can only be input")
        if mode != -1:
            self._mode = mode
        if pull != -1:
            self._pull = pull
        if value is not None:
            self.value(value)

    def value(self, x=None):
        if x is None:
            if self._mode == self.IN:
                level = os.getenv(f"STANDIN_PIN{self.id}")
                return int(level) if level else int(self._pull == self.PULL_UP)
            return _levels.get(self.id, 0)
        x = 1 if x else 0
        was = _levels.get(self.id)
        if was != x:
            now = time.ticks_us()
            _levels[self.id] = x
            EDGES.append((self.id, x, now))
            uart = _de_of.get(self.id)
            if uart is not None and was == 1:
                uart._released(now)
        return None

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    def __call__(self, x=None):
        return self.value(x)


class UART:
    INV_TX = 1
    INV_RX = 4

    def __init__(self, id, baudrate=115200, bits=8, parity=None, stop=1, *, tx=None, rx=None, rts=None,
                 cts=None, txbuf=256, rxbuf=256, timeout=0, timeout_char=0, invert=0, flow=0):
        if id not in (0, 1, 2):
            raise ValueError(f"UART({id}) does not exist")
        if rxbuf <= 128:  # ESP-IDF needs more than the 128-byte hardware FIFO
            raise ValueError("rxbuf too small")
        path = os.getenv(f"STANDIN_UART{id}")
        if not path:
            raise OSError(f"standin: STANDIN_UART{id} names no pty")
        self.id = id
        self.baudrate = baudrate
        self.bits_per_char = 1 + bits + (parity is not None) + stop
        self.timeout = timeout
        self._f = open(path, "r+b")
        fd = self._f.fileno()
        termios.setraw(fd)
        attrs = termios.tcgetattr(fd)
        attrs[6][6] = 0  # VMIN=0 VTIME=0: reads return what is there
        attrs[6][5] = 0
        termios.tcsetattr(fd, termios.TCSANOW, attrs)
        self._poll = select.poll()
        self._poll.register(self._f, select.POLLIN)
        self._rx = bytearray()
        self._tx_end = time.ticks_us()
        self._tx_room = txbuf + _HW_FIFO
        self._written = time.ticks_us()
        self._gap_us = int(os.getenv("STANDIN_TXDONE_GAP_US") or 0)
        self._out = []  # (ticks_us its stop bit ends, byte), oldest first: the bytes still on their way out
        self._out_lock = _thread.allocate_lock()
        self._open = True
        _thread.start_new_thread(self._shift_out, ())
        de = os.getenv(f"STANDIN_UART{id}_DE")
        self._de = int(de) if de else None
        if self._de is not None:
            _de_of[self._de] = self

    def _wire_us(self, n):
        return n * self.bits_per_char * 1000000 // self.baudrate

    def _queued(self):
        """Bytes written but not yet out on the wire."""
        left = time.ticks_diff(self._tx_end, time.ticks_us())
        return 0 if left <= 0 else -(-left * self.baudrate // (self.bits_per_char * 1000000))

    def write(self, buf, *args):
        """Stream write: write(buf), write(buf, max_len) or write(buf, off, max_len)."""
        mv = memoryview(buf)
        if len(args) == 1:
            mv = mv[: args[0]]
        elif len(args) == 2:
            mv = mv[args[0] : args[0] + args[1]]
        while self._queued() and self._queued() + len(mv) > self._tx_room:
            time.sleep_us(100)  # uart_write_bytes() waits for room in the ring buffer
        now = time.ticks_us()
        start = self._tx_end if time.ticks_diff(self._tx_end, now) > 0 else now
        self._tx_end = time.ticks_add(start, self._wire_us(len(mv)))
        de = None if self._de is None else _levels.get(self._de, 0)
        FRAMES.append((self.id, start, self._tx_end, bytes(mv), de))
        self._written = time.ticks_us()
        char_us = self._wire_us(1)
        with self._out_lock:
            for i, b in enumerate(mv):
                self._out.append((time.ticks_add(start, (i + 1) * char_us), b))
        return len(mv)

    def _shift_out(self):
        """The transmitter: each byte reaches the wire (the pty) once its stop bit has gone out."""
        while self._open:
            now = time.ticks_us()
            with self._out_lock:
                n = 0
                while n < len(self._out) and time.ticks_diff(now, self._out[n][0]) >= 0:
                    n += 1
                due = bytes(b for _, b in self._out[:n])
                del self._out[:n]
                wait = time.ticks_diff(self._out[0][0], now) if self._out else 1000
            if due:
                try:
                    self._f.write(due)
                except OSError:
                    return  # closed meanwhile
            time.sleep_us(max(min(wait, 1000), 20))

    def txdone(self):
        if time.ticks_diff(time.ticks_us(), self._written) < self._gap_us:
            return True  # STANDIN_TXDONE_GAP_US: the FIFO still empty, the interrupt not yet refilling it
        return time.ticks_diff(time.ticks_us(), self._tx_end) >= 0

    def flush(self):
        while not self.txdone():
            pass

    def _pull(self, wait_ms=0):
        if self._poll.poll(wait_ms):
            data = self._f.read(1024)
            if data:
                self._rx.extend(data)

    def _released(self, when):
        """DE fell at when: whatever arrived while it was high never reached RX."""
        self._pull()
        lost = bytes(self._rx)
        self._rx = bytearray()
        RELEASES.append((self.id, when, self._tx_end, lost))

    def any(self):
        self._pull()
        return len(self._rx)

    def readinto(self, buf, nbytes=None):
        self._pull()
        if not self._rx and self.timeout:
            self._pull(self.timeout)
        n = min(len(buf) if nbytes is None else nbytes, len(self._rx))
        if not n:
            return None  # as the ESP32 port: nothing before the timeout
        buf[:n] = self._rx[:n]
        self._rx = self._rx[n:]
        return n

    def read(self, nbytes=-1):
        buf = bytearray(1024 if nbytes < 0 else nbytes)
        n = self.readinto(buf)
        return None if n is None else bytes(buf[:n])

    def deinit(self):
        self._open = False
        time.sleep_ms(3)  # the transmitter thread sees it
        self._f.close()


_watchdog = []  # [timeout ms, ticks_ms of the last feed] once the one watchdog runs


def _arm_watchdog(timeout):
    if not _watchdog:
        _thread.start_new_thread(_watch, ())
    _watchdog[:] = [timeout, time.ticks_ms()]


def _watch():
    while True:
        time.sleep_ms(10)
        timeout, last = _watchdog
        quiet = time.ticks_diff(time.ticks_ms(), last)
        if quiet > timeout:
            print("[standin] watchdog reset: %d ms without feed" % quiet, file=sys.stderr)
            os.system("kill -9 $PPID")  # the shell's parent is this process; the unix port has no os.kill


class WDT:
    def __init__(self, id=0, timeout=5000):
        if timeout < 1:
            raise ValueError("WDT timeout too short")
        self.timeout = timeout
        _arm_watchdog(timeout)

    def feed(self):
        _ctrl_c()
        now = time.ticks_ms()
        gap = time.ticks_diff(now, _watchdog[1])
        if gap > _watchdog[0]:
            WDT_EXPIRED.append((gap, _watchdog[0]))
        _watchdog[1] = now


def _ctrl_c():
    """Ctrl-C typed at the console: a file `ctrl-c` in the working directory. The board raises it in the main
    thread at a safe point (a pending exception); the unix port's SIGINT would raise at once, in any thread,
    even inside a garbage collection. So the stand-in raises it here, where the firmware runs: WDT.feed()."""
    try:
        os.remove("ctrl-c")
    except OSError:
        return
    raise KeyboardInterrupt


if os.getenv("STANDIN_WDT"):
    _arm_watchdog(int(os.getenv("STANDIN_WDT")))

_timer_runs = {}  # timer id -> the run now current; a thread calls the callback while its run is current


class Timer:
    ONE_SHOT = 0
    PERIODIC = 1

    def __init__(self, id, **kwargs):
        if not 0 <= id <= 3:
            raise ValueError(f"Timer({id}) doesn't exist")
        self.id = id  # Timer(id) again is the same hardware timer
        if kwargs:
            self.init(**kwargs)

    def init(self, *, mode=PERIODIC, period=-1, callback=None):
        run = _timer_runs.get(self.id, 0) + 1
        _timer_runs[self.id] = run
        _thread.start_new_thread(self._run, (run, mode, period, callback))

    def deinit(self):
        _timer_runs[self.id] = _timer_runs.get(self.id, 0) + 1

    def _run(self, run, mode, period, callback):
        while True:
            time.sleep_ms(period)
            if _timer_runs[self.id] != run:
                return
            callback(self)
            if mode == self.ONE_SHOT:
                return


class RTC:
    """The chip's clock: 2000-01-01 after power-on unless STANDIN_RTC=set; NTP (hal/esp32.py) sets it."""

    _offset = [None]
    _memory = [os.getenv("STANDIN_RTC_MEMORY", "").encode()]

    def memory(self, data=None):
        """Bytes kept over a soft reset (and, on the ESP32, over other resets but a power-on)."""
        if data is None:
            return self._memory[0]
        self._memory[0] = bytes(data)
        return None

    def __init__(self, id=0):
        if self._offset[0] is None:
            self._offset[0] = 0 if os.getenv("STANDIN_RTC") == "set" else 946684800 - _host_s()

    def datetime(self, dt=None):
        if dt is None:
            t = time.gmtime(_host_s() + self._offset[0])
            return (t[0], t[1], t[2], t[6], t[3], t[4], t[5], 0)
        secs = time.mktime((dt[0], dt[1], dt[2], dt[4], dt[5], dt[6], 0, 0))
        self._offset[0] = secs - _host_s()
        return None


def _host_s():
    return time.time_ns() // 1000000000
