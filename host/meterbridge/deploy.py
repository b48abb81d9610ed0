"""Deploy parts: the device tree built with mpy-cross, and a device reached through mpremote's transport.

The device tree is what a board runs: boot.py and main.py as source (MicroPython only runs those
names), the meterbridge package and umqtt compiled to .mpy, config.json, board.json and the profiles
the config names. Hashes are computed on the device, so nothing trusts a manifest that may be stale.
"""

import hashlib
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from mpremote.transport import TransportError
from mpremote.transport_serial import SerialTransport

from . import build, paths
from .errors import CommandError

HAL = {"esp32": "esp32", "linux": "unix"}  # sys.platform -> the HAL module that platform runs
MPY_VERSION = 6  # what mpy-cross 1.2x emits; bytecode .mpy load on any firmware of the same major version
DIRS = ("meterbridge", "lib/umqtt", "profiles")  # owned by deploy: anything else in them is removed
ROM_DIRS = ("meterbridge/", "lib/", "profiles/")  # what deploy --romfs puts in the ROMFS image
SAFE_FLAG = "safemode"  # boot.py stays in the REPL while it exists
STARTS = "starts"  # boot.py's crash-loop count
SLOTS = "slots.json"  # slots.py: which code slot and config run, and the last update version

_HASHES = """
import os, json, hashlib, binascii
def _h(p):
    h = hashlib.sha256()
    with open(p, 'rb') as f:
        while True:
            b = f.read(512)
            if not b:
                break
            h.update(b)
    return binascii.hexlify(h.digest()).decode()
def _walk(d, out):
    try:
        entries = list(os.ilistdir(d))
    except OSError:
        return
    for e in entries:
        p = d + '/' + e[0]
        if e[1] == 0x4000:
            _walk(p, out)
        else:
            out[p] = _h(p)
_f = {}
for _d in %(dirs)r:
    _walk(_d, _f)
for _p in %(files)r:
    try:
        _f[_p] = _h(_p)
    except OSError:
        pass
for _d in %(mkdirs)r:
    try:
        os.mkdir(_d)
    except OSError:
        pass
print(json.dumps(_f))
"""


@dataclass
class Item:
    """One file of the device tree."""

    path: str  # on the device, relative to its working directory ("/" on a board)
    data: bytes


def _mpy_cross_or_fail():
    try:
        return build.mpy_cross()
    except FileNotFoundError as e:
        raise CommandError(str(e)) from None


