"""The transaction journal of one meter on flash: a small JSON file, replaced atomically.

Storage.write puts the new state in a new file and renames it over the old one, so a power cut
at any instant leaves either the old or the new state. An unreadable file is kept aside, never
silently replaced by an empty state. Format (v 2):
    {"v": 2, "seq": <writes so far>, "open": <transaction> | null, "last": <transaction id> | null}
A transaction is {"tid", "evse_id", "t": epoch ms | null}, for a signing meter also "phase"
(starting, running, stopping) and "meta" (the identification given to the meter). "last" names the
transaction whose signed record the meter still holds after its stop.
"""

import json

from .log import ERROR, log


def _valid(doc):
    """Whether a parsed journal has the fields and types of the format above."""
    if not isinstance(doc, dict) or "open" not in doc or type(doc.get("seq")) is not int:
        return False
    tx, last = doc.get("open"), doc.get("last")
    return (tx is None or isinstance(tx, dict) and isinstance(tx.get("tid"), str)) and (
        last is None or isinstance(last, str))


class Journal:
    """The open transaction of one meter (or None), the last one stopped, and a counter of journal writes."""

    def __init__(self, storage, module_id):
        self._storage = storage
        self._name = "tx-" + module_id + ".json"
        self.open = None
        self.last = None
        self.seq = 0
        raw = storage.read(self._name)
        if raw is None:
            return
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeError):
            doc = None
        if not _valid(doc):
            log(ERROR, "journal", self._name, "unreadable; kept as .bad, starting empty")
            storage.write(self._name + ".bad", raw)
            return
        self.open, self.last, self.seq = doc["open"], doc.get("last"), doc["seq"]

    def save(self, open_tx, last=None):
        """Record open_tx (a dict) or None as the open transaction, and last as the one just stopped."""
        self.seq += 1
        self._storage.write(self._name, json.dumps({"v": 2, "seq": self.seq, "open": open_tx, "last": last}))
        self.open = open_tx
        self.last = last
