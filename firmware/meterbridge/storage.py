"""Small files in a directory, replaced atomically: write a new file, then rename it over the old one.

A power cut at any instant leaves either the old or the new file. Both HALs use this; only the
directory differs. Storage that cannot be written (a full or read-only filesystem, a path that is a
file) never raises: write says why, the log says so once, and again when writing works once more.
"""

import os

from .log import ERROR, INFO, log


class Storage:
    """Read and atomically replace small files under root."""

    def __init__(self, root):
        self.root = root
        self.failing = False
        try:
            os.mkdir(root)
        except OSError:
            pass  # already there, or the probe below says why not
        why = self.write("probe", b"")
        if why is None:
            self._remove("probe")
            log(INFO, "storage", root, "is writable")
        else:
            log(ERROR, "transactions are answered but not journaled until storage works")

    def _path(self, name):
        return self.root + "/" + name

    def _remove(self, name):
        try:
            os.remove(self._path(name))
        except OSError:
            pass

    def read(self, name):
        try:
            with open(self._path(name), "rb") as f:
                return f.read()
        except OSError:
            return None

    def write(self, name, data):
        """Replace name with data; None when done, else why not (the old file, if any, is untouched)."""
        tmp = name + ".new"
        try:
            with open(self._path(tmp), "wb") as f:
                f.write(data)
            try:
                os.rename(self._path(tmp), self._path(name))  # POSIX and littlefs replace the old file atomically
            except OSError:
                os.remove(self._path(name))  # FAT refuses to rename over a file
                os.rename(self._path(tmp), self._path(name))
        except OSError as e:
            self._remove(tmp)  # a half-written file only takes space
            why = "storage %s: cannot write %s (%s)" % (self.root, name, _reason(e))
            if not self.failing:
                log(ERROR, why)
            self.failing = True
            return why
        if self.failing:
            log(INFO, "storage", self.root, "is writable again")
        self.failing = False
        return None


def _reason(e):
    """An OSError's errno in words, for the ones storage meets (the same numbers on both ports)."""
    n = e.args[0] if e.args else None
    for code, text in ((28, "no space left"), (30, "read-only filesystem"), (20, "not a directory"),
                       (2, "no such directory"), (13, "permission denied")):
        if n == code:
            return text
    return "errno %s" % n
