"""`meterbridge run`: the firmware under the MicroPython unix port, logging to stderr."""

import os
import subprocess

from .. import procs
from ..errors import CommandError


def add_arguments(parser):
    parser.add_argument("--config", required=True, help="config.json to run with")
    parser.add_argument("--heapsize", help="MicroPython heap, e.g. 64k (an ESP32 has about 100k free)")
    form = parser.add_mutually_exclusive_group()
    form.add_argument("--source", dest="form", action="store_const", const="source", default="mpy",
                      help="run the .py sources instead of compiled .mpy")
    form.add_argument("--rom", dest="form", action="store_const", const="rom",
                      help="run the .mpy in place from a ROMFS image, as a board with a ROMFS partition does")
    form.add_argument("--board", dest="form", action="store_const", const="board",
                      help="run the .mpy as a board boots them: the config's directory is its flash (update slots, "
                           "resets), so `meterbridge update` works against it; the config must be named config.json")


def run(args):
    if not os.path.exists(args.config):
        raise CommandError(f"{args.config}: no such config file")
    try:
        cmd, env = procs.firmware_command(args.config, args.heapsize, args.form)
    except (FileNotFoundError, subprocess.CalledProcessError) as e:
        raise CommandError(str(e)) from None
    try:
        return subprocess.call(cmd, env=env)
    except KeyboardInterrupt:
        return 130
