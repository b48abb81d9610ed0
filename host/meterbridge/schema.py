"""Validators for the schemas of EVerest's powermeter AsyncAPI document (Draft 2020-12, formats checked)."""

import functools
from importlib import resources

import yaml
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from rfc3339_validator import validate_rfc3339

_URI = "urn:everest:powermeter_API"

# FormatChecker skips date-time silently when rfc3339-validator is missing; importing it here makes that loud.
_FORMATS = FormatChecker()


@_FORMATS.checks("date-time")
def _date_time(instance):
    """RFC 3339 date-time, as jsonschema itself checks it."""
    return not isinstance(instance, str) or validate_rfc3339(instance.upper())


@functools.cache
def document():
    """The parsed powermeter_API.yaml shipped in meterbridge/spec."""
    spec = resources.files("meterbridge").joinpath("spec", "powermeter_API.yaml")
    return yaml.safe_load(spec.read_text(encoding="utf-8"))


@functools.cache
def validator(name):
    """A cached validator for components/schemas/<name>, e.g. "Powermeter" or "units/types/Energy"."""
    node = document()["components"]["schemas"]
    for part in name.split("/"):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(f"no schema {name!r} in powermeter_API.yaml")
        node = node[part]
    resource = Resource.from_contents(document(), default_specification=DRAFT202012)
    return Draft202012Validator(
        {"$ref": f"{_URI}#/components/schemas/{name}"},
        registry=Registry().with_resource(_URI, resource),
        format_checker=_FORMATS,
    )


def errors(name, obj):
    """Every way obj breaks schema `name`, as "<json path>: <message>" lines; empty when it is valid."""
    found = sorted(validator(name).iter_errors(obj), key=lambda e: e.json_path)
    return [f"{e.json_path}: {e.message}" for e in found]
