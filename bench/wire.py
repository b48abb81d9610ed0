"""Wire time per poll cycle, every profile at 9600 and 38400 baud: the firmware against the simulator.

measured     the real Meter and Master (bench/fw_cycle.py under the unix port) polling a simulated meter on a pty,
             cycle after cycle; the median cycle, from the first request sent to the last reply decoded.
minimum      computed for the same reads, what the line itself needs against this simulator: per read, the
             request and the reply at the line's character time (10 bits, 8N1), t3.5 (38.5 bit times; 1.75 ms
             above 19200 baud) before the reply and again before the next request, and the simulator's 1 ms
             turnaround. No master can poll these reads faster.
per quantity computed by the same rule for one read per field (and per exponent register), as EVerest's
             GenericPowermeter, mbmd and Tasmota poll.
learning     a simulated SDM630 that refuses reads over LEARN_LIMIT registers (exception 03, or no reply), polled
             with a storage directory and then again by a fresh run: the cycles lost before the first whole dataset,
             the learning cycle's time against a learned one, and whether the restart is refused anything.
"""

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from table import render, row

from meterbridge import build, procs
from meterbridge.codec import PROFILE_DIR, WIDTHS, load_profile
from meterbridge.sim.link import char_time, frame_gap
from meterbridge.sim.server import TURNAROUND

BENCH = Path(__file__).resolve().parent
BAUDS = (9600, 38400)
RATIO_MAX = 1.1  # measured cycle over the computed minimum
SDM630 = "eastron_sdm630_v2"
SDM630_REQUESTS_MAX = 3
SDM630_RATE_MIN = 2.0  # full datasets per second at 9600 baud
TIMEOUT_MS, RETRIES = 300, 1  # the config defaults


def minimum_s(counts, baud):
    """Seconds the line needs for reads of these register counts against the simulator (see the docstring)."""
    char, gap = char_time(baud, "N"), frame_gap(baud)
    return sum((8 + 5 + 2 * count) * char + 2 * gap + TURNAROUND for count in counts)


def per_quantity(profile):
    """Register counts of one read per field and per exponent register."""
    fields = profile["fields"].values()
    return [WIDTHS[f["type"]] for f in fields] + [1 for f in fields if "exp_reg" in f]


def _wait_serving(sim, log, timeout=15.0):
    end = time.monotonic() + timeout
    while b"sim: serving" not in log.read_bytes():
        if time.monotonic() > end or sim.poll() is not None:
            raise TimeoutError(f"simulator not serving:\n{log.read_text(errors='replace')}")
        time.sleep(0.02)


def measure(workdir, name, baud, cycles, sim_args=(), state=None, runs=1):
    """fw_cycle.py's results for `cycles` back-to-back polls of a simulated `name` at `baud`, `runs` times
    (a restart each; with `state` the meter keeps what it learns there)."""
    slave = load_profile(name).get("defaults", {}).get("slave", 1)
    link, log = workdir / f"{name}-{baud}", workdir / f"{name}-{baud}.log"
    sim = procs.start_sim(["--profile", name, "--slave", str(slave), "--baud", str(baud), "--parity", "N",
                           "--link", str(link), *sim_args], log=open(log, "wb"))
    try:
        _wait_serving(sim, log)
        cmd, env = procs.firmware_command(link)
        args = [link, baud, "N", PROFILE_DIR / f"{name}.json", slave, cycles, TIMEOUT_MS, RETRIES]
        args += [state] if state else []
        out = [json.loads(subprocess.run(cmd[:-2] + [str(BENCH / "fw_cycle.py"), *map(str, args)], env=env,
                                         capture_output=True, text=True, timeout=120, check=True).stdout)
               for _ in range(runs)]
    finally:
        procs.stop(sim)
    return out[0] if runs == 1 else out


LEARN_LIMIT = 40  # a simulated SDM630 that refuses reads over 40 registers (its plan reads 76 at once)


