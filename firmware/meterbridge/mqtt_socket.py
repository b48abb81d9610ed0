"""The socket umqtt.simple talks through: every wait bounded, DNS resolved once, no big allocations.

umqtt.simple makes its own socket from its module-level `socket`, switches it to blocking for the
rest of a packet once the first byte is in, and reads a whole message with one read(n). SocketFactory
stands in for that module name, so every socket starts with a timeout. BoundedSocket turns
"blocking" into "blocking for at most timeout", remembers when bytes last arrived (liveness without
PINGRESP hooks), drains any read larger than the cap, and serves large reads from one preallocated
buffer as a memoryview — valid until the next read — so a fragmented heap never has to find room
for a message.
"""

import socket
import time

from micropython import const

_SMALL = const(160)  # reads up to this size (headers, topics) are ordinary bytes
_TAIL = const(128)  # the part of the buffer an oversized message's body is drained through


class BoundedSocket:
    """A stream with bounded blocking reads and writes and a size cap on single reads."""

    def __init__(self, stream, raw, timeout_s, buf):
        self._stream = stream  # what carries the bytes: the socket or its TLS wrapper
        self._raw = raw  # the TCP socket, where timeouts are set
        self._timeout = timeout_s
        self._cap = len(buf)
        self._mv = memoryview(buf)  # owned by the link, reused across connections
        self.refused = 0  # size of the last read refused for its size, until the caller clears it
        self.last_rx = time.ticks_ms()
        self._byte = 0  # the last single byte read
        self.head = 0  # the fixed-header byte of the packet being read (retain flag, QoS)

    def read(self, n):
        if n > self._cap:
            self.refused = n
            return self._drain(n)
        if n <= _SMALL:
            data = self._stream.read(n)
            if data:
                self.last_rx = time.ticks_ms()
                if n == 1:
                    self._byte = data[0]
            return data
        got = 0
        while got < n:
            k = self._stream.readinto(self._mv[got:n])
            if not k:
                raise OSError(-1)  # the peer closed in the middle of a message
            got += k
        self.last_rx = time.ticks_ms()
        return self._mv[:n]

    def _drain(self, n):
        """Read n bytes, keeping the head (where replyTo is) and discarding the rest; return the head."""
        keep = self._cap - _TAIL
        mv = self._mv
        got = 0
        while got < n:
            at = got if got < keep else keep
            k = self._stream.readinto(mv[at : min(self._cap, at + n - got)])
            if not k:
                raise OSError(-1)  # the peer closed in the middle of a message
            got += k
        self.last_rx = time.ticks_ms()
        return mv[:keep]

    def write(self, buf, n=None):
        return self._stream.write(buf if n is None else memoryview(buf)[:n])

    def setblocking(self, flag):
        # umqtt.simple's wait_msg (1.3.4 and 1.8.0) reads the packet's first byte, then asks for blocking:
        # that byte is the fixed header, which umqtt does not pass to the callback
        if flag:
            self.head = self._byte
        self._raw.settimeout(self._timeout if flag else 0)

    def setsockopt(self, *args):
        self._raw.setsockopt(*args)

    def close(self):
        self._stream.close()


class SocketFactory:
    """Stands in for umqtt.simple's `socket` module: timed sockets and cached DNS."""

    def __init__(self, timeout_s):
        self._timeout = timeout_s
        self._dns = {}
        self.raw = None  # the last socket made, for BoundedSocket

    def socket(self, *args):
        s = socket.socket(*args)
        s.settimeout(self._timeout)
        self.raw = s
        return s

    def getaddrinfo(self, host, port, *args):
        key = (host, port)
        if key not in self._dns:
            self._dns[key] = socket.getaddrinfo(host, port, *args)  # once: an outage never waits on DNS
        return self._dns[key]
