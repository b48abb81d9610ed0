"""`meterbridge status` and `meterbridge logs`: what a person sees of the boards on a broker."""

import json
import os
import subprocess
import sys

from rich.console import Console

from conftest import Bridge, wait_until
from meterbridge.commands.status import table

NOW = 1_000_000.0
STATE = {"firmware": "0.1.0", "umqtt": "1.3.4", "platform": "esp32", "uptime_s": 3600, "reset": "watchdog",
         "heap": {"free": 21000, "floor": 17000}, "clock": "set", "link": {"connects": 2, "refused": 0},
         "meters": {"pm1": {"online": False, "cycles": 4000, "errors": {"timeout": 7, "crc": 0},
                            "last_error": "timeout", "last_error_s": 3590, "transaction": "tx-9",
                            "read_limits": {"max_read": 30, "holes": [[10, 11]]}}}}


def shown(boards):
    console = Console(record=True, width=220)
    console.print(table(boards, now=NOW))
    return console.export_text()


def test_the_table_has_a_row_per_meter_with_what_a_person_acts_on():
    text = shown({"cp1": {"status": "online", "state": STATE, "at": NOW - 30},
                  "cp2": {"status": "offline", "state": None, "at": None}})
    row = next(line for line in text.splitlines() if "cp1" in line)
    for want in ("online", "0.1.0", "1.3.4", "60 min (watchdog)", "21000/17000", "set", "pm1", "no", "4000",
                 "timeout 7", "timeout (40 s ago)", "30, 1 holes", "tx-9"):
        assert want in row, (want, row)
    assert "crc" not in row  # kinds that never happened are left out
    assert "offline" in next(line for line in text.splitlines() if "cp2" in line)


def meterbridge(*args, timeout=30):
    env = dict(os.environ, COLUMNS="200")  # a terminal wide enough for the table (rich reads COLUMNS)
    return subprocess.run([sys.executable, "-m", "meterbridge.main", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_status_and_logs_show_what_a_board_reports(broker, tmp_path):
    b = Bridge(tmp_path, broker, period_ms=250, heapsize="128k")  # the state topics need ~12 KB free (app.py)
    client_id = b.config["broker"]["client_id"]
    where = f"127.0.0.1:{broker}"
    try:
        b.start()

        def reported():
            out = meterbridge("status", "--broker", where, "--json", "--wait", "0.5")
            board = json.loads(out.stdout).get(client_id) or {}
            return board if (board.get("state") or {}).get("meters", {}).get("pm1", {}).get("online") else None

        assert wait_until(reported, 20, step=0.5), b.firmware_log()
        assert reported()["status"].startswith("online")
        text = meterbridge("status", "--broker", where, "--once", "--wait", "0.5").stdout
        row = next(line for line in text.splitlines() if client_id in line)
        assert "online" in row and "pm1" in row and "yes" in row, text
        follow = subprocess.Popen([sys.executable, "-m", "meterbridge.main", "logs", "--broker", where,
                                   "--client-id", client_id, "--count", "1", "--timeout", "30"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert wait_until(lambda: b.alive(), 1)
        b.toggle_meter()
        out, err = follow.communicate(timeout=40)
        assert follow.returncode == 0, err
        assert "warn: pm1 meter unreachable" in out, out
    finally:
        b.stop()
