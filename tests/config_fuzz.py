"""Hostile config files: good configs with wrong types, odd strings, typos, clashing meters, deep nesting, size and
bytes that are not UTF-8 (issue 15 "Config", issue 13 §4)."""

import copy
import json
import random

UNIX = {"broker": {"host": "127.0.0.1", "port": 1883, "prefix": "ev/", "client_id": "mb-1", "username": "u",
                   "password": "p", "tls": {"ca": "ca.pem"}},
        "meters": [{"module_id": "pm1", "profile": "eastron_sdm630_v2", "slave": 1, "baud": 9600, "parity": "N",
                    "period_ms": 1000, "uart": {"device": "/dev/ttyUSB0"}},
                   {"module_id": "pm2", "profile": "abb_b23", "slave": 2, "baud": 9600, "parity": "N",
                    "uart": {"device": "/dev/ttyUSB0"}}],
        "storage": "state", "log_level": "info", "watchdog_ms": 20000}
BOARD = {"board": "olimex-esp32-poe", "broker": {"host": "10.0.0.2", "keepalive": 30},
         "network": {"ntp": "10.0.0.1", "hostname": "cp-1",
                     "ethernet": {"phy_type": "LAN8720", "phy_addr": 0, "mdc": 23, "mdio": 18, "power": 12,
                                  "ref_clk": 17, "ref_clk_mode": "out"}},
         "meters": [{"module_id": "pm", "profile": "eastron_sdm630_v2",
                     "uart": {"id": 1, "tx": 4, "rx": 36, "de": 32}}]}
HOSTILE = [None, True, False, 0, 1, -1, 1.5, 2 ** 40, 255, 39, 40, 34, 24, 30, "", " ", "x" * 5000, "a\x00b",
           "tab\there", "caf\u00e9", "+", "#", "a/b", '"', "\\", "N", "E", [], [1], {}, {"perod_ms": 1}, "/dev/ttyUSB1",
           9600, 19200]


def _paths(node, path=()):
    """Every (container path, key) in a JSON tree."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        yield path, key
        yield from _paths(value, path + (key,))


def _at(doc, path):
    for key in path:
        doc = doc[key]
    return doc


def _typo(rng, key):
    key = str(key)
    i = rng.randrange(len(key) or 1)
    return rng.choice([key[:i] + key[i + 1:], key[:i] + key[i:i + 1] * 2 + key[i + 1:], key.upper(), key + "s"]) \
        or "x"


def mutate(rng, doc):
    """One hostile change to doc, in place."""
    places = list(_paths(doc))
    path, key = rng.choice(places)
    parent = _at(doc, path)
    kind = rng.randrange(6)
    if kind <= 1:
        parent[key] = copy.deepcopy(rng.choice(HOSTILE))
    elif kind == 2 and isinstance(parent, dict):
        parent[_typo(rng, key)] = parent.pop(key)
    elif kind == 3 and isinstance(parent, dict):
        del parent[key]
    elif kind == 4:
        deep = "x"
        for _ in range(rng.randrange(2, 12)):
            deep = [deep] if rng.random() < 0.5 else {"k": deep}
        parent[key] = deep
    else:  # another meter on a bus that may clash with one already there
        meters = doc.get("meters")
        if isinstance(meters, list):
            meter = next((m for m in meters if isinstance(m, dict)), {})
            meters.append({**meter, "module_id": f"m{rng.randrange(100)}", "slave": rng.choice([1, 2, 3]),
                           "baud": rng.choice([9600, 19200]), "parity": rng.choice("NEO")})


def config_bytes(rng):
    """A config file's bytes: a good config with one to three hostile changes, now and then spoilt as bytes."""
    doc = copy.deepcopy(rng.choice([UNIX, BOARD]))
    for _ in range(rng.randrange(1, 4)):
        mutate(rng, doc)
    data = json.dumps(doc).encode()
    spoil = rng.randrange(20)
    if spoil == 0:
        return data[:rng.randrange(len(data))]
    if spoil == 1:
        i = rng.randrange(len(data))
        return data[:i] + b"\xff" + data[i:]
    if spoil == 2:
        return data[:-1] + b', "pad": "' + b"p" * 9000 + b'"}'
    if spoil == 3:
        return b'{"meters": ' + b"[" * 3000 + b"]" * 3000 + b"}"
    return data


def stream(seed, count):
    rng = random.Random(seed)
    return [config_bytes(rng) for _ in range(count)]


def spoilt_tls_files(rng, good, count):
    """count (key, bytes) pairs: the good PEM files of a PKI ({"ca"|"cert"|"key": bytes}) cut short, with bytes
    flipped, lines dropped or swapped between kinds, as DER, or empty."""
    out = []
    for _ in range(count):
        key = rng.choice(["ca", "cert", "key"])
        data = good[key]
        kind = rng.randrange(7)
        if kind == 0:
            data = data[:rng.randrange(len(data))]
        elif kind == 1:
            i = rng.randrange(len(data))
            data = data[:i] + bytes([rng.randrange(256)]) + data[i + 1:]
        elif kind == 2:
            lines = data.split(b"\n")
            del lines[rng.randrange(len(lines))]
            data = b"\n".join(lines)
        elif kind == 3:
            data = good[rng.choice(["ca", "cert", "key"])]
        elif kind == 4:
            data = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 200)))
        elif kind == 5:
            data = b""
        out.append((key, data))
    return out
