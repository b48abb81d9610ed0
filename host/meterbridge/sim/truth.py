"""The truth file: a JSON line per slave whenever the values it serves change."""

import json
import time


class TruthLog:
    """Appends {"t", "slave", "values"} lines to path (or nothing without a path)."""

    def __init__(self, path):
        self._file = open(path, "a") if path else None
        self._last = {}

    def record(self, slave, values):
        """Append a line for slave unless values equal its previous line's."""
        if self._file is None or self._last.get(slave) == values:
            return
        self._last[slave] = values
        self._file.write(json.dumps({"t": time.time(), "slave": slave, "values": values}) + "\n")
        self._file.flush()

    def close(self):
        """Close the file."""
        if self._file is not None:
            self._file.close()
