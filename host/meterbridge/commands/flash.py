"""`meterbridge flash`: erase the board, then write the official MicroPython image at the chip's offset."""

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from .. import boards
from ..errors import CommandError

_IMAGE_MAGIC = 0xE9  # first byte of an ESP bootloader/app image (ESP-IDF image format)


def add_arguments(parser):
    parser.add_argument("--board", required=True, help=f"one of: {', '.join(boards.names())}")
    parser.add_argument("--port", required=True, help="serial port, e.g. /dev/ttyUSB0")
    parser.add_argument("--firmware", help="the MicroPython .bin for the board (from micropython.org)")
    parser.add_argument("--baud", type=int, help="flashing speed (default: the board's)")
    parser.add_argument("--dry-run", action="store_true", help="print the esptool commands, run nothing")


def esptool():
    """The esptool console script beside this Python, else on PATH, else `python -m esptool`."""
    beside = Path(sys.executable).parent / "esptool"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("esptool")
    return [found] if found else [sys.executable, "-m", "esptool"]


def commands(board, port, firmware, baud=None):
    """erase-flash, then write-flash at the board's offset (esptool 5 names)."""
    baud = str(baud or board["flash"]["baud"])
    base = [*esptool(), "--chip", board["chip"], "--port", port, "--baud", baud]
    return [base + ["erase-flash"], base + ["write-flash", board["flash"]["offset"], str(firmware)]]


def _check_image(path, board):
    try:
        with open(path, "rb") as f:
            first = f.read(1)
    except OSError as e:
        raise CommandError(f"{path}: cannot read ({e.strerror})") from None
    if first != bytes([_IMAGE_MAGIC]):
        raise CommandError(f"{path}: not an ESP32 firmware image (a .bin starts with 0xE9); "
                           f"download the .bin from {boards.download_url(board)}")


def run(args):
    board = boards.load(args.board)
    if not args.firmware:
        raise CommandError(
            f"--firmware is needed: download the latest .bin for {board['title']} from "
            f"{boards.download_url(board)}, then run: meterbridge flash --board {args.board} "
            f"--port {args.port} --firmware {board['flash']['micropython']}-<version>.bin")
    _check_image(args.firmware, board)
    for cmd in commands(board, args.port, args.firmware, args.baud):
        print(shlex.join(cmd))
        if args.dry_run:
            continue
        status = subprocess.call(cmd)
        if status:
            raise CommandError(f"esptool failed (exit {status}); check --port, and hold BOOT while resetting "
                               "if the board does not enter its bootloader")
    if not args.dry_run:
        print(f"done: next, meterbridge config new --board {args.board} ..., then meterbridge deploy")
