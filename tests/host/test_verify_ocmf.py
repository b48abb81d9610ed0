"""`meterbridge verify-ocmf`: records signed here with P-256 and brainpoolP384r1, good, tampered and odd."""

import base64
import io
import json

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from meterbridge.main import main

PAYLOAD = ('{"FV":"1.0","PG":"T7","MV":"Iskra","MM":"WM3M4C","MS":"SN123","IS":true,"IF":["RFID_PLAIN"],'
           '"IT":"ISO14443","ID":"04A2B3C4D5E680","CT":"EVSEID","CI":"DE*PNX*E12345*1","RD":['
           '{"TM":"2026-11-26T10:00:00,000+0000 S","TX":"B","RV":1234.5678125,"RI":"1-b:1.8.0","RU":"kWh","ST":"G"},'
           '{"TM":"2026-11-26T11:00:00,000+0000 S","TX":"E","RV":1256.78,"ST":"G"}]}')


def spki(key):
    return key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).hex().upper()


def raw_point(key):
    return key.public_key().public_bytes(serialization.Encoding.X962,
                                         serialization.PublicFormat.UncompressedPoint).hex().upper()


def record(key, payload=PAYLOAD, sa=None, encoding="hex"):
    """OCMF|payload|signature, signed here over the payload bytes."""
    der = key.sign(payload.encode(), ec.ECDSA(hashes.SHA256()))
    sig = {"SA": sa} if sa else {}
    sig.update({"SE": encoding} if encoding != "hex" else {})
    sig["SD"] = base64.b64encode(der).decode() if encoding == "base64" else der.hex().upper()
    return f"OCMF|{payload}|{json.dumps(sig, separators=(',', ':'))}"


@pytest.fixture(scope="module")
def p256():
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def bp384():
    return ec.generate_private_key(ec.BrainpoolP384R1())


def verify(capsys, *args):
    code = main(["verify-ocmf", *args])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_a_valid_record_and_its_readings(capsys, p256):
    code, out = verify(capsys, record(p256), "--key", spki(p256))
    assert code == 0, out
    assert "signature: VALID (ECDSA-secp256r1-SHA256, checked by pyocmf)" in out
    assert "Iskra WM3M4C, serial SN123, T7" in out and "ISO14443 04A2B3C4D5E680" in out
    lines = [line.split() for line in out.splitlines() if line.startswith("  B ") or line.startswith("  E ")]
    assert [(ln[0], ln[3], ln[4], ln[5]) for ln in lines] == [("B", "1234.5678125", "kWh", "G"),
                                                              ("E", "1256.78", "kWh", "G")], "RU carried over"
    assert "energy: 22.2121875 kWh" in out


def test_a_tampered_record_fails(capsys, p256):
    forged = record(p256).replace('"RV":1256.78', '"RV":1256.79')
    code, out = verify(capsys, forged, "--key", spki(p256))
    assert code == 1 and "signature: INVALID" in out


def test_another_key_fails(capsys, p256):
    code, out = verify(capsys, record(p256), "--key", spki(ec.generate_private_key(ec.SECP256R1())))
    assert code == 1 and "INVALID" in out


def test_a_stop_reply_file_with_its_own_key(capsys, tmp_path, p256):
    reply = {"status": "OK", "signed_meter_value": {"signed_meter_data": record(p256), "signing_method": "",
                                                     "encoding_method": "OCMF", "public_key": spki(p256)}}
    path = tmp_path / "reply.json"
    path.write_text(json.dumps(reply))
    code, out = verify(capsys, str(path))
    assert code == 0 and "VALID" in out and "shows integrity only" in out


def test_a_record_file_a_key_file_and_stdin(capsys, tmp_path, p256, monkeypatch):
    (tmp_path / "r.ocmf").write_text(record(p256) + "\n")
    (tmp_path / "k.hex").write_text(spki(p256) + "\n")
    assert verify(capsys, str(tmp_path / "r.ocmf"), "--key", str(tmp_path / "k.hex"))[0] == 0
    monkeypatch.setattr("sys.stdin", io.StringIO(record(p256)))
    assert verify(capsys, "-", "--key", spki(p256))[0] == 0


