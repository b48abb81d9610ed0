"""The MQTT link: umqtt.simple's MQTTClient plus what it lacks — reconnect, keep-alive, resubscribe.

Requests are subscribed at QoS 1 in a persistent session (clean session off, the stable client id), so
the broker keeps what EVerest sends (at QoS 2) while the link is down. Not QoS 2: umqtt.simple has no
QoS 2 receive path (wait_msg asserts). umqtt acknowledges a QoS 1 message after the callback returns, so
a request lost with the link before that is delivered again.

umqtt.simple stays a plain protocol object; every error it raises is trapped here and turns into
one idempotent _down(). run() is the one task that brings the link back, with capped, jittered
backoff so the link is in use again within 2 s of the broker's return.
"""

import asyncio
import gc
import random
import time
from asyncio import core

import umqtt.simple
from micropython import const
from umqtt.simple import MQTTClient, MQTTException

from .log import DEBUG, INFO, WARN, log
from .mqtt_socket import BoundedSocket, SocketFactory

_BACKOFF_MIN_MS = const(200)
_BACKOFF_MAX_MS = const(1600)  # plus up to 25 % jitter: at most 2 s between attempts
_IDLE_MS = const(500)  # longest sleep while nothing arrives: pings and the supervisor's beat
_BURST = const(16)  # messages taken per look before other tasks get a turn
_SOCKET_TIMEOUT_S = const(2)  # the longest any single socket operation may block
_IPPROTO_TCP = const(6)  # Linux and lwIP values; the unix port's socket module lacks the names
_TCP_NODELAY = const(1)
_ERRORS = (OSError, MQTTException, IndexError, ValueError, MemoryError)  # what a broken stream raises in umqtt


async def _readable(sock):
    """Until sock has bytes to read: the asyncio poller wakes us, no busy polling.

    extmod/asyncio's streams wait the same way (stream.py); there is no public call for it.
    """
    yield core._io_queue.queue_read(sock)


class MqttLink:
    """One broker connection with a retained online/offline status topic."""

    def __init__(self, broker, subscriptions, on_message, on_connect, rx):
        self._broker = broker
        self._subs = subscriptions
        self._on_message = on_message
        self._on_connect = on_connect
        self._rx = rx  # incoming messages up to len(rx) bytes are read into it; made once, at start-up
        self.status_topic = ("meterbridge/%s/status" % broker["client_id"]).encode()
        self.up = False
        self.connects = 0
        self.refused = 0  # messages refused for their size; on_message gets only their head
        self.received = 0
        self._client = None
        self._sock = None
        self._delivering = False
        self._fault = None  # a publish that failed inside a delivery: raised once umqtt's callback returns
        self._last_ping = 0
        self._sockets = SocketFactory(_SOCKET_TIMEOUT_S)
        umqtt.simple.socket = self._sockets  # every socket umqtt makes is a bounded one
        self._tls = None
        if broker["tls"] is not None:
            from . import tls

            self._tls = tls.context(broker["tls"])

    def _deliver(self, topic, msg):
        self.received += 1
        sock = self._sock
        oversize = sock.refused
        if oversize:
            self.refused += 1
            sock.refused = 0
        if type(topic) is not bytes:
            topic = bytes(topic)  # a topic longer than BoundedSocket's small reads
        self._delivering = True
        try:
            self._on_message(topic, msg, oversize, sock.head & 1)
        finally:
            self._delivering = False
        e = self._fault
        if e:
            self._fault = None
            raise e  # out of umqtt before it acknowledges: the broker delivers the message again

    def _connect(self):
        b = self._broker
        tls = self._tls
        c = MQTTClient(b["client_id"], b["host"], b["port"], b["username"], b["password"], b["keepalive"],
                       ssl=tls or False, ssl_params={"server_hostname": b["host"]} if tls else {})
        c.set_callback(self._deliver)
        c.set_last_will(self.status_topic, b"offline", retain=True)
        self._client = c
        c.connect(False)  # a persistent session: the broker queues QoS 1 requests while we are away
        raw = self._sockets.raw
        try:
            raw.setsockopt(_IPPROTO_TCP, _TCP_NODELAY, 1)  # umqtt writes one packet in several pieces
        except OSError:
            pass  # not every stack has it
        self._sock = c.sock = BoundedSocket(c.sock, raw, _SOCKET_TIMEOUT_S, self._rx)
        self.up = True  # the requests the broker kept for us arrive while we subscribe: answer them at once
        for topic in self._subs:
            c.subscribe(topic, 1)
        c.publish(self.status_topic, b"online", retain=True)
        self._last_ping = time.ticks_ms()
        self.connects += 1
        log(INFO, "mqtt connected to %s:%d%s" % (b["host"], b["port"], " (TLS)" if tls else ""))
        self._on_connect()

    def _down(self, why):
        if self.up:
            log(WARN, "mqtt link down:", repr(why))
        self.up = False
        c = self._client
        if c and c.sock:
            try:
                c.sock.close()
            except OSError:
                pass
            c.sock = None
        self._client = self._sock = None
        gc.collect()

    def publish(self, topic, msg, retain=False):
        """Send a QoS 0 message; False when the link is down (the caller drops it, never queues)."""
        if not self.up:
            return False
        try:
            self._client.publish(topic, msg, retain)
        except _ERRORS as e:
            if self._delivering:  # umqtt still reads from the socket: close it once the callback returns
                self._fault = e
            else:
                self._down(e)
            return False
        return True

    def _service(self):
        c = self._client
        for _ in range(_BURST):
            seen = self.received
            c.check_msg()
            if not self.up or self.received == seen:
                break
        now = time.ticks_ms()
        half = self._broker["keepalive"] * 500
        quiet = time.ticks_diff(now, self._sock.last_rx)
        if quiet > 3 * half:
            raise OSError("no traffic from the broker for %d ms" % quiet)
        if time.ticks_diff(now, self._last_ping) > half:
            c.ping()  # its PINGRESP refreshes last_rx, and the broker sees us alive
            self._last_ping = now

    async def run(self, beat):
        """Keep the link up and deliver incoming messages, forever; beat() after each turn."""
        backoff = _BACKOFF_MIN_MS
        while True:
            beat()
            if not self.up:
                try:
                    self._connect()
                    backoff = _BACKOFF_MIN_MS
                except _ERRORS as e:
                    # the first failure in a row is a warning, the retries every 2 s are not news
                    log(WARN if backoff == _BACKOFF_MIN_MS else DEBUG, "mqtt connect failed:", repr(e))
                    self._down(e)
                    await asyncio.sleep_ms(backoff + random.getrandbits(16) % (backoff // 4 + 1))
                    backoff = min(2 * backoff, _BACKOFF_MAX_MS)
                continue
            try:
                self._service()
            except _ERRORS as e:
                self._down(e)
                continue
            try:
                await asyncio.wait_for_ms(_readable(self._sockets.raw), _IDLE_MS)
            except asyncio.TimeoutError:
                pass
