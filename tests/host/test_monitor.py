"""EverestClient and `meterbridge monitor` against a real mosquitto and a tiny fake powermeter module."""

import argparse
import decimal
import json
import re
import shutil
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from meterbridge import schema
from meterbridge.commands import monitor
from meterbridge.errors import CommandError
from meterbridge.everest import EverestClient

DATA = Path(__file__).parent / "data"
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
VALUES = (DATA / "powermeter_values.json").read_bytes().strip()
START_REPLY = (DATA / "start_transaction.reply.not_supported.json").read_bytes().strip()
STOP_REPLY = (DATA / "stop_transaction.reply.ocmf.json").read_bytes().strip()


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    """Port of a private mosquitto on 127.0.0.1 (anonymous, no persistence), stopped after the module."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = tmp_path_factory.mktemp("mosquitto") / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen(
        [MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 5
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"mosquitto did not start on port {port}")
            time.sleep(0.05)
    yield port
    proc.terminate()
    proc.wait(5)


class FakeModule:
    """A powermeter module: records e2m requests, answers on prefix + replyTo, publishes m2e on demand."""

    def __init__(self, port, module_id="pm1", prefix=""):
        self.base = f"{prefix}everest_api/1/powermeter/{module_id}/"
        self.prefix = prefix
        self.replies = {"start_transaction": START_REPLY, "stop_transaction": STOP_REPLY}
        self.received = []  # (var, raw bytes)
        self._cond = threading.Condition()
        subscribed = threading.Event()
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self._client.on_connect = lambda c, *_: c.subscribe(self.base + "e2m/#")
        self._client.on_subscribe = lambda *_: subscribed.set()
        self._client.on_message = self._on_message
        self._client.connect("127.0.0.1", port)
        self._client.loop_start()
        assert subscribed.wait(5)
        self._streaming = None

    def _on_message(self, client, userdata, msg):
        var = msg.topic[len(self.base + "e2m/") :]
        with self._cond:
            self.received.append((var, bytes(msg.payload)))
            self._cond.notify_all()
        try:
            reply_to = json.loads(msg.payload)["headers"]["replyTo"]
        except (ValueError, KeyError, TypeError):
            return  # no replyTo (or not even JSON): act, but send no reply
        if var in self.replies and isinstance(reply_to, str):
            client.publish(self.prefix + reply_to, self.replies[var])

    def wait(self, var, n=1):
        """The raw payloads of the first n requests on e2m/<var>."""
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.raw(var)) >= n, 5), f"no {n} x e2m/{var}"
            return self.raw(var)[:n]

    def raw(self, var):
        """Every payload received on e2m/<var> so far."""
        return [raw for v, raw in self.received if v == var]

    def publish(self, suffix, data):
        """Publish bytes on m2e/<suffix>."""
        self._client.publish(self.base + "m2e/" + suffix, data).wait_for_publish(5)

    def stream(self, data, interval=0.05):
        """Publish powermeter_values and communication_check true every interval until close()."""
        stop = threading.Event()

        def loop():
            while not stop.wait(interval):
                self.publish("powermeter_values", data)
                self.publish("communication_check", b"true")

        self._streaming = (stop, threading.Thread(target=loop, daemon=True))
        self._streaming[1].start()

    def close(self):
        """Stop streaming and disconnect."""
        if self._streaming:
            self._streaming[0].set()
            self._streaming[1].join()
        self._client.disconnect()
        self._client.loop_stop()


@pytest.fixture
def fake(broker):
    module = FakeModule(broker)
    yield module
    module.close()


@pytest.fixture
def client(broker):
    with EverestClient("127.0.0.1", broker, "pm1") as everest:
        yield everest


def envelope(raw):
    """Parse a request and check it is compact JSON like EVerest's json::dump()."""
    obj = json.loads(raw)
    assert raw == json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
    return obj


def check_reply_to(reply_to, prefix_free_base="everest_api/1/powermeter/pm1/"):
    m = re.fullmatch(re.escape(prefix_free_base) + r"m2e/reply/([0-9a-f-]{36})", reply_to)
    assert m, reply_to
    assert uuid.UUID(m.group(1)).version == 4


