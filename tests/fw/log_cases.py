"""log.py's queue drained through App._report and state.py by a link whose publish itself logs (as a link
going down does). Prints one JSON line of what happened; test_state.py checks it.
"""

import json

from meterbridge import log
from meterbridge.app import App


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


class Bare(App):
    def __init__(self):  # only what _report reads: no meters, a link, a document just sent
        self.modules = []
        self.link = Link()
        self.dropped = 0
        self.heap_min = 1 << 20
        self._shown = [0, 1, False, True, 0, 0, 0]


app = Bare()
log.log(log.ERROR, "x" * 400)
for i in range(10):
    log.log(log.WARN, "line", i)
log.log(log.INFO, "an info line is not queued")
queued, dropped = len(log.lines), log.dropped
for _ in range(12):
    app._report()
left = len(log.lines)
app.link.noisy = False
for _ in range(10):
    app._report()
print(json.dumps({"queued": queued, "dropped": dropped, "left": left, "sent": app.link.sent}))
