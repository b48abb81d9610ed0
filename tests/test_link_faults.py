"""Brokers that do not answer, answer slowly or are not MQTT at all: the loop never blocks, the link recovers.

A listener on 127.0.0.1 stands between the link (tests/fw/link_faults.py, the firmware's MqttLink
under the unix port) and the session's mosquitto. Until it "answers" it misbehaves the way issue 13
found real ones do; after that it relays to mosquitto. Requirements (issue 13 §2): the loop is never
blocked for 0.5 s, the link task never dies, and values flow within 2 s of the broker answering (bench/link.py
times them; the tests here allow a loaded machine more).

A broker host that is down answers no SYN at all, where a closed port on 127.0.0.1 is refused at once:
tcpproxy.Proxy.blackhole() makes that on a loopback port (see there), in front of the whole bridge.
"""

import json
import os
import socket
import subprocess
import threading
import time
import uuid

import pytest

from conftest import Bridge, wait_until
from fw import HERE
from meterbridge import build, paths, procs
from tcpproxy import Proxy

STANDIN = paths.REPO / "tests" / "umqtt_standin"  # umqtt.simple 1.4.0 or 1.5.0+, as toolchain.md §6 describes them

ANSWER_AFTER_S = 2.5  # when the broker starts answering (the dribbling one answers byte by byte from the start)
DRIBBLE_S = 1.9  # one CONNACK byte this often
HTTP_400 = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/html\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
SSH_BANNER = b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"  # RFC 4253 4.2: the server speaks first
GIVEN_UP = "host down or unreachable"  # mqtt_link gave a TCP connect up (_TCP_MS), told apart from a silent broker


class FakeBroker:
    """Misbehaves as `mode` until answer(), then relays every connection to the real broker."""

    def __init__(self, mode, upstream_port):
        self.mode = mode
        self.upstream = upstream_port
        self.port = procs.free_port()
        self.answered = threading.Event()
        self.answer_t = None  # when the broker began to answer (the last CONNACK byte, when dribbling)
        self.first_value_t = None  # when the first values publish came through after that
        self._listener = None
        self._stop = False
        if mode != "refused":  # nothing listens until the broker answers
            self._listen()

    def _listen(self):
        self._listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        self._listener.settimeout(0.1)
        threading.Thread(target=self._accept, daemon=True).start()

    def answer(self):
        self.answer_t = time.monotonic()
        if self.mode == "refused":
            self._listen()
        self.answered.set()

    def close(self):
        self._stop = True
        if self._listener:
            self._listener.close()

    def _accept(self):
        while not self._stop:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        with conn:
            if self.answered.is_set() or self.mode in ("blackhole", "dribble"):
                self._relay(conn)
            elif self.mode == "http":
                conn.recv(1024)
                conn.sendall(HTTP_400)
            elif self.mode == "ssh":
                conn.sendall(SSH_BANNER)
                conn.recv(1024)  # sshd drops a client whose identification string is wrong
            elif self.mode == "suback":
                conn.recv(1024)
                conn.sendall(b"\x20\x02\x00\x00")  # CONNACK, accepted
                conn.recv(1024)
                conn.sendall(b"\x90\x03\x00\x2a\x00")  # SUBACK for a packet id never used
                self.answered.wait(10)

    def _relay(self, conn):
        up = socket.create_connection(("127.0.0.1", self.upstream))
        with up:
            threading.Thread(target=self._to_client, args=(up, conn), daemon=True).start()
            while True:
                try:
                    data = conn.recv(4096)
                except OSError:
                    return
                if not data:
                    return
                if self.answer_t and self.first_value_t is None and b"lf/values" in data:
                    self.first_value_t = time.monotonic()
                up.sendall(data)

    def _to_client(self, up, conn):
        try:
            if self.mode == "dribble" and not self.answered.is_set():
                connack = b""
                while len(connack) < 4:
                    connack += up.recv(4 - len(connack))
                for i in range(4):
                    time.sleep(DRIBBLE_S)
                    conn.sendall(connack[i : i + 1])
                self.answer()
            else:
                self.answered.wait(30)  # a blackholed broker holds its answers until it answers
            while data := up.recv(4096):
                conn.sendall(data)
        except OSError:
            pass


def run_link(port, seconds, path=None, env=None):
    """tests/fw/link_faults.py against port; (its JSON report, its log)."""
    root = build.firmware()
    full = dict(os.environ, MICROPYPATH=path or os.pathsep.join([".frozen", str(root), str(root / "lib")]),
                **(env or {}))
    done = subprocess.run([paths.micropython(), str(HERE / "link_faults.py"), str(port), str(seconds)], env=full,
                          capture_output=True, text=True, timeout=seconds + 30)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout), done.stderr


