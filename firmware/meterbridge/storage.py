"""Small files in a directory, replaced atomically: write a new file, then rename it over the old one.

A power cut at any instant leaves either the old or the new file. Both HALs use this; only the
directory differs.
"""

import os


class Storage:
    """Read and atomically replace small files under root."""

    def __init__(self, root):
        self.root = root
        try:
            os.mkdir(root)
        except OSError:
            pass  # already there

    def _path(self, name):
        return self.root + "/" + name

    def read(self, name):
        try:
            with open(self._path(name), "rb") as f:
                return f.read()
        except OSError:
            return None

    def write(self, name, data):
        tmp = self._path(name + ".new")
        with open(tmp, "wb") as f:
            f.write(data)
        try:
            os.rename(tmp, self._path(name))  # POSIX and littlefs replace the old file atomically
        except OSError:
            os.remove(self._path(name))  # FAT refuses to rename over a file
            os.rename(tmp, self._path(name))
