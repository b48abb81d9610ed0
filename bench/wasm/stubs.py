"""What the bench stubs on both ports: the UART (a meter), the socket (a broker) and the HAL around them.

They stand in for the board's HAL and socket module, so their heap counts with the firmware's
(bench/wasm/board.py measures). The flash is the port's own filesystem, through the firmware's Storage.
"""

import time

# asyncio, io and json are imported where they are used: the firmware's own imports are part of its heap

_EAGAIN = 11
_POLLIN = 1
_POLLOUT = 4
_STREAM_POLL = 3  # MP_STREAM_POLL


class Broker:
    """The far end of the one MQTT connection: CONNACK, SUBACK, PUBACK, PINGRESP; it counts what arrives."""

    def __init__(self):
        self.out = bytearray()  # bytes for the client
        self.inbox = bytearray()  # bytes from the client, not yet a whole packet
        self.values = 0  # powermeter_values published
        self.replies = 0  # replies to requests

    def take(self, data):
        self.inbox += data
        while len(self.inbox) >= 2:
            n, at = 0, 1
            shift = 0
            while True:
                if at >= len(self.inbox):
                    return
                b = self.inbox[at]
                n |= (b & 0x7F) << shift
                shift += 7
                at += 1
                if not b & 0x80:
                    break
            if len(self.inbox) < at + n:
                return
            head, body = self.inbox[0], bytes(self.inbox[at : at + n])
            self.inbox = self.inbox[at + n :]
            self._packet(head, body)

    def _packet(self, head, body):
        kind = head >> 4
        if kind == 1:  # CONNECT
            self.out += b"\x20\x02\x00\x00"
        elif kind == 8:  # SUBSCRIBE: one granted QoS per filter (QoS 0 here)
            filters, at = 0, 2
            while at < len(body):
                at += 2 + (body[at] << 8 | body[at + 1]) + 1
                filters += 1
            self.out += bytes((0x90, 2 + filters)) + body[:2] + bytes(filters)
        elif kind == 3:  # PUBLISH
            t = (body[0] << 8) | body[1]
            topic = body[2 : 2 + t]
            self.values += topic.endswith(b"/powermeter_values")
            self.replies += b"/m2e/reply/" in topic
            if head & 0x06:  # QoS 1: PUBACK with its packet id
                self.out += b"\x40\x02" + body[2 + t : 4 + t]
        elif kind == 12:  # PINGREQ
            self.out += b"\xd0\x00"

    def publish(self, topic, payload):
        """A QoS 0 PUBLISH to the client."""
        body = bytes((len(topic) >> 8, len(topic) & 0xFF)) + topic + payload
        n = len(body)
        size = bytearray()
        while True:
            size.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
            n >>= 7
            if not n:
                break
        self.out += b"\x30" + size + body


BROKER = Broker()


class _Module:
    """A namespace in sys.modules: what `import name` then finds."""


def socket_module():
    import io

    class Socket(io.IOBase):
        """A TCP socket to BROKER: connects at once, never blocks, pollable by select and asyncio."""

        def __init__(self, *args):
            self._blocking = True

        def connect(self, addr):
            pass

        def settimeout(self, t):
            self._blocking = t is None or t > 0

        def setblocking(self, flag):
            self._blocking = flag

        def setsockopt(self, *args):
            pass

        def write(self, buf, n=None):
            if isinstance(buf, str):  # a stream write takes str as its UTF-8 bytes
                buf = buf.encode()
            data = bytes(buf if n is None else memoryview(buf)[:n])
            BROKER.take(data)
            return len(data)

        send = write

        def readinto(self, buf, n=None):
            out = BROKER.out
            n = min(len(buf) if n is None else n, len(out))
            if not n:
                if self._blocking:
                    raise OSError(110)  # ETIMEDOUT: the broker has nothing to say
                return None
            buf[:n] = out[:n]
            BROKER.out = out[n:]
            return n

        def read(self, n=-1):
            buf = bytearray(len(BROKER.out) if n < 0 else n)
            k = self.readinto(buf)
            return None if k is None else bytes(buf[:k])

        def recv(self, n):
            return self.read(n) or b""

        def ioctl(self, req, arg):
            if req == _STREAM_POLL:
                return arg & (_POLLOUT | (_POLLIN if BROKER.out else 0))
            return 0

        def close(self):
            pass

    mod = _Module()
    mod.socket = Socket
    mod.getaddrinfo = lambda host, port, *a: [(2, 1, 0, "", ("127.0.0.1", port))]
    mod.AF_INET, mod.SOCK_STREAM, mod.SOL_SOCKET, mod.SO_REUSEADDR = 2, 1, 1, 2
    mod.IPPROTO_TCP, mod.TCP_NODELAY = 6, 1
    return mod


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

    mod = _Module()
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


