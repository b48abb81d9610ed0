"""state.Reporter's log queue (log.sink), drained through a link whose publish itself logs (as a link going down
does). Prints one JSON line of what happened; test_state.py checks it.
"""

import json

from meterbridge import log
from meterbridge.state import Reporter


class Link:
    up = True
    noisy = True
    connects = 1
    refused = 0
    status_topic = b"meterbridge/b1/status"

    def __init__(self):
        self.sent = []

    def publish(self, topic, msg, retain=False):
        if topic.endswith(b"/log"):
            self.sent.append(msg)
            if self.noisy:
                log.log(log.WARN, "publishing logged this")  # MqttLink._down logs when a publish fails
        return True


class App:
    modules = []
    dropped = 0
    heap_min = 1 << 20
    doc = None  # made at start-up on a board (stages.py): state.Reporter makes its own

    def __init__(self):
        self.link = Link()


log.log(log.WARN, "before anything drains the log: not kept")
app = App()
report = Reporter(app)
log.log(log.ERROR, "x" * 400)
for i in range(10):
    log.log(log.WARN, "line", i)
log.log(log.INFO, "an info line is not queued")
queued, dropped = len(report.lines), report.dropped
for _ in range(12):
    report.tick()
left = len(report.lines)
app.link.noisy = False
for _ in range(10):
    report.tick()
print(json.dumps({"queued": queued, "dropped": dropped, "left": left, "sent": app.link.sent}))
