"""The host side of updates over MQTT (the board's side and the protocol: firmware/meterbridge/update.py).

Board(...) talks to one board under meterbridge/{client_id}/update/: signed commands, the board's
reset into receive mode (it answers `restarting`, then `receiving` from a start that runs nothing but
the receiver), the stream of chunks with a window of unacknowledged ones, and the outcome the board
retains on update/result.
Every failure is an UpdateError whose text can be shown as is; none of them contains the key.
"""

import hashlib
import hmac
import json
import queue
import struct
import time

import paho.mqtt.client as mqtt

from . import build, deploy

WINDOW = 8  # chunks sent ahead of the board's acknowledgement
REPLY_S = 10.0  # a board that says nothing for this long is not answering
# a board resets into receive mode and connects again: about 1 s on unix, 5-15 s with Wi-Fi on an ESP32
RECEIVE_S = 60.0
BUSY_TRIES = 5  # a command the board had no memory for is sent again, this often at most
ASK_S = 3.0  # a command nothing answered is sent again after this long


class UpdateError(Exception):
    """An update that did not happen, or did not commit: why."""


def sign(key_hex, body):
    """`<HMAC-SHA256 hex> <body>`: the form of every command."""
    return hmac.new(bytes.fromhex(key_hex), body, hashlib.sha256).hexdigest().encode() + b" " + body


def firmware_files(platform, arch="xtensawin", build_dir=None):
    """{path: bytes} of the firmware for a board's platform, compiled as `deploy` compiles it, with every profile."""
    if platform == "unix":
        return build.update_files(build.firmware())
    items = deploy.firmware(platform, arch, build_dir or build.paths.REPO / "build" / "deploy")
    files = {i.path: i.data for i in items if i.path.startswith(tuple(d + "/" for d in build.UPDATE_DIRS))}
    files.update({f"profiles/{p.name}": p.read_bytes() for p in sorted(build.paths.PROFILES.glob("*.json"))})
    return files