def test_a_raw_point_key_is_converted(capsys, p256):
    code, out = verify(capsys, record(p256), "--key", raw_point(p256))
    assert code == 0, out
    assert f"key: {spki(p256)}" in out


def test_base64_signature_and_key(capsys, p256):
    key = base64.b64encode(bytes.fromhex(spki(p256))).decode()
    assert verify(capsys, record(p256, encoding="base64"), "--key", key)[0] == 0


@pytest.mark.parametrize("sa", ["ECDSA-brainpoolP384r1-SHA256", "ECDSA-brainpool384r1-SHA256"])
def test_brainpool_p384_is_checked_by_cryptography(capsys, bp384, sa):
    code, out = verify(capsys, record(bp384, sa=sa), "--key", spki(bp384))
    assert code == 0, out
    assert "checked by cryptography, as pyocmf could not" in out
    forged = record(bp384, sa=sa).replace("T7", "T8")
    assert verify(capsys, forged, "--key", spki(bp384))[0] == 1
    assert verify(capsys, record(bp384, sa=sa), "--key", raw_point(bp384))[0] == 0, "raw point on SA's curve"


def test_the_key_must_be_on_the_records_curve(capsys, p256, bp384):
    code, out = verify(capsys, record(bp384, sa="ECDSA-brainpoolP384r1-SHA256"), "--key", spki(p256))
    assert code == 1 and "the key is on secp256r1" in out


@pytest.mark.parametrize("text, reason", [
    ("OCMF|{}", "not an OCMF record"),
    ('OCMF|{"a":1}|{"SA":"x"}', 'has no "SD"'),
    ('{"status":"OK"}', "no signed_meter_value"),
    ('{"signed_meter_data":"x","encoding_method":"plain"}', "not OCMF"),
])
def test_unusable_input_names_the_reason(capsys, p256, text, reason):
    code, out = verify(capsys, text, "--key", spki(p256))
    assert code == 1 and reason in out


def test_no_key_at_all(capsys, p256):
    code, out = verify(capsys, record(p256))
    assert code == 1 and "no public key" in out


def _reading(**change):
    doc = json.loads(PAYLOAD)
    doc["RD"][0].update(change)
    return json.dumps(doc, separators=(",", ":"))


@pytest.mark.parametrize("payload, reason", [
    (PAYLOAD.replace('"RD":[', '"RD":5,"X":['), "RD: must be a list of readings, not 5"),
    (PAYLOAD.replace('"RD":[', '"RD":[5,'), "RD[0]: must be an object, not 5"),
    (_reading(TM=1764151200), "RD[0].TM: must be a string, not 1764151200"),
    (_reading(RV="1234.5"), 'RD[0].RV: must be a finite number, not "1234.5"'),
    (_reading(RV=True), "RD[0].RV: must be a finite number, not true"),
    (PAYLOAD.replace('"RV":1234.5678125', '"RV":NaN'), "RD[0].RV: must be a finite number, not NaN"),
    (_reading(ST=["G"]), 'RD[0].ST: must be a string, not ["G"]'),
    ("[1]", "payload: must be an object, not [1]"),
    ('{"RD":' + "[" * 5000 + "]" * 5000 + "}", "nested too deeply"),
])
def test_a_malformed_record_names_the_field_and_what_is_wrong(capsys, p256, payload, reason):
    """Signed, so only the fields' types are wrong: each gave a traceback (issue 15)."""
    code, out = verify(capsys, record(p256, payload), "--key", spki(p256))
    assert code == 1 and reason in out and "Traceback" not in out, out


def test_a_malformed_signature_section_or_reply_gives_no_traceback(capsys, p256):
    code, out = verify(capsys, record(p256, sa="x").replace('"SA":"x"', '"SA":5'), "--key", spki(p256))
    assert code == 1 and "SA: must be a string, not 5" in out
    code, out = verify(capsys, '{"signed_meter_value":' + "[" * 5000 + "]" * 5000 + "}", "--key", spki(p256))
    assert code == 1 and "nested too deeply" in out
