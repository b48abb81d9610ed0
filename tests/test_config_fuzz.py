"""Hostile configs (tests/config_fuzz.py): the board's check under MicroPython and `config validate` agree on
every one, validate lists the board's problem first, and nothing ends in a traceback."""

import json
import os
import subprocess

from config_fuzz import stream
from meterbridge import paths
from meterbridge.commands.config import _firmware_config
from meterbridge.main import main

COUNT = int(os.environ.get("MB_CONFIG_FUZZ_COUNT", "2000"))

# run on the unix port: each config through the firmware's own loader, one JSON line per config
_BOARD = """
import json, sys
from meterbridge import config
for i in range(int(sys.argv[2])):
    path = "%s/c%d.json" % (sys.argv[1], i)
    try:
        config.load(path)
        print(json.dumps(None))
    except config.ConfigError as e:
        print(json.dumps(str(e)))
    except Exception as e:
        print(json.dumps("CRASH %s: %s" % (type(e).__name__, e)))
"""


def _first(rules, path):
    """What a board stops at (None: it runs), by the firmware's rules under CPython."""
    try:
        rules.load(path)
    except rules.ConfigError as e:
        return str(e)
    return None


def _every(rules, path):
    """Every problem, as `config validate` collects them."""
    rules.collected = found = []
    try:
        rules.load(path)
    except rules.ConfigError as e:  # the file itself (size, bytes, nesting, JSON): nothing past it can be read
        return [str(e)]
    finally:
        rules.collected = None
    return found


def _same(message):
    """A message without the JSON parser's own words, which differ between CPython and MicroPython."""
    return message.split(" (", 1)[0] if message and "not valid JSON" in message else message


def test_validate_lists_first_the_problem_the_board_stops_at(tmp_path):
    rules = _firmware_config()
    path = tmp_path / "config.json"
    refused = 0
    for data in stream(1, COUNT):
        path.write_bytes(data)
        first, every = _first(rules, path), _every(rules, path)
        assert every[:1] == ([first] if first else []), data[:300]
        refused += first is not None
    assert COUNT // 2 < refused < COUNT  # the stream holds good configs too (a changed value may still be valid)


def test_the_board_and_the_host_agree_on_every_config(tmp_path):
    rules = _firmware_config()
    files = []
    for i, data in enumerate(stream(15, COUNT // 2)):
        files.append(tmp_path / f"c{i}.json")
        files[-1].write_bytes(data)
    script = tmp_path / "board.py"
    script.write_text(_BOARD)
    done = subprocess.run([paths.micropython(), "-X", "heapsize=100k", str(script), str(tmp_path), str(len(files))],
                          env={**os.environ, "MICROPYPATH": str(paths.FIRMWARE)}, capture_output=True, text=True,
                          timeout=120)
    board = [json.loads(line) for line in done.stdout.splitlines()]
    assert done.returncode == 0 and len(board) == len(files), done.stderr[-2000:]
    for path, said in zip(files, board, strict=True):
        assert not (said or "").startswith("CRASH"), (said, path.read_bytes()[:300])
        assert _same(said) == _same(_first(rules, path)), path.read_bytes()[:300]


def test_validate_answers_every_config_without_a_traceback(tmp_path, capsys):
    path = tmp_path / "config.json"
    for data in stream(3, COUNT // 10):
        path.write_bytes(data)
        assert main(["config", "validate", str(path)]) in (0, 1)  # anything else raises, and fails here
        out, err = capsys.readouterr()
        assert "Traceback" not in err and (out or err)
