"""`meterbridge monitor`: watch a powermeter module like EVerest does, and send it start/stop requests."""

import functools
import time
import uuid

from .. import schema
from ..errors import CommandError
from ..everest import EverestClient

# m2e topic -> the components/schemas entry its payload must match
_SCHEMAS = {
    "powermeter_values": "Powermeter",
    "communication_check": "CommunicationCheck",
    "public_key_ocmf": "SendPublicKeyOCMF",
}
_REPLY_SCHEMAS = {"start_transaction": "StartTransactionReply", "stop_transaction": "StopTransactionReply"}


def add_arguments(parser):
    """Options of the monitor command."""
    parser.add_argument("--broker", default="localhost:1883", metavar="HOST:PORT", help="MQTT broker")
    parser.add_argument("--module-id", required=True, metavar="ID", help="module id in EVerest's config")
    parser.add_argument("--prefix", default="", metavar="P", help="EVerest's mqtt_external_prefix")
    parser.add_argument(
        "--start", nargs="?", const="", metavar="TID", help="send start_transaction (a new uuid4 without TID)"
    )
    parser.add_argument("--stop", metavar="TID", help='send stop_transaction ("" stops every transaction)')
    parser.add_argument(
        "--stop-form",
        choices=("string", "object"),
        default="string",
        help="stop payload: bare string (EVerest's code) or object (the YAML)",
    )
    parser.add_argument("--count", type=int, metavar="N", help="exit after N powermeter_values messages")
    parser.add_argument("--follow", action="store_true", help="keep printing after --start/--stop")
    parser.add_argument("--heartbeat", action="store_true", help="send e2m/heartbeat every second")
    parser.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds to wait for the broker, a reply, or (with --count) the next values",
    )


def run(args):
    """Connect like EVerest, send the requested start/stop, then print what the module publishes."""
    host, _, port = args.broker.rpartition(":")
    if not host or not port.isdigit():
        raise CommandError(f"--broker {args.broker!r} is not HOST:PORT")
    client = EverestClient(host, int(port), args.module_id, args.prefix)
    try:
        client.connect(args.timeout)
    except OSError as e:
        raise CommandError(f"cannot connect to {args.broker}: {e}") from e
    try:
        return _session(client, args)
    finally:
        client.close()


def _session(client, args):
    """Heartbeat, requests and printing on a connected client; the exit status."""
    if args.heartbeat:
        client.start_heartbeat()
    status = 0
    if args.start is not None:
        tid = args.start or str(uuid.uuid4())
        start = functools.partial(client.start_transaction, tid, args.timeout)
        status |= _show(client, "start_transaction", tid, start)
    if args.stop is not None:
        stop = functools.partial(client.stop_transaction, args.stop, args.stop_form, args.timeout)
        status |= _show(client, "stop_transaction", args.stop, stop)
    if (args.start is None and args.stop is None) or args.count is not None or args.follow:
        _follow(client, args.count, args.timeout)
    return status


def _show(client, var, tid, send):
    """Send one request, print its reply and any schema errors; 1 when the reply is one EVerest would drop."""
    try:
        reply = send()
    except TimeoutError as e:
        raise CommandError(f"{var} {tid!r}: no reply ({e})") from e
    except ValueError as e:
        raise CommandError(f"{var} {tid!r}: reply {client.last_reply.raw!r} is not JSON ({e})") from e
    msg = client.last_reply
    print(f"{_clock(msg.received)} {var} {tid!r} -> {msg.raw.decode(errors='replace')}", flush=True)
    problems = schema.errors(_REPLY_SCHEMAS[var], reply)
    for problem in problems:
        print(f"  !! {problem}", flush=True)
    return 1 if problems else 0


def _follow(client, count, timeout):
    """Print every m2e message until `count` powermeter_values have arrived (forever when None)."""
    seq, seen, deadline = 0, 0, time.monotonic() + timeout
    while count is None or seen < count:
        try:
            msg = client.wait_for(None, timeout=max(0.0, deadline - time.monotonic()), start=seq)
        except TimeoutError:
            if count is not None:
                raise CommandError(f"no powermeter_values for {timeout:g} s") from None
            print(f"-- no powermeter_values for {timeout:g} s", flush=True)
            deadline = time.monotonic() + timeout
            continue
        seq = msg.seq + 1
        if msg.topic == "powermeter_values":
            seen += 1
            deadline = time.monotonic() + timeout
        if not msg.topic.startswith("reply/"):
            print(_line(msg), flush=True)


def _line(msg):
    """One compact line for a received message, followed by its schema errors."""
    head = f"{_clock(msg.received)} {msg.topic}"
    try:
        value = msg.value
    except ValueError:
        return f"{head} !! not JSON: {msg.raw!r}"
    values = msg.topic == "powermeter_values" and isinstance(value, dict)
    text = _values(value) if values else msg.raw.decode(errors="replace")
    problems = schema.errors(_SCHEMAS[msg.topic], value) if msg.topic in _SCHEMAS else ["unknown topic"]
    return "\n".join([f"{head} {text}"] + [f"  !! {p}" for p in problems])


def _values(v):
    """ts, energy import total, power total, and V and A per phase."""

    def part(key, names):
        d = v.get(key)
        return "/".join("-" if not isinstance(d, dict) or d.get(n) is None else str(d[n]) for n in names)

    phases = ["L1", "L2", "L3"]
    return (
        f"ts={v.get('timestamp', '-')} E={part('energy_Wh_import', ['total'])}Wh "
        f"P={part('power_W', ['total'])}W U={part('voltage_V', phases)}V I={part('current_A', phases)}A"
    )


def _clock(t):
    """Local wall-clock time with milliseconds."""
    return time.strftime("%H:%M:%S", time.localtime(t)) + f".{int(t * 1000) % 1000:03d}"
