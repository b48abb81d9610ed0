"""Run the firmware under the unix port from a ROMFS image, as a board with a ROMFS partition does.

Such a board maps the image into its address space, mounts it at /rom and puts /rom and /rom/lib
on sys.path before main.py runs; imported .mpy code then executes in place and the heap holds only
the objects it creates. The unix port has no ROM partition, so this launcher keeps the image in
its own memory, outside the MicroPython heap, and mounts it the same way before starting main.

    python -m meterbridge.romrun IMAGE HEAPSIZE CONFIG
"""

import ctypes
import sys

import micropython_run

_BOOT = """import sys, uctypes, vfs
vfs.mount(vfs.VfsRom(uctypes.bytearray_at({addr}, {size})), "/rom")
sys.path[:0] = ["/rom", "/rom/lib"]
sys.argv[:] = ["/rom/main.py", {config!r}]
del sys, uctypes, vfs
from meterbridge.start import main
main()
"""


def main(argv=None):
    image, heapsize, config = argv or sys.argv[1:]
    with open(image, "rb") as f:
        data = f.read()
    rom = ctypes.create_string_buffer(data, len(data))  # lives until run_main returns
    boot = _BOOT.format(addr=ctypes.addressof(rom), size=len(data), config=config)
    heap = ["-X", "heapsize=" + heapsize] if heapsize else []
    return micropython_run.run_main(["micropython", *heap, "-c", boot])


if __name__ == "__main__":
    sys.exit(main())
