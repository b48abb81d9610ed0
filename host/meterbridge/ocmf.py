"""OCMF records on the host: parse one, turn a meter's public key into DER, verify the signature.

pyocmf checks the signature first. Where it cannot decide, plain `cryptography` checks it the same
way (ECDSA over the payload bytes): pyocmf 0.6.0 refuses the SA spelling
"ECDSA-brainpoolP384r1-SHA256" that the Carlo Gavazzi EM580 writes, and its key-curve table lacks
brainpoolP384r1 even under the spec's spelling "ECDSA-brainpool384r1-SHA256" (docs/ocmf.md §4).
A "false" from pyocmf is never overruled: the fallback only runs when pyocmf raises.
"""

import base64
import binascii
import json
import warnings
from dataclasses import dataclass
from decimal import Decimal

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pyocmf import OCMF
from pyocmf.exceptions import PyOCMFError

DEFAULT_SA = "ECDSA-secp256r1-SHA256"  # OCMF: SA may be left out, this is its default
CURVES = {
    "secp192r1": ec.SECP192R1, "secp256r1": ec.SECP256R1, "secp384r1": ec.SECP384R1, "secp256k1": ec.SECP256K1,
    "brainpool256r1": ec.BrainpoolP256R1, "brainpoolP256r1": ec.BrainpoolP256R1,
    "brainpool384r1": ec.BrainpoolP384R1, "brainpoolP384r1": ec.BrainpoolP384R1,
}
HASHES = {"SHA256": hashes.SHA256, "SHA512": hashes.SHA512}
READING_KEYS = ("TM", "TX", "RV", "RI", "RU", "RT", "ST", "EF")


class OcmfError(ValueError):
    """A record or key that cannot be read, with the reason."""


@dataclass(frozen=True)
class Record:
    """One OCMF record: payload and signature sections as written, and an optional key section."""

    payload: str
    signature_text: str
    key: str | None = None

    @classmethod
    def parse(cls, text):
        """Split "OCMF|payload|signature[|key]"; OcmfError when it is not that."""
        parts = text.strip().split("|")
        if parts[0] != "OCMF" or len(parts) not in (3, 4):
            raise OcmfError("not an OCMF record (OCMF|<payload>|<signature>)")
        try:
            signature = json.loads(parts[2])
            payload = json.loads(parts[1], parse_float=Decimal)
        except RecursionError:
            raise OcmfError("OCMF section nested too deeply to be a record") from None
        except ValueError as e:
            raise OcmfError(f"OCMF section is not JSON: {e}") from e
        if not isinstance(signature, dict) or not isinstance(signature.get("SD"), str):
            raise OcmfError('signature section has no "SD"')
        problems = [f"{key}: must be a string, not {_shown(signature[key])}" for key in ("SA", "SE")
                    if not isinstance(signature.get(key, ""), str)] + payload_problems(payload)
        if problems:
            raise OcmfError("not an OCMF record as the specification has it:\n  " + "\n  ".join(problems))
        return cls(parts[1], parts[2], parts[3] if len(parts) == 4 else None)

    @property
    def text(self):
        """The record without its key section."""
        return f"OCMF|{self.payload}|{self.signature_text}"

    @property
    def signature(self):
        return json.loads(self.signature_text)

    @property
    def algorithm(self):
        return self.signature.get("SA", DEFAULT_SA)

    def fields(self):
        """The payload as JSON, numbers as Decimal (exactly as written)."""
        return json.loads(self.payload, parse_float=Decimal)

    def readings(self):
        """RD with omitted fields filled in from the reading before (OCMF "Readings")."""
        out, previous = [], {}
        for reading in self.fields().get("RD", []):
            previous = {key: reading.get(key, previous.get(key)) for key in READING_KEYS}
            out.append(previous)
        return out


def _shown(value):
    """A field's value for a message: short, in JSON."""
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def payload_problems(payload):
    """Each field of the payload this tool reads that has the wrong type, as `field: reason` (OCMF: the payload
    is an object; RD a list of readings; in a reading RV a number, TM, TX, RI, RU, RT, EF, ST strings)."""
    if not isinstance(payload, dict):
        return [f"payload: must be an object, not {_shown(payload)}"]
    readings = payload.get("RD", [])
    if not isinstance(readings, list):
        return [f"RD: must be a list of readings, not {_shown(readings)}"]
    problems = []
    for i, reading in enumerate(readings):
        if not isinstance(reading, dict):
            problems.append(f"RD[{i}]: must be an object, not {_shown(reading)}")
            continue
        for key in READING_KEYS:
            value = reading.get(key)
            if value is None:
                continue
            if key == "RV" and type(value) not in (int, Decimal):  # NaN and Infinity parse as float
                problems.append(f"RD[{i}].RV: must be a finite number, not {_shown(value)}")
            elif key != "RV" and not isinstance(value, str):
                problems.append(f"RD[{i}].{key}: must be a string, not {_shown(value)}")
    return problems


def curve(algorithm):
    """The elliptic curve an SA value names, e.g. ECDSA-secp256r1-SHA256."""
    parts = algorithm.split("-")
    if len(parts) != 3 or parts[0] != "ECDSA" or parts[1] not in CURVES or parts[2] not in HASHES:
        raise OcmfError(f"signature algorithm {algorithm!r} is not one OCMF names")
    return CURVES[parts[1]]()


def der_key(text, algorithm=DEFAULT_SA):
    """DER SubjectPublicKeyInfo from hex or base64: DER as it is, a raw 04||X||Y point on SA's curve."""
    text = text.strip()
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        try:
            raw = base64.b64decode(text, validate=True)
        except binascii.Error as e:
            raise OcmfError("public key is neither hex nor base64") from e
    try:
        if raw[:1] == b"\x04":
            key = ec.EllipticCurvePublicKey.from_encoded_point(curve(algorithm), raw)
        else:
            key = serialization.load_der_public_key(raw)
    except (ValueError, UnsupportedAlgorithm) as e:
        raise OcmfError(f"public key cannot be read: {e}") from e
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise OcmfError("public key is not an elliptic-curve key")
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def verify(record, key):
    """(valid, how) for record against key (DER bytes); how names the checker and why pyocmf could not."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # spec deviations pyocmf warns about do not decide the signature
            return bool(OCMF.from_string(record.text).verify_signature(key.hex())), "pyocmf"
    except (PyOCMFError, ValueError, TypeError) as e:  # TypeError: pyocmf on a field of a type it does not expect
        why = str(e).splitlines()[0]
    return _verify_directly(record, key), f"cryptography, as pyocmf could not ({why})"


def _verify_directly(record, key):
    """ECDSA over the payload bytes with the hash SA names, the signature DER in SE's encoding."""
    public = serialization.load_der_public_key(key)
    wanted = curve(record.algorithm)
    if public.curve.name != wanted.name:
        raise OcmfError(f"the key is on {public.curve.name}, the record says {record.algorithm}")
    sd, encoding = record.signature["SD"], record.signature.get("SE", "hex")
    try:
        signature = base64.b64decode(sd, validate=True) if encoding == "base64" else bytes.fromhex(sd)
    except ValueError as e:
        raise OcmfError(f"SD is not {encoding}") from e
    digest = HASHES[record.algorithm.rsplit("-", 1)[1]]()
    try:
        public.verify(signature, record.payload.encode(), ec.ECDSA(digest))
    except InvalidSignature:
        return False
    return True
