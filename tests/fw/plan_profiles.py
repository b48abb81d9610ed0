"""Load profiles with the firmware: "PATH BAUD PARITY" per stdin line, a JSON line per profile on stdout."""

import json
import sys

from meterbridge import profile

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
    fields = {f.obj + "." + f.key: [f.read, f.offset] for f in p.fields}
    print(json.dumps({"name": p.name, "max_read": p.max_read, "reads": p.reads, "fields": fields}))
