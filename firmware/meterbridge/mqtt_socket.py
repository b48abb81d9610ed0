"""The socket umqtt.simple talks through: whole packets gathered without blocking, then served from RAM.

umqtt.simple reads a packet with several blocking reads once its first byte is in. Here the link
first gathers a whole packet with non-blocking reads (pull(), awaiting the socket in between with
wait_io()), and only then lets umqtt read it: no umqtt read ever waits on the network. A PUBLISH
body larger than the message buffer keeps its head (where replyTo is) and the rest is read and
dropped as it arrives. Writes go out non-blocking; one that finds no room in the send buffer for
_WRITE_MS raises. Bytes that cannot be MQTT (a packet type a server never sends, a length past
the buffers) raise ValueError: the link reconnects. Made once, at start-up, and reused by every
connection, so connecting allocates little.
"""

import select
import time
from asyncio import core

from micropython import const

_SMALL = const(160)  # message bodies up to this size are served as bytes, larger ones as a memoryview
_TAIL = const(128)  # the part of the buffer an oversized message's body is drained through
_WRITE_MS = const(300)  # longest wait for room in the send buffer (a broker that stopped reading)
_UNSENT = const(11)  # EAGAIN: read()'s errno while writes are held (umqtt wants the reply to a held packet)
# packet types a server sends (MQTT 3.1.1, 2.2.1): CONNACK PUBLISH PUBACK PUBREC PUBREL PUBCOMP SUBACK UNSUBACK PINGRESP
_FROM_SERVER = const(0x2AFC)
# what pull() is reading: the fixed header, a PUBLISH's topic length, its topic (and packet id), its
# payload, the rest of an oversized payload, the rest of any other packet; or a whole packet is in
_FIXED = const(0)
_LEN = const(1)
_TOPIC_LEN = const(2)
_TOPIC = const(3)
_BODY = const(4)
_DRAIN = const(5)
_REST = const(6)
_DONE = const(7)
_HELD = const(8)  # from connect() to held(): writes go into the body buffer, unsent (_at bytes so far)


def wait_io(stream, write):
    """Until stream is writable (or readable): the asyncio poller wakes us (as extmod/asyncio/stream.py)."""
    yield (core._io_queue.queue_write if write else core._io_queue.queue_read)(stream)


