"""The fewest-wire-time set of register reads covering a profile's fields, computed once at start-up."""

from micropython import const

_REQUEST_BYTES = const(8)  # slave, fc, addr(2), count(2), crc(2)
_RESPONSE_BYTES = const(5)  # slave, fc, byte count, crc(2); plus 2 per register
_TURNAROUND_US = const(1000)  # a slave's typical reply latency; only the ranking depends on it


def char_bits(parity):
    """Bits per character: start + 8 data + stop, plus parity or a second stop bit."""
    return 10 if parity == "N" else 11


def request_cost_us(count, baud, bits):
    """Wire time of one read of count registers: both frames, two t3.5 silences, turnaround."""
    chars = _REQUEST_BYTES + _RESPONSE_BYTES + 2 * count
    # Modbus over serial line v1.02, 2.5.1.1: t3.5 is 1750 us above 19200 baud
    t35 = 38500000 // baud if baud <= 19200 else 1750  # 3.5 chars of 11 bits
    return chars * bits * 1000000 // baud + 2 * t35 + _TURNAROUND_US


def _crosses_hole(start, end, holes):
    for lo, hi in holes:
        if start <= hi and lo < end:
            return True
    return False


def plan(spans, max_read, holes, baud, bits):
    """Return [(addr, count)] covering every (start, end) span at the least total wire time.

    Spans are merged when they overlap; reads then cover runs of consecutive spans, bridging the
    registers in between, as long as a read stays within max_read and never touches a hole.
    An optimal plan always reads contiguous runs, so a DP over the sorted spans is exact.
    """
    merged = []
    for s, e in sorted(spans):
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    n = len(merged)
    best = [0] + [None] * n  # best[j]: cost of covering merged[:j]
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        end = merged[j - 1][1]
        for i in range(j - 1, -1, -1):
            start = merged[i][0]
            if end - start > max_read or _crosses_hole(start, end, holes):
                break
            cost = best[i] + request_cost_us(end - start, baud, bits)
            if best[j] is None or cost < best[j]:
                best[j] = cost
                cut[j] = i
        if best[j] is None:
            raise ValueError("span %d..%d cannot be read" % (merged[j - 1][0], end))
    reads = []
    j = n
    while j:
        i = cut[j]
        reads.append((merged[i][0], merged[j - 1][1] - merged[i][0]))
        j = i
    reads.reverse()
    return reads
