"""Start/stop transactions for a meter that cannot sign: tracked in the journal, answered NOT_SUPPORTED.

NOT_SUPPORTED is what EVerest's own drivers answer for meters without OCMF: EvseManager then
charges on without signed values, where UNEXPECTED_ERROR would block the session.
"""

from .everest_link import reply

_OK = "OK"
_NOT_SUPPORTED = "NOT_SUPPORTED"


class Transactions:
    """Transaction bookkeeping of one meter."""

    def __init__(self, journal, profile_name, clock):
        self.journal = journal
        self._why = "meter %s cannot sign; charging may continue without signed values" % profile_name
        self._clock = clock

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
