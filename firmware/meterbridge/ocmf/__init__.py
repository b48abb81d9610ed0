"""Transactions on meters that sign OCMF themselves; imported only for a profile with an "ocmf" section.

Only this part stays in RAM: what a signing meter keeps between requests. The code that carries a request
out (session.py, and iskra.py for the meter's registers) runs a few times per charging session, so it is
loaded for one request or key read and leaves RAM after it (stages.forget's idea), instead of holding
about 12 KB of the heap for good.
"""

import gc
import sys
from array import array

from micropython import const

from ..jsonout import Writer

# The longest request, as bus transactions and waits: a start that first ends a transaction the meter still
# runs after a power failure (state, time 4, metadata up to 5, its length, command, 2 state reads past
# the settle time), then begins its own (time 4, signature format, metadata 5, length, command, 2 reads): 28;
# and the checks and reads around it (state, public key, record lengths, signature, payload up to 5): 12.
_WORST_STEPS = const(40)
_WORST_WAIT_MS = const(32000)  # two settle times of iskra.py (16 s each)
_RECORD_EXTRA = const(159)  # "OCMF|" and |{"SD":"<hex of at most 72 bytes>"} around the payload (iskra.py)
_BLOCK_WORDS = const(120)  # registers of one metadata write (iskra.py _BLOCK)
# A stop reply is written in place, from the start of the buffer the record was read into this far in (session.py):
# room for its head and the record's growth once escaped (a typical record grows by ~150 bytes), and a record up to
# ~1.4 KB once escaped. A longer one gets a buffer of its own.
_REPLY_HEAD = const(768)


class SignedTransactions:
    """Start/stop on a signing meter; replies carry its OCMF record and public key (session.py)."""

    signs = True
    # Free heap the state topic's module may not take (app.py loads it only where this much is free): a request's
    # need while it runs, about 16 KB on the 64-bit unix port (its code 11 KB, its names 2 KB the first time, what a
    # large start makes), and the state module's own, about 6 KB with its log queue; 0.7 times that on 32 bits.
    # Where the module came in with less, requests ran out of memory (test_ocmf at 116k).
    room = const(22528) if sys.maxsize >> 32 else const(15360)

    def __init__(self, journal, clock, registers, master, slave):
        self.journal = journal
        self.clock = clock
        # what iskra.Iskra is made of, per request. The buffers of a request are made here, while the heap is
        # whole: a request's code is loaded into the holes of a heap in use, where no block as large as a
        # record or a reply may be left.
        buf = bytearray(_REPLY_HEAD + _RECORD_EXTRA + 2 * (registers["public_key"] - registers["payload"]))
        self.meter = (registers, master, slave, memoryview(buf)[_REPLY_HEAD:], array("H", bytes(2 * _BLOCK_WORDS)))
        self.reply = Writer(0, buf)
        self.public_key = None  # hex DER, read once
        self.key_due = False
        self.key_failed = False  # retries are not logged again

    def worst(self):
        """(bus transactions, ms of waiting) one request may take at most."""
        return _WORST_STEPS, _WORST_WAIT_MS

    async def start(self, req):
        if isinstance(req, dict):  # the meter never takes it (README); its up to 1.5 KB go before the code comes in
            req.pop("tariff_text", None)
        return await self._run("start", req)

    async def stop(self, tid):
        return await self._run("stop", tid)

    async def fetch_key(self):
        """True once the meter's public key is known (read now if need be)."""
        return self.public_key is not None or await self._run("fetch_key")

    async def _run(self, name, *args):
        gc.collect()  # the code comes in where the last request's went
        try:
            from . import session

            return await getattr(session, name)(self, *args)
        finally:  # also after a load that ran out of memory half-way: no part of it stays
            package = sys.modules[__name__]
            for name in ("session", "iskra"):
                sys.modules.pop(__name__ + "." + name, None)
                if hasattr(package, name):
                    delattr(package, name)
