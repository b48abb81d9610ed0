"""Feeds the watchdog only while every task makes progress; names the task that stalled.

Tasks are started through spawn(): one that dies of MemoryError is started again, so a full heap
costs that task its turn, never the firmware. A task that dies of anything else is left dead with
its traceback logged; it stops beating, and the watchdog resets the board.
"""

import asyncio
import gc
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
        self._starts = {}  # task -> (name, the function that makes its coroutine)
        self._due = []  # (name, start) of tasks to start again once there is memory
        self.stalled = None
        asyncio.get_event_loop().set_exception_handler(self._task_died)

    def watch(self, name, deadline_ms):
        """Expect beat(name) at least every deadline_ms from now on."""
        self._deadline[name] = deadline_ms
        self._last[name] = time.ticks_ms()

    def beat(self, name):
        self._last[name] = time.ticks_ms()

    def spawn(self, name, start):
        """Run the coroutine start() makes as a task, and again whenever it dies of MemoryError."""
        self._starts[asyncio.create_task(start())] = (name, start)

    def _task_died(self, loop, context):
        """asyncio's handler for a task that ended with an exception nobody awaited."""
        name, start = self._starts.pop(context["future"], (None, None))
        if start is None or not isinstance(context["exception"], MemoryError):
            loop.default_exception_handler(loop, context)
            return
        gc.collect()
        log(ERROR, "task", name, "ran out of memory; starting it again")
        self._due.append((name, start))
        self._restart_due()  # now if it can; else run() tries again every _CHECK_MS

    def _restart_due(self):
        """Start the tasks due for a restart, as long as memory allows."""
        while self._due:
            name, start = self._due[0]
            try:
                self.spawn(name, start)
            except MemoryError:
                gc.collect()
                return
            self._due.pop(0)

    def _late(self, now):
        for name, deadline in self._deadline.items():
            if time.ticks_diff(now, self._last[name]) > deadline:
                return name
        return None

    async def run(self):
        """Feed the watchdog while no task is late, forever."""
        while True:
            self._restart_due()
            late = self._late(time.ticks_ms())
            if late is None:
                self._wdt.feed()
            elif self.stalled is None:
                self.stalled = late
                log(ERROR, "watchdog: task", late, "made no progress for", time.ticks_diff(time.ticks_ms(),
                    self._last[late]), "ms; no longer feeding")
            await asyncio.sleep_ms(_CHECK_MS)
