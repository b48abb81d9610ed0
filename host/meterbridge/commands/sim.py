"""`meterbridge sim`: simulated Modbus RTU meters on a pty (wire-timed) or a real serial port."""

import argparse
import math
import random
import sys

import serial

from ..codec import ProfileError, load_profile
from ..errors import CommandError
from ..sim.control import Control
from ..sim.faults import Faults
from ..sim.link import PtyLink, SerialLink
from ..sim.meter import Meter
from ..sim.ocmf import load_key, public_hex
from ..sim.server import Server
from ..sim.truth import TruthLog

EPILOG = """\
meters:
  One process serves one or more slave ids on one line. Each meter is a profile (a name from
  firmware/profiles/ or a path to a .json file) and a slave id (default: the profile's defaults.slave):
    --profile eastron_sdm630_v2 --slave 1                      one meter
    --meter eastron_sdm630_v2:1 --meter ./my_meter.json:2      several (may be mixed with --profile)
    --meter eastron_sdm72d_m_v2:3,max-read=40,over-max=silent  a meter's own settings after commas:
        max-read=N, hole=A..B (repeatable), over-max=exception|silent, baud=B, parity=N|E|O
  Registers outside the profile read 0. As the Modbus Application Protocol v1.1b3 (6.3/6.4, 7) has
  it, a read touching a hole (the profile's, --hole's) answers exception 02 ILLEGAL DATA ADDRESS and
  one of 0 or more than 125 registers exception 03 ILLEGAL DATA VALUE. A read of more than max_read
  (the profile's, or --max-read) answers 03, or nothing with --over-max silent: real meters do both
  (openWB/core PR #2890, esphome/issues#4627). FC16 writes keep to max_read too. FC3 and FC4 read the
  same table; FC6 and FC16 write it; other function codes answer exception 1. Slave id 0
  (broadcast) writes every meter and gets no reply. --max-read, --hole and --over-max apply to every
  meter that does not set its own.

line settings of each meter:
  A meter given its own baud= or parity= answers only frames sent at its settings, as on a real
  bus, where a frame at another baud or parity reaches a UART garbled and is dropped. Every meter is
  then checked against the line the client set: on a pty the simulator reads the client's termios
  (Linux keeps one per pty pair). Simplification: Linux's pty driver drops PARENB, so on a pty even
  parity cannot be told from none; odd parity and the baud rate can. On --port the port's own
  settings are the only ones heard. Without per-meter settings every frame is answered, whatever
  the client set.

timing:
  On --link the reply starts after the request's own wire time, t3.5 and 1 ms turnaround
  (plus --delay-ms) and its bytes arrive one character time apart (10 bits at parity N, 11 with
  parity), so a transaction takes as long as on a real RS-485 line. A pty carries no parity:
  --parity only sets the timing, and clients must open the link without parity (Linux ptys here
  reject PARENB with EINVAL, e.g. pyserial's parity='E').

values:
  Every --update-ms: ~230 V per phase, 0-32 A loads that wander, P = V*I, small var, ~50 Hz; energy
  integrates power, so import counters only grow (phases sum to the total); export grows slowly.

truth file (--truth):
  One JSON line per slave at start and whenever the values it serves change:
    {"t": <unix time>, "slave": 1, "values": {"energy_Wh_import.total": "98765429.6875", ...}}
  Values are the exact decimals the served registers carry (meterbridge.codec.decode_exact),
  null for a "no value" marker.

faults:
  --silent-after 5 --silent-for 3 --silent-every 20   silent 5-8 s after start, 25-28 s, 45-48 s, ...
  Rates are per reply and drawn independently (--seed makes them repeatable).

signing meters:
  A profile with an "ocmf" section (iskra_wm3m4c) also serves that OCMF register interface: the
  firmware's start and stop commands make a real OCMF record of the transaction, signed with a
  P-256 key (--key, else a new one per run, shared by all signing meters on the line). The public
  key (hex DER SubjectPublicKeyInfo) is printed to stderr and written to --pubkey-out; each
  transaction's begin and end readings are printed to stderr as they happen.

signals:
  SIGUSR1 toggles silence (the meters stop answering, then answer again on the next SIGUSR1).
  SIGUSR2 is a power cut: a signing meter in a transaction goes to "active after power failure"
  and forgets its clock and metadata; it signs the stop only once both have been written again.
  SIGTERM and SIGINT exit with status 0 and remove the --link symlink.
  The --link symlink appears only once these handlers are in place; a line
  "sim: serving ... on PATH (9600 8N1)" on stderr follows when the first request can be answered.
"""


