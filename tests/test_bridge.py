"""The whole bridge end to end: simulated SDM630 on a pty, the firmware under the unix port, mosquitto."""

import time
from decimal import Decimal

import pytest

from conftest import flatten, wait_until
from meterbridge import schema
from meterbridge.everest import EverestClient

SDM630 = "eastron_sdm630_v2"


def _close(a, b):
    return abs(a - b) <= abs(b) * Decimal("1e-6") + Decimal("1e-9")


def _matches(flat, record):
    """Energy exactly, measurements to float32 precision."""
    for path, v in flat.items():
        want = record.get(path)
        if want is None:
            return False
        if path.startswith("energy") and v != want:
            return False
        if not _close(v, want):
            return False
    return True


@pytest.mark.parametrize("heapsize", [None, "100k"])
def test_values_equal_the_meter_truth(bridge, heapsize):
    # the meter's values move every 2 s: a cycle's reads (~0.2 s) then straddle a change in ~1 of 10 datasets
    b = bridge(heapsize=heapsize, sim_args=("--update-ms", "2000"))
    with b.everest() as ev:
        for i in range(6):
            ev.wait_for("powermeter_values", timeout=10, start=ev.messages("powermeter_values")[-1].seq + 1
                        if i else 0)
        msgs = ev.messages("powermeter_values")
    truth = b.truth()
    energies = {p: {rec[p] for _, rec in truth if p in rec} for p in truth[-1][1] if p.startswith("energy")}
    whole = 0
    for m in msgs:
        assert schema.errors("Powermeter", m.value) == []
        assert m.value["meter_id"] == "pm1"
        flat = flatten(m.value)
        assert set(flat) == set(truth[-1][1]), "every profile field is published"
        for path, v in flat.items():
            if path.startswith("energy"):
                assert v in energies[path], f"{path}={v} is not a value the meter served"
        whole += any(_matches(flat, rec) for _, rec in truth)
    assert whole >= len(msgs) - 2, "datasets are read whole, not mixed from different moments"
    assert b.alive()


def test_communication_check_while_the_meter_answers(bridge):
    b = bridge()
    with b.everest() as ev:
        ev.wait_for("communication_check", timeout=10)
        time.sleep(4.5)
        checks = [m for m in ev.messages("communication_check")]
    assert all(m.raw == b"true" for m in checks)
    assert all(schema.errors("CommunicationCheck", m.value) == [] for m in checks)
    gaps = [b2.received - a.received for a, b2 in zip(checks, checks[1:], strict=False)]
    assert len(checks) >= 4 and max(gaps) < 2.0


def test_silent_meter_stops_values_and_checks_then_both_resume(bridge):
    b = bridge()
    with b.everest() as ev:
        ev.wait_for("powermeter_values", timeout=10)
        b.toggle_meter()
        silenced = time.time()
        time.sleep(6)
        late = [m for m in ev.messages() if m.received > silenced + 5 and m.topic in
                ("powermeter_values", "communication_check")]
        assert late == [], "nothing is published once the meter has been silent for 5 s"
        b.toggle_meter()
        start = ev.mark()
        ev.wait_for("powermeter_values", timeout=10, start=start)
        ev.wait_for("communication_check", timeout=10, start=start)
    assert b.alive()


def test_start_and_stop_in_both_forms(bridge):
    b = bridge()
    with b.everest() as ev:
        r = ev.start_transaction("tx-1", evse_id="DE*PNX*E12345*1", identification_type="ISO14443",
                                 identification_data="04A2B3C4D5E680", tariff_text="0.39 EUR/kWh")
        assert r["status"] == "NOT_SUPPORTED" and SDM630 in r["error"]
        assert schema.errors("StartTransactionReply", r) == []
        r = ev.stop_transaction("tx-1", form="string")
        assert r["status"] == "NOT_SUPPORTED" and "no open transaction" not in r["error"]
        assert schema.errors("StopTransactionReply", r) == []
        ev.start_transaction("tx-2")
        r = ev.stop_transaction("tx-2", form="object")
        assert r["status"] == "NOT_SUPPORTED" and "no open transaction" not in r["error"]
        again = ev.stop_transaction("tx-2", form="object")
        assert again == r, "a repeated stop (a QoS 1 redelivery) is answered alike"
        assert "no open transaction tx-3" in ev.stop_transaction("tx-3")["error"]


def test_empty_id_cancels_every_transaction(bridge):
    b = bridge()
    with b.everest() as ev:
        ev.start_transaction("tx-9")
        r = ev.stop_transaction("")
        assert r == {"status": "OK"}
        assert "no open transaction tx-9" in ev.stop_transaction("tx-9")["error"]


def test_request_without_reply_to_is_carried_out_silently(bridge):
    b = bridge()
    with b.everest() as ev:
        before = ev.mark()
        ev.start_transaction("tx-quiet", reply=False)
        time.sleep(0.5)
        assert [m for m in ev.messages() if m.seq >= before and m.topic.startswith("reply/")] == []
        r = ev.stop_transaction("tx-quiet")
        assert "no open transaction" not in r["error"], "the start without replyTo was acted on"


@pytest.mark.parametrize("payload, reason", [
    ('{"headers":{"replyTo":"%s"},"payload":', "not valid JSON"),
    ('{"headers":{"replyTo":"%s"}}', "no payload"),
])
def test_malformed_start_gets_an_error_reply(bridge, payload, reason):
    b = bridge()
    with b.everest() as ev:
        reply_to = ev.base + "m2e/reply/bad-1"
        ev.publish_raw("start_transaction", (payload % reply_to).encode())
        r = ev.wait_for("reply/bad-1", timeout=5).value
        assert r["status"] == "UNEXPECTED_ERROR" and reason in r["error"]
        assert schema.errors("StartTransactionReply", r) == []
        ev.publish_raw("stop_transaction", b"\xff\xfe not json")
        ev.publish_raw("heartbeat", b'"x"')
        start = ev.mark()
        ev.wait_for("powermeter_values", timeout=5, start=start)
    assert b.alive()


def test_heartbeat_is_read(bridge):
    b = bridge()
    with b.everest() as ev:
        ev.start_heartbeat(0.2)
        time.sleep(1)
        ev.stop_heartbeat()
        start = ev.mark()
        ev.wait_for("powermeter_values", timeout=5, start=start)
    assert b.alive()
    assert "bad request" not in b.firmware_log()


def test_external_prefix_is_honoured(bridge):
    b = bridge(prefix="site7/")
    with b.everest() as ev:
        ev.wait_for("powermeter_values", timeout=10)
        r = ev.stop_transaction("nothing")
        assert r["status"] == "NOT_SUPPORTED"
    with EverestClient("127.0.0.1", b.port, b.module_id) as plain:  # no prefix: nothing arrives there
        time.sleep(1.5)
        assert plain.messages() == []


def test_bad_config_names_the_field(bridge, tmp_path):
    b = bridge()
    b.stop()
    b.start_sim()
    b.config["meters"][0]["slave"] = 300
    b.start_firmware()
    assert wait_until(lambda: not b.alive(), 5)
    assert b.fw.returncode != 0
    assert "meters[0].slave: must be an integer 1..247" in b.firmware_log()
