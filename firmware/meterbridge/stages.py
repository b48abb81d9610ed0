"""Start-up in stages: check config and profiles, unload their checkers, only then load the runtime.

Each stage's modules leave RAM before the next stage's arrive, so the peak of parsing JSON never
meets the resident runtime; this module leaves too, before the runtime is loaded (start.py). The long-lived
buffers are made as soon as their size is known, while the heap is still nearly empty: later, with
the runtime loaded, no hole may be large enough.
"""

import gc
import sys

from micropython import const

from . import hal, jsonout, log, powermeter
from .meter import Dataset

# A meter that cannot sign answers any start NOT_SUPPORTED: only the head of a large request is read, for replyTo
_HEAD_ONLY = const(512)
# The state document's buffer (state.py): its head, and a meter's part with a 36-character transaction id
_DOC_HEAD = const(256)
_DOC_METER = const(384)


def forget(*names):
    """Unload modules used only at start-up (the lazy-import idea of extmod/asyncio, in reverse)."""
    package = sys.modules[__name__.rpartition(".")[0]]
    for name in names:
        sys.modules.pop(package.__name__ + "." + name, None)
        if hasattr(package, name):
            delattr(package, name)
    gc.collect()


def fatal(message):
    """hal.fatal; a start on trial (an update) first records why, and the boot rolls it back at once."""
    if sys.argv[2:3] == ["slots"]:  # a boot chose the slot (slots.py)
        import slots

        slots.failed(message)
    hal.fatal(message)


def _config():
    """The checked config, and what it risks (warnings to log once the log level is known)."""
    from . import config

    try:
        cfg = config.load(hal.config_path(), hal.supported_baud)
    except config.ConfigError as e:
        fatal("config: " + str(e))
    return cfg, config.warnings(cfg)


def _profiles(cfg, storage):
    """(profiles, (meter.Dataset, jsonout.Writer) for each) of the configured meters; storage holds the read
    limits they learned."""
    from . import profile

    profiles, buffers = [], []
    for m in cfg["meters"]:
        name = m["profile"]
        # a profile name from profiles/, or a path to a profile file of one's own
        m["profile_path"] = name if "/" in name else hal.profiles_dir() + "/" + name + ".json"
        try:
            learned = storage.read(profile.LIMITS % m["module_id"])
            prof = profile.load(m["profile_path"], m["baud"], m["parity"], learned, m["slave"])
        except profile.ProfileError as e:
            fatal("profile: " + str(e))
        gc.collect()
        profiles.append(prof)
        size = powermeter.text_size(prof, m["meter_id"])
        if not buffers:  # the first is the state document's too (build)
            size = max(size, _DOC_HEAD + _DOC_METER * len(cfg["meters"]))
        buffers.append((Dataset(prof.count), jsonout.Writer(size)))
    return profiles, buffers


def build():
    """(cfg, profiles, buffers, rx, storage, doc) for App: the checked config and profiles, the long-lived buffers
    (doc: the state document's, None where a meter signs) and the storage (probed once); the checkers have left
    RAM by then."""
    cfg, warnings = _config()
    forget("config")
    storage = hal.Storage(cfg["storage"])
    profiles, buffers = _profiles(cfg, storage)
    size = cfg["broker"]["max_payload"]
    doc = None  # a signing meter's board loads the state topic only where its requests have room (app.py)
    if not any(p.ocmf for p in profiles):
        size = min(size, _HEAD_ONLY)
        # the state document is written into the first meter's values buffer (sized for both): each is built
        # and published with no await between, so they never meet
        doc = buffers[0][1]
    rx = bytearray(size)
    forget("profile", "planner")
    log.level = {"debug": log.DEBUG, "info": log.INFO, "warn": log.WARN, "error": log.ERROR}[cfg["log_level"]]
    for warning in warnings:
        log.log(log.WARN, "config:", warning)
    del warnings
    hal.start_network(cfg)
    return cfg, profiles, buffers, rx, storage, doc
