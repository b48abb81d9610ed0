"""`meterbridge verify-ocmf`: check an OCMF record against the meter's public key and show its readings."""

import argparse
import json
import sys
from pathlib import Path

from .. import ocmf
from ..errors import CommandError

EPILOG = """\
input:
  RECORD is an OCMF string (OCMF|<payload>|<signature>), a stop_transaction reply or SignedMeterValue
  as JSON, or a file holding any of these; - reads stdin. The signature is checked over the payload
  bytes exactly as they are.

key:
  --key takes hex (or base64) DER SubjectPublicKeyInfo, as Iskra meters and EVerest give it, or a raw
  04||X||Y point (EM580 default), on the curve the record's SA names; a file holding one works too.
  Without --key the reply's public_key or the record's fourth section is used: that only shows the
  record is intact, not that it comes from the meter, whose key must come from a source you trust.

exit status: 0 valid signature, 1 invalid signature or unusable input.
"""


def add_arguments(parser):
    """Options of the verify-ocmf command."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("record", metavar="RECORD", help="OCMF string, reply JSON, or a file with one; - for stdin")
    parser.add_argument("--key", metavar="KEY|FILE", help="the meter's public key (see below)")


def run(args):
    """Verify, print the readings, and return 1 when the signature does not hold."""
    record, enclosed = _record(_record_text(args.record))
    key_text, origin = (_key_text(args.key), "given") if args.key else (enclosed or record.key, "enclosed")
    if not key_text:
        raise CommandError("no public key: give --key (the meter's key, hex DER)")
    try:
        key = ocmf.der_key(key_text, record.algorithm)
        valid, how = ocmf.verify(record, key)
        fields = record.fields()
        readings = record.readings()
    except ocmf.OcmfError as e:
        raise CommandError(e) from e
    _show(fields, readings)
    verdict = "VALID" if valid else "INVALID"
    print(f"signature: {verdict} ({record.algorithm}, checked by {how})")
    print(f"key: {key.hex().upper()}" + (" (enclosed with the record: shows integrity only)" if origin != "given"
                                         else ""))
    return 0 if valid else 1


def _record_text(arg):
    """arg itself when it is a record or JSON, stdin for -, else the file it names."""
    if arg == "-":
        return sys.stdin.read().strip()
    if arg.strip().startswith(("OCMF|", "{")):
        return arg.strip()
    try:
        return Path(arg).read_text().strip()
    except (OSError, UnicodeError) as e:
        raise CommandError(f"{arg}: neither an OCMF record nor a readable file ({e})") from e


def _key_text(arg):
    """The file arg names, if there is one, else arg itself."""
    try:
        return Path(arg).read_text().strip() if Path(arg).is_file() else arg
    except (OSError, UnicodeError):  # e.g. a key longer than a file name may be
        return arg


def _record(text):
    """(Record, the public key that came with it or None) from an OCMF string or a reply JSON."""
    key = None
    if text.startswith("{"):
        try:
            doc = json.loads(text)
        except RecursionError:
            raise CommandError("input is JSON nested too deeply to be a reply") from None
        except ValueError as e:
            raise CommandError(f"input is neither OCMF nor JSON: {e}") from e
        value = doc.get("signed_meter_value", doc) if isinstance(doc, dict) else None
        if not isinstance(value, dict) or not isinstance(value.get("signed_meter_data"), str):
            raise CommandError("the JSON has no signed_meter_value.signed_meter_data")
        if value.get("encoding_method", "OCMF") != "OCMF":
            raise CommandError(f"the signed value is {value['encoding_method']!r}, not OCMF")
        text, key = value["signed_meter_data"], value.get("public_key")
    try:
        return ocmf.Record.parse(text), key
    except ocmf.OcmfError as e:
        raise CommandError(e) from e


def _show(fields, readings):
    """The meter, the identification and one line per reading."""
    meter = " ".join(str(fields[k]) for k in ("MV", "MM") if k in fields) or "meter"
    print(f"{meter}, serial {fields.get('MS', '?')}, {fields.get('PG', 'no PG')}")
    ident = f"{fields.get('IT', '?')} {fields.get('ID', '')}".strip()
    where = f", {fields['CT']} {fields.get('CI', '')}" if "CT" in fields else ""
    print(f"identification: {ident} (assigned: {str(fields.get('IS', '?')).lower()}){where}")
    print(f"  {'TX':2}  {'time':32}  {'value':>16}  {'unit':4}  status")
    for r in readings:
        print(f"  {r['TX'] or '':2}  {r['TM'] or '':32}  {str(r['RV']):>16}  {r['RU'] or '':4}  {r['ST'] or ''}")
    ends = [r for r in readings if r["TX"] == "B"][:1] + [r for r in readings if r["TX"] == "E"][-1:]
    if len(ends) == 2 and ends[0]["RU"] == ends[1]["RU"]:
        print(f"energy: {ends[1]['RV'] - ends[0]['RV']} {ends[1]['RU']} (E - B)")
