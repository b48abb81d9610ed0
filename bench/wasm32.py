"""Heap on 32 bits: the same plain-bytecode .mpy firmware on the MicroPython WebAssembly port (node) and on
the 64-bit unix port, with only the UART, the socket and the flash stubbed (bench/wasm/board.py).

`make bench` installs the port from npm into build/wasm (the Makefile pins its version); without node or
the package the rows say so. Rows: gc.mem_alloc() after start-up, and its peak over `seconds` of polling and a request
every 0.2 s (after a collection each time), for one SDM630 and for the Iskra signing meter. After start-up the
firmware's own figure (without the stand-ins for the board's C modules: _firmware_own) is reported beside the raw
one, and the aim applies to it.
"""

import json
import shutil
import subprocess
from pathlib import Path

from table import failed, row

from meterbridge import build, paths

BENCH = Path(__file__).resolve().parent
PACKAGE = paths.REPO / "build" / "wasm" / "node_modules" / "@micropython" / "micropython-webassembly-pyscript"
MJS = PACKAGE / "micropython.mjs"
AIM = 64 * 1024  # issue 13: every profile at or under 64 KB after start-up from .mpy files on 32 bits
METERS = (("eastron_sdm630_v2", "one SDM630"), ("iskra_wm3m4c", "Iskra WM3M4C, signing"))
_UNIX = """
import gc, sys
gc.collect()
bare = gc.mem_alloc()
sys.path[:0] = ['fw', 'fw/lib']
import board
gc.collect()
before = gc.mem_alloc()
board.start()
gc.collect()
started = gc.mem_alloc()
sent = board.run_loop('pm1', %d)
print(board.report(sent)[:-1] + ', "started": %%d, "before": %%d, "bare": %%d}' %% (started, before, bare))
"""


def _work(work, profile):
    """work/: fw/ (plain bytecode .mpy: no -march, loadable on every port, and the profile), the bench's
    modules, config.json."""
    work.mkdir(parents=True, exist_ok=True)
    build.firmware(work / "fw")  # no arch: bytecode only, the .mpy both ports load
    for other in (work / "fw" / "profiles").glob("*.json"):  # only the config's, as deploy copies
        other.unlink()
    shutil.copyfile(paths.PROFILES / f"{profile}.json", work / "fw" / "profiles" / f"{profile}.json")
    for name in ("board", "stubs", "stub_net", "halpkg"):
        subprocess.run([build.mpy_cross(), "-o", str(work / f"{name}.mpy"), "-s", f"{name}.py",
                        str(BENCH / "wasm" / f"{name}.py")], check=True)
    meter = {"module_id": "pm1", "profile": profile, "slave": 1, "baud": 9600,
             "uart": {"id": 1, "tx": 17, "rx": 16, "de": 4}}
    (work / "config.json").write_text(json.dumps({"broker": {"host": "127.0.0.1", "port": 1883, "client_id": "bench"},
                                                  "meters": [meter], "storage": "state"}))


def _last_json(out, err):
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(((err or out).strip().splitlines() or ["no output"])[-1])
    return json.loads(lines[-1])


