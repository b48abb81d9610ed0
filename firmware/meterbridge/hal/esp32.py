"""ESP32 HAL: UART with the RS-485 direction pin, Wi-Fi or Ethernet, NTP clock, watchdog, littlefs storage.

NTP is asked without blocking the loop: one UDP query (RFC 5905) at a time, awaited, to the configured
server and then the broker's host (a charger controller that runs the broker often serves time too).
"""

import asyncio
import os
import socket
import struct
import sys
import time
from asyncio import core

import machine
import network
from micropython import const

from .. import storage
from ..log import ERROR, INFO, WARN, log

PLATFORM = "esp32"

_PARITY = {"N": None, "E": 0, "O": 1}  # machine.UART: parity None, 0 (even) or 1 (odd)
_TXBUF = const(256)  # a whole request fits: write() returns while the frame goes out
_RXBUF = const(512)  # two whole replies
_SLACK_US = const(3000)  # txdone() stuck beyond the wire time: release DE anyway
_VALID_YEAR = const(2025)  # an RTC before this has not been set (it starts at 2000 after power-on)
_NTP_RETRY_MS = const(10000)  # while the clock is not valid: no values are published
_NTP_1970 = const(2208988800)  # seconds from the NTP epoch (1900) to 1970 (RFC 5905, 6)
_NTP_REFRESH_MS = const(3600000)
_HEALTHY_MS = const(60000)
_FEEDER = const(0)  # the machine.Timer that feeds the watchdog while the bridge is stopped (boot.py: the same)
_STARTS = "starts"  # app starts not yet followed by a healthy minute; boot.py reads it (crash-loop guard)
_EPOCH_S = 0 if time.gmtime(0)[0] == 1970 else 946684800  # ports with the 2000 epoch

LINK_WAIT_MS = 20000  # start-up waits this long for the network, then goes on (the NIC keeps trying)
NTP_PORT = 123
NTP_TIMEOUT_MS = 2000  # per server
_clock_valid = False
_ntp_hosts = []  # tried in order: the configured server(s), then the broker's host
_nic = None


class Bus:
    """machine.UART plus the transceiver's DE/RE pin, driven high only while a frame is on the wire."""

    def __init__(self, uart, baud, parity):
        if not isinstance(uart, dict) or uart.get("id") is None:
            raise OSError("uart: id, tx, rx (and de) are needed on a board")
        # start + 8 data + stop, plus parity: what planner.char_bits assumes for the same line
        self._char_us = (10 if parity == "N" else 11) * 1000000 // baud
        self._uart = machine.UART(uart["id"], baudrate=baud, bits=8, parity=_PARITY[parity], stop=1,
                                  tx=uart["tx"], rx=uart["rx"], txbuf=_TXBUF, rxbuf=_RXBUF, timeout=0,
                                  timeout_char=0)
        de = uart.get("de")
        self._de = None if de is None else machine.Pin(de, machine.Pin.OUT, value=0)

    async def send(self, buf, n):
        """Drive the bus, write buf[:n], release it within a character time of the last stop bit.

        Nothing yields while DE is high, so no other task (DNS, a TLS handshake) can keep the driver
        on into the meter's reply. The loop waits out the frame's wire time instead: 8 ms for a read
        request at 9600 baud, 267 ms for the longest frame (256 bytes).
        """
        uart = self._uart
        de = self._de
        if de is None:  # auto-direction transceiver
            uart.write(buf, n)
            return
        de.value(1)
        try:
            uart.write(buf, n)
            # UART.txdone() (MicroPython >= 1.20): TX FIFO empty and the transmitter idle, i.e. the last
            # stop bit is out (ports/esp32/machine_uart.c: uart_wait_tx_done with no wait). Trusted only
            # from one character before the computed end: the ring buffer feeds the FIFO from an interrupt,
            # so an idle transmitter in between must not end the frame early.
            now = time.ticks_us()
            earliest = time.ticks_add(now, (n - 1) * self._char_us)
            limit = time.ticks_add(now, n * self._char_us + _SLACK_US)
            while time.ticks_diff(limit, time.ticks_us()) > 0:
                if uart.txdone() and time.ticks_diff(time.ticks_us(), earliest) >= 0:
                    break
        finally:  # Ctrl-C in the middle must not leave the driver on
            de.value(0)

    def readinto(self, mv):
        """Read what has arrived into mv; 0 when nothing."""
        return self._uart.readinto(mv) or 0

    def close(self):
        if self._de is not None:
            self._de.value(0)
        self._uart.deinit()


