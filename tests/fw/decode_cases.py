"""Decode as meter.py does: a JSON case per stdin line in, its JSON number text (or null) per line out.

A case: {"words": [...], "type": "f32", "little": false, "exp10": 3, "exp": <s16 word|null>, "exact": true}
"""

import json
import sys

from meterbridge import decode


def _bytes(words):
    buf = bytearray(2 * len(words))
    for i, w in enumerate(words):
        buf[2 * i] = w >> 8
        buf[2 * i + 1] = w & 0xFF
    return buf


def _text(case):
    value = decode.raw(_bytes(case["words"]), 0, decode.type_index(case["type"]), case["little"])
    exp = 0
    if case["exp"] is not None:
        e = decode.raw(_bytes([case["exp"]]), 0, decode.S16, False)
        exp = None if e is None else e[0]
    if value is None or exp is None:
        return "null"
    m, e = decode.normalise(value[0], value[1] + case["exp10"] + exp, case["exact"])
    return decode.to_text(m, e)


while True:
    line = sys.stdin.readline()
    if not line:
        break
    sys.stdout.write(_text(json.loads(line)) + "\n")
