"""`meterbridge selftest` against the unix-port micropython behind a socat pty, as deploy is tested.

The "board" runs the firmware from source (MICROPYPATH), with the remote working directory as its
filesystem: the journal check writes and removes its files there.
"""

import json
import os
import re
import shutil
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from meterbridge.main import main

REPO = Path(__file__).resolve().parents[2]
MICROPYTHON = str(REPO / ".venv" / "bin" / "micropython")

pytestmark = pytest.mark.skipif(not shutil.which("socat"), reason="socat not installed")


@contextmanager
def running_device(tmp_path, firmware=REPO / "firmware"):
    """(pty path, the device's working directory): a micropython REPL behind socat, running `firmware`."""
    root = tmp_path / "device"
    root.mkdir()
    tty = tmp_path / "tty"
    path = f".frozen:{firmware}:{REPO / 'build' / 'lib'}" if firmware else ".frozen"  # None: what deploy put
    proc = subprocess.Popen(
        ["socat", f"pty,link={tty},raw,echo=0", f"exec:{MICROPYTHON},pty,raw,echo=0,stderr"],
        cwd=root, env=dict(os.environ, MICROPYPATH=path), stderr=subprocess.DEVNULL)
    try:
        end = time.monotonic() + 10
        while not tty.exists():
            assert time.monotonic() < end, "socat did not make the pty"
            time.sleep(0.05)
        yield str(tty), root
    finally:
        proc.terminate()
        proc.wait(5)


def rows(out):
    """{check: (result, detail)} from the Markdown table."""
    found = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[1] in ("pass", "FAIL", "note"):
            found[cells[0]] = (cells[1], cells[2])
    return found


CHECKS = ("energy decode, float32 to exact decimal", "RTU framing and CRC", "read planner", "Powermeter JSON",
          "journal on this filesystem")


def test_every_check_passes_on_the_firmware_as_it_is(tmp_path, capsys):
    with running_device(tmp_path) as (tty, root):
        status = main(["selftest", "--port", tty])
    out = capsys.readouterr().out
    table = rows(out)
    assert status == 0, out
    assert re.search(r"selftest on .*: linux, MicroPython \d+\.\d+\.\d+ \(mpy 6\)", out)
    assert all(table[check][0] == "pass" for check in CHECKS), out
    result, detail = table["umqtt.simple in use"]
    assert result in ("pass", "note") and str(REPO / "build" / "lib" / "umqtt" / "simple.py") in detail
    assert str(root) in table["journal on this filesystem"][1]
    assert not (root / "selftest-journal").exists()  # the journal check cleans up after itself


def test_the_deployed_firmware_carries_the_self_test(tmp_path, capsys):
    """A fresh board has no tests/: what `deploy` copies (.mpy files) is enough to run it."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"broker": {"host": "127.0.0.1", "port": 1}, "meters": [
        {"module_id": "m1", "profile": "eastron_sdm120", "uart": {"device": "/dev/null"}}]}))
    with running_device(tmp_path, None) as (tty, root):
        assert main(["deploy", "--port", tty, "--config", str(config), "--build-dir", str(tmp_path / "build")]) == 0
        assert (root / "meterbridge" / "selftest.mpy").exists()
        main(["selftest", "--port", tty])
    table = rows(capsys.readouterr().out)
    assert all(table[check][0] == "pass" for check in CHECKS), table


def test_a_broken_module_fails_its_check_and_the_others_still_run(tmp_path, capsys):
    """A firmware whose CRC starts from 0 instead of 0xFFFF: its row says FAIL, the exit status is 1."""
    firmware = tmp_path / "firmware"
    shutil.copytree(REPO / "firmware", firmware, ignore=shutil.ignore_patterns("__pycache__"))
    rtu = firmware / "meterbridge" / "modbus" / "rtu.py"
    text = rtu.read_text()
    assert "    c = 0xFFFF\n" in text
    rtu.write_text(text.replace("    c = 0xFFFF\n", "    c = 0\n"))
    with running_device(tmp_path, firmware) as (tty, _):
        status = main(["selftest", "--port", tty])
    out = capsys.readouterr().out
    table = rows(out)
    assert status == 1
    result, detail = table["RTU framing and CRC"]
    assert result == "FAIL" and detail.startswith("crc16('123456789') = ") and detail.endswith(", want 4b37")
    assert all(table[check][0] == "pass" for check in CHECKS if check != "RTU framing and CRC"), out


def test_a_board_without_the_firmware_is_told_to_deploy_it(tmp_path, capsys):
    with running_device(tmp_path, tmp_path / "nothing") as (tty, _):
        status = main(["selftest", "--port", tty])
    assert status == 1 and "deploy the firmware first" in capsys.readouterr().err
