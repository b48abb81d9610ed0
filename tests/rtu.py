"""Modbus RTU bits the tests build frames with."""


def crc16(data):
    """Modbus CRC-16 (0xA001 reflected, start 0xFFFF); 0 over a frame that ends in its CRC."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc
