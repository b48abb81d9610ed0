"""MicroPython scripts the tests run under the unix port, with the firmware compiled as a board runs it."""

import os
import subprocess
from pathlib import Path

from meterbridge import build, paths

HERE = Path(__file__).parent


def run(script, stdin="", args=(), timeout=120):
    """stdout of tests/fw/<script> (or a script path) fed stdin; AssertionError with its stderr when it fails."""
    root = build.firmware()
    env = dict(os.environ, MICROPYPATH=os.pathsep.join([".frozen", str(root), str(root / "lib")]))
    done = subprocess.run([paths.micropython(), str(HERE / script), *map(str, args)], input=stdin, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode:
        raise AssertionError(f"{script} exited {done.returncode}:\n{done.stdout}{done.stderr}")
    return done.stdout
