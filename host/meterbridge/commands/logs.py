"""`meterbridge logs`: follow one board's warn and error lines (its meterbridge/{client_id}/log topic)."""

import queue
import time

from ..errors import CommandError
from .status import subscribe


def add_arguments(parser):
    parser.add_argument("--broker", default="localhost:1883", metavar="HOST:PORT", help="MQTT broker")
    parser.add_argument("--client-id", required=True, metavar="ID", help="the board's broker.client_id")
    parser.add_argument("--count", type=int, metavar="N", help="exit after N lines")
    parser.add_argument("--timeout", type=float, metavar="S", help="with --count: give up after S seconds")


def run(args):
    lines = queue.Queue()
    topics = (f"meterbridge/{args.client_id}/log", f"meterbridge/{args.client_id}/status")
    client = subscribe(args.broker, topics, lambda topic, payload: lines.put((topic, payload)))
    print(f"-- following {topics[0]} on {args.broker} (Ctrl-C to stop)", flush=True)
    seen = 0
    end = time.monotonic() + args.timeout if args.timeout else None
    try:
        while args.count is None or seen < args.count:
            try:
                topic, payload = lines.get(timeout=1.0)
            except queue.Empty:
                if end and time.monotonic() > end:
                    raise CommandError(f"{seen} of {args.count} log lines within {args.timeout:g} s") from None
                continue
            text = payload.decode(errors="replace")
            stamp = time.strftime("%H:%M:%S")
            if topic.endswith("/status"):
                print(f"{stamp} -- board {text}", flush=True)
                continue
            print(f"{stamp} {text}", flush=True)
            seen += 1
    finally:
        client.disconnect()
        client.loop_stop()
    return 0
