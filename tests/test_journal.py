"""The transaction journal: its file format, bad files, and the firmware killed at random moments.

The kill test drives start/stop cycles on a simulated signing meter like EVerest, SIGKILLs the
firmware at random instants (seeded; MB_KILL_CYCLES cycles, default 200), restarts it and repeats
an unanswered request. Afterwards every transaction has exactly one verified record of its own,
no two records share the meter's transaction or overlap in energy, and the journal always parsed.
"""

import ast
import json
import os
import random
import signal
import subprocess
import threading
import time
import uuid
from decimal import Decimal

import pytest
from pyocmf import OCMF

from conftest import Bridge
from fw import HERE
from meterbridge import build, paths
from test_ocmf import IDENT, kwh, start_signing, verified, wait_log

CYCLES = int(os.environ.get("MB_KILL_CYCLES", "200"))
KILL_RATE = 0.6  # chance that a request gets a kill scheduled within KILL_WINDOW_S after it
KILL_WINDOW_S = 0.25  # a start or stop takes ~0.1-0.2 s here: kills land inside it, or just after
TX = {"tid": "t1", "evse_id": "1", "t": 1700000000000, "phase": "running", "meta": '{"IT":"NONE"}'}


def _firmware(script, *args, stdin=subprocess.PIPE):
    """A tests/fw script under the unix port with the compiled firmware, as a child process."""
    root = build.firmware()
    env = dict(os.environ, MICROPYPATH=os.pathsep.join([".frozen", str(root), str(root / "lib")]))
    return subprocess.Popen([paths.micropython(), str(HERE / script), *map(str, args)], env=env, stdin=stdin,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def journal(directory, *commands):
    """The journal's state after each command, and what the firmware logged."""
    proc = _firmware("journal_cases.py", directory)
    out, err = proc.communicate("".join(json.dumps(c) + "\n" for c in commands), timeout=30)
    assert proc.returncode == 0, err
    return [json.loads(line) for line in out.splitlines()], err


def valid(doc):
    """The journal format: v 2, a write counter, the open transaction or null, the last stopped id or null."""
    return (set(doc) == {"v", "seq", "open", "last"} and doc["v"] == 2 and isinstance(doc["seq"], int)
            and (doc["open"] is None or isinstance(doc["open"]["tid"], str))
            and (doc["last"] is None or isinstance(doc["last"], str)))


def test_journal_format(tmp_path):
    states, _ = journal(tmp_path, ["save", TX, None], ["save", None, "t1"], ["load"])
    assert states == [{"open": TX, "last": None, "seq": 1}, {"open": None, "last": "t1", "seq": 2},
                      {"open": None, "last": "t1", "seq": 2}]
    doc = json.loads((tmp_path / "tx-pm1.json").read_text())
    assert doc == {"v": 2, "seq": 2, "open": None, "last": "t1"} and valid(doc)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tx-pm1.json"], "nothing left beside it"


def test_a_version_1_journal_is_read(tmp_path):
    old = {"tid": "a", "evse_id": "1", "t": 5}
    (tmp_path / "tx-pm1.json").write_text(json.dumps({"v": 1, "seq": 7, "open": old}))
    states, _ = journal(tmp_path, ["load"])
    assert states == [{"open": old, "last": None, "seq": 7}]


def _tx(**wrong):
    return json.dumps({"v": 2, "seq": 1, "open": {**TX, **wrong}, "last": None}).encode()


@pytest.mark.parametrize("bad", [b"", b"{", b"[]", b"\xff\xfe", b'{"v":2,"seq":"1","open":null}',
                                 b'{"v":2,"seq":1,"open":{"tid":5}}', b'{"v":2,"seq":1,"open":null,"last":3}',
                                 b'{"v":2,"seq":1}', _tx(meta=5), _tx(meta=None), _tx(evse_id=1), _tx(t="5"),
                                 _tx(t=1.5), _tx(phase="paused"), _tx(phase=["running"])])
def test_an_unreadable_journal_is_kept_aside(tmp_path, bad):
    (tmp_path / "tx-pm1.json").write_bytes(bad)
    states, err = journal(tmp_path, ["load"])
    assert states == [{"open": None, "last": None, "seq": 0}]
    assert (tmp_path / "tx-pm1.json.bad").read_bytes() == bad
    assert "unreadable; kept as .bad" in err


_ODD = [None, True, 0, -1, 1.5, "", "x", [], {}, ["running"], {"tid": "t"}]


def _mutant(rng):
    """A journal with one field missing, of another type or unknown; or a valid one."""
    doc = {"v": 2, "seq": rng.randrange(5), "open": dict(TX) if rng.random() < 0.7 else None,
           "last": rng.choice([None, "t0"])}
    where = doc["open"] if doc["open"] and rng.random() < 0.7 else doc
    key = rng.choice(sorted(where) + ["extra"])
    choice = rng.randrange(3)
    if choice == 0:
        where.pop(key, None)
    elif choice == 1:
        where[key] = rng.choice(_ODD)
    return doc


def _usable(doc):
    """The journal format, every field of its type: what the firmware may rely on once a journal loaded."""
    if not isinstance(doc, dict) or "open" not in doc or type(doc.get("seq")) is not int:
        return False
    tx, last = doc["open"], doc.get("last")
    return (last is None or isinstance(last, str)) and (
        tx is None or (isinstance(tx, dict) and isinstance(tx.get("tid"), str) and isinstance(tx.get("evse_id"), str)
                       and (tx.get("t") is None or type(tx["t"]) is int)
                       and tx.get("phase") in (None, "starting", "running", "stopping")
                       and isinstance(tx.get("meta", ""), str)))


def test_journals_of_every_shape_load_whole_or_are_kept_aside(tmp_path):
    rng = random.Random(15)
    docs = [_mutant(rng) for _ in range(300)]
    states, err = journal(tmp_path, *(["try", json.dumps(d)] for d in docs))
    assert len(states) == len(docs)
    for doc, state in zip(docs, states, strict=True):
        want = {"open": doc["open"], "last": doc.get("last"), "seq": doc["seq"]} if _usable(doc) else \
            {"open": None, "last": None, "seq": 0}
        assert state == want, doc
    refused = sum(not _usable(d) for d in docs)
    assert err.count("unreadable; kept as .bad") == refused and 50 < refused < 250, refused


def test_a_kill_while_writing_leaves_the_old_or_the_new_journal(tmp_path):
    rng = random.Random(11)
    seq = 0
    for _ in range(25):
        proc = _firmware("journal_cases.py", tmp_path)
        proc.stdin.write('["churn"]\n')
        proc.stdin.flush()
        assert proc.stdout.readline() == "churning\n"
        time.sleep(rng.uniform(0, 0.05))
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        doc = json.loads((tmp_path / "tx-pm1.json").read_text())
        assert valid(doc) and doc["seq"] >= seq
        seq = doc["seq"]
    assert seq > 25 and not (tmp_path / "tx-pm1.json.bad").exists()


class Driver:
    """EVerest's side of the kill test: requests, replies, kills and restarts."""

    def __init__(self, b, ev, rng):
        self.b, self.ev, self.rng = b, ev, rng
        self.kills = 0
        self.journal = b.dir / "state" / "tx-pm1.json"

    def until_answered(self, var, payload):
        """Send the request until a reply arrives, the firmware killed at random moments meanwhile."""
        while True:
            kill = self.rng.uniform(0, KILL_WINDOW_S) if self.rng.random() < KILL_RATE else None
            reply = self.ask(var, payload, kill)
            if self.b.fw.poll() is not None:
                self.restart()
            if reply is not None:
                return reply

    def ask(self, var, payload, kill_after):
        """One request; its reply, or None when the firmware died first."""
        suffix = f"reply/{uuid.uuid4()}"
        envelope = {"headers": {"replyTo": self.ev.base + "m2e/" + suffix}, "payload": payload}
        timer = threading.Timer(kill_after, self.b.fw.kill) if kill_after is not None else None
        self.ev.publish_raw(var, json.dumps(envelope).encode())
        if timer:
            timer.start()
        try:
            end = time.monotonic() + 30
            while time.monotonic() < end:
                dead = self.b.fw.poll() is not None
                try:
                    return self.ev.wait_for(suffix, timeout=0.2 if dead else 0.05).value
                except TimeoutError:
                    if dead:
                        return None
            raise TimeoutError(f"no reply to {var} {payload!r}:\n{self.b.firmware_log()[-3000:]}")
        finally:
            if timer:
                timer.cancel()
                timer.join()

    def restart(self):
        """After a kill: the journal parses; the firmware starts again and publishes the key anew."""
        self.b.fw.wait()
        self.kills += 1
        doc = json.loads(self.journal.read_text()) if self.journal.exists() else None
        assert doc is None or valid(doc), doc
        mark = self.ev.mark()
        self.b.start_firmware()
        self.ev.wait_for("public_key_ocmf", timeout=10, start=mark)


def test_kills_at_random_moments_lose_and_double_nothing(bridge, tmp_path):
    rng = random.Random(20261126)
    b = start_signing(bridge, tmp_path, sim_args=("--update-ms", "200"))
    records = []
    with b.everest() as ev:
        drive = Driver(b, ev, rng)
        for i in range(CYCLES):
            tid, ident = f"k{i}", {**IDENT, "identification_data": f"{i:08X}"}
            start = {"transaction_id": tid, "identification_status": "ASSIGNED", **ident}
            assert drive.until_answered("start_transaction", start) == {"status": "OK"}, tid
            stop = tid if rng.random() < 0.5 else {"transaction_id": tid}
            reply = drive.until_answered("stop_transaction", stop)
            assert reply["status"] == "OK", (tid, reply)
            records.append((i, reply["signed_meter_value"]))
    assert drive.kills >= CYCLES // 5, "the firmware was killed often"
    served = {rec["energy_Wh_import.total"] for _, rec in b.truth()}
    pages, last_end = [], None
    for i, value in records:
        assert OCMF.from_string(value["signed_meter_data"]).verify_signature(b.pubkey) is True, i
        payload = json.loads(value["signed_meter_data"].split("|")[1], parse_float=Decimal)
        assert payload["ID"] == f"{i:08X}", "the record of this transaction, not another's"
        begin, end = payload["RD"]
        assert (begin["TX"], end["TX"]) == ("B", "E") and kwh(begin) in served and kwh(end) in served
        assert last_end is None or kwh(begin) >= last_end, "no energy in two transactions"
        assert kwh(end) >= kwh(begin)
        last_end = kwh(end)
        pages.append(int(payload["PG"][1:]))
    assert pages == sorted(set(pages)), "each meter transaction in one record at most"
    assert json.loads(drive.journal.read_text())["open"] is None
    assert not list(drive.journal.parent.glob("*.bad"))


def _kill_during_transaction(b, ev, tid):
    """Start transaction tid, then kill the firmware while it runs."""
    assert ev.start_transaction(tid, **IDENT)["status"] == "OK"
    b.fw.kill()
    b.fw.wait()


def _restart(b, ev):
    mark = ev.mark()
    b.start_firmware()
    ev.wait_for("public_key_ocmf", timeout=10, start=mark)


@pytest.mark.parametrize("loss", ["deleted", "wrong types"])
def test_a_lost_journal_loses_no_signed_transaction(bridge, tmp_path, loss):
    """The meter is the truth: stop A ends the transaction it runs though the journal no longer knows A."""
    b = start_signing(bridge, tmp_path)
    path = b.dir / "state" / "tx-pm1.json"
    with b.everest() as ev:
        _kill_during_transaction(b, ev, "tx-a")
        if loss == "deleted":
            path.unlink()
        else:  # parses, but "meta" is no text: ending the meter's transaction after its power cut crashed on it
            doc = json.loads(path.read_text())
            path.write_text(json.dumps({**doc, "open": {**doc["open"], "meta": 5}}))
            b.cut_meter_power()
            wait_log(b.sim_log, "sim: OCMF power failure")
        _restart(b, ev)
        r = ev.stop_transaction("tx-a", timeout=20)
    assert r["status"] == "OK", r
    verified(r["signed_meter_value"], b.pubkey)
    log = b.firmware_log()
    assert "journal lost tx-a that the meter runs: ending it" in log
    assert ("not found" if loss == "deleted" else "unreadable; kept as .bad") in log
    assert b.alive()


def test_a_record_nobody_asked_for_is_logged_whole_with_its_transaction(bridge, tmp_path):
    b = start_signing(bridge, tmp_path)
    path = b.dir / "state" / "tx-pm1.json"
    with b.everest() as ev:
        _kill_during_transaction(b, ev, "tx-a")
        path.write_bytes(b"{garbage")
        _restart(b, ev)
        assert ev.start_transaction("tx-b", **IDENT)["status"] == "OK"
    line = next(x for x in b.firmware_log().splitlines() if "not delivered:" in x)
    assert "signed record of transaction (unknown) not delivered" in line
    record = ast.literal_eval(line.split("not delivered: ", 1)[1]).decode()
    assert OCMF.from_string(record).verify_signature(b.pubkey) is True
    assert json.loads(record.split("|")[1])["ID"] == IDENT["identification_data"], "tx-a's record"


@pytest.fixture
def bridge_on(tmp_path, broker):
    """Factory: a Bridge whose journal lives in the directory given, started; all stopped after the test."""
    made = []

    def make(storage, **kw):
        b = Bridge(tmp_path / f"s{len(made)}", broker, **kw)
        b.dir.mkdir()
        b.config["storage"] = str(storage)
        made.append(b)
        return b.start()

    yield make
    for b in made:
        b.stop()


def test_storage_that_is_a_file_is_named_and_requests_still_answered(bridge_on, tmp_path):
    place = tmp_path / "a-file"
    place.write_text("not a directory")
    b = bridge_on(place)
    with b.everest() as ev:
        assert ev.start_transaction("tx-f")["status"] == "NOT_SUPPORTED"
        r = ev.stop_transaction("tx-f")
    assert r["status"] == "NOT_SUPPORTED" and "no open transaction" not in r["error"], "tracked all the same"
    log = b.firmware_log()
    assert f"storage {place}: cannot write probe (not a directory)" in log
    assert b.alive()


@pytest.fixture
def small_fs(tmp_path):
    """A 64 KB tmpfs at tmp_path/fs, mounted for the test (root only)."""
    mnt = tmp_path / "fs"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("a full and a read-only filesystem need root to mount a small tmpfs")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True,
                          text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(directory):
    """Write a file until the filesystem is full."""
    try:
        with open(directory / "filler", "wb", buffering=0) as f:
            while True:
                f.write(b"\0" * 4096)
    except OSError:
        pass


def test_a_full_or_read_only_storage_is_answered_and_recovered_from(bridge_on, tmp_path, small_fs):
    b = start_signing(lambda **kw: bridge_on(small_fs / "state", **kw), tmp_path)
    with b.everest() as ev:
        _fill(small_fs)
        r = ev.start_transaction("tx-1", **IDENT)
        assert r["status"] == "UNEXPECTED_ERROR" and "tx-1 not started: storage" in r["error"], r
        assert "cannot write tx-pm1.json (full)" in r["error"], r
        (small_fs / "filler").unlink()
        assert ev.start_transaction("tx-1", **IDENT)["status"] == "OK"
        subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
        r = ev.stop_transaction("tx-1")
        assert r["status"] == "UNEXPECTED_ERROR" and "tx-1 not stopped: storage" in r["error"], r
        subprocess.run(["mount", "-o", "remount,rw", str(small_fs)], check=True)
        r = ev.stop_transaction("tx-1", timeout=20)
    assert r["status"] == "OK", r
    verified(r["signed_meter_value"], b.pubkey)
    log = b.firmware_log()
    assert log.index("cannot write tx-pm1.json (read-only)") < log.rindex("state writable"), "and again once it is"
    assert b.alive()
