"""Load profiles with the firmware: "PATH BAUD PARITY" per stdin line, a JSON line per profile on stdout."""

import json
import sys

from meterbridge import profile
from meterbridge.meter import FIELD_BYTES, KEY, OBJECT, OFFSET, READ
from meterbridge.powermeter import KEYS, OBJECTS

while True:
    line = sys.stdin.readline()
    if not line.strip():
        break
    path, baud, parity = line.split()
    try:
        p = profile.load(path, int(baud), parity)
    except profile.ProfileError as e:
        print(json.dumps({"error": str(e)}))
        continue
    t = p.fields
    fields = {}
    for at in range(0, len(t), FIELD_BYTES):
        fields[OBJECTS[t[at + OBJECT]] + "." + KEYS[t[at + KEY]]] = [t[at + READ], t[at + OFFSET]]
    print(json.dumps({"name": p.name, "max_read": p.max_read, "reads": p.reads, "fields": fields}))