def test_start_transaction_envelope_and_reply(fake, client):
    reply = client.start_transaction("tid-1", evse_id="DE*PNX*E12345*1", identification_data="04A2B3C4")
    assert reply == json.loads(START_REPLY)
    assert client.last_reply.raw == START_REPLY and client.last_reply.topic.startswith("reply/")
    request = envelope(fake.wait("start_transaction")[0])
    assert list(request) == ["headers", "payload"] and list(request["headers"]) == ["replyTo"]
    check_reply_to(request["headers"]["replyTo"])
    assert request["payload"] == {
        "evse_id": "DE*PNX*E12345*1",
        "transaction_id": "tid-1",
        "identification_status": "ASSIGNED",
        "identification_flags": [],
        "identification_type": "NONE",
        "identification_data": "04A2B3C4",
    }
    assert schema.errors("StartTransactionRequest", request["payload"]) == []


@pytest.mark.parametrize(("form", "payload"), [("string", "tid-2"), ("object", {"transaction_id": "tid-2"})])
def test_stop_transaction_forms(fake, client, form, payload):
    reply = client.stop_transaction("tid-2", form=form)
    assert reply["status"] == "OK" and schema.errors("StopTransactionReply", reply) == []
    request = envelope(fake.wait("stop_transaction")[0])
    check_reply_to(request["headers"]["replyTo"])
    assert request["payload"] == payload
    with pytest.raises(ValueError):
        client.stop_transaction("tid-2", form="list")


def test_cancel_all_without_reply_and_unanswered_request(fake, client):
    assert client.stop_transaction("", reply=False) is None
    assert fake.wait("stop_transaction") == [b'{"payload":""}']
    with pytest.raises(TimeoutError):
        client.request("no_such_var", {"x": 1}, timeout=0.3)
    assert envelope(fake.wait("no_such_var")[0])["payload"] == {"x": 1}


def test_external_prefix(broker):
    module = FakeModule(broker, prefix="ext/")
    try:
        with EverestClient("127.0.0.1", broker, "pm1", prefix="ext/") as everest:
            assert everest.start_transaction("tid-3")["status"] == "NOT_SUPPORTED"
            module.publish("powermeter_values", VALUES)
            assert everest.wait_for("powermeter_values").raw == VALUES
        check_reply_to(json.loads(module.wait("start_transaction")[0])["headers"]["replyTo"])
    finally:
        module.close()


def test_received_messages_are_exact_and_ordered(fake, client):
    before = time.time()
    fake.publish("powermeter_values", VALUES)
    fake.publish("communication_check", b"true")
    fake.publish("public_key_ocmf", b'"3059301306"')
    fake.publish("powermeter_values", b"{NaN")
    key = client.wait_for("public_key_ocmf")
    values = client.wait_for("powermeter_values")
    assert values.raw == VALUES and before <= values.received <= key.received <= time.time()
    assert values.value["energy_Wh_import"]["total"] == decimal.Decimal("98765429.6875")
    assert values.value["power_W"]["L2"] == decimal.Decimal("-1234.56")
    assert schema.errors("Powermeter", values.value) == []
    assert client.wait_for("communication_check").value is True and key.value == "3059301306"
    broken = client.wait_for("powermeter_values", start=values.seq + 1)
    with pytest.raises(ValueError):
        _ = broken.value
    assert [m.topic for m in client.messages()][:4] == [
        "powermeter_values",
        "communication_check",
        "public_key_ocmf",
        "powermeter_values",
    ]
    assert client.messages("powermeter_values") == [values, broken]
    with pytest.raises(TimeoutError):
        client.wait_for("powermeter_values", start=client.mark(), timeout=0.2)


def test_nan_is_not_json(fake, client):
    fake.publish(
        "powermeter_values", b'{"timestamp":"2026-11-26T10:15:30Z","energy_Wh_import":{"total":NaN}}'
    )
    with pytest.raises(ValueError):
        _ = client.wait_for("powermeter_values").value


