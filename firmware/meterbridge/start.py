"""Start-up: the stages (stages.py) check the config and profiles and make the long-lived buffers, and leave
RAM; only then is the runtime loaded and the app built, which runs until stopped.

Only this small module stays loaded while the app runs: the code of the stages is needed once, and it is
gone before the runtime's modules arrive, so the peak of start-up holds one or the other. A start that
slots.boot() put in receive mode (an update's transfer) runs receive.py instead, and none of the bridge.
"""

import gc
import sys

from . import hal, log


def main():
    if sys.argv[2:3] == ["receive"]:
        from .receive import main as receive

        receive()
        return
    from . import stages

    parts = stages.build()
    stages.forget("stages")
    del stages
    from .app import App

    try:
        app = App(*parts)  # what the app keeps it holds itself; the rest of the config goes
    except OSError as e:  # a serial device, a TLS file: the message names the field and the file
        from .stages import fatal

        fatal("start-up: " + str(e))
    del parts
    gc.collect()
    log.log(log.INFO, "started on", hal.PLATFORM, "with", len(app.modules), "meter(s); heap free", gc.mem_free())
    try:
        app.run_forever()
    except KeyboardInterrupt:  # Ctrl-C at the console (or the demo stopping): no traceback
        log.log(log.INFO, "stopped")
