"""The EVerest Powermeter object as JSON text, built from exact decimals (no float on the way)."""

import json

from . import decode


def timestamp(ms, gmtime):
    """RFC 3339 UTC with milliseconds, e.g. 2026-11-26T10:15:30.250Z."""
    t = gmtime(ms // 1000)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (t[0], t[1], t[2], t[3], t[4], t[5], ms % 1000)


def build(profile, values, ts, meter_id):
    """JSON text of one dataset; values[i] is (mantissa, exp10) or None for profile.fields[i].

    Returns None when energy_Wh_import.total is missing: EVerest requires it, so such a dataset
    is not published at all. Objects missing the key their schema requires are left out.
    """
    parts = ['{"timestamp":"', ts, '","meter_id":', json.dumps(meter_id)]
    for obj, fields in profile.objects:
        need = profile.required(obj)
        have = [f for f in fields if values[f.index] is not None]
        if need and not any(f.key == need for f in have):
            if obj == "energy_Wh_import":
                return None
            continue
        if not have:
            continue
        parts.append(',"' + obj + '":{')
        for j, f in enumerate(have):
            m, e = values[f.index]
            parts.append(('"%s":' if j == 0 else ',"%s":') % f.key)
            parts.append(decode.to_text(m, e))
        parts.append("}")
    parts.append("}")
    return "".join(parts)