def test_wait_for_predicate(fake, client):
    for total in (1, 2, 3):
        fake.publish("powermeter_values", b'{"energy_Wh_import":{"total":%d}}' % total)
    msg = client.wait_for("powermeter_values", lambda m: m.value["energy_Wh_import"]["total"] > 1)
    assert msg.value["energy_Wh_import"]["total"] == 2


def test_heartbeat_counts_from_zero(fake, client):
    client.start_heartbeat(0.05)
    assert fake.wait("heartbeat", 4) == [b"0", b"1", b"2", b"3"]
    client.stop_heartbeat()
    count = len(fake.raw("heartbeat"))
    time.sleep(0.2)
    assert len(fake.raw("heartbeat")) == count


def test_publish_raw_sends_bytes_unchanged(fake, client):
    client.publish_raw("start_transaction", b'{"headers":{"replyTo":5},"payload":')
    assert fake.wait("start_transaction") == [b'{"headers":{"replyTo":5},"payload":']


def run_monitor(port, *argv):
    """Run `meterbridge monitor` in-process; its exit status."""
    parser = argparse.ArgumentParser()
    monitor.add_arguments(parser)
    return monitor.run(parser.parse_args(["--broker", f"127.0.0.1:{port}", "--module-id", "pm1", *argv]))


def test_monitor_count_exits_after_n_values(broker, fake, capsys):
    fake.stream(VALUES)
    assert run_monitor(broker, "--count", "3", "--heartbeat", "--timeout", "5") == 0
    lines = capsys.readouterr().out.splitlines()
    shown = [line for line in lines if " powermeter_values " in line]
    assert len(shown) == 3
    assert shown[0].endswith(
        "powermeter_values ts=2026-11-26T10:15:30.250Z E=98765429.6875Wh P=7396.5W "
        "U=230.1/229.8/231.4V I=16.02/15.97/0.0A"
    )
    assert any(line.endswith(" communication_check true") for line in lines)
    assert not any("!!" in line for line in lines)
    assert fake.raw("heartbeat")[0] == b"0"


def test_monitor_start_then_stop_object_form(broker, fake, capsys):
    assert run_monitor(broker, "--start", "T1", "--stop", "T1", "--stop-form", "object") == 0
    out = capsys.readouterr().out
    assert f"start_transaction 'T1' -> {START_REPLY.decode()}" in out
    assert f"stop_transaction 'T1' -> {STOP_REPLY.decode()}" in out
    assert json.loads(fake.wait("start_transaction")[0])["payload"]["transaction_id"] == "T1"
    assert json.loads(fake.wait("stop_transaction")[0])["payload"] == {"transaction_id": "T1"}


def test_monitor_start_generates_uuid_and_flags_bad_reply(broker, fake, capsys):
    fake.replies["start_transaction"] = b'{"status":"MAYBE"}'
    assert run_monitor(broker, "--start") == 1
    out = capsys.readouterr().out
    assert "!! $.status: 'MAYBE' is not one of" in out
    tid = json.loads(fake.wait("start_transaction")[0])["payload"]["transaction_id"]
    assert uuid.UUID(tid).version == 4


def test_monitor_shows_schema_errors_of_values(broker, fake, capsys):
    fake.stream(b'{"timestamp":"yesterday","power_W":{"total":5}}')
    assert run_monitor(broker, "--count", "1") == 0
    out = capsys.readouterr().out
    assert "E=-Wh P=5W U=-/-/-V I=-/-/-A" in out
    assert "!! $: 'energy_Wh_import' is a required property" in out
    assert "!! $.timestamp: 'yesterday' is not a 'date-time'" in out


def test_monitor_errors(broker, fake):
    with pytest.raises(CommandError, match="no powermeter_values for 0.3 s"):
        run_monitor(broker, "--count", "1", "--timeout", "0.3")
    with pytest.raises(CommandError, match="no reply"):
        fake.replies.clear()
        run_monitor(broker, "--stop", "T9", "--timeout", "0.3")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    with pytest.raises(CommandError, match="cannot connect"):
        run_monitor(closed)
    with pytest.raises(CommandError, match="not HOST:PORT"):
        monitor.run(argparse.Namespace(broker="localhost", module_id="pm1", prefix=""))
