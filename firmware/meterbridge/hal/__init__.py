"""Hardware abstraction: the one place that knows which platform runs the firmware."""

import sys

if sys.platform == "esp32":
    from .esp32 import *  # noqa: F403
else:
    from .unix import *  # noqa: F403
