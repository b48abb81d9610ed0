"""The socket umqtt.simple talks through: every wait bounded, DNS resolved once, oversized input refused.

umqtt.simple makes its own socket from its module-level `socket`, switches it to blocking for the
rest of a packet once the first byte is in, and reads a whole message into RAM. SocketFactory stands
in for that module name, so every socket starts with a timeout; BoundedSocket turns "blocking" into
"blocking for at most timeout", remembers when bytes last arrived (liveness without PINGRESP hooks)
and drains, instead of allocating, any read larger than the cap.
"""

import socket
import time

from micropython import const

_DRAIN = const(128)


class BoundedSocket:
    """A stream with bounded blocking reads and writes and a size cap on single reads."""

    def __init__(self, stream, raw, timeout_s, cap):
        self._stream = stream  # what carries the bytes: the socket or its TLS wrapper
        self._raw = raw  # the TCP socket, where timeouts are set
        self._timeout = timeout_s
        self._cap = cap
        self._scratch = bytearray(_DRAIN)
        self.refused = 0  # size of the last read refused for its size, until the caller clears it
        self.last_rx = time.ticks_ms()

    def read(self, n):
        if n > self._cap:
            self._drain(n)
            self.refused = n
            return b""
        data = self._stream.read(n)
        if data:
            self.last_rx = time.ticks_ms()
        return data

    def _drain(self, n):
        mv = memoryview(self._scratch)
        while n:
            got = self._stream.readinto(mv[: min(n, _DRAIN)])
            if not got:
                raise OSError(-1)  # the peer closed in the middle of a message
            n -= got
        self.last_rx = time.ticks_ms()

    def write(self, buf, n=None):
        return self._stream.write(buf if n is None else memoryview(buf)[:n])

    def setblocking(self, flag):
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
