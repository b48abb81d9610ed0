"""The MQTT link: umqtt.simple over a socket that never blocks the loop, with reconnect and keep-alive.

Connecting never waits on the network inside a call. The TCP connect is non-blocking; the TLS
handshake runs inside the first writes (wrap_socket with do_handshake_on_connect=False on the
non-blocking socket, as extmod/asyncio/stream.py's open_connection does). umqtt.simple's own
connect() and subscribe() write their packets into the PacketSocket while it holds writes (umqtt's
`socket` module name points at it) and stop where they would read a reply; the link sends them and
awaits CONNACK and SUBACK itself, checked against the MQTT 3.1.1 spec, every wait against a
deadline. Only what every release since 1.3 shares is used (the first six constructor arguments,
connect(clean_session), subscribe(topic, qos), publish, ping, wait_msg; 1.4.0 dropped ssl_params,
1.5.0's connect() sets a timeout on its socket: toolchain.md §6), so whichever umqtt.simple is
imported works. PacketSocket gathers each incoming packet before umqtt reads it, so no umqtt read
waits on the network either. A broker's host name is resolved once, off the loop (dns).

Requests are subscribed at QoS 1 in a persistent session (clean session off, the stable client id), so
the broker keeps what EVerest sends (at QoS 2) while the link is down. Not QoS 2: umqtt.simple has no
QoS 2 receive path (wait_msg asserts). umqtt acknowledges a QoS 1 message after the callback returns, so
a request lost with the link before that is delivered again.

Every error turns into one idempotent _down(); run() brings the link back with capped, jittered
backoff, so the link is in use again within 2 s of the broker's return.
"""

import asyncio
import gc
import random
import socket
import sys
import time

import umqtt.simple
from micropython import const
from umqtt.simple import MQTTClient, MQTTException

from .log import DEBUG, INFO, WARN, log
from .mqtt_socket import PacketSocket, wait_io

_BACKOFF_MIN_MS = const(200)
_BACKOFF_MAX_MS = const(1200)  # plus up to 25 % jitter: an attempt starts at most 1.5 s after the last one did
_IDLE_MS = const(500)  # longest sleep while nothing arrives: pings and the supervisor's beat
_BURST = const(16)  # packets taken per look before other tasks get a turn
_TCP_MS = const(1000)  # a TCP connect not answered by then is given up (a host that is down)
_HANDSHAKE_MS = const(10000)  # TLS, CONNACK and SUBACK, from the TCP connect on
# CONNACK return codes 1..5, MQTT 3.1.1 section 3.2.2.3
_REFUSED = const("?|bad protocol|client id refused|unavailable|bad user or password|not authorised")


