"""One meter's register map: profile fields encoded as words, holes, and the read/write rules."""

from ..codec import MAX_READ, WIDTHS, decode_exact, encode

# Modbus Application Protocol v1.1b3, 6.3/6.4 (the read state diagrams) and 7: a quantity outside 1..125
# is exception 03 ILLEGAL DATA VALUE, a start address + quantity the slave does not have is 02 ILLEGAL DATA
# ADDRESS. Real meters refuse reads over their own limit with 03, 02 (openWB/core PR #2890: an SDM) or
# silence (esphome/issues#4627: an SDM72DM), so over_max picks the answer.
ILLEGAL_ADDRESS = 2
ILLEGAL_VALUE = 3
SILENCE = None  # read(): no reply at all
EXP_REG_VALUE = -1  # power of ten served in every exp_reg, so a firmware that ignores exp_reg is caught


class RegisterTable:
    """Registers 0..65535 (0 unless written), with the profile's holes answering ILLEGAL ADDRESS."""

    def __init__(self, profile, max_read=None, holes=(), over_max="exception"):
        self.profile = profile
        self._order = profile["word_order"]
        self._holes = [tuple(hole) for hole in [*profile.get("holes", []), *holes]]
        self.max_read = max_read or profile.get("max_read", MAX_READ)
        self._over_max = ILLEGAL_VALUE if over_max == "exception" else SILENCE
        self._words = {}
        self.on_write = None  # on_write(address, words) after each write: a signing meter's commands

    def load(self, values):
        """Encode each profile field's physical value (path -> number) into the registers."""
        for path, field in self.profile["fields"].items():
            if "exp_reg" in field:
                self._words[field["exp_reg"]] = encode({"type": "s16"}, EXP_REG_VALUE, self._order)[0]
                field = {**field, "exp10": field.get("exp10", 0) + EXP_REG_VALUE}
            self._put(field["reg"], encode(field, values[path], self._order))

    def truth(self):
        """Each field as the exact decimal string the served registers carry (None: no value)."""
        out = {}
        for path, field in self.profile["fields"].items():
            words = self._get(field["reg"], WIDTHS[field["type"]])
            exp_words = self._get(field["exp_reg"], 1) if "exp_reg" in field else None
            value = decode_exact(field, words, self._order, exp_words)
            out[path] = None if value is None else format(value, "f")
        return out

    def read(self, address, count):
        """The words at address.. (count of them), a Modbus exception code, or SILENCE."""
        if not 1 <= count <= MAX_READ:
            return ILLEGAL_VALUE
        if count > self.max_read:
            return self._over_max
        if self._refused(address, count):
            return ILLEGAL_ADDRESS
        return self._get(address, count)

    def write(self, address, words):
        """Store words from address on; 0, or a Modbus exception code."""
        if self._refused(address, len(words)):
            return ILLEGAL_ADDRESS
        self._put(address, words)
        if self.on_write:
            self.on_write(address, words)
        return 0

    def _refused(self, address, count):
        """Whether address..address+count-1 leaves the address space or touches a hole."""
        last = address + count - 1
        return last > 0xFFFF or any(first <= last and address <= end for first, end in self._holes)

    def _get(self, address, count):
        """count words from address."""
        return [self._words.get(address + i, 0) for i in range(count)]

    def _put(self, address, words):
        """Store words from address on."""
        for i, word in enumerate(words):
            self._words[address + i] = word
