"""A TCP proxy between the firmware and mosquitto that a test can cut, black-hole and restore.

cut() is a Wi-Fi glitch: connections drop, and a new one is closed as soon as it is made.
blackhole() is a broker host that is down (or a firewall that drops packets): a client's SYN is never
answered, so its connect stays in SYN_SENT and the client retransmits the SYN with backoff until it
gives up (RFC 9293 3.8.1; Linux tcp(7) tcp_syn_retries, 6 by default: about 127 s). lwIP on an ESP32
does the same: a non-blocking connect answers EINPROGRESS (src/api/api_msg.c, lwip_netconn_do_connect)
and the socket never becomes writable; its SYN is sent again only after an initial RTO of 3 s
(src/core/tcp.c, tcp_alloc). A closed port on a live host answers RST at once (127.0.0.1 always does).
Without root a listener makes that by a full accept queue: Linux drops a SYN that arrives then, unanswered
(tcp_conn_request counts it in ListenOverflows); listen(0) leaves room for one connection, which the
proxy fills with one of its own and never accepts.
"""

import socket
import threading
import time


class Proxy:
    """Forwards 127.0.0.1:port to the broker until cut() or blackhole(); restore() forwards again."""

    def __init__(self, target_port, blackholed=False):
        self._target = ("127.0.0.1", target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)  # the accept thread lets go of the lock this often
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open = []
        self._cut = False
        self._filler = None  # while black-holed: the proxy's own connection that fills the accept queue
        self._closed = False
        self.accepted = 0  # connections forwarded
        if blackholed:
            self._fill()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            with self._lock:  # never inside accept() while blackhole() or restore() change the queue
                if self._closed:
                    return
                if self._filler is None:
                    try:
                        client, _ = self._listener.accept()
                    except TimeoutError:
                        client = None
                    if client:
                        self._take(client)
            time.sleep(0.01)

    def _take(self, client):
        if self._cut:
            client.close()  # the link is down: the connect fails at once
            return
        self.accepted += 1
        upstream = socket.create_connection(self._target)
        self._open += [client, upstream]
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src, dst):
        try:
            while data := src.recv(4096):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _drop_open(self):
        for s in self._open:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        self._open = []

    def _drain(self):
        """Close the connections the kernel completed that nobody accepted yet."""
        self._listener.setblocking(False)
        try:
            while True:
                try:
                    self._listener.accept()[0].close()
                except BlockingIOError:
                    return
        finally:
            self._listener.settimeout(0.1)

    def _fill(self):
        """Leave the accept queue full, so the kernel answers no SYN (called with the accept thread held)."""
        self._listener.listen(0)  # a listening socket takes a new backlog: room for one connection
        while self._filler is None:
            self._drain()
            filler = socket.socket()
            filler.settimeout(2)
            try:
                filler.connect(("127.0.0.1", self.port))
                self._filler = filler
            except OSError:  # a client's connection took the one place first: close it, try again
                filler.close()

    def cut(self):
        with self._lock:
            self._cut = True
            self._drop_open()

    def blackhole(self):
        """Drop every connection; from now on a connect is never answered, as by a host that is down."""
        with self._lock:
            self._drop_open()
            if self._filler is None:
                self._fill()

    def restore(self):
        with self._lock:
            self._cut = False
            if self._filler is not None:
                self._listener.listen(128)
                self._listener.accept()[0].close()  # the filler's other end, first in the queue
                self._filler.close()
                self._filler = None

    def close(self):
        self.cut()
        with self._lock:
            self._closed = True
            if self._filler is not None:
                self._filler.close()
            self._listener.close()
