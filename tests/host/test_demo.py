"""`meterbridge demo` as a person sees it: one table of values and checks, updated in place."""

import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from rich.console import Console

from conftest import wait_until
from meterbridge.commands.demo import values_table
from meterbridge.everest import Message

REPO = Path(__file__).resolve().parents[2]
START = "meterbridge monitor --broker 127.0.0.1:1883 --module-id pm1 --start"


def test_the_table_shows_every_quantity_with_all_its_digits_and_the_start_command():
    values = Message(7, "powermeter_values", b'{"timestamp": "2026-11-29T22:00:00.000Z", "meter_id": "pm1", '
                     b'"energy_Wh_import": {"total": 98765429.6875, "L1": 1.5}, "voltage_V": {"L1": 230.1}}', 99.0)
    check = Message(8, "communication_check", b"true", 99.5)
    console = Console(record=True, width=80)
    console.print(values_table({"powermeter_values": values, "communication_check": check},
                               {"powermeter_values": 5, "communication_check": 4}, START, now=100.0))
    text = console.export_text()
    assert "98765429.6875" in text.replace("\n", "").replace(" ", "").replace("│", "")
    assert "2026-11-29T22:00:00.000Z" in text and "voltage_V" in text
    assert "powermeter_values: 5, the last 1.0 s ago" in text and "communication_check: 4" in text
    assert "--module-id pm1 --start" in text


@pytest.mark.skipif(not shutil.which("tmux"), reason="tmux not installed (make setup installs it)")
def test_the_demo_updates_one_table_in_place_in_a_terminal(tmp_path):
    session = "mb-demo-" + uuid.uuid4().hex[:8]
    env = dict(os.environ, TMPDIR=str(tmp_path))
    cmd = f"{REPO / '.venv' / 'bin' / 'meterbridge'} demo --period-ms 250 --count 40; sleep 60"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "150", "-y", "50", cmd], check=True, env=env)

    def screen():
        return subprocess.run(["tmux", "capture-pane", "-p", "-S", "-", "-t", session], capture_output=True,
                              text=True).stdout

    def values_count(text):
        line = next((x for x in text.splitlines() if "powermeter_values: " in x), "")
        count = line.split("powermeter_values: ")[1].split(",")[0] if line else ""
        return int(count) if count.isdigit() else 0

    try:
        assert wait_until(lambda: values_count(screen()) >= 3, 30, step=0.3), screen()
        first = screen()
        time.sleep(2)
        later = screen()
        assert values_count(later) > values_count(first)  # it moved on ...
        for text in (first, later):  # ... in the same place: one table, however many updates
            assert text.count("pm1 as EVerest receives it") == 1, text
            assert text.count("powermeter_values: ") == 1, text
        assert "Start a transaction against it:  meterbridge monitor --broker 127.0.0.1:" in later
        subprocess.run(["tmux", "send-keys", "-t", session, "C-c"], check=True)  # as a person stops it
        assert wait_until(lambda: "demo: stopping" in screen(), 15), screen()
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
