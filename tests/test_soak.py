"""The firmware keeps a flat heap over thousands of poll cycles with transactions and broker restarts."""

import os

from soak import flat, soak


def test_soak_heap_stays_flat(tmp_path):
    cycles = int(os.environ.get("MB_SOAK_CYCLES", "20000"))
    run = soak(tmp_path, cycles, restarts=3)
    assert run["alive"], run["log"][-2000:]
    assert "MemoryError" not in run["log"] and "Traceback" not in run["log"]
    assert run["heap"][-1][2] >= cycles
    assert run["restarts"] == 3 and run["transactions"] > 10
    assert flat(run["heap"]), run["heap"]