def learning_rows(workdir, cycles=6):
    """What learning a read limit costs: cycles until the first whole dataset, that cycle's wire time against
    a cycle once learned, and whether a restart with the saved limit is refused anything again."""
    out = []
    for over in ("exception", "silent"):
        state = workdir / f"learn-{over}"
        first, again = measure(workdir, SDM630, 9600, cycles, ("--max-read", str(LEARN_LIMIT), "--over-max", over),
                               state, runs=2)
        lost = first["oks"].index(True) if True in first["oks"] else len(first["oks"])
        learning, learned = first["us"][lost] if lost < cycles else 0, statistics.median(first["us"][lost + 1 :])
        planned = len(again["oks"]) * len(again["reads"])  # requests if nothing is refused or split
        refused_again = again["stats"][0] != planned or not all(again["oks"])
        answer = "exception 03" if over == "exception" else "no reply"
        out.append(row(f"learning a {LEARN_LIMIT}-register limit (SDM630 @ 9600, {answer} over it): cycles lost",
                       str(lost), "0: the refused read is split in the same cycle", None, "0", lost == 0))
        out.append(row(f"learning a {LEARN_LIMIT}-register limit ({answer}): the learning cycle",
                       f"{learning / 1000:.1f} ms", f"a cycle once learned {learned / 1000:.1f} ms", learning / learned,
                       "—", None))
        out.append(row(f"learning a {LEARN_LIMIT}-register limit ({answer}): after a restart",
                       f"{again['ok']} of {len(again['oks'])} cycles whole in {again['stats'][0]} requests",
                       f"{planned} planned: reads of {[n for _, n in again['reads']]} registers from the saved "
                       f"max_read {(again['learned'] or {}).get('max_read')}", None,
                       "nothing refused", not refused_again))
    return out


def _profile_rows(name, baud, got):
    """The row of one profile at one baud, and the SDM630's targets at 9600."""
    profile = load_profile(name)
    counts = [count for _, count in got["reads"]]
    if got["ok"] != len(got["us"]):
        return [row(f"wire {name} @ {baud}", "not measured", f"{got['ok']} of {len(got['us'])} cycles complete",
                    target="every cycle complete", ok=False)]
    cycle = statistics.median(got["us"][1:]) / 1e6  # the first cycle also opens the line
    least, naive = minimum_s(counts, baud), minimum_s(per_quantity(profile), baud)
    rows = [row(f"wire {name} @ {baud}: requests/cycle {len(counts)} (one per quantity {len(per_quantity(profile))})",
                f"{cycle * 1000:.1f} ms measured", f"minimum {least * 1000:.1f} ms; one per quantity "
                f"{naive * 1000:.1f} ms = {naive / least:.2f}× minimum", cycle / least, f"≤ {RATIO_MAX:g}× minimum",
                cycle / least <= RATIO_MAX)]
    if name == SDM630 and baud == 9600:
        rows.append(row(f"SDM630 full dataset ({len(profile['fields'])} values) @ 9600: requests", str(len(counts)),
                        f"{len(per_quantity(profile))} one per quantity", len(counts) / len(per_quantity(profile)),
                        f"≤ {SDM630_REQUESTS_MAX}", len(counts) <= SDM630_REQUESTS_MAX))
        rows.append(row("SDM630 full datasets per second @ 9600", f"{1 / cycle:.2f}/s",
                        f"one per quantity at best {1 / naive:.2f}/s", naive / cycle, f"≥ {SDM630_RATE_MIN:g}/s",
                        1 / cycle >= SDM630_RATE_MIN))
    return rows


def rows(quick=False):
    """Table rows (bench/table.py format) for every profile at every baud in BAUDS."""
    build.firmware()
    names = sorted(p.stem for p in PROFILE_DIR.glob("*.json"))
    out = []
    with tempfile.TemporaryDirectory(prefix="meterbridge-wire-") as tmp:
        for name in names:
            for baud in BAUDS:
                out += _profile_rows(name, baud, measure(Path(tmp), name, baud, 4 if quick else 12))
        out += learning_rows(Path(tmp))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer cycles per profile")
    print(render(rows(parser.parse_args().quick)))


if __name__ == "__main__":
    main()
