"""config.json: defaults, then one check of every field; a ConfigError names the field and the reason."""

import json

_MQTT_ID_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"


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
    }
    _check("+" not in b["prefix"] and "#" not in b["prefix"], w + "prefix", "must not contain '+' or '#'")
    _check(all(c in _MQTT_ID_CHARS for c in b["client_id"]), w + "client_id", "use letters, digits, '_' and '-'")
    for key in ("username", "password"):
        _check(b[key] is None or isinstance(b[key], str), w + key, "must be a string")
    _check((b["username"] is None) == (b["password"] is None), w + "password", "username and password go together")
    return b


def _meter(d, i, supported_baud):
    w = "meters[%d]." % i
    _check(isinstance(d, dict), "meters[%d]" % i, "must be an object")
    m = {
        "module_id": _str(d, "module_id", w),
        "profile": _str(d, "profile", w),
        "slave": _int(d, "slave", w, 1, 1, 247),  # Modbus over serial line v1.02, 2.2: 1..247
        "baud": _int(d, "baud", w, 9600, 1200, 230400),
        "parity": d.get("parity", "N"),
        "period_ms": _int(d, "period_ms", w, 1000, 100, 3600000),
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
    _check(isinstance(m["uart"], dict), w + "uart", "must be an object (device on unix; id/tx/rx/de on a board)")
    return m


def parse(doc, supported_baud=lambda b: True):
    """Return the checked config with defaults filled in."""
    _check(isinstance(doc, dict), "config", "must be a JSON object")
    meters = doc.get("meters")
    _check(isinstance(meters, list) and meters, "meters", "must be a non-empty list")
    cfg = {
        "broker": _broker(doc.get("broker")),
        "meters": [_meter(m, i, supported_baud) for i, m in enumerate(meters)],
        "storage": _str(doc, "storage", "", "meterbridge-state"),
        "log_level": doc.get("log_level", "info"),
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
