"""Runtime control by signal: SIGUSR1 toggles silence, SIGUSR2 cuts the meters' power for a moment,
SIGTERM and SIGINT ask the loop to stop."""

import os
import signal

SIGNALS = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM, signal.SIGINT)


class Control:
    """Signal handlers for the life of a with-block, and a descriptor readable after each signal."""

    def __init__(self, faults, power_cut):
        self._faults = faults
        self._power_cut = power_cut  # called for SIGUSR2
        self.stop = False
        self._old = {}

    def __enter__(self):
        self.wake, self._wake_w = os.pipe()
        os.set_blocking(self.wake, False)
        os.set_blocking(self._wake_w, False)
        self._old_fd = signal.set_wakeup_fd(self._wake_w)
        self._old = {sig: signal.signal(sig, self._on_signal) for sig in SIGNALS}
        return self

    def __exit__(self, *exc):
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(self._old_fd)
        os.close(self.wake)
        os.close(self._wake_w)

    def drain(self):
        """Empty the wake-up descriptor after select saw it readable."""
        os.read(self.wake, 256)

    def _on_signal(self, sig, _frame):
        """SIGUSR1 toggles silence, SIGUSR2 cuts the power; SIGTERM and SIGINT end the loop."""
        if sig == signal.SIGUSR1:
            self._faults.toggle()
        elif sig == signal.SIGUSR2:
            self._power_cut()
        else:
            self.stop = True
