"""The SSLContext the MQTT link wraps its socket with (mqtt_link drives the handshake itself, without blocking)."""

import ssl
from binascii import a2b_base64

_MAX_FILE = 16384  # a CA chain of a few certificates; more would only cost the board its heap


def _der(tls, key):
    """The first DER object of the PEM or DER file broker.tls[key] names (this mbedTLS binding rejects PEM
    text); an OSError names the field, the file and the problem."""
    path = tls[key]
    where = "broker.tls.%s: %s: " % (key, path)
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_FILE + 1)
    except OSError as e:
        raise OSError(where + ("no such file" if e.args[0] == 2 else "cannot read (%s)" % e)) from None
    if len(data) > _MAX_FILE:
        raise OSError(where + "larger than %d bytes" % _MAX_FILE)
    if data.startswith(b"-----BEGIN"):
        lines = data.split(b"\n")
        end = [i for i, line in enumerate(lines) if line.startswith(b"-----END")]
        try:
            data = a2b_base64(b"".join(lines[1:end[0]]))
        except (IndexError, ValueError):
            raise OSError(where + "broken PEM (no END line, or not base64)") from None
    if not data:
        raise OSError(where + "empty")
    return data


def _refused(tls, key, e):
    return OSError("broker.tls.%s: %s: mbedTLS cannot use it (%s)" % (key, tls[key], e))


def context(tls):
    """An SSLContext from the broker.tls config: ca (verify the broker), cert + key (client cert)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if tls.get("ca"):
        ca = _der(tls, "ca")
        try:
            ctx.load_verify_locations(cadata=ca)
        except (OSError, ValueError) as e:
            raise _refused(tls, "ca", e) from None
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        ctx.verify_mode = ssl.CERT_NONE
    if tls.get("cert"):
        cert, key = _der(tls, "cert"), _der(tls, "key")
        try:
            ctx.load_cert_chain(cert, key)
        except (OSError, ValueError) as e:  # "invalid cert" or "invalid key"
            raise _refused(tls, "cert" if "cert" in str(e) else "key", e) from None
    return ctx
