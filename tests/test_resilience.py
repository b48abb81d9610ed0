"""Faults the bridge must ride out: broker restarts, meter faults, garbage requests, stalled tasks."""

import json
import os
import subprocess
import time

import pytest

from conftest import flatten
from fuzz import lying_replies, storm
from fw import run
from meterbridge import build, paths
from meterbridge.everest import dump
from restarts import restart_delays
from test_ocmf import start_signing


@pytest.mark.parametrize("mode", ["task", "loop"])
def test_watchdog_ends_a_stalled_firmware(mode):
    root = build.firmware()
    env = dict(os.environ, MICROPYPATH=f".frozen:{root}:{root / 'lib'}")
    script = paths.REPO / "tests" / "fw" / "stall.py"
    run = subprocess.run([paths.micropython(), str(script), mode], env=env, capture_output=True, text=True,
                         timeout=30)
    assert "stalling now" in run.stdout
    assert "survived" not in run.stdout
    assert "watchdog expired" in run.stderr
    if mode == "task":
        assert "task stalls made no progress" in run.stderr


def test_a_task_that_runs_out_of_memory_is_started_again():
    # two deaths, then the third start keeps running; a task that dies of a bug stays dead (the watchdog's job)
    assert run("oom_task.py").split() == ["3", "True", "True"]


def test_broker_restarts(tmp_path):
    delays, alive = restart_delays(tmp_path, 10)
    assert alive
    assert len(delays) == 10 and max(delays) < 5.0, delays


@pytest.mark.parametrize("faults", [
    ["--crc-error-rate", "0.3"],
    ["--exception-rate", "0.3"],
    ["--garbage-rate", "0.3"],
    ["--delay-ms", "500"],
    ["--byte-count-rate", "0.3"],
    ["--shift-rate", "0.3"],
])
def test_meter_faults_never_give_stale_or_mixed_values(bridge, faults):
    b = bridge(sim_args=faults)
    with b.everest() as ev:
        time.sleep(6)
        msgs = ev.messages("powermeter_values")
    truth = b.truth()
    served = {}
    for _, rec in truth:
        for path, v in rec.items():
            served.setdefault(path, set()).add(v)
    for m in msgs:
        for path, v in flatten(m.value).items():
            if path.startswith("energy"):
                assert v in served[path]
    stamps = [m.value["timestamp"] for m in msgs]
    assert len(set(stamps)) == len(stamps)
    assert b.alive()
    if faults[0] == "--delay-ms":
        assert msgs == [], "a reply later than the timeout is never taken as an answer"
    else:
        assert msgs, "most cycles still get through"


def test_replies_of_the_wrong_size_are_refused_and_failed_cycles_counted_by_kind():
    verdicts, counts = run("meter_faults.py").splitlines()[:2]
    # right; one register short; one too many; byte count wrong on a reply of the right length; bad CRC;
    # a write echoed; a write echo naming another address
    assert verdicts.split() == ["ok", "byte_count", "byte_count", "byte_count", "crc", "ok", "byte_count"]
    assert counts.split() == ["6", "timeout=2", "crc=1", "exception=1", "garbage=1", "byte_count=1", "implausible=0",
                              "timeout"]


def test_implausible_datasets_are_refused_whole_and_counted():
    verdicts = run("meter_faults.py").splitlines()[2].split()
    # fine; energy went back; fine; a voltage over the profile's limit; a negative energy; energy grew faster
    # than any power; the -3.9e32 a shifted reply gave; fine, and the refused cycles left the dataset alone
    assert verdicts == ["ok", "implausible", "ok", "implausible", "implausible", "implausible", "implausible", "ok",
                        "1001250", "5"]


def test_a_reply_with_a_valid_crc_is_taken_only_when_it_answers_the_request():
    cases = list(lying_replies(15, int(os.environ.get("MB_FUZZ_COUNT", "2000"))))
    stdin = "".join(json.dumps({"request": q.hex(), "reply": r.hex()}) + "\n" for q, r, _ in cases)
    verdicts = run("reply_cases.py", stdin).split()
    assert len(verdicts) == len(cases)
    wrong = [(q.hex(), r.hex(), v) for (q, r, good), v in zip(cases, verdicts, strict=True) if (v == "ok") != good]
    assert wrong == [], wrong[:5]
    assert 0.1 < verdicts.count("ok") / len(cases) < 0.5, "both kinds are drawn"


def test_a_meter_that_lies_about_its_byte_count_publishes_nothing(bridge):
    # the simulator's lies alternate: a reply one register short (its byte count consistent), then one of the
    # right length whose byte count says a register less; both carry a valid CRC
    b = bridge(sim_args=["--byte-count-rate", "1"])
    with b.everest() as ev:
        time.sleep(4)
        assert ev.messages("powermeter_values") == []
    assert b.alive()


def test_garbage_requests_never_crash_or_leak(bridge, broker):
    b = bridge()
    figures = storm(b, broker, int(os.environ.get("MB_FUZZ_COUNT", "2000")))
    assert figures["alive"]
    assert figures["bad_topics"] == []
    assert figures["unexpected_replies"] == 0
    # every answerable request is answered, but for the few dropped by the 8-deep request queue
    assert figures["replies"] >= 0.95 * figures["answerable"]
    with b.everest() as ev:
        assert ev.start_transaction("after-storm")["status"] == "NOT_SUPPORTED"


def test_a_silent_signing_meter_costs_slow_answers_never_a_reset(bridge, tmp_path):
    # timeout_ms 1000 with 3 retries: each start waits ~4 s for the silent meter, and as long again for the bus
    # the poller holds, so five queued starts take ~40 s. A fixed 30 s request deadline ended the firmware.
    b = start_signing(bridge, tmp_path, meter={"timeout_ms": 1000, "retries": 3})
    with b.everest() as ev:
        ev.wait_for("public_key_ocmf", timeout=10)
        b.toggle_meter()
        payload = {"evse_id": "1", "identification_status": "ASSIGNED", "identification_flags": [],
                   "identification_type": "NONE", "identification_data": ""}
        for i in range(5):
            ev.publish_raw("start_transaction", dump({"headers": {"replyTo": f"{ev.base}m2e/reply/slow-{i}"},
                                                      "payload": {**payload, "transaction_id": f"slow-{i}"}}))
        for i in range(5):
            reply = ev.wait_for(f"reply/slow-{i}", timeout=60).value
            assert reply["status"] == "UNEXPECTED_ERROR" and f"slow-{i}" in reply["error"], reply
    assert b.alive(), b.firmware_log()[-2000:]
    assert "watchdog" not in b.firmware_log()
