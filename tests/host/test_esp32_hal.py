"""The ESP32 HAL and boot.py on the unix port, against the stand-in machine/network of tests/esp32.

The RS-485 tests put a Modbus responder on the far end of a pty that answers like a meter: after the
request's own wire time at the configured baud plus the t3.5 silence. The stand-in UART knows when
each frame's last stop bit leaves and what a transceiver would lose while DE is still high.
"""

import json
import os
import select
import socket
import struct
import subprocess
import threading
import time
import tty
from pathlib import Path

import pytest

from rtu import crc16

REPO = Path(__file__).resolve().parents[2]
STANDIN = REPO / "tests" / "esp32" / "standin"
MICROPYTHON = str(REPO / ".venv" / "bin" / "micropython")
MICROPYPATH = ":".join([".frozen", str(STANDIN), str(REPO / "firmware"), str(REPO / "build" / "lib")])


class Serving:
    """Runs self._serve() on a daemon thread while in a with block (it loops until self._stop), then self._close()."""

    def __init__(self):
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop = True
        self._thread.join()
        self._close()


class Meter(Serving):
    """Answers FC4 reads of 4 registers with 1, 2, 3, 4 and FC16 writes on the master side of a pty, on a
    meter's timing."""

    def __init__(self, baud, bits):
        self.char_us = bits * 1_000_000 / baud
        # Modbus over serial line v1.02, 2.5.1.1: a slave needs t3.5 of silence to see the end of a frame
        self.turnaround_us = max(3.5 * self.char_us, 1750) if baud > 19200 else 3.5 * self.char_us
        self.master, slave = os.openpty()
        tty.setraw(self.master)
        tty.setraw(slave)
        self.path = os.ttyname(slave)
        self._slave = slave
        self.reply_us = []  # CLOCK_MONOTONIC us of each reply's first byte (the unix port's ticks_us clock)
        super().__init__()

    def _close(self):
        os.close(self.master)
        os.close(self._slave)

    def _serve(self):
        while not self._stop:
            if not select.select([self.master], [], [], 0.05)[0]:
                continue
            first_us = time.monotonic_ns() // 1000
            request = os.read(self.master, 512)
            while len(request) < self._length(request) and select.select([self.master], [], [], 1)[0]:
                request += os.read(self.master, 512)
            # the first byte arrived as its stop bit ended: the last one's ends (n - 1) characters later
            due = first_us + (len(request) - 1) * self.char_us + self.turnaround_us
            time.sleep(max(due - time.monotonic_ns() // 1000 - 1000, 0) / 1e6)  # leave the CPU to the HAL
            while time.monotonic_ns() // 1000 < due:
                pass
            if request[1] == 16:  # Modbus Application Protocol v1.1b3, 6.12: the reply echoes address and count
                body = request[:6]
            else:
                body = bytes([request[0], 4, 8]) + struct.pack(">4H", 1, 2, 3, 4)
            self.reply_us.append(time.monotonic_ns() // 1000)
            os.write(self.master, body + struct.pack("<H", crc16(body)))

    @staticmethod
    def _length(request):
        """The request's whole length: 8 bytes for a read, 9 + its byte count for FC16."""
        if len(request) < 7 or request[1] != 16:
            return 8
        return 9 + request[6]


def micropython(args, env=None, cwd=None, check=True):
    full = dict(os.environ, MICROPYPATH=MICROPYPATH, **(env or {}))
    out = subprocess.run([MICROPYTHON, *args], env=full, cwd=cwd, capture_output=True, text=True, timeout=60)
    if check:
        assert out.returncode == 0, out.stderr
    return out


def run_code(code, tmp_path, env=None, check=True):
    script = tmp_path / "probe.py"
    script.write_text(code)
    return micropython([str(script)], env, cwd=tmp_path, check=check)


def probe_bus(baud, parity, count, de=4, words=0, block_ms=0, env=None):
    bits = 10 if parity == "N" else 11
    with Meter(baud, bits) as meter:
        env = {"STANDIN_UART1": meter.path, **(env or {})}
        if de is not None:
            env["STANDIN_UART1_DE"] = str(de)
        out = micropython([str(REPO / "tests" / "esp32" / "de_probe.py"), str(baud), parity, str(count),
                           "none" if de is None else str(de), str(words), str(block_ms)], env)
    return json.loads(out.stdout), meter


def timely(seen, meter, baud, parity, n_request=8, answer=None, within_char=False):
    """Assert what no scheduling delay excuses (DE on before the first bit, off only after the last stop
    bit at this baud and framing); return whether DE also fell before every reply began (and, with
    within_char, within one character time of the last stop bit)."""
    frames, releases = seen["frames"], seen["releases"]
    assert len(frames) == len(releases) == len(meter.reply_us) == len(seen["reads"])
    bits = 10 if parity == "N" else 11
    char_us = bits * 1_000_000 // baud
    rises = [t for pin, level, t in seen["edges"] if pin == 4 and level == 1]
    on_time = True
    for (_, start, end, n, de_level), (_, released, last_end, lost), rise, reply, read in zip(
            frames, releases, rises, meter.reply_us, seen["reads"], strict=True):
        assert n == n_request and de_level == 1 and rise <= start  # the whole request went out with DE on
        assert end - start == n * bits * 1_000_000 // baud
        assert released >= last_end == end, "DE released before the last stop bit left"
        on_time &= released < reply and lost == 0 and (not within_char or released - end <= char_us)
        on_time &= read == ([1, 2, 3, 4] if answer is None else answer)
    return on_time


@pytest.mark.parametrize("baud,parity", [(2400, "N"), (9600, "N"), (19200, "E"), (115200, "N")])
def test_de_is_released_after_the_last_stop_bit_and_before_the_reply(baud, parity):
    """The responder answers t3.5 after the request: a HAL that waits too long loses replies.

    A busy host can preempt the unix-port process mid-frame for milliseconds, so the timing gets
    three attempts of 8 reads; the invariants are asserted on every attempt.
    """
    for _ in range(3):
        seen, meter = probe_bus(baud, parity, 8)
        if timely(seen, meter, baud, parity):
            return
    pytest.fail(f"DE still high when the meter answered: {seen}")


def test_a_txdone_that_is_true_before_the_fifo_fills_does_not_end_the_frame_early():
    """txdone() is trusted only from one character before the computed end of the frame."""
    seen, _ = probe_bus(9600, "N", 3, env={"STANDIN_TXDONE_GAP_US": "2000"})
    for (_, released, end, _) in seen["releases"]:
        assert released >= end, "DE released before the last stop bit left"


def test_a_task_that_blocks_for_50_ms_during_a_long_frame_cannot_keep_de_on():
    """An FC16 write of 60 registers is 129 bytes, 134 ms at 9600 baud. Another task blocks the program
    for 50 ms whenever it runs while DE is high (as DNS or a TLS handshake would): DE must still fall
    within one character time of the last stop bit, before the meter's echo."""
    for _ in range(3):
        seen, meter = probe_bus(9600, "N", 4, words=60, block_ms=50)
        assert seen["blocked_with_de_high"] == 0, "another task ran while DE was high"
        if timely(seen, meter, 9600, "N", n_request=129, answer=True, within_char=True):
            return
    pytest.fail(f"DE still high when the meter answered: {seen}")


def test_the_harness_catches_a_release_right_after_write(tmp_path):
    """The checks above can fail: DE dropped as soon as write() returns is caught by the stand-in."""
    with Meter(9600, 10) as meter:
        out = run_code(
            "import machine, json\n"
            "u = machine.UART(1, 9600, tx=17, rx=16)\n"
            "de = machine.Pin(4, machine.Pin.OUT, value=0)\n"
            "de.value(1); u.write(b'\\x01\\x04\\x00\\x00\\x00\\x04\\xf1\\xc9'); de.value(0)\n"
            "print(json.dumps(machine.RELEASES))\n", tmp_path,
            {"STANDIN_UART1": meter.path, "STANDIN_UART1_DE": "4"})
    (_, released, end, _), = json.loads(out.stdout)
    assert released < end


def test_an_auto_direction_transceiver_gets_no_de_edges():
    seen, _ = probe_bus(9600, "N", 3, de=None)
    assert seen["reads"] == [[1, 2, 3, 4]] * 3
    assert seen["edges"] == [] and seen["releases"] == []
    assert [f[4] for f in seen["frames"]] == [None] * 3  # no DE wire at all


class NtpServer(Serving):
    """Answers NTP client queries (RFC 5905) with the host clock on the given loopback addresses."""

    def __init__(self, hosts=("127.0.0.1",)):
        self.asked = []  # the address each query was sent to
        self._socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in hosts]
        self._socks[0].bind((hosts[0], 0))
        self.port = self._socks[0].getsockname()[1]
        for sock, host in zip(self._socks[1:], hosts[1:], strict=True):
            sock.bind((host, self.port))
        super().__init__()

    def _close(self):
        for sock in self._socks:
            sock.close()

    def _serve(self):
        while not self._stop:
            for sock in select.select(self._socks, [], [], 0.05)[0]:
                query, peer = sock.recvfrom(512)
                self.asked.append(sock.getsockname()[0])
                t = time.time() + 2208988800
                answer = bytearray(48)
                answer[0], answer[1] = 0x24, 2  # version 4, server mode; stratum 2
                answer[24:32] = query[40:48]  # origin timestamp: the client's transmit timestamp
                answer[32:40] = answer[40:48] = struct.pack("!II", int(t), int(t % 1 * 2**32))
                sock.sendto(bytes(answer), peer)


CLOCK = """
import asyncio, json, time
from meterbridge.hal import esp32
esp32.NTP_PORT, esp32.NTP_TIMEOUT_MS = @PORT@, 300
before = esp32.epoch_ms()
esp32.start_network(CONFIG)  # schedules keep_time(), which asks at once
after_start = esp32.epoch_ms()
late = [0]
async def ticker():
    while True:
        t = time.ticks_ms()
        await asyncio.sleep_ms(10)
        late[0] = max(late[0], time.ticks_diff(time.ticks_ms(), t) - 10)
async def main():
    asyncio.create_task(ticker())
    for _ in range(100):
        await asyncio.sleep_ms(10)
    return esp32.epoch_ms() is not None
synced = asyncio.run(main())
after = esp32.epoch_ms()
print(json.dumps([before, after_start, synced, after, time.time_ns() // 1000000,
                  esp32.gmtime(after // 1000)[0] if after else None, late[0]]))
"""
WIFI = {"ntp": "127.0.0.3", "hostname": "meterbridge-1", "wifi": {"ssid": "yard", "password": "s3cret"},
        "ethernet": None}


def clock(tmp_path, network, port, env=None, broker="127.0.0.1"):
    config = {"network": network, "broker": {"host": broker}}
    out = run_code(CLOCK.replace("CONFIG", repr(config)).replace("@PORT@", str(port)), tmp_path, env)
    return json.loads(out.stdout), out.stderr


def test_time_is_invalid_until_ntp_answers_and_the_loop_runs_meanwhile(tmp_path):
    with NtpServer() as silent:  # a port that answers nothing: the server there is stopped
        silent._stop = True
    (before, after_start, synced, after, _, _, late), log = clock(tmp_path, WIFI, silent.port)
    assert before is None and after_start is None and synced is False and after is None
    assert "NTP: no answer from 127.0.0.3 TimeoutError(), 127.0.0.1 TimeoutError()" in log
    assert late < 200  # two 300 ms waits for an answer, neither blocking the loop (ntptime.settime() would)


def test_ntp_makes_the_clock_valid(tmp_path):
    with NtpServer(("127.0.0.1", "127.0.0.3")) as server:
        (before, after_start, synced, after, host_ms, year, _), _ = clock(tmp_path, WIFI, server.port)
    assert before is None and after_start is None  # start-up does not wait for NTP: keep_time() asks at once
    assert synced is True and abs(after - host_ms) < 2000
    assert year == time.gmtime()[0]
    assert server.asked == ["127.0.0.3"]  # the configured server first


def test_ntp_falls_back_to_the_brokers_host(tmp_path):
    with NtpServer(("127.0.0.1",)) as server:  # the configured 127.0.0.3 does not answer
        (_, _, synced, after, host_ms, _, _), _ = clock(tmp_path, WIFI, server.port)
    assert synced is True and abs(after - host_ms) < 2000
    assert server.asked == ["127.0.0.1"]


def test_an_rtc_kept_over_a_reset_is_valid_without_network(tmp_path):
    (before, after_start, synced, _, host_ms, _, _), _ = clock(tmp_path, {}, 9, {"STANDIN_RTC": "set"})
    assert before is None and abs(after_start - host_ms) < 2000 and synced is True


NETWORK = """
import json, network
from meterbridge.hal import esp32
esp32.start_network({"network": NETWORK})
print(json.dumps(network.LOG))
"""


def test_wifi_joins_with_reconnects_and_no_power_save(tmp_path):
    log = json.loads(run_code(NETWORK.replace("NETWORK", repr(WIFI)), tmp_path).stdout)
    assert ["hostname", "meterbridge-1"] in log
    assert ["WLAN.connect", "yard", "s3cret"] in log
    assert ["WLAN.config", {"reconnects": -1}] in log and ["WLAN.config", {"pm": 0}] in log


@pytest.mark.parametrize("board,expected", [
    ("olimex-esp32-poe", {"mdc": 23, "mdio": 18, "phy_addr": 0, "phy_type": 1, "power": 12, "ref_clk": 17,
                          "ref_clk_mode": 3}),
    ("wt32-eth01", {"mdc": 23, "mdio": 18, "phy_addr": 1, "phy_type": 1, "power": 16, "ref_clk": 0,
                    "ref_clk_mode": 1}),
])
def test_ethernet_boards_start_network_lan_from_their_board_file(tmp_path, board, expected):
    eth = json.loads((REPO / "boards" / f"{board}.json").read_text())["ethernet"]
    log = json.loads(run_code(NETWORK.replace("NETWORK", repr({"ethernet": eth})), tmp_path).stdout)
    assert ["LAN", expected] in log and ["LAN.active", True] in log


def test_a_link_that_stays_down_delays_start_up_only_by_the_link_wait(tmp_path):
    out = run_code(
        "import time\n"
        "from meterbridge.hal import esp32\n"
        "esp32.LINK_WAIT_MS = 300\n"
        "t0 = time.ticks_ms()\n"
        f"esp32.start_network({{'network': {WIFI!r}}})\n"
        "print(time.ticks_diff(time.ticks_ms(), t0), esp32.epoch_ms())\n", tmp_path, {"STANDIN_LINK": "down"})
    waited, now = out.stdout.split()
    assert 300 <= int(waited) < 1000 and now == "None"
    assert "network not up yet" in out.stderr


def test_storage_replaces_files_atomically_on_plain_paths(tmp_path):
    out = run_code(
        "from meterbridge.hal import esp32\n"
        "s = esp32.Storage('state')\n"
        "assert s.read('j') is None\n"
        "s.write('j', b'one'); s.write('j', b'two')\n"
        "import os\n"
        "print(s.read('j'), sorted(os.listdir('state')))\n", tmp_path)
    assert out.stdout.strip() == "b'two' ['j']"


def test_fatal_leaves_the_repl_instead_of_exiting(tmp_path):
    out = run_code(
        "from meterbridge.hal import esp32\n"
        "try:\n"
        "    esp32.fatal('config: broken')\n"
        "except SystemExit:\n"
        "    print('SystemExit')\n"
        "except RuntimeError as e:\n"
        "    print('RuntimeError', e)\n", tmp_path)
    assert out.stdout.strip() == "RuntimeError meterbridge stopped: config: broken"


def _boot(tmp_path, cause="WDT_RESET", env=None):
    full = {"STANDIN_RESET_CAUSE": cause, **(env or {})}
    return micropython([str(REPO / "firmware" / "boot.py")], full, cwd=tmp_path, check=False)


def _app_start(tmp_path):
    run_code("from meterbridge.hal import esp32\nesp32.start_network({})\n", tmp_path)


def test_a_crash_loop_ends_in_safe_mode_and_the_next_reset_tries_again(tmp_path):
    for _ in range(3):
        assert _boot(tmp_path).returncode == 0
        _app_start(tmp_path)  # ... and the app dies before a healthy minute
    out = _boot(tmp_path)
    assert out.returncode == 1 and "SafeMode: safe mode, 3 starts in a row" in out.stdout
    assert _boot(tmp_path).returncode == 0


def test_a_power_on_clears_the_crash_count(tmp_path):
    for _ in range(3):
        _app_start(tmp_path)
    assert _boot(tmp_path, "PWRON_RESET").returncode == 0
    assert not (tmp_path / "starts").exists()


def test_a_healthy_minute_of_watchdog_feeding_clears_the_crash_count(tmp_path):
    _app_start(tmp_path)
    out = run_code(
        "import machine, os, time\n"
        "from meterbridge.hal import esp32\n"
        "w = esp32.Watchdog(5000, healthy_ms=50)\n"
        "w.feed(); print('starts' in os.listdir())\n"
        "time.sleep_ms(60); w.feed(); print('starts' in os.listdir(), machine.WDT_EXPIRED)\n", tmp_path)
    assert out.stdout.split() == ["True", "False", "[]"]


def test_the_button_held_at_start_up_means_safe_mode(tmp_path):
    (tmp_path / "board.json").write_text((REPO / "boards" / "esp32-devkitc-max3485.json").read_text())
    assert _boot(tmp_path, env={"STANDIN_PIN0": "1"}).returncode == 0
    out = _boot(tmp_path, env={"STANDIN_PIN0": "0"})
    assert out.returncode == 1 and "the button was held" in out.stdout


def test_the_safemode_file_means_safe_mode(tmp_path):
    (tmp_path / "safemode").write_text("")
    out = _boot(tmp_path, "PWRON_RESET")
    assert out.returncode == 1 and "the file safemode exists" in out.stdout


def test_a_broken_board_file_does_not_stop_the_bridge(tmp_path):
    (tmp_path / "board.json").write_text("{not json")
    (tmp_path / "starts").write_text("garbage")
    assert _boot(tmp_path).returncode == 0


def test_a_network_interface_that_fails_resets_the_board(tmp_path):
    eth = {"phy_type": "LAN8720", "phy_addr": 0, "mdc": 23, "mdio": 18}
    out = run_code("from meterbridge.hal import esp32\n"
                   "import network\n"
                   "def broken(**kw):\n"
                   "    raise OSError('esp_eth_driver_install failed')\n"
                   "network.LAN = broken\n"
                   f"esp32.start_network({{'network': {{'ethernet': {eth!r}}}}})\n", tmp_path, check=False)
    assert out.returncode == 99 and (tmp_path / "starts").read_text() == "1"


def repl_session(args, tmp_path, env, ready, wait_s):
    """micropython -i ARGS: wait for `ready` in its output and type Ctrl-C (the stand-in's `ctrl-c` file)
    unless ready is None, wait wait_s, then type at the REPL. Returns (whether the REPL answered, all output)."""
    full = dict(os.environ, MICROPYPATH=MICROPYPATH, **env)
    proc = subprocess.Popen([MICROPYTHON, "-i", *args], env=full, cwd=tmp_path, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = ""
    if ready:
        end = time.monotonic() + 30
        while ready not in seen:
            assert proc.poll() is None and time.monotonic() < end, seen
            if select.select([proc.stdout], [], [], 0.2)[0]:
                seen += os.read(proc.stdout.fileno(), 4096).decode()
        (tmp_path / "ctrl-c").write_text("")
    time.sleep(wait_s)
    try:
        out, _ = proc.communicate("print('still', 6 * 7)\n", timeout=20)
    except BrokenPipeError:
        out, _ = proc.communicate(timeout=20)
    seen += out
    return "still 42" in seen, seen


AS_BOARD = """import sys
import meterbridge
from meterbridge.hal import esp32
meterbridge.hal = sys.modules["meterbridge.hal"] = esp32  # what sys.platform == "esp32" selects on a board
"""


def test_ctrl_c_leaves_a_repl_that_the_watchdog_does_not_reset(tmp_path):
    """The firmware's own main.py on the stand-in: the watchdog (5 s, it cannot be stopped) keeps running
    after Ctrl-C; the person at the REPL gets a message, and the board is still there 7 s later."""
    master, slave = os.openpty()  # a bus where no meter answers
    try:
        (tmp_path / "profiles").symlink_to(REPO / "firmware" / "profiles")
        (tmp_path / "config.json").write_text(json.dumps({
            "broker": {"host": "127.0.0.1", "port": 1}, "watchdog_ms": 5000,
            "meters": [{"module_id": "m1", "profile": "eastron_sdm120",
                        "uart": {"id": 1, "tx": 17, "rx": 16, "de": 4}}]}))
        (tmp_path / "board.py").write_text(AS_BOARD + f"exec(open({str(REPO / 'firmware' / 'main.py')!r}).read())\n")
        answered, out = repl_session(["board.py"], tmp_path,
                                     {"STANDIN_UART1": os.ttyname(slave)}, "started on esp32", 7)
    finally:
        os.close(master)
        os.close(slave)
    assert "watchdog reset" not in out and answered, out
    assert "machine.Timer(0) now feeds it" in out


SOFT_RESET = {"STANDIN_RESET_CAUSE": "SOFT_RESET", "STANDIN_WDT": "2000", "STANDIN_RTC_MEMORY": "2000"}


@pytest.mark.parametrize("safe_mode", [False, True])
def test_after_a_soft_reset_boot_py_keeps_the_bridges_watchdog_fed(tmp_path, safe_mode):
    """Ctrl-D, or mpremote's soft reset into the raw REPL: the watchdog the bridge started still runs; the
    REPL (safe mode or not) stays up for 2.5 timeouts."""
    if safe_mode:
        (tmp_path / "safemode").write_text("")
    answered, out = repl_session([str(REPO / "firmware" / "boot.py")], tmp_path, SOFT_RESET, None, 5)
    assert "watchdog reset" not in out and answered, out


def test_the_bridge_takes_the_feeding_over_from_boot_py(tmp_path):
    """Once the bridge's Watchdog exists, only its supervisor feeds: a stalled bridge is still reset."""
    script = tmp_path / "start.py"
    script.write_text(f"exec(open({str(REPO / 'firmware' / 'boot.py')!r}).read())\n"
                      "from meterbridge.hal import esp32\n"
                      "w = esp32.Watchdog(2000)\n")
    answered, out = repl_session([str(script)], tmp_path, SOFT_RESET, None, 5)
    assert "watchdog reset" in out and not answered, out


@pytest.mark.parametrize("cause,word", [("PWRON_RESET", "power-on"), ("WDT_RESET", "watchdog"),
                                        ("HARD_RESET", "hard"), ("SOFT_RESET", "soft")])
def test_the_reset_cause_in_words_for_the_state_document(tmp_path, cause, word):
    out = run_code("from meterbridge.hal import esp32\nprint(esp32.reset_cause())", tmp_path,
                   {"STANDIN_RESET_CAUSE": cause})
    assert out.stdout.strip() == word
