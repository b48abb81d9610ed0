"""Shared fixtures: a private mosquitto per session, and bridges (simulator + firmware) per test."""

import json
import os
import signal
import threading
import time
import uuid
from decimal import Decimal

import paho.mqtt.client as mqtt
import paho.mqtt.publish as publish
import pytest

from meterbridge import procs
from meterbridge.codec import load_profile
from meterbridge.everest import EverestClient

# the firmware's heap in tests unless a test says otherwise; an ESP32 has about 100 KB free
HEAPSIZE = os.environ.get("MB_HEAPSIZE", "100k")
# how the firmware's code is loaded unless a test says otherwise: "mpy" files, or "rom" (in place, ROMFS)
FORM = os.environ.get("MB_FORM", "mpy")


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    """Port of a mosquitto on 127.0.0.1 that lives for the whole session."""
    port = procs.free_port()
    proc = procs.start_mosquitto(port, tmp_path_factory.mktemp("broker"))
    yield port
    procs.stop(proc)


class Bridge:
    """One simulated meter on a pty and the firmware reading it, as real processes."""

    def __init__(self, workdir, broker_port, profile="eastron_sdm630_v2", slave=1, baud=9600, prefix="",
                 module_id="pm1", period_ms=500, sim_args=(), heapsize=HEAPSIZE, meter=None, form=FORM):
        self.dir = workdir
        self.port = broker_port
        self.prefix = prefix
        self.module_id = module_id
        self.link = str(workdir / "meter")
        self.truth_path = workdir / "truth.jsonl"
        self.log_path = workdir / "firmware.log"
        self.sim_log = workdir / "sim.log"
        self.heapsize = heapsize
        self.form = form
        self.sim_cmd = ["--profile", profile, "--slave", str(slave), "--baud", str(baud), "--link", self.link,
                        "--truth", str(self.truth_path), *sim_args]
        m = {"module_id": module_id, "profile": profile, "slave": slave, "baud": baud, "period_ms": period_ms,
             "uart": {"device": self.link}, "timeout_ms": 300}
        m.update(meter or {})
        self.config = {"broker": {"host": "127.0.0.1", "port": broker_port, "prefix": prefix,
                                  "client_id": "mb-" + uuid.uuid4().hex[:12]},  # one per bridge: a session outlives it
                       "meters": [m], "storage": str(workdir / "state")}
        self.sim = self.fw = None

    def start_sim(self):
        self.sim = procs.start_sim(self.sim_cmd, log=open(self.sim_log, "wb"))
        procs.wait_path(self.link)

    def start_firmware(self):
        path = self.dir / "config.json"
        path.write_text(json.dumps(self.config))
        self.fw = procs.start_firmware(path, self.heapsize, log=open(self.log_path, "ab"), form=self.form)

    def start(self):
        self.start_sim()
        self.start_firmware()
        self.wait_online()
        return self

    def wait_online(self, timeout=10.0):
        """Until the firmware's retained status says online (it has subscribed by then)."""
        topic = f"meterbridge/{self.config['broker']['client_id']}/status"
        got = threading.Event()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        client.on_connect = lambda c, *_: c.subscribe(topic)
        client.on_message = lambda c, u, msg: msg.payload.startswith(b"online") and got.set()
        client.connect("127.0.0.1", self.port)
        client.loop_start()
        try:
            if not got.wait(timeout):
                raise TimeoutError(f"firmware not online within {timeout} s:\n{self.firmware_log()}")
        finally:
            client.disconnect()
            client.loop_stop()

    def everest(self):
        return EverestClient("127.0.0.1", self.port, self.module_id, self.prefix)

    def toggle_meter(self):
        """Make the simulated meter stop answering, or answer again."""
        self.sim.send_signal(signal.SIGUSR1)

    def cut_meter_power(self):
        """A short power cut at the simulated meter (a signing meter forgets its clock and metadata)."""
        self.sim.send_signal(signal.SIGUSR2)

    def truth(self):
        """The simulator's served datasets, oldest first: [(time, {path: Decimal})]."""
        out = []
        for line in self.truth_path.read_text().splitlines():
            rec = json.loads(line)
            out.append((rec["t"], {k: Decimal(v) for k, v in rec["values"].items() if v is not None}))
        return out

    def firmware_log(self):
        return self.log_path.read_text(errors="replace")

    def alive(self):
        return self.fw.poll() is None

    def stop(self):
        procs.stop(self.fw)
        procs.stop(self.sim)
        self.clear_retained_key()

    def clear_retained_key(self):
        """The firmware publishes a signing meter's key retained: gone after the test, as if never sent."""
        if "ocmf" not in load_profile(self.config["meters"][0]["profile"]):
            return
        topic = f"{self.prefix}everest_api/1/powermeter/{self.module_id}/m2e/public_key_ocmf"
        try:
            publish.single(topic, b"", retain=True, hostname="127.0.0.1", port=self.port)
        except OSError:
            pass  # the broker of this test is gone already


@pytest.fixture
def bridge(tmp_path, broker):
    """Factory: bridge(**options) starts a Bridge; all are stopped after the test."""
    made = []

    def make(**kw):
        b = Bridge(tmp_path / f"b{len(made)}", broker, **kw)
        b.dir.mkdir()
        made.append(b)
        return b.start()

    yield make
    for b in made:
        b.stop()


def flatten(powermeter):
    """{"energy_Wh_import.total": Decimal, ...} of a parsed Powermeter message."""
    flat = {}
    for obj, val in powermeter.items():
        if isinstance(val, dict):
            for key, v in val.items():
                flat[f"{obj}.{key}"] = Decimal(v) if not isinstance(v, Decimal) else v
    return flat


def wait_until(cond, timeout=10.0, step=0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(step)
    return False
