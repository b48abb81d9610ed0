"""Updates over MQTT under the unix port as a board runs them (meterbridge.boardrun) against mosquitto, at the
tests' default heap (conftest HEAPSIZE, 100k): the running bridge hands a signed command to a fresh start
(receive mode), which takes the stream with the whole heap.

An update commits; a broken one (wrong key, truncated, damaged, older, too large for the flash) is refused
and the board stays as it was; a transfer the host stops ends in the running version with why; an update is
refused while a transaction is open, without a reset; a version that dies at start or stays silent is rolled
back by the boot's own logic; a bad config is refused in receive mode with its field; and the board killed
at random moments of an update (MB_UPDATE_KILLS times, default 4; receive mode's start among them) always
boots one whole version.

The references these follow, besides our own host: the trial is ESP-IDF's app rollback (ota.html, "Rollback":
the bootloader marks a new image ESP_OTA_IMG_PENDING_VERIFY on its first boot, and one that has not called
esp_ota_mark_app_valid_cancel_rollback() by the next boot is rolled back; MicroPython exposes it as
esp32.Partition.mark_app_valid_cancel_rollback, docs/library/esp32.rst), with "healthy" as the commit; the
atomic switch is rename(2) replacing slots.json (POSIX, and littlefs's copy-on-write metadata on a board), which
the SIGKILLs of the kill test cut around; the HMAC is RFC 2104, checked against RFC 4231's vectors.
"""

import hashlib
import hmac
import json
import os
import random
import signal
import struct
import subprocess
import sys
import threading
import time

import paho.mqtt.client as mqtt
import pytest

import fw
from conftest import HEAPSIZE, Bridge, wait_until
from meterbridge import build, deploy
from meterbridge.update import Board, UpdateError, firmware_files

KEY = "5e" * 32
KILLS = int(os.environ.get("MB_UPDATE_KILLS", "4"))
HEALTH_S = 2


@pytest.fixture
def board(tmp_path, broker):
    made = []

    def make(**config):
        d = tmp_path / f"{tmp_path.name[-14:]}-{len(made)}"  # its client_id: unique per test (retained results)
        d.mkdir()
        b = Bridge(d, broker, form="board", period_ms=250, heapsize=HEAPSIZE)
        b.config.update(update_key=KEY, **config)
        made.append(b)
        return b.start()

    yield make
    for b in made:
        b.stop()


def connect(b, key=KEY, reply_s=10):
    return Board("127.0.0.1", b.port, b.config["broker"]["client_id"], key, reply_s=reply_s)


def state(b):
    path = b.dir / "slots.json"
    return json.loads(path.read_text()) if path.exists() else None


def running(b):
    """What the board runs and would take next: the version, its code and config, and no update pending."""
    st = state(b)
    return {k: st.get(k) for k in ("code", "config", "version", "last", "trial", "receive")}


def values_flow(b):
    """The board publishes values (again): two new powermeter_values messages."""
    with b.everest() as ev:
        ev.wait_for("powermeter_values", timeout=15, start=ev.mark())
        ev.wait_for("powermeter_values", timeout=15, start=ev.mark())
    return True


def whole(directory):
    """Every file the slot's MANIFEST lists is there with its hash: the slot is one version, whole."""
    lines = (directory / "MANIFEST").read_text().splitlines()
    for line in lines:
        digest, size, path = line.split()
        data = (directory / path).read_bytes()
        assert len(data) == int(size) and hashlib.sha256(data).hexdigest() == digest, path
    return len(lines)


def module(tmp_path, source, name="meterbridge/start.py"):
    """source compiled with mpy-cross, as the update's copy of name."""
    src = tmp_path / "module.py"
    src.write_text(source)
    out = tmp_path / "module.mpy"
    subprocess.run([build.mpy_cross(), "-o", str(out), "-s", name, str(src)], check=True)
    return {name[:-3] + ".mpy": out.read_bytes()}


def update(b, version, files=None, kind="firmware", deadline_s=30):
    board = connect(b)
    try:
        board.send(kind, files or firmware_files("unix"), version, HEALTH_S, deadline_s)
        return board.result(version, deadline_s + 30)
    finally:
        board.close()


