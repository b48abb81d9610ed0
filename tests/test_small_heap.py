"""At -X heapsize=64k, with the code run in place from a ROMFS image, every non-signing meter works.

The code sits in ROM as on a board with a ROMFS partition (meterbridge.romrun), so the heap holds only
what the firmware makes, the state and log topics included (test_state.py watches them at this heap);
the firmware itself is byte for byte the one deployed. Objects on this 64-bit port take about twice an
ESP32's RAM.
"""

import json

import pytest

from conftest import flatten
from meterbridge.codec import PROFILE_DIR, load_profile
from meterbridge.everest import dump

NON_SIGNING = sorted(p.stem for p in PROFILE_DIR.glob("*.json") if "ocmf" not in load_profile(p.stem))


@pytest.mark.parametrize("name", NON_SIGNING)
def test_a_meter_publishes_and_answers_at_64k(bridge, name):
    d = load_profile(name)["defaults"]
    b = bridge(profile=name, slave=d["slave"], baud=d["baud"], meter={"parity": d["parity"]}, period_ms=250,
               sim_args=("--parity", d["parity"]), heapsize="64k", form="rom")
    with b.everest() as ev:
        start = 0
        for _ in range(4):
            start = ev.wait_for("powermeter_values", timeout=10, start=start).seq + 1
        # a meter that cannot sign answers NOT_SUPPORTED (transactions.py): the request path runs all the same
        assert ev.start_transaction("small-heap")["status"] == "NOT_SUPPORTED"
        assert ev.stop_transaction("small-heap")["status"] == "NOT_SUPPORTED"
        last = ev.messages("powermeter_values")[-1].value
    assert set(flatten(last)) == set(load_profile(name)["fields"])
    log = b.firmware_log()
    assert "MemoryError" not in log and "out of memory" not in log, log[-2000:]
    assert b.alive()


def test_reply_topics_of_any_characters_leave_no_ram_behind(bridge):
    """Every distinct character of a str that MicroPython iterates is interned as a qstr, and a qstr is never
    freed: replyTo is checked on its UTF-8 bytes, so requests naming 4000 distinct characters leave nothing
    behind (iterating the str, this 80k heap ran out after six of them)."""
    b = bridge(heapsize="80k", form="rom", period_ms=250)
    with b.everest() as ev:
        ev.wait_for("powermeter_values", timeout=10)
        for i in range(40):
            suffix = "".join(chr(0x4E00 + 100 * i + k) for k in range(100))  # CJK ideographs, each new
            start = ev.mark()
            request = {"headers": {"replyTo": ev.base + "m2e/" + suffix}, "payload": {"transaction_id": f"t{i}"}}
            ev.publish_raw("start_transaction", dump(request))
            assert json.loads(ev.wait_for(suffix, timeout=10, start=start).raw)["status"] == "NOT_SUPPORTED"
        ev.wait_for("powermeter_values", timeout=10, start=ev.mark())
    log = b.firmware_log()
    assert "MemoryError" not in log and "out of memory" not in log, log[-2000:]
    assert b.alive()
