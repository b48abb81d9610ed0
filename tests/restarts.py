"""Broker restarts under a running bridge, and how long the bridge takes to publish again."""

import threading
import time

import paho.mqtt.client as mqtt

from conftest import Bridge, wait_until
from meterbridge import procs


class Recorder:
    """Every message on the broker, with receive times: the view of a wiretap."""

    def __init__(self, port, topic="#"):
        self.msgs = []
        self._ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda c, *_: c.subscribe(topic)
        self.client.on_subscribe = lambda *_: self._ready.set()
        self.client.on_message = lambda c, u, m: self.msgs.append((time.monotonic(), m.topic, bytes(m.payload)))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._ready.wait(5)

    def topics(self, prefix=""):
        return [t for _, t, _ in self.msgs if t.startswith(prefix)]

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def restart_delays(workdir, count):
    """Restart the broker count times; return (seconds from each return to the next values, alive)."""
    port = procs.free_port()
    broker = procs.start_mosquitto(port, workdir)
    b = Bridge(workdir / "b", port)
    b.dir.mkdir()
    b.start()
    delays = []
    try:
        for _ in range(count):
            procs.stop(broker)
            time.sleep(0.3)
            broker = procs.start_mosquitto(port, workdir)
            back = time.monotonic()
            rec = Recorder(port, "everest_api/1/powermeter/pm1/m2e/powermeter_values")
            try:
                if wait_until(lambda r=rec: r.msgs, 10):
                    delays.append(rec.msgs[0][0] - back)
            finally:
                rec.close()
        return delays, b.alive()
    finally:
        b.stop()
        procs.stop(broker)
