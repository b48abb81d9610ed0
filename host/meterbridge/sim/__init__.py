"""Simulated Modbus RTU meters: installation model, register tables, RTU framing, wire-timed links."""
