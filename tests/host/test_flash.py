"""`meterbridge flash`: the exact esptool commands, checked by esptool's own argument parser."""

import shlex

import esptool
import pytest

from meterbridge import boards
from meterbridge.commands import flash
from meterbridge.main import main


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "ESP32_GENERIC-v1.26.bin"
    path.write_bytes(b"\xe9" + bytes(255))
    return path


def dry_run(capsys, board, image, *extra):
    status = main(["flash", "--board", board, "--port", "/dev/ttyUSB0", "--firmware", str(image), "--dry-run",
                   *extra])
    out, err = capsys.readouterr()
    return status, [shlex.split(line) for line in out.splitlines()], err


@pytest.mark.parametrize("board", boards.names())
def test_dry_run_prints_erase_then_write_at_the_chips_offset(capsys, image, board):
    status, (erase, write), _ = dry_run(capsys, board, image)
    tool = flash.esptool()
    head = [*tool, "--chip", "esp32", "--port", "/dev/ttyUSB0", "--baud", "460800"]
    assert status == 0
    assert erase == head + ["erase-flash"]
    assert write == head + ["write-flash", "0x1000", str(image)]


def parse_with_esptool(argv):
    """esptool's click parser on argv (the group, then the subcommand), without touching a port."""
    esptool.cli._esp = None  # what EsptoolGroup.__call__ would set
    ctx = esptool.cli.make_context("esptool", list(argv))
    # click 8.2 moved protected_args to _protected_args
    protected = getattr(ctx, "_protected_args", None) or getattr(ctx, "protected_args", [])
    name, cmd, rest = esptool.cli.resolve_command(ctx, [*protected, *ctx.args])
    sub = cmd.make_context(name, rest, parent=ctx)
    return ctx.params, name, sub.params


def test_esptool_accepts_both_commands(capsys, image):
    _, commands, _ = dry_run(capsys, "olimex-esp32-poe", image, "--baud", "921600")
    skip = len(flash.esptool())
    group, name, params = parse_with_esptool(commands[0][skip:])
    assert (group["chip"], group["port"], group["baud"]) == ("esp32", "/dev/ttyUSB0", 921600)
    assert name == "erase-flash"
    group, name, params = parse_with_esptool(commands[1][skip:])
    assert name == "write-flash"
    [(address, handle)] = params["addr_filename"]
    handle.close()
    assert address == 0x1000 and handle.name == str(image)


def test_without_firmware_it_says_where_to_download_it(capsys):
    status = main(["flash", "--board", "olimex-esp32-poe", "--port", "/dev/ttyUSB0", "--dry-run"])
    err = capsys.readouterr().err
    assert status == 1 and "https://micropython.org/download/OLIMEX_ESP32_POE/" in err


def test_a_file_that_is_not_an_esp_image_is_refused(capsys, tmp_path):
    page = tmp_path / "download.bin"
    page.write_text("<!DOCTYPE html>")
    status = main(["flash", "--board", "wt32-eth01", "--port", "/dev/ttyUSB0", "--firmware", str(page)])
    err = capsys.readouterr().err
    assert status == 1 and "not an ESP32 firmware image" in err and "ESP32_GENERIC" in err


def test_flashing_runs_esptool_and_reports_its_failure(capsys, image, monkeypatch):
    ran = []
    def call(cmd):
        ran.append(cmd)
        return 2 if "write-flash" in cmd else 0

    monkeypatch.setattr(flash.subprocess, "call", call)
    status = main(["flash", "--board", "wt32-eth01", "--port", "/dev/ttyUSB0", "--firmware", str(image)])
    assert status == 1 and [c[-1] for c in ran] == ["erase-flash", str(image)]
    assert "esptool failed (exit 2)" in capsys.readouterr().err
