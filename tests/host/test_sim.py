"""`meterbridge sim` as a real process on a real pty: frames, exceptions, writes, signals, faults, timing."""

import json
import os
import select
import signal
import struct
import subprocess
import sys
import termios
import time
import tty
from decimal import Decimal

import pytest

from meterbridge.codec import decode_exact, load_profile
from rtu import crc16

SDM = load_profile("eastron_sdm630_v2")
SMALL = {"name": "small", "function_code": 3, "word_order": "little", "defaults": {"slave": 5},
         "max_read": 10, "holes": [[100, 199]],
         "fields": {"voltage_V.L1": {"reg": 0, "type": "u32", "exp10": -1},
                    "energy_Wh_import.total": {"reg": 200, "type": "u64", "exp10": 1}}}


def adu(*values, fmt=">BBHH"):
    """A request frame: packed fields and their CRC, low byte first."""
    body = struct.pack(fmt, *values)
    return body + struct.pack("<H", crc16(body))


class Sim:
    """A `meterbridge sim` child on tmp_path/meter and the client end of its pty."""

    def __init__(self, tmp_path, *args):
        self.link = tmp_path / "meter"
        self.truth_path = tmp_path / "truth.jsonl"
        cmd = [sys.executable, "-m", "meterbridge.main", "sim", "--link", str(self.link),
               "--truth", str(self.truth_path), *args]
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
        ready, _, _ = select.select([self.proc.stderr], [], [], 20)
        self.banner = self.proc.stderr.readline() if ready else ""
        if self.banner.startswith("sim: OCMF public key"):  # a signing meter's key line comes first; the banner
            self.banner = self.proc.stderr.readline()  # follows at once (and may already sit in the pipe's buffer)
        assert self.banner.startswith("sim: serving"), self.banner
        self.fd = os.open(self.link, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(self.fd)

    def ask(self, request, size, timeout=1.0):
        """Send request; the reply (up to size bytes, b'' if none) and the seconds until its last byte."""
        start = time.monotonic()
        os.write(self.fd, request)
        reply = b""
        while len(reply) < size and select.select([self.fd], [], [], start + timeout - time.monotonic())[0]:
            reply += os.read(self.fd, size - len(reply))
        return reply, time.monotonic() - start

    def signal(self, sig):
        """Send sig and give the simulator a moment to act on it."""
        self.proc.send_signal(sig)
        time.sleep(0.1)

    def truth(self):
        """The truth file's records."""
        return [json.loads(line) for line in self.truth_path.read_text().splitlines()]

    def stop(self):
        """SIGTERM; the exit status."""
        os.close(self.fd)
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(5)


@pytest.fixture
def sim(tmp_path):
    """Factory: sim(*args) starts a simulator; each must exit 0 on SIGTERM and remove its link."""
    made = []

    def make(*args):
        workdir = tmp_path / f"sim{len(made)}"
        workdir.mkdir()
        made.append(Sim(workdir, *args))
        return made[-1]

    yield make
    for s in made:
        assert s.stop() == 0
        assert not os.path.lexists(s.link)


@pytest.fixture
def small(tmp_path):
    """Path of a small FC3 profile file: little-endian integers, a hole, max_read 10, default slave 5."""
    path = tmp_path / "small.json"
    path.write_text(json.dumps(SMALL))
    return str(path)


def floats(reply):
    """The big-endian float32 values of a read reply."""
    return struct.unpack(f">{reply[2] // 4}f", reply[3:-2])


def test_fc4_read_answers_with_good_crc(sim):
    s = sim("--profile", "eastron_sdm630_v2")
    assert s.banner.strip().endswith("on " + str(s.link) + " (9600 8N1)")
    reply, _ = s.ask(adu(1, 4, 0, 18), 5 + 36)
    assert crc16(reply) == 0 and reply[:3] == bytes([1, 4, 36])
    volts, amps, watts = floats(reply)[0:3], floats(reply)[3:6], floats(reply)[6:9]
    assert all(207 <= v <= 253 for v in volts) and all(0 <= a <= 32 for a in amps)
    assert watts == pytest.approx([v * a for v, a in zip(volts, amps, strict=True)], rel=1e-5, abs=0.01)


def test_fc3_and_fc4_read_the_same_table(sim):
    s = sim("--profile", "eastron_sdm630_v2", "--update-ms", "60000")
    three, _ = s.ask(adu(1, 3, 70, 6), 17)
    four, _ = s.ask(adu(1, 4, 70, 6), 17)
    assert three[1] == 3 and four[1] == 4 and three[2:-2] == four[2:-2]
    assert 49.8 <= floats(four)[0] <= 50.2


def test_served_energy_is_the_truth(sim):
    s = sim("--profile", "eastron_sdm630_v2", "--update-ms", "60000", "--seed", "7")
    (record,) = s.truth()
    assert record["slave"] == 1 and record["values"].keys() == SDM["fields"].keys()
    reply, _ = s.ask(adu(1, 4, 72, 4), 13)
    words = struct.unpack(">4H", reply[3:-2])
    fields = SDM["fields"]
    assert decode_exact(fields["energy_Wh_import.total"], words[0:2], "big") == Decimal(
        record["values"]["energy_Wh_import.total"])
    assert decode_exact(fields["energy_Wh_export.total"], words[2:4], "big") == Decimal(
        record["values"]["energy_Wh_export.total"])
    phases = sum(Decimal(record["values"][f"energy_Wh_import.L{n}"]) for n in (1, 2, 3))
    assert phases == pytest.approx(Decimal(record["values"]["energy_Wh_import.total"]), rel=Decimal("1e-6"))


def test_values_change_and_imports_only_grow(sim):
    s = sim("--profile", "eastron_sdm630_v2", "--update-ms", "100")
    time.sleep(1.0)
    records = s.truth()
    assert len(records) >= 5
    assert [r["t"] for r in records] == sorted(r["t"] for r in records)
    for path in ("energy_Wh_import.total", "energy_Wh_import.L1", "energy_Wh_export.total"):
        values = [Decimal(r["values"][path]) for r in records]
        assert values == sorted(values)
    assert len({r["values"]["voltage_V.L1"] for r in records}) > 1


def test_gaps_read_zero_and_holes_and_counts_are_refused(sim, small):
    s = sim("--profile", small)
    assert "small slave 5" in s.banner
    assert s.ask(adu(5, 3, 20, 4), 13)[0] == adu(5, 3, 8, 0, 0, 0, 0, fmt=">BBBHHHH")
    reply, _ = s.ask(adu(5, 3, 0, 2), 9)
    assert decode_exact(SMALL["fields"]["voltage_V.L1"], struct.unpack(">2H", reply[3:7]), "little") > 200
    for address, count in ((150, 2), (98, 4), (199, 1), (65535, 2)):
        assert s.ask(adu(5, 3, address, count), 5)[0] == adu(5, 0x83, 2, fmt=">BBB")
    for count in (0, 11, 125, 126):
        assert s.ask(adu(5, 4, 0, count), 5)[0] == adu(5, 0x84, 3, fmt=">BBB")
    assert s.ask(adu(5, 1, 0, 1), 5)[0] == adu(5, 0x81, 1, fmt=">BBB")


def test_fc6_and_fc16_write_the_table(sim, small):
    s = sim("--meter", small + ":7")
    assert s.ask(adu(7, 6, 7051, 0x4200), 8)[0] == adu(7, 6, 7051, 0x4200)
    write = adu(7, 16, 7100, 3, 6, 0x4142, 0x4344, 0x4500, fmt=">BBHHBHHH")
    assert s.ask(write, 8)[0] == adu(7, 16, 7100, 3)
    assert s.ask(adu(7, 3, 7100, 3), 11)[0] == adu(7, 3, 6, 0x4142, 0x4344, 0x4500, fmt=">BBBHHH")
    assert s.ask(adu(7, 3, 7051, 1), 7)[0] == adu(7, 3, 2, 0x4200, fmt=">BBBH")
    assert s.ask(adu(7, 6, 150, 1), 5)[0] == adu(7, 0x86, 2, fmt=">BBB")


def test_sigusr1_silences_and_revives(sim):
    s = sim("--profile", "eastron_sdm630_v2")
    request = adu(1, 4, 0, 2)
    assert len(s.ask(request, 9)[0]) == 9
    s.signal(signal.SIGUSR1)
    assert s.ask(request, 9, timeout=0.5)[0] == b""
    s.signal(signal.SIGUSR1)
    assert len(s.ask(request, 9)[0]) == 9


def test_silent_window(sim):
    s = sim("--profile", "eastron_sdm630_v2", "--silent-after", "0", "--silent-for", "1.5")
    assert s.ask(adu(1, 4, 0, 2), 9, timeout=0.3)[0] == b""
    time.sleep(1.5)
    assert len(s.ask(adu(1, 4, 0, 2), 9)[0]) == 9


@pytest.mark.parametrize(("parity", "bits"), [("N", 10), ("E", 11)])
def test_reply_takes_the_wire_time(sim, parity, bits):
    s = sim("--profile", "eastron_sdm630_v2", "--parity", parity)
    wire = (8 + 5 + 2 * 40) * bits / 9600
    reply, elapsed = s.ask(adu(1, 4, 0, 40), 85)
    assert len(reply) == 85 and crc16(reply) == 0
    assert wire <= elapsed < wire + 0.05


def test_reply_bytes_dribble(sim):
    s = sim("--profile", "eastron_sdm630_v2")
    os.write(s.fd, adu(1, 4, 0, 40))
    arrivals = []
    while sum(n for _, n in arrivals) < 85 and select.select([s.fd], [], [], 1)[0]:
        arrivals.append((time.monotonic(), len(os.read(s.fd, 85))))
    assert arrivals[-1][0] - arrivals[0][0] >= 0.5 * 85 * 10 / 9600  # half: the reader may be scheduled late


def test_delay_ms_adds_to_the_reply(sim):
    s = sim("--profile", "eastron_sdm630_v2", "--delay-ms", "200")
    assert s.ask(adu(1, 4, 0, 2), 9)[1] >= 0.2 + 17 * 10 / 9600


def test_several_meters_on_one_line(sim, small):
    s = sim("--meter", "eastron_sdm630_v2:1", "--meter", small + ":2")
    assert s.ask(adu(1, 4, 0, 2), 9)[0][:3] == bytes([1, 4, 4])
    assert s.ask(adu(2, 3, 0, 2), 9)[0][:3] == bytes([2, 3, 4])
    assert s.ask(adu(3, 4, 0, 2), 9, timeout=0.3)[0] == b""
    assert {r["slave"] for r in s.truth()} == {1, 2}
    os.write(s.fd, adu(0, 6, 7000, 42))  # broadcast: both store it, neither replies
    assert s.ask(adu(1, 3, 7000, 1), 7)[0] == adu(1, 3, 2, 42, fmt=">BBBH")
    assert s.ask(adu(2, 3, 7000, 1), 7)[0] == adu(2, 3, 2, 42, fmt=">BBBH")


def test_noise_before_a_request_is_skipped(sim):
    s = sim("--profile", "eastron_sdm630_v2")
    reply, _ = s.ask(b"\x07\x01\x03" + adu(1, 4, 0, 2), 9)
    assert reply[:3] == bytes([1, 4, 4]) and crc16(reply) == 0


def test_exception_rate(sim):
    s = sim("--profile", "eastron_sdm630_v2", "--exception-rate", "1")
    assert s.ask(adu(1, 4, 0, 2), 5)[0] == adu(1, 0x84, 4, fmt=">BBB")
    assert s.ask(adu(1, 6, 7000, 1), 5)[0] == adu(1, 0x86, 4, fmt=">BBB")


def test_crc_error_rate(sim):
    s = sim("--profile", "eastron_sdm630_v2", "--crc-error-rate", "1")
    reply, _ = s.ask(adu(1, 4, 0, 2), 9)
    assert len(reply) == 9 and crc16(reply) != 0


def test_garbage_rate(sim):
    s = sim("--profile", "eastron_sdm630_v2", "--garbage-rate", "1")
    reply, _ = s.ask(adu(1, 4, 0, 2), 9 + 8, timeout=0.5)
    assert len(reply) > 9 and crc16(reply[-9:]) == 0 and reply[-9:-6] == bytes([1, 4, 4])


@pytest.mark.parametrize("args", [
    ["--slave", "2"],
    ["--profile", "no_such_meter"],
    ["--profile", "eastron_sdm630_v2", "--meter", "eastron_sdm630_v2:1"],
    ["--profile", "eastron_sdm630_v2", "--silent-every", "5"],
])
def test_user_errors(tmp_path, args):
    cmd = [sys.executable, "-m", "meterbridge.main", "sim", "--link", str(tmp_path / "m"), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    assert done.returncode == 1 and done.stderr.startswith("meterbridge: ")
    assert not os.path.lexists(tmp_path / "m")


def test_max_read_and_holes_play_a_meter_that_refuses_what_its_profile_allows(sim):
    # Modbus Application Protocol v1.1b3 6.4/7: a register the slave does not have is 02, a quantity it
    # will not serve 03; --over-max silent plays a meter that drops the request instead
    s = sim("--profile", "eastron_sdm630_v2", "--max-read", "40", "--hole", "0x20..0x21")
    assert len(s.ask(adu(1, 4, 0, 30), 65)[0]) == 65
    assert s.ask(adu(1, 4, 0, 41), 5)[0] == adu(1, 0x84, 3, fmt=">BBB")
    assert s.ask(adu(1, 4, 0x1E, 4), 5)[0] == adu(1, 0x84, 2, fmt=">BBB")
    quiet = sim("--meter", "eastron_sdm630_v2:1,max-read=40,over-max=silent")
    assert quiet.ask(adu(1, 4, 0, 41), 5, timeout=0.3)[0] == b""
    assert len(quiet.ask(adu(1, 4, 0, 40), 85)[0]) == 85


def test_a_meter_with_its_own_line_settings_hears_only_frames_at_them(sim):
    s = sim("--meter", "eastron_sdm630_v2:1", "--meter", "eastron_sdm120:2,baud=19200,parity=E",
            "--meter", "abb_b23:3,parity=O", "--baud", "9600")
    attrs = termios.tcgetattr(s.fd)

    def line(speed, cflag):
        attrs[4] = attrs[5] = speed
        attrs[2] = attrs[2] & ~(termios.PARENB | termios.PARODD) | cflag
        termios.tcsetattr(s.fd, termios.TCSANOW, attrs)

    line(termios.B9600, 0)
    assert len(s.ask(adu(1, 4, 0, 2), 9)[0]) == 9
    assert s.ask(adu(2, 4, 0, 2), 9, timeout=0.3)[0] == b"", "the 19200 meter does not decode 9600"
    assert s.ask(adu(3, 3, 0x5000, 4), 13, timeout=0.3)[0] == b"", "the odd-parity meter does not hear 8N1"
    line(termios.B19200, termios.PARENB)
    assert len(s.ask(adu(2, 4, 0, 2), 9)[0]) == 9
    assert s.ask(adu(1, 4, 0, 2), 9, timeout=0.3)[0] == b""
    line(termios.B9600, termios.PARENB | termios.PARODD)
    assert len(s.ask(adu(3, 3, 0x5000, 4), 13)[0]) == 13
    assert s.ask(adu(1, 4, 0, 2), 9, timeout=0.3)[0] == b""


@pytest.mark.parametrize(("command", "readings"), [(0x7200, ["B", "E"]), (0x4500, ["E"]), (0x5200, ["R"])])
def test_the_iskra_end_commands_sign_as_the_manual_says(sim, command, readings):
    # Iskra WM3M4 & WM3M4C User's Manual 6.5.8, Table 15: 'B' begins (idle state); 'r' ends "with begin and
    # end"; 'E', 'L', 'R', 'A', 'P' end (active state). Every end leaves the meter idle.
    s = sim("--profile", "iskra_wm3m4c", "--update-ms", "60000")
    meta = b'{"FV":"1.0","IS":false,"IT":"NONE"}'
    words = [int.from_bytes(meta[i : i + 2].ljust(2, b"\0"), "big") for i in range(0, len(meta), 2)]
    body = struct.pack(">BBHHB", 33, 16, 7100, len(words), 2 * len(words)) + struct.pack(f">{len(words)}H", *words)
    assert len(s.ask(body + struct.pack("<H", crc16(body)), 8, 5)[0]) == 8
    assert len(s.ask(adu(33, 6, 7056, len(meta)), 8, 5)[0]) == 8

    def word(reg):
        reply, _ = s.ask(adu(33, 3, reg, 1), 7, 5)
        return int.from_bytes(reply[3:5], "big")

    assert word(7000) == 0
    assert s.ask(adu(33, 6, 7051, 0x4500), 8, 5)[0] and word(7052) == 131, "no end in the idle state"
    s.ask(adu(33, 6, 7051, 0x4200), 8, 5)
    assert word(7000) == 1 and word(7052) == 15
    assert s.ask(adu(33, 6, 7051, 0x4200), 8, 5)[0] and word(7052) == 131, "no begin in the active state"
    s.ask(adu(33, 6, 7051, command), 8, 5)
    assert word(7000) == 0 and word(7052) == 15, "every end command leaves the meter idle, signed"
    n = word(7057)
    payload = b""
    for first in range(0, (n + 1) // 2, 120):
        count = min(120, (n + 1) // 2 - first)
        reply, _ = s.ask(adu(33, 3, 7612 + first, count), 5 + 2 * count, 5)
        payload += reply[3:-2]
    record = json.loads(payload[:n])
    assert [r["TX"] for r in record["RD"]] == readings