def supported_baud(baud):
    """The ESP32 UART divides its 80 MHz clock: anything up to 5 Mbaud."""
    return 300 <= baud <= 5000000


Storage = storage.Storage  # the same on every platform; re-exported for the app


class Watchdog:
    """machine.WDT; feeding it for a minute also marks this start healthy for boot.py's crash-loop guard.

    machine.WDT cannot be stopped and survives a soft reset (docs: machine.WDT; ports/esp32/machine_wdt.c),
    so its timeout goes into RTC memory, which a soft reset keeps: boot.py feeds it from a Timer after
    one, and stopped() does after Ctrl-C. Here the supervisor takes the feeding over from boot.py.
    """

    def __init__(self, timeout_ms, healthy_ms=_HEALTHY_MS):
        machine.Timer(_FEEDER).deinit()  # boot.py's: from now on only a supervisor that sees progress feeds
        self._wdt = machine.WDT(timeout=timeout_ms)
        machine.RTC().memory(b"%d" % timeout_ms)
        self._healthy_at = time.ticks_add(time.ticks_ms(), healthy_ms)
        self._proven = False

    def feed(self):
        self._wdt.feed()
        if not self._proven and time.ticks_diff(time.ticks_ms(), self._healthy_at) >= 0:
            self._proven = True
            _remove(_STARTS)


def reset():
    machine.reset()


