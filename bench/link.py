"""The MQTT link against brokers that do not answer: how long the loop is held up at most, and how soon values
flow once the broker answers (tests/test_link_faults.py's fake broker and firmware script, timed here)."""

import sys
import threading
import time

from table import row

from meterbridge import paths

sys.path.insert(0, str(paths.REPO / "tests"))
from tcpproxy import Proxy  # noqa: E402
from test_link_faults import ANSWER_AFTER_S, DRIBBLE_S, FakeBroker, run_link  # noqa: E402

MODES = (("blackhole", "accepts TCP, never answers", ANSWER_AFTER_S + 3),
         ("down", "host down (SYN never answered)", ANSWER_AFTER_S + 3),
         ("dribble", "CONNACK one byte every 1.9 s", 4 * DRIBBLE_S + 3),
         ("http", "answers HTTP 400", ANSWER_AFTER_S + 3))


def _one(mode, upstream, seconds):
    proxy = None
    if mode == "down":  # the fake broker only relays and sees the first values; the black hole is in front of it
        fake = FakeBroker("blackhole", upstream)
        fake.answer()
        proxy = Proxy(fake.port, blackholed=True)

        def answer():
            fake.answer_t = time.monotonic()
            proxy.restore()

        threading.Timer(ANSWER_AFTER_S, answer).start()
    else:
        fake = FakeBroker(mode, upstream)
        if mode != "dribble":
            threading.Timer(ANSWER_AFTER_S, fake.answer).start()
    try:
        report, _ = run_link(proxy.port if proxy else fake.port, seconds)
    finally:
        if proxy:
            proxy.close()
        fake.close()
    after = fake.first_value_t - fake.answer_t if fake.first_value_t else None
    return report, after


def rows(port):
    out = []
    for mode, what, seconds in MODES:
        report, after = _one(mode, port, seconds)
        late = report["late_ms"]
        out.append(row(f"loop held up at most, broker {what} (issue 13: poll period kept within 0.5 s)",
                       f"{late} ms", "a 20 ms ticker's period", late / 20, "≤ 500 ms",
                       late <= 500 and report["crash"] is None))
        out.append(row(f"values after the broker answers, broker {what}",
                       "none" if after is None else f"{after:.2f} s", "the broker's answer", None, "≤ 2 s",
                       after is not None and after <= 2.0))
    return out
