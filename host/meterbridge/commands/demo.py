"""`meterbridge demo`: mosquitto, a simulated meter and the firmware, shown as EVerest sees them."""

import argparse
import json
import os
import shutil
import signal
import sys
from pathlib import Path

from .. import procs
from ..errors import CommandError
from . import monitor


def add_arguments(parser):
    parser.add_argument("--broker", metavar="HOST:PORT", help="use this broker, not a private mosquitto")
    parser.add_argument("--profile", default="eastron_sdm630_v2", help="meter profile to simulate")
    parser.add_argument("--baud", type=int, default=9600)
    parser.add_argument("--period-ms", type=int, default=1000, help="poll period")
    parser.add_argument("--count", type=int, help="stop after N value updates (default: until Ctrl-C)")
    parser.add_argument("--keep", action="store_true", help="keep the working directory (logs, config)")


def _terminate(signum, frame):
    raise KeyboardInterrupt  # SIGTERM (timeout, kill) cleans up like Ctrl-C


def run(args):
    signal.signal(signal.SIGTERM, _terminate)
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
    children.append(procs.start_firmware(work / "config.json", log=sys.stderr.buffer, cwd=work))
    print(f"demo: {args.profile} simulated on {link} at {args.baud} baud; firmware under the MicroPython "
          f"unix port; broker {broker}. Values as EVerest receives them (Ctrl-C to stop):", file=sys.stderr)
    view = argparse.Namespace(broker=broker, module_id="pm1", prefix="", start=None, stop=None,
                              stop_form="string", count=args.count, follow=True, heartbeat=True, timeout=15.0)
    status = monitor.run(view)
    if children[-1].poll() is not None:
        raise CommandError(f"the firmware exited with status {children[-1].returncode}")
    return status
