"""`meterbridge scan`: find the meters on an RS-485 bus, name their profile, probe their read limit.

For each line setting (baud, parity) in turn, every slave id in the range gets one short read; any valid
frame from that id (values or an exception) means a device is there. Each device found is then read at
every profile's fields and the profile whose registers answer with the most plausible values is named
(frequency 45-65 Hz weighs most). Its read limit is found by bisection: the longest read from its first
register that is answered. The whole scan keeps to --deadline.

Anchor: mbmd's scan (volkszaehler/mbmd fb8f9c2, cmd/scan.go) walks ids 1..247 at one line setting given by
the user, reads each known type's L1 voltage and takes a value within 10 % of 110 or 230 V as that type. Here
every line setting is tried and a profile is chosen by all of its fields, the voltage test included.
"""

import argparse
import json
import sys
import time

import serial
from pymodbus.framer import FramerRTU
from rich import box
from rich.console import Console
from rich.table import Table

from ..codec import PROFILE_DIR, WIDTHS, ProfileError, decode_exact, load_profile
from ..errors import CommandError
from ..sim.link import char_time, frame_gap, open_serial

BAUDS = (9600, 19200, 38400, 115200, 2400, 4800, 57600)  # the usual first; a meter's manual lists its own
PARITIES = "NEO"  # Modbus over serial line v1.02, 2.5.1: even parity is the default, none and odd are allowed
MAX_READ = 125  # Modbus Application Protocol v1.1b3, 6.3/6.4
# physically plausible |value| per Powermeter object (the firmware's plausibility check uses the same scale)
_RANGES = {"voltage_V": (50, 1000), "current_A": (0, 10000), "power_W": (0, 3e7), "VAR": (0, 3e7),
           "frequency_Hz": (45, 65), "energy_Wh_import": (0, 1e11), "energy_Wh_export": (0, 1e11)}
_FREQUENCY_WEIGHT = 5
_MAINS = (110, 230)  # nominal voltages: a reading within 10 % of one counts double (mbmd's scan test)