def stopped():
    """The bridge stopped at Ctrl-C: feed a started watchdog from a Timer, so the REPL that follows stays up."""
    try:
        timeout = int(machine.RTC().memory())
    except ValueError:
        return  # no watchdog was started
    wdt = machine.WDT(timeout=timeout)
    machine.Timer(_FEEDER).init(period=timeout // 4, callback=lambda t: wdt.feed())
    print("meterbridge stopped. The watchdog cannot be stopped, so machine.Timer(%d) now feeds it every %d ms"
          " and this REPL stays up; a blocking call longer than %d ms still resets the board."
          " Ctrl-D or machine.reset() starts the bridge again." % (_FEEDER, timeout // 4, timeout))


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass  # not there


def _count_start():
    """One more app start for boot.py to count; Watchdog clears it after a healthy minute."""
    try:
        with open(_STARTS) as f:
            n = int(f.read())
    except (OSError, ValueError):
        n = 0
    with open(_STARTS, "w") as f:
        f.write(str(n + 1))


def epoch_ms():
    """Milliseconds since 1970-01-01 UTC, or None until NTP (or an RTC kept over a reset) set the clock."""
    if not _clock_valid:
        return None
    return time.time_ns() // 1000000 + _EPOCH_S * 1000


def gmtime(seconds):
    return time.gmtime(seconds - _EPOCH_S)


def _readable(sock):
    yield core._io_queue.queue_read(sock)


async def _ntp(host):
    """Seconds since 1970 from one NTP server: a client-mode query (RFC 5905), its answer awaited."""
    parts = host.split(".")
    if len(parts) == 4 and all(p.isdigit() for p in parts):
        addr = socket.getaddrinfo(host, NTP_PORT)[0][-1]  # numeric: parsed, no DNS query
    else:
        from ..dns import address  # a name: looked up off the loop

        addr = await address(host, NTP_PORT)
    query = bytearray(48)
    query[0] = 0x23  # leap 0, version 4, mode 3 (client)
    nonce = os.urandom(8)  # our transmit timestamp: the answer's origin timestamp must be it
    query[40:] = nonce
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.setblocking(False)
        s.sendto(query, addr)
        await asyncio.wait_for_ms(_readable(s), NTP_TIMEOUT_MS)
        r = s.recv(48)
    finally:
        s.close()
    if len(r) < 48 or r[0] & 7 != 4 or not 0 < r[1] < 16 or r[24:32] != nonce:  # server mode, stratum 1..15
        raise ValueError("not an NTP answer to our query")
    t = struct.unpack_from("!I", r, 40)[0]  # transmit timestamp, whole seconds
    return t + (0x100000000 if t < 0x80000000 else 0) - _NTP_1970  # after 2036 the era wraps


async def sync_time():
    """Set the RTC from the first NTP server that answers, while the link is up; True once the clock is valid."""
    global _clock_valid
    if _nic is None or not _nic.isconnected():
        return _clock_valid
    why = []
    for host in _ntp_hosts:
        try:
            t = await _ntp(host)
        except (OSError, ValueError, asyncio.TimeoutError) as e:
            why.append("%s %r" % (host, e))
            continue
        tm = time.gmtime(t - _EPOCH_S)
        machine.RTC().datetime((tm[0], tm[1], tm[2], tm[6] + 1, tm[3], tm[4], tm[5], 0))  # as ntptime.settime()
        _clock_valid = True
        return True
    log(WARN, "NTP: no answer from", ", ".join(why))
    return _clock_valid


async def keep_time():
    """Task: NTP at once, again every 10 s until the clock is valid, then hourly against RTC drift."""
    while True:
        await sync_time()
        await asyncio.sleep_ms(_NTP_REFRESH_MS if _clock_valid else _NTP_RETRY_MS)


def _lan(eth):
    Pin = machine.Pin
    kw = {"mdc": Pin(eth["mdc"]), "mdio": Pin(eth["mdio"]), "phy_addr": eth["phy_addr"],
          "phy_type": getattr(network, "PHY_" + eth["phy_type"])}
    if eth.get("power") is not None:
        kw["power"] = Pin(eth["power"])
    if eth.get("ref_clk") is not None:
        kw["ref_clk"] = Pin(eth["ref_clk"])
    if eth.get("ref_clk_mode"):
        kw["ref_clk_mode"] = Pin.IN if eth["ref_clk_mode"] == "in" else Pin.OUT
    nic = network.LAN(**kw)
    nic.active(True)
    return nic


def _wlan(wifi):
    nic = network.WLAN(network.STA_IF)
    nic.active(True)
    nic.config(reconnects=-1)  # keep rejoining after an access point outage
    nic.config(pm=nic.PM_NONE)  # power save would delay the broker's requests by beacon intervals
    nic.connect(wifi["ssid"], wifi["password"])
    return nic


def start_network(cfg):
    """Bring up Wi-Fi or Ethernet, wait a bounded time for an address, start keeping the time, count the start.

    keep_time() is scheduled here: MicroPython's asyncio runs tasks created before asyncio.run().
    """
    global _clock_valid, _nic
    _count_start()
    net = cfg.get("network") or {}
    ntp = net.get("ntp") or "pool.ntp.org"
    _ntp_hosts[:] = ntp if isinstance(ntp, list) else [ntp]
    host = (cfg.get("broker") or {}).get("host")
    if host and host not in _ntp_hosts:
        _ntp_hosts.append(host)
    _clock_valid = machine.RTC().datetime()[0] >= _VALID_YEAR
    if net.get("hostname"):
        network.hostname(net["hostname"])
    if not (net.get("ethernet") or net.get("wifi")):
        log(WARN, "no network configured (network.wifi or network.ethernet)")
        return
    try:
        _nic = _lan(net["ethernet"]) if net.get("ethernet") else _wlan(net["wifi"])
    except OSError as e:  # e.g. a PHY that did not come up: a reset retries, boot.py stops a loop
        log(WARN, "network interface failed:", e, "- resetting")
        time.sleep_ms(1000)
        machine.reset()
    asyncio.create_task(keep_time())
    deadline = time.ticks_add(time.ticks_ms(), LINK_WAIT_MS)
    while not _nic.isconnected() and time.ticks_diff(deadline, time.ticks_ms()) > 0:
        time.sleep_ms(100)
    if _nic.isconnected():
        log(INFO, "network up, address", _nic.ifconfig()[0])
    else:
        log(WARN, "network not up yet; continuing, it keeps trying")


def reset_cause():
    """machine.reset_cause() as a word. The ESP32 port counts a brown-out as power-on, a panic or
    machine.reset() as hard, and gives 0 for causes it does not name (ports/esp32/modmachine.c)."""
    c = machine.reset_cause()
    for value, name in ((machine.PWRON_RESET, "power-on"), (machine.HARD_RESET, "hard"),
                        (machine.WDT_RESET, "watchdog"), (machine.DEEPSLEEP_RESET, "deep-sleep"),
                        (machine.SOFT_RESET, "soft")):
        if c == value:
            return name
    return "unknown"


def config_path():
    """config.json, or the one boot.py's slots.boot() chose (an update's config on trial) in sys.argv[1]."""
    return sys.argv[1] if len(sys.argv) > 1 else "config.json"


def profiles_dir():
    """profiles/ beside the package: in /rom from a ROMFS partition, in a/ or b/ after an update."""
    parts = __file__.rsplit("/", 3)
    return parts[0] + "/profiles" if len(parts) == 4 else "profiles"


def fatal(message):
    """Stop with a message and leave the REPL reachable (SystemExit would soft-reboot into it again)."""
    log(ERROR, "fatal:", message)
    raise RuntimeError("meterbridge stopped: " + message)
