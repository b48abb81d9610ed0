"""The firmware's heap on a 32-bit MicroPython (the WebAssembly port under node) and on the 64-bit unix port.

Both run the same plain-bytecode .mpy files, the firmware's own ESP32 HAL included; only what cannot exist in
WebAssembly is stubbed: the board's machine module with a UART that a meter answers (stubs.py), the socket
(stub_net.py: a broker that answers the MQTT 3.1.1 handshake, takes publishes and sends requests), and the
flash is the port's in-memory filesystem, through the firmware's own Storage. start() builds the app as
start.main() does; the loop then runs on the port's own asyncio.

Heap figures are gc.mem_alloc() after a collection. On the WebAssembly port a collection asked for inside
a call happens when that call returns (the JS stack cannot be scanned), so node calls sample() twice.
"""

import gc
import sys
import time

import stub_net

_SOCKET = stub_net.socket_module()  # C on a board: made before the base is measured

_REQUEST_MS = 200  # a start or stop request this often, as bench/heap.py sends them

_task = []
_RUN = []  # asyncio.run of the unix port, or None: the WebAssembly port's asyncio runs on JS timers


def stand_ins():
    """Load the stand-ins for the board's C modules (machine, network, the socket) and the IO queue.

    On a board these are C: code and names in flash. wasm32.py measures the heap before and after this, so it
    can report the firmware's figure without them beside the raw one that counts them."""
    import stubs

    sys.modules["socket"] = sys.modules["usocket"] = _SOCKET
    sys.modules["machine"] = stubs.machine_module()
    sys.modules["network"] = stubs.network_module()


def rom_names():
    """The names the stubbed C modules and their classes have: in flash on a board (wasm32.py)."""
    names = set()
    for name in ("machine", "network", "socket"):
        mod = sys.modules[name]
        for attr in dir(mod):
            names.add(attr)
            names.update(dir(getattr(mod, attr)) if isinstance(getattr(mod, attr), type) else ())
        names.add(name)
    return sorted(names)


def start():
    """Build the app as start.main() does and leave its loop to the port: heap after start-up is next.

    asyncio is the firmware's (frozen Python on a board, its objects on the heap), so it is imported here."""
    import asyncio

    if "machine" not in sys.modules:
        stand_ins()
    if not hasattr(asyncio.core, "_io_queue"):  # the WebAssembly port's asyncio has no select() poller
        asyncio.core._io_queue = sys.modules["stubs"].PolledIO()
    _esp32_hal()
    _RUN.append(getattr(asyncio, "run", None))
    asyncio.run = lambda coro: _task.append(coro)  # App.run_forever(): the loop starts later, on request
    from meterbridge import start as firmware

    firmware.main()
    if _RUN[0] is None:
        delattr(asyncio, "run")
    else:
        asyncio.run = _RUN[0]


def _esp32_hal():
    """The firmware's own hal/esp32.py as meterbridge.hal, as sys.platform "esp32" selects it on a board.

    hal/__init__ would pick the unix HAL on these ports; halpkg, an empty module named and placed as the
    package, stands in for it, so nothing of the unix HAL is loaded (its interned names would stay)."""
    import halpkg

    import meterbridge

    halpkg.__name__ = "meterbridge.hal"
    halpkg.__path__ = meterbridge.__path__ + "/hal"
    meterbridge.hal = sys.modules["meterbridge.hal"] = halpkg
    from meterbridge.hal import esp32

    meterbridge.hal = sys.modules["meterbridge.hal"] = esp32


async def _requests(module_id, seconds):
    import asyncio

    from stub_net import BROKER

    base = b"everest_api/1/powermeter/" + module_id + b"/"
    end = time.ticks_add(time.ticks_ms(), seconds * 1000)
    n = 0
    while time.ticks_diff(end, time.ticks_ms()) > 0:
        await asyncio.sleep_ms(_REQUEST_MS)
        tid = b"bench-%d" % (n // 2)
        reply = b'{"headers":{"replyTo":"everest_api/1/powermeter/' + module_id + b"/m2e/reply/%d" % n + b'"},'
        if n % 2:
            BROKER.publish(base + b"e2m/stop_transaction", reply + b'"payload":"' + tid + b'"}')
        else:
            BROKER.publish(base + b"e2m/start_transaction", reply + b'"payload":{"evse_id":"1","transaction_id":"'
                           + tid + b'","identification_status":"ASSIGNED","identification_flags":[],'
                           b'"identification_type":"NONE","identification_data":""}}')
        n += 1
    return n


_peak = [0]


def sample():
    """gc.mem_alloc() now (after the collection the previous call asked for), then ask for one."""
    used = gc.mem_alloc()
    _peak[0] = max(_peak[0], used)
    gc.collect()
    return used


def run_loop(module_id, seconds):
    """Start the app's loop and the request sender; on a port with asyncio.run, also drive it here."""
    import asyncio

    sent = []

    async def requests():
        sent.append(await _requests(module_id.encode(), seconds))

    if _RUN[0] is not None:  # the unix port: one call runs it all, sampling from a task

        async def main():
            app = asyncio.create_task(_task[0])
            asyncio.create_task(requests())
            while not sent:
                await asyncio.sleep_ms(500)
                gc.collect()
                sample()
            app.cancel()

        asyncio.run(main())
    else:  # the WebAssembly port: the JS event loop runs the tasks; node samples between them
        asyncio.create_task(_task[0])
        asyncio.create_task(requests())
    return sent


def report(sent):
    import json

    from stub_net import BROKER

    return json.dumps({"peak_used": _peak[0], "requests": sent[0] if sent else None, "replies": BROKER.replies,
                       "values": BROKER.values})
