"""Fetch umqtt.simple from the registry package micropython-umqtt.simple, check its sha256, install it.

Usage: python tools/fetch_umqtt.py LIBDIR  ->  LIBDIR/umqtt/simple.py and LIBDIR/umqtt/pinned.py
The source is never committed: it comes from the registry at set-up time, pinned by hash.
umqtt/pinned.py (ours) names the version, so the firmware can log which umqtt.simple it runs:
a frozen umqtt package that shadows this one has no such module.
"""

import hashlib
import io
import json
import os
import sys
import tarfile
import urllib.request

PACKAGE = "micropython-umqtt.simple"
VERSION = "1.3.4"
SHA256 = "b6a2520239e3992c63a7de9370ee9b3d9d27819a90359c521f1c0f7ccab8d12f"  # the sdist, checked 2026-11-26
INDEX = os.environ.get("PYPI_JSON", "https://pypi.org/pypi")


def fetch():
    # /pypi/<pkg>/<ver>/json answered 404 here; the package-wide document lists every release
    with urllib.request.urlopen(f"{INDEX}/{PACKAGE}/json", timeout=60) as r:
        meta = json.load(r)
    sdist = next(u for u in meta["releases"][VERSION] if u["packagetype"] == "sdist")
    with urllib.request.urlopen(sdist["url"], timeout=60) as r:
        data = r.read()
    got = hashlib.sha256(data).hexdigest()
    if got != SHA256:
        sys.exit(f"fetch_umqtt: sha256 mismatch for {sdist['url']}: {got}")
    return data


def _pin(dest):
    """umqtt/pinned.py beside simple.py: what the firmware logs at start-up."""
    path = os.path.join(dest, "umqtt", "pinned.py")
    text = f'VERSION = "{VERSION}"  # {PACKAGE} in this directory, written by tools/fetch_umqtt.py\n'
    if not os.path.exists(path) or open(path).read() != text:
        with open(path, "w") as f:
            f.write(text)


def main(dest):
    target = os.path.join(dest, "umqtt", "simple.py")
    if os.path.exists(target):
        _pin(dest)
        return
    with tarfile.open(fileobj=io.BytesIO(fetch()), mode="r:gz") as tf:
        member = next(m for m in tf.getmembers() if m.name.endswith("/umqtt/simple.py"))
        source = tf.extractfile(member).read()
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target + ".new", "wb") as f:
        f.write(source)
    os.replace(target + ".new", target)
    _pin(dest)
    print(f"fetch_umqtt: {PACKAGE} {VERSION} -> {target}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "build/lib")
