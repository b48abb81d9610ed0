// The firmware on the MicroPython WebAssembly port (32-bit) under node: see board.py.
// argv: module path of micropython.mjs, the work directory (fw/ beside config.json and profiles/),
// the module id, seconds of polling and requests, and (optional) the bytes of a pad made before the firmware
// loads, which shifts where its objects land (wasm32.py). Prints one JSON line.
import fs from "fs";
import path from "path";

const [mjs, work, moduleId, seconds, pad] = process.argv.slice(2);
const { loadMicroPython } = await import(mjs);
const out = [];
const mp = await loadMicroPython({
    heapsize: 4 * 1024 * 1024, linebuffer: true,
    stdout: (line) => out.push(line), stderr: (line) => process.stderr.write(line + "\n"),
});

function copy(from, to) {  // the work tree into the port's in-memory filesystem
    mp.FS.mkdir(to);
    for (const name of fs.readdirSync(from)) {
        const src = path.join(from, name);
        if (fs.statSync(src).isDirectory()) copy(src, to + "/" + name);
        else mp.FS.writeFile(to + "/" + name, fs.readFileSync(src));
    }
}
copy(work, "/work");
mp.runPython("import gc\ngc.collect()");
mp.runPython("bare = gc.mem_alloc()");  // the interpreter alone (the collection above has happened)
mp.runPython(`pad = bytearray(${Number(pad || 0)})`);
mp.runPython("import os, sys\nos.chdir('/work')\nsys.path[:0] = ['/work/fw', '/work/fw/lib']\nimport board");
const board = mp.pyimport("board");
const settle = () => {  // gc.mem_alloc() after a collection run from the top level (see board.py)
    board.sample();
    mp.runPython("gc.collect()\nused = gc.mem_alloc()");
    return mp.globals.get("used");
};

const qstrs = () => {  // the pool of interned names: [pools, names, string bytes, bytes in all] (py/qstr.c)
    mp.runPython("import micropython\nmicropython.qstr_info()");
    return out.pop().match(/\d+/g).map(Number);
};

const bare = mp.globals.get("bare");
const before = settle();  // the interpreter and this harness, before any firmware module
let started, base, qBase, qStarted, names;
try {
    board.stand_ins();  // the board's C modules, stubbed: measured apart (wasm32.py)
    base = settle();
    qBase = qstrs();
    board.start();
    started = settle();
    qStarted = qstrs();
    const at = out.length;  // every interned name, the newest pool first (py/qstr.c qstr_dump_data)
    mp.runPython("micropython.qstr_info(1)");
    names = out.splice(at).map((l) => l.match(/^Q\((.*)\)\s*$/)).filter(Boolean).map((m) => m[1]);
    mp.runPython("import json\nfiles = json.dumps([m.__file__ for m in sys.modules.values() if hasattr(m, '__file__')])\n"
        + "rom = json.dumps(board.rom_names())");
} catch (e) {
    console.log(JSON.stringify({ error: String(e), output: out.slice(-5) }));
    process.exit(0);
}
const qstr = { base: qBase, started: qStarted, names, files: JSON.parse(mp.globals.get("files")),
               rom: JSON.parse(mp.globals.get("rom")) };
mp.runPython("del files, rom");  // not to count in the steady state
const sent = board.run_loop(moduleId, Number(seconds));
let floor = 0;
const timer = setInterval(() => { floor = Math.max(floor, settle()); }, 500);
setTimeout(() => {
    clearInterval(timer);
    const report = JSON.parse(board.report(sent));
    console.log(JSON.stringify({ bare, before, base, started, steady_peak: floor, qstr, ...report,
                                 output: out.slice(-3) }));
    process.exit(0);
}, (Number(seconds) + 1) * 1000);
