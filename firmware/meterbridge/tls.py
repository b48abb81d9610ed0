"""TLS for both umqtt.simple generations.

micropython-lib's umqtt.simple 1.3.4 (the registry package) does `import ussl;
ussl.wrap_socket(sock, **ssl_params)`; the newer one frozen into ESP32 builds calls
`ssl.wrap_socket(sock, server_hostname=...)` on the SSLContext it was given as `ssl`. Passing an
SSLContext as `ssl` and registering a `ussl` stand-in that forwards to it serves both.
"""

import ssl
import sys
from binascii import a2b_base64


class _Ussl:
    """The `ussl` module 1.3.4 imports, forwarding to one SSLContext."""

    def __init__(self, context):
        self._context = context

    def wrap_socket(self, sock, server_hostname=None, **_):
        return self._context.wrap_socket(sock, server_hostname=server_hostname)


def _der(path):
    """The first DER object of a PEM or DER file: this mbedTLS binding rejects PEM text."""
    with open(path, "rb") as f:
        data = f.read()
    if not data.startswith(b"-----BEGIN"):
        return data
    lines = data.split(b"\n")
    end = next(i for i, line in enumerate(lines) if line.startswith(b"-----END"))
    return a2b_base64(b"".join(lines[1:end]))


def context(tls):
    """An SSLContext from the broker.tls config: ca (verify the broker), cert + key (client cert)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if tls.get("ca"):
        ctx.load_verify_locations(cadata=_der(tls["ca"]))
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        ctx.verify_mode = ssl.CERT_NONE
    if tls.get("cert"):
        ctx.load_cert_chain(_der(tls["cert"]), _der(tls["key"]))
    # also where a real ussl exists: its wrap_socket would not apply this context's CA and cert
    sys.modules["ussl"] = _Ussl(ctx)
    return ctx
