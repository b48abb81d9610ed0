"""JSON text written into a preallocated buffer: no big string is ever built on a small heap."""

from micropython import const

_QUOTE = const(0x22)
_BACKSLASH = const(0x5C)
_HEX = const(b"0123456789abcdef")


def string_size(data):
    """Bytes that put_string(data) writes."""
    n = len(data) + 2
    for c in data:
        if c == _QUOTE or c == _BACKSLASH:
            n += 1
        elif c < 0x20:
            n += 5
    return n


class Writer:
    """Appends JSON text to a buffer allocated once; mv[:n] is the text so far."""

    def __init__(self, size, buf=None):
        self.buf = bytearray(size) if buf is None else buf  # or a bytearray of the caller's
        self.mv = memoryview(self.buf)
        self.n = 0

    def put(self, s):
        """Append s (str or bytes) as it is."""
        if type(s) is str:
            s = s.encode()  # small and short-lived; the big buffer is never reallocated
        n = self.n + len(s)
        self.mv[self.n : n] = s  # raises ValueError past the end: each buffer is sized for its use
        self.n = n

    def put_string(self, data):
        """Append the UTF-8 bytes data as one JSON string; UnicodeError when they are not UTF-8."""
        buf = self.buf
        n = self.n
        buf[n] = _QUOTE
        n += 1
        more = 0  # continuation bytes still due in the current UTF-8 sequence
        for c in data:
            if more:
                if c & 0xC0 != 0x80:
                    raise UnicodeError("not UTF-8")
                more -= 1
            elif c >= 0x80:
                more = 1 if c & 0xE0 == 0xC0 else 2 if c & 0xF0 == 0xE0 else 3 if c & 0xF8 == 0xF0 else -1
                if more < 0:
                    raise UnicodeError("not UTF-8")
            elif c == _QUOTE or c == _BACKSLASH:
                buf[n] = _BACKSLASH
                n += 1
            elif c < 0x20:
                buf[n : n + 6] = b"\\u00" + bytes((_HEX[c >> 4], _HEX[c & 15]))
                n += 6
                continue
            buf[n] = c
            n += 1
        if more:
            raise UnicodeError("not UTF-8")
        buf[n] = _QUOTE
        self.n = n + 1
