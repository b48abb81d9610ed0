"""`meterbridge scan` against `meterbridge sim` serving several meters on one pty at different line settings."""

import json
import subprocess
import sys

from test_sim import Sim

# slave 1: an SDM630 at the line's 9600 8N1; slave 2: an EM340 that answers reads of at most 30 registers;
# slave 3: an ABB B23 that decodes only 19200 8E1 (on a pty the simulator can see the baud, not even parity)
METERS = ("--baud", "9600", "--meter", "eastron_sdm630_v2:1", "--meter", "carlo_gavazzi_em340:2,max-read=30",
          "--meter", "abb_b23:3,baud=19200,parity=E")


def scan(link, *args):
    done = subprocess.run([sys.executable, "-m", "meterbridge.main", "scan", "--port", str(link), "--json", *args],
                          capture_output=True, text=True, timeout=120, check=False)
    return done.returncode, json.loads(done.stdout or "[]"), done.stderr


def test_scan_finds_identifies_and_probes_every_meter(tmp_path):
    sim = Sim(tmp_path, *METERS)
    try:
        code, found, err = scan(sim.link, "--baud", "9600,19200", "--parity", "NO", "--ids", "1..4")
    finally:
        sim.stop()
    assert code == 0, err
    by_id = {m["slave"]: m for m in found}
    assert sorted(by_id) == [1, 2, 3], found
    assert by_id[1]["profiles"][0] == "eastron_sdm630_v2" and (by_id[1]["baud"], by_id[1]["parity"]) == (9600, "N")
    assert by_id[2]["profiles"] == ["carlo_gavazzi_em340"] and by_id[2]["max_read"] == 30
    assert by_id[1]["max_read"] == 80, "the SDM630 profile's own limit, which the simulator keeps"
    assert by_id[3]["profiles"] == ["abb_b23"] and by_id[3]["baud"] == 19200, "found only at its own baud"
    assert "frequency_Hz" in by_id[3]["evidence"]


def test_scan_keeps_to_its_deadline(tmp_path):
    sim = Sim(tmp_path, *METERS)
    try:
        code, found, _ = scan(sim.link, "--baud", "9600", "--deadline", "0")
    finally:
        sim.stop()
    assert code == 1 and found == []