def add_arguments(parser):
    """Add the sim options to its subparser."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    meters = parser.add_argument_group("meters")
    meters.add_argument("--profile", metavar="NAME|FILE", help="profile of a single meter")
    meters.add_argument("--slave", type=int, metavar="ID", help="slave id of --profile")
    meters.add_argument("--meter", action="append", default=[], metavar="PROFILE[:ID][,KEY=VALUE...]",
                        help="one more meter on the line (repeatable)")
    meters.add_argument("--max-read", type=int, metavar="N",
                        help="registers a read may have at most (default: the profile's max_read)")
    meters.add_argument("--hole", action="append", default=[], type=_hole, metavar="A..B",
                        help="registers A..B answer exception 02 (repeatable)")
    meters.add_argument("--over-max", choices=("exception", "silent"), default="exception",
                        help="a read over max_read: exception 03 (default) or no reply")
    line = parser.add_argument_group("line")
    where = line.add_mutually_exclusive_group(required=True)
    where.add_argument("--link", metavar="PATH", help="create a pty and symlink its slave end at PATH")
    where.add_argument("--port", metavar="DEVICE", help="use a real serial port, e.g. /dev/ttyUSB0")
    line.add_argument("--baud", type=int, help="default: the first profile's defaults.baud, else 9600")
    line.add_argument("--parity", choices=("N", "E", "O"),
                      help="default: the first profile's defaults.parity, else N (1 stop bit)")
    values = parser.add_argument_group("values")
    values.add_argument("--truth", metavar="FILE", help="append the served values as JSON lines")
    values.add_argument("--update-ms", type=float, default=1000.0, metavar="MS",
                        help="value update period (1000)")
    values.add_argument("--seed", type=int, help="random seed for values and faults")
    signing = parser.add_argument_group("signing meters")
    signing.add_argument("--key", metavar="FILE", help="P-256 private key (PEM) of the signing meters")
    signing.add_argument("--pubkey-out", metavar="FILE", help="write their public key (hex DER) to FILE")
    faults = parser.add_argument_group("faults")
    faults.add_argument("--silent-after", type=float, metavar="S",
                        help="stop answering S seconds after start")
    faults.add_argument("--silent-for", type=float, default=math.inf, metavar="D",
                        help="for D seconds (default: for ever)")
    faults.add_argument("--silent-every", type=float, metavar="P", help="and again every P seconds")
    faults.add_argument("--delay-ms", type=float, default=0.0, metavar="MS",
                        help="extra delay before replies")
    faults.add_argument("--crc-error-rate", type=_rate, default=0.0, metavar="R",
                        help="fraction of replies with a broken CRC")
    faults.add_argument("--exception-rate", type=_rate, default=0.0, metavar="R",
                        help="fraction of requests refused with exception 4 (SLAVE DEVICE FAILURE)")
    faults.add_argument("--garbage-rate", type=_rate, default=0.0, metavar="R",
                        help="fraction of replies preceded by 1-8 random bytes")
    faults.add_argument("--byte-count-rate", type=_rate, default=0.0, metavar="R",
                        help="fraction of read replies one register short, byte count and CRC valid")
    faults.add_argument("--shift-rate", type=_rate, default=0.0, metavar="R",
                        help="fraction of reads answered from one register further on")


def run(args):
    """Serve the meters until SIGTERM or SIGINT."""
    rng = random.Random(args.seed)
    fault_rng = random.Random(rng.getrandbits(64))  # traffic does not change the values a seed gives
    meters, profiles = {}, []
    try:
        key = load_key(args.key)
    except (OSError, ValueError, TypeError) as e:
        raise CommandError(f"--key: {e}") from e
    own_line = False
    for ref, slave, opts in _meter_specs(args):
        try:
            profile = load_profile(ref)
            slave = profile.get("defaults", {}).get("slave", 1) if slave is None else slave
            meter = Meter(profile, rng, key, opts.get("max-read", args.max_read), opts.get("hole", args.hole),
                          opts.get("over-max", args.over_max), opts.get("baud"), opts.get("parity"))
        except (ProfileError, ValueError, ArithmeticError) as e:
            raise CommandError(e) from e
        own_line = own_line or "baud" in opts or "parity" in opts
        if not 1 <= slave <= 247 or slave in meters:
            raise CommandError(f"slave id {slave}: must be 1..247 and used once")
        meters[slave] = meter
        profiles.append(profile)
    if any(meter.ocmf for meter in meters.values()):
        _announce_key(public_hex(key), args.pubkey_out)
    defaults = profiles[0].get("defaults", {})
    baud = args.baud or defaults.get("baud") or 9600
    parity = args.parity or defaults.get("parity") or "N"
    if baud <= 0 or args.update_ms <= 0:
        raise CommandError("--baud and --update-ms must be positive")
    if args.silent_every is not None and (args.silent_after is None or args.silent_every <= args.silent_for):
        raise CommandError("--silent-every needs --silent-after and must exceed --silent-for")
    faults = Faults(fault_rng, args.silent_after, args.silent_for, args.silent_every, args.delay_ms,
                    args.crc_error_rate, args.exception_rate, args.garbage_rate, args.byte_count_rate,
                    args.shift_rate)
    served = ", ".join(f"{meter.name} slave {slave}" for slave, meter in meters.items())
    truth = TruthLog(args.truth)
    try:
        def power_cut():
            for meter in meters.values():
                meter.power_cut()

        with Control(faults, power_cut) as control:  # before the link appears: an early signal cannot kill us
            server = Server(meters, faults, truth, args.update_ms / 1000, control, own_line)
            link = _open_link(args, baud, parity)
            try:
                server.serve(link, f"sim: serving {served} on {link.name} ({baud} 8{parity}1)")
            finally:
                link.close()
    finally:
        truth.close()
    return 0


def _announce_key(key_hex, path):
    """Print the signing meters' public key and write it to path (if given)."""
    print(f"sim: OCMF public key {key_hex}", file=sys.stderr, flush=True)
    if path:
        with open(path, "w") as f:
            f.write(key_hex + "\n")


