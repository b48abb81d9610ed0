"""TLS to the broker with a CA, username/password, and secrets that never leak."""

import json
import os
import ssl
import subprocess
import threading

import paho.mqtt.client as mqtt
import pytest

from conftest import Bridge, wait_until
from meterbridge import procs
from tlsutil import make_pki

USER, PASSWORD = "charger7", "s3cret-Pa55"


@pytest.fixture
def tls_broker(tmp_path):
    """mosquitto with only a TLS listener, no anonymous access, one user."""
    pki = make_pki(tmp_path)
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(passwd), USER, PASSWORD], check=True,
                   env={"PATH": "/usr/bin:/usr/sbin:/bin"})
    port = procs.free_port()
    conf = tmp_path / "tls.conf"
    conf.write_text(f"listener {port} 127.0.0.1\ncafile {pki['ca']}\ncertfile {pki['cert']}\n"
                    f"keyfile {pki['key']}\nallow_anonymous false\npassword_file {passwd}\n"
                    "persistence false\nlog_dest stdout\n" + ("user root\n" if os.geteuid() == 0 else ""))
    proc = subprocess.Popen([procs.mosquitto_binary(), "-c", str(conf)], stdout=open(tmp_path / "broker.log", "wb"),
                            stderr=subprocess.STDOUT)
    procs.wait_port(port)
    yield port, pki
    procs.stop(proc)


def _listen(port, ca, topic):
    """A TLS subscriber with the user's credentials; returns (client, received list)."""
    got = []
    ready = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    c.username_pw_set(USER, PASSWORD)
    c.tls_set(ca_certs=str(ca), cert_reqs=ssl.CERT_REQUIRED)
    c.on_connect = lambda cl, *_: cl.subscribe(topic)
    c.on_subscribe = lambda *_: ready.set()
    c.on_message = lambda cl, u, m: got.append(m)
    c.connect("localhost", port)
    c.loop_start()
    assert ready.wait(5)
    return c, got


@pytest.fixture
def start_bridge(tmp_path):
    """Factory: start_bridge(port, **broker) starts a Bridge with these broker settings (not waiting for it to be
    online); it is stopped after the test."""
    made = []

    def make(port, **broker):
        # mbedTLS allocates its ~40 KB of session buffers from the MicroPython heap on the unix port, but
        # from the IDF heap on an ESP32, so TLS runs here with the unix port's default heap.
        b = Bridge(tmp_path / "b", port, heapsize=None if broker.get("tls") else "100k")
        b.dir.mkdir()
        b.config["broker"].update({"host": "localhost", **broker})
        made.append(b)
        b.start_sim()
        b.start_firmware()
        return b

    yield make
    for b in made:
        b.stop()


def test_tls_and_password_carry_values(tls_broker, start_bridge):
    port, pki = tls_broker
    client, got = _listen(port, pki["ca"], "everest_api/1/powermeter/pm1/m2e/powermeter_values")
    try:
        b = start_bridge(port, tls={"ca": str(pki["ca"])}, username=USER, password=PASSWORD)
        assert wait_until(lambda: len(got) >= 2, 15), b.firmware_log()
        assert json.loads(got[-1].payload)["energy_Wh_import"]["total"] > 0
        assert "(TLS)" in b.firmware_log()
        assert PASSWORD not in b.firmware_log()
    finally:
        client.loop_stop()


def test_wrong_ca_never_connects_and_keeps_running(tmp_path, tls_broker, start_bridge):
    port, _ = tls_broker
    (tmp_path / "other").mkdir()
    other = make_pki(tmp_path / "other")
    b = start_bridge(port, tls={"ca": str(other["ca"])}, username=USER, password=PASSWORD)
    assert wait_until(lambda: "mqtt connect failed" in b.firmware_log(), 10)
    assert "mqtt connected" not in b.firmware_log()
    assert b.alive()


def test_password_without_tls_is_refused(broker, start_bridge):
    b = start_bridge(broker, host="127.0.0.1", username=USER, password=PASSWORD)
    assert wait_until(lambda: not b.alive(), 5)
    log = b.firmware_log()
    assert "broker.password: refused without TLS" in log
    assert PASSWORD not in log


def test_insecure_tls_connects_and_warns_that_the_broker_is_not_checked(tls_broker, start_bridge):
    port, _ = tls_broker
    b = start_bridge(port, tls={"insecure": True}, username=USER, password=PASSWORD)
    assert wait_until(lambda: "mqtt connected" in b.firmware_log(), 15), b.firmware_log()
    log = b.firmware_log()
    assert "warn: config: broker.tls: no CA, so any server can pose as the broker and receive the password" in log
    assert PASSWORD not in log


def test_a_wrong_password_is_reported_as_not_authorised(tls_broker, start_bridge):
    # mosquitto answers a wrong password with CONNACK return code 5 (MQTT 3.1.1, 3.2.2.3), which umqtt.simple
    # raised as a bare MQTTException(5,)
    port, pki = tls_broker
    b = start_bridge(port, tls={"ca": str(pki["ca"])}, username=USER, password="not-" + PASSWORD)
    assert wait_until(lambda: "mqtt connect failed" in b.firmware_log(), 15), b.firmware_log()
    assert "mqtt connect failed: MQTTException('not authorised',)" in b.firmware_log()
    assert b.alive()
