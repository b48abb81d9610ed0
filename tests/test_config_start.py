"""The firmware's start-up with a config it cannot run: one line naming the field, the file and the reason, no
traceback (issue 15 "Config", "TLS and secrets"). Nothing here needs a broker or a meter: each stops or warns
before it would talk to one."""

import json
import os

import pytest

from conftest import wait_until
from meterbridge import procs
from tlsutil import make_pki


@pytest.fixture
def tty():
    """A serial device that opens: the slave end of a pty nobody answers on."""
    master, slave = os.openpty()
    yield os.ttyname(slave)
    os.close(master)
    os.close(slave)


def start(tmp_path, broker=None, meter=None, heapsize="100k", until=None, **top):
    """Run the firmware with this config until it stops, or its log shows until (at most 15 s); (exit status,
    its log)."""
    m = {"module_id": "pm1", "profile": "eastron_sdm630_v2", "uart": {"device": str(tmp_path / "none")}}
    cfg = {"broker": {"host": "127.0.0.1", "port": procs.free_port(), **(broker or {})},
           "meters": [{**m, **(meter or {})}], "storage": str(tmp_path / "state"), **top}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    log = tmp_path / "firmware.log"
    fw = procs.start_firmware(path, heapsize, log=open(log, "wb"))
    wait_until(lambda: fw.poll() is not None or (until and until in log.read_text(errors="replace")), 15)
    procs.stop(fw)
    return fw.returncode, log.read_text(errors="replace")


def test_a_missing_serial_device_names_the_meter_and_the_path(tmp_path):
    status, log = start(tmp_path, meter={"uart": {"device": "/dev/ttyUSB-nothing"}})
    assert status != 0 and "fatal: start-up: meters[0].uart: /dev/ttyUSB-nothing: no such device" in log, log
    assert "Traceback" not in log and "bus:" not in log


def test_a_nul_in_the_module_id_is_named_as_the_module_id(tmp_path):
    status, log = start(tmp_path, meter={"module_id": "pm\0"})
    assert status != 0 and "config: meters[0].module_id: must not contain '\\x00'" in log, log


def test_a_typo_is_refused_with_the_near_name(tmp_path):
    status, log = start(tmp_path, meter={"perod_ms": 500})
    assert status != 0 and "config: meters[0].perod_ms: unknown key (did you mean period_ms?)" in log, log


def test_a_password_over_tls_needs_a_ca(tmp_path):
    status, log = start(tmp_path, broker={"tls": True, "username": "u", "password": "Sup3rS3cretPW"})
    assert status != 0 and "config: broker.tls.ca: a password over TLS needs the broker's CA" in log, log
    assert "Sup3rS3cretPW" not in log


def _tls_files(tmp_path):
    pki = make_pki(tmp_path)
    ca = pki["ca"].read_text().splitlines()
    (tmp_path / "cut.pem").write_text("\n".join(ca[:-1]) + "\n")  # no END line: was StopIteration
    (tmp_path / "padding.pem").write_text("\n".join(ca[:2] + ["QUJD"[:3]] + ca[-1:]) + "\n")  # was ValueError
    (tmp_path / "junk.der").write_bytes(b"\x30\x03\x02\x01\x01")
    return pki


@pytest.mark.parametrize("tls,message", [
    ({"ca": "nowhere.pem"}, "broker.tls.ca: nowhere.pem: no such file"),  # was "bus: [Errno 2] ENOENT"
    ({"ca": "cut.pem"}, "broker.tls.ca: cut.pem: broken PEM"),
    ({"ca": "padding.pem"}, "broker.tls.ca: padding.pem: broken PEM"),
    ({"ca": "junk.der"}, "broker.tls.ca: junk.der: mbedTLS cannot use it"),
    ({"ca": "ca.pem", "cert": "server.pem", "key": "junk.der"}, "broker.tls.key: junk.der: mbedTLS cannot use it"),
])
def test_a_bad_tls_file_is_named_with_its_problem(tmp_path, tty, tls, message):
    _tls_files(tmp_path)
    tls = {k: str(tmp_path / v) for k, v in tls.items()}
    status, log = start(tmp_path, broker={"tls": tls}, meter={"uart": {"device": tty}}, heapsize=None)
    assert status != 0 and "fatal: start-up: " + message.replace(": ", ": " + str(tmp_path) + "/", 1) in log, log
    assert "Traceback" not in log


def test_insecure_tls_starts_with_a_warning(tmp_path, tty):
    status, log = start(tmp_path, broker={"tls": {"insecure": True}, "username": "u", "password": "Sup3rS3cretPW"},
                        meter={"uart": {"device": tty}}, heapsize=None, until="started on")
    assert "warn: config: broker.tls: no CA, so any server can pose as the broker and receive the password" in log, log
    assert "Sup3rS3cretPW" not in log
