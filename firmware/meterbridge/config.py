"""config.json: defaults, then one check of every field; a ConfigError names the field and the reason."""

import json

_MQTT_ID_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"
_PHYS = ("LAN8710", "LAN8720", "IP101", "RTL8201", "DP83848", "KSZ8041", "KSZ8081")  # network.PHY_* on ESP32


class ConfigError(ValueError):
    """A config that cannot run: `field: reason`."""


def _check(cond, where, reason):
    if not cond:
        raise ConfigError(where + ": " + reason)


def _str(d, key, where, default=None, empty=False):
    v = d.get(key, default)
    _check(isinstance(v, str) and (empty or v), where + key, "must be a non-empty string" if not empty else
           "must be a string")
    return v


def _int(d, key, where, default, lo, hi):
    v = d.get(key, default)
    _check(type(v) is int and lo <= v <= hi, where + key, "must be an integer %d..%d" % (lo, hi))
    return v


def _topic_part(v, where):
    _check("+" not in v and "#" not in v and "/" not in v, where, "must not contain '/', '+' or '#'")


def _broker(d):
    w = "broker."
    _check(isinstance(d, dict), "broker", "must be an object with at least host")
    b = {
        "host": _str(d, "host", w),
        "port": _int(d, "port", w, 1883, 1, 65535),
        "prefix": _str(d, "prefix", w, "", True),
        "client_id": _str(d, "client_id", w, "meterbridge"),
        "keepalive": _int(d, "keepalive", w, 30, 5, 3600),
        "username": d.get("username"),
        "password": d.get("password"),
        "tls": _tls(d.get("tls"), w + "tls"),
        "max_payload": _int(d, "max_payload", w, 1024, 256, 16384),
    }
    _check("+" not in b["prefix"] and "#" not in b["prefix"], w + "prefix", "must not contain '+' or '#'")
    _check(all(c in _MQTT_ID_CHARS for c in b["client_id"]), w + "client_id", "use letters, digits, '_' and '-'")
    for key in ("username", "password"):
        _check(b[key] is None or isinstance(b[key], str), w + key, "must be a string")
    _check((b["username"] is None) == (b["password"] is None), w + "password", "username and password go together")
    plain = d.get("allow_plain_password", False)
    _check(plain in (True, False), w + "allow_plain_password", "must be true or false")
    _check(b["password"] is None or b["tls"] is not None or plain, w + "password",
           "refused without TLS (set broker.tls, or broker.allow_plain_password: true on a trusted network)")
    return b


def _tls(t, where):
    """None, or {ca, cert, key}: file paths; a client cert needs its key."""
    if t is None or t is False:
        return None
    if t is True:
        t = {}
    _check(isinstance(t, dict), where, "must be true or an object with ca, cert, key")
    for key in ("ca", "cert", "key"):
        _check(t.get(key) is None or isinstance(t[key], str), where + "." + key, "must be a file path")
    _check((t.get("cert") is None) == (t.get("key") is None), where + ".key", "cert and key go together")
    return t


def _meter(d, i, supported_baud):
    w = "meters[%d]." % i
    _check(isinstance(d, dict), "meters[%d]" % i, "must be an object")
    m = {
        "module_id": _str(d, "module_id", w),
        "profile": _str(d, "profile", w),
        "slave": _int(d, "slave", w, 1, 1, 247),  # Modbus over serial line v1.02, 2.2: 1..247
        "baud": _int(d, "baud", w, 9600, 1200, 230400),
        "parity": d.get("parity", "N"),
        "period_ms": _int(d, "period_ms", w, 1000, 10, 3600000),
        "timeout_ms": _int(d, "timeout_ms", w, 300, 20, 5000),
        "retries": _int(d, "retries", w, 1, 0, 5),
        "uart": d.get("uart"),
    }
    m["meter_id"] = _str(d, "meter_id", w, m["module_id"])
    _topic_part(m["module_id"], w + "module_id")
    _check(all(" " <= c and c not in "\"\\" for c in m["meter_id"]), w + "meter_id",
           "no quotes, backslashes or control characters")
    _check(m["parity"] in ("N", "E", "O"), w + "parity", "must be 'N', 'E' or 'O'")
    _check(supported_baud(m["baud"]), w + "baud", "not supported on this platform")
    _uart(m["uart"], w + "uart")
    return m


