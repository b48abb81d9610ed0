"""`meterbridge deploy` end to end against the unix-port micropython behind a socat pty, and its board flow.

The unix port stands in for a board's REPL: mpremote's raw REPL works over the pty and remote
paths are the micropython process's working directory. The board flow (safe mode, resets) runs
against a recording fake of the device, since the unix port cannot reset.
"""

import json
import os
import re
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from meterbridge import deploy, paths
from meterbridge.main import main
from tlsutil import make_pki

REPO = Path(__file__).resolve().parents[2]
MICROPYTHON = str(REPO / ".venv" / "bin" / "micropython")
STANDIN = REPO / "tests" / "esp32" / "standin"

pytestmark = pytest.mark.skipif(not shutil.which("socat"), reason="socat not installed")


@pytest.fixture(autouse=True)
def firmware(tmp_path, monkeypatch):
    """A snapshot of firmware/ to deploy from, so edits made meanwhile cannot change the tree mid-test."""
    snapshot = tmp_path / "firmware"
    shutil.copytree(paths.FIRMWARE, snapshot, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(paths, "FIRMWARE", snapshot)
    monkeypatch.setattr(paths, "PROFILES", snapshot / "profiles")
    return snapshot


@pytest.fixture
def device(tmp_path):
    """(pty path, the remote working directory): a micropython REPL on the far end of a socat pty."""
    root = tmp_path / "device"
    root.mkdir()
    tty = tmp_path / "tty"
    proc = subprocess.Popen(
        ["socat", f"pty,link={tty},raw,echo=0", f"exec:{MICROPYTHON},pty,raw,echo=0,stderr"],
        cwd=root, env=dict(os.environ, MICROPYPATH=".frozen"), stderr=subprocess.DEVNULL)
    end = time.monotonic() + 10
    while not tty.exists():
        assert time.monotonic() < end, "socat did not make the pty"
        time.sleep(0.05)
    yield str(tty), root
    proc.terminate()
    proc.wait(5)


def unix_config(tmp_path, device_path="/dev/null", **meter):
    path = tmp_path / "config.json"
    m = {"module_id": "m1", "profile": "eastron_sdm120", "uart": {"device": device_path}, **meter}
    path.write_text(json.dumps({"broker": {"host": "127.0.0.1", "port": 1}, "meters": [m]}))
    return path


def run_deploy(capsys, tty, config, tmp_path, *extra):
    status = main(["deploy", "--port", tty, "--config", str(config), "--build-dir", str(tmp_path / "build"),
                   *extra])
    out, err = capsys.readouterr()
    return status, out, err


def counts(out):
    """(files, to copy, to remove) from deploy's summary line."""
    found = re.search(r"(\d+) files, (\d+) to copy, (\d+) to remove", out)
    return tuple(int(n) for n in found.groups())


def test_a_first_deploy_copies_the_tree_and_a_second_copies_nothing(device, firmware, tmp_path, capsys):
    tty, root = device
    config = unix_config(tmp_path)
    status, out, _ = run_deploy(capsys, tty, config, tmp_path)
    files, copied, removed = counts(out)
    assert status == 0 and files == copied > 20 and removed == 0
    assert (root / "boot.py").read_bytes() == (firmware / "boot.py").read_bytes()
    assert (root / "config.json").read_bytes() == config.read_bytes()
    assert sorted(p.name for p in (root / "profiles").iterdir()) == ["eastron_sdm120.json"]
    assert (root / "meterbridge" / "hal" / "unix.mpy").exists()
    assert not (root / "meterbridge" / "hal" / "esp32.mpy").exists()  # the device said linux
    assert not list((root / "meterbridge").rglob("*.py"))
    assert (root / "lib" / "umqtt" / "simple.mpy").exists()
    status, out, _ = run_deploy(capsys, tty, config, tmp_path)
    assert status == 0 and counts(out) == (files, 0, 0), out


def test_only_what_changed_is_copied_and_what_deploy_owns_but_no_longer_ships_is_removed(device, tmp_path,
                                                                                          capsys):
    tty, root = device
    run_deploy(capsys, tty, unix_config(tmp_path), tmp_path)
    (root / "meterbridge" / "app.py").write_text("raise RuntimeError('stale source shadows app.mpy')\n")
    (root / "profiles" / "abb_b23.json").write_text("{}")
    (root / "starts").write_text("2")
    (root / "notes.txt").write_text("the user's own file")
    status, out, _ = run_deploy(capsys, tty, unix_config(tmp_path, period_ms=2000), tmp_path)
    assert status == 0 and counts(out)[1:] == (1, 2)
    assert "[1/1] config.json" in out
    assert not (root / "meterbridge" / "app.py").exists()
    assert not (root / "profiles" / "abb_b23.json").exists()
    assert not (root / "starts").exists()  # a fresh deploy gets a fresh crash-loop count
    assert (root / "notes.txt").exists()


def test_the_deployed_firmware_starts(device, tmp_path, capsys):
    tty, root = device
    master, slave = os.openpty()
    try:
        run_deploy(capsys, tty, unix_config(tmp_path, os.ttyname(slave)), tmp_path)
        env = dict(os.environ, MICROPYPATH=f".frozen:{root}:{root / 'lib'}")
        proc = subprocess.Popen([MICROPYTHON, "main.py", "config.json"], cwd=root, env=env,
                                stderr=subprocess.PIPE, text=True)
        try:
            seen = read_until(proc, "started on")
            assert "started on unix with 1 meter(s)" in seen, seen
        finally:
            proc.terminate()
            proc.wait(5)
    finally:
        os.close(master)
        os.close(slave)


def test_the_board_build_starts_with_the_esp32_hal(tmp_path, capsys):
    """The xtensawin tree a board gets starts the bridge on the ESP32 HAL (unix port + stand-ins)."""
    items = deploy.firmware("esp32", "xtensawin", tmp_path / "build")
    names = {item.path for item in items}
    assert "meterbridge/hal/esp32.mpy" in names and "meterbridge/hal/unix.mpy" not in names
    root = tmp_path / "board"
    config = board_config(tmp_path, capsys)
    items += [deploy.Item("config.json", config.read_bytes()),
              deploy.Item("profiles/eastron_sdm630_v2.json",
                          (paths.PROFILES / "eastron_sdm630_v2.json").read_bytes()),
              # the unix port reports linux, so hal/__init__ asks for .unix: make that the board's HAL
              deploy.Item("meterbridge/hal/unix.py", b"from .esp32 import *  # noqa: F403\n")]
    for item in items:
        (root / item.path).parent.mkdir(parents=True, exist_ok=True)
        (root / item.path).write_bytes(item.data)
    master, slave = os.openpty()
    env = dict(os.environ, MICROPYPATH=f".frozen:{STANDIN}:{root}:{root / 'lib'}",
               STANDIN_UART1=os.ttyname(slave))
    proc = subprocess.Popen([MICROPYTHON, "main.py"], cwd=root, env=env, stderr=subprocess.PIPE, text=True)
    try:
        seen = read_until(proc, "started on")
        assert "network up, address 10.0.0.7" in seen, seen
        assert "started on esp32 with 1 meter(s)" in seen, seen
    finally:
        proc.terminate()
        proc.wait(5)
        os.close(master)
        os.close(slave)


def read_until(proc, text, timeout=15):
    """proc's stderr up to the first line holding text (or the timeout)."""
    seen = ""
    end = time.monotonic() + timeout
    while not (text in seen and seen.endswith("\n")) and time.monotonic() < end:
        if select.select([proc.stderr], [], [], 0.5)[0]:  # raw reads: a buffered readline hides later lines
            seen += os.read(proc.stderr.fileno(), 4096).decode(errors="replace")
    return seen


class FakeBoard:
    """A recording stand-in for deploy.Device on an ESP32 running the bridge."""

    calls = []

    def __init__(self, port, wait_s=0):
        self.calls.append(("connect", port))

    def info(self):
        self.calls.append(("info",))
        return "esp32", 6

    def hashes(self, items):
        self.calls.append(("hashes", deploy.mkdirs(items)))
        return {}

    def read(self, path):
        return b""  # no slots.json: never updated over MQTT

    def write(self, path, data):
        self.calls.append(("write", path))

    def remove(self, path):
        self.calls.append(("remove", path))

    def write_romfs(self, image):
        self.calls.append(("romfs", image))

    def reset(self, wait_s=None):
        self.calls.append(("reset", wait_s))

    def close(self):
        self.calls.append(("close",))


@pytest.fixture
def board(monkeypatch):
    FakeBoard.calls = []
    monkeypatch.setattr(deploy, "Device", FakeBoard)
    return FakeBoard.calls


def board_config(tmp_path, capsys):
    out = tmp_path / "config.json"
    assert main(["config", "new", "--board", "olimex-esp32-poe", "--profile", "eastron_sdm630_v2",
                 "--broker", "10.0.0.2", "--ntp", "192.0.2.123", "-o", str(out)]) == 0
    capsys.readouterr()
    return out


def test_on_a_board_the_copy_runs_in_safe_mode_and_ends_with_a_reset(board, tmp_path, capsys):
    status, out, err = run_deploy(capsys, "/dev/ttyUSB0", board_config(tmp_path, capsys), tmp_path)
    assert status == 0, err
    kinds = [c[0] for c in board]
    assert board[:4] == [("connect", "/dev/ttyUSB0"), ("info",), ("write", "safemode"), ("reset", 20)]
    assert board[4][0] == "hashes" and board[4][1][:3] == ["lib", "meterbridge", "profiles"]
    writes = [c[1] for c in board if c[0] == "write"]
    assert {"board.json", "config.json", "meterbridge/hal/esp32.mpy",
            "profiles/eastron_sdm630_v2.json"} <= set(writes)
    assert "meterbridge/hal/unix.mpy" not in writes
    assert board[-4:] == [("remove", "starts"), ("remove", "safemode"), ("reset", None), ("close",)]
    assert kinds.count("reset") == 2


def test_romfs_puts_code_and_profiles_in_the_image_and_the_rest_in_files(board, tmp_path, capsys):
    status, out, err = run_deploy(capsys, "/dev/ttyUSB0", board_config(tmp_path, capsys), tmp_path, "--romfs")
    assert status == 0, err
    image = next(c[1] for c in board if c[0] == "romfs")
    assert image.startswith(b"\xd2\xcd\x31")  # the ROMFS header (micropython extmod/vfs_rom.c)
    for name in (b"esp32.mpy", b"simple.mpy", b"eastron_sdm630_v2.json", b"app.mpy"):
        assert name in image
    assert b"unix.mpy" not in image
    writes = {c[1] for c in board if c[0] == "write"}
    assert {"boot.py", "main.py", "config.json", "board.json"} <= writes
    assert not [w for w in writes if w.startswith(deploy.ROM_DIRS)]  # earlier file copies become stale
    assert [c[0] for c in board].index("romfs") > [c[0] for c in board].index("reset")  # in safe mode


def test_romfs_on_a_device_without_a_rom_partition_fails_clearly(device, tmp_path, capsys):
    tty, root = device
    status, _, err = run_deploy(capsys, tty, unix_config(tmp_path), tmp_path, "--romfs")
    assert status == 1 and "ROMFS image failed" in err and "ROMFS is not enabled" in err, err
    assert not (root / "config.json").exists()


def test_no_reset_leaves_the_board_in_safe_mode(board, tmp_path, capsys):
    config = board_config(tmp_path, capsys)
    status, out, _ = run_deploy(capsys, "/dev/ttyUSB0", config, tmp_path, "--no-reset")
    assert status == 0 and ("remove", "safemode") not in board and "left in safe mode" in out


def test_a_config_error_stops_before_the_board_is_touched(board, tmp_path, capsys):
    status, _, err = run_deploy(capsys, "/dev/ttyUSB0", unix_config(tmp_path), tmp_path)
    assert status == 1
    assert "meters[0].uart: a board needs id, tx, rx and de, not device" in err
    assert not [c for c in board if c[0] in ("write", "reset")]


def test_an_old_firmware_is_refused_with_a_hint(board, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(FakeBoard, "info", lambda self: ("esp32", 5))
    status, _, err = run_deploy(capsys, "/dev/ttyUSB0", board_config(tmp_path, capsys), tmp_path)
    assert status == 1 and ".mpy version 5" in err and "meterbridge flash" in err


def test_tls_files_named_by_the_config_are_copied(board, tmp_path, capsys):
    config = board_config(tmp_path, capsys)
    doc = json.loads(config.read_text())
    doc["broker"].update(tls={"ca": "/certs/ca.pem"})
    config.write_text(json.dumps(doc))
    status, _, err = run_deploy(capsys, "/dev/ttyUSB0", config, tmp_path)
    assert status == 1 and "broker.tls.ca: /certs/ca.pem: no such file" in err
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    status, _, err = run_deploy(capsys, "/dev/ttyUSB0", config, tmp_path)
    assert status == 1 and "broker.tls.ca: /certs/ca.pem: not a certificate" in err  # checked before it is copied
    make_pki(tmp_path / "certs")
    status, _, err = run_deploy(capsys, "/dev/ttyUSB0", config, tmp_path)
    assert status == 0, err and ("write", "certs/ca.pem") in board