class MqttLink:
    """One broker connection with a retained online/offline status topic."""

    def __init__(self, broker, subscriptions, on_message, on_connect, rx, live=()):
        b = self._broker = broker
        self._subs = subscriptions
        self._live = live  # of the subscriptions, those taken at QoS 0 (the broker keeps none of them for us)
        self._on_message = on_message
        self._on_connect = on_connect
        self.status_topic = ("meterbridge/%s/status" % b["client_id"]).encode()
        # CONNECT and the SUBSCRIBEs are held in rx until the handshake sends them (MQTT 3.1.1, 3.1 and 3.8:
        # at most 5 bytes of fixed header, a 10-byte variable header, 2 length bytes per string, 2 of packet id
        # and 1 of QoS per topic): a buffer sized for a request's head alone is too small for many meters
        held = 5 + 10 + 5 * 2 + len(b["client_id"]) + len(self.status_topic) + len(b"offline")
        held += len((b["username"] or "").encode()) + len((b["password"] or "").encode())
        for t in subscriptions:
            held += 8 + len(t)
        if len(rx) < held:
            rx = bytearray(held)
        self.up = False
        self.connects = 0
        self.refused = 0  # messages refused for their size; on_message gets only their head
        # the socket is made now, while the heap is in one piece, and serves every connection
        # incoming payloads up to len(rx) bytes are read into rx (made at start-up); the head buffer takes the
        # fixed header, topic and packet id
        self._sock = PacketSocket(bytearray(max(len(t) for t in subscriptions) + 16), rx)
        self._client = None
        self._delivering = False
        self._fault = None  # a publish that failed inside a delivery: raised once umqtt's callback returns
        self._addr = None  # the broker's address, resolved once
        self._last_ping = 0
        self._beat = None
        self._tls = None
        if b["tls"] is not None:
            from . import tls

            self._tls = tls.context(b["tls"])
        try:  # tools/fetch_umqtt.py writes umqtt/pinned.py beside the pinned one; a frozen or other has none
            from umqtt import pinned

            version = pinned.VERSION
            sys.modules.pop(pinned.__name__)  # read once
            del umqtt.pinned
        except ImportError:
            version = None
        log(INFO if version else WARN, "umqtt.simple", version or "not pinned", "from", umqtt.simple.__file__)

    def _deliver(self, topic, msg):
        sock = self._sock
        oversize = sock.refused
        if oversize:
            self.refused += 1
            sock.refused = 0
        self._delivering = True
        try:
            self._on_message(topic, msg, oversize, sock.head[0] & 1)  # the fixed header's retain flag
        finally:
            self._delivering = False
        e = self._fault
        if e:
            self._fault = None
            raise e  # out of umqtt before it acknowledges: the broker delivers the message again

    async def _wait(self, write, deadline, idle=False):
        """Until the socket is writable (or holds a whole packet); past deadline OSError(ETIMEDOUT), or
        when idle a plain return. The asyncio poller wakes us; beat() every _IDLE_MS meanwhile."""
        sock = self._sock
        while write or not sock.pull():
            left = time.ticks_diff(deadline, time.ticks_ms())
            if left <= 0:
                if idle:
                    return
                raise OSError(110)  # ETIMEDOUT
            try:
                await asyncio.wait_for_ms(wait_io(sock.stream, write), min(left, _IDLE_MS))
                if write:
                    return
            except asyncio.TimeoutError:
                self._beat()

    async def _connect(self):
        """TCP, TLS, CONNECT/CONNACK, SUBSCRIBE/SUBACK, every wait awaited against a deadline."""
        b, sock = self._broker, self._sock
        head = sock.head
        # the client first, before any wait: at start-up the heap has not yet been cut up by the poll cycles
        c = self._client = MQTTClient(b["client_id"], b["host"], b["port"], b["username"], b["password"],
                                      b["keepalive"])
        c.set_callback(self._deliver)
        c.set_last_will(self.status_topic, b"offline", retain=True)
        if self._addr is None:  # resolved once; a numeric address is parsed, with no DNS query
            host = b["host"]
            if host.count(".") == 3 and host.replace(".", "").isdigit():
                self._addr = socket.getaddrinfo(host, b["port"])[0][-1]
            else:
                from .dns import address  # a name: looked up off the loop

                self._addr = await address(host, b["port"], self._beat)
        raw = socket.socket()
        sock.stream = raw
        sock.last_rx = time.ticks_ms()
        raw.setblocking(False)
        try:
            raw.connect(self._addr)
        except OSError as e:
            if e.errno not in (115, 119):  # EINPROGRESS (Linux, lwIP): under way
                raise
        try:
            await self._wait(True, time.ticks_add(time.ticks_ms(), _TCP_MS))  # connected, or refused (a write raises)
        except OSError as e:
            if e.errno == 110:  # no SYN-ACK: said apart from a broker that connects but stays silent (also 110)
                raise OSError(110, "no TCP answer within %d ms: host down or unreachable" % _TCP_MS) from None
            raise
        deadline = time.ticks_add(time.ticks_ms(), _HANDSHAKE_MS)
        try:
            raw.setsockopt(6, 1, 1)  # IPPROTO_TCP, TCP_NODELAY (Linux, lwIP): umqtt writes a packet in pieces
        except OSError:
            pass  # not every stack has it
        if self._tls:
            sock.stream = self._tls.wrap_socket(raw, server_hostname=b["host"], do_handshake_on_connect=False)
        # umqtt writes CONNECT and a SUBSCRIBE per topic into the held buffer and stops where it reads the reply
        umqtt.simple.socket = sock  # connect() takes its socket from there: ours, connected
        for topic in [None] + self._subs:
            try:
                # clean session off; QoS 1 but for the live topics
                c.connect(False) if topic is None else c.subscribe(topic, 0 if topic in self._live else 1)
            except OSError as e:
                if e.errno != 11:  # EAGAIN: PacketSocket.read() while writes are held
                    raise
        mv = sock.held()
        while mv:
            k = sock.stream.write(mv)  # the TLS handshake runs in these writes
            if k:
                mv = mv[k:]
            else:
                await self._wait(True, deadline)
        await self._wait(False, deadline)
        if head[0] != 0x20 or head[1] != 2:  # CONNACK (3.2)
            raise ValueError("not MQTT: %r" % bytes(head[:4]))
        k = head[3]
        if k:
            raise MQTTException(_REFUSED.split("|")[k if k <= 5 else 0])  # the broker refused us
        self.up = True  # publish() works from here: replies to requests kept in our session go out
        k = len(self._subs)
        while k:
            await self._wait(False, deadline)
            if head[0] != 0x90:
                c.wait_msg()  # a request the broker kept for our session may come before the SUBACKs
                continue
            # SUBACK (3.9): one of our packet ids (umqtt counts them from 1), then the granted QoS or 0x80
            if head[1] != 3 or not 0 < head[2] << 8 | head[3] <= len(self._subs) or head[4] > 2:
                raise MQTTException("SUBACK %r" % bytes(head[:5]))  # refused, or not ours
            k -= 1
        c.publish(self.status_topic, b"online", retain=True)
        self._last_ping = time.ticks_ms()
        self.connects += 1
        log(INFO, "mqtt connected to %s:%d%s" % (b["host"], b["port"], " (TLS)" if self._tls else ""))
        self._on_connect()

    def _down(self, why):
        if self.up:
            log(WARN, "mqtt link down:", repr(why))
        self.up = False
        self._client = umqtt.simple.socket = None
        stream = self._sock.stream
        if stream:
            self._sock.stream = None
            try:
                stream.close()
            except OSError:
                pass
        gc.collect()

    def publish(self, topic, msg, retain=False):
        """Send a QoS 0 message; False when the link is down (the caller drops it, never queues)."""
        if not self.up:
            return False
        try:
            self._client.publish(topic, msg, retain)
        except Exception as e:  # noqa: BLE001 - a broken stream, bytes that are not MQTT, umqtt's asserts
            if self._delivering:  # umqtt still reads the packet: close the socket once the callback returns
                self._fault = e
            else:
                self._down(e)
            return False
        return True

    def _service(self):
        """Hand umqtt the packets already in; ping and check the broker is alive."""
        c = self._client
        sock = self._sock
        for _ in range(_BURST):
            if not sock.pull():
                break
            c.wait_msg()
            if not self.up:
                return
        now = time.ticks_ms()
        half = self._broker["keepalive"] * 500
        quiet = time.ticks_diff(now, sock.last_rx)
        if quiet > 3 * half:
            raise OSError("no traffic from the broker for %d ms" % quiet)
        if time.ticks_diff(now, self._last_ping) > half:
            c.ping()  # its PINGRESP refreshes last_rx, and the broker sees us alive
            self._last_ping = now

    async def run(self, beat):
        """Keep the link up and deliver incoming messages, forever; beat() after each turn."""
        self._beat = beat
        backoff = _BACKOFF_MIN_MS
        while True:
            beat()
            if not self.up:
                began = time.ticks_ms()
                try:
                    await self._connect()
                    backoff = _BACKOFF_MIN_MS
                except Exception as e:  # noqa: BLE001 - a broken stream, bytes that are not MQTT, umqtt's asserts
                    # the first failure in a row is a warning, the retries every 1.5 s are not news
                    log(WARN if backoff == _BACKOFF_MIN_MS else DEBUG, "mqtt connect failed:", repr(e))
                    self._down(e)
                    pause = backoff + random.getrandbits(16) % (backoff // 4 + 1)  # from this attempt's start
                    await asyncio.sleep_ms(max(pause - time.ticks_diff(time.ticks_ms(), began), 0))
                    backoff = min(2 * backoff, _BACKOFF_MAX_MS)
                continue
            try:
                self._service()
                if self.up:
                    await self._wait(False, time.ticks_add(time.ticks_ms(), _IDLE_MS), True)
            except Exception as e:  # noqa: BLE001 - a broken stream, bytes that are not MQTT, umqtt's asserts
                self._down(e)
