"""The state document and the log topic (firmware/meterbridge/state.py, log.py), as a person reads them."""

import json
import threading
import time
from importlib.metadata import version

import paho.mqtt.client as mqtt

from conftest import Bridge, wait_until
from fw import run

PASSWORD = "s3cret-never-shown"
VERSION = version("meterbridge")  # pyproject.toml's


class Watch:
    """Everything the broker carries under meterbridge/<client_id>/, in arrival order."""

    def __init__(self, port, client_id):
        self.base = f"meterbridge/{client_id}/"
        self.got = []
        self._lock = threading.Lock()
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self._client.on_connect = lambda c, *_: c.subscribe(self.base + "#")
        self._client.on_message = self._on_message
        self._client.connect("127.0.0.1", port)
        self._client.loop_start()

    def _on_message(self, client, userdata, msg):
        with self._lock:
            self.got.append((msg.topic[len(self.base):], msg.payload.decode()))

    def of(self, topic):
        with self._lock:
            return [payload for top, payload in self.got if top == topic]

    def states(self):
        return [json.loads(p) for p in self.of("state")]

    def wait_state(self, cond, timeout=15):
        """The first document from now on that meets cond."""
        seen = len(self.states())
        assert wait_until(lambda: any(cond(s) for s in self.states()[seen:]), timeout), self.states()[-3:]
        return next(s for s in self.states()[seen:] if cond(s))

    def close(self):
        self._client.disconnect()
        self._client.loop_stop()


def pm1(state):
    return state["meters"]["pm1"]


def test_the_state_document_follows_changes_not_poll_cycles(broker, tmp_path):
    # the meter serves 40 registers a read at most (the SDM630 profile plans longer ones): the bridge learns it
    b = Bridge(tmp_path, broker, period_ms=250, heapsize="128k", sim_args=("--max-read", "40"))
    client_id = b.config["broker"]["client_id"]
    b.config["broker"].update(username="meter", password=PASSWORD, allow_plain_password=True)
    watch = Watch(broker, client_id)
    try:
        b.start()
        up = watch.wait_state(lambda s: pm1(s)["online"])
        assert up["firmware"] == VERSION and up["reset"] is None and up["clock"] == "set"
        assert up["umqtt"] == "1.3.4"  # the registry package tools/fetch_umqtt.py pins
        assert 0 < up["heap"]["floor"] <= up["heap"]["free"] and up["link"]["connects"] == 1
        assert pm1(up)["transaction"] is None and pm1(up)["last_error"] is None
        assert set(pm1(up)["errors"]) >= {"timeout", "crc", "exception", "garbage"}
        assert 0 < pm1(up)["read_limits"]["max_read"] <= 40 and pm1(up)["read_limits"]["holes"] == []
        # counters move every 250 ms, but they are no change: no document before the 60 s period
        n, cycles = len(watch.states()), pm1(up)["cycles"]
        time.sleep(7)
        assert len(watch.states()) == n, watch.states()[n:]

        with b.everest() as ev:
            assert ev.start_transaction("tx-state")["status"] == "NOT_SUPPORTED"
            watch.wait_state(lambda s: pm1(s)["transaction"] == "tx-state")
            ev.stop_transaction("tx-state")
            watch.wait_state(lambda s: pm1(s)["transaction"] is None and pm1(s)["cycles"] > cycles)

        b.toggle_meter()  # silent: offline, with its error, and a warn line on the log topic
        down = watch.wait_state(lambda s: not pm1(s)["online"])
        assert pm1(down)["last_error"] == "timeout" and pm1(down)["errors"]["timeout"] >= 2
        assert 0 <= pm1(down)["last_error_s"] <= down["uptime_s"]
        assert wait_until(lambda: any("warn: pm1 meter unreachable" in p for p in watch.of("log")), 10), \
            watch.of("log")
        assert all(PASSWORD not in payload for _, payload in watch.got)
        assert watch.of("status")[-1].startswith("online")
    finally:
        watch.close()
        b.stop()


def test_a_board_at_the_tightest_heap_has_its_state_and_log_topics(broker, tmp_path):
    """Every board tells its state (issue 16), also at the heap the non-signing profiles are tested at
    (test_small_heap.py): an SDM630, the largest of them, at -X heapsize=64k with its code in ROMFS."""
    b = Bridge(tmp_path, broker, period_ms=250, heapsize="64k", form="rom")
    watch = Watch(broker, b.config["broker"]["client_id"])
    try:
        b.start()
        up = watch.wait_state(lambda s: pm1(s)["online"])
        assert 0 < up["heap"]["floor"] <= up["heap"]["free"] and pm1(up)["cycles"] > 0
        b.toggle_meter()  # silent: a change (a document) and a warn line on the log topic
        assert pm1(watch.wait_state(lambda s: not pm1(s)["online"]))["last_error"] == "timeout"
        assert wait_until(lambda: any("warn: pm1 meter unreachable" in p for p in watch.of("log")), 10), \
            watch.of("log")
        b.toggle_meter()
        watch.wait_state(lambda s: pm1(s)["online"])
        log = b.firmware_log()
        assert "MemoryError" not in log and "out of memory" not in log, log[-2000:]
        assert b.alive()
    finally:
        watch.close()
        b.stop()


def test_the_log_queue_is_bounded_and_draining_it_never_recurses():
    out = json.loads(run("log_cases.py"))
    assert out["queued"] == 6 and out["dropped"] == 5  # 11 lines: the queue keeps 6, the rest are counted
    sent = out["sent"]
    assert sent[0].startswith("error: xxx") and len(sent[0]) == len("error: ") + 160  # a long line is cut
    assert sent[1:6] == [f"warn: line {i}" for i in range(5)]
    # each publish logged a line, which only joined the queue: one line per second (per _report), no loop
    assert out["left"] == 5 and len(sent) == 12 + 5 + 1
    logged = 11 + 12  # the first lines, and one per publish while the link was noisy
    assert sent[-1] == f"warn: {logged - (len(sent) - 1)} log lines dropped"
    assert not any("info" in line or "before anything" in line for line in sent)