def add_arguments(parser):
    """Add the scan options to its subparser."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = __doc__.split("\n", 2)[2]
    parser.add_argument("--port", required=True, metavar="DEVICE", help="the RS-485 adapter, e.g. /dev/ttyUSB0")
    parser.add_argument("--baud", type=_ints, default=BAUDS, metavar="B[,B...]",
                        help=f"baud rates to try, in order (default: {','.join(map(str, BAUDS))})")
    parser.add_argument("--parity", default=PARITIES, metavar="NEO", help="parities to try, in order (default NEO)")
    parser.add_argument("--ids", type=_range, default=(1, 247), metavar="A..B", help="slave ids (default 1..247)")
    parser.add_argument("--timeout-ms", type=int, default=60, metavar="MS",
                        help="wait for a reply to start, beyond its wire time (default 60)")
    parser.add_argument("--deadline", type=float, default=60.0, metavar="S",
                        help="stop looking for more devices after S seconds (default 60)")
    parser.add_argument("--profile", action="append", metavar="NAME", help="only these profiles (default: all)")
    parser.add_argument("--json", action="store_true", help="print the meters found as JSON instead of a table")


def run(args):
    """Scan, then print a table and a config entry per meter found."""
    profiles = _profiles(args.profile)
    if any(p not in "NEO" for p in args.parity) or not args.parity:
        raise CommandError("--parity: letters N, E, O")
    end = time.monotonic() + args.deadline
    found, skipped = [], []
    for baud in args.baud:
        for parity in args.parity:
            if time.monotonic() >= end:
                skipped.append(f"{baud} 8{parity}1")
                continue
            try:
                line = Line(args.port, baud, parity, args.timeout_ms)
            except (OSError, serial.SerialException, ValueError) as e:
                raise CommandError(f"cannot open {args.port} at {baud} 8{parity}1: {e}") from e
            with line:
                for slave in range(args.ids[0], args.ids[1] + 1):
                    if time.monotonic() >= end:
                        skipped.append(f"{baud} 8{parity}1 from id {slave}")
                        break
                    if any(m["slave"] == slave for m in found) or not line.present(slave):
                        continue
                    found.append(identify(line, slave, profiles))
    _print(found, skipped, args.json, args.port)
    return 0 if found else 1


class Line:
    """One line setting on the port: Modbus RTU requests and their replies, every wait bounded."""

    def __init__(self, port, baud, parity, timeout_ms):
        self.baud, self.parity = baud, parity
        self._char = char_time(baud, parity)
        self._timeout = timeout_ms / 1000
        self._port = open_serial(port, baud, parity)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._port.close()

    def read(self, slave, fc, addr, count):
        """The words read, an exception code (int), or None when nothing valid came back."""
        request = bytes((slave, fc)) + addr.to_bytes(2, "big") + count.to_bytes(2, "big")
        reply = self._transact(request + _crc(request), 5 + 2 * count)
        if reply is None:
            return None
        if reply[1] & 0x80:
            return reply[2]
        return [int.from_bytes(reply[3 + 2 * i : 5 + 2 * i], "big") for i in range(count)]

    def present(self, slave):
        """Whether slave answers anything to a one-register read (a value or an exception: both are a device)."""
        return self.read(slave, 3, 0, 1) is not None or self.read(slave, 4, 0, 1) is not None

    def _transact(self, frame, size):
        """Send frame; the reply of size bytes (or a 5-byte exception) from its slave with a good CRC, or None."""
        time.sleep(frame_gap(self.baud))  # t3.5 before a frame
        self._port.reset_input_buffer()
        self._port.write(frame)
        deadline = time.monotonic() + (len(frame) + size) * self._char + self._timeout
        got = b""
        while time.monotonic() < deadline:
            got += self._port.read(size - len(got) if len(got) >= 2 else 256)
            while got and got[0] != frame[0]:
                got = got[1:]  # a stray byte ahead of the reply
            if len(got) >= 5 and got[1] == frame[1] | 0x80:
                return got[:5] if _crc(got[:3]) == got[3:5] else None
            if len(got) >= size:
                ok = got[1] == frame[1] and got[2] == size - 5 and _crc(got[: size - 2]) == got[size - 2 : size]
                return got[:size] if ok else None
            time.sleep(0.002)
        return None


def identify(line, slave, profiles):
    """A found device: its best matching profile(s), what they read, and its read limit."""
    scores = {}
    for name, profile in profiles.items():
        score, evidence = _score(line, slave, profile)
        if score is not None:
            scores[name] = (score, evidence)
    best = max((s for s, _ in scores.values()), default=None)
    names = sorted(n for n, (s, _) in scores.items() if best is not None and best > 0 and s == best)
    meter = {"slave": slave, "baud": line.baud, "parity": line.parity, "profiles": names,
             "evidence": scores[names[0]][1] if names else "", "max_read": None}
    if names:
        profile = profiles[names[0]]
        first = min(f["reg"] for f in profile["fields"].values())
        meter["max_read"] = _limit(line, slave, profile["function_code"], first)
    return meter


def _score(line, slave, profile):
    """How well profile's fields read on slave: (score, a few values as text), or (None, why) when its
    frequency or import energy cannot be read at all."""
    score, shown = 0, []
    order = profile["word_order"]
    for path, field in sorted(profile["fields"].items()):
        words = line.read(slave, profile["function_code"], field["reg"], WIDTHS[field["type"]])
        exp = line.read(slave, profile["function_code"], field["exp_reg"], 1) if "exp_reg" in field else None
        if not isinstance(words, list) or "exp_reg" in field and not isinstance(exp, list):
            if path.startswith(("frequency", "energy_Wh_import.total")):
                return None, f"{path} not readable"
            score -= 1
            continue
        value = decode_exact(field, words, order, exp)
        low, high = _RANGES[path.partition(".")[0]]
        if value is None or not value or not low <= abs(value) <= high:
            if path.startswith("frequency"):
                return None, f"{path} implausible"
            continue
        score += _FREQUENCY_WEIGHT if path.startswith("frequency") else 1
        if path.startswith("voltage") and any(abs(value - v) <= v // 10 for v in _MAINS):
            score += 1
        if path.startswith(("frequency", "voltage_V.L1", "energy_Wh_import.total")):
            shown.append(f"{path.partition('.')[0]} {float(value):.6g}")
    return score, ", ".join(shown)


def _limit(line, slave, fc, addr):
    """The longest read from addr that slave answers with values (bisection over 1..125, or to the 64K end)."""
    good, bad = 0, min(MAX_READ, 0x10000 - addr) + 1
    while bad - good > 1:
        mid = (good + bad) // 2
        if isinstance(line.read(slave, fc, addr, mid), list):
            good = mid
        else:
            bad = mid
    return good


def _print(found, skipped, as_json, port):
    """The meters found: a table and a config entry each (or JSON)."""
    if as_json:
        print(json.dumps(found, indent=1))
        if skipped:
            print("scan: not scanned (--deadline reached): " + "; ".join(skipped), file=sys.stderr)
        return
    console = Console()
    table = Table(title="meters found", box=box.SIMPLE)
    for column in ("slave", "line", "profile", "reads", "max read"):
        table.add_column(column)
    for m in found:
        table.add_row(str(m["slave"]), f"{m['baud']} 8{m['parity']}1", " or ".join(m["profiles"]) or "unknown",
                      m["evidence"], str(m["max_read"]) if m["max_read"] is not None else "—")
    console.print(table)
    for m in found:
        if not m["profiles"]:
            continue
        entry = {"module_id": f"pm{m['slave']}", "profile": m["profiles"][0], "slave": m["slave"], "baud": m["baud"],
                 "parity": m["parity"], "uart": {"device": port}}
        console.print(f"config for slave {m['slave']} (a meters[] entry; on a board, uart is its UART):", style="bold")
        console.print_json(json.dumps(entry))
        limit = load_profile(m["profiles"][0]).get("max_read", MAX_READ)
        if m["max_read"] is not None and m["max_read"] < limit:
            console.print(f"  it answers reads of at most {m['max_read']} registers, its profile allows {limit}: "
                          "the firmware learns that at its first refusal (README, read plans that learn)")
    if skipped:
        console.print("not scanned (--deadline reached): " + "; ".join(skipped), style="yellow")
    if not found:
        console.print("no meter answered: check A/B wiring, termination, the adapter, and the ids and line settings")


def _profiles(names):
    """{name: profile} of the profiles to match against."""
    names = names or sorted(p.stem for p in PROFILE_DIR.glob("*.json"))
    try:
        return {name: load_profile(name) for name in names}
    except ProfileError as e:
        raise CommandError(e) from e


def _crc(data):
    """CRC-16/MODBUS of data, low byte first (Modbus over serial line v1.02, 6.2.2), by the simulator's pymodbus."""
    return FramerRTU.compute_CRC(data).to_bytes(2, "big")


def _ints(text):
    """argparse type: B[,B...]."""
    try:
        return tuple(int(b) for b in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text}: baud rates separated by commas") from None


def _range(text):
    """argparse type: A..B (or one id)."""
    first, _, last = text.partition("..")
    try:
        ids = (int(first), int(last or first))
    except ValueError:
        ids = None
    if ids is None or not 1 <= ids[0] <= ids[1] <= 247:
        raise argparse.ArgumentTypeError(f"{text}: slave ids A..B within 1..247")
    return ids
