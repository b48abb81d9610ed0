"""`meterbridge config new|validate|show|boards`: make, check and inspect config.json; board wiring pictures.

Validation runs the firmware's own rules (firmware/meterbridge/config.py, imported under CPython) in
their collect-every-problem mode, so the first problem listed is the one a board stops at; then what
only the host can see: the profile files, the uart form the platform needs, the board's pins and the
TLS files.
"""

import copy
import functools
import importlib.util
import json
import os
import secrets
import subprocess
import sys
import types
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from .. import boards, paths
from ..errors import CommandError

_SECRET = "********"
_TLS_MAX = 16384  # as firmware/meterbridge/tls.py reads them
# the firmware's TLS set-up on the unix port, for the files of a broker.tls given as JSON: prints its problem
_TLS_CHECK = """
import json, sys
from meterbridge import tls
try:
    tls.context(json.loads(sys.argv[1]))
except OSError as e:
    print(e)
"""


@functools.cache
def _firmware_config():
    """firmware/meterbridge/config.py as a module; it imports only json and micropython.const, which CPython
    lacks: the stand-in is the identity."""
    sys.modules.setdefault("micropython", types.SimpleNamespace(const=lambda x: x))
    spec = importlib.util.spec_from_file_location("meterbridge_firmware_config",
                                                  paths.FIRMWARE / "meterbridge" / "config.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _profiles():
    return sorted(p.stem for p in paths.PROFILES.glob("*.json"))


def _platform_problems(cfg, platform, board):
    problems = []
    for i, m in enumerate(cfg["meters"]):
        if not (m and m["uart"]):
            continue
        where = f"meters[{i}].uart"
        on_board = "device" not in m["uart"]
        if platform == "esp32" and not on_board:
            problems.append(f"{where}: a board needs id, tx, rx and de, not device")
        elif platform == "unix" and on_board:
            problems.append(f"{where}.device: the unix port needs a serial device path")
        elif board and on_board:
            problems += boards.pin_problems(board, m["uart"], where)
    net = cfg["network"]
    if net is None:
        return problems
    if platform == "esp32" and not (net["wifi"] or net["ethernet"]):
        problems.append("network: a board needs wifi (ssid, password) or ethernet")
    if board and net["ethernet"] and not board["ethernet"]:
        problems.append(f"network.ethernet: {board['name']} has no Ethernet")
    return problems


def _read_tls(data, key):
    """The certificate (ca, cert) or private key (key) in PEM or DER data; ValueError says why not."""
    pem = data.lstrip().startswith(b"-----BEGIN")
    if key != "key":
        try:
            cert = (x509.load_pem_x509_certificate if pem else x509.load_der_x509_certificate)(data)
            cert.public_key()  # parsed lazily: a broken key inside shows only here
            return cert
        except (ValueError, UnsupportedAlgorithm, x509.InvalidVersion):
            raise ValueError("not a certificate (PEM or DER)") from None
    try:
        return (serialization.load_pem_private_key if pem else serialization.load_der_private_key)(data, None)
    except TypeError:
        raise ValueError("an encrypted key: the board needs one without a passphrase") from None
    except (ValueError, UnsupportedAlgorithm):
        raise ValueError("not a private key (PEM or DER)") from None


def _board_tls_problem(tls):
    """What the firmware's own TLS set-up (tls.py, mbedTLS) says about these files under the unix port: the
    first problem, or None. None too where the unix port is not installed."""
    try:
        micropython = paths.micropython()
    except FileNotFoundError:
        return None
    done = subprocess.run([micropython, "-c", _TLS_CHECK, json.dumps(tls)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "MICROPYPATH": f".frozen{os.pathsep}{paths.FIRMWARE}"})
    if done.returncode:  # not an OSError naming the file: the last line of the traceback
        last = (done.stdout + done.stderr).strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        return "broker.tls: the firmware's TLS set-up fails: " + last[0]
    return done.stdout.strip() or None


def _tls_problems(cfg, path):
    """Each TLS file the config names: there (beside the config, where deploy takes it from, or as given),
    readable as what it should be, the client key the one of the client certificate, and usable by the
    firmware's own TLS set-up."""
    tls = cfg["broker"] and cfg["broker"]["tls"]
    problems, loaded, local_paths = [], {}, {}
    for key in ("ca", "cert", "key"):
        name = (tls or {}).get(key)
        if not isinstance(name, str) or not name:
            continue
        where = f"broker.tls.{key}: {name}"
        local = next((p for p in (Path(path).parent / name.lstrip("/"), Path(name)) if p.is_file()), None)
        if local is None:
            problems.append(f"{where}: no such file (beside the config or as given)")
            continue
        local_paths[key] = str(local)
        data = local.read_bytes()[:_TLS_MAX + 1]
        if not data.strip():
            problems.append(f"{where}: empty")
        elif len(data) > _TLS_MAX:
            problems.append(f"{where}: larger than {_TLS_MAX} bytes")
        else:
            try:
                loaded[key] = _read_tls(data, key)
            except ValueError as e:
                problems.append(f"{where}: {e}")
    if "cert" in loaded and "key" in loaded:
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        if (loaded["cert"].public_key().public_bytes(serialization.Encoding.DER, spki)
                != loaded["key"].public_key().public_bytes(serialization.Encoding.DER, spki)):
            problems.append(f"broker.tls.key: {tls['key']}: not the key of broker.tls.cert {tls['cert']}")
    if local_paths and not problems:
        said = _board_tls_problem(local_paths)
        if said:
            for key, local in local_paths.items():
                said = said.replace(f"broker.tls.{key}: {local}: ", f"broker.tls.{key}: {tls[key]}: ")
            problems.append(said)
    return problems


def _problems(path, platform, board):
    """(config or None, board, every problem as `field: reason`) by the firmware's rules, then the host's."""
    rules = _firmware_config()
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise CommandError(f"{path}: cannot read ({e.strerror})") from None
    try:
        doc = rules.decode(data, str(path))
    except rules.ConfigError as e:  # nothing past this can be read
        raise CommandError(str(e)) from None
    problems = rules.collected = []
    try:
        cfg = rules.parse(doc)
    finally:
        rules.collected = None
    if cfg is None:
        return None, board, problems
    if board is None and isinstance(doc.get("board"), str):
        try:
            board = boards.load(doc["board"])
        except CommandError as e:
            problems.append(f"board: {e}")
    problems += [f"meters[{i}].profile: no profile {m['profile']!r} (known: {', '.join(_profiles())})"
                 for i, m in enumerate(cfg["meters"]) if m and m["profile"] and m["profile"] not in _profiles()]
    problems += _platform_problems(cfg, platform or ("esp32" if board else None), board)
    problems += _tls_problems(cfg, path)
    return cfg, board, problems


def check(path, platform=None, board=None):
    """(the parsed config with defaults, its board or None), or a CommandError listing every problem, each
    with its field and reason.

    board defaults to the config's own "board" key (written by `config new`); a board implies esp32.
    """
    cfg, board, problems = _problems(path, platform, board)
    if problems:
        raise CommandError(f"{path}: " + f"\n{path}: ".join(problems))
    return cfg, board


def warnings(cfg):
    """What the firmware warns about at start-up for this config."""
    return _firmware_config().warnings(cfg)


def masked(cfg):
    """A copy with the passwords replaced, for printing."""
    out = copy.deepcopy(cfg)
    for section in (out["broker"], out["network"]["wifi"]):
        if section and section.get("password"):
            section["password"] = _SECRET
    if out.get("update_key"):
        out["update_key"] = _SECRET
    return out


def new_update_key():
    """A fresh per-board key for updates over MQTT (HMAC-SHA256), 32 random bytes as hex."""
    return secrets.token_hex(32)


def _broker(args):
    host, _, port = args.broker.partition(":")
    broker = {"host": host, "prefix": args.prefix, "client_id": args.client_id}
    if port:
        if not port.isdigit():
            raise CommandError(f"--broker {args.broker}: the port must be a number")
        broker["port"] = int(port)
    if args.username is not None:
        broker.update(username=args.username, password=args.password or "")
    if args.tls or args.ca or args.insecure:
        if args.username is not None and not (args.ca or args.insecure):
            raise CommandError("--tls with a password needs --ca FILE, the CA that signed the broker's certificate "
                               "(or --insecure, which sends the password to any server)")
        broker["tls"] = {**({"ca": args.ca} if args.ca else {}), **({"insecure": True} if args.insecure else {})}
    return broker


def _network(args, board):
    net = {"ntp": args.ntp} if args.ntp else {}
    if args.wifi_ssid:
        return {**net, "wifi": {"ssid": args.wifi_ssid, "password": args.wifi_password or ""}}
    if board["ethernet"]:
        return {**net, "ethernet": dict(board["ethernet"])}
    raise CommandError(f"{board['name']} has no Ethernet: give --wifi-ssid and --wifi-password")


def _new(args):
    if not args.board and not args.device:
        raise CommandError("give --board (a board) or --device (a serial device for the unix port)")
    if args.profile not in _profiles():
        raise CommandError(f"unknown profile {args.profile!r}; known: {', '.join(_profiles())}")
    out = Path(args.out)
    if out.exists() and not args.force:
        raise CommandError(f"{out} exists; --force replaces it")
    defaults = json.loads((paths.PROFILES / f"{args.profile}.json").read_text()).get("defaults", {})
    board = boards.load(args.board) if args.board else None
    meter = {"module_id": args.module_id, "profile": args.profile,
             "slave": args.slave or defaults.get("slave", 1), "baud": args.baud or defaults.get("baud", 9600),
             "parity": args.parity or defaults.get("parity", "N"),
             "uart": dict(board["uart"]) if board else {"device": args.device}}
    doc = {"broker": _broker(args), "meters": [meter], "update_key": new_update_key()}
    if board:
        doc = {"board": board["name"], "network": _network(args, board), **doc}
    draft = out.with_name(out.name + ".new")  # checked before it replaces anything
    draft.write_text(json.dumps(doc, indent=2) + "\n")
    try:
        cfg, _ = check(draft, None if board else "unix", board)
    except CommandError as e:
        draft.unlink()
        raise CommandError(str(e).replace(str(draft), str(out))) from None
    draft.replace(out)
    where = f"UART{meter['uart']['id']} TX={meter['uart']['tx']} RX={meter['uart']['rx']} " \
            f"DE={meter['uart']['de']}" if board else meter["uart"]["device"]
    print(f"wrote {out}: {args.profile} as {args.module_id}, slave {meter['slave']}, "
          f"{meter['baud']} {meter['parity']} on {where}")
    for warning in warnings(cfg):
        print(f"{out}: warning: {warning}")
    if board:
        print(f"next: meterbridge deploy --port PORT --config {out}")


def _validate(args):
    board = boards.load(args.board) if args.board else None
    cfg, _ = check(args.file, args.platform, board)
    print(f"{args.file}: ok ({len(cfg['meters'])} meter(s), broker {cfg['broker']['host']})")
    for warning in warnings(cfg):
        print(f"{args.file}: warning: {warning}")


def _show(args):
    print(json.dumps(masked(check(args.file)[0]), indent=2))


def _boards(args):
    pins = ", ".join(f"{pin} ({why})" for pin, why in boards.STRAPPING.items())
    print(f"ESP32 strapping pins, read at reset: {pins}. Input-only: 34-39, without pull resistors.")
    for name in boards.names():
        board = boards.load(name)
        net = "Ethernet + Wi-Fi" if board["ethernet"] else "Wi-Fi"
        u = board["uart"]
        print(f"{name:28} {board['chip']:6} {net:16} UART{u['id']} TX={u['tx']} RX={u['rx']} DE={u['de']}")
        for note in board["notes"]:
            print(f"{'':28} - {note}")
        if boards.strapping_uses(board):
            print(f"{'':28} - on a strapping pin: {', '.join(boards.strapping_uses(board))}")
        if args.svg:
            out = Path(args.svg) / f"{name}.svg"
            out.write_text(boards.wiring_svg(board))
            print(f"{'':28} wrote {out}")


def add_arguments(parser):
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    new = sub.add_parser("new", help="write a config from a board, a profile and a broker")
    new.add_argument("--board", help=f"one of: {', '.join(boards.names())}")
    new.add_argument("--device", help="serial device instead of a board (for `meterbridge run`)")
    new.add_argument("--profile", required=True, help="meter profile (firmware/profiles/<name>.json)")
    new.add_argument("--broker", required=True, help="MQTT broker HOST[:PORT]")
    new.add_argument("--module-id", default="powermeter", help="EVerest module id (default: powermeter)")
    new.add_argument("--prefix", default="", help="topic prefix of EVerest's external MQTT API")
    new.add_argument("--client-id", default="meterbridge", help="MQTT client id")
    new.add_argument("--username", help="broker user name")
    new.add_argument("--password", help="broker password (the firmware sends it only over TLS)")
    new.add_argument("--tls", action="store_true", help="connect to the broker over TLS")
    new.add_argument("--ca", metavar="FILE", help="check the broker's certificate with this CA (PEM or DER; "
                     "deploy copies it from beside the config); implies --tls")
    new.add_argument("--insecure", action="store_true", help="TLS without checking the broker: any server "
                     "that answers gets the password")
    new.add_argument("--slave", type=int, help="Modbus slave id (default: the profile's)")
    new.add_argument("--baud", type=int, help="line speed (default: the profile's)")
    new.add_argument("--parity", choices="NEO", help="parity (default: the profile's)")
    new.add_argument("--wifi-ssid", help="join this Wi-Fi network (needed on boards without Ethernet)")
    new.add_argument("--wifi-password", help="Wi-Fi password")
    new.add_argument("--ntp", help="NTP server (default pool.ntp.org; without internet, the charger's own)")
    new.add_argument("-o", "--out", default="config.json", help="file to write (default: config.json)")
    new.add_argument("--force", action="store_true", help="replace an existing file")
    validate = sub.add_parser("validate", help="check a config with the firmware's own rules")
    validate.add_argument("file")
    validate.add_argument("--board", help="also check the uart pins against this board")
    validate.add_argument("--platform", choices=("esp32", "unix"), help="check the uart form for a platform")
    show = sub.add_parser("show", help="print a config with defaults filled in and secrets masked")
    show.add_argument("file")
    listing = sub.add_parser("boards", help="list the boards; --svg DIR writes their wiring pictures")
    listing.add_argument("--svg", metavar="DIR", help="write <DIR>/<board>.svg for every board")


def run(args):
    {"new": _new, "validate": _validate, "show": _show, "boards": _boards}[args.action](args)
