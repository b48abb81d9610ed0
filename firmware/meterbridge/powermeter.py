"""The EVerest Powermeter object as JSON text, built from exact decimals (no float on the way)."""

from . import decode

# units.yaml: Energy, Power and ReactivePower require "total"; Frequency requires "L1"
_REQUIRED = {"energy_Wh_import": "total", "energy_Wh_export": "total", "power_W": "total", "VAR": "total",
             "frequency_Hz": "L1"}


def timestamp(ms, gmtime):
    """RFC 3339 UTC with milliseconds, e.g. 2026-11-26T10:15:30.250Z."""
    t = gmtime(ms // 1000)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (t[0], t[1], t[2], t[3], t[4], t[5], ms % 1000)



def build(out, profile, values, ts, meter_id):
    """Write one dataset's JSON into out (a jsonout.Writer); False when it must not be published.

    values[i] is (mantissa, exp10) or None for profile.fields[i]. EVerest requires
    energy_Wh_import.total, so a dataset without it is not published. Objects missing the key
    their schema requires are left out.
    """
    out.n = 0
    out.put(b'{"timestamp":"')
    out.put(ts)
    out.put(b'","meter_id":"')
    out.put(meter_id)
    out.put(b'"')
    for obj, fields in profile.objects:
        need = _REQUIRED.get(obj)
        first = True
        for f in fields:
            if values[f.index] is None:
                continue
            if first:
                if need and not _has(fields, values, need):
                    if obj == "energy_Wh_import":
                        return False
                    break
                out.put(b',"')
                out.put(obj)
                out.put(b'":{"')
                first = False
            else:
                out.put(b',"')
            out.put(f.key)
            out.put(b'":')
            m, e = values[f.index]
            out.put(decode.to_text(m, e))
        if not first:
            out.put(b"}")
        elif obj == "energy_Wh_import":
            return False
    out.put(b"}")
    return True


def _has(fields, values, key):
    for f in fields:
        if f.key == key and values[f.index] is not None:
            return True
    return False
