"""Host names resolved off the asyncio loop (a numeric address needs no lookup: callers parse it).

getaddrinfo() blocks until the DNS server answers or lwIP gives up, so a name is looked up in a
short-lived thread: the ESP32 port releases the GIL around lwip_getaddrinfo (ports/esp32/modsocket.c),
so the loop keeps running meanwhile; the unix port's threads have no GIL.
"""

import _thread
import asyncio
import socket


def _lookup(host, port, out):
    try:
        out.append(socket.getaddrinfo(host, port)[0][-1])
    except Exception as e:  # noqa: BLE001 - handed to the waiting task, which raises it
        out.append(e)


async def address(host, port, beat=None):
    """The socket address of host:port; OSError when it does not resolve. beat() while waiting."""
    out = []
    _thread.start_new_thread(_lookup, (host, port, out))
    while not out:
        await asyncio.sleep_ms(50)
        if beat:
            beat()
    if isinstance(out[0], Exception):
        raise OSError("cannot resolve %s: %r" % (host, out[0]))
    return out[0]
