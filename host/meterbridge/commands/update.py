"""`meterbridge update`: send the firmware (or, with --config-only, the config) to a board over MQTT.

The running bridge checks the signed command and resets into receive mode, a start that loads nothing
of the bridge: it checks the command and the manifest, streams the files into a free slot, resets into
the new version and commits it once it has run healthily; otherwise it rolls back by itself. This
command shows the transfer and then the outcome the board reports. The update key is never printed.
"""

import json
import time
from pathlib import Path

from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from .. import boards
from ..errors import CommandError
from ..update import Board, UpdateError, firmware_files


def add_arguments(parser):
    parser.add_argument("--config", help="the board's config.json: broker, client_id and update_key "
                                         "(with --config-only, also the config to send)")
    parser.add_argument("--broker", metavar="HOST:PORT", help="the broker, instead of the config's")
    parser.add_argument("--client-id", help="the board's MQTT client id, instead of the config's")
    parser.add_argument("--key-file", help="a file holding the board's update_key (hex), or a config with it")
    parser.add_argument("--config-only", action="store_true", help="send the config instead of the firmware")
    parser.add_argument("--version", type=int, help="version number of this update (default: the time in "
                                                    "seconds); the board takes only numbers above its last")
    parser.add_argument("--health", type=int, default=60, metavar="S",
                        help="seconds the new version must run healthily before it commits (default 60)")
    parser.add_argument("--deadline", type=int, default=180, metavar="S",
                        help="seconds after its start by which the new version must have committed (default 180)")


def _read_json(path, what):
    try:
        return json.loads(Path(path).read_text())
    except OSError as e:
        raise CommandError(f"{path}: cannot read {what} ({e.strerror})") from None
    except ValueError as e:
        raise CommandError(f"{path}: not valid JSON ({e})") from None


def _key(args, doc):
    if args.key_file:
        text = Path(args.key_file).read_text().strip()
        key = _read_json(args.key_file, "the key file").get("update_key") if text.startswith("{") else text
    else:
        key = doc.get("update_key")
    try:
        bytes.fromhex(key or "")
    except ValueError:
        key = None
    if not key:
        raise CommandError("no update key: give --config with update_key (set by `config new` or `deploy`) "
                           "or --key-file")
    return key


def _target(args):
    """(host, port, client_id, key, broker options, config document)."""
    doc = _read_json(args.config, "the config") if args.config else {}
    broker = doc.get("broker") or {}
    if args.broker:
        host, _, port = args.broker.rpartition(":") if ":" in args.broker else (args.broker, "", "1883")
        if not port.isdigit():
            raise CommandError(f"--broker {args.broker}: the port must be a number")
    elif broker.get("host"):
        host, port = broker["host"], str(broker.get("port", 1883))
    else:
        raise CommandError("give --config (the board's config) or --broker HOST:PORT")
    client_id = args.client_id or broker.get("client_id") or "meterbridge"
    tls = broker.get("tls")
    opts = {"username": broker.get("username"), "password": broker.get("password"),
            "tls": ({} if tls is True else tls) or None}
    return host, int(port), client_id, _key(args, doc), opts, doc


def run(args):
    if args.config_only and not args.config:
        raise CommandError("--config-only sends the file given with --config")
    if not 0 < args.health < args.deadline <= 3600:
        raise CommandError("--health and --deadline: 0 < health < deadline <= 3600 seconds")
    host, port, client_id, key, opts, doc = _target(args)
    version = args.version or int(time.time())
    try:
        board = Board(host, port, client_id, key, **opts)
    except UpdateError as e:
        raise CommandError(str(e)) from None
    try:
        info = board.hello()
        where = f"{client_id} ({info['platform']}, version {info['version']}"
        print(where + (", on trial)" if info["trial"] else ")"))
        if args.config_only:
            files = {"config.json": Path(args.config).read_bytes()}
        else:
            arch = boards.load(doc["board"])["mpy_arch"] if doc.get("board") else "xtensawin"
            files = firmware_files(info["platform"], arch)
        kind = "config" if args.config_only else "firmware"
        with Progress(TextColumn(f"sending {kind} version {version}"), BarColumn(), DownloadColumn(),
                      TransferSpeedColumn()) as bar:
            task = bar.add_task("send", total=None)
            board.send(kind, files, version, args.health, args.deadline,
                       progress=lambda done, total: bar.update(task, completed=done, total=total))
        print(f"{client_id}: switched to version {version}; waiting up to {args.deadline} s for it to commit")
        result = board.result(version, args.deadline + 30)
    except UpdateError as e:
        raise CommandError(str(e)) from None
    finally:
        board.close()
    if result["state"] != "committed":
        raise CommandError(f"{client_id}: version {version} {result['state']}: {result.get('why')}")
    print(f"{client_id}: version {version} committed")