class Board:
    """One board's update topics on a broker."""

    def __init__(self, host, port, client_id, key_hex, username=None, password=None, tls=None, reply_s=REPLY_S,
                 receive_s=RECEIVE_S):
        self.client_id = client_id
        self._key = key_hex
        self.reply_s = reply_s
        self.receive_s = receive_s
        self.closed = False
        self.base = f"meterbridge/{client_id}/update/"
        self._status = queue.Queue()
        self._results = queue.Queue()
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        if username is not None:
            self._client.username_pw_set(username, password)
        if tls is not None:
            self._client.tls_set(ca_certs=tls.get("ca"))
        subscribed = queue.Queue()
        self._client.on_connect = lambda c, *_: c.subscribe([(self.base + "status", 0), (self.base + "result", 0)])
        self._client.on_subscribe = lambda *_: subscribed.put(True)
        self._client.on_message = self._on_message
        try:
            self._client.connect(host, port)
        except OSError as e:
            raise UpdateError(f"broker {host}:{port}: {e}") from None
        self._client.loop_start()
        try:
            subscribed.get(timeout=reply_s)
        except queue.Empty:
            self.close()
            raise UpdateError(f"broker {host}:{port} did not take the subscription") from None

    def _on_message(self, _c, _u, msg):
        try:
            doc = json.loads(msg.payload)
        except ValueError:
            return
        (self._results if msg.topic.endswith("/result") else self._status).put(doc)

    def close(self):
        """Disconnect; a send() or result() under way in another thread ends with UpdateError."""
        self.closed = True
        self._client.loop_stop()
        self._client.disconnect()

    def _publish(self, leaf, payload, qos=0):
        self._client.publish(self.base + leaf, payload, qos)

    def _next(self, q, end):
        """The next message of q before the monotonic time end, else None."""
        while not self.closed and time.monotonic() < end:
            try:
                return q.get(timeout=min(0.5, max(0.0, end - time.monotonic())))
            except queue.Empty:
                pass
        if self.closed:
            raise UpdateError("closed")
        return None

    def _reply(self, want, timeout=None, states=None, silent=None):
        """The next status message whose "re" is one of want and, if given, whose state is one of states; a refusal
        raises UpdateError, and so does silence for timeout (silent: its text; False: None is returned instead)."""
        timeout = timeout or self.reply_s
        end = time.monotonic() + timeout
        while True:
            doc = self._next(self._status, end)
            if doc is None:
                if silent is False:
                    return None
                raise UpdateError(silent or self._silent(timeout))
            if doc.get("state") == "refused" and doc.get("re") in ("cmd", "data", "update"):
                raise UpdateError(f"refused by the board: {doc.get('why')}")
            if doc.get("re") in want and (states is None or doc.get("state") in states):
                return doc

    def _silent(self, timeout):
        return (f"board {self.client_id} is not answering on {self.base}status within {timeout:.0f} s (offline, "
                "or running a firmware without updates?)")

    def command(self, kind, **fields):
        """A signed command (QoS 0: a command the broker kept would reach the board again after its reset)."""
        self._publish("cmd", sign(self._key, json.dumps({"client_id": self.client_id, "kind": kind,
                                                          **fields}).encode()))

    def _answer(self, ask, re, state):
        """ask() until the board answers re (in state): the running bridge says `restarting` and hands the command
        to receive mode, which answers it; a board in receive mode already answers at once. A command is sent
        again every ASK_S while nothing answers (a board that is restarting misses it), and while the board is
        short of memory for the moment."""
        end, busy = time.monotonic() + self.reply_s, 0
        while True:
            ask()
            try:
                doc = self._reply(("cmd", re), min(ASK_S, max(0.1, end - time.monotonic())), ("restarting", state),
                                  False)
            except UpdateError as e:
                busy += 1
                if "try again" not in str(e) or busy >= BUSY_TRIES:
                    raise
                continue
            if doc is not None:
                break
            if time.monotonic() >= end:
                raise UpdateError(self._silent(self.reply_s))
        if doc.get("state") == "restarting":
            doc = self._reply((re,), self.receive_s, (state,),
                              f"board {self.client_id} took the command but did not come back in receive mode "
                              f"within {self.receive_s:.0f} s; it boots its running version again by itself")
        return doc

    def hello(self):
        """What the board runs: {"version", "trial", "platform", "chunk", "free", ...}. On a running bridge this
        resets the board into receive mode, which waits a minute for the update to follow."""
        return self._answer(lambda: self.command("hello"), "hello", "ready")

    def begin(self, kind, version, manifest, total, health_s, deadline_s):
        """The update's command; returns the chunk size the board takes once it is receiving."""
        return self._answer(lambda: self.command(kind, version=version, size=len(manifest),
                                                 sha256=hashlib.sha256(manifest).hexdigest(), total=total,
                                                 health_s=health_s, deadline_s=deadline_s),
                            "cmd", "receiving")["chunk"]

    def send(self, kind, files, version, health_s=60, deadline_s=180, progress=None):
        """Stream an update; returns the board's `switching` reply (it resets into a trial then)."""
        self.hello()
        man = build.manifest(files)
        stream = man + b"".join(data for _, data in sorted(files.items()))
        # the board checks its free flash against the total and refuses with the numbers
        chunk = self.begin(kind, version, man, len(stream), health_s, deadline_s)
        return self._stream(stream, chunk, progress)

    def _stream(self, stream, chunk, progress):
        total = len(stream)
        acked = sent = 0
        last_want, quiet_since, tries = None, time.monotonic(), 0
        while True:
            while sent < total and sent - acked < WINDOW * chunk:
                part = stream[sent : sent + chunk]
                self._publish("data", struct.pack(">I", sent) + part)
                sent += len(part)
            if acked == total:
                self._publish("data", struct.pack(">I", total))  # the end
                return self._reply(("data",))
            doc = self._next(self._status, time.monotonic() + 0.5) or {}
            if "ack" in doc and doc["ack"] > acked:
                acked, quiet_since, tries = doc["ack"], time.monotonic(), 0
                if progress:
                    progress(acked, total)
            elif "want" in doc and doc["want"] != last_want:
                last_want = sent = doc["want"]  # a chunk went missing: from there again
            elif doc.get("state") == "refused":
                raise UpdateError(f"refused by the board: {doc.get('why')}")
            elif time.monotonic() - quiet_since > self.reply_s:
                tries += 1
                if tries > 3:
                    raise UpdateError(f"board {self.client_id} stopped answering at byte {acked} of {total}")
                sent, quiet_since, last_want = acked, time.monotonic(), None

    def result(self, version, timeout):
        """The board's outcome for version: {"state": "committed" | "rolled back", "why"}."""
        end = time.monotonic() + timeout
        while True:
            doc = self._next(self._results, end)
            if doc is None:
                raise UpdateError(f"no outcome for version {version} within {timeout:.0f} s: the board did not "
                                  "come back (it rolls back by itself if the new version fails)")
            if doc.get("version") == version:
                return doc
