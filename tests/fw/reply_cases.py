"""rtu.check_response on replies from stdin, one JSON line each ({"request": hex, "reply": hex}): "ok" or why not."""

import json
import sys
from binascii import unhexlify

from meterbridge.modbus import rtu

while True:
    line = sys.stdin.readline()
    if not line:
        break
    case = json.loads(line)
    reply = unhexlify(case["reply"])
    try:
        rtu.check_response(unhexlify(case["request"]), reply, len(reply))
        sys.stdout.write("ok\n")
    except rtu.ModbusError as e:
        sys.stdout.write("kind%d\n" % e.kind)
