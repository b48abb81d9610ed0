"""Stand-in for the newer umqtt.simple releases frozen into stock ESP32 firmware (none is on a registry).

Written from what shared/docs/toolchain.md §6 states about them, not from their code. STANDIN_UMQTT picks:
- "1.4.0" (frozen in v1.23-v1.24): MQTTClient(client_id, server, port=0, user=None, password=None,
  keepalive=0, ssl=None), where ssl is an SSLContext or None; there is no ssl_params argument, so
  passing it raises TypeError. connect(clean_session=True).
- "1.5.0" (and 1.6.0-1.8.0 as far as this matters, frozen in v1.25-v1.28): connect(clean_session=True,
  timeout=None) calls settimeout(timeout) on the socket it makes, so the default None blocks forever;
  1.6.0 restored ssl=True with ssl_params beside an SSLContext.
What the versions share with the pinned 1.3.4 (publish, subscribe, ping, wait_msg, check_msg,
set_callback, set_last_will) is that release's code, loaded from STANDIN_UMQTT_BASE (build/lib/umqtt/simple.py).
"""

import os
import socket  # a module name, as in every release: a caller may point it elsewhere

VERSION = os.getenv("STANDIN_UMQTT")
_base = {"__name__": "umqtt_base"}
with open(os.getenv("STANDIN_UMQTT_BASE")) as f:
    exec(f.read(), _base)
MQTTException = _base["MQTTException"]


def _field(s):
    return bytes((len(s) >> 8, len(s) & 0xFF)) + s


class MQTTClient(_base["MQTTClient"]):
    if VERSION == "1.4.0":

        def __init__(self, client_id, server, port=0, user=None, password=None, keepalive=0, ssl=None):
            super().__init__(client_id, server, port, user, password, keepalive)
            self.ssl = ssl

    else:

        def __init__(self, client_id, server, port=0, user=None, password=None, keepalive=0, ssl=None,
                     ssl_params={}):  # noqa: B006 - the documented signature
            super().__init__(client_id, server, port, user, password, keepalive)
            self.ssl = ssl
            self.ssl_params = ssl_params

    def connect(self, clean_session=True, timeout=None):
        """Make a socket from the module's `socket`, set the timeout (1.5.0 on), connect, CONNECT, CONNACK."""
        self.sock = socket.socket()
        if VERSION != "1.4.0":
            self.sock.settimeout(timeout)
        self.sock.connect(socket.getaddrinfo(self.server, self.port)[0][-1])
        if self.ssl:
            self.sock = self.ssl.wrap_socket(self.sock, server_hostname=self.server)
        # CONNECT, MQTT 3.1.1 section 3.1
        flags = clean_session << 1
        body = _field(self.client_id if isinstance(self.client_id, bytes) else self.client_id.encode())
        if self.lw_topic:
            flags |= 0x04 | self.lw_qos << 3 | self.lw_retain << 5
            body += _field(self.lw_topic) + _field(self.lw_msg)
        if self.user:
            flags |= 0xC0
            body += _field(self.user.encode()) + _field(self.pswd.encode())
        body = b"\x00\x04MQTT\x04" + bytes((flags, self.keepalive >> 8, self.keepalive & 0xFF)) + body
        self.sock.write(bytes((0x10, len(body))) + body)  # one length byte: these tests' CONNECTs are short
        resp = self.sock.read(4)
        if resp[0] != 0x20 or resp[1] != 2:
            raise MQTTException(-1)
        if resp[3]:
            raise MQTTException(resp[3])
        return resp[2] & 1
