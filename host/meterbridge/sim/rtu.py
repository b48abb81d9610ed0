"""Modbus RTU framing on pymodbus pieces: hunt request frames in received bytes, frame the replies."""

import logging

from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU

MAX_ADU = 256


class RtuFramer:
    """Request frames out of a byte stream (skipping noise and bad CRCs), reply frames out of PDUs."""

    def __init__(self):
        self._framer = FramerRTU(DecodePDU(is_server=True))
        logging.getLogger("pymodbus").setLevel(logging.ERROR)  # undecodable requests get exception 3
        self._buf = b""

    @property
    def pending(self):
        """Whether bytes of an incomplete or unrecognised frame are waiting."""
        return bool(self._buf)

    def feed(self, data):
        """Append received bytes (only the last two frames' worth are kept)."""
        self._buf = (self._buf + data)[-2 * MAX_ADU :]

    def clear(self):
        """Drop waiting bytes, as a slave does after a silent interval."""
        self._buf = b""

    def pop(self):
        """The first complete request (slave, fc, PDU or None if undecodable, frame size), or None."""
        decoder = self._framer.decoder
        for start in range(len(self._buf) - FramerRTU.MIN_SIZE + 1):
            frame = self._buf[start:]
            pdu_class = decoder.lookupPduClass(frame)
            size = pdu_class.calculateRtuFrameSize(frame) if pdu_class else 0
            if not size or size > len(frame):
                continue
            if not FramerRTU.check_CRC(frame[: size - 2], int.from_bytes(frame[size - 2 : size], "big")):
                continue
            self._buf = frame[size:]
            if frame[1] & 0x80:  # another slave's exception reply on a shared bus
                return self.pop()
            return frame[0], frame[1], decoder.decode(frame[1 : size - 2]), size
        return None

    def build(self, slave, pdu):
        """The RTU frame (address, PDU, CRC) of a reply PDU from slave."""
        pdu.dev_id = slave
        return self._framer.buildFrame(pdu)
