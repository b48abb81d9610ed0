"""One meter's register map: profile fields encoded as words, holes, and the read/write rules."""

from ..codec import MAX_READ, WIDTHS, decode_exact, encode

ILLEGAL_ADDRESS = 2
ILLEGAL_VALUE = 3
EXP_REG_VALUE = -1  # power of ten served in every exp_reg, so a firmware that ignores exp_reg is caught


class RegisterTable:
    """Registers 0..65535 (0 unless written), with the profile's holes answering ILLEGAL ADDRESS."""

    def __init__(self, profile):
        self.profile = profile
        self._order = profile["word_order"]
        self._holes = [tuple(hole) for hole in profile.get("holes", [])]
        self.max_read = profile.get("max_read", MAX_READ)
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
        """The words at address.. (count of them), or a Modbus exception code."""
        if not 1 <= count <= self.max_read:
            return ILLEGAL_VALUE
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
