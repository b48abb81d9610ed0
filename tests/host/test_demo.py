"""`meterbridge demo` as a person sees it: one table of values and checks, updated in place, and a board to
watch and update while it runs."""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from rich.console import Console

from conftest import wait_until
from meterbridge.commands.demo import BoardNews, values_table
from meterbridge.everest import Message

REPO = Path(__file__).resolve().parents[2]
START = "meterbridge monitor --broker 127.0.0.1:1883 --module-id pm1 --start"
needs_tmux = pytest.mark.skipif(not shutil.which("tmux"), reason="tmux not installed (make setup installs it)")


class Pane:
    """`meterbridge demo ARGS` in a tmux pane of 150 columns, as a person runs it in a terminal."""

    def __init__(self, tmp_path, args):
        self.tmp = tmp_path
        self.session = "mb-demo-" + uuid.uuid4().hex[:8]
        # the demo's working directory goes to TMPDIR (set in the command: a tmux server that runs already
        # gives a new session its own environment)
        cmd = f"TMPDIR={tmp_path} {REPO / '.venv' / 'bin' / 'meterbridge'} demo {args}; sleep 60"
        subprocess.run(["tmux", "new-session", "-d", "-s", self.session, "-x", "150", "-y", "50", cmd], check=True)

    def screen(self, joined=False):
        """The pane's text; joined: a line the terminal wrapped is one line."""
        return subprocess.run(["tmux", "capture-pane", "-p", "-S", "-", *(["-J"] if joined else []), "-t",
                               self.session], capture_output=True, text=True).stdout

    def work(self):
        """The demo's working directory (its config.json)."""
        return next(self.tmp.glob("meterbridge-demo-*"))

    def board_session(self):
        """The session id of the board the demo runs (meterbridge.boardrun leads it, the firmware is in it)."""
        found = subprocess.run(["pgrep", "-f", f"meterbridge.boardrun {self.work()}"], capture_output=True,
                               text=True).stdout.split()
        assert len(found) == 1, found
        return found[0]

    def close(self):
        subprocess.run(["tmux", "kill-session", "-t", self.session], capture_output=True)


def in_session(sid):
    """The processes of a session: the board's launcher and its firmware while it runs."""
    return subprocess.run(["pgrep", "-a", "-s", sid], capture_output=True, text=True).stdout.strip()


def values_count(text):
    line = next((x for x in text.splitlines() if "powermeter_values: " in x), "")
    count = line.split("powermeter_values: ")[1].split(",")[0] if line else ""
    return int(count) if count.isdigit() else 0


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


def test_the_board_line_says_why_values_pause_and_how_the_last_update_ended():
    news = BoardNews("mb-1")
    news.take("meterbridge/mb-1/status", b"online")
    assert news.note(last_values=99.0, pause_s=3, now=100.0) == "board mb-1: online"
    news.take("meterbridge/mb-1/update/status", b'{"re":"cmd","state":"restarting"}')  # the bridge took a command
    news.update_at = 100.5
    news.take("meterbridge/mb-1/status", b"offline")  # its last will: the board reset
    assert news.note(99.0, 3, now=101.0) == "board mb-1: update under way: restarting"
    assert news.note(99.0, 3, now=105.0) == "board mb-1: update under way: restarting; no values for 6 s"
    news.take("meterbridge/mb-1/update/result", b'{"version": 7, "state": "committed", "why": null}')
    news.take("meterbridge/mb-1/status", b"online")
    assert news.note(106.0, 3, now=106.5) == "board mb-1: online · last update: version 7 committed"
    assert news.note(106.0, 3, now=120.0) == "board mb-1: online; no values for 14 s · last update: version 7 committed"


@needs_tmux
def test_the_demo_updates_one_table_in_place_in_a_terminal(tmp_path):
    pane = Pane(tmp_path, "--period-ms 250 --count 40")
    screen = pane.screen
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
        board = pane.board_session()
        assert "micropython" in in_session(board)
        subprocess.run(["tmux", "send-keys", "-t", pane.session, "C-c"], check=True)  # as a person stops it
        assert wait_until(lambda: "demo: stopping" in screen(), 15), screen()
        assert wait_until(lambda: not in_session(board), 15), in_session(board)  # no firmware left behind
    finally:
        pane.close()


@needs_tmux
def test_an_update_sent_to_the_demo_commits_and_its_table_carries_on(tmp_path):
    """What the demo prints works against it: `meterbridge status` lists its board, and `meterbridge update
    --config WORK/config.json` commits (the board resets into receive mode, takes the stream, resets into the
    trial, commits) while the table goes on showing values after the resets, with the update's outcome."""
    pane = Pane(tmp_path, "--period-ms 250")
    screen = pane.screen
    try:
        assert wait_until(lambda: values_count(screen()) >= 3, 30, step=0.3), screen()
        config = pane.work() / "config.json"
        doc = json.loads(config.read_text())
        broker, client_id = f"127.0.0.1:{doc['broker']['port']}", doc["broker"]["client_id"]
        printed = screen(joined=True)
        for line in (f"meterbridge status --broker {broker}", f"meterbridge logs --broker {broker} --client-id "
                     f"{client_id}", f"meterbridge update --config {config}"):
            assert line in printed, printed
        assert len(doc["update_key"]) == 64 and doc["update_key"] not in printed

        def listed():  # `meterbridge status --json`: the demo's board with its status and state document
            done = subprocess.run([sys.executable, "-m", "meterbridge.main", "status", "--broker", broker, "--json",
                                   "--wait", "2"], capture_output=True, text=True, timeout=60)
            listed.boards = json.loads(done.stdout)
            board = listed.boards.get(client_id) or {}
            return (board.get("status") or "").startswith("online") and "pm1" in (board.get("state") or {}).get(
                "meters", {})

        assert wait_until(listed, 30, step=0.5), listed.boards

        notes, updating = set(), threading.Event()

        def watch():  # the table's board line while the update runs
            while not updating.wait(0.1):
                notes.update(x.strip() for x in screen().splitlines() if x.startswith("board "))

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            done = subprocess.run([sys.executable, "-m", "meterbridge.main", "update", "--config", str(config),
                                   "--version", "7", "--health", "3", "--deadline", "60"],
                                  capture_output=True, text=True, timeout=120)
        finally:
            updating.set()
            watcher.join()
        out = done.stdout + done.stderr
        assert done.returncode == 0 and f"{client_id}: version 7 committed" in out, out
        assert doc["update_key"] not in out
        slots = json.loads((pane.work() / "slots.json").read_text())
        assert (slots["version"], slots["trial"]) == (7, None)  # the board runs the new version from its slot

        # the pause while the board restarts is shown, not fatal
        assert any("update under way: " in n for n in notes), notes
        assert wait_until(lambda: "last update: version 7 committed" in screen(), 15, step=0.3), screen()
        after = values_count(screen())
        assert wait_until(lambda: values_count(screen()) >= after + 3, 20, step=0.3), screen()  # values again
        text = screen()
        assert text.count("pm1 as EVerest receives it") == 1 and "demo: stopping" not in text, text

        board = pane.board_session()
        demo = subprocess.run(["ps", "-o", "ppid=", "-p", board], capture_output=True, text=True).stdout
        os.kill(int(demo), signal.SIGTERM)  # the demo, the board's launcher's parent: as a timeout stops it
        assert wait_until(lambda: "demo: stopping" in screen(), 15), screen()
        assert wait_until(lambda: not in_session(board), 15), in_session(board)  # no firmware left behind
    finally:
        pane.close()
