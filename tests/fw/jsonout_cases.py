"""For each hex line on stdin: the JSON string jsonout writes for those bytes, or "UNICODE" when refused."""

import sys
from binascii import unhexlify

from meterbridge import jsonout

for line in sys.stdin.read().split():
    data = unhexlify(line[1:])  # "h" + hex, so an empty string still has a line
    out = jsonout.Writer(jsonout.string_size(data))
    try:
        out.put_string(data)
    except UnicodeError:
        print("UNICODE")
        continue
    assert out.n == len(out.buf), "string_size is exact"
    print(bytes(out.mv[: out.n]).decode())