def test_hmac_is_rfc_2104():
    cases = [("0b" * 20, b"Hi There".hex()), ("4a656665", b"what do ya want for nothing?".hex()),
             ("aa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First".hex()), (KEY, "")]
    out = fw.run("update_hmac.py", "".join(f"{k} {m or '00'}\n" for k, m in cases)).split()
    want = [hmac.new(bytes.fromhex(k), bytes.fromhex(m or "00"), hashlib.sha256).hexdigest() for k, m in cases]
    assert out == want
    assert out[0] == "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"  # RFC 4231 case 1


def test_an_update_commits_and_the_next_goes_to_the_other_slot(board):
    b = board()
    config = b.dir / "config.json"
    cmd = [sys.executable, "-m", "meterbridge.main", "update", "--config", str(config), "--version", "10",
           "--health", str(HEALTH_S), "--deadline", "30"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "version 10 committed" in out and KEY not in out
    st = state(b)
    assert (st["code"], st["version"], st["trial"]) == ("a", 10, None)
    assert st["result"] == {"version": 10, "state": "committed", "why": None}
    assert whole(b.dir / "a") > 30
    assert update(b, 11)["state"] == "committed"
    assert (state(b)["code"], state(b)["version"]) == ("b", 11)
    assert values_flow(b) and "Traceback" not in b.firmware_log()


def test_a_wrong_key_is_refused_clearly(board):
    b = board()
    done = subprocess.run([sys.executable, "-m", "meterbridge.main", "update", "--broker", f"127.0.0.1:{b.port}",
                           "--client-id", b.config["broker"]["client_id"], "--key-file", "/dev/stdin"],
                          input="ab" * 32, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "refused by the board: bad HMAC" in done.stderr and "ab" * 32 not in done.stdout + done.stderr
    assert state(b) is None and b.alive()


def _send_broken(b, version, cut=0, flip=False, total=None):
    """An update whose stream is cut short or has one byte changed; returns the board's refusal."""
    board = connect(b)
    try:
        board.hello()
        files = firmware_files("unix")
        man = build.manifest(files)
        stream = bytearray(man + b"".join(d for _, d in sorted(files.items())))
        chunk = board.begin("firmware", version, man, total or len(stream), HEALTH_S, 30)
        if flip:
            stream[-10] ^= 1
        with pytest.raises(UpdateError) as e:
            board._stream(bytes(stream[: len(stream) - cut]), chunk, None)
        return str(e.value)
    finally:
        board.close()


def test_broken_bundles_are_refused_and_the_board_stays_as_it_was(board, tmp_path):
    b = board()
    assert update(b, 10)["state"] == "committed"
    before = running(b)
    assert "truncated" in _send_broken(b, 20, cut=500)
    r = state(b)["result"]  # retained on update/result too
    assert (r["version"], r["state"]) == (20, "refused") and "truncated" in r["why"], r
    assert "sha256 differs" in _send_broken(b, 21, flip=True)
    board_ = connect(b)
    try:
        with pytest.raises(UpdateError, match="not above 10"):
            board_.send("firmware", firmware_files("unix"), 9, HEALTH_S, 30)
        with pytest.raises(UpdateError, match="flash full"):
            board_.begin("firmware", 30, b"x", 1 << 60, 2, 9)
    finally:
        board_.close()
    with pytest.raises(UpdateError, match="bad HMAC"):
        Board("127.0.0.1", b.port, b.config["broker"]["client_id"], "77" * 32).send(
            "firmware", firmware_files("unix"), 40, HEALTH_S, 30)
    assert running(b) == before, "nothing switched"
    assert not (b.dir / "b").exists(), "the staging slot is cleared"
    assert values_flow(b) and b.alive()


def test_a_stalled_transfer_ends_in_the_running_version_saying_why(board):
    """The host stops sending halfway: receive mode gives up at the command's deadline_s, clears the staging
    slot, records why and resets into the version that ran, untouched."""
    b = board()
    sender = connect(b)
    try:
        sender.hello()
        files = firmware_files("unix")
        man = build.manifest(files)
        stream = man + b"".join(d for _, d in sorted(files.items()))
        chunk = sender.begin("firmware", 10, man, len(stream), HEALTH_S, 6)
        for off in range(0, len(stream) // 2, chunk):
            sender._publish("data", struct.pack(">I", off) + stream[off : off + chunk])
        result = sender.result(10, 40)
    finally:
        sender.close()
    assert result["state"] == "refused" and "not received within deadline_s (6 s)" in result["why"], result
    assert running(b) == {"code": "", "config": "config.json", "version": 0, "last": 0, "trial": None,
                          "receive": None}
    assert not (b.dir / "a").exists(), "the staging slot is cleared"
    assert values_flow(b) and b.alive()


def test_an_update_is_refused_while_a_transaction_is_open(board):
    """An update never cuts a charging session's metering: the running bridge refuses it, naming the meter, and
    goes on; once the transaction stopped the update goes through."""
    b = board()
    with b.everest() as ev:
        ev.start_transaction("tx-charging")  # a meter that cannot sign keeps it in its journal all the same
        with pytest.raises(UpdateError, match="a transaction is open on pm1: update once it has stopped"):
            update(b, 10)
        assert state(b) is None and "the firmware ended" not in b.firmware_log(), "no reset, nothing written"
        assert values_flow(b)
        ev.stop_transaction("tx-charging")
    assert update(b, 10)["state"] == "committed"


@pytest.mark.parametrize("broken, why", [
    ("raise RuntimeError('this version dies at start')\n", "ended before it committed"),
    ("import time\ndef main():\n    while True:\n        time.sleep(1)\n", "no commit within 10 s"),
])
def test_a_version_that_dies_or_stays_silent_is_rolled_back(board, tmp_path, broken, why):
    b = board()
    files = {**firmware_files("unix"), **module(tmp_path, broken)}
    result = update(b, 10, files, deadline_s=10)  # the transfer too: room for a loaded machine
    assert result["state"] == "rolled back" and why in result["why"], result
    st = state(b)
    assert (st["code"], st["version"], st["trial"], st["last"]) == ("", 0, None, 10)
    assert values_flow(b)
    with pytest.raises(UpdateError, match="not above 10"):
        update(b, 10)  # a rolled-back version is not taken again


def test_a_config_update_is_checked_then_committed(board):
    b = board()
    keyless = {k: v for k, v in b.config.items() if k != "update_key"}
    board_ = connect(b)
    try:
        with pytest.raises(UpdateError, match="update_key: missing"):
            board_.send("config", {"config.json": json.dumps(keyless).encode()}, 5, HEALTH_S, 30)
    finally:
        board_.close()
    assert running(b) == {"code": "", "config": "config.json", "version": 0, "last": 0, "trial": None,
                          "receive": None}, "refused before anything changed"
    # every field is checked on the board before the switch (receive mode, with the whole heap): refused, named
    bad = dict(b.config, meters=[dict(b.config["meters"][0], slave=300)])
    with pytest.raises(UpdateError, match=r"config: meters\[0\]\.slave: must be an integer 1\.\.247"):
        update(b, 6, {"config.json": json.dumps(bad).encode()}, kind="config")
    assert running(b)["config"] == "config.json" and not (b.dir / "cfgstage").exists()
    assert state(b)["result"]["state"] == "refused" and "meters[0].slave" in state(b)["result"]["why"]
    # one that checks out but cannot start (its serial device is gone) is tried, and rolled back by itself
    gone = dict(b.config, meters=[dict(b.config["meters"][0], uart={"device": str(b.dir / "no-such-tty")})])
    result = update(b, 7, {"config.json": json.dumps(gone).encode()}, kind="config")
    assert result["state"] == "rolled back" and "no-such-tty: no such device" in result["why"], result
    assert (state(b)["config"], state(b)["trial"]) == ("config.json", None)
    good = b.dir.parent / "edited-config.json"  # what a user edits and sends: `meterbridge update --config-only`
    good.write_text(json.dumps(dict(b.config, meters=[dict(b.config["meters"][0], meter_id="renamed")])))
    done = subprocess.run([sys.executable, "-m", "meterbridge.main", "update", "--config", str(good), "--config-only",
                           "--version", "8", "--health", str(HEALTH_S), "--deadline", "30"],
                          capture_output=True, text=True, timeout=90)
    assert done.returncode == 0 and "version 8 committed" in done.stdout, done.stdout + done.stderr
    assert KEY not in done.stdout + done.stderr
    assert state(b)["config"] == "config.a.json"
    with b.everest() as ev:
        assert ev.wait_for("powermeter_values", timeout=15, start=ev.mark()).value["meter_id"] == "renamed"


def test_a_board_killed_at_random_moments_of_an_update_boots_one_whole_version(board):
    """Power cuts at the start of receive mode, during the transfer (after a random share of it), during the
    trial's start and health window, and just after the commit; after each the board boots, publishes, and
    runs one slot whose files all match its MANIFEST."""
    rng = random.Random(20261129)
    b = board()
    phases = []
    for i in range(KILLS):
        version, mode = 100 + i, i % 4
        sender = connect(b, reply_s=3)
        share = rng.uniform(0.05, 0.95)

        def cut(sender=sender):
            if b.fw.poll() is None:
                os.killpg(b.fw.pid, signal.SIGKILL)  # the power goes, launcher and firmware alike
                b.fw.wait()
            sender.closed = True

        def progress(done, total, mode=mode, share=share, cut=cut):
            if mode == 0 and done >= share * total:
                cut()

        try:
            if mode == 3:  # at the start of receive mode: the command answered, or about to be
                sender.hello()
                threading.Timer(rng.uniform(0, 0.5), cut).start()
            sender.send("firmware", firmware_files("unix"), version, HEALTH_S, 20, progress)
            if mode == 1:
                time.sleep(rng.uniform(0, 2.5))  # the reset, the new start, its health window
            elif mode == 2:
                sender.result(version, 30)
                time.sleep(rng.uniform(0, 0.3))
        except UpdateError:
            pass
        cut()
        sender.close()
        st = state(b)
        phases.append("on trial" if st and st["trial"] else "after the commit" if st and st["version"] == version
                      else "in receive mode" if st and st["receive"] else "before the switch")
        if st is not None and (st["trial"] or st["code"]):
            slot = (st["trial"] or st)["code"]
            assert whole(b.dir / slot), slot
        b.start_firmware()
        assert values_flow(b), b.firmware_log()[-2000:]
        assert wait_until(lambda: state(b) is None or not (state(b)["trial"] or state(b)["receive"]), 30), \
            "a trial or a transfer ends either way"
        st = state(b)
        if st and st["code"]:
            assert whole(b.dir / st["code"])
    assert "Traceback" not in b.firmware_log()
    print("kills landed:", phases)
    assert KILLS < 3 or {"in receive mode", "on trial", "after the commit"} <= set(phases), phases


def test_a_deploy_runs_the_deployed_tree_and_keeps_the_version_count():
    class Device:
        files = {deploy.SLOTS: json.dumps({"v": 1, "code": "b", "config": "config.a.json", "version": 12,
                                           "last": 14, "trial": None, "result": None}).encode()}

        def read(self, path):
            return self.files.get(path, b"")

        def write(self, path, data):
            self.files[path] = data

    device = Device()
    deploy.reset_slots(device)
    st = json.loads(device.files[deploy.SLOTS])
    assert (st["code"], st["config"], st["version"], st["last"]) == ("", "config.json", 14, 14)


def test_config_new_sets_a_key_and_show_masks_it(tmp_path):
    out = tmp_path / "config.json"
    main = [sys.executable, "-m", "meterbridge.main", "config"]
    subprocess.run([*main, "new", "--device", "/dev/null", "--profile", "eastron_sdm120", "--broker", "h:1883",
                    "-o", str(out)], check=True, capture_output=True)
    key = json.loads(out.read_text())["update_key"]
    assert len(bytes.fromhex(key)) == 32
    shown = subprocess.run([*main, "show", str(out)], check=True, capture_output=True, text=True).stdout
    assert key not in shown and json.loads(shown)["update_key"] == "********"


def test_a_board_that_does_not_answer_is_named(broker):
    board = Board("127.0.0.1", broker, "mb-nobody-here", KEY, reply_s=2)
    try:
        with pytest.raises(UpdateError, match="board mb-nobody-here is not answering"):
            board.send("firmware", {"meterbridge/x.mpy": b"x"}, 1)
    finally:
        board.close()


def test_a_board_that_does_not_come_back_in_receive_mode_is_named(broker):
    """A bridge that answers `restarting` and is not heard from again (its receive mode cannot reach the broker,
    say): the host says so, and that the board goes back to its running version by itself."""
    base = "meterbridge/mb-gone-quiet/update/"
    stand_in = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    stand_in.on_message = lambda c, u, msg: c.publish(base + "status", b'{"re":"cmd","state":"restarting"}')
    stand_in.connect("127.0.0.1", broker)
    stand_in.subscribe(base + "cmd")
    stand_in.loop_start()
    board = Board("127.0.0.1", broker, "mb-gone-quiet", KEY, reply_s=5, receive_s=2)
    try:
        with pytest.raises(UpdateError, match="did not come back in receive mode within 2 s; it boots its running "
                                              "version again by itself"):
            board.hello()
    finally:
        board.close()
        stand_in.loop_stop()
        stand_in.disconnect()
