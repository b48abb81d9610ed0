"""Modbus RTU framing: CRC-16, request encoding and response checking. Pure, no I/O, no timing."""

import struct

from micropython import const

FC_READ_HOLDING = const(3)
FC_READ_INPUT = const(4)
_FC_WRITE_SINGLE = const(6)
_FC_WRITE_MULTIPLE = const(16)
MAX_READ = const(125)  # Modbus Application Protocol v1.1b3, 6.3/6.4: 1..125 registers
_MAX_WRITE = const(123)  # 6.12: 1..123 registers


# CRC of each 4-bit value, little-endian: 32 bytes that stay in flash, where a byte-wise table would take
# 512 bytes of RAM
_NIBBLES = const(b"\x00\x00\x01\xcc\x01\xd8\x00\x14\x01\xf0\x00\x3c\x00\x28\x01\xe4"
                 b"\x01\xa0\x00\x6c\x00\x78\x01\xb4\x00\x50\x01\x9c\x01\x88\x00\x44")


def crc16(buf, n):
    """CRC-16/MODBUS of buf[:n] (poly 0xA001 reflected, init 0xFFFF), four bits a step."""
    c = 0xFFFF
    t = _NIBBLES
    for i in range(n):
        c ^= buf[i]
        k = (c & 15) << 1
        c = (c >> 4) ^ t[k] ^ (t[k + 1] << 8)
        k = (c & 15) << 1
        c = (c >> 4) ^ t[k] ^ (t[k + 1] << 8)
    return c


# Kinds of bus failure, in meter.ERRORS' order. One exception class carries its kind as a small int: a class
# per kind costs about 200 bytes of RAM each, even with the code in ROM.
TIMEOUT = const(0)  # no (complete) response within the timeout
CRC = const(1)  # a response whose CRC does not match
EXCEPTION = const(2)  # the slave answered with an exception code (ModbusError.code)
GARBAGE = const(3)  # a response from the wrong slave or function, or of the wrong length
BYTE_COUNT = const(4)  # a well-formed response (valid CRC) that does not carry what was asked: byte count or echo


class ModbusError(Exception):
    """Every bus failure: kind says which (TIMEOUT ... BYTE_COUNT), code is an exception reply's code."""

    def __init__(self, kind, message, code=0):
        super().__init__(message)
        self.kind = kind
        self.code = code


def _finish(buf, n):
    c = crc16(buf, n)
    buf[n] = c & 0xFF
    buf[n + 1] = c >> 8
    return n + 2


def encode_read(buf, slave, fc, addr, count):
    """Write a read request for count registers at addr into buf; return its length."""
    struct.pack_into(">BBHH", buf, 0, slave, fc, addr, count)  # Modbus Application Protocol v1.1b3, 4.2: big-endian
    return _finish(buf, 6)


def encode_write(buf, slave, addr, words):
    """Write an FC6 (one word) or FC16 request into buf; return its length."""
    if len(words) == 1:
        struct.pack_into(">BBHH", buf, 0, slave, _FC_WRITE_SINGLE, addr, words[0])
        return _finish(buf, 6)
    struct.pack_into(">BBHHB", buf, 0, slave, _FC_WRITE_MULTIPLE, addr, len(words), 2 * len(words))
    for i, w in enumerate(words):
        struct.pack_into(">H", buf, 7 + 2 * i, w)
    return _finish(buf, 7 + 2 * len(words))


def expected_length(req):
    """Length of the normal response to request req (a read or a write)."""
    if req[1] in (FC_READ_HOLDING, FC_READ_INPUT):
        return 5 + 2 * ((req[4] << 8) | req[5])
    return 8


def whole(resp, n):
    """Whether resp[:n] ends in its valid CRC: a frame, if not the one expected."""
    return n >= 5 and crc16(resp, n - 2) == resp[n - 2] | (resp[n - 1] << 8)


def check_response(req, resp, n):
    """Validate resp[:n] against req; raise on exception replies, CRC or framing faults.

    n may be 5 for an exception reply (slave, fc|0x80, code, crc). Leading garbage is the
    master's business: it resynchronises on the slave address before calling this.
    A read reply must carry a byte count of twice the registers asked for, a write reply must echo
    the address and value or count (Modbus Application Protocol v1.1b3, 6.3, 6.4, 6.6, 6.12).
    """
    if n < 5:
        raise ModbusError(TIMEOUT, "short response (%d bytes)" % n)
    if not whole(resp, n):
        raise ModbusError(CRC, "CRC mismatch")
    if resp[0] != req[0]:
        raise ModbusError(GARBAGE, "reply from slave %d" % resp[0])
    if resp[1] == req[1] | 0x80:
        raise ModbusError(EXCEPTION, "exception code %d" % resp[2], resp[2])
    if resp[1] != req[1]:
        raise ModbusError(GARBAGE, "unexpected function %d" % resp[1])
    want = expected_length(req)
    if req[1] in (FC_READ_HOLDING, FC_READ_INPUT):
        if resp[2] != want - 5 or n != want:
            raise ModbusError(BYTE_COUNT, "byte count %d in a %d-byte reply, %d asked for" % (resp[2], n, want - 5))
        return
    for i in range(2, 6):
        if n != want or resp[i] != req[i]:
            raise ModbusError(BYTE_COUNT, "write reply does not echo the request")
