"""The Modbus application layer of a simulated meter: a request PDU in, a response PDU out."""

from pymodbus.pdu import ExceptionResponse
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersResponse,
    ReadInputRegistersResponse,
    WriteMultipleRegistersResponse,
    WriteSingleRegisterResponse,
)

from .table import ILLEGAL_VALUE

ILLEGAL_FUNCTION = 1
MAX_WRITE = 123
_READS = {3: ReadHoldingRegistersResponse, 4: ReadInputRegistersResponse}


def respond(table, fc, request):
    """Apply request (None: pymodbus rejected its fields, e.g. a count over 125) to table; the reply PDU,
    or None for a read the meter leaves unanswered."""
    if fc not in (3, 4, 6, 16):
        return ExceptionResponse(fc, ILLEGAL_FUNCTION)
    if request is None:
        return ExceptionResponse(fc, ILLEGAL_VALUE)
    if fc in _READS:
        words = table.read(request.address, request.count)
        if words is None:
            return None
        return ExceptionResponse(fc, words) if isinstance(words, int) else _READS[fc](registers=words)
    longest = min(MAX_WRITE, table.max_read)  # a meter's block limit holds for writes too (Iskra: pyiskra's 120)
    if fc == 16 and not (1 <= request.count <= longest and request.byte_count == 2 * request.count):
        return ExceptionResponse(fc, ILLEGAL_VALUE)
    code = table.write(request.address, list(request.registers))
    if code:
        return ExceptionResponse(fc, code)
    if fc == 6:
        return WriteSingleRegisterResponse(address=request.address, registers=request.registers)
    return WriteMultipleRegistersResponse(address=request.address, count=request.count)
