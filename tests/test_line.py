"""The firmware under the unix port on a serial device with parity, as `meterbridge run` with a USB-RS485 adapter.

Here the device is one end of a socat pty pair and the simulated meter serves the other end (`sim --port`). A pty
carries no parity bit (Linux refuses PARENB there with EINVAL), so this checks that a parity setting is accepted,
times 11-bit characters and reaches the meter; it cannot check that a UART really sends the parity bit, nor that a
meter at another parity hears garbage. That takes a real adapter (README, "Try a real meter from a laptop").
"""

import shutil
import subprocess
import time

import pytest

from conftest import Bridge, flatten
from meterbridge import procs

pytestmark = pytest.mark.skipif(not shutil.which("socat"), reason="socat not installed")


@pytest.mark.parametrize("parity", ["E", "O"])
def test_the_firmware_reads_a_meter_with_parity_through_a_serial_device(tmp_path, broker, parity):
    ours, theirs = tmp_path / "ttyA", tmp_path / "ttyB"
    socat = subprocess.Popen(["socat", f"pty,link={ours},raw,echo=0", f"pty,link={theirs},raw,echo=0"],
                             stderr=subprocess.DEVNULL)
    b = None
    try:
        end = time.monotonic() + 10
        while not (ours.exists() and theirs.exists()):
            assert time.monotonic() < end, "socat did not make the ptys"
            time.sleep(0.05)
        b = Bridge(tmp_path, broker, meter={"parity": parity, "uart": {"device": str(ours)}})
        b.sim_cmd = ["--profile", "eastron_sdm630_v2", "--slave", "1", "--baud", "9600", "--parity", parity,
                     "--port", str(theirs), "--truth", str(b.truth_path)]
        b.sim = procs.start_sim(b.sim_cmd, log=open(b.sim_log, "wb"))
        b.start_firmware()
        b.wait_online()
        with b.everest() as ev:
            msg = ev.wait_for("powermeter_values", timeout=15)
        assert set(flatten(msg.value)) >= {"energy_Wh_import.total", "voltage_V.L1"}
        assert "never answered" not in b.firmware_log()
    finally:
        if b and b.fw:
            procs.stop(b.fw)
        if b and b.sim:
            procs.stop(b.sim)
        socat.terminate()
        socat.wait(5)
