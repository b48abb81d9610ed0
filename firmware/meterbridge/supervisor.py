"""Feeds the watchdog only while every task makes progress; names the task that stalled."""

import asyncio
import time

from micropython import const

from .log import ERROR, log

_CHECK_MS = const(500)


class Supervisor:
    """Tasks call beat(name) as they make progress; a late beat stops the feeding."""

    def __init__(self, watchdog):
        self._wdt = watchdog
        self._deadline = {}
        self._last = {}
        self.stalled = None

    def watch(self, name, deadline_ms):
        """Expect beat(name) at least every deadline_ms from now on."""
        self._deadline[name] = deadline_ms
        self._last[name] = time.ticks_ms()

    def beat(self, name):
        self._last[name] = time.ticks_ms()

    def _late(self, now):
        for name, deadline in self._deadline.items():
            if time.ticks_diff(now, self._last[name]) > deadline:
                return name
        return None

    async def run(self):
        while True:
            late = self._late(time.ticks_ms())
            if late is None:
                self._wdt.feed()
            elif self.stalled is None:
                self.stalled = late
                log(ERROR, "watchdog: task %s made no progress for %d ms; no longer feeding" % (
                    late, time.ticks_diff(time.ticks_ms(), self._last[late])))
            await asyncio.sleep_ms(_CHECK_MS)
