"""First contact with EVerest: the messages EVerest really sends (host/meterbridge/everest.py), against the firmware.

EVerest at aa8113f9 publishes every request at QoS 2 with compact JSON (framework everest.cpp,
external_mqtt_publish); the firmware subscribes at QoS 1 in a persistent session, so the broker keeps
a request sent while the link is down.
"""

import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path

import paho.mqtt.client as mqtt

from conftest import Bridge, flatten, wait_until
from meterbridge import procs, schema
from meterbridge.everest import API, dump
from tcpproxy import Proxy
from test_ocmf import IDENT, kwh, served, start_signing, verified

DC_PROFILE = Path(__file__).parent / "profiles" / "sim_dc_meter.json"  # a simulated DC meter, tests only


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
        assert log.count("ignored, retained") == 1, log
    finally:
        for t in (topic, topic.replace("start", "stop")):
            pub.publish(t, b"", qos=1, retain=True).wait_for_publish()
        pub.disconnect()
        pub.loop_stop()
        b.stop()


def test_long_tariff_texts_get_not_supported_from_a_meter_that_cannot_sign(bridge):
    b = bridge()
    with b.everest() as ev:  # EvseManager copies tariff_text unchecked; its type allows 250 characters
        for text in ("T" * 300, "€" * 250):
            r = ev.start_transaction(str(uuid.uuid4()), evse_id="DE*PNX*E12345*1", identification_type="ISO14443",
                                     identification_data="04A2B3C4D5E680", tariff_text=text)
            assert r["status"] == "NOT_SUPPORTED", (len(ev.last_reply.raw), r)
        assert len(dump({"tariff_text": "€" * 250})) > 512  # read only as far as replyTo, answered all the same


def test_a_burst_of_starts_is_answered_in_full(bridge):
    b = bridge()
    with b.everest() as ev:
        topics = [_reply_topic("pm1") for _ in range(300)]
        for i, reply_to in enumerate(topics):
            ev.publish_raw("start_transaction", _start_envelope(reply_to, f"burst-{i}"))
        want = {t.split("/m2e/")[1] for t in topics}
        assert wait_until(lambda: want <= {m.topic for m in ev.messages()}, 30), "every start is answered"
        assert {m.value["status"] for m in ev.messages() if m.topic in want} == {"NOT_SUPPORTED"}
    assert b.alive()


def test_reply_to_that_the_broker_would_refuse_or_that_is_our_own_topic_is_never_published_to(bridge):
    b = bridge()
    base = f"{API}pm1/"
    bad = [base + "m2e/reply/\\u0000x", base + "m2e/reply/\\ud800", base + "m2e/reply/\\u0085",
           base + "m2e/powermeter_values", base + "e2m/start_transaction", base + "m2e/communication_check"]
    with b.everest() as ev:
        for reply_to in bad:  # written as JSON escapes, as a hostile client would
            body = b'{"headers":{"replyTo":"' + reply_to.encode() + b'"},"payload":{"transaction_id":"x"}}'
            ev.publish_raw("start_transaction", body.replace(b"\\ud800", b"\xed\xa0\x80"))  # encoded, not escaped
            ev.publish_raw("start_transaction", body)
            time.sleep(0.3)
        mark = ev.mark()
        assert ev.start_transaction("after", timeout=15)["status"] == "NOT_SUPPORTED"
        ev.wait_for("powermeter_values", timeout=15, start=mark)
        values = [m for m in ev.messages("powermeter_values") if b"status" in m.raw]
        assert values == [], "no reply went onto the values topic"
    log = b.firmware_log()
    assert log.count("mqtt connected") == 1, "the broker never dropped the bridge for a malformed topic:\n" + log
    assert "own topic" in log


def test_communication_check_stops_within_5_s_whatever_the_period(bridge):
    b = bridge(period_ms=20000)
    with b.everest() as ev:
        ev.wait_for("powermeter_values", timeout=10)
        mark = ev.mark()
        ev.wait_for("communication_check", start=mark)
        b.toggle_meter()
        silenced = time.time()
        time.sleep(8)
        late = [m for m in ev.messages("communication_check") if m.received > silenced + 5]
        assert late == [], "communication_check went on after the meter fell silent"
        b.toggle_meter()
        ev.wait_for("communication_check", timeout=10, start=ev.mark())
    assert b.alive()


def test_without_clock_no_communication_check_and_the_reason_is_told(tmp_path, broker, monkeypatch):
    monkeypatch.setenv("MB_CLOCK_UNSET", "1")
    b = Bridge(tmp_path / "b", broker)
    b.dir.mkdir()
    try:
        b.start()
        with b.everest() as ev:
            time.sleep(4)
            assert ev.messages("communication_check") == [] and ev.messages("powermeter_values") == []
        _wait_status(broker, b.config["broker"]["client_id"], b"online; pm1: no clock (NTP): values withheld")
        assert wait_until(lambda: "no communication_check: pm1: no clock" in b.firmware_log(), 10)
    finally:
        b.stop()


