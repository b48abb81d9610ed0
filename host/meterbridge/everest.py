"""The EVerest side of the powermeter API over MQTT, behaving like EVerest's powermeter_API module.

As EVerest at aa8113f9 does it: everything sent to the module is published at QoS 2, not retained
(lib/everest/framework/lib/everest.cpp, external_mqtt_publish); requests are compact JSON
(json::dump()); on (re)start the heartbeat counts from 0 again and an API module publishes
`{prefix}everest_api/ready_beacon` with payload `{}` (everest_api_module_helpers/src/ApiHelper.cpp).
"""

import collections
import dataclasses
import decimal
import functools
import json
import threading
import time
import uuid

import paho.mqtt.client as mqtt

API = "everest_api/1/powermeter/"
READY_BEACON = "everest_api/ready_beacon"
QOS = 2  # what EVerest publishes its e2m messages with


def _reject_constant(name):
    """Refuse NaN and Infinity: EVerest's JSON parser does not accept them."""
    raise ValueError(f"{name} is not JSON")


def dump(obj):
    """Compact UTF-8 JSON, as EVerest's json::dump() writes it."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


@dataclasses.dataclass(frozen=True)
class Message:
    """One message received on m2e/<topic>: its sequence number, raw bytes and receive time (time.time())."""

    seq: int
    topic: str
    raw: bytes
    received: float

    @functools.cached_property
    def value(self):
        """The parsed payload, floats as Decimal; raises ValueError when it is not JSON."""
        return json.loads(self.raw, parse_float=decimal.Decimal, parse_constant=_reject_constant)


class EverestClient:
    """EVerest for one powermeter module: records what arrives on m2e/#, sends requests and heartbeats."""

    def __init__(self, host, port, module_id, prefix="", keep=10000):
        self.host, self.port = host, port
        self.base = f"{API}{module_id}/"
        self.prefix = prefix
        self._log = collections.deque(maxlen=keep)
        self._seq = 0
        self._cond = threading.Condition()
        self._ready = threading.Event()
        self._refused = None
        self._heartbeat = None
        self.last_reply = None
        client_id = f"everest-{uuid.uuid4().hex[:12]}"
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = lambda *_: self._ready.set()
        self._client.on_message = self._on_message

    def __enter__(self):
        self.connect()
        return self

    def __exit__(self, *exc):
        self.close()

    def connect(self, timeout=5.0):
        """Connect, subscribe to m2e/# and wait for the broker to confirm; raise OSError or TimeoutError."""
        self._client.connect(self.host, self.port, keepalive=30)
        self._client.loop_start()
        if not self._ready.wait(timeout) or self._refused:
            self._client.loop_stop()
            reason = f"refused: {self._refused}" if self._refused else f"no answer within {timeout:g} s"
            raise TimeoutError(f"MQTT broker {self.host}:{self.port} {reason}")

    def close(self):
        """Stop the heartbeat and disconnect."""
        self.stop_heartbeat()
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        """Subscribe on every (re)connect; remember a refusal for connect()."""
        if reason_code.is_failure:
            self._refused = str(reason_code)
            self._ready.set()
        else:
            client.subscribe(self.prefix + self.base + "m2e/#")

    def _on_message(self, client, userdata, msg):
        """Record an m2e message under its topic suffix and wake the waiters."""
        topic = msg.topic[len(self.prefix + self.base + "m2e/") :]
        with self._cond:
            self._log.append(Message(self._seq, topic, bytes(msg.payload), time.time()))
            self._seq += 1
            self._cond.notify_all()

    def mark(self):
        """The sequence number the next received message will get (a `start` for wait_for)."""
        with self._cond:
            return self._seq

    def messages(self, topic_suffix=None):
        """The kept messages on m2e/<topic_suffix> (all when None), oldest first."""
        with self._cond:
            return [m for m in self._log if topic_suffix in (None, m.topic)]

    def wait_for(self, topic_suffix, predicate=None, timeout=5.0, start=0):
        """The first message from seq `start` on m2e/<topic_suffix> (None: any) with predicate(msg) true."""

        def find():
            return next(
                (
                    m
                    for m in self._log
                    if m.seq >= start
                    and topic_suffix in (None, m.topic)
                    and (predicate is None or predicate(m))
                ),
                None,
            )

        with self._cond:
            found = self._cond.wait_for(find, timeout)
        if found is None:
            raise TimeoutError(f"no matching message on m2e/{topic_suffix or '#'} within {timeout:g} s")
        return found

    def publish_raw(self, var, data, retain=False, qos=QOS):
        """Publish bytes as they are to e2m/<var> (QoS 2, not retained, as EVerest does)."""
        self._publish(self.prefix + self.base + "e2m/" + var, data, retain, qos)

    def _publish(self, topic, data, retain=False, qos=QOS):
        info = self._client.publish(topic, data, qos=qos, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise ConnectionError(f"publish to {topic}: {mqtt.error_string(info.rc)}")

    def ready_beacon(self):
        """What an EVerest API module publishes once it is up: `{}` on {prefix}everest_api/ready_beacon."""
        self._publish(self.prefix + READY_BEACON, b"{}")

    def request(self, var, payload, timeout=5.0, reply=True):
        """Send an EVerest request envelope to e2m/<var>; return the reply's value (message in last_reply)."""
        if not reply:
            self.publish_raw(var, dump({"payload": payload}))
            return None
        suffix = f"reply/{uuid.uuid4()}"
        # replyTo carries no external prefix: the module prepends its own (EVerest's Topics.cpp).
        self.publish_raw(var, dump({"headers": {"replyTo": self.base + "m2e/" + suffix}, "payload": payload}))
        self.last_reply = self.wait_for(suffix, timeout=timeout)
        return self.last_reply.value

    def start_transaction(self, transaction_id, timeout=5.0, reply=True, **fields):
        """Request start_transaction with the fields EvseManager fills in, overridden by `fields`."""
        payload = {
            "evse_id": "1",
            "transaction_id": transaction_id,
            "identification_status": "ASSIGNED",
            "identification_flags": [],
            "identification_type": "NONE",
            "identification_data": "",
        }
        return self.request("start_transaction", {**payload, **fields}, timeout, reply)

    def stop_transaction(self, transaction_id, form="string", timeout=5.0, reply=True):
        """Request stop_transaction as EVerest's code does ("string") or as the YAML says ("object")."""
        forms = {"string": transaction_id, "object": {"transaction_id": transaction_id}}
        if form not in forms:
            raise ValueError(f"stop form {form!r} is not one of {sorted(forms)}")
        return self.request("stop_transaction", forms[form], timeout, reply)

    def start_heartbeat(self, interval=1.0):
        """Publish e2m/heartbeat like EVerest: an integer counting from 0, one every `interval` seconds."""
        self.stop_heartbeat()
        stop = threading.Event()
        thread = threading.Thread(target=self._beat, args=(stop, interval), name="heartbeat", daemon=True)
        self._heartbeat = (stop, thread)
        thread.start()

    def stop_heartbeat(self):
        """Stop sending heartbeats (no-op when none are sent)."""
        if self._heartbeat:
            stop, thread = self._heartbeat
            stop.set()
            thread.join()
            self._heartbeat = None

    def _beat(self, stop, interval):
        """The heartbeat thread: publish the count on schedule until stop is set."""
        count, due = 0, time.monotonic()
        while not stop.wait(max(0.0, due - time.monotonic())):
            # A heartbeat published while the broker is away is lost, but the count goes on.
            self._client.publish(self.prefix + self.base + "e2m/heartbeat", str(count), qos=QOS)
            count += 1
            due += interval
