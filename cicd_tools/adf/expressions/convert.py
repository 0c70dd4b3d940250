"""ADF conversion and encoding functions (int, float, string, bool, json, base64, data URIs, URI components).

"Binary" results are rendered as the documentation shows them: a string of bits
(``binary('hello')`` is ``"0110100001100101..."``). ``xml`` and ``xpath`` parse, but evaluating them
raises a clear error: the local evaluator does not implement ADF's XML model.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, unquote, unquote_to_bytes

from cicd_tools.adf.expressions.types import Env, FunctionFailure, FunctionSpec, Impl
from cicd_tools.adf.expressions.values import check_int64, to_string, type_name, want_str

_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_DATA_URI = re.compile(r"data:(?P<meta>[^,]*?),(?P<data>.*)", re.DOTALL)

UNSUPPORTED_LOCALLY = frozenset({"xml", "xpath"})


def _int(args: Sequence[Any], env: Env) -> int:
    value = args[0]
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return check_int64(int(value))
    if isinstance(value, str) and _INT.fullmatch(value.strip()) and len(value.strip()) <= 20:
        return check_int64(int(value.strip()))
    raise FunctionFailure(f"int cannot convert {type_name(value)} {to_string(value)!r} to an integer")


def _float(args: Sequence[Any], env: Env) -> float:
    value = args[0]
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
        result = float(value.strip())
        if result not in (float("inf"), float("-inf")):
            return result
    raise FunctionFailure(f"float cannot convert {type_name(value)} {to_string(value)!r} to a number")


def _bool(args: Sequence[Any], env: Env) -> bool:
    value = args[0]
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0  # documented: bool(1) is true, bool(0) is false
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise FunctionFailure(f"bool cannot convert {type_name(value)} {to_string(value)!r} to a Boolean")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _json(args: Sequence[Any], env: Env) -> Any:
    value = args[0]
    if value is None:
        return {}  # documented: a null string gives an empty object
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise FunctionFailure(f"json cannot parse its argument: {exc}") from None


def _text_bytes(value: Any, what: str) -> bytes:
    if isinstance(value, str | int | float | bool) or value is None:
        return to_string(value).encode("utf-8")
    raise FunctionFailure(f"{what} takes a String, got {type_name(value)}")


def _bits(data: bytes) -> str:
    return "".join(f"{byte:08b}" for byte in data)


def _b64decode(value: Any, what: str) -> bytes:
    text = "".join(want_str(value, what).split())  # .NET tolerates whitespace inside base64
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise FunctionFailure(f"{what} is not valid base64: {text[:40]!r}") from None


def _data_uri_bytes(value: Any, what: str) -> bytes:
    match = _DATA_URI.fullmatch(want_str(value, what))
    if match is None:
        raise FunctionFailure(f"{what} is not a data URI (data:[<media type>][;base64],<data>)")
    if match.group("meta").lower().endswith(";base64"):
        return _b64decode(match.group("data"), what)
    return unquote_to_bytes(match.group("data"))


def _unsupported(name: str) -> Impl:
    def impl(args: Sequence[Any], env: Env) -> Any:
        raise FunctionFailure(
            f"{name}() is valid ADF but not supported by the local evaluator; check it with an ADF debug run"
        )

    return impl


def _spec(name: str, low: int, high: int | None, impl: Impl) -> tuple[str, FunctionSpec]:
    return name.lower(), FunctionSpec(name, low, high, impl)


def _b64_string(a: Sequence[Any], e: Env) -> str:
    return _b64decode(a[0], "base64 value").decode("utf-8", errors="replace")


def _data_uri_string(a: Sequence[Any], e: Env) -> str:
    return _data_uri_bytes(a[0], "data URI").decode("utf-8", errors="replace")


def _uri_component(a: Sequence[Any], e: Env) -> str:
    return quote(_text_bytes(a[0], "uriComponent value"), safe="")  # same set as .NET EscapeDataString


def _uri_component_string(a: Sequence[Any], e: Env) -> str:
    return unquote(want_str(a[0], "URI component"), errors="replace")


CONVERSION_FUNCTIONS: dict[str, FunctionSpec] = dict(
    [
        _spec("int", 1, 1, _int),
        _spec("float", 1, 1, _float),
        _spec("string", 1, 1, lambda a, e: to_string(a[0])),
        _spec("bool", 1, 1, _bool),
        _spec("json", 1, 1, _json),
        _spec("array", 1, 1, lambda a, e: [a[0]]),
        _spec("createArray", 1, None, lambda a, e: list(a)),
        _spec("base64", 1, 1, lambda a, e: base64.b64encode(_text_bytes(a[0], "base64 value")).decode()),
        _spec("base64ToString", 1, 1, _b64_string),
        _spec("decodeBase64", 1, 1, _b64_string),
        _spec("base64ToBinary", 1, 1, lambda a, e: _bits(_b64decode(a[0], "base64 value"))),
        _spec("binary", 1, 1, lambda a, e: _bits(_text_bytes(a[0], "binary value"))),
        _spec(
            "dataUri",
            1,
            1,
            lambda a, e: (
                "data:text/plain;charset=utf-8;base64," + base64.b64encode(_text_bytes(a[0], "dataUri value")).decode()
            ),
        ),
        _spec("dataUriToString", 1, 1, _data_uri_string),
        _spec("dataUriToBinary", 1, 1, lambda a, e: _bits(_data_uri_bytes(a[0], "data URI"))),
        _spec("decodeDataUri", 1, 1, lambda a, e: _bits(_data_uri_bytes(a[0], "data URI"))),
        _spec("encodeUriComponent", 1, 1, _uri_component),
        _spec("uriComponent", 1, 1, _uri_component),
        _spec("decodeUriComponent", 1, 1, _uri_component_string),
        _spec("uriComponentToString", 1, 1, _uri_component_string),
        _spec(
            "uriComponentToBinary",
            1,
            1,
            lambda a, e: _bits(unquote_to_bytes(want_str(a[0], "URI component"))),
        ),
        _spec("xml", 1, 1, _unsupported("xml")),
        _spec("xpath", 2, 2, _unsupported("xpath")),
    ]
)
