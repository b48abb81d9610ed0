"""`meterbridge run`: the firmware under the MicroPython unix port, logging to stderr."""

import os
import subprocess

from .. import procs
from ..errors import CommandError


def add_arguments(parser):
    parser.add_argument("--config", required=True, help="config.json to run with")
    parser.add_argument("--heapsize", help="MicroPython heap, e.g. 64k (an ESP32 has about 100k free)")
    parser.add_argument("--source", action="store_true", help="run the .py sources instead of compiled .mpy")


def run(args):
    if not os.path.exists(args.config):
        raise CommandError(f"{args.config}: no such config file")
    try:
        cmd, env = procs.firmware_command(args.config, args.heapsize, args.source)
    except (FileNotFoundError, subprocess.CalledProcessError) as e:
        raise CommandError(str(e)) from None
    try:
        return subprocess.call(cmd, env=env)
    except KeyboardInterrupt:
        return 130
