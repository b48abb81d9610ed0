"""First contact with EVerest: the messages EVerest really sends (host/meterbridge/everest.py), against the firmware.

EVerest at aa8113f9 publishes every request at QoS 2 with compact JSON (framework everest.cpp,
external_mqtt_publish); the firmware subscribes at QoS 1 in a persistent session, so the broker keeps
a request sent while the link is down.
"""

import threading
import time
import uuid

import paho.mqtt.client as mqtt

from conftest import Bridge
from meterbridge.everest import API, dump
from tcpproxy import Proxy


def _paho(port):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


def _reply_topic(module_id):
    return f"{API}{module_id}/m2e/reply/{uuid.uuid4()}"


def _start_envelope(reply_to, tid):
    return dump({"headers": {"replyTo": reply_to}, "payload": {
        "evse_id": "DE*PNX*E12345*1", "transaction_id": tid, "identification_status": "ASSIGNED",
        "identification_flags": [], "identification_type": "ISO14443", "identification_data": "04A2B3C4D5E680"}})


def _wait_status(port, client_id, want, timeout=15.0):
    got = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    c.on_connect = lambda cl, *_: cl.subscribe(f"meterbridge/{client_id}/status")
    c.on_message = lambda cl, u, m: m.payload == want and got.set()
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        assert got.wait(timeout), f"status never {want!r}"
    finally:
        c.disconnect()
        c.loop_stop()


def test_start_sent_while_the_link_is_cut_is_answered_after_it_returns(tmp_path, broker):
    proxy = Proxy(broker)
    b = Bridge(tmp_path / "b", proxy.port)
    b.dir.mkdir()
    try:
        b.start()
        b.port = broker  # EVerest's side talks to the broker directly
        with b.everest() as ev:
            assert ev.start_transaction("before")["status"] == "NOT_SUPPORTED"
            proxy.cut()
            _wait_status(broker, b.config["broker"]["client_id"], b"offline")  # the broker saw the link go
            reply_to = _reply_topic("pm1")
            ev.publish_raw("start_transaction", _start_envelope(reply_to, "during-cut"))  # QoS 2, as EVerest
            time.sleep(1)
            proxy.restore()
            msg = ev.wait_for(reply_to.split("/m2e/")[1], timeout=20)
            assert msg.value["status"] == "NOT_SUPPORTED"
        assert proxy.accepted >= 2 and b.alive()
    finally:
        b.stop()
        proxy.close()


def test_retained_requests_are_ignored_and_logged_once(tmp_path, broker):
    module_id = "pmret" + uuid.uuid4().hex[:6]
    topic = f"{API}{module_id}/e2m/start_transaction"
    stale = [_reply_topic(module_id) for _ in range(2)]
    pub = _paho(broker)
    for i, reply_to in enumerate(stale):  # left by some client; each connect would replay it
        pub.publish(topic if i == 0 else topic.replace("start", "stop"), _start_envelope(reply_to, "stale") if i == 0
                    else dump({"headers": {"replyTo": reply_to}, "payload": ""}), qos=1, retain=True).wait_for_publish()
    b = Bridge(tmp_path / "b", broker, module_id=module_id)
    b.dir.mkdir()
    try:
        b.start()
        with b.everest() as ev:
            assert ev.start_transaction("live")["status"] == "NOT_SUPPORTED"  # subscribed and answering
            time.sleep(1)
            assert [m for m in ev.messages() if m.topic.startswith("reply/") and
                    any(m.topic == t.split("/m2e/")[1] for t in stale)] == []
        log = b.firmware_log()
        assert log.count("retained") == 1, log
    finally:
        for t in (topic, topic.replace("start", "stop")):
            pub.publish(t, b"", qos=1, retain=True).wait_for_publish()
        pub.disconnect()
        pub.loop_stop()
        b.stop()
