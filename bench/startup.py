"""Boot time: process spawn to the first powermeter_values, meter and broker already up."""

import statistics
import time

from rig import BENCH, Rig
from table import row

from meterbridge import procs
from meterbridge.everest import EverestClient

TARGET_S = 1.5


def _first_publish(rig, ev, cmd, env):
    """Seconds from spawning cmd to the next m2e/powermeter_values the client sees."""
    start = ev.mark()
    t0 = time.time()
    proc = rig.spawn(cmd, env)
    try:
        return ev.wait_for("powermeter_values", start=start, timeout=10).received - t0
    except TimeoutError as e:
        raise RuntimeError(f"{e}\n{rig.log_text()[-2000:]}") from None
    finally:
        procs.stop(proc)


def rows(workdir, port, runs=9):
    """Median spawn → first values of the firmware, and of a bare umqtt publish under the same interpreter."""
    with Rig(workdir, port) as rig, EverestClient("127.0.0.1", port, rig.module_id) as ev:
        fw_cmd = rig.command()
        topic = ev.base + "m2e/powermeter_values"
        floor_cmd = rig.command(BENCH / "mp_publish.py", (port, topic))
        fw, floor = [], []
        for _ in range(runs):
            fw.append(_first_publish(rig, ev, *fw_cmd))
            floor.append(_first_publish(rig, ev, *floor_cmd))
    med, base = statistics.median(fw), statistics.median(floor)
    return [row(f"boot → first powermeter_values (median of {runs}, max {max(fw):.2f} s)", f"{med:.2f} s",
                f"unix port spawn → one umqtt publish {base:.2f} s", med / base, f"≤ {TARGET_S:g} s",
                med <= TARGET_S)]
