"""meterbridge.schema against example messages in tests/host/data (copied from the shared spec examples)."""

import decimal
import json
from pathlib import Path

import pytest

from meterbridge import schema

DATA = Path(__file__).parent / "data"


def load(name):
    """An example message, floats as Decimal like the EVerest client parses them."""
    return json.loads((DATA / name).read_bytes(), parse_float=decimal.Decimal)


@pytest.mark.parametrize(
    ("name", "example"),
    [
        ("Powermeter", "powermeter_values.json"),
        ("HeartBeatId", "heartbeat.json"),
        ("StartTransactionReply", "start_transaction.reply.not_supported.json"),
        ("StopTransactionReply", "stop_transaction.reply.ocmf.json"),
    ],
)
def test_examples_are_valid(name, example):
    assert schema.errors(name, load(example)) == []


def test_start_request_payload_is_valid():
    request = load("start_transaction.request.json")
    assert schema.errors("StartTransactionRequest", request["payload"]) == []
    assert "identification_level" not in request["payload"]


def test_stop_request_object_form_matches_the_yaml():
    assert load("stop_transaction.object.request.json")["payload"] == {
        "transaction_id": "7f9c2b1e-4a3d-4f6b-8e2a-1c5d9b0e7a31"
    }
    assert isinstance(load("stop_transaction.request.json")["payload"], str)
    assert load("stop_transaction.cancel_all.request.json")["payload"] == ""


def test_small_values_and_simple_types():
    ok = {"timestamp": "2026-11-26T10:00:00.000Z", "energy_Wh_import": {"total": 1234.5}}
    assert schema.errors("Powermeter", ok) == []
    assert schema.errors("CommunicationCheck", True) == []
    assert schema.errors("SendPublicKeyOCMF", "3059301306") == []


def test_missing_energy_import_is_rejected():
    values = load("powermeter_values.json")
    del values["energy_Wh_import"]
    assert schema.errors("Powermeter", values) == ["$: 'energy_Wh_import' is a required property"]


def test_energy_without_total_is_rejected():
    values = load("powermeter_values.json")
    del values["energy_Wh_import"]["total"]
    assert schema.errors("Powermeter", values) == ["$.energy_Wh_import: 'total' is a required property"]


@pytest.mark.parametrize(
    "stamp", ["yesterday", "2026-11-26 10:15:30", "2026-02-30T10:00:00Z", "2026-11-26T10:15:30"]
)
def test_bad_timestamp_is_rejected(stamp):
    values = load("powermeter_values.json")
    values["timestamp"] = stamp
    assert schema.errors("Powermeter", values) == [f"$.timestamp: '{stamp}' is not a 'date-time'"]


def test_string_number_and_bad_status_are_rejected():
    values = load("powermeter_values.json")
    values["current_A"]["L1"] = "16.02"
    assert schema.errors("Powermeter", values) == ["$.current_A.L1: '16.02' is not of type 'number'"]
    reply = load("start_transaction.reply.not_supported.json") | {"status": "MAYBE"}
    assert schema.errors("StartTransactionReply", reply) == [
        "$.status: 'MAYBE' is not one of ['OK', 'NOT_SUPPORTED', 'UNEXPECTED_ERROR']"
    ]


def test_signed_meter_value_needs_its_fields_and_a_real_timestamp():
    reply = load("stop_transaction.reply.ocmf.json")
    del reply["signed_meter_value"]["encoding_method"]
    reply["signed_meter_value"]["timestamp"] = "yesterday"
    assert schema.errors("StopTransactionReply", reply) == [
        "$.signed_meter_value: 'encoding_method' is a required property",
        "$.signed_meter_value.timestamp: 'yesterday' is not a 'date-time'",
    ]


def test_heartbeat_and_communication_check_types():
    assert schema.errors("HeartBeatId", decimal.Decimal("1.5")) == [
        "$: Decimal('1.5') is not of type 'integer'"
    ]
    assert schema.errors("CommunicationCheck", "true") == ["$: 'true' is not of type 'boolean'"]


def test_validator_is_cached_and_unknown_names_fail():
    assert schema.validator("Powermeter") is schema.validator("Powermeter")
    assert schema.errors("units/types/Frequency", {"L2": 50}) == ["$: 'L1' is a required property"]
    with pytest.raises(KeyError):
        schema.validator("NoSuchSchema")


def test_yaml_is_the_upstream_document():
    doc = schema.document()
    assert doc["asyncapi"] == "3.0.0"
    assert doc["info"]["license"]["name"] == "Apache-2.0"