def ride_out(mode, broker, seconds, path=None, env=None):
    fake = FakeBroker(mode, broker)
    if mode != "dribble":
        threading.Timer(ANSWER_AFTER_S, fake.answer).start()
    try:
        report, log = run_link(fake.port, seconds, path, env)
    finally:
        fake.close()
    assert report["crash"] is None, log
    # issue 13 wants 0.5 s and 2 s, which bench/link.py measures; here the bounds leave room for a loaded machine
    # and still catch a loop that waits on the network (2 s a socket timeout, 1.9 s a dribbled byte)
    assert report["late_ms"] < 1000, (report, log)
    assert report["connects"] >= 1 and fake.first_value_t, log
    assert fake.first_value_t - fake.answer_t < 3.0, (fake.first_value_t - fake.answer_t, log)
    return log


@pytest.mark.parametrize("mode", ["blackhole", "refused", "http", "ssh", "suback"])
def test_the_loop_never_waits_on_a_broker_that_does_not_answer(broker, mode):
    log = ride_out(mode, broker, ANSWER_AFTER_S + 3)
    if mode in ("http", "ssh"):
        assert "not MQTT" in log


def test_a_connack_dribbled_a_byte_every_two_seconds_blocks_nothing(broker):
    ride_out("dribble", broker, 4 * DRIBBLE_S + 3)


@pytest.mark.parametrize("version", ["1.4.0", "1.5.0"])
def test_a_newer_umqtt_imported_anyway_works_and_never_blocks(broker, version):
    """An image without the pinned umqtt (here: the source tree, no lib/ beside the package) runs a newer one."""
    path = os.pathsep.join([".frozen", str(paths.FIRMWARE), str(STANDIN)])
    env = {"STANDIN_UMQTT": version, "STANDIN_UMQTT_BASE": str(paths.LIB / "umqtt" / "simple.py")}
    log = ride_out("blackhole", broker, ANSWER_AFTER_S + 3, path, env)
    assert f"umqtt.simple not pinned from {STANDIN}" in log


def test_the_pinned_umqtt_wins_over_one_ahead_of_it_in_sys_path(broker):
    """A board's sys.path is ['', '.frozen', '/lib']: a frozen umqtt.simple comes before the pinned one in lib/.
    Here a newer one sits in the same place, ahead of the firmware and its lib/."""
    root = build.firmware()
    path = os.pathsep.join([".frozen", str(STANDIN), str(root), str(root / "lib")])
    env = {"STANDIN_UMQTT": "1.5.0", "STANDIN_UMQTT_BASE": str(paths.LIB / "umqtt" / "simple.py")}
    report, log = run_link(procs.free_port(), 1, path, env)
    assert f"umqtt.simple 1.3.4 from {root / 'lib' / 'umqtt' / 'simple.mpy'}" in log, log


def _while_down(log):
    """(TCP connects given up, the meter's cycle counts from the debug heap lines) after the first give-up and
    before the link first connected."""
    lines = log.split("mqtt connected")[0].splitlines()
    first = next((i for i, line in enumerate(lines) if GIVEN_UP in line), len(lines))
    cycles = [int(line.rsplit(" ", 1)[1]) for line in lines[first:] if "debug: heap free" in line]
    return sum(GIVEN_UP in line for line in lines), cycles


def test_a_broker_host_that_is_down_costs_a_given_up_connect_never_the_meter(tmp_path, broker):
    """The broker's host is down on the LAN: no SYN-ACK ever comes (Proxy.blackhole), so a connect is never
    refused, it stays unanswered. The link gives each connect up and tries again, the meter is read meanwhile,
    the board is not reset, and values reach EVerest once the host answers."""
    proxy = Proxy(broker, blackholed=True)
    b = Bridge(tmp_path / "b", proxy.port, module_id="pmlan" + uuid.uuid4().hex[:6])
    b.config.update(log_level="debug", heap_log_s=1, watchdog_ms=5000)  # a stalled task resets within 5 s
    b.dir.mkdir()
    try:
        b.start_sim()
        b.start_firmware()

        def down_long_enough():
            given_up, cycles = _while_down(b.firmware_log())
            return given_up >= 2 and len(cycles) >= 2 and cycles[-1] > cycles[0]

        assert wait_until(down_long_enough, 30), b.firmware_log()
        assert proxy.accepted == 0, "a SYN got through the black hole"
        b.port = broker  # EVerest's side talks to the broker directly
        with b.everest() as ev:
            proxy.restore()
            ev.wait_for("powermeter_values", timeout=20)
        log = b.firmware_log()
        assert proxy.accepted >= 1 and b.alive(), log
        assert "no longer feeding" not in log and "watchdog expired" not in log, log
        assert "warn: mqtt connect failed: OSError(110" in log, log  # said once at warn, the retries at debug
    finally:
        b.stop()
        proxy.close()
