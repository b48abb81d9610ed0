"""Updates over MQTT (meterbridge update): how long one takes, and the heap the board has left while it runs.

The firmware runs as a board boots it (meterbridge.boardrun: slots, resets) with its code from .mpy files,
at the heap the tests run the bridge at (100k): the bridge hands the command to a fresh start (receive
mode), which takes the stream. The host side is meterbridge.update.Board, as `meterbridge update` drives it.
Baseline of the transfer: the same Board code against a paho stand-in board that answers at once (no reset)
and writes nothing, on the same broker; baseline of the heap: the bridge's own floor before the update,
from its debug heap lines. The floor during the update is receive mode's, reported with `switching`.
"""

import json
import re
import struct
import time

import paho.mqtt.client as mqtt
from rig import Rig
from table import failed, row

from meterbridge.everest import EverestClient
from meterbridge.update import Board, firmware_files

KEY = "be" * 32
HEAPSIZE = "100k"  # tests/conftest.py HEAPSIZE
HEALTH_S = 2
_CHUNK = 2048 - 4  # the board's chunks: broker.max_payload (default 2048) less the 4-byte offset
_LIVE = re.compile(rb"heap free (\d+) floor")


class _StandIn:
    """A board that answers the update protocol and keeps nothing: the cost of MQTT and the host alone."""

    def __init__(self, port, client_id, chunk):
        self.base = f"meterbridge/{client_id}/update/"
        self.chunk = chunk
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.c.on_message = self._on_message
        self.c.connect("127.0.0.1", port)
        self.c.subscribe([(self.base + "cmd", 0), (self.base + "data", 0)])
        self.c.loop_start()
        time.sleep(0.5)  # the subscription is in place

    def _say(self, **kw):
        self.c.publish(self.base + "status", json.dumps(kw))

    def _on_message(self, _c, _u, msg):
        if msg.topic.endswith("/cmd"):
            req = json.loads(msg.payload[65:])
            if req["kind"] == "hello":
                self._say(re="hello", state="ready", version=0, trial=False, platform="unix", chunk=self.chunk,
                          free=1 << 30)
            else:
                self._say(re="cmd", state="receiving", version=req["version"], chunk=self.chunk)
        elif len(msg.payload) > 4:
            self._say(ack=struct.unpack(">I", msg.payload[:4])[0] + len(msg.payload) - 4)
        else:
            self._say(re="data", state="switching")

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


def _floor(log):
    return min((int(m) for m in _LIVE.findall(log)), default=None)


def rows(workdir, port):
    files = firmware_files("unix")
    size = sum(len(d) for d in files.values())
    with Rig(workdir, port, period_ms=500, log_level="debug", heap_log_s=1, update_key=KEY) as rig, \
            EverestClient("127.0.0.1", port, rig.module_id) as ev:
        rig.spawn(*rig.command(heapsize=HEAPSIZE, form="board"))
        ev.wait_for("powermeter_values", timeout=20)
        time.sleep(5)  # the steady state's debug heap lines
        steady = _floor(rig.fw_log.read_bytes())
        client_id = json.loads(rig.config.read_text())["broker"]["client_id"]
        board = Board("127.0.0.1", port, client_id, KEY)
        try:
            t0 = time.monotonic()
            reply = board.send("firmware", files, int(time.time()), HEALTH_S, 60)
            t_switch = time.monotonic() - t0
            result = board.result(reply["version"], 90)
            t_commit = time.monotonic() - t0
        finally:
            board.close()
    stand_in = _StandIn(port, "bench-stand-in", _CHUNK)
    host = Board("127.0.0.1", port, "bench-stand-in", KEY)
    try:
        t0 = time.monotonic()
        host.send("firmware", files, 1, HEALTH_S, 60)
        t_base = time.monotonic() - t0
    finally:
        host.close()
        stand_in.close()
    if steady is None or "heap_floor" not in reply:
        return [failed("update heap floor", "no debug heap lines or no heap_floor in the board's reply")]
    return [
        row(f"update over MQTT, hello → board switching ({len(files)} files, {size} B, .mpy files, {HEAPSIZE}; the "
            "board resets into receive mode first)",
            f"{t_switch:.2f} s", f"the same host code against a stand-in board that writes nothing {t_base:.2f} s",
            t_switch / t_base),
        row(f"update over MQTT, command → committed (reset, start, {HEALTH_S} s health window)", f"{t_commit:.2f} s",
            f"health window {HEALTH_S} s", t_commit / HEALTH_S, "committed", result["state"] == "committed"),
        row(f"heap free floor during an update, {HEAPSIZE}, code from .mpy files: receive mode's lowest free after a "
            "collection as chunks arrive", f"{reply['heap_floor']} B", f"the bridge's floor before it {steady} B",
            reply["heap_floor"] / steady),
    ]
