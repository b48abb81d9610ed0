"""Values per second per meter at a short poll period, against the configured rate."""

import time

from rig import Rig
from table import row

from meterbridge.everest import EverestClient

RATE_MIN = 0.95  # of the configured rate


def rows(workdir, port, period_ms=100, seconds=10.0, baud=115200):
    """Powermeter values per second at period_ms, against the configured 1000/period_ms."""
    rig = Rig(workdir, port, period_ms, baud=baud)
    with rig, EverestClient("127.0.0.1", port, rig.module_id) as ev:
        rig.spawn(*rig.command())
        try:
            first = ev.wait_for("powermeter_values", timeout=15)
        except TimeoutError as e:
            raise RuntimeError(f"{e}\n{rig.log_text()[-2000:]}") from None
        time.sleep(seconds)
        got = [m for m in ev.messages("powermeter_values") if m.seq >= first.seq]
    rate = (len(got) - 1) / (got[-1].received - first.received)
    want = 1000 / period_ms
    return [row(f"values/s per meter (period_ms={period_ms}, {baud} baud, {seconds:g} s)", f"{rate:.2f}/s",
                f"configured {want:g}/s", rate / want, f"≥ {RATE_MIN:g}× configured",
                rate >= RATE_MIN * want)]
