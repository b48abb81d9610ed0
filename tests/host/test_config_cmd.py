"""`meterbridge config new|validate|show|boards`, and the board files behind them."""

import json
import xml.etree.ElementTree as ET

import pytest

from meterbridge import boards
from meterbridge.commands.config import _firmware_config
from meterbridge.main import main
from tlsutil import make_pki


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
    (lambda d: d["meters"][0]["uart"].update(de=39), "meters[0].uart.de: GPIO39 is input only (GPIO34..39 on ESP32)"),
    (lambda d: d["meters"][0]["uart"].update(tx=35), "meters[0].uart.tx: GPIO35 is input only"),
    (lambda d: d["meters"][0]["uart"].update(rx=40), "meters[0].uart.rx: must be a GPIO number 0..39"),
    (lambda d: d["meters"][0]["uart"].update(de=24), "meters[0].uart.de: GPIO24 does not exist on ESP32"),
    (lambda d: d["network"]["ethernet"].update(mdc=30), "network.ethernet.mdc: GPIO30 does not exist on ESP32"),
    (lambda d: d["network"].update(hostname="h" * 33), "network.hostname: longer than 32 characters"),
    (lambda d: d["meters"][0].update(perod_ms=500), "meters[0].perod_ms: unknown key (did you mean period_ms?)"),
    (lambda d: d["broker"].update(keepalve=60), "broker.keepalve: unknown key (did you mean keepalive?)"),
    (lambda d: d.update(colour="red"), "colour: unknown key\n"),
    (lambda d: d["broker"].update(prefix="ev\0/"), "broker.prefix: must not contain '\\x00'"),
    (lambda d: d["meters"][0].update(module_id="pm\0"), "meters[0].module_id: must not contain '\\x00'"),
    (lambda d: d["meters"][0].update(module_id="m" * 5000), "meters[0].module_id: longer than 64 characters"),
    (lambda d: d["broker"].update(username="u", password="p", allow_plain_password=0),
     "broker.allow_plain_password: must be true or false"),
    (lambda d: d["broker"].update(username="u", password="p", tls=True),
     "broker.tls.ca: a password over TLS needs the broker's CA"),
    (lambda d: d["broker"].update(tls={"insecure": 1}), "broker.tls.insecure: must be true or false"),
    (lambda d: d["meters"].append({**d["meters"][0], "module_id": "pm2", "slave": 2, "baud": 19200}),
     "meters[1].baud: must match meters[0] on the same bus (9600)"),
    (lambda d: d["meters"].append({**d["meters"][0], "module_id": "pm2", "slave": 2, "parity": "E"}),
     "meters[1].parity: must match meters[0] on the same bus (N)"),
    (lambda d: d["meters"].append({**d["meters"][0], "module_id": "pm2"}),
     "meters[1].slave: 1 is taken by meters[0] on the same bus"),
    (lambda d: d["meters"].append({**d["meters"][0], "module_id": "pm2", "slave": 2,
                                   "uart": {**d["meters"][0]["uart"], "tx": 5}}),
     "meters[1].uart: must match meters[0] on the same bus"),
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
                     "--insecure")
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


def test_validate_lists_every_problem_at_once_the_boards_first(capsys, tmp_path):
    def three_problems(d):
        d["broker"]["port"] = 0
        d["meters"][0].update(slave=300, perod_ms=5)
        d["network"]["hostname"] = "bad name"
    status, _, err = edited(capsys, tmp_path, three_problems)
    lines = [line.split("config.json: ", 1)[1] for line in err.strip().splitlines()]
    assert status == 1 and lines == [
        "broker.port: must be an integer 1..65535",
        "network.hostname: use letters, digits and '-'",
        "meters[0].perod_ms: unknown key (did you mean period_ms?)",
        "meters[0].slave: must be an integer 1..247"], err
    rules = _firmware_config()
    with pytest.raises(rules.ConfigError, match=r"^broker\.port: "):  # the board stops at the first
        rules.load(tmp_path / "config.json")