def test_the_key_is_retained_and_sent_again_when_everest_restarts(bridge, tmp_path):
    b = start_signing(bridge, tmp_path)
    key = f'"{b.pubkey}"'.encode()
    with b.everest() as late:  # subscribed after the firmware published it: the retained copy arrives
        assert late.wait_for("public_key_ocmf", timeout=10).raw == key
        mark = late.mark()
        late.start_heartbeat(0.2)  # EVerest started again: its counter counts from 0
        assert late.wait_for("public_key_ocmf", timeout=10, start=mark).raw == key
        time.sleep(1)  # counting on from 0 is no restart
        mark = late.mark()
        time.sleep(1.5)
        assert late.messages("public_key_ocmf")[-1].seq < mark, "the key goes out again only on a restart"
        late.ready_beacon()  # an API module is up
        assert late.wait_for("public_key_ocmf", timeout=10, start=mark).raw == key


def test_a_repeated_start_keeps_the_meters_transaction(bridge, tmp_path):
    b = start_signing(bridge, tmp_path, sim_args=("--update-ms", "200"))
    with b.everest() as ev:
        t0 = time.time()
        assert ev.start_transaction("tx-rep", **IDENT) == {"status": "OK"}
        t1 = time.time()
        time.sleep(2)  # the counter moves on
        t2 = time.time()
        assert ev.start_transaction("tx-rep", **IDENT) == {"status": "OK"}, "answered as the first one was"
        t3 = time.time()
        time.sleep(1)
        r = ev.stop_transaction("tx-rep")
    begin, _ = verified(r["signed_meter_value"], b.pubkey)["RD"]
    assert kwh(begin) in served(b, t0, t1), "the record covers the whole transaction, from the first start"
    assert kwh(begin) not in served(b, t2, t3)


def test_a_signing_meter_answers_every_request_of_a_burst(bridge, tmp_path):
    b = start_signing(bridge, tmp_path)
    with b.everest() as ev:
        topics = [_reply_topic("pm1") for _ in range(30)]
        for i, reply_to in enumerate(topics):
            ev.publish_raw("stop_transaction", dump({"headers": {"replyTo": reply_to}, "payload": f"none-{i}"}))
        want = {t.split("/m2e/")[1] for t in topics}
        assert wait_until(lambda: want <= {m.topic for m in ev.messages()}, 30), "every request is answered"
        errors = [m.value["error"] for m in ev.messages() if m.topic in want]
        assert all("no open transaction" in e or "busy" in e for e in errors), errors
        assert any("busy" in e for e in errors), "more than the queue holds: the rest told so at once"


def test_a_dc_meter_publishes_voltage_and_current_as_dc(bridge):
    # EvseManager's DC plausibility check reads voltage_V.DC; the Powermeter type has voltage_V.DC, current_A.DC
    b = bridge(profile=str(DC_PROFILE), sim_args=("--update-ms", "2000"))
    with b.everest() as ev:
        msg = ev.wait_for("powermeter_values", timeout=10)
    assert schema.errors("Powermeter", msg.value) == []
    flat = flatten(msg.value)
    assert set(flat) == {"energy_Wh_import.total", "power_W.total", "voltage_V.DC", "current_A.DC"}
    truth = [rec for _, rec in b.truth()]
    assert any(abs(flat["voltage_V.DC"] - rec["voltage_V.DC"]) < Decimal("0.001") for rec in truth)
    assert any(abs(flat["current_A.DC"] - rec["current_A.DC"]) < Decimal("0.001") for rec in truth)


def test_heartbeats_during_a_cut_do_not_crowd_out_a_request(tmp_path):
    # mosquitto keeps at most max_queued_messages (default 1000) for an offline session: at EVerest's 1 Hz
    # heartbeat that is 17 minutes; here 5. Heartbeats are taken at QoS 0, so only requests are kept.
    port = procs.free_port()
    broker = procs.start_mosquitto(port, tmp_path, "max_queued_messages 5\n")
    proxy = Proxy(port)
    b = Bridge(tmp_path / "b", proxy.port)
    b.dir.mkdir()
    try:
        b.start()
        b.port = port
        with b.everest() as ev:
            proxy.cut()
            _wait_status(port, b.config["broker"]["client_id"], b"offline")
            ev.start_heartbeat(0.05)
            time.sleep(1)  # 20 heartbeats while the bridge is away
            reply_to = _reply_topic("pm1")
            ev.publish_raw("start_transaction", _start_envelope(reply_to, "after-heartbeats"))
            time.sleep(0.5)
            ev.stop_heartbeat()
            proxy.restore()
            assert ev.wait_for(reply_to.split("/m2e/")[1], timeout=20).value["status"] == "NOT_SUPPORTED"
    finally:
        b.stop()
        proxy.close()
        procs.stop(broker)

