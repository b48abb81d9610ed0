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

from .log import ERROR, INFO, log


def _valid(doc):
    """Whether a parsed journal has every field of the format above, each of its type."""
    if not isinstance(doc, dict) or "open" not in doc or type(doc.get("seq")) is not int:
        return False
    tx, last = doc["open"], doc.get("last")
    if last is not None and not isinstance(last, str):
        return False
    return tx is None or (isinstance(tx, dict) and isinstance(tx.get("tid"), str)
                          and isinstance(tx.get("evse_id"), str) and (tx.get("t") is None or type(tx["t"]) is int)
                          and tx.get("phase") in (None, "starting", "running", "stopping")
                          and isinstance(tx.get("meta", ""), str))


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
            log(INFO, "journal", self._name, "not found: no open transaction")
            return
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeError):
            doc = None
        if not _valid(doc):
            log(ERROR, "journal", self._name, "unreadable; kept as .bad, starting empty")
            storage.write(self._name + ".bad", raw)  # when storage fails, it logs why
            return
        self.open, self.last, self.seq = doc["open"], doc.get("last"), doc["seq"]

    def save(self, open_tx, last=None):
        """Record open_tx (a dict) or None as the open transaction, and last as the one just stopped.

        Returns None once it is on storage, else why not; the journal holds the new state either way, and
        the next save that works writes it whole.
        """
        self.seq += 1
        self.open = open_tx
        self.last = last
        return self._storage.write(self._name, json.dumps({"v": 2, "seq": self.seq, "open": open_tx, "last": last}))
