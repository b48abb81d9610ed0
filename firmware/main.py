"""Entry point on the board and under the unix port: `micropython main.py config.json`."""

from meterbridge import hal
from meterbridge.start import main

try:
    main()  # returns only when stopped with Ctrl-C; a crash propagates, and the watchdog resets the board
except KeyboardInterrupt:  # Ctrl-C during start-up
    pass
hal.stopped()
