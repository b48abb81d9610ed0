"""Malformed EVerest requests (random bytes, wrong JSON types, deep nesting, huge strings, odd replyTo), and
meter replies that lie with a valid CRC (wrong byte count, wrong length, another slave or function)."""

import json
import random
import time

import paho.mqtt.client as mqtt

from conftest import wait_until
from restarts import Recorder
from rtu import crc16

BAD_REPLY_TOS = ["evil/topic", "everest_api/+/x", "everest_api/#", "#", "", None, 42, ["x"], {"a": 1},
                 "everest_api/" + "x" * 300, "/everest_api/x"]
_VALUES = [None, True, 0, -1, 1.5, 1e308, "", "x" * 50, [], {}, [1, [2, [3]]], {"transaction_id": 7}]


def _payload(rng):
    choice = rng.randrange(6)
    if choice == 0:
        return rng.choice(_VALUES)
    if choice == 1:
        keys = ["evse_id", "transaction_id", "identification_status", "identification_type",
                "identification_flags", "identification_data", "tariff_text", "unknown_field"]
        return {k: rng.choice(_VALUES) for k in rng.sample(keys, rng.randrange(1, 8))}
    if choice == 2:
        deep = "x"
        for _ in range(rng.randrange(10, 200)):
            deep = [deep] if rng.random() < 0.5 else {"k": deep}
        return deep
    if choice == 3:
        return {"transaction_id": "t" * rng.randrange(100, 3000)}
    if choice == 4:
        return f"t-{rng.randrange(1000)}"
    return {"evse_id": "1", "transaction_id": f"fz-{rng.randrange(1000)}",
            "identification_status": "ASSIGNED", "identification_flags": rng.choice([[], [1], "x"]),
            "identification_type": "NONE", "extra": [1] * 5}


def message(rng, good_reply_to):
    """(bytes, reply_to or None when no reply may be sent to it)."""
    kind = rng.randrange(5)
    if kind == 0:
        return bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 300))), None
    if kind == 1:
        reply_to = rng.choice(BAD_REPLY_TOS)
        return json.dumps({"headers": {"replyTo": reply_to}, "payload": _payload(rng)}).encode(), None
    if kind == 2:
        return json.dumps({"payload": _payload(rng)}).encode(), None
    if kind == 3:
        return json.dumps(rng.choice([[], "x", 5, None, {"headers": 5}, {"headers": {"replyTo": 5}}])).encode(), None
    body = json.dumps({"headers": {"replyTo": good_reply_to}, "payload": _payload(rng)}).encode()
    if rng.random() < 0.2:
        body = body[: rng.randrange(1, len(body))]  # cut short: not JSON, replyTo may survive
        if f'"{good_reply_to}"'.encode() not in body:
            return body, None
    return body, good_reply_to


def stream(seed, count, good_reply_to):
    rng = random.Random(seed)
    for i in range(count):
        yield message(rng, f"{good_reply_to}/{i}")


def storm(bridge, port, count, seed=7):
    """Publish count malformed requests at a running bridge; what it published back, and whether it lives."""
    rec = Recorder(port)
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    base = f"everest_api/1/powermeter/{bridge.module_id}/"
    answerable = set()
    try:
        for i, (body, reply_to) in enumerate(stream(seed, count, base + "m2e/reply/fz")):
            var = ("start_transaction", "stop_transaction", "heartbeat")[i % 3]
            pub.publish(base + "e2m/" + var, body).wait_for_publish(5)
            if reply_to and var != "heartbeat":
                answerable.add(reply_to)
            if i % 50 == 0:
                time.sleep(0.05)  # let the bridge's request queue (8 deep) drain now and then
        replies = lambda: set(rec.topics(base + "m2e/reply/fz"))  # noqa: E731
        wait_until(lambda: not bridge.alive() or len(replies()) >= len(answerable), 20)
        published = [t for t in rec.topics() if "/e2m/" not in t]
        return {
            "alive": bridge.alive(),
            "bad_topics": [t for t in published if not t.startswith((base + "m2e/", "meterbridge/"))],
            "answerable": len(answerable),
            "replies": len(replies()),
            "unexpected_replies": len(replies() - answerable),
        }
    finally:
        pub.loop_stop()
        rec.close()


def lying_replies(seed, count):
    """(read request, reply frame with a valid CRC, whether the reply is the well-formed answer to it)."""
    rng = random.Random(seed)
    for _ in range(count):
        slave, fc, n = rng.randrange(1, 248), rng.choice((3, 4)), rng.randrange(1, 126)
        request = bytes((slave, fc)) + rng.randrange(65536 - n).to_bytes(2, "big") + n.to_bytes(2, "big")
        data, count_byte, head = 2 * n, 2 * n, (slave, fc)
        lie = rng.randrange(5)
        if lie == 1:  # a register more or less, the byte count saying so
            data = count_byte = max(0, min(250, 2 * n + rng.choice((-2, -1, 1, 2))))
        elif lie == 2:  # the right length, another byte count
            count_byte = rng.choice([b for b in range(256) if b != 2 * n])
        elif lie == 3:  # any length at all, the byte count saying so
            data = count_byte = rng.randrange(251)
        elif lie == 4:  # another slave or function
            head = rng.choice(((slave % 247 + 1, fc), (slave, 7 - fc)))
        body = bytes((*head, count_byte)) + rng.randbytes(data)
        frame = body + crc16(body).to_bytes(2, "little")
        yield request, frame, head == (slave, fc) and count_byte == data == 2 * n
