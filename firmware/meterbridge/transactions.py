"""Start/stop transactions: a meter that cannot sign is tracked in the journal and answered NOT_SUPPORTED.

NOT_SUPPORTED is what EVerest's own drivers answer for meters without OCMF: EvseManager then
charges on without signed values, where UNEXPECTED_ERROR would block the session. A meter whose
profile has an "ocmf" section gets ocmf.session's SignedTransactions instead, imported only then.
"""

import gc

from .everest_link import reply

_OK = "OK"
_NOT_SUPPORTED = "NOT_SUPPORTED"


class Transactions:
    """Transaction bookkeeping of one meter that cannot sign."""

    signs = False
    key_due = False

    @staticmethod
    def for_meter(journal, profile, clock, master, slave):
        """The transactions of a meter: signed ones when its profile has an "ocmf" section."""
        if profile.ocmf is None:
            return Transactions(journal, profile.name, clock)
        gc.collect()  # room for the signing code to come in
        from .ocmf.session import SignedTransactions

        return SignedTransactions(journal, clock, profile.ocmf, master, slave)

    def __init__(self, journal, profile_name, clock):
        self.journal = journal
        self._why = "meter %s cannot sign; charging may continue without signed values" % profile_name
        self._clock = clock

    async def fetch_key(self):
        """A meter that cannot sign has no OCMF public key."""
        return False

    async def start(self, req):
        tid = req["transaction_id"]
        old = self.journal.open
        note = ""
        if old and old["tid"] != tid:
            note = "; transaction %s was still open and is closed" % old["tid"]
        self.journal.save({"tid": tid, "evse_id": req["evse_id"], "t": self._clock()})
        return reply(_NOT_SUPPORTED, self._why + note)

    async def stop(self, tid):
        old = self.journal.open
        if tid == "":
            if old:
                self.journal.save(None)
            return reply(_OK)
        if not old or old["tid"] != tid:
            return reply(_NOT_SUPPORTED, self._why + "; no open transaction %s" % tid)
        self.journal.save(None)
        return reply(_NOT_SUPPORTED, self._why)
