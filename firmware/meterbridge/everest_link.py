"""EVerest's powermeter API on MQTT: topic names, request envelopes, reply routing and error replies.

Requests arrive as {"headers": {"replyTo": T}, "payload": P}; the reply is a bare JSON object
published to prefix + T. EVerest's stop_transaction payload is a bare string, the AsyncAPI YAML's an
object {"transaction_id": ...}: both are accepted. A request that cannot be understood still gets an
UNEXPECTED_ERROR reply when a usable replyTo can be found, because EVerest otherwise waits 550 s: parse raises
ValueError(reply_to, reason), reply_to being where to say so, or None (a ValueError rather than a class of its own:
one class fewer in RAM).
Field lengths are not limited here: EvseManager copies tariff_text unchecked (Charger.cpp), max_payload
bounds the whole request, and a signing meter cuts what its registers cannot hold.
"""

import json

from micropython import const

_API = const("everest_api/1/powermeter/")
_MAX_REPLY_TOPIC = const(200)
_ECHO = const(40)  # at most this much of a bad value is quoted back
_MAX_DEPTH = const(6)  # EVerest's requests nest 3 deep; deeper JSON is refused before it is parsed
START = const(1)
STOP = const(2)
HEARTBEAT = const(3)


def valid_reply_to(t):
    """Only EVerest reply topics: under everest_api/, no wildcards, bounded length, and only characters a
    broker accepts in a topic. mosquitto closes the connection of a client that publishes to a topic with
    U+0000, a surrogate, a control character (U+0001-U+001F, U+007F-U+009F) or a non-character
    (U+FDD0-U+FDEF, U+xFFFE, U+xFFFF): mosquitto lib/utf8_mosq.c, mosquitto_validate_utf8."""
    if not (isinstance(t, str) and t.startswith("everest_api/") and len(t) <= _MAX_REPLY_TOPIC):
        return False
    # the code points are decoded from the UTF-8 bytes: iterating the str would intern each distinct character
    # as a qstr, kept in RAM for good, so a stream of requests naming new characters would use up the heap
    b = t.encode()
    i = 0
    while i < len(b):
        c = b[i]
        k = 0 if c < 0x80 else 1 if c < 0xE0 else 2 if c < 0xF0 else 3  # continuation bytes that follow
        c &= 0xFF >> (k + 2) if k else 0x7F
        for j in range(i + 1, i + 1 + k):
            c = c << 6 | b[j] & 0x3F
        i += 1 + k
        if (c < 0x20 or 0x7F <= c <= 0x9F or 0xD800 <= c <= 0xDFFF or 0xFDD0 <= c <= 0xFDEF
                or c & 0xFFFE == 0xFFFE or c == 0x2B or c == 0x23):  # + #
            return False
    return True


class Topics:
    """The topics of one powermeter module, as bytes, built once."""

    def __init__(self, prefix, module_id):
        base = prefix + _API + module_id + "/"
        self.prefix = prefix
        self.values = (base + "m2e/powermeter_values").encode()
        self.check = (base + "m2e/communication_check").encode()
        self.public_key = (base + "m2e/public_key_ocmf").encode()
        self.requests = {
            (base + "e2m/start_transaction").encode(): START,
            (base + "e2m/stop_transaction").encode(): STOP,
            (base + "e2m/heartbeat").encode(): HEARTBEAT,
        }

    def reply(self, reply_to):
        return (self.prefix + reply_to).encode()


def _find(msg, pattern, start):
    """msg.find for a memoryview, which has no find."""
    first = pattern[0]
    n = len(pattern)
    for i in range(start, len(msg) - n + 1):
        if msg[i] == first and bytes(msg[i : i + n]) == pattern:
            return i
    return -1


def scan_reply_to(msg):
    """replyTo from a message that is not valid JSON, if one is plainly there."""
    i = _find(msg, b'"replyTo"', 0)
    if i < 0:
        return None
    i = _find(msg, b'"', _find(msg, b":", i) + 1)
    j = _find(msg, b'"', i + 1)
    if i < 0 or j < 0 or j - i > _MAX_REPLY_TOPIC:
        return None
    try:
        t = bytes(msg[i + 1 : j]).decode()
    except UnicodeError:
        return None
    return t if valid_reply_to(t) else None


def _deep_or_surrogate(msg):
    """(how deep [ and { nest outside strings, whether msg holds a surrogate), in one pass over its bytes.

    Parsing deep JSON would need RAM for every level. A surrogate, as a \\uD800-\\uDFFF escape or encoded
    (ED A0..BF), MicroPython's json turns into a string that is not UTF-8, which upsets the runtime later;
    EVerest never sends one.
    """
    depth = deepest = 0
    in_str = escaped = surrogate = False
    n = len(msg)
    for i in range(n):
        c = msg[i]
        if c == 0x5C and i + 3 < n and msg[i + 1] == 0x75 and msg[i + 2] in b"dD" and msg[i + 3] in b"89abAB":
            surrogate = True
        elif c == 0xED and i + 1 < n and msg[i + 1] >= 0xA0:
            surrogate = True
        if in_str:
            if escaped:
                escaped = False
            elif c == 0x5C:  # backslash
                escaped = True
            elif c == 0x22:
                in_str = False
        elif c == 0x22:
            in_str = True
        elif c == 0x5B or c == 0x7B:
            depth += 1
            if depth > deepest:
                deepest = depth
        elif c == 0x5D or c == 0x7D:
            depth -= 1
    return deepest, surrogate


def parse(kind, msg):
    """Return (reply_to, payload) of a request; ValueError(reply_to, reason) otherwise.

    A start's payload is returned as it is (a meter that cannot sign answers any start alike; a signing
    meter checks it when its turn comes, ocmf/session.py). A stop's payload is its transaction id.
    """
    answer = kind != HEARTBEAT  # heartbeats are never answered, not even with an error
    deepest, surrogate = _deep_or_surrogate(msg)
    if deepest > _MAX_DEPTH:
        raise ValueError(answer and scan_reply_to(msg), "request nests deeper than %d levels" % _MAX_DEPTH)
    if surrogate:
        raise ValueError(None, "request holds a surrogate (U+D800-U+DFFF); refused unread")
    try:
        doc = json.loads(msg)
    except (ValueError, UnicodeError):
        raise ValueError(answer and scan_reply_to(msg), "request is not valid JSON") from None
    if kind == HEARTBEAT:
        if type(doc) is not int or doc < 0:
            raise ValueError(None, "heartbeat must be a non-negative integer")
        return None, doc
    if not isinstance(doc, dict):
        raise ValueError(None, "request must be a JSON object with headers and payload")
    headers = doc.get("headers")
    reply_to = headers.get("replyTo") if isinstance(headers, dict) else None
    if reply_to is not None and not valid_reply_to(reply_to):
        raise ValueError(None, "replyTo %s refused" % _quote(reply_to))
    if "payload" not in doc:
        raise ValueError(reply_to, "request has no payload")
    payload = doc["payload"]
    if kind == START:
        return reply_to, payload
    if isinstance(payload, dict):
        payload = payload.get("transaction_id")
    if not isinstance(payload, str):
        raise ValueError(reply_to, "payload must be a transaction id string or {\"transaction_id\": string}")
    return reply_to, payload


def _quote(v):
    """A bad value, quoted short enough to go into an error text."""
    s = repr(v)
    return s if len(s) <= _ECHO else s[:_ECHO] + "..."


def reply(status, error=None):
    """JSON text of a Start/StopTransactionReply."""
    r = {"status": status}
    if error:
        r["error"] = error
    return json.dumps(r)
