"""The socket the bench stubs on both ports: a TCP connection to an in-memory MQTT broker.

On a board the socket module is C, so this stub's own heap is not the firmware's: bench/wasm/board.py
loads it before it measures the base. The broker answers CONNECT, SUBSCRIBE, PUBLISH (QoS 1) and PINGREQ,
counts what arrives and sends what the driver asks it to.
"""

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


class Module:
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

    mod = Module()
    mod.socket = Socket
    mod.getaddrinfo = lambda host, port, *a: [(2, 1, 0, "", ("127.0.0.1", port))]
    mod.AF_INET, mod.SOCK_STREAM, mod.SOL_SOCKET, mod.SO_REUSEADDR = 2, 1, 1, 2
    mod.IPPROTO_TCP, mod.TCP_NODELAY = 6, 1
    return mod


