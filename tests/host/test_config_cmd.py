"""`meterbridge config new|validate|show|boards`, and the board files behind them."""

import json
import xml.etree.ElementTree as ET

import pytest

from meterbridge import boards
from meterbridge.commands.config import _firmware_config
from meterbridge.main import main


def run(capsys, *argv):
    status = main(["config", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def new(capsys, tmp_path, *extra, name="config.json"):
    out = tmp_path / name
    status, text, err = run(capsys, "new", "--profile", "eastron_sdm630_v2", "--broker", "10.0.0.2:1883",
                            "-o", str(out), *extra)
    return status, out, text + err


@pytest.mark.parametrize("board", ["olimex-esp32-poe", "wt32-eth01"])
def test_new_for_an_ethernet_board_takes_pins_and_phy_from_the_board_file(capsys, tmp_path, board):
    status, path, text = new(capsys, tmp_path, "--board", board, "--ntp", "10.0.0.1")
    assert status == 0, text
    doc, spec = json.loads(path.read_text()), boards.load(board)
    assert doc["board"] == board and doc["network"] == {"ntp": "10.0.0.1", "ethernet": spec["ethernet"]}
    assert doc["meters"][0]["uart"] == spec["uart"]
    assert doc["meters"][0]["baud"] == 9600 and doc["broker"]["port"] == 1883
    assert run(capsys, "validate", str(path))[0] == 0


def test_new_on_a_wifi_only_board_needs_the_network(capsys, tmp_path):
    status, path, text = new(capsys, tmp_path, "--board", "esp32-devkitc-max3485")
    assert status == 1 and "--wifi-ssid" in text and not path.exists()
    status, path, text = new(capsys, tmp_path, "--board", "esp32-devkitc-max3485", "--wifi-ssid", "yard",
                             "--wifi-password", "pw")
    assert status == 0, text
    assert json.loads(path.read_text())["network"] == {"wifi": {"ssid": "yard", "password": "pw"}}


def test_new_for_the_unix_port_uses_a_device_and_the_profile_defaults(capsys, tmp_path):
    out = tmp_path / "run.json"
    status, _, err = run(capsys, "new", "--device", "/dev/ttyUSB0", "--profile", "eastron_sdm120",
                         "--broker", "localhost", "-o", str(out))
    assert status == 0, err
    meter = json.loads(out.read_text())["meters"][0]
    assert meter["uart"] == {"device": "/dev/ttyUSB0"} and meter["baud"] == 2400  # SDM120's factory default


def test_new_does_not_overwrite_without_force(capsys, tmp_path):
    (tmp_path / "config.json").write_text("{}")
    status, _, text = new(capsys, tmp_path, "--board", "wt32-eth01")
    assert status == 1 and "--force" in text
    assert new(capsys, tmp_path, "--board", "wt32-eth01", "--force")[0] == 0


def edited(capsys, tmp_path, change):
    _, path, _ = new(capsys, tmp_path, "--board", "olimex-esp32-poe")
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))
    return run(capsys, "validate", str(path))


@pytest.mark.parametrize("change,message", [
    (lambda d: d["meters"][0].update(baud=1000000), "meters[0].baud: must be an integer 1200..230400"),
    (lambda d: d["meters"][0].update(profile="nope"), "meters[0].profile: no profile 'nope'"),
    (lambda d: d["meters"][0]["uart"].update(tx=18), "meters[0].uart.tx: GPIO18 is taken on olimex-esp32-poe "
                                                     "(Ethernet MDIO)"),
    (lambda d: d["meters"][0]["uart"].update(de=39), "meters[0].uart.de: GPIO39 is input only on esp32"),
    (lambda d: d["meters"][0].update(uart={"device": "/dev/ttyUSB0"}), "meters[0].uart: a board needs id"),
    (lambda d: d["network"]["ethernet"].update(phy_type="W5500"), "network.ethernet.phy_type: one of"),
    (lambda d: d.update(network={}), "network: a board needs wifi"),
    (lambda d: d["broker"].update(username="u", password="p"), "broker.password: refused without TLS"),
])
def test_validate_names_the_field_and_the_reason(capsys, tmp_path, change, message):
    status, _, err = edited(capsys, tmp_path, change)
    assert status == 1 and message in err, err


def test_validate_reports_broken_json_with_its_position(capsys, tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"broker": {"host": "x"},\n "meters": [}')
    status, _, err = run(capsys, "validate", str(path))
    assert status == 1 and "not valid JSON" in err and "line 2" in err


def test_show_fills_defaults_and_masks_secrets(capsys, tmp_path):
    _, path, _ = new(capsys, tmp_path, "--board", "esp32-devkitc-max3485", "--wifi-ssid", "yard",
                     "--wifi-password", "wifi-secret", "--username", "ev", "--password", "mqtt-secret",
                     "--tls")
    status, out, _ = run(capsys, "show", str(path))
    assert status == 0 and "secret" not in out
    shown = json.loads(out)
    assert shown["broker"]["password"] == shown["network"]["wifi"]["password"] == "********"
    assert shown["meters"][0]["period_ms"] == 1000 and shown["network"]["ntp"] == "pool.ntp.org"


@pytest.mark.parametrize("name", boards.names())
def test_every_board_file_is_consistent(name):
    board = boards.load(name)
    assert board["name"] == name
    assert boards.pin_problems(board, board["uart"], "uart") == []
    rules = _firmware_config()
    net = rules.parse({"broker": {"host": "h"}, "network": {"ethernet": board["ethernet"]},
                       "meters": [{"module_id": "m", "profile": "p", "uart": board["uart"]}]})["network"]
    assert net["ethernet"] == board["ethernet"]
    if board["button"]:  # a uart must not take the safe-mode button
        assert str(board["button"]["pin"]) in board["reserved"]
    assert boards.download_url(board).startswith("https://micropython.org/download/")


def test_the_committed_wiring_pictures_are_generated_from_the_board_files(capsys, tmp_path):
    status, out, _ = run(capsys, "boards", "--svg", str(tmp_path))
    assert status == 0 and "olimex-esp32-poe" in out
    for name in boards.names():
        fresh = (tmp_path / f"{name}.svg").read_text()
        ET.fromstring(fresh)  # well-formed
        committed = (boards.BOARDS / f"{name}.svg").read_text()
        assert fresh == committed, "regenerate: meterbridge config boards --svg boards"
