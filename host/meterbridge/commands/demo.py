"""`meterbridge demo`: mosquitto, a simulated meter and the firmware, shown as EVerest sees them."""

import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

from .. import procs
from ..errors import CommandError
from ..everest import EverestClient


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
    children = []
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
        for proc in reversed(children):
            procs.stop(proc)
        if args.keep:
            print(f"demo: logs and config kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


def _demo(args, work, children):
    if args.broker:
        broker = args.broker
    else:
        port = procs.free_port()
        children.append(procs.start_mosquitto(port, work, log=open(work / "mosquitto.log", "wb")))
        broker = f"127.0.0.1:{port}"
    host, _, port = broker.rpartition(":")
    link = str(work / "meter")
    children.append(procs.start_sim(["--profile", args.profile, "--slave", "1", "--baud", str(args.baud),
                                     "--link", link], log=open(work / "sim.log", "wb")))
    procs.wait_path(link)
    config = {"broker": {"host": host, "port": int(port), "client_id": f"meterbridge-demo-{os.getpid()}"},
              "meters": [{"module_id": "pm1", "profile": args.profile, "slave": 1, "baud": args.baud,
                          "period_ms": args.period_ms, "uart": {"device": link}}],
              "storage": str(work / "state")}
    (work / "config.json").write_text(json.dumps(config, indent=1))
    firmware_log = work / "firmware.log"  # a log on the terminal would scroll the table away
    children.append(procs.start_firmware(work / "config.json", log=open(firmware_log, "ab"), cwd=work))
    start = f"meterbridge monitor --broker {broker} --module-id pm1 --start"
    print(f"demo: {args.profile} simulated on {link} at {args.baud} baud; firmware under the MicroPython unix "
          f"port (log: {firmware_log}); broker {broker}.\nStart a transaction against it:  {start}", flush=True)
    try:
        return _view(broker, args.count, start)
    except CommandError:
        if children[-1].poll() is None:
            raise
        tail = firmware_log.read_text(errors="replace")[-1500:]
        raise CommandError(f"the firmware exited with status {children[-1].returncode}:\n{tail}") from None


def _view(broker, count, start, timeout=15.0):
    """Values and communication checks as EVerest receives them, in one table updated in place."""
    from rich.console import Console
    from rich.live import Live

    host, _, port = broker.rpartition(":")
    client = EverestClient(host, int(port), "pm1")
    client.connect(timeout)
    client.start_heartbeat()
    seen = {"powermeter_values": None, "communication_check": None}
    counts = dict.fromkeys(seen, 0)
    seq, deadline = 0, time.monotonic() + timeout
    try:
        with Live(values_table(seen, counts, start), console=Console(), refresh_per_second=4) as live:
            while count is None or counts["powermeter_values"] < count:
                try:
                    msg = client.wait_for(None, timeout=1.0, start=seq)
                except TimeoutError:
                    if time.monotonic() > deadline:
                        raise CommandError(f"no powermeter_values for {timeout:g} s") from None
                else:
                    seq = msg.seq + 1
                    if msg.topic in seen:
                        seen[msg.topic] = msg
                        counts[msg.topic] += 1
                    if msg.topic == "powermeter_values":
                        deadline = time.monotonic() + timeout
                live.update(values_table(seen, counts, start))
    finally:
        client.close()
    return 0


def values_table(seen, counts, start, now=None):
    """A rich Table of the last powermeter_values (a row per quantity, a column per phase) and how
    many values and communication checks arrived, and how long ago the last ones did."""
    from rich.table import Table

    now = time.time() if now is None else now

    def last(topic):
        msg = seen[topic]
        return f"{counts[topic]}, the last {now - msg.received:.1f} s ago" if msg else "none yet"

    values = seen["powermeter_values"]
    value = values.value if values else {}
    t = Table(title=f"pm1 as EVerest receives it, {value.get('timestamp', 'waiting for values')}",
              title_justify="left", caption=f"powermeter_values: {last('powermeter_values')} · communication_check: "
              f"{last('communication_check')}\nstart a transaction: {start}", caption_justify="left")
    phases = ("total", "L1", "L2", "L3")
    t.add_column("quantity", no_wrap=True)
    for p in phases:
        t.add_column(p, justify="right", overflow="fold")  # an exact energy keeps every digit
    for key, v in value.items():
        if isinstance(v, dict):
            t.add_row(key, *(str(v[p]) if v.get(p) is not None else "-" for p in phases))
    return t
