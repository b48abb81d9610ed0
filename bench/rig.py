"""The bench's processes: a simulated meter and the firmware (or another script) under the unix port."""

import json
import subprocess
import time
from pathlib import Path

from meterbridge import procs

BENCH = Path(__file__).resolve().parent
PROFILE = "eastron_sdm630_v2"


class Rig:
    """One simulated SDM630 on a pty and a config for the firmware that reads it; broker already running.

    settings are top-level config keys, e.g. log_level="debug".
    """

    def __init__(self, workdir, broker_port, period_ms=1000, baud=9600, module_id="pm1", **settings):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = broker_port
        self.module_id = module_id
        self.baud = baud
        self.link = str(self.dir / "meter")
        self.sim_log = self.dir / "sim.log"
        self.fw_log = self.dir / "firmware.log"
        self.config = self.dir / "config.json"
        meter = {"module_id": module_id, "profile": PROFILE, "slave": 1, "baud": baud, "period_ms": period_ms,
                 "uart": {"device": self.link}}
        broker = {"host": "127.0.0.1", "port": broker_port, "client_id": "bench-" + self.dir.name}
        cfg = {"broker": broker, "meters": [meter], "storage": str(self.dir / "state"), **settings}
        self.config.write_text(json.dumps(cfg))
        self.sim = None
        self.procs = []

    def __enter__(self):
        self.start_sim()
        return self

    def __exit__(self, *exc):
        self.stop()

    def start_sim(self, timeout=15.0):
        """Start the simulator and wait until it can answer a request."""
        args = ["--profile", PROFILE, "--slave", "1", "--baud", str(self.baud), "--link", self.link]
        with open(self.sim_log, "wb") as log:
            self.sim = procs.start_sim(args, log=log)
        end = time.monotonic() + timeout
        while b"sim: serving" not in self.sim_log.read_bytes():
            if time.monotonic() > end or self.sim.poll() is not None:
                raise TimeoutError(f"simulator not serving:\n{self.sim_log.read_text(errors='replace')}")
            time.sleep(0.02)

    def command(self, script=None, args=(), heapsize=None, form="mpy"):
        """The unix-port command line and environment for the firmware, or for `script` with the same path."""
        cmd, env = procs.firmware_command(self.config, heapsize, form)
        if script is not None:
            cmd = cmd[:-2] + [str(script), *map(str, args)]
        return cmd, env

    def spawn(self, cmd, env, stdout=None):
        """Start a command from command() now; stderr (and stdout unless given) go to the firmware log."""
        with open(self.fw_log, "ab") as log:
            proc = subprocess.Popen(cmd, env=env, stdout=stdout or log, stderr=log)
        self.procs.append(proc)
        return proc

    def log_text(self):
        """Everything the firmware and scripts started here wrote so far."""
        return self.fw_log.read_text(errors="replace") if self.fw_log.exists() else ""

    def stop(self):
        for proc in self.procs:
            procs.stop(proc)
        self.procs = []
        procs.stop(self.sim)
        self.sim = None
