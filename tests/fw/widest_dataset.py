"""Each profile's widest dataset (every value TEXT_BYTES long, a long meter id) in a buffer of text_size."""

import json
import sys

from meterbridge import jsonout, powermeter, profile
from meterbridge.meter import TEXT_BYTES, Dataset

meter_id = "m" * 64
for path in sys.argv[1:]:
    prof = profile.load(path)
    out = jsonout.Writer(powermeter.text_size(prof, meter_id))
    widest = Dataset(prof.count)  # every value as long as a slot allows
    widest.text[:] = b"9" * len(widest.text)
    widest.lens[:] = bytes([TEXT_BYTES] * prof.count)
    assert powermeter.build(out, prof, widest, meter_id, "2026-11-26T10:15:30.250Z")
    doc = json.loads(bytes(out.mv[: out.n]))
    print(prof.name, sum(len(v) for v in doc.values() if type(v) is dict), len(out.buf) - out.n)
