"""What the firmware costs in flash on an ESP32: firmware/ compiled with mpy-cross -march=xtensawin."""

import tempfile

from table import row

from meterbridge import build, paths


def rows():
    """Total size of the compiled tree, against the .py source it comes from."""
    source = sum(p.stat().st_size for p in paths.FIRMWARE.rglob("*.py"))
    with tempfile.TemporaryDirectory(prefix="meterbridge-size-") as tmp:
        out = build.compile_tree(paths.FIRMWARE, tmp, arch="xtensawin")
        compiled = sum(p.stat().st_size for p in out)
    kept = " and ".join(p.name for p in out if p.suffix == ".py")
    return [row(f"firmware/ as .mpy, xtensawin ({len(out)} files; {kept} stay source)", f"{compiled} B",
                f".py source {source} B", compiled / source)]
