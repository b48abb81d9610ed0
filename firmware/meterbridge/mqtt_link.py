"""The MQTT link: umqtt.simple's MQTTClient plus what it lacks — reconnect, keep-alive, resubscribe.

umqtt.simple stays a plain protocol object; every OSError it raises is trapped here and turns
into one idempotent _down(). The run() task brings the link back with capped backoff.
"""

import asyncio
import time

from micropython import const
from umqtt.simple import MQTTClient, MQTTException

from .log import INFO, WARN, log

_BACKOFF_MIN_MS = const(250)
_BACKOFF_MAX_MS = const(2000)  # the broker must be back in use within 2 s of its return
_SERVICE_MS = const(2)  # how often incoming messages are looked at
_BURST = const(16)  # messages taken per look before other tasks get a turn
_IPPROTO_TCP = const(6)  # Linux and lwIP values; the unix port's socket module lacks the names
_TCP_NODELAY = const(1)


class MqttLink:
    """One broker connection with a retained online/offline status topic."""

    def __init__(self, broker, subscriptions, on_message, on_connect):
        self._broker = broker
        self._subs = subscriptions
        self._on_message = on_message
        self._on_connect = on_connect
        self.status_topic = ("meterbridge/%s/status" % broker["client_id"]).encode()
        self.up = False
        self.connects = 0
        self._client = None
        self._last_tx = 0
        self.received = 0

    def _deliver(self, topic, msg):
        self.received += 1
        self._on_message(topic, msg)

    def _connect(self):
        b = self._broker
        c = MQTTClient(b["client_id"], b["host"], b["port"], b["username"], b["password"], b["keepalive"])
        c.set_callback(self._deliver)
        c.set_last_will(self.status_topic, b"offline", retain=True)
        self._client = c
        c.connect()
        try:
            c.sock.setsockopt(_IPPROTO_TCP, _TCP_NODELAY, 1)  # umqtt writes a packet in pieces
        except (OSError, AttributeError):
            pass  # not every socket has it
        for topic in self._subs:
            c.subscribe(topic)
        c.publish(self.status_topic, b"online", retain=True)
        self._last_tx = time.ticks_ms()
        self.up = True
        self.connects += 1
        log(INFO, "mqtt connected to %s:%d" % (b["host"], b["port"]))
        self._on_connect()

    def _down(self, why):
        if self.up:
            log(WARN, "mqtt link down:", why)
        self.up = False
        if self._client and self._client.sock:
            try:
                self._client.sock.close()
            except OSError:
                pass

    def publish(self, topic, msg):
        """Send a QoS 0 message; False when the link is down (the caller drops it, never queues)."""
        if not self.up:
            return False
        try:
            self._client.publish(topic, msg)
        except (OSError, MQTTException) as e:
            self._down(e)
            return False
        self._last_tx = time.ticks_ms()
        return True

    async def run(self):
        """Keep the link up and deliver incoming messages, forever."""
        backoff = _BACKOFF_MIN_MS
        while True:
            if not self.up:
                try:
                    self._connect()
                    backoff = _BACKOFF_MIN_MS
                except (OSError, MQTTException, IndexError) as e:
                    self._down(e)
                    await asyncio.sleep_ms(backoff)
                    backoff = min(2 * backoff, _BACKOFF_MAX_MS)
                continue
            try:
                for _ in range(_BURST):
                    seen = self.received
                    self._client.check_msg()
                    if self.received == seen:
                        break
                if time.ticks_diff(time.ticks_ms(), self._last_tx) > self._broker["keepalive"] * 500:
                    self._client.ping()
                    self._last_tx = time.ticks_ms()
            except (OSError, MQTTException, IndexError) as e:
                self._down(e)
            await asyncio.sleep_ms(_SERVICE_MS)