class PacketSocket:
    """A broker connection's stream: packets gathered without blocking, served to umqtt.simple's reads."""

    def __init__(self, head, body):
        self.head = memoryview(head)  # fixed header, and a PUBLISH's topic and packet id, or any other packet
        self.body = memoryview(body)  # a PUBLISH's payload
        self.stream = None  # the TCP socket, or its TLS wrapper
        self.refused = 0  # size of a payload refused for its size (its head is kept), until the caller clears it
        self.last_rx = 0
        # every attribute is made here, at start-up, so connecting never grows the instance's table
        self._stage = self._pos = self._hlen = self._at = self._want = self._left = 0

    def held(self):
        """The writes kept since connect(); the socket reads from now on."""
        self._stage = _DONE  # pull() begins the first packet; read() has nothing
        self._pos, self._hlen = 1, 0
        return self.body[: self._at]

    def pull(self):
        """Read what has arrived into the packet being gathered; True once it is whole (then it is served,
        and the next pull() after umqtt read it begins the next packet)."""
        head, body = self.head, self.body
        if self._stage == _DONE:
            if not self._pos:
                return True  # the packet gathered has not been read yet
            # begin the next packet
            self._stage = _FIXED
            self._at = 0  # where the next bytes go in the stage's buffer
            self._want = 2  # every packet has a type byte and at least one length byte
            self._pos = 0  # umqtt's read position
            self.refused = 0
        while True:
            stage = self._stage
            if self._want:
                buf = body if _BODY <= stage <= _DRAIN else head
                k = self.stream.readinto(buf[self._at : self._at + self._want])
                if k is None:
                    return False
                if not k:
                    raise OSError(-1)  # the peer closed
                self.last_rx = time.ticks_ms()
                self._at += k
                self._want -= k
                continue
            at = self._at  # the stage just read is complete: on to the next
            bad = False
            if stage <= _LEN:  # the remaining length, 7 bits a byte, at most 4 (MQTT 3.1.1, 2.2.3)
                more = head[at - 1] & 0x80
                if more and at < 5:
                    self._stage, self._want = _LEN, 1
                    continue
                bad = more or not (_FROM_SERVER >> (head[0] >> 4)) & 1
                n = 0
                for i in range(at - 1, 0, -1):
                    n = n << 7 | head[i] & 0x7F
                self._left = n  # bytes after the fixed header
                self._hlen = at  # the fixed header's, for now
                if head[0] >> 4 == 3:  # PUBLISH
                    self._stage, self._want = _TOPIC_LEN, 2
                else:
                    self._stage, self._want = _REST, n
                    bad = bad or at + n > len(head)
            elif stage == _TOPIC_LEN:
                n = (head[at - 2] << 8 | head[at - 1]) + (2 if head[0] & 6 else 0)  # topic, packet id at QoS > 0
                bad = at + n > len(head)  # longer than any topic subscribed
                self._stage, self._want = _TOPIC, n
            elif stage == _TOPIC:
                n = self._left - (at - self._hlen)  # the payload
                bad = n < 0
                self._hlen = at
                if n > len(body):
                    self.refused = n
                    keep = max(len(body) - _TAIL, 0)
                    self._left = n - keep  # to drain
                    n = keep
                self._stage, self._at, self._want = _BODY, 0, n
            elif self.refused and self._left and stage != _REST:  # more of an oversized payload to drain
                keep = max(len(body) - _TAIL, 0)
                self._stage, self._at = _DRAIN, keep
                self._want = min(len(body) - keep, self._left)
                self._left -= self._want
            else:
                if stage == _REST:
                    self._hlen = at
                self._stage = _DONE
                return True
            if bad:
                raise ValueError("not MQTT: %r" % bytes(head[:at]))

    def read(self, n):
        """umqtt.simple's read: None while no whole packet is gathered, else the packet's next n bytes."""
        if self._stage == _HELD:
            raise OSError(_UNSENT)
        if self._stage != _DONE:
            return None
        pos = self._pos
        if pos < self._hlen:
            self._pos = end = min(pos + n, self._hlen)
            return bytes(self.head[pos:end])
        if pos > self._hlen:
            return b""  # past the packet: umqtt raises for it
        self._pos += 1
        body = self.body
        if self.refused:
            return body[: max(len(body) - _TAIL, 0)]
        return bytes(body[:n]) if n <= _SMALL else body[:n]

    def write(self, buf, n=None):
        if n is not None:
            buf = memoryview(buf)[:n]
        if self._stage == _HELD:
            at = self._at
            self.body[at : at + len(buf)] = memoryview(buf)  # umqtt writes str too; ValueError past the buffer
            self._at = at + len(buf)
            return n
        k = self.stream.write(buf)  # all of it, unless the send buffer is full
        if k == len(buf):
            return k
        mv = memoryview(buf)[k or 0 :]
        deadline = time.ticks_add(time.ticks_ms(), _WRITE_MS)
        poll = select.poll()
        poll.register(self.stream, select.POLLOUT)
        while mv:
            left = time.ticks_diff(deadline, time.ticks_ms())
            if left <= 0:
                raise OSError(110)  # ETIMEDOUT
            poll.poll(left)
            k = self.stream.write(mv)
            if k:
                mv = mv[k:]
        return len(buf)

    def setblocking(self, *args):
        """Reads never block here, whatever umqtt asks; nor is there a timeout to set."""
        return self

    # umqtt.simple's connect() makes its socket with its module's socket() and getaddrinfo(), connects it
    # and (1.5.0 and later) sets its timeout: the link points that module name here, so connect() gets
    # this socket, already connected, and what it writes is held until held()
    socket = settimeout = setblocking

    def getaddrinfo(self, *args):
        return ((None,),)

    def connect(self, addr):
        """umqtt.simple is about to write CONNECT (and SUBSCRIBEs): keep them in the body buffer, unsent."""
        self._stage, self._at = _HELD, 0
