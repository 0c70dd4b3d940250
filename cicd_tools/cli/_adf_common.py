"""What the ``adf`` command modules share (below all of them: no import circle): NAME=VALUE flags, the factory."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cicd_tools.cli._base import env_default
from cicd_tools.support.errors import UsageError

if TYPE_CHECKING:
    from cicd_tools.adf.client import FactoryApi, FactoryRef


MAX_JSON_DEPTH = 100  # as deep as the expression parser nests; deeper values only exhaust the stack later


def _depth(value: Any) -> int:
    """How deeply ``value`` nests lists and objects (iterative: the value may be deep)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if isinstance(item, dict):
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, level + 1) for v in item)
    return deepest


def _loads(text: str, flag: str) -> Any:
    """``json.loads``, with values nested deeper than MAX_JSON_DEPTH refused as a usage error."""
    try:
        value = json.loads(text)
    except RecursionError:
        value = None
    else:
        if _depth(value) <= MAX_JSON_DEPTH:
            return value
    raise UsageError(f"{flag}: the JSON value nests more than {MAX_JSON_DEPTH} levels deep",
                     hint="Pipeline parameters and outputs are shallow; pass a value nested a few levels at most.")


def _json_or_string(text: str, flag: str = "VALUE") -> Any:
    try:
        return _loads(text, flag)
    except ValueError:
        return text


def parse_pairs(entries: Sequence[str], flag: str, *, require_json: bool = False) -> dict[str, Any]:
    """``NAME=VALUE`` flags; VALUE is JSON when it parses, else the plain string. Raises: UsageError."""
    result: dict[str, Any] = {}
    for entry in entries:
        name, sep, raw = entry.partition("=")
        if not sep or not name:
            raise UsageError(f"{flag} takes NAME=VALUE, got {entry!r}")
        if require_json:
            try:
                result[name] = _loads(raw, flag)
            except ValueError as exc:
                raise UsageError(f"{flag} {name}: the value is not JSON ({exc})") from None
        else:
            result[name] = _json_or_string(raw, flag)
    return result


def add_factory_flags(parser: argparse.ArgumentParser) -> None:
    """Which factory, through which management endpoint."""
    env_default(parser, "--subscription-id", env="CICD_SUBSCRIPTION_ID", help="subscription of the factory")
    env_default(parser, "--resource-group", env="CICD_RESOURCE_GROUP", help="resource group of the factory")
    env_default(parser, "--factory", env="CICD_FACTORY", help="Data Factory name")
    env_default(parser, "--arm-endpoint", env="CICD_ARM_ENDPOINT", default="https://management.azure.com",
                help="Azure Resource Manager endpoint")


def factory_ref(args: argparse.Namespace) -> FactoryRef:
    from cicd_tools.adf.client import FactoryRef
    from cicd_tools.cli._base import settings_from_args

    settings = settings_from_args(args, subscription_id="subscription_id", resource_group="resource_group",
                                  factory="factory")
    settings.require("subscription_id", "resource_group", "factory")
    assert settings.subscription_id and settings.resource_group and settings.factory
    return FactoryRef(settings.subscription_id, settings.resource_group, settings.factory)


def factory_api(args: argparse.Namespace, ref: FactoryRef) -> FactoryApi:
    """The factory facade over the client ``datafactory_client`` builds."""
    from cicd_tools.adf.operations import factory_api_for
    from cicd_tools.credentials import build_credential

    endpoint = str(args.arm_endpoint).rstrip("/")
    if not endpoint.startswith("https://"):
        raise UsageError(f"--arm-endpoint must be an https:// URL, got {args.arm_endpoint!r}")
    return factory_api_for(build_credential(), ref, endpoint)
