"""Importing the package puts the lib/ directory beside it first in sys.path, before anything imports umqtt.

lib/ holds the pinned umqtt.simple that the tests ran (/lib on a board, /rom/lib in a ROMFS image).
Stock ESP32 firmware freezes a newer umqtt.simple, and sys.path there is ['', '.frozen', '/lib']
(py/runtime.c, ports/esp32/main.c; /rom and /rom/lib also come after .frozen), so the frozen one
would win. Every entry point (main.py, the launchers) imports this package first.
"""

import sys

_lib = __file__.rsplit("/", 2)  # .../meterbridge/__init__.mpy; one name (each name is interned for good)
_lib = _lib[0] + "/lib" if len(_lib) == 3 else "lib"  # relative to the working directory ("/" on a board)
if sys.path[0] != _lib:
    sys.path.insert(0, _lib)
del _lib
