"""Small files in a directory, replaced atomically: write a new file, then rename it over the old one.

A power cut at any instant leaves either the old or the new file. Both HALs use this; only the
directory differs. Storage that cannot be written (a full or read-only filesystem, a path that is a
file) never raises: write says why, the log says so once, and "writable" again when writing works.
"""

import gc
import os

from .log import ERROR, INFO, log


class Storage:
    """Read and atomically replace small files under root."""

    def __init__(self, root):
        self.root = root
        self.failing = True  # until the probe below says otherwise
        try:
            os.mkdir(root)
        except OSError:
            pass  # already there, or the probe says why not
        if self.write("probe", b"") is None:
            os.remove(self._path("probe"))
        gc.collect()  # the probe's garbage goes before the long-lived objects made next could pin it as holes

    def _path(self, name):
        return self.root + "/" + name

    def read(self, name):
        try:
            with open(self._path(name), "rb") as f:
                return f.read()
        except OSError:
            return None

    def write(self, name, data):
        """Replace name with data; None when done, else why not (the old file, if any, is untouched)."""
        path = self._path(name)
        tmp = path + ".new"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
            try:
                os.rename(tmp, path)  # POSIX and littlefs replace the old file atomically
            except OSError:
                os.remove(path)  # FAT refuses to rename over a file
                os.rename(tmp, path)
        except OSError as e:
            try:
                os.remove(tmp)  # a half-written file only takes space
            except OSError:
                pass
            n = e.args[0] if e.args else 0  # ENOSPC, EROFS, ENOTDIR: these numbers on both ports (py/mperrno.h)
            why = "storage %s: cannot write %s (%s)" % (
                self.root, name, "full" if n == 28 else "read-only" if n == 30 else "not a directory" if n == 20 else e)
            if not self.failing or name == "probe":
                log(ERROR, why)
            self.failing = True
            return why
        if self.failing:
            log(INFO, "storage", self.root, "writable")
        self.failing = False
        return None
