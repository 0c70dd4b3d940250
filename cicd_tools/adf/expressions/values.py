"""Values as the ADF expression runtime sees them: type names, string rendering, equality, argument checks.

ADF's runtime is .NET: numbers and booleans render the .NET way (``True``, ``1E+20``), objects and
arrays render as JSON. Function implementations use the ``want_*`` helpers so that a wrong argument type
becomes a clear ``FunctionFailure`` instead of a Python exception.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from cicd_tools.adf.expressions.types import FunctionFailure

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def type_name(value: Any) -> str:
    """The ADF name of a value's type, as its error messages say it."""
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int):
        return "Integer"
    if isinstance(value, float):
        return "Float"
    if isinstance(value, str):
        return "String"
    if isinstance(value, list | tuple):
        return "Array"
    if isinstance(value, dict):
        return "Object"
    return type(value).__name__


def format_float(value: float) -> str:
    """A double the way .NET's ``ToString()`` writes it: shortest round-trip, ``E+XX`` beyond 1e15."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    sign, digits, exponent = Decimal(repr(value)).as_tuple()
    assert isinstance(exponent, int)  # finite
    text_digits = "".join(map(str, digits)).rstrip("0") or "0"
    lead = len(digits) + exponent - 1  # decimal exponent of the first digit
    prefix = "-" if sign else ""
    if -5 < lead < 15:
        fixed = format(Decimal(repr(abs(value))), "f")
        if "." in fixed:
            fixed = fixed.rstrip("0").rstrip(".")
        return prefix + fixed
    mantissa = text_digits[0] + ("." + text_digits[1:] if len(text_digits) > 1 else "")
    return f"{prefix}{mantissa}E{'+' if lead >= 0 else '-'}{abs(lead):02d}"


def to_json_text(value: Any) -> str:
    """Compact JSON, as objects and arrays render inside strings. Raises: FunctionFailure past the budget."""
    from cicd_tools.adf.expressions.budget import check_rendered_size

    check_rendered_size(value, "the value rendered as text")
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def to_string(value: Any) -> str:
    """How ADF renders a value inside ``@{...}`` and in ``string()``."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"  # .NET Boolean.ToString()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format_float(value)
    return to_json_text(value)


def adf_equals(left: Any, right: Any) -> bool:
    """ADF ``equals``: deep, numbers compare by value, strings case-sensitively, null equals ''."""
    if left is None or right is None:
        # Documented for the shared workflow language: comparisons treat null as the empty string.
        other = right if left is None else left
        return other is None or other == ""
    if isinstance(left, str) or isinstance(right, str):
        return isinstance(left, str) and isinstance(right, str) and left == right
    if isinstance(left, list | tuple) or isinstance(right, list | tuple):
        if not (isinstance(left, list | tuple) and isinstance(right, list | tuple)) or len(left) != len(right):
            return False
        return all(adf_equals(a, b) for a, b in zip(left, right, strict=True))
    if isinstance(left, dict) or isinstance(right, dict):
        if not (isinstance(left, dict) and isinstance(right, dict)) or left.keys() != right.keys():
            return False
        return all(adf_equals(left[k], right[k]) for k in left)
    # Numbers and booleans: documented equals(true, 1) is true, so they compare numerically.
    return bool(left == right)


def want_str(value: Any, what: str) -> str:
    """``value`` if it is a string. Raises: FunctionFailure."""
    if isinstance(value, str):
        return value
    raise FunctionFailure(f"{what} must be a String, got {type_name(value)}")


def want_int(value: Any, what: str) -> int:
    """``value`` if it is an integer (or a float with an integral value). Raises: FunctionFailure."""
    if isinstance(value, bool):
        raise FunctionFailure(f"{what} must be an Integer, got Boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise FunctionFailure(f"{what} must be an Integer, got {type_name(value)}")


def want_number(value: Any, what: str) -> int | float:
    """``value`` if it is an integer or a float (booleans are not numbers here). Raises: FunctionFailure."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    raise FunctionFailure(f"{what} must be an Integer or a Float, got {type_name(value)}")


def want_bool(value: Any, what: str) -> bool:
    """``value`` if it is a boolean. Raises: FunctionFailure."""
    if isinstance(value, bool):
        return value
    raise FunctionFailure(f"{what} must be a Boolean, got {type_name(value)}")


def want_list(value: Any, what: str) -> list[Any]:
    """``value`` if it is an array. Raises: FunctionFailure."""
    if isinstance(value, list | tuple):
        return list(value)
    raise FunctionFailure(f"{what} must be an Array, got {type_name(value)}")


def check_int64(value: int) -> int:
    """``value`` if it fits ADF's 64-bit integers. Raises: FunctionFailure."""
    if INT64_MIN <= value <= INT64_MAX:
        return value
    raise FunctionFailure(f"integer result {value} overflows a 64-bit integer")


def arg_names(args: Sequence[Any]) -> str:
    """The ADF type names of ``args``, for error messages."""
    return ", ".join(type_name(a) for a in args)
