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


def _bridge(tmp_path, port, **broker):
    # mbedTLS allocates its ~40 KB of session buffers from the MicroPython heap on the unix port, but
    # from the IDF heap on an ESP32, so TLS runs here with the unix port's default heap.
    b = Bridge(tmp_path / "b", port, heapsize=None if broker.get("tls") else "100k")
    b.dir.mkdir()
    b.config["broker"].update({"host": "localhost", **broker})
    b.start_sim()
    b.start_firmware()
    return b


def test_tls_and_password_carry_values(tmp_path, tls_broker):
    port, pki = tls_broker
    client, got = _listen(port, pki["ca"], "everest_api/1/powermeter/pm1/m2e/powermeter_values")
    b = _bridge(tmp_path, port, tls={"ca": str(pki["ca"])}, username=USER, password=PASSWORD)
    try:
        assert wait_until(lambda: len(got) >= 2, 15), b.firmware_log()
        assert json.loads(got[-1].payload)["energy_Wh_import"]["total"] > 0
        assert "(TLS)" in b.firmware_log()
        assert PASSWORD not in b.firmware_log()
    finally:
        client.loop_stop()
        b.stop()


def test_wrong_ca_never_connects_and_keeps_running(tmp_path, tls_broker):
    port, _ = tls_broker
    (tmp_path / "other").mkdir()
    other = make_pki(tmp_path / "other")
    b = _bridge(tmp_path, port, tls={"ca": str(other["ca"])}, username=USER, password=PASSWORD)
    try:
        assert wait_until(lambda: "mqtt connect failed" in b.firmware_log(), 10)
        assert "mqtt connected" not in b.firmware_log()
        assert b.alive()
    finally:
        b.stop()


def test_password_without_tls_is_refused(tmp_path, broker):
    b = _bridge(tmp_path, broker, host="127.0.0.1", username=USER, password=PASSWORD)
    try:
        assert wait_until(lambda: not b.alive(), 5)
        log = b.firmware_log()
        assert "broker.password: refused without TLS" in log
        assert PASSWORD not in log
    finally:
        b.stop()


def test_insecure_tls_connects_and_warns_that_the_broker_is_not_checked(tmp_path, tls_broker):
    port, _ = tls_broker
    b = _bridge(tmp_path, port, tls={"insecure": True}, username=USER, password=PASSWORD)
    try:
        assert wait_until(lambda: "mqtt connected" in b.firmware_log(), 15), b.firmware_log()
        log = b.firmware_log()
        assert "warn: config: broker.tls: no CA, so any server can pose as the broker and receive the password" in log
        assert PASSWORD not in log
    finally:
        b.stop()


def test_a_wrong_password_is_reported_as_not_authorised(tmp_path, tls_broker):
    # mosquitto answers a wrong password with CONNACK return code 5 (MQTT 3.1.1, 3.2.2.3), which umqtt.simple
    # raised as a bare MQTTException(5,)
    port, pki = tls_broker
    b = _bridge(tmp_path, port, tls={"ca": str(pki["ca"])}, username=USER, password="not-" + PASSWORD)
    try:
        assert wait_until(lambda: "mqtt connect failed" in b.firmware_log(), 15), b.firmware_log()
        assert "mqtt connect failed: MQTTException('not authorised',)" in b.firmware_log()
        assert b.alive()
    finally:
        b.stop()