def _compile(src, out, name, arch):
    """src -> out with mpy-cross, unless out is newer; tracebacks name the file by its module (build.source_name)."""
    if out.exists() and out.stat().st_mtime >= src.stat().st_mtime:
        return out.read_bytes()
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [_mpy_cross_or_fail(), f"-march={arch}", "-s", build.source_name(name), "-o", str(out), str(src)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise CommandError(f"mpy-cross {src}: {done.stderr.strip()}")
    return out.read_bytes()


def firmware(platform, arch, build_dir):
    """The code part of the device tree for a platform: boot/main sources and compiled modules."""
    if platform not in HAL:
        raise CommandError(f"device platform {platform!r} is not supported (only {', '.join(HAL)})")
    items = [Item(name, (paths.FIRMWARE / name).read_bytes()) for name in ("boot.py", "main.py")]
    out = Path(build_dir) / arch
    items.append(Item("slots.mpy", _compile(paths.FIRMWARE / "slots.py", out / "slots.mpy", "slots.py", arch)))
    for src in sorted((paths.FIRMWARE / "meterbridge").rglob("*.py")):
        rel = src.relative_to(paths.FIRMWARE).as_posix()
        if src.parent.name == "hal" and src.stem not in ("__init__", HAL[platform]):
            continue  # another platform's HAL: it imports modules this one lacks
        target = rel[:-3] + ".mpy"
        items.append(Item(target, _compile(src, out / target, rel, arch)))
    # lib/ beside the meterbridge package: the package puts it ahead of the umqtt.simple frozen into the firmware
    for name in ("simple", "pinned"):  # the pinned umqtt.simple, and the module naming its version
        src = paths.LIB / "umqtt" / f"{name}.py"
        if not src.exists():
            raise CommandError(f"{src} missing: run `make setup`")
        target = f"lib/umqtt/{name}.mpy"
        items.append(Item(target, _compile(src, out / target, f"umqtt/{name}.py", arch)))
    return items


def plan(items, remote):
    """(items to copy, paths to remove): what differs by hash, and what deploy owns but no longer ships."""
    wanted = {item.path for item in items}
    copy = [item for item in items if remote.get(item.path) != hashlib.sha256(item.data).hexdigest()]
    stale = sorted(p for p in remote if p not in wanted and any(p.startswith(d + "/") for d in DIRS))
    return copy, stale


def reset_slots(device):
    """After a deploy the deployed tree and config.json run; update versions keep counting up (no replay)."""
    try:
        st = json.loads(device.read(SLOTS))
        last = max(st["version"], st["last"])
    except (ValueError, KeyError, TypeError):
        return  # none yet: the deployed tree runs
    device.write(SLOTS, json.dumps({"v": 1, "code": "", "config": "config.json", "version": last, "last": last,
                                    "trial": None, "result": None}).encode())


def mkdirs(items):
    """Every directory the items need, parents first."""
    dirs = set()
    for item in items:
        parts = item.path.split("/")[:-1]
        dirs.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    return sorted(dirs, key=lambda d: (d.count("/"), d))


class Device:
    """A MicroPython board (or the unix port on a pty) in raw REPL, never soft-reset (mpremote's `resume`)."""

    def __init__(self, port, wait_s=0):
        self.port = port
        self._t = None
        self._connect(wait_s)

    def _connect(self, wait_s):
        end = time.monotonic() + wait_s
        while True:
            try:
                self._t = SerialTransport(self.port, baudrate=115200)
                self._t.enter_raw_repl(soft_reset=False)
                return
            except TransportError as e:
                if self._t is not None:
                    self._t.close()
                    self._t = None
                if time.monotonic() >= end:
                    raise CommandError(f"{self.port}: {e} (is the board connected and not in use?)") from None
                time.sleep(0.5)

    def _exec(self, code, what):
        try:
            return self._t.exec(code).decode().strip().splitlines()[-1]
        except TransportError as e:
            raise CommandError(f"{self.port}: {what} failed: {e}") from None

    def output(self, code, what, timeout=60):
        """Everything code prints on the device; a traceback there is a CommandError with its last line."""
        try:
            out, err = self._t.exec_raw(code, timeout=timeout)
        except TransportError as e:
            raise CommandError(f"{self.port}: {what} failed: {e}") from None
        if err:
            said = err.decode(errors="replace").strip().splitlines()
            raise CommandError(f"{self.port}: {what} failed: {said[-1] if said else 'an error'}")
        return out.decode(errors="replace")

    def info(self):
        """(sys.platform, .mpy version) of the device."""
        out = self._exec("import sys\nprint(sys.platform, getattr(sys.implementation, '_mpy', 0) & 0xFF)",
                         "asking the device its platform")
        platform, mpy = out.split()
        return platform, int(mpy)

    def hashes(self, items):
        """sha256 of the items' files and of everything in DIRS on the device; makes missing directories."""
        owned = tuple(d + "/" for d in DIRS)
        files = [item.path for item in items if not item.path.startswith(owned)]
        code = _HASHES % {"dirs": DIRS, "files": files, "mkdirs": mkdirs(items)}
        return json.loads(self._exec(code, "hashing the files on the device"))

    def write(self, path, data):
        try:
            self._t.fs_writefile(path, data)
        except (TransportError, OSError) as e:
            raise CommandError(f"{self.port}: writing {path} failed: {e}") from None

    def read(self, path):
        """The file's bytes, or b"" when it is not there."""
        try:
            return self._t.fs_readfile(path)
        except (TransportError, OSError):
            return b""

    def remove(self, path):
        try:
            self._t.fs_rmfile(path)
        except (TransportError, OSError):
            pass  # already gone

    def write_romfs(self, image):
        """Replace the device's first ROMFS partition with image (`mpremote romfs deploy`)."""
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "meterbridge.romfs"
            path.write_bytes(image)
            self.close()
            done = subprocess.run([sys.executable, "-m", "mpremote", "connect", self.port, "resume", "romfs",
                                   "deploy", str(path)], capture_output=True, text=True)
            self._connect(10)
        if done.returncode:
            said = (done.stdout + done.stderr).strip().splitlines()
            raise CommandError(f"{self.port}: writing the ROMFS image failed: {said[-1] if said else done.returncode}")

    def reset(self, wait_s=None):
        """machine.reset(); with wait_s, reconnect once the board is back in the REPL."""
        self._t.exec_raw_no_follow("import time, machine; time.sleep_ms(100); machine.reset()")
        self.close()
        if wait_s:
            time.sleep(1.5)  # ROM boot and boot.py's button window
            self._connect(wait_s)

    def close(self):
        if self._t is not None:
            try:
                self._t.exit_raw_repl()
            except (TransportError, OSError):
                pass  # the port went away with a reset
            self._t.close()
            self._t = None
