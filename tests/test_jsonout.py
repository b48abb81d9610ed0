"""The firmware's JSON string writer (OCMF records go through it byte for byte) against CPython's json."""

import json

from fw import run

VALID = ['OCMF|{"FV":"1.0","RD":[{"RV":1.25}]}|{"SD":"30"}', 'back\\slash', "tab\tand\nnewline\x01", "0,39 € / kWh",
         "", "日本"]
INVALID = [b"\xff", b"\xc3", b"a\x80", b"\xe2\x82"]


def test_strings_round_trip_and_bad_utf8_is_refused():
    lines = ["h" + s.encode().hex() for s in VALID] + ["h" + b.hex() for b in INVALID]
    out = run("jsonout_cases.py", stdin="\n".join(lines) + "\n").splitlines()
    assert [json.loads(o) for o in out[: len(VALID)]] == VALID
    assert out[len(VALID):] == ["UNICODE"] * len(INVALID)