@pytest.mark.parametrize("data,message", [
    (b'{"broker": {"host": "x' + b"y" * 2_000_000 + b'"}}', "larger than 8192 bytes"),
    (b'{"meters": ' + b"[" * 3000 + b"]" * 3000 + b"}", "nested deeper than 8 levels"),
    (b'{"broker":\n {"host": "caf\xe9"}}', "line 2 is not UTF-8 text"),
    (b'{"broker": {"host": "x"}, "meters": [}', "not valid JSON"),
])
def test_validate_refuses_a_file_it_cannot_read_without_a_traceback(capsys, tmp_path, data, message):
    path = tmp_path / "config.json"
    path.write_bytes(data)
    status, _, err = run(capsys, "validate", str(path))
    assert status == 1 and f"{path}: {message}" in err and "Traceback" not in err, err
    with pytest.raises(_firmware_config().ConfigError, match=message):  # the board says the same
        _firmware_config().load(path)


def test_new_with_tls_and_a_password_needs_a_ca_or_insecure(capsys, tmp_path):
    creds = ("--board", "wt32-eth01", "--username", "ev", "--password", "pw")
    status, path, text = new(capsys, tmp_path, *creds, "--tls")
    assert status == 1 and "--ca FILE" in text and not path.exists()
    pki = make_pki(tmp_path)
    status, path, text = new(capsys, tmp_path, *creds, "--ca", "ca.pem")
    assert status == 0, text
    assert json.loads(path.read_text())["broker"]["tls"] == {"ca": "ca.pem"} and pki["ca"].name == "ca.pem"
    assert "warning" not in run(capsys, "validate", str(path))[1]
    status, path, text = new(capsys, tmp_path, *creds, "--insecure", "--force")
    assert status == 0 and json.loads(path.read_text())["broker"]["tls"] == {"insecure": True}
    status, out, _ = run(capsys, "validate", str(path))
    assert status == 0 and "warning: broker.tls: no CA, so any server can pose as the broker and receive the " \
                           "password" in out


@pytest.mark.parametrize("tls,message", [
    ({"ca": "missing.pem"}, "broker.tls.ca: missing.pem: no such file"),
    ({"ca": "broken.pem"}, "broker.tls.ca: broken.pem: not a certificate"),
    ({"ca": "empty.pem"}, "broker.tls.ca: empty.pem: empty"),
    ({"ca": "ca.pem", "cert": "server.pem", "key": "broken.pem"}, "broker.tls.key: broken.pem: not a private key"),
    ({"ca": "ca.pem", "cert": "server.key", "key": "server.key"}, "broker.tls.cert: server.key: not a certificate"),
    ({"ca": "ca.pem", "cert": "server.pem", "key": "other.key"},
     "broker.tls.key: other.key: not the key of broker.tls.cert server.pem"),
    ({"ca": "ca.pem", "cert": "server.pem"}, "broker.tls.key: cert and key go together"),
])
def test_validate_names_a_bad_tls_file_and_its_problem(capsys, tmp_path, tls, message):
    make_pki(tmp_path)
    (tmp_path / "other").mkdir()
    (tmp_path / "other.key").write_bytes(make_pki(tmp_path / "other")["key"].read_bytes())
    ca = (tmp_path / "ca.pem").read_text().splitlines()
    (tmp_path / "broken.pem").write_text("\n".join(ca[:3] + ["!!!!"] + ca[-1:]) + "\n")
    (tmp_path / "empty.pem").write_text("")
    status, _, err = edited(capsys, tmp_path, lambda d: d["broker"].update(tls=tls))
    assert status == 1 and message in err, err


def test_validate_accepts_good_tls_files_beside_the_config(capsys, tmp_path):
    make_pki(tmp_path)
    status, out, err = edited(capsys, tmp_path, lambda d: d["broker"].update(
        tls={"ca": "/ca.pem", "cert": "server.pem", "key": "server.key"}, username="u", password="p"))
    assert status == 0 and "warning" not in out, err
