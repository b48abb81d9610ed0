"""The transaction journal of one meter on flash: a small JSON file, replaced atomically.

Storage.write puts the new state in a new file and renames it over the old one, so a power cut
at any instant leaves either the old or the new state. An unreadable file is kept aside, never
silently replaced by an empty state.
"""

import json

from .log import ERROR, log


class Journal:
    """The open transaction of one meter (or None) and a counter of journal writes."""

    def __init__(self, storage, module_id):
        self._storage = storage
        self._name = "tx-" + module_id + ".json"
        self.open = None
        self.seq = 0
        raw = storage.read(self._name)
        if raw is None:
            return
        try:
            doc = json.loads(raw)
            self.open = doc["open"]
            self.seq = doc["seq"]
        except (ValueError, KeyError, TypeError):
            log(ERROR, "journal", self._name, "unreadable; kept as .bad, starting empty")
            storage.write(self._name + ".bad", raw)

    def save(self, open_tx):
        """Record open_tx (a dict) or None as the meter's open transaction."""
        self.seq += 1
        self._storage.write(self._name, json.dumps({"v": 1, "seq": self.seq, "open": open_tx}))
        self.open = open_tx
