"""Start/stop transactions: a meter that cannot sign is tracked in the journal and answered NOT_SUPPORTED.

NOT_SUPPORTED is what EVerest's own drivers answer for meters without OCMF: EvseManager then
charges on without signed values, where UNEXPECTED_ERROR would block the session. A meter whose
profile has an "ocmf" section gets ocmf's SignedTransactions instead (app.py imports each only for its meters).
"""

from micropython import const

from .everest_link import reply

_OK = const("OK")
_MAX_ID = const(64)  # longer ids are answered alike but not tracked (EVerest's are UUIDs, 36 characters)
_NOT_SUPPORTED = const("NOT_SUPPORTED")


class Transactions:
    """Transaction bookkeeping of one meter that cannot sign."""

    signs = False
    key_due = False

    def __init__(self, journal, profile_name, clock):
        self.journal = journal
        self._why = "meter %s cannot sign; charging may continue without signed values" % profile_name
        self._clock = clock

    async def fetch_key(self):
        """A meter that cannot sign has no OCMF public key."""
        return False

    def start(self, req):
        """NOT_SUPPORTED whatever the payload holds; a usable transaction id is tracked. Answered at once.

        The same start again (a QoS 1 redelivery) answers alike and writes nothing.
        """
        tid = req.get("transaction_id") if isinstance(req, dict) else None
        old = self.journal.open
        if isinstance(tid, str) and 0 < len(tid) <= _MAX_ID and not (old and old["tid"] == tid):
            evse = req.get("evse_id")  # a transaction still open is closed by this one
            self.journal.save({"tid": tid, "evse_id": evse if isinstance(evse, str) else None, "t": self._clock()})
        return reply(_NOT_SUPPORTED, self._why)

    def stop(self, tid):
        """The stop of the open transaction, or of the last one stopped (a repeat), answers alike."""
        old = self.journal.open
        if tid == "":
            if old or self.journal.last:
                self.journal.save(None)
            return reply(_OK)
        if old and old["tid"] == tid:
            self.journal.save(None, tid)
        elif tid != self.journal.last:
            return reply(_NOT_SUPPORTED, self._why + "; no open transaction %s" % tid[:_MAX_ID])
        return reply(_NOT_SUPPORTED, self._why)
