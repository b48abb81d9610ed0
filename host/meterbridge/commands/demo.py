"""`meterbridge demo`: mosquitto, a simulated meter and the firmware, shown as EVerest sees them.

The firmware runs as a board boots it (meterbridge.boardrun: slots, resets) with an update key in its
config, so `meterbridge status`, `logs` and `update` work against it while the table runs on.
"""

import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

from .. import build, procs
from ..errors import CommandError
from ..everest import EverestClient
from .config import new_update_key
from .status import subscribe


def add_arguments(parser):
    parser.add_argument("--broker", metavar="HOST:PORT", help="use this broker, not a private mosquitto")
    parser.add_argument("--profile", default="eastron_sdm630_v2", help="meter profile to simulate")
    parser.add_argument("--baud", type=int, default=9600)
    parser.add_argument("--period-ms", type=int, default=1000, help="poll period")
    parser.add_argument("--count", type=int, help="stop after N value updates (default: until Ctrl-C)")
    parser.add_argument("--keep", action="store_true", help="keep the working directory (logs, config)")


def _terminate(signum, frame):
    raise KeyboardInterrupt  # SIGTERM (timeout, kill) and SIGHUP clean up like Ctrl-C


def run(args):
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)  # the terminal closed
    work = Path(procs.scratch_dir("meterbridge-demo-"))
    children = []  # (process, how to stop it), in the order started
    try:
        return _demo(args, work, children)
    except KeyboardInterrupt:
        print("\ndemo: stopping", file=sys.stderr)
        return 0
    except (FileNotFoundError, TimeoutError) as e:
        raise CommandError(f"demo: {e} (logs in {work})") from None
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        for proc, stop in reversed(children):
            stop(proc)
        if args.keep:
            print(f"demo: logs and config kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


def _demo(args, work, children):
    if args.broker:
        broker = args.broker
    else:
        port = procs.free_port()
        children.append((procs.start_mosquitto(port, work, log=open(work / "mosquitto.log", "wb")), procs.stop))
        broker = f"127.0.0.1:{port}"
    host, _, port = broker.rpartition(":")
    link = str(work / "meter")
    children.append((procs.start_sim(["--profile", args.profile, "--slave", "1", "--baud", str(args.baud),
                                      "--link", link], log=open(work / "sim.log", "wb")), procs.stop))
    procs.wait_path(link)
    client_id = f"meterbridge-demo-{os.getpid()}"
    config = {"broker": {"host": host, "port": int(port), "client_id": client_id},
              "meters": [{"module_id": "pm1", "profile": args.profile, "slave": 1, "baud": args.baud,
                          "period_ms": args.period_ms, "uart": {"device": link}}],
              "storage": str(work / "state"), "update_key": new_update_key()}  # never printed
    (work / "config.json").write_text(json.dumps(config, indent=1))
    firmware_log = work / "firmware.log"  # a log on the terminal would scroll the table away
    build.firmware()  # compiled before the first start, not on the clock of the first values
    board = procs.start_firmware(work / "config.json", log=open(firmware_log, "ab"), cwd=work, form="board")
    children.append((board, _stop_board))
    start = f"meterbridge monitor --broker {broker} --module-id pm1 --start"
    kept = "kept after the demo" if args.keep else "kept while the demo runs; --keep keeps it after"
    print(f"demo: {args.profile} simulated on {link} at {args.baud} baud; the firmware under the MicroPython unix "
          f"port, started as a board boots it (log: {firmware_log}); broker {broker}.\n"
          f"Start a transaction against it:  {start}\n"
          f"Watch the board:  meterbridge status --broker {broker}\n"
          f"Follow its log:  meterbridge logs --broker {broker} --client-id {client_id}\n"
          f"Update it over MQTT:  meterbridge update --config {work / 'config.json'}  ({kept})",
          flush=True)
    try:
        return _view(broker, args.count, start, client_id, args.period_ms / 1000, lambda: board.poll() is None)
    except CommandError:
        if board.poll() is None:
            raise
        tail = firmware_log.read_text(errors="replace")[-1500:]
        raise CommandError(f"the firmware exited with status {board.returncode}:\n{tail}") from None


def _stop_board(proc, timeout=5.0):
    """The board's launcher and the firmware it runs, a process group of their own: SIGTERM (the launcher passes
    it on), then SIGKILL to whatever is left of the group (a firmware started again just as the launcher
    stopped) before the launcher is reaped, while its group id cannot be anyone else's."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    end = time.monotonic() + timeout
    while time.monotonic() < end and not os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


class BoardNews:
    """What the board says on its own topics: its status (online, offline when it went without a word, as at a
    reset), the update under way (update/status) and the last update's outcome (update/result)."""

    def __init__(self, client_id):
        self.client_id = client_id
        self.topics = tuple(f"meterbridge/{client_id}/{t}" for t in ("status", "update/status", "update/result"))
        self.status = self.result = None
        self.update, self.update_at = None, 0.0

    def take(self, topic, payload):
        text = payload.decode(errors="replace")
        if topic == self.topics[0]:
            self.status = text
            return
        try:
            doc = json.loads(text)
        except ValueError:
            return
        if topic == self.topics[2]:
            self.result = doc
        elif isinstance(doc, dict) and doc.get("state"):
            self.update, self.update_at = doc["state"], time.time()

    def note(self, last_values, pause_s, now=None):
        """One line: the board's status (restarting for an update while one runs), a pause in the values (longer
        than pause_s), and the last update's outcome."""
        now = time.time() if now is None else now
        said = self.status or "not heard from yet"
        if self.update_at > (last_values or 0) and self.update != "refused":
            said = f"update under way: {self.update}"
        elif said == "offline":
            said = "offline (restarting, or without its broker)"
        line = f"board {self.client_id}: {said}"
        if last_values is not None and now - last_values > pause_s:
            line += f"; no values for {now - last_values:.0f} s"
        r = self.result
        if isinstance(r, dict) and r.get("version") is not None:
            line += f" · last update: version {r['version']} {r.get('state')}"
            line += f" ({r['why']})" if r.get("why") else ""
        return line


def _view(broker, count, start, client_id, period_s, alive, timeout=30.0):
    """Values and communication checks as EVerest receives them, and what the board says, in one table updated
    in place. Without values for timeout s at the start it gives up; later a pause (the board restarting for an
    update, a silent meter) is shown, not fatal, for as long as the firmware runs."""
    from rich.console import Console
    from rich.live import Live

    host, _, port = broker.rpartition(":")
    news = BoardNews(client_id)
    watch = subscribe(broker, news.topics, news.take, timeout)
    client = EverestClient(host, int(port), "pm1")
    pause_s = max(3.0, 3 * period_s)
    seen = {"powermeter_values": None, "communication_check": None}
    counts = dict.fromkeys(seen, 0)
    seq, deadline = 0, time.monotonic() + timeout

    def table():
        values = seen["powermeter_values"]
        return values_table(seen, counts, start, board=news.note(values and values.received, pause_s))

    try:
        client.connect(timeout)
        client.start_heartbeat()
        with Live(table(), console=Console(), refresh_per_second=4) as live:
            while count is None or counts["powermeter_values"] < count:
                try:
                    msg = client.wait_for(None, timeout=0.25, start=seq)  # the ages and the board's news move on
                except TimeoutError:
                    if not alive():
                        raise CommandError("the firmware stopped") from None
                    if not counts["powermeter_values"] and time.monotonic() > deadline:
                        raise CommandError(f"no powermeter_values for {timeout:g} s") from None
                else:
                    seq = msg.seq + 1
                    if msg.topic in seen:
                        seen[msg.topic] = msg
                        counts[msg.topic] += 1
                live.update(table())
    finally:
        client.close()
        watch.disconnect()
        watch.loop_stop()
    return 0


def values_table(seen, counts, start, now=None, board=None):
    """A rich Table of the last powermeter_values (a row per quantity, a column per phase), how many values
    and communication checks arrived and how long ago the last ones did, and a line on the board."""
    from rich.table import Table

    now = time.time() if now is None else now

    def last(topic):
        msg = seen[topic]
        return f"{counts[topic]}, the last {now - msg.received:.1f} s ago" if msg else "none yet"

    values = seen["powermeter_values"]
    value = values.value if values else {}
    caption = [f"powermeter_values: {last('powermeter_values')} · communication_check: {last('communication_check')}",
               *([board] if board else []), f"start a transaction: {start}"]
    t = Table(title=f"pm1 as EVerest receives it, {value.get('timestamp', 'waiting for values')}",
              title_justify="left", caption="\n".join(caption), caption_justify="left")
    phases = ("total", "L1", "L2", "L3")
    t.add_column("quantity", no_wrap=True)
    for p in phases:
        t.add_column(p, justify="right", overflow="fold")  # an exact energy keeps every digit
    for key, v in value.items():
        if isinstance(v, dict):
            t.add_row(key, *(str(v[p]) if v.get(p) is not None else "-" for p in phases))
    return t