def _gpio(d, key, where, optional=False):
    v = d.get(key)
    _check((optional and v is None) or (type(v) is int and 0 <= v <= 48), where + key,
           "must be a GPIO number" + (" or null" if optional else ""))


def _uart(d, w):
    """Unix: {device}; a board: {id, tx, rx, de} (de null for an auto-direction transceiver)."""
    _check(isinstance(d, dict), w, "must be an object (device on unix; id/tx/rx/de on a board)")
    if "device" in d:
        _str(d, "device", w + ".")
        return
    _int(d, "id", w + ".", None, 1, 2)  # UART0 carries the REPL
    for key in ("tx", "rx"):
        _gpio(d, key, w + ".")
    _gpio(d, "de", w + ".", True)


def _network(d):
    """Wi-Fi or Ethernet (board only), NTP server and host name; absent on unix."""
    w = "network."
    d = {} if d is None else d
    _check(isinstance(d, dict), "network", "must be an object")
    n = {"ntp": _str(d, "ntp", w, "pool.ntp.org"), "hostname": d.get("hostname"),
         "wifi": d.get("wifi"), "ethernet": d.get("ethernet")}
    host = n["hostname"]
    chars = _MQTT_ID_CHARS[:-2] + "-"
    ok = host is None or (isinstance(host, str) and host and all(c in chars for c in host))
    _check(ok, w + "hostname", "use letters, digits and '-'")
    wifi, eth = n["wifi"], n["ethernet"]
    _check(wifi is None or eth is None, "network", "wifi or ethernet, not both")
    if wifi is not None:
        _check(isinstance(wifi, dict), w + "wifi", "must be an object with ssid and password")
        ww = w + "wifi."
        n["wifi"] = {"ssid": _str(wifi, "ssid", ww), "password": _str(wifi, "password", ww, "", True)}
    if eth is not None:
        we = w + "ethernet."
        _check(isinstance(eth, dict), w + "ethernet", "must be an object (see boards/<board>.json)")
        _check(eth.get("phy_type") in _PHYS, we + "phy_type", "one of " + ", ".join(_PHYS))
        _int(eth, "phy_addr", we, None, 0, 31)
        for key in ("mdc", "mdio"):
            _gpio(eth, key, we)
        for key in ("power", "ref_clk"):
            _gpio(eth, key, we, True)
        _check(eth.get("ref_clk_mode") in (None, "in", "out"), we + "ref_clk_mode", "'in', 'out' or null")
    return n


def parse(doc, supported_baud=lambda b: True):
    """Return the checked config with defaults filled in."""
    _check(isinstance(doc, dict), "config", "must be a JSON object")
    meters = doc.get("meters")
    _check(isinstance(meters, list) and meters, "meters", "must be a non-empty list")
    cfg = {
        "broker": _broker(doc.get("broker")),
        "network": _network(doc.get("network")),
        "meters": [_meter(m, i, supported_baud) for i, m in enumerate(meters)],
        "storage": _str(doc, "storage", "", "meterbridge-state"),
        "log_level": doc.get("log_level", "info"),
        "watchdog_ms": _int(doc, "watchdog_ms", "", 20000, 5000, 120000),
        "heap_log_s": _int(doc, "heap_log_s", "", 60, 1, 3600),
    }
    ids = [m["module_id"] for m in cfg["meters"]]
    for i, mid in enumerate(ids):
        _check(mid not in ids[:i], "meters[%d].module_id" % i, "duplicate %r" % mid)
    _check(cfg["log_level"] in ("debug", "info", "warn", "error"), "log_level", "debug, info, warn or error")
    return cfg


def load(path, supported_baud=lambda b: True):
    """Read and check a config file."""
    try:
        with open(path) as f:
            doc = json.load(f)
    except OSError:
        raise ConfigError("%s: cannot read config file" % path) from None
    except ValueError as e:
        raise ConfigError("%s: not valid JSON (%s)" % (path, e)) from None
    return parse(doc, supported_baud)
