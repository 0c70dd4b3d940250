"""ADF string, collection, logical and math functions, as documented for Azure Data Factory.

Each implementation takes the evaluated arguments (the parser has already checked how many) and
raises ``FunctionFailure`` for a bad value; the evaluator adds the position.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from cicd_tools.adf.expressions.budget import check_string_length, join_bounded
from cicd_tools.adf.expressions.types import Env, FunctionFailure, FunctionSpec, Impl
from cicd_tools.adf.expressions.values import (
    adf_equals,
    arg_names,
    check_int64,
    to_string,
    type_name,
    want_bool,
    want_int,
    want_list,
    want_number,
    want_str,
)

RANGE_LIMIT = 100_000  # ADF caps range() counts; also keeps a typo from allocating gigabytes


# --- strings ----------------------------------------------------------------------------------------


def _concat(args: Sequence[Any], env: Env) -> Any:
    arrays = [isinstance(a, list | tuple) for a in args]
    if all(arrays):
        return [item for a in args for item in a]
    if any(arrays):
        raise FunctionFailure("concat takes either all strings or all arrays, got " + arg_names(args))
    return join_bounded((to_string(a) for a in args), "", "the concatenated string")


def _substring(args: Sequence[Any], env: Env) -> str:
    text = want_str(args[0], "substring text")
    start = want_int(args[1], "substring startIndex")
    length = want_int(args[2], "substring length") if len(args) > 2 else len(text) - start
    if start < 0 or length < 0 or start + length > len(text):
        raise FunctionFailure(
            f"substring start {start} and length {length} must lie within the string of length {len(text)}"
        )
    return text[start : start + length]


def _replace(args: Sequence[Any], env: Env) -> str:
    text, old = want_str(args[0], "replace text"), want_str(args[1], "replace oldText")
    if not old:
        raise FunctionFailure("replace oldText must not be empty")
    new = want_str(args[2], "replace newText")
    if len(new) > len(old):  # checked before building: each match grows the text
        check_string_length(len(text) + text.count(old) * (len(new) - len(old)), "the replaced string")
    return text.replace(old, new)


def _guid(args: Sequence[Any], env: Env) -> str:
    fmt = want_str(args[0], "guid format") if args else "D"
    value = uuid.uuid4()
    hexa = value.hex
    dashed = str(value)
    formats = {"N": hexa, "D": dashed, "B": "{" + dashed + "}", "P": "(" + dashed + ")"}
    if fmt.upper() == "X":
        tail = ",".join(f"0x{hexa[i : i + 2]}" for i in range(16, 32, 2))
        return f"{{0x{hexa[:8]},0x{hexa[8:12]},0x{hexa[12:16]},{{{tail}}}}}"
    if fmt.upper() not in formats:
        raise FunctionFailure(f"guid format must be one of N, D, B, P, X, got {fmt!r}")
    return formats[fmt.upper()]


def _index_of(args: Sequence[Any], env: Env) -> int:
    # Documented as not case-sensitive.
    text, search = want_str(args[0], "indexOf text"), want_str(args[1], "indexOf searchText")
    return text.lower().find(search.lower())


def _last_index_of(args: Sequence[Any], env: Env) -> int:
    text, search = want_str(args[0], "lastIndexOf text"), want_str(args[1], "lastIndexOf searchText")
    return text.lower().rfind(search.lower())


def _starts_with(args: Sequence[Any], env: Env) -> bool:
    text, search = want_str(args[0], "startsWith text"), want_str(args[1], "startsWith searchText")
    return text.lower().startswith(search.lower())  # documented as not case-sensitive


def _ends_with(args: Sequence[Any], env: Env) -> bool:
    text, search = want_str(args[0], "endsWith text"), want_str(args[1], "endsWith searchText")
    return text.lower().endswith(search.lower())  # documented as not case-sensitive


def _split(args: Sequence[Any], env: Env) -> list[str]:
    text, delimiter = want_str(args[0], "split text"), want_str(args[1], "split delimiter")
    return text.split(delimiter) if delimiter else [text]


def _length(args: Sequence[Any], env: Env) -> int:
    value = args[0]
    if isinstance(value, str | list | tuple):
        return len(value)
    raise FunctionFailure(f"length takes a String or an Array, got {type_name(value)}")


# --- collections ------------------------------------------------------------------------------------


def _contains(args: Sequence[Any], env: Env) -> bool:
    collection, value = args
    if isinstance(collection, str):
        return want_str(value, "contains value") in collection  # documented as case-sensitive
    if isinstance(collection, list | tuple):
        return any(adf_equals(item, value) for item in collection)
    if isinstance(collection, dict):
        return want_str(value, "contains key") in collection
    raise FunctionFailure(f"contains takes a String, Array or Object, got {type_name(collection)}")


def _empty(args: Sequence[Any], env: Env) -> bool:
    value = args[0]
    if value is None:
        return True
    if isinstance(value, str | list | tuple | dict):
        return len(value) == 0
    raise FunctionFailure(f"empty takes a String, Array or Object, got {type_name(value)}")


def _first(args: Sequence[Any], env: Env) -> Any:
    value = args[0]
    if isinstance(value, str | list | tuple):
        return value[0] if value else None
    raise FunctionFailure(f"first takes a String or an Array, got {type_name(value)}")


def _last(args: Sequence[Any], env: Env) -> Any:
    value = args[0]
    if isinstance(value, str | list | tuple):
        return value[-1] if value else None
    raise FunctionFailure(f"last takes a String or an Array, got {type_name(value)}")


def _dedup(items: Sequence[Any]) -> list[Any]:
    out: list[Any] = []
    for item in items:
        if not any(adf_equals(item, seen) for seen in out):
            out.append(item)
    return out


def _collections(name: str, args: Sequence[Any]) -> str:
    if all(isinstance(a, list | tuple) for a in args):
        return "array"
    if all(isinstance(a, dict) for a in args):
        return "object"
    raise FunctionFailure(f"{name} takes all Arrays or all Objects, got {arg_names(args)}")


def _intersection(args: Sequence[Any], env: Env) -> Any:
    if _collections("intersection", args) == "array":
        return [x for x in _dedup(args[0]) if all(any(adf_equals(x, y) for y in other) for other in args[1:])]
    keys = [k for k in args[0] if all(k in other for other in args[1:])]
    return {k: args[-1][k] for k in keys}  # documented: the last item with that name wins


def _union(args: Sequence[Any], env: Env) -> Any:
    if _collections("union", args) == "array":
        return _dedup([x for a in args for x in a])
    merged: dict[str, Any] = {}
    for obj in args:
        merged.update(obj)
    return merged


def _join(args: Sequence[Any], env: Env) -> str:
    items = want_list(args[0], "join collection")
    return join_bounded((to_string(x) for x in items), want_str(args[1], "join delimiter"), "the joined string")


def _skip(args: Sequence[Any], env: Env) -> list[Any]:
    items, count = want_list(args[0], "skip collection"), want_int(args[1], "skip count")
    if count < 0:
        raise FunctionFailure(f"skip count must not be negative, got {count}")
    return items[count:]


def _take(args: Sequence[Any], env: Env) -> Any:
    count = want_int(args[1], "take count")
    if count < 0:
        raise FunctionFailure(f"take count must not be negative, got {count}")
    value = args[0]
    if isinstance(value, str):
        return value[:count]
    return want_list(value, "take collection")[:count]


def _range(args: Sequence[Any], env: Env) -> list[int]:
    start, count = want_int(args[0], "range startIndex"), want_int(args[1], "range count")
    if not 0 <= count <= RANGE_LIMIT:
        raise FunctionFailure(f"range count must be between 0 and {RANGE_LIMIT}, got {count}")
    return [check_int64(start + i) for i in range(count)]


# --- logic ------------------------------------------------------------------------------------------


# The evaluator short-circuits and / or / if itself (eval._short_circuit); these serve callers that hold values.
def _and(args: Sequence[Any], env: Env) -> bool:
    return all(want_bool(a, "and argument") for a in args)


def _or(args: Sequence[Any], env: Env) -> bool:
    return any(want_bool(a, "or argument") for a in args)


def _comparable(name: str, left: Any, right: Any) -> tuple[Any, Any]:
    left = "" if left is None else left  # comparisons treat null as the empty string
    right = "" if right is None else right
    numbers = (int, float)
    if isinstance(left, bool) or isinstance(right, bool):
        raise FunctionFailure(f"{name} compares numbers or strings, got {arg_names([left, right])}")
    if (isinstance(left, numbers) and isinstance(right, numbers)) or (isinstance(left, str) and isinstance(right, str)):
        return left, right
    raise FunctionFailure(f"{name} compares two numbers or two strings, got {arg_names([left, right])}")


def _comparison(name: str, test: Callable[[Any, Any], bool]) -> Impl:
    def impl(args: Sequence[Any], env: Env) -> bool:
        left, right = _comparable(name, args[0], args[1])
        return test(left, right)

    return impl


def _if(args: Sequence[Any], env: Env) -> Any:
    return args[1] if want_bool(args[0], "if expression") else args[2]


def _coalesce(args: Sequence[Any], env: Env) -> Any:
    return next((a for a in args if a is not None), None)


# --- math -------------------------------------------------------------------------------------------


def _numbers(name: str, args: Sequence[Any]) -> list[int | float]:
    return [want_number(a, f"{name} argument") for a in args]


def _result(value: int | float) -> int | float:
    if isinstance(value, int):
        return check_int64(value)
    if math.isinf(value) or math.isnan(value):
        raise FunctionFailure("the result is not a finite number")
    return value


def _add(args: Sequence[Any], env: Env) -> int | float:
    a, b = _numbers("add", args)
    return _result(a + b)


def _sub(args: Sequence[Any], env: Env) -> int | float:
    a, b = _numbers("sub", args)
    return _result(a - b)


def _mul(args: Sequence[Any], env: Env) -> int | float:
    a, b = _numbers("mul", args)
    return _result(a * b)


def _div(args: Sequence[Any], env: Env) -> int | float:
    a, b = _numbers("div", args)
    if b == 0:
        raise FunctionFailure("div by zero")
    if isinstance(a, int) and isinstance(b, int):
        quotient = abs(a) // abs(b)  # .NET integer division truncates toward zero
        return _result(quotient if (a < 0) == (b < 0) else -quotient)
    return _result(a / b)


def _mod(args: Sequence[Any], env: Env) -> int | float:
    a, b = _numbers("mod", args)
    if b == 0:
        raise FunctionFailure("mod by zero")
    if isinstance(a, int) and isinstance(b, int):
        remainder = abs(a) % abs(b)  # .NET remainder takes the dividend's sign
        return remainder if a >= 0 else -remainder
    return _result(math.fmod(a, b))


def _extreme(name: str, pick: Callable[[list[int | float]], int | float]) -> Impl:
    def impl(args: Sequence[Any], env: Env) -> int | float:
        values = list(args[0]) if len(args) == 1 and isinstance(args[0], list | tuple) else list(args)
        if not values:
            raise FunctionFailure(f"{name} needs at least one number")
        return pick(_numbers(name, values))

    return impl


def _rand(args: Sequence[Any], env: Env) -> int:
    low, high = want_int(args[0], "rand minValue"), want_int(args[1], "rand maxValue")
    if low >= high:
        raise FunctionFailure(f"rand minValue {low} must be less than maxValue {high}")
    return random.randrange(low, high)  # documented: inclusive at the start only


def _spec(name: str, low: int, high: int | None, impl: Impl) -> tuple[str, FunctionSpec]:
    return name.lower(), FunctionSpec(name, low, high, impl)


BASIC_FUNCTIONS: dict[str, FunctionSpec] = dict(
    [
        _spec("concat", 1, None, _concat),
        _spec("substring", 2, 3, _substring),
        _spec("replace", 3, 3, _replace),
        _spec("guid", 0, 1, _guid),
        _spec("toLower", 1, 1, lambda a, e: want_str(a[0], "toLower text").lower()),
        _spec("toUpper", 1, 1, lambda a, e: want_str(a[0], "toUpper text").upper()),
        _spec("indexOf", 2, 2, _index_of),
        _spec("lastIndexOf", 2, 2, _last_index_of),
        _spec("startsWith", 2, 2, _starts_with),
        _spec("endsWith", 2, 2, _ends_with),
        _spec("split", 2, 2, _split),
        _spec("trim", 1, 1, lambda a, e: want_str(a[0], "trim text").strip()),
        _spec("length", 1, 1, _length),
        _spec("contains", 2, 2, _contains),
        _spec("empty", 1, 1, _empty),
        _spec("first", 1, 1, _first),
        _spec("last", 1, 1, _last),
        _spec("intersection", 1, None, _intersection),
        _spec("union", 1, None, _union),
        _spec("join", 2, 2, _join),
        _spec("skip", 2, 2, _skip),
        _spec("take", 2, 2, _take),
        _spec("range", 2, 2, _range),
        # Exactly two: ADF's validation says "function 'and' does not accept 3 argument(s)"
        # (MicrosoftDocs/azure-docs#54944, #55549; AZURE_FACTS.md §9).
        _spec("and", 2, 2, _and),
        _spec("or", 2, 2, _or),
        _spec("not", 1, 1, lambda a, e: not want_bool(a[0], "not expression")),
        _spec("equals", 2, 2, lambda a, e: adf_equals(a[0], a[1])),
        _spec("less", 2, 2, _comparison("less", lambda x, y: bool(x < y))),
        _spec("lessOrEquals", 2, 2, _comparison("lessOrEquals", lambda x, y: bool(x <= y))),
        _spec("greater", 2, 2, _comparison("greater", lambda x, y: bool(x > y))),
        _spec("greaterOrEquals", 2, 2, _comparison("greaterOrEquals", lambda x, y: bool(x >= y))),
        _spec("if", 3, 3, _if),
        _spec("coalesce", 1, None, _coalesce),
        _spec("add", 2, 2, _add),
        _spec("sub", 2, 2, _sub),
        _spec("mul", 2, 2, _mul),
        _spec("div", 2, 2, _div),
        _spec("mod", 2, 2, _mod),
        _spec("min", 1, None, _extreme("min", min)),
        _spec("max", 1, None, _extreme("max", max)),
        _spec("rand", 2, 2, _rand),
    ]
)
