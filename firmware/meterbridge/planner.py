"""The least-wire-time set of register reads covering a profile's fields, computed once at start-up."""

from micropython import const

_REQUEST_BYTES = const(8)  # slave, fc, addr(2), count(2), crc(2)
_RESPONSE_BYTES = const(5)  # slave, fc, byte count, crc(2); plus 2 per register
# A meter's reply latency after the request's t3.5, which every extra request pays. Reported values
# span 20..100 ms: ABB REU 610 manual 5.1.15.1 "approximately 20 and 100 ms" depending on the amount
# read; ioBroker.modbus #262, a Carlo Gavazzi EM24 "typical 20-60ms"; esphome/esphome PR #8032, an
# SDM630 at 9600 baud starting its 80-register reply 112 ms after the request was written. The middle
# of that range bounds a wrong bridging decision's cost at ~40 ms whatever the real meter does.
_TURNAROUND_US = const(60000)


def char_bits(parity):
    """Bits per character: start + 8 data + stop, plus parity or a second stop bit."""
    return 10 if parity == "N" else 11


def _silence_us(baud):
    """Modbus over serial line v1.02, 2.5.1.1: t3.5 of 11-bit characters, 1750 us above 19200 baud."""
    return 38500000 // baud if baud <= 19200 else 1750


def request_cost_us(count, baud, bits):
    """Wire time of one read of count registers: both frames, two t3.5 silences, the turnaround."""
    chars = _REQUEST_BYTES + _RESPONSE_BYTES + 2 * count
    return chars * bits * 1000000 // baud + 2 * _silence_us(baud) + _TURNAROUND_US


def _crosses_hole(start, end, holes):
    for lo, hi in holes:
        if start <= hi and lo < end:
            return True
    return False


def _merge(spans):
    """Starts and ends of the sorted spans, overlapping ones joined: a field is never split between reads."""
    starts, ends = [], []  # two lists of small ints: no object per span in RAM
    for s, e in sorted(spans):
        if ends and s < ends[-1]:
            ends[-1] = max(ends[-1], e)
        else:
            starts.append(s)
            ends.append(e)
    return starts, ends


def plan(spans, max_read, holes, baud, bits):
    """[(addr, count)] reading every (start, end) span whole, within max_read, off the holes, fastest.

    Shortest read first: a meter that does not answer costs the least wire time before its timeout.

    Exact when spans are disjoint or nested, as fields and exp_regs are: an optimal plan's reads can be
    trimmed to span boundaries and take consecutive runs of the sorted spans (a read covering spans a
    and c also covers b), so a DP over run ends finds it. Partly overlapping spans are read together.
    """
    starts, ends = _merge(spans)
    n = len(starts)
    best = [0] + [None] * n  # best[j]: least cost of reading the first j (merged) spans
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        end = ends[j - 1]
        for i in range(j - 1, -1, -1):
            start = starts[i]
            if end - start > max_read or _crosses_hole(start, end, holes):
                break  # reaching further back only widens the read
            cost = best[i] + request_cost_us(end - start, baud, bits)
            if best[j] is None or cost < best[j]:
                best[j] = cost
                cut[j] = i
        if best[j] is None:
            raise ValueError("registers %d..%d cannot be read" % (starts[j - 1], end - 1))
    reads = []
    j = n
    while j:
        i = cut[j]
        reads.append((starts[i], ends[j - 1] - starts[i]))
        j = i
    reads.sort(key=lambda r: (r[1], r[0]))
    return reads
