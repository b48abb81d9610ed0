"""A signing meter's OCMF register interface, the Iskra WM3M4C's, with a real P-256 key.

The firmware writes time and identification metadata, then the start and stop commands; the meter
makes a genuine OCMF record of the transaction: the identification it was given, begin and end
readings of the energy counter it serves (RV in kWh, exact), signed over the payload bytes. The
register layout is the profile's "ocmf" section. Like the real meter (EVerest RsIskraMeter utils.rs,
correct_signature) it pads r and s in the DER signature to 32 bytes, which the firmware must undo.
"""

import hashlib
import json
import sys
import time
from decimal import Decimal

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

IDLE, ACTIVE, AFTER_POWER_FAILURE = 0, 1, 2  # state
# Commands in the high byte of the command register (Iskra WM3M4 & WM3M4C User's Manual 6.5.8, Table 15): 'B'
# begins (idle state only); 'r' ends "with begin and end"; 'E', 'L', 'R', 'A', 'P' end too (active state only).
# Every end leaves the meter idle; 'r' signs both readings, the others the end reading alone, with the command's
# letter as its OCMF TX (end, end by loss, remote, abort, power failure).
ENDS = "ELRAP"
NOT_INITIALISED, SIGNED, BAD_TIME, BAD_COMMAND, BAD_STATE, BAD_FORMAT = 0, 15, 128, 130, 131, 252  # status
ENERGY = "energy_Wh_import.total"
GATEWAY = ("FV", "GI", "GS", "GV")  # metadata fields kept before the meter's own (order of OCMF's table)
IDENTIFICATION = ("IS", "IL", "IF", "IT", "ID", "CT", "CI")