def _both(work, seconds):
    """(WebAssembly port's figures, unix port's figures): the two run side by side, on the same files.

    Each has a copy of its own: the state directory is its flash, where the requests' journal goes, and the port
    that starts later would otherwise begin with the other's open transaction (some hundred bytes more)."""
    own = work.with_name(work.name + "-unix")
    shutil.rmtree(own, ignore_errors=True)
    shutil.copytree(work, own)
    wasm = subprocess.Popen(["node", str(BENCH / "wasm" / "run.mjs"), str(MJS), str(work), "pm1", str(seconds)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    unix = subprocess.Popen([paths.micropython(), "-X", "heapsize=1024k", "-c", _UNIX % seconds], cwd=own,
                            env={"MICROPYPATH": ".frozen"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return tuple(_last_json(*p.communicate(timeout=seconds + 120)) for p in (wasm, unix))


def _pools(n):
    """Bytes of the qstr pools that hold n interned names from an empty pool, on this 32-bit port: py/qstr.c
    (v1.28.0) qstr_add() allocates pools of 20, 40, 80, ... entries, each a 24-byte header and per entry a pointer,
    a 2-byte hash and a 1-byte length, in 16-byte GC blocks. rows() checks this against the port's qstr_info()."""
    total, size, room = 0, 20, 0
    while room < n:
        total += -(-(24 + 7 * size) // 16) * 16
        room += size
        size *= 2
    return total


def _firmware_own(got, work):
    """(bytes, names, names charged back, exact): the firmware's heap after start-up without the stand-ins.

    got["base"] is measured after board.stand_ins() loaded them (their code, objects and names). Names interned
    before that base which the firmware's loaded .mpy files also carry are charged back to it, unless a stubbed
    C module or class has them (in flash on a board). The qstr pools are then counted as the firmware's names
    alone fill them from an empty pool (_pools), not where the bench's earlier names left the pool."""
    q = got["qstr"]
    (_, n_base, data_base, all_base), (_, n_started, data_started, all_started) = q["base"], q["started"]
    pools_base, pools_started = all_base - data_base, all_started - data_started
    exact = _pools(n_base) == pools_base and _pools(n_started) == pools_started and len(q["names"]) == n_started
    order, sizes, size = [], [], 20  # qstr_info(1) prints the newest pool first
    while sum(sizes) < n_started:
        sizes.append(size)
        size *= 2
    sizes[-1] = n_started - sum(sizes[:-1])
    at = 0
    for n in reversed(sizes):
        order[:0] = q["names"][at : at + n]
        at += n
    blob = b"".join((work / f[len("/work/"):]).read_bytes() for f in set(q["files"]) if f.startswith("/work/fw/"))
    rom = {name for name in q["rom"] if not name.startswith("_") or name.startswith("__")}
    charged = [name for name in order[:n_base] if name not in rom and len(name) < 64
               and bytes((len(name) << 1,)) + name.encode() + b"\0" in blob]  # an .mpy qstr: length, name, NUL
    names = n_started - n_base + len(charged)
    own = (got["started"] - got["base"] - (pools_started - pools_base) + _pools(names)
           + sum(len(name.encode()) + 1 for name in charged))
    return own, names, len(charged), exact


def _wasm_start(work):
    """The WebAssembly port's heap after start-up alone (no loop): {"raw", "own", ...}, see rows().

    The least of three runs, each with the heap's layout shifted by a pad made first: the collector takes any word
    that looks like a pointer for one, and this port's heap lies at low addresses, where four small bytes of data
    (a profile's field table, register bytes) make one; a dead object graph kept so added up to 5.4 KB."""
    runs = []
    for pad in (0, 48, 96):
        out = subprocess.run(["node", str(BENCH / "wasm" / "run.mjs"), str(MJS), str(work), "pm1", "0", str(pad)],
                             capture_output=True, text=True, timeout=120)
        got = _last_json(out.stdout, out.stderr)
        if "error" in got:
            raise RuntimeError(got["error"].strip().splitlines()[-1])
        own, names, charged, exact = _firmware_own(got, work)
        runs.append({"raw": got["started"] - got["before"], "stand_ins": got["base"] - got["before"], "own": own,
                     "names": names, "charged": charged, "exact": exact, "pools": len(got["qstr"]["names"])})
    best = min(runs, key=lambda r: r["own"])
    return dict(best, raw=min(r["raw"] for r in runs), exact=all(r["exact"] for r in runs))


def _kb(n):
    return f"{n / 1024:.1f} KB"


def rows(work, seconds=20):
    if not shutil.which("node") or not MJS.exists():
        return [failed("heap on 32 bits (WebAssembly port)", "needs node and npm: make bench installs the port")]
    version = json.loads((PACKAGE / "package.json").read_text())["version"]
    out = []
    for profile, what in METERS:
        where = Path(work) / profile
        _work(where, profile)
        wasm, unix = _both(where, seconds)
        if "error" in wasm:
            out.append(failed(f"heap after start-up on 32 bits, {what}", wasm["error"].strip().splitlines()[-1]))
            continue
        start32, start64 = _wasm_start(where), unix["started"] - unix["before"]
        out.append(_start_row(f"heap after start-up, 32-bit WebAssembly port {version}, {what}, plain .mpy files: "
                              "gc.mem_alloc() after a collection, less the interpreter, the bench's driver and its "
                              f"stub socket ({_kb(wasm['before'])}); the firmware's own figure",
                              start32, f"64-bit unix port {_kb(start64)} (raw)", start32["raw"] / start64))
        peak32, peak64 = wasm["steady_peak"] - wasm["before"], unix["peak_used"] - unix["before"]
        out.append(row(f"heap in steady state, 32-bit WebAssembly port, {what}: highest of collections every "
                       f"0.5 s over {seconds} s of polling and {wasm['requests']} requests ({wasm['replies']} "
                       f"answered, {wasm['values']} values published)", _kb(peak32),
                       f"64-bit unix port {_kb(peak64)}", peak32 / peak64))
    every = {}
    for profile in sorted(p.stem for p in paths.PROFILES.glob("*.json")):
        _work(Path(work) / "every", profile)
        every[profile] = _wasm_start(Path(work) / "every")
    largest = max(every, key=lambda p: every[p]["own"])
    smallest = min(every, key=lambda p: every[p]["own"])
    out.append(_start_row(f"heap after start-up, 32-bit WebAssembly port, every profile ({len(every)}) alone, .mpy "
                          f"files: the largest firmware's own figure ({largest})", every[largest],
                          f"smallest {_kb(every[smallest]['own'])} (raw {_kb(every[smallest]['raw'])}, {smallest})",
                          None))
    return out


def _start_row(name, got, baseline, ratio):
    """The firmware's own figure as the value, the raw one beside it; the aim applies to the own figure only when
    the pool model matched the port's qstr_info() in every run (else to the raw figure)."""
    value = (f"{_kb(got['own'])} own ({got['names']} names, {got['charged']} charged back; stand-ins "
             f"{_kb(got['stand_ins'])}); raw {_kb(got['raw'])}")
    if not got["exact"]:
        return row(name + ": pool model did not match qstr_info, the aim applies to the raw figure", value, baseline,
                   ratio, "≤ 64 KB raw", got["raw"] <= AIM)
    return row(name, value, baseline, ratio, "≤ 64 KB own", got["own"] <= AIM)
