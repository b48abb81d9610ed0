"""Host toolkit for the meterbridge firmware."""