def load_key(path=None):
    """The P-256 private key in PEM file path, or a new one; ValueError for anything else."""
    if path is None:
        return ec.generate_private_key(ec.SECP256R1())
    with open(path, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ValueError(f"{path}: not a P-256 (secp256r1) private key")
    return key


def public_hex(key):
    """The public key as hex DER SubjectPublicKeyInfo, as EVerest publishes it."""
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    return key.public_key().public_bytes(serialization.Encoding.DER, spki).hex().upper()


def padded_der(r, s):
    """DER SEQUENCE{r, s} with each integer padded to 32 bytes, the way the meter writes it."""
    body = b""
    for n in (r, s):
        raw = n.to_bytes(32, "big")
        raw = b"\x00" + raw if raw[0] & 0x80 else raw
        body += bytes((2, len(raw))) + raw
    return bytes((0x30, len(body))) + body


def _words(data):
    """Bytes as big-endian register words, an odd length padded with a zero byte."""
    data += b"\x00" * (len(data) % 2)
    return [data[i] << 8 | data[i + 1] for i in range(0, len(data), 2)]


class IskraOcmf:
    """The OCMF registers of one simulated Iskra meter (key: a P-256 private key, None for a new one)."""

    def __init__(self, table, spec, key=None, log=sys.stderr):
        if spec.get("interface") != "iskra":
            raise ValueError(f"ocmf.interface {spec.get('interface')!r}: the simulator emulates only 'iskra'")
        self._r = {name: entry["reg"] for name, entry in spec["registers"].items()}
        self._table, self._key, self._log = table, key or load_key(), log
        self.serial = "SIM" + hashlib.sha256(public_hex(self._key).encode()).hexdigest()[:8].upper()
        self.count = 0  # transactions so far: PG is T<count>
        self._clock_offset = 0.0
        self._clock_set = False  # since power-up: a stop after a power failure needs the time again
        self._begin = self._meta = None
        point = self._key.public_key().public_bytes(serialization.Encoding.X962,
                                                    serialization.PublicFormat.UncompressedPoint)
        self._put("public_key", _words(point[1:]))
        self._put("state", [IDLE])
        self._put("status", [NOT_INITIALISED])
        table.on_write = self.written

    def written(self, address, words):
        """React to a write: the clock once its low word arrives, and commands."""
        end = address + len(words)
        if address <= self._r["time"] + 1 < end:
            high, low = self._get("time", 2)
            self._clock_offset = (high << 16 | low) - time.time()
            self._clock_set = True
        if address <= self._r["command"] < end:
            self._command(words[self._r["command"] - address])

    def _command(self, command):
        state = self._get("state", 1)[0]
        letter = chr(command >> 8)  # the low byte is reserved
        if letter not in "Br" + ENDS:
            self._put("status", [BAD_COMMAND])
        elif (letter == "B") != (state == IDLE):
            self._put("status", [BAD_STATE])
        elif letter == "B":
            self._start()
        else:
            self._stop("E" if letter == "r" else letter, letter == "r")

    def power_failure(self):
        """Power off and on: a running transaction becomes "active after power failure"; clock,
        time status and metadata are gone (EVerest RsIskraMeter, after the manual's §6.6)."""
        if self._get("state", 1)[0] != IDLE:
            self._put("state", [AFTER_POWER_FAILURE])
        self._clock_set = False
        self._clock_offset = 0.0
        self._put("time_status", [0])
        self._put("metadata_length", [0])
        print("sim: OCMF power failure", file=self._log, flush=True)

    def _metadata(self):
        """The metadata object written to the meter, or None (status: bad format) when it is not one."""
        length = self._get("metadata_length", 1)[0]
        try:
            meta = json.loads(bytes(self._bytes("metadata", length)).decode())
            if not isinstance(meta, dict):
                raise ValueError("not an object")
        except ValueError as e:
            self._put("status", [BAD_FORMAT])
            print(f"sim: OCMF metadata refused ({e})", file=self._log, flush=True)
            return None
        return meta

    def _start(self):
        meta = self._metadata()
        if meta is None:
            return
        self._meta = meta
        self._begin = self._reading("B")
        self._put("state", [ACTIVE])
        self._put("status", [SIGNED])
        print(f"sim: OCMF T{self.count + 1} begins at {self._begin[1]} kWh", file=self._log, flush=True)

    def _stop(self, tx, with_begin):
        """End the transaction: sign the end reading (TX tx), and the begin reading too with_begin ('r')."""
        if self._get("state", 1)[0] == AFTER_POWER_FAILURE:
            if not self._clock_set or not self._get("metadata_length", 1)[0]:
                self._put("status", [BAD_TIME])  # time and metadata must be given again first
                return
            meta = self._metadata()
            if meta is None:
                return
            self._meta = meta
        self.count += 1
        end = self._reading(tx)
        payload = self._payload([self._begin, end] if with_begin else [end]).encode()
        der = self._key.sign(payload, ec.ECDSA(hashes.SHA256()))
        signature = padded_der(*decode_dss_signature(der))
        self._put("payload", _words(payload))
        self._put("payload_length", [len(payload)])
        self._put("signature", _words(signature))
        self._put("signature_length", [len(signature)])
        self._put("state", [IDLE])
        self._put("status", [SIGNED])
        print(f"sim: OCMF T{self.count} ends at {end[1]} kWh", file=self._log, flush=True)

    def _reading(self, tx):
        """(TX, RV text in kWh, TM) now: the served counter exactly, the meter's clock."""
        wh = self._table.truth()[ENERGY]
        return tx, format(Decimal(wh).scaleb(-3), "f"), self._tm()

    def _tm(self):
        """The meter's clock as OCMF TM, e.g. 2026-11-26T10:00:00,000+0000 S."""
        now = time.time() + self._clock_offset
        zone = self._get("zone", 1)[0]
        zone -= 0x10000 if zone & 0x8000 else 0
        t = time.gmtime(now + 60 * zone)
        sync = "S" if self._get("time_status", 1)[0] == 2 else "U"
        sign = "-" if zone < 0 else "+"
        return (time.strftime("%Y-%m-%dT%H:%M:%S", t) + f",{int(now * 1000) % 1000:03d}{sign}"
                f"{abs(zone) // 60:02d}{abs(zone) % 60:02d} {sync}")

    def _payload(self, readings):
        """The payload JSON: the metadata's gateway and identification fields, the meter's own, RD."""
        head = {k: self._meta[k] for k in GATEWAY if k in self._meta}
        head.update(PG=f"T{self.count}", MV="Iskra", MM="WM3M4C", MS=self.serial, MF="sim")
        head.update({k: self._meta[k] for k in IDENTIFICATION if k in self._meta})
        rd = ",".join(f'{{"TM":"{tm}","TX":"{tx}","RV":{rv},"RI":"1-b:1.8.0","RU":"kWh","ST":"G"}}'
                      for tx, rv, tm in readings)
        return json.dumps(head, separators=(",", ":"))[:-1] + ',"RD":[' + rd + "]}"

    def _get(self, name, count):
        return self._table.read(self._r[name], count)

    def _put(self, name, words):
        self._table.write(self._r[name], words)

    def _bytes(self, name, n):
        """n bytes from register name on, read max_read registers at a time."""
        out = bytearray()
        reg, words = self._r[name], (n + 1) // 2
        for first in range(0, words, self._table.max_read):
            for word in self._table.read(reg + first, min(self._table.max_read, words - first)):
                out += word.to_bytes(2, "big")
        return out[:n]
