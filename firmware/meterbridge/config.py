"""config.json: read it within bounds, fill in defaults, check every field; a ConfigError names the field and
the reason.

The board stops at the first problem. `meterbridge config validate` runs this same file under CPython with
`collected` set to a list: then every problem goes there, in the order the board meets them.
"""

import json

from micropython import const

_MAX_BYTES = const(8192)  # eight meters on Ethernet take about 3 KB
_MAX_DEPTH = const(8)  # config.json nests 4 deep ({"meters": [{"uart": {…}}]})
_MAX_METERS = const(8)
_MQTT_ID_CHARS = const(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
_PHYS = const(("LAN8710", "LAN8720", "IP101", "RTL8201", "DP83848", "KSZ8041", "KSZ8081"))  # network.PHY_* on ESP32
# ESP32 datasheet v4.x §2.2 (Pin Description): GPIO 0..39; 34..39 are input only (toolchain.md §6); 24 and 28..31
# are no pins: machine.Pin refuses them (micropython ports/esp32/machine_pin.h at 1c3c201, CONFIG_IDF_TARGET_ESP32)
_GPIO_MAX = const(39)
_INPUT_ONLY = const(34)
_QUOTE = const(34)  # '"' in a JSON text's bytes
_BACKSLASH = const(92)
# the known keys of each object are written where the object is checked (a table here would cost RAM: every
# global name is interned for good on a board). Strings are checked as bytes: iterating a str interns each of its
# characters as a qstr, and those stay in RAM for good too.

collected = None  # None: stop at the first problem (the board); a list: note every problem in it (the host)


class ConfigError(ValueError):
    """A config that cannot run: `field: reason`."""


def _check(cond, where, reason):
    """cond, or the problem `where: reason`: raised, or noted while collecting."""
    if not cond:
        if collected is None:
            raise ConfigError("%s: %s" % (where, reason))
        collected.append("%s: %s" % (where, reason))
    return cond


def _near(key, keys):
    """The one of keys within two edits of key (Levenshtein distance), as a hint; else None."""
    best, least = None, 3
    for known in keys:
        row = list(range(len(known) + 1))
        for i, a in enumerate(key):
            diag, row[0] = row[0], i + 1
            for j, b in enumerate(known):
                diag, row[j + 1] = row[j + 1], min(row[j + 1] + 1, row[j] + 1, diag + (a != b))
        if row[-1] < least:
            best, least = known, row[-1]
    return best


def _obj(d, where, keys, reason="must be an object"):
    """Whether d is an object; each key it has that is not one of keys (a typo, ignored otherwise) is a problem."""
    if not _check(isinstance(d, dict), where or "config", reason):
        return False
    for key in sorted(d):  # in one order on every port: a MicroPython dict keeps no insertion order
        if key not in keys:
            near = _near(key, keys) if len(key) < 40 else None
            _check(False, (where + "." if where else "") + key[:40],
                   "unknown key" + (" (did you mean %s?)" % near if near else ""))
    return True


def _str(d, key, where, default=None, hi=64, empty=False, bad=b""):
    """d[key] or default: a string of 1..hi characters (0.. with empty), no control character and none of bad."""
    v = d.get(key, default)
    where += key
    if not (_check(isinstance(v, str) and (empty or v != ""), where, "must be a string" if empty else
                   "must be a non-empty string") and _check(len(v) <= hi, where, "longer than %d characters" % hi)):
        return None
    for c in v.encode():
        if c < 0x20 or c in bad:
            _check(False, where, "must not contain %r" % chr(c))
            break
    return v


def _int(d, key, where, default, lo, hi):
    v = d.get(key, default)
    return v if _check(type(v) is int and lo <= v <= hi, where + key, "must be an integer %d..%d" % (lo, hi)) else None


def _bool(d, key, where):
    """true or false only: 0 and "" are not false."""
    v = d.get(key, False)
    return v if _check(v is True or v is False, where + key, "must be true or false") else None


def _gpio(d, key, where, optional=False, out=False):
    v = d.get(key)
    if optional and v is None:
        return
    where += key
    if _check(type(v) is int and 0 <= v <= _GPIO_MAX, where,
              ("must be a GPIO number 0..%d or null" if optional else "must be a GPIO number 0..%d") % _GPIO_MAX) and \
            _check(v != 24 and not 28 <= v <= 31, where, "GPIO%d does not exist on ESP32" % v):
        _check(not out or v < _INPUT_ONLY, where,
               "GPIO%d is input only (GPIO%d..%d on ESP32); this needs an output pin" % (v, _INPUT_ONLY, _GPIO_MAX))


def _broker(d):
    if not _obj(d, "broker", ("host", "port", "prefix", "client_id", "keepalive", "username", "password", "tls",
                              "allow_plain_password", "max_payload"), "must be an object with at least host"):
        return None
    w = "broker."
    b = {
        "host": _str(d, "host", w, None, 253),  # a DNS name has at most 253 characters (RFC 1035 §2.3.4)
        "port": _int(d, "port", w, 1883, 1, 65535),
        "prefix": _str(d, "prefix", w, "", 64, True, b"+#"),
        "client_id": _str(d, "client_id", w, "meterbridge"),
        "keepalive": _int(d, "keepalive", w, 30, 5, 3600),
        "username": None if d.get("username") is None else _str(d, "username", w, None, 128),
        "password": None if d.get("password") is None else _str(d, "password", w, None, 128, True),
        "tls": _tls(d.get("tls")),
        "max_payload": _int(d, "max_payload", w, 2048, 256, 16384),  # README: The EVerest API
    }
    cid = b["client_id"]
    _check(cid is None or all(c in _MQTT_ID_CHARS for c in cid.encode()), w + "client_id",
           "use letters, digits, '_' and '-'")
    password = d.get("password") is not None
    _check((d.get("username") is None) != password, w + "password", "username and password go together")
    plain = _bool(d, "allow_plain_password", w)
    _check(not password or d.get("tls") not in (None, False) or plain, w + "password",
           "refused without TLS (set broker.tls, or broker.allow_plain_password: true on a trusted network)")
    t = b["tls"]
    _check(not password or t is None or t.get("ca") or t.get("insecure"), "broker.tls.ca",
           "a password over TLS needs the broker's CA to check it (or broker.tls.insecure: true, "
           "which sends the password to any server)")
    return b


def _tls(t):
    """None, or {ca, cert, key, insecure}: file paths; a client cert needs its key."""
    if t is None or t is False:
        return None
    if t is True:
        return {}
    w = "broker." + "tls"
    if not _obj(t, w, ("ca", "cert", "key", "insecure"), "must be true, or an object with ca, cert, key"):
        return None
    for key in ("ca", "cert", "key"):
        if t.get(key) is not None:
            _str(t, key, w + ".", None, 128)
    _bool(t, "insecure", w + ".")
    _check((t.get("cert") is None) == (t.get("key") is None), "broker.tls.key", "cert and key go together")
    return t


def _meter(d, i, supported_baud):
    w = "meters[%d]" % i
    if not _obj(d, w, ("module_id", "profile", "meter_id", "slave", "baud", "parity", "period_ms", "timeout_ms",
                       "retries", "uart")):
        return None
    w += "."
    # the module id is a topic level and, by default, the meter_id inside the JSON: none of /+#"\
    m = {
        "module_id": _str(d, "module_id", w, None, 64, False, b"/+#\"\\"),
        "profile": _str(d, "profile", w, None, 128),
        "slave": _int(d, "slave", w, 1, 1, 247),  # Modbus over serial line v1.02, 2.2: 1..247
        "baud": _int(d, "baud", w, 9600, 1200, 230400),
        "parity": d.get("parity", "N"),
        "period_ms": _int(d, "period_ms", w, 1000, 10, 3600000),
        "timeout_ms": _int(d, "timeout_ms", w, 300, 20, 5000),
        "retries": _int(d, "retries", w, 1, 0, 5),
        "uart": _uart(d.get("uart"), w + "uart"),
    }
    m["meter_id"] = _str(d, "meter_id", w, None, 64, False, b"\"\\") if "meter_id" in d else m["module_id"]
    if not _check(m["parity"] in ("N", "E", "O"), w + "parity", "must be 'N', 'E' or 'O'"):
        m["parity"] = None
    _check(m["baud"] is None or supported_baud(m["baud"]), w + "baud", "not supported on this platform")
    return m


def _uart(d, w):
    """Unix: {device}; a board: {id, tx, rx, de} (de null for an auto-direction transceiver)."""
    if not _obj(d, w, ("device", "id", "tx", "rx", "de"),
                "must be an object (device on unix; id, tx, rx, de on a board)"):
        return None
    w += "."
    if "device" in d:
        _str(d, "device", w, None, 128)
        return d
    _int(d, "id", w, None, 1, 2)  # UART0 carries the REPL
    _gpio(d, "tx", w, False, True)
    _gpio(d, "rx", w)
    _gpio(d, "de", w, True, True)
    return d


def _buses(meters):
    """Meters on one serial line share its settings, and each answers to its own slave id."""
    buses = {}
    for i, m in enumerate(meters):
        u = m and m["uart"]
        bus = u and (u.get("device") or u.get("id"))  # as the app groups them
        if type(bus) not in (str, int):
            continue
        w = "meters[%d]." % i
        same = buses.setdefault(bus, [])
        for j in same:
            first = meters[j]
            if j == same[0]:
                for key in ("uart", "baud", "parity"):
                    _check(None in (m[key], first[key]) or m[key] == first[key], w + key,
                           "must match meters[%d] on the same bus (%s)" % (j, first[key]))
            _check(m["slave"] is None or m["slave"] != first["slave"], w + "slave",
                   "%d is taken by meters[%d] on the same bus" % (m["slave"] or 0, j))
        same.append(i)


def _network(d):
    """Wi-Fi or Ethernet (board only), NTP server and host name; absent on unix."""
    d = {} if d is None else d
    if not _obj(d, "network", ("ntp", "hostname", "wifi", "ethernet")):
        return None
    w = "network."
    n = {"ntp": _str(d, "ntp", w, "pool.ntp.org", 253), "hostname": d.get("hostname"),
         "wifi": d.get("wifi"), "ethernet": d.get("ethernet")}
    if n["hostname"] is not None:
        # network.hostname() refuses more than 32 characters (MICROPY_PY_NETWORK_HOSTNAME_MAX_LEN)
        host, chars = _str(d, "hostname", w, None, 32), _MQTT_ID_CHARS[:-2] + b"-"
        _check(host is None or all(c in chars for c in host.encode()), w + "hostname",
               "use letters, digits and '-'")
    wifi, eth = n["wifi"], n["ethernet"]
    _check(wifi is None or eth is None, "network", "wifi or ethernet, not both")
    if wifi is not None and _obj(wifi, w + "wifi", ("ssid", "password"), "must be an object with ssid and password"):
        ww = w + "wifi."
        # IEEE 802.11: an SSID has at most 32 octets, a WPA2 passphrase at most 63 characters (or 64 hex)
        n["wifi"] = {"ssid": _str(wifi, "ssid", ww, None, 32), "password": _str(wifi, "password", ww, "", 64, True)}
    if eth is not None and _obj(eth, w + "ethernet", ("phy_type", "phy_addr", "mdc", "mdio", "power", "ref_clk",
                                                      "ref_clk_mode"), "must be an object (see boards/<board>.json)"):
        we = w + "ethernet."
        _check(eth.get("phy_type") in _PHYS, we + "phy_type", "one of " + ", ".join(_PHYS))
        _int(eth, "phy_addr", we, None, 0, 31)
        for key in ("mdc", "mdio"):
            _gpio(eth, key, we, False, True)
        _gpio(eth, "power", we, True, True)
        _gpio(eth, "ref_clk", we, True)
        _check(eth.get("ref_clk_mode") in (None, "in", "out"), we + "ref_clk_mode", "'in', 'out' or null")
    return n


def parse(doc, supported_baud=lambda b: True):
    """Return the checked config with defaults filled in."""
    if not _obj(doc, "", ("broker", "meters", "network", "storage", "log_level", "watchdog_ms", "heap_log_s",
                          "board", "update_key")):
        return None
    meters = doc.get("meters")
    ok = _check(isinstance(meters, list) and 0 < len(meters) <= _MAX_METERS, "meters",
                "must be a list of 1..%d meters" % _MAX_METERS)
    cfg = {
        "broker": _broker(doc.get("broker")),
        "network": _network(doc.get("network")),
        "meters": [_meter(m, i, supported_baud) for i, m in enumerate(meters)] if ok else [],
        "storage": _str(doc, "storage", "", "meterbridge-state", 128),
        "log_level": doc.get("log_level", "info"),
        "watchdog_ms": _int(doc, "watchdog_ms", "", 20000, 5000, 120000),
        "heap_log_s": _int(doc, "heap_log_s", "", 60, 1, 3600),
        "update_key": doc.get("update_key"),
    }
    key = cfg["update_key"]  # HMAC-SHA256 key of updates over MQTT (update.py); secret
    _check(key is None or isinstance(key, str) and 32 <= len(key) <= 128 and len(key) % 2 == 0
           and all(c in b"0123456789abcdefABCDEF" for c in key.encode()), "update_key", "must be 32 to 128 hex digits")
    ids = [m and m["module_id"] for m in cfg["meters"]]
    for i, mid in enumerate(ids):
        _check(mid is None or mid not in ids[:i], "meters[%d].module_id" % i, "duplicate %r" % mid)
    _buses(cfg["meters"])
    _check(cfg["log_level"] in ("debug", "info", "warn", "error"), "log_level", "debug, info, warn or error")
    return cfg


def warnings(cfg):
    """What a config that runs risks: the start-up log and `config validate` both say it."""
    b = cfg["broker"]
    out = []
    if b["tls"] is not None and not b["tls"].get("ca"):
        out.append("broker.tls: no CA, so any server can pose as the broker" +
                   (" and receive the password" if b["password"] is not None else ""))
    if b["password"] is not None and b["tls"] is None:
        out.append("broker.allow_plain_password: the password crosses the network in plain text")
    return out


def decode(data, name):
    """The JSON document in data (a file's bytes), or a ConfigError saying why there is none."""
    if len(data) > _MAX_BYTES:
        raise ConfigError("%s: larger than %d bytes" % (name, _MAX_BYTES))
    depth = deepest = 0
    quoted = escaped = False
    for c in data:  # how deep arrays and objects nest, strings skipped: before json, which would spend a board's
        if quoted:  # heap (CPython its stack) on deep nesting
            if escaped:
                escaped = False
            elif c == _BACKSLASH:
                escaped = True
            elif c == _QUOTE:
                quoted = False
        elif c == _QUOTE:
            quoted = True
        elif c == 91 or c == 123:  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif c == 93 or c == 125:  # ] }
            depth -= 1
    if deepest > _MAX_DEPTH:
        raise ConfigError("%s: nested deeper than %d levels" % (name, _MAX_DEPTH))
    try:
        text = data.decode()
    except UnicodeError:
        line = 1
        for part in data.split(b"\n"):  # the first line that is not UTF-8
            try:
                part.decode()
            except UnicodeError:
                break
            line += 1
        raise ConfigError("%s: line %d is not UTF-8 text (save the file as UTF-8)" % (name, line)) from None
    try:
        return json.loads(text)
    except ValueError as e:
        raise ConfigError("%s: not valid JSON (%s)" % (name, e)) from None


def load(path, supported_baud=lambda b: True):
    """Read and check a config file."""
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_BYTES + 1)
    except OSError:
        raise ConfigError("%s: cannot read config file" % path) from None
    return parse(decode(data, path), supported_baud)
