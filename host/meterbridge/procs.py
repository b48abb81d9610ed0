"""Start and stop the processes of a bridge on one machine: mosquitto, the simulator, the firmware."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import build, paths


def free_port():
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10.0):
    """Block until something accepts connections on 127.0.0.1:port."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port}")


def wait_path(path, timeout=10.0):
    end = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > end:
            raise TimeoutError(f"{path} did not appear")
        time.sleep(0.05)


def stop(proc, timeout=5.0):
    """SIGTERM, then SIGKILL; always reaps."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def mosquitto_binary():
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/sbin")
    if not found:
        raise FileNotFoundError("mosquitto not found: run `make setup` (apt-get install mosquitto)")
    return found


def start_mosquitto(port, workdir, extra_conf="", log=subprocess.DEVNULL):
    """A private mosquitto on 127.0.0.1:port with its own config file."""
    conf = Path(workdir) / f"mosquitto-{port}.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                    f"log_dest stdout\n{extra_conf}")
    proc = subprocess.Popen([mosquitto_binary(), "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_port(port)
    except TimeoutError:
        stop(proc)
        raise
    return proc


def start_sim(args, log=subprocess.DEVNULL):
    """`meterbridge sim ARGS` as a child process."""
    return subprocess.Popen([sys.executable, "-m", "meterbridge.main", "sim", *args],
                            stdout=log, stderr=log)


def firmware_command(config_path, heapsize=None, form="mpy"):
    """The unix-port command line and environment that run the firmware with a config.

    form "mpy" (default) runs .mpy compiled by mpy-cross from files, as on a board; "rom" runs
    the same .mpy in place from a ROMFS image (romrun), as on a board with a ROMFS partition or
    frozen code; "source" runs the .py files (tracebacks with line numbers, more RAM); "board" runs
    the .mpy files the way a board starts them (meterbridge.boardrun: the config's directory as its
    filesystem, update slots, resets), so updates over MQTT work.
    """
    env = dict(os.environ)
    config = str(Path(config_path).resolve())
    if form == "board":
        if Path(config).name != "config.json":
            raise ValueError("form 'board' runs the config.json of a directory")
        return [sys.executable, "-m", "meterbridge.boardrun", str(Path(config).parent), heapsize or ""], env
    if form == "rom":
        image = build.romfs(build.firmware())
        env["MICROPYPATH"] = ".frozen"
        return [sys.executable, "-m", "meterbridge.romrun", str(image), heapsize or "", config], env
    root = paths.FIRMWARE if form == "source" else build.firmware()
    lib = paths.LIB if form == "source" else root / "lib"
    cmd = [paths.micropython()]
    if heapsize:
        cmd += ["-X", f"heapsize={heapsize}"]
    env["MICROPYPATH"] = os.pathsep.join([".frozen", str(root), str(lib)])
    return cmd + [str(root / "main.py"), config], env


def start_firmware(config_path, heapsize=None, log=subprocess.DEVNULL, cwd=None, form="mpy"):
    """The real firmware under the MicroPython unix port."""
    cmd, env = firmware_command(config_path, heapsize, form)
    # a board run is a launcher and its child: a new session lets a test cut the power of both (killpg)
    return subprocess.Popen(cmd, env=env, cwd=cwd, stdout=log, stderr=log, start_new_session=form == "board")


def scratch_dir(prefix="meterbridge-"):
    return tempfile.mkdtemp(prefix=prefix)