def _meter_specs(args):
    """(profile ref, slave id or None, {option: value}) for every meter asked for."""
    specs = []
    for spec in args.meter:
        spec, *options = spec.split(",")
        ref, _, slave = spec.rpartition(":")
        ref, slave = (ref, int(slave)) if ref and slave.isdigit() else (spec, None)
        specs.append((ref, slave, _meter_options(spec, options)))
    if args.profile:
        specs.append((args.profile, args.slave, {}))
    elif args.slave is not None:
        raise CommandError("--slave belongs to --profile (use --meter PROFILE:ID for more meters)")
    if not specs:
        raise CommandError("give --profile NAME or --meter PROFILE[:ID]")
    return specs


def _open_link(args, baud, parity):
    """The pty (--link) or serial port (--port) the meters answer on."""
    try:
        return PtyLink(args.link, baud, parity) if args.link else SerialLink(args.port, baud, parity)
    except (OSError, serial.SerialException) as e:
        raise CommandError(f"cannot open the line: {e}") from e


def _meter_options(spec, options):
    """{max-read, hole, over-max, baud, parity} of a --meter's KEY=VALUE list."""
    opts = {}
    for option in options:
        key, _, value = option.partition("=")
        try:
            if key in ("max-read", "baud"):
                opts[key] = int(value)
                if opts[key] <= 0 or key == "max-read" and opts[key] > 125:
                    raise ValueError(value)
            elif key == "hole":
                opts.setdefault("hole", []).append(_hole(value))
            elif key in ("over-max", "parity") and value in (("exception", "silent") if key == "over-max" else "NEO"):
                opts[key] = value
            else:
                raise ValueError(option)
        except (ValueError, argparse.ArgumentTypeError) as e:
            raise CommandError(f"--meter {spec}: bad setting {option!r}") from e
    return opts


def _hole(text):
    """argparse type: A..B, an inclusive register range."""
    first, sep, last = text.partition("..")
    try:
        hole = [int(first, 0), int(last, 0)]
    except ValueError:
        hole = None
    if not sep or hole is None or not 0 <= hole[0] <= hole[1] <= 0xFFFF:
        raise argparse.ArgumentTypeError(f"{text} is not a register range A..B")
    return hole


def _rate(text):
    """argparse type: a probability 0..1."""
    rate = float(text)
    if not 0 <= rate <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not within 0..1")
    return rate
