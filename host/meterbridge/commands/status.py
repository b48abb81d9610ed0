"""`meterbridge status`: every board on a broker, from its retained status and state topics, as a live table."""

import json
import threading
import time

import paho.mqtt.client as mqtt

from ..errors import CommandError

TOPICS = ("meterbridge/+/status", "meterbridge/+/state")


def add_arguments(parser):
    parser.add_argument("--broker", default="localhost:1883", metavar="HOST:PORT", help="MQTT broker")
    parser.add_argument("--json", action="store_true", help="print what the boards reported as JSON and exit")
    parser.add_argument("--once", action="store_true", help="print the table once and exit")
    parser.add_argument("--wait", type=float, default=1.0, metavar="S",
                        help="with --json or --once: seconds to collect the retained messages")


def subscribe(broker, topics, on_message, timeout=5.0):
    """A connected paho client subscribed to topics; on_message(topic, payload) runs on its thread."""
    host, _, port = broker.rpartition(":")
    if not host or not port.isdigit():
        raise CommandError(f"--broker {broker!r} is not HOST:PORT")
    ready = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.on_connect = lambda c, *_: c.subscribe([(t, 0) for t in topics])
    client.on_subscribe = lambda *_: ready.set()
    client.on_message = lambda c, u, msg: on_message(msg.topic, msg.payload)
    try:
        client.connect(host, int(port), keepalive=30)
    except OSError as e:
        raise CommandError(f"cannot connect to {broker}: {e}") from e
    client.loop_start()
    if not ready.wait(timeout):
        client.loop_stop()
        raise CommandError(f"MQTT broker {broker}: no answer within {timeout:g} s")
    return client


class Boards:
    """What each board last said: {client_id: {"status": text, "state": document or None, "at": time}}."""

    def __init__(self):
        self.boards = {}
        self.lock = threading.Lock()
        self.changed = threading.Event()

    def take(self, topic, payload):
        _, client_id, kind = topic.split("/")
        with self.lock:
            board = self.boards.setdefault(client_id, {"status": None, "state": None, "at": None})
            text = payload.decode(errors="replace")
            if kind == "status":
                board["status"] = text
            else:
                try:
                    board["state"] = json.loads(text)
                except ValueError:
                    board["state"] = {"unreadable": text[:80]}
                board["at"] = time.time()
        self.changed.set()

    def snapshot(self):
        with self.lock:
            return json.loads(json.dumps(self.boards))


def run(args):
    boards = Boards()
    client = subscribe(args.broker, TOPICS, boards.take)
    try:
        if args.json or args.once:
            time.sleep(args.wait)
            if args.json:
                print(json.dumps(boards.snapshot(), indent=1, sort_keys=True))
            else:
                _console().print(table(boards.snapshot()))
            return 0
        _live(boards)
    finally:
        client.disconnect()
        client.loop_stop()
    return 0


def _console():
    from rich.console import Console

    return Console()


def _live(boards):
    from rich.live import Live

    with Live(table(boards.snapshot()), console=_console(), refresh_per_second=4) as live:
        while True:
            boards.changed.wait(1.0)  # once a second at least: the ages move on
            boards.changed.clear()
            live.update(table(boards.snapshot()))


def _ago(seconds):
    if seconds is None:
        return "-"
    seconds = int(seconds)
    return f"{seconds} s" if seconds < 120 else f"{seconds // 60} min" if seconds < 7200 else f"{seconds // 3600} h"


def _meter_rows(state, now):
    """(meter, online, cycles, errors, last error, read limit, transaction) per meter of a state document."""
    rows = []
    for name, m in sorted((state.get("meters") or {}).items()):
        errors = ", ".join(f"{k} {v}" for k, v in sorted((m.get("errors") or {}).items()) if v) or "-"
        last = m.get("last_error")
        if last:
            at = m.get("last_error_s")
            # the document is as old as `now`; the error happened at uptime `at`
            last += f" ({_ago(state['uptime_s'] - at + now)} ago)" if isinstance(at, int) else ""
        taught = m.get("read_limits") or {}
        limit = f"{taught.get('max_read') or '-'}" + (f", {len(taught['holes'])} holes" if taught.get("holes") else "")
        rows.append((name, "yes" if m.get("online") else "[red]no[/red]", str(m.get("cycles", "-")), errors,
                     last or "-", limit if taught else "-", m.get("transaction") or "-"))
    return rows or [("-",) * 7]


def table(boards, now=None):
    """A rich Table of every board and its meters (one row per meter)."""
    from rich.table import Table

    now = time.time() if now is None else now
    t = Table(title="meterbridge boards", title_justify="left")
    for col in ("board", "status", "firmware", "up (reset)", "heap free/floor", "clock", "meter", "online",
                "cycles", "errors", "last error", "read limit", "transaction"):
        t.add_column(col, overflow="fold")
    for client_id, board in sorted(boards.items()):
        state = board.get("state") or {}
        status = board.get("status") or "-"
        status = status if status.startswith("online") else f"[red]{status}[/red]"
        age = now - board["at"] if board.get("at") else 0
        heap = state.get("heap") or {}
        up = _ago(state["uptime_s"] + age) if isinstance(state.get("uptime_s"), int) else "-"
        firmware = f"{state['firmware']}, umqtt {state.get('umqtt', '-')}" if "firmware" in state else "-"
        head = (client_id, status, firmware,
                f"{up} ({state.get('reset') or '-'})", f"{heap.get('free', '-')}/{heap.get('floor', '-')}",
                state.get("clock", "-"))
        for i, row in enumerate(_meter_rows(state, age)):
            t.add_row(*(head if i == 0 else ("",) * len(head)), *row)
    return t
