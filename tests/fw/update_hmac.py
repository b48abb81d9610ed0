"""The firmware's HMAC-SHA256 (meterbridge.update_cmd): lines `key_hex msg_hex` in, the MAC as hex out."""

import binascii
import sys

from meterbridge.update_cmd import hmac_sha256

for line in sys.stdin:
    key, msg = line.split()
    print(binascii.hexlify(hmac_sha256(binascii.unhexlify(key), binascii.unhexlify(msg))).decode())
