"""Hostile configs and TLS files (tests/config_fuzz.py): the board's check under MicroPython and `config validate`
agree on every one, validate lists the board's problem first, and nothing ends in a traceback."""

import json
import os
import random
import subprocess

from config_fuzz import spoilt_tls_files, stream
from meterbridge import paths
from meterbridge.commands.config import _firmware_config, _tls_problems
from meterbridge.main import main
from tlsutil import make_pki

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


# the board's TLS files: tls.context as the MQTT link makes it, one JSON line per broker.tls config
_TLS_BOARD = """
import json, sys
from meterbridge import tls
for i in range(int(sys.argv[2])):
    with open("%s/t%d.json" % (sys.argv[1], i)) as f:
        conf = json.load(f)
    try:
        tls.context(conf)
        print(json.dumps(None))
    except OSError as e:
        print(json.dumps(str(e)))
    except Exception as e:
        print(json.dumps("CRASH %s: %s" % (type(e).__name__, e)))
"""


def _board(tmp_path, script, count):
    """What the firmware under the unix port printed for each of count inputs."""
    (tmp_path / "board.py").write_text(script)
    done = subprocess.run([paths.micropython(), "-X", "heapsize=100k", str(tmp_path / "board.py"), str(tmp_path),
                           str(count)], env={**os.environ, "MICROPYPATH": f".frozen:{paths.FIRMWARE}"},
                          capture_output=True, text=True, timeout=120)
    said = [json.loads(line) for line in done.stdout.splitlines()]
    assert done.returncode == 0 and len(said) == count, done.stderr[-2000:]
    return said


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
    board = _board(tmp_path, _BOARD, len(files))
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


def test_spoilt_tls_files_are_named_by_the_board_and_by_validate(tmp_path):
    pki = make_pki(tmp_path)
    good = {"ca": pki["ca"], "cert": pki["cert"], "key": pki["key"]}
    cases = spoilt_tls_files(random.Random(15), {k: p.read_bytes() for k, p in good.items()}, 120)
    confs = []
    for i, (key, data) in enumerate(cases):
        spoilt = tmp_path / f"f{i}.pem"
        spoilt.write_bytes(data)
        confs.append({**{k: str(p) for k, p in good.items()}, key: str(spoilt)})
        (tmp_path / f"t{i}.json").write_text(json.dumps(confs[-1]))
    board = _board(tmp_path, _TLS_BOARD, len(cases))
    refused = 0
    for (key, data), conf, said in zip(cases, confs, board, strict=True):
        if said is None:
            continue
        refused += 1
        host = _tls_problems({"broker": {"tls": conf}}, tmp_path / "config.json")
        assert said.startswith(f"broker.tls.{key}: {conf[key]}: "), (said, data[:200])
        assert any(p.startswith(f"broker.tls.{key}: ") for p in host), (said, host, data[:200])
    assert refused > len(cases) // 2
