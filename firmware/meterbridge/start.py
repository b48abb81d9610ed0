"""Start-up: the stages (stages.py) build the app and leave RAM, then the app runs until stopped.

Only this small module stays loaded while the app runs: the code that checked the config, read the
profiles and made the long-lived buffers is needed once.
"""

import gc

from . import hal, log


def main():
    from . import stages

    app = stages.build()
    stages.forget("stages")
    del stages
    gc.collect()
    log.log(log.INFO, "started on", hal.PLATFORM, "with", len(app.modules), "meter(s); heap free", gc.mem_free())
    try:
        app.run_forever()
    except KeyboardInterrupt:  # Ctrl-C at the console (or the demo stopping): no traceback
        log.log(log.INFO, "stopped")
